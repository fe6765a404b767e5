//! [`Labels`]: the ordered name→value map that identifies a stream or a
//! series, and that pipeline stages read and extend.
//!
//! Why a module of its own: every layer passes label sets around (sources
//! hand them in, the pipeline mutates them, the evaluator groups by them),
//! so cloning must be cheap. The map sits behind an `Arc` and is copied only
//! when a clone is about to be changed (copy-on-write).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Name of the label a failing pipeline stage sets (Loki's `__error__`).
pub const ERROR_LABEL: &str = "__error__";
/// Name of the label holding a failing stage's message (Loki's `__error_details__`).
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";
/// Suffix Loki appends to a parsed label or a structured metadata name
/// that a stream label already has.
pub(crate) const EXTRACTED_SUFFIX: &str = "_extracted";

/// An ordered, cheaply clonable set of labels.
///
/// Ordering, equality and hashing are those of the sorted `(name, value)`
/// pairs, so `Labels` can key maps and sort result series deterministically.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<BTreeMap<String, String>>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Labels::default()
    }

    /// Whether `other` is this very set (a clone of it, not changed since):
    /// equal without comparing. Scans hand out one clone per stream, so a
    /// per-record check can be done once per stream.
    pub fn is_same_set(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// An identity of this very set (a clone shares it until changed), for
    /// memoizing what is derived from it; see [`Labels::is_same_set`].
    pub(crate) fn identity(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether `name` is present (even with an empty value).
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Sets `name` to `value`, replacing any previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        Arc::make_mut(&mut self.0).insert(name.into(), value.into());
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        // Avoid copying a shared map when there is nothing to remove.
        if !self.0.contains_key(name) {
            return None;
        }
        Arc::make_mut(&mut self.0).remove(name)
    }

    /// Keeps only the labels for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        if self.0.iter().all(|(k, v)| keep(k, v)) {
            return;
        }
        Arc::make_mut(&mut self.0).retain(|k, v| keep(k, v));
    }

    /// The labels in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the pipeline marked this set with `__error__`.
    pub fn has_error(&self) -> bool {
        self.contains(ERROR_LABEL)
    }

    /// Sets `__error__` (and `__error_details__` when `details` is not empty).
    pub(crate) fn set_error(&mut self, kind: &str, details: &str) {
        self.insert(ERROR_LABEL, kind);
        if !details.is_empty() {
            self.insert(ERROR_DETAILS_LABEL, details);
        }
    }

    /// Adds an entry's structured metadata to its stream's labels, as
    /// Loki does before the pipeline: a name the stream already has keeps
    /// the stream's value and the metadata goes to `<name>_extracted`
    /// (a parser that extracts the same name later takes that slot over,
    /// as in Loki: stream > metadata > parsed for the name, the reverse
    /// for `_extracted`).
    pub fn add_metadata(&mut self, metadata: &Labels) {
        for (name, value) in metadata.iter() {
            if self.contains(name) {
                self.insert(format!("{name}{EXTRACTED_SUFFIX}"), value);
            } else {
                self.insert(name, value);
            }
        }
    }

    /// A new set holding only the labels named in `names`.
    pub(crate) fn keep_only(&self, names: &[String]) -> Labels {
        names
            .iter()
            .filter_map(|n| self.get(n).map(|v| (n.clone(), v.to_string())))
            .collect()
    }

    /// A copy without the labels named in `names`.
    pub(crate) fn without(&self, names: &[String]) -> Labels {
        let mut out = self.clone();
        out.retain(|k, _| !names.iter().any(|n| n == k));
        out
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Labels(Arc::new(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect()))
    }
}

/// Prometheus' rendering: `{a="1", b="x\"y"}`, values quoted Go-style.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\r' => f.write_str("\\r")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whether `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Loki's `sanitizeLabelKey`: trims spaces, replaces every character outside
/// `[a-zA-Z0-9_]` with `_`, and (for a key that starts a label name)
/// prefixes a leading digit with `_`.
pub(crate) fn sanitize_label_name(key: &str, is_prefix: bool) -> String {
    let key = key.trim();
    let mut out = String::with_capacity(key.len() + 1);
    if is_prefix && key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_is_shared_until_written() {
        let mut a: Labels = [("app", "api"), ("env", "prod")].into_iter().collect();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        a.insert("level", "info");
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(b.len(), 2);
        assert_eq!(a.get("level"), Some("info"));
    }

    #[test]
    fn remove_and_retain_do_not_copy_when_nothing_changes() {
        let mut a: Labels = [("app", "api")].into_iter().collect();
        let b = a.clone();
        assert_eq!(a.remove("nope"), None);
        a.retain(|_, _| true);
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a.remove("app").as_deref(), Some("api"));
        assert!(a.is_empty());
    }

    #[test]
    fn display_is_prometheus_style() {
        let l: Labels = [("b", "x\"y"), ("a", "1")].into_iter().collect();
        assert_eq!(l.to_string(), r#"{a="1", b="x\"y"}"#);
        assert_eq!(Labels::new().to_string(), "{}");
    }

    #[test]
    fn metadata_yields_to_stream_labels() {
        // Loki's functions.logqltest: {app="a", env="prod"} with metadata
        // region="eu" env="canary" reads env="prod", env_extracted="canary".
        let mut l: Labels = [("app", "a"), ("env", "prod")].into_iter().collect();
        let m: Labels = [("region", "eu"), ("env", "canary")].into_iter().collect();
        l.add_metadata(&m);
        assert_eq!(
            l.to_string(),
            r#"{app="a", env="prod", env_extracted="canary", region="eu"}"#
        );
    }

    #[test]
    fn keep_only_and_without() {
        let l: Labels = [("a", "1"), ("b", "2"), ("c", "3")].into_iter().collect();
        assert_eq!(l.keep_only(&["a".into(), "z".into()]).to_string(), r#"{a="1"}"#);
        assert_eq!(l.without(&["a".into()]).to_string(), r#"{b="2", c="3"}"#);
    }

    #[test]
    fn sanitize_matches_loki() {
        assert_eq!(sanitize_label_name("status code", true), "status_code");
        assert_eq!(sanitize_label_name("1xx", true), "_1xx");
        assert_eq!(sanitize_label_name("1xx", false), "1xx");
        assert_eq!(sanitize_label_name(" k8s.pod-name ", true), "k8s_pod_name");
        assert_eq!(sanitize_label_name("ünï", true), "_n_");
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name(""));
        assert!(!is_valid_label_name("a-b"));
    }
}
