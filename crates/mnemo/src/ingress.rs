//! The door every save and forget comes through, from the [`Memory`]
//! handle and from actor messages alike: validation (done by the caller),
//! the pending bound, a sequence number, the overlay insert, the inbox push.
//!
//! [`Memory`]: crate::Memory

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::clock::Hlc;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::journal::Journal;
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

/// The batch being collected. It lives here, not in the batcher, so that a
/// save only has to wake the batcher when the batch starts or fills up.
#[derive(Debug)]
struct Inbox {
    next_seq: u64,
    ops: Vec<QueuedOp>,
    bytes: usize,
    /// Arrival of the batch's first save: the max-wait clock.
    first_at: Option<Instant>,
    /// Arrival of the latest save: the quiet-window clock.
    last_at: Option<Instant>,
    closed: bool,
    /// The crash journal, appended under this lock in sequence order.
    journal: Option<Journal>,
    /// Stamps operations; under this lock, so stamp order is sequence order.
    clock: Hlc,
}

/// When the collected batch is due, as the batcher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    /// Operations waiting.
    pub len: usize,
    /// `max_batch` or `max_batch_bytes` reached: flush now.
    pub full: bool,
    /// When the quiet window (from the latest save) or the max wait (from the
    /// first) runs out, whichever comes first.
    pub at: Option<Instant>,
}

/// State shared by the handle, the batcher, the writer thread and the
/// indexer.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub overlay: PendingOverlay,
    pub metrics: Metrics,
    /// The writer's health: stalled or not, and why.
    pub health: Health,
    /// Accepted operations not yet taken by the batcher. One short lock per
    /// save: taking it assigns the sequence number, so inbox order, overlay
    /// order and sequence order are the same order (per-key order is kept
    /// even when several threads save the same key).
    inbox: Mutex<Inbox>,
    /// Accepted and not yet committed (or failed): the backpressure bound.
    pending: AtomicUsize,
    pending_bytes: AtomicUsize,
    /// Highest sequence number committed by this engine.
    committed_seq: AtomicU64,
    /// Committed operations the index has not caught up with yet (they stay
    /// in the overlay until it has): bounded by `max_pending` while indexing
    /// fails, so an index that keeps failing cannot grow the overlay
    /// without limit.
    unindexed: AtomicUsize,
    /// The last indexing pass failed; the batcher's timer retries it.
    pub index_behind: AtomicBool,
}

/// What [`Shared::accept`] did besides returning the receipt.
pub(crate) struct Accepted {
    pub receipt: Receipt,
    /// The inbox was empty before this save: the batcher must be woken.
    /// Otherwise a wake-up is already on its way and will take this save too.
    pub wake: bool,
}

impl Shared {
    /// `clock_seen`: the largest operation stamp committed so far, so new
    /// stamps come after it.
    pub fn new(config: Config, next_seq: u64, journal: Option<Journal>, clock_seen: u64) -> Shared {
        Shared {
            health: Health::new(config.busy_deadline),
            config,
            overlay: PendingOverlay::default(),
            metrics: Metrics::default(),
            inbox: Mutex::new(Inbox {
                next_seq,
                ops: Vec::new(),
                bytes: 0,
                first_at: None,
                last_at: None,
                closed: false,
                journal,
                clock: Hlc::after(clock_seen),
            }),
            pending: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            committed_seq: AtomicU64::new(0),
            unindexed: AtomicUsize::new(0),
            index_behind: AtomicBool::new(false),
        }
    }

    /// Accepts a validated operation. Never blocks beyond one short lock.
    pub fn accept(&self, payload: OpPayload) -> Result<Accepted> {
        let bytes = payload.bytes();
        // Reserve room first; undo if over the bound. Relaxed is enough: the
        // bound is a budget, not a synchronisation point.
        let n = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        let b = self.pending_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        // While indexing fails, committed saves wait in the overlay too:
        // they count against the bound then, so the overlay cannot grow
        // without limit (the indexer normally trails by a batch or two).
        let index_stuck = self.index_behind.load(Ordering::Relaxed)
            && self.unindexed.load(Ordering::Relaxed) >= self.config.max_pending;
        if n > self.config.max_pending || b > self.config.max_pending_bytes || index_stuck {
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
        let hlc = inbox.clock.stamp(crate::clock::now_us());
        // Journal first, under this lock (journal order is sequence order):
        // once `save` returns, the save survives a crash of this process.
        if let Some(journal) = inbox.journal.as_mut() {
            if let Err(e) = journal.append(seq, hlc, &payload) {
                drop(inbox);
                self.release(1, bytes);
                tracing::error!(error = %e, "journal append failed; save refused");
                return Err(e);
            }
        }
        // A full segment the append rotated away from: released below, out
        // of the lock (once per segment).
        let filled = inbox.journal.as_mut().and_then(Journal::take_filled);
        inbox.next_seq += 1;
        self.overlay.insert(seq, payload.clone());
        let (resolver, receipt) = receipt(seq, self.health.subscribe());
        // tokio's clock: the paused test clock when called on a paused
        // runtime, the real one anywhere else.
        let now = Instant::now();
        inbox.first_at.get_or_insert(now);
        inbox.last_at = Some(now);
        let was_empty = inbox.ops.is_empty();
        inbox.ops.push(QueuedOp {
            op: StoreOp { seq, hlc, payload },
            resolver,
        });
        inbox.bytes += bytes;
        let c = &self.config;
        // Wake the batcher when the batch starts (to arm its timer) and when
        // it fills up (to flush at once); saves in between only record their
        // arrival, which the timer reads when it fires.
        let just_filled = inbox.ops.len() == c.max_batch
            || (inbox.bytes >= c.max_batch_bytes && inbox.bytes - bytes < c.max_batch_bytes);
        let wake = was_empty || just_filled;
        drop(inbox);
        if let Some(map) = filled {
            crate::journal::segment::release_pages(&map);
        }
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

    /// When the collected batch is due.
    pub fn due(&self) -> Due {
        let inbox = self.inbox.lock();
        let c = &self.config;
        let at = match (inbox.first_at, inbox.last_at) {
            (Some(first), Some(last)) => Some((last + c.quiet_window).min(first + c.max_wait)),
            _ => None,
        };
        Due {
            len: inbox.ops.len(),
            full: inbox.ops.len() >= c.max_batch || inbox.bytes >= c.max_batch_bytes,
            at,
        }
    }

    /// Takes the oldest operations, up to one batch (`max_batch` operations,
    /// `max_batch_bytes`, at least one), in sequence order. Returns them and
    /// whether more are left.
    pub fn take_batch(&self) -> (Vec<QueuedOp>, bool) {
        let c = &self.config;
        let mut inbox = self.inbox.lock();
        let mut n = 0;
        let mut bytes = 0;
        for q in &inbox.ops {
            let b = q.bytes();
            if n == c.max_batch || (n > 0 && bytes + b > c.max_batch_bytes) {
                break;
            }
            n += 1;
            bytes += b;
        }
        let rest = inbox.ops.split_off(n);
        let batch = std::mem::replace(&mut inbox.ops, rest);
        inbox.bytes -= bytes;
        let more = !inbox.ops.is_empty();
        if !more {
            // The next save starts a new batch and its clocks. (What is left
            // after a full batch keeps them: it is due at once anyway.)
            inbox.first_at = None;
            inbox.last_at = None;
        }
        (batch, more)
    }

    /// Refuses every later save with [`Error::Closed`]. What is already
    /// accepted stays queued for the last flushes.
    pub fn close(&self) {
        self.inbox.lock().closed = true;
    }

    /// Records that every save up to `seq` is committed and retires journal
    /// segments that held nothing later (deleted outside the lock).
    ///
    /// Also makes the journal's next segment ahead of need when the active
    /// one is half full: the file is created and pre-faulted here, on the
    /// writer thread and outside the ingress lock, so the rotation inside a
    /// later `save` only switches segments.
    pub fn committed_through(&self, seq: u64) {
        self.committed_seq.fetch_max(seq, Ordering::Relaxed);
        let (retired, wanted) = {
            let mut inbox = self.inbox.lock();
            match inbox.journal.as_mut() {
                Some(j) => (Some(j.committed_through(seq)), j.spare_wanted()),
                None => (None, None),
            }
        };
        drop(retired);
        if let Some((path, index, size)) = wanted {
            let made = crate::journal::Segment::create(path, index, size);
            let stale = match self.inbox.lock().journal.as_mut() {
                Some(j) => j.install_spare(made),
                // Closed meanwhile: the new file is not part of any journal.
                None => made.ok().map(crate::journal::Retired::from),
            };
            drop(stale);
        }
    }

    /// With `JournalSync::Batch`: forces every segment written since the
    /// last flush to disk (outside the ingress lock).
    pub fn sync_journal(&self) {
        let handles = match self.inbox.lock().journal.as_ref() {
            Some(j) => j.sync_handles(),
            None => return,
        };
        let mut done = Vec::with_capacity(handles.len());
        for (index, len, map) in handles {
            match map.flush() {
                Ok(()) => done.push((index, len)),
                Err(e) => {
                    tracing::warn!(error = %e, "journal sync failed; retried at the next flush")
                }
            }
        }
        if let Some(j) = self.inbox.lock().journal.as_mut() {
            for (index, len) in done {
                j.synced(index, len);
            }
        }
    }

    /// Removes the journal's files if everything in it is committed (clean
    /// shutdown); otherwise leaves them for the next open to replay.
    /// Called only once no flush is in flight.
    pub fn close_journal(&self) {
        let journal = self.inbox.lock().journal.take();
        if let Some(j) = journal {
            drop(j.remove(self.committed_seq.load(Ordering::Relaxed), false));
        }
    }

    /// What `shutdown` reports once the writer gave up (see
    /// [`crate::health::Health::abandon`]): the saves are kept in the
    /// journal for the next open, or, with the journal off, lost.
    pub fn abandoned_error(&self) -> Error {
        let health = self.health.get();
        if self.config.journal {
            health.not_committed()
        } else {
            Error::WriteFailed {
                reason: format!(
                    "{}; the crash journal is off",
                    health
                        .reason
                        .unwrap_or_else(|| "the writer could not commit".into())
                ),
            }
        }
    }

    /// `n` committed operations went to the indexer.
    pub fn unindexed_add(&self, n: usize) {
        self.unindexed.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` operations were indexed (their overlay entries retired).
    pub fn unindexed_sub(&self, n: usize) {
        self.unindexed.fetch_sub(n, Ordering::Relaxed);
    }

    /// Committed operations the index has not caught up with.
    pub fn unindexed(&self) -> usize {
        self.unindexed.load(Ordering::Relaxed)
    }

    /// Bytes held by the journal's segment files.
    pub fn journal_bytes(&self) -> u64 {
        self.inbox.lock().journal.as_ref().map_or(0, Journal::bytes)
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
        let s = Shared::new(Config::default(), 10, None, 0);
        let a = s.accept(payload(&s.config, "a")).unwrap();
        let b = s.accept(payload(&s.config, "b")).unwrap();
        assert_eq!((a.receipt.seq(), a.wake), (10, true));
        assert_eq!((b.receipt.seq(), b.wake), (11, false));
        assert_eq!(s.take_batch().0.len(), 2);
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
        let s = Shared::new(config, 1, None, 0);
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
        let (taken, _) = s.take_batch();
        s.release(taken.len(), taken.iter().map(QueuedOp::bytes).sum());
        s.accept(payload(&s.config, "c")).unwrap();
    }

    #[test]
    fn closed_refuses() {
        let s = Shared::new(Config::default(), 1, None, 0);
        s.accept(payload(&s.config, "a")).unwrap();
        s.close();
        assert!(matches!(
            s.accept(payload(&s.config, "b")),
            Err(Error::Closed)
        ));
        assert_eq!(s.pending().0, 1);
        assert_eq!(s.take_batch().0.len(), 1, "accepted saves stay queued");
    }

    #[test]
    fn full_batches_wake_and_are_taken_in_pieces() {
        let config = Config {
            max_batch: 3,
            ..Config::default()
        };
        let s = Shared::new(config, 1, None, 0);
        let wakes: Vec<bool> = (0..7)
            .map(|i| s.accept(payload(&s.config, &format!("k{i}"))).unwrap().wake)
            .collect();
        assert_eq!(wakes, [true, false, true, false, false, false, false]);
        assert!(s.due().full);
        let (a, more) = s.take_batch();
        assert_eq!((a.len(), more), (3, true));
        let (b, _) = s.take_batch();
        let (c, more) = s.take_batch();
        assert_eq!((b.len(), c.len(), more), (3, 1, false));
        assert_eq!(
            s.due(),
            Due {
                len: 0,
                full: false,
                at: None
            }
        );
    }
}
