//! `[kafka]` and `[groups]`: the Kafka wire-protocol listener and the
//! consumer-group coordinator, raw and validated.
//!
//! Why apart from `config.rs`: these sections configure the ecosystem
//! protocols, which the rest of the collector does not need to know about.
//! `[groups]` is not under `[kafka]` because groups and committed offsets
//! are shared with HTTP consumers and exist whether or not the Kafka
//! listener is on.

use std::net::SocketAddr;
use std::time::Duration;

use logpost_shared::config::{ByteSize, HumanDuration, Problems};
use serde::Deserialize;
use toml::Spanned;

use crate::kafka::coordinator::CoordinatorConfig;

/// `[kafka]`. The listener is off unless `listen` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaToml {
    /// Address of the Kafka listener, e.g. `"127.0.0.1:9092"`. Unset (the
    /// default): no Kafka listener.
    pub listen: Option<Spanned<String>>,
    /// `host:port` clients are told to connect to (Metadata,
    /// FindCoordinator). Default: the address bound. Required when
    /// `listen` is a wildcard address such as `0.0.0.0:9092`.
    pub advertised: Option<Spanned<String>>,
    /// Cluster id reported to clients. Default `"logpost"`.
    #[serde(default = "default_cluster_id")]
    pub cluster_id: String,
    /// Connections served at once; more wait in the accept backlog.
    /// Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<u32>,
    /// Largest request accepted (Kafka's `socket.request.max.bytes`); a
    /// larger one closes the connection. Default 64MiB.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: ByteSize,
    /// Request bytes held at once across all connections (Kafka's
    /// `queued.max.request.bytes`): a request is read only once its size
    /// fits, and holds it until its appends are done (acks=0 ones too), so
    /// pipelining clients cannot grow memory. At least
    /// `max_request_bytes`. Default 128MiB.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight_bytes: Spanned<ByteSize>,
    /// A connection idle this long is closed (Kafka's
    /// `connections.max.idle.ms`). Default 10m.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Longest a Fetch may wait for data, whatever the client asks. Default 30s.
    #[serde(default = "default_max_fetch_wait")]
    pub max_fetch_wait: HumanDuration,
    /// Whether Metadata and Produce may create missing topics (only if
    /// `storage.auto_create_topics` allows it too). Default true.
    #[serde(default = "default_true")]
    pub auto_create_topics: bool,
}

impl Default for KafkaToml {
    fn default() -> Self {
        Self {
            listen: None,
            advertised: None,
            cluster_id: default_cluster_id(),
            max_connections: default_max_connections(),
            max_request_bytes: default_max_request(),
            max_in_flight_bytes: default_max_in_flight(),
            idle_timeout: default_idle_timeout(),
            max_fetch_wait: default_max_fetch_wait(),
            auto_create_topics: true,
        }
    }
}

/// `[groups]`: consumer groups (Kafka's group coordinator settings).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsToml {
    /// Shortest session timeout a member may ask for. Default 6s
    /// (Kafka's `group.min.session.timeout.ms`).
    #[serde(default = "default_min_session")]
    pub min_session_timeout: HumanDuration,
    /// Longest session timeout a member may ask for. Default 30m.
    #[serde(default = "default_max_session")]
    pub max_session_timeout: HumanDuration,
    /// How long a new group waits for more members before its first
    /// generation, so members starting together share one. Default 3s.
    #[serde(default = "default_initial_delay")]
    pub initial_rebalance_delay: HumanDuration,
    /// Members per group. Default 1000.
    #[serde(default = "default_max_group_size")]
    pub max_group_size: Spanned<u32>,
}

impl Default for GroupsToml {
    fn default() -> Self {
        Self {
            min_session_timeout: default_min_session(),
            max_session_timeout: default_max_session(),
            initial_rebalance_delay: default_initial_delay(),
            max_group_size: default_max_group_size(),
        }
    }
}

fn default_cluster_id() -> String {
    "logpost".to_owned()
}
fn default_max_connections() -> Spanned<u32> {
    Spanned::new(0..0, 1024)
}
fn default_max_request() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_in_flight() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(128 << 20))
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_max_fetch_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_true() -> bool {
    true
}
fn default_min_session() -> HumanDuration {
    HumanDuration(Duration::from_secs(6))
}
fn default_max_session() -> HumanDuration {
    HumanDuration(Duration::from_secs(1800))
}
fn default_initial_delay() -> HumanDuration {
    HumanDuration(Duration::from_secs(3))
}
fn default_max_group_size() -> Spanned<u32> {
    Spanned::new(0..0, 1000)
}

/// The Kafka listener's settings after validation.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub listen: SocketAddr,
    /// `(host, port)` to advertise; `None`: the address actually bound.
    pub advertised: Option<(String, u16)>,
    pub cluster_id: String,
    pub max_connections: usize,
    pub max_request_bytes: usize,
    /// At least `max_request_bytes`.
    pub max_in_flight_bytes: u64,
    pub idle_timeout: Duration,
    pub max_fetch_wait: Duration,
    pub auto_create_topics: bool,
}

/// Smallest request limit: below this, ordinary Metadata and Join requests
/// with long topic lists would be refused.
const MIN_REQUEST_BYTES: u64 = 64 << 10;
/// A RecordBatch length is an i32, so no valid request is larger.
const MAX_REQUEST_BYTES: u64 = i32::MAX as u64;

/// Validates `[kafka]`; `None` when the listener is off.
pub fn validate_kafka(raw: &KafkaToml, problems: &mut Problems) -> Option<KafkaSettings> {
    let listen_raw = raw.listen.as_ref()?;
    let listen = match listen_raw.get_ref().parse::<SocketAddr>() {
        Ok(a) => a,
        Err(e) => {
            problems.at(
                listen_raw.span(),
                "kafka.listen",
                format!(
                    "invalid address {:?}: {e} (expected host:port, e.g. \"127.0.0.1:9092\")",
                    listen_raw.get_ref()
                ),
            );
            return None;
        }
    };
    let advertised = raw.advertised.as_ref().and_then(|a| {
        let parsed = a
            .get_ref()
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().ok()?)))
            .filter(|(h, p)| !h.is_empty() && *p != 0);
        if parsed.is_none() {
            problems.at(
                a.span(),
                "kafka.advertised",
                format!(
                    "invalid address {:?} (expected host:port with a non-zero port, e.g. \"kafka.example.com:9092\")",
                    a.get_ref()
                ),
            );
        }
        parsed.map(|(h, p)| (h.to_owned(), p))
    });
    if raw.advertised.is_none() && listen.ip().is_unspecified() {
        problems.at(
            listen_raw.span(),
            "kafka.listen",
            format!(
                "{listen} is a wildcard address, which clients cannot connect to: set kafka.advertised to the host:port they should use"
            ),
        );
    }
    let max_connections = *raw.max_connections.get_ref();
    if max_connections == 0 {
        problems.at(
            raw.max_connections.span(),
            "kafka.max_connections",
            "must be at least 1",
        );
    }
    let request = raw
        .max_request_bytes
        .bytes()
        .clamp(MIN_REQUEST_BYTES, MAX_REQUEST_BYTES);
    let in_flight = raw.max_in_flight_bytes.get_ref().bytes();
    if in_flight < request {
        problems.at(
            raw.max_in_flight_bytes.span(),
            "kafka.max_in_flight_bytes",
            format!(
                "{} is below kafka.max_request_bytes ({}): a request of the largest size could never be read",
                raw.max_in_flight_bytes.get_ref(),
                raw.max_request_bytes
            ),
        );
    }
    Some(KafkaSettings {
        listen,
        advertised,
        cluster_id: raw.cluster_id.clone(),
        max_connections: max_connections.max(1) as usize,
        max_request_bytes: usize::try_from(request).unwrap_or(usize::MAX),
        max_in_flight_bytes: in_flight.max(request),
        idle_timeout: raw.idle_timeout.get().max(Duration::from_millis(100)),
        max_fetch_wait: raw.max_fetch_wait.get(),
        auto_create_topics: raw.auto_create_topics,
    })
}

/// Validates `[groups]`.
pub fn validate_groups(raw: &GroupsToml, problems: &mut Problems) -> CoordinatorConfig {
    let (min, max) = (raw.min_session_timeout.get(), raw.max_session_timeout.get());
    if min > max {
        problems.whole(
            "groups.min_session_timeout",
            format!(
                "{} is longer than groups.max_session_timeout ({})",
                raw.min_session_timeout, raw.max_session_timeout
            ),
        );
    }
    let size = *raw.max_group_size.get_ref();
    if size == 0 {
        problems.at(raw.max_group_size.span(), "groups.max_group_size", "must be at least 1");
    }
    CoordinatorConfig {
        min_session_timeout: min,
        max_session_timeout: max.max(min),
        initial_rebalance_delay: raw.initial_rebalance_delay.get(),
        max_group_size: size.max(1) as usize,
        ..CoordinatorConfig::default()
    }
}
