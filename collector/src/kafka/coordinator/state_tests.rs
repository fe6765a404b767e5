//! Unit tests of the group state machine, driven with explicit instants.

use super::*;
use crate::kafka::coordinator::assign::{decode_assignment, encode_subscription};
use std::time::Duration;
use tokio::sync::oneshot::Receiver;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn config(initial_delay_ms: u64) -> CoordinatorConfig {
    CoordinatorConfig {
        initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
        ..CoordinatorConfig::default()
    }
}

fn groups(initial_delay_ms: u64) -> Groups {
    let counts: Arc<PartitionCount> = Arc::new(|t: &str| match t {
        "logs" => Some(4),
        "audit" => Some(1),
        _ => None,
    });
    Groups::new(config(initial_delay_ms), counts)
}

fn join_req(member: &str, protocol_type: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: "cli".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: protocol_type.into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: false,
    }
}

fn join(g: &mut Groups, req: JoinRequest, now: Instant) -> Receiver<JoinResult> {
    let (tx, rx) = oneshot::channel();
    g.join(req, tx, now);
    rx
}

fn sync(
    g: &mut Groups,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
    now: Instant,
) -> Receiver<SyncResult> {
    let (tx, rx) = oneshot::channel();
    let req = SyncRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        assignments,
    };
    g.sync(req, tx, now);
    rx
}

fn ready<T>(rx: &mut Receiver<T>) -> T {
    rx.try_recv().expect("reply should be ready")
}

fn pending<T>(rx: &mut Receiver<T>) {
    assert!(
        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "reply should still be pending"
    );
}

/// Joins two consumer members and completes the first generation; returns (leader, follower ids).
fn two_member_stable(g: &mut Groups, t0: Instant) -> (String, String, i32) {
    let mut a = join(g, join_req("", "consumer", &["range"]), t0);
    let a = ready(&mut a);
    assert_eq!(a.error, None, "single member joins at once without initial delay");
    assert_eq!(a.generation_id, 1);
    let mut sa = sync(
        g,
        &a.member_id,
        1,
        vec![(a.member_id.clone(), Bytes::from_static(b"all"))],
        t0,
    );
    assert_eq!(ready(&mut sa).assignment, Bytes::from_static(b"all"));

    let mut b = join(g, join_req("", "consumer", &["range"]), t0);
    pending(&mut b);
    assert_eq!(
        g.heartbeat("g", 1, &a.member_id, t0),
        Err(KafkaError::REBALANCE_IN_PROGRESS)
    );
    let mut a2 = join(g, join_req(&a.member_id, "consumer", &["range"]), t0);
    let (a2, b) = (ready(&mut a2), ready(&mut b));
    assert_eq!((a2.generation_id, b.generation_id), (2, 2));
    assert_eq!(a2.leader_id, a.member_id, "the existing leader stays leader");
    assert_eq!(a2.members.len(), 2, "leader sees all members");
    assert!(b.members.is_empty(), "followers see none");
    (a.member_id, b.member_id, 2)
}

#[test]
fn join_sync_heartbeat_happy_path_and_leader_assignment() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let (leader, follower, generation) = two_member_stable(&mut g, t0);
    let mut fs = sync(&mut g, &follower, generation, vec![], t0);
    pending(&mut fs);
    assert_eq!(
        g.heartbeat("g", generation, &follower, t0),
        Ok(()),
        "heartbeat during CompletingRebalance is fine"
    );
    let assignments = vec![
        (leader.clone(), Bytes::from_static(b"p0p1")),
        (follower.clone(), Bytes::from_static(b"p2p3")),
    ];
    let mut ls = sync(&mut g, &leader, generation, assignments, t0);
    assert_eq!(ready(&mut ls).assignment, Bytes::from_static(b"p0p1"));
    assert_eq!(ready(&mut fs).assignment, Bytes::from_static(b"p2p3"));
    assert_eq!(g.describe("g").unwrap().state, GroupState::Stable);
    assert_eq!(g.heartbeat("g", generation, &leader, t0), Ok(()));
    // A late sync in Stable gets the stored assignment.
    let mut again = sync(&mut g, &follower, generation, vec![], t0);
    assert_eq!(ready(&mut again).assignment, Bytes::from_static(b"p2p3"));
}

#[test]
fn generation_and_member_errors() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let (leader, _, generation) = two_member_stable(&mut g, t0);
    assert_eq!(
        g.heartbeat("g", generation - 1, &leader, t0),
        Err(KafkaError::ILLEGAL_GENERATION)
    );
    assert_eq!(
        g.heartbeat("g", generation, "nobody", t0),
        Err(KafkaError::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        g.heartbeat("other", generation, &leader, t0),
        Err(KafkaError::UNKNOWN_MEMBER_ID)
    );
    let mut s = sync(&mut g, &leader, generation + 5, vec![], t0);
    assert_eq!(ready(&mut s).error, Some(KafkaError::ILLEGAL_GENERATION));
    let mut j = join(&mut g, join_req("ghost", "consumer", &["range"]), t0);
    assert_eq!(ready(&mut j).error, Some(KafkaError::UNKNOWN_MEMBER_ID));
    let mut j = join(&mut g, join_req("", "other-type", &["range"]), t0);
    assert_eq!(ready(&mut j).error, Some(KafkaError::INCONSISTENT_GROUP_PROTOCOL));
    let mut j = join(&mut g, join_req("", "consumer", &["roundrobin"]), t0);
    assert_eq!(ready(&mut j).error, Some(KafkaError::INCONSISTENT_GROUP_PROTOCOL));
    let mut bad = join_req("", "consumer", &["range"]);
    bad.session_timeout_ms = 100;
    let mut j = join(&mut g, bad, t0);
    assert_eq!(ready(&mut j).error, Some(KafkaError::INVALID_SESSION_TIMEOUT));
}

#[test]
fn member_id_required_first_join() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let mut req = join_req("", "consumer", &["range"]);
    req.require_known_member_id = true;
    let mut first = join(&mut g, req.clone(), t0);
    let first = ready(&mut first);
    assert_eq!(first.error, Some(KafkaError::MEMBER_ID_REQUIRED));
    assert!(first.member_id.starts_with("cli-"), "{}", first.member_id);
    req.member_id = first.member_id.clone();
    let mut second = join(&mut g, req, t0);
    let second = ready(&mut second);
    assert_eq!((second.error, second.generation_id), (None, 1));
    assert_eq!(second.member_id, first.member_id);
}

#[test]
fn pending_member_id_lapses_after_session_timeout() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let mut req = join_req("", "consumer", &["range"]);
    req.require_known_member_id = true;
    let mut first = join(&mut g, req.clone(), t0);
    let id = ready(&mut first).member_id;
    assert_eq!(g.next_deadline(), Some(t0 + Duration::from_millis(SESSION_MS as u64)));
    g.tick(t0 + Duration::from_millis(SESSION_MS as u64));
    req.member_id = id;
    let mut late = join(&mut g, req, t0 + Duration::from_secs(11));
    assert_eq!(ready(&mut late).error, Some(KafkaError::UNKNOWN_MEMBER_ID));
}

#[test]
fn session_expiry_triggers_rebalance_and_survivor_gets_everything() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let (leader, follower, generation) = two_member_stable(&mut g, t0);
    let mut fs = sync(&mut g, &follower, generation, vec![], t0);
    let mut ls = sync(&mut g, &leader, generation, vec![], t0);
    ready(&mut fs);
    ready(&mut ls);
    // The follower keeps heartbeating; the leader goes silent.
    let t5 = t0 + Duration::from_secs(5);
    assert_eq!(g.heartbeat("g", generation, &follower, t5), Ok(()));
    let expiry = g.next_deadline().unwrap();
    assert_eq!(
        expiry,
        t0 + Duration::from_millis(SESSION_MS as u64),
        "leader's session is the next deadline"
    );
    g.tick(expiry - Duration::from_millis(1));
    assert_eq!(
        g.describe("g").unwrap().members.len(),
        2,
        "not expired a millisecond early"
    );
    g.tick(expiry);
    let d = g.describe("g").unwrap();
    assert_eq!(d.state, GroupState::PreparingRebalance);
    assert_eq!(d.members.len(), 1);
    assert_eq!(
        g.heartbeat("g", generation, &follower, expiry),
        Err(KafkaError::REBALANCE_IN_PROGRESS)
    );
    let mut rejoin = join(&mut g, join_req(&follower, "consumer", &["range"]), expiry);
    let r = ready(&mut rejoin);
    assert_eq!(
        (r.generation_id, r.leader_id.as_str()),
        (generation + 1, follower.as_str()),
        "survivor leads"
    );
    assert_eq!(
        g.heartbeat("g", generation, &follower, expiry),
        Err(KafkaError::ILLEGAL_GENERATION)
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let (leader, follower, generation) = two_member_stable(&mut g, t0);
    let mut ls = sync(&mut g, &leader, generation, vec![], t0);
    let mut fs = sync(&mut g, &follower, generation, vec![], t0);
    ready(&mut ls);
    ready(&mut fs);
    // A third member triggers a rebalance; the follower keeps heartbeating but never rejoins.
    let mut c = join(&mut g, join_req("", "consumer", &["range"]), t0);
    let mut l2 = join(&mut g, join_req(&leader, "consumer", &["range"]), t0);
    pending(&mut c);
    for s in 1..30 {
        let t = t0 + Duration::from_secs(s);
        assert_eq!(
            g.heartbeat("g", generation, &follower, t),
            Err(KafkaError::REBALANCE_IN_PROGRESS)
        );
        g.tick(t);
    }
    pending(&mut l2);
    let deadline = t0 + Duration::from_millis(REBALANCE_MS as u64);
    assert_eq!(g.next_deadline(), Some(deadline));
    g.tick(deadline);
    let (l2, c) = (ready(&mut l2), ready(&mut c));
    assert_eq!((l2.generation_id, c.generation_id), (generation + 1, generation + 1));
    assert_eq!(l2.members.len(), 2, "the follower that never rejoined is gone");
    assert_eq!(
        g.heartbeat("g", generation + 1, &follower, deadline),
        Err(KafkaError::UNKNOWN_MEMBER_ID)
    );
}

#[test]
fn leave_triggers_rebalance_and_fails_pending_syncs() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let (leader, follower, generation) = two_member_stable(&mut g, t0);
    let mut fs = sync(&mut g, &follower, generation, vec![], t0);
    pending(&mut fs);
    assert_eq!(g.leave("g", &leader, None, t0), Ok(()));
    assert_eq!(ready(&mut fs).error, Some(KafkaError::REBALANCE_IN_PROGRESS));
    assert_eq!(g.leave("g", &leader, None, t0), Err(KafkaError::UNKNOWN_MEMBER_ID));
    let mut rejoin = join(&mut g, join_req(&follower, "consumer", &["range"]), t0);
    let r = ready(&mut rejoin);
    assert_eq!(
        (r.generation_id, r.leader_id.as_str(), r.members.len()),
        (generation + 1, follower.as_str(), 1)
    );
    // Last member leaves: the group empties and is forgotten at once.
    let mut s = sync(&mut g, &follower, generation + 1, vec![], t0);
    ready(&mut s);
    assert_eq!(g.leave("g", &follower, None, t0), Ok(()));
    assert_eq!(g.describe("g"), None);
    assert_eq!(g.next_deadline(), None, "nothing left to time out");
    assert_eq!(
        g.heartbeat("g", generation + 1, &follower, t0),
        Err(KafkaError::UNKNOWN_MEMBER_ID)
    );
}

#[test]
fn initial_delay_collects_members_into_one_generation() {
    let mut g = groups(3000);
    let t0 = Instant::now();
    let mut a = join(&mut g, join_req("", "consumer", &["range"]), t0);
    pending(&mut a);
    let t1 = t0 + Duration::from_secs(1);
    let mut b = join(&mut g, join_req("", "consumer", &["range"]), t1);
    g.tick(t0 + Duration::from_secs(3));
    pending(&mut a);
    assert_eq!(
        g.next_deadline(),
        Some(t1 + Duration::from_secs(3)),
        "each new member extends the delay"
    );
    g.tick(t1 + Duration::from_secs(3));
    let (a, b) = (ready(&mut a), ready(&mut b));
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
}

#[test]
fn protocol_selection_by_vote() {
    let mut g = groups(1000);
    let t0 = Instant::now();
    let mut a = join(&mut g, join_req("", "consumer", &["roundrobin", "range"]), t0);
    let mut b = join(&mut g, join_req("", "consumer", &["range", "roundrobin"]), t0);
    let mut c = join(&mut g, join_req("", "consumer", &["range", "sticky"]), t0);
    g.tick(t0 + Duration::from_secs(1));
    let a = ready(&mut a);
    assert_eq!(a.protocol_name.as_deref(), Some("range"), "only range is common to all");
    assert_eq!(
        a.members.iter().find(|m| m.member_id == a.member_id).unwrap().metadata,
        Bytes::from_static(b"meta-range")
    );
    assert_eq!(ready(&mut b).protocol_name.as_deref(), Some("range"));
    assert_eq!(ready(&mut c).protocol_name.as_deref(), Some("range"));
}

#[test]
fn logpost_groups_are_assigned_by_the_coordinator() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let logpost = |member: &str, topics: &[&str]| {
        let mut r = join_req(member, LOGPOST_PROTOCOL_TYPE, &[]);
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        r.protocols = vec![("range".into(), encode_subscription(&topics))];
        r
    };
    let mut a = join(&mut g, logpost("", &["logs", "audit"]), t0);
    let a = ready(&mut a);
    let mut sa = sync(&mut g, &a.member_id, a.generation_id, vec![], t0);
    let only = decode_assignment(&ready(&mut sa).assignment).unwrap();
    assert_eq!(only.get("logs"), Some(&vec![0, 1, 2, 3]));
    assert_eq!(only.get("audit"), Some(&vec![0]));

    let mut b = join(&mut g, logpost("", &["logs"]), t0);
    let mut a2 = join(&mut g, logpost(&a.member_id, &["logs", "audit"]), t0);
    let (a2, b) = (ready(&mut a2), ready(&mut b));
    // The follower syncs first and with no leader logic still gets its share.
    let mut sb = sync(&mut g, &b.member_id, b.generation_id, vec![], t0);
    let got_b = decode_assignment(&ready(&mut sb).assignment).unwrap();
    let mut sa2 = sync(
        &mut g,
        &a2.member_id,
        a2.generation_id,
        vec![(a2.member_id.clone(), Bytes::from_static(b"ignored"))],
        t0,
    );
    let got_a = decode_assignment(&ready(&mut sa2).assignment).unwrap();
    let mut logs: Vec<i32> = got_a["logs"].iter().chain(&got_b["logs"]).copied().collect();
    logs.sort_unstable();
    assert_eq!(logs, vec![0, 1, 2, 3], "every partition assigned exactly once");
    assert_eq!(got_a["logs"].len(), 2);
    assert_eq!(got_a.get("audit"), Some(&vec![0]), "only a subscribes to audit");
    assert!(!got_b.contains_key("audit"));
}

#[test]
fn commit_rules_follow_kafka() {
    let mut g = groups(0);
    let t0 = Instant::now();
    assert_eq!(
        g.check_commit("solo", -1, "", t0),
        Ok(()),
        "manual assignment commits need no group"
    );
    assert_eq!(g.check_commit("solo", 3, "m", t0), Err(KafkaError::ILLEGAL_GENERATION));
    let (leader, follower, generation) = two_member_stable(&mut g, t0);
    assert_eq!(
        g.check_commit("g", generation, &leader, t0),
        Err(KafkaError::REBALANCE_IN_PROGRESS)
    );
    let mut ls = sync(&mut g, &leader, generation, vec![], t0);
    ready(&mut ls);
    assert_eq!(g.check_commit("g", generation, &follower, t0), Ok(()));
    assert_eq!(
        g.check_commit("g", generation - 1, &follower, t0),
        Err(KafkaError::ILLEGAL_GENERATION)
    );
    assert_eq!(
        g.check_commit("g", generation, "stranger", t0),
        Err(KafkaError::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        g.check_commit("g", -1, "", t0),
        Err(KafkaError::UNKNOWN_MEMBER_ID),
        "group is active"
    );
    // While a rebalance is being prepared, members may still commit their generation.
    let mut c = join(&mut g, join_req("", "consumer", &["range"]), t0);
    pending(&mut c);
    assert_eq!(g.check_commit("g", generation, &follower, t0), Ok(()));
}

#[test]
fn static_member_restart_fences_old_incarnation() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let mut req = join_req("", "consumer", &["range"]);
    req.group_instance_id = Some("host-1".into());
    let mut a = join(&mut g, req.clone(), t0);
    let a = ready(&mut a);
    let mut b = join(&mut g, req, t0);
    let b = ready(&mut b);
    assert_ne!(a.member_id, b.member_id);
    assert_eq!(b.generation_id, 2);
    assert_eq!(
        g.heartbeat("g", 2, &a.member_id, t0),
        Err(KafkaError::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(g.describe("g").unwrap().members.len(), 1);
}

#[test]
fn rejoin_with_same_protocols_in_stable_returns_current_generation() {
    let mut g = groups(0);
    let t0 = Instant::now();
    let (leader, follower, generation) = two_member_stable(&mut g, t0);
    let mut ls = sync(&mut g, &leader, generation, vec![], t0);
    ready(&mut ls);
    let mut again = join(&mut g, join_req(&follower, "consumer", &["range"]), t0);
    let again = ready(&mut again);
    assert_eq!(again.generation_id, generation);
    assert_eq!(g.describe("g").unwrap().state, GroupState::Stable);
    // The leader rejoining forces a new generation (it wants to reassign).
    let mut l = join(&mut g, join_req(&leader, "consumer", &["range"]), t0);
    pending(&mut l);
    assert_eq!(g.describe("g").unwrap().state, GroupState::PreparingRebalance);
}
