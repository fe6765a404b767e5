//! Kafka's variable-length integers: zigzag-encoded base-128 varints, as in
//! protobuf's `sint32`/`sint64`. A varint is at most 5 bytes, a varlong at
//! most 10; anything longer is corrupt.
//!
//! Decoders take the buffer and a position and return the value and the new
//! position, so the record parser never slices past the end.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The buffer ended inside the varint.
    Truncated,
    /// More continuation bytes than the type allows.
    TooLong,
}

/// Bytes needed to encode `value` as a zigzag varint.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(zigzag32(value)))
}

/// Bytes needed to encode `value` as a zigzag varlong.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

/// Appends `value` as a zigzag varint.
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, u64::from(zigzag32(value)));
}

/// Appends `value` as a zigzag varlong.
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, zigzag64(value));
}

/// Reads a zigzag varint at `pos`; returns the value and the position after it.
pub fn get_varint(buf: &[u8], pos: usize) -> Result<(i32, usize), VarintError> {
    let (raw, next) = get_unsigned(buf, pos, 5)?;
    let raw = u32::try_from(raw).map_err(|_| VarintError::TooLong)?;
    // Zigzag: even raw values are non-negative, odd ones negative.
    let value = ((raw >> 1) as i32) ^ -((raw & 1) as i32);
    Ok((value, next))
}

/// Reads a zigzag varlong at `pos`; returns the value and the position after it.
pub fn get_varlong(buf: &[u8], pos: usize) -> Result<(i64, usize), VarintError> {
    let (raw, next) = get_unsigned(buf, pos, 10)?;
    let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
    Ok((value, next))
}

fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unsigned_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_unsigned(buf: &[u8], pos: usize, max_bytes: usize) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let Some(&byte) = buf.get(pos + i) else {
            return Err(VarintError::Truncated);
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, pos + i + 1));
        }
    }
    Err(VarintError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings_match_kafka() {
        // Values and bytes from Kafka's ByteUtilsTest.
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "encoding {value}");
            assert_eq!(varint_len(value), bytes.len());
            assert_eq!(get_varint(bytes, 0), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn truncated_and_overlong_are_errors() {
        assert_eq!(get_varint(&[0x80], 0), Err(VarintError::Truncated));
        assert_eq!(get_varint(&[], 0), Err(VarintError::Truncated));
        assert_eq!(get_varint(&[0xff; 6], 0), Err(VarintError::TooLong));
        assert_eq!(get_varlong(&[0xff; 11], 0), Err(VarintError::TooLong));
        // Five bytes whose value exceeds 32 bits.
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f], 0),
            Err(VarintError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn varint_round_trips(value: i32) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert_eq!(out.len(), varint_len(value));
            prop_assert_eq!(get_varint(&out, 0), Ok((value, out.len())));
        }

        #[test]
        fn varlong_round_trips(value: i64) {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            prop_assert_eq!(out.len(), varlong_len(value));
            prop_assert_eq!(get_varlong(&out, 0), Ok((value, out.len())));
        }
    }
}
