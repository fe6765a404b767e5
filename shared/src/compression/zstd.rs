//! zstd, Kafka's codec 4 (ruzstd, pure Rust): read from producers; written
//! only to re-encode a stored zstd batch (ruzstd's encoder is slow, so the
//! agent does not offer it).

use std::io::Read;

use ruzstd::decoding::StreamingDecoder;
use ruzstd::encoding::{CompressionLevel, compress_to_vec};

use super::{Codec, CompressionError};

/// The largest window a frame may ask for. The decoder reserves it up
/// front, so without a cap a few bytes of header could claim 128 MiB per
/// request; zstd's levels 1-19 use windows of at most 8 MiB.
const MAX_WINDOW: u64 = 8 << 20;

pub(super) fn compress_into(input: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&compress_to_vec(input, CompressionLevel::Fastest));
}

pub(super) fn decompress_into(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CompressionError> {
    out.clear();
    if input.is_empty() {
        return Err(CompressionError::corrupt_msg(Codec::Zstd, "empty input, no zstd frame"));
    }
    let mut rest = input;
    // Several frames one after the other are one stream, as zstd's CLI reads them.
    while !rest.is_empty() {
        let room = u64::try_from(limit.saturating_sub(out.len()))
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let frame = StreamingDecoder::new_with_max_window_size(&mut rest, MAX_WINDOW)
            .map_err(|e| CompressionError::corrupt(Codec::Zstd, std::io::Error::other(e)))?;
        frame
            .take(room)
            .read_to_end(out)
            .map_err(|e| CompressionError::corrupt(Codec::Zstd, e))?;
        if out.len() > limit {
            return Err(CompressionError::TooLarge { limit });
        }
    }
    Ok(())
}
