//! What is signed is what counts, end to end on both backends: content the signature
//! does not cover is refused, byte variants of one signed document are one filing,
//! and identical posts racing each other are one filing with no false refusal.

use std::sync::Arc;

use ivan_e2e::filing::{report, set_up, sign};
use ivan_e2e::{Instance, Server, e2e_tests};
use serde_json::Value;

e2e_tests!(
    unsigned_content_inside_the_signature_is_refused,
    byte_variants_of_one_signed_document_are_one_filing,
    identical_posts_at_once_are_one_filing_without_refusals,
);

async fn post(server: &Server, token: &str, body: String) -> (u16, Value) {
    let r = server.submit(token, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// `signed` with `insert` put right after the first occurrence of `after`.
fn inject(signed: &str, after: &str, insert: &str) -> String {
    let at = signed
        .find(after)
        .unwrap_or_else(|| panic!("no {after} in {signed}"))
        + after.len();
    format!("{}{insert}{}", &signed[..at], &signed[at..])
}

async fn unsigned_content_inside_the_signature_is_refused(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let signed = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    let server = inst.serve().await;
    let person = r#"<PersonalId xmlns="urn:ivan:filing:1">8001010008</PersonalId>"#;
    let employee =
        r#"<Employee xmlns="urn:ivan:filing:1"><PersonalId>8001010008</PersonalId></Employee>"#;
    for hostile in [
        inject(&signed, "<ds:KeyInfo>", person),
        inject(&signed, "<ds:X509Data>", employee),
        inject(&signed, "<ds:SignatureValue>", person),
    ] {
        let (status, problem) = post(&server, &filer.token, hostile).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(
            problem["errors"][0]["code"], "signature.unsigned-content",
            "{problem}"
        );
    }
    // The document as signed still goes through.
    let (status, _) = post(&server, &filer.token, signed).await;
    assert_eq!(status, 201);
    assert!(server.stop().await.success());
    assert_eq!(inst.count("SELECT COUNT(*) FROM submissions").await, 1);
}

async fn byte_variants_of_one_signed_document_are_one_filing(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let signed = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    let server = inst.serve().await;
    let (status, first) = post(&server, &filer.token, signed.clone()).await;
    assert_eq!(status, 201, "{first}");
    let close = "</ContributionReport>";
    for variant in [
        format!("{signed}\n"),
        format!("{signed}<!-- sent again -->"),
        inject(&signed, "<Employee>", "<!-- a comment inside -->"),
    ] {
        assert_ne!(variant, signed);
        let (status, again) = post(&server, &filer.token, variant).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["message_id"], first["message_id"]);
        assert_eq!(again["receipt"], first["receipt"]);
    }
    // Content changed inside the signed part is a forgery, not a variant.
    let forged = signed.replacen(close, &format!("<Employee/>{close}"), 1);
    let (status, problem) = post(&server, &filer.token, forged).await;
    assert_eq!(status, 422, "{problem}");
    assert!(server.stop().await.success());
    assert_eq!(inst.count("SELECT COUNT(*) FROM submissions").await, 1);
    assert_eq!(inst.count("SELECT COUNT(*) FROM outbox").await, 1);
}

async fn identical_posts_at_once_are_one_filing_without_refusals(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let server = Arc::new(inst.serve().await);
    for round in 1..=3 {
        let signed = sign(
            &inst,
            &filer,
            &report(&filer.registration, round),
            "employer",
        )
        .await;
        let mut posts = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (server, token, body) = (server.clone(), filer.token.clone(), signed.clone());
            posts.spawn(async move { post(&server, &token, body).await });
        }
        let answers: Vec<(u16, Value)> = posts.join_all().await;
        let created = answers.iter().filter(|(s, _)| *s == 201).count();
        let repeated = answers.iter().filter(|(s, _)| *s == 200).count();
        let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        assert_eq!((created, repeated), (1, 15), "round {round}: {statuses:?}");
        let receipt = &answers[0].1["receipt"];
        assert!(answers.iter().all(|(_, a)| &a["receipt"] == receipt));
    }
    let server = Arc::into_inner(server).unwrap();
    assert!(server.stop().await.success());
    assert_eq!(inst.count("SELECT COUNT(*) FROM submissions").await, 3);
    assert_eq!(
        inst.count("SELECT COUNT(*) FROM log_entries WHERE action = 'submission.refuse'")
            .await,
        0
    );
}
