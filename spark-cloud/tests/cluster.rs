//! Three `spark-cloud` processes sharing one real PostgreSQL registry (`--store`) and one real `nats-server`
//! (`--bus`), with virtual Cores spread over them. Everything a user does goes through the REST API of whichever
//! node: sign-up, login, provisioning, claims, renames, key changes, calls, events and updates; no state directory
//! is copied. The second test kills a node that holds Cores and open event streams.

#[path = "support/nats.rs"]
mod nats;
#[path = "support/cluster_nodes.rs"]
mod nodes;
#[path = "support/postgres.rs"]
mod postgres_server;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use nats::NatsServer;
use nodes::{
    Core, LEASE, Node, Stream, call, core_result, eventually, http, http_body, json,
    listed_connected, multipart, openssl_key, received,
};
use postgres_server::Postgres;
use spark_cc3000::ServicePack;
use spark_protocol::crypto::keys::RsaPublicKey;
use spark_vcore::VirtualCore;
use spark_vcore::run::Status;

/// Percent-encodes a form value (a PEM holds `+`, `/`, `=` and line breaks).
fn form_value(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Three nodes on one database and one bus, and the key their Cores trust (read back from the store).
struct Cluster {
    nodes: Vec<Node>,
    server_key: RsaPublicKey,
    root: tempfile::TempDir,
    // Dropped last: the nodes stop before their services.
    _nats: NatsServer,
    _pg: Postgres,
}

impl Cluster {
    async fn start() -> Cluster {
        let pg = Postgres::start();
        let url = pg.database().await;
        let nats = NatsServer::start();
        let root = tempfile::Builder::new()
            .prefix("spark-cloud-cluster-")
            .tempdir()
            .unwrap();
        // The first node migrates the database and makes the server keys; the others find them.
        let nodes: Vec<Node> = (0..3)
            .map(|i| {
                let dir = root.path().join(format!("n{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                Node::start(&nats, &dir, &format!("n{i}"), &["--store", &url])
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
            .args(["--store", &url, "keys", "show"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server_key = RsaPublicKey::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
        Cluster {
            nodes,
            server_key,
            root,
            _nats: nats,
            _pg: pg,
        }
    }

    /// Signs `user` up on `signup` and logs in on `login`; returns the token.
    fn user(&self, user: &str, signup: usize, login: usize) -> String {
        let (status, body) = http(
            self.nodes[signup].http,
            "POST",
            "/v1/users",
            "",
            &format!("username={user}&password=pw-{user}-1234"),
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = http(
            self.nodes[login].http,
            "POST",
            "/oauth/token",
            "",
            &format!(
                "grant_type=password&client_id=spark&client_secret=spark&username={user}&password=pw-{user}-1234"
            ),
        );
        assert_eq!(status, 200, "{body}");
        json(&body)["access_token"].as_str().unwrap().to_owned()
    }

    /// `count` Cores, each provisioned for `token` through node `i % 3`, each subscribed to `cluster/` and
    /// publishing a private `hello` on connect.
    fn cores(&self, token: &str, count: usize) -> Vec<Core> {
        (0..count)
            .map(|i| {
                let key = openssl_key();
                let public = key.public_key();
                let id = random_id();
                let dir = self.root.path().join(format!("core-{i}"));
                let mut vc =
                    VirtualCore::create_with_identity(&dir, ServicePack::SP_1_24, id, key).unwrap();
                vc.set_temperature(20.0 + i as f64);
                assert!(vc.subscribe("cluster/"));
                assert!(vc.publish_on_connect("hello", &format!("core-{i}")));
                let hex = vc.id_hex().to_owned();
                let (status, body) = provision(&self.nodes[i % 3], token, &hex, &public);
                assert_eq!(status, 200, "{body}");
                Core {
                    id: hex,
                    core: Arc::new(Mutex::new(vc)),
                    log: Arc::new(Mutex::new(Vec::new())),
                    task: None,
                }
            })
            .collect()
    }

    /// Starts Core `i` with every node's address, node `i % 3`'s first.
    fn connect(&self, cores: &mut [Core], reconnect: Duration) {
        let all: Vec<SocketAddr> = self.nodes.iter().map(|n| n.device).collect();
        for (i, core) in cores.iter_mut().enumerate() {
            let mut order = all.clone();
            order.rotate_left(i % all.len());
            core.start_with_key(&order, reconnect, self.server_key.clone());
        }
    }

    fn wait_listed(&self, nodes: &[&Node], token: &str, cores: &[Core]) {
        for node in nodes {
            for core in cores {
                eventually(
                    "every node lists every Core connected",
                    Duration::from_secs(90),
                    || listed_connected(node, token, &core.id),
                );
            }
        }
    }

    fn assert_no_panic(&self) {
        for node in &self.nodes {
            let log = node.log();
            assert!(!log.contains("panicked"), "{log}");
        }
    }
}

fn random_id() -> [u8; 12] {
    let mut id = [0u8; 12];
    rand_core::Rng::fill_bytes(&mut spark_cloud::system_rng(), &mut id);
    id
}

fn provision(node: &Node, token: &str, id: &str, key: &RsaPublicKey) -> (u16, String) {
    let pem = key.to_spki_pem().unwrap();
    http(
        node.http,
        "POST",
        &format!("/v1/provisioning/{id}"),
        token,
        &format!("publicKey={}", form_value(&pem)),
    )
}

/// Whether `token`'s user sees `id` as theirs on `node` (200), another's (403) or not at all (404).
fn device_status(node: &Node, token: &str, id: &str) -> u16 {
    http(node.http, "GET", &format!("/v1/devices/{id}"), token, "").0
}

fn publish(node: &Node, token: &str, form: &str) {
    let (status, body) = http(node.http, "POST", "/v1/devices/events", token, form);
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(spark_no_postgres, spark_no_nats),
    ignore = "needs postgres and nats-server"
)]
async fn three_nodes_on_one_registry_share_users_devices_events_claims_and_updates() {
    let cluster = Cluster::start().await;
    let nodes = &cluster.nodes;
    // Made and logged in on one node; the token is good on every node.
    let joe = cluster.user("joe", 0, 0);
    let ann = cluster.user("ann", 1, 2);
    for node in nodes {
        for token in [&joe, &ann] {
            let (status, body) = http(node.http, "GET", "/v1/devices", token, "");
            assert_eq!(status, 200, "{body}");
            assert_eq!(json(&body), serde_json::json!([]));
        }
    }

    let mut cores = cluster.cores(&joe, 3);
    let joe_streams: Vec<Stream> = nodes
        .iter()
        .map(|n| Stream::open(n.http, "/v1/events", &joe))
        .collect();
    let ann_streams: Vec<Stream> = nodes
        .iter()
        .map(|n| Stream::open(n.http, "/v1/events", &ann))
        .collect();
    cluster.connect(&mut cores, Duration::from_millis(200));
    cluster.wait_listed(&nodes.iter().collect::<Vec<_>>(), &joe, &cores);

    // Calls and variable reads from each node reach the Core held by the next.
    for (n, node) in nodes.iter().enumerate() {
        let t = (n + 1) % 3;
        let target = &cores[t];
        let arg = format!("D{n},HIGH");
        let (status, body) = call(node, &joe, &target.id, "digitalwrite", &arg);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["return_value"].as_i64().map(|v| v as i32),
            core_result(target, "digitalwrite", &arg),
            "the answer is the Core's own"
        );
        let (status, body) = http(
            node.http,
            "GET",
            &format!("/v1/devices/{}/temperature", target.id),
            &joe,
            "",
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["result"].as_f64(), Some(20.0 + t as f64));
        // Another user's call is refused on every node.
        let (status, _) = call(node, &ann, &target.id, "digitalwrite", &arg);
        assert_eq!(status, 403);
    }

    // Device -> streams on the other nodes: each Core's private `hello` reaches joe everywhere, ann nowhere.
    for i in 0..3 {
        for s in &joe_streams {
            eventually(
                "each Core's event on every node",
                Duration::from_secs(20),
                || s.count("hello", &format!("core-{i}")) >= 1,
            );
        }
    }
    // API -> devices on the other nodes, public and private.
    publish(&nodes[0], &joe, "name=cluster/pub&data=everyone");
    publish(
        &nodes[2],
        &joe,
        "name=cluster/secret&data=joe-only&private=true",
    );
    publish(
        &nodes[1],
        &ann,
        "name=cluster/ann&data=ann-private&private=true",
    );
    for s in joe_streams.iter().chain(&ann_streams) {
        eventually(
            "the public event everywhere",
            Duration::from_secs(20),
            || s.count("cluster/pub", "everyone") >= 1,
        );
    }
    for s in &joe_streams {
        eventually("joe's private event", Duration::from_secs(20), || {
            s.count("cluster/secret", "joe-only") >= 1
        });
    }
    for s in &ann_streams {
        eventually("ann's private event", Duration::from_secs(20), || {
            s.count("cluster/ann", "ann-private") >= 1
        });
    }
    for core in &cores {
        eventually(
            "joe's API events reach his Cores on every node",
            Duration::from_secs(20),
            || received(core, "cluster/pub") >= 1 && received(core, "cluster/secret") >= 1,
        );
    }
    // Long enough for a duplicate or a leak to have arrived (the lease is the nodes' slowest beat).
    std::thread::sleep(LEASE);
    for s in &joe_streams {
        for i in 0..3 {
            assert_eq!(s.count("hello", &format!("core-{i}")), 1, "exactly once");
        }
        assert_eq!(s.count("cluster/pub", "everyone"), 1);
        assert_eq!(s.count("cluster/secret", "joe-only"), 1);
        assert!(s.named("cluster/ann").is_empty(), "ann's private event");
    }
    for s in &ann_streams {
        assert_eq!(s.count("cluster/pub", "everyone"), 1);
        assert_eq!(s.count("cluster/ann", "ann-private"), 1);
        assert!(s.named("hello").is_empty(), "joe's Cores' private events");
        assert!(s.named("cluster/secret").is_empty(), "joe's private event");
    }
    for core in &cores {
        assert_eq!(received(core, "cluster/pub"), 1, "once per Core");
        assert_eq!(received(core, "cluster/ann"), 0, "not ann's Core");
    }

    // Claim races: each round, joe and ann take the same unknown device through two different nodes at once.
    let race_key = openssl_key().public_key();
    let mut wins = [0usize; 2];
    let mut last = None;
    for round in 0..24 {
        let id = spark_cloud::encoding::hex(&random_id());
        let contenders = [(&joe, round % 3), (&ann, (round + 1) % 3)];
        let barrier = Barrier::new(2);
        let results: Vec<(u16, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = contenders
                .iter()
                .map(|&(token, n)| {
                    let (barrier, id, key) = (&barrier, &id, &race_key);
                    scope.spawn(move || {
                        barrier.wait();
                        provision(&nodes[n], token, id, key)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<usize> = (0..2).filter(|&k| results[k].0 == 200).collect();
        assert_eq!(won.len(), 1, "exactly one wins: {results:?}");
        let (winner, loser) = (won[0], 1 - won[0]);
        assert_eq!(results[loser].0, 403, "{results:?}");
        assert!(
            results[loser].1.contains("Permission Denied"),
            "{results:?}"
        );
        wins[winner] += 1;
        // Every node agrees on the owner.
        for node in nodes {
            assert_eq!(device_status(node, contenders[winner].0, &id), 200);
            assert_eq!(device_status(node, contenders[loser].0, &id), 403);
        }
        last = Some((id, winner));
    }
    eprintln!("claim races won: joe {}, ann {}", wins[0], wins[1]);

    // A rename on one node is seen on the others; the other user's rename is refused on any node.
    let (race_id, winner) = last.unwrap();
    let (owner, other) = if winner == 0 {
        (&joe, &ann)
    } else {
        (&ann, &joe)
    };
    let (status, body) = http(
        nodes[0].http,
        "PUT",
        &format!("/v1/devices/{race_id}"),
        owner,
        "name=porch",
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(
        nodes[1].http,
        "PUT",
        &format!("/v1/devices/{race_id}"),
        other,
        "name=stolen",
    );
    assert_eq!(status, 403);
    for node in nodes {
        let (status, body) = http(
            node.http,
            "GET",
            &format!("/v1/devices/{race_id}"),
            owner,
            "",
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["name"], "porch", "{body}");
    }
    // A key change on node 1 (the other user's is refused on node 2): a Core with the new key then connects to node 2.
    let new_key = openssl_key();
    let (status, body) = provision(&nodes[2], other, &race_id, &new_key.public_key());
    assert_eq!(status, 403, "{body}");
    let (status, body) = provision(&nodes[1], owner, &race_id, &new_key.public_key());
    assert_eq!(status, 200, "{body}");
    let raw_id: [u8; 12] = (0..12)
        .map(|k| u8::from_str_radix(&race_id[2 * k..2 * k + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let rekeyed = VirtualCore::create_with_identity(
        &cluster.root.path().join("rekeyed"),
        ServicePack::SP_1_24,
        raw_id,
        new_key,
    )
    .unwrap();
    let mut rekeyed = Core {
        id: race_id.clone(),
        core: Arc::new(Mutex::new(rekeyed)),
        log: Arc::new(Mutex::new(Vec::new())),
        task: None,
    };
    rekeyed.start_with_key(
        &[nodes[2].device],
        Duration::from_millis(200),
        cluster.server_key.clone(),
    );
    for node in nodes {
        eventually(
            "the Core with the changed key is accepted",
            Duration::from_secs(60),
            || listed_connected(node, owner, &race_id),
        );
    }
    drop(rekeyed);

    // An update sent to node 0 for the Core held by node 1; its outcome seen on node 2.
    let image = spark_vcore::image::synthetic_deep_update(ServicePack::SP_1_24);
    let (content_type, body) = multipart(&image);
    let target = &cores[1];
    let (status, reply) = http_body(
        nodes[0].http,
        "PUT",
        &format!("/v1/devices/{}", target.id),
        &joe,
        &content_type,
        &body,
    );
    assert_eq!(status, 200, "{reply}");
    eventually(
        "the update's outcome on node 2",
        Duration::from_secs(120),
        || {
            joe_streams[2]
                .named("spark/flash/status")
                .iter()
                .any(|s| !s.starts_with("started"))
        },
    );
    let outcome = joe_streams[2].named("spark/flash/status");
    assert!(
        outcome.iter().any(|s| s == "success app.bin"),
        "{outcome:?}"
    );
    let finished = target
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|s| matches!(s, Status::UpdateFinished { size } if *size as usize == image.len()));
    assert!(finished, "the Core committed the image, whole");
    assert!(ann_streams[2].named("spark/flash/status").is_empty());
    cluster.assert_no_panic();
    drop(cores);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(spark_no_postgres, spark_no_nats),
    ignore = "needs postgres and nats-server"
)]
async fn a_killed_node_s_cores_and_streams_move_to_the_survivors_and_miss_nothing_after() {
    let mut cluster = Cluster::start().await;
    let joe = cluster.user("joe", 2, 1);
    let mut cores = cluster.cores(&joe, 6);
    // Slower to come back than the lease, so that the offline time can be seen.
    cluster.connect(&mut cores, LEASE * 3);
    cluster.wait_listed(&cluster.nodes.iter().collect::<Vec<_>>(), &joe, &cores);
    let streams: Vec<Stream> = cluster
        .nodes
        .iter()
        .map(|n| Stream::open(n.http, "/v1/events", &joe))
        .collect();
    // Cores 0 and 3 are node 0's (their own node comes first in their list).
    let lost = [0, 3];
    let sessions: Vec<usize> = lost.iter().map(|&i| cores[i].connections()).collect();

    let mut dead = cluster.nodes.remove(0);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let survivors: Vec<&Node> = cluster.nodes.iter().collect();
    for node in &survivors {
        for &i in &lost {
            eventually("the dead node's Cores read offline", LEASE * 3, || {
                !listed_connected(node, &joe, &cores[i].id)
            });
        }
    }
    let unchanged: Vec<usize> = lost.iter().map(|&i| cores[i].connections()).collect();
    assert_eq!(unchanged, sessions, "seen offline before they came back");
    // A call to one answers at once with a clear error (the request's own read timeout would fail a hang).
    for node in &survivors {
        let (status, body) = call(node, &joe, &cores[0].id, "digitalwrite", "D1,HIGH");
        assert_eq!(status, 404, "{body}");
        assert!(body.to_string().contains("not connected"), "{body}");
    }
    // REST keeps working meanwhile, and the survivors' own Cores never left.
    for node in &survivors {
        for i in [1, 2, 4, 5] {
            assert!(listed_connected(node, &joe, &cores[i].id));
        }
    }

    // The lost Cores come back on the survivors, reachable from both.
    cluster.wait_listed(&survivors, &joe, &cores);
    for (n, node) in survivors.iter().enumerate() {
        for &i in &lost {
            let arg = format!("D{n},LOW");
            let (status, body) = call(node, &joe, &cores[i].id, "digitalwrite", &arg);
            assert_eq!(status, 200, "{body}");
            assert!(core_result(&cores[i], "digitalwrite", &arg).is_some());
        }
    }
    // Every event published from now on, numbered, through either survivor: each surviving stream gets each once.
    const EVENTS: usize = 60;
    for k in 0..EVENTS {
        publish(survivors[k % 2], &joe, &format!("name=seq&data={k}"));
    }
    let want: Vec<String> = (0..EVENTS).map(|k| k.to_string()).collect();
    for s in &streams[1..] {
        eventually(
            "every numbered event on every surviving stream",
            Duration::from_secs(30),
            || s.named("seq").len() >= EVENTS,
        );
    }
    std::thread::sleep(LEASE);
    for s in &streams[1..] {
        let mut got = s.named("seq");
        got.sort_by_key(|d| d.parse::<usize>().unwrap());
        assert_eq!(got, want, "each numbered event once");
        // The moved Cores' own events after they came back, too.
        assert!(s.count("hello", "core-0") >= 1);
        assert!(s.count("hello", "core-3") >= 1);
    }
    // The dead node's stream ended with it and got none of them.
    assert!(streams[0].named("seq").is_empty());
    drop(cores);
    cluster.assert_no_panic();
}
