//! What a shared registry must tell every node at once, with real services: `spark-cloud` processes sharing one
//! PostgreSQL `--store` and one NATS `--bus`. A token revoked on one node ends the event streams it opened on the
//! others before their store poll (2 s) could; an owner change and a key rotation reach the other nodes at once; a
//! node killed with `SIGKILL` leaves each survivor's subscribers exactly one `offline` event for its device.

#[path = "support/nats.rs"]
mod nats;
#[path = "support/postgres.rs"]
mod postgres;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats::NatsServer;
use postgres::Postgres;
use serde_json::Value;
use spark_cc3000::ServicePack;
use spark_cloud::store::{self, Store, StoreConfig};
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_vcore::VirtualCore;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig, SharedCore, Status, run};

/// The nodes' lease.
const LEASE: Duration = Duration::from_millis(1500);
/// How often a node polls the store's generation (the binary's `follow_store`).
const STORE_POLL: Duration = Duration::from_secs(2);
/// What "at once" must beat: well under the poll.
const PROMPTLY: Duration = Duration::from_millis(1000);

fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request on its own connection (`auth` is the whole `Authorization` value): the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, auth: &str, form: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
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

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(user: &str, password: &str) -> String {
    use base64ct::Encoding;
    format!(
        "Basic {}",
        base64ct::Base64::encode_string(format!("{user}:{password}").as_bytes())
    )
}

/// An open event stream: the (name, data) of each event, and whether the cloud ended it.
struct Stream {
    events: Arc<Mutex<Vec<(String, String)>>>,
    ended: Arc<AtomicBool>,
}

impl Stream {
    fn open(addr: SocketAddr, token: &str) -> Stream {
        let mut s = TcpStream::connect(addr).unwrap();
        // Closed by the cloud when the stream ends.
        write!(
            s,
            "GET /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let events = Arc::new(Mutex::new(Vec::new()));
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
                    let v: Value = serde_json::from_str(d).unwrap();
                    let data = v["data"].as_str().unwrap_or_default().to_owned();
                    sink.lock().unwrap().push((n, data));
                }
            }
            end.store(true, Ordering::SeqCst);
        });
        Stream { events, ended }
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn count(&self, name: &str, data: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, d)| n == name && d == data)
            .count()
    }
}

/// A `spark-cloud` process on the shared store and bus.
struct Node {
    child: Child,
    http: SocketAddr,
    device: SocketAddr,
}

impl Node {
    fn start(nats: &NatsServer, store: &str, dir: &Path, name: &str) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
            .args(["--http", "127.0.0.1:0", "--device", "127.0.0.1:0"])
            .args(["--store", store, "--bus", &nats.url(), "--node-id", name])
            .args(["--lease", &LEASE.as_secs_f64().to_string(), "--dir"])
            .arg(dir.join(name))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Value = serde_json::from_str(&line).unwrap();
        Node {
            child,
            http: started["http"].as_str().unwrap().parse().unwrap(),
            device: started["device"].as_str().unwrap().parse().unwrap(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An admin command on the shared store that tells the bus.
fn admin(nats: &NatsServer, store: &str, dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
        .args(["--store", store, "--bus", &nats.url(), "--dir"])
        .arg(dir.join("admin"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The services, one database with the server keys, users joe and ann (password `pw`), and a scratch directory.
struct Cluster {
    nats: NatsServer,
    _pg: Postgres,
    url: String,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let pg = Postgres::start();
        let url = pg.database().await;
        let store = store::open(&StoreConfig::Postgres(url.clone()), 1024)
            .await
            .unwrap();
        for user in ["joe", "ann"] {
            store::create_user(&*store, user, "pw").await.unwrap();
        }
        Cluster {
            nats: NatsServer::start(),
            _pg: pg,
            url,
            store,
            dir: tempfile::Builder::new()
                .prefix("spark-cloud-admin-")
                .tempdir()
                .unwrap(),
        }
    }

    fn node(&self, name: &str) -> Node {
        Node::start(&self.nats, &self.url, self.dir.path(), name)
    }

    async fn token(&self, user: &str) -> String {
        store::issue_token(&*self.store, user, "spark", None)
            .await
            .unwrap()
            .0
    }

    async fn server_key(&self) -> RsaPublicKey {
        self.store.server_keys().await.unwrap().current.public_key()
    }

    /// A Core provisioned in the store for `owner`.
    async fn core(&self, owner: Option<&str>) -> Core {
        let out = Command::new("openssl")
            .args(["genrsa", "-traditional", "1024"])
            .output()
            .expect("the openssl command");
        assert!(out.status.success());
        let key = RsaPrivateKey::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
        let public = key.public_key();
        let mut id = [0u8; 12];
        rand_core::Rng::fill_bytes(&mut spark_cloud::system_rng(), &mut id);
        let vc = VirtualCore::create_with_identity(
            &self.dir.path().join(spark_cloud::encoding::hex(&id)),
            ServicePack::SP_1_24,
            id,
            key,
        )
        .unwrap();
        let hex = vc.id_hex().to_owned();
        self.store.provision(&hex, &public, owner).await.unwrap();
        Core {
            id: hex,
            core: Arc::new(Mutex::new(vc)),
            log: Arc::new(Mutex::new(Vec::new())),
            task: None,
        }
    }
}

struct Core {
    id: String,
    core: SharedCore,
    log: Arc<Mutex<Vec<Status>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Core {
    fn connections(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| matches!(s, Status::Connected { .. }))
            .count()
    }

    fn start(&mut self, to: SocketAddr, server_key: RsaPublicKey) {
        let config = CloudConfig {
            address: to.to_string(),
            server_key,
            faults: LinkFaults::RELIABLE,
            seed: 1,
            reconnect_delay: Duration::from_millis(100),
        };
        let (core, sink) = (Arc::clone(&self.core), Arc::clone(&self.log));
        self.task = Some(tokio::spawn(async move {
            let report = Box::new(move |s: Status| sink.lock().unwrap().push(s));
            let _ = run(core, config, report).await;
        }));
    }

    /// Drops the connection, as a device that lost power.
    fn stop(&mut self) {
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

/// Waits until the stream has ended, failing past [`PROMPTLY`] (the poll could not have done it by then).
async fn ends_promptly(stream: &Stream, what: &str) {
    let deadline = Instant::now() + PROMPTLY;
    while !stream.ended() {
        assert!(
            Instant::now() < deadline,
            "{what}: the stream on the other node was still open after {PROMPTLY:?} (the poll is {STORE_POLL:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(spark_no_postgres, spark_no_nats),
    ignore = "needs postgres, initdb and nats-server (Debian postgresql, nats-server)"
)]
async fn a_token_revoked_on_one_node_ends_its_streams_on_the_other_at_once() {
    let c = Cluster::start().await;
    let (a, b) = (c.node("a"), c.node("b"));
    let refused_on_b = |token: &str| {
        let (status, body) = http(b.http, "GET", "/v1/devices", &bearer(token), "");
        assert_eq!(status, 401, "{body}");
    };

    // One token, deleted on a.
    let one = c.token("joe").await;
    let kept = c.token("ann").await;
    let stream = Stream::open(b.http, &one);
    let untouched = Stream::open(b.http, &kept);
    let (status, body) = http(
        a.http,
        "DELETE",
        &format!("/v1/access_tokens/{one}"),
        &basic("joe", "pw"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    ends_promptly(&stream, "DELETE /v1/access_tokens/:token").await;
    refused_on_b(&one);

    // Every token of a user, deleted on a.
    let first = c.token("joe").await;
    let second = c.token("joe").await;
    let streams = [Stream::open(b.http, &first), Stream::open(b.http, &second)];
    let (status, body) = http(
        a.http,
        "DELETE",
        "/v1/access_tokens",
        &basic("joe", "pw"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    for s in &streams {
        ends_promptly(s, "DELETE /v1/access_tokens").await;
    }
    refused_on_b(&first);
    refused_on_b(&second);
    assert!(
        !untouched.ended(),
        "ann's stream does not end with joe's tokens"
    );

    // A cut-off, by the admin command beside the nodes; a is told as well as b.
    let old = c.token("joe").await;
    let on_a = Stream::open(a.http, &old);
    let on_b = Stream::open(b.http, &old);
    let cutoff = store_now() + 1;
    admin(
        &c.nats,
        &c.url,
        c.dir.path(),
        &["tokens", "invalidate-before", &cutoff.to_string()],
    );
    ends_promptly(&on_b, "tokens invalidate-before").await;
    ends_promptly(&on_a, "tokens invalidate-before").await;
    ends_promptly(
        &untouched,
        "tokens invalidate-before (ann's token is older too)",
    )
    .await;
    refused_on_b(&old);
}

fn store_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(spark_no_postgres, spark_no_nats),
    ignore = "needs postgres, initdb and nats-server (Debian postgresql, nats-server)"
)]
async fn an_owner_change_and_a_rotation_reach_the_other_node_at_once() {
    let c = Cluster::start().await;
    let (a, b) = (c.node("a"), c.node("b"));
    let joe = c.token("joe").await;
    let key = c.server_key().await;

    // A release on a: b's delivery of the device's next event (its `offline`) asks the store again rather than
    // trusting the owner it cached a moment ago (with the `online` event).
    let mut core = c.core(Some("joe")).await;
    let stream = Stream::open(b.http, &joe);
    core.start(b.device, key.clone());
    let online = Instant::now();
    let watch = Arc::clone(&stream.events);
    tokio::task::spawn_blocking(move || {
        eventually(
            "joe sees the Core online on b",
            Duration::from_secs(30),
            || {
                watch
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(n, d)| n == "spark/status" && d == "online")
            },
        );
    })
    .await
    .unwrap();
    let (status, body) = http(
        a.http,
        "DELETE",
        &format!("/v1/devices/{}", core.id),
        &bearer(&joe),
        "",
    );
    assert_eq!(status, 200, "{body}");
    // The word crosses the bus after the reply; a moment for it, far less than the cache's life.
    tokio::time::sleep(Duration::from_millis(200)).await;
    core.stop();
    let stopped = online.elapsed();
    // The disconnect reaches b and its `offline` would follow at once; give it the owner cache's whole life.
    tokio::time::sleep(store::OWNER_CACHE_TTL + Duration::from_millis(500)).await;
    assert_eq!(
        stream.count("spark/status", "offline"),
        0,
        "the released Core's offline reached its former owner on b ({stopped:?} after online)"
    );

    // A rotation (the admin command, told to the bus): b accepts a handshake made with the new key before its
    // poll would have read it.
    admin(&c.nats, &c.url, c.dir.path(), &["keys", "rotate"]);
    let fresh = c.server_key().await;
    assert!(fresh != key);
    let mut second = c.core(Some("joe")).await;
    let started = Instant::now();
    second.start(b.device, fresh);
    while second.connections() == 0 {
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "b did not take the new key before its poll ({STORE_POLL:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(spark_no_postgres, spark_no_nats),
    ignore = "needs postgres, initdb and nats-server (Debian postgresql, nats-server)"
)]
async fn a_killed_nodes_device_goes_offline_once_on_each_survivor() {
    let c = Cluster::start().await;
    let nodes = [c.node("a"), c.node("b"), c.node("c")];
    let joe = c.token("joe").await;
    let key = c.server_key().await;
    let mut core = c.core(Some("joe")).await;
    let streams = [
        Stream::open(nodes[0].http, &joe),
        Stream::open(nodes[1].http, &joe),
    ];
    core.start(nodes[2].device, key);
    let online: Vec<_> = streams.iter().map(|s| Arc::clone(&s.events)).collect();
    tokio::task::spawn_blocking(move || {
        for events in &online {
            eventually(
                "each survivor's stream sees the Core online",
                Duration::from_secs(30),
                || {
                    events
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|(n, d)| n == "spark/status" && d == "online")
                },
            );
        }
    })
    .await
    .unwrap();
    let [a, b, mut dead] = nodes;
    // The node dies first (a Core dropped first would be reported by its own node); the Core knows no other node.
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    core.stop();
    let heard: Vec<_> = streams.iter().map(|s| Arc::clone(&s.events)).collect();
    tokio::task::spawn_blocking(move || {
        for events in &heard {
            eventually("an offline event on each survivor", LEASE * 4, || {
                events
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(n, d)| n == "spark/status" && d == "offline")
            });
        }
    })
    .await
    .unwrap();
    // Another lease: no second report, from this node or relayed from the other.
    tokio::time::sleep(LEASE * 2).await;
    for s in &streams {
        assert_eq!(s.count("spark/status", "offline"), 1);
        assert!(!s.ended());
    }
    drop((a, b));
}
