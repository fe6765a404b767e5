//! ApiVersions (key 18), v0-v3: how clients learn what we implement.
//!
//! v3 is flexible (compact arrays, tagged fields) and is what librdkafka
//! sends first. A version we do not know (kafka-python starts with v4) is
//! answered the way Kafka does: a v0 response with UNSUPPORTED_VERSION and
//! the full list, from which the client picks a version we do speak.

use super::wire::{DecodeResult, Reader, Writer};
use super::{ApiKey, SUPPORTED_APIS};
use crate::kafka::error::KafkaError;

/// An ApiVersions request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionsRequest {
    /// v3+: the client library's name.
    pub client_software_name: Option<String>,
    /// v3+: its version.
    pub client_software_version: Option<String>,
}

impl ApiVersionsRequest {
    /// Decodes the body (after the header and, for v3, its tagged fields).
    pub fn decode(r: &mut Reader, version: i16) -> DecodeResult<Self> {
        if version < 3 {
            return Ok(Self::default());
        }
        let name = r.compact_string()?;
        let ver = r.compact_string()?;
        r.skip_tagged_fields()?;
        Ok(Self {
            client_software_name: Some(name),
            client_software_version: Some(ver),
        })
    }
}

/// Encodes the response listing [`SUPPORTED_APIS`], with `error` (used for
/// UNSUPPORTED_VERSION, which must be encoded as `version` 0).
pub fn encode_response(w: &mut Writer, version: i16, error: Option<KafkaError>) {
    w.i16(error.map_or(0, KafkaError::code));
    let flexible = ApiKey::ApiVersions.is_flexible(version);
    if flexible {
        w.compact_array_len(SUPPORTED_APIS.len());
    } else {
        w.array_len(SUPPORTED_APIS.len());
    }
    for &(key, min, max) in SUPPORTED_APIS {
        w.i16(key.code());
        w.i16(min);
        w.i16(max);
        if flexible {
            w.empty_tagged_fields();
        }
    }
    if version >= 1 {
        w.i32(0); // throttle_time_ms
    }
    if flexible {
        w.empty_tagged_fields();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(version: i16, error: Option<KafkaError>) -> Reader {
        let mut w = Writer::new();
        encode_response(&mut w, version, error);
        Reader::new(Bytes::from(w.into_chunks().concat()))
    }

    #[test]
    fn v3_request_decodes_compact_strings() {
        let mut w = Writer::new();
        w.compact_string("librdkafka");
        w.compact_string("2.16.0");
        w.empty_tagged_fields();
        let mut r = Reader::new(Bytes::from(w.into_chunks().concat()));
        let req = ApiVersionsRequest::decode(&mut r, 3).unwrap();
        assert_eq!(req.client_software_name.as_deref(), Some("librdkafka"));
        assert_eq!(req.client_software_version.as_deref(), Some("2.16.0"));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn v3_response_is_compact_and_lists_every_api() {
        let mut r = body(3, None);
        assert_eq!(r.i16().unwrap(), 0);
        let n = r.uvarint().unwrap() as usize - 1;
        assert_eq!(n, SUPPORTED_APIS.len());
        let mut seen = Vec::new();
        for _ in 0..n {
            let (k, min, max) = (r.i16().unwrap(), r.i16().unwrap(), r.i16().unwrap());
            r.skip_tagged_fields().unwrap();
            seen.push((k, min, max));
        }
        assert!(seen.contains(&(1, 4, 11)));
        assert!(seen.contains(&(18, 0, 3)));
        assert_eq!(r.i32().unwrap(), 0);
        r.skip_tagged_fields().unwrap();
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn unsupported_version_answer_is_plain_v0() {
        let mut r = body(0, Some(KafkaError::UNSUPPORTED_VERSION));
        assert_eq!(r.i16().unwrap(), 35);
        let list = r.array(6, |r| Ok((r.i16()?, r.i16()?, r.i16()?))).unwrap();
        assert!(list.contains(&(18, 0, 3)));
        assert_eq!(r.remaining(), 0, "v0 has no throttle time");
    }
}
