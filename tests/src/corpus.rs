//! The Loghub sample files (a copy of `../shared/corpus`, kept in
//! `tests/corpus` so that a bare checkout can run the tests) and what an agent must
//! deliver from them: every line, with a CRLF's `\r` removed, and a last
//! line without a newline included.

use std::path::PathBuf;

/// Directory holding the eight corpus files.
pub fn dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = here.join("../../shared/corpus/loghub");
    assert!(
        dir.is_dir(),
        "corpus not found at {} (it lives beside the project in ../shared)",
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
