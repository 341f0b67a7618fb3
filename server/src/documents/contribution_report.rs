//! Rules of the monthly contribution report (`ContributionReport`).

use std::collections::HashSet;

use chrono::NaiveDate;
use uppsala::{Document, NodeId};

use super::common::{
    Sink, attribute, cents, check_correction, check_personal_id, child_text, elements, is, money,
};
use super::{Context, DocumentType, PLAUSIBLE_MINIMUM_BASE_CENTS, codes};

const ROOT: &str = "ContributionReport";

/// The three amount columns of a line and of the totals.
const COLUMNS: [&str; 3] = [
    "AssessmentBase",
    "EmployeeContribution",
    "EmployerContribution",
];

/// The report's rules, item by item: the lines' sums and personal numbers are
/// carried from one line to the next (see [`super::rules`]).
#[derive(Default)]
pub(super) struct Rules {
    sums: [i128; 3],
    seen: HashSet<u64>,
}

impl super::rules::Rules for Rules {
    fn head(&mut self, doc: &Document<'_>, root: NodeId, ctx: &Context<'_>, sink: &mut Sink) {
        let Some(root_el) = doc.element(root) else {
            return;
        };
        if let Some(period) = attribute(root_el, "period")
            && let Some(first_day) = period_start(period)
            && first_day > ctx.today
        {
            sink.error(
                codes::PERIOD_FUTURE,
                || format!("/{ROOT}/@period"),
                || format!("the reporting period {period} has not begun yet"),
            );
        }
        check_correction(DocumentType::ContributionReport, root_el, sink);
    }

    fn item(
        &mut self,
        doc: &Document<'_>,
        id: NodeId,
        index: usize,
        ctx: &Context<'_>,
        sink: &mut Sink,
    ) {
        line(doc, id, index, ctx, &mut self.sums, &mut self.seen, sink);
    }

    fn tail(&mut self, doc: &Document<'_>, root: NodeId, _: &Context<'_>, sink: &mut Sink) {
        let Some(totals) = elements(doc, root)
            .filter(|(_, e)| is(e, "Totals"))
            .map(|(id, _)| id)
            .last()
        else {
            return;
        };
        for (column, sum) in COLUMNS.iter().zip(self.sums) {
            let Some(stated) = child_text(doc, totals, column).and_then(|t| cents(&t)) else {
                continue;
            };
            if i128::from(stated) != sum {
                sink.error(
                    codes::TOTALS_MISMATCH,
                    || format!("/{ROOT}/Totals/{column}"),
                    || {
                        format!(
                            "the total {column} is {}, but the employee lines add up to {}",
                            money(stated.into()),
                            money(sum)
                        )
                    },
                );
            }
        }
    }
}

/// `MMYYYY` → the first day of that month.
fn period_start(period: &str) -> Option<NaiveDate> {
    let period = period.trim();
    let month = period.get(..2)?.parse().ok()?;
    let year = period.get(2..)?.parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, 1)
}

fn line(
    doc: &Document<'_>,
    id: NodeId,
    index: usize,
    ctx: &Context<'_>,
    sums: &mut [i128; 3],
    seen: &mut HashSet<u64>,
    sink: &mut Sink,
) {
    let at = |field: &str| format!("/{ROOT}/Employee[{index}]/{field}");
    if let Some(number) = child_text(doc, id, "PersonalId")
        && let Some(person) = check_personal_id(&number, None, || at("PersonalId"), ctx, sink)
        && !seen.insert(person.value)
    {
        sink.warning(
            codes::PERSON_DUPLICATE,
            || at("PersonalId"),
            || {
                format!(
                    "personal number {number} appears on more than one line (fine for several insurance relations, otherwise a double entry)"
                )
            },
        );
    }
    let mut amounts = [None; 3];
    for (i, column) in COLUMNS.iter().enumerate() {
        let Some(v) = child_text(doc, id, column).and_then(|t| cents(&t)) else {
            continue;
        };
        amounts[i] = Some(v);
        sums[i] += i128::from(v);
        if v < 0 {
            sink.error(
                codes::AMOUNT_NEGATIVE,
                || at(column),
                || format!("{column} must not be negative, but is {}", money(v.into())),
            );
        }
    }
    let [Some(base), Some(employee), Some(employer)] = amounts else {
        return;
    };
    if base > 0 && base < PLAUSIBLE_MINIMUM_BASE_CENTS {
        sink.warning(
            codes::BASE_BELOW_MINIMUM,
            || at("AssessmentBase"),
            || {
                format!(
                    "the assessment base {} is below the plausible minimum of {} a month",
                    money(base.into()),
                    money(PLAUSIBLE_MINIMUM_BASE_CENTS.into())
                )
            },
        );
    }
    if base >= 0
        && employee >= 0
        && employer >= 0
        && i128::from(employee) + i128::from(employer) > i128::from(base)
    {
        sink.warning(
            codes::CONTRIBUTIONS_EXCEED_BASE,
            || at("EmployeeContribution"),
            || {
                format!(
                    "the contributions ({} + {}) exceed the assessment base {}",
                    money(employee.into()),
                    money(employer.into()),
                    money(base.into())
                )
            },
        );
    }
}
