//! Produce (key 0), v3-v8. Record data stays an opaque [`Bytes`] slice of
//! the request frame: this layer never decodes a record batch.

use super::wire::{DecodeResult, Reader, Writer};
use bytes::Bytes;

/// One partition's data in a Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionData {
    /// Partition index.
    pub index: i32,
    /// One or more RecordBatch v2, as sent.
    pub records: Option<Bytes>,
}

/// A Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    /// Transactions are not supported; non-null is refused.
    pub transactional_id: Option<String>,
    /// 0: no response; 1 or -1: respond once durable.
    pub acks: i16,
    /// How long the client waits (unused: our appends do not wait on replicas).
    pub timeout_ms: i32,
    /// `(topic, partitions)`.
    pub topics: Vec<(String, Vec<PartitionData>)>,
}

impl ProduceRequest {
    /// Decodes the body (v3-v8 share a layout).
    pub fn decode(r: &mut Reader, _version: i16) -> DecodeResult<Self> {
        let transactional_id = r.nullable_string()?;
        let acks = r.i16()?;
        let timeout_ms = r.i32()?;
        let topics = r.array(6, |r| {
            let name = r.string()?;
            let parts = r.array(8, |r| {
                Ok(PartitionData {
                    index: r.i32()?,
                    records: r.nullable_bytes()?,
                })
            })?;
            Ok((name, parts))
        })?;
        Ok(Self {
            transactional_id,
            acks,
            timeout_ms,
            topics,
        })
    }
}

/// One partition's result in a Produce response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResponse {
    /// Partition index.
    pub index: i32,
    /// Error code, 0 for none.
    pub error_code: i16,
    /// Offset of the first record appended (or of the original, for a retry).
    pub base_offset: i64,
    /// v5+: the log start offset.
    pub log_start_offset: i64,
    /// v8+: a human-readable error.
    pub error_message: Option<String>,
}

/// Encodes a Produce response.
pub fn encode_response(w: &mut Writer, version: i16, topics: &[(String, Vec<PartitionResponse>)]) {
    w.array_len(topics.len());
    for (name, parts) in topics {
        w.string(name);
        w.array_len(parts.len());
        for p in parts {
            w.i32(p.index);
            w.i16(p.error_code);
            w.i64(p.base_offset);
            w.i64(-1); // log_append_time_ms: we keep CreateTime
            if version >= 5 {
                w.i64(p.log_start_offset);
            }
            if version >= 8 {
                w.array_len(0); // record_errors
                w.nullable_string(p.error_message.as_deref());
            }
        }
    }
    w.i32(0); // throttle_time_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_keeps_records_zero_copy() {
        let mut w = Writer::new();
        w.nullable_string(None);
        w.i16(-1);
        w.i32(30_000);
        w.array_len(1);
        w.string("logs");
        w.array_len(2);
        w.i32(0);
        w.bytes(b"batchbytes");
        w.i32(1);
        w.nullable_bytes(None);
        let frame = Bytes::from(w.into_chunks().concat());
        let mut r = Reader::new(frame.clone());
        let req = ProduceRequest::decode(&mut r, 7).unwrap();
        assert_eq!(req.acks, -1);
        let (name, parts) = &req.topics[0];
        assert_eq!(name, "logs");
        let recs = parts[0].records.as_ref().unwrap();
        assert_eq!(&recs[..], b"batchbytes");
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(
            frame_range.contains(&(recs.as_ptr() as usize)),
            "records must share the frame"
        );
        assert_eq!(parts[1].records, None);
    }

    #[test]
    fn response_sizes_per_version() {
        let parts = vec![PartitionResponse {
            index: 0,
            error_code: 0,
            base_offset: 5,
            log_start_offset: 0,
            error_message: None,
        }];
        let topics = vec![("t".to_string(), parts)];
        let size = |v| {
            let mut w = Writer::new();
            encode_response(&mut w, v, &topics);
            w.len()
        };
        let base = 4 + 3 + 4 + 4 + 2 + 8 + 8 + 4;
        assert_eq!(size(3), base);
        assert_eq!(size(5), base + 8);
        assert_eq!(size(8), base + 8 + 4 + 2);
    }
}
