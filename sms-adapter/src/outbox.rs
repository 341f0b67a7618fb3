//! The development outbox: messages go to a file, never to a phone.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use tokio::sync::Mutex;

use crate::{Error, Sent, Sms, SmsSender, text};

/// **For development only.** Appends one JSON line per message to a file:
/// `{"at": "<RFC 3339>", "id": "<UUIDv7>", "to": "+420…", "text": "…"}`, creating the
/// file and its directory when needed, and syncing each line to disk before
/// answering. It checks messages as the real transports do, so a text that would be
/// refused in production is refused here too. `SmsConfig::is_dev` is true for it so
/// the server can refuse it in production.
#[derive(Debug)]
pub struct FileOutbox {
    path: PathBuf,
    // Serialises appends so lines never interleave.
    lock: Mutex<()>,
}

impl FileOutbox {
    pub const NAME: &'static str = "dev_outbox";

    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn append(&self, sms: &Sms) -> Result<Sent, Error> {
        text::check(sms)?;
        let id = uuid::Uuid::now_v7().to_string();
        let mut line = serde_json::to_vec(&serde_json::json!({
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "id": id,
            "to": sms.to,
            "text": sms.text,
        }))
        .map_err(|e| self.io_error(std::io::Error::other(e)))?;
        line.push(b'\n');
        let path = self.path.clone();
        let _guard = self.lock.lock().await;
        tokio::task::spawn_blocking(move || append_line(&path, &line))
            .await
            .map_err(|e| self.io_error(std::io::Error::other(e)))?
            .map_err(|e| self.io_error(e))?;
        tracing::info!(to = %sms.to, id = %id, path = %self.path.display(), "SMS written to the development outbox");
        Ok(Sent {
            transport: Self::NAME,
            message_id: id,
        })
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        Error::Outbox {
            path: self.path.clone(),
            source,
        }
    }
}

fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()
}

impl SmsSender for FileOutbox {
    fn send<'a>(&'a self, sms: &'a Sms) -> BoxFuture<'a, Result<Sent, Error>> {
        Box::pin(self.append(sms))
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }
}
