//! The `| logfmt [--strict] [--keep-empty] [a, b="key"]` parser stage.
//!
//! Why a module of its own: it owns a logfmt decoder with go-logfmt's
//! tokenisation (the one Loki adapted) and Loki's modes on top of it. By
//! default a malformed pair is skipped and parsing goes on; with `--strict`
//! parsing stops at the first malformed pair and the line gets
//! `__error__="LogfmtParserErr"`. A bare key (`debug` with no `=`) is
//! dropped unless `--keep-empty` is given; `key=` always yields `""`.

use std::borrow::Cow;

use crate::query::logql::labels::{Labels, sanitize_label_name};
use crate::query::logql::pipeline::json_scan::unescape_with;
use crate::query::logql::pipeline::set_extracted;

/// The error Loki records for a line `--strict` logfmt cannot read.
const LOGFMT_PARSER_ERR: &str = "LogfmtParserErr";

/// One decoded `key[=value]` pair; `value` is `None` for a bare key.
type Pair<'a> = (&'a [u8], Option<Cow<'a, [u8]>>);

/// A go-logfmt style tokenizer over one line.
struct Decoder<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn at(&self, i: usize) -> Option<u8> {
        self.line.get(i).copied()
    }

    fn skip_to_space(&mut self) {
        while self.at(self.pos).is_some_and(|c| c > b' ') {
            self.pos += 1;
        }
    }

    fn syntax_error(&mut self, msg: String) -> Option<Result<Pair<'a>, String>> {
        let at = self.pos + 1;
        self.skip_to_space();
        Some(Err(format!("logfmt syntax error at pos {at} : {msg}")))
    }

    /// The next pair, an error for a malformed one, or `None` at the end.
    fn next_pair(&mut self) -> Option<Result<Pair<'a>, String>> {
        while self.at(self.pos)? <= b' ' {
            self.pos += 1;
        }
        let start = self.pos;
        loop {
            match self.at(self.pos) {
                None => return Some(Ok((self.line.get(start..)?, None))),
                Some(c) if c <= b' ' => {
                    return Some(Ok((self.line.get(start..self.pos)?, None)));
                }
                Some(b'"') => return self.syntax_error("unexpected '\"'".into()),
                Some(b'=') if self.pos == start => {
                    return self.syntax_error("unexpected '='".into());
                }
                Some(b'=') => break,
                Some(_) => self.pos += 1,
            }
        }
        let key = self.line.get(start..self.pos)?;
        self.pos += 1;
        match self.at(self.pos) {
            None => Some(Ok((key, Some(Cow::Borrowed(&b""[..]))))),
            Some(c) if c <= b' ' => Some(Ok((key, Some(Cow::Borrowed(&b""[..]))))),
            Some(b'"') => self.quoted(key),
            Some(_) => {
                let vstart = self.pos;
                while let Some(c) = self.at(self.pos) {
                    if c <= b' ' {
                        break;
                    }
                    if c == b'=' || c == b'"' {
                        return self.syntax_error(format!("unexpected {:?}", char::from(c)));
                    }
                    self.pos += 1;
                }
                Some(Ok((key, Some(Cow::Borrowed(self.line.get(vstart..self.pos)?)))))
            }
        }
    }

    fn quoted(&mut self, key: &'a [u8]) -> Option<Result<Pair<'a>, String>> {
        let open = self.pos;
        self.pos += 1;
        let mut escaped = false;
        loop {
            match self.at(self.pos) {
                None => {
                    let at = self.pos + 1;
                    return Some(Err(format!(
                        "logfmt syntax error at pos {at} : unterminated quoted value"
                    )));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(b'"') => break,
                Some(_) => self.pos += 1,
            }
        }
        let raw = self.line.get(open + 1..self.pos)?;
        self.pos += 1;
        if !escaped {
            return Some(Ok((key, Some(Cow::Borrowed(raw)))));
        }
        match unescape_with(raw, true) {
            Some(v) => Some(Ok((key, Some(Cow::Owned(v.into_bytes()))))),
            None => self.syntax_error("invalid quoted value".into()),
        }
    }
}

/// The compiled `logfmt` stage.
#[derive(Debug, Clone, Default)]
pub struct LogfmtParser {
    strict: bool,
    keep_empty: bool,
    /// `(label, key)` pairs of the extraction form.
    fields: Option<Vec<(String, String)>>,
}

impl LogfmtParser {
    pub(crate) fn new(strict: bool, keep_empty: bool, fields: Option<Vec<(String, String)>>) -> Self {
        LogfmtParser {
            strict,
            keep_empty,
            fields,
        }
    }

    pub(crate) fn process(&self, line: &[u8], labels: &mut Labels, stream: &Labels) {
        if let Some(fields) = &self.fields {
            // Loki gives every requested label a value, even when absent.
            for (label, _) in fields {
                if !stream.contains(label) {
                    labels.insert(label.as_str(), "");
                }
            }
        }
        let mut dec = Decoder { line, pos: 0 };
        while let Some(pair) = dec.next_pair() {
            let (key, value) = match pair {
                Ok(p) => p,
                Err(e) if self.strict => {
                    labels.set_error(LOGFMT_PARSER_ERR, &e);
                    return;
                }
                Err(_) => continue,
            };
            let value = match value {
                // Invalid UTF-8 would become U+FFFD, which Prometheus rejects;
                // Loki stores the empty string instead.
                Some(v) => std::str::from_utf8(&v).map(str::to_string).unwrap_or_default(),
                None if self.keep_empty => String::new(),
                None => continue,
            };
            let key = String::from_utf8_lossy(key);
            match &self.fields {
                None => {
                    let name = sanitize_label_name(&key, true);
                    set_extracted(labels, stream, &name, value);
                }
                Some(fields) => {
                    for (label, wanted) in fields {
                        if *wanted == key {
                            set_extracted(labels, stream, label, value.clone());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &LogfmtParser, line: &str) -> String {
        let mut labels = Labels::new();
        p.process(line.as_bytes(), &mut labels, &Labels::new());
        labels.to_string()
    }

    #[test]
    fn realistic_line_with_quotes() {
        let line = r#"ts=2024-01-01T00:00:00Z level=error msg="request failed: \"timeout\"" duration=1.5s status=503 path=/api/v1"#;
        assert_eq!(
            run(&LogfmtParser::default(), line),
            r#"{duration="1.5s", level="error", msg="request failed: \"timeout\"", path="/api/v1", status="503", ts="2024-01-01T00:00:00Z"}"#
        );
    }

    #[test]
    fn bare_keys_and_empty_values() {
        assert_eq!(run(&LogfmtParser::default(), "a=1 debug b="), r#"{a="1", b=""}"#);
        let keep = LogfmtParser::new(false, true, None);
        assert_eq!(run(&keep, "a=1 debug b="), r#"{a="1", b="", debug=""}"#);
    }

    #[test]
    fn malformed_pairs_are_skipped_unless_strict() {
        let line = r#"a=1 b=x=y c="unterminated"#;
        assert_eq!(
            run(&LogfmtParser::default(), r#"a=1 b=x=y c=3 =oops d=4"#),
            r#"{a="1", c="3", d="4"}"#
        );
        let strict = LogfmtParser::new(true, false, None);
        let out = run(&strict, line);
        assert!(out.contains(r#"__error__="LogfmtParserErr""#), "{out}");
        assert!(out.contains(r#"a="1""#), "{out}");
        assert!(!out.contains("c="), "{out}");
        assert!(run(&strict, r#"x="open"#).contains("unterminated quoted value"));
    }

    #[test]
    fn keys_sanitized_and_collisions_suffixed() {
        let stream: Labels = [("level", "info")].into_iter().collect();
        let mut labels = stream.clone();
        LogfmtParser::default().process(b"level=warn http.status=200 1x=y", &mut labels, &stream);
        assert_eq!(
            labels.to_string(),
            r#"{_1x="y", http_status="200", level="info", level_extracted="warn"}"#
        );
    }

    #[test]
    fn extraction_form() {
        let p = LogfmtParser::new(
            false,
            false,
            Some(vec![("lvl".into(), "level".into()), ("gone".into(), "nope".into())]),
        );
        assert_eq!(run(&p, "level=info msg=hi"), r#"{gone="", lvl="info"}"#);
    }

    #[test]
    fn invalid_utf8_value_becomes_empty() {
        let mut labels = Labels::new();
        LogfmtParser::default().process(b"a=\xff\xfe b=ok", &mut labels, &Labels::new());
        assert_eq!(labels.to_string(), r#"{a="", b="ok"}"#);
    }
}
