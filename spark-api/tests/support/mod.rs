//! A real HTTP/1.1 server on 127.0.0.1 (hyper) that answers the way the Spark cloud, the Particle cloud and the local
//! cloud do, as recorded in the project's cloud-API reference. Shared by the integration tests and the benchmarks.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const TOKEN: &str = "38bb7b318cc6898c80317decb34525844bc9db55";
pub const NEW_TOKEN: &str = "254406f79c1999af65a7df4388971354f85cfee9";
pub const CORE: &str = "53ff6c065075535119511687";
pub const USER: &str = "joe@example.com";
pub const PASSWORD: &str = "SuperSecret";
pub const BINARY: &[u8] = b"\x00\x50\x00\x20\x0d\x01\x00\x08binary-bytes\xff\x00";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn form(&self) -> Vec<(String, String)> {
        form_decode(&self.body)
    }
}

fn form_decode(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    hits: Mutex<HashMap<String, u32>>,
}

/// The running server. Dropping it leaves the accept task to the runtime's shutdown.
pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.uri.starts_with(prefix))
            .collect()
    }

    pub fn hits(&self, key: &str) -> u32 {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A response body fed through a channel, so a handler can write the event stream piece by piece, pause, and close.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<BoxBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(http_body_util::Full::new(body.into()).boxed())
        .expect("response")
}

fn json(status: u16, body: &str) -> Response<BoxBody> {
    full(status, "application/json; charset=utf-8", body.to_owned())
}

fn empty(status: u16) -> Response<BoxBody> {
    full(status, "text/plain", Bytes::new())
}

/// A stream whose writes follow `script`: `Some(bytes)` writes, `None` pauses for `pause`.
fn sse(script: Vec<(Duration, &'static [u8])>, hold_open: Duration) -> Response<BoxBody> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        for (pause, bytes) in script {
            tokio::time::sleep(pause).await;
            if tx.send(Bytes::from_static(bytes)).await.is_err() {
                return;
            }
        }
        // Silence: keep the connection open without a byte, as a dead stream would look.
        tokio::select! {
            _ = tokio::time::sleep(hold_open) => {}
            _ = tx.closed() => {}
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("connection", "keep-alive")
        .body(BodyExt::boxed(ChannelBody(rx)))
        .expect("response")
}

const OAUTH_MISSING: &str = r#"{"code":400,"error":"invalid_request","error_description":"The access token was not found"}"#;
const OAUTH_INVALID: &str =
    r#"{"error":"invalid_token","error_description":"The access token provided is invalid."}"#;

/// The refusal, if the request lacks the account's HTTP Basic credentials.
fn basic_refusal(req: &Recorded) -> Option<Response<BoxBody>> {
    // base64("joe@example.com:SuperSecret")
    match req.header("authorization") {
        Some("Basic am9lQGV4YW1wbGUuY29tOlN1cGVyU2VjcmV0") => None,
        Some(_) => Some(json(401, r#"{"ok":false,"errors":["Bad password"]}"#)),
        None => Some(json(
            401,
            r#"{"ok":false,"errors":["Unauthorized. You must send username and password in HTTP Basic Auth to view your access tokens."]}"#,
        )),
    }
}

/// The refusal, if the request lacks the bearer token.
fn bearer_refusal(req: &Recorded) -> Option<Response<BoxBody>> {
    match req.header("authorization") {
        None => Some(json(400, OAUTH_MISSING)),
        Some(h) if h == format!("Bearer {TOKEN}") => None,
        Some(_) => Some(json(401, OAUTH_INVALID)),
    }
}

fn is_multipart(req: &Recorded) -> bool {
    req.header("content-type")
        .is_some_and(|c| c.starts_with("multipart/form-data; boundary="))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body,
    };
    state.requests.lock().unwrap().push(recorded.clone());
    let path = parts.uri.path().to_owned();
    let hit = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits
            .entry(format!("{} {}", recorded.method, path))
            .or_insert(0);
        *n += 1;
        *n
    };
    Ok(route(&recorded, &path, hit).await)
}

async fn route(req: &Recorded, path: &str, hit: u32) -> Response<BoxBody> {
    let method = req.method.as_str();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    // Unauthenticated and HTTP-Basic routes.
    match (method, segments.as_slice()) {
        ("POST", ["oauth", "token"]) => return oauth_token(req),
        ("GET", ["v1", "access_tokens"]) => {
            if let Some(r) = basic_refusal(req) {
                return r;
            }
            return json(
                200,
                r#"[{"token":"b5b901e8760164e134199bc2c3dd1d228acf2d98","expires_at":"2014-04-27T02:20:36.177Z","client":"spark"},
                    {"token":"ba54b6bb71a43b7612bdc7c972914604a078892b","expires_at":"2014-04-27T06:31:08.991Z","client":"spark"}]"#,
            );
        }
        ("DELETE", ["v1", "access_tokens", "current"]) => {}
        ("DELETE", ["v1", "access_tokens", _token]) => {
            if let Some(r) = basic_refusal(req) {
                return r;
            }
            return json(200, r#"{"ok":true}"#);
        }
        _ => {}
    }

    if let Some(r) = bearer_refusal(req) {
        return r;
    }
    let form = req.form();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

    match (method, segments.as_slice()) {
        ("DELETE", ["v1", "access_tokens", "current"]) => json(200, r#"{"ok":true}"#),

        // Devices.
        ("GET", ["v1", "devices"]) => json(
            200,
            r#"[{"id":"53ff6f065072300000000001","name":"plumber_laser","last_app":null,"last_heard":null,"connected":false},
                {"id":"53ff6c065075535119511687","name":"core1","last_app":null,"last_heard":"2014-12-15T20:12:51.974Z","connected":true,"requires_deep_update":true}]"#,
        ),
        ("GET", ["v1", "products", "my-product", "devices"]) => json(
            200,
            r#"{"devices":[{"id":"53ff6c065075535119511687","name":"core1","connected":true,"product_id":6,"platform_id":0}],"meta":{"total_pages":1}}"#,
        ),
        ("POST", ["v1", "devices"]) => match field("id").as_deref() {
            Some("0123456789abcdef01234567") => json(200, r#"{"ok":true}"#),
            _ => json(200, r#"{"ok":false,"errors":["That belongs to someone else."]}"#),
        },
        ("GET", ["v1", "devices", "slow"]) => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json(200, r#"{"id":"53ff00000000000000000005","connected":true}"#)
        }
        ("GET", ["v1", "devices", "limited"]) => {
            if hit == 1 {
                Response::builder()
                    .status(429)
                    .header("retry-after", "1")
                    .header("content-type", "application/json")
                    .body(
                        http_body_util::Full::new(Bytes::from_static(b"{\"error\":\"Too many requests\"}"))
                            .boxed(),
                    )
                    .expect("response")
            } else {
                json(200, r#"{"id":"53ff00000000000000000429","connected":true}"#)
            }
        }
        ("GET", ["v1", "devices", "flaky"]) => {
            if hit == 1 {
                json(503, r#"{"code":503,"error":"server_error","error_description":"server_error"}"#)
            } else {
                json(200, r#"{"id":"53ff00000000000000000503","connected":true}"#)
            }
        }
        ("GET", ["v1", "devices", "down"]) => json(500, r#"{"Error":"TypeError: undefined is not a function"}"#),
        ("GET", ["v1", "devices", "proxy-error"]) => full(502, "text/html", "<html><body>Bad gateway</body></html>"),
        ("GET", ["v1", "devices", "missing"]) => json(404, r#""Oops, I couldn't find that core""#),
        ("GET", ["v1", "devices", "bad-shape"]) => json(200, r#"{"id":"53ff000000000000000000ba","connected":"yes"}"#),
        ("GET", ["v1", "devices", CORE]) | ("GET", ["v1", "devices", "core1"]) => json(
            200,
            r#"{"id":"53ff6c065075535119511687","name":"core1","last_app":null,"connected":true,
                "variables":{"temperature":"int32","humidity":"double","status":"string"},"functions":["brew"],
                "cc3000_patch_version":"1.29","requires_deep_update":true,"new_field":{"x":1}}"#,
        ),
        ("PUT", ["v1", "devices", CORE, "ping"]) => json(200, r#"{"online":true,"ok":true}"#),
        ("PUT", ["v1", "devices", device]) => {
            let device = *device;
            if is_multipart(req) {
                let has_file = contains(&req.body, b"name=\"file\"");
                let binary = contains(&req.body, b"name=\"file_type\"\r\n\r\nbinary\r\n");
                if device == "offline" {
                    return json(200, r#"{"ok":false,"errors":[{"error":"Timed out."}]}"#);
                }
                if has_file && binary && contains(&req.body, BINARY) {
                    return json(200, &format!(r#"{{"id":"{device}","status":"Update started"}}"#));
                }
                if has_file && !binary {
                    return json(
                        200,
                        r#"{"ok":false,"errors":["Compile error"],"output":"app.ino:3: error: 'foo' was not declared"}"#,
                    );
                }
                return json(400, r#"{"ok":false,"errors":["no file"]}"#);
            }
            if let Some(name) = field("name") {
                json(200, &format!(r#"{{"ok":true,"name":"{name}"}}"#))
            } else if let Some(signal) = field("signal") {
                json(
                    200,
                    &format!(r#"{{"id":"{device}","connected":true,"signaling":{}}}"#, signal == "1"),
                )
            } else if field("app").as_deref() == Some("tinker") {
                json(200, &format!(r#"{{"id":"{device}","status":"Update started"}}"#))
            } else {
                json(200, r#"{"error":"Nothing to do?"}"#)
            }
        }
        ("DELETE", ["v1", "devices", CORE]) => json(200, r#"{"ok":true}"#),
        ("DELETE", ["v1", "devices", _]) => empty(404),
        ("POST", ["v1", "devices", "events"]) | ("POST", ["v1", "products", "my-product", "events"]) => {
            if field("name").is_some() {
                json(200, r#"{"ok":true}"#)
            } else {
                json(400, r#"{"ok":false,"error":"Requires event name"}"#)
            }
        }
        ("POST", ["v1", "devices", CORE, function]) => match *function {
            "brew" => json(
                200,
                &format!(
                    r#"{{"id":"{CORE}","name":"core1","last_app":null,"connected":true,"return_value":{}}}"#,
                    field("arg").map(|a| a.len()).unwrap_or(0)
                ),
            ),
            "fail" => {
                if hit == 1 {
                    json(503, r#"{"error":"temporarily unavailable"}"#)
                } else {
                    json(200, r#"{"return_value":1}"#)
                }
            }
            "busy" => Response::builder()
                .status(429)
                .header("retry-after", "1")
                .body(http_body_util::Full::new(Bytes::new()).boxed())
                .expect("response"),
            "slowfn" => json(408, r#"{"error":"Timed out."}"#),
            _ => json(404, r#"{"ok":false,"error":"Function not found"}"#),
        },
        ("GET", ["v1", "devices", CORE, variable]) => match *variable {
            "temperature" | "benchvar" => json(
                200,
                r#"{"cmd":"VarReturn","name":"temperature","result":42,"coreInfo":{"last_app":"","last_heard":"2014-08-22T22:33:25.407Z","connected":true,"deviceID":"53ff6c065075535119511687"}}"#,
            ),
            "humidity" => json(200, r#"{"cmd":"VarReturn","name":"humidity","result":21.5,"coreInfo":{"connected":true}}"#),
            "status" => json(200, r#"{"cmd":"VarReturn","name":"status","result":"idle","coreInfo":{"connected":true}}"#),
            "flag" => json(200, r#"{"name":"flag","result":true,"coreInfo":{"name":"core1","deviceID":"53ff6c065075535119511687","connected":true,"last_handshake_at":"2026-01-01T00:00:00Z"}}"#),
            "weird" => json(200, r#"{"cmd":"VarReturn","name":"weird","result":[1,2]}"#),
            "corrupt" => json(200, r#"{"result":1,"coreInfo":{"connected":"yes"}}"#),
            "truncated" => json(200, r#"{"cmd":"VarReturn","result":4"#),
            _ => json(404, r#"{"ok":false,"error":"Variable not found"}"#),
        },

        // Event streams.
        ("GET", ["v1", "devices", "events"]) => mine_stream(hit),
        ("GET", ["v1", "devices", CORE, "events", "keep"]) => sse(
            {
                let mut script = vec![(Duration::ZERO, &b":ok\n\n"[..])];
                for _ in 0..8 {
                    script.push((Duration::from_millis(150), &b"\n"[..]));
                }
                script.push((
                    Duration::from_millis(20),
                    &b"event: kept\ndata: {\"data\":\"alive\",\"ttl\":\"60\",\"published_at\":\"2014-05-28T19:20:34.638Z\",\"coreid\":\"53ff6c065075535119511687\"}\n\n"[..],
                ));
                script
            },
            Duration::ZERO,
        ),
        ("GET", ["v1", "events", "temp"])
        | ("GET", ["v1", "orgs", "acme", "events"])
        | ("GET", ["v1", "products", "my-product", "devices", CORE, "events", "temp"]) => sse(
            vec![(
                Duration::ZERO,
                &b":ok\n\nevent: temperature\ndata: {\"data\":\"1\",\"ttl\":60,\"published_at\":\"x\",\"coreid\":\"c\"}\n\n"[..],
            )],
            Duration::ZERO,
        ),
        ("GET", ["v1", "devices", "gone", "events"]) => json(404, r#"{"ok":false,"error":"No such device"}"#),

        // Firmware.
        ("POST", ["v1", "binaries"]) => {
            if is_multipart(req) && contains(&req.body, b"name=\"file\"; filename=\"app.ino\"") {
                json(
                    200,
                    r#"{"ok":true,"binary_id":"5a1b","binary_url":"/v1/binaries/5a1b","expires_at":"2026-11-27T19:00:00.000Z","sizeInfo":"   text\t   data\t    bss\t    dec\n  74900\t   1212\t  11672\t  87784"}"#,
                )
            } else {
                json(
                    200,
                    r#"{"ok":false,"output":"Compiler timed out or encountered an error","errors":["make: *** [app] Error 1"]}"#,
                )
            }
        }
        ("GET", ["v1", "binaries", "5a1b"]) => full(200, "application/octet-stream", Bytes::from_static(BINARY)),
        ("GET", ["v1", "binaries", _]) => empty(404),
        ("POST", ["v1", "provisioning", _]) => {
            match (field("deviceID"), field("publicKey")) {
                (None, _) => json(400, r#"{"error":"No deviceID provided"}"#),
                (_, None) => json(400, r#"{"error":"No key provided"}"#),
                (Some(_), Some(key)) if key.contains("BEGIN PUBLIC KEY") => json(200, r#""Success!""#),
                _ => json(400, r#"{"error":"Key error Error: Not a public key."}"#),
            }
        }

        // Webhooks.
        ("GET", ["v1", "webhooks"]) => json(
            200,
            r#"[{"id":"5512d6ac7e9e6e6e6e6e6e6e","event":"temperature","url":"https://example.com/t","created_at":"2015-03-25T20:02:49.917Z","requestType":"POST","mydevices":true},
                {"id":"5512d6ac7e9e6e6e6e6e6e6f","event":"motion","url":"https://example.com/m","created_at":"2015-03-25T20:04:00.000Z"}]"#,
        ),
        ("POST", ["v1", "webhooks"]) => {
            let value: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let event = value["event"].as_str().unwrap_or("");
            let url = value["url"].as_str().unwrap_or("");
            if req.header("content-type") == Some("application/json") && !event.is_empty() {
                json(
                    200,
                    &format!(
                        r#"{{"ok":true,"id":"5512d6ac7e9e6e6e6e6e6e70","url":"{url}","event":"{event}","created_at":"2015-03-25T20:05:00.000Z"}}"#
                    ),
                )
            } else {
                json(400, r#"{"ok":false,"errors":["event and url are required"]}"#)
            }
        }
        ("DELETE", ["v1", "webhooks", "5512d6ac7e9e6e6e6e6e6e6e"]) => json(200, r#"{"ok":true}"#),
        ("DELETE", ["v1", "webhooks", _]) => json(404, r#"{"ok":false,"error":"Webhook not found"}"#),

        _ => empty(404),
    }
}

fn mine_stream(connection: u32) -> Response<BoxBody> {
    match connection {
        // The first connection: the local cloud's greeting, an event split over three writes, keep-alives, a CRLF
        // event with a numeric ttl, a malformed event, then silence.
        1 => sse(
            vec![
                (Duration::ZERO, b":ok\n\n"),
                (Duration::from_millis(20), b"event: tempera"),
                (
                    Duration::from_millis(20),
                    b"ture\ndata: {\"data\":\"21\",\"ttl\":\"60\",\"published_at\":\"2014-05-28T19:20:34.638Z\",",
                ),
                (Duration::from_millis(20), b"\"coreid\":\"53ff6c065075535119511687\"}\n"),
                (Duration::from_millis(20), b"\n"),
                (Duration::from_millis(20), b"\n"),
                (
                    Duration::from_millis(20),
                    b"event: spark/status\r\ndata: {\"data\":\"online\",\"ttl\":60,\"published_at\":\"2014-05-28T19:20:35.000Z\",\"coreid\":\"53ff6c065075535119511687\"}\r\n\r",
                ),
                (Duration::from_millis(20), b"\n\n:keep-alive\n\n"),
                (Duration::from_millis(20), b"event: broken\ndata: not json\n\n"),
            ],
            Duration::from_secs(30),
        ),
        // The reconnect: one event, then the server closes the stream.
        2 => sse(
            vec![(
                Duration::ZERO,
                b":ok\n\nevent: after-reconnect\ndata: {\"data\":null,\"ttl\":\"60\",\"published_at\":\"2014-05-28T19:21:00.000Z\",\"coreid\":\"53ff6c065075535119511687\"}\n\n",
            )],
            Duration::ZERO,
        ),
        // Then the token is revoked.
        _ => json(401, OAUTH_INVALID),
    }
}

fn oauth_token(req: &Recorded) -> Response<BoxBody> {
    if req.header("content-type") != Some("application/x-www-form-urlencoded") {
        return json(
            400,
            r#"{"code":400,"error":"invalid_request","error_description":"Method must be POST with application/x-www-form-urlencoded encoding"}"#,
        );
    }
    let form = req.form();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("client_id").is_none() || field("client_secret").is_none() {
        return json(
            400,
            r#"{"code":400,"error":"invalid_client","error_description":"Invalid or missing client_id parameter"}"#,
        );
    }
    let grant = |expires_in: &str| {
        full(
            200,
            "application/json",
            format!(
                r#"{{"access_token":"{NEW_TOKEN}","token_type":"bearer","expires_in":{expires_in}}}"#
            ),
        )
    };
    match field("grant_type") {
        Some("password") => match (field("username"), field("password")) {
            (Some(USER), Some(PASSWORD)) => grant(field("expires_in").unwrap_or("7776000")),
            (Some("mfa@example.com"), Some(_)) => json(
                403,
                r#"{"error":"mfa_required","error_description":"Multi-factor authentication required","mfa_token":"mfa-7f3a"}"#,
            ),
            (Some(_), Some(_)) => json(
                503,
                r#"{"code":503,"error":"server_error","error_description":"server_error"}"#,
            ),
            _ => json(
                400,
                r#"{"code":400,"error":"invalid_client","error_description":"Missing parameters. \"username\" and \"password\" are required"}"#,
            ),
        },
        Some("urn:custom:mfa-otp")
            if field("mfa_token") == Some("mfa-7f3a") && field("otp") == Some("123456") =>
        {
            grant("7776000")
        }
        _ => json(
            400,
            r#"{"code":400,"error":"invalid_grant","error_description":"Invalid or expired one-time password"}"#,
        ),
    }
}
