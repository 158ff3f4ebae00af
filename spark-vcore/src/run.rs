//! Running a virtual Core against a cloud: spark-protocol's [`DeviceConnection`] on the tokio driver, with the
//! Core model behind it.
//!
//! One [`session`] is one connection: the RSA handshake, the Hello (with the OTA-success flag after an update),
//! the `spark/cc3000-patch-version` event once the cloud's Hello arrives, Describe, function calls into Tinker,
//! variable reads, and OTA images into the external flash through [`CoreSink`]. When an image has been committed
//! the Core resets, as a real one did: [`run`] boots it (which installs the image and, for the deep update, patches
//! the CC3000) and connects again. A lost link is retried after a back-off.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use spark_protocol::crypto::keys::RsaPublicKey;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::session::device::{
    DeviceConfig, DeviceConnection, DeviceEvent, DeviceHandshake, FirmwareSink, ImageInfo,
    OtaFailure, RsaHandshake, Scope, SinkError,
};
use spark_protocol::session::driver::DriverError;
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
use spark_protocol::wire::message::Visibility;
use tokio::io::{AsyncRead, AsyncWrite};

use super::flash::OtaError;
use super::link::{FlakyStream, LinkFaults};
use super::{
    BootReport, CoreError, PATCH_VERSION_EVENT, PATCH_VERSION_TTL, VariableValue, VirtualCore,
};

/// A Core shared between its session task and whoever watches it.
pub type SharedCore = Arc<Mutex<VirtualCore>>;

pub(crate) fn lock(core: &SharedCore) -> MutexGuard<'_, VirtualCore> {
    // A panic while holding the lock leaves a Core whose files are consistent (every change is written
    // through a temporary file), so the poison is not worth propagating.
    core.lock().unwrap_or_else(|p| p.into_inner())
}

/// The external flash as the session's [`FirmwareSink`].
#[derive(Debug, Clone)]
pub struct CoreSink {
    core: SharedCore,
    /// Why the Core last refused an image, in words (the session's [`SinkError`] has no room for it).
    refusal: Arc<Mutex<Option<String>>>,
}

impl CoreSink {
    /// The sink of `core`.
    pub fn new(core: SharedCore) -> Self {
        CoreSink {
            core,
            refusal: Arc::default(),
        }
    }

    /// Why the Core refused the last image, in words, if it did (taken: the next call returns `None`).
    pub fn take_refusal(&self) -> Option<String> {
        self.refusal.lock().ok().and_then(|mut r| r.take())
    }

    fn refused(&self, e: CoreError) -> SinkError {
        if let Ok(mut r) = self.refusal.lock() {
            *r = Some(e.to_string());
        }
        sink_error(e)
    }
}

/// Why an update failed, as a person reads it; `refusal` is the Core's own reason when it refused the image.
fn ota_failure_words(why: OtaFailure, refusal: Option<String>) -> String {
    match (why, refusal) {
        (OtaFailure::Sink(_), Some(reason)) => format!("the Core refused the image: {reason}"),
        (OtaFailure::Sink(e), None) => format!("the Core refused the image: {e}"),
        (OtaFailure::Parameters, _) => "the update parameters were unusable".into(),
        (OtaFailure::Timeout, _) => "the transfer did not finish in time".into(),
        (OtaFailure::Restarted, _) => "the cloud began another update".into(),
        (_, _) => "the update did not complete".into(),
    }
}

fn sink_error(e: CoreError) -> SinkError {
    match e {
        CoreError::Ota(OtaError::BadSize { size }) => SinkError::InsufficientSize {
            required: size as usize,
        },
        CoreError::Ota(OtaError::OutOfBounds { offset, len, .. }) => SinkError::InsufficientSize {
            required: offset as usize + len,
        },
        CoreError::NoDownload => SinkError::NotStarted,
        // An incomplete, corrupt or non-firmware image, or a failing flash file: the sink has no finer word.
        _ => SinkError::Storage,
    }
}

impl FirmwareSink for CoreSink {
    fn begin(&mut self, info: &ImageInfo) -> Result<(), SinkError> {
        lock(&self.core)
            .ota_begin(info.size)
            .map_err(|e| self.refused(e))
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), SinkError> {
        lock(&self.core)
            .ota_write(offset, data)
            .map_err(|e| self.refused(e))
    }

    fn finish(&mut self, size: u32) -> Result<(), SinkError> {
        lock(&self.core)
            .ota_finish(size)
            .map(|_| ())
            .map_err(|e| self.refused(e))
    }

    fn abort(&mut self) {
        lock(&self.core).ota_abort();
    }
}

/// The device listeners of a cloud's nodes, tried in turn: a Core stays on one while its sessions hold, and moves to
/// the next when connecting fails or a session is lost (refused, reset, a failed handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudAddresses {
    list: Vec<String>,
    at: usize,
}

impl CloudAddresses {
    /// The addresses of a comma-separated list (`host:port,host:port`); blanks are skipped.
    #[must_use]
    pub fn parse(list: &str) -> CloudAddresses {
        CloudAddresses {
            list: list
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
            at: 0,
        }
    }

    /// The address to try now (empty when the list was).
    #[must_use]
    pub fn current(&self) -> &str {
        self.list.get(self.at).map_or("", String::as_str)
    }

    /// The current address failed: the next one is tried (the first again after the last).
    pub fn failed(&mut self) {
        if !self.list.is_empty() {
            self.at = (self.at + 1) % self.list.len();
        }
    }

    /// How many addresses there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Where and how a Core connects.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// The cloud's device listener, `host:port`; several nodes' as a comma-separated list, tried in turn (see
    /// [`CloudAddresses`]).
    pub address: String,
    /// The cloud's public key.
    pub server_key: RsaPublicKey,
    /// Faults on the link.
    pub faults: LinkFaults,
    /// Seed of the link's fault pattern (each connection uses the next value).
    pub seed: u64,
    /// Wait before connecting again after a lost link.
    pub reconnect_delay: Duration,
}

/// Something a running Core reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Status {
    /// The Core reset.
    Booted(BootReport),
    /// A session is up (the cloud's Hello arrived and the patch version was published).
    Connected {
        /// The Hello carried the OTA-success flag.
        ota_succeeded: bool,
        /// The published `spark/cc3000-patch-version` value.
        patch_version: String,
    },
    /// A function was called.
    Called {
        /// The function.
        name: String,
        /// Its argument.
        argument: String,
        /// The return value.
        result: i32,
    },
    /// A variable was read.
    Read {
        /// The variable.
        name: String,
    },
    /// An OTA update began.
    UpdateStarted {
        /// The announced size, if any.
        size: Option<u32>,
    },
    /// An OTA image was committed; the Core resets.
    UpdateFinished {
        /// Its size.
        size: u32,
    },
    /// An OTA update was abandoned.
    UpdateFailed {
        /// Why.
        reason: String,
    },
    /// The cloud asked the Core to signal (rainbow LED) or stop.
    Signal(bool),
    /// An event matching one of the Core's [subscriptions](VirtualCore::subscribe) arrived.
    EventReceived {
        /// Its name.
        name: String,
        /// Its data (empty when it had none).
        data: String,
        /// Whether it was private.
        private: bool,
    },
    /// The session ended.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// An image was committed: the Core must reset.
    Reboot,
    /// The link or the session failed.
    Lost,
}

/// Runs one session over `stream` until it ends. `report` hears what happens.
pub async fn session<T>(
    core: &SharedCore,
    stream: T,
    server_key: &RsaPublicKey,
    faults: LinkFaults,
    seed: u64,
    report: &mut (dyn FnMut(Status) + Send),
) -> Result<SessionEnd, CoreError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (config, device_key) = {
        let c = lock(core);
        let mut config = DeviceConfig::new(c.id());
        config.ota_succeeded = c.ota_succeeded();
        let key = RustCryptoPrivateKey::new(&c.key().as_ref_key()).map_err(CoreError::Rsa)?;
        (config, key)
    };
    let server = RustCryptoPublicKey::new(&server_key.as_ref_key()).map_err(CoreError::Rsa)?;
    let rng = StdRng::try_from_rng(&mut SysRng).map_err(|e| CoreError::Random(e.to_string()))?;
    let handshake = RsaHandshake::new(device_key, server, rng);
    let mut clock = TokioClock::new();
    let now = spark_protocol::session::driver::Clock::now(&mut clock);
    let sink = CoreSink::new(core.clone());
    let refusals = sink.clone();
    let mut conn = DeviceConnection::new(now, config, handshake, sink);
    register(core, &mut conn);
    let link = FlakyStream::new(stream, faults, seed);
    let mut driver = Driver::with_vec(conn, Tokio(link), clock);
    loop {
        let event = match driver.next_event().await {
            Ok(e) => e,
            Err(e) => {
                let reason = match &e {
                    DriverError::Io(io) => io.to_string(),
                    other => other.to_string(),
                };
                report(Status::Disconnected { reason });
                return Ok(SessionEnd::Lost);
            }
        };
        let now = driver.now();
        let app = CoreApp {
            core,
            ota_succeeded: config.ota_succeeded,
            refusals: &refusals,
        };
        if let AfterEvent::Reset = app.on_event(driver.connection_mut(), now, event, report)? {
            // Let UpdateDone's acknowledgement out, then reset.
            let _ = driver.flush().await;
            driver.connection_mut().close();
            return Ok(SessionEnd::Reboot);
        }
    }
}

/// Registers the Core's functions and variables with a new session.
pub(crate) fn register<S: FirmwareSink, H: DeviceHandshake>(
    core: &SharedCore,
    conn: &mut DeviceConnection<S, H>,
) {
    let c = lock(core);
    for f in c.functions() {
        // Four Tinker functions and four variables fit the Core's tables.
        let _ = conn.register_function(f.as_bytes());
    }
    for (name, ty) in c.variables() {
        let _ = conn.register_variable(name.as_bytes(), *ty);
    }
}

/// What the session's carrier does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterEvent {
    /// Go on.
    Continue,
    /// An image was committed: send what is queued, close, and reset.
    Reset,
}

/// The Core's application above its session, whatever carries it (TCP or UDP): the announcements after
/// connecting, Tinker calls, variable reads, OTA reports, received events.
pub(crate) struct CoreApp<'a> {
    pub(crate) core: &'a SharedCore,
    /// The Hello carried the OTA-success flag.
    pub(crate) ota_succeeded: bool,
    pub(crate) refusals: &'a CoreSink,
}

impl CoreApp<'_> {
    pub(crate) fn on_event<S: FirmwareSink, H: DeviceHandshake>(
        &self,
        conn: &mut DeviceConnection<S, H>,
        now: spark_protocol::session::Instant,
        event: DeviceEvent,
        report: &mut (dyn FnMut(Status) + Send),
    ) -> Result<AfterEvent, CoreError> {
        let core = self.core;
        match event {
            DeviceEvent::Connected => {
                let patch_version = {
                    let mut c = lock(core);
                    c.clear_ota_succeeded()?;
                    c.patch_version_event().1
                };
                // Subscriptions go out first: a cloud that has the patch-version event has them too.
                let subscriptions = lock(core).subscriptions().to_vec();
                for prefix in &subscriptions {
                    let _ = conn.subscribe(prefix.as_bytes(), Scope::MyDevices);
                }
                // The patch version first, then what the application announces, all private.
                let announcements = lock(core).announcements().to_vec();
                let patch = (PATCH_VERSION_EVENT, patch_version.as_str());
                let events = std::iter::once(patch)
                    .chain(announcements.iter().map(|(n, d)| (n.as_str(), d.as_str())));
                for (name, data) in events {
                    let _ = conn.publish(
                        now,
                        name.as_bytes(),
                        Some(data.as_bytes()),
                        Visibility::Private,
                        PATCH_VERSION_TTL,
                    );
                }
                report(Status::Connected {
                    ota_succeeded: self.ota_succeeded,
                    patch_version,
                });
            }
            DeviceEvent::FunctionCall(call) => {
                let name = String::from_utf8_lossy(&call.name).into_owned();
                let argument = String::from_utf8_lossy(&call.argument).into_owned();
                // Only registered functions are delivered, and all of them are Tinker's.
                let result = lock(core).call(&name, &argument).unwrap_or(-1);
                let _ = conn.function_return(call.call, result);
                report(Status::Called {
                    name,
                    argument,
                    result,
                });
            }
            DeviceEvent::VariableRequest(req) => {
                let name = String::from_utf8_lossy(&req.name).into_owned();
                let v = lock(core).variable(&name);
                if let Some(value) = v.as_ref().and_then(VariableValue::to_wire) {
                    let _ = conn.variable_value(req.request, value);
                }
                report(Status::Read { name });
            }
            DeviceEvent::UpdateStarted { info, .. } => {
                report(Status::UpdateStarted { size: info.size });
            }
            DeviceEvent::UpdateFinished { size } => {
                report(Status::UpdateFinished { size });
                return Ok(AfterEvent::Reset);
            }
            DeviceEvent::UpdateFailed(why) => {
                report(Status::UpdateFailed {
                    reason: ota_failure_words(why, self.refusals.take_refusal()),
                });
            }
            DeviceEvent::Signal(on) => report(Status::Signal(on)),
            DeviceEvent::Event(event) => report(Status::EventReceived {
                name: String::from_utf8_lossy(&event.name).into_owned(),
                data: String::from_utf8_lossy(&event.data).into_owned(),
                private: event.private,
            }),
            _ => {}
        }
        Ok(AfterEvent::Continue)
    }
}

/// Runs a Core forever: boot, connect, run sessions, reset after an update, reconnect after a lost link.
pub async fn run(
    core: SharedCore,
    cloud: CloudConfig,
    mut report: Box<dyn FnMut(Status) + Send>,
) -> Result<(), CoreError> {
    let booted = lock(&core).boot()?;
    report(Status::Booted(booted));
    let mut seed = cloud.seed;
    let mut addresses = CloudAddresses::parse(&cloud.address);
    loop {
        let address = addresses.current().to_owned();
        let end = match tokio::net::TcpStream::connect(&address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                seed = seed.wrapping_add(1);
                session(
                    &core,
                    stream,
                    &cloud.server_key,
                    cloud.faults,
                    seed,
                    &mut *report,
                )
                .await?
            }
            Err(e) => {
                report(Status::Disconnected {
                    reason: format!("connect {address}: {e}"),
                });
                SessionEnd::Lost
            }
        };
        if end == SessionEnd::Lost {
            addresses.failed();
        }
        after_session(&core, end, cloud.reconnect_delay, &mut *report).await?;
    }
}

/// What a Core does between sessions, over either transport: boots again after an update, or waits `delay`
/// before reconnecting after a lost session.
pub(crate) async fn after_session(
    core: &SharedCore,
    end: SessionEnd,
    delay: std::time::Duration,
    report: &mut (dyn FnMut(Status) + Send),
) -> Result<(), CoreError> {
    match end {
        SessionEnd::Reboot => {
            let booted = lock(core).boot()?;
            report(Status::Booted(booted));
        }
        SessionEnd::Lost => tokio::time::sleep(delay).await,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_address_passes_to_the_next_and_round_again() {
        let mut a = CloudAddresses::parse(" 127.0.0.1:1, ,127.0.0.1:2,127.0.0.1:3 ");
        assert_eq!(a.len(), 3);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(a.current().to_owned());
            a.failed();
        }
        assert_eq!(
            seen,
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"]
        );
        let mut one = CloudAddresses::parse("h:5683");
        one.failed();
        assert_eq!(one.current(), "h:5683");
        assert!(CloudAddresses::parse("").is_empty());
    }

    #[test]
    fn update_failures_are_told_in_words() {
        let refused = ota_failure_words(
            OtaFailure::Sink(SinkError::Storage),
            Some("not a firmware image: the reset vector does not point into the image".into()),
        );
        assert_eq!(
            refused,
            "the Core refused the image: not a firmware image: the reset vector does not point into the image"
        );
        let plain = ota_failure_words(OtaFailure::Sink(SinkError::Storage), None);
        assert_eq!(plain, "the Core refused the image: storage write failed");
        assert!(!ota_failure_words(OtaFailure::Timeout, None).contains("Timeout"));
    }
}
