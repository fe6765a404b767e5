//! `logpost consume TOPIC`: reads every partition of a topic from its
//! start (or its end with `--from-end`) through `/v1/fetch`, long-polling
//! at the end of each partition, and prints records as they come.
//!
//! Without `--follow` it stops once every partition has been read to the
//! high watermark seen at that time. With `--group`, `group_consume.rs`
//! reads as a member of a consumer group instead.

use std::io::Write;

use super::outage::Outage;
use super::render::{OutputFormat, write_record};
use super::{Client, ClientError};
use crate::http::fetch::FetchResponse;
use crate::http::read::TopicInfo;

/// Milliseconds a fetch waits at the end of a partition when following.
const WAIT_MS: u64 = 1000;
/// Pause before a fetch that failed is tried again.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs the consumer; returns how many records were printed.
///
/// # Errors
/// A request failed or output failed.
pub async fn run(
    client: &Client,
    topic: &str,
    from_end: bool,
    follow: bool,
    format: OutputFormat,
    color: bool,
    out: &mut impl Write,
) -> Result<u64, ClientError> {
    let info: TopicInfo = client
        .get_json(&format!("/v1/topics/{}", super::urlencode(topic)), &[])
        .await?;
    // (partition, next offset, high watermark at start)
    let mut parts: Vec<(u32, i64, i64)> = info
        .partitions
        .iter()
        .map(|p| {
            let start = if from_end { p.high_watermark } else { p.log_start_offset };
            (p.partition, start, p.high_watermark)
        })
        .collect();
    let mut printed = 0;
    let mut outage = Outage::default();
    loop {
        let mut all_done = true;
        for (partition, next, end) in &mut parts {
            if !follow && *next >= *end {
                continue;
            }
            all_done = false;
            // Wait only when there is a single partition: several would
            // each hold the loop for the wait.
            let wait = if follow && info.partitions.len() == 1 {
                WAIT_MS
            } else {
                0
            };
            let path = format!("/v1/fetch/{}/{partition}", super::urlencode(topic));
            let params = [("offset", next.to_string()), ("wait_ms", wait.to_string())];
            let resp: FetchResponse = match client.get_json(&path, &params).await {
                Ok(r) => r,
                // In a cluster, the partition's leader died and another
                // takes over: keep the position and try again.
                Err(e) if outage.rides_out(&e, follow) => {
                    eprintln!("logpost: partition {partition}: {e}; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            outage.over();
            for r in &resp.records {
                write_record(out, format, r, color).map_err(ClientError::Output)?;
                printed += 1;
            }
            *next = resp.next_offset;
        }
        out.flush().map_err(ClientError::Output)?;
        if all_done {
            return Ok(printed);
        }
        if follow && parts.len() > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}
