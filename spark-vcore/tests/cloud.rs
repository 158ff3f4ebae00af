//! Virtual Cores against spark-protocol's `CloudConnection` over real TCP sockets, both sides on the tokio driver:
//! the Core runs exactly as the `spark-vcore` binary runs it ([`run`]: boot, connect, reset after an update,
//! reconnect). The cloud calls `digitalwrite`, reads a variable, receives the patch-version event, flashes the
//! deep update with the Flasher, and sees the Core come back with the OTA-success flag and SP 1.28; a Core whose key
//! the cloud does not know is refused.

mod common;

use common::{TempDir, server_key};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_cc3000::ServicePack;
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::session::cloud::{
    self, CloudConnection, CloudEvent, DeviceId, OtaEvent, OtaOptions, VariableValue,
};
use spark_protocol::session::driver::DriverError;
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
use spark_protocol::wire::describe::VarType;
use spark_vcore::VirtualCore;
use spark_vcore::image::synthetic_deep_update;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig, SharedCore, Status, run};
use spark_vcore::tinker::{Bank, Pin};
use tokio::net::{TcpListener, TcpStream};

type Keys = BTreeMap<DeviceId, RustCryptoPublicKey>;
type CloudDriver =
    Driver<CloudConnection<RustCryptoPrivateKey, Keys, StdRng>, TcpStream, TokioClock>;

async fn accept(listener: &TcpListener, keys: &Keys) -> CloudDriver {
    let (stream, _) = listener.accept().await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut clock = TokioClock::new();
    let now = spark_protocol::session::driver::Clock::now(&mut clock);
    let server = RustCryptoPrivateKey::new(&server_key().as_ref_key()).unwrap();
    let conn = CloudConnection::new(
        now,
        server,
        keys.clone(),
        StdRng::seed_from_u64(5),
        cloud::CloudConfig::default(),
    );
    Driver::with_vec(conn, Tokio(stream), clock)
}

async fn next(cloud: &mut CloudDriver) -> CloudEvent {
    tokio::time::timeout(Duration::from_secs(60), cloud.next_event())
        .await
        .expect("the cloud heard nothing for 60 s")
        .expect("the cloud session ended")
}

fn core_in(dir: &TempDir, sp: ServicePack, id: [u8; 12], der: &[u8]) -> SharedCore {
    let key = RsaPrivateKey::from_der(der).unwrap();
    let mut vc = VirtualCore::create_with_identity(&dir.0, sp, id, key).unwrap();
    vc.set_temperature(19.5);
    Arc::new(Mutex::new(vc))
}

fn start(
    core: &SharedCore,
    address: String,
    log: &Arc<Mutex<Vec<Status>>>,
) -> tokio::task::JoinHandle<()> {
    let sink = log.clone();
    let config = CloudConfig {
        address,
        server_key: server_key().public_key(),
        faults: LinkFaults::RELIABLE,
        seed: 1,
        reconnect_delay: Duration::from_millis(100),
    };
    let core = core.clone();
    tokio::spawn(async move {
        let report = Box::new(move |s: Status| sink.lock().unwrap().push(s));
        run(core, config, report).await.unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_calls_reads_hears_the_patch_version_and_flashes_the_deep_update() {
    let der = common::device_key().to_pkcs1_der();
    let image = synthetic_deep_update(ServicePack::SP_1_28);
    let dir = TempDir::new();
    let id = [0x31; 12];
    let core = core_in(&dir, ServicePack::SP_1_24, id, &der);
    let device_pub = {
        let c = core.lock().unwrap();
        RustCryptoPublicKey::new(&c.key().public_key().as_ref_key()).unwrap()
    };
    let keys: Keys = [(id.into(), device_pub)].into_iter().collect();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let log = Arc::default();
    let device = start(&core, address, &log);

    let mut cloud = accept(&listener, &keys).await;
    let CloudEvent::Connected(info) = next(&mut cloud).await else {
        panic!("expected Connected first");
    };
    assert_eq!(info.device_id, id);
    assert!(!info.ota_succeeded());
    let CloudEvent::Published(event) = next(&mut cloud).await else {
        panic!("expected the patch-version event");
    };
    assert_eq!(event.name, b"spark/cc3000-patch-version");
    assert_eq!(event.data.as_deref(), Some(&b"1.24"[..]));
    assert!(event.private);
    assert_eq!(event.ttl, 60);

    let now = cloud.now();
    let call = cloud
        .connection_mut()
        .call_function(now, b"digitalwrite", b"D7,HIGH")
        .unwrap();
    match next(&mut cloud).await {
        CloudEvent::FunctionReturned { request, result } => {
            assert_eq!(request, call);
            assert_eq!(result, Ok(1));
        }
        other => panic!("expected the function return, got {other:?}"),
    }
    assert!(
        core.lock()
            .unwrap()
            .tinker()
            .pin(Pin::new(Bank::D, 7).unwrap())
            .level
    );

    let now = cloud.now();
    let _ = cloud
        .connection_mut()
        .read_variable(now, b"cc3000", VarType::String)
        .unwrap();
    match next(&mut cloud).await {
        CloudEvent::VariableRead { result, .. } => {
            assert_eq!(result, Ok(VariableValue::String("1.24".into())));
        }
        other => panic!("expected the variable, got {other:?}"),
    }
    let now = cloud.now();
    let _ = cloud
        .connection_mut()
        .read_variable(now, b"temperature", VarType::Double)
        .unwrap();
    match next(&mut cloud).await {
        CloudEvent::VariableRead { result, .. } => {
            assert_eq!(result, Ok(VariableValue::Double(19.5)));
        }
        other => panic!("expected the variable, got {other:?}"),
    }

    // The Flasher sends the deep update (the original server's stop-and-wait, last chunk padded).
    let now = cloud.now();
    let ota = cloud
        .connection_mut()
        .start_ota(now, image.clone(), OtaOptions::default())
        .unwrap();
    let report = loop {
        match next(&mut cloud).await {
            CloudEvent::Ota {
                request,
                event: OtaEvent::Finished(result),
            } => {
                assert_eq!(request, ota);
                break result.expect("the transfer succeeds");
            }
            CloudEvent::Ota { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(report.image_len, image.len());
    // The Core resets: this connection ends.
    loop {
        match tokio::time::timeout(Duration::from_secs(60), cloud.next_event()).await {
            Ok(Err(DriverError::Session(_) | DriverError::Io(_))) => break,
            Ok(Ok(_)) => {}
            other => panic!("expected the device to go away, got {other:?}"),
        }
    }

    // It comes back patched, saying the update succeeded.
    let mut cloud = accept(&listener, &keys).await;
    let CloudEvent::Connected(info) = next(&mut cloud).await else {
        panic!("expected Connected first");
    };
    assert!(info.ota_succeeded());
    let CloudEvent::Published(event) = next(&mut cloud).await else {
        panic!("expected the patch-version event");
    };
    assert_eq!(event.data.as_deref(), Some(&b"1.28"[..]));
    {
        let c = core.lock().unwrap();
        assert_eq!(c.cc3000().version(), ServicePack::SP_1_28);
        // What the Core runs is the image, byte for byte (the padding of the last chunk is not part of it).
        assert_eq!(c.firmware_image().unwrap().as_deref(), Some(&image[..]));
    }
    let now = cloud.now();
    let _ = cloud
        .connection_mut()
        .call_function(now, b"digitalread", b"D0")
        .unwrap();
    assert!(matches!(
        next(&mut cloud).await,
        CloudEvent::FunctionReturned { result: Ok(0), .. }
    ));
    device.abort();
    let log = log.lock().unwrap();
    assert!(log.iter().any(|s| matches!(
        s,
        Status::Booted(b) if b.patched == Some((ServicePack::SP_1_24, ServicePack::SP_1_28))
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_core_is_refused_and_keeps_retrying() {
    let der = common::device_key().to_pkcs1_der();
    let dir = TempDir::new();
    let core = core_in(&dir, ServicePack::SP_1_28, [0x77; 12], &der);
    let keys = Keys::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let log: Arc<Mutex<Vec<Status>>> = Arc::default();
    let device = start(&core, address, &log);
    for _ in 0..2 {
        let mut cloud = accept(&listener, &keys).await;
        let ended = tokio::time::timeout(Duration::from_secs(60), cloud.next_event())
            .await
            .expect("the cloud decides within 60 s");
        assert!(
            matches!(
                ended,
                Err(DriverError::Session(
                    spark_protocol::session::SessionError::UnknownDevice
                ))
            ),
            "{ended:?}"
        );
    }
    device.abort();
    let log = log.lock().unwrap();
    assert!(!log.iter().any(|s| matches!(s, Status::Connected { .. })));
    assert!(log.iter().any(|s| matches!(s, Status::Disconnected { .. })));
}
