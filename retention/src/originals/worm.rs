//! Originals as WORM objects in an S3 bucket with Object Lock.
//!
//! `object_store` writes and reads plain objects but cannot set Object Lock, so the
//! requests that do are made here, signed with `object_store`'s own SigV4 signer and
//! credentials (the same chain the store uses) and sent through its HTTP client:
//!
//! - `GET /bucket?object-lock` — is Object Lock enabled on the bucket
//!   ([`Worm::enabled`]; production refuses a bucket without it);
//! - `PUT /bucket/key` with `If-None-Match: *`, `x-amz-object-lock-mode: COMPLIANCE`
//!   and `x-amz-object-lock-retain-until-date` — one request, so an original is
//!   never in the bucket unlocked;
//! - `HEAD` and `PUT ?retention` — a lock is only ever extended, never shortened
//!   (the bucket refuses that in compliance mode anyway);
//! - `PUT ?legal-hold` — legal holds on filings become S3 legal holds;
//! - `GET ?versions` and `DELETE ?versionId=` — a bucket with Object Lock is
//!   versioned, so a plain DELETE only adds a delete marker and the locked bytes
//!   stay: the purge deletes every version, which the bucket refuses (403) before
//!   the retain-until date or while a legal hold is on.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{Method, Request, StatusCode};
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{ClientOptions, HttpClient, HttpConnector, ReqwestConnector};
use object_store::path::Path;
use tokio::sync::OnceCell;

use super::S3Config;
use crate::{Error, Result};

/// Retention every original gets at least when it is written (calendar years from
/// the write): the shortest period the retention policy allows. Callers that know
/// more (a filing's type) pass a later date.
pub const DEFAULT_LOCK_YEARS: u32 = 10;

/// The Object Lock side of an S3 originals store.
#[derive(Debug)]
pub(super) struct Worm {
    http: HttpClient,
    credentials: AwsCredentialProvider,
    region: String,
    /// `<endpoint>/<bucket>` (path-style, as the store itself addresses it).
    bucket_url: String,
    /// Whether the bucket has Object Lock, asked once.
    enabled: OnceCell<bool>,
}

/// The namespace of S3's XML bodies.
const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The lock an object carries now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLock {
    /// `COMPLIANCE` or `GOVERNANCE`; `None` when unlocked.
    pub mode: Option<String>,
    pub retain_until: Option<DateTime<Utc>>,
    pub legal_hold: bool,
}

/// The default lock of an object written at `now`.
pub fn default_retain_until(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_add_months(chrono::Months::new(12 * DEFAULT_LOCK_YEARS))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn s3_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(object_store::Error::Generic {
        store: "S3",
        source: format!("{what}: {e}").into(),
    })
}

/// What the bucket answered, for an error message: status and its `<Code>`.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    let code = xml_text(body, "Code").unwrap_or_default();
    let message = xml_text(body, "Message").unwrap_or_default();
    format!("{status} {code} {message}").trim().to_owned()
}

impl Worm {
    pub(super) fn new(config: &S3Config, credentials: AwsCredentialProvider) -> Result<Self> {
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        let http = ReqwestConnector::default()
            .connect(
                &ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_timeout(std::time::Duration::from_secs(30)),
            )
            .map_err(Error::Store)?;
        Ok(Self {
            http,
            credentials,
            region: config.region.clone(),
            bucket_url: format!("{}/{}", endpoint.trim_end_matches('/'), config.bucket),
            enabled: OnceCell::new(),
        })
    }

    /// Sends a signed request; answers the status, the headers and the body.
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes)> {
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        if !body.is_empty() {
            use md5::Digest;
            let md5 = md5::Md5::digest(&body);
            builder = builder.header("content-md5", base64_std(&md5));
        }
        let mut request = builder
            .body(body.into())
            .map_err(|e| s3_error("building a request", e))?;
        let credential = self.credentials.get_credential().await?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(Error::Store)?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| s3_error(&format!("{method} {url}"), e))?;
        let (parts, body) = response.into_parts();
        let body = body
            .bytes()
            .await
            .map_err(|e| s3_error(&format!("{method} {url}"), e))?;
        Ok((parts.status, parts.headers, body))
    }

    fn object_url(&self, key: &Path) -> String {
        format!("{}/{}", self.bucket_url, key)
    }

    /// Whether the bucket has Object Lock enabled (asked once per process).
    pub(super) async fn enabled(&self) -> Result<bool> {
        self.enabled
            .get_or_try_init(|| async {
                let url = format!("{}?object-lock", self.bucket_url);
                let (status, _, body) = self.send(Method::GET, &url, &[], Bytes::new()).await?;
                if status.is_success() {
                    return Ok(xml_text(&body, "ObjectLockEnabled").as_deref() == Some("Enabled"));
                }
                if xml_text(&body, "Code").as_deref()
                    == Some("ObjectLockConfigurationNotFoundError")
                {
                    return Ok(false);
                }
                Err(s3_error(
                    "asking the bucket for its Object Lock configuration",
                    refusal(status, &body),
                ))
            })
            .await
            .copied()
    }

    /// Writes `bytes` under `key`, locked in compliance mode until `until`, unless
    /// an object is there already: then its lock is extended to `until` if it ends
    /// sooner.
    pub(super) async fn put(&self, key: &Path, bytes: Bytes, until: DateTime<Utc>) -> Result<()> {
        let until = whole_seconds_up(until);
        let headers = [
            ("if-none-match", "*".to_owned()),
            ("x-amz-object-lock-mode", "COMPLIANCE".to_owned()),
            ("x-amz-object-lock-retain-until-date", iso(until)),
        ];
        let (status, _, body) = self
            .send(Method::PUT, &self.object_url(key), &headers, bytes)
            .await?;
        match status {
            s if s.is_success() => Ok(()),
            // Already stored (by an earlier filing of the same bytes).
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => self.extend(key, until).await,
            _ => Err(s3_error(
                &format!("writing {key} with Object Lock"),
                refusal(status, &body),
            )),
        }
    }

    /// The lock `key` carries now; `None` when there is no such object.
    pub(super) async fn lock(&self, key: &Path) -> Result<Option<ObjectLock>> {
        let (status, headers, _) = self
            .send(Method::HEAD, &self.object_url(key), &[], Bytes::new())
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(s3_error(&format!("reading the lock of {key}"), status));
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retain_until = match header("x-amz-object-lock-retain-until-date") {
            Some(t) => Some(
                DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| s3_error(&format!("the retain-until date of {key}"), e))?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        Ok(Some(ObjectLock {
            mode: header("x-amz-object-lock-mode"),
            retain_until,
            legal_hold: header("x-amz-object-lock-legal-hold").as_deref() == Some("ON"),
        }))
    }

    /// Makes `key` locked until at least `until` (never shortens a lock).
    pub(super) async fn extend(&self, key: &Path, until: DateTime<Utc>) -> Result<()> {
        let until = whole_seconds_up(until);
        let current = self
            .lock(key)
            .await?
            .ok_or_else(|| Error::MissingOriginal(key.filename().unwrap_or_default().to_owned()))?;
        if current.mode.as_deref() == Some("COMPLIANCE")
            && current.retain_until.is_some_and(|t| t >= until)
        {
            return Ok(());
        }
        let body = format!(
            "<Retention xmlns=\"{S3_NS}\">\
             <Mode>COMPLIANCE</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            iso(until)
        );
        self.put_setting(key, "retention", body, "extending the lock")
            .await
    }

    /// Turns the S3 legal hold of `key` on or off.
    pub(super) async fn legal_hold(&self, key: &Path, on: bool) -> Result<()> {
        let body = format!(
            "<LegalHold xmlns=\"{S3_NS}\"><Status>{}</Status></LegalHold>",
            if on { "ON" } else { "OFF" }
        );
        self.put_setting(key, "legal-hold", body, "setting the legal hold")
            .await
    }

    /// `PUT /bucket/key?{setting}` with the XML `body`; `what` names it in errors.
    async fn put_setting(&self, key: &Path, setting: &str, body: String, what: &str) -> Result<()> {
        let url = format!("{}?{setting}", self.object_url(key));
        let (status, _, answer) = self.send(Method::PUT, &url, &[], body.into()).await?;
        if !status.is_success() {
            return Err(s3_error(
                &format!("{what} of {key}"),
                refusal(status, &answer),
            ));
        }
        Ok(())
    }

    /// Deletes every version of `key` (and its delete markers); `false` when there
    /// was none. Before the retain-until date, or under a legal hold, the bucket
    /// refuses and this answers [`Error::Conflict`] naming why.
    pub(super) async fn delete(&self, key: &Path) -> Result<bool> {
        let url = format!("{}?versions&prefix={}", self.bucket_url, key);
        let (status, _, body) = self.send(Method::GET, &url, &[], Bytes::new()).await?;
        if !status.is_success() {
            return Err(s3_error(
                &format!("listing the versions of {key}"),
                refusal(status, &body),
            ));
        }
        let versions: Vec<String> = xml_records(&body, &["Version", "DeleteMarker"])
            .into_iter()
            .filter(|r| r.get("Key").map(String::as_str) == Some(key.as_ref()))
            .filter_map(|mut r| r.remove("VersionId"))
            .collect();
        for version in &versions {
            let url = format!("{}?versionId={version}", self.object_url(key));
            let (status, _, body) = self.send(Method::DELETE, &url, &[], Bytes::new()).await?;
            match status {
                s if s.is_success() || s == StatusCode::NOT_FOUND => {}
                StatusCode::FORBIDDEN => {
                    return Err(Error::Conflict(format!(
                        "the originals bucket refuses to delete {key} (version {version}): \
                         its Object Lock retention has not ended or a legal hold is on ({})",
                        refusal(status, &body)
                    )));
                }
                _ => {
                    return Err(s3_error(
                        &format!("deleting {key} version {version}"),
                        refusal(status, &body),
                    ));
                }
            }
        }
        Ok(!versions.is_empty())
    }
}

/// `t` rounded up to a whole second (S3 keeps retain-until dates to the second; a
/// lock is never made shorter than asked).
fn whole_seconds_up(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{DurationRound, TimeDelta};
    match t.duration_trunc(TimeDelta::seconds(1)) {
        Ok(down) if down < t => down + TimeDelta::seconds(1),
        Ok(down) => down,
        Err(_) => t,
    }
}

/// The ISO 8601 form S3 takes for dates (`2036-12-05T10:00:00Z`).
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The text of the first element named `name` in an S3 XML answer.
fn xml_text(xml: &[u8], name: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut inside = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => inside = e.local_name().as_ref() == name.as_bytes(),
            Ok(Event::Text(t)) if inside => return t.decode().ok().map(|s| s.into_owned()),
            Ok(Event::End(_)) => inside = false,
            Ok(Event::Eof) | Err(_) => return None,
            _ => {}
        }
    }
}

/// For every element named one of `records`, its children's texts by name (the
/// entries of a ListObjectVersions answer).
fn xml_records(xml: &[u8], records: &[&str]) -> Vec<std::collections::HashMap<String, String>> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut out = Vec::new();
    let mut current: Option<std::collections::HashMap<String, String>> = None;
    let mut field: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if records.contains(&name.as_str()) {
                    current = Some(Default::default());
                } else if current.is_some() {
                    field = Some(name);
                }
            }
            Ok(Event::Text(t)) => {
                if let (Some(record), Some(name)) = (current.as_mut(), field.as_ref())
                    && let Ok(text) = t.decode()
                {
                    record.insert(name.clone(), text.into_owned());
                }
            }
            Ok(Event::End(e)) => {
                field = None;
                if records.contains(&String::from_utf8_lossy(e.local_name().as_ref()).as_ref())
                    && let Some(record) = current.take()
                {
                    out.push(record);
                }
            }
            Ok(Event::Eof) | Err(_) => return out,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_answers_it_needs() {
        let listing = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Version><Key>sha256/ab/cd/x</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest></Version>
<DeleteMarker><Key>sha256/ab/cd/x</Key><VersionId>v2</VersionId></DeleteMarker>
<Version><Key>sha256/ab/cd/xy</Key><VersionId>v3</VersionId></Version>
</ListVersionsResult>"#;
        let records = xml_records(listing, &["Version", "DeleteMarker"]);
        let ids: Vec<_> = records
            .iter()
            .map(|r| (r["Key"].as_str(), r["VersionId"].as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("sha256/ab/cd/x", "v1"),
                ("sha256/ab/cd/x", "v2"),
                ("sha256/ab/cd/xy", "v3")
            ]
        );
        let config = br#"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"#;
        assert_eq!(
            xml_text(config, "ObjectLockEnabled").as_deref(),
            Some("Enabled")
        );
        assert_eq!(xml_text(config, "Code"), None);
        let t = DateTime::parse_from_rfc3339("2026-12-05T10:00:00.123Z").unwrap();
        assert_eq!(iso(t.with_timezone(&Utc)), "2026-12-05T10:00:00Z");
        assert_eq!(
            iso(whole_seconds_up(t.with_timezone(&Utc))),
            "2026-12-05T10:00:01Z"
        );
        assert_eq!(
            default_retain_until(t.with_timezone(&Utc)),
            DateTime::parse_from_rfc3339("2036-12-05T10:00:00.123Z").unwrap()
        );
    }
}
