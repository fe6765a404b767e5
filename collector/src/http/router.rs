//! The routes. `app()` builds the whole service so that tests can drive it
//! without a socket.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::AppState;
use super::{admin, fetch, ingest, loki, loki_read, read, streams};

/// The collector's HTTP service.
pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/ingest/{topic}", post(ingest::ingest))
        .route("/v1/topics", get(read::list_topics).post(admin::create_topic))
        .route("/v1/topics/{topic}", get(read::get_topic).delete(admin::delete_topic))
        .route("/v1/query", get(read::query))
        .route("/v1/fetch/{topic}/{partition}", get(fetch::fetch))
        .route("/v1/streams", post(streams::lookup))
        .route("/loki/api/v1/push", post(loki::push))
        .merge(loki_read::routes())
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(|| async { "ready\n" }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
