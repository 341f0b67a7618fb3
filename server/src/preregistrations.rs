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
use mobile_api::prereg::{self, Checked, Filter, Kind, Page, Preregistration};
use mobile_api::{Finding, Host, Mobile, MobileConfig, PhoneCaller};
use retention::keys::Keys;
use retention::ledger::{NewEntry, Payload, Work};
use retention::{Actor, Clock, Db, Ledger, Sha256Hex};

use crate::documents::{NAMESPACE, personal_id, xml_escape as esc};
use crate::submissions::preregistrations::{self as rows, PairScope};
use crate::submissions::{self, Accepting, Origin};
use crate::{Error, Result, mail};

/// First letter of pre-registration document numbers.
pub const NUMBER_PREFIX: char = 'P';

/// What the mobile channel gets from the intermediary.
#[derive(Debug)]
pub struct ServerHost {
    pub db: Db,
    pub ledger: Ledger,
    pub keys: Arc<Keys>,
    pub persons: crate::submissions::persons::PersonIndex,
    pub clock: Arc<dyn Clock>,
    pub config: MobileConfig,
    /// When pre-registrations must reach the authority (`[forwarding]`).
    pub forward_deadlines: crate::submissions::ForwardDeadlines,
    /// How long they are kept (`[retention]`; their originals' Object Lock).
    pub retention: crate::documents::retention::RetentionConfig,
}

/// The personal id rule of registration forms, as a pre-registration finding.
fn person_rule(person_id: &str, birth_date: NaiveDate, today: NaiveDate) -> Option<Finding> {
    personal_id::check(person_id, Some(birth_date), today)
        .err()
        .map(|e| Finding::new(e.code(), e.to_string(), "/person_id"))
}

/// The answer to a repeated `Idempotency-Key`: the first filing if the content is the
/// same (every field the app sent, as validated), else `IdempotencyConflict` naming it.
fn repeat(first: Preregistration, checked: &Checked) -> Result<(Preregistration, bool)> {
    let same = first.person_id == checked.person_id
        && first.surname == checked.surname
        && first.given_name == checked.given_name
        && first.birth_date == checked.birth_date.to_string()
        && first.kind == checked.kind
        && first.effective_date == checked.effective_date.to_string();
    if same {
        Ok((first, false))
    } else {
        Err(mobile_api::Error::IdempotencyConflict {
            first: first.id,
            document_number: first.document_number,
        }
        .into())
    }
}

impl ServerHost {
    /// See [`Host::file`].
    async fn file_request(
        &self,
        caller: &PhoneCaller,
        body: bytes::Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<(Preregistration, bool)> {
        let req: prereg::Request = serde_json::from_slice(&body).map_err(|e| {
            mobile_api::Error::Invalid(format!("the body is not a pre-registration: {e}"))
        })?;
        let today = self.clock.now().date_naive();
        let checked = match prereg::validate(&req, today, &person_rule) {
            Ok(c) => c,
            Err(mobile_api::Error::Findings(findings)) => {
                // Like a refused filing: no row, one entry naming the refused bytes.
                let payload = serde_json::json!({ "request": String::from_utf8_lossy(&body), "errors": findings });
                self.ledger
                    .append(NewEntry {
                        actor: caller.actor(),
                        action: "preregistration.refuse".into(),
                        subject: format!("payload:{}", Sha256Hex::of(&body)),
                        payload: Some(retention::Payload::json(&payload)),
                    })
                    .await?;
                return Err(mobile_api::Error::Findings(findings).into());
            }
            Err(e) => return Err(e.into()),
        };
        let key = match idempotency_key {
            Some(k)
                if k.is_empty() || k.len() > 200 || !k.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(mobile_api::Error::Invalid(
                    "Idempotency-Key must be 1 to 200 visible ASCII characters".into(),
                )
                .into());
            }
            Some(k) => Some(format!("phone:{}:{k}", caller.access_id)),
            None => None,
        };
        if let Some(k) = &key
            && let Some(first) =
                rows::find_by_idempotency_key(&self.db, &caller.employer_id, k).await?
        {
            return repeat(first, &checked);
        }
        let id = uuid::Uuid::now_v7().to_string();
        match self.record(&id, caller, body, &checked, key.clone()).await {
            Ok(()) => {}
            // A concurrent retry with the same key won the race: answer with its filing.
            Err(Error::Record(e)) if e.is_unique_violation() && key.is_some() => {
                if let Some(k) = &key
                    && let Some(first) =
                        rows::find_by_idempotency_key(&self.db, &caller.employer_id, k).await?
                {
                    return repeat(first, &checked);
                }
                return Err(Error::Record(e));
            }
            Err(e) => return Err(e),
        }
        metrics::counter!("ivan_preregistrations_total").increment(1);
        // The registration form may already be there.
        rows::pair(
            &self.ledger,
            &self.db,
            PairScope::Preregistration(&id),
            self.config.pairing_tolerance_days,
        )
        .await?;
        Ok((rows::get(&self.db, &caller.employer_id, &id).await?, true))
    }

    /// Records a checked pre-registration as an accepted filing: log entries,
    /// submission and pre-registration rows, receipt, forwarding outbox.
    async fn record(
        &self,
        id: &str,
        caller: &PhoneCaller,
        request: bytes::Bytes,
        checked: &Checked,
        idempotency_key: Option<String>,
    ) -> Result<()> {
        let registration_number = crate::employers::get(&self.db, &caller.employer_id)
            .await?
            .ok_or_else(|| Error::NotFound("the employer no longer exists".into()))?
            .registration_number;
        let original = bytes::Bytes::from(preregistration_xml(
            id,
            &registration_number,
            &caller.access_id,
            &Sha256Hex::of(&request),
            checked,
        ));
        let deadline = chrono::Duration::seconds(
            i64::try_from(self.config.pairing_deadline_secs).unwrap_or(i64::MAX / 1000),
        );
        let accepting = Accepting {
            id: id.to_owned(),
            employer_id: caller.employer_id.clone(),
            actor: caller.actor(),
            origin: Origin::Phone {
                access_id: caller.access_id.clone(),
                request,
                checked: checked.clone(),
                deadline,
            },
            document_type: prereg::DOCUMENT_TYPE.to_owned(),
            number_prefix: NUMBER_PREFIX,
            sha256: Sha256Hex::of(&original).to_string(),
            original: original.into(),
            sender_reference: None,
            idempotency_key,
            signer_fingerprint: None,
            crl_sha256: None,
            ocsp_response: None,
            signed_digest: None,
            warnings: "[]".into(),
            hold_window: chrono::Duration::zero(),
            forward_within: self.forward_deadlines.of(prereg::DOCUMENT_TYPE),
            retain_until: self
                .retention
                .retain_until(prereg::DOCUMENT_TYPE, self.clock.now()),
            person_keys: self.persons.keys_of([checked.person_id.as_str()]),
            persons_later: false,
        };
        submissions::record(&self.ledger, self.keys.clone(), accepting)
            .await
            .map(drop)
    }
}

impl Host for ServerHost {
    fn file<'a>(
        &'a self,
        caller: &'a PhoneCaller,
        body: bytes::Bytes,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Preregistration, bool), mobile_api::Error>> {
        Box::pin(async move { Ok(self.file_request(caller, body, idempotency_key).await?) })
    }

    fn list<'a>(
        &'a self,
        employer_id: &'a str,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Page, mobile_api::Error>> {
        Box::pin(async move { Ok(rows::page(&self.db, employer_id, filter).await?) })
    }

    fn alert_employer(
        &self,
        employer_id: &str,
        alert: mobile_api::Alert,
    ) -> BoxFuture<'_, Result<(), mobile_api::Error>> {
        let eid = employer_id.to_owned();
        // English in the server log and the log entry; the employer's language in the mail.
        let text = alert.to_string();
        Box::pin(async move {
            let mail_eid = eid.clone();
            let work: Work = retention::work!(|conn, at| {
                let now = at.recorded_at();
                let words = |lang: crate::i18n::Lang| alert_words(lang, &alert);
                mail::enqueue_to_employer(&mut conn, mail::Kind::PhoneAlert, &mail_eid, &words, now)
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
                            retain_until: None,
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
        kind: p.kind,
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

/// An alert of the mobile channel in `lang`.
fn alert_words(lang: crate::i18n::Lang, alert: &mobile_api::Alert) -> String {
    match alert {
        mobile_api::Alert::PhoneLocked {
            access_id,
            phone,
            failures,
            window_hours,
        } => lang.t_with(
            "mail-phone-locked",
            &[
                ("id", access_id),
                ("phone", phone),
                ("failures", failures),
                ("hours", window_hours),
            ],
        ),
    }
}

/// Starts the sweeper: every `mobile.sweep_interval_secs` it pairs, flags overdue
/// pre-registrations, queues reminders, sends each employer with overdue ones its
/// daily list, and logs the finished hours of unknown-phone login failures
/// ([`mobile_api::throttle::sweep`]).
pub fn start_sweeper(mobile: Mobile) -> retention::Periodic {
    let every = Duration::from_secs(mobile.config().sweep_interval_secs);
    let clock = mobile.clock().clone();
    retention::Periodic::start(
        "pre-registration sweep",
        clock,
        Duration::ZERO,
        every,
        move || {
            let mobile = mobile.clone();
            async move { sweep(&mobile).await }
        },
    )
}

/// One sweep (see [`start_sweeper`]); also what tests drive with their own clock.
pub async fn sweep(mobile: &Mobile) -> Result<(), Error> {
    let now = mobile.clock().now();
    let (flagged, reminded) =
        rows::sweep(mobile.ledger(), mobile.db(), mobile.config(), now).await?;
    if flagged + reminded > 0 {
        tracing::info!(flagged, reminded, "pre-registration deadlines swept");
    }
    for (employer_id, overdue) in rows::digests_due(mobile.db(), now).await? {
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
    // The list in a language: the employer's in the mail, English in the log.
    let overdue = overdue.to_vec();
    let digest = move |lang: crate::i18n::Lang| {
        let count = overdue.len();
        let mut body = lang.t_with("mail-digest-intro", &[("count", &count)]);
        body.push_str("\n\n");
        for p in &overdue {
            body.push_str(&lang.t_with(
                "mail-digest-line",
                &[
                    ("number", &p.document_number),
                    ("person", &p.person_id),
                    ("given", &p.given_name),
                    ("surname", &p.surname),
                    ("kind", &lang.label("state", p.kind.as_str())),
                    ("effective", &p.effective_date),
                    ("due", &crate::i18n::shown(&p.deadline_at)),
                    ("id", &p.id),
                ],
            ));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&lang.t("mail-digest-outro"));
        body.push('\n');
        body
    };
    let body = digest(crate::i18n::Lang::En);
    let eid = employer_id.to_owned();
    let work: Work = retention::work!(|conn, at| {
        // The day is the sweeper's (its clock may be injected); the mail's time the log's.
        rows::mark_digest(&mut conn, &eid, now).await?;
        let at = at.recorded_at();
        mail::enqueue_to_employer(
            &mut conn,
            mail::Kind::PreregistrationDigest,
            &eid,
            &digest,
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
            retain_until: None,
        }),
    };
    ledger.append_once(entry, work).await?;
    Ok(())
}

#[cfg(test)]
mod tests {

    /// A locked phone's alert is worded in the employer's language; the English
    /// wording is the mobile channel's own (its log text).
    #[test]
    fn alerts_are_worded_in_the_employers_language() {
        let alert = mobile_api::Alert::PhoneLocked {
            access_id: "pa-1".into(),
            phone: "+421901000001".into(),
            failures: 8,
            window_hours: 24,
        };
        assert_eq!(
            alert_words(crate::i18n::Lang::En, &alert),
            alert.to_string()
        );
        let sk = alert_words(crate::i18n::Lang::Sk, &alert);
        assert!(sk.contains("+421901000001") && sk.contains("/api/v1/phone-accesses/pa-1/pin"));
        assert!(sk.starts_with("Prístup z telefónu pa-1"), "{sk}");
    }
    use super::*;
    use retention::ledger::LedgerTask;
    use retention::testing::{ManualClock, TestEnv};
    use retention::{Clock, LedgerConfig};

    retention::backend_tests!(
        the_clock_drives_reminders_overdue_and_one_digest_a_day,
        a_phone_user_lists_only_what_it_filed,
        a_reused_idempotency_key_with_other_content_conflicts
    );

    async fn count(db: &Db, sql: &str) -> i64 {
        retention::on_pool!(db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.unwrap())
    }

    /// An employer `EMP-7` (mail to hr@acme.test) and the mobile channel on the
    /// server's host, on a manual clock.
    struct Kit {
        env: TestEnv,
        ledger: Ledger,
        task: LedgerTask,
        clock: Arc<ManualClock>,
        mobile: Mobile,
        employer: String,
    }

    impl Kit {
        async fn new(env: TestEnv) -> Self {
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
                persons: crate::submissions::persons::PersonIndex::with_key([7; 32]),
                clock: clock.clone(),
                config: MobileConfig::default(),
                forward_deadlines: Default::default(),
                retention: Default::default(),
            };
            let mobile = Mobile::new(
                env.db.clone(),
                ledger.clone(),
                clock.clone(),
                &env.dir.path().join("keys"),
                MobileConfig::default(),
                Arc::new(host),
            )
            .unwrap();
            Self {
                env,
                ledger,
                task,
                clock,
                mobile,
                employer: employer.employer.id,
            }
        }

        /// A phone access of the employer, as the caller its sessions carry.
        async fn phone(&self, number: &str) -> PhoneCaller {
            let access = mobile_api::access::add(
                &self.ledger,
                &self.env.db,
                Actor::System,
                &self.employer,
                number,
                "J. N.",
            )
            .await
            .unwrap();
            PhoneCaller {
                access_id: access.id,
                employer_id: self.employer.clone(),
                session_id: "s".into(),
            }
        }

        async fn file(
            &self,
            caller: &PhoneCaller,
            body: &serde_json::Value,
            key: Option<&str>,
        ) -> std::result::Result<(Preregistration, bool), mobile_api::Error> {
            self.mobile
                .host()
                .file(caller, body.to_string().into(), key)
                .await
        }

        async fn list(&self, filter: &Filter) -> (Vec<Preregistration>, Option<String>) {
            self.mobile
                .host()
                .list(&self.employer, filter)
                .await
                .unwrap()
        }
    }

    fn request(surname: &str, kind: &str, effective_date: NaiveDate) -> serde_json::Value {
        serde_json::json!({"person_id": "9206154122", "surname": surname, "given_name": "Peter",
            "birth_date": "1992-06-15", "kind": kind, "effective_date": effective_date.to_string()})
    }

    fn all(phone_access_id: Option<String>) -> Filter {
        Filter {
            state: None,
            after: None,
            limit: 50,
            phone_access_id,
        }
    }

    async fn the_clock_drives_reminders_overdue_and_one_digest_a_day(env: TestEnv) {
        let kit = Kit::new(env).await;
        let (db, eid, mobile, clock) = (&kit.env.db, &kit.employer, &kit.mobile, &kit.clock);
        let caller = kit.phone("+421905000001").await;
        let body = request("Novák", "termination", clock.now().date_naive());
        let (p, created) = kit.file(&caller, &body, Some("k1")).await.unwrap();
        assert!(created);
        // The same Idempotency-Key: the first filing again, nothing new.
        let (again, created) = kit.file(&caller, &body, Some("k1")).await.unwrap();
        assert!(!created);
        assert_eq!(again.id, p.id);

        let reminders = "SELECT COUNT(*) FROM sms_outbox WHERE kind = 'reminder'";
        let digests = "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'preregistration-digest'";
        sweep(mobile).await.unwrap();
        assert_eq!(count(db, reminders).await, 0, "nothing is due yet");
        // A day before the deadline (3 days): the reminder, once.
        clock.advance(chrono::Duration::days(2) + chrono::Duration::minutes(1));
        sweep(mobile).await.unwrap();
        sweep(mobile).await.unwrap();
        assert_eq!(count(db, reminders).await, 1);
        assert_eq!(
            rows::get(db, eid, &p.id).await.unwrap().state,
            prereg::State::Received
        );
        // Past the deadline: overdue, and the day's digest, once however often it sweeps.
        clock.advance(chrono::Duration::days(1));
        sweep(mobile).await.unwrap();
        sweep(mobile).await.unwrap();
        assert_eq!(
            rows::get(db, eid, &p.id).await.unwrap().state,
            prereg::State::Overdue
        );
        assert_eq!(count(db, digests).await, 1);
        // The next day, another digest while it is still unpaired.
        clock.advance(chrono::Duration::days(1));
        sweep(mobile).await.unwrap();
        assert_eq!(count(db, digests).await, 2);
        assert_eq!(count(db, reminders).await, 1);
        // Paging: a second one, then pages of one.
        let (second, _) = kit.file(&caller, &body, Some("k2")).await.unwrap();
        let one = |after: Option<String>| Filter {
            state: None,
            after,
            limit: 1,
            phone_access_id: None,
        };
        let (page1, next) = kit.list(&one(None)).await;
        assert_eq!((page1.len(), next.as_deref()), (1, Some(p.id.as_str())));
        let (page2, next) = kit.list(&one(next)).await;
        assert_eq!((page2[0].id.as_str(), next), (second.id.as_str(), None));
        // By state: the overdue one alone.
        let overdue = Filter {
            state: Some(prereg::State::Overdue),
            ..all(None)
        };
        let (listed, _) = kit.list(&overdue).await;
        assert_eq!(
            listed.iter().map(|p| &p.id).collect::<Vec<_>>(),
            vec![&p.id]
        );
        kit.task.shutdown().await;
    }

    async fn a_phone_user_lists_only_what_it_filed(env: TestEnv) {
        let kit = Kit::new(env).await;
        let today = kit.clock.now().date_naive();
        let a = kit.phone("+421901000001").await;
        let b = kit.phone("+421901000002").await;
        let (pa, _) = kit
            .file(&a, &request("A", "hire", today), None)
            .await
            .unwrap();
        let (pb, _) = kit
            .file(&b, &request("B", "hire", today), None)
            .await
            .unwrap();
        let ids =
            |(v, _): (Vec<Preregistration>, _)| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(
            ids(kit.list(&all(Some(a.access_id.clone()))).await),
            vec![pa.id.clone()]
        );
        assert_eq!(
            ids(kit.list(&all(Some(b.access_id.clone()))).await),
            vec![pb.id.clone()]
        );
        assert_eq!(ids(kit.list(&all(None)).await), vec![pa.id, pb.id]);
        kit.task.shutdown().await;
    }

    async fn a_reused_idempotency_key_with_other_content_conflicts(env: TestEnv) {
        let kit = Kit::new(env).await;
        let today = kit.clock.now().date_naive();
        let c = kit.phone("+421901000001").await;
        let (first, created) = kit
            .file(&c, &request("Novák", "hire", today), Some("k"))
            .await
            .unwrap();
        assert!(created);
        let (again, created) = kit
            .file(&c, &request("Novák", "hire", today), Some("k"))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.id, first.id);
        // Only the surname differs: refused, naming the first filing.
        match kit
            .file(&c, &request("Nováková", "hire", today), Some("k"))
            .await
        {
            Err(mobile_api::Error::IdempotencyConflict {
                first: named,
                document_number,
            }) => {
                assert_eq!(named, first.id);
                assert_eq!(document_number, first.document_number);
            }
            other => panic!("expected IdempotencyConflict, got {other:?}"),
        }
        assert_eq!(kit.list(&all(None)).await.0.len(), 1);
        kit.task.shutdown().await;
    }
}
