//! Receipts: what a caller holds after `save` returned, and may await.

use serde::Serialize;
use tokio::sync::watch;

use crate::error::{Error, Failure, Result};
use crate::health::WriterHealth;
use crate::model::WriteOutcome;

/// Where an accepted save (or forget) is on its way to the index.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum ReceiptStatus {
    /// Accepted and readable through `get`/`list`/`search`; not yet committed.
    Accepted,
    /// Committed to SQLite.
    Durable(WriteOutcome),
    /// Committed, and the index reflects it.
    Indexed(WriteOutcome),
    /// Not committed, for this reason.
    Failed(Failure),
}

/// Proof that a save was accepted, and a way to learn when it is durable and
/// when it is searchable through the index.
///
/// Returned by [`Memory::save`](crate::Memory::save) and
/// [`Memory::forget`](crate::Memory::forget). Awaiting is optional: dropping
/// a receipt changes nothing (the save still commits). Receipts are cheap to
/// clone, `Send` and `Sync`, and the async waits work on any executor.
#[derive(Debug, Clone)]
pub struct Receipt {
    seq: u64,
    rx: watch::Receiver<ReceiptStatus>,
    /// The engine's writer health: a wait ends early when the writer has
    /// been failing past the deadline.
    health: watch::Receiver<WriterHealth>,
}

/// Which resolution a wait is for.
#[derive(Clone, Copy, PartialEq)]
enum Until {
    Durable,
    Indexed,
}

impl Receipt {
    /// The save's sequence number: unique and increasing within one engine,
    /// in the order saves were accepted.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The status right now. Never blocks.
    pub fn status(&self) -> ReceiptStatus {
        self.rx.borrow().clone()
    }

    /// Resolves when the save's transaction committed, with what it did, or
    /// with why it will not be: [`Error::DeadLettered`] (the database
    /// rejected the row for its content, the one final failure). If the
    /// writer has been failing for longer than
    /// [`Config::busy_deadline`](crate::Config) (a locked database, a full
    /// disk), it stops waiting with [`Error::NotCommittedYet`]: the save is
    /// kept and still committed later, by this process or the next open; a
    /// later call waits again only once the writer recovers. A superseded
    /// save resolves with the outcome of the save that replaced it.
    pub async fn durable(&self) -> Result<WriteOutcome> {
        self.wait(Until::Durable).await
    }

    /// Resolves when the index can find the save (for a forget: no longer
    /// finds the key), or with why it was not committed (as
    /// [`durable`](Self::durable)). If the engine stops after the commit
    /// but before indexing: [`Error::NotIndexed`] (the next open indexes
    /// the row).
    pub async fn indexed(&self) -> Result<WriteOutcome> {
        self.wait(Until::Indexed).await
    }

    async fn wait(&self, until: Until) -> Result<WriteOutcome> {
        let mut rx = self.rx.clone();
        let mut health = self.health.clone();
        let mut engine_gone = false;
        loop {
            let status = rx.borrow_and_update().clone();
            match status {
                ReceiptStatus::Indexed(o) => return Ok(o),
                ReceiptStatus::Durable(o) if until == Until::Durable => return Ok(o),
                ReceiptStatus::Failed(f) => return Err(f.into()),
                ReceiptStatus::Durable(_) | ReceiptStatus::Accepted => {}
            }
            let uncommitted = matches!(status, ReceiptStatus::Accepted);
            if uncommitted && health.borrow_and_update().gives_up_waiting() {
                return Err(health.borrow().not_committed());
            }
            tokio::select! {
                biased;
                changed = rx.changed() => if changed.is_err() {
                    // The engine dropped its side without a last word.
                    let h = health.borrow().clone();
                    return Err(match *rx.borrow() {
                        ReceiptStatus::Accepted if h.abandoned => h.not_committed(),
                        ReceiptStatus::Durable(_) => Error::NotIndexed {
                            reason: "the engine stopped before indexing it".into(),
                        },
                        _ => Error::Closed,
                    });
                },
                gone = health.changed(), if !engine_gone => engine_gone = gone.is_err(),
            }
        }
    }

    /// [`durable`](Self::durable), blocking the calling thread. For plain
    /// threads; inside an actix system whose thread runs the engine, await
    /// `durable()` instead (blocking that thread would stop the engine).
    pub fn wait_durable(&self) -> Result<WriteOutcome> {
        futures::executor::block_on(self.durable())
    }

    /// [`indexed`](Self::indexed), blocking the calling thread (same caveat as
    /// [`wait_durable`](Self::wait_durable)).
    pub fn wait_indexed(&self) -> Result<WriteOutcome> {
        futures::executor::block_on(self.indexed())
    }
}

/// The engine's side of a receipt. Dropping it unresolved makes the waits
/// return [`Error::Closed`].
#[derive(Debug)]
pub(crate) struct Resolver(watch::Sender<ReceiptStatus>);

impl Resolver {
    pub fn durable(&self, outcome: WriteOutcome) {
        self.0.send_replace(ReceiptStatus::Durable(outcome));
    }

    pub fn failed(&self, failure: Failure) {
        self.0.send_replace(ReceiptStatus::Failed(failure));
    }

    /// Marks an already durable save as indexed. A failed one stays failed.
    pub fn indexed(&self) {
        self.0.send_if_modified(|s| match s {
            ReceiptStatus::Durable(o) => {
                *s = ReceiptStatus::Indexed(*o);
                true
            }
            _ => false,
        });
    }
}

/// A new receipt and its resolver; the receipt watches `health`.
pub(crate) fn receipt(seq: u64, health: watch::Receiver<WriterHealth>) -> (Resolver, Receipt) {
    let (tx, rx) = watch::channel(ReceiptStatus::Accepted);
    (Resolver(tx), Receipt { seq, rx, health })
}

/// A receipt for tests: its engine is always healthy.
#[cfg(test)]
pub(crate) fn test_receipt(seq: u64) -> (Resolver, Receipt) {
    let health = crate::health::Health::new(std::time::Duration::from_secs(3600));
    let rx = health.subscribe();
    // Keep the sender alive for the test's life: a leak in tests only.
    std::mem::forget(health);
    receipt(seq, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_in_order_and_blocking_waits_work() {
        let (r, receipt) = test_receipt(7);
        assert_eq!(receipt.seq(), 7);
        assert_eq!(receipt.status(), ReceiptStatus::Accepted);
        let clone = receipt.clone();
        let waiter = std::thread::spawn(move || clone.wait_indexed());
        r.durable(WriteOutcome::Inserted { version: 1 });
        assert_eq!(
            receipt.wait_durable().unwrap(),
            WriteOutcome::Inserted { version: 1 }
        );
        r.indexed();
        assert_eq!(
            waiter.join().unwrap().unwrap(),
            WriteOutcome::Inserted { version: 1 }
        );
    }

    #[test]
    fn failure_and_drop_are_reported() {
        let (r, rec) = test_receipt(1);
        r.failed(Failure::DeadLettered {
            reason: "no".into(),
        });
        r.indexed(); // does not override a failure
        assert!(matches!(
            rec.wait_indexed(),
            Err(Error::DeadLettered { .. })
        ));

        let (r, rec) = test_receipt(2);
        drop(r);
        assert!(matches!(rec.wait_durable(), Err(Error::Closed)));
    }

    #[test]
    fn dropping_the_receipt_changes_nothing() {
        let (r, receipt) = test_receipt(3);
        drop(receipt);
        r.durable(WriteOutcome::NotFound);
        r.indexed();
    }
}
