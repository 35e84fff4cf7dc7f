//! `Memory`: the handle agents hold. Opening starts the engine; the handle
//! saves, forgets, reads, reports and shuts down.

use std::sync::Arc;
use std::thread::JoinHandle;

use actix::{Actor, Addr, SyncArbiter};
use parking_lot::Mutex;

use crate::batcher::{MemoryBatcher, Shutdown, Wake};
use crate::config::{Config, Retrieval};
use crate::embed::{Embedder, NgramEmbedder};
use crate::error::{Error, Result};
use crate::indexer::RagIndexer;
use crate::ingress::Shared;
use crate::model::{
    check_part, decode_cursor, payload_for_forget, payload_for_save, ListPage, MemoryRecord,
    SaveRequest, SearchHit,
};
use crate::receipt::Receipt;
use crate::search::{self, Searcher};
use crate::stats::Stats;
use crate::store::{self, BatchWriter, IndexStore, Reader};
use crate::writer::spawn_writer;

/// A handle to an open mnemo engine. Cheap to clone; `Send + Sync`.
///
/// `save` and `forget` never block on SQLite or on indexing: they validate,
/// take a sequence number, record the save in the pending overlay and queue
/// it for the [`MemoryBatcher`], in microseconds. `get`, `list` and `search`
/// see a save from the moment `save` returned; they read SQLite through a
/// small pool of read connections (WAL: a read never waits for a flush).
///
/// **Where the engine runs.** Opened on a thread that runs an actix system,
/// the actors start in that system (so its clock, including tokio's paused
/// test clock, drives the debounce timers). Opened anywhere else (a plain
/// thread, any tokio runtime) the engine starts its own actix system on a
/// dedicated thread.
///
/// **Dropping.** Dropping the last handle of an engine that runs its own
/// system stops that system, which flushes every accepted save first, the
/// flush in flight included (the drop blocks until they are committed, or
/// until the writer has been failing for `busy_deadline`, in which case the
/// saves stay in the crash journal for the next open). Inside a caller's
/// actix system the actors keep running until that system stops, and flush
/// then, the same way. Call [`shutdown`](Memory::shutdown) to flush *and*
/// index and to learn how that went.
#[derive(Clone)]
pub struct Memory {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    batcher: Addr<MemoryBatcher>,
    reads: Arc<dyn Reader>,
    /// Hybrid retrieval: the embedder for queries and pending saves.
    embedder: Option<Arc<dyn Embedder>>,
    /// The dedicated actix system, when the engine runs its own.
    own_system: Option<OwnSystem>,
}

struct OwnSystem {
    system: actix::System,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl OwnSystem {
    fn stop_and_join(&self) {
        self.system.stop();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(own) = &self.own_system {
            own.stop_and_join();
        }
    }
}

/// What the actors need to start; built on the caller's thread so that open
/// errors (bad path, locked schema) are returned by `open`.
struct Parts {
    shared: Arc<Shared>,
    writer: Box<dyn BatchWriter>,
    index: Box<dyn IndexStore>,
    embedder: Option<Arc<dyn Embedder>>,
}

fn start_actors(parts: Parts) -> Result<Addr<MemoryBatcher>> {
    let Parts {
        shared,
        writer,
        index,
        embedder,
    } = parts;
    // One indexer thread: index transactions are serial anyway (one writer
    // at a time in SQLite, one indexer at a time per PostgreSQL database),
    // and FIFO order is what `Drain` relies on. The factory runs once.
    let slot = Arc::new(Mutex::new(Some(index)));
    let factory_shared = shared.clone();
    let indexer: Addr<RagIndexer> = SyncArbiter::start(1, move || {
        let index = slot.lock().take().expect("the indexer's factory runs once");
        RagIndexer::new(factory_shared.clone(), index, embedder.clone())
    });
    let writer = spawn_writer(writer, shared.clone(), indexer.clone())?;
    Ok(MemoryBatcher::new(shared, writer, indexer).start())
}

/// `true` if this thread is running an actix system's arbiter right now (so
/// actors can be started here). A thread that ran a system earlier keeps its
/// thread-locals, hence the check for a live tokio context too.
fn in_actix_system() -> bool {
    actix::System::try_current().is_some()
        && actix::Arbiter::try_current().is_some()
        && tokio::runtime::Handle::try_current().is_ok()
}

impl Memory {
    /// Opens (creating if needed) the database at `config.path` and starts
    /// the engine. Blocks while it opens the database and indexes any
    /// committed rows the index has not seen (a crash between commit and
    /// index); that is milliseconds unless the backlog is large.
    ///
    /// With [`Retrieval::Hybrid`] the built-in [`NgramEmbedder`] embeds
    /// memories and queries.
    pub fn open(config: Config) -> Result<Memory> {
        let embedder: Option<Arc<dyn Embedder>> = match config.retrieval {
            Retrieval::Lexical => None,
            Retrieval::Hybrid => Some(Arc::new(NgramEmbedder::new())),
        };
        Memory::start(config, embedder)
    }

    /// [`open`](Memory::open) with `embedder` for the vector side of
    /// [`Retrieval::Hybrid`] instead of the built-in one. Its vectors are
    /// stored under its [`model_id`](Embedder::model_id); with
    /// [`Retrieval::Lexical`] it is not used.
    pub fn open_with_embedder(config: Config, embedder: Arc<dyn Embedder>) -> Result<Memory> {
        let embedder = (config.retrieval == Retrieval::Hybrid).then_some(embedder);
        Memory::start(config, embedder)
    }

    fn start(config: Config, embedder: Option<Arc<dyn Embedder>>) -> Result<Memory> {
        config.validate()?;
        let (shared, opened) = crate::open::prepare(&config, embedder.as_deref())
            .map_err(|e| store::open_error(&config, e))?;
        let reads = opened.reads.clone();
        let parts = Parts {
            shared: shared.clone(),
            writer: opened.writer,
            index: opened.index,
            embedder: embedder.clone(),
        };

        let (batcher, own_system) = if in_actix_system() {
            (start_actors(parts)?, None)
        } else {
            let (tx, rx) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("mnemo-engine".into())
                .spawn(move || {
                    let runner = actix::System::new();
                    let started = runner.block_on(async move {
                        start_actors(parts).map(|addr| (addr, actix::System::current()))
                    });
                    let ok = started.is_ok();
                    let _ = tx.send(started);
                    if ok {
                        let _ = runner.run();
                    }
                })?;
            let (addr, system) = rx.recv().map_err(|_| Error::Closed)??;
            (
                addr,
                Some(OwnSystem {
                    system,
                    thread: Mutex::new(Some(thread)),
                }),
            )
        };
        tracing::debug!(path = %store::shown_path(&config).display(), "mnemo open");
        Ok(Memory {
            inner: Arc::new(Inner {
                shared,
                batcher,
                reads,
                embedder,
                own_system,
            }),
        })
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// Saves a memory. Returns in microseconds: never waits for SQLite or
    /// the index. The save is readable at once; await the [`Receipt`] to
    /// learn when it is durable and when it is indexed.
    ///
    /// Errors (nothing is changed): [`Error::InvalidInput`] naming the field,
    /// [`Error::Overloaded`] when too many saves are pending,
    /// [`Error::Closed`] after shutdown.
    pub fn save(&self, request: SaveRequest) -> Result<Receipt> {
        let shared = &self.inner.shared;
        self.enqueue(shared.accept_checked(payload_for_save(request, &shared.config))?)
    }

    /// Forgets a memory. Travels the same path as saves, in order with them:
    /// a forget after a save of the same key wins, and the reverse.
    pub fn forget(&self, namespace: &str, category: &str, key: &str) -> Result<Receipt> {
        let shared = &self.inner.shared;
        let payload = payload_for_forget(
            namespace.to_owned(),
            category.to_owned(),
            key.to_owned(),
            &shared.config,
        );
        self.enqueue(shared.accept_checked(payload)?)
    }

    fn enqueue(&self, accepted: crate::ingress::Accepted) -> Result<Receipt> {
        if accepted.wake {
            // `do_send` never blocks and ignores the mailbox capacity; the
            // pending bound above is the backpressure, not the mailbox.
            self.inner.batcher.do_send(Wake);
        }
        Ok(accepted.receipt)
    }

    /// The memory under a key: the latest accepted save, even if it is not
    /// committed yet, or `None` (never saved, or forgotten).
    pub fn get(&self, namespace: &str, category: &str, key: &str) -> Result<Option<MemoryRecord>> {
        let c = &self.inner.shared.config;
        check_part("namespace", namespace, c.max_key_part_bytes)?;
        check_part("category", category, c.max_key_part_bytes)?;
        check_part("key", key, c.max_key_part_bytes)?;
        // The overlay first, then SQLite: an entry retires only after its
        // commit, so checking in this order never misses a save. A committed
        // entry defers to the store, which holds it or something newer.
        if let Some(entry) = self.inner.shared.overlay.get(namespace, category, key) {
            if !entry.is_committed() {
                return Ok(entry.record());
            }
        }
        self.inner.reads.get(namespace, category, key)
    }

    /// Every memory of a namespace, or of one category in it, ordered by
    /// category and key, pending saves included.
    ///
    /// **Unbounded**: it returns the whole namespace in one `Vec` (4,000
    /// memories of 64 KiB are 256 MiB). Anything that answers a caller it
    /// does not control (a tool, a server) should use
    /// [`list_page`](Memory::list_page).
    pub fn list(&self, namespace: &str, category: Option<&str>) -> Result<Vec<MemoryRecord>> {
        let c = &self.inner.shared.config;
        check_part("namespace", namespace, c.max_key_part_bytes)?;
        if let Some(cat) = category {
            check_part("category", cat, c.max_key_part_bytes)?;
        }
        // Uncommitted entries only: a committed one is in the store (or
        // something newer is), read after this snapshot.
        let fresh: Vec<_> = self
            .inner
            .shared
            .overlay
            .snapshot(namespace, category)
            .into_iter()
            .filter(|e| !e.is_committed())
            .collect();
        let stored = self.inner.reads.list(namespace, category)?;
        let merged = merge_pending(stored, fresh);
        Ok(merged.into_values().collect())
    }

    /// One page of [`list`](Memory::list): at most `limit` memories
    /// (default [`ListPage::DEFAULT_LIMIT`], 1..=[`ListPage::MAX_LIMIT`])
    /// that sort after `cursor` (by category, then key), pending saves
    /// included and pending forgets hidden exactly as `list` does. Pass the
    /// page's [`next_cursor`](ListPage::next_cursor) to get the next one;
    /// `None` starts at the beginning. A page is exact: it holds `limit`
    /// memories whenever that many follow the cursor, and `next_cursor` is
    /// `None` only when nothing does.
    ///
    /// Pages are read one at a time, not from a snapshot: a memory saved or
    /// forgotten between two calls shows up (or goes) if it sorts after the
    /// cursor. A limit out of range is an [`Error::InvalidInput`] for
    /// `limit`, a cursor that is not a `next_cursor` one for `cursor`.
    ///
    /// Blocks on one SQLite read (a keyset read on the key index: its cost
    /// is the page, not the namespace).
    pub fn list_page(
        &self,
        namespace: &str,
        category: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<ListPage> {
        let c = &self.inner.shared.config;
        check_part("namespace", namespace, c.max_key_part_bytes)?;
        if let Some(cat) = category {
            check_part("category", cat, c.max_key_part_bytes)?;
        }
        let limit = limit.unwrap_or(ListPage::DEFAULT_LIMIT);
        if !(1..=ListPage::MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!(
                    "must be between 1 and {} (got {limit})",
                    ListPage::MAX_LIMIT
                ),
            ));
        }
        let after = cursor
            .map(|cur| decode_cursor(cur, c.max_key_part_bytes))
            .transpose()?;
        let after_ref = after.as_ref().map(|(ac, ak)| (ac.as_str(), ak.as_str()));
        let follows = |cat: &str, key: &str| after_ref.is_none_or(|bound| (cat, key) > bound);
        // The overlay before SQLite, as in `list`: an entry retires only
        // after its commit, so nothing falls between the two reads.
        let fresh: Vec<_> = self
            .inner
            .shared
            .overlay
            .snapshot(namespace, category)
            .into_iter()
            .filter(|e| !e.is_committed() && follows(e.payload.category(), e.payload.key()))
            .collect();
        // Each pending forget may hide one stored row: read that many more,
        // and one past the page to learn whether another page follows.
        let hidden = fresh.iter().filter(|e| e.payload.value().is_none()).count();
        let stored =
            self.inner
                .reads
                .list_page(namespace, category, after_ref, limit + 1 + hidden)?;
        let merged = merge_pending(stored, fresh);
        // Exact: if SQLite returned all it was asked for, at least
        // `limit + 1` of its rows survived the forgets, and any row it did
        // not return sorts after them; so the first `limit + 1` merged
        // entries are the true ones.
        let mut records: Vec<MemoryRecord> = merged.into_values().take(limit + 1).collect();
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records
                .last()
                .map(|r| ListPage::cursor_after(&r.category, &r.key))
        } else {
            None
        };
        Ok(ListPage {
            records,
            next_cursor,
        })
    }

    /// Every namespace that holds at least one memory (pending saves
    /// included), in order. For tools that walk the whole database, such as
    /// export.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let fresh = self.inner.shared.overlay.namespaces();
        let mut all = self.inner.reads.namespaces()?;
        all.extend(fresh);
        all.sort();
        all.dedup();
        // A namespace whose only entries are pending forgets may be empty.
        let mut out = Vec::with_capacity(all.len());
        for ns in all {
            if !self.list_page(&ns, None, Some(1), None)?.records.is_empty() {
                out.push(ns);
            }
        }
        Ok(out)
    }

    /// Searches a namespace's memories for the words of `query` (any text:
    /// quotes, `*`, `NEAR`, parentheses and SQL are just words), optionally in
    /// one category; at most `limit` hits (1..=1000), best first. Blocks for
    /// the read (a pooled connection; never waits for a flush).
    ///
    /// **Limits.** `query` may hold at most
    /// [`MAX_QUERY_BYTES`](crate::text::MAX_QUERY_BYTES) (8 KiB) of text and
    /// [`MAX_QUERY_TERMS`](crate::text::MAX_QUERY_TERMS) (256) distinct terms
    /// (words or phrases after duplicates and English function words are
    /// dropped; a CJK run counts one term per pair of characters). Past
    /// either, [`Error::InvalidInput`] on the field `query`; nothing is
    /// truncated. A query of only punctuation returns no hits.
    ///
    /// [`Retrieval::Lexical`] (the default): memories saved a moment ago,
    /// not yet in the index, are matched in memory and ranked first; indexed
    /// ones follow by bm25 (key and category weigh more than the value), then
    /// recency. A pending save is tokenised by the first search that needs
    /// it, once; each later search costs a lookup per term in it.
    ///
    /// [`Retrieval::Hybrid`]: two rankings fused by their scores: the
    /// lexical one above (each hit's bm25 over the best hit's), and the
    /// vector one: indexed memories and pending saves (embedded once, by the
    /// first search that needs them) by cosine similarity to the query's
    /// vector, at or above the embedder's floor, each scored by its height
    /// above the namespace's background similarity. The vector side counts
    /// as the embedder's [`Fusion`](crate::Fusion) says, less when its best
    /// match barely stands out; a memory found by either side can be
    /// returned, one found by both ranks higher (`search/fusion.rs`). Each
    /// hit's [`score`](SearchHit::score) is then its fused score.
    pub fn search(
        &self,
        namespace: &str,
        query: &str,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let c = &self.inner.shared.config;
        check_part("namespace", namespace, c.max_key_part_bytes)?;
        if let Some(cat) = category {
            check_part("category", cat, c.max_key_part_bytes)?;
        }
        if limit == 0 || limit > 1000 {
            return Err(Error::invalid("limit", "must be between 1 and 1000"));
        }
        let q = search::parse_query(query)?;
        Searcher {
            overlay: &self.inner.shared.overlay,
            reads: self.inner.reads.as_ref(),
            embedder: self.inner.embedder.as_deref(),
        }
        .search(namespace, query, &q, category, limit)
    }

    /// The engine's counters right now. Never blocks on SQLite.
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        let mut s = shared.metrics.snapshot();
        let (pending, bytes) = shared.pending();
        s.pending = pending;
        s.pending_bytes = bytes;
        s.overlay_keys = shared.overlay.len();
        s.journal_bytes = shared.journal_bytes();
        let health = shared.health.get();
        s.writer_stalled_ms = health.stalled_for().as_millis() as u64;
        s.writer_stall_reason = health.reason;
        s
    }

    /// Stored rows and dead letters, counted in the database (a read).
    pub fn counts(&self) -> Result<(u64, u64)> {
        self.inner.reads.counts()
    }

    /// Asks the batcher to flush now instead of at the end of the quiet
    /// window. Does not wait; await a receipt to know when it committed.
    pub fn flush(&self) {
        self.inner.batcher.do_send(crate::batcher::Flush);
    }

    /// The batcher's address, for agents that are actors: send
    /// [`SaveMemory`](crate::SaveMemory) / [`ForgetMemory`](crate::ForgetMemory)
    /// to it directly.
    pub fn batcher(&self) -> Addr<MemoryBatcher> {
        self.inner.batcher.clone()
    }

    /// Refuses new saves ([`Error::Closed`]), flushes every accepted save,
    /// waits until the index has caught up, and stops the engine. Every
    /// receipt is resolved when this returns, and the writer and the indexer
    /// have closed their connections (the read connections close when the
    /// last handle is dropped). Idempotent.
    ///
    /// Errors: [`Error::NotCommittedYet`] when the writer kept failing (a
    /// locked database, a full disk) for `busy_deadline` while stopping: the
    /// saves it could not commit are kept in the crash journal, and the next
    /// open of the database commits them ([`Error::WriteFailed`] instead when
    /// the journal is off: they are lost). [`Error::NotIndexed`] when
    /// everything was committed but the index could not catch up (the next
    /// open indexes it).
    pub async fn shutdown(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let result = match self.inner.batcher.send(Shutdown).await {
            Ok(r) => r,
            // Already stopped: its `stopping` hook flushed, or gave up.
            Err(_) if shared.health.abandoned() => Err(shared.abandoned_error()),
            Err(_) => Ok(()),
        };
        // Everything accepted is settled: the journal goes, or stays for the
        // next open if it holds saves the writer gave up on.
        shared.close_journal();
        if let Some(own) = &self.inner.own_system {
            own.stop_and_join();
        }
        result
    }

    /// [`shutdown`](Memory::shutdown), blocking the calling thread. Not on
    /// the thread of an actix system that runs this engine (await
    /// `shutdown()` there).
    pub fn shutdown_blocking(&self) -> Result<()> {
        futures::executor::block_on(self.shutdown())
    }

    /// `true` once shutdown has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }
}

/// Stored rows with the uncommitted overlay entries laid over them, by
/// (category, key): a pending save replaces its row, a pending forget
/// hides it.
fn merge_pending(
    stored: Vec<MemoryRecord>,
    fresh: Vec<Arc<crate::overlay::OverlayEntry>>,
) -> std::collections::BTreeMap<(String, String), MemoryRecord> {
    let mut merged: std::collections::BTreeMap<(String, String), MemoryRecord> = stored
        .into_iter()
        .map(|r| ((r.category.clone(), r.key.clone()), r))
        .collect();
    for e in fresh {
        let k = (e.payload.category().to_owned(), e.payload.key().to_owned());
        match e.record() {
            Some(r) => merged.insert(k, r),
            None => merged.remove(&k),
        };
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SaveRequest;

    #[test]
    fn vectors_are_embedded_outside_the_write_lock_when_rebuilt_and_indexed() -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("probe.db");
        let save_many = |memory: &Memory, from: usize, to: usize| -> Result<Receipt> {
            let mut last = None;
            for i in from..to {
                last = Some(memory.save(SaveRequest::new(
                    "u",
                    "notes",
                    format!("k{i}"),
                    format!("note number {i} about tomatoes"),
                ))?);
            }
            memory.flush();
            Ok(last.expect("saved"))
        };
        // Memories indexed without vectors: the hybrid engine must rebuild.
        let memory = Memory::open(Config::new(&path))?;
        save_many(&memory, 0, 150)?.wait_indexed()?;
        memory.shutdown_blocking()?;

        // Embedding is checked from inside: the probe asks a second
        // connection for the write lock whenever it is asked for vectors.
        let probe = Arc::new(crate::embed::probe::LockProbe::new(&path));
        let table = crate::store::sqlite::vector_table(probe.model_id());
        let config = Config {
            retrieval: Retrieval::Hybrid,
            ..Config::new(&path)
        };
        let memory = Memory::open_with_embedder(config, probe.clone())?;
        let rebuilt = probe.calls.load(Relaxed);
        assert!(
            rebuilt >= 3,
            "150 memories in batches of 64: {rebuilt} calls"
        );
        let index_file = crate::store::sqlite::index_path(&path);
        let rebuilt_rows: i64 = rusqlite::Connection::open(&index_file)?.query_row(
            &format!("SELECT count(*) FROM {table}"),
            [],
            |r| r.get(0),
        )?;
        assert_eq!(rebuilt_rows, 150, "open rebuilt every vector");
        // New saves: embedded ahead of the indexing transaction.
        save_many(&memory, 150, 200)?.wait_indexed()?;
        assert!(probe.calls.load(Relaxed) > rebuilt);
        memory.shutdown_blocking()?;
        assert_eq!(
            probe.locked.load(Relaxed),
            0,
            "the write lock was held while embedding"
        );
        let conn = rusqlite::Connection::open(&index_file)?;
        let (n, watermark): (i64, i64) = conn.query_row(
            &format!(
                "SELECT count(*), (SELECT watermark FROM vector_models WHERE table_name = '{table}')
                 FROM {table}"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        assert_eq!(n, 200, "every memory has its vector");
        let index: i64 = conn.query_row(
            "SELECT value FROM index_meta WHERE name = 'index_watermark'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(watermark, index, "the vectors are current");
        Ok(())
    }
}
