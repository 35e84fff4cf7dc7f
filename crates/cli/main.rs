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
//! Errors print one `error: …` line on stderr; the exit status says what
//! kind (1 failed, 2 usage, 3 journal damage found, 75 accepted but not
//! committed yet; see `status.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mnemo::{Config, Error, Memory, Receipt, ReceiptStatus, SaveRequest, WriteOutcome};

mod bench;
mod demo;
mod mcp;
mod status;
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
    /// The SQLite database file (created if missing), or a PostgreSQL URL
    /// such as postgres://user@127.0.0.1/agents.
    #[arg(long, global = true, default_value = "mnemo.db")]
    db: PathBuf,
    /// The crash journal's folder [default: beside an SQLite file
    /// (<db>.journal); for PostgreSQL, under ~/.local/state/mnemo/journals/].
    #[arg(long, global = true)]
    journal_dir: Option<PathBuf>,
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
    /// With `--retrieval minilm` or `e5`: the model's directory [default:
    /// $MNEMO_MINILM_DIR, else models/all-MiniLM-L6-v2; $MNEMO_E5_DIR, else
    /// models/multilingual-e5-small]; fill it with scripts/fetch-minilm.sh or
    /// scripts/fetch-e5.sh.
    #[arg(long, global = true)]
    model_dir: Option<PathBuf>,
    /// How long the writer may fail to commit before a waiting command
    /// gives up waiting, in milliseconds [default: 30000] (for tests).
    #[arg(long, global = true, hide = true)]
    busy_deadline_ms: Option<u64>,
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
    /// bm25 fused with multilingual-e5-small vectors (~100 languages; an
    /// English query finds an Urdu memory; needs a build with
    /// `--features e5` and the model).
    E5,
}

/// The retrieval choice of this run, set once from the command line before
/// any engine opens.
static RETRIEVAL: std::sync::OnceLock<(RetrievalArg, Option<PathBuf>)> = std::sync::OnceLock::new();
/// `--busy-deadline-ms`, set once before any engine opens.
static BUSY_DEADLINE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
/// `--journal-dir`, set once before any engine opens.
static JOURNAL_DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Command {
    /// A simulated agent turn: two saves, the time each blocked the agent,
    /// the background flush, then get and search.
    Demo,
    /// Save a memory and wait until it is durable. Exit status 75 if it is
    /// accepted but could not be committed in time (it is kept and the next
    /// open commits it).
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
    /// List memories, optionally of one category, by category and key, one
    /// page at a time. When more follow, the last line is `next cursor: C`;
    /// pass `--cursor C` for the next page.
    List {
        category: Option<String>,
        /// At most this many memories (1–1000) [default: 100].
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this cursor (the `next cursor` of the previous page).
        #[arg(long)]
        cursor: Option<String>,
    },
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
    // The server logs journal damage itself; it never exits over it.
    let serving = matches!(cli.command, Command::Mcp);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if quiet { "error" } else { "warn" })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = dispatch(cli);
    let damage = if serving {
        Vec::new()
    } else {
        status::journal_damage()
    };
    // After the command's own output and error, so it is the last word.
    let status = match &result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            status::status_of(e)
        }
    };
    for message in &damage {
        eprintln!("error: {message}");
    }
    match (status, damage.is_empty()) {
        (0, true) => ExitCode::SUCCESS,
        (0, false) => ExitCode::from(status::JOURNAL_DAMAGED),
        (failed, _) => ExitCode::from(failed),
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    if cli.model_dir.is_some() && !matches!(cli.retrieval, RetrievalArg::Minilm | RetrievalArg::E5)
    {
        anyhow::bail!("--model-dir is for --retrieval minilm or e5");
    }
    configure_fail_points();
    let _ = RETRIEVAL.set((cli.retrieval, cli.model_dir.clone()));
    if let Some(ms) = cli.busy_deadline_ms {
        let _ = BUSY_DEADLINE.set(Duration::from_millis(ms));
    }
    let _ = JOURNAL_DIR.set(cli.journal_dir.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(cli));
    // Do not wait for blocking tasks still running: a search the MCP client
    // cancelled, or a read of a stdin that is not a pipe. Everything that
    // must survive is committed (or journaled) by now.
    runtime.shutdown_background();
    result
}

/// Test hook: `MNEMO_FAILPOINTS="name=actions;…"` configures fail points
/// (`fail` crate syntax), such as a slow search or a failing commit, for the
/// tests of `mcp` and of the exit statuses.
/// They exist only in builds with `fail/failpoints` (the test builds), so
/// elsewhere this does nothing; a malformed entry is logged, never fatal.
fn configure_fail_points() {
    let Ok(spec) = std::env::var("MNEMO_FAILPOINTS") else {
        return;
    };
    for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
        let configured = match entry.split_once('=') {
            Some((name, actions)) => fail::cfg(name.trim(), actions.trim()),
            None => Err("expected name=actions".to_owned()),
        };
        if let Err(e) = configured {
            tracing::warn!(entry, error = %e, "MNEMO_FAILPOINTS");
        }
    }
}

pub(crate) fn open(db: &Path) -> Result<Memory> {
    open_with(config_for(db))
}

/// The engine's defaults for `db`, with the command line's `--journal-dir`.
pub(crate) fn config_for(db: &Path) -> Config {
    Config {
        journal_dir: JOURNAL_DIR.get().cloned().flatten(),
        ..Config::new(db)
    }
}

/// Opens an engine with `config` and the command line's `--retrieval`.
pub(crate) fn open_with(mut config: Config) -> Result<Memory> {
    let path = config.shown_path();
    if let Some(&deadline) = BUSY_DEADLINE.get() {
        config.busy_deadline = deadline;
    }
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
        RetrievalArg::E5 => {
            config.retrieval = mnemo::Retrieval::Hybrid;
            Memory::open_with_embedder(config, e5(model_dir)?)
        }
    };
    let memory = opened.with_context(|| format!("opening {}", path.display()))?;
    status::note_journal_damage(&path, &memory.stats());
    Ok(memory)
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

#[cfg(feature = "e5")]
fn e5(dir: Option<PathBuf>) -> Result<std::sync::Arc<dyn mnemo::Embedder>> {
    let model = match dir {
        Some(dir) => mnemo::E5Embedder::from_dir(dir),
        None => mnemo::E5Embedder::from_env(),
    };
    Ok(std::sync::Arc::new(
        model.context("loading multilingual-e5-small")?,
    ))
}

#[cfg(not(feature = "e5"))]
fn e5(_: Option<PathBuf>) -> Result<std::sync::Arc<dyn mnemo::Embedder>> {
    anyhow::bail!(
        "--retrieval e5 needs a build with the e5 feature (after scripts/fetch-e5.sh): cargo run --release --features e5 -- …"
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
            let what = format!("the save of {category}/{key}");
            let (seq, outcome) = settle(&memory, &cli.db, &what, saved).await?;
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
        Command::List {
            category,
            limit,
            cursor,
        } => {
            let memory = open(&cli.db)?;
            let page = memory.list_page(ns, category.as_deref(), limit, cursor.as_deref());
            memory.shutdown().await?;
            let page = page?;
            if cli.json {
                return print_json(&serde_json::json!({
                    "memories": page.records,
                    "next_cursor": page.next_cursor,
                }));
            }
            if page.records.is_empty() {
                match cursor {
                    None => println!("no memories in namespace {ns}"),
                    Some(_) => println!("no more memories in namespace {ns}"),
                }
            }
            for r in &page.records {
                println!("{}/{}: {}", r.category, r.key, r.value);
            }
            if let Some(next) = page.next_cursor {
                println!("next cursor: {next}");
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
            let forgot = memory.forget(ns, &category, &key);
            let what = format!("the forget of {category}/{key}");
            let (seq, outcome) = settle(&memory, &cli.db, &what, forgot).await?;
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

/// Waits until an accepted change (`what`, such as `the save of c/k`) is
/// committed, then stops the engine (which flushes). A change that is kept
/// but not committed even by the end of the shutdown is an [`status::Exit`]
/// with status 75.
async fn settle(
    memory: &Memory,
    db: &Path,
    what: &str,
    accepted: mnemo::Result<Receipt>,
) -> Result<(u64, WriteOutcome)> {
    let receipt = match accepted {
        Ok(receipt) => receipt,
        Err(e) => {
            // Refused at the door: nothing was accepted, nothing to wait for.
            if let Err(stop) = memory.shutdown().await {
                tracing::warn!(error = %stop, "stopping the engine");
            }
            return Err(anyhow::Error::new(e).context(format!("{what} failed")));
        }
    };
    memory.flush();
    let outcome = receipt.durable().await;
    // Stop the engine cleanly: it flushes, or leaves what it cannot commit
    // in the journal for the next open.
    let stopped = memory.shutdown().await;
    match outcome {
        Ok(outcome) => {
            stopped?;
            Ok((receipt.seq(), outcome))
        }
        Err(Error::NotCommittedYet { waited, reason }) => {
            // The wait ended, but the shutdown's own flush may have got it in.
            if let ReceiptStatus::Durable(o) | ReceiptStatus::Indexed(o) = receipt.status() {
                stopped?;
                return Ok((receipt.seq(), o));
            }
            if let Err(e) = stopped {
                tracing::debug!(error = %e, "stopping the engine");
            }
            Err(status::not_committed_yet(what, db, waited, &reason).into())
        }
        Err(e) => {
            if let Err(stop) = stopped {
                tracing::warn!(error = %stop, "stopping the engine");
            }
            Err(anyhow::Error::new(e).context(format!("{what} failed")))
        }
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

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `mnemo stats`: the journal folder as found (at rest), then the engine's
/// counters after opening (which replays journals of engines that died).
async fn stats(db: &Path, json: bool) -> Result<()> {
    let jdir = config_for(db).journal_folder();
    let shown = config_for(db).shown_path();
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
            "database": shown,
            "memories": rows,
            "dead_letters": dead,
            "committed_change": stats.committed_change,
            "index_watermark": stats.index_watermark,
            "index_lag_changes": stats.index_lag_changes,
            "replayed_at_open": stats.replayed,
            "journal_bytes": stats.journal_bytes,
            "writer_stalled_ms": stats.writer_stalled_ms,
            "writer_stall_reason": stats.writer_stall_reason,
            "write_retries": stats.write_retries,
            "index_failures": stats.index_failures,
            "index_error": stats.index_error,
            "journal_unrecovered": stats.journal_unrecovered,
            "journal_unrecovered_bytes": stats.journal_unrecovered_bytes,
            "journal_quarantined": stats.journal_quarantined,
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
    println!("database:           {}", shown.display());
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
    match &stats.writer_stall_reason {
        None => println!("writer:             committing normally"),
        Some(reason) => println!(
            "writer:             stalled for {} ms: {reason}",
            stats.writer_stalled_ms
        ),
    }
    println!(
        "write retries:      {} (commit attempts retried after a transient fault)",
        stats.write_retries
    );
    match &stats.index_error {
        None => println!(
            "index failures:     {} (failed indexing passes, retried)",
            stats.index_failures
        ),
        Some(error) => println!(
            "index failures:     {} (failed indexing passes, retried); the index is behind: {error}",
            stats.index_failures
        ),
    }
    if stats.journal_unrecovered == 0 {
        println!("journal damage:     none");
    } else {
        println!(
            "journal damage:     {} region(s), {} bytes, could not be replayed; moved aside: {}",
            stats.journal_unrecovered,
            stats.journal_unrecovered_bytes,
            stats
                .journal_quarantined
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
