//! One POST of a request (or of one leader's share of it) and what its
//! answer asks of the sender: done, retry, refused by policy, malformed.

use bytes::Bytes;
use metrics::counter;
use reqwest::StatusCode;
use std::sync::atomic::Ordering;

use super::{Attempt, BATCH_CONTENT_TYPE, Outcome, Payload, Sender, error_chain};
use crate::ship::refusals::Refusal;
use crate::ship::retry::parse_retry_after;

impl Sender {
    /// One POST of `body` (`batches` of `payload`'s batches) to `base`;
    /// also says whether the node does not lead or cannot be reached, so
    /// that the caller looks elsewhere.
    pub(super) async fn post_to(
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
