//! Reading records back for people: scanning partitions, filtering, merging
//! partitions in time order, and rendering records as JSON.
//!
//! # Layout
//! - [`cursor`]: one partition's matching records in offset order, one
//!   decoded batch at a time (memory bounded by a batch, not the result).
//! - [`exec`]: a query over a topic: cursors merged by timestamp, a limit,
//!   results pushed to a sink so that callers can stream them.
//! - [`output`]: the JSON shape of a record, shared by the API and the
//!   `logpost` command.
//! - [`logql`]: the query language (pure, no store).
//! - [`source`]: the store as LogQL's entry source, with pruning by time,
//!   summaries and [`prefilter`] literals.
//! - [`inventory`]: streams and their sizes in a time range, from the
//!   summaries (Loki's label and series endpoints).
//! - [`folded_literal`]: the prefilter's search for `(?i)` literals.

pub mod cursor;
pub mod exec;
pub mod folded_literal;
pub mod inventory;
pub mod logql;
pub mod output;
pub mod prefilter;
pub mod source;
