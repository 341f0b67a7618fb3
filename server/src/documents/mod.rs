//! The document profiles: which filing a document is, its schema, and the business
//! rules beyond the schema. The reference profile (`ivan filing profile 1`).
//!
//! [`Profiles::check`] takes a document that intake has already parsed safely (UTF-8,
//! no DTD, no entities, a depth limit) and whose signature it has verified, and
//! answers which [`DocumentType`] it is and what is wrong with it: [`Finding`]s,
//! each an error (blocks acceptance) or a warning (accepted, reported). A document
//! whose root element is not one of ours is answered with a single
//! `document.unknown-type` error instead.
//!
//! # Namespace, root elements, schemas
//!
//! All four types share the namespace **`urn:ivan:filing:1`** ([`NAMESPACE`]); the
//! trailing `1` is the profile version (an incompatible profile gets a new
//! namespace, so old and new documents can be told apart). Elements are qualified,
//! attributes are not. One XSD per type, embedded in the binary
//! ([`DocumentType::schema`]) and published in `server/schemas/`:
//!
//! | type ([`DocumentType::code`]) | root element | schema | repeated item | number prefix |
//! |---|---|---|---|---|
//! | `contribution-report` — monthly contribution report, regular or corrective | `ContributionReport` | `contribution-report.xsd` | `Employee` | `V` |
//! | `registration-form` — registration form of a natural person, single or batch | `RegistrationForm` | `registration-form.xsd` | `Registration` | `R` |
//! | `employer-change` — employer registration change | `EmployerChange` | `employer-change.xsd` | — | `Z` |
//! | `pension-record-sheet` — pension record sheet (ELDP) | `PensionRecordSheet` | `pension-record-sheet.xsd` | `Period` | `E` |
//!
//! Every root element carries the attributes `employer` (the employer's registration
//! number, required; must equal the sender's) and `senderReference` (optional, 1–64
//! printable ASCII characters without spaces: the employer's own message id,
//! exposed as [`Checked::sender_reference`]). Its **last** child may be one
//! enveloped `ds:Signature` (namespace `http://www.w3.org/2000/09/xmldsig#`), which
//! the schemas accept with `<xs:any namespace="http://www.w3.org/2000/09/xmldsig#"
//! processContents="skip" minOccurs="0"/>` and do not look into (the signature
//! profile is intake's).
//!
//! - **ContributionReport** `period="MMYYYY" kind="regular|corrective"
//!   corrects="V…"`: one or more `Employee` lines (`PersonalId`, `Surname`,
//!   `GivenName`, `AssessmentBase`, `EmployeeContribution`, `EmployerContribution`),
//!   then `Totals` with the three column sums.
//! - **RegistrationForm**: one `Registration` (a single form) or more (a batch),
//!   each a `Person` (`PersonalId`, `Surname`, `GivenName`, `BirthDate`), an
//!   optional `RelationId` (the employer's own contract number) and one of
//!   `Hire/From` (PA), `Termination/To` (OD), `Interruption` with `Reason`,
//!   `From`, optional `To` (PE), `Change` with `Reason`, `From`, optional `To` (ZM),
//!   `Cancellation/DocumentNumber` (ZP, the number of the registration it cancels).
//!   Interruption reasons are Sociálna poisťovňa's codes: `1` unpaid leave, `2`
//!   long-term release for a public or trade-union office, `3` unexcused absence,
//!   `4` care of a person or child from the 11th day, `5` custody or imprisonment,
//!   `6` parental leave, `8` incapacity for work beyond 52 weeks, `9` strike
//!   (there is no `7`).
//! - **EmployerChange**: `Effective` date, then any of `Name`, `Address`,
//!   `BankAccount` (`Iban`, optional `Bic`), `Contact` (`Person`, `Email`, `Phone`).
//! - **PensionRecordSheet** `year="YYYY" kind="regular|corrective" corrects="E…"`:
//!   `Person`, one or more `Period` (`From`, `To`, `AssessmentBase`), then
//!   `TotalAssessmentBase`.
//!
//! Amounts are euro with at most two decimals (`-?d{1,13}(.d{1,2})?`), read as
//! integer cents — never floating point — and summed exactly. Dates are
//! `YYYY-MM-DD` without a time zone. Personal numbers are 9 or 10 digits without
//! the slash; their rule is in [`personal_id`].
//!
//! # Document numbers
//!
//! Accepted filings are numbered `<prefix><YYMM><6 digits>`, e.g. `R2611000123`.
//! The prefixes follow the Sociálna poisťovňa EZU manual where it gives one: `V`
//! for the monthly report (*mesačný výkaz*), `R` for the registration form of a
//! natural person (the manual's prefix for single forms; it numbers batches sent as
//! XML with `C`, but one type has one prefix here, and a single form is a batch of
//! one). The manual gives none for the other two, so: `Z` for the employer change
//! (*registračný list **z**amestnávateľa*) and `E` for the pension record sheet
//! (***E**LDP*). Corrections and cancellations must name a number with the prefix
//! of their own type (`reference.wrong-type`). Pre-registrations filed from phones
//! (not a type of this module: `ivan` makes their document) are numbered with `P`
//! (`crate::preregistrations`).
//!
//! # Order of checks
//!
//! 1. The root element decides the type (`document.unknown-type` otherwise).
//! 2. `employer.mismatch` is checked on every document.
//! 3. The type's schema (`xsd.invalid`). A document that fails it gets no business
//!    rules: their findings would only repeat the schema's.
//! 4. The business rules, in one pass over the document (plus a sort of a pension
//!    sheet's periods and a hash map per batch), so their cost grows linearly.
//!
//! At most [`MAX_FINDINGS`] findings are returned; if there are more, one last
//! `findings.truncated` finding says how many were left out (an error if any of
//! them is).
//!
//! # Large documents
//!
//! Filings of up to 50 MB (hundreds of thousands of lines) are expected. The rules
//! make one pass and build a finding's location and message only if it is kept.
//! Schema validation needs care: uppsala computes the line of each violation by
//! scanning the document from its start, so thousands of violations deep in a
//! large document would take minutes. A document over 64 KiB is therefore
//! validated in chunks of about 64 KiB of its repeated items (`Employee`,
//! `Registration`, `Period`), each with the document's beginning and end, which
//! gives the same verdict as validating it whole (the schemas have no constraints
//! across items) with exact locations; after [`MAX_FINDINGS`] violations the rest
//! are only counted. A large document without such items is validated whole
//! without positions first, and placed only if that stays cheap; otherwise its
//! violations are reported at the root element. Measured with a release build: a
//! 56 MB report of 200 000 lines is checked in about 3 seconds (after a
//! 1–1.5 second parse) whether it is valid, has a schema violation on every line,
//! or a rule error on every line.
//!
//! # Finding codes
//!
//! Codes are stable: clients may act on them. Locations are XPath-like paths with
//! 1-based indexes on repeating elements, e.g. `/ContributionReport/Employee[3]/AssessmentBase`,
//! and `/@name` for attributes.
//!
//! | code | severity | meaning |
//! |---|---|---|
//! | `document.unknown-type` | error | the root element is not one of the four types in `urn:ivan:filing:1` (the only finding; [`Profiles::check`] returns it as `Err`) |
//! | `xsd.invalid` | error | the document does not follow its type's schema (one finding per violation, with the validator's message) |
//! | `findings.truncated` | error or warning | more than [`MAX_FINDINGS`] findings; says how many more there were; an error if any of those is |
//! | `employer.mismatch` | error | the `employer` attribute is not the registration number of the employer sending the document |
//! | `person.id.format` | error | a personal number is not 9 or 10 digits (the schema refuses this first, as `xsd.invalid`) |
//! | `person.id.checksum` | error | a 10-digit personal number is not divisible by 11 (remainder-10 exception for births before 1986 accepted) |
//! | `person.id.date` | error | a personal number encodes a birth date that does not exist or is in the future |
//! | `person.id.legacy` | error | a 9-digit personal number for a birth in 1954 or later |
//! | `person.id.birth-date-mismatch` | error | a personal number encodes another birth date than the one the document states |
//! | `person.birth-date.future` | error | a stated birth date is in the future |
//! | `person.duplicate` | warning | a personal number appears on more than one line of a report (legitimate for several insurance relations) |
//! | `period.future` | error | a report's period (`MMYYYY`) or a pension sheet's year has not begun |
//! | `date.future` | error | a pension insurance period ends after today |
//! | `dates.order` | error | a period (interruption, change, pension period) ends before it begins |
//! | `dates.before-birth` | error | an effective date or period date is on or before the person's birth date |
//! | `dates.termination-before-hire` | error | in one batch, a person's termination is dated before their hire (same `RelationId`, or both without one) |
//! | `period.outside-year` | error | a pension period's date is outside the sheet's year |
//! | `period.overlap` | error | two pension periods of one sheet overlap |
//! | `amount.negative` | error | an assessment base or contribution is negative |
//! | `totals.mismatch` | error | a stated total differs from the sum of the lines (exact, in cents) |
//! | `correction.reference-missing` | error | a corrective report or sheet does not name (`corrects`) the document it corrects |
//! | `correction.reference-unexpected` | error | a regular report or sheet names a document in `corrects` |
//! | `reference.wrong-type` | error | a referenced document number (`corrects`, a cancellation's `DocumentNumber`) has another type's prefix |
//! | `employer-change.empty` | error | an employer change states nothing that changes |
//! | `bank-account.iban-checksum` | error | an IBAN's check digits are wrong (ISO 13616 mod 97) |
//! | `base.below-minimum` | warning | an assessment base is above zero but below 20.00 a month ([`PLAUSIBLE_MINIMUM_BASE_CENTS`]) |
//! | `contributions.exceed-base` | warning | a line's employee and employer contributions together exceed its assessment base |
//! | `filing.late` | warning | a registration or employer change is filed more than [`LATE_AFTER_DAYS`] days after it took effect |
//!
//! What the rules deliberately do not do: they do not consult the register (is the
//! person registered with this employer, does the corrected report exist — the
//! authority checks that), and a corrective report may not carry negative amounts
//! even where the authority would allow them for lines that were negative before.
//!
//! Examples of valid and invalid documents, and the finding each invalid one
//! yields, are in `ops/examples/` (its `expected.toml` is checked by the tests).

use std::fmt;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use uppsala::{Document, XsdValidator};

use crate::Error;
use crate::xml::Stop;
use crate::xml::cancel::Cancel;
use crate::xml::source::Source;

mod chunks;
mod common;
mod contribution_report;
mod employer_change;
mod pension_record_sheet;
pub mod personal_id;
mod registration_form;
pub mod retention;
mod rules;
mod schema;

pub use common::PersonIds;
use common::{Sink, attribute};

/// The namespace of all ivan filing types (profile version 1).
pub const NAMESPACE: &str = "urn:ivan:filing:1";

/// Escapes text for XML (and HTML) content and double- or single-quoted attributes.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
/// Refuses a per-document-type setting (`setting` in the configuration) that names a
/// type not in `known` (the profiles' codes, and `preregistration` where it applies).
pub fn check_type_names<T>(
    setting: &str,
    values: &std::collections::BTreeMap<String, T>,
    known: &[&str],
) -> Result<(), String> {
    match values.keys().find(|ty| !known.contains(&ty.as_str())) {
        Some(ty) => Err(format!(
            "{setting}: unknown document type {ty:?} (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// A duration set in seconds per document type: `by_type`'s value for `ty`, else
/// `default`.
pub fn per_type_secs(
    default: u64,
    by_type: &std::collections::BTreeMap<String, u64>,
    ty: &str,
) -> chrono::Duration {
    let secs = by_type.get(ty).copied().unwrap_or(default);
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// The XML-DSig namespace of the optional enveloped signature.
pub const DSIG_NAMESPACE: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Findings returned at most (plus one `findings.truncated`).
pub const MAX_FINDINGS: usize = 1000;
/// A registration or employer change filed more than this many days after its
/// effective date draws a `filing.late` warning (deregistrations and changes are
/// due within 8 days).
pub const LATE_AFTER_DAYS: i64 = 8;
/// An assessment base above zero but below this many cents (20.00 a month) draws
/// a `base.below-minimum` warning: too little for any real employment, even a
/// small agreement, so most likely a typo (a missing digit or decimal point).
pub const PLAUSIBLE_MINIMUM_BASE_CENTS: i64 = 20_00;

/// The finding codes (see the table in the module documentation).
pub mod codes {
    pub const DOCUMENT_UNKNOWN_TYPE: &str = "document.unknown-type";
    /// A large document that cannot be checked chunk by chunk (an intake limit,
    /// not a finding of the rules: see [`super::Unplanned::refusal`]).
    pub const DOCUMENT_TOO_LARGE: &str = "document.too-large";
    pub const XSD_INVALID: &str = "xsd.invalid";
    pub const FINDINGS_TRUNCATED: &str = "findings.truncated";
    pub const EMPLOYER_MISMATCH: &str = "employer.mismatch";
    pub const PERSON_ID_FORMAT: &str = "person.id.format";
    pub const PERSON_ID_CHECKSUM: &str = "person.id.checksum";
    pub const PERSON_ID_DATE: &str = "person.id.date";
    pub const PERSON_ID_LEGACY: &str = "person.id.legacy";
    pub const PERSON_ID_BIRTH_DATE_MISMATCH: &str = "person.id.birth-date-mismatch";
    pub const BIRTH_DATE_FUTURE: &str = "person.birth-date.future";
    pub const PERSON_DUPLICATE: &str = "person.duplicate";
    pub const PERIOD_FUTURE: &str = "period.future";
    pub const DATE_FUTURE: &str = "date.future";
    pub const DATES_ORDER: &str = "dates.order";
    pub const DATES_BEFORE_BIRTH: &str = "dates.before-birth";
    pub const DATES_TERMINATION_BEFORE_HIRE: &str = "dates.termination-before-hire";
    pub const PERIOD_OUTSIDE_YEAR: &str = "period.outside-year";
    pub const PERIOD_OVERLAP: &str = "period.overlap";
    pub const AMOUNT_NEGATIVE: &str = "amount.negative";
    pub const TOTALS_MISMATCH: &str = "totals.mismatch";
    pub const CORRECTION_REFERENCE_MISSING: &str = "correction.reference-missing";
    pub const CORRECTION_REFERENCE_UNEXPECTED: &str = "correction.reference-unexpected";
    pub const REFERENCE_WRONG_TYPE: &str = "reference.wrong-type";
    pub const EMPLOYER_CHANGE_EMPTY: &str = "employer-change.empty";
    pub const IBAN_CHECKSUM: &str = "bank-account.iban-checksum";
    pub const BASE_BELOW_MINIMUM: &str = "base.below-minimum";
    pub const CONTRIBUTIONS_EXCEED_BASE: &str = "contributions.exceed-base";
    pub const FILING_LATE: &str = "filing.late";

    /// Every code, in the order of the documentation's table.
    pub const ALL: [&str; 28] = [
        DOCUMENT_UNKNOWN_TYPE,
        XSD_INVALID,
        FINDINGS_TRUNCATED,
        EMPLOYER_MISMATCH,
        PERSON_ID_FORMAT,
        PERSON_ID_CHECKSUM,
        PERSON_ID_DATE,
        PERSON_ID_LEGACY,
        PERSON_ID_BIRTH_DATE_MISMATCH,
        BIRTH_DATE_FUTURE,
        PERSON_DUPLICATE,
        PERIOD_FUTURE,
        DATE_FUTURE,
        DATES_ORDER,
        DATES_BEFORE_BIRTH,
        DATES_TERMINATION_BEFORE_HIRE,
        PERIOD_OUTSIDE_YEAR,
        PERIOD_OVERLAP,
        AMOUNT_NEGATIVE,
        TOTALS_MISMATCH,
        CORRECTION_REFERENCE_MISSING,
        CORRECTION_REFERENCE_UNEXPECTED,
        REFERENCE_WRONG_TYPE,
        EMPLOYER_CHANGE_EMPTY,
        IBAN_CHECKSUM,
        BASE_BELOW_MINIMUM,
        CONTRIBUTIONS_EXCEED_BASE,
        FILING_LATE,
    ];
}

/// What the rules need to know besides the document.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The day of filing (dates after it are in the future).
    pub today: chrono::NaiveDate,
    /// The registration number of the employer sending the document.
    pub employer_registration_number: &'a str,
}

/// The filing types of the reference profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentType {
    ContributionReport,
    RegistrationForm,
    EmployerChange,
    PensionRecordSheet,
}

impl DocumentType {
    pub const ALL: [DocumentType; 4] = [
        Self::ContributionReport,
        Self::RegistrationForm,
        Self::EmployerChange,
        Self::PensionRecordSheet,
    ];

    /// Stable code used in the API and the database (also the serde form).
    pub fn code(self) -> &'static str {
        match self {
            Self::ContributionReport => "contribution-report",
            Self::RegistrationForm => "registration-form",
            Self::EmployerChange => "employer-change",
            Self::PensionRecordSheet => "pension-record-sheet",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == s)
    }

    /// The codes of every profile's type.
    pub fn codes() -> impl Iterator<Item = &'static str> {
        Self::ALL.into_iter().map(Self::code)
    }

    /// First letter of this type's document numbers (`R2611000123`); see the
    /// module documentation for why these letters.
    pub fn number_prefix(self) -> char {
        match self {
            Self::ContributionReport => 'V',
            Self::RegistrationForm => 'R',
            Self::EmployerChange => 'Z',
            Self::PensionRecordSheet => 'E',
        }
    }

    /// Local name of the root element (namespace [`NAMESPACE`]).
    pub fn root_element(self) -> &'static str {
        match self {
            Self::ContributionReport => "ContributionReport",
            Self::RegistrationForm => "RegistrationForm",
            Self::EmployerChange => "EmployerChange",
            Self::PensionRecordSheet => "PensionRecordSheet",
        }
    }

    /// The type whose root element is `{namespace}local_name`.
    pub fn from_root(namespace: Option<&str>, local_name: &str) -> Option<Self> {
        if namespace != Some(NAMESPACE) {
            return None;
        }
        Self::ALL
            .into_iter()
            .find(|t| t.root_element() == local_name)
    }

    /// The XSD of this type, as embedded in the binary.
    pub fn schema(self) -> &'static str {
        match self {
            Self::ContributionReport => include_str!("../../schemas/contribution-report.xsd"),
            Self::RegistrationForm => include_str!("../../schemas/registration-form.xsd"),
            Self::EmployerChange => include_str!("../../schemas/employer-change.xsd"),
            Self::PensionRecordSheet => include_str!("../../schemas/pension-record-sheet.xsd"),
        }
    }

    /// The schema's file name in `server/schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            Self::ContributionReport => "contribution-report.xsd",
            Self::RegistrationForm => "registration-form.xsd",
            Self::EmployerChange => "employer-change.xsd",
            Self::PensionRecordSheet => "pension-record-sheet.xsd",
        }
    }

    /// The root's child element that repeats (lines, registrations, periods).
    fn item_element(self) -> Option<&'static str> {
        match self {
            Self::ContributionReport => Some("Employee"),
            Self::RegistrationForm => Some("Registration"),
            Self::EmployerChange => None,
            Self::PensionRecordSheet => Some("Period"),
        }
    }
}

impl fmt::Display for DocumentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Blocks acceptance.
    Error,
    /// Accepted, but reported.
    Warning,
}

/// One thing found wrong with a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable dotted code, e.g. `person.id.checksum` (see the table above).
    pub code: String,
    /// One English sentence.
    pub message: String,
    /// XPath-like path to the node, e.g. `/ContributionReport/Employee[3]/AssessmentBase`.
    pub location: String,
}

/// One registration of a registration form, as pairing with pre-registrations needs
/// it (noted when the form is accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationItem {
    pub person_id: String,
    /// `hire`, `termination`, `interruption`, `change` or `cancellation`.
    pub kind: String,
    pub effective_date: Option<chrono::NaiveDate>,
}

/// The outcome of checking a document of one of our types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub document_type: DocumentType,
    /// The employer's own message id (`senderReference`), if the document has a
    /// well-formed one.
    pub sender_reference: Option<String>,
    /// Errors and warnings, in document order within each stage.
    pub findings: Vec<Finding>,
    /// What a registration form registers (person, kind, effective date), for pairing
    /// with pre-registrations; empty for other types.
    pub registrations: Vec<RegistrationItem>,
    /// Every personal id the document names (for the keyed person index).
    pub persons: PersonIds,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// The compiled schemas of the four types; build once at start-up and share.
pub struct Profiles {
    /// Indexed like [`DocumentType::ALL`].
    validators: [XsdValidator; 4],
}

impl fmt::Debug for Profiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiles")
            .field("namespace", &NAMESPACE)
            .field("types", &DocumentType::ALL.map(DocumentType::code))
            .finish()
    }
}

impl Profiles {
    /// Compiles the embedded schemas.
    pub fn load() -> Result<Profiles, Error> {
        let compile = |ty: DocumentType| {
            schema::compile(ty).map_err(|e| {
                Error::Invalid(format!(
                    "the embedded schema {} does not compile: {e}",
                    ty.schema_file()
                ))
            })
        };
        Ok(Profiles {
            validators: [
                compile(DocumentType::ContributionReport)?,
                compile(DocumentType::RegistrationForm)?,
                compile(DocumentType::EmployerChange)?,
                compile(DocumentType::PensionRecordSheet)?,
            ],
        })
    }

    fn validator(&self, ty: DocumentType) -> &XsdValidator {
        match ty {
            DocumentType::ContributionReport => &self.validators[0],
            DocumentType::RegistrationForm => &self.validators[1],
            DocumentType::EmployerChange => &self.validators[2],
            DocumentType::PensionRecordSheet => &self.validators[3],
        }
    }

    /// Which type `doc` is, and its findings; `Err` (code `document.unknown-type`)
    /// when it is none of ours.
    pub fn check(&self, doc: &Document<'_>, ctx: &Context<'_>) -> Result<Checked, Finding> {
        let Some((root, root_el)) = doc
            .document_element()
            .and_then(|id| doc.element(id).map(|e| (id, e)))
        else {
            return Err(unknown_type("/", "the document has no root element"));
        };
        let ns = root_el.name.namespace_uri.as_deref();
        let local = root_el.name.local_name.as_ref();
        let Some(ty) = DocumentType::from_root(ns, local) else {
            let shown = match ns {
                Some(ns) => format!("{{{ns}}}{local}"),
                None => local.to_owned(),
            };
            return Err(unknown_type(
                &format!("/{}", root_el.name.prefixed_name()),
                &format!(
                    "the root element {shown} is not a filing type of this intermediary \
                     (ContributionReport, RegistrationForm, EmployerChange or PensionRecordSheet \
                     in namespace {NAMESPACE})"
                ),
            ));
        };

        let sender_reference = sender_reference(root_el);

        let mut sink = Sink::new(MAX_FINDINGS, ty.root_element());
        let mut registrations = Vec::new();
        common::check_employer(ty.root_element(), root_el, ctx, &mut sink);
        let schema_failed = schema::validate(self.validator(ty), ty, doc, &mut sink);
        if !schema_failed {
            rules::run(ty, doc, root, ctx, &mut sink);
            if ty == DocumentType::RegistrationForm {
                registrations = rules::items(ty, doc, root)
                    .filter_map(|item| registration_form::item_of(doc, item))
                    .collect();
            }
        }
        Ok(Checked {
            document_type: ty,
            sender_reference,
            findings: sink.finish(),
            registrations,
            persons: common::person_ids(doc, root),
        })
    }
}

/// How the streamed path takes a large document (see [`Profiles::check_streamed`]):
/// its type and where its repeated items are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    ty: DocumentType,
    items: Vec<std::ops::Range<usize>>,
}

/// Why a large document has no [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unplanned {
    /// The document element is not one of our types: refused by its root alone.
    NotOurs,
    /// One of our types that cannot be cut at a run of items (an employer change,
    /// one huge item, a large head or tail): refused by [`Unplanned::refusal`],
    /// never built as one tree.
    Uncut(DocumentType, chunks::Uncut),
}

impl Unplanned {
    /// The refusal of a document of ours over `threshold` bytes that cannot be cut:
    /// its checks would need the whole tree, whose building and validation cannot
    /// be stopped part-way (seconds of CPU for tens of megabytes).
    pub fn refusal(&self, threshold: usize) -> Option<crate::xml::Refusal> {
        let Self::Uncut(ty, why) = self else {
            return None;
        };
        let message = match ty.item_element() {
            Some(item) => format!(
                "a document of type {ty} larger than {threshold} bytes must consist of a run of its {item} elements (at least 2, each at most {} bytes, with at most {} bytes before the first and after the last); this one does not: {why}",
                chunks::MAX_ITEM_BYTES,
                chunks::CHUNK_BYTES
            ),
            None => format!(
                "a document of type {ty} larger than {threshold} bytes is not accepted (one is a few kilobytes)"
            ),
        };
        Some(crate::xml::Refusal::new(
            codes::DOCUMENT_TOO_LARGE,
            message,
            format!("/{}", ty.root_element()),
        ))
    }
}

impl Plan {
    /// The plan of a large document, or why it has none. A linear pass (stopped
    /// when `cancel` is set); memory is 16 bytes per item.
    pub fn of<'a>(
        src: impl Into<Source<'a>>,
        cancel: &Cancel,
    ) -> Result<Result<Plan, Unplanned>, Stop> {
        let src = src.into();
        let Some(ty) = root_type(src)? else {
            return Ok(Err(Unplanned::NotOurs));
        };
        let Some(item) = ty.item_element() else {
            return Ok(Err(Unplanned::Uncut(ty, chunks::Uncut::TooFewItems(0))));
        };
        Ok(match chunks::split(src, item, cancel)? {
            Ok(items) => Ok(Plan { ty, items }),
            Err(why) => Err(Unplanned::Uncut(ty, why)),
        })
    }
}

/// The type named by the document element, read with namespaces.
fn root_type(src: Source<'_>) -> Result<Option<DocumentType>, Stop> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut reader = quick_xml::NsReader::from_reader(src.reader());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let event = match reader.read_resolved_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => return crate::xml::failed_read(&e).map_or(Ok(None), Err),
        };
        match event {
            (ns, Event::Start(e) | Event::Empty(e)) => {
                let ns = match ns {
                    ResolveResult::Bound(n) => match std::str::from_utf8(n.into_inner()) {
                        Ok(n) => Some(n),
                        Err(_) => return Ok(None),
                    },
                    _ => None,
                };
                let local = e.local_name();
                let Ok(local) = std::str::from_utf8(local.as_ref()) else {
                    return Ok(None);
                };
                return Ok(DocumentType::from_root(ns, local));
            }
            (_, Event::Eof) => return Ok(None),
            _ => {}
        }
    }
}

impl Profiles {
    /// [`Profiles::check`] for a document too large to build as one tree: the same
    /// checks and findings, taken chunk by chunk (module `chunks`), in the memory of one
    /// chunk plus the personal ids it names. Stops when `cancel` is set (between
    /// chunks); a chunk that is not well-formed refuses the document as the tree
    /// path would.
    pub fn check_streamed<'a>(
        &self,
        src: impl Into<Source<'a>>,
        plan: &Plan,
        ctx: &Context<'_>,
        cancel: &Cancel,
    ) -> Result<Checked, Stop> {
        let ty = plan.ty;
        let item = ty.item_element().unwrap_or_default();
        let root_name = ty.root_element();
        let validator = self.validator(ty);
        let mut sink = Sink::new(MAX_FINDINGS, root_name);
        // The rules' findings count only if the schema holds (as on the tree path,
        // where the rules do not run otherwise).
        let mut later = Sink::new(MAX_FINDINGS, root_name);
        let mut xsd = schema::Chunked::new(true);
        let mut rules = rules::for_type(ty);
        let mut persons = common::PersonIds::default();
        let mut registrations = Vec::new();
        let mut sender = None;
        let stopped = chunks::for_each(src.into(), &plan.items, |chunk| {
            if cancel.check().is_err() {
                return ControlFlow::Break(());
            }
            let doc = chunk.doc;
            let Some((root, root_el)) = doc
                .document_element()
                .and_then(|id| doc.element(id).map(|e| (id, e)))
            else {
                return ControlFlow::Continue(());
            };
            if chunk.first {
                sender = sender_reference(root_el);
                common::check_employer(root_name, root_el, ctx, &mut sink);
            }
            xsd.validate(validator, ty, item, &chunk);
            if chunk.first {
                rules.head(doc, root, ctx, &mut later);
            }
            let mut index = chunk.items_before;
            for (id, e, in_body) in own_elements(&chunk, root) {
                if in_body && common::is(e, item) {
                    index += 1;
                    rules.item(doc, id, index, ctx, &mut later);
                    if ty == DocumentType::RegistrationForm {
                        registrations.extend(registration_form::item_of(doc, id));
                    }
                }
                if e.name.namespace_uri.as_deref() == Some(NAMESPACE) {
                    persons.add(doc, id);
                }
            }
            if chunk.last {
                rules.tail(doc, root, ctx, &mut later);
            }
            ControlFlow::Continue(())
        })?;
        if stopped.is_some() {
            return Err(Stop::Cancelled);
        }
        if xsd.report(&mut sink) {
            registrations.clear();
        } else {
            sink.absorb(later);
        }
        Ok(Checked {
            document_type: ty,
            sender_reference: sender,
            findings: sink.finish(),
            registrations,
            persons,
        })
    }
}

/// The children of a chunk's root that are the chunk's own to read: those starting in
/// its body (`true`: items and what lies between them) and, in the first chunk, the
/// head's, in the last, the tail's (`false`). Every chunk repeats the head and tail;
/// only one reads each.
fn own_elements<'c, 'a>(
    chunk: &chunks::Chunk<'c, 'a>,
    root: uppsala::NodeId,
) -> impl Iterator<Item = (uppsala::NodeId, &'c uppsala::Element<'a>, bool)> {
    let (doc, body, first, last) = (chunk.doc, chunk.body.clone(), chunk.first, chunk.last);
    common::elements(doc, root).filter_map(move |(id, e)| {
        let start = doc.node_range(id).map_or(0, |r| r.start);
        if body.contains(&start) {
            Some((id, e, true))
        } else if (first && start < body.start) || (last && start >= body.end) {
            Some((id, e, false))
        } else {
            None
        }
    })
}

/// The root's `senderReference`, if it is well-formed.
fn sender_reference(root: &uppsala::Element<'_>) -> Option<String> {
    attribute(root, "senderReference")
        .filter(|r| (1..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

/// Every personal id named in an XML document (a filing or a pre-registration as
/// forwarded), read with intake's parser and limits. For indexing filings recorded
/// before the person index existed.
pub fn person_ids_in(bytes: &[u8]) -> Result<PersonIds, String> {
    // A large filing is read chunk by chunk, as intake checked it: one tree of a
    // 50 MB report takes most of a gigabyte.
    if bytes.len() > crate::xml::DEFAULT_STREAMING_THRESHOLD_BYTES {
        let text = crate::xml::text(bytes).map_err(|r| format!("{}: {}", r.code, r.message))?;
        if let Ok(Ok(plan)) = Plan::of(text, &Cancel::default()) {
            return person_ids_chunked(text.into(), &plan);
        }
    }
    let doc = crate::xml::build(bytes, &crate::xml::Limits::default())
        .map_err(|r| format!("{}: {}", r.code, r.message))?;
    let root = doc
        .document_element()
        .ok_or_else(|| "the document has no root element".to_owned())?;
    Ok(common::person_ids(&doc, root))
}

/// [`person_ids_in`] of a large document, in the memory of one chunk.
fn person_ids_chunked(src: Source<'_>, plan: &Plan) -> Result<PersonIds, String> {
    let mut persons = common::PersonIds::default();
    chunks::for_each::<()>(src, &plan.items, |chunk| {
        if let Some(root) = chunk.doc.document_element() {
            for (id, e, _) in own_elements(&chunk, root) {
                if e.name.namespace_uri.as_deref() == Some(NAMESPACE) {
                    persons.add(chunk.doc, id);
                }
            }
        }
        ControlFlow::Continue(())
    })
    .map_err(|stop| match stop {
        Stop::Refused(r) => format!("{}: {}", r.code, r.message),
        other => format!("{other:?}"),
    })?;
    Ok(persons)
}

fn unknown_type(location: &str, message: &str) -> Finding {
    Finding {
        severity: Severity::Error,
        code: codes::DOCUMENT_UNKNOWN_TYPE.to_owned(),
        message: message.to_owned(),
        location: location.to_owned(),
    }
}

#[cfg(test)]
mod tests;
