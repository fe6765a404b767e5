//! Issue 28's soak: every abusive client of `hostile.rs` in a loop, beside
//! an agent shipping a steady file, against one collector. What must hold
//! throughout: every line of the agent's file arrives exactly once,
//! `/health` answers every probe, and the collector's peak RSS stays under
//! [`PEAK_BOUND_MB`]. `LOGPOST_HOSTILE_SOAK_SECONDS` sets the length (60
//! in the suite; `scripts/soak-collector hostile 600` runs ten minutes).
//! Nothing here asserts timing: the probes' own timeout is generous.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use logpost_e2e::lines::{LineWriter, Reopen, check};
use logpost_e2e::process::{Agent, Collector, agent_config};

use crate::hostile::{get, memory_kb, now_ms, partial_body, post_lines, tail};

/// The bound on the collector's peak RSS under the soak, MB. With the
/// defaults the budgets add up to about 128 MiB of HTTP bodies, 128 MiB of
/// Kafka requests, the bodies being checked and a few queries' budgets
/// (docs/hostile-input.md); before the fixes the held bodies alone took
/// 740 MB, pipelined produces 900 MB, and the doubling `line_format` query
/// aborted the process under a 1.5 GiB cap. Measured: 860 MB in 60 s on
/// 2 shared CPUs.
const PEAK_BOUND_MB: u64 = 1536;

/// Runs `round` until `stop`, counting rounds; a failed assertion in a
/// round fails the test when the thread is joined.
fn abuser(
    name: &'static str,
    stop: &Arc<AtomicBool>,
    round: impl Fn() + Send + 'static,
) -> (&'static str, JoinHandle<u64>) {
    let stop = Arc::clone(stop);
    let handle = std::thread::spawn(move || {
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            round();
            rounds += 1;
        }
        rounds
    });
    (name, handle)
}

/// The topics the query abusers read, filled once.
fn fill(c: &Collector) {
    post_lines(c, "amp", &["0123456789abcdef".to_owned()], now_ms() - 60_000, 1);
    let month_ms: i64 = 30 * 86_400_000;
    let ids: Vec<String> = (0..200).map(|i| format!("id={i} msg=card")).collect();
    post_lines(c, "card", &ids, now_ms() - month_ms + 60_000, month_ms / 400);
    let big = "x".repeat(1 << 20);
    for i in 0..6 {
        let lines: Vec<String> = (0..10).map(|j| format!("{i}{j}{big}")).collect();
        post_lines(c, "big", &lines, now_ms() - 600_000 + i * 100, 1);
    }
}

#[test]
fn issue_28_soak_abusive_clients_beside_an_agent() {
    let _heavy = logpost_e2e::heavy();
    let seconds: u64 = std::env::var("LOGPOST_HOSTILE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let c = Arc::new(Collector::start(
        &tmp.path().join("collector"),
        // The flood topic keeps its last 256 MiB, so that a ten-minute
        // soak does not fill the disk.
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[topics.flood]\npartitions = 1\nretention_bytes = \"256MiB\"\n[storage]\nsegment_bytes = \"64MiB\"\nretention_check_interval = \"5s\"\n[http]\nbody_timeout = \"2s\"\n",
    ));
    fill(&c);
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let agent = Agent::start(
        &tmp.path().join("agent"),
        &agent_config(&c, &format!("{}/*.log", logs.display()), "steady"),
    );
    // About 400 lines a second for the whole soak.
    let total = seconds * 400;
    let writer = LineWriter::spawn(
        1,
        logs.join("app.log"),
        total,
        20,
        Duration::from_millis(50),
        Reopen::Never,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let url = c.url.clone();
    let mut abusers = Vec::new();
    {
        let c = Arc::clone(&c);
        abusers.push(abuser("doubling line_format", &stop, move || {
            let q = format!("amp{}", r#" | line_format "{{__line__}}{{__line__}}""#.repeat(24));
            let (status, body) = get(
                &c,
                "/loki/api/v1/query_range",
                &[("query", q), ("limit", "1".into()), ("start", "0".into())],
            );
            assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
        }));
    }
    {
        let c = Arc::clone(&c);
        abusers.push(abuser("heavy regexes", &stop, move || {
            let q = format!("amp{}", r#" |~ "\\w{200}""#.repeat(10));
            let (status, body) = get(&c, "/loki/api/v1/query_range", &[("query", q), ("start", "0".into())]);
            assert_eq!(status, 400, "{body}");
        }));
    }
    {
        let c = Arc::clone(&c);
        abusers.push(abuser("metric points", &stop, move || {
            let end_ms = now_ms();
            for (n, want) in [(60, 200), (120, 400)] {
                let (status, body) = get(
                    &c,
                    "/loki/api/v1/query_range",
                    &[
                        (
                            "query",
                            format!("sum by (id) (count_over_time(card | logfmt | id < {n} [30d]))"),
                        ),
                        ("start", ((end_ms - 30 * 86_400_000) * 1_000_000).to_string()),
                        ("end", (end_ms * 1_000_000).to_string()),
                        ("step", "259.2".into()),
                    ],
                );
                assert_eq!(status, want, "{n} series: {}", &body[..body.len().min(300)]);
            }
        }));
    }
    {
        let c = Arc::clone(&c);
        abusers.push(abuser("large results", &stop, move || {
            let (status, body) = get(
                &c,
                "/loki/api/v1/query_range",
                &[("query", "big".into()), ("limit", "5000".into()), ("start", "0".into())],
            );
            assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
        }));
    }
    {
        let kafka = c.kafka().to_owned();
        let mut b = logpost_shared::batch::BatchBuilder::new();
        let value = vec![b'k'; 64 * 1024];
        for i in 0..16 {
            b.append(now_ms() + i, None, Some(&value), &[]);
        }
        let records = b.finish(logpost_shared::compression::Compression::None).unwrap();
        abusers.push(abuser("pipelined Kafka produces", &stop, move || {
            let mut s = logpost_e2e::kafka::connect(&kafka);
            // More than the listener's budget (128 MiB) at once.
            for i in 0..160 {
                s.write_all(&logpost_e2e::kafka::produce_v3(i, 0, "flood", 0, &records))
                    .unwrap();
            }
            s.write_all(&logpost_e2e::kafka::metadata_v1(160)).unwrap();
            assert_eq!(logpost_e2e::kafka::response(&mut s).0, 160);
            logpost_e2e::pace(Duration::from_secs(2));
        }));
    }
    {
        let addr = c.addr.clone();
        let body = Arc::new(vec![0u8; (8 << 20) - 1]);
        abusers.push(abuser("held bodies", &stop, move || {
            let senders: Vec<_> = (0..40)
                .map(|_| {
                    let (addr, body) = (addr.clone(), Arc::clone(&body));
                    std::thread::spawn(move || partial_body(&addr, 8 << 20, &body))
                })
                .collect();
            let held: Vec<_> = senders.into_iter().map(|t| t.join().unwrap()).collect();
            drop(held);
        }));
    }
    {
        let addr = c.addr.clone();
        abusers.push(abuser("trickled bodies", &stop, move || {
            let trickles: Vec<_> = (0..4)
                .map(|_| {
                    let addr = addr.clone();
                    std::thread::spawn(move || {
                        let mut s = partial_body(&addr, 1_000_000, b"x");
                        for _ in 0..1200 {
                            if s.write_all(b"x").is_err() {
                                return true;
                            }
                            logpost_e2e::pace(Duration::from_millis(200));
                        }
                        false
                    })
                })
                .collect();
            for t in trickles {
                assert!(t.join().unwrap(), "a trickled body was not cut off");
            }
        }));
    }
    {
        let c = Arc::clone(&c);
        abusers.push(abuser("tails that never read", &stop, move || {
            let tails: Vec<_> = (0..20)
                .filter_map(|_| tail(&c, "big", "&start=0&limit=5000").ok())
                .collect();
            logpost_e2e::pace(Duration::from_secs(3));
            drop(tails);
        }));
    }
    {
        let url = url.clone();
        abusers.push(abuser("unroutable pushes", &stop, move || {
            let ts = now_ms() * 1_000_000;
            for labels in [r#"{"a-b":"x"}"#, "{}", r#"{"1abc":"x"}"#] {
                let body = format!(r#"{{"streams":[{{"stream":{labels},"values":[["{ts}","x"]]}}]}}"#);
                let resp = logpost_e2e::http()
                    .post(format!("{url}/loki/api/v1/push"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .unwrap();
                // 503 while the held bodies have the listener's budget.
                let status = resp.status().as_u16();
                assert!(matches!(status, 400 | 503), "{labels}: {status}");
            }
            logpost_e2e::pace(Duration::from_millis(100));
        }));
    }

    // /health once a second for the whole soak: every probe answered.
    let probes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let client = logpost_e2e::http();
    while started.elapsed() < Duration::from_secs(seconds) {
        let resp = client
            .get(format!("{url}/health"))
            .timeout(Duration::from_secs(30))
            .send();
        match resp {
            Ok(r) if r.status().as_u16() == 200 => probes.fetch_add(1, Ordering::Relaxed),
            other => panic!(
                "/health failed after {:?}: {:?}",
                started.elapsed(),
                other.map(|r| r.status())
            ),
        };
        logpost_e2e::pace(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    let mut rounds = Vec::new();
    for (name, handle) in abusers {
        let n = handle
            .join()
            .unwrap_or_else(|_| panic!("the {name} client failed (its panic is above)"));
        rounds.push(format!("{name}: {n}"));
    }
    let written = BTreeMap::from([(1, writer.finish())]);
    assert_eq!(written[&1], total);
    let records = logpost_e2e::wait_for("every line of the agent's file", logpost_e2e::PATIENCE, || {
        let r = c.records("steady");
        (check(&r, &written).lost == 0).then_some(r)
    });
    let report = check(&records, &written);
    assert_eq!((report.duplicated, report.altered), (0, 0), "{report}");
    let (peak, now) = memory_kb(c.proc.child.id());
    eprintln!(
        "soak {seconds} s: {} /health probes answered, rounds {}; {} lines arrived once; collector VmHWM {} MB, VmRSS {} MB at the end",
        probes.load(Ordering::Relaxed),
        rounds.join(", "),
        report.delivered,
        peak / 1024,
        now / 1024
    );
    assert!(
        peak < PEAK_BOUND_MB * 1024,
        "the collector's peak RSS was {} MB, over the bound of {PEAK_BOUND_MB} MB",
        peak / 1024
    );
    drop(agent);
}
