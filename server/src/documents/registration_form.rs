//! Rules of the registration form of a natural person (`RegistrationForm`), single
//! or batch.

use std::collections::HashMap;

use chrono::NaiveDate;
use uppsala::{Document, NodeId};

use super::common::{
    Sink, check_person, check_reference_prefix, child, child_date, child_text, elements, is,
};
use super::{Context, DocumentType, LATE_AFTER_DAYS, codes};

const ROOT: &str = "RegistrationForm";

/// The same person and relation (the relation only when the item names one).
type Key = (u64, Option<String>);

/// One registration's person id, kind (`hire`, `termination`, `interruption`,
/// `change`, `cancellation`) and effective date (the hire's or interruption's `From`,
/// the termination's `To`); `None` for a registration without a person id or kind.
pub(super) fn item_of(doc: &Document<'_>, item: NodeId) -> Option<super::RegistrationItem> {
    let person_id = child(doc, item, "Person")
        .and_then(|p| child_text(doc, p, "PersonalId"))
        .map(|t| t.trim().to_owned())?;
    let (kind_id, kind) = elements(doc, item)
        .find(|(_, k)| !is(k, "Person") && !is(k, "RelationId"))
        .map(|(kid, k)| (kid, k.name.local_name.to_ascii_lowercase()))?;
    let effective_date = match kind.as_str() {
        "termination" => child_date(doc, kind_id, "To"),
        _ => child_date(doc, kind_id, "From"),
    };
    Some(super::RegistrationItem {
        person_id,
        kind,
        effective_date,
    })
}

/// The form's rules, registration by registration (see [`super::rules`]).
#[derive(Default)]
pub(super) struct Rules {
    /// Earliest hire per person and relation.
    hires: HashMap<Key, NaiveDate>,
    /// Terminations, to compare with the hires once all are known.
    terminations: Vec<(Key, NaiveDate, usize)>,
}

impl super::rules::Rules for Rules {
    fn item(
        &mut self,
        doc: &Document<'_>,
        item: NodeId,
        index: usize,
        ctx: &Context<'_>,
        sink: &mut Sink,
    ) {
        let (hires, terminations) = (&mut self.hires, &mut self.terminations);
        let base = move || format!("/{ROOT}/Registration[{index}]");
        let Some(person) = child(doc, item, "Person") else {
            return;
        };
        let (birth, id) = check_person(doc, person, &|| format!("{}/Person", base()), ctx, sink);
        let relation = child_text(doc, item, "RelationId").map(|r| r.into_owned());
        let key = id.map(|p| (p.value, relation));

        let Some((kind_id, kind)) = elements(doc, item)
            .find(|(_, k)| !is(k, "Person") && !is(k, "RelationId"))
            .map(|(kid, k)| (kid, k.name.local_name.as_ref()))
        else {
            return;
        };
        let at = |field: &str| format!("{}/{kind}/{field}", base());
        let from = child_date(doc, kind_id, "From");
        let to = child_date(doc, kind_id, "To");

        for (field, d) in [("From", from), ("To", to)] {
            if let (Some(d), Some(b)) = (d, birth)
                && d <= b
            {
                sink.error(
                    codes::DATES_BEFORE_BIRTH,
                    || at(field),
                    || {
                        format!(
                            "the {} date {d} is not after the birth date {b}",
                            kind.to_ascii_lowercase()
                        )
                    },
                );
            }
        }
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            sink.error(
                codes::DATES_ORDER,
                || at("To"),
                || {
                    format!(
                        "the {} ends ({t}) before it begins ({f})",
                        kind.to_ascii_lowercase()
                    )
                },
            );
        }
        let effective = match kind {
            "Hire" | "Interruption" | "Change" => from,
            "Termination" => to,
            _ => None,
        };
        if let Some(d) = effective
            && (ctx.today - d).num_days() > LATE_AFTER_DAYS
        {
            let field = if kind == "Termination" { "To" } else { "From" };
            sink.warning(
                codes::FILING_LATE,
                || at(field),
                || {
                    format!(
                        "the {} took effect on {d}, {} days before filing (more than {LATE_AFTER_DAYS})",
                        kind.to_ascii_lowercase(),
                        (ctx.today - d).num_days()
                    )
                },
            );
        }
        match kind {
            "Hire" => {
                if let (Some(key), Some(f)) = (key, from) {
                    hires
                        .entry(key)
                        .and_modify(|e| *e = (*e).min(f))
                        .or_insert(f);
                }
            }
            "Termination" => {
                if let (Some(key), Some(t)) = (key, to) {
                    terminations.push((key, t, index));
                }
            }
            "Cancellation" => {
                if let Some(number) = child_text(doc, kind_id, "DocumentNumber") {
                    check_reference_prefix(
                        &number,
                        DocumentType::RegistrationForm.number_prefix(),
                        || at("DocumentNumber"),
                        sink,
                    );
                }
            }
            _ => {}
        }
    }

    fn tail(&mut self, _: &Document<'_>, _: NodeId, _: &Context<'_>, sink: &mut Sink) {
        let hires = &self.hires;
        for (key, to, index) in std::mem::take(&mut self.terminations) {
            if let Some(hired) = hires.get(&key)
                && to < *hired
            {
                sink.error(
                codes::DATES_TERMINATION_BEFORE_HIRE,
                || format!("/{ROOT}/Registration[{index}]/Termination/To"),
                || {
                    format!(
                        "the termination on {to} is before the hire of the same person on {hired} in this batch (give each relation a RelationId if they differ)"
                    )
                },
            );
            }
        }
    }
}
