//! Tests of the profiles as a whole: the examples in `ops/examples` against their
//! manifest, the documentation's code table, signatures, limits and large documents.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::NaiveDate;
use serde::Deserialize;

use super::*;

fn profiles() -> &'static Profiles {
    static P: OnceLock<Profiles> = OnceLock::new();
    P.get_or_init(|| Profiles::load().expect("the embedded schemas compile"))
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/examples")
}

#[derive(Deserialize)]
struct Manifest {
    today: NaiveDate,
    employer: String,
    valid: Vec<ValidExample>,
    invalid: Vec<InvalidExample>,
}

#[derive(Deserialize)]
struct ValidExample {
    file: String,
    #[serde(rename = "type")]
    document_type: DocumentType,
}

#[derive(Deserialize)]
struct InvalidExample {
    file: String,
    code: String,
    severity: String,
    location: String,
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(examples_dir().join("expected.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

/// Parses like intake does: no DTD, no entities, depth limit.
fn parse(text: &str) -> uppsala::Document<'_> {
    uppsala::Parser::new()
        .with_forbid_dtd(true)
        .with_forbid_entities(true)
        .with_max_depth(64)
        .parse(text)
        .unwrap()
}

fn ctx(m: &Manifest) -> Context<'_> {
    Context {
        today: m.today,
        employer_registration_number: &m.employer,
    }
}

fn check_text(text: &str, ctx: &Context<'_>) -> Result<Checked, Finding> {
    profiles().check(&parse(text), ctx)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(examples_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn show(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "\n  {:?} {} at {}: {}",
                f.severity, f.code, f.location, f.message
            )
        })
        .collect()
}

#[test]
fn valid_examples_have_no_findings() {
    let m = manifest();
    for ex in &m.valid {
        let checked = check_text(&read(&ex.file), &ctx(&m))
            .unwrap_or_else(|f| panic!("{}: refused: {f:?}", ex.file));
        assert_eq!(checked.document_type, ex.document_type, "{}", ex.file);
        assert!(
            checked.findings.is_empty(),
            "{}:{}",
            ex.file,
            show(&checked.findings)
        );
        assert!(checked.sender_reference.is_some(), "{}", ex.file);
    }
    let types: BTreeSet<_> = m.valid.iter().map(|v| v.document_type.code()).collect();
    assert_eq!(
        types.len(),
        DocumentType::ALL.len(),
        "one valid example per type"
    );
}

#[test]
fn invalid_examples_yield_exactly_their_finding() {
    let m = manifest();
    for ex in &m.invalid {
        let result = check_text(&read(&ex.file), &ctx(&m));
        let findings = match result {
            Err(f) => vec![f],
            Ok(checked) => {
                assert_eq!(
                    checked.has_errors(),
                    ex.severity == "error",
                    "{}:{}",
                    ex.file,
                    show(&checked.findings)
                );
                checked.findings
            }
        };
        let all: Vec<&str> = findings.iter().map(|f| f.code.as_str()).collect();
        assert!(
            !findings.is_empty() && all.iter().all(|c| *c == ex.code),
            "{}: expected only {}, got:{}",
            ex.file,
            ex.code,
            show(&findings)
        );
        if ex.code != codes::XSD_INVALID {
            assert_eq!(findings.len(), 1, "{}:{}", ex.file, show(&findings));
        }
        for f in &findings {
            let severity = serde_json::to_value(f.severity).unwrap();
            assert_eq!(severity, ex.severity.as_str(), "{}", ex.file);
            assert!(!f.message.is_empty() && !f.message.contains('\n'));
        }
        assert!(
            findings.iter().any(|f| f.location == ex.location),
            "{}: expected a finding at {}:{}",
            ex.file,
            ex.location,
            show(&findings)
        );
    }
}

#[test]
fn unknown_types_are_refused_not_checked() {
    let m = manifest();
    let refused = check_text(&read("invalid/unknown-namespace.xml"), &ctx(&m)).unwrap_err();
    assert_eq!(refused.code, codes::DOCUMENT_UNKNOWN_TYPE);
    assert_eq!(refused.severity, Severity::Error);
    assert!(
        refused.message.contains("urn:example:payroll"),
        "{}",
        refused.message
    );
    let refused = check_text(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/>",
        &ctx(&m),
    )
    .unwrap_err();
    assert_eq!(refused.location, "/ds:Signature");
}

#[test]
fn every_example_file_is_in_the_manifest() {
    let m = manifest();
    let listed: BTreeSet<String> = m
        .valid
        .iter()
        .map(|v| v.file.clone())
        .chain(m.invalid.iter().map(|i| i.file.clone()))
        .collect();
    assert_eq!(
        listed.len(),
        m.valid.len() + m.invalid.len(),
        "duplicate entries"
    );
    let mut on_disk = BTreeSet::new();
    for dir in ["valid", "invalid"] {
        for entry in std::fs::read_dir(examples_dir().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".xml") {
                on_disk.insert(format!("{dir}/{name}"));
            }
        }
    }
    assert_eq!(listed, on_disk);
}

#[test]
fn the_examples_readme_lists_every_example() {
    let m = manifest();
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
    for ex in &m.invalid {
        let name = ex.file.trim_start_matches("invalid/");
        let row = format!("| `{name}` | `{}` | {}", ex.code, ex.severity);
        assert!(readme.contains(&row), "README.md lacks {row}");
    }
    for ex in &m.valid {
        let name = ex.file.trim_start_matches("valid/");
        let row = format!("| `{name}` | {} |", ex.document_type.code());
        assert!(readme.contains(&row), "README.md lacks {row}");
    }
}

#[test]
fn every_rule_has_an_invalid_example() {
    let m = manifest();
    let covered: BTreeSet<&str> = m.invalid.iter().map(|i| i.code.as_str()).collect();
    // Not reachable with a single small file: findings.truncated needs more than
    // MAX_FINDINGS findings (tested below); person.id.format is refused by the
    // schema first (tested in personal_id).
    let exempt = [codes::FINDINGS_TRUNCATED, codes::PERSON_ID_FORMAT];
    for code in codes::ALL {
        assert!(
            covered.contains(code) || exempt.contains(&code),
            "no invalid example yields {code}"
        );
    }
    for code in &covered {
        assert!(codes::ALL.contains(code), "{code} is not a known code");
    }
}

#[test]
fn the_documented_code_table_is_complete_and_in_order() {
    let source = include_str!("mod.rs");
    let documented: Vec<(&str, &str)> = source
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| {
            let (code, rest) = l.split_once('`')?;
            let severity = rest.trim_start_matches(" |").split('|').next()?.trim();
            Some((code, severity))
        })
        .filter(|(code, _)| code.contains('.'))
        .collect();
    let codes_documented: Vec<&str> = documented.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes_documented, codes::ALL);
    // Severities in the table agree with the examples.
    let m = manifest();
    for (code, severity) in documented {
        for ex in m.invalid.iter().filter(|i| i.code == code) {
            assert_eq!(ex.severity, severity, "{code}");
        }
    }
}

#[test]
fn document_types() {
    for ty in DocumentType::ALL {
        assert_eq!(DocumentType::from_code(ty.code()), Some(ty));
        assert_eq!(
            serde_json::to_value(ty).unwrap(),
            serde_json::Value::from(ty.code())
        );
        assert_eq!(
            serde_json::from_value::<DocumentType>(ty.code().into()).unwrap(),
            ty
        );
        assert_eq!(ty.to_string(), ty.code());
        assert_eq!(
            DocumentType::from_root(Some(NAMESPACE), ty.root_element()),
            Some(ty)
        );
        assert_eq!(DocumentType::from_root(None, ty.root_element()), None);
        assert!(ty.number_prefix().is_ascii_uppercase());
        assert!(
            ty.schema()
                .contains(&format!("<xs:element name=\"{}\"", ty.root_element()))
        );
        let on_disk = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas")
                .join(ty.schema_file()),
        )
        .unwrap();
        assert_eq!(on_disk, ty.schema());
    }
    assert_eq!(DocumentType::from_code("invoice"), None);
    let prefixes: BTreeSet<char> = DocumentType::ALL
        .iter()
        .map(|t| t.number_prefix())
        .collect();
    assert_eq!(prefixes.len(), 4);
    assert_eq!(DocumentType::ContributionReport.number_prefix(), 'V');
    assert_eq!(DocumentType::RegistrationForm.number_prefix(), 'R');
}

#[test]
fn profiles_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Profiles>();
    assert!(format!("{:?}", profiles()).contains(NAMESPACE));
}

#[test]
fn the_schemas_share_their_common_definitions() {
    let block = |xsd: &'static str| {
        let start = xsd.find("<!-- ===== BEGIN common").unwrap();
        let end = xsd.find("<!-- ===== END common").unwrap();
        &xsd[start..end]
    };
    let first = block(DocumentType::ALL[0].schema());
    for ty in DocumentType::ALL {
        assert_eq!(block(ty.schema()), first, "{}", ty.schema_file());
        assert!(
            ty.schema()
                .contains("targetNamespace=\"urn:ivan:filing:1\"")
        );
        // Chunked validation relies on there being no constraints across items.
        for construct in ["xs:unique", "xs:key", "xs:keyref", "xs:assert"] {
            assert!(!ty.schema().contains(construct), "{}", ty.schema_file());
        }
        if let Some(item) = ty.item_element() {
            assert!(
                ty.schema()
                    .contains(&format!("<xs:element name=\"{item}\" type=\"f:"))
                    && ty.schema().contains("maxOccurs=\"unbounded\""),
                "{item}"
            );
        }
        assert!(ty.schema().contains(
            "<xs:any namespace=\"http://www.w3.org/2000/09/xmldsig#\" processContents=\"skip\" minOccurs=\"0\"/>"
        ));
    }
}

/// A structurally real enveloped signature (the values are dummies: the schema
/// does not look into it; intake verifies it before the profiles see the document).
const SIGNATURE: &str = r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/><ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>MEUCIQDdummy</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>MIIBdummy</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"#;

fn with_signature(xml: &str, signature: &str) -> String {
    let close = xml.rfind("</").unwrap();
    format!("{}{signature}{}", &xml[..close], &xml[close..])
}

#[test]
fn signed_documents_follow_the_schemas() {
    let m = manifest();
    for ex in &m.valid {
        let signed = with_signature(&read(&ex.file), SIGNATURE);
        let checked = check_text(&signed, &ctx(&m)).unwrap();
        assert!(
            checked.findings.is_empty(),
            "{}:{}",
            ex.file,
            show(&checked.findings)
        );
        // The prefix is the signer's choice.
        let default_ns = with_signature(
            &read(&ex.file),
            &SIGNATURE.replace("ds:", "").replace("xmlns:ds=", "xmlns="),
        );
        let checked = check_text(&default_ns, &ctx(&m)).unwrap();
        assert!(
            checked.findings.is_empty(),
            "{}:{}",
            ex.file,
            show(&checked.findings)
        );
        // Two signatures, or an element of another namespace in its place, are not.
        let twice = with_signature(&signed, SIGNATURE);
        let checked = check_text(&twice, &ctx(&m)).unwrap();
        assert!(checked.has_errors(), "{}", ex.file);
        assert!(
            checked
                .findings
                .iter()
                .all(|f| f.code == codes::XSD_INVALID)
        );
        let foreign = with_signature(
            &read(&ex.file),
            &SIGNATURE.replace("http://www.w3.org/2000/09/xmldsig#\"><", "urn:x\"><"),
        );
        assert!(
            check_text(&foreign, &ctx(&m)).unwrap().has_errors(),
            "{}",
            ex.file
        );
    }
}

#[test]
fn employer_mismatch_is_reported_with_schema_errors() {
    let m = manifest();
    let xml = read("invalid/xsd-period-format.xml").replace("EMP-0042", "EMP-0043");
    let checked = check_text(&xml, &ctx(&m)).unwrap();
    let all: Vec<&str> = checked.findings.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(all, [codes::EMPLOYER_MISMATCH, codes::XSD_INVALID]);
}

#[test]
fn schema_violations_of_attributes_name_the_attribute() {
    let m = manifest();
    let xml = read("valid/contribution-report.xml").replace(" kind=\"regular\"", "");
    let checked = check_text(&xml, &ctx(&m)).unwrap();
    assert_eq!(
        checked
            .findings
            .iter()
            .map(|f| f.location.as_str())
            .collect::<Vec<_>>(),
        ["/ContributionReport/@kind"],
        "{}",
        show(&checked.findings)
    );
    let xml = read("valid/contribution-report.xml")
        .replace(" kind=\"regular\"", " kind=\"regular\" extra=\"1\"");
    let checked = check_text(&xml, &ctx(&m)).unwrap();
    assert_eq!(checked.findings[0].location, "/ContributionReport/@extra");
    // An element whose text is the offending value stays the location.
    let xml =
        read("valid/employer-change.xml").replace("<Country>SK</Country>", "<Country>sk</Country>");
    let checked = check_text(&xml, &ctx(&m)).unwrap();
    assert_eq!(
        checked.findings[0].location,
        "/EmployerChange/Address/Country"
    );
}

#[test]
fn sender_reference_is_exposed() {
    let m = manifest();
    let xml = read("valid/contribution-report.xml");
    let checked = check_text(&xml, &ctx(&m)).unwrap();
    assert_eq!(
        checked.sender_reference.as_deref(),
        Some("PAY-2026-10-0001")
    );
    let without = xml.replace(" senderReference=\"PAY-2026-10-0001\"", "");
    let checked = check_text(&without, &ctx(&m)).unwrap();
    assert_eq!(checked.sender_reference, None);
    assert!(checked.findings.is_empty());
}

#[test]
fn finding_serialisation() {
    let f = Finding {
        severity: Severity::Warning,
        code: "filing.late".into(),
        message: "m".into(),
        location: "/R".into(),
    };
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        serde_json::json!({"severity": "warning", "code": "filing.late", "message": "m", "location": "/R"})
    );
}

// ---- generated documents: limits, large documents, rules in detail ----

const EMPLOYER: &str = "EMP-0042";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

fn gen_ctx() -> Context<'static> {
    Context {
        today: today(),
        employer_registration_number: EMPLOYER,
    }
}

/// Distinct valid 10-digit personal numbers (born from 1980 on), in a fixed order.
fn personal_number(i: usize) -> &'static str {
    static ALL: OnceLock<Vec<String>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        (0usize..)
            .map(|c| {
                let (serial, day, month, year) = (
                    c % 1000,
                    1 + (c / 1000) % 28,
                    1 + (c / 28_000) % 12,
                    80 + c / 336_000,
                );
                format!("{year:02}{month:02}{day:02}{serial:03}")
            })
            .filter_map(|head| {
                let v: u64 = head.parse().ok()?;
                (v % 11 < 10).then(|| format!("{head}{}", v % 11))
            })
            .take(20_000)
            .collect()
    });
    &all[i]
}

/// A contribution report with `n` lines, line i with assessment base `amount(i)`.
fn big_report(n: usize, amount: impl Fn(usize) -> &'static str) -> String {
    big_report_with(n, amount, |i| personal_number(i).to_owned())
}

fn big_report_with(
    n: usize,
    amount: impl Fn(usize) -> &'static str,
    personal_id: impl Fn(usize) -> String,
) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\"?>\n<ContributionReport xmlns=\"{NAMESPACE}\" employer=\"{EMPLOYER}\" period=\"102026\" kind=\"regular\">\n"
    );
    let mut total = 0i64;
    for i in 0..n {
        let a = amount(i);
        total += common::cents(a).unwrap_or(0);
        s.push_str(&format!(
            "  <Employee>\n    <PersonalId>{}</PersonalId>\n    <Surname>Novák</Surname>\n    <GivenName>Peter</GivenName>\n    <AssessmentBase>{a}</AssessmentBase>\n    <EmployeeContribution>0.00</EmployeeContribution>\n    <EmployerContribution>0.00</EmployerContribution>\n  </Employee>\n",
            personal_id(i)
        ));
    }
    s.push_str(&format!(
        "  <Totals>\n    <AssessmentBase>{}</AssessmentBase>\n    <EmployeeContribution>0.00</EmployeeContribution>\n    <EmployerContribution>0.00</EmployerContribution>\n  </Totals>\n</ContributionReport>\n",
        common::money(total.into())
    ));
    s
}

#[test]
fn personal_number_generator_is_valid_and_distinct() {
    let mut seen = BTreeSet::new();
    for i in 0..20_000 {
        let n = personal_number(i);
        personal_id::check(n, None, today()).unwrap();
        assert!(seen.insert(n));
    }
}

#[test]
fn findings_are_capped() {
    // Every line's personal number fails its checksum (and so is not compared for
    // duplicates).
    let xml = big_report_with(MAX_FINDINGS + 500, |_| "100.00", |_| "8001011239".into());
    let checked = check_text(&xml, &gen_ctx()).unwrap();
    assert_eq!(checked.findings.len(), MAX_FINDINGS + 1);
    let last = checked.findings.last().unwrap();
    assert_eq!(last.code, codes::FINDINGS_TRUNCATED);
    assert_eq!(last.severity, Severity::Error);
    assert_eq!(last.location, "/ContributionReport");
    assert!(
        checked.findings[..MAX_FINDINGS]
            .iter()
            .all(|f| f.code == codes::PERSON_ID_CHECKSUM)
    );
    assert!(
        last.message.starts_with("500 more findings"),
        "{}",
        last.message
    );
}

#[test]
fn large_documents_are_validated_in_chunks_with_exact_locations() {
    let n = 3000;
    let bad = [4usize, 1499, 1500, 2999];
    let xml = big_report(n, |i| if bad.contains(&i) { "1.001" } else { "100.00" });
    assert!(xml.len() > 8 * chunks::CHUNK_BYTES, "several chunks");
    let checked = check_text(&xml, &gen_ctx()).unwrap();
    let locations: Vec<&str> = checked
        .findings
        .iter()
        .map(|f| f.location.as_str())
        .collect();
    let expected: Vec<String> = bad
        .iter()
        .map(|i| format!("/ContributionReport/Employee[{}]/AssessmentBase", i + 1))
        .collect();
    assert_eq!(locations, expected, "{}", show(&checked.findings));
    assert!(
        checked
            .findings
            .iter()
            .all(|f| f.code == codes::XSD_INVALID)
    );

    // A schema error in the part every chunk repeats is reported once.
    let xml2 = xml.replace("period=\"102026\"", "period=\"13-2026\"");
    let checked = check_text(&xml2, &gen_ctx()).unwrap();
    assert_eq!(
        checked.findings.len(),
        bad.len() + 1,
        "{}",
        show(&checked.findings)
    );
    assert_eq!(checked.findings[0].location, "/ContributionReport/@period");

    // A valid large document: no findings; business rules locate lines exactly.
    let xml3 = big_report(n, |i| if i == 2500 { "-5.00" } else { "100.00" });
    let checked = check_text(&xml3, &gen_ctx()).unwrap();
    assert_eq!(
        checked
            .findings
            .iter()
            .map(|f| (f.code.as_str(), f.location.as_str()))
            .collect::<Vec<_>>(),
        [(
            codes::AMOUNT_NEGATIVE,
            "/ContributionReport/Employee[2501]/AssessmentBase"
        )]
    );
}

#[test]
fn chunks_miss_nothing_between_items() {
    // Misplaced elements and text after items 150..450, across chunk boundaries.
    let xml = big_report(2000, |_| "100.00");
    let mut out = String::new();
    for (i, part) in xml.split("  </Employee>\n").enumerate() {
        out.push_str(part);
        if part.contains("</ContributionReport>") {
            break;
        }
        out.push_str("  </Employee>\n");
        if (150..450).contains(&i) {
            out.push_str("  <Junk/>text\n");
        }
    }
    assert!(out.len() > 4 * chunks::CHUNK_BYTES);
    let doc = parse(&out);
    let chunked = profiles().check(&doc, &gen_ctx()).unwrap();
    // The same document validated whole (without positions, which are slow).
    let whole = profiles()
        .validator(DocumentType::ContributionReport)
        .validate(&doc.clone().into_static());
    let junk = |m: &str| m.contains("'Junk'");
    assert_eq!(whole.iter().filter(|e| junk(&e.message)).count(), 300);
    let found: Vec<&Finding> = chunked
        .findings
        .iter()
        .filter(|f| junk(&f.message))
        .collect();
    assert_eq!(found.len(), 300, "{}", show(&chunked.findings[..5]));
    assert_eq!(found[0].location, "/ContributionReport/Junk");
}

#[test]
fn many_schema_errors_in_a_large_document_stay_bounded() {
    let n = 4000;
    let xml = big_report(n, |_| "1.001");
    let checked = check_text(&xml, &gen_ctx()).unwrap();
    assert_eq!(checked.findings.len(), MAX_FINDINGS + 1);
    assert_eq!(
        checked.findings[MAX_FINDINGS - 1].location,
        format!("/ContributionReport/Employee[{MAX_FINDINGS}]/AssessmentBase")
    );
    let last = checked.findings.last().unwrap();
    assert_eq!(last.code, codes::FINDINGS_TRUNCATED);
    assert!(
        last.message
            .starts_with(&format!("{} more findings", n - MAX_FINDINGS)),
        "{}",
        last.message
    );
}

#[test]
fn a_large_document_without_items_is_validated_whole() {
    // 20 000 unknown elements in an employer change: counted without positions,
    // too many to place within the scan budget, so reported at the root.
    let junk = "<Junk/>".repeat(20_000);
    let xml = read("valid/employer-change.xml")
        .replace("</EmployerChange>", &format!("{junk}</EmployerChange>"));
    assert!(xml.len() > schema::DIRECT_MAX);
    let checked = check_text(&xml, &gen_ctx()).unwrap();
    assert!(checked.has_errors());
    assert_eq!(checked.findings.len(), MAX_FINDINGS + 1);
    assert!(
        checked.findings[..MAX_FINDINGS]
            .iter()
            .all(|f| f.code == codes::XSD_INVALID)
    );
    // A few: placed exactly.
    let xml = read("valid/employer-change.xml").replace(
        "</EmployerChange>",
        &format!(
            "<!-- {} --><Junk/></EmployerChange>",
            "x".repeat(schema::DIRECT_MAX)
        ),
    );
    let checked = check_text(&xml, &gen_ctx()).unwrap();
    assert_eq!(
        checked.findings[0].location,
        "/EmployerChange/Junk",
        "{}",
        show(&checked.findings)
    );
}

fn registration(person: (&str, &str), relation: Option<&str>, kind: &str) -> String {
    let relation = relation.map_or(String::new(), |r| format!("<RelationId>{r}</RelationId>"));
    format!(
        "<Registration><Person><PersonalId>{}</PersonalId><Surname>S</Surname><GivenName>G</GivenName><BirthDate>{}</BirthDate></Person>{relation}{kind}</Registration>",
        person.0, person.1
    )
}

fn form(items: &[String]) -> String {
    format!(
        "<RegistrationForm xmlns=\"{NAMESPACE}\" employer=\"{EMPLOYER}\">{}</RegistrationForm>",
        items.concat()
    )
}

fn codes_of(xml: &str) -> Vec<(String, String)> {
    check_text(xml, &gen_ctx())
        .unwrap()
        .findings
        .into_iter()
        .map(|f| (f.code, f.location))
        .collect()
}

#[test]
fn termination_before_hire_compares_the_same_person_and_relation() {
    let p = ("9206154122", "1992-06-15");
    let q = ("9262030338", "1992-12-03");
    let hire = |d: &str| format!("<Hire><From>{d}</From></Hire>");
    let term = |d: &str| format!("<Termination><To>{d}</To></Termination>");
    // Termination first in the batch, hire later: still found.
    let xml = form(&[
        registration(p, None, &term("2026-11-14")),
        registration(p, None, &hire("2026-11-16")),
    ]);
    assert_eq!(
        codes_of(&xml),
        [(
            codes::DATES_TERMINATION_BEFORE_HIRE.to_owned(),
            "/RegistrationForm/Registration[1]/Termination/To".to_owned()
        )]
    );
    // Different people, different relations: nothing to compare.
    let xml = form(&[
        registration(q, None, &term("2026-11-14")),
        registration(p, None, &hire("2026-11-16")),
    ]);
    assert_eq!(codes_of(&xml), []);
    let xml = form(&[
        registration(p, Some("A"), &term("2026-11-14")),
        registration(p, Some("B"), &hire("2026-11-16")),
    ]);
    assert_eq!(codes_of(&xml), []);
    // Same relation: compared.
    let xml = form(&[
        registration(p, Some("A"), &hire("2026-11-16")),
        registration(p, Some("A"), &term("2026-11-14")),
    ]);
    assert_eq!(codes_of(&xml).len(), 1);
    // On the day of the hire is fine.
    let xml = form(&[
        registration(p, None, &hire("2026-11-16")),
        registration(p, None, &term("2026-11-16")),
    ]);
    assert_eq!(codes_of(&xml), []);
}

#[test]
fn registration_dates() {
    let p = ("9206154122", "1992-06-15");
    // Open-ended interruption and change are fine; far-future hires too.
    let xml = form(&[
        registration(
            p,
            None,
            "<Interruption><Reason>9</Reason><From>2026-11-19</From></Interruption>",
        ),
        registration(
            p,
            None,
            "<Change><Reason>other</Reason><From>2026-11-19</From></Change>",
        ),
        registration(p, None, "<Hire><From>2027-06-01</From></Hire>"),
    ]);
    assert_eq!(codes_of(&xml), []);
    // Late by more than eight days, for each kind with an effective date.
    let xml = form(&[
        registration(
            p,
            None,
            "<Interruption><Reason>1</Reason><From>2026-11-11</From></Interruption>",
        ),
        registration(
            p,
            None,
            "<Change><Reason>other</Reason><From>2026-11-12</From></Change>",
        ),
        registration(p, None, "<Hire><From>2026-01-01</From></Hire>"),
    ]);
    assert_eq!(
        codes_of(&xml),
        [
            (
                codes::FILING_LATE.to_owned(),
                "/RegistrationForm/Registration[1]/Interruption/From".to_owned()
            ),
            (
                codes::FILING_LATE.to_owned(),
                "/RegistrationForm/Registration[3]/Hire/From".to_owned()
            ),
        ]
    );
    // A hire on the birth date.
    let xml = form(&[registration(
        ("2611150014", "2026-11-15"),
        None,
        "<Hire><From>2026-11-15</From></Hire>",
    )]);
    assert_eq!(
        codes_of(&xml),
        [(
            codes::DATES_BEFORE_BIRTH.to_owned(),
            "/RegistrationForm/Registration[1]/Hire/From".to_owned()
        )]
    );
}

fn sheet(periods: &[(&str, &str, &str)], total: &str) -> String {
    let periods: String = periods
        .iter()
        .map(|(f, t, b)| {
            format!(
                "<Period><From>{f}</From><To>{t}</To><AssessmentBase>{b}</AssessmentBase></Period>"
            )
        })
        .collect();
    format!(
        "<PensionRecordSheet xmlns=\"{NAMESPACE}\" employer=\"{EMPLOYER}\" year=\"2025\" kind=\"regular\"><Person><PersonalId>8507073113</PersonalId><Surname>V</Surname><GivenName>T</GivenName><BirthDate>1985-07-07</BirthDate></Person>{periods}<TotalAssessmentBase>{total}</TotalAssessmentBase></PensionRecordSheet>"
    )
}

#[test]
fn pension_periods_overlap_whatever_their_order() {
    // Unsorted, touching (end + 1 day = next start) is fine.
    let xml = sheet(
        &[
            ("2025-07-01", "2025-12-31", "1.00"),
            ("2025-01-01", "2025-03-31", "1.00"),
            ("2025-04-01", "2025-06-30", "1.00"),
        ],
        "3.00",
    );
    assert_eq!(codes_of(&xml), []);
    // Same day end and start overlaps; a period inside a long one overlaps.
    let xml = sheet(
        &[
            ("2025-01-01", "2025-12-31", "1.00"),
            ("2025-03-01", "2025-03-31", "1.00"),
            ("2025-12-31", "2025-12-31", "1.00"),
        ],
        "3.00",
    );
    assert_eq!(
        codes_of(&xml),
        [
            (
                codes::PERIOD_OVERLAP.to_owned(),
                "/PensionRecordSheet/Period[2]".to_owned()
            ),
            (
                codes::PERIOD_OVERLAP.to_owned(),
                "/PensionRecordSheet/Period[3]".to_owned()
            ),
        ]
    );
    // A reversed period is dates.order only (not also an overlap).
    let xml = sheet(
        &[
            ("2025-06-30", "2025-01-01", "1.00"),
            ("2025-03-01", "2025-03-31", "1.00"),
        ],
        "2.00",
    );
    assert_eq!(
        codes_of(&xml),
        [(
            codes::DATES_ORDER.to_owned(),
            "/PensionRecordSheet/Period[1]/To".to_owned()
        )]
    );
}

#[test]
fn totals_are_exact_decimal_sums() {
    // 0.10 × 3 = 0.30 exactly, and big sums do not overflow.
    let xml = big_report(3, |_| "0.10").replace(
        "<Totals>\n    <AssessmentBase>0.30</AssessmentBase>",
        "<Totals>\n    <AssessmentBase>0.3</AssessmentBase>",
    );
    assert_eq!(
        codes_of(&xml),
        [
            (
                codes::BASE_BELOW_MINIMUM.to_owned(),
                "/ContributionReport/Employee[1]/AssessmentBase".to_owned()
            ),
            (
                codes::BASE_BELOW_MINIMUM.to_owned(),
                "/ContributionReport/Employee[2]/AssessmentBase".to_owned()
            ),
            (
                codes::BASE_BELOW_MINIMUM.to_owned(),
                "/ContributionReport/Employee[3]/AssessmentBase".to_owned()
            )
        ]
    );
}

/// Both paths on one text: the same verdict, findings, persons and registrations.
fn assert_paths_agree(name: &str, text: &str, ctx: &Context<'_>) -> bool {
    let Ok(plan) = Plan::of(text, &Cancel::default()).unwrap() else {
        return false;
    };
    let tree = check_text(text, ctx).unwrap_or_else(|f| panic!("{name}: {f:?}"));
    let streamed = profiles()
        .check_streamed(text, &plan, ctx, &Cancel::default())
        .unwrap_or_else(|s| panic!("{name}: {s:?}"));
    // Read from a file, as a staged body is: the same plan and the same result.
    let file = crate::xml::source::file_of(text);
    let src = crate::xml::source::Source::File {
        file: &file,
        len: text.len(),
    };
    assert_eq!(
        Plan::of(src, &Cancel::default()).unwrap(),
        Ok(plan.clone()),
        "{name}"
    );
    let from_file = profiles()
        .check_streamed(src, &plan, ctx, &Cancel::default())
        .unwrap_or_else(|s| panic!("{name}: {s:?}"));
    assert_eq!(streamed, from_file, "{name}: in memory and from a file");
    assert_eq!(
        tree.findings,
        streamed.findings,
        "{name}: tree {} streamed {}",
        show(&tree.findings),
        show(&streamed.findings)
    );
    assert_eq!(tree, streamed, "{name}");
    true
}

/// `text` with its run of items repeated until it spans several chunks.
fn inflated(text: &str) -> Option<String> {
    let plan = Plan::of(text, &Cancel::default()).unwrap().ok()?;
    let (first, last) = (plan.items.first()?, plan.items.last()?);
    let run = &text[first.start..last.end];
    let times = (5 * chunks::CHUNK_BYTES) / run.len() + 1;
    Some(format!(
        "{}{}{}",
        &text[..first.start],
        run.repeat(times),
        &text[last.end..]
    ))
}

#[test]
fn the_streamed_path_finds_what_the_tree_path_finds_in_every_example() {
    let m = manifest();
    let ctx = ctx(&m);
    let files = m
        .valid
        .iter()
        .map(|v| v.file.clone())
        .chain(m.invalid.iter().map(|i| i.file.clone()));
    let (mut compared, mut inflated_compared) = (0, 0);
    for file in files {
        let text = read(&file);
        compared += usize::from(assert_paths_agree(&file, &text, &ctx));
        if let Some(big) = inflated(&text) {
            assert!(big.len() > 4 * chunks::CHUNK_BYTES);
            inflated_compared += usize::from(assert_paths_agree(&file, &big, &ctx));
        }
    }
    // Most examples have a run of items to cut at; the others take the tree path.
    assert!(compared >= 10, "only {compared} examples had a plan");
    assert!(inflated_compared >= 10, "only {inflated_compared} inflated");
}

/// A large document of ours that cannot be cut at its items has no plan, and says
/// why: the intake refuses it by that reason instead of building it as one tree.
#[test]
fn a_document_that_cannot_be_cut_says_why() {
    use chunks::Uncut;
    let report = read("valid/contribution-report.xml");
    let big = inflated(&report).unwrap();
    assert!(Plan::of(&big, &Cancel::default()).unwrap().is_ok());
    let why = |text: &str| match Plan::of(text, &Cancel::default()).unwrap() {
        Err(Unplanned::Uncut(ty, why)) => (ty, why),
        other => panic!("{other:?}"),
    };
    // One item larger than a chunk (a long comment inside the second employee).
    let second = big.match_indices("<Employee>").nth(1).unwrap().0 + "<Employee>".len();
    let huge_item = format!(
        "{}<!--{}-->{}",
        &big[..second],
        "x".repeat(chunks::MAX_ITEM_BYTES),
        &big[second..]
    );
    let (ty, reason) = why(&huge_item);
    assert_eq!(ty, DocumentType::ContributionReport);
    assert!(
        matches!(reason, Uncut::ItemTooLarge { index: 2, bytes } if bytes > chunks::MAX_ITEM_BYTES),
        "{reason:?}"
    );
    // A head larger than a chunk.
    let first = big.find("<Employee>").unwrap();
    let big_head = format!(
        "{}<!--{}-->{}",
        &big[..first],
        "x".repeat(chunks::CHUNK_BYTES),
        &big[first..]
    );
    assert!(matches!(why(&big_head).1, Uncut::EnvelopeTooLarge(b) if b > chunks::CHUNK_BYTES));
    // One item only; an employer change has none to cut at.
    let first_end = report.find("</Employee>").unwrap() + "</Employee>".len();
    let last_end = report.rfind("</Employee>").unwrap() + "</Employee>".len();
    let one = format!("{}{}", &report[..first_end], &report[last_end..]);
    assert_eq!(why(&one).1, Uncut::TooFewItems(1));
    let change = read("valid/employer-change.xml");
    assert_eq!(
        why(&change),
        (DocumentType::EmployerChange, Uncut::TooFewItems(0))
    );
    // Not ours: no refusal by shape (the root alone refuses it).
    assert_eq!(
        Plan::of("<Other xmlns=\"urn:x\"/>", &Cancel::default()).unwrap(),
        Err(Unplanned::NotOurs)
    );
    assert_eq!(Unplanned::NotOurs.refusal(1024), None);
    let refusal = Unplanned::Uncut(DocumentType::ContributionReport, reason)
        .refusal(1_048_576)
        .unwrap();
    assert_eq!(refusal.code, codes::DOCUMENT_TOO_LARGE);
    assert_eq!(refusal.location, "/ContributionReport");
    assert!(
        refusal
            .message
            .contains("larger than 1048576 bytes must consist of a run of its Employee elements"),
        "{}",
        refusal.message
    );
    assert!(
        refusal.message.contains("item 2 takes"),
        "{}",
        refusal.message
    );
}

/// Filings left unindexed are indexed from their originals; a large one chunk by
/// chunk, with exactly the ids (and order) the tree gives.
#[test]
fn person_ids_of_a_large_original_match_the_tree() {
    let id = |i: usize| personal_number(if i % 7 == 3 { 0 } else { i }).to_owned();
    let xml = big_report_with(6000, |_| "100.00", id);
    assert!(xml.len() > crate::xml::DEFAULT_STREAMING_THRESHOLD_BYTES);
    let Ok(Ok(plan)) = Plan::of(&xml, &Cancel::default()) else {
        panic!("a report of many lines is cut into chunks")
    };
    let chunked = person_ids_chunked((&xml).into(), &plan).unwrap();
    let limits = crate::xml::Limits::default();
    let doc = crate::xml::build(xml.as_bytes(), &limits).unwrap();
    let tree = common::person_ids(&doc, doc.document_element().unwrap());
    assert_eq!(chunked, tree);
    assert_eq!(person_ids_in(xml.as_bytes()).unwrap(), tree);
    // Every line's id, in document order, duplicates included.
    assert_eq!(
        tree.iter().collect::<Vec<_>>(),
        (0..6000).map(id).collect::<Vec<_>>()
    );
    let distinct: BTreeSet<String> = (0..6000).map(id).collect();
    assert!(distinct.len() < tree.len());
}
