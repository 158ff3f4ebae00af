//! `spark demo --rotate`: the server-key half of the Spark team's response to Heartbleed (April 2014), replayed
//! on the demo's fleet once it is up.
//!
//! 1. **Rotate.** The local cloud makes a new server key and keeps the old one for a migration window
//!    ([`Cloud::rotate_server_key`](spark_cloud::Cloud::rotate_server_key)); connected Cores stay connected.
//! 2. **Split.** The fleet as `GET /v1/devices` shows it through spark-api: each Core's `server_key` (`previous`
//!    for every Core that connected before the rotation).
//! 3. **Move.** A Core has no over-the-air path for its server key: its owner puts it in DFU mode and writes the
//!    new public key and the cloud's address to its external flash, as `spark keys server` does (the same
//!    `ServerKeyImage` and spark-dfu write of the server-key item, to the Core's simulated bootloader), and the
//!    leave request resets it. The Core boots with what its flash now holds, connects, and is listed on the
//!    `current` key. A few Cores move at a time (`--jobs`).
//! 4. **Split again**, then **retire** the old key once no Core remains on it.
//! 5. **Refuse.** A Core left in a drawer through all this (a fresh identity, provisioned like the fleet's, still
//!    holding the old key) connects once before the retirement, and is accepted (the window is open), and once
//!    after, and is refused.
//!
//! The result is a [`Rotation`], part of the demo's report and of its `--json`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use spark_api::Client;
use spark_dfu::host::Options;
use spark_dfu::ops;
use spark_dfu::platform::server_key::{KeyFormat, ServerAddress, ServerKeyImage};
use spark_dfu::platform::{Item, Platform};
use spark_protocol::DeviceId;
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::session::Instant as SessionInstant;
use spark_protocol::session::device::{
    DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware, RsaHandshake,
};
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Cable, DemoError, LocalCloud, Observer, Powered, Progress, lock_core};
use spark_cloud::rotation::fingerprint;
use spark_cloud::system_rng;

/// How long a moved Core has to come back on the new key.
const MOVE_WAIT: Duration = Duration::from_secs(60);
/// How long the refused handshake may take to be refused.
const PROBE_WAIT: Duration = Duration::from_secs(10);
/// How often the fleet is listed while waiting.
const LIST_PAUSE: Duration = Duration::from_millis(150);

/// How many of the fleet's Cores `GET /v1/devices` lists on each key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct KeySplit {
    /// On the current (new) key.
    pub(crate) current: usize,
    /// On the previous (old) key.
    pub(crate) previous: usize,
    /// Connected on a key since retired.
    pub(crate) retired: usize,
    /// Not connected since the cloud started (no `server_key`).
    pub(crate) unknown: usize,
}

/// What `--rotate` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Rotation {
    /// The old server key's fingerprint (SHA-256 of its public key, first 16 hex digits).
    pub(crate) old_key: String,
    /// The new server key's fingerprint.
    pub(crate) new_key: String,
    /// The fleet right after the rotation.
    pub(crate) before: KeySplit,
    /// The fleet once the moves are over.
    pub(crate) after: KeySplit,
    /// Cores in the fleet.
    pub(crate) cores: usize,
    /// Cores that got the new key over DFU and came back on it.
    pub(crate) moved: usize,
    /// The Cores that did not, with why.
    pub(crate) failed: Vec<String>,
    /// The address written with the key (the cloud's device listener).
    pub(crate) address: String,
    /// From the rotation to the last Core back on the new key, in seconds.
    pub(crate) move_seconds: f64,
    /// The slowest single move (DFU mode, write, reset, back on the cloud), in seconds.
    pub(crate) slowest_move_seconds: f64,
    /// Whether the old key was retired (only once no Core remained on it).
    pub(crate) retired: bool,
    /// Whether the Core left in a drawer, on the old key, was accepted before the retirement.
    pub(crate) accepted_before_retirement: bool,
    /// Handshakes made with the old key after the retirement.
    pub(crate) probes_after_retirement: usize,
    /// Of those, how many the cloud refused.
    pub(crate) refused_after_retirement: usize,
}

impl Rotation {
    /// Every Core moved, the old key retired, and a handshake on it refused.
    pub(crate) fn succeeded(&self) -> bool {
        self.failed.is_empty()
            && self.retired
            && self.after.previous == 0
            && self.accepted_before_retirement
            && self.refused_after_retirement == self.probes_after_retirement
            && self.probes_after_retirement > 0
    }

    /// One line saying what went wrong, for the exit status.
    pub(crate) fn failure(&self) -> String {
        if !self.failed.is_empty() {
            format!(
                "{} of {} Cores were not moved to the new server key: {}",
                self.failed.len(),
                self.cores,
                self.failed.join("; ")
            )
        } else if !self.retired {
            format!(
                "{} Cores remain on the old server key: it was not retired",
                self.after.previous
            )
        } else if !self.accepted_before_retirement {
            "a Core on the old key was not accepted during the migration window".to_owned()
        } else {
            format!(
                "{} of {} handshakes on the retired key were accepted",
                self.probes_after_retirement - self.refused_after_retirement,
                self.probes_after_retirement
            )
        }
    }
}

/// The report's lines for the rotation, one per phase.
pub(crate) fn print(rotation: Option<&Rotation>) {
    let Some(r) = rotation else { return };
    crate::out!("");
    crate::out!(
        "rotate: new server key {}, previous {} kept for the migration window",
        r.new_key,
        r.old_key
    );
    crate::out!(
        "split: {} Cores on the previous key, {} on the current (GET /v1/devices)",
        r.before.previous,
        r.before.current
    );
    crate::out!(
        "move: {}/{} Cores got the new server key and {} over DFU and reconnected on it ({:.1} s, slowest {:.1} s)",
        r.moved,
        r.cores,
        r.address,
        r.move_seconds,
        r.slowest_move_seconds
    );
    for why in &r.failed {
        crate::out!("  not moved: {why}");
    }
    crate::out!(
        "split: {} Cores on the previous key, {} on the current",
        r.after.previous,
        r.after.current
    );
    if r.retired {
        crate::out!(
            "retire: previous key retired; a Core left in a drawer on it: {} before, refused after ({} of {} handshakes refused)",
            if r.accepted_before_retirement {
                "accepted"
            } else {
                "NOT accepted"
            },
            r.refused_after_retirement,
            r.probes_after_retirement
        );
    } else {
        crate::out!(
            "retire: not retired, {} Cores still on the previous key",
            r.after.previous
        );
    }
}

/// Runs the rotation on the fleet (`powered` and the Cores the update took to USB, `unplugged`, which go back to
/// their places in `powered`). See the [module docs](self).
pub(super) async fn run(
    local: &LocalCloud,
    observer: &Arc<dyn Observer>,
    powered: &mut [Powered],
    unplugged: &mut Vec<(usize, Powered)>,
    ids: &[String],
    jobs: usize,
) -> Result<Rotation, DemoError> {
    for (index, core) in unplugged.drain(..) {
        powered[index] = core;
    }
    let cloud = Arc::clone(&local.running.cloud);
    let api = &local.api;

    observer.progress(Progress::Phase("rotating the server key"));
    let started = Instant::now();
    let keys = tokio::task::spawn_blocking(move || cloud.rotate_server_key())
        .await
        .map_err(|e| DemoError::Cloud(e.to_string()))?
        .map_err(|e| DemoError::Cloud(format!("rotating the server key: {e}")))?;
    let Some(old) = keys.previous.clone() else {
        return Err(DemoError::Cloud("the rotation kept no previous key".into()));
    };
    let short = |key: &RsaPrivateKey| fingerprint(key)[..16].to_owned();
    let before = split(api, ids).await?;

    observer.progress(Progress::Phase("moving the Cores to the new key over USB"));
    let image = Arc::new(server_key_image(
        &keys.current.public_key(),
        local.device_addr,
    )?);
    let moves = move_fleet(api, observer, powered, ids, &image, jobs).await?;
    let move_seconds = started.elapsed().as_secs_f64();
    let after = split(api, ids).await?;
    let mut failed = Vec::new();
    let mut slowest = Duration::ZERO;
    for (id, result) in ids.iter().zip(moves) {
        match result {
            Ok(took) => slowest = slowest.max(took),
            Err(why) => failed.push(format!("{id}: {why}")),
        }
    }

    let mut rotation = Rotation {
        old_key: short(&old),
        new_key: short(&keys.current),
        before,
        after,
        cores: ids.len(),
        moved: ids.len() - failed.len(),
        failed,
        address: local.device_addr.to_string(),
        move_seconds,
        slowest_move_seconds: slowest.as_secs_f64(),
        retired: false,
        accepted_before_retirement: false,
        probes_after_retirement: 0,
        refused_after_retirement: 0,
    };
    if rotation.after.previous > 0 || !rotation.failed.is_empty() {
        return Ok(rotation);
    }

    // A Core nobody moved: provisioned like the fleet's, holding the old key.
    let (id, key) = drawer_core(api).await?;
    let old_public = old.public_key();
    rotation.accepted_before_retirement =
        probe(local.device_addr, id, &key, &old_public).await == Probe::Accepted;

    observer.progress(Progress::Phase("retiring the old key"));
    let cloud = Arc::clone(&local.running.cloud);
    tokio::task::spawn_blocking(move || cloud.retire_server_key())
        .await
        .map_err(|e| DemoError::Cloud(e.to_string()))?
        .map_err(|e| DemoError::Cloud(format!("retiring the old server key: {e}")))?;
    rotation.retired = true;
    rotation.probes_after_retirement += 1;
    if probe(local.device_addr, id, &key, &old_public).await == Probe::Refused {
        rotation.refused_after_retirement += 1;
    }
    Ok(rotation)
}

/// A Core left in a drawer: a new identity and key, provisioned through the API as the fleet's were.
async fn drawer_core(api: &Client) -> Result<(DeviceId, RsaPrivateKey), DemoError> {
    let key = tokio::task::spawn_blocking(|| RsaPrivateKey::generate(&mut system_rng(), 1024))
        .await
        .map_err(|e| DemoError::Core(e.to_string()))?
        .map_err(|e| DemoError::Core(e.to_string()))?;
    let mut id = [0u8; 12];
    rand::Rng::fill_bytes(&mut system_rng(), &mut id);
    let id = DeviceId::from_bytes(id);
    let pem = key
        .public_key()
        .to_spki_pem()
        .map_err(|e| DemoError::Core(e.to_string()))?;
    api.send_public_key(&id.to_string(), &pem, Some("rsa"))
        .await?;
    Ok((id, key))
}

/// The server-key image `spark keys server KEY --host 127.0.0.1 --port PORT` writes to a Core: the new public key
/// and the address of the cloud's device listener.
fn server_key_image(key: &RsaPublicKey, listener: SocketAddr) -> Result<Vec<u8>, DemoError> {
    let ip = match listener {
        SocketAddr::V4(v4) => v4.ip().octets(),
        SocketAddr::V6(_) => Ipv4Addr::LOCALHOST.octets(),
    };
    let format = KeyFormat::CORE;
    let mut image = vec![0u8; format.len];
    let n = ServerKeyImage::emit(
        &key.to_spki_der(),
        format,
        Some(ServerAddress::Ipv4(ip)),
        Some(listener.port()),
        &mut image,
    )
    .map_err(|e| DemoError::Core(format!("the server-key image: {e}")))?;
    image.truncate(n);
    Ok(image)
}

/// The fleet's Cores on each key, as `GET /v1/devices` lists them.
async fn split(api: &Client, ids: &[String]) -> Result<KeySplit, DemoError> {
    let listed = api.list_devices().await?;
    let mut split = KeySplit::default();
    for device in listed.iter().filter(|d| ids.iter().any(|id| d.id == *id)) {
        match device.server_key.as_deref() {
            Some("current") => split.current += 1,
            Some("previous") => split.previous += 1,
            Some("retired") => split.retired += 1,
            _ => split.unknown += 1,
        }
    }
    Ok(split)
}

/// Moves every Core, `jobs` at a time; the time each took, or why it failed, in fleet order.
async fn move_fleet(
    api: &Client,
    observer: &Arc<dyn Observer>,
    powered: &mut [Powered],
    ids: &[String],
    image: &Arc<Vec<u8>>,
    jobs: usize,
) -> Result<Vec<Result<Duration, String>>, DemoError> {
    let permits = Arc::new(Semaphore::new(jobs.max(1)));
    let mut moves = JoinSet::new();
    for (index, (slot, id)) in powered.iter_mut().zip(ids).enumerate() {
        // The Core goes to its owner's desk: the task holds it until it is back on the cloud.
        let mut core = Powered {
            core: Arc::clone(&slot.core),
            cloud: slot.cloud.clone(),
            task: slot.task.take(),
        };
        let (api, observer, image, permits, id) = (
            api.clone(),
            Arc::clone(observer),
            Arc::clone(image),
            Arc::clone(&permits),
            id.clone(),
        );
        moves.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = move_core(&api, &*observer, &mut core, &id, &image).await;
            (index, result, core)
        });
    }
    let mut results: Vec<Result<Duration, String>> = vec![Err("not moved".into()); ids.len()];
    while let Some(done) = moves.join_next().await {
        let (index, result, core) = done.map_err(|e| DemoError::Core(e.to_string()))?;
        powered[index] = core;
        results[index] = result;
    }
    Ok(results)
}

/// One Core: DFU mode, the server-key image written over DFU with the leave request, the reset, and the wait
/// until the cloud lists it connected on the current key.
async fn move_core(
    api: &Client,
    observer: &dyn Observer,
    core: &mut Powered,
    device: &str,
    image: &Arc<Vec<u8>>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let total = image.len() as u64;
    observer.progress(Progress::UsbStarted { device, total });
    observer.progress(Progress::UsbStep {
        device,
        step: "entering DFU mode",
    });
    core.power_off().await;
    let bootloader = lock_core(&core.core)
        .enter_dfu()
        .map_err(|e| format!("DFU mode: {e}"))?;
    let written = Arc::clone(image);
    let (bootloader, result) = tokio::task::spawn_blocking(move || {
        let mut bootloader = bootloader;
        let mut cable = Cable {
            bootloader: &mut bootloader,
            realtime: true,
        };
        let options = Options {
            leave: true,
            ..Options::default()
        };
        let result = ops::write_item(
            &mut cable,
            Platform::Core,
            Item::ServerPublicKey,
            &written,
            options,
            |_| {},
        );
        (bootloader, result)
    })
    .await
    .map_err(|e| format!("DFU host: {e}"))?;
    result.map_err(|e| format!("writing the server key over DFU: {e}"))?;
    observer.progress(Progress::UsbWritten {
        device,
        written: total,
        total,
    });
    lock_core(&core.core)
        .leave_dfu(&bootloader)
        .map_err(|e| format!("after the leave request: {e}"))?;

    // The Core boots with the server key and address its external flash holds now.
    let (server_key, address) = held_server(core)?;
    core.cloud.server_key = server_key;
    core.cloud.address = address;
    core.cloud.seed = core.cloud.seed.wrapping_add(1 << 21);
    observer.progress(Progress::UsbStep {
        device,
        step: "reconnecting on the new key",
    });
    core.power_on();
    let deadline = Instant::now() + MOVE_WAIT;
    loop {
        if let Ok(listed) = api.list_devices().await
            && listed.iter().any(|d| {
                d.id == device && d.connected && d.server_key.as_deref() == Some("current")
            })
        {
            break;
        }
        if Instant::now() >= deadline {
            return Err("not back on the new key in time".into());
        }
        tokio::time::sleep(LIST_PAUSE).await;
    }
    let took = started.elapsed();
    observer.progress(Progress::UsbStep {
        device,
        step: "back on the new key",
    });
    Ok(took)
}

/// The server key and address (`host:port`) in the Core's external flash, where `spark keys server` writes them.
fn held_server(core: &Powered) -> Result<(RsaPublicKey, String), String> {
    let format = KeyFormat::CORE;
    let place = Platform::Core
        .location(Item::ServerPublicKey)
        .ok_or("the Core has no server-key place")?;
    let mut image = vec![0u8; format.len];
    lock_core(&core.core)
        .flash_mut()
        .read(place.address, &mut image)
        .map_err(|e| format!("reading the server key back: {e}"))?;
    let held = ServerKeyImage::parse(&image, format)
        .map_err(|e| format!("the server-key image the Core holds: {e}"))?;
    let key = RsaPublicKey::from_der(held.der)
        .map_err(|e| format!("the server key the Core holds: {e}"))?;
    let host = match held.address {
        Some(ServerAddress::Ipv4(ip)) => Ipv4Addr::from(ip).to_string(),
        Some(ServerAddress::Domain { name, .. }) => String::from_utf8_lossy(name).into_owned(),
        None => return Err("the Core holds no server address".into()),
    };
    let port = held.port.ok_or("the Core holds no server port")?;
    Ok((key, format!("{host}:{port}")))
}

/// How a handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The session came up.
    Accepted,
    /// The cloud ended the connection before it did.
    Refused,
    /// Neither, in time (or the connection could not be made).
    NoAnswer,
}

/// One handshake by device `id` (key `key`) holding `server` as the server's key; the connection is closed after.
async fn probe(
    addr: SocketAddr,
    id: DeviceId,
    key: &RsaPrivateKey,
    server: &RsaPublicKey,
) -> Probe {
    let (Ok(device_key), Ok(server_key)) = (
        RustCryptoPrivateKey::new(&key.as_ref_key()),
        RustCryptoPublicKey::new(&server.as_ref_key()),
    ) else {
        return Probe::NoAnswer;
    };
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return Probe::NoAnswer;
    };
    let handshake = RsaHandshake::new(device_key, server_key, system_rng());
    let connection = DeviceConnection::new(
        SessionInstant::ZERO,
        DeviceConfig::new(id),
        handshake,
        NoFirmware,
    );
    let mut driver = Driver::with_vec(connection, Tokio(stream), TokioClock::new());
    let outcome = tokio::time::timeout(PROBE_WAIT, async {
        loop {
            match driver.next_event().await {
                Ok(DeviceEvent::Connected) => return Probe::Accepted,
                Ok(_) => {}
                Err(_) => return Probe::Refused,
            }
        }
    })
    .await;
    outcome.unwrap_or(Probe::NoAnswer)
}
