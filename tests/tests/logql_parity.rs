//! Issue 32: LogQL as Loki's own tests use it, against a real collector
//! through Loki's API: `ip()` filters, comparisons of scalars, pattern
//! filters without a literal, `label_replace` to an empty label,
//! structured metadata per entry (pushed as Fluent Bit's `loki` output
//! sends it: the JSON value's third element), and errors that name the
//! problem. Expected values are Loki's where its tests give them.
//!
//! `issue_32_loki_parser_corpus` runs a corpus of query strings taken from
//! Loki's test suite (not kept in this repository: its path comes from
//! `LOGPOST_LOKI_CORPUS`, see docs/logql.md) and is ignored without one.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logpost_e2e::process::Collector;
use logpost_e2e::{PATIENCE, http, wait_for};
use serde_json::{Value, json};

const NS_PER_MS: i64 = 1_000_000;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Percent-encodes every byte but unreserved ones.
fn enc(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    c: Collector,
    start_ns: i64,
    end_ns: i64,
}

/// A collector holding two pushed streams; `web` has structured metadata
/// on two of its three entries.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "[loki]\ndefault_topic = \"loki\"\n");
    let base_ms = now_ms() - 5 * 60_000;
    let ts = |offset_ms: i64| ((base_ms + offset_ms) * NS_PER_MS).to_string();
    // As Fluent Bit's `loki` output sends it: JSON, metadata third.
    let body = json!({"streams": [
        {"stream": {"app": "web", "env": "prod"}, "values": [
            [ts(1000), A, {"trace_id": "t1", "region": "eu"}],
            [ts(2000), B, {"trace_id": "t2"}],
            [ts(3000), C],
        ]},
        {"stream": {"app": "db", "env": "prod"}, "values": [
            [ts(1500), DB, {"env": "canary"}],
        ]},
    ]});
    let resp = http()
        .post(format!("{}/loki/api/v1/push", c.url))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().unwrap());
    let f = Fixture {
        _tmp: tmp,
        c,
        start_ns: (base_ms - 60_000) * NS_PER_MS,
        end_ns: (base_ms + 60_000) * NS_PER_MS,
    };
    wait_for("the pushed entries", PATIENCE, || {
        (entries(&f, r#"{app=~"web|db"}"#).len() == 4).then_some(())
    });
    f
}

/// GET `path` with `query` (raw bytes) and the fixture's range; (status, body).
fn get(f: &Fixture, path: &str, query: &[u8], extra: &str, header: Option<(&str, &str)>) -> (u16, String) {
    let url = format!(
        "{}{path}?query={}&start={}&end={}&limit=100{extra}",
        f.c.url,
        enc(query),
        f.start_ns,
        f.end_ns
    );
    let mut req = http().get(url).timeout(Duration::from_secs(60));
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

fn ok(f: &Fixture, path: &str, query: &str, header: Option<(&str, &str)>) -> Value {
    let (status, body) = get(f, path, query.as_bytes(), "", header);
    assert_eq!(status, 200, "{query}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"].clone()
}

/// Lines a log query returns, sorted.
fn entries(f: &Fixture, query: &str) -> Vec<String> {
    let d = ok(f, "/loki/api/v1/query_range", query, None);
    let mut lines: Vec<String> = d["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|v| v[1].as_str().unwrap().to_owned())
        .collect();
    lines.sort();
    lines
}

/// `(series labels, value)` of a metric query at the end of the range.
fn instant(f: &Fixture, query: &str) -> Vec<(BTreeMap<String, String>, String)> {
    let (status, body) = get(
        f,
        "/loki/api/v1/query",
        query.as_bytes(),
        &format!("&time={}", f.end_ns),
        None,
    );
    assert_eq!(status, 200, "{query}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let d = &v["data"];
    if d["resultType"] == "scalar" {
        return vec![(BTreeMap::new(), d["result"][1].as_str().unwrap().to_owned())];
    }
    d["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (labels, s["value"][1].as_str().unwrap().to_owned())
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The 400 body of a query that must be refused.
fn refused(f: &Fixture, query: &[u8]) -> String {
    let (status, body) = get(f, "/loki/api/v1/query_range", query, "", None);
    assert_eq!(status, 400, "{}: {body}", String::from_utf8_lossy(query));
    body
}

const A: &str = "method=GET path=/a client=192.168.1.10 status=200";
const B: &str = "method=GET path=/b client=10.0.0.5 status=500";
const C: &str = "method=POST path=/c client=::1 status=404";
const DB: &str = r#"msg="slow query" took=1.5s client=10.1.2.3"#;

#[test]
fn issue_32_loki_constructs_run_with_lokis_answers() {
    let f = fixture();
    // ip() on lines: an address, a CIDR prefix, a range, IPv6, negated.
    assert_eq!(entries(&f, r#"{app="web"} |= ip("192.168.0.0/16")"#), [A]);
    assert_eq!(entries(&f, r#"{app="web"} != ip("192.168.0.0/16")"#), [B, C]);
    assert_eq!(entries(&f, r#"{app="web"} |= ip("10.0.0.1-10.0.0.9")"#), [B]);
    assert_eq!(entries(&f, r#"{app="web"} |= ip("::1")"#), [C]);
    assert_eq!(entries(&f, r#"{app="web"} |= "POST" or ip("10.0.0.5")"#), [B, C]);
    // ip() on labels.
    assert_eq!(
        entries(&f, r#"{app=~"web|db"} | logfmt | client = ip("10.0.0.0/8")"#),
        [B, DB]
    );
    assert_eq!(
        entries(
            &f,
            r#"{app=~"web|db"} | regexp `client=(?P<ip>\S+)` | ip != ip("10.0.0.0/8")"#
        ),
        [A, C]
    );
    assert_eq!(
        entries(&f, r#"{app="web"} | logfmt | status != ip("1.2.3.4")"#),
        [A, B, C]
    );
    // Pattern filters without a literal: "<_>" passes every non-empty
    // line, an empty pattern only the empty one.
    assert_eq!(entries(&f, r#"{app="web"} |> "<_>""#), [A, B, C]);
    assert_eq!(entries(&f, r#"{app="web"} !> """#), [A, B, C]);
    assert_eq!(entries(&f, r#"{app="web"} |> """#), Vec::<String>::new());
    assert_eq!(
        entries(&f, r#"{app="web"} |> "<_> client=<_> <_>" !> "method=GET <_>""#),
        [C]
    );
    // Comparisons of scalars are 1 or 0 (Loki folds them; `bool` optional).
    assert_eq!(instant(&f, "1 > 1"), [(labels(&[]), "0".to_owned())]);
    assert_eq!(instant(&f, "1 == 1"), [(labels(&[]), "1".to_owned())]);
    assert_eq!(instant(&f, "1 > 1 > bool 1"), [(labels(&[]), "0".to_owned())]);
    // label_replace to an empty label leaves the series alone.
    assert_eq!(
        instant(
            &f,
            r#"label_replace(sum by (app) (count_over_time({app="web"}[10m])), "", "", "", "")"#
        ),
        [(labels(&[("app", "web")]), "3".to_owned())]
    );
}

#[test]
fn issue_32_structured_metadata_is_the_entrys() {
    let f = fixture();
    // Not a stream label: not in /labels, label values or series.
    let names = ok(&f, "/loki/api/v1/labels", "", None);
    let names: Vec<&str> = names.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(names.contains(&"app") && names.contains(&"env"), "{names:?}");
    assert!(!names.contains(&"trace_id") && !names.contains(&"region"), "{names:?}");
    let values = ok(&f, "/loki/api/v1/label/trace_id/values", "", None);
    assert_eq!(values, json!([]));
    let (status, body) = get(&f, "/loki/api/v1/series", b"", "&match[]=%7Bapp%3D%22web%22%7D", None);
    assert_eq!(status, 200, "{body}");
    let series: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(series["data"], json!([{"app": "web", "env": "prod", "topic": "loki"}]));
    // The selector sees stream labels only; label filters see metadata.
    let (status, body) = get(
        &f,
        "/loki/api/v1/query_range",
        br#"{app="web", trace_id="t2"}"#,
        "",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""result":[]"#), "{body}");
    assert_eq!(entries(&f, r#"{app="web"} | trace_id="t2""#), [B]);
    assert_eq!(entries(&f, r#"{app="web"} | region="""#), [B, C]);
    // A metadata name the stream has goes to `<name>_extracted`.
    assert_eq!(
        instant(&f, r#"sum by (env, env_extracted) (count_over_time({app="db"}[10m]))"#),
        [(labels(&[("env", "prod"), ("env_extracted", "canary")]), "1".to_owned())]
    );
    assert_eq!(
        instant(&f, r#"sum by (region) (count_over_time({app="web"}[10m]))"#),
        [
            (labels(&[]), "2".to_owned()),
            (labels(&[("region", "eu")]), "1".to_owned())
        ]
    );

    // Loki 3's categorized labels: the stream keeps its own labels, each
    // entry says what its metadata and parsed labels are.
    let d = ok(
        &f,
        "/loki/api/v1/query_range",
        r#"{app="web"} | logfmt"#,
        Some(("X-Loki-Response-Encoding-Flags", "categorize-labels")),
    );
    assert_eq!(d["encodingFlags"], json!(["categorize-labels"]));
    let result = d["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{d}");
    assert_eq!(
        result[0]["stream"],
        json!({"app": "web", "env": "prod", "topic": "loki"})
    );
    let values = result[0]["values"].as_array().unwrap();
    let by_line: BTreeMap<&str, &Value> = values.iter().map(|v| (v[1].as_str().unwrap(), &v[2])).collect();
    let parsed = |path: &str, client: &str, status: &str, method: &str| json!({"method": method, "path": path, "client": client, "status": status});
    assert_eq!(
        by_line[A],
        &json!({"structuredMetadata": {"trace_id": "t1", "region": "eu"},
                "parsed": parsed("/a", "192.168.1.10", "200", "GET")})
    );
    assert_eq!(
        by_line[B],
        &json!({"structuredMetadata": {"trace_id": "t2"}, "parsed": parsed("/b", "10.0.0.5", "500", "GET")})
    );
    assert_eq!(by_line[C], &json!({"parsed": parsed("/c", "::1", "404", "POST")}));
    // Newest first, as asked (backward is the default).
    let times: Vec<i64> = values.iter().map(|v| v[0].as_str().unwrap().parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    // Without the header, labels are flat, as in Loki.
    let d = ok(&f, "/loki/api/v1/query_range", r#"{app="web"} | trace_id="t1""#, None);
    assert_eq!(
        d["result"][0]["stream"],
        json!({"app": "web", "env": "prod", "topic": "loki", "trace_id": "t1", "region": "eu"})
    );
    assert!(d.get("encodingFlags").is_none(), "{d}");
}

#[test]
fn issue_32_errors_name_the_problem() {
    let f = fixture();
    let cases: &[(&[u8], &str)] = &[
        (
            br#"coutn_over_time({app="web"}[5m])"#,
            r#"unknown function "coutn_over_time"; did you mean count_over_time?"#,
        ),
        (
            br#"{app="web"} | distinct level"#,
            r#"unknown pipeline stage "distinct""#,
        ),
        (
            br#"{app="web"} | logfmt | status > 0x10"#,
            "hexadecimal numbers are not supported",
        ),
        (b"{app=~\"\xa0\xa1\"}", "invalid UTF-8 encoding"),
        (
            br#"max_over_time({app="web"}[10m:1m])"#,
            "subqueries ([10m:1m]) are not supported",
        ),
        (br#"{app="web"} |~ ip("10.0.0.1")"#, "ip: invalid operation"),
        (
            br#"{app="web"} | logfmt | addr = ip("10.0.0")"#,
            r#"ip: invalid pattern: "10.0.0""#,
        ),
        (
            br#"approx_topk(2, count_over_time({app="web"}[5m]))"#,
            "approx_topk is not supported",
        ),
    ];
    for (query, needle) in cases {
        let body = refused(&f, query);
        assert!(body.contains(needle), "{}: {body}", String::from_utf8_lossy(query));
    }
    // Bad values for `unwrap duration()` say so.
    let (status, body) = get(
        &f,
        "/loki/api/v1/query",
        br#"sum_over_time({app="db"} | logfmt | unwrap duration(client) [10m])"#,
        &format!("&time={}", f.end_ns),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#"cannot convert \"10.1.2.3\" to a duration"#), "{body}");
}

/// One line of the corpus: `{"query": "...", "loki": "ok" | "parse_error" |
/// "run_error", "source": "..."}`; `query_hex` instead of `query` for a
/// query that is not UTF-8.
fn corpus_query(v: &Value) -> Vec<u8> {
    match (v["query"].as_str(), v["query_hex"].as_str()) {
        (Some(q), _) => q.as_bytes().to_vec(),
        (None, Some(hex)) => (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect(),
        _ => panic!("corpus line without a query: {v}"),
    }
}

#[test]
#[ignore = "needs LOGPOST_LOKI_CORPUS: a JSON-lines file of Loki's test queries (docs/logql.md)"]
fn issue_32_loki_parser_corpus() {
    let path = std::env::var("LOGPOST_LOKI_CORPUS").expect("LOGPOST_LOKI_CORPUS names the corpus file");
    let text = std::fs::read_to_string(&path).unwrap();
    let f = fixture();
    let (mut answered, mut failures, mut counts) = (0, Vec::new(), BTreeMap::<String, usize>::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let query = corpus_query(&v);
        let loki = v["loki"].as_str().unwrap_or("ok").to_owned();
        *counts.entry(loki.clone()).or_default() += 1;
        let (status, body) = get(&f, "/loki/api/v1/query_range", &query, "&step=60", None);
        assert!(status < 500, "{}: {status} {body}", String::from_utf8_lossy(&query));
        let expected_ok = loki == "ok";
        if (status == 200) != expected_ok {
            failures.push(format!(
                "{} ({}): Loki {loki}, logpost {status} {}",
                String::from_utf8_lossy(&query),
                v["source"],
                body.trim()
            ));
        }
        answered += usize::from(status == 200);
    }
    eprintln!("corpus {path}: {counts:?}, {answered} answered 200");
    assert!(
        failures.is_empty(),
        "{} differ from Loki:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
