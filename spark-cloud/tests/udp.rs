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

/// A UDP device driven by hand (DTLS 1.2 on its P-256 key, the device session in datagram mode, over a socket of
/// its own), so that a test says when it sends and when it falls silent. It registers one function, `f`, and
/// answers every call to it with [`RAW_RESULT`].
struct RawDevice {
    socket: tokio::net::UdpSocket,
    session: spark_protocol::session::datagram::DatagramSession<
        spark_protocol::session::device::DeviceConnection<
            spark_protocol::session::device::NoFirmware,
        >,
        rand::rngs::StdRng,
    >,
    start: std::time::Instant,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Calls it answered.
    answered: usize,
}

/// What [`RawDevice`]'s function returns.
const RAW_RESULT: i32 = 42;

impl RawDevice {
    /// Provisions `core`'s key, connects to `udp` and drives the device until its session is up and the cloud
    /// lists it connected.
    async fn connect(
        env: &Env,
        core: &TestCore,
        id: [u8; 12],
        udp: SocketAddr,
        seed: u64,
    ) -> RawDevice {
        use rand::SeedableRng;
        use rand::rngs::StdRng;
        use spark_protocol::dtls::{self, ClientConfig};
        use spark_protocol::session::datagram::DatagramSession;
        use spark_protocol::session::device::{DeviceConfig, DeviceConnection, NoFirmware};

        provision_udp(env, core).await;
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
        let now = spark_protocol::session::Instant::from_millis(0);
        let mut rng = StdRng::seed_from_u64(seed);
        let dtls = dtls::Connection::client(now, ClientConfig::new(key, server_key), &mut rng);
        let mut session =
            DeviceConnection::datagram(now, DeviceConfig::new(id), NoFirmware, &mut rng);
        session.register_function(b"f").unwrap();
        let session: DatagramSession<_, StdRng> = DatagramSession::new(session, dtls, rng);
        let out = vec![0u8; session.max_transmit_len()];
        let mut device = RawDevice {
            socket,
            session,
            start,
            buf: vec![0u8; 4096],
            out,
            answered: 0,
        };
        within(async { while !device.step(Duration::from_millis(100)).await {} }).await;
        until_listed(
            env,
            &core.id,
            true,
            Some(&mut device),
            Duration::from_secs(10),
        )
        .await;
        device
    }

    fn now(&self) -> spark_protocol::session::Instant {
        spark_protocol::session::Instant::from_millis(
            u64::try_from(self.start.elapsed().as_millis()).unwrap(),
        )
    }

    /// One round: the session's timers, its events (a call answered), what it sends; then a datagram from the
    /// cloud if one comes within `wait` (or sooner, the session's next deadline). Whether the session came up.
    async fn step(&mut self, wait: Duration) -> bool {
        use spark_protocol::session::device::DeviceEvent;
        let now = self.now();
        self.session.handle_timeout(now).unwrap();
        let mut up = false;
        while let Some(e) = self.session.poll_event() {
            match e {
                DeviceEvent::Connected => up = true,
                DeviceEvent::FunctionCall(call) => {
                    self.session
                        .session_mut()
                        .function_return(call.call, RAW_RESULT)
                        .unwrap();
                    self.answered += 1;
                }
                _ => {}
            }
        }
        self.flush().await;
        let wait = self
            .session
            .poll_timeout()
            .map_or(wait, |t| t.saturating_duration_since(self.now()).min(wait));
        if let Ok(Ok(n)) = tokio::time::timeout(wait, self.socket.recv(&mut self.buf)).await {
            let now = self.now();
            self.session.handle_datagram(now, &self.buf[..n]).unwrap();
        }
        up
    }

    /// Sends whatever the session has to send.
    async fn flush(&mut self) {
        let now = self.now();
        while let Some(n) = self.session.poll_transmit(now, &mut self.out).unwrap() {
            self.socket.send(&self.out[..n]).await.unwrap();
        }
    }

    /// Runs the device for `span`, answering whatever the cloud asks.
    async fn run_for(&mut self, span: Duration) {
        let end = std::time::Instant::now() + span;
        while std::time::Instant::now() < end {
            self.step(Duration::from_millis(20)).await;
        }
    }

    /// Runs the device until `task` ends; its output.
    async fn run_until<T>(&mut self, task: tokio::task::JoinHandle<T>) -> T {
        within(async {
            while !task.is_finished() {
                self.step(Duration::from_millis(20)).await;
            }
        })
        .await;
        task.await.unwrap()
    }
}

/// Whether `id` is listed connected by the REST API.
async fn listed_connected(env: &Env, id: &str) -> bool {
    let devices = env.api.list_devices().await.unwrap();
    devices.iter().any(|d| d.id == id && d.connected)
}

/// Waits (at most `limit`, running `device` meanwhile if there is one) until `id`'s listing is `connected`.
async fn until_listed(
    env: &Env,
    id: &str,
    connected: bool,
    mut device: Option<&mut RawDevice>,
    limit: Duration,
) {
    let t = std::time::Instant::now();
    while listed_connected(env, id).await != connected {
        assert!(
            t.elapsed() < limit,
            "not listed connected={connected} after {limit:?}"
        );
        match device.as_deref_mut() {
            Some(d) => d.run_for(Duration::from_millis(50)).await,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A device that ends its session says so (a DTLS close_notify, as the load tool's devices do): the cloud, whose
/// association parks once half a second of quiet left nothing pending, wakes for it, lists the device offline at
/// once, and a call to it fails at once rather than waiting the 30 s call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_closes_its_session_is_offline_at_once() {
    let env = Env::start().await;
    let (udp, _listener) = udp_listener(&env).await;
    let core = env.new_core(ELECTRON_B, ServicePack::SP_1_24);
    let mut device = RawDevice::connect(&env, &core, ELECTRON_B, udp, 61).await;
    // Quiet for a moment (the cloud's association parks), answering whatever the cloud still asks.
    device.run_for(Duration::from_millis(500)).await;
    // The device ends its session with a close_notify.
    let now = device.now();
    device.session.close(now);
    let mut sent = 0;
    while let Ok(Some(n)) = device.session.dtls_mut().poll_transmit(&mut device.out) {
        device.socket.send(&device.out[..n]).await.unwrap();
        sent += 1;
    }
    assert_eq!(sent, 1, "one close_notify");
    until_listed(&env, &core.id, false, None, Duration::from_secs(5)).await;
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

/// A parked association keeps no task: a call wakes it (its request spawns the task that resumes it) and is
/// answered; a call and a datagram of the device's (an event it publishes) arriving together at a parked
/// association both get through, as do calls arriving together; and when the device falls silent, the parked
/// association's deadline in the listener's one timer ends the session at its idle timeout and the device is
/// listed offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_association_wakes_for_calls_and_datagrams_and_ends_at_its_idle_timeout() {
    use spark_protocol::wire::message::Visibility;

    let env = Env::start().await;
    let mut limits = UdpLimits::DEFAULT;
    limits.idle_timeout = Duration::from_secs(3);
    let (udp, _listener) = listen_udp(
        Arc::clone(&env.running.cloud),
        Arc::clone(&env.hub),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        limits,
    )
    .await
    .unwrap();
    let core = env.new_core(ELECTRON_A, ServicePack::SP_1_24);
    let mut device = RawDevice::connect(&env, &core, ELECTRON_A, udp, 62).await;
    let call = |api: spark_api::Client, id: String| {
        tokio::spawn(async move {
            api.call_function(&id, "f", "")
                .await
                .map(|r| r.return_value)
        })
    };
    for round in 0..3 {
        // Half a second of quiet with nothing pending: the association parks.
        device.run_for(Duration::from_millis(500)).await;
        let before = device.answered;
        match round {
            // A call alone.
            0 => {
                let r = device
                    .run_until(call(env.api.clone(), core.id.clone()))
                    .await;
                assert_eq!(r.unwrap(), RAW_RESULT);
            }
            // A call and a datagram of the device's together.
            1 => {
                let task = call(env.api.clone(), core.id.clone());
                let now = device.now();
                device
                    .session
                    .session_mut()
                    .publish(
                        now,
                        b"raw/together",
                        Some(&b"1"[..]),
                        Visibility::Private,
                        60,
                    )
                    .unwrap();
                device.flush().await;
                assert_eq!(device.run_until(task).await.unwrap(), RAW_RESULT);
            }
            // Four calls together.
            _ => {
                let tasks: Vec<_> = (0..4)
                    .map(|_| call(env.api.clone(), core.id.clone()))
                    .collect();
                for task in tasks {
                    assert_eq!(device.run_until(task).await.unwrap(), RAW_RESULT);
                }
            }
        }
        assert!(
            device.answered > before,
            "round {round}: the device saw no call"
        );
    }
    assert!(env.hub.is_connected(core.id.parse().unwrap()));
    // Silent now: the association parks and its idle timeout (3 s) ends it.
    let silent = std::time::Instant::now();
    until_listed(&env, &core.id, false, None, Duration::from_secs(15)).await;
    assert!(!env.hub.is_connected(core.id.parse().unwrap()));
    assert!(
        silent.elapsed() >= Duration::from_secs(2),
        "offline after {:?}, before its idle timeout",
        silent.elapsed()
    );
    drop(device);
}

/// The listener's end (the cloud shutting down) ends every association, parked ones too: their devices are
/// listed offline rather than held by sessions nothing serves any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_s_end_ends_its_parked_associations() {
    let env = Env::start().await;
    let (udp, listener) = udp_listener(&env).await;
    let core = env.new_core(ELECTRON_B, ServicePack::SP_1_24);
    let mut device = RawDevice::connect(&env, &core, ELECTRON_B, udp, 63).await;
    device.run_for(Duration::from_millis(500)).await;
    assert!(env.hub.is_connected(core.id.parse().unwrap()));
    listener.abort();
    let _ = listener.await;
    until_listed(&env, &core.id, false, None, Duration::from_secs(5)).await;
    assert!(!env.hub.is_connected(core.id.parse().unwrap()));
}
