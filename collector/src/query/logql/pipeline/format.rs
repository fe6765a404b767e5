//! Stages that reshape a line or its labels rather than parse it:
//! `line_format`, `label_format`, `drop`, `keep` and `decolorize`.
//!
//! Why a module of its own: these stages share Loki's rules for templates
//! at run time (a template that fails to render marks the line with
//! `__error__="TemplateFormatErr"` and leaves it unchanged; so does one
//! whose line, or labels, would pass `query.max_line_bytes`) and for label
//! sets (`keep` never removes the error labels, so errors stay visible).

use regex::bytes::Regex;

use crate::query::logql::labels::{ERROR_DETAILS_LABEL, ERROR_LABEL, Labels};
use crate::query::logql::pipeline::template::Template;
use crate::query::logql::selector::Matcher;

/// The error Loki records when a template fails to render.
const TEMPLATE_FORMAT_ERR: &str = "TemplateFormatErr";

/// `| line_format "template"`.
#[derive(Debug, Clone)]
pub struct LineFormat {
    template: Template,
}

impl LineFormat {
    pub(crate) fn new(template: Template) -> Self {
        LineFormat { template }
    }

    /// The new line, or `None` (line unchanged) when rendering failed.
    pub(crate) fn process(&self, line: &[u8], labels: &mut Labels) -> Option<Vec<u8>> {
        match self.template.render(labels, line) {
            Ok(s) => Some(s.into_bytes()),
            Err(e) => {
                labels.set_error(TEMPLATE_FORMAT_ERR, &e);
                None
            }
        }
    }
}

/// What one `label_format` assignment does.
#[derive(Debug, Clone)]
pub enum LabelFormatKind {
    /// `dst=src`: move the value of `src` to `dst`.
    Rename(String),
    /// `dst="{{...}}"`: render a template.
    Template(Template),
}

/// `| label_format dst=src, dst2="{{.x}}"`.
#[derive(Debug, Clone)]
pub struct LabelFormat {
    assignments: Vec<(String, LabelFormatKind)>,
}

impl LabelFormat {
    pub(crate) fn new(assignments: Vec<(String, LabelFormatKind)>) -> Self {
        LabelFormat { assignments }
    }

    /// Loki's order of effects: assignments run left to right; a rename
    /// moves the value at once (so a later assignment sees it moved), while
    /// templates all read one snapshot taken at the first template.
    pub(crate) fn process(&self, line: &[u8], labels: &mut Labels) {
        let mut snapshot: Option<Labels> = None;
        for (dst, kind) in &self.assignments {
            match kind {
                LabelFormatKind::Rename(src) => {
                    if let Some(v) = labels.get(src).map(str::to_string) {
                        labels.insert(dst.as_str(), v);
                        if src != dst {
                            labels.remove(src);
                        }
                    }
                }
                LabelFormatKind::Template(t) => {
                    let data = snapshot.get_or_insert_with(|| labels.clone());
                    // The labels, with the new value, stay within the line
                    // budget: otherwise each assignment could add that much.
                    let others: usize = labels
                        .iter()
                        .filter(|(k, _)| *k != dst)
                        .map(|(k, v)| k.len() + v.len())
                        .sum();
                    match t.render_within(data, line, t.max_bytes().saturating_sub(others)) {
                        Ok(v) => labels.insert(dst.as_str(), v),
                        Err(e) => labels.set_error(TEMPLATE_FORMAT_ERR, &e),
                    }
                }
            }
        }
    }
}

/// A `drop`/`keep` argument: a bare name, or a matcher on the value.
#[derive(Debug, Clone)]
pub(crate) enum NamedMatcher {
    Name(String),
    Matcher(Matcher),
}

impl NamedMatcher {
    fn name(&self) -> &str {
        match self {
            NamedMatcher::Name(n) => n,
            NamedMatcher::Matcher(m) => &m.name,
        }
    }

    /// Whether this argument selects the label `name` with `value`.
    fn selects(&self, name: &str, value: &str) -> bool {
        match self {
            NamedMatcher::Name(n) => n == name,
            NamedMatcher::Matcher(m) => m.name == name && m.matches(Some(value)),
        }
    }
}

/// `| drop a, b="x"`: removes the named labels (those with a matcher only
/// when their value matches).
#[derive(Debug, Clone)]
pub struct DropLabels {
    targets: Vec<NamedMatcher>,
}

impl DropLabels {
    pub(crate) fn new(targets: Vec<NamedMatcher>) -> Self {
        DropLabels { targets }
    }

    pub(crate) fn process(&self, labels: &mut Labels) {
        let dropped_error = self.targets.iter().any(|t| t.name() == ERROR_LABEL)
            && labels
                .get(ERROR_LABEL)
                .is_some_and(|v| self.targets.iter().any(|t| t.selects(ERROR_LABEL, v)));
        labels.retain(|k, v| !self.targets.iter().any(|t| t.selects(k, v)));
        // Dropping the error drops its details too, or they would dangle.
        if dropped_error {
            labels.remove(ERROR_DETAILS_LABEL);
        }
    }
}

/// `| keep a, b="x"`: keeps only the named labels (and the error labels).
#[derive(Debug, Clone)]
pub struct KeepLabels {
    targets: Vec<NamedMatcher>,
}

impl KeepLabels {
    pub(crate) fn new(targets: Vec<NamedMatcher>) -> Self {
        KeepLabels { targets }
    }

    pub(crate) fn process(&self, labels: &mut Labels) {
        labels.retain(|k, v| {
            k == ERROR_LABEL || k == ERROR_DETAILS_LABEL || self.targets.iter().any(|t| t.selects(k, v))
        });
    }
}

/// `| decolorize`: strips ANSI colour escape sequences from the line.
#[derive(Debug, Clone)]
pub struct Decolorize {
    re: Regex,
}

impl Decolorize {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        Ok(Decolorize {
            re: Regex::new(r"\x1b\[[0-9;]*[A-Za-z]")?,
        })
    }

    /// The line without escapes, or `None` when there were none.
    pub(crate) fn process(&self, line: &[u8]) -> Option<Vec<u8>> {
        if !self.re.is_match(line) {
            return None;
        }
        Some(self.re.replace_all(line, &b""[..]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logql::selector::MatchOp;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn line_format_renders_and_marks_failures() {
        let f = LineFormat::new(Template::parse("{{.a}}-{{ .b | upper }}").unwrap());
        let mut l = labels(&[("a", "x"), ("b", "y")]);
        assert_eq!(f.process(b"orig", &mut l).as_deref(), Some(&b"x-Y"[..]));
        let f = LineFormat::new(Template::parse("{{ trunc .a .b }}").unwrap());
        assert_eq!(f.process(b"orig", &mut l), None);
        assert_eq!(l.get("__error__"), Some("TemplateFormatErr"));
    }

    #[test]
    fn label_format_rename_template_in_order() {
        let f = LabelFormat::new(vec![
            ("dst".into(), LabelFormatKind::Rename("src".into())),
            (
                "combo".into(),
                LabelFormatKind::Template(Template::parse("{{.src}}/{{.dst}}/{{.other}}").unwrap()),
            ),
            (
                "again".into(),
                LabelFormatKind::Template(Template::parse("[{{.combo}}]").unwrap()),
            ),
        ]);
        let mut l = labels(&[("src", "1"), ("other", "2")]);
        f.process(b"", &mut l);
        // The template runs after the rename, and does not see `combo`.
        assert_eq!(l.to_string(), r#"{again="[]", combo="/1/2", dst="1", other="2"}"#);
        // As in Loki, `a=b, b=a` is two moves in a row, not a swap.
        let moves = LabelFormat::new(vec![
            ("a".into(), LabelFormatKind::Rename("b".into())),
            ("b".into(), LabelFormatKind::Rename("a".into())),
        ]);
        let mut l = labels(&[("a", "1"), ("b", "2")]);
        moves.process(b"", &mut l);
        assert_eq!(l.to_string(), r#"{b="2"}"#);
    }

    #[test]
    fn drop_and_keep() {
        let drop = DropLabels::new(vec![
            NamedMatcher::Name("a".into()),
            NamedMatcher::Matcher(Matcher::new("b", MatchOp::Eq, "x").unwrap()),
            NamedMatcher::Name("__error__".into()),
        ]);
        let mut l = labels(&[
            ("a", "1"),
            ("b", "y"),
            ("c", "3"),
            ("__error__", "E"),
            ("__error_details__", "d"),
        ]);
        drop.process(&mut l);
        assert_eq!(l.to_string(), r#"{b="y", c="3"}"#);
        let keep = KeepLabels::new(vec![NamedMatcher::Name("c".into())]);
        let mut l = labels(&[("a", "1"), ("c", "3"), ("__error__", "E")]);
        keep.process(&mut l);
        assert_eq!(l.to_string(), r#"{__error__="E", c="3"}"#);
    }

    #[test]
    fn decolorize_strips_ansi() {
        let d = Decolorize::new().unwrap();
        assert_eq!(
            d.process(b"\x1b[31mred\x1b[0m plain").as_deref(),
            Some(&b"red plain"[..])
        );
        assert_eq!(d.process(b"plain"), None);
    }
}
