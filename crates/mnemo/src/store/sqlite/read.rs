//! Reads: the read pool, get, list (whole and paged), full-text and vector
//! search, namespaces and counts.

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use crate::config::Config;
use crate::embed::{is_zero, to_blob};
use crate::error::Result;
use crate::model::{MemoryRecord, SearchHit};
use crate::store::{page_bound, Reader};
use crate::text::Query;

use super::index_db::attach_index;
use super::schema::{busy_slice, open_connection};
use super::terms::{fts_query, scope};
use super::vectors::vector_table;

/// bm25 column weights: namespace token, key, category, value. Key and
/// category name what a memory is about, so they weigh more than the value.
pub(super) const BM25: &str = "bm25(memories_fts, 0.0, 3.0, 2.0, 1.0)";

/// A small pool of read connections. WAL lets them read while the writer
/// writes; a read never waits for a flush.
pub(crate) struct ReadPool {
    conns: Mutex<Vec<Connection>>,
    config: Config,
}

impl ReadPool {
    pub fn new(config: &Config) -> ReadPool {
        ReadPool {
            conns: Mutex::new(Vec::new()),
            config: config.clone(),
        }
    }

    /// Runs `f` on a pooled connection (opening one if none is idle).
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conns.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = open_connection(
                    &self.config.path,
                    self.config.synchronous,
                    busy_slice(self.config.busy_deadline),
                )?;
                // 16 MiB of page cache for the index file (SQLite's default
                // is 2 MiB): a hybrid search reads every vector of the
                // namespace (9 MB for 6,000 e5 vectors), and through a cache
                // smaller than the table each search read it again from the
                // OS (recall_memory p50 36.8 -> 32.0 ms at 6,000 memories
                // with e5, docs/benchmarks.md). Pages are taken as read, so
                // a reader that reads little costs little.
                attach_index(&c, &self.config.path, 16 * 1024)?;
                c
            }
        };
        let out = f(&conn);
        let mut idle = self.conns.lock();
        if idle.len() < self.config.read_connections {
            idle.push(conn);
        }
        out
    }
}

impl Reader for ReadPool {
    fn get(&self, ns: &str, category: &str, key: &str) -> Result<Option<MemoryRecord>> {
        self.with(|c| get(c, ns, category, key))
    }

    fn list(&self, ns: &str, category: Option<&str>) -> Result<Vec<MemoryRecord>> {
        self.with(|c| list(c, ns, category))
    }

    fn list_page(
        &self,
        ns: &str,
        category: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<MemoryRecord>> {
        self.with(|c| list_page(c, ns, category, after, limit))
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        self.with(namespaces)
    }

    fn counts(&self) -> Result<(u64, u64)> {
        self.with(counts)
    }

    fn search(
        &self,
        ns: &str,
        query: &Query,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        self.with(|c| search(c, ns, query, category, limit))
    }

    fn vector_search(
        &self,
        ns: &str,
        model_id: &str,
        q: &[f32],
        category: Option<&str>,
        min_similarity: f32,
        limit: usize,
    ) -> Result<Vec<(SearchHit, f32)>> {
        self.with(|c| vector_search(c, ns, model_id, q, category, min_similarity, limit))
    }
}

pub(super) const RECORD_COLUMNS: &str =
    "namespace, category, key, value, metadata, version, updated_at";

pub(super) fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryRecord> {
    let metadata: Option<String> = row.get(4)?;
    Ok(MemoryRecord {
        namespace: row.get(0)?,
        category: row.get(1)?,
        key: row.get(2)?,
        value: row.get(3)?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        version: Some(row.get::<_, i64>(5)? as u64),
        updated_at_ms: row.get(6)?,
    })
}

/// The committed memory for a key.
pub(crate) fn get(
    conn: &Connection,
    ns: &str,
    category: &str,
    key: &str,
) -> Result<Option<MemoryRecord>> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM memories
         WHERE namespace = ?1 AND category = ?2 AND key = ?3 AND deleted = 0"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![ns, category, key], record)
        .optional()?)
}

/// Committed memories of a namespace (optionally one category), by category
/// then key.
pub(crate) fn list(
    conn: &Connection,
    ns: &str,
    category: Option<&str>,
) -> Result<Vec<MemoryRecord>> {
    let rows = match category {
        Some(c) => {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM memories
                 WHERE namespace = ?1 AND category = ?2 AND deleted = 0 ORDER BY key"
            );
            let mut st = conn.prepare_cached(&sql)?;
            let rows = st.query_map(params![ns, c], record)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        }
        None => {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM memories
                 WHERE namespace = ?1 AND deleted = 0 ORDER BY category, key"
            );
            let mut st = conn.prepare_cached(&sql)?;
            let rows = st.query_map(params![ns], record)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    Ok(rows)
}

/// At most `limit` committed memories of a namespace (optionally one
/// category) that sort after `after` = (category, key), by category then
/// key. A keyset read on the UNIQUE (namespace, category, key) index: it
/// costs the rows returned (plus forgotten rows skipped), wherever the page
/// starts.
pub(crate) fn list_page(
    conn: &Connection,
    ns: &str,
    category: Option<&str>,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<MemoryRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let Some((bound_category, bound_key)) = page_bound(category, after) else {
        return Ok(Vec::new());
    };
    let mut st = conn.prepare_cached(&list_page_sql(category.is_some()))?;
    let rows = st.query_map(params![ns, bound_category, bound_key, limit], record)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The statement of [`list_page`]; parameters: namespace, category (or the
/// bound's category), the bound's key, limit. One category is an equality
/// and a range on the key: a row-value bound there would make SQLite sort.
pub(super) fn list_page_sql(one_category: bool) -> String {
    let bound = if one_category {
        "category = ?2 AND key > ?3"
    } else {
        "(category, key) > (?2, ?3)"
    };
    format!(
        "SELECT {RECORD_COLUMNS} FROM memories
         WHERE namespace = ?1 AND {bound} AND deleted = 0
         ORDER BY category, key LIMIT ?4"
    )
}

/// Indexed memories matching `query` in one namespace, best first (bm25,
/// then the most recently created: the highest id).
///
/// Without a category, in two steps: rank in the FTS table alone (the
/// namespace's scoped terms, `terms`), then read only the best memories by
/// id. Joining every match to its memory before ranking read 10,000 rows to
/// return ten for a word in 10% of 100,000 memories (more than half of that
/// search's time). A ranked id whose memory is gone (forgotten, or another
/// namespace's after a hash collision) is skipped, and the ranking asked
/// again four times deeper while the page is short; the order is total, so a
/// deeper ranking extends a shallower one.
pub(crate) fn search(
    conn: &Connection,
    ns: &str,
    query: &Query,
    category: Option<&str>,
    limit: usize,
) -> Result<Vec<SearchHit>> {
    let Some(expr) = fts_query(&scope(ns), query) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    if let Some(category) = category {
        return search_in_category(conn, ns, &expr, category, limit);
    }
    let mut ranking = conn.prepare_cached(&format!(
        "SELECT rowid, {BM25} AS rank FROM memories_fts WHERE memories_fts MATCH ?1
         ORDER BY rank, rowid DESC LIMIT ?2"
    ))?;
    let mut read_one = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM memories WHERE id = ?1 AND namespace = ?2 AND deleted = 0"
    ))?;
    let mut hits = Vec::with_capacity(limit);
    let (mut seen, mut depth) = (0, limit);
    loop {
        let ranked: Vec<(i64, f64)> = ranking
            .query_map(params![expr, depth as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for &(id, rank) in ranked.iter().skip(seen) {
            if let Some(record) = read_one.query_row(params![id, ns], record).optional()? {
                hits.push(SearchHit {
                    record,
                    score: -rank,
                    fresh: false,
                });
                if hits.len() == limit {
                    return Ok(hits);
                }
            }
        }
        if ranked.len() < depth {
            return Ok(hits);
        }
        seen = ranked.len();
        depth = depth.saturating_mul(4);
    }
}

/// [`search`] in one category: the category is a column of `memories`, so
/// each match is joined with its memory before ranking.
fn search_in_category(
    conn: &Connection,
    ns: &str,
    expr: &str,
    category: &str,
    limit: usize,
) -> Result<Vec<SearchHit>> {
    let sql = format!(
        "SELECT m.namespace, m.category, m.key, m.value, m.metadata, m.version, m.updated_at, {BM25} AS rank
         FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid
         WHERE memories_fts MATCH ?1 AND m.namespace = ?2 AND m.deleted = 0 AND m.category = ?3
         ORDER BY rank, m.id DESC
         LIMIT ?4"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params![expr, ns, category, limit as i64], |row| {
        let rank: f64 = row.get(7)?;
        Ok(SearchHit {
            record: record(row)?,
            score: -rank,
            fresh: false,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Indexed memories of one namespace (optionally one category) nearest to
/// the query vector `q` by cosine similarity, best first, with their
/// similarity; only those at least `min_similarity` similar. An empty list
/// if the model's vectors do not reflect the index right now (none yet, or
/// another engine indexed without them; the next indexing pass with the
/// embedder rebuilds them), so a stale vector never names a row.
pub(crate) fn vector_search(
    conn: &Connection,
    ns: &str,
    model_id: &str,
    q: &[f32],
    category: Option<&str>,
    min_similarity: f32,
    limit: usize,
) -> Result<Vec<(SearchHit, f32)>> {
    if is_zero(q) {
        return Ok(Vec::new());
    }
    let table = vector_table(model_id);
    let current: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM vector_models WHERE table_name = ?1 AND dimension = ?2
                AND watermark = (SELECT value FROM index_meta WHERE name = 'index_watermark'))",
        )?
        .query_row(params![&table, q.len() as i64], |r| r.get(0))?;
    if !current {
        return Ok(Vec::new());
    }
    if category.is_some() {
        return vector_search_joined(conn, &table, ns, q, category, min_similarity, limit);
    }
    // Two steps: rank the namespace's vectors alone (the model table and its
    // namespace index: no memory row is read), then read the memories of
    // the best `limit`. Joining first read every memory of the namespace,
    // its value included, to keep a handful (at 6,000 memories most of a
    // hybrid search's time). A vector row always belongs to a live memory
    // of its namespace (the indexer deletes it with the memory, in one
    // transaction, and the table is current); the second step checks anyway.
    let sql = format!(
        "SELECT v.id, vec_distance_cosine(v.vector, ?1) AS distance
         FROM {table} v
         WHERE v.namespace = ?2 AND distance <= ?3
         ORDER BY distance, v.id DESC
         LIMIT ?4"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let nearest: Vec<(i64, f64)> = st
        .query_map(
            params![
                to_blob(q),
                ns,
                f64::from(1.0 - min_similarity),
                limit as i64
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM memories WHERE id = ?1 AND namespace = ?2 AND deleted = 0"
    ))?;
    let mut out = Vec::with_capacity(nearest.len());
    for (id, distance) in nearest {
        if let Some(r) = st.query_row(params![id, ns], record).optional()? {
            let similarity = (1.0 - distance) as f32;
            out.push((
                SearchHit {
                    record: r,
                    score: f64::from(similarity),
                    fresh: false,
                },
                similarity,
            ));
        }
    }
    Ok(out)
}

/// [`vector_search`] restricted to a category: the category is a column of
/// `memories`, so each candidate is joined with its memory before ranking.
fn vector_search_joined(
    conn: &Connection,
    table: &str,
    ns: &str,
    q: &[f32],
    category: Option<&str>,
    min_similarity: f32,
    limit: usize,
) -> Result<Vec<(SearchHit, f32)>> {
    let sql = format!(
        "SELECT m.namespace, m.category, m.key, m.value, m.metadata, m.version, m.updated_at,
                vec_distance_cosine(v.vector, ?1) AS distance
         FROM {table} v JOIN memories m ON m.id = v.id
         WHERE v.namespace = ?2 AND m.namespace = ?2 AND m.deleted = 0
           AND m.category = ?3
           AND distance <= ?4
         ORDER BY distance, m.updated_at DESC
         LIMIT ?5"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(
        params![
            to_blob(q),
            ns,
            category,
            f64::from(1.0 - min_similarity),
            limit as i64
        ],
        |row| {
            let distance: f64 = row.get(7)?;
            let similarity = (1.0 - distance) as f32;
            Ok((
                SearchHit {
                    record: record(row)?,
                    score: f64::from(similarity),
                    fresh: false,
                },
                similarity,
            ))
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Namespaces holding at least one memory, in order.
pub(crate) fn namespaces(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT namespace FROM memories WHERE deleted = 0 ORDER BY namespace",
    )?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

/// Counts for `stats`: live rows and dead letters.
pub(crate) fn counts(conn: &Connection) -> Result<(u64, u64)> {
    let rows: i64 = conn.query_row("SELECT count(*) FROM memories WHERE deleted = 0", [], |r| {
        r.get(0)
    })?;
    let dead: i64 = conn.query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))?;
    Ok((rows as u64, dead as u64))
}

#[cfg(test)]
mod list_page_tests {
    use super::super::schema::SCHEMA;
    use super::*;

    /// Both forms walk the UNIQUE index from the bound: no scan, no sort.
    #[test]
    fn pages_are_keyset_reads_on_the_unique_index() -> Result<()> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        for one_category in [false, true] {
            let sql = format!("EXPLAIN QUERY PLAN {}", list_page_sql(one_category));
            let mut st = conn.prepare(&sql)?;
            let plan = st
                .query_map(params!["n", "c", "k", 10], |r| r.get::<_, String>(3))?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .join("\n");
            assert!(plan.contains("SEARCH memories USING INDEX"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        Ok(())
    }
}
