//! What every command and the server do to start: the data dir prepared and checked,
//! the database opened, the single-server lock taken, and the signals that stop a
//! long-running command. Below `cli`, `serve` and [`crate::app`], which all use it.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use retention::backup::INCOMPLETE_MARKER;
use retention::{Db, MigrationPolicy};

use crate::config::Config;
use crate::{Error, Result};

/// Creates the data dir if needed and proves it is a writable directory that no
/// unfinished restore left behind.
pub fn prepare_data_dir(dir: &Path) -> Result<()> {
    let fail = |reason: String| Error::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(fail("exists and is not a directory".into()));
    }
    refuse_unfinished_restore(dir)?;
    // For the service account only (0700), like everything ivan writes in it
    // (docs/OPERATIONS.md, "File modes").
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(format!("cannot create it: {e}")))?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| fail(format!("is not writable: {e}")))?;
    Ok(())
}

pub async fn open_db(config: &Config, policy: MigrationPolicy) -> Result<Db> {
    Ok(Db::connect(
        &config.database_url(),
        config.database_max_connections,
        policy,
    )
    .await?)
}

/// Refuses a data dir that an unfinished restore left behind (see `ivan restore`).
pub fn refuse_unfinished_restore(data_dir: &Path) -> Result<()> {
    if data_dir.join(INCOMPLETE_MARKER).exists() {
        return Err(Error::DataDir {
            path: data_dir.display().to_string(),
            reason: format!(
                "a restore into it did not finish ({INCOMPLETE_MARKER} is there), so it is not a \
                 valid record; discard it and its database, then run `ivan restore` again"
            ),
        });
    }
    Ok(())
}

/// On SQLite, only one `ivan serve` may use a database file: an advisory lock on
/// `<file>.serve-lock`, released by the OS however the process ends.
pub fn lock_sqlite(url: &str) -> Result<Option<std::fs::File>> {
    let Some(db_file) = retention::db::sqlite_path(url) else {
        return Ok(None);
    };
    if let Some(dir) = db_file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(Error::Invalid(format!(
            "cannot open database {url}: directory {} does not exist",
            dir.display()
        )));
    }
    let lock_path = PathBuf::from(format!("{}.serve-lock", db_file.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| Error::Io {
            context: format!("cannot open lock file {}", lock_path.display()),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::AlreadyRunning {
            db: db_file.display().to_string(),
            lock: lock_path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io {
            context: format!("cannot lock {}", lock_path.display()),
            source,
        }),
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_restore_blocks_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        refuse_unfinished_restore(dir.path()).unwrap();
        std::fs::write(dir.path().join(INCOMPLETE_MARKER), "x").unwrap();
        let err = refuse_unfinished_restore(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did not finish") && err.contains("ivan restore"),
            "{err}"
        );
    }
}
