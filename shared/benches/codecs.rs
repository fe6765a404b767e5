//! Codec benchmark (figures, not assertions), run by hand:
//!
//! ```text
//! cargo bench -p logpost-shared --bench codecs -- [--mib N] [FILE]
//! ```
//!
//! Builds records sections as the agent does (2 MiB of records, each with
//! `source`, `host` and `path` headers) from the first N MiB (default 256)
//! of FILE (default: `bench/out/big-1073741824.log`, which
//! `bench/pipeline.py` generates), then compresses every section with each
//! encoder and inflates the result, reporting CPU seconds per GiB of raw
//! log and the ratio of records bytes to compressed bytes.

use std::io::Write;
use std::time::Instant;

use logpost_shared::batch::{BatchBuilder, HeaderSet};
use logpost_shared::compression::{Codec, Compression, compress_into, decompress_into};

const SECTION_BYTES: usize = 2 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mib: usize = args
        .iter()
        .position(|a| a == "--mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let file = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--mib"))
        .map(|(_, a)| a.clone())
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/out/big-1073741824.log").to_owned());
    let data = match std::fs::read(&file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{file}: {e} (run bench/pipeline.py once to generate it, or name a file)");
            std::process::exit(2);
        }
    };
    let data = &data[..data.len().min(mib << 20)];

    let mut headers = HeaderSet::new();
    headers.push("source", Some(b"bench"));
    headers.push("host", Some(b"web-03.example.internal"));
    headers.push("path", Some(b"/var/log/app/logpost-bench/logs/big.log"));
    let mut sections = Vec::new();
    let mut builder = BatchBuilder::new();
    let mut raw = 0usize;
    for line in data.split_inclusive(|&b| b == b'\n') {
        raw += line.len();
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        builder.append(1_700_000_000_000 + raw as i64 / 1000, None, Some(line), &[&headers]);
        if builder.records_bytes() >= SECTION_BYTES {
            sections.push(records_section(&builder));
            builder.clear();
        }
    }
    if !builder.is_empty() {
        sections.push(records_section(&builder));
    }
    let section_bytes: usize = sections.iter().map(Vec::len).sum();
    let gib = raw as f64 / f64::from(1 << 30);
    println!(
        "{} MiB raw in {} sections of records, {:.2}x the raw bytes",
        raw >> 20,
        sections.len(),
        section_bytes as f64 / raw as f64
    );

    type Encoder = Box<dyn Fn(&[u8], &mut Vec<u8>)>;
    let encoders: Vec<(&str, Codec, Encoder)> = vec![
        (
            "gzip level 1 (logpost's)",
            Codec::Gzip,
            Box::new(|s, out| compress_into(Compression::Gzip { level: 1 }, s, out).expect("in memory")),
        ),
        (
            "gzip level 1 (zlib-rs, flate2)",
            Codec::Gzip,
            Box::new(|s, out| {
                let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::new(1));
                e.write_all(s).expect("in memory");
                e.finish().expect("in memory");
            }),
        ),
        (
            "gzip level 6 (zlib-rs)",
            Codec::Gzip,
            Box::new(|s, out| compress_into(Compression::Gzip { level: 6 }, s, out).expect("in memory")),
        ),
        (
            "lz4",
            Codec::Lz4,
            Box::new(|s, out| compress_into(Compression::Lz4, s, out).expect("in memory")),
        ),
    ];
    println!("| encoder | compress CPU-s/GiB raw | ratio | inflate CPU-s/GiB raw |");
    println!("| --- | --- | --- | --- |");
    for (name, codec, encode) in &encoders {
        let started = Instant::now();
        let compressed: Vec<Vec<u8>> = sections
            .iter()
            .map(|s| {
                let mut out = Vec::new();
                encode(s, &mut out);
                out
            })
            .collect();
        let compress = started.elapsed().as_secs_f64() / gib;
        let compressed_bytes: usize = compressed.iter().map(Vec::len).sum();
        let started = Instant::now();
        let mut out = Vec::new();
        for (c, s) in compressed.iter().zip(&sections) {
            decompress_into(*codec, c, &mut out, s.len()).expect("reads back");
            assert!(out == *s, "{name}: inflated bytes differ");
        }
        let inflate = started.elapsed().as_secs_f64() / gib;
        println!(
            "| {name} | {compress:.2} | {:.2} | {inflate:.2} |",
            section_bytes as f64 / compressed_bytes as f64
        );
    }
}

/// The uncompressed records section of what `builder` holds.
fn records_section(builder: &BatchBuilder) -> Vec<u8> {
    let frame = builder.finish(Compression::None).expect("in memory");
    frame[logpost_shared::batch::HEADER_LEN..].to_vec()
}
