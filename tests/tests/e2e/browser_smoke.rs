//! The browser harness itself (`ivan_e2e::browser`): headless Chromium under
//! chromedriver reaches the real `ivan serve`, runs JavaScript, creates a passkey
//! with the virtual WebAuthn authenticator, and takes a screenshot. SQLite only:
//! what is tested here is the harness, not the store.

use ivan_e2e::browser::{Browser, localhost_url};
use ivan_e2e::{Backend, Instance};
use serde_json::Value;

/// Creates a discoverable credential for `localhost` in the page, answering its
/// base64url id (or `{"error": ...}`).
const CREATE_PASSKEY: &str = r#"
const done = arguments[arguments.length - 1];
navigator.credentials.create({publicKey: {
    challenge: new Uint8Array(32),
    rp: {name: "t", id: "localhost"},
    user: {id: new Uint8Array(16), name: "u", displayName: "u"},
    pubKeyCredParams: [{type: "public-key", alg: -7}],
    authenticatorSelection: {residentKey: "required", userVerification: "required"},
}}).then(c => done({id: c.id, type: c.type}), e => done({error: String(e)}));
"#;

/// Asks for any passkey for `localhost` (a discoverable credential), answering its
/// id and user handle, base64url (or `{"error": ...}`). The short timeout bounds
/// the wait when the browser has no authenticator at all; one without a matching
/// credential refuses at once.
const GET_PASSKEY: &str = r#"
const done = arguments[arguments.length - 1];
const b64url = b => btoa(String.fromCharCode(...new Uint8Array(b)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
navigator.credentials.get({publicKey: {
    challenge: new Uint8Array(32),
    rpId: "localhost",
    userVerification: "required",
    timeout: 5000,
}}).then(
    c => done({id: c.id, userHandle: b64url(c.response.userHandle)}),
    e => done({error: String(e)}),
);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_reaches_ivan_and_makes_a_passkey() {
    let inst = Instance::new(Backend::Sqlite).await;
    let server = inst.serve().await;
    let browser = Browser::start().await;
    let authenticator = browser.add_virtual_authenticator().await;
    assert_eq!(
        browser.authenticator_credentials(&authenticator).await,
        Value::Array(vec![])
    );

    // `localhost`, not 127.0.0.1: WebAuthn needs a secure context.
    let url = localhost_url(&server.url("/healthz"));
    assert!(url.starts_with("http://localhost:"), "{url}");
    browser.goto(&url).await;
    assert_eq!(browser.current_url().await, url);
    assert_eq!(browser.text("body").await.trim(), "ok");
    let secure = browser
        .execute("return window.isSecureContext;", vec![])
        .await;
    assert_eq!(secure, Value::Bool(true));

    let created = browser.execute_async(CREATE_PASSKEY, vec![]).await;
    assert_eq!(created["type"], "public-key", "{created}");
    let id = created["id"].as_str().expect("a credential id").to_owned();

    let credentials = browser.authenticator_credentials(&authenticator).await;
    let list = credentials.as_array().expect("a list of credentials");
    assert_eq!(list.len(), 1, "{credentials}");
    assert_eq!(list[0]["rpId"], "localhost");
    assert_eq!(list[0]["isResidentCredential"], true);
    // Both sides speak base64url without padding.
    assert_eq!(list[0]["credentialId"].as_str(), Some(id.as_str()));

    let png = browser.screenshot("smoke-healthz").await;
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );

    // The passkey signs in: a discoverable-credential `get()` (no allow list) finds it.
    let got = browser.execute_async(GET_PASSKEY, vec![]).await;
    assert_eq!(got["id"].as_str(), Some(id.as_str()), "{got}");
    assert_eq!(got["userHandle"], "AAAAAAAAAAAAAAAAAAAAAA", "{got}");

    // Another device: an authenticator without the passkey refuses at once.
    browser.remove_virtual_authenticator(&authenticator).await;
    let other = browser.add_virtual_authenticator().await;
    assert_ne!(other, authenticator);
    assert_eq!(
        browser.authenticator_credentials(&other).await,
        Value::Array(vec![])
    );
    let refused = browser.execute_async(GET_PASSKEY, vec![]).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("NotAllowedError")),
        "{refused}"
    );

    browser.close().await;
    server.stop().await;
}
