//! The library's one error type.

use std::time::Duration;

/// Everything that can go wrong in mnemo.
///
/// Input errors (`InvalidInput`, `Overloaded`, `DiskFull`, `Closed`) are
/// returned by [`Memory::save`](crate::Memory::save) before anything is
/// accepted: they change nothing. Later news about an accepted save arrives
/// through [`Receipt::durable`](crate::Receipt::durable): `DeadLettered`
/// (the database rejected the row for its content: the one final failure)
/// or `NotCommittedYet` (a transient fault outlasted the wait; the save is
/// kept and still committed later).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of a request is malformed. `field` names it, `reason` says what
    /// to fix. Nothing was written.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field: `namespace`, `category`, `key`, `value`,
        /// `metadata` or `limit`.
        field: &'static str,
        /// What is wrong with it, in words an LLM can act on.
        reason: String,
    },

    /// Too many saves are waiting to be committed; retry shortly. Nothing was
    /// written. The bound is [`Config::max_pending`](crate::Config) /
    /// [`Config::max_pending_bytes`](crate::Config).
    #[error("overloaded: {pending} saves ({pending_bytes} bytes) are waiting to be committed; retry shortly")]
    Overloaded {
        /// Saves accepted but not yet committed.
        pending: usize,
        /// Their size in bytes.
        pending_bytes: usize,
    },

    /// The engine was shut down (or its actors have stopped).
    #[error("mnemo is shut down")]
    Closed,

    /// The save is accepted but not committed yet: the writer has been
    /// unable to commit for `waited` (the database is locked by another
    /// process, the disk is full, an I/O error repeats), longer than
    /// [`Config::busy_deadline`](crate::Config). **The save is not given
    /// up**: it stays in the crash journal and the pending overlay (reads see
    /// it), the writer keeps retrying for as long as the process lives, and
    /// whatever this process does not commit the next
    /// [`Memory::open`](crate::Memory::open) of the database replays. Only
    /// the wait ended.
    #[error("not committed yet after {waited:.1?} ({reason}); the save is kept and will be committed by this process or by the next open of the database")]
    NotCommittedYet {
        /// How long the writer has been failing.
        waited: Duration,
        /// What it keeps running into.
        reason: String,
    },

    /// The database rejected this one row (a constraint or trigger, say). The
    /// rest of its batch committed; the row is kept in the `dead_letters`
    /// table with this reason.
    #[error("the database rejected this save (kept in dead_letters): {reason}")]
    DeadLettered {
        /// SQLite's message.
        reason: String,
    },

    /// The save was not committed and is not kept: only with the crash
    /// journal off ([`Config::journal`](crate::Config) = `false`), when the
    /// engine stopped while its writer could not commit.
    #[error("the save was lost: {reason}")]
    WriteFailed {
        /// What failed.
        reason: String,
    },

    /// Committed, but the search index could not be brought up to date
    /// (returned by [`Memory::shutdown`](crate::Memory::shutdown) and
    /// [`Receipt::indexed`](crate::Receipt::indexed)). Nothing is lost: the
    /// memories are stored and readable with `get`/`list`, and the next
    /// indexing pass (or the next open) indexes them.
    #[error("committed but not indexed: {reason}; the next open indexes it")]
    NotIndexed {
        /// What the indexer ran into.
        reason: String,
    },

    /// There is no room on the device for the crash journal, so the save
    /// was refused: nothing was accepted. Free space and retry.
    #[error("disk full: no room for the crash journal in {path:?}; the save was not accepted")]
    DiskFull {
        /// The journal folder.
        path: std::path::PathBuf,
    },

    /// The database could not be opened as a mnemo database: an SQLite
    /// file that is not a database, is corrupt, is on a read-only file
    /// system or may not be written; a PostgreSQL server that is down,
    /// refuses the login, or refuses to create the schema. `reason` says
    /// which.
    #[error("cannot open the database {path:?}: {reason}")]
    Open {
        /// The database file, or the PostgreSQL URL without its password.
        path: std::path::PathBuf,
        /// What is wrong, in plain words.
        reason: String,
    },

    /// A [`Config`](crate::Config) value is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),

    /// SQLite failed outside the write path (opening, reading).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// PostgreSQL failed outside the write path (opening, reading). The
    /// text is the server's message (with its SQLSTATE) or the client's;
    /// it never holds the connection's password.
    #[error("postgres: {0}")]
    Postgres(String),

    /// A file system error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),

    /// An embedding model could not be loaded or run (a missing or
    /// malformed file, say).
    #[error("embedding model at {path:?}: {reason}")]
    Model {
        /// The model's directory (empty when the failure was not a file's).
        path: std::path::PathBuf,
        /// What is missing or malformed.
        reason: String,
    },

    /// Stored or supplied JSON could not be parsed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }
}

/// Why an accepted save was not committed. A cheap, cloneable form of the
/// write-failure variants of [`Error`], carried by receipts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Failure {
    /// See [`Error::DeadLettered`].
    DeadLettered {
        /// SQLite's message.
        reason: String,
    },
    /// See [`Error::WriteFailed`].
    WriteFailed {
        /// What failed.
        reason: String,
    },
    /// The engine stopped before the save could be committed.
    Closed,
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::DeadLettered { reason } => Error::DeadLettered { reason },
            Failure::WriteFailed { reason } => Error::WriteFailed { reason },
            Failure::Closed => Error::Closed,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&Error::from(self.clone()), f)
    }
}
