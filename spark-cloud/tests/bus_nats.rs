//! Several `spark-cloud` processes on a real `nats-server`, with virtual Cores spread over them: requests, events,
//! updates and presence across nodes, a node killed with `SIGKILL`, and garbage on the cluster's subjects.
//!
//! Each node here runs on its own copy of one state directory made after provisioning
//! (same users, tokens, device keys and owners); `cluster.rs` runs nodes on one shared PostgreSQL registry.

#[path = "support/nats.rs"]
mod nats;
#[path = "support/cluster_nodes.rs"]
mod nodes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats::NatsServer;
use nodes::{
    Core, LEASE, Node, SERVER_KEY, Stream, call, connected, copy_dir, core_result, eventually,
    http, http_body, json, listed_connected, multipart, openssl_key, received,
};
use spark_cc3000::ServicePack;
use spark_cloud::state::StateDir;
use spark_vcore::VirtualCore;
use spark_vcore::run::Status;
use spark_vcore::udp::{DatagramFaults, UdpCloudConfig, load_or_create_udp_key, run_udp};

/// A provisioned state directory (two users, their tokens, `cores` Cores owned by joe) and the Cores.
struct Provisioned {
    root: tempfile::TempDir,
    joe: String,
    ann: String,
    cores: Vec<Core>,
}

fn provision(cores: usize) -> Provisioned {
    let root = tempfile::Builder::new()
        .prefix("spark-cloud-bus-")
        .tempdir()
        .unwrap();
    let template = root.path().join("template");
    std::fs::create_dir_all(&template).unwrap();
    std::fs::write(template.join("default_key.pem"), SERVER_KEY).unwrap();
    let mut rng = spark_cloud::system_rng();
    let state = StateDir::open(&template, 2048, &mut rng).unwrap();
    let mut tokens = Vec::new();
    for user in ["joe", "ann"] {
        state.create_user(user, "pw", &mut rng).unwrap();
        tokens.push(state.issue_token(user, "test", None, &mut rng).unwrap().0);
    }
    let mut made = Vec::new();
    for i in 0..cores {
        let key = openssl_key();
        let mut id = [0u8; 12];
        rand_core::Rng::fill_bytes(&mut rng, &mut id);
        let public = key.public_key();
        let dir = root.path().join(format!("core-{i}"));
        let mut vc =
            VirtualCore::create_with_identity(&dir, ServicePack::SP_1_24, id, key).unwrap();
        vc.set_temperature(20.0 + i as f64);
        assert!(vc.subscribe("cluster/"));
        assert!(vc.publish_on_connect("hello", &format!("core-{i}")));
        let hex = vc.id_hex().to_owned();
        state.provision(&hex, &public, Some("joe")).unwrap();
        made.push(Core {
            id: hex,
            core: Arc::new(Mutex::new(vc)),
            log: Arc::new(Mutex::new(Vec::new())),
            task: None,
        });
    }
    drop(state);
    let ann = tokens.pop().unwrap();
    let joe = tokens.pop().unwrap();
    Provisioned {
        root,
        joe,
        ann,
        cores: made,
    }
}

/// `n` nodes named `n0`, `n1`, ..., each on its own copy of the provisioned directory.
fn start_nodes(nats: &NatsServer, p: &Provisioned, n: usize) -> Vec<Node> {
    start_nodes_with(nats, p, n, &[])
}

fn start_nodes_with(nats: &NatsServer, p: &Provisioned, n: usize, extra: &[&str]) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let dir = p.root.path().join(format!("n{i}"));
            copy_dir(&p.root.path().join("template"), &dir);
            Node::start(nats, &dir, &format!("n{i}"), extra)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(spark_no_nats, ignore = "needs nats-server (Debian nats-server)")]
async fn three_nodes_reach_every_core_and_share_every_event_once() {
    // A small payload limit, so that the update below crosses the bus in several pieces.
    let nats = NatsServer::start_with_max_payload(4096);
    let mut p = provision(3);
    let nodes = start_nodes(&nats, &p, 3);
    let joe: Vec<Stream> = nodes
        .iter()
        .map(|n| Stream::open(n.http, "/v1/events", &p.joe))
        .collect();
    let ann: Vec<Stream> = nodes
        .iter()
        .map(|n| Stream::open(n.http, "/v1/events", &p.ann))
        .collect();
    for (i, core) in p.cores.iter_mut().enumerate() {
        core.start(&[nodes[i].device], Duration::from_millis(200));
    }
    for node in &nodes {
        for core in &p.cores {
            eventually(
                "every node lists every Core connected",
                Duration::from_secs(60),
                || listed_connected(node, &p.joe, &core.id),
            );
        }
    }

    for (n, node) in nodes.iter().enumerate() {
        let target = &p.cores[(n + 1) % 3];
        // A function call from this node runs on the Core held by the next one.
        let arg = format!("D{n},HIGH");
        let (status, body) = call(node, &p.joe, &target.id, "digitalwrite", &arg);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["return_value"].as_i64().map(|v| v as i32),
            core_result(target, "digitalwrite", &arg),
            "the answer is the Core's own"
        );
        // A variable read gives that Core's own temperature.
        let (status, body) = http(
            node.http,
            "GET",
            &format!("/v1/devices/{}/temperature", target.id),
            &p.joe,
            "",
        );
        assert_eq!(status, 200, "{body}");
        let expected = 20.0 + ((n + 1) % 3) as f64;
        assert_eq!(json(&body)["result"].as_f64(), Some(expected), "{body}");
        // Its description.
        let (status, body) = http(
            node.http,
            "GET",
            &format!("/v1/devices/{}", target.id),
            &p.joe,
            "",
        );
        assert_eq!(status, 200, "{body}");
        let info = json(&body);
        assert!(
            info["functions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "digitalwrite"),
            "{body}"
        );
        assert!(info["variables"]["temperature"].is_string(), "{body}");
        // Another user's call is refused as before.
        let (status, _) = call(node, &p.ann, &target.id, "digitalwrite", &arg);
        assert_eq!(status, 403);
    }

    // Each Core's private `hello` reaches joe's stream on every node once, and no stream of ann's.
    for (i, _) in p.cores.iter().enumerate() {
        for s in &joe {
            eventually(
                "each Core's event on every node",
                Duration::from_secs(10),
                || s.count("hello", &format!("core-{i}")) >= 1,
            );
        }
    }
    // An event published through the API on one node: every stream once, every Core on every node.
    let (status, body) = http(
        nodes[0].http,
        "POST",
        "/v1/devices/events",
        &p.joe,
        "name=cluster/pub&data=everyone",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        nodes[1].http,
        "POST",
        "/v1/devices/events",
        &p.joe,
        "name=cluster/secret&data=joe-only&private=true",
    );
    assert_eq!(status, 200, "{body}");
    for s in joe.iter().chain(&ann) {
        eventually(
            "the public API event on every stream",
            Duration::from_secs(10),
            || s.count("cluster/pub", "everyone") >= 1,
        );
    }
    for s in &joe {
        eventually(
            "the private API event on joe's streams",
            Duration::from_secs(10),
            || s.count("cluster/secret", "joe-only") >= 1,
        );
    }
    for core in &p.cores {
        eventually(
            "the API event reaches every Core",
            Duration::from_secs(10),
            || received(core, "cluster/pub") >= 1,
        );
    }
    // Time for any duplicate to arrive.
    std::thread::sleep(LEASE);
    for s in &joe {
        for i in 0..3 {
            assert_eq!(s.count("hello", &format!("core-{i}")), 1, "exactly once");
        }
        assert_eq!(s.count("cluster/pub", "everyone"), 1, "exactly once");
        assert_eq!(s.count("cluster/secret", "joe-only"), 1, "exactly once");
    }
    for s in &ann {
        assert_eq!(s.count("cluster/pub", "everyone"), 1, "exactly once");
        assert!(s.named("hello").is_empty(), "joe's private events stay his");
        assert!(
            s.named("cluster/secret").is_empty(),
            "joe's private events stay his"
        );
    }
    for core in &p.cores {
        assert_eq!(received(core, "cluster/pub"), 1, "delivered once per Core");
    }

    // An update sent to node 0 for the Core on node 1; its outcome is seen on node 2.
    let image = spark_vcore::image::synthetic_deep_update(ServicePack::SP_1_24);
    assert!(image.len() > 3 * 4096, "the image takes several messages");
    let (content_type, body) = multipart(&image);
    let target = &p.cores[1];
    let (status, reply) = http_body(
        nodes[0].http,
        "PUT",
        &format!("/v1/devices/{}", target.id),
        &p.joe,
        &content_type,
        &body,
    );
    assert_eq!(status, 200, "{reply}");
    eventually(
        "the update's outcome on node 2",
        Duration::from_secs(120),
        || {
            !joe[2]
                .named("spark/flash/status")
                .iter()
                .all(|s| s.starts_with("started"))
        },
    );
    let outcome = joe[2].named("spark/flash/status");
    assert!(
        outcome.iter().any(|s| s == "success app.bin"),
        "{outcome:?}"
    );
    assert!(!joe[2].named("spark/flash/progress").is_empty());
    let finished = target
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|s| matches!(s, Status::UpdateFinished { size } if *size as usize == image.len()));
    assert!(finished, "the Core committed the image, whole");
    drop(p.cores);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(spark_no_nats, ignore = "needs nats-server (Debian nats-server)")]
async fn a_core_that_reconnects_to_another_node_is_let_go_by_the_old_one() {
    let nats = NatsServer::start();
    let mut p = provision(1);
    let nodes = start_nodes(&nats, &p, 2);
    let id = p.cores[0].id.clone();
    // The first session, on node 0, then slow to come back once dropped.
    p.cores[0].start(&[nodes[0].device], Duration::from_secs(600));
    eventually("the Core on node 0", Duration::from_secs(60), || {
        connected(&nodes[1], &p.joe, &id)
    });
    // The same Core (its directory and key) connects to node 1 while its session on node 0 is open.
    let twin_dir = p.root.path().join("twin");
    copy_dir(&p.root.path().join("core-0"), &twin_dir);
    let mut twin = Core {
        id: id.clone(),
        core: Arc::new(Mutex::new(VirtualCore::open(&twin_dir).unwrap())),
        log: Arc::new(Mutex::new(Vec::new())),
        task: None,
    };
    twin.start(&[nodes[1].device], Duration::from_millis(200));
    eventually(
        "node 0 drops its stale session",
        Duration::from_secs(30),
        || {
            p.cores[0]
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|s| matches!(s, Status::Disconnected { .. }))
        },
    );
    assert!(
        nodes[0].log().contains("reconnected to another node"),
        "{}",
        nodes[0].log()
    );
    // Calls from either node follow the Core to node 1.
    for (n, node) in nodes.iter().enumerate() {
        let arg = format!("D{n},LOW");
        let (status, body) = call(node, &p.joe, &id, "digitalwrite", &arg);
        assert_eq!(status, 200, "{body}");
        assert!(
            core_result(&twin, "digitalwrite", &arg).is_some(),
            "the new session answered"
        );
        assert!(core_result(&p.cores[0], "digitalwrite", &arg).is_none());
    }
    assert!(connected(&nodes[0], &p.joe, &id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(spark_no_nats, ignore = "needs nats-server (Debian nats-server)")]
async fn a_killed_node_s_cores_read_offline_then_come_back_on_the_survivors() {
    let nats = NatsServer::start();
    let mut p = provision(3);
    let mut nodes = start_nodes(&nats, &p, 3);
    let all: Vec<SocketAddr> = nodes.iter().map(|n| n.device).collect();
    for (i, core) in p.cores.iter_mut().enumerate() {
        // Each Core knows every node, its own first; it waits longer than the lease before reconnecting, so that
        // the time its devices read offline can be seen.
        let mut order = all.clone();
        order.rotate_left(i);
        core.start(&order, LEASE * 3);
    }
    for node in &nodes {
        for core in &p.cores {
            eventually(
                "every Core connected everywhere",
                Duration::from_secs(60),
                || listed_connected(node, &p.joe, &core.id),
            );
        }
    }
    let streams: Vec<Stream> = nodes
        .iter()
        .map(|n| Stream::open(n.http, "/v1/events", &p.joe))
        .collect();
    let lost = p.cores[0].id.clone();
    let sessions_before = p.cores[0].connections();

    // SIGKILL: no goodbye on the bus.
    let mut dead = nodes.remove(0);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    for node in &nodes {
        eventually("the dead node's Core reads offline", LEASE * 3, || {
            !listed_connected(node, &p.joe, &lost)
        });
    }
    assert_eq!(
        p.cores[0].connections(),
        sessions_before,
        "seen offline before the Core came back"
    );
    // A call to it fails at once with a clear answer, not a wait.
    let asked = Instant::now();
    let (status, body) = call(&nodes[0], &p.joe, &lost, "digitalwrite", "D1,HIGH");
    assert_eq!(status, 404, "{body}");
    assert!(body.to_string().contains("not connected"), "{body}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    // The Cores held by the survivors never left.
    assert!(listed_connected(&nodes[0], &p.joe, &p.cores[1].id));
    assert!(listed_connected(&nodes[1], &p.joe, &p.cores[2].id));

    // The Core comes back on a survivor, and is reachable from both.
    for node in &nodes {
        eventually(
            "the Core back on a survivor",
            Duration::from_secs(60),
            || listed_connected(node, &p.joe, &lost),
        );
    }
    for (n, node) in nodes.iter().enumerate() {
        let arg = format!("D{n},HIGH");
        let (status, body) = call(node, &p.joe, &lost, "digitalwrite", &arg);
        assert_eq!(status, 200, "{body}");
        assert!(core_result(&p.cores[0], "digitalwrite", &arg).is_some());
    }
    // Events published after that reach the surviving streams, each once.
    for k in 0..10 {
        let node = &nodes[k % 2];
        let (status, body) = http(
            node.http,
            "POST",
            "/v1/devices/events",
            &p.joe,
            &format!("name=after&data={k}"),
        );
        assert_eq!(status, 200, "{body}");
    }
    for s in &streams[1..] {
        eventually(
            "every later event on every survivor",
            Duration::from_secs(10),
            || s.named("after").len() >= 10,
        );
    }
    std::thread::sleep(LEASE);
    for s in &streams[1..] {
        let mut got = s.named("after");
        got.sort();
        let want: Vec<String> = (0..10).map(|k| k.to_string()).collect();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got, want_sorted, "each once");
        // The Core's own event after it came back, too.
        assert!(s.count("hello", "core-0") >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(spark_no_nats, ignore = "needs nats-server (Debian nats-server)")]
async fn garbled_bus_messages_are_dropped_with_a_log_line() {
    let nats = NatsServer::start();
    let mut p = provision(1);
    let nodes = start_nodes(&nats, &p, 2);
    p.cores[0].start(&[nodes[0].device], Duration::from_millis(200));
    let id = p.cores[0].id.clone();
    eventually("the Core seen from node 1", Duration::from_secs(60), || {
        connected(&nodes[1], &p.joe, &id)
    });
    let client = async_nats::connect(nats.url()).await.unwrap();
    let garbage: [&[u8]; 6] = [
        b"",
        b"\xff\xfe not json\n",
        b"{\"kind\":\"heartbeat\",\"node\":\"n9\",\"lease_ms\":\"x\"}\n",
        b"{\"kind\":\"held\",\"node\":\"a.b*\",\"holding\":{\"device\":\"x\",\"since_ms\":1}}\n",
        b"{\"node\":\"n9\",\"name\":\"x\",\"owner\":null,\"device\":null,\"public\":true}\nnot a frame",
        b"{\"device\":\"zz\",\"op\":{\"op\":\"chunk\",\"upload\":1,\"offset\":99,\"total\":1}}\nab",
    ];
    for g in garbage {
        for subject in [
            "spark.cluster.presence",
            "spark.cluster.events",
            "spark.cluster.node.n0",
        ] {
            client
                .publish(subject, bytes::Bytes::copy_from_slice(g))
                .await
                .unwrap();
            // As a request too: the node answers nothing it cannot read, and the asker times out.
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                client.request(subject, bytes::Bytes::copy_from_slice(g)),
            )
            .await;
        }
    }
    client.flush().await.unwrap();
    // A heartbeat of a node that does not exist, claiming the Core with an older session, takes it from no one.
    client
        .publish(
            "spark.cluster.presence",
            format!(
                "{{\"kind\":\"heartbeat\",\"node\":\"ghost\",\"lease_ms\":100,\"devices\":[{{\"device\":\"{id}\",\"since_ms\":1}}]}}\n"
            )
            .into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    for node in &nodes {
        let log = node.log();
        assert!(!log.contains("panicked"), "{log}");
    }
    eventually(
        "both nodes log the dropped messages",
        Duration::from_secs(10),
        || {
            nodes
                .iter()
                .all(|n| n.log().contains("dropped a malformed"))
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    for (n, node) in nodes.iter().enumerate() {
        let arg = format!("D{n},HIGH");
        let (status, body) = call(node, &p.joe, &id, "digitalwrite", &arg);
        assert_eq!(status, 200, "{body}");
        assert!(core_result(&p.cores[0], "digitalwrite", &arg).is_some());
        assert!(!node.log().contains("panicked"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(spark_no_nats, ignore = "needs nats-server (Debian nats-server)")]
async fn a_udp_device_is_reached_across_nodes_and_goes_offline_with_its_node() {
    let nats = NatsServer::start();
    let p = provision(0);
    let mut rng = spark_cloud::system_rng();
    let state = StateDir::open(&p.root.path().join("template"), 2048, &mut rng).unwrap();
    let mut id = [0u8; 12];
    rand_core::Rng::fill_bytes(&mut rng, &mut id);
    let mut vc = VirtualCore::create_with_identity(
        &p.root.path().join("electron"),
        ServicePack::SP_1_24,
        id,
        openssl_key(),
    )
    .unwrap();
    vc.set_temperature(31.5);
    let udp_key = load_or_create_udp_key(vc.dir()).unwrap();
    let hex = vc.id_hex().to_owned();
    state
        .provision_udp(&hex, &udp_key.public_key(), Some("joe"))
        .unwrap();
    let server_key = state.udp_server_key().public_key();
    drop(state);
    let mut nodes = start_nodes_with(&nats, &p, 2, &["--udp-listen", "127.0.0.1:0"]);
    let mut electron = Core {
        id: hex.clone(),
        core: Arc::new(Mutex::new(vc)),
        log: Arc::new(Mutex::new(Vec::new())),
        task: None,
    };
    let config = UdpCloudConfig {
        address: nodes[0].udp.unwrap().to_string(),
        server_key,
        faults: DatagramFaults::RELIABLE,
        seed: 1,
        reconnect_delay: Duration::from_secs(600),
    };
    let (core, sink) = (Arc::clone(&electron.core), Arc::clone(&electron.log));
    electron.task = Some(tokio::spawn(async move {
        let report = Box::new(move |s: Status| sink.lock().unwrap().push(s));
        let _ = run_udp(core, config, report).await;
    }));
    eventually(
        "the UDP device seen from node 1",
        Duration::from_secs(60),
        || listed_connected(&nodes[1], &p.joe, &hex),
    );
    let (status, body) = call(&nodes[1], &p.joe, &hex, "digitalwrite", "D3,HIGH");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["return_value"].as_i64().map(|v| v as i32),
        core_result(&electron, "digitalwrite", "D3,HIGH")
    );
    let (status, body) = http(
        nodes[1].http,
        "GET",
        &format!("/v1/devices/{hex}/temperature"),
        &p.joe,
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["result"].as_f64(), Some(31.5));
    // Its node killed, it reads offline on the other within the lease, and a call is refused at once.
    let mut dead = nodes.remove(0);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    eventually("the UDP device offline with its node", LEASE * 3, || {
        !listed_connected(&nodes[0], &p.joe, &hex)
    });
    let (status, body) = call(&nodes[0], &p.joe, &hex, "digitalwrite", "D3,LOW");
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(spark_no_nats, ignore = "needs nats-server (Debian nats-server)")]
async fn a_holder_that_stops_answering_times_out_and_one_that_left_is_not_waited_for() {
    use spark_cloud::cluster::{ClusterConfig, ClusterHub};
    use spark_cloud::devices::LiveHub;
    use spark_cloud::hub::{DeviceHub, HubError};

    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default_key.pem"), SERVER_KEY).unwrap();
    let mut config = ClusterConfig::new(&nats.url(), "real");
    config.request_timeout = Duration::from_secs(1);
    let hub = ClusterHub::connect(config, LiveHub::new()).await.unwrap();
    let cloud = spark_cloud::open(
        &spark_cloud::Config {
            dir: dir.path().to_owned(),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            key_bits: 2048,
        },
        Arc::clone(&hub) as Arc<dyn DeviceHub>,
    )
    .unwrap();
    hub.start(cloud.bus()).await.unwrap();

    // A node that claims a device, then never answers a request for it (a hung process).
    let device: spark_protocol::DeviceId = "0123456789abcdef01234567".parse().unwrap();
    let ghost = async_nats::connect(nats.url()).await.unwrap();
    let _swallowed = ghost.subscribe("spark.cluster.node.ghost").await.unwrap();
    let beat = format!(
        "{{\"kind\":\"heartbeat\",\"node\":\"ghost\",\"lease_ms\":800,\"devices\":[{{\"device\":\"{device}\",\"since_ms\":1}}]}}\n"
    );
    // It keeps its heartbeat going (every 200 ms, a lease of 800 ms) until it goes silent below.
    let beating = {
        let ghost = ghost.clone();
        tokio::spawn(async move {
            loop {
                ghost
                    .publish("spark.cluster.presence", beat.clone().into())
                    .await
                    .unwrap();
                ghost.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while !hub.is_connected(device) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the ghost's device is seen");
    // Bounded by the request timeout (1 s here), never a hang.
    let asked = tokio::time::timeout(Duration::from_secs(10), hub.call(device, "f", "x")).await;
    assert_eq!(asked, Ok(Err(HubError::TimedOut)));
    // An update to it fails the same way.
    struct Quiet;
    impl spark_cloud::hub::FlashProgress for Quiet {
        fn progress(&self, _: usize, _: usize) {}
    }
    let flashed = tokio::time::timeout(
        Duration::from_secs(10),
        hub.flash(
            device,
            bytes::Bytes::from_static(&[1; 2000]),
            Arc::new(Quiet),
        ),
    )
    .await;
    assert_eq!(flashed, Ok(Err(HubError::TimedOut)));

    beating.abort();
    // Silent past its lease, the ghost holds nothing: the device is offline and a call is refused at once.
    tokio::time::timeout(Duration::from_secs(5), async {
        while hub.is_connected(device) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("offline after the ghost's lease");
    let refused =
        tokio::time::timeout(Duration::from_millis(500), hub.call(device, "f", "x")).await;
    assert_eq!(refused, Ok(Err(HubError::NotConnected)));
    hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(spark_no_nats, ignore = "needs nats-server (Debian nats-server)")]
async fn a_node_that_joins_learns_the_holders_before_the_next_heartbeat() {
    // A long lease: heartbeats every 20 s, so a joining node that waited for one would not see the Core for a while.
    let lease = Duration::from_secs(60);
    let nats = NatsServer::start();
    let mut p = provision(1);
    let template = p.root.path().join("template");
    let dirs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let dir = p.root.path().join(format!("n{i}"));
            copy_dir(&template, &dir);
            dir
        })
        .collect();
    let first = Node::start_with_lease(&nats, &dirs[0], "n0", &[], lease);
    p.cores[0].start(&[first.device], Duration::from_millis(200));
    let id = p.cores[0].id.clone();
    eventually("the Core on node 0", Duration::from_secs(60), || {
        connected(&first, &p.joe, &id)
    });
    // Past node 0's first heartbeats, so that only the answer to the newcomer can tell node 1.
    std::thread::sleep(Duration::from_secs(1));
    let joined = Instant::now();
    let second = Node::start_with_lease(&nats, &dirs[1], "n1", &[], lease);
    eventually(
        "the newcomer learns the holder",
        Duration::from_secs(3),
        || listed_connected(&second, &p.joe, &id),
    );
    assert!(joined.elapsed() < lease / 3);
    let (status, body) = call(&second, &p.joe, &id, "digitalwrite", "D5,HIGH");
    assert_eq!(status, 200, "{body}");
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(spark_no_nats, ignore = "needs nats-server (Debian nats-server)")]
async fn heartbeats_carry_a_count_and_a_digest_and_the_list_comes_in_pieces_under_max_payload() {
    use spark_cloud::cluster::wire;

    // 1 KiB messages: a list piece holds 7 devices, so 12 take two pieces.
    const MAX_PAYLOAD: usize = 1024;
    let nats = NatsServer::start_with_max_payload(MAX_PAYLOAD);
    let mut p = provision(12);
    assert!(p.cores.len() > wire::holdings_per_piece(MAX_PAYLOAD));
    let template = p.root.path().join("template");
    let dirs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let dir = p.root.path().join(format!("n{i}"));
            copy_dir(&template, &dir);
            dir
        })
        .collect();
    let first = Node::start(&nats, &dirs[0], "n0", &[]);
    for core in &mut p.cores {
        core.start(&[first.device], Duration::from_millis(200));
    }
    for core in &p.cores {
        eventually("every Core on node 0", Duration::from_secs(60), || {
            connected(&first, &p.joe, &core.id)
        });
    }

    // What node 0 says on the presence subject: a count and a digest, no list, a small payload.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut presence = client.subscribe(wire::PRESENCE).await.unwrap();
    let (beat, beat_len) = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = futures_next(&mut presence).await;
            if let Ok(m @ wire::PresenceMessage::Heartbeat { .. }) =
                wire::parse_presence(&message.payload)
                && m.node() == "n0"
            {
                break (m, message.payload.len());
            }
        }
    })
    .await
    .expect("a heartbeat within the lease");
    let wire::PresenceMessage::Heartbeat {
        count,
        digest,
        devices,
        ..
    } = beat
    else {
        unreachable!()
    };
    assert_eq!(count, 12);
    assert!(devices.is_none(), "no list in a heartbeat");
    assert!(beat_len < 200, "{beat_len} bytes");

    // The list, asked for piece by piece: more than one piece, each under max_payload, together every Core once.
    let mut listed = Vec::new();
    let mut piece = 0u32;
    let pieces = loop {
        let answer = client
            .request(
                wire::list_subject("n0"),
                wire::emit(&wire::ListRequest { piece }, b""),
            )
            .await
            .unwrap();
        assert!(answer.payload.len() <= MAX_PAYLOAD);
        let got = wire::parse_list_piece(&answer.payload).unwrap();
        assert_eq!((got.count, got.digest.as_str()), (12, digest.as_str()));
        listed.extend(got.devices.into_iter().map(|h| h.device));
        piece += 1;
        if piece >= got.pieces {
            break got.pieces;
        }
    };
    assert!(pieces >= 2, "{pieces} piece(s)");
    listed.sort();
    let mut ids: Vec<String> = p.cores.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    assert_eq!(listed, ids);

    // A node that joins now heard none of the announcements: it learns every holder from the list.
    let second = Node::start(&nats, &dirs[1], "n1", &[]);
    for core in &p.cores {
        eventually(
            "the newcomer learns every holder from the list",
            Duration::from_secs(30),
            || listed_connected(&second, &p.joe, &core.id),
        );
    }
    let (status, body) = call(&second, &p.joe, &p.cores[11].id, "digitalwrite", "D2,HIGH");
    assert_eq!(status, 200, "{body}");
    assert!(core_result(&p.cores[11], "digitalwrite", "D2,HIGH").is_some());
    for node in [&first, &second] {
        let log = node.log();
        assert!(
            !log.contains("panicked") && !log.contains("malformed"),
            "{log}"
        );
    }
}

/// The next message of a subscription (the test's own client).
async fn futures_next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *sub), cx))
        .await
        .expect("the subscription stays open")
}
