//! What the mobile channel's own tests need: a [`Mobile`] on a [`TestEnv`] with a
//! manual clock and a stand-in [`Host`] that keeps the alerts it is sent (filing and
//! listing pre-registrations are the server's, and tested there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::future::BoxFuture;
use retention::ledger::LedgerTask;
use retention::testing::{ManualClock, TestEnv};
use retention::{Actor, Ledger, LedgerConfig, on_pool};

use crate::prereg::{Filter, Page, Preregistration};
use crate::{Error, Host, Mobile, MobileConfig, PhoneCaller, access};

#[derive(Debug)]
pub struct FakeHost {
    /// `(employer, text)` of every alert the channel raised.
    pub alerts: Mutex<Vec<(String, String)>>,
}

impl Host for FakeHost {
    fn file<'a>(
        &'a self,
        _: &'a PhoneCaller,
        _: bytes::Bytes,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Preregistration, bool), Error>> {
        // Filing is the server's (a pre-registration is a submission); its tests are there.
        Box::pin(async {
            Err(Error::Unavailable(
                "the channel's own tests file nothing".into(),
            ))
        })
    }

    fn list<'a>(&'a self, _: &'a str, _: &'a Filter) -> BoxFuture<'a, Result<Page, Error>> {
        Box::pin(async { Ok((Vec::new(), None)) })
    }

    fn alert_employer(
        &self,
        employer_id: &str,
        alert: crate::Alert,
    ) -> BoxFuture<'_, Result<(), Error>> {
        let (employer, text) = (employer_id.to_owned(), alert.to_string());
        Box::pin(async move {
            self.alerts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((employer, text));
            Ok(())
        })
    }
}

/// A mobile channel on `env` with a manual clock.
pub struct Kit {
    pub env: TestEnv,
    pub ledger: Ledger,
    pub task: LedgerTask,
    pub clock: Arc<ManualClock>,
    pub host: Arc<FakeHost>,
    pub mobile: Mobile,
}

impl Kit {
    pub async fn new(env: TestEnv, config: MobileConfig) -> Self {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let clock = Arc::new(ManualClock::new());
        let host = Arc::new(FakeHost {
            alerts: Mutex::new(Vec::new()),
        });
        let mobile = Mobile::new(
            env.db.clone(),
            ledger.clone(),
            clock.clone(),
            &env.dir.path().join("keys"),
            config,
            host.clone(),
        )
        .unwrap();
        Self {
            env,
            ledger,
            task,
            clock,
            host,
            mobile,
        }
    }

    /// A new employer; returns its id.
    pub async fn employer(&self, registration_number: &str) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        on_pool!(&self.env.db, pool => {
            sqlx::query("INSERT INTO employers (id, name, registration_number, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&id)
                .bind(format!("Employer {registration_number}"))
                .bind(registration_number)
                .bind(Utc::now())
                .execute(pool)
                .await
                .unwrap();
        });
        id
    }

    /// A phone access of `employer` with a PIN; returns (access, PIN).
    pub async fn phone(&self, employer: &str, phone: &str) -> (access::PhoneAccess, String) {
        let m = &self.mobile;
        let a = access::add(m.ledger(), m.db(), Actor::System, employer, phone, "J. N.")
            .await
            .unwrap();
        let (a, pin) =
            access::new_pin(m.ledger(), m.db(), m.pins(), Actor::System, employer, &a.id)
                .await
                .unwrap();
        (a, pin)
    }

    pub fn caller(a: &access::PhoneAccess) -> PhoneCaller {
        PhoneCaller {
            access_id: a.id.clone(),
            employer_id: a.employer_id.clone(),
            session_id: "test-session".into(),
        }
    }

    /// The number of log entries with `action`.
    pub async fn entries(&self, action: &str) -> i64 {
        on_pool!(&self.env.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM log_entries WHERE action = $1")
                .bind(action)
                .fetch_one(pool)
                .await
                .unwrap()
        })
    }
}
