//! The authority's side of the wire, as `ivan` speaks it (see
//! `docs/authority-protocol.md`): deliver a filing, ask for its state, fetch the
//! answer documents. Mutual TLS with a configured client certificate and the
//! authority's own CA. Every call is bounded in time and in the size of what it reads.
//!
//! Outcomes are sorted the way the outbox needs them: the authority took the message
//! ([`Delivery::Taken`], including `409` "already seen", which names the same
//! reference), refused it for good ([`Delivery::Refused`], any other 4xx), or the
//! attempt failed in a way worth retrying ([`Transient`]: 5xx, timeouts, connection
//! and TLS errors, answers we cannot read).

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use super::AuthorityConfig;
use crate::Error;

/// Largest protocol answer (JSON) read from the authority.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Largest answer document read from the authority.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// What the authority made of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// `200`/`202`, or `409` for a message id it had already taken.
    Taken {
        authority_ref: String,
        status: u16,
        /// The answer as received (kept as evidence).
        body: Bytes,
    },
    /// Any other 4xx: the authority will never take this message.
    Refused {
        status: u16,
        media_type: String,
        body: Bytes,
    },
}

/// A failed attempt worth retrying, with a one-line reason for operators and the
/// authority's `Retry-After` (seconds), if it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient {
    pub reason: String,
    pub retry_after: Option<Duration>,
    /// The failure of a package, as told to a filing other than its first: one
    /// failed request, already counted towards "the authority is down".
    pub echo: bool,
}

impl Transient {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry_after: None,
            echo: false,
        }
    }
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// `Retry-After` in its delay-seconds form (the HTTP-date form is ignored).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// `GET /v1/messages/{ref}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageState {
    pub state: String,
    #[serde(default)]
    pub documents: Vec<DocumentRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DocumentRef {
    pub n: i64,
    pub name: String,
    pub media_type: String,
    pub href: String,
}

/// What the authority made of a package.
#[derive(Debug, Clone, PartialEq)]
pub enum Package {
    /// One outcome per filing, in the order they were packed.
    Answered(Vec<Result<Delivery, Transient>>),
    /// `415`: it does not take this content coding; `accepts` is its
    /// `Accept-Encoding` (RFC 7694).
    Unsupported { accepts: String },
    /// Another 4xx for the package as a whole (malformed, too large): no filing in
    /// it was taken. Our packing is at fault, not the filings: they are sent one by
    /// one instead.
    Whole { status: u16, detail: String },
}

/// `200` to `POST /v1/packages`.
#[derive(Debug, Deserialize)]
struct PackageAnswer {
    results: Vec<PackageResult>,
}

/// One filing's result in a package answer: the status and JSON the same filing
/// alone would have been answered with.
#[derive(Debug, Deserialize)]
struct PackageResult {
    message_id: String,
    status: u16,
    answer: serde_json::Value,
}

/// The content coding of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gzip,
    Identity,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Identity => "identity",
        }
    }

    fn encode(self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Encoding::Identity => Ok(bytes.to_vec()),
            Encoding::Gzip => {
                use std::io::Write;
                let mut out = flate2::write::GzEncoder::new(
                    Vec::with_capacity(bytes.len() / 4),
                    flate2::Compression::default(),
                );
                out.write_all(bytes)?;
                out.finish()
            }
        }
    }
}

/// The manifest of a package (`manifest.json`, its first entry).
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub messages: Vec<ManifestEntry>,
}

#[derive(Debug, serde::Serialize, Deserialize)]
pub struct ManifestEntry {
    pub message_id: String,
    pub employer: String,
    pub document_type: String,
    /// RFC 9530 form, as the `Content-Digest` of a single delivery.
    pub content_digest: String,
    pub size: u64,
}

/// RFC 9530 `Content-Digest` of `body` (`sha-256=:…:`).
pub fn content_digest(body: &[u8]) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(body);
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The tar of a package: `manifest.json`, then each filing named by its message id.
fn package_tar(msgs: &[Outgoing<'_>]) -> std::io::Result<Vec<u8>> {
    let manifest = Manifest {
        version: 1,
        messages: msgs
            .iter()
            .map(|m| ManifestEntry {
                message_id: m.message_id.to_owned(),
                employer: m.employer.to_owned(),
                document_type: m.document_type.to_owned(),
                content_digest: content_digest(&m.body),
                size: m.body.len() as u64,
            })
            .collect(),
    };
    let manifest = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)
    };
    add("manifest.json", &manifest)?;
    for m in msgs {
        add(m.message_id, &m.body)?;
    }
    tar.into_inner()
}

/// One filing on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub message_id: &'a str,
    pub employer: &'a str,
    pub document_type: &'a str,
    pub body: Bytes,
}

/// An HTTP(S) client for one authority.
#[derive(Debug, Clone)]
pub struct AuthorityClient {
    http: reqwest::Client,
    base: String,
}

impl AuthorityClient {
    /// A client for `base_url` (`http://` or `https://`, no trailing path beyond the
    /// authority's root). TLS material comes from `config`; when `config.ca` is set
    /// it is the only trusted root.
    pub fn new(config: &AuthorityConfig, base_url: &str) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "authority.base_url {base:?} must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
            .timeout(Duration::from_secs(config.request_timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ivan/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca {
            let pem = read(ca, "authority.ca")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Config(format!("authority.ca {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "authority.ca {} holds no certificate",
                    ca.display()
                )));
            }
            builder = builder.tls_certs_only(certs);
        }
        match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert, "authority.client_cert")?;
                pem.push(b'\n');
                pem.extend(read(key, "authority.client_key")?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    Error::Config(format!(
                        "authority.client_cert/client_key {} / {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "authority.client_cert and authority.client_key go together".into(),
                ));
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("authority client: {e}")))?;
        Ok(Self { http, base })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /v1/messages`.
    pub async fn deliver(&self, msg: &Outgoing<'_>) -> Result<Delivery, Transient> {
        let content_digest = content_digest(&msg.body);
        let response = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .header("content-type", "application/xml")
            .header("x-ivan-message-id", msg.message_id)
            .header("x-ivan-employer", msg.employer)
            .header("x-ivan-document-type", msg.document_type)
            .header("content-digest", content_digest)
            .body(msg.body.clone())
            .send()
            .await
            .map_err(|e| transport("POST /v1/messages", &e))?;
        let status = response.status().as_u16();
        let media_type = media_type(&response);
        let wait = retry_after(&response);
        let body = read_capped(response, MAX_ANSWER_BYTES).await?;
        classify("POST /v1/messages", status, media_type, wait, body)
    }

    /// `POST /v1/packages`: `msgs` in one tar (a `manifest.json`, then each filing
    /// under its message id), `encoding`-compressed. The answer has one result per
    /// filing, each classified as [`AuthorityClient::deliver`] classifies a single
    /// answer; a package the authority cannot take as a whole is [`Package::Whole`],
    /// an encoding it does not take [`Package::Unsupported`].
    pub async fn deliver_package(
        &self,
        msgs: &[Outgoing<'_>],
        encoding: Encoding,
    ) -> Result<Package, Transient> {
        let tar = package_tar(msgs).map_err(|e| Transient::new(format!("packing: {e}")))?;
        let body = encoding
            .encode(&tar)
            .map_err(|e| Transient::new(format!("compressing the package: {e}")))?;
        let mut request = self
            .http
            .post(format!("{}/v1/packages", self.base))
            .header("content-type", "application/x-tar");
        if encoding != Encoding::Identity {
            request = request.header("content-encoding", encoding.name());
        }
        let sent = body.len() as u64;
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| transport("POST /v1/packages", &e))?;
        metrics::counter!("ivan_forwarding_package_bytes_total").increment(sent);
        let status = response.status().as_u16();
        let accepts = response
            .headers()
            .get(reqwest::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let wait = retry_after(&response);
        let body = read_capped(response, MAX_ANSWER_BYTES).await?;
        match status {
            200 => {}
            415 => return Ok(Package::Unsupported { accepts }),
            400..=499 if status != 408 && status != 429 => {
                return Ok(Package::Whole {
                    status,
                    detail: snippet(&body),
                });
            }
            _ => {
                return Err(Transient {
                    retry_after: wait,
                    ..Transient::new(format!(
                        "POST /v1/packages answered {status}: {}",
                        snippet(&body)
                    ))
                });
            }
        }
        let answer: PackageAnswer = serde_json::from_slice(&body)
            .map_err(|e| Transient::new(format!("POST /v1/packages: unreadable answer: {e}")))?;
        let results = msgs
            .iter()
            .map(|msg| {
                let one = answer
                    .results
                    .iter()
                    .find(|r| r.message_id.eq_ignore_ascii_case(msg.message_id))
                    .ok_or_else(|| {
                        Transient::new(format!(
                            "POST /v1/packages: no result for message {}",
                            msg.message_id
                        ))
                    })?;
                let media_type = if one.status >= 400 {
                    "application/problem+json"
                } else {
                    "application/json"
                };
                classify(
                    "POST /v1/packages",
                    one.status,
                    media_type.to_owned(),
                    None,
                    Bytes::from(one.answer.to_string()),
                )
            })
            .collect();
        Ok(Package::Answered(results))
    }

    /// `GET /v1/messages/{authority_ref}`; the raw answer is returned with it.
    pub async fn state(&self, authority_ref: &str) -> Result<(MessageState, Bytes), Transient> {
        let path = format!("/v1/messages/{}", urlencode(authority_ref));
        let (_, body) = self.get(&path, MAX_ANSWER_BYTES).await?;
        let state: MessageState = serde_json::from_slice(&body)
            .map_err(|e| Transient::new(format!("GET {path}: unreadable answer: {e}")))?;
        Ok((state, body))
    }

    /// One answer document. `href` must be a path on the authority itself.
    pub async fn document(&self, href: &str) -> Result<(String, Bytes), Transient> {
        if !href.starts_with('/') || href.starts_with("//") {
            return Err(Transient::new(format!(
                "answer document href {href:?} is not a path on the authority"
            )));
        }
        self.get(href, MAX_DOCUMENT_BYTES).await
    }

    /// A GET; any answer but `200` is a [`Transient`] (with its `Retry-After`).
    async fn get(&self, path: &str, cap: usize) -> Result<(String, Bytes), Transient> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| transport(&format!("GET {path}"), &e))?;
        let status = response.status().as_u16();
        let media_type = media_type(&response);
        let wait = retry_after(&response);
        let body = read_capped(response, cap).await?;
        if status != 200 {
            return Err(Transient {
                retry_after: wait,
                ..Transient::new(format!("GET {path} answered {status}: {}", snippet(&body)))
            });
        }
        Ok((media_type, body))
    }
}

/// What a delivery answer (`status`, `body`) means: taken, refused for good, or a
/// transient failure. `what` names the request in reasons.
fn classify(
    what: &str,
    status: u16,
    media_type: String,
    wait: Option<Duration>,
    body: Bytes,
) -> Result<Delivery, Transient> {
    match status {
        200 | 202 | 409 => {
            #[derive(Deserialize)]
            struct Answer {
                authority_ref: String,
            }
            let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
                Transient::new(format!(
                    "{what} answered {status} without an authority_ref: {e}"
                ))
            })?;
            if answer.authority_ref.is_empty() || answer.authority_ref.len() > 200 {
                return Err(Transient::new(format!(
                    "{what} answered {status} with an unusable authority_ref"
                )));
            }
            Ok(Delivery::Taken {
                authority_ref: answer.authority_ref,
                status,
                body,
            })
        }
        400..=499 if status != 408 && status != 429 => Ok(Delivery::Refused {
            status,
            media_type,
            body,
        }),
        _ => Err(Transient {
            retry_after: wait,
            ..Transient::new(format!("{what} answered {status}: {}", snippet(&body)))
        }),
    }
}

fn read(path: &std::path::Path, key: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        context: format!("{key} {}", path.display()),
        source,
    })
}

fn media_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// Reads a body of at most `cap` bytes; a longer one is an error, not truncated.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Bytes, Transient> {
    let url = response.url().path().to_owned();
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Transient::new(format!(
            "{url}: answer larger than {cap} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(&url, &e))? {
        if body.len() + chunk.len() > cap {
            return Err(Transient::new(format!(
                "{url}: answer larger than {cap} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// A transport error as one line, with its causes (that is where TLS says what is wrong).
fn transport(what: &str, e: &reqwest::Error) -> Transient {
    let mut line = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    Transient::new(line)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

/// Percent-encodes everything but unreserved characters (an authority reference is
/// opaque to us).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_encoded_as_one_path_segment() {
        assert_eq!(urlencode("A-0123ABCDEF01"), "A-0123ABCDEF01");
        assert_eq!(urlencode("../x?y"), "..%2Fx%3Fy");
    }

    #[test]
    fn snippets_are_one_short_line() {
        let long = format!("a\n b\t{}", "c".repeat(500));
        let s = snippet(long.as_bytes());
        assert!(s.starts_with("a b c"));
        assert_eq!(s.chars().count(), 200);
    }
}
