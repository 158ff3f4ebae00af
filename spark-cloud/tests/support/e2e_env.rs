//! The end-to-end environment: the local cloud started in-process (device listener and REST API on 127.0.0.1 port 0,
//! state in a temporary directory), virtual Cores run exactly as the `spark-vcore` binary runs them, a user logged
//! in through spark-api, and a TCP relay that can cut a Core's link once a given number of bytes went its way.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_api::{Client, Credentials, Event, StreamItem, TokenLifetime};
use spark_cc3000::ServicePack;
use spark_cloud::devices::{self, LiveHub};
use spark_cloud::hub::DeviceHub;
use spark_cloud::{self as cloud, Config, Running};
use spark_protocol::crypto::RsaPrivateKey;
use spark_vcore::VirtualCore;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig, SharedCore, Status, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A 2048-bit server key (what real Cores expect), pre-made: generating one in a debug build is slow.
pub const SERVER_KEY: &str = include_str!("../fixtures/server_key_2048.pem");
/// The key pair every test Core uses (the cloud tells Cores apart by id; sharing a key costs nothing).
pub const DEVICE_KEY: &str = include_str!("../fixtures/device_a.pem");
/// Another device's public key, to provision a key the Core does not hold.
pub const OTHER_DEVICE_PUB: &str = include_str!("../fixtures/device_b.pub.pem");

/// How long any single wait may take before the test fails (generous: debug builds on a busy machine).
pub const PATIENCE: Duration = Duration::from_secs(60);

pub const USER: &str = "joe";
pub const PASSWORD: &str = "correct horse";

/// A directory under the system's temporary directory (`tempfile`), removed on drop.
pub struct TempDir(pub PathBuf, tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("spark-e2e-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(dir.path().to_owned(), dir)
    }
}

/// A running local cloud and a logged-in user.
pub struct Env {
    pub running: Running,
    pub device_addr: SocketAddr,
    pub hub: Arc<LiveHub>,
    /// spark-api's client with the user's token.
    pub api: Client,
    /// spark-api's client with no token.
    pub anonymous: Client,
    listener: tokio::task::JoinHandle<()>,
    cores: Vec<tokio::task::JoinHandle<()>>,
    dir: TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.listener.abort();
        for task in &self.cores {
            task.abort();
        }
    }
}

pub fn client(http: SocketAddr) -> Client {
    Client::builder()
        .base_url(format!("http://{http}"))
        .no_proxy()
        .build()
        .unwrap()
}

/// `POST /v1/users` (the local cloud's sign-up, which spark-api does not wrap: the hosted cloud has none).
fn create_user(http: SocketAddr, user: &str, password: &str) {
    use std::io::{Read, Write};
    let form = format!("username={user}&password={}", password.replace(' ', "+"));
    let mut s = std::net::TcpStream::connect(http).unwrap();
    write!(
        s,
        "POST /v1/users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "sign-up failed: {out}");
}

impl Env {
    /// Starts the cloud (state in a new temporary directory, seeded with [`SERVER_KEY`]) and logs a user in.
    pub async fn start() -> Env {
        Env::start_with(cloud::HttpLimits::DEFAULT).await
    }

    /// As [`Env::start`], with the REST API's `limits`.
    pub async fn start_with(limits: cloud::HttpLimits) -> Env {
        Env::start_limited(limits, devices::DeviceLimits::DEFAULT).await
    }

    /// As [`Env::start`], with the REST API's `limits` and the device listener's `device_limits`.
    pub async fn start_limited(
        limits: cloud::HttpLimits,
        device_limits: devices::DeviceLimits,
    ) -> Env {
        let dir = TempDir::new("cloud");
        std::fs::write(dir.0.join("default_key.pem"), SERVER_KEY).unwrap();
        let config = Config {
            dir: dir.0.clone(),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            key_bits: 2048,
        };
        let hub = LiveHub::new();
        let cloud = cloud::open(&config, Arc::clone(&hub) as Arc<dyn DeviceHub>).unwrap();
        Env::serve(cloud, hub, dir, limits, device_limits).await
    }

    /// Starts the cloud over `store` (its server key must be [`SERVER_KEY`]; webhooks in a new temporary
    /// directory) and logs a user in.
    pub async fn start_on_store(store: Arc<dyn spark_cloud::store::Store>) -> Env {
        let dir = TempDir::new("cloud");
        let hub = LiveHub::new();
        let udp_key = store.udp_server_key().await.unwrap();
        let cloud = cloud::Cloud::with_store(
            store,
            &dir.0,
            udp_key,
            Arc::clone(&hub) as Arc<dyn DeviceHub>,
        );
        Env::serve(
            cloud,
            hub,
            dir,
            cloud::HttpLimits::DEFAULT,
            devices::DeviceLimits::DEFAULT,
        )
        .await
    }

    async fn serve(
        cloud: Arc<cloud::Cloud>,
        hub: Arc<LiveHub>,
        dir: TempDir,
        limits: cloud::HttpLimits,
        device_limits: devices::DeviceLimits,
    ) -> Env {
        let http = SocketAddr::from(([127, 0, 0, 1], 0));
        let (device_addr, listener) = devices::listen_with(
            Arc::clone(&cloud),
            Arc::clone(&hub),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            device_limits,
        )
        .await
        .unwrap();
        let running = cloud::serve_with(cloud, http, limits).await.unwrap();
        create_user(running.http, USER, PASSWORD);
        let anonymous = client(running.http);
        let grant = anonymous
            .login(&Credentials::new(USER, PASSWORD), TokenLifetime::Default)
            .await
            .unwrap();
        let api = anonymous.with_token(grant.access_token);
        Env {
            running,
            device_addr,
            hub,
            api,
            anonymous,
            listener,
            cores: Vec::new(),
            dir,
        }
    }

    /// The cloud's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Signs another user up and returns spark-api's client with their token.
    pub async fn other_user(&self, user: &str, password: &str) -> Client {
        create_user(self.running.http, user, password);
        let grant = self
            .anonymous
            .login(&Credentials::new(user, password), TokenLifetime::Default)
            .await
            .unwrap();
        self.anonymous.with_token(grant.access_token)
    }

    /// Opens an event stream and waits until it is connected. The cloud registers the subscriber before it
    /// answers, so nothing published afterwards is missed.
    pub async fn stream(&self, open: impl FnOnce(&Client) -> spark_api::EventStream) -> Events {
        let mut stream = open(&self.api);
        match within(stream.next_item()).await {
            Some(Ok(StreamItem::Connected)) => {}
            other => panic!("expected the stream to connect, got {other:?}"),
        }
        Events(stream)
    }

    /// Creates a Core (factory Tinker, CC3000 at `sp`) with id `id` in a new directory. Its key is
    /// [`DEVICE_KEY`]; it is not provisioned and not started.
    pub fn new_core(&self, id: [u8; 12], sp: ServicePack) -> TestCore {
        let dir = TempDir::new("core");
        let key = RsaPrivateKey::from_pem(DEVICE_KEY).unwrap();
        let core = VirtualCore::create_with_identity(&dir.0, sp, id, key).unwrap();
        TestCore {
            id: core.id_hex().to_owned(),
            core: Arc::new(Mutex::new(core)),
            dir,
            status: None,
            task: None,
        }
    }

    /// Provisions the Core's public key through spark-api (the user becomes its owner).
    pub async fn provision(&self, core: &TestCore) {
        let pem = core
            .core
            .lock()
            .unwrap()
            .key()
            .public_key()
            .to_spki_pem()
            .unwrap();
        self.api
            .send_public_key(&core.id, &pem, Some("rsa"))
            .await
            .unwrap();
    }

    /// Runs `core` against the cloud's device listener (or `via`, e.g. a [`Relay`]) as `spark-vcore` does.
    pub fn run_core(&mut self, core: &mut TestCore, via: Option<SocketAddr>) {
        let (tx, rx) = mpsc::unbounded_channel();
        core.status = Some(rx);
        let server_key = RsaPrivateKey::from_pem(SERVER_KEY).unwrap().public_key();
        let config = CloudConfig {
            address: via.unwrap_or(self.device_addr).to_string(),
            server_key,
            faults: LinkFaults::RELIABLE,
            seed: 1,
            reconnect_delay: Duration::from_millis(50),
        };
        let shared = core.core.clone();
        let task = tokio::spawn(async move {
            let report = Box::new(move |s: Status| {
                let _ = tx.send(s);
            });
            run(shared, config, report).await.unwrap();
        });
        core.task = Some(task.abort_handle());
        self.cores.push(task);
    }

    /// Creates, provisions and runs a Core, and waits until the cloud has its patch-version event (so the cloud
    /// holds the session, and the Core's subscriptions).
    pub async fn online_core(
        &mut self,
        id: [u8; 12],
        sp: ServicePack,
        subscribe: &[&str],
    ) -> TestCore {
        let mut core = self.new_core(id, sp);
        for prefix in subscribe {
            assert!(core.core.lock().unwrap().subscribe(prefix));
        }
        self.provision(&core).await;
        self.start_core(&mut core).await;
        core
    }

    /// Runs a provisioned Core and waits until the cloud has its patch-version event.
    pub async fn start_core(&mut self, core: &mut TestCore) {
        let mut events = self
            .stream(|api| api.subscribe_device(&core.id, Some("spark/cc3000-patch-version")))
            .await;
        self.run_core(core, None);
        let event = events.next_event().await;
        assert_eq!(event.coreid.as_deref(), Some(core.id.as_str()));
    }
}

/// A Core under test.
pub struct TestCore {
    /// Its id, 24 lower-case hex digits.
    pub id: String,
    /// The model, shared with its session task.
    pub core: SharedCore,
    /// Its directory (external-flash file, committed firmware).
    pub dir: TempDir,
    status: Option<mpsc::UnboundedReceiver<Status>>,
    task: Option<tokio::task::AbortHandle>,
}

impl TestCore {
    /// The next status the running Core reports.
    pub async fn next_status(&mut self) -> Status {
        let rx = self.status.as_mut().expect("the Core runs");
        within(rx.recv()).await.expect("the Core task ended")
    }

    /// Skips statuses until one for which `pick` returns `Some`; returns that and what was skipped.
    pub async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&Status) -> Option<T>,
    ) -> (T, Vec<Status>) {
        let mut skipped = Vec::new();
        loop {
            let status = self.next_status().await;
            if let Some(found) = pick(&status) {
                return (found, skipped);
            }
            skipped.push(status);
        }
    }

    /// Every status reported so far that nobody has read.
    pub fn drain_status(&mut self) -> Vec<Status> {
        let mut out = Vec::new();
        if let Some(rx) = self.status.as_mut() {
            while let Ok(s) = rx.try_recv() {
                out.push(s);
            }
        }
        out
    }

    /// Stops the Core (its connection closes, as when it loses power).
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// The Core's directory.
    pub fn path(&self) -> &Path {
        &self.dir.0
    }
}

/// An event stream that fails the test when it errors, ends or stays silent for [`PATIENCE`].
pub struct Events(pub spark_api::EventStream);

impl Events {
    /// The next event (connection notices are skipped).
    pub async fn next_event(&mut self) -> Event {
        loop {
            match within(self.0.next_item()).await {
                Some(Ok(StreamItem::Event(e))) => return e,
                Some(Ok(_)) => {}
                other => panic!("the event stream failed: {other:?}"),
            }
        }
    }

    /// The next event named `name` (others are collected into the second value).
    pub async fn next_named(&mut self, name: &str) -> (Event, Vec<Event>) {
        let mut others = Vec::new();
        loop {
            let e = self.next_event().await;
            if e.name == name {
                return (e, others);
            }
            others.push(e);
        }
    }
}

/// `future`, or a test failure after [`PATIENCE`].
pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("nothing happened within the test's patience")
}

/// A legacy (header-less) Core application of `len` bytes that the Core's OTA checks accept: initial stack
/// pointer in SRAM, reset handler inside the image, reserved vectors zero, and a body that differs at every offset
/// (so a chunk written at the wrong place shows).
pub fn app_image(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    let mut image: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    image[0..4].copy_from_slice(&0x2000_5000u32.to_le_bytes());
    image[4..8].copy_from_slice(&0x0800_5101u32.to_le_bytes());
    image[8..16].fill(0);
    image
}

/// A TCP relay between Cores and the cloud's device listener. Once armed with [`Relay::cut_after`], the first
/// connection that carries that many more bytes from the cloud to the Core is closed in both directions (later
/// connections pass untouched).
pub struct Relay {
    pub addr: SocketAddr,
    /// Bytes still allowed towards the Core before the cut (`usize::MAX`: not armed).
    budget: Arc<AtomicUsize>,
    /// Connections cut so far.
    cuts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let budget = Arc::new(AtomicUsize::new(usize::MAX));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (b, c) = (budget.clone(), cuts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((core, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(cloud) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = core.set_nodelay(true);
                let _ = cloud.set_nodelay(true);
                tokio::spawn(relay(core, cloud, b.clone(), c.clone()));
            }
        });
        Relay {
            addr,
            budget,
            cuts,
            task,
        }
    }

    /// Arms the cut: after `bytes` more bytes from the cloud towards a Core, that connection is closed.
    pub fn cut_after(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::SeqCst);
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

async fn relay(
    core: TcpStream,
    cloud: TcpStream,
    budget: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
) {
    let (mut core_rx, mut core_tx) = core.into_split();
    let (mut cloud_rx, mut cloud_tx) = cloud.into_split();
    let up = async {
        let mut buf = vec![0u8; 4096];
        loop {
            match core_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if cloud_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match cloud_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Take `n` bytes from the budget; the connection that exhausts it is cut (the budget is disarmed so
            // that later connections pass).
            let left = budget.load(Ordering::SeqCst);
            if left != usize::MAX {
                if n >= left {
                    if budget
                        .compare_exchange(left, usize::MAX, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        let _ = core_tx.write_all(&buf[..left]).await;
                        cuts.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                } else {
                    let _ =
                        budget.compare_exchange(left, left - n, Ordering::SeqCst, Ordering::SeqCst);
                }
            }
            if core_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    // Whichever direction ends first ends both: the halves drop and both sockets close.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
