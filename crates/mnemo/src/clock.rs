//! The hybrid logical clock that orders operations across processes.
//!
//! Every save and forget is stamped, when it is accepted, with a time that
//! is at least the wall clock (microseconds since the Unix epoch, shifted
//! left 10 bits) and greater than every stamp this engine issued or saw
//! committed before: the low 10 bits count saves within one microsecond.
//! (An i64 holds such stamps until the year 2255.) A row in the store only takes an operation whose stamp is at
//! least the one the row holds, and a forget leaves a tombstone with its
//! stamp. So which write wins does not depend on when it reaches the
//! database: a dead process's journal replayed an hour later, or a slow
//! worker, never overwrites a newer save nor brings back a forgotten key.
//!
//! The clock is seeded at open with the largest stamp committed to the
//! database, so an engine whose wall clock is behind still stamps after
//! everything it can see. Engines do not exchange stamps otherwise, so two
//! operations on one key accepted by different processes within the same
//! microsecond (or within the clocks' disagreement, across machines) are
//! ordered by their stamps, which may not be the order a third party saw.
//! Within one engine, stamp order is acceptance order.

/// Bits of counter below the microseconds.
const COUNTER_BITS: u32 = 10;

/// The stamp of a wall-clock time in microseconds, counter 0.
pub(crate) fn from_us(us: i64) -> u64 {
    (us.max(0) as u64) << COUNTER_BITS
}

/// The stamp of a wall-clock time in milliseconds, counter 0.
pub(crate) fn from_ms(ms: i64) -> u64 {
    from_us(ms.saturating_mul(1000))
}

/// The wall-clock microseconds of a stamp.
#[cfg(test)]
pub(crate) fn to_us(stamp: u64) -> i64 {
    (stamp >> COUNTER_BITS) as i64
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// One engine's clock. Not synchronised on its own: it lives under the
/// ingress lock, so stamp order is sequence order.
#[derive(Debug, Default)]
pub(crate) struct Hlc {
    last: u64,
}

impl Hlc {
    /// A clock that stamps after `seen` (the largest committed stamp).
    pub fn after(seen: u64) -> Hlc {
        Hlc { last: seen }
    }

    /// The stamp for an operation accepted at wall-clock `now_us`.
    pub fn stamp(&mut self, now_us: i64) -> u64 {
        self.last = (self.last + 1).max(from_us(now_us));
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_increase_and_follow_the_wall_clock() {
        let mut c = Hlc::after(0);
        let a = c.stamp(1_000);
        let b = c.stamp(1_000);
        let d = c.stamp(999); // the wall clock stepped back
        let e = c.stamp(2_000);
        assert!(a < b && b < d && d < e);
        assert_eq!(to_us(a), 1_000);
        assert_eq!(to_us(e), 2_000);
    }

    #[test]
    fn a_clock_seeded_ahead_stamps_after_what_it_saw() {
        let seen = from_us(5_000) + 3;
        let mut c = Hlc::after(seen);
        assert!(c.stamp(1_000) > seen, "a wall clock behind the database");
    }
}
