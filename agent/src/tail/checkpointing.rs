//! Checkpoints from the tailing loop: acknowledgements applied to files,
//! and entries written (atomically, by `checkpoint.rs`) only when something
//! changed, and before a new file's first read.

use std::time::Instant;

use super::checkpoint::Entry;
use super::file_server::FileServer;

impl FileServer {
    /// Applies the last acknowledgements and writes the checkpoint.
    pub fn final_checkpoint(&mut self) {
        self.checkpoint();
    }

    pub(super) fn maybe_checkpoint(&mut self, now: Instant) {
        if now >= self.next_checkpoint {
            self.checkpoint();
            self.next_checkpoint = now + self.cfg.tail.checkpoint_interval;
        }
    }

    /// Applies the acknowledgements that arrived since the last call.
    pub(super) fn apply_acks(&mut self) {
        for (key, acked) in self.acks.take() {
            self.checkpoint_stale = true;
            if let Some(f) = self.files.get_mut(&key) {
                f.acknowledge(acked);
            }
        }
    }

    pub(super) fn checkpoint(&mut self) {
        if self.dry_run {
            return;
        }
        self.apply_acks();
        if !self.checkpoint_stale && !self.untracked_by_checkpoint {
            return;
        }
        self.checkpoint_stale = false;
        let sources = &self.cfg.sources;
        let mut entries: Vec<Entry> = self
            .files
            .values_mut()
            .map(|f| {
                let name = sources.get(f.source).map_or("", |s| s.name.as_str());
                f.entry(name)
            })
            .collect();
        entries.sort_by_key(|e| e.key);
        // Cleared even if the write fails: the periodic checkpoint retries
        // (no write attempt per loop pass on a full disk).
        self.untracked_by_checkpoint = false;
        let digest = super::file_server::checkpoint_digest(&entries);
        if self.last_saved == Some(digest) {
            return;
        }
        match self.checkpointer.save(&entries) {
            Ok(()) => {
                self.last_saved = Some(digest);
                self.last_checkpoint_write = Instant::now();
            }
            Err(e) => {
                tracing::warn!(error = %e, cause = %std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default(),
                "cannot write checkpoint; will retry")
            }
        }
    }
}
