//! Receipts: what a caller holds after `save` returned, and may await.
//!
//! A receipt and its resolver share one small `Slot` (about 80 bytes with
//! malloc's header): every pending save has one, so it is kept lean. (A
//! tokio `watch` channel, with its nine notifiers, took ~380.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
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
    slot: Arc<Slot>,
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
        self.slot.state.lock().status.clone()
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
        let mut health = self.health.clone();
        let mut engine_gone = false;
        loop {
            let (status, changes, closed) = {
                let s = self.slot.state.lock();
                (s.status.clone(), s.changes, s.closed)
            };
            match status {
                ReceiptStatus::Indexed(o) => return Ok(o),
                ReceiptStatus::Durable(o) if until == Until::Durable => return Ok(o),
                ReceiptStatus::Failed(f) => return Err(f.into()),
                ReceiptStatus::Durable(_) | ReceiptStatus::Accepted => {}
            }
            if closed {
                // The engine dropped its side without a last word.
                let h = health.borrow().clone();
                return Err(match status {
                    ReceiptStatus::Accepted if h.abandoned => h.not_committed(),
                    ReceiptStatus::Durable(_) => Error::NotIndexed {
                        reason: "the engine stopped before indexing it".into(),
                    },
                    _ => Error::Closed,
                });
            }
            let uncommitted = matches!(status, ReceiptStatus::Accepted);
            if uncommitted && health.borrow_and_update().gives_up_waiting() {
                return Err(health.borrow().not_committed());
            }
            tokio::select! {
                biased;
                () = Changed { slot: &self.slot, seen: changes } => {}
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

/// What a receipt and its resolver share. parking_lot: a one-byte lock that
/// does not poison, held for a copy or an assignment.
#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Debug)]
struct SlotState {
    status: ReceiptStatus,
    /// Bumped at every change (the resolver's drop included), so a waiter
    /// knows whether it missed one between reading and registering.
    changes: u32,
    /// The resolver is gone: nothing will change any more.
    closed: bool,
    /// Tasks (and threads blocked through `block_on`) waiting for a change.
    /// Boxed, and only once someone waits: most receipts are never awaited
    /// (8 bytes in every slot rather than a `Vec`'s 24).
    #[allow(clippy::box_collection)]
    wakers: Option<Box<Vec<Waker>>>,
}

impl Slot {
    /// Applies `change` under the lock; if it changed anything, wakes every
    /// waiter (outside the lock).
    fn update(&self, change: impl FnOnce(&mut SlotState) -> bool) {
        let wakers = {
            let mut s = self.state.lock();
            if !change(&mut s) {
                return;
            }
            s.changes = s.changes.wrapping_add(1);
            s.wakers.take()
        };
        for w in wakers.into_iter().flat_map(|w| *w) {
            w.wake();
        }
    }
}

/// Resolves once the slot changed after the state a waiter read (`seen`),
/// or the resolver is gone.
struct Changed<'a> {
    slot: &'a Slot,
    seen: u32,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.slot.state.lock();
        if s.changes != self.seen || s.closed {
            return Poll::Ready(());
        }
        let wakers = s.wakers.get_or_insert_with(Default::default);
        // A waiter polled again (its `select!` woke for the health) is
        // registered once.
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The engine's side of a receipt. Dropping it unresolved makes the waits
/// return [`Error::Closed`] (or why the engine stopped).
#[derive(Debug)]
pub(crate) struct Resolver(Arc<Slot>);

impl Resolver {
    pub fn durable(&self, outcome: WriteOutcome) {
        self.0.update(|s| {
            s.status = ReceiptStatus::Durable(outcome);
            true
        });
    }

    pub fn failed(&self, failure: Failure) {
        self.0.update(|s| {
            s.status = ReceiptStatus::Failed(failure);
            true
        });
    }

    /// Marks an already durable save as indexed. A failed one stays failed.
    pub fn indexed(&self) {
        self.0.update(|s| match s.status {
            ReceiptStatus::Durable(o) => {
                s.status = ReceiptStatus::Indexed(o);
                true
            }
            _ => false,
        });
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // No receipt left to tell: skip the lock.
        if Arc::strong_count(&self.0) > 1 {
            self.0.update(|s| {
                s.closed = true;
                true
            });
        }
    }
}

/// A new receipt and its resolver; the receipt watches `health`.
pub(crate) fn receipt(seq: u64, health: watch::Receiver<WriterHealth>) -> (Resolver, Receipt) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState {
            status: ReceiptStatus::Accepted,
            changes: 0,
            closed: false,
            wakers: None,
        }),
    });
    (Resolver(slot.clone()), Receipt { seq, slot, health })
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
    fn every_waiter_wakes_and_a_dropped_resolver_ends_the_waits() {
        let (r, receipt) = test_receipt(4);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let c = receipt.clone();
                std::thread::spawn(move || c.wait_indexed())
            })
            .collect();
        r.durable(WriteOutcome::Updated { version: 2 });
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(r);
        for w in waiters {
            assert!(matches!(w.join().unwrap(), Err(Error::NotIndexed { .. })));
        }
        assert_eq!(
            receipt.wait_durable().unwrap(),
            WriteOutcome::Updated { version: 2 }
        );
    }

    #[test]
    fn dropping_the_receipt_changes_nothing() {
        let (r, receipt) = test_receipt(3);
        drop(receipt);
        r.durable(WriteOutcome::NotFound);
        r.indexed();
    }
}
