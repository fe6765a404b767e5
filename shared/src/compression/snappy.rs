//! snappy, Kafka's codec 2, in both of the shapes producers send: a raw
//! snappy block (librdkafka) or xerial's framing (Kafka's Java client: an
//! 8-byte magic, two version words, then length-prefixed raw blocks).
//!
//! A raw block states its decompressed length up front, so the limit is
//! checked before anything is allocated.

use snap::raw::{Decoder, Encoder, decompress_len};

use super::{Codec, CompressionError};

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Magic plus the version and minimum-compatible-version words.
const XERIAL_HEADER: usize = 16;

pub(super) fn compress_into(input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    let block = Encoder::new().compress_vec(input).map_err(std::io::Error::other)?;
    out.extend_from_slice(&block);
    Ok(())
}

pub(super) fn decompress_into(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CompressionError> {
    out.clear();
    let mut decoder = Decoder::new();
    let Some(mut chunks) = input.strip_prefix(XERIAL_MAGIC.as_slice()) else {
        return append_block(&mut decoder, input, out, limit);
    };
    chunks = chunks
        .get(XERIAL_HEADER - XERIAL_MAGIC.len()..)
        .ok_or_else(|| CompressionError::corrupt_msg(Codec::Snappy, "xerial header cut short"))?;
    while !chunks.is_empty() {
        let (len, rest) = chunks
            .split_first_chunk::<4>()
            .ok_or_else(|| CompressionError::corrupt_msg(Codec::Snappy, "xerial chunk length cut short"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if rest.len() < len {
            return Err(CompressionError::corrupt_msg(Codec::Snappy, "xerial chunk cut short"));
        }
        let (block, after) = rest.split_at(len);
        append_block(&mut decoder, block, out, limit)?;
        chunks = after;
    }
    Ok(())
}

/// Decompresses one raw block onto the end of `out`.
fn append_block(decoder: &mut Decoder, block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CompressionError> {
    let len = decompress_len(block).map_err(|e| CompressionError::corrupt(Codec::Snappy, std::io::Error::other(e)))?;
    let start = out.len();
    if start.saturating_add(len) > limit {
        return Err(CompressionError::TooLarge { limit });
    }
    out.resize(start + len, 0);
    let (_, room) = out.split_at_mut(start);
    let written = decoder
        .decompress(block, room)
        .map_err(|e| CompressionError::corrupt(Codec::Snappy, std::io::Error::other(e)))?;
    out.truncate(start + written);
    Ok(())
}
