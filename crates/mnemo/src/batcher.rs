//! `MemoryBatcher`: collects accepted saves and decides when to flush them.
//!
//! Rules (see `docs/design.md`):
//! - every save restarts the quiet window (default 500 ms); when it elapses
//!   the batch flushes;
//! - a batch flushes at the latest `max_wait` (2 s) after its first save,
//!   checked by a timer and in the message handler too (actix drains the
//!   mailbox before it polls timers, so a flood of saves would otherwise
//!   hold the timer off);
//! - a batch reaching `max_batch` saves or `max_batch_bytes` flushes at once;
//! - one flush in flight; saves arriving meanwhile form the next batch;
//! - saves of the same key in one batch coalesce: the last one is written,
//!   the others resolve as `Superseded`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::{
    Actor, ActorContext, ActorFutureExt, ActorState, Addr, AsyncContext, Context, Handler, Message,
    ResponseFuture, Running, SpawnHandle, WrapFuture,
};
use futures::channel::oneshot;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::indexer::{CloseIndex, Drain, RagIndexer};
use crate::ingress::{QueuedOp, Shared};
use crate::model::{payload_for_forget, payload_for_save, SaveRequest};
use crate::receipt::Receipt;
use crate::writer::{FlushJob, WriterSender, WriterThread};

/// Save a memory, sent by an agent that is itself an actor. Answers with the
/// same [`Receipt`] as [`Memory::save`](crate::Memory::save), through the
/// same write path.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Receipt>")]
pub struct SaveMemory(pub SaveRequest);

/// Forget a memory; travels the same path as saves, in order with them.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Receipt>")]
pub struct ForgetMemory {
    /// Whose memory.
    pub namespace: String,
    /// Its category.
    pub category: String,
    /// Its key.
    pub key: String,
}

/// Flush the current batch now, without waiting for the quiet window.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Refuse new saves, flush everything accepted, wait for the index to catch
/// up, then stop the batcher. Answers when all of that is done: `Ok`, or
/// [`Error::NotCommittedYet`] (the writer kept failing past the deadline;
/// the saves are left in the crash journal for the next open),
/// [`Error::WriteFailed`] (the same with the journal off: lost), or
/// [`Error::NotIndexed`] (committed, but the index is behind).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<()>")]
pub struct Shutdown;

/// A batch started or filled up. Sent by the handle when a save makes it so;
/// saves in between wake nobody.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// Splits a batch (in sequence order) into the last operation per key and
/// the ones it supersedes.
pub(crate) fn coalesce(ops: Vec<QueuedOp>) -> (Vec<QueuedOp>, Vec<(QueuedOp, u64)>) {
    let mut last: HashMap<(&str, &str, &str), u64> = HashMap::with_capacity(ops.len());
    for q in &ops {
        let p = &q.op.payload;
        last.insert((p.namespace(), p.category(), p.key()), q.op.seq);
    }
    if last.len() == ops.len() {
        return (ops, Vec::new());
    }
    let winner_of: Vec<u64> = ops
        .iter()
        .map(|q| {
            let p = &q.op.payload;
            last[&(p.namespace(), p.category(), p.key())]
        })
        .collect();
    drop(last);
    let mut winners = Vec::new();
    let mut superseded = Vec::new();
    for (q, by) in ops.into_iter().zip(winner_of) {
        if q.op.seq == by {
            winners.push(q);
        } else {
            superseded.push((q, by));
        }
    }
    (winners, superseded)
}

/// The batching actor. See the module doc. Start it through
/// [`Memory::open`](crate::Memory::open) and reach it with
/// [`Memory::batcher`](crate::Memory::batcher).
///
/// The batch being collected lives in the engine's inbox (shared with the
/// handle), so a save wakes this actor only when a batch starts or fills up.
/// The quiet window is still restarted by every save: each save moves the
/// deadline, and the one armed timer, when it fires early, re-arms itself for
/// the moved deadline (instead of being cancelled and re-created per save).
pub struct MemoryBatcher {
    shared: Arc<Shared>,
    writer: WriterSender,
    /// Fires once the writer thread has ended and closed its store; taken
    /// by `Shutdown`.
    writer_closed: Option<oneshot::Receiver<()>>,
    indexer: Addr<RagIndexer>,
    /// The armed deadline timer and when it fires.
    timer: Option<(SpawnHandle, Instant)>,
    in_flight: bool,
    /// A flush was asked for (`Flush`) while another was in flight.
    flush_wanted: bool,
    /// Shutdown requested: flush until empty, then stop.
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
}

impl MemoryBatcher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        writer: WriterThread,
        indexer: Addr<RagIndexer>,
    ) -> Self {
        MemoryBatcher {
            shared,
            writer: writer.jobs,
            writer_closed: Some(writer.closed),
            indexer,
            timer: None,
            in_flight: false,
            flush_wanted: false,
            draining: false,
            drain_waiters: Vec::new(),
        }
    }

    /// Looks at the collected batch: flushes it if it is full, overdue (quiet
    /// window or max wait over) or draining; otherwise makes sure a timer
    /// fires at its deadline. Called on every wake-up, message and timer.
    fn poke(&mut self, ctx: &mut Context<Self>) {
        let due = self.shared.due();
        if due.len == 0 {
            self.check_drained(ctx);
            return;
        }
        let now = Instant::now();
        match due.at {
            Some(at) if !due.full && !self.draining && at > now => self.arm(ctx, at, now),
            _ => self.flush(ctx),
        }
    }

    /// Arms the deadline timer for `at`, unless it is armed for earlier
    /// already (it will re-check and re-arm when it fires).
    fn arm(&mut self, ctx: &mut Context<Self>, at: Instant, now: Instant) {
        if ctx.state() != ActorState::Running {
            // Stopping (perhaps outside any runtime, as the system is torn
            // down): no timer can run; `stopping` flushes everything.
            return;
        }
        if let Some((handle, armed)) = self.timer {
            if armed <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(at - now, |act, ctx| {
            act.timer = None;
            act.poke(ctx);
        });
        self.timer = Some((handle, at));
    }

    /// Starts a flush of the oldest batch, or notes that one is wanted if a
    /// flush is already in flight.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            self.flush_wanted = true;
            return;
        }
        let (ops, more) = self.shared.take_batch();
        if !more {
            // Nothing left to time; the next save arms a new deadline.
            if let Some((handle, _)) = self.timer.take() {
                ctx.cancel_future(handle);
            }
        }
        if ops.is_empty() {
            self.check_drained(ctx);
            return;
        }
        let (winners, superseded) = coalesce(ops);
        crate::stats::add(&self.shared.metrics.coalesced, superseded.len() as u64);
        let (done, finished) = oneshot::channel();
        let job = FlushJob {
            winners,
            superseded,
            done,
        };
        if self.writer.send(job).is_err() {
            // The writer thread is gone (it only ends with the engine):
            // dropping the job drops its resolvers, so receipts say Closed.
            tracing::error!("writer thread is gone; failing the batch");
            return;
        }
        self.in_flight = true;
        ctx.spawn(finished.into_actor(self).map(|_, act, ctx| {
            act.in_flight = false;
            if std::mem::take(&mut act.flush_wanted) {
                act.flush(ctx);
            } else {
                act.poke(ctx);
            }
        }));
    }

    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        if self.draining && !self.in_flight && self.shared.due().len == 0 {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
            ctx.stop();
        }
    }

    /// Flushes whatever is left, blocking this thread until the writer has
    /// finished it, including a flush already in flight. Only for
    /// `stopping`, when no more timers will run.
    fn flush_blocking(&mut self) {
        self.shared.close();
        // The flush in flight first: its completion was to be seen by a
        // future of this actor that will not run any more.
        let (barrier, finished) = FlushJob::barrier();
        if self.writer.send(barrier).is_ok() {
            // Blocking here is deliberate: the system is stopping, and the
            // writer thread does not depend on this one.
            let _ = futures::executor::block_on(finished);
        }
        loop {
            let (ops, _) = self.shared.take_batch();
            if ops.is_empty() {
                return;
            }
            let (winners, superseded) = coalesce(ops);
            let (done, finished) = oneshot::channel();
            let job = FlushJob {
                winners,
                superseded,
                done,
            };
            if self.writer.send(job).is_err() {
                return;
            }
            // Blocking here is deliberate: the system is stopping, and the
            // writer thread does not depend on this one.
            let _ = futures::executor::block_on(finished);
        }
    }
}

impl Actor for MemoryBatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!("MemoryBatcher started");
        // Saves accepted before the actor ran woke nobody yet.
        self.poke(ctx);
    }

    /// Flushes everything still pending (blocking), the flush in flight
    /// included, so that a stopping system loses nothing it accepted; only
    /// then may the journal go (or, holding saves the writer could not
    /// commit, be left for the next open).
    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.flush_blocking();
        self.shared.close_journal();
        tracing::debug!("MemoryBatcher stopping: flushed");
        Running::Stop
    }
}

impl Handler<Wake> for MemoryBatcher {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.poke(ctx);
    }
}

impl Handler<SaveMemory> for MemoryBatcher {
    type Result = Result<Receipt>;

    fn handle(&mut self, msg: SaveMemory, ctx: &mut Context<Self>) -> Result<Receipt> {
        let receipt = self
            .shared
            .accept_checked(payload_for_save(msg.0, &self.shared.config))?
            .receipt;
        self.poke(ctx);
        Ok(receipt)
    }
}

impl Handler<ForgetMemory> for MemoryBatcher {
    type Result = Result<Receipt>;

    fn handle(&mut self, msg: ForgetMemory, ctx: &mut Context<Self>) -> Result<Receipt> {
        let payload = payload_for_forget(msg.namespace, msg.category, msg.key, &self.shared.config);
        let receipt = self.shared.accept_checked(payload)?.receipt;
        self.poke(ctx);
        Ok(receipt)
    }
}

impl Handler<Flush> for MemoryBatcher {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush(ctx);
    }
}

impl Handler<Shutdown> for MemoryBatcher {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.shared.close();
        self.draining = true;
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        self.poke(ctx);
        let indexer = self.indexer.clone();
        let shared = self.shared.clone();
        let writer_closed = self.writer_closed.take();
        Box::pin(async move {
            rx.await.map_err(|_| Error::Closed)?;
            if shared.health.abandoned() {
                return Err(shared.abandoned_error());
            }
            let drained = match indexer.send(Drain).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(Error::NotIndexed { reason }),
                // The indexer stopped with the system; the next open's
                // catch-up indexes what it did not.
                Err(_) if shared.index_behind.load(Ordering::Relaxed) => Err(Error::NotIndexed {
                    reason: "the indexer stopped with its last pass failed".into(),
                }),
                Err(_) => Ok(()),
            };
            // Drained, this actor has stopped and dropped the writer's
            // jobs: the writer thread ends and closes its store. Then the
            // indexer closes its own, so that when this answers no handle
            // of the engine's writers is open on the database files.
            if let Some(closed) = writer_closed {
                let _ = closed.await;
            }
            let _ = indexer.send(CloseIndex).await;
            drained
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OpPayload, StoreOp};
    use crate::receipt::test_receipt;

    fn q(seq: u64, key: &str) -> QueuedOp {
        QueuedOp {
            op: StoreOp {
                seq,
                hlc: seq,
                payload: Arc::new(OpPayload::new(
                    "n",
                    "c",
                    key,
                    Some(format!("v{seq}").as_str()),
                    None,
                    0,
                )),
            },
            resolver: test_receipt(seq).0,
        }
    }

    #[test]
    fn coalesce_keeps_the_last_save_per_key_in_order() {
        let (w, s) = coalesce(vec![q(1, "a"), q(2, "b"), q(3, "a"), q(4, "c"), q(5, "a")]);
        let wseq: Vec<u64> = w.iter().map(|q| q.op.seq).collect();
        assert_eq!(wseq, [2, 4, 5]);
        let sseq: Vec<(u64, u64)> = s.iter().map(|(q, by)| (q.op.seq, *by)).collect();
        assert_eq!(sseq, [(1, 5), (3, 5)]);
    }

    #[test]
    fn coalesce_without_duplicates_is_identity() {
        let (w, s) = coalesce(vec![q(1, "a"), q(2, "b")]);
        assert_eq!(w.len(), 2);
        assert!(s.is_empty());
    }
}
