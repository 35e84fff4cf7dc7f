//! What one search may cost (issue 10, items 10 and 12): the query limits,
//! and pending saves tokenised once, not once per search.

mod common;

use common::{config_never_flushing, paused_system, temp_db};
use mnemo::text::{MAX_QUERY_BYTES, MAX_QUERY_TERMS};
use mnemo::{Error, Memory, Result, SaveRequest};

/// Distinct six-letter words (base 26 digits of `i`).
fn word(mut i: usize) -> String {
    (0..6)
        .map(|_| {
            let c = char::from(b'a' + (i % 26) as u8);
            i /= 26;
            c
        })
        .collect()
}

fn words(from: usize, n: usize) -> String {
    (from..from + n).map(word).collect::<Vec<_>>().join(" ")
}

/// `n` distinct CJK ideographs in one run: `n - 1` distinct bigrams and
/// `n` characters.
fn cjk_run(n: u32) -> String {
    (0..n)
        .map(|i| char::from_u32(0x4E00 + i).unwrap_or('中'))
        .collect()
}

/// The `reason` of an `InvalidInput` on `query`; panics on anything else.
fn query_error(r: Result<Vec<mnemo::SearchHit>>) -> String {
    match r {
        Err(Error::InvalidInput {
            field: "query",
            reason,
        }) => reason,
        other => panic!("expected a query error, got {other:?}"),
    }
}

#[test]
fn a_query_at_the_limits_works_and_one_past_is_a_typed_error() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config_never_flushing(&db))?;
        memory.save(SaveRequest::new("u", "notes", "w", words(0, 300)))?;
        memory.save(SaveRequest::new("u", "notes", "c", cjk_run(300)))?;

        // Bytes: exactly the limit (words padded with punctuation) works.
        let mut at_limit = words(0, 200);
        at_limit.push(' ');
        at_limit.push_str(&"-".repeat(MAX_QUERY_BYTES - at_limit.len()));
        assert_eq!(at_limit.len(), MAX_QUERY_BYTES);
        assert!(!memory.search("u", &at_limit, None, 5)?.is_empty());
        let reason = query_error(memory.search("u", &format!("{at_limit}-"), None, 5));
        assert!(
            reason.contains("8193 bytes; the limit is 8192 bytes"),
            "{reason}"
        );
        // Only punctuation, at the limit: nothing to search.
        assert!(memory
            .search("u", &"*".repeat(MAX_QUERY_BYTES), None, 5)?
            .is_empty());

        // Terms: duplicates and function words do not count.
        assert_eq!(
            memory.search("u", &words(0, MAX_QUERY_TERMS), None, 5)?[0]
                .record
                .key,
            "w"
        );
        let reason = query_error(memory.search("u", &words(0, MAX_QUERY_TERMS + 1), None, 5));
        assert!(reason.contains("257 distinct search terms"), "{reason}");
        assert!(reason.contains("the limit is 256"), "{reason}");
        let repeated = format!("{} {}", words(0, 200), words(0, 200));
        assert!(!memory.search("u", &repeated, None, 5)?.is_empty());
        let chatty = format!(
            "{} {}",
            words(0, 250),
            "what is the my of and to".repeat(20)
        );
        assert!(!memory.search("u", &chatty, None, 5)?.is_empty());

        // A Chinese run counts one term per character and one per pair of
        // characters (a function word like `也` is dropped): the longest run
        // within the limit works, one character more is refused.
        let terms = |n: u32| mnemo::text::Query::parse(&cjk_run(n)).len();
        let longest = (1..300)
            .take_while(|&n| terms(n) <= MAX_QUERY_TERMS)
            .last()
            .unwrap();
        assert!((127..=130).contains(&longest), "{longest}");
        assert_eq!(
            memory.search("u", &cjk_run(longest), None, 5)?[0]
                .record
                .key,
            "c"
        );
        let reason = query_error(memory.search("u", &cjk_run(longest + 1), None, 5));
        assert!(
            reason.contains(&format!("{} distinct search terms", terms(longest + 1))),
            "{reason}"
        );

        // The inputs are refused before any work, and nothing panics.
        let distinct = words(0, 80_000);
        assert!(distinct.len() > 500_000);
        query_error(memory.search("u", &distinct, None, 5));
        query_error(memory.search("u", &cjk_run(136_000), None, 5));
        query_error(memory.search("u", &cjk_run(136_000), Some("notes"), 1000));
        memory.shutdown().await
    })
}

/// Issue 10: a 3,000-word query against 200 pending 64 KiB memories took
/// 11.6 s, because every search tokenised every pending save again.
#[test]
fn pending_saves_are_tokenised_once_whatever_the_number_of_searches() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config_never_flushing(&db))?;
        let mut rng = fastrand::Rng::with_seed(12);
        for i in 0..200 {
            let mut value = String::new();
            while value.len() < 65_000 {
                value.push_str(&word(rng.usize(0..20_000)));
                value.push(' ');
            }
            // One word only this memory holds, in its value.
            value.push_str(&format!("marker{i}"));
            memory.save(SaveRequest::new("u", "notes", format!("k{i}"), value))?;
        }
        memory.forget("u", "notes", "gone")?;
        memory.save(SaveRequest::new("other", "notes", "k", "marker7 elsewhere"))?;
        assert_eq!(memory.stats().batches, 0, "everything is pending");

        let before = mnemo::tokenised_on_this_thread();
        // Words of the memories (each in about a third of them), and words
        // of none.
        let common = words(1, MAX_QUERY_TERMS);
        let absent = words(100_000, MAX_QUERY_TERMS - 1);
        for round in 0..5 {
            let hits = memory.search("u", &common, None, 3)?;
            assert_eq!(hits.len(), 3);
            assert!(hits.iter().all(|h| h.fresh));
            let i = round * 37;
            let hits = memory.search("u", &format!("{absent} marker{i}"), None, 3)?;
            assert_eq!(hits.len(), 1);
            assert_eq!(hits[0].record.key, format!("k{i}"));
            let hits = memory.search("u", &format!("marker{i}"), Some("notes"), 10)?;
            assert_eq!(hits.len(), 1);
        }
        assert_eq!(
            mnemo::tokenised_on_this_thread() - before,
            200,
            "each pending save of the namespace once; not the forget"
        );
        assert_eq!(memory.search("other", "marker7", None, 5)?.len(), 1);
        assert_eq!(mnemo::tokenised_on_this_thread() - before, 201);

        // A new save of a key is a new pending entry: tokenised once more.
        memory.save(SaveRequest::new("u", "notes", "k3", "marker3 rewritten"))?;
        let hits = memory.search("u", "rewritten", None, 5)?;
        assert_eq!(hits[0].record.value, "marker3 rewritten");
        memory.search("u", "marker3", None, 5)?;
        assert_eq!(mnemo::tokenised_on_this_thread() - before, 202);
        memory.shutdown().await
    })
}
