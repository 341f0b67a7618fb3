//! Certificate trust: is the certificate that signed a filing acceptable right now?
//!
//! The signature's cryptography is checked elsewhere ([`super::signature`]); here
//! [`check_signer`] decides whether the signing certificate (from `KeyInfo`, with any
//! intermediate CA certificates sent beside it) is trustworthy at `now`, given the
//! CA certificates `ivan` trusts ([`Anchor`]) and the CRLs it has ([`Crl`]).
//!
//! # Rules, in the order they are checked, and their codes
//!
//! Each refusal is a [`Rejected`] with a stable `code` (it reaches the API as
//! `errors[].code`) and a message naming the certificate and the date involved.
//!
//! | # | rule | code |
//! |---|---|---|
//! | 1 | the certificate is a well-formed X.509 v3 DER certificate | `certificate.malformed` |
//! | 2 | it is not a CA certificate (basicConstraints cA is not true), and it has a keyUsage extension with digitalSignature or nonRepudiation (contentCommitment) set | `certificate.key-usage` |
//! | 3 | `now` is within its validity period (both ends inclusive) | `certificate.not-yet-valid`, `certificate.expired` |
//! | 4 | it chains, through the intermediates given, to a trusted CA: every signature verifies, every issuer is a CA (basicConstraints, path length, name constraints) | `certificate.untrusted` |
//! | 5 | every CA certificate on that chain, the trusted CA's own certificate included, is valid at `now` | `certificate.not-yet-valid`, `certificate.expired` |
//! | 6 | it is not revoked per the CRLs of its issuer (see below) | `certificate.revoked` |
//! | 7 | when [`Policy::require_crl`]: a CRL of its issuer is on file … | `certificate.revocation-unknown` |
//! | 8 | … and the newest one is current: nextUpdate + [`Policy::max_crl_age_after_next_update`] ≥ `now` | `certificate.crl-stale` |
//! | 9 | every intermediate CA on the chain passes 6–8 against the CRLs of *its* issuer (the next CA up; the last one's is the trusted CA) | `certificate.revoked`, `certificate.revocation-unknown`, `certificate.crl-stale` |
//!
//! Extended key usage is not restricted: document signing certificates carry
//! emailProtection, documentSigning, others or none, and all are accepted (a present
//! but empty extension is malformed). Key usage is not checked by webpki for this
//! use, so rule 2 reads it with x509-parser. A certificate without any keyUsage
//! extension is refused: RFC 5280 lets it mean "any usage", but a certificate meant
//! for signatures states it, and guessing is not worth it here.
//!
//! # Which CRL counts
//!
//! The CRLs considered are those whose issuer name is the leaf's issuer name, whose
//! signature verifies with the issuing CA's key (the one on the verified chain), whose
//! scope covers the leaf (issuing distribution point), and whose thisUpdate is not
//! after `now` (a CRL issued later than the moment checked did not exist then; this
//! also makes a re-validation at a past moment use what was known at that moment).
//! A CRL with a bad signature never counts, whatever it says, and neither does one
//! signed by another key under the same name.
//!
//! Of those, the **newest** (greatest thisUpdate; then greatest CRL number, then
//! SHA-256, so the choice is deterministic) is *the* CRL: [`Accepted::crl_sha256`]
//! names it, it is stored with the submission, and its nextUpdate decides
//! staleness. The certificate is revoked if that CRL lists it — and also if an
//! **older** verified CRL of the same issuer lists it for any reason other than
//! certificateHold (or removeFromCRL). Revocation is permanent (RFC 5280 §3.3,
//! §5.3.1): a complete CRL that no longer lists a revoked, unexpired certificate is
//! a CA error, not a pardon, and we do not let a later CRL bring a key that was, say,
//! compromised back to life. A certificateHold, by contrast, is lifted by a newer CRL
//! that no longer lists it: for a held certificate, the newest CRL wins.
//!
//! Revocation outranks staleness: a stale CRL that lists the certificate still
//! proves it revoked (`certificate.revoked`). With `require_crl` off, a certificate
//! whose issuer has no usable CRL is accepted (`crl_sha256` is `None`), and a stale
//! newest CRL is still consulted for revocation but does not refuse the certificate
//! (`crl_sha256` names it): "require a CRL" means "require a current one".
//!
//! The same rules hold one level up for every **intermediate CA** on the chain
//! (rule 9): its issuer's CRLs (the root's, for a CA the root issued) are checked
//! for it. [`Accepted::crl_sha256`] names the leaf's CRL; the intermediates' are
//! the CRLs on file, which are never deleted, so a re-validation at the filing's
//! moment finds the same ones.
//!
//! # Expired CAs
//!
//! Every certificate on the chain must be valid at `now`, the trusted CA's own
//! certificate too (webpki treats a trust anchor as a bare name and key and does not
//! look at its dates; we do). A CA past its notAfter no longer stands behind its
//! certificates or publishes CRLs for them, so a filing signed under it is refused
//! with `certificate.expired`, naming the CA. If several trusted certificates carry
//! the same CA name and key (a re-issued root), one valid at `now` suffices. A
//! filing accepted before the CA expired stays accepted: the CRL used is stored with
//! it, so the decision can be re-checked as of that moment.
//!
//! # Not covered
//!
//! OCSP, delta and indirect CRLs (refused by [`Crl::parse`]), certificate policies.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::Serialize;
use sha2::{Digest, Sha256};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, ExtendedKeyUsageValidator,
    KeyPurposeIdIter, OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder,
    RevocationReason, UnknownStatusPolicy,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;
use x509_parser::x509::X509Name;

/// The codes of [`Rejected`], as listed in the module docs.
pub mod code {
    pub const MALFORMED: &str = "certificate.malformed";
    pub const UNTRUSTED: &str = "certificate.untrusted";
    pub const NOT_YET_VALID: &str = "certificate.not-yet-valid";
    pub const EXPIRED: &str = "certificate.expired";
    pub const KEY_USAGE: &str = "certificate.key-usage";
    pub const REVOKED: &str = "certificate.revoked";
    pub const REVOCATION_UNKNOWN: &str = "certificate.revocation-unknown";
    pub const CRL_STALE: &str = "certificate.crl-stale";

    /// Every code [`super::check_signer`] can return.
    pub const ALL: [&str; 8] = [
        MALFORMED,
        UNTRUSTED,
        NOT_YET_VALID,
        EXPIRED,
        KEY_USAGE,
        REVOKED,
        REVOCATION_UNKNOWN,
        CRL_STALE,
    ];
}

/// Why a certificate or CRL given to `ivan` (by the operator) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the {what}: {detail}")]
    Unreadable { what: &'static str, detail: String },
    #[error(
        "\"{subject}\" is not a CA certificate (its basicConstraints does not say cA=true), so it cannot be a trusted CA; an employer's own signing certificate is registered with `ivan admin cert add`"
    )]
    NotCa { subject: String },
    #[error("the {what} is not supported: {detail}")]
    Unsupported { what: &'static str, detail: String },
}

fn unreadable(what: &'static str, detail: impl Into<String>) -> TrustError {
    TrustError::Unreadable {
        what,
        detail: detail.into(),
    }
}

/// A refusal of the signing certificate: a stable `code` (see the module docs) and
/// a message for the employer's IT staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub code: &'static str,
    pub message: String,
}

impl Rejected {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejected {}

/// The signing certificate is acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// SHA-256 of the CRL that was consulted (the newest of the issuer's), to be kept
    /// with the original so the signature can be re-validated later; `None` when the
    /// issuer has no CRL and the policy allows that.
    pub crl_sha256: Option<String>,
    pub subject: String,
    pub serial_hex: String,
    pub not_after: DateTime<Utc>,
    /// The certificate that issued the signing certificate (the first intermediate
    /// of the chain, or the trusted CA): what an OCSP request names it by.
    pub issuer_der: Vec<u8>,
}

/// How strict revocation checking is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long after its nextUpdate the newest CRL is still used (default 0).
    pub max_crl_age_after_next_update: chrono::Duration,
    /// Refuse certificates whose issuer has no current CRL on file (default true).
    pub require_crl: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_crl_age_after_next_update: chrono::Duration::zero(),
            require_crl: true,
        }
    }
}

/// SHA-256 (lowercase hex) of a certificate's DER: the key under which employers'
/// certificates are registered.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// What `ivan admin cert add` / `ivan admin ca add` show of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub serial_hex: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// [`fingerprint`] of `der`.
    pub fingerprint: String,
}

/// Reads one certificate, PEM (`CERTIFICATE`) or DER.
pub fn parse_certificate_pem_or_der(bytes: &[u8]) -> Result<CertInfo, TrustError> {
    let der = pem_or_der(bytes, "certificate", "CERTIFICATE")?;
    let cert = parse_x509(&der).map_err(|e| unreadable("certificate", e))?;
    EndEntityCert::try_from(&CertificateDer::from(der.as_slice())).map_err(|e| {
        TrustError::Unsupported {
            what: "certificate",
            detail: format!("{} ({e})", display_name(cert.subject())),
        }
    })?;
    let (not_before, not_after) = validity(&cert).map_err(|e| unreadable("certificate", e))?;
    Ok(CertInfo {
        subject: display_name(cert.subject()),
        issuer: display_name(cert.issuer()),
        serial_hex: serial_hex(cert.raw_serial()),
        not_before,
        not_after,
        fingerprint: fingerprint(&der),
        der,
    })
}

/// A trusted CA certificate.
#[derive(Clone)]
pub struct Anchor {
    pub der: Vec<u8>,
    subject: String,
    subject_raw: Vec<u8>,
    sha256: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    anchor: TrustAnchor<'static>,
}

impl fmt::Debug for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anchor")
            .field("subject", &self.subject)
            .field("sha256", &self.sha256)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Anchor {
    /// Reads a CA certificate, PEM (`CERTIFICATE`) or DER. Refuses certificates that
    /// are not CA certificates (basicConstraints cA=true).
    pub fn parse(bytes: &[u8]) -> Result<Anchor, TrustError> {
        let what = "CA certificate";
        let der = pem_or_der(bytes, what, "CERTIFICATE")?;
        let cert = parse_x509(&der).map_err(|e| unreadable(what, e))?;
        let subject = display_name(cert.subject());
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| unreadable(what, format!("\"{subject}\": basicConstraints: {e}")))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(TrustError::NotCa { subject });
        }
        let (not_before, not_after) = validity(&cert).map_err(|e| unreadable(what, e))?;
        let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
            .map_err(|e| TrustError::Unsupported {
                what,
                detail: format!("\"{subject}\" ({e})"),
            })?
            .to_owned();
        Ok(Anchor {
            subject_raw: cert.subject().as_raw().to_vec(),
            subject,
            sha256: fingerprint(&der),
            not_before,
            not_after,
            anchor,
            der,
        })
    }

    /// The CA's name, e.g. `O=Example, CN=Example Root CA`.
    pub fn subject(&self) -> String {
        self.subject.clone()
    }

    /// SHA-256 (hex) of the certificate's DER.
    pub fn sha256(&self) -> String {
        self.sha256.clone()
    }

    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }
}

/// A certificate revocation list.
#[derive(Clone)]
pub struct Crl {
    pub der: Vec<u8>,
    issuer_raw: Vec<u8>,
    issuer_name: String,
    this_update: DateTime<Utc>,
    next_update: Option<DateTime<Utc>>,
    number: Option<BigUint>,
    sha256: String,
    revoked_count: usize,
    crl: Arc<CertRevocationList<'static>>,
    /// What the issuer signed: the TBS part of `der`, then the signature's algorithm
    /// (DER) and value, read once here so checking the signature against an
    /// intermediate's issuer ([`Crl::signed_by`]) parses nothing per filing.
    tbs: std::ops::Range<usize>,
    signature_algorithm: Vec<u8>,
    signature: Vec<u8>,
    /// Its issuing distribution point, if any, does not limit it to end-entity
    /// certificates: it may speak for CA certificates.
    covers_cas: bool,
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("issuer", &self.issuer_name)
            .field("this_update", &self.this_update)
            .field("next_update", &self.next_update)
            .field("number", &self.number)
            .field("revoked", &self.revoked_count)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Crl {
    /// Reads a CRL, PEM (`X509 CRL`) or DER. Delta CRLs, indirect CRLs and CRLs
    /// partitioned by reason are refused (webpki does not support them). The signature
    /// is not checked here: that needs the issuing CA, and happens in
    /// [`check_signer`].
    pub fn parse(bytes: &[u8]) -> Result<Crl, TrustError> {
        let what = "CRL";
        let der = pem_or_der(bytes, what, "X509 CRL")?;
        let parsed = match CertificateRevocationList::from_der(&der) {
            Ok(([], crl)) => crl,
            Ok(_) => return Err(unreadable(what, "trailing bytes after the CRL")),
            Err(e) => return Err(unreadable(what, e.to_string())),
        };
        let issuer_name = display_name(parsed.issuer());
        let this_update = to_utc(parsed.last_update()).map_err(|e| unreadable(what, e))?;
        let next_update = parsed
            .next_update()
            .map(to_utc)
            .transpose()
            .map_err(|e| unreadable(what, e))?;
        let crl = OwnedCertRevocationList::from_der(&der).map_err(|e| TrustError::Unsupported {
            what,
            detail: format!("CRL of {issuer_name}: {e}"),
        })?;
        let (tbs, signature_algorithm, signature) =
            signed_parts(&der, parsed.tbs_cert_list.as_ref().len())
                .ok_or_else(|| unreadable(what, "cannot locate what the issuer signed"))?;
        let covers_cas = !parsed.extensions().iter().any(|e| {
            matches!(e.parsed_extension(), ParsedExtension::IssuingDistributionPoint(idp) if idp.only_contains_user_certs)
        });
        Ok(Crl {
            tbs,
            signature_algorithm,
            signature,
            covers_cas,
            issuer_raw: parsed.issuer().as_raw().to_vec(),
            number: parsed.crl_number().cloned(),
            revoked_count: parsed.iter_revoked_certificates().count(),
            sha256: fingerprint(&der),
            issuer_name,
            this_update,
            next_update,
            crl: Arc::new(CertRevocationList::from(crl)),
            der,
        })
    }

    /// SHA-256 (hex) of the CRL's DER.
    pub fn sha256(&self) -> String {
        self.sha256.clone()
    }

    /// The issuing CA's name, e.g. `O=Example, CN=Example Root CA`.
    pub fn issuer_name(&self) -> String {
        self.issuer_name.clone()
    }

    pub fn this_update(&self) -> DateTime<Utc> {
        self.this_update
    }

    pub fn next_update(&self) -> Option<DateTime<Utc>> {
        self.next_update
    }

    /// How many certificates the CRL lists.
    pub fn revoked_count(&self) -> usize {
        self.revoked_count
    }

    /// Whether the CRL names `anchor` as its issuer. (Names only: the signature is
    /// checked against the issuing CA when the CRL is used.)
    pub fn issued_by(&self, anchor: &Anchor) -> bool {
        self.issuer_raw == anchor.subject_raw
    }

    /// Whether this CRL lists `serial` for a reason a newer CRL cannot undo
    /// (anything but certificateHold and removeFromCRL).
    fn lists_permanently(&self, serial: &[u8]) -> bool {
        match self.crl.find_serial(serial) {
            Ok(Some(entry)) => !matches!(
                entry.reason_code,
                Some(RevocationReason::CertificateHold | RevocationReason::RemoveFromCrl)
            ),
            _ => false,
        }
    }

    fn newer_than(&self, other: &Crl) -> Ordering {
        self.this_update
            .cmp(&other.this_update)
            .then_with(|| self.number.cmp(&other.number))
            .then_with(|| self.sha256.cmp(&other.sha256))
    }
}

/// Accepts any extended key usage, and none.
struct AnyExtendedKeyUsage;

impl ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for purpose in iter {
            purpose?;
        }
        Ok(())
    }
}

/// Decides whether `leaf_der` may sign a filing at `now`; see the module docs for
/// the rules, their order and codes.
pub fn check_signer(
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    anchors: &[Anchor],
    crls: &[Crl],
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<Accepted, Rejected> {
    // 1. Well-formed.
    let leaf = parse_x509(leaf_der).map_err(|e| {
        Rejected::new(
            code::MALFORMED,
            format!("the signing certificate cannot be read: {e}"),
        )
    })?;
    let subject = display_name(leaf.subject());
    let issuer = display_name(leaf.issuer());
    let leaf_cert_der = CertificateDer::from(leaf_der);
    let end_entity = EndEntityCert::try_from(&leaf_cert_der).map_err(|e| {
        Rejected::new(
            code::MALFORMED,
            format!("the signing certificate \"{subject}\" cannot be used: {e}"),
        )
    })?;
    let (not_before, not_after) = validity(&leaf).map_err(|e| {
        Rejected::new(
            code::MALFORMED,
            format!("the signing certificate \"{subject}\": {e}"),
        )
    })?;

    // 2. Meant for signing.
    check_key_usage(&leaf, &subject)?;

    // 3. Valid now.
    check_dates(
        &subject,
        "the signing certificate",
        not_before,
        not_after,
        now,
    )?;

    // 4, 5. Chains to a trusted CA, every CA on the way valid now.
    let time = unix_time(now);
    let trust_anchors: Vec<TrustAnchor<'static>> =
        anchors.iter().map(|a| a.anchor.clone()).collect();
    let intermediate_ders: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchor_problem: RefCell<Option<Rejected>> = RefCell::new(None);
    // The CA certificates of the chain found, leaf side first, and the trusted CA's.
    let path_cas: RefCell<Option<PathCas>> = RefCell::new(None);
    let anchor_valid = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        anchor_validity(path.anchor(), anchors, now).map_err(|(rejected, error)| {
            anchor_problem.borrow_mut().get_or_insert(rejected);
            error
        })?;
        if let Some(a) = anchors.iter().find(|a| a.anchor == *path.anchor()) {
            let cas = path
                .intermediate_certificates()
                .map(|c| c.der().to_vec())
                .collect();
            path_cas.borrow_mut().get_or_insert(PathCas {
                intermediates: cas,
                anchor: a.der.clone(),
            });
        }
        Ok(())
    };
    let chain = Chain {
        end_entity: &end_entity,
        anchors: &trust_anchors,
        intermediates: &intermediate_ders,
        time,
        anchor_valid: &anchor_valid,
    };
    if let Err(e) = chain.verify(None) {
        if let Some(r) = anchor_problem.borrow_mut().take() {
            return Err(r);
        }
        return Err(chain_error(e, &subject, &issuer, intermediates));
    }
    let path_cas = path_cas.borrow_mut().take();

    // 6–8. Revocation.
    let serial = leaf.raw_serial();
    let issuer_raw = leaf.issuer().as_raw();
    let mut candidates: Vec<&Crl> = crls
        .iter()
        .filter(|c| c.issuer_raw == issuer_raw && c.this_update <= now)
        .collect();
    candidates.sort_by(|a, b| b.newer_than(a));

    // Whether `crl` is authoritative for the leaf and signed by its issuer; and if
    // so whether it lists the leaf.
    let consult = |crl: &Crl| -> Option<Listed> {
        let list = [&*crl.crl];
        let options = RevocationOptionsBuilder::new(&list)
            .ok()?
            .with_depth(RevocationCheckDepth::EndEntity)
            .with_status_policy(UnknownStatusPolicy::Deny)
            .with_expiration_policy(ExpirationPolicy::Ignore)
            .build();
        match chain.verify(Some(options)) {
            Ok(_) => Some(Listed::No),
            Err(webpki::Error::CertRevoked) => Some(Listed::Yes),
            // A bad or unsupported signature, an issuer not allowed to sign CRLs, a
            // CRL whose scope does not cover the leaf: this CRL does not count.
            Err(_) => None,
        }
    };

    let mut ignored = 0usize;
    let mut newest: Option<(&Crl, Listed)> = None;
    let mut rest = candidates.iter();
    for crl in rest.by_ref() {
        match consult(crl) {
            Some(listed) => {
                newest = Some((crl, listed));
                break;
            }
            None => ignored += 1,
        }
    }

    let Some((crl, listed)) = newest else {
        if !policy.require_crl {
            if let Some(path) = &path_cas {
                check_intermediates(path, crls, now, policy)?;
            }
            return Ok(accepted(None, subject, &leaf, not_after, &path_cas));
        }
        let mut message = format!(
            "the revocation status of the signing certificate \"{subject}\" cannot be checked: there is no CRL of its issuer \"{issuer}\" on file"
        );
        let later = crls
            .iter()
            .filter(|c| c.issuer_raw == issuer_raw && c.this_update > now)
            .count();
        if later > 0 {
            message.push_str(&format!(
                " ({later} CRL(s) of that CA were issued after {}, the time checked)",
                when(now)
            ));
        }
        if ignored > 0 {
            message.push_str(&format!(
                " ({ignored} CRL(s) in that name were ignored: their signature does not verify with the CA's key, or they do not cover this certificate)"
            ));
        }
        message.push_str("; the operator must add a current CRL (ivan admin crl add)");
        return Err(Rejected::new(code::REVOCATION_UNKNOWN, message));
    };

    if listed == Listed::Yes {
        return Err(revoked(crl, serial, &subject, None));
    }
    // A permanent revocation on an older CRL is not undone by a newer one.
    for older in rest {
        if older.lists_permanently(serial) && consult(older) == Some(Listed::Yes) {
            return Err(revoked(older, serial, &subject, Some(crl)));
        }
    }

    stale(crl, policy, now, "the signing certificate", &subject)?;
    // 9. The intermediate CAs on the chain.
    if let Some(path) = &path_cas {
        check_intermediates(path, crls, now, policy)?;
    }
    Ok(accepted(
        Some(crl.sha256.clone()),
        subject,
        &leaf,
        not_after,
        &path_cas,
    ))
}

/// The CA certificates of a verified chain.
#[derive(Debug, Clone)]
struct PathCas {
    /// The intermediates, the signer's issuer first.
    intermediates: Vec<Vec<u8>>,
    /// The trusted CA's certificate (the last intermediate's issuer).
    anchor: Vec<u8>,
}

/// Rule 9: each intermediate CA certificate of the verified chain (leaf side first;
/// the last is issued by the trusted CA) is not revoked per the
/// CRLs of its issuer, chosen as for the leaf: signed by that issuer's key, issued
/// no later than `now`, the newest decides and an older one's permanent revocation
/// stands. With [`Policy::require_crl`] a current one must be on file.
fn check_intermediates(
    path: &PathCas,
    crls: &[Crl],
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<(), Rejected> {
    let unreadable = |e: String| {
        Rejected::new(
            code::MALFORMED,
            format!("a CA certificate of the chain cannot be read: {e}"),
        )
    };
    let cas = &path.intermediates;
    for (i, der) in cas.iter().enumerate() {
        let issuer_der = cas.get(i + 1).map(Vec::as_slice).unwrap_or(&path.anchor);
        let ca = parse_x509(der).map_err(unreadable)?;
        let issuer = parse_x509(issuer_der).map_err(unreadable)?;
        let name = display_name(ca.subject());
        let serial = ca.raw_serial();
        let mut candidates: Vec<&Crl> = crls
            .iter()
            .filter(|c| c.issuer_raw == ca.issuer().as_raw() && c.this_update <= now)
            .filter(|c| c.signed_by(&issuer))
            .collect();
        candidates.sort_by(|a, b| b.newer_than(a));
        let mut counting = candidates.into_iter();
        let Some(newest) = counting.next() else {
            if policy.require_crl {
                return Err(Rejected::new(
                    code::REVOCATION_UNKNOWN,
                    format!(
                        "the revocation status of the intermediate CA \"{name}\" cannot be checked: there is no CRL of its issuer \"{}\" on file; the operator must add a current CRL (ivan admin crl add)",
                        display_name(issuer.subject())
                    ),
                ));
            }
            continue;
        };
        if newest.crl.find_serial(serial).ok().flatten().is_some() {
            return Err(revoked_as(
                "the intermediate CA",
                newest,
                serial,
                &name,
                None,
            ));
        }
        for older in counting {
            if older.lists_permanently(serial) {
                return Err(revoked_as(
                    "the intermediate CA",
                    older,
                    serial,
                    &name,
                    Some(newest),
                ));
            }
        }
        stale(newest, policy, now, "the intermediate CA", &name)?;
    }
    Ok(())
}

/// Rules 8 and 9: with [`Policy::require_crl`], `crl` (the newest of the issuer of
/// `what` "`subject`") must not be past its nextUpdate and the grace after it.
fn stale(
    crl: &Crl,
    policy: &Policy,
    now: DateTime<Utc>,
    what: &str,
    subject: &str,
) -> Result<(), Rejected> {
    if let Some(next_update) = crl.next_update
        && policy.require_crl
        && next_update
            .checked_add_signed(policy.max_crl_age_after_next_update)
            .is_some_and(|deadline| deadline < now)
    {
        return Err(Rejected::new(
            code::CRL_STALE,
            format!(
                "the revocation status of {what} \"{subject}\" cannot be checked: the newest CRL of its issuer \"{}\" (issued {}) was due to be replaced by {}; the operator must add a current CRL (ivan admin crl add)",
                crl.issuer_name,
                when(crl.this_update),
                when(next_update)
            ),
        ));
    }
    Ok(())
}

/// Where, in a signed X.509 structure `der` (SEQUENCE { tbs, algorithm, signature })
/// whose TBS part is `tbs_len` bytes, the TBS part lies; and the algorithm (DER) and
/// signature value that follow it.
fn signed_parts(der: &[u8], tbs_len: usize) -> Option<(std::ops::Range<usize>, Vec<u8>, Vec<u8>)> {
    use x509_parser::der_parser::asn1_rs::{Any, BitString, FromDer as _};
    let (_, outer) = Any::from_der(der).ok()?;
    let start = der.len().checked_sub(outer.data.len())?;
    let tail = der.get(start + tbs_len..)?;
    let (rest, _) = x509_parser::x509::AlgorithmIdentifier::from_der(tail).ok()?;
    let algorithm = tail.get(..tail.len() - rest.len())?.to_vec();
    let (_, signature) = BitString::from_der(rest).ok()?;
    Some((start..start + tbs_len, algorithm, signature.data.to_vec()))
}

/// Whether `signature` by `algorithm` (its DER) over `signed` verifies with `key`.
pub(crate) fn verifies(
    key: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    algorithm: &[u8],
    signature: &[u8],
    signed: &[u8],
) -> bool {
    let Ok((_, algorithm)) = x509_parser::x509::AlgorithmIdentifier::from_der(algorithm) else {
        return false;
    };
    let bits = x509_parser::der_parser::asn1_rs::BitString::new(0, signature);
    x509_parser::verify::verify_signature(key, &algorithm, &bits, signed).is_ok()
}

impl Crl {
    /// Whether this CRL is signed by `issuer`'s key and may speak for CA
    /// certificates (rule 9).
    fn signed_by(&self, issuer: &X509Certificate<'_>) -> bool {
        self.covers_cas
            && self.der.get(self.tbs.clone()).is_some_and(|tbs| {
                verifies(
                    issuer.public_key(),
                    &self.signature_algorithm,
                    &self.signature,
                    tbs,
                )
            })
    }
}

type PathCheck<'a> = dyn Fn(&webpki::VerifiedPath<'_>) -> Result<(), webpki::Error> + 'a;

/// What webpki needs to build and verify the leaf's chain.
struct Chain<'a> {
    end_entity: &'a EndEntityCert<'a>,
    anchors: &'a [TrustAnchor<'static>],
    intermediates: &'a [CertificateDer<'a>],
    time: UnixTime,
    anchor_valid: &'a PathCheck<'a>,
}

impl Chain<'_> {
    fn verify(
        &self,
        revocation: Option<webpki::RevocationOptions<'_>>,
    ) -> Result<(), webpki::Error> {
        self.end_entity
            .verify_for_usage(
                super::verified::algorithms(),
                self.anchors,
                self.intermediates,
                self.time,
                AnyExtendedKeyUsage,
                revocation,
                Some(self.anchor_valid),
            )
            .map(drop)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Yes,
    No,
}

fn accepted(
    crl_sha256: Option<String>,
    subject: String,
    leaf: &X509Certificate<'_>,
    not_after: DateTime<Utc>,
    path_cas: &Option<PathCas>,
) -> Accepted {
    let issuer_der = path_cas
        .as_ref()
        .map(|p| p.intermediates.first().unwrap_or(&p.anchor).clone())
        .unwrap_or_default();
    Accepted {
        crl_sha256,
        subject,
        serial_hex: serial_hex(leaf.raw_serial()),
        not_after,
        issuer_der,
    }
}

fn revoked(crl: &Crl, serial: &[u8], subject: &str, newer: Option<&Crl>) -> Rejected {
    revoked_as("the signing certificate", crl, serial, subject, newer)
}

/// [`revoked`] of `what` ("the signing certificate", "the intermediate CA").
fn revoked_as(
    what: &str,
    crl: &Crl,
    serial: &[u8],
    subject: &str,
    newer: Option<&Crl>,
) -> Rejected {
    let entry = crl.crl.find_serial(serial).ok().flatten();
    let at = entry
        .as_ref()
        .and_then(|e| DateTime::from_timestamp(i64::try_from(e.revocation_date.as_secs()).ok()?, 0))
        .map(|t| format!(" on {}", when(t)))
        .unwrap_or_default();
    let reason = entry
        .as_ref()
        .and_then(|e| e.reason_code)
        .map(|r| format!(" (reason: {})", reason_name(r)))
        .unwrap_or_default();
    let mut message = format!(
        "{what} \"{subject}\" (serial {}) was revoked{at}{reason}, according to the CRL of \"{}\" issued {}",
        serial_hex(serial),
        crl.issuer_name,
        when(crl.this_update)
    );
    if let Some(newer) = newer {
        message.push_str(&format!(
            "; the newer CRL issued {} no longer lists it, but a revocation is permanent",
            when(newer.this_update)
        ));
    }
    Rejected::new(code::REVOKED, message)
}

fn reason_name(r: RevocationReason) -> &'static str {
    match r {
        RevocationReason::Unspecified => "unspecified",
        RevocationReason::KeyCompromise => "key compromise",
        RevocationReason::CaCompromise => "CA compromise",
        RevocationReason::AffiliationChanged => "affiliation changed",
        RevocationReason::Superseded => "superseded",
        RevocationReason::CessationOfOperation => "cessation of operation",
        RevocationReason::CertificateHold => "certificate on hold",
        RevocationReason::RemoveFromCrl => "remove from CRL",
        RevocationReason::PrivilegeWithdrawn => "privilege withdrawn",
        RevocationReason::AaCompromise => "AA compromise",
    }
}

fn check_key_usage(leaf: &X509Certificate<'_>, subject: &str) -> Result<(), Rejected> {
    let malformed = |e: x509_parser::error::X509Error| {
        Rejected::new(
            code::MALFORMED,
            format!("the signing certificate \"{subject}\" has invalid extensions: {e}"),
        )
    };
    if leaf
        .basic_constraints()
        .map_err(malformed)?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err(Rejected::new(
            code::KEY_USAGE,
            format!(
                "the signing certificate \"{subject}\" is a CA certificate (basicConstraints cA=true); documents must be signed with an end-entity signing certificate"
            ),
        ));
    }
    match leaf.key_usage().map_err(malformed)? {
        None => Err(Rejected::new(
            code::KEY_USAGE,
            format!(
                "the signing certificate \"{subject}\" has no keyUsage extension; a signing certificate must allow digitalSignature or nonRepudiation"
            ),
        )),
        Some(ku) if !ku.value.digital_signature() && !ku.value.non_repudiation() => {
            Err(Rejected::new(
                code::KEY_USAGE,
                format!(
                    "the signing certificate \"{subject}\" does not allow signing: its keyUsage ({}) has neither digitalSignature nor nonRepudiation",
                    ku.value
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

fn check_dates(
    subject: &str,
    role: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), Rejected> {
    if now < not_before {
        return Err(Rejected::new(
            code::NOT_YET_VALID,
            format!(
                "{role} \"{subject}\" is not valid yet: it is valid from {}",
                when(not_before)
            ),
        ));
    }
    if now > not_after {
        return Err(Rejected::new(
            code::EXPIRED,
            format!("{role} \"{subject}\" expired on {}", when(not_after)),
        ));
    }
    Ok(())
}

/// Whether some trusted certificate with this CA name and key is valid at `now`.
fn anchor_validity(
    found: &TrustAnchor<'_>,
    anchors: &[Anchor],
    now: DateTime<Utc>,
) -> Result<(), (Rejected, webpki::Error)> {
    let mut first_problem = None;
    for a in anchors.iter().filter(|a| a.anchor == *found) {
        match check_dates(&a.subject, "the trusted CA", a.not_before, a.not_after, now) {
            Ok(()) => return Ok(()),
            Err(r) => {
                first_problem.get_or_insert((r, a));
            }
        }
    }
    match first_problem {
        None => Ok(()),
        Some((r, a)) => {
            let error = if now < a.not_before {
                webpki::Error::CertNotValidYet {
                    time: unix_time(now),
                    not_before: unix_time(a.not_before),
                }
            } else {
                webpki::Error::CertExpired {
                    time: unix_time(now),
                    not_after: unix_time(a.not_after),
                }
            };
            Err((r, error))
        }
    }
}

/// Turns webpki's path-building error into a refusal. The leaf's own dates, key
/// usage and CA flag were checked before, so validity errors concern a CA.
fn chain_error(
    e: webpki::Error,
    subject: &str,
    issuer: &str,
    intermediates: &[Vec<u8>],
) -> Rejected {
    use webpki::Error as E;
    match e {
        E::CertExpired { not_after, .. } => {
            let ca = intermediate_named(intermediates, |_, na| {
                u64::try_from(na.timestamp()).ok() == Some(not_after.as_secs())
            });
            let date = DateTime::from_timestamp(i64::try_from(not_after.as_secs()).unwrap_or(0), 0)
                .map(when)
                .unwrap_or_default();
            Rejected::new(
                code::EXPIRED,
                format!(
                    "the CA certificate{} in the chain of the signing certificate \"{subject}\" expired on {date}",
                    ca.map(|n| format!(" \"{n}\"")).unwrap_or_default()
                ),
            )
        }
        E::CertNotValidYet { not_before, .. } => {
            let ca = intermediate_named(intermediates, |nb, _| {
                u64::try_from(nb.timestamp()).ok() == Some(not_before.as_secs())
            });
            let date =
                DateTime::from_timestamp(i64::try_from(not_before.as_secs()).unwrap_or(0), 0)
                    .map(when)
                    .unwrap_or_default();
            Rejected::new(
                code::NOT_YET_VALID,
                format!(
                    "the CA certificate{} in the chain of the signing certificate \"{subject}\" is not valid yet: it is valid from {date}",
                    ca.map(|n| format!(" \"{n}\"")).unwrap_or_default()
                ),
            )
        }
        E::UnknownIssuer => Rejected::new(
            code::UNTRUSTED,
            format!(
                "the signing certificate \"{subject}\" is issued by \"{issuer}\", which is not a CA trusted by this service{}",
                if intermediates.is_empty() {
                    " (if it is issued by an intermediate CA, include that CA's certificate in KeyInfo)"
                } else {
                    " and does not lead to one through the certificates included in KeyInfo"
                }
            ),
        ),
        E::InvalidSignatureForPublicKey => Rejected::new(
            code::UNTRUSTED,
            format!(
                "the signing certificate \"{subject}\" claims to be issued by \"{issuer}\", but its signature does not verify with that CA's key"
            ),
        ),
        E::CaUsedAsEndEntity => Rejected::new(
            code::KEY_USAGE,
            format!("the signing certificate \"{subject}\" is a CA certificate"),
        ),
        E::BadDer
        | E::BadDerTime
        | E::EmptyEkuExtension
        | E::ExtensionValueInvalid
        | E::InvalidCertValidity
        | E::InvalidSerialNumber
        | E::MalformedExtensions
        | E::TrailingData(_)
        | E::UnsupportedCertVersion
        | E::UnsupportedCriticalExtension => Rejected::new(
            code::MALFORMED,
            format!(
                "a certificate in the chain of the signing certificate \"{subject}\" cannot be used: {e}"
            ),
        ),
        other => Rejected::new(
            code::UNTRUSTED,
            format!(
                "the signing certificate \"{subject}\" (issued by \"{issuer}\") does not chain to a CA trusted by this service: {other}"
            ),
        ),
    }
}

/// The subject of the first given intermediate whose (notBefore, notAfter) match.
fn intermediate_named(
    intermediates: &[Vec<u8>],
    matches: impl Fn(ASN1Time, ASN1Time) -> bool,
) -> Option<String> {
    intermediates.iter().find_map(|der| {
        let cert = parse_x509(der).ok()?;
        let v = cert.validity();
        matches(v.not_before, v.not_after).then(|| display_name(cert.subject()))
    })
}

/// The `http`/`https` URLs of a certificate's CRL distribution points (RFC 5280
/// 4.2.1.13, full names only); none for an unreadable certificate.
pub fn crl_urls(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName};
    let Ok(cert) = parse_x509(der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for point in points.iter() {
            let Some(DistributionPointName::FullName(names)) = &point.distribution_point else {
                continue;
            };
            for name in names {
                if let GeneralName::URI(uri) = name
                    && (uri.starts_with("http://") || uri.starts_with("https://"))
                {
                    urls.push((*uri).to_owned());
                }
            }
        }
    }
    urls
}

fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn validity(cert: &X509Certificate<'_>) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let v = cert.validity();
    Ok((to_utc(v.not_before)?, to_utc(v.not_after)?))
}

fn to_utc(t: ASN1Time) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp(t.timestamp(), 0).ok_or_else(|| format!("time out of range: {t}"))
}

fn unix_time(t: DateTime<Utc>) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(t.timestamp()).unwrap_or(0),
    ))
}

/// `2026-11-23 10:08:55 UTC`
pub(crate) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `O=Example, CN=Example Root CA`; `(empty name)` when there is none.
fn display_name(name: &X509Name<'_>) -> String {
    let s = name.to_string();
    if s.is_empty() {
        "(empty name)".into()
    } else {
        s
    }
}

/// The serial as lowercase hex, without the sign-padding leading zero bytes.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(raw.get(start..).unwrap_or(raw))
}

/// The DER inside one PEM block with label `label`, or `bytes` as they are when they
/// are not PEM.
fn pem_or_der(bytes: &[u8], what: &'static str, label: &str) -> Result<Vec<u8>, TrustError> {
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN ") {
        return Ok(bytes.to_vec());
    }
    let blocks = pem::parse_many(bytes).map_err(|e| unreadable(what, format!("bad PEM: {e}")))?;
    match blocks.as_slice() {
        [one] if one.tag() == label => Ok(one.contents().to_vec()),
        [one] => Err(unreadable(
            what,
            format!(
                "the PEM block is labelled {:?}; expected \"{label}\"",
                one.tag()
            ),
        )),
        [] => Err(unreadable(what, "no PEM block found")),
        many => Err(unreadable(
            what,
            format!(
                "the file holds {} PEM blocks; give one {what} at a time",
                many.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose, RevocationReason as Reason};

    use super::*;
    use crate::dev::{self, CrlSpec, Identity, LeafSpec, Pki, Revoked};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
    }

    fn pki() -> Pki {
        dev::make_pki_in_memory(now()).unwrap()
    }

    fn anchors(p: &Pki) -> Vec<Anchor> {
        vec![Anchor::parse(p.ca.cert_pem.as_bytes()).unwrap()]
    }

    fn crl(der: &[u8]) -> Crl {
        Crl::parse(der).unwrap()
    }

    fn check_with(
        p: &Pki,
        leaf: &Identity,
        crls: &[Crl],
        policy: &Policy,
    ) -> Result<Accepted, Rejected> {
        check_signer(&leaf.cert_der, &[], &anchors(p), crls, now(), policy)
    }

    fn check(p: &Pki, leaf: &Identity, crls: &[Crl]) -> Result<Accepted, Rejected> {
        check_with(p, leaf, crls, &Policy::default())
    }

    fn refused(r: Result<Accepted, Rejected>, code: &str) -> String {
        match r {
            Err(r) if r.code == code => r.message,
            other => panic!("expected {code}, got {other:?}"),
        }
    }

    fn crl_spec(this_update: DateTime<Utc>, number: u64, revoked: Vec<Revoked>) -> CrlSpec {
        CrlSpec {
            this_update,
            next_update: this_update + Duration::days(30),
            number,
            revoked,
        }
    }

    #[test]
    fn trust_accepts_the_employer_and_names_the_crl_used() {
        let p = pki();
        let crl = crl(&p.crl.der);
        let a = check(&p, &p.employer, std::slice::from_ref(&crl)).unwrap();
        assert_eq!(a.crl_sha256, Some(crl.sha256()));
        assert_eq!(a.crl_sha256, Some(fingerprint(&p.crl.der)));
        assert!(a.subject.contains("CN=Test Employer"), "{}", a.subject);
        assert_eq!(a.serial_hex, hex::encode(p.employer.serial().unwrap()));
        assert_eq!(a.not_after, now() + Duration::days(730));
    }

    /// The chain's signature checks are remembered after the first filing
    /// (`intake::verified`); every rule still applies to the next one: a newer CRL
    /// listing the certificate, its expiry, a trust list without its CA.
    #[test]
    fn trust_applies_every_rule_to_a_certificate_whose_chain_was_remembered() {
        let p = pki();
        let first = crl(&p.crl.der);
        for _ in 0..2 {
            check(&p, &p.employer, std::slice::from_ref(&first)).unwrap();
        }
        let listed = crl(&p
            .crl(&crl_spec(
                now() - Duration::hours(1),
                7,
                vec![Revoked::of(&p.employer, now() - Duration::hours(2), None).unwrap()],
            ))
            .unwrap()
            .der);
        refused(
            check(&p, &p.employer, &[first.clone(), listed]),
            code::REVOKED,
        );
        let later = now() + Duration::days(731);
        let r = check_signer(
            &p.employer.cert_der,
            &[],
            &anchors(&p),
            std::slice::from_ref(&first),
            later,
            &Policy::default(),
        );
        refused(r, code::EXPIRED);
        let r = check_signer(
            &p.employer.cert_der,
            &[],
            &[],
            std::slice::from_ref(&first),
            now(),
            &Policy::default(),
        );
        refused(r, code::UNTRUSTED);
        // And it is accepted again where nothing changed.
        check(&p, &p.employer, &[first]).unwrap();
    }

    #[test]
    fn trust_refuses_a_revoked_certificate_naming_the_time() {
        let p = pki();
        let m = refused(check(&p, &p.revoked, &[crl(&p.crl.der)]), code::REVOKED);
        assert!(m.contains("Test Employer (revoked)"), "{m}");
        assert!(m.contains("revoked on 2026-11-23 08:00:00 UTC"), "{m}");
        assert!(m.contains("key compromise"), "{m}");
    }

    #[test]
    fn trust_refuses_expired_and_not_yet_valid_certificates() {
        let p = pki();
        let crls = [crl(&p.crl.der)];
        let m = refused(check(&p, &p.expired, &crls), code::EXPIRED);
        assert!(m.contains("Test Employer (expired)"), "{m}");
        assert!(m.contains("expired on 2025-11-23 10:00:00 UTC"), "{m}");

        let future = p
            .issue(&LeafSpec {
                not_before: now() + Duration::days(1),
                ..LeafSpec::signing("Early", now())
            })
            .unwrap();
        let m = refused(check(&p, &future, &crls), code::NOT_YET_VALID);
        assert!(m.contains("valid from 2026-11-24 10:00:00 UTC"), "{m}");

        // Validity bounds are inclusive (CRLs left out: they postdate notBefore).
        let info = parse_certificate_pem_or_der(&p.employer.cert_der).unwrap();
        let lax = Policy {
            require_crl: false,
            ..Policy::default()
        };
        let at = |t| check_signer(&p.employer.cert_der, &[], &anchors(&p), &[], t, &lax);
        assert!(at(info.not_before).is_ok());
        assert!(at(info.not_after).is_ok());
        assert_eq!(
            at(info.not_before - Duration::seconds(1)).unwrap_err().code,
            code::NOT_YET_VALID
        );
        assert_eq!(
            at(info.not_after + Duration::seconds(1)).unwrap_err().code,
            code::EXPIRED
        );
    }

    #[test]
    fn trust_refuses_a_certificate_from_an_unrelated_ca() {
        let p = pki();
        let crls = [crl(&p.crl.der)];
        let m = refused(check(&p, &p.stranger, &crls), code::UNTRUSTED);
        assert!(
            m.contains("CN=Stranger") && m.contains("Unrelated Test CA"),
            "{m}"
        );
        // Sending the unrelated CA along does not help.
        let r = check_signer(
            &p.stranger.cert_der,
            std::slice::from_ref(&p.other_ca.cert_der),
            &anchors(&p),
            &crls,
            now(),
            &Policy::default(),
        );
        assert_eq!(r.unwrap_err().code, code::UNTRUSTED);
        // No anchors at all.
        let r = check_signer(
            &p.employer.cert_der,
            &[],
            &[],
            &crls,
            now(),
            &Policy::default(),
        );
        assert_eq!(r.unwrap_err().code, code::UNTRUSTED);
    }

    #[test]
    fn trust_refuses_a_certificate_whose_signature_is_not_the_cas() {
        let p = pki();
        // Same issuer name, another key: what a forger could make.
        let impostor = Identity {
            key_pem: p.other_ca.key_pem.clone(),
            ..p.ca.clone()
        };
        let forged = dev::issue(&impostor, &LeafSpec::signing("Forged", now())).unwrap();
        let m = refused(check(&p, &forged, &[crl(&p.crl.der)]), code::UNTRUSTED);
        assert!(m.contains("does not verify"), "{m}");
    }

    #[test]
    fn trust_requires_digital_signature_or_non_repudiation() {
        let p = pki();
        let crls = [crl(&p.crl.der)];
        let with = |ku: Vec<KeyUsagePurpose>| {
            let leaf = p
                .issue(&LeafSpec {
                    key_usages: ku,
                    ..LeafSpec::signing("KU", now())
                })
                .unwrap();
            check(&p, &leaf, &crls)
        };
        let m = refused(
            with(vec![KeyUsagePurpose::KeyEncipherment]),
            code::KEY_USAGE,
        );
        assert!(
            m.contains("CN=KU") && m.contains("neither digitalSignature nor nonRepudiation"),
            "{m}"
        );
        let m = refused(with(vec![]), code::KEY_USAGE);
        assert!(m.contains("no keyUsage"), "{m}");
        assert!(with(vec![KeyUsagePurpose::DigitalSignature]).is_ok());
        assert!(with(vec![KeyUsagePurpose::ContentCommitment]).is_ok());
    }

    #[test]
    fn trust_refuses_a_ca_certificate_as_signer() {
        let p = pki();
        let crls = [crl(&p.crl.der)];
        let sub_ca = p
            .issue(&LeafSpec {
                ca: true,
                key_usages: vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ],
                ..LeafSpec::signing("Signing CA", now())
            })
            .unwrap();
        let m = refused(check(&p, &sub_ca, &crls), code::KEY_USAGE);
        assert!(m.contains("is a CA certificate"), "{m}");
        // The trusted root itself.
        assert_eq!(check(&p, &p.ca, &crls).unwrap_err().code, code::KEY_USAGE);
    }

    #[test]
    fn trust_accepts_any_extended_key_usage() {
        let p = pki();
        let crls = [crl(&p.crl.der)];
        for eku in [
            vec![ExtendedKeyUsagePurpose::EmailProtection],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            vec![ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 4, 1, 311, 10, 3, 12,
            ])],
        ] {
            let leaf = p
                .issue(&LeafSpec {
                    extended_key_usages: eku.clone(),
                    ..LeafSpec::signing("EKU", now())
                })
                .unwrap();
            assert!(check(&p, &leaf, &crls).is_ok(), "{eku:?}");
        }
    }

    #[test]
    fn trust_without_a_crl_depends_on_the_policy() {
        let p = pki();
        let m = refused(check(&p, &p.employer, &[]), code::REVOCATION_UNKNOWN);
        assert!(
            m.contains("Test Employer") && m.contains("ivan Test Root CA"),
            "{m}"
        );
        let lax = Policy {
            require_crl: false,
            ..Policy::default()
        };
        let a = check_with(&p, &p.employer, &[], &lax).unwrap();
        assert_eq!(a.crl_sha256, None);
        // Another CA's CRL is not this issuer's.
        let other = dev::sign_crl(
            &p.other_ca,
            &crl_spec(now() - Duration::hours(1), 1, vec![]),
        )
        .unwrap();
        assert_eq!(
            check(&p, &p.employer, &[crl(&other.der)]).unwrap_err().code,
            code::REVOCATION_UNKNOWN
        );
        // Even without requiring a CRL, one that lists the certificate is obeyed.
        assert_eq!(
            check_with(&p, &p.revoked, &[crl(&p.crl.der)], &lax)
                .unwrap_err()
                .code,
            code::REVOKED
        );
    }

    #[test]
    fn trust_refuses_a_stale_crl_unless_within_grace() {
        let p = pki();
        let old = p
            .crl(&CrlSpec {
                this_update: now() - Duration::days(40),
                next_update: now() - Duration::days(10),
                number: 1,
                revoked: vec![],
            })
            .unwrap();
        let crls = [crl(&old.der)];
        let m = refused(check(&p, &p.employer, &crls), code::CRL_STALE);
        assert!(
            m.contains("2026-11-13 10:00:00 UTC") && m.contains("Test Employer"),
            "{m}"
        );
        let grace = |days| Policy {
            max_crl_age_after_next_update: Duration::days(days),
            require_crl: true,
        };
        assert_eq!(
            check_with(&p, &p.employer, &crls, &grace(9))
                .unwrap_err()
                .code,
            code::CRL_STALE
        );
        let a = check_with(&p, &p.employer, &crls, &grace(10)).unwrap();
        assert_eq!(a.crl_sha256, Some(fingerprint(&old.der)));
        let forever = Policy {
            max_crl_age_after_next_update: Duration::MAX,
            require_crl: true,
        };
        assert!(check_with(&p, &p.employer, &crls, &forever).is_ok());
        // Not requiring a CRL: a stale one is consulted but does not refuse.
        let lax = Policy {
            require_crl: false,
            ..Policy::default()
        };
        assert_eq!(
            check_with(&p, &p.employer, &crls, &lax).unwrap().crl_sha256,
            Some(fingerprint(&old.der))
        );
        // A stale CRL still proves a revocation.
        let old_revoking = p
            .crl(&CrlSpec {
                this_update: now() - Duration::days(40),
                next_update: now() - Duration::days(10),
                number: 2,
                revoked: vec![Revoked::of(&p.revoked, now() - Duration::days(41), None).unwrap()],
            })
            .unwrap();
        assert_eq!(
            check(&p, &p.revoked, &[crl(&old_revoking.der)])
                .unwrap_err()
                .code,
            code::REVOKED
        );
    }

    #[test]
    fn trust_uses_the_newest_crl_and_revocation_is_permanent_except_hold() {
        let p = pki();
        let leaf = &p.employer;
        let entry = |reason| vec![Revoked::of(leaf, now() - Duration::days(11), reason).unwrap()];
        let older_hold = crl(&p
            .crl(&crl_spec(
                now() - Duration::days(10),
                1,
                entry(Some(Reason::CertificateHold)),
            ))
            .unwrap()
            .der);
        let older_compromise = crl(&p
            .crl(&crl_spec(
                now() - Duration::days(10),
                2,
                entry(Some(Reason::KeyCompromise)),
            ))
            .unwrap()
            .der);
        let older_unspecified = crl(&p
            .crl(&crl_spec(now() - Duration::days(10), 3, entry(None)))
            .unwrap()
            .der);
        let newer_empty = crl(&p
            .crl(&crl_spec(now() - Duration::hours(1), 4, vec![]))
            .unwrap()
            .der);
        let newer_listing = crl(&p
            .crl(&crl_spec(
                now() - Duration::hours(1),
                5,
                entry(Some(Reason::Superseded)),
            ))
            .unwrap()
            .der);
        let older_empty = crl(&p
            .crl(&crl_spec(now() - Duration::days(10), 6, vec![]))
            .unwrap()
            .der);

        // A hold lifted by a newer CRL: accepted, the newer CRL is the one used,
        // whatever the order the CRLs are given in.
        for crls in [
            vec![older_hold.clone(), newer_empty.clone()],
            vec![newer_empty.clone(), older_hold.clone()],
        ] {
            let a = check(&p, leaf, &crls).unwrap();
            assert_eq!(a.crl_sha256, Some(newer_empty.sha256()));
        }
        // A permanent revocation is not undone by a newer CRL that omits it.
        for older in [&older_compromise, &older_unspecified] {
            let m = refused(
                check(&p, leaf, &[newer_empty.clone(), older.clone()]),
                code::REVOKED,
            );
            assert!(m.contains("revoked on 2026-11-12 10:00:00 UTC"), "{m}");
            assert!(m.contains("no longer lists it"), "{m}");
        }
        // The newest lists it: revoked, whatever older ones say.
        let m = refused(
            check(&p, leaf, &[older_empty.clone(), newer_listing.clone()]),
            code::REVOKED,
        );
        assert!(m.contains("superseded") && !m.contains("no longer"), "{m}");
        // The newest is used only while it has been issued by `now`.
        let future = crl(&p
            .crl(&crl_spec(now() + Duration::hours(1), 7, entry(None)))
            .unwrap()
            .der);
        let a = check(&p, leaf, &[older_empty.clone(), future.clone()]).unwrap();
        assert_eq!(a.crl_sha256, Some(older_empty.sha256()));
        let m = refused(check(&p, leaf, &[future]), code::REVOCATION_UNKNOWN);
        assert!(
            m.contains("1 CRL(s) of that CA were issued after 2026-11-23 10:00:00 UTC"),
            "{m}"
        );
        // Same thisUpdate: the higher CRL number wins.
        let same_time_low = crl(&p
            .crl(&crl_spec(now() - Duration::days(10), 1, vec![]))
            .unwrap()
            .der);
        let a = check(&p, leaf, &[older_empty.clone(), same_time_low]).unwrap();
        assert_eq!(a.crl_sha256, Some(older_empty.sha256()));
    }

    #[test]
    fn trust_ignores_a_crl_with_a_forged_signature() {
        let p = pki();
        let real = crl(&p.crl.der);
        // The test CA's name and key identifier method, signed by another key.
        let forger = Identity {
            key_pem: p.stranger.key_pem.clone(),
            ..p.ca.clone()
        };
        let forged_revoking = crl(&dev::sign_crl(
            &forger,
            &crl_spec(
                now() - Duration::minutes(10),
                9,
                vec![Revoked::of(&p.employer, now() - Duration::minutes(20), None).unwrap()],
            ),
        )
        .unwrap()
        .der);
        let forged_empty = crl(&dev::sign_crl(
            &forger,
            &crl_spec(now() - Duration::minutes(10), 10, vec![]),
        )
        .unwrap()
        .der);
        assert_eq!(forged_revoking.issuer_name(), real.issuer_name());

        // A newer forged CRL revoking the employer is ignored: the real one is used.
        let a = check(&p, &p.employer, &[real.clone(), forged_revoking.clone()]).unwrap();
        assert_eq!(a.crl_sha256, Some(real.sha256()));
        // A newer forged CRL omitting a revoked certificate does not clear it.
        assert_eq!(
            check(&p, &p.revoked, &[real.clone(), forged_empty.clone()])
                .unwrap_err()
                .code,
            code::REVOKED
        );
        // Forged CRLs alone: no CRL.
        let m = refused(
            check(&p, &p.employer, &[forged_revoking, forged_empty]),
            code::REVOCATION_UNKNOWN,
        );
        assert!(m.contains("2 CRL(s) in that name were ignored"), "{m}");
        // An older forged CRL with a permanent revocation does not count either.
        let forged_old = crl(&dev::sign_crl(
            &forger,
            &crl_spec(
                now() - Duration::days(5),
                11,
                vec![Revoked::of(&p.employer, now() - Duration::days(6), None).unwrap()],
            ),
        )
        .unwrap()
        .der);
        assert!(check(&p, &p.employer, &[forged_old, real]).is_ok());
    }

    /// A three-level PKI under `p`: the intermediate "Issuing CA", a signer it issued,
    /// and its CRL (revoking nothing).
    fn under_intermediate(p: &Pki) -> (Identity, Identity, Crl) {
        let sub = p
            .issue(&LeafSpec {
                ca: true,
                key_usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
                ..LeafSpec::signing("Issuing CA", now())
            })
            .unwrap();
        let leaf = dev::issue(&sub, &LeafSpec::signing("Employer Under Sub", now())).unwrap();
        let sub_crl = crl(
            &dev::sign_crl(&sub, &crl_spec(now() - Duration::hours(1), 1, vec![]))
                .unwrap()
                .der,
        );
        (sub, leaf, sub_crl)
    }

    #[test]
    fn trust_follows_intermediates_and_checks_their_dates() {
        let p = pki();
        let sub_spec = |cn: &str, nb: DateTime<Utc>, na: DateTime<Utc>| LeafSpec {
            ca: true,
            key_usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            not_before: nb,
            not_after: na,
            ..LeafSpec::signing(cn, now())
        };
        let (sub, leaf, sub_crl) = under_intermediate(&p);
        let root_crl = crl(&p.crl.der);
        let inter = [sub.cert_der.clone()];
        let run = |inter: &[Vec<u8>], crls: &[Crl]| {
            check_signer(
                &leaf.cert_der,
                inter,
                &anchors(&p),
                crls,
                now(),
                &Policy::default(),
            )
        };

        let a = run(&inter, &[root_crl.clone(), sub_crl.clone()]).unwrap();
        assert_eq!(
            a.crl_sha256,
            Some(sub_crl.sha256()),
            "the leaf's issuer's CRL is the one used"
        );
        let m = refused(run(&[], std::slice::from_ref(&sub_crl)), code::UNTRUSTED);
        assert!(m.contains("Issuing CA") && m.contains("KeyInfo"), "{m}");
        // The root's CRL does not speak for the intermediate's certificates.
        assert_eq!(
            run(&inter, std::slice::from_ref(&root_crl))
                .unwrap_err()
                .code,
            code::REVOCATION_UNKNOWN
        );

        let old_sub = p
            .issue(&sub_spec(
                "Old Issuing CA",
                now() - Duration::days(800),
                now() - Duration::days(2),
            ))
            .unwrap();
        let leaf2 = dev::issue(
            &old_sub,
            &LeafSpec::signing("Employer Under Old Sub", now()),
        )
        .unwrap();
        let r = check_signer(
            &leaf2.cert_der,
            std::slice::from_ref(&old_sub.cert_der),
            &anchors(&p),
            &[],
            now(),
            &Policy::default(),
        );
        let m = refused(r, code::EXPIRED);
        assert!(
            m.contains("Old Issuing CA") && m.contains("2026-11-21 10:00:00 UTC"),
            "{m}"
        );
    }

    #[test]
    fn intermediate_cas_are_checked_against_their_issuers_crls() {
        // A three-level PKI: root → "Issuing CA" → the employer's certificate.
        let p = pki();
        let (sub, leaf, sub_crl) = under_intermediate(&p);
        let root_crl = crl(&p.crl.der);
        let root_revoking = |reason| {
            let revoked = vec![Revoked::of(&sub, now() - Duration::hours(2), reason).unwrap()];
            crl(&p
                .crl(&crl_spec(now() - Duration::minutes(30), 2, revoked))
                .unwrap()
                .der)
        };
        let inter = [sub.cert_der.clone()];
        let run = |crls: &[Crl], policy: &Policy| {
            check_signer(&leaf.cert_der, &inter, &anchors(&p), crls, now(), policy)
        };
        let lax = Policy {
            require_crl: false,
            ..Policy::default()
        };
        run(&[root_crl.clone(), sub_crl.clone()], &Policy::default()).unwrap();

        // The root revokes the intermediate: its certificates are refused, naming it,
        // whether or not a CRL is required and whatever the leaf's issuer says.
        let compromised = root_revoking(Some(Reason::KeyCompromise));
        let with_it = [root_crl.clone(), compromised.clone(), sub_crl.clone()];
        let m = refused(run(&with_it, &Policy::default()), code::REVOKED);
        assert!(
            m.contains("the intermediate CA")
                && m.contains("CN=Issuing CA\"")
                && m.contains("key compromise"),
            "{m}"
        );
        refused(run(std::slice::from_ref(&compromised), &lax), code::REVOKED);
        // A newer root CRL that drops it does not undo a permanent revocation…
        let newer_clean = crl(&p
            .crl(&crl_spec(now() - Duration::minutes(10), 3, vec![]))
            .unwrap()
            .der);
        let m = refused(
            run(
                &[compromised.clone(), newer_clean.clone(), sub_crl.clone()],
                &Policy::default(),
            ),
            code::REVOKED,
        );
        assert!(m.contains("a revocation is permanent"), "{m}");
        // …but lifts a hold.
        let held = root_revoking(Some(Reason::CertificateHold));
        run(&[held, newer_clean, sub_crl.clone()], &Policy::default()).unwrap();

        // No CRL of the root on file: unknown when required, accepted otherwise.
        let m = refused(
            run(std::slice::from_ref(&sub_crl), &Policy::default()),
            code::REVOCATION_UNKNOWN,
        );
        assert!(
            m.contains("intermediate CA")
                && m.contains("CN=Issuing CA\"")
                && m.contains("ivan Test Root CA"),
            "{m}"
        );
        run(std::slice::from_ref(&sub_crl), &lax).unwrap();
        // A root CRL that is not the root's (another key under its name) does not count.
        let impostor = dev::make_ca(
            "ivan Test Root CA",
            now() - Duration::days(1),
            now() + Duration::days(100),
        )
        .unwrap();
        let forged = crl(&dev::sign_crl(
            &impostor,
            &crl_spec(
                now() - Duration::minutes(5),
                9,
                vec![Revoked::of(&sub, now() - Duration::hours(1), None).unwrap()],
            ),
        )
        .unwrap()
        .der);
        run(
            &[root_crl.clone(), forged.clone(), sub_crl.clone()],
            &Policy::default(),
        )
        .unwrap();
        refused(
            run(&[forged, sub_crl.clone()], &Policy::default()),
            code::REVOCATION_UNKNOWN,
        );
        // A stale root CRL is stale for the intermediate too.
        let stale_root = crl(&p
            .crl(&CrlSpec {
                next_update: now() - Duration::days(1),
                ..crl_spec(now() - Duration::days(40), 4, vec![])
            })
            .unwrap()
            .der);
        let m = refused(
            run(&[stale_root, sub_crl], &Policy::default()),
            code::CRL_STALE,
        );
        assert!(m.contains("intermediate CA"), "{m}");
    }

    #[test]
    fn trust_refuses_signers_under_an_expired_trusted_ca() {
        let old_root = dev::make_ca(
            "Retired Root",
            now() - Duration::days(3000),
            now() - Duration::days(1),
        )
        .unwrap();
        let leaf = dev::issue(&old_root, &LeafSpec::signing("Late Employer", now())).unwrap();
        let crl_ = crl(
            &dev::sign_crl(&old_root, &crl_spec(now() - Duration::hours(1), 1, vec![]))
                .unwrap()
                .der,
        );
        let anchors = [Anchor::parse(&old_root.cert_der).unwrap()];
        let r = check_signer(
            &leaf.cert_der,
            &[],
            &anchors,
            std::slice::from_ref(&crl_),
            now(),
            &Policy::default(),
        );
        let m = refused(r, code::EXPIRED);
        assert!(
            m.contains("trusted CA")
                && m.contains("Retired Root")
                && m.contains("2026-11-22 10:00:00 UTC"),
            "{m}"
        );
        // As of a moment when the CA was still valid, the same certificate passes.
        let before = now() - Duration::days(2);
        let early_leaf =
            dev::issue(&old_root, &LeafSpec::signing("Early Employer", before)).unwrap();
        let early_crl = crl(&dev::sign_crl(
            &old_root,
            &crl_spec(before - Duration::hours(1), 2, vec![]),
        )
        .unwrap()
        .der);
        assert!(
            check_signer(
                &early_leaf.cert_der,
                &[],
                &anchors,
                &[early_crl],
                before,
                &Policy::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn trust_refuses_malformed_certificates() {
        let p = pki();
        let crls = [crl(&p.crl.der)];
        for bad in [&b"not a certificate"[..], &p.employer.cert_der[..100], &[]] {
            let r = check_signer(bad, &[], &anchors(&p), &crls, now(), &Policy::default());
            assert_eq!(r.unwrap_err().code, code::MALFORMED);
        }
        let mut trailing = p.employer.cert_der.clone();
        trailing.push(0);
        let r = check_signer(
            &trailing,
            &[],
            &anchors(&p),
            &crls,
            now(),
            &Policy::default(),
        );
        assert_eq!(r.unwrap_err().code, code::MALFORMED);
    }

    #[test]
    fn trust_accepts_an_rsa_signing_certificate() {
        // ring cannot generate RSA keys; openssl makes one, the test CA certifies it.
        let dir = tempfile::tempdir().unwrap();
        let key = crate::intake::signature_tests::openssl_rsa_key(dir.path());
        let p = pki();
        let leaf = p
            .issue(&LeafSpec {
                key_pem: Some(std::fs::read_to_string(&key).unwrap()),
                ..LeafSpec::signing("RSA Employer", now())
            })
            .unwrap();
        let a = check(&p, &leaf, &[crl(&p.crl.der)]).unwrap();
        assert!(a.subject.contains("RSA Employer"));
    }

    #[test]
    fn crl_urls_are_read_from_the_distribution_points() {
        let mut params = rcgen::CertificateParams::new(vec!["x.test".into()]).unwrap();
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![
                "http://crl.example/ca.crl".into(),
                "ldap://ldap.example/cn=CA".into(),
            ],
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(crl_urls(cert.der()), ["http://crl.example/ca.crl"]);
        assert!(crl_urls(&pki().employer.cert_der).is_empty());
        assert!(crl_urls(b"not a certificate").is_empty());
    }

    #[test]
    fn trust_parses_crls_in_pem_and_der() {
        let p = pki();
        let from_pem = Crl::parse(p.crl.pem.as_bytes()).unwrap();
        let from_der = Crl::parse(&p.crl.der).unwrap();
        assert!(p.crl.pem.starts_with("-----BEGIN X509 CRL-----"));
        assert_eq!(from_pem.der, p.crl.der);
        assert_eq!(from_pem.sha256(), from_der.sha256());
        assert_eq!(from_der.sha256(), fingerprint(&p.crl.der));
        assert!(
            from_der.issuer_name().contains("CN=ivan Test Root CA"),
            "{}",
            from_der.issuer_name()
        );
        assert_eq!(from_der.this_update(), now() - Duration::hours(1));
        assert_eq!(from_der.next_update(), Some(now() + Duration::days(30)));
        assert_eq!(from_der.revoked_count(), 1);
        let anchor = Anchor::parse(&p.ca.cert_der).unwrap();
        assert!(from_der.issued_by(&anchor));
        assert!(!from_der.issued_by(&Anchor::parse(&p.other_ca.cert_der).unwrap()));

        assert!(matches!(
            Crl::parse(b"garbage"),
            Err(TrustError::Unreadable { .. })
        ));
        let e = Crl::parse(p.ca.cert_pem.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"CERTIFICATE\"") && e.contains("X509 CRL"),
            "{e}"
        );
        let two = format!("{}{}", p.crl.pem, p.crl.pem);
        assert!(
            Crl::parse(two.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("2 PEM blocks")
        );
    }

    #[test]
    fn trust_anchor_must_be_a_ca() {
        let p = pki();
        let e = Anchor::parse(p.employer.cert_pem.as_bytes()).unwrap_err();
        assert!(matches!(e, TrustError::NotCa { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("Test Employer") && msg.contains("not a CA certificate"),
            "{msg}"
        );

        let a = Anchor::parse(p.ca.cert_pem.as_bytes()).unwrap();
        let b = Anchor::parse(&p.ca.cert_der).unwrap();
        assert_eq!(a.der, b.der);
        assert_eq!(a.sha256(), fingerprint(&p.ca.cert_der));
        assert!(a.subject().contains("CN=ivan Test Root CA"));
        assert_eq!(a.not_after(), now() + Duration::days(3652));
        assert!(Anchor::parse(b"junk").is_err());
    }

    #[test]
    fn trust_reads_certificate_information() {
        let p = pki();
        let info = parse_certificate_pem_or_der(p.employer.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            info,
            parse_certificate_pem_or_der(&p.employer.cert_der).unwrap()
        );
        assert_eq!(info.der, p.employer.cert_der);
        assert_eq!(info.fingerprint, fingerprint(&p.employer.cert_der));
        assert_eq!(info.fingerprint, p.employer.fingerprint());
        assert_eq!(info.fingerprint.len(), 64);
        assert!(info.subject.contains("CN=Test Employer"));
        assert!(info.issuer.contains("CN=ivan Test Root CA"));
        assert_eq!(info.serial_hex, hex::encode(p.employer.serial().unwrap()));
        assert_eq!(info.not_before, now() - Duration::days(1));
        assert_eq!(info.not_after, now() + Duration::days(730));
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert!(parse_certificate_pem_or_der(p.crl.pem.as_bytes()).is_err());
    }

    #[test]
    fn trust_codes_are_distinct_dotted_names() {
        let mut all = code::ALL.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), code::ALL.len());
        assert!(
            all.iter()
                .all(|c| c.starts_with("certificate.") && !c.contains(' '))
        );
        assert!(
            !webpki::ALL_VERIFICATION_ALGS.is_empty(),
            "rustls-webpki needs a crypto backend feature"
        );
    }
}
