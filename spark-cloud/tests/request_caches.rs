//! The REST layer's caches (a bearer token's user, a device's record) never outlive what invalidates them, with
//! real processes: two `spark-cloud` nodes sharing one PostgreSQL `--store` and one NATS `--bus`, and a lone node
//! on its state directory. A token used (so cached) on one node and revoked through the other is refused on the
//! first before the store poll (2 s) or the cache's own time-to-live (5 s) could have done it; a revocation made
//! on a node is refused by that node on the very next request; a device released or renamed through one node is
//! seen so at once by the other.

#[path = "support/nats.rs"]
mod nats;
#[path = "support/cluster_nodes.rs"]
mod nodes;
#[path = "support/postgres.rs"]
mod postgres_server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nats::NatsServer;
use nodes::{Node, http, http_anonymous, json, store_now};
use postgres_server::Postgres;
use spark_cloud::store::{self, Store};
use spark_protocol::crypto::keys::RsaPublicKey;

/// What "at once" must beat: half the store poll (2 s) and a fifth of the caches' time-to-live (5 s).
const PROMPTLY: Duration = Duration::from_millis(1000);

/// Polls `status_now` until it gives `want`, failing past [`PROMPTLY`]; returns how long it took.
fn within_promptly(what: &str, want: u16, mut status_now: impl FnMut() -> u16) -> Duration {
    let start = Instant::now();
    loop {
        let got = status_now();
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PROMPTLY,
            "{what}: still {got} after {PROMPTLY:?} (wanted {want}); the caches were not told"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn devices_status(node: SocketAddr, token: &str) -> u16 {
    http(node, "GET", "/v1/devices", token, "").0
}

/// Used twice, so surely cached.
fn use_token(node: SocketAddr, token: &str) {
    for _ in 0..2 {
        assert_eq!(devices_status(node, token), 200, "{token} on {node}");
    }
}

/// Two nodes on one database and bus, users joe and ann (password `pw`).
struct Pair {
    nats: NatsServer,
    _pg: Postgres,
    url: String,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    a: Node,
    b: Node,
}

impl Pair {
    async fn start() -> Pair {
        let pg = Postgres::start();
        let (url, store) = pg.registry(&["joe", "ann"]).await;
        let nats = NatsServer::start();
        let dir = tempfile::Builder::new()
            .prefix("spark-cloud-caches-")
            .tempdir()
            .unwrap();
        let node =
            |name: &str| Node::start(&nats, &dir.path().join(name), name, &["--store", &url]);
        let (a, b) = (node("a"), node("b"));
        Pair {
            nats,
            _pg: pg,
            url,
            store,
            dir,
            a,
            b,
        }
    }

    async fn token(&self, user: &str) -> String {
        store::issue_token(&*self.store, user, "spark", None)
            .await
            .unwrap()
            .0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(spark_no_postgres, spark_no_nats),
    ignore = "needs postgres, initdb and nats-server (Debian postgresql, nats-server)"
)]
async fn a_token_cached_on_one_node_and_revoked_through_the_other_is_refused_at_once() {
    let c = Pair::start().await;
    let (a, b) = (c.a.http, c.b.http);
    let kept = c.token("ann").await;
    use_token(a, &kept);

    // One token (DELETE /v1/access_tokens/current through b).
    let one = c.token("joe").await;
    use_token(a, &one);
    use_token(b, &one);
    let (status, body) = http(b, "DELETE", "/v1/access_tokens/current", &one, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(devices_status(b, &one), 401, "b refuses it as it answered");
    within_promptly("a token revoked through b, on a", 401, || {
        devices_status(a, &one)
    });

    // Every token of a user (DELETE /v1/access_tokens through b).
    let first = c.token("joe").await;
    let second = c.token("joe").await;
    use_token(a, &first);
    use_token(a, &second);
    let (status, body) = http(b, "DELETE", "/v1/access_tokens", &first, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["revoked"], 2, "{body}");
    for t in [&first, &second] {
        assert_eq!(devices_status(b, t), 401);
        within_promptly("a user's tokens revoked through b, on a", 401, || {
            devices_status(a, t)
        });
    }
    assert_eq!(devices_status(a, &kept), 200, "ann's token is not joe's");

    // A cut-off (the admin command on the shared store, told to the bus as a node's own would be).
    let old = c.token("joe").await;
    use_token(a, &old);
    use_token(b, &old);
    let cutoff = store_now() + 1;
    let out = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
        .args(["--store", &c.url, "--bus", &c.nats.url(), "--dir"])
        .arg(c.dir.path().join("admin"))
        .args(["tokens", "invalidate-before", &cutoff.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in [a, b] {
        within_promptly("a cut-off", 401, || devices_status(node, &old));
        within_promptly("a cut-off (ann's token is older too)", 401, || {
            devices_status(node, &kept)
        });
    }

    // Revoked on a itself: refused by a on the very next request, no wait. (Tokens issued after the cut-off.)
    while store_now() < cutoff {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mine = c.token("joe").await;
    use_token(a, &mine);
    let (status, body) = http(a, "DELETE", "/v1/access_tokens/current", &mine, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(devices_status(a, &mine), 401);
    let (x, y) = (c.token("joe").await, c.token("joe").await);
    use_token(a, &x);
    use_token(a, &y);
    let (status, body) = http(a, "DELETE", "/v1/access_tokens", &x, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(devices_status(a, &x), 401);
    assert_eq!(devices_status(a, &y), 401);
}

const DEVICE: &str = "0123456789abcdef01234567";

fn device_key() -> RsaPublicKey {
    RsaPublicKey::from_pem(include_str!("fixtures/device_a.pub.pem")).unwrap()
}

fn device_info(node: SocketAddr, token: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(node, "GET", &format!("/v1/devices/{DEVICE}"), token, "");
    (status, json(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(spark_no_postgres, spark_no_nats),
    ignore = "needs postgres, initdb and nats-server (Debian postgresql, nats-server)"
)]
async fn a_device_renamed_or_released_through_one_node_is_seen_so_on_the_other_at_once() {
    let c = Pair::start().await;
    let (a, b) = (c.a.http, c.b.http);
    let joe = c.token("joe").await;
    c.store
        .provision(DEVICE, &device_key(), Some("joe"))
        .await
        .unwrap();
    // Looked up (so cached) on a.
    for _ in 0..2 {
        let (status, view) = device_info(a, &joe);
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["name"], serde_json::Value::Null);
    }

    let (status, body) = http(
        b,
        "PUT",
        &format!("/v1/devices/{DEVICE}"),
        &joe,
        "name=kettle",
    );
    assert_eq!(status, 200, "{body}");
    within_promptly("a rename through b, on a", 200, || {
        let (status, view) = device_info(a, &joe);
        if view["name"] == "kettle" { status } else { 0 }
    });

    let (status, body) = http(b, "DELETE", &format!("/v1/devices/{DEVICE}"), &joe, "");
    assert_eq!(status, 200, "{body}");
    within_promptly("a release through b, on a", 404, || device_info(a, &joe).0);
    let (status, body) = http(
        a,
        "POST",
        &format!("/v1/devices/{DEVICE}/digitalwrite"),
        &joe,
        "args=D7",
    );
    assert_eq!(
        status, 404,
        "a call to the released device through a: {body}"
    );
}

/// A lone `spark-cloud` on its state directory (the embedded store, no bus).
struct Lone {
    child: Child,
    http: SocketAddr,
}

impl Drop for Lone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lone {
    fn start(dir: &Path) -> Lone {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("default_key.pem"),
            include_str!("fixtures/server_key_1024.pem"),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
            .args(["--http", "127.0.0.1:0", "--device", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Lone {
            http: json(&line)["http"].as_str().unwrap().parse().unwrap(),
            child,
        }
    }

    /// Signs `user` up (password `pw`) the first time, and logs in: a new token.
    fn token(&self, user: &str) -> String {
        let form = format!("username={user}&password=pw");
        let _ = http_anonymous(self.http, "POST", "/v1/users", &form);
        let (status, body) = http_anonymous(
            self.http,
            "POST",
            "/oauth/token",
            &format!("client_id=spark&client_secret=spark&grant_type=password&{form}"),
        );
        assert_eq!(status, 200, "{body}");
        json(&body)["access_token"].as_str().unwrap().to_owned()
    }
}

#[test]
fn on_the_embedded_store_a_revoked_token_is_refused_on_the_next_request() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("lone");
    let lone = Lone::start(&dir);
    let addr = lone.http;

    let one = lone.token("joe");
    let kept = lone.token("ann");
    use_token(addr, &one);
    use_token(addr, &kept);
    let (status, body) = http(addr, "DELETE", "/v1/access_tokens/current", &one, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(devices_status(addr, &one), 401);

    let (x, y) = (lone.token("joe"), lone.token("joe"));
    use_token(addr, &x);
    use_token(addr, &y);
    let (status, body) = http(addr, "DELETE", "/v1/access_tokens", &x, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(devices_status(addr, &x), 401);
    assert_eq!(devices_status(addr, &y), 401);
    assert_eq!(devices_status(addr, &kept), 200);

    // The admin command on the directory, then SIGHUP: the cut-off reaches the running cloud's cache.
    std::thread::sleep(Duration::from_millis(1100));
    let out = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
        .arg("--dir")
        .arg(&dir)
        .args(["tokens", "invalidate-before", &store_now().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        devices_status(addr, &kept),
        200,
        "not yet read by the running cloud"
    );
    let hup = Command::new("kill")
        .args(["-HUP", &lone.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    within_promptly("a cut-off read on SIGHUP", 401, || {
        devices_status(addr, &kept)
    });
}
