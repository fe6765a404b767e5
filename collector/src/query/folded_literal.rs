//! A substring search that ignores ASCII case where asked to, for the
//! literals of `(?i)` line filters (`|~ "(?i)error.*timeout"` holds
//! "timeout" in any case).
//!
//! Why a module of its own: the regex engine searches `(?i)timeout` as 128
//! case variants (or, for `error`, 32) with Teddy, which cost 13% of a scan
//! whose inflate is 74% (bench/RESULTS.md, "Queries"). Folding is one OR per
//! byte: `b | 0x20` is lowercase for an ASCII letter, so comparing two bytes
//! of the needle at their offsets (as memchr's packed-pair finder does, at
//! the two rarest bytes) takes 32 candidate positions per AVX2 step; a
//! candidate is then checked whole.
//!
//! Why unsafe here, against the workspace's `unsafe_code = "deny"`: AVX2
//! loads take raw pointers. Each load's bounds are checked by the loop
//! condition stated beside it. Without AVX2 there is no finder (`new` is
//! `None`) and the regex engine searches as before.
#![allow(unsafe_code)]

use memchr::arch::all::packedpair::Pair;

/// The bit that tells an ASCII letter's cases apart.
const CASE_BIT: u8 = 0x20;

/// A needle whose bytes each match exactly or in either ASCII case.
#[derive(Debug, Clone)]
pub struct FoldedLiteral {
    /// The needle, with folding letters in lowercase.
    bytes: Vec<u8>,
    /// Per byte, `CASE_BIT` where it folds, else 0: `hay | mask == byte`.
    masks: Vec<u8>,
    /// The two offsets compared first (rarest bytes, as memchr ranks them).
    first: usize,
    second: usize,
}

impl FoldedLiteral {
    /// The finder for `needle`: each byte and whether it matches in either
    /// case (only ASCII letters can). `None` for needles under 2 bytes or
    /// on a CPU without AVX2, where the regex engine is the better search.
    pub fn new(needle: &[(u8, bool)]) -> Option<Self> {
        if needle.len() < 2 || !avx2() {
            return None;
        }
        let mut bytes = Vec::with_capacity(needle.len());
        let mut masks = Vec::with_capacity(needle.len());
        for &(byte, fold) in needle {
            let fold = fold && byte.is_ascii_alphabetic();
            bytes.push(if fold { byte.to_ascii_lowercase() } else { byte });
            masks.push(if fold { CASE_BIT } else { 0 });
        }
        // Offsets are a byte in memchr's pair: rank within the first 256.
        let pair = Pair::new(&bytes[..bytes.len().min(256)])?;
        Some(FoldedLiteral {
            bytes,
            masks,
            first: usize::from(pair.index1()),
            second: usize::from(pair.index2()),
        })
    }

    /// The needle's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the needle is empty (never: `new` refuses short needles).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Where the first occurrence at or after `from` starts.
    pub fn find_at(&self, haystack: &[u8], from: usize) -> Option<usize> {
        let last_start = haystack.len().checked_sub(self.bytes.len())?;
        if from > last_start {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `new` made this finder only where AVX2 is present.
            unsafe { self.find_avx2(haystack, from, last_start) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.find_scalar(haystack, from, last_start)
        }
    }

    /// Whether `haystack` contains the needle.
    pub fn is_match(&self, haystack: &[u8]) -> bool {
        self.find_at(haystack, 0).is_some()
    }

    /// Whether the needle occurs at `start` (`start + len <= haystack.len()`).
    fn matches_at(&self, haystack: &[u8], start: usize) -> bool {
        haystack[start..start + self.bytes.len()]
            .iter()
            .zip(self.bytes.iter().zip(&self.masks))
            .all(|(&h, (&b, &m))| h | m == b)
    }

    /// Candidate starts `from..=last_start`, one at a time.
    fn find_scalar(&self, haystack: &[u8], from: usize, last_start: usize) -> Option<usize> {
        let (b1, m1, b2, m2) = self.pair_bytes();
        (from..=last_start).find(|&start| {
            haystack[start + self.first] | m1 == b1
                && haystack[start + self.second] | m2 == b2
                && self.matches_at(haystack, start)
        })
    }

    fn pair_bytes(&self) -> (u8, u8, u8, u8) {
        (
            self.bytes[self.first],
            self.masks[self.first],
            self.bytes[self.second],
            self.masks[self.second],
        )
    }

    /// As [`find_scalar`](Self::find_scalar), 32 candidate starts per step.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn find_avx2(&self, haystack: &[u8], from: usize, last_start: usize) -> Option<usize> {
        use std::arch::x86_64::{
            __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
            _mm256_set1_epi8,
        };
        const LANES: usize = 32;
        let (b1, m1, b2, m2) = self.pair_bytes();
        let splat = |b: u8| _mm256_set1_epi8(i8::from_ne_bytes([b]));
        let (b1, m1, b2, m2) = (splat(b1), splat(m1), splat(b2), splat(m2));
        let base = haystack.as_ptr();
        let mut start = from;
        // Each step tests starts `start..start + 32`, all <= last_start, so
        // a load at `start + offset` (offset < len) ends at or before
        // `last_start + len == haystack.len()`.
        while start + LANES <= last_start + 1 {
            // SAFETY: in bounds, by the loop condition above.
            let (one, two) = unsafe {
                (
                    _mm256_loadu_si256(base.add(start + self.first).cast::<__m256i>()),
                    _mm256_loadu_si256(base.add(start + self.second).cast::<__m256i>()),
                )
            };
            let both = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_or_si256(one, m1), b1),
                _mm256_cmpeq_epi8(_mm256_or_si256(two, m2), b2),
            );
            let mut hits = u32::from_ne_bytes(_mm256_movemask_epi8(both).to_ne_bytes());
            while hits != 0 {
                let at = start + hits.trailing_zeros() as usize;
                if self.matches_at(haystack, at) {
                    return Some(at);
                }
                hits &= hits - 1;
            }
            start += LANES;
        }
        self.find_scalar(haystack, start, last_start)
    }
}

/// Whether this CPU has AVX2 (std caches the answer).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn folded(needle: &str) -> FoldedLiteral {
        let bytes: Vec<(u8, bool)> = needle.bytes().map(|b| (b, true)).collect();
        FoldedLiteral::new(&bytes).expect("this machine has AVX2")
    }

    /// Every start of `needle` in `hay` ignoring ASCII case, the slow way.
    fn naive(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        (from..(hay.len() + 1).saturating_sub(needle.len()))
            .find(|&i| hay[i..i + needle.len()].eq_ignore_ascii_case(needle))
    }

    #[test]
    fn finds_every_case_at_every_offset() {
        let f = folded("timeout");
        for len in 7..100 {
            for at in 0..=len - 7 {
                let mut hay = vec![b'x'; len];
                hay[at..at + 7].copy_from_slice(b"TimeOUT");
                assert_eq!(f.find_at(&hay, 0), Some(at), "len {len} at {at}");
                assert_eq!(f.find_at(&hay, at + 1), None, "len {len} past {at}");
            }
        }
        assert_eq!(f.find_at(b"timeou", 0), None, "shorter than the needle");
        assert_eq!(f.find_at(b"timeout", 8), None, "from past the end");
    }

    #[test]
    fn only_letters_fold() {
        // '@' | 0x20 is '`' and '[' | 0x20 is '{': neither may pass for the other.
        let f = folded("a`{b");
        assert!(f.is_match(b"xA`{B"));
        assert!(!f.is_match(b"xa@{b") && !f.is_match(b"xa`[b"));
        // Bytes that do not fold match exactly.
        let exact = FoldedLiteral::new(&[(b'E', false), (b'r', true), (b'r', true)]).unwrap();
        assert!(exact.is_match(b"ERR") && exact.is_match(b"Err"));
        assert!(!exact.is_match(b"eRR"));
        // Bytes past ASCII match exactly, even where asked to fold.
        let high = FoldedLiteral::new(&[(0xC4, true), (b'x', true)]).unwrap();
        assert!(high.is_match(&[0xC4, b'X']) && !high.is_match(&[0xE4, b'X']));
    }

    #[test]
    fn short_needles_have_no_finder() {
        assert!(FoldedLiteral::new(&[(b'a', true)]).is_none());
        assert!(FoldedLiteral::new(&[]).is_none());
    }

    proptest! {
        #[test]
        fn agrees_with_a_naive_search(
            hay in proptest::collection::vec(prop_oneof![Just(b'e'), Just(b'E'), Just(b'r'), Just(b'R'), Just(b'o'), any::<u8>()], 0..300),
            needle in proptest::collection::vec(prop_oneof![Just(b'e'), Just(b'r'), Just(b'o'), Just(b'@')], 2..6),
            from in 0usize..300,
        ) {
            let f = folded(std::str::from_utf8(&needle).unwrap());
            prop_assert_eq!(f.find_at(&hay, from), naive(&hay, &needle, from));
        }
    }
}
