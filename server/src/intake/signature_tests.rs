//! Signature profile and interoperability tests. The independent signer and verifier
//! is `xmlsec1` (Debian's, installed by `ops/test.sh`); these tests fail, never skip,
//! without it.

use std::path::Path;
use std::process::Command;

use super::signature::{Inspected, inspect, sign_enveloped, verify, verify_streamed};
use crate::xml::Refusal;
use crate::xml::{Limits, build};

const DOC: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<r:Report xmlns:r=\"urn:ivan:test\" period=\"102026\">\n  <r:Line amount=\"10.00\">Ann &amp; Bob</r:Line>\n  <r:Line amount=\"5.50\"/>\n</r:Report>\n";

struct Identity {
    key_pem: String,
    cert_der: Vec<u8>,
    cert_pem: String,
}

fn ec_identity(cn: &str) -> Identity {
    let ck = rcgen::generate_simple_self_signed(vec![cn.to_owned()]).unwrap();
    Identity {
        key_pem: ck.signing_key.serialize_pem(),
        cert_der: ck.cert.der().to_vec(),
        cert_pem: ck.cert.pem(),
    }
}

/// A new RSA-2048 key made by openssl (ring cannot generate RSA keys), written to
/// `dir/rsa.key`; returns its path.
pub(super) fn openssl_rsa_key(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("rsa.key");
    let bits = "rsa_keygen_bits:2048";
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", bits, "-out"])
        .arg(&key));
    key
}

/// An RSA-2048 identity made by openssl.
fn rsa_identity(dir: &Path) -> Identity {
    let key = openssl_rsa_key(dir);
    let cert = dir.join("rsa.pem");
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=RSA Employer",
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let der = pem::parse(&cert_pem).unwrap().into_contents();
    Identity {
        key_pem: std::fs::read_to_string(&key).unwrap(),
        cert_der: der,
        cert_pem,
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (ops/test.sh installs xmlsec1 and openssl)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Signs `xml` with xmlsec1, from a template placed as the root's last child.
fn xmlsec1_sign(dir: &Path, xml: &str, id: &Identity, method: &str, c14n: &str) -> String {
    let template = format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"{c14n}\"/><ds:SignatureMethod Algorithm=\"{method}\"/>\
<ds:Reference URI=\"\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
<ds:Transform Algorithm=\"{c14n}\"/></ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/></ds:Reference>\
</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>"
    );
    let close = xml.rfind("</").unwrap();
    let tmpl = format!("{}{template}{}", &xml[..close], &xml[close..]);
    std::fs::write(dir.join("tmpl.xml"), tmpl).unwrap();
    std::fs::write(dir.join("key.pem"), &id.key_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), &id.cert_pem).unwrap();
    let key_arg = format!(
        "{},{}",
        dir.join("key.pem").display(),
        dir.join("cert.pem").display()
    );
    run(Command::new("xmlsec1")
        .args(["--sign", "--privkey-pem", &key_arg, "--output"])
        .arg(dir.join("signed.xml"))
        .arg(dir.join("tmpl.xml")));
    std::fs::read_to_string(dir.join("signed.xml")).unwrap()
}

fn xmlsec1_verifies(dir: &Path, signed: &str, id: &Identity) -> bool {
    std::fs::write(dir.join("theirs.xml"), signed).unwrap();
    std::fs::write(dir.join("trusted.pem"), &id.cert_pem).unwrap();
    Command::new("xmlsec1")
        .args(["--verify", "--trusted-pem"])
        .arg(dir.join("trusted.pem"))
        .arg(dir.join("theirs.xml"))
        .output()
        .unwrap()
        .status
        .success()
}

/// The whole acceptance path for a signature: profile, then cryptography.
/// Both paths (the tree, and the streamed one for large documents) must agree on
/// every document: the same refusal code and location, or both accept.
fn check(xml: &str, cert_der: &[u8]) -> Result<(), &'static str> {
    let doc = build(xml.as_bytes(), &Limits::default()).map_err(|r| r.code)?;
    let tree = inspect(&doc).and_then(|inspected| {
        verify(&doc, cert_der)?;
        Ok(inspected)
    });
    let streamed = streamed(xml);
    match (&tree, &streamed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.content_digest, b.content_digest);
            assert_eq!(a.certificates, b.certificates);
        }
        (Err(a), Err(b)) => assert_eq!(
            (a.code, &a.location),
            (b.code, &b.location),
            "tree: {a:?}\nstreamed: {b:?}\n{xml}"
        ),
        _ => panic!("the paths disagree: tree {tree:?}, streamed {streamed:?}\n{xml}"),
    }
    let inspected = tree.map_err(|r| r.code)?;
    assert_eq!(inspected.signer(), cert_der, "KeyInfo names the signer");
    Ok(())
}

fn streamed(xml: &str) -> Result<Inspected, Refusal> {
    use crate::xml::cancel::Cancel;
    use crate::xml::source::{Source, file_of};
    use crate::xml::{Stop, prescan};
    let limits = Limits::default();
    let cancel = Cancel::default();
    let run = |src: Source<'_>| {
        prescan(src, &limits, &cancel)
            .and_then(|shape| verify_streamed(src, &shape, &limits, &cancel))
            .map_err(|s| match s {
                Stop::Refused(r) => r,
                Stop::Cancelled => panic!("cancelled"),
                Stop::Failed(why) => panic!("{why}"),
            })
    };
    let memory = run(xml.into());
    // The same document read from a file, as a staged body is: the same verdict.
    let file = file_of(xml);
    let staged = run(Source::File {
        file: &file,
        len: xml.len(),
    });
    let digest = |r: &Result<Inspected, Refusal>| {
        r.as_ref()
            .map(|i| i.content_digest.clone())
            .map_err(Clone::clone)
    };
    assert_eq!(
        digest(&memory),
        digest(&staged),
        "in memory and from a file\n{xml}"
    );
    memory
}

const EXC: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const INC: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const ECDSA: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
const RSA: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

#[test]
fn own_signatures_verify_here_and_in_xmlsec1() {
    let dir = tempfile::tempdir().unwrap();
    for id in [ec_identity("Employer"), rsa_identity(dir.path())] {
        let signed = sign_enveloped(DOC, id.key_pem.as_bytes(), &id.cert_der).unwrap();
        assert!(
            signed.starts_with(&DOC[..DOC.rfind("</").unwrap()]),
            "bytes kept"
        );
        assert_eq!(check(&signed, &id.cert_der), Ok(()));
        assert!(
            xmlsec1_verifies(dir.path(), &signed, &id),
            "xmlsec1 accepts ours"
        );
    }
}

#[test]
fn xmlsec1_signatures_verify_here() {
    let dir = tempfile::tempdir().unwrap();
    let ec = ec_identity("Employer");
    let rsa = rsa_identity(dir.path());
    for (id, method) in [(&ec, ECDSA), (&rsa, RSA)] {
        for c14n in [EXC, INC] {
            let signed = xmlsec1_sign(dir.path(), DOC, id, method, c14n);
            assert_eq!(check(&signed, &id.cert_der), Ok(()), "{method} {c14n}");
        }
    }
}

#[test]
fn any_change_after_signing_is_refused() {
    let id = ec_identity("Employer");
    let signed = sign_enveloped(DOC, id.key_pem.as_bytes(), &id.cert_der).unwrap();
    // Flip one byte at a time over the document's content (before the signature).
    let body_end = signed.find("<ds:Signature").unwrap();
    let mut refused = 0;
    for at in (0..body_end).step_by(7) {
        let mut bytes = signed.clone().into_bytes();
        bytes[at] ^= 0x01;
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        match check(&text, &id.cert_der) {
            Ok(()) => {
                // Only changes C14N ignores may pass: inside the XML declaration.
                assert!(at < 40, "flip at {at} went unnoticed: {text}");
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 20, "{refused}");
    let changed = signed.replace("10.00", "10.01");
    assert_eq!(check(&changed, &id.cert_der), Err("signature.invalid"));
}

#[test]
fn a_swapped_certificate_is_refused() {
    let signer = ec_identity("Employer");
    let other = ec_identity("Other");
    let signed = sign_enveloped(DOC, signer.key_pem.as_bytes(), &signer.cert_der).unwrap();
    use base64::Engine;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let swapped = signed.replace(&b64(&signer.cert_der), &b64(&other.cert_der));
    assert_ne!(swapped, signed);
    assert_eq!(check(&swapped, &other.cert_der), Err("signature.invalid"));
}

#[test]
fn wrapping_and_profile_violations_are_refused() {
    let id = ec_identity("Employer");
    let signed = sign_enveloped(DOC, id.key_pem.as_bytes(), &id.cert_der).unwrap();
    let sig_start = signed.find("<ds:Signature").unwrap();
    let sig_end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let sig = &signed[sig_start..sig_end];
    let body = format!("{}{}", &signed[..sig_start], &signed[sig_end..]);
    let first_line = body.find("<r:Line").unwrap();

    let cases: Vec<(String, &str)> = vec![
        (DOC.to_owned(), "signature.missing"),
        // Signature moved into a child element (a wrapper).
        (
            format!(
                "{}<r:Wrapper>{sig}</r:Wrapper>{}",
                &body[..first_line],
                &body[first_line..]
            ),
            "signature.misplaced",
        ),
        // Signature first instead of last.
        (
            format!("{}{sig}{}", &body[..first_line], &body[first_line..]),
            "signature.misplaced",
        ),
        // Two signatures.
        (signed.replace(sig, &format!("{sig}{sig}")), "signature.multiple"),
        // A reference to an inner Id instead of the whole document.
        (signed.replace("URI=\"\"", "URI=\"#line1\""), "signature.reference"),
        // A second reference.
        (
            signed.replace("</ds:SignedInfo>", "<ds:Reference URI=\"\"/></ds:SignedInfo>"),
            "signature.reference",
        ),
        // An XPath transform.
        (
            signed.replace(
                "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>",
                "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/><ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"/>",
            ),
            "signature.reference",
        ),
        // Weak algorithms.
        (
            signed.replace(ECDSA, "http://www.w3.org/2000/09/xmldsig#dsa-sha1"),
            "signature.unsupported-algorithm",
        ),
        (
            signed.replace(
                "http://www.w3.org/2001/04/xmlenc#sha256",
                "http://www.w3.org/2000/09/xmldsig#sha1",
            ),
            "signature.unsupported-algorithm",
        ),
        // Content smuggled into the signature, where the digest does not reach.
        (
            signed.replace(
                "</ds:Signature>",
                "<ds:Object><r:Line amount=\"999\"/></ds:Object></ds:Signature>",
            ),
            "signature.unsupported",
        ),
        // No certificate.
        (
            signed.replace(
                &signed[signed.find("<ds:KeyInfo>").unwrap()
                    ..signed.find("</ds:KeyInfo>").unwrap() + "</ds:KeyInfo>".len()],
                "<ds:KeyInfo><ds:X509Data/></ds:KeyInfo>",
            ),
            "signature.certificate",
        ),
        // Anything but the certificates in KeyInfo is not covered by the signature.
        (
            signed.replace(
                &signed[signed.find("<ds:KeyInfo>").unwrap()
                    ..signed.find("</ds:KeyInfo>").unwrap() + "</ds:KeyInfo>".len()],
                "<ds:KeyInfo><ds:KeyName>me</ds:KeyName></ds:KeyInfo>",
            ),
            "signature.unsigned-content",
        ),
    ];
    for (xml, want) in cases {
        assert_eq!(check(&xml, &id.cert_der), Err(want), "{xml}");
    }
}

/// A large document's signature is built as a tree, which cannot be stopped
/// part-way: a last child larger than a signature can be is never built. If it is
/// not the signature, the placement verdicts are the tree path's; if it is, it is
/// refused by its size.
#[test]
fn a_huge_last_child_is_never_built_on_the_streamed_path() {
    use super::signature::MAX_STREAMED_SIGNATURE_BYTES;
    let id = ec_identity("Employer");
    let signed = sign_enveloped(DOC, id.key_pem.as_bytes(), &id.cert_der).unwrap();
    let close = signed.rfind("</r:Report>").unwrap();
    let huge = format!(
        "<r:Line>{}</r:Line>",
        "x".repeat(MAX_STREAMED_SIGNATURE_BYTES)
    );
    let after_signature = format!("{}{huge}{}", &signed[..close], &signed[close..]);
    assert_eq!(
        check(&after_signature, &id.cert_der),
        Err("signature.misplaced")
    );
    let sig_end = signed.rfind("</ds:Signature>").unwrap();
    let padded = format!(
        "{}<!--{}-->{}",
        &signed[..sig_end],
        "x".repeat(MAX_STREAMED_SIGNATURE_BYTES),
        &signed[sig_end..]
    );
    let refusal = streamed(&padded).unwrap_err();
    assert_eq!(refusal.code, "signature.unsupported", "{refusal:?}");
    assert!(
        refusal.message.contains("a signature may take"),
        "{refusal:?}"
    );
    assert_eq!(refusal.location, "/r:Report/ds:Signature");
}
