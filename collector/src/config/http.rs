//! `[http]` and `[http.tls]`: the listener, its limits and timeouts, and
//! TLS, raw and validated.
//!
//! The limits exist because the collector faces networks it does not
//! control: each one bounds what a single client can make the collector
//! hold (memory, connections) or wait for (slow or idle peers).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use logpost_shared::config::{ByteSize, HumanDuration, Problems};
use serde::Deserialize;
use toml::Spanned;

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToml {
    /// Address to listen on. Default `127.0.0.1:7070`: loopback until you
    /// decide otherwise (and without `[auth]` tokens, loopback it must be).
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    /// Largest request body accepted; larger bodies get 413. Default 64MiB.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: ByteSize,
    /// Largest records section a batch may inflate to; larger gets 413.
    /// Default 256MiB.
    #[serde(default = "default_max_uncompressed")]
    pub max_uncompressed_bytes: ByteSize,
    /// Most records in one batch; more gets 413. Default 1000000.
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: Spanned<u32>,
    /// Largest request head (request line and headers); larger closes the
    /// connection with 431. Default 16KiB.
    #[serde(default = "default_max_header")]
    pub max_header_bytes: Spanned<ByteSize>,
    /// A connection must deliver a complete request head within this time,
    /// and an idle keep-alive connection is closed after it. Default 10s.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// Longest wait for the next piece of a request body, and for the
    /// first; also the grace before `min_body_rate` applies. Default 30s.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: HumanDuration,
    /// Slowest a request body may arrive, bytes per second: a body must be
    /// complete within `body_timeout` plus one second per this many bytes
    /// (Apache's `RequestReadTimeout ... MinRate`), or the request gets 408
    /// and the connection is closed, so trickled bodies cannot hold
    /// connection slots. Default 1KiB.
    #[serde(default = "default_min_body_rate")]
    pub min_body_rate: Spanned<ByteSize>,
    /// Request bodies held in memory at once, across all connections,
    /// before they are checked; a body waits for room before it is read
    /// (up to `body_timeout`, then 503), so memory does not grow with the
    /// number of connections. At least `max_body_bytes`. Default 128MiB.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight_bytes: Spanned<ByteSize>,
    /// Connections served at once; more wait in the accept backlog.
    /// Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<u32>,
    /// Threads that inflate stored batches for one query's scan, ahead of
    /// it. Default 0: one per CPU. 1: the query's own thread only.
    #[serde(default = "default_query_threads")]
    pub query_threads: Spanned<u32>,
    /// TLS on the listener; plain HTTP without it.
    pub tls: Option<TlsToml>,
}

/// `[http.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsToml {
    /// PEM certificate chain, the server's certificate first.
    pub cert: Spanned<PathBuf>,
    /// PEM private key of the certificate.
    pub key: Spanned<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate
    /// signed by one of them (mutual TLS).
    pub client_ca: Option<Spanned<PathBuf>>,
}

impl Default for HttpToml {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_uncompressed_bytes: default_max_uncompressed(),
            max_batch_records: default_max_batch_records(),
            max_header_bytes: default_max_header(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            min_body_rate: default_min_body_rate(),
            max_in_flight_bytes: default_max_in_flight(),
            max_connections: default_max_connections(),
            query_threads: default_query_threads(),
            tls: None,
        }
    }
}

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:7070".to_owned())
}
fn default_max_body() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_uncompressed() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_max_batch_records() -> Spanned<u32> {
    Spanned::new(0..0, 1_000_000)
}
fn default_max_header() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(16 << 10))
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_body_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_min_body_rate() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(1024))
}
fn default_max_in_flight() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(128 << 20))
}
fn default_query_threads() -> Spanned<u32> {
    Spanned::new(0..0, 0)
}
fn default_max_connections() -> Spanned<u32> {
    Spanned::new(0..0, 1024)
}

/// TLS files, checked at start-up (the server config is built from them).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// `[http]` after validation.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub max_uncompressed_bytes: usize,
    pub max_batch_records: u32,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Bytes per second; at least 1.
    pub min_body_rate: u64,
    /// At least `max_body_bytes`.
    pub max_in_flight_bytes: u64,
    pub max_connections: usize,
    /// `query_threads` resolved: at least 1.
    pub query_threads: usize,
    pub tls: Option<TlsSettings>,
}

/// Most `query_threads`: more helpers than this only wait on one another.
const MAX_QUERY_THREADS: u32 = 64;

/// Batches larger than this are refused whatever the body limit: RecordBatch
/// lengths are i32 and a segment must hold at least one batch.
const MAX_BATCH_BYTES_CEILING: u64 = 1 << 30;
/// hyper's read buffer cannot be smaller than this; it is also what common
/// servers allow for a request head (nginx's large_client_header_buffers).
const MIN_HEADER_BYTES: u64 = 8192;

/// Validates `[http]`; with `tls`, also that the certificate and key load.
pub fn validate_http(raw: &HttpToml, problems: &mut Problems<'_>) -> HttpSettings {
    let listen = match raw.listen.get_ref().parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(e) => {
            problems.at(
                raw.listen.span(),
                "http.listen",
                format!(
                    "invalid address {:?}: {e} (expected host:port, e.g. \"127.0.0.1:7070\")",
                    raw.listen.get_ref()
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 7070))
        }
    };
    let header = raw.max_header_bytes.get_ref().bytes();
    if !(MIN_HEADER_BYTES..=(1 << 20)).contains(&header) {
        problems.at(
            raw.max_header_bytes.span(),
            "http.max_header_bytes",
            format!("{} is out of range (8KiB to 1MiB)", raw.max_header_bytes.get_ref()),
        );
    }
    if *raw.max_batch_records.get_ref() == 0 {
        problems.at(
            raw.max_batch_records.span(),
            "http.max_batch_records",
            "must be at least 1",
        );
    }
    if *raw.max_connections.get_ref() == 0 {
        problems.at(raw.max_connections.span(), "http.max_connections", "must be at least 1");
    }
    let query_threads = *raw.query_threads.get_ref();
    if query_threads > MAX_QUERY_THREADS {
        problems.at(
            raw.query_threads.span(),
            "http.query_threads",
            format!("{query_threads} is out of range (0 for one per CPU, or 1 to {MAX_QUERY_THREADS})"),
        );
    }
    let query_threads = match query_threads.min(MAX_QUERY_THREADS) {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n as usize,
    };
    let tls = raw.tls.as_ref().and_then(|t| {
        let client_ca = t.client_ca.as_ref().map(|c| c.get_ref().clone());
        match logpost_shared::tls::server_config(t.cert.get_ref(), t.key.get_ref(), client_ca.as_deref()) {
            Ok(_) => Some(TlsSettings {
                cert: t.cert.get_ref().clone(),
                key: t.key.get_ref().clone(),
                client_ca,
            }),
            Err(e) => {
                problems.at(t.cert.span(), "http.tls", e.to_string());
                None
            }
        }
    });
    let max_body = raw.max_body_bytes.bytes().min(MAX_BATCH_BYTES_CEILING);
    let in_flight = raw.max_in_flight_bytes.get_ref().bytes();
    if in_flight < max_body {
        problems.at(
            raw.max_in_flight_bytes.span(),
            "http.max_in_flight_bytes",
            format!(
                "{} is below http.max_body_bytes ({}): a body of the largest size could never be read",
                raw.max_in_flight_bytes.get_ref(),
                raw.max_body_bytes
            ),
        );
    }
    if raw.min_body_rate.get_ref().bytes() == 0 {
        problems.at(
            raw.min_body_rate.span(),
            "http.min_body_rate",
            "must be at least 1 (bytes per second)",
        );
    }
    HttpSettings {
        listen,
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        max_uncompressed_bytes: raw.max_uncompressed_bytes.as_usize(),
        max_batch_records: (*raw.max_batch_records.get_ref()).max(1),
        max_header_bytes: usize::try_from(header.clamp(MIN_HEADER_BYTES, 1 << 20)).unwrap_or(16 << 10),
        // Zero would close every connection at once; a millisecond is the floor.
        header_timeout: raw.header_timeout.get().max(Duration::from_millis(1)),
        body_timeout: raw.body_timeout.get().max(Duration::from_millis(1)),
        min_body_rate: raw.min_body_rate.get_ref().bytes().max(1),
        max_in_flight_bytes: in_flight.max(max_body),
        max_connections: (*raw.max_connections.get_ref()).max(1) as usize,
        query_threads,
        tls,
    }
}
