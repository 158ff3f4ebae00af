//! Two nodes on a real `nats-server`, in this process: a function call's round trip to a virtual Core held by the
//! other node against the same call on the node that holds it (the single-node reference, same run), and events
//! published on one node to one subscriber on the other against events to one subscriber of a lone node's bus. Prints median and p99 of both calls and the
//! ratios; criterion measures the same four cases.

#[path = "../tests/support/nats.rs"]
mod nats;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spark_cc3000::ServicePack;
use spark_cloud::cluster::{ClusterConfig, ClusterHub};
use spark_cloud::devices::{self, LiveHub};
use spark_cloud::events::{Event, EventBus, Filter, Publisher, SUBSCRIBER_QUEUE, Scope};
use spark_cloud::hub::DeviceHub;
use spark_cloud::{self as cloud, Cloud, Config};
use spark_protocol::DeviceId;
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_vcore::VirtualCore;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig, Status, run};

const CORE: [u8; 12] = [
    0x53, 0xff, 0x6c, 0x06, 0x50, 0x75, 0x53, 0x51, 0x19, 0x51, 0x16, 0x87,
];
const CALLS: usize = 2000;
const EVENTS: u64 = 20_000;

struct Node {
    cloud: Arc<Cloud>,
    hub: Arc<ClusterHub>,
    device: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

async fn node(dir: &Path, url: &str, name: &str, key: &RsaPrivateKey) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("default_key.pem"),
        include_str!("../tests/fixtures/server_key_1024.pem"),
    )
    .unwrap();
    let local = LiveHub::new();
    let hub = ClusterHub::connect(ClusterConfig::new(url, name), Arc::clone(&local))
        .await
        .unwrap();
    let config = Config {
        dir: dir.to_owned(),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_bits: 1024,
    };
    let cloud = cloud::open(&config, Arc::clone(&hub) as Arc<dyn DeviceHub>).unwrap();
    hub.start(cloud.bus()).await.unwrap();
    let id = DeviceId::from_bytes(CORE).to_string();
    cloud
        .state()
        .expect("the embedded store")
        .provision(&id, &key.public_key(), None)
        .unwrap();
    let (device, task) = devices::listen(
        Arc::clone(&cloud),
        local,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    Node {
        cloud,
        hub,
        device,
        _task: task,
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Publishes `EVENTS` events on `from` (at most half a subscriber queue ahead) until `counter` has seen them all.
fn events_through(from: &EventBus, counter: &AtomicU64) -> Duration {
    let event = Event::new(
        "temperature",
        Some("21.5"),
        60,
        true,
        SystemTime::now(),
        Publisher::device(&DeviceId::from_bytes(CORE).to_string(), Some("bench")),
    );
    let base = counter.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut sent = 0;
    while sent < EVENTS {
        let outstanding = sent - (counter.load(Ordering::Relaxed) - base);
        if outstanding < (SUBSCRIBER_QUEUE / 2) as u64 {
            from.publish(&event);
            sent += 1;
        } else {
            std::thread::yield_now();
        }
    }
    while counter.load(Ordering::Relaxed) - base < EVENTS {
        std::thread::yield_now();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    if std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
        && !Path::new("/usr/sbin/nats-server").is_file()
    {
        eprintln!(
            "cluster_bus: nats-server is not installed (Debian nats-server); nothing measured"
        );
        return;
    }
    let server = nats::NatsServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let key = RsaPrivateKey::from_pem(include_str!("../tests/fixtures/device_a.pem")).unwrap();
    let (a, b, _core) = rt.block_on(async {
        let a = node(&root.path().join("a"), &server.url(), "a", &key).await;
        let b = node(&root.path().join("b"), &server.url(), "b", &key).await;
        let core = VirtualCore::create_with_identity(
            &root.path().join("core"),
            ServicePack::SP_1_28,
            CORE,
            key.clone(),
        )
        .unwrap();
        let task = tokio::spawn(run(
            Arc::new(Mutex::new(core)),
            CloudConfig {
                address: a.device.to_string(),
                server_key: a
                    .cloud
                    .server_keys()
                    .expect("the server keys")
                    .current
                    .public_key(),
                faults: LinkFaults::RELIABLE,
                seed: 1,
                reconnect_delay: Duration::from_millis(100),
            },
            Box::new(|_: Status| {}),
        ));
        // The Core answers on both nodes before the measurement starts.
        for hub in [&a.hub, &b.hub] {
            while hub
                .call(DeviceId::from_bytes(CORE), "digitalread", "D7")
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (a, b, task)
    });
    let id = DeviceId::from_bytes(CORE);

    let sample = |hub: &ClusterHub| {
        (0..CALLS)
            .map(|_| {
                let start = Instant::now();
                rt.block_on(hub.call(id, "digitalread", "D7")).unwrap();
                start.elapsed()
            })
            .collect::<Vec<_>>()
    };
    let (same_median, same_p99) = percentiles(sample(&a.hub));
    let (cross_median, cross_p99) = percentiles(sample(&b.hub));
    println!(
        "call round trip, {CALLS} calls each: same node median {same_median:?} p99 {same_p99:?}; \
         cross node median {cross_median:?} p99 {cross_p99:?}; ratio cross/same median {:.2} p99 {:.2}",
        cross_median.as_secs_f64() / same_median.as_secs_f64(),
        cross_p99.as_secs_f64() / same_p99.as_secs_f64(),
    );

    let mut group = c.benchmark_group("cluster_call_round_trip");
    group.bench_function("same_node", |bch| {
        bch.iter(|| rt.block_on(a.hub.call(id, "digitalread", "D7")).unwrap())
    });
    group.bench_function("cross_node", |bch| {
        bch.iter(|| rt.block_on(b.hub.call(id, "digitalread", "D7")).unwrap())
    });
    group.finish();

    // The reference: one node's bus, no relay. Then a subscriber on node b for events published on node a.
    let alone = EventBus::new();
    let count_on = |bus: &Arc<EventBus>| {
        let counter = Arc::new(AtomicU64::new(0));
        let mut sub = bus.subscribe(Filter {
            user: "bench".into(),
            scope: Scope::All,
            prefix: String::new(),
        });
        let count = Arc::clone(&counter);
        rt.spawn(async move {
            while sub.recv().await.is_some() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        counter
    };
    let alone_count = count_on(&alone);
    let b_count = count_on(b.cloud.bus());
    let a_bus = Arc::clone(a.cloud.bus());
    let single = events_through(&alone, &alone_count);
    let across = events_through(&a_bus, &b_count);
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    println!(
        "events to one subscriber, {EVENTS} events: same node {:.0}/s, across nodes {:.0}/s; ratio across/same {:.2}",
        rate(single),
        rate(across),
        rate(across) / rate(single),
    );
    let mut group = c.benchmark_group("cluster_events_to_one_subscriber");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.bench_function("same_node", |bch| {
        bch.iter_custom(|iters| {
            (0..iters)
                .map(|_| events_through(&alone, &alone_count))
                .sum()
        })
    });
    group.bench_function("across_nodes", |bch| {
        bch.iter_custom(|iters| (0..iters).map(|_| events_through(&a_bus, &b_count)).sum())
    });
    group.finish();
    drop((a, b));
}

criterion_group!(benches, bench);
criterion_main!(benches);
