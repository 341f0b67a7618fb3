//! Upload: a document checked as the API would, then approved with a step-up.

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::Duration;
use retention::on_pool;
use serde::Deserialize;

use super::PortalState;
use super::ceremony::Binding;
use super::error::PortalError;
use super::render::{Page, PageResult, page, see_other};
use super::session::EmployerUser;
use super::signin::{CeremonyForm, CsrfForm};
use super::submissions::{StepUp, approve_step_up, step_up_prompt};
use crate::Error;
use crate::error::ProblemEntry;
use crate::intake::{Filed, SubmitError};

pub(super) struct Findings {
    headline: String,
    errors: Vec<ProblemEntry>,
    warnings: Vec<ProblemEntry>,
}

impl Findings {
    fn new(headline: String, errors: Vec<ProblemEntry>, warnings: Vec<ProblemEntry>) -> Self {
        Findings {
            headline,
            errors,
            warnings,
        }
    }
}

#[derive(Template)]
#[template(path = "portal/upload.html")]
pub(super) struct UploadPage {
    page: Page,
    csrf: String,
    max_mib: usize,
    result: Option<Findings>,
}

pub(super) fn upload_form(
    state: &PortalState,
    signed: &EmployerUser,
    headers: &axum::http::HeaderMap,
    result: Option<Findings>,
) -> UploadPage {
    UploadPage {
        page: Page::of(signed, state, headers),
        csrf: signed.csrf.clone(),
        max_mib: state.intake.config().max_document_bytes / (1024 * 1024),
        result,
    }
}

pub(super) async fn upload_page(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: EmployerUser,
) -> PageResult {
    Ok(page(
        StatusCode::OK,
        &upload_form(&state, &signed, &headers, None),
    ))
}

pub(super) async fn upload(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: EmployerUser,
    mut form: Multipart,
) -> PageResult {
    let (mut csrf, mut file) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| Error::Invalid(format!("the upload form is malformed: {e}")))?
    {
        match field.name() {
            Some("csrf") => {
                csrf = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| Error::Invalid(format!("the upload form: {e}")))?,
                );
            }
            Some("file") => {
                // The CSRF token comes first in the form; a file before it is refused
                // unread.
                signed.check_csrf(csrf.as_deref().unwrap_or(""))?;
                let name = field.file_name().unwrap_or("upload.xml").to_owned();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| Error::Invalid(format!("the file did not arrive whole: {e}")))?;
                file = Some((name, bytes));
            }
            _ => {}
        }
    }
    signed.check_csrf(csrf.as_deref().unwrap_or(""))?;
    let Some((name, body)) = file.filter(|(_, b)| !b.is_empty()) else {
        return Err(PortalError::Keyed(
            StatusCode::BAD_REQUEST,
            "upload-choose-file",
        ));
    };
    let caller = signed.caller(&state.db).await?;
    let preview = state.intake.check(&caller, &body).await?;
    if let Some(first) = preview.repeated {
        return Ok(see_other(&format!("/portal/submissions/{}", first.id)));
    }
    if !preview.errors.is_empty() {
        let headline = Page::of(&signed, &state, &headers).t2(
            "upload-refused",
            "file",
            &name,
            "count",
            &preview.errors.len().to_string(),
        );
        let status = if preview.status.is_client_error() {
            preview.status
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let findings = Findings::new(headline, preview.errors, preview.warnings);
        return Ok(page(
            status,
            &upload_form(&state, &signed, &headers, Some(findings)),
        ));
    }
    let now = state.intake.clock().now();
    let id = hex::encode(retention::keys::os_random::<16>()?);
    let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    let expires = now
        + Duration::seconds(i64::try_from(state.portal.config.upload_valid_secs).unwrap_or(1800));
    on_pool!(&state.db, pool => {
        sqlx::query("DELETE FROM portal_uploads WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?;
        sqlx::query(
            "INSERT INTO portal_uploads (id, user_id, employer_id, file_name, sha256, body, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&signed.user.id)
        .bind(&signed.employer_id)
        .bind(&name)
        .bind(&preview.sha256)
        .bind(body.as_ref())
        .bind(now)
        .bind(expires)
        .execute(pool)
        .await
        .map_err(retention::Error::from)?;
    });
    Ok(see_other(&format!("/portal/uploads/{id}")))
}

/// A checked upload waiting for approval; only its uploader sees it.
pub(super) struct Pending {
    file_name: String,
    sha256: String,
    body: Bytes,
}

pub(super) async fn pending(
    state: &PortalState,
    signed: &EmployerUser,
    id: &str,
) -> Result<Pending, Error> {
    let now = state.intake.clock().now();
    let row: Option<(String, String, Vec<u8>)> = on_pool!(&state.db, pool => {
        sqlx::query_as(
            "SELECT file_name, sha256, body FROM portal_uploads \
             WHERE id = $1 AND user_id = $2 AND employer_id = $3 AND expires_at > $4",
        )
        .bind(id)
        .bind(&signed.user.id)
        .bind(&signed.employer_id)
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let (file_name, sha256, body) = row.ok_or_else(|| {
        Error::NotFound(format!(
            "no upload {id} waiting for your approval (uploads wait {} minutes)",
            state.portal.config.upload_valid_secs / 60
        ))
    })?;
    Ok(Pending {
        file_name,
        sha256,
        body: Bytes::from(body),
    })
}

/// Deletes the pending uploads that expired before `now` unapproved; returns how many.
pub(super) async fn delete_expired(
    db: &retention::Db,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query("DELETE FROM portal_uploads WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?
            .rows_affected()
    }))
}

pub(super) async fn drop_pending(state: &PortalState, id: &str) -> Result<(), Error> {
    on_pool!(&state.db, pool => {
        sqlx::query("DELETE FROM portal_uploads WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?;
    });
    Ok(())
}

#[derive(Template)]
#[template(path = "portal/pending.html")]
pub(super) struct PendingPage {
    page: Page,
    id: String,
    file_name: String,
    document_type: String,
    sha256: String,
    warnings: Vec<ProblemEntry>,
    step_up: StepUp,
    csrf: String,
}

pub(super) async fn pending_page(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: EmployerUser,
    Path(id): Path<String>,
) -> PageResult {
    let p = pending(&state, &signed, &id).await?;
    // Checked again: trust material may have changed since the upload.
    let caller = signed.caller(&state.db).await?;
    let preview = state.intake.check(&caller, &p.body).await?;
    if let Some(first) = preview.repeated {
        drop_pending(&state, &id).await?;
        return Ok(see_other(&format!("/portal/submissions/{}", first.id)));
    }
    if !preview.errors.is_empty() {
        // Kept until it expires or is discarded: the problem may pass (a CRL about to
        // be renewed); approving it now would only be refused.
        let headline = Page::of(&signed, &state, &headers).t2(
            "upload-refused-now",
            "file",
            &p.file_name,
            "count",
            &preview.errors.len().to_string(),
        );
        let findings = Findings::new(headline, preview.errors, preview.warnings);
        let form = upload_form(&state, &signed, &headers, Some(findings));
        return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, &form));
    }
    let step_up = step_up_prompt(&state, &signed, &Binding::approve_upload(&p.sha256)).await?;
    Ok(page(
        StatusCode::OK,
        &PendingPage {
            page: Page::of(&signed, &state, &headers),
            id,
            file_name: p.file_name,
            document_type: preview.document_type.unwrap_or_default(),
            sha256: p.sha256,
            warnings: preview.warnings,
            step_up,
            csrf: signed.csrf.clone(),
        },
    ))
}

pub(super) async fn approve(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CeremonyForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    let p = pending(&state, &signed, &id).await?;
    approve_step_up(&state, &signed, &f, &Binding::approve_upload(&p.sha256)).await?;
    let caller = signed.caller(&state.db).await?;
    // The upload's id is the idempotency key: approving twice files once.
    let key_name = format!("portal-upload:{id}");
    let outcome = state
        .intake
        .submit(&caller, Some("application/xml"), Some(&key_name), p.body)
        .await;
    match outcome {
        Ok(outcome) => {
            let (s, done) = match outcome {
                Filed::Created(s) => {
                    metrics::counter!("ivan_submissions_accepted_total").increment(1);
                    (s, "filed")
                }
                Filed::Repeated(s) => (s, "repeated"),
            };
            // Filed: a leftover pending row only waits for its expiry.
            if let Err(e) = drop_pending(&state, &id).await {
                tracing::warn!(error = %e, upload = %id, "pending upload not removed");
            }
            Ok(see_other(&format!(
                "/portal/submissions/{}?done={done}",
                s.id
            )))
        }
        Err(SubmitError::Refused(r)) => {
            if let Err(e) = drop_pending(&state, &id).await {
                tracing::warn!(error = %e, upload = %id, "pending upload not removed");
            }
            #[derive(Deserialize, Default)]
            struct Answered {
                #[serde(default)]
                errors: Vec<ProblemEntry>,
                #[serde(default)]
                warnings: Vec<ProblemEntry>,
            }
            let doc: Answered = serde_json::from_slice(&r.body).unwrap_or_default();
            let headline = Page::of(&signed, &state, &headers).t1(
                "upload-refused-at-filing",
                "file",
                &p.file_name,
            );
            let findings = Findings::new(headline, doc.errors, doc.warnings);
            Ok(page(
                r.status,
                &upload_form(&state, &signed, &headers, Some(findings)),
            ))
        }
        Err(SubmitError::Internal(e)) => Err(e.into()),
    }
}

pub(super) async fn discard(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    pending(&state, &signed, &id).await?;
    drop_pending(&state, &id).await?;
    Ok(see_other("/portal/upload"))
}
