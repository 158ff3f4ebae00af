//! A function call's round trip through the device hub (what `POST /v1/devices/:id/:function` waits for), to a
//! virtual device over UDP (DTLS 1.2, AES-128-CCM-8, CoAP confirmable messages) against the reference measured in
//! the same run: the same call to a virtual Core over TCP (AES-128-CBC). Both devices run in this process, on
//! loopback, as `spark-vcore` and `spark-vcore --udp` run them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use spark_cc3000::ServicePack;
use spark_cloud::devices::{self, LiveHub};
use spark_cloud::hub::DeviceHub;
use spark_cloud::udp::{UdpLimits, listen_udp};
use spark_cloud::{self as cloud, Config};
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_vcore::VirtualCore;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig, Status, run};
use spark_vcore::udp::{DatagramFaults, UdpCloudConfig, load_or_create_udp_key, run_udp};

const TCP_CORE: [u8; 12] = [
    0x53, 0xff, 0x6c, 0x06, 0x50, 0x75, 0x53, 0x51, 0x19, 0x51, 0x16, 0x87,
];
const UDP_DEVICE: [u8; 12] = [
    0x2a, 0x00, 0x1c, 0x00, 0x0d, 0x47, 0x34, 0x35, 0x36, 0x37, 0x36, 0x33,
];

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cloud");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("default_key.pem"),
        include_str!("../tests/fixtures/server_key_1024.pem"),
    )
    .unwrap();
    let device_key =
        RsaPrivateKey::from_pem(include_str!("../tests/fixtures/device_a.pem")).unwrap();
    let (hub, tcp_id, udp_id, _tasks) = rt.block_on(async {
        let config = Config {
            dir: dir.clone(),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            key_bits: 1024,
        };
        let hub = LiveHub::new();
        let cloud = cloud::open(&config, Arc::clone(&hub) as Arc<dyn DeviceHub>).unwrap();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let (tcp_addr, tcp_task) = devices::listen(Arc::clone(&cloud), Arc::clone(&hub), loopback)
            .await
            .unwrap();
        let (udp_addr, udp_task) = listen_udp(
            Arc::clone(&cloud),
            Arc::clone(&hub),
            loopback,
            UdpLimits::DEFAULT,
        )
        .await
        .unwrap();

        let tcp_core = VirtualCore::create_with_identity(
            &root.path().join("tcp"),
            ServicePack::SP_1_28,
            TCP_CORE,
            device_key.clone(),
        )
        .unwrap();
        let udp_core = VirtualCore::create_with_identity(
            &root.path().join("udp"),
            ServicePack::SP_1_28,
            UDP_DEVICE,
            device_key.clone(),
        )
        .unwrap();
        let tcp_id = tcp_core.id_hex().to_owned();
        let udp_id = udp_core.id_hex().to_owned();
        cloud
            .state()
            .expect("the embedded store")
            .provision(&tcp_id, &device_key.public_key(), None)
            .unwrap();
        let udp_key = load_or_create_udp_key(udp_core.dir()).unwrap();
        cloud
            .state()
            .expect("the embedded store")
            .provision_udp(&udp_id, &udp_key.public_key(), None)
            .unwrap();

        let quiet = || Box::new(|_: Status| {}) as Box<dyn FnMut(Status) + Send>;
        let tcp = tokio::spawn(run(
            Arc::new(Mutex::new(tcp_core)),
            CloudConfig {
                address: tcp_addr.to_string(),
                server_key: cloud
                    .state()
                    .expect("the embedded store")
                    .server_key()
                    .public_key(),
                faults: LinkFaults::RELIABLE,
                seed: 1,
                reconnect_delay: Duration::from_millis(100),
            },
            quiet(),
        ));
        let udp = tokio::spawn(run_udp(
            Arc::new(Mutex::new(udp_core)),
            UdpCloudConfig {
                address: udp_addr.to_string(),
                server_key: cloud
                    .state()
                    .expect("the embedded store")
                    .udp_server_key()
                    .public_key(),
                faults: DatagramFaults::RELIABLE,
                seed: 1,
                reconnect_delay: Duration::from_millis(100),
            },
            quiet(),
        ));
        // Both answer a call before the measurement starts.
        for id in [&tcp_id, &udp_id] {
            loop {
                if hub
                    .call(id.parse().unwrap(), "digitalread", "D7")
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (hub, tcp_id, udp_id, (tcp, udp, tcp_task, udp_task))
    });

    let tcp_id: spark_protocol::DeviceId = tcp_id.parse().unwrap();
    let udp_id: spark_protocol::DeviceId = udp_id.parse().unwrap();
    let mut group = c.benchmark_group("call_round_trip");
    group.bench_function("tcp_core", |b| {
        b.iter(|| rt.block_on(hub.call(tcp_id, "digitalread", "D7")).unwrap())
    });
    group.bench_function("udp_device", |b| {
        b.iter(|| rt.block_on(hub.call(udp_id, "digitalread", "D7")).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
