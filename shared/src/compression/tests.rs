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
        assert!(matches!(err, CompressionError::Corrupt { .. }), "byte -{at}: {err}");
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
    assert!(matches!(err, CompressionError::Corrupt { .. }));
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

/// Every codec logpost writes, at its fastest setting.
const ALL: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

fn pack(codec: Codec, input: &[u8]) -> Vec<u8> {
    let mut packed = Vec::new();
    compress_into(codec.fastest(), input, &mut packed).unwrap();
    packed
}

/// Log-like text: repetitive, as the records sections codecs see.
fn log_text(lines: usize) -> Vec<u8> {
    let mut text = Vec::new();
    for i in 0..lines {
        text.extend_from_slice(
            format!(
                "2026-12-01T10:00:{:02} host=web-{:02} GET /api/{i} 200 {}ms\n",
                i % 60,
                i % 7,
                i % 113
            )
            .as_bytes(),
        );
    }
    text
}

#[test]
fn every_codec_round_trips_and_ids_match_kafka() {
    // 64 KiB blocks: 300 KiB of text spans several lz4 blocks and snappy's 64 KiB fragments.
    let big = log_text(8_000);
    assert!(big.len() > 300 << 10);
    for codec in ALL {
        assert_eq!(Codec::from_id(codec.id()), Some(codec));
        assert_eq!(codec.fastest().codec(), codec);
        for input in [&b"x"[..], b"one line\n", &big] {
            let packed = pack(codec, input);
            if codec != Codec::None && input.len() > 1000 {
                assert!(
                    packed.len() < input.len() / 3,
                    "{codec:?} packed {} of {}",
                    packed.len(),
                    input.len()
                );
            }
            let (mut out, mut verified) = (b"stale".to_vec(), b"stale".to_vec());
            decompress_into(codec, &packed, &mut out, input.len()).unwrap();
            assert_eq!(out, input, "{codec:?}");
            decompress_verified_into(codec, &packed, &mut verified, input.len()).unwrap();
            assert_eq!(verified, input, "{codec:?} verified");
        }
    }
    assert_eq!(Codec::from_id(5), None);
    assert_eq!(Codec::from_id(7), None);
}

#[test]
fn every_codec_stops_at_the_limit() {
    // A bomb: 16 MiB of one byte packs into a few KiB (snappy's ratio is capped near 21x).
    let input = vec![b'a'; 16 << 20];
    for codec in ALL {
        let packed = pack(codec, &input);
        let mut out = Vec::new();
        let err = decompress_into(codec, &packed, &mut out, 1 << 20).unwrap_err();
        assert!(
            matches!(err, CompressionError::TooLarge { limit } if limit == 1 << 20),
            "{codec:?}: {err}"
        );
        assert!(
            out.len() <= (1 << 20) + 1,
            "{codec:?} read past the limit: {}",
            out.len()
        );
        let exact = &input[..4096];
        let packed = pack(codec, exact);
        decompress_into(codec, &packed, &mut out, 4096).unwrap();
        assert_eq!(out, exact, "{codec:?} exactly at the limit");
        let err = decompress_into(codec, &packed, &mut out, 4095).unwrap_err();
        assert!(
            matches!(err, CompressionError::TooLarge { limit: 4095 }),
            "{codec:?}: {err}"
        );
    }
}

#[test]
fn garbage_and_truncation_are_errors_naming_the_codec() {
    let text = log_text(200);
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let packed = pack(codec, &text);
        let mut out = Vec::new();
        for bad in [
            &b""[..],
            b"\xff\xfe garbage that is no frame",
            &packed[..packed.len() / 2],
        ] {
            let err = decompress_into(codec, bad, &mut out, 1 << 20).unwrap_err();
            assert!(
                matches!(&err, CompressionError::Corrupt { codec: name, .. } if *name == codec.name()),
                "{codec:?} on {} bytes: {err}",
                bad.len()
            );
            assert!(err.to_string().contains(codec.name()), "{err}");
        }
    }
}

#[test]
fn lz4_frames_are_what_kafka_clients_read() {
    let packed = pack(Codec::Lz4, &log_text(2_000));
    // Magic, then FLG: version 01, blocks independent, no checksums, no content size.
    assert_eq!(&packed[..4], &0x184D_2204u32.to_le_bytes());
    assert_eq!(packed[4], 0b0110_0000, "FLG");
    assert_eq!(packed[5], 4 << 4, "BD: 64 KiB blocks");
    // Two frames one after the other are one stream; bytes after a frame are an error.
    let mut two = pack(Codec::Lz4, b"first frame, ");
    two.extend_from_slice(&pack(Codec::Lz4, b"second frame"));
    let mut out = Vec::new();
    decompress_into(Codec::Lz4, &two, &mut out, 1 << 20).unwrap();
    assert_eq!(out, b"first frame, second frame");
    // Incompressible bytes: blocks stored as they are, read back exactly.
    let mut x = 0x9e37_79b9_u32;
    let noise: Vec<u8> = (0..150_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let packed = pack(Codec::Lz4, &noise);
    assert!(packed.len() < noise.len() + 64, "{} bytes", packed.len());
    decompress_into(Codec::Lz4, &packed, &mut out, noise.len()).unwrap();
    assert!(out == noise);
    // The streaming decoder reads our frames too (the path errors take).
    let mut streamed = Vec::new();
    std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(&packed[..]), &mut streamed).unwrap();
    assert!(streamed == noise);
    let mut trailing = pack(Codec::Lz4, b"a frame");
    trailing.extend_from_slice(b"junk");
    assert!(decompress_into(Codec::Lz4, &trailing, &mut out, 1 << 20).is_err());
}

/// An LZ4 frame with the given settings, through lz4_flex's encoder.
fn lz4_frame(input: &[u8], block: lz4_flex::frame::BlockSize, linked: bool, size: bool, checksums: bool) -> Vec<u8> {
    use std::io::Write;
    let mut info = lz4_flex::frame::FrameInfo::new();
    info.block_size = block;
    if linked {
        info.block_mode = lz4_flex::frame::BlockMode::Linked;
    }
    if size {
        info.content_size = Some(input.len() as u64);
    }
    info.block_checksums = checksums;
    info.content_checksum = checksums;
    let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
    e.write_all(input).unwrap();
    e.finish().unwrap()
}

#[test]
fn lz4_fast_path_matches_the_streaming_decoder() {
    use lz4_flex::frame::BlockSize;
    // Log text with an incompressible stretch (stored as a raw block).
    let mut input = log_text(6_000);
    let mut x = 0x2545_f491_u32;
    input.extend((0..200_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    input.extend(log_text(100));
    for block in [
        BlockSize::Max64KB,
        BlockSize::Max256KB,
        BlockSize::Max1MB,
        BlockSize::Max4MB,
    ] {
        for (linked, size, checksums) in [
            (false, false, false),
            (false, true, false),
            (true, false, false),
            (false, false, true),
        ] {
            let frame = lz4_frame(&input, block, linked, size, checksums);
            let mut out = b"stale".repeat(1000);
            decompress_verified_into(Codec::Lz4, &frame, &mut out, input.len()).unwrap();
            assert!(
                out == input,
                "{block:?} linked {linked} size {size} checksums {checksums}"
            );
            let fast = lz4::decompress_plain(&frame, &mut out, input.len());
            assert_eq!(
                fast,
                !linked && !checksums,
                "{block:?} linked {linked} checksums {checksums}: fast path taken?"
            );
            let err = decompress_verified_into(Codec::Lz4, &frame, &mut out, input.len() - 1).unwrap_err();
            assert!(matches!(err, CompressionError::TooLarge { .. }), "{err}");
        }
    }
    // A wrong header checksum is refused, as Kafka clients refuse it.
    let mut frame = lz4_frame(b"some bytes", BlockSize::Max64KB, false, false, false);
    frame[6] ^= 1;
    let mut out = Vec::new();
    assert!(!lz4::decompress_plain(&frame, &mut out, 1 << 20));
    let err = decompress_into(Codec::Lz4, &frame, &mut out, 1 << 20).unwrap_err();
    assert!(matches!(err, CompressionError::Corrupt { codec: "lz4", .. }), "{err}");
    // A content size that does not match is left to the streaming decoder's error.
    let mut frame = lz4_frame(b"twelve bytes", BlockSize::Max64KB, false, true, false);
    frame[6] = 13;
    assert!(!lz4::decompress_plain(&frame, &mut out, 1 << 20));
    assert!(decompress_verified_into(Codec::Lz4, &frame, &mut out, 1 << 20).is_err());
}

#[test]
fn snappy_reads_xerial_framing_of_java_clients() {
    let (a, b) = (log_text(300), b"and a second chunk".to_vec());
    let mut framed = b"\x82SNAPPY\x00".to_vec();
    framed.extend_from_slice(&1u32.to_be_bytes());
    framed.extend_from_slice(&1u32.to_be_bytes());
    for chunk in [&a, &b] {
        let block = pack(Codec::Snappy, chunk);
        framed.extend_from_slice(&u32::try_from(block.len()).unwrap().to_be_bytes());
        framed.extend_from_slice(&block);
    }
    let mut out = Vec::new();
    decompress_into(Codec::Snappy, &framed, &mut out, 1 << 20).unwrap();
    assert_eq!(out, [a.as_slice(), b.as_slice()].concat());
    let err = decompress_into(Codec::Snappy, &framed, &mut out, a.len()).unwrap_err();
    assert!(matches!(err, CompressionError::TooLarge { .. }));
    for cut in [12, framed.len() - 3] {
        assert!(
            decompress_into(Codec::Snappy, &framed[..cut], &mut out, 1 << 20).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn zstd_reads_several_frames_and_refuses_huge_windows() {
    let mut two = pack(Codec::Zstd, b"first, ");
    two.extend_from_slice(&pack(Codec::Zstd, b"second"));
    let mut out = Vec::new();
    decompress_into(Codec::Zstd, &two, &mut out, 1 << 20).unwrap();
    assert_eq!(out, b"first, second");
    // A frame header asking for a 1 GiB window (no single segment, window
    // descriptor exponent 20): refused before anything is reserved.
    let huge = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 20 << 3, 0x01, 0x00, 0x00];
    let err = decompress_into(Codec::Zstd, &huge, &mut out, 1 << 20).unwrap_err();
    assert!(matches!(err, CompressionError::Corrupt { codec: "zstd", .. }), "{err}");
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
        for codec in ALL {
            let _ = decompress_into(codec, &input, &mut out, 1 << 16);
            proptest::prop_assert!(out.len() <= (1 << 16) + 1);
        }
    }

    /// Any codec: a flipped bit gives an error or some output within the
    /// limit, never a panic or a runaway allocation.
    #[test]
    fn a_flipped_bit_never_panics_any_codec(
        lines in 1usize..80,
        at in 0usize..10_000,
        bit in 0u8..8,
    ) {
        let input = log_text(lines);
        for codec in ALL {
            let mut packed = pack(codec, &input);
            let at = at % packed.len();
            packed[at] ^= 1 << bit;
            let mut out = Vec::new();
            let _ = decompress_into(codec, &packed, &mut out, 1 << 16);
            proptest::prop_assert!(out.len() <= (1 << 16) + 1);
            let _ = decompress_verified_into(codec, &packed, &mut out, 1 << 16);
        }
    }
}
