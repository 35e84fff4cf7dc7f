//! The library's one error type.

use std::time::Duration;

/// Everything that can go wrong in mnemo.
///
/// Input errors (`InvalidInput`, `Overloaded`, `Closed`) are returned by
/// [`Memory::save`](crate::Memory::save) before anything is accepted: they
/// change nothing. Write failures (`Busy`, `DeadLettered`, `WriteFailed`)
/// arrive later, through [`Receipt::durable`](crate::Receipt::durable), for a
/// save that was accepted but could not be committed.
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

    /// The database stayed locked by another writer past the delivery
    /// deadline ([`Config::busy_deadline`](crate::Config)); the save was not
    /// committed.
    #[error("database stayed locked for {waited:?}; the save was not committed")]
    Busy {
        /// How long the writer kept retrying.
        waited: Duration,
    },

    /// The database rejected this one row (a constraint or trigger, say). The
    /// rest of its batch committed; the row is kept in the `dead_letters`
    /// table with this reason.
    #[error("the database rejected this save (kept in dead_letters): {reason}")]
    DeadLettered {
        /// SQLite's message.
        reason: String,
    },

    /// The batch could not be committed for another reason (an I/O error, a
    /// read-only file, ...).
    #[error("the save could not be committed: {reason}")]
    WriteFailed {
        /// What failed.
        reason: String,
    },

    /// A [`Config`](crate::Config) value is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),

    /// SQLite failed outside the write path (opening, reading).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

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
    /// See [`Error::Busy`].
    Busy {
        /// How long the writer kept retrying.
        waited: Duration,
    },
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
            Failure::Busy { waited } => Error::Busy { waited },
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
