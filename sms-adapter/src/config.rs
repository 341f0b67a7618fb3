use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, FileOutbox, HttpGateway, SmppSender, SmsSender};

/// Which transport sends SMS, and its settings. In TOML, the table has a
/// `transport = "smpp" | "http_gateway" | "dev_outbox"` key:
///
/// ```toml
/// [sms]
/// transport = "smpp"
/// address = "smsc.example.net:2775"
/// system_id = "ivan"
/// password = "s3cret"
/// source_addr = "IVAN"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "transport", rename_all = "snake_case")]
pub enum SmsConfig {
    /// Development only: messages go to a JSON-lines file, never to a phone.
    DevOutbox(DevOutboxConfig),
    Smpp(SmppConfig),
    HttpGateway(HttpGatewayConfig),
}

impl SmsConfig {
    /// True for transports that must not be used in production (the file outbox).
    pub fn is_dev(&self) -> bool {
        matches!(self, SmsConfig::DevOutbox(_))
    }

    /// The transport name the built sender will report (`SmsSender::name`).
    pub fn transport(&self) -> &'static str {
        match self {
            SmsConfig::DevOutbox(_) => FileOutbox::NAME,
            SmsConfig::Smpp(_) => SmppSender::NAME,
            SmsConfig::HttpGateway(_) => HttpGateway::NAME,
        }
    }
}

/// Builds the configured sender. Checks the configuration; opens no connection
/// (SMPP connects on the first send).
pub fn build(config: &SmsConfig) -> Result<Arc<dyn SmsSender>, Error> {
    Ok(match config {
        SmsConfig::DevOutbox(c) => Arc::new(FileOutbox::new(c.path.clone())),
        SmsConfig::Smpp(c) => Arc::new(SmppSender::new(c.clone())?),
        SmsConfig::HttpGateway(c) => Arc::new(HttpGateway::new(c.clone())?),
    })
}

/// A password or token: deserialized from a plain string, never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Serializes masked (`"***"`), so printing a configuration never shows the secret.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `transport = "dev_outbox"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DevOutboxConfig {
    /// The JSON-lines file messages are appended to (its directory is created).
    pub path: PathBuf,
}

/// SMPP interface version announced in the bind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum SmppVersion {
    /// SMPP 3.4 — what most operator SMSCs speak.
    #[default]
    #[serde(rename = "3.4")]
    V3_4,
    #[serde(rename = "5.0")]
    V5_0,
}

/// `transport = "smpp"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    /// `host:port` of the SMSC (plain TCP).
    pub address: String,
    /// At most 15 ASCII characters.
    pub system_id: String,
    /// At most 8 ASCII characters (an SMPP limit).
    pub password: Secret,
    /// At most 12 ASCII characters; usually empty.
    #[serde(default)]
    pub system_type: String,
    /// Sender: alphanumeric (at most 11 characters), a short code, or `+E.164`.
    pub source_addr: String,
    /// Type of number of `source_addr`. Default: 5 (alphanumeric) when `source_addr`
    /// has a non-digit, 1 (international) for `+digits`, 0 (unknown) for digits.
    #[serde(default)]
    pub source_ton: Option<u8>,
    /// Numbering plan of `source_addr`. Default: 0 (unknown) for alphanumeric,
    /// 1 (ISDN) otherwise.
    #[serde(default)]
    pub source_npi: Option<u8>,
    /// Ask for delivery receipts; binds as transceiver so they can come back.
    #[serde(default)]
    pub registered_delivery: bool,
    /// `enquire_link` keep-alive interval; 0 turns it off.
    #[serde(default = "defaults::enquire_link_secs")]
    pub enquire_link_secs: u64,
    /// TCP connect timeout.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Timeout for each response (bind, submit_sm, enquire_link).
    #[serde(default = "defaults::response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// First wait after a failed connection attempt; doubles per failure…
    #[serde(default = "defaults::reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// …up to this.
    #[serde(default = "defaults::reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    #[serde(default)]
    pub interface_version: SmppVersion,
}

/// `transport = "http_gateway"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGatewayConfig {
    /// `http(s)://…` endpoint that takes `POST {"to", "text", "from"}`.
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Sender name or number passed as `from` when set.
    #[serde(default)]
    pub from: Option<String>,
    /// Whole-request timeout.
    #[serde(default = "defaults::http_timeout_ms")]
    pub timeout_ms: u64,
}

mod defaults {
    pub fn enquire_link_secs() -> u64 {
        30
    }
    pub fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub fn response_timeout_ms() -> u64 {
        10_000
    }
    pub fn reconnect_min_ms() -> u64 {
        1_000
    }
    pub fn reconnect_max_ms() -> u64 {
        60_000
    }
    pub fn http_timeout_ms() -> u64 {
        10_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        sms: SmsConfig,
    }

    fn parse(s: &str) -> Result<SmsConfig, toml::de::Error> {
        toml::from_str::<File>(s).map(|f| f.sms)
    }

    #[test]
    fn smpp_defaults_and_redaction() {
        let c = parse(
            r#"
            [sms]
            transport = "smpp"
            address = "127.0.0.1:2775"
            system_id = "ivan"
            password = "hunter2"
            source_addr = "IVAN"
            "#,
        )
        .unwrap();
        let SmsConfig::Smpp(s) = &c else {
            panic!("{c:?}")
        };
        assert_eq!(s.enquire_link_secs, 30);
        assert_eq!(s.response_timeout_ms, 10_000);
        assert!(!s.registered_delivery);
        assert_eq!(s.interface_version, SmppVersion::V3_4);
        assert!(!c.is_dev());
        assert_eq!(c.transport(), "smpp");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn http_and_outbox() {
        let c = parse(
            r#"
            [sms]
            transport = "http_gateway"
            url = "https://gw.example/send"
            bearer_token = "tok-123"
            "#,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("tok-123"));
        let c = parse("[sms]\ntransport = \"dev_outbox\"\npath = \"/tmp/x.jsonl\"\n").unwrap();
        assert!(c.is_dev());
    }

    #[test]
    fn unknown_fields_and_transports_are_refused() {
        assert!(parse("[sms]\ntransport = \"dev_outbox\"\npath = \"x\"\nbogus = 1\n").is_err());
        assert!(parse("[sms]\ntransport = \"pigeon\"\n").is_err());
        assert!(parse("[sms]\npath = \"x\"\n").is_err());
    }
}
