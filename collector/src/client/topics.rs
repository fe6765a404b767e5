//! `logpost topics`: topics with partition, record and byte counts.

use std::io::Write;

use super::{Client, ClientError};
use crate::http::read::TopicList;

/// Prints the topic list as a table, or as JSON with `json`.
///
/// # Errors
/// The request failed or output could not be written.
pub async fn list(client: &Client, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let list: TopicList = client.get_json("/v1/topics", &[]).await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &list).map_err(|e| ClientError::Output(e.into()))?;
        writeln!(out).map_err(ClientError::Output)?;
        return Ok(());
    }
    let width = list.topics.iter().map(|t| t.name.len()).max().unwrap_or(5).max(5);
    writeln!(
        out,
        "{:<width$}  {:>10}  {:>14}  {:>12}",
        "TOPIC", "PARTITIONS", "RECORDS", "BYTES"
    )
    .map_err(ClientError::Output)?;
    for t in &list.topics {
        writeln!(
            out,
            "{:<width$}  {:>10}  {:>14}  {:>12}",
            t.name,
            t.partitions.len(),
            t.records,
            t.size_bytes
        )
        .map_err(ClientError::Output)?;
    }
    Ok(())
}
