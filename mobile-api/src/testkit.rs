//! What the mobile channel's own tests need: a [`Mobile`] on a [`TestEnv`] with a
//! manual clock and a stand-in [`Host`] that records a pre-registration the way the
//! server does (a submission row and the pre-registration row, in the transaction of
//! its log entry), without documents, receipts or forwarding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use retention::ledger::{LedgerTask, NewEntry, Work};
use retention::testing::{ManualClock, TestEnv};
use retention::{Actor, Db, Ledger, LedgerConfig, on_conn, on_pool};

use crate::{Error, Filing, Finding, Host, Mobile, MobileConfig, PhoneCaller, access, prereg};

#[derive(Debug)]
pub struct FakeHost {
    db: Db,
    ledger: Ledger,
    /// `(employer, text)` of every alert the channel raised.
    pub alerts: Mutex<Vec<(String, String)>>,
}

impl Host for FakeHost {
    fn check_person(&self, _: &str, _: NaiveDate, _: NaiveDate) -> Option<Finding> {
        None
    }

    fn file(&self, filing: Filing) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let f = filing.clone();
            let work: Work = retention::work!(|conn, at| {
                let (seq, now) = at
                    .first()
                    .map_or((0, Utc::now()), |a| (a.seq, a.recorded_at));
                let sha = retention::Sha256Hex::of(f.id.as_bytes()).to_string();
                on_conn!(&mut conn, c => {
                    sqlx::query("INSERT INTO originals (sha256, size_bytes, media_type, stored_at) VALUES ($1, 1, 'application/json', $2)")
                        .bind(&sha).bind(now).execute(&mut *c).await?;
                    sqlx::query(
                        "INSERT INTO submissions (id, employer_id, document_type, document_number, status, sha256, \
                         size_bytes, received_at, hold_until, idempotency_key, log_seq, receipt, warnings, updated_at) \
                         VALUES ($1, $2, 'preregistration', $3, 'accepted', $4, 1, $5, $5, $6, $7, 'receipt', '[]', $5)",
                    )
                    .bind(&f.id)
                    .bind(&f.caller.employer_id)
                    .bind(format!("P{}", f.id))
                    .bind(&sha)
                    .bind(now)
                    .bind(&f.idempotency_key)
                    .bind(seq)
                    .execute(&mut *c)
                    .await?;
                });
                let row = prereg::NewRow {
                    id: &f.id,
                    employer_id: &f.caller.employer_id,
                    phone_access_id: &f.caller.access_id,
                    checked: &f.checked,
                    received_at: now,
                    deadline: f.deadline,
                };
                prereg::insert(&mut conn, &[row]).await
            });
            self.ledger
                .append_with(
                    NewEntry {
                        actor: filing.caller.actor(),
                        action: "submission.receive".into(),
                        subject: format!("submission:{}", filing.id),
                        payload: None,
                    },
                    work,
                )
                .await?;
            Ok(())
        })
    }

    fn alert_employer(&self, employer_id: &str, text: String) -> BoxFuture<'_, Result<(), Error>> {
        let employer = employer_id.to_owned();
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
            db: env.db.clone(),
            ledger: ledger.clone(),
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

/// A pre-registration request body for `person_id` and `surname`.
pub fn hire(person_id: &str, surname: &str) -> bytes::Bytes {
    serde_json::json!({"person_id": person_id, "surname": surname, "given_name": "Peter",
        "birth_date": "1992-06-15", "kind": "hire", "effective_date": Utc::now().date_naive().to_string()})
    .to_string()
    .into()
}
