//! Codecs for the records section of a batch: none and gzip.
//!
//! Decompression always takes an output limit: a batch a few KiB long may
//! inflate to gigabytes (a "gzip bomb"), and neither the collector nor a
//! consumer may let a client choose its memory use.
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

mod libdeflate;

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
    match codec {
        Codec::None => {
            out.clear();
            if input.len() > limit {
                return Err(CompressionError::TooLarge { limit });
            }
            out.extend_from_slice(input);
        }
        Codec::Gzip => {
            // A stated size past the limit may be a bomb or garbage: the
            // streaming decoder tells which, reading at most `limit` bytes.
            if let Some(size) = stated_gzip_size(input).filter(|&s| s <= limit)
                && inflate_whole(libdeflate::Format::Gzip, input, size, out)
            {
                return Ok(());
            }
            out.clear();
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

/// The size a gzip stream's trailer states (its last member's, modulo 2^32).
fn stated_gzip_size(input: &[u8]) -> Option<usize> {
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

/// As [`decompress_into`], for data whose integrity is already known:
/// records sections of stored batches, whose frame CRC-32C (covering the
/// compressed bytes) was checked on the way in and is checked on every
/// read. gzip's own CRC-32 of the output then adds nothing, and skipping
/// it saves about 4% of a scan. Every input [`decompress_into`] accepts
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
    // The plain 10-byte header of a single member: no optional fields.
    const HEADER: usize = 10;
    if codec == Codec::Gzip
        && input.get(..4) == Some(&[0x1f, 0x8b, 8, 0][..])
        && let Some(size) = stated_gzip_size(input).filter(|&s| s <= limit)
        && let Some(deflate) = input.get(HEADER..input.len().saturating_sub(8))
        && inflate_whole(libdeflate::Format::Deflate, deflate, size, out)
    {
        return Ok(());
    }
    decompress_into(codec, input, out, limit)
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
    fn several_members_are_all_read() {
        let mut packed = Vec::new();
        compress_into(Compression::Gzip { level: 1 }, b"first member, ", &mut packed).unwrap();
        compress_into(Compression::Gzip { level: 6 }, b"second member", &mut packed).unwrap();
        let mut out = b"stale bytes that must go".to_vec();
        decompress_into(Codec::Gzip, &packed, &mut out, 1 << 20).unwrap();
        assert_eq!(out, b"first member, second member");
        // Two identical members: same CRC and size as the first alone.
        let mut twice = Vec::new();
        compress_into(Compression::Gzip { level: 1 }, b"same", &mut twice).unwrap();
        let one = twice.clone();
        twice.extend_from_slice(&one);
        decompress_into(Codec::Gzip, &twice, &mut out, 1 << 20).unwrap();
        assert_eq!(out, b"samesame");
    }

    #[test]
    fn reused_buffer_holds_exactly_the_new_output() {
        let mut out = Vec::new();
        for input in [b"a longer first input".repeat(50), b"short".to_vec(), Vec::new()] {
            let mut packed = Vec::new();
            compress_into(Compression::Gzip { level: 1 }, &input, &mut packed).unwrap();
            decompress_into(Codec::Gzip, &packed, &mut out, 1 << 20).unwrap();
            assert_eq!(out, input);
        }
    }

    #[test]
    fn wrong_trailer_is_an_error() {
        let input = b"some text to protect".repeat(10);
        for at in [8, 4] {
            let mut packed = Vec::new();
            compress_into(Compression::Gzip { level: 1 }, &input, &mut packed).unwrap();
            let i = packed.len() - at;
            packed[i] ^= 1;
            let mut out = Vec::new();
            let err = decompress_into(Codec::Gzip, &packed, &mut out, 1 << 20).unwrap_err();
            assert!(matches!(err, CompressionError::Corrupt(_)), "byte -{at}: {err}");
        }
    }

    #[test]
    fn exactly_at_the_limit_is_fine() {
        let input = vec![7u8; 4096];
        let mut packed = Vec::new();
        compress_into(Compression::Gzip { level: 1 }, &input, &mut packed).unwrap();
        let mut out = Vec::new();
        decompress_into(Codec::Gzip, &packed, &mut out, 4096).unwrap();
        assert_eq!(out, input);
        let err = decompress_into(Codec::Gzip, &packed, &mut out, 4095).unwrap_err();
        assert!(matches!(err, CompressionError::TooLarge { limit: 4095 }));
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut out = Vec::new();
        let err = decompress_into(Codec::Gzip, b"\x1f\x8b\x08\x00garbage", &mut out, 1 << 20).unwrap_err();
        assert!(matches!(err, CompressionError::Corrupt(_)));
    }

    #[test]
    fn verified_path_gives_the_same_bytes() {
        let mut packed = Vec::new();
        compress_into(Compression::Gzip { level: 1 }, b"one member, ", &mut packed).unwrap();
        let single = packed.clone();
        compress_into(Compression::Gzip { level: 1 }, b"then another", &mut packed).unwrap();
        for input in [&single, &packed] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            decompress_into(Codec::Gzip, input, &mut a, 1 << 20).unwrap();
            decompress_verified_into(Codec::Gzip, input, &mut b, 1 << 20).unwrap();
            assert_eq!(a, b);
        }
        let mut out = Vec::new();
        let err = decompress_verified_into(Codec::Gzip, &single, &mut out, 3).unwrap_err();
        assert!(matches!(err, CompressionError::TooLarge { limit: 3 }));
    }

    proptest::proptest! {
        /// A flipped byte anywhere gives an error or the original bytes
        /// (the header's time and OS fields are not covered by the CRC),
        /// never different bytes and never a panic.
        #[test]
        fn a_flipped_byte_never_changes_the_output(
            input in proptest::collection::vec(0u8..4, 0..2000),
            at in 0usize..10_000,
            bit in 0u8..8,
        ) {
            let mut packed = Vec::new();
            compress_into(Compression::Gzip { level: 1 }, &input, &mut packed).unwrap();
            let at = at % packed.len();
            packed[at] ^= 1 << bit;
            let mut out = Vec::new();
            if decompress_into(Codec::Gzip, &packed, &mut out, 1 << 20).is_ok() {
                proptest::prop_assert_eq!(&out, &input);
            }
            // Without gzip's CRC a flip may go unseen, but never a panic.
            let _ = decompress_verified_into(Codec::Gzip, &packed, &mut out, 1 << 20);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            let _ = decompress_into(Codec::Gzip, &input, &mut out, 1 << 16);
            proptest::prop_assert!(out.len() <= (1 << 16) + 1);
        }
    }
}
