//! `[loki]`: Loki's push API (`POST /loki/api/v1/push`), raw and validated:
//! whether it is served, which topic a push lands in, and how far a body
//! may inflate.

use logpost_shared::compression::Compression;
use logpost_shared::config::{ByteSize, Problems};
use logpost_shared::topic::validate_topic_name;
use serde::Deserialize;
use toml::Spanned;

/// What picks the topic of a Loki stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteBy {
    /// Every push goes to `default_topic`.
    Default,
    /// The tenant (`X-Scope-OrgID` header) names the topic.
    Tenant,
    /// The value of the stream's label `topic_label` names the topic.
    Label,
}

/// `[loki]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiToml {
    /// Serve `POST /loki/api/v1/push`. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Topic of pushes that `route_by` does not place (no tenant header, no
    /// such label). Default `"loki"`.
    #[serde(default = "default_topic")]
    pub default_topic: Spanned<String>,
    /// `"default"` (every push to `default_topic`), `"tenant"` (the
    /// `X-Scope-OrgID` header names the topic) or `"label"` (the value of
    /// `topic_label` does). Default `"default"`.
    #[serde(default = "default_route_by")]
    pub route_by: RouteBy,
    /// The label naming the topic with `route_by = "label"`. Default `"topic"`.
    #[serde(default = "default_topic_label")]
    pub topic_label: Spanned<String>,
    /// Prepended to a tenant or label value to make the topic name, e.g.
    /// `"loki-"`. Default empty.
    #[serde(default)]
    pub topic_prefix: String,
    /// Largest size a push body may inflate to (snappy or gzip); larger
    /// gets 413. Default 64MiB.
    #[serde(default = "default_max_decompressed")]
    pub max_decompressed_bytes: ByteSize,
    /// Codec of the batches pushed streams are stored in: `"gzip"`
    /// (level 1, default), `"lz4"` (faster to write and to scan, larger),
    /// `"snappy"` or `"none"`.
    #[serde(default = "default_compression")]
    pub compression: Spanned<String>,
    /// gzip level 1 (fastest to store, default) to 9 (smallest). Scans
    /// run at about the same speed at any level (bench/RESULTS.md).
    #[serde(default = "default_gzip_level")]
    pub gzip_level: Spanned<u32>,
}

impl Default for LokiToml {
    fn default() -> Self {
        Self {
            enabled: true,
            default_topic: default_topic(),
            route_by: default_route_by(),
            topic_label: default_topic_label(),
            topic_prefix: String::new(),
            max_decompressed_bytes: default_max_decompressed(),
            compression: default_compression(),
            gzip_level: default_gzip_level(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_topic() -> Spanned<String> {
    Spanned::new(0..0, "loki".to_owned())
}
fn default_route_by() -> RouteBy {
    RouteBy::Default
}
fn default_topic_label() -> Spanned<String> {
    Spanned::new(0..0, "topic".to_owned())
}
fn default_compression() -> Spanned<String> {
    Spanned::new(0..0, "gzip".to_owned())
}
fn default_gzip_level() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_max_decompressed() -> ByteSize {
    ByteSize(64 << 20)
}

/// `[loki]` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiSettings {
    pub enabled: bool,
    pub default_topic: String,
    pub route_by: RouteBy,
    pub topic_label: String,
    pub topic_prefix: String,
    pub max_decompressed_bytes: usize,
    pub compression: Compression,
}

/// Validates `[loki]`.
pub fn validate_loki(raw: &LokiToml, problems: &mut Problems) -> LokiSettings {
    if let Err(e) = validate_topic_name(raw.default_topic.get_ref()) {
        problems.at(raw.default_topic.span(), "loki.default_topic", e.to_string());
    }
    if raw.route_by == RouteBy::Label && raw.topic_label.get_ref().is_empty() {
        problems.at(
            raw.topic_label.span(),
            "loki.topic_label",
            "must name a label when route_by = \"label\"",
        );
    }
    if !raw.topic_prefix.is_empty()
        && let Err(e) = validate_topic_name(&raw.topic_prefix)
    {
        problems.whole("loki.topic_prefix", format!("not usable in a topic name: {e}"));
    }
    // Level 1 by default, as agents store their batches: a few percent of
    // a core buys a fourfold smaller log.
    let level = logpost_shared::config::gzip_level(&raw.gzip_level, "loki.gzip_level", problems);
    let compression = Compression::from_config_name(raw.compression.get_ref(), level).unwrap_or_else(|e| {
        problems.at(raw.compression.span(), "loki.compression", e);
        Compression::None
    });
    LokiSettings {
        compression,
        enabled: raw.enabled,
        default_topic: raw.default_topic.get_ref().clone(),
        route_by: raw.route_by,
        topic_label: raw.topic_label.get_ref().clone(),
        topic_prefix: raw.topic_prefix.clone(),
        max_decompressed_bytes: raw.max_decompressed_bytes.as_usize(),
    }
}
