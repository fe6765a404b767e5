//! Server-side partition assignment for "logpost" groups, and the Kafka
//! consumer-protocol encodings it reads and writes.
//!
//! "logpost" members (HTTP consumers) send their subscription as a Kafka
//! `ConsumerProtocolSubscription` and receive a `ConsumerProtocolAssignment`,
//! the same bytes a Kafka consumer exchanges, so one decoder serves both and
//! such members can be inspected with ordinary Kafka tools. The coordinator
//! computes their assignment itself (range, as Kafka's RangeAssignor), so a
//! member needs no leader logic.

use crate::kafka::protocol::wire::{DecodeResult, Reader, Writer};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Topic → assigned partitions, sorted.
pub type TopicPartitions = BTreeMap<String, Vec<i32>>;

/// Encodes a ConsumerProtocolSubscription v0 for `topics`.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut w = Writer::new();
    w.i16(0);
    w.array_len(topics.len());
    topics.iter().for_each(|t| w.string(t));
    w.nullable_bytes(None); // user_data
    Bytes::from(w.into_chunks().concat())
}

/// Reads the subscribed topics of a ConsumerProtocolSubscription (any
/// version: later versions only append fields, which are ignored).
pub fn decode_subscription(metadata: &Bytes) -> DecodeResult<Vec<String>> {
    let mut r = Reader::new(metadata.clone());
    let _version = r.i16()?;
    r.array(2, |r| r.string())
}

/// Encodes a ConsumerProtocolAssignment v0.
pub fn encode_assignment(assignment: &TopicPartitions) -> Bytes {
    let mut w = Writer::new();
    w.i16(0);
    w.array_len(assignment.len());
    for (topic, partitions) in assignment {
        w.string(topic);
        w.array_len(partitions.len());
        partitions.iter().for_each(|&p| w.i32(p));
    }
    w.nullable_bytes(None); // user_data
    Bytes::from(w.into_chunks().concat())
}

/// Decodes a ConsumerProtocolAssignment (any version). Empty bytes, which a
/// member gets while it has nothing assigned, decode to an empty map.
pub fn decode_assignment(bytes: &Bytes) -> DecodeResult<TopicPartitions> {
    if bytes.is_empty() {
        return Ok(TopicPartitions::new());
    }
    let mut r = Reader::new(bytes.clone());
    let _version = r.i16()?;
    let topics = r.array(6, |r| Ok((r.string()?, r.array(4, |r| r.i32())?)))?;
    Ok(topics.into_iter().collect())
}

/// Range assignment: for each topic, its subscribers sorted by member id
/// split the partitions into contiguous ranges, the first `n % m` members
/// getting one extra. Every member appears in the result, possibly empty.
/// Topics whose partition count is unknown are skipped.
pub fn range_assign(
    subscriptions: &[(String, Vec<String>)],
    partition_count: &dyn Fn(&str) -> Option<i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut out: BTreeMap<String, TopicPartitions> = subscriptions
        .iter()
        .map(|(m, _)| (m.clone(), TopicPartitions::new()))
        .collect();
    let mut subscribers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (member, topics) in subscriptions {
        for topic in topics {
            subscribers.entry(topic.as_str()).or_default().push(member.as_str());
        }
    }
    for (topic, mut members) in subscribers {
        members.sort_unstable();
        members.dedup();
        let Some(count) = partition_count(topic).filter(|&n| n > 0) else {
            continue;
        };
        let m = members.len() as i32;
        let (per, extra) = (count / m, count % m);
        let mut next = 0;
        for (i, member) in members.iter().enumerate() {
            let n = per + i32::from((i as i32) < extra);
            if let Some(assigned) = out.get_mut(*member) {
                assigned.insert(topic.to_string(), (next..next + n).collect());
            }
            next += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(t: &str) -> Option<i32> {
        match t {
            "a" => Some(4),
            "b" => Some(3),
            _ => None,
        }
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let sub = encode_subscription(&["a".into(), "b".into()]);
        assert_eq!(
            decode_subscription(&sub).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        let mut asg = TopicPartitions::new();
        asg.insert("a".into(), vec![0, 1]);
        assert_eq!(decode_assignment(&encode_assignment(&asg)).unwrap(), asg);
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0x7f])).is_err());
    }

    #[test]
    fn range_splits_contiguously_with_extras_first() {
        let subs = vec![
            ("m2".to_string(), vec!["a".to_string(), "b".to_string()]),
            ("m1".to_string(), vec!["a".to_string(), "b".to_string()]),
            ("m3".to_string(), vec!["a".to_string(), "zzz".to_string()]),
        ];
        let out = range_assign(&subs, &counts);
        assert_eq!(out["m1"]["a"], vec![0, 1]);
        assert_eq!(out["m2"]["a"], vec![2]);
        assert_eq!(out["m3"]["a"], vec![3]);
        assert_eq!(out["m1"]["b"], vec![0, 1]);
        assert_eq!(out["m2"]["b"], vec![2]);
        assert!(!out["m3"].contains_key("b"));
        assert!(!out["m3"].contains_key("zzz"), "unknown topic is skipped");
    }

    #[test]
    fn more_members_than_partitions_leaves_some_empty() {
        let subs: Vec<_> = (0..5).map(|i| (format!("m{i}"), vec!["b".to_string()])).collect();
        let out = range_assign(&subs, &counts);
        let total: usize = out.values().map(|t| t.get("b").map_or(0, Vec::len)).sum();
        assert_eq!(total, 3);
        assert_eq!(out["m4"]["b"], Vec::<i32>::new());
    }
}
