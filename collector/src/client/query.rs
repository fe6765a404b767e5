//! `logpost query QUERY` and `logpost tail -f QUERY`: stream matching
//! records from `/v1/query` and print them as they arrive.
//!
//! QUERY is LogQL; a bare topic name means `{topic="name"}`. Records come
//! oldest first (per topic). `tail -f` repeats the query from the newest
//! timestamp seen, skipping the records already printed at that
//! timestamp, so nothing appended in timestamp order is printed twice or
//! missed; a record stored later with an older timestamp than one already
//! printed is not shown.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use super::render::{OutputFormat, write_record};
use super::{Client, ClientError};
use crate::query::output::RecordJson;

/// What to ask for.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// LogQL log query or a bare topic name.
    pub query: String,
    pub grep: Option<String>,
    /// 0 means no limit.
    pub limit: usize,
    /// Earliest and latest record time, in any form the API takes (ns).
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// The newest `limit` records, newest first (else the oldest, oldest first).
    pub backward: bool,
}

/// Streams the records of `req`, calling `each` for every one; returns how many.
///
/// # Errors
/// The request failed, the stream reported an error, or `each` failed.
pub async fn stream(
    client: &Client,
    req: &QueryRequest,
    mut each: impl FnMut(RecordJson) -> Result<(), ClientError>,
) -> Result<u64, ClientError> {
    let mut params = vec![("query", req.query.clone()), ("limit", req.limit.to_string())];
    if let Some(g) = &req.grep {
        params.push(("grep", g.clone()));
    }
    if let Some(s) = req.start {
        params.push(("start", s.to_string()));
    }
    if let Some(e) = req.end {
        params.push(("end", e.to_string()));
    }
    if req.backward {
        params.push(("direction", "backward".to_owned()));
    }
    let mut resp = client.get("/v1/query", &params).await?;
    let mut pending: Vec<u8> = Vec::new();
    let mut seen = 0;
    loop {
        let chunk = resp.chunk().await.map_err(|source| ClientError::Unreachable {
            url: "(stream interrupted)".into(),
            source,
        })?;
        let done = chunk.is_none();
        if let Some(c) = chunk {
            pending.extend_from_slice(&c);
        }
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', pending.get(start..).unwrap_or_default()) {
            let line = pending.get(start..start + nl).unwrap_or_default();
            start += nl + 1;
            if line.is_empty() {
                continue;
            }
            let value: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| ClientError::Decode(Box::new(e)))?;
            if let Some(err) = value.get("error").and_then(|e| e.as_str()) {
                return Err(ClientError::Failed {
                    status: 200,
                    message: err.to_owned(),
                });
            }
            let record: RecordJson = serde_json::from_value(value).map_err(|e| ClientError::Decode(Box::new(e)))?;
            each(record)?;
            seen += 1;
        }
        pending.drain(..start);
        if done {
            break;
        }
    }
    Ok(seen)
}

/// Runs the query and prints each record; returns how many were printed.
///
/// # Errors
/// As [`stream`], or output failed.
pub async fn run(
    client: &Client,
    req: &QueryRequest,
    format: OutputFormat,
    color: bool,
    out: &mut impl Write,
) -> Result<u64, ClientError> {
    let printed = stream(client, req, |r| {
        write_record(out, format, &r, color).map_err(ClientError::Output)
    })
    .await?;
    out.flush().map_err(ClientError::Output)?;
    Ok(printed)
}

/// How often `tail -f` asks for new records.
const TAIL_INTERVAL: Duration = Duration::from_millis(500);

/// Prints matching records as they arrive, forever (until an error or
/// the output closes).
///
/// # Errors
/// As [`run`].
pub async fn follow(
    client: &Client,
    req: &QueryRequest,
    format: OutputFormat,
    color: bool,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let mut req = req.clone();
    req.limit = 0;
    // Newest timestamp printed, and the records printed at it.
    let mut newest_ms: Option<i64> = None;
    let mut at_newest: HashSet<(String, u32, i64)> = HashSet::new();
    loop {
        if let Some(ms) = newest_ms {
            req.start = Some(ms.saturating_mul(1_000_000));
        }
        stream(client, &req, |r| {
            let id = (r.topic.clone(), r.partition, r.offset);
            if newest_ms.is_some_and(|n| r.timestamp_ms < n) || at_newest.contains(&id) {
                return Ok(());
            }
            if newest_ms != Some(r.timestamp_ms) && newest_ms.is_none_or(|n| r.timestamp_ms > n) {
                newest_ms = Some(r.timestamp_ms);
                at_newest.clear();
            }
            if newest_ms == Some(r.timestamp_ms) {
                at_newest.insert(id);
            }
            write_record(out, format, &r, color).map_err(ClientError::Output)
        })
        .await?;
        out.flush().map_err(ClientError::Output)?;
        tokio::time::sleep(TAIL_INTERVAL).await;
    }
}
