//! The log pipeline: the stages after a stream selector (`|= "x" | json |
//! status >= 500 | line_format "..."`), compiled once and applied to every
//! line.
//!
//! Why a module of its own: this is the per-line hot path of every query.
//! [`Pipeline::process`] borrows the line and only allocates when a stage
//! rewrites it (`line_format`, `unpack`, `decolorize`) or extracts labels;
//! [`Pipeline::required_literals`] lets a storage layer skip lines (or whole
//! blocks) with a fast substring search before running the pipeline at all.
//!
//! Stages never fail: a parser that cannot read a line marks it with
//! `__error__` (and `__error_details__`) and lets it through, as Loki does;
//! only filters drop lines. Each stage kind lives in its own submodule.

mod filter;
mod format;
mod ip;
mod json;
mod json_scan;
mod label_filter;
mod logfmt;
mod pattern;
mod regexp;
mod template;

use std::borrow::Cow;
use std::sync::LazyLock;

pub use filter::{LineFilter, LineFilterOp, MIN_SECTION_LITERAL, found};
pub use format::{Decolorize, DropLabels, KeepLabels, LabelFormat, LabelFormatKind, LineFormat};
pub use ip::IpPattern;
pub use json::{JsonParser, UnpackParser};
pub use label_filter::{CmpOp, LabelFilter};
pub use logfmt::LogfmtParser;
pub use pattern::PatternParser;
pub use regexp::RegexpParser;
pub use template::Template;

pub(crate) use filter::FilterArg;
pub(crate) use format::NamedMatcher;
pub(crate) use json::JsonPath;
pub(crate) use label_filter::{convert_bytes, convert_duration_secs, convert_float};

use crate::query::logql::labels::{EXTRACTED_SUFFIX, Labels};

/// The stream labels of stages that do not read them.
static NO_LABELS: LazyLock<Labels> = LazyLock::new(Labels::new);

/// One stage of a pipeline.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `|= "x"`, `!= "x"`, `|~ "re"`, `!~ "re"`, `|> "pat"`, `!> "pat"`.
    LineFilter(LineFilter),
    /// `| json` and `| json a="x.y"`.
    Json(JsonParser),
    /// `| logfmt [--strict] [--keep-empty] [a, b="c"]`.
    Logfmt(LogfmtParser),
    /// `| regexp "(?P<name>...)"`.
    Regexp(RegexpParser),
    /// `| pattern "<ip> - <_>"`.
    Pattern(PatternParser),
    /// `| unpack`.
    Unpack(UnpackParser),
    /// `| status >= 500 and level="error"`.
    LabelFilter(LabelFilter),
    /// `| line_format "{{.msg}}"`.
    LineFormat(LineFormat),
    /// `| label_format new=old, other="{{.x}}"`.
    LabelFormat(LabelFormat),
    /// `| drop a, b="x"`.
    Drop(DropLabels),
    /// `| keep a, b`.
    Keep(KeepLabels),
    /// `| decolorize`.
    Decolorize(Decolorize),
}

impl Stage {
    fn is_line_filter(&self) -> bool {
        matches!(self, Stage::LineFilter(_))
    }

    /// Stages after which the line is no longer the stored line.
    fn rewrites_line(&self) -> bool {
        matches!(self, Stage::LineFormat(_) | Stage::Unpack(_) | Stage::Decolorize(_))
    }

    /// Stages that add parsed labels and so must know the stream labels
    /// (to add `_extracted` on collisions).
    fn needs_stream_labels(&self) -> bool {
        matches!(
            self,
            Stage::Json(_) | Stage::Logfmt(_) | Stage::Regexp(_) | Stage::Pattern(_) | Stage::Unpack(_)
        )
    }
}

/// A compiled pipeline.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    stages: Vec<Stage>,
    needs_stream_labels: bool,
    /// How many line filters come before any other stage.
    leading_filters: usize,
}

impl Pipeline {
    /// A pipeline from its stages.
    pub fn new(stages: Vec<Stage>) -> Self {
        let needs_stream_labels = stages.iter().any(Stage::needs_stream_labels);
        let leading_filters = stages.iter().take_while(|s| s.is_line_filter()).count();
        Pipeline {
            stages,
            needs_stream_labels,
            leading_filters,
        }
    }

    /// The line filters before any other stage: they see the stored line
    /// and nothing else, so a source may run them itself before it builds
    /// an entry (and then [`Pipeline::process_after_leading_filters`]).
    pub fn leading_line_filters(&self) -> impl Iterator<Item = &LineFilter> {
        let leading = self.stages.get(..self.leading_filters).unwrap_or_default();
        leading.iter().filter_map(|s| match s {
            Stage::LineFilter(f) => Some(f),
            _ => None,
        })
    }

    /// The stages in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Whether there are no stages (every line passes unchanged).
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs the pipeline over one line.
    ///
    /// `labels` holds the stream labels on entry and the final labels on
    /// return (parsed labels added, formats applied). Returns `None` when a
    /// filter drops the line; otherwise the output line, borrowed from
    /// `line` unless a stage rewrote it. Lines may be invalid UTF-8: filters
    /// work on bytes, parsers read the line lossily.
    pub fn process<'a>(&self, line: &'a [u8], labels: &mut Labels) -> Option<Cow<'a, [u8]>> {
        self.process_stages(&self.stages, line, labels)
    }

    /// [`Pipeline::process`] for a line known to pass the leading line
    /// filters: the rest of the stages.
    pub fn process_after_leading_filters<'a>(&self, line: &'a [u8], labels: &mut Labels) -> Option<Cow<'a, [u8]>> {
        let rest = self.stages.get(self.leading_filters..).unwrap_or_default();
        self.process_stages(rest, line, labels)
    }

    /// [`Pipeline::process`], or [`Pipeline::process_after_leading_filters`]
    /// when `leading_filters_passed`.
    pub fn process_entry<'a>(
        &self,
        line: &'a [u8],
        labels: &mut Labels,
        leading_filters_passed: bool,
    ) -> Option<Cow<'a, [u8]>> {
        if leading_filters_passed {
            self.process_after_leading_filters(line, labels)
        } else {
            self.process(line, labels)
        }
    }

    fn process_stages<'a>(&self, stages: &[Stage], line: &'a [u8], labels: &mut Labels) -> Option<Cow<'a, [u8]>> {
        // An `Arc` clone: the stream labels as they were before any stage
        // (none needed: a shared empty set, not an allocation per line).
        let stream_labels;
        let stream: &Labels = if self.needs_stream_labels {
            stream_labels = labels.clone();
            &stream_labels
        } else {
            &NO_LABELS
        };
        let mut line: Cow<'a, [u8]> = Cow::Borrowed(line);
        for stage in stages {
            match stage {
                Stage::LineFilter(f) => {
                    if !f.matches(&line) {
                        return None;
                    }
                }
                Stage::Json(p) => p.process(&line, labels, stream),
                Stage::Logfmt(p) => p.process(&line, labels, stream),
                Stage::Regexp(p) => p.process(&line, labels, stream),
                Stage::Pattern(p) => p.process(&line, labels, stream),
                Stage::Unpack(p) => {
                    if let Some(entry) = p.process(&line, labels, stream) {
                        line = Cow::Owned(entry);
                    }
                }
                Stage::LabelFilter(f) => {
                    if !f.process(labels) {
                        return None;
                    }
                }
                Stage::LineFormat(f) => {
                    if let Some(new) = f.process(&line, labels) {
                        line = Cow::Owned(new);
                    }
                }
                Stage::LabelFormat(f) => f.process(&line, labels),
                Stage::Drop(d) => d.process(labels),
                Stage::Keep(k) => k.process(labels),
                Stage::Decolorize(d) => {
                    if let Some(new) = d.process(&line) {
                        line = Cow::Owned(new);
                    }
                }
            }
        }
        Some(line)
    }

    /// Whether every stage is a line filter: lines pass unchanged or not at
    /// all, and labels are never touched.
    pub fn line_filters_only(&self) -> bool {
        self.stages.iter().all(Stage::is_line_filter)
    }

    /// Byte strings every line that passes must contain, from `|= "x"`
    /// filters (and `|~` filters whose regex is a plain literal) that run
    /// before anything rewrites the line. A caller can skip any line (or
    /// block) lacking one of them, e.g. with `memchr::memmem`, without
    /// running the pipeline. Empty strings are left out.
    pub fn required_literals(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for stage in &self.stages {
            if stage.rewrites_line() {
                break;
            }
            if let Stage::LineFilter(f) = stage
                && let Some(lit) = f.required_literal()
                && !lit.is_empty()
                && !out.iter().any(|o| o == lit)
            {
                out.push(lit.to_vec());
            }
        }
        out
    }
}

impl Pipeline {
    /// For each positive line filter that runs before anything rewrites
    /// the line, a set of byte strings one of which every passing line
    /// contains (see [`LineFilter`]'s `|= "a" or "b"` and regex prefixes).
    /// A storage layer can skip a line, or a whole decompressed block, in
    /// which some set has no member, without running the pipeline.
    pub fn required_literal_sets(&self) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for stage in &self.stages {
            if stage.rewrites_line() {
                break;
            }
            if let Stage::LineFilter(f) = stage
                && let Some(set) = f.required_any_of()
                && !out.contains(&set)
            {
                out.push(set);
            }
        }
        out
    }

    /// A regex whose matches in a whole decompressed records section
    /// overlap every line the pipeline passes (see
    /// [`LineFilter::section_pattern`]), so a scan decodes only the records
    /// those matches touch: of the line filters that offer one, that with
    /// the longest literals to search for (`LineFilter::literal_strength`),
    /// the first of equals.
    pub fn section_pattern(&self) -> Option<String> {
        let mut best: Option<(usize, String)> = None;
        for stage in &self.stages {
            if stage.rewrites_line() {
                break;
            }
            let Stage::LineFilter(f) = stage else { continue };
            let Some(pattern) = f.section_pattern() else { continue };
            let strength = f.literal_strength();
            if best.as_ref().is_none_or(|(best, _)| strength > *best) {
                best = Some((strength, pattern));
            }
        }
        best.map(|(_, pattern)| pattern)
    }
}

impl Pipeline {
    /// The bytes, some matching in either ASCII case, a scan should search
    /// whole sections for rather than [`section_pattern`](Self::section_pattern):
    /// of the `(?i)` regex filters that run before anything rewrites the
    /// line, the longest run of bytes every passing line contains (see
    /// `LineFilter::required_folded_run`), where it has at least
    /// `MIN_SECTION_LITERAL` bytes and is no shorter than the literals the
    /// section pattern would be searched by. `(?i)error.*timeout` gives
    /// "timeout": one search for 7 bytes instead of Teddy over the 32 case
    /// variants of "error", each followed by the regex.
    pub fn folded_section_literal(&self) -> Option<Vec<(u8, bool)>> {
        let mut best: Option<Vec<(u8, bool)>> = None;
        let mut strongest_pattern = 0;
        for stage in &self.stages {
            if stage.rewrites_line() {
                break;
            }
            let Stage::LineFilter(f) = stage else { continue };
            if f.section_pattern().is_some() {
                strongest_pattern = strongest_pattern.max(f.literal_strength());
            }
            if let Some(run) = f.required_folded_run()
                && run.len() >= MIN_SECTION_LITERAL
                && best.as_ref().is_none_or(|b| run.len() > b.len())
            {
                best = Some(run);
            }
        }
        best.filter(|run| run.len() >= strongest_pattern)
    }
}

/// Sets a label a parser extracted; Loki renames it `<name>_extracted` when
/// a stream label already has that name, so stream labels are never lost.
pub(crate) fn set_extracted(labels: &mut Labels, stream: &Labels, name: &str, value: String) {
    if name.is_empty() {
        return;
    }
    if stream.contains(name) {
        labels.insert(format!("{name}{EXTRACTED_SUFFIX}"), value);
    } else {
        labels.insert(name, value);
    }
}

/// Reads a line as text the way Loki's parsers do: invalid UTF-8 becomes U+FFFD.
pub(crate) fn line_text(line: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(line)
}

#[cfg(test)]
mod tests;
