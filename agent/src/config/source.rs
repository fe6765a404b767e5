//! One `[[sources]]` table: which files, which topic, which labels, and
//! the processing pipeline (multiline, line filters, parsing, key), raw
//! and validated. Regexes and globs are compiled here, once.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use logpost_shared::config::{ByteSize, HumanDuration, Problems};
use logpost_shared::topic::validate_topic_name;
use regex::bytes::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::pipeline::filter::LineFilter;
use crate::pipeline::multiline::{Boundary, MultilineConfig};
use crate::pipeline::parse::{ParseConfig, ParseFormat};
use crate::pipeline::timestamp::TimestampFormat;

/// One `[[sources]]` table. Unknown keys are errors: with a misspelt
/// optional key (`exlude`, `labls`) the agent refuses to start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceToml {
    /// Unique name; becomes the `source` header of every record.
    pub name: Spanned<String>,
    /// Globs of files to tail, e.g. `"/var/log/nginx/*.log"`.
    pub paths: Vec<Spanned<String>>,
    /// Globs of files never to tail, even if `paths` matches them.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Topic the lines go to.
    pub topic: Spanned<String>,
    /// Static labels added to every record as headers.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where to start in files present at the agent's very first start:
    /// `"beginning"` (default) or `"end"`. Files that appear later are
    /// always read from their beginning.
    #[serde(default = "default_start_at")]
    pub start_at: Spanned<String>,
    /// Group lines into multiline events (stack traces, tracebacks).
    pub multiline: Option<MultilineToml>,
    /// Parse events into fields that become headers.
    pub parse: Option<ParseToml>,
    /// Keep only events matching at least one of these regexes.
    #[serde(default)]
    pub include_lines: Vec<Spanned<String>>,
    /// Drop events matching any of these regexes.
    #[serde(default)]
    pub exclude_lines: Vec<Spanned<String>>,
    /// Record key (Kafka partitioning): a template over the static labels,
    /// `host`, `source` and `path`, e.g. `"{host}"`. Default: none, and the
    /// file's stream decides the partition. Constant per file, so
    /// exactly-once delivery holds.
    pub key: Option<Spanned<String>>,
}

/// `[sources.multiline]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineToml {
    /// A line matching this regex begins a new event.
    pub start: Option<Spanned<String>>,
    /// A line matching this regex continues the event before it.
    pub continuation: Option<Spanned<String>>,
    /// Invert the match.
    #[serde(default)]
    pub negate: bool,
    /// Most lines in one event. Default 500.
    #[serde(default = "default_ml_lines")]
    pub max_lines: u32,
    /// Most bytes in one event. Default 1MiB.
    #[serde(default = "default_ml_bytes")]
    pub max_bytes: ByteSize,
    /// An event with no new line for this long is sent. Default 1s.
    #[serde(default = "default_ml_timeout")]
    pub timeout: HumanDuration,
}

/// `[sources.parse]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseToml {
    /// `"regex"` (named captures), `"json"` or `"logfmt"`.
    pub format: Spanned<String>,
    /// With `format = "regex"`: the pattern, with named groups such as `(?P<level>\w+)`.
    pub pattern: Option<Spanned<String>>,
    /// Only these fields become headers (default: all, up to 64).
    pub fields: Option<Vec<String>>,
    /// The field holding the event's time (default: the time it was read).
    pub timestamp_field: Option<String>,
    /// Its format: `rfc3339` (default), `unix`, `unix_ms`, `unix_us`,
    /// `unix_ns`, or a strftime pattern such as `"%d/%b/%Y:%H:%M:%S %z"`.
    pub timestamp_format: Option<Spanned<String>>,
}

fn default_start_at() -> Spanned<String> {
    Spanned::new(0..0, "beginning".to_owned())
}
fn default_ml_lines() -> u32 {
    500
}
fn default_ml_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_ml_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

/// Where a source starts in files present at the very first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

/// A source after validation: compiled globs, regexes and a checked topic.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub paths: Vec<glob::Pattern>,
    pub exclude: Vec<glob::Pattern>,
    pub topic: String,
    pub labels: BTreeMap<String, String>,
    pub start_at: StartAt,
    pub multiline: Option<MultilineConfig>,
    pub parse: Option<ParseConfig>,
    pub filter: LineFilter,
    pub key: Option<KeyTemplate>,
}

/// A key template: literal text and `{label}` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    /// (is a label reference, text)
    parts: Vec<(bool, String)>,
}

impl KeyTemplate {
    /// Parses `"{host}-{app}"`; names must be static labels or host, source, path.
    ///
    /// # Errors
    /// An unclosed brace or an unknown name.
    pub fn parse(text: &str, labels: &BTreeMap<String, String>) -> Result<KeyTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (literal, after) = rest.split_at(open);
            if !literal.is_empty() {
                parts.push((false, literal.to_owned()));
            }
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in key {text:?}"))?;
            let name = after.get(1..close).unwrap_or_default();
            if !(labels.contains_key(name) || matches!(name, "host" | "source" | "path")) {
                return Err(format!(
                    "key {text:?} uses {{{name}}}, which is not a static label, host, source or path"
                ));
            }
            parts.push((true, name.to_owned()));
            rest = after.get(close + 1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            parts.push((false, rest.to_owned()));
        }
        Ok(KeyTemplate { parts })
    }

    /// The key for one file, given how to look its labels up.
    pub fn render(&self, lookup: impl Fn(&str) -> String) -> Vec<u8> {
        let mut out = String::new();
        for (is_label, text) in &self.parts {
            if *is_label {
                out.push_str(&lookup(text));
            } else {
                out.push_str(text);
            }
        }
        out.into_bytes()
    }
}

/// Validates one source table; problems go to `p`.
pub(super) fn validate_source(i: usize, s: &SourceToml, p: &mut Problems<'_>) -> Option<Source> {
    let key_of = |k: &str| format!("sources[{i}].{k}");
    if s.name.get_ref().trim().is_empty() {
        p.at(s.name.span(), key_of("name"), "must not be empty");
    }
    if s.paths.is_empty() {
        p.at(s.name.span(), key_of("paths"), "at least one path glob is required");
    }
    let mut compile = |globs: &[Spanned<String>], what: &str| -> Vec<glob::Pattern> {
        let mut out = Vec::new();
        for (j, g) in globs.iter().enumerate() {
            let key = format!("sources[{i}].{what}[{j}]");
            if what == "paths" && !Path::new(g.get_ref()).is_absolute() {
                p.at(g.span(), key, format!("path glob {:?} must be absolute", g.get_ref()));
                continue;
            }
            if what == "paths"
                && let Some(root) = crate::tail::discover::pseudo_glob(g.get_ref())
            {
                p.at(
                    g.span(),
                    key,
                    format!(
                        "path glob {:?} is under {root}, whose pseudo-files report a size that is not their content: they cannot be tailed (every read would look like a truncation)",
                        g.get_ref()
                    ),
                );
                continue;
            }
            match glob::Pattern::new(g.get_ref()) {
                Ok(pat) => out.push(pat),
                Err(e) => p.at(
                    g.span(),
                    key,
                    format!("invalid glob {:?}: {} (at character {})", g.get_ref(), e.msg, e.pos),
                ),
            }
        }
        out
    };
    let paths = compile(&s.paths, "paths");
    let exclude = compile(&s.exclude, "exclude");
    if let Err(e) = validate_topic_name(s.topic.get_ref()) {
        p.at(s.topic.span(), key_of("topic"), e.to_string());
    }
    let start_at = match s.start_at.get_ref().as_str() {
        "beginning" => StartAt::Beginning,
        "end" => StartAt::End,
        other => {
            p.at(
                s.start_at.span(),
                key_of("start_at"),
                format!("unknown value {other:?} (use \"beginning\" or \"end\")"),
            );
            StartAt::Beginning
        }
    };
    for key in s.labels.keys() {
        if key.is_empty() || key.starts_with("logpost.") || matches!(key.as_str(), "host" | "source" | "path") {
            p.at(
                s.name.span(),
                key_of(&format!("labels.{key}")),
                format!("label name {key:?} is reserved or empty"),
            );
        }
    }
    let multiline = s.multiline.as_ref().and_then(|m| validate_multiline(m, s, p, &key_of));
    let parse = s.parse.as_ref().and_then(|t| validate_parse(t, p, &key_of));
    let include = regex_list(p, &s.include_lines, &key_of("include_lines"));
    let exclude_lines = regex_list(p, &s.exclude_lines, &key_of("exclude_lines"));
    let filter = LineFilter::new(&include, &exclude_lines).unwrap_or_default();
    let key = s
        .key
        .as_ref()
        .and_then(|k| match KeyTemplate::parse(k.get_ref(), &s.labels) {
            Ok(t) => Some(t),
            Err(e) => {
                p.at(k.span(), key_of("key"), e);
                None
            }
        });
    Some(Source {
        name: s.name.get_ref().clone(),
        paths,
        exclude,
        topic: s.topic.get_ref().clone(),
        labels: s.labels.clone(),
        start_at,
        multiline,
        parse,
        filter,
        key,
    })
}

fn regex(p: &mut Problems<'_>, v: &Spanned<String>, key: String) -> Option<Regex> {
    match Regex::new(v.get_ref()) {
        Ok(re) => Some(re),
        Err(e) => {
            let msg = e.to_string();
            let last = msg.lines().last().unwrap_or(&msg).trim();
            p.at(v.span(), key, format!("invalid regex {:?}: {last}", v.get_ref()));
            None
        }
    }
}

fn regex_list(p: &mut Problems<'_>, list: &[Spanned<String>], key: &str) -> Vec<String> {
    let mut ok = Vec::new();
    for (j, v) in list.iter().enumerate() {
        if regex(p, v, format!("{key}[{j}]")).is_some() {
            ok.push(v.get_ref().clone());
        }
    }
    ok
}

fn validate_multiline(
    m: &MultilineToml,
    s: &SourceToml,
    p: &mut Problems<'_>,
    key_of: &dyn Fn(&str) -> String,
) -> Option<MultilineConfig> {
    let boundary = match (&m.start, &m.continuation) {
        (Some(start), None) => Boundary::Start(regex(p, start, key_of("multiline.start"))?),
        (None, Some(cont)) => Boundary::Continuation(regex(p, cont, key_of("multiline.continuation"))?),
        _ => {
            p.at(
                s.name.span(),
                key_of("multiline"),
                "set exactly one of `start` and `continuation`",
            );
            return None;
        }
    };
    Some(MultilineConfig {
        boundary,
        negate: m.negate,
        max_lines: m.max_lines.max(1) as usize,
        max_bytes: m.max_bytes.as_usize().max(1),
        timeout: m.timeout.get(),
    })
}

fn validate_parse(t: &ParseToml, p: &mut Problems<'_>, key_of: &dyn Fn(&str) -> String) -> Option<ParseConfig> {
    let format = match (t.format.get_ref().as_str(), &t.pattern) {
        ("regex", Some(pattern)) => {
            let re = regex(p, pattern, key_of("parse.pattern"))?;
            if re.capture_names().flatten().next().is_none() {
                p.at(
                    pattern.span(),
                    key_of("parse.pattern"),
                    "the pattern has no named group such as (?P<level>...)",
                );
            }
            ParseFormat::Regex(re)
        }
        ("regex", None) => {
            p.at(
                t.format.span(),
                key_of("parse.pattern"),
                "format \"regex\" needs a `pattern`",
            );
            return None;
        }
        ("json", _) => ParseFormat::Json,
        ("logfmt", _) => ParseFormat::Logfmt,
        (other, _) => {
            p.at(
                t.format.span(),
                key_of("parse.format"),
                format!("unknown format {other:?} (use \"regex\", \"json\" or \"logfmt\")"),
            );
            return None;
        }
    };
    let ts_format = match &t.timestamp_format {
        None => TimestampFormat::Rfc3339,
        Some(f) => match TimestampFormat::from_config(f.get_ref()) {
            Ok(tf) => tf,
            Err(e) => {
                p.at(f.span(), key_of("parse.timestamp_format"), e);
                TimestampFormat::Rfc3339
            }
        },
    };
    Some(ParseConfig {
        format,
        fields: t
            .fields
            .as_ref()
            .map(|f| f.iter().cloned().collect::<HashSet<String>>()),
        timestamp: t.timestamp_field.clone().map(|f| (f, ts_format)),
    })
}
