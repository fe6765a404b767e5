//! Codecs for the records section of a batch: Kafka's five (none, gzip,
//! snappy, lz4, zstd).
//!
//! Decompression always takes an output limit: a batch a few KiB long may
//! inflate to gigabytes (a "bomb"), and neither the collector nor a
//! consumer may let a client choose its memory use.
//!
//! gzip is the agent's default and the best-tested path (see [`gzip`]);
//! lz4 is the agent's fast alternative; snappy and zstd are read from
//! Kafka producers and written only where a stored batch must be
//! re-encoded in its own codec (zstd's pure-Rust encoder is slow).
//!
//! # Layout
//! - [`gzip`]: [`fast_gzip`] to compress at level 1, flate2 (zlib-rs) at
//!   2-9, libdeflate in one call to inflate, flate2's streaming decoder as
//!   the fallback.
//! - [`fast_gzip`]: a one-pass deflate encoder for whole records sections.
//! - [`lz4`]: the LZ4 frame format, as Kafka (KIP-57) and librdkafka use it.
//! - [`snappy`]: raw snappy blocks and the xerial framing of Java clients.
//! - [`zstd`]: zstd frames (ruzstd).

mod fast_gzip;
mod gzip;
mod libdeflate;
mod lz4;
mod snappy;
mod zstd;

/// A codec logpost reads and writes, with its Kafka attribute id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec for Kafka's attribute bits 0-2, if supported.
    pub fn from_id(id: u8) -> Option<Codec> {
        match id {
            0 => Some(Codec::None),
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// Kafka's id for this codec.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// The codec's name, as Kafka's `compression.type` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// How to write this codec again (re-encoding a stored batch in its
    /// own codec): the fastest setting of each.
    pub fn fastest(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip { level: 1 },
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// A codec with its level: what an encoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// gzip at `level` 0-9; 1 is the fastest and the agent's default.
    Gzip {
        level: u32,
    },
    /// Raw snappy blocks, as librdkafka writes them.
    Snappy,
    /// An LZ4 frame of independent 64 KiB blocks, as Kafka's Java client
    /// writes them (and reads: it decodes each block on its own).
    Lz4,
    /// A zstd frame at ruzstd's fastest level (about zstd's level 1).
    Zstd,
}

impl Compression {
    /// The codec a config names for batches logpost writes itself (the
    /// agent's `batch.compression`, the collector's `loki.compression`);
    /// `gzip_level` applies to gzip.
    ///
    /// # Errors
    /// An unknown name, or zstd (read from Kafka producers, but the
    /// pure-Rust encoder compresses slower than gzip here): a message for
    /// the config error.
    pub fn from_config_name(name: &str, gzip_level: u32) -> Result<Compression, String> {
        match name {
            "gzip" => Ok(Compression::Gzip { level: gzip_level }),
            "lz4" => Ok(Compression::Lz4),
            "snappy" => Ok(Compression::Snappy),
            "none" => Ok(Compression::None),
            "zstd" => Err("zstd is not written by logpost (use \"lz4\" for speed or \"gzip\" for size)".to_owned()),
            other => Err(format!(
                "unknown codec {other:?} (use \"gzip\", \"lz4\", \"snappy\" or \"none\")"
            )),
        }
    }

    /// The codec, without the level.
    pub fn codec(self) -> Codec {
        match self {
            Compression::None => Codec::None,
            Compression::Gzip { .. } => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        }
    }
}

/// Why a records section could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("decompressed size exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("corrupt {codec} data: {source}")]
    Corrupt {
        codec: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl CompressionError {
    fn corrupt(codec: Codec, source: std::io::Error) -> Self {
        CompressionError::Corrupt {
            codec: codec.name(),
            source,
        }
    }

    fn corrupt_msg(codec: Codec, message: impl Into<String>) -> Self {
        Self::corrupt(
            codec,
            std::io::Error::new(std::io::ErrorKind::InvalidData, message.into()),
        )
    }
}

/// Appends `input` compressed with `compression` to `out`.
///
/// # Errors
/// Only what the encoder reports; writing into a `Vec` itself cannot fail.
pub fn compress_into(compression: Compression, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    match compression {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip { level } => gzip::compress_into(level, input, out),
        Compression::Snappy => snappy::compress_into(input, out),
        Compression::Lz4 => lz4::compress_into(input, out),
        Compression::Zstd => {
            zstd::compress_into(input, out);
            Ok(())
        }
    }
}

/// Replaces the contents of `out` with `input` decompressed by `codec`,
/// failing once the output would exceed `limit` bytes.
///
/// # Errors
/// [`CompressionError::TooLarge`] past the limit, [`CompressionError::Corrupt`]
/// for data the codec cannot read (or bytes after its end).
pub fn decompress_into(codec: Codec, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CompressionError> {
    match codec {
        Codec::None => {
            out.clear();
            if input.len() > limit {
                return Err(CompressionError::TooLarge { limit });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        Codec::Gzip => gzip::decompress_into(input, out, limit),
        Codec::Snappy => snappy::decompress_into(input, out, limit),
        Codec::Lz4 => lz4::decompress_into(input, out, limit),
        Codec::Zstd => zstd::decompress_into(input, out, limit),
    }
}

/// The decompressed size `input` states, where its codec's format says it
/// up front or in a trailer (gzip's ISIZE, modulo 2^32): a hint for sizing
/// the output buffer, not a promise.
pub fn stated_size(codec: Codec, input: &[u8]) -> Option<usize> {
    match codec {
        Codec::Gzip => gzip::stated_size(input),
        Codec::None => Some(input.len()),
        Codec::Snappy | Codec::Lz4 | Codec::Zstd => None,
    }
}

/// As [`decompress_into`], for data whose integrity is already known:
/// records sections of stored batches, whose frame CRC-32C (covering the
/// compressed bytes) was checked on the way in and is checked on every
/// read. A codec's own checksum of the output then adds nothing (gzip's
/// CRC-32 is about 4% of a scan). Every input [`decompress_into`] accepts
/// gives the same output here.
///
/// # Errors
/// As [`decompress_into`].
pub fn decompress_verified_into(
    codec: Codec,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), CompressionError> {
    if codec == Codec::Gzip && gzip::inflate_verified(input, out, limit) {
        return Ok(());
    }
    decompress_into(codec, input, out, limit)
}

/// Reads `reader` to its end into `out` (cleared first), failing once the
/// output would pass `limit`: the streaming decoders' shared bomb guard.
fn read_limited(
    codec: Codec,
    reader: impl std::io::Read,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), CompressionError> {
    use std::io::Read;
    out.clear();
    // Reading one byte past the limit tells "exactly at" from "over".
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(out)
        .map_err(|e| CompressionError::corrupt(codec, e))?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge { limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
