//! The writer's health: whether it is committing, and if not, since when
//! and why. The writer thread updates it; `stats` reports it; receipts and
//! shutdown watch it, so that a caller waiting for a commit stops waiting
//! (with [`Error::NotCommittedYet`](crate::Error::NotCommittedYet)) once the
//! writer has been failing for longer than `Config::busy_deadline`, without
//! a timer of its own (the waits work on any executor, or none).

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The writer's state as waiters see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct WriterHealth {
    /// When the current run of failed commits began; `None` while commits
    /// succeed.
    pub stalled_since: Option<Instant>,
    /// What the failing commits run into.
    pub reason: Option<String>,
    /// Stalled for longer than the wait deadline: waiters stop waiting.
    pub overdue: bool,
    /// The engine stopped with saves it could not commit; they are in the
    /// journal for the next open (or lost, with the journal off).
    pub abandoned: bool,
}

impl WriterHealth {
    /// How long the writer has been failing (zero when it is not).
    pub fn stalled_for(&self) -> Duration {
        self.stalled_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// The error a waiter gets when it stops waiting.
    pub fn not_committed(&self) -> crate::Error {
        crate::Error::NotCommittedYet {
            waited: self.stalled_for(),
            reason: self
                .reason
                .clone()
                .unwrap_or_else(|| "the engine stopped before its commit".into()),
        }
    }

    /// Whether a waiter should stop waiting.
    pub fn gives_up_waiting(&self) -> bool {
        self.overdue || self.abandoned
    }
}

/// The sending side, held by the engine's shared state.
#[derive(Debug)]
pub(crate) struct Health {
    tx: watch::Sender<WriterHealth>,
    deadline: Duration,
}

impl Health {
    /// `deadline`: how long the writer may fail before waiters stop waiting.
    pub fn new(deadline: Duration) -> Health {
        Health {
            tx: watch::Sender::new(WriterHealth::default()),
            deadline,
        }
    }

    /// A receiver for a receipt or a shutdown to watch.
    pub fn subscribe(&self) -> watch::Receiver<WriterHealth> {
        self.tx.subscribe()
    }

    /// The state right now.
    pub fn get(&self) -> WriterHealth {
        self.tx.borrow().clone()
    }

    /// Whether the engine gave up committing (cheaper than `get`).
    pub fn abandoned(&self) -> bool {
        self.tx.borrow().abandoned
    }

    /// A commit failed with `reason`: starts or continues the stall, and
    /// marks it overdue once it has lasted past the deadline. Returns how
    /// long until it becomes overdue (zero once it is).
    pub fn failed(&self, reason: &str) -> Duration {
        let mut left = Duration::ZERO;
        self.tx.send_if_modified(|h| {
            let first = h.stalled_since.is_none();
            let since = *h.stalled_since.get_or_insert_with(Instant::now);
            left = self.deadline.saturating_sub(since.elapsed());
            let overdue = left.is_zero();
            // Waiters wake only when something they act on changed.
            let changed = first || h.overdue != overdue || h.reason.as_deref() != Some(reason);
            h.reason = Some(reason.to_owned());
            h.overdue = overdue;
            changed
        });
        left
    }

    /// A commit succeeded: the stall (if any) is over.
    pub fn committed(&self) {
        self.tx.send_if_modified(|h| {
            if h.stalled_since.is_none() {
                return false;
            }
            h.stalled_since = None;
            h.reason = None;
            h.overdue = false;
            true
        });
    }

    /// The engine stopped with saves it could not commit.
    pub fn abandon(&self) {
        self.tx.send_modify(|h| h.abandoned = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_becomes_overdue_at_the_deadline_and_ends_on_commit() {
        let h = Health::new(Duration::from_millis(30));
        let rx = h.subscribe();
        assert!(h.failed("locked") > Duration::ZERO);
        assert!(!rx.borrow().gives_up_waiting());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(h.failed("locked"), Duration::ZERO);
        assert!(rx.borrow().gives_up_waiting());
        assert!(matches!(
            rx.borrow().not_committed(),
            crate::Error::NotCommittedYet { waited, .. } if waited >= Duration::from_millis(30)
        ));
        h.committed();
        assert_eq!(*rx.borrow(), WriterHealth::default());
    }
}
