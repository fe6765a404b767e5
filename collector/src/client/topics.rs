//! `logpost topics`: list, describe, create and delete topics.

use std::io::Write;

use super::{Client, ClientError, urlencode};
use crate::http::admin::CreateTopic;
use crate::http::read::{TopicInfo, TopicList};

/// Prints the topic list as a table, or as JSON with `json`.
///
/// # Errors
/// The request failed or output could not be written.
pub async fn list(client: &Client, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let list: TopicList = client.get_json("/v1/topics", &[]).await?;
    if json {
        return print_json(out, &list);
    }
    let width = list.topics.iter().map(|t| t.name.len()).max().unwrap_or(5).max(5);
    let w = |out: &mut dyn Write, a: &str, b: &str, c: &str, d: &str| {
        writeln!(out, "{a:<width$}  {b:>10}  {c:>14}  {d:>14}").map_err(ClientError::Output)
    };
    w(out, "TOPIC", "PARTITIONS", "RECORDS", "BYTES")?;
    for t in &list.topics {
        w(
            out,
            &t.name,
            &t.partitions.len().to_string(),
            &t.records.to_string(),
            &t.size_bytes.to_string(),
        )?;
    }
    Ok(())
}

/// Prints one topic: settings, then offsets and sizes per partition.
///
/// # Errors
/// The request failed (404 for an unknown topic) or output failed.
pub async fn describe(client: &Client, name: &str, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let t: TopicInfo = client.get_json(&format!("/v1/topics/{}", urlencode(name)), &[]).await?;
    if json {
        return print_json(out, &t);
    }
    print_topic(&t, out)
}

/// Creates a topic and prints it.
///
/// # Errors
/// The request failed (409 if it exists, 400 for a bad name) or output failed.
pub async fn create(client: &Client, req: &CreateTopic, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let t: TopicInfo = client.post_json("/v1/topics", req).await?;
    if json {
        return print_json(out, &t);
    }
    writeln!(out, "created topic {}", t.name).map_err(ClientError::Output)?;
    print_topic(&t, out)
}

/// Deletes a topic and its data.
///
/// # Errors
/// The request failed (404 for an unknown topic).
pub async fn delete(client: &Client, name: &str, out: &mut impl Write) -> Result<(), ClientError> {
    client.delete(&format!("/v1/topics/{}", urlencode(name))).await?;
    writeln!(out, "deleted topic {name}").map_err(ClientError::Output)
}

fn print_topic(t: &TopicInfo, out: &mut impl Write) -> Result<(), ClientError> {
    let e = ClientError::Output;
    writeln!(out, "topic:      {}", t.name).map_err(e)?;
    writeln!(out, "records:    {}", t.records).map_err(e)?;
    writeln!(out, "bytes:      {}", t.size_bytes).map_err(e)?;
    let bytes = t
        .retention_bytes
        .map_or("unlimited".to_owned(), |b| format!("{b} bytes per partition"));
    writeln!(
        out,
        "retention:  {}, {}",
        t.retention_age.as_deref().unwrap_or("forever"),
        bytes
    )
    .map_err(e)?;
    let clustered = t.partitions.iter().any(|p| p.leader.is_some());
    write!(
        out,
        "{:>9}  {:>14}  {:>14}  {:>14}  {:>8}",
        "PARTITION", "START", "END", "BYTES", "SEGMENTS"
    )
    .map_err(e)?;
    if clustered {
        write!(out, "  {:>6}  {:<12}  {:<12}", "LEADER", "REPLICAS", "ISR").map_err(e)?;
    }
    writeln!(out).map_err(e)?;
    let ids = |v: &Option<Vec<i32>>| {
        v.as_deref()
            .unwrap_or_default()
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    for p in &t.partitions {
        write!(
            out,
            "{:>9}  {:>14}  {:>14}  {:>14}  {:>8}",
            p.partition, p.log_start_offset, p.high_watermark, p.size_bytes, p.segments
        )
        .map_err(e)?;
        if clustered {
            let leader = match p.leader {
                Some(l) if l >= 0 => l.to_string(),
                _ => "none".to_owned(),
            };
            write!(out, "  {leader:>6}  {:<12}  {:<12}", ids(&p.replicas), ids(&p.isr)).map_err(e)?;
        }
        writeln!(out).map_err(e)?;
    }
    if clustered {
        writeln!(out, "(offsets and sizes: this node's copy, up to its high watermark)").map_err(e)?;
    }
    Ok(())
}

fn print_json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<(), ClientError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(|e| ClientError::Output(e.into()))?;
    writeln!(out).map_err(ClientError::Output)
}
