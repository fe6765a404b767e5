//! The Kafka wire protocol as far as this server speaks it: API keys and the
//! version ranges it advertises, request headers, response framing, and the
//! request/response codecs of each API (one submodule per API family).
//!
//! Only the versions in [`SUPPORTED_APIS`] are decoded; they are what
//! ApiVersions advertises, so a client never picks anything else. All of
//! them except ApiVersions v3 are non-flexible, which every client we target
//! accepts (librdkafka and kafka-python choose `min(client max, broker max)`).

pub mod api_versions;
pub mod fetch;
pub mod group;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod wire;

use bytes::{BufMut, Bytes, BytesMut};
use wire::{DecodeResult, Reader, Writer};

/// The APIs this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum ApiKey {
    Produce,
    Fetch,
    ListOffsets,
    Metadata,
    OffsetCommit,
    OffsetFetch,
    FindCoordinator,
    JoinGroup,
    Heartbeat,
    LeaveGroup,
    SyncGroup,
    ApiVersions,
    InitProducerId,
}

/// `(api, min version, max version)` advertised by ApiVersions and accepted
/// on the wire. The maxima are the last non-flexible versions (except
/// ApiVersions v3, which librdkafka sends first).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 8),
    (ApiKey::Fetch, 4, 11),
    (ApiKey::ListOffsets, 1, 5),
    (ApiKey::Metadata, 0, 8),
    (ApiKey::OffsetCommit, 2, 7),
    (ApiKey::OffsetFetch, 1, 5),
    (ApiKey::FindCoordinator, 0, 2),
    (ApiKey::JoinGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 3),
    (ApiKey::LeaveGroup, 0, 3),
    (ApiKey::SyncGroup, 0, 3),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 1),
];

impl ApiKey {
    /// The key's wire number.
    pub fn code(self) -> i16 {
        match self {
            ApiKey::Produce => 0,
            ApiKey::Fetch => 1,
            ApiKey::ListOffsets => 2,
            ApiKey::Metadata => 3,
            ApiKey::OffsetCommit => 8,
            ApiKey::OffsetFetch => 9,
            ApiKey::FindCoordinator => 10,
            ApiKey::JoinGroup => 11,
            ApiKey::Heartbeat => 12,
            ApiKey::LeaveGroup => 13,
            ApiKey::SyncGroup => 14,
            ApiKey::ApiVersions => 18,
            ApiKey::InitProducerId => 22,
        }
    }

    /// The API for a wire number, if we implement it.
    pub fn from_code(code: i16) -> Option<ApiKey> {
        SUPPORTED_APIS.iter().map(|&(k, _, _)| k).find(|k| k.code() == code)
    }

    /// Whether `version` is in the advertised range.
    pub fn supports(self, version: i16) -> bool {
        SUPPORTED_APIS
            .iter()
            .any(|&(k, min, max)| k == self && (min..=max).contains(&version))
    }

    /// Whether requests of this version use header v2 and tagged fields.
    pub fn is_flexible(self, version: i16) -> bool {
        matches!(self, ApiKey::ApiVersions) && version >= 3
    }
}

/// The fields of a request header (v1, or v2 for flexible versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// Raw API key, possibly one we do not implement.
    pub api_key: i16,
    /// Requested version, possibly one we do not support.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The client's self-chosen name.
    pub client_id: Option<String>,
}

impl RequestHeader {
    /// Reads the fixed part of a header (v1). For flexible requests the
    /// caller then skips the header's tagged fields.
    pub fn decode(r: &mut Reader) -> DecodeResult<RequestHeader> {
        Ok(RequestHeader {
            api_key: r.i16()?,
            api_version: r.i16()?,
            correlation_id: r.i32()?,
            client_id: r.nullable_string()?,
        })
    }
}

/// An encoded response frame ready to be written: the size prefix and
/// header live in the first chunk, record data may follow as shared chunks.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    /// The frame's bytes, in order.
    pub chunks: Vec<Bytes>,
}

impl ResponseFrame {
    /// Frames `body` behind a v0 response header (correlation id only).
    /// ApiVersions always answers with header v0, and every other API we
    /// speak is non-flexible, so v1 headers are never needed.
    pub fn new(correlation_id: i32, body: Writer) -> ResponseFrame {
        let body_len = body.len();
        let mut head = BytesMut::with_capacity(8);
        head.put_i32(i32::try_from(body_len + 4).unwrap_or(i32::MAX));
        head.put_i32(correlation_id);
        let mut chunks = vec![head.freeze()];
        chunks.extend(body.into_chunks());
        ResponseFrame { chunks }
    }

    /// Total size including the 4-byte prefix.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Whether the frame is empty (never, for a built frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as one contiguous buffer (tests and small responses).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a body of any supported API, discarding the result.
    fn decode_any(api: ApiKey, v: i16, r: &mut Reader) -> DecodeResult<()> {
        match api {
            ApiKey::Produce => produce::ProduceRequest::decode(r, v).map(drop),
            ApiKey::Fetch => fetch::FetchRequest::decode(r, v).map(drop),
            ApiKey::ListOffsets => offsets::ListOffsetsRequest::decode(r, v).map(drop),
            ApiKey::Metadata => metadata::MetadataRequest::decode(r, v).map(drop),
            ApiKey::OffsetCommit => offsets::OffsetCommitRequest::decode(r, v).map(drop),
            ApiKey::OffsetFetch => offsets::OffsetFetchRequest::decode(r, v).map(drop),
            ApiKey::FindCoordinator => metadata::FindCoordinatorRequest::decode(r, v).map(drop),
            ApiKey::JoinGroup => group::decode_join(r, v, "c").map(drop),
            ApiKey::Heartbeat => group::decode_heartbeat(r, v).map(drop),
            ApiKey::LeaveGroup => group::decode_leave(r, v).map(drop),
            ApiKey::SyncGroup => group::decode_sync(r, v).map(drop),
            ApiKey::ApiVersions => api_versions::ApiVersionsRequest::decode(r, v).map(drop),
            ApiKey::InitProducerId => metadata::InitProducerIdRequest::decode(r, v).map(drop),
        }
    }

    /// Random and adversarial bodies (small counts, huge counts, -1s, bit
    /// noise) through every decoder of every supported version: errors are
    /// fine, panics and giant allocations are not.
    #[test]
    fn decoders_survive_random_input() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for &(api, min, max) in SUPPORTED_APIS {
            for v in min..=max {
                for _ in 0..3000 {
                    let len = (next() % 160) as usize;
                    let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    // Bias towards structure: plant small or extreme lengths.
                    for _ in 0..(next() % 4) {
                        if body.len() >= 4 {
                            let at = (next() as usize) % (body.len() - 3);
                            let value: i32 = match next() % 4 {
                                0 => (next() % 4) as i32,
                                1 => -1,
                                2 => i32::MAX,
                                _ => i32::MIN,
                            };
                            body[at..at + 4].copy_from_slice(&value.to_be_bytes());
                        }
                    }
                    let _ = decode_any(api, v, &mut Reader::new(Bytes::from(body)));
                }
            }
        }
    }

    #[test]
    fn api_table_is_consistent() {
        for &(key, min, max) in SUPPORTED_APIS {
            assert!(min <= max);
            assert_eq!(ApiKey::from_code(key.code()), Some(key));
            assert!(key.supports(min) && key.supports(max) && !key.supports(max + 1));
        }
        assert_eq!(ApiKey::from_code(17), None);
        assert!(ApiKey::ApiVersions.is_flexible(3));
        assert!(!ApiKey::Fetch.is_flexible(11));
    }

    #[test]
    fn frame_has_size_prefix_and_correlation_id() {
        let mut body = Writer::new();
        body.i16(0);
        let frame = ResponseFrame::new(7, body).to_vec();
        assert_eq!(frame, vec![0, 0, 0, 6, 0, 0, 0, 7, 0, 0]);
    }

    #[test]
    fn header_decodes() {
        let mut w = Writer::new();
        w.i16(3);
        w.i16(8);
        w.i32(42);
        w.string("rdkafka");
        let mut r = Reader::new(Bytes::from(
            ResponseFrame {
                chunks: w.into_chunks(),
            }
            .to_vec(),
        ));
        let h = RequestHeader::decode(&mut r).unwrap();
        assert_eq!(
            h,
            RequestHeader {
                api_key: 3,
                api_version: 8,
                correlation_id: 42,
                client_id: Some("rdkafka".into())
            }
        );
    }
}
