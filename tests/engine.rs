//! The `Memory` handle through its public API: read-your-writes, forget,
//! namespaces, the three places a handle can live, the actor path, shutdown
//! and reopen.

mod common;

use actix::{Actor, AsyncContext, Context, Handler, Message};
use common::{config, config_never_flushing, paused_system, temp_db};
use mnemo::{
    Error, ForgetMemory, Memory, MemoryBatcher, Result, SaveMemory, SaveRequest, WriteOutcome,
};

fn req(ns: &str, category: &str, key: &str, value: &str) -> SaveRequest {
    SaveRequest::new(ns, category, key, value)
}

#[test]
fn reads_see_a_save_the_moment_it_returns() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config_never_flushing(&db))?;
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

        // committed and indexed: the same answers, now from SQLite and FTS5
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

#[test]
fn forget_travels_in_order_with_saves() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn no_path_returns_another_namespaces_memory() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn hostile_search_text_never_errors() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn any_unicode_is_stored_and_found_and_escaped_json_is_checked() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn overloaded_fails_at_once_and_recovers() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let mut c = config_never_flushing(&db);
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

#[test]
fn shutdown_flushes_indexes_and_closes() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config_never_flushing(&db))?;
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
    let memory = Memory::open(config(&db))?;
    assert_eq!(memory.list("u", None)?.len(), 50);
    assert_eq!(memory.search("u", "value", None, 100)?.len(), 50);
    assert_eq!(memory.stats().index_lag_changes, 0);
    memory.shutdown_blocking()
}

#[test]
fn stopping_the_system_flushes_through_the_stopping_hook() -> Result<()> {
    let db = temp_db();
    let receipt = paused_system().block_on(async {
        let memory = Memory::open(config_never_flushing(&db))?;
        let r = memory.save(req("u", "c", "k", "kept"))?;
        actix::System::current().stop();
        Ok::<_, Error>(r)
    })?;
    // The system stopped without shutdown(): the batcher's `stopping` flushed.
    assert_eq!(
        receipt.wait_durable()?,
        WriteOutcome::Inserted { version: 1 }
    );
    let memory = Memory::open(config(&db))?;
    assert_eq!(memory.get("u", "c", "k")?.unwrap().value, "kept");
    assert_eq!(
        memory.search("u", "kept", None, 5)?.len(),
        1,
        "indexed on reopen"
    );
    memory.shutdown_blocking()
}

#[test]
fn a_handle_works_from_a_plain_thread() -> Result<()> {
    let db = temp_db();
    let memory = Memory::open(config(&db))?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_works_inside_a_tokio_runtime() -> Result<()> {
    let db = temp_db();
    let memory = Memory::open(config(&db))?;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let memory = memory.clone();
            tokio::spawn(async move {
                let r = memory.save(req("u", "c", &format!("k{i}"), "from tokio"))?;
                r.durable().await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap()?, WriteOutcome::Inserted { version: 1 });
    }
    assert_eq!(memory.list("u", None)?.len(), 8);
    memory.shutdown().await
}

#[test]
fn a_handle_works_inside_an_actix_system() -> Result<()> {
    let db = temp_db();
    actix::System::new().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn actors_send_batcher_messages_on_the_same_write_path() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn reopen_continues_versions_and_sequence_numbers() -> Result<()> {
    let db = temp_db();
    let first_seq = {
        let memory = Memory::open(config(&db))?;
        let r = memory.save(req("u", "c", "k", "one"))?;
        r.wait_durable()?;
        memory.shutdown_blocking()?;
        r.seq()
    };
    let memory = Memory::open(config(&db))?;
    let r = memory.save(req("u", "c", "k", "two"))?;
    assert!(r.seq() > first_seq);
    assert_eq!(r.wait_durable()?, WriteOutcome::Updated { version: 2 });
    let (rows, dead) = memory.counts()?;
    assert_eq!((rows, dead), (1, 0));
    memory.shutdown_blocking()
}

#[test]
fn dropping_the_last_handle_flushes() -> Result<()> {
    let db = temp_db();
    let r = {
        let memory = Memory::open(config_never_flushing(&db))?;
        memory.save(req("u", "c", "k", "dropped"))?
    };
    assert_eq!(r.wait_durable()?, WriteOutcome::Inserted { version: 1 });
    let memory = Memory::open(config(&db))?;
    assert_eq!(memory.get("u", "c", "k")?.unwrap().value, "dropped");
    memory.shutdown_blocking()
}

#[test]
fn an_index_built_by_another_normaliser_is_rebuilt_on_open() -> Result<()> {
    let db = temp_db();
    let memory = Memory::open(config(&db))?;
    memory
        .save(req("u", "c", "drink", "我喜欢喝咖啡"))?
        .wait_indexed()?;
    memory.shutdown_blocking()?;
    drop(memory);
    // As if an older normaliser had built the index: different tokens.
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    conn.execute_batch(
        "DELETE FROM memories_fts;
         INSERT INTO memories_fts (rowid, ns, key, category, value)
           SELECT id, 'stale', key, category, value FROM memories;
         UPDATE meta SET value = 1 WHERE name = 'normalizer_version';",
    )
    .unwrap();
    drop(conn);
    let memory = Memory::open(config(&db))?;
    let hits = memory.search("u", "咖啡", None, 5)?;
    assert_eq!(hits.len(), 1, "the rebuilt index finds it");
    assert!(!hits[0].fresh);
    memory.shutdown_blocking()
}
