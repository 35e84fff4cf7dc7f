//! Reads: a small pool of connections, get, list (whole and paged),
//! full-text and vector search, namespaces and counts. Same results, in
//! the same order, as SQLite's (`COLLATE "C"` orders as SQLite's BINARY).

use std::sync::Arc;

use parking_lot::Mutex;
use tokio_postgres::Row;

use crate::embed::{cosine, is_zero};
use crate::error::Result;
use crate::model::{MemoryRecord, SearchHit};
use crate::store::{page_bound, Reader};
use crate::text::Query;

use super::conn::{pg_error, Failure, PgConn};
use super::text::tsquery;

const GET: &str = "
SELECT namespace, category, key, value, metadata, version, updated_at FROM mnemo.memories
WHERE namespace = $1 AND category = $2 AND key = $3 AND NOT deleted";

const LIST: &str = "
SELECT namespace, category, key, value, metadata, version, updated_at FROM mnemo.memories
WHERE namespace = $1 AND NOT deleted ORDER BY category, key";

const LIST_CATEGORY: &str = "
SELECT namespace, category, key, value, metadata, version, updated_at FROM mnemo.memories
WHERE namespace = $1 AND category = $2 AND NOT deleted ORDER BY key";

/// A keyset page on the UNIQUE (namespace, category, key) index:
/// parameters namespace, the bound's category, the bound's key, limit.
pub(super) const PAGE: &str = "
SELECT namespace, category, key, value, metadata, version, updated_at FROM mnemo.memories
WHERE namespace = $1 AND (category, key) > ($2, $3) AND NOT deleted
ORDER BY category, key LIMIT $4";

/// [`PAGE`] within one category: an equality and a range on the key.
pub(super) const PAGE_CATEGORY: &str = "
SELECT namespace, category, key, value, metadata, version, updated_at FROM mnemo.memories
WHERE namespace = $1 AND category = $2 AND key > $3 AND NOT deleted
ORDER BY category, key LIMIT $4";

/// Full-text search: the query as a tsquery literal (`$2`), ranked by
/// `ts_rank` with weights {D, C, B, A} = {1/3, 0, 2/3, 1}: value 1/3,
/// category 2/3, key 1 (C is unused), the proportions of SQLite's bm25
/// column weights (value 1, category 2, key 3); `ts_rank` takes weights in
/// [0, 1]. Ties: the most recent first.
const SEARCH: &str = "
SELECT namespace, category, key, value, metadata, version, updated_at,
       ts_rank('{0.333333, 0, 0.666667, 1}'::float4[], tsv, $2::text::tsquery) AS rank
FROM mnemo.memories
WHERE namespace = $1 AND NOT deleted AND tsv @@ $2::text::tsquery
  AND ($3::text IS NULL OR category = $3)
ORDER BY rank DESC, updated_at DESC, id DESC
LIMIT $4";

/// The namespace's vectors of a model that are current: embedded at the
/// change the row is indexed at, of the query's length.
const VECTORS: &str = "
SELECT v.id, v.vector, m.updated_at FROM mnemo.vectors v JOIN mnemo.memories m ON m.id = v.id
WHERE v.model_id = $1 AND v.namespace = $2 AND m.namespace = $2 AND NOT m.deleted
  AND v.change = m.indexed_change AND cardinality(v.vector) = $4
  AND ($3::text IS NULL OR m.category = $3)";

const BY_IDS: &str = "
SELECT namespace, category, key, value, metadata, version, updated_at, id FROM mnemo.memories
WHERE id = ANY($1::int8[]) AND NOT deleted";

const NAMESPACES: &str =
    "SELECT DISTINCT namespace FROM mnemo.memories WHERE NOT deleted ORDER BY namespace";

const COUNTS: &str = "SELECT (SELECT count(*) FROM mnemo.memories WHERE NOT deleted),
                             (SELECT count(*) FROM mnemo.dead_letters)";

fn record(row: &Row) -> Result<MemoryRecord, Failure> {
    let metadata: Option<String> = row.try_get(4)?;
    Ok(MemoryRecord {
        namespace: row.try_get(0)?,
        category: row.try_get(1)?,
        key: row.try_get(2)?,
        value: row.try_get(3)?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        version: Some(row.try_get::<_, i64>(5)?.max(0) as u64),
        updated_at_ms: row.try_get(6)?,
    })
}

fn records(rows: &[Row]) -> Result<Vec<MemoryRecord>, Failure> {
    rows.iter().map(record).collect()
}

/// The read pool: up to `size` idle connections, opened on demand, each
/// dropped when it breaks. A read that meets a broken pooled connection
/// (the server restarted, the connection was cut) is tried once more on a
/// new one.
pub(crate) struct PgReader {
    config: Arc<tokio_postgres::Config>,
    idle: Mutex<Vec<PgConn>>,
    size: usize,
}

impl PgReader {
    /// A pool of at most `size` idle connections to the server `config`
    /// names.
    pub fn new(config: &Arc<tokio_postgres::Config>, size: usize) -> PgReader {
        PgReader {
            config: config.clone(),
            idle: Mutex::new(Vec::new()),
            size: size.max(1),
        }
    }

    /// Runs `f` on a pooled connection.
    fn with<T>(&self, f: impl Fn(&mut PgConn) -> Result<T, Failure>) -> Result<T> {
        let mut retried = false;
        loop {
            let pooled = self.idle.lock().pop();
            let was_pooled = pooled.is_some();
            let mut conn = pooled.unwrap_or_else(|| PgConn::lazy(&self.config));
            match f(&mut conn) {
                Ok(v) => {
                    self.put_back(conn);
                    return Ok(v);
                }
                Err(e) if e.is_connection() && was_pooled && !retried => retried = true,
                Err(e) => {
                    if !e.is_connection() {
                        self.put_back(conn);
                    }
                    return Err(pg_error(e));
                }
            }
        }
    }

    fn put_back(&self, conn: PgConn) {
        let mut idle = self.idle.lock();
        if idle.len() < self.size {
            idle.push(conn);
        }
    }
}

impl Reader for PgReader {
    fn get(&self, ns: &str, category: &str, key: &str) -> Result<Option<MemoryRecord>> {
        self.with(|c| {
            let rows = c.query(GET, &[&ns, &category, &key])?;
            rows.first().map(record).transpose()
        })
    }

    fn list(&self, ns: &str, category: Option<&str>) -> Result<Vec<MemoryRecord>> {
        self.with(|c| {
            let rows = match category {
                Some(cat) => c.query(LIST_CATEGORY, &[&ns, &cat])?,
                None => c.query(LIST, &[&ns])?,
            };
            records(&rows)
        })
    }

    fn list_page(
        &self,
        ns: &str,
        category: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<MemoryRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let Some((bound_category, bound_key)) = page_bound(category, after) else {
            return Ok(Vec::new());
        };
        let sql = if category.is_some() {
            PAGE_CATEGORY
        } else {
            PAGE
        };
        self.with(|c| {
            let rows = c.query(sql, &[&ns, &bound_category, &bound_key, &limit])?;
            records(&rows)
        })
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let rows = c.query(NAMESPACES, &[])?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        })
    }

    fn counts(&self) -> Result<(u64, u64)> {
        self.with(|c| {
            let rows = c.query(COUNTS, &[])?;
            let Some(row) = rows.first() else {
                return Ok((0, 0));
            };
            let live: i64 = row.try_get(0)?;
            let dead: i64 = row.try_get(1)?;
            Ok((live.max(0) as u64, dead.max(0) as u64))
        })
    }

    /// The rows whose tsvector matches the query's tsquery (see
    /// `super::text`), best `ts_rank` first, then the most recent.
    fn search(
        &self,
        ns: &str,
        query: &Query,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let Some(q) = tsquery(query) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = c.query(SEARCH, &[&ns, &q, &category, &limit])?;
            rows.iter()
                .map(|row| {
                    let rank: f32 = row.try_get(7)?;
                    Ok(SearchHit {
                        record: record(row)?,
                        score: f64::from(rank),
                        fresh: false,
                    })
                })
                .collect()
        })
    }

    /// Exact cosine similarity, computed here, over the namespace's current
    /// vectors of the model (a vector embedded at another change than the
    /// row's indexed one is never used), best first, then the most recent.
    fn vector_search(
        &self,
        ns: &str,
        model_id: &str,
        q: &[f32],
        category: Option<&str>,
        min_similarity: f32,
        limit: usize,
    ) -> Result<Vec<(SearchHit, f32)>> {
        if is_zero(q) || limit == 0 {
            return Ok(Vec::new());
        }
        let dim = i32::try_from(q.len()).unwrap_or(i32::MAX);
        self.with(|c| {
            let rows = c.query(VECTORS, &[&model_id, &ns, &category, &dim])?;
            let mut scored: Vec<(i64, f32, i64)> = Vec::new();
            for row in &rows {
                let v: Vec<f32> = row.try_get(1)?;
                let similarity = cosine(q, &v);
                if similarity >= min_similarity {
                    scored.push((row.try_get(0)?, similarity, row.try_get(2)?));
                }
            }
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.cmp(&a.2)));
            scored.truncate(limit);
            if scored.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<i64> = scored.iter().map(|s| s.0).collect();
            let mut found: std::collections::HashMap<i64, MemoryRecord> =
                std::collections::HashMap::with_capacity(ids.len());
            for row in c.query(BY_IDS, &[&ids])? {
                found.insert(row.try_get(7)?, record(&row)?);
            }
            Ok(scored
                .into_iter()
                .filter_map(|(id, similarity, _)| {
                    let record = found.remove(&id)?;
                    Some((
                        SearchHit {
                            record,
                            score: f64::from(similarity),
                            fresh: false,
                        },
                        similarity,
                    ))
                })
                .collect())
        })
    }
}
