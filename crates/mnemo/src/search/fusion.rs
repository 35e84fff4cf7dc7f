//! Hybrid search's fusion of the lexical ranking (bm25) and the vector
//! ranking (cosine similarity) into one list: a weighted sum of the two
//! sides' normalised scores, where the vector side counts only as much as
//! its similarities stand out from the namespace's background.
//!
//! Why not reciprocal-rank fusion (what mnemo shipped first): it gives the
//! two sides' ranks equal say whatever they know, so a vector side that
//! ranks by noise (a model that does not read the query's language, a query
//! whose words are all the lexical side needs) pulls right answers down: on
//! long conversations the n-gram hybrid lost points against lexical alone.
//! Scores carry what ranks drop: how far the best memory stands above the
//! rest on each side. Measured on every test set (`docs/retrieval.md`,
//! "Fusion", and `scripts/tune_fusion.py`), this fusion is never below
//! lexical alone at recall@1 or @5, for every embedder.
//!
//! The rules, for one query:
//! - **lexical**: each hit scores its bm25 over the best bm25 of its group
//!   (the best hit scores 1; pending saves, ranked in memory on their own
//!   scale, and indexed memories are each their own group);
//! - **vector**: the background is the [`BACKGROUND`]-th best similarity in
//!   the namespace (or the lowest, in a smaller one; the model's floor when
//!   there is one memory): what an unrelated memory scores with this model
//!   and query. Each of the best
//!   [`DEPTH`] memories at or above the model's floor scores its height
//!   above the background over the best one's (the best scores 1);
//! - **confidence**: the vector side's weight is the model's
//!   [`Fusion::weight`], scaled down in proportion when the best memory
//!   stands less than [`Fusion::confident_height`] above the background: a
//!   flat similarity profile means the model has nothing to say;
//! - **language**: a lexical hit whose text is in another script than the
//!   query's (an English query's words met in an Urdu memory's English key)
//!   counts [`Fusion::cross_script_lexical`] of its score, so a multilingual
//!   model answers cross-lingual queries;
//! - a memory's fused score is the sum; ties go to the lexical order, then
//!   the vector order. With no vector match the lexical ranking stands; with
//!   no lexical match the vector ranking does.

use std::collections::HashMap;

use crate::embed::Fusion;
use crate::model::SearchHit;

/// How many of the vector side's best matches (above the floor) take part.
pub(crate) const DEPTH: usize = 20;

/// Which best similarity in the namespace is the background (see the
/// module docs): deep enough to be an unrelated memory in a namespace of
/// hundreds, cheap to find (the exact search ranks every vector anyway).
pub(crate) const BACKGROUND: usize = 50;

/// A candidate's fused score and its place on each side.
struct Fused {
    hit: SearchHit,
    score: f64,
    lexical_rank: usize,
    vector_rank: usize,
}

/// Fuses `lexical` (best first: pending hits, then indexed ones) with
/// `nearest` (every candidate's similarity, best first, at least
/// [`BACKGROUND`] deep where the namespace has that many, no floor
/// applied), for a query written as `query`. Returns the fused list, best
/// first, each hit's `score` the fused score.
pub(crate) fn fuse(
    query: &str,
    lexical: Vec<SearchHit>,
    nearest: Vec<(SearchHit, f32)>,
    floor: f32,
    fusion: Fusion,
) -> Vec<SearchHit> {
    // One memory is its own background: then the floor is.
    let background = match nearest.len() {
        0 | 1 => floor,
        n => nearest[n.min(BACKGROUND) - 1].1,
    };
    let top = match nearest.first() {
        Some((_, s)) if *s >= floor => *s,
        _ => return lexical,
    };
    let height = (top - background).max(1e-9);
    let confidence = if fusion.confident_height > 0.0 {
        (height / fusion.confident_height).min(1.0)
    } else {
        1.0
    };
    let vector_weight = f64::from(fusion.weight * confidence);

    let mut fused: Vec<Fused> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    let query_script = (fusion.cross_script_lexical != 1.0)
        .then(|| dominant_script(query))
        .flatten();
    let best = |fresh: bool| {
        lexical
            .iter()
            .filter(|h| h.fresh == fresh)
            .map(|h| h.score)
            .fold(0.0f64, f64::max)
    };
    let (best_fresh, best_indexed) = (best(true), best(false));
    for (rank, hit) in lexical.into_iter().enumerate() {
        let group_best = if hit.fresh { best_fresh } else { best_indexed };
        let mut score = if group_best > 0.0 {
            hit.score.max(0.0) / group_best
        } else {
            1.0
        };
        if let Some(q) = query_script {
            if dominant_script(&hit.record.value).is_some_and(|m| m != q) {
                score *= f64::from(fusion.cross_script_lexical);
            }
        }
        at.insert(
            (hit.record.category.clone(), hit.record.key.clone()),
            fused.len(),
        );
        fused.push(Fused {
            hit,
            score,
            lexical_rank: rank,
            vector_rank: usize::MAX,
        });
    }
    for (rank, (hit, similarity)) in nearest
        .into_iter()
        .filter(|(_, s)| *s >= floor)
        .take(DEPTH)
        .enumerate()
    {
        let add = vector_weight * f64::from(((similarity - background) / height).max(0.0));
        if add <= 0.0 {
            // At the background: no evidence (and nothing later has more).
            break;
        }
        let k = (hit.record.category.clone(), hit.record.key.clone());
        match at.get(&k) {
            Some(&i) => {
                fused[i].score += add;
                fused[i].vector_rank = rank;
            }
            None => {
                at.insert(k, fused.len());
                fused.push(Fused {
                    hit,
                    score: add,
                    lexical_rank: usize::MAX,
                    vector_rank: rank,
                });
            }
        }
    }
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.lexical_rank.cmp(&b.lexical_rank))
            .then(a.vector_rank.cmp(&b.vector_rank))
    });
    fused
        .into_iter()
        .map(|f| SearchHit {
            score: f.score,
            ..f.hit
        })
        .collect()
}

/// A writing system, as far as fusion tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Arabic,
    Devanagari,
    Cjk,
    Other,
}

fn script_of(c: char) -> Script {
    match c as u32 {
        0..=0x24F | 0x1E00..=0x1EFF | 0xFF21..=0xFF5A => Script::Latin,
        0x600..=0x6FF | 0x750..=0x77F | 0xFB50..=0xFEFF => Script::Arabic,
        0x900..=0x97F => Script::Devanagari,
        0x3040..=0x30FF | 0x3400..=0x9FFF | 0xF900..=0xFAFF => Script::Cjk,
        _ => Script::Other,
    }
}

/// The script most of `text`'s letters are in (of the first 256 letters),
/// or `None` without letters.
fn dominant_script(text: &str) -> Option<Script> {
    let mut counts = [0usize; 5];
    for c in text.chars().filter(|c| c.is_alphabetic()).take(256) {
        counts[script_of(c) as usize] += 1;
    }
    let (i, &n) = counts.iter().enumerate().max_by_key(|(_, n)| **n)?;
    (n > 0).then(|| {
        [
            Script::Latin,
            Script::Arabic,
            Script::Devanagari,
            Script::Cjk,
            Script::Other,
        ][i]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MemoryRecord;

    fn hit(key: &str, value: &str, score: f64, fresh: bool) -> SearchHit {
        SearchHit {
            record: MemoryRecord {
                namespace: "n".into(),
                category: "c".into(),
                key: key.into(),
                value: value.into(),
                metadata: None,
                version: None,
                updated_at_ms: 0,
            },
            score,
            fresh,
        }
    }

    fn keys(hits: &[SearchHit]) -> Vec<&str> {
        hits.iter().map(|h| h.record.key.as_str()).collect()
    }

    /// `n` vector candidates: the named ones at the given similarities,
    /// then unrelated ones at the background.
    fn nearest(named: &[(&str, f32)], background: f32, n: usize) -> Vec<(SearchHit, f32)> {
        let mut out: Vec<(SearchHit, f32)> = named
            .iter()
            .map(|(k, s)| (hit(k, "v", f64::from(*s), false), *s))
            .collect();
        for i in out.len()..n {
            out.push((hit(&format!("bg{i}"), "v", 0.0, false), background));
        }
        out
    }

    const FUSION: Fusion = Fusion {
        weight: 1.0,
        confident_height: 0.1,
        cross_script_lexical: 0.5,
    };

    #[test]
    fn a_flat_vector_side_leaves_the_lexical_order() {
        // The vector side's best stands 0.01 above the background: a tenth
        // of its weight; the lexical order stands.
        let lexical = vec![hit("a", "v", 10.0, false), hit("b", "v", 9.0, false)];
        let got = fuse(
            "q",
            lexical,
            nearest(&[("b", 0.81), ("a", 0.805)], 0.80, 60),
            0.7,
            FUSION,
        );
        assert_eq!(keys(&got)[..2], ["a", "b"]);
    }

    #[test]
    fn a_confident_vector_side_reorders_and_adds() {
        let lexical = vec![hit("a", "v", 10.0, false), hit("b", "v", 9.0, false)];
        let got = fuse(
            "q",
            lexical,
            nearest(&[("b", 0.95), ("c", 0.90), ("a", 0.80)], 0.78, 60),
            0.7,
            FUSION,
        );
        // b: 0.9 + 1.0; c: 0.71 (vector only); a: 1.0 + 0.12.
        assert_eq!(keys(&got)[..3], ["b", "a", "c"]);
        assert!((got[0].score - 1.9).abs() < 1e-6);
    }

    #[test]
    fn without_lexical_hits_the_vectors_rank_and_below_the_floor_nothing_does() {
        let got = fuse(
            "q",
            vec![],
            nearest(&[("x", 0.9), ("y", 0.85)], 0.75, 10),
            0.7,
            FUSION,
        );
        assert_eq!(keys(&got)[..2], ["x", "y"]);
        let lexical = vec![hit("a", "v", 1.0, false)];
        let got = fuse("q", lexical, nearest(&[("x", 0.6)], 0.5, 10), 0.7, FUSION);
        assert_eq!(keys(&got), ["a"], "nothing above the floor: lexical alone");
    }

    #[test]
    fn pending_and_indexed_hits_are_normalised_apart() {
        // A pending hit's in-memory score (3.0) and an indexed bm25 (12.0)
        // are not on one scale: each is the best of its group.
        let lexical = vec![hit("p", "v", 3.0, true), hit("i", "v", 12.0, false)];
        let got = fuse("q", lexical, vec![], 0.7, FUSION);
        assert_eq!(keys(&got), ["p", "i"]);
        let got = fuse(
            "q",
            vec![hit("p", "v", 3.0, true), hit("i", "v", 12.0, false)],
            nearest(&[("z", 0.9)], 0.7, 60),
            0.7,
            FUSION,
        );
        assert!(got.iter().all(|h| h.score <= 1.0 + 1e-9));
    }

    #[test]
    fn a_lexical_hit_in_another_script_counts_less() {
        // An English query whose word met an Urdu memory's English key: the
        // multilingual side's pick wins.
        let lexical = vec![hit("u1", "میری بہن ڈاکٹر ہے", 10.0, false)];
        let got = fuse(
            "sister job",
            lexical,
            nearest(&[("u2", 0.86), ("u1", 0.80)], 0.78, 60),
            0.7,
            FUSION,
        );
        // u2: 0.8 x 1; u1: 0.5 (half of 1) + 0.8 x 0.25.
        assert_eq!(keys(&got)[..2], ["u2", "u1"]);
        assert_eq!(dominant_script("sister's job"), Some(Script::Latin));
        assert_eq!(dominant_script("بہن wedding کب ہے"), Some(Script::Arabic));
        assert_eq!(dominant_script("我妹妹 Lily"), Some(Script::Latin));
        assert_eq!(dominant_script("मेरी बहन"), Some(Script::Devanagari));
        assert_eq!(dominant_script("12 ?!"), None);
    }
}
