//! Dry run (`logpost-agent --dry-run`): each sealed request's records
//! printed as JSON lines on stdout instead of shipped.

use logpost_shared::compression::Compression;
use tokio::sync::mpsc;

use super::ShipperStats;
use crate::ship::batcher::ShipRequest;

/// Dry run: prints each record of each sealed request as a JSON line on
/// stdout instead of shipping it, and acknowledges nothing (so no
/// checkpoint moves).
pub async fn run_dry(mut requests: mpsc::Receiver<ShipRequest>) -> ShipperStats {
    let mut stats = ShipperStats::default();
    while let Some(req) = requests.recv().await {
        let printed = tokio::task::spawn_blocking(move || print_request(req))
            .await
            .unwrap_or(0);
        stats.requests += 1;
        stats.records += printed;
    }
    stats
}

fn print_request(req: ShipRequest) -> u64 {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0;
    for b in req.batches {
        let Ok(frame) = b.builder.finish(Compression::None) else {
            continue;
        };
        let Ok(records) = logpost_shared::batch::records_to_owned(&frame, usize::MAX) else {
            continue;
        };
        for r in records {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|h| {
                    let v = h.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned());
                    (
                        h.key.clone(),
                        v.map_or(serde_json::Value::Null, serde_json::Value::String),
                    )
                })
                .collect();
            let line = serde_json::json!({
                "topic": req.topic,
                "timestamp_ms": r.timestamp_ms,
                "key": r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "headers": headers,
                "line": String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()),
            });
            if writeln!(out, "{line}").is_err() {
                return printed;
            }
            printed += 1;
        }
    }
    let _ = out.flush();
    printed
}
