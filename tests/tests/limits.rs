//! Issue 8: limits that keep one hostile client from hurting the collector:
//! a gzip bomb gets 413 without a memory spike, a slow client is cut off,
//! oversized heads and batches are refused, hostile topic names get 400,
//! and ingest stops creating topics at the cap.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use logpost_e2e::ingest::{BATCH_CONTENT_TYPE, batch};
use logpost_e2e::process::Collector;

fn post(url: &str, topic: &str, body: Vec<u8>) -> (u16, String) {
    let resp = logpost_e2e::http()
        .post(format!("{url}/v1/ingest/{topic}"))
        .header("content-type", BATCH_CONTENT_TYPE)
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().unwrap())
}

/// A RecordBatch v2 frame with a valid header and CRC whose gzip records
/// section inflates to `inflated` zero bytes. Built by hand: the records
/// never exist in memory here either.
fn gzip_bomb(inflated: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..inflated / zeros.len() {
        gz.write_all(&zeros).unwrap();
    }
    let records = gz.finish().unwrap();
    let mut frame = vec![0u8; 61];
    frame.extend_from_slice(&records);
    let len = i32::try_from(frame.len() - 12).unwrap();
    frame[8..12].copy_from_slice(&len.to_be_bytes());
    frame[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    frame[16] = 2; // magic
    frame[21..23].copy_from_slice(&1i16.to_be_bytes()); // gzip
    frame[23..27].copy_from_slice(&0i32.to_be_bytes()); // last offset delta
    frame[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // no producer
    frame[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    frame[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    frame[57..61].copy_from_slice(&1i32.to_be_bytes()); // one record
    let crc = crc32c::crc32c(&frame[21..]);
    frame[17..21].copy_from_slice(&crc.to_be_bytes());
    frame
}

/// Peak resident memory of a process, from /proc (kB).
fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn issue_8_gzip_bomb_413_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "[http]\nmax_uncompressed_bytes = \"8MiB\"\n");
    let (status, body) = post(&c.url, "bomb", batch(&["before".into()], 1));
    assert_eq!(status, 200, "{body}");
    let before = vm_hwm_kb(c.proc.child.id());
    // 1 GiB of zeros, about 1 MiB on the wire; sent four times at once.
    let bomb = gzip_bomb(1 << 30);
    assert!(bomb.len() < 8 << 20, "the bomb itself is small: {}", bomb.len());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, bomb) = (c.url.clone(), bomb.clone());
            std::thread::spawn(move || post(&url, "bomb", bomb))
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("inflate past the limit of 8388608 bytes"), "{body}");
    }
    let after = vm_hwm_kb(c.proc.child.id());
    eprintln!("collector VmHWM: {before} kB before the bombs, {after} kB after");
    // Four inflations bounded at 8 MiB each plus the bodies: far below the
    // 1 GiB a single unbounded inflation would take.
    assert!(after < before + 128 * 1024, "VmHWM grew from {before} kB to {after} kB");
    assert_eq!(
        c.lines("bomb"),
        vec![b"before".to_vec()],
        "nothing of the bombs was stored"
    );
}

#[test]
fn issue_8_slow_clients_are_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "[http]\nheader_timeout = \"1s\"\n");
    // Slowloris: a request head that never ends, trickled a byte at a time
    // (each byte well within any per-read timeout).
    // Timed from before the connect: the collector's clock starts at accept.
    let started = Instant::now();
    let slow = TcpStream::connect(&c.addr).unwrap();
    let mut writer = slow.try_clone().unwrap();
    writer.write_all(b"GET /v1/topics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..150 {
            if writer.write_all(b"X").is_err() {
                return true;
            }
            logpost_e2e::pace(Duration::from_millis(200));
        }
        false
    });
    let mut reader = slow;
    reader.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut answer = Vec::new();
    // Ends at EOF (or a reset) once the collector gives up on the head.
    let _ = reader.read_to_end(&mut answer);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "slow client kept for {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed before the timeout: {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    let _ = trickle.join();
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(&c.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    assert!(
        matches!(idle.read(&mut buf), Ok(0) | Err(_)),
        "idle connection got data"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "idle close took {:?}",
        started.elapsed()
    );
    // The collector still serves others.
    let (status, body) = post(&c.url, "alive", batch(&["still here".into()], 1));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn issue_8_oversized_heads_and_batches_hostile_names_topic_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[http]\nmax_header_bytes = \"8KiB\"\nmax_batch_records = 100\n[storage]\nmax_topics = 2\n",
    );
    let client = logpost_e2e::http();
    let resp = client
        .get(format!("{}/v1/topics", c.url))
        .header("x-padding", "a".repeat(16 << 10))
        .send();
    // hyper answers 431 (or closes, depending on where the limit hits).
    if let Ok(resp) = resp {
        assert_eq!(resp.status().as_u16(), 431);
    }
    let many: Vec<String> = (0..101).map(|i| format!("line {i}")).collect();
    let (status, body) = post(&c.url, "many", batch(&many, 1));
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("http.max_batch_records"), "{body}");

    // (A bare ".." never reaches the collector: URL normalisation removes it.)
    for hostile in [
        "a%2Fb",
        "..%2F..%2Fetc",
        "%2E%2E%2Fx",
        "%00x",
        "a%20b",
        &"x".repeat(300),
    ] {
        let (status, body) = post(&c.url, hostile, batch(&["x".into()], 1));
        assert_eq!(status, 400, "{hostile}: {body}");
    }
    assert!(!tmp.path().join("etc").exists());

    assert_eq!(post(&c.url, "one", batch(&["1".into()], 1)).0, 200);
    assert_eq!(post(&c.url, "two", batch(&["2".into()], 1)).0, 200);
    let (status, body) = post(&c.url, "three", batch(&["3".into()], 1));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("storage.max_topics = 2"), "{body}");
    // Existing topics keep taking data, and an admin may still create one.
    assert_eq!(post(&c.url, "one", batch(&["1b".into()], 1)).0, 200);
    let out = c.logpost(&["topics", "create", "three"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
