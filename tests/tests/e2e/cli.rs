//! The command line as an operator meets it (issue 22): help for every flag with
//! the global ones apart, `--employer` by registration number, unknown employers as
//! errors, plain configuration errors all at once, no panic on a closed pipe, and
//! `dev keys` printing paths.

use std::process::Stdio;

use ivan_e2e::{Backend, Instance};
use serde_json::Value;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn employers_are_named_by_id_or_registration_number_and_unknown_is_an_error() {
    let inst = Instance::new(Backend::Sqlite).await;
    let filer = ivan_e2e::filing::set_up(&inst, "EMP-0041").await;

    // Unknown: exit 1 naming it (was: an empty list, exit 0).
    for args in [
        &["admin", "user", "list", "--employer", "EMP-0042"][..],
        &["admin", "token", "list", "--employer", "EMP-0042"],
        &[
            "admin",
            "hold",
            "add",
            "--employer",
            "EMP-0042",
            "--reason",
            "case 1",
        ],
    ] {
        let out = inst.run(args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no employer with id or registration number \"EMP-0042\""),
            "{args:?}: {}",
            stderr(&out)
        );
    }

    // By registration number and by id, the same employer.
    let by_id: Value = serde_json::from_str(
        &inst
            .run_ok(&["admin", "token", "list", "--employer", &filer.id, "--json"])
            .await,
    )
    .unwrap();
    let by_number: Value = serde_json::from_str(
        &inst
            .run_ok(&["admin", "token", "list", "--employer", "EMP-0041", "--json"])
            .await,
    )
    .unwrap();
    assert_eq!(by_id, by_number);
    assert_eq!(by_id.as_array().unwrap().len(), 1, "{by_id}");
    let invited: Value = serde_json::from_str(
        &inst
            .run_ok(&[
                "admin",
                "user",
                "invite",
                "--employer",
                "EMP-0041",
                "--email",
                "clerk@example.test",
                "--role",
                "clerk",
                "--json",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(
        invited["user"]["employer_id"],
        filer.id.as_str(),
        "{invited}"
    );
}

/// `ivan … --json | head -c1`: the reader goes away before the command writes; the
/// command still does its work, exits 0, and does not panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_pipe_is_not_a_panic_and_the_work_is_done() {
    let inst = Instance::new(Backend::Sqlite).await;
    let filer = ivan_e2e::filing::set_up(&inst, "EMP-0043").await;
    let mut cmd = inst.command(&[
        "admin",
        "hold",
        "add",
        "--employer",
        "EMP-0043",
        "--reason",
        "case 2",
        "--json",
    ]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .spawn()
        .unwrap();
    // Close the read end at once: every write of the command meets a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{}: {err}", out.status);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    let holds: Value =
        serde_json::from_str(&inst.run_ok(&["admin", "hold", "list", "--json"]).await).unwrap();
    let holds = holds.as_array().unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0]["target"], filer.id.as_str(), "{holds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_global_flags_apart_and_every_flag_explains_itself() {
    let inst = Instance::new(Backend::Sqlite).await;
    let help = inst.run_ok(&["admin", "user", "list", "--help"]).await;
    let (own, global) = help.split_once("Global options (any command):").unwrap();
    assert!(
        own.contains(
            "--employer <EMPLOYER>  Only this employer's users (its id or registration number)"
        ),
        "{help}"
    );
    assert!(!own.contains("--data-dir"), "{help}");
    assert!(global.contains("--data-dir <DIR>"), "{help}");
    assert_eq!(help.matches("[env: IVAN_CONFIG").count(), 1, "{help}");
}

/// `dev keys` prints where it wrote what, not a debug dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_keys_prints_paths() {
    let inst = Instance::new(Backend::Sqlite).await;
    let out = inst.run_ok(&["dev", "keys", "pki"]).await;
    assert!(!out.contains('{') && !out.contains("DevPki"), "{out}");
    for (label, file) in [
        ("CA certificate:", "pki/ca.pem"),
        ("employer key:", "pki/employer.key"),
        ("CRL:", "pki/crl.pem"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("{label} in {out}"));
        assert!(line.trim_end().ends_with(file), "{line}");
        assert!(inst.dir.path().join(file).is_file(), "{file}");
    }
}

/// Configuration problems in the configuration's own words, and in production all
/// of them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_are_plain_and_reported_together() {
    let inst = Instance::new(Backend::Sqlite).await;
    let out = inst
        .run_with(
            &[("IVAN_INTAKE__MAX_DOCUMENT_BYTES", "lots")],
            &["config", "check"],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: config: environment variable IVAN_INTAKE__MAX_DOCUMENT_BYTES: expected a whole number ≥ 0, found string \"lots\""
    );
    let file = inst.dir.path().join("ivan.toml");
    std::fs::write(&file, "[intake]\nmax_document_bytes = \"x\"\n").unwrap();
    let out = inst
        .run(&["--config", file.to_str().unwrap(), "config", "check"])
        .await;
    let err = stderr(&out);
    assert!(
        err.contains("ivan.toml: intake.max_document_bytes: expected a whole number"),
        "{err}"
    );
    assert!(!err.contains("default.") && !err.contains("usize"), "{err}");

    let out = inst
        .run_with(&[("IVAN_ENVIRONMENT", "production")], &["config", "check"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: config: 4 problems:\n"), "{err}");
    for part in [
        "authority.mode",
        "mail.transport",
        "SMS dev outbox",
        "portal.public_url",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
}
