//! A per-second budget, for whatever must not be allowed to storm: links
//! firing, and error reports under a flood of bad commands.

use tokio::time::{Duration, Instant};

/// At most `limit` admissions in each one-second window; counts the rest.
#[derive(Debug, Clone)]
pub(crate) struct PerSecond {
    limit: u32,
    window_start: Instant,
    admitted: u32,
    refused: u64,
}

impl PerSecond {
    /// A budget of `limit` per second, its first window starting `now`.
    pub(crate) fn new(limit: u32, now: Instant) -> Self {
        PerSecond {
            limit,
            window_start: now,
            admitted: 0,
            refused: 0,
        }
    }

    /// The limit per second.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether one more fits in the budget at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.admitted = 0;
        }
        if self.admitted >= self.limit {
            self.refused += 1;
            return false;
        }
        self.admitted += 1;
        true
    }

    /// How many were refused since the last call; resets the count.
    pub(crate) fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_limit_per_second_and_counts_the_rest() {
        let t = Instant::now();
        let mut b = PerSecond::new(2, t);
        assert!(b.admit(t));
        assert!(b.admit(t + Duration::from_millis(10)));
        assert!(!b.admit(t + Duration::from_millis(999)));
        assert!(!b.admit(t + Duration::from_millis(999)));
        assert_eq!(b.take_refused(), 2);
        assert_eq!(b.take_refused(), 0);
        assert!(b.admit(t + Duration::from_secs(1)));
        assert_eq!(b.limit(), 2);
    }
}
