//! Group membership APIs: JoinGroup (key 11, v0-v5), SyncGroup (key 14,
//! v0-v3), Heartbeat (key 12, v0-v3) and LeaveGroup (key 13, v0-v3).
//!
//! These only translate between bytes and the coordinator's request and
//! result types; all group semantics live in [`crate::kafka::coordinator`].

use super::wire::{DecodeResult, Reader, Writer};
use crate::kafka::coordinator::{JoinRequest, JoinResult, SyncRequest};
use bytes::Bytes;

/// Decodes a JoinGroup request. `client_id` seeds new member ids.
pub fn decode_join(r: &mut Reader, version: i16, client_id: &str) -> DecodeResult<JoinRequest> {
    let group_id = r.string()?;
    let session_timeout_ms = r.i32()?;
    // Before v1 the rebalance timeout was the session timeout.
    let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { session_timeout_ms };
    let member_id = r.string()?;
    let group_instance_id = if version >= 5 { r.nullable_string()? } else { None };
    let protocol_type = r.string()?;
    let protocols = r.array(6, |r| Ok((r.string()?, r.bytes()?)))?;
    Ok(JoinRequest {
        group_id,
        member_id,
        group_instance_id,
        client_id: client_id.to_string(),
        session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type,
        protocols,
        // KIP-394: from v4 a new member first gets MEMBER_ID_REQUIRED.
        require_known_member_id: version >= 4,
    })
}

/// Encodes a JoinGroup response.
pub fn encode_join(w: &mut Writer, version: i16, res: &JoinResult) {
    if version >= 2 {
        w.i32(0); // throttle_time_ms
    }
    w.i16(res.error_code());
    w.i32(res.generation_id);
    w.string(res.protocol_name.as_deref().unwrap_or(""));
    w.string(&res.leader_id);
    w.string(&res.member_id);
    w.array_len(res.members.len());
    for m in &res.members {
        w.string(&m.member_id);
        if version >= 5 {
            w.nullable_string(m.group_instance_id.as_deref());
        }
        w.bytes(&m.metadata);
    }
}

/// Decodes a SyncGroup request.
pub fn decode_sync(r: &mut Reader, version: i16) -> DecodeResult<SyncRequest> {
    let group_id = r.string()?;
    let generation_id = r.i32()?;
    let member_id = r.string()?;
    let group_instance_id = if version >= 3 { r.nullable_string()? } else { None };
    let assignments = r.array(6, |r| Ok((r.string()?, r.bytes()?)))?;
    Ok(SyncRequest {
        group_id,
        generation_id,
        member_id,
        group_instance_id,
        assignments,
    })
}

/// Encodes a SyncGroup response.
pub fn encode_sync(w: &mut Writer, version: i16, error_code: i16, assignment: &Bytes) {
    if version >= 1 {
        w.i32(0); // throttle_time_ms
    }
    w.i16(error_code);
    w.bytes(assignment);
}

/// A Heartbeat request: `(group, generation, member)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// Group id.
    pub group_id: String,
    /// The member's generation.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
}

/// Decodes a Heartbeat request.
pub fn decode_heartbeat(r: &mut Reader, version: i16) -> DecodeResult<HeartbeatRequest> {
    let req = HeartbeatRequest {
        group_id: r.string()?,
        generation_id: r.i32()?,
        member_id: r.string()?,
    };
    if version >= 3 {
        let _group_instance_id = r.nullable_string()?;
    }
    Ok(req)
}

/// Encodes a Heartbeat response (also the shape of v0-v2 LeaveGroup).
pub fn encode_error_only(w: &mut Writer, version: i16, error_code: i16) {
    if version >= 1 {
        w.i32(0); // throttle_time_ms
    }
    w.i16(error_code);
}

/// `(member id, group instance id)` of a member leaving.
pub type LeavingMember = (String, Option<String>);

/// Decodes a LeaveGroup request into `(group, [(member id, instance id)])`;
/// before v3 a request names exactly one member.
pub fn decode_leave(r: &mut Reader, version: i16) -> DecodeResult<(String, Vec<LeavingMember>)> {
    let group_id = r.string()?;
    let members = if version >= 3 {
        r.array(4, |r| Ok((r.string()?, r.nullable_string()?)))?
    } else {
        vec![(r.string()?, None)]
    };
    Ok((group_id, members))
}

/// Encodes a LeaveGroup response; per-member errors exist from v3.
pub fn encode_leave(w: &mut Writer, version: i16, error_code: i16, members: &[(String, Option<String>, i16)]) {
    encode_error_only(w, version, error_code);
    if version >= 3 {
        w.array_len(members.len());
        for (member_id, instance_id, error) in members {
            w.string(member_id);
            w.nullable_string(instance_id.as_deref());
            w.i16(*error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::coordinator::JoinMember;

    fn reader(w: Writer) -> Reader {
        Reader::new(Bytes::from(w.into_chunks().concat()))
    }

    #[test]
    fn join_request_v0_uses_session_timeout_as_rebalance_timeout() {
        let mut w = Writer::new();
        w.string("g");
        w.i32(10_000);
        w.string("");
        w.string("consumer");
        w.array_len(1);
        w.string("range");
        w.bytes(b"meta");
        let req = decode_join(&mut reader(w), 0, "cli").unwrap();
        assert_eq!(req.rebalance_timeout_ms, 10_000);
        assert!(!req.require_known_member_id);
        assert_eq!(req.protocols, vec![("range".to_string(), Bytes::from_static(b"meta"))]);
    }

    #[test]
    fn join_request_v5_and_response() {
        let mut w = Writer::new();
        w.string("g");
        w.i32(10_000);
        w.i32(60_000);
        w.string("m-1");
        w.nullable_string(Some("static-1"));
        w.string("consumer");
        w.array_len(0);
        let mut r = reader(w);
        let req = decode_join(&mut r, 5, "cli").unwrap();
        assert_eq!(r.remaining(), 0);
        assert_eq!(req.group_instance_id.as_deref(), Some("static-1"));
        assert!(req.require_known_member_id);

        let res = JoinResult {
            error: None,
            generation_id: 4,
            protocol_name: Some("range".into()),
            leader_id: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![JoinMember {
                member_id: "m-1".into(),
                group_instance_id: None,
                metadata: Bytes::from_static(b"x"),
            }],
        };
        let mut w = Writer::new();
        encode_join(&mut w, 5, &res);
        let mut r = reader(w);
        assert_eq!((r.i32().unwrap(), r.i16().unwrap(), r.i32().unwrap()), (0, 0, 4));
        assert_eq!(r.string().unwrap(), "range");
        assert_eq!((r.string().unwrap(), r.string().unwrap()), ("m-1".into(), "m-1".into()));
        let members = r
            .array(10, |r| Ok((r.string()?, r.nullable_string()?, r.bytes()?)))
            .unwrap();
        assert_eq!(members, vec![("m-1".to_string(), None, Bytes::from_static(b"x"))]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn sync_heartbeat_leave_decode() {
        let mut w = Writer::new();
        w.string("g");
        w.i32(2);
        w.string("m");
        w.nullable_string(None);
        w.array_len(1);
        w.string("m");
        w.bytes(b"a");
        let mut r = reader(w);
        let req = decode_sync(&mut r, 3).unwrap();
        assert_eq!((req.generation_id, req.assignments.len()), (2, 1));
        assert_eq!(r.remaining(), 0);

        let mut w = Writer::new();
        w.string("g");
        w.i32(2);
        w.string("m");
        let hb = decode_heartbeat(&mut reader(w), 0).unwrap();
        assert_eq!(hb.generation_id, 2);

        let mut w = Writer::new();
        w.string("g");
        w.string("m");
        assert_eq!(
            decode_leave(&mut reader(w), 1).unwrap(),
            ("g".into(), vec![("m".into(), None)])
        );
        let mut w = Writer::new();
        w.string("g");
        w.array_len(2);
        w.string("a");
        w.nullable_string(None);
        w.string("b");
        w.nullable_string(Some("i"));
        let (_, members) = decode_leave(&mut reader(w), 3).unwrap();
        assert_eq!(members, vec![("a".into(), None), ("b".into(), Some("i".into()))]);
    }

    #[test]
    fn leave_response_v3_lists_members() {
        let mut w = Writer::new();
        encode_leave(&mut w, 3, 0, &[("a".into(), None, 25)]);
        let mut r = reader(w);
        assert_eq!((r.i32().unwrap(), r.i16().unwrap()), (0, 0));
        let m = r
            .array(6, |r| Ok((r.string()?, r.nullable_string()?, r.i16()?)))
            .unwrap();
        assert_eq!(m, vec![("a".to_string(), None, 25)]);
    }
}
