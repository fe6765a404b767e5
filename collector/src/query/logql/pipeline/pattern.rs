//! Loki's `pattern` language: `<ip> - - [<_>] "<method> <path> <_>" <status>`.
//! `<name>` captures, `<_>` skips, everything else is literal text.
//!
//! Why a module of its own: both the `| pattern` parser stage and the
//! `|>`/`!>` line filters use the language, with different matching rules.
//!
//! Parser semantics follow Loki's matcher exactly: a leading literal must be
//! at the start of the line; each capture extends to the *first* following
//! occurrence of the next literal; if a literal is missing, the current
//! capture takes the rest of the line and matching stops (captures found so
//! far are kept). Filters follow Loki's `Matcher.Test` instead (see
//! [`PatternFilter`]).

use crate::query::logql::labels::{Labels, is_valid_label_name};
use crate::query::logql::pipeline::{line_text, set_extracted};

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Literal(Vec<u8>),
    /// `None` for `<_>`.
    Capture(Option<String>),
}

/// Splits a pattern into literals and captures. A `<` that does not start
/// `<identifier>` is literal text, as in Loki's lexer.
fn parse_nodes(pattern: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut literal = String::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(name) = capture_name(rest)
        {
            if !literal.is_empty() {
                nodes.push(Node::Literal(std::mem::take(&mut literal).into_bytes()));
            }
            let skip = name.len() + 2;
            nodes.push(Node::Capture((name != "_").then(|| name.to_string())));
            rest = rest.get(skip..).unwrap_or("");
            continue;
        }
        literal.push(c);
        rest = rest.get(c.len_utf8()..).unwrap_or("");
    }
    if !literal.is_empty() {
        nodes.push(Node::Literal(literal.into_bytes()));
    }
    nodes
}

/// The identifier of a `<identifier>` at the start of `s`.
fn capture_name(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('<')?;
    let end = inner.find('>')?;
    let name = inner.get(..end)?;
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then_some(name)
}

/// The `| pattern "..."` parser stage.
#[derive(Debug, Clone)]
pub struct PatternParser {
    nodes: Vec<Node>,
}

impl PatternParser {
    /// Compiles a pattern.
    ///
    /// # Errors
    /// No named capture, two captures in a row, a duplicate or invalid name.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        let nodes = parse_nodes(pattern);
        let names: Vec<&String> = nodes
            .iter()
            .filter_map(|n| match n {
                Node::Capture(Some(name)) => Some(name),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err("at least one capture is required".into());
        }
        if nodes
            .windows(2)
            .any(|w| matches!(w, [Node::Capture(_), Node::Capture(_)]))
        {
            return Err("found consecutive capture: invalid expression".into());
        }
        for (i, name) in names.iter().enumerate() {
            if !is_valid_label_name(name) {
                return Err(format!("invalid capture label name '{name}'"));
            }
            if names.iter().skip(i + 1).any(|other| other == name) {
                return Err(format!("duplicate capture name ({name}): invalid expression"));
            }
        }
        Ok(PatternParser { nodes })
    }

    /// The named captures found in `line` (Loki's matching rules).
    fn matches<'l>(&'l self, mut line: &'l [u8]) -> Vec<(&'l str, &'l [u8])> {
        let mut out = Vec::new();
        let mut nodes = self.nodes.as_slice();
        if line.is_empty() {
            return out;
        }
        if let Some((Node::Literal(lit), tail)) = nodes.split_first() {
            match line.strip_prefix(lit.as_slice()) {
                Some(rest) => line = rest,
                None => return out,
            }
            nodes = tail;
        }
        while let Some((node, tail)) = nodes.split_first() {
            let Node::Capture(name) = node else {
                // Captures and literals alternate after the first node.
                return out;
            };
            let Some((Node::Literal(lit), after)) = tail.split_first() else {
                if let Some(name) = name {
                    out.push((name.as_str(), line));
                }
                return out;
            };
            match find(line, lit) {
                Some(i) => {
                    if let Some(name) = name {
                        out.push((name.as_str(), line.get(..i).unwrap_or_default()));
                    }
                    line = line.get(i + lit.len()..).unwrap_or_default();
                }
                None => {
                    if let Some(name) = name {
                        out.push((name.as_str(), line));
                    }
                    return out;
                }
            }
            nodes = after;
        }
        out
    }

    pub(crate) fn process(&self, line: &[u8], labels: &mut Labels, stream: &Labels) {
        for (name, value) in self.matches(line) {
            set_extracted(labels, stream, name, line_text(value).into_owned());
        }
    }
}

/// First index of `needle` in `hay` (Go's `bytes.Index`).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// A whole-line pattern test for `|>` / `!>` filters, Loki's
/// `pattern.Matcher.Test`: each literal is looked for (first occurrence)
/// after the previous one; a literal that follows a capture must not
/// follow it directly (captures are never empty); a pattern ending in a
/// literal must end the line, one ending in a capture must not. The first
/// literal may be anywhere. An empty pattern matches only the empty line,
/// and no other pattern matches an empty line.
#[derive(Debug, Clone)]
pub struct PatternFilter {
    nodes: Vec<Node>,
}

impl PatternFilter {
    /// Compiles a filter pattern.
    ///
    /// # Errors
    /// Loki's: a named capture (`<name>`; filters take `<_>` only), or two
    /// captures in a row.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        let nodes = parse_nodes(pattern);
        for pair in nodes.windows(2) {
            if let [Node::Capture(a), Node::Capture(b)] = pair {
                let show = |c: &Option<String>| format!("<{}>", c.as_deref().unwrap_or("_"));
                return Err(format!(
                    "found consecutive capture '{}{}': invalid expression",
                    show(a),
                    show(b)
                ));
            }
        }
        if let Some(Node::Capture(Some(name))) = nodes.iter().find(|n| matches!(n, Node::Capture(Some(_)))) {
            return Err(format!("named captures are not allowed: found '<{name}>'"));
        }
        Ok(PatternFilter { nodes })
    }

    pub(crate) fn is_match(&self, line: &[u8]) -> bool {
        if line.is_empty() || self.nodes.is_empty() {
            return line.is_empty() && self.nodes.is_empty();
        }
        let mut off = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            let Node::Literal(lit) = node else { continue };
            let Some(j) = line.get(off..).and_then(|rest| find(rest, lit)) else {
                return false;
            };
            if i != 0 && j == 0 {
                return false;
            }
            off += j + lit.len();
        }
        let ends_in_capture = matches!(self.nodes.last(), Some(Node::Capture(_)));
        ends_in_capture == (off != line.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(p: &str, line: &str) -> Vec<(String, String)> {
        PatternParser::new(p)
            .unwrap()
            .matches(line.as_bytes())
            .into_iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn nginx_access_line() {
        let line = r#"192.168.1.1 - - [10/Oct/2023:13:55:36 +0000] "GET /api/v1/users HTTP/1.1" 200 1234"#;
        let got = caps(r#"<ip> - - [<_>] "<method> <path> <_>" <status> <size>"#, line);
        assert_eq!(
            got,
            kv(&[
                ("ip", "192.168.1.1"),
                ("method", "GET"),
                ("path", "/api/v1/users"),
                ("status", "200"),
                ("size", "1234")
            ])
        );
    }

    #[test]
    fn leading_literal_must_match_at_start() {
        assert_eq!(caps("level=<level> ", "xlevel=info msg"), vec![]);
        assert_eq!(caps("level=<level> ", "level=info msg"), kv(&[("level", "info")]));
    }

    #[test]
    fn missing_literal_takes_rest_and_stops() {
        assert_eq!(
            caps("<a> | <b> | <c>", "x | y and more"),
            kv(&[("a", "x"), ("b", "y and more")])
        );
    }

    #[test]
    fn first_occurrence_wins() {
        assert_eq!(caps("<a>,<b>", "1,2,3"), kv(&[("a", "1"), ("b", "2,3")]));
    }

    #[test]
    fn angle_brackets_that_are_not_captures_are_literal() {
        assert_eq!(caps("<a> <=> <b>", "x <=> y"), kv(&[("a", "x"), ("b", "y")]));
    }

    #[test]
    fn invalid_patterns() {
        assert!(PatternParser::new("no captures").is_err());
        assert!(PatternParser::new("<_> only").is_err());
        assert!(PatternParser::new("<a><b>").is_err());
        assert!(PatternParser::new("<a> <a>").is_err());
    }

    #[test]
    fn process_sets_extracted_suffix_on_collision() {
        let p = PatternParser::new("<app> <level>").unwrap();
        let stream: Labels = [("app", "api")].into_iter().collect();
        let mut labels = stream.clone();
        p.process(b"web info", &mut labels, &stream);
        assert_eq!(labels.get("app"), Some("api"));
        assert_eq!(labels.get("app_extracted"), Some("web"));
        assert_eq!(labels.get("level"), Some("info"));
    }

    #[test]
    fn filter_follows_loki_test() {
        let m = |p: &str, line: &str| PatternFilter::new(p).unwrap().is_match(line.as_bytes());
        // Loki's pattern_test.go comments and cases.
        assert!(!m("<_> bar", "foo bar baz"));
        assert!(m("<_> baz", "foo bar baz"));
        assert!(m("foo <_>", "foo bar baz"));
        assert!(!m("<_> bar <_>", " bar "));
        assert!(m("<_>bar<_>", " bar "));
        assert!(m("<_> error <_>", "a error b"));
        assert!(!m("<_> error <_>", "a errors"));
        assert!(m("GET <_>", "GET /x\nmore"));
        assert!(!m("GET <_>", "POST /x"));
        // No backtracking: the first "ab" is taken and the line goes on.
        assert!(!m("<_>ab", "xabab"));
        // The first literal is not anchored.
        assert!(m("foo <_>", "xx foo bar"));
        // Only an empty pattern matches an empty line, and nothing else.
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(!m("<_>", ""));
        assert!(m("<_>", "anything"));
    }

    #[test]
    fn filter_pattern_errors_are_lokis() {
        assert_eq!(
            PatternFilter::new("<_> <ip>").unwrap_err(),
            "named captures are not allowed: found '<ip>'"
        );
        assert_eq!(
            PatternFilter::new("a <_><_>").unwrap_err(),
            "found consecutive capture '<_><_>': invalid expression"
        );
    }
}
