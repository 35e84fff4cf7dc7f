//! The door every save and forget comes through, from the [`Memory`]
//! handle and from actor messages alike: validation (done by the caller),
//! the pending bound, a sequence number, the overlay insert, the inbox push.
//!
//! [`Memory`]: crate::Memory

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{OpPayload, StoreOp};
use crate::overlay::PendingOverlay;
use crate::receipt::{receipt, Receipt, Resolver};
use crate::stats::{add, Metrics};

/// An accepted operation waiting for its flush.
#[derive(Debug)]
pub(crate) struct QueuedOp {
    pub op: StoreOp,
    pub resolver: Resolver,
}

impl QueuedOp {
    pub fn bytes(&self) -> usize {
        self.op.payload.bytes()
    }
}

#[derive(Debug)]
struct Inbox {
    next_seq: u64,
    ops: Vec<QueuedOp>,
    closed: bool,
}

/// State shared by the handle, the batcher, the writer thread and the
/// indexer.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub overlay: PendingOverlay,
    pub metrics: Metrics,
    /// Accepted operations not yet taken by the batcher. One short lock per
    /// save: taking it assigns the sequence number, so inbox order, overlay
    /// order and sequence order are the same order (per-key order is kept
    /// even when several threads save the same key).
    inbox: Mutex<Inbox>,
    /// Accepted and not yet committed (or failed): the backpressure bound.
    pending: AtomicUsize,
    pending_bytes: AtomicUsize,
}

/// What [`Shared::accept`] did besides returning the receipt.
pub(crate) struct Accepted {
    pub receipt: Receipt,
    /// The inbox was empty before this save: the batcher must be woken.
    /// Otherwise a wake-up is already on its way and will take this save too.
    pub wake: bool,
}

impl Shared {
    pub fn new(config: Config, next_seq: u64) -> Shared {
        Shared {
            config,
            overlay: PendingOverlay::default(),
            metrics: Metrics::default(),
            inbox: Mutex::new(Inbox {
                next_seq,
                ops: Vec::new(),
                closed: false,
            }),
            pending: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
        }
    }

    /// Accepts a validated operation. Never blocks beyond one short lock.
    pub fn accept(&self, payload: OpPayload) -> Result<Accepted> {
        let bytes = payload.bytes();
        // Reserve room first; undo if over the bound. Relaxed is enough: the
        // bound is a budget, not a synchronisation point.
        let n = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        let b = self.pending_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if n > self.config.max_pending || b > self.config.max_pending_bytes {
            self.release(1, bytes);
            add(&self.metrics.rejected_overloaded, 1);
            return Err(Error::Overloaded {
                pending: n - 1,
                pending_bytes: b - bytes,
            });
        }
        let payload = Arc::new(payload);
        let mut inbox = self.inbox.lock();
        if inbox.closed {
            drop(inbox);
            self.release(1, bytes);
            return Err(Error::Closed);
        }
        let seq = inbox.next_seq;
        inbox.next_seq += 1;
        // The crash journal's append belongs here, under this lock, so that
        // journal order is sequence order.
        self.overlay.insert(seq, payload.clone());
        let (resolver, receipt) = receipt(seq);
        let wake = inbox.ops.is_empty();
        inbox.ops.push(QueuedOp {
            op: StoreOp { seq, payload },
            resolver,
        });
        drop(inbox);
        add(&self.metrics.accepted, 1);
        Ok(Accepted { receipt, wake })
    }

    /// [`accept`](Self::accept) for a payload that may have failed
    /// validation; counts the rejection. The one door for the handle and the
    /// actor messages alike.
    pub fn accept_checked(&self, payload: Result<OpPayload>) -> Result<Accepted> {
        let payload = payload.inspect_err(|_| add(&self.metrics.rejected_invalid, 1))?;
        self.accept(payload)
    }

    /// Takes everything accepted since the last call, in sequence order.
    pub fn take_inbox(&self) -> Vec<QueuedOp> {
        std::mem::take(&mut self.inbox.lock().ops)
    }

    /// Refuses every later save with [`Error::Closed`] and returns what is
    /// still in the inbox.
    pub fn close(&self) -> Vec<QueuedOp> {
        let mut inbox = self.inbox.lock();
        inbox.closed = true;
        std::mem::take(&mut inbox.ops)
    }

    pub fn is_closed(&self) -> bool {
        self.inbox.lock().closed
    }

    /// Returns room to the pending bound once operations are committed or
    /// failed.
    pub fn release(&self, n: usize, bytes: usize) {
        self.pending.fetch_sub(n, Ordering::Relaxed);
        self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn pending(&self) -> (usize, usize) {
        (
            self.pending.load(Ordering::Relaxed),
            self.pending_bytes.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{payload_for_save, SaveRequest};

    fn payload(config: &Config, key: &str) -> OpPayload {
        payload_for_save(SaveRequest::new("n", "c", key, "value"), config).unwrap()
    }

    #[test]
    fn sequence_numbers_and_wake_ups() {
        let s = Shared::new(Config::default(), 10);
        let a = s.accept(payload(&s.config, "a")).unwrap();
        let b = s.accept(payload(&s.config, "b")).unwrap();
        assert_eq!((a.receipt.seq(), a.wake), (10, true));
        assert_eq!((b.receipt.seq(), b.wake), (11, false));
        assert_eq!(s.take_inbox().len(), 2);
        assert!(s.accept(payload(&s.config, "c")).unwrap().wake);
        assert_eq!(s.pending().0, 3);
        assert!(s.overlay.get("n", "c", "a").is_some());
    }

    #[test]
    fn the_bound_refuses_at_once_and_recovers() {
        let config = Config {
            max_batch: 2,
            max_pending: 2,
            ..Config::default()
        };
        let s = Shared::new(config, 1);
        s.accept(payload(&s.config, "a")).unwrap();
        s.accept(payload(&s.config, "b")).unwrap();
        assert!(matches!(
            s.accept(payload(&s.config, "c")),
            Err(Error::Overloaded { pending: 2, .. })
        ));
        assert!(
            s.overlay.get("n", "c", "c").is_none(),
            "a refused save changes nothing"
        );
        let taken = s.take_inbox();
        s.release(taken.len(), taken.iter().map(QueuedOp::bytes).sum());
        s.accept(payload(&s.config, "c")).unwrap();
    }

    #[test]
    fn closed_refuses() {
        let s = Shared::new(Config::default(), 1);
        s.accept(payload(&s.config, "a")).unwrap();
        assert_eq!(s.close().len(), 1);
        assert!(matches!(
            s.accept(payload(&s.config, "b")),
            Err(Error::Closed)
        ));
        assert_eq!(s.pending().0, 1);
    }
}
