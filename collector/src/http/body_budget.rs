//! Reading request bodies: within the listener's memory budget, at a
//! minimum rate, before any handler sees them.
//!
//! Why a layer of its own: a handler that extracts its body buffers it
//! whole before any limit of its own applies, so forty connections
//! sending 8 MiB each cost 320 MB whatever the validation limiter said;
//! and a gap timeout alone lets a body trickled at a byte a second hold
//! its connection for as long as its `Content-Length` allows. Here, for
//! every request with a body:
//! - its declared length (or, without one, each piece as it comes) is
//!   taken from `http.max_in_flight_bytes` before it is read, and held
//!   until the response is made, so the bodies held at once never pass
//!   the budget; a request that finds it spent waits (its bytes stay in
//!   the kernel's buffers) up to `http.body_timeout`, then gets 503;
//! - it must arrive within `http.body_timeout` plus a second per
//!   `http.min_body_rate` bytes received, and no gap may exceed
//!   `http.body_timeout`; otherwise 408 and the connection is closed;
//! - past `http.max_body_bytes` it gets 413 without being read further.
//!
//! Handlers then get the body in memory (their own extractors see it whole).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use super::AppState;
use super::error::ApiError;
use crate::budget::{BudgetError, ByteBudget, Held};

/// What a body may cost and how fast it must come.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    pub max_body_bytes: u64,
    pub body_timeout: Duration,
    /// Bytes per second, at least 1.
    pub min_body_rate: u64,
}

impl BodyRules {
    /// The latest a body that has delivered `received` bytes since
    /// `started` may finish (Apache's `MinRate`: the timeout, plus a
    /// second per `min_body_rate` bytes).
    pub fn rate_deadline(&self, started: Instant, received: u64) -> Instant {
        let earned = Duration::from_secs_f64(received as f64 / self.min_body_rate.max(1) as f64);
        started + self.body_timeout.saturating_add(earned)
    }
}

/// The layer: reads the body under the rules and the budget, then runs
/// the handler with it.
pub async fn layer(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let rules = BodyRules {
        max_body_bytes: app.config.max_body_bytes as u64,
        body_timeout: app.config.http.body_timeout,
        min_body_rate: app.config.http.min_body_rate,
    };
    let (parts, body) = req.into_parts();
    if body.size_hint().exact() == Some(0) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    match read(body, &rules, &app.body_budget).await {
        Ok((bytes, held)) => {
            let response = next.run(Request::from_parts(parts, Body::from(bytes.freeze()))).await;
            // Held until here: the handler's copies of the body (checked
            // batches, decoded pushes) are gone with the response made.
            drop(held);
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Why a body was not read.
#[derive(Debug)]
pub enum Refusal {
    TooLarge { max: u64 },
    TooSlow { received: u64, rules: BodyRules },
    Budget(BudgetError),
    Read(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message, reason) = match self {
            Refusal::TooLarge { max } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the limit of {max} bytes (http.max_body_bytes)"),
                "body_too_large",
            ),
            Refusal::TooSlow { received, rules } => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body too slow: {received} bytes arrived, below {} bytes/s after {:?} (http.min_body_rate, http.body_timeout)",
                    rules.min_body_rate, rules.body_timeout
                ),
                "body_too_slow",
            ),
            Refusal::Budget(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("request bodies in flight are at http.max_in_flight_bytes: {e}; send it again"),
                "body_budget",
            ),
            Refusal::Read(e) => (
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
                "bad_request",
            ),
        };
        crate::metrics::rejected(reason);
        let mut response = ApiError::new(status, message).into_response();
        // The rest of the body was not read: the connection cannot carry
        // another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Reads `body` whole under `rules`, its bytes taken from `budget` first.
///
/// # Errors
/// A [`Refusal`] saying why it was not read.
pub async fn read(body: Body, rules: &BodyRules, budget: &ByteBudget) -> Result<(BytesMut, Vec<Held>), Refusal> {
    let declared = body.size_hint().exact();
    let mut held = Vec::new();
    if let Some(len) = declared {
        if len > rules.max_body_bytes {
            return Err(Refusal::TooLarge {
                max: rules.max_body_bytes,
            });
        }
        held.push(budget.take(len, rules.body_timeout).await.map_err(Refusal::Budget)?);
    }
    let capacity = declared.and_then(|l| usize::try_from(l).ok()).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(capacity);
    let mut pieces = body.into_data_stream();
    let started = Instant::now();
    loop {
        let received = buf.len() as u64;
        let deadline = rules
            .rate_deadline(started, received)
            .min(Instant::now() + rules.body_timeout);
        let piece = match tokio::time::timeout_at(deadline, pieces.next()).await {
            Err(_) => {
                return Err(Refusal::TooSlow {
                    received,
                    rules: *rules,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(Refusal::Read(e.to_string())),
            Ok(Some(Ok(piece))) => piece,
        };
        let len = piece.len() as u64;
        if received + len > rules.max_body_bytes {
            return Err(Refusal::TooLarge {
                max: rules.max_body_bytes,
            });
        }
        if declared.is_none() {
            // Chunked: each piece is taken as it comes (it is in memory
            // already, at most a read buffer's worth).
            held.push(budget.take(len, rules.body_timeout).await.map_err(Refusal::Budget)?);
        }
        buf.extend_from_slice(&piece);
    }
    Ok((buf, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BodyRules {
        BodyRules {
            max_body_bytes: 1 << 20,
            body_timeout: Duration::from_secs(2),
            min_body_rate: 1000,
        }
    }

    /// A body trickled within the gap timeout but below the rate is cut
    /// off at the timeout plus what it earned (issue 28, defect 9).
    #[tokio::test(start_paused = true)]
    async fn trickled_body_is_cut_off_by_the_rate() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let trickle = tokio::spawn(async move {
            for _ in 0..1000 {
                if tx.send(Ok(bytes::Bytes::from_static(b"x"))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let budget = ByteBudget::new(4 << 20, "test");
        let started = Instant::now();
        let err = read(body, &rules(), &budget).await.unwrap_err();
        assert!(matches!(err, Refusal::TooSlow { .. }), "{err:?}");
        let took = started.elapsed();
        // 2 s of grace plus a few bytes' worth (a millisecond each).
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(budget.held_bytes(), 0, "a chunked body's pieces are given back");
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn declared_lengths_wait_for_the_budget_and_oversized_ones_are_refused() {
        let budget = ByteBudget::new(1 << 20, "test");
        let full = Body::from(vec![7u8; 600 << 10]);
        let (bytes, held) = read(full, &rules(), &budget).await.unwrap();
        assert_eq!(bytes.len(), 600 << 10);
        assert_eq!(budget.held_bytes(), 600 << 10);
        // Another 600 KiB does not fit while the first is held: 503 after the wait.
        let err = read(Body::from(vec![7u8; 600 << 10]), &rules(), &budget)
            .await
            .unwrap_err();
        assert!(matches!(err, Refusal::Budget(BudgetError::Busy { .. })), "{err:?}");
        drop(held);
        assert!(read(Body::from(vec![7u8; 600 << 10]), &rules(), &budget).await.is_ok());
        let err = read(Body::from(vec![0u8; (1 << 20) + 1]), &rules(), &budget)
            .await
            .unwrap_err();
        assert!(matches!(err, Refusal::TooLarge { .. }), "{err:?}");
    }
}
