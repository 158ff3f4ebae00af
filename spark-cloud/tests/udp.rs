//! End to end over UDP: the local cloud with its UDP listener (`--udp-listen`, here on a loopback port), virtual
//! Electron-class devices run exactly as `spark-vcore --udp` runs them (DTLS 1.2 with a P-256 key, the session in
//! datagram mode) and spark-api's client, over real sockets. The device's key is provisioned through the REST API;
//! then functions, variables, events both ways and an OTA update (over a link that loses, repeats and reorders
//! datagrams) go through the same REST routes as for a TCP Core. A device whose key is registered to no one is
//! refused.

#[path = "support/e2e_env.rs"]
mod env;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use env::{Env, TestCore, app_image, within};
use spark_api::{FirmwareFile, Publish, VariableValue};
use spark_cc3000::ServicePack;
use spark_cloud::hub::DeviceHub;
use spark_cloud::udp::{UdpLimits, listen_udp};
use spark_vcore::Firmware;
use spark_vcore::flash::OTA_ADDRESS;
use spark_vcore::run::Status;
use spark_vcore::tinker::{Bank, Pin, PinMode};
use spark_vcore::udp::{
    DatagramFaults, UdpCloudConfig, load_or_create_udp_key, run_udp, udp_public_key_pem,
};
use tokio::sync::mpsc;

const ELECTRON_A: [u8; 12] = [
    0x2a, 0x00, 0x1c, 0x00, 0x0d, 0x47, 0x34, 0x35, 0x36, 0x37, 0x36, 0x33,
];
const ELECTRON_B: [u8; 12] = [
    0x3f, 0x00, 0x2e, 0x00, 0x05, 0x51, 0x34, 0x35, 0x36, 0x37, 0x36, 0x33,
];

/// The cloud's UDP listener on a free loopback port.
async fn udp_listener(env: &Env) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    listen_udp(
        Arc::clone(&env.running.cloud),
        Arc::clone(&env.hub),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        UdpLimits::DEFAULT,
    )
    .await
    .unwrap()
}

/// A running UDP device: its statuses and its task.
struct Running {
    status: mpsc::UnboundedReceiver<Status>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&Status) -> Option<T>,
    ) -> (T, Vec<Status>) {
        let mut skipped = Vec::new();
        loop {
            let status = within(self.status.recv())
                .await
                .expect("the device task ended");
            if let Some(found) = pick(&status) {
                return (found, skipped);
            }
            skipped.push(status);
        }
    }
}

/// Runs `core` over UDP as `spark-vcore --udp` does, against `udp` with `faults`.
fn run_device(
    env: &Env,
    core: &TestCore,
    udp: SocketAddr,
    faults: DatagramFaults,
    seed: u64,
) -> Running {
    let (tx, status) = mpsc::unbounded_channel();
    let config = UdpCloudConfig {
        address: udp.to_string(),
        server_key: env
            .running
            .cloud
            .state()
            .expect("the embedded store")
            .udp_server_key()
            .public_key(),
        faults,
        seed,
        reconnect_delay: Duration::from_millis(200),
    };
    let shared = core.core.clone();
    let task = tokio::spawn(async move {
        let report = Box::new(move |s: Status| {
            let _ = tx.send(s);
        });
        run_udp(shared, config, report).await.unwrap();
    });
    Running { status, task }
}

/// Makes the device's P-256 key and provisions it through spark-api (the user becomes its owner).
async fn provision_udp(env: &Env, core: &TestCore) {
    let key = load_or_create_udp_key(core.path()).unwrap();
    env.api
        .send_public_key(
            &core.id,
            &udp_public_key_pem(&key.public_key()),
            Some("ecc"),
        )
        .await
        .unwrap();
}

fn connected(s: &Status) -> Option<()> {
    matches!(s, Status::Connected { .. }).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_device_is_listed_called_read_and_exchanges_events_through_the_api() {
    let env = Env::start().await;
    let (udp, _listener) = udp_listener(&env).await;
    let core = env.new_core(ELECTRON_A, ServicePack::SP_1_24);
    {
        let mut c = core.core.lock().unwrap();
        assert!(c.subscribe("fleet"));
        assert!(c.publish_on_connect("udp/hello", "electron"));
    }
    provision_udp(&env, &core).await;
    let mut device_events = env
        .stream(|api| api.subscribe_device(&core.id, Some("udp/")))
        .await;
    let mut device = run_device(&env, &core, udp, DatagramFaults::RELIABLE, 1);
    device.wait_for(connected).await;

    // What the device publishes reaches the API's event stream.
    let (hello, _) = device_events.next_named("udp/hello").await;
    assert_eq!(hello.data.as_deref(), Some("electron"));
    assert_eq!(hello.coreid.as_deref(), Some(core.id.as_str()));

    // Listed as connected, with Tinker's functions.
    let api = &env.api;
    let listed = api.list_devices().await.unwrap();
    let mine = listed.iter().find(|d| d.id == core.id).expect("listed");
    assert!(mine.connected);
    // Its Hello was Device OS's extended one: an Electron.
    assert_eq!(mine.platform_id, Some(10));
    // Its handshake used no RSA server key: nothing to report about the RSA key's rotation.
    assert_eq!(mine.server_key, None);
    let info = api.device(&core.id).await.unwrap();
    assert!(info.functions.unwrap().contains(&"digitalwrite".to_owned()));

    // A function call drives the device's pin; a variable read answers the model's value.
    let r = within(api.call_function(&core.id, "digitalwrite", "D7,HIGH"))
        .await
        .unwrap();
    assert_eq!(r.return_value, 1);
    let d7 = Pin::new(Bank::D, 7).unwrap();
    let state = core.core.lock().unwrap().tinker().pin(d7);
    assert_eq!(state.mode, PinMode::Output);
    assert!(state.level);
    core.core.lock().unwrap().set_temperature(-4.25);
    let v = within(api.variable(&core.id, "temperature"))
        .await
        .unwrap()
        .result;
    assert_eq!(v, VariableValue::Double(-4.25));

    // An event published through the API reaches the subscribed device; one it did not subscribe to does not.
    api.publish(&Publish::new("weather").data("rain"))
        .await
        .unwrap();
    api.publish(&Publish::new("fleet/update").data("now"))
        .await
        .unwrap();
    let (event, skipped) = device
        .wait_for(|s| match s {
            Status::EventReceived { name, data, .. } => Some((name.clone(), data.clone())),
            _ => None,
        })
        .await;
    assert_eq!(event, ("fleet/update".into(), "now".into()));
    assert!(
        !skipped
            .iter()
            .any(|s| matches!(s, Status::EventReceived { .. })),
        "{skipped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_kib_image_over_a_lossy_udp_link_is_what_the_device_runs_byte_for_byte() {
    let env = Env::start().await;
    let (udp, _listener) = udp_listener(&env).await;
    let core = env.new_core(ELECTRON_A, ServicePack::SP_1_24);
    provision_udp(&env, &core).await;
    let mut status_events = env
        .stream(|api| api.subscribe_device(&core.id, Some("spark/flash/status")))
        .await;
    // 5% of datagrams lost, 5% repeated and 5% reordered, both ways.
    let mut device = run_device(&env, &core, udp, DatagramFaults::each(5), 0x5eed);
    device.wait_for(connected).await;

    let image = app_image(100 * 1024, 0x0dd_ba11);
    let started = env
        .api
        .flash_binary(&core.id, &FirmwareFile::new("app.bin", image.clone()))
        .await
        .unwrap();
    assert_eq!(started.status.as_deref(), Some("Update started"));

    let (_, skipped) = device
        .wait_for(|s| match s {
            Status::UpdateFinished { size } => Some(*size),
            _ => None,
        })
        .await;
    assert!(
        !skipped
            .iter()
            .any(|s| matches!(s, Status::UpdateFailed { .. })),
        "{skipped:?}"
    );
    let (installed, _) = device
        .wait_for(|s| match s {
            Status::Booted(report) => Some(report.installed.clone()),
            _ => None,
        })
        .await;
    let expected = Firmware::Application {
        len: image.len() as u32,
        crc32: spark_protocol::wire::ota::crc32(&image),
        service_pack: None,
    };
    assert_eq!(installed, Some(expected.clone()));
    let (ota_succeeded, _) = device
        .wait_for(|s| match s {
            Status::Connected { ota_succeeded, .. } => Some(*ota_succeeded),
            _ => None,
        })
        .await;
    assert!(ota_succeeded);

    // The cloud says so too, and the bytes are the file's: in the download area and in what the device runs.
    loop {
        let e = status_events.next_event().await;
        let data = e.data.unwrap_or_default();
        if data.starts_with("success") || data.starts_with("failed") {
            assert_eq!(data, "success app.bin");
            break;
        }
    }
    let flash = std::fs::read(core.path().join("external-flash.bin")).unwrap();
    let at = OTA_ADDRESS as usize;
    assert!(
        flash[at..at + image.len()] == image[..],
        "external flash differs"
    );
    let c = core.core.lock().unwrap();
    assert!(
        c.firmware_image().unwrap().as_deref() == Some(&image[..]),
        "the installed firmware differs"
    );
    assert_eq!(c.firmware(), &expected);
    assert!(!c.has_staged_image());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_device_whose_key_is_registered_to_no_one_is_refused() {
    let env = Env::start().await;
    let (udp, _listener) = udp_listener(&env).await;
    let known = env.new_core(ELECTRON_A, ServicePack::SP_1_24);
    provision_udp(&env, &known).await;
    // B makes its own key, which no one provisioned.
    let stranger = env.new_core(ELECTRON_B, ServicePack::SP_1_24);
    load_or_create_udp_key(stranger.path()).unwrap();
    let mut device = run_device(&env, &stranger, udp, DatagramFaults::RELIABLE, 2);
    // The handshake completes (the key is proven), then the cloud closes the association.
    let (reason, skipped) = device
        .wait_for(|s| match s {
            Status::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(
        !skipped.iter().any(|s| connected(s).is_some()),
        "{skipped:?}"
    );
    assert!(
        reason.contains("closed") || reason.contains("lert"),
        "{reason}"
    );
    assert!(!env.hub.is_connected(stranger.id.parse().unwrap()));
    let listed = env.api.list_devices().await.unwrap();
    assert!(listed.iter().all(|d| d.id != stranger.id));
    // The provisioned device still gets in.
    let mut ok = run_device(&env, &known, udp, DatagramFaults::RELIABLE, 3);
    ok.wait_for(connected).await;
    assert!(env.hub.is_connected(known.id.parse().unwrap()));
}

/// A device that ends its session says so (a DTLS close_notify, as the load tool's devices do): the cloud, whose
/// association parks once half a second of quiet left nothing pending, wakes for it, lists the device offline at
/// once, and a call to it fails at once rather than waiting the 30 s call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_closes_its_session_is_offline_at_once() {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use spark_protocol::dtls::{self, ClientConfig};
    use spark_protocol::session::Instant;
    use spark_protocol::session::datagram::DatagramSession;
    use spark_protocol::session::device::{
        DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware,
    };

    let env = Env::start().await;
    let (udp, _listener) = udp_listener(&env).await;
    let core = env.new_core(ELECTRON_B, ServicePack::SP_1_24);
    provision_udp(&env, &core).await;
    let key = load_or_create_udp_key(core.path()).unwrap();
    let server_key = env
        .running
        .cloud
        .state()
        .expect("the embedded store")
        .udp_server_key()
        .public_key();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(udp).await.unwrap();
    let start = std::time::Instant::now();
    let clock = || Instant::from_millis(u64::try_from(start.elapsed().as_millis()).unwrap());
    let mut rng = StdRng::seed_from_u64(61);
    let dtls = dtls::Connection::client(clock(), ClientConfig::new(key, server_key), &mut rng);
    let session =
        DeviceConnection::datagram(clock(), DeviceConfig::new(ELECTRON_B), NoFirmware, &mut rng);
    let mut device: DatagramSession<_, StdRng> = DatagramSession::new(session, dtls, rng);
    let mut buf = vec![0u8; 4096];
    let mut out = vec![0u8; device.max_transmit_len()];
    // Until the session is up: the DTLS handshake, then both Hellos.
    within(async {
        loop {
            device.handle_timeout(clock()).unwrap();
            let mut up = false;
            while let Some(e) = device.poll_event() {
                up |= e == DeviceEvent::Connected;
            }
            while let Some(n) = device.poll_transmit(clock(), &mut out).unwrap() {
                socket.send(&out[..n]).await.unwrap();
            }
            if up {
                return;
            }
            let wait = device
                .poll_timeout()
                .map_or(Duration::from_millis(100), |t| t.saturating_duration_since(clock()));
            tokio::select! {
                n = socket.recv(&mut buf) => device.handle_datagram(clock(), &buf[..n.unwrap()]).unwrap(),
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
    .await;
    let listed = |env: &Env| {
        let api = env.api.clone();
        let id = core.id.clone();
        async move {
            let devices = api.list_devices().await.unwrap();
            devices.iter().any(|d| d.id == id && d.connected)
        }
    };
    let t = std::time::Instant::now();
    while !listed(&env).await {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "never listed connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Quiet for a moment (the cloud's association parks), answering whatever the cloud still asks.
    let quiet = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < quiet {
        device.handle_timeout(clock()).unwrap();
        while device.poll_event().is_some() {}
        while let Some(n) = device.poll_transmit(clock(), &mut out).unwrap() {
            socket.send(&out[..n]).await.unwrap();
        }
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), socket.recv(&mut buf)).await
        {
            device.handle_datagram(clock(), &buf[..n]).unwrap();
        }
    }
    // The device ends its session with a close_notify.
    device.close(clock());
    let mut sent = 0;
    while let Ok(Some(n)) = device.dtls_mut().poll_transmit(&mut out) {
        socket.send(&out[..n]).await.unwrap();
        sent += 1;
    }
    assert_eq!(sent, 1, "one close_notify");
    let t = std::time::Instant::now();
    while listed(&env).await {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still listed connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let call = std::time::Instant::now();
    assert!(
        env.api
            .call_function(&core.id, "digitalwrite", "D7,HIGH")
            .await
            .is_err()
    );
    assert!(
        call.elapsed() < Duration::from_secs(5),
        "the call waited {:?}",
        call.elapsed()
    );
}
