//! Store benchmarks (figures, not assertions), run by hand:
//!
//! ```text
//! cargo bench -p logpost-collector --bench store -- [append] [scan] [--dir DIR] [--gib N]
//! ```
//!
//! - `append`: appends 256 KiB batches to one partition from 1, 8 and 64
//!   concurrent writers, with one fsync per batch and with group commit,
//!   and compares with `dd ... conv=fdatasync` on the same disk in the
//!   same run.
//! - `scan`: reads a whole partition batch by batch (CRC checked, records
//!   decoded) and reports MiB/s.
//!
//! The data directory defaults to `bench/out/store-bench` (the project's
//! disk, not a tmpfs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use logpost_collector::store::writer::LogWriter;
use logpost_collector::store::{AppendItem, FsyncPolicy, Store, StoreConfig, TopicSpec};
use logpost_shared::batch::BatchBuilder;
use logpost_shared::compression::Compression;

const BATCH_BYTES: usize = 256 << 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = flag("--dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/out/store-bench"));
    let gib: f64 = flag("--gib").and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let all = !args.iter().any(|a| a == "append" || a == "scan");
    if all || args.iter().any(|a| a == "append") {
        append(&dir, gib);
    }
    if all || args.iter().any(|a| a == "scan") {
        scan(&dir, gib);
    }
}

/// A batch of incompressible records, `BATCH_BYTES` long, so that the
/// bytes written are the bytes measured.
fn make_batch(seed: u64) -> Bytes {
    let mut b = BatchBuilder::new();
    let mut x = seed | 1;
    let mut line = vec![0u8; 1000];
    while b.records_bytes() < BATCH_BYTES - 1100 {
        for byte in &mut line {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = b'a' + (x % 26) as u8;
        }
        b.append(1_700_000_000_000, None, Some(&line), &[]);
    }
    Bytes::from(b.finish(Compression::None).expect("encoding into memory"))
}

fn fresh_store(dir: &std::path::Path) -> Arc<Store> {
    let _ = std::fs::remove_dir_all(dir);
    let mut config = StoreConfig::new(dir.to_owned());
    config.segment_bytes = 1 << 30;
    Arc::new(Store::open(config).expect("open store"))
}

fn append(dir: &std::path::Path, gib: f64) {
    let dd_mib_s = dd(dir);
    println!("dd bs=1M count=1024 conv=fdatasync: {dd_mib_s:.0} MiB/s");
    println!("| writers | mode | MiB/s | batches/s | % of dd |");
    println!("| --- | --- | --- | --- | --- |");
    let batches: Vec<Bytes> = (0..64).map(make_batch).collect();
    let total = (gib * f64::from(1u32 << 30)) as usize;
    let count = total / batches[0].len();
    for writers in [1usize, 8, 64] {
        for (mode, max_group) in [("fsync per batch", 1usize), ("group commit", 256)] {
            let store = fresh_store(dir);
            let topic = store
                .create_topic(
                    "bench",
                    TopicSpec {
                        partitions: Some(1),
                        ..TopicSpec::default()
                    },
                )
                .expect("topic");
            let partition = Arc::clone(topic.partition(0).expect("partition 0"));
            let writer = Arc::new(LogWriter::start_with(1, FsyncPolicy::Always, max_group, true).expect("writer"));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let started = Instant::now();
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for w in 0..writers {
                    let (writer, partition, batches) = (Arc::clone(&writer), Arc::clone(&partition), batches.clone());
                    let per_writer = count / writers;
                    tasks.push(tokio::spawn(async move {
                        for i in 0..per_writer {
                            let frame = batches[(w + i) % batches.len()].clone();
                            writer
                                .append(
                                    Arc::clone(&partition),
                                    vec![AppendItem {
                                        frame,
                                        ..AppendItem::default()
                                    }],
                                )
                                .await
                                .expect("append");
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("task");
                }
            });
            let secs = started.elapsed().as_secs_f64();
            let written = (count / writers * writers * batches[0].len()) as f64;
            let mib_s = written / f64::from(1u32 << 20) / secs;
            println!(
                "| {writers} | {mode} | {mib_s:.0} | {:.0} | {:.0}% |",
                (count / writers * writers) as f64 / secs,
                mib_s / dd_mib_s * 100.0
            );
        }
    }
}

fn dd(dir: &std::path::Path) -> f64 {
    std::fs::create_dir_all(dir).expect("bench dir");
    let target = dir.join("dd.test");
    let started = Instant::now();
    let status = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=1024", "conv=fdatasync", "status=none"])
        .arg(format!("of={}", target.display()))
        .status()
        .expect("run dd");
    assert!(status.success());
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&target);
    1024.0 / secs
}

fn scan(dir: &std::path::Path, gib: f64) {
    use logpost_collector::store::partition::MAX_FRAME_BYTES;
    use logpost_collector::store::read::read_from;
    use logpost_shared::batch::{check, decode_records};
    // Fill a partition with compressible, log-like gzip batches.
    let store = fresh_store(dir);
    let topic = store
        .create_topic(
            "scan",
            TopicSpec {
                partitions: Some(1),
                ..TopicSpec::default()
            },
        )
        .expect("topic");
    let partition = Arc::clone(topic.partition(0).expect("partition 0"));
    let line =
        b"2026-11-25T12:00:00.000Z INFO http: GET /api/items/42 status=200 user=alice latency_ms=37 trace=9f3c2a";
    let mut raw_total = 0usize;
    let target = (gib * f64::from(1u32 << 30)) as usize;
    while raw_total < target {
        let mut b = BatchBuilder::new();
        for _ in 0..20_000 {
            b.append(1_700_000_000_000, None, Some(line), &[]);
        }
        raw_total += 20_000 * line.len();
        let frame = b.finish(Compression::Gzip { level: 1 }).expect("encode");
        partition.append_frames(&[&frame], false).expect("append");
    }
    let view = partition.view();
    let started = Instant::now();
    let mut offset = view.log_start_offset;
    let mut scratch = Vec::new();
    let mut records = 0u64;
    let mut stored = 0usize;
    while offset < view.high_watermark {
        let r = read_from(&view, offset, 8 << 20).expect("read");
        let mut pos = 0;
        while pos < r.frames.len() {
            let h = check(
                &r.frames[pos..pos
                    + logpost_shared::batch::BatchHeader::parse(&r.frames[pos..])
                        .expect("header")
                        .frame_len()],
            )
            .expect("crc");
            let frame = &r.frames[pos..pos + h.frame_len()];
            for rec in decode_records(frame, &h, MAX_FRAME_BYTES, &mut scratch).expect("decode") {
                rec.expect("record");
                records += 1;
            }
            pos += h.frame_len();
        }
        stored += r.frames.len();
        offset = r.next_offset;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "scan: {records} records, {:.0} MiB raw ({:.0} MiB stored) in {secs:.2} s: {:.0} MiB/s raw, {:.0} MiB/s stored, one core",
        raw_total as f64 / f64::from(1u32 << 20),
        stored as f64 / f64::from(1u32 << 20),
        raw_total as f64 / f64::from(1u32 << 20) / secs,
        stored as f64 / f64::from(1u32 << 20) / secs
    );
}
