//! logpost-shared: what the agent and the collector must agree on, as plain
//! synchronous code over bytes and values.
//!
//! # Layout
//! - [`record`]: the data model, one log event with its headers.
//! - [`batch`]: Kafka's RecordBatch v2, the one format records travel and rest
//!   in: [`batch::BatchBuilder`] encodes, [`batch::frame_len`] and
//!   [`batch::check`] validate without decompressing, [`batch::decode`] reads
//!   records back.
//! - [`compression`]: the codecs (none, gzip); decompression always has an
//!   output limit.
//! - [`config`]: value types both sides parse (sizes, durations) and
//!   [`config::ConfigError`], which names file, line and key.
//! - [`topic`]: topic-name validation shared by agent, collector and client.
//! - [`partition`]: Kafka's default partitioner, which the collector places
//!   batches by and a cluster's agent routes streams by.
//! - [`dir_lock`]: the exclusive lock agent and collector take on their
//!   data directories.
//! - [`tls`]: rustls configs (ring provider) for the collector's listener
//!   and the clients that verify it.
//!
//! This crate has no runtime or sockets (CI checks that it does not depend
//! on tokio), and no files but the data-directory lock: everything else here
//! is testable with plain values.
#![deny(clippy::indexing_slicing)]

pub mod batch;
pub mod compression;
pub mod config;
pub mod dir_lock;
pub mod partition;
pub mod record;
pub mod tls;
pub mod topic;
