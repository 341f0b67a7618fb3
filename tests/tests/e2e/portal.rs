//! The employer portal in a real browser: headless Chromium with Chrome's virtual
//! WebAuthn authenticator drives the real `ivan serve` — enrolment from the link
//! mailed to a real SMTP server, passkey sign-in, upload checked then approved with a
//! step-up, the list, cancel with a step-up — and the security properties: another
//! employer's ids answer 404 on every portal route, forms without the CSRF token are
//! refused, and a step-up given for one document cannot approve another.
//! Screenshots of each page go to `<target>/portal-screenshots/`.

use std::sync::Arc;

use ivan_e2e::browser::Browser;
use ivan_e2e::filing::{Filer, report, set_up, sign};
use ivan_e2e::{Instance, Server, SmtpSink, e2e_tests, eventually, free_port};
use retention::Clock;
use retention::testing::ManualClock;
use serde_json::Value;

e2e_tests!(
    clerk_enrols_files_and_cancels_with_passkeys,
    sessions_end_when_idle_or_too_old,
    officer_searches_the_log_on_a_legal_basis,
);

/// The enrolment link in a mail (quoted-printable undone).
fn enrolment_link(mail: &str) -> Option<String> {
    let text = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = text.find("http://localhost:")?;
    let link: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ":/?=.-_".contains(*c))
        .collect();
    link.contains("/portal/enrol?token=").then_some(link)
}

/// What `ivan` commands need to mail enrolment links that reach the portal.
type PortalEnv = Vec<(&'static str, String)>;

/// `ivan serve` on a free port, its portal at the `http://localhost:PORT` origin
/// returned, mailing through a real SMTP sink; with the environment of the commands
/// that invite people to it.
async fn portal(inst: &Instance) -> (Server, SmtpSink, String, PortalEnv) {
    let smtp = SmtpSink::start(inst.dir.path()).await;
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let env: PortalEnv = vec![
        ("IVAN_PORTAL__PUBLIC_URL", origin.clone()),
        ("IVAN_MAIL__TRANSPORT", "smtp".into()),
        ("IVAN_MAIL__SMTP_HOST", "127.0.0.1".into()),
        ("IVAN_MAIL__SMTP_PORT", smtp.port.to_string()),
        ("IVAN_MAIL__SMTP_SECURITY", "none".into()),
        ("IVAN_MAIL__IDLE_MS", "100".into()),
    ];
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = inst.serve_on(&format!("127.0.0.1:{port}"), &pairs).await;
    (server, smtp, origin, env)
}

/// `ivan args…` with the portal's environment; asserts that it succeeds.
async fn run_for_portal(inst: &Instance, env: &PortalEnv, args: &[&str]) -> Value {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    serde_json::from_str(&inst.run_ok_with(&pairs, args).await).unwrap()
}

/// The enrolment link of the mail that mentions `marker`, once it has arrived.
async fn enrolment_mail(smtp: &SmtpSink, marker: &str) -> String {
    eventually(30, &format!("the enrolment mail for {marker}"), || async {
        smtp.messages()
            .iter()
            .filter(|m| m.contains(marker))
            .find_map(|m| enrolment_link(m))
    })
    .await
}

/// Invites `email` as `role` of `filer` and answers the link mailed to them.
async fn invite(
    inst: &Instance,
    smtp: &SmtpSink,
    env: &PortalEnv,
    filer: &Filer,
    email: &str,
    role: &str,
) -> String {
    let args = [
        "admin",
        "user",
        "invite",
        "--employer",
        &filer.id,
        "--email",
        email,
        "--role",
        role,
        "--json",
    ];
    let v = run_for_portal(inst, env, &args).await;
    assert_eq!(v["user"]["email"], email);
    assert_eq!(v["user"]["role"], role);
    enrolment_mail(smtp, email).await
}

/// Files a signed report through the API; returns its message id.
async fn file_by_api(inst: &Instance, server: &Server, filer: &Filer, variant: u32) -> String {
    ivan_e2e::filing::file_signed(inst, server, filer, &report(&filer.registration, variant)).await
}

async fn write_signed(inst: &Instance, filer: &Filer, variant: u32) -> std::path::PathBuf {
    let signed = sign(
        inst,
        filer,
        &report(&filer.registration, variant),
        "employer",
    )
    .await;
    let path = inst.dir.path().join(format!("upload-{variant}.xml"));
    std::fs::write(&path, signed).unwrap();
    path
}

/// The text of message `key` in `lang` as `server/locales/<lang>/portal.ftl` has it.
fn message(lang: &str, key: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/locales");
    let text = std::fs::read_to_string(format!("{path}/{lang}/portal.ftl")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
        .unwrap_or_else(|| panic!("no {key} in {lang}"))
        .to_owned()
}

/// Chooses the portal's language on the account page.
async fn choose_language(browser: &Browser, origin: &str, lang: &str) {
    browser.goto(&format!("{origin}/portal/account")).await;
    browser
        .execute(
            "document.getElementById('language').value = arguments[0]",
            vec![Value::String(lang.to_owned())],
        )
        .await;
    browser.click("#set-language").await;
    browser.wait_for_url_containing("done=language").await;
    assert_eq!(
        browser
            .execute("return document.documentElement.lang", vec![])
            .await,
        lang
    );
}

/// The submission page's state as its machine id (`data-state`).
async fn state_id(browser: &Browser) -> String {
    browser
        .execute(
            "return document.getElementById('state').dataset.state",
            vec![],
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// Uploads a file in the portal and waits for the approval page; returns its URL.
async fn upload(browser: &Browser, origin: &str, path: &std::path::Path) -> String {
    browser.goto(&format!("{origin}/portal/upload")).await;
    browser.upload_file("#file", path).await;
    browser.click("#check").await;
    browser.wait_for_url_containing("/portal/uploads/").await
}

async fn clerk_enrols_files_and_cancels_with_passkeys(inst: Instance) {
    let backend = format!("{:?}", inst.backend).to_lowercase();
    let shot = |name: &str| format!("{backend}-{name}");
    let filer = set_up(&inst, "12345678").await;
    let other = set_up(&inst, "87654321").await;
    let (server, smtp, origin, env) = portal(&inst).await;
    let link = invite(&inst, &smtp, &env, &filer, "clerk@employer.test", "admin").await;
    assert!(link.starts_with(&origin), "{link}");

    let browser = Browser::start().await;
    let authenticator = browser.add_virtual_authenticator().await;

    // Enrol from the mailed link: the passkey is made, the session starts.
    browser.goto(&link).await;
    browser.wait_for("#register").await;
    browser.screenshots(&shot("enrol")).await;
    browser.click("#register").await;
    browser.wait_for_url_containing("/portal/dashboard").await;
    assert!(browser.text("h1").await.starts_with("Dashboard"));
    browser.screenshots(&shot("dashboard")).await;
    let creds = browser.authenticator_credentials(&authenticator).await;
    assert_eq!(creds.as_array().unwrap().len(), 1, "{creds}");
    assert_eq!(creds[0]["isResidentCredential"], true);
    // The link works once.
    browser.goto(&link).await;
    assert!(
        browser.source().await.contains("not valid"),
        "a used link must be refused"
    );

    // Sign out, sign in again with the passkey alone.
    browser.goto(&format!("{origin}/portal/dashboard")).await;
    browser.click("header form button").await;
    browser.wait_for_url_containing("/portal/sign-in").await;
    browser.goto(&format!("{origin}/portal/dashboard")).await;
    browser.wait_for_url_containing("/portal/sign-in").await;
    browser.screenshots(&shot("sign-in")).await;
    browser.click("#sign-in").await;
    browser.wait_for_url_containing("/portal/dashboard").await;

    // A document changed after signing: the API's checks show its errors; nothing is
    // stored or logged.
    // Counted in the database: `ivan log tail` would log its own read.
    let before = inst.count("SELECT COUNT(*) FROM log_entries").await;
    let tampered = write_signed(&inst, &filer, 3).await;
    let xml = std::fs::read_to_string(&tampered).unwrap();
    std::fs::write(&tampered, xml.replacen("E2E-3", "E2E-4", 1)).unwrap();
    browser.goto(&format!("{origin}/portal/upload")).await;
    browser.upload_file("#file", &tampered).await;
    browser.click("#check").await;
    browser.wait_for(".errors").await;
    let page = browser.source().await;
    assert!(
        page.contains("cannot be filed") && page.contains("signature."),
        "{page}"
    );
    browser.screenshots(&shot("upload-refused")).await;
    let after = inst.count("SELECT COUNT(*) FROM log_entries").await;
    assert_eq!(before, after, "a portal check wrote to the log");

    // Two checked uploads wait for approval. The step-up of the first, re-aimed at the
    // second, approves nothing.
    let second = upload(&browser, &origin, &write_signed(&inst, &filer, 2).await).await;
    let first = upload(&browser, &origin, &write_signed(&inst, &filer, 1).await).await;
    browser.screenshots(&shot("approve")).await;
    let second_id = second.rsplit('/').next().unwrap().to_owned();
    browser
        .execute(
            "document.querySelector('form[data-webauthn]').action = arguments[0];",
            vec![Value::String(format!(
                "/portal/uploads/{second_id}/approve"
            ))],
        )
        .await;
    browser.click("#approve").await;
    browser
        .wait_for_url_containing(&format!("/portal/uploads/{second_id}/approve"))
        .await;
    let refused = browser.source().await;
    assert!(
        refused.contains("another document"),
        "the step-up for one document approved another: {refused}"
    );
    let listed = server
        .get_auth("/api/v1/submissions", &filer.token)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");

    // Approving the first, with its own step-up, files it.
    browser.goto(&first).await;
    browser.wait_for("#approve").await;
    // The fingerprint is explained and folded into the details.
    assert!(browser.text("details summary").await.contains("SHA-256"));
    browser.click("details summary").await;
    let sha = browser.text("#sha256").await;
    browser.click("#approve").await;
    let filed = browser.wait_for_url_containing("done=filed").await;
    browser.screenshots(&shot("filed")).await;
    assert_eq!(browser.text("#state").await, "Accepted");
    assert_eq!(state_id(&browser).await, "accepted");
    // Ids are in the details.
    browser.click("details.ids summary").await;
    let message_id = browser.text("#message-id").await;
    let number = browser
        .text("h1")
        .await
        .trim_start_matches("Submission ")
        .to_owned();
    assert!(filed.contains(&message_id));
    let api: Value = server
        .get_auth_json(&format!("/api/v1/submissions/{message_id}"), &filer.token)
        .await;
    assert_eq!(api["sha256"], sha.as_str());
    // The page shows when it must reach the authority: the API's forward_by, in the
    // portal's time zone (Europe/Bratislava), to the minute.
    let forward_by = chrono::DateTime::parse_from_rfc3339(api["forward_by"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Bratislava)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string();
    assert_eq!(browser.text("#forward-by").await, forward_by, "{api}");
    let receive = &api["history"][0];
    assert_eq!(receive["status"], "received");
    assert!(
        receive["actor"].as_str().unwrap().starts_with("user:"),
        "the approving user is the filing's actor: {api}"
    );

    // The approval is evidence anyone can check without ivan (docs/LOG.md).
    check_step_up_offline(&inst, "approve-upload", &sha, &origin).await;

    // The list shows it; cancel it with a step-up.
    browser.goto(&format!("{origin}/portal/submissions")).await;
    browser.wait_for("table").await;
    browser.screenshots(&shot("submissions")).await;
    assert!(browser.source().await.contains(&message_id));
    browser
        .click(&format!("a[href='/portal/submissions/{message_id}']"))
        .await;
    browser.wait_for("#cancel").await;
    assert!(browser.text("#cancel-window").await.contains(" h "));
    // Who did what, in words: the approving user by e-mail, not `user:<id>`.
    let history = browser.text("#history").await;
    assert!(
        history.contains("clerk@employer.test") && !history.contains("user:"),
        "{history}"
    );
    browser.screenshots(&shot("submission")).await;
    browser.click("#cancel").await;
    browser.wait_for_url_containing("done=cancelled").await;
    assert_eq!(state_id(&browser).await, "cancelled");
    assert_eq!(browser.text("#state").await, "Cancelled");
    check_step_up_offline(&inst, "cancel", &message_id, &origin).await;
    browser.screenshots(&shot("cancelled")).await;

    // Phone accesses (admin): add a phone, generate its PIN, shown once.
    browser.goto(&format!("{origin}/portal/phones")).await;
    browser.fill("#phone", "+421901123456").await;
    browser.fill("#holder_name", "Jana Nováková").await;
    browser.click("#add-phone").await;
    browser.wait_for_url_containing("done=added").await;
    browser.click("button.new-pin").await;
    browser.wait_for("#secret").await;
    let pin = browser.text("#secret").await;
    assert!(
        pin.len() == 8 && pin.bytes().all(|b| b.is_ascii_digit()),
        "{pin}"
    );
    browser.screenshots(&shot("pin")).await;
    let login = server
        .http
        .post(server.url("/mobile/v1/session"))
        .json(&serde_json::json!({"phone": "+421901123456", "pin": pin, "device_name": "e2e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "the portal's PIN logs the phone in");
    browser.goto(&format!("{origin}/portal/phones")).await;
    browser.wait_for("table").await;
    let row = browser.text("table tbody tr").await;
    assert!(
        row.contains("Jana Nováková") && row.contains("yes"),
        "registered: {row}"
    );
    browser.screenshots(&shot("phones")).await;
    // A second PIN, sent by SMS this time (the development outbox), then deactivation.
    browser.click("button.new-pin").await;
    browser.wait_for("#follow-up").await;
    browser.click("#follow-up").await;
    browser.wait_for_url_containing("done=sent").await;
    browser.click("button.deactivate").await;
    browser.wait_for_url_containing("done=deactivated").await;
    assert!(browser.text("table tbody tr").await.contains("deactivated"));
    browser
        .goto(&format!("{origin}/portal/preregistrations"))
        .await;
    browser.wait_for("h1").await;
    browser.screenshots(&shot("preregistrations")).await;

    // Credential management needs a recent passkey confirmation: with none on the
    // session, the tokens page asks for one first, then comes back.
    {
        let db = inst.db().await;
        retention::on_pool!(&db, pool => sqlx::query("UPDATE portal_sessions SET reauth_at = NULL")
            .execute(pool).await.map(|r| r.rows_affected()))
        .unwrap();
    }
    browser.goto(&format!("{origin}/portal/tokens")).await;
    browser
        .wait_for_url_containing("/portal/reauth?next=/portal/tokens")
        .await;
    browser.screenshots(&shot("reauth")).await;
    browser.click("#confirm").await;
    browser.wait_for("#create-token").await;
    check_step_up_offline(&inst, "reauth", "", &origin).await;

    // API tokens (admin): one limited to 10.0.0.0/8 is shown once and refused here.
    browser.goto(&format!("{origin}/portal/tokens")).await;
    browser.fill("#label", "payroll").await;
    browser.fill("#allowed", "10.0.0.0/8").await;
    browser.click("#create-token").await;
    browser.wait_for("#secret").await;
    let token = browser.text("#secret").await;
    assert!(token.starts_with("ivan_"), "{token}");
    browser.screenshots(&shot("token")).await;
    assert_eq!(
        server
            .get_auth("/api/v1/submissions", &token)
            .await
            .status(),
        401
    );
    browser.goto(&format!("{origin}/portal/tokens")).await;
    browser.wait_for("table").await;
    assert!(browser.source().await.contains("10.0.0.0/8"));
    browser.screenshots(&shot("tokens")).await;
    // Revoking the employer's first (operator-made) token stops it.
    let first_token = filer.token.split('_').nth(1).unwrap().to_owned();
    browser
        .click(&format!(
            "form[action='/portal/tokens/{first_token}/revoke'] button"
        ))
        .await;
    browser.wait_for_url_containing("done=revoked").await;
    assert_eq!(
        server
            .get_auth("/api/v1/submissions", &filer.token)
            .await
            .status(),
        401
    );

    // The portal in the user's language: chosen on the account page, kept with the
    // user, every page in it (the browser tests take the translated pages too).
    for lang in ["sk", "cs"] {
        choose_language(&browser, &origin, lang).await;
        for (page, path) in [
            ("dashboard", "/portal/dashboard".to_owned()),
            ("submissions", "/portal/submissions".to_owned()),
            ("submission", format!("/portal/submissions/{message_id}")),
            ("tokens", "/portal/tokens".to_owned()),
        ] {
            browser.goto(&format!("{origin}{path}")).await;
            assert_eq!(
                browser
                    .execute("return document.documentElement.lang", vec![])
                    .await,
                lang
            );
            let nav = browser
                .text("header nav a[href='/portal/submissions']")
                .await;
            assert_eq!(nav, message(lang, "nav-submissions"), "{page} in {lang}");
            browser.screenshots(&shot(&format!("{page}-{lang}"))).await;
        }
        browser
            .goto(&format!("{origin}/portal/submissions/{message_id}"))
            .await;
        assert_eq!(
            browser.text("#state").await,
            message(lang, "state-cancelled")
        );
    }
    choose_language(&browser, &origin, "en").await;
    // Before sign-in the browser's Accept-Language decides.
    let sign_in = server
        .http
        .get(server.url("/portal/sign-in"))
        .header("accept-language", "cs-CZ,cs;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sign_in.contains("<html lang=\"cs\">"), "{sign_in}");
    assert!(
        sign_in.contains(&message("cs", "sign-in-button")),
        "{sign_in}"
    );

    // Another employer's ids answer 404 on every portal route, like unknown ids; a
    // form without the CSRF token is refused and changes nothing.
    let theirs = file_by_api(&inst, &server, &other, 7).await;
    let cookie = browser
        .client()
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "ivan_portal")
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let session = format!("ivan_portal={}", cookie.value());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = server.url("");
    for path in [
        format!("/portal/submissions/{theirs}"),
        format!("/portal/submissions/{theirs}/original"),
        format!("/portal/submissions/{theirs}/receipt"),
        format!("/portal/submissions/{theirs}/answers/1"),
        format!("/portal/preregistrations/{theirs}/registration-form"),
        "/portal/submissions/01900000-0000-7000-8000-000000000000".to_owned(),
        "/portal/no-such-page".to_owned(),
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "GET {path}");
        // A portal page with the navigation, in the user's words (was: raw JSON for
        // an unknown address).
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<nav") && body.contains("href=\"/portal/submissions\""),
            "{body}"
        );
        assert!(body.contains("<h1>Not found</h1>"), "{body}");
    }
    browser.goto(&format!("{origin}/portal/no-such-page")).await;
    browser.screenshots(&shot("not-found")).await;
    let csrf = {
        let page = http
            .get(format!("{base}/portal/upload"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
        page[at..at + page[at..].find('"').unwrap()].to_owned()
    };
    let their_phone: Value = server
        .http
        .post(server.url("/api/v1/phone-accesses"))
        .bearer_auth(&other.token)
        .json(&serde_json::json!({"phone": "+421907000111", "holder_name": "Other"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let their_phone = their_phone["id"].as_str().unwrap().to_owned();
    let their_token = other.token.split('_').nth(1).unwrap().to_owned();
    for (path, with_csrf) in [
        (format!("/portal/submissions/{theirs}/cancel"), true),
        (format!("/portal/phones/{their_phone}/pin"), true),
        (format!("/portal/phones/{their_phone}/send"), true),
        (format!("/portal/phones/{their_phone}/deactivate"), true),
        (format!("/portal/tokens/{their_token}/revoke"), true),
        (format!("/portal/uploads/{second_id}/discard"), false),
        ("/portal/sign-out".to_owned(), false),
    ] {
        let form = if with_csrf {
            format!("csrf={csrf}&ceremony=x&credential=%7B%7D")
        } else {
            "ceremony=x&credential=%7B%7D".to_owned()
        };
        let r = http
            .post(format!("{base}{path}"))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        let want = if with_csrf { 404 } else { 403 };
        assert_eq!(r.status(), want, "POST {path}");
    }
    // The refused sign-out left the session alive; the refused discard left the upload.
    let r = http
        .get(format!("{base}/portal/uploads/{second_id}"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Filters: by state, by document number prefix; a bad filter is a 400 page.
    let list = |q: String| {
        let (http, base, session) = (http.clone(), base.clone(), session.clone());
        async move {
            let r = http
                .get(format!("{base}/portal/submissions?{q}"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, cancelled) = list("state=cancelled".into()).await;
    assert_eq!(status, 200);
    assert!(cancelled.contains(&message_id));
    let (_, accepted) = list("state=accepted".into()).await;
    assert!(!accepted.contains(&message_id));
    let (_, by_number) = list(format!("number={}", &number[..5])).await;
    assert!(by_number.contains(&message_id));
    let (_, by_other_number) = list(format!("number={number}9")).await;
    assert!(!by_other_number.contains(&message_id));
    assert_eq!(list("state=bogus".into()).await.0, 400);
    assert_eq!(list("from=yesterday".into()).await.0, 400);
    // Security headers on every page.
    let r = http
        .get(format!("{base}/portal/sign-in"))
        .send()
        .await
        .unwrap();
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");

    let theirs_now: Value = server
        .get_auth_json(&format!("/api/v1/submissions/{theirs}"), &other.token)
        .await;
    assert_eq!(theirs_now["status"], "accepted");
    assert_eq!(
        server
            .get_auth("/api/v1/submissions", &other.token)
            .await
            .status(),
        200,
        "the other employer's token still works"
    );

    // A clerk (invited, enrolled in the same browser) gets no admin pages.
    let clerk_link = invite(&inst, &smtp, &env, &filer, "clerk2@employer.test", "clerk").await;
    browser.goto(&format!("{origin}/portal/dashboard")).await;
    browser.click("header form button").await;
    browser.wait_for_url_containing("/portal/sign-in").await;
    browser.goto(&clerk_link).await;
    browser.click("#register").await;
    browser.wait_for_url_containing("/portal/dashboard").await;
    assert!(!browser.source().await.contains("/portal/phones"));
    for path in ["/portal/phones", "/portal/tokens"] {
        browser.goto(&format!("{origin}{path}")).await;
        let page = browser.source().await;
        assert!(
            page.contains("for the employer's portal admins"),
            "a clerk reached {path}"
        );
        // A refusal keeps the navigation (was: only "Continue").
        assert!(
            page.contains("<nav") && page.contains("clerk2@employer.test"),
            "{page}"
        );
    }
    browser.screenshots(&shot("forbidden")).await;

    // The operator revokes the clerk: the browser's session ends at once.
    let users: Value = serde_json::from_str(
        &inst
            .run_ok(&["admin", "user", "list", "--employer", &filer.id, "--json"])
            .await,
    )
    .unwrap();
    let clerk = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "clerk2@employer.test")
        .unwrap();
    inst.run_ok(&[
        "admin",
        "user",
        "revoke",
        "--user",
        clerk["id"].as_str().unwrap(),
    ])
    .await;
    browser.goto(&format!("{origin}/portal/dashboard")).await;
    browser.wait_for_url_containing("/portal/sign-in").await;

    browser.close().await;
    server.stop().await;
    let log = inst
        .run_ok(&["log", "tail", "--lines", "200", "--json"])
        .await;
    for action in [
        "user.invite",
        "user.enrol",
        "user.sign-in",
        "user.sign-out",
        "user.step-up",
        "user.revoke",
        "api-token.create",
        "api-token.revoke",
        "submission.cancel",
        "mail.send",
    ] {
        assert!(
            log.contains(&format!("\"{action}\"")),
            "no {action} in the log"
        );
    }
    // The mailed secret is in no stored payload (the logged mail has a placeholder).
    let secret = link.rsplit('.').next().unwrap();
    let mut stack = vec![inst.data_dir.join("originals")];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(secret),
                    "the enrolment secret is in {}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 10, "only {files} originals");
    inst.run_ok(&["log", "verify"]).await;
    smtp.stop().await;
}

/// Sessions end after `portal.session_idle_secs` without a request and at their
/// absolute end, whatever happens; an ended session's form post is refused. The
/// sessions are written straight into the database (a session is only a row and a
/// cookie), so no browser is needed.
async fn sessions_end_when_idle_or_too_old(inst: Instance) {
    inst.run_ok(&["migrate"]).await;
    let created: Value = ivan_e2e::filing::add_employer(&inst, "E", "11111111").await;
    let employer = created["id"].as_str().unwrap();
    // In-process on a manual clock: idleness passes when the test says.
    let clock = Arc::new(ManualClock::new());
    let server = inst
        .serve_in_process(
            &[
                ("IVAN_PORTAL__SESSION_IDLE_SECS", "2"),
                ("IVAN_PORTAL__SESSION_ABSOLUTE_SECS", "60"),
                ("IVAN_PORTAL__SIGN_INS_PER_MINUTE_PER_SOURCE", "2"),
            ],
            clock.clone(),
        )
        .await;
    let db = inst.db().await;
    let now = clock.now();
    let user = "01900000-0000-7000-8000-00000000000a";
    retention::on_pool!(&db, pool => {
        sqlx::query("INSERT INTO users (id, employer_id, email, role, webauthn_handle, created_at) \
                     VALUES ($1, $2, 'a@example.test', 'admin', 'h-1', $3)")
            .bind(user).bind(employer).bind(now).execute(pool).await.unwrap();
        // "fresh": just signed in. "old": active a moment ago, but past its absolute end.
        for (secret, created, expires) in [
            ("fresh", now, now + chrono::Duration::seconds(60)),
            ("old", now - chrono::Duration::seconds(120), now - chrono::Duration::seconds(1)),
        ] {
            sqlx::query("INSERT INTO portal_sessions (id_sha256, user_id, passkey_id, csrf_token, \
                         created_at, last_seen_at, expires_at) VALUES ($1, $2, 'k', 'c', $3, $4, $5)")
                .bind(retention::Sha256Hex::of(secret.as_bytes()).as_str())
                .bind(user).bind(created).bind(now).bind(expires)
                .execute(pool).await.unwrap();
        }
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |secret: &'static str| {
        let (http, url) = (http.clone(), server.url("/portal/dashboard"));
        async move {
            http.get(url)
                .header("cookie", format!("ivan_portal={secret}"))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("fresh").await.status(), 200);
    let old = get("old").await;
    assert_eq!(old.status(), 303);
    assert_eq!(old.headers()["location"], "/portal/sign-in");
    assert_eq!(get("nonsense").await.status(), 303);
    // Idle for 1 s: still on; past 2 s: over.
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(get("fresh").await.status(), 200);
    clock.advance(chrono::Duration::seconds(3));
    assert_eq!(get("fresh").await.status(), 303);
    let post = http
        .post(server.url("/portal/sign-out"))
        .header("cookie", "ivan_portal=fresh")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=c")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    let ended: i64 = retention::on_pool!(&db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM portal_sessions WHERE ended_at IS NOT NULL")
        .fetch_one(pool).await)
    .unwrap();
    assert_eq!(ended, 2, "both expired sessions are ended in the database");
    // Sign-in pages are limited per source address.
    for _ in 0..2 {
        let r = http
            .get(server.url("/portal/sign-in"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let limited = http
        .get(server.url("/portal/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    server.stop().await;
}

/// The JSON payload of the newest log entry with `action`.
async fn payload_of(inst: &Instance, action: &str) -> Value {
    let db = inst.db().await;
    let sha: String = retention::on_pool!(&db, pool => sqlx::query_scalar(
        "SELECT payload_sha256 FROM log_entries WHERE action = $1 ORDER BY seq DESC LIMIT 1")
        .bind(action)
        .fetch_one(pool).await)
    .unwrap();
    let path = inst.data_dir.join(format!(
        "originals/sha256/{}/{}/{sha}",
        &sha[0..2],
        &sha[2..4]
    ));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Verifies the newest `user.step-up` like a third party would: the challenge the
/// authenticator signed commits to the action and target, and the signature verifies
/// with the public key logged at enrolment.
async fn check_step_up_offline(inst: &Instance, action: &str, target: &str, origin: &str) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use p256::ecdsa::signature::Verifier;
    use sha2::{Digest, Sha256};
    let step = payload_of(inst, "user.step-up").await;
    assert_eq!(step["action"], action);
    // A re-confirmation names the session (its id hash, which the test does not know).
    let target = if target.is_empty() {
        step["target"].as_str().unwrap().to_owned()
    } else {
        target.to_owned()
    };
    assert_eq!(step["target"], target.as_str());
    let mut preimage = format!("ivan step-up v1\n{action}\n{target}\n").into_bytes();
    preimage.extend(hex::decode(step["nonce"].as_str().unwrap()).unwrap());
    let challenge = Sha256::digest(&preimage);
    let b64 = |k: &str| {
        B64.decode(step["assertion"]["response"][k].as_str().unwrap())
            .unwrap()
    };
    let client_data = b64("clientDataJSON");
    let cd: Value = serde_json::from_slice(&client_data).unwrap();
    assert_eq!(cd["type"], "webauthn.get");
    assert_eq!(cd["origin"], origin);
    assert_eq!(
        B64.decode(cd["challenge"].as_str().unwrap()).unwrap(),
        challenge.to_vec()
    );
    let auth_data = b64("authenticatorData");
    assert_eq!(auth_data[32] & 0x04, 0x04, "user verified");
    let enrol = payload_of(inst, "user.enrol").await;
    assert_eq!(enrol["passkey_id"], step["passkey_id"]);
    let key = &enrol["public_key"]["key"]["EC_EC2"];
    let mut point = vec![4u8];
    point.extend(B64.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(B64.decode(key["y"].as_str().unwrap()).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let sig = p256::ecdsa::Signature::from_der(&b64("signature")).unwrap();
    let mut signed = auth_data.clone();
    signed.extend(Sha256::digest(&client_data));
    vk.verify(&signed, &sig)
        .expect("the assertion verifies with the logged key");
    // …and not for anything else.
    signed[0] ^= 1;
    assert!(vk.verify(&signed, &sig).is_err());
}

/// A compliance officer enrols from the mailed link like an employer's user, lands on
/// the log search, cannot search without grounds (not even by removing the form's
/// `required` attributes), finds a filing's entries, opens its original (logged with
/// the grounds), and gets no employer page; an employer's admin gets no search page.
async fn officer_searches_the_log_on_a_legal_basis(inst: Instance) {
    let backend = format!("{:?}", inst.backend).to_lowercase();
    let shot = |name: &str| format!("{backend}-{name}");
    let filer = set_up(&inst, "55555555").await;
    let (server, smtp, origin, env) = portal(&inst).await;
    let filed = file_by_api(&inst, &server, &filer, 1).await;
    let args = [
        "admin",
        "officer",
        "add",
        "--email",
        "officer@authority.test",
        "--organisation",
        "Audit Office",
        "--json",
    ];
    run_for_portal(&inst, &env, &args).await;
    let link = enrolment_mail(&smtp, "compliance officer of Audit Office").await;

    let browser = Browser::start().await;
    browser.add_virtual_authenticator().await;
    browser.goto(&link).await;
    browser.click("#register").await;
    browser.wait_for_url_containing("/portal/compliance").await;
    assert!(browser.text("h1").await.contains("log search"));
    let page = browser.source().await;
    assert!(page.contains("Audit Office") && !page.contains("/portal/submissions"));
    browser.screenshots(&shot("compliance-search")).await;
    // No employer pages for an officer.
    for path in ["/portal/submissions", "/portal/upload", "/portal/tokens"] {
        browser.goto(&format!("{origin}{path}")).await;
        assert!(
            browser.source().await.contains("for employers' users"),
            "an officer reached {path}"
        );
    }

    // Without grounds the server refuses too, and logs nothing.
    browser.goto(&format!("{origin}/portal/compliance")).await;
    browser
        .execute(
            "document.querySelectorAll('[required]').forEach(e => e.removeAttribute('required'));",
            vec![],
        )
        .await;
    browser.fill("#message_id", &filed).await;
    browser.click("#search").await;
    browser.wait_for(".error").await;
    assert!(browser.text(".error").await.contains("legal basis"));
    let searches = || async {
        inst.run_ok(&["log", "tail", "--lines", "500", "--json"])
            .await
            .lines()
            .filter(|l| l.contains("\"compliance.search\""))
            .count()
    };
    assert_eq!(searches().await, 0);

    // With grounds: the filing's entries, the query's own log position.
    browser
        .fill("#legal_basis", "Social Insurance Act § 12")
        .await;
    browser.fill("#reference_number", "AUD-9").await;
    browser.click("#search").await;
    browser.wait_for("#results").await;
    let results = browser.text("#results").await;
    assert!(results.contains("submission.receive"), "{results}");
    // Who acted, in words (the raw actor in the cell's title).
    assert!(results.contains("payroll software (API)"), "{results}");
    // The filing in words: its document number and its employer's name.
    let filing = browser.text("#results td.filing").await;
    assert!(
        filing.ends_with(" · Test Employer") && filing.len() > " · Test Employer".len(),
        "{filing}"
    );
    assert!(
        results.contains(&format!("submission:{filed}")),
        "{results}"
    );
    assert!(
        browser
            .text("#audit")
            .await
            .contains("recorded as log entry")
    );
    browser.screenshots(&shot("compliance-results")).await;
    assert_eq!(searches().await, 1);
    // Opening the original is logged with the grounds.
    browser.click("#results form button").await;
    let read = eventually(30, "the officer's original.read", || async {
        inst.run_ok(&["log", "tail", "--lines", "500", "--json"])
            .await
            .lines()
            .find(|l| l.contains("\"original.read\"") && l.contains(&format!("submission:{filed}")))
            .map(str::to_owned)
    })
    .await;
    assert!(read.contains("\"user:"), "{read}");
    browser.close().await;

    // An employer's admin gets no search page.
    let admin_link = invite(&inst, &smtp, &env, &filer, "admin@employer.test", "admin").await;
    let browser = Browser::start().await;
    browser.add_virtual_authenticator().await;
    browser.goto(&admin_link).await;
    browser.click("#register").await;
    browser.wait_for_url_containing("/portal/dashboard").await;
    assert!(!browser.source().await.contains("/portal/compliance"));
    browser.goto(&format!("{origin}/portal/compliance")).await;
    assert!(browser.source().await.contains("for compliance officers"));
    browser.close().await;

    server.stop().await;
    inst.run_ok(&["log", "verify"]).await;
    smtp.stop().await;
}
