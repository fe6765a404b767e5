//! Kafka request frames as the listener reads them
//! (collector/src/kafka/server/connection.rs): a size prefix, a request
//! header, then the body of one API, decoded by that API's decoder.
//!
//! One target per API key: each forces its key into the header, so every
//! input a target keeps is a frame of its API (captures of real clients
//! seed it), and maps the header's version into the advertised range, so
//! no input is wasted on a version the listener refuses before decoding.
//! Where the server answers with the names and numbers it was sent, the
//! target encodes that answer too and checks the response frame.

use bytes::Bytes;
use logpost_collector::ingest::validate::split_and_check;
use logpost_collector::kafka::protocol::fetch::{self, FetchPartitionResponse, FetchRequest};
use logpost_collector::kafka::protocol::metadata::{
    FindCoordinatorRequest, InitProducerIdRequest, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata,
    encode_find_coordinator, encode_init_producer_id,
};
use logpost_collector::kafka::protocol::offsets::{
    self, FetchedOffset, ListOffsetsPartition, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use logpost_collector::kafka::protocol::produce::{self, PartitionResponse, ProduceRequest};
use logpost_collector::kafka::protocol::wire::{DecodeResult, Reader, Writer};
use logpost_collector::kafka::protocol::{ApiKey, RequestHeader, ResponseFrame, SUPPORTED_APIS, api_versions, group};

use crate::batch::MAX_RECORDS_BYTES;

/// The listener's smallest frame (connection.rs `MIN_FRAME`): a header
/// with a null client id.
const MIN_FRAME: usize = 10;
/// Frames a fuzz target reads: far below the listener's 64 MiB default,
/// which only bounds memory, not which code runs.
const MAX_FRAME: usize = 1 << 20;
/// Where the API key and version sit in a frame (after the size prefix).
const API_KEY_POS: usize = 4;
const API_VERSION_POS: usize = 6;

/// Reads `data` as one request frame of `api`, as the listener does.
///
/// # Panics
/// When a response encoded from a decoded request is not a well-formed
/// frame: a finding.
pub fn drive(api: ApiKey, data: &[u8]) {
    let Some((version, body)) = frame_of(api, data) else {
        return;
    };
    let mut r = Reader::new(body);
    let Ok(header) = RequestHeader::decode(&mut r) else {
        return;
    };
    if api.is_flexible(version) && r.skip_tagged_fields().is_err() {
        return;
    }
    let _ = decode_and_answer(api, version, &header, &mut r);
}

/// The frame's bytes after its size prefix, with `api`'s key written into
/// the header and the version mapped into the advertised range; `None`
/// where the listener would close the connection before decoding.
fn frame_of(api: ApiKey, data: &[u8]) -> Option<(i16, Bytes)> {
    let len = i32::from_be_bytes(data.get(..4)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
        return None;
    }
    let mut frame = data.get(4..)?.get(..len)?.to_vec();
    let &(_, min, max) = SUPPORTED_APIS.iter().find(|(k, _, _)| *k == api)?;
    let raw = i16::from_be_bytes(frame.get(API_VERSION_POS - 4..API_VERSION_POS - 2)?.try_into().ok()?);
    let version = min + raw.rem_euclid(max - min + 1);
    frame
        .get_mut(API_KEY_POS - 4..API_KEY_POS - 2)?
        .copy_from_slice(&api.code().to_be_bytes());
    frame
        .get_mut(API_VERSION_POS - 4..API_VERSION_POS - 2)?
        .copy_from_slice(&version.to_be_bytes());
    Some((version, Bytes::from(frame)))
}

fn decode_and_answer(api: ApiKey, v: i16, header: &RequestHeader, r: &mut Reader) -> DecodeResult<()> {
    let mut w = Writer::new();
    match api {
        ApiKey::ApiVersions => {
            api_versions::ApiVersionsRequest::decode(r, v)?;
            api_versions::encode_response(&mut w, v, None);
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(r, v)?;
            let topics = req.topics.unwrap_or_default().into_iter().map(|name| TopicMetadata {
                error_code: 0,
                name,
                partitions: vec![PartitionMetadata {
                    error_code: 0,
                    index: 0,
                    leader: 0,
                    leader_epoch: 0,
                    replicas: vec![0],
                    isr: vec![0],
                }],
            });
            let res = MetadataResponse {
                brokers: vec![(0, "127.0.0.1".to_owned(), 9092)],
                cluster_id: Some("logpost".to_owned()),
                controller_id: 0,
                topics: topics.collect(),
            };
            res.encode(&mut w, v);
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(r, v)?;
            let mut answer = Vec::new();
            for (name, parts) in req.topics {
                let mut out = Vec::new();
                for p in parts {
                    // What the server does with record data: split and check it.
                    if let Some(records) = &p.records {
                        let _ = split_and_check(records, MAX_RECORDS_BYTES);
                    }
                    out.push(PartitionResponse {
                        index: p.index,
                        error_code: 0,
                        base_offset: 0,
                        log_start_offset: 0,
                        error_message: None,
                    });
                }
                answer.push((name, out));
            }
            produce::encode_response(&mut w, v, &answer);
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(r, v)?;
            let answer: Vec<(String, Vec<FetchPartitionResponse>)> = req
                .topics
                .into_iter()
                .map(|(name, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|p| FetchPartitionResponse {
                            partition: p.partition,
                            ..FetchPartitionResponse::default()
                        })
                        .collect();
                    (name, parts)
                })
                .collect();
            fetch::encode_response(&mut w, v, &answer);
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::decode(r, v)?;
            let answer: Vec<(String, Vec<ListOffsetsPartition>)> = req
                .topics
                .into_iter()
                .map(|(name, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|(partition, timestamp)| ListOffsetsPartition {
                            partition,
                            error_code: 0,
                            timestamp,
                            offset: -1,
                        })
                        .collect();
                    (name, parts)
                })
                .collect();
            offsets::encode_list_offsets(&mut w, v, &answer);
        }
        ApiKey::OffsetCommit => {
            let req = OffsetCommitRequest::decode(r, v)?;
            let answer: Vec<(String, Vec<(i32, i16)>)> = req
                .topics
                .into_iter()
                .map(|(name, parts)| (name, parts.into_iter().map(|p| (p.partition, 0)).collect()))
                .collect();
            offsets::encode_offset_commit(&mut w, v, &answer);
        }
        ApiKey::OffsetFetch => {
            let req = OffsetFetchRequest::decode(r, v)?;
            let answer: Vec<(String, Vec<FetchedOffset>)> = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|(name, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|partition| FetchedOffset {
                            partition,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: None,
                            error_code: 0,
                        })
                        .collect();
                    (name, parts)
                })
                .collect();
            offsets::encode_offset_fetch(&mut w, v, &answer, 0);
        }
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::decode(r, v)?;
            encode_find_coordinator(&mut w, v, 0, (0, &req.key, 9092));
        }
        ApiKey::InitProducerId => {
            InitProducerIdRequest::decode(r, v)?;
            encode_init_producer_id(&mut w, 0, 1, 0);
        }
        ApiKey::JoinGroup => {
            group::decode_join(r, v, header.client_id.as_deref().unwrap_or(""))?;
        }
        ApiKey::SyncGroup => {
            let req = group::decode_sync(r, v)?;
            let assignment = req.assignments.first().map(|(_, a)| a.clone()).unwrap_or_default();
            group::encode_sync(&mut w, v, 0, &assignment);
        }
        ApiKey::Heartbeat => {
            group::decode_heartbeat(r, v)?;
            group::encode_error_only(&mut w, v, 0);
        }
        ApiKey::LeaveGroup => {
            let (_, members) = group::decode_leave(r, v)?;
            let answer: Vec<(String, Option<String>, i16)> = members
                .into_iter()
                .map(|(member, instance)| (member, instance, 0))
                .collect();
            group::encode_leave(&mut w, v, 0, &answer);
        }
    }
    assert_framed(&ResponseFrame::new(header.correlation_id, w), header.correlation_id);
    Ok(())
}

/// A response frame's size prefix counts the bytes after it, and the
/// correlation id follows.
fn assert_framed(frame: &ResponseFrame, correlation_id: i32) {
    let bytes = frame.to_vec();
    let (Some(size), Some(id)) = (bytes.get(..4), bytes.get(4..8)) else {
        panic!("response frame shorter than its header");
    };
    let size = i32::from_be_bytes(size.try_into().unwrap_or_default());
    assert_eq!(usize::try_from(size).ok(), Some(bytes.len() - 4), "size prefix");
    assert_eq!(i32::from_be_bytes(id.try_into().unwrap_or_default()), correlation_id);
}
