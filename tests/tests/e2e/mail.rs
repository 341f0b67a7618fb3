//! E-mail end to end: the real `ivan serve` sends receipts, the authority's answers and
//! overdue warnings through a real SMTP server (aiosmtpd), each recorded in the log;
//! the development file sink works without any server.

use ivan_e2e::filing::{Filer, file_signed, report, set_up};
use ivan_e2e::{Instance, SandboxAuthority, Server, SmtpSink, e2e_tests, eventually};
use retention::on_pool;

e2e_tests!(
    receipts_answers_and_overdue_warnings_are_mailed,
    the_development_file_sink_needs_no_server,
    enrolment_links_point_at_the_server_not_at_the_command,
    invitations_are_in_the_users_language,
    employers_mail_is_in_their_language,
);

async fn set_email(inst: &Instance, filer: &Filer, email: &str) {
    let v = ivan_e2e::filing::set_notify_email(inst, filer, email).await;
    assert_eq!(v["notify_email"], email);
    // A bad address is refused, and changes nothing.
    let bad = inst
        .run(&[
            "admin",
            "employer",
            "set-email",
            "--employer",
            &filer.id,
            "--email",
            "nope",
        ])
        .await;
    assert_eq!(bad.status.code(), Some(1));
}

async fn file(inst: &Instance, server: &Server, filer: &Filer, reference: u32) -> String {
    file_signed(inst, server, filer, &report(&filer.registration, reference)).await
}

async fn receipts_answers_and_overdue_warnings_are_mailed(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    set_email(&inst, &filer, "clerk@employer.test").await;
    let smtp = SmtpSink::start(inst.dir.path()).await;
    let sandbox = SandboxAuthority::start(
        inst.dir.path(),
        &["--down-for-secs", "8", "--process-after-ms", "100"],
        reqwest::Client::new(),
    )
    .await;
    let port = smtp.port.to_string();
    let server = inst
        .serve_with(&[
            ("IVAN_INTAKE__HOLD_WINDOW_SECS", "0"),
            ("IVAN_AUTHORITY__MODE", "remote"),
            ("IVAN_AUTHORITY__BASE_URL", &sandbox.base),
            ("IVAN_FORWARDING__RETRY_BASE_MS", "100"),
            ("IVAN_FORWARDING__RETRY_CAP_SECS", "1"),
            ("IVAN_FORWARDING__POLL_INTERVAL_MS", "200"),
            ("IVAN_FORWARDING__OUTAGE_PROBE_CAP_SECS", "1"),
            ("IVAN_FORWARDING__DEADLINE_SECS", "2"),
            ("IVAN_MAIL__TRANSPORT", "smtp"),
            ("IVAN_MAIL__SMTP_HOST", "127.0.0.1"),
            ("IVAN_MAIL__SMTP_PORT", &port),
            ("IVAN_MAIL__SMTP_SECURITY", "none"),
            ("IVAN_MAIL__OPERATOR", "ops@ivan.test"),
            ("IVAN_MAIL__IDLE_MS", "100"),
        ])
        .await;
    let id = file(&inst, &server, &filer, 1).await;
    // Receipt, overdue (employer and operator) while the authority is down, answer.
    let mails = eventually(60, &format!("four mails: {}", server.log()), || async {
        let m = smtp.messages();
        (m.len() >= 4 && m.iter().any(|t| t.contains("Authority answer"))).then_some(m)
    })
    .await;
    let find = |subject: &str, to: &str| {
        mails
            .iter()
            .find(|m| m.contains(subject) && m.contains(&format!("X-Envelope-To: {to}")))
            .unwrap_or_else(|| panic!("no {subject:?} to {to}: {mails:#?}"))
    };
    let receipt = find(&format!("Filing received: {id}"), "clerk@employer.test");
    assert!(receipt.contains("accepted as V"), "{receipt}");
    find(
        &format!("Forwarding overdue: filing {id}"),
        "clerk@employer.test",
    );
    find(&format!("Forwarding overdue: filing {id}"), "ops@ivan.test");
    let answer = find(
        &format!("Authority answer for filing {id}"),
        "clerk@employer.test",
    );
    // The final state in words, as the portal shows it.
    assert!(answer.contains("Processed by the authority"), "{answer}");
    assert!(server.stop().await.success());
    // Each message sent is in the log, with the message as its payload.
    let db = inst.db().await;
    let sent: i64 = on_pool!(&db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM log_entries WHERE action = 'mail.send' AND payload_sha256 IS NOT NULL"
    ).fetch_one(pool).await)
    .unwrap();
    let unsent: i64 = on_pool!(&db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL"
    ).fetch_one(pool).await)
    .unwrap();
    db.close().await;
    assert_eq!(sent, 4);
    assert_eq!(unsent, 0);
    assert_eq!(smtp.messages().len(), 4, "each mail sent once");
    inst.run_ok(&["log", "verify"]).await;
    smtp.stop().await;
    sandbox.stop().await;
}

async fn the_development_file_sink_needs_no_server(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    set_email(&inst, &filer, "clerk@employer.test").await;
    let server = inst.serve_with(&[("IVAN_MAIL__IDLE_MS", "100")]).await;
    let id = file(&inst, &server, &filer, 2).await;
    let text = eventually(30, "the receipt in the file sink", || async {
        let text = ivan_e2e::dev_mail(&inst.data_dir);
        text.contains(&format!("Filing received: {id}"))
            .then_some(text)
    })
    .await;
    // Times in mails as in the portal: minutes, in the employers' zone.
    let line = text
        .lines()
        .find(|l| l.contains("was received and accepted"))
        .unwrap();
    let at = &line[line.find(" at ").unwrap() + 4..];
    assert!(
        chrono::NaiveDateTime::parse_from_str(&at[..16], "%Y-%m-%d %H:%M").is_ok(),
        "{line}"
    );
    assert!(
        at[16..].starts_with(" CET") || at[16..].starts_with(" CEST"),
        "{line}"
    );
    assert!(server.stop().await.success());
}

/// Runs `ivan ARGS` with `env` added, asserting success; returns stderr.
async fn run_env(inst: &Instance, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = inst.command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ivan {args:?}: {stderr}");
    stderr
}

/// The origins of the enrolment links in the file sink (quoted-printable undone).
fn enrolment_origins(data_dir: &std::path::Path) -> Vec<String> {
    // The dev sink's messages are 8-bit text: links as sent, no quoted-printable.
    let text = ivan_e2e::dev_mail(data_dir);
    text.match_indices("/portal/enrol?token=")
        .map(|(at, _)| {
            let before = &text[..at];
            let start = before
                .rfind(|c: char| c.is_whitespace())
                .map_or(0, |i| i + 1);
            before[start..].to_owned()
        })
        .collect()
}

/// `ivan admin user invite` and `ivan admin officer add` run as commands beside the
/// server, without its listen address or `portal.public_url`: their mailed links use
/// the origin the running server recorded, not the command's own default
/// (`http://localhost:8080`); before any server has run they warn; a configured
/// `portal.public_url` wins.
async fn enrolment_links_point_at_the_server_not_at_the_command(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let invite = |email: &'static str| {
        [
            "admin",
            "user",
            "invite",
            "--employer",
            filer.id.as_str(),
            "--email",
            email,
            "--role",
            "clerk",
        ]
    };

    // No server has run on this database yet: the link is a guess, and says so.
    let stderr = run_env(&inst, &invite("early@employer.test"), &[]).await;
    assert!(
        stderr.contains("warning") && stderr.contains("portal.public_url"),
        "{stderr}"
    );

    let server = inst.serve_with(&[("IVAN_MAIL__IDLE_MS", "100")]).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let origin = format!("http://localhost:{port}");
    let stderr = run_env(&inst, &invite("clerk@employer.test"), &[]).await;
    assert!(!stderr.contains("warning"), "{stderr}");
    let stderr = run_env(
        &inst,
        &[
            "admin",
            "officer",
            "add",
            "--email",
            "auditor@authority.test",
            "--organisation",
            "Audit",
        ],
        &[],
    )
    .await;
    assert!(!stderr.contains("warning"), "{stderr}");
    run_env(
        &inst,
        &invite("other@employer.test"),
        &[("IVAN_PORTAL__PUBLIC_URL", "https://portal.example.test")],
    )
    .await;

    let origins = eventually(30, "four enrolment mails in the file sink", || async {
        let o = enrolment_origins(&inst.data_dir);
        (o.len() == 4).then_some(o)
    })
    .await;
    let count = |o: &str| origins.iter().filter(|x| x.as_str() == o).count();
    assert_eq!(
        count(&origin),
        if port == "8080" { 3 } else { 2 },
        "{origins:?}"
    );
    assert_eq!(count("https://portal.example.test"), 1, "{origins:?}");
    // The README's way to find the link works: one whole line of a `.eml` file,
    // and `ivan serve` (development sink) prints it too.
    let text = ivan_e2e::dev_mail(&inst.data_dir);
    let line = text
        .lines()
        .find(|l| l.contains(&format!("{origin}/portal/enrol?token=")))
        .unwrap_or_else(|| panic!("no whole enrolment link line in {text}"));
    let link = line.trim();
    assert!(!link.contains("=3D") && !link.ends_with('='), "{link}");
    let log = server.log();
    assert!(log.contains(&format!("dev mail link: {link}")), "{log}");
    assert!(server.stop().await.success());
}

/// `user invite --language sk`: the invitation is in Slovak, and so is the user's
/// portal from its first page; an unknown language is refused.
async fn invitations_are_in_the_users_language(inst: Instance) {
    set_up(&inst, "12345678").await;
    let server = inst.serve_with(&[("IVAN_MAIL__IDLE_MS", "100")]).await;
    let invite = |email: &'static str, lang: &'static str| {
        [
            "admin",
            "user",
            "invite",
            "--employer",
            "12345678",
            "--email",
            email,
            "--role",
            "clerk",
            "--language",
            lang,
        ]
    };
    let out = inst.run(&invite("x@employer.test", "de")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one of en, sk, cs"));
    inst.run_ok(&invite("jana@employer.test", "sk")).await;
    inst.run_ok(&invite("petr@employer.test", "cs")).await;
    let text = eventually(30, "two invitations in the file sink", || async {
        let text = ivan_e2e::dev_mail(&inst.data_dir);
        (text.matches("/portal/enrol?token=").count() == 2).then_some(text)
    })
    .await;
    assert!(
        text.contains(
            "Pozývame Vás do portálu zamestnávateľov ivan ako referent (jana@employer.test)."
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "Zveme Vás do portálu zaměstnavatelů ivan jako referent (petr@employer.test)."
        ),
        "{text}"
    );
    // Times in the mail as everywhere: minutes, the employers' zone.
    assert!(text.contains(" CET:") || text.contains(" CEST:"), "{text}");
    assert_eq!(
        inst.count(
            "SELECT COUNT(*) FROM users WHERE email = 'jana@employer.test' AND language = 'sk'"
        )
        .await,
        1
    );
    assert!(server.stop().await.success());
}

/// `employer set-language --language sk`: the employer's mail (here the receipt) is
/// in Slovak from then on; the setting is logged; an unknown language is refused.
async fn employers_mail_is_in_their_language(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    set_email(&inst, &filer, "clerk@employer.test").await;
    let set = |lang: &'static str| {
        [
            "admin",
            "employer",
            "set-language",
            "--employer",
            "12345678",
            "--language",
            lang,
            "--json",
        ]
    };
    let out = inst.run(&set("de")).await;
    assert_eq!(out.status.code(), Some(1));
    let done: serde_json::Value = serde_json::from_str(&inst.run_ok(&set("sk")).await).unwrap();
    assert_eq!(done["language"], "sk");
    assert_eq!(done["id"], filer.id.as_str());
    let server = inst.serve_with(&[("IVAN_MAIL__IDLE_MS", "100")]).await;
    let id = file(&inst, &server, &filer, 3).await;
    let text = eventually(30, "the Slovak receipt in the file sink", || async {
        let text = ivan_e2e::dev_mail(&inst.data_dir);
        text.contains(&format!("Identifikátor správy: {id}"))
            .then_some(text)
    })
    .await;
    assert!(text.contains("bolo prijaté pod číslom"), "{text}");
    assert!(!text.contains("was received and accepted"), "{text}");
    let log = inst
        .run_ok(&["log", "tail", "--json", "--lines", "50"])
        .await;
    assert!(log.contains("\"employer.set-language\""), "{log}");
    assert!(server.stop().await.success());
}
