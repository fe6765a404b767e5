//! What the HTTP layer tells Prometheus: a layer that counts and times
//! every request by its route template, and `GET /metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Counts and times a request. The route template (`/v1/ingest/{topic}`),
/// not the path, is the label, so that labels stay bounded.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    crate::metrics::http_request(&route, &method, status.as_u16(), started.elapsed());
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => crate::metrics::rejected("body_too_large"),
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => crate::metrics::rejected("bad_request"),
        StatusCode::TOO_MANY_REQUESTS => crate::metrics::rejected("busy"),
        _ => {}
    }
    response
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let Some(handle) = app.metrics.clone() else {
        return (StatusCode::NOT_FOUND, "metrics are not available in this process\n").into_response();
    };
    let coordinator = Arc::clone(&app.coordinator);
    let store = Arc::clone(&app.store);
    // Walking every partition touches locks the writers hold: off the runtime.
    match tokio::task::spawn_blocking(move || crate::metrics::render(&handle, &store, &coordinator)).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => super::error::ApiError::internal(&e).into_response(),
    }
}
