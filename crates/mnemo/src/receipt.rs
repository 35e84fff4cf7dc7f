//! Receipts: what a caller holds after `save` returned, and may await.

use serde::Serialize;
use tokio::sync::watch;

use crate::error::{Error, Failure, Result};
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
    /// with why it was not committed ([`Error::Busy`],
    /// [`Error::DeadLettered`], [`Error::WriteFailed`], [`Error::Closed`]).
    pub async fn durable(&self) -> Result<WriteOutcome> {
        let mut rx = self.rx.clone();
        let status = rx
            .wait_for(|s| !matches!(s, ReceiptStatus::Accepted))
            .await
            .map(|s| s.clone())
            .map_err(|_| Error::Closed)?;
        match status {
            ReceiptStatus::Durable(o) | ReceiptStatus::Indexed(o) => Ok(o),
            ReceiptStatus::Failed(f) => Err(f.into()),
            ReceiptStatus::Accepted => Err(Error::Closed),
        }
    }

    /// Resolves when the index can find the save (for a forget: no longer
    /// finds the key), or with why it was not committed. If the engine stops
    /// after the commit but before indexing, this returns [`Error::Closed`];
    /// the next open indexes the row.
    pub async fn indexed(&self) -> Result<WriteOutcome> {
        let mut rx = self.rx.clone();
        let status = rx
            .wait_for(|s| matches!(s, ReceiptStatus::Indexed(_) | ReceiptStatus::Failed(_)))
            .await
            .map(|s| s.clone())
            .map_err(|_| Error::Closed)?;
        match status {
            ReceiptStatus::Indexed(o) => Ok(o),
            ReceiptStatus::Failed(f) => Err(f.into()),
            _ => Err(Error::Closed),
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

/// A new receipt and its resolver.
pub(crate) fn receipt(seq: u64) -> (Resolver, Receipt) {
    let (tx, rx) = watch::channel(ReceiptStatus::Accepted);
    (Resolver(tx), Receipt { seq, rx })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_in_order_and_blocking_waits_work() {
        let (r, receipt) = receipt(7);
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
        let (r, rec) = receipt(1);
        r.failed(Failure::DeadLettered {
            reason: "no".into(),
        });
        r.indexed(); // does not override a failure
        assert!(matches!(
            rec.wait_indexed(),
            Err(Error::DeadLettered { .. })
        ));

        let (r, rec) = receipt(2);
        drop(r);
        assert!(matches!(rec.wait_durable(), Err(Error::Closed)));
    }

    #[test]
    fn dropping_the_receipt_changes_nothing() {
        let (r, receipt) = receipt(3);
        drop(receipt);
        r.durable(WriteOutcome::NotFound);
        r.indexed();
    }
}
