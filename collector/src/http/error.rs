//! One error type for every handler: a status and a message that names the
//! problem. Client errors are logged at debug level (they are the client's
//! to fix); server errors at error level with their cause chain.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::loki::PushError;
use crate::ingest::validate::IngestError;
use crate::query::cursor::ReadError;
use crate::store::StoreError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Maps a body that could not be read: too large (413) or cut off (400).
    pub fn from_body(rejection: &BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the limit of {limit} bytes (http.max_body_bytes)"),
            )
        } else {
            Self::new(
                rejection.status(),
                format!("cannot read request body: {}", rejection.body_text()),
            )
        }
    }

    /// An internal failure, with its cause chain in the message.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, chain(err))
    }
}

/// `error: cause: cause`. A cause whose text the message already holds
/// (an error that prints its source and also returns it, as `batch 0 at
/// byte 0: {source}` does) is not repeated: the answer said `CRC mismatch:
/// ...: CRC mismatch: ...`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "request refused");
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Largest body of a non-JSON error that is rewritten as JSON: the
/// framework's rejection texts are a line or two.
const MAX_REWRITTEN_ERROR: usize = 64 << 10;

/// A layer that makes every error answer of logpost's own API
/// `{"error": "..."}`, as documented: the framework's own answers (a
/// query string or JSON body it cannot read, an unknown route, a method a
/// route does not take) come as plain text or empty. Loki's routes keep
/// Loki's plain text, which Grafana shows as is.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let loki = req.uri().path().starts_with("/loki/");
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if loki || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REWRITTEN_ERROR).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::NOT_FOUND, true) => format!("no such endpoint: {method} {path}"),
        (StatusCode::METHOD_NOT_ALLOWED, true) => format!("method {method} is not allowed on {path}"),
        (_, true) => status.canonical_reason().unwrap_or("error").to_lowercase(),
        (_, false) => text,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = json!({ "error": message }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let status = match e {
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, chain(&e))
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        let status = match e {
            PushError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PushError::ContentType(_) | PushError::ContentEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PushError::Encode { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, chain(&e))
    }
}

impl From<&StoreError> for ApiError {
    fn from(e: &StoreError) -> Self {
        if matches!(e, StoreError::TopicLimit { .. }) {
            crate::metrics::rejected("topic_limit");
        }
        let status = match e {
            StoreError::TopicName(_) | StoreError::NoSuchPartition { .. } | StoreError::BadPartitionCount(_) => {
                StatusCode::BAD_REQUEST
            }
            StoreError::UnknownTopic(_) | StoreError::AutoCreateDisabled(_) => StatusCode::NOT_FOUND,
            StoreError::TopicExists(_) => StatusCode::CONFLICT,
            StoreError::TopicLimit { .. } => StatusCode::FORBIDDEN,
            StoreError::Poisoned { .. }
            | StoreError::ShuttingDown
            | StoreError::ReplicaOutOfOrder { .. }
            | StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // A cluster node that does not lead the partition: the client
            // asks the cluster where the leader is and sends it there.
            StoreError::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
            StoreError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            StoreError::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            StoreError::Io { .. }
            | StoreError::Read { .. }
            | StoreError::Meta { .. }
            | StoreError::MetaCorrupt { .. }
            | StoreError::Internal(_)
            | StoreError::Locked(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, chain(e))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::from(&e)
    }
}

impl From<crate::cluster::ClusterError> for ApiError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        use crate::cluster::ClusterError;
        let status = match e {
            // Not the leader: the client asks the cluster where it is
            // (GET /v1/cluster) and sends there; the message names it.
            ClusterError::NotLeader { leader, .. } if leader >= 0 => StatusCode::MISDIRECTED_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        Self::internal(&e)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("CRC mismatch: stored 1, computed 2")]
    struct Crc;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("batch 0 at byte 0: {0}")]
        Shown(#[source] Crc),
        #[error("batch 0 at byte 0")]
        Hidden(#[source] Crc),
    }

    /// Issue 28: a cause the message already prints is not repeated.
    #[test]
    fn issue_28_causes_are_not_repeated() {
        assert_eq!(
            chain(&Outer::Shown(Crc)),
            "batch 0 at byte 0: CRC mismatch: stored 1, computed 2"
        );
        assert_eq!(
            chain(&Outer::Hidden(Crc)),
            "batch 0 at byte 0: CRC mismatch: stored 1, computed 2"
        );
    }
}
