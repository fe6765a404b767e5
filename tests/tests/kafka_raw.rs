//! Issue 9: the collector's Kafka listener driven with hand-built frames:
//! malformed input, request ordering, long polling, acks=0, idempotent
//! retries, ListOffsets, committed offsets across a SIGKILL, limits.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use logpost_collector::kafka::protocol::SUPPORTED_APIS;
use logpost_e2e::clients::kcat;
use logpost_e2e::kafka::*;
use logpost_e2e::process::Collector;
use logpost_e2e::{PATIENCE, wait_for};
use logpost_shared::batch::BatchHeader;

/// A collector with a Kafka listener, `extra` config, topic `t` (1 partition).
fn collector(dir: &Path, extra: &str) -> Collector {
    Collector::start(
        dir,
        &format!("[kafka]\nlisten = \"127.0.0.1:0\"\n{extra}\n[topics.t]\npartitions = 1\n"),
    )
}

fn wait_for_log(c: &Collector, needle: &str) {
    wait_for(&format!("collector log containing {needle:?}"), PATIENCE, || {
        c.proc.stderr_text().contains(needle).then_some(())
    });
}

#[test]
fn issue_9_malformed_frames_close_only_their_own_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = collector(tmp.path(), "max_request_bytes = \"1MiB\"");
    let addr = c.kafka().to_owned();
    let mut healthy = connect(&addr);
    assert_works(&mut healthy, 1);

    let mut huge_array = request(0, 3, 9, false, |w| {
        w.nullable_string(None);
        w.i16(1);
        w.i32(1000);
    });
    huge_array.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    let len = i32::try_from(huge_array.len() - 4).unwrap();
    huge_array[..4].copy_from_slice(&len.to_be_bytes());
    let mut garbage = 64i32.to_be_bytes().to_vec();
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push(x as u8);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "length below a header",
            [3i32.to_be_bytes().to_vec(), vec![0, 1, 2]].concat(),
        ),
        ("negative length", (-1i32).to_be_bytes().to_vec()),
        ("oversized length", (2 * 1024 * 1024i32).to_be_bytes().to_vec()),
        ("unknown api key", request(999, 0, 5, false, |_| {})),
        ("unsupported version", request(0, 99, 6, false, |_| {})),
        (
            "body shorter than its fields",
            request(0, 3, 7, false, |w| {
                w.nullable_string(None);
                w.i16(1);
            }),
        ),
        ("array count beyond the frame", huge_array),
        ("garbage", garbage),
    ];
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let mut bad = connect(&addr);
        bad.write_all(&bytes).unwrap();
        assert_closed(bad, what);
        assert!(c.proc.is_running(), "collector died on {what}");
        assert_works(&mut healthy, 100 + i32::try_from(i).unwrap());
    }
    // A frame cut off by the client's own close is dropped without harm.
    let mut cut = connect(&addr);
    let frame = metadata_v1(50);
    cut.write_all(&frame[..frame.len() - 2]).unwrap();
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(cut, "half a frame then EOF");
    assert_works(&mut healthy, 200);
    // A well-framed produce of a corrupt batch is an error *response*.
    healthy.write_all(&produce_v3(300, 1, "t", 0, &[0u8; 10])).unwrap();
    let (corr, mut r) = response(&mut healthy);
    assert_eq!((corr, produce_result(&mut r).0), (300, 2), "CORRUPT_MESSAGE");
    // Two batches for one partition: Kafka's INVALID_RECORD, nothing stored.
    let two = [batch("a", 1, 1, -1, -1, -1), batch("b", 1, 1, -1, -1, -1)].concat();
    healthy.write_all(&produce_v3(301, 1, "t", 0, &two)).unwrap();
    let (_, mut r) = response(&mut healthy);
    assert_eq!(produce_result(&mut r).0, 87, "INVALID_RECORD");
    // A real client on a fresh connection is served as usual.
    let out = std::process::Command::new(kcat())
        .args(["-b", &addr, "-L", "-m", "20"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("topic \"t\" with 1 partitions"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for expected in [
        "bad frame length 2097152",
        "unknown api key 999",
        "unsupported version Produce v99",
    ] {
        wait_for_log(&c, expected);
    }
    assert!(c.lines("t").is_empty(), "nothing bad was stored");
    assert!(!c.proc.stderr_text().contains("panicked"));
}

#[test]
fn issue_9_api_versions_v4_is_answered_with_v0_error_and_list() {
    let tmp = tempfile::tempdir().unwrap();
    let c = collector(tmp.path(), "");
    let mut s = connect(c.kafka());
    let hello = |w: &mut logpost_collector::kafka::protocol::wire::Writer| {
        w.compact_string("raw");
        w.compact_string("1");
        w.empty_tagged_fields();
    };
    s.write_all(&request(18, 4, 11, true, hello)).unwrap();
    let (corr, mut r) = response(&mut s);
    assert_eq!(corr, 11);
    assert_eq!(r.i16().unwrap(), 35, "UNSUPPORTED_VERSION");
    let apis = r.array(6, |r| Ok((r.i16()?, r.i16()?, r.i16()?))).unwrap();
    assert!(apis.contains(&(18, 0, 3)));
    assert_eq!(r.remaining(), 0, "v0 layout: no throttle time");
    s.write_all(&request(18, 3, 12, true, hello)).unwrap();
    let (corr, mut r) = response(&mut s);
    assert_eq!((corr, r.i16().unwrap()), (12, 0));
    assert_eq!(r.uvarint().unwrap() as usize - 1, SUPPORTED_APIS.len());
}

#[test]
fn issue_9_pipelined_requests_are_answered_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let c = collector(tmp.path(), "");
    let mut s = connect(c.kafka());
    // A long-polling fetch first: the quick requests behind it must wait.
    let mut burst = fetch_v4(1, "t", 0, 1500);
    burst.extend(metadata_v1(2));
    burst.extend(request(18, 0, 3, false, |_| {}));
    let started = Instant::now();
    s.write_all(&burst).unwrap();
    let order: Vec<i32> = (0..3).map(|_| response(&mut s).0).collect();
    assert_eq!(order, vec![1, 2, 3]);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "fetch returned before max_wait with no data"
    );
}

#[test]
fn issue_9_long_poll_fetch_wakes_when_data_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_logging(
        tmp.path(),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[topics.t]\npartitions = 1\n",
        "info,logpost_collector::kafka=debug",
    );
    let mut consumer = connect(c.kafka());
    let mut producer = connect(c.kafka());
    let started = Instant::now();
    consumer.write_all(&fetch_v4(1, "t", 0, 20_000)).unwrap();
    wait_for_log(&c, "fetch waiting for data");
    producer
        .write_all(&produce_v3(2, 1, "t", 0, &batch("x", 3, 1000, -1, -1, -1)))
        .unwrap();
    let (_, mut r) = response(&mut producer);
    assert_eq!(produce_result(&mut r), (0, 0));
    let (corr, mut r) = response(&mut consumer);
    assert_eq!(corr, 1);
    let (error, hw, records) = fetch_result(&mut r);
    assert_eq!((error, hw), (0, 3));
    assert_eq!(BatchHeader::parse(&records).unwrap().last_offset_delta, 2);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "woken by the append, not the timeout"
    );
}

#[test]
fn issue_9_fetch_out_of_range_and_unknown_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let c = collector(tmp.path(), "");
    let mut s = connect(c.kafka());
    s.write_all(&fetch_v4(1, "t", 5, 100)).unwrap();
    let (_, mut r) = response(&mut s);
    assert_eq!(fetch_result(&mut r).0, 1, "OFFSET_OUT_OF_RANGE");
    s.write_all(&fetch_v4(2, "missing", 0, 100)).unwrap();
    let (_, mut r) = response(&mut s);
    assert_eq!(fetch_result(&mut r).0, 3, "UNKNOWN_TOPIC_OR_PARTITION");
}

#[test]
fn issue_9_acks_zero_gets_no_response_but_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let c = collector(tmp.path(), "");
    let mut s = connect(c.kafka());
    let mut burst = produce_v3(1, 0, "t", 0, &batch("z", 2, 0, -1, -1, -1));
    burst.extend(request(18, 0, 2, false, |_| {}));
    s.write_all(&burst).unwrap();
    assert_eq!(response(&mut s).0, 2, "the acks=0 produce must not be answered");
    let stored = wait_for("the acks=0 batch to be readable", PATIENCE, || {
        s.write_all(&fetch_v4(3, "t", 0, 0)).unwrap();
        let (_, mut r) = response(&mut s);
        let hw = fetch_result(&mut r).1;
        (hw == 2).then_some(hw)
    });
    assert_eq!(stored, 2);
    assert_eq!(c.lines("t"), vec![b"z-0".to_vec(), b"z-1".to_vec()]);
}

/// The retry of an idempotent batch (the same producer id, epoch and
/// sequence, as a client resends after a lost response) is answered with
/// the original offset and stored once; a gap and a stale epoch are refused.
#[test]
fn issue_9_idempotent_retry_over_the_wire_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let c = collector(tmp.path(), "");
    let mut s = connect(c.kafka());
    let (pid, epoch) = init_producer_id(&mut s, 1);
    assert!(pid > 0);
    let first = batch("idem", 4, 1000, pid, epoch, 0);
    let cases = [
        (first.clone(), (0, 0)),
        (batch("other", 1, 1000, -1, -1, -1), (0, 4)),
        (first, (0, 0)),
        (batch("next", 2, 1000, pid, epoch, 4), (0, 5)),
        (batch("gap", 1, 1000, pid, epoch, 9), (45, -1)),
    ];
    for (i, (records, expected)) in cases.into_iter().enumerate() {
        s.write_all(&produce_v3(10 + i32::try_from(i).unwrap(), -1, "t", 0, &records))
            .unwrap();
        let (_, mut r) = response(&mut s);
        assert_eq!(produce_result(&mut r), expected, "case {i}");
    }
    let lines: Vec<String> = c
        .lines("t")
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        ["idem-0", "idem-1", "idem-2", "idem-3", "other-0", "next-0", "next-1"],
        "the retry was not stored twice, the gap not at all"
    );
}

#[test]
fn issue_9_list_offsets_earliest_latest_and_by_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let c = collector(tmp.path(), "");
    let mut s = connect(c.kafka());
    for (i, ts) in [1_000i64, 50_000].into_iter().enumerate() {
        s.write_all(&produce_v3(
            i32::try_from(i).unwrap(),
            1,
            "t",
            0,
            &batch("l", 3, ts, -1, -1, -1),
        ))
        .unwrap();
        let (_, mut r) = response(&mut s);
        assert_eq!(produce_result(&mut r).0, 0);
    }
    s.write_all(&request(2, 1, 9, false, |w| {
        w.i32(-1);
        w.array_len(1);
        w.string("t");
        w.array_len(5);
        for (p, ts) in [(0, -2i64), (0, -1), (0, 1_001), (0, 20_000), (0, 99_999)] {
            w.i32(p);
            w.i64(ts);
        }
    }))
    .unwrap();
    let (_, mut r) = response(&mut s);
    assert_eq!(r.i32().unwrap(), 1);
    r.string().unwrap();
    let got = r.array(22, |r| Ok((r.i32()?, r.i16()?, r.i64()?, r.i64()?))).unwrap();
    let found: Vec<(i16, i64, i64)> = got.iter().map(|&(_, e, ts, o)| (e, ts, o)).collect();
    // By time: the exact record, not its batch (1001 is the second record).
    assert_eq!(
        found,
        vec![(0, -1, 0), (0, -1, 6), (0, 1_001, 1), (0, 50_000, 3), (0, -1, -1)]
    );
}

fn offset_commit_v2(corr: i32, group: &str, offset: i64, metadata: &str) -> Vec<u8> {
    request(8, 2, corr, false, |w| {
        w.string(group);
        w.i32(-1); // generation: a commit outside group management
        w.string("");
        w.i64(-1); // retention
        w.array_len(1);
        w.string("t");
        w.array_len(1);
        w.i32(0);
        w.i64(offset);
        w.nullable_string(Some(metadata));
    })
}

fn offset_fetch_v5(corr: i32, group: &str) -> Vec<u8> {
    request(9, 5, corr, false, |w| {
        w.string(group);
        w.array_len(1);
        w.string("t");
        w.array_len(1);
        w.i32(0);
    })
}

/// (offset, metadata) of the single partition in an OffsetFetch v5 response.
fn fetched_offset(r: &mut logpost_collector::kafka::protocol::wire::Reader) -> (i64, Option<String>) {
    r.i32().unwrap();
    assert_eq!(r.i32().unwrap(), 1);
    r.string().unwrap();
    assert_eq!(r.i32().unwrap(), 1);
    assert_eq!(r.i32().unwrap(), 0);
    let offset = r.i64().unwrap();
    r.i32().unwrap(); // leader epoch
    let metadata = r.nullable_string().unwrap();
    assert_eq!(r.i16().unwrap(), 0);
    (offset, metadata)
}

#[test]
fn issue_9_committed_offsets_survive_a_killed_collector() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = collector(tmp.path(), "");
    let mut s = connect(c.kafka());
    s.write_all(&offset_commit_v2(1, "durable", 1234, "hello")).unwrap();
    let (_, mut r) = response(&mut s);
    let errors = r
        .array(6, |r| Ok((r.string()?, r.array(6, |r| Ok((r.i32()?, r.i16()?)))?)))
        .unwrap();
    assert_eq!(errors, vec![("t".to_string(), vec![(0, 0)])]);
    c.restart(); // SIGKILL first: nothing can be flushed after the ack
    let mut s = connect(c.kafka());
    s.write_all(&offset_fetch_v5(2, "durable")).unwrap();
    let (_, mut r) = response(&mut s);
    assert_eq!(fetched_offset(&mut r), (1234, Some("hello".into())));
    s.write_all(&offset_fetch_v5(3, "other")).unwrap();
    let (_, mut r) = response(&mut s);
    assert_eq!(fetched_offset(&mut r), (-1, None), "never committed");
}

#[test]
fn issue_9_logpost_member_gets_the_coordinators_assignment() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[groups]\ninitial_rebalance_delay = \"0s\"\n[topics.logs]\npartitions = 3\n",
    );
    let mut s = connect(c.kafka());
    let subscription = logpost_collector::kafka::coordinator::assign::encode_subscription(&["logs".to_string()]);
    let join = |corr: i32, member: &str| {
        request(11, 5, corr, false, |w| {
            w.string("http-consumers");
            w.i32(10_000);
            w.i32(10_000);
            w.string(member);
            w.nullable_string(None);
            w.string("logpost");
            w.array_len(1);
            w.string("range");
            w.bytes(&subscription);
        })
    };
    let join_result = |r: &mut logpost_collector::kafka::protocol::wire::Reader| {
        r.i32().unwrap();
        let error = r.i16().unwrap();
        let generation = r.i32().unwrap();
        r.string().unwrap();
        r.string().unwrap();
        (error, generation, r.string().unwrap())
    };
    s.write_all(&join(1, "")).unwrap();
    let (_, mut r) = response(&mut s);
    let (error, _, member) = join_result(&mut r);
    assert_eq!(error, 79, "MEMBER_ID_REQUIRED on a v4+ first join");
    s.write_all(&join(2, &member)).unwrap();
    let (_, mut r) = response(&mut s);
    let (error, generation, again) = join_result(&mut r);
    assert_eq!((error, generation, again.as_str()), (0, 1, member.as_str()));
    s.write_all(&request(14, 3, 3, false, |w| {
        w.string("http-consumers");
        w.i32(generation);
        w.string(&member);
        w.nullable_string(None);
        w.array_len(0); // no leader logic: the coordinator assigns
    }))
    .unwrap();
    let (_, mut r) = response(&mut s);
    r.i32().unwrap();
    assert_eq!(r.i16().unwrap(), 0);
    let assignment = logpost_collector::kafka::coordinator::assign::decode_assignment(&r.bytes().unwrap()).unwrap();
    assert_eq!(assignment.get("logs"), Some(&vec![0, 1, 2]));
    for (generation, expected) in [(1, 0i16), (0, 22)] {
        s.write_all(&request(12, 3, 4, false, |w| {
            w.string("http-consumers");
            w.i32(generation);
            w.string(&member);
            w.nullable_string(None);
        }))
        .unwrap();
        let (_, mut r) = response(&mut s);
        r.i32().unwrap();
        assert_eq!(r.i16().unwrap(), expected, "heartbeat in generation {generation}");
    }
}

#[test]
fn issue_9_connection_limit_queues_extra_clients_and_idle_ones_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let c = collector(tmp.path(), "max_connections = 2\nidle_timeout = \"5s\"");
    let addr = c.kafka().to_owned();
    let mut a = connect(&addr);
    let mut b = connect(&addr);
    assert_works(&mut a, 1);
    assert_works(&mut b, 2);
    let mut third = connect(&addr);
    third.write_all(&metadata_v1(3)).unwrap();
    // Both slots are taken: the third is not served while a and b are open.
    third.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let mut byte = [0u8; 1];
    let blocked = third.read(&mut byte);
    assert!(
        matches!(&blocked, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "{blocked:?}"
    );
    drop(a);
    third.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(response(&mut third).0, 3, "served once a slot frees up");
    assert_closed(b, "idle connection");
    wait_for_log(&c, "idle timeout");
}

#[test]
fn issue_9_client_stalling_mid_frame_is_dropped_after_idle_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let c = collector(tmp.path(), "idle_timeout = \"1s\"");
    // Timed from before the connect: the collector's clock starts at accept.
    let started = Instant::now();
    let mut s = connect(c.kafka());
    let frame = metadata_v1(1);
    s.write_all(&frame[..frame.len() - 3]).unwrap();
    assert_closed(s, "stalled mid-frame");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the idle timeout"
    );
    let mut other = connect(c.kafka());
    assert_works(&mut other, 2);
}

/// Random bodies behind valid headers of every supported API and version,
/// through the live collector's decode-and-dispatch path: whatever it
/// answers or closes, it must stay up and keep serving others.
#[test]
fn issue_9_random_requests_never_take_the_collector_down() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = collector(tmp.path(), "");
    let addr = c.kafka().to_owned();
    let mut healthy = connect(&addr);
    let mut x: u64 = 0xdead_beef_cafe_f00d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut outcomes = [0usize; 3];
    for i in 0..400 {
        let (api, min, max) = SUPPORTED_APIS[(next() as usize) % SUPPORTED_APIS.len()];
        let version = min + i16::try_from(next() % u64::try_from(max - min + 1).unwrap()).unwrap();
        let mut body: Vec<u8> = (0..(next() % 120) as usize).map(|_| next() as u8).collect();
        for _ in 0..(next() % 4) {
            if body.len() >= 4 {
                let at = (next() as usize) % (body.len() - 3);
                let v: i32 = [0, 1, 2, -1, i32::MAX][(next() % 5) as usize];
                body[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
        }
        let frame = request(api.code(), version, i, api.is_flexible(version), |w| {
            w.put_shared(Bytes::from(body));
        });
        let mut s = connect(&addr);
        s.write_all(&frame).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => outcomes[0] += 1,
            Ok(_) => outcomes[1] += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => outcomes[2] += 1,
            Err(_) => outcomes[0] += 1,
        }
    }
    eprintln!(
        "closed {}, answered {}, still waiting {}",
        outcomes[0], outcomes[1], outcomes[2]
    );
    // Not vacuous: garbage was rejected, and some of it decoded into requests that were served.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    assert!(c.proc.is_running(), "collector died");
    assert_works(&mut healthy, 9999);
    assert!(!c.proc.stderr_text().contains("panicked"), "a task panicked");
}
