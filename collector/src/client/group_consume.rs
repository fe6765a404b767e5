//! `logpost consume TOPIC --group G`: a member of a consumer group over
//! HTTP (`/v1/groups`). It reads the partitions the coordinator assigns it,
//! from the group's committed offsets (or the log start, or the end with
//! `--from-end`, where the group never committed), prints records, commits
//! after each batch printed, and heartbeats every second. When the group
//! rebalances (a member joins, leaves or dies), it commits and joins
//! again; a member killed without leaving loses its partitions after its
//! session timeout, and the others resume them from the committed offsets
//! (so at least once: what it printed after its last commit is printed
//! again by the next owner).
//!
//! Without `--follow` it stops (and leaves the group) once its partitions
//! are read to the high watermark they had when it joined.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::outage::Outage;
use super::render::{OutputFormat, write_record};
use super::{Client, ClientError, urlencode};
use crate::http::fetch::FetchResponse;
use crate::http::groups::{GroupOffset, Joined, Offsets};
use crate::http::read::TopicInfo;

/// How often a member heartbeats (a third of the default session timeout
/// would do; one second keeps rebalances quick).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Milliseconds a fetch waits at the end of a partition (one partition).
const WAIT_MS: u64 = 1000;
/// Wait before joining again after the collector could not be reached.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Pause between rounds over several partitions that all had nothing.
const IDLE_PAUSE: Duration = Duration::from_millis(200);

/// Options of a group member.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    pub topic: String,
    pub group: String,
    pub from_end: bool,
    pub follow: bool,
    pub format: OutputFormat,
    pub color: bool,
}

/// Why a round of reading ended.
enum RoundEnd {
    /// The group moved on: join again.
    Rejoin,
    /// Everything assigned was read (without `--follow`).
    Done,
}

struct Member<'a> {
    client: &'a Client,
    opts: &'a GroupOptions,
    base: String,
    member_id: String,
    generation: i32,
}

/// Runs the member until the end (without `--follow`) or an error; returns
/// how many records were printed.
///
/// # Errors
/// A request failed (other than a rebalance) or output failed.
pub async fn run(client: &Client, opts: &GroupOptions, out: &mut impl Write) -> Result<u64, ClientError> {
    let mut member = Member {
        client,
        opts,
        base: format!("/v1/groups/{}", urlencode(&opts.group)),
        member_id: String::new(),
        generation: -1,
    };
    // Ctrl-C or SIGTERM: commit, leave the group (its partitions go to the
    // others at once) and stop.
    let stop = Arc::new(AtomicBool::new(false));
    let signal = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.store(true, Ordering::Relaxed);
        }
    });
    let mut printed = 0;
    let mut outage = Outage::default();
    let outcome = loop {
        let round = match member.join().await {
            Ok(parts) => member.read(&parts, out, &mut printed, &stop, &mut outage).await,
            Err(e) => Err(e),
        };
        match round {
            Ok(RoundEnd::Rejoin) => outage.over(),
            Ok(RoundEnd::Done) => break Ok(printed),
            // A collector restart or outage, or a cluster's coordinator
            // moving, is waited out (the member joins again).
            Err(e) if !stop.load(Ordering::Relaxed) && outage.rides_out(&e, opts.follow) => {
                eprintln!("logpost: {e}; retrying in {}s", RETRY_AFTER.as_secs());
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(e) => break Err(e),
        }
    };
    member.leave().await;
    signal.abort();
    outcome
}

/// Whether an error says "join the group again".
fn is_rebalance(e: &ClientError) -> bool {
    matches!(e, ClientError::Refused { status: 409, .. })
}

impl Member<'_> {
    /// Joins (again) and returns this member's partitions of the topic.
    async fn join(&mut self) -> Result<Vec<u32>, ClientError> {
        loop {
            let body = json!({"topics": [self.opts.topic], "member_id": self.member_id});
            match self
                .client
                .post_json::<_, Joined>(&format!("{}/join", self.base), &body)
                .await
            {
                Ok(joined) => {
                    self.member_id = joined.member_id;
                    self.generation = joined.generation;
                    let parts: Vec<u32> = joined
                        .assignment
                        .get(&self.opts.topic)
                        .map(|p| p.iter().filter_map(|&p| u32::try_from(p).ok()).collect())
                        .unwrap_or_default();
                    eprintln!(
                        "logpost: joined group {:?} as {} (generation {}): partitions {parts:?}",
                        self.opts.group, self.member_id, self.generation
                    );
                    return Ok(parts);
                }
                // Removed meanwhile (session expired): join as a new member.
                Err(e) if is_rebalance(&e) => self.member_id.clear(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads `parts` from the committed offsets until the group rebalances
    /// (or, without `--follow`, until they are read to their end).
    async fn read(
        &mut self,
        parts: &[u32],
        out: &mut impl Write,
        printed: &mut u64,
        stop: &AtomicBool,
        outage: &mut Outage,
    ) -> Result<RoundEnd, ClientError> {
        let topic = &self.opts.topic;
        let info: TopicInfo = self
            .client
            .get_json(&format!("/v1/topics/{}", urlencode(topic)), &[])
            .await?;
        let committed: Offsets = self
            .client
            .get_json(&format!("{}/offsets", self.base), &[("topic", topic.clone())])
            .await?;
        let committed: BTreeMap<u32, i64> = committed
            .offsets
            .iter()
            .filter_map(|o| Some((u32::try_from(o.partition).ok()?, o.offset)))
            .collect();
        // partition -> (next offset, high watermark at join, committed)
        let mut positions: BTreeMap<u32, (i64, i64, i64)> = BTreeMap::new();
        for p in info.partitions.iter().filter(|p| parts.contains(&p.partition)) {
            let start = match committed.get(&p.partition) {
                Some(&c) if c >= 0 => c,
                _ if self.opts.from_end => p.high_watermark,
                _ => p.log_start_offset,
            };
            positions.insert(p.partition, (start, p.high_watermark, start));
        }
        let mut last_heartbeat = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                self.commit(&mut positions).await?;
                return Ok(RoundEnd::Done);
            }
            if !self.opts.follow && positions.values().all(|(next, end, _)| next >= end) {
                self.commit(&mut positions).await?;
                return Ok(RoundEnd::Done);
            }
            let mut got = 0;
            let single = positions.len() == 1;
            for (partition, (next, end, _)) in &mut positions {
                if !self.opts.follow && *next >= *end {
                    continue;
                }
                let wait = if self.opts.follow && single { WAIT_MS } else { 0 };
                let path = format!("/v1/fetch/{}/{partition}", urlencode(topic));
                let params = [("offset", next.to_string()), ("wait_ms", wait.to_string())];
                let resp: FetchResponse = match self.client.get_json(&path, &params).await {
                    Ok(r) => r,
                    // Retention removed what the group had not consumed:
                    // go on from the log start, as Kafka's `earliest`.
                    Err(ClientError::Refused { status: 416, .. }) => {
                        let info: TopicInfo = self
                            .client
                            .get_json(&format!("/v1/topics/{}", urlencode(topic)), &[])
                            .await?;
                        let start = info
                            .partitions
                            .iter()
                            .find(|p| p.partition == *partition)
                            .map_or(*next, |p| p.log_start_offset);
                        eprintln!("logpost: partition {partition}: offset {next} is gone; going on from {start}");
                        *next = start;
                        continue;
                    }
                    // The partition's leader died and another takes over:
                    // keep the position, try again next round.
                    Err(e) if outage.rides_out(&e, self.opts.follow) => {
                        eprintln!("logpost: partition {partition}: {e}; retrying");
                        tokio::time::sleep(IDLE_PAUSE).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                outage.over();
                for r in &resp.records {
                    write_record(out, self.opts.format, r, self.opts.color).map_err(ClientError::Output)?;
                }
                got += resp.records.len();
                *printed += resp.records.len() as u64;
                *next = resp.next_offset;
            }
            out.flush().map_err(ClientError::Output)?;
            if got > 0 {
                match self.commit(&mut positions).await {
                    Ok(()) => {}
                    Err(e) if is_rebalance(&e) => return Ok(RoundEnd::Rejoin),
                    Err(e) => return Err(e),
                }
            }
            if last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
                last_heartbeat = Instant::now();
                let body = json!({"member_id": self.member_id, "generation": self.generation});
                match self
                    .client
                    .post_json::<_, serde_json::Value>(&format!("{}/heartbeat", self.base), &body)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_rebalance(&e) => {
                        // Commits stay allowed while the rebalance is prepared.
                        let _ = self.commit(&mut positions).await;
                        return Ok(RoundEnd::Rejoin);
                    }
                    // The coordinator moving: its successor answers the
                    // next heartbeat (with a rebalance, as it does not
                    // know this member yet).
                    Err(e) if outage.rides_out(&e, self.opts.follow) => {
                        eprintln!("logpost: heartbeat: {e}; retrying");
                    }
                    Err(e) => return Err(e),
                }
            }
            if got == 0 && (!single || !self.opts.follow) {
                tokio::time::sleep(IDLE_PAUSE).await;
            }
        }
    }

    /// Commits the positions that moved since the last commit.
    async fn commit(&self, positions: &mut BTreeMap<u32, (i64, i64, i64)>) -> Result<(), ClientError> {
        let offsets: Vec<GroupOffset> = positions
            .iter()
            .filter(|(_, (next, _, committed))| next != committed)
            .filter_map(|(&p, &(next, _, _))| {
                Some(GroupOffset {
                    topic: self.opts.topic.clone(),
                    partition: i32::try_from(p).ok()?,
                    offset: next,
                })
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        let body = json!({"member_id": self.member_id, "generation": self.generation, "offsets": offsets});
        self.client
            .post_json::<_, serde_json::Value>(&format!("{}/commit", self.base), &body)
            .await?;
        for (next, _, committed) in positions.values_mut() {
            *committed = *next;
        }
        Ok(())
    }

    /// Leaves the group (best effort: the session timeout does it otherwise).
    async fn leave(&self) {
        if self.member_id.is_empty() {
            return;
        }
        let body = json!({"member_id": self.member_id});
        let _ = self
            .client
            .post_json::<_, serde_json::Value>(&format!("{}/leave", self.base), &body)
            .await;
    }
}
