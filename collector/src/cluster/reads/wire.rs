//! What crosses the network when one node asks another for its part of a
//! query (`POST /v1/replica/scan`): the ask (the log query, its time range,
//! the partitions and where to resume each) and the answer, NDJSON lines:
//! one per entry that passed the selector and the leading line filters'
//! literals, then `done` with the scan's figures, or `error`.
//!
//! A stream that ends without `done` or `error` was cut (the node died or
//! the connection broke): the asker retries elsewhere from the last offset
//! it got, so the line names the part and offset of each entry.
//!
//! Pure data and codecs: no sockets here.

use serde::{Deserialize, Serialize};

use crate::query::logql::{EvalError, Labels, PartialsWire};
use crate::query::source::{PartScan, ScanStats};

/// The body of `POST /v1/replica/scan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanAsk {
    /// The LogQL query asked (log or metric), as the user wrote it.
    pub query: String,
    /// Which of its log queries to scan for (the order of
    /// `query::source::log_exprs`): its selector and its pipeline's
    /// literals prune the scan; the pipeline itself runs on the asker.
    pub log_index: usize,
    pub start_ns: i64,
    /// Exclusive.
    pub end_ns: i64,
    /// Scanned in this order.
    pub parts: Vec<PartScan>,
    /// Whether to send, before `done`, the offset each part was read up to
    /// ([`ScanLine::Ends`]): a live tail resumes there at its next poll.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub want_ends: bool,
}

/// One entry found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WireEntry {
    /// Index of its part in [`ScanAsk::parts`].
    pub p: usize,
    /// Its offset in that partition.
    pub o: i64,
    /// Timestamp, ns.
    pub t: i64,
    /// Stream labels (with `topic`); sent only when they differ from the
    /// previous entry's (a batch is usually one stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l: Option<Vec<(String, String)>>,
    /// Structured metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<Vec<(String, String)>>,
    /// The line, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<String>,
    /// The line in base64, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
}

/// One NDJSON line of the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanLine {
    E(WireEntry),
    /// Where each part (in the ask's order) was read up to: every record
    /// below it was either sent or does not match. Sent before `done` when
    /// asked for.
    Ends(Vec<i64>),
    /// The scan is complete.
    Done(ScanStats),
    /// The scan failed there; the message names where.
    Error(String),
}

/// The body of `POST /v1/replica/range`: the state of one range
/// aggregation of `query` (the one over its `log_index`-th log query) at
/// `times`, over `parts` of the answering node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeAsk {
    pub query: String,
    pub log_index: usize,
    pub times: Vec<i64>,
    pub parts: Vec<PartScan>,
}

/// The answer to a [`RangeAsk`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeAnswer {
    /// The state, and what the scan read.
    State { state: PartialsWire, stats: ScanStats },
    /// The query fails over this data, as it would on one node.
    Failed(EvalFailure),
}

/// Why a query failed on the answering node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalFailure {
    /// A series kept `__error__`: the query's own error, Loki's words.
    Pipeline {
        error_type: String,
        series: String,
    },
    TooManySeries {
        limit: usize,
    },
    /// Anything else (a read error): another replica may do better.
    Other(String),
}

impl EvalFailure {
    /// The failure of `e`, for the wire.
    pub fn of(e: &EvalError) -> Self {
        match e {
            EvalError::Pipeline { error_type, series } => EvalFailure::Pipeline {
                error_type: error_type.clone(),
                series: series.clone(),
            },
            EvalError::TooManySeries { limit } => EvalFailure::TooManySeries { limit: *limit },
            other => EvalFailure::Other(crate::http::error::chain(other)),
        }
    }
}

/// Labels as pairs, for the wire.
pub fn pairs(labels: &Labels) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// The line's bytes as sent: `(s, b)`.
pub fn encode_line(line: &[u8]) -> (Option<String>, Option<String>) {
    use base64::Engine;
    match std::str::from_utf8(line) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(line))),
    }
}

impl WireEntry {
    /// The line's bytes.
    ///
    /// # Errors
    /// Bad base64 (a peer of another version, or a corrupt stream).
    pub fn line(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        match (&self.s, &self.b) {
            (Some(s), _) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("entry at offset {}: bad base64 line: {e}", self.o)),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_utf8_or_not() {
        for line in [&b"plain text"[..], &[0xff, 0x00, 0xc3][..], b""] {
            let (s, b) = encode_line(line);
            let e = WireEntry {
                p: 0,
                o: 7,
                t: 1,
                l: None,
                m: None,
                s,
                b,
            };
            let json = serde_json::to_string(&ScanLine::E(e)).unwrap();
            let ScanLine::E(back) = serde_json::from_str(&json).unwrap() else {
                panic!("not an entry: {json}")
            };
            assert_eq!(back.line().unwrap(), line);
        }
    }

    #[test]
    fn done_and_error_lines_are_told_apart() {
        let done = serde_json::to_string(&ScanLine::Done(ScanStats::default())).unwrap();
        assert!(matches!(serde_json::from_str(&done).unwrap(), ScanLine::Done(_)));
        let err = serde_json::to_string(&ScanLine::Error("web/1: segment 0: boom".into())).unwrap();
        assert!(matches!(serde_json::from_str(&err).unwrap(), ScanLine::Error(m) if m.contains("web/1")));
    }
}
