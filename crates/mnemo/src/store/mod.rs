//! The store seam: what the write path needs from a database, as plain
//! synchronous code with no actors in it. SQLite ([`sqlite`]) is the one
//! store today; a networked store (PostgreSQL, one multi-row upsert per
//! flush) would implement the same trait in a folder beside it.

pub(crate) mod sqlite;

use std::time::{Duration, Instant};

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

/// Why an attempt at a batch committed nothing. Always transient as far as
/// the write path is concerned: the writer keeps the batch (journal,
/// overlay) and tries again with backoff until it commits. Only a row
/// rejected for its content is final, and that is not a fault: it is
/// isolated as a dead letter inside a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault(pub String);

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Writes batches. Implementations run on the engine's writer thread and
/// may block.
pub(crate) trait BatchWriter: Send {
    /// One attempt at applying `ops` (already coalesced: at most one per
    /// key, in sequence order) in one transaction. Either the batch commits,
    /// with a result per operation (rows the store rejects are isolated as
    /// dead letters), or nothing commits and the fault says why.
    fn write_batch(&mut self, ops: &[StoreOp]) -> Result<BatchReport, Fault>;
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
    /// A plain SQL error (a trigger's function failing on a value, say):
    /// may be a row's; rows are isolated to find out.
    Fatal(String),
    /// A row rolled back the whole transaction (a trigger's
    /// `RAISE(ROLLBACK)`); the writer remembers it and tries again.
    RolledBack,
}

/// Retries `attempt` while it reports [`AttemptError::Busy`] or
/// [`AttemptError::Io`], sleeping with exponential backoff and full jitter,
/// until `deadline` has passed since the first try. Blocks the calling
/// thread (the indexer thread or `open`, never an async one). For steps that
/// may give up and be retried later; the batch writer never gives up.
pub(crate) fn retry_busy<T>(
    deadline: Duration,
    mut attempt: impl FnMut() -> Result<T, AttemptError>,
) -> Result<T, (AttemptError, Duration)> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(250));
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
                std::thread::sleep(backoff.next().min(deadline - waited));
            }
            Err(e) => return Err((e, start.elapsed())),
            Ok(v) => return Ok(v),
        }
    }
}

/// Exponential backoff with full jitter: each pause is a random part of a
/// window that doubles from 5 ms up to `max`, so several writers that
/// collided do not collide again in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    window: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            window: Duration::from_millis(5),
            max,
        }
    }

    /// The next pause.
    pub fn next(&mut self) -> Duration {
        let pause = self.window.mul_f64(fastrand::f64());
        self.window = (self.window * 2).min(self.max);
        pause
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
