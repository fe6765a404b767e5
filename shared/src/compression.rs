//! Codecs for the records section of a batch: none and gzip.
//!
//! Decompression always takes an output limit: a batch a few KiB long may
//! inflate to gigabytes (a "gzip bomb"), and neither the collector nor a
//! consumer may let a client choose its memory use.

use std::io::{Read, Write};

use flate2::Compression as Level;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

/// A codec logpost reads and writes, with its Kafka attribute id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
}

impl Codec {
    /// The codec for Kafka's attribute bits 0-2, if supported.
    pub fn from_id(id: u8) -> Option<Codec> {
        match id {
            0 => Some(Codec::None),
            1 => Some(Codec::Gzip),
            _ => None,
        }
    }

    /// Kafka's id for this codec.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
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
}

impl Compression {
    /// The codec, without the level.
    pub fn codec(self) -> Codec {
        match self {
            Compression::None => Codec::None,
            Compression::Gzip { .. } => Codec::Gzip,
        }
    }
}

/// Why a records section could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("decompressed size exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("corrupt gzip data: {0}")]
    Corrupt(#[source] std::io::Error),
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
        Compression::Gzip { level } => {
            let mut encoder = GzEncoder::new(out, Level::new(level.min(9)));
            encoder.write_all(input)?;
            encoder.finish()?;
            Ok(())
        }
    }
}

/// Replaces the contents of `out` with `input` decompressed by `codec`,
/// failing once the output would exceed `limit` bytes.
///
/// # Errors
/// [`CompressionError::TooLarge`] past the limit, [`CompressionError::Corrupt`]
/// for data the codec cannot read.
pub fn decompress_into(codec: Codec, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CompressionError> {
    out.clear();
    match codec {
        Codec::None => {
            if input.len() > limit {
                return Err(CompressionError::TooLarge { limit });
            }
            out.extend_from_slice(input);
        }
        Codec::Gzip => {
            // Reading one byte past the limit tells "exactly at" from "over".
            let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
            MultiGzDecoder::new(input)
                .take(cap)
                .read_to_end(out)
                .map_err(CompressionError::Corrupt)?;
            if out.len() > limit {
                return Err(CompressionError::TooLarge { limit });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trips() {
        let input = b"hello hello hello hello".repeat(100);
        let mut packed = Vec::new();
        compress_into(Compression::Gzip { level: 1 }, &input, &mut packed).unwrap();
        assert!(packed.len() < input.len());
        let mut out = Vec::new();
        decompress_into(Codec::Gzip, &packed, &mut out, input.len()).unwrap();
        assert_eq!(out, input);
    }

    #[test]
    fn bomb_stops_at_limit() {
        let input = vec![0u8; 10 << 20];
        let mut packed = Vec::new();
        compress_into(Compression::Gzip { level: 9 }, &input, &mut packed).unwrap();
        let mut out = Vec::new();
        let err = decompress_into(Codec::Gzip, &packed, &mut out, 1 << 20).unwrap_err();
        assert!(matches!(err, CompressionError::TooLarge { limit } if limit == 1 << 20));
        assert!(out.len() <= (1 << 20) + 1, "read past the limit: {}", out.len());
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut out = Vec::new();
        let err = decompress_into(Codec::Gzip, b"\x1f\x8b\x08\x00garbage", &mut out, 1 << 20).unwrap_err();
        assert!(matches!(err, CompressionError::Corrupt(_)));
    }
}
