use std::path::PathBuf;

/// Everything that can go wrong in the record. Messages are one line and name the
/// thing at fault, so the CLI can print them as they are.
///
/// Three kinds matter to a caller deciding what to answer (see [`Error::kind`]): the
/// caller's own mistake (`Invalid`, `Conflict`), the record being unavailable for now
/// (database unreachable or overloaded, disk full, shutting down: worth a retry), and
/// everything else, which is a fault of ours.
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
    /// The database has a migration this build does not carry, and it is not declared
    /// compatible with this build (a contract migration, or one too far ahead).
    #[error(
        "the database schema is newer than this build: it has migration {version}, {declared}, \
         and this build knows migrations up to {known}; run a build that knows it \
         (docs/OPERATIONS.md, \"Upgrading\")"
    )]
    SchemaTooNew {
        version: i64,
        declared: String,
        known: i64,
    },
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
    /// The record cannot be reached or written for now; the same request may work later.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of ours that a retry will not mend.
    #[error("{0}")]
    Internal(String),
}

/// What kind of failure an [`Error`] is, for the one place that turns errors into
/// answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is wrong.
    Invalid,
    /// The request conflicts with what the record holds.
    Conflict,
    /// The database or the disk is unavailable for now: retry later.
    Unavailable,
    /// Our own fault.
    Internal,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid(_) => Kind::Invalid,
            Error::Conflict(_) => Kind::Conflict,
            Error::Unavailable(_)
            | Error::LedgerStopped
            | Error::Connect { .. }
            | Error::Store(_) => Kind::Unavailable,
            Error::Database(e) if database_unavailable(e) => Kind::Unavailable,
            Error::Io { source, .. } if io_unavailable(source) => Kind::Unavailable,
            _ => Kind::Internal,
        }
    }

    /// True when the failure is the record's unavailability (worth a retry later).
    pub fn is_unavailable(&self) -> bool {
        self.kind() == Kind::Unavailable
    }

    /// The same failure as a message-only error of the same kind (for answering
    /// several waiters of one failed batch).
    pub fn with_context(&self, context: &str) -> Self {
        let msg = format!("{context}: {self}");
        match self.kind() {
            Kind::Invalid => Error::Invalid(msg),
            Kind::Conflict => Error::Conflict(msg),
            Kind::Unavailable => Error::Unavailable(msg),
            Kind::Internal => Error::Internal(msg),
        }
    }

    /// True when the database refused a row because it would duplicate a unique key.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// `result`, with the database's refusal of a duplicate unique key told as what it
/// means: [`Error::Conflict`] with `message` (another writer got there first, or the
/// thing exists already). Other failures stay what they are.
pub fn conflict_on_duplicate<T, E: Into<Error>>(
    result: std::result::Result<T, E>,
    message: impl FnOnce() -> String,
) -> Result<T> {
    result.map_err(|e| {
        let e = e.into();
        if e.is_unique_violation() {
            Error::Conflict(message())
        } else {
            e
        }
    })
}

/// Database failures that a retry later can get past: the connection or pool, the
/// server shutting down or out of resources (disk, memory, connections), lock and
/// serialization conflicts, SQLite's busy, I/O and full-disk codes.
fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite (extended codes carry the primary code in the low byte):
                // BUSY, LOCKED, IOERR, FULL, CANTOPEN, PROTOCOL.
                return code
                    .parse::<u32>()
                    .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13 | 14 | 15));
            }
            // PostgreSQL SQLSTATE classes: connection exception, transaction
            // rollback (serialization, deadlock), insufficient resources (disk full,
            // too many connections), operator intervention (shutdown), system error
            // (I/O); and a database not accepting connections, a lock not available.
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "55000"
                || code == "55P03"
        }
        _ => false,
    }
}

/// I/O failures that a retry later can get past: a full or read-only disk, a quota,
/// a timeout, an I/O error of the device.
pub fn io_unavailable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull
            | K::QuotaExceeded
            | K::ReadOnlyFilesystem
            | K::TimedOut
            | K::Interrupted
            | K::WouldBlock
            | K::OutOfMemory
    ) || e.raw_os_error() == Some(5) // EIO
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_the_record_are_unavailable_not_the_callers_fault() {
        let io = |kind| Error::io("/data/x", std::io::Error::from(kind));
        for e in [
            Error::Database(sqlx::Error::PoolTimedOut),
            Error::Database(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
            io(std::io::ErrorKind::StorageFull),
            Error::io("/data/x", std::io::Error::from_raw_os_error(5)),
            Error::LedgerStopped,
            Error::Unavailable("x".into()),
        ] {
            assert_eq!(e.kind(), Kind::Unavailable, "{e}");
            assert_eq!(
                e.with_context("log append failed").kind(),
                Kind::Unavailable
            );
        }
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied).kind(),
            Kind::Internal
        );
        assert_eq!(Error::Internal("x".into()).kind(), Kind::Internal);
        assert_eq!(Error::Invalid("x".into()).kind(), Kind::Invalid);
        assert_eq!(Error::Conflict("x".into()).kind(), Kind::Conflict);
    }
}
