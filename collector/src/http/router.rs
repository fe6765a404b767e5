//! The routes. `app()` builds the whole service so that tests can drive it
//! without a socket.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};

use super::AppState;
use super::error::ApiError;
use super::{
    admin, auth, body_budget, cluster, error, fetch, forward, groups, ingest, loki, loki_read, observe, read, replica,
    replica_scan, streams, ui,
};

/// The collector's HTTP service: [`routes`] behind the layers every
/// request passes, whatever its route: request metrics, the token check
/// (`auth.rs`, by method and path prefix), then the body read within the
/// listener's budget, size and rate (`body_budget.rs`), so that no body
/// of an unauthenticated request is read.
/// Layers wrap only the routes present when they are added, which is why
/// the routes are built first, in a function of their own.
pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.config.max_body_bytes;
    routes(&state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(Arc::clone(&state), body_budget::layer))
        .layer(from_fn_with_state(Arc::clone(&state), auth::layer))
        .layer(from_fn(error::json_errors))
        .layer(from_fn(observe::track))
        .with_state(state)
}

/// Every route. Add new ones here: they get authentication, limits and
/// metrics from [`app`] without further work.
fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    // In a cluster, consumers' and group members' requests go to the node
    // that can answer them (forward.rs).
    let to_reader = from_fn_with_state(Arc::clone(state), forward::to_partition_reader);
    let to_coordinator = || from_fn_with_state(Arc::clone(state), forward::to_group_coordinator);
    Router::new()
        .route("/v1/ingest/{topic}", post(ingest::ingest))
        .route("/v1/topics", get(read::list_topics).post(admin::create_topic))
        .route("/v1/topics/{topic}", get(read::get_topic).delete(admin::delete_topic))
        .route("/v1/query", get(read::query))
        .route(
            "/v1/fetch/{topic}/{partition}",
            get(fetch::fetch).route_layer(to_reader),
        )
        .route("/v1/groups", get(groups::list))
        .route(
            "/v1/groups/{group}/join",
            post(groups::join).route_layer(to_coordinator()),
        )
        .route(
            "/v1/groups/{group}/heartbeat",
            post(groups::heartbeat).route_layer(to_coordinator()),
        )
        .route(
            "/v1/groups/{group}/commit",
            post(groups::commit).route_layer(to_coordinator()),
        )
        .route(
            "/v1/groups/{group}/offsets",
            get(groups::offsets).route_layer(to_coordinator()),
        )
        .route(
            "/v1/groups/{group}/leave",
            post(groups::leave).route_layer(to_coordinator()),
        )
        .route("/v1/streams", post(streams::lookup))
        .route("/v1/streams/by-content", post(streams::by_content))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/replica/fetch/{topic}/{partition}", get(replica::fetch))
        .route("/v1/replica/epoch/{topic}/{partition}", get(replica::epoch_end))
        .route("/v1/replica/scan", post(replica_scan::scan))
        .route("/v1/replica/range", post(replica_scan::range))
        .route("/v1/replica/inventory", post(replica_scan::inventory))
        .route("/loki/api/v1/push", post(loki::push))
        .merge(loki_read::routes())
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::file))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(|| async { "ready\n" }))
        .route("/metrics", get(observe::metrics))
        .fallback(|method: Method, uri: Uri| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {method} {}", uri.path()),
            )
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} is not allowed on {}", uri.path()),
            )
        })
}
