//! Posting batches to a collector the way an agent does, for tests that
//! exercise the collector alone.

use std::time::Duration;

use logpost_shared::batch::BatchBuilder;
use logpost_shared::compression::Compression;

/// Content type of the ingest API.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.kafka.record-batch.v2";

/// A gzip batch holding `lines` as records (timestamps from `ts`).
pub fn batch(lines: &[String], ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (i, l) in lines.iter().enumerate() {
        b.append(ts + i as i64, None, Some(l.as_bytes()), &[]);
    }
    b.finish(Compression::Gzip { level: 1 }).unwrap()
}

/// Where one batch landed, from the collector's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub partition: u32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Outcome of a post that did not succeed.
#[derive(Debug)]
pub enum PostError {
    /// The collector answered with this status and message.
    Status(u16, String),
    /// No answer (connection refused or reset, timeout).
    Transport(String),
}

/// Posts one body to `/v1/ingest/{topic}`; the placements on success.
pub fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    topic: &str,
    body: Vec<u8>,
) -> Result<Vec<Placed>, PostError> {
    let resp = client
        .post(format!("{url}/v1/ingest/{topic}"))
        .header("content-type", BATCH_CONTENT_TYPE)
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .map_err(|e| PostError::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp.text().map_err(|e| PostError::Transport(e.to_string()))?;
    if status != 200 {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        return Err(PostError::Status(status, msg));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| PostError::Transport(e.to_string()))?;
    Ok(v["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| Placed {
            partition: u32::try_from(b["partition"].as_u64().unwrap()).unwrap(),
            base_offset: b["base_offset"].as_i64().unwrap(),
            last_offset: b["last_offset"].as_i64().unwrap(),
        })
        .collect())
}
