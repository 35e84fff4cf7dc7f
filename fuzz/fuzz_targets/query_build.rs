//! Any user text becomes a query that SQLite's FTS5 accepts: quotes, `*`,
//! `NEAR`, parentheses, column filters and SQL are just words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static DB: RefCell<rusqlite::Connection> = RefCell::new({
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE VIRTUAL TABLE memories_fts USING fts5(ns, key, category, value, tokenize = 'ascii');
             INSERT INTO memories_fts VALUES ('ns1', 'k', 'c', 'alpha beta 咖 啡');",
        )
        .unwrap();
        c
    });
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let q = mnemo::text::Query::parse(text);
    let Some(expr) = q.fts_expression() else {
        assert!(q.is_empty());
        return;
    };
    let expr = format!("ns : \"ns1\" AND {expr}");
    DB.with(|db| {
        let db = db.borrow();
        let mut st = db
            .prepare("SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?1")
            .unwrap();
        let rows: Result<Vec<i64>, _> = st.query_map([&expr], |r| r.get(0)).unwrap().collect();
        if let Err(e) = rows {
            panic!("FTS5 rejected {expr:?} built from {text:?}: {e}");
        }
    });
});
