//! Rules of the pension record sheet (`PensionRecordSheet`, an ELDP).

use chrono::{Datelike, NaiveDate};
use uppsala::{Document, NodeId};

use super::common::{
    Sink, attribute, cents, check_correction, check_person, child, child_date, child_text, money,
};
use super::{Context, DocumentType, codes};

const ROOT: &str = "PensionRecordSheet";

/// The sheet's rules, period by period (see [`super::rules`]).
#[derive(Default)]
pub(super) struct Rules {
    year: Option<i32>,
    birth: Option<NaiveDate>,
    sum: i128,
    /// (from, to, index) of the periods whose dates are usable, for the overlap check.
    spans: Vec<(NaiveDate, NaiveDate, usize)>,
}

impl super::rules::Rules for Rules {
    fn head(&mut self, doc: &Document<'_>, root: NodeId, ctx: &Context<'_>, sink: &mut Sink) {
        let Some(root_el) = doc.element(root) else {
            return;
        };
        let year: Option<i32> = attribute(root_el, "year").and_then(|y| y.trim().parse().ok());
        if let Some(y) = year
            && y > ctx.today.year()
        {
            sink.error(
                codes::PERIOD_FUTURE,
                || format!("/{ROOT}/@year"),
                || format!("the year {y} has not begun yet"),
            );
        }
        check_correction(DocumentType::PensionRecordSheet, root_el, sink);
        self.year = year;
        self.birth = child(doc, root, "Person")
            .and_then(|p| check_person(doc, p, &|| format!("/{ROOT}/Person"), ctx, sink).0);
    }

    fn item(
        &mut self,
        doc: &Document<'_>,
        id: NodeId,
        index: usize,
        ctx: &Context<'_>,
        sink: &mut Sink,
    ) {
        let (year, birth) = (self.year, self.birth);
        let at = move |field: &str| format!("/{ROOT}/Period[{index}]/{field}");
        let from = child_date(doc, id, "From");
        let to = child_date(doc, id, "To");
        let mut usable = true;
        for (field, d) in [("From", from), ("To", to)] {
            let Some(d) = d else {
                usable = false;
                continue;
            };
            if let Some(y) = year
                && d.year() != y
            {
                usable = false;
                sink.error(
                    codes::PERIOD_OUTSIDE_YEAR,
                    || at(field),
                    || format!("the period date {d} is outside the sheet's year {y}"),
                );
            }
            if let Some(b) = birth
                && d <= b
            {
                sink.error(
                    codes::DATES_BEFORE_BIRTH,
                    || at(field),
                    || format!("the period date {d} is not after the birth date {b}"),
                );
            }
        }
        if let Some(t) = to
            && t > ctx.today
        {
            sink.error(
                codes::DATE_FUTURE,
                || at("To"),
                || format!("the period ends on {t}, which is in the future"),
            );
        }
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                usable = false;
                sink.error(
                    codes::DATES_ORDER,
                    || at("To"),
                    || format!("the period ends ({t}) before it begins ({f})"),
                );
            }
            if usable {
                self.spans.push((f, t, index));
            }
        }
        if let Some(base) = child_text(doc, id, "AssessmentBase").and_then(|t| cents(&t)) {
            self.sum += i128::from(base);
            if base < 0 {
                sink.error(
                    codes::AMOUNT_NEGATIVE,
                    || at("AssessmentBase"),
                    || {
                        format!(
                            "AssessmentBase must not be negative, but is {}",
                            money(base.into())
                        )
                    },
                );
            }
        }
    }

    fn tail(&mut self, doc: &Document<'_>, root: NodeId, _: &Context<'_>, sink: &mut Sink) {
        // Sorted by start, each period must begin after every earlier one has ended.
        let mut spans = std::mem::take(&mut self.spans);
        spans.sort_unstable();
        let mut latest: Option<(NaiveDate, usize)> = None;
        for (from, to, index) in spans {
            if let Some((end, other)) = latest
                && from <= end
            {
                sink.error(
                    codes::PERIOD_OVERLAP,
                    || format!("/{ROOT}/Period[{index}]"),
                    || format!("the period from {from} to {to} overlaps Period[{other}], which runs until {end}"),
                );
            }
            if latest.is_none_or(|(end, _)| to > end) {
                latest = Some((to, index));
            }
        }
        let sum = self.sum;
        if let Some(total) = child_text(doc, root, "TotalAssessmentBase").and_then(|t| cents(&t))
            && i128::from(total) != sum
        {
            sink.error(
                codes::TOTALS_MISMATCH,
                || format!("/{ROOT}/TotalAssessmentBase"),
                || {
                    format!(
                        "the total assessment base is {}, but the periods add up to {}",
                        money(total.into()),
                        money(sum)
                    )
                },
            );
        }
    }
}
