//! The enveloped reference's digest computed while streaming, for documents too
//! large to build as a tree ([`scan`]).
//!
//! The signature profile ([`super::signature`]) admits one reference, `URI=""`,
//! over the whole document minus its one `ds:Signature` (the enveloped-signature
//! transform), canonicalised with inclusive C14N 1.0 / 1.1 or exclusive C14N, without
//! comments. For exactly that node set the canonical form is a function of the
//! event stream, so it can be written out (and hashed) as the document is read,
//! with memory bounded by the nesting depth and the namespace declarations in scope:
//!
//! - no XML declaration, no DOCTYPE (refused earlier anyway), no comments;
//!   processing instructions outside the document element on their own line;
//! - line ends normalised, character and predefined entity references expanded,
//!   CDATA sections as text; text escapes `& < > CR`, attribute values
//!   `& < " TAB LF CR`;
//! - empty elements as start/end pairs; attributes sorted by namespace URI and local
//!   name; namespace declarations first, sorted by prefix;
//! - inclusive C14N renders a namespace declaration where the binding differs from
//!   the parent's (the whole tree is in the node set, so C14N 1.0 and 1.1 agree:
//!   their differences concern `xml:` attributes of elements whose parent is not
//!   rendered); exclusive C14N renders the bindings an element visibly uses (its own
//!   prefix, its attributes' prefixes, and the `InclusiveNamespaces` prefix list)
//!   where they differ from what an ancestor already rendered.
//!
//! The same pass counts the `ds:Signature` elements and says where the first one
//! is, so the profile's placement rules (exactly one, the last child element of the
//! document element) are checked on the whole document too. It is tested against
//! bergshamra's canonicalisation of the parsed tree (the small-document path) on
//! every shape the tests have.

use std::ops::Range;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use sha2::{Digest, Sha256};

use crate::xml::Refusal;
use crate::xml::cancel::Cancel;
use crate::xml::source::{Reader, Source};
use crate::xml::{Stop, read_error};

const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
const CANCEL_EVERY: u32 = 4096;

/// Which canonicalisation the reference's transforms name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Inclusive C14N 1.0 or 1.1 (also the default after enveloped-signature alone).
    Inclusive,
    /// Exclusive C14N with the `InclusiveNamespaces` prefix list (`#default` for the
    /// default namespace).
    Exclusive { prefixes: Vec<String> },
}

/// What the pass found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// SHA-256 of the canonical document without its first `ds:Signature`.
    pub digest: [u8; 32],
    /// `ds:Signature` elements in the whole document.
    pub signatures: u32,
    /// The first `ds:Signature`: its bytes and whether it is the last child element
    /// of the document element.
    pub first: Option<(Range<usize>, bool)>,
    /// Where the second `ds:Signature` starts, if there is one.
    pub second: Option<usize>,
    /// The document element's start tag.
    pub root_start: Range<usize>,
    /// The document element's qualified name.
    pub root_name: String,
}

/// One open element: the namespace declarations it made (as indexes into the
/// scope stacks) and, while the first signature is open, nothing is written.
struct Open {
    scope_len: usize,
    rendered_len: usize,
    is_first_signature: bool,
}

/// Streams a document (checked UTF-8, no DTD) once and returns the digest of its
/// canonical form under `method`, without the first `ds:Signature` subtree.
pub fn scan<'a>(
    src: impl Into<Source<'a>>,
    method: &Method,
    cancel: &Cancel,
) -> Result<Envelope, Stop> {
    let mut reader = quick_xml::Reader::from_reader(src.into().reader());
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut out = Out::default();
    // In-scope bindings (prefix, uri), innermost last; "" is the default namespace.
    let mut scope: Vec<(String, String)> = Vec::new();
    // Bindings rendered by output ancestors (exclusive only).
    let mut rendered: Vec<(String, String)> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut skipping = 0usize; // depth inside the first signature (0: not inside)
    let mut envelope = Envelope {
        digest: [0; 32],
        signatures: 0,
        first: None,
        second: None,
        root_start: 0..0,
        root_name: String::new(),
    };
    let mut seen_root = false;
    // Start of the first signature, and whether an element followed it in the root.
    let mut first_start: Option<usize> = None;
    let mut element_after_first = false;
    let mut steps = 0u32;
    let malformed = |reader: &quick_xml::Reader<Reader<'_>>, why: String| -> Stop {
        Refusal::new(
            "xml.malformed",
            format!("the document is not well-formed XML: {why}"),
            format!("byte {}", reader.error_position()),
        )
        .into()
    };
    loop {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(CANCEL_EVERY) {
            cancel.check()?;
        }
        buf.clear();
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                let position = reader.error_position();
                return Err(read_error(e, |why| {
                    Refusal::new(
                        "xml.malformed",
                        format!("the document is not well-formed XML: {why}"),
                        format!("byte {position}"),
                    )
                    .into()
                }));
            }
        };
        let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let (event, empty) = match event {
            Event::Empty(e) => (Event::Start(e), true),
            other => (other, false),
        };
        match event {
            Event::Start(e) => {
                let depth = open.len() + 1;
                if depth == 1 {
                    seen_root = true;
                    envelope.root_start = start..end;
                    envelope.root_name = utf8(e.name().as_ref()).to_owned();
                }
                if depth == 2 && first_start.is_some() && skipping == 0 {
                    element_after_first = true;
                }
                let scope_len = scope.len();
                for attribute in e.attributes() {
                    let a = attribute.map_err(|e| malformed(&reader, e.to_string()))?;
                    let key = utf8(a.key.as_ref());
                    let prefix = if key == "xmlns" {
                        ""
                    } else if let Some(p) = key.strip_prefix("xmlns:") {
                        p
                    } else {
                        continue;
                    };
                    let value = attribute_value(&a.value).map_err(|e| malformed(&reader, e))?;
                    scope.push((prefix.to_owned(), value));
                }
                let qname = e.name();
                let (prefix, local) = split(utf8(qname.as_ref()));
                if !prefix.is_empty() && prefix != "xml" && lookup(&scope, prefix).is_none() {
                    return Err(malformed(&reader, format!("unbound prefix {prefix}")));
                }
                let is_signature = local == "Signature" && lookup(&scope, prefix) == Some(DSIG);
                let mut first_signature = false;
                if is_signature {
                    envelope.signatures += 1;
                    match envelope.signatures {
                        1 => {
                            first_signature = true;
                            first_start = Some(start);
                            element_after_first = false;
                            envelope.first = Some((start..end, depth == 2));
                        }
                        2 => envelope.second = Some(start),
                        _ => {}
                    }
                }
                let rendered_len = rendered.len();
                if skipping == 0 && !first_signature {
                    write_start(
                        &mut out,
                        &e,
                        method,
                        &scope,
                        scope_len,
                        &mut rendered,
                        &reader,
                    )?;
                } else {
                    skipping += 1;
                }
                if empty {
                    if skipping == 0 {
                        out.raw("</");
                        out.raw(utf8(e.name().as_ref()));
                        out.raw(">");
                    } else {
                        skipping -= 1;
                        if first_signature && let Some((r, _)) = envelope.first.as_mut() {
                            r.end = end;
                        }
                    }
                    scope.truncate(scope_len);
                    rendered.truncate(rendered_len);
                } else {
                    open.push(Open {
                        scope_len,
                        rendered_len,
                        is_first_signature: first_signature,
                    });
                }
            }
            Event::End(e) => {
                let Some(o) = open.pop() else {
                    return Err(malformed(&reader, "unexpected end tag".into()));
                };
                if skipping > 0 {
                    skipping -= 1;
                    if o.is_first_signature
                        && let Some((r, _)) = envelope.first.as_mut()
                    {
                        r.end = end;
                    }
                } else {
                    out.raw("</");
                    out.raw(utf8(e.name().as_ref()));
                    out.raw(">");
                }
                scope.truncate(o.scope_len);
                rendered.truncate(o.rendered_len);
            }
            Event::Text(t) => {
                if skipping == 0 && !open.is_empty() {
                    let content = t
                        .xml10_content()
                        .map_err(|e| malformed(&reader, e.to_string()))?;
                    out.text(&content);
                }
            }
            Event::CData(t) => {
                if skipping == 0 && !open.is_empty() {
                    let content = t
                        .xml10_content()
                        .map_err(|e| malformed(&reader, e.to_string()))?;
                    out.text(&content);
                }
            }
            Event::GeneralRef(r) => {
                if skipping == 0 && !open.is_empty() {
                    let name = utf8(r.as_ref());
                    if let Some(c) = r
                        .resolve_char_ref()
                        .map_err(|e| malformed(&reader, e.to_string()))?
                    {
                        out.text(c.encode_utf8(&mut [0; 4]));
                    } else if let Some(s) = resolve_predefined_entity(name) {
                        out.text(s);
                    } else {
                        return Err(malformed(&reader, format!("undeclared entity &{name};")));
                    }
                }
            }
            Event::PI(pi) => {
                if skipping == 0 {
                    let target = utf8(pi.target());
                    let data = utf8(pi.content()).trim_start_matches([' ', '\t', '\r', '\n']);
                    if seen_root && open.is_empty() {
                        out.raw("\n");
                    }
                    out.raw("<?");
                    out.raw(target);
                    if !data.is_empty() {
                        out.raw(" ");
                        out.raw(&normalize_eol(data));
                    }
                    out.raw("?>");
                    if !seen_root {
                        out.raw("\n");
                    }
                }
            }
            Event::DocType(_) => {
                return Err(Refusal::new(
                    "xml.dtd-forbidden",
                    "the document has a DOCTYPE declaration; DTDs and entities are not accepted",
                    "/",
                )
                .into());
            }
            Event::Comment(_) | Event::Decl(_) | Event::Empty(_) => {}
            Event::Eof => break,
        }
    }
    if let (Some((_, last)), true) = (envelope.first.as_mut(), element_after_first) {
        *last = false;
    }
    envelope.digest = out.finish();
    Ok(envelope)
}

fn write_start(
    out: &mut Out,
    e: &BytesStart<'_>,
    method: &Method,
    scope: &[(String, String)],
    own_from: usize,
    rendered: &mut Vec<(String, String)>,
    reader: &quick_xml::Reader<Reader<'_>>,
) -> Result<(), Stop> {
    let qname = e.name();
    let name = utf8(qname.as_ref());
    let malformed = |why: String| -> Stop {
        Refusal::new(
            "xml.malformed",
            format!("the document is not well-formed XML: {why}"),
            format!("byte {}", reader.error_position()),
        )
        .into()
    };
    // Ordinary attributes: (namespace uri, local name, qname, value).
    let mut attributes: Vec<(&str, &str, String, String)> = Vec::new();
    let mut used: Vec<&str> = vec![split(name).0];
    for attribute in e.attributes() {
        let a = attribute.map_err(|e| malformed(e.to_string()))?;
        let key = utf8(a.key.into_inner());
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let (prefix, local) = split(key);
        let uri = match prefix {
            "" => "",
            "xml" => XML_NS,
            p => {
                used.push(p);
                lookup(scope, p).ok_or_else(|| malformed(format!("unbound prefix {p}")))?
            }
        };
        let value = attribute_value(&a.value).map_err(malformed)?;
        attributes.push((uri, local, key.to_owned(), value));
    }
    // Namespace declarations to render: (prefix, uri).
    let mut declarations: Vec<(String, String)> = Vec::new();
    match method {
        Method::Inclusive => {
            for (prefix, uri) in &scope[own_from..] {
                let parent = lookup(&scope[..own_from], prefix).unwrap_or("");
                if parent != uri && !declarations.iter().any(|(p, _)| p == prefix) {
                    declarations.push((prefix.clone(), uri.clone()));
                }
            }
            // A later declaration of the same prefix on one element is malformed;
            // the parser proper refuses it.
        }
        Method::Exclusive { prefixes } => {
            let mut wanted: Vec<&str> = used.clone();
            for p in prefixes {
                let p = if p == "#default" { "" } else { p.as_str() };
                if p.is_empty() || lookup(scope, p).is_some() {
                    wanted.push(p);
                }
            }
            for prefix in wanted {
                if prefix == "xml" {
                    continue;
                }
                let bound = lookup(scope, prefix);
                if !prefix.is_empty() && bound.is_none() {
                    return Err(malformed(format!("unbound prefix {prefix}")));
                }
                let uri = bound.unwrap_or("");
                // The default namespace counts as rendered empty at the top; a
                // prefix must have been rendered with this very value.
                let needed = match lookup(rendered, prefix) {
                    None => !prefix.is_empty() || !uri.is_empty(),
                    Some(before) => before != uri,
                };
                if needed && !declarations.iter().any(|(p, _)| p == prefix) {
                    declarations.push((prefix.to_owned(), uri.to_owned()));
                }
            }
            rendered.extend(declarations.iter().cloned());
        }
    }
    declarations.sort();
    attributes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    out.raw("<");
    out.raw(name);
    for (prefix, uri) in &declarations {
        if prefix.is_empty() {
            out.raw(" xmlns=\"");
        } else {
            out.raw(" xmlns:");
            out.raw(prefix);
            out.raw("=\"");
        }
        out.attribute(uri);
        out.raw("\"");
    }
    for (_, _, qname, value) in &attributes {
        out.raw(" ");
        out.raw(qname);
        out.raw("=\"");
        out.attribute(value);
        out.raw("\"");
    }
    out.raw(">");
    Ok(())
}

/// An attribute's value with its references expanded. Whitespace and line ends are
/// kept as written: that is what the parsed tree holds, and what the tree path's
/// canonicalisation (bergshamra over uppsala) renders.
fn attribute_value(raw: &[u8]) -> Result<String, String> {
    let raw = utf8(raw);
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| format!("unterminated reference in attribute value {raw:?}"))?;
        let name = &after[..end];
        let c = if let Some(hex) = name.strip_prefix("#x") {
            u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
        } else if let Some(dec) = name.strip_prefix('#') {
            dec.parse().ok().and_then(char::from_u32)
        } else {
            None
        };
        match (c, resolve_predefined_entity(name)) {
            (Some(c), _) => out.push(c),
            (None, Some(s)) => out.push_str(s),
            (None, None) => return Err(format!("undeclared entity &{name};")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The innermost binding of `prefix` ("" for the default namespace).
fn lookup<'s>(scope: &'s [(String, String)], prefix: &str) -> Option<&'s str> {
    // Compared by hand: the scope is searched several times per element, and a
    // `memcmp` call per comparison was half of the whole pass.
    let prefix = prefix.as_bytes();
    scope
        .iter()
        .rev()
        .find(|(p, _)| {
            let p = p.as_bytes();
            p.len() == prefix.len() && p.iter().zip(prefix).all(|(a, b)| a == b)
        })
        .map(|(_, u)| u.as_str())
}

fn split(qname: &str) -> (&str, &str) {
    qname.split_once(':').unwrap_or(("", qname))
}

/// Input is checked UTF-8 before this runs, and quick-xml splits only at ASCII.
fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("\u{fffd}")
}

fn normalize_eol(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        s.into()
    }
}

/// The canonical bytes, hashed as they are written (through a small buffer).
#[derive(Default)]
struct Out {
    buffer: Vec<u8>,
    hasher: Sha256,
    /// Everything written, for the tests' comparisons.
    #[cfg(test)]
    all: Vec<u8>,
}

impl Out {
    fn raw(&mut self, s: &str) {
        #[cfg(test)]
        self.all.extend_from_slice(s.as_bytes());
        self.buffer.extend_from_slice(s.as_bytes());
        if self.buffer.len() >= 64 * 1024 {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
    }

    /// Text content, escaped as C14N escapes text.
    fn text(&mut self, s: &str) {
        self.escaped(s, |b| match b {
            b'&' => Some("&amp;"),
            b'<' => Some("&lt;"),
            b'>' => Some("&gt;"),
            b'\r' => Some("&#xD;"),
            _ => None,
        });
    }

    /// An attribute value, escaped as C14N escapes attribute values.
    fn attribute(&mut self, s: &str) {
        self.escaped(s, |b| match b {
            b'&' => Some("&amp;"),
            b'<' => Some("&lt;"),
            b'"' => Some("&quot;"),
            b'\t' => Some("&#x9;"),
            b'\n' => Some("&#xA;"),
            b'\r' => Some("&#xD;"),
            _ => None,
        });
    }

    fn escaped(&mut self, s: &str, escape: impl Fn(u8) -> Option<&'static str>) {
        let mut from = 0;
        for (i, b) in s.bytes().enumerate() {
            if let Some(escaped) = escape(b) {
                self.raw(&s[from..i]);
                self.raw(escaped);
                from = i + 1;
            }
        }
        self.raw(&s[from..]);
    }

    fn finish(mut self) -> [u8; 32] {
        #[cfg(test)]
        tests::LAST.with(|l| l.replace(std::mem::take(&mut self.all)));
        self.hasher.update(&self.buffer);
        self.hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use bergshamra::core::algorithm;

    use super::*;
    use crate::intake::signature::sign_enveloped_with;

    thread_local! {
        /// The canonical bytes of the last scan on this thread.
        pub(super) static LAST: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Documents with every feature the canonical form treats specially.
    const SHAPES: [&str; 9] = [
        "<r xmlns=\"urn:ivan:filing:1\" employer=\"1\"><Employee><PersonalId>1</PersonalId></Employee></r>",
        // Declaration, PIs and comments around and inside, whitespace outside.
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<?pi  one two ?>\n<!-- c -->\n<r><?inner  x?><!-- no --><a/></r>\n<!-- after -->\n<?tail?>\n",
        // Namespaces: unused, redeclared, superfluous, undeclared default, prefixed attributes.
        "<p:r xmlns:p=\"urn:p\" xmlns=\"urn:d\" xmlns:u=\"urn:unused\" xmlns:q=\"urn:q\"><e q:x=\"1\" b=\"2\" a=\"3\" p:a=\"4\"><f xmlns=\"\"><g xmlns=\"urn:d\"/></f><p:h xmlns:p=\"urn:p\"/><p:i xmlns:p=\"urn:other\"/></e><q:j xmlns:u=\"urn:unused\" u:k=\"v\"/></p:r>",
        // Attribute values: whitespace, references, quotes, line ends.
        "<r a=\"x\ty\nz\r\nw\" b=\"&#9;&#10;&#13;&#x20AC;\" c='say \"hi\" &amp; &lt;&gt;' d=\"'\" xml:lang=\"sk\"><e/></r>",
        // Text: references, CDATA, line ends, non-ASCII.
        "<r>a &amp; b &lt; c &gt; d ]]&gt; &#13; &#x20AC; &quot;&apos;\r\nline\rend <![CDATA[<raw> & ]]> ř</r>",
        // Empty elements and nesting.
        "<r><a/><b></b><c><d/></c>  \n  </r>",
        // Default namespace on a deeper element only.
        "<r><x:a xmlns:x=\"urn:x\"><b xmlns=\"urn:b\"><c/></b></x:a></r>",
        // Prefix declared on the root, used only deep down.
        "<r xmlns:deep=\"urn:deep\"><a><b><deep:c deep:at=\"1\"/></b></a></r>",
        // The ds prefix declared on the root (the signature then uses it).
        "<r xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" xmlns:y=\"urn:y\"><y:a/></r>",
    ];

    fn identity() -> (Vec<u8>, Vec<u8>) {
        let ck = rcgen::generate_simple_self_signed(vec!["c14n".to_owned()]).unwrap();
        (
            ck.signing_key.serialize_pem().into_bytes(),
            ck.cert.der().to_vec(),
        )
    }

    fn digest_value(signed: &str) -> [u8; 32] {
        let start = signed.find("DigestValue>").unwrap() + "DigestValue>".len();
        let len = signed[start..].find('<').unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(signed[start..start + len].trim())
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn the_streamed_digest_is_bergshamras_for_every_method_and_shape() {
        let (key, cert) = identity();
        let methods = [
            (None, Method::Inclusive),
            (Some(algorithm::C14N), Method::Inclusive),
            (Some(algorithm::C14N11), Method::Inclusive),
            (
                Some(algorithm::EXC_C14N),
                Method::Exclusive {
                    prefixes: Vec::new(),
                },
            ),
        ];
        for shape in SHAPES {
            for (transform, method) in &methods {
                let signed = sign_enveloped_with(shape, &key, &cert, *transform)
                    .unwrap_or_else(|e| panic!("{shape}: {e}"));
                let envelope = scan(&signed, method, &Cancel::default()).unwrap();
                if envelope.digest != digest_value(&signed) {
                    let doc = uppsala::parse(&signed).unwrap();
                    let sig = doc
                        .descendants(doc.root())
                        .into_iter()
                        .find(|n| {
                            doc.element(*n)
                                .is_some_and(|e| e.name.local_name == "Signature")
                        })
                        .unwrap();
                    let set = bergshamra::xml::NodeSet::all_without_comments(&doc)
                        .subtract(&bergshamra::xml::NodeSet::tree_with_comments(sig, &doc));
                    let mode =
                        bergshamra::c14n::C14nMode::from_uri(transform.unwrap_or(algorithm::C14N))
                            .unwrap();
                    let theirs =
                        bergshamra::c14n::canonicalize_doc(&doc, mode, Some(&set), &[] as &[&str])
                            .unwrap();
                    panic!(
                        "{transform:?} on {signed}\nours:   {:?}\ntheirs: {:?}",
                        String::from_utf8_lossy(&LAST.with(|l| l.take())),
                        String::from_utf8_lossy(&theirs)
                    );
                }
                assert_eq!(envelope.signatures, 1);
                let (range, last) = envelope.first.clone().unwrap();
                assert!(last, "{signed}");
                assert!(signed[range.clone()].starts_with("<ds:Signature"));
                assert!(signed[range].ends_with("</ds:Signature>"));
                // And the document verifies on the tree path.
                let doc =
                    crate::xml::build(signed.as_bytes(), &crate::xml::Limits::default()).unwrap();
                crate::intake::signature::verify(&doc, &cert).unwrap();
            }
        }
    }

    #[test]
    fn signatures_are_counted_and_placed() {
        let ds = "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"";
        let exc = Method::Exclusive {
            prefixes: Vec::new(),
        };
        let scan = |x: &str| scan(x, &exc, &Cancel::default()).unwrap();
        let none = scan("<r><a/></r>");
        assert_eq!((none.signatures, none.first), (0, None));
        let two = scan(&format!(
            "<r {ds}><a><ds:Signature/></a><ds:Signature>x</ds:Signature></r>"
        ));
        assert_eq!(two.signatures, 2);
        assert!(
            !two.first.unwrap().1,
            "the first is not a child of the root"
        );
        assert!(two.second.is_some());
        let before = scan(&format!("<r {ds}><ds:Signature/><a/></r>"));
        assert!(!before.first.unwrap().1, "an element follows it");
        // Another namespace's Signature is not one.
        let other = scan("<r xmlns:x=\"urn:x\"><x:Signature/></r>");
        assert_eq!(other.signatures, 0);
    }

    #[test]
    fn what_the_tree_path_refuses_is_refused_here_too() {
        let exc = Method::Inclusive;
        for bad in [
            "<!DOCTYPE r><r/>",
            "<r>&undeclared;</r>",
            "<r><a></r>",
            "<p:r/>",
        ] {
            assert!(
                scan(bad, &exc, &Cancel::default()).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
