//! Where the collector says a file's stream stands (`POST /v1/streams`):
//! asked before a file is read, so that reading resumes at the collector's
//! cursor (docs/exactly-once.md).
//!
//! In a cluster only a partition's leader knows for sure where its streams
//! stand (a follower may lag, or hold what is not acknowledged yet): every
//! node leading a partition of the topic is asked, and each stream's
//! answer is taken from the leader of the partition it was found in.

use std::sync::Arc;
use std::time::Duration;

use super::client::{SharedUrls, current, error_chain};
use super::leaders::{ClusterMap, Leaders};

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
    /// The partition the stream was found in.
    #[serde(default)]
    pub partition: Option<u32>,
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
    leaders: Arc<Leaders>,
}

/// A lookup that takes longer is retried later: the tailing loop must stay
/// responsive (to SIGTERM, among others) while the collector is away.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads an answer: the states in request order, or `None` for "nothing
/// known" (a collector too old to know the request).
type Parse = fn(&str) -> Result<Option<Vec<StreamState>>, String>;

impl StreamLookup {
    /// A lookup client for `urls`, running on `handle`, asking partition
    /// leaders when `leaders` knows a cluster.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        handle: tokio::runtime::Handle,
        urls: SharedUrls,
        leaders: Arc<Leaders>,
        auth: &crate::config::CollectorAuth,
    ) -> Result<Self, String> {
        let http = super::http::client_builder(auth)?
            .connect_timeout(Duration::from_secs(3))
            .timeout(LOOKUP_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            handle,
            http,
            urls,
            leaders,
        })
    }

    /// Looks up `(topic, producer id)` pairs; answers in the same order.
    ///
    /// # Errors
    /// No collector answered, or the answer was not understood.
    pub fn lookup(&self, keys: &[(String, i64)]) -> Result<Vec<StreamState>, String> {
        let body = serde_json::json!({
            "streams": keys.iter().map(|(t, p)| serde_json::json!({"topic": t, "producer_id": p})).collect::<Vec<_>>()
        });
        let topics: Vec<&str> = keys.iter().map(|(t, _)| t.as_str()).collect();
        let parse: Parse = |text| {
            serde_json::from_str::<StreamStates>(text)
                .map(|s| Some(s.streams))
                .map_err(|e| format!("unexpected answer: {e}"))
        };
        let states = self.ask("/v1/streams", &body, &topics, parse, false)?;
        states.ok_or_else(|| "the collector does not know stream lookups".to_owned())
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
        let topics: Vec<&str> = keys.iter().map(|(t, _)| t.as_str()).collect();
        let parse: Parse = |text| {
            serde_json::from_str::<ContentStates>(text)
                .map(|s| Some(s.contents))
                .map_err(|e| format!("unexpected answer: {e}"))
        };
        Ok(self
            .ask("/v1/streams/by-content", &body, &topics, parse, true)?
            .unwrap_or_default())
    }

    /// POSTs `body` to `path`: to every leader of `topics`' partitions in
    /// a cluster whose map lists them all, else to the first URL that
    /// answers. `old_is_none`: a 404 means a collector too old to know
    /// the request (`Ok(None)`).
    fn ask(
        &self,
        path: &str,
        body: &serde_json::Value,
        topics: &[&str],
        parse: Parse,
        old_is_none: bool,
    ) -> Result<Option<Vec<StreamState>>, String> {
        let mut map = None;
        for topic in topics {
            map = self.handle.block_on(self.leaders.map_for(topic));
        }
        if let Some(map) = map.filter(|m| topics.iter().all(|t| m.topic(t).is_some())) {
            return self.ask_leaders(&map, path, body, topics, parse, old_is_none);
        }
        let mut last_err = String::from("no collector URL configured");
        for base in &current(&self.urls) {
            match self.post(base, path, body, parse, old_is_none) {
                Ok(Some(states)) if states.len() != topics.len() => {
                    last_err = format!("{base}: answer does not match the request");
                }
                Ok(states) => return Ok(states),
                Err(e) => last_err = format!("{base}: {e}"),
            }
        }
        Err(last_err)
    }

    /// Asks every leader of `topics`' partitions (all must answer) and
    /// takes each stream's answer from the leader of the partition it was
    /// found in; not found if no leader has it.
    fn ask_leaders(
        &self,
        map: &ClusterMap,
        path: &str,
        body: &serde_json::Value,
        topics: &[&str],
        parse: Parse,
        old_is_none: bool,
    ) -> Result<Option<Vec<StreamState>>, String> {
        let mut nodes: Vec<String> = Vec::new();
        for topic in topics {
            if map
                .topic(topic)
                .is_some_and(|leaders| leaders.iter().any(Option::is_none))
            {
                self.leaders.invalidate();
                return Err(format!("a partition of topic {topic} has no leader now"));
            }
            for url in map.leaders_of(topic) {
                if !nodes.contains(&url) {
                    nodes.push(url);
                }
            }
        }
        let mut answers = Vec::with_capacity(nodes.len());
        for base in &nodes {
            match self.post(base, path, body, parse, old_is_none) {
                Ok(None) => return Ok(None),
                Ok(Some(states)) if states.len() == topics.len() => answers.push((base.as_str(), states)),
                Ok(Some(_)) => return Err(format!("{base}: answer does not match the request")),
                Err(e) => {
                    self.leaders.invalidate();
                    return Err(format!("{base}: {e}"));
                }
            }
        }
        let mut out = Vec::with_capacity(topics.len());
        for (i, topic) in topics.iter().enumerate() {
            let from_leader = answers.iter().find_map(|(base, states)| {
                let s = states.get(i)?;
                let p = s.partition.filter(|_| s.found)?;
                (map.leader(topic, p) == Some(*base)).then(|| s.clone())
            });
            let state = match from_leader {
                Some(s) => s,
                None => {
                    let Some(mut s) = answers.first().and_then(|(_, states)| states.get(i).cloned()) else {
                        return Err(format!("no leader of topic {topic} answered"));
                    };
                    // Only a follower's copy knows it: nothing acknowledged.
                    s.found = false;
                    s.next_sequence = None;
                    s.cursor = None;
                    s.partition = None;
                    s
                }
            };
            out.push(state);
        }
        Ok(Some(out))
    }

    fn post(
        &self,
        base: &str,
        path: &str,
        body: &serde_json::Value,
        parse: Parse,
        old_is_none: bool,
    ) -> Result<Option<Vec<StreamState>>, String> {
        let url = format!("{base}{path}");
        let http = self.http.clone();
        let body = body.clone();
        self.handle.block_on(async move {
            let resp = http.post(&url).json(&body).send().await.map_err(|e| error_chain(&e))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| error_chain(&e))?;
            if old_is_none
                && (status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::METHOD_NOT_ALLOWED)
            {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(format!("{status}: {}", text.trim()));
            }
            parse(&text)
        })
    }
}
