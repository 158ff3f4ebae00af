//! The device listener: one [`CloudConnection`] per TCP connection, run by spark-protocol's tokio driver, and
//! [`LiveHub`], the [`DeviceHub`] that routes the REST layer's requests to those connections.
//!
//! The handshake looks the device key up in the state directory at the time of the handshake (an unknown device
//! is rejected by the session). Each connection task owns its session; requests reach it through its mailbox (a
//! queue that holds no memory while empty, and a wake-up) and their answers come back on one-shot channels, so many
//! devices run at once without shared locks on the hot path. An idle connection keeps only what it must: its
//! session's keys and counters, the device's description, and its socket.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use spark_protocol::session::Instant;
use spark_protocol::session::cloud::{
    CloudConfig, CloudConnection, CloudEvent, DeviceId, DeviceInfo, DeviceKeys, OtaEvent,
    OtaOptions, OutgoingEvent, RequestFailure, RequestId, Subscription,
};
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
use spark_protocol::wire::describe::{Description as WireDescription, VarType};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use super::hub::{
    Description, DeviceEvent, DeviceHub, FlashProgress, HubError, HubFuture, VariableValue,
};
use super::rotation::{HandshakeKey, LoadedKeys};
use super::{Cloud, lock};

/// The server's private key as the handshake uses it: OpenSSL with the `openssl` feature (about four times faster
/// than RustCrypto's; a clone shares the key), RustCrypto without it.
#[cfg(feature = "openssl")]
pub type ServerKey = spark_protocol::crypto::openssl::OpensslPrivateKey;
/// The server's private key as the handshake uses it: OpenSSL with the `openssl` feature, RustCrypto without it.
#[cfg(not(feature = "openssl"))]
pub type ServerKey = spark_protocol::crypto::rustcrypto::RustCryptoPrivateKey;
/// A device's public key as the handshake uses it (the backend of [`ServerKey`]).
#[cfg(feature = "openssl")]
pub type DeviceKey = spark_protocol::crypto::openssl::OpensslPublicKey;
/// A device's public key as the handshake uses it (the backend of [`ServerKey`]).
#[cfg(not(feature = "openssl"))]
pub type DeviceKey = spark_protocol::crypto::rustcrypto::RustCryptoPublicKey;

type Answer<T> = oneshot::Sender<Result<T, HubError>>;

/// Requests a connection may have queued before further ones are refused as busy.
const MAILBOX_LIMIT: usize = 64;

/// Where the REST layer leaves requests for one connection: empty, it holds no allocation.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    queue: Mutex<VecDeque<Command>>,
    pub(crate) wake: Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl Mailbox {
    fn post(&self, command: Command) -> Result<(), HubError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(HubError::NotConnected);
        }
        let mut queue = lock(&self.queue);
        if queue.len() >= MAILBOX_LIMIT {
            return Err(HubError::Busy("too many requests queued".into()));
        }
        queue.push_back(command);
        drop(queue);
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn take(&self) -> Option<Command> {
        let mut queue = lock(&self.queue);
        let command = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 0 {
            // Give the memory back: most connections see a request now and then, not a stream of them.
            *queue = VecDeque::new();
        }
        command
    }

    /// Refuses further requests; those still queued are answered `NotConnected` when dropped.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.queue).clear();
    }
}

impl core::fmt::Debug for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Command::Describe(_) => "Describe",
            Command::Call(..) => "Call",
            Command::Get(..) => "Get",
            Command::Signal(..) => "Signal",
            Command::Deliver(..) => "Deliver",
            Command::Flash(..) => "Flash",
        })
    }
}

pub(crate) enum Command {
    Describe(Answer<Description>),
    Call(String, String, Answer<i32>),
    Get(String, Answer<VariableValue>),
    Signal(bool, Answer<()>),
    Deliver(DeviceEvent, Answer<()>),
    Flash(Bytes, Arc<dyn FlashProgress>, Answer<()>),
}

/// The [`DeviceHub`] of devices connected over TCP.
#[derive(Debug, Default)]
pub struct LiveHub {
    devices: Mutex<HashMap<DeviceId, (u64, Arc<Mailbox>)>>,
    serial: AtomicU64,
}

impl LiveHub {
    /// A hub with no device.
    pub fn new() -> Arc<LiveHub> {
        Arc::new(LiveHub::default())
    }

    /// How many devices are connected.
    pub fn connected(&self) -> usize {
        lock(&self.devices).len()
    }

    fn mailbox(&self, device: DeviceId) -> Result<Arc<Mailbox>, HubError> {
        lock(&self.devices)
            .get(&device)
            .map(|(_, mailbox)| Arc::clone(mailbox))
            .ok_or(HubError::NotConnected)
    }

    fn ask<'a, T: Send + 'static>(
        &'a self,
        device: DeviceId,
        make: impl FnOnce(Answer<T>) -> Command + Send + 'a,
    ) -> HubFuture<'a, T> {
        Box::pin(async move {
            let mailbox = self.mailbox(device)?;
            let (answer, rx) = oneshot::channel();
            mailbox.post(make(answer))?;
            rx.await.unwrap_or(Err(HubError::NotConnected))
        })
    }
}

impl DeviceHub for LiveHub {
    fn is_connected(&self, device: DeviceId) -> bool {
        lock(&self.devices).contains_key(&device)
    }

    fn describe<'a>(&'a self, device: DeviceId) -> HubFuture<'a, Description> {
        self.ask(device, Command::Describe)
    }

    fn call<'a>(
        &'a self,
        device: DeviceId,
        function: &'a str,
        argument: &'a str,
    ) -> HubFuture<'a, i32> {
        self.ask(device, move |a| {
            Command::Call(function.to_owned(), argument.to_owned(), a)
        })
    }

    fn get<'a>(&'a self, device: DeviceId, variable: &'a str) -> HubFuture<'a, VariableValue> {
        self.ask(device, move |a| Command::Get(variable.to_owned(), a))
    }

    fn signal<'a>(&'a self, device: DeviceId, on: bool) -> HubFuture<'a, ()> {
        self.ask(device, move |a| Command::Signal(on, a))
    }

    fn deliver<'a>(&'a self, device: DeviceId, event: &'a DeviceEvent) -> HubFuture<'a, ()> {
        self.ask(device, move |a| Command::Deliver(event.clone(), a))
    }

    fn flash<'a>(
        &'a self,
        device: DeviceId,
        image: Bytes,
        progress: Arc<dyn FlashProgress>,
    ) -> HubFuture<'a, ()> {
        self.ask(device, move |a| Command::Flash(image, progress, a))
    }
}

/// Device keys from the state directory, read at handshake time.
/// The cloud's device keys, remembering which device asked (for the log line of a failed handshake).
pub(crate) struct StateKeys(pub(crate) Arc<Cloud>, pub(crate) Arc<Mutex<Option<String>>>);

impl DeviceKeys for StateKeys {
    type Key = DeviceKey;

    fn device_key(&mut self, device_id: &DeviceId, _presented: Option<&[u8]>) -> Option<DeviceKey> {
        let id = device_id.to_string();
        let Some(key) = self.0.state().device_key(&id) else {
            self.0
                .log_refusal(&id, "no public key is provisioned for it");
            return None;
        };
        *lock(&self.1) = Some(id);
        DeviceKey::new(&key.as_ref_key()).ok()
    }
}

/// The device listener's own limits, apart from the REST API's (see `SECURITY.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceLimits {
    /// Device connections at most, handshaking or established; past it a new connection is closed at once (an
    /// established device is never dropped for a newcomer).
    pub max_connections: usize,
    /// Connections still in their handshake at most (each costs an RSA decryption and signature); past it a new
    /// connection is closed at once.
    pub max_handshakes: usize,
}

impl DeviceLimits {
    /// The defaults: 65,536 connections, 256 of them in their handshake.
    pub const DEFAULT: DeviceLimits = DeviceLimits {
        max_connections: 65_536,
        max_handshakes: 256,
    };

    /// Sets both limits.
    #[must_use]
    pub const fn with(mut self, max_connections: usize, max_handshakes: usize) -> Self {
        self.max_connections = max_connections;
        self.max_handshakes = max_handshakes;
        self
    }
}

impl Default for DeviceLimits {
    fn default() -> Self {
        DeviceLimits::DEFAULT
    }
}

/// Logs refused connections at most once per [`super::REFUSAL_LOG_INTERVAL`], with how many were refused.
struct FullLog {
    last: Option<std::time::Instant>,
    refused: u64,
}

impl FullLog {
    fn refused(&mut self, why: &str) {
        self.refused += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < super::REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        self.last = Some(now);
        eprintln!(
            "spark-cloud: device listener: {why}; new connections are closed ({} refused so far)",
            self.refused
        );
    }
}

/// Accepts devices on `listener` with the default [`DeviceLimits`] until the task is aborted.
pub async fn accept_devices(cloud: Arc<Cloud>, hub: Arc<LiveHub>, listener: TcpListener) {
    accept_devices_with(cloud, hub, listener, DeviceLimits::DEFAULT).await;
}

/// Accepts devices on `listener` within `limits` until the task is aborted.
pub async fn accept_devices_with(
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    listener: TcpListener,
    limits: DeviceLimits,
) {
    if cloud.handshake_keys().is_none() {
        eprintln!(
            "spark-cloud: device listener: the server key cannot be loaded; no device is accepted"
        );
        return;
    }
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    let mut log = FullLog {
        last: None,
        refused: 0,
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Ok(connection) = Arc::clone(&connections).try_acquire_owned() else {
            log.refused(&format!(
                "{} devices are connected, the most it holds",
                limits.max_connections
            ));
            continue;
        };
        let Ok(handshake) = Arc::clone(&handshakes).try_acquire_owned() else {
            log.refused(&format!(
                "{} handshakes are under way, the most it runs at once",
                limits.max_handshakes
            ));
            continue;
        };
        // Taken per connection: a rotation applies from the next handshake on, and connected devices keep theirs.
        let Some(keys) = cloud.handshake_keys() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let slots = Slots {
            _connection: connection,
            handshake: Some(handshake),
        };
        tokio::spawn(run_device(
            Arc::clone(&cloud),
            Arc::clone(&hub),
            keys,
            stream,
            slots,
        ));
    }
}

/// What a device connection holds of the listener's limits: its connection, and its handshake until it is done.
pub(crate) struct Slots {
    _connection: OwnedSemaphorePermit,
    handshake: Option<OwnedSemaphorePermit>,
}

impl Slots {
    /// A connection's place, and its handshake's place until the session is connected.
    pub(crate) fn new(
        connection: OwnedSemaphorePermit,
        handshake: Option<OwnedSemaphorePermit>,
    ) -> Slots {
        Slots {
            _connection: connection,
            handshake,
        }
    }

    /// Gives the handshake's place back (the handshake is over).
    pub(crate) fn release_handshake(&mut self) {
        self.handshake = None;
    }
}

/// Binds `addr` and accepts devices in a task with the default [`DeviceLimits`]; returns the bound address and the
/// task.
pub async fn listen(
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    listen_with(cloud, hub, addr, DeviceLimits::DEFAULT).await
}

/// Binds `addr` and accepts devices in a task within `limits`; returns the bound address and the task.
pub async fn listen_with(
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    addr: SocketAddr,
    limits: DeviceLimits,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((
        bound,
        tokio::spawn(accept_devices_with(cloud, hub, listener, limits)),
    ))
}

/// The requests in flight on one connection: a few at a time, so a vector (empty: no allocation).
#[derive(Default)]
struct Requests(Vec<(RequestId, Pending)>);

impl Requests {
    fn insert(&mut self, id: RequestId, p: Pending) {
        self.0.push((id, p));
    }

    fn get(&self, id: &RequestId) -> Option<&Pending> {
        self.0.iter().find(|(r, _)| r == id).map(|(_, p)| p)
    }

    fn remove(&mut self, id: &RequestId) -> Option<Pending> {
        let at = self.0.iter().position(|(r, _)| r == id)?;
        let (_, p) = self.0.swap_remove(at);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(p)
    }
}

enum Pending {
    Describe(Option<Answer<Description>>),
    Call(Answer<i32>),
    Get(Answer<VariableValue>),
    Ack(Answer<()>),
    Flash(Arc<dyn FlashProgress>, Answer<()>),
}

fn failure(f: &RequestFailure) -> HubError {
    match f {
        RequestFailure::Timeout => HubError::TimedOut,
        RequestFailure::SessionEnded(_) | RequestFailure::Reset => HubError::NotConnected,
        RequestFailure::Rejected(code) => {
            HubError::Device(format!("the device refused the request (CoAP {code})"))
        }
        other => HubError::Device(format!("{other}")),
    }
}

fn parse_description(json: &[u8]) -> Result<(Description, BTreeMap<String, VarType>), HubError> {
    let d = WireDescription::parse(json)
        .map_err(|e| HubError::Device(format!("the device's description is malformed: {e}")))?;
    let mut out = Description::default();
    let mut types = BTreeMap::new();
    for f in d.functions() {
        out.functions.push(String::from_utf8_lossy(f).into_owned());
    }
    for (name, ty) in d.variables() {
        let name = String::from_utf8_lossy(name).into_owned();
        let Some(ty) = ty else { continue };
        out.variables.insert(name.clone(), ty);
        types.insert(name, ty);
    }
    Ok((out, types))
}

/// The cloud session of one device, over TCP or (datagram mode) UDP.
pub(crate) type DeviceSession = CloudConnection<HandshakeKey, StateKeys, super::SystemRng>;

/// The tokio driver of one device connection.
type DeviceDriver = Driver<DeviceSession, TcpStream>;

/// What a [`DeviceTask`] needs of whatever carries its session (the TCP driver, the UDP association): the time,
/// and the session for requests.
pub(crate) trait SessionHost {
    fn now(&mut self) -> Instant;
    fn connection_mut(&mut self) -> &mut DeviceSession;
    /// How this transport's devices are flashed.
    fn ota_options(&self) -> OtaOptions {
        OtaOptions::default()
    }

    /// Whether the session's handshake used the server's RSA key (whose rotation `key_use` reports).
    fn uses_rsa_server_key(&self) -> bool {
        true
    }
}

impl SessionHost for DeviceDriver {
    fn now(&mut self) -> Instant {
        Driver::now(self)
    }

    fn connection_mut(&mut self) -> &mut DeviceSession {
        Driver::connection_mut(self)
    }
}

async fn run_device(
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    keys: LoadedKeys,
    stream: TcpStream,
    slots: Slots,
) {
    let asked = Arc::new(Mutex::new(None));
    let server_key = keys.for_connection();
    let conn = CloudConnection::new(
        Instant::ZERO,
        server_key,
        StateKeys(Arc::clone(&cloud), Arc::clone(&asked)),
        super::system_rng(),
        CloudConfig::default(),
    );
    let mut driver = Driver::with_vec(conn, Tokio(stream), TokioClock::new());
    let mailbox = Arc::new(Mailbox::default());
    let mut task = DeviceTask::new(cloud, hub, asked, keys, slots, Arc::clone(&mailbox));
    loop {
        tokio::select! {
            event = driver.drive() => match event {
                Ok(Some(event)) => task.on_event(&mut driver, event),
                Ok(None) => {}
                Err(e) => {
                    task.on_failure(&e);
                    break;
                }
            },
            () = mailbox.wake.notified() => {
                while let Some(command) = mailbox.take() {
                    task.on_command(&mut driver, command);
                }
            }
        }
    }
}

/// One device connection's state beside its session: what the REST layer waits for, and what the device told.
pub(crate) struct DeviceTask {
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    /// The id the device gave in its handshake (for the log line of a failed one).
    asked: Arc<Mutex<Option<String>>>,
    /// The server keys the connection started with: which key its handshake used.
    keys: LoadedKeys,
    slots: Slots,
    /// Runs on every way out of the task, a panic included: the hub never keeps a dead connection's mailbox.
    session: SessionCleanup,
    pending: Requests,
    types: Option<BTreeMap<String, VarType>>,
    description: Option<Description>,
    subscriptions: Vec<Subscription>,
    /// Reads waiting for the description (variable types) to arrive.
    waiting_reads: Vec<(String, Answer<VariableValue>)>,
}

impl DeviceTask {
    /// The task of a connection whose session reports to `mailbox`'s device once connected.
    pub(crate) fn new(
        cloud: Arc<Cloud>,
        hub: Arc<LiveHub>,
        asked: Arc<Mutex<Option<String>>>,
        keys: LoadedKeys,
        slots: Slots,
        mailbox: Arc<Mailbox>,
    ) -> DeviceTask {
        DeviceTask {
            session: SessionCleanup {
                cloud: Arc::clone(&cloud),
                hub: Arc::clone(&hub),
                mailbox,
                id: None,
            },
            cloud,
            hub,
            asked,
            keys,
            slots,
            pending: Requests::default(),
            types: None,
            description: None,
            subscriptions: Vec::new(),
            waiting_reads: Vec::new(),
        }
    }

    /// The session ended with `e`: a device that never got through its handshake is logged.
    pub(crate) fn on_failure(&self, e: &impl std::fmt::Display) {
        if self.session.id.is_none()
            && let Some(device) = lock(&self.asked).clone()
        {
            self.cloud
                .log_refusal(&device, &format!("the handshake failed: {e}"));
        }
    }

    /// What the session reports: the handshake's end, answers to requests, events, OTA progress.
    pub(crate) fn on_event(&mut self, driver: &mut impl SessionHost, event: CloudEvent) {
        match event {
            CloudEvent::Connected(info) => self.on_connected(driver, &info),
            CloudEvent::Described { request, result } => {
                let parsed = result
                    .map_err(|f| failure(&f))
                    .and_then(|j| parse_description(&j));
                if let Ok((d, t)) = &parsed {
                    self.description = Some(d.clone());
                    self.types = Some(t.clone());
                }
                for (name, answer) in std::mem::take(&mut self.waiting_reads) {
                    start_read(driver, &mut self.pending, self.types.as_ref(), name, answer);
                }
                if let Some(Pending::Describe(Some(answer))) = self.pending.remove(&request) {
                    let _ = answer.send(parsed.map(|(d, _)| d));
                }
            }
            CloudEvent::FunctionReturned { request, result } => {
                if let Some(Pending::Call(answer)) = self.pending.remove(&request) {
                    let _ = answer.send(result.map_err(|f| failure(&f)));
                }
            }
            CloudEvent::VariableRead { request, result } => {
                if let Some(Pending::Get(answer)) = self.pending.remove(&request) {
                    let _ = answer.send(result.map_err(|f| failure(&f)));
                }
            }
            CloudEvent::Acknowledged { request, result } => {
                if let Some(Pending::Ack(answer)) = self.pending.remove(&request) {
                    let _ = answer.send(result.map_err(|f| failure(&f)));
                }
            }
            CloudEvent::Published(e) => {
                if let Some((device, _)) = &self.session.id {
                    let name = String::from_utf8_lossy(&e.name);
                    let data = e.data.as_deref().map(String::from_utf8_lossy);
                    self.cloud.device_event(
                        &device.to_string(),
                        &name,
                        data.as_deref(),
                        e.ttl,
                        !e.private,
                    );
                }
            }
            CloudEvent::Subscribed(s) => self.subscriptions.push(s),
            CloudEvent::Ota { request, event } => match event {
                OtaEvent::Progress {
                    bytes_sent, total, ..
                } => {
                    if let Some(Pending::Flash(progress, _)) = self.pending.get(&request) {
                        progress.progress(usize::try_from(bytes_sent).unwrap_or(usize::MAX), total);
                    }
                }
                OtaEvent::Finished(result) => {
                    if let Some(Pending::Flash(_, answer)) = self.pending.remove(&request) {
                        let _ = answer.send(
                            result
                                .map(drop)
                                .map_err(|e| HubError::Device(format!("{e}"))),
                        );
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// The handshake is done: the device joins the hub and is asked for its description.
    fn on_connected(&mut self, driver: &mut impl SessionHost, info: &DeviceInfo) {
        // Its handshake slot goes to the next device.
        self.slots.handshake = None;
        let device = info.device_id.to_string();
        let serial = self.hub.serial.fetch_add(1, Ordering::Relaxed);
        lock(&self.hub.devices).insert(info.device_id, (serial, Arc::clone(&self.session.mailbox)));
        super::console::record_hello(&self.cloud, &device, info);
        if driver.uses_rsa_server_key() {
            let used = self
                .keys
                .used_fingerprint(driver.connection_mut().server_key());
            self.cloud.record_key_use(&device, used);
        }
        self.cloud.device_online(&device);
        let now = driver.now();
        if let Ok(r) = driver.connection_mut().describe(now) {
            self.pending.insert(r, Pending::Describe(None));
        }
        self.session.id = Some((info.device_id, serial));
    }

    /// A request from the REST layer.
    pub(crate) fn on_command(&mut self, driver: &mut impl SessionHost, command: Command) {
        let now = driver.now();
        let busy = |e| HubError::Busy(format!("{e}"));
        match command {
            Command::Describe(answer) => {
                if let Some(d) = &self.description {
                    let _ = answer.send(Ok(d.clone()));
                } else {
                    match driver.connection_mut().describe(now) {
                        Ok(r) => self.pending.insert(r, Pending::Describe(Some(answer))),
                        Err(e) => {
                            let _ = answer.send(Err(busy(e)));
                        }
                    }
                }
            }
            Command::Call(name, arg, answer) => {
                let known = self
                    .description
                    .as_ref()
                    .is_none_or(|d| d.functions.contains(&name));
                if !known {
                    let _ = answer.send(Err(HubError::UnknownFunction));
                    return;
                }
                match driver
                    .connection_mut()
                    .call_function(now, name.as_bytes(), arg.as_bytes())
                {
                    Ok(r) => self.pending.insert(r, Pending::Call(answer)),
                    Err(e) => {
                        let _ = answer.send(Err(busy(e)));
                    }
                }
            }
            Command::Get(name, answer) => {
                if self.types.is_some() {
                    start_read(driver, &mut self.pending, self.types.as_ref(), name, answer);
                } else {
                    self.waiting_reads.push((name, answer));
                }
            }
            Command::Signal(on, answer) => match driver.connection_mut().signal(now, on) {
                Ok(r) => self.pending.insert(r, Pending::Ack(answer)),
                Err(e) => {
                    let _ = answer.send(Err(busy(e)));
                }
            },
            Command::Deliver(event, answer) => {
                let wanted = self
                    .subscriptions
                    .iter()
                    .any(|s| event.name.as_bytes().starts_with(&s.filter));
                let result = if wanted {
                    let outgoing = OutgoingEvent {
                        name: event.name.as_bytes(),
                        data: event.data.as_deref().map(str::as_bytes),
                        ttl: event.ttl,
                        private: !event.public,
                    };
                    driver
                        .connection_mut()
                        .deliver_event(&outgoing)
                        .map_err(busy)
                } else {
                    Ok(())
                };
                let _ = answer.send(result);
            }
            Command::Flash(image, progress, answer) => {
                let options = driver.ota_options();
                match driver
                    .connection_mut()
                    .start_ota(now, image.to_vec(), options)
                {
                    Ok(r) => self.pending.insert(r, Pending::Flash(progress, answer)),
                    Err(e) => {
                        let _ = answer.send(Err(busy(e)));
                    }
                }
            }
        }
    }
}

/// What a device connection undoes when it ends, however it ends.
pub(crate) struct SessionCleanup {
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    mailbox: Arc<Mailbox>,
    id: Option<(DeviceId, u64)>,
}

impl Drop for SessionCleanup {
    fn drop(&mut self) {
        self.mailbox.close();
        if let Some((device, serial)) = self.id.take() {
            let mut devices = lock(&self.hub.devices);
            if devices.get(&device).is_some_and(|(s, _)| *s == serial) {
                devices.remove(&device);
            }
            drop(devices);
            self.cloud.device_offline(&device.to_string());
        }
    }
}

fn start_read(
    driver: &mut impl SessionHost,
    pending: &mut Requests,
    types: Option<&BTreeMap<String, VarType>>,
    name: String,
    answer: Answer<VariableValue>,
) {
    let Some(ty) = types.and_then(|t| t.get(&name)).copied() else {
        let _ = answer.send(Err(HubError::UnknownVariable));
        return;
    };
    let now = driver.now();
    match driver
        .connection_mut()
        .read_variable(now, name.as_bytes(), ty)
    {
        Ok(r) => {
            pending.insert(r, Pending::Get(answer));
        }
        Err(e) => {
            let _ = answer.send(Err(HubError::Busy(format!("{e}"))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spark_protocol::wire::coap::Code;

    #[test]
    fn device_failures_are_told_in_words() {
        for f in [
            RequestFailure::Rejected(Code::NotFound),
            RequestFailure::Rejected(Code::InternalServerError),
            RequestFailure::Malformed(spark_protocol::wire::Error::Truncated),
        ] {
            let HubError::Device(text) = failure(&f) else {
                panic!("{f:?}")
            };
            assert!(
                !text.contains('(') || text.contains("(CoAP "),
                "debug output in {text:?}"
            );
            assert!(
                !text.contains("Rejected") && !text.contains("Malformed"),
                "{text:?}"
            );
        }
    }
}
