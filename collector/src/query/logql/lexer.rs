//! The LogQL lexer: query text to [`Token`]s with byte spans.
//!
//! Why a module of its own: Loki's lexer decides things a grammar cannot,
//! by looking at raw characters: `5m` is a duration but `5MB` is a byte
//! size, `[1h30m]` is one range token, `--strict` is a parser flag. The
//! parser drives the lexer on demand (it is not pre-tokenised) because a
//! bare topic name such as `web.access-log` must be re-read from the raw
//! text, with rules of its own, when it stands where a selector belongs.
//!
//! Keywords are not tokens: `sum`, `by`, `json`, `or`... are identifiers
//! the parser recognises by position (case-insensitively, as Loki does), so
//! a label or topic may still be called `json`.

use crate::query::logql::error::ParseError;
use crate::query::logql::units;

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Number(f64),
    /// `0x1F`: lexed so that the parser can say why it is refused (Loki
    /// reads numbers as Go floats, which have no hex form without `p`).
    Hex(String),
    /// Nanoseconds.
    Duration(i64),
    Bytes(u64),
    /// `[5m]`, in nanoseconds.
    Range(i64),
    /// `--strict`, `--keep-empty`.
    Flag(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Dot,
    Eq,
    EqEq,
    Neq,
    Re,
    Nre,
    Gt,
    Gte,
    Lt,
    Lte,
    Pipe,
    PipeExact,
    PipeMatch,
    PipePattern,
    NotPattern,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eof,
}

/// A token and the byte span `start..end` it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

/// Parser flags Loki knows (`| logfmt --strict --keep-empty`).
const FLAGS: [&str; 2] = ["--strict", "--keep-empty"];

/// Reads tokens from a query on demand.
pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn is_duration_char(c: char) -> bool {
    matches!(c, 'n' | 'u' | 'µ' | 'm' | 's' | 'h' | 'd' | 'w' | 'y')
}

fn is_bytes_char(c: char) -> bool {
    matches!(c, 'B' | 'i' | 'k' | 'K' | 'M' | 'G' | 'T' | 'P')
}

/// Characters of a bare topic name.
pub(crate) fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    /// Moves the read position (used after re-reading a bare topic name).
    pub fn reset(&mut self, pos: usize) {
        self.pos = pos.min(self.src.len());
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, pos, msg)
    }

    fn skip_trivia(&mut self) {
        loop {
            match self.peek_char() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// The next token, or an error for text that cannot start one.
    pub fn next_token(&mut self) -> Result<Token, ParseError> {
        self.skip_trivia();
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
        };
        let tok = match c {
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '+' => Tok::Add,
            '*' => Tok::Mul,
            '/' => Tok::Div,
            '%' => Tok::Mod,
            '^' => Tok::Pow,
            '=' => self.pick(&[('~', Tok::Re), ('=', Tok::EqEq)], Tok::Eq),
            '>' => self.pick(&[('=', Tok::Gte)], Tok::Gt),
            '<' => self.pick(&[('=', Tok::Lte)], Tok::Lt),
            '|' => self.pick(
                &[('=', Tok::PipeExact), ('~', Tok::PipeMatch), ('>', Tok::PipePattern)],
                Tok::Pipe,
            ),
            '!' => match self.peek_char() {
                Some('=') => self.take(Tok::Neq),
                Some('~') => self.take(Tok::Nre),
                Some('>') => self.take(Tok::NotPattern),
                _ => return Err(self.err(start, "unexpected character '!'")),
            },
            '-' => self.flag_or_sub(start),
            '"' => Tok::Str(self.quoted(start)?),
            '`' => Tok::Str(self.raw(start)?),
            '\'' => {
                return Err(self.err(
                    start,
                    "single-quoted strings are not supported, use double quotes or backticks",
                ));
            }
            '[' => Tok::Range(self.range(start)?),
            '.' if self.peek_char().is_some_and(|c| c.is_ascii_digit()) => {
                self.pos = start;
                self.number(start)?
            }
            '.' => Tok::Dot,
            c if c.is_ascii_digit() => {
                self.pos = start;
                self.number(start)?
            }
            c if c.is_alphabetic() || c == '_' => {
                while self.peek_char().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.bump();
                }
                Tok::Ident(self.src.get(start..self.pos).unwrap_or("").to_string())
            }
            c => return Err(self.err(start, format!("unexpected character {c:?}"))),
        };
        Ok(Token {
            tok,
            start,
            end: self.pos,
        })
    }

    fn take(&mut self, tok: Tok) -> Tok {
        self.bump();
        tok
    }

    /// Two-character operators: the first `(next, tok)` whose `next` follows wins.
    fn pick(&mut self, options: &[(char, Tok)], single: Tok) -> Tok {
        let next = self.peek_char();
        for (c, tok) in options {
            if next == Some(*c) {
                self.bump();
                return tok.clone();
            }
        }
        single
    }

    fn flag_or_sub(&mut self, start: usize) -> Tok {
        if self.peek_char() == Some('-') && self.peek_second().is_some_and(char::is_alphabetic) {
            let rest = self.src.get(start..).unwrap_or("");
            let len = rest
                .find(|c: char| !(c.is_alphabetic() || c == '-'))
                .unwrap_or(rest.len());
            let text = rest.get(..len).unwrap_or("");
            if FLAGS.contains(&text) {
                self.pos = start + len;
                return Tok::Flag(text.to_string());
            }
        }
        Tok::Sub
    }

    /// A double-quoted string with Go escapes; `start` is the opening quote.
    fn quoted(&mut self, start: usize) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None | Some('\n') => return Err(self.err(start, "unterminated string")),
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape(at)?),
                Some(c) => out.push(c),
            }
        }
    }

    fn escape(&mut self, at: usize) -> Result<char, ParseError> {
        let bad = |l: &Self| l.err(at, "invalid escape sequence in string");
        let c = self.bump().ok_or_else(|| bad(self))?;
        let hex = |l: &mut Self, n: usize| -> Result<char, ParseError> {
            let digits = l.rest().get(..n).ok_or_else(|| bad(l))?;
            let v = u32::from_str_radix(digits, 16).map_err(|_| bad(l))?;
            l.pos += n;
            char::from_u32(v).ok_or_else(|| bad(l))
        };
        Ok(match c {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\\' => '\\',
            '"' => '"',
            'u' => hex(self, 4)?,
            'U' => hex(self, 8)?,
            'x' => {
                // A \x byte above 0x7f would not be valid UTF-8 on its own.
                let ch = hex(self, 2)?;
                if !ch.is_ascii() {
                    return Err(self.err(at, "\\x escapes above \\x7f are not supported"));
                }
                ch
            }
            '0'..='7' => {
                let digits = self.src.get(at + 1..at + 4).ok_or_else(|| bad(self))?;
                let v = u32::from_str_radix(digits, 8).map_err(|_| bad(self))?;
                self.pos = at + 4;
                match char::from_u32(v) {
                    Some(ch) if ch.is_ascii() => ch,
                    _ => return Err(bad(self)),
                }
            }
            _ => return Err(bad(self)),
        })
    }

    fn raw(&mut self, start: usize) -> Result<String, ParseError> {
        let rest = self.rest();
        let Some(end) = rest.find('`') else {
            return Err(self.err(start, "unterminated raw string"));
        };
        let s = rest.get(..end).unwrap_or("").to_string();
        self.pos += end + 1;
        Ok(s)
    }

    fn range(&mut self, start: usize) -> Result<i64, ParseError> {
        let rest = self.rest();
        let Some(end) = rest.find(']') else {
            return Err(self.err(start, "missing closing ']' in duration"));
        };
        let text = rest.get(..end).unwrap_or("");
        if text.contains(':') {
            return Err(self.err(
                start,
                format!("subqueries ([{text}]) are not supported: LogQL has none, use a range like [5m]"),
            ));
        }
        let ns = units::parse_prometheus_duration(text)
            .ok_or_else(|| self.err(start, format!("invalid range duration {text:?}")))?;
        if ns <= 0 {
            return Err(self.err(start, "range duration must be greater than 0"));
        }
        self.pos += end + 1;
        Ok(ns)
    }

    /// A number, or a duration (`5m`, `1.5s`) or byte size (`20KB`) that
    /// starts with one, following Loki's `tryScanDuration`/`tryScanBytes`.
    fn number(&mut self, start: usize) -> Result<Tok, ParseError> {
        let rest = self.src.get(start..).unwrap_or("");
        let num_len = number_len(rest);
        let text = rest.get(..num_len).unwrap_or("");
        let after = rest.get(num_len..).unwrap_or("");
        let suffix = |pred: fn(char) -> bool| {
            let n = after
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || pred(c)))
                .unwrap_or(after.len());
            rest.get(..num_len + n).filter(|_| n > 0)
        };
        if let Some(d) = suffix(is_duration_char).and_then(units::parse_duration_literal) {
            self.pos = start + suffix(is_duration_char).map_or(num_len, str::len);
            return Ok(Tok::Duration(d));
        }
        if let Some(b) = suffix(is_bytes_char).and_then(units::parse_bytes) {
            self.pos = start + suffix(is_bytes_char).map_or(num_len, str::len);
            return Ok(Tok::Bytes(b));
        }
        self.pos = start + num_len;
        if text.starts_with("0x") || text.starts_with("0X") {
            return Ok(Tok::Hex(text.to_string()));
        }
        text.parse::<f64>()
            .ok()
            .map(Tok::Number)
            .ok_or_else(|| self.err(start, format!("invalid number {text:?}")))
    }
}

/// Length of the number at the start of `s`: decimal with optional fraction
/// and exponent, or `0x` hex.
fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    if at(0) == b'0' && matches!(at(1), b'x' | b'X') && at(2).is_ascii_hexdigit() {
        let mut i = 2;
        while at(i).is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    let mut i = 0;
    while at(i).is_ascii_digit() {
        i += 1;
    }
    if at(i) == b'.' {
        i += 1;
        while at(i).is_ascii_digit() {
            i += 1;
        }
    }
    if matches!(at(i), b'e' | b'E') {
        let mut j = i + 1;
        if matches!(at(j), b'+' | b'-') {
            j += 1;
        }
        if at(j).is_ascii_digit() {
            while at(j).is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// End (byte offset) of the bare topic name starting at `start`.
pub(crate) fn topic_end(src: &str, start: usize) -> usize {
    let rest = src.get(start..).unwrap_or("");
    start + rest.find(|c: char| !is_topic_char(c)).unwrap_or(rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        let mut l = Lexer::new(s);
        let mut out = vec![];
        loop {
            let t = l.next_token().unwrap();
            if t.tok == Tok::Eof {
                return out;
            }
            out.push(t.tok);
        }
    }

    fn lex_err(s: &str) -> ParseError {
        let mut l = Lexer::new(s);
        loop {
            match l.next_token() {
                Err(e) => return e,
                Ok(t) if t.tok == Tok::Eof => panic!("no error lexing {s:?}"),
                Ok(_) => {}
            }
        }
    }

    #[test]
    fn operators() {
        use Tok::*;
        assert_eq!(
            toks("= == =~ != !~ !> > >= < <= | |= |~ |> + - * / % ^ , ( ) { }"),
            vec![
                Eq,
                EqEq,
                Re,
                Neq,
                Nre,
                NotPattern,
                Gt,
                Gte,
                Lt,
                Lte,
                Pipe,
                PipeExact,
                PipeMatch,
                PipePattern,
                Add,
                Sub,
                Mul,
                Div,
                Mod,
                Pow,
                Comma,
                LParen,
                RParen,
                LBrace,
                RBrace
            ]
        );
    }

    #[test]
    fn numbers_durations_bytes() {
        use Tok::*;
        assert_eq!(
            toks("42 1.5 1e3 0x1F .5 5m 1h30m 250ms 1.5s 20KB 20KiB 2d"),
            vec![
                Number(42.0),
                Number(1.5),
                Number(1000.0),
                Hex("0x1F".into()),
                Number(0.5),
                Duration(300_000_000_000),
                Duration(5_400_000_000_000),
                Duration(250_000_000),
                Duration(1_500_000_000),
                Bytes(20_000),
                Bytes(20_480),
                Duration(172_800_000_000_000),
            ]
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(toks("[5m]"), vec![Tok::Range(300_000_000_000)]);
        assert_eq!(toks("[1h30m]"), vec![Tok::Range(5_400_000_000_000)]);
        assert_eq!(toks("[250ms]"), vec![Tok::Range(250_000_000)]);
        let e = lex_err("x [5m");
        assert_eq!((e.col, e.message.as_str()), (3, "missing closing ']' in duration"));
        assert!(lex_err("[1.5m]").message.contains("invalid range duration"));
        assert_eq!(lex_err("[0s]").message, "range duration must be greater than 0");
        assert!(
            lex_err("[10m:1m]")
                .message
                .starts_with("subqueries ([10m:1m]) are not supported")
        );
    }

    #[test]
    fn strings() {
        assert_eq!(
            toks(r#""a\"b\\c\n\t\u00e9" `raw\d`"#),
            vec![Tok::Str("a\"b\\c\n\té".into()), Tok::Str("raw\\d".into())]
        );
        let e = lex_err(r#"{a="b}"#);
        assert_eq!((e.col, e.message.as_str()), (4, "unterminated string"));
        assert_eq!(lex_err("`abc").message, "unterminated raw string");
        assert!(lex_err(r#""\w+""#).message.contains("invalid escape"));
        assert!(lex_err("'x'").message.contains("single-quoted"));
    }

    #[test]
    fn identifiers_flags_comments() {
        use Tok::*;
        assert_eq!(
            toks("sum by(app) # comment\n logfmt --strict --keep-empty --other"),
            vec![
                Ident("sum".into()),
                Ident("by".into()),
                LParen,
                Ident("app".into()),
                RParen,
                Ident("logfmt".into()),
                Flag("--strict".into()),
                Flag("--keep-empty".into()),
                Sub,
                Sub,
                Ident("other".into())
            ]
        );
    }

    #[test]
    fn bad_characters_have_positions() {
        let e = lex_err("{a=\"b\"} ; x");
        assert_eq!((e.line, e.col), (1, 9));
        let e = lex_err("a\n  !x");
        assert_eq!((e.line, e.col), (2, 3));
    }

    #[test]
    fn topic_run() {
        assert_eq!(topic_end("web.access-log_2 |= \"x\"", 0), 16);
        assert_eq!(topic_end("x[5m]", 0), 1);
    }
}
