use std::ops::ControlFlow;

use logpost_shared::batch::{BatchBuilder, HeaderSet};
use logpost_shared::compression::Compression;

use super::*;
use crate::query::logql::{Expr, parse};
use crate::store::{StoreConfig, TopicSpec};

/// Records: (ts_ms, source, line). Each batch is one source.
fn frame(ts0: i64, source: &str, lines: &[String]) -> Vec<u8> {
    let mut hs = HeaderSet::new();
    hs.push("source", Some(source.as_bytes()));
    hs.push("logpost.cursor", Some(b"x"));
    let mut b = BatchBuilder::new();
    for (i, l) in lines.iter().enumerate() {
        b.append(ts0 + i as i64, None, Some(l.as_bytes()), &[&hs]);
    }
    b.finish(Compression::Gzip { level: 1 }).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    /// (ts_ms, source, line) of everything stored in topic "app".
    all: Vec<(i64, String, String)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path().to_path_buf());
    cfg.segment_bytes = 64 << 10; // several segments
    let store = Store::open(cfg).unwrap();
    let topic = store
        .create_topic(
            "app",
            TopicSpec {
                partitions: Some(2),
                ..TopicSpec::default()
            },
        )
        .unwrap();
    store.create_topic("other", TopicSpec::default()).unwrap();
    let mut all = Vec::new();
    for b in 0..400i64 {
        let source = ["web", "db", "cache"][(b % 3) as usize];
        let ts0 = 1_000_000 + b * 100;
        let lines: Vec<String> = (0..50)
            .map(|i| {
                let level = if (b + i) % 17 == 0 { "ERROR" } else { "info" };
                format!("{level} request {b}-{i} took {}ms", (b * i) % 997)
            })
            .collect();
        for (i, l) in lines.iter().enumerate() {
            all.push((ts0 + i as i64, source.to_string(), l.clone()));
        }
        let p = &topic.partitions[(b % 2) as usize];
        p.append_frames(&[&frame(ts0, source, &lines)], false).unwrap();
    }
    Fixture { _dir: dir, store, all }
}

fn run(store: &Store, q: &str, start_ms: i64, end_ms: i64) -> (Vec<(i64, String, String)>, ScanStats) {
    let Ok(Expr::Log(log)) = parse(q) else { panic!("{q}") };
    let mut src = StoreSource::new(store, 64 << 20);
    let mut got = Vec::new();
    src.scan(&log, start_ms * NS_PER_MS, end_ms * NS_PER_MS, &mut |e| {
        let mut labels = e.labels.clone();
        if log.pipeline.process(e.line, &mut labels).is_some() {
            got.push((
                e.timestamp_ns / NS_PER_MS,
                e.labels.get("source").unwrap_or("").to_string(),
                String::from_utf8_lossy(e.line).into_owned(),
            ));
            assert_eq!(e.labels.get("topic"), Some("app"));
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    got.sort();
    (got, src.stats)
}

/// Which stored records a case expects.
type Want = Box<dyn Fn(&(i64, String, String)) -> bool>;

#[test]
fn results_equal_a_full_scan_and_pruning_skips() {
    let fx = fixture();
    let cases: Vec<(&str, i64, i64, Want)> = vec![
        (r#"{topic="app"}"#, 0, i64::MAX / NS_PER_MS, Box::new(|_| true)),
        (
            r#"{topic="app", source="db"}"#,
            1_010_000,
            1_012_000,
            Box::new(|r| r.1 == "db" && (1_010_000..1_012_000).contains(&r.0)),
        ),
        (
            r#"app |= "ERROR" |~ "took (1|2)\\d*ms""#,
            0,
            2_000_000,
            Box::new(|r| r.2.contains("ERROR") && regex::Regex::new(r"took (1|2)\d*ms").unwrap().is_match(&r.2)),
        ),
        (
            r#"{topic="app", source=~"web|cache"} != "ERROR""#,
            1_020_000,
            1_020_050,
            Box::new(|r| r.1 != "db" && !r.2.contains("ERROR") && (1_020_000..1_020_050).contains(&r.0)),
        ),
    ];
    for (q, start, end, want) in cases {
        let (got, stats) = run(&fx.store, q, start, end);
        let mut expected: Vec<_> = fx.all.iter().filter(|r| want(r)).cloned().collect();
        expected.sort();
        assert!(!expected.is_empty(), "{q}: the case must select something");
        assert_eq!(got.len(), expected.len(), "{q}");
        assert_eq!(got, expected, "{q}");
        if end < 1_100_000 {
            assert!(stats.blocks_skipped + stats.segments_skipped > 0, "{q}: {stats:?}");
        }
    }
    // A literal no line holds: every batch is dropped before decoding records.
    let (got, stats) = run(&fx.store, r#"app |= "no such text""#, 0, 2_000_000);
    assert!(got.is_empty());
    assert_eq!(stats.batches_prefiltered, stats.batches_read, "{stats:?}");
    assert!(stats.batches_read > 0);
}

/// The same store, seen only through `scan` (no newest-first order), for
/// comparing results.
struct ScanOnly<'a>(StoreSource<'a>);

impl EntrySource for ScanOnly<'_> {
    fn scan(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        self.0.scan(log, start_ns, end_ns, f)
    }
}

#[test]
fn backward_with_a_limit_reads_the_newest_segments_only() {
    use crate::query::logql::{Direction, eval_logs};
    let fx = fixture();
    let newest: Vec<&(i64, String, String)> = {
        let mut v: Vec<_> = fx.all.iter().collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.0));
        v
    };
    for (q, limit) in [
        (r#"{topic="app"}"#, 10),
        (r#"{topic="app"}"#, 1000),
        (r#"{topic="app", source="db"} |= "ERROR""#, 5),
    ] {
        let Ok(Expr::Log(log)) = parse(q) else { panic!("{q}") };
        let mut src = StoreSource::new(&fx.store, 64 << 20);
        let fast = eval_logs(&log, 0, i64::MAX, limit, Direction::Backward, &mut src).unwrap();
        let fast_stats = src.stats;
        let mut full = ScanOnly(StoreSource::new(&fx.store, 64 << 20));
        let slow = eval_logs(&log, 0, i64::MAX, limit, Direction::Backward, &mut full).unwrap();
        let lines = |s: &crate::query::logql::Streams| {
            let mut v: Vec<(i64, Vec<u8>)> = s
                .iter()
                .flat_map(|st| st.entries.iter().map(|e| (e.timestamp_ns, e.line.clone())))
                .collect();
            v.sort();
            v
        };
        // Timestamps are distinct per partition but may tie across the two
        // partitions; compare the multiset of timestamps, and lines where unique.
        let (a, b) = (lines(&fast), lines(&slow));
        assert_eq!(a.len(), limit.min(b.len()), "{q}");
        assert_eq!(
            a.iter().map(|x| x.0).collect::<Vec<_>>(),
            b.iter().map(|x| x.0).collect::<Vec<_>>(),
            "{q}"
        );
        if q == r#"{topic="app"}"# {
            let want: Vec<i64> = newest.iter().take(limit).map(|r| r.0 * NS_PER_MS).collect();
            let mut got: Vec<i64> = a.iter().map(|x| x.0).collect();
            got.sort_by_key(|&t| std::cmp::Reverse(t));
            assert_eq!(got, want, "{q}: the newest {limit}");
        }
        assert!(
            fast_stats.batches_read < full.0.stats.batches_read,
            "{q}: newest-first read {} batches, a full scan {}",
            fast_stats.batches_read,
            full.0.stats.batches_read
        );
    }
}

#[test]
fn newest_records_are_the_newest_of_a_full_scan() {
    let fx = fixture();
    for (q, start, end, limit) in [
        (r#"{topic="app"}"#, 0, i64::MAX / NS_PER_MS, 7),
        (r#"{topic="app", source="web"} |= "ERROR""#, 0, i64::MAX / NS_PER_MS, 30),
        (r#"{topic="app"}"#, 1_010_000, 1_020_000, 100),
        (r#"app |= "no such text""#, 0, i64::MAX / NS_PER_MS, 5),
    ] {
        let Ok(Expr::Log(log)) = parse(q) else { panic!("{q}") };
        let got = newest_records(
            &fx.store,
            &log,
            None,
            (start * NS_PER_MS, end * NS_PER_MS),
            limit,
            usize::MAX,
            64 << 20,
            1,
            |h| {
                let line = h.record.value.unwrap_or_default();
                log.pipeline
                    .process(line, &mut h.labels.clone())
                    .map(|l| (String::from_utf8_lossy(&l).into_owned(), l.len()))
            },
        )
        .unwrap();
        let (mut all, _) = run(&fx.store, q, start, end);
        all.sort_by_key(|r| std::cmp::Reverse(r.0));
        let want: Vec<i64> = all.iter().take(limit).map(|r| r.0 * NS_PER_MS).collect();
        let got_ts: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert_eq!(got_ts, want, "{q}");
        for (ts, line) in &got {
            assert!(
                all.iter().any(|r| r.0 * NS_PER_MS == *ts && &r.2 == line),
                "{q}: {line}"
            );
        }
    }
}

/// An error and its causes, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// (ts ns, source, line) of each hit, in scan order.
type Hits = Vec<(i64, String, String)>;

/// Hits in scan order (not sorted), stopping after `stop_after`, and the
/// scan's error with its causes.
fn hits_in_order(src: &mut StoreSource<'_>, q: &str, stop_after: usize) -> (Hits, Result<(), String>) {
    let Ok(Expr::Log(log)) = parse(q) else { panic!("{q}") };
    let mut got = Vec::new();
    let result = src.scan(&log, 0, i64::MAX, &mut |e| {
        got.push((
            e.timestamp_ns,
            e.labels.get("source").unwrap_or("").to_string(),
            String::from_utf8_lossy(e.line).into_owned(),
        ));
        if got.len() >= stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    (got, result.map_err(|e| error_chain(&e)))
}

#[test]
fn helper_threads_change_nothing_but_who_inflates() {
    let fx = fixture();
    for q in [
        r#"{topic="app"}"#,
        r#"app |= "ERROR""#,
        r#"{topic="app", source="db"} !~ "took 1\\d+ms""#,
    ] {
        for stop_after in [usize::MAX, 1, 7, 333, 5_000] {
            let mut alone = StoreSource::new(&fx.store, 64 << 20);
            let mut helped = StoreSource::new(&fx.store, 64 << 20)
                .with_threads(3)
                .with_helpers_always();
            let (a, ra) = hits_in_order(&mut alone, q, stop_after);
            let (b, rb) = hits_in_order(&mut helped, q, stop_after);
            assert!(ra.is_ok() && rb.is_ok(), "{q}: {ra:?} {rb:?}");
            assert!(!a.is_empty(), "{q}");
            assert_eq!(a, b, "{q}, stop after {stop_after}: same hits in the same order");
            if stop_after == usize::MAX {
                // Stopping early may leave read-ahead frames counted as read.
                assert_eq!(alone.stats, helped.stats, "{q}");
            }
        }
    }
}

#[test]
fn a_corrupt_batch_stops_a_helped_scan_where_it_stops_a_plain_one() {
    let fx = fixture();
    let mut logs = Vec::new();
    let mut dirs = vec![fx._dir.path().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "log") && std::fs::metadata(&p).unwrap().len() > 16 << 10 {
                logs.push(p);
            }
        }
    }
    logs.sort();
    let victim = logs.first().expect("a segment with several batches");
    let mut bytes = std::fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(victim, &bytes).unwrap();
    let q = r#"{topic="app"}"#;
    let (a, ra) = hits_in_order(&mut StoreSource::new(&fx.store, 64 << 20), q, usize::MAX);
    let mut helped = StoreSource::new(&fx.store, 64 << 20)
        .with_threads(2)
        .with_helpers_always();
    let (b, rb) = hits_in_order(&mut helped, q, usize::MAX);
    let err = ra.expect_err("the corrupt batch is an error");
    assert_eq!(rb.expect_err("and with helpers too"), err);
    assert!(
        !a.is_empty() && a.len() < fx.all.len(),
        "{} of {} before the error",
        a.len(),
        fx.all.len()
    );
    assert_eq!(a, b, "the same hits before the error");
}

#[test]
fn a_batch_that_does_not_inflate_fails_a_helped_scan_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path().to_path_buf())).unwrap();
    let topic = store.create_topic("app", TopicSpec::default()).unwrap();
    let lines: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    // A frame whose CRC-32C is right but whose deflate data starts with a
    // reserved block type: it passes `check` and fails only when inflated.
    let mut broken = frame(5_000, "web", &lines);
    broken[logpost_shared::batch::HEADER_LEN + 10] = 0xff;
    let crc = crc32c::crc32c(&broken[21..]);
    broken[17..21].copy_from_slice(&crc.to_be_bytes());
    let p = &topic.partitions[0];
    for b in 0..12i64 {
        let f = if b == 6 {
            broken.clone()
        } else {
            frame(b * 100, "web", &lines)
        };
        p.append_frames(&[&f], false).unwrap();
    }
    let q = r#"{topic="app"}"#;
    let (a, ra) = hits_in_order(&mut StoreSource::new(&store, 64 << 20), q, usize::MAX);
    let mut helped = StoreSource::new(&store, 64 << 20).with_threads(2).with_helpers_always();
    let (b, rb) = hits_in_order(&mut helped, q, usize::MAX);
    let err = ra.expect_err("the batch that does not inflate is an error");
    assert!(err.contains("corrupt batch"), "{err}");
    assert_eq!(rb.expect_err("and with helpers too"), err);
    assert_eq!(a.len(), 6 * 50, "the six batches before it");
    assert_eq!(a, b);
    // Newest first: the active segment has no summary yet, so it is one
    // range read in file order: the same six batches, then the same error.
    let (a, ra) = newest_first_calls(&mut StoreSource::new(&store, 64 << 20), q, usize::MAX);
    let mut helped = StoreSource::new(&store, 64 << 20).with_threads(2).with_helpers_always();
    let (b, rb) = newest_first_calls(&mut helped, q, usize::MAX);
    assert_eq!(ra.expect_err("newest first meets it too"), err);
    assert_eq!(rb.expect_err("and with helpers"), err);
    assert_eq!(a.iter().filter(|c| c.1.is_some()).count(), 6 * 50);
    assert_eq!(a, b);
}

/// Every call a newest-first scan makes, in order: `None` for "nothing
/// newer than ns", else the hit; the scan is stopped after `stop_after`.
fn newest_first_calls(src: &mut StoreSource<'_>, q: &str, stop_after: usize) -> (NewestCalls, Result<(), String>) {
    use crate::query::logql::Scanned;
    let Ok(Expr::Log(log)) = parse(q) else { panic!("{q}") };
    let mut calls = Vec::new();
    let result = src.scan_newest_first(&log, 0, i64::MAX, &mut |s| {
        calls.push(match s {
            Scanned::NoneNewerThan(ns) => (ns, None),
            Scanned::Entry(e) => (e.timestamp_ns, Some(String::from_utf8_lossy(e.line).into_owned())),
        });
        if calls.len() >= stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    (calls, result.map_err(|e| error_chain(&e)))
}

/// (ns, line) of each call of a newest-first scan; no line: an announcement.
type NewestCalls = Vec<(i64, Option<String>)>;

#[test]
fn newest_first_with_helpers_makes_the_same_calls() {
    let fx = fixture();
    for q in [r#"{topic="app"}"#, r#"app |= "ERROR""#, r#"app |= "no such text""#] {
        for stop_after in [usize::MAX, 1, 2, 50, 999] {
            let (alone, ra) = newest_first_calls(&mut StoreSource::new(&fx.store, 64 << 20), q, stop_after);
            assert!(ra.is_ok(), "{q}: {ra:?}");
            assert!(alone.iter().any(|c| c.1.is_none()), "{q}: blocks are announced");
            // Helpers from the start, and after the first 20 KiB on one thread.
            for alone_bytes in [0, 20 << 10] {
                let mut helped = StoreSource::new(&fx.store, 64 << 20)
                    .with_threads(2)
                    .with_helpers_always()
                    .with_newest_alone_bytes(alone_bytes);
                let (with_helpers, rb) = newest_first_calls(&mut helped, q, stop_after);
                assert!(rb.is_ok(), "{q}: {rb:?}");
                assert_eq!(
                    alone, with_helpers,
                    "{q}, stop after {stop_after}, helpers after {alone_bytes}"
                );
            }
        }
    }
}

#[test]
fn without_threads_a_helped_scan_runs_alone() {
    let fx = fixture();
    super::ahead::tests::NO_THREADS.set(true);
    for q in [r#"{topic="app"}"#, r#"app |= "ERROR""#] {
        let (a, ra) = hits_in_order(&mut StoreSource::new(&fx.store, 64 << 20), q, usize::MAX);
        let mut helped = StoreSource::new(&fx.store, 64 << 20)
            .with_threads(4)
            .with_helpers_always();
        let (b, rb) = hits_in_order(&mut helped, q, usize::MAX);
        assert!(ra.is_ok() && rb.is_ok(), "{ra:?} {rb:?}");
        assert_eq!(a, b, "{q}");
        let (a, _) = newest_first_calls(&mut StoreSource::new(&fx.store, 64 << 20), q, usize::MAX);
        let mut helped = StoreSource::new(&fx.store, 64 << 20)
            .with_threads(4)
            .with_helpers_always()
            .with_newest_alone_bytes(20 << 10);
        let (b, rb) = newest_first_calls(&mut helped, q, usize::MAX);
        assert!(rb.is_ok(), "{rb:?}");
        assert_eq!(a, b, "{q}: newest first");
    }
    super::ahead::tests::NO_THREADS.set(false);
}

#[test]
fn the_scan_hands_over_only_lines_that_pass_the_leading_filters() {
    let fx = fixture();
    // No literal of 3 bytes to drive with: every record is decoded, and
    // the scan runs the regex itself.
    let q = r#"app |~ "took [0-9]{2}ms" != "ERROR""#;
    let Ok(Expr::Log(log)) = parse(q) else { panic!("{q}") };
    let re = regex::Regex::new("took [0-9]{2}ms").unwrap();
    let want = fx
        .all
        .iter()
        .filter(|r| re.is_match(&r.2) && !r.2.contains("ERROR"))
        .count();
    assert!(want > 0 && want < fx.all.len(), "{want}");
    let mut src = StoreSource::new(&fx.store, 64 << 20);
    let mut handed = 0;
    src.scan(&log, 0, i64::MAX, &mut |e| {
        let line = std::str::from_utf8(e.line).unwrap();
        assert!(e.leading_filters_passed);
        assert!(re.is_match(line) && !line.contains("ERROR"), "{line}");
        handed += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(handed, want);
}
