//! `mnemo`: the command line.
//!
//! - `mnemo demo`: a simulated agent turn on the embedded default database.
//! - `mnemo save | get | list | search | forget | stats`: one-shot commands on
//!   a database (`--db`, default `./mnemo.db`), text or `--json` output.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mnemo::{Config, Memory, SaveRequest};

mod mcp;

#[derive(Parser)]
#[command(
    name = "mnemo",
    version,
    about = "Long-term memory for LLM agents that never makes them wait."
)]
struct Cli {
    /// The SQLite database file (created if missing).
    #[arg(long, global = true, default_value = "mnemo.db")]
    db: PathBuf,
    /// Whose memories to use.
    #[arg(long, global = true, default_value = "default")]
    namespace: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A simulated agent turn: two saves, the time each blocked the agent,
    /// the background flush, then get and search.
    Demo,
    /// Save a memory and wait until it is durable.
    Save {
        category: String,
        key: String,
        value: String,
        /// A JSON object stored beside the value.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Print one memory.
    Get { category: String, key: String },
    /// List memories, optionally of one category.
    List { category: Option<String> },
    /// Search memories.
    Search {
        query: String,
        #[arg(long)]
        category: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Forget a memory and wait until it is durable.
    Forget { category: String, key: String },
    /// Counters of the database.
    Stats,
    /// Run an MCP server over stdio backed by this database.
    Mcp,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let quiet = !matches!(cli.command, Command::Demo);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if quiet { "error" } else { "warn" })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

fn open(db: &PathBuf) -> Result<Memory> {
    Memory::open(Config::new(db)).with_context(|| format!("opening {}", db.display()))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let ns = cli.namespace.as_str();
    match cli.command {
        Command::Demo => demo(&cli.db).await,
        Command::Mcp => mcp::serve(&cli.db, ns).await,
        Command::Save {
            category,
            key,
            value,
            metadata,
        } => {
            let memory = open(&cli.db)?;
            let mut req = SaveRequest::new(ns, category, key, value);
            if let Some(m) = metadata {
                req = req.with_metadata_json(&m)?;
            }
            let receipt = memory.save(req)?;
            memory.flush();
            let outcome = receipt.durable().await?;
            memory.shutdown().await?;
            if cli.json {
                print_json(&serde_json::json!({"seq": receipt.seq(), "outcome": outcome}))
            } else {
                println!("saved (seq {}): {outcome:?}", receipt.seq());
                Ok(())
            }
        }
        Command::Get { category, key } => {
            let memory = open(&cli.db)?;
            let got = memory.get(ns, &category, &key)?;
            memory.shutdown().await?;
            match (got, cli.json) {
                (Some(r), true) => print_json(&r),
                (Some(r), false) => {
                    println!("{}", r.value);
                    Ok(())
                }
                (None, _) => anyhow::bail!("no memory {category}/{key} in namespace {ns}"),
            }
        }
        Command::List { category } => {
            let memory = open(&cli.db)?;
            let rows = memory.list(ns, category.as_deref())?;
            memory.shutdown().await?;
            if cli.json {
                return print_json(&rows);
            }
            for r in rows {
                println!("{}/{}: {}", r.category, r.key, r.value);
            }
            Ok(())
        }
        Command::Search {
            query,
            category,
            limit,
        } => {
            let memory = open(&cli.db)?;
            let hits = memory.search(ns, &query, category.as_deref(), limit)?;
            memory.shutdown().await?;
            if cli.json {
                return print_json(&hits);
            }
            for h in hits {
                println!(
                    "{:>7.3}  {}/{}: {}",
                    h.score, h.record.category, h.record.key, h.record.value
                );
            }
            Ok(())
        }
        Command::Forget { category, key } => {
            let memory = open(&cli.db)?;
            let receipt = memory.forget(ns, &category, &key)?;
            memory.flush();
            let outcome = receipt.durable().await?;
            memory.shutdown().await?;
            if cli.json {
                print_json(&serde_json::json!({"seq": receipt.seq(), "outcome": outcome}))
            } else {
                println!("forgot (seq {}): {outcome:?}", receipt.seq());
                Ok(())
            }
        }
        Command::Stats => {
            let memory = open(&cli.db)?;
            let (rows, dead) = memory.counts()?;
            let stats = memory.stats();
            memory.shutdown().await?;
            if cli.json {
                print_json(&serde_json::json!({
                    "memories": rows,
                    "dead_letters": dead,
                    "index_watermark": stats.index_watermark,
                    "committed_change": stats.committed_change,
                }))
            } else {
                println!("memories:        {rows}");
                println!("dead letters:    {dead}");
                println!("last change:     {}", stats.committed_change);
                println!("index watermark: {}", stats.index_watermark);
                Ok(())
            }
        }
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The guided tour: one user turn, two memories.
async fn demo(db: &PathBuf) -> Result<()> {
    let ns = "demo-user";
    println!("mnemo demo — database: {}\n", db.display());
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
/// then indexing), measured on a scratch database beside the system temp dir.
fn awaited_save_cost() -> Result<Duration> {
    let dir = tempfile_dir()?;
    let mut store =
        mnemo::baseline::AwaitedStore::open(&dir.join("awaited.db"), mnemo::Synchronous::Full)?;
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
    let _ = std::fs::remove_dir_all(&dir);
    Ok(times[times.len() / 2])
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("mnemo-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
