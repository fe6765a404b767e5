//! Getting records to the collector.
//!
//! # Layout
//! - [`batcher`]: records accumulate per topic and per stream (file) until a
//!   size, count or time limit seals a [`batcher::ShipRequest`]. Sync core.
//! - [`retry`]: the backoff policy. Sync core.
//! - [`client`]: the async shell: compresses sealed requests off the
//!   runtime, POSTs them with retries and failover, and records
//!   acknowledged positions on the [`acks::AckBoard`]. Its parts: one
//!   POST and its answer (`client/post.rs`), routing to partition leaders
//!   in a cluster (`client/routing.rs`), and the dry run
//!   (`client/dry_run.rs`).
//! - [`leaders`]: in a cluster, which node leads each partition (what
//!   the client and the lookup route by).
//! - [`lookup`]: asks the collector where streams stand.
//! - [`refusals`]: requests the collector will not take: retried and
//!   reported (policy) or set aside in a dead-letter file (malformed).
//! - [`acks`]: acknowledged positions, shared between shipper and tailer.
//! - [`http`]: the token and TLS settings every client to the collector uses.

pub mod acks;
pub mod batcher;
pub mod client;
pub mod http;
pub mod leaders;
pub mod lookup;
pub mod refusals;
pub mod retry;
