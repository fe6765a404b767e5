//! Where the collector says a file's stream stands (`POST /v1/streams`):
//! asked before a file is read, so that reading resumes at the collector's
//! cursor (docs/exactly-once.md).

use std::time::Duration;

use super::client::{SharedUrls, current, error_chain};

/// What the collector holds of one stream (`POST /v1/streams`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct StreamState {
    pub topic: String,
    pub producer_id: i64,
    pub found: bool,
    #[serde(default)]
    pub next_sequence: Option<i64>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(serde::Deserialize)]
struct StreamStates {
    streams: Vec<StreamState>,
}

#[derive(serde::Deserialize)]
struct ContentStates {
    contents: Vec<StreamState>,
}

/// Asks the collector where streams stand, from the tailing thread (which
/// blocks on the shipper's runtime for the answer).
#[derive(Debug, Clone)]
pub struct StreamLookup {
    handle: tokio::runtime::Handle,
    http: reqwest::Client,
    urls: SharedUrls,
}

/// A lookup that takes longer is retried later: the tailing loop must stay
/// responsive (to SIGTERM, among others) while the collector is away.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

impl StreamLookup {
    /// A lookup client for `urls`, running on `handle`.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        handle: tokio::runtime::Handle,
        urls: SharedUrls,
        auth: &crate::config::CollectorAuth,
    ) -> Result<Self, String> {
        let http = super::http::client_builder(auth)?
            .connect_timeout(Duration::from_secs(3))
            .timeout(LOOKUP_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { handle, http, urls })
    }

    /// Looks up `(topic, producer id)` pairs; answers in the same order.
    ///
    /// # Errors
    /// No collector answered, or the answer was not understood.
    pub fn lookup(&self, keys: &[(String, i64)]) -> Result<Vec<StreamState>, String> {
        let body = serde_json::json!({
            "streams": keys.iter().map(|(t, p)| serde_json::json!({"topic": t, "producer_id": p})).collect::<Vec<_>>()
        });
        let mut last_err = String::from("no collector URL configured");
        for base in &current(&self.urls) {
            let url = format!("{base}/v1/streams");
            let http = self.http.clone();
            let body = body.clone();
            let result = self.handle.block_on(async move {
                let resp = http.post(&url).json(&body).send().await.map_err(|e| error_chain(&e))?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| error_chain(&e))?;
                if !status.is_success() {
                    return Err(format!("{status}: {}", text.trim()));
                }
                serde_json::from_str::<StreamStates>(&text).map_err(|e| format!("unexpected answer: {e}"))
            });
            match result {
                Ok(states) if states.streams.len() == keys.len() => return Ok(states.streams),
                Ok(_) => last_err = format!("{base}: answer does not match the request"),
                Err(e) => last_err = format!("{base}: {e}"),
            }
        }
        Err(last_err)
    }

    /// Asks which stream got furthest in each `(topic, content head)`
    /// (`POST /v1/streams/by-content`); answers in the same order. A
    /// collector too old to know the request answers that nothing is known.
    ///
    /// # Errors
    /// No collector answered, or the answer was not understood.
    pub fn by_content(&self, keys: &[(String, String)]) -> Result<Vec<StreamState>, String> {
        let body = serde_json::json!({
            "contents": keys.iter().map(|(t, h)| serde_json::json!({"topic": t, "head": h})).collect::<Vec<_>>()
        });
        let mut last_err = String::from("no collector URL configured");
        for base in &current(&self.urls) {
            let url = format!("{base}/v1/streams/by-content");
            let http = self.http.clone();
            let body = body.clone();
            let result = self.handle.block_on(async move {
                let resp = http.post(&url).json(&body).send().await.map_err(|e| error_chain(&e))?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| error_chain(&e))?;
                if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::METHOD_NOT_ALLOWED {
                    return Ok(None);
                }
                if !status.is_success() {
                    return Err(format!("{status}: {}", text.trim()));
                }
                serde_json::from_str::<ContentStates>(&text)
                    .map(Some)
                    .map_err(|e| format!("unexpected answer: {e}"))
            });
            match result {
                Ok(None) => return Ok(Vec::new()),
                Ok(Some(states)) if states.contents.len() == keys.len() => return Ok(states.contents),
                Ok(Some(_)) => last_err = format!("{base}: answer does not match the request"),
                Err(e) => last_err = format!("{base}: {e}"),
            }
        }
        Err(last_err)
    }
}
