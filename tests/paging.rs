//! `Memory::list_page`: pages in (category, key) order that add up to
//! exactly what `list` returns, with pending saves and forgets on either side
//! of every page boundary, and the checks on `limit` and `cursor`.
//!
//! Each test runs one body on both stores (`name::sqlite`, `name::postgres`,
//! see `common::both_stores!`): both list in byte order.

mod common;

use std::collections::BTreeMap;

use common::{paused_system, Target};
use mnemo::{Error, ListPage, Memory, MemoryRecord, Result, SaveRequest};

/// Every page of a listing, walked with `limit`, concatenated; asserts
/// that every page but the last is full.
fn walk(
    memory: &Memory,
    ns: &str,
    category: Option<&str>,
    limit: usize,
) -> Result<Vec<MemoryRecord>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = memory.list_page(ns, category, Some(limit), cursor.as_deref())?;
        assert!(page.records.len() <= limit);
        all.extend(page.records.iter().cloned());
        match page.next_cursor {
            Some(next) => {
                assert_eq!(page.records.len(), limit, "only the last page is short");
                cursor = Some(next);
            }
            None => return Ok(all),
        }
    }
}

fn keys(records: &[MemoryRecord]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| (r.category.clone(), r.key.clone()))
        .collect()
}

/// Saves `n` memories `c{i % 3}/k{i:03}` and waits until they are committed
/// and indexed (so they are read from the store, not the overlay).
async fn committed(memory: &Memory, ns: &str, n: usize) -> Result<()> {
    let mut last = None;
    for i in 0..n {
        let category = format!("c{}", i % 3);
        last = Some(memory.save(SaveRequest::new(
            ns,
            category,
            format!("k{i:03}"),
            format!("stored {i}"),
        ))?);
    }
    memory.flush();
    if let Some(r) = last {
        r.indexed().await?;
    }
    assert_eq!(memory.stats().overlay_keys, 0, "all committed and retired");
    Ok(())
}

both_stores!(pages_add_up_to_list_with_pending_saves_and_forgets_at_the_boundaries);

fn pages_add_up_to_list_with_pending_saves_and_forgets_at_the_boundaries(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config_never_flushing())?;
        committed(&memory, "u", 30).await?;
        // Pending, never flushed: forget a run of stored rows (a whole page
        // of them at small limits), update some, add keys between stored
        // ones, before all of them and after all of them, and forget a key
        // that was never stored.
        for i in [3, 6, 9, 12, 15, 18] {
            memory.forget("u", "c0", &format!("k{i:03}"))?;
        }
        memory.save(SaveRequest::new("u", "c1", "k004", "updated, pending"))?;
        memory.save(SaveRequest::new("u", "c1", "k004a", "new between"))?;
        memory.save(SaveRequest::new("u", "a-first", "k", "new before all"))?;
        memory.save(SaveRequest::new("u", "z-last", "k", "new after all"))?;
        memory.forget("u", "c2", "never-stored")?;
        memory.save(SaveRequest::new("other", "c0", "k000", "another namespace"))?;
        assert!(memory.stats().overlay_keys > 0);

        let everything = memory.list("u", None)?;
        assert_eq!(everything.len(), 30 - 6 + 3);
        for limit in [1, 2, 3, 4, 5, 7, 26, 27, 28, 100] {
            assert_eq!(
                walk(&memory, "u", None, limit)?,
                everything,
                "limit {limit}"
            );
            for category in ["c0", "c1", "c2", "a-first", "nothing"] {
                assert_eq!(
                    walk(&memory, "u", Some(category), limit)?,
                    memory.list("u", Some(category))?,
                    "limit {limit}, category {category}"
                );
            }
        }
        let updated = everything
            .iter()
            .find(|r| r.category == "c1" && r.key == "k004")
            .expect("c1/k004");
        assert_eq!(updated.value, "updated, pending");
        assert_eq!(
            updated.version, None,
            "the pending save, not the stored row"
        );

        // Exactly `limit` left after the cursor: the page is full and says
        // nothing follows.
        let page = memory.list_page("u", None, Some(26), None)?;
        assert_eq!(page.records.len(), 26);
        let last = memory.list_page("u", None, Some(1), page.next_cursor.as_deref())?;
        assert_eq!(keys(&last.records), [("z-last".into(), "k".into())]);
        assert_eq!(last.next_cursor, None);
        let whole = memory.list_page("u", None, Some(27), None)?;
        assert_eq!(whole.records, everything);
        assert_eq!(whole.next_cursor, None);
        memory.shutdown().await
    })
}

both_stores!(random_pages_match_a_model);

/// Random stored sets, random pending changes, random limits: the pages
/// always add up to `list`, and `list` to a plain map of what was accepted.
fn random_pages_match_a_model(t: &Target) -> Result<()> {
    for seed in 0..6 {
        // A fresh database per seed, on the same kind of store.
        let t = Target::new(t.store);
        let mut rng = fastrand::Rng::with_seed(seed);
        paused_system().block_on(async {
            let memory = Memory::open(t.config_never_flushing())?;
            let mut model: BTreeMap<(String, String), String> = BTreeMap::new();
            let key = |rng: &mut fastrand::Rng| {
                (
                    format!("cat{}", rng.usize(0..4)),
                    format!("key{:02}", rng.usize(0..40)),
                )
            };
            let mut last = None;
            for _ in 0..rng.usize(0..80) {
                let (c, k) = key(&mut rng);
                let v = format!("v{}", rng.u32(..));
                last = Some(memory.save(SaveRequest::new("u", c.clone(), k.clone(), v.clone()))?);
                model.insert((c, k), v);
            }
            memory.flush();
            if let Some(r) = last {
                r.indexed().await?;
            }
            for _ in 0..rng.usize(0..40) {
                let (c, k) = key(&mut rng);
                if rng.bool() {
                    memory.forget("u", &c, &k)?;
                    model.remove(&(c, k));
                } else {
                    let v = format!("p{}", rng.u32(..));
                    memory.save(SaveRequest::new("u", c.clone(), k.clone(), v.clone()))?;
                    model.insert((c, k), v);
                }
            }
            let listed = memory.list("u", None)?;
            let expected: Vec<(String, String, String)> = model
                .iter()
                .map(|((c, k), v)| (c.clone(), k.clone(), v.clone()))
                .collect();
            let got: Vec<(String, String, String)> = listed
                .iter()
                .map(|r| (r.category.clone(), r.key.clone(), r.value.clone()))
                .collect();
            assert_eq!(got, expected, "seed {seed}");
            for _ in 0..4 {
                let limit = rng.usize(1..12);
                assert_eq!(
                    walk(&memory, "u", None, limit)?,
                    listed,
                    "seed {seed}, limit {limit}"
                );
                let category = format!("cat{}", rng.usize(0..4));
                assert_eq!(
                    walk(&memory, "u", Some(&category), limit)?,
                    memory.list("u", Some(&category))?,
                    "seed {seed}, limit {limit}, {category}"
                );
            }
            memory.shutdown().await
        })?;
    }
    Ok(())
}

both_stores!(limits_default_to_100_and_bad_limits_and_cursors_are_named);

fn limits_default_to_100_and_bad_limits_and_cursors_are_named(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config_never_flushing())?;
        committed(&memory, "u", 150).await?;
        let first = memory.list_page("u", None, None, None)?;
        assert_eq!(first.records.len(), ListPage::DEFAULT_LIMIT);
        let rest = memory.list_page("u", None, None, first.next_cursor.as_deref())?;
        assert_eq!(rest.records.len(), 50);
        assert_eq!(rest.next_cursor, None);
        assert_eq!(
            memory
                .list_page("u", None, Some(ListPage::MAX_LIMIT), None)?
                .records
                .len(),
            150
        );

        for limit in [0, ListPage::MAX_LIMIT + 1] {
            match memory.list_page("u", None, Some(limit), None) {
                Err(Error::InvalidInput { field: "limit", .. }) => {}
                other => panic!("limit {limit}: {other:?}"),
            }
        }
        let long = "ab".repeat(2_000);
        for cursor in ["", "not a cursor", "zz.zz", "63", long.as_str()] {
            match memory.list_page("u", None, None, Some(cursor)) {
                Err(Error::InvalidInput {
                    field: "cursor", ..
                }) => {}
                other => panic!("cursor {cursor:?}: {other:?}"),
            }
        }
        // A cursor is a position, not a memory: it need not name one that
        // exists (any more).
        let cursor = ListPage::cursor_after("c1", "k100");
        let after = memory.list_page("u", Some("c1"), Some(1), Some(&cursor))?;
        assert_eq!(keys(&after.records), [("c1".into(), "k103".into())]);
        let before_all = ListPage::cursor_after("a", "a");
        let page = memory.list_page("u", Some("c2"), Some(1), Some(&before_all))?;
        assert_eq!(keys(&page.records), [("c2".into(), "k002".into())]);
        let after_all = ListPage::cursor_after("d", "a");
        let page = memory.list_page("u", Some("c2"), Some(1), Some(&after_all))?;
        assert!(page.records.is_empty());
        assert_eq!(page.next_cursor, None);
        memory.shutdown().await
    })
}

both_stores!(namespaces_use_pages_and_skip_namespaces_emptied_by_pending_forgets);

/// A namespace whose stored memories are all forgotten while pending is not
/// listed, and one with only pending saves is.
fn namespaces_use_pages_and_skip_namespaces_emptied_by_pending_forgets(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config_never_flushing())?;
        committed(&memory, "gone", 3).await?;
        for i in 0..3 {
            memory.forget("gone", &format!("c{}", i % 3), &format!("k{i:03}"))?;
        }
        memory.save(SaveRequest::new("pending", "c", "k", "v"))?;
        assert_eq!(memory.namespaces()?, ["pending"]);
        memory.shutdown().await
    })
}
