//! Riding out failures that pass by themselves: a collector restarting,
//! or in a cluster a partition's leader or a group's coordinator moving
//! after a node died (a few seconds, the etcd lease).

use std::time::{Duration, Instant};

use super::ClientError;

/// How long a consumer without `--follow` rides out a collector or cluster
/// node that cannot answer before it gives up.
pub const OUTAGE_LIMIT: Duration = Duration::from_secs(60);

/// Whether an error may pass by itself: the collector unreachable or
/// failing, or (421) a cluster's coordinator moving under the request.
pub fn is_transient(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Unreachable { .. } | ClientError::Failed { .. } | ClientError::Refused { status: 421, .. }
    )
}

/// Consecutive failures that may pass by themselves.
#[derive(Default)]
pub struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Whether to wait `e` out and retry: following, always; otherwise for
    /// [`OUTAGE_LIMIT`] from the first failure in a row.
    pub fn rides_out(&mut self, e: &ClientError, follow: bool) -> bool {
        if !is_transient(e) {
            return false;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        follow || since.elapsed() < OUTAGE_LIMIT
    }

    /// A request went through.
    pub fn over(&mut self) {
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(status: u16) -> ClientError {
        ClientError::Failed {
            status,
            message: "node 2 did not answer".into(),
        }
    }

    #[test]
    fn unavailable_nodes_and_moving_coordinators_are_waited_out_refusals_are_not() {
        let mut outage = Outage::default();
        assert!(outage.rides_out(&failed(503), false));
        let moved = ClientError::Refused {
            status: 421,
            message: "another node coordinates this group".into(),
        };
        assert!(outage.rides_out(&moved, false));
        let refused = ClientError::Refused {
            status: 404,
            message: "unknown topic".into(),
        };
        assert!(!outage.rides_out(&refused, true));
    }

    #[test]
    fn without_follow_an_outage_is_given_up_after_the_limit_and_a_success_resets_it() {
        let mut outage = Outage {
            since: Instant::now().checked_sub(OUTAGE_LIMIT + Duration::from_secs(1)),
        };
        assert!(!outage.rides_out(&failed(503), false));
        assert!(outage.rides_out(&failed(503), true), "following never gives up");
        outage.over();
        assert!(outage.rides_out(&failed(503), false));
    }
}
