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
//!   on open.
//! - `overlay`: the pending overlay that makes reads see unflushed saves.
//! - [`batcher`]: the [`MemoryBatcher`] actor: debounce, max wait, max batch,
//!   coalescing, one flush in flight.
//! - `writer`: the writer thread: runs a flush, settles receipts, hands
//!   results to the indexer.
//! - [`indexer`]: the [`RagIndexer`] actor: FTS5 index (and, in hybrid
//!   mode, the vectors) and its watermark.
//! - `store`: the store seam (a trait plus busy-retry); `sqlite`: the
//!   SQLite store: schema, batch upsert, dead letters, index steps, reads.
//! - [`text`]: normalisation and query building shared by index and reads.
//! - [`embed`]: the [`Embedder`] trait and the built-in [`NgramEmbedder`]
//!   (hashed word and character n-grams) for hybrid retrieval.
//! - `minilm` (cargo feature `minilm`): `MiniLmEmbedder`, the neural
//!   all-MiniLM-L6-v2 embedder run with candle (English only).
//! - [`stats`]: counters and summaries.
//! - [`error`]: [`Error`] and [`Result`].
//! - [`baseline`]: the usual design (await a transaction and an index step
//!   per save), kept for the demo and the benchmarks to compare against.

#![deny(missing_docs)]

pub mod baseline;
pub mod batcher;
pub mod config;
pub mod embed;
pub mod error;
pub mod indexer;
mod ingress;
pub mod journal;
pub mod memory;
#[cfg(feature = "minilm")]
pub mod minilm;
pub mod model;
mod overlay;
pub mod receipt;
mod sqlite;
pub mod stats;
mod store;
pub mod text;
mod writer;

pub use batcher::{Flush, ForgetMemory, MemoryBatcher, SaveMemory, Shutdown};
pub use config::{Config, Retrieval, Synchronous};
pub use embed::{Embedder, NgramEmbedder};
pub use error::{Error, Failure, Result};
pub use indexer::RagIndexer;
pub use journal::JournalSync;
pub use memory::Memory;
#[cfg(feature = "minilm")]
pub use minilm::MiniLmEmbedder;
pub use model::{MemoryRecord, SaveRequest, SearchHit, WriteOutcome};
pub use receipt::{Receipt, ReceiptStatus};
pub use stats::{Stats, Summary};
