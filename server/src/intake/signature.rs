//! The XML-DSig profile `ivan` accepts, and its verification.
//!
//! A filing carries exactly one **enveloped** signature over the **whole document**:
//!
//! - one `ds:Signature` in the whole document, the last element child of the
//!   document element (anything else — a second signature, a signature deeper in
//!   the tree or wrapped in another element — is refused);
//! - `SignedInfo` with `CanonicalizationMethod` inclusive C14N 1.0 / 1.1 or exclusive
//!   C14N (without comments), `SignatureMethod` RSA-SHA256 or ECDSA-SHA256;
//! - exactly one `Reference`, `URI=""`, transforms `enveloped-signature` optionally
//!   followed by one of the canonicalisations above, `DigestMethod` SHA-256;
//! - no `ds:Object`, no `Manifest`;
//! - `KeyInfo/X509Data` with the signing certificate first (further certificates
//!   are taken as intermediates).
//!
//! Because the reference covers the whole document, the document that is validated
//! and stored is exactly the document that was signed (minus the signature itself
//! and comments); signature-wrapping has nowhere to hide.
//!
//! Cryptography is [bergshamra]'s, run with only the certificate the document names
//! as a key (`trusted_keys_only`, strict reference positions): whether that
//! certificate is the employer's and is trustworthy is decided by the caller
//! ([`super::trust`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bergshamra::core::{algorithm, ns};
use bergshamra::{DsigContext, KeysManager, VerifyResult};
use uppsala::{Document, NodeId, NodeKind};

use crate::xml::Refusal;

const SIGNATURE_METHODS: [&str; 2] = [algorithm::RSA_SHA256, algorithm::ECDSA_SHA256];
const C14N_METHODS: [&str; 3] = [algorithm::C14N, algorithm::C14N11, algorithm::EXC_C14N];

/// What the signature says about itself, before any cryptography.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// `SignatureMethod` algorithm URI.
    pub signature_method: String,
    /// DER certificates from `KeyInfo`, signer first.
    pub certificates: Vec<Vec<u8>>,
    /// Hex SHA-256 of what the signature covers: the reference's `DigestValue`, the
    /// digest of the canonical document without its signature (checked by
    /// [`verify`]). Byte-different files of one signed document (a trailing newline,
    /// a comment, other whitespace between attributes) share it; duplicates are
    /// judged on it.
    pub content_digest: String,
}

impl Inspected {
    /// The signing certificate (DER).
    pub fn signer(&self) -> &[u8] {
        self.certificates.first().map_or(&[], Vec::as_slice)
    }

    /// Certificates after the signer, offered as intermediates.
    pub fn intermediates(&self) -> &[Vec<u8>] {
        self.certificates.get(1..).unwrap_or_default()
    }
}

/// Checks the signature's shape against the profile and extracts its certificates.
pub fn inspect(doc: &Document<'_>) -> Result<Inspected, Refusal> {
    let root = doc
        .document_element()
        .ok_or_else(|| Refusal::new("xml.malformed", "the document has no element", "/"))?;
    let root_path = format!("/{}", name_of(doc, root));
    let all: Vec<NodeId> = doc
        .descendants(doc.root())
        .into_iter()
        .filter(|n| is_dsig(doc, *n, ns::node::SIGNATURE))
        .collect();
    let sig = match all.as_slice() {
        [] => {
            return Err(Refusal::new(
                "signature.missing",
                "the document is not signed: no ds:Signature element",
                root_path,
            ));
        }
        [one] => *one,
        [_, second, ..] => {
            return Err(Refusal::new(
                "signature.multiple",
                format!(
                    "the document carries {} signatures; exactly one enveloped signature is accepted",
                    all.len()
                ),
                path_of(doc, *second),
            ));
        }
    };
    let sig_path = path_of(doc, sig);
    if doc.parent(sig) != Some(root) || element_children(doc, root).last() != Some(&sig) {
        return Err(Refusal::new(
            "signature.misplaced",
            "the ds:Signature must be the last child element of the document element",
            sig_path,
        ));
    }
    let parts = element_children(doc, sig);
    let signed_info = only_child(doc, sig, ns::node::SIGNED_INFO, &sig_path)?;
    if let Some(extra) = parts.iter().find(|n| {
        !is_dsig(doc, **n, ns::node::SIGNED_INFO)
            && !is_dsig(doc, **n, ns::node::SIGNATURE_VALUE)
            && !is_dsig(doc, **n, ns::node::KEY_INFO)
    }) {
        return Err(Refusal::new(
            "signature.unsupported",
            format!(
                "ds:Signature may hold only SignedInfo, SignatureValue and KeyInfo, not {}",
                name_of(doc, *extra)
            ),
            path_of(doc, *extra),
        ));
    }
    let si_path = format!("{sig_path}/ds:SignedInfo");
    let c14n = only_child(doc, signed_info, "CanonicalizationMethod", &si_path)?;
    require_algorithm(doc, c14n, &C14N_METHODS, "canonicalization")?;
    let method = only_child(doc, signed_info, "SignatureMethod", &si_path)?;
    let signature_method = require_algorithm(doc, method, &SIGNATURE_METHODS, "signature")?;

    let references = doc.child_elements_by_name_ns(signed_info, ns::DSIG, ns::node::REFERENCE);
    let reference = match references.as_slice() {
        [one] => *one,
        _ => {
            return Err(Refusal::new(
                "signature.reference",
                format!(
                    "SignedInfo has {} references; exactly one, to the whole document (URI=\"\"), is accepted",
                    references.len()
                ),
                si_path,
            ));
        }
    };
    let ref_path = format!("{si_path}/ds:Reference");
    if doc.get_attribute(reference, "URI") != Some("") {
        return Err(Refusal::new(
            "signature.reference",
            "the reference must cover the whole document: URI=\"\" with the enveloped-signature transform",
            ref_path,
        ));
    }
    let transforms = only_child(doc, reference, ns::node::TRANSFORMS, &ref_path)?;
    let steps: Vec<&str> = element_children(doc, transforms)
        .iter()
        .map(|t| {
            if is_dsig(doc, *t, ns::node::TRANSFORM) {
                doc.get_attribute(*t, "Algorithm").unwrap_or("")
            } else {
                "(not a ds:Transform)"
            }
        })
        .collect();
    let transforms_ok = match steps.as_slice() {
        [first] => *first == algorithm::ENVELOPED_SIGNATURE,
        [first, second] => {
            *first == algorithm::ENVELOPED_SIGNATURE && C14N_METHODS.contains(second)
        }
        _ => false,
    };
    if !transforms_ok {
        return Err(Refusal::new(
            "signature.reference",
            format!(
                "the reference's transforms must be enveloped-signature, optionally followed by one canonicalization; found {steps:?}"
            ),
            format!("{ref_path}/ds:Transforms"),
        ));
    }
    let digest = only_child(doc, reference, "DigestMethod", &ref_path)?;
    require_algorithm(doc, digest, &[algorithm::SHA256], "digest")?;
    let digest_value = only_child(doc, reference, "DigestValue", &ref_path)?;
    let content_digest = STANDARD
        .decode(base64_text(doc, digest_value).as_bytes())
        .ok()
        .filter(|d| d.len() == 32)
        .map(hex::encode)
        .ok_or_else(|| {
            Refusal::new(
                "signature.reference",
                "the reference's DigestValue is not a base64 SHA-256 digest",
                format!("{ref_path}/ds:DigestValue"),
            )
        })?;

    // Nothing but the signature value and the certificates lies outside what the
    // signature covers: no element may hide in SignatureValue or KeyInfo, where it
    // would be stored, forwarded and read without being signed.
    let value = only_child(doc, sig, ns::node::SIGNATURE_VALUE, &sig_path)?;
    if let Some(extra) = element_children(doc, value).first() {
        return Err(unsigned_content(
            doc,
            *extra,
            "ds:SignatureValue holds only base64 text",
        ));
    }
    let key_info = only_child(doc, sig, ns::node::KEY_INFO, &sig_path)?;
    for data in element_children(doc, key_info) {
        if !is_dsig(doc, data, ns::node::X509_DATA) {
            return Err(unsigned_content(
                doc,
                data,
                "ds:KeyInfo may hold only ds:X509Data with the signing certificate",
            ));
        }
        for cert in element_children(doc, data) {
            if !is_dsig(doc, cert, ns::node::X509_CERTIFICATE) {
                return Err(unsigned_content(
                    doc,
                    cert,
                    "ds:X509Data may hold only ds:X509Certificate elements",
                ));
            }
            if let Some(extra) = element_children(doc, cert).first() {
                return Err(unsigned_content(
                    doc,
                    *extra,
                    "ds:X509Certificate holds only base64 text",
                ));
            }
        }
    }
    let mut certificates = Vec::new();
    for data in doc.child_elements_by_name_ns(key_info, ns::DSIG, ns::node::X509_DATA) {
        for cert in doc.child_elements_by_name_ns(data, ns::DSIG, ns::node::X509_CERTIFICATE) {
            let der = STANDARD
                .decode(base64_text(doc, cert).as_bytes())
                .map_err(|_| {
                    Refusal::new(
                        "signature.certificate",
                        "an X509Certificate is not valid base64",
                        format!("{sig_path}/ds:KeyInfo"),
                    )
                })?;
            certificates.push(der);
        }
    }
    if certificates.is_empty() {
        return Err(Refusal::new(
            "signature.certificate",
            "KeyInfo carries no X509Certificate: the signing certificate must be included",
            format!("{sig_path}/ds:KeyInfo"),
        ));
    }
    Ok(Inspected {
        signature_method,
        certificates,
        content_digest,
    })
}

/// The text of `node` without whitespace (base64 content may be wrapped).
fn base64_text(doc: &Document<'_>, node: NodeId) -> String {
    doc.text_content_deep(node)
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect()
}

/// An element inside the signature where the signature does not cover it.
fn unsigned_content(doc: &Document<'_>, node: NodeId, rule: &str) -> Refusal {
    Refusal::new(
        "signature.unsigned-content",
        format!(
            "{rule}, not {}: content there is not covered by the signature",
            name_of(doc, node)
        ),
        path_of(doc, node),
    )
}

/// Verifies the signature cryptographically with `certificate_der` as the only key.
/// Call [`inspect`] first: this relies on the profile it enforces.
pub fn verify(doc: &Document<'_>, certificate_der: &[u8]) -> Result<(), Refusal> {
    let invalid = |why: String| Refusal::new("signature.invalid", why, "/");
    let key = bergshamra::keys::loader::load_x509_cert_der(certificate_der).map_err(|e| {
        Refusal::new(
            "signature.certificate",
            format!("the signing certificate's key cannot be used: {e}"),
            "/",
        )
    })?;
    let mut keys = KeysManager::new();
    keys.add_key(key);
    // Secure defaults: only our key, strict reference positions, digests required.
    let ctx = DsigContext::new(keys);
    match bergshamra::dsig::verify::verify_document(&ctx, doc) {
        Ok(VerifyResult::Valid { references, .. })
            if references.len() == 1
                && references
                    .iter()
                    .all(|r| r.uri.is_empty() && r.digest_verified) =>
        {
            Ok(())
        }
        Ok(VerifyResult::Valid { .. }) => Err(invalid(
            "the signature does not cover exactly the whole document".into(),
        )),
        Ok(VerifyResult::Invalid { reason }) => Err(invalid(format!(
            "the signature does not verify: {reason} (the document was changed after signing, or signed with another key)"
        ))),
        Err(e) => Err(invalid(format!("the signature cannot be verified: {e}"))),
    }
}

/// Signs `xml` with an enveloped signature in the accepted profile (exclusive C14N,
/// SHA-256), inserted as the last child of the document element. The input bytes are
/// kept as they are around the inserted signature. For `ivan dev sign` and tests.
pub fn sign_enveloped(xml: &str, key_pem: &[u8], cert_der: &[u8]) -> Result<String, String> {
    sign_enveloped_with(xml, key_pem, cert_der, Some(algorithm::EXC_C14N))
}

/// [`sign_enveloped`] with the CA certificates `chain` (DER, issuer of the signer
/// first) sent beside the signer's in KeyInfo, as a signer under an intermediate CA
/// sends them.
pub fn sign_enveloped_chain(
    xml: &str,
    key_pem: &[u8],
    cert_der: &[u8],
    chain: &[Vec<u8>],
) -> Result<String, String> {
    sign_with(xml, key_pem, cert_der, chain, Some(algorithm::EXC_C14N))
}

/// [`sign_enveloped`] with the reference's canonicalisation `transform` after
/// enveloped-signature (`None`: none, which means inclusive C14N 1.0).
pub(crate) fn sign_enveloped_with(
    xml: &str,
    key_pem: &[u8],
    cert_der: &[u8],
    transform: Option<&str>,
) -> Result<String, String> {
    sign_with(xml, key_pem, cert_der, &[], transform)
}

fn sign_with(
    xml: &str,
    key_pem: &[u8],
    cert_der: &[u8],
    chain: &[Vec<u8>],
    transform: Option<&str>,
) -> Result<String, String> {
    let key = bergshamra::keys::loader::load_pem_auto(key_pem, None)
        .map_err(|e| format!("cannot read the private key: {e}"))?;
    let method = match key.algorithm_name() {
        n if n.starts_with("RSA") => algorithm::RSA_SHA256,
        n if n.starts_with("EC") => algorithm::ECDSA_SHA256,
        other => return Err(format!("unsupported key type {other}: use RSA or EC P-256")),
    };
    let doc =
        crate::xml::build(xml.as_bytes(), &crate::xml::Limits::default()).map_err(|r| r.message)?;
    let root = doc
        .document_element()
        .ok_or_else(|| "the document has no element".to_owned())?;
    if doc
        .descendants(doc.root())
        .into_iter()
        .any(|n| is_dsig(&doc, n, ns::node::SIGNATURE))
    {
        return Err("the document is already signed".into());
    }
    let end = doc
        .node_range(root)
        .map(|r| r.end)
        .ok_or_else(|| "cannot locate the document element".to_owned())?;
    let close = xml[..end]
        .rfind("</")
        .filter(|_| !xml[..end].ends_with("/>"))
        .ok_or_else(|| {
            "the document element is empty (<x/>); give it an end tag to sign it".to_owned()
        })?;
    let c14n = algorithm::EXC_C14N;
    let template = format!(
        "{}<ds:Signature xmlns:ds=\"{dsig}\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"{c14n}\"/>\
<ds:SignatureMethod Algorithm=\"{method}\"/>\
<ds:Reference URI=\"\"><ds:Transforms>\
<ds:Transform Algorithm=\"{env}\"/>{second}\
</ds:Transforms><ds:DigestMethod Algorithm=\"{sha}\"/><ds:DigestValue></ds:DigestValue>\
</ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue>\
<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate>{chain}</ds:X509Data></ds:KeyInfo>\
</ds:Signature>{}",
        &xml[..close],
        &xml[close..],
        dsig = ns::DSIG,
        env = algorithm::ENVELOPED_SIGNATURE,
        sha = algorithm::SHA256,
        cert = STANDARD.encode(cert_der),
        chain = chain
            .iter()
            .map(|c| format!(
                "<ds:X509Certificate>{}</ds:X509Certificate>",
                STANDARD.encode(c)
            ))
            .collect::<String>(),
        second = transform
            .map(|t| format!("<ds:Transform Algorithm=\"{t}\"/>"))
            .unwrap_or_default(),
    );
    let mut keys = KeysManager::new();
    keys.add_key(key);
    let ctx = DsigContext::new(keys);
    bergshamra::sign(&ctx, &template).map_err(|e| format!("signing failed: {e}"))
}

fn is_dsig(doc: &Document<'_>, node: NodeId, local: &str) -> bool {
    doc.element(node)
        .is_some_and(|e| e.name.matches(Some(ns::DSIG), local))
}

fn element_children(doc: &Document<'_>, node: NodeId) -> Vec<NodeId> {
    doc.children(node)
        .into_iter()
        .filter(|c| matches!(doc.node_kind(*c), Some(NodeKind::Element(_))))
        .collect()
}

fn only_child(
    doc: &Document<'_>,
    parent: NodeId,
    local: &str,
    parent_path: &str,
) -> Result<NodeId, Refusal> {
    let found = doc.child_elements_by_name_ns(parent, ns::DSIG, local);
    match found.as_slice() {
        [one] => Ok(*one),
        _ => Err(Refusal::new(
            "signature.malformed",
            format!(
                "expected exactly one ds:{local} here, found {}",
                found.len()
            ),
            parent_path,
        )),
    }
}

fn require_algorithm(
    doc: &Document<'_>,
    node: NodeId,
    allowed: &[&str],
    what: &str,
) -> Result<String, Refusal> {
    let alg = doc.get_attribute(node, "Algorithm").unwrap_or("");
    if allowed.contains(&alg) {
        Ok(alg.to_owned())
    } else {
        Err(Refusal::new(
            "signature.unsupported-algorithm",
            format!("{what} algorithm {alg:?} is not accepted; use one of {allowed:?}"),
            path_of(doc, node),
        ))
    }
}

fn name_of(doc: &Document<'_>, node: NodeId) -> String {
    doc.element(node)
        .map(|e| e.name.prefixed_name().into_owned())
        .unwrap_or_default()
}

/// `/Root/Child[2]/ds:Signature`-style path of an element, for error locations.
fn path_of(doc: &Document<'_>, node: NodeId) -> String {
    let mut parts = Vec::new();
    let mut at = Some(node);
    while let Some(n) = at {
        if doc.element(n).is_none() {
            break;
        }
        let name = name_of(doc, n);
        let siblings: Vec<NodeId> = doc
            .parent(n)
            .map(|p| element_children(doc, p))
            .unwrap_or_default()
            .into_iter()
            .filter(|s| name_of(doc, *s) == name)
            .collect();
        if siblings.len() > 1 {
            let pos = siblings.iter().position(|s| *s == n).map_or(0, |p| p + 1);
            parts.push(format!("{name}[{pos}]"));
        } else {
            parts.push(name);
        }
        at = doc.parent(n);
    }
    parts.reverse();
    format!("/{}", parts.join("/"))
}

/// The most bytes the signature of a large document may take (it is built as a
/// tree, which cannot be stopped part-way): a signature with its certificate chain
/// takes a few kilobytes.
pub const MAX_STREAMED_SIGNATURE_BYTES: usize = 1024 * 1024;

/// [`inspect`] and [`verify`] for a document too large to build as a tree: the
/// same profile and the same refusals, with the reference's digest computed while
/// streaming ([`super::c14n::scan`]) and only the signature itself (the document
/// element's start tag, the `ds:Signature`, the end tag) built as a tree, where
/// bergshamra canonicalises `SignedInfo` and checks the signature value.
pub fn verify_streamed<'a>(
    src: impl Into<crate::xml::source::Source<'a>>,
    shape: &crate::xml::Shape,
    limits: &crate::xml::Limits,
    cancel: &crate::xml::cancel::Cancel,
) -> Result<Inspected, crate::xml::Stop> {
    use super::c14n::{self, Method};
    let src = src.into();
    let (start, end) = shape.root_start;
    // The root's start tag: within the limits on attributes, and for a document
    // cut into chunks within a chunk's envelope.
    let root_tag = src.text(start..end)?;
    let root_name = crate::xml::tag_name(&root_tag).to_owned();
    // The document element around its last child (where the signature must be).
    let (last_from, last_to) = shape.last_child.unwrap_or((start, start));
    let last_len = last_to - last_from;
    // Only a last child of a signature's size is read and built; a larger one is
    // refused below (after the placement checks, whose verdicts come first).
    let small;
    let doc = if last_len <= MAX_STREAMED_SIGNATURE_BYTES {
        small = crate::xml::enclosed(&root_tag, &src.text(last_from..last_to)?);
        Some(crate::xml::build(small.as_bytes(), limits)?)
    } else {
        None
    };
    let method = doc
        .as_ref()
        .and_then(reference_method)
        .unwrap_or(Method::Inclusive);
    let envelope = c14n::scan(src, &method, cancel)?;
    let refusal = |code, message: String, at: usize| -> crate::xml::Stop {
        match path_at(src, at) {
            Ok(path) => Refusal::new(code, message, path).into(),
            Err(stop) => stop,
        }
    };
    match (envelope.signatures, &envelope.first, envelope.second) {
        (0, _, _) => {
            return Err(Refusal::new(
                "signature.missing",
                "the document is not signed: no ds:Signature element",
                format!("/{root_name}"),
            )
            .into());
        }
        (n, _, Some(second)) if n > 1 => {
            return Err(refusal(
                "signature.multiple",
                format!(
                    "the document carries {n} signatures; exactly one enveloped signature is accepted"
                ),
                second,
            ));
        }
        (_, Some((range, false)), _) => {
            return Err(refusal(
                "signature.misplaced",
                "the ds:Signature must be the last child element of the document element".into(),
                range.start,
            ));
        }
        _ => {}
    }
    let Some(doc) = doc else {
        return Err(refusal(
            "signature.unsupported",
            format!(
                "the ds:Signature takes {last_len} bytes, more than the {MAX_STREAMED_SIGNATURE_BYTES} a signature may take in a large document"
            ),
            last_from,
        ));
    };
    let inspected = inspect(&doc)?;
    cancel.check()?;
    if hex::encode(envelope.digest) != inspected.content_digest {
        return Err(Refusal::new(
            "signature.invalid",
            "the signature does not verify: Reference digest failed: the digest of the document does not match DigestValue (the document was changed after signing, or signed with another key)",
            "/",
        )
        .into());
    }
    verify_signed_info(&doc, &inspected)?;
    Ok(inspected)
}

/// The canonicalisation the reference names after enveloped-signature.
fn reference_method(doc: &Document<'_>) -> Option<super::c14n::Method> {
    let root = doc.document_element()?;
    let sig = doc
        .child_elements_by_name_ns(root, ns::DSIG, ns::node::SIGNATURE)
        .pop()?;
    let si = *doc
        .child_elements_by_name_ns(sig, ns::DSIG, ns::node::SIGNED_INFO)
        .first()?;
    let reference = *doc
        .child_elements_by_name_ns(si, ns::DSIG, ns::node::REFERENCE)
        .first()?;
    let transforms = *doc
        .child_elements_by_name_ns(reference, ns::DSIG, ns::node::TRANSFORMS)
        .first()?;
    let steps = doc.child_elements_by_name_ns(transforms, ns::DSIG, ns::node::TRANSFORM);
    let Some(second) = steps.get(1) else {
        return Some(super::c14n::Method::Inclusive);
    };
    if doc.get_attribute(*second, "Algorithm") != Some(algorithm::EXC_C14N) {
        return Some(super::c14n::Method::Inclusive);
    }
    let prefixes = element_children(doc, *second)
        .into_iter()
        .filter(|c| {
            doc.element(*c)
                .is_some_and(|e| e.name.local_name == ns::node::INCLUSIVE_NAMESPACES)
        })
        .find_map(|c| doc.get_attribute(c, "PrefixList"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Some(super::c14n::Method::Exclusive { prefixes })
}

/// Checks the signature value over the canonical `SignedInfo` with the signing
/// certificate's key (the reference's digest was checked by the caller).
fn verify_signed_info(doc: &Document<'_>, inspected: &Inspected) -> Result<(), Refusal> {
    let invalid = |why: String| Refusal::new("signature.invalid", why, "/");
    let cannot = |e: bergshamra::Error| invalid(format!("the signature cannot be verified: {e}"));
    let key = bergshamra::keys::loader::load_x509_cert_der(inspected.signer()).map_err(|e| {
        Refusal::new(
            "signature.certificate",
            format!("the signing certificate's key cannot be used: {e}"),
            "/",
        )
    })?;
    let root = doc
        .document_element()
        .ok_or_else(|| invalid("no document element".into()))?;
    let sig = doc
        .child_elements_by_name_ns(root, ns::DSIG, ns::node::SIGNATURE)
        .pop()
        .ok_or_else(|| invalid("no signature".into()))?;
    let si = *doc
        .child_elements_by_name_ns(sig, ns::DSIG, ns::node::SIGNED_INFO)
        .first()
        .ok_or_else(|| invalid("no SignedInfo".into()))?;
    let method = *doc
        .child_elements_by_name_ns(si, ns::DSIG, "CanonicalizationMethod")
        .first()
        .ok_or_else(|| invalid("no CanonicalizationMethod".into()))?;
    let mode = doc
        .get_attribute(method, "Algorithm")
        .and_then(bergshamra::c14n::C14nMode::from_uri)
        .ok_or_else(|| invalid("unsupported canonicalization".into()))?;
    let prefixes: Vec<String> = element_children(doc, method)
        .into_iter()
        .find_map(|c| doc.get_attribute(c, "PrefixList"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let set = bergshamra::xml::NodeSet::tree_without_comments(si, doc);
    let canonical =
        bergshamra::c14n::canonicalize_doc(doc, mode, Some(&set), &prefixes).map_err(cannot)?;
    let value = doc
        .child_elements_by_name_ns(sig, ns::DSIG, ns::node::SIGNATURE_VALUE)
        .pop()
        .map(|v| base64_text(doc, v))
        .unwrap_or_default();
    let value = STANDARD.decode(value.as_bytes()).map_err(|e| {
        invalid(format!(
            "the signature cannot be verified: base64 error: SignatureValue: {e}"
        ))
    })?;
    let algorithm =
        bergshamra::crypto::sign::from_uri(&inspected.signature_method).map_err(cannot)?;
    let signing_key = key
        .to_signing_key()
        .map_err(cannot)?
        .ok_or_else(|| invalid("the signing certificate carries no usable key".into()))?;
    match algorithm.verify(&signing_key, &canonical, &value) {
        Ok(true) => Ok(()),
        Ok(false) => Err(invalid(
            "the signature does not verify: signature value verification failed (the document was changed after signing, or signed with another key)".into(),
        )),
        Err(e) => Err(cannot(e)),
    }
}

/// The tree path's location (see `path_of`) of the element that starts at byte
/// `at`, computed in one streaming pass (only for refusals): its ancestors-or-self
/// with their positions, and how many same-named siblings each has in all.
fn path_at(src: crate::xml::source::Source<'_>, at: usize) -> Result<String, crate::xml::Stop> {
    use quick_xml::events::Event;
    use std::collections::HashMap;
    let mut reader = quick_xml::Reader::from_reader(src.reader());
    let mut buf = Vec::new();
    // Per open element (and the document), how many children of each name so far.
    let mut frames: Vec<HashMap<String, usize>> = vec![HashMap::new()];
    // Ancestors-or-self of the target by depth: (name, position, same-named total).
    let mut chain: Vec<(String, usize, usize)> = Vec::new();
    let settle =
        |chain: &mut Vec<(String, usize, usize)>, depth: usize, counts: &HashMap<String, usize>| {
            if let Some((name, _, total)) = chain.get_mut(depth) {
                *total = counts.get(name.as_str()).copied().unwrap_or(0);
            }
        };
    loop {
        buf.clear();
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => match crate::xml::failed_read(&e) {
                Some(stop) => return Err(stop),
                None => break,
            },
        };
        let (e, empty) = match event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if let Some(counts) = frames.pop() {
                    settle(&mut chain, frames.len(), &counts);
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let depth = frames.len() - 1;
        let counts = &mut frames[depth];
        let pos = {
            let c = counts.entry(name.clone()).or_default();
            *c += 1;
            *c
        };
        if start <= at {
            chain.truncate(depth);
            chain.push((name, pos, 0));
        }
        if !empty {
            frames.push(HashMap::new());
        }
    }
    if let Some(counts) = frames.first() {
        settle(&mut chain, 0, counts);
    }
    let steps: Vec<String> = chain
        .iter()
        .map(|(name, pos, total)| {
            if *total > 1 {
                format!("{name}[{pos}]")
            } else {
                name.clone()
            }
        })
        .collect();
    Ok(format!("/{}", steps.join("/")))
}
