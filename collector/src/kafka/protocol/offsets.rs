//! Offset APIs: ListOffsets (key 2, v1-v5) looks offsets up in the log;
//! OffsetCommit (key 8, v2-v7) and OffsetFetch (key 9, v1-v5) store and
//! read a group's committed positions.

use super::wire::{DecodeResult, Reader, Writer};

/// A ListOffsets request: `(topic, [(partition, timestamp)])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsRequest {
    /// -2 earliest, -1 latest, else a timestamp in ms.
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
}

impl ListOffsetsRequest {
    /// Decodes the body.
    pub fn decode(r: &mut Reader, version: i16) -> DecodeResult<Self> {
        let _replica_id = r.i32()?;
        if version >= 2 {
            let _isolation_level = r.i8()?;
        }
        let topics = r.array(6, |r| {
            let name = r.string()?;
            let parts = r.array(12, |r| {
                let partition = r.i32()?;
                if version >= 4 {
                    let _current_leader_epoch = r.i32()?;
                }
                Ok((partition, r.i64()?))
            })?;
            Ok((name, parts))
        })?;
        Ok(Self { topics })
    }
}

/// One partition's answer to ListOffsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    /// Partition index.
    pub partition: i32,
    /// Error code, 0 for none.
    pub error_code: i16,
    /// Timestamp of the found offset, or -1.
    pub timestamp: i64,
    /// The offset, or -1.
    pub offset: i64,
}

/// Encodes a ListOffsets response.
pub fn encode_list_offsets(w: &mut Writer, version: i16, topics: &[(String, Vec<ListOffsetsPartition>)]) {
    if version >= 2 {
        w.i32(0); // throttle_time_ms
    }
    w.array_len(topics.len());
    for (name, parts) in topics {
        w.string(name);
        w.array_len(parts.len());
        for p in parts {
            w.i32(p.partition);
            w.i16(p.error_code);
            w.i64(p.timestamp);
            w.i64(p.offset);
            if version >= 4 {
                w.i32(-1); // leader_epoch
            }
        }
    }
}

/// One partition in an OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    /// Partition index.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// v6+: leader epoch of the last consumed record, else -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    /// Group id.
    pub group_id: String,
    /// Generation, or -1 for a commit outside group management.
    pub generation_id: i32,
    /// Member id, or empty outside group management.
    pub member_id: String,
    /// v7+: static member id.
    pub group_instance_id: Option<String>,
    /// `(topic, partitions)`.
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

impl OffsetCommitRequest {
    /// Decodes the body.
    pub fn decode(r: &mut Reader, version: i16) -> DecodeResult<Self> {
        let group_id = r.string()?;
        let generation_id = r.i32()?;
        let member_id = r.string()?;
        let group_instance_id = if version >= 7 { r.nullable_string()? } else { None };
        if version <= 4 {
            let _retention_time_ms = r.i64()?;
        }
        let topics = r.array(6, |r| {
            let name = r.string()?;
            let parts = r.array(14, |r| {
                let partition = r.i32()?;
                let offset = r.i64()?;
                let leader_epoch = if version >= 6 { r.i32()? } else { -1 };
                Ok(CommitPartition {
                    partition,
                    offset,
                    leader_epoch,
                    metadata: r.nullable_string()?,
                })
            })?;
            Ok((name, parts))
        })?;
        Ok(Self {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            topics,
        })
    }
}

/// Encodes an OffsetCommit response: `(topic, [(partition, error)])`.
pub fn encode_offset_commit(w: &mut Writer, version: i16, topics: &[(String, Vec<(i32, i16)>)]) {
    if version >= 3 {
        w.i32(0); // throttle_time_ms
    }
    w.array_len(topics.len());
    for (name, parts) in topics {
        w.string(name);
        w.array_len(parts.len());
        for &(partition, error) in parts {
            w.i32(partition);
            w.i16(error);
        }
    }
}

/// An OffsetFetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    /// Group id.
    pub group_id: String,
    /// `None` (v2+): every committed partition of the group.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

impl OffsetFetchRequest {
    /// Decodes the body.
    pub fn decode(r: &mut Reader, version: i16) -> DecodeResult<Self> {
        let group_id = r.string()?;
        let topics = r.nullable_array(6, |r| Ok((r.string()?, r.array(4, |r| r.i32())?)))?;
        if topics.is_none() && version < 2 {
            return Err(super::wire::DecodeError::BadLength("null topics before OffsetFetch v2"));
        }
        Ok(Self { group_id, topics })
    }
}

/// One partition in an OffsetFetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// Partition index.
    pub partition: i32,
    /// Committed offset, -1 if none.
    pub offset: i64,
    /// Leader epoch stored with the commit, -1 if none.
    pub leader_epoch: i32,
    /// Commit metadata.
    pub metadata: Option<String>,
    /// Error code, 0 for none.
    pub error_code: i16,
}

/// Encodes an OffsetFetch response.
pub fn encode_offset_fetch(w: &mut Writer, version: i16, topics: &[(String, Vec<FetchedOffset>)], error_code: i16) {
    if version >= 3 {
        w.i32(0); // throttle_time_ms
    }
    w.array_len(topics.len());
    for (name, parts) in topics {
        w.string(name);
        w.array_len(parts.len());
        for p in parts {
            w.i32(p.partition);
            w.i64(p.offset);
            if version >= 5 {
                w.i32(p.leader_epoch);
            }
            w.nullable_string(p.metadata.as_deref());
            w.i16(p.error_code);
        }
    }
    if version >= 2 {
        w.i16(error_code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn reader(w: Writer) -> Reader {
        Reader::new(Bytes::from(w.into_chunks().concat()))
    }

    #[test]
    fn list_offsets_v1_and_v4() {
        for v in [1, 4] {
            let mut w = Writer::new();
            w.i32(-1);
            if v >= 2 {
                w.i8(0);
            }
            w.array_len(1);
            w.string("t");
            w.array_len(1);
            w.i32(2);
            if v >= 4 {
                w.i32(-1);
            }
            w.i64(-2);
            let mut r = reader(w);
            let req = ListOffsetsRequest::decode(&mut r, v).unwrap();
            assert_eq!(req.topics, vec![("t".to_string(), vec![(2, -2)])]);
            assert_eq!(r.remaining(), 0);
        }
        let mut w = Writer::new();
        let parts = vec![ListOffsetsPartition {
            partition: 2,
            error_code: 0,
            timestamp: -1,
            offset: 7,
        }];
        encode_list_offsets(&mut w, 4, &[("t".into(), parts)]);
        assert_eq!(w.len(), 4 + 4 + 3 + 4 + 4 + 2 + 8 + 8 + 4);
    }

    #[test]
    fn offset_commit_v2_and_v7() {
        for v in [2i16, 7] {
            let mut w = Writer::new();
            w.string("g");
            w.i32(3);
            w.string("m");
            if v >= 7 {
                w.nullable_string(None);
            }
            if v <= 4 {
                w.i64(-1);
            }
            w.array_len(1);
            w.string("t");
            w.array_len(1);
            w.i32(0);
            w.i64(99);
            if v >= 6 {
                w.i32(4);
            }
            w.nullable_string(Some("meta"));
            let mut r = reader(w);
            let req = OffsetCommitRequest::decode(&mut r, v).unwrap();
            assert_eq!(r.remaining(), 0);
            assert_eq!((req.generation_id, req.member_id.as_str()), (3, "m"));
            let p = &req.topics[0].1[0];
            assert_eq!(
                (p.offset, p.leader_epoch, p.metadata.as_deref()),
                (99, if v >= 6 { 4 } else { -1 }, Some("meta"))
            );
        }
    }

    #[test]
    fn offset_fetch_null_topics_only_from_v2() {
        let mut w = Writer::new();
        w.string("g");
        w.i32(-1);
        let bytes = w.into_chunks().concat();
        assert!(OffsetFetchRequest::decode(&mut Reader::new(Bytes::from(bytes.clone())), 1).is_err());
        let req = OffsetFetchRequest::decode(&mut Reader::new(Bytes::from(bytes)), 2).unwrap();
        assert_eq!(req.topics, None);
    }

    #[test]
    fn offset_fetch_response_v5_layout() {
        let parts = vec![FetchedOffset {
            partition: 1,
            offset: 5,
            leader_epoch: -1,
            metadata: None,
            error_code: 0,
        }];
        let mut w = Writer::new();
        encode_offset_fetch(&mut w, 5, &[("t".into(), parts)], 0);
        let mut r = reader(w);
        assert_eq!(r.i32().unwrap(), 0);
        let topics = r
            .array(6, |r| {
                Ok((
                    r.string()?,
                    r.array(20, |r| {
                        Ok((r.i32()?, r.i64()?, r.i32()?, r.nullable_string()?, r.i16()?))
                    })?,
                ))
            })
            .unwrap();
        assert_eq!(topics, vec![("t".to_string(), vec![(1, 5, -1, None, 0)])]);
        assert_eq!(r.i16().unwrap(), 0);
        assert_eq!(r.remaining(), 0);
    }
}
