//! Issue 6: the consumer fetch API. A fetch from every offset returns the
//! records from exactly there; past the end is a 416 naming the range; a
//! long-poll at the end wakes when a batch is appended; `logpost consume`
//! prints every record once.

use std::time::{Duration, Instant};

use logpost_e2e::ingest::{batch, post};
use logpost_e2e::process::Collector;
use serde_json::Value;

fn fetch(c: &Collector, offset: i64, wait_ms: u64, max_bytes: usize) -> (u16, Value) {
    let url = format!(
        "{}/v1/fetch/app/0?offset={offset}&wait_ms={wait_ms}&max_bytes={max_bytes}",
        c.url
    );
    let resp = reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

#[test]
fn issue_6_fetch_from_every_offset_long_poll_and_consume() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    let client = reqwest::blocking::Client::new();
    let lines: Vec<String> = (0..60).map(|i| format!("record {i:03}")).collect();
    for chunk in lines.chunks(7) {
        post(&client, &c.url, "app?partition=0", batch(chunk, 1_700_000_000_000)).unwrap();
    }
    let n = lines.len() as i64;

    for offset in 0..=n {
        let (status, v) = fetch(&c, offset, 0, 200);
        assert_eq!(status, 200, "offset {offset}: {v}");
        assert_eq!(v["high_watermark"], n);
        assert_eq!(v["log_start_offset"], 0);
        let records = v["records"].as_array().unwrap();
        if offset == n {
            assert!(records.is_empty());
            assert_eq!(v["next_offset"], n);
            continue;
        }
        assert!(!records.is_empty(), "offset {offset}: at least one batch");
        for (i, r) in records.iter().enumerate() {
            let o = offset + i as i64;
            assert_eq!(r["offset"], o);
            assert_eq!(r["line"], lines[o as usize]);
        }
        assert_eq!(v["next_offset"], offset + records.len() as i64, "{v}");
    }
    // Reading on from next_offset covers everything exactly once.
    let (mut at, mut seen) = (0, Vec::new());
    while at < n {
        let (_, v) = fetch(&c, at, 0, 1);
        for r in v["records"].as_array().unwrap() {
            seen.push(r["line"].as_str().unwrap().to_owned());
        }
        at = v["next_offset"].as_i64().unwrap();
    }
    assert_eq!(seen, lines);

    let (status, v) = fetch(&c, n + 1, 0, 200);
    assert_eq!(status, 416, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("out of range") && msg.contains(&n.to_string()), "{msg}");

    // Long-poll: a fetch at the end returns as soon as a batch lands.
    let url = c.url.clone();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let resp = reqwest::blocking::get(format!("{url}/v1/fetch/app/0?offset={n}&wait_ms=30000")).unwrap();
        let v: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
        (started.elapsed(), v)
    });
    // The append happens while the fetch waits (or before it starts: then
    // it answers at once, which is also right).
    post(
        &client,
        &c.url,
        "app?partition=0",
        batch(&["late".to_owned()], 1_700_000_000_100),
    )
    .unwrap();
    let (took, v) = waiter.join().unwrap();
    assert!(
        took < Duration::from_secs(25),
        "woke by the append, not the timeout: {took:?}"
    );
    assert_eq!(v["records"][0]["line"], "late", "{v}");

    let out = c.logpost(&["consume", "app", "--output", "raw"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut want = lines.join("\n");
    want.push_str("\nlate\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

/// `logpost query --direction backward` prints the newest records first,
/// merged across partitions by time; forward the oldest first. The API
/// refuses a backward query without a limit, and a bad direction.
#[test]
fn issue_6_query_direction() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "[storage]\ndefault_partitions = 2\n");
    let client = reqwest::blocking::Client::new();
    // Partition 0 holds even timestamps, partition 1 odd ones, one per
    // record, in several batches each.
    let all: Vec<String> = (0..40).map(|i| format!("line at {i:02}")).collect();
    for part in 0..2 {
        let mine: Vec<(usize, &String)> = all.iter().enumerate().filter(|(i, _)| i % 2 == part).collect();
        for chunk in mine.chunks(5) {
            for (i, line) in chunk {
                let ts = 1_700_000_000_000 + *i as i64;
                post(
                    &client,
                    &c.url,
                    &format!("app?partition={part}"),
                    batch(&[(*line).clone()], ts),
                )
                .unwrap();
            }
        }
    }
    let run = |args: &[&str]| {
        let out = c.logpost(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let newest: String = all.iter().rev().take(7).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        run(&["query", "app", "--limit", "7", "--direction", "backward", "-o", "raw"]),
        newest
    );
    let oldest: String = all.iter().take(7).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        run(&["query", "app", "--limit", "7", "--direction", "forward", "-o", "raw"]),
        oldest
    );
    // Into a pipe the default is forward.
    assert_eq!(run(&["query", "app", "--limit", "7", "-o", "raw"]), oldest);
    // A filter: the newest three matching.
    assert_eq!(
        run(&[
            "query",
            "app |~ \"[05]$\"",
            "--limit",
            "3",
            "--direction",
            "backward",
            "-o",
            "raw"
        ]),
        "line at 35\nline at 30\nline at 25\n"
    );

    // The plain form: `topic` and `grep`.
    let text = client
        .get(format!("{}/v1/query?topic=app&grep=at%203&limit=0", c.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let got: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["line"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got, all[30..40].to_vec());
    let resp = client.get(format!("{}/v1/query?topic=nope", c.url)).send().unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    for (params, want) in [
        ("limit=0&direction=backward", "needs a limit"),
        ("limit=5&direction=sideways", "direction"),
    ] {
        let resp = client
            .get(format!("{}/v1/query?query=app&{params}", c.url))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{params}");
        let text = resp.text().unwrap();
        assert!(text.contains(want), "{params}: {text}");
    }
}
