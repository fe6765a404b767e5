//! Shared pieces of the fuzz targets: what several targets do to turn
//! arbitrary bytes into inputs that get past the first checks (CRCs, frame
//! lengths, API keys) and the invariants they assert on what decoders
//! return. A failed assertion is a finding, as a panic in the code under
//! test is.
//!
//! Each target in `fuzz_targets/` is a thin `fuzz_target!` over one
//! function here; docs/fuzzing.md lists them with what each checks beyond
//! "no panic".
//!
//! # Layout
//! - [`batch`]: RecordBatch v2 frames, every codec, round trips.
//! - [`kafka`]: Kafka request frames as the listener reads them.
//! - [`loki`]: Loki push bodies, decoded and turned into batches.
//! - [`logql`]: LogQL lexing, parsing, printing back and evaluating.
//! - [`config`]: agent.toml and collector.toml.
//! - [`store`]: a partition's files recovered after a crash.
//! - [`agent`]: line framing, multiline and parse stages, checkpoints.

pub mod agent;
pub mod batch;
pub mod config;
pub mod kafka;
pub mod logql;
pub mod loki;
pub mod store;
