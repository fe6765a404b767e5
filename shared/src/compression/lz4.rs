//! lz4, Kafka's codec 3: the LZ4 frame format (KIP-57), which Kafka's Java
//! client and librdkafka write and read.
//!
//! Written as Kafka's Java client writes it: independent 64 KiB blocks, no
//! content size, no checksums (the batch's CRC-32C covers the compressed
//! bytes). Read: any standard frame, and several frames one after the
//! other, as the LZ4 frame format allows.

use std::io::Read;

use lz4_flex::frame::FrameDecoder;

use super::{Codec, CompressionError};

/// A frame's magic number, little-endian.
const MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
/// Uncompressed size of the blocks we write.
const BLOCK: usize = 64 << 10;
/// Magic, FLG, BD and the header checksum.
const MIN_FRAME: usize = 7;

pub(super) fn compress_into(input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    // Frame descriptor: version 01 and independent blocks; 64 KiB blocks.
    const FLG: u8 = 0b0110_0000;
    const BD: u8 = 4 << 4;
    // Written here rather than through lz4_flex's frame encoder, which
    // copies all input through a buffer of its own first (8% of the agent).
    out.reserve(input.len() / 3 + 64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[FLG, BD, (twox_hash::XxHash32::oneshot(0, &[FLG, BD]) >> 8) as u8]);
    let mut scratch = vec![0; lz4_flex::block::get_maximum_output_size(BLOCK)];
    for block in input.chunks(BLOCK) {
        let packed = lz4_flex::block::compress_into(block, &mut scratch).map_err(std::io::Error::other)?;
        // A block that does not shrink is stored as it is (the size's top bit).
        let (word, bytes) = match scratch.get(..packed) {
            Some(p) if packed < block.len() => (packed, p),
            _ => (block.len() | 0x8000_0000, block),
        };
        let word = u32::try_from(word).map_err(std::io::Error::other)?;
        out.extend_from_slice(&word.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    Ok(())
}

/// The fast path: frames of independent blocks without checksums or a
/// dictionary, as Kafka clients write them, decoded block by block
/// straight into `out` (the streaming decoder copies every byte once more
/// through its own buffer, a third of a scan), with every check the
/// streaming decoder makes on such a frame. False for anything else, or
/// on any error, which the streaming decoder then reports; `out` is then
/// garbage.
pub(super) fn decompress_plain(input: &[u8], out: &mut Vec<u8>, limit: usize) -> bool {
    let mut rest = input;
    let mut len = 0;
    loop {
        let Some(after) = decode_plain_frame(rest, out, &mut len, limit) else {
            return false;
        };
        rest = after;
        if rest.is_empty() {
            out.truncate(len);
            return true;
        }
    }
}

/// One frame at the start of `input` onto `out[*len..]`; what follows it.
fn decode_plain_frame<'a>(input: &'a [u8], out: &mut Vec<u8>, len: &mut usize, limit: usize) -> Option<&'a [u8]> {
    const VERSION_MASK: u8 = 0b1100_0000;
    const VERSION_1: u8 = 0b0100_0000;
    const INDEPENDENT: u8 = 0b0010_0000;
    const CONTENT_SIZE: u8 = 0b0000_1000;
    // Block checksum, content checksum, reserved, dictionary id.
    const OTHERS: u8 = 0b0001_0111;
    let descriptor = input.strip_prefix(&MAGIC)?;
    let (&[flg, bd], rest) = descriptor.split_first_chunk::<2>()?;
    if flg & VERSION_MASK != VERSION_1 || flg & INDEPENDENT == 0 || flg & OTHERS != 0 {
        return None;
    }
    let block_max = match (bd >> 4) & 0b111 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return None,
    };
    let (content_size, rest) = if flg & CONTENT_SIZE != 0 {
        let (size, rest) = rest.split_first_chunk::<8>()?;
        (Some(u64::from_le_bytes(*size)), rest)
    } else {
        (None, rest)
    };
    let (&checksum, mut rest) = rest.split_first()?;
    let described = descriptor.get(..descriptor.len() - rest.len() - 1)?;
    if (twox_hash::XxHash32::oneshot(0, described) >> 8) as u8 != checksum {
        return None;
    }
    let start = *len;
    loop {
        let (word, after) = rest.split_first_chunk::<4>()?;
        let word = u32::from_le_bytes(*word);
        if word == 0 {
            rest = after;
            break;
        }
        let size = usize::try_from(word & 0x7fff_ffff).ok()?;
        if size > block_max || after.len() < size {
            return None;
        }
        let (block, after) = after.split_at(size);
        // Room for a whole block; zeroing only what a reused buffer grows by.
        let end = len.checked_add(block_max)?;
        if out.len() < end {
            out.resize(end, 0);
        }
        let room = out.get_mut(*len..end)?;
        let written = if word & 0x8000_0000 != 0 {
            room.get_mut(..size)?.copy_from_slice(block);
            size
        } else {
            lz4_flex::block::decompress_into(block, room).ok()?
        };
        *len += written;
        if *len > limit {
            return None;
        }
        rest = after;
    }
    if content_size.is_some_and(|c| u64::try_from(*len - start).ok() != Some(c)) {
        return None;
    }
    Some(rest)
}

pub(super) fn decompress_into(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CompressionError> {
    if decompress_plain(input, out, limit) {
        return Ok(());
    }
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
