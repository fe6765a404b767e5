//! An in-memory [`EntrySource`] for tests, and helpers to build entries.

use std::ops::ControlFlow;

use crate::query::logql::ast::LogExpr;
use crate::query::logql::error::EvalError;
use crate::query::logql::eval::{Entry, EntrySource};
use crate::query::logql::labels::Labels;

/// Nanoseconds in a second, to write timestamps as seconds.
pub(crate) const S: i64 = 1_000_000_000;

/// An entry as a test keeps it.
#[derive(Debug, Clone)]
pub(crate) struct OwnedEntry {
    pub timestamp_ns: i64,
    pub labels: Labels,
    pub metadata: Option<Labels>,
    pub line: Vec<u8>,
}

/// Entries kept in a `Vec`, scanned in insertion order (or reversed).
#[derive(Default)]
pub(crate) struct MemSource {
    pub entries: Vec<OwnedEntry>,
    /// Hand every entry to the engine, ignoring the selector, to check that
    /// the engine re-checks it.
    pub ignore_selector: bool,
    /// Deliver entries newest-first, to check order independence.
    pub reversed: bool,
    /// `(start, end)` of every scan, to check the windows asked for.
    pub scans: Vec<(i64, i64)>,
}

impl MemSource {
    pub fn new() -> Self {
        MemSource::default()
    }

    pub fn push(&mut self, ts: i64, labels: &[(&str, &str)], line: &str) -> &mut Self {
        self.push_with_metadata(ts, labels, &[], line)
    }

    /// An entry with structured metadata (none when `metadata` is empty).
    pub fn push_with_metadata(
        &mut self,
        ts: i64,
        labels: &[(&str, &str)],
        metadata: &[(&str, &str)],
        line: &str,
    ) -> &mut Self {
        self.entries.push(OwnedEntry {
            timestamp_ns: ts,
            labels: labels.iter().copied().collect::<Labels>(),
            metadata: (!metadata.is_empty()).then(|| metadata.iter().copied().collect()),
            line: line.as_bytes().to_vec(),
        });
        self
    }
}

impl EntrySource for MemSource {
    fn scan(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        self.scans.push((start_ns, end_ns));
        let selector = &log.selector;
        let mut order: Vec<&OwnedEntry> = self.entries.iter().collect();
        if self.reversed {
            order.reverse();
        }
        for e in order {
            let in_range = e.timestamp_ns >= start_ns && e.timestamp_ns < end_ns;
            let entry = Entry {
                timestamp_ns: e.timestamp_ns,
                labels: e.labels.clone(),
                metadata: e.metadata.clone(),
                line: &e.line,
                leading_filters_passed: false,
            };
            if in_range && (self.ignore_selector || selector.matches(&e.labels)) && f(entry).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// A source that always fails.
pub(crate) struct FailingSource;

impl EntrySource for FailingSource {
    fn scan(
        &mut self,
        _: &LogExpr,
        _: i64,
        _: i64,
        _: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        Err(EvalError::Source("disk on fire".into()))
    }
}
