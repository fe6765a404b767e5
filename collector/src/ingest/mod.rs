//! What happens to a request body between HTTP and the store: splitting it
//! into batch frames and checking each ([`validate`]), then choosing each
//! batch's partition ([`route`]). Loki push bodies are decoded and turned
//! into batches in [`loki`].

pub mod loki;
pub mod route;
pub mod validate;

/// Content type of a body of concatenated RecordBatch v2 frames.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.kafka.record-batch.v2";
