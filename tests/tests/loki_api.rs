//! Issue 6: Loki's read API as Grafana's Loki data source calls it (health
//! check, logs query, logs volume, label browser, series, stats, live
//! tail), over the corpus loaded as eight sources; every answer is checked
//! field by field against Loki's documented shapes, and its content
//! against a computation over the same files made here. Bad queries get
//! a 400 naming the problem.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logpost_e2e::corpus::{LINE_SPACING_MS, Loaded, load};
use logpost_e2e::process::Collector;
use logpost_e2e::{PATIENCE, wait_for};
use serde_json::Value;

const NS: i64 = 1_000_000;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// GET with query pairs; (status, body).
fn get(c: &Collector, path: &str, params: &[(&str, String)]) -> (u16, String) {
    let qs: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}{path}?{}", c.url, qs.join("&")))
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

fn ok_json(c: &Collector, path: &str, params: &[(&str, String)]) -> Value {
    let (status, body) = get(c, path, params);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// `{"status":"success","data":...}` → data.
fn data(v: &Value) -> &Value {
    assert_eq!(v["status"], "success", "{v}");
    &v["data"]
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    c: Collector,
    files: Vec<Loaded>,
    base_ms: i64,
    end_ms: i64,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    // Twenty minutes ago, so that Grafana-style "last hour" ranges hold it.
    let base_ms = (now_ms() - 20 * 60_000) / 1000 * 1000;
    let files = load(&c.url, "corpus", base_ms);
    let longest = files.iter().map(|f| f.lines.len() as i64).max().unwrap();
    // Whole minutes after the base, so that 60 s steps from the base end
    // on a step at or after the last line (a step at t counts (t-1m, t]).
    let end_ms = base_ms + (longest * LINE_SPACING_MS + 59_999) / 60_000 * 60_000;
    Fixture {
        _tmp: tmp,
        c,
        files,
        base_ms,
        end_ms,
    }
}

fn range(f: &Fixture) -> [(&'static str, String); 2] {
    [
        ("start", (f.base_ms * NS).to_string()),
        ("end", (f.end_ms * NS).to_string()),
    ]
}

#[test]
fn issue_6_loki_api_contract_as_grafana_calls_it() {
    let f = fixture();
    let c = &f.c;

    // Health check: the instant query `vector(1)+vector(1)` answers 2.
    let v = ok_json(
        c,
        "/loki/api/v1/query",
        &[
            ("query", "vector(1)+vector(1)".into()),
            ("time", (now_ms() * NS).to_string()),
        ],
    );
    let d = data(&v);
    assert_eq!(d["resultType"], "vector");
    let r = d["result"].as_array().unwrap();
    assert_eq!(r.len(), 1);
    assert!(r[0]["metric"].as_object().unwrap().is_empty());
    assert!(r[0]["value"][0].is_number(), "{v}");
    assert_eq!(r[0]["value"][1], "2");

    // Explore logs query: streams, newest first, limit honoured.
    let source = "OpenSSH";
    let needle = "Failed password";
    let mut want: Vec<(i64, String)> = f
        .files
        .iter()
        .find(|l| l.source == source)
        .unwrap()
        .lines
        .iter()
        .filter(|(_, l)| l.contains(needle))
        .cloned()
        .collect();
    want.reverse();
    assert!(want.len() > 50, "the corpus must have enough matches");
    want.truncate(50);
    let [start, end] = range(&f);
    let v = ok_json(
        c,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                format!(r#"{{topic="corpus", source="{source}"}} |= "{needle}""#),
            ),
            start.clone(),
            end.clone(),
            ("limit", "50".into()),
            ("direction", "backward".into()),
        ],
    );
    let d = data(&v);
    assert_eq!(d["resultType"], "streams");
    assert!(d["stats"]["summary"]["execTime"].is_number());
    let mut got: Vec<(i64, String)> = Vec::new();
    for s in d["result"].as_array().unwrap() {
        let labels = labels_of(&s["stream"]);
        assert_eq!(labels.get("source").map(String::as_str), Some(source));
        assert_eq!(labels.get("topic").map(String::as_str), Some("corpus"));
        for pair in s["values"].as_array().unwrap() {
            let ts: i64 = pair[0].as_str().unwrap().parse().unwrap();
            got.push((ts / NS, pair[1].as_str().unwrap().to_owned()));
        }
    }
    got.sort_by_key(|a| std::cmp::Reverse(a.0));
    assert_eq!(got, want);

    // Logs volume: a matrix of counts per source; totals equal line counts.
    let v = ok_json(
        c,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                r#"sum by (source) (count_over_time({topic="corpus"}[1m]))"#.into(),
            ),
            start.clone(),
            end.clone(),
            ("step", "60".into()),
        ],
    );
    let d = data(&v);
    assert_eq!(d["resultType"], "matrix");
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for s in d["result"].as_array().unwrap() {
        let labels = labels_of(&s["metric"]);
        assert_eq!(labels.len(), 1, "{labels:?}");
        let mut last_t = f64::MIN;
        for p in s["values"].as_array().unwrap() {
            let t = p[0].as_f64().unwrap();
            assert!(t > last_t, "points in time order");
            last_t = t;
            *totals.entry(labels["source"].clone()).or_default() += p[1].as_str().unwrap().parse::<f64>().unwrap();
        }
    }
    let want: BTreeMap<String, f64> = f
        .files
        .iter()
        .map(|l| (l.source.clone(), l.lines.len() as f64))
        .collect();
    assert_eq!(totals, want);

    // Label browser.
    let names = ok_json(c, "/loki/api/v1/labels", &[start.clone(), end.clone()]);
    let names: BTreeSet<&str> = data(&names)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["source", "topic"]));
    let values = ok_json(c, "/loki/api/v1/label/source/values", &[start.clone(), end.clone()]);
    let values: Vec<&str> = data(&values)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let sources: Vec<&str> = f.files.iter().map(|l| l.source.as_str()).collect();
    assert_eq!(values, sources);

    // Series.
    let v = ok_json(
        c,
        "/loki/api/v1/series",
        &[
            ("match[]", r#"{topic="corpus", source=~"HDFS|Spark"}"#.into()),
            start.clone(),
            end.clone(),
        ],
    );
    let series: Vec<BTreeMap<String, String>> = data(&v).as_array().unwrap().iter().map(labels_of).collect();
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(series[0]["source"], "HDFS");
    assert_eq!(series[1]["source"], "Spark");

    // Index stats (Grafana's query size estimate).
    let v = ok_json(
        c,
        "/loki/api/v1/index/stats",
        &[("query", r#"{topic="corpus"}"#.into()), start.clone(), end.clone()],
    );
    assert_eq!(v["streams"], 8);
    let lines: usize = f.files.iter().map(|l| l.lines.len()).sum();
    assert_eq!(v["entries"].as_u64().unwrap() as usize, lines);
    let bytes: usize = f.files.iter().flat_map(|l| &l.lines).map(|(_, l)| l.len()).sum();
    assert_eq!(v["bytes"].as_u64().unwrap() as usize, bytes);
    assert!(v["chunks"].as_u64().unwrap() >= 1);

    let v = ok_json(c, "/loki/api/v1/status/buildinfo", &[]);
    assert!(v["version"].as_str().unwrap().starts_with('3'), "{v}");

    // Grafana probes v2alpha tail and must not get a 400.
    let (status, _) = get(c, "/loki/api/v2alpha/tail", &[("query", r#"{topic="corpus"}"#.into())]);
    assert_ne!(status, 400);

    // Bad queries: 400 naming the position and the problem.
    let bad = [
        (r#"{topic="corpus"} |= "x" | "#, "line 1, col"),
        (r#"{topic="corpus"} |~ "(unclosed""#, "regex"),
        (r#"{topic="nope"}"#, "unknown topic \"nope\""),
        (r#"sum(rate({topic="corpus"}[1m])"#, "line 1, col"),
    ];
    for (q, needle) in bad {
        let (status, body) = get(
            c,
            "/loki/api/v1/query_range",
            &[("query", q.into()), start.clone(), end.clone()],
        );
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.contains(needle), "{q}: {body:?} should mention {needle:?}");
    }
    let (status, body) = get(
        c,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{topic="corpus"}"#.into()),
            ("start", end.1.clone()),
            ("end", start.1.clone()),
        ],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("end") && body.contains("before start"), "{body}");
}

/// Reads tail messages until `n` entries arrived (or a deadline), as
/// (ts_ns, line).
fn read_tail(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    n: usize,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    wait_for("tail entries", PATIENCE, || {
        let text = match ws.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(_) => return None,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                return None;
            }
            Err(e) => panic!("tail connection failed: {e}"),
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("dropped_entries").is_some(), "{v}");
        for s in v["streams"].as_array().unwrap() {
            assert!(s["stream"].is_object());
            for p in s["values"].as_array().unwrap() {
                out.push((
                    p[0].as_str().unwrap().parse().unwrap(),
                    p[1].as_str().unwrap().to_owned(),
                ));
            }
        }
        (out.len() >= n).then_some(())
    });
    out
}

#[test]
fn issue_6_live_tail_sees_each_new_line_once_across_a_reconnect() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    let client = reqwest::blocking::Client::new();
    let post = |from: usize, to: usize| {
        let lines: Vec<String> = (from..to).map(|i| format!("tail line {i:05}")).collect();
        // One millisecond apart, later than anything before.
        let ts = now_ms() + from as i64;
        logpost_e2e::ingest::post(&client, &c.url, "live", logpost_e2e::ingest::batch(&lines, ts)).unwrap();
    };
    post(0, 1); // the topic exists before the tail starts
    let tail_url = |start_ns: i64| {
        format!(
            "ws://{}/loki/api/v1/tail?query={}&start={start_ns}&limit=1000",
            c.addr,
            enc(r#"{topic="live"} |= "tail line""#)
        )
    };
    let connect = |url: String| {
        let (ws, _) = tungstenite::connect(url).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            // Lets `read_tail` give up on a silent server instead of hanging.
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        }
        ws
    };
    let mut ws = connect(tail_url(0));
    let first = read_tail(&mut ws, 1);
    assert_eq!(first.len(), 1);
    post(1, 200);
    let mut seen = first;
    seen.extend(read_tail(&mut ws, 199));
    drop(ws);
    // Reconnect from just after the last timestamp seen, then more lines.
    let last_ns = seen.iter().map(|(t, _)| *t).max().unwrap();
    let mut ws = connect(tail_url(last_ns + 1));
    post(200, 400);
    seen.extend(read_tail(&mut ws, 200));
    let lines: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
    let want: Vec<String> = (0..400).map(|i| format!("tail line {i:05}")).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want, "every line exactly once");
}
