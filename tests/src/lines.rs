//! Numbered lines for delivery tests: writer threads append
//! `<writer> <seq> <padding>` lines to files at a steady rate, and a
//! checker proves from what a topic holds that every line arrived once,
//! unaltered, in order within each stream.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;

/// The exact bytes of line `seq` of writer `writer`.
pub fn line(writer: u32, seq: u64) -> String {
    // Varying padding (up to 150 bytes) keeps lines realistic in size and
    // makes truncated or merged lines detectable.
    let pad = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(5);
    let len = (seq.wrapping_mul(2_654_435_761) % 150) as usize;
    format!("{writer:03} {seq:010} {}", &pad[..len])
}

/// How a writer opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopen {
    /// Open, append and close for every chunk: after a rename the next
    /// chunk goes to the new file (as apps that reopen on SIGHUP do).
    EveryChunk,
    /// Keep one handle (copytruncate's case).
    Never,
}

/// A thread appending numbered lines to `path`.
pub struct LineWriter {
    pub id: u32,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    paused: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl LineWriter {
    /// Starts writing `per_tick` lines every `tick` to `path`, up to `total`.
    pub fn spawn(id: u32, path: PathBuf, total: u64, per_tick: u64, tick: Duration, reopen: Reopen) -> LineWriter {
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new((Mutex::new(false), Condvar::new()));
        let (w, s, p) = (Arc::clone(&written), Arc::clone(&stop), Arc::clone(&paused));
        let handle = std::thread::spawn(move || {
            let open = |path: &Path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap()
            };
            let mut file = open(&path);
            let mut seq = 0;
            while seq < total && !s.load(Ordering::Relaxed) {
                {
                    // The pause is acknowledged by holding the lock: a
                    // rotation runs while no chunk is being written.
                    let (lock, cond) = &*p;
                    let mut paused = lock.lock().unwrap();
                    while *paused {
                        paused = cond.wait(paused).unwrap();
                    }
                    let mut chunk = String::new();
                    for _ in 0..per_tick.min(total - seq) {
                        chunk.push_str(&line(id, seq));
                        chunk.push('\n');
                        seq += 1;
                    }
                    if reopen == Reopen::EveryChunk {
                        file = open(&path);
                    }
                    file.write_all(chunk.as_bytes()).unwrap();
                    w.store(seq, Ordering::SeqCst);
                }
                std::thread::sleep(tick);
            }
        });
        LineWriter {
            id,
            written,
            stop,
            paused,
            handle: Some(handle),
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Runs `f` while the writer is paused between chunks.
    pub fn paused<T>(&self, f: impl FnOnce() -> T) -> T {
        let (lock, cond) = &*self.paused;
        *lock.lock().unwrap() = true;
        // Taking the lock again waits for a chunk in progress to finish.
        let out = f();
        *lock.lock().unwrap() = false;
        cond.notify_all();
        out
    }

    /// Stops the writer after the lines of its current tick; how many it
    /// wrote, every one complete.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (lock, cond) = &*self.paused;
        *lock.lock().unwrap() = false;
        cond.notify_all();
        self.finish()
    }

    /// Waits until the writer has written everything (or stops it).
    pub fn finish(mut self) -> u64 {
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.written()
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (lock, cond) = &*self.paused;
        *lock.lock().unwrap() = false;
        cond.notify_all();
    }
}

/// What a topic holds compared with what was written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub written: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub altered: u64,
    pub out_of_order: u64,
    /// The first runs of lost lines: (writer, first sequence, count).
    pub lost_runs: Vec<(u32, u64, u64)>,
    /// The first runs of duplicated lines: (writer, first sequence, count).
    pub duplicated_runs: Vec<(u32, u64, u64)>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "written {}, delivered {}, lost {}, duplicated {}, altered {}, out of order {}",
            self.written, self.delivered, self.lost, self.duplicated, self.altered, self.out_of_order
        )?;
        for (w, first, n) in &self.lost_runs {
            write!(f, "\n  lost: writer {w}, lines {first}..{}", first + n)?;
        }
        for (w, first, n) in &self.duplicated_runs {
            write!(f, "\n  duplicated: writer {w}, lines {first}..{}", first + n)?;
        }
        Ok(())
    }
}

/// The line of a record from `logpost query --output json`.
pub fn record_line(r: &serde_json::Value) -> Vec<u8> {
    if let Some(s) = r["line"].as_str() {
        s.as_bytes().to_vec()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(r["line_base64"].as_str().unwrap_or(""))
            .unwrap_or_default()
    }
}

/// Checks `records` (as `logpost query --output json` prints them, oldest
/// first) against writers that wrote `written[w]` lines each. Lines of
/// other shapes count as altered. Order is checked within each stream.
pub fn check(records: &[serde_json::Value], written: &BTreeMap<u32, u64>) -> Report {
    let mut checker = Checker::new(written);
    for r in records {
        checker.add(r);
    }
    checker.finish()
}

/// [`check`] one record at a time, in memory proportional to the lines
/// written (a byte per line), not to the records read: the long torture
/// stores tens of millions.
pub struct Checker {
    report: Report,
    written: BTreeMap<u32, u64>,
    /// Per writer, how many times each line arrived (saturating).
    seen: HashMap<u32, Vec<u8>>,
    last_in_stream: HashMap<(i64, u32), u64>,
}

impl Checker {
    /// A checker for writers that wrote `written[w]` lines each.
    pub fn new(written: &BTreeMap<u32, u64>) -> Checker {
        Checker {
            report: Report {
                written: written.values().sum(),
                ..Report::default()
            },
            written: written.clone(),
            seen: written
                .iter()
                .map(|(&w, &n)| (w, vec![0u8; usize::try_from(n).unwrap()]))
                .collect(),
            last_in_stream: HashMap::new(),
        }
    }

    /// Takes the next record.
    pub fn add(&mut self, r: &serde_json::Value) {
        let report = &mut self.report;
        report.delivered += 1;
        let bytes = record_line(r);
        let text = String::from_utf8_lossy(&bytes);
        let mut parts = text.splitn(3, ' ');
        let parsed = (|| {
            let w: u32 = parts.next()?.parse().ok()?;
            let s: u64 = parts.next()?.parse().ok()?;
            Some((w, s))
        })();
        let Some((w, s)) = parsed.filter(|&(w, s)| line(w, s) == text) else {
            report.altered += 1;
            return;
        };
        // A line past what its writer wrote cannot be: count it as altered.
        let Some(count) = self.seen.get_mut(&w).and_then(|c| c.get_mut(usize::try_from(s).ok()?)) else {
            report.altered += 1;
            return;
        };
        *count = count.saturating_add(1);
        let first = *count == 1;
        let stream = r["stream"].as_i64().unwrap_or(-1);
        if let Some(&prev) = self.last_in_stream.get(&(stream, w))
            && s <= prev
            && first
        {
            report.out_of_order += 1;
        }
        self.last_in_stream.insert((stream, w), s);
    }

    /// The report once every record was added.
    pub fn finish(mut self) -> Report {
        for (&w, &n) in &self.written {
            let Some(counts) = self.seen.get(&w) else { continue };
            for s in 0..n {
                match counts.get(usize::try_from(s).unwrap()).copied().unwrap_or(0) {
                    0 => {
                        self.report.lost += 1;
                        add_to_runs(&mut self.report.lost_runs, w, s);
                    }
                    1 => {}
                    c => {
                        self.report.duplicated += u64::from(c - 1);
                        add_to_runs(&mut self.report.duplicated_runs, w, s);
                    }
                }
            }
        }
        self.report
    }
}

/// Extends the last run of `runs` with line `s` of writer `w`, or starts a
/// new run (at most ten are kept).
fn add_to_runs(runs: &mut Vec<(u32, u64, u64)>, w: u32, s: u64) {
    if let Some((lw, first, n)) = runs.last_mut()
        && *lw == w
        && *first + *n == s
    {
        *n += 1;
    } else if runs.len() < 10 {
        runs.push((w, s, 1));
    }
}
