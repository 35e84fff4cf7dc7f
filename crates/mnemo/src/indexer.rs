//! `RagIndexer`: keeps the full-text index in step with committed memories.
//!
//! A sync actor (its own thread, its own connection, started in a
//! `SyncArbiter`): indexing blocks on the store like writing does. Each
//! [`IndexBatch`] makes it index every committed change past its stored
//! watermark — not only the batch's own rows — so a batch it missed (a crash
//! between commit and index, another process's writes) is picked up by the
//! next one, and by [`Memory::open`](crate::Memory::open).
//!
//! With hybrid retrieval the indexer also embeds each changed memory and
//! writes its vector in the same transaction as its FTS row (and removes the
//! vectors of forgotten keys); embedding never runs in `save`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Handler, Message, SyncContext};

use crate::embed::Embedder;
use crate::ingress::Shared;
use crate::model::OpPayload;
use crate::receipt::Resolver;
use crate::stats::Metrics;
use crate::store::IndexStore;

/// Rows per indexing transaction.
const INDEX_CHUNK: usize = 2_000;

/// One committed operation whose receipt resolves `indexed` and whose overlay
/// entry retires once the index reflects it.
#[derive(Debug)]
pub(crate) struct IndexItem {
    pub seq: u64,
    pub payload: Arc<OpPayload>,
    pub resolver: Resolver,
}

/// A committed batch's per-item results, sent by the flush to the indexer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct IndexBatch {
    pub(crate) items: Vec<IndexItem>,
    pub(crate) committed_at: Instant,
}

/// Retries any indexing that failed, and answers once every `IndexBatch`
/// sent before it has been processed (the mailbox is first in, first out,
/// and the actor has one thread): `Err` with the reason if the index is
/// still behind because a pass failed.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Drain;

/// Closes the indexer's store (its database handles), for a stopping engine
/// that has drained. Later batches are left to the next open's catch-up.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct CloseIndex;

/// The indexing actor. See the module doc.
pub struct RagIndexer {
    shared: Arc<Shared>,
    /// `None` once closed ([`CloseIndex`]).
    index: Option<Box<dyn IndexStore>>,
    /// Batches whose indexing failed; retried with the next batch, or by
    /// the retry scheduled after the failure, whichever comes first.
    deferred: Vec<IndexBatch>,
    /// A retry (`Drain` in [`INDEX_RETRY`]) is on its way.
    retry_scheduled: Arc<AtomicBool>,
    /// Hybrid retrieval: the embedder whose vectors are kept in step.
    embedder: Option<Arc<dyn Embedder>>,
}

impl RagIndexer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        index: Box<dyn IndexStore>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> RagIndexer {
        RagIndexer {
            shared,
            index: Some(index),
            deferred: Vec::new(),
            retry_scheduled: Arc::new(AtomicBool::new(false)),
            embedder,
        }
    }

    /// Indexes everything committed, then settles the given batches.
    fn catch_up(&mut self, batches: Vec<IndexBatch>) {
        // Fail point for tests: "return" leaves committed rows unindexed, as
        // a crash between commit and index would.
        if skip_indexing() {
            self.deferred.extend(batches);
            return;
        }
        let deadline = self.shared.config.busy_deadline;
        let span = tracing::info_span!("index", batches = batches.len());
        let _enter = span.enter();
        let embedder = self.embedder.clone();
        // Closed (a stopping engine): the next open's catch-up indexes them.
        let Some(index) = self.index.as_mut() else {
            self.deferred.extend(batches);
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            // Fail point for tests: "return" fails the pass.
            fail::fail_point!("mnemo::index_pass", |_| Err(crate::Error::NotIndexed {
                reason: "injected indexing failure (fail point mnemo::index_pass)".into(),
            }));
            index.index_pending(INDEX_CHUNK, deadline, embedder.as_deref())
        }))
        .unwrap_or_else(|_| {
            Err(crate::Error::NotIndexed {
                reason: "the indexer panicked".into(),
            })
        });
        match result {
            Ok(pass) => {
                let m = &self.shared.metrics;
                Metrics::set_max(&m.index_watermark, pass.watermark);
                *m.index_error.lock() = None;
                self.shared.index_behind.store(false, Ordering::Relaxed);
                // Retire everything before resolving anything: whoever wakes
                // on a receipt sees the whole pass done.
                for batch in &batches {
                    m.record_index_lag(batch.committed_at.elapsed());
                    for item in &batch.items {
                        self.shared.overlay.retire(&item.payload, item.seq);
                    }
                    self.shared.unindexed_sub(batch.items.len());
                }
                for item in batches.into_iter().flat_map(|b| b.items) {
                    item.resolver.indexed();
                }
                tracing::debug!(rows = pass.rows, watermark = pass.watermark, "indexed");
            }
            Err(e) => {
                // The rows stay in the overlay (still readable and
                // searchable) and are retried with the next batch or by the
                // retry timer, whichever comes first.
                tracing::error!(error = %e, "indexing failed; will retry");
                let m = &self.shared.metrics;
                crate::stats::add(&m.index_failures, 1);
                *m.index_error.lock() = Some(e.to_string());
                self.shared.index_behind.store(true, Ordering::Relaxed);
                if let Some(index) = self.index.as_mut() {
                    index.reset_connection();
                }
                self.deferred.extend(batches);
            }
        }
    }

    /// Schedules one `Drain` in [`INDEX_RETRY`], unless one is on its way,
    /// so an idle engine still catches up after a failed pass. A sleeping
    /// thread rather than a timer: this actor has none (it is a sync
    /// actor), and a timer in the batcher would be a permanent timer on the
    /// system's clock, moving tokio's paused test clock.
    fn schedule_retry(&self, me: Addr<RagIndexer>) {
        if self.retry_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let flag = self.retry_scheduled.clone();
        let spawned = std::thread::Builder::new()
            .name("mnemo-index-retry".into())
            .spawn(move || {
                std::thread::sleep(INDEX_RETRY);
                flag.store(false, Ordering::Release);
                me.do_send(Drain);
            });
        if spawned.is_err() {
            // The next batch retries instead.
            self.retry_scheduled.store(false, Ordering::Release);
        }
    }
}

/// How long after a failed indexing pass it is retried (unless a new batch
/// comes first).
const INDEX_RETRY: Duration = Duration::from_secs(1);

/// The `mnemo::before_index` fail point ("return" = skip). Always `false`
/// unless the `failpoints` feature is on and a test configured it.
fn skip_indexing() -> bool {
    fail::fail_point!("mnemo::before_index", |_| true);
    false
}

impl Actor for RagIndexer {
    type Context = SyncContext<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        background_thread("mnemo-indexer");
    }
}

/// How much lower than the rest of the process the indexer's thread runs
/// (a nice value added to the process's).
const INDEXER_NICE: i32 = 10;

/// Names this thread and lowers its priority by [`INDEXER_NICE`]. Indexing
/// is derived work: on a machine with few cores (two, in the benchmarks) it
/// shared the CPU evenly with the writer and with the agent's own threads,
/// and a burst's commits slowed down while the previous batches were being
/// indexed. At a lower priority it takes the cores they leave idle, which
/// between bursts is all of them. Linux only (a nice value is per thread
/// there); elsewhere a no-op. A failure is harmless and ignored.
fn background_thread(name: &str) {
    #[cfg(target_os = "linux")]
    {
        let name = std::ffi::CString::new(name).unwrap_or_default();
        // SAFETY: plain system calls on this thread: PR_SET_NAME reads a
        // NUL-terminated string of at most 16 bytes (longer is truncated by
        // the kernel); getpriority/setpriority take the thread's id, which
        // `gettid` returns. Errors are reported by return values, ignored.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
            let tid = libc::gettid() as libc::id_t;
            *libc::__errno_location() = 0;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            if *libc::__errno_location() == 0 {
                libc::setpriority(libc::PRIO_PROCESS, tid, (now + INDEXER_NICE).min(19));
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}

impl Handler<IndexBatch> for RagIndexer {
    type Result = ();

    fn handle(&mut self, msg: IndexBatch, ctx: &mut Self::Context) {
        let mut batches = std::mem::take(&mut self.deferred);
        batches.push(msg);
        self.catch_up(batches);
        if self.shared.index_behind.load(Ordering::Relaxed) {
            self.schedule_retry(ctx.address());
        }
    }
}

impl Handler<CloseIndex> for RagIndexer {
    type Result = ();

    fn handle(&mut self, _: CloseIndex, _: &mut Self::Context) {
        self.index = None;
        tracing::debug!("indexer closed its store");
    }
}

impl Handler<Drain> for RagIndexer {
    type Result = Result<(), String>;

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) -> Result<(), String> {
        let batches = std::mem::take(&mut self.deferred);
        if !batches.is_empty() || self.shared.index_behind.load(Ordering::Relaxed) {
            self.catch_up(batches);
        }
        if self.shared.index_behind.load(Ordering::Relaxed) {
            self.schedule_retry(ctx.address());
            return Err(self
                .shared
                .metrics
                .index_error
                .lock()
                .clone()
                .unwrap_or_else(|| "an indexing pass failed".into()));
        }
        Ok(())
    }
}
