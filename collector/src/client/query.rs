//! `logpost query TOPIC`: streams matching records and prints them as they arrive.

use std::io::Write;

use super::render::{OutputFormat, write_record};
use super::{Client, ClientError};
use crate::query::output::RecordJson;

/// What to ask for.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub topic: String,
    pub grep: Option<String>,
    /// 0 means no limit.
    pub limit: usize,
}

/// Runs the query and prints each record; returns how many were printed.
///
/// # Errors
/// The request failed, the stream reported an error, or output failed.
pub async fn run(
    client: &Client,
    req: &QueryRequest,
    format: OutputFormat,
    color: bool,
    out: &mut impl Write,
) -> Result<u64, ClientError> {
    let mut params = vec![("topic", req.topic.clone()), ("limit", req.limit.to_string())];
    if let Some(g) = &req.grep {
        params.push(("grep", g.clone()));
    }
    let mut resp = client.get("/v1/query", &params).await?;
    let mut pending: Vec<u8> = Vec::new();
    let mut printed = 0;
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
            write_record(out, format, &record, color).map_err(ClientError::Output)?;
            printed += 1;
        }
        pending.drain(..start);
        if done {
            break;
        }
    }
    out.flush().map_err(ClientError::Output)?;
    Ok(printed)
}
