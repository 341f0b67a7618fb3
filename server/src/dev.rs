//! A throwaway test PKI, for trying `ivan` locally (`ivan dev keys`) and for tests.
//!
//! [`make_keys`] writes, into a directory it creates if missing, PEM files for:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` | a test root CA (EC P-256), valid from now−1 day to now+10 years |
//! | `employer.pem`, `employer.key` | a signing certificate issued by it: CN "Test Employer", keyUsage digitalSignature + nonRepudiation, valid now−1 day .. now+2 years |
//! | `revoked.pem`, `revoked.key` | a second such certificate, listed on `crl.pem` |
//! | `expired.pem`, `expired.key` | a signing certificate valid only in the past (now−2 years .. now−1 year) |
//! | `other-ca.pem` | an unrelated CA, which `ivan` does not trust |
//! | `stranger.pem`, `stranger.key` | a signing certificate issued by that unrelated CA |
//! | `crl.pem` | a CRL signed by the test CA revoking `revoked.pem` (thisUpdate now−1 hour, nextUpdate now+30 days) |
//!
//! Private keys are unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), created
//! with mode 0600 on Unix. Existing files are never overwritten.
//!
//! **Gap: no RSA key is generated here (yet).** The `ring` backend of `rcgen`
//! cannot generate RSA keys, so `employer-rsa.pem`/`.key` are not written. Enabling
//! `rcgen`'s `aws_lc_rs` feature (aws-lc-rs is already built for reqwest) would
//! allow `KeyPair::generate_rsa_for`. Meanwhile [`LeafSpec::key_pem`] accepts an
//! existing key, RSA included (for example from `openssl genpkey -algorithm RSA`),
//! so RSA certificates can be issued from this PKI.
//!
//! Tests elsewhere use [`make_pki_in_memory`] (nothing touches the disk), and
//! [`issue`] / [`sign_crl`] (or [`Pki::issue`] / [`Pki::crl`]) for variants: other
//! validity periods, key usages, CA flags, CRLs with other dates and entries.
//!
//! These keys are for tests only: unprotected, never to be registered for real filings.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Why the test PKI could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("refusing to overwrite existing files: {}", list(.0))]
    Exists(Vec<PathBuf>),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate the test PKI: {0}")]
    Generate(String),
    #[error("time {0} is out of the range certificates can carry")]
    Time(DateTime<Utc>),
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn generate(e: impl fmt::Display) -> DevError {
    DevError::Generate(e.to_string())
}

/// A certificate and its private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// Unencrypted PKCS#8 PEM.
    pub key_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_sha256", &self.fingerprint())
            .field("key_pem", &"[test key]")
            .finish()
    }
}

impl Identity {
    /// SHA-256 of the certificate's DER (the key employers' certificates are
    /// registered under).
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.cert_der))
    }

    /// The certificate's serial number (the DER INTEGER's content octets).
    pub fn serial(&self) -> Result<Vec<u8>, DevError> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.cert_der).map_err(generate)?;
        Ok(cert.raw_serial().to_vec())
    }

    fn key(&self) -> Result<KeyPair, DevError> {
        KeyPair::from_pem(&self.key_pem).map_err(generate)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, DevError> {
        Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), self.key()?).map_err(generate)
    }
}

/// A CRL, DER and PEM (`X509 CRL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlFile {
    pub der: Vec<u8>,
    pub pem: String,
}

/// What to put in a certificate made by [`issue`].
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// basicConstraints cA=true (a CA certificate); otherwise cA=false is written.
    pub ca: bool,
    /// Use this private key (PKCS#8 PEM; EC P-256/P-384, Ed25519 or RSA) instead of
    /// generating a new EC P-256 key.
    pub key_pem: Option<String>,
    /// A CRL distribution point (an `http://` URL) to name in the certificate.
    pub crl_url: Option<String>,
}

impl LeafSpec {
    /// A document signing certificate: keyUsage digitalSignature + nonRepudiation,
    /// no extended key usage, valid from `now` − 1 day to `now` + 2 years.
    pub fn signing(common_name: &str, now: DateTime<Utc>) -> Self {
        Self {
            common_name: common_name.to_owned(),
            not_before: shift(now, -Duration::days(1)),
            not_after: shift(now, Duration::days(730)),
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
            extended_key_usages: vec![],
            ca: false,
            key_pem: None,
            crl_url: None,
        }
    }
}

/// One entry of a CRL made by [`sign_crl`].
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The certificate's serial number (DER INTEGER content octets).
    pub serial: Vec<u8>,
    pub at: DateTime<Utc>,
    pub reason: Option<RevocationReason>,
}

impl Revoked {
    pub fn of(
        cert: &Identity,
        at: DateTime<Utc>,
        reason: Option<RevocationReason>,
    ) -> Result<Self, DevError> {
        Ok(Self {
            serial: cert.serial()?,
            at,
            reason,
        })
    }
}

/// What to put in a CRL made by [`sign_crl`].
#[derive(Debug, Clone)]
pub struct CrlSpec {
    pub this_update: DateTime<Utc>,
    pub next_update: DateTime<Utc>,
    pub number: u64,
    pub revoked: Vec<Revoked>,
}

/// The whole test PKI in memory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The test root CA.
    pub ca: Identity,
    /// "Test Employer": valid, issued by `ca`, not revoked.
    pub employer: Identity,
    /// Issued by `ca` and listed on `crl`.
    pub revoked: Identity,
    /// Issued by `ca`, valid only in the past.
    pub expired: Identity,
    /// A CA that has nothing to do with `ca`.
    pub other_ca: Identity,
    /// Issued by `other_ca`.
    pub stranger: Identity,
    /// Signed by `ca`, revoking `revoked`.
    pub crl: CrlFile,
}

impl Pki {
    /// A certificate issued by the test CA.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Identity, DevError> {
        issue(&self.ca, spec)
    }

    /// A CRL signed by the test CA.
    pub fn crl(&self, spec: &CrlSpec) -> Result<CrlFile, DevError> {
        sign_crl(&self.ca, spec)
    }
}

/// Where [`make_keys`] wrote the test PKI.
#[derive(Debug, Clone, Serialize)]
pub struct DevPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub employer_cert: PathBuf,
    pub employer_key: PathBuf,
    /// SHA-256 of `employer.pem`'s DER: what `ivan admin cert list` shows.
    pub employer_fingerprint: String,
    pub revoked_cert: PathBuf,
    pub revoked_key: PathBuf,
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    pub other_ca_cert: PathBuf,
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
    pub crl: PathBuf,
}

// `rcgen` takes `time::OffsetDateTime`, a type this crate cannot name (no direct
// dependency on `time`); build it from the Unix epoch instead.
macro_rules! offset {
    ($t:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(unix_secs($t)?)
    };
}

/// `t + d`, saturating at chrono's limits (which [`unix_secs`] then refuses).
fn shift(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < Duration::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

fn unix_secs(t: DateTime<Utc>) -> Result<u64, DevError> {
    // 9999-12-31T23:59:59Z: the last instant a GeneralizedTime can carry.
    const MAX: i64 = 253_402_300_799;
    match t.timestamp() {
        s @ 0..=MAX => u64::try_from(s).map_err(|_| DevError::Time(t)),
        _ => Err(DevError::Time(t)),
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::OrganizationName,
        "ivan test PKI (not for production)",
    );
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A positive, non-zero 16-byte serial derived from the (fresh) public key and name.
fn serial_for(key: &KeyPair, common_name: &str) -> SerialNumber {
    let mut h = Sha256::new();
    h.update(key.public_key_raw());
    h.update(common_name.as_bytes());
    let digest = h.finalize();
    let mut bytes: Vec<u8> = digest.iter().take(16).copied().collect();
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }
    SerialNumber::from_slice(&bytes)
}

fn new_key(pem: Option<&str>) -> Result<KeyPair, DevError> {
    match pem {
        Some(pem) => KeyPair::from_pem(pem).map_err(generate),
        None => KeyPair::generate().map_err(generate),
    }
}

/// A self-signed CA certificate (EC P-256) with keyUsage keyCertSign + cRLSign.
pub fn make_ca(
    common_name: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<Identity, DevError> {
    let key = KeyPair::generate().map_err(generate)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset!(not_before);
    params.not_after = offset!(not_after);
    params.serial_number = Some(serial_for(&key, common_name));
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(Identity {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate issued by `issuer` (whose `key_pem` signs it).
pub fn issue(issuer: &Identity, spec: &LeafSpec) -> Result<Identity, DevError> {
    let ca = issuer.issuer()?;
    let key = new_key(spec.key_pem.as_deref())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&spec.common_name);
    params.is_ca = if spec.ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages.clone_from(&spec.key_usages);
    params
        .extended_key_usages
        .clone_from(&spec.extended_key_usages);
    params.not_before = offset!(spec.not_before);
    params.not_after = offset!(spec.not_after);
    params.serial_number = Some(serial_for(&key, &spec.common_name));
    params.use_authority_key_identifier_extension = true;
    if let Some(url) = &spec.crl_url {
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![url.clone()],
        }];
    }
    let cert = params.signed_by(&key, &ca).map_err(generate)?;
    Ok(Identity {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A CRL in `issuer`'s name, signed with `issuer.key_pem` (pair a CA certificate
/// with another key to forge one).
pub fn sign_crl(issuer: &Identity, spec: &CrlSpec) -> Result<CrlFile, DevError> {
    let ca = issuer.issuer()?;
    let mut revoked_certs = Vec::with_capacity(spec.revoked.len());
    for r in &spec.revoked {
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&r.serial),
            revocation_time: offset!(r.at),
            reason_code: r.reason,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: offset!(spec.this_update),
        next_update: offset!(spec.next_update),
        crl_number: SerialNumber::from(spec.number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&ca).map_err(generate)?;
    Ok(CrlFile {
        der: crl.der().to_vec(),
        pem: crl.pem().map_err(generate)?,
    })
}

/// The test PKI described in the module docs, in memory, relative to `now`.
pub fn make_pki_in_memory(now: DateTime<Utc>) -> Result<Pki, DevError> {
    make_pki(now, None)
}

/// [`make_pki_in_memory`], the test CA's certificates naming `crl_url` as their CRL
/// distribution point.
pub fn make_pki(now: DateTime<Utc>, crl_url: Option<&str>) -> Result<Pki, DevError> {
    let signing = |name: &str| LeafSpec {
        crl_url: crl_url.map(str::to_owned),
        ..LeafSpec::signing(name, now)
    };
    let ca = make_ca(
        "ivan Test Root CA",
        shift(now, -Duration::days(1)),
        shift(now, Duration::days(3652)),
    )?;
    let employer = issue(&ca, &signing("Test Employer"))?;
    let revoked = issue(&ca, &signing("Test Employer (revoked)"))?;
    let expired = issue(
        &ca,
        &LeafSpec {
            not_before: shift(now, -Duration::days(730)),
            not_after: shift(now, -Duration::days(365)),
            ..signing("Test Employer (expired)")
        },
    )?;
    let other_ca = make_ca(
        "Unrelated Test CA",
        shift(now, -Duration::days(1)),
        shift(now, Duration::days(3652)),
    )?;
    let stranger = issue(&other_ca, &LeafSpec::signing("Stranger", now))?;
    let crl = sign_crl(
        &ca,
        &CrlSpec {
            this_update: shift(now, -Duration::hours(1)),
            next_update: shift(now, Duration::days(30)),
            number: 1,
            revoked: vec![Revoked::of(
                &revoked,
                shift(now, -Duration::hours(2)),
                Some(RevocationReason::KeyCompromise),
            )?],
        },
    )?;
    Ok(Pki {
        ca,
        employer,
        revoked,
        expired,
        other_ca,
        stranger,
        crl,
    })
}

/// Writes the test PKI into `dir` (see the module docs), refusing to overwrite
/// anything, and returns where each file is.
pub fn make_keys(
    dir: &Path,
    now: DateTime<Utc>,
    crl_url: Option<&str>,
) -> Result<DevPki, DevError> {
    let at = |file: &str| dir.join(file);
    let out = DevPki {
        dir: dir.to_path_buf(),
        ca_cert: at("ca.pem"),
        ca_key: at("ca.key"),
        employer_cert: at("employer.pem"),
        employer_key: at("employer.key"),
        employer_fingerprint: String::new(),
        revoked_cert: at("revoked.pem"),
        revoked_key: at("revoked.key"),
        expired_cert: at("expired.pem"),
        expired_key: at("expired.key"),
        other_ca_cert: at("other-ca.pem"),
        stranger_cert: at("stranger.pem"),
        stranger_key: at("stranger.key"),
        crl: at("crl.pem"),
    };
    let pki = make_pki(now, crl_url)?;
    // (path, contents, secret)
    // The unrelated CA's key is of no use to anyone; it is not written.
    let files: [(&Path, &str, bool); 12] = [
        (&out.ca_cert, &pki.ca.cert_pem, false),
        (&out.ca_key, &pki.ca.key_pem, true),
        (&out.employer_cert, &pki.employer.cert_pem, false),
        (&out.employer_key, &pki.employer.key_pem, true),
        (&out.revoked_cert, &pki.revoked.cert_pem, false),
        (&out.revoked_key, &pki.revoked.key_pem, true),
        (&out.expired_cert, &pki.expired.cert_pem, false),
        (&out.expired_key, &pki.expired.key_pem, true),
        (&out.other_ca_cert, &pki.other_ca.cert_pem, false),
        (&out.stranger_cert, &pki.stranger.cert_pem, false),
        (&out.stranger_key, &pki.stranger.key_pem, true),
        (&out.crl, &pki.crl.pem, false),
    ];

    write_all_new(dir, &files)?;
    Ok(DevPki {
        employer_fingerprint: pki.employer.fingerprint(),
        ..out
    })
}

/// Creates `dir` if needed and writes `(path, contents, secret)` files into it, each
/// created new (mode 0600 for secrets on Unix) and synced; if any of them exists,
/// nothing is written and the error names every existing one.
pub fn write_all_new(dir: &Path, files: &[(&Path, &str, bool)]) -> Result<(), DevError> {
    std::fs::create_dir_all(dir).map_err(|source| DevError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let existing: Vec<PathBuf> = files
        .iter()
        .filter(|(p, _, _)| p.exists())
        .map(|(p, _, _)| p.to_path_buf())
        .collect();
    if !existing.is_empty() {
        return Err(DevError::Exists(existing));
    }
    for (path, contents, secret) in files {
        write_new(path, contents.as_bytes(), *secret)?;
    }
    Ok(())
}

/// Creates `path` (failing if it exists) and writes `bytes`; mode 0600 for secrets
/// on Unix.
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), DevError> {
    let io = |source| DevError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            DevError::Exists(vec![path.to_path_buf()])
        } else {
            io(e)
        }
    })?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::intake::trust::{self, Anchor, Crl, Policy, code};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
    }

    #[test]
    fn dev_make_keys_writes_a_pki_that_behaves_as_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let out = make_keys(&dir, now(), None).unwrap();
        let read = |p: &Path| std::fs::read(p).unwrap();

        let anchors = [Anchor::parse(&read(&out.ca_cert)).unwrap()];
        let crls = [Crl::parse(&read(&out.crl)).unwrap()];
        let check = |cert: &Path| {
            let info = trust::parse_certificate_pem_or_der(&read(cert)).unwrap();
            trust::check_signer(&info.der, &[], &anchors, &crls, now(), &Policy::default())
        };
        let accepted = check(&out.employer_cert).unwrap();
        assert_eq!(accepted.crl_sha256, Some(crls[0].sha256()));
        assert!(accepted.subject.contains("CN=Test Employer"));
        assert_eq!(check(&out.revoked_cert).unwrap_err().code, code::REVOKED);
        assert_eq!(check(&out.expired_cert).unwrap_err().code, code::EXPIRED);
        assert_eq!(check(&out.stranger_cert).unwrap_err().code, code::UNTRUSTED);
        // The unrelated CA is a CA; trusting it (and not ours) flips the outcome.
        let other = [Anchor::parse(&read(&out.other_ca_cert)).unwrap()];
        let stranger = trust::parse_certificate_pem_or_der(&read(&out.stranger_cert)).unwrap();
        let lax = Policy {
            require_crl: false,
            ..Policy::default()
        };
        assert!(trust::check_signer(&stranger.der, &[], &other, &[], now(), &lax).is_ok());

        assert_eq!(
            out.employer_fingerprint,
            trust::fingerprint(
                &trust::parse_certificate_pem_or_der(&read(&out.employer_cert))
                    .unwrap()
                    .der
            )
        );

        // Keys: PKCS#8 PEM, loadable, matching their certificates, private on Unix.
        for (key, cert) in [
            (&out.ca_key, &out.ca_cert),
            (&out.employer_key, &out.employer_cert),
            (&out.revoked_key, &out.revoked_cert),
            (&out.expired_key, &out.expired_cert),
            (&out.stranger_key, &out.stranger_cert),
        ] {
            let pem = std::fs::read_to_string(key).unwrap();
            assert!(
                pem.starts_with("-----BEGIN PRIVATE KEY-----"),
                "{}",
                key.display()
            );
            let pair = KeyPair::from_pem(&pem).unwrap();
            let cert_der = read(cert);
            let cert_der = pem::parse(&cert_der).unwrap().into_contents();
            let (_, x509) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
            assert_eq!(
                x509.public_key().raw,
                rcgen::PublicKeyData::subject_public_key_info(&pair).as_slice(),
                "{}",
                key.display()
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 12, "{names:?}");
    }

    #[test]
    fn dev_make_keys_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        make_keys(tmp.path(), now(), None).unwrap();
        let before = std::fs::read(tmp.path().join("employer.pem")).unwrap();
        let e = make_keys(tmp.path(), now(), None).unwrap_err();
        assert!(matches!(&e, DevError::Exists(p) if p.len() == 12), "{e}");
        assert!(
            e.to_string()
                .starts_with("refusing to overwrite existing files: ")
        );
        assert_eq!(
            std::fs::read(tmp.path().join("employer.pem")).unwrap(),
            before
        );

        // One file in the way: nothing is written.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("crl.pem"), "mine").unwrap();
        let e = make_keys(other.path(), now(), None).unwrap_err();
        assert!(e.to_string().contains("crl.pem"), "{e}");
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_to_string(other.path().join("crl.pem")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn dev_in_memory_pki_has_the_documented_shape() {
        let p = make_pki_in_memory(now()).unwrap();
        let info = |id: &Identity| trust::parse_certificate_pem_or_der(&id.cert_der).unwrap();
        let ca = info(&p.ca);
        assert_eq!(ca.not_before, now() - Duration::days(1));
        assert_eq!(ca.not_after, now() + Duration::days(3652));
        assert_eq!(ca.subject, ca.issuer);
        let employer = info(&p.employer);
        assert!(
            employer.subject.ends_with("CN=Test Employer"),
            "{}",
            employer.subject
        );
        assert_eq!(employer.issuer, ca.subject);
        assert_eq!(employer.not_after, now() + Duration::days(730));
        assert!(info(&p.expired).not_after < now());
        assert_eq!(info(&p.stranger).issuer, info(&p.other_ca).subject);
        assert_ne!(p.employer.serial().unwrap(), p.revoked.serial().unwrap());
        let crl = Crl::parse(&p.crl.der).unwrap();
        assert_eq!(crl.this_update(), now() - Duration::hours(1));
        assert_eq!(crl.next_update(), Some(now() + Duration::days(30)));
        assert!(!format!("{:?}", p.employer).contains("PRIVATE KEY"));
        assert!(matches!(
            make_pki_in_memory(DateTime::<Utc>::MIN_UTC),
            Err(DevError::Time(_))
        ));
    }
}
