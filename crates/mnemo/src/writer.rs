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
//! [`RagIndexer`]: crate::RagIndexer

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::error::Failure;
use crate::indexer::{IndexBatch, IndexItem, RagIndexer};
use crate::ingress::{QueuedOp, Shared};
use crate::model::{StoreOp, WriteOutcome};
use crate::stats::{add, Metrics};
use crate::store::{BatchWriter, ItemResult};

/// One flush: the coalesced batch and the operations it superseded.
pub(crate) struct FlushJob {
    /// At most one operation per key, in sequence order.
    pub winners: Vec<QueuedOp>,
    /// Earlier operations on a key of `winners`, with the winner's sequence
    /// number. They resolve when the winner's batch commits.
    pub superseded: Vec<(QueuedOp, u64)>,
    /// Signalled when the flush is finished (committed or failed).
    pub done: futures::channel::oneshot::Sender<()>,
}

/// The sending side of the writer thread. The thread ends when every sender
/// is dropped, after finishing the jobs already sent.
pub(crate) type WriterSender = mpsc::Sender<FlushJob>;

/// Starts the writer thread.
pub(crate) fn spawn_writer(
    mut store: Box<dyn BatchWriter>,
    shared: Arc<Shared>,
    indexer: Addr<RagIndexer>,
) -> std::io::Result<WriterSender> {
    let (tx, rx) = mpsc::channel::<FlushJob>();
    std::thread::Builder::new()
        .name("mnemo-writer".into())
        .spawn(move || {
            for job in rx {
                run_flush(store.as_mut(), &shared, &indexer, job);
            }
            tracing::debug!("writer thread finished");
        })?;
    Ok(tx)
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

/// How many times a batch is tried when the store panics. A panic leaves no
/// transaction behind (rusqlite rolls back on drop), so a retry is safe; a
/// panic that repeats fails the batch with a reason (its saves stay in the
/// journal for the next open).
const PANIC_ATTEMPTS: usize = 3;

/// Writes the batch; a panic in the store neither takes this thread (and
/// every later flush) down nor loses the batch on its first occurrence.
fn write_catching_panics(
    store: &mut dyn BatchWriter,
    ops: &[StoreOp],
) -> Result<crate::store::BatchReport, Failure> {
    for attempt in 1..=PANIC_ATTEMPTS {
        let result = catch_unwind(AssertUnwindSafe(|| {
            // Fail point for tests: "panic" makes the store panic mid-flush.
            fail::fail_point!("mnemo::write_batch");
            store.write_batch(ops)
        }));
        match result {
            Ok(r) => return r,
            Err(_) => tracing::error!(attempt, "the store panicked while writing a batch"),
        }
    }
    Err(Failure::WriteFailed {
        reason: format!("the store panicked while writing this batch ({PANIC_ATTEMPTS} attempts)"),
    })
}

/// Writes one batch and settles every receipt in it. Public to the crate so
/// the batcher's `stopping` hook can run a last flush the same way.
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

    let result = write_catching_panics(store, &ops);
    let m: &Metrics = &shared.metrics;
    match result {
        Ok(report) => {
            let took = started.elapsed();
            // Counters first: whoever wakes on a receipt sees them updated.
            let dead = report
                .results
                .iter()
                .filter(|r| matches!(r, ItemResult::DeadLettered(_)))
                .count();
            add(&m.committed, (count - dead) as u64);
            add(&m.batches, 1);
            m.record_flush(ops.len(), took);
            Metrics::set_max(&m.committed_change, report.last_change);
            shared.release(count, bytes);
            let max_seq = winners
                .iter()
                .map(|q| q.op.seq)
                .chain(superseded.iter().map(|(q, _)| q.op.seq))
                .max()
                .unwrap_or(0);
            shared.committed_through(max_seq);
            let mut items = Vec::with_capacity(count);
            for (q, r) in winners.into_iter().zip(report.results) {
                match r {
                    ItemResult::Written(outcome) => {
                        if matches!(outcome, WriteOutcome::Unchanged { .. }) {
                            add(&m.unchanged, 1);
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
                        q.resolver.failed(Failure::DeadLettered { reason });
                    }
                }
            }
            for (q, by_seq) in superseded {
                q.resolver.durable(WriteOutcome::Superseded { by_seq });
                items.push(IndexItem {
                    seq: q.op.seq,
                    payload: q.op.payload,
                    resolver: q.resolver,
                });
            }
            tracing::debug!(
                took_ms = took.as_secs_f64() * 1e3,
                last_change = report.last_change,
                "batch committed"
            );
            // The indexer may already be gone if the system is stopping: the
            // next open indexes these rows from the database.
            indexer.do_send(IndexBatch {
                items,
                committed_at: Instant::now(),
            });
        }
        Err(failure) => {
            tracing::error!(%failure, items = count, "batch not committed");
            add(&m.failed, count as u64);
            shared.release(count, bytes);
            for q in &winners {
                shared.overlay.retire(&q.op.payload, q.op.seq);
            }
            for q in winners
                .into_iter()
                .chain(superseded.into_iter().map(|(q, _)| q))
            {
                q.resolver.failed(failure.clone());
            }
        }
    }
    let _ = done.send(());
}
