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
use std::sync::Arc;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message,
    ResponseFuture, Running, SpawnHandle, WrapFuture,
};
use futures::channel::oneshot;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::indexer::{Drain, RagIndexer};
use crate::ingress::{QueuedOp, Shared};
use crate::model::{payload_for_forget, payload_for_save, SaveRequest};
use crate::receipt::Receipt;
use crate::writer::{FlushJob, WriterSender};

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
/// up, then stop the batcher. Answers when all of that is done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<()>")]
pub struct Shutdown;

/// The inbox went from empty to non-empty. Sent by the handle, once per
/// burst rather than once per save; the batcher takes the whole inbox.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// The batch being collected.
#[derive(Debug, Default)]
struct Batch {
    ops: Vec<QueuedOp>,
    bytes: usize,
    /// When its first save arrived (the max-wait clock).
    first_at: Option<Instant>,
}

/// Splits a batch (in sequence order) into the last operation per key and
/// the ones it supersedes.
pub(crate) fn coalesce(ops: Vec<QueuedOp>) -> (Vec<QueuedOp>, Vec<(QueuedOp, u64)>) {
    let mut last: HashMap<(&str, &str, &str), u64> = HashMap::with_capacity(ops.len());
    for q in &ops {
        let p = &q.op.payload;
        last.insert((&p.namespace, &p.category, &p.key), q.op.seq);
    }
    if last.len() == ops.len() {
        return (ops, Vec::new());
    }
    let winner_of: Vec<u64> = ops
        .iter()
        .map(|q| {
            let p = &q.op.payload;
            last[&(p.namespace.as_str(), p.category.as_str(), p.key.as_str())]
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
pub struct MemoryBatcher {
    shared: Arc<Shared>,
    writer: WriterSender,
    indexer: Addr<RagIndexer>,
    batch: Batch,
    quiet_timer: Option<SpawnHandle>,
    max_wait_timer: Option<SpawnHandle>,
    in_flight: bool,
    /// A flush was due while another was in flight.
    flush_wanted: bool,
    /// Shutdown requested: flush until empty, then stop.
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
}

impl MemoryBatcher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        writer: WriterSender,
        indexer: Addr<RagIndexer>,
    ) -> Self {
        MemoryBatcher {
            shared,
            writer,
            indexer,
            batch: Batch::default(),
            quiet_timer: None,
            max_wait_timer: None,
            in_flight: false,
            flush_wanted: false,
            draining: false,
            drain_waiters: Vec::new(),
        }
    }

    /// Moves the inbox into the batch. Returns how many operations came.
    fn take_inbox(&mut self, ctx: &mut Context<Self>) -> usize {
        let ops = self.shared.take_inbox();
        let n = ops.len();
        if n == 0 {
            return 0;
        }
        if self.batch.first_at.is_none() {
            self.batch.first_at = Some(Instant::now());
            let wait = self.shared.config.max_wait;
            self.max_wait_timer = Some(ctx.run_later(wait, |act, ctx| {
                act.max_wait_timer = None;
                tracing::trace!("max wait reached");
                act.flush(ctx);
            }));
        }
        self.batch.bytes += ops.iter().map(QueuedOp::bytes).sum::<usize>();
        self.batch.ops.extend(ops);
        n
    }

    /// Called for every arrival: restarts the quiet window and flushes at
    /// once if the batch is full or overdue.
    fn on_arrival(&mut self, ctx: &mut Context<Self>) {
        if self.take_inbox(ctx) == 0 {
            return;
        }
        if let Some(h) = self.quiet_timer.take() {
            ctx.cancel_future(h);
        }
        let quiet = self.shared.config.quiet_window;
        self.quiet_timer = Some(ctx.run_later(quiet, |act, ctx| {
            act.quiet_timer = None;
            act.flush(ctx);
        }));
        let c = &self.shared.config;
        let overdue = self
            .batch
            .first_at
            .is_some_and(|t| t.elapsed() >= c.max_wait);
        if self.batch.ops.len() >= c.max_batch || self.batch.bytes >= c.max_batch_bytes || overdue {
            self.flush(ctx);
        }
    }

    fn cancel_timers(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.quiet_timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(h) = self.max_wait_timer.take() {
            ctx.cancel_future(h);
        }
    }

    /// Takes up to one batch's worth (`max_batch` ops, `max_batch_bytes`)
    /// off the front of the current batch.
    fn split_off_batch(&mut self) -> Vec<QueuedOp> {
        let c = &self.shared.config;
        let mut n = 0;
        let mut bytes = 0;
        for q in &self.batch.ops {
            if n == c.max_batch || (n > 0 && bytes + q.bytes() > c.max_batch_bytes) {
                break;
            }
            n += 1;
            bytes += q.bytes();
        }
        self.batch.bytes -= bytes;
        let rest = self.batch.ops.split_off(n);
        std::mem::replace(&mut self.batch.ops, rest)
    }

    /// Starts a flush of the current batch, or notes that one is wanted if a
    /// flush is already in flight.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.take_inbox(ctx);
        if self.in_flight {
            self.flush_wanted = true;
            return;
        }
        if self.batch.ops.is_empty() {
            self.cancel_timers(ctx);
            self.batch.first_at = None;
            self.check_drained(ctx);
            return;
        }
        self.cancel_timers(ctx);
        let ops = self.split_off_batch();
        if self.batch.ops.is_empty() {
            self.batch.first_at = None;
        } else {
            // The rest overflowed a full batch: it is due right away.
            self.flush_wanted = true;
        }
        let (winners, superseded) = coalesce(ops);
        crate::stats::add(&self.shared.metrics.coalesced, superseded.len() as u64);
        let (done, finished) = oneshot::channel();
        let job = FlushJob {
            winners,
            superseded,
            done,
        };
        if let Err(mpsc_err) = self.writer.send(job) {
            // The writer thread is gone (it only ends when the engine does):
            // dropping the job drops its resolvers, so receipts say Closed.
            tracing::error!("writer thread is gone; failing the batch");
            drop(mpsc_err);
            return;
        }
        self.in_flight = true;
        ctx.spawn(finished.into_actor(self).map(|_, act, ctx| {
            act.in_flight = false;
            let due = std::mem::take(&mut act.flush_wanted) || act.draining;
            if due {
                act.flush(ctx);
            } else {
                act.check_drained(ctx);
            }
        }));
    }

    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        if self.draining && !self.in_flight && self.batch.ops.is_empty() {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
            ctx.stop();
        }
    }

    /// Flushes whatever is left, blocking this thread until the writer has
    /// finished it. Only for `stopping`, when no more timers will run.
    fn flush_blocking(&mut self) {
        let mut rest = self.shared.close();
        self.batch.ops.append(&mut rest);
        self.batch.bytes = self.batch.ops.iter().map(QueuedOp::bytes).sum();
        while !self.batch.ops.is_empty() {
            let ops = self.split_off_batch();
            let (winners, superseded) = coalesce(ops);
            let (done, finished) = oneshot::channel();
            if self
                .writer
                .send(FlushJob {
                    winners,
                    superseded,
                    done,
                })
                .is_err()
            {
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

    fn started(&mut self, _: &mut Context<Self>) {
        tracing::debug!("MemoryBatcher started");
    }

    /// Flushes everything still pending (blocking) so that a stopping system
    /// loses nothing it accepted.
    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.flush_blocking();
        tracing::debug!("MemoryBatcher stopping: flushed");
        Running::Stop
    }
}

impl Handler<Wake> for MemoryBatcher {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.on_arrival(ctx);
    }
}

impl Handler<SaveMemory> for MemoryBatcher {
    type Result = Result<Receipt>;

    fn handle(&mut self, msg: SaveMemory, ctx: &mut Context<Self>) -> Result<Receipt> {
        let receipt = self
            .shared
            .accept_checked(payload_for_save(msg.0, &self.shared.config))?
            .receipt;
        self.on_arrival(ctx);
        Ok(receipt)
    }
}

impl Handler<ForgetMemory> for MemoryBatcher {
    type Result = Result<Receipt>;

    fn handle(&mut self, msg: ForgetMemory, ctx: &mut Context<Self>) -> Result<Receipt> {
        let payload = payload_for_forget(msg.namespace, msg.category, msg.key, &self.shared.config);
        let receipt = self.shared.accept_checked(payload)?.receipt;
        self.on_arrival(ctx);
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
        let mut rest = self.shared.close();
        if !rest.is_empty() {
            self.batch.bytes += rest.iter().map(QueuedOp::bytes).sum::<usize>();
            self.batch.ops.append(&mut rest);
        }
        self.draining = true;
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        self.flush(ctx);
        let indexer = self.indexer.clone();
        Box::pin(async move {
            rx.await.map_err(|_| Error::Closed)?;
            // The indexer may have stopped with the system; its catch-up on
            // the next open covers what it did not index.
            let _ = indexer.send(Drain).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OpPayload, StoreOp};
    use crate::receipt::receipt;

    fn q(seq: u64, key: &str) -> QueuedOp {
        QueuedOp {
            op: StoreOp {
                seq,
                payload: Arc::new(OpPayload {
                    namespace: "n".into(),
                    category: "c".into(),
                    key: key.into(),
                    value: Some(format!("v{seq}")),
                    metadata: None,
                    at_ms: 0,
                }),
            },
            resolver: receipt(seq).0,
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
