//! Engine configuration: a plain struct with documented defaults and a
//! validation step.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::journal::JournalSync;

/// SQLite's `synchronous` level for the database (WAL mode is always on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// No fsync. A power cut may lose the last commits (a process crash does not).
    Off,
    /// In WAL mode: fsync at checkpoints only. A power cut may roll back the
    /// last commits; the database stays consistent.
    Normal,
    /// fsync on every commit. With one commit per batch this costs one fsync
    /// per batch, not per save. The default.
    #[default]
    Full,
}

/// How [`Memory::search`](crate::Memory::search) finds memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Retrieval {
    /// Full-text only: FTS5 bm25 over normalised tokens (and the in-memory
    /// matcher for memories not indexed yet). No vectors are stored. The
    /// default.
    #[default]
    Lexical,
    /// Full-text and vector search, fused by their normalised scores (the
    /// vector side weighed by how much it stands out; `search/fusion.rs`).
    /// The indexer also embeds every memory with the built-in
    /// [`NgramEmbedder`](crate::embed::NgramEmbedder) (or the embedder given
    /// to [`Memory::open_with_embedder`](crate::Memory::open_with_embedder))
    /// and stores the vectors beside the FTS rows, in the same transaction.
    /// Finds plurals, typos and partial words that lexical matching misses.
    Hybrid,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// How [`Memory::open`](crate::Memory::open) sets up the engine.
///
/// Build it with `Config::new(path)` (or `Config::default()` for
/// `./mnemo.db`) and adjust fields; [`Config::validate`] runs on open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the memories live: an SQLite database file (created if
    /// missing), or a PostgreSQL connection URL (`postgres://user@host/db`
    /// or `postgresql://…`; unix sockets as `?host=/run/postgresql`).
    /// Default: `./mnemo.db`.
    pub path: PathBuf,
    /// Quiet window: a batch is flushed once no save arrived for this long.
    /// Every save restarts it. Default: 500 ms.
    pub quiet_window: Duration,
    /// Max wait: a batch is flushed at the latest this long after its first
    /// save, even if saves keep arriving. Default: 2 s.
    pub max_wait: Duration,
    /// A batch holding this many saves is flushed at once. Default: 1,000.
    pub max_batch: usize,
    /// A batch holding this many bytes of keys, values and metadata is flushed
    /// at once. Default: 4 MiB.
    pub max_batch_bytes: usize,
    /// Bound on saves accepted but not yet committed; past it `save` fails at
    /// once with [`Error::Overloaded`]. Default: 100,000.
    pub max_pending: usize,
    /// Bound on the bytes of those saves. Default: 256 MiB.
    pub max_pending_bytes: usize,
    /// Largest value accepted, in bytes. Default: 64 KiB.
    pub max_value_bytes: usize,
    /// Largest metadata JSON accepted, in bytes. Default: 16 KiB.
    pub max_metadata_bytes: usize,
    /// Largest namespace, category or key, in bytes. Default: 256.
    pub max_key_part_bytes: usize,
    /// SQLite `synchronous`. Default: [`Synchronous::Full`].
    pub synchronous: Synchronous,
    /// How long callers wait for a writer that cannot commit (the database
    /// is locked by another process, the disk is full, an I/O error
    /// repeats) before they stop waiting: [`Receipt::durable`] returns
    /// [`Error::NotCommittedYet`], and `shutdown` or dropping the engine
    /// stops trying and leaves the saves in the crash journal for the next
    /// open. The writer itself never gives up a save while the engine runs:
    /// it retries with backoff until the fault clears. Also bounds one
    /// indexing pass's retries (a failed pass is retried every second) and
    /// how long `open` waits for a locked database. Default: 30 s.
    ///
    /// [`Receipt::durable`]: crate::Receipt::durable
    pub busy_deadline: Duration,
    /// Read connections kept open for `get`, `list` and `search`. Default: 4.
    pub read_connections: usize,
    /// Append every accepted save to a crash journal before `save` returns,
    /// and replay orphaned journals on open. Off trades the crash guarantee
    /// for a slightly faster `save` (the fire-and-forget trade-off).
    /// Default: on.
    pub journal: bool,
    /// When the journal is forced to disk. Default: [`JournalSync::Never`]
    /// (survives process crashes, not power loss).
    pub journal_sync: JournalSync,
    /// Bytes per journal segment file. Each is reserved on disk in full when
    /// it is made (so a full disk is an [`Error::DiskFull`] from `save`,
    /// never a crash); the next one is made ahead of need. Must hold one
    /// largest save. Default: 8 MiB.
    pub journal_segment_bytes: usize,
    /// The folder of this process's crash journal (and of the journals of
    /// dead engines it replays). Default (`None`): beside an SQLite file,
    /// `<db>.journal/`; for PostgreSQL, on this machine's disk under
    /// `$XDG_STATE_HOME/mnemo/journals/<user@host_port_db>/` (or
    /// `~/.local/state/…`). Workers of one machine share the folder, so a
    /// restarted worker replays its dead predecessor's journal; see
    /// [`Config::journal_folder`].
    pub journal_dir: Option<PathBuf>,
    /// Lexical or hybrid (lexical + vector) retrieval. Default:
    /// [`Retrieval::Lexical`].
    pub retrieval: Retrieval,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::from("mnemo.db"),
            quiet_window: Duration::from_millis(500),
            max_wait: Duration::from_secs(2),
            max_batch: 1_000,
            max_batch_bytes: 4 * 1024 * 1024,
            max_pending: 100_000,
            max_pending_bytes: 256 * 1024 * 1024,
            max_value_bytes: 64 * 1024,
            max_metadata_bytes: 16 * 1024,
            max_key_part_bytes: 256,
            synchronous: Synchronous::Full,
            busy_deadline: Duration::from_secs(30),
            read_connections: 4,
            journal: true,
            journal_sync: JournalSync::Never,
            journal_segment_bytes: 8 * 1024 * 1024,
            journal_dir: None,
            retrieval: Retrieval::Lexical,
        }
    }
}

impl Config {
    /// The defaults, with the database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Config {
            path: path.into(),
            ..Config::default()
        }
    }

    /// [`Config::path`] as messages should show it: a PostgreSQL URL
    /// without its password.
    pub fn shown_path(&self) -> PathBuf {
        crate::store::shown_path(self)
    }

    /// The index file beside an SQLite database, `<path>-index`: the
    /// full-text index and the vectors, derived from the memories and
    /// rebuilt from them at open when missing or damaged (so it need not be
    /// backed up). `None` for PostgreSQL, which keeps them in its own tables.
    pub fn index_path(&self) -> Option<PathBuf> {
        match self.path.to_str() {
            Some(url) if crate::store::is_postgres_url(url) => None,
            _ => Some(crate::store::sqlite::index_path(&self.path)),
        }
    }

    /// The crash journal's folder: [`Config::journal_dir`] if set, else the
    /// default for the store (see there).
    pub fn journal_folder(&self) -> PathBuf {
        if let Some(dir) = &self.journal_dir {
            return dir.clone();
        }
        match self.path.to_str() {
            Some(url) if crate::store::is_postgres_url(url) => {
                let state = std::env::var_os("XDG_STATE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state"))
                    })
                    .unwrap_or_else(|| PathBuf::from("."));
                state.join("mnemo/journals").join(url_folder_name(url))
            }
            _ => crate::journal::dir_for(&self.path),
        }
    }

    /// Checks every field; returns [`Error::InvalidConfig`] naming the first
    /// one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::InvalidConfig(msg.to_owned()));
        if self.path.as_os_str().is_empty() {
            return bad("path must not be empty");
        }
        if self.quiet_window.is_zero() {
            return bad("quiet_window must be greater than zero");
        }
        if self.max_wait < self.quiet_window {
            return bad("max_wait must be at least quiet_window");
        }
        if self.max_batch == 0 || self.max_batch_bytes == 0 {
            return bad("max_batch and max_batch_bytes must be greater than zero");
        }
        if self.max_pending < self.max_batch {
            return bad("max_pending must be at least max_batch");
        }
        if self.max_value_bytes == 0 || self.max_key_part_bytes == 0 {
            return bad("max_value_bytes and max_key_part_bytes must be greater than zero");
        }
        if self.max_pending_bytes < self.max_value_bytes + self.max_metadata_bytes {
            return bad("max_pending_bytes must hold at least one largest save");
        }
        if self.busy_deadline.is_zero() {
            return bad("busy_deadline must be greater than zero");
        }
        if self.read_connections == 0 {
            return bad("read_connections must be at least 1");
        }
        // A record: framing and fixed fields (64 bytes is ample), three key
        // parts, the value and the metadata; plus the segment header.
        let largest =
            64 + 3 * self.max_key_part_bytes + self.max_value_bytes + self.max_metadata_bytes;
        if self.journal_segment_bytes < largest + 16 {
            return bad(&format!(
                "journal_segment_bytes must hold one largest save ({} bytes with these limits)",
                largest + 16
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let c = Config {
            max_wait: Duration::from_millis(10),
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("max_wait"), "{err}");

        let c = Config {
            max_batch: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());

        let c = Config {
            read_connections: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn config_deserialises_with_defaults() {
        let c: Config = serde_json::from_str(r#"{"max_batch": 10}"#).unwrap();
        assert_eq!(c.max_batch, 10);
        assert_eq!(c.quiet_window, Duration::from_millis(500));
        assert_eq!(c.retrieval, Retrieval::Lexical);
        let c: Config = serde_json::from_str(r#"{"retrieval": "hybrid"}"#).unwrap();
        assert_eq!(c.retrieval, Retrieval::Hybrid);
    }
}

/// A folder name for a PostgreSQL URL: user, host, port and database, with
/// the password and the query left out and anything but `[A-Za-z0-9._-@]`
/// replaced by `_`.
fn url_folder_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (auth, place) = rest.rsplit_once('@').map_or(("", rest), |(a, p)| (a, p));
    let user = auth.split(':').next().unwrap_or_default();
    let name = if user.is_empty() {
        place.to_owned()
    } else {
        format!("{user}@{place}")
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod journal_folder_tests {
    use super::*;

    #[test]
    fn a_postgres_journal_folder_names_the_server_and_never_the_password() {
        let c = Config::new("postgres://agent:s3cret@db.example:5433/memories?sslmode=disable");
        let dir = c.journal_folder();
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "agent@db.example_5433_memories");
        assert!(!dir.to_string_lossy().contains("s3cret"));
        assert!(dir.to_string_lossy().contains("mnemo/journals"));
        let c = Config {
            journal_dir: Some(PathBuf::from("/var/lib/agent/journal")),
            ..c
        };
        assert_eq!(c.journal_folder(), PathBuf::from("/var/lib/agent/journal"));
        assert_eq!(
            Config::new("/data/m.db").journal_folder(),
            PathBuf::from("/data/m.db.journal")
        );
    }
}
