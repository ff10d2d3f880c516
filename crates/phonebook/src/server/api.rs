//! HTTP routes, extractors and errors. Every refusal is JSON with a stable error code; bad input
//! is always a 4xx.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query,
    Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tincan_wire::Username;
use utoipa::{IntoParams, OpenApi};

use super::registry::{Registered, RegistryError};
use super::{App, now_ms};
use crate::{Endpoint, RecordError, SignedDelete, SignedRecord};
pub use tincan_phonebook_client::{ErrorBody, ErrorDetail, Health, Info, PeerList, PeerView};

/// The OpenAPI description, generated from the handlers below.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tincan phonebook",
        description = "Signed username → address records. See specs/phonebook.md."
    ),
    paths(register, lookup, delete, list, healthz, info, relay, relays, metrics, openapi),
    components(schemas(
        SignedRecord,
        SignedDelete,
        PeerView,
        Endpoint,
        PeerList,
        Info,
        crate::RelayInfo,
        crate::RelayList,
        tincan_phonebook_client::AddrText,
        ErrorBody,
        ErrorDetail,
        Health
    ))
)]
pub struct ApiDoc;

/// Builds the router with its limits.
pub(crate) fn router(app: Arc<App>) -> Router {
    let max_body = app.config.limits.max_body_bytes;
    Router::new()
        .route("/peers/{username}", get(lookup).post(register).delete(delete))
        .route("/peers/", get(list))
        .route("/peers", get(list))
        .route("/healthz", get(healthz))
        .route("/info", get(info))
        .route("/relay", get(relay))
        .route("/relays", get(relays))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

// ---- errors ------------------------------------------------------------------------------

/// An error response: status, stable code and message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    current_seq: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None, current_seq: None }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                current_seq: self.current_seq,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Marks a response with its error code, for the metrics.
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> ApiError {
        let code = match &e {
            RecordError::InvalidUsername(_) => "invalid-username",
            RecordError::InvalidPeerId(_) => "invalid-peer-id",
            RecordError::MalformedSignature => "malformed-signature",
            RecordError::BadSignature => {
                return ApiError::new(StatusCode::UNAUTHORIZED, "bad-signature", e.to_string());
            }
            RecordError::TooManyAddrs(_) => "too-many-addrs",
            RecordError::InvalidAddr { .. } => "invalid-addr",
            RecordError::InvalidKeys(_) => "invalid-keys",
        };
        ApiError::bad(code, e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match e {
            RegistryError::NameTaken => {
                ApiError::new(StatusCode::CONFLICT, "name-taken", e.to_string())
            }
            RegistryError::StaleSeq { current, .. } => ApiError {
                current_seq: Some(current),
                ..ApiError::new(StatusCode::CONFLICT, "stale-seq", e.to_string())
            },
            RegistryError::SeqInFuture { .. } => ApiError::bad("seq-in-future", e.to_string()),
            RegistryError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            RegistryError::NotOwner => {
                ApiError::new(StatusCode::FORBIDDEN, "not-owner", e.to_string())
            }
            RegistryError::Persist(e) => {
                tracing::error!(error = %e, "the bindings' storage failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage-unavailable",
                    "the phonebook's storage is unavailable right now; try again later",
                )
            }
        }
    }
}

// ---- extractors --------------------------------------------------------------------------

/// JSON body whose rejections are [`ApiError`]s.
pub(crate) struct ApiJson<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as application/json",
            )),
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "the body is over the size limit",
            )),
            Err(e) => Err(ApiError::bad("malformed-json", e.body_text())),
        }
    }
}

/// The username in the path, case-folded and checked.
pub(crate) struct UsernamePath(Username);

impl<S: Send + Sync> FromRequestParts<S> for UsernamePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| {
            ApiError::bad("invalid-username", "the username in the path is not valid text")
        })?;
        Username::new(&raw).map(UsernamePath).map_err(|e| {
            ApiError::bad(
                "invalid-username",
                format!("usernames are 1 to 32 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit: {}", e.reason()),
            )
        })
    }
}

/// A write allowed by the per-IP rate limit.
pub(crate) struct WriteAllowed;

impl FromRequestParts<Arc<App>> for WriteAllowed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let ip = client_ip(parts, app.config.limits.trust_forwarded_for);
        app.limiter.check(ip, Instant::now()).map(|()| WriteAllowed).map_err(|secs| ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!("too many writes from this address; retry in {secs} s"),
            )
        })
    }
}

fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> IpAddr {
    // The trusted proxy appends the address it saw to the last header line: everything
    // before that entry came from the client and can be forged.
    if trust_forwarded_for
        && let Some(ip) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip())
}

// ---- handlers ----------------------------------------------------------------------------

/// Registers a username, or refreshes its record.
///
/// The first valid record for a username binds it to the record's PeerId; after that only
/// records signed by the same key are accepted, each with a higher `seq`.
#[utoipa::path(
    post,
    path = "/peers/{username}",
    params(("username" = String, Path, description = "1–32 of a-z 0-9 _ . -, case-folded", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")),
    request_body = SignedRecord,
    responses(
        (status = 201, description = "Bound and online", body = PeerView),
        (status = 200, description = "Refreshed", body = PeerView),
        (status = 400, description = "invalid-username, username-mismatch, malformed-json, invalid-peer-id, malformed-signature, too-many-addrs, invalid-addr, record-expired, ttl-too-long, seq-in-future", body = ErrorBody),
        (status = 401, description = "bad-signature", body = ErrorBody),
        (status = 409, description = "name-taken, stale-seq", body = ErrorBody),
        (status = 413, description = "body-too-large", body = ErrorBody),
        (status = 415, description = "unsupported-media-type", body = ErrorBody),
        (status = 429, description = "rate-limited", body = ErrorBody),
    )
)]
async fn register(
    State(app): State<Arc<App>>,
    UsernamePath(username): UsernamePath,
    _: WriteAllowed,
    ApiJson(signed): ApiJson<SignedRecord>,
) -> Result<(StatusCode, JsonBytes), ApiError> {
    let record = signed.verify()?;
    if record.username != username {
        return Err(ApiError::bad(
            "username-mismatch",
            "the record is for another username than the path",
        ));
    }
    let now = now_ms();
    let ttl = u64::try_from(app.config.presence_ttl.as_millis()).unwrap_or(u64::MAX);
    let skew = u64::try_from(app.config.clock_skew.as_millis()).unwrap_or(u64::MAX);
    if record.expires_at.0 <= now {
        return Err(ApiError::bad(
            "record-expired",
            "the record has already expired; sign a fresh one",
        ));
    }
    if record.expires_at.0 > now.saturating_add(ttl).saturating_add(skew) {
        return Err(ApiError::bad(
            "ttl-too-long",
            format!(
                "records may live at most {} s; see GET /info",
                app.config.presence_ttl.as_secs()
            ),
        ));
    }
    let peer = record.peer_id;
    let (outcome, answer) = app.registry.register(record, now).await?;
    let (status, kind) = match outcome {
        Registered::Created => (StatusCode::CREATED, "created"),
        Registered::Refreshed => (StatusCode::OK, "refreshed"),
    };
    app.metrics.registration(kind);
    tracing::info!(%username, %peer, kind, "registered");
    Ok((status, JsonBytes(answer)))
}

/// Looks a username up.
///
/// Returns the signed record (kept after presence expires) or the signed deletion. Clients
/// must verify the signature themselves.
#[utoipa::path(
    get,
    path = "/peers/{username}",
    params(("username" = String, Path, description = "1–32 of a-z 0-9 _ . -, case-folded", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")),
    responses(
        (status = 200, description = "Bound", body = PeerView),
        (status = 400, description = "invalid-username", body = ErrorBody),
        (status = 404, description = "not-found", body = ErrorBody),
        (status = 503, description = "storage-unavailable", body = ErrorBody),
    )
)]
async fn lookup(
    State(app): State<Arc<App>>,
    UsernamePath(username): UsernamePath,
) -> Result<JsonBytes, ApiError> {
    let answer = app.registry.lookup(&username, now_ms()).await?;
    app.metrics.lookup(answer.is_some());
    answer
        .map(JsonBytes)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such username"))
}

/// A JSON answer serialized ahead of time.
pub(crate) struct JsonBytes(Bytes);

impl IntoResponse for JsonBytes {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.0)
            .into_response()
    }
}

/// Takes the caller's record down; with `release`, also gives the username up.
#[utoipa::path(
    delete,
    path = "/peers/{username}",
    params(("username" = String, Path, description = "1–32 of a-z 0-9 _ . -, case-folded", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")),
    request_body = SignedDelete,
    responses(
        (status = 200, description = "Deleted", body = Health),
        (status = 400, description = "invalid-username, username-mismatch, malformed-json, invalid-peer-id, malformed-signature, seq-in-future", body = ErrorBody),
        (status = 401, description = "bad-signature", body = ErrorBody),
        (status = 403, description = "not-owner", body = ErrorBody),
        (status = 404, description = "not-found", body = ErrorBody),
        (status = 409, description = "stale-seq", body = ErrorBody),
        (status = 413, description = "body-too-large", body = ErrorBody),
        (status = 415, description = "unsupported-media-type", body = ErrorBody),
        (status = 429, description = "rate-limited", body = ErrorBody),
    )
)]
async fn delete(
    State(app): State<Arc<App>>,
    UsernamePath(username): UsernamePath,
    _: WriteAllowed,
    ApiJson(deletion): ApiJson<SignedDelete>,
) -> Result<Json<Health>, ApiError> {
    let (name, peer) = deletion.verify()?;
    if name != username {
        return Err(ApiError::bad(
            "username-mismatch",
            "the deletion is for another username than the path",
        ));
    }
    let release = deletion.release;
    app.registry.delete(&username, peer, deletion, now_ms()).await?;
    tracing::info!(%username, %peer, release, "deleted");
    Ok(Json(Health { status: if release { "released" } else { "deleted" }.into() }))
}

/// Query of `GET /peers/`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Continue after this username (the `next` of the previous page).
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
    after: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// Lists the users online now.
#[utoipa::path(
    get,
    path = "/peers/",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of users online", body = PeerList),
        (status = 400, description = "invalid-query", body = ErrorBody),
        (status = 404, description = "directory-disabled", body = ErrorBody),
        (status = 503, description = "storage-unavailable", body = ErrorBody),
    )
)]
async fn list(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<JsonBytes, ApiError> {
    if !app.config.directory {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "directory-disabled",
            "this phonebook does not publish who is online",
        ));
    }
    let Query(query) = query.map_err(|e| ApiError::bad("invalid-query", e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad("invalid-query", "limit must be 1 to 100"));
    }
    let after = match query.after {
        Some(a) => Some(
            Username::new(&a)
                .map_err(|_| ApiError::bad("invalid-query", "after must be a username"))?,
        ),
        None => None,
    };
    let (peers, next) = app.registry.online(after.as_ref(), limit, now_ms()).await?;
    // The shape of `PeerList`, assembled from the answers serialized ahead of time.
    let mut body = Vec::with_capacity(32 + peers.iter().map(|p| p.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"peers\":[");
    for (i, peer) in peers.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(peer);
    }
    body.extend_from_slice(b"],\"next\":");
    body.extend_from_slice(&serde_json::to_vec(&next).unwrap_or_else(|_| b"null".to_vec()));
    body.push(b'}');
    Ok(JsonBytes(Bytes::from(body)))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Limits and settings.
#[utoipa::path(get, path = "/info", responses((status = 200, description = "Settings", body = Info)))]
async fn info(State(app): State<Arc<App>>) -> Json<Info> {
    let c = &app.config;
    Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        presence_ttl_secs: c.presence_ttl.as_secs(),
        max_addrs: crate::MAX_ADDRS,
        max_body_bytes: c.limits.max_body_bytes,
        writes_per_minute: c.limits.writes_per_minute,
        directory: c.directory,
        olm_keys: true,
    })
}

/// The circuit relay that runs beside this phonebook, for peers behind NAT.
#[utoipa::path(get, path = "/relay", responses(
    (status = 200, description = "The relay's PeerId, addresses and limits", body = crate::RelayInfo),
    (status = 404, description = "No relay runs here (`no-relay`)", body = ErrorBody),
))]
async fn relay(State(app): State<Arc<App>>) -> Result<Json<crate::RelayInfo>, ApiError> {
    let relays = app.registry.relays(app.config.relay.as_ref(), now_ms()).await?;
    match relays.into_iter().next() {
        Some(info) => Ok(Json(info)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no-relay",
            "this phonebook runs no relay (start it with --relay)",
        )),
    }
}

/// Every relay of this phonebook's instances that is alive, this instance's first: a peer
/// reserves at one and moves to another when it goes away.
#[utoipa::path(get, path = "/relays", responses(
    (status = 200, description = "The relays, at most 16; none is an empty list", body = crate::RelayList),
    (status = 503, description = "storage-unavailable", body = ErrorBody),
))]
async fn relays(State(app): State<Arc<App>>) -> Result<Json<crate::RelayList>, ApiError> {
    let relays = app.registry.relays(app.config.relay.as_ref(), now_ms()).await?;
    Ok(Json(crate::RelayList { relays }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(app): State<Arc<App>>) -> Result<impl IntoResponse, ApiError> {
    let (bindings, online) = app.registry.counts(now_ms()).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(bindings, online),
    ))
}

/// This API's OpenAPI description.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not render the API description",
        )
        .into_response(),
    }
}

async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no-such-route", "no such route; see GET /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not take that method",
    )
}

/// Counts every request, applies the request deadline, and logs the outcome (never bodies).
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>().map(MatchedPath::as_str) {
        Some("/peers") => 1,
        Some(path) => super::metrics::ROUTES
            .iter()
            .position(|r| *r == path)
            .unwrap_or(super::metrics::ROUTES.len() - 1),
        None => super::metrics::ROUTES.len() - 1,
    };
    let method = request.method().clone();
    let started = Instant::now();
    // Only requests with a body can be slow to arrive, or too large; the others are answered
    // from memory.
    let has_body = method == axum::http::Method::POST || method == axum::http::Method::DELETE;
    // A body announced over the limit is refused before waiting for it.
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if has_body && announced.is_some_and(|n| n > app.config.limits.max_body_bytes as u64) {
        let mut response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "the body is over the size limit",
        )
        .into_response();
        // The body stays unread, so the connection closes after this answer; saying so keeps
        // a pooling client from sending its next request into the closing socket.
        response
            .headers_mut()
            .insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        app.metrics.request(route, response.status().as_u16());
        app.metrics.rejection("body-too-large");
        return response;
    }
    let response = if has_body {
        match tokio::time::timeout(app.config.limits.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long")
                    .into_response()
            }
        }
    } else {
        next.run(request).await
    };
    let status = response.status().as_u16();
    app.metrics.request(route, status);
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>().copied() {
        app.metrics.rejection(code);
        tracing::debug!(%method, route = super::metrics::ROUTES[route], status, code, "refused");
    }
    tracing::trace!(%method, route = super::metrics::ROUTES[route], status, micros = started.elapsed().as_micros() as u64, "request");
    response
}
