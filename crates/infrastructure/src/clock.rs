//! The system clock.

use chrono::{DateTime, SubsecRound, Utc};
use keel_domain::clock::Clock;

/// Wall-clock time truncated to microseconds: the precision PostgreSQL stores, so a value
/// read back equals the value written (ETags, cursors and responses agree on both stores).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;

    use super::*;

    #[test]
    fn now_has_microsecond_precision() {
        for _ in 0..100 {
            assert_eq!(SystemClock.now().nanosecond() % 1_000, 0);
        }
    }
}
