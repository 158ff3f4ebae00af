//! A small cloud on 127.0.0.1 (hyper, HTTP/1.1) that answers the REST calls the `spark` tool makes the way the
//! Spark cloud does, and records every request. It runs on its own thread so tests can run the binary in between.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub const TOKEN: &str = "38bb7b318cc6898c80317decb34525844bc9db55";
pub const CORE: &str = "53ff6c065075535119511687";
pub const OFFLINE: &str = "48ff6a065067555008342387";
pub const USER: &str = "joe@example.com";
pub const PASSWORD: &str = "SuperSecret";
/// What the test cloud's compiler produces.
pub const COMPILED: &[u8] = b"\x00\x50\x00\x20\x0d\x01\x00\x08compiled-firmware";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The `application/x-www-form-urlencoded` body as pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        form_decode(&self.body)
    }
    pub fn field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn form_decode(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let v = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match v {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The running server; it stops with the process.
pub struct Cloud {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Cloud {
    pub fn start() -> Cloud {
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread_log = log.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let log = thread_log.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(log.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        let addr = rx.recv().expect("server address");
        Cloud { addr, log }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .cloned()
            .collect()
    }

    /// Run `spark` against this cloud with `home` as the home directory and no token in the environment.
    pub fn spark(&self, home: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_spark"))
            .args(args)
            .env("HOME", home)
            .env("SPARK_API_URL", self.url())
            .env_remove("PARTICLE_ACCESS_TOKEN")
            .env_remove("SPARK_PASSWORD")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .output()
            .expect("run spark")
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn json(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_owned())).boxed())
        .expect("response")
}

/// A firmware file whose bytes contain this is "refused by the device": its `spark/flash/status` says failed.
pub const REFUSE_MARKER: &[u8] = b"refuse-me";

/// `spark/flash/status` for one device: once a flash of it arrives, `started` then `success` or `failed`.
fn flash_status(log: Arc<Mutex<Vec<Recorded>>>, device: String) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let frame = |s: String| Ok(Frame::data(Bytes::from(s)));
        if tx.send(frame(":ok\n\n".into())).await.is_err() {
            return;
        }
        let path = format!("/v1/devices/{device}");
        let flash = loop {
            let found = log
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|r| r.method == "PUT" && r.path == path)
                .cloned();
            if let Some(put) = found {
                break put;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let outcome = if contains(&flash.body, REFUSE_MARKER) {
            "failed app.bin: the Core refused the image: not a firmware image"
        } else {
            "success app.bin"
        };
        for data in ["started app.bin", outcome] {
            let event = format!(
                "event: spark/flash/status\ndata: {{\"data\":\"{data}\",\"ttl\":60,\"published_at\":\"2014-06-30T12:00:00.000Z\",\"coreid\":\"{CORE}\"}}\n\n"
            );
            if tx.send(frame(event)).await.is_err() {
                return;
            }
        }
        while !tx.is_closed() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(tokio_stream(rx))))
        .expect("response")
}

fn events() -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let chunks: [&'static [u8]; 3] = [
            b":ok\n\n",
            b"event: temperature\ndata: {\"data\":\"21.5\",\"ttl\":\"60\",\"published_at\":\"2014-06-30T12:00:00.000Z\",\"coreid\":\"53ff6c065075535119511687\"}\n\n",
            b"event: motion\ndata: {\"data\":\"front door\",\"ttl\":60,\"published_at\":\"2014-06-30T12:00:01.000Z\",\"coreid\":\"53ff6c065075535119511687\"}\n\n",
        ];
        for c in chunks {
            if tx
                .send(Ok(Frame::data(Bytes::from_static(c))))
                .await
                .is_err()
            {
                return;
            }
        }
        // Hold the stream open until the client goes away.
        while !tx.is_closed() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let stream = tokio_stream(rx);
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("response")
}

/// A `Stream` over an mpsc receiver, without pulling in tokio-stream.
fn tokio_stream(
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    struct Rx(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);
    impl futures_core::Stream for Rx {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    Rx(rx)
}

const INVALID_TOKEN: &str =
    r#"{"error":"invalid_token","error_description":"The access token provided is invalid."}"#;
const GOOD_BASIC: &str = "Basic am9lQGV4YW1wbGUuY29tOlN1cGVyU2VjcmV0";

async fn handle(
    log: Arc<Mutex<Vec<Recorded>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let rec = Recorded {
        method,
        path,
        authorization,
        body,
    };
    log.lock().unwrap().push(rec.clone());
    let decoded = rec.path.replace("%2F", "/").replace("%2f", "/");
    let parts: Vec<&str> = decoded.trim_matches('/').split('/').collect();
    if let ["v1", "devices", id, "events", "spark", "flash", "status"] = parts.as_slice()
        && rec.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))
    {
        return Ok(flash_status(log.clone(), (*id).to_owned()));
    }
    Ok(route(&rec))
}

fn route(req: &Recorded) -> Response<Body> {
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("POST", ["oauth", "token"]) => {
            let good = req.field("username").as_deref() == Some(USER)
                && req.field("password").as_deref() == Some(PASSWORD)
                && req.field("grant_type").as_deref() == Some("password");
            return if good {
                let expires = if req.field("expires_in").as_deref() == Some("0") {
                    0
                } else {
                    7_776_000
                };
                json(
                    200,
                    &format!(
                        r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":{expires}}}"#
                    ),
                )
            } else {
                json(
                    400,
                    r#"{"error":"invalid_grant","error_description":"User credentials are invalid"}"#,
                )
            };
        }
        (_, ["v1", "access_tokens", ..]) => {
            if req.authorization.as_deref() != Some(GOOD_BASIC) {
                return json(401, r#"{"ok":false,"errors":["Bad password"]}"#);
            }
            return match req.method.as_str() {
                "GET" => json(
                    200,
                    &format!(
                        r#"[{{"token":"{TOKEN}","expires_at":"2014-09-28T15:35:00.000Z","client":"spark-cli"}},{{"token":"254406f79c1999af65a7df4388971354f85cfee9","expires_at":null,"client":"user"}}]"#
                    ),
                ),
                _ => json(200, r#"{"ok":true}"#),
            };
        }
        _ => {}
    }
    if req.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return json(401, INVALID_TOKEN);
    }
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["v1", "devices"]) => json(
            200,
            &format!(
                r#"[{{"id":"{CORE}","name":"kitchen","last_app":null,"last_heard":"2014-06-30T12:00:00.000Z","connected":true}},{{"id":"{OFFLINE}","name":"garage","connected":false}}]"#
            ),
        ),
        ("GET", ["v1", "devices", id]) if *id == CORE || *id == "kitchen" => json(
            200,
            &format!(
                r#"{{"id":"{CORE}","name":"kitchen","connected":true,"variables":{{"temperature":"double"}},"functions":["brew","digitalwrite"],"cc3000_patch_version":"1.24","requires_deep_update":true}}"#
            ),
        ),
        ("POST", ["v1", "devices", "events"]) => json(200, r#"{"ok":true}"#),
        ("GET", ["v1", "user"]) => json(200, &format!(r#"{{"username":"{USER}"}}"#)),
        ("POST", ["v1", "devices"]) => match req.field("id") {
            Some(id) if id == OFFLINE => json(200, r#"{"ok":true}"#),
            _ => json(
                403,
                r#"{"ok":false,"errors":["That belongs to someone else."]}"#,
            ),
        },
        ("DELETE", ["v1", "devices", id]) if *id == CORE || *id == "kitchen" => {
            json(200, r#"{"ok":true}"#)
        }
        ("GET", ["v1", "webhooks"]) => json(
            200,
            r#"[{"id":"hook1","event":"temperature","url":"https://example.com/t","requestType":"POST","created_at":"2015-01-01T00:00:00.000Z"}]"#,
        ),
        ("POST", ["v1", "webhooks"]) => json(
            200,
            r#"{"ok":true,"id":"hook2","url":"https://example.com/m","event":"motion","created_at":"2015-01-02T00:00:00.000Z"}"#,
        ),
        ("DELETE", ["v1", "webhooks", "hook1"]) => json(200, r#"{"ok":true}"#),
        ("POST", ["v1", "provisioning", id]) => match req.field("publicKey") {
            Some(key) if key.contains("-----BEGIN PUBLIC KEY-----") => json(
                200,
                &format!(r#"{{"id":"{id}","connected":false,"user_id":"5437a0c2"}}"#),
            ),
            _ => json(400, r#"{"ok":false,"error":"No key provided"}"#),
        },
        ("PUT", ["v1", "devices", id]) if *id == CORE || *id == "kitchen" => {
            if let Some(name) = req.field("name") {
                json(
                    200,
                    &format!(r#"{{"ok":true,"id":"{CORE}","name":"{name}"}}"#),
                )
            } else if contains(&req.body, b"name=\"file\"") || req.field("app").is_some() {
                json(
                    200,
                    &format!(r#"{{"ok":true,"id":"{CORE}","status":"Update started"}}"#),
                )
            } else {
                json(400, r#"{"ok":false,"error":"Nothing to flash"}"#)
            }
        }
        ("POST", ["v1", "binaries"]) => {
            if contains(&req.body, b"void setup()") {
                json(
                    200,
                    r#"{"ok":true,"binary_id":"5437a0c2","binary_url":"/v1/binaries/5437a0c2","expires_at":"2014-10-10T12:00:00.000Z"}"#,
                )
            } else {
                json(
                    200,
                    r#"{"ok":false,"errors":["app.cpp:1:1: error: expected declaration"]}"#,
                )
            }
        }
        ("GET", ["v1", "binaries", "5437a0c2"]) => Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .body(Full::new(Bytes::from_static(COMPILED)).boxed())
            .expect("response"),
        ("POST", ["v1", "devices", id, function]) if *id == CORE || *id == "kitchen" => {
            match *function {
                "brew" => {
                    let arg = req
                        .field("arg")
                        .or_else(|| req.field("args"))
                        .unwrap_or_default();
                    json(
                        200,
                        &format!(
                            r#"{{"id":"{CORE}","name":"kitchen","connected":true,"return_value":{}}}"#,
                            arg.len()
                        ),
                    )
                }
                _ => json(404, r#"{"ok":false,"error":"Function not found"}"#),
            }
        }
        ("GET", ["v1", "devices", id, "temperature"]) if *id == CORE || *id == "kitchen" => json(
            200,
            &format!(
                r#"{{"cmd":"VarReturn","name":"temperature","result":21.5,"coreInfo":{{"deviceID":"{CORE}","connected":true}}}}"#
            ),
        ),
        ("GET", ["v1", "events", ..])
        | ("GET", ["v1", "devices", "events", ..])
        | ("GET", ["v1", "devices", _, "events", ..]) => events(),
        ("GET", ["v1", "devices", _]) => json(404, r#"{"ok":false,"error":"Permission Denied"}"#),
        _ => json(404, r#"{"ok":false,"error":"Not found"}"#),
    }
}
