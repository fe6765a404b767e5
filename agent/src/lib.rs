//! logpost-agent: tails log files and ships their lines to a collector.
//!
//! # Layout
//! - [`config`]: `agent.toml`, raw and validated.
//! - [`tail`]: discovery, identity, framing, checkpoints and the tailing loop.
//! - [`ship`]: batching, compression, HTTP with retries, acknowledgements.
//! - [`run`]: threads, runtime and the two-phase shutdown.
//! - [`memory`]: returning freed heap to the OS when the agent goes quiet.
//!
//! The path of a line: `tail::file_server` reads → `tail::framing` frames →
//! `ship::batcher` batches → `ship::client` compresses and POSTs → the ack
//! moves the checkpoint (`tail::checkpoint`).

pub mod config;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod run;
pub mod ship;
pub mod tail;
