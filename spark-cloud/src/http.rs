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
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use serde_json::Value;
use spark_protocol::DeviceId;
use spark_protocol::crypto::keys::RsaPublicKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::encoding::{iso8601, percent_decode};
use super::events::{Credential, Event, Filter, Publisher, Scope};
use super::hub::{DeviceEvent, FlashProgress, HubError};
use super::multipart::{Part, multipart_boundary, parse_multipart};
use super::state::{AuthError, DeviceRecord, MAX_TOKEN_LIFETIME, TOKEN_LIFETIME, is_device_id};
use super::store::StoreError;
use super::{Cloud, HttpLimits, REQUEST_TIMEOUT, lock};

mod auth;
mod claims;
mod connections;
mod devices;
mod events;
mod firmware;
mod provisioning;
mod replies;
mod users;
mod webhooks;

use auth::{LoginLimiter, User, basic_credentials, basic_user, bearer, login_attempt, token_of};
pub(super) use connections::accept_loop;
use devices::{hub_id, is_connected, resolve, visible, with_timeout};
use firmware::flash;

type Body = BoxBody<Bytes, Infallible>;
type Reply = Response<Body>;

/// Event names and function arguments: at most 63 characters (2014 Core limits).
const MAX_NAME: usize = 63;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// Sets fixed header values (the API's CORS headers, the console's security headers).
pub(crate) fn insert_static<const N: usize>(
    h: &mut HeaderMap,
    headers: [(HeaderName, &'static str); N],
) {
    for (name, value) in headers {
        h.insert(name, HeaderValue::from_static(value));
    }
}

fn reply(status: StatusCode, body: Body, content_type: &'static str) -> Reply {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    insert_static(
        r.headers_mut(),
        [
            (header::CONTENT_TYPE, content_type),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
    );
    r
}

/// A JSON answer with a typed body ([`replies`]).
fn json_reply<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Reply {
    let bytes = serde_json::to_vec(body).expect("a reply body serialises");
    reply(status, full(bytes), "application/json; charset=utf-8")
}

/// `200` with `{"ok": true}`.
fn done() -> Reply {
    json_reply(StatusCode::OK, &replies::Done { ok: true })
}

fn ok_false(status: StatusCode, error: &str) -> Reply {
    json_reply(status, &replies::Failed { error, ok: false })
}

fn ok_false_errors(status: StatusCode, error: &str) -> Reply {
    json_reply(
        status,
        &replies::FailedErrors {
            errors: [error],
            ok: false,
        },
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    json_reply(
        status,
        &replies::OAuthError {
            code: status.as_u16(),
            error,
            error_description: description,
        },
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
    parts: Vec<Part>,
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
    pub(crate) parts: Vec<Part>,
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
        bearer(cloud, &head).await?;
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
        insert_static(
            r.headers_mut(),
            [
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    "GET, POST, PUT, DELETE, OPTIONS",
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "X-Requested-With, Content-Type, Accept, Authorization",
                ),
            ],
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
        (_, ["console", rest @ ..]) => Ok(super::console::serve(m, rest).map(BodyExt::boxed)),
        (&Method::POST, ["oauth", "token"]) => users::create_token(cloud, req).await,
        (&Method::POST, ["v1", "users"]) => users::create_user(cloud, req).await,
        (&Method::GET, ["server", "health"]) => Ok(health(cloud).await),
        (&Method::GET, ["v1", "access_tokens"]) => users::list_tokens(cloud, req).await,
        (&Method::DELETE, ["v1", "access_tokens"]) => users::revoke_all_tokens(cloud, req).await,
        (&Method::DELETE, ["v1", "access_tokens", "current"]) => {
            users::revoke_current_token(cloud, req).await
        }
        (&Method::DELETE, ["v1", "access_tokens", token]) => {
            users::delete_token(cloud, req, token).await
        }
        (&Method::GET, ["v1", "events", prefix @ ..]) => {
            let user = bearer(cloud, req).await?;
            Ok(events::subscribe(cloud, &user, Scope::All, prefix))
        }
        (&Method::GET, ["v1", "devices", "events", prefix @ ..]) => {
            let user = bearer(cloud, req).await?;
            Ok(events::subscribe(cloud, &user, Scope::MyDevices, prefix))
        }
        (&Method::POST, ["v1", "devices", "events"]) => events::publish(cloud, req).await,
        (&Method::GET, ["v1", "devices"]) => {
            let user = bearer(cloud, req).await?;
            Ok(devices::list_devices(cloud, &user).await)
        }
        // The account behind the token, as the hosted cloud answers it (`spark whoami`).
        (&Method::GET, ["v1", "user"]) => {
            let user = bearer(cloud, req).await?;
            Ok(json_reply(
                StatusCode::OK,
                &replies::Account {
                    username: &user.name,
                },
            ))
        }
        (&Method::POST, ["v1", "devices"]) => claims::claim(cloud, req).await,
        (&Method::POST, ["v1", "device_claims"]) => claims::create_claim_code(cloud, req).await,
        (&Method::GET, ["v1", "devices", id, "events", prefix @ ..]) => {
            let user = bearer(cloud, req).await?;
            // A name resolves to its device's record; the stream is then keyed by the id alone.
            let device = resolve(cloud, &user, id).await?;
            let id = device
                .id
                .parse()
                .map_err(|_| ok_false(StatusCode::NOT_FOUND, "Device not found."))?;
            Ok(events::subscribe(cloud, &user, Scope::Device(id), prefix))
        }
        (&Method::GET, ["v1", "devices", id]) => devices::device_info(cloud, req, id).await,
        (&Method::PUT, ["v1", "devices", id]) => devices::update_device(cloud, req, id).await,
        (&Method::DELETE, ["v1", "devices", id]) => devices::release(cloud, req, id).await,
        (&Method::GET, ["v1", "devices", id, variable]) => {
            devices::get_variable(cloud, req, id, variable).await
        }
        (&Method::POST, ["v1", "devices", id, function]) => {
            devices::call_function(cloud, req, id, function).await
        }
        (&Method::POST, ["v1", "provisioning", id]) => {
            provisioning::provision(cloud, req, id).await
        }
        (&Method::GET, ["v1", "webhooks"]) => webhooks::list(cloud, req).await,
        (&Method::POST, ["v1", "webhooks"]) => webhooks::create(cloud, req).await,
        (&Method::GET, ["v1", "webhooks", id]) => webhooks::show(cloud, req, id).await,
        (&Method::DELETE, ["v1", "webhooks", id]) => webhooks::delete(cloud, req, id).await,
        _ => Ok(not_found()),
    }
}

fn storage_failed() -> Reply {
    ok_false(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Could not write the state directory",
    )
}

async fn health(cloud: &Cloud) -> Reply {
    let devices = cloud.store.devices().await.unwrap_or_default();
    let connected = devices.iter().filter(|d| is_connected(cloud, d)).count();
    json_reply(
        StatusCode::OK,
        &replies::Health {
            connected,
            devices: devices.len(),
            events: cloud.bus.stats(),
            ok: true,
        },
    )
}
