//! The agent's readers of what people write: line framing and the
//! multiline and parse stages over arbitrary file content, and the
//! checkpoint file loader.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use logpost_agent::pipeline::multiline::{Boundary, Multiline, MultilineConfig};
use logpost_agent::pipeline::parse::{MAX_FIELDS, ParseConfig, ParseFormat, parse};
use logpost_agent::pipeline::timestamp::TimestampFormat;
use logpost_agent::tail::checkpoint::{Checkpointer, Entry};
use logpost_agent::tail::fingerprint::Tail;
use logpost_agent::tail::framing::{LineFramer, LongLines};
use logpost_shared::batch::HeaderSet;
use regex::bytes::Regex;

/// One line as a test keeps it: bytes, end position, split, truncated.
type Got = (Vec<u8>, u64, bool, bool);

/// Frames `content` fed in the chunk sizes `chunks` cycles through, then
/// flushes the partial last line.
fn frame(content: &[u8], chunks: &[u8], max: usize, mode: LongLines, start: u64) -> (Vec<Got>, LineFramer) {
    let mut framer = LineFramer::with_mode(max, mode, start);
    let mut got = Vec::new();
    let mut emit = |l: logpost_agent::tail::framing::Line<'_>| {
        got.push((l.bytes.to_vec(), l.end_pos, l.split, l.truncated));
    };
    let mut rest = content;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().map_or(rest.len(), |&s| usize::from(s).max(1));
        let (now, later) = rest.split_at(size.min(rest.len()));
        framer.feed(now, &mut emit);
        rest = later;
    }
    framer.flush(&mut emit);
    (got, framer)
}

/// Input: max line bytes (1 byte + 1), mode and start (1 byte), a chunk
/// count (1 byte) and that many chunk sizes, then the file's content.
///
/// Checks: the lines do not depend on how the content was chunked; each
/// line is the file's bytes at its place, at most `max` long; what lies
/// between lines is a line ending (split mode) or dropped bytes ending in
/// one (truncate mode); positions only grow and end at the content's end.
pub fn framing(data: &[u8]) {
    let Some((&[max, flags, n], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let Some((chunks, content)) = rest.split_at_checked(usize::from(n % 16)) else {
        return;
    };
    let max = usize::from(max) + 1;
    let mode = if flags & 1 == 0 {
        LongLines::Split
    } else {
        LongLines::Truncate
    };
    let start = if flags & 2 == 0 { 0 } else { u64::from(u32::MAX) + 7 };
    let (whole, framer) = frame(content, &[], max, mode, start);
    let (chunked, _) = frame(content, chunks, max, mode, start);
    assert_eq!(whole, chunked, "lines depend on read sizes {chunks:?}");
    let end = start + content.len() as u64;
    assert_eq!(framer.next_pos(), end, "next_pos after the content");
    assert_eq!(framer.emitted_pos(), end, "emitted_pos after a flush");
    let mut prev = start;
    for (i, (bytes, end_pos, _, truncated)) in whole.iter().enumerate() {
        assert!(*end_pos > prev, "line {i} does not advance");
        assert!(bytes.len() <= max, "line {i} longer than {max}");
        let at = usize::try_from(prev - start).unwrap_or(usize::MAX);
        let stop = usize::try_from(*end_pos - start).unwrap_or(usize::MAX);
        let Some(span) = content.get(at..stop) else {
            panic!("line {i} ends past the content")
        };
        assert!(span.starts_with(bytes), "line {i} is not the file's bytes at {prev}");
        let gap = &span[bytes.len()..];
        if mode == LongLines::Split || !truncated {
            assert!(
                matches!(gap, b"" | b"\n" | b"\r\n"),
                "line {i}: {gap:?} lost between lines"
            );
        } else {
            // Dropped bytes up to the line's end; the last line may end
            // without one (flushed at the end of the content).
            let last = i + 1 == whole.len();
            assert!(last || gap.ends_with(b"\n"), "line {i}: truncation kept {gap:?}");
        }
        prev = *end_pos;
    }
    assert_eq!(prev, end, "the lines do not cover the content");
}

/// Patterns a source's multiline `start`/`continuation` might use.
fn patterns() -> &'static [Regex] {
    static PATTERNS: OnceLock<Vec<Regex>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            r"^\d{4}-\d{2}-\d{2}",
            r"^\s",
            r"^(\s+at |Caused by:|\.\.\.)",
            r"^\[",
            r"\\$",
            r"^[A-Z]+ ",
        ]
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect()
    })
}

/// A parse config chosen by `pick`: regex with named captures, JSON or
/// logfmt, with a timestamp field in one of the formats configs use.
fn parse_config(pick: u8) -> ParseConfig {
    static REGEX: OnceLock<Option<Regex>> = OnceLock::new();
    let regex = REGEX.get_or_init(|| Regex::new(r"^(?P<ts>\S+ \S+) (?P<level>[A-Z]+) (?P<msg>.*)$").ok());
    let format = match (pick % 3, regex) {
        (0, Some(re)) => ParseFormat::Regex(re.clone()),
        (1, _) => ParseFormat::Json,
        _ => ParseFormat::Logfmt,
    };
    let timestamp_format = [
        "rfc3339",
        "unix",
        "unix_ms",
        "unix_ns",
        "%Y-%m-%d %H:%M:%S%.f",
        "%d/%b/%Y:%H:%M:%S %z",
    ][usize::from(pick / 3) % 6];
    let timestamp = TimestampFormat::from_config(timestamp_format)
        .ok()
        .map(|f| ("ts".to_owned(), f));
    let fields = (pick & 0x80 != 0).then(|| {
        ["level", "msg", "ts"]
            .into_iter()
            .map(str::to_owned)
            .collect::<HashSet<_>>()
    });
    ParseConfig {
        format,
        fields,
        timestamp,
    }
}

/// Input: multiline settings (4 bytes), a parse config (1 byte), then the
/// file's content, framed first.
///
/// Checks: multiline neither loses nor adds a byte (events joined with
/// `\n` are the lines joined with `\n`), keeps `max_lines`, and gives
/// each event its last line's position; parsing stays within its field
/// bound.
pub fn pipeline(data: &[u8]) {
    let Some((&[pattern, limits, max_bytes, pick], content)) = data.split_first_chunk::<4>() else {
        return;
    };
    let patterns = patterns();
    let Some(re) = patterns.get(usize::from(pattern) % patterns.len()) else {
        return;
    };
    let boundary = if pattern & 0x40 == 0 {
        Boundary::Start(re.clone())
    } else {
        Boundary::Continuation(re.clone())
    };
    let cfg = MultilineConfig {
        boundary,
        negate: pattern & 0x80 != 0,
        max_lines: usize::from(limits % 32) + 1,
        max_bytes: usize::from(max_bytes) * 4 + 1,
        timeout: Duration::from_secs(5),
    };
    let (lines, _) = frame(content, &[], 512, LongLines::Split, 0);
    let now = Instant::now();
    let mut multiline = Multiline::new();
    let mut events = Vec::new();
    for (bytes, end_pos, split, truncated) in &lines {
        events.extend(multiline.push(&cfg, bytes, *end_pos, (*split, *truncated), now));
    }
    events.extend(multiline.flush());
    let joined_lines: Vec<&[u8]> = lines.iter().map(|l| l.0.as_slice()).collect();
    let joined_events: Vec<&[u8]> = events.iter().map(|e| e.bytes.as_slice()).collect();
    assert_eq!(
        joined_lines.join(&b'\n'),
        joined_events.join(&b'\n'),
        "multiline changed the bytes"
    );
    assert_eq!(
        events.iter().map(|e| e.lines).sum::<usize>(),
        lines.len(),
        "lines lost or added"
    );
    let mut line_ends = lines.iter().map(|l| l.1);
    for e in &events {
        assert!(e.lines >= 1 && e.lines <= cfg.max_lines, "event of {} lines", e.lines);
        let last_end = line_ends.by_ref().take(e.lines).last();
        assert_eq!(last_end, Some(e.end_pos), "event position is not its last line's");
    }
    let parse_cfg = parse_config(pick);
    let mut headers = HeaderSet::new();
    for e in &events {
        headers.clear();
        parse(&parse_cfg, &e.bytes, &mut headers);
        assert!(
            headers.len() <= MAX_FIELDS + 1,
            "{} headers from one event",
            headers.len()
        );
    }
}

/// The checkpoint file (`checkpoints.json`) as found at start-up, loaded
/// as the agent does; entries it loads survive a save and a second load.
pub fn checkpoint(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let cp = Checkpointer::new(dir.path());
    if std::fs::write(cp.path(), data).is_err() {
        return;
    }
    let loaded = cp.load();
    if loaded.warnings.is_empty() && !loaded.entries.is_empty() {
        if let Err(e) = cp.save(&loaded.entries) {
            panic!("saving loaded checkpoints failed: {e}");
        }
        let again = cp.load();
        assert!(
            again.warnings.is_empty(),
            "saved checkpoints do not load: {:?}",
            again.warnings
        );
        // A tail of length 0 is "nothing known" whatever its CRC: the file
        // leaves it out, and it loads back as the default.
        let known = |entries: Vec<Entry>| -> Vec<Entry> {
            entries
                .into_iter()
                .map(|mut e| {
                    if e.tail.len == 0 {
                        e.tail = Tail::default();
                    }
                    e
                })
                .collect()
        };
        assert_eq!(
            known(again.entries),
            known(loaded.entries),
            "checkpoints changed in a save and load"
        );
    }
}
