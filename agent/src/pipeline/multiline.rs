//! Multiline grouping: Java stack traces, Python tracebacks and other
//! events that span lines become one record.
//!
//! Two ways to say where events begin, as Filebeat and Fluent Bit do:
//! - `start`: a line matching the pattern begins a new event; other lines
//!   belong to the event before them.
//! - `continuation`: a line matching the pattern belongs to the event
//!   before it; other lines begin a new event.
//!
//! `negate` inverts the match. An event is also ended by `max_lines`,
//! `max_bytes`, and by `timeout` without a new line (so the last event of
//! a quiet file is not held forever). Lines are joined with `\n`.
//!
//! The event's file position is its last line's, so a checkpoint never
//! covers a line still held here.

use std::time::{Duration, Instant};

use regex::bytes::Regex;

/// How event boundaries are recognised.
#[derive(Debug, Clone)]
pub enum Boundary {
    Start(Regex),
    Continuation(Regex),
}

/// Multiline settings of one source.
#[derive(Debug, Clone)]
pub struct MultilineConfig {
    pub boundary: Boundary,
    pub negate: bool,
    pub max_lines: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// A finished event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub bytes: Vec<u8>,
    /// File position after the event's last line.
    pub end_pos: u64,
    /// Some line of it was a piece of an over-long line.
    pub split: bool,
    /// Some line of it was truncated.
    pub truncated: bool,
    /// Lines joined.
    pub lines: usize,
}

/// One file's event being assembled.
#[derive(Debug, Default)]
pub struct Multiline {
    current: Option<Event>,
    /// When the last line was added.
    touched: Option<Instant>,
}

impl Multiline {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held.
    pub fn pending_bytes(&self) -> usize {
        self.current.as_ref().map_or(0, |e| e.bytes.len())
    }

    /// Adds a line; returns the event it completed, if any.
    pub fn push(
        &mut self,
        cfg: &MultilineConfig,
        line: &[u8],
        end_pos: u64,
        flags: (bool, bool),
        now: Instant,
    ) -> Option<Event> {
        let (split, truncated) = flags;
        let matched = match &cfg.boundary {
            Boundary::Start(re) | Boundary::Continuation(re) => re.is_match(line) != cfg.negate,
        };
        let begins = match cfg.boundary {
            Boundary::Start(_) => matched,
            Boundary::Continuation(_) => !matched,
        };
        let mut done = None;
        let fits = self
            .current
            .as_ref()
            .is_some_and(|e| e.lines < cfg.max_lines && e.bytes.len() + 1 + line.len() <= cfg.max_bytes);
        if begins || !fits {
            done = self.current.take();
        }
        self.touched = Some(now);
        match &mut self.current {
            Some(e) => {
                e.bytes.push(b'\n');
                e.bytes.extend_from_slice(line);
                e.end_pos = end_pos;
                e.split |= split;
                e.truncated |= truncated;
                e.lines += 1;
            }
            None => {
                self.current = Some(Event {
                    bytes: line.to_vec(),
                    end_pos,
                    split,
                    truncated,
                    lines: 1,
                })
            }
        }
        done
    }

    /// The held event, if it has waited `timeout` since its last line.
    pub fn flush_due(&mut self, cfg: &MultilineConfig, now: Instant) -> Option<Event> {
        if self.touched.is_some_and(|t| now.duration_since(t) >= cfg.timeout) {
            self.touched = None;
            return self.current.take();
        }
        None
    }

    /// The held event, whatever its age (rotation, shutdown of the file).
    pub fn flush(&mut self) -> Option<Event> {
        self.touched = None;
        self.current.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(boundary: Boundary) -> MultilineConfig {
        MultilineConfig {
            boundary,
            negate: false,
            max_lines: 100,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(1),
        }
    }

    fn run(cfg: &MultilineConfig, lines: &[&str]) -> Vec<String> {
        let mut m = Multiline::new();
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(e) = m.push(cfg, l.as_bytes(), i as u64, (false, false), now) {
                out.push(String::from_utf8(e.bytes).unwrap());
            }
        }
        if let Some(e) = m.flush() {
            out.push(String::from_utf8(e.bytes).unwrap());
        }
        out
    }

    #[test]
    fn java_stack_trace_by_start_pattern() {
        let c = cfg(Boundary::Start(Regex::new(r"^\d{4}-").unwrap()));
        let got = run(
            &c,
            &[
                "2024-01-01 ERROR boom",
                "java.lang.IllegalStateException: x",
                "\tat a.b.C.d(C.java:1)",
                "2024-01-01 INFO next",
            ],
        );
        assert_eq!(
            got,
            vec![
                "2024-01-01 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b.C.d(C.java:1)",
                "2024-01-01 INFO next"
            ]
        );
    }

    #[test]
    fn python_traceback_by_continuation() {
        let c = cfg(Boundary::Continuation(Regex::new(r"^(\s|Traceback|\w+Error)").unwrap()));
        let got = run(
            &c,
            &[
                "oops",
                "Traceback (most recent call last):",
                "  File \"x.py\"",
                "ValueError: bad",
                "next",
            ],
        );
        assert_eq!(
            got,
            vec![
                "oops\nTraceback (most recent call last):\n  File \"x.py\"\nValueError: bad",
                "next"
            ]
        );
    }

    #[test]
    fn limits_and_timeout() {
        let mut c = cfg(Boundary::Start(Regex::new("^S").unwrap()));
        c.max_lines = 2;
        assert_eq!(run(&c, &["S1", "a", "b", "c"]), vec!["S1\na", "b\nc"]);
        let mut m = Multiline::new();
        let t0 = Instant::now();
        assert!(m.push(&c, b"S", 5, (false, false), t0).is_none());
        assert!(m.flush_due(&c, t0 + Duration::from_millis(999)).is_none());
        let e = m.flush_due(&c, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!((e.bytes, e.end_pos), (b"S".to_vec(), 5));
        // negate
        c.negate = true;
        c.max_lines = 100;
        assert_eq!(run(&c, &["x1", "Sa", "x2"]), vec!["x1\nSa", "x2"]);
    }
}
