//! The rules beyond the schema, written as a fold over a document's items: what
//! comes before the items (`head`: root attributes, a sheet's person), each item in
//! order (`item`: a report's line, a form's registration, a sheet's period), and what
//! needs all of them (`tail`: totals, overlaps, terminations before hires). The tree
//! path runs the fold over the whole parsed document ([`run`]); the streamed path
//! over the chunks it parses one at a time, so both give the same findings.

use uppsala::{Document, NodeId};

use super::common::{Sink, elements, is};
use super::{Context, DocumentType};

pub(super) trait Rules {
    fn head(&mut self, _doc: &Document<'_>, _root: NodeId, _ctx: &Context<'_>, _sink: &mut Sink) {}

    /// Item number `index` (1-based, in the whole document).
    fn item(
        &mut self,
        _doc: &Document<'_>,
        _item: NodeId,
        _index: usize,
        _ctx: &Context<'_>,
        _sink: &mut Sink,
    ) {
    }

    fn tail(&mut self, _doc: &Document<'_>, _root: NodeId, _ctx: &Context<'_>, _sink: &mut Sink) {}
}

/// The rules of `ty`, with nothing seen yet.
pub(super) fn for_type(ty: DocumentType) -> Box<dyn Rules> {
    match ty {
        DocumentType::ContributionReport => Box::<super::contribution_report::Rules>::default(),
        DocumentType::RegistrationForm => Box::<super::registration_form::Rules>::default(),
        DocumentType::EmployerChange => Box::<super::employer_change::Rules>::default(),
        DocumentType::PensionRecordSheet => Box::<super::pension_record_sheet::Rules>::default(),
    }
}

/// The items of `ty` among the root's children of `doc`, in order.
pub(super) fn items<'d>(
    ty: DocumentType,
    doc: &'d Document<'_>,
    root: NodeId,
) -> impl Iterator<Item = NodeId> + 'd {
    let item = ty.item_element();
    elements(doc, root)
        .filter(move |(_, e)| item.is_some_and(|name| is(e, name)))
        .map(|(id, _)| id)
}

/// Runs the rules of `ty` over a whole document.
pub(super) fn run(
    ty: DocumentType,
    doc: &Document<'_>,
    root: NodeId,
    ctx: &Context<'_>,
    sink: &mut Sink,
) {
    let mut rules = for_type(ty);
    rules.head(doc, root, ctx, sink);
    for (i, id) in items(ty, doc, root).enumerate() {
        rules.item(doc, id, i + 1, ctx, sink);
    }
    rules.tail(doc, root, ctx, sink);
}
