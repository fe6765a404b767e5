//! lz4, Kafka's codec 3: the LZ4 frame format (KIP-57), which Kafka's Java
//! client and librdkafka write and read.
//!
//! Written as Kafka's Java client writes it: independent 64 KiB blocks, no
//! content size, no checksums (the batch's CRC-32C covers the compressed
//! bytes). Read: any standard frame, and several frames one after the
//! other, as the LZ4 frame format allows.

use std::io::{Read, Write};

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use super::{Codec, CompressionError};

/// A frame's magic number, little-endian.
const MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
/// Magic, FLG, BD and the header checksum.
const MIN_FRAME: usize = 7;

pub(super) fn compress_into(input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut info = FrameInfo::new();
    info.block_size = BlockSize::Max64KB;
    info.block_mode = BlockMode::Independent;
    let mut encoder = FrameEncoder::with_frame_info(info, out);
    encoder.write_all(input)?;
    encoder.finish().map_err(std::io::Error::other)?;
    Ok(())
}

pub(super) fn decompress_into(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CompressionError> {
    out.clear();
    let mut rest = input;
    loop {
        // The decoder reads a cut-short header as the end of the stream,
        // so each frame's start is checked here.
        if rest.len() < MIN_FRAME || !rest.starts_with(&MAGIC) {
            let what = if rest.len() == input.len() {
                "no LZ4 frame"
            } else {
                "bytes after the last frame"
            };
            return Err(CompressionError::corrupt_msg(Codec::Lz4, what));
        }
        // One byte past the limit tells "exactly at" from "over".
        let room = u64::try_from(limit.saturating_sub(out.len()))
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let mut frame = FrameDecoder::new(rest);
        (&mut frame)
            .take(room)
            .read_to_end(out)
            .map_err(|e| CompressionError::corrupt(Codec::Lz4, e))?;
        if out.len() > limit {
            return Err(CompressionError::TooLarge { limit });
        }
        rest = frame.into_inner();
        if rest.is_empty() {
            return Ok(());
        }
    }
}
