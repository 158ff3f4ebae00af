//! Real `spark-cloud` processes on a real `nats-server`, and virtual Cores in the test process, as the cluster tests
//! (`bus_nats.rs`, `cluster.rs`) drive them: a node started with port 0 and its ports read from its first line, an
//! event stream read on its own thread, HTTP requests on their own connections, and waits with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig, SharedCore, Status, run};

use super::nats::NatsServer;

pub const SERVER_KEY: &str = include_str!("../fixtures/server_key_2048.pem");
/// The nodes' lease in the tests.
pub const LEASE: Duration = Duration::from_millis(1500);

/// Polls `done` every 50 ms until it holds; fails the test with `what` after `limit`.
pub fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP request on its own connection with a bearer token: the status and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: &str, form: &str) -> (u16, String) {
    http_auth(addr, method, path, &format!("Bearer {token}"), form)
}

/// As [`http`] with no `Authorization` header (sign-up, a token for a password).
pub fn http_anonymous(addr: SocketAddr, method: &str, path: &str, form: &str) -> (u16, String) {
    request(
        addr,
        method,
        path,
        None,
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    )
}

/// As [`http`] with the whole `Authorization` value (`Bearer …` or `Basic …`).
pub fn http_auth(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    form: &str,
) -> (u16, String) {
    request(
        addr,
        method,
        path,
        Some(auth),
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    )
}

/// As [`http`] with a body of `content_type`.
pub fn http_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    request(
        addr,
        method,
        path,
        Some(&format!("Bearer {token}")),
        content_type,
        body,
    )
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\
Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap();
    (status, body)
}

/// HTTP Basic credentials, as an `Authorization` value.
pub fn basic(user: &str, password: &str) -> String {
    use base64ct::Encoding;
    format!(
        "Basic {}",
        base64ct::Base64::encode_string(format!("{user}:{password}").as_bytes())
    )
}

/// Seconds since the Unix epoch, as the store counts them.
pub fn store_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// An open event stream: the (name, data) of each event received, in order, and whether the cloud ended it.
#[derive(Clone)]
pub struct Stream(pub Arc<Mutex<Vec<(String, String)>>>, pub Arc<AtomicBool>);

impl Stream {
    /// Opens `path` on `addr` and returns once the cloud answered (the subscription is in place). The connection
    /// closes with the stream, so that [`Stream::ended`] sees the cloud end it.
    pub fn open(addr: SocketAddr, path: &str, token: &str) -> Stream {
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        let ended = Arc::new(AtomicBool::new(false));
        let (sink, end) = (Arc::clone(&events), Arc::clone(&ended));
        std::thread::spawn(move || {
            let mut name = None;
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ")
                    && let Some(n) = name.take()
                {
                    let data = json(d)["data"].as_str().unwrap_or_default().to_owned();
                    sink.lock().unwrap().push((n, data));
                }
            }
            end.store(true, Ordering::SeqCst);
        });
        Stream(events, ended)
    }

    /// Whether the cloud ended the stream.
    pub fn ended(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }

    /// How many events named `name` with `data` arrived.
    pub fn count(&self, name: &str, data: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, d)| n == name && d == data)
            .count()
    }

    pub fn named(&self, name: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

/// A `spark-cloud` process on the bus.
pub struct Node {
    pub child: Child,
    pub http: SocketAddr,
    pub device: SocketAddr,
    pub udp: Option<SocketAddr>,
    pub log: PathBuf,
}

impl Node {
    pub fn start(nats: &NatsServer, dir: &Path, name: &str, extra: &[&str]) -> Node {
        Node::start_with_lease(nats, dir, name, extra, LEASE)
    }

    pub fn start_with_lease(
        nats: &NatsServer,
        dir: &Path,
        name: &str,
        extra: &[&str],
        lease: Duration,
    ) -> Node {
        let log = dir.with_extension("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
            .args(["--http", "127.0.0.1:0", "--device", "127.0.0.1:0"])
            .args(["--bus", &nats.url(), "--node-id", name])
            .args(extra)
            .args(["--lease", &lease.as_secs_f64().to_string(), "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started = json(&line);
        assert_eq!(started["node"], name, "{line}");
        Node {
            child,
            http: started["http"].as_str().unwrap().parse().unwrap(),
            device: started["device"].as_str().unwrap().parse().unwrap(),
            udp: started["udp"].as_str().map(|a| a.parse().unwrap()),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A virtual Core in the test process, and what it reported.
pub struct Core {
    pub id: String,
    pub core: SharedCore,
    pub log: Arc<Mutex<Vec<Status>>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Core {
    pub fn connections(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| matches!(s, Status::Connected { .. }))
            .count()
    }

    /// Runs the Core against `addresses` (the first, then the next on failure), trusting the test server key.
    pub fn start(&mut self, addresses: &[SocketAddr], reconnect: Duration) {
        let key = RsaPrivateKey::from_pem(SERVER_KEY).unwrap().public_key();
        self.start_with_key(addresses, reconnect, key);
    }

    /// Runs the Core against `addresses`, trusting `server_key`.
    pub fn start_with_key(
        &mut self,
        addresses: &[SocketAddr],
        reconnect: Duration,
        server_key: RsaPublicKey,
    ) {
        let config = CloudConfig {
            address: addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            server_key,
            faults: LinkFaults::RELIABLE,
            seed: 1,
            reconnect_delay: reconnect,
        };
        let (core, sink) = (Arc::clone(&self.core), Arc::clone(&self.log));
        self.task = Some(tokio::spawn(async move {
            let report = Box::new(move |s: Status| sink.lock().unwrap().push(s));
            let _ = run(core, config, report).await;
        }));
    }
}

impl Core {
    /// Drops the connection, as a device that lost power.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn openssl_key() -> RsaPrivateKey {
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "1024"])
        .output()
        .expect("the openssl command");
    assert!(out.status.success());
    RsaPrivateKey::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn connected(node: &Node, token: &str, id: &str) -> bool {
    let (status, body) = http(node.http, "GET", &format!("/v1/devices/{id}"), token, "");
    status == 200 && json(&body)["connected"] == true
}

pub fn listed_connected(node: &Node, token: &str, id: &str) -> bool {
    let (status, body) = http(node.http, "GET", "/v1/devices", token, "");
    assert_eq!(status, 200, "{body}");
    json(&body)
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["id"] == id && d["connected"] == true)
}

pub fn call(node: &Node, token: &str, id: &str, function: &str, arg: &str) -> (u16, Value) {
    let (status, body) = http(
        node.http,
        "POST",
        &format!("/v1/devices/{id}/{function}"),
        token,
        &format!("args={arg}"),
    );
    (status, json(&body))
}

pub fn core_result(core: &Core, name: &str, argument: &str) -> Option<i32> {
    core.log.lock().unwrap().iter().rev().find_map(|s| match s {
        Status::Called {
            name: n,
            argument: a,
            result,
        } if n == name && a == argument => Some(*result),
        _ => None,
    })
}

pub fn received(core: &Core, name: &str) -> usize {
    core.log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s, Status::EventReceived { name: n, .. } if n == name))
        .count()
}

pub fn multipart(image: &[u8]) -> (String, Vec<u8>) {
    let boundary = "spark-cloud-bus-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file_type\"\r\n\r\nbinary\r\n\
--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"app.bin\"\r\n\
Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
