//! Injected i/o failures for tests: the small hook at the store's i/o
//! boundary that lets tests fail a segment write (ENOSPC, EIO) or an fsync
//! without a real broken disk. Production code holds `None` and pays one
//! branch per append.

use std::io;
use std::sync::Mutex;

/// Failures to inject into the next segment operations.
#[derive(Debug, Default)]
pub struct Faults {
    write: Mutex<Option<i32>>,
    sync: Mutex<Option<i32>>,
}

impl Faults {
    /// No failures.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every write fails with `errno` until cleared with `None`.
    pub fn fail_writes(&self, errno: Option<i32>) {
        *self.write.lock().unwrap_or_else(|e| e.into_inner()) = errno;
    }

    /// Every fsync fails with `errno` until cleared with `None`.
    pub fn fail_syncs(&self, errno: Option<i32>) {
        *self.sync.lock().unwrap_or_else(|e| e.into_inner()) = errno;
    }

    /// The error the next write must return, if any.
    pub fn write_error(&self) -> Option<io::Error> {
        self.write
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(io::Error::from_raw_os_error)
    }

    /// The error the next fsync must return, if any.
    pub fn sync_error(&self) -> Option<io::Error> {
        self.sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(io::Error::from_raw_os_error)
    }
}
