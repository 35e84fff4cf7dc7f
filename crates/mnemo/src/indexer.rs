//! `RagIndexer`: keeps the full-text index in step with committed memories.
//!
//! A sync actor (its own thread, its own connection, started in a
//! `SyncArbiter`): indexing blocks on SQLite like writing does. Each
//! [`IndexBatch`] makes it index every committed change past its stored
//! watermark — not only the batch's own rows — so a batch it missed (a crash
//! between commit and index, another process's writes) is picked up by the
//! next one, and by [`Memory::open`](crate::Memory::open).
//!
//! With hybrid retrieval the indexer also embeds each changed memory and
//! writes its vector in the same transaction as its FTS row (and removes the
//! vectors of forgotten keys); embedding never runs in `save`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Handler, Message, SyncContext};
use rusqlite::Connection;

use crate::embed::Embedder;
use crate::ingress::Shared;
use crate::model::OpPayload;
use crate::receipt::Resolver;
use crate::sqlite::{busy_slice, index_pending_with, open_connection};
use crate::stats::Metrics;

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

/// Answers once every `IndexBatch` sent before it has been processed (the
/// mailbox is first in, first out, and the actor has one thread).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// The indexing actor. See the module doc.
pub struct RagIndexer {
    shared: Arc<Shared>,
    conn: Option<Connection>,
    /// Batches whose indexing failed; retried with the next batch.
    deferred: Vec<IndexBatch>,
    /// Hybrid retrieval: the embedder whose vectors are kept in step.
    embedder: Option<Arc<dyn Embedder>>,
}

impl RagIndexer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        conn: Option<Connection>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> RagIndexer {
        RagIndexer {
            shared,
            conn,
            deferred: Vec::new(),
            embedder,
        }
    }

    fn connection(&mut self) -> crate::Result<&mut Connection> {
        if self.conn.is_none() {
            let c = &self.shared.config;
            self.conn = Some(open_connection(
                &c.path,
                c.synchronous,
                busy_slice(c.busy_deadline),
            )?);
        }
        // Just set above when it was None.
        Ok(self.conn.as_mut().expect("connection was just opened"))
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
        let result = self.connection().and_then(|conn| {
            catch_unwind(AssertUnwindSafe(|| {
                index_pending_with(conn, INDEX_CHUNK, deadline, embedder.as_deref())
            }))
            .unwrap_or_else(|_| {
                Err(crate::Error::WriteFailed {
                    reason: "the indexer panicked".into(),
                })
            })
        });
        match result {
            Ok(pass) => {
                let m = &self.shared.metrics;
                Metrics::set_max(&m.index_watermark, pass.watermark);
                // Retire everything before resolving anything: whoever wakes
                // on a receipt sees the whole pass done.
                for batch in &batches {
                    m.record_index_lag(batch.committed_at.elapsed());
                    for item in &batch.items {
                        self.shared.overlay.retire(&item.payload, item.seq);
                    }
                }
                for item in batches.into_iter().flat_map(|b| b.items) {
                    item.resolver.indexed();
                }
                tracing::debug!(rows = pass.rows, watermark = pass.watermark, "indexed");
            }
            Err(e) => {
                // The rows stay in the overlay (still readable and
                // searchable) and are retried with the next batch.
                tracing::error!(error = %e, "indexing failed; will retry");
                self.conn = None;
                self.deferred.extend(batches);
            }
        }
    }
}

/// The `mnemo::before_index` fail point ("return" = skip). Always `false`
/// unless the `failpoints` feature is on and a test configured it.
fn skip_indexing() -> bool {
    fail::fail_point!("mnemo::before_index", |_| true);
    false
}

impl Actor for RagIndexer {
    type Context = SyncContext<Self>;
}

impl Handler<IndexBatch> for RagIndexer {
    type Result = ();

    fn handle(&mut self, msg: IndexBatch, _: &mut Self::Context) {
        let mut batches = std::mem::take(&mut self.deferred);
        batches.push(msg);
        self.catch_up(batches);
    }
}

impl Handler<Drain> for RagIndexer {
    type Result = ();

    fn handle(&mut self, _: Drain, _: &mut Self::Context) {
        let batches = std::mem::take(&mut self.deferred);
        if !batches.is_empty() {
            self.catch_up(batches);
        }
    }
}
