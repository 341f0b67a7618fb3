//! The mobile API, `/mobile/v1` (JSON; errors are RFC 9457 problem documents made by
//! the server's error mapping). Its OpenAPI document is served at
//! `/mobile/v1/openapi.json`.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /mobile/v1/session` | log in with phone number and PIN → access + refresh token |
//! | `POST /mobile/v1/session/refresh` | spend a refresh token for new tokens |
//! | `DELETE /mobile/v1/session` | log out (revokes the session) |
//! | `POST /mobile/v1/preregistrations` | file a pre-registration (`Idempotency-Key` optional) |
//! | `GET /mobile/v1/preregistrations?after=&limit=` | the pre-registrations filed from this phone access, paged |
//!
//! Logins are limited per source network (`logins_per_minute_per_source`, keyed by the
//! client's IPv4 /24 or IPv6 /64, then `429` with `Retry-After`); the source is the
//! [`ClientIp`] the server established (the TCP peer, or behind trusted proxies the
//! forwarded address). PIN guessing is also limited per phone number
//! ([`crate::throttle`]).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::prereg::{self, Filter, Preregistration};
use crate::session::Issued;
use crate::{Error, Mobile, PhoneCaller, access};

/// Largest request body the mobile API reads.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most pre-registrations one listing page returns.
pub const MAX_PAGE: i64 = 200;

/// Requests per source network per minute (governor, keyed by [`source_network`]:
/// the IPv4 /24 or IPv6 /64 of the client, so one host cannot dodge the limit by
/// taking the next address of its block); the mobile login and the portal's sign-in
/// use it.
#[derive(Debug)]
pub struct SourceLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl SourceLimiter {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self(governor::RateLimiter::keyed(quota))
    }

    /// `Err(TooManyRequests)` with the wait when `ip` is over its quota.
    pub fn check(&self, ip: IpAddr) -> Result<(), Error> {
        if self.0.len() > 100_000 {
            self.0.retain_recent();
        }
        self.0.check_key(&source_network(ip)).map_err(|not_until| {
            metrics::counter!("ivan_mobile_rate_limited_total").increment(1);
            Error::TooManyRequests {
                retry_after: not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                )),
            }
        })
    }
}

/// The network a source address is limited as: its IPv4 /24 or its IPv6 /64 (an
/// IPv4-mapped IPv6 address counts as IPv4), as the network's first address.
pub fn source_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => source_network(IpAddr::V4(v4)),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// The client's address as the server established it (behind trusted proxies, from
/// `X-Forwarded-For`; see the server's `http.trusted_proxies`), put into the request's
/// extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Where a request comes from: the [`ClientIp`] the server found, else the TCP peer
/// (`None` when the server was not started with connection info).
#[derive(Debug, Clone)]
pub struct Source(pub Option<IpAddr>);

impl Source {
    /// The source of a request from its extensions.
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        Source(extensions.get::<ClientIp>().map(|c| c.0).or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        }))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source::of(&parts.extensions))
    }
}

/// The mobile API's OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "ivan mobile API",
        version = "1",
        description = "Phone users authorised by an employer sign in with phone number and PIN and file pre-registrations (preliminary hires and terminations). Errors are RFC 9457 problem documents. Receipts are ES256 compact JWS verifiable with /.well-known/jwks.json."
    ),
    paths(login_doc, refresh_doc, logout_doc, file_doc, list_doc),
    components(schemas(
        LoginRequest,
        RefreshRequest,
        Issued,
        prereg::Request,
        Preregistration,
        Page,
        crate::Finding
    )),
    modifiers(&AccessToken)
)]
pub struct MobileApiDoc;

#[derive(Debug)]
struct AccessToken;

impl utoipa::Modify for AccessToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "access_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// `POST /mobile/v1/session`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// E.164, e.g. `+421901123456`.
    pub phone: String,
    pub pin: String,
    /// Shown to the employer, e.g. "Pixel 8 of J. Novák".
    pub device_name: String,
}

/// `POST /mobile/v1/session/refresh`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// One page of pre-registrations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub items: Vec<Preregistration>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub after: Option<String>,
    pub limit: Option<i64>,
}

/// The `/mobile/v1` routes with their state; `E` is the server's error type, which
/// owns the mapping to problem documents.
pub fn router<E, S>(mobile: Mobile) -> Router<S>
where
    E: From<Error> + IntoResponse + Send + 'static,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/mobile/v1/session", post(login::<E>).delete(logout::<E>))
        .route("/mobile/v1/session/refresh", post(refresh::<E>))
        .route(
            "/mobile/v1/preregistrations",
            post(file::<E>).get(list::<E>),
        )
        .route("/mobile/v1/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(mobile)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(MobileApiDoc::openapi())
}

/// A JSON request body as `T`, or [`Error::Invalid`] saying why not.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Invalid(format!("the body is not valid JSON for this request: {e}")))
}

/// The phone user a bearer token names.
async fn caller(mobile: &Mobile, headers: &HeaderMap) -> Result<PhoneCaller, Error> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            Error::Unauthorized("a valid access token is required: Authorization: Bearer …".into())
        })?;
    mobile.sessions().authenticate(mobile.db(), token).await
}

/// The request of a token endpoint, once its source network is within its rate
/// (checked before the body is even parsed).
fn limited<T: serde::de::DeserializeOwned>(
    m: &Mobile,
    source: &Source,
    body: &[u8],
) -> Result<T, Error> {
    if let Some(ip) = source.0 {
        m.inner.limiter.check(ip)?;
    }
    parse_json(body)
}

async fn login<E: From<Error>>(
    State(m): State<Mobile>,
    source: Source,
    body: Bytes,
) -> Result<Json<Issued>, E> {
    let req: LoginRequest = limited(&m, &source, &body)?;
    let issued = access::login(
        &m,
        access::Login {
            phone: req.phone,
            pin: req.pin,
            device_name: req.device_name,
            source: source
                .0
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        },
    )
    .await?;
    Ok(Json(issued))
}

async fn refresh<E: From<Error>>(
    State(m): State<Mobile>,
    source: Source,
    body: Bytes,
) -> Result<Json<Issued>, E> {
    let req: RefreshRequest = limited(&m, &source, &body)?;
    Ok(Json(
        m.sessions()
            .refresh(m.ledger(), m.db(), &req.refresh_token)
            .await?,
    ))
}

async fn logout<E: From<Error>>(
    State(m): State<Mobile>,
    headers: HeaderMap,
) -> Result<StatusCode, E> {
    let c = caller(&m, &headers).await?;
    crate::session::revoke(m.ledger(), &c.session_id, &c.access_id, c.actor(), "logout").await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn file<E: From<Error>>(
    State(m): State<Mobile>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, E> {
    let c = caller(&m, &headers).await?;
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    let (p, created) = m.host().file(&c, body, key.as_deref()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/submissions/{}", p.id);
    Ok((status, [(header::LOCATION, location)], Json(p)).into_response())
}

async fn list<E: From<Error>>(
    State(m): State<Mobile>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page>, E> {
    let c = caller(&m, &headers).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::Invalid(format!("limit must be 1 to {MAX_PAGE}")).into());
    }
    // A phone user sees what was filed from its own phone access, never the rest of
    // the employer's (they carry other people's personal ids).
    let filter = Filter {
        state: None,
        after: q.after,
        limit,
        phone_access_id: Some(c.access_id.clone()),
    };
    let (items, next_after) = m.host().list(&c.employer_id, &filter).await?;
    Ok(Json(Page { items, next_after }))
}

// OpenAPI descriptions of the generic handlers above.

/// Log in with phone number and PIN.
#[utoipa::path(post, path = "/mobile/v1/session", request_body = LoginRequest,
    responses((status = 200, body = Issued), (status = 401, description = "unknown phone, wrong PIN or locked access (one answer for all)"),
        (status = 429, description = "too many attempts from this source network (IPv4 /24, IPv6 /64), or this phone must wait after wrong PINs; `Retry-After` says how long"), (status = 503, description = "PIN checking busy")))]
#[allow(dead_code)]
fn login_doc() {}

/// Spend a refresh token for new tokens (reusing a spent one revokes the session).
#[utoipa::path(post, path = "/mobile/v1/session/refresh", request_body = RefreshRequest,
    responses((status = 200, body = Issued), (status = 401, description = "unknown, spent, expired or revoked refresh token")))]
#[allow(dead_code)]
fn refresh_doc() {}

/// Log out: the session's tokens stop working.
#[utoipa::path(delete, path = "/mobile/v1/session", security(("access_token" = [])),
    responses((status = 204), (status = 401)))]
#[allow(dead_code)]
fn logout_doc() {}

/// File a pre-registration; it is forwarded to the authority at once.
#[utoipa::path(post, path = "/mobile/v1/preregistrations", request_body = prereg::Request,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first filing")),
    security(("access_token" = [])),
    responses((status = 201, body = Preregistration), (status = 200, body = Preregistration, description = "repeat of an Idempotency-Key"),
        (status = 400), (status = 401), (status = 409, description = "Idempotency-Key reused with other content"),
        (status = 422, description = "rules broken; `errors[]` lists them")))]
#[allow(dead_code)]
fn file_doc() {}

/// The pre-registrations filed from this phone access, oldest first.
#[utoipa::path(get, path = "/mobile/v1/preregistrations",
    params(("after" = Option<String>, Query), ("limit" = Option<i64>, Query, description = "1 to 200, default 50")),
    security(("access_token" = [])),
    responses((status = 200, body = Page), (status = 401)))]
#[allow(dead_code)]
fn list_doc() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_limit_is_shared_by_a_24_or_a_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let limiter = SourceLimiter::new(2);
        // Two attempts from one /24, from different addresses: the third is refused…
        limiter.check(ip("198.51.100.7")).unwrap();
        limiter.check(ip("198.51.100.200")).unwrap();
        assert!(matches!(
            limiter.check(ip("198.51.100.9")),
            Err(Error::TooManyRequests { .. })
        ));
        // …also as an IPv4-mapped IPv6 address; the next /24 is another source.
        assert!(limiter.check(ip("::ffff:198.51.100.10")).is_err());
        limiter.check(ip("198.51.101.7")).unwrap();
        // IPv6: one /64 is one source.
        limiter.check(ip("2001:db8:1:2::1")).unwrap();
        limiter.check(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(limiter.check(ip("2001:db8:1:2:abcd::1")).is_err());
        limiter.check(ip("2001:db8:1:3::1")).unwrap();
    }

    #[test]
    fn openapi_documents_every_mobile_route() {
        let doc = serde_json::to_value(MobileApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/mobile/v1/session", "post"),
            ("/mobile/v1/session", "delete"),
            ("/mobile/v1/session/refresh", "post"),
            ("/mobile/v1/preregistrations", "post"),
            ("/mobile/v1/preregistrations", "get"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path} missing");
        }
        for status in ["200", "201", "401", "409", "422"] {
            assert!(
                paths["/mobile/v1/preregistrations"]["post"]["responses"][status].is_object(),
                "{status}"
            );
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["access_token"]["scheme"],
            "bearer"
        );
    }
}
