//! The sandbox authority: a real HTTP peer that implements the authority side of the
//! protocol ivan forwards filings with (`docs/authority-protocol.md` is the
//! specification). It is for development and tests, so that forwarding is exercised
//! against an actual server over actual HTTP(S), with mutual TLS when asked. It is
//! not a mock of ivan's internals: it knows nothing of ivan beyond the wire protocol.
//!
//! What it does, per the protocol document: `POST /v1/messages` takes a filing,
//! idempotently by `X-Ivan-Message-Id`; `GET /v1/messages/{authority_ref}` reads its
//! state (`processing` → `processed` or `rejected`) and lists the authority's
//! processing protocols, which `GET /v1/messages/{ref}/documents/{n}` returns. Faults
//! can be injected ([`SandboxOptions`]): random `503`s (half of them after the message
//! was stored, as if the answer were lost), random latency, and a period after start
//! during which it is wholly down. `GET /v1/_stats` and `GET /v1/_messages` let tests
//! see what it received; they are never faulted.
//!
//! **Limits.** The store is in memory: restarting the sandbox forgets every message,
//! so an intermediary polling a message across such a restart gets `404`. Nothing is
//! authenticated beyond the optional client certificate. Do not use it as an authority
//! for real filings.
//!
//! [`write_dev_tls`] writes throwaway TLS material (CAs, server and client
//! certificates) for trying mutual TLS locally and in tests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

mod routes;
mod store;
mod tls;

use routes::router;
use store::Sandbox;
use tls::server_config;
pub use tls::write_dev_tls;

/// The largest filing `POST /v1/messages` accepts (64 MiB); larger ones get `413`.
pub const MAX_FILING_BYTES: usize = 64 * 1024 * 1024;

/// How long in-flight requests may take to finish once `shutdown` resolves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The longest accepted `X-Ivan-Employer` / `X-Ivan-Document-Type` value.
const MAX_LABEL_LEN: usize = 256;

/// The XML namespace of the processing protocol document.
pub const PROTOCOL_NS: &str = "urn:ivan:sandbox-authority:1";

/// Problem `type` URIs (RFC 9457) the sandbox answers with.
pub mod problem_type {
    /// `400`: a required header is missing.
    pub const MISSING_HEADER: &str = "urn:ivan:sandbox-authority:problem:missing-header";
    /// `400`: a header is present but malformed.
    pub const INVALID_HEADER: &str = "urn:ivan:sandbox-authority:problem:invalid-header";
    /// `400`: `Content-Digest` does not match the body.
    pub const DIGEST_MISMATCH: &str = "urn:ivan:sandbox-authority:problem:digest-mismatch";
    /// `400`/`413`: the body could not be read, or is too large.
    pub const BODY: &str = "urn:ivan:sandbox-authority:problem:body";
    /// `422`: the filing is refused by a business rule.
    pub const REFUSED: &str = "urn:ivan:sandbox-authority:problem:refused";
    /// `404`: no such message or document.
    pub const NOT_FOUND: &str = "urn:ivan:sandbox-authority:problem:not-found";
    /// `503`: an injected fault.
    pub const FAULT: &str = "urn:ivan:sandbox-authority:problem:unavailable";
    /// `503`: the authority is down (the `down_for_secs` period).
    pub const DOWN: &str = "urn:ivan:sandbox-authority:problem:down";
}

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// 0.0..=1.0: the probability that a request to `/v1/messages*` (POST or GET)
    /// answers `503`. For a POST, half of these faults (a coin flip) happen after the
    /// message was stored, as if the answer were lost on the way back.
    pub fault_rate: f64,
    /// Each answer to `/v1/messages*` is delayed by a uniformly random 0..=latency_ms.
    pub latency_ms: u64,
    /// For this long after [`run`] starts, every `/v1/messages*` request answers `503`
    /// ("wholly down").
    pub down_for_secs: u64,
    /// A received message reads `processing` until this long after its first receipt,
    /// then `processed` (or `rejected`). `0`: the POST answers `200 accepted` and the
    /// message is processed at once.
    pub process_after_ms: u64,
    /// The first message POST received is answered only this long after it arrived
    /// (after `latency_ms`'s delay), as a hung request would be: tests check that one
    /// slow request does not hold back the others. `0`: no stall.
    pub stall_first_post_ms: u64,
    /// Answer `415` to gzip-compressed packages (tests of the encoding fallback).
    pub refuse_gzip: bool,
    /// `None`: plain HTTP.
    pub tls: Option<SandboxTls>,
}

impl Default for SandboxOptions {
    /// No faults, no latency, never down, processed 1 s after receipt, plain HTTP.
    fn default() -> Self {
        Self {
            fault_rate: 0.0,
            latency_ms: 0,
            down_for_secs: 0,
            process_after_ms: 1000,
            stall_first_post_ms: 0,
            refuse_gzip: false,
            tls: None,
        }
    }
}

/// HTTPS for the sandbox: PEM files.
#[derive(Debug, Clone)]
pub struct SandboxTls {
    /// The server's certificate chain (leaf first).
    pub cert_pem: PathBuf,
    /// The server's private key (PKCS#8, SEC1 or PKCS#1).
    pub key_pem: PathBuf,
    /// `Some`: require a client certificate chaining to one of the CA certificates in
    /// this file; a client without one fails the TLS handshake.
    pub client_ca_pem: Option<PathBuf>,
}

/// Checks `options` (the fault rate's range, the TLS material) as [`run`] does first,
/// so a caller can report a bad option before announcing that it listens. Returns
/// the TLS server configuration, if any.
pub fn check(options: &SandboxOptions) -> Result<Option<rustls::ServerConfig>, Error> {
    if !(0.0..=1.0).contains(&options.fault_rate) {
        return Err(Error::Config(format!(
            "sandbox authority: fault rate {} is not between 0 and 1",
            options.fault_rate
        )));
    }
    options.tls.as_ref().map(server_config).transpose()
}

/// Serves the sandbox authority on `listener` (an already bound standard-library
/// listener; it is switched to non-blocking mode here) until `shutdown` resolves, then
/// stops accepting connections and lets in-flight requests finish for up to 3 s.
/// Binds nothing itself and prints nothing (it logs through `tracing`). Must be
/// called within a Tokio runtime.
///
/// Fails at once on invalid options (a `fault_rate` outside 0..=1) or unreadable TLS
/// material (`Error::Config`).
pub async fn run(
    listener: std::net::TcpListener,
    options: SandboxOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let tls = check(&options)?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "sandbox authority: listener address".into(),
        source,
    })?;
    let listen = |source| Error::Listen { addr, source };
    let app = router(Arc::new(Sandbox::new(&options)));

    let handle = axum_server::Handle::<SocketAddr>::new();
    let stopper = tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.await;
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        }
    });
    let not_accepted = |peer: Option<&SocketAddr>, e: &std::io::Error| {
        tracing::info!(peer = ?peer, error = %e, "sandbox authority: connection not accepted");
    };
    let served = match tls {
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
            axum_server::tls_rustls::from_tcp_rustls(listener, config)
                .map_err(listen)?
                .handle(handle)
                .accept_error_handler(not_accepted)
                .serve(app.into_make_service())
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .map_err(listen)?
                .handle(handle)
                .accept_error_handler(not_accepted)
                .serve(app.into_make_service())
                .await
        }
    };
    stopper.abort();
    served.map_err(|source| Error::Io {
        context: format!("sandbox authority on {addr}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use chrono::DateTime;
    use sha2::{Digest, Sha256};

    use super::*;

    use serde_json::Value;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const LIMIT: Duration = Duration::from_secs(10);

    struct Running {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<Result<(), Error>>,
    }

    impl Running {
        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(LIMIT, self.task)
                .await
                .expect("the sandbox stops")
                .unwrap()
                .unwrap();
        }
    }

    fn start(options: SandboxOptions) -> Running {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, options, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn options(process_after_ms: u64) -> SandboxOptions {
        SandboxOptions {
            process_after_ms,
            ..SandboxOptions::default()
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(LIMIT)
            .build()
            .unwrap()
    }

    fn digest(body: &[u8]) -> String {
        format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
    }

    fn filing(sender_reference: &str) -> Vec<u8> {
        format!(
            "<?xml version=\"1.0\"?><Filing senderReference=\"{sender_reference}\"><Body>x</Body></Filing>"
        )
        .into_bytes()
    }

    fn post(client: &reqwest::Client, url: &str, id: &str, body: &[u8]) -> reqwest::RequestBuilder {
        client
            .post(url)
            .header("X-Ivan-Message-Id", id)
            .header("X-Ivan-Employer", "EMP-1 \"Acme & Co\"")
            .header("X-Ivan-Document-Type", "payroll-report")
            .header("Content-Type", "application/xml")
            .header("Content-Digest", digest(body))
            .body(body.to_vec())
    }

    fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    async fn json_of(response: reqwest::Response) -> Value {
        response.json().await.unwrap()
    }

    async fn stats(client: &reqwest::Client, s: &Running) -> Value {
        let r = client.get(s.url("/v1/_stats")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        json_of(r).await
    }

    async fn listing(client: &reqwest::Client, s: &Running) -> Vec<Value> {
        let r = client.get(s.url("/v1/_messages")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        json_of(r).await.as_array().unwrap().clone()
    }

    fn is_problem(r: &reqwest::Response) -> bool {
        r.headers()
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json")
    }

    fn looks_like_ref(r: &str) -> bool {
        r.len() == 14
            && r.starts_with("A-")
            && r[2..]
                .chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
    }

    #[tokio::test]
    async fn sandbox_stores_once_and_answers_duplicates_with_the_same_ref() {
        let s = start(SandboxOptions {
            latency_ms: 20,
            ..options(60_000)
        });
        let c = client();
        let url = s.url("/v1/messages");
        let id = new_id();
        let body = filing("R-1");

        let first = post(&c, &url, &id, &body).send().await.unwrap();
        assert_eq!(first.status(), 202);
        let location = first.headers()["location"].to_str().unwrap().to_owned();
        let first = json_of(first).await;
        assert_eq!(first["status"], "queued");
        let authority_ref = first["authority_ref"].as_str().unwrap().to_owned();
        assert!(looks_like_ref(&authority_ref), "{authority_ref}");
        assert_eq!(location, format!("/v1/messages/{authority_ref}"));

        // The id is the key, in any letter case.
        let again = post(&c, &url, &id.to_uppercase(), &body)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409);
        let again = json_of(again).await;
        assert_eq!(again["status"], "duplicate");
        assert_eq!(again["authority_ref"], authority_ref.as_str());

        let st = stats(&c, &s).await;
        assert_eq!(st["received"], 1);
        assert_eq!(st["duplicates"], 1);
        assert_eq!(st["posts"], 2);
        assert_eq!(st["faults_injected"], 0);
        assert_eq!(st["refused"], 0);

        let list = listing(&c, &s).await;
        assert_eq!(list.len(), 1);
        let m = &list[0];
        assert_eq!(m["message_id"], id.as_str());
        assert_eq!(m["authority_ref"], authority_ref.as_str());
        assert_eq!(m["employer"], "EMP-1 \"Acme & Co\"");
        assert_eq!(m["document_type"], "payroll-report");
        assert_eq!(m["sha256"], hex::encode(Sha256::digest(&body)));
        assert_eq!(m["times_posted"], 2);
        assert!(
            DateTime::parse_from_rfc3339(m["received_at"].as_str().unwrap()).is_ok(),
            "{m}"
        );

        let state = c
            .get(s.url(&format!("/v1/messages/{authority_ref}")))
            .send()
            .await
            .unwrap();
        assert_eq!(state.status(), 200);
        let state = json_of(state).await;
        assert_eq!(state["state"], "processing");
        assert_eq!(state["message_id"], id.as_str());
        assert_eq!(state["documents"], serde_json::json!([]));

        s.stop().await;
    }

    #[tokio::test]
    async fn sandbox_refuses_bad_requests_and_the_refuse_rule_and_stores_nothing() {
        let s = start(options(60_000));
        let c = client();
        let url = s.url("/v1/messages");
        let body = filing("R-2");

        let wrong_digest = c
            .post(&url)
            .header("X-Ivan-Message-Id", new_id())
            .header("X-Ivan-Employer", "EMP-1")
            .header("X-Ivan-Document-Type", "payroll-report")
            .header("Content-Digest", digest(b"something else"))
            .body(body.clone());
        let r = wrong_digest.send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(is_problem(&r));
        let p = json_of(r).await;
        assert_eq!(p["type"], problem_type::DIGEST_MISMATCH);
        assert_eq!(p["status"], 400);
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");

        for missing in [
            "X-Ivan-Message-Id",
            "X-Ivan-Employer",
            "X-Ivan-Document-Type",
            "Content-Digest",
        ] {
            let mut headers = reqwest::header::HeaderMap::new();
            for (k, v) in [
                ("X-Ivan-Message-Id", new_id()),
                ("X-Ivan-Employer", "EMP-1".into()),
                ("X-Ivan-Document-Type", "payroll-report".into()),
                ("Content-Digest", digest(&body)),
            ] {
                if k != missing {
                    headers.insert(k, v.parse().unwrap());
                }
            }
            let r = c
                .post(&url)
                .headers(headers)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{missing}");
            assert!(is_problem(&r));
            let p = json_of(r).await;
            assert_eq!(p["type"], problem_type::MISSING_HEADER, "{missing}");
            assert!(p["detail"].as_str().unwrap().contains(missing), "{p}");
        }

        for (header, value) in [
            ("X-Ivan-Message-Id", "not-a-uuid"),
            ("X-Ivan-Message-Id", "0191f1c4b5a27c3e8f00aabbccddeeff"),
            ("X-Ivan-Employer", "  "),
            ("Content-Digest", "sha-512=:AAAA:"),
            ("Content-Digest", "sha-256=:AAAA:"),
            ("Content-Digest", "sha-256=abc"),
        ] {
            // (`RequestBuilder::header` appends; replace the good value instead.)
            let mut req = post(&c, &url, &new_id(), &body).build().unwrap();
            req.headers_mut().insert(header, value.parse().unwrap());
            let r = c.execute(req).await.unwrap();
            assert_eq!(r.status(), 400, "{header}: {value}");
            let p = json_of(r).await;
            assert_eq!(p["type"], problem_type::INVALID_HEADER, "{header}: {value}");
        }

        let refused = filing("REFUSE-ME");
        let r = post(&c, &url, &new_id(), &refused).send().await.unwrap();
        assert_eq!(r.status(), 422);
        assert!(is_problem(&r));
        let p = json_of(r).await;
        assert_eq!(p["type"], problem_type::REFUSED);
        assert!(p["detail"].as_str().unwrap().contains("REFUSE"), "{p}");

        assert!(listing(&c, &s).await.is_empty());
        let st = stats(&c, &s).await;
        assert_eq!(st["received"], 0);
        assert_eq!(st["duplicates"], 0);
        // 1 digest mismatch + 4 missing + 6 invalid + 1 refused by the rule
        assert_eq!(st["refused"], 1 + 4 + 6 + 1);

        // Unknown refs and routes are problem documents too.
        let r = c
            .get(s.url("/v1/messages/A-000000000000"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert!(is_problem(&r));
        let r = c.get(s.url("/v1/nothing")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(is_problem(&r));
        let r = c.get(s.url("/v1/messages")).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert!(is_problem(&r));
        assert!(r.headers().contains_key("allow"));

        // A digest with other algorithms beside sha-256, and unpadded base64, is fine.
        let b64 = STANDARD.encode(Sha256::digest(&body));
        let mut req = post(&c, &url, &new_id(), &body).build().unwrap();
        req.headers_mut().insert(
            "content-digest",
            format!("sha-512=:AAAA:, sha-256=:{}:", b64.trim_end_matches('='))
                .parse()
                .unwrap(),
        );
        assert_eq!(c.execute(req).await.unwrap().status(), 202);

        s.stop().await;
    }

    #[tokio::test]
    async fn sandbox_answers_413_above_64_mib() {
        let s = start(options(0));
        let c = client();
        // The size is refused before the digest is looked at.
        let r = c
            .post(s.url("/v1/messages"))
            .header("X-Ivan-Message-Id", new_id())
            .header("X-Ivan-Employer", "EMP-1")
            .header("X-Ivan-Document-Type", "payroll-report")
            .header("Content-Digest", digest(b""))
            .body(vec![b'x'; MAX_FILING_BYTES + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        assert!(is_problem(&r));
        assert_eq!(json_of(r).await["type"], problem_type::BODY);
        let st = stats(&c, &s).await;
        assert_eq!(st["refused"], 1);
        assert_eq!(st["received"], 0);
        s.stop().await;
    }

    async fn fetch(c: &reqwest::Client, url: &str) -> (String, Vec<u8>) {
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        let digest_header = r.headers()["content-digest"].to_str().unwrap().to_owned();
        let bytes = r.bytes().await.unwrap().to_vec();
        assert_eq!(digest_header, digest(&bytes));
        (ct, bytes)
    }

    #[tokio::test]
    async fn sandbox_processes_after_the_delay_with_stable_documents() {
        let s = start(options(500));
        let c = client();
        let url = s.url("/v1/messages");
        let body = filing("R-3");
        let id = new_id();
        let r = json_of(post(&c, &url, &id, &body).send().await.unwrap()).await;
        let ok_ref = r["authority_ref"].as_str().unwrap().to_owned();
        let r = json_of(
            post(&c, &url, &new_id(), &filing("REJECT-7"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let rejected_ref = r["authority_ref"].as_str().unwrap().to_owned();

        let state_of = |r: &str| {
            let c = c.clone();
            let url = s.url(&format!("/v1/messages/{r}"));
            async move { json_of(c.get(url).send().await.unwrap()).await }
        };
        assert_eq!(state_of(&ok_ref).await["state"], "processing");
        let early = c
            .get(s.url(&format!("/v1/messages/{ok_ref}/documents/1")))
            .send()
            .await
            .unwrap();
        assert_eq!(early.status(), 404);

        // (500 ms leaves room for a loaded machine between the POST and the first GET.)
        tokio::time::sleep(Duration::from_millis(650)).await;
        let done = state_of(&ok_ref).await;
        assert_eq!(done["state"], "processed");
        assert_eq!(done["authority_ref"], ok_ref.as_str());
        assert_eq!(done["message_id"], id.as_str());
        assert_eq!(
            done["documents"],
            serde_json::json!([
                {"n": 1, "name": "protocol.xml", "media_type": "application/xml",
                 "href": format!("/v1/messages/{ok_ref}/documents/1")},
                {"n": 2, "name": "protocol.html", "media_type": "text/html; charset=utf-8",
                 "href": format!("/v1/messages/{ok_ref}/documents/2")},
            ])
        );
        let (ct, xml) = fetch(&c, &s.url(&format!("/v1/messages/{ok_ref}/documents/1"))).await;
        assert_eq!(ct, "application/xml");
        let (_, xml_again) = fetch(&c, &s.url(&format!("/v1/messages/{ok_ref}/documents/1"))).await;
        assert_eq!(xml, xml_again);
        let xml = String::from_utf8(xml).unwrap();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Protocol xmlns=\"urn:ivan:sandbox-authority:1\""),
            "{xml}"
        );
        assert!(xml.contains(&format!("authorityRef=\"{ok_ref}\"")), "{xml}");
        assert!(xml.contains(&format!("messageId=\"{id}\"")), "{xml}");
        assert!(xml.contains("state=\"processed\""), "{xml}");
        assert!(
            xml.contains(&format!(
                "sha256=\"{}\"",
                hex::encode(Sha256::digest(&body))
            )),
            "{xml}"
        );
        assert!(xml.contains("EMP-1 &quot;Acme &amp; Co&quot;"), "{xml}");
        assert!(!xml.contains("<Reason>"), "{xml}");
        let (ct, html) = fetch(&c, &s.url(&format!("/v1/messages/{ok_ref}/documents/2"))).await;
        assert_eq!(ct, "text/html; charset=utf-8");
        let (_, html_again) =
            fetch(&c, &s.url(&format!("/v1/messages/{ok_ref}/documents/2"))).await;
        assert_eq!(html, html_again);
        let html = String::from_utf8(html).unwrap();
        assert!(
            html.contains(&ok_ref) && html.contains("processed"),
            "{html}"
        );
        assert!(
            html.contains("Acme &amp; Co") && !html.contains("Acme & Co"),
            "{html}"
        );
        let none = c
            .get(s.url(&format!("/v1/messages/{ok_ref}/documents/3")))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 404);

        let rejected = state_of(&rejected_ref).await;
        assert_eq!(rejected["state"], "rejected");
        assert_eq!(rejected["documents"].as_array().unwrap().len(), 2);
        let (_, xml) = fetch(
            &c,
            &s.url(&format!("/v1/messages/{rejected_ref}/documents/1")),
        )
        .await;
        let xml = String::from_utf8(xml).unwrap();
        assert!(xml.contains("state=\"rejected\""), "{xml}");
        assert!(xml.contains("<Reason>"), "{xml}");
        s.stop().await;

        // process_after_ms = 0: accepted and processed at once.
        let s = start(options(0));
        let r = post(&c, &s.url("/v1/messages"), &new_id(), &body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = json_of(r).await;
        assert_eq!(r["status"], "accepted");
        let authority_ref = r["authority_ref"].as_str().unwrap();
        let state = json_of(
            c.get(s.url(&format!("/v1/messages/{authority_ref}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(state["state"], "processed");
        s.stop().await;
    }

    #[tokio::test]
    async fn sandbox_injects_faults_and_can_be_down() {
        let s = start(SandboxOptions {
            fault_rate: 1.0,
            ..options(0)
        });
        let c = client();
        let url = s.url("/v1/messages");
        let id = new_id();
        let body = filing("R-4");
        const TRIES: u64 = 30;
        for _ in 0..TRIES {
            let r = post(&c, &url, &id, &body).send().await.unwrap();
            assert_eq!(r.status(), 503);
            assert!(is_problem(&r));
            assert_eq!(json_of(r).await["type"], problem_type::FAULT);
        }
        // Half the faults come after storing: with 30 tries, the message was stored
        // (the chance it was not is 2^-30) though no answer said so.
        let st = stats(&c, &s).await;
        assert_eq!(st["posts"], TRIES);
        assert_eq!(st["faults_injected"], TRIES);
        assert_eq!(st["received"], 1);
        assert_eq!(st["duplicates"], 0);
        let list = listing(&c, &s).await;
        assert_eq!(list.len(), 1);
        let times = list[0]["times_posted"].as_u64().unwrap();
        assert!((1..TRIES).contains(&times), "{times}");
        let authority_ref = list[0]["authority_ref"].as_str().unwrap();
        let r = c
            .get(s.url(&format!("/v1/messages/{authority_ref}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        s.stop().await;

        let started = Instant::now();
        let s = start(SandboxOptions {
            down_for_secs: 1,
            ..options(0)
        });
        let url = s.url("/v1/messages");
        let r = post(&c, &url, &id, &body).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(json_of(r).await["type"], problem_type::DOWN);
        let r = c
            .get(s.url("/v1/messages/A-000000000000"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        // Introspection is never down.
        let st = stats(&c, &s).await;
        assert_eq!(st["received"], 0);
        assert_eq!(st["posts"], 1);
        assert_eq!(st["posts_while_down"], 1);
        assert_eq!(st["faults_injected"], 0);
        tokio::time::sleep(Duration::from_millis(1100).saturating_sub(started.elapsed())).await;
        let r = post(&c, &url, &id, &body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(stats(&c, &s).await["posts_while_down"], 1);
        s.stop().await;
    }

    #[tokio::test]
    async fn sandbox_rejects_invalid_options() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = run(
            listener,
            SandboxOptions {
                fault_rate: 1.5,
                ..SandboxOptions::default()
            },
            async {},
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = run(
            listener,
            SandboxOptions {
                tls: Some(SandboxTls {
                    cert_pem: "/nonexistent/server.pem".into(),
                    key_pem: "/nonexistent/server.key".into(),
                    client_ca_pem: None,
                }),
                ..SandboxOptions::default()
            },
            async {},
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/server.pem"), "{e}");
    }

    fn read(dir: &Path, file: &str) -> Vec<u8> {
        std::fs::read(dir.join(file)).unwrap()
    }

    fn identity(dir: &Path, name: &str) -> reqwest::Identity {
        let mut pem = read(dir, &format!("{name}.pem"));
        pem.extend(read(dir, &format!("{name}.key")));
        reqwest::Identity::from_pem(&pem).unwrap()
    }

    fn tls_client(dir: &Path, trust: &str, id: Option<&str>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&read(dir, trust)).unwrap();
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(LIMIT)
            .tls_certs_only([ca]);
        if let Some(name) = id {
            b = b.identity(identity(dir, name));
        }
        b.build().unwrap()
    }

    #[tokio::test]
    async fn sandbox_serves_mutual_tls_with_the_dev_material() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let written = write_dev_tls(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "server.pem",
                "server.key",
                "client.pem",
                "client.key",
                "other-ca.pem",
                "other-server.pem",
                "other-server.key",
                "other-client.pem",
                "other-client.key"
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in &written {
                let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
                let secret = p.extension().is_some_and(|e| e == "key");
                assert_eq!(mode, if secret { 0o600 } else { 0o644 }, "{}", p.display());
            }
        }
        // Never overwrites.
        let before = read(&dir, "server.pem");
        let e = write_dev_tls(&dir).unwrap_err();
        assert!(e.to_string().starts_with("refusing to overwrite"), "{e}");
        assert_eq!(read(&dir, "server.pem"), before);

        let s = start(SandboxOptions {
            tls: Some(SandboxTls {
                cert_pem: dir.join("server.pem"),
                key_pem: dir.join("server.key"),
                client_ca_pem: Some(dir.join("ca.pem")),
            }),
            ..options(0)
        });
        let port = s.addr.port();
        let by_ip = format!("https://127.0.0.1:{port}/v1/_stats");
        let by_name = format!("https://localhost:{port}/v1/_stats");

        // The right CA and a client certificate: fine, by IP and by name.
        let good = tls_client(&dir, "ca.pem", Some("client"));
        assert_eq!(good.get(&by_ip).send().await.unwrap().status(), 200);
        let named = reqwest::Client::builder()
            .no_proxy()
            .timeout(LIMIT)
            .resolve("localhost", s.addr)
            .tls_certs_only([reqwest::Certificate::from_pem(&read(&dir, "ca.pem")).unwrap()])
            .identity(identity(&dir, "client"))
            .build()
            .unwrap();
        assert_eq!(named.get(&by_name).send().await.unwrap().status(), 200);
        // A filing goes through over mutual TLS.
        let body = filing("R-5");
        let r = post(
            &good,
            &format!("https://127.0.0.1:{port}/v1/messages"),
            &new_id(),
            &body,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);

        // No client certificate, or one from another CA: the handshake fails.
        let anonymous = tls_client(&dir, "ca.pem", None);
        assert!(anonymous.get(&by_ip).send().await.is_err());
        let stranger = tls_client(&dir, "ca.pem", Some("other-client"));
        assert!(stranger.get(&by_ip).send().await.is_err());
        // A client that trusts only the other CA refuses server.pem.
        let wrong_trust = tls_client(&dir, "other-ca.pem", Some("client"));
        assert!(wrong_trust.get(&by_ip).send().await.is_err());
        // Plain HTTP to the TLS port does not work.
        assert!(client().get(s.url("/v1/_stats")).send().await.is_err());
        s.stop().await;

        // A server certificate from the other CA is refused by a client trusting ca.pem;
        // without client_ca_pem, no client certificate is needed.
        let s = start(SandboxOptions {
            tls: Some(SandboxTls {
                cert_pem: dir.join("other-server.pem"),
                key_pem: dir.join("other-server.key"),
                client_ca_pem: None,
            }),
            ..options(0)
        });
        let url = format!("https://127.0.0.1:{}/v1/_stats", s.addr.port());
        assert!(good.get(&url).send().await.is_err());
        let other_trust = tls_client(&dir, "other-ca.pem", None);
        assert_eq!(other_trust.get(&url).send().await.unwrap().status(), 200);
        s.stop().await;
    }
}
