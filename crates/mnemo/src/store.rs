//! The store seam: what the write path needs from a database, as plain
//! synchronous code with no actors in it. SQLite ([`crate::sqlite`]) is the
//! one store today; a networked store (PostgreSQL, one multi-row upsert per
//! flush) would implement the same trait.

use std::time::{Duration, Instant};

use crate::error::Failure;
use crate::model::{StoreOp, WriteOutcome};

/// What the store did with one operation of a batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemResult {
    /// Written (or found unchanged) in the batch's transaction.
    Written(WriteOutcome),
    /// The store rejected this row; it was recorded as a dead letter and the
    /// rest of the batch committed.
    DeadLettered(String),
}

/// The result of one committed batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchReport {
    /// One result per operation, in the order given.
    pub results: Vec<ItemResult>,
    /// The highest change number committed so far (the indexer's target).
    pub last_change: i64,
}

/// Writes batches. Implementations run on the engine's writer thread and
/// may block.
pub(crate) trait BatchWriter: Send {
    /// Applies `ops` (already coalesced: at most one per key) in one
    /// transaction. Either the batch commits, with a result per operation
    /// (rows the store rejects are isolated as dead letters), or nothing
    /// commits and every operation fails with the returned reason.
    fn write_batch(&mut self, ops: &[StoreOp]) -> Result<BatchReport, Failure>;
}

/// What one attempt at a transaction ran into.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Locked by another writer: worth retrying.
    Busy,
    /// An I/O-level failure (I/O error, read-only or full disk, cannot
    /// open): retried too, since such faults are often cleared (a disk is
    /// remounted, space is freed) and the batch is otherwise lost to the
    /// caller.
    Io(String),
    /// One row was rejected (constraint, trigger, type): isolate it.
    Row(String),
    /// Anything else (I/O, read-only, corrupt): give up on this batch.
    Fatal(String),
}

/// Retries `attempt` while it reports [`AttemptError::Busy`] or
/// [`AttemptError::Io`], sleeping with exponential backoff and full jitter,
/// until `deadline` has passed since the first try. Blocks the calling thread (the writer or indexer thread, never
/// an async one).
pub(crate) fn retry_busy<T>(
    deadline: Duration,
    mut attempt: impl FnMut() -> Result<T, AttemptError>,
) -> Result<T, (AttemptError, Duration)> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(5);
    loop {
        match attempt() {
            Err(e @ (AttemptError::Busy | AttemptError::Io(_))) => {
                let waited = start.elapsed();
                if waited >= deadline {
                    return Err((e, waited));
                }
                if let AttemptError::Io(reason) = &e {
                    tracing::warn!(%reason, "I/O failure; retrying");
                }
                let remaining = deadline - waited;
                // full jitter: sleep a random part of the backoff, so several
                // writers that collided do not collide again in lockstep
                let sleep = backoff.mul_f64(fastrand::f64()).min(remaining);
                std::thread::sleep(sleep);
                backoff = (backoff * 2).min(Duration::from_millis(250));
            }
            Err(e) => return Err((e, start.elapsed())),
            Ok(v) => return Ok(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_busy_gives_up_at_the_deadline() {
        let mut tries = 0;
        let r: Result<(), _> = retry_busy(Duration::from_millis(50), || {
            tries += 1;
            Err(AttemptError::Busy)
        });
        let (e, waited) = r.unwrap_err();
        assert!(matches!(e, AttemptError::Busy));
        assert!(waited >= Duration::from_millis(50));
        assert!(tries > 1);
    }

    #[test]
    fn retry_busy_stops_on_success_and_on_other_errors() {
        let mut tries = 0;
        let r = retry_busy(Duration::from_secs(5), || {
            tries += 1;
            if tries < 3 {
                Err(AttemptError::Busy)
            } else {
                Ok(tries)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let r: Result<(), _> = retry_busy(Duration::from_secs(5), || {
            Err(AttemptError::Fatal("disk".into()))
        });
        assert!(matches!(r, Err((AttemptError::Fatal(_), _))));
        let mut tries = 0;
        let r = retry_busy(Duration::from_secs(5), || {
            tries += 1;
            if tries < 3 {
                Err(AttemptError::Io("read-only".into()))
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok(), "I/O failures are retried");
    }
}
