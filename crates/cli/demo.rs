//! `mnemo demo`: the guided tour of one agent turn.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use mnemo::SaveRequest;

use crate::open;

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The guided tour: one user turn, two memories.
pub(crate) async fn run(db: &Path) -> Result<()> {
    let ns = "demo-user";
    println!(
        "mnemo demo — database: {}\n",
        mnemo::Config::new(db).shown_path().display()
    );
    let memory = open(db)?;

    println!("User (voice): «مجھے گانا اور لکھنا پسند ہے» — \"I like singing and writing\"");
    println!("The agent calls its memory tool twice in the middle of the turn:\n");
    let facts = [
        ("singing", "مجھے گانا پسند ہے — likes singing"),
        ("writing", "مجھے لکھنا پسند ہے — likes writing"),
    ];
    let turn = Instant::now();
    let mut receipts = Vec::new();
    for (key, value) in facts {
        let t = Instant::now();
        let receipt = memory.save(SaveRequest::new(ns, "hobbies", key, value))?;
        let blocked = t.elapsed();
        println!(
            "  store_memory(\"hobbies\", \"{key}\", …) returned in {:>10}   (seq {})",
            micros(blocked),
            receipt.seq()
        );
        receipts.push(receipt);
    }
    let reply_at = turn.elapsed();
    println!(
        "\nThe agent starts its reply {} after the first tool call.",
        micros(reply_at)
    );

    let got = memory.get(ns, "hobbies", "singing")?;
    println!(
        "Read-your-writes, before any commit: get(hobbies/singing) = {:?} (version {:?})",
        got.as_ref().map(|r| r.value.as_str()),
        got.as_ref().and_then(|r| r.version)
    );

    println!("\nIn the background the batcher waits for a quiet 500 ms, then commits both in one transaction…");
    for r in &receipts {
        r.durable().await?;
    }
    println!(
        "  durable after {}; batches committed: {}",
        millis(turn.elapsed()),
        memory.stats().batches
    );
    for r in &receipts {
        r.indexed().await?;
    }
    println!("  indexed after {}", millis(turn.elapsed()));

    let awaited = awaited_save_cost()?;
    println!(
        "\nFor comparison, the usual tool on this machine (await a transaction, then indexing):"
    );
    println!(
        "  one awaited save blocks for {} (median of 5); two saves ≈ {} of silence.",
        millis(awaited),
        millis(awaited * 2)
    );

    println!("\nRecall later in the conversation:");
    for query in ["گانا", "writing", "لکھنا پسند"] {
        let hits = memory.search(ns, query, None, 5)?;
        println!("  search({query:?}) →");
        for h in hits {
            println!(
                "      {}/{}: {}",
                h.record.category, h.record.key, h.record.value
            );
        }
    }
    let stats = memory.stats();
    memory.shutdown().await?;
    println!(
        "\nDone: {} saves accepted, {} committed in {} batch(es), index watermark {}.",
        stats.accepted, stats.committed, stats.batches, stats.index_watermark
    );
    Ok(())
}

/// Median time of an awaited save (own transaction with `synchronous=FULL`,
/// then indexing), measured on a scratch database in the system temp dir.
fn awaited_save_cost() -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let mut store = mnemo::baseline::AwaitedStore::open(
        &dir.path().join("awaited.db"),
        mnemo::Synchronous::Full,
    )?;
    let mut times: Vec<Duration> = (0..5)
        .map(|i| {
            let t = Instant::now();
            store
                .save(SaveRequest::new(
                    "u",
                    "hobbies",
                    format!("k{i}"),
                    "likes singing",
                ))
                .map(|_| t.elapsed())
        })
        .collect::<mnemo::Result<_>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}
