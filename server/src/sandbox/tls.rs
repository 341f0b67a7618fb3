//! TLS for the sandbox authority: its server configuration (mutual TLS) and the throwaway development material.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::SandboxTls;
use crate::Error;
use crate::dev::{self, Identity};

pub(super) fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "sandbox authority: cannot read the {what} {}: {e}",
            path.display()
        ))
    })
}

pub(super) fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_pem(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Config(format!(
                "sandbox authority: the {what} {} is not PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "sandbox authority: the {what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The rustls server configuration for `tls`, with aws-lc-rs as the crypto provider.
pub(super) fn server_config(tls: &SandboxTls) -> Result<rustls::ServerConfig, Error> {
    let bad = |e: rustls::Error| Error::Config(format!("sandbox authority TLS: {e}"));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = read_certs(&tls.cert_pem, "server certificate")?;
    let key_pem = read_pem(&tls.key_pem, "server key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        Error::Config(format!(
            "sandbox authority: the server key {} is not a PEM private key: {e}",
            tls.key_pem.display()
        ))
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(bad)?;
    let builder = match &tls.client_ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "client CA certificate")? {
                roots.add(cert).map_err(bad)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::Config(format!("sandbox authority TLS client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(bad)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The files [`write_dev_tls`] writes: (name, secret).
pub(super) const DEV_TLS_FILES: [(&str, bool); 10] = [
    ("ca.pem", false),
    ("server.pem", false),
    ("server.key", true),
    ("client.pem", false),
    ("client.key", true),
    ("other-ca.pem", false),
    ("other-server.pem", false),
    ("other-server.key", true),
    ("other-client.pem", false),
    ("other-client.key", true),
];

/// Writes throwaway TLS material for the sandbox (and for ivan's forwarding client)
/// as PEM files into `dir`, creating it if missing and refusing to overwrite any
/// existing file (then nothing is written). Returns the paths written, in this order:
///
/// | file | what |
/// |---|---|
/// | `ca.pem` | a test CA (EC P-256; its key is not kept) |
/// | `server.pem`, `server.key` | server certificate for DNS `localhost`, IP `127.0.0.1` and `::1`, issued by `ca.pem` |
/// | `client.pem`, `client.key` | client certificate (extendedKeyUsage clientAuth), CN "ivan", issued by `ca.pem` |
/// | `other-ca.pem` | an unrelated CA |
/// | `other-server.pem`, `other-server.key` | a server certificate like `server.pem`, issued by `other-ca.pem` |
/// | `other-client.pem`, `other-client.key` | a client certificate like `client.pem`, issued by `other-ca.pem` |
///
/// Leaves are valid from now − 1 day to now + 2 years, CAs to now + 10 years. Keys
/// are unencrypted PKCS#8, mode 0600 on Unix. For tests and development only.
pub fn write_dev_tls(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let now = Utc::now();
    let ca_from = now - TimeDelta::days(1);
    let ca_to = now + TimeDelta::days(3652);
    let ca = dev::make_ca("ivan sandbox authority test CA", ca_from, ca_to).map_err(generation)?;
    let other_ca = dev::make_ca("Unrelated sandbox test CA", ca_from, ca_to).map_err(generation)?;
    let server = leaf(&ca, "localhost", Role::Server, now)?;
    let client = leaf(&ca, "ivan", Role::Client, now)?;
    let other_server = leaf(&other_ca, "localhost", Role::Server, now)?;
    let other_client = leaf(&other_ca, "ivan", Role::Client, now)?;
    let contents: [&str; 10] = [
        &ca.cert_pem,
        &server.cert_pem,
        &server.key_pem,
        &client.cert_pem,
        &client.key_pem,
        &other_ca.cert_pem,
        &other_server.cert_pem,
        &other_server.key_pem,
        &other_client.cert_pem,
        &other_client.key_pem,
    ];

    let paths: Vec<PathBuf> = DEV_TLS_FILES.iter().map(|(f, _)| dir.join(f)).collect();
    let files: Vec<(&Path, &str, bool)> = paths
        .iter()
        .zip(DEV_TLS_FILES)
        .zip(contents)
        .map(|((path, (_, secret)), text)| (path.as_path(), text, secret))
        .collect();
    dev::write_all_new(dir, &files).map_err(|e| match e {
        dev::DevError::Exists(_) => Error::Conflict(e.to_string()),
        dev::DevError::Io { path, source } => Error::Io {
            context: path.display().to_string(),
            source,
        },
        other => generation(other),
    })?;
    Ok(paths)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Server,
    Client,
}

pub(super) fn generation(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("cannot generate the sandbox TLS material: {e}"))
}

/// A TLS leaf certificate issued by `ca`.
pub(super) fn leaf(
    ca: &Identity,
    common_name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<Identity, Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(generation)?;
    let issuer =
        Issuer::from_ca_cert_der(&ca.cert_der.as_slice().into(), ca_key).map_err(generation)?;
    let key = KeyPair::generate().map_err(generation)?;
    let names: Vec<String> = match role {
        Role::Server => vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        Role::Client => vec![],
    };
    let mut params = CertificateParams::new(names).map_err(generation)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::OrganizationName,
        "ivan sandbox authority test PKI (not for production)",
    );
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match role {
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    let secs = |t: DateTime<Utc>| {
        u64::try_from(t.timestamp())
            .map(Duration::from_secs)
            .map_err(|_| generation(format!("time {t} is out of range")))
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + secs(now - TimeDelta::days(1))?;
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + secs(now + TimeDelta::days(730))?;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).map_err(generation)?;
    Ok(Identity {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
