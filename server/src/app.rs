//! The server as a value: [`App::build`] opens and checks everything a run needs,
//! [`App::run`] serves a listener until a shutdown future resolves, then stops in
//! order. `ivan serve` ([`crate::serve`]) is a thin caller that binds the listen
//! address and waits for SIGTERM/SIGINT; tests build an [`App`] in-process with their
//! own [`Clock`] (a manual one, so deadlines pass without waiting) and their own
//! shutdown future.
//!
//! Start-up fails fast, with one error naming the cause: data dir, the single-server
//! lock (SQLite), database and migrations, originals store, signing keys, the log's
//! origin, document profiles, SMS transport; then (in `run`) the portal's origin. The
//! start and stop of the server are themselves recorded in the transaction log
//! (`server.start`, `server.stop`).
//!
//! On shutdown the server stops accepting connections, lets in-flight requests finish
//! (up to `http.shutdown_grace_secs`), lets the person indexing of large filings in
//! flight finish, writes any queued log appends, records `server.stop`, signs a
//! closing checkpoint and returns.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use retention::keys::Keys;
use retention::ledger::{NewEntry, Payload};
use retention::{Actor, Clock, Db, Ledger, MigrationPolicy, Originals};
use tokio::net::TcpListener;

use crate::api::AppState;
use crate::config::Config;
use crate::documents::Profiles;
use crate::forwarding::authority::AuthorityClient;
use crate::forwarding::{AuthorityMode, Forwarder};
use crate::http::router;
use crate::startup::{lock_sqlite, open_db, prepare_data_dir};
use crate::submissions::persons::PersonIndex;
use crate::{Error, Result, telemetry};

/// An opened, checked installation, ready to serve; see the module docs.
#[derive(Debug)]
pub struct App {
    config: Config,
    clock: Arc<dyn Clock>,
    db: Db,
    originals: Originals,
    keys: Arc<Keys>,
    persons: PersonIndex,
    profiles: Arc<Profiles>,
    /// Held for the life of the run: on SQLite, the one server of this database file.
    _lock: Option<std::fs::File>,
}

impl App {
    /// Opens the data dir, database (migrating it), originals store and keys, and
    /// checks what a run will rely on, writing nothing to the log.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<App> {
        config.validate()?;
        prepare_data_dir(&config.data_dir)?;
        let lock = lock_sqlite(&config.database_url())?;
        let db = open_db(&config, MigrationPolicy::Apply).await?;
        let originals = Originals::open(&config.originals, &config.data_dir)?;
        originals.ping().await?;
        // Originals are evidence: in production an S3 bucket must keep them WORM.
        match originals.require_worm().await {
            Ok(()) => {}
            Err(retention::Error::Invalid(why))
                if config.environment != crate::config::Environment::Production =>
            {
                tracing::warn!("{why} (allowed outside production)");
            }
            Err(retention::Error::Invalid(why)) => return Err(Error::Config(why)),
            Err(e) => return Err(e.into()),
        }
        let keys = Arc::new(Keys::load_or_generate(&config.keys_dir())?);
        let persons = PersonIndex::load_or_generate(&config.keys_dir())?;
        retention::ledger::check_origin(&db, &config.ledger.origin(&keys)).await?;
        let profiles = Arc::new(
            Profiles::load().map_err(|e| Error::Config(format!("document profiles: {e}")))?,
        );
        Ok(App {
            config,
            clock,
            db,
            originals,
            keys,
            persons,
            profiles,
            _lock: lock,
        })
    }

    /// The database this app runs on (for tests that look underneath).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves `listener` until `shutdown` resolves, then stops as the module docs
    /// say. Prints `ivan listening on http://ADDR` on stdout once it accepts.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let App {
            config,
            clock,
            db,
            originals,
            keys,
            persons,
            profiles,
            _lock,
        } = self;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        let metrics = telemetry::metrics_handle();
        let (ledger, ledger_task) = Ledger::start(
            db.clone(),
            originals.clone(),
            keys.clone(),
            clock.clone(),
            config.ledger.clone(),
        );
        let lifecycle = |action: &str| lifecycle_entry(action, addr, &db, &originals);
        ledger.append(lifecycle("server.start")).await?;

        let intake = crate::intake::Intake::new(
            db.clone(),
            ledger.clone(),
            keys.clone(),
            profiles,
            clock.clone(),
            config.intake.clone(),
            persons.clone(),
        )
        .with_pairing_tolerance_days(config.mobile.pairing_tolerance_days)
        .with_forward_deadlines(config.forwarding.deadlines())
        .with_retention(config.retention.clone());
        let intake = if config.intake.ocsp {
            let http = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_millis(
                    config.intake.ocsp_timeout_ms,
                ))
                .build()
                .map_err(|e| Error::Config(format!("OCSP: {e}")))?;
            intake.with_ocsp(http)
        } else {
            intake
        };
        // Forwarding: to the configured authority, or to a sandbox authority started
        // here on a loopback port (development default), through the same client and
        // protocol.
        let mut sandbox = None;
        let authority_url = match (&config.authority.mode, &config.authority.base_url) {
            (AuthorityMode::Remote, Some(url)) => url.clone(),
            _ => {
                let (url, task) = start_sandbox(&config).await?;
                sandbox = Some(task);
                url
            }
        };
        let client = AuthorityClient::new(&config.authority, &authority_url)?;
        let forwarder = config.forwarding.enabled.then(|| {
            Forwarder::new(
                db.clone(),
                ledger.clone(),
                originals.clone(),
                client,
                clock.clone(),
                config.forwarding.clone(),
                config.mail.operator.clone(),
            )
            .start()
        });
        let mailer = crate::mail::Mailer::new(
            db.clone(),
            ledger.clone(),
            clock.clone(),
            &config.mail,
            &config.data_dir,
        )?
        .start();
        // The mobile channel: PIN and session keys beside the signing keys; SMS
        // through the configured transport; the deadline sweeper.
        let host = crate::preregistrations::ServerHost {
            db: db.clone(),
            ledger: ledger.clone(),
            keys: keys.clone(),
            persons: persons.clone(),
            clock: clock.clone(),
            config: config.mobile.clone(),
            forward_deadlines: config.forwarding.deadlines(),
            retention: config.retention.clone(),
        };
        let mobile = mobile_api::Mobile::new(
            db.clone(),
            ledger.clone(),
            clock.clone(),
            &config.keys_dir(),
            config.mobile.clone(),
            Arc::new(host),
        )?;
        let sms_config = config.sms_config();
        let sms_sender =
            sms_adapter::build(&sms_config).map_err(|e| Error::Config(format!("sms: {e}")))?;
        if sms_config.is_dev() {
            tracing::warn!(
                transport = sms_sender.name(),
                "SMS go to the development outbox file, not to phones"
            );
        }
        let sms_worker = mobile.sms_worker(sms_sender.clone()).start();
        let sweeper = crate::preregistrations::start_sweeper(mobile.clone());
        let retention_sweeper = crate::compliance::sweeper::Sweeper {
            db: db.clone(),
            ledger: ledger.clone(),
            clock: clock.clone(),
            config: config.retention.clone(),
            persons: persons.clone(),
            chores: vec![crate::portal::housekeeping],
        }
        .start();
        let cosigning = crate::cosigning::start(db.clone(), clock.clone(), &config.witnesses)?;
        let portal = crate::portal::Portal::new(&config.portal, addr.port())?;
        tracing::info!(origin = %portal.origin, "portal");
        // For the links commands mail (`ivan admin user invite`, `officer add`), which
        // may run without this server's configuration or listen address.
        crate::settings::set(
            &db,
            crate::settings::PORTAL_ORIGIN,
            portal.origin.as_str().trim_end_matches('/'),
            clock.now(),
        )
        .await?;
        let expiry_check = {
            let (ledger, db, clock) = (ledger.clone(), db.clone(), clock.clone());
            let days = config.intake.cert_expiry_warn_days.clone();
            let every = std::time::Duration::from_secs(config.intake.cert_expiry_check_secs);
            retention::Periodic::start(
                "certificate expiry check",
                clock.clone(),
                std::time::Duration::ZERO,
                every,
                move || {
                    let (ledger, db, now, days) =
                        (ledger.clone(), db.clone(), clock.now(), days.clone());
                    async move {
                        let warned =
                            crate::intake::material::warn_expiring(&ledger, &db, now, &days)
                                .await?;
                        if warned > 0 {
                            tracing::info!(warned, "employers warned of expiring certificates");
                        }
                        Ok::<_, Error>(())
                    }
                },
            )
        };
        let crl_fetch = {
            let (ledger, db, clock) = (ledger.clone(), db.clone(), clock.clone());
            let configured = config.intake.crl_urls.clone();
            let every = std::time::Duration::from_secs(config.intake.crl_fetch_secs);
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .map_err(|e| Error::Config(format!("CRL fetching: {e}")))?;
            retention::Periodic::start(
                "CRL fetch",
                clock.clone(),
                std::time::Duration::ZERO,
                every,
                move || {
                    let (ledger, db, clock, http, configured) = (
                        ledger.clone(),
                        db.clone(),
                        clock.clone(),
                        http.clone(),
                        configured.clone(),
                    );
                    async move {
                        use crate::intake::material;
                        let urls = material::crl_sources(&db, &configured).await?;
                        material::fetch_crls(&ledger, &db, clock.as_ref(), &http, &urls).await?;
                        Ok::<_, Error>(())
                    }
                },
            )
        };
        let failed_attempts = crate::failed_attempts::FailedAttempts::new(clock.clone());
        let attempts_task = failed_attempts.start(ledger.clone());
        let state = AppState {
            db: db.clone(),
            originals: originals.clone(),
            keys,
            metrics,
            intake,
            mobile,
            persons,
            data_dir: config.data_dir.clone(),
            failed_attempts: failed_attempts.clone(),
        };
        let indexing = state.persons.clone();
        let app = router(state, portal, &config.http, &config.intake);
        tracing::info!(%addr, database = %db.backend(), originals = %originals.describe(), "ivan listening");
        // A stable line on stdout for scripts and tests (the port may have been 0).
        println!("ivan listening on http://{addr}");
        let _ = std::io::stdout().flush();

        let limits = crate::connections::Limits::from_config(
            &config.http,
            crate::http::trusted_proxies(&config.http.trusted_proxies),
        )
        .fit_open_file_limit();
        let finished = crate::connections::serve(listener, app, limits, shutdown).await;
        if !finished {
            tracing::warn!("shutdown grace period over; dropping remaining connections");
        }
        // Attempts in flight finish (bounded by the authority timeouts); nothing new
        // starts.
        if let Some(forwarder) = forwarder {
            forwarder.shutdown().await;
        }
        if let Some(task) = cosigning {
            task.abort();
        }
        // The failed token attempts counted so far, the current hour's included.
        attempts_task.abort();
        failed_attempts.flush(&ledger, true).await;
        mailer.shutdown().await;
        sms_worker.shutdown().await;
        sweeper.shutdown().await;
        retention_sweeper.shutdown().await;
        expiry_check.shutdown().await;
        crl_fetch.shutdown().await;
        // Large filings' person indexing in flight finishes (about 2 s for 200,000
        // persons); what a kill cuts short is caught up later, from the original.
        indexing.finish_in_flight().await;
        sms_sender.close().await;
        if let Some((stop, task)) = sandbox {
            let _ = stop.send(());
            let _ = task.await;
        }
        if let Err(e) = ledger.append(lifecycle("server.stop")).await {
            tracing::error!(error = %e, "could not record server.stop");
        }
        // Sign a checkpoint over everything up to server.stop, so nothing written by
        // this run is left without a signature vouching for it while the server is
        // down.
        if let Err(e) = ledger.checkpoint_now().await {
            tracing::error!(error = %e, "could not sign the closing checkpoint");
        }
        ledger_task.shutdown().await;
        db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `server.start` / `server.stop`: which server, on what.
fn lifecycle_entry(action: &str, addr: SocketAddr, db: &Db, originals: &Originals) -> NewEntry {
    NewEntry {
        actor: Actor::System,
        action: action.into(),
        subject: format!("server:{addr}"),
        payload: Some(Payload::json(&serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "database": db.backend().to_string(),
            "originals": originals.describe(),
        }))),
    }
}

type SandboxTask = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<()>>,
);

/// Starts the sandbox authority in-process on a free loopback port; returns its URL.
async fn start_sandbox(config: &Config) -> Result<(String, SandboxTask)> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener =
        std::net::TcpListener::bind(any).map_err(|source| Error::Listen { addr: any, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr: any, source })?;
    let options = crate::sandbox::SandboxOptions {
        process_after_ms: config.authority.sandbox_process_after_ms,
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::sandbox::run(listener, options, async move {
        let _ = stopped.await;
    }));
    tracing::warn!(%addr, "forwarding to the in-process sandbox authority (development)");
    Ok((format!("http://{addr}"), (stop, task)))
}
