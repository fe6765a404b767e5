//! Routing a request in a cluster: each batch goes to the leader of its
//! partition, one POST per leader, sent at once, and the answers merged.

use std::time::Duration;

use bytes::Bytes;

use super::{Attempt, Outcome, Payload, Sender};

impl Sender {
    /// The leader of each batch's partition, grouping batch indexes by
    /// leader URL in request order; `None` without a cluster map, for a
    /// topic it does not list, or when a partition has no leader now.
    pub(super) async fn route(&self, payload: &Payload) -> Option<Vec<(String, Vec<usize>)>> {
        let map = self.leaders.map_for(&payload.topic).await?;
        let leaders = map.topic(&payload.topic)?;
        let count = u32::try_from(leaders.len()).ok().filter(|&n| n > 0)?;
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, f) in payload.frames.iter().enumerate() {
            let p = logpost_shared::partition::by_key(f.key.as_deref(), f.producer_id, count)?;
            let url = leaders.get(p as usize)?.as_deref()?;
            match groups.iter_mut().find(|(u, _)| u == url) {
                Some((_, indexes)) => indexes.push(i),
                None => groups.push((url.to_owned(), vec![i])),
            }
        }
        (!groups.is_empty()).then_some(groups)
    }

    /// Sends each group's batches to its leader at once and merges the
    /// answers. Any attempt to retry retries the whole request: batches a
    /// leader already stored come back as duplicates, which the collector
    /// acknowledges without storing them again.
    pub(super) async fn attempt_split(
        &self,
        payload: &Payload,
        groups: &[(String, Vec<usize>)],
        pipelined: bool,
    ) -> Attempt {
        let posts = groups.iter().map(|(base, indexes)| {
            let mut body = Vec::new();
            for f in indexes.iter().filter_map(|&i| payload.frames.get(i)) {
                body.extend_from_slice(payload.body.get(f.range.clone()).unwrap_or_default());
            }
            self.post_to(base, Bytes::from(body), payload, indexes.len(), pipelined)
        });
        let answers = join_all(posts.collect()).await;
        let mut refused = vec![false; payload.acks.len()];
        let mut partly = false;
        let mut retry: Option<Option<Duration>> = None;
        let mut other = None;
        for ((_, indexes), (answer, moved)) in groups.iter().zip(answers) {
            if moved {
                self.leaders.invalidate();
            }
            match answer {
                Attempt::Done(Outcome::Acked) => {}
                Attempt::Done(Outcome::Partly(r)) => {
                    partly = true;
                    for (&i, r) in indexes.iter().zip(r) {
                        if let Some(slot) = refused.get_mut(i) {
                            *slot = r;
                        }
                    }
                }
                Attempt::Retry(after) => retry = Some(retry.flatten().max(after)),
                // `post_to` answers no other outcome; sent again if it did.
                Attempt::Done(_) => retry = Some(retry.flatten()),
                a @ (Attempt::Refused(_) | Attempt::Malformed(_)) => {
                    other.get_or_insert(a);
                }
            }
        }
        if let Some(after) = retry {
            Attempt::Retry(after)
        } else if let Some(a) = other {
            a
        } else if partly {
            Attempt::Done(Outcome::Partly(refused))
        } else {
            Attempt::Done(Outcome::Acked)
        }
    }
}

/// Awaits every future, polled together on this task; answers in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
