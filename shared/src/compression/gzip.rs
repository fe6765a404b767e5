//! gzip, Kafka's codec 1 and the agent's default.
//!
//! Level 1 (the default everywhere) is our own encoder ([`super::fast_gzip`]);
//! levels 2 to 9 are zlib-rs's, through flate2.
//!
//! # Performance
//! Inflating is most of what a query scan and ingest verification cost.
//! A batch's gzip data is almost always one member whose trailer states its
//! size, so it is inflated in one call of libdeflate into a buffer of
//! exactly that size (about 1.5x zlib-rs's streaming decoder on stored
//! batches), checking the CRC-32, the size and that the member is the
//! whole input. Anything else (several members, a trailer that does not
//! match, corrupt data) takes flate2's streaming decoder, which has the
//! final word on what the bytes hold and on errors.

use std::io::Write;

use flate2::Compression as Level;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::libdeflate;
use super::{Codec, CompressionError, read_limited};

pub(super) fn compress_into(level: u32, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    if level == 1 && input.len() <= super::fast_gzip::MAX_INPUT {
        super::fast_gzip::compress_into(input, out);
        return Ok(());
    }
    let mut encoder = GzEncoder::new(out, Level::new(level.min(9)));
    encoder.write_all(input)?;
    encoder.finish()?;
    Ok(())
}

pub(super) fn decompress_into(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CompressionError> {
    // A stated size past the limit may be a bomb or garbage: the
    // streaming decoder tells which, reading at most `limit` bytes.
    if let Some(size) = stated_size(input).filter(|&s| s <= limit)
        && inflate_whole(libdeflate::Format::Gzip, input, size, out)
    {
        return Ok(());
    }
    read_limited(Codec::Gzip, MultiGzDecoder::new(input), out, limit)
}

/// The one-call inflate of a plain single member without its CRC-32
/// (see [`super::decompress_verified_into`]); false for anything else.
pub(super) fn inflate_verified(input: &[u8], out: &mut Vec<u8>, limit: usize) -> bool {
    // The plain 10-byte header of a single member: no optional fields.
    const HEADER: usize = 10;
    input.get(..4) == Some(&[0x1f, 0x8b, 8, 0][..])
        && stated_size(input).filter(|&s| s <= limit).is_some_and(|size| {
            input
                .get(HEADER..input.len().saturating_sub(8))
                .is_some_and(|deflate| inflate_whole(libdeflate::Format::Deflate, deflate, size, out))
        })
}

/// The size a gzip stream's trailer states (its last member's, modulo 2^32).
pub(super) fn stated_size(input: &[u8]) -> Option<usize> {
    let at = input.len().checked_sub(4)?;
    let word: [u8; 4] = input.get(at..)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(word)).ok()
}

/// Inflates a single-member gzip stream in one call into `out`, resized
/// to the size its trailer states; false when `input` is anything else.
fn inflate_whole(format: libdeflate::Format, input: &[u8], size: usize, out: &mut Vec<u8>) -> bool {
    // Resizing a reused buffer zeroes only what it grows by.
    if out.len() < size {
        out.resize(size, 0);
    } else {
        out.truncate(size);
    }
    libdeflate::inflate_exactly(format, input, out)
}
