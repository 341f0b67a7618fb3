//! OCSP (RFC 6960): the status of a signing certificate, asked of the responder its
//! certificate names (authorityInfoAccess, id-ad-ocsp), after the CRL checks of
//! [`super::trust`] accepted it.
//!
//! The request names the certificate by a SHA-256 `CertID` and carries a fresh nonce;
//! it is POSTed (`application/ocsp-request`) with `intake.ocsp_timeout_ms` for the
//! whole exchange and an answer of at most [`MAX_RESPONSE_BYTES`]. An answer counts
//! when it is a successful basic response, signed by the certificate's issuer or by
//! a responder certificate that issuer issued for OCSP signing (id-kp-OCSPSigning,
//! valid now), echoes the nonce if it carries one, speaks about exactly this
//! certificate, and is current: thisUpdate no later than now (+ [`CLOCK_SKEW_SECS`])
//! and nextUpdate, if given, not before now (without one, thisUpdate within
//! [`MAX_AGE_WITHOUT_NEXT_UPDATE_SECS`]).
//!
//! What it says decides: `good` accepts (the response is kept beside the original,
//! as the payload of the filing's `submission.verify` log entry, so the decision can
//! be re-checked in year ten), `revoked` refuses with `certificate.revoked`, `unknown`
//! with `certificate.revocation-unknown`. A responder that cannot be reached or
//! answers something that does not count is not the employer's fault: the CRL
//! decision stands, the failure is counted (`ivan_ocsp_failures_total`) and logged.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::asn1::{Null, OctetString};
use x509_cert::der::oid::db::{rfc5912, rfc6960};
use x509_cert::der::{Any, Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// The largest answer read from a responder.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How far ahead of our clock a responder's thisUpdate may be.
pub const CLOCK_SKEW_SECS: i64 = 300;
/// How old an answer without nextUpdate may be.
pub const MAX_AGE_WITHOUT_NEXT_UPDATE_SECS: i64 = 24 * 3600;

/// What a responder said about a certificate, and the answer as it came.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: Status,
    /// The DER `OCSPResponse`, kept with the filing.
    pub der: Vec<u8>,
    pub this_update: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Good,
    Revoked {
        at: DateTime<Utc>,
        reason: Option<String>,
    },
    Unknown,
}

/// The http(s) OCSP responders `cert_der` names (authorityInfoAccess, id-ad-ocsp).
pub fn responder_urls(cert_der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() else {
            continue;
        };
        for desc in &aia.accessdescs {
            if desc.access_method == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP
                && let GeneralName::URI(uri) = desc.access_location
                && (uri.starts_with("http://") || uri.starts_with("https://"))
            {
                urls.push(uri.to_owned());
            }
        }
    }
    urls
}

/// The `CertID` of `leaf`, issued by `issuer` (SHA-256 of the issuer's name and key).
fn cert_id(leaf: &Certificate, issuer: &Certificate) -> Result<CertId, String> {
    let name = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::ID_SHA_256,
            parameters: Some(Any::from(Null)),
        },
        issuer_name_hash: OctetString::new(Sha256::digest(name).to_vec())
            .map_err(|e| e.to_string())?,
        issuer_key_hash: OctetString::new(Sha256::digest(key).to_vec())
            .map_err(|e| e.to_string())?,
        serial_number: leaf.tbs_certificate.serial_number.clone(),
    })
}

/// A request for `leaf`'s status with `nonce`; and the `CertID` an answer must name.
pub fn request(
    leaf_der: &[u8],
    issuer_der: &[u8],
    nonce: &[u8],
) -> Result<(Vec<u8>, CertId), String> {
    let leaf = Certificate::from_der(leaf_der).map_err(|e| e.to_string())?;
    let issuer = Certificate::from_der(issuer_der).map_err(|e| e.to_string())?;
    let id = cert_id(&leaf, &issuer)?;
    let nonce_value = OctetString::new(nonce.to_vec())
        .and_then(|n| n.to_der())
        .and_then(OctetString::new)
        .map_err(|e| e.to_string())?;
    let request = OcspRequest {
        tbs_request: TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![Extension {
                extn_id: rfc6960::ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: nonce_value,
            }]),
        },
        optional_signature: None,
    };
    Ok((request.to_der().map_err(|e| e.to_string())?, id))
}

fn time(t: &x509_ocsp::OcspGeneralizedTime) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(t.0.to_unix_duration().as_secs()).ok()?;
    DateTime::from_timestamp(secs, 0)
}

/// Whether `signed` (DER) with `algorithm` and `signature` verifies with `cert`'s key.
fn signed_by(
    cert: &X509Certificate<'_>,
    algorithm: &AlgorithmIdentifierOwned,
    signature: &[u8],
    signed: &[u8],
) -> bool {
    algorithm
        .to_der()
        .is_ok_and(|alg| super::trust::verifies(cert.public_key(), &alg, signature, signed))
}

/// Reads a responder's answer `der` about `id` (issued by `issuer_der`), at `now`,
/// for a request that carried `nonce`. An error says why the answer does not count.
pub fn read(
    der: &[u8],
    id: &CertId,
    issuer_der: &[u8],
    nonce: &[u8],
    now: DateTime<Utc>,
) -> Result<Answer, String> {
    let response = OcspResponse::from_der(der).map_err(|e| format!("not an OCSP response: {e}"))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!(
            "the responder answered {:?}",
            response.response_status
        ));
    }
    let bytes = response
        .response_bytes
        .ok_or("a successful answer without a response")?;
    if bytes.response_type != rfc6960::ID_PKIX_OCSP_BASIC {
        return Err(format!("unsupported response type {}", bytes.response_type));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("not a basic OCSP response: {e}"))?;
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| e.to_string())?;
    let signature = basic.signature.raw_bytes();
    let (_, issuer) =
        X509Certificate::from_der(issuer_der).map_err(|e| format!("the issuer: {e}"))?;
    // Signed by the issuer itself, or by a responder certificate it issued for that.
    let by_issuer = signed_by(&issuer, &basic.signature_algorithm, signature, &tbs);
    let by_delegate = || {
        basic.certs.iter().flatten().any(|c| {
            let Ok(c_der) = c.to_der() else { return false };
            let Ok((_, responder)) = X509Certificate::from_der(&c_der) else {
                return false;
            };
            let for_ocsp = responder
                .extended_key_usage()
                .ok()
                .flatten()
                .is_some_and(|eku| eku.value.ocsp_signing);
            let valid = x509_parser::time::ASN1Time::from_timestamp(now.timestamp())
                .is_ok_and(|t| responder.validity().is_valid_at(t));
            for_ocsp
                && valid
                && responder.issuer().as_raw() == issuer.subject().as_raw()
                && responder
                    .verify_signature(Some(issuer.public_key()))
                    .is_ok()
                && signed_by(&responder, &basic.signature_algorithm, signature, &tbs)
        })
    };
    if !by_issuer && !by_delegate() {
        return Err("the answer is not signed by the issuer or a responder it authorised".into());
    }
    if let Some(echoed) = basic.nonce()
        && echoed.0.as_bytes() != nonce
    {
        return Err("the answer carries another request's nonce".into());
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| &r.cert_id == id)
        .ok_or("the answer does not speak about this certificate")?;
    let this_update = time(&single.this_update).ok_or("an unreadable thisUpdate")?;
    if this_update > now + chrono::Duration::seconds(CLOCK_SKEW_SECS) {
        return Err(format!(
            "the answer is from the future (thisUpdate {this_update})"
        ));
    }
    match single.next_update.as_ref().map(time) {
        Some(Some(next)) if next < now => {
            return Err(format!("the answer expired at {next} (nextUpdate)"));
        }
        Some(None) => return Err("an unreadable nextUpdate".into()),
        None if now - this_update > chrono::Duration::seconds(MAX_AGE_WITHOUT_NEXT_UPDATE_SECS) => {
            return Err(format!("the answer from {this_update} is too old"));
        }
        _ => {}
    }
    let status = match &single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Unknown(_) => Status::Unknown,
        CertStatus::Revoked(info) => Status::Revoked {
            at: time(&info.revocation_time).unwrap_or(this_update),
            reason: info.revocation_reason.map(|r| format!("{r:?}")),
        },
    };
    Ok(Answer {
        status,
        der: der.to_vec(),
        this_update,
    })
}

/// Asks the responder at `url` about `leaf_der` (issued by `issuer_der`), within
/// `timeout`. An error says why there is no answer that counts.
pub async fn ask(
    http: &reqwest::Client,
    url: &str,
    leaf_der: &[u8],
    issuer_der: &[u8],
    now: DateTime<Utc>,
    timeout: std::time::Duration,
) -> Result<Answer, String> {
    let nonce: [u8; 16] = rand::random();
    let (body, id) = request(leaf_der, issuer_der, &nonce)?;
    let exchange = super::material::body_at_most(
        http.post(url)
            .header("content-type", "application/ocsp-request")
            .body(body),
        MAX_RESPONSE_BYTES,
    );
    let der = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))??;
    read(&der, &id, issuer_der, &nonce, now)
}
