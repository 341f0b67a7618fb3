//! Employer API tokens end to end: the operator creates, lists and revokes them with
//! the real `ivan` binary; the running server accepts a token with an IP allow-list
//! only from inside it, any other token from anywhere, and a revoked one never; each
//! creation and revocation is in the log, which still verifies.

use ivan_e2e::{Instance, Server, e2e_tests};
use serde_json::Value;

e2e_tests!(
    tokens_are_created_limited_by_address_listed_and_revoked,
    forwarded_addresses_count_only_from_trusted_proxies,
    failed_token_attempts_are_logged_per_source_and_hour,
);

/// `GET /api/v1/submissions` with `token`: the status code.
async fn api_status(server: &Server, token: &str) -> u16 {
    server
        .get_auth("/api/v1/submissions", token)
        .await
        .status()
        .as_u16()
}

async fn create_json(inst: &Instance, employer: &str, label: &str, allow: &[&str]) -> Value {
    let mut args = vec![
        "admin",
        "token",
        "create",
        "--employer",
        employer,
        "--label",
        label,
        "--json",
    ];
    for a in allow {
        args.extend(["--allow", a]);
    }
    serde_json::from_str(&inst.run_ok(&args).await).unwrap()
}

async fn tokens_are_created_limited_by_address_listed_and_revoked(inst: Instance) {
    inst.run_ok(&["migrate"]).await;
    let employer: Value = ivan_e2e::filing::add_employer(&inst, "Token Employer", "T-1").await;
    let eid = employer["id"].as_str().unwrap();
    let initial = employer["api_token"].as_str().unwrap();

    // A token usable only from 10.0.0.0/8 (the tests talk from 127.0.0.1).
    let far = create_json(&inst, eid, "far away", &["10.0.0.0/8"]).await;
    assert_eq!(far["allowed_ips"], serde_json::json!(["10.0.0.0/8"]));
    assert_eq!(far["label"], "far away");
    assert_eq!(far["employer_id"], eid);
    let far_id = far["id"].as_str().unwrap();
    let far_token = far["api_token"].as_str().unwrap();
    assert!(far_token.starts_with(&format!("ivan_{far_id}_")));

    // One allowed from this host, made with the plain (not JSON) output: the token
    // is printed once, with the hint to store it.
    let out = inst
        .run(&[
            "admin",
            "token",
            "create",
            "--employer",
            eid,
            "--label",
            "local",
            "--allow",
            "127.0.0.1",
        ])
        .await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Store the API token now"),
        "{out:?}"
    );
    assert!(stdout.contains("127.0.0.1/32"), "{stdout}");
    let local_token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("api token:"))
        .unwrap_or_else(|| panic!("no token in {stdout}"))
        .trim()
        .to_owned();
    let local_id = local_token.split('_').nth(1).unwrap().to_owned();

    // One without an allow-list.
    let open = create_json(&inst, eid, "open", &[]).await;
    assert_eq!(open["allowed_ips"], serde_json::json!([]));
    let open_id = open["id"].as_str().unwrap();
    let open_token = open["api_token"].as_str().unwrap();

    // A bad block is refused with a message naming it; so is an unknown employer.
    for (args, says) in [
        (
            vec!["--employer", eid, "--label", "x", "--allow", "10.0.0.0/33"],
            "10.0.0.0/33",
        ),
        (
            vec!["--employer", eid, "--label", "x", "--allow", "not-an-ip"],
            "not-an-ip",
        ),
        (
            vec!["--employer", "no-such-employer", "--label", "x"],
            "no employer",
        ),
    ] {
        let mut full = vec!["admin", "token", "create"];
        full.extend(args);
        let out = inst.run(&full).await;
        assert_eq!(out.status.code(), Some(1), "{full:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{full:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{full:?}: nothing printed on stdout");
    }

    let server = inst.serve().await;
    assert_eq!(api_status(&server, far_token).await, 401);
    let refused = server.get_auth("/api/v1/submissions", far_token).await;
    assert_eq!(
        refused.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer"
    );
    assert_eq!(api_status(&server, &local_token).await, 200);
    assert_eq!(api_status(&server, open_token).await, 200);
    assert_eq!(api_status(&server, initial).await, 200);
    assert!(
        server.log().contains(far_id),
        "the refusal names the token: {}",
        server.log()
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ivan_api_token_ip_refused_total") && l.ends_with(" 2")),
        "{metrics}"
    );

    // Revoked beside the running server: refused from the next request on.
    let revoke = |token| {
        [
            "admin",
            "token",
            "revoke",
            "--employer",
            eid,
            "--token",
            token,
        ]
    };
    let revoked = inst
        .run_ok(&[&revoke(open_id)[..], &["--json"]].concat())
        .await;
    let revoked: Value = serde_json::from_str(&revoked).unwrap();
    assert_eq!(revoked["id"], open_id);
    assert!(revoked["log_seq"].as_i64().unwrap() > 0);
    assert_eq!(api_status(&server, open_token).await, 401);
    assert_eq!(api_status(&server, &local_token).await, 200);
    // Twice is a conflict; another employer's (or no) token is not found.
    let again = inst.run(&revoke(open_id)).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already revoked"));
    let unknown = inst.run(&revoke("0000000000000000")).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("has no API token"));
    assert!(server.stop().await.success());

    let list: Vec<Value> = serde_json::from_str(
        &inst
            .run_ok(&["admin", "token", "list", "--employer", eid, "--json"])
            .await,
    )
    .unwrap();
    assert_eq!(list.len(), 4, "{list:#?}");
    let find = |id: &str| {
        list.iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {list:#?}"))
    };
    let (far_row, local_row, open_row) = (find(far_id), find(&local_id), find(open_id));
    assert_eq!(far_row["label"], "far away");
    assert_eq!(far_row["allowed_ips"], serde_json::json!(["10.0.0.0/8"]));
    assert!(far_row["revoked_at"].is_null());
    assert_eq!(local_row["label"], "local");
    assert_eq!(
        local_row["allowed_ips"],
        serde_json::json!(["127.0.0.1/32"])
    );
    assert!(local_row["revoked_at"].is_null());
    assert_eq!(open_row["label"], "open");
    assert!(open_row["revoked_at"].is_string(), "{open_row}");
    for t in &list {
        assert_eq!(t["created_by"], "operator:e2e-operator");
        assert!(t.get("secret_sha256").is_none() && t.get("api_token").is_none());
    }
    assert_eq!(list[0]["id"], open_id, "newest first");
    assert_eq!(list[3]["label"], "initial");
    let text = inst
        .run_ok(&["admin", "token", "list", "--employer", eid])
        .await;
    assert!(
        text.contains(far_id) && text.contains("10.0.0.0/8") && text.contains("any address"),
        "{text}"
    );

    inst.run_ok(&["log", "verify"]).await;
    let tail = inst.run_ok(&["log", "tail", "--json", "-n", "100"]).await;
    let entries: Vec<Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |action: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action)
            .collect::<Vec<_>>()
    };
    let (created, revokes) = (of("api-token.create"), of("api-token.revoke"));
    assert_eq!(created.len(), 3, "the refused creations wrote nothing");
    assert_eq!(revokes.len(), 1, "the refused revocations wrote nothing");
    for e in created.iter().chain(&revokes) {
        assert_eq!(e["subject"], format!("employer:{eid}"));
        assert_eq!(e["actor"], "operator:e2e-operator");
        assert!(e["payload_sha256"].is_string());
    }
    assert_eq!(revokes[0]["seq"], revoked["log_seq"]);
    // No token is anywhere in the data dir (database file, originals): only hashes.
    let mut dirs = vec![inst.data_dir.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let bytes = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            for token in [initial, far_token, local_token.as_str(), open_token] {
                let secret = token.splitn(3, '_').nth(2).unwrap();
                assert!(!bytes.contains(secret), "{} holds a token", path.display());
            }
        }
    }
}

/// `GET /api/v1/submissions` with `token` and an `X-Forwarded-For` header.
async fn forwarded_status(server: &Server, token: &str, xff: &str) -> u16 {
    server
        .http
        .get(server.url("/api/v1/submissions"))
        .bearer_auth(token)
        .header("x-forwarded-for", xff)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Behind a reverse proxy (`http.trusted_proxies`), an allow-listed token is judged
/// by the address the proxy forwarded; a client that is not a trusted proxy cannot
/// claim an address with `X-Forwarded-For`.
async fn forwarded_addresses_count_only_from_trusted_proxies(inst: Instance) {
    inst.run_ok(&["migrate"]).await;
    let employer: Value = ivan_e2e::filing::add_employer(&inst, "E", "22222222").await;
    let id = employer["id"].as_str().unwrap();
    let created = create_json(&inst, id, "payroll", &["198.51.100.0/24"]).await;
    let token = created["api_token"].as_str().unwrap();

    // No trusted proxy: the header is ignored, the peer (loopback) is outside.
    let direct = inst.serve().await;
    assert_eq!(forwarded_status(&direct, token, "198.51.100.7").await, 401);
    direct.stop().await;

    // Loopback is the trusted proxy: the forwarded address counts, read from the right.
    let proxied = inst
        .serve_with(&[("IVAN_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]")])
        .await;
    assert_eq!(
        api_status(&proxied, token).await,
        401,
        "the proxy itself is outside"
    );
    assert_eq!(forwarded_status(&proxied, token, "198.51.100.7").await, 200);
    assert_eq!(
        forwarded_status(&proxied, token, "198.51.100.7, 127.0.0.1").await,
        200
    );
    // What the client wrote before the proxy appended its peer does not count.
    assert_eq!(
        forwarded_status(&proxied, token, "198.51.100.7, 203.0.113.1").await,
        401
    );
    proxied.stop().await;
}

/// Wrong employer and officer tokens are counted per source and hour, as the alert
/// metric and, at the latest when the server stops, as one `auth.failures` entry per
/// source and kind of token with the count; a request with no token is not counted.
async fn failed_token_attempts_are_logged_per_source_and_hour(inst: Instance) {
    let server = inst.serve().await;
    for _ in 0..3 {
        assert_eq!(api_status(&server, "ivan_nosuchtoken_secret").await, 401);
    }
    for _ in 0..2 {
        let r = server
            .get_auth(
                "/api/v1/compliance/log?legal_basis=x&reference_number=y",
                "ivan-officer_no_such",
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(server.get("/api/v1/submissions").await.status(), 401);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    for line in [
        "ivan_auth_failures_total{kind=\"api-token\"} 3",
        "ivan_auth_failures_total{kind=\"officer-token\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    assert!(server.stop().await.success());
    let tail = inst.run_ok(&["log", "tail", "--json", "-n", "1000"]).await;
    let entries: Vec<Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["action"] == "auth.failures")
        .collect();
    assert_eq!(entries.len(), 2, "{tail}");
    let mut counts = Vec::new();
    for e in &entries {
        assert_eq!(e["subject"], "source:127.0.0.1");
        assert_eq!(e["actor"], "system:ivan");
        let sha = e["payload_sha256"].as_str().unwrap();
        let path = inst.data_dir.join(format!(
            "originals/sha256/{}/{}/{sha}",
            &sha[..2],
            &sha[2..4]
        ));
        let payload: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let hour = payload["hour"].as_str().unwrap();
        assert!(hour.ends_with(":00:00.000000Z"), "{hour}");
        counts.push((
            payload["kind"].as_str().unwrap().to_owned(),
            payload["count"].as_u64().unwrap(),
        ));
    }
    counts.sort();
    assert_eq!(
        counts,
        [("api-token".to_owned(), 3), ("officer-token".to_owned(), 2)]
    );
    assert!(inst.run_ok(&["log", "verify"]).await.starts_with("log OK"));
}
