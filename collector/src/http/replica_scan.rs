//! A query's part asked by another node of the cluster (scope `cluster`).
//!
//! `POST /v1/replica/scan`: this node's part of a query
//! asked on another node (`cluster::reads`). The body is a
//! [`ScanAsk`]; the answer streams NDJSON [`ScanLine`]s: every entry of
//! the listed partitions (read up to this node's high watermark) that
//! passes the query's selector and its line filters' literals, then
//! `done`, or `error` naming where the scan failed.
//! `POST /v1/replica/range`: this node's share of a metric query, the
//! state of a range aggregation over the listed partitions.
//! `POST /v1/replica/inventory`: the streams and sizes of the listed
//! partitions, from the summaries (Loki's label and series endpoints).
//!
//! No query slot is taken here: the asking node holds one for the whole
//! query, and a part waiting for a slot held by its own asker on another
//! node could wait forever.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, chain};
use crate::cluster::reads::inventory::{InventoryAsk, InventoryWire};
use crate::cluster::reads::wire::{
    EvalFailure, RangeAnswer, RangeAsk, ScanAsk, ScanLine, WireEntry, encode_line, pairs,
};
use crate::query::logql::{EvalError, Expr, Labels, parse_with, range_partials};
use crate::query::source::{PartsSource, ScanStats, log_exprs, range_aggregations, scan_partitions};

/// Bytes of NDJSON gathered before a chunk is sent.
const CHUNK_BYTES: usize = 64 << 10;
/// Chunks in flight to the socket: the memory bound when the asker reads
/// slowly (its engine runs the pipeline on every entry).
const CHUNKS_IN_FLIGHT: usize = 4;

/// Streams this node's part of a query.
///
/// # Errors
/// 404 on a node outside a cluster; 400 for a query that does not parse
/// or a `log_index` it lacks.
pub async fn scan(State(app): State<Arc<AppState>>, Json(ask): Json<ScanAsk>) -> Result<Response, ApiError> {
    if app.cluster.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this collector is not a cluster node",
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let parsing = Arc::clone(&app);
    let query = ask.query.clone();
    let expr = tokio::task::spawn_blocking(move || parse_with(&query, &parsing.config.query.limits()))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if log_exprs(&expr).get(ask.log_index).is_none() {
        return Err(ApiError::bad_request(format!(
            "log_index {} is past the log queries of {:?}",
            ask.log_index, ask.query
        )));
    }
    let task = tokio::task::spawn_blocking(move || {
        let Some(log) = log_exprs(&expr).get(ask.log_index).copied() else {
            return;
        };
        let mut stats = ScanStats::default();
        // Each part's high watermark before its scan: the scan reads at
        // least that far (the mark only moves up), and past it only where
        // it sent an entry (`ends` moves past each entry sent).
        let mut ends: Vec<i64> = ask
            .parts
            .iter()
            .map(|p| {
                app.store
                    .topic(&p.topic)
                    .and_then(|t| t.partition(p.partition).map(|x| x.view().high_watermark))
                    .unwrap_or(0)
                    .max(p.from_offset)
            })
            .collect();
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        let mut last_labels: Option<Labels> = None;
        let mut gone = false;
        let result = scan_partitions(
            &app.store,
            log,
            (ask.start_ns, ask.end_ns),
            &ask.parts,
            app.config.max_uncompressed_bytes,
            app.config.http.query_threads,
            &mut stats,
            &mut |h| {
                let p = ask
                    .parts
                    .iter()
                    .position(|p| p.topic == h.topic && p.partition == h.partition)
                    .unwrap_or(0);
                let l = (last_labels.as_ref() != Some(h.labels)).then(|| {
                    last_labels = Some(h.labels.clone());
                    pairs(h.labels)
                });
                if let Some(end) = ends.get_mut(p) {
                    *end = (*end).max(h.offset.saturating_add(1));
                }
                let (s, b) = encode_line(h.record.value.unwrap_or_default());
                let entry = WireEntry {
                    p,
                    o: h.offset,
                    t: h.timestamp_ns,
                    l,
                    m: h.metadata.as_ref().map(pairs),
                    s,
                    b,
                };
                // Writing to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut chunk, &ScanLine::E(entry));
                chunk.push(b'\n');
                if chunk.len() >= CHUNK_BYTES {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
                    if tx.blocking_send(Ok(full)).is_err() {
                        // The asker went away (it has its answer, or failed).
                        gone = true;
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            },
        );
        if gone {
            return;
        }
        let last = match result {
            Ok(_) => {
                if ask.want_ends {
                    let _ = serde_json::to_writer(&mut chunk, &ScanLine::Ends(ends));
                    chunk.push(b'\n');
                }
                ScanLine::Done(stats)
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), "a query part failed");
                ScanLine::Error(chain(&e))
            }
        };
        let _ = serde_json::to_writer(&mut chunk, &last);
        chunk.push(b'\n');
        let _ = tx.blocking_send(Ok(chunk));
    });
    // The scan ends by itself when done or when the asker leaves; this
    // only makes a panic in it visible.
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "query part task failed");
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

/// `POST /v1/replica/range` (scope `cluster`): this node's share of a
/// metric query asked on another node: the state of one of its range
/// aggregations over the listed partitions ([`RangeAsk`]), folded here so
/// that samples, not lines, cross the network.
///
/// # Errors
/// 404 on a node outside a cluster; 400 for a query that does not parse
/// or a `log_index` past its range aggregations. A query that fails over
/// this data (a pipeline error, too many series) is a 200 whose answer
/// says so, as the asker must fail the same way.
pub async fn range(State(app): State<Arc<AppState>>, Json(ask): Json<RangeAsk>) -> Result<Json<RangeAnswer>, ApiError> {
    if app.cluster.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this collector is not a cluster node",
        ));
    }
    let answer = tokio::task::spawn_blocking(move || {
        let expr =
            parse_with(&ask.query, &app.config.query.limits()).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let aggs = range_aggregations(&expr);
        let agg = aggs.get(ask.log_index).ok_or_else(|| {
            ApiError::bad_request(format!(
                "log_index {} is past the range aggregations of {:?}",
                ask.log_index, ask.query
            ))
        })?;
        let mut parts = PartsSource {
            store: &app.store,
            parts: &ask.parts,
            max_uncompressed: app.config.max_uncompressed_bytes,
            threads: app.config.http.query_threads,
            stats: ScanStats::default(),
        };
        let opts = app.config.query.eval_options();
        Ok::<_, ApiError>(match range_partials(agg, &ask.times, &mut parts, &opts) {
            Ok(state) => RangeAnswer::State {
                state: state.to_wire(),
                stats: parts.stats,
            },
            Err(e) => {
                if matches!(e, EvalError::Source(_)) {
                    tracing::error!(error = %chain(&e), "a metric query's part failed");
                }
                RangeAnswer::Failed(EvalFailure::of(&e))
            }
        })
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(answer))
}

/// `POST /v1/replica/inventory` (scope `cluster`): the streams and sizes
/// of the listed partitions (this node's copies), for another node's
/// `labels`, `label/*/values`, `series` or `index/stats`.
///
/// # Errors
/// 404 on a node outside a cluster; 400 for a query that does not parse
/// or is not a log query.
pub async fn inventory(
    State(app): State<Arc<AppState>>,
    Json(ask): Json<InventoryAsk>,
) -> Result<Json<InventoryWire>, ApiError> {
    if app.cluster.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this collector is not a cluster node",
        ));
    }
    let inv = tokio::task::spawn_blocking(move || {
        let selector = match ask.query.as_deref() {
            None => None,
            Some(q) => {
                match parse_with(q, &app.config.query.limits()).map_err(|e| ApiError::bad_request(e.to_string()))? {
                    Expr::Log(l) => Some(l.selector),
                    Expr::Metric(_) => return Err(ApiError::bad_request(format!("{q:?} is not a log query"))),
                }
            }
        };
        let wanted = |t: &str, p: u32| ask.parts.iter().any(|(at, ap)| at == t && *ap == p);
        Ok(crate::query::inventory::inventory(
            &app.store,
            selector.as_ref(),
            ask.start_ns,
            ask.end_ns,
            Some(&wanted),
        ))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(InventoryWire::from(&inv)))
}
