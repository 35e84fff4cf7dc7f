//! The batcher's rules over the debounce window, on tokio's paused clock.
//!
//! Each test runs the engine inside a paused actix system, so the 500 ms
//! quiet window and the 2 s max wait pass instantly and in a fixed order.
//! Which batch a save landed in is read from its outcome: saves of one key in
//! one batch coalesce (all but the last resolve `Superseded`), saves in
//! different batches each write a version.

mod common;

use std::time::Duration;

use common::{config, paused_system, query_i64, temp_db};
use mnemo::{Memory, Result, SaveRequest, WriteOutcome};
use tokio::time::{sleep, Instant};

fn save(memory: &Memory, key: &str, value: &str) -> mnemo::Receipt {
    memory
        .save(SaveRequest::new("user", "facts", key, value))
        .expect("save accepted")
}

#[test]
fn a_burst_closer_than_the_window_is_one_transaction() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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
    assert_eq!(query_i64(&db.path, "SELECT count(*) FROM memories"), 200);
    Ok(())
}

#[test]
fn every_save_restarts_the_quiet_window() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn a_steady_stream_still_flushes_by_the_max_wait() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn reaching_max_batch_flushes_at_once() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let mut c = config(&db);
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

#[test]
fn max_batch_bytes_flushes_at_once() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let mut c = config(&db);
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

#[test]
fn same_key_in_one_batch_writes_one_row_and_every_receipt_resolves() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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
    assert_eq!(query_i64(&db.path, "SELECT count(*) FROM memories"), 1);
    assert_eq!(query_i64(&db.path, "SELECT version FROM memories"), 1);
    Ok(())
}

#[test]
fn saving_an_identical_value_again_is_a_no_op() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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

#[test]
fn saves_during_a_flush_form_the_next_batch_in_order() -> Result<()> {
    let db = temp_db();
    // Create the schema first so that the blocker can lock it.
    drop(mnemo::Memory::open(config(&db))?);

    // Another connection holds the write lock for a while, so the first
    // flush stays in flight (the writer retries on busy).
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let blocker_path = db.path.clone();
    let blocker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(blocker_path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();

    paused_system().block_on(async {
        let memory = Memory::open(config(&db))?;
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
        memory.shutdown().await
    })?;
    blocker.join().unwrap();
    Ok(())
}

#[test]
fn flush_message_flushes_without_waiting_for_the_window() -> Result<()> {
    let db = temp_db();
    paused_system().block_on(async {
        let memory = Memory::open(common::config_never_flushing(&db))?;
        let r = save(&memory, "k", "v");
        let start = Instant::now();
        memory.flush();
        r.durable().await?;
        assert!(start.elapsed() < Duration::from_secs(1));
        memory.shutdown().await
    })
}
