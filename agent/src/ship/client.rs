//! The async shell around shipping: compress sealed requests on the
//! blocking pool, POST them in order, retry with backoff and failover, and
//! record acknowledged positions.
//!
//! Two stages: compression, up to `max_in_flight` requests at once, and
//! the sender, which keeps up to `max_in_flight` requests on the wire.
//! Requests leave in the order the tailer sealed them and their answers
//! are taken in that order, so acknowledgements move each file forward in
//! order. Only the oldest request retries; one sent behind it makes one
//! attempt marked `pipelined`, for which the collector stores a stream's
//! batch only after its predecessor. If that attempt is refused or fails,
//! the request is sent again, alone, once it is the oldest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use logpost_shared::compression::Compression;
use logpost_shared::record::CURSOR_HEADER;
use metrics::counter;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::acks::{AckBoard, Acked, Unsettled};
use super::batcher::ShipRequest;
use super::leaders::Leaders;
use super::refusals::{Refusal, RefusalLog};
use super::retry::Backoff;
use crate::tail::fingerprint::FileKey;

mod dry_run;
mod post;
mod routing;

pub use dry_run::run_dry;

/// Content type of a body of RecordBatch v2 frames (the collector's ingest API).
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.kafka.record-batch.v2";
/// Attempts of a request the collector calls malformed (400) before it is
/// set aside in the dead-letter directory (`refusals.rs`): retrying it
/// forever would stall every file behind it, and it is never dropped.
const MAX_CLIENT_ERROR_ATTEMPTS: u32 = 3;
/// First retry delay and cap.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A compressed request ready to send.
#[derive(Debug)]
pub struct Payload {
    pub topic: String,
    pub body: Bytes,
    pub acks: Vec<(FileKey, Acked)>,
    pub records: u64,
    pub raw_bytes: usize,
    /// The request's count as unsettled, released with the payload.
    pub unsettled: Option<Unsettled>,
    /// Where each batch's frame is in `body`, and what decides its
    /// partition (for routing to leaders), in request order.
    pub frames: Vec<FrameRoute>,
}

/// One batch of a payload, for routing it to its partition's leader.
#[derive(Debug)]
pub struct FrameRoute {
    pub range: std::ops::Range<usize>,
    pub key: Option<Box<[u8]>>,
    pub producer_id: i64,
}

/// Collector URLs, replaced on reload.
pub type SharedUrls = std::sync::Arc<std::sync::RwLock<Vec<String>>>;

pub(super) fn current(urls: &SharedUrls) -> Vec<String> {
    urls.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Settings of the shipper.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Collector URLs, shared so that a reload (SIGHUP) can change them.
    pub urls: SharedUrls,
    pub compression: Compression,
    /// Requests on the wire (and compressions running) at once, at least 1.
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    /// Token and TLS settings.
    pub auth: crate::config::CollectorAuth,
    /// Where refusals and set-aside requests are recorded.
    pub refusals: RefusalLog,
    /// Partition leaders in a cluster, shared with the stream lookup.
    pub leaders: Arc<Leaders>,
}

/// What the shipper did, for the exit summary and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShipperStats {
    pub requests: u64,
    pub records: u64,
    pub retries: u64,
    /// Records of requests set aside as malformed (dead-lettered).
    pub rejected_records: u64,
}

/// Compresses a sealed request into one body of concatenated frames.
///
/// # Errors
/// The encoder failed (it does not, writing into memory).
pub fn compress(req: ShipRequest, compression: Compression) -> Result<Payload, logpost_shared::batch::BatchError> {
    // Room for the compressed body up front: growing it would copy it.
    let mut body = Vec::with_capacity(req.raw_bytes / 3 + 256 * req.batches.len());
    let mut acks = Vec::with_capacity(req.batches.len());
    let mut frames = Vec::with_capacity(req.batches.len());
    let unsettled = req.unsettled;
    for mut b in req.batches {
        let start = body.len();
        // The collector keeps the last record's cursor per stream: where to
        // resume after a crash without sending anything twice.
        let cursor = b.cursor();
        b.builder.add_header_to_last(CURSOR_HEADER, cursor.as_bytes());
        b.builder.finish_append(compression, &mut body)?;
        frames.push(FrameRoute {
            range: start..body.len(),
            key: b.key.take(),
            producer_id: b.producer_id,
        });
        acks.push((
            b.file,
            Acked {
                pos: b.end_pos,
                next_seq: b.next_seq,
                generation: b.generation,
            },
        ));
    }
    Ok(Payload {
        topic: req.topic,
        body: Bytes::from(body),
        acks,
        records: req.records,
        raw_bytes: req.raw_bytes,
        unsettled,
        frames,
    })
}

/// A compression running on the blocking pool; `None` if it failed.
type Compressing = JoinHandle<Option<Payload>>;

/// Starts the compression stage: sealed requests in, compressions (in
/// sealing order) out, at most `parallel` running at once.
fn start_compression(
    mut requests: mpsc::Receiver<ShipRequest>,
    compression: Compression,
    parallel: usize,
) -> (JoinHandle<()>, mpsc::Receiver<Compressing>) {
    // Up to `parallel` compressions may finish ahead of the window: the
    // next request is then ready the moment an answer frees a place.
    let (tx, compressing) = mpsc::channel::<Compressing>(parallel.max(1));
    let slots = Arc::new(Semaphore::new(parallel.max(1)));
    let stage = tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let task = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                compress(req, compression)
                    .map_err(|e| tracing::error!(error = %e, "cannot encode batch; dropping it"))
                    .ok()
            });
            if tx.send(task).await.is_err() {
                break;
            }
        }
    });
    (stage, compressing)
}

/// A request on the wire.
struct InFlight {
    payload: Arc<Payload>,
    /// Sent while an older request was unanswered.
    pipelined: bool,
    attempt: JoinHandle<Outcome>,
}

/// The answer of the oldest request on the wire (pending while none is).
async fn oldest_answer(window: &mut VecDeque<InFlight>) -> Outcome {
    match window.front_mut() {
        // A task that panicked counts as unsent: it is sent again.
        Some(f) => (&mut f.attempt).await.unwrap_or(Outcome::Unsent { client_errors: 0 }),
        None => std::future::pending().await,
    }
}

enum Event {
    Answered(Outcome),
    Compressed(Option<Compressing>),
    Stop,
}

/// Runs both stages until `requests` closes (graceful) or `hard_stop` fires.
pub async fn run(
    config: ShipperConfig,
    requests: mpsc::Receiver<ShipRequest>,
    acks: Arc<AckBoard>,
    hard_stop: CancellationToken,
) -> ShipperStats {
    let max_in_flight = config.max_in_flight.max(1);
    let (compress_stage, mut compressed) = start_compression(requests, config.compression, max_in_flight);
    let builder = match super::http::client_builder(&config.auth) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot build HTTP client");
            compress_stage.abort();
            return ShipperStats::default();
        }
    };
    let http = match builder
        .connect_timeout(Duration::from_secs(10))
        .timeout(config.request_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build HTTP client");
            compress_stage.abort();
            return ShipperStats::default();
        }
    };
    let leaders = Arc::clone(&config.leaders);
    let sender = Arc::new(Sender {
        config,
        http,
        leaders,
        url_index: AtomicUsize::new(0),
        retries: AtomicU64::new(0),
        seed: AtomicU64::new(seed()),
    });
    let mut stats = ShipperStats::default();
    let mut window: VecDeque<InFlight> = VecDeque::with_capacity(max_in_flight);
    let mut open = true;
    loop {
        if !open && window.is_empty() {
            break;
        }
        let room = open && window.len() < max_in_flight;
        let event = tokio::select! {
            biased;
            () = hard_stop.cancelled() => Event::Stop,
            outcome = oldest_answer(&mut window), if !window.is_empty() => Event::Answered(outcome),
            next = compressed.recv(), if room => Event::Compressed(next),
        };
        match event {
            Event::Stop => break,
            Event::Compressed(None) => open = false,
            Event::Compressed(Some(task)) => {
                let Ok(Some(payload)) = task.await else { continue };
                let payload = Arc::new(payload);
                let pipelined = !window.is_empty();
                let attempt = tokio::spawn({
                    let sender = Arc::clone(&sender);
                    let payload = Arc::clone(&payload);
                    let hard_stop = hard_stop.clone();
                    async move {
                        if pipelined {
                            match sender.attempt(&payload, true).await {
                                Attempt::Done(outcome) => outcome,
                                Attempt::Retry(_) | Attempt::Refused(_) => Outcome::Unsent { client_errors: 0 },
                                Attempt::Malformed(_) => Outcome::Unsent { client_errors: 1 },
                            }
                        } else {
                            sender.send(&payload, &hard_stop, 0).await
                        }
                    }
                });
                window.push_back(InFlight {
                    payload,
                    pipelined,
                    attempt,
                });
            }
            Event::Answered(outcome) => {
                let Some(done) = window.pop_front() else { continue };
                let outcome = match outcome {
                    // Sent ahead and not stored whole: now that everything
                    // older is answered, send it again in order.
                    Outcome::Partly(_) if done.pipelined => {
                        counter!("logpost_agent_requests_resent_in_order_total").increment(1);
                        sender.send(&done.payload, &hard_stop, 0).await
                    }
                    Outcome::Unsent { client_errors } => {
                        counter!("logpost_agent_requests_resent_in_order_total").increment(1);
                        sender.send(&done.payload, &hard_stop, client_errors).await
                    }
                    other => other,
                };
                if !settle(&done.payload, outcome, &acks, &mut stats) {
                    break;
                }
            }
        }
    }
    for f in window {
        f.attempt.abort();
    }
    compress_stage.abort();
    let _ = compress_stage.await;
    stats.retries = sender.retries.load(Ordering::Relaxed);
    stats
}

/// Applies a request's final outcome to the acknowledgements; false when
/// the shipper was stopped.
fn settle(payload: &Payload, outcome: Outcome, acks: &AckBoard, stats: &mut ShipperStats) -> bool {
    match outcome {
        Outcome::Acked => {
            for (file, acked) in &payload.acks {
                acks.record(*file, *acked);
            }
            stats.requests += 1;
            stats.records += payload.records;
            counter!("logpost_agent_batches_acked_total").increment(1);
            counter!("logpost_agent_records_shipped_total").increment(payload.records);
            counter!("logpost_agent_bytes_shipped_total").increment(payload.body.len() as u64);
        }
        Outcome::Partly(refused) => {
            for ((file, acked), refused) in payload.acks.iter().zip(refused) {
                if refused {
                    acks.request_resync(*file);
                } else {
                    acks.record(*file, *acked);
                }
            }
            stats.requests += 1;
        }
        Outcome::Rejected => {
            // Set aside in the dead-letter directory (by `send`): the
            // files behind it move on, and its lines are kept there.
            for (file, acked) in &payload.acks {
                acks.record(*file, *acked);
            }
            stats.rejected_records += payload.records;
            counter!("logpost_agent_batches_failed_total").increment(1);
        }
        // `send` retries until one of the above; unsent here means stopped.
        Outcome::Unsent { .. } | Outcome::Stopped => return false,
    }
    true
}

enum Outcome {
    Acked,
    /// Some batches were refused (sequence gap): the collector's answer
    /// says which, in request order.
    Partly(Vec<bool>),
    /// Malformed and set aside in the dead-letter directory.
    Rejected,
    /// One attempt that did not get an answer to act on, after
    /// `client_errors` refusals of the request itself.
    Unsent {
        client_errors: u32,
    },
    Stopped,
}

/// What one attempt asks of the caller.
enum Attempt {
    Done(Outcome),
    /// Retry, after at least this long if the collector said so.
    Retry(Option<Duration>),
    /// The collector says the request is malformed (400), in these words.
    Malformed(String),
    /// The collector refuses the request by policy (unknown topic, token,
    /// limits): retried without end, and said where operators look.
    Refused(Refusal),
}

struct Sender {
    config: ShipperConfig,
    http: reqwest::Client,
    leaders: Arc<Leaders>,
    url_index: AtomicUsize,
    retries: AtomicU64,
    seed: AtomicU64,
}

impl Sender {
    /// Sends `payload` until it is answered, refused for good or the
    /// shipper stops, with backoff between attempts; `client_errors`
    /// counts refusals of earlier attempts.
    async fn send(&self, payload: &Payload, hard_stop: &CancellationToken, mut client_errors: u32) -> Outcome {
        let seed = self.seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX, seed);
        let mut refused_since: Option<u64> = None;
        let mut refusals = 0u64;
        loop {
            if hard_stop.is_cancelled() {
                return Outcome::Stopped;
            }
            let retry_after = match self.attempt(payload, false).await {
                Attempt::Done(outcome) => {
                    if refused_since.is_some() {
                        tracing::info!(topic = %payload.topic, "the collector takes the refused request now");
                        self.config.refusals.cleared();
                    }
                    return outcome;
                }
                Attempt::Retry(after) => after,
                Attempt::Malformed(message) => {
                    client_errors += 1;
                    if client_errors >= MAX_CLIENT_ERROR_ATTEMPTS {
                        match self.config.refusals.dead_letter(payload, 400, &message) {
                            Some(kept) => {
                                tracing::error!(topic = %payload.topic, records = payload.records, path = %kept.display(),
                                    error = %message.trim(), "the collector calls this request malformed; set aside in the dead-letter directory");
                                if refused_since.is_some() {
                                    self.config.refusals.cleared();
                                }
                                return Outcome::Rejected;
                            }
                            // Kept nowhere: keep trying rather than lose it.
                            None => client_errors = 0,
                        }
                    }
                    None
                }
                Attempt::Refused(mut r) => {
                    refusals += 1;
                    r.since_ms = *refused_since.get_or_insert_with(super::refusals::now_ms);
                    r.attempts = refusals;
                    r.records = payload.records;
                    if refusals == 1 || refusals.is_power_of_two() || refusals.is_multiple_of(20) {
                        tracing::error!(refusal = %r,
                            "the collector refuses this request; its lines wait in their files until it takes them (fix the collector's config or the agent's)");
                    }
                    self.config.refusals.refused(&r);
                    None
                }
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            counter!("logpost_agent_retries_total").increment(1);
            let delay = backoff.next_delay(retry_after);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = hard_stop.cancelled() => return Outcome::Stopped,
            }
        }
    }

    /// One attempt at `payload`, `pipelined` if an older request is
    /// unanswered. In a cluster each batch goes to its partition's leader
    /// (one POST per leader, at once); otherwise the whole request goes to
    /// the current URL, and the next one is tried after a failure.
    async fn attempt(&self, payload: &Payload, pipelined: bool) -> Attempt {
        if let Some(groups) = self.route(payload).await {
            if let [(base, _)] = groups.as_slice() {
                let (answer, moved) = self
                    .post_to(base, payload.body.clone(), payload, payload.acks.len(), pipelined)
                    .await;
                if moved {
                    self.leaders.invalidate();
                }
                return answer;
            }
            return self.attempt_split(payload, &groups, pipelined).await;
        }
        let urls = current(&self.config.urls);
        let index = self.url_index.load(Ordering::Relaxed);
        let base = urls.get(index % urls.len().max(1)).cloned().unwrap_or_default();
        let (answer, moved) = self
            .post_to(&base, payload.body.clone(), payload, payload.acks.len(), pipelined)
            .await;
        // Fail over to the next URL on connection problems and 421s; two
        // requests failing on the same URL move on once.
        if moved && !urls.is_empty() {
            let next = (index + 1) % urls.len();
            let _ = self
                .url_index
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
            // A node that does not lead may mean a cluster formed since.
            self.leaders.invalidate();
        }
        answer
    }
}

pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}
