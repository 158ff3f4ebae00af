//! The REST layer: routing, authentication, request bodies and the documented response shapes.
//!
//! Handlers return `Result<Reply, Reply>`: the error is the finished HTTP error response, built once on the error
//! path and returned as is, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use serde_json::{Value, json};
use spark_protocol::crypto::keys::RsaPublicKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::events::{Credential, Event, Filter, Scope};
use super::hub::{DeviceEvent, FlashProgress, HubError};
use super::state::{AuthError, DeviceRecord, MAX_TOKEN_LIFETIME, TOKEN_LIFETIME, is_device_id};
use super::util::{iso8601, multipart_boundary, parse_multipart, percent_decode};
use super::{Cloud, HttpLimits, REQUEST_TIMEOUT, lock, system_rng};

mod webhooks;

type Body = BoxBody<Bytes, Infallible>;
type Reply = Response<Body>;

/// Event names and function arguments: at most 63 characters (2014 Core limits).
const MAX_NAME: usize = 63;
/// Event data: at most 63 bytes (2014 Core limit).
const MAX_DATA: usize = 63;
/// Largest `ttl` of an event.
const MAX_TTL: u32 = 16_777_215;

/// Refused connections being answered at once; past it a refused connection is closed without an answer.
const MAX_REFUSALS: usize = 64;
/// The most bytes of a refused request's head that are read before answering it.
const REFUSED_HEAD_LIMIT: usize = 8 * 1024;
/// How long a refused connection is drained after its answer, so that the client reads the answer instead of a
/// reset.
const REFUSAL_DRAIN: Duration = Duration::from_secs(1);

pub(super) async fn accept_loop(cloud: Arc<Cloud>, listener: TcpListener, limits: HttpLimits) {
    // Connections hold a permit and their address's slot; past either cap a client is told so and closed, and
    // little else is spent on it.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let per_address = Arc::new(AddressSlots::new(limits.max_connections_per_address));
    let logins = Arc::new(LoginLimiter::new(&limits));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(_) => {
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admitted = per_address.take(peer.ip()).and_then(|slot| {
            let permit = Arc::clone(&permits).try_acquire_owned().ok()?;
            Some((slot, permit))
        });
        let Some((slot, permit)) = admitted else {
            // A refusal holds no connection permit; a flood of them is bounded on its own.
            if let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_busy(stream, limits.header_timeout).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let cloud = Arc::clone(&cloud);
        let ctx = Arc::new(Conn {
            limits,
            peer: peer.ip(),
            logins: Arc::clone(&logins),
        });
        tokio::spawn(async move {
            let _held = (permit, slot);
            let service = hyper::service::service_fn(move |req| {
                let cloud = Arc::clone(&cloud);
                let ctx = Arc::clone(&ctx);
                async move { Ok::<_, Infallible>(handle(&cloud, req, &ctx).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Open connections per client address, each held by an [`AddressSlot`].
struct AddressSlots {
    cap: usize,
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// One connection's share of its address's count; given back on drop.
struct AddressSlot {
    slots: Arc<AddressSlots>,
    addr: IpAddr,
}

impl AddressSlots {
    fn new(cap: usize) -> AddressSlots {
        AddressSlots {
            cap,
            open: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A slot for `addr`, unless it holds [`HttpLimits::max_connections_per_address`] already.
    fn take(self: &Arc<Self>, addr: IpAddr) -> Option<AddressSlot> {
        let mut open = lock(&self.open);
        let n = open.entry(addr).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            slots: Arc::clone(self),
            addr,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.slots.open);
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

/// The answer to a connection past a connection cap: the request head is read first (bounded in size and by the
/// header timeout), so that a client that had not sent yet still gets a whole exchange; then `503` with a JSON
/// body and `Connection: close`, the write side shut, and what the client still sends drained briefly so that the
/// close does not reset the answer away.
async fn refuse_busy(mut stream: tokio::net::TcpStream, header_timeout: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = r#"{"ok":false,"error":"Too many connections; try again later"}"#;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(header_timeout, async {
        while head.len() < REFUSED_HEAD_LIMIT {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n\
Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Drain (and drop) what the client still sends until it closes, at most 64 KiB.
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn reply(status: StatusCode, body: Body, content_type: &'static str) -> Reply {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    let bytes = serde_json::to_vec(value).expect("a JSON value serialises");
    reply(status, full(bytes), "application/json; charset=utf-8")
}

fn ok_false(status: StatusCode, error: &str) -> Reply {
    json_reply(status, &json!({"ok": false, "error": error}))
}

fn ok_false_errors(status: StatusCode, error: &str) -> Reply {
    json_reply(status, &json!({"ok": false, "errors": [error]}))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    json_reply(
        status,
        &json!({"code": status.as_u16(), "error": error, "error_description": description}),
    )
}

fn not_found() -> Reply {
    reply(StatusCode::NOT_FOUND, full(Bytes::new()), "text/plain")
}

/// The parsed parts of a request the handlers need.
struct Req {
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    content_type: String,
    form: Vec<(String, String)>,
    form_is_urlencoded: bool,
    parts: Vec<super::util::Part>,
    peer: IpAddr,
    logins: Arc<LoginLimiter>,
}

impl Req {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| {
                self.parts
                    .iter()
                    .find(|p| p.name == name && p.file_name.is_none())
                    .and_then(|p| std::str::from_utf8(&p.data).ok())
            })
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request body as the handlers see it.
#[derive(Debug, Default)]
pub(crate) struct RequestBody {
    /// Fields of a form or JSON object body.
    pub(crate) form: Vec<(String, String)>,
    /// Whether the body was `application/x-www-form-urlencoded`.
    pub(crate) form_is_urlencoded: bool,
    /// Parts of a multipart body.
    pub(crate) parts: Vec<super::util::Part>,
}

/// Parses a request body by its content type (form, JSON object or multipart; others are ignored). This runs
/// before authentication for a token sent in the body, so it must hold against any input.
pub(crate) fn parse_body(content_type: &str, bytes: &[u8]) -> Result<RequestBody, &'static str> {
    let mut body = RequestBody::default();
    if bytes.is_empty() {
        return Ok(body);
    }
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-www-form-urlencoded" => {
            body.form_is_urlencoded = true;
            body.form = serde_urlencoded::from_bytes(bytes).map_err(|_| "Malformed form body")?;
        }
        "application/json" => {
            let value: Value = serde_json::from_slice(bytes).map_err(|_| "Malformed JSON body")?;
            let Value::Object(map) = value else {
                return Err("The JSON body must be an object");
            };
            body.form = map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect();
        }
        "multipart/form-data" => {
            let boundary = multipart_boundary(content_type).ok_or("Malformed multipart body")?;
            body.parts =
                parse_multipart(bytes, boundary).map_err(|_| "Malformed multipart body")?;
        }
        _ => {}
    }
    Ok(body)
}

/// Whether a route authenticates with a bearer token (all of `/v1/` but sign-up and the Basic-auth token routes).
fn uses_bearer(method: &Method, segments: &[String]) -> bool {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["v1", "users"] => false,
        ["v1", "access_tokens"] => false,
        ["v1", "access_tokens", token] => *token == "current" && method == Method::DELETE,
        ["v1", ..] => true,
        _ => false,
    }
}

/// Reads a request. The token of a bearer route given in the header or the query is checked before the body is
/// read; the body is bounded (a firmware upload by an authenticated user may be larger) and must arrive in time.
async fn read_request(cloud: &Cloud, req: Request<Incoming>, ctx: &Conn) -> Result<Req, Reply> {
    let limits = &ctx.limits;
    let (parts, body) = req.into_parts();
    let mut segments = Vec::new();
    for raw in parts.uri.path().split('/').filter(|s| !s.is_empty()) {
        segments.push(
            percent_decode(raw).ok_or_else(|| ok_false(StatusCode::BAD_REQUEST, "Bad path"))?,
        );
    }
    let query = parts
        .uri
        .query()
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default();
    let header_str = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header_str(header::AUTHORIZATION);
    let content_type = header_str(header::CONTENT_TYPE).unwrap_or_default();
    let head = Req {
        method: parts.method,
        segments,
        query,
        authorization,
        content_type,
        form: Vec::new(),
        form_is_urlencoded: false,
        parts: Vec::new(),
        peer: ctx.peer,
        logins: Arc::clone(&ctx.logins),
    };
    let mut limit = limits.max_body;
    if uses_bearer(&head.method, &head.segments) && token_of(&head)?.is_some() {
        bearer(cloud, &head)?;
        let upload = head.method == Method::PUT
            && head.segments.len() == 3
            && head.segments[0] == "v1"
            && head.segments[1] == "devices";
        if upload {
            limit = limits.max_image_body;
        }
    }
    let too_large = || {
        ok_false(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("Request body too large (at most {limit} bytes)"),
        )
    };
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = match tokio::time::timeout(limits.body_timeout, Limited::new(body, limit).collect())
        .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => return Err(too_large()),
        Err(_) => {
            return Err(ok_false(
                StatusCode::REQUEST_TIMEOUT,
                "The request body did not arrive in time",
            ));
        }
    };
    let Req {
        method,
        segments,
        query,
        authorization,
        content_type,
        peer,
        logins,
        ..
    } = head;
    let body =
        parse_body(&content_type, &bytes).map_err(|why| ok_false(StatusCode::BAD_REQUEST, why))?;
    let (form, form_is_urlencoded, multipart) = (body.form, body.form_is_urlencoded, body.parts);
    Ok(Req {
        method,
        segments,
        query,
        authorization,
        content_type,
        form,
        form_is_urlencoded,
        parts: multipart,
        peer,
        logins,
    })
}

/// What a connection's requests share.
struct Conn {
    limits: HttpLimits,
    peer: IpAddr,
    logins: Arc<LoginLimiter>,
}

async fn handle(cloud: &Arc<Cloud>, req: Request<Incoming>, ctx: &Conn) -> Reply {
    if req.method() == Method::OPTIONS {
        let mut r = reply(StatusCode::NO_CONTENT, full(Bytes::new()), "text/plain");
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("X-Requested-With, Content-Type, Accept, Authorization"),
        );
        return r;
    }
    let req = match read_request(cloud, req, ctx).await {
        Ok(req) => req,
        Err(reply) => return reply,
    };
    route(cloud, &req).await.unwrap_or_else(|r| r)
}

async fn route(cloud: &Arc<Cloud>, req: &Req) -> Result<Reply, Reply> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = &req.method;
    match (m, seg.as_slice()) {
        (&Method::POST, ["oauth", "token"]) => create_token(cloud, req).await,
        (&Method::POST, ["v1", "users"]) => create_user(cloud, req),
        (&Method::GET, ["server", "health"]) => Ok(health(cloud)),
        (&Method::GET, ["v1", "access_tokens"]) => list_tokens(cloud, req).await,
        (&Method::DELETE, ["v1", "access_tokens"]) => {
            let user = basic_user(cloud, req).await?;
            let count = cloud
                .revoke_all_tokens(&user)
                .map_err(|_| storage_failed())?;
            Ok(json_reply(
                StatusCode::OK,
                &json!({"ok": true, "revoked": count}),
            ))
        }
        (&Method::DELETE, ["v1", "access_tokens", "current"]) => {
            let user = bearer(cloud, req)?;
            let token = token_of(req)?.unwrap_or_default();
            cloud
                .revoke_token(&user.name, &token)
                .map_err(|_| storage_failed())?;
            Ok(json_reply(StatusCode::OK, &json!({"ok": true})))
        }
        (&Method::DELETE, ["v1", "access_tokens", token]) => delete_token(cloud, req, token).await,
        (&Method::GET, ["v1", "events", prefix @ ..]) => {
            let user = bearer(cloud, req)?;
            Ok(subscribe(cloud, &user, Scope::All, prefix))
        }
        (&Method::GET, ["v1", "devices", "events", prefix @ ..]) => {
            let user = bearer(cloud, req)?;
            Ok(subscribe(cloud, &user, Scope::Mine, prefix))
        }
        (&Method::POST, ["v1", "devices", "events"]) => publish(cloud, req).await,
        (&Method::GET, ["v1", "devices"]) => {
            let user = bearer(cloud, req)?;
            Ok(list_devices(cloud, &user))
        }
        // The account behind the token, as the hosted cloud answers it (`spark whoami`).
        (&Method::GET, ["v1", "user"]) => {
            let user = bearer(cloud, req)?;
            Ok(json_reply(StatusCode::OK, &json!({"username": user.name})))
        }
        (&Method::POST, ["v1", "devices"]) => claim(cloud, req),
        (&Method::POST, ["v1", "device_claims"]) => create_claim_code(cloud, req),
        (&Method::GET, ["v1", "devices", id, "events", prefix @ ..]) => {
            let user = bearer(cloud, req)?;
            let device = resolve(cloud, &user, id)?;
            Ok(subscribe(cloud, &user, Scope::Device(device.id), prefix))
        }
        (&Method::GET, ["v1", "devices", id]) => device_info(cloud, req, id).await,
        (&Method::PUT, ["v1", "devices", id]) => update_device(cloud, req, id).await,
        (&Method::DELETE, ["v1", "devices", id]) => release(cloud, req, id),
        (&Method::GET, ["v1", "devices", id, variable]) => {
            get_variable(cloud, req, id, variable).await
        }
        (&Method::POST, ["v1", "devices", id, function]) => {
            call_function(cloud, req, id, function).await
        }
        (&Method::POST, ["v1", "provisioning", id]) => provision(cloud, req, id).await,
        (&Method::GET, ["v1", "webhooks"]) => webhooks::list(cloud, req),
        (&Method::POST, ["v1", "webhooks"]) => webhooks::create(cloud, req),
        (&Method::GET, ["v1", "webhooks", id]) => webhooks::show(cloud, req, id),
        (&Method::DELETE, ["v1", "webhooks", id]) => webhooks::delete(cloud, req, id),
        _ => Ok(not_found()),
    }
}

fn storage_failed() -> Reply {
    ok_false(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Could not write the state directory",
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication

struct User {
    name: String,
    id: String,
    token_digest: String,
    expires_at: Option<SystemTime>,
}

/// The bearer token of a request, from exactly one of: the `Authorization` header, `?access_token=`, or a
/// form-encoded body field.
fn token_of(req: &Req) -> Result<Option<String>, Reply> {
    let invalid = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", d);
    let mut found = Vec::new();
    if let Some(auth) = &req.authorization {
        let mut words = auth.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("bearer") => {
                found.push(token.to_owned());
            }
            (Some(scheme), _, _) if scheme.eq_ignore_ascii_case("basic") => {}
            _ => return Err(invalid("Malformed auth header")),
        }
    }
    if let Some(t) = req.query("access_token") {
        found.push(t.to_owned());
    }
    if let Some((_, t)) = req.form.iter().find(|(k, _)| k == "access_token") {
        if req.method == Method::GET {
            return Err(invalid(
                "Method cannot be GET When putting the token in the body.",
            ));
        }
        if !req.form_is_urlencoded {
            return Err(invalid(
                "When putting the token in the body, content type must be application/x-www-form-urlencoded.",
            ));
        }
        found.push(t.clone());
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(invalid(
            "Only one method may be used to authenticate at a time (Auth header, GET or POST).",
        )),
    }
}

fn bearer(cloud: &Cloud, req: &Req) -> Result<User, Reply> {
    let unauthorized = |d: &str| {
        let mut r = json_reply(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_token", "error_description": d}),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"spark\", error=\"invalid_token\""),
        );
        r
    };
    let token = token_of(req)?.ok_or_else(|| unauthorized("The access token was not found"))?;
    match cloud.state.authenticate_token(&token) {
        Ok(a) => Ok(User {
            name: a.username,
            id: a.user_id,
            token_digest: a.token_digest,
            expires_at: a.expires_at,
        }),
        Err(AuthError::ExpiredToken) => Err(unauthorized("The access token provided has expired.")),
        Err(_) => Err(unauthorized("The access token provided is invalid.")),
    }
}

fn basic_credentials(req: &Req) -> Option<(String, String)> {
    let auth = req.authorization.as_deref()?;
    let (scheme, encoded) = auth.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Base64::decode_vec(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn basic_user(cloud: &Cloud, req: &Req) -> Result<String, Reply> {
    let (user, password) = basic_credentials(req).ok_or_else(|| {
        ok_false_errors(
            StatusCode::UNAUTHORIZED,
            "Unauthorized. You must send username and password in HTTP Basic Auth to view your access tokens.",
        )
    })?;
    login_attempt(req)?;
    cloud
        .verify_password(&user, &password)
        .await
        .map_err(|_| ok_false_errors(StatusCode::UNAUTHORIZED, "Bad password"))
}

/// Counts a password attempt against the client's address; `429` once its allowance is spent.
fn login_attempt(req: &Req) -> Result<(), Reply> {
    if req.logins.allow(req.peer, Instant::now()) {
        return Ok(());
    }
    let mut r = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many login attempts from this address; try again later",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Err(r)
}

/// Password attempts per client address: a bucket of `burst` attempts, one more each `refill`.
pub(super) struct LoginLimiter {
    burst: u32,
    refill: Duration,
    buckets: std::sync::Mutex<std::collections::HashMap<IpAddr, (f64, Instant)>>,
}

impl LoginLimiter {
    fn new(limits: &HttpLimits) -> LoginLimiter {
        LoginLimiter {
            burst: limits.login_burst.max(1),
            refill: limits.login_refill,
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn allow(&self, peer: IpAddr, now: Instant) -> bool {
        let burst = f64::from(self.burst);
        let per_sec = 1.0 / self.refill.as_secs_f64().max(1e-3);
        let mut buckets = lock(&self.buckets);
        if buckets.len() > 4096 {
            // Forget addresses whose allowance is whole again.
            buckets.retain(|_, (left, at)| {
                *left + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (left, at) = buckets.entry(peer).or_insert((burst, now));
        *left = (*left + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(burst);
        *at = now;
        if *left >= 1.0 {
            *left -= 1.0;
            true
        } else {
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Users and tokens

fn valid_client_id(id: &str) -> bool {
    (3..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn create_token(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    if !req.form_is_urlencoded
        && !req
            .content_type
            .starts_with("application/x-www-form-urlencoded")
    {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Method must be POST with application/x-www-form-urlencoded encoding",
        ));
    }
    let (client_id, client_secret) = match basic_credentials(req) {
        Some(pair) => pair,
        None => (
            req.field("client_id").unwrap_or_default().to_owned(),
            req.field("client_secret").unwrap_or_default().to_owned(),
        ),
    };
    if !valid_client_id(&client_id) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Invalid or missing client_id parameter",
        ));
    }
    if client_secret.is_empty() {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Missing client_secret parameter",
        ));
    }
    if req.field("grant_type") != Some("password") {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid or missing grant_type parameter",
        ));
    }
    let (Some(username), Some(password)) = (req.field("username"), req.field("password")) else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Missing parameters. \"username\" and \"password\" are required",
        ));
    };
    login_attempt(req)?;
    let username = cloud
        .verify_password(username, password)
        .await
        .map_err(|_| {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "User credentials are invalid",
            )
        })?;
    let lifetime = match req.field("expires_in").map(str::parse::<u64>) {
        None => Some(TOKEN_LIFETIME),
        Some(Ok(0)) => None,
        Some(Ok(secs)) if secs <= MAX_TOKEN_LIFETIME.as_secs() => Some(Duration::from_secs(secs)),
        Some(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!(
                    "expires_in must be a number of seconds from 0 (never) to {}",
                    MAX_TOKEN_LIFETIME.as_secs()
                ),
            ));
        }
    };
    let (token, _record) = cloud
        .state
        .issue_token(&username, &client_id, lifetime, &mut system_rng())
        .map_err(|_| storage_failed())?;
    let mut r = json_reply(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": lifetime.map_or(0, |l| l.as_secs()),
        }),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

fn create_user(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let username = req.field("username").unwrap_or_default();
    let password = req.field("password").unwrap_or_default();
    match cloud
        .state
        .create_user(username, password, &mut system_rng())
    {
        Ok(()) => Ok(json_reply(StatusCode::OK, &json!({"ok": true}))),
        Err(AuthError::UserExists) => Err(ok_false_errors(
            StatusCode::BAD_REQUEST,
            "User already exists",
        )),
        Err(AuthError::Invalid(why)) => Err(ok_false_errors(StatusCode::BAD_REQUEST, why)),
        Err(_) => Err(storage_failed()),
    }
}

async fn list_tokens(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = basic_user(cloud, req).await?;
    let list: Vec<Value> = cloud
        .state
        .tokens(&user)
        .into_iter()
        .map(|t| {
            json!({
                // Only the digest is stored: a token is listed, and can be deleted, by its SHA-256.
                "token": t.digest,
                "expires_at": t
                    .expires_at
                    .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                    .map(iso8601),
                "client": t.client,
            })
        })
        .collect();
    Ok(json_reply(StatusCode::OK, &Value::Array(list)))
}

async fn delete_token(cloud: &Cloud, req: &Req, token: &str) -> Result<Reply, Reply> {
    let user = basic_user(cloud, req).await?;
    match cloud.revoke_token(&user, token) {
        Ok(true) => Ok(json_reply(StatusCode::OK, &json!({"ok": true}))),
        Ok(false) => Err(ok_false_errors(StatusCode::NOT_FOUND, "Token not found")),
        Err(_) => Err(storage_failed()),
    }
}

fn health(cloud: &Cloud) -> Reply {
    let devices = cloud.state.devices();
    let connected = devices
        .iter()
        .filter(|d| cloud.hub.is_connected(&d.id))
        .count();
    json_reply(
        StatusCode::OK,
        &json!({
            "ok": true,
            "devices": devices.len(),
            "connected": connected,
            "events": cloud.bus.stats(),
        }),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Devices

/// The device `id` (an id or one of the user's device names) if the user owns it. A device without an owner is
/// reachable by no one and answers as an unknown one; another user's device (by id) is `403`.
fn resolve(cloud: &Cloud, user: &User, id: &str) -> Result<DeviceRecord, Reply> {
    let device = cloud
        .state
        .find_device(id, &user.name)
        .filter(|d| d.owner.is_some())
        .ok_or_else(|| ok_false(StatusCode::NOT_FOUND, "Device not found."))?;
    if device.owner.as_deref() == Some(user.name.as_str()) {
        Ok(device)
    } else {
        Err(ok_false(StatusCode::FORBIDDEN, "Permission Denied"))
    }
}

fn visible(user: &User, device: &DeviceRecord) -> bool {
    device.owner.as_deref() == Some(user.name.as_str())
}

/// Whether a reported CC3000 service-pack version predates 1.28, the deep update's.
fn requires_deep_update(version: &str) -> Option<bool> {
    let (major, minor) = version.trim().split_once('.')?;
    let major: u32 = major.parse().ok()?;
    let minor: u32 = minor.parse().ok()?;
    Some((major, minor) < (1, 28))
}

fn device_json(cloud: &Cloud, device: &DeviceRecord) -> serde_json::Map<String, Value> {
    let status = cloud.device_status(&device.id);
    let mut map = serde_json::Map::new();
    map.insert("id".into(), device.id.clone().into());
    map.insert("name".into(), device.name.clone().into());
    map.insert("last_app".into(), status.last_app.clone().into());
    map.insert("last_heard".into(), status.last_heard.map(iso8601).into());
    map.insert(
        "connected".into(),
        cloud.hub.is_connected(&device.id).into(),
    );
    if let Some(version) = &status.cc3000_patch_version {
        map.insert("cc3000_patch_version".into(), version.clone().into());
        if let Some(deep) = requires_deep_update(version) {
            map.insert("requires_deep_update".into(), deep.into());
        }
    }
    map
}

fn list_devices(cloud: &Cloud, user: &User) -> Reply {
    let list: Vec<Value> = cloud
        .state
        .devices()
        .iter()
        .filter(|d| visible(user, d))
        .map(|d| Value::Object(device_json(cloud, d)))
        .collect();
    json_reply(StatusCode::OK, &Value::Array(list))
}

fn hub_error(e: HubError, what: &str) -> Reply {
    match e {
        HubError::NotConnected => ok_false(StatusCode::NOT_FOUND, "Device is not connected."),
        HubError::UnknownFunction => ok_false(StatusCode::NOT_FOUND, "Function not found"),
        HubError::UnknownVariable => ok_false(StatusCode::NOT_FOUND, "Variable not found"),
        HubError::TimedOut => {
            json_reply(StatusCode::REQUEST_TIMEOUT, &json!({"error": "Timed out."}))
        }
        HubError::Busy(why) | HubError::Device(why) => {
            ok_false(StatusCode::BAD_REQUEST, &format!("{what}: {why}"))
        }
    }
}

async fn with_timeout<T>(f: impl Future<Output = Result<T, HubError>>) -> Result<T, HubError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .unwrap_or(Err(HubError::TimedOut))
}

async fn device_info(cloud: &Cloud, req: &Req, id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let device = resolve(cloud, &user, id)?;
    let mut map = device_json(cloud, &device);
    let description = if cloud.hub.is_connected(&device.id) {
        with_timeout(cloud.hub.describe(&device.id)).await.ok()
    } else {
        None
    };
    match description {
        Some(d) => {
            let vars: serde_json::Map<String, Value> = d
                .variables
                .iter()
                .map(|(k, t)| (k.clone(), t.as_str().into()))
                .collect();
            map.insert("variables".into(), Value::Object(vars));
            map.insert("functions".into(), d.functions.into());
        }
        None => {
            map.insert("variables".into(), Value::Null);
            map.insert("functions".into(), Value::Null);
        }
    }
    Ok(json_reply(StatusCode::OK, &Value::Object(map)))
}

async fn call_function(cloud: &Cloud, req: &Req, id: &str, function: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let device = resolve(cloud, &user, id)?;
    // `arg` (today) or `args` (2014); otherwise the first field, as the original forwarded it.
    let argument = req
        .field("arg")
        .or_else(|| req.field("args"))
        .or_else(|| {
            req.form
                .iter()
                .find(|(k, _)| k != "access_token")
                .map(|(_, v)| v.as_str())
        })
        .unwrap_or("");
    if argument.chars().count() > MAX_NAME {
        return Err(ok_false(
            StatusCode::BAD_REQUEST,
            "Argument too long (at most 63 characters)",
        ));
    }
    let value = with_timeout(cloud.hub.call(&device.id, function, argument))
        .await
        .map_err(|e| hub_error(e, "Function call failed"))?;
    let status = cloud.device_status(&device.id);
    Ok(json_reply(
        StatusCode::OK,
        &json!({
            "id": device.id,
            "name": device.name,
            "last_app": status.last_app,
            "connected": true,
            "return_value": value,
        }),
    ))
}

async fn get_variable(cloud: &Cloud, req: &Req, id: &str, variable: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let device = resolve(cloud, &user, id)?;
    let value = with_timeout(cloud.hub.get(&device.id, variable))
        .await
        .map_err(|e| hub_error(e, "Variable read failed"))?;
    if req.query("format") == Some("raw") {
        return Ok(reply(
            StatusCode::OK,
            full(value.to_raw()),
            "text/plain; charset=utf-8",
        ));
    }
    let status = cloud.device_status(&device.id);
    Ok(json_reply(
        StatusCode::OK,
        &json!({
            "cmd": "VarReturn",
            "name": variable,
            "result": value.to_json(),
            "coreInfo": {
                "last_app": status.last_app,
                "last_heard": status.last_heard.map(iso8601),
                "connected": true,
                "deviceID": device.id,
                "name": device.name,
            },
        }),
    ))
}

/// `POST /v1/devices` with `id`: a claim by id alone is no proof of holding the device, so it succeeds only for a
/// device the user already owns. A device is claimed with a claim code it presents (`POST /v1/device_claims`).
fn claim(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let id = req.field("id").unwrap_or_default().to_ascii_lowercase();
    if !is_device_id(&id) {
        return Err(ok_false_errors(
            StatusCode::BAD_REQUEST,
            "Invalid device id",
        ));
    }
    match cloud.state.device(&id).and_then(|d| d.owner) {
        Some(owner) if owner == user.name => Ok(json_reply(
            StatusCode::OK,
            &json!({"ok": true, "deviceID": id, "claimed": true}),
        )),
        Some(_) => Err(ok_false_errors(
            StatusCode::FORBIDDEN,
            "That device belongs to someone else.",
        )),
        None => Err(ok_false_errors(
            StatusCode::NOT_FOUND,
            "Device not found. A device is claimed by presenting a claim code from POST /v1/device_claims.",
        )),
    }
}

/// `POST /v1/device_claims`: a claim code for the user, and the devices they own.
fn create_claim_code(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let code = cloud
        .create_claim_code(&user.name)
        .map_err(|_| storage_failed())?;
    let owned: Vec<Value> = cloud
        .state
        .devices()
        .into_iter()
        .filter(|d| visible(&user, d))
        .map(|d| d.id.into())
        .collect();
    Ok(json_reply(
        StatusCode::OK,
        &json!({"claim_code": code, "device_ids": owned}),
    ))
}

fn release(cloud: &Cloud, req: &Req, id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let device = resolve(cloud, &user, id)?;
    cloud
        .state
        .update_device(&device.id, |d| d.owner = None)
        .map_err(|_| storage_failed())?;
    Ok(json_reply(StatusCode::OK, &json!({"ok": true})))
}

async fn update_device(cloud: &Arc<Cloud>, req: &Req, id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let device = resolve(cloud, &user, id)?;
    if let Some(file) = req
        .parts
        .iter()
        .find(|p| p.file_name.is_some() || p.name == "file")
    {
        if req.field("file_type") != Some("binary") {
            return Err(ok_false_errors(
                StatusCode::BAD_REQUEST,
                "The local cloud does not compile sources: send a binary with file_type=binary",
            ));
        }
        let name = file
            .file_name
            .clone()
            .unwrap_or_else(|| "firmware.bin".into());
        return flash(cloud, &device, Bytes::from(file.data.clone()), name);
    }
    let mut merged = serde_json::Map::new();
    if let Some(name) = req.field("name") {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(ok_false_errors(StatusCode::BAD_REQUEST, "Invalid name"));
        }
        if is_device_id(name) {
            return Err(ok_false_errors(
                StatusCode::BAD_REQUEST,
                "A name cannot look like a device id",
            ));
        }
        let taken = cloud
            .state
            .devices()
            .iter()
            .any(|d| d.id != device.id && d.name.as_deref() == Some(name) && visible(&user, d));
        if taken {
            return Err(ok_false_errors(
                StatusCode::BAD_REQUEST,
                "Name already taken",
            ));
        }
        cloud
            .state
            .update_device(&device.id, |d| d.name = Some(name.to_owned()))
            .map_err(|_| storage_failed())?;
        merged.insert("ok".into(), true.into());
        merged.insert("name".into(), name.into());
    }
    if let Some(signal) = req.field("signal") {
        let on = match signal {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => {
                return Err(ok_false_errors(
                    StatusCode::BAD_REQUEST,
                    "signal must be 1 or 0",
                ));
            }
        };
        with_timeout(cloud.hub.signal(&device.id, on))
            .await
            .map_err(|e| hub_error(e, "Signal failed"))?;
        merged.insert("id".into(), device.id.clone().into());
        merged.insert("connected".into(), true.into());
        merged.insert("signaling".into(), on.into());
    }
    if merged.is_empty() {
        return Err(ok_false_errors(StatusCode::BAD_REQUEST, "Nothing to do?"));
    }
    Ok(json_reply(StatusCode::OK, &Value::Object(merged)))
}

/// Publishes the device's `spark/flash/progress` events (`<sent>/<total>`), at most one per 10 %.
struct ProgressEvents {
    cloud: Arc<Cloud>,
    device: String,
    last_decile: std::sync::Mutex<Option<usize>>,
}

impl FlashProgress for ProgressEvents {
    fn progress(&self, sent: usize, total: usize) {
        let decile = sent.saturating_mul(10).checked_div(total).unwrap_or(10);
        {
            let mut last = lock(&self.last_decile);
            if *last == Some(decile) {
                return;
            }
            *last = Some(decile);
        }
        let data = format!("{sent}/{total}");
        self.cloud.publish_device_event(
            &self.device,
            "spark/flash/progress",
            Some(&data),
            60,
            false,
        );
    }
}

fn flash(
    cloud: &Arc<Cloud>,
    device: &DeviceRecord,
    image: Bytes,
    file_name: String,
) -> Result<Reply, Reply> {
    if image.is_empty() {
        return Err(ok_false_errors(
            StatusCode::BAD_REQUEST,
            "The binary is empty",
        ));
    }
    if !cloud.hub.is_connected(&device.id) {
        return Err(ok_false_errors(
            StatusCode::NOT_FOUND,
            "Device is not connected.",
        ));
    }
    if !lock(&cloud.flashing).insert(device.id.clone()) {
        return Err(ok_false_errors(
            StatusCode::BAD_REQUEST,
            "An update of this device is already in progress",
        ));
    }
    let cloud = Arc::clone(cloud);
    let id = device.id.clone();
    tokio::spawn(async move {
        let progress = Arc::new(ProgressEvents {
            cloud: Arc::clone(&cloud),
            device: id.clone(),
            last_decile: std::sync::Mutex::new(None),
        });
        cloud.publish_device_event(
            &id,
            "spark/flash/status",
            Some(&format!("started {file_name}")),
            60,
            false,
        );
        let result = cloud.hub.flash(&id, image, progress).await;
        let outcome = match result {
            Ok(()) => {
                cloud.touch(&id, |s| s.last_app = Some(file_name.clone()));
                format!("success {file_name}")
            }
            Err(e) => format!("failed {file_name}: {e}"),
        };
        lock(&cloud.flashing).remove(&id);
        cloud.publish_device_event(&id, "spark/flash/status", Some(&outcome), 60, false);
    });
    Ok(json_reply(
        StatusCode::OK,
        &json!({"id": device.id, "status": "Update started"}),
    ))
}

async fn provision(cloud: &Cloud, req: &Req, path_id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let bad = |e: &str| json_reply(StatusCode::BAD_REQUEST, &json!({"error": e}));
    let id = req
        .field("deviceID")
        .unwrap_or(path_id)
        .to_ascii_lowercase();
    if id.is_empty() {
        return Err(bad("No deviceID provided"));
    }
    if !is_device_id(&id) {
        return Err(bad("Invalid deviceID"));
    }
    let pem = req
        .field("publicKey")
        .ok_or_else(|| bad("No key provided"))?;
    let key = RsaPublicKey::from_pem(pem).map_err(|e| bad(&format!("Key error {e}")))?;
    // A known device's key is its owner's to replace; one without an owner is no one's (an administrator assigns
    // it, or the device claims itself with a claim code).
    if let Some(existing) = cloud.state.device(&id)
        && existing.owner.as_deref() != Some(user.name.as_str())
    {
        return Err(ok_false(StatusCode::FORBIDDEN, "Permission Denied"));
    }
    cloud
        .state
        .provision_durable(&id, &key, Some(&user.name))
        .await
        .map_err(|_| storage_failed())?;
    Ok(json_reply(
        StatusCode::OK,
        &Value::String("Success!".into()),
    ))
}

// ---------------------------------------------------------------------------------------------------------------
// Events

fn subscribe(cloud: &Cloud, user: &User, scope: Scope, prefix: &[&str]) -> Reply {
    let filter = Filter {
        user: user.name.clone(),
        scope,
        prefix: prefix.join("/"),
    };
    let credential = Credential {
        token: user.token_digest.clone(),
        user: user.name.clone(),
        expires_at: user.expires_at,
    };
    let body = cloud
        .bus
        .subscribe_with(filter, credential)
        .into_body()
        .boxed();
    let mut r = reply(StatusCode::OK, body, "text/event-stream");
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

fn event_name_error(name: &str) -> Option<&'static str> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Some("The event name must be 1 to 63 printable ASCII characters");
    }
    if name.len() >= 5 && name[..5].eq_ignore_ascii_case("spark") {
        return Some("Event names starting with 'spark' are reserved");
    }
    None
}

async fn publish(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let name = req.field("name").unwrap_or_default();
    if let Some(why) = event_name_error(name) {
        return Err(ok_false(StatusCode::BAD_REQUEST, why));
    }
    let data = req.field("data");
    if data.is_some_and(|d| d.len() > MAX_DATA) {
        return Err(ok_false(
            StatusCode::BAD_REQUEST,
            "The event data is limited to 63 bytes",
        ));
    }
    let public = !matches!(req.field("private"), Some(p) if !p.is_empty() && p != "false");
    let ttl = match req.field("ttl").map(str::parse::<u32>) {
        None => 60,
        Some(Ok(t)) if t <= MAX_TTL => t,
        _ => {
            return Err(ok_false(
                StatusCode::BAD_REQUEST,
                "ttl must be 0 to 16777215",
            ));
        }
    };
    let event = Event::new(
        name,
        data,
        ttl,
        public,
        SystemTime::now(),
        &user.id,
        Some(&user.name),
        None,
    );
    cloud.bus.publish(&event);
    let delivered = DeviceEvent {
        name: name.to_owned(),
        data: data.map(str::to_owned),
        ttl,
        public,
    };
    for device in cloud.state.devices() {
        let reaches = if public {
            true
        } else {
            device.owner.as_deref() == Some(user.name.as_str())
        };
        if reaches && cloud.hub.is_connected(&device.id) {
            // A device that fails to take the event does not fail the publish.
            let _ = with_timeout(cloud.hub.deliver(&device.id, &delivered)).await;
        }
    }
    Ok(json_reply(StatusCode::OK, &json!({"ok": true})))
}
