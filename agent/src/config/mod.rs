//! `agent.toml`: raw serde types that mirror the file, and the validated
//! [`AgentConfig`] the rest of the agent sees. Validation compiles globs
//! once and collects every problem, each naming file, line and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use logpost_shared::compression::Compression;
use logpost_shared::config::{ByteSize, ConfigError, HumanDuration, Problems, SourceText, parse_toml, read_config};
use serde::Deserialize;
use toml::Spanned;

use crate::tail::framing::LongLines;
use crate::tail::watch::WatchMode;

mod collector;
mod source;
pub use collector::CollectorAuth;
use collector::validate_collector_auth;
use source::validate_source;
pub use source::{KeyTemplate, Source, SourceToml, StartAt};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentToml {
    /// Directory for the agent's checkpoints and identity. Must be writable.
    pub data_dir: PathBuf,
    /// Value of the `host` header. Default: this machine's hostname.
    pub host: Option<String>,
    /// Where batches go.
    pub collector: CollectorToml,
    /// Batching and compression.
    #[serde(default)]
    pub batch: BatchToml,
    /// How files are watched and read.
    #[serde(default)]
    pub tail: TailToml,
    /// The Prometheus metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsToml,
    /// Log sources: one `[[sources]]` table each.
    pub sources: Vec<SourceToml>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsToml {
    /// Address serving `GET /metrics` (Prometheus text format), e.g.
    /// `"127.0.0.1:9598"`. Off unless set.
    pub listen: Option<Spanned<String>>,
}

/// `[collector]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorToml {
    /// Collector base URLs, e.g. `["http://10.0.0.5:7070"]`. With several,
    /// the agent fails over to the next when one cannot be reached.
    pub urls: Spanned<Vec<Spanned<String>>>,
    /// Timeout of one request. Default 30s.
    #[serde(default = "default_request_timeout")]
    pub timeout: HumanDuration,
    /// Bearer token for a collector with `[auth]` tokens (scope `ingest`).
    /// At most one of `token`, `token_file`, `token_env`.
    pub token: Option<Spanned<String>>,
    /// File whose first line is the token (readable by the agent only).
    pub token_file: Option<Spanned<PathBuf>>,
    /// Environment variable holding the token.
    pub token_env: Option<Spanned<String>>,
    /// PEM CA certificate(s) the collector's https certificate must chain
    /// to, instead of the system's roots.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// Client certificate (PEM) for a collector requiring one; needs `client_key` and `ca_file`.
    pub client_cert: Option<Spanned<PathBuf>>,
    /// Private key (PEM) of `client_cert`.
    pub client_key: Option<Spanned<PathBuf>>,
}

/// `[batch]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchToml {
    /// Uncompressed record bytes per request to the collector. Default 2MiB.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: Spanned<ByteSize>,
    /// Records per request. Default 100000.
    #[serde(default = "default_batch_records")]
    pub max_records: Spanned<u32>,
    /// Longest a line waits before its batch is sent. Default 1s.
    #[serde(default = "default_batch_wait")]
    pub max_wait: HumanDuration,
    /// Once every file is read to its end and nothing is on its way to the
    /// collector, a batch is sent when its oldest line has waited this
    /// long, instead of `max_wait`. Default 100ms (or `max_wait` if that
    /// is shorter); at most `max_wait`.
    #[serde(default)]
    pub linger: Option<Spanned<HumanDuration>>,
    /// `"gzip"` (default), `"lz4"` (faster, larger), `"snappy"` or `"none"`:
    /// Kafka's codecs, which the collector stores as they arrive.
    #[serde(default = "default_compression")]
    pub compression: Spanned<String>,
    /// gzip level 1 (fastest, default) to 9 (smallest).
    #[serde(default = "default_gzip_level")]
    pub gzip_level: Spanned<u32>,
    /// Requests on the wire at once, 1 to 8. Default 4: the next requests
    /// travel and are checked while the collector stores the previous one.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: Spanned<u32>,
}

impl Default for BatchToml {
    fn default() -> Self {
        Self {
            max_bytes: default_batch_bytes(),
            max_records: default_batch_records(),
            max_wait: default_batch_wait(),
            linger: None,
            compression: default_compression(),
            gzip_level: default_gzip_level(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

/// `[tail]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailToml {
    /// How often files are checked for new data. Default 250ms.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// How often globs are re-expanded to find new files (with inotify, new
    /// files are also found at once through events). A periodic rescan is
    /// skipped while the globs' directories are unchanged. Default 5s.
    #[serde(default = "default_glob_interval")]
    pub glob_interval: HumanDuration,
    /// A last line without a newline is sent once its file has not grown
    /// for this long. Default 1s.
    #[serde(default = "default_partial_line_timeout")]
    pub partial_line_timeout: HumanDuration,
    /// Longest line; see `long_lines`. Default 1MiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: Spanned<ByteSize>,
    /// What happens to a longer line: `"split"` (default) into pieces of at
    /// most `max_line_bytes`, each marked `logpost.split`, or `"truncate"`
    /// to its first `max_line_bytes`, marked `logpost.truncated` (the rest
    /// is counted in `logpost_agent_bytes_truncated_total`).
    #[serde(default = "default_long_lines")]
    pub long_lines: Spanned<String>,
    /// A rotated or deleted file is closed after it has been read to its end
    /// and has not grown for this long. Default 5s.
    #[serde(default = "default_rotated_idle")]
    pub rotated_file_idle: HumanDuration,
    /// How often acknowledged positions are written to disk. Default 1s.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// How changes are noticed: `"auto"` (inotify where it works, else
    /// polling; default), `"notify"` (inotify or fail), `"poll"`.
    #[serde(default = "default_watch")]
    pub watch: Spanned<String>,
    /// Most files held open at once; idle files beyond it are closed and
    /// reopened when they change, and new files wait their turn. Default 1024.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: Spanned<u32>,
    /// A file read to its end and idle this long has its handle closed
    /// (it is reopened on change). Default 30s.
    #[serde(default = "default_close_idle_after")]
    pub close_idle_after: HumanDuration,
}

impl Default for TailToml {
    fn default() -> Self {
        Self {
            poll_interval: default_poll_interval(),
            glob_interval: default_glob_interval(),
            partial_line_timeout: default_partial_line_timeout(),
            max_line_bytes: default_max_line_bytes(),
            long_lines: default_long_lines(),
            rotated_file_idle: default_rotated_idle(),
            checkpoint_interval: default_checkpoint_interval(),
            watch: default_watch(),
            max_open_files: default_max_open_files(),
            close_idle_after: default_close_idle_after(),
        }
    }
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_batch_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(2 << 20))
}
fn default_batch_records() -> Spanned<u32> {
    Spanned::new(0..0, 100_000)
}
fn default_batch_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
const DEFAULT_BATCH_LINGER: Duration = Duration::from_millis(100);
fn default_compression() -> Spanned<String> {
    Spanned::new(0..0, "gzip".to_owned())
}
fn default_gzip_level() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_max_in_flight() -> Spanned<u32> {
    Spanned::new(0..0, 4)
}
fn default_poll_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(250))
}
fn default_glob_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_partial_line_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_max_line_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(1 << 20))
}
fn default_long_lines() -> Spanned<String> {
    Spanned::new(0..0, "split".to_owned())
}
fn default_rotated_idle() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_watch() -> Spanned<String> {
    Spanned::new(0..0, "auto".to_owned())
}
fn default_max_open_files() -> Spanned<u32> {
    Spanned::new(0..0, 1024)
}
fn default_close_idle_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
/// Batching settings.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub max_bytes: usize,
    pub max_records: u32,
    pub max_wait: Duration,
    /// How long a batch waits while the tailer has caught up and the
    /// shipper is idle (at most `max_wait`).
    pub linger: Duration,
    pub compression: Compression,
    /// Requests sent before the oldest is answered.
    pub max_in_flight: usize,
}

/// Tailing settings.
#[derive(Debug, Clone)]
pub struct TailConfig {
    pub poll_interval: Duration,
    pub glob_interval: Duration,
    pub partial_line_timeout: Duration,
    pub max_line_bytes: usize,
    pub long_lines: LongLines,
    pub rotated_file_idle: Duration,
    pub checkpoint_interval: Duration,
    pub watch: WatchMode,
    pub max_open_files: usize,
    pub close_idle_after: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub host: String,
    pub collector_urls: Vec<String>,
    pub request_timeout: Duration,
    pub collector_auth: CollectorAuth,
    pub batch: BatchConfig,
    pub tail: TailConfig,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub sources: Vec<Source>,
}

/// Smallest `max_line_bytes`: below this, ordinary lines would be split.
const MIN_LINE_BYTES: u64 = 256;
/// Largest `max_line_bytes`: a record field is an i32 length and one line
/// must fit in one batch.
const MAX_LINE_BYTES: u64 = 256 << 20;

impl AgentConfig {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// Every problem found, each naming line and key.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        Self::from_source(&read_config(path)?)
    }

    /// Validates already-read text.
    ///
    /// # Errors
    /// Every problem found, each naming line and key.
    pub fn from_source(source: &SourceText) -> Result<AgentConfig, ConfigError> {
        let raw: AgentToml = parse_toml(source)?;
        let mut p = Problems::new(source);

        let mut collector_urls = Vec::new();
        if raw.collector.urls.get_ref().is_empty() {
            p.at(
                raw.collector.urls.span(),
                "collector.urls",
                "at least one collector URL is required",
            );
        }
        for (i, url) in raw.collector.urls.get_ref().iter().enumerate() {
            match check_url(url.get_ref()) {
                Ok(u) => collector_urls.push(u),
                Err(msg) => p.at(url.span(), format!("collector.urls[{i}]"), msg),
            }
        }

        let collector_auth = validate_collector_auth(&raw.collector, &mut p);
        let batch = validate_batch(&raw.batch, &mut p);
        let max_line = raw.tail.max_line_bytes.get_ref().bytes();
        if !(MIN_LINE_BYTES..=MAX_LINE_BYTES).contains(&max_line) {
            p.at(
                raw.tail.max_line_bytes.span(),
                "tail.max_line_bytes",
                format!("{} is out of range (256B to 256MiB)", raw.tail.max_line_bytes.get_ref()),
            );
        }
        let tail = TailConfig {
            poll_interval: raw.tail.poll_interval.get().max(Duration::from_millis(10)),
            glob_interval: raw.tail.glob_interval.get().max(Duration::from_millis(10)),
            partial_line_timeout: raw.tail.partial_line_timeout.get(),
            max_line_bytes: usize::try_from(max_line).unwrap_or(usize::MAX),
            long_lines: match raw.tail.long_lines.get_ref().as_str() {
                "split" => LongLines::Split,
                "truncate" => LongLines::Truncate,
                other => {
                    p.at(
                        raw.tail.long_lines.span(),
                        "tail.long_lines",
                        format!("unknown value {other:?} (use \"split\" or \"truncate\")"),
                    );
                    LongLines::Split
                }
            },
            rotated_file_idle: raw.tail.rotated_file_idle.get(),
            checkpoint_interval: raw.tail.checkpoint_interval.get().max(Duration::from_millis(10)),
            watch: match raw.tail.watch.get_ref().as_str() {
                "auto" => WatchMode::Auto,
                "notify" => WatchMode::Notify,
                "poll" => WatchMode::Poll,
                other => {
                    p.at(
                        raw.tail.watch.span(),
                        "tail.watch",
                        format!("unknown mode {other:?} (use \"auto\", \"notify\" or \"poll\")"),
                    );
                    WatchMode::Auto
                }
            },
            max_open_files: {
                let n = *raw.tail.max_open_files.get_ref();
                if n < 16 {
                    p.at(
                        raw.tail.max_open_files.span(),
                        "tail.max_open_files",
                        format!("{n} is too small (at least 16)"),
                    );
                }
                n.max(16) as usize
            },
            close_idle_after: raw.tail.close_idle_after.get(),
        };

        if raw.sources.is_empty() {
            p.whole("sources", "at least one [[sources]] table is required");
        }
        let mut sources = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, s) in raw.sources.iter().enumerate() {
            if let Some(src) = validate_source(i, s, &mut p) {
                if !names.insert(src.name.clone()) {
                    p.at(
                        s.name.span(),
                        format!("sources[{i}].name"),
                        format!("duplicate source name {:?}", src.name),
                    );
                }
                sources.push(src);
            }
        }
        let host = raw.host.clone().unwrap_or_else(hostname);
        let metrics_listen = raw.metrics.listen.as_ref().and_then(|l| match l.get_ref().parse() {
            Ok(addr) => Some(addr),
            Err(e) => {
                p.at(
                    l.span(),
                    "metrics.listen",
                    format!("invalid address {:?}: {e} (expected host:port)", l.get_ref()),
                );
                None
            }
        });
        p.finish(AgentConfig {
            path: source.path.clone(),
            data_dir: raw.data_dir,
            host,
            collector_urls,
            request_timeout: raw.collector.timeout.get(),
            collector_auth,
            batch,
            tail,
            metrics_listen,
            sources,
        })
    }
}

fn validate_batch(raw: &BatchToml, p: &mut Problems<'_>) -> BatchConfig {
    let max_bytes = raw.max_bytes.get_ref().bytes();
    if !(1024..=(256 << 20)).contains(&max_bytes) {
        p.at(
            raw.max_bytes.span(),
            "batch.max_bytes",
            format!("{} is out of range (1KiB to 256MiB)", raw.max_bytes.get_ref()),
        );
    }
    if *raw.max_records.get_ref() == 0 {
        p.at(raw.max_records.span(), "batch.max_records", "must be at least 1");
    }
    let level = logpost_shared::config::gzip_level(&raw.gzip_level, "batch.gzip_level", p);
    let compression = Compression::from_config_name(raw.compression.get_ref(), level).unwrap_or_else(|e| {
        p.at(raw.compression.span(), "batch.compression", e);
        Compression::None
    });
    let in_flight = *raw.max_in_flight.get_ref();
    if !(1..=MAX_IN_FLIGHT).contains(&in_flight) {
        p.at(
            raw.max_in_flight.span(),
            "batch.max_in_flight",
            format!("{in_flight} is out of range (1 to {MAX_IN_FLIGHT})"),
        );
    }
    let max_wait = raw.max_wait.get();
    let linger = match &raw.linger {
        Some(linger) => {
            let value = linger.get_ref().get();
            if value > max_wait {
                p.at(
                    linger.span(),
                    "batch.linger",
                    format!("{value:?} is longer than batch.max_wait ({max_wait:?})"),
                );
            }
            value
        }
        None => DEFAULT_BATCH_LINGER,
    };
    BatchConfig {
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        max_records: (*raw.max_records.get_ref()).max(1),
        max_wait,
        linger: linger.min(max_wait),
        compression,
        max_in_flight: in_flight.clamp(1, MAX_IN_FLIGHT) as usize,
    }
}

/// More requests in flight buy nothing once compression and the
/// collector's checks overlap, and each holds a request's memory.
const MAX_IN_FLIGHT: u32 = 8;

fn check_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("URL {url:?} must start with http:// or https://"))?;
    if rest.trim_end_matches('/').is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// This machine's hostname, from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests;
