//! Helpers shared by the document types: the findings sink (with its cap), reading
//! element text, fixed-point amounts, dates, and the rules every type has (employer,
//! person, correction references).

use std::borrow::Cow;

use chrono::NaiveDate;
use uppsala::{Document, Element, NodeId, NodeKind};

use super::personal_id::{self, PersonalId};
use super::{Context, DocumentType, Finding, NAMESPACE, Severity, codes};

/// Collects findings up to a limit; beyond it, only counts them. [`Sink::finish`]
/// appends one `findings.truncated` finding saying how many were left out.
#[derive(Debug)]
pub(super) struct Sink {
    findings: Vec<Finding>,
    limit: usize,
    suppressed: usize,
    suppressed_error: bool,
    root: &'static str,
}

impl Sink {
    pub(super) fn new(limit: usize, root: &'static str) -> Self {
        Self {
            findings: Vec::new(),
            limit,
            suppressed: 0,
            suppressed_error: false,
            root,
        }
    }

    /// Whether another finding would still be kept in full.
    pub(super) fn has_room(&self) -> bool {
        self.findings.len() < self.limit
    }

    /// Records a finding; `location` and `message` are only built if it is kept.
    pub(super) fn add(
        &mut self,
        severity: Severity,
        code: &'static str,
        location: impl FnOnce() -> String,
        message: impl FnOnce() -> String,
    ) {
        if self.has_room() {
            self.findings.push(Finding {
                severity,
                code: code.to_owned(),
                message: message(),
                location: location(),
            });
        } else {
            self.suppress(1, severity == Severity::Error);
        }
    }

    pub(super) fn error(
        &mut self,
        code: &'static str,
        location: impl FnOnce() -> String,
        message: impl FnOnce() -> String,
    ) {
        self.add(Severity::Error, code, location, message);
    }

    pub(super) fn warning(
        &mut self,
        code: &'static str,
        location: impl FnOnce() -> String,
        message: impl FnOnce() -> String,
    ) {
        self.add(Severity::Warning, code, location, message);
    }

    /// Counts `n` findings that are not kept (`any_error`: at least one of them is an error).
    pub(super) fn suppress(&mut self, n: usize, any_error: bool) {
        self.suppressed = self.suppressed.saturating_add(n);
        self.suppressed_error |= any_error && n > 0;
    }

    /// Takes `other`'s findings after this one's, as if they had been added here.
    pub(super) fn absorb(&mut self, other: Sink) {
        for f in other.findings {
            if self.has_room() {
                self.findings.push(f);
            } else {
                self.suppress(1, f.severity == Severity::Error);
            }
        }
        self.suppress(other.suppressed, other.suppressed_error);
    }

    pub(super) fn finish(mut self) -> Vec<Finding> {
        if self.suppressed > 0 {
            let severity = if self.suppressed_error {
                Severity::Error
            } else {
                Severity::Warning
            };
            let n = self.suppressed;
            self.findings.push(Finding {
                severity,
                code: codes::FINDINGS_TRUNCATED.to_owned(),
                message: format!(
                    "{n} more finding{} not listed: only the first {} are reported",
                    if n == 1 { " was" } else { "s were" },
                    self.limit
                ),
                location: format!("/{}", self.root),
            });
        }
        self.findings
    }
}

/// The element children of `parent`, with their ids.
pub(super) fn elements<'d, 'a>(
    doc: &'d Document<'a>,
    parent: NodeId,
) -> impl Iterator<Item = (NodeId, &'d Element<'a>)> + 'd {
    doc.children_iter(parent)
        .filter_map(move |id| doc.element(id).map(|e| (id, e)))
}

/// Every personal id in the document: the text of each of our `PersonalId`
/// elements, wherever it is among our elements (never inside the signature), in
/// document order.
pub(super) fn person_ids(doc: &Document<'_>, root: NodeId) -> PersonIds {
    let mut ids = PersonIds::default();
    ids.add(doc, root);
    ids
}

/// Personal ids, in document order, duplicates included (the person index's keys
/// drop them), collected subtree by subtree (the streamed path adds the root's
/// children chunk by chunk). A report names hundreds of thousands of people, so the
/// ids share one buffer: about 14 bytes per id of ten characters, where a `String`
/// each in an ordered set took about 90 (≈ 18 MB for 200,000; issue 18's memory
/// target).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonIds {
    text: String,
    /// Where each id ends in `text`.
    ends: Vec<usize>,
}

impl PersonIds {
    /// How many ids, duplicates included.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The ids in document order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.text[a..b])
    }

    fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len());
    }

    /// The ids in the subtree of `node`, in document order.
    pub(super) fn add(&mut self, doc: &Document<'_>, node: NodeId) {
        let mut stack = vec![node];
        while let Some(id) = stack.pop() {
            if let Some(e) = doc.element(id)
                && is(e, "PersonalId")
            {
                let t = text(doc, id);
                if !t.is_empty() {
                    self.push(&t);
                }
            }
            // Only our own elements are read: the ds:Signature subtree (and anything
            // else foreign) is not the filing's content.
            let children: Vec<NodeId> = elements(doc, id)
                .filter(|(_, e)| e.name.namespace_uri.as_deref() == Some(NAMESPACE))
                .map(|(child, _)| child)
                .collect();
            stack.extend(children.into_iter().rev());
        }
    }
}

/// The first child element of `parent` named `name` (in our namespace).
pub(super) fn child(doc: &Document<'_>, parent: NodeId, name: &str) -> Option<NodeId> {
    elements(doc, parent)
        .find(|(_, e)| is(e, name))
        .map(|(id, _)| id)
}

/// Whether `e` is our element `name`.
pub(super) fn is(e: &Element<'_>, name: &str) -> bool {
    e.name.local_name == name && e.name.namespace_uri.as_deref() == Some(NAMESPACE)
}

/// An unqualified attribute of `e`.
pub(super) fn attribute<'d>(e: &'d Element<'_>, name: &str) -> Option<&'d str> {
    e.attributes
        .iter()
        .find(|a| a.name.namespace_uri.is_none() && a.name.local_name == name)
        .map(|a| a.value.as_ref())
}

/// The text of an element (all its text and CDATA children), trimmed.
pub(super) fn text<'d>(doc: &'d Document<'_>, id: NodeId) -> Cow<'d, str> {
    let mut parts = doc
        .children_iter(id)
        .filter_map(|c| match doc.node_kind(c) {
            Some(NodeKind::Text(t) | NodeKind::CData(t)) => Some(t.as_ref()),
            _ => None,
        });
    match (parts.next(), parts.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(one), None) => Cow::Borrowed(one.trim()),
        (Some(a), Some(b)) => {
            let mut s = String::with_capacity(a.len() + b.len());
            s.push_str(a);
            s.push_str(b);
            parts.for_each(|p| s.push_str(p));
            Cow::Owned(s.trim().to_owned())
        }
    }
}

/// The text of child `name` of `parent`, if there is such a child.
pub(super) fn child_text<'d>(
    doc: &'d Document<'_>,
    parent: NodeId,
    name: &str,
) -> Option<Cow<'d, str>> {
    child(doc, parent, name).map(|id| text(doc, id))
}

/// An amount `-?d{1,13}(.d{1,2})?` as integer cents. Fixed point, never floats.
pub(super) fn cents(s: &str) -> Option<i64> {
    let s = s.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || whole.len() > 13
        || frac.len() > 2
        || (s.contains('.') && frac.is_empty())
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    let v = whole.checked_mul(100)?.checked_add(frac)?;
    Some(if negative { -v } else { v })
}

/// Cents as a decimal amount, e.g. `-12.05`.
pub(super) fn money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// A date `YYYY-MM-DD`.
pub(super) fn date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The text of child `name` of `parent` as a date.
pub(super) fn child_date(doc: &Document<'_>, parent: NodeId, name: &str) -> Option<NaiveDate> {
    child_text(doc, parent, name).and_then(|t| date(&t))
}

/// Checks the root's `employer` attribute against the caller's registration number.
pub(super) fn check_employer(
    root_name: &'static str,
    root: &Element<'_>,
    ctx: &Context<'_>,
    sink: &mut Sink,
) {
    if let Some(employer) = attribute(root, "employer")
        && employer != ctx.employer_registration_number
    {
        sink.error(
            codes::EMPLOYER_MISMATCH,
            || format!("/{root_name}/@employer"),
            || {
                format!(
                    "the document is filed for employer {employer:?}, but the sender is registered as {:?}",
                    ctx.employer_registration_number
                )
            },
        );
    }
}

/// A `Person` (PersonalId, Surname, GivenName, BirthDate) checked: the birth date
/// not in the future, the personal number against the birth date. Returns the
/// birth date (`None` if it is unusable: missing or in the future, so that later
/// rules do not repeat the finding) and, if valid, the personal number.
pub(super) fn check_person(
    doc: &Document<'_>,
    person: NodeId,
    path: &dyn Fn() -> String,
    ctx: &Context<'_>,
    sink: &mut Sink,
) -> (Option<NaiveDate>, Option<PersonalId>) {
    let mut birth = child_date(doc, person, "BirthDate");
    if let Some(b) = birth
        && b > ctx.today
    {
        sink.error(
            codes::BIRTH_DATE_FUTURE,
            || format!("{}/BirthDate", path()),
            || format!("the birth date {b} is in the future"),
        );
        birth = None;
    }
    let id = child_text(doc, person, "PersonalId")
        .and_then(|n| check_personal_id(&n, birth, || format!("{}/PersonalId", path()), ctx, sink));
    (birth, id)
}

/// Checks one personal number, reporting a failure at `location`.
pub(super) fn check_personal_id(
    number: &str,
    stated_birth_date: Option<NaiveDate>,
    location: impl FnOnce() -> String,
    ctx: &Context<'_>,
    sink: &mut Sink,
) -> Option<PersonalId> {
    match personal_id::check(number, stated_birth_date, ctx.today) {
        Ok(id) => Some(id),
        Err(e) => {
            sink.error(e.code(), location, || {
                format!("personal number {number}: {e}")
            });
            None
        }
    }
}

/// `kind` / `corrects` on reports and pension record sheets: a corrective filing
/// names the document it corrects, a regular one does not, and the named document
/// is of the same type `ty` (its number starts with its prefix).
pub(super) fn check_correction(ty: DocumentType, root: &Element<'_>, sink: &mut Sink) {
    let (root_name, prefix) = (ty.root_element(), ty.number_prefix());
    let kind = attribute(root, "kind").map(str::trim);
    let corrects = attribute(root, "corrects").map(str::trim);
    match (kind, corrects) {
        (Some("corrective"), None) => sink.error(
            codes::CORRECTION_REFERENCE_MISSING,
            || format!("/{root_name}/@kind"),
            || {
                "a corrective filing must name the document it corrects in the corrects attribute"
                    .to_owned()
            },
        ),
        (Some("regular"), Some(n)) => sink.error(
            codes::CORRECTION_REFERENCE_UNEXPECTED,
            || format!("/{root_name}/@corrects"),
            || format!("a regular filing corrects nothing, but corrects names {n}"),
        ),
        _ => {}
    }
    if let Some(n) = corrects {
        check_reference_prefix(n, prefix, || format!("/{root_name}/@corrects"), sink);
    }
}

/// A referenced document number must belong to the expected document type.
pub(super) fn check_reference_prefix(
    number: &str,
    prefix: char,
    location: impl FnOnce() -> String,
    sink: &mut Sink,
) {
    if !number.starts_with(prefix) {
        sink.error(codes::REFERENCE_WRONG_TYPE, location, || {
            format!(
                "document number {number} is not of the referenced document type, whose numbers start with {prefix}"
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_are_exact() {
        assert_eq!(cents("0"), Some(0));
        assert_eq!(cents("1500"), Some(150_000));
        assert_eq!(cents("1500.5"), Some(150_050));
        assert_eq!(cents("1500.05"), Some(150_005));
        assert_eq!(cents(" 0.10 "), Some(10));
        assert_eq!(cents("-0.01"), Some(-1));
        assert_eq!(cents("-0.00"), Some(0));
        assert_eq!(cents("9999999999999.99"), Some(999_999_999_999_999));
        for bad in [
            "",
            "-",
            ".5",
            "5.",
            "1.234",
            "1e3",
            "+1",
            "12345678901234",
            "1,5",
            "--1",
        ] {
            assert_eq!(cents(bad), None, "{bad:?}");
        }
        // 0.1 + 0.2 is exactly 0.3 here.
        assert_eq!(
            cents("0.1").unwrap() + cents("0.2").unwrap(),
            cents("0.3").unwrap()
        );
    }

    #[test]
    fn money_formats_cents() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(150_005), "1500.05");
        assert_eq!(money(-5), "-0.05");
    }

    #[test]
    fn dates() {
        assert_eq!(date("2026-02-28"), NaiveDate::from_ymd_opt(2026, 2, 28));
        assert_eq!(date("2026-02-29"), None);
        assert_eq!(date("2026-2-28"), None);
        assert_eq!(date("+2026-02-28"), None);
    }

    #[test]
    fn sink_caps_and_counts() {
        let mut s = Sink::new(2, "R");
        s.warning("a", || "/R".into(), || "m".into());
        s.warning("b", || "/R".into(), || "m".into());
        s.warning("c", || unreachable!(), || unreachable!());
        assert!(!s.has_room());
        let mut only_warnings = Sink::new(0, "R");
        only_warnings.warning("c", || unreachable!(), || unreachable!());
        assert_eq!(only_warnings.finish()[0].severity, Severity::Warning);
        s.error("d", || unreachable!(), || unreachable!());
        let f = s.finish();
        assert_eq!(f.len(), 3);
        assert_eq!(f[2].code, "findings.truncated");
        assert_eq!(f[2].severity, Severity::Error);
        assert_eq!(
            f[2].message,
            "2 more findings were not listed: only the first 2 are reported"
        );
    }
}
