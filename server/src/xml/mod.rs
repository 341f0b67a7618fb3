//! Parsing untrusted XML, safely: UTF-8 only, no DTD (so no entity expansion, no
//! external entities), and explicit limits on its shape, checked by a streaming
//! pre-scan ([`prescan`], linear in the input, cancellable) **before** the document
//! is built in memory: nesting depth, attributes and namespace declarations per
//! element and per document, and nodes per document. The parser proper compares each
//! attribute with all earlier ones of its element (quadratic: an element of 300,000
//! attributes cost minutes of CPU), and a document of tiny elements takes ~60 times
//! its size in memory; neither is reached by a document the pre-scan refused. The
//! body size limit is enforced before this is called. Everything refused here is
//! refused with one [`Refusal`] naming the line and column.
//!
//! Below intake and the document profiles, which both read documents with it: the
//! streamed [`source`] of a staged body and the [`cancel`] token of a request that
//! went away live here too.

use quick_xml::events::Event;
use serde::Serialize;
use uppsala::{Document, XmlError};

use self::cancel::{Cancel, Cancelled};
use self::source::Source;

pub mod cancel;
pub mod source;

/// `intake.streaming_threshold_bytes` unless configured: 1 MiB. A document larger
/// than this is read chunk by chunk rather than as one tree (in intake's checks and
/// wherever a stored filing is read again).
pub const DEFAULT_STREAMING_THRESHOLD_BYTES: usize = 1024 * 1024;

/// Why a filing is refused at one step of intake: a stable dotted `code`, one
/// clear sentence, and where in the document (an element path or a line/column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub location: String,
}

impl Refusal {
    pub fn new(
        code: &'static str,
        message: impl Into<String>,
        location: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            location: location.into(),
        }
    }
}

/// Limits on what the parser accepts (from `[intake]`). The defaults are far above
/// any real filing of the reference profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest element nesting accepted (the document element is depth 1).
    pub max_depth: u32,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes_per_element: u32,
    /// Most namespace declarations (`xmlns`, `xmlns:p`) on one element.
    pub max_namespace_declarations_per_element: u32,
    /// Most attributes in the whole document.
    pub max_attributes: u64,
    /// Most namespace declarations in the whole document.
    pub max_namespace_declarations: u64,
    /// Most nodes (elements, attributes, text and other nodes) in the whole document:
    /// what bounds the memory of the parsed document.
    pub max_nodes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_attributes_per_element: 256,
            max_namespace_declarations_per_element: 32,
            max_attributes: 2_000_000,
            max_namespace_declarations: 4096,
            max_nodes: 6_000_000,
        }
    }
}

/// What the pre-scan counted: the size of the document once parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub elements: u64,
    pub attributes: u64,
    /// Text, CDATA, comments, processing instructions and references.
    pub others: u64,
    /// Byte range of the document element's start tag.
    pub root_start: (usize, usize),
    /// Byte range of the document element's last child element (where the
    /// signature must be).
    pub last_child: Option<(usize, usize)>,
}

impl Shape {
    pub fn nodes(&self) -> u64 {
        self.elements + self.attributes + self.others
    }

    /// Bytes the analysis of a document of `len` bytes and this shape may take at its
    /// peak, by the measured cost of the parsed tree, the canonical form the
    /// signature check makes, and the copies the checks hold (see BENCHMARKS.md,
    /// "analysis memory").
    pub fn analysis_bytes(&self, len: usize) -> u64 {
        let len = len as u64;
        len.saturating_mul(BYTES_FACTOR)
            .saturating_add(self.elements.saturating_mul(ELEMENT_BYTES))
            .saturating_add(self.attributes.saturating_mul(ATTRIBUTE_BYTES))
            .saturating_add(self.others.saturating_mul(OTHER_NODE_BYTES))
    }
}

impl Shape {
    /// Bytes the streamed analysis of a document of this shape may take at its
    /// peak: a chunk's tree and the signature's (a few MiB, bounded by the chunk
    /// size whatever the document's), and per element at most the share of the
    /// personal ids and item positions it collects (see BENCHMARKS.md, "One large
    /// document's analysis, step by step": 76.5 MB peak for a 50 MB report, the
    /// document included).
    pub fn streamed_bytes(&self) -> u64 {
        STREAMED_FIXED_BYTES.saturating_add(self.elements.saturating_mul(STREAMED_ELEMENT_BYTES))
    }
}

const STREAMED_FIXED_BYTES: u64 = 16 * 1024 * 1024;
const STREAMED_ELEMENT_BYTES: u64 = 16;

/// Measured cost model of one analysis (parse, signature verification, checks),
/// per input byte and per node; see `analysis_bytes`.
const BYTES_FACTOR: u64 = 4;
const ELEMENT_BYTES: u64 = 256;
const ATTRIBUTE_BYTES: u64 = 128;
const OTHER_NODE_BYTES: u64 = 128;

/// How many pre-scan steps run between two looks at the cancel flag.
const CANCEL_EVERY: u32 = 4096;

/// Why parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Refused(Refusal),
    Cancelled,
    /// Reading the staged document failed: the service's failure, not the
    /// document's.
    Failed(String),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Failed(format!("reading the staged document failed: {e}"))
    }
}

/// The [`Stop`] for a reader's error that is a failed read of the staged file (the
/// service's failure); `None` for the document's own errors.
pub(crate) fn failed_read(e: &quick_xml::Error) -> Option<Stop> {
    match e {
        quick_xml::Error::Io(io) => Some(std::io::Error::new(io.kind(), io.to_string()).into()),
        _ => None,
    }
}

/// A reader's error as a [`Stop`]: reading the staged file failed (the service's), or
/// else the document is not well-formed (`malformed`, given why).
pub(crate) fn read_error(e: quick_xml::Error, malformed: impl FnOnce(String) -> Stop) -> Stop {
    failed_read(&e).unwrap_or_else(|| malformed(e.to_string()))
}

/// Where byte `at` of `src` is, as a refusal names it.
pub(crate) fn location(src: Source<'_>, at: u64) -> Result<String, Stop> {
    let at = usize::try_from(at).unwrap_or(usize::MAX);
    let (line, col) = src.line_col(at)?;
    Ok(format!("line {line}, column {col}"))
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Self {
        Stop::Refused(r)
    }
}

impl From<Cancelled> for Stop {
    fn from(_: Cancelled) -> Self {
        Stop::Cancelled
    }
}

/// The checks on bytes before any parsing: not empty, UTF-8, no other encoding
/// declared. Returns the text.
pub fn text(bytes: &[u8]) -> Result<&str, Refusal> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(empty());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| not_utf8(e.valid_up_to(), line_col(&bytes[..e.valid_up_to()])))?;
    if let Some(refusal) = other_encoding(text) {
        return Err(refusal);
    }
    Ok(text)
}

fn empty() -> Refusal {
    Refusal::new("xml.empty", "the body is empty", "/")
}

/// The refusal of bytes that stop being UTF-8 at byte `at` (at that line and column).
fn not_utf8(at: usize, (line, col): (usize, usize)) -> Refusal {
    Refusal::new(
        "xml.encoding",
        format!("the document is not valid UTF-8 (at byte {at}); documents must be UTF-8"),
        format!("line {line}, column {col}"),
    )
}

/// The refusal of a document whose XML declaration (at the start of `head`) names an
/// encoding other than UTF-8.
fn other_encoding(head: &str) -> Option<Refusal> {
    let enc = declared_encoding(head).filter(|enc| !is_utf8(enc))?;
    Some(Refusal::new(
        "xml.encoding",
        format!("the XML declaration names encoding {enc:?}; documents must be UTF-8"),
        "line 1",
    ))
}

/// [`text`] for a document in a [`Source`]: the same checks and refusals, streamed
/// (a staged document is never read into memory whole).
pub fn check_text(src: Source<'_>) -> Result<(), Stop> {
    use std::io::Read;
    if let Source::Memory(bytes) = src {
        return text(bytes).map(|_| ()).map_err(Stop::from);
    }
    let mut reader = src.reader();
    // An incomplete UTF-8 sequence at a block's end is kept for the next one.
    let mut block = vec![0u8; source::READ_BUFFER_BYTES + 4];
    let (mut kept, mut offset, mut blank, mut first) = (0usize, 0usize, true, true);
    loop {
        let n = reader.read(&mut block[kept..])?;
        let filled = kept + n;
        let (valid, bad) = match std::str::from_utf8(&block[..filled]) {
            Ok(_) => (filled, None),
            Err(e) if e.error_len().is_none() && n > 0 => (e.valid_up_to(), None),
            Err(e) => (e.valid_up_to(), Some(offset + e.valid_up_to())),
        };
        blank = blank && block[..valid].iter().all(u8::is_ascii_whitespace);
        if first && valid > 0 {
            first = false;
            // The declaration is at the start of the first block.
            let head = std::str::from_utf8(&block[..valid]).unwrap_or_default();
            if let Some(refusal) = other_encoding(head) {
                return Err(refusal.into());
            }
        }
        if let Some(at) = bad {
            if blank {
                break;
            }
            return Err(not_utf8(at, src.line_col(at)?).into());
        }
        if n == 0 {
            break;
        }
        block.copy_within(valid..filled, 0);
        kept = filled - valid;
        offset += valid;
    }
    if blank {
        return Err(empty().into());
    }
    Ok(())
}

/// Streams through a document (checked UTF-8, [`text`] or [`check_text`]) once,
/// counting what the parsed document would hold, and refuses it as soon as a limit is
/// passed. Linear in the input; looks at `cancel` every few thousand steps. A
/// document this finds malformed is refused here.
pub fn prescan<'a>(
    src: impl Into<Source<'a>>,
    limits: &Limits,
    cancel: &Cancel,
) -> Result<Shape, Stop> {
    let src = src.into();
    let mut reader = quick_xml::Reader::from_reader(src.reader());
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut shape = Shape::default();
    let mut depth: u32 = 0;
    let mut declarations: u64 = 0;
    let mut steps: u32 = 0;
    let at = |pos: u64| location(src, pos);
    let mut tick = || {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(CANCEL_EVERY) {
            cancel.check()
        } else {
            Ok(())
        }
    };
    // One limit passed: refuse at `start`.
    let passed = |code: &'static str, message: String, start: u64| -> Stop {
        match at(start) {
            Ok(location) => Refusal::new(code, message, location).into(),
            Err(stop) => stop,
        }
    };
    let offset = |pos: u64| usize::try_from(pos).unwrap_or(usize::MAX);
    let mut child_start = 0usize;
    loop {
        tick()?;
        buf.clear();
        let start = reader.buffer_position();
        let element = match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                depth += 1;
                match depth {
                    1 => shape.root_start = (offset(start), offset(reader.buffer_position())),
                    2 => child_start = offset(start),
                    _ => {}
                }
                Some((e, depth))
            }
            Ok(Event::Empty(e)) => {
                let here = (offset(start), offset(reader.buffer_position()));
                match depth {
                    0 => shape.root_start = here,
                    1 => shape.last_child = Some(here),
                    _ => {}
                }
                Some((e, depth + 1))
            }
            Ok(Event::End(_)) => {
                if depth == 2 {
                    shape.last_child = Some((child_start, offset(reader.buffer_position())));
                }
                depth = depth.saturating_sub(1);
                None
            }
            Ok(Event::Eof) => break,
            Ok(_) => {
                shape.others += 1;
                None
            }
            Err(e) => {
                let position = reader.error_position();
                return Err(read_error(e, |why| {
                    let message = format!("the document is not well-formed XML: {why}");
                    passed("xml.malformed", message, position)
                }));
            }
        };
        if let Some((e, depth)) = element {
            if depth > limits.max_depth {
                return Err(too_deep(limits, at(start)?).into());
            }
            shape.elements += 1;
            let (mut attributes, mut here) = (0u32, 0u32);
            for attribute in e.attributes().with_checks(false) {
                tick()?;
                attributes += 1;
                if attributes > limits.max_attributes_per_element {
                    let max = limits.max_attributes_per_element;
                    let message = format!("an element has more than {max} attributes");
                    return Err(passed("xml.too-many-attributes", message, start));
                }
                let Ok(attribute) = attribute else {
                    // Malformed: the parser proper says where and why (the count so
                    // far is within the limits).
                    break;
                };
                let key = attribute.key.as_ref();
                if key == b"xmlns" || key.starts_with(b"xmlns:") {
                    here += 1;
                    declarations += 1;
                    if here > limits.max_namespace_declarations_per_element {
                        let max = limits.max_namespace_declarations_per_element;
                        let message = format!("an element declares more than {max} namespaces");
                        return Err(passed("xml.too-many-namespaces", message, start));
                    }
                    if declarations > limits.max_namespace_declarations {
                        let max = limits.max_namespace_declarations;
                        let message = format!("the document declares more than {max} namespaces");
                        return Err(passed("xml.too-many-namespaces", message, start));
                    }
                }
            }
            shape.attributes += u64::from(attributes);
            if shape.attributes > limits.max_attributes {
                let max = limits.max_attributes;
                let message = format!("the document has more than {max} attributes");
                return Err(passed("xml.too-many-attributes", message, start));
            }
        }
        if shape.nodes() > limits.max_nodes {
            let max = limits.max_nodes;
            let message =
                format!("the document has more than {max} nodes (elements, attributes, texts)");
            return Err(passed("xml.too-many-nodes", message, start));
        }
    }
    Ok(shape)
}

fn too_deep(limits: &Limits, location: String) -> Refusal {
    Refusal::new(
        "xml.too-deep",
        format!(
            "elements are nested deeper than {} levels",
            limits.max_depth
        ),
        location,
    )
}

/// Parses `bytes` as one XML document, or says why it is not acceptable: the byte
/// checks, the [`prescan`] within `limits`, then the parser proper.
pub fn parse<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    cancel: &Cancel,
) -> Result<(Document<'a>, Shape), Stop> {
    let shape = prescan(text(bytes)?, limits, cancel)?;
    cancel.check()?;
    Ok((build(bytes, limits)?, shape))
}

/// The parser proper, for bytes [`prescan`] has passed (the byte checks run again;
/// they are cheap).
pub fn build<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Document<'a>, Refusal> {
    uppsala::Parser::new()
        .with_forbid_dtd(true)
        .with_forbid_entities(true)
        .with_max_depth(limits.max_depth)
        .parse(text(bytes)?)
        .map_err(|e| refusal_for(&e, limits))
}

/// What the parser proper says is wrong, and the line and column (0 where it names
/// none).
pub(crate) fn described(e: &XmlError) -> (&str, usize, usize) {
    match e {
        XmlError::Parse(p) => (p.message.as_str(), p.line, p.column),
        XmlError::WellFormedness(w) => (w.message.as_str(), w.line, w.column),
        XmlError::Namespace(n) => (n.message.as_str(), n.line, n.column),
        XmlError::Validation(v) => (
            v.message.as_str(),
            v.line.unwrap_or(0),
            v.column.unwrap_or(0),
        ),
        XmlError::UnexpectedEof => ("the document ends unexpectedly", 0, 0),
        XmlError::XPath(x) => (x.message.as_str(), 0, 0),
    }
}

/// The refusal for what the parser proper found wrong.
pub(crate) fn refusal_for(e: &XmlError, limits: &Limits) -> Refusal {
    let (message, line, column) = described(e);
    let location = if line == 0 {
        "/".to_owned()
    } else {
        format!("line {line}, column {column}")
    };
    let (code, message) = if message.contains("DOCTYPE") {
        (
            "xml.dtd-forbidden",
            "the document has a DOCTYPE declaration; DTDs and entities are not accepted".to_owned(),
        )
    } else if message.contains("maximum depth") {
        return too_deep(limits, location);
    } else {
        (
            "xml.malformed",
            format!("the document is not well-formed XML: {message}"),
        )
    };
    Refusal::new(code, message, location)
}

/// The qualified name of the element whose start tag is `tag` (`<p:name a="…">`).
pub(crate) fn tag_name(tag: &str) -> &str {
    let name = tag.trim_start_matches('<');
    let end = name
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(name.len());
    &name[..end]
}

/// Whether an encoding name is UTF-8's.
pub(crate) fn is_utf8(encoding: &str) -> bool {
    encoding.eq_ignore_ascii_case("utf-8") || encoding.eq_ignore_ascii_case("utf8")
}

/// The element whose start tag is `tag`, holding `inner`, closed (`tag` itself when
/// it is already an empty-element tag): a small document cut out of a large one.
pub(crate) fn enclosed(tag: &str, inner: &str) -> String {
    if tag.ends_with("/>") {
        tag.to_owned()
    } else {
        format!("{tag}{inner}</{}>", tag_name(tag))
    }
}

/// The `encoding` pseudo-attribute of the XML declaration, if there is one.
pub(crate) fn declared_encoding(text: &str) -> Option<&str> {
    let decl = text.strip_prefix('\u{feff}').unwrap_or(text);
    let decl = decl.strip_prefix("<?xml")?;
    let decl = &decl[..decl.find("?>")?];
    let rest = &decl[decl.find("encoding")? + "encoding".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    Some(&rest[..rest.find(quote)?])
}

/// The 1-based line and (byte) column just after `prefix`.
pub(crate) fn line_col(prefix: &[u8]) -> (usize, usize) {
    let line = prefix.iter().filter(|b| **b == b'\n').count() + 1;
    let col = prefix.len()
        - prefix
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_depth: 8,
            ..Limits::default()
        }
    }

    fn code_with(bytes: &[u8], limits: &Limits) -> &'static str {
        match parse(bytes, limits, &Cancel::default()) {
            Ok(_) => "ok",
            Err(Stop::Refused(r)) => r.code,
            Err(Stop::Cancelled) => "cancelled",
            Err(Stop::Failed(_)) => "failed",
        }
    }

    fn code(bytes: &[u8]) -> &'static str {
        code_with(bytes, &limits())
    }

    fn refusal(bytes: &[u8]) -> Refusal {
        match parse(bytes, &Limits::default(), &Cancel::default()) {
            Err(Stop::Refused(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_and_broken_input_is_refused_with_its_own_code() {
        let cases: &[(&[u8], &str)] = &[
            (b"<a>fine</a>", "ok"),
            ("\u{feff}<a/>".as_bytes(), "ok"),
            (b"<?xml version='1.0' encoding='UTF-8'?><a/>", "ok"),
            (b"", "xml.empty"),
            (b" \n\t", "xml.empty"),
            (b"<a>\xff</a>", "xml.encoding"),
            (
                b"<?xml version=\"1.0\" encoding=\"windows-1250\"?><a/>",
                "xml.encoding",
            ),
            // XXE: an external entity.
            (
                b"<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>",
                "xml.dtd-forbidden",
            ),
            // Billion laughs.
            (
                b"<!DOCTYPE a [<!ENTITY l \"lol\"><!ENTITY l2 \"&l;&l;&l;&l;\">]><a>&l2;</a>",
                "xml.dtd-forbidden",
            ),
            // External DTD.
            (
                b"<!DOCTYPE a SYSTEM \"http://127.0.0.1:1/x.dtd\"><a/>",
                "xml.dtd-forbidden",
            ),
            (b"<a>&undeclared;</a>", "xml.malformed"),
            (b"<a><b></a>", "xml.malformed"),
            (b"<a/><b/>", "xml.malformed"),
            (b"not xml at all", "xml.malformed"),
            (
                b"<a><b><c><d><e><f><g><h><i/></h></g></f></e></d></c></b></a>",
                "xml.too-deep",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(code(input), *want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn the_byte_checks_of_a_staged_document_are_those_of_one_in_memory() {
        use crate::xml::source::file_of;
        let block = crate::xml::source::READ_BUFFER_BYTES;
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b" \n\t".to_vec(),
            b"<a/>".to_vec(),
            b"<a>\xff</a>".to_vec(),
            b"<a>\nok\xc3</a>".to_vec(),
            b"<a>ends mid-character\xc3".to_vec(),
            b"<?xml version=\"1.0\" encoding=\"windows-1250\"?><a/>".to_vec(),
            b"<?xml version='1.0' encoding='UTF-8'?><a/>".to_vec(),
            "\u{feff}<a/>".as_bytes().to_vec(),
        ];
        // Multi-byte characters and bad bytes on and around a block's edge.
        for shift in 0..6 {
            let mut doc = b"<a>".to_vec();
            doc.extend(std::iter::repeat_n(b'x', block - 3 - 2 + shift));
            doc.extend("č€😀\n".repeat(4).as_bytes());
            doc.extend(b"</a>");
            cases.push(doc.clone());
            let mut bad = doc.clone();
            bad[block - 1 + shift] = 0xff;
            cases.push(bad);
            let mut cut = doc;
            cut.truncate(block + shift);
            cases.push(cut);
        }
        // Blank for longer than a block, then not.
        let mut blank = vec![b' '; block * 2 + 7];
        cases.push(blank.clone());
        blank.extend(b"<a/>");
        cases.push(blank);
        for bytes in &cases {
            let memory = text(bytes).map(|_| ()).map_err(Stop::from);
            let file = file_of(bytes);
            let staged = check_text(Source::File {
                file: &file,
                len: bytes.len(),
            });
            assert_eq!(memory, staged, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn refusals_name_where() {
        let r = refusal(b"<a>\n  <b>\n</a>");
        assert_eq!(r.code, "xml.malformed");
        assert!(r.location.starts_with("line "), "{r:?}");
        let r = refusal(b"<a>\nok\xc3</a>");
        assert_eq!(r.location, "line 2, column 3");
    }

    #[test]
    fn a_deep_document_is_refused_without_recursing_into_it() {
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        assert_eq!(code(deep.as_bytes()), "xml.too-deep");
    }

    /// One element with `n` attributes (and `ns` namespace declarations).
    fn bomb(n: usize, ns: usize) -> Vec<u8> {
        let mut x = String::from("<a");
        for i in 0..ns {
            x.push_str(&format!(" xmlns:p{i}=\"urn:x:{i}\""));
        }
        for i in 0..n {
            x.push_str(&format!(" a{i}=\"v\""));
        }
        x.push_str("/>");
        x.into_bytes()
    }

    #[test]
    fn attribute_and_namespace_bombs_are_refused_by_the_prescan() {
        let limits = Limits {
            max_attributes_per_element: 100,
            max_namespace_declarations_per_element: 10,
            max_attributes: 150,
            max_namespace_declarations: 15,
            max_nodes: 1000,
            ..Limits::default()
        };
        assert_eq!(code_with(&bomb(99, 0), &limits), "ok");
        assert_eq!(code_with(&bomb(101, 0), &limits), "xml.too-many-attributes");
        assert_eq!(code_with(&bomb(0, 11), &limits), "xml.too-many-namespaces");
        // Per document: two elements each under the per-element limits.
        let two = |n: usize, ns: usize| {
            let one = String::from_utf8(bomb(n, ns)).unwrap();
            format!("<r>{one}{one}</r>").into_bytes()
        };
        assert_eq!(code_with(&two(80, 0), &limits), "xml.too-many-attributes");
        assert_eq!(code_with(&two(0, 8), &limits), "xml.too-many-namespaces");
        let many = format!("<r>{}</r>", "<e/>".repeat(1001));
        assert_eq!(code_with(many.as_bytes(), &limits), "xml.too-many-nodes");
        // The default limits take a real document's shape and refuse a big bomb.
        assert_eq!(
            code_with(&bomb(300_000, 0), &Limits::default()),
            "xml.too-many-attributes"
        );
    }

    #[test]
    fn the_prescan_stops_when_its_request_is_gone() {
        let cancel = Cancel::default();
        cancel.cancel();
        let doc = format!("<r>{}</r>", "<e/>".repeat(10_000));
        assert!(matches!(
            parse(doc.as_bytes(), &Limits::default(), &cancel),
            Err(Stop::Cancelled)
        ));
    }

    #[test]
    fn the_shape_counts_what_the_parser_would_build() {
        let (_, shape) = parse(
            b"<r xmlns=\"urn:x\" a=\"1\"><e b=\"2\">t</e><!-- c --><e/></r>",
            &Limits::default(),
            &Cancel::default(),
        )
        .unwrap();
        assert_eq!(
            shape,
            Shape {
                elements: 3,
                attributes: 3,
                others: 2,
                root_start: (0, 23),
                last_child: Some((47, 51)),
            }
        );
    }
}
