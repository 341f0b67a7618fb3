//! The server's side of the mobile channel ([`mobile_api`]): the [`Host`] it needs
//! (the personal-id rule, recording a pre-registration as a filing), the documents
//! `ivan` makes of a pre-registration (the XML forwarded to the authority, and the
//! prefilled registration form the employer completes and signs), and the sweeper
//! that runs the deadline checks and sends the employer's daily overdue list.
//!
//! A pre-registration becomes a submission of type `preregistration` (document
//! numbers `P<YYMM><6 digits>`) with no cancel window: it is forwarded at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use mobile_api::prereg::{self, Checked, Kind, Preregistration};
use mobile_api::{Filing, Finding, Host, Mobile};
use retention::keys::Keys;
use retention::ledger::{NewEntry, Payload, Work};
use retention::{Actor, Db, Ledger, Sha256Hex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::documents::{NAMESPACE, personal_id, xml_escape as esc};
use crate::submissions::{self, Accepting, Origin};
use crate::{Error, mail};

/// First letter of pre-registration document numbers.
pub const NUMBER_PREFIX: char = 'P';

/// What the mobile channel gets from the intermediary.
#[derive(Debug)]
pub struct ServerHost {
    pub db: Db,
    pub ledger: Ledger,
    pub keys: Arc<Keys>,
    pub persons: crate::persons::PersonIndex,
}

impl Host for ServerHost {
    fn check_person(
        &self,
        person_id: &str,
        birth_date: NaiveDate,
        today: NaiveDate,
    ) -> Option<Finding> {
        personal_id::check(person_id, Some(birth_date), today)
            .err()
            .map(|e| Finding::new(e.code(), e.to_string(), "/person_id"))
    }

    fn file(&self, filing: Filing) -> BoxFuture<'_, Result<(), mobile_api::Error>> {
        Box::pin(async move {
            let registration_number: Option<String> = retention::on_pool!(&self.db, pool => {
                sqlx::query_scalar("SELECT registration_number FROM employers WHERE id = $1")
                    .bind(&filing.caller.employer_id)
                    .fetch_optional(pool)
                    .await?
            });
            let registration_number = registration_number.ok_or_else(|| {
                mobile_api::Error::NotFound("the employer no longer exists".into())
            })?;
            let original = bytes::Bytes::from(preregistration_xml(
                &filing.id,
                &registration_number,
                &filing.caller.access_id,
                &Sha256Hex::of(&filing.request),
                &filing.checked,
            ));
            let accepting = Accepting {
                id: filing.id.clone(),
                employer_id: filing.caller.employer_id.clone(),
                actor: filing.caller.actor(),
                origin: Origin::Phone {
                    access_id: filing.caller.access_id.clone(),
                    request: filing.request.clone(),
                    checked: filing.checked.clone(),
                    deadline: filing.deadline,
                },
                document_type: prereg::DOCUMENT_TYPE.to_owned(),
                number_prefix: NUMBER_PREFIX,
                sha256: Sha256Hex::of(&original).to_string(),
                original: original.into(),
                sender_reference: None,
                idempotency_key: filing.idempotency_key.clone(),
                signer_fingerprint: None,
                crl_sha256: None,
                signed_digest: None,
                warnings: "[]".into(),
                hold_window: chrono::Duration::zero(),
                person_keys: self.persons.keys_of([filing.checked.person_id.as_str()]),
                persons_later: false,
            };
            submissions::record(&self.ledger, self.keys.clone(), accepting)
                .await
                .map(drop)
                .map_err(|e| match e {
                    Error::Record(r) => mobile_api::Error::Record(r),
                    Error::Mobile(m) => m,
                    other => {
                        mobile_api::Error::Record(retention::Error::Invalid(other.to_string()))
                    }
                })
        })
    }

    fn alert_employer(
        &self,
        employer_id: &str,
        text: String,
    ) -> BoxFuture<'_, Result<(), mobile_api::Error>> {
        let eid = employer_id.to_owned();
        Box::pin(async move {
            let (mail_eid, body) = (eid.clone(), text.clone());
            let work: Work = retention::work!(|conn, at| {
                let now = at.recorded_at();
                mail::enqueue_to_employer(&mut conn, mail::Kind::PhoneAlert, &mail_eid, &body, now)
                    .await
            });
            tracing::warn!(employer = %eid, "{text}");
            self.ledger
                .append_with(
                    NewEntry {
                        actor: Actor::System,
                        action: "employer.alert".into(),
                        subject: format!("employer:{eid}"),
                        payload: Some(Payload {
                            content: bytes::Bytes::from(text.into_bytes()).into(),
                            media_type: "text/plain; charset=utf-8".into(),
                        }),
                    },
                    work,
                )
                .await?;
            Ok(())
        })
    }
}

fn person_xml(out: &mut String, p: &Checked) {
    out.push_str(&format!(
        "    <Person>\n      <PersonalId>{}</PersonalId>\n      <Surname>{}</Surname>\n      <GivenName>{}</GivenName>\n      <BirthDate>{}</BirthDate>\n    </Person>\n",
        esc(&p.person_id),
        esc(&p.surname),
        esc(&p.given_name),
        p.birth_date
    ));
}

fn kind_xml(out: &mut String, p: &Checked, indent: &str) {
    match p.kind {
        Kind::Hire => out.push_str(&format!(
            "{indent}<Hire>\n{indent}  <From>{}</From>\n{indent}</Hire>\n",
            p.effective_date
        )),
        Kind::Termination => out.push_str(&format!(
            "{indent}<Termination>\n{indent}  <To>{}</To>\n{indent}</Termination>\n",
            p.effective_date
        )),
    }
}

/// The document `ivan` makes of a pre-registration and forwards to the authority:
/// who filed it (the phone access), the SHA-256 of the request as the app sent it
/// (kept in the log as the `submission.receive` payload), and its content.
pub fn preregistration_xml(
    message_id: &str,
    employer_registration_number: &str,
    phone_access_id: &str,
    request_sha256: &Sha256Hex,
    p: &Checked,
) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Preregistration xmlns=\"{NAMESPACE}\" employer=\"{}\" messageId=\"{}\" phoneAccess=\"{}\" requestSha256=\"{request_sha256}\">\n",
        esc(employer_registration_number),
        esc(message_id),
        esc(phone_access_id),
    );
    person_xml(&mut out, p);
    kind_xml(&mut out, p, "  ");
    out.push_str("</Preregistration>\n");
    out
}

/// An unsigned registration form prefilled from a pre-registration, for the employer
/// to complete, sign and submit. Its `senderReference` names the pre-registration's
/// document number.
pub fn registration_form_xml(
    employer_registration_number: &str,
    p: &Preregistration,
) -> Result<String, Error> {
    let date = |s: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|e| Error::Invalid(format!("stored date {s:?}: {e}")))
    };
    let checked = Checked {
        person_id: p.person_id.clone(),
        surname: p.surname.clone(),
        given_name: p.given_name.clone(),
        birth_date: date(&p.birth_date)?,
        kind: if p.kind == "termination" {
            Kind::Termination
        } else {
            Kind::Hire
        },
        effective_date: date(&p.effective_date)?,
    };
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Prefilled by ivan from pre-registration {} ({}). Check it, sign it (enveloped XML-DSig) and submit it. -->\n<RegistrationForm xmlns=\"{NAMESPACE}\" employer=\"{}\" senderReference=\"PRE-{}\">\n  <Registration>\n",
        esc(&p.document_number),
        esc(&p.id),
        esc(employer_registration_number),
        esc(&p.document_number),
    );
    person_xml(&mut out, &checked);
    kind_xml(&mut out, &checked, "    ");
    out.push_str("  </Registration>\n</RegistrationForm>\n");
    Ok(out)
}

/// The deadline sweeper of one `ivan serve`.
#[derive(Debug)]
pub struct SweeperTask {
    pub(crate) handle: JoinHandle<()>,
    pub(crate) stop: watch::Sender<bool>,
}

impl SweeperTask {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "sweeper task failed");
        }
    }
}

/// Starts the sweeper: every `mobile.sweep_interval_secs` it pairs, flags overdue
/// pre-registrations, queues reminders, sends each employer with overdue ones its
/// daily list, and logs the finished hours of unknown-phone login failures
/// ([`mobile_api::throttle::sweep`]).
pub fn start_sweeper(mobile: Mobile) -> SweeperTask {
    let (stop, mut stopped) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let every = Duration::from_secs(mobile.config().sweep_interval_secs);
        loop {
            if let Err(e) = sweep(&mobile).await {
                tracing::error!(error = %e, "pre-registration sweep failed");
            }
            tokio::select! {
                () = mobile.clock().sleep(every) => {}
                r = stopped.changed() => if r.is_err() || *stopped.borrow() { break },
            }
        }
    });
    SweeperTask { handle, stop }
}

/// One sweep (see [`start_sweeper`]); also what tests drive with their own clock.
pub async fn sweep(mobile: &Mobile) -> Result<(), Error> {
    let now = mobile.clock().now();
    let (flagged, reminded) =
        prereg::sweep(mobile.ledger(), mobile.db(), mobile.config(), now).await?;
    if flagged + reminded > 0 {
        tracing::info!(flagged, reminded, "pre-registration deadlines swept");
    }
    for (employer_id, overdue) in prereg::digests_due(mobile.db(), now).await? {
        send_digest(mobile.ledger(), &employer_id, &overdue, now).await?;
    }
    // Each finished hour of refused logins for unknown phones: one log entry per phone.
    mobile_api::throttle::sweep(mobile.ledger(), mobile.db(), mobile.config(), now).await?;
    Ok(())
}

async fn send_digest(
    ledger: &Ledger,
    employer_id: &str,
    overdue: &[Preregistration],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut body = format!(
        "{} pre-registration(s) filed from phones are past their deadline without a registration form:\n\n",
        overdue.len()
    );
    for p in overdue {
        body.push_str(&format!(
            "- {} {}: {} {}, {} on {}, due {} (GET /api/v1/preregistrations/{}/registration-form)\n",
            p.document_number,
            p.person_id,
            p.given_name,
            p.surname,
            p.kind,
            p.effective_date,
            retention::ledger::format_time(&p.deadline_at),
            p.id
        ));
    }
    body.push_str("\nFile the registration form for each; they pair automatically.\n");
    let (eid, text) = (employer_id.to_owned(), body.clone());
    let work: Work = retention::work!(|conn, at| {
        // The day is the sweeper's (its clock may be injected); the mail's time the log's.
        prereg::mark_digest(&mut conn, &eid, now).await?;
        let at = at.recorded_at();
        mail::enqueue_to_employer(
            &mut conn,
            mail::Kind::PreregistrationDigest,
            &eid,
            &text,
            at,
        )
        .await
    });
    let entry = NewEntry {
        actor: Actor::System,
        action: "preregistration.digest".into(),
        subject: format!("employer:{employer_id}"),
        payload: Some(Payload {
            content: bytes::Bytes::from(body.into_bytes()).into(),
            media_type: "text/plain; charset=utf-8".into(),
        }),
    };
    ledger.append_once(entry, work).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use retention::testing::{ManualClock, TestEnv};
    use retention::{Clock, LedgerConfig};

    retention::backend_tests!(the_clock_drives_reminders_overdue_and_one_digest_a_day);

    async fn count(db: &Db, sql: &str) -> i64 {
        retention::on_pool!(db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.unwrap())
    }

    async fn the_clock_drives_reminders_overdue_and_one_digest_a_day(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let clock = Arc::new(ManualClock::new());
        let employer =
            crate::employers::add(&ledger, clock.as_ref(), Actor::System, "Acme", "EMP-7")
                .await
                .unwrap();
        retention::on_pool!(&env.db, pool => {
            sqlx::query("UPDATE employers SET notify_email = 'hr@acme.test'").execute(pool).await.unwrap();
        });
        let host = ServerHost {
            db: env.db.clone(),
            ledger: ledger.clone(),
            keys: env.keys.clone(),
            persons: crate::persons::PersonIndex::with_key([7; 32]),
        };
        let mobile = Mobile::new(
            env.db.clone(),
            ledger.clone(),
            clock.clone(),
            &env.dir.path().join("keys"),
            mobile_api::MobileConfig::default(),
            Arc::new(host),
        )
        .unwrap();
        let eid = employer.employer.id.clone();
        let access = mobile_api::access::add(
            &ledger,
            &env.db,
            Actor::System,
            &eid,
            "+421905000001",
            "J. N.",
        )
        .await
        .unwrap();
        let caller = mobile_api::PhoneCaller {
            access_id: access.id.clone(),
            employer_id: eid.clone(),
            session_id: "s".into(),
        };
        let body = serde_json::json!({"person_id": "9206154122", "surname": "Novák", "given_name": "Peter",
            "birth_date": "1992-06-15", "kind": "termination", "effective_date": clock.now().date_naive().to_string()});
        let (p, created) = prereg::file(&mobile, &caller, body.to_string().into(), Some("k1"))
            .await
            .unwrap();
        assert!(created);
        // The same Idempotency-Key: the first filing again, nothing new.
        let (again, created) = prereg::file(&mobile, &caller, body.to_string().into(), Some("k1"))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.id, p.id);

        let reminders = "SELECT COUNT(*) FROM sms_outbox WHERE kind = 'reminder'";
        let digests = "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'preregistration-digest'";
        sweep(&mobile).await.unwrap();
        assert_eq!(count(&env.db, reminders).await, 0, "nothing is due yet");
        // A day before the deadline (3 days): the reminder, once.
        clock.advance(chrono::Duration::days(2) + chrono::Duration::minutes(1));
        sweep(&mobile).await.unwrap();
        sweep(&mobile).await.unwrap();
        assert_eq!(count(&env.db, reminders).await, 1);
        assert_eq!(
            prereg::get(&env.db, &eid, &p.id).await.unwrap().state,
            "received"
        );
        // Past the deadline: overdue, and the day's digest, once however often it sweeps.
        clock.advance(chrono::Duration::days(1));
        sweep(&mobile).await.unwrap();
        sweep(&mobile).await.unwrap();
        assert_eq!(
            prereg::get(&env.db, &eid, &p.id).await.unwrap().state,
            "overdue"
        );
        assert_eq!(count(&env.db, digests).await, 1);
        // The next day, another digest while it is still unpaired.
        clock.advance(chrono::Duration::days(1));
        sweep(&mobile).await.unwrap();
        assert_eq!(count(&env.db, digests).await, 2);
        assert_eq!(count(&env.db, reminders).await, 1);
        // Paging: a second one, then pages of one.
        let (second, _) = prereg::file(&mobile, &caller, body.to_string().into(), Some("k2"))
            .await
            .unwrap();
        let one = |after: Option<String>| prereg::Filter {
            state: None,
            after,
            limit: 1,
            phone_access_id: None,
        };
        let (page1, next) = prereg::page(&env.db, &eid, &one(None)).await.unwrap();
        assert_eq!((page1.len(), next.as_deref()), (1, Some(p.id.as_str())));
        let (page2, next) = prereg::page(&env.db, &eid, &one(next)).await.unwrap();
        assert_eq!((page2[0].id.as_str(), next), (second.id.as_str(), None));
        task.shutdown().await;
    }
}
