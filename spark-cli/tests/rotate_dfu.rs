//! Moving a Core to a rotated server key over USB: `spark keys server` writes the key file the cloud serves after
//! `rotate_server_key` (and the cloud's address) to spark-dfu's simulated Core over DFU; a Core holding what was
//! written then connects to the cloud on the new key, while the old key still works until it is retired.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use spark_cloud::devices::{self, LiveHub};
use spark_cloud::hub::DeviceHub;
use spark_cloud::rotation::KeyUse;
use spark_cloud::{self as cloud, Config, system_rng};
use spark_dfu::platform::server_key::{KeyFormat, ServerAddress, ServerKeyImage};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::session::Instant;
use spark_protocol::session::device::{BufferSink, DeviceConfig, DeviceConnection, RsaHandshake};
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};

const DEVICE_KEY: &str = include_str!("fixtures/device_a.pem");
const DEV: &str = "53ff6c065075535119511687";

/// Runs `spark` against the simulated Core whose flash lives in `sim`.
fn spark(dir: &Path, sim: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_spark"))
        .current_dir(dir)
        .env("SPARK_DFU_SIM", sim)
        .env_remove("SPARK_DFU_SIM_FAULT")
        .env_remove("SPARK_DFU_SIM_MODE")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The server-key image the simulated Core holds at 0x1000 of its external flash.
fn server_key_image(sim: &Path) -> Vec<u8> {
    let state = std::fs::read(sim).unwrap();
    assert_eq!(&state[..8], b"SPKSIM01");
    let off = 8 + 0x2_0000 + 0x1000;
    state[off..off + KeyFormat::CORE.len].to_vec()
}

/// A Core holding `server` as the server's key runs until its session ends.
async fn run_core(addr: SocketAddr, server: RsaPublicKey) -> String {
    let device_key = RsaPrivateKey::from_pem(DEVICE_KEY).unwrap();
    let hs = RsaHandshake::new(
        RustCryptoPrivateKey::new(&device_key.as_ref_key()).unwrap(),
        RustCryptoPublicKey::new(&server.as_ref_key()).unwrap(),
        system_rng(),
    );
    let flash: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let id: [u8; 12] = spark_cloud::encoding::unhex(DEV)
        .unwrap()
        .try_into()
        .unwrap();
    let dev = DeviceConnection::new(
        Instant::ZERO,
        DeviceConfig::new(id),
        hs,
        BufferSink::new(flash),
    );
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut d = Driver::with_vec(dev, Tokio(stream), TokioClock::new());
    loop {
        if let Err(e) = d.next_event().await {
            return format!("{e:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_moved_over_dfu_reconnects_on_the_rotated_key() {
    let temp = tempfile::tempdir().unwrap();
    let state_dir = temp.path().join("cloud");
    let config = Config {
        dir: state_dir.clone(),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_bits: 2048,
    };
    let hub = LiveHub::new();
    let cloud = cloud::open(&config, Arc::clone(&hub) as Arc<dyn DeviceHub>).unwrap();
    let device_pub = RsaPrivateKey::from_pem(DEVICE_KEY).unwrap().public_key();
    cloud
        .state()
        .expect("the embedded store")
        .provision_durable(DEV, &device_pub, None)
        .await
        .unwrap();
    let (device_addr, task) = devices::listen(
        Arc::clone(&cloud),
        Arc::clone(&hub),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let old = cloud
        .state()
        .expect("the embedded store")
        .server_key()
        .public_key();
    cloud.rotate_server_key().unwrap();

    // The Core is moved over USB with the key file the cloud now serves.
    let sim = temp.path().join("core.sim");
    let served = state_dir.join(spark_cloud::state::SERVER_PUBLIC_KEY_FILE);
    let port = device_addr.port().to_string();
    let served = served.to_str().unwrap();
    spark(
        temp.path(),
        &sim,
        &[
            "keys",
            "server",
            served,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
        ],
    );
    let image = server_key_image(&sim);
    let written = ServerKeyImage::parse(&image, KeyFormat::CORE).unwrap();
    assert_eq!(written.address, Some(ServerAddress::Ipv4([127, 0, 0, 1])));
    assert_eq!(written.port, Some(device_addr.port()));
    let moved = RsaPublicKey::from_der(written.der).unwrap();
    assert_ne!(moved, old);

    // The Core, on what was written, connects and is listed on the current key.
    let core = tokio::spawn(run_core(device_addr, moved));
    for _ in 0..6000 {
        if hub.is_connected(DEV.parse().unwrap()) {
            break;
        }
        assert!(!core.is_finished(), "the moved Core was refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(hub.is_connected(DEV.parse().unwrap()));
    assert_eq!(cloud.key_use(DEV), Some(KeyUse::Current));
    core.abort();
    task.abort();
}
