//! The writer thread: the only place the engine writes memories. It owns the
//! store's write connection, runs one flush at a time, resolves the flush's
//! receipts, and hands the committed results to the [`RagIndexer`].
//!
//! A dedicated OS thread, not an actor's async thread: SQLite blocks (fsync,
//! busy waits), and a blocked async thread would stall every timer and
//! message of the actor system. Finishing the flush here rather than back in
//! the batcher means a committed batch's receipts resolve even if the actor
//! system is stopping.
//!
//! **A batch is never given up for a transient fault.** A locked database,
//! a full disk, an I/O error or a panic outside any one row (a row that
//! fails or panics alone is the store's to dead-letter) makes the writer retry
//! the same batch with backoff (5 ms doubling to 1 s, jittered) for as long
//! as the process lives; the saves stay in the journal and the overlay,
//! readable, and the stall shows in `stats` and in the writer's health
//! (waiters stop waiting after `busy_deadline`). Batches are committed in
//! sequence order and none is skipped, so a journal's committed mark never
//! passes an operation that is not committed. The one exception is a
//! stopping engine whose writer is still failing past the deadline: it
//! stops trying (for this and every later batch), and the journal it leaves
//! behind is replayed by the next open.
//!
//! [`RagIndexer`]: crate::RagIndexer

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;

use crate::error::Failure;
use crate::indexer::{IndexBatch, IndexItem, RagIndexer};
use crate::ingress::{QueuedOp, Shared};
use crate::model::{StoreOp, WriteOutcome};
use crate::stats::{add, Metrics};
use crate::store::{Backoff, BatchReport, BatchWriter, Fault, ItemResult};

/// One flush: the coalesced batch and the operations it superseded. A job
/// with neither is a barrier: its `done` fires once every job sent before
/// it is finished.
pub(crate) struct FlushJob {
    /// At most one operation per key, in sequence order.
    pub winners: Vec<QueuedOp>,
    /// Earlier operations on a key of `winners`, with the winner's sequence
    /// number. They resolve with the winner's outcome.
    pub superseded: Vec<(QueuedOp, u64)>,
    /// Signalled when the flush is finished (committed, or given up by a
    /// stopping engine).
    pub done: futures::channel::oneshot::Sender<()>,
}

impl FlushJob {
    /// A barrier job and the receiver its `done` fires on.
    pub fn barrier() -> (FlushJob, futures::channel::oneshot::Receiver<()>) {
        let (done, finished) = futures::channel::oneshot::channel();
        (
            FlushJob {
                winners: Vec::new(),
                superseded: Vec::new(),
                done,
            },
            finished,
        )
    }
}

/// The sending side of the writer thread. The thread ends when every sender
/// is dropped, after finishing the jobs already sent.
pub(crate) type WriterSender = mpsc::Sender<FlushJob>;

/// A started writer thread: where its jobs go, and what fires once it has
/// ended and closed its store (its database handles).
pub(crate) struct WriterThread {
    pub jobs: WriterSender,
    pub closed: futures::channel::oneshot::Receiver<()>,
}

/// Flushes of at least this many operations in all, since the heap was
/// last given back, leave a heap worth giving back to the system once they
/// are indexed (see [`HeapRelease`]). Counted over flushes: with the default
/// `max_batch` of 1,000 a backlog drains in many small flushes.
const RELEASE_AFTER_OPS: usize = 10_000;

/// How long the writer waits for a job before it looks whether the heap can
/// be given back.
const RELEASE_IDLE: Duration = Duration::from_secs(1);

/// Gives the heap of a large drained backlog back to the system. Pending
/// saves are many small blocks; once committed and indexed they are free,
/// but glibc's malloc keeps free memory below a block still in use, so the
/// process would keep the backlog's peak for good. After a large flush, the
/// writer thread (idle: never inside `save` or a flush) asks malloc to
/// return its free pages once the indexer has caught up, as seen at two
/// idle checks in a row (the indexer frees a batch's saves just after it
/// says so).
#[derive(Debug, Default)]
struct HeapRelease {
    /// Operations flushed since the heap was last given back.
    since: usize,
    owed: bool,
    caught_up_once: bool,
}

impl HeapRelease {
    /// A flush of `ops` operations is about to run.
    fn flushed(&mut self, ops: usize) {
        self.since = self.since.saturating_add(ops);
        self.owed |= self.since >= RELEASE_AFTER_OPS;
        self.caught_up_once = false;
    }

    /// No job for [`RELEASE_IDLE`]; `caught_up`: nothing committed waits
    /// for the index.
    fn idle(&mut self, caught_up: bool) {
        if !caught_up {
            self.caught_up_once = false;
        } else if std::mem::replace(&mut self.caught_up_once, true) {
            self.owed = false;
            self.since = 0;
            self.caught_up_once = false;
            release_free_heap();
        }
    }
}

/// Returns malloc's free pages to the system (glibc; elsewhere nothing).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer; it only releases memory malloc
    // holds free, and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!("freed heap returned to the system");
}

/// glibc's trim threshold while an engine runs: free memory at the top of
/// a heap is given back to the system only past this much (see
/// [`keep_freed_heap`]).
const TRIM_THRESHOLD: i32 = 64 << 20;

/// Stops glibc from giving freed heap back to the system at every `free`
/// past its default 128 KiB threshold. The writer's SQLite statements
/// allocate and free tens of kilobytes every few dozen rows; in a thread's
/// arena each such free shrank the heap with `madvise(MADV_DONTNEED)`, a
/// TLB shootdown across every core (10,536 calls in 4 s of back-to-back
/// 1,000-save bursts). With some heap layouts that was most of a flush: a
/// 1,000-save batch took 19-25 ms to commit, 5 ms with the threshold raised
/// (`perf`: 25% of the writer thread in the shootdown). The heap is given
/// back instead when the writer is idle, in one `malloc_trim`
/// ([`HeapRelease`]). Process-wide (it also turns off glibc's dynamic
/// thresholds) and set once; glibc only.
fn keep_freed_heap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt takes two integers and is thread-safe.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    });
}

/// Starts the writer thread. It ends when every sender of its jobs is
/// dropped: it finishes the jobs already sent, closes the store, and then
/// fires [`WriterThread::closed`].
pub(crate) fn spawn_writer(
    mut store: Box<dyn BatchWriter>,
    shared: Arc<Shared>,
    indexer: Addr<RagIndexer>,
) -> std::io::Result<WriterThread> {
    let (tx, rx) = mpsc::channel::<FlushJob>();
    let (closed_tx, closed) = futures::channel::oneshot::channel();
    keep_freed_heap();
    std::thread::Builder::new()
        .name("mnemo-writer".into())
        .spawn(move || {
            let mut release = HeapRelease::default();
            loop {
                let job = if release.owed {
                    match rx.recv_timeout(RELEASE_IDLE) {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            release.idle(shared.unindexed() == 0);
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                } else {
                    match rx.recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    }
                };
                release.flushed(job.winners.len() + job.superseded.len());
                run_flush(store.as_mut(), &shared, &indexer, job);
            }
            drop(store);
            let _ = closed_tx.send(());
            tracing::debug!("writer thread finished");
        })?;
    Ok(WriterThread { jobs: tx, closed })
}

fn version_of(o: &WriteOutcome) -> u64 {
    match *o {
        WriteOutcome::Inserted { version }
        | WriteOutcome::Updated { version }
        | WriteOutcome::Unchanged { version }
        | WriteOutcome::Deleted { version } => version,
        _ => 0,
    }
}

/// The longest pause between two attempts at a failing batch.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One attempt; a panic that escapes the store neither takes this thread
/// (and every later flush) down nor loses the batch: it is a fault like any
/// other (a panic leaves no transaction behind: rusqlite rolls back on
/// drop).
fn attempt_catching_panics(
    store: &mut dyn BatchWriter,
    ops: &[StoreOp],
) -> Result<BatchReport, Fault> {
    catch_unwind(AssertUnwindSafe(|| {
        // Fail point for tests: "panic" makes the store panic mid-flush.
        fail::fail_point!("mnemo::write_batch");
        store.write_batch(ops)
    }))
    .unwrap_or_else(|_| Err(Fault("the store panicked while writing this batch".into())))
}

/// Tries the batch until it commits. `None` only when the engine is
/// stopping and the writer has been failing past the deadline (or an
/// earlier batch was given up that way: later ones must not commit past it).
fn write_until_committed(
    store: &mut dyn BatchWriter,
    shared: &Shared,
    ops: &[StoreOp],
) -> Option<BatchReport> {
    let mut backoff = Backoff::new(MAX_BACKOFF);
    let mut last_reason = String::new();
    loop {
        if shared.health.abandoned() {
            return None;
        }
        let fault = match attempt_catching_panics(store, ops) {
            Ok(report) => {
                if !last_reason.is_empty() {
                    tracing::info!("the writer commits again");
                }
                shared.health.committed();
                return Some(report);
            }
            Err(fault) => fault,
        };
        add(&shared.metrics.write_retries, 1);
        let left = shared.health.failed(&fault.0);
        if fault.0 != last_reason {
            tracing::warn!(reason = %fault, items = ops.len(), "batch not committed; retrying until it is (the saves are kept)");
            last_reason = fault.0;
        }
        if left.is_zero() && shared.is_closed() {
            tracing::error!(
                reason = %last_reason,
                "the engine is stopping and its writer still cannot commit: giving up this process's attempt"
            );
            shared.health.abandon();
            return None;
        }
        let pause = backoff.next();
        // Wake at the deadline too, so waiters learn of it on time.
        std::thread::sleep(if left.is_zero() {
            pause
        } else {
            pause.min(left)
        });
    }
}

/// Writes one batch and settles every receipt in it.
pub(crate) fn run_flush(
    store: &mut dyn BatchWriter,
    shared: &Shared,
    indexer: &Addr<RagIndexer>,
    job: FlushJob,
) {
    let FlushJob {
        winners,
        superseded,
        done,
    } = job;
    if winners.is_empty() && superseded.is_empty() {
        let _ = done.send(()); // a barrier
        return;
    }
    let span = tracing::info_span!(
        "flush",
        items = winners.len(),
        superseded = superseded.len()
    );
    let _enter = span.enter();
    let started = Instant::now();
    shared.sync_journal();
    let ops: Vec<StoreOp> = winners.iter().map(|q| q.op.clone()).collect();
    let bytes: usize = winners.iter().map(QueuedOp::bytes).sum::<usize>()
        + superseded.iter().map(|(q, _)| q.bytes()).sum::<usize>();
    let count = winners.len() + superseded.len();
    match write_until_committed(store, shared, &ops) {
        Some(report) => settle(shared, indexer, winners, superseded, report, bytes, started),
        None => give_up(shared, winners, superseded, bytes),
    }
    let _ = done.send(());
    tracing::trace!(count, "flush finished");
}

/// Resolves a committed batch's receipts and hands it to the indexer.
fn settle(
    shared: &Shared,
    indexer: &Addr<RagIndexer>,
    winners: Vec<QueuedOp>,
    superseded: Vec<(QueuedOp, u64)>,
    report: BatchReport,
    bytes: usize,
    started: Instant,
) {
    let m: &Metrics = &shared.metrics;
    let count = winners.len() + superseded.len();
    let took = started.elapsed();
    // Counters first: whoever wakes on a receipt sees them updated.
    let dead = report
        .results
        .iter()
        .filter(|r| matches!(r, ItemResult::DeadLettered(_)))
        .count();
    add(&m.committed, (count - dead) as u64);
    add(&m.batches, 1);
    m.record_flush(winners.len(), took);
    Metrics::set_max(&m.committed_change, report.last_change);
    shared.release(count, bytes);
    let max_seq = winners
        .iter()
        .map(|q| q.op.seq)
        .chain(superseded.iter().map(|(q, _)| q.op.seq))
        .max()
        .unwrap_or(0);
    shared.committed_through(max_seq);
    // What became of each winner, for the saves it superseded.
    let mut rejected: HashMap<u64, String> = HashMap::new();
    let mut items = Vec::with_capacity(count);
    for (q, r) in winners.into_iter().zip(report.results) {
        match r {
            ItemResult::Written(outcome) => {
                match outcome {
                    WriteOutcome::Unchanged { .. } => add(&m.unchanged, 1),
                    // A newer operation holds the key: reads go to the store.
                    WriteOutcome::Outdated => shared.overlay.retire(&q.op.payload, q.op.seq),
                    _ => {}
                }
                shared
                    .overlay
                    .committed(&q.op.payload, q.op.seq, version_of(&outcome));
                q.resolver.durable(outcome);
                items.push(IndexItem {
                    seq: q.op.seq,
                    payload: q.op.payload,
                    resolver: q.resolver,
                });
            }
            ItemResult::DeadLettered(reason) => {
                add(&m.dead_lettered, 1);
                shared.overlay.retire(&q.op.payload, q.op.seq);
                q.resolver.failed(Failure::DeadLettered {
                    reason: reason.clone(),
                });
                rejected.insert(q.op.seq, reason);
            }
        }
    }
    for (q, by_seq) in superseded {
        match rejected.get(&by_seq) {
            // Neither value is stored: say so to both callers.
            Some(reason) => {
                add(&m.dead_lettered, 1);
                q.resolver.failed(Failure::DeadLettered {
                    reason: format!(
                        "replaced in its batch by save {by_seq}, which the database rejected: {reason}"
                    ),
                });
            }
            None => {
                q.resolver.durable(WriteOutcome::Superseded { by_seq });
                items.push(IndexItem {
                    seq: q.op.seq,
                    payload: q.op.payload,
                    resolver: q.resolver,
                });
            }
        }
    }
    tracing::debug!(
        took_ms = took.as_secs_f64() * 1e3,
        last_change = report.last_change,
        "batch committed"
    );
    shared.unindexed_add(items.len());
    // The indexer may already be gone if the system is stopping: the next
    // open indexes these rows from the database.
    indexer.do_send(IndexBatch {
        items,
        committed_at: Instant::now(),
    });
}

/// A stopping engine gave up a batch it could not commit. With the journal
/// on, the saves are in it: their receipts say so (the resolvers are
/// dropped while the health says "abandoned") and their overlay entries stay,
/// so this handle still reads them. With the journal off they are lost, and
/// said to be.
fn give_up(
    shared: &Shared,
    winners: Vec<QueuedOp>,
    superseded: Vec<(QueuedOp, u64)>,
    bytes: usize,
) {
    let count = winners.len() + superseded.len();
    shared.release(count, bytes);
    if shared.config.journal {
        tracing::error!(
            items = count,
            "not committed; kept in the crash journal for the next open"
        );
        return;
    }
    add(&shared.metrics.failed, count as u64);
    let reason = shared
        .health
        .get()
        .reason
        .unwrap_or_else(|| "the writer could not commit".into());
    let failure = Failure::WriteFailed {
        reason: format!("{reason}; the engine stopped and the crash journal is off"),
    };
    tracing::error!(items = count, %failure, "saves lost");
    for q in winners
        .into_iter()
        .chain(superseded.into_iter().map(|(q, _)| q))
    {
        shared.overlay.retire(&q.op.payload, q.op.seq);
        q.resolver.failed(failure.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_is_released_after_a_large_flush_once_indexing_caught_up_twice() {
        let mut r = HeapRelease::default();
        r.flushed(10);
        assert!(!r.owed, "a small flush leaves little to give back");
        for _ in 0..RELEASE_AFTER_OPS / 1_000 {
            r.flushed(1_000);
        }
        assert!(r.owed, "many flushes of a backlog add up");
        r.idle(false);
        r.idle(true);
        assert!(r.owed, "caught up at one check only");
        r.flushed(1);
        r.idle(true);
        assert!(r.owed, "a flush in between starts over");
        r.idle(true);
        assert!(!r.owed, "released");
    }
}
