//! What only the PostgreSQL store has to show: a real server (started by
//! the tests, see `common::pg`) restarted or cut off mid-flush, down at open,
//! refusing the schema; rows it rejects; several workers on one database
//! (the same keys, a late replay, shared indexing); and the same matches as
//! SQLite for the same data. The behaviour both stores share runs on both
//! from one body in `engine`, `batcher`, `paging` and `crash`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{pg, Store, Target};
use mnemo::{Config, Error, Memory, Result, SaveRequest, WriteOutcome};

fn req(key: &str, value: &str) -> SaveRequest {
    SaveRequest::new("u", "facts", key, value)
}

/// A config that flushes at once and gives up waiting quickly (the writer
/// itself never gives up).
fn quick(t: &Target) -> Config {
    Config {
        quiet_window: Duration::from_millis(5),
        max_wait: Duration::from_millis(20),
        busy_deadline: Duration::from_secs(2),
        ..t.config()
    }
}

#[test]
fn a_restarted_server_delays_saves_and_loses_none() -> Result<()> {
    // A server of its own: the other tests of this binary share theirs.
    let server = pg::Server::new();
    let db = server.database();
    let journal = tempfile::tempdir()?;
    let config = Config {
        quiet_window: Duration::from_millis(5),
        max_wait: Duration::from_millis(20),
        busy_deadline: Duration::from_secs(2),
        journal_dir: Some(journal.path().to_owned()),
        ..Config::new(db.url())
    };
    let memory = Memory::open(config)?;
    memory
        .save(req("before", "saved before the restart"))?
        .wait_durable()?;
    server.stop();
    let receipts: Vec<_> = (0..50)
        .map(|i| memory.save(req(&format!("k{i}"), &format!("during the outage {i}"))))
        .collect::<Result<_>>()?;
    // The writer is stalled and says why; the saves are readable.
    let deadline = Instant::now() + Duration::from_secs(20);
    while memory.stats().writer_stall_reason.is_none() {
        assert!(Instant::now() < deadline, "the stall was never reported");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = memory.stats();
    assert!(
        stats.writer_stalled_ms > 0 || stats.write_retries > 0,
        "{stats:?}"
    );
    assert_eq!(
        memory.get("u", "facts", "k7")?.map(|r| r.value).as_deref(),
        Some("during the outage 7")
    );
    // A waiter past the deadline hears "not committed yet", and the save
    // is kept.
    match receipts[0].wait_durable() {
        Err(Error::NotCommittedYet { .. }) => {}
        other => panic!("expected NotCommittedYet while the server is down, got {other:?}"),
    }
    server.start();
    for r in &receipts {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match r.wait_durable() {
                Ok(WriteOutcome::Inserted { .. }) => break,
                Err(Error::NotCommittedYet { .. }) if Instant::now() < deadline => continue,
                other => panic!("after the restart: {other:?}"),
            }
        }
    }
    assert!(memory.stats().writer_stall_reason.is_none());
    // A restart while a flush is on its way: the same.
    let more: Vec<_> = (0..50)
        .map(|i| memory.save(req(&format!("m{i}"), "during a restart")))
        .collect::<Result<_>>()?;
    memory.flush();
    server.restart();
    for r in &more {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match r.wait_durable() {
                Ok(_) => break,
                Err(Error::NotCommittedYet { .. }) if Instant::now() < deadline => continue,
                other => panic!("after the restart: {other:?}"),
            }
        }
    }
    memory.shutdown_blocking()?;
    assert_eq!(
        pg::query_scalar(&db.url(), "SELECT count(*) FROM mnemo.memories"),
        101
    );
    Ok(())
}

#[test]
fn connections_cut_mid_flush_are_reopened_and_nothing_is_lost() -> Result<()> {
    let t = Target::new(Store::Postgres);
    let memory = Memory::open(quick(&t))?;
    let mut receipts = Vec::new();
    // Fifty cuts, each right after a flush starts: some land between a
    // batch's statements, where a silent reconnect once ran the `COMMIT` on
    // a new connection outside the transaction and called the batch
    // committed (a batch of saves lost, in one run in three or four).
    for round in 0..50 {
        for i in 0..20 {
            receipts.push(memory.save(req(
                &format!("r{round}-k{i}"),
                &format!("round {round} note {i} about tomatoes"),
            ))?);
        }
        memory.flush();
        // Cut every connection of the database while that batch flushes.
        t.terminate_connections();
    }
    for r in &receipts {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match r.wait_durable() {
                Ok(_) => break,
                Err(Error::NotCommittedYet { .. }) if Instant::now() < deadline => continue,
                other => panic!("{other:?}"),
            }
        }
    }
    // Search works again too: a pooled reader whose connection was cut
    // fails once at most, and reconnects.
    let hits = match memory.search("u", "tomatoes", None, 5) {
        Ok(h) => h,
        Err(_) => memory.search("u", "tomatoes", None, 5)?,
    };
    assert_eq!(hits.len(), 5);
    memory.shutdown_blocking()?;
    assert_eq!(t.query_i64("SELECT count(*) FROM memories"), 1_000);
    assert_eq!(t.query_i64("SELECT count(*) FROM dead_letters"), 0);
    Ok(())
}

#[test]
fn a_server_that_is_down_at_open_is_a_clear_error_without_the_password() {
    // A port nothing listens on.
    let url = "postgres://agent:s3cret-pw@127.0.0.1:1/agents?connect_timeout=2";
    let journal = tempfile::tempdir().unwrap();
    let e = Memory::open(Config {
        journal_dir: Some(journal.path().to_owned()),
        ..Config::new(url)
    })
    .err()
    .expect("nothing listens there");
    let text = e.to_string();
    assert!(matches!(e, Error::Open { .. }), "{e:?}");
    assert!(text.contains("127.0.0.1"), "names the server: {text}");
    assert!(!text.contains("s3cret-pw"), "leaks the password: {text}");
}

#[test]
fn a_role_that_may_not_create_the_schema_is_told_so() {
    let t = Target::new(Store::Postgres);
    let admin = t.pg_url();
    pg::execute(
        &admin,
        "DROP ROLE IF EXISTS visitor; CREATE ROLE visitor LOGIN; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
    );
    let db = admin
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    pg::execute(
        &admin,
        &format!("REVOKE CREATE ON DATABASE \"{db}\" FROM PUBLIC"),
    );
    let url = t.pg_url_as("visitor");
    let e = Memory::open(Config {
        journal_dir: Some(t.journal_dir()),
        ..Config::new(&url)
    })
    .err()
    .expect("visitor may not create schema mnemo");
    let text = e.to_string();
    assert!(matches!(e, Error::Open { .. }), "{e:?}");
    assert!(text.contains("permission"), "{text}");
}

#[test]
fn rows_the_server_rejects_are_dead_lettered_and_the_rest_commits() -> Result<()> {
    let t = Target::new(Store::Postgres);
    drop(Memory::open(t.config())?); // schema
    pg::execute(
        &t.pg_url(),
        "ALTER TABLE mnemo.memories ADD CONSTRAINT no_poison CHECK (value NOT LIKE '%poison%')",
    );
    let memory = Memory::open(quick(&t))?;
    let good: Vec<_> = (0..20)
        .map(|i| memory.save(req(&format!("good{i}"), "fine")))
        .collect::<Result<_>>()?;
    let bad = memory.save(req("bad", "this is poison"))?;
    for r in &good {
        assert!(matches!(r.wait_durable()?, WriteOutcome::Inserted { .. }));
    }
    match bad.wait_durable() {
        Err(Error::DeadLettered { reason }) => assert!(reason.contains("no_poison"), "{reason}"),
        other => panic!("expected a dead letter, got {other:?}"),
    }
    memory.shutdown_blocking()?;
    assert_eq!(t.query_i64("SELECT count(*) FROM memories"), 20);
    assert_eq!(
        t.query_i64(
            "SELECT count(*) FROM dead_letters WHERE key = 'bad' AND reason LIKE '%no_poison%'"
        ),
        1
    );
    Ok(())
}

#[test]
fn two_workers_saving_the_same_keys_agree_on_the_newest() -> Result<()> {
    let t = Target::new(Store::Postgres);
    let other_journal = tempfile::tempdir()?;
    let a = Memory::open(quick(&t))?;
    let b = Memory::open(Config {
        journal_dir: Some(other_journal.path().to_owned()),
        ..quick(&t)
    })?;
    // Interleaved saves of the same keys; each worker waits for its own.
    for round in 0..10 {
        for i in 0..20 {
            let key = format!("k{i}");
            let (first, second) = if (round + i) % 2 == 0 {
                (&a, &b)
            } else {
                (&b, &a)
            };
            first
                .save(req(&key, &format!("first-{round}")))?
                .wait_durable()?;
            second
                .save(req(&key, &format!("second-{round}")))?
                .wait_durable()?;
        }
    }
    for i in 0..20 {
        let key = format!("k{i}");
        for m in [&a, &b] {
            assert_eq!(
                m.get("u", "facts", &key)?.map(|r| r.value).as_deref(),
                Some("second-9"),
                "the later save wins, seen from both workers"
            );
        }
    }
    // Each sees the other's memories in search.
    a.save(req("only-a", "a zebra crossing"))?.wait_indexed()?;
    let hits = b.search("u", "zebra", None, 5)?;
    assert_eq!(hits.len(), 1);
    a.shutdown_blocking()?;
    b.shutdown_blocking()?;
    Ok(())
}

#[test]
#[ignore = "child process of a_late_replay_never_overwrites_a_newer_save_nor_revives_a_forget"]
fn child_saves_old_values_and_waits() {
    common::child_saves_and_waits(3, |c| {
        c.journal_dir = std::env::var_os("MNEMO_CHILD_JOURNAL").map(Into::into);
    });
}

#[test]
fn a_late_replay_never_overwrites_a_newer_save_nor_revives_a_forget() -> Result<()> {
    let t = Target::new(Store::Postgres);
    drop(Memory::open(t.config())?); // schema
                                     // A worker accepts saves of k000..k002 and dies before flushing them.
    common::kill_child_after_with(
        "child_saves_old_values_and_waits",
        &t.location(),
        &[("MNEMO_CHILD_JOURNAL", t.journal_dir())],
        "SAVED",
    );
    // Another worker, on another machine (its own journal folder), then
    // saves k000 again and forgets k001.
    let elsewhere = tempfile::tempdir()?;
    let other = Memory::open(Config {
        journal_dir: Some(elsewhere.path().to_owned()),
        ..quick(&t)
    })?;
    other
        .save(SaveRequest::new("u", "facts", "k000", "newer"))?
        .wait_durable()?;
    other.forget("u", "facts", "k001")?.wait_durable()?;
    other.shutdown_blocking()?;
    // The dead worker's successor replays its journal: late, and older.
    let successor = Memory::open(t.config())?;
    assert_eq!(successor.stats().replayed, 3);
    assert_eq!(
        successor
            .get("u", "facts", "k000")?
            .map(|r| r.value)
            .as_deref(),
        Some("newer")
    );
    assert_eq!(
        successor.get("u", "facts", "k001")?,
        None,
        "a forget stays forgotten"
    );
    assert!(
        successor.get("u", "facts", "k002")?.is_some(),
        "its own save is kept"
    );
    successor.shutdown_blocking()
}

/// The same memories and queries on SQLite and PostgreSQL: the same rows
/// match (one normaliser, one tokeniser for both).
#[test]
fn both_stores_find_the_same_rows_for_the_same_query() -> Result<()> {
    let memories = [
        ("prefs", "drink", "Prefers oat-milk flat whites, no sugar"),
        (
            "prefs",
            "music",
            "Listens to Nusrat Fateh Ali Khan when coding",
        ),
        ("facts", "city", "Lives in Lahore, near the old city walls"),
        ("facts", "urdu", "پسندیدہ کھانا بریانی ہے"),
        ("facts", "hindi", "उसका पसंदीदा रंग नीला है"),
        ("facts", "chinese", "他喜欢在周末爬山和喝绿茶"),
        ("facts", "roman", "Usay chai bohat pasand hai, doodh patti"),
        (
            "work",
            "project",
            "Migrating the billing service to PostgreSQL 15",
        ),
        (
            "work",
            "deadline",
            "Billing migration deadline is the 3rd of March",
        ),
        (
            "pets",
            "cat",
            "Has a cat named Biryani who hates the vacuum",
        ),
    ];
    let queries = [
        "what does she drink",
        "coffee milk",
        "Nusrat",
        "lahore city",
        "بریانی",
        "नीला",
        "绿茶",
        "chai pasand",
        "billing",
        "postgres*",
        "billing deadline March",
        "cat vacuum",
        "\"old city\"",
        "migrat",
        "nothing matches this",
    ];
    let mut found: Vec<Vec<BTreeSet<String>>> = Vec::new();
    for store in [Store::Sqlite, Store::Postgres] {
        let t = Target::new(store);
        let memory = Memory::open(t.config())?;
        let mut last = None;
        for (cat, key, value) in memories {
            last = Some(memory.save(SaveRequest::new("u", cat, key, value))?);
        }
        memory.flush();
        last.unwrap().wait_indexed()?;
        let per_query = queries
            .iter()
            .map(|q| {
                memory
                    .search("u", q, None, 50)
                    .map(|hits| hits.into_iter().map(|h| h.record.key).collect())
            })
            .collect::<Result<Vec<BTreeSet<String>>>>()?;
        found.push(per_query);
        memory.shutdown_blocking()?;
    }
    for (i, q) in queries.iter().enumerate() {
        assert_eq!(
            found[0][i], found[1][i],
            "query {q:?}: SQLite vs PostgreSQL"
        );
    }
    assert!(
        found[1].iter().filter(|s| !s.is_empty()).count() >= 10,
        "{found:?}"
    );
    Ok(())
}

/// Two workers indexing one database at once: every memory is indexed
/// once the receipts say so, from either side.
#[test]
fn two_workers_share_the_indexing() -> Result<()> {
    let t = Target::new(Store::Postgres);
    let other_journal = tempfile::tempdir()?;
    let a = Memory::open(quick(&t))?;
    let b = Memory::open(Config {
        journal_dir: Some(other_journal.path().to_owned()),
        ..quick(&t)
    })?;
    let mut receipts = Vec::new();
    for i in 0..600 {
        let m = if i % 2 == 0 { &a } else { &b };
        receipts.push(m.save(SaveRequest::new(
            "u",
            "notes",
            format!("n{i}"),
            format!("note {i} about the garden"),
        ))?);
    }
    for r in &receipts {
        r.wait_indexed()?;
    }
    assert_eq!(
        t.query_i64("SELECT count(*) FROM memories WHERE indexed_change < change_seq"),
        0,
        "nothing left unindexed"
    );
    assert_eq!(a.search("u", "garden", None, 1000)?.len(), 600);
    a.shutdown_blocking()?;
    b.shutdown_blocking()?;
    Ok(())
}

/// The command line on PostgreSQL: `--db` takes the URL, `--journal-dir`
/// the journal's folder, and nothing it prints holds the password.
#[test]
fn the_command_line_takes_a_postgres_url() {
    let t = Target::new(Store::Postgres);
    let url = t.location();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .arg("--db")
            .arg(&url)
            .arg("--journal-dir")
            .arg(t.journal_dir())
            .args(["--namespace", "u1"])
            .args(args)
            .output()
            .expect("run mnemo");
        assert!(
            out.status.success(),
            "mnemo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    run(&["save", "facts", "city", "Lives in Lahore"]);
    assert!(run(&["get", "facts", "city"]).contains("Lives in Lahore"));
    assert!(run(&["search", "lahore"]).contains("city"));
    let stats: serde_json::Value = serde_json::from_str(&run(&["--json", "stats"])).expect("JSON");
    assert_eq!(stats["memories"], 1, "{stats}");
    assert_eq!(
        stats["journal_dir"]["path"].as_str(),
        Some(t.journal_dir().to_str().unwrap())
    );
    run(&["forget", "facts", "city"]);
    assert_eq!(
        t.query_i64("SELECT count(*) FROM memories WHERE NOT deleted"),
        0
    );
    // A password in the URL never shows: not even when the open fails.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .args([
            "--db",
            "postgres://agent:hunter2-secret@127.0.0.1:1/x?connect_timeout=2",
            "--journal-dir",
        ])
        .arg(t.journal_dir())
        .args(["get", "facts", "city"])
        .output()
        .expect("run mnemo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}

/// Hybrid retrieval on PostgreSQL: the vectors live in the database too,
/// and find what lexical matching cannot (a misspelt word); a lexical
/// worker's rows get their vectors when a hybrid worker indexes.
#[test]
fn hybrid_retrieval_keeps_its_vectors_in_postgres() -> Result<()> {
    let t = Target::new(Store::Postgres);
    // A lexical worker indexes first: no vectors.
    let lexical = Memory::open(quick(&t))?;
    lexical
        .save(SaveRequest::new(
            "u",
            "food",
            "favourite",
            "loves tomatoes in every salad",
        ))?
        .wait_indexed()?;
    // (`tomatos` would be found: it stems as `tomatoes` does.)
    assert!(
        lexical.search("u", "tomattoes", None, 5)?.is_empty(),
        "a typo is no word"
    );
    lexical.shutdown_blocking()?;
    assert_eq!(t.query_i64("SELECT count(*) FROM vectors"), 0);
    let hybrid = Memory::open(Config {
        retrieval: mnemo::Retrieval::Hybrid,
        ..quick(&t)
    })?;
    hybrid
        .save(SaveRequest::new(
            "u",
            "pets",
            "cat",
            "has a ginger cat called Biryani",
        ))?
        .wait_indexed()?;
    assert_eq!(
        t.query_i64("SELECT count(*) FROM vectors"),
        2,
        "both rows have vectors"
    );
    let hits = hybrid.search("u", "tomattoes salads", None, 5)?;
    assert_eq!(
        hits.first().map(|h| h.record.key.as_str()),
        Some("favourite")
    );
    hybrid.forget("u", "pets", "cat")?.wait_indexed()?;
    assert_eq!(
        t.query_i64("SELECT count(*) FROM vectors"),
        1,
        "a forgotten row loses its vector"
    );
    hybrid.shutdown_blocking()
}
