//! The `Memory` handle through its public API: read-your-writes, forget,
//! namespaces, the three places a handle can live, the actor path, shutdown
//! and reopen.
//!
//! Each test runs one body on both stores (`name::sqlite`, `name::postgres`,
//! see `common::both_stores!`), except the one that rewrites SQLite's index
//! behind the engine's back.

mod common;

use actix::{Actor, AsyncContext, Context, Handler, Message};
use common::{paused_system, Target};
use mnemo::{
    Error, ForgetMemory, Memory, MemoryBatcher, Result, SaveMemory, SaveRequest, WriteOutcome,
};

fn req(ns: &str, category: &str, key: &str, value: &str) -> SaveRequest {
    SaveRequest::new(ns, category, key, value)
}

both_stores!(reads_see_a_save_the_moment_it_returns);

fn reads_see_a_save_the_moment_it_returns(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config_never_flushing())?;
        let receipt = memory.save(
            req(
                "alice",
                "hobbies",
                "music",
                "مجھے گانا پسند ہے — I like singing",
            )
            .with_metadata_json(r#"{"turn": 3}"#)?,
        )?;
        memory.save(req("alice", "hobbies", "writing", "I like writing poems"))?;

        // pending: nothing committed yet
        assert_eq!(memory.stats().batches, 0);
        let got = memory
            .get("alice", "hobbies", "music")?
            .expect("pending save is readable");
        assert_eq!(got.version, None);
        assert_eq!(got.metadata, Some(serde_json::json!({"turn": 3})));
        assert_eq!(memory.list("alice", Some("hobbies"))?.len(), 2);
        let hits = memory.search("alice", "singing", None, 5)?;
        assert_eq!(hits.len(), 1);
        assert!(hits[0].fresh);
        let hits = memory.search("alice", "گانا", None, 5)?;
        assert_eq!(hits[0].record.key, "music");

        // committed and indexed: the same answers, now from the store and its
        // full-text index
        memory.flush();
        receipt.indexed().await?;
        let got = memory.get("alice", "hobbies", "music")?.unwrap();
        assert_eq!(got.version, Some(1));
        let hits = memory.search("alice", "singing", None, 5)?;
        assert_eq!(hits.len(), 1);
        assert!(!hits[0].fresh, "served by the index");
        assert_eq!(memory.stats().overlay_keys, 0, "indexed entries retire");
        memory.shutdown().await
    })
}

both_stores!(forget_travels_in_order_with_saves);

fn forget_travels_in_order_with_saves(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        memory.save(req("u", "c", "k", "one"))?.indexed().await?;

        // save then forget in one batch: the forget wins
        memory.save(req("u", "c", "k", "two"))?;
        let f = memory.forget("u", "c", "k")?;
        assert_eq!(
            memory.get("u", "c", "k")?,
            None,
            "forget is visible at once"
        );
        assert!(memory.search("u", "one two", None, 5)?.is_empty());
        assert_eq!(f.indexed().await?, WriteOutcome::Deleted { version: 2 });
        assert_eq!(memory.get("u", "c", "k")?, None);
        assert!(memory.search("u", "one", None, 5)?.is_empty());

        // forget then save: the save wins
        memory.forget("u", "c", "k")?;
        let s = memory.save(req("u", "c", "k", "three"))?;
        s.indexed().await?;
        assert_eq!(memory.get("u", "c", "k")?.unwrap().value, "three");
        assert_eq!(memory.search("u", "three", None, 5)?.len(), 1);

        // forgetting what is not there
        let none = memory.forget("u", "c", "missing")?;
        assert_eq!(none.durable().await?, WriteOutcome::NotFound);
        memory.shutdown().await
    })
}

both_stores!(no_path_returns_another_namespaces_memory);

fn no_path_returns_another_namespaces_memory(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        let a = memory.save(req("alice", "secrets", "pin", "alice pin 1234"))?;
        let b = memory.save(req("bob", "secrets", "pin", "bob pin 9876"))?;
        let check = |m: &Memory| -> Result<()> {
            assert_eq!(
                m.get("alice", "secrets", "pin")?.unwrap().value,
                "alice pin 1234"
            );
            assert_eq!(
                m.get("bob", "secrets", "pin")?.unwrap().value,
                "bob pin 9876"
            );
            let list = m.list("alice", None)?;
            assert!(list.iter().all(|r| r.namespace == "alice"));
            assert_eq!(list.len(), 1);
            for q in ["pin", "bob", "9876", "bob pin 9876", "secrets"] {
                for hit in m.search("alice", q, None, 50)? {
                    assert_eq!(hit.record.namespace, "alice", "query {q:?} leaked {hit:?}");
                }
            }
            assert!(m.search("alice", "9876", None, 10)?.is_empty());
            assert!(m.list("carol", None)?.is_empty());
            Ok(())
        };
        check(&memory)?; // pending
        assert_eq!(memory.namespaces()?, ["alice", "bob"]);
        a.indexed().await?;
        b.indexed().await?;
        check(&memory)?; // indexed
        assert_eq!(memory.namespaces()?, ["alice", "bob"]);
        memory.forget("bob", "secrets", "pin")?;
        assert_eq!(
            memory.namespaces()?,
            ["alice"],
            "a pending forget empties bob"
        );
        memory.shutdown().await
    })
}

both_stores!(hostile_search_text_never_errors);

fn hostile_search_text_never_errors(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        memory
            .save(req(
                "u",
                "notes",
                "quote",
                r#"she said "NEAR" the (old) tree*"#,
            ))?
            .indexed()
            .await?;
        for q in [
            "\"",
            "\"unbalanced quote",
            "tree*",
            "NEAR(said tree)",
            "said AND OR NOT tree",
            "(((",
            ")",
            "'; DROP TABLE memories; --",
            "key:value",
            "^start",
            "col : \"x\"",
            "{key} : tree",
            "",
            "   ",
            "🎵🎶",
        ] {
            memory.search("u", q, None, 10)?;
            memory.search("u", q, Some("notes"), 10)?;
        }
        assert_eq!(memory.search("u", "\"tree", None, 10)?.len(), 1);
        assert_eq!(memory.search("u", "NEAR", None, 10)?.len(), 1);
        assert!(matches!(
            memory.search("u", "tree", None, 0),
            Err(Error::InvalidInput { field: "limit", .. })
        ));
        memory.shutdown().await
    })
}

both_stores!(bad_input_is_a_typed_error_and_changes_nothing);

fn bad_input_is_a_typed_error_and_changes_nothing(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        let cases = [
            (req("", "c", "k", "v"), "namespace"),
            (req("n", "", "k", "v"), "category"),
            (req("n", "c", "", "v"), "key"),
            (req("n", "c", &"k".repeat(300), "v"), "key"),
            (req("n", "c", "k", "nul\0byte"), "value"),
            (req("n", "c", "k", &"v".repeat(70_000)), "value"),
        ];
        for (r, field) in cases {
            match memory.save(r) {
                Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
        let meta = req("n", "c", "k", "v").with_metadata_json("[1]")?;
        assert!(matches!(
            memory.save(meta),
            Err(Error::InvalidInput {
                field: "metadata",
                ..
            })
        ));
        assert_eq!(memory.stats().accepted, 0);
        assert_eq!(memory.stats().rejected_invalid, 7);
        assert!(memory.list("n", None)?.is_empty());
        // the engine is unharmed
        memory.save(req("n", "c", "k", "v"))?.durable().await?;
        memory.shutdown().await
    })
}

both_stores!(any_unicode_is_stored_and_found_and_escaped_json_is_checked);

fn any_unicode_is_stored_and_found_and_escaped_json_is_checked(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        let texts = [
            ("rtl", "\u{202B}مجھے چائے پسند ہے\u{202C} and עברית"),
            ("combining", "e\u{0301}cole cafe\u{0301} n\u{0303}"),
            ("emoji", "loves 🎵🎶 and 👩🏽‍💻 family emoji 👨‍👩‍👧"),
            ("zero-width", "مے\u{200C}خانہ ZWJ\u{200D}test"),
            ("mixed", "Ayesha ki behen — عائشہ کی بہن — 阿伊莎"),
        ];
        let mut receipts = Vec::new();
        for (key, value) in texts {
            receipts.push(memory.save(req("u", "unicode", key, value))?);
        }
        for r in &receipts {
            r.indexed().await?;
        }
        for (key, value) in texts {
            assert_eq!(
                memory.get("u", "unicode", key)?.unwrap().value,
                value,
                "stored exactly"
            );
        }
        assert_eq!(
            memory.search("u", "école", None, 5)?[0].record.key,
            "combining"
        );
        assert_eq!(
            memory.search("u", "🎵", None, 5)?.len(),
            0,
            "emoji are not words"
        );
        assert_eq!(
            memory.search("u", "阿伊莎", None, 5)?[0].record.key,
            "mixed"
        );
        assert_eq!(memory.search("u", "چائے", None, 5)?[0].record.key, "rtl");

        // JSON arrives escaped from tool calls: an escaped NUL is refused,
        // an unpaired surrogate cannot even be parsed; both are typed errors.
        let nul = req("u", "c", "k", "v").with_metadata_json(r#"{"note": "a\u0000b"}"#)?;
        assert!(matches!(
            memory.save(nul),
            Err(Error::InvalidInput {
                field: "metadata",
                ..
            })
        ));
        let surrogate = req("u", "c", "k", "v").with_metadata_json(r#"{"note": "\ud800"}"#);
        assert!(matches!(
            surrogate,
            Err(Error::InvalidInput {
                field: "metadata",
                ..
            })
        ));
        let huge = req("u", "c", "k", &"🎵".repeat(20_000));
        assert!(matches!(
            memory.save(huge),
            Err(Error::InvalidInput { field: "value", .. })
        ));
        assert_eq!(memory.get("u", "c", "k")?, None);
        memory.shutdown().await
    })
}

both_stores!(overloaded_fails_at_once_and_recovers);

fn overloaded_fails_at_once_and_recovers(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let mut c = t.config_never_flushing();
        c.max_pending = 5;
        c.max_batch = 5;
        let memory = Memory::open(c)?;
        // No await between the saves: the batcher has not taken any of them
        // yet, so the 6th finds the bound full.
        let receipts: Vec<_> = (0..5)
            .map(|i| memory.save(req("n", "c", &format!("k{i}"), "v")))
            .collect::<Result<_>>()?;
        let refused = memory.save(req("n", "c", "other", "x"));
        assert!(
            matches!(refused, Err(Error::Overloaded { pending: 5, .. })),
            "{refused:?}"
        );
        assert_eq!(
            memory.get("n", "c", "other")?,
            None,
            "a refused save changes nothing"
        );
        assert_eq!(memory.stats().rejected_overloaded, 1);
        // the full batch flushes at once; then there is room again
        for r in &receipts {
            r.durable().await?;
        }
        assert_eq!(memory.stats().pending, 0);
        memory.save(req("n", "c", "other", "x"))?;
        memory.shutdown().await
    })
}

both_stores!(shutdown_flushes_indexes_and_closes);

fn shutdown_flushes_indexes_and_closes(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config_never_flushing())?;
        let receipts: Vec<_> = (0..50)
            .map(|i| memory.save(req("u", "c", &format!("k{i}"), &format!("value {i}"))))
            .collect::<Result<_>>()?;
        memory.shutdown().await?;
        for r in &receipts {
            assert_eq!(
                r.status(),
                mnemo::ReceiptStatus::Indexed(WriteOutcome::Inserted { version: 1 })
            );
        }
        assert!(matches!(
            memory.save(req("u", "c", "late", "x")),
            Err(Error::Closed)
        ));
        assert!(memory.is_closed());
        memory.shutdown().await // idempotent
    })?;
    // reopen: everything is there and searchable
    let memory = Memory::open(t.config())?;
    assert_eq!(memory.list("u", None)?.len(), 50);
    assert_eq!(memory.search("u", "value", None, 100)?.len(), 50);
    assert_eq!(memory.stats().index_lag_changes, 0);
    memory.shutdown_blocking()
}

both_stores!(stopping_the_system_flushes_through_the_stopping_hook);

fn stopping_the_system_flushes_through_the_stopping_hook(t: &Target) -> Result<()> {
    let receipt = paused_system().block_on(async {
        let memory = Memory::open(t.config_never_flushing())?;
        let r = memory.save(req("u", "c", "k", "kept"))?;
        actix::System::current().stop();
        Ok::<_, Error>(r)
    })?;
    // The system stopped without shutdown(): the batcher's `stopping` flushed.
    assert_eq!(
        receipt.wait_durable()?,
        WriteOutcome::Inserted { version: 1 }
    );
    let memory = Memory::open(t.config())?;
    assert_eq!(memory.get("u", "c", "k")?.unwrap().value, "kept");
    assert_eq!(
        memory.search("u", "kept", None, 5)?.len(),
        1,
        "indexed on reopen"
    );
    memory.shutdown_blocking()
}

both_stores!(a_handle_works_from_a_plain_thread);

fn a_handle_works_from_a_plain_thread(t: &Target) -> Result<()> {
    let memory = Memory::open(t.config())?;
    let worker = {
        let memory = memory.clone();
        std::thread::spawn(move || -> Result<()> {
            let r = memory.save(req("u", "c", "thread", "from a plain thread"))?;
            assert_eq!(
                memory.get("u", "c", "thread")?.unwrap().value,
                "from a plain thread"
            );
            r.wait_indexed()?;
            Ok(())
        })
    };
    worker.join().unwrap()?;
    assert_eq!(memory.search("u", "plain thread", None, 5)?.len(), 1);
    memory.shutdown_blocking()
}

both_stores!(a_handle_works_inside_a_tokio_runtime);

/// On a multi-thread tokio runtime of two workers, as
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` gives.
fn a_handle_works_inside_a_tokio_runtime(t: &Target) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async {
            let memory = Memory::open(t.config())?;
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let memory = memory.clone();
                    tokio::spawn(async move {
                        let r = memory.save(req("u", "c", &format!("k{i}"), "from tokio"))?;
                        r.durable().await
                    })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap()?, WriteOutcome::Inserted { version: 1 });
            }
            assert_eq!(memory.list("u", None)?.len(), 8);
            memory.shutdown().await
        })
}

both_stores!(a_handle_works_inside_an_actix_system);

fn a_handle_works_inside_an_actix_system(t: &Target) -> Result<()> {
    actix::System::new().block_on(async {
        let memory = Memory::open(t.config())?;
        let r = memory.save(req("u", "c", "k", "from actix"))?;
        r.durable().await?;
        assert_eq!(memory.get("u", "c", "k")?.unwrap().version, Some(1));
        memory.shutdown().await
    })
}

/// An agent written as an actor that talks to the batcher with messages.
struct Agent {
    batcher: actix::Addr<MemoryBatcher>,
}

impl Actor for Agent {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "Result<Vec<mnemo::Receipt>>")]
struct UserTurn(&'static str);

impl Handler<UserTurn> for Agent {
    type Result = actix::ResponseFuture<Result<Vec<mnemo::Receipt>>>;

    fn handle(&mut self, msg: UserTurn, ctx: &mut Context<Self>) -> Self::Result {
        let _ = ctx.address();
        let batcher = self.batcher.clone();
        Box::pin(async move {
            let closed = |_| Error::Closed;
            let a = batcher
                .send(SaveMemory(req("u", "hobbies", "singing", msg.0)))
                .await
                .map_err(closed)??;
            let b = batcher
                .send(SaveMemory(req("u", "hobbies", "writing", "likes writing")))
                .await
                .map_err(closed)??;
            let c = batcher
                .send(ForgetMemory {
                    namespace: "u".into(),
                    category: "hobbies".into(),
                    key: "writing".into(),
                })
                .await
                .map_err(closed)??;
            Ok(vec![a, b, c])
        })
    }
}

both_stores!(actors_send_batcher_messages_on_the_same_write_path);

fn actors_send_batcher_messages_on_the_same_write_path(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        let agent = Agent {
            batcher: memory.batcher(),
        }
        .start();
        let receipts = agent
            .send(UserTurn("likes singing"))
            .await
            .map_err(|_| Error::Closed)??;
        // the handle reads what the actor saved, before the flush
        assert_eq!(
            memory.get("u", "hobbies", "singing")?.unwrap().value,
            "likes singing"
        );
        assert_eq!(memory.get("u", "hobbies", "writing")?, None);
        // sequence numbers are shared with the handle's saves
        let h = memory.save(req("u", "hobbies", "reading", "likes reading"))?;
        assert!(h.seq() > receipts[2].seq());
        assert_eq!(
            receipts[0].durable().await?,
            WriteOutcome::Inserted { version: 1 }
        );
        assert_eq!(
            receipts[1].durable().await?,
            WriteOutcome::Superseded {
                by_seq: receipts[2].seq()
            }
        );
        assert_eq!(receipts[2].durable().await?, WriteOutcome::NotFound);
        // invalid input through a message is the same typed error
        let bad = memory
            .batcher()
            .send(SaveMemory(req("u", "", "k", "v")))
            .await
            .unwrap();
        assert!(matches!(
            bad,
            Err(Error::InvalidInput {
                field: "category",
                ..
            })
        ));
        memory.shutdown().await
    })
}

both_stores!(reopen_continues_versions_and_sequence_numbers);

fn reopen_continues_versions_and_sequence_numbers(t: &Target) -> Result<()> {
    let first_seq = {
        let memory = Memory::open(t.config())?;
        let r = memory.save(req("u", "c", "k", "one"))?;
        r.wait_durable()?;
        memory.shutdown_blocking()?;
        r.seq()
    };
    let memory = Memory::open(t.config())?;
    let r = memory.save(req("u", "c", "k", "two"))?;
    assert!(r.seq() > first_seq);
    assert_eq!(r.wait_durable()?, WriteOutcome::Updated { version: 2 });
    let (rows, dead) = memory.counts()?;
    assert_eq!((rows, dead), (1, 0));
    memory.shutdown_blocking()
}

both_stores!(dropping_the_last_handle_flushes);

fn dropping_the_last_handle_flushes(t: &Target) -> Result<()> {
    let r = {
        let memory = Memory::open(t.config_never_flushing())?;
        memory.save(req("u", "c", "k", "dropped"))?
    };
    assert_eq!(r.wait_durable()?, WriteOutcome::Inserted { version: 1 });
    let memory = Memory::open(t.config())?;
    assert_eq!(memory.get("u", "c", "k")?.unwrap().value, "dropped");
    memory.shutdown_blocking()
}

// SQLite only: it rewrites the index file's FTS5 table and `index_meta` row
// with rusqlite.
#[test]
fn an_index_built_by_another_normaliser_is_rebuilt_on_open() -> Result<()> {
    let db = common::temp_db();
    let memory = Memory::open(common::config(&db))?;
    memory
        .save(req("u", "c", "drink", "我喜欢喝咖啡"))?
        .wait_indexed()?;
    memory.shutdown_blocking()?;
    drop(memory);
    // As if an older normaliser had built the index: different tokens.
    let index = common::config(&db).index_path().unwrap();
    let conn = rusqlite::Connection::open(&index).unwrap();
    conn.execute("ATTACH DATABASE ?1 AS mem", [db.path.to_str().unwrap()])
        .unwrap();
    conn.execute_batch(
        "DELETE FROM memories_fts;
         INSERT INTO memories_fts (rowid, ns, key, category, value)
           SELECT id, 'stale', key, category, value FROM memories;
         UPDATE index_meta SET value = 1 WHERE name = 'normalizer_version';",
    )
    .unwrap();
    drop(conn);
    let memory = Memory::open(common::config(&db))?;
    let hits = memory.search("u", "咖啡", None, 5)?;
    assert_eq!(hits.len(), 1, "the rebuilt index finds it");
    assert!(!hits[0].fresh);
    memory.shutdown_blocking()
}

// The indexer's thread runs below the rest of the process (Linux: nice is
// per thread), so indexing takes only the CPU the writer and the agent
// leave idle. Read from /proc, as `ps -L` would show it.
#[cfg(target_os = "linux")]
#[test]
fn the_indexer_thread_runs_at_a_lower_priority() -> Result<()> {
    let db = common::temp_db();
    let memory = Memory::open(common::config(&db))?;
    memory.save(req("u", "c", "k", "v"))?.wait_indexed()?;
    // Field 19 of /proc/<pid>/task/<tid>/stat is the nice value (fields
    // counted after the parenthesised name, which may hold spaces).
    let nice = |stat: &str| -> i32 {
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    };
    let own = nice(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    let mut indexers = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "mnemo-indexer" {
            indexers.push(nice(&std::fs::read_to_string(dir.join("stat")).unwrap()));
        }
    }
    // Other tests of this binary may run engines beside this one.
    assert!(!indexers.is_empty(), "the indexer thread is named");
    assert!(
        indexers.iter().all(|&n| n == (own + 10).min(19)),
        "nice {own} + 10: {indexers:?}"
    );
    memory.shutdown_blocking()
}

/// Files under `dir` this process has open or mapped (Linux: read from
/// /proc, as `lsof` would).
#[cfg(target_os = "linux")]
fn open_files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .map(|target| target.display().to_string())
        .collect();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let dir = dir.display().to_string();
    found.extend(
        maps.lines()
            .filter_map(|line| line.split_once('/').map(|(_, p)| format!("/{p}")))
            .filter(|p| p.starts_with(&dir)),
    );
    found
}

// After `shutdown` and dropping the handle, the engine holds nothing open
// on the database, its index file or its journal: they can be moved,
// deleted, or their file system remounted read-only at once. The writer
// thread and the indexer close their connections before `shutdown`
// answers (they used to close them a moment later, on their own threads).
#[cfg(target_os = "linux")]
#[test]
fn after_shutdown_and_drop_no_file_is_left_open() -> Result<()> {
    let db = common::temp_db();
    let dir = db.dir.path().to_path_buf();
    for round in 0..20 {
        let memory = Memory::open(common::config(&db))?;
        memory.save(req("u", "c", &format!("k{round}"), "coffee"))?;
        assert_eq!(memory.search("u", "coffee", None, 50)?.len(), round + 1);
        assert!(
            !open_files_under(&dir).is_empty(),
            "the probe sees the engine's files"
        );
        memory.shutdown_blocking()?;
        drop(memory);
        assert_eq!(
            open_files_under(&dir),
            Vec::<String>::new(),
            "round {round}"
        );
    }
    // The same inside an actix system the application runs.
    let db = common::temp_db();
    let dir = db.dir.path().to_path_buf();
    paused_system().block_on(async {
        let memory = Memory::open(common::config(&db))?;
        memory.save(req("u", "c", "k", "v"))?.indexed().await?;
        memory.shutdown().await?;
        drop(memory);
        assert_eq!(open_files_under(&dir), Vec::<String>::new());
        Ok(())
    })
}
