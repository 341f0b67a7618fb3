//! The HTTP gateway against a tiny axum server on 127.0.0.1:0, and the file outbox.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::post;
use sms_adapter::testing::ClosedPort;
use sms_adapter::{Error, HttpGatewayConfig, Secret, Sms, SmsConfig, SmsSender, build};

const LIMIT: Duration = Duration::from_secs(20);
const TO: &str = "+420601123456";

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: serde_json::Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn record(log: &Log, path: &str, headers: &HeaderMap, body: serde_json::Value) {
    log.lock().unwrap().push(Seen {
        path: path.to_owned(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        body,
    });
}

/// Starts the fake gateway; the task ends with the test's runtime.
async fn gateway() -> (String, Log) {
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .route(
            "/ok",
            post(|State(log): State<Log>, h: HeaderMap, Json(b): Json<serde_json::Value>| async move {
                record(&log, "/ok", &h, b).await;
                Json(serde_json::json!({"id": "gw-1", "status": "queued"}))
            }),
        )
        .route(
            "/message_id",
            post(|State(log): State<Log>, h: HeaderMap, Json(b): Json<serde_json::Value>| async move {
                record(&log, "/message_id", &h, b).await;
                (StatusCode::ACCEPTED, Json(serde_json::json!({"message_id": 42})))
            }),
        )
        .route(
            "/bad",
            post(|| async { (StatusCode::BAD_REQUEST, "invalid number") }),
        )
        .route(
            "/unavailable",
            post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "try later") }),
        )
        .route(
            "/too-many",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .route("/garbage", post(|| async { "not json" }))
        .route(
            "/huge",
            post(|| async { (StatusCode::BAD_REQUEST, "x".repeat(1_000_000)) }),
        )
        .route(
            "/redirect",
            post(|| async { Redirect::temporary("/ok").into_response() }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(serde_json::json!({"id": "late"}))
            }),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), log)
}

fn http(url: String, token: Option<&str>, from: Option<&str>) -> Arc<dyn SmsSender> {
    build(&SmsConfig::HttpGateway(HttpGatewayConfig {
        url,
        bearer_token: token.map(Secret::new),
        from: from.map(str::to_owned),
        timeout_ms: 500,
    }))
    .unwrap()
}

#[tokio::test]
async fn gateway_accepts_with_id_and_gets_bearer_and_body() {
    tokio::time::timeout(LIMIT, async {
        let (base, log) = gateway().await;
        let sender = http(format!("{base}/ok"), Some("tok-123"), Some("IVAN"));
        assert_eq!(sender.name(), "http_gateway");
        let sent = sender.send(&Sms::new(TO, "Dobrý den")).await.unwrap();
        assert_eq!(sent.transport, "http_gateway");
        assert_eq!(sent.message_id, "gw-1");

        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/ok");
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok-123"));
        assert_eq!(
            seen[0].body,
            serde_json::json!({"to": TO, "text": "Dobrý den", "from": "IVAN"})
        );

        // Numeric message_id, no token, no from.
        let sender = http(format!("{base}/message_id"), None, None);
        let sent = sender.send(&Sms::new(TO, "hi")).await.unwrap();
        assert_eq!(sent.message_id, "42");
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen[1].authorization, None);
        assert_eq!(seen[1].body, serde_json::json!({"to": TO, "text": "hi"}));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn gateway_errors_are_classified() {
    tokio::time::timeout(LIMIT, async {
        let (base, log) = gateway().await;
        let sms = Sms::new(TO, "hello");

        let err = http(format!("{base}/bad"), None, None)
            .send(&sms)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::HttpStatus { status: 400, .. }),
            "{err:?}"
        );
        assert!(err.is_permanent());
        assert!(err.to_string().contains("invalid number"), "{err}");

        let err = http(format!("{base}/unavailable"), None, None)
            .send(&sms)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::HttpStatus { status: 503, .. }),
            "{err:?}"
        );
        assert!(err.is_transient());

        let err = http(format!("{base}/too-many"), None, None)
            .send(&sms)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::HttpStatus { status: 429, .. }),
            "{err:?}"
        );
        assert!(err.is_transient());

        let err = http(format!("{base}/garbage"), None, None)
            .send(&sms)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::HttpResponse(_)), "{err:?}");

        // A huge error body is cut, not read whole into the message.
        let err = http(format!("{base}/huge"), None, None)
            .send(&sms)
            .await
            .unwrap_err();
        assert!(err.to_string().len() < 1_000, "{}", err.to_string().len());

        // Redirects are not followed.
        let err = http(format!("{base}/redirect"), None, None)
            .send(&sms)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::HttpStatus { status: 307, .. }),
            "{err:?}"
        );
        assert!(log.lock().unwrap().is_empty());

        let err = http(format!("{base}/slow"), None, None)
            .send(&sms)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(err.is_transient());

        // Nobody listening (the port is held so that no other peer is given it).
        let closed = ClosedPort::new().unwrap();
        let err = http(format!("http://127.0.0.1:{}/", closed.port()), None, None)
            .send(&sms)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Http(_)), "{err:?}");
        assert!(err.is_transient());

        // Invalid messages never reach the gateway.
        let err = http(format!("{base}/ok"), None, None)
            .send(&Sms::new("00420601123456", "hello"))
            .await
            .unwrap_err();
        assert!(err.is_permanent());
        assert!(log.lock().unwrap().is_empty());
    })
    .await
    .unwrap();
}

#[test]
fn gateway_config_is_checked_and_token_redacted() {
    let bad = |url: &str| {
        build(&SmsConfig::HttpGateway(HttpGatewayConfig {
            url: url.to_owned(),
            bearer_token: None,
            from: None,
            timeout_ms: 1000,
        }))
        .unwrap_err()
    };
    assert!(matches!(bad("not a url"), Error::Config(_)));
    assert!(matches!(bad("ftp://x/"), Error::Config(_)));
    let sender = build(&SmsConfig::HttpGateway(HttpGatewayConfig {
        url: "https://gw.example/send".to_owned(),
        bearer_token: Some(Secret::new("tok-123")),
        from: None,
        timeout_ms: 1000,
    }))
    .unwrap();
    assert!(!format!("{sender:?}").contains("tok-123"));
}

#[tokio::test]
async fn outbox_appends_json_lines() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/outbox.jsonl");
        let config: SmsConfig = toml::from_str(&format!(
            "transport = \"dev_outbox\"\npath = {:?}\n",
            path.to_str().unwrap()
        ))
        .unwrap();
        assert!(config.is_dev());
        let sender = build(&config).unwrap();
        assert_eq!(sender.name(), "dev_outbox");

        let a = sender.send(&Sms::new(TO, "Váš kód: 123456")).await.unwrap();
        let b = sender
            .send(&Sms::new("+12025550123", "second"))
            .await
            .unwrap();
        assert_eq!(a.transport, "dev_outbox");
        assert_ne!(a.message_id, b.message_id);

        let err = sender
            .send(&Sms::new("12025550123", "bad"))
            .await
            .unwrap_err();
        assert!(err.is_permanent());

        let content = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = content
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["to"], TO);
        assert_eq!(lines[0]["text"], "Váš kód: 123456");
        assert_eq!(lines[0]["id"], a.message_id.as_str());
        assert_eq!(lines[1]["to"], "+12025550123");
        let at = lines[0]["at"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(at).unwrap();

        // Reopening appends.
        let again = build(&config).unwrap();
        again.send(&Sms::new(TO, "third")).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn outbox_reports_io_errors_as_transient() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let path = dir.path().join("taken");
    std::fs::create_dir(&path).unwrap();
    let sender = sms_adapter::FileOutbox::new(&path);
    let err = sender.send(&Sms::new(TO, "x")).await.unwrap_err();
    assert!(matches!(err, Error::Outbox { .. }), "{err:?}");
    assert!(err.is_transient());
}
