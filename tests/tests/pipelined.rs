//! Ingest requests sent while the client's previous one is unanswered
//! (`?pipelined=true`, the agent's `batch.max_in_flight`): one that
//! overtakes its predecessor waits for it and is stored after it, one whose
//! predecessor never comes is refused and stores nothing, and an agent with
//! several requests in flight delivers every line once, in order.

use logpost_e2e::ingest::BATCH_CONTENT_TYPE;
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, http, wait_for};
use logpost_shared::batch::{BatchBuilder, ProducerInfo};
use logpost_shared::compression::Compression;

fn lines(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("stream line {i}")).collect()
}

/// A gzip batch of `lines` from producer `pid` starting at `base_seq`.
fn producer_batch(pid: i64, base_seq: i32, lines: &[String]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.set_producer(ProducerInfo {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: base_seq,
    });
    for l in lines {
        b.append(1_700_000_000_000, None, Some(l.as_bytes()), &[]);
    }
    b.finish(Compression::Gzip { level: 1 }).unwrap()
}

/// Posts `body` to topic `t`; the status and the JSON answer.
fn post(url: &str, body: Vec<u8>, pipelined: bool) -> (u16, serde_json::Value) {
    let query = if pipelined { "?pipelined=true" } else { "" };
    let resp = http()
        .post(format!("{url}/v1/ingest/t{query}"))
        .header("content-type", BATCH_CONTENT_TYPE)
        .timeout(PATIENCE)
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

/// The collector's gauge of batches waiting for their predecessor.
fn waiting(url: &str) -> f64 {
    let text = http().get(format!("{url}/metrics")).send().unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("logpost_collector_batches_waiting_for_predecessor "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn stored(c: &Collector) -> Vec<String> {
    c.lines("t")
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect()
}

#[test]
fn a_pipelined_request_that_overtakes_its_predecessor_waits_and_lands_after_it() {
    let dir = tempfile::tempdir().unwrap();
    // A long wait: this machine may be slow between the two posts.
    let c = Collector::start(dir.path(), "[ingest]\npredecessor_wait = \"1m\"\n");
    let (first, second) = (lines(0..10), lines(10..25));
    // The second request arrives first, at a stream the collector does not
    // know yet: stored now, it would make the first look like a duplicate.
    let url = c.url.clone();
    let overtaking = {
        let second = second.clone();
        std::thread::spawn(move || post(&url, producer_batch(42, 10, &second), true))
    };
    wait_for("the overtaking batch to wait for its predecessor", PATIENCE, || {
        (waiting(&c.url) >= 1.0).then_some(())
    });
    assert!(stored(&c).is_empty(), "nothing stored while it waits");
    let (status, answer) = post(&c.url, producer_batch(42, 0, &first), false);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = overtaking.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    let batch = &answer["batches"][0];
    assert_eq!(batch["outcome"], "appended", "{answer}");
    assert_eq!(batch["base_offset"], 10, "stored after its predecessor: {answer}");
    assert_eq!(batch["last_offset"], 24, "{answer}");
    assert_eq!(stored(&c), [first, second].concat(), "each line once, in order");
    assert!(waiting(&c.url) < 0.5, "the gauge comes back down");
}

#[test]
fn a_pipelined_request_whose_predecessor_never_comes_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "[ingest]\npredecessor_wait = \"100ms\"\n");
    let (status, answer) = post(&c.url, producer_batch(7, 10, &lines(10..20)), true);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["batches"][0]["outcome"], "refused", "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("producer 7") && error.contains("before its predecessor"),
        "the refusal says why: {error}"
    );
    assert!(stored(&c).is_empty(), "a refused batch stores nothing");
    // Sent again in order, after its predecessor, it is stored; pipelined
    // now, a batch that continues what is stored does not wait.
    let (status, answer) = post(&c.url, producer_batch(7, 0, &lines(0..10)), false);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(&c.url, producer_batch(7, 10, &lines(10..20)), true);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["batches"][0]["outcome"], "appended", "{answer}");
    assert_eq!(stored(&c), lines(0..20));
}

#[test]
fn an_agent_with_four_requests_in_flight_delivers_every_line_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("collector"), "");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Many small requests, so that several are on the wire at once.
    let want: Vec<String> = (0..60_000)
        .map(|i| format!("in flight {i:06} {}", "x".repeat(40)))
        .collect();
    let mut text = want.join("\n");
    text.push('\n');
    std::fs::write(logs.join("app.log"), text).unwrap();
    let config = agent_config(&c, &format!("{}/*.log", logs.display()), "t")
        .replace("[batch]\n", "[batch]\nmax_in_flight = 4\nmax_bytes = \"64KiB\"\n");
    assert!(config.contains("max_in_flight = 4"), "{config}");
    let _agent = Agent::start(&dir.path().join("agent"), &config);
    let got = wait_for("every line stored", PATIENCE, || {
        let got = stored(&c);
        (got.len() >= want.len()).then_some(got)
    });
    assert_eq!(got.len(), want.len(), "no line twice");
    assert!(got == want, "every line once, in file order");
}
