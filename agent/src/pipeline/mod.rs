//! What happens to lines between framing and batching, per source:
//! multiline grouping, include/exclude filters, parsing into headers, the
//! record's timestamp and key.
//!
//! # Layout
//! - [`multiline`]: joins lines into events (start or continuation
//!   pattern, limits, flush timeout); per-file state.
//! - [`filter`]: include/exclude regexes on the event.
//! - [`parse`]: regex named captures, JSON or logfmt fields into headers.
//! - [`timestamp`]: reading a timestamp field in a given format.
//!
//! All of it is sync core: compiled once from the config, time passed in.

pub mod filter;
pub mod multiline;
pub mod parse;
pub mod timestamp;
