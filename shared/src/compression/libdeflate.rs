//! libdeflate's whole-buffer gzip decoder, behind a safe interface.
//!
//! Why unsafe here, against the workspace's `unsafe_code = "deny"`: the
//! safe wrapper crate (libdeflater) does not expose how much input a gzip
//! member used, and without that a stream of several members, or one with
//! bytes after its first member, cannot be told from a single member. So
//! this module calls libdeflate-sys directly; every unsafe block is one
//! FFI call whose pointer arguments come from live Rust slices.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_deflate_decompress_ex,
    libdeflate_free_decompressor, libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// One libdeflate decompressor (about 10 KiB of tables).
struct Decompressor(NonNull<libdeflate_decompressor>);

impl Decompressor {
    fn new() -> Option<Self> {
        // SAFETY: no arguments; a null result (out of memory) is handled.
        NonNull::new(unsafe { libdeflate_alloc_decompressor() }).map(Decompressor)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor, freed once.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

thread_local! {
    /// A decompressor is not for concurrent use: one per thread.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = RefCell::new(Decompressor::new());
}

/// Which libdeflate decoder to run.
#[derive(Clone, Copy)]
pub(super) enum Format {
    /// A gzip member: header, deflate data, CRC-32 and size checked.
    Gzip,
    /// Raw deflate data.
    Deflate,
}

/// Inflates `input` as exactly one gzip member (or deflate stream) into
/// `out`, which must be exactly as long as the content. True only when it
/// uses all of `input`, fills all of `out` and (gzip) its CRC-32 and size
/// match; false for anything else (the caller then takes a streaming
/// decoder).
pub(super) fn inflate_exactly(format: Format, input: &[u8], out: &mut [u8]) -> bool {
    DECOMPRESSOR.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            return false;
        };
        let Some(d) = guard.as_mut() else { return false };
        let (mut used_in, mut used_out) = (0usize, 0usize);
        // SAFETY: `d` is a live decompressor used by this thread only (the
        // RefCell borrow); libdeflate reads at most `input.len()` bytes
        // from `input` and writes at most `out.len()` bytes into `out`,
        // both valid for the call; the two results are plain locals.
        let decompress = match format {
            Format::Gzip => libdeflate_gzip_decompress_ex,
            Format::Deflate => libdeflate_deflate_decompress_ex,
        };
        let result = unsafe {
            decompress(
                d.0.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut used_in,
                &mut used_out,
            )
        };
        result == libdeflate_result_LIBDEFLATE_SUCCESS && used_in == input.len() && used_out == out.len()
    })
}
