//! Loki's JSON answers (`streams`, `matrix`, `vector`, `scalar`) written
//! straight to bytes.
//!
//! Why a module of its own, and why not `serde_json::Value`: a tree of
//! values costs about a hundred bytes per point or entry on top of the
//! text (an array, two values and a string each), which made a metric
//! query's answer cost more memory than the query itself. Writing the text
//! as the result is walked costs only the text.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::query::logql::{Labels, Matrix, Sample, Streams};

/// Seconds as Prometheus/Loki print them in matrix and vector points.
pub fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// A sample value as Prometheus prints it (`"2"`, `"0.5"`, `"NaN"`, `"+Inf"`).
pub fn sample(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        v.to_string()
    }
}

/// Labels as a JSON object's members (for answers built as values).
pub fn label_map(labels: &Labels) -> serde_json::Map<String, Value> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

/// A JSON string (quoted, escaped).
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail; a string always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `{"name":"value",...}`.
fn labels(out: &mut Vec<u8>, labels: &Labels) {
    out.push(b'{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

/// `[<seconds>,"<value>"]`.
fn point(out: &mut Vec<u8>, ns: i64, v: f64) {
    out.push(b'[');
    // An f64 always serializes (non-finite ones as null, never here).
    let _ = serde_json::to_writer(&mut *out, &seconds(ns));
    out.push(b',');
    string(out, &sample(v));
    out.push(b']');
}

/// A `streams` result: `[{"stream":{..},"values":[["<ns>","<line>"],..]},..]`.
pub fn streams(out: &mut Vec<u8>, streams: &Streams) {
    out.push(b'[');
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":");
        labels(out, &s.labels);
        out.extend_from_slice(b",\"values\":[");
        for (j, e) in s.entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"[\"");
            out.extend_from_slice(e.timestamp_ns.to_string().as_bytes());
            out.extend_from_slice(b"\",");
            string(out, &String::from_utf8_lossy(&e.line));
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
}

/// A `matrix` result: `[{"metric":{..},"values":[[<s>,"<v>"],..]},..]`.
pub fn matrix(out: &mut Vec<u8>, m: &Matrix) {
    out.push(b'[');
    for (i, s) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"metric\":");
        labels(out, &s.labels);
        out.extend_from_slice(b",\"values\":[");
        for (j, (t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            point(out, *t, *v);
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
}

/// A `vector` result: `[{"metric":{..},"value":[<s>,"<v>"]},..]`.
pub fn vector(out: &mut Vec<u8>, samples: &[Sample]) {
    out.push(b'[');
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"metric\":");
        labels(out, &s.labels);
        out.extend_from_slice(b",\"value\":");
        point(out, s.timestamp_ns, s.value);
        out.push(b'}');
    }
    out.push(b']');
}

/// A `scalar` result: `[<s>,"<v>"]`.
pub fn scalar(out: &mut Vec<u8>, ns: i64, v: f64) {
    point(out, ns, v);
}

/// `{"status":"success","data":{"resultType":..,"result":<result>,"stats":<stats>}}`,
/// with `result` already written as JSON text, and Loki's `encodingFlags`
/// when `flags` has any.
pub fn success(result_type: &str, result: &[u8], stats: &Value, flags: &[&str]) -> Response {
    let mut body = Vec::with_capacity(result.len() + 512);
    body.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":");
    string(&mut body, result_type);
    body.extend_from_slice(b",\"result\":");
    body.extend_from_slice(result);
    body.extend_from_slice(b",\"stats\":");
    let _ = serde_json::to_writer(&mut body, stats);
    if !flags.is_empty() {
        body.extend_from_slice(b",\"encodingFlags\":");
        let _ = serde_json::to_writer(&mut body, flags);
    }
    body.extend_from_slice(b"}}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logql::{Series, Stream, StreamEntry};

    /// The bytes written are the JSON the `Value` tree gave before.
    #[test]
    fn written_text_is_lokis_json() {
        let l: Labels = [("app", "a\"b"), ("z", "ü")].into_iter().collect();
        let mut out = Vec::new();
        streams(
            &mut out,
            &vec![Stream {
                labels: l.clone(),
                entries: vec![StreamEntry {
                    timestamp_ns: 5,
                    line: b"x\ny\xff".to_vec(),
                    structured_metadata: None,
                    parsed: None,
                }],
            }],
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"stream": {"app": "a\"b", "z": "ü"}, "values": [["5", "x\ny\u{fffd}"]]}])
        );
        let mut out = Vec::new();
        matrix(
            &mut out,
            &vec![Series {
                labels: l.clone(),
                points: vec![(1_500_000_000, 2.0), (3_000_000_000, f64::NAN)],
            }],
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"metric": {"app": "a\"b", "z": "ü"}, "values": [[1.5, "2"], [3.0, "NaN"]]}])
        );
        let mut out = Vec::new();
        vector(
            &mut out,
            &[Sample {
                labels: Labels::new(),
                timestamp_ns: 1_000_000_000,
                value: f64::INFINITY,
            }],
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!([{"metric": {}, "value": [1.0, "+Inf"]}]));
    }
}
