//! Search: the query limits, the in-memory match of pending saves, the index
//! query, and in hybrid mode the vector side and the fusion of both
//! rankings. [`Memory::search`](crate::Memory::search) validates its
//! arguments and hands over to a [`Searcher`].

use std::collections::HashSet;
use std::sync::Arc;

use crate::embed::{cosine, Embedder};
use crate::error::{Error, Result};
use crate::model::SearchHit;
use crate::overlay::{OverlayEntry, PendingOverlay};
use crate::store::{embedding_text, Reader};
use crate::text::{Query, MAX_QUERY_BYTES, MAX_QUERY_TERMS};

mod fusion;

/// Field weights for matches in memories the index has not seen yet: the
/// same as the index's bm25 weights (key 3, category 2, value 1), in the
/// order of [`OverlayEntry::fields`].
const FRESH_FIELD_WEIGHTS: [f64; 3] = [3.0, 2.0, 1.0];

/// Parses a search's text, refusing more than [`MAX_QUERY_BYTES`] of it
/// (checked before any work) or more than [`MAX_QUERY_TERMS`] distinct
/// terms, with [`Error::InvalidInput`] on the field `query`.
pub(crate) fn parse_query(text: &str) -> Result<Query> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(Error::invalid(
            "query",
            format!(
                "the query is {} bytes; the limit is {MAX_QUERY_BYTES} bytes: search with a few keywords",
                text.len()
            ),
        ));
    }
    let q = Query::parse(text);
    if q.len() > MAX_QUERY_TERMS {
        return Err(Error::invalid(
            "query",
            format!(
                "the query has {} distinct search terms (a Chinese or Japanese run counts one per \
                 character and one per pair of characters); the limit is {MAX_QUERY_TERMS}: search with fewer keywords",
                q.len()
            ),
        ));
    }
    Ok(q)
}

/// What a search reads: the pending overlay, the index through the read
/// pool, and in hybrid mode the embedder.
pub(crate) struct Searcher<'a> {
    pub overlay: &'a PendingOverlay,
    pub reads: &'a dyn Reader,
    pub embedder: Option<&'a dyn Embedder>,
}

impl Searcher<'_> {
    /// Runs a search whose arguments are valid; `text` is what `q` was
    /// parsed from (the embedder reads it). See
    /// [`Memory::search`](crate::Memory::search) for the ranking.
    pub fn search(
        &self,
        namespace: &str,
        text: &str,
        q: &Query,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        if q.is_empty() {
            return Ok(Vec::new());
        }
        // Snapshot the overlay before querying the index: an entry retires
        // only after the index has it, so nothing falls between the two.
        let fresh = self.overlay.snapshot(namespace, category);
        let mut hits = score_fresh(q, &fresh);
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.record.updated_at_ms.cmp(&a.record.updated_at_ms))
        });
        if let Some(e) = self.embedder {
            return self.hybrid(e, namespace, text, q, category, limit, &fresh, hits);
        }
        let shadowed = shadowed(&fresh);
        hits.truncate(limit);
        let want = limit - hits.len();
        hits.extend(self.indexed(namespace, q, category, want, &shadowed)?);
        Ok(hits)
    }

    /// The index's best `want` hits for `q` that no pending entry shadows
    /// (its row is stale: the entry replaces or forgets it). At most
    /// `shadowed.len()` rows can be hidden, so `want + shadowed.len()` rows
    /// always suffice; the index is asked for a few more than `want` first,
    /// and for more only while shadowed rows filled the page. (Asking for
    /// all of them at once made every search with 1,000 pending saves rank
    /// and read a thousand rows from the index to return ten.)
    fn indexed(
        &self,
        namespace: &str,
        q: &Query,
        category: Option<&str>,
        want: usize,
        shadowed: &HashSet<(&str, &str)>,
    ) -> Result<Vec<SearchHit>> {
        if want == 0 {
            return Ok(Vec::new());
        }
        let most = want + shadowed.len();
        let mut fetch = (want * 2).max(want + 8).min(most);
        loop {
            let rows = self.reads.search(namespace, q, category, fetch)?;
            let full = rows.len() == fetch;
            let visible: Vec<SearchHit> = rows
                .into_iter()
                .filter(|h| {
                    !shadowed.contains(&(h.record.category.as_str(), h.record.key.as_str()))
                })
                .collect();
            if visible.len() >= want || !full || fetch >= most {
                return Ok(visible.into_iter().take(want).collect());
            }
            fetch = (fetch * 4).min(most);
        }
    }

    /// The hybrid half of [`search`](Searcher::search): `fresh_hits` are the
    /// pending saves the lexical matcher found, best first.
    #[allow(clippy::too_many_arguments)]
    fn hybrid(
        &self,
        e: &dyn Embedder,
        namespace: &str,
        text: &str,
        q: &Query,
        category: Option<&str>,
        limit: usize,
        fresh: &[Arc<OverlayEntry>],
        fresh_hits: Vec<SearchHit>,
    ) -> Result<Vec<SearchHit>> {
        let shadowed = shadowed(fresh);
        let depth = limit.max(fusion::DEPTH);
        // The pending saves not embedded yet (few) in one batch: one pass
        // for a neural model. A pending save keeps its vector until it
        // retires. Forgets have nothing to embed.
        let saves: Vec<&OverlayEntry> = fresh
            .iter()
            .filter(|entry| entry.payload.value().is_some())
            .map(|entry| &**entry)
            .collect();
        let missing: Vec<&OverlayEntry> = saves
            .iter()
            .copied()
            .filter(|entry| entry.vector().is_none())
            .collect();
        if !missing.is_empty() {
            let texts: Vec<String> = missing
                .iter()
                .map(|entry| {
                    let p = &entry.payload;
                    embedding_text(p.category(), p.key(), p.value().unwrap_or(""))
                })
                .collect();
            let vectors = e.embed_batch(&texts.iter().map(String::as_str).collect::<Vec<_>>());
            for (entry, v) in missing.iter().zip(vectors) {
                let _ = entry.set_vector(v);
            }
        }
        // A query the model does not support (not its language) is not
        // embedded: the lexical ranking alone answers it. Pending saves are,
        // for the queries that come later.
        let mut qv = if e.supports(text) {
            e.embed_query(text)
        } else {
            vec![0.0; e.dimension()]
        };
        if qv.len() != e.dimension() {
            tracing::warn!(
                model = e.model_id(),
                "the embedder returned a query vector of the wrong length; lexical search only"
            );
            qv = vec![0.0; e.dimension()];
        }
        // Nothing to embed in the query (or not the model's language): no
        // vector side at all.
        let query_is_zero = crate::embed::is_zero(&qv);
        let indexed = self.indexed(namespace, q, category, depth, &shadowed)?;
        let visible = |h: &SearchHit| {
            !shadowed.contains(&(h.record.category.as_str(), h.record.key.as_str()))
        };
        let lexical: Vec<SearchHit> = fresh_hits.into_iter().chain(indexed).collect();
        if query_is_zero {
            let mut hits = lexical;
            hits.truncate(limit);
            return Ok(hits);
        }
        // Every similarity down to the background's depth, with no floor:
        // the fusion reads the background from it. Pending saves shadow
        // some of these rows (their stale versions); a few more rows make
        // up for them, not one per pending save (which would read a
        // thousand memories per search with 1,000 pending).
        let nearest = self.reads.vector_search(
            namespace,
            e.model_id(),
            &qv,
            category,
            -2.0,
            fusion::BACKGROUND.max(depth) + shadowed.len().min(fusion::BACKGROUND),
        )?;
        let mut vector: Vec<(SearchHit, f32)> = saves
            .into_iter()
            .filter_map(|entry| {
                let similarity = match entry.vector() {
                    Some(v) if v.len() == qv.len() => cosine(&qv, v),
                    _ => return None,
                };
                Some((
                    SearchHit {
                        record: entry.record()?,
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
        let mut fused = fusion::fuse(text, lexical, vector, e.min_similarity(), e.fusion());
        fused.truncate(limit);
        Ok(fused)
    }
}

/// The (category, key) of every overlay entry: the index's row for such a
/// key is stale (the entry replaces or forgets it).
fn shadowed(fresh: &[Arc<OverlayEntry>]) -> HashSet<(&str, &str)> {
    fresh
        .iter()
        .map(|e| (e.payload.category(), e.payload.key()))
        .collect()
}

/// Scores the overlay's memories that match `q`, bm25-like: each query term
/// found counts its best field's weight times its rarity among the
/// memories searched (a word every pending memory shares counts little).
/// Terms are matched per field, as FTS5 does, never across a field boundary.
///
/// Each entry's fields are tokenised once (cached in the entry), and a term
/// costs lookups in them, so a search costs O(terms) per pending memory
/// after the first; only matching memories are copied out.
fn score_fresh(q: &Query, fresh: &[Arc<OverlayEntry>]) -> Vec<SearchHit> {
    let candidates: Vec<(&OverlayEntry, Vec<f64>)> = fresh
        .iter()
        .filter_map(|e| {
            let fields = e.fields()?;
            let mut best = vec![0.0; q.len()];
            // Fields by falling weight: the first hit is a term's best.
            for (field, weight) in fields.iter().zip(FRESH_FIELD_WEIGHTS) {
                for (b, hit) in best.iter_mut().zip(q.hits_in(field)) {
                    if hit && *b == 0.0 {
                        *b = weight;
                    }
                }
            }
            best.iter().any(|&w| w > 0.0).then_some((&**e, best))
        })
        .collect();
    let n = fresh.len() as f64;
    let idf: Vec<f64> = (0..q.len())
        .map(|t| {
            let df = candidates.iter().filter(|(_, w)| w[t] > 0.0).count() as f64;
            (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
        })
        .collect();
    candidates
        .into_iter()
        .filter_map(|(entry, w)| {
            Some(SearchHit {
                score: w.iter().zip(&idf).map(|(w, i)| w * i).sum(),
                record: entry.record()?,
                fresh: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Retrieval};
    use crate::model::SaveRequest;
    use crate::Memory;

    #[test]
    fn query_limits_are_typed_errors() {
        let words = |n: usize| -> String {
            (0..n)
                .map(|i| format!("w{i}x"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            parse_query(&words(MAX_QUERY_TERMS)).map(|q| q.len()).ok(),
            Some(256)
        );
        let reason = |r: Result<Query>| match r {
            Err(Error::InvalidInput {
                field: "query",
                reason,
            }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(parse_query(&words(MAX_QUERY_TERMS + 1))).contains("the limit is 256"));
        let at_limit = "x".repeat(MAX_QUERY_BYTES);
        assert_eq!(parse_query(&at_limit).map(|q| q.len()).ok(), Some(1));
        let past = format!("{at_limit} ");
        assert!(reason(parse_query(&past)).contains("8193 bytes; the limit is 8192"));
    }

    /// Pending memories are ranked exactly as before they were tokenised
    /// once: by best field weight times rarity, per term.
    #[test]
    fn pending_scores_weigh_fields_and_rarity() {
        let overlay: PendingOverlay = PendingOverlay::default();
        let save = |seq: u64, category: &str, key: &str, value: &str| {
            overlay.insert(
                seq,
                Arc::new(crate::model::OpPayload::new(
                    "n",
                    category,
                    key,
                    Some(value),
                    None,
                    seq as i64,
                )),
            );
        };
        save(1, "food", "tea", "likes green tea");
        save(2, "notes", "misc", "tea and coffee, green walls");
        save(3, "notes", "other", "nothing relevant");
        let fresh = overlay.snapshot("n", None);
        let hits = score_fresh(&Query::parse("green tea"), &fresh);
        let n = 3.0_f64;
        let idf = |df: f64| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        let scores: std::collections::HashMap<&str, f64> = hits
            .iter()
            .map(|h| (h.record.key.as_str(), h.score))
            .collect();
        assert_eq!(scores.len(), 2);
        // `green` in both values (1 x idf(2)); `tea` in a key (3) and a value (1).
        assert!((scores["tea"] - (idf(2.0) + 3.0 * idf(2.0))).abs() < 1e-12);
        assert!((scores["misc"] - (idf(2.0) + idf(2.0))).abs() < 1e-12);
    }

    /// Pending saves shadow the index's rows of their keys; when they shadow
    /// a whole first page of index hits, the index is asked again, deeper,
    /// and the page is still full.
    #[test]
    fn a_page_of_shadowed_index_hits_is_made_up_from_deeper_ones() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let config = Config {
            quiet_window: std::time::Duration::from_secs(3600),
            max_wait: std::time::Duration::from_secs(3600),
            ..Config::new(dir.path().join("s.db"))
        };
        actix::System::new().block_on(async move {
            let memory = Memory::open(config)?;
            // k30..k39 first, then k00..k29: ties in bm25 go to the most
            // recent, so k00..k29 rank first.
            let keys: Vec<String> = (30..40).chain(0..30).map(|i| format!("k{i:02}")).collect();
            let mut receipts = Vec::new();
            for k in &keys {
                receipts.push(memory.save(SaveRequest::new("u", "notes", k, "green tea"))?);
            }
            memory.flush();
            for r in &receipts {
                r.indexed().await?;
            }
            // k00..k29 no longer mention tea (pending): their index rows
            // are stale and fill the first pages of "tea".
            for k in &keys[10..] {
                memory.save(SaveRequest::new("u", "notes", k, "coffee now"))?;
            }
            let hits = memory.search("u", "tea", None, 5)?;
            let got: Vec<&str> = hits.iter().map(|h| h.record.key.as_str()).collect();
            assert_eq!(got.len(), 5, "{got:?}");
            assert!(got.iter().all(|k| *k >= "k30"), "{got:?}");
            assert_eq!(memory.search("u", "tea", None, 100)?.len(), 10);
            assert_eq!(memory.search("u", "coffee", None, 100)?.len(), 30);
            memory.shutdown().await
        })
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
            // The category filter holds on both sides (a weak n-gram
            // collision may still bring the travel memory).
            let travel = memory.search("u", "tomatos", Some("travel"), 5)?;
            assert!(
                travel.iter().all(|h| h.record.category == "travel"),
                "{travel:?}"
            );
            let gone = |hits: Vec<SearchHit>| hits.iter().all(|h| h.record.key != "gardening");
            let f = memory.forget("u", "hobbies", "gardening")?;
            assert!(
                gone(memory.search("u", "tomatos", None, 5)?),
                "a pending forget hides it"
            );
            memory.flush();
            f.indexed().await?;
            assert!(gone(memory.search("u", "tomatos", None, 5)?));
            memory.shutdown().await?;
            Ok(())
        })
    }
}
