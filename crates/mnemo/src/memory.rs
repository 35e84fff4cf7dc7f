//! `Memory`: the handle agents hold. Opening starts the engine; the handle
//! saves, forgets, reads, reports and shuts down.

use std::sync::Arc;
use std::thread::JoinHandle;

use actix::{Actor, Addr, SyncArbiter};
use parking_lot::Mutex;

use crate::batcher::{MemoryBatcher, Shutdown, Wake};
use crate::config::{Config, Retrieval};
use crate::embed::{cosine, Embedder, NgramEmbedder};
use crate::error::{Error, Result};
use crate::indexer::RagIndexer;
use crate::ingress::Shared;
use crate::journal::{self, Journal, SEGMENT_BYTES};
use crate::model::StoreOp;
use crate::model::{
    check_part, payload_for_forget, payload_for_save, MemoryRecord, SaveRequest, SearchHit,
};
use crate::receipt::Receipt;
use crate::sqlite::{self, ReadPool, SqliteWriter};
use crate::stats::{Metrics, Stats};
use crate::store::BatchWriter;
use crate::text::{tokens, Query};
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
/// system stops that system, which flushes every accepted save first (the
/// drop blocks until then). Inside a caller's actix system the actors keep
/// running until that system stops, and flush then. Call
/// [`shutdown`](Memory::shutdown) to flush *and* index and to know when it
/// is done.
#[derive(Clone)]
pub struct Memory {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    batcher: Addr<MemoryBatcher>,
    reads: ReadPool,
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
    store: SqliteWriter,
    index_conn: rusqlite::Connection,
    embedder: Option<Arc<dyn Embedder>>,
}

fn start_actors(parts: Parts) -> Result<Addr<MemoryBatcher>> {
    let Parts {
        shared,
        store,
        index_conn,
        embedder,
    } = parts;
    // One indexer thread: index transactions are serial anyway (one writer
    // at a time in SQLite), and FIFO order is what `Drain` relies on.
    let slot = Arc::new(Mutex::new(Some(index_conn)));
    let factory_shared = shared.clone();
    let indexer: Addr<RagIndexer> = SyncArbiter::start(1, move || {
        RagIndexer::new(factory_shared.clone(), slot.lock().take(), embedder.clone())
    });
    let writer = spawn_writer(Box::new(store), shared.clone(), indexer.clone())?;
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
        if let Some(parent) = config.path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let mut store = SqliteWriter::open(&config)?;
        let replayed = replay_orphans(&mut store, &config)?;
        if replayed.records > 0 || replayed.dropped_bytes > 0 {
            tracing::info!(
                journals = replayed.journals,
                replayed = replayed.records,
                already_committed = replayed.skipped,
                dropped_bytes = replayed.dropped_bytes,
                "replayed journals of engines that stopped without flushing"
            );
        }
        let mut index_conn = sqlite::open_connection(
            &config.path,
            config.synchronous,
            sqlite::busy_slice(config.busy_deadline),
        )?;
        if sqlite::reset_index_if_stale(&index_conn)? {
            tracing::info!("the text normaliser changed: rebuilding the search index");
        }
        let caught_up = sqlite::index_pending_with(
            &mut index_conn,
            2_000,
            config.busy_deadline,
            embedder.as_deref(),
        )?;
        if caught_up.rows > 0 {
            tracing::info!(
                rows = caught_up.rows,
                "indexed rows committed before this open"
            );
        }
        let (watermark, last_change) = sqlite::index_position(&index_conn)?;
        let next_seq = sqlite::last_seq(store.connection())? + 1;
        let journal = if config.journal {
            let j = Journal::create(&config.path, config.journal_sync, SEGMENT_BYTES)?;
            store.set_journal(Some(j.id().to_owned()));
            Some(j)
        } else {
            None
        };
        let shared = Arc::new(Shared::new(config.clone(), next_seq, journal));
        shared
            .metrics
            .replayed
            .store(replayed.records, std::sync::atomic::Ordering::Relaxed);
        Metrics::set_max(&shared.metrics.index_watermark, watermark);
        Metrics::set_max(&shared.metrics.committed_change, last_change);
        let parts = Parts {
            shared: shared.clone(),
            store,
            index_conn,
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
        tracing::debug!(path = %config.path.display(), next_seq, "mnemo open");
        Ok(Memory {
            inner: Arc::new(Inner {
                shared,
                batcher,
                reads: ReadPool::new(&config),
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
        // commit, so checking in this order never misses a save.
        if let Some(entry) = self.inner.shared.overlay.get(namespace, category, key) {
            return Ok(entry.record());
        }
        self.inner
            .reads
            .with(|conn| sqlite::get(conn, namespace, category, key))
    }

    /// Every memory of a namespace, or of one category in it, ordered by
    /// category and key, pending saves included.
    pub fn list(&self, namespace: &str, category: Option<&str>) -> Result<Vec<MemoryRecord>> {
        let c = &self.inner.shared.config;
        check_part("namespace", namespace, c.max_key_part_bytes)?;
        if let Some(cat) = category {
            check_part("category", cat, c.max_key_part_bytes)?;
        }
        let fresh = self.inner.shared.overlay.snapshot(namespace, category);
        let stored = self
            .inner
            .reads
            .with(|conn| sqlite::list(conn, namespace, category))?;
        let mut merged: std::collections::BTreeMap<(String, String), MemoryRecord> = stored
            .into_iter()
            .map(|r| ((r.category.clone(), r.key.clone()), r))
            .collect();
        for e in fresh {
            let k = (e.payload.category.clone(), e.payload.key.clone());
            match e.record() {
                Some(r) => merged.insert(k, r),
                None => merged.remove(&k),
            };
        }
        Ok(merged.into_values().collect())
    }

    /// Every namespace that holds at least one memory (pending saves
    /// included), in order. For tools that walk the whole database, such as
    /// export.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let fresh = self.inner.shared.overlay.namespaces();
        let mut all = self.inner.reads.with(sqlite::namespaces)?;
        all.extend(fresh);
        all.sort();
        all.dedup();
        // A namespace whose only entries are pending forgets may be empty.
        let mut out = Vec::with_capacity(all.len());
        for ns in all {
            if !self.list(&ns, None)?.is_empty() {
                out.push(ns);
            }
        }
        Ok(out)
    }

    /// Searches a namespace's memories for the words of `query` (any text:
    /// quotes, `*`, `NEAR`, parentheses and SQL are just words), optionally in
    /// one category; at most `limit` hits (1..=1000), best first.
    ///
    /// [`Retrieval::Lexical`] (the default): memories saved a moment ago,
    /// not yet in the index, are matched in memory and ranked first; indexed
    /// ones follow by bm25 (key and category weigh more than the value), then
    /// recency.
    ///
    /// [`Retrieval::Hybrid`]: two rankings fused by reciprocal-rank fusion
    /// (score = Σ 1/(60 + rank)): the lexical one above (pending matches
    /// first, then bm25), and the vector one: indexed memories and pending
    /// saves (embedded now; they are few) by cosine similarity to the
    /// query's vector, those at least 0.05 similar. A memory found by
    /// either side can be returned; one found by both ranks higher. Each
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
        let q = Query::parse(query);
        if q.is_empty() {
            return Ok(Vec::new());
        }
        // Snapshot the overlay before querying the index: an entry retires
        // only after the index has it, so nothing falls between the two.
        let fresh = self.inner.shared.overlay.snapshot(namespace, category);
        let shadowed: std::collections::HashSet<(&str, &str)> = fresh
            .iter()
            .map(|e| (e.payload.category.as_str(), e.payload.key.as_str()))
            .collect();
        let mut hits = score_fresh(&q, &fresh);
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.record.updated_at_ms.cmp(&a.record.updated_at_ms))
        });
        if let Some(e) = &self.inner.embedder {
            return self.hybrid(&**e, namespace, query, &q, category, limit, &fresh, hits);
        }
        hits.truncate(limit);
        if hits.len() < limit {
            let indexed = self.inner.reads.with(|conn| {
                sqlite::search(conn, namespace, &q, category, limit + shadowed.len())
            })?;
            hits.extend(
                indexed
                    .into_iter()
                    .filter(|h| {
                        !shadowed.contains(&(h.record.category.as_str(), h.record.key.as_str()))
                    })
                    .take(limit - hits.len()),
            );
        }
        Ok(hits)
    }

    /// The hybrid half of [`search`](Memory::search): `fresh_hits` are the
    /// pending saves the lexical matcher found, best first.
    #[allow(clippy::too_many_arguments)]
    fn hybrid(
        &self,
        e: &dyn Embedder,
        namespace: &str,
        query: &str,
        q: &Query,
        category: Option<&str>,
        limit: usize,
        fresh: &[Arc<crate::overlay::OverlayEntry>],
        fresh_hits: Vec<SearchHit>,
    ) -> Result<Vec<SearchHit>> {
        let shadowed: std::collections::HashSet<(&str, &str)> = fresh
            .iter()
            .map(|e| (e.payload.category.as_str(), e.payload.key.as_str()))
            .collect();
        let depth = limit.max(HYBRID_DEPTH) + shadowed.len();
        // The query and the pending saves not embedded yet (few) in one
        // batch: one forward pass for a neural model. A pending save keeps
        // its vector until it retires.
        let fresh: Vec<(&crate::overlay::OverlayEntry, MemoryRecord)> = fresh
            .iter()
            .filter_map(|entry| Some((&**entry, entry.record()?)))
            .collect();
        let missing: Vec<usize> = (0..fresh.len())
            .filter(|&i| fresh[i].0.vector.get().is_none())
            .collect();
        // A query the model does not support (not its language) is not
        // embedded: the lexical ranking alone answers it. Pending saves are,
        // for the queries that come later.
        let supported = e.supports(query);
        let texts: Vec<String> = supported
            .then(|| query.to_owned())
            .into_iter()
            .chain(missing.iter().map(|&i| {
                let r = &fresh[i].1;
                sqlite::embedding_text(&r.category, &r.key, &r.value)
            }))
            .collect();
        let mut vectors = e
            .embed_batch(&texts.iter().map(String::as_str).collect::<Vec<_>>())
            .into_iter();
        let mut qv = if supported {
            vectors.next().unwrap_or_default()
        } else {
            vec![0.0; e.dimension()]
        };
        for (&i, v) in missing.iter().zip(vectors) {
            let _ = fresh[i].0.vector.set(v);
        }
        let min_similarity = e.min_similarity();
        if qv.len() != e.dimension() {
            tracing::warn!(
                model = e.model_id(),
                "the embedder returned a query vector of the wrong length; lexical search only"
            );
            qv = vec![0.0; e.dimension()];
        }
        // Nothing to embed in the query (or not the model's language): no
        // vector side at all, whatever the similarity floor.
        let query_is_zero = crate::embed::is_zero(&qv);
        let (indexed, nearest) = self.inner.reads.with(|conn| {
            let indexed = sqlite::search(conn, namespace, q, category, depth)?;
            let nearest = sqlite::vector_search(
                conn,
                namespace,
                e.model_id(),
                &qv,
                category,
                min_similarity,
                depth,
            )?;
            Ok((indexed, nearest))
        })?;
        let visible = |h: &SearchHit| {
            !shadowed.contains(&(h.record.category.as_str(), h.record.key.as_str()))
        };
        let lexical: Vec<SearchHit> = fresh_hits
            .into_iter()
            .chain(indexed.into_iter().filter(visible))
            .collect();
        let mut vector: Vec<(SearchHit, f32)> = fresh
            .into_iter()
            .filter_map(|(entry, record)| {
                let similarity = match entry.vector.get() {
                    Some(v) if v.len() == qv.len() && !query_is_zero => cosine(&qv, v),
                    _ => return None,
                };
                (similarity >= min_similarity).then_some((
                    SearchHit {
                        record,
                        score: f64::from(similarity),
                        fresh: true,
                    },
                    similarity,
                ))
            })
            .chain(nearest.into_iter().filter(|(h, _)| visible(h)))
            .collect();
        vector.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(b.0.record.updated_at_ms.cmp(&a.0.record.updated_at_ms))
        });
        let mut fused = rrf([lexical, vector.into_iter().map(|(h, _)| h).collect()]);
        fused.truncate(limit);
        Ok(fused)
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
        s
    }

    /// Stored rows and dead letters, counted in the database (a read).
    pub fn counts(&self) -> Result<(u64, u64)> {
        self.inner.reads.with(sqlite::counts)
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
    /// receipt is resolved when this returns. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        let result = match self.inner.batcher.send(Shutdown).await {
            Ok(r) => r,
            // Already stopped: its `stopping` hook flushed.
            Err(_) => Ok(()),
        };
        // Everything accepted is settled: the journal can go.
        self.inner.shared.close_journal();
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

/// Reciprocal-rank fusion's constant: a hit at rank r (1-based) of a list
/// scores 1/(RRF_K + r).
const RRF_K: f64 = 60.0;

/// Hits each side of a hybrid search contributes (at least; more if pending
/// saves shadow indexed ones).
const HYBRID_DEPTH: usize = 20;

/// Fuses ranked lists by reciprocal-rank fusion: each hit scores the sum of
/// 1/(RRF_K + rank) over the lists it is in; best first. Ties (with two
/// lists, two hits at ranks 1 and 2 swapped) go to the first list's order,
/// then to recency. A hit is identified by (category, key) (one namespace);
/// `score` is the fused score, `fresh` is kept from the first list that had
/// it.
fn rrf<const N: usize>(lists: [Vec<SearchHit>; N]) -> Vec<SearchHit> {
    // (hit, rank in the first list or MAX)
    let mut fused: Vec<(SearchHit, usize)> = Vec::new();
    let mut at: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for (list_no, list) in lists.into_iter().enumerate() {
        for (rank, hit) in list.into_iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f64 + 1.0);
            let first = if list_no == 0 { rank } else { usize::MAX };
            let k = (hit.record.category.clone(), hit.record.key.clone());
            match at.get(&k) {
                Some(&i) => {
                    fused[i].0.score += add;
                    fused[i].1 = fused[i].1.min(first);
                }
                None => {
                    at.insert(k, fused.len());
                    fused.push((SearchHit { score: add, ..hit }, first));
                }
            }
        }
    }
    fused.sort_by(|(a, ra), (b, rb)| {
        b.score
            .total_cmp(&a.score)
            .then(ra.cmp(rb))
            .then(b.record.updated_at_ms.cmp(&a.record.updated_at_ms))
    });
    fused.into_iter().map(|(h, _)| h).collect()
}

/// Field weights for matches in memories the index has not seen yet: the
/// same as the index's bm25 weights (key 3, category 2, value 1).
const FRESH_FIELD_WEIGHTS: [f64; 3] = [3.0, 2.0, 1.0];

/// Scores the overlay's memories that match `q`, bm25-like: each query term
/// found counts its best field's weight times its rarity among the
/// memories searched (a word every pending memory shares counts little).
/// Terms are matched per field, as FTS5 does, never across a field boundary.
fn score_fresh(q: &Query, fresh: &[Arc<crate::overlay::OverlayEntry>]) -> Vec<SearchHit> {
    let candidates: Vec<(MemoryRecord, Vec<f64>)> = fresh
        .iter()
        .filter_map(|e| {
            let record = e.record()?;
            let fields = [
                q.term_hits(&tokens(&record.key)),
                q.term_hits(&tokens(&record.category)),
                q.term_hits(&tokens(&record.value)),
            ];
            let best: Vec<f64> = (0..fields[0].len())
                .map(|t| {
                    (0..3)
                        .filter(|&f| fields[f][t])
                        .map(|f| FRESH_FIELD_WEIGHTS[f])
                        .fold(0.0, f64::max)
                })
                .collect();
            best.iter().any(|&w| w > 0.0).then_some((record, best))
        })
        .collect();
    let n = fresh.len() as f64;
    let terms = candidates.first().map_or(0, |(_, w)| w.len());
    let idf: Vec<f64> = (0..terms)
        .map(|t| {
            let df = candidates.iter().filter(|(_, w)| w[t] > 0.0).count() as f64;
            (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
        })
        .collect();
    candidates
        .into_iter()
        .map(|(record, w)| SearchHit {
            score: w.iter().zip(&idf).map(|(w, i)| w * i).sum(),
            record,
            fresh: true,
        })
        .collect()
}

/// What replaying orphaned journals did.
#[derive(Debug, Default)]
struct Replay {
    journals: usize,
    records: u64,
    skipped: u64,
    dropped_bytes: usize,
}

/// Commits the saves of journals whose engine is gone (killed before its
/// flush), exactly once: records at or below the journal's committed mark are
/// skipped, and each replayed batch moves the mark in its own transaction,
/// so a crash during replay replays only the rest.
fn replay_orphans(store: &mut SqliteWriter, config: &Config) -> Result<Replay> {
    let mut report = Replay::default();
    if !config.journal {
        return Ok(report);
    }
    for orphan in journal::orphans(&config.path)? {
        report.journals += 1;
        if orphan.dropped > 0 {
            tracing::warn!(
                journal = %orphan.id,
                bytes = orphan.dropped,
                "journal tail damaged (torn or corrupt record); the valid prefix is replayed"
            );
        }
        report.dropped_bytes += orphan.dropped;
        let mark = sqlite::journal_mark(store.connection(), &orphan.id)?;
        let ops: Vec<StoreOp> = orphan
            .records
            .iter()
            .filter(|r| r.seq > mark)
            .map(|r| StoreOp {
                seq: r.seq,
                payload: Arc::new(r.payload.clone()),
            })
            .collect();
        report.skipped += (orphan.records.len() - ops.len()) as u64;
        store.set_journal(Some(orphan.id.clone()));
        for chunk in ops.chunks(config.max_batch) {
            store.write_batch(chunk).map_err(Error::from)?;
            report.records += chunk.len() as u64;
        }
        store.set_journal(None);
        sqlite::drop_journal_mark(store.connection(), &orphan.id)?;
        orphan.remove();
    }
    sqlite::prune_journal_marks(store.connection(), &journal::dir_for(&config.path))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SaveRequest;

    fn hit(key: &str, at: i64) -> SearchHit {
        SearchHit {
            record: MemoryRecord {
                namespace: "n".into(),
                category: "c".into(),
                key: key.into(),
                value: "v".into(),
                metadata: None,
                version: None,
                updated_at_ms: at,
            },
            score: 0.0,
            fresh: false,
        }
    }

    fn keys(hits: &[SearchHit]) -> Vec<&str> {
        hits.iter().map(|h| h.record.key.as_str()).collect()
    }

    #[test]
    fn rrf_sums_reciprocal_ranks_and_breaks_ties_by_the_lexical_order() {
        let fused = rrf([
            vec![hit("a", 1), hit("b", 2), hit("c", 3)],
            vec![hit("b", 2), hit("a", 1), hit("d", 4)],
        ]);
        // a and b tie (1/61 + 1/62): the first list's order wins over
        // recency; c and d tie too (1/63): c is in the first list.
        assert_eq!(keys(&fused), ["a", "b", "c", "d"]);
        assert!((fused[0].score - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-12);
        let fused = rrf([vec![hit("a", 1), hit("b", 2)], vec![hit("b", 2)]]);
        assert_eq!(keys(&fused), ["b", "a"], "found by both sides ranks first");
    }

    #[test]
    fn hybrid_search_finds_typos_pending_and_indexed_and_forgets() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let config = Config {
            retrieval: Retrieval::Hybrid,
            ..Config::new(dir.path().join("h.db"))
        };
        actix::System::new().block_on(async move {
            let memory = Memory::open(config)?;
            let r1 = memory.save(SaveRequest::new(
                "u",
                "hobbies",
                "gardening",
                "Grows tomatoes and basil on the balcony",
            ))?;
            let r2 = memory.save(SaveRequest::new(
                "u",
                "travel",
                "passport",
                "Passport expires in November",
            ))?;
            // Pending: embedded at query time. A typo with no exact word.
            let hits = memory.search("u", "tomatos", None, 5)?;
            assert_eq!(
                hits.first().map(|h| (h.record.key.as_str(), h.fresh)),
                Some(("gardening", true))
            );
            memory.flush();
            r1.indexed().await?;
            r2.indexed().await?;
            let hits = memory.search("u", "tomatos", None, 5)?;
            assert_eq!(
                hits.first().map(|h| (h.record.key.as_str(), h.fresh)),
                Some(("gardening", false))
            );
            assert!(memory.search("other", "tomatos", None, 5)?.is_empty());
            assert!(memory.search("u", "tomatos", Some("travel"), 5)?.is_empty());
            let f = memory.forget("u", "hobbies", "gardening")?;
            assert!(
                memory.search("u", "tomatos", None, 5)?.is_empty(),
                "a pending forget hides it"
            );
            memory.flush();
            f.indexed().await?;
            assert!(memory.search("u", "tomatos", None, 5)?.is_empty());
            memory.shutdown().await?;
            Ok(())
        })
    }

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
        let table = sqlite::vector_table(probe.model_id());
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
        let rebuilt_rows: i64 = rusqlite::Connection::open(&path)?.query_row(
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
        let conn = rusqlite::Connection::open(&path)?;
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
            "SELECT value FROM meta WHERE name = 'index_watermark'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(watermark, index, "the vectors are current");
        Ok(())
    }
}
