//! Issue 28: what an adversarial probe of the collector found, each defect
//! reproduced against the real process. Memory is measured from
//! /proc/<pid>/status and asserted only against bounds a broken build
//! clearly exceeds; nothing here asserts timing. docs/hostile-input.md
//! lists every hostile input these tests try and what it gets.

use std::io::Write;

use logpost_e2e::ingest::BATCH_CONTENT_TYPE;
use logpost_e2e::kafka::{batch as kafka_batch, connect, init_producer_id, produce_result, produce_v3, response};
use logpost_e2e::process::Collector;

/// Posts `body` to `/v1/ingest/{topic}`: (status, the batches' outcomes).
fn ingest(url: &str, topic: &str, body: Vec<u8>) -> (u16, Vec<String>, String) {
    let resp = logpost_e2e::http()
        .post(format!("{url}/v1/ingest/{topic}"))
        .header("content-type", BATCH_CONTENT_TYPE)
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let outcomes = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v["batches"].as_array().map(|b| {
                b.iter()
                    .map(|b| b["outcome"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
        })
        .unwrap_or_default();
    (status, outcomes, text)
}

fn text_lines(c: &Collector, topic: &str) -> Vec<String> {
    c.lines(topic)
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect()
}

/// Defect 4: a producer's sequence wraps from 2^31-1 to 0 in the same
/// epoch (Kafka's rule). The batch after the wrap was answered "duplicate"
/// (DUPLICATE_SEQUENCE_NUMBER over Kafka, which clients take as stored)
/// and dropped, and every later batch of the producer with it.
#[test]
fn issue_28_sequence_wraparound_over_http_and_kafka() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[topics.wrap]\npartitions = 1\n[topics.kwrap]\npartitions = 1\n",
    );
    let near_end = i32::MAX - 2;
    // HTTP: producer 77 sends its last three sequences, then wraps.
    for (prefix, count, base, want) in [
        ("end", 3, near_end, "appended"),
        ("wrapped", 2, 0, "appended"),
        ("after", 1, 2, "appended"),
        // The retry of the batch before the wrap is still a duplicate.
        ("end", 3, near_end, "duplicate"),
    ] {
        let (status, outcomes, text) = ingest(&c.url, "wrap", kafka_batch(prefix, count, 1000, 77, 0, base));
        assert_eq!((status, outcomes), (200, vec![want.to_owned()]), "{prefix}: {text}");
    }
    assert_eq!(
        text_lines(&c, "wrap"),
        ["end-0", "end-1", "end-2", "wrapped-0", "wrapped-1", "after-0"]
    );
    // Kafka: an idempotent producer does the same over the wire.
    let mut s = connect(c.kafka());
    let (pid, epoch) = init_producer_id(&mut s, 1);
    let steps = [("end", 3, near_end), ("wrapped", 2, 0), ("after", 1, 2)];
    for (i, (prefix, count, base)) in steps.into_iter().enumerate() {
        let corr = 10 + i32::try_from(i).unwrap();
        s.write_all(&produce_v3(
            corr,
            -1,
            "kwrap",
            0,
            &kafka_batch(prefix, count, 1000, pid, epoch, base),
        ))
        .unwrap();
        let (_, mut r) = response(&mut s);
        let (error, _) = produce_result(&mut r);
        assert_eq!(error, 0, "{prefix}: Kafka error code {error}");
    }
    assert_eq!(
        text_lines(&c, "kwrap"),
        ["end-0", "end-1", "end-2", "wrapped-0", "wrapped-1", "after-0"]
    );
}

/// Peak and current resident memory of a process, from /proc (kB).
pub(crate) fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn peak_kb(c: &Collector) -> u64 {
    memory_kb(c.proc.child.id()).0
}

/// Percent-encodes a query parameter.
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

/// GET with query pairs: (status, body).
pub(crate) fn get(c: &Collector, path: &str, params: &[(&str, String)]) -> (u16, String) {
    let qs: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    let resp = logpost_e2e::http()
        .get(format!("{}{path}?{}", c.url, qs.join("&")))
        .timeout(std::time::Duration::from_secs(300))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Posts `lines` to `topic` with timestamps from `ts_ms`, `step_ms` apart.
pub(crate) fn post_lines(c: &Collector, topic: &str, lines: &[String], ts_ms: i64, step_ms: i64) {
    let mut b = logpost_shared::batch::BatchBuilder::new();
    for (i, l) in lines.iter().enumerate() {
        b.append(
            ts_ms + i64::try_from(i).unwrap() * step_ms,
            None,
            Some(l.as_bytes()),
            &[],
        );
    }
    let body = b
        .finish(logpost_shared::compression::Compression::Gzip { level: 1 })
        .unwrap();
    let (status, _, text) = ingest(&c.url, topic, body);
    assert_eq!(status, 200, "{text}");
}

const MB: u64 = 1024;

/// Defect 1: each `line_format "{{__line__}}{{__line__}}"` doubles the
/// line; 24 of them made one 16-byte line 256 MiB (30 aborted the
/// process). A stage's output is now capped (`query.max_line_bytes`): the
/// line is kept as it was and marked with Loki's `TemplateFormatErr`.
#[test]
fn issue_28_doubling_line_format_is_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    post_lines(&c, "amp", &["0123456789abcdef".to_owned()], now_ms() - 60_000, 1);
    let before = peak_kb(&c);
    let query = format!("amp{}", r#" | line_format "{{__line__}}{{__line__}}""#.repeat(24));
    let (status, body) = get(
        &c,
        "/loki/api/v1/query_range",
        &[
            ("query", query),
            ("limit", "1".into()),
            ("start", "0".into()),
            ("direction", "backward".into()),
        ],
    );
    let after = peak_kb(&c);
    eprintln!("collector VmHWM {before} kB before the query, {after} kB after");
    assert_eq!(status, 200, "{}", &body[..body.len().min(500)]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stream = &v["data"]["result"][0];
    assert_eq!(
        stream["stream"]["__error__"], "TemplateFormatErr",
        "{}",
        stream["stream"]
    );
    let details = stream["stream"]["__error_details__"].as_str().unwrap();
    assert!(details.contains("query.max_line_bytes"), "{details}");
    let line = stream["values"][0][1].as_str().unwrap();
    assert!(line.len() <= 8 << 20, "the line grew to {} bytes", line.len());
    assert!(after < before + 200 * MB, "VmHWM grew from {before} kB to {after} kB");
}

/// Defect 2: a metric query cost about 900 bytes per point (a grouping key
/// allocated per series and step, a JSON tree per point): 60 series over
/// 10,001 steps took 509 MB. Points are now cheap, and capped
/// (`query.max_points`).
#[test]
fn issue_28_metric_query_memory_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    let month_ms: i64 = 30 * 86_400_000;
    let end_ms = now_ms();
    let start_ms = end_ms - month_ms;
    let lines: Vec<String> = (0..2000).map(|i| format!("id={i} msg=card")).collect();
    for (n, chunk) in lines.chunks(200).enumerate() {
        let from = start_ms + 60_000 + i64::try_from(n).unwrap() * 200 * (month_ms / 2100);
        post_lines(&c, "card", chunk, from, month_ms / 2100);
    }
    let before = peak_kb(&c);
    let metric = |n: usize| {
        get(
            &c,
            "/loki/api/v1/query_range",
            &[
                (
                    "query",
                    format!("sum by (id) (count_over_time(card | logfmt | id < {n} [30d]))"),
                ),
                ("start", (start_ms * 1_000_000).to_string()),
                ("end", (end_ms * 1_000_000).to_string()),
                ("step", "259.2".into()),
            ],
        )
    };
    let (status, body) = metric(60);
    let after = peak_kb(&c);
    eprintln!("collector VmHWM {before} kB before, {after} kB after 60 series x 10,001 steps");
    assert_eq!(status, 200, "{}", &body[..body.len().min(500)]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 60);
    let points: usize = series.iter().map(|s| s["values"].as_array().unwrap().len()).sum();
    assert!(points > 60 * 9000, "{points} points");
    assert!(after < before + 150 * MB, "VmHWM grew from {before} kB to {after} kB");
    // 120 series x 10,001 steps is past the points budget: refused, named.
    let (status, body) = metric(120);
    assert_eq!(status, 400, "{}", &body[..body.len().min(500)]);
    assert!(body.contains("query.max_points"), "{body}");
    let last = peak_kb(&c);
    assert!(last < before + 150 * MB, "VmHWM grew from {before} kB to {last} kB");
}

/// Defect 3: produce requests pipelined with acks=0 were read as fast as
/// they came, whatever was still being written (450 of 1 MiB took 454 MB).
/// Requests now hold the listener's in-flight budget
/// (`kafka.max_in_flight_bytes`) until their appends are done, and acks=0
/// ones count against the connection's 64 requests in flight.
#[test]
fn issue_28_kafka_pipelined_produce_memory_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[topics.flood]\npartitions = 1\n",
    );
    let mut b = logpost_shared::batch::BatchBuilder::new();
    let value: Vec<u8> = (0..64 * 1024)
        .map(|i: usize| b'a' + u8::try_from(i % 26).unwrap())
        .collect();
    for i in 0..16 {
        b.append(now_ms() + i, None, Some(&value), &[]);
    }
    let records = b.finish(logpost_shared::compression::Compression::None).unwrap();
    assert!(records.len() > 1 << 20);
    let mut s = connect(c.kafka());
    let before = peak_kb(&c);
    let requests = 1000;
    for i in 0..requests {
        s.write_all(&produce_v3(i, 0, "flood", 0, &records)).unwrap();
    }
    // Answered only once every produce before it was taken in.
    s.write_all(&logpost_e2e::kafka::metadata_v1(requests)).unwrap();
    assert_eq!(response(&mut s).0, requests);
    let after = peak_kb(&c);
    eprintln!("collector VmHWM {before} kB before {requests} pipelined 1 MiB produces, {after} kB after");
    assert!(after < before + 400 * MB, "VmHWM grew from {before} kB to {after} kB");
    logpost_e2e::wait_for("every acks=0 batch to be stored", logpost_e2e::PATIENCE, || {
        let (_, body) = get(&c, "/v1/topics/flood", &[]);
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["records"].as_i64() == Some(16 * i64::from(requests))).then_some(())
    });
}

/// A request head, then a body of `sent` of `content_length` bytes, on
/// its own connection (kept open by the returned stream).
pub(crate) fn partial_body(addr: &str, content_length: usize, body: &[u8]) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /v1/ingest/held HTTP/1.1\r\nHost: x\r\nContent-Type: {BATCH_CONTENT_TYPE}\r\nContent-Length: {content_length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    // A write the collector stops reading (its body budget is taken) times out.
    let _ = s.write_all(body);
    s
}

/// Defect 8: request bodies were buffered before the validation limiter:
/// 40 connections each sending 8 MiB - 1 byte of an 8 MiB body took 332
/// MB. Bodies now hold the listener's in-flight budget
/// (`http.max_in_flight_bytes`) before they are read.
#[test]
fn issue_28_http_bodies_in_flight_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    let before = peak_kb(&c);
    let body = std::sync::Arc::new(vec![0u8; (8 << 20) - 1]);
    let senders: Vec<_> = (0..100)
        .map(|_| {
            let (addr, body) = (c.addr.clone(), std::sync::Arc::clone(&body));
            std::thread::spawn(move || partial_body(&addr, 8 << 20, &body))
        })
        .collect();
    let held: Vec<std::net::TcpStream> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let after = peak_kb(&c);
    eprintln!("collector VmHWM {before} kB before 100 held 8 MiB bodies, {after} kB after");
    assert!(after < before + 300 * MB, "VmHWM grew from {before} kB to {after} kB");
    let (status, _) = get(&c, "/health", &[]);
    assert_eq!(status, 200);
    drop(held);
}

/// Defect 9: `body_timeout` bounded only the gap between chunks, so a body
/// trickled at a byte every 200 ms lived as long as its Content-Length
/// allowed; 16 of them held every connection slot. Bodies must now also
/// arrive at `http.min_body_rate`, so the slots come back.
#[test]
fn issue_28_trickled_bodies_do_not_lock_everyone_out() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "[http]\nmax_connections = 16\nbody_timeout = \"2s\"\n");
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(16);
    let trickles: Vec<_> = (0..16)
        .map(|_| {
            let (addr, ready) = (c.addr.clone(), ready_tx.clone());
            std::thread::spawn(move || {
                let mut s = partial_body(&addr, 1_000_000, b"x");
                let _ = ready.send(());
                // Five bytes a second, each well within the gap timeout,
                // until the collector hangs up (or for four minutes).
                for _ in 0..1200 {
                    if s.write_all(b"x").is_err() {
                        return true;
                    }
                    logpost_e2e::pace(std::time::Duration::from_millis(200));
                }
                false
            })
        })
        .collect();
    for _ in 0..16 {
        ready_rx.recv().unwrap();
    }
    let client = logpost_e2e::http();
    logpost_e2e::wait_for(
        "/health to answer while 16 clients trickle bodies",
        logpost_e2e::PATIENCE,
        || {
            let resp = client
                .get(format!("{}/health", c.url))
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .ok()?;
            (resp.status().as_u16() == 200).then_some(())
        },
    );
    let cut = trickles
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|&cut| cut)
        .count();
    assert_eq!(cut, 16, "every trickling client was disconnected");
}

/// Defect 5: a `|~ "\\w{200}"` filter compiles to about 10 MB of program,
/// on the runtime's threads: three concurrent queries of ten such filters
/// took 265 MB and stalled `/health`. Regexes are now compiled off the
/// runtime, each within `query.max_regex_bytes`, at most
/// `query.max_regexes` per query.
#[test]
fn issue_28_regex_programs_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    post_lines(&c, "re", &["some line".to_owned()], now_ms() - 60_000, 1);
    let before = peak_kb(&c);
    let heavy = format!("re{}", r#" |~ "\\w{200}""#.repeat(10));
    let queries: Vec<_> = (0..3)
        .map(|_| {
            let (url, q) = (c.url.clone(), heavy.clone());
            std::thread::spawn(move || {
                let resp = logpost_e2e::http()
                    .get(format!("{url}/loki/api/v1/query_range?query={}&start=0", enc(&q)))
                    .timeout(std::time::Duration::from_secs(300))
                    .send()
                    .unwrap();
                (resp.status().as_u16(), resp.text().unwrap())
            })
        })
        .collect();
    for q in queries {
        let (status, body) = q.join().unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("query.max_regex_bytes"), "{body}");
    }
    let after = peak_kb(&c);
    eprintln!("collector VmHWM {before} kB before, {after} kB after three queries of ten \\w{{200}} filters");
    assert!(after < before + 100 * MB, "VmHWM grew from {before} kB to {after} kB");
    let many = format!("re{}", r#" |~ "l.ne""#.repeat(200));
    let (status, body) = get(
        &c,
        "/loki/api/v1/query_range",
        &[("query", many), ("start", "0".into())],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("query.max_regexes"), "{body}");
    // A query with a few ordinary regexes still runs.
    let (status, body) = get(
        &c,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"re |~ "some \\w+" |~ "(?i)LINE""#.into()),
            ("start", "0".into()),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("some line"), "{body}");
}

/// Defect 6: results had no byte cap: `limit=5000` over 60 lines of 1 MiB
/// held them all (277 MB), and `/v1/query direction=backward` took
/// `limit=1e9`. Log results are now capped (`query.max_result_bytes`,
/// `query.max_entries`, `query.max_backward_records`).
#[test]
fn issue_28_result_bytes_and_entries_are_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    let big = "x".repeat(1 << 20);
    for i in 0..6 {
        let lines: Vec<String> = (0..10).map(|j| format!("{i}{j}{big}")).collect();
        post_lines(&c, "big", &lines, now_ms() - 600_000 + i * 100, 1);
    }
    let before = peak_kb(&c);
    let (status, body) = get(
        &c,
        "/loki/api/v1/query_range",
        &[("query", "big".into()), ("limit", "5000".into()), ("start", "0".into())],
    );
    let after = peak_kb(&c);
    eprintln!("collector VmHWM {before} kB before, {after} kB after a query for 60 lines of 1 MiB");
    assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("query.max_result_bytes"), "{body}");
    assert!(after < before + 150 * MB, "VmHWM grew from {before} kB to {after} kB");
    // A smaller limit fits.
    let (status, body) = get(
        &c,
        "/loki/api/v1/query_range",
        &[("query", "big".into()), ("limit", "10".into()), ("start", "0".into())],
    );
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    let (status, body) = get(
        &c,
        "/v1/query",
        &[
            ("query", "big".into()),
            ("direction", "backward".into()),
            ("limit", "1000000000".into()),
        ],
    );
    assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("query.max_backward_records"), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].is_string(), "{v}");
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

pub(crate) fn tail(c: &Collector, query: &str, extra: &str) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{}/loki/api/v1/tail?query={}{extra}", c.addr, enc(query));
    let (ws, _) = tungstenite::connect(url)?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
    }
    Ok(ws)
}

/// The lines of the next tail message.
fn tail_message(ws: &mut Ws) -> Vec<String> {
    logpost_e2e::wait_for("a tail message", logpost_e2e::PATIENCE, || {
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
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut lines: Vec<(i64, String)> = Vec::new();
        for s in v["streams"].as_array().unwrap() {
            for p in s["values"].as_array().unwrap() {
                lines.push((
                    p[0].as_str().unwrap().parse().unwrap(),
                    p[1].as_str().unwrap().to_owned(),
                ));
            }
        }
        lines.sort();
        Some(lines.into_iter().map(|(_, l)| l).collect())
    })
}

/// Defect 7: a live tail with `limit=10` over 5,000 backlog entries sent
/// 10 of the oldest 1,000 first, then the 4,000 after them. Loki sends the
/// newest `limit` of the backlog, then only what arrives.
#[test]
fn issue_28_live_tail_starts_with_the_newest_backlog() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    let lines: Vec<String> = (0..5000).map(|i| format!("backlog {i:04}")).collect();
    post_lines(&c, "live", &lines, now_ms() - 60_000, 1);
    let mut ws = tail(&c, "live", "&start=0&limit=10").unwrap();
    let first = tail_message(&mut ws);
    let newest: Vec<String> = (4990..5000).map(|i| format!("backlog {i:04}")).collect();
    assert_eq!(first, newest);
    post_lines(&c, "live", &["fresh".to_owned()], now_ms(), 1);
    assert_eq!(tail_message(&mut ws), ["fresh"], "nothing of the backlog follows");
}

/// Defect 6, tails: each tail that never reads held a whole poll of
/// entries (50 tails: 348 MB). A message now holds at most 256 KiB of
/// entries, and tails at once are capped (`query.max_concurrent_tails`,
/// Loki's wording).
#[test]
fn issue_28_tails_that_never_read_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "[query]\nmax_concurrent_tails = 60\n");
    let pad = "y".repeat(4000);
    for n in 0..4 {
        let lines: Vec<String> = (0..500).map(|i| format!("{n} {i:04} {pad}")).collect();
        post_lines(&c, "wide", &lines, now_ms() - 60_000 + n * 1000, 1);
    }
    let before = peak_kb(&c);
    let tails: Vec<Ws> = (0..50)
        .map(|_| tail(&c, "wide", "&start=0&limit=5000").unwrap())
        .collect();
    // Every tail has been sent its backlog (and holds no more than that).
    logpost_e2e::wait_for("the tails to be sent their backlog", logpost_e2e::PATIENCE, || {
        let (_, body) = get(&c, "/metrics", &[]);
        body.lines()
            .find_map(|l| l.strip_prefix("logpost_collector_tail_messages_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|&n| n >= 50.0)
    });
    let after = peak_kb(&c);
    eprintln!("collector VmHWM {before} kB before 50 tails that never read, {after} kB after");
    assert!(after < before + 100 * MB, "VmHWM grew from {before} kB to {after} kB");
    let extra: Vec<_> = (0..10).map(|_| tail(&c, "wide", "&start=0")).collect();
    let refused = tail(&c, "wide", "&start=0");
    match refused {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("max concurrent tail requests limit exceeded"), "{body}");
        }
        other => panic!("the 61st tail was not refused: {:?}", other.map(|_| ())),
    }
    drop((tails, extra));
}

/// Runs `logpost-agent validate` on `config`: (exit code, stdout + stderr).
fn agent_validate(dir: &std::path::Path, config: &str) -> (i32, String) {
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(logpost_e2e::process::bin("logpost-agent"))
        .arg("--config")
        .arg(&path)
        .arg("validate")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Defect 10: `paths = ["/proc/uptime", "/proc/self/status"]` passed
/// `validate`, then shipped about 850 lines a second forever: a pseudo-file
/// reports a size that is not its content, so every read looked like a
/// truncation. Such paths are now refused by the config check, and a file
/// on a pseudo-file system reached another way (a symlink) is skipped.
#[test]
fn issue_28_agent_refuses_pseudo_files() {
    let tmp = tempfile::tempdir().unwrap();
    let config = |paths: &str| {
        format!(
            "data_dir = \"{}\"\n[collector]\nurls = [\"http://127.0.0.1:9\"]\n[[sources]]\nname = \"p\"\ntopic = \"p\"\npaths = {paths}\n",
            tmp.path().join("data").display()
        )
    };
    let (code, text) = agent_validate(tmp.path(), &config(r#"["/proc/uptime", "/sys/kernel/*"]"#));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("sources[0].paths[0]") && text.contains("/proc"), "{text}");
    assert!(text.contains("sources[0].paths[1]") && text.contains("/sys"), "{text}");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("real.log"), "a line\n").unwrap();
    std::os::unix::fs::symlink("/proc/self/status", logs.join("status.log")).unwrap();
    let (code, text) = agent_validate(tmp.path(), &config(&format!("[\"{}/*.log\"]", logs.display())));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 file(s) match now"), "{text}");
    assert!(
        text.contains("skipped") && text.contains("status.log") && text.contains("procfs"),
        "{text}"
    );
}

/// Posts a Loki JSON push with `tenant` as raw header bytes.
fn loki_json(c: &Collector, tenant: Option<&[u8]>, body: &str) -> (u16, String) {
    let mut req = logpost_e2e::http()
        .post(format!("{}/loki/api/v1/push", c.url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", reqwest::header::HeaderValue::from_bytes(t).unwrap());
    }
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

/// Defects 11 and 13: a non-ASCII tenant landed in the default topic
/// (another tenant's data), and Loki JSON pushes took label names the
/// protobuf path refuses, and streams without labels.
#[test]
fn issue_28_unroutable_pushes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[loki]\nroute_by = \"tenant\"\ndefault_topic = \"shared\"\n",
    );
    let ts = now_ms() * 1_000_000;
    let push = |labels: &str| format!(r#"{{"streams":[{{"stream":{labels},"values":[["{ts}","x"]]}}]}}"#);
    let (status, body) = loki_json(&c, Some("ülog".as_bytes()), &push(r#"{"job":"a"}"#));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("X-Scope-OrgID"), "{body}");
    for bad in [
        r#"{"1abc":"x"}"#,
        r#"{"a-b":"x"}"#,
        r#"{"":"x"}"#,
        r#"{"a.b":"x"}"#,
        "{}",
    ] {
        let (status, body) = loki_json(&c, Some(b"team"), &push(bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("stream 0"), "{bad}: {body}");
    }
    let (status, body) = loki_json(&c, Some(b"team"), &push(r#"{"job":"ok","_x1":"y"}"#));
    assert_eq!(status, 204, "{body}");
    let (_, topics) = get(&c, "/v1/topics", &[]);
    assert!(
        !topics.contains("\"shared\""),
        "nothing reached the default topic: {topics}"
    );
}

/// Defect 12: timestamps outside what signed 64-bit nanoseconds can hold
/// (1677-09-21 to 2262-04-11) were stored by HTTP ingest and Loki protobuf
/// pushes, and then invisible to every query. Now refused with a 400.
#[test]
fn issue_28_timestamps_out_of_range_are_refused() {
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    for ms in [9_300_000_000_000i64, -9_300_000_000_000, i64::MAX] {
        let mut b = logpost_shared::batch::BatchBuilder::new();
        b.append(now_ms(), None, Some(b"fine"), &[]);
        b.append(ms, None, Some(b"far"), &[]);
        let body = b.finish(logpost_shared::compression::Compression::None).unwrap();
        let (status, _, text) = ingest(&c.url, "when", body);
        assert_eq!(status, 400, "{ms}: {text}");
        assert!(text.contains("timestamp") && text.contains("2262"), "{ms}: {text}");
    }
    use logpost_collector::ingest::loki::proto::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
    for seconds in [9_300_000_000i64, -9_300_000_000] {
        let push = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="far"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp { seconds, nanos: 0 }),
                    line: b"far".to_vec(),
                    structured_metadata: Vec::new(),
                }],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new().compress_vec(&push.encode_to_vec()).unwrap();
        let resp = logpost_e2e::http()
            .post(format!("{}/loki/api/v1/push", c.url))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        assert_eq!(status, 400, "{seconds}: {text}");
        assert!(text.contains("timestamp"), "{seconds}: {text}");
    }
    let (_, topics) = get(&c, "/v1/topics", &[]);
    assert!(!topics.contains("\"when\"") && !topics.contains("\"loki\""), "{topics}");
}

/// The probe's minor findings: an error text that repeated itself, 4xx
/// answers in plain text where the API documents `{"error": ...}`, and
/// `Authorization: BEARER` refused though the scheme is case-insensitive
/// (RFC 9110, 11.1).
#[test]
fn issue_28_error_texts_and_auth_scheme() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("token"), "admin-token-0123456789").unwrap();
    let c = Collector::start(
        tmp.path(),
        &format!(
            "[[auth.tokens]]\nname = \"admin\"\ntoken_file = \"{}\"\nscopes = [\"admin\"]\n",
            tmp.path().join("token").display()
        ),
    );
    let client = logpost_e2e::http();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = client
            .get(format!("{}/v1/topics", c.url))
            .header("authorization", format!("{scheme} admin-token-0123456789"))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{scheme}");
    }
    let auth = "Bearer admin-token-0123456789";
    let mut frame = logpost_e2e::ingest::batch(&["x".into()], now_ms());
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    let resp = client
        .post(format!("{}/v1/ingest/crc", c.url))
        .header("authorization", auth)
        .header("content-type", BATCH_CONTENT_TYPE)
        .body(frame)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.text().unwrap();
    assert_eq!(text.matches("CRC").count(), 1, "{text}");
    for (method, path) in [
        ("GET", "/v1/query?topic=crc&bogus=1"),
        ("GET", "/v1/no-such-route"),
        ("DELETE", "/health"),
        ("POST", "/v1/topics"),
    ] {
        let resp = client
            .request(method.parse().unwrap(), format!("{}{path}", c.url))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body("not json")
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        assert!((400..500).contains(&status), "{method} {path}: {status}");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {status} {text:?} is not JSON"));
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {v}"
        );
    }
}
