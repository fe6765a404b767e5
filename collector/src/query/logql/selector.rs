//! Stream selectors (`{app="api", env=~"prod|dev"}`) and their label
//! matchers, plus what the storage layer can learn from them without
//! running them: the topics they can touch and the label equalities an index
//! can prune with.
//!
//! Why a module of its own: matchers are used in three places (selectors,
//! string label filters, `drop`/`keep`), and the pruning helpers are the
//! contract with logpost's storage, so they deserve their own tests.
//!
//! Invariant: a regex matcher's compiled regex is anchored (`^(?:re)$`), as
//! in Prometheus and Loki, and compiled once, when the query is parsed.

use regex::Regex;

use crate::query::logql::labels::Labels;

/// The label logpost stores each record's topic under.
pub const TOPIC_LABEL: &str = "topic";

/// How a [`Matcher`] compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `=~` (anchored regex)
    Re,
    /// `!~` (anchored regex)
    Nre,
}

impl MatchOp {
    /// The operator as written in LogQL.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// One `name op "value"` condition on a label.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or regex source as written (unescaped).
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher, compiling (and anchoring) the regex for `=~`/`!~`.
    ///
    /// # Errors
    /// The regex does not compile.
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Self, regex::Error> {
        let value = value.into();
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(crate::query::logql::limits::compile_regex(&format!("^(?:{value})$"))?),
            MatchOp::Eq | MatchOp::Neq => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// Whether a label value satisfies the matcher. A missing label
    /// (`None`) behaves as the empty string, as in Prometheus and Loki.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match (&self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Neq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::Nre, Some(re)) => !re.is_match(v),
            // `new` always compiles a regex for the regex operators.
            (MatchOp::Re | MatchOp::Nre, None) => false,
        }
    }

    /// Whether the matcher accepts the empty string (and so a missing label).
    pub fn matches_empty(&self) -> bool {
        self.matches(None)
    }

    /// For `=~` with a regex that is a plain alternation of literals
    /// (`a|b|c`, optionally in one group), those literals.
    fn literal_alternatives(&self) -> Option<Vec<String>> {
        if self.op != MatchOp::Re {
            return None;
        }
        let mut body = self.value.as_str();
        for (open, close) in [("(?:", ")"), ("(", ")")] {
            if let Some(inner) = body.strip_prefix(open).and_then(|b| b.strip_suffix(close)) {
                body = inner;
                break;
            }
        }
        body.split('|')
            .map(|alt| is_plain_literal(alt).then(|| alt.to_string()))
            .collect()
    }
}

/// Whether `s` matches only itself as a regex. (`regex::escape` is too
/// strict here: it also escapes `-`, which is literal outside a class and
/// common in topic names.)
pub(crate) fn is_plain_literal(s: &str) -> bool {
    !s.contains(|c: char| "\\.+*?()|[]{}^$".contains(c))
}

/// A stream selector: every matcher must hold.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// The matchers, in query order.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Whether a stream with `labels` is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels.get(&m.name)))
    }

    /// The topics this selector can match, when the query pins them down
    /// with `topic="x"` or `topic=~"a|b"` (a plain alternation); other
    /// `topic` matchers then narrow that set further. `None` means any
    /// topic may match. An empty list means none can.
    pub fn topics(&self) -> Option<Vec<String>> {
        let topic_matchers = || self.matchers.iter().filter(|m| m.name == TOPIC_LABEL);
        let mut candidates: Option<Vec<String>> = None;
        for m in topic_matchers() {
            let set = match m.op {
                MatchOp::Eq => vec![m.value.clone()],
                MatchOp::Re => match m.literal_alternatives() {
                    Some(alts) => alts,
                    None => continue,
                },
                MatchOp::Neq | MatchOp::Nre => continue,
            };
            candidates = Some(match candidates {
                None => set,
                Some(prev) => prev.into_iter().filter(|t| set.contains(t)).collect(),
            });
        }
        let mut topics = candidates?;
        topics.retain(|t| topic_matchers().all(|m| m.matches(Some(t))));
        topics.sort();
        topics.dedup();
        Some(topics)
    }

    /// `(name, value)` of every `name="value"` matcher with a non-empty
    /// value: labels every selected stream must carry with exactly that
    /// value, for index-based pruning. (`name=""` means "label absent" and
    /// is left out.)
    pub fn required_equalities(&self) -> Vec<(&str, &str)> {
        self.matchers
            .iter()
            .filter(|m| m.op == MatchOp::Eq && !m.value.is_empty())
            .map(|m| (m.name.as_str(), m.value.as_str()))
            .collect()
    }

    /// Loki refuses selectors whose matchers all accept the empty string
    /// (they would select every stream); logpost also accepts them when a
    /// matcher is on `topic`, because topics are few and listing them is cheap.
    pub(crate) fn is_acceptable(&self) -> bool {
        self.matchers
            .iter()
            .any(|m| !m.matches_empty() || m.name == TOPIC_LABEL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(name, op, value).unwrap()
    }

    fn sel(ms: Vec<Matcher>) -> Selector {
        Selector { matchers: ms }
    }

    #[test]
    fn missing_label_is_empty_string() {
        assert!(m("a", MatchOp::Eq, "").matches(None));
        assert!(!m("a", MatchOp::Neq, "").matches(None));
        assert!(m("a", MatchOp::Re, ".*").matches(None));
        assert!(!m("a", MatchOp::Re, ".+").matches(None));
        assert!(m("a", MatchOp::Nre, ".+").matches(None));
    }

    #[test]
    fn regexes_are_anchored() {
        let re = m("a", MatchOp::Re, "api|web");
        assert!(re.matches(Some("api")));
        assert!(!re.matches(Some("api2")));
        assert!(!re.matches(Some("xweb")));
        assert!(m("a", MatchOp::Nre, "api").matches(Some("api2")));
        assert!(m("a", MatchOp::Re, "(?i)API").matches(Some("api")));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(Matcher::new("a", MatchOp::Re, "(").is_err());
    }

    #[test]
    fn selector_matches_all() {
        let s = sel(vec![m("app", MatchOp::Eq, "api"), m("env", MatchOp::Neq, "dev")]);
        let l: Labels = [("app", "api"), ("env", "prod")].into_iter().collect();
        assert!(s.matches(&l));
        let l: Labels = [("app", "api"), ("env", "dev")].into_iter().collect();
        assert!(!s.matches(&l));
        let l: Labels = [("app", "api")].into_iter().collect();
        assert!(s.matches(&l));
    }

    #[test]
    fn topics_from_equality_and_alternation() {
        let s = sel(vec![m("topic", MatchOp::Eq, "corpus")]);
        assert_eq!(s.topics(), Some(vec!["corpus".to_string()]));
        let s = sel(vec![m("topic", MatchOp::Re, "b|a|c"), m("topic", MatchOp::Neq, "c")]);
        assert_eq!(s.topics(), Some(vec!["a".to_string(), "b".to_string()]));
        let s = sel(vec![m("topic", MatchOp::Re, "(?:a|b)"), m("topic", MatchOp::Re, "b|c")]);
        assert_eq!(s.topics(), Some(vec!["b".to_string()]));
        let s = sel(vec![m("topic", MatchOp::Eq, "a"), m("topic", MatchOp::Eq, "b")]);
        assert_eq!(s.topics(), Some(vec![]));
        let s = sel(vec![m("topic", MatchOp::Re, "web.*"), m("app", MatchOp::Eq, "x")]);
        assert_eq!(s.topics(), None);
        let s = sel(vec![m("topic", MatchOp::Re, "web.*|a"), m("topic", MatchOp::Eq, "a")]);
        assert_eq!(s.topics(), Some(vec!["a".to_string()]));
        assert_eq!(sel(vec![m("app", MatchOp::Eq, "x")]).topics(), None);
        assert_eq!(sel(vec![m("topic", MatchOp::Neq, "x")]).topics(), None);
    }

    #[test]
    fn dashes_are_literal_in_alternations() {
        let s = sel(vec![m("topic", MatchOp::Re, "web-access|api-log")]);
        assert_eq!(s.topics(), Some(vec!["api-log".to_string(), "web-access".to_string()]));
        let s = sel(vec![m("topic", MatchOp::Re, "web.access")]);
        assert_eq!(s.topics(), None);
    }

    #[test]
    fn required_equalities_skip_empty_and_non_equality() {
        let s = sel(vec![
            m("app", MatchOp::Eq, "api"),
            m("env", MatchOp::Eq, ""),
            m("pod", MatchOp::Re, "x.*"),
            m("topic", MatchOp::Eq, "t"),
        ]);
        assert_eq!(s.required_equalities(), vec![("app", "api"), ("topic", "t")]);
    }

    #[test]
    fn acceptability() {
        assert!(!sel(vec![]).is_acceptable());
        assert!(!sel(vec![m("a", MatchOp::Re, ".*")]).is_acceptable());
        assert!(!sel(vec![m("a", MatchOp::Neq, "x")]).is_acceptable());
        assert!(sel(vec![m("a", MatchOp::Re, ".+")]).is_acceptable());
        assert!(sel(vec![m("topic", MatchOp::Re, ".*")]).is_acceptable());
    }
}
