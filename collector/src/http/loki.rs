//! `POST /loki/api/v1/push`: Loki's push API, so that Promtail, Alloy and
//! Fluent Bit ship to logpost unchanged.
//!
//! The body is decoded on the blocking pool (`ingest::loki`: snappy or
//! gzip within `[loki] max_decompressed_bytes`, protobuf or JSON, one
//! record batch per stream), each stream is routed to a topic (`[loki]
//! route_by`) and to a partition by its labels, and the batches go to the
//! writer threads. 204 is sent only once every batch is durable (in a
//! cluster: held by every in-sync replica, as the ingest API's acks=all).
//!
//! Backpressure: queue places for every partition are reserved at once,
//! without waiting; if any writer queue is full nothing is queued and the
//! answer is 429 with `Retry-After`, which shippers honour. A shutting-down
//! collector or a partition refusing writes answers 503. Loki pushes carry
//! no producer ids, so a push retried after a lost 204 is stored again
//! (at-least-once, as with Loki itself).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::config::loki::RouteBy;
use crate::ingest::loki::{self, records::to_batches};
use crate::store::{AppendItem, Partition, StoreError};

/// The tenant header of Loki's multi-tenancy.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// Each partition a push writes to, with its batches.
type Plan = Vec<(Arc<Partition>, Vec<AppendItem>)>;

/// Handles a push.
///
/// # Errors
/// 400 for a malformed body (naming the problem), 404 when `[loki]` is
/// disabled or a topic may not be created, 413 for a body too large before
/// or after inflating, 415 for an unsupported content type or encoding,
/// 429 when the writers are saturated, 503 during shutdown or for a
/// partition refusing writes, 507 for a full disk. In a cluster: 421 on a
/// node that does not lead a partition the push goes to (naming the
/// leader), 503 with too few in-sync replicas.
pub async fn push(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !app.config.loki.enabled {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the Loki push API is disabled ([loki] enabled = false)",
        ));
    }
    let body = body.map_err(|r| ApiError::from_body(&r, app.config.max_body_bytes))?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (content_type, encoding) = (
        text(header::CONTENT_TYPE.as_str()),
        text(header::CONTENT_ENCODING.as_str()),
    );
    let tenant = match headers.get(TENANT_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(t) => Some(t.to_owned()),
            // Routing by tenant cannot place it: refuse, rather than let it
            // fall through to the default topic (another tenant's data).
            Err(_) if app.config.loki.route_by == RouteBy::Tenant => {
                return Err(loki::PushError::Tenant {
                    header: TENANT_HEADER,
                    detail: format!("{:?}", String::from_utf8_lossy(v.as_bytes())),
                }
                .into());
            }
            Err(_) => None,
        },
    };
    let planner = Arc::clone(&app);
    let permit = app.validations.acquire().await.map_err(|_| StoreError::ShuttingDown)?;
    // Inflating and decoding a body, and creating a topic, are blocking work.
    let plan = tokio::task::spawn_blocking(move || -> Result<Plan, ApiError> {
        let settings = &planner.config.loki;
        let push = loki::decode(
            content_type.as_deref(),
            encoding.as_deref(),
            &body,
            settings.max_decompressed_bytes,
        )?;
        let batches = to_batches(&push, settings, tenant.as_deref())?;
        let mut plan: Plan = Vec::new();
        for b in batches {
            let topic = planner.store.topic_for_ingest(&b.topic)?;
            let index = planner.router.partition(Some(&b.key), -1, topic.meta.partitions);
            let Some(partition) = topic.partition(index) else {
                continue;
            };
            // Stats are left to the append, which decodes the batch this
            // request just built (Loki bodies are not validated as frames).
            let item = AppendItem {
                frame: b.frame,
                ..AppendItem::default()
            };
            match plan.iter_mut().find(|(p, _)| Arc::ptr_eq(p, partition)) {
                Some((_, items)) => items.push(item),
                None => plan.push((Arc::clone(partition), vec![item])),
            }
        }
        Ok(plan)
    })
    .await??;
    drop(permit);

    let partitions: Vec<Arc<Partition>> = plan.iter().map(|(p, _)| Arc::clone(p)).collect();
    // In a cluster, this node must lead every partition the push goes to,
    // with enough replicas in sync (acks=all, as for the ingest API):
    // checked before anything is stored.
    let epochs: Vec<Option<i32>> = match &app.cluster {
        Some(cluster) => partitions
            .iter()
            .map(|p| cluster.ticket(p, true).map(Some))
            .collect::<Result<_, _>>()?,
        None => vec![None; partitions.len()],
    };
    let permits = match app.writer.try_reserve(&partitions) {
        Ok(permits) => permits,
        Err(e @ StoreError::Busy { .. }) => return Ok(too_many_requests(&e)),
        Err(e) => return Err(e.into()),
    };
    let counts: Vec<(String, u64, u64, u64)> = plan
        .iter()
        .map(|(p, items)| {
            let records = items
                .iter()
                .filter_map(|i| logpost_shared::batch::BatchHeader::parse(&i.frame).ok())
                .map(|h| u64::try_from(h.records_count).unwrap_or(0))
                .sum();
            let bytes = items.iter().map(|i| i.frame.len() as u64).sum();
            (p.topic.to_string(), items.len() as u64, records, bytes)
        })
        .collect();
    let receivers: Vec<_> = permits
        .into_iter()
        .zip(plan)
        .map(|(permit, (_, items))| permit.send(items))
        .collect();
    for ((rx, partition), epoch) in receivers.into_iter().zip(&partitions).zip(epochs) {
        let outcomes = rx
            .await
            .map_err(|_| StoreError::ShuttingDown)?
            .map_err(|e| ApiError::from(&*e))?;
        // 204 only once every in-sync replica holds it.
        if let (Some(cluster), Some(epoch)) = (&app.cluster, epoch) {
            let target = crate::store::BatchOutcome::ack_target(&outcomes, || partition.log_end_offset());
            cluster.acknowledge(partition, epoch, target).await?;
        }
    }
    for (topic, batches, records, bytes) in counts {
        crate::metrics::ingested(&topic, batches, records, bytes, 0);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn too_many_requests(e: &StoreError) -> Response {
    tracing::debug!(error = %e, "loki push refused: writers saturated");
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "1")],
        Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}
