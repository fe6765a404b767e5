//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/*`, `/v3/watch`), with reqwest: no protoc, no
//! gRPC stack in the build. Keys and values travel base64-encoded and
//! 64-bit numbers as strings, as the gateway's JSON mapping of etcd's
//! protobuf messages has them; fields at their default value are left out
//! of answers, so every field here has a default.
//!
//! Why a module of its own: the rest of the cluster code speaks in keys,
//! revisions, compare-and-swaps and leases; only this file knows the wire.
//! Every call has a timeout and moves on to the next endpoint when one is
//! unreachable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd {endpoint}: {op}: cannot reach it")]
    Unreachable {
        endpoint: String,
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("etcd {endpoint}: {op}: {status}: {message}")]
    Refused {
        endpoint: String,
        op: &'static str,
        status: u16,
        message: String,
    },
    #[error("etcd {endpoint}: {op}: unexpected answer")]
    Answer {
        endpoint: String,
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("etcd {endpoint}: watch: {0}", endpoint = .1)]
    Watch(String, String),
    #[error("no etcd endpoint configured")]
    NoEndpoint,
}

/// One key-value pair, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A watch event: a put (with the new pair) or a delete (key only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    Delete { key: String, mod_revision: i64 },
}

/// A condition of a transaction, on one key.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key was last modified at this revision (0: it does not exist).
    ModRevision(String, i64),
    /// The key was created at this revision (0: it does not exist).
    CreateRevision(String, i64),
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: String,
    },
    /// Deletes every key starting with the prefix.
    DeletePrefix {
        prefix: String,
    },
}

/// Talks to an etcd cluster through any of its endpoints.
#[derive(Debug)]
pub struct Etcd {
    http: reqwest::Client,
    /// For watches: no overall timeout (they last), a read timeout instead.
    streaming: reqwest::Client,
    endpoints: Vec<String>,
    current: AtomicUsize,
}

/// One call's deadline: etcd answers in milliseconds; a slow answer means
/// a struggling member, and the next endpoint is worth a try.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawKv {
    key: String,
    value: String,
    create_revision: Num,
    mod_revision: Num,
    lease: Num,
}

/// An int64 as the gateway writes it: a string (or, leniently, a number).
#[derive(Deserialize, Default, Clone, Copy, Debug)]
#[serde(from = "Value")]
struct Num(i64);

impl From<Value> for Num {
    fn from(v: Value) -> Self {
        Num(match v {
            Value::String(s) => s.parse().unwrap_or(0),
            Value::Number(n) => n.as_i64().unwrap_or(0),
            _ => 0,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Header {
    revision: Num,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RangeAnswer {
    header: Header,
    kvs: Vec<RawKv>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TxnAnswer {
    header: Header,
    succeeded: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LeaseAnswer {
    #[serde(rename = "ID")]
    id: Num,
    #[serde(rename = "TTL")]
    ttl: Num,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeepAliveAnswer {
    result: LeaseAnswer,
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// The key just after every key starting with `prefix` (etcd's range end).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return b64(&end);
        }
    }
    b64(&[0])
}

fn decode_kv(raw: RawKv) -> Option<KeyValue> {
    let key = String::from_utf8(B64.decode(raw.key).ok()?).ok()?;
    let value = B64.decode(raw.value).ok()?;
    Some(KeyValue {
        key,
        value,
        create_revision: raw.create_revision.0,
        mod_revision: raw.mod_revision.0,
        lease: raw.lease.0,
    })
}

impl Etcd {
    /// A client for `endpoints` (`http://host:port`).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(endpoints: Vec<String>) -> Result<Etcd, reqwest::Error> {
        logpost_shared::tls::install_default_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(CALL_TIMEOUT)
            .build()?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Etcd {
            http,
            streaming,
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_owned())
                .collect(),
            current: AtomicUsize::new(0),
        })
    }

    /// POSTs `body` to `path` on the current endpoint, moving to the next
    /// one when it is unreachable (each tried once).
    async fn call<T: serde::de::DeserializeOwned + Default>(
        &self,
        op: &'static str,
        path: &str,
        body: Value,
    ) -> Result<T, EtcdError> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(EtcdError::NoEndpoint);
        }
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let index = (first + i) % n;
            let Some(endpoint) = self.endpoints.get(index) else {
                continue;
            };
            match self.http.post(format!("{endpoint}{path}")).json(&body).send().await {
                Ok(resp) => {
                    self.current.store(index, Ordering::Relaxed);
                    let status = resp.status();
                    let text = resp.text().await.map_err(|source| EtcdError::Unreachable {
                        endpoint: endpoint.clone(),
                        op,
                        source,
                    })?;
                    if !status.is_success() {
                        return Err(EtcdError::Refused {
                            endpoint: endpoint.clone(),
                            op,
                            status: status.as_u16(),
                            message: error_message(&text),
                        });
                    }
                    return serde_json::from_str(&text).map_err(|source| EtcdError::Answer {
                        endpoint: endpoint.clone(),
                        op,
                        source,
                    });
                }
                Err(source) => {
                    last = Some(EtcdError::Unreachable {
                        endpoint: endpoint.clone(),
                        op,
                        source,
                    });
                }
            }
        }
        Err(last.unwrap_or(EtcdError::NoEndpoint))
    }

    /// Every pair whose key starts with `prefix`, and the store's revision.
    ///
    /// # Errors
    /// etcd could not be reached or refused.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let body = json!({"key": b64(prefix.as_bytes()), "range_end": prefix_end(prefix)});
        let answer: RangeAnswer = self.call("range", "/v3/kv/range", body).await?;
        Ok((
            answer.kvs.into_iter().filter_map(decode_kv).collect(),
            answer.header.revision.0,
        ))
    }

    /// The pair at `key`, if any.
    ///
    /// # Errors
    /// etcd could not be reached or refused.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let body = json!({"key": b64(key.as_bytes())});
        let answer: RangeAnswer = self.call("range", "/v3/kv/range", body).await?;
        Ok(answer.kvs.into_iter().find_map(decode_kv))
    }

    /// Puts `value` at `key` (attached to `lease` unless 0).
    ///
    /// # Errors
    /// etcd could not be reached or refused (an expired lease, say).
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let answer: TxnAnswer = self.call("put", "/v3/kv/put", put_body(key, value, lease)).await?;
        Ok(answer.header.revision.0)
    }

    /// Applies `ops` if every comparison holds; returns whether it did and
    /// the revision after.
    ///
    /// # Errors
    /// etcd could not be reached or refused.
    pub async fn txn(&self, compares: &[Compare], ops: &[Op]) -> Result<(bool, i64), EtcdError> {
        let compare: Vec<Value> = compares
            .iter()
            .map(|c| match c {
                Compare::ModRevision(k, r) => {
                    json!({"key": b64(k.as_bytes()), "result": "EQUAL", "target": "MOD", "mod_revision": r.to_string()})
                }
                Compare::CreateRevision(k, r) => {
                    json!({"key": b64(k.as_bytes()), "result": "EQUAL", "target": "CREATE", "create_revision": r.to_string()})
                }
            })
            .collect();
        let success: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => json!({"request_put": put_body(key, value, *lease)}),
                Op::Delete { key } => json!({"request_delete_range": {"key": b64(key.as_bytes())}}),
                Op::DeletePrefix { prefix } => {
                    json!({"request_delete_range": {"key": b64(prefix.as_bytes()), "range_end": prefix_end(prefix)}})
                }
            })
            .collect();
        let answer: TxnAnswer = self
            .call("txn", "/v3/kv/txn", json!({"compare": compare, "success": success}))
            .await?;
        Ok((answer.succeeded, answer.header.revision.0))
    }

    /// Grants a lease of `ttl`; returns its id.
    ///
    /// # Errors
    /// etcd could not be reached or refused.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let answer: LeaseAnswer = self
            .call(
                "lease grant",
                "/v3/lease/grant",
                json!({"TTL": ttl.as_secs().max(1).to_string()}),
            )
            .await?;
        Ok(answer.id.0)
    }

    /// Renews lease `id`; `Ok(false)` when it is gone (expired or revoked).
    ///
    /// # Errors
    /// etcd could not be reached or refused.
    pub async fn keep_alive(&self, id: i64) -> Result<bool, EtcdError> {
        let answer: KeepAliveAnswer = self
            .call("lease keepalive", "/v3/lease/keepalive", json!({"ID": id.to_string()}))
            .await?;
        Ok(answer.result.ttl.0 > 0)
    }

    /// Revokes lease `id`, deleting the keys attached to it (clean shutdown).
    ///
    /// # Errors
    /// etcd could not be reached or refused.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        let _: Value = self
            .call("lease revoke", "/v3/lease/revoke", json!({"ID": id.to_string()}))
            .await?;
        Ok(())
    }

    /// Watches every key under `prefix` from `revision` on, calling `each`
    /// with each batch of events and the revision they bring the store to,
    /// until the stream ends or `each` returns false. Returns the last
    /// revision seen.
    ///
    /// # Errors
    /// etcd could not be reached, refused, or compacted `revision` away
    /// (the caller then reads everything again).
    pub async fn watch(
        &self,
        prefix: &str,
        revision: i64,
        mut each: impl FnMut(Vec<Event>, i64) -> bool,
    ) -> Result<i64, EtcdError> {
        let index = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        let endpoint = self.endpoints.get(index).ok_or(EtcdError::NoEndpoint)?.clone();
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": prefix_end(prefix),
            "start_revision": revision.to_string(),
            "progress_notify": true,
        }});
        let unreachable = |source| EtcdError::Unreachable {
            endpoint: endpoint.clone(),
            op: "watch",
            source,
        };
        let mut resp = match self
            .streaming
            .post(format!("{endpoint}/v3/watch"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(source) => {
                // Next time, the next endpoint.
                self.current.store(index + 1, Ordering::Relaxed);
                return Err(unreachable(source));
            }
        };
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            return Err(EtcdError::Refused {
                endpoint,
                op: "watch",
                status,
                message: error_message(&text),
            });
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut last = revision.saturating_sub(1);
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            buf.extend_from_slice(&chunk);
            // The gateway writes one JSON object per line.
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let msg: Value = serde_json::from_str(text).map_err(|source| EtcdError::Answer {
                    endpoint: endpoint.clone(),
                    op: "watch",
                    source,
                })?;
                if let Some(e) = msg.get("error") {
                    return Err(EtcdError::Watch(e.to_string(), endpoint.clone()));
                }
                let Some(result) = msg.get("result") else { continue };
                if result.get("canceled").and_then(Value::as_bool) == Some(true)
                    || result.get("compact_revision").is_some()
                {
                    let reason = result
                        .get("cancel_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("canceled (compacted)");
                    return Err(EtcdError::Watch(reason.to_owned(), endpoint.clone()));
                }
                let rev = result
                    .get("header")
                    .and_then(|h| h.get("revision"))
                    .map_or(last, |r| Num::from(r.clone()).0);
                let events = result
                    .get("events")
                    .and_then(Value::as_array)
                    .map(|events| events.iter().filter_map(decode_event).collect())
                    .unwrap_or_default();
                last = last.max(rev);
                if !each(events, rev) {
                    return Ok(last);
                }
            }
        }
        Ok(last)
    }
}

fn put_body(key: &str, value: &[u8], lease: i64) -> Value {
    let mut body = json!({"key": b64(key.as_bytes()), "value": b64(value)});
    if lease != 0
        && let Some(map) = body.as_object_mut()
    {
        map.insert("lease".into(), Value::String(lease.to_string()));
    }
    body
}

fn decode_event(e: &Value) -> Option<Event> {
    let raw: RawKv = serde_json::from_value(e.get("kv")?.clone()).ok()?;
    let is_delete = e.get("type").and_then(Value::as_str) == Some("DELETE");
    let kv = decode_kv(raw)?;
    Some(if is_delete {
        Event::Delete {
            key: kv.key,
            mod_revision: kv.mod_revision,
        }
    } else {
        Event::Put(kv)
    })
}

/// The gateway's `{"error": ..., "message": ...}`, or the body itself.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| text.trim().chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_are_the_next_key() {
        assert_eq!(B64.decode(prefix_end("/a/")).unwrap(), b"/a0");
        assert_eq!(B64.decode(prefix_end("a\u{7f}")).unwrap(), b"a\x80");
    }

    #[test]
    fn answers_with_defaults_left_out_decode() {
        // A failed txn leaves `succeeded` out; an empty range leaves `kvs` out.
        let t: TxnAnswer = serde_json::from_str(r#"{"header":{"revision":"7"}}"#).unwrap();
        assert!(!t.succeeded);
        assert_eq!(t.header.revision.0, 7);
        let r: RangeAnswer = serde_json::from_str(r#"{"header":{"revision":"3"}}"#).unwrap();
        assert!(r.kvs.is_empty());
        let r: RangeAnswer = serde_json::from_str(
            r#"{"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmFy"}],"count":"1"}"#,
        )
        .unwrap();
        let kv = decode_kv(r.kvs.into_iter().next().unwrap()).unwrap();
        assert_eq!(
            (kv.key.as_str(), &kv.value[..], kv.mod_revision),
            ("foo", &b"bar"[..], 3)
        );
        // An expired lease's keepalive answer has no TTL.
        let k: KeepAliveAnswer = serde_json::from_str(r#"{"result":{"ID":"5"}}"#).unwrap();
        assert_eq!(k.result.ttl.0, 0);
        let e = decode_event(&serde_json::json!({"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"9"}})).unwrap();
        assert_eq!(
            e,
            Event::Delete {
                key: "foo".into(),
                mod_revision: 9
            }
        );
    }
}
