//! One client connection: a reader that frames and decodes requests and
//! starts each one in arrival order, and a writer that awaits the
//! responses in that same order (a FIFO of response futures), so pipelined
//! requests are applied in order, waited on concurrently, and answered in
//! order.
//!
//! A request's state changes (appends queued, group operations started)
//! happen in the reader before the next request is read; only the waiting
//! is left to the FIFO.
//!
//! Anything malformed (a length prefix that is too short or too large, a
//! header or body that does not decode, an API we do not implement)
//! closes this connection only.
//!
//! Memory: a frame is read only once its length fits in the listener's
//! budget (`kafka.max_in_flight_bytes`, all connections together), and
//! holds it until its response is ready (a produce: its appends are done,
//! acks=0 too); until then the bytes wait in the kernel's socket buffers.
//! With at most `max_in_flight` requests per connection, neither many
//! connections nor a deep pipeline on one can grow memory past it.

use super::Shared;
use super::handlers::{self, Pending};
use crate::budget::{BudgetError, ByteBudget, Held};
use crate::kafka::error::KafkaError;
use crate::kafka::protocol::wire::{DecodeError, Reader, Writer};
use crate::kafka::protocol::{ApiKey, RequestHeader, ResponseFrame, api_versions};
use bytes::{Bytes, BytesMut};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Smallest request: api key, version, correlation id, client id length.
const MIN_FRAME: usize = 10;
/// Read buffers grow with the data that actually arrives, never straight to
/// the claimed frame size, so a lying length prefix costs nothing.
const READ_STEP: usize = 64 * 1024;

/// Why the reader stopped.
#[derive(Debug)]
enum Close {
    Eof,
    Idle,
    Io(std::io::Error),
    BadFrame(usize),
    Decode(DecodeError),
    UnknownApi(i16, i16),
    UnsupportedVersion(ApiKey, i16),
    WriterGone,
    Shutdown,
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Eof => write!(f, "closed by client"),
            Close::Idle => write!(f, "idle timeout"),
            Close::Io(e) => write!(f, "i/o error: {e}"),
            Close::BadFrame(len) => write!(f, "bad frame length {len}"),
            Close::Decode(e) => write!(f, "undecodable request: {e}"),
            Close::UnknownApi(key, v) => write!(f, "unknown api key {key} (v{v})"),
            Close::UnsupportedVersion(api, v) => write!(f, "unsupported version {api:?} v{v}"),
            Close::WriterGone => write!(f, "writer stopped"),
            Close::Shutdown => write!(f, "server shutting down"),
        }
    }
}

pub(super) async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Pending>(shared.config.max_in_flight.max(1));
    let in_flight = AtomicUsize::new(0);
    let mut seen = BTreeSet::new();
    let mut client = String::new();
    let why = tokio::select! {
        why = read_loop(rd, &tx, &shared, &in_flight, &mut seen, &mut client) => why,
        r = write_loop(wr, rx, &in_flight) => match r {
            Ok(()) => Close::WriterGone,
            Err(e) => Close::Io(e),
        },
        _ = shutdown.cancelled() => Close::Shutdown,
    };
    // What each client negotiated, for the operator (and for checking which
    // versions real clients pick).
    let apis: Vec<String> = seen
        .iter()
        .map(|(k, v): &(ApiKey, i16)| format!("{k:?} v{v}"))
        .collect();
    match why {
        Close::Eof | Close::WriterGone | Close::Shutdown => {
            tracing::info!(%peer, client_id = %client, apis = %apis.join(", "), "kafka connection closed")
        }
        other => {
            tracing::warn!(%peer, client_id = %client, apis = %apis.join(", "), reason = %other, "kafka connection dropped")
        }
    }
}

async fn read_frame(
    rd: &mut BufReader<OwnedReadHalf>,
    max: usize,
    budget: &ByteBudget,
) -> Result<Option<(Bytes, Held)>, Close> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Close::Io(e)),
    }
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len).map_err(|_| Close::BadFrame(0))?;
    if !(MIN_FRAME..=max).contains(&len) {
        return Err(Close::BadFrame(len));
    }
    // Before a byte of the body is read: the wait (bounded by the idle
    // timeout around this call) leaves the body in the socket's buffers.
    let held = match budget.take(len as u64, Duration::MAX).await {
        Ok(h) => h,
        Err(BudgetError::Closed) => return Err(Close::Shutdown),
        Err(_) => return Err(Close::BadFrame(len)),
    };
    let mut buf = BytesMut::with_capacity(len.min(READ_STEP));
    while buf.len() < len {
        let want = len - buf.len();
        buf.reserve(want.min(READ_STEP));
        let n = (&mut *rd)
            .take(want as u64)
            .read_buf(&mut buf)
            .await
            .map_err(Close::Io)?;
        if n == 0 {
            return Err(Close::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(Some((buf.freeze(), held)))
}

async fn read_loop(
    rd: OwnedReadHalf,
    tx: &mpsc::Sender<Pending>,
    shared: &Arc<Shared>,
    in_flight: &AtomicUsize,
    seen: &mut BTreeSet<(ApiKey, i16)>,
    client: &mut String,
) -> Close {
    let mut rd = BufReader::with_capacity(READ_STEP, rd);
    let idle = shared.config.idle_timeout;
    loop {
        // Wait for the next request without consuming anything, so that
        // giving up on an idle wait can never leave half a frame behind.
        match tokio::time::timeout(idle, rd.fill_buf()).await {
            Err(_) if in_flight.load(Ordering::Acquire) == 0 => return Close::Idle,
            Err(_) => continue,
            Ok(Err(e)) => return Close::Io(e),
            Ok(Ok([])) => return Close::Eof,
            Ok(Ok(_)) => {}
        }
        // A frame that has started must finish within the idle timeout too:
        // a client stalling mid-frame is dropped.
        let read = read_frame(&mut rd, shared.config.max_frame_size, &shared.budget);
        let (frame, held) = match tokio::time::timeout(idle, read).await {
            Err(_) => return Close::Idle,
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Close::Eof,
            Ok(Err(close)) => return close,
        };
        let mut r = Reader::new(frame);
        let header = match RequestHeader::decode(&mut r) {
            Ok(h) => h,
            Err(e) => return Close::Decode(e),
        };
        if client.is_empty() {
            *client = header.client_id.clone().unwrap_or_default();
        }
        let pending = match ApiKey::from_code(header.api_key) {
            None => return Close::UnknownApi(header.api_key, header.api_version),
            Some(ApiKey::ApiVersions) if !ApiKey::ApiVersions.supports(header.api_version) => {
                // Kafka's answer to a newer ApiVersions: v0 with the list, so
                // the client retries with a version we speak.
                tracing::debug!(client_id = %client, "ApiVersions v{} unsupported: answering v0", header.api_version);
                let mut w = Writer::new();
                api_versions::encode_response(&mut w, 0, Some(KafkaError::UNSUPPORTED_VERSION));
                handlers::ready(ResponseFrame::new(header.correlation_id, w))
            }
            Some(api) if !api.supports(header.api_version) => {
                return Close::UnsupportedVersion(api, header.api_version);
            }
            Some(api) => {
                if api.is_flexible(header.api_version)
                    && let Err(e) = r.skip_tagged_fields()
                {
                    return Close::Decode(e);
                }
                if seen.insert((api, header.api_version)) {
                    tracing::debug!(client_id = %client, "first {api:?} v{}", header.api_version);
                }
                match handlers::dispatch(shared, api, &header, &mut r).await {
                    Ok(p) => p,
                    Err(e) => return Close::Decode(e),
                }
            }
        };
        // The frame's bytes stay taken until the response is ready.
        let pending: Pending = Box::pin(async move {
            let frame = pending.await;
            drop(held);
            frame
        });
        in_flight.fetch_add(1, Ordering::AcqRel);
        if tx.send(pending).await.is_err() {
            return Close::WriterGone;
        }
    }
}

async fn write_loop(
    wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
    in_flight: &AtomicUsize,
) -> std::io::Result<()> {
    let mut wr = BufWriter::with_capacity(READ_STEP, wr);
    while let Some(mut pending) = rx.recv().await {
        // Whatever is buffered must not sit behind a response that waits
        // (a long-polling fetch, a join): flush before waiting.
        let frame = match std::future::poll_fn(|cx| Poll::Ready(pending.as_mut().poll(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                wr.flush().await?;
                pending.await
            }
        };
        if let Some(frame) = frame {
            // Large chunks (record data) bypass the buffer: BufWriter writes
            // them straight through when they do not fit.
            for chunk in &frame.chunks {
                wr.write_all(chunk).await?;
            }
            // Flush once no further response is queued, so pipelined
            // responses leave in as few segments as possible.
            if rx.is_empty() {
                wr.flush().await?;
            }
        }
        in_flight.fetch_sub(1, Ordering::AcqRel);
    }
    wr.flush().await
}
