//! The intake pipeline: from an authenticated POST to a recorded submission or a
//! logged refusal.
//!
//! 0. The body is read only with room for it in the body budget ([`super::budget`]);
//!    one over the streaming threshold is staged on disk as it arrives
//!    ([`Intake::stager`], [`crate::xml::source`]) and read from there by every later
//!    step, never held in memory whole.
//! 1. The same bytes from the same employer again → the first submission, unchanged
//!    (`200`, identical receipt). The same `Idempotency-Key` with other bytes → `409`.
//! 2. `Content-Type` must be XML (`415`).
//! 3. Off the async runtime: the streaming pre-scan's shape limits, then, holding the
//!    analysis budget its estimate asks for, safe parse, signature profile and
//!    cryptography, document type, XSD and rules; cancelled when the request goes
//!    ([`crate::xml::cancel`]). The same signed content as an earlier filing → that
//!    filing (`200`).
//! 4. The signing certificate must be registered for this employer, chain to a
//!    trusted CA, be valid now, allow signing and not be revoked per the newest CRL.
//! 5. Errors among the document findings refuse it (`422`); warnings are reported.
//! 6. Accepted: original stored durably (a staged body linked in, not copied), four log entries, row, document number and
//!    receipt committed together — only then `201`.
//!
//! Every refusal at steps 1–5 is logged (`submission.refuse`, see
//! [`crate::submissions`]). Requests without a valid token (`401`), over the size
//! limit (`413`, refused before the body is read) or turned away busy (`503`) are
//! counted in metrics, not logged: they are not filings of any employer.

use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use retention::keys::Keys;

use super::budget::{Busy, Lease, Pool};
use super::material::Cache;
use super::signature::Inspected;
use super::trust::{self, Policy};
use super::{material, signature};
use crate::Error;
use crate::documents::{Checked, Context, Finding, Profiles, Severity};
use crate::employers::Caller;
use crate::error::{ProblemDocument, ProblemEntry};
use crate::submissions::persons::{self, PersonIndex};
use crate::submissions::{self, Accepting, Submission};
use crate::xml::cancel::{Cancel, Cancelled};
use crate::xml::source::Source;
use crate::xml::{self, Refusal};
use retention::{Clock, Content, Db, Ledger, Sha256Hex};
use serde::{Deserialize, Serialize};

pub use crate::xml::DEFAULT_STREAMING_THRESHOLD_BYTES;

/// `[intake]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Largest accepted document (the HTTP body limit of the submission endpoint).
    pub max_document_bytes: usize,
    /// Deepest element nesting accepted.
    pub max_depth: u32,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes_per_element: u32,
    /// Most namespace declarations on one element.
    pub max_namespace_declarations_per_element: u32,
    /// Most attributes in one document.
    pub max_attributes: u64,
    /// Most namespace declarations in one document.
    pub max_namespace_declarations: u64,
    /// Most nodes (elements, attributes, texts, comments) in one document: bounds the
    /// memory of its parsed form.
    pub max_nodes: u64,
    /// Bodies of filings being received and analysed may add up to this many bytes
    /// (by their declared length, counted before they are read); later ones wait.
    pub body_budget_bytes: usize,
    /// The estimated peak memory of the documents being parsed, verified and checked
    /// at once may add up to this many bytes; later ones wait. The estimate comes
    /// from the pre-scan's node count (see docs/OPERATIONS.md, "Limits and abuse").
    pub analysis_budget_bytes: usize,
    /// The most one employer may hold of either budget, in percent.
    pub employer_share_percent: u8,
    /// Documents larger than this are analysed streamed (never built whole as a
    /// tree: the signature's digest computed while reading, the schema and rules
    /// chunk by chunk); smaller ones as one tree. Both give the same verdicts.
    pub streaming_threshold_bytes: usize,
    /// A filing that waited this long for budget is answered `503` with
    /// `Retry-After` (the service is busy).
    pub budget_wait_secs: u64,
    /// How long after receipt an employer may still cancel (seconds; default 5 h).
    pub hold_window_secs: u64,
    /// The hold window of particular document types (`"registration-form" = 3600`),
    /// in seconds; the others have `hold_window_secs`.
    pub hold_window_secs_by_type: std::collections::BTreeMap<String, u64>,
    /// Refuse signatures whose issuer has no CRL on file.
    pub require_crl: bool,
    /// Accept a CRL this long after its nextUpdate (seconds).
    pub crl_grace_secs: u64,
    /// Trusted CAs and CRLs added by the CLI reach a running server within this time.
    pub trust_reload_secs: u64,
    /// Employers are warned (log entry and mail) when a registered signing certificate
    /// has this many days left, once per step (default 60, 30 and 7; empty: never).
    pub cert_expiry_warn_days: Vec<u32>,
    /// How often registered certificates are checked for those warnings (seconds).
    pub cert_expiry_check_secs: u64,
    /// CRLs are fetched from these URLs (`http`/`https`), and from the distribution
    /// points that the trusted CAs and registered certificates name.
    pub crl_urls: Vec<String>,
    /// How often CRLs are fetched (seconds).
    pub crl_fetch_secs: u64,
    /// Ask the OCSP responder a signing certificate names about its status
    /// ([`super::ocsp`]); the CRL decision stands when it cannot be reached.
    pub ocsp: bool,
    /// The whole exchange with an OCSP responder, at most (milliseconds).
    pub ocsp_timeout_ms: u64,
}

impl IntakeConfig {
    /// The XML limits of these settings.
    pub fn limits(&self) -> xml::Limits {
        let c = self;
        xml::Limits {
            max_depth: c.max_depth,
            max_attributes_per_element: c.max_attributes_per_element,
            max_namespace_declarations_per_element: c.max_namespace_declarations_per_element,
            max_attributes: c.max_attributes,
            max_namespace_declarations: c.max_namespace_declarations,
            max_nodes: c.max_nodes,
        }
    }

    /// The hold window of `document_type`.
    pub fn hold_window(&self, document_type: &str) -> chrono::Duration {
        let by_type = &self.hold_window_secs_by_type;
        crate::documents::per_type_secs(self.hold_window_secs, by_type, document_type)
    }

    /// Refuses hold windows set for types that have none (only the profiles' types
    /// can be cancelled).
    pub fn check_hold_windows(&self) -> Result<(), String> {
        let known: Vec<&str> = crate::documents::DocumentType::codes().collect();
        let by_type = &self.hold_window_secs_by_type;
        crate::documents::check_type_names("intake.hold_window_secs_by_type", by_type, &known)
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        let xml = xml::Limits::default();
        Self {
            max_document_bytes: 50 * 1024 * 1024,
            max_depth: xml.max_depth,
            max_attributes_per_element: xml.max_attributes_per_element,
            max_namespace_declarations_per_element: xml.max_namespace_declarations_per_element,
            max_attributes: xml.max_attributes,
            max_namespace_declarations: xml.max_namespace_declarations,
            max_nodes: xml.max_nodes,
            body_budget_bytes: 256 * 1024 * 1024,
            analysis_budget_bytes: 512 * 1024 * 1024,
            employer_share_percent: 50,
            streaming_threshold_bytes: DEFAULT_STREAMING_THRESHOLD_BYTES,
            budget_wait_secs: 20,
            hold_window_secs: 5 * 3600,
            hold_window_secs_by_type: std::collections::BTreeMap::new(),
            require_crl: true,
            crl_grace_secs: 0,
            trust_reload_secs: 5,
            cert_expiry_warn_days: vec![60, 30, 7],
            cert_expiry_check_secs: 3600,
            crl_urls: Vec::new(),
            crl_fetch_secs: 3600,
            ocsp: true,
            ocsp_timeout_ms: 5000,
        }
    }
}

/// A filing that went through, as a successful POST answers it.
#[derive(Debug)]
pub enum Filed {
    /// A new submission (`201`).
    Created(Submission),
    /// These bytes were submitted before (`200`, the first receipt).
    Repeated(Submission),
}

impl From<Refusal> for ProblemEntry {
    fn from(r: Refusal) -> Self {
        Self {
            code: r.code.to_owned(),
            message: r.message,
            location: r.location,
        }
    }
}

impl From<Finding> for ProblemEntry {
    fn from(f: Finding) -> Self {
        Self {
            code: f.code,
            message: f.message,
            location: f.location,
        }
    }
}

/// A refused filing: the RFC 9457 problem document answered (and logged).
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    /// The problem document, exactly as logged.
    pub body: Vec<u8>,
}

/// Why a submission did not go through.
#[derive(Debug)]
pub enum SubmitError {
    Refused(Refused),
    Internal(Error),
}

impl From<Error> for SubmitError {
    fn from(e: Error) -> Self {
        Self::Internal(e)
    }
}

impl From<retention::Error> for SubmitError {
    fn from(e: retention::Error) -> Self {
        Self::Internal(e.into())
    }
}

/// The intake service, shared by all requests.
#[derive(Debug, Clone)]
pub struct Intake {
    db: Db,
    ledger: Ledger,
    keys: Arc<Keys>,
    profiles: Arc<Profiles>,
    trust: Cache,
    clock: Arc<dyn Clock>,
    bodies: Arc<Pool>,
    analysis: Arc<Pool>,
    config: IntakeConfig,
    /// `mobile.pairing_tolerance_days`, for pairing accepted registration forms.
    pairing_tolerance_days: u32,
    /// When accepted filings must reach the authority (`[forwarding]`).
    forward_deadlines: submissions::ForwardDeadlines,
    retention: crate::documents::retention::RetentionConfig,
    persons: PersonIndex,
    /// Asks OCSP responders (`intake.ocsp`); none: not asked.
    ocsp_http: Option<reqwest::Client>,
}

/// The answer refusing a filing whose signing certificate `r` refused.
fn refused_signer(r: trust::Rejected) -> Verdict {
    Verdict::Refuse {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        errors: vec![ProblemEntry {
            code: r.code.to_owned(),
            message: r.message,
            location: "/ds:Signature/ds:KeyInfo".into(),
        }],
        warnings: vec![],
    }
}

/// A filing's body held in memory, counted in the body budget until it is dropped.
#[derive(Debug)]
pub struct BodyLease {
    /// Shared with the analysis thread, which may outlive a cancelled request and
    /// holds the body until it stops.
    lease: Arc<Lease>,
    /// Until when this request may wait for budget.
    deadline: tokio::time::Instant,
}

/// What intake concluded before recording anything.
enum Verdict {
    /// These bytes were accepted before.
    Repeated(Box<Submission>),
    Refuse {
        status: StatusCode,
        errors: Vec<ProblemEntry>,
        warnings: Vec<ProblemEntry>,
    },
    Accept(Box<Ready>),
}

/// A filing that passed every check.
struct Ready {
    checked: Checked,
    fingerprint: String,
    crl_sha256: Option<String>,
    /// The OCSP responder's answer, when it was asked ([`super::ocsp`]).
    ocsp_response: Option<Vec<u8>>,
    signed_digest: String,
    warnings: Vec<ProblemEntry>,
}

/// What the portal shows before an upload is approved: the result of the same
/// checks as a submission, with nothing stored and nothing logged.
#[derive(Debug, Clone)]
pub struct Preview {
    pub sha256: String,
    /// The document type, when the document passed every check.
    pub document_type: Option<String>,
    /// The HTTP status the API would answer (200: it would be accepted).
    pub status: StatusCode,
    pub errors: Vec<ProblemEntry>,
    pub warnings: Vec<ProblemEntry>,
    /// These bytes were accepted before, as this submission.
    pub repeated: Option<Submission>,
}

/// What the analysis of an accepted document found (see [`Scanned::analyse`]).
#[derive(Debug)]
pub struct Analysis {
    inspected: Inspected,
    checked: Checked,
}

/// A document after its pre-scan (step 5): its shape, and for one over the
/// streaming threshold, how it is cut (or why it cannot be). The two blocking
/// steps of an analysis are [`Scanned::of`] and [`Scanned::analyse`]; between them
/// the pipeline takes the analysis budget [`Scanned::estimate`] asks for.
#[derive(Debug)]
pub struct Scanned {
    shape: xml::Shape,
    threshold: usize,
    /// `None`: the tree path. `Some(Err(_))`: a large document with no run of items
    /// to cut its checks at (refused by its shape or its root).
    plan: Option<Result<crate::documents::Plan, crate::documents::Unplanned>>,
}

impl Scanned {
    /// The pre-scan: limits and node count, and for a large document its plan.
    /// Linear; stops when `cancel` is set.
    pub fn of<'a>(
        body: impl Into<Source<'a>>,
        limits: &xml::Limits,
        threshold: usize,
        cancel: &Cancel,
    ) -> Result<Scanned, xml::Stop> {
        let src = body.into();
        xml::check_text(src)?;
        let shape = xml::prescan(src, limits, cancel)?;
        let plan = if src.len() > threshold {
            Some(crate::documents::Plan::of(src, cancel)?)
        } else {
            None
        };
        Ok(Scanned {
            shape,
            threshold,
            plan,
        })
    }

    /// The analysis memory this document may take at its peak.
    pub fn estimate(&self, body_len: usize) -> u64 {
        match &self.plan {
            Some(_) => self.shape.streamed_bytes(),
            None => self.shape.analysis_bytes(body_len),
        }
    }

    /// Parse, signature and document checks (steps 6, 7 and 10), on the tree or
    /// streamed. Stops soon after `cancel` is set: it is checked between the steps,
    /// inside the streamed passes and between chunks; what runs between two checks
    /// is bounded by the streaming threshold (a tree) or a chunk.
    pub fn analyse<'a>(
        self,
        body: impl Into<Source<'a>>,
        limits: &xml::Limits,
        profiles: &Profiles,
        ctx: &Context<'_>,
        cancel: &Cancel,
    ) -> Result<Analysis, Halt> {
        let src = body.into();
        if let Some(plan) = &self.plan {
            return self.streamed(src, plan.as_ref(), limits, profiles, ctx, cancel);
        }
        // At most the streaming threshold: the tree path holds it in memory.
        let body = src.read(0..src.len()).map_err(xml::Stop::from)?;
        let doc = xml::build(&body, limits)?;
        cancel.check()?;
        let inspected = signature::inspect(&doc)?;
        signature::verify(&doc, inspected.signer())?;
        cancel.check()?;
        let checked = profiles.check(&doc, ctx)?;
        Ok(Analysis { inspected, checked })
    }

    /// The streamed analysis of a large document: the signature on one thread, the
    /// schema and rules chunk by chunk on this one (the machine has at least two
    /// cores; each half is a linear pass). Refusals come in the tree path's order: the
    /// document is not well-formed, then the signature, then the findings.
    fn streamed(
        &self,
        text: Source<'_>,
        plan: Result<&crate::documents::Plan, &crate::documents::Unplanned>,
        limits: &xml::Limits,
        profiles: &Profiles,
        ctx: &Context<'_>,
        cancel: &Cancel,
    ) -> Result<Analysis, Halt> {
        let plan = match plan {
            Ok(plan) => plan,
            Err(unplanned) => {
                // No run of items to cut the checks at: the signature streamed, then a
                // refusal by the document's shape (its checks would need the whole tree,
                // which cannot be stopped part-way) or, for a type not ours, by its root
                // alone — the verdicts' order is the tree path's.
                let inspected = signature::verify_streamed(text, &self.shape, limits, cancel);
                cancel.check()?;
                let inspected = inspected?;
                if let Some(refusal) = unplanned.refusal(self.threshold) {
                    return Err(refusal.into());
                }
                let (start, end) = self.shape.root_start;
                let root = text.text(start..end).map_err(xml::Stop::from)?;
                let alone = xml::enclosed(&root, "");
                let doc = xml::build(alone.as_bytes(), limits)?.into_static();
                let checked = profiles.check(&doc, ctx)?;
                return Ok(Analysis { inspected, checked });
            }
        };
        let (inspected, checked) = std::thread::scope(|s| {
            let signature =
                s.spawn(|| signature::verify_streamed(text, &self.shape, limits, cancel));
            let checked = profiles.check_streamed(text, plan, ctx, cancel);
            // A panic there is one here: the blocking task fails, the answer is 500.
            let inspected = signature
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (inspected, checked)
        });
        if let Err(xml::Stop::Refused(r)) = &checked
            && r.code.starts_with("xml.")
        {
            return Err(r.clone().into());
        }
        let inspected = inspected?;
        let checked = checked?;
        Ok(Analysis { inspected, checked })
    }
}

impl Intake {
    pub fn new(
        db: Db,
        ledger: Ledger,
        keys: Arc<Keys>,
        profiles: Arc<Profiles>,
        clock: Arc<dyn Clock>,
        config: IntakeConfig,
        persons: PersonIndex,
    ) -> Self {
        let trust = Cache::new(
            db.clone(),
            std::time::Duration::from_secs(config.trust_reload_secs),
        );
        let bodies = Arc::new(Pool::new(
            "bodies",
            config.body_budget_bytes,
            config.employer_share_percent,
        ));
        let analysis = Arc::new(Pool::new(
            "analysis",
            config.analysis_budget_bytes,
            config.employer_share_percent,
        ));
        Self {
            db,
            ledger,
            keys,
            profiles,
            trust,
            clock,
            bodies,
            analysis,
            config,
            pairing_tolerance_days: mobile_api::MobileConfig::default().pairing_tolerance_days,
            forward_deadlines: submissions::ForwardDeadlines::default(),
            retention: Default::default(),
            persons,
            ocsp_http: None,
        }
    }

    /// Pairs registration forms with pre-registrations whose effective dates differ
    /// by at most `days` (`mobile.pairing_tolerance_days`).
    pub fn with_pairing_tolerance_days(mut self, days: u32) -> Self {
        self.pairing_tolerance_days = days;
        self
    }

    /// Gives accepted filings their forwarding deadlines (`forwarding.deadline_secs`
    /// and `forwarding.deadline_secs_by_type`).
    pub fn with_forward_deadlines(mut self, deadlines: submissions::ForwardDeadlines) -> Self {
        self.forward_deadlines = deadlines;
        self
    }

    /// Locks accepted filings' documents (on an originals bucket with Object Lock)
    /// for their type's retention period (`[retention]`).
    pub fn with_retention(
        mut self,
        retention: crate::documents::retention::RetentionConfig,
    ) -> Self {
        self.retention = retention;
        self
    }

    /// Asks the OCSP responders signing certificates name, through `http`.
    pub fn with_ocsp(mut self, http: reqwest::Client) -> Self {
        self.ocsp_http = Some(http);
        self
    }

    pub fn config(&self) -> &IntakeConfig {
        &self.config
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Steps 1–5: everything intake checks before it records anything.
    async fn evaluate(
        &self,
        caller: &Caller,
        content_type: Option<&str>,
        idempotency_key: Option<&str>,
        body: &Content,
        lease: &BodyLease,
        sha: &str,
    ) -> Result<Verdict, Error> {
        let employer = caller.employer_id.as_str();
        if let Some(first) = submissions::find_by_sha256(&self.db, employer, sha).await? {
            return Ok(Verdict::Repeated(Box::new(first)));
        }
        if let Some(key) = idempotency_key {
            if key.is_empty()
                || key.len() > 255
                || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            {
                return Ok(Verdict::Refuse {
                    status: StatusCode::BAD_REQUEST,
                    errors: vec![ProblemEntry {
                        code: "request.idempotency-key".into(),
                        message: "Idempotency-Key must be 1 to 255 printable ASCII characters"
                            .into(),
                        location: "header Idempotency-Key".into(),
                    }],
                    warnings: vec![],
                });
            }
            if let Some(first) =
                submissions::find_by_idempotency_key(&self.db, employer, key).await?
            {
                return Ok(Verdict::Refuse {
                    status: StatusCode::CONFLICT,
                    errors: vec![idempotency_conflict(&first)],
                    warnings: vec![],
                });
            }
        }
        if !is_xml(content_type) {
            return Ok(Verdict::Refuse {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                errors: vec![ProblemEntry {
                    code: "request.content-type".into(),
                    message: format!(
                        "Content-Type must be application/xml, not {}",
                        content_type.unwrap_or("(none)")
                    ),
                    location: "header Content-Type".into(),
                }],
                warnings: vec![],
            });
        }

        let now = self.clock.now();
        let analysis = match self.analyse(caller, body, lease, now).await? {
            Ok(a) => a,
            Err(errors) => {
                return Ok(Verdict::Refuse {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    errors,
                    warnings: vec![],
                });
            }
        };

        // The same signed document in other bytes (a trailing newline, a comment):
        // the first filing, not a second one.
        // One statement answers this and, further down, the sender reference's
        // question (both known since the analysis).
        let digest = analysis.inspected.content_digest.clone();
        let repeats = submissions::find_repeats(
            &self.db,
            employer,
            &digest,
            analysis.checked.sender_reference.as_deref(),
        )
        .await?;
        if let Some(first) = repeats.signed_digest {
            return Ok(Verdict::Repeated(Box::new(first)));
        }
        let signer = analysis.inspected.signer();
        let fingerprint = trust::fingerprint(signer);
        let registered = match material::cert(&self.db, &fingerprint).await? {
            Some(c) if c.employer_id == caller.employer_id => match c.removed_at {
                None => Ok(()),
                Some(at) => Err(ProblemEntry {
                    code: "certificate.removed".into(),
                    message: format!(
                        "the signing certificate (SHA-256 {fingerprint}) was removed from this employer's registered certificates at {}; sign with a registered one",
                        retention::ledger::format_time(&at)
                    ),
                    location: "/ds:Signature/ds:KeyInfo".into(),
                }),
            },
            Some(_) => Err(ProblemEntry {
                code: "certificate.other-employer".into(),
                message:
                    "the document is signed with a certificate registered for another employer"
                        .into(),
                location: "/ds:Signature/ds:KeyInfo".into(),
            }),
            None => Err(ProblemEntry {
                code: "certificate.not-registered".into(),
                message: format!(
                    "the signing certificate (SHA-256 {fingerprint}) is not registered for this employer; ask the operator to register it"
                ),
                location: "/ds:Signature/ds:KeyInfo".into(),
            }),
        };
        if let Err(p) = registered {
            return Ok(Verdict::Refuse {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                errors: vec![p],
                warnings: vec![],
            });
        }
        let snapshot = self.trust.get().await?;
        let policy = Policy {
            require_crl: self.config.require_crl,
            max_crl_age_after_next_update: chrono::Duration::seconds(
                i64::try_from(self.config.crl_grace_secs).unwrap_or(i64::MAX / 1000),
            ),
        };
        let accepted = match trust::check_signer(
            signer,
            analysis.inspected.intermediates(),
            &snapshot.anchors,
            &snapshot.crls,
            now,
            &policy,
        ) {
            Ok(a) => a,
            Err(r) => return Ok(refused_signer(r)),
        };
        let ocsp_response = match self.ask_ocsp(signer, &accepted, now).await {
            Ok(response) => response,
            Err(r) => return Ok(refused_signer(r)),
        };

        let Analysis { checked, .. } = analysis;
        let (errors, warnings): (Vec<Finding>, Vec<Finding>) = checked
            .findings
            .iter()
            .cloned()
            .partition(|f| f.severity == Severity::Error);
        let warnings: Vec<ProblemEntry> = warnings.into_iter().map(ProblemEntry::from).collect();
        if !errors.is_empty() {
            let errors = errors.into_iter().map(ProblemEntry::from).collect();
            return Ok(Verdict::Refuse {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                errors,
                warnings,
            });
        }
        if let Some(reference) = &checked.sender_reference
            && let Some(first) = repeats.sender_reference
        {
            // The same content recorded meanwhile by a concurrent request is the
            // first filing, not a conflict.
            if let Some(same) = self.recorded_meanwhile(employer, sha, &digest).await? {
                return Ok(Verdict::Repeated(Box::new(same)));
            }
            return Ok(Verdict::Refuse {
                status: StatusCode::CONFLICT,
                errors: vec![sender_reference_conflict(reference, &first)],
                warnings: vec![],
            });
        }

        Ok(Verdict::Accept(Box::new(Ready {
            checked,
            fingerprint,
            crl_sha256: accepted.crl_sha256,
            ocsp_response,
            signed_digest: digest,
            warnings,
        })))
    }

    /// Asks the OCSP responder `signer` names (when `intake.ocsp`) about it: its
    /// answer when that is `good`, a refusal when it is `revoked` or `unknown`, and
    /// `None` when there is no responder or no answer that counts (the CRL decision
    /// stands; counted and logged). See [`super::ocsp`].
    async fn ask_ocsp(
        &self,
        signer: &[u8],
        accepted: &trust::Accepted,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Vec<u8>>, trust::Rejected> {
        let Some(http) = &self.ocsp_http else {
            return Ok(None);
        };
        let Some(url) = super::ocsp::responder_urls(signer).into_iter().next() else {
            return Ok(None);
        };
        let timeout = std::time::Duration::from_millis(self.config.ocsp_timeout_ms);
        let answer =
            match super::ocsp::ask(http, &url, signer, &accepted.issuer_der, now, timeout).await {
                Ok(a) => a,
                Err(why) => {
                    metrics::counter!("ivan_ocsp_failures_total").increment(1);
                    tracing::warn!(%url, %why, "no usable OCSP answer; the CRL decision stands");
                    return Ok(None);
                }
            };
        let subject = &accepted.subject;
        match answer.status {
            super::ocsp::Status::Good => Ok(Some(answer.der)),
            super::ocsp::Status::Revoked { at, reason } => Err(trust::Rejected::new(
                trust::code::REVOKED,
                format!(
                    "the signing certificate \"{subject}\" (serial {}) was revoked on {}{}, according to the OCSP responder {url} (answer of {})",
                    accepted.serial_hex,
                    trust::when(at),
                    reason
                        .map(|r| format!(" (reason: {r})"))
                        .unwrap_or_default(),
                    trust::when(answer.this_update),
                ),
            )),
            super::ocsp::Status::Unknown => Err(trust::Rejected::new(
                trust::code::REVOCATION_UNKNOWN,
                format!(
                    "the OCSP responder {url} does not know the signing certificate \"{subject}\" (serial {}): its issuer does not vouch for it",
                    accepted.serial_hex
                ),
            )),
        }
    }

    /// Runs the checks of [`Intake::submit`] on a document without recording
    /// anything: the portal shows this before the user approves the upload.
    pub async fn check(&self, caller: &Caller, body: &Bytes) -> Result<Preview, Error> {
        let lease = self.body_lease(caller, Some(body.len() as u64)).await?;
        let sha = Sha256Hex::of_bytes(body).await;
        let verdict = self
            .evaluate(
                caller,
                Some("application/xml"),
                None,
                &Content::Memory(body.clone()),
                &lease,
                sha.as_str(),
            )
            .await?;
        let sha256 = sha.as_str().to_owned();
        Ok(match verdict {
            Verdict::Repeated(first) => Preview {
                sha256,
                document_type: Some(first.document_type.clone()),
                status: StatusCode::OK,
                errors: vec![],
                warnings: vec![],
                repeated: Some(*first),
            },
            Verdict::Refuse {
                status,
                errors,
                warnings,
            } => Preview {
                sha256,
                document_type: None,
                status,
                errors,
                warnings,
                repeated: None,
            },
            Verdict::Accept(ready) => Preview {
                sha256,
                document_type: Some(ready.checked.document_type.code().to_owned()),
                status: StatusCode::OK,
                errors: vec![],
                warnings: ready.warnings,
                repeated: None,
            },
        })
    }

    /// Holds room in the body budget for a body of `declared` bytes (unknown: the
    /// largest document), before it is read. `503` (busy) when none frees up in
    /// `intake.budget_wait_secs`.
    pub async fn body_lease(
        &self,
        caller: &Caller,
        declared: Option<u64>,
    ) -> Result<BodyLease, Error> {
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_secs(self.config.budget_wait_secs);
        let bytes = declared
            .unwrap_or(self.config.max_document_bytes as u64)
            .min(self.config.max_document_bytes as u64);
        let lease = self
            .bodies
            .lease(caller.employer_id.as_str(), bytes, deadline)
            .await
            .map_err(busy)?;
        Ok(BodyLease {
            lease: Arc::new(lease),
            deadline,
        })
    }

    /// Where a body larger than the streaming threshold is written as it arrives
    /// ([`retention::originals::Staged`]), so that it is never held in memory whole
    /// and is kept, if accepted, without another copy. `None` where the originals
    /// store cannot stage (an S3 bucket; a filesystem without `O_TMPFILE`): the body
    /// is then read into memory, as every body was before.
    pub fn stager(&self) -> Option<retention::originals::Stager> {
        match self.ledger.originals().stage() {
            Ok(stager) => Some(stager),
            Err(e) => {
                tracing::debug!(error = %e, "large body kept in memory: the originals store cannot stage it");
                None
            }
        }
    }

    /// Takes one filing from an authenticated caller, already read into memory.
    pub async fn submit(
        &self,
        caller: &Caller,
        content_type: Option<&str>,
        idempotency_key: Option<&str>,
        body: Bytes,
    ) -> Result<Filed, SubmitError> {
        let lease = self.body_lease(caller, Some(body.len() as u64)).await?;
        self.submit_leased(caller, content_type, idempotency_key, body.into(), lease)
            .await
    }

    /// Takes one filing whose body was read (or staged: [`Intake::stager`]) under
    /// `lease` ([`Intake::body_lease`]).
    pub async fn submit_leased(
        &self,
        caller: &Caller,
        content_type: Option<&str>,
        idempotency_key: Option<&str>,
        body: Content,
        lease: BodyLease,
    ) -> Result<Filed, SubmitError> {
        let sha = match &body {
            Content::Memory(bytes) => Sha256Hex::of_bytes(bytes).await,
            Content::Staged(staged) => staged.sha256().clone(),
        };
        let sha = sha.as_str();
        let employer = caller.employer_id.as_str();
        let ready = match self
            .evaluate(caller, content_type, idempotency_key, &body, &lease, sha)
            .await?
        {
            Verdict::Repeated(first) => return Ok(Filed::Repeated(*first)),
            Verdict::Refuse {
                status,
                errors,
                warnings,
            } => {
                return Err(self.refuse(caller, sha, status, errors, warnings).await);
            }
            Verdict::Accept(ready) => *ready,
        };
        let Ready {
            mut checked,
            fingerprint,
            crl_sha256,
            ocsp_response,
            signed_digest,
            warnings,
        } = ready;
        // A keyed hash per person: for a report of 200,000 employees about 0.15 s of
        // CPU, which must not hold a runtime worker.
        let person_keys = if checked.persons.len() > persons::IN_TRANSACTION_AT_MOST {
            let (index, ids) = (self.persons.clone(), std::mem::take(&mut checked.persons));
            tokio::task::spawn_blocking(move || index.keys_of(ids.iter()))
                .await
                .map_err(|e| Error::Internal(format!("person index keys failed: {e}")))?
        } else {
            self.persons.keys_of(checked.persons.iter())
        };
        let (person_keys, later) = if person_keys.len() > persons::IN_TRANSACTION_AT_MOST {
            (Vec::new(), Some(person_keys))
        } else {
            (person_keys, None)
        };
        let accepting = Accepting {
            id: retention::MessageId::new().to_string(),
            employer_id: caller.employer_id.clone(),
            actor: caller.actor(),
            origin: submissions::Origin::Signed {
                registrations: checked.registrations.clone(),
            },
            document_type: checked.document_type.code().to_owned(),
            number_prefix: checked.document_type.number_prefix(),
            original: body,
            sha256: sha.to_owned(),
            sender_reference: checked.sender_reference.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
            signer_fingerprint: Some(fingerprint),
            crl_sha256,
            ocsp_response,
            signed_digest: Some(signed_digest.clone()),
            warnings: serde_json::to_string(&warnings).unwrap_or_else(|_| "[]".into()),
            hold_window: self.config.hold_window(checked.document_type.code()),
            forward_within: self.forward_deadlines.of(checked.document_type.code()),
            retain_until: self
                .retention
                .retain_until(checked.document_type.code(), self.clock.now()),
            person_keys,
            persons_later: later.is_some(),
        };
        match submissions::record(&self.ledger, self.keys.clone(), accepting).await {
            Ok(s) => {
                if let Some(keys) = later {
                    self.persons.index_later(
                        self.db.clone(),
                        self.clock.clone(),
                        s.id.clone(),
                        keys,
                    );
                }
                if !checked.registrations.is_empty() {
                    // Pair pre-registrations now; a failure here only delays pairing
                    // to the next sweep, it never undoes the acceptance.
                    if let Err(e) = crate::submissions::preregistrations::pair(
                        &self.ledger,
                        &self.db,
                        crate::submissions::preregistrations::PairScope::Form(&s.id),
                        self.pairing_tolerance_days,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, submission = %s.id, "pairing deferred to the sweep");
                    }
                }
                Ok(Filed::Created(s))
            }
            // A concurrent request with the same content won the race: answer with
            // its result.
            Err(Error::Record(e)) if e.is_unique_violation() => {
                if let Some(first) = self
                    .recorded_meanwhile(employer, sha, &signed_digest)
                    .await?
                {
                    return Ok(Filed::Repeated(first));
                }
                if let Some(key) = idempotency_key
                    && let Some(first) =
                        submissions::find_by_idempotency_key(&self.db, employer, key).await?
                {
                    let errors = vec![idempotency_conflict(&first)];
                    return Err(self
                        .refuse(caller, sha, StatusCode::CONFLICT, errors, vec![])
                        .await);
                }
                // Other content with the same sender reference, recorded meanwhile.
                if let Some(reference) = &checked.sender_reference
                    && let Some(first) =
                        submissions::find_by_sender_reference(&self.db, employer, reference).await?
                {
                    let errors = vec![sender_reference_conflict(reference, &first)];
                    return Err(self
                        .refuse(caller, sha, StatusCode::CONFLICT, errors, vec![])
                        .await);
                }
                Err(SubmitError::Internal(Error::Record(e)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Parse, signature and document checks, off the async runtime and inside the
    /// memory budget: a streaming pre-scan (limits, node count) first, then — holding
    /// the analysis budget the pre-scan's estimate asks for — parse, signature and
    /// rules. Everything stops soon after the request is gone (its future dropped:
    /// the request timeout, a client that hung up, shutdown): the flag is checked
    /// between the steps and inside the pre-scan.
    async fn analyse(
        &self,
        caller: &Caller,
        body: &Content,
        lease: &BodyLease,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Result<Analysis, Vec<ProblemEntry>>, Error> {
        let cancel = Cancel::default();
        let _cancel_when_dropped = cancel.on_drop();
        let limits = self.limits();
        let threshold = self.config.streaming_threshold_bytes;
        let scanned = {
            let (body, cancel) = (body.clone(), cancel.clone());
            tokio::task::spawn_blocking(move || Scanned::of(&body, &limits, threshold, &cancel))
                .await
                .map_err(|e| Error::Internal(format!("document pre-scan failed: {e}")))?
        };
        let scanned = match scanned {
            Ok(scanned) => scanned,
            Err(stop) => return Halt::from(stop).answer(),
        };
        let permit = self
            .analysis
            .lease(
                caller.employer_id.as_str(),
                scanned.estimate(usize::try_from(body.len()).unwrap_or(usize::MAX)),
                lease.deadline,
            )
            .await
            .map_err(busy)?;
        let (body, body_lease) = (body.clone(), lease.lease.clone());
        let profiles = self.profiles.clone();
        let registration_number = caller.registration_number.clone();
        let analysed = tokio::task::spawn_blocking(move || {
            // Both budgets are held as long as this thread holds the document.
            let _held = (permit, body_lease);
            let ctx = Context {
                today: now.date_naive(),
                employer_registration_number: &registration_number,
            };
            scanned.analyse(&body, &limits, &profiles, &ctx, &cancel)
        })
        .await
        .map_err(|e| Error::Internal(format!("document analysis failed: {e}")))?;
        match analysed {
            Ok(analysis) => Ok(Ok(analysis)),
            Err(halt) => halt.answer(),
        }
    }

    /// The employer's submission of these bytes or of this signed content, recorded
    /// by a concurrent request since this one looked.
    async fn recorded_meanwhile(
        &self,
        employer: &str,
        sha: &str,
        digest: &str,
    ) -> Result<Option<Submission>, Error> {
        if let Some(first) = submissions::find_by_sha256(&self.db, employer, sha).await? {
            return Ok(Some(first));
        }
        submissions::find_by_signed_digest(&self.db, employer, digest).await
    }

    /// The XML limits of `[intake]`.
    pub fn limits(&self) -> xml::Limits {
        self.config.limits()
    }

    /// Logs a refusal and builds its answer. If even the log entry cannot be
    /// written, the caller gets a 503 rather than an unlogged refusal.
    /// Answers a shape bomb refused while its body was still arriving
    /// ([`super::early`]): logged like any refusal, with the SHA-256 of the bytes
    /// received by then.
    pub async fn refuse_early(&self, caller: &Caller, early: super::early::Early) -> SubmitError {
        let r = early.refusal;
        let problem = ProblemEntry {
            code: r.code.to_owned(),
            message: format!(
                "{} (refused after the first {} bytes; the rest was not read)",
                r.message, early.received
            ),
            location: r.location,
        };
        self.refuse(
            caller,
            &early.sha256,
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![problem],
            vec![],
        )
        .await
    }

    async fn refuse(
        &self,
        caller: &Caller,
        sha: &str,
        status: StatusCode,
        errors: Vec<ProblemEntry>,
        warnings: Vec<ProblemEntry>,
    ) -> SubmitError {
        let detail = match errors.as_slice() {
            [one] => one.message.clone(),
            many => format!(
                "the filing was refused: {} problems, see errors",
                many.len()
            ),
        };
        let doc = ProblemDocument {
            title: status.canonical_reason().unwrap_or("Refused").to_owned(),
            sha256: Some(sha.to_owned()),
            errors: Some(errors),
            warnings: Some(warnings),
            ..ProblemDocument::new(status, Some(detail))
        };
        let body = match serde_json::to_vec(&doc) {
            Ok(b) => b,
            Err(e) => return SubmitError::Internal(Error::Internal(e.to_string())),
        };
        metrics::counter!("ivan_submissions_refused_total", "status" => status.as_u16().to_string())
            .increment(1);
        match submissions::record_refusal(&self.ledger, caller.actor(), sha, body.clone()).await {
            Ok(_) => SubmitError::Refused(Refused { status, body }),
            Err(e) => SubmitError::Internal(e),
        }
    }
}

/// Why an analysis stopped short: the document is refused, or its request is gone.
#[derive(Debug)]
pub enum Halt {
    Refused(ProblemEntry),
    Cancelled,
    /// Reading the staged body failed (`503`, nothing recorded).
    Failed(String),
}

impl Halt {
    fn answer(self) -> Result<Result<Analysis, Vec<ProblemEntry>>, Error> {
        match self {
            Halt::Refused(p) => Ok(Err(vec![p])),
            Halt::Cancelled => Err(cancelled()),
            Halt::Failed(why) => {
                tracing::error!(error = %why, "a staged document could not be read");
                Err(Error::Unavailable(
                    "the document could not be read back from storage; nothing was recorded".into(),
                ))
            }
        }
    }
}

impl From<Refusal> for Halt {
    fn from(r: Refusal) -> Self {
        Halt::Refused(r.into())
    }
}

impl From<Finding> for Halt {
    fn from(f: Finding) -> Self {
        Halt::Refused(f.into())
    }
}

impl From<Cancelled> for Halt {
    fn from(_: Cancelled) -> Self {
        Halt::Cancelled
    }
}

impl From<xml::Stop> for Halt {
    fn from(s: xml::Stop) -> Self {
        match s {
            xml::Stop::Refused(r) => r.into(),
            xml::Stop::Cancelled => Halt::Cancelled,
            xml::Stop::Failed(why) => Halt::Failed(why),
        }
    }
}

/// Budget not granted in time: the service is busy, retry later (`503`).
fn busy(_: Busy) -> Error {
    Error::Unavailable("intake is busy with other documents; retry later".into())
}

/// The request is gone; nobody is left to read this.
fn cancelled() -> Error {
    Error::Unavailable("the request ended before its document was analysed".into())
}

fn sender_reference_conflict(reference: &str, first: &Submission) -> ProblemEntry {
    ProblemEntry {
        code: "sender-reference.conflict".into(),
        message: format!(
            "sender reference {reference:?} was already used by submission {} with other content",
            first.id
        ),
        location: "sender reference".into(),
    }
}

fn idempotency_conflict(first: &Submission) -> ProblemEntry {
    ProblemEntry {
        code: "idempotency-key.conflict".into(),
        message: format!(
            "this Idempotency-Key was used for submission {} with other content",
            first.id
        ),
        location: "header Idempotency-Key".into(),
    }
}

/// Whether the Content-Type names XML.
pub fn is_xml(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/xml" || mime == "text/xml" || mime.ends_with("+xml")
}
