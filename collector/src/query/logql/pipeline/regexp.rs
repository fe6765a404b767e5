//! The `| regexp "(?P<name>re)"` parser stage: each named group of the
//! first match becomes a label.
//!
//! Why a module of its own: it owns Loki's rules for which regexes are
//! acceptable (at least one named group, valid label names) and what a
//! non-match does (nothing: the line passes with no new labels and no error).

use regex::bytes::Regex;

use crate::query::logql::labels::{Labels, is_valid_label_name, sanitize_label_name};
use crate::query::logql::pipeline::{line_text, set_extracted};

/// A compiled `regexp` stage.
#[derive(Debug, Clone)]
pub struct RegexpParser {
    re: Regex,
    /// `(group index, label name)` of every named group.
    names: Vec<(usize, String)>,
}

impl RegexpParser {
    /// Compiles the stage's regex.
    ///
    /// # Errors
    /// The regex is invalid, has no named group, or a group name is not a
    /// valid label name.
    pub(crate) fn new(source: &str) -> Result<Self, String> {
        let re = crate::query::logql::limits::compile_bytes_regex(source)
            .map_err(|e| crate::query::logql::parser::regex_error(source, &e))?;
        let mut names = Vec::new();
        for (i, name) in re.capture_names().enumerate() {
            if let Some(name) = name {
                if !is_valid_label_name(name) {
                    return Err(format!("invalid extracted label name '{name}'"));
                }
                names.push((i, sanitize_label_name(name, true)));
            }
        }
        if names.is_empty() {
            return Err("at least one named capture must be supplied".into());
        }
        Ok(RegexpParser { re, names })
    }

    pub(crate) fn process(&self, line: &[u8], labels: &mut Labels, stream: &Labels) {
        let Some(caps) = self.re.captures(line) else {
            return;
        };
        for (i, name) in &self.names {
            // A group that did not take part in the match yields "", as in Go.
            let value = caps.get(*i).map_or(&b""[..], |m| m.as_bytes());
            set_extracted(labels, stream, name, line_text(value).into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_named_groups() {
        let p = RegexpParser::new(r"(?P<method>\w+) (?P<path>\S+) (?:(?P<code>\d+))?").unwrap();
        let stream = Labels::new();
        let mut labels = Labels::new();
        p.process(b"GET /index.html x", &mut labels, &stream);
        assert_eq!(labels.get("method"), Some("GET"));
        assert_eq!(labels.get("path"), Some("/index.html"));
        assert_eq!(labels.get("code"), Some(""));
    }

    #[test]
    fn no_match_adds_nothing() {
        let p = RegexpParser::new(r"^(?P<n>\d+)$").unwrap();
        let mut labels = Labels::new();
        p.process(b"abc", &mut labels, &Labels::new());
        assert!(labels.is_empty());
    }

    #[test]
    fn rejects_unnamed_and_bad() {
        assert!(RegexpParser::new(r"(\d+)").unwrap_err().contains("named capture"));
        assert!(RegexpParser::new(r"(?P<a>(").is_err());
    }
}
