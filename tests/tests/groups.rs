//! Issue 6: consumer groups over HTTP. Two `logpost consume --group`
//! processes split a topic's partitions; one is killed; the other takes its
//! partitions over from the committed offsets, and nothing is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use logpost_e2e::ingest::{batch, post};
use logpost_e2e::process::{Collector, Proc, bin};
use logpost_e2e::{PATIENCE, http, wait_for};
use serde_json::Value;

const PARTITIONS: u32 = 4;

fn member(dir: &Path, c: &Collector) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new(bin("logpost"));
    cmd.args([
        "--collector",
        &c.url,
        "consume",
        "orders",
        "--group",
        "billing",
        "--follow",
        "-o",
        "json",
    ]);
    Proc::spawn("consume", dir, cmd)
}

/// (partition, offset) of every record a member printed, in order.
fn printed(p: &Proc) -> Vec<(u32, i64)> {
    p.stdout_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                u32::try_from(v["partition"].as_u64().unwrap()).unwrap(),
                v["offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The partitions of the member's last join, once it has joined.
fn assigned(p: &Proc) -> Option<Vec<u32>> {
    let text = p.stderr_text();
    let line = text.lines().rev().find(|l| l.contains("joined group"))?;
    let list = line.rsplit_once("partitions [")?.1.trim_end_matches(']');
    Some(list.split(", ").filter_map(|s| s.parse().ok()).collect())
}

fn append(c: &Collector, per_partition: usize, round: usize) {
    let client = http();
    for p in 0..PARTITIONS {
        let lines: Vec<String> = (0..per_partition)
            .map(|i| format!("p{p} round {round} record {i}"))
            .collect();
        post(
            &client,
            &c.url,
            &format!("orders?partition={p}"),
            batch(&lines, 1_700_000_000_000),
        )
        .unwrap();
    }
}

fn committed(c: &Collector) -> BTreeMap<u32, i64> {
    let v: Value = http()
        .get(format!("{}/v1/groups/billing/offsets?topic=orders", c.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                u32::try_from(o["partition"].as_u64().unwrap()).unwrap(),
                o["offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn issue_6_group_members_split_partitions_and_take_over_from_committed_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "[storage]\ndefault_partitions = 4\n");
    append(&c, 25, 1);
    let all = |n: i64| -> BTreeSet<(u32, i64)> { (0..PARTITIONS).flat_map(|p| (0..n).map(move |o| (p, o))).collect() };

    // One member: every partition, everything so far.
    let mut a = member(&tmp.path().join("a"), &c);
    wait_for("member a to read everything", PATIENCE, || {
        (assigned(&a).as_deref() == Some(&[0, 1, 2, 3][..]) && printed(&a).len() == 100).then_some(())
    });

    // A second member: the group rebalances to two partitions each.
    let mut b = member(&tmp.path().join("b"), &c);
    let (a_parts, b_parts) = wait_for("the group to split the partitions", PATIENCE, || {
        let (pa, pb) = (assigned(&a)?, assigned(&b)?);
        (pa.len() == 2 && pb.len() == 2).then_some((pa, pb))
    });
    let mut both: Vec<u32> = a_parts.iter().chain(&b_parts).copied().collect();
    both.sort_unstable();
    assert_eq!(both, vec![0, 1, 2, 3], "a {a_parts:?}, b {b_parts:?}");
    append(&c, 10, 2);
    wait_for("both members to read the new records", PATIENCE, || {
        let union: BTreeSet<_> = printed(&a).into_iter().chain(printed(&b)).collect();
        (union == all(35)).then_some(())
    });
    let b_printed = printed(&b);
    assert!(
        b_printed.iter().all(|(p, _)| b_parts.contains(p)),
        "b printed records of partitions it was not assigned: {b_printed:?}"
    );

    // Members commit right after they print: wait for those commits, or
    // the kill below races a commit b already sent (the collector still
    // applies it) and the offset read at the kill is stale.
    let at_kill = wait_for("both members to commit what they printed", PATIENCE, || {
        let now = committed(&c);
        (now == (0..PARTITIONS).map(|p| (p, 35)).collect()).then_some(now)
    });
    // b dies without leaving; its session times out and a takes over.
    b.kill9();
    append(&c, 10, 3);
    wait_for("member a to take over every partition", PATIENCE, || {
        (assigned(&a).as_deref() == Some(&[0, 1, 2, 3][..])).then_some(())
    });
    wait_for("everything to be read", PATIENCE, || {
        let union: BTreeSet<_> = printed(&a).into_iter().chain(printed(&b)).collect();
        (union == all(45)).then_some(())
    });

    let a_printed = printed(&a);
    for p in &b_parts {
        // a read p's first 25 records before b joined; after the takeover
        // it starts exactly at the offset b committed.
        let resumed = a_printed
            .iter()
            .filter(|(q, o)| q == p && *o >= 25)
            .map(|(_, o)| *o)
            .min();
        assert_eq!(
            resumed,
            at_kill.get(p).copied(),
            "partition {p}: committed at b's death {at_kill:?}"
        );
    }
    // The collector is killed and restarted: a waits it out, joins the
    // (now empty) group again and goes on from the durable commits. (What
    // it printed but had not committed when the restart cut its session
    // short is printed again: at least once.)
    let mut c = c;
    c.restart();
    append(&c, 5, 4);
    wait_for(
        "member a to read and commit everything after the collector restart",
        PATIENCE,
        || {
            let union: BTreeSet<_> = printed(&a).into_iter().chain(printed(&b)).collect();
            (union == all(50) && committed(&c) == (0..PARTITIONS).map(|p| (p, 50)).collect()).then_some(())
        },
    );
    assert_eq!(
        a.terminate(),
        Some(0),
        "a stops cleanly on SIGTERM:\n{}",
        a.stderr_text()
    );
}

#[test]
fn issue_6_group_requests_name_their_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    let client = http();
    let join = |body: &str| {
        let resp = client
            .post(format!("{}/v1/groups/g/join", c.url))
            .body(body.to_owned())
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    let (status, text) = join(r#"{"topics": ["nope"]}"#);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("nope"), "{text}");
    let (status, text) = join(r#"{"topics": []}"#);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("topics"), "{text}");
    let (status, text) = join("{not json");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid request body"), "{text}");
    let resp = client
        .post(format!("{}/v1/groups/g/heartbeat", c.url))
        .body(r#"{"member_id": "ghost", "generation": 1}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    assert!(resp.text().unwrap().contains("UNKNOWN_MEMBER_ID"));
}
