//! Fetch (key 1), v4-v11. Stored batches are written into the response as
//! shared chunks: the bytes a backend hands out go to the socket uncopied.
//!
//! Fetch sessions (KIP-227, v7+) are not implemented: every response carries
//! session id 0, which tells clients that no session was created so they
//! keep sending full fetch requests.

use super::wire::{DecodeResult, Reader, Writer};
use bytes::Bytes;

/// One partition in a Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    /// Partition index.
    pub partition: i32,
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Most bytes wanted from this partition.
    pub partition_max_bytes: i32,
}

/// A Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Longest time to wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Bytes to accumulate before answering.
    pub min_bytes: i32,
    /// Most bytes in the whole response.
    pub max_bytes: i32,
    /// `(topic, partitions)`.
    pub topics: Vec<(String, Vec<FetchPartition>)>,
}

impl FetchRequest {
    /// Decodes the body.
    pub fn decode(r: &mut Reader, version: i16) -> DecodeResult<Self> {
        let _replica_id = r.i32()?;
        let max_wait_ms = r.i32()?;
        let min_bytes = r.i32()?;
        let max_bytes = r.i32()?;
        let _isolation_level = r.i8()?;
        if version >= 7 {
            let _session_id = r.i32()?;
            let _session_epoch = r.i32()?;
        }
        let topics = r.array(6, |r| {
            let topic = r.string()?;
            let parts = r.array(16, |r| {
                let partition = r.i32()?;
                if version >= 9 {
                    let _current_leader_epoch = r.i32()?;
                }
                let fetch_offset = r.i64()?;
                if version >= 5 {
                    let _log_start_offset = r.i64()?;
                }
                Ok(FetchPartition {
                    partition,
                    fetch_offset,
                    partition_max_bytes: r.i32()?,
                })
            })?;
            Ok((topic, parts))
        })?;
        if version >= 7 {
            let _forgotten = r.array(6, |r| {
                let _topic = r.string()?;
                r.array(4, |r| r.i32())
            })?;
        }
        if version >= 11 {
            let _rack_id = r.string()?;
        }
        Ok(Self {
            max_wait_ms,
            min_bytes,
            max_bytes,
            topics,
        })
    }
}

/// One partition's result in a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchPartitionResponse {
    /// Partition index.
    pub partition: i32,
    /// Error code, 0 for none.
    pub error_code: i16,
    /// High watermark (also sent as the last stable offset: no transactions).
    pub high_watermark: i64,
    /// v5+: log start offset.
    pub log_start_offset: i64,
    /// Whole batches, possibly several chunks, written back to back.
    pub records: Vec<Bytes>,
}

impl FetchPartitionResponse {
    /// Total record bytes.
    pub fn records_len(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

/// Encodes a Fetch response.
pub fn encode_response(w: &mut Writer, version: i16, topics: &[(String, Vec<FetchPartitionResponse>)]) {
    w.i32(0); // throttle_time_ms
    if version >= 7 {
        w.i16(0); // error_code
        w.i32(0); // session_id: no session
    }
    w.array_len(topics.len());
    for (topic, parts) in topics {
        w.string(topic);
        w.array_len(parts.len());
        for p in parts {
            w.i32(p.partition);
            w.i16(p.error_code);
            w.i64(p.high_watermark);
            w.i64(p.high_watermark); // last_stable_offset
            if version >= 5 {
                w.i64(p.log_start_offset);
            }
            w.array_len(0); // aborted_transactions
            if version >= 11 {
                w.i32(-1); // preferred_read_replica
            }
            w.i32(i32::try_from(p.records_len()).unwrap_or(i32::MAX));
            for chunk in &p.records {
                w.put_shared(chunk.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_bytes(version: i16) -> Bytes {
        let mut w = Writer::new();
        w.i32(-1);
        w.i32(500);
        w.i32(1);
        w.i32(52_428_800);
        w.i8(0);
        if version >= 7 {
            w.i32(0);
            w.i32(-1);
        }
        w.array_len(1);
        w.string("t");
        w.array_len(1);
        w.i32(3);
        if version >= 9 {
            w.i32(-1);
        }
        w.i64(42);
        if version >= 5 {
            w.i64(-1);
        }
        w.i32(1_048_576);
        if version >= 7 {
            w.array_len(0);
        }
        if version >= 11 {
            w.string("");
        }
        Bytes::from(w.into_chunks().concat())
    }

    #[test]
    fn every_supported_request_version_decodes_completely() {
        for v in 4..=11 {
            let mut r = Reader::new(request_bytes(v));
            let req = FetchRequest::decode(&mut r, v).unwrap();
            assert_eq!(r.remaining(), 0, "v{v}");
            assert_eq!((req.max_wait_ms, req.min_bytes), (500, 1));
            assert_eq!(
                req.topics,
                vec![(
                    "t".into(),
                    vec![FetchPartition {
                        partition: 3,
                        fetch_offset: 42,
                        partition_max_bytes: 1_048_576
                    }]
                )]
            );
        }
    }

    #[test]
    fn response_v11_layout_with_chunked_records() {
        let p = FetchPartitionResponse {
            partition: 1,
            error_code: 0,
            high_watermark: 10,
            log_start_offset: 0,
            records: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")],
        };
        let mut w = Writer::new();
        encode_response(&mut w, 11, &[("t".into(), vec![p])]);
        let mut r = Reader::new(Bytes::from(w.into_chunks().concat()));
        assert_eq!((r.i32().unwrap(), r.i16().unwrap(), r.i32().unwrap()), (0, 0, 0));
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(r.string().unwrap(), "t");
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(
            (r.i32().unwrap(), r.i16().unwrap(), r.i64().unwrap(), r.i64().unwrap()),
            (1, 0, 10, 10)
        );
        assert_eq!(r.i64().unwrap(), 0);
        assert_eq!(r.i32().unwrap(), 0);
        assert_eq!(r.i32().unwrap(), -1);
        assert_eq!(&r.bytes().unwrap()[..], b"abcde");
        assert_eq!(r.remaining(), 0);
    }
}
