//! `collector.toml`: the raw serde types that mirror the file, and the
//! validated [`CollectorConfig`] the rest of the collector sees.
//!
//! Every key is documented here; `configs/collector.toml` repeats the docs as
//! comments and is loaded by a test, so the two cannot drift apart. The
//! ecosystem protocols' sections live in [`kafka`] (`[kafka]`, `[groups]`)
//! and [`loki`] (`[loki]`); the budgets of queries in [`query`] (`[query]`).

pub mod auth;
pub mod cluster;
pub mod http;
pub mod kafka;
pub mod loki;
pub mod query;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use logpost_shared::config::{ByteSize, ConfigError, HumanDuration, Problems, SourceText, parse_toml, read_config};
use serde::Deserialize;
use toml::Spanned;

use std::collections::{BTreeMap, HashMap};

use crate::kafka::coordinator::CoordinatorConfig;
use crate::store::{FsyncPolicy, MAX_PARTITIONS, RetentionOverride, RetentionPolicy, StoreConfig, TopicOverrides};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorToml {
    /// Directory holding topics, segments and the collector's state.
    pub data_dir: PathBuf,
    /// The HTTP listener: ingest, query and admin.
    #[serde(default)]
    pub http: http::HttpToml,
    /// Bearer tokens and their scopes.
    #[serde(default)]
    pub auth: auth::AuthToml,
    /// How topics are stored.
    #[serde(default)]
    pub storage: StorageToml,
    /// What ingest does beyond storing.
    #[serde(default)]
    pub ingest: IngestToml,
    /// Per-topic settings, `[topics.<name>]`; topics listed here are
    /// created at start-up if missing.
    #[serde(default)]
    pub topics: BTreeMap<String, Spanned<TopicToml>>,
    /// The Kafka wire-protocol listener (off unless `listen` is set).
    #[serde(default)]
    pub kafka: kafka::KafkaToml,
    /// Consumer groups and committed offsets (Kafka and HTTP consumers).
    #[serde(default)]
    pub groups: kafka::GroupsToml,
    /// Loki's push API.
    #[serde(default)]
    pub loki: loki::LokiToml,
    /// This collector as a node of a replicated cluster (docs/cluster.md).
    /// Without it, a single node.
    pub cluster: Option<cluster::ClusterToml>,
    /// What one query may cost.
    #[serde(default)]
    pub query: query::QueryToml,
}

/// `[ingest]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestToml {
    /// Drop batches a producer (an agent's file stream, an idempotent Kafka
    /// producer) already sent. Default true. Turning it off gives
    /// at-least-once delivery; it exists for tests that prove the
    /// deduplication is what prevents duplicates.
    #[serde(default = "default_true")]
    pub deduplicate: bool,
    /// How long a batch of a pipelined request (an agent's
    /// `batch.max_in_flight` above 1) that arrived before its stream's
    /// previous batch waits for it before it is refused and sent again.
    /// Default 2s.
    #[serde(default = "default_predecessor_wait")]
    pub predecessor_wait: Spanned<HumanDuration>,
}

impl Default for IngestToml {
    fn default() -> Self {
        Self {
            deduplicate: true,
            predecessor_wait: default_predecessor_wait(),
        }
    }
}

fn default_predecessor_wait() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(Duration::from_secs(2)))
}

/// `[topics.<name>]`: overrides of `[storage]` for one topic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicToml {
    /// Partitions, used when the topic is created.
    pub partitions: Option<u32>,
    /// Bytes kept per partition; `"unlimited"` for no limit.
    pub retention_bytes: Option<Limit<ByteSize>>,
    /// Age after which whole segments are deleted; `"forever"` to keep all.
    pub retention_age: Option<Limit<HumanDuration>>,
}

/// A limit, or none (`"unlimited"`, `"forever"`).
#[derive(Debug, Clone, Copy)]
pub enum Limit<T> {
    None,
    Some(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Limit<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            Value(T),
            Word(String),
        }
        // Strings that parse as the value ("64MiB", "7d") win over the words.
        let value = toml::Value::deserialize(d)?;
        if let toml::Value::String(s) = &value
            && matches!(s.as_str(), "unlimited" | "forever" | "none")
        {
            return Ok(Limit::None);
        }
        match Raw::<T>::deserialize(value).map_err(serde::de::Error::custom)? {
            Raw::Value(v) => Ok(Limit::Some(v)),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "invalid value {w:?}: expected a size or duration, or \"unlimited\"/\"forever\""
            ))),
        }
    }
}

impl<T> Limit<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Option<U> {
        match self {
            Limit::None => None,
            Limit::Some(v) => Some(f(v)),
        }
    }
}

/// `[storage]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageToml {
    /// Partitions of a topic created on first use. Default 1, as Kafka's `num.partitions`.
    #[serde(default = "default_partitions")]
    pub default_partitions: Spanned<u32>,
    /// Size at which the active segment is rolled. Default 1GiB.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: Spanned<ByteSize>,
    /// `"always"` (default): fdatasync before acknowledging, so an
    /// acknowledged batch survives a power loss. `"interval"`: acknowledge
    /// once written to the page cache and fsync every `fsync_interval`; a
    /// machine crash (not a process crash) can lose up to that much
    /// acknowledged data.
    #[serde(default = "default_fsync")]
    pub fsync: Spanned<String>,
    /// With `fsync = "interval"`: how often. Default 1s.
    #[serde(default = "default_fsync_interval")]
    pub fsync_interval: HumanDuration,
    /// Create a topic when a batch for it first arrives. Default true.
    #[serde(default = "default_true")]
    pub auto_create_topics: bool,
    /// Threads that write and fsync segments (group commit). Default 2.
    #[serde(default = "default_writer_threads")]
    pub writer_threads: Spanned<u32>,
    /// Roll a non-empty active segment older than this. Default 7d.
    #[serde(default = "default_segment_age")]
    pub segment_age: HumanDuration,
    /// Bytes of log between entries of the sparse offset index. Default 4KiB.
    #[serde(default = "default_index_interval")]
    pub index_interval_bytes: ByteSize,
    /// How often each partition's recovery point is written: after a crash,
    /// recovery checks only what was written since. Default 10s.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// Bytes kept per partition, oldest segments deleted first; default
    /// `"unlimited"`.
    #[serde(default = "default_retention_bytes")]
    pub retention_bytes: Limit<ByteSize>,
    /// Segments whose newest record is older than this are deleted; default
    /// 7d (`"forever"` keeps everything).
    #[serde(default = "default_retention_age")]
    pub retention_age: Limit<HumanDuration>,
    /// How often retention runs. Default 1m.
    #[serde(default = "default_retention_check")]
    pub retention_check_interval: HumanDuration,
    /// A stream (producer) that appends nothing for this long is forgotten
    /// by deduplication. Default 7d.
    #[serde(default = "default_producer_expiry")]
    pub producer_expiry: HumanDuration,
    /// Topics beyond which ingest (HTTP, Loki, Kafka produce) creates no
    /// more; the admin API still can. Default 1000.
    #[serde(default = "default_max_topics")]
    pub max_topics: Spanned<u32>,
    /// Partitions (all topics together) beyond which ingest creates no
    /// more topics. Default 10000.
    #[serde(default = "default_max_total_partitions")]
    pub max_partitions: Spanned<u32>,
}

impl Default for StorageToml {
    fn default() -> Self {
        Self {
            default_partitions: default_partitions(),
            segment_bytes: default_segment_bytes(),
            fsync: default_fsync(),
            fsync_interval: default_fsync_interval(),
            auto_create_topics: true,
            writer_threads: default_writer_threads(),
            segment_age: default_segment_age(),
            index_interval_bytes: default_index_interval(),
            checkpoint_interval: default_checkpoint_interval(),
            retention_bytes: default_retention_bytes(),
            retention_age: default_retention_age(),
            retention_check_interval: default_retention_check(),
            producer_expiry: default_producer_expiry(),
            max_topics: default_max_topics(),
            max_partitions: default_max_total_partitions(),
        }
    }
}

fn default_max_topics() -> Spanned<u32> {
    Spanned::new(0..0, 1000)
}
fn default_max_total_partitions() -> Spanned<u32> {
    Spanned::new(0..0, 10_000)
}
fn default_partitions() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_segment_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(1 << 30))
}
fn default_fsync() -> Spanned<String> {
    Spanned::new(0..0, "always".to_owned())
}
fn default_fsync_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_true() -> bool {
    true
}
fn default_writer_threads() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}
fn default_segment_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(7 * 86_400))
}
fn default_index_interval() -> ByteSize {
    ByteSize(4096)
}
fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_retention_bytes() -> Limit<ByteSize> {
    Limit::None
}
fn default_retention_age() -> Limit<HumanDuration> {
    Limit::Some(HumanDuration(Duration::from_secs(7 * 86_400)))
}
fn default_retention_check() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_producer_expiry() -> HumanDuration {
    HumanDuration(Duration::from_secs(7 * 86_400))
}

/// Longest `[ingest] predecessor_wait`.
const MAX_PREDECESSOR_WAIT: Duration = Duration::from_secs(60);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub max_uncompressed_bytes: usize,
    /// Every `[http]` setting (`listen` and the two limits above included).
    pub http: http::HttpSettings,
    pub auth: auth::AuthSettings,
    pub deduplicate: bool,
    /// `[ingest] predecessor_wait`.
    pub predecessor_wait: Duration,
    pub store: StoreConfig,
    /// `None`: no Kafka listener.
    pub kafka: Option<kafka::KafkaSettings>,
    pub groups: CoordinatorConfig,
    pub loki: loki::LokiSettings,
    /// `None`: a single node.
    pub cluster: Option<cluster::ClusterSettings>,
    /// `[query]`.
    pub query: query::QuerySettings,
}

/// Smallest segment: below this, rolling costs more than it saves.
const MIN_SEGMENT_BYTES: u64 = 4096;

impl CollectorConfig {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// Every problem found, each naming line and key.
    pub fn load(path: &Path) -> Result<CollectorConfig, ConfigError> {
        let source = read_config(path)?;
        Self::from_source(&source)
    }

    /// Validates already-read text (also used by tests and `validate`).
    ///
    /// # Errors
    /// Every problem found, each naming line and key.
    pub fn from_source(source: &SourceText) -> Result<CollectorConfig, ConfigError> {
        let raw: CollectorToml = parse_toml(source)?;
        let mut problems = Problems::new(source);

        let http = http::validate_http(&raw.http, &mut problems);
        let auth = auth::validate_auth(&raw.auth, &mut problems);
        if let Some(msg) = anonymous_remote(http.listen, &auth) {
            problems.at(raw.http.listen.span(), "http.listen", msg);
        }
        for (key, v) in [
            ("storage.max_topics", &raw.storage.max_topics),
            ("storage.max_partitions", &raw.storage.max_partitions),
        ] {
            if *v.get_ref() == 0 {
                problems.at(v.span(), key, "must be at least 1");
            }
        }
        let partitions = *raw.storage.default_partitions.get_ref();
        if partitions == 0 || partitions > MAX_PARTITIONS {
            problems.at(
                raw.storage.default_partitions.span(),
                "storage.default_partitions",
                format!("{partitions} is out of range (1 to {MAX_PARTITIONS})"),
            );
        }
        let segment_bytes = raw.storage.segment_bytes.get_ref().bytes();
        // Index positions are u32, so a segment stays below 4 GiB (Kafka: 2 GiB).
        if !(MIN_SEGMENT_BYTES..=(2 << 30)).contains(&segment_bytes) {
            problems.at(
                raw.storage.segment_bytes.span(),
                "storage.segment_bytes",
                format!("{} is out of range (4KiB to 2GiB)", raw.storage.segment_bytes.get_ref()),
            );
        }
        let mut topics = HashMap::new();
        for (name, t) in &raw.topics {
            let key = format!("topics.{name}");
            if let Err(e) = logpost_shared::topic::validate_topic_name(name) {
                problems.at(t.span(), key.clone(), e.to_string());
            }
            let t_ref = t.get_ref();
            if let Some(p) = t_ref.partitions
                && (p == 0 || p > MAX_PARTITIONS)
            {
                problems.at(
                    t.span(),
                    format!("{key}.partitions"),
                    format!("{p} is out of range (1 to {MAX_PARTITIONS})"),
                );
            }
            topics.insert(
                name.clone(),
                TopicOverrides {
                    partitions: t_ref.partitions,
                    retention: RetentionOverride {
                        bytes: t_ref.retention_bytes.map(|l| l.map(ByteSize::bytes)),
                        age: t_ref.retention_age.map(|l| l.map(HumanDuration::get)),
                    },
                },
            );
        }
        let fsync = match raw.storage.fsync.get_ref().as_str() {
            "always" => FsyncPolicy::Always,
            "interval" => FsyncPolicy::Interval(raw.storage.fsync_interval.get()),
            other => {
                problems.at(
                    raw.storage.fsync.span(),
                    "storage.fsync",
                    format!("unknown policy {other:?} (use \"always\" or \"interval\")"),
                );
                FsyncPolicy::Always
            }
        };
        let writer_threads = *raw.storage.writer_threads.get_ref();
        if writer_threads == 0 || writer_threads > 64 {
            problems.at(
                raw.storage.writer_threads.span(),
                "storage.writer_threads",
                format!("{writer_threads} is out of range (1 to 64)"),
            );
        }
        if raw.ingest.predecessor_wait.get_ref().get() > MAX_PREDECESSOR_WAIT {
            problems.at(
                raw.ingest.predecessor_wait.span(),
                "ingest.predecessor_wait",
                "is longer than the limit of 1m (a longer wait only holds requests that the agent sends again anyway)",
            );
        }
        let kafka = kafka::validate_kafka(&raw.kafka, &mut problems);
        let groups = kafka::validate_groups(&raw.groups, &mut problems);
        let loki = loki::validate_loki(&raw.loki, &mut problems);
        let cluster = cluster::validate_cluster(raw.cluster.as_ref(), &mut problems);
        if let Some(c) = &cluster
            && c.advertise.is_none()
            && http.listen.ip().is_unspecified()
            && let Some(raw_cluster) = &raw.cluster
        {
            problems.at(
                raw_cluster.node_id.span(),
                "cluster.advertise",
                format!(
                    "http.listen {} is a wildcard address, which other nodes cannot connect to: set cluster.advertise",
                    http.listen
                ),
            );
        }
        let query = query::validate_query(&raw.query, &mut problems);
        let config = CollectorConfig {
            data_dir: raw.data_dir.clone(),
            listen: http.listen,
            max_body_bytes: http.max_body_bytes,
            max_uncompressed_bytes: http.max_uncompressed_bytes,
            http,
            auth,
            deduplicate: raw.ingest.deduplicate,
            predecessor_wait: raw.ingest.predecessor_wait.get_ref().get().min(MAX_PREDECESSOR_WAIT),
            store: StoreConfig {
                data_dir: raw.data_dir,
                default_partitions: partitions.clamp(1, MAX_PARTITIONS),
                segment_bytes,
                segment_age: Some(raw.storage.segment_age.get()).filter(|d| !d.is_zero()),
                index_interval_bytes: raw.storage.index_interval_bytes.bytes().max(1),
                fsync,
                auto_create_topics: raw.storage.auto_create_topics,
                writer_threads: writer_threads.clamp(1, 64) as usize,
                checkpoint_interval: raw.storage.checkpoint_interval.get().max(Duration::from_millis(10)),
                retention: RetentionPolicy {
                    bytes: raw.storage.retention_bytes.map(ByteSize::bytes),
                    age: raw.storage.retention_age.map(HumanDuration::get),
                },
                retention_check_interval: raw
                    .storage
                    .retention_check_interval
                    .get()
                    .max(Duration::from_millis(10)),
                producer_expiry: raw.storage.producer_expiry.get(),
                max_topics: (*raw.storage.max_topics.get_ref()).max(1) as usize,
                max_total_partitions: u64::from((*raw.storage.max_partitions.get_ref()).max(1)),
                topics,
            },
            kafka,
            groups,
            loki,
            cluster,
            query,
        };
        problems.finish(config)
    }
}

/// Why serving `listen` would be unsafe with `auth`: a non-loopback
/// address without tokens, unless `[auth] allow_anonymous_remote` says so.
pub fn anonymous_remote(listen: SocketAddr, auth: &auth::AuthSettings) -> Option<String> {
    (!auth.enabled() && !listen.ip().is_loopback() && !auth.allow_anonymous_remote).then(|| {
        format!(
            "{listen} is not a loopback address and no [[auth.tokens]] are configured: anyone who can connect could read and delete every topic; add tokens, or set [auth] allow_anonymous_remote = true"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpost_shared::compression::Compression;

    fn load(text: &str) -> Result<CollectorConfig, ConfigError> {
        CollectorConfig::from_source(&SourceText {
            path: "collector.toml".into(),
            text: text.to_owned(),
        })
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = load("data_dir = \"/tmp/x\"\n").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(c.store.default_partitions, 1);
        assert_eq!(c.store.fsync, FsyncPolicy::Always);
        assert!(c.http.query_threads >= 1, "one per CPU");
        let c = load("data_dir = \"/tmp/x\"\n[http]\nquery_threads = 3\n").unwrap();
        assert_eq!(c.http.query_threads, 3);
        let err = load("data_dir = \"/tmp/x\"\n[http]\nquery_threads = 1000\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "collector.toml:3:17: http.query_threads: 1000 is out of range (0 for one per CPU, or 1 to 64)"
        );
        assert_eq!(c.predecessor_wait, Duration::from_secs(2), "the default");
        let c = load("data_dir = \"/tmp/x\"\n[ingest]\npredecessor_wait = \"250ms\"\n").unwrap();
        assert_eq!(c.predecessor_wait, Duration::from_millis(250));
        let err = load("data_dir = \"/tmp/x\"\n[ingest]\npredecessor_wait = \"5m\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("collector.toml:3:20: ingest.predecessor_wait: is longer than the limit of 1m"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_line_and_key() {
        let err = load("data_dir = \"/tmp/x\"\n[storage]\nfsync = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "collector.toml:3:9: storage.fsync: unknown policy \"sometimes\" (use \"always\" or \"interval\")"
        );
        let err = load("data_dir = \"/tmp/x\"\n[http]\nlisen = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("collector.toml:3:1: http.lisen: unknown field `lisen`"),
            "{err}"
        );
        let err = load("data_dir = 5\n").unwrap_err().to_string();
        assert!(err.starts_with("collector.toml:1:12: data_dir: invalid type"), "{err}");
        let err = load("[http]\n").unwrap_err().to_string();
        assert!(err.contains("missing field `data_dir`"), "{err}");
    }

    #[test]
    fn every_problem_is_reported() {
        let err =
            load("data_dir = \"/x\"\n[http]\nlisten = \"nope\"\n[storage]\ndefault_partitions = 0\n").unwrap_err();
        assert_eq!(err.problems().len(), 2, "{err}");
    }

    #[test]
    fn shipped_example_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/collector.toml");
        let c = CollectorConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(c.store.segment_bytes, 1 << 30);
        assert!(c.kafka.is_none(), "the example keeps the Kafka listener off");
        assert_eq!(c.loki.default_topic, "loki");
        assert_eq!(c.groups.initial_rebalance_delay, Duration::from_secs(3));
        assert_eq!(
            c.query,
            query::QuerySettings::default(),
            "the example states the defaults"
        );
        assert_eq!((c.http.max_in_flight_bytes, c.http.min_body_rate), (128 << 20, 1024));
    }

    /// Issue 28: the budgets of `[query]`, `http.max_in_flight_bytes`,
    /// `http.min_body_rate` and `kafka.max_in_flight_bytes`.
    #[test]
    fn issue_28_budgets_load_and_are_checked() {
        let c = load("data_dir = \"/x\"\n").unwrap();
        let q = &c.query;
        assert_eq!((q.max_entries, q.max_series, q.max_points), (5000, 500, 1_000_000));
        assert_eq!((q.max_result_bytes, q.max_line_bytes), (32 << 20, 8 << 20));
        assert_eq!(
            (q.max_regex_bytes, q.max_regexes, q.max_concurrent_tails),
            (1 << 20, 32, 64)
        );
        let c = load("data_dir = \"/x\"\n[query]\nmax_series = 20\nmax_line_bytes = \"1MiB\"\n[http]\nmax_in_flight_bytes = \"1GiB\"\nmin_body_rate = \"10KiB\"\n[kafka]\nlisten = \"127.0.0.1:0\"\nmax_in_flight_bytes = \"256MiB\"\n").unwrap();
        assert_eq!((c.query.max_series, c.query.max_line_bytes), (20, 1 << 20));
        assert_eq!(c.query.eval_options().max_series, 20);
        assert_eq!(c.query.limits().max_line_bytes, 1 << 20);
        assert_eq!((c.http.max_in_flight_bytes, c.http.min_body_rate), (1 << 30, 10 << 10));
        assert_eq!(c.kafka.unwrap().max_in_flight_bytes, 256 << 20);
        let err = load("data_dir = \"/x\"\n[query]\nmax_points = 0\nmax_result_bytes = \"1MiB\"\nmax_regex_bytes = \"1KiB\"\n[http]\nmax_in_flight_bytes = \"1MiB\"\nmin_body_rate = 0\n[kafka]\nlisten = \"127.0.0.1:0\"\nmax_in_flight_bytes = \"1MiB\"\n")
            .unwrap_err()
            .to_string();
        for key in [
            "query.max_points: must be at least 1",
            "query.max_result_bytes: 1MiB is below query.max_line_bytes (8MiB)",
            "query.max_regex_bytes: 1KiB is below the minimum of 16KiB",
            "http.max_in_flight_bytes: 1MiB is below http.max_body_bytes (64MiB)",
            "http.min_body_rate: must be at least 1",
            "kafka.max_in_flight_bytes: 1MiB is below kafka.max_request_bytes (64MiB)",
        ] {
            assert!(err.contains(key), "{key} not in {err}");
        }
    }

    #[test]
    fn kafka_loki_and_groups_sections() {
        let c = load("data_dir = \"/x\"\n[kafka]\nlisten = \"127.0.0.1:0\"\nmax_request_bytes = \"1MiB\"\n[loki]\nroute_by = \"tenant\"\ntopic_prefix = \"t-\"\n[groups]\ninitial_rebalance_delay = \"0s\"\n").unwrap();
        let k = c.kafka.unwrap();
        assert_eq!(k.listen.to_string(), "127.0.0.1:0");
        assert_eq!((k.advertised, k.max_request_bytes), (None, 1 << 20));
        assert_eq!(c.loki.route_by, loki::RouteBy::Tenant);
        assert_eq!(c.loki.compression, Compression::Gzip { level: 1 });
        assert_eq!(c.groups.initial_rebalance_delay, Duration::ZERO);
        let c = load("data_dir = \"/x\"\n[loki]\ncompression = \"lz4\"\n").unwrap();
        assert_eq!(c.loki.compression, Compression::Lz4);
        let c = load("data_dir = \"/x\"\n[loki]\ngzip_level = 6\n").unwrap();
        assert_eq!(c.loki.compression, Compression::Gzip { level: 6 });
        let err = load("data_dir = \"/x\"\n[loki]\ngzip_level = 10\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("collector.toml:3:14: loki.gzip_level: 10 is out of range (1 to 9)"),
            "{err}"
        );
        let err = load("data_dir = \"/x\"\n[loki]\ncompression = \"lzma\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("collector.toml:3:15: loki.compression: unknown codec \"lzma\""),
            "{err}"
        );
        let err = load("data_dir = \"/x\"\n[kafka]\nlisten = \"0.0.0.0:9092\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("collector.toml:3:10: kafka.listen: 0.0.0.0:9092 is a wildcard address"),
            "{err}"
        );
        let err = load("data_dir = \"/x\"\n[kafka]\nlisten = \"0.0.0.0:9092\"\nadvertised = \"nohost\"\n[loki]\ndefault_topic = \"a b\"\nroute_by = \"header\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("loki.route_by: unknown variant `header`"), "{err}");
        let err = load("data_dir = \"/x\"\n[kafka]\nlisten = \"0.0.0.0:9092\"\nadvertised = \"nohost\"\n[loki]\ndefault_topic = \"a b\"\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("kafka.advertised: invalid address \"nohost\""), "{text}");
        assert!(text.contains("loki.default_topic"), "{text}");
    }

    #[test]
    fn retention_limits_and_topic_overrides() {
        let c = load("data_dir = \"/x\"\n[storage]\nretention_bytes = \"10GiB\"\nretention_age = \"forever\"\n[topics.audit]\npartitions = 3\nretention_age = \"90d\"\n").unwrap();
        assert_eq!(c.store.retention.bytes, Some(10 << 30));
        assert_eq!(c.store.retention.age, None);
        let audit = &c.store.topics["audit"];
        assert_eq!(audit.partitions, Some(3));
        assert_eq!(audit.retention.age, Some(Some(Duration::from_secs(90 * 86_400))));
        assert_eq!(audit.retention.bytes, None, "unset: falls back");
        let err = load("data_dir = \"/x\"\n[storage]\nretention_age = \"sometime\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.retention_age"), "{err}");
        let err = load("data_dir = \"/x\"\n[topics.\"a/b\"]\npartitions = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("topics.a/b"), "{err}");
    }
}
