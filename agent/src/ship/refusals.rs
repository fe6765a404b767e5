//! What the agent does when the collector will not take a request: never
//! drop its lines.
//!
//! - **Refused by policy** (the topic does not exist and is not created on
//!   first write, a token without the scope, a topic cap, a body over the
//!   collector's limit): an operator has to act, and the lines wait in
//!   their files meanwhile (the file is the buffer). The request is retried
//!   with backoff for as long as it takes; the refusal is logged, counted
//!   (`logpost_agent_requests_refused_total`, `logpost_agent_refused`) and
//!   written to `<data_dir>/refused.json`, which `validate` shows.
//! - **Malformed** (400: the collector proves the batch itself is bad,
//!   which would be the agent's own bug): after a few attempts the request
//!   is set aside in `<data_dir>/dead-letter/`, its RecordBatch frames as
//!   they were sent (re-sendable with curl) beside a JSON file saying why,
//!   so that the files behind it move on and nothing is silently lost.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::client::Payload;

/// The file naming the request the collector is refusing, while it does.
pub const REFUSED_FILE: &str = "refused.json";
/// Directory of set-aside requests.
pub const DEAD_LETTER_DIR: &str = "dead-letter";

/// A refusal as `<data_dir>/refused.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub topic: String,
    pub url: String,
    pub status: u16,
    /// The collector's own words.
    pub message: String,
    /// When the refusals began (ms since the epoch).
    pub since_ms: u64,
    pub attempts: u64,
    pub records: u64,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records for topic {:?} refused by {} with {} ({} attempts so far): {}",
            self.records, self.topic, self.url, self.status, self.attempts, self.message
        )
    }
}

/// Records refusals and set-aside requests under a data directory.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    data_dir: Option<PathBuf>,
}

impl RefusalLog {
    /// Refusals recorded under `data_dir` (`None`: logged only, as in tests).
    pub fn new(data_dir: Option<PathBuf>) -> Self {
        RefusalLog { data_dir }
    }

    /// The request is being refused: say so where `validate` looks.
    pub fn refused(&self, r: &Refusal) {
        metrics::gauge!("logpost_agent_refused").set(1.0);
        metrics::counter!("logpost_agent_requests_refused_total", "status" => r.status.to_string()).increment(1);
        let Some(dir) = &self.data_dir else { return };
        let path = dir.join(REFUSED_FILE);
        match serde_json::to_vec_pretty(r) {
            Ok(json) => {
                if let Err(e) = write_atomically(&path, &json) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot record the refusal");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode the refusal"),
        }
    }

    /// Requests are accepted again.
    pub fn cleared(&self) {
        metrics::gauge!("logpost_agent_refused").set(0.0);
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_file(dir.join(REFUSED_FILE));
        }
    }

    /// Sets `payload` aside with why; returns where, if it could be written.
    pub fn dead_letter(&self, payload: &Payload, status: u16, message: &str) -> Option<PathBuf> {
        metrics::counter!("logpost_agent_requests_dead_lettered_total").increment(1);
        let dir = self.data_dir.as_ref()?.join(DEAD_LETTER_DIR);
        let stem = format!("{}-{}", now_ms(), payload.topic);
        let body = dir.join(format!("{stem}.batch"));
        let about = dir.join(format!("{stem}.json"));
        let meta = serde_json::json!({
            "topic": payload.topic,
            "status": status,
            "error": message,
            "records": payload.records,
            "body": body.file_name().map(|n| n.to_string_lossy().into_owned()),
            "content_type": super::client::BATCH_CONTENT_TYPE,
            "streams": payload.acks.iter().map(|(file, acked)| serde_json::json!({
                "dev": file.dev, "ino": file.ino, "end_pos": acked.pos, "next_seq": acked.next_seq,
            })).collect::<Vec<_>>(),
        });
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| write_atomically(&body, &payload.body))
            .and_then(|()| {
                let json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
                write_atomically(&about, &json)
            });
        match written {
            Ok(()) => Some(body),
            Err(e) => {
                tracing::error!(path = %body.display(), error = %e, "cannot write the dead-letter file");
                None
            }
        }
    }
}

/// The refusal a running agent recorded under `data_dir`, if any.
pub fn current(data_dir: &Path) -> Option<Refusal> {
    let bytes = std::fs::read(data_dir.join(REFUSED_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Requests set aside under `data_dir`: their `.batch` files.
pub fn dead_letters(data_dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(data_dir.join(DEAD_LETTER_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "batch"))
        .collect();
    out.sort();
    out
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Temp file, fsync, rename: a crash leaves the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::acks::Acked;
    use crate::tail::fingerprint::FileKey;

    #[test]
    fn a_refusal_is_recorded_until_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let log = RefusalLog::new(Some(tmp.path().to_owned()));
        let r = Refusal {
            topic: "app".into(),
            url: "http://127.0.0.1:7070".into(),
            status: 404,
            message: "topic \"app\" does not exist and auto_create_topics is off".into(),
            since_ms: 1,
            attempts: 3,
            records: 10,
        };
        log.refused(&r);
        assert_eq!(current(tmp.path()), Some(r.clone()));
        assert!(
            r.to_string().contains("refused by http://127.0.0.1:7070 with 404"),
            "{r}"
        );
        log.cleared();
        assert_eq!(current(tmp.path()), None);
    }

    #[test]
    fn a_dead_letter_keeps_the_body_and_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        let log = RefusalLog::new(Some(tmp.path().to_owned()));
        let payload = Payload {
            topic: "app".into(),
            body: bytes::Bytes::from_static(b"frames"),
            acks: vec![(
                FileKey { dev: 1, ino: 2 },
                Acked {
                    pos: 30,
                    next_seq: 4,
                    generation: 0,
                },
            )],
            records: 4,
            raw_bytes: 30,
            frames: Vec::new(),
            unsettled: None,
        };
        let body = log.dead_letter(&payload, 400, "batch 0: CRC mismatch").unwrap();
        assert_eq!(std::fs::read(&body).unwrap(), b"frames");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(body.with_extension("json")).unwrap()).unwrap();
        assert_eq!(meta["error"], "batch 0: CRC mismatch");
        assert_eq!(meta["records"], 4);
        assert_eq!(meta["streams"][0]["end_pos"], 30);
        assert_eq!(dead_letters(tmp.path()), vec![body]);
    }
}
