//! Configuration: one TOML file plus `IVAN_*` environment variables plus command-line
//! flags, in rising priority. Every key has a default, so `ivan serve` runs with no
//! file at all (SQLite and originals under `./data`, listening on 127.0.0.1:8080).
//! Unknown keys — in the file or as `IVAN_*` variables — are errors, so a typo never
//! silently falls back to a default. Nested keys use `__` in variables, e.g.
//! `IVAN_LEDGER__CHECKPOINT_EVERY_ENTRIES=500`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use retention::LedgerConfig;
use retention::originals::OriginalsConfig;
use serde::{Deserialize, Serialize};

use crate::Error;
pub use crate::connections::HttpConfig;
use crate::forwarding::{AuthorityConfig, AuthorityMode, ForwardingConfig};
use crate::intake::IntakeConfig;
use crate::mail::{MailConfig, MailTransport};
pub use crate::telemetry::LogFormat;

/// Environment variables with the `IVAN_` prefix that are not configuration keys.
const NON_CONFIG_VARS: &[&str] = &["config", "bin", "log", "operator"];
/// Prefix of variables reserved for the test suites (e.g. `IVAN_TEST_PG`).
const TEST_VAR_PREFIX: &str = "test_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `production` refuses the development conveniences (the in-process sandbox
    /// authority, the mail file sink) at start.
    pub environment: Environment,
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where the SQLite database, originals and signing keys live by default.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; default `sqlite://<data_dir>/ivan.db`.
    pub database_url: Option<String>,
    /// Largest database pool.
    pub database_max_connections: u32,
    /// `text` for people, `json` for log shippers.
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub ledger: LedgerConfig,
    pub originals: OriginalsConfig,
    pub intake: IntakeConfig,
    pub authority: AuthorityConfig,
    pub forwarding: ForwardingConfig,
    pub mail: MailConfig,
    /// The mobile pre-registration channel (PINs, sessions, deadlines).
    pub mobile: mobile_api::MobileConfig,
    /// How SMS leave: `transport = "smpp" | "http_gateway" | "dev_outbox"`. Unset: the
    /// development outbox file `<data_dir>/sms-outbox.jsonl`.
    pub sms: Option<sms_adapter::SmsConfig>,
    /// The employer portal (origin, session lifetimes).
    pub portal: crate::portal::PortalConfig,
    /// How long filings' payloads are kept, and the sweeper that purges them.
    pub retention: crate::documents::retention::RetentionConfig,
    /// Witnesses asked to cosign the log's checkpoints (`[[witnesses]]`, each with
    /// `url` and `vkey`; docs/LOG.md, "Witnesses"). None by default.
    pub witnesses: Vec<crate::cosigning::WitnessConfig>,
    /// Who runs a command (`--operator` / `IVAN_OPERATOR`), not a configuration key:
    /// the log names operators' actions by it.
    #[serde(skip)]
    pub operator: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            log_format: LogFormat::Text,
            http: HttpConfig::default(),
            ledger: LedgerConfig::default(),
            originals: OriginalsConfig::default(),
            intake: IntakeConfig::default(),
            authority: AuthorityConfig::default(),
            forwarding: ForwardingConfig::default(),
            mail: MailConfig::default(),
            mobile: mobile_api::MobileConfig::default(),
            sms: None,
            witnesses: Vec::new(),
            operator: None,
            portal: crate::portal::PortalConfig::default(),
            retention: crate::documents::retention::RetentionConfig::default(),
        }
    }
}

/// Values given as command-line flags; they override file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    /// `--operator` / `IVAN_OPERATOR`.
    pub operator: Option<String>,
}

impl Config {
    /// Defaults ← `file` (if given; it must exist) ← `IVAN_*` env ← `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Error> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "config file {} does not exist or is not a file",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(Env::prefixed("IVAN_").split("__").filter(|k| {
            let k = k.as_str().to_ascii_lowercase();
            !NON_CONFIG_VARS.contains(&k.as_str()) && !k.starts_with(TEST_VAR_PREFIX)
        }));
        if let Some(v) = overrides.listen {
            fig = fig.merge(("listen", v));
        }
        if let Some(v) = &overrides.data_dir {
            fig = fig.merge(("data_dir", v));
        }
        if let Some(v) = &overrides.database_url {
            fig = fig.merge(("database_url", v));
        }
        Self::extract(fig, overrides.operator.clone())
    }

    /// The configuration `fig` holds, with `operator` (not a key), checked.
    fn extract(fig: Figment, operator: Option<String>) -> Result<Self, Error> {
        let mut config: Config = fig.extract().map_err(|e| {
            let mut problems = Problems::default();
            for e in e {
                problems.push(plain_figment_error(&e));
            }
            problems
                .into_result()
                .err()
                .unwrap_or_else(|| Error::Config("invalid".into()))
        })?;
        config.operator = operator;
        config.validate()?;
        Ok(config)
    }

    /// This configuration with `IVAN_*` variables laid over it as [`Config::load`]
    /// reads them from the environment (`IVAN_SMS__TRANSPORT=smpp` sets
    /// `sms.transport`), without touching the process's environment: for a server
    /// built in-process ([`crate::app::App`]) the way `ivan serve` would be.
    pub fn with_vars<'a>(
        self,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, Error> {
        let operator = self.operator.clone();
        let mut fig = Figment::from(Serialized::defaults(self));
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("IVAN_") else {
                return Err(Error::Config(format!("{name} is not an IVAN_ variable")));
            };
            let key = key.to_ascii_lowercase().replace("__", ".");
            let value: figment::value::Value = value.parse().unwrap_or_else(|e| match e {});
            fig = fig.merge((key, value));
        }
        Self::extract(fig, operator)
    }

    /// Checks the values [`Config::load`] read (and those a test set by hand). Every
    /// problem is reported at once, one per line, so a production configuration is
    /// fixed in one pass rather than one restart per mistake.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Problems::default();
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            problems.push(format!(
                "database_url {:?} must start with sqlite:// or postgres://",
                retention::db::redact_url(&url)
            ));
        }
        let http = &self.http;
        if http.body_limit_bytes == 0
            || http.json_body_limit_bytes == 0
            || http.request_timeout_secs == 0
            || http.header_read_timeout_secs == 0
            || http.max_connections == 0
            || http.max_connections_per_source == 0
        {
            problems.push(
                "http.body_limit_bytes, json_body_limit_bytes, request_timeout_secs, \
                 header_read_timeout_secs, max_connections and max_connections_per_source \
                 must be positive",
            );
        }
        let intake = &self.intake;
        if intake.max_document_bytes == 0
            || intake.body_budget_bytes == 0
            || intake.analysis_budget_bytes == 0
            || intake.max_depth == 0
            || intake.max_nodes == 0
        {
            problems.push(
                "intake.max_document_bytes, body_budget_bytes, analysis_budget_bytes, max_depth \
                 and max_nodes must be positive",
            );
        }
        problems.check(intake.check_hold_windows().map_err(Error::Config));
        if intake.crl_fetch_secs == 0
            || intake
                .crl_urls
                .iter()
                .any(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            problems
                .push("intake.crl_fetch_secs must be positive and intake.crl_urls http(s) URLs");
        }
        if intake.ocsp_timeout_ms == 0 {
            problems.push(
                "intake.ocsp_timeout_ms must be at least 1 (intake.ocsp = false turns OCSP off)",
            );
        }
        if intake.cert_expiry_check_secs == 0
            || intake
                .cert_expiry_warn_days
                .iter()
                .any(|d| !(1..=3650).contains(d))
        {
            problems.push(
                "intake.cert_expiry_check_secs must be positive and each of \
                 intake.cert_expiry_warn_days 1 to 3650",
            );
        }
        if !(1..=100).contains(&intake.employer_share_percent) {
            problems.push("intake.employer_share_percent must be 1 to 100");
        }
        problems.check(
            crate::employers::parse_allowed_ips(&self.http.trusted_proxies)
                .map(drop)
                .map_err(|e| Error::Config(format!("http.trusted_proxies: {e}"))),
        );
        if self.database_max_connections == 0 {
            problems.push("database_max_connections must be positive");
        }
        if self.ledger.checkpoint_every_entries == 0 || self.ledger.max_batch == 0 {
            problems.push("ledger.checkpoint_every_entries and ledger.max_batch must be positive");
        }
        problems.check(self.ledger.check_origin().map_err(Error::Config));
        if let Some(name) = &self.operator
            && (name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c)))
        {
            problems.push(format!(
                "--operator {name:?}: 1 to 64 of A-Z a-z 0-9 . _ @ -"
            ));
        }
        for w in &self.witnesses {
            problems.check(w.check().map_err(Error::Config));
        }
        match (self.authority.mode, &self.authority.base_url) {
            (AuthorityMode::Sandbox, _) if self.environment == Environment::Production => {
                problems.push(
                    "authority.mode = \"sandbox\" is for development; production needs \
                     authority.mode = \"remote\" with authority.base_url",
                );
            }
            (AuthorityMode::Sandbox, Some(_)) => {
                problems.push("authority.base_url is only used with authority.mode = \"remote\"");
            }
            (AuthorityMode::Remote, None) => {
                problems.push("authority.mode = \"remote\" needs authority.base_url");
            }
            _ => {}
        }
        problems.check(self.forwarding.validate(&self.authority));
        problems.check(self.mail.validate());
        if self.environment == Environment::Production && self.mail.transport == MailTransport::File
        {
            problems.push(
                "mail.transport = \"file\" is for development; production needs \
                 mail.transport = \"smtp\"",
            );
        }
        problems.check(self.mobile.validate().map_err(Error::Config));
        if self.environment == Environment::Production && self.sms_config().is_dev() {
            problems.push(
                "the SMS dev outbox is for development; production needs [sms] with \
                 transport = \"smpp\" or \"http_gateway\"",
            );
        }
        problems.check(
            self.portal
                .validate(self.environment == Environment::Production),
        );
        problems.check(self.retention.validate());
        problems.into_result()
    }

    /// The SMS transport in force (the default is the development outbox file).
    pub fn sms_config(&self) -> sms_adapter::SmsConfig {
        self.sms.clone().unwrap_or_else(|| {
            sms_adapter::SmsConfig::DevOutbox(sms_adapter::DevOutboxConfig {
                path: self.data_dir.join("sms-outbox.jsonl"),
            })
        })
    }

    /// The database URL in force (the default derives from `data_dir`).
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ivan.db").display()))
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// The effective configuration as TOML, with secrets masked (`ivan config check`).
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(retention::db::redact_url(&self.database_url()));
        if shown.mail.smtp_password.is_some() {
            shown.mail.smtp_password = Some("***".into());
        }
        if let OriginalsConfig::S3(s3) = &mut shown.originals
            && s3.secret_access_key.is_some()
        {
            s3.secret_access_key = Some("***".into());
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return its own large error
mod tests {
    use super::*;

    // Figment's Jail isolates env vars and the working directory per test.
    use figment::Jail;

    fn load(jail_file: Option<&str>) -> Result<Config, Error> {
        Config::load(jail_file.map(Path::new), &Overrides::default())
    }

    #[test]
    fn variables_given_as_pairs_read_as_from_the_environment() {
        let c = Config::default()
            .with_vars([
                ("IVAN_PORTAL__SESSION_IDLE_SECS", "2"),
                ("IVAN_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
                ("IVAN_MAIL__TRANSPORT", "smtp"),
            ])
            .unwrap();
        assert_eq!(c.portal.session_idle_secs, 2);
        assert_eq!(c.http.trusted_proxies, ["127.0.0.1"]);
        assert_eq!(c.mail.transport, MailTransport::Smtp);
        let err = Config::default()
            .with_vars([("PORTAL__SESSION_IDLE_SECS", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an IVAN_ variable"), "{err}");
        let err = Config::default()
            .with_vars([("IVAN_PORTAL__SESION_IDLE_SECS", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sesion_idle_secs"), "{err}");
    }

    #[test]
    fn defaults_need_no_file() {
        Jail::expect_with(|_| {
            let c = load(None).unwrap();
            assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(c.database_url(), "sqlite://./data/ivan.db");
            assert_eq!(c.originals, OriginalsConfig::Local { dir: None });
            Ok(())
        });
    }

    #[test]
    fn documented_example_is_exactly_the_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "example.toml",
                include_str!("../../ops/config/ivan.example.toml"),
            )?;
            assert_eq!(load(Some("example.toml")).unwrap(), Config::default());
            Ok(())
        });
    }

    #[test]
    fn file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "ivan.toml",
                "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/ivan\"\n[ledger]\ncheckpoint_every_entries = 7\n",
            )?;
            jail.set_env("IVAN_DATA_DIR", "/var/lib/ivan");
            jail.set_env("IVAN_LEDGER__MAX_BATCH", "64");
            jail.set_env("IVAN_TEST_PG", "postgres://ignored");
            let c = Config::load(
                Some(Path::new("ivan.toml")),
                &Overrides {
                    listen: Some("127.0.0.1:9100".parse().unwrap()),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
            assert_eq!(c.data_dir, PathBuf::from("/var/lib/ivan"));
            assert_eq!(c.ledger.checkpoint_every_entries, 7);
            assert_eq!(c.ledger.max_batch, 64);
            assert_eq!(c.database_url(), "sqlite:///var/lib/ivan/ivan.db");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_errors_in_file_and_env() {
        Jail::expect_with(|jail| {
            jail.create_file("ivan.toml", "lisen = \"127.0.0.1:9000\"\n")?;
            let err = load(Some("ivan.toml")).unwrap_err().to_string();
            assert!(err.contains("lisen"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("IVAN_DATABSE_URL", "sqlite://x.db");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("databse_url"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_named() {
        Jail::expect_with(|jail| {
            jail.set_env("IVAN_DATABASE_URL", "mysql://x");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("mysql://x"), "{err}");
            Ok(())
        });
        Jail::expect_with(|_| {
            let err = load(Some("missing.toml")).unwrap_err().to_string();
            assert!(err.contains("missing.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn production_refuses_the_sandbox_authority() {
        Jail::expect_with(|jail| {
            jail.set_env("IVAN_ENVIRONMENT", "production");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("sandbox"), "{err}");
            jail.set_env("IVAN_AUTHORITY__MODE", "remote");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("base_url"), "{err}");
            jail.set_env("IVAN_AUTHORITY__BASE_URL", "https://authority.example");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("mail.transport"), "{err}");
            jail.set_env("IVAN_MAIL__TRANSPORT", "smtp");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("SMS dev outbox"), "{err}");
            jail.set_env("IVAN_SMS__TRANSPORT", "http_gateway");
            jail.set_env("IVAN_SMS__URL", "https://sms.example/v1/send");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("portal.public_url"), "{err}");
            jail.set_env("IVAN_PORTAL__PUBLIC_URL", "http://localhost:8080");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("https"), "{err}");
            jail.set_env("IVAN_PORTAL__PUBLIC_URL", "https://portal.example");
            assert_eq!(load(None).unwrap().environment, Environment::Production);
            Ok(())
        });
    }

    #[test]
    fn s3_originals_and_redaction() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "ivan.toml",
                "database_url = \"postgres://ivan:pw@db/ivan\"\n[originals]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\nsecret_access_key = \"sekrit\"\n",
            )?;
            let c = load(Some("ivan.toml")).unwrap();
            assert!(matches!(&c.originals, OriginalsConfig::S3(s) if s.bucket == "b"));
            let shown = c.to_redacted_toml();
            assert!(
                !shown.contains("sekrit") && !shown.contains(":pw@"),
                "{shown}"
            );
            Ok(())
        });
    }

    #[test]
    fn hold_windows_and_deadlines_are_set_per_document_type() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "ivan.toml",
                "[intake.hold_window_secs_by_type]\n\"registration-form\" = 60\n\
                 [forwarding.deadline_secs_by_type]\n\"contribution-report\" = 86400\n",
            )?;
            jail.set_env(
                "IVAN_FORWARDING__DEADLINE_SECS_BY_TYPE",
                r#"{"preregistration" = 600}"#,
            );
            let c = load(Some("ivan.toml")).unwrap();
            let hold = |ty: &str| c.intake.hold_window(ty).num_seconds();
            assert_eq!(
                (hold("registration-form"), hold("employer-change")),
                (60, 5 * 3600)
            );
            let deadlines = c.forwarding.deadlines();
            // The environment's entries join the file's; unnamed types have the default.
            assert_eq!(deadlines.of("preregistration").num_seconds(), 600);
            assert_eq!(deadlines.of("contribution-report").num_seconds(), 86400);
            assert_eq!(deadlines.of("employer-change").num_seconds(), 2 * 3600);
            Ok(())
        });
        for (var, value, named) in [
            (
                "IVAN_FORWARDING__DEADLINE_SECS_BY_TYPE",
                r#"{"payslip" = 60}"#,
                "unknown document type \"payslip\"",
            ),
            (
                "IVAN_FORWARDING__DEADLINE_SECS_BY_TYPE",
                r#"{"registration-form" = 0}"#,
                "at least 1",
            ),
            ("IVAN_FORWARDING__DEADLINE_SECS", "0", "at least 1"),
            // A pre-registration has no cancel window to set.
            (
                "IVAN_INTAKE__HOLD_WINDOW_SECS_BY_TYPE",
                r#"{"preregistration" = 60}"#,
                "unknown document type \"preregistration\"",
            ),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(var, value);
                let err = load(None).unwrap_err().to_string();
                assert!(err.contains(named), "{var}={value}: {err}");
                Ok(())
            });
        }
    }
}

/// The problems [`Config::validate`] found, reported together.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Notes the problem a part's own check found, if any.
    fn check(&mut self, checked: Result<(), Error>) {
        match checked {
            Ok(()) => {}
            Err(Error::Config(problem)) => self.push(problem),
            Err(other) => self.push(other.to_string()),
        }
    }

    /// One problem on the error's line; several each on a line of their own.
    fn into_result(self) -> Result<(), Error> {
        match self.0.as_slice() {
            [] => Ok(()),
            [one] => Err(Error::Config(one.clone())),
            many => Err(Error::Config(format!(
                "{} problems:\n  - {}",
                many.len(),
                many.join("\n  - ")
            ))),
        }
    }
}

/// One figment error in the words of this configuration: where (the file, or the
/// environment variable), which key, what is wrong; no profile names or serde types.
fn plain_figment_error(e: &figment::Error) -> String {
    use figment::error::Kind;
    let key = e.path.join(".");
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment variable"));
    let place = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        _ if from_env && !e.path.is_empty() => {
            format!(
                "environment variable IVAN_{}",
                e.path.join("__").to_ascii_uppercase()
            )
        }
        Some(figment::Source::File(path)) if key.is_empty() => path.display().to_string(),
        Some(figment::Source::File(path)) => format!("{}: {key}", path.display()),
        _ => key,
    };
    let expected = |what: &str| match what {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number ≥ 0".to_owned(),
        "isize" | "i64" | "i32" | "i16" | "i8" => "a whole number".to_owned(),
        "f64" | "f32" => "a number".to_owned(),
        "socket address" => "an address such as 127.0.0.1:8080".to_owned(),
        other => other.to_owned(),
    };
    let what = match &e.kind {
        Kind::InvalidType(actual, wanted) | Kind::InvalidValue(actual, wanted) => {
            format!("expected {}, found {actual}", expected(wanted))
        }
        Kind::UnknownField(field, known) => {
            format!("unknown key `{field}` (known here: {})", known.join(", "))
        }
        Kind::UnknownVariant(value, known) => {
            format!("unknown value {value:?} (one of: {})", known.join(", "))
        }
        Kind::MissingField(field) => format!("missing key `{field}`"),
        other => other.to_string(),
    };
    if place.is_empty() {
        what
    } else {
        format!("{place}: {what}")
    }
}
