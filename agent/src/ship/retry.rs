//! The retry policy: exponential backoff with full jitter, capped, and
//! overridden by a server's Retry-After. Sync core.

use std::time::Duration;

/// Exponential backoff state for one request.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Starts at `base`, doubling up to `max`; `seed` varies the jitter.
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            base,
            max,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt: uniform in [cap/2, cap] where cap
    /// doubles each time up to `max` (so agents restarting together spread
    /// out, but a delay never collapses to zero). A `retry_after` from the
    /// server wins when it is longer.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX));
        let cap = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = cap / 2;
        let jitter = half.mul_f64(self.next_unit());
        let delay = half + jitter;
        match retry_after {
            Some(ra) if ra > delay => ra.min(self.max.max(ra).min(Duration::from_secs(3600))),
            _ => delay,
        }
    }

    /// xorshift64*: jitter needs spread, not cryptographic quality.
    fn next_unit(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Parses a Retry-After header given in seconds (the HTTP-date form is
/// rare from collectors and is treated as absent).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 7);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay(None)).collect();
        for (i, d) in delays.iter().enumerate() {
            let cap = (Duration::from_millis(100) * 2u32.pow(i as u32)).min(Duration::from_secs(2));
            assert!(
                *d >= cap / 2 && *d <= cap,
                "attempt {i}: {d:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
        }
        assert_eq!(b.attempts(), 10);
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 7);
        assert_eq!(b.next_delay(Some(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
