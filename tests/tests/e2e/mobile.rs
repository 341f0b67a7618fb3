//! The mobile channel end to end: the real `ivan serve` sends PINs through a real
//! SMPP peer (the test SMSC), the "app" logs in and files pre-registrations, the
//! sandbox authority receives them, a signed registration form pairs them; sessions,
//! lockout, isolation between employers, deadlines, reminders and the daily digest.

use std::sync::Arc;
use std::time::Duration;

use ivan_e2e::filing::{Filer, set_up};
use ivan_e2e::{CLOCK_WORKERS, Instance, Server, SmtpSink, e2e_tests, eventually};
use reqwest::StatusCode;
use retention::testing::ManualClock;
use serde_json::{Value, json};
use sms_adapter::testing::{Smsc, SmscOptions};

e2e_tests!(
    pin_by_sms_login_prereg_forwarded_and_paired,
    sessions_rotate_and_reuse_revokes_the_family,
    lockout_after_five_wrong_pins_and_employers_are_isolated,
    overdue_preregistrations_are_reminded_and_listed_daily,
    logins_are_rate_limited_and_a_cancelled_form_unpairs,
    a_form_the_authority_rejects_is_unpaired_by_the_sweep,
    evidence_about_a_preregistration_verifies_offline,
    a_phone_user_lists_only_its_own_and_a_reused_key_with_other_content_conflicts,
    a_phone_another_employer_authorised_is_not_disclosed,
    wrong_pins_from_many_sources_do_not_lock_the_victim,
    logins_are_limited_per_source_network,
    unknown_phone_failures_are_counted_not_logged_one_by_one,
);

/// Environment that points `ivan serve` at the test SMSC.
fn smpp_env(smsc: &Smsc) -> Vec<(String, String)> {
    let c = smsc.smpp_config("IVAN");
    vec![
        ("IVAN_SMS__TRANSPORT".into(), "smpp".into()),
        ("IVAN_SMS__ADDRESS".into(), c.address),
        ("IVAN_SMS__SYSTEM_ID".into(), c.system_id),
        ("IVAN_SMS__PASSWORD".into(), c.password.expose().to_owned()),
        ("IVAN_SMS__SOURCE_ADDR".into(), c.source_addr),
        ("IVAN_SMS__RECONNECT_MIN_MS".into(), "100".into()),
        ("IVAN_SMS__RECONNECT_MAX_MS".into(), "1000".into()),
        ("IVAN_SMS__REGISTERED_DELIVERY".into(), "true".into()),
        (
            "IVAN_AUTHORITY__SANDBOX_PROCESS_AFTER_MS".into(),
            "200".into(),
        ),
        ("IVAN_INTAKE__HOLD_WINDOW_SECS".into(), "0".into()),
    ]
}

async fn serve(inst: &Instance, env: &[(String, String)]) -> Server {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    inst.serve_with(&pairs).await
}

async fn post(
    server: &Server,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = server.http.post(server.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(server: &Server, path: &str, token: &str) -> (StatusCode, Value) {
    let r = server.get_auth(path, token).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Adds a phone access and generates its PIN; returns (access id, PIN).
async fn phone_with_pin(server: &Server, filer: &Filer, phone: &str) -> (String, String) {
    let (s, a) = post(
        server,
        "/api/v1/phone-accesses",
        Some(&filer.token),
        json!({"phone": phone, "holder_name": "Ján Novák"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["registered"], false);
    let id = a["id"].as_str().unwrap().to_owned();
    let (s, p) = post(
        server,
        &format!("/api/v1/phone-accesses/{id}/pin"),
        Some(&filer.token),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pin = p["pin"].as_str().unwrap().to_owned();
    assert_eq!(pin.len(), 8);
    assert!(pin.bytes().all(|b| b.is_ascii_digit()));
    (id, pin)
}

async fn login(server: &Server, phone: &str, pin: &str) -> (StatusCode, Value) {
    post(
        server,
        "/mobile/v1/session",
        None,
        json!({"phone": phone, "pin": pin, "device_name": "test phone"}),
    )
    .await
}

/// Signs the phone in with its PIN; returns its access token.
async fn signed_in(server: &Server, phone: &str, pin: &str) -> String {
    let (s, tokens) = login(server, phone, pin).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// Pre-registration `pid` as the employer's API shows it.
async fn preregistration(server: &Server, filer: &Filer, pid: &str) -> Value {
    let (s, p) = get(
        server,
        &format!("/api/v1/preregistrations/{pid}"),
        &filer.token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    p
}

fn hire(effective: &str) -> Value {
    json!({"person_id": "9206154122", "surname": "Novák", "given_name": "Peter",
           "birth_date": "1992-06-15", "kind": "hire", "effective_date": effective})
}

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

/// Files a hire effective today as the phone user; returns the `201` answer.
async fn file_hire(server: &Server, access: &str) -> Value {
    file_hire_on(server, access, &today()).await
}

/// Files a hire effective on `date` as the phone user; returns the `201` answer.
async fn file_hire_on(server: &Server, access: &str, date: &str) -> Value {
    let (s, filed) = post(
        server,
        "/mobile/v1/preregistrations",
        Some(access),
        hire(date),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{filed}");
    filed
}

/// The prefilled registration form of pre-registration `pid`.
async fn prefilled_form(server: &Server, filer: &Filer, pid: &str) -> String {
    let r = server
        .get_auth(
            &format!("/api/v1/preregistrations/{pid}/registration-form"),
            &filer.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

/// Signs `form` as the employer and files it; returns its message id.
async fn file_form(inst: &Instance, server: &Server, filer: &Filer, form: &str) -> String {
    ivan_e2e::filing::file_signed(inst, server, filer, form).await
}

async fn log_actions(inst: &Instance) -> String {
    inst.run_ok(&["log", "tail", "-n", "500"]).await
}

async fn pin_by_sms_login_prereg_forwarded_and_paired(inst: Instance) {
    let filer = set_up(&inst, "EMP-0042").await;
    let smsc = Smsc::start(SmscOptions::default()).await.unwrap();
    let server = serve(&inst, &smpp_env(&smsc)).await;

    let phone = "+421901123456";
    let (id, pin) = phone_with_pin(&server, &filer, phone).await;
    let (s, sent) = post(
        &server,
        &format!("/api/v1/phone-accesses/{id}/pin/send"),
        Some(&filer.token),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{sent}");
    let got = smsc.wait_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got[0].destination_addr, "421901123456");
    assert_eq!(got[0].source_addr, "IVAN");
    assert!(
        got[0].text.contains(&pin),
        "the SMS carries the PIN: {:?}",
        got[0].text
    );

    let access = signed_in(&server, phone, &pin).await;
    let (_, list) = get(&server, "/api/v1/phone-accesses", &filer.token).await;
    let me = &list["items"][0];
    assert_eq!(me["registered"], true);
    assert!(me["last_login_at"].is_string());
    assert_eq!(
        me["pin_sendable"], false,
        "a used PIN can no longer be sent"
    );
    let (s, _) = post(
        &server,
        &format!("/api/v1/phone-accesses/{id}/pin/send"),
        Some(&filer.token),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Invalid input: all findings at once, as problem+json; nothing stored.
    let mut bad = hire(&today());
    bad["person_id"] = json!("9206154123");
    bad["kind"] = json!("hired");
    let (s, problem) = post(&server, "/mobile/v1/preregistrations", Some(&access), bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let codes: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"person.id.checksum") && codes.contains(&"kind"),
        "{codes:?}"
    );

    let filed = file_hire(&server, &access).await;
    assert_eq!(filed["state"], "received");
    let pid = filed["id"].as_str().unwrap().to_owned();
    assert!(filed["document_number"].as_str().unwrap().starts_with('P'));
    assert_eq!(
        filed["receipt"].as_str().unwrap().split('.').count(),
        3,
        "a compact JWS receipt"
    );

    // Forwarded at once: the sandbox authority takes and processes it.
    eventually(
        30,
        "the pre-registration is processed by the authority",
        || async {
            let (_, v) = get(&server, &format!("/api/v1/submissions/{pid}"), &filer.token).await;
            (v["status"] == "processed").then_some(())
        },
    )
    .await;
    let (_, sub) = get(&server, &format!("/api/v1/submissions/{pid}"), &filer.token).await;
    assert_eq!(sub["document_type"], "preregistration");

    // The employer completes the prefilled form, signs it and files it: they pair.
    let form = prefilled_form(&server, &filer, &pid).await;
    assert!(
        form.contains("<RegistrationForm")
            && form.contains("9206154122")
            && form.contains("employer=\"EMP-0042\""),
        "{form}"
    );
    let form_id = file_form(&inst, &server, &filer, &form).await;
    let paired = eventually(20, "the pre-registration pairs with the form", || async {
        let v = preregistration(&server, &filer, &pid).await;
        (v["state"] == "paired").then_some(v)
    })
    .await;
    assert_eq!(paired["paired_with"], form_id.as_str());
    let (_, form_view) = get(
        &server,
        &format!("/api/v1/submissions/{form_id}"),
        &filer.token,
    )
    .await;
    assert_eq!(
        form_view["paired_preregistrations"],
        json!([pid]),
        "linked both ways"
    );
    let (_, by_state) = get(
        &server,
        "/api/v1/preregistrations?state=paired",
        &filer.token,
    )
    .await;
    assert_eq!(by_state["items"].as_array().unwrap().len(), 1);
    let (_, mine) = get(&server, "/mobile/v1/preregistrations", &access).await;
    assert_eq!(mine["items"][0]["state"], "paired");

    let log = log_actions(&inst).await;
    for action in [
        "phone-access.create",
        "phone-access.pin-generate",
        "phone-access.pin-send",
        "sms.send",
        "sms.delivery",
        "phone.login",
        "phone-access.register",
        "preregistration.refuse",
        "preregistration.pair",
    ] {
        assert!(log.contains(action), "log lacks {action}");
    }
    // The PIN never reaches the record: no log payload (kept as originals) holds it.
    let mut dirs = vec![inst.data_dir.join("originals")];
    let mut payloads = 0;
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                payloads += 1;
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(pin.len()).any(|w| w == pin.as_bytes()),
                    "{} holds the PIN",
                    path.display()
                );
            }
        }
    }
    assert!(payloads > 5, "payloads were checked ({payloads})");
    inst.run_ok(&["log", "verify"]).await;
    server.stop().await;
}

async fn sessions_rotate_and_reuse_revokes_the_family(inst: Instance) {
    let filer = set_up(&inst, "EMP-0043").await;
    let server = inst.serve().await;
    let phone = "+421902000001";
    let (id, pin) = phone_with_pin(&server, &filer, phone).await;
    let (_, t1) = login(&server, phone, &pin).await;
    let (s, t2) = post(
        &server,
        "/mobile/v1/session/refresh",
        None,
        json!({"refresh_token": t1["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t2}");
    assert_ne!(t1["refresh_token"], t2["refresh_token"]);
    let a2 = t2["access_token"].as_str().unwrap();
    assert_eq!(
        get(&server, "/mobile/v1/preregistrations", a2).await.0,
        StatusCode::OK
    );
    // The spent token again: refused, and the whole session (family) is revoked.
    let (s, _) = post(
        &server,
        "/mobile/v1/session/refresh",
        None,
        json!({"refresh_token": t1["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = post(
        &server,
        "/mobile/v1/session/refresh",
        None,
        json!({"refresh_token": t2["refresh_token"]}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the newest token of a revoked family is dead too"
    );
    assert_eq!(
        get(&server, "/mobile/v1/preregistrations", a2).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Logout ends a session at once.
    let (_, t3) = login(&server, phone, &pin).await;
    let a3 = t3["access_token"].as_str().unwrap();
    let r = server
        .http
        .delete(server.url("/mobile/v1/session"))
        .bearer_auth(a3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&server, "/mobile/v1/preregistrations", a3).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A new PIN: the old one stops working and live sessions end.
    let (_, t4) = login(&server, phone, &pin).await;
    let a4 = t4["access_token"].as_str().unwrap();
    let (s, p2) = post(
        &server,
        &format!("/api/v1/phone-accesses/{id}/pin"),
        Some(&filer.token),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        get(&server, "/mobile/v1/preregistrations", a4).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&server, phone, &pin).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&server, phone, p2["pin"].as_str().unwrap()).await.0,
        StatusCode::OK
    );

    // Deactivation ends everything.
    let (_, t5) = login(&server, phone, p2["pin"].as_str().unwrap()).await;
    let r = server
        .http
        .delete(server.url(&format!("/api/v1/phone-accesses/{id}")))
        .bearer_auth(&filer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get(
            &server,
            "/mobile/v1/preregistrations",
            t5["access_token"].as_str().unwrap()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&server, phone, p2["pin"].as_str().unwrap()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(log_actions(&inst).await.contains("phone.session-revoke"));
    server.stop().await;
}

async fn lockout_after_five_wrong_pins_and_employers_are_isolated(inst: Instance) {
    let filer = set_up(&inst, "EMP-0044").await;
    let other = set_up(&inst, "EMP-0045").await;
    // The hard lock is for sustained abuse (default 20 wrong PINs in 24 h, with delays
    // between attempts); here it is configured to five, without delays.
    ivan_e2e::filing::set_notify_email(&inst, &filer, "hr@employer.test").await;
    let server = inst
        .serve_with(&[
            ("IVAN_MOBILE__LOCK_AFTER_FAILURES", "5"),
            ("IVAN_MOBILE__PIN_FAILURES_BEFORE_DELAY", "10"),
            ("IVAN_MAIL__IDLE_MS", "100"),
        ])
        .await;
    let phone = "+421903000001";
    let (id, pin) = phone_with_pin(&server, &filer, phone).await;
    let wrong = if pin == "00000000" {
        "11111111"
    } else {
        "00000000"
    };

    // Unknown phone and wrong PIN answer alike.
    let (s1, unknown) = login(&server, "+421999999999", wrong).await;
    let (s2, bad_pin) = login(&server, phone, wrong).await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        ivan_e2e::sans_instance(&unknown),
        ivan_e2e::sans_instance(&bad_pin)
    );
    for _ in 0..4 {
        assert_eq!(
            login(&server, phone, wrong).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Five wrong in a row: locked, even for the right PIN.
    assert_eq!(
        login(&server, phone, &pin).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, list) = get(&server, "/api/v1/phone-accesses", &filer.token).await;
    assert_eq!(list["items"][0]["locked"], true);
    let log = log_actions(&inst).await;
    assert_eq!(log.matches("phone.lockout").count(), 1, "one lockout entry");
    assert_eq!(
        log.matches("employer.alert").count(),
        1,
        "the employer is alerted"
    );
    eventually(30, "the lockout alert mailed to the employer", || async {
        let text = ivan_e2e::dev_mail(&inst.data_dir);
        (text.contains("A phone access was locked") && text.contains(&id)).then_some(())
    })
    .await;
    // Five wrong PINs; the unknown phone is counted, not logged, within the hour.
    assert!(log.matches("phone.login-fail").count() >= 5);
    // A new PIN unlocks.
    let (_, p2) = post(
        &server,
        &format!("/api/v1/phone-accesses/{id}/pin"),
        Some(&filer.token),
        json!({}),
    )
    .await;
    let (s, tokens) = login(&server, phone, p2["pin"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let access = tokens["access_token"].as_str().unwrap();
    let filed = file_hire(&server, access).await;
    let pid = filed["id"].as_str().unwrap();

    // Another employer sees none of it.
    let (_, theirs) = get(&server, "/api/v1/phone-accesses", &other.token).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
    for path in [
        format!("/api/v1/preregistrations/{pid}"),
        format!("/api/v1/preregistrations/{pid}/registration-form"),
        format!("/api/v1/submissions/{pid}"),
    ] {
        assert_eq!(
            get(&server, &path, &other.token).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    for path in [
        format!("/api/v1/phone-accesses/{id}/pin"),
        format!("/api/v1/phone-accesses/{id}/pin/send"),
    ] {
        assert_eq!(
            post(&server, &path, Some(&other.token), json!({})).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let r = server
        .http
        .delete(server.url(&format!("/api/v1/phone-accesses/{id}")))
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, theirs) = get(&server, "/api/v1/preregistrations", &other.token).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
    // Another employer may authorise the same phone: its answer does not disclose
    // that this employer has it (see a_phone_another_employer_authorised_is_not_disclosed).
    let (s, theirs) = post(
        &server,
        "/api/v1/phone-accesses",
        Some(&other.token),
        json!({"phone": phone, "holder_name": "X"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{theirs}");
    assert_eq!(theirs["registered"], false);
    server.stop().await;
}

async fn overdue_preregistrations_are_reminded_and_listed_daily(inst: Instance) {
    let filer = set_up(&inst, "EMP-0046").await;
    ivan_e2e::filing::set_notify_email(&inst, &filer, "hr@employer.test").await;
    let smsc = Smsc::start(SmscOptions::default()).await.unwrap();
    let smtp = SmtpSink::start(inst.dir.path()).await;
    let mut env = smpp_env(&smsc);
    for (k, v) in [
        ("IVAN_MAIL__TRANSPORT", "smtp".to_owned()),
        ("IVAN_MAIL__SMTP_HOST", "127.0.0.1".to_owned()),
        ("IVAN_MAIL__SMTP_PORT", smtp.port.to_string()),
        ("IVAN_MAIL__SMTP_SECURITY", "none".to_owned()),
    ] {
        env.push((k.to_owned(), v));
    }
    // In-process on a manual clock, with the production deadlines (3 days, a
    // reminder a day before, a sweep a minute): the days pass when the test says.
    // 06:00 UTC tomorrow, so the test knows when the digest's day changes (and
    // the clock is past what the set-up recorded: the log's times never go back).
    let day = chrono::Utc::now().date_naive() + chrono::Days::new(1);
    let start = day.and_hms_opt(6, 0, 0).unwrap().and_utc();
    let clock = Arc::new(ManualClock::at(start));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = inst.serve_in_process(&pairs, clock.clone()).await;
    let phone = "+421904000001";
    let (_, pin) = phone_with_pin(&server, &filer, phone).await;
    let access = &signed_in(&server, phone, &pin).await;
    let filed = file_hire_on(&server, access, &day.to_string()).await;
    let number = filed["document_number"].as_str().unwrap().to_owned();
    let digests = || {
        smtp.messages()
            .into_iter()
            .filter(|m| m.contains("Pre-registrations waiting"))
            .collect::<Vec<_>>()
    };
    let minute = chrono::Duration::minutes(1);
    clock.settled(CLOCK_WORKERS).await;

    // A day before the deadline, not yet: no reminder.
    clock.advance(chrono::Duration::days(2) - minute);
    clock.settled(CLOCK_WORKERS).await;
    assert!(smsc.received().is_empty(), "no reminder before its time");
    // The reminder SMS goes to the phone user before the deadline, once.
    clock.advance(minute * 2);
    clock.settled(CLOCK_WORKERS).await;
    let got = smsc.wait_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got[0].destination_addr, "421904000001");
    assert!(
        got[0].text.contains(&number) && got[0].text.contains("reminder"),
        "{:?}",
        got[0].text
    );
    // Then it is overdue, and the employer gets the daily list by e-mail, once.
    clock.advance(chrono::Duration::days(1));
    clock.settled(CLOCK_WORKERS).await;
    let (_, v) = get(
        &server,
        "/api/v1/preregistrations?state=overdue",
        &filer.token,
    )
    .await;
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");
    let digest = eventually(30, "the digest mail arrives", || async {
        digests().into_iter().next()
    })
    .await;
    assert!(
        digest.contains(&number) && digest.contains("hr@employer.test"),
        "{digest}"
    );
    // Sweeps through the rest of that day send no second one, nor a second reminder.
    for _ in 0..3 {
        clock.advance(chrono::Duration::hours(4));
        clock.settled(CLOCK_WORKERS).await;
    }
    // The next day's list comes the next day.
    clock.advance(chrono::Duration::hours(7));
    eventually(30, "the next day's digest arrives", || async {
        (digests().len() >= 2).then_some(())
    })
    .await;
    clock.settled(CLOCK_WORKERS).await;
    assert_eq!(digests().len(), 2, "one digest a day");
    assert_eq!(smsc.received().len(), 1, "one reminder");
    let log = log_actions(&inst).await;
    assert_eq!(log.matches("preregistration.remind").count(), 1, "{log}");
    assert_eq!(log.matches("preregistration.overdue").count(), 1, "{log}");
    assert_eq!(log.matches("preregistration.digest").count(), 2, "{log}");
    server.stop().await;
    smtp.stop().await;
}

async fn logins_are_rate_limited_and_a_cancelled_form_unpairs(inst: Instance) {
    let filer = set_up(&inst, "EMP-0047").await;
    let server = inst
        // Two per minute: a new attempt is allowed every 30 s, far more than the
        // three logins below take even in a debug build.
        .serve_with(&[("IVAN_MOBILE__LOGINS_PER_MINUTE_PER_SOURCE", "2")])
        .await;
    let phone = "+421905000001";
    let (_, pin) = phone_with_pin(&server, &filer, phone).await;
    let access = signed_in(&server, phone, &pin).await;
    let started = std::time::Instant::now();
    assert_eq!(
        login(&server, "+421999999998", "12345678").await.0,
        StatusCode::UNAUTHORIZED
    );
    let r = server
        .http
        .post(server.url("/mobile/v1/session"))
        .json(&json!({"phone": phone, "pin": pin, "device_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the third login from one source within {:?}",
        started.elapsed()
    );
    assert!(r.headers().get("retry-after").is_some());

    // A registration form inside its cancel window pairs; cancelling it unpairs.
    let filed = file_hire(&server, &access).await;
    let pid = filed["id"].as_str().unwrap().to_owned();
    let form = prefilled_form(&server, &filer, &pid).await;
    let form_id = file_form(&inst, &server, &filer, &form).await;
    let p = preregistration(&server, &filer, &pid).await;
    assert_eq!(p["state"], "paired", "paired when the form is accepted");
    let (s, _) = post(
        &server,
        &format!("/api/v1/submissions/{form_id}/cancel"),
        Some(&filer.token),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let p = preregistration(&server, &filer, &pid).await;
    assert_eq!(p["state"], "received", "{p}");
    assert!(p["paired_with"].is_null());
    let log = log_actions(&inst).await;
    assert!(log.contains("preregistration.unpair"));
    server.stop().await;
}

/// In-process on a manual clock with the production sweep interval (a minute): the
/// form's answer polls fall due as the clock ticks, and the sweep that unpairs runs
/// when the clock passes its interval, with no real time waited for either.
async fn a_form_the_authority_rejects_is_unpaired_by_the_sweep(inst: Instance) {
    let filer = set_up(&inst, "EMP-0048").await;
    let clock = Arc::new(ManualClock::new());
    let server = inst
        .serve_in_process(
            &[
                ("IVAN_INTAKE__HOLD_WINDOW_SECS", "0"),
                ("IVAN_AUTHORITY__SANDBOX_PROCESS_AFTER_MS", "200"),
            ],
            clock.clone(),
        )
        .await;
    let phone = "+421906000001";
    let (_, pin) = phone_with_pin(&server, &filer, phone).await;
    let access = &signed_in(&server, phone, &pin).await;
    let filed = file_hire(&server, access).await;
    let pid = filed["id"].as_str().unwrap().to_owned();
    let form = prefilled_form(&server, &filer, &pid).await;
    // The sandbox authority rejects filings whose sender reference starts with REJECT.
    let form = ivan_e2e::filing::set_attr(&form, "senderReference", "REJECT-1");
    let form_id = file_form(&inst, &server, &filer, &form).await;
    let p = preregistration(&server, &filer, &pid).await;
    assert_eq!(p["state"], "paired");
    // Delivery and the answer polls are scheduled on the server's clock: tick it.
    eventually(30, "the authority rejects the form", || async {
        clock.advance(chrono::Duration::seconds(1));
        let (_, v) = get(
            &server,
            &format!("/api/v1/submissions/{form_id}"),
            &filer.token,
        )
        .await;
        (v["status"] == "rejected").then_some(())
    })
    .await;
    // The next sweep, a minute on, unpairs it.
    clock.settled(CLOCK_WORKERS).await;
    clock.advance(chrono::Duration::seconds(60));
    clock.settled(CLOCK_WORKERS).await;
    let v = preregistration(&server, &filer, &pid).await;
    assert_eq!(v["state"], "received", "{v}");
    assert!(v["paired_with"].is_null(), "{v}");
    assert!(log_actions(&inst).await.contains("preregistration.unpair"));
    server.stop().await;
}

/// A pre-registration's record: `submission.receive` holds the app's JSON request,
/// its receipt covers the XML the intermediary generated (the `submission.accept`
/// payload). The operator's evidence bundle about it verifies offline.
async fn evidence_about_a_preregistration_verifies_offline(inst: Instance) {
    let filer = set_up(&inst, "EMP-0047").await;
    let server = inst.serve().await;
    let phone = "+421901123499";
    let (_, pin) = phone_with_pin(&server, &filer, phone).await;
    let access = signed_in(&server, phone, &pin).await;
    let filed = file_hire(&server, &access).await;
    let pid = filed["id"].as_str().unwrap().to_owned();

    let bundle = inst.dir.path().join("prereg-evidence.tar");
    inst.run_ok(&[
        "evidence",
        "export",
        "--message-id",
        &pid,
        "--legal-basis",
        "Social Insurance Act § 12",
        "--reference-number",
        "AUD-2026-047",
        "--out",
        bundle.to_str().unwrap(),
    ])
    .await;
    let out = inst
        .run(&["evidence", "verify", bundle.to_str().unwrap()])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("VERIFIED"), "{stdout}");
    server.stop().await;
}

/// Files `body` as the phone user with an `Idempotency-Key`.
async fn file_with_key(
    server: &Server,
    access: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let r = server
        .http
        .post(server.url("/mobile/v1/preregistrations"))
        .bearer_auth(access)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Issue 17, item 12: least privilege for phone users, and an `Idempotency-Key` is
/// bound to the content it was first used with.
async fn a_phone_user_lists_only_its_own_and_a_reused_key_with_other_content_conflicts(
    inst: Instance,
) {
    let filer = set_up(&inst, "EMP-0050").await;
    let server = inst.serve().await;
    let (_, pin_a) = phone_with_pin(&server, &filer, "+421906000001").await;
    let (_, pin_b) = phone_with_pin(&server, &filer, "+421906000002").await;
    let (_, a) = login(&server, "+421906000001", &pin_a).await;
    let (_, b) = login(&server, "+421906000002", &pin_b).await;
    let (a, b) = (
        a["access_token"].as_str().unwrap().to_owned(),
        b["access_token"].as_str().unwrap().to_owned(),
    );
    let mine = file_hire(&server, &a).await;
    let theirs = file_hire(&server, &b).await;

    // Each phone user sees what was filed from that phone, nothing else.
    for (token, own) in [(&a, &mine), (&b, &theirs)] {
        let (s, page) = get(&server, "/mobile/v1/preregistrations", token).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![own["id"].as_str().unwrap()], "{page}");
    }
    // The employer still sees all of its pre-registrations.
    let (_, all) = get(&server, "/api/v1/preregistrations", &filer.token).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "{all}");

    // The same key and body: the first filing again; another body: 409 naming it.
    let body = hire(&today());
    let (s, first) = file_with_key(&server, &a, "key-1", &body).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, again) = file_with_key(&server, &a, "key-1", &body).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    let mut changed = body.clone();
    changed["surname"] = json!("Nováková");
    let (s, problem) = file_with_key(&server, &a, "key-1", &changed).await;
    assert_eq!(s, StatusCode::CONFLICT, "{problem}");
    assert_eq!(
        problem["errors"][0]["code"], "idempotency-key.conflict",
        "{problem}"
    );
    let first_id = first["id"].as_str().unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains(first_id),
        "{problem}"
    );
    // Nothing new was filed.
    let (_, all) = get(&server, "/api/v1/preregistrations", &filer.token).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "{all}");
    server.stop().await;
}

/// Issue 17, item 12: authorising a phone that another employer already authorised
/// answers exactly as for any other phone; each employer's PIN logs in to its own
/// access.
async fn a_phone_another_employer_authorised_is_not_disclosed(inst: Instance) {
    let first = set_up(&inst, "EMP-0051").await;
    let second = set_up(&inst, "EMP-0052").await;
    let server = inst.serve().await;
    let phone = "+421907000001";
    let (id1, pin1) = phone_with_pin(&server, &first, phone).await;
    // The second employer cannot tell the phone is known elsewhere.
    let (id2, pin2) = phone_with_pin(&server, &second, phone).await;
    assert_ne!(id1, id2);
    assert_ne!(pin1, pin2, "PINs of one phone differ between employers");
    // Twice at the same employer is still refused (that is the employer's own data).
    let (s, _) = post(
        &server,
        "/api/v1/phone-accesses",
        Some(&second.token),
        json!({"phone": phone, "holder_name": "X"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Each PIN logs in to its own employer's access.
    for (pin, filer, other) in [(&pin1, &first, &second), (&pin2, &second, &first)] {
        let (s, tokens) = login(&server, phone, pin).await;
        assert_eq!(s, StatusCode::OK, "{tokens}");
        let filed = file_hire(&server, tokens["access_token"].as_str().unwrap()).await;
        let pid = filed["id"].as_str().unwrap();
        let path = format!("/api/v1/preregistrations/{pid}");
        assert_eq!(get(&server, &path, &filer.token).await.0, StatusCode::OK);
        assert_eq!(
            get(&server, &path, &other.token).await.0,
            StatusCode::NOT_FOUND
        );
    }
    let (_, list) = get(&server, "/api/v1/phone-accesses", &second.token).await;
    assert_eq!(list["items"][0]["registered"], true);
    server.stop().await;
}

/// Logs in as if from `source` (the server trusts 127.0.0.1 as a proxy in these tests).
async fn login_from(server: &Server, source: &str, phone: &str, pin: &str) -> reqwest::Response {
    server
        .http
        .post(server.url("/mobile/v1/session"))
        .header("x-forwarded-for", source)
        .json(&json!({"phone": phone, "pin": pin, "device_name": "test phone"}))
        .send()
        .await
        .unwrap()
}

const TRUST_LOOPBACK: (&str, &str) = ("IVAN_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]");

/// Issue 17, item 11: 30 wrong PINs from 30 networks used to lock the victim after
/// five. Now they delay the phone (429, not counted) and the right PIN works once the
/// delay has passed.
async fn wrong_pins_from_many_sources_do_not_lock_the_victim(inst: Instance) {
    let filer = set_up(&inst, "EMP-0053").await;
    let clock = Arc::new(ManualClock::new());
    let server = inst
        .serve_in_process(&[TRUST_LOOPBACK], clock.clone())
        .await;
    let phone = "+421908000001";
    let (_, pin) = phone_with_pin(&server, &filer, phone).await;
    let wrong = if pin == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let mut statuses = Vec::new();
    for i in 0..30 {
        let r = login_from(&server, &format!("10.{i}.0.1"), phone, wrong).await;
        statuses.push(r.status());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        3,
        "three wrong PINs are checked, the rest wait: {statuses:?}"
    );
    assert!(
        statuses[3..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let (_, list) = get(&server, "/api/v1/phone-accesses", &filer.token).await;
    assert_eq!(list["items"][0]["locked"], false, "{list}");
    // The owner waits as told, and gets in.
    let r = login_from(&server, "192.0.2.10", phone, &pin).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    clock.advance(chrono::Duration::seconds(i64::try_from(wait).unwrap()));
    let r = login_from(&server, "192.0.2.10", phone, &pin).await;
    assert_eq!(r.status(), StatusCode::OK);
    let log = log_actions(&inst).await;
    assert_eq!(log.matches("phone.lockout").count(), 0);
    assert_eq!(
        log.matches("phone.login-fail").count(),
        3,
        "one entry per checked wrong PIN, none for the waits"
    );
    server.stop().await;
}

/// Issue 17, item 11: the per-source login limit counts a whole IPv4 /24.
async fn logins_are_limited_per_source_network(inst: Instance) {
    let server = inst
        .serve_with(&[
            TRUST_LOOPBACK,
            ("IVAN_MOBILE__LOGINS_PER_MINUTE_PER_SOURCE", "2"),
        ])
        .await;
    let try_from = |source: &'static str, phone: &'static str| {
        let server = &server;
        async move { login_from(server, source, phone, "12345678").await.status() }
    };
    assert_eq!(
        try_from("10.9.8.1", "+421909000001").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        try_from("10.9.8.2", "+421909000002").await,
        StatusCode::UNAUTHORIZED
    );
    // A third address of the same /24 is the same source.
    assert_eq!(
        try_from("10.9.8.3", "+421909000003").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The next /24 is another.
    assert_eq!(
        try_from("10.9.9.1", "+421909000004").await,
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

/// Issue 17, item 11: 300 failed logins for an unknown phone from 300 sources used to
/// write 300 log entries. Now they are counted (metrics, and per phone and hour in the
/// database) and logged as one entry with the count once the hour is over.
async fn unknown_phone_failures_are_counted_not_logged_one_by_one(inst: Instance) {
    let server = inst.serve_with(&[TRUST_LOOPBACK]).await;
    let phone = "+421999000123";
    for i in 0..300 {
        let r = login_from(
            &server,
            &format!("10.{}.{}.1", i / 200, i % 200),
            phone,
            "12345678",
        )
        .await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status()),
            "{}",
            r.status()
        );
    }
    let log = log_actions(&inst).await;
    assert!(
        log.matches(phone).count() <= 1,
        "at most one entry per phone and hour: {log}"
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("ivan_mobile_unknown_phone_logins_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<f64>().ok());
    assert_eq!(counted, Some(300.0), "{metrics}");
    server.stop().await;
}
