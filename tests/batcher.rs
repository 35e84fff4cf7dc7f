//! The batcher's rules over the debounce window, on tokio's paused clock.
//!
//! Each test runs the engine inside a paused actix system, so the 500 ms
//! quiet window and the 2 s max wait pass instantly and in a fixed order.
//! Which batch a save landed in is read from its outcome: saves of one key in
//! one batch coalesce (all but the last resolve `Superseded`), saves in
//! different batches each write a version.
//!
//! Each test runs one body on both stores (`name::sqlite`, `name::postgres`,
//! see `common::both_stores!`): the batcher is the same code on both.

mod common;

use std::time::Duration;

use common::{paused_system, Store, Target};
use mnemo::{Memory, Result, SaveRequest, WriteOutcome};
use tokio::time::{sleep, Instant};

fn save(memory: &Memory, key: &str, value: &str) -> mnemo::Receipt {
    memory
        .save(SaveRequest::new("user", "facts", key, value))
        .expect("save accepted")
}

both_stores!(a_burst_closer_than_the_window_is_one_transaction);

fn a_burst_closer_than_the_window_is_one_transaction(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        let start = Instant::now();
        let receipts: Vec<_> = (0..200)
            .map(|i| save(&memory, &format!("k{i}"), &format!("value {i}")))
            .collect();
        for r in &receipts {
            assert_eq!(r.durable().await?, WriteOutcome::Inserted { version: 1 });
        }
        // the flush waited for the quiet window
        assert!(start.elapsed() >= Duration::from_millis(500));
        let stats = memory.stats();
        assert_eq!(stats.batches, 1, "{stats:?}");
        assert_eq!(stats.batch_size.max, 200.0);
        assert_eq!(stats.committed, 200);
        memory.shutdown().await
    })?;
    assert_eq!(t.query_i64("SELECT count(*) FROM memories"), 200);
    Ok(())
}

both_stores!(every_save_restarts_the_quiet_window);

fn every_save_restarts_the_quiet_window(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        // 0, 400, 800 ms: each save lands inside the window the previous one
        // restarted, so all three are one batch.
        let a = save(&memory, "mood", "happy");
        sleep(Duration::from_millis(400)).await;
        let b = save(&memory, "mood", "tired");
        sleep(Duration::from_millis(400)).await;
        let c = save(&memory, "mood", "hungry");
        assert_eq!(memory.stats().batches, 0, "nothing flushed at 800 ms");
        assert_eq!(
            a.durable().await?,
            WriteOutcome::Superseded { by_seq: c.seq() }
        );
        assert_eq!(
            b.durable().await?,
            WriteOutcome::Superseded { by_seq: c.seq() }
        );
        assert_eq!(c.durable().await?, WriteOutcome::Inserted { version: 1 });
        // a save after a full quiet window starts a new batch
        sleep(Duration::from_millis(600)).await;
        let d = save(&memory, "mood", "calm");
        assert_eq!(d.durable().await?, WriteOutcome::Updated { version: 2 });
        assert_eq!(memory.stats().batches, 2);
        assert_eq!(memory.stats().coalesced, 2);
        memory.shutdown().await
    })
}

both_stores!(a_steady_stream_still_flushes_by_the_max_wait);

fn a_steady_stream_still_flushes_by_the_max_wait(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        // One save every 400 ms for 3.6 s: the quiet window (500 ms) never
        // elapses, so only the max wait (2 s) can cut the stream.
        let mut receipts = Vec::new();
        for i in 0..10 {
            receipts.push(save(&memory, "topic", &format!("turn {i}")));
            sleep(Duration::from_millis(400)).await;
        }
        let first = receipts[0].durable().await?;
        let WriteOutcome::Superseded { by_seq } = first else {
            panic!("expected the first save to be coalesced, got {first:?}");
        };
        let last = receipts.last().unwrap();
        assert!(
            by_seq < last.seq(),
            "the first batch was cut by the max wait, before the last save"
        );
        // saves up to 1.6 s are certainly in the first batch
        assert!(by_seq >= receipts[4].seq());
        assert_eq!(last.durable().await?, WriteOutcome::Updated { version: 2 });
        assert_eq!(memory.stats().batches, 2);
        memory.shutdown().await
    })
}

both_stores!(reaching_max_batch_flushes_at_once);

fn reaching_max_batch_flushes_at_once(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let mut c = t.config();
        c.max_batch = 10;
        let memory = Memory::open(c)?;
        let start = Instant::now();
        let receipts: Vec<_> = (0..25)
            .map(|i| save(&memory, &format!("k{i}"), "v"))
            .collect();
        receipts[0].durable().await?;
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "a full batch does not wait for the quiet window"
        );
        for r in &receipts {
            r.durable().await?;
        }
        let stats = memory.stats();
        assert_eq!(stats.batches, 3, "{stats:?}");
        assert_eq!(stats.batch_size.max, 10.0);
        memory.shutdown().await
    })
}

both_stores!(max_batch_bytes_flushes_at_once);

fn max_batch_bytes_flushes_at_once(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let mut c = t.config();
        c.max_batch_bytes = 64 * 1024;
        let memory = Memory::open(c)?;
        let big = "x".repeat(30 * 1024);
        let receipts: Vec<_> = (0..4)
            .map(|i| save(&memory, &format!("k{i}"), &big))
            .collect();
        for r in &receipts {
            r.durable().await?;
        }
        assert_eq!(memory.stats().batches, 2, "two 30 KiB values fit in 64 KiB");
        memory.shutdown().await
    })
}

both_stores!(same_key_in_one_batch_writes_one_row_and_every_receipt_resolves);

fn same_key_in_one_batch_writes_one_row_and_every_receipt_resolves(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        let receipts: Vec<_> = (0..5)
            .map(|i| save(&memory, "city", &format!("city {i}")))
            .collect();
        let last = receipts[4].seq();
        for r in &receipts[..4] {
            assert_eq!(
                r.indexed().await?,
                WriteOutcome::Superseded { by_seq: last }
            );
        }
        assert_eq!(
            receipts[4].indexed().await?,
            WriteOutcome::Inserted { version: 1 }
        );
        let got = memory.get("user", "facts", "city")?.unwrap();
        assert_eq!((got.value.as_str(), got.version), ("city 4", Some(1)));
        memory.shutdown().await
    })?;
    assert_eq!(t.query_i64("SELECT count(*) FROM memories"), 1);
    assert_eq!(t.query_i64("SELECT version FROM memories"), 1);
    Ok(())
}

both_stores!(saving_an_identical_value_again_is_a_no_op);

fn saving_an_identical_value_again_is_a_no_op(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        let first = save(&memory, "name", "Ayesha");
        assert_eq!(
            first.indexed().await?,
            WriteOutcome::Inserted { version: 1 }
        );
        let change = memory.stats().committed_change;
        let watermark = memory.stats().index_watermark;

        let again = save(&memory, "name", "Ayesha");
        assert_eq!(
            again.durable().await?,
            WriteOutcome::Unchanged { version: 1 }
        );
        again.indexed().await?;
        let stats = memory.stats();
        assert_eq!(stats.unchanged, 1);
        assert_eq!(stats.committed_change, change, "no new version");
        assert_eq!(stats.index_watermark, watermark, "no re-index");
        assert_eq!(
            memory.get("user", "facts", "name")?.unwrap().version,
            Some(1)
        );
        memory.shutdown().await
    })
}

both_stores!(saves_during_a_flush_form_the_next_batch_in_order);

fn saves_during_a_flush_form_the_next_batch_in_order(t: &Target) -> Result<()> {
    let blocker = paused_system().block_on(async {
        let memory = Memory::open(t.config())?;
        // Another connection holds the write lock for a while, so the first
        // flush stays in flight (the writer retries on busy, or waits for
        // the lock).
        let blocker = hold_the_write_lock(t, Duration::from_millis(300));
        let v1 = save(&memory, "plan", "v1");
        let other1 = save(&memory, "a", "1");
        // the quiet window ends at 500 ms: the flush starts and blocks
        sleep(Duration::from_millis(600)).await;
        assert!(matches!(v1.status(), mnemo::ReceiptStatus::Accepted));
        let v2 = save(&memory, "plan", "v2");
        let other2 = save(&memory, "b", "2");
        // readers see the newest save while the older one is in flight
        assert_eq!(memory.get("user", "facts", "plan")?.unwrap().value, "v2");

        assert_eq!(v1.durable().await?, WriteOutcome::Inserted { version: 1 });
        assert_eq!(
            other1.durable().await?,
            WriteOutcome::Inserted { version: 1 }
        );
        assert_eq!(v2.durable().await?, WriteOutcome::Updated { version: 2 });
        assert_eq!(
            other2.durable().await?,
            WriteOutcome::Inserted { version: 1 }
        );
        assert_eq!(memory.stats().batches, 2);
        let got = memory.get("user", "facts", "plan")?.unwrap();
        assert_eq!((got.value.as_str(), got.version), ("v2", Some(2)));
        memory.shutdown().await?;
        Ok::<_, mnemo::Error>(blocker)
    })?;
    blocker.join().unwrap();
    Ok(())
}

/// Takes the store's write lock on another connection, returns once it is
/// held, and releases it `hold` later (join the handle). SQLite: `BEGIN
/// IMMEDIATE` on the file. PostgreSQL: `LOCK TABLE … IN EXCLUSIVE MODE` on
/// `mnemo.memories`, which blocks writes to it, not reads.
fn hold_the_write_lock(t: &Target, hold: Duration) -> std::thread::JoinHandle<()> {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let store = t.store;
    let location = t.location();
    let blocker = std::thread::spawn(move || match store {
        Store::Sqlite => {
            let conn = rusqlite::Connection::open(location).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(hold);
            conn.execute_batch("ROLLBACK").unwrap();
        }
        Store::Postgres => {
            let url = location.to_str().expect("a URL").to_owned();
            let mut client = common::pg::client(&url);
            client
                .batch_execute("BEGIN; LOCK TABLE mnemo.memories IN EXCLUSIVE MODE")
                .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(hold);
            client.batch_execute("ROLLBACK").unwrap();
        }
    });
    locked_rx.recv().expect("the blocker took the lock");
    blocker
}

both_stores!(flush_message_flushes_without_waiting_for_the_window);

fn flush_message_flushes_without_waiting_for_the_window(t: &Target) -> Result<()> {
    paused_system().block_on(async {
        let memory = Memory::open(t.config_never_flushing())?;
        let r = save(&memory, "k", "v");
        let start = Instant::now();
        memory.flush();
        r.durable().await?;
        assert!(start.elapsed() < Duration::from_secs(1));
        memory.shutdown().await
    })
}
