//! Phone accesses: the phone users an employer authorised, their PINs and PIN logins.
//!
//! Every change is a log entry whose work makes the change (subject
//! `phone-access:<id>`): `phone-access.create`, `.pin-generate`, `.pin-send`,
//! `.deactivate`, `.register` (first successful login); and per login attempt
//! `phone.login`, `phone.login-fail` (a wrong PIN for an authorised phone),
//! `phone.lockout` (sustained guessing, see [`crate::throttle`]). Refused logins for
//! unknown phones are counted, and logged once per phone and hour by
//! [`crate::throttle::sweep`]. PINs never appear in the log.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Db, Ledger, Payload, on_conn, on_pool};
use serde::Serialize;

use crate::pin::Pins;
use crate::session::{self, Issued};
use crate::{Error, Mobile, sms, throttle};

/// Longest holder name, in characters.
pub const MAX_HOLDER_CHARS: usize = 200;
/// Longest device name, in characters.
pub const MAX_DEVICE_CHARS: usize = 100;

/// A phone access as the employer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PhoneAccess {
    pub id: String,
    #[serde(skip)]
    pub employer_id: String,
    /// E.164, e.g. `+421901123456`.
    pub phone: String,
    pub holder_name: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    /// False once deactivated.
    pub active: bool,
    /// Whether the phone user has logged in at least once.
    pub registered: bool,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    #[schema(value_type = Option<String>)]
    pub last_login_at: Option<DateTime<Utc>>,
    /// Locked after sustained PIN guessing (`mobile.lock_after_failures` wrong PINs
    /// for the phone within `lock_window_secs`); a new PIN unlocks.
    pub locked: bool,
    /// Whether a PIN has been generated.
    pub has_pin: bool,
    /// Whether the current PIN can still be sent by SMS (generated, not used yet).
    pub pin_sendable: bool,
}

const VIEW: &str = "SELECT id, employer_id, phone, holder_name, created_at, \
    (deactivated_at IS NULL) AS active, (registered_at IS NOT NULL) AS registered, last_login_at, \
    (locked_at IS NOT NULL) AS locked, (pin_hash IS NOT NULL) AS has_pin, \
    (pin_sealed IS NOT NULL AND deactivated_at IS NULL) AS pin_sendable FROM phone_accesses";

/// Checks an E.164 number: `+`, a non-zero digit, 7 to 14 more digits.
pub fn parse_phone(s: &str) -> Result<String, Error> {
    let s = s.trim();
    let digits = s.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
    {
        Ok(s.to_owned())
    } else {
        Err(Error::Invalid(format!(
            "phone {s:?} is not an E.164 number (+ and 8 to 15 digits, e.g. +421901123456)"
        )))
    }
}

fn parse_name(s: &str, what: &str, max: usize) -> Result<String, Error> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{what} must be 1 to {max} characters without control characters"
        )));
    }
    Ok(s.to_owned())
}

fn entry(actor: Actor, action: &str, id: &str, payload: Option<Payload>) -> NewEntry {
    NewEntry {
        actor,
        action: action.to_owned(),
        subject: format!("phone-access:{id}"),
        payload,
    }
}

/// The phone accesses of an employer, oldest first.
pub async fn list(db: &Db, employer_id: &str) -> Result<Vec<PhoneAccess>, Error> {
    let sql = format!("{VIEW} WHERE employer_id = $1 ORDER BY id");
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .fetch_all(pool)
            .await?
    }))
}

/// The employer's phone access `id` (another employer's is `NotFound`).
pub async fn get(db: &Db, employer_id: &str, id: &str) -> Result<PhoneAccess, Error> {
    let sql = format!("{VIEW} WHERE employer_id = $1 AND id = $2");
    let found: Option<PhoneAccess> = on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    found.ok_or_else(|| Error::NotFound(format!("no phone access {id}")))
}

/// The phone numbers of the still-active accesses among `ids` (deactivated and
/// unknown ones are left out): where a pre-registration's reminder may go.
pub async fn active_phones(
    db: &Db,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, String>, Error> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows: Vec<(String, String)> = on_pool!(db, pool => {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT id, phone FROM phone_accesses WHERE deactivated_at IS NULL AND id IN (",
        );
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(")");
        q.build_query_as().fetch_all(pool).await?
    });
    Ok(rows.into_iter().collect())
}

/// Registers a phone access for the employer. At most one active access per employer
/// and phone; other employers' accesses of the same phone are neither refused nor
/// revealed (each has its own PIN; see [`login`]).
pub async fn add(
    ledger: &Ledger,
    db: &Db,
    actor: Actor,
    employer_id: &str,
    phone: &str,
    holder_name: &str,
) -> Result<PhoneAccess, Error> {
    let phone = parse_phone(phone)?;
    let holder = parse_name(holder_name, "holder_name", MAX_HOLDER_CHARS)?;
    let id = uuid::Uuid::now_v7().to_string();
    let payload = Payload::json(&serde_json::json!({
        "id": id, "employer_id": employer_id, "phone": phone, "holder_name": holder,
    }));
    let (rid, eid) = (id.clone(), employer_id.to_owned());
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        let inserted = on_conn!(&mut conn, c => {
            sqlx::query(
                "INSERT INTO phone_accesses (id, employer_id, phone, holder_name, created_at, \
                 failed_attempts) VALUES ($1, $2, $3, $4, $5, 0)",
            )
            .bind(&rid)
            .bind(&eid)
            .bind(&phone)
            .bind(&holder)
            .bind(now)
            .execute(&mut *c)
            .await
            .map(drop)
        });
        retention::conflict_on_duplicate(inserted, || {
            format!(
                "phone {phone} already has an active access of this employer; deactivate it first"
            )
        })
    });
    ledger
        .append_with(
            entry(actor, "phone-access.create", &id, Some(payload)),
            work,
        )
        .await?;
    get(db, employer_id, &id).await
}

/// The access, if a change may still be made to it: a deactivated one is final (409).
fn active(access: PhoneAccess) -> Result<PhoneAccess, Error> {
    if access.active {
        Ok(access)
    } else {
        Err(Error::Conflict(format!(
            "phone access {} is deactivated",
            access.id
        )))
    }
}

/// The guard of a change to an active access, in its transaction: the `UPDATE …
/// AND deactivated_at IS NULL` changed the one row, or the access was deactivated
/// since [`active`] looked.
fn changed_active(changed: u64, id: &str) -> retention::Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(retention::Error::Conflict(format!(
            "phone access {id} is deactivated"
        )))
    }
}

/// Deactivates an access: its PIN stops working and its sessions end at once.
pub async fn deactivate(
    ledger: &Ledger,
    db: &Db,
    actor: Actor,
    employer_id: &str,
    id: &str,
) -> Result<PhoneAccess, Error> {
    active(get(db, employer_id, id).await?)?;
    let (rid, eid) = (id.to_owned(), employer_id.to_owned());
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        let changed = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE phone_accesses SET deactivated_at = $1, pin_sealed = NULL \
                 WHERE id = $2 AND employer_id = $3 AND deactivated_at IS NULL",
            )
            .bind(now)
            .bind(&rid)
            .bind(&eid)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        changed_active(changed, &rid)?;
        session::revoke_all(&mut conn, &rid, now, "access deactivated").await
    });
    ledger
        .append_with(entry(actor, "phone-access.deactivate", id, None), work)
        .await?;
    get(db, employer_id, id).await
}

/// Generates a new PIN for an active access: the old PIN stops working, the lock is
/// lifted and the phone's sessions end. Returns the access and the PIN, which is
/// shown this once (and kept sealed only until used, for [`send_pin`]).
pub async fn new_pin(
    ledger: &Ledger,
    db: &Db,
    pins: &Arc<Pins>,
    actor: Actor,
    employer_id: &str,
    id: &str,
) -> Result<(PhoneAccess, String), Error> {
    let current = active(get(db, employer_id, id).await?)?;
    // The PINs of one phone's accesses (at other employers) differ, so a login finds
    // the one access its PIN opens.
    let others: Vec<String> = on_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT pin_hash FROM phone_accesses WHERE phone = $1 AND id <> $2 \
             AND deactivated_at IS NULL AND pin_hash IS NOT NULL",
        )
        .bind(&current.phone)
        .bind(id)
        .fetch_all(pool)
        .await?
    });
    let mut pin = pins.generate()?;
    let mut tries = 0;
    loop {
        let mut taken = false;
        for h in &others {
            taken |= pins.verify(pin.clone(), Some(h.clone())).await?;
        }
        if others.is_empty() {
            // The same work when no other employer has the phone, so the time this
            // takes does not tell that one has.
            pins.verify(pin.clone(), None).await?;
        }
        if !taken {
            break;
        }
        tries += 1;
        if tries > 10 {
            return Err(Error::Unavailable(
                "could not generate a distinct PIN; try again".into(),
            ));
        }
        pin = pins.generate()?;
    }
    let hash = pins.hash(pin.clone()).await?;
    let sealed = pins.seal(id, &pin)?;
    let (rid, eid, phone) = (id.to_owned(), employer_id.to_owned(), current.phone.clone());
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        let changed = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE phone_accesses SET pin_hash = $3, pin_sealed = $4, pin_generated_at = $5, \
                 pin_used_at = NULL, failed_attempts = 0, locked_at = NULL \
                 WHERE id = $1 AND employer_id = $2 AND deactivated_at IS NULL",
            )
            .bind(&rid)
            .bind(&eid)
            .bind(&hash)
            .bind(&sealed)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        changed_active(changed, &rid)?;
        throttle::reset(&mut conn, &phone).await?;
        session::revoke_all(&mut conn, &rid, now, "new PIN generated").await
    });
    ledger
        .append_with(entry(actor, "phone-access.pin-generate", id, None), work)
        .await?;
    Ok((get(db, employer_id, id).await?, pin))
}

/// Queues the current PIN for delivery by SMS. Only while it has not been used.
pub async fn send_pin(
    ledger: &Ledger,
    db: &Db,
    actor: Actor,
    employer_id: &str,
    id: &str,
) -> Result<PhoneAccess, Error> {
    let current = get(db, employer_id, id).await?;
    if !current.pin_sendable {
        return Err(Error::Conflict(if current.has_pin {
            format!(
                "the PIN of phone access {id} has been used (or the access is deactivated); generate a new one to send"
            )
        } else {
            format!("phone access {id} has no PIN yet; generate one first")
        }));
    }
    let (rid, phone) = (id.to_owned(), current.phone.clone());
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        sms::enqueue(&mut conn, sms::Kind::Pin, &rid, &phone, None, now).await
    });
    ledger
        .append_with(
            entry(
                actor,
                "phone-access.pin-send",
                id,
                Some(Payload::json(
                    &serde_json::json!({ "phone": current.phone }),
                )),
            ),
            work,
        )
        .await?;
    Ok(current)
}

/// A phone user's login.
#[derive(Debug, Clone)]
pub struct Login {
    pub phone: String,
    pub pin: String,
    pub device_name: String,
    /// Where the request came from (for the log).
    pub source: String,
}

#[derive(Debug, sqlx::FromRow)]
struct LoginRow {
    id: String,
    employer_id: String,
    pin_hash: Option<String>,
    locked: bool,
    registered: bool,
}

/// The one answer every failed login gets, whatever failed.
fn refused() -> Error {
    Error::Unauthorized("unknown phone number or wrong PIN (or the access is locked)".into())
}

/// Checks a phone number and PIN and opens a session in the access the PIN opens
/// (a phone several employers authorised has one access, and one PIN, at each).
///
/// An unknown phone, a wrong PIN, a locked or deactivated access all answer the same
/// [`Error::Unauthorized`] (one Argon2id computation per access of the phone, one for
/// an unknown phone). Guessing is limited per phone number ([`throttle`]): after
/// `pin_failures_before_delay` wrong PINs in a row each attempt must wait an
/// exponentially growing delay (earlier ones get [`Error::TooManyRequests`] and are
/// not counted), and only `lock_after_failures` wrong PINs within `lock_window_secs`
/// lock the phone's accesses, with an alert to each employer. A wrong PIN is logged
/// (`phone.login-fail`) per access of the phone; an unknown phone is counted per hour
/// and logged once per phone and hour by [`throttle::sweep`].
pub async fn login(mobile: &Mobile, login: Login) -> Result<Issued, Error> {
    let (ledger, db, config) = (mobile.ledger(), mobile.db(), mobile.config());
    let now = mobile.clock().now();
    let device = parse_name(&login.device_name, "device_name", MAX_DEVICE_CHARS)?;
    let Ok(phone) = parse_phone(&login.phone) else {
        // Malformed: never a phone of anyone; the same work and answer all the same.
        mobile.pins().verify(login.pin.clone(), None).await?;
        throttle::count_unknown(db, "invalid", &login.source, now).await?;
        metrics::counter!("ivan_mobile_logins_total", "outcome" => "refused").increment(1);
        return Err(refused());
    };
    // Several employers may each have authorised this phone: the PIN tells their
    // accesses apart (PINs of one phone are kept distinct, see `new_pin`).
    let rows: Vec<LoginRow> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, employer_id, pin_hash, (locked_at IS NOT NULL) AS locked, \
             (registered_at IS NOT NULL) AS registered \
             FROM phone_accesses WHERE phone = $1 AND deactivated_at IS NULL \
             AND pin_hash IS NOT NULL ORDER BY id",
        )
        .bind(&phone)
        .fetch_all(pool)
        .await?
    });
    if let Err(e) = throttle::admit(db, config, &phone, now).await {
        if rows.is_empty() {
            throttle::count_unknown(db, &phone, &login.source, now).await?;
        }
        return Err(e);
    }
    let mut matched = None;
    if rows.is_empty() {
        // The same work as for a known phone: one Argon2id computation (a decoy).
        mobile.pins().verify(login.pin.clone(), None).await?;
    }
    for (i, r) in rows.iter().enumerate() {
        if mobile
            .pins()
            .verify(login.pin.clone(), r.pin_hash.clone())
            .await?
            && matched.is_none()
        {
            matched = Some(i);
        }
    }

    let row = match matched.and_then(|i| rows.get(i)) {
        Some(row) if !row.locked => row,
        Some(_locked) => {
            // The right PIN of a locked access: refused, and nothing counts.
            throttle::succeeded(db, &phone).await?;
            metrics::counter!("ivan_mobile_logins_total", "outcome" => "refused").increment(1);
            return Err(refused());
        }
        None => {
            metrics::counter!("ivan_mobile_logins_total", "outcome" => "refused").increment(1);
            let failed = throttle::failed(db, config, &phone, now).await?;
            if rows.is_empty() {
                throttle::count_unknown(db, &phone, &login.source, now).await?;
                return Err(refused());
            }
            // A wrong PIN counts against every access of the phone: a guesser does
            // not know which employer's it is.
            let source = serde_json::json!({
                "source": login.source, "device_name": device,
                "failures_in_a_row": failed.failures, "failures_in_window": failed.window_failures,
            });
            for r in &rows {
                wrong_pin(ledger, r, &source).await?;
            }
            if failed.lock {
                for r in &rows {
                    lock(mobile, r, &phone, failed.window_failures).await?;
                }
            }
            return Err(refused());
        }
    };
    let hash = row.pin_hash.clone();

    // The PIN matched: open a session in the same transaction that records the login.
    let issued = mobile.sessions().prepare(&row.id, &row.employer_id)?;
    let (rid, used_hash) = (row.id.clone(), hash.unwrap_or_default());
    let new_session = issued.clone();
    let device_name = device.clone();
    let lifetime = chrono::Duration::days(i64::from(config.session_days));
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        let changed = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE phone_accesses SET failed_attempts = 0, pin_sealed = NULL, \
                 pin_used_at = COALESCE(pin_used_at, $1), registered_at = COALESCE(registered_at, $1), \
                 last_login_at = $1 \
                 WHERE id = $2 AND pin_hash = $3 AND deactivated_at IS NULL AND locked_at IS NULL",
            )
            .bind(now)
            .bind(&rid)
            .bind(&used_hash)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if changed != 1 {
            // The PIN was replaced, or the access deactivated or locked, meanwhile.
            return Err(retention::Error::Conflict(
                "the access changed during login".into(),
            ));
        }
        session::insert(&mut conn, &new_session, &device_name, now, now + lifetime).await
    });
    let mut entries = vec![entry(
        Actor::Phone(row.id.clone()),
        "phone.login",
        &row.id,
        Some(Payload::json(&serde_json::json!({
            "session_id": issued.session_id, "source": login.source, "device_name": device,
        }))),
    )];
    if !row.registered {
        entries.push(entry(
            Actor::Phone(row.id.clone()),
            "phone-access.register",
            &row.id,
            None,
        ));
    }
    match ledger.append_all(entries, Some(work)).await {
        Ok(_) => {}
        Err(retention::Error::Conflict(_)) => {
            throttle::succeeded(db, &phone).await?;
            return Err(refused());
        }
        Err(e) => return Err(e.into()),
    }
    throttle::succeeded(db, &phone).await?;
    metrics::counter!("ivan_mobile_logins_total", "outcome" => "ok").increment(1);
    Ok(issued)
}

/// A wrong PIN for an access's phone: one `phone.login-fail` entry, and the access's
/// own count (shown nowhere; the per-phone count drives delays and the lock).
async fn wrong_pin(
    ledger: &Ledger,
    row: &LoginRow,
    source: &serde_json::Value,
) -> Result<(), Error> {
    let rid = row.id.clone();
    let work: Work = retention::work!(|conn, _at| {
        on_conn!(&mut conn, c => {
            sqlx::query("UPDATE phone_accesses SET failed_attempts = failed_attempts + 1 WHERE id = $1")
                .bind(&rid)
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    });
    let mut payload = source.clone();
    payload["reason"] = serde_json::json!(if row.locked { "locked" } else { "wrong PIN" });
    ledger
        .append_with(
            entry(
                Actor::Phone(row.id.clone()),
                "phone.login-fail",
                &row.id,
                Some(Payload::json(&payload)),
            ),
            work,
        )
        .await?;
    Ok(())
}

/// Locks an access after sustained guessing, recorded once as `phone.lockout` (a
/// concurrent second one finds it locked and writes nothing), and alerts its employer.
async fn lock(mobile: &Mobile, row: &LoginRow, phone: &str, failures: i64) -> Result<(), Error> {
    let rid = row.id.clone();
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        let changed = on_conn!(&mut conn, c => {
            sqlx::query("UPDATE phone_accesses SET locked_at = $1 WHERE id = $2 AND locked_at IS NULL")
                .bind(now)
                .bind(&rid)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        if changed == 1 {
            session::revoke_all(&mut conn, &rid, now, "locked after sustained PIN guessing").await
        } else {
            Err(retention::Error::Conflict("already locked".into()))
        }
    });
    let window = mobile.config().lock_window_secs;
    let locked = mobile
        .ledger()
        .append_once(
            entry(
                Actor::System,
                "phone.lockout",
                &row.id,
                Some(Payload::json(
                    &serde_json::json!({ "failures_in_window": failures, "window_secs": window }),
                )),
            ),
            work,
        )
        .await?;
    if locked {
        metrics::counter!("ivan_mobile_lockouts_total").increment(1);
        tracing::warn!(phone_access = %row.id, "phone access locked after {failures} wrong PINs in {window} s");
        let alert = crate::Alert::PhoneLocked {
            access_id: row.id.clone(),
            phone: phone.to_owned(),
            failures,
            window_hours: window / 3600,
        };
        mobile
            .host()
            .alert_employer(&row.employer_id, alert)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_must_be_e164() {
        assert_eq!(parse_phone(" +421901123456 ").unwrap(), "+421901123456");
        for bad in [
            "421901123456",
            "+0421901123",
            "+42 190 112",
            "+1234567",
            "+1234567890123456",
            "",
        ] {
            assert!(parse_phone(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;
    use crate::MobileConfig;
    use crate::testkit::Kit;
    use retention::Clock as _;

    retention::backend_tests!(
        one_phone_at_two_employers_logs_in_by_its_pin,
        wrong_pins_from_many_sources_delay_but_do_not_lock_the_victim,
        unknown_phone_failures_are_one_log_entry_per_phone_and_hour,
        concurrent_attempts_under_delay_get_one_check,
    );

    fn attempt(phone: &str, pin: &str) -> Login {
        from(phone, pin, "192.0.2.1")
    }

    fn from(phone: &str, pin: &str, source: &str) -> Login {
        Login {
            phone: phone.into(),
            pin: pin.into(),
            device_name: "test".into(),
            source: source.into(),
        }
    }

    fn other_than(pin: &str) -> String {
        if pin == "00000000" {
            "11111111"
        } else {
            "00000000"
        }
        .into()
    }

    /// The reproduction: wrong PINs from anywhere used to lock the victim out
    /// after five. Now they only delay the phone (429s that do not count), the right
    /// PIN works once the delay has passed, and only sustained guessing locks, with an
    /// alert to the employer.
    async fn wrong_pins_from_many_sources_delay_but_do_not_lock_the_victim(
        env: retention::testing::TestEnv,
    ) {
        let config = MobileConfig {
            pin_failures_before_delay: 3,
            pin_delay_base_secs: 2,
            pin_delay_cap_secs: 60,
            lock_after_failures: 8,
            ..MobileConfig::default()
        };
        let kit = Kit::new(env, config).await;
        let employer = kit.employer("EMP-1").await;
        let phone = "+421901000001";
        let (access, pin) = kit.phone(&employer, phone).await;
        let wrong = other_than(&pin);
        let m = &kit.mobile;
        let mut source = 0;
        let mut next_source = || {
            source += 1;
            format!("203.0.{source}.7")
        };
        // Three wrong PINs are answered at once.
        for _ in 0..3 {
            let r = login(m, from(phone, &wrong, &next_source())).await;
            assert!(matches!(r, Err(Error::Unauthorized(_))), "{r:?}");
        }
        // Then the phone waits 2 s, 4 s, 8 s …: earlier attempts, even with the right
        // PIN and from fresh sources, get 429 and count nothing.
        let mut wait = 2;
        for _ in 0..4 {
            for p in [&wrong, &pin] {
                match login(m, from(phone, p, &next_source())).await {
                    Err(Error::TooManyRequests { retry_after }) => {
                        assert_eq!(retry_after.as_secs(), wait)
                    }
                    other => panic!("expected 429, got {other:?}"),
                }
            }
            kit.clock.advance(chrono::Duration::seconds(wait as i64));
            let r = login(m, from(phone, &wrong, &next_source())).await;
            assert!(matches!(r, Err(Error::Unauthorized(_))), "{r:?}");
            wait *= 2;
        }
        // Seven wrong PINs from seven networks: not locked, no alert.
        assert!(!get(m.db(), &employer, &access.id).await.unwrap().locked);
        assert_eq!(kit.entries("phone.lockout").await, 0);
        // The right PIN, once the delay has passed, logs in and ends the delay.
        kit.clock.advance(chrono::Duration::seconds(wait as i64));
        let issued = login(m, from(phone, &pin, &next_source())).await.unwrap();
        assert_eq!(issued.access_id, access.id);
        let r = login(m, from(phone, &wrong, &next_source())).await;
        assert!(
            matches!(r, Err(Error::Unauthorized(_))),
            "no delay right after a login: {r:?}"
        );

        // That was the eighth wrong PIN within the window: sustained abuse locks the
        // phone, once, and the employer is alerted.
        let now = get(m.db(), &employer, &access.id).await.unwrap();
        assert!(now.locked);
        assert_eq!(kit.entries("phone.lockout").await, 1);
        let alerts = kit.host.alerts.lock().unwrap().clone();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].0, employer);
        assert!(alerts[0].1.contains(&access.id), "{alerts:?}");
        // Locked: even the right PIN is refused (after the delay) until a new PIN.
        kit.clock.advance(chrono::Duration::seconds(3600));
        assert!(matches!(
            login(m, from(phone, &pin, &next_source())).await,
            Err(Error::Unauthorized(_))
        ));
        let (_, new) = new_pin(
            m.ledger(),
            m.db(),
            m.pins(),
            Actor::System,
            &employer,
            &access.id,
        )
        .await
        .unwrap();
        login(m, from(phone, &new, &next_source())).await.unwrap();
        kit.task.shutdown().await;
    }

    /// Once a phone is under delay, attempts fired together when the delay ends get
    /// one PIN check between them; the others wait.
    async fn concurrent_attempts_under_delay_get_one_check(env: retention::testing::TestEnv) {
        let kit = Kit::new(env, MobileConfig::default()).await;
        let employer = kit.employer("EMP-1").await;
        let phone = "+421901000001";
        let (_, pin) = kit.phone(&employer, phone).await;
        let wrong = other_than(&pin);
        let m = &kit.mobile;
        for _ in 0..3 {
            login(m, attempt(phone, &wrong)).await.unwrap_err();
        }
        kit.clock.advance(chrono::Duration::seconds(2));
        let tries = (0..6).map(|i| {
            let source = format!("203.0.{i}.1");
            let wrong = wrong.clone();
            async move { login(m, from(phone, &wrong, &source)).await }
        });
        let answers = futures::future::join_all(tries).await;
        let checked = answers
            .iter()
            .filter(|r| matches!(r, Err(Error::Unauthorized(_))))
            .count();
        let waited = answers
            .iter()
            .filter(|r| matches!(r, Err(Error::TooManyRequests { .. })))
            .count();
        assert_eq!((checked, waited), (1, 5), "{answers:?}");
        assert_eq!(kit.entries("phone.login-fail").await, 4);
        kit.task.shutdown().await;
    }

    /// 300 refused logins for a phone nobody authorised, from 300 sources: no log entry
    /// per attempt, one per phone and hour with the count, written once the hour is
    /// over (the counts are in the database meanwhile).
    async fn unknown_phone_failures_are_one_log_entry_per_phone_and_hour(
        env: retention::testing::TestEnv,
    ) {
        let kit = Kit::new(env, MobileConfig::default()).await;
        let m = &kit.mobile;
        let start = kit.clock.now();
        // Stay inside one hour.
        let into_hour = i64::from(chrono::Timelike::minute(&start)) * 60
            + i64::from(chrono::Timelike::second(&start));
        kit.clock
            .advance(chrono::Duration::seconds(3300 - into_hour.min(3300)));
        for i in 0..300 {
            let source = format!("198.{}.{}.1", i / 250, i % 250);
            let r = login(m, from("+421999000001", "12345678", &source)).await;
            assert!(
                matches!(
                    r,
                    Err(Error::Unauthorized(_) | Error::TooManyRequests { .. })
                ),
                "{r:?}"
            );
            if i % 50 == 0 {
                kit.clock.advance(chrono::Duration::seconds(1));
            }
        }
        login(m, from("not a phone", "1", "198.51.100.1"))
            .await
            .unwrap_err();
        assert_eq!(kit.entries("phone.login-fail").await, 0);
        assert_eq!(kit.entries("phone.login-fail-unknown").await, 0);
        // Within the hour nothing is logged yet.
        throttle::sweep(m.ledger(), m.db(), m.config(), kit.clock.now())
            .await
            .unwrap();
        assert_eq!(kit.entries("phone.login-fail-unknown").await, 0);
        // After it, one entry per phone with its count, once.
        kit.clock.advance(chrono::Duration::seconds(3600));
        let logged = throttle::sweep(m.ledger(), m.db(), m.config(), kit.clock.now())
            .await
            .unwrap();
        assert_eq!(logged, 2);
        throttle::sweep(m.ledger(), m.db(), m.config(), kit.clock.now())
            .await
            .unwrap();
        assert_eq!(kit.entries("phone.login-fail-unknown").await, 2);
        let payloads: Vec<(String, String)> = on_pool!(m.db(), pool => {
            sqlx::query_as("SELECT e.subject, o.sha256 FROM log_entries e JOIN originals o ON o.sha256 = e.payload_sha256 \
                WHERE e.action = 'phone.login-fail-unknown' ORDER BY e.subject")
                .fetch_all(pool).await.unwrap()
        });
        assert_eq!(payloads.len(), 2);
        assert_eq!(payloads[0].0, "phone:+421999000001");
        let body = kit
            .env
            .originals
            .get(&retention::Sha256Hex::parse(&payloads[0].1).unwrap())
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["attempts"], 300, "{v}");
        assert_eq!(payloads[1].0, "phone:invalid");
        kit.task.shutdown().await;
    }

    async fn one_phone_at_two_employers_logs_in_by_its_pin(env: retention::testing::TestEnv) {
        let kit = Kit::new(env, MobileConfig::default()).await;
        let (e1, e2) = (kit.employer("EMP-1").await, kit.employer("EMP-2").await);
        let phone = "+421901000001";
        let (a1, pin1) = kit.phone(&e1, phone).await;
        // The second employer's answer is the same as for any new phone.
        let (a2, pin2) = kit.phone(&e2, phone).await;
        assert!(!a2.registered && !a2.locked && a2.active);
        assert_ne!(pin1, pin2);
        // Twice at one employer is that employer's own conflict.
        let m = &kit.mobile;
        let twice = add(m.ledger(), m.db(), Actor::System, &e2, phone, "X").await;
        assert!(
            matches!(twice, Err(Error::Record(retention::Error::Conflict(_)))),
            "{twice:?}"
        );
        for (pin, access) in [(&pin1, &a1), (&pin2, &a2)] {
            let issued = login(m, attempt(phone, pin)).await.unwrap();
            assert_eq!(issued.access_id, access.id);
        }
        kit.task.shutdown().await;
    }
}
