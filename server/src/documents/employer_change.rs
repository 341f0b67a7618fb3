//! Rules of the employer registration change (`EmployerChange`).

use uppsala::{Document, NodeId};

use super::common::{Sink, child, child_date, child_text, elements, is};
use super::{Context, LATE_AFTER_DAYS, codes};

const ROOT: &str = "EmployerChange";

/// The elements that each state one change.
const CHANGES: [&str; 4] = ["Name", "Address", "BankAccount", "Contact"];

/// The change has no repeated items: all its rules look at the head.
#[derive(Default)]
pub(super) struct Rules;

impl super::rules::Rules for Rules {
    fn head(&mut self, doc: &Document<'_>, root: NodeId, ctx: &Context<'_>, sink: &mut Sink) {
        check(doc, root, ctx, sink);
    }
}

fn check(doc: &Document<'_>, root: NodeId, ctx: &Context<'_>, sink: &mut Sink) {
    if let Some(d) = child_date(doc, root, "Effective")
        && (ctx.today - d).num_days() > LATE_AFTER_DAYS
    {
        sink.warning(
            codes::FILING_LATE,
            || format!("/{ROOT}/Effective"),
            || {
                format!(
                    "the change took effect on {d}, {} days before filing (more than {LATE_AFTER_DAYS})",
                    (ctx.today - d).num_days()
                )
            },
        );
    }
    let changes = elements(doc, root)
        .filter(|(id, e)| {
            CHANGES.iter().any(|c| is(e, c))
                // An empty Contact changes nothing.
                && (!is(e, "Contact") || elements(doc, *id).next().is_some())
        })
        .count();
    if changes == 0 {
        sink.error(
            codes::EMPLOYER_CHANGE_EMPTY,
            || format!("/{ROOT}"),
            || "the change states nothing that changes: give at least one of Name, Address, BankAccount, Contact".to_owned(),
        );
    }
    if let Some(account) = child(doc, root, "BankAccount")
        && let Some(iban) = child_text(doc, account, "Iban")
        && !iban_checksum_ok(&iban)
    {
        sink.error(
            codes::IBAN_CHECKSUM,
            || format!("/{ROOT}/BankAccount/Iban"),
            || format!("IBAN {iban} has wrong check digits"),
        );
    }
}

/// ISO 13616 check: move the first four characters to the end, letters to numbers
/// (A = 10 … Z = 35), the result modulo 97 is 1.
pub(super) fn iban_checksum_ok(iban: &str) -> bool {
    let iban = iban.trim();
    if iban.len() < 5
        || !iban
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return false;
    }
    let (head, rest) = iban.split_at(4);
    let mut remainder = 0u32;
    for b in rest.bytes().chain(head.bytes()) {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        remainder = if v >= 10 {
            (remainder * 100 + v) % 97
        } else {
            (remainder * 10 + v) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::iban_checksum_ok;

    #[test]
    fn iban() {
        // Published examples.
        assert!(iban_checksum_ok("SK3112000000198742637541"));
        assert!(iban_checksum_ok("GB82WEST12345698765432"));
        assert!(iban_checksum_ok("DE89370400440532013000"));
        assert!(!iban_checksum_ok("SK3112000000198742637542"));
        assert!(!iban_checksum_ok("SK1312000000198742637541"));
        assert!(!iban_checksum_ok("sk3112000000198742637541"));
        assert!(!iban_checksum_ok("SK31"));
    }
}
