//! Issue 29's faults other than a crash: a leader paused past its lease
//! (a zombie: a long GC pause, a VM frozen, a cut-off network), etcd
//! unreachable for 30 s, and Loki pushes with too few replicas in sync.
//! Same checker as the SIGKILL test: every acknowledged line stored
//! exactly once, the replicas identical.

use std::time::Instant;

use super::*;

/// A body posted to the ingest API with a timeout longer than any pause
/// below: the answer, not a client-side timeout, is what is checked.
fn post_patiently(url: &str, line: &str) -> Result<u16, String> {
    let client = http();
    let resp = client
        .post(format!("{url}/v1/ingest/{TOPIC}"))
        .header("content-type", logpost_e2e::ingest::BATCH_CONTENT_TYPE)
        .timeout(Duration::from_secs(600))
        .body(batch(&[line.to_owned()], 1_750_000_000_000))
        .send()
        .map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

/// A leader paused (SIGSTOP) past its lease is replaced; writes go on
/// through the new leader. Woken (SIGCONT), the old leader acknowledges
/// nothing, not even the write that waited in its socket while it was
/// paused; it steps down, truncates and catches up, and every
/// acknowledged line is on every replica exactly once.
#[test]
fn a_paused_leader_acknowledges_nothing_once_replaced_and_rejoins_as_a_follower() {
    const ZOMBIE_LINE: &str = "sent to the paused leader";
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let cl = ClusterUnderTest::start(dir.path());
    let client = http();
    let first = cl.formed_with_topic(&client, TOPIC);
    let writer = Writer::start(Arc::clone(&cl.live));
    let before = writer.wait_acked("writes acknowledged before the pause", 0, 300);

    let zombie = first.leader;
    let others: Vec<i32> = (1..=3).filter(|&id| id != zombie).collect();
    cl.set_live(&others);
    cl.nodes[&zombie].proc.signal(libc::SIGSTOP);
    // Sent while it is paused: the request waits in its socket.
    let zombie_url = cl.url(zombie);
    let pending = std::thread::spawn(move || post_patiently(&zombie_url, ZOMBIE_LINE));

    let second = wait_for("a new leader while the old one is paused", PATIENCE, || {
        let p = cl.view_from(&client, others[0])?;
        (p.leader >= 0 && p.leader != zombie).then_some(p)
    });
    assert!(second.epoch > first.epoch, "no new epoch: {first:?} then {second:?}");
    let during = writer.wait_acked("writes acknowledged by the new leader", before, 300);

    cl.nodes[&zombie].proc.signal(libc::SIGCONT);
    let answer = pending.join().unwrap();
    eprintln!("the paused leader answered {answer:?}");
    assert!(
        !matches!(answer, Ok(200)),
        "the paused leader acknowledged a write after it was replaced\n{}",
        cl.logs(zombie)
    );
    // It knows it no longer leads at its old epoch.
    wait_for("the woken node to see the new leadership", PATIENCE, || {
        let p = cl.view_from(&client, zombie)?;
        (p.leader >= 0 && p.epoch > first.epoch).then_some(())
    });
    cl.set_live(&[1, 2, 3]);
    wait_for("the woken node back in sync", PATIENCE, || {
        let p = cl.view_from(&client, others[0])?;
        (p.leader >= 0 && p.isr.len() == 3).then_some(())
    });
    writer.wait_acked("writes acknowledged after the node rejoined", during, 200);
    let mut ledger = writer.finish();
    ledger.sent.push(ZOMBIE_LINE.to_owned());
    assert_acknowledged_exactly_once(&cl, &client, TOPIC, &ledger);
}

/// etcd paused for 30 s under writes: leaders acknowledge until their
/// lease can no longer be renewed, then refuse writes naming the lapsed
/// session, while every node still serves reads; once etcd answers again
/// writes are acknowledged again and leadership changes work (the leader
/// is then SIGKILLed and replaced). Nothing acknowledged is lost.
#[test]
fn etcd_unreachable_for_30_s_loses_no_acknowledged_write() {
    const OUTAGE: Duration = Duration::from_secs(30);
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let mut cl = ClusterUnderTest::start(dir.path());
    let client = http();
    let first = cl.formed_with_topic(&client, TOPIC);
    let writer = Writer::start(Arc::clone(&cl.live));
    writer.wait_acked("writes acknowledged before etcd stops", 0, 300);

    cl._etcd.proc.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let refusal = wait_for("writes refused for a lapsed session", PATIENCE, || {
        writer
            .ledger
            .lock()
            .unwrap()
            .refusals
            .iter()
            .find(|r| r.starts_with("503") && r.contains("session has lapsed"))
            .cloned()
    });
    // Reads go on, on every node, with every line acknowledged so far.
    let acked_so_far: Vec<String> = writer.ledger.lock().unwrap().acked.clone();
    for id in 1..=3 {
        let log = wait_for(
            &format!("node {id} to serve reads while etcd is down"),
            PATIENCE,
            || replica_log(&client, &cl.url(id)),
        );
        if id == first.leader {
            let stored: std::collections::HashSet<&str> = log.iter().map(|(_, l)| l.as_str()).collect();
            assert!(
                acked_so_far.iter().all(|l| stored.contains(l.as_str())),
                "the leader does not serve every acknowledged line while etcd is down"
            );
        }
    }
    if let Some(rest) = OUTAGE.checked_sub(stopped.elapsed()) {
        pace(rest);
    }
    let acked_in_outage = writer.acked();
    cl._etcd.proc.signal(libc::SIGCONT);
    let resumed = writer.wait_acked("writes acknowledged once etcd answers again", acked_in_outage, 300);

    // Leadership changes work again: the leader dies and is replaced.
    let now = wait_for("a leader after etcd's return", PATIENCE, || {
        let p = cl.view_from(&client, first.leader)?;
        (p.leader >= 0 && p.isr.len() >= 2).then_some(p)
    });
    let survivors: Vec<i32> = (1..=3).filter(|&id| id != now.leader).collect();
    cl.set_live(&survivors);
    cl.nodes.get_mut(&now.leader).unwrap().kill9();
    let next = wait_for("a new leader after etcd's return", PATIENCE, || {
        let p = cl.view_from(&client, survivors[0])?;
        (p.leader >= 0 && p.leader != now.leader).then_some(p)
    });
    assert!(next.epoch > now.epoch, "no new epoch: {now:?} then {next:?}");
    let after = writer.wait_acked("writes acknowledged by the new leader", resumed, 200);
    cl.nodes.get_mut(&now.leader).unwrap().restart();
    cl.set_live(&[1, 2, 3]);
    writer.wait_acked("writes acknowledged with every node back", after, 200);
    let ledger = writer.finish();
    eprintln!(
        "etcd paused {OUTAGE:?}: refused with {refusal:?}; acked {} of {} lines, {} refusals",
        ledger.acked.len(),
        ledger.sent.len(),
        ledger.refusals.len()
    );
    assert_acknowledged_exactly_once(&cl, &client, TOPIC, &ledger);
}

/// Pushes one line through Loki's push API (JSON); the status.
fn loki_push(client: &reqwest::blocking::Client, url: &str, line: &str) -> Result<(u16, String), String> {
    let body = serde_json::json!({
        "streams": [{ "stream": { "job": "faults" }, "values": [["1750000000000000000", line]] }]
    });
    let resp = client
        .post(format!("{url}/loki/api/v1/push"))
        .timeout(Duration::from_secs(60))
        .json(&body)
        .send()
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().unwrap_or_default()))
}

/// Loki pushes in a cluster are acknowledged (204) only once every
/// in-sync replica holds them, as the ingest API's acks=all: with two of
/// three nodes down the leader refuses them with the 503 naming the
/// partition, instead of answering 204 for lines held on one disk; a
/// follower answers 421. Every line answered 204 ends on every replica
/// exactly once.
#[test]
fn loki_pushes_wait_for_the_in_sync_replicas_or_are_refused() {
    const LOKI: &str = "loki";
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let mut cl = ClusterUnderTest::start(dir.path());
    let client = http();
    let first = cl.formed_with_topic(&client, LOKI);
    let leader = first.leader;
    let followers: Vec<i32> = (1..=3).filter(|&id| id != leader).collect();
    let mut ledger = Ledger::default();
    let push = |ledger: &mut Ledger, url: &str| {
        let line = format!("pushed {:04}", ledger.sent.len());
        ledger.sent.push(line.clone());
        let answer = loki_push(&client, url, &line);
        if matches!(answer, Ok((204, _))) {
            ledger.acked.push(line);
        }
        answer
    };

    match push(&mut ledger, &cl.url(followers[0])) {
        Ok((421, _)) => {}
        other => panic!("a follower answered a Loki push with {other:?}"),
    }
    assert!(matches!(push(&mut ledger, &cl.url(leader)), Ok((204, _))));

    for id in &followers {
        cl.nodes.get_mut(id).unwrap().kill9();
    }
    let leader_url = cl.url(leader);
    let refusal = wait_for(
        "the leader to refuse Loki pushes for too few replicas",
        PATIENCE,
        || match push(&mut ledger, &leader_url) {
            Ok((503, text)) if text.contains("not enough in-sync replicas") => Some(text),
            _ => None,
        },
    );
    assert!(
        refusal.contains(&format!("{LOKI}/0")),
        "the refusal does not name the partition: {refusal}"
    );

    cl.nodes.get_mut(&followers[0]).unwrap().restart();
    wait_for("Loki pushes acknowledged with two nodes up", PATIENCE, || {
        matches!(push(&mut ledger, &leader_url), Ok((204, _))).then_some(())
    });
    cl.nodes.get_mut(&followers[1]).unwrap().restart();
    assert_acknowledged_exactly_once(&cl, &client, LOKI, &ledger);
}
