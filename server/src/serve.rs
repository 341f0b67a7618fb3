//! `ivan serve`: binds the listen address, builds the [`App`] on the system clock and
//! runs it until SIGTERM or SIGINT (see [`crate::app`] for what start-up checks and
//! what a stop does).

use std::sync::Arc;

use retention::SystemClock;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;
use crate::startup::shutdown_signal;
use crate::{Error, Result};

pub async fn serve(config: Config) -> Result<()> {
    // Binding first costs nothing and writes nothing, so a taken port is refused
    // before the data dir, database or keys are touched.
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    App::build(config, Arc::new(SystemClock))
        .await?
        .run(listener, shutdown_signal())
        .await
}
