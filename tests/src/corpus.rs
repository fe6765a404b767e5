//! The Loghub sample files (a copy of `../shared/corpus`, kept in
//! `tests/corpus` so that a bare checkout can run the tests) and what an agent must
//! deliver from them: every line, with a CRLF's `\r` removed, and a last
//! line without a newline included.

use std::path::PathBuf;

/// Directory holding the eight corpus files.
pub fn dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = here.join("corpus/loghub");
    assert!(
        dir.is_dir(),
        "corpus not found at {} (tests/corpus/loghub, a copy of ../shared/corpus/loghub)",
        dir.display()
    );
    dir
}

/// (file name, bytes) of every corpus file, sorted by name.
pub fn files() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 8, "expected eight corpus files");
    out
}

/// The lines a shipper must deliver for `data`: split at `\n`, a `\r`
/// before it removed, a final unterminated line kept.
pub fn expected_lines(data: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    if data.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

/// Appends each of `files` to the file of the same name in `dir`, as a
/// program writing its log would; the lines an agent must deliver, in order.
pub fn append_to(dir: &std::path::Path, files: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    use std::io::Write;
    let mut lines = Vec::new();
    for (name, data) in files {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap()
            .write_all(data)
            .unwrap();
        lines.extend(expected_lines(data));
    }
    lines
}

/// One corpus file as stored by [`load`]: its `source` label and its
/// lines with their timestamps (ms).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub source: String,
    pub lines: Vec<(i64, String)>,
}

/// Milliseconds between consecutive lines of a file in [`load`].
pub const LINE_SPACING_MS: i64 = 100;

/// Posts every corpus file to `topic` at `url`, each as its own source
/// (label `source` = the file's stem, e.g. `OpenSSH`), line `i` at
/// `base_ms + i * LINE_SPACING_MS`; returns what was stored, for tests to
/// compute expected answers independently.
pub fn load(url: &str, topic: &str, base_ms: i64) -> Vec<Loaded> {
    use logpost_shared::batch::{BatchBuilder, HeaderSet};
    use logpost_shared::compression::Compression;
    let client = reqwest::blocking::Client::new();
    let mut out = Vec::new();
    for (name, data) in files() {
        let source = name.trim_end_matches(".log").to_owned();
        let lines: Vec<(i64, String)> = expected_lines(&data)
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    base_ms + i as i64 * LINE_SPACING_MS,
                    String::from_utf8_lossy(&l).into_owned(),
                )
            })
            .collect();
        let mut headers = HeaderSet::new();
        headers.push("source", Some(source.as_bytes()));
        for chunk in lines.chunks(500) {
            let mut b = BatchBuilder::new();
            for (ts, l) in chunk {
                b.append(*ts, Some(source.as_bytes()), Some(l.as_bytes()), &[&headers]);
            }
            let body = b.finish(Compression::Gzip { level: 1 }).unwrap();
            crate::ingest::post(&client, url, topic, body).unwrap();
        }
        out.push(Loaded { source, lines });
    }
    out
}
