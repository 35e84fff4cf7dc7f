//! `mnemo`: the command line.
//!
//! - `mnemo demo`: a simulated agent turn on the embedded default database.
//! - `mnemo save | get | list | search | forget | stats`: one-shot commands on
//!   a database (`--db`, default `./mnemo.db`; `--namespace`, default
//!   `default`), readable text or `--json` output.
//! - `mnemo export | import`: JSON Lines, one memory a line.
//! - `mnemo bench`: save-call latency and a burst against awaited saves.
//! - `mnemo mcp`: an MCP server over stdio.
//!
//! Errors print one `error: …` line on stderr and exit with status 1 (clap's
//! own usage errors exit with 2).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mnemo::{Config, Memory, SaveRequest, WriteOutcome};

mod bench;
mod demo;
mod mcp;
mod transfer;

/// The namespace used when `--namespace` is not given.
const DEFAULT_NAMESPACE: &str = "default";

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
    /// Whose memories to use [default: default]. `export` exports every
    /// namespace unless this is given.
    #[arg(long, global = true)]
    namespace: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// How `search` ranks: bm25 alone, or fused with a vector ranking.
    #[arg(long, global = true, value_enum, default_value_t = RetrievalArg::Lexical)]
    retrieval: RetrievalArg,
    /// With `--retrieval minilm`: the model's directory [default:
    /// $MNEMO_MINILM_DIR, else models/all-MiniLM-L6-v2]; fill it with
    /// scripts/fetch-minilm.sh.
    #[arg(long, global = true)]
    model_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `--retrieval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RetrievalArg {
    /// FTS5 bm25 over the normalised text (the default).
    Lexical,
    /// bm25 fused with the built-in hashed n-gram vectors (no model).
    Hybrid,
    /// bm25 fused with all-MiniLM-L6-v2 vectors (English; needs a build
    /// with `--features minilm` and the model).
    Minilm,
}

/// The retrieval choice of this run, set once from the command line before
/// any engine opens.
static RETRIEVAL: std::sync::OnceLock<(RetrievalArg, Option<PathBuf>)> = std::sync::OnceLock::new();

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
    /// Print one memory (exit status 1 if there is none).
    Get { category: String, key: String },
    /// List memories, optionally of one category.
    List { category: Option<String> },
    /// Search memories.
    Search {
        query: String,
        #[arg(long)]
        category: Option<String>,
        /// At most this many hits (1–1000).
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Forget a memory and wait until it is durable.
    Forget { category: String, key: String },
    /// The engine's counters for the database, and its journal on disk.
    Stats,
    /// Write memories as JSON Lines to stdout: every namespace, or only
    /// `--namespace` if given.
    Export,
    /// Read memories as JSON Lines (as `export` writes them) and save each
    /// through the batcher; waits until all are durable.
    ///
    /// Each line is an object with `namespace`, `category`, `key`, `value`
    /// and optionally `metadata` (an object or null). A line without
    /// `namespace` goes to `--namespace` (default `default`). Blank lines are
    /// skipped. At the first bad line the import stops with its line number;
    /// nothing of that line is written, the lines before it are.
    Import {
        /// A JSON Lines file, or `-` for standard input.
        input: PathBuf,
        /// Bound on pending saves (for testing backpressure).
        #[arg(long, hide = true)]
        max_pending: Option<usize>,
    },
    /// Measure, on scratch databases: how long `save` blocks its caller, and
    /// a burst of saves through the batcher against the same saves each
    /// awaited in its own transaction.
    Bench(bench::Args),
    /// Run an MCP server over stdio backed by this database.
    Mcp,
}

fn main() -> ExitCode {
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
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    if cli.model_dir.is_some() && cli.retrieval != RetrievalArg::Minilm {
        anyhow::bail!("--model-dir is for --retrieval minilm");
    }
    let _ = RETRIEVAL.set((cli.retrieval, cli.model_dir.clone()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

pub(crate) fn open(db: &Path) -> Result<Memory> {
    open_with(Config::new(db))
}

/// Opens an engine with `config` and the command line's `--retrieval`.
pub(crate) fn open_with(mut config: Config) -> Result<Memory> {
    let path = config.path.clone();
    let (retrieval, model_dir) = RETRIEVAL
        .get()
        .cloned()
        .unwrap_or((RetrievalArg::Lexical, None));
    let opened = match retrieval {
        RetrievalArg::Lexical => Memory::open(config),
        RetrievalArg::Hybrid => {
            config.retrieval = mnemo::Retrieval::Hybrid;
            Memory::open(config)
        }
        RetrievalArg::Minilm => {
            config.retrieval = mnemo::Retrieval::Hybrid;
            Memory::open_with_embedder(config, minilm(model_dir)?)
        }
    };
    opened.with_context(|| format!("opening {}", path.display()))
}

#[cfg(feature = "minilm")]
fn minilm(dir: Option<PathBuf>) -> Result<std::sync::Arc<dyn mnemo::Embedder>> {
    let model = match dir {
        Some(dir) => mnemo::MiniLmEmbedder::from_dir(dir),
        None => mnemo::MiniLmEmbedder::from_env(),
    };
    Ok(std::sync::Arc::new(model.context("loading MiniLM")?))
}

#[cfg(not(feature = "minilm"))]
fn minilm(_: Option<PathBuf>) -> Result<std::sync::Arc<dyn mnemo::Embedder>> {
    anyhow::bail!(
        "--retrieval minilm needs a build with the minilm feature: cargo run --release --features minilm -- …"
    )
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A write outcome in words.
pub(crate) fn describe(outcome: &WriteOutcome) -> String {
    match outcome {
        WriteOutcome::Inserted { version } => format!("inserted (version {version})"),
        WriteOutcome::Updated { version } => format!("updated (version {version})"),
        WriteOutcome::Unchanged { version } => {
            format!("unchanged (version {version} already holds this value)")
        }
        WriteOutcome::Deleted { version } => format!("forgotten (version {version})"),
        WriteOutcome::NotFound => "nothing to forget (no such memory)".to_owned(),
        WriteOutcome::Superseded { by_seq } => format!("superseded by save {by_seq}"),
        other => format!("{other:?}"),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let explicit_ns = cli.namespace.clone();
    let ns = cli.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    match cli.command {
        Command::Demo => demo::run(&cli.db).await,
        Command::Mcp => mcp::serve(&cli.db, ns).await,
        // On a plain thread: the benchmark blocks on receipts, and the
        // engines it opens run their own actix systems.
        Command::Bench(args) => {
            let json = cli.json;
            tokio::task::spawn_blocking(move || bench::run(&args, json)).await?
        }
        Command::Export => transfer::export(&cli.db, explicit_ns.as_deref()).await,
        Command::Import { input, max_pending } => {
            transfer::import(&cli.db, ns, &input, max_pending, cli.json).await
        }
        Command::Save {
            category,
            key,
            value,
            metadata,
        } => {
            let mut req = SaveRequest::new(ns, category.clone(), key.clone(), value);
            if let Some(m) = metadata {
                req = req.with_metadata_json(&m)?;
            }
            let memory = open(&cli.db)?;
            let saved = memory.save(req);
            // Whatever happened, stop the engine cleanly (it flushes).
            let outcome = match saved {
                Ok(receipt) => {
                    memory.flush();
                    let outcome = receipt.durable().await;
                    outcome.map(|o| (receipt.seq(), o))
                }
                Err(e) => Err(e),
            };
            memory.shutdown().await?;
            let (seq, outcome) = outcome?;
            if cli.json {
                print_json(&serde_json::json!({"seq": seq, "outcome": outcome}))
            } else {
                println!("saved {category}/{key}: {}", describe(&outcome));
                Ok(())
            }
        }
        Command::Get { category, key } => {
            let memory = open(&cli.db)?;
            let got = memory.get(ns, &category, &key);
            memory.shutdown().await?;
            match (got?, cli.json) {
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
            let rows = memory.list(ns, category.as_deref());
            memory.shutdown().await?;
            let rows = rows?;
            if cli.json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                println!("no memories in namespace {ns}");
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
            let hits = memory.search(ns, &query, category.as_deref(), limit);
            memory.shutdown().await?;
            let hits = hits?;
            if cli.json {
                return print_json(&hits);
            }
            if hits.is_empty() {
                println!("no memory in namespace {ns} matches {query:?}");
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
            let outcome = match memory.forget(ns, &category, &key) {
                Ok(receipt) => {
                    memory.flush();
                    let outcome = receipt.durable().await;
                    outcome.map(|o| (receipt.seq(), o))
                }
                Err(e) => Err(e),
            };
            memory.shutdown().await?;
            let (seq, outcome) = outcome?;
            if cli.json {
                print_json(&serde_json::json!({"seq": seq, "outcome": outcome}))
            } else {
                println!("forget {category}/{key}: {}", describe(&outcome));
                Ok(())
            }
        }
        Command::Stats => stats(&cli.db, cli.json).await,
    }
}

/// Files and bytes under a folder (not following links); zero if missing.
pub(crate) fn folder_size(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

/// The journal folder beside a database (the library's layout:
/// `<db>.journal/`).
fn journal_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".journal");
    db.with_file_name(name)
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `mnemo stats`: the journal folder as found (at rest), then the engine's
/// counters after opening (which replays journals of engines that died).
async fn stats(db: &Path, json: bool) -> Result<()> {
    let jdir = journal_dir(db);
    let (files_before, bytes_before) =
        folder_size(&jdir).with_context(|| format!("reading {}", jdir.display()))?;
    let memory = open(db)?;
    let counts = memory.counts();
    let stats = memory.stats();
    memory.shutdown().await?;
    let (rows, dead) = counts?;
    let (files_after, bytes_after) =
        folder_size(&jdir).with_context(|| format!("reading {}", jdir.display()))?;
    if json {
        return print_json(&serde_json::json!({
            "database": db,
            "memories": rows,
            "dead_letters": dead,
            "committed_change": stats.committed_change,
            "index_watermark": stats.index_watermark,
            "index_lag_changes": stats.index_lag_changes,
            "replayed_at_open": stats.replayed,
            "journal_bytes": stats.journal_bytes,
            "journal_dir": {
                "path": jdir,
                "files_at_rest": files_before,
                "bytes_at_rest": bytes_before,
                "files_after": files_after,
                "bytes_after": bytes_after,
            },
            "engine": stats,
        }));
    }
    println!("database:           {}", db.display());
    println!("memories:           {rows}");
    println!("dead letters:       {dead}");
    println!("last change:        {}", stats.committed_change);
    println!(
        "index watermark:    {} ({} changes behind)",
        stats.index_watermark, stats.index_lag_changes
    );
    println!(
        "journal on disk:    {} in {files_before} files at rest ({}), {} in {files_after} files after this command",
        mib(bytes_before),
        jdir.display(),
        mib(bytes_after)
    );
    println!(
        "journal (engine):   {} of segments held while open",
        mib(stats.journal_bytes)
    );
    println!(
        "replayed at open:   {} saves from journals of engines that stopped without flushing",
        stats.replayed
    );
    Ok(())
}
