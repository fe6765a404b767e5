//! Reading from the tailing loop: changed files read in bounded chunks
//! and their lines emitted into the batcher, and partial lines or
//! multiline events flushed once idle.

use std::collections::HashSet;
use std::time::Instant;

use super::emit::{EmitCtx, Sink, emit_lines, flush_multiline};
use super::file_server::{FileServer, unix_ms};
use super::fingerprint::FileKey;

/// Reads per file per pass, so that one busy file cannot starve the rest.
const READS_PER_PASS: usize = 8;

impl FileServer {
    /// Reads every file in `keys` as far as it goes (bounded per pass).
    pub(super) fn read_files(&mut self, keys: HashSet<FileKey>, now: Instant) -> usize {
        let mut total = 0;
        let now_ms = unix_ms();
        let mut sealed = Vec::new();
        let mut heads = None;
        for key in keys {
            if !self.files.get(&key).is_some_and(|f| f.synced)
                || !self.ensure_open(key)
                || !self.copy_check_passed(key, now, &mut heads)
                || !self.original_acked(key)
            {
                continue;
            }
            for _ in 0..READS_PER_PASS {
                let Some(f) = self.files.get_mut(&key) else { break };
                let n = match f.read_chunk(&mut self.read_buf) {
                    Ok(n) => n,
                    Err(e) => {
                        if self.warned.insert((f.path.clone(), e.to_string())) {
                            tracing::warn!(path = %f.path.display(), error = %e, "read failed; will retry");
                        }
                        break;
                    }
                };
                if n == 0 {
                    f.at_eof = true;
                    self.check_truncation(key, now, &mut sealed);
                    break;
                }
                // Before these bytes are used: is this still the content
                // read so far? Truncated and rewritten past the read
                // position faster than the agent looked, it is not, and
                // reading on would send the tail of another line.
                if f.needs_verify(now) {
                    match f.content_unchanged() {
                        Ok(true) => f.verified_at = Some(now),
                        Ok(false) => {
                            self.content_replaced(key, now, &mut sealed, "file rewritten since it was last read");
                            break;
                        }
                        Err(e) => {
                            if self.warned.insert((f.path.clone(), e.to_string())) {
                                tracing::warn!(path = %f.path.display(), error = %e, "read failed; will retry");
                            }
                            break;
                        }
                    }
                }
                f.at_eof = false;
                f.pristine = false;
                f.last_growth = now;
                f.refresh_head(f.framer.next_pos() + n as u64);
                total += n;
                self.stats.bytes += n as u64;
                if let Some(s) = self.stats.per_source.get_mut(f.source) {
                    s.bytes += n as u64;
                }
                let data = self.read_buf.get(..n).unwrap_or_default();
                let Some(ctx) = EmitCtx::for_source(
                    &self.cfg,
                    &self.source_headers,
                    &self.flags,
                    &mut self.batcher,
                    f.source,
                    now_ms,
                    now,
                ) else {
                    break;
                };
                let mut sink = Sink {
                    batcher: &mut self.batcher,
                    stats: &mut self.stats,
                    sealed: &mut sealed,
                    scratch: &mut self.scratch,
                };
                emit_lines(f, &ctx, &mut sink, |framer, emit| framer.feed(data, emit));
                f.tail = super::fingerprint::Tail::of(data);
                for req in sealed.drain(..) {
                    self.send(req);
                }
                if n < self.read_buf.len() {
                    break;
                }
            }
        }
        total
    }

    /// Emits partial lines idle past `partial_line_timeout` and multiline
    /// events whose flush timeout passed.
    pub(super) fn flush_idle_partials(&mut self, now: Instant) {
        let timeout = self.cfg.tail.partial_line_timeout;
        let mut sealed = Vec::new();
        let now_ms = unix_ms();
        for f in self.files.values_mut() {
            let partial_due = f.framer.partial_len() > 0 && f.at_eof && now.duration_since(f.last_growth) >= timeout;
            if !partial_due && f.multiline.pending_bytes() == 0 {
                continue;
            }
            let Some(ctx) = EmitCtx::for_source(
                &self.cfg,
                &self.source_headers,
                &self.flags,
                &mut self.batcher,
                f.source,
                now_ms,
                now,
            ) else {
                continue;
            };
            let mut sink = Sink {
                batcher: &mut self.batcher,
                stats: &mut self.stats,
                sealed: &mut sealed,
                scratch: &mut self.scratch,
            };
            if partial_due {
                emit_lines(f, &ctx, &mut sink, |framer, emit| {
                    framer.flush(emit);
                });
            }
            flush_multiline(f, &ctx, &mut sink, false);
        }
        for req in sealed {
            self.send(req);
        }
    }
}
