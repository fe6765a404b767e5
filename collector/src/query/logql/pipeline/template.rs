//! The Go-template subset used by `line_format` and `label_format`:
//! text, `{{.label}}` field references, string and number literals,
//! `{{ __line__ }}`, pipes (`{{ .x | ToUpper }}`) and a few functions.
//!
//! Why a module of its own, and why a subset: Loki hands these strings to
//! Go's `text/template` with sprig functions. Re-implementing all of that is
//! neither needed nor safe; this module accepts the forms real queries use
//! and refuses the rest (`if`, `range`, variables, parentheses, unknown
//! functions) with a parse error, so a query never half-works.
//!
//! Functions: `ToUpper`/`upper`, `ToLower`/`lower`, `Title`/`title`,
//! `TrimSpace`/`trim`, `TrimPrefix s p`, `TrimSuffix s p`, sprig's
//! `trimPrefix p s` and `trimSuffix p s`, `Replace s old new n`, sprig's
//! `replace old new s`, `default fallback value`, `trunc n s`, `__line__`.
//! A missing label renders as the empty string (Loki uses `missingkey=zero`).
//!
//! Output is bounded: a template renders at most the line budget in force
//! when it was parsed (`query.max_line_bytes`, see `limits`), checked
//! before each piece is added and before a `Replace` grows its text, so a
//! template that would make more fails (`TemplateFormatErr`) having made
//! at most that much.

use crate::query::logql::labels::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Upper,
    Lower,
    Title,
    TrimSpace,
    /// Go argument order `(s, affix)`.
    TrimPrefix,
    TrimSuffix,
    /// sprig argument order `(affix, s)`.
    SprigTrimPrefix,
    SprigTrimSuffix,
    /// `Replace s old new n`
    Replace,
    /// `replace old new s`
    SprigReplace,
    Default,
    Trunc,
    Line,
}

impl Func {
    /// The function and its argument count (a piped value counts as the last).
    fn lookup(name: &str) -> Option<(Func, usize)> {
        Some(match name {
            "ToUpper" | "upper" => (Func::Upper, 1),
            "ToLower" | "lower" => (Func::Lower, 1),
            "Title" | "title" => (Func::Title, 1),
            "TrimSpace" | "trim" => (Func::TrimSpace, 1),
            "TrimPrefix" => (Func::TrimPrefix, 2),
            "TrimSuffix" => (Func::TrimSuffix, 2),
            "trimPrefix" => (Func::SprigTrimPrefix, 2),
            "trimSuffix" => (Func::SprigTrimSuffix, 2),
            "Replace" => (Func::Replace, 4),
            "replace" => (Func::SprigReplace, 3),
            "default" => (Func::Default, 2),
            "trunc" => (Func::Trunc, 2),
            "__line__" => (Func::Line, 0),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Field(String),
    Literal(String),
    /// `__line__` used as an argument.
    Line,
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Value(Operand),
    Call(Func, Vec<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Vec<Command>),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    /// Most bytes one rendering may make.
    max_bytes: usize,
}

/// The error of a rendering that would pass `max` bytes.
fn too_long(max: usize) -> String {
    format!("output exceeds {max} bytes (query.max_line_bytes)")
}

/// Appends `piece` unless `out` would pass `max` bytes.
fn push_within(out: &mut String, piece: &str, max: usize) -> Result<(), String> {
    if out.len().saturating_add(piece.len()) > max {
        return Err(too_long(max));
    }
    out.push_str(piece);
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(String),
    Literal(String),
    Ident(String),
    Pipe,
}

const KEYWORDS: [&str; 13] = [
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil", "true", "false",
];

impl Template {
    /// Compiles template text.
    ///
    /// # Errors
    /// A message naming the unsupported or malformed construct.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut parts: Vec<Part> = Vec::new();
        let mut rest = src;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut text = rest.get(..open).unwrap_or("");
            if trim_next {
                text = text.trim_start();
            }
            let mut body = rest.get(open + 2..).unwrap_or("");
            let trim_prev = body.starts_with("- ") || body.starts_with("-\t") || body.starts_with("-\n");
            if trim_prev {
                text = text.trim_end();
                body = body.get(1..).unwrap_or("");
            }
            if !text.is_empty() {
                parts.push(Part::Text(text.to_string()));
            }
            if let Some(comment) = body.trim_start().strip_prefix("/*") {
                let end = comment.find("*/").ok_or("unclosed comment")?;
                let after = comment.get(end + 2..).unwrap_or("").trim_start();
                let (after, trim) = match after.strip_prefix("-}}") {
                    Some(a) => (a, true),
                    None => (after.strip_prefix("}}").ok_or("unclosed comment action")?, false),
                };
                rest = after;
                trim_next = trim;
                continue;
            }
            let (toks, after, trim) = lex_action(body)?;
            parts.push(Part::Action(build_pipeline(toks)?));
            rest = after;
            trim_next = trim;
        }
        let text = if trim_next { rest.trim_start() } else { rest };
        if !text.is_empty() {
            parts.push(Part::Text(text.to_string()));
        }
        Ok(Template {
            parts,
            max_bytes: crate::query::logql::limits::max_line_bytes(),
        })
    }

    /// The most bytes a rendering may make.
    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Renders with `labels` as the data and `line` as `__line__`.
    ///
    /// # Errors
    /// A function got an argument it cannot use (e.g. `trunc "x" .a`), or
    /// the output would pass the line budget.
    pub fn render(&self, labels: &Labels, line: &[u8]) -> Result<String, String> {
        self.render_within(labels, line, self.max_bytes)
    }

    /// [`render`](Self::render) making at most `max` bytes.
    pub(crate) fn render_within(&self, labels: &Labels, line: &[u8], max: usize) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => push_within(&mut out, t, max)?,
                Part::Action(cmds) => {
                    let mut piped: Option<String> = None;
                    for cmd in cmds {
                        let value = run(cmd, piped.take(), labels, line, max)?;
                        if value.len() > max {
                            return Err(too_long(max));
                        }
                        piped = Some(value);
                    }
                    push_within(&mut out, piped.as_deref().unwrap_or(""), max)?;
                }
            }
        }
        Ok(out)
    }
}

/// Tokens of one action up to its `}}`; returns them, the text after the
/// action, and whether it ended with the trim marker ` -}}`.
fn lex_action(body: &str) -> Result<(Vec<Tok>, &str, bool), String> {
    let mut toks = Vec::new();
    let mut rest = body;
    loop {
        let trimmed = rest.trim_start();
        let had_space = trimmed.len() != rest.len();
        rest = trimmed;
        if had_space && let Some(after) = rest.strip_prefix("-}}") {
            return Ok((toks, after, true));
        }
        if let Some(after) = rest.strip_prefix("}}") {
            return Ok((toks, after, false));
        }
        let c = rest.chars().next().ok_or("unclosed action")?;
        let word_end = |s: &str| s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
        match c {
            '.' => {
                let name_part = rest.get(1..).unwrap_or("");
                let end = word_end(name_part);
                if end == 0 {
                    return Err("'.' without a field name is not supported".into());
                }
                toks.push(Tok::Field(name_part.get(..end).unwrap_or("").to_string()));
                rest = name_part.get(end..).unwrap_or("");
                if rest.starts_with('.') && !rest.starts_with(".}") {
                    return Err("nested field access is not supported".into());
                }
            }
            '"' => {
                let (s, after) = go_string(rest.get(1..).unwrap_or(""))?;
                toks.push(Tok::Literal(s));
                rest = after;
            }
            '`' => {
                let inner = rest.get(1..).unwrap_or("");
                let end = inner.find('`').ok_or("unterminated raw string in template")?;
                toks.push(Tok::Literal(inner.get(..end).unwrap_or("").to_string()));
                rest = inner.get(end + 1..).unwrap_or("");
            }
            '|' => {
                toks.push(Tok::Pipe);
                rest = rest.get(1..).unwrap_or("");
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let end = rest
                    .get(1..)
                    .unwrap_or("")
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                    .map_or(rest.len(), |e| e + 1);
                let num = rest.get(..end).unwrap_or("");
                if num.parse::<f64>().is_err() {
                    return Err(format!("bad number {num:?} in template"));
                }
                toks.push(Tok::Literal(num.trim_start_matches('+').to_string()));
                rest = rest.get(end..).unwrap_or("");
            }
            c if c.is_alphabetic() || c == '_' => {
                let end = word_end(rest);
                let word = rest.get(..end).unwrap_or("");
                if KEYWORDS.contains(&word) {
                    return Err(format!("template keyword {word:?} is not supported"));
                }
                toks.push(Tok::Ident(word.to_string()));
                rest = rest.get(end..).unwrap_or("");
            }
            '$' => return Err("template variables are not supported".into()),
            '(' | ')' => return Err("parentheses in templates are not supported".into()),
            c => return Err(format!("unexpected {c:?} in template action")),
        }
    }
}

/// A Go double-quoted string body (after the opening quote).
fn go_string(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, s.get(i + 1..).unwrap_or(""))),
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated string in template")?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    other => return Err(format!("unsupported escape \\{other} in template")),
                });
            }
            '\n' => break,
            c => out.push(c),
        }
    }
    Err("unterminated string in template".into())
}

fn build_pipeline(toks: Vec<Tok>) -> Result<Vec<Command>, String> {
    let mut cmds = Vec::new();
    for (i, group) in toks.split(|t| *t == Tok::Pipe).enumerate() {
        let piped = usize::from(i > 0);
        let (first, args) = group.split_first().ok_or("missing value for command")?;
        let cmd = match first {
            Tok::Ident(name) => {
                let (func, arity) = Func::lookup(name).ok_or_else(|| format!("function {name:?} not defined"))?;
                let args = args.iter().map(operand).collect::<Result<Vec<_>, _>>()?;
                if args.len() + piped != arity {
                    return Err(format!(
                        "wrong number of args for {name}: want {arity} got {}",
                        args.len() + piped
                    ));
                }
                Command::Call(func, args)
            }
            other if args.is_empty() && piped == 0 => Command::Value(operand(other)?),
            _ => return Err("can't give argument to non-function".into()),
        };
        cmds.push(cmd);
    }
    Ok(cmds)
}

fn operand(t: &Tok) -> Result<Operand, String> {
    match t {
        Tok::Field(f) => Ok(Operand::Field(f.clone())),
        Tok::Literal(l) => Ok(Operand::Literal(l.clone())),
        Tok::Ident(name) if name == "__line__" => Ok(Operand::Line),
        Tok::Ident(name) => Err(format!("function {name:?} used as an argument")),
        Tok::Pipe => Err("unexpected pipe".into()),
    }
}

fn resolve(op: &Operand, labels: &Labels, line: &[u8]) -> String {
    match op {
        Operand::Field(name) => labels.get(name).unwrap_or("").to_string(),
        Operand::Literal(s) => s.clone(),
        Operand::Line => String::from_utf8_lossy(line).into_owned(),
    }
}

/// Bytes `s` has once `n` of its matches of `from` (all when `None`) are
/// replaced by `to`, computed before replacing: a replacement that grows
/// the text is refused before it allocates.
fn replaced_len(s: &str, from: &str, to: &str, n: Option<usize>) -> usize {
    // An empty pattern matches before every char and at the end, as in Go.
    let matches = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(from).count()
    };
    let matches = n.map_or(matches, |n| n.min(matches));
    s.len()
        .saturating_sub(matches.saturating_mul(from.len()))
        .saturating_add(matches.saturating_mul(to.len()))
}

fn run(cmd: &Command, piped: Option<String>, labels: &Labels, line: &[u8], max: usize) -> Result<String, String> {
    let (func, args) = match cmd {
        Command::Value(op) => return Ok(resolve(op, labels, line)),
        Command::Call(func, args) => (func, args),
    };
    let mut a: Vec<String> = args.iter().map(|o| resolve(o, labels, line)).collect();
    a.extend(piped);
    let arg = |i: usize| a.get(i).map_or("", String::as_str);
    let int = |i: usize| {
        arg(i)
            .parse::<i64>()
            .map_err(|_| format!("expected an integer, got {:?}", arg(i)))
    };
    let within = |len: usize| if len > max { Err(too_long(max)) } else { Ok(()) };
    match func {
        Func::Replace => {
            let n = usize::try_from(int(3)?).ok();
            within(replaced_len(arg(0), arg(1), arg(2), n))?;
        }
        Func::SprigReplace => within(replaced_len(arg(2), arg(0), arg(1), None))?,
        _ => {}
    }
    Ok(match func {
        Func::Upper => arg(0).to_uppercase(),
        Func::Lower => arg(0).to_lowercase(),
        Func::Title => title(arg(0)),
        Func::TrimSpace => arg(0).trim().to_string(),
        Func::TrimPrefix => arg(0).strip_prefix(arg(1)).unwrap_or(arg(0)).to_string(),
        Func::TrimSuffix => arg(0).strip_suffix(arg(1)).unwrap_or(arg(0)).to_string(),
        Func::SprigTrimPrefix => arg(1).strip_prefix(arg(0)).unwrap_or(arg(1)).to_string(),
        Func::SprigTrimSuffix => arg(1).strip_suffix(arg(0)).unwrap_or(arg(1)).to_string(),
        Func::Replace => match usize::try_from(int(3)?) {
            Ok(n) => arg(0).replacen(arg(1), arg(2), n),
            Err(_) => arg(0).replace(arg(1), arg(2)),
        },
        Func::SprigReplace => arg(2).replace(arg(0), arg(1)),
        Func::Default => {
            if arg(1).is_empty() {
                arg(0).to_string()
            } else {
                arg(1).to_string()
            }
        }
        Func::Trunc => {
            let n = int(0)?;
            let s = arg(1);
            let count = s.chars().count();
            let keep = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX).min(count);
            if n >= 0 {
                s.chars().take(keep).collect()
            } else {
                s.chars().skip(count - keep).collect()
            }
        }
        Func::Line => String::from_utf8_lossy(line).into_owned(),
    })
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if at_word_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, pairs: &[(&str, &str)], line: &str) -> String {
        let labels: Labels = pairs.iter().copied().collect();
        Template::parse(t).unwrap().render(&labels, line.as_bytes()).unwrap()
    }

    #[test]
    fn fields_and_text() {
        assert_eq!(
            render("{{.level}} text {{ .msg }}!", &[("level", "warn"), ("msg", "hi")], ""),
            "warn text hi!"
        );
        assert_eq!(render("[{{.missing}}]", &[], ""), "[]");
        assert_eq!(render("no actions", &[], ""), "no actions");
    }

    #[test]
    fn pipes_and_functions() {
        let l = &[("a", "MiXed"), ("p", "/api/v1"), ("e", "")];
        assert_eq!(render("{{ .a | ToUpper }}", l, ""), "MIXED");
        assert_eq!(render("{{ ToLower .a }}", l, ""), "mixed");
        assert_eq!(render("{{ .e | default \"none\" }}", l, ""), "none");
        assert_eq!(render("{{ default \"none\" .a }}", l, ""), "MiXed");
        assert_eq!(render("{{ TrimPrefix .p \"/api\" }}", l, ""), "/v1");
        assert_eq!(render("{{ .p | trimPrefix \"/api\" | upper }}", l, ""), "/V1");
        assert_eq!(render("{{ .p | replace \"/\" \"_\" }}", l, ""), "_api_v1");
        assert_eq!(render("{{ Replace .p \"/\" \"_\" 1 }}", l, ""), "_api/v1");
        assert_eq!(render("{{ .a | trunc 2 }}", l, ""), "Mi");
        assert_eq!(render("{{ .a | trunc -2 }}", l, ""), "ed");
        assert_eq!(render("{{ title \"hello wide world\" }}", l, ""), "Hello Wide World");
        assert_eq!(render("{{ __line__ | upper }} / {{ __line__ }}", l, "ab"), "AB / ab");
    }

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(render("a  {{- .x -}}  b", &[("x", "X")], ""), "aXb");
        assert_eq!(render("a {{/* note */}}b", &[], ""), "a b");
        assert_eq!(render("{{ `raw\\n` }}", &[], ""), "raw\\n");
    }

    #[test]
    fn unsupported_constructs_are_errors() {
        for bad in [
            "{{ if .a }}x{{ end }}",
            "{{ $x := 1 }}",
            "{{ nosuch .a }}",
            "{{ .a",
            "{{ ToUpper }}",
            "{{ .a .b }}",
            "{{ . }}",
            "{{ .a.b }}",
            "{{ (ToUpper .a) }}",
            "{{ }}",
            "{{ \"abc }}",
            "{{ .a | }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn runtime_errors() {
        let t = Template::parse("{{ trunc .n .a }}").unwrap();
        let labels: Labels = [("n", "x")].into_iter().collect();
        assert!(t.render(&labels, b"").is_err());
    }
}
