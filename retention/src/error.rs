use std::path::PathBuf;

/// Everything that can go wrong in the record. Messages are one line and name the
/// thing at fault, so the CLI can print them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "database schema is not up to date ({pending} migration(s) pending); run `ivan migrate`"
    )]
    SchemaOutdated { pending: usize },
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("originals store: {0}")]
    Store(#[from] object_store::Error),
    #[error("original {sha256} is corrupt: its content hashes to {actual}")]
    CorruptOriginal { sha256: String, actual: String },
    #[error("original {0} is missing from the store")]
    MissingOriginal(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the transaction log appender has stopped")]
    LedgerStopped,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the database refused a row because it would duplicate a unique key.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
