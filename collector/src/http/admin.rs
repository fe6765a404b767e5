//! Topic administration: create and delete. (Listing and describing are
//! read endpoints in `read.rs`.)

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use logpost_shared::config::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::read::{TopicInfo, describe};
use crate::store::TopicSpec;

/// Body of `POST /v1/topics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    pub name: String,
    /// Default: `storage.default_partitions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// Bytes kept per partition, e.g. `"10GiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<ByteSize>,
    /// Age after which segments are deleted, e.g. `"3d"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_age: Option<HumanDuration>,
    /// Copies of each partition in a cluster. Default: `[cluster]
    /// replication_factor`; ignored by a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
}

/// Creates a topic.
///
/// # Errors
/// 400 for a bad name, partition count or body; 409 if it exists.
pub async fn create_topic(
    State(app): State<Arc<AppState>>,
    body: Result<Json<CreateTopic>, JsonRejection>,
) -> Result<(StatusCode, Json<TopicInfo>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(format!("invalid topic definition: {}", e.body_text())))?;
    let store = Arc::clone(&app.store);
    let spec = TopicSpec {
        partitions: req.partitions,
        retention_bytes: req.retention_bytes.map(ByteSize::bytes),
        retention_age: req.retention_age.map(HumanDuration::get),
        replication_factor: req.replication_factor,
    };
    let topic = tokio::task::spawn_blocking(move || store.create_topic(&req.name, spec)).await??;
    Ok((
        StatusCode::CREATED,
        Json(describe(
            &topic,
            app.store.retention_for(&topic),
            app.cluster.as_ref().map(|c| c.view()).as_deref(),
        )),
    ))
}

/// Deletes a topic and its data.
///
/// # Errors
/// 404 for an unknown topic.
pub async fn delete_topic(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let store = Arc::clone(&app.store);
    tokio::task::spawn_blocking(move || store.delete_topic(&name)).await??;
    Ok(StatusCode::NO_CONTENT)
}
