//! The Kafka wire protocol: a TCP listener that real Kafka clients
//! (librdkafka and confluent-kafka, kafka-python, kcat) produce to, fetch
//! from and consume with consumer groups, over the collector's own store.
//!
//! # Layout
//! - [`protocol`]: bytes ↔ requests and responses, for exactly the APIs
//!   and versions advertised ([`protocol::SUPPORTED_APIS`]); bounds-checked
//!   decoding, zero-copy record data.
//! - [`server`]: the listener, one task per connection (frames, ordered
//!   responses, limits), dispatch, long-polling fetch.
//! - [`backend`]: the seam to the store: produce through HTTP ingest's
//!   checks and the writer threads, reads through partition views, error
//!   mapping.
//! - [`coordinator`]: consumer groups and committed offsets, independent
//!   of the protocol; it lives in `AppState` so that HTTP consumers share
//!   it.
//! - [`producer_ids`]: InitProducerId's ids, kept apart from agents' stream ids.
//! - [`error`]: Kafka's error codes as values.
//!
//! Record batches are never re-encoded: a produced batch is stored as sent
//! (offsets written into its first eight bytes), and a fetch returns the
//! segment bytes as they are on disk. See docs/kafka.md for what is and is
//! not supported.

pub mod backend;
pub mod coordinator;
pub mod error;
pub mod producer_ids;
pub mod protocol;
pub mod server;

pub use error::KafkaError;
