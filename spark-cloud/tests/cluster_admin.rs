//! What a shared registry must tell every node at once, with real services: `spark-cloud` processes sharing one
//! PostgreSQL `--store` and one NATS `--bus`. A token revoked on one node ends the event streams it opened on the
//! others before their store poll (2 s) could; an owner change and a key rotation reach the other nodes at once; a
//! node killed with `SIGKILL` leaves each survivor's subscribers exactly one `offline` event for its device.

#[path = "support/nats.rs"]
mod nats;
#[path = "support/cluster_nodes.rs"]
mod nodes;
#[path = "support/postgres.rs"]
mod postgres;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats::NatsServer;
use nodes::{
    Core, LEASE, Node, Stream, basic, eventually, http, http_auth, openssl_key, store_now,
};
use postgres::Postgres;
use spark_cc3000::ServicePack;
use spark_cloud::store::{self, Store};
use spark_protocol::crypto::keys::RsaPublicKey;
use spark_vcore::VirtualCore;

/// How soon a Core tries again.
const RECONNECT: Duration = Duration::from_millis(100);
/// How often a node polls the store's generation (the binary's `follow_store`).
const STORE_POLL: Duration = Duration::from_secs(2);
/// What "at once" must beat: well under the poll.
const PROMPTLY: Duration = Duration::from_millis(1000);

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
        let (url, store) = pg.registry(&["joe", "ann"]).await;
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
        Node::start(
            &self.nats,
            &self.dir.path().join(name),
            name,
            &["--store", &self.url],
        )
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
        let key = openssl_key();
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
        let (status, body) = http(b.http, "GET", "/v1/devices", token, "");
        assert_eq!(status, 401, "{body}");
    };

    // One token, deleted on a.
    let one = c.token("joe").await;
    let kept = c.token("ann").await;
    let stream = Stream::open(b.http, "/v1/events", &one);
    let untouched = Stream::open(b.http, "/v1/events", &kept);
    let (status, body) = http_auth(
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
    let streams = [
        Stream::open(b.http, "/v1/events", &first),
        Stream::open(b.http, "/v1/events", &second),
    ];
    let (status, body) = http_auth(
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
    let on_a = Stream::open(a.http, "/v1/events", &old);
    let on_b = Stream::open(b.http, "/v1/events", &old);
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
    let stream = Stream::open(b.http, "/v1/events", &joe);
    core.start_with_key(&[b.device], RECONNECT, key.clone());
    let online = Instant::now();
    let watch = Arc::clone(&stream.0);
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
        &joe,
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
    second.start_with_key(&[b.device], RECONNECT, fresh);
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
        Stream::open(nodes[0].http, "/v1/events", &joe),
        Stream::open(nodes[1].http, "/v1/events", &joe),
    ];
    core.start_with_key(&[nodes[2].device], RECONNECT, key);
    let online: Vec<_> = streams.iter().map(|s| Arc::clone(&s.0)).collect();
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
    let heard: Vec<_> = streams.iter().map(|s| Arc::clone(&s.0)).collect();
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
