//! Loki's read API over the store, with Loki's JSON shapes, so that
//! Grafana's Loki data source (Explore, label browser, logs volume) works
//! against logpost: `query_range`, `query`, `labels`, `label/<name>/values`,
//! `series`, `index/stats`, `status/buildinfo`. The WebSocket tail is in
//! `loki_tail`.
//!
//! Errors are Loki's: the status and a plain-text body naming the problem
//! (`parse error at line 1, col 7: ...`); Grafana shows that text as is.
//! Queries are parsed (regexes compiled) and run on the blocking pool,
//! within `[query]`'s budgets; answers are written by `loki_json`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json_, json};

use super::AppState;
use super::error::ApiError;
use super::loki_categorized::{CATEGORIZE_LABELS, categorized_streams_json, wants_categorized};
use super::loki_json;
use super::loki_params::Params;
use crate::cluster::reads::inventory::gather;
use crate::cluster::reads::{ClusterSource, ReadError};
use crate::config::query::QuerySettings;
use crate::query::inventory::{Inventory, inventory};
use crate::query::logql::{
    EvalError, Expr, Labels, Selector, Value, eval_instant_with, eval_logs_with, eval_range_with, parse_with,
};
use crate::query::source::{ScanStats, unknown_topic};
use crate::store::Store;
use crate::store::topic::now_ms;

/// Loki's default `limit` for log queries.
const DEFAULT_LIMIT: usize = 100;

/// An error in Loki's form: status plus plain text.
#[derive(Debug)]
pub struct LokiError(pub ApiError);

impl From<ApiError> for LokiError {
    fn from(e: ApiError) -> Self {
        LokiError(e)
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        let ApiError { status, message } = self.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %message, "loki request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %message, "loki request refused");
        }
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message + "\n",
        )
            .into_response()
    }
}

fn now_ns() -> i64 {
    now_ms().saturating_mul(1_000_000)
}

/// Parses `q` within `[query]`'s compile budgets and checks the topics it
/// names exist. Compiling may take a while (regexes): call it on the
/// blocking pool.
pub fn parse_query(store: &Store, q: &str, budgets: &QuerySettings) -> Result<Expr, ApiError> {
    let expr = parse_with(q, &budgets.limits()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(topic) = unknown_topic(store, &expr) {
        return Err(ApiError::bad_request(format!("unknown topic {topic:?}")));
    }
    Ok(expr)
}

fn eval_error(e: EvalError) -> ApiError {
    if let Some(message) = crate::cluster::reads::unavailable(&e) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
    }
    match e {
        EvalError::Source(_) => ApiError::internal(&e),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Runs `f` on the blocking pool once a query slot is free
/// (`query.max_concurrent`), holding the slot until it is done.
async fn blocking<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, LokiError> {
    let _slot = app
        .queries
        .acquire()
        .await
        .map_err(|_| LokiError(ApiError::from(crate::store::StoreError::ShuttingDown)))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LokiError(ApiError::internal(&e)))?
        .map_err(LokiError)
}

/// The entries of the whole cluster (of this node without one). Call it
/// on the blocking pool: remote parts are awaited there.
fn source(app: &AppState, max_uncompressed: usize) -> ClusterSource<'_> {
    ClusterSource::new(
        &app.store,
        max_uncompressed,
        app.config.http.query_threads,
        app.cluster.clone(),
    )
}

/// Loki's `data.stats`, trimmed to the summary Grafana shows.
/// `totalBytesFromOtherNodes` is logpost's: what other nodes of a cluster
/// sent for the query (entries, or a metric query's partial state).
fn stats_json(stats: &ScanStats, from_nodes: u64, entries: usize, started: Instant) -> Json_ {
    let secs = started.elapsed().as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { (n as f64 / secs) as u64 } else { 0 };
    json!({ "summary": {
        "bytesProcessedPerSecond": per_sec(stats.raw_bytes_scanned),
        "linesProcessedPerSecond": per_sec(stats.records_matched_selector),
        "totalBytesProcessed": stats.raw_bytes_scanned,
        "totalLinesProcessed": stats.records_matched_selector,
        "totalEntriesReturned": entries,
        "totalBytesFromOtherNodes": from_nodes,
        "execTime": secs,
        "queueTime": 0.0,
    }})
}

/// `GET /loki/api/v1/query_range`.
///
/// # Errors
/// 400 for a bad query, parameter or time range, or an unknown topic.
pub async fn query_range(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref());
    let categorized = wants_categorized(&headers);
    let q = p.query()?.to_owned();
    let (start, end) = p.range(now_ns())?;
    let limit = p.limit(DEFAULT_LIMIT)?;
    let max_entries = app.config.query.max_entries;
    if limit > max_entries {
        return Err(ApiError::bad_request(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({limit} > {max_entries})"
        ))
        .into());
    }
    let direction = p.direction()?;
    let step = p.step(start, end)?;
    let max_uncompressed = app.config.max_uncompressed_bytes;
    let slots = Arc::clone(&app);
    blocking(&slots, move || {
        let budgets = &app.config.query;
        let expr = parse_query(&app.store, &q, budgets)?;
        let opts = budgets.eval_options();
        let started = Instant::now();
        let mut src = source(&app, max_uncompressed).for_query(&expr, &q);
        let mut result = Vec::new();
        let (result_type, entries) = match &expr {
            Expr::Log(log) => {
                // Loki's range is [start, end) for logs; end is inclusive
                // in the request, so include its nanosecond.
                let streams = eval_logs_with(log, start, end.saturating_add(1), limit, direction, &mut src, &opts)
                    .map_err(eval_error)?;
                if categorized {
                    // Writing to a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut result, &categorized_streams_json(&streams, direction));
                } else {
                    loki_json::streams(&mut result, &streams);
                }
                ("streams", streams.iter().map(|s| s.entries.len()).sum())
            }
            Expr::Metric(m) => {
                let matrix = eval_range_with(m, start, end, step, &mut src, &opts).map_err(eval_error)?;
                loki_json::matrix(&mut result, &matrix);
                ("matrix", 0)
            }
        };
        let flags: &[&str] = if categorized && result_type == "streams" {
            &[CATEGORIZE_LABELS]
        } else {
            &[]
        };
        Ok(loki_json::success(
            result_type,
            &result,
            &stats_json(&src.total_stats(), src.remote_bytes, entries, started),
            flags,
        ))
    })
    .await
}

/// `GET /loki/api/v1/query`: an instant metric query (Grafana's health
/// check is `vector(1)+vector(1)`).
///
/// # Errors
/// 400 for a bad query or time, a log query, or an unknown topic.
pub async fn query(State(app): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref());
    let q = p.query()?.to_owned();
    let time = p.time("time")?.unwrap_or_else(now_ns);
    let max_uncompressed = app.config.max_uncompressed_bytes;
    let slots = Arc::clone(&app);
    blocking(&slots, move || {
        let budgets = &app.config.query;
        let expr = parse_query(&app.store, &q, budgets)?;
        let Expr::Metric(m) = &expr else {
            return Err(ApiError::bad_request(
                "log queries are not supported as an instant query type, use query_range (logpost: or /v1/query)",
            ));
        };
        let started = Instant::now();
        let mut src = source(&app, max_uncompressed).for_query(&expr, &q);
        let value = eval_instant_with(m, time, &mut src, &budgets.eval_options()).map_err(eval_error)?;
        let mut result = Vec::new();
        let result_type = match value {
            Value::Scalar(v) => {
                loki_json::scalar(&mut result, time, v);
                "scalar"
            }
            Value::Vector(samples) => {
                loki_json::vector(&mut result, &samples);
                "vector"
            }
            Value::Matrix(m) => {
                loki_json::matrix(&mut result, &m);
                "matrix"
            }
        };
        Ok(loki_json::success(
            result_type,
            &result,
            &stats_json(&src.total_stats(), src.remote_bytes, 0, started),
            &[],
        ))
    })
    .await
}

/// The selector of an optional `query` parameter (a log query's), parsed
/// on the blocking pool (see [`parse_query`]).
fn selector_param(app: &AppState, q: Option<&str>, name: &str) -> Result<Option<Selector>, ApiError> {
    let Some(q) = q else { return Ok(None) };
    match parse_query(&app.store, q, &app.config.query)? {
        Expr::Log(l) => Ok(Some(l.selector)),
        Expr::Metric(_) => Err(ApiError::bad_request(format!(
            "invalid parameter \"{name}\": expected a stream selector, got a metric query"
        ))),
    }
}

/// The inventory of `[start, end]` for the selector of the log query `q`
/// (every stream when `None`; `name` is the parameter it came in, for
/// errors): this node's, or in a cluster the whole cluster's.
async fn inventory_of(
    app: &Arc<AppState>,
    q: Option<String>,
    name: &'static str,
    (start, end): (i64, i64),
) -> Result<Inventory, LokiError> {
    let parsing = Arc::clone(app);
    let text = q.clone();
    let selector = blocking(app, move || selector_param(&parsing, text.as_deref(), name)).await?;
    let Some(cluster) = &app.cluster else {
        let local = Arc::clone(app);
        return blocking(app, move || {
            Ok(inventory(&local.store, selector.as_ref(), start, end, None))
        })
        .await;
    };
    let _slot = app
        .queries
        .acquire()
        .await
        .map_err(|_| LokiError(ApiError::from(crate::store::StoreError::ShuttingDown)))?;
    gather(cluster, &app.store, q.as_deref(), selector.map(Arc::new), (start, end))
        .await
        .map_err(|e| LokiError(read_error(e)))
}

/// A failed cluster-wide read: 503 when replicas are missing.
fn read_error(e: ReadError) -> ApiError {
    match e {
        ReadError::Unavailable { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        ReadError::Local(e) => ApiError::internal(&e),
    }
}

/// `{"status":"success","data":<data>}`.
fn success(data: Json_) -> Response {
    Json(json!({ "status": "success", "data": data })).into_response()
}

/// `GET /loki/api/v1/labels`.
///
/// # Errors
/// 400 for a bad time range or query.
pub async fn labels(State(app): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref());
    let (start, end) = p.range(now_ns())?;
    p.check_utf8("query")?;
    let q = p.get("query").map(str::to_owned);
    let inv = inventory_of(&app, q, "query", (start, end)).await?;
    let names: BTreeSet<String> = inv
        .streams
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k.to_string()))
        .collect();
    Ok(success(json!(names)))
}

/// `GET /loki/api/v1/label/<name>/values`.
///
/// # Errors
/// 400 for a bad time range or query.
pub async fn label_values(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref());
    let (start, end) = p.range(now_ns())?;
    p.check_utf8("query")?;
    let q = p.get("query").map(str::to_owned);
    let inv = inventory_of(&app, q, "query", (start, end)).await?;
    let values: BTreeSet<String> = inv
        .streams
        .iter()
        .filter_map(|l| l.get(&name).map(str::to_string))
        .collect();
    Ok(success(json!(values)))
}

/// `GET /loki/api/v1/series?match[]=...`.
///
/// # Errors
/// 400 for a bad time range or selector, or no `match[]`.
pub async fn series(State(app): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref());
    let (start, end) = p.range(now_ns())?;
    p.check_utf8("match[]")?;
    p.check_utf8("match")?;
    let matches: Vec<String> = p.all("match[]").iter().chain(p.all("match")).cloned().collect();
    let mut all: BTreeSet<Labels> = BTreeSet::new();
    if matches.is_empty() {
        all = inventory_of(&app, None, "match[]", (start, end)).await?.streams;
    }
    for m in matches {
        all.extend(inventory_of(&app, Some(m), "match[]", (start, end)).await?.streams);
    }
    let data = Json_::Array(
        all.iter()
            .map(|l| {
                Json_::Object(
                    l.iter()
                        .map(|(k, v)| (k.to_string(), Json_::String(v.to_string())))
                        .collect(),
                )
            })
            .collect(),
    );
    Ok(success(data))
}

/// `GET /loki/api/v1/index/stats`: streams, chunks (summary blocks),
/// entries and bytes of the matching streams, from the summaries.
///
/// # Errors
/// 400 for a bad time range or query.
pub async fn index_stats(State(app): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref());
    let (start, end) = p.range(now_ns())?;
    p.check_utf8("query")?;
    let q = p.get("query").map(str::to_owned);
    let inv = inventory_of(&app, q, "query", (start, end)).await?;
    Ok(Json(json!({
        "streams": inv.streams.len(),
        "chunks": inv.blocks,
        "entries": inv.records,
        "bytes": inv.bytes,
    }))
    .into_response())
}

/// `GET /loki/api/v1/status/buildinfo`. The version is the Loki API level
/// logpost speaks (Grafana enables features by it) tagged with logpost's own.
pub async fn buildinfo() -> Response {
    let version = format!("3.0.0-logpost.{}", env!("CARGO_PKG_VERSION"));
    let info: BTreeMap<&str, String> = [
        ("version", version),
        ("revision", String::new()),
        ("branch", String::new()),
        ("buildUser", String::new()),
        ("buildDate", String::new()),
        ("goVersion", String::new()),
    ]
    .into_iter()
    .collect();
    (StatusCode::OK, Json(info)).into_response()
}

/// Loki's read routes, merged into the app as one piece.
pub fn routes() -> axum::Router<Arc<AppState>> {
    use axum::routing::get;
    axum::Router::new()
        .route("/loki/api/v1/query_range", get(query_range))
        .route("/loki/api/v1/query", get(query))
        .route("/loki/api/v1/labels", get(labels))
        .route("/loki/api/v1/label/{name}/values", get(label_values))
        .route("/loki/api/v1/series", get(series).post(series))
        .route("/loki/api/v1/index/stats", get(index_stats))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route("/loki/api/v1/tail", get(super::loki_tail::tail))
        .route("/loki/api/v2alpha/tail", get(super::loki_tail::v2alpha))
}
