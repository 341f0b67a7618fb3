//! XSD validation with uppsala, bounded in time, and the mapping of uppsala's
//! line/column positions back to element paths.
//!
//! uppsala's validator reports each violation with the line and column of the node,
//! which it computes by scanning the input from its start: one violation deep in a
//! 50 MB document costs a 50 MB scan, so thousands of violations cost minutes. To
//! keep that bounded:
//!
//! - a document of at most [`DIRECT_MAX`] bytes is validated as it is;
//! - a larger document whose root holds a run of repeated items (`Employee`,
//!   `Registration`, `Period`) is validated in **chunks**: the text before the first
//!   item, about [`CHUNK_BYTES`] of items (and whatever lies between them), and the
//!   text after the last item, parsed again and validated on their own. Positions
//!   inside a chunk are cheap, and the item index is offset back to the original
//!   document. Violations in the parts every chunk repeats (root attributes,
//!   totals) are reported from the first chunk only. Once the findings are full,
//!   further chunks are validated without positions (a copy without its source
//!   text) and only counted. This is sound because the chunks cover the whole text
//!   and the schemas have no constraint across items (no `xs:unique`/`xs:key`, no
//!   upper bound on the items): the document is valid exactly when every chunk is;
//! - any other large document (or a single huge item) is validated first without
//!   positions; only if `violations × size` stays under [`SCAN_BUDGET`] is it
//!   validated again with positions, otherwise its violations are reported at the
//!   root element.

use std::borrow::Cow;
use std::collections::HashMap;

use std::ops::ControlFlow;

use uppsala::{Document, NodeId, NodeKind, XsdValidator};

use super::chunks::{self, CHUNK_BYTES, Chunk};
use super::common::{Sink, elements, text};
use super::{DocumentType, NAMESPACE, codes};

/// Documents up to this size are validated directly.
pub(super) const DIRECT_MAX: usize = 64 * 1024;
/// Upper bound on `violations × document size` for validating with positions.
pub(super) const SCAN_BUDGET: usize = 256 * 1024 * 1024;

/// One violation: uppsala's message and, when it could be placed, the node.
struct Violation {
    message: String,
    node: Option<NodeId>,
}

/// Compiles one embedded schema.
pub(super) fn compile(ty: DocumentType) -> Result<XsdValidator, String> {
    let schema = uppsala::parse(ty.schema()).map_err(|e| e.to_string())?;
    XsdValidator::from_schema(&schema).map_err(|e| e.to_string())
}

/// Validates `doc` (whose root is `ty`'s root element) and reports each violation
/// as an `xsd.invalid` error. Returns whether there was any violation.
pub(super) fn validate(
    validator: &XsdValidator,
    ty: DocumentType,
    doc: &Document<'_>,
    sink: &mut Sink,
) -> bool {
    if doc.input_text().len() > DIRECT_MAX
        && let Some(item) = ty.item_element()
        && let Some(chunked) = chunked(validator, ty, item, doc, sink.has_room())
    {
        return chunked.report(sink);
    }
    let violations = validate_placed(validator, doc, DIRECT_MAX);
    let root = ty.root_element();
    for v in &violations {
        report(
            sink,
            || {
                v.node.map_or_else(
                    || format!("/{root}"),
                    |n| location(doc, n, &v.message, None),
                )
            },
            &v.message,
        );
    }
    !violations.is_empty()
}

fn report(sink: &mut Sink, location: impl FnOnce() -> String, message: &str) {
    sink.error(codes::XSD_INVALID, location, || {
        format!("the document does not follow the schema: {message}")
    });
}

/// Validates and places each violation on its node, within [`SCAN_BUDGET`]:
/// documents larger than `direct_max` are counted without positions first.
fn validate_placed(
    validator: &XsdValidator,
    doc: &Document<'_>,
    direct_max: usize,
) -> Vec<Violation> {
    let size = doc.input_text().len();
    if size > direct_max {
        // Count first, without positions (a copy without source text answers every
        // position with 1:1 at once).
        let count = validator.validate(&doc.clone().into_static());
        if count.is_empty() {
            return Vec::new();
        }
        if count.len().saturating_mul(size) > SCAN_BUDGET {
            return count
                .into_iter()
                .map(|e| Violation {
                    message: e.message,
                    node: None,
                })
                .collect();
        }
    }
    let errors = validator.validate(doc);
    if errors.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<(usize, usize)> = errors
        .iter()
        .map(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)))
        .collect();
    let nodes = locate(doc, &wanted);
    errors
        .into_iter()
        .map(|e| {
            let key = (e.line.unwrap_or(0), e.column.unwrap_or(0));
            Violation {
                message: e.message,
                node: nodes.get(&key).copied(),
            }
        })
        .collect()
}

/// Finds the nodes that start at the given (line, column) positions, computed
/// exactly as uppsala computes them, in one pass over the document.
fn locate(doc: &Document<'_>, wanted: &[(usize, usize)]) -> HashMap<(usize, usize), NodeId> {
    let mut pending: HashMap<(usize, usize), ()> = wanted.iter().map(|k| (*k, ())).collect();
    let mut found = HashMap::new();
    let input = doc.input_text().as_bytes();
    if input.is_empty() {
        return found;
    }
    // Position scanned so far: byte offset, its line, offset of the last newline before it.
    let (mut pos, mut line, mut last_newline) = (0usize, 1usize, None::<usize>);
    let mut node = doc.first_child(doc.root());
    while let Some(id) = node {
        if pending.is_empty() {
            break;
        }
        if let Some(start) = doc.node_range(id).map(|r| r.start)
            && start >= pos
            && start <= input.len()
        {
            for (i, b) in input[pos..start].iter().enumerate() {
                if *b == b'\n' {
                    line += 1;
                    last_newline = Some(pos + i);
                }
            }
            pos = start;
            let key = if start == 0 {
                (1, 1)
            } else {
                let column = match last_newline {
                    Some(nl) => start - nl,
                    None => start + 1,
                };
                (line, column)
            };
            if pending.remove(&key).is_some() {
                found.insert(key, id);
            }
        }
        node = next_in_document_order(doc, id);
    }
    found
}

fn next_in_document_order(doc: &Document<'_>, id: NodeId) -> Option<NodeId> {
    if let Some(c) = doc.first_child(id) {
        return Some(c);
    }
    let mut cur = id;
    loop {
        if let Some(s) = doc.next_sibling(cur) {
            return Some(s);
        }
        cur = doc.parent(cur)?;
    }
}

/// Elements that may repeat: their paths always carry an index.
const REPEATING: [&str; 3] = ["Employee", "Registration", "Period"];

/// The XPath-like path of `node`: `/Root/Child[n]/…`, `[n]` (1-based among
/// same-named siblings) on repeating elements and wherever n > 1; elements of
/// other namespaces by their prefixed name (`ds:Signature`); a text node is
/// `…/text()`. `item_offset` adds to the index of the root's `(name, offset)` items.
pub(super) fn path(doc: &Document<'_>, node: NodeId, item_offset: Option<(&str, usize)>) -> String {
    let mut steps = Vec::new();
    let mut cur = Some(node);
    while let Some(id) = cur {
        match doc.node_kind(id) {
            Some(NodeKind::Element(e)) => {
                let name = e.name.local_name.as_ref();
                let shown = if e.name.namespace_uri.as_deref() == Some(NAMESPACE) {
                    Cow::Borrowed(name)
                } else {
                    e.name.prefixed_name()
                };
                let mut index = 1 + doc_previous_siblings(doc, id)
                    .filter(|s| doc.element(*s).is_some_and(|p| p.name.local_name == name))
                    .count();
                let parent_is_root = doc
                    .parent(id)
                    .is_some_and(|p| Some(p) == doc.document_element());
                if parent_is_root
                    && let Some((item, offset)) = item_offset
                    && item == name
                {
                    index += offset;
                }
                if index > 1 || REPEATING.contains(&name) {
                    steps.push(format!("{shown}[{index}]"));
                } else {
                    steps.push(shown.into_owned());
                }
            }
            Some(NodeKind::Text(_) | NodeKind::CData(_)) => steps.push("text()".to_owned()),
            _ => {}
        }
        cur = doc.parent(id);
    }
    steps.reverse();
    format!("/{}", steps.join("/"))
}

/// The path of the node a violation is reported at, narrowed to the attribute when
/// the message names one or quotes the value of exactly one attribute (uppsala
/// reports attribute violations at their element).
fn location(
    doc: &Document<'_>,
    node: NodeId,
    message: &str,
    item_offset: Option<(&str, usize)>,
) -> String {
    let mut at = path(doc, node, item_offset);
    if let Some(attribute) = attribute_of(doc, node, message) {
        at.push_str("/@");
        at.push_str(&attribute);
    }
    at
}

fn attribute_of(doc: &Document<'_>, node: NodeId, message: &str) -> Option<String> {
    let element = doc.element(node)?;
    let quoted = |m: &str| -> Option<String> {
        let start = m.find('\'')? + 1;
        let len = m[start..].find('\'')?;
        Some(m[start..start + len].to_owned())
    };
    // "Required attribute 'kind' is missing", "Attribute 'x' is not allowed …".
    if message.starts_with("Required attribute '") || message.starts_with("Attribute '") {
        return quoted(message).filter(|n| !n.is_empty() && !n.contains(['{', '/', '[']));
    }
    // "Value '2026-10' does not match …", "'7' is not one of …": which attribute
    // holds the value, if it is not the element's own text.
    let value = quoted(message.strip_prefix("Value ").unwrap_or(message))?;
    let value = value.trim();
    if elements(doc, node).next().is_none() && text(doc, node) == value {
        return None;
    }
    let mut matching = element
        .attributes
        .iter()
        .filter(|a| a.name.namespace_uri.is_none() && a.name.prefix.is_none())
        .filter(|a| a.value.trim() == value);
    let first = matching.next()?;
    matching
        .next()
        .is_none()
        .then(|| first.name.local_name.clone().into_owned())
}

fn doc_previous_siblings<'d>(
    doc: &'d Document<'_>,
    id: NodeId,
) -> impl Iterator<Item = NodeId> + 'd {
    std::iter::successors(doc.previous_sibling(id), move |s| doc.previous_sibling(*s))
}

/// The schema's verdict on a document validated chunk by chunk.
pub(super) struct Chunked {
    /// (path, message) of placed violations, at most as many as there was room for.
    located: Vec<(String, String)>,
    /// Violations counted but not placed.
    unlocated: usize,
    /// Violations in the repeated head and tail, as counted in the first chunk.
    repeated: usize,
    room: bool,
}

impl Chunked {
    pub(super) fn new(room: bool) -> Self {
        Self {
            located: Vec::new(),
            unlocated: 0,
            repeated: 0,
            room,
        }
    }

    /// Whether any chunk so far had a violation.
    pub(super) fn failed(&self) -> bool {
        self.located.len() + self.unlocated > 0
    }

    /// Reports what was found into `sink`; returns whether there was any violation.
    pub(super) fn report(self, sink: &mut Sink) -> bool {
        let any = self.failed();
        for (path, message) in self.located {
            report(sink, || path, &message);
        }
        sink.suppress(self.unlocated, true);
        any
    }

    /// Validates one chunk. Violations in the head and tail every chunk repeats are
    /// taken from the first chunk only.
    pub(super) fn validate(
        &mut self,
        validator: &XsdValidator,
        ty: DocumentType,
        item: &str,
        chunk: &Chunk<'_, '_>,
    ) {
        // What every chunk repeats is validated with the first; a later chunk whose
        // own items are certainly valid has nothing to add.
        if !chunk.first && body_certainly_valid(ty, chunk) {
            return;
        }
        if self.room {
            for v in validate_placed(validator, chunk.doc, 2 * CHUNK_BYTES) {
                let in_body = v
                    .node
                    .and_then(|n| chunk.doc.node_range(n))
                    .is_some_and(|r| chunk.body.contains(&r.start));
                if !in_body {
                    if !chunk.first {
                        continue;
                    }
                    self.repeated += 1;
                }
                let location = match v.node {
                    Some(n) => location(chunk.doc, n, &v.message, Some((item, chunk.items_before))),
                    None => format!("/{}", ty.root_element()),
                };
                self.located.push((location, v.message));
            }
            self.room = self.located.len() < super::MAX_FINDINGS;
        } else {
            let n = validator.validate(&chunk.doc.clone().into_static()).len();
            self.unlocated += n.saturating_sub(self.repeated);
        }
    }
}

/// Validates a large document in chunks of its repeated `item` elements. `None`
/// when the document does not have that shape (fewer than two items, a large item,
/// head or tail) or a chunk does not parse; the caller validates it whole.
fn chunked(
    validator: &XsdValidator,
    ty: DocumentType,
    item: &str,
    doc: &Document<'_>,
    room: bool,
) -> Option<Chunked> {
    let text = doc.input_text();
    // The tree path (at most the streaming threshold): not cancelled part-way.
    let never = crate::xml::cancel::Cancel::default();
    let items = chunks::split(text.into(), item, &never).ok()?.ok()?;
    let mut out = Chunked::new(room);
    chunks::for_each::<()>(text.into(), &items, |chunk| {
        out.validate(validator, ty, item, &chunk);
        ControlFlow::Continue(())
    })
    .ok()?;
    Some(out)
}

/// The simple types of the items' fields (the common definitions all four schemas
/// share).
#[derive(Debug, Clone, Copy)]
enum Simple {
    /// `xs:token`, `[0-9]{9,10}`.
    PersonalId,
    /// `xs:token`, length 1 to 100.
    Name,
    /// `xs:decimal`, `-?[0-9]{1,13}(\.[0-9]{1,2})?`.
    Amount,
    /// `xs:date`, `[0-9]{4}-[0-9]{2}-[0-9]{2}`.
    Date,
}

/// The items whose content model the shortcut knows: their fields in order.
fn item_fields(ty: DocumentType) -> Option<&'static [(&'static str, Simple)]> {
    match ty {
        DocumentType::ContributionReport => Some(&[
            ("PersonalId", Simple::PersonalId),
            ("Surname", Simple::Name),
            ("GivenName", Simple::Name),
            ("AssessmentBase", Simple::Amount),
            ("EmployeeContribution", Simple::Amount),
            ("EmployerContribution", Simple::Amount),
        ]),
        DocumentType::PensionRecordSheet => Some(&[
            ("From", Simple::Date),
            ("To", Simple::Date),
            ("AssessmentBase", Simple::Amount),
        ]),
        // Registrations have choices and optional parts: the validator decides.
        DocumentType::RegistrationForm | DocumentType::EmployerChange => None,
    }
}

/// A shortcut past uppsala's validator, which compiles each pattern again for every
/// value it checks (four fifths of a 50 MB report's analysis): whether the items in
/// `chunk`'s body are *certainly* valid — each exactly its fields, in order, without
/// attributes, each one text that is certainly of its type, and between them only
/// whitespace. It is conservative: `false` means "not certain", and the validator
/// decides (with its own messages). A test checks that it never says `true` where the
/// validator finds a violation.
fn body_certainly_valid(ty: DocumentType, chunk: &Chunk<'_, '_>) -> bool {
    let (Some(fields), Some(item)) = (item_fields(ty), ty.item_element()) else {
        return false;
    };
    let doc = chunk.doc;
    let Some(root) = doc.document_element() else {
        return false;
    };
    doc.children_iter(root)
        .filter(|id| {
            doc.node_range(*id)
                .is_some_and(|r| chunk.body.contains(&r.start))
        })
        .all(|id| match doc.node_kind(id) {
            Some(NodeKind::Text(t)) => t.bytes().all(|b| b.is_ascii_whitespace()),
            Some(NodeKind::Element(e)) => {
                is_plain(e, item) && {
                    let mut kids = doc.children_iter(id).filter(|k| !is_blank(doc, *k));
                    fields.iter().all(|(name, simple)| {
                        kids.next().is_some_and(|k| {
                            doc.element(k).is_some_and(|f| is_plain(f, name))
                                && single_text(doc, k).is_some_and(|t| certainly(*simple, t))
                        })
                    }) && kids.next().is_none()
                }
            }
            _ => false,
        })
}

/// Our element `name`, without attributes.
fn is_plain(e: &uppsala::Element<'_>, name: &str) -> bool {
    e.name.local_name == name
        && e.name.namespace_uri.as_deref() == Some(super::NAMESPACE)
        && e.attributes.is_empty()
}

fn is_blank(doc: &Document<'_>, id: NodeId) -> bool {
    matches!(doc.node_kind(id), Some(NodeKind::Text(t)) if t.bytes().all(|b| b.is_ascii_whitespace()))
}

/// The element's only child, a text.
fn single_text<'d>(doc: &'d Document<'_>, id: NodeId) -> Option<&'d str> {
    let mut kids = doc.children_iter(id);
    let only = kids.next()?;
    if kids.next().is_some() {
        return None;
    }
    match doc.node_kind(only) {
        Some(NodeKind::Text(t)) => Some(t.as_ref()),
        _ => None,
    }
}

/// Whether `raw` is certainly a value of `simple` (after the type's whitespace
/// collapsing, which only trims here: inner whitespace is never certain).
fn certainly(simple: Simple, raw: &str) -> bool {
    let v = raw.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    match simple {
        Simple::PersonalId => digits(v, 9, 10),
        // Bytes bound the length in characters from above: certain either way.
        Simple::Name => {
            !v.is_empty()
                && v.len() <= 100
                && !v.contains(|c: char| c.is_whitespace() && c != ' ')
                && !v.contains("  ")
        }
        Simple::Amount => {
            let v = v.strip_prefix('-').unwrap_or(v);
            match v.split_once('.') {
                Some((int, frac)) => digits(int, 1, 13) && digits(frac, 1, 2),
                None => digits(v, 1, 13),
            }
        }
        Simple::Date => {
            v.len() == 10
                && v.as_bytes()[4] == b'-'
                && v.as_bytes()[7] == b'-'
                && digits(&v[..4], 4, 4)
                && digits(&v[5..7], 2, 2)
                && digits(&v[8..], 2, 2)
                && &v[..4] != "0000"
                && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_matches_uppsala_positions() {
        let xml = "<?xml version=\"1.0\"?>\n<a>\n  <b/><b>x</b>\r\n\t<c><d/></c></a>";
        let doc = uppsala::parse(xml).unwrap();
        let mut all = Vec::new();
        let mut n = doc.first_child(doc.root());
        while let Some(id) = n {
            all.push((id, (doc.node_line(id), doc.node_column(id))));
            n = next_in_document_order(&doc, id);
        }
        let wanted: Vec<_> = all.iter().map(|(_, k)| *k).collect();
        let found = locate(&doc, &wanted);
        for (id, key) in &all {
            if doc.element(*id).is_some() {
                assert_eq!(found.get(key), Some(id), "{key:?}");
            }
        }
    }

    #[test]
    fn paths() {
        let xml = "<R xmlns=\"urn:ivan:filing:1\"><Employee><A/></Employee><Employee><A/><A/></Employee><T>x</T></R>";
        let doc = uppsala::parse(xml).unwrap();
        let root = doc.document_element().unwrap();
        let kids = doc.children(root);
        let second = kids[1];
        let a2 = doc.children(second)[1];
        assert_eq!(path(&doc, root, None), "/R");
        assert_eq!(path(&doc, kids[0], None), "/R/Employee[1]");
        assert_eq!(path(&doc, a2, None), "/R/Employee[2]/A[2]");
        assert_eq!(
            path(&doc, a2, Some(("Employee", 10))),
            "/R/Employee[12]/A[2]"
        );
        let text = doc.children(kids[2])[0];
        assert_eq!(path(&doc, text, None), "/R/T/text()");
    }

    /// The shortcut never calls a value certain that the validator refuses: every
    /// candidate is put in a report line and validated by uppsala.
    #[test]
    fn what_the_shortcut_calls_certain_the_validator_accepts() {
        let validator = compile(DocumentType::ContributionReport).unwrap();
        let long = "x".repeat(100);
        let too_long = "x".repeat(101);
        let wide = "č".repeat(60);
        let candidates: &[&str] = &[
            "",
            " ",
            "1",
            "12345678",
            "123456789",
            "1234567890",
            "12345678901",
            " 123456789 ",
            "12345 6789",
            "１２３４５６７８９",
            "-1",
            "0",
            "0.5",
            "1.",
            ".5",
            "1.234",
            "+1",
            "-0.00",
            "1234567890123",
            "12345678901234",
            "1e3",
            "Novák",
            "Jan  Novák",
            "Jan Novák",
            "a\tb",
            "a\nb",
            &long,
            &too_long,
            &wide,
            "2026-02-28",
            "2026-02-29",
            "2024-02-29",
            "2026-13-01",
            "0000-01-01",
            "0001-01-01",
            "2026-1-01",
            "2026-01-01Z",
            " 2026-01-01 ",
            "9999-12-31",
            "&amp;",
            "x&lt;y",
        ];
        let sorts = [
            (0, Simple::PersonalId),
            (1, Simple::Name),
            (3, Simple::Amount),
        ];
        let mut certain = 0;
        for value in candidates {
            for (field, simple) in sorts {
                let mut fields =
                    ["123456789", "Novák", "Jan", "1.00", "0.10", "0.20"].map(str::to_owned);
                fields[field] = (*value).to_owned();
                let xml = format!(
                    "<ContributionReport xmlns=\"urn:ivan:filing:1\" employer=\"1\" period=\"012026\" kind=\"regular\">\
<Employee><PersonalId>{}</PersonalId><Surname>{}</Surname><GivenName>{}</GivenName>\
<AssessmentBase>{}</AssessmentBase><EmployeeContribution>{}</EmployeeContribution>\
<EmployerContribution>{}</EmployerContribution></Employee>\
<Totals><AssessmentBase>1</AssessmentBase><EmployeeContribution>1</EmployeeContribution>\
<EmployerContribution>1</EmployerContribution></Totals></ContributionReport>",
                    fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]
                );
                let Ok(doc) = uppsala::parse(&xml) else {
                    continue;
                };
                let text_value = doc
                    .descendants(doc.root())
                    .into_iter()
                    .filter(|n| doc.element(*n).is_some())
                    .nth(2 + field)
                    .and_then(|n| single_text(&doc, n))
                    .map(str::to_owned);
                let Some(text_value) = text_value else {
                    continue;
                };
                if certainly(simple, &text_value) {
                    certain += 1;
                    let errors = validator.validate(&doc);
                    assert!(errors.is_empty(), "{value:?} as {simple:?}: {errors:?}");
                }
            }
        }
        // Dates, on a pension record sheet's period.
        let validator = compile(DocumentType::PensionRecordSheet).unwrap();
        for value in candidates {
            let xml = format!(
                "<PensionRecordSheet xmlns=\"urn:ivan:filing:1\" employer=\"1\" year=\"2026\" kind=\"regular\">\
<Person><PersonalId>123456789</PersonalId><Surname>A</Surname><GivenName>B</GivenName><BirthDate>1980-01-01</BirthDate></Person>\
<Period><From>{value}</From><To>2026-01-02</To><AssessmentBase>1</AssessmentBase></Period>\
<TotalAssessmentBase>1</TotalAssessmentBase></PensionRecordSheet>"
            );
            let Ok(doc) = uppsala::parse(&xml) else {
                continue;
            };
            if *value == "2026-13-01" {
                assert!(
                    !validator.validate(&doc).is_empty(),
                    "the oracle sees errors"
                );
            }
            if certainly(Simple::Date, value) {
                certain += 1;
                let errors = validator.validate(&doc);
                assert!(errors.is_empty(), "{value:?} as a date: {errors:?}");
            }
        }
        assert!(certain > 15, "only {certain} candidates were certain");
    }
}
