//! gzip level 1: a one-pass deflate encoder for whole records sections.
//!
//! Every agent batch and every stored Loki push is compressed at level 1,
//! and compression is most of the agent's CPU. This encoder writes the
//! same kind of stream as zlib-rs's level 1 (deflate_quick: one hash probe
//! per position, greedy matches, fixed Huffman codes) in one fixed-code
//! block, about 1.3x as fast on agent batches for the same size
//! (bench/RESULTS.md, "2026-12-06"), because a section is compressed whole:
//! - positions fit a `u32` table indexed by a 4-byte hash, sized to the
//!   input (up to 64 Ki entries: fewer collisions than zlib's 16 Ki-entry
//!   table, so more and longer matches), and no window ever slides;
//! - matches are extended 8 bytes at a time.
//!
//! Any inflater reads the result; tests check it against flate2's and
//! libdeflate's decoders.
// Indexes here are bounded by the loop conditions (reads stop 8 bytes
// before the end, a candidate lies before the position) or by the tables'
// sizes (a hash below 2^bits, a length of 4 to 258, a distance below the
// window); a property test feeds arbitrary bytes.
#![allow(clippy::indexing_slicing)]

use std::cell::RefCell;

/// gzip member header: no name, no time, "fastest" (XFL 4), unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
/// Deflate's window: the longest distance a match may reach back.
const WINDOW: usize = 32 * 1024;
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
/// Hash table entries: 2^MIN_TABLE_BITS to 2^MAX_TABLE_BITS, by input size.
const MIN_TABLE_BITS: u32 = 9;
const MAX_TABLE_BITS: u32 = 16;
/// Largest input: table positions are `u32`.
pub(super) const MAX_INPUT: usize = u32::MAX as usize;

thread_local! {
    /// The hash table, kept per thread: allocating 256 KiB per batch costs
    /// page faults, zeroing the part in use costs microseconds.
    static TABLE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Appends `input` as one gzip member to `out`.
///
/// # Panics
/// If `input` is longer than [`MAX_INPUT`] (callers use zlib-rs then).
pub(super) fn compress_into(input: &[u8], out: &mut Vec<u8>) {
    assert!(input.len() <= MAX_INPUT, "fast_gzip takes at most 4 GiB");
    // Room for a typical records section; fixed codes spend at most 9
    // bits on a byte, so incompressible input grows `out` as it goes.
    out.reserve(GZIP_HEADER.len() + input.len() / 4 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    TABLE.with_borrow_mut(|table| deflate(input, table, out));
    out.extend_from_slice(&crc32fast::hash(input).to_le_bytes());
    // ISIZE: the length modulo 2^32 (here: the length).
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
}

/// One final fixed-Huffman block holding all of `input`.
fn deflate(input: &[u8], table: &mut Vec<u32>, out: &mut Vec<u8>) {
    // About log2 of the input's length, without overflow.
    let bits = (usize::BITS - input.len().leading_zeros()).clamp(MIN_TABLE_BITS, MAX_TABLE_BITS);
    let size = 1usize << bits;
    if table.len() < size {
        table.resize(size, 0);
    }
    let table = &mut table[..size];
    table.fill(0);

    let mut w = BitWriter { out, buf: 0, len: 0 };
    w.put(0b011, 3); // BFINAL = 1, BTYPE = 01 (fixed codes)
    let mut p = 0;
    // Reads of 8 bytes at `p` stay inside the input; the last bytes are literals.
    let end = input.len();
    while p + 8 <= end {
        let here = read_u32(input, p);
        let slot = (here.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize;
        let candidate = table[slot] as usize;
        table[slot] = p as u32;
        let distance = p.wrapping_sub(candidate);
        // 0 (an empty slot read at position 0) and anything past the window fail.
        if distance.wrapping_sub(1) < WINDOW && read_u32(input, candidate) == here {
            let len = match_len(input, candidate, p, (end - p).min(MAX_MATCH));
            w.put_match(len, distance);
            p += len;
        } else {
            w.put_literal(input[p]);
            p += 1;
        }
    }
    for &byte in &input[p..] {
        w.put_literal(byte);
    }
    w.put(0, 7); // end of block: code 256 is seven zero bits
    w.finish();
}

/// Length of the match at `p` against `candidate`, whose first
/// [`MIN_MATCH`] bytes are known equal, at most `max`.
#[inline(always)]
fn match_len(input: &[u8], candidate: usize, p: usize, max: usize) -> usize {
    let mut len = MIN_MATCH;
    while len + 8 <= max {
        let diff = read_u64(input, p + len) ^ read_u64(input, candidate + len);
        if diff != 0 {
            return (len + (diff.trailing_zeros() / 8) as usize).min(max);
        }
        len += 8;
    }
    while len < max && input[p + len] == input[candidate + len] {
        len += 1;
    }
    len
}

#[inline(always)]
fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(word)
}

#[inline(always)]
fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Deflate's bit order: codes least significant bit first, Huffman codes
/// bit-reversed (the tables below hold them reversed).
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    buf: u64,
    /// Bits in `buf`, always under 32 between calls.
    len: u32,
}

impl BitWriter<'_> {
    /// Appends the `n` (at most 32) low bits of `bits`.
    #[inline(always)]
    fn put(&mut self, bits: u32, n: u32) {
        self.buf |= u64::from(bits) << self.len;
        self.len += n;
        if self.len >= 32 {
            self.out.extend_from_slice(&(self.buf as u32).to_le_bytes());
            self.buf >>= 32;
            self.len -= 32;
        }
    }

    #[inline(always)]
    fn put_literal(&mut self, byte: u8) {
        let (code, n) = LITERALS[usize::from(byte)];
        self.put(u32::from(code), u32::from(n));
    }

    /// A match of `len` (4 to 258) bytes at `distance` (1 to 32768): one
    /// `put` of at most 31 bits.
    #[inline(always)]
    fn put_match(&mut self, len: usize, distance: usize) {
        let (len_bits, len_n) = LENGTHS[len];
        let d = distance - 1;
        let code = if d < 256 {
            DIST_CODE_SMALL[d]
        } else {
            DIST_CODE_LARGE[d >> 7]
        };
        let code = usize::from(code);
        let dist_bits = u32::from(reverse(code as u16, 5)) | ((d as u32 - u32::from(DIST_BASE[code] - 1)) << 5);
        let dist_n = 5 + u32::from(DIST_EXTRA[code]);
        self.put(len_bits | (dist_bits << len_n), len_n + dist_n);
    }

    fn finish(self) {
        let bytes = self.len.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.buf.to_le_bytes()[..bytes]);
    }
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];

const fn reverse(code: u16, n: u32) -> u16 {
    code.reverse_bits() >> (16 - n)
}

/// The fixed code of literal/length symbol `sym` (RFC 1951, 3.2.6), reversed, and its length.
const fn fixed_code(sym: u16) -> (u16, u8) {
    match sym {
        0..=143 => (reverse(0x30 + sym, 8), 8),
        144..=255 => (reverse(0x190 + (sym - 144), 9), 9),
        256..=279 => (reverse(sym - 256, 7), 7),
        _ => (reverse(0xC0 + (sym - 280), 8), 8),
    }
}

/// Each byte's fixed code.
const LITERALS: [(u16, u8); 256] = {
    let mut t = [(0, 0); 256];
    let mut i = 0;
    while i < 256 {
        t[i] = fixed_code(i as u16);
        i += 1;
    }
    t
};

/// Each match length's code followed by its extra bits, and their bit count.
const LENGTHS: [(u32, u32); MAX_MATCH + 1] = {
    let mut t = [(0, 0); MAX_MATCH + 1];
    let mut len = 3;
    while len <= MAX_MATCH {
        // 258 has a code of its own (285), not 284's last extra value.
        let mut code = if len == MAX_MATCH { 28 } else { 27 };
        while LEN_BASE[code] as usize > len {
            code -= 1;
        }
        let (bits, n) = fixed_code(257 + code as u16);
        let extra = (len - LEN_BASE[code] as usize) as u32;
        t[len] = ((bits as u32) | (extra << n), n as u32 + LEN_EXTRA[code] as u32);
        len += 1;
    }
    t
};

/// Distance codes of distances 1 to 256, by distance - 1 (zlib's scheme).
const DIST_CODE_SMALL: [u8; 256] = {
    let mut t = [0; 256];
    let mut d = 0;
    while d < 256 {
        t[d] = dist_code(d + 1);
        d += 1;
    }
    t
};

/// Distance codes of distances 257 to 32768, by (distance - 1) >> 7.
const DIST_CODE_LARGE: [u8; 256] = {
    let mut t = [0; 256];
    let mut i = 2;
    while i < 256 {
        t[i] = dist_code((i << 7) + 1);
        i += 1;
    }
    t
};

const fn dist_code(distance: usize) -> u8 {
    let mut code = 29;
    while DIST_BASE[code] as usize > distance {
        code -= 1;
    }
    code as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut out).unwrap();
        out
    }

    fn roundtrip(input: &[u8]) -> Vec<u8> {
        let mut gz = Vec::new();
        compress_into(input, &mut gz);
        assert_eq!(gunzip(&gz), input, "flate2 reads back what went in");
        let mut again = Vec::new();
        crate::compression::decompress_into(crate::compression::Codec::Gzip, &gz, &mut again, input.len()).unwrap();
        assert_eq!(again, input, "libdeflate reads back what went in");
        gz
    }

    #[test]
    fn edge_lengths_and_contents() {
        roundtrip(b"");
        roundtrip(b"a");
        roundtrip(b"abcdefg");
        roundtrip(b"abcdefgh");
        roundtrip(&[0u8; 100_000]);
        roundtrip(&vec![b'x'; MAX_MATCH * 3 + 1]);
        let all: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        roundtrip(&all);
    }

    #[test]
    fn every_length_and_distance_code() {
        // Repeats at the first and last distance of every distance code,
        // and of every length from 4 to 300, between random bytes.
        let mut seed = 0x1234_5678u32;
        let mut input = Vec::new();
        let mut repeat = |distance: usize, len: usize, input: &mut Vec<u8>| {
            for _ in 0..distance.max(8) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                input.push((seed >> 16) as u8);
            }
            let from = input.len() - distance;
            for k in 0..len {
                input.push(input[from + k]);
            }
        };
        let mut repeated = 0;
        for code in 0..DIST_BASE.len() {
            let first = usize::from(DIST_BASE[code]);
            for distance in [first, first + (1 << DIST_EXTRA[code]) - 1] {
                repeat(distance, 40, &mut input);
                repeated += 40;
            }
        }
        for len in 4..=300 {
            repeat(1000, len, &mut input);
            repeated += len;
        }
        let gz = roundtrip(&input);
        // The repeats went out as matches: fewer bits than as literals.
        let literal_bits: usize = input.iter().map(|&b| usize::from(LITERALS[usize::from(b)].1)).sum();
        assert!(
            gz.len() * 8 + repeated * 4 < literal_bits,
            "{} bytes for {literal_bits} literal bits",
            gz.len()
        );
    }

    #[test]
    fn compresses_log_lines_like_zlib_level_1() {
        // The project's copy of the Loghub samples (tests/corpus).
        let corpus = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/corpus/loghub/Apache.log"
        ))
        .unwrap();
        let ours = roundtrip(&corpus);
        // zlib-rs itself: our `gzip::compress_into(1, ..)` is this encoder.
        let mut zlib = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        std::io::Write::write_all(&mut zlib, &corpus).unwrap();
        let zlib = zlib.finish().unwrap();
        // Same kind of stream: within a tenth of zlib-rs's level 1.
        assert!(
            ours.len() * 10 <= zlib.len() * 11,
            "{} against {}",
            ours.len(),
            zlib.len()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_input_reads_back(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5000),
                                repeat in 0usize..4) {
            // Repeated input has matches; random bytes mostly literals.
            let input = input.repeat(repeat + 1);
            roundtrip(&input);
        }
    }
}
