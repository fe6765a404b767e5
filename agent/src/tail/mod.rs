//! Tailing files, split by concept as in Vector's file source:
//!
//! - [`discover`]: globs to paths, non-files reported and skipped.
//! - [`fingerprint`]: file identity (device+inode, head checksum).
//! - [`framing`]: bytes to lines (LF/CRLF, partial and over-long lines).
//! - [`tracked`]: one file's read and acknowledgement state.
//! - [`checkpoint`]: acknowledged positions on disk, written atomically.
//! - [`checkpointing`]: when the loop writes them.
//! - [`watch`]: inotify events and the polling fallback.
//! - [`lifecycle`]: which files exist, where they start, the open-handle cap.
//! - [`restart`]: contents and rotated files found again after a restart.
//! - [`copies`]: copytruncate's copies, read from where the original stopped.
//! - [`held`]: new files held back while they may be copies.
//! - [`compressed`]: gzip files holding lines rotated away unread.
//! - [`sync`]: asking the collector where each file resumes (exactly once).
//! - [`file_server`]: the loop on its own thread that ties them together.

pub mod checkpoint;
pub mod checkpointing;
pub mod compressed;
pub mod copies;
pub mod discover;
pub mod emit;
pub mod file_server;
pub mod fingerprint;
pub mod framing;
pub mod held;
pub mod lifecycle;
pub mod reading;
pub mod restart;
pub mod sync;
pub mod tracked;
pub mod watch;
