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
use reqwest::StatusCode;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::acks::{AckBoard, Acked, Unsettled};
use super::batcher::ShipRequest;
use super::leaders::Leaders;
use super::refusals::{Refusal, RefusalLog};
use super::retry::{Backoff, parse_retry_after};
use crate::tail::fingerprint::FileKey;

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

    /// The leader of each batch's partition, grouping batch indexes by
    /// leader URL in request order; `None` without a cluster map, for a
    /// topic it does not list, or when a partition has no leader now.
    async fn route(&self, payload: &Payload) -> Option<Vec<(String, Vec<usize>)>> {
        let map = self.leaders.map_for(&payload.topic).await?;
        let leaders = map.topic(&payload.topic)?;
        let count = u32::try_from(leaders.len()).ok().filter(|&n| n > 0)?;
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, f) in payload.frames.iter().enumerate() {
            let p = logpost_shared::partition::by_key(f.key.as_deref(), f.producer_id, count)?;
            let url = leaders.get(p as usize)?.as_deref()?;
            match groups.iter_mut().find(|(u, _)| u == url) {
                Some((_, indexes)) => indexes.push(i),
                None => groups.push((url.to_owned(), vec![i])),
            }
        }
        (!groups.is_empty()).then_some(groups)
    }

    /// Sends each group's batches to its leader at once and merges the
    /// answers. Any attempt to retry retries the whole request: batches a
    /// leader already stored come back as duplicates, which the collector
    /// acknowledges without storing them again.
    async fn attempt_split(&self, payload: &Payload, groups: &[(String, Vec<usize>)], pipelined: bool) -> Attempt {
        let posts = groups.iter().map(|(base, indexes)| {
            let mut body = Vec::new();
            for f in indexes.iter().filter_map(|&i| payload.frames.get(i)) {
                body.extend_from_slice(payload.body.get(f.range.clone()).unwrap_or_default());
            }
            self.post_to(base, Bytes::from(body), payload, indexes.len(), pipelined)
        });
        let answers = join_all(posts.collect()).await;
        let mut refused = vec![false; payload.acks.len()];
        let mut partly = false;
        let mut retry: Option<Option<Duration>> = None;
        let mut other = None;
        for ((_, indexes), (answer, moved)) in groups.iter().zip(answers) {
            if moved {
                self.leaders.invalidate();
            }
            match answer {
                Attempt::Done(Outcome::Acked) => {}
                Attempt::Done(Outcome::Partly(r)) => {
                    partly = true;
                    for (&i, r) in indexes.iter().zip(r) {
                        if let Some(slot) = refused.get_mut(i) {
                            *slot = r;
                        }
                    }
                }
                Attempt::Retry(after) => retry = Some(retry.flatten().max(after)),
                // `post_to` answers no other outcome; sent again if it did.
                Attempt::Done(_) => retry = Some(retry.flatten()),
                a @ (Attempt::Refused(_) | Attempt::Malformed(_)) => {
                    other.get_or_insert(a);
                }
            }
        }
        if let Some(after) = retry {
            Attempt::Retry(after)
        } else if let Some(a) = other {
            a
        } else if partly {
            Attempt::Done(Outcome::Partly(refused))
        } else {
            Attempt::Done(Outcome::Acked)
        }
    }

    /// One POST of `body` (`batches` of `payload`'s batches) to `base`;
    /// also says whether the node does not lead or cannot be reached, so
    /// that the caller looks elsewhere.
    async fn post_to(
        &self,
        base: &str,
        body: Bytes,
        payload: &Payload,
        batches: usize,
        pipelined: bool,
    ) -> (Attempt, bool) {
        let url = format!("{base}/v1/ingest/{}", payload.topic);
        counter!("logpost_agent_batches_sent_total").increment(1);
        let sent = self
            .http
            .post(if pipelined {
                format!("{url}?pipelined=true")
            } else {
                url.clone()
            })
            .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .body(body)
            .send()
            .await;
        let moved = match &sent {
            Ok(resp) => resp.status() == StatusCode::MISDIRECTED_REQUEST,
            Err(_) => true,
        };
        let answer = match sent {
            Ok(resp) if resp.status().is_success() => Attempt::Done(Outcome::Acked),
            Ok(resp) if resp.status() == StatusCode::CONFLICT => {
                // Per-batch outcomes: some were refused for a sequence gap.
                let body = resp.text().await.unwrap_or_default();
                match refused_batches(&body, batches) {
                    Some(refused) => {
                        if !pipelined {
                            tracing::warn!(topic = %payload.topic, refused = refused.iter().filter(|r| **r).count(),
                                "collector refused batches (sequence gap); resynchronising those files");
                        }
                        Attempt::Done(Outcome::Partly(refused))
                    }
                    None => {
                        tracing::error!(%url, body = %body.trim(), "unexpected conflict answer");
                        Attempt::Retry(None)
                    }
                }
            }
            Ok(resp) if resp.status() == StatusCode::MISDIRECTED_REQUEST => {
                // A cluster node that does not lead the partition (any
                // more): the caller asks the cluster again, or tries the
                // next URL.
                counter!("logpost_agent_not_leader_total").increment(1);
                let message = resp.text().await.unwrap_or_default();
                if self.retries.load(Ordering::Relaxed).is_multiple_of(10) {
                    tracing::warn!(%url, message = %message.trim(), "collector node does not lead the partition; looking for its leader");
                }
                Attempt::Retry(None)
            }
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let message = resp.text().await.unwrap_or_default();
                let attempts = self.retries.load(Ordering::Relaxed);
                if status == StatusCode::BAD_REQUEST {
                    tracing::error!(%url, status = status.as_u16(), message = %message.trim(),
                        "collector calls the request malformed");
                    Attempt::Malformed(message)
                } else if is_permanent(status) {
                    let hint = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        " (check [collector] token/token_file and the token's scopes)"
                    } else {
                        ""
                    };
                    Attempt::Refused(Refusal {
                        topic: payload.topic.clone(),
                        url: base.to_owned(),
                        status: status.as_u16(),
                        message: format!("{}{hint}", message.trim()),
                        since_ms: 0,
                        attempts: 0,
                        records: 0,
                    })
                } else {
                    if attempts.is_multiple_of(10) {
                        tracing::warn!(%url, status = status.as_u16(), message = %message.trim(), attempt = attempts + 1,
                            "collector busy or failing; retrying");
                    }
                    Attempt::Retry(retry_after)
                }
            }
            Err(e) => {
                if self.retries.load(Ordering::Relaxed).is_multiple_of(10) {
                    tracing::warn!(%url, error = %error_chain(&e), "cannot reach collector; retrying");
                }
                Attempt::Retry(None)
            }
        };
        (answer, moved)
    }
}

/// Awaits every future, polled together on this task; answers in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Which batches of a 409 answer were refused, in request order.
fn refused_batches(body: &str, expected: usize) -> Option<Vec<bool>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let batches = v.get("batches")?.as_array()?;
    if batches.len() != expected {
        return None;
    }
    Some(
        batches
            .iter()
            .map(|b| b.get("outcome").and_then(|o| o.as_str()) == Some("refused"))
            .collect(),
    )
}

/// 4xx other than timeouts, throttling, conflicts and authorization: the
/// request itself is at fault. 401 and 403 (a missing or wrong token, a
/// topic cap) are the operator's to fix, not the batch's: they are retried
/// with backoff, never given up, so fixing the token loses no line.
/// A refusal that needs an operator (unknown topic, token, scope, caps,
/// limits): retrying soon will not change it, but retrying is all the
/// agent can do without losing lines.
fn is_permanent(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
        && status != StatusCode::CONFLICT
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

/// Dry run: prints each record of each sealed request as a JSON line on
/// stdout instead of shipping it, and acknowledges nothing (so no
/// checkpoint moves).
pub async fn run_dry(mut requests: mpsc::Receiver<ShipRequest>) -> ShipperStats {
    let mut stats = ShipperStats::default();
    while let Some(req) = requests.recv().await {
        let printed = tokio::task::spawn_blocking(move || print_request(req))
            .await
            .unwrap_or(0);
        stats.requests += 1;
        stats.records += printed;
    }
    stats
}

fn print_request(req: ShipRequest) -> u64 {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0;
    for b in req.batches {
        let Ok(frame) = b.builder.finish(Compression::None) else {
            continue;
        };
        let Ok(records) = logpost_shared::batch::records_to_owned(&frame, usize::MAX) else {
            continue;
        };
        for r in records {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|h| {
                    let v = h.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned());
                    (
                        h.key.clone(),
                        v.map_or(serde_json::Value::Null, serde_json::Value::String),
                    )
                })
                .collect();
            let line = serde_json::json!({
                "topic": req.topic,
                "timestamp_ms": r.timestamp_ms,
                "key": r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "headers": headers,
                "line": String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()),
            });
            if writeln!(out, "{line}").is_err() {
                return printed;
            }
            printed += 1;
        }
    }
    let _ = out.flush();
    printed
}
