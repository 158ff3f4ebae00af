//! The fleet demo behind `spark demo`: the 2014 CC3000 deep update, rolled out to a fleet of virtual Cores through
//! a local cloud, with nothing to set up.
//!
//! [`run`] starts, in the calling process, the local cloud on free loopback ports (state in a temporary directory,
//! a fresh server key) and a fleet of [`VirtualCore`]s: some on CC3000 service pack 1.24, some already on 1.28, a
//! few behind an unreliable link (dropped connections and stalled writes, from a seeded generator). It provisions
//! their public keys, and from then on it drives the rollout only through `spark-api`, as an operator would:
//!
//! 1. list the fleet until it is online;
//! 2. read each Core's CC3000 patch version (the `cc3000` variable, else the `spark/cc3000-patch-version` event)
//!    and check its link with a few Tinker calls (`digitalread`);
//! 3. plan: a Core already on the image's service pack is skipped; a Core whose link failed the check gets a DfuSe
//!    file for USB (the image at the application address, the Core's DFU VID:PID), as the 2014 rollout told
//!    owners of badly connected Cores to use `dfu-util`; every other Core is updated over the air;
//! 4. flash the over-the-air Cores, a bounded number at a time, following the cloud's `spark/flash/*` events;
//!    meanwhile flash the USB Cores as their owners would: the Core is put in DFU mode (it leaves the cloud and
//!    its bootloader, spark-dfu's simulated one holding the Core's flash, answers on USB), the DfuSe file written
//!    to disk is flashed through spark-dfu's DFU host as `spark flash --usb` does (every element to its target's
//!    alt setting, read back, leave, the bootloader's poll timeouts slept in real time as dfu-util sleeps them),
//!    and the leave request resets the Core into what is now at 0x08005000;
//! 5. verify each one: it comes back, reports the new service pack, and answers a Tinker call. A USB flash that
//!    fails leaves its Core in DFU mode: nothing half written is ever booted.
//!
//! The result is a [`Report`] with one [`Row`] per Core and a [`Summary`]. What happens along the way is told to an
//! [`Observer`] (the CLI draws progress bars from it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use serde::Serialize;
use spark_api::{Client, Credentials, FirmwareFile, StreamItem, TokenLifetime};
use spark_cc3000::ServicePack;
use spark_dfu::file::dfuse::{DfuseFile, SingleElement};
use spark_dfu::host::proto::Setup;
use spark_dfu::host::{Event as DfuEvent, Options, TransferError};
use spark_dfu::ops;
use spark_dfu::platform::{Item, Platform, core_map};
use spark_dfu::sim::{Fault, SparkCore};
use spark_dfu::transport::blocking;
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use spark_cloud::devices::{self, LiveHub};
use spark_cloud::hub::DeviceHub;
use spark_cloud::{self as local_cloud, system_rng};
use spark_vcore::cc3000::ServicePackImages;
use spark_vcore::image::{SYNTHETIC_DEEP_UPDATE_NAME, synthetic_deep_update};
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{self as core_run, CloudConfig, SharedCore, Status};
use spark_vcore::{PATCH_VERSION_EVENT, VirtualCore};

#[path = "nodes.rs"]
pub(crate) mod nodes;
#[path = "rotate.rs"]
pub(crate) mod rotate;

/// What the Spark team named the deep-update image of the 2014 rollout; `--image` runs it where a user has it.
pub(crate) const SPARK_IMAGE_NAME: &str = "deep_update_2014_06.bin";
/// The faults of an unreliable Core's link: one write in 33 kills the connection, writes stall up to 0.8 s.
pub(crate) const UNRELIABLE_LINK: LinkFaults = LinkFaults {
    drop_rate: 0.03,
    stall_ms: 800,
};

/// Tinker calls of the link check.
const LINK_CHECK_CALLS: usize = 5;
/// A link-check call that takes longer than this has failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A link whose calls take this long on average is not fit for an over-the-air update...
const SLOW_LINK: Duration = Duration::from_millis(150);
/// ...nor one that is this many times slower than the fleet's median.
const SLOW_FACTOR: u32 = 4;
/// How long the fleet has to come online.
const ONLINE_WAIT: Duration = Duration::from_secs(20);
/// How long one Core has for its over-the-air update, reset and verification.
const OTA_WAIT: Duration = Duration::from_secs(40);
/// How long one Core has for its USB flash (some 10 s of the bootloader's poll timeouts), reset and
/// verification over its unreliable link.
const USB_WAIT: Duration = Duration::from_secs(45);
/// A verification call the link lost is tried again after this pause.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Over-the-air attempts per Core.
const OTA_ATTEMPTS: u32 = 2;
/// The demo user.
const USER: &str = "demo@localhost";

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct DemoConfig {
    /// Cores in the fleet.
    pub(crate) count: usize,
    /// Cores (on 1.24) behind an unreliable link.
    pub(crate) unreliable: usize,
    /// Cores already on 1.28.
    pub(crate) patched: usize,
    /// Seed of the fleet: which Core is which, the device ids and keys, the link faults.
    pub(crate) seed: u64,
    /// The deep-update image.
    pub(crate) image: Vec<u8>,
    /// Its file name (reported to the cloud with the flash request).
    pub(crate) image_name: String,
    /// Where the DfuSe file for USB updates is written.
    pub(crate) out: PathBuf,
    /// Over-the-air updates at a time.
    pub(crate) jobs: usize,
    /// Make every USB flash fail with a USB error at this control transfer (0-based, as spark-dfu's simulated
    /// bootloader counts them), to watch a failed flash.
    pub(crate) usb_fault: Option<u32>,
    /// After the update, rotate the server key and move the fleet to it (`--rotate`, [`rotate`]).
    pub(crate) rotate: bool,
    /// UDP (Electron-class) devices that join once the rollout is done (0: none).
    pub(crate) udp: usize,
    /// Cloud nodes: 1 is one cloud with its registry in a folder; more share a PostgreSQL registry and a NATS bus
    /// that the demo starts ([`nodes`]).
    pub(crate) nodes: usize,
}

/// How a Core gets (or does not need) the deep update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UpdatePath {
    /// Over the air, through the cloud.
    Ota,
    /// Over USB, with the DfuSe file.
    Usb,
    /// Already up to date.
    Skip,
}

impl UpdatePath {
    /// `ota`, `usb` or `skip`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UpdatePath::Ota => "ota",
            UpdatePath::Usb => "usb",
            UpdatePath::Skip => "skip",
        }
    }
}

/// What the link check found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct LinkCheck {
    /// Tinker calls made.
    pub(crate) calls: usize,
    /// Calls answered.
    pub(crate) answered: usize,
    /// Mean round trip of the answered calls, in milliseconds.
    pub(crate) mean_ms: Option<f64>,
    /// Times the cloud saw the Core go offline since the fleet started.
    pub(crate) went_offline: u32,
    /// The check's verdict.
    pub(crate) reliable: bool,
}

/// One Core's line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Row {
    /// The device id.
    pub(crate) device: String,
    /// How the simulation set up its link (`reliable` or `unreliable`); the plan does not read it.
    pub(crate) simulated_link: &'static str,
    /// The link check through the API.
    pub(crate) link_check: LinkCheck,
    /// The CC3000 service pack before.
    pub(crate) before: Option<String>,
    /// The CC3000 service pack after (for a Core left in DFU mode by a failed USB flash, what its CC3000 still
    /// holds).
    pub(crate) after: Option<String>,
    /// The update path.
    pub(crate) path: UpdatePath,
    /// Whether the Core got what its path promised: patched and back on Tinker (`ota`, `usb`), or nothing to do
    /// (`skip`).
    pub(crate) ok: bool,
    /// Over-the-air attempts, or USB flashes.
    pub(crate) attempts: u32,
    /// Seconds the Core's update took (flash, reset, verification); 0 for `skip`.
    pub(crate) seconds: f64,
    /// After an update: the Tinker call `digitalread("D7")` answered.
    pub(crate) tinker: Option<bool>,
    /// For `usb`: the DfuSe file flashed.
    pub(crate) file: Option<String>,
    /// For `usb`: what the DFU host did.
    pub(crate) usb: Option<UsbFlash>,
    /// What went wrong, if anything.
    pub(crate) error: Option<String>,
    /// With several nodes: the node that held the Core once the fleet was online.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
    /// With several nodes: the node whose REST API the demo's calls, reads and flash requests for this Core went
    /// through (another node than the one holding it, when there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) api_node: Option<String>,
}

/// How a USB flash went, as the DFU host saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct UsbFlash {
    /// Bytes of firmware in the DfuSe file.
    pub(crate) total: u64,
    /// Pages erased.
    pub(crate) erased: u32,
    /// Bytes the bootloader confirmed written.
    pub(crate) written: u64,
    /// Bytes read back and found equal to the file's.
    pub(crate) verified: u64,
    /// Milliseconds the bootloader asked the host to wait (`bwPollTimeout`), slept as dfu-util sleeps them.
    pub(crate) bootloader_ms: u64,
    /// The leave request reset the Core out of DFU mode (`false`: it waits in DFU mode, nothing new booted).
    pub(crate) reset: bool,
}

/// The totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// Cores in the fleet.
    pub(crate) cores: usize,
    /// The image rolled out (its file name, or the synthetic image's).
    pub(crate) image: String,
    /// The service pack the image carries.
    pub(crate) target: String,
    /// Cores planned over the air.
    pub(crate) ota_planned: usize,
    /// Of those, patched and verified.
    pub(crate) ota_patched: usize,
    /// Of those, not patched.
    pub(crate) ota_failed: usize,
    /// Cores planned over USB.
    pub(crate) usb: usize,
    /// Of those, patched and verified.
    pub(crate) usb_patched: usize,
    /// Of those, not patched.
    pub(crate) usb_failed: usize,
    /// Cores already up to date.
    pub(crate) skipped: usize,
    /// The folder this run's files go to (`--out`, else a new folder in the system temp directory).
    pub(crate) out_dir: String,
    /// The DfuSe file, when one was written.
    pub(crate) usb_file: Option<String>,
    /// The `dfu-util` command that flashes the file on a real Core.
    pub(crate) usb_command: Option<String>,
    /// The local cloud's REST API that served the run.
    pub(crate) api_url: String,
    /// Wall time of the whole run, in seconds.
    pub(crate) seconds: f64,
}

/// The result of [`run`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    /// One row per Core, in fleet order.
    pub(crate) rows: Vec<Row>,
    /// The totals.
    pub(crate) summary: Summary,
    /// The server-key rotation, with `--rotate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rotation: Option<rotate::Rotation>,
    /// The UDP devices, with `--udp N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) udp: Option<super::udp::UdpReport>,
    /// The nodes and their services, with `--nodes N` above 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cluster: Option<nodes::ClusterReport>,
}

impl Report {
    /// Whether every Core that needed the update (over the air or over USB) was patched and verified.
    pub(crate) fn succeeded(&self) -> bool {
        self.summary.ota_failed == 0
            && self.summary.usb_failed == 0
            && self
                .rotation
                .as_ref()
                .is_none_or(rotate::Rotation::succeeded)
            && self
                .udp
                .as_ref()
                .is_none_or(super::udp::UdpReport::succeeded)
    }
}

/// What [`run`] is doing, for progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub(crate) enum Progress<'a> {
    /// A new phase begins.
    Phase(&'a str),
    /// A line of its own: with several nodes, which node did what in a phase.
    Note(&'a str),
    /// The local cloud is up: its fleet console, and the account the demo signed in with.
    Console {
        /// The console's address.
        url: &'a str,
        /// The account's name.
        user: &'a str,
        /// Its password (made for this run).
        password: &'a str,
    },
    /// Cores online so far.
    Online {
        /// Online.
        online: usize,
        /// In the fleet.
        total: usize,
    },
    /// A Core's plan is made.
    Planned {
        /// The device.
        device: &'a str,
        /// Its path.
        path: UpdatePath,
        /// Its service pack.
        before: Option<&'a str>,
    },
    /// An over-the-air update begins (or begins again).
    OtaStarted {
        /// The device.
        device: &'a str,
        /// The image length.
        total: u64,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// Bytes sent to a Core.
    OtaSent {
        /// The device.
        device: &'a str,
        /// Sent so far.
        sent: u64,
        /// The image length.
        total: u64,
    },
    /// An over-the-air update moved on (`resetting`, `verifying`).
    OtaStep {
        /// The device.
        device: &'a str,
        /// What it does now.
        step: &'a str,
    },
    /// A Core's over-the-air update ended.
    OtaDone {
        /// The device.
        device: &'a str,
        /// Patched and verified.
        ok: bool,
        /// The service pack it reports, or what failed.
        detail: &'a str,
    },
    /// A USB update begins: the Core is put in DFU mode.
    UsbStarted {
        /// The device.
        device: &'a str,
        /// Bytes of firmware in the DfuSe file.
        total: u64,
    },
    /// Bytes the bootloader confirmed written.
    UsbWritten {
        /// The device.
        device: &'a str,
        /// Written so far.
        written: u64,
        /// Bytes of firmware in the file.
        total: u64,
    },
    /// A USB update moved on (`erasing`, `writing`, `verifying`, `leaving DFU mode`, `resetting`, `verifying on
    /// the cloud`).
    UsbStep {
        /// The device.
        device: &'a str,
        /// What it does now.
        step: &'a str,
    },
    /// A Core's USB update ended.
    UsbDone {
        /// The device.
        device: &'a str,
        /// Patched and verified.
        ok: bool,
        /// The service pack it reports, or what failed.
        detail: &'a str,
    },
}

/// Hears [`Progress`].
pub(crate) trait Observer: Send + Sync {
    /// Something happened.
    fn progress(&self, event: Progress<'_>);
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DemoError {
    /// The deep-update image named with `--image` is not there.
    #[error("the deep-update image {path} was not found")]
    ImageMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The image carries no CC3000 service pack.
    #[error("{0} carries no CC3000 service pack: it is not a deep update")]
    NotDeepUpdate(String),
    /// The fleet does not add up.
    #[error("{0}")]
    Fleet(String),
    /// The local cloud could not start.
    #[error("local cloud: {0}")]
    Cloud(String),
    /// A virtual Core could not be made.
    #[error("virtual Core: {0}")]
    Core(String),
    /// The cloud API refused something the demo needs.
    #[error("cloud API: {0}")]
    Api(#[from] spark_api::Error),
    /// The USB file could not be made.
    #[error("DfuSe file: {0}")]
    Dfu(String),
}

/// The image to roll out: the file at `path` (Spark's `deep_update_2014_06.bin`, say), else the synthetic deep
/// update this project builds ([`spark_vcore::image::synthetic_deep_update`], CC3000 SP 1.28), which needs no
/// data. Returns the image's name and bytes.
pub(crate) fn load_image(path: Option<&Path>) -> Result<(String, Vec<u8>), DemoError> {
    let Some(path) = path else {
        let image = synthetic_deep_update(ServicePack::SP_1_28);
        return Ok((SYNTHETIC_DEEP_UPDATE_NAME.to_owned(), image));
    };
    let name = path.file_name().map_or_else(
        || SPARK_IMAGE_NAME.to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    match std::fs::read(path) {
        Ok(bytes) => Ok((name, bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DemoError::ImageMissing {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(DemoError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The DfuSe file's name for the image `image_name`: its stem with `.dfu`.
pub(crate) fn usb_file_name(image_name: &str) -> String {
    let stem = Path::new(image_name)
        .file_stem()
        .map_or_else(|| "deep_update".into(), |s| s.to_string_lossy());
    format!("{stem}.dfu")
}

/// The DfuSe file that puts `image` at the Core's application address (alt setting 0, internal flash) for the
/// Core's DFU bootloader (VID:PID 1d50:607f), as `dfu-util -d 1d50:607f -a 0 -s 0x08005000 -D image` would.
pub(crate) fn usb_file(image: &[u8]) -> Result<Vec<u8>, DemoError> {
    let repr = SingleElement::for_item(Platform::Core, Item::UserFirmware, image)
        .ok_or_else(|| DemoError::Dfu("the Core has no user-firmware place".into()))?;
    let file = repr.to_vec().map_err(|e| DemoError::Dfu(e.to_string()))?;
    // What we hand to a user must read back as written.
    let parsed = DfuseFile::parse(&file).map_err(|e| DemoError::Dfu(e.to_string()))?;
    if parsed.first_address() != Some(core_map::FIRMWARE) {
        return Err(DemoError::Dfu("the written file does not read back".into()));
    }
    Ok(file)
}

/// The `dfu-util` command that flashes the USB file.
pub(crate) fn usb_command(file: &Path) -> String {
    let usb = Platform::Core.dfu_usb();
    format!(
        "dfu-util -d {:04x}:{:04x} -a 0 -s :leave -D {}",
        usb.vendor,
        usb.product,
        file.display()
    )
}

/// One Core as the simulation made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Old,
    Patched,
    Flaky,
}

/// Which Core is which: a seeded shuffle of `unreliable` flaky Cores, `patched` Cores on 1.28 and old ones.
fn fleet_kinds(config: &DemoConfig) -> Result<Vec<Kind>, DemoError> {
    if config.count == 0 {
        return Err(DemoError::Fleet("the fleet needs at least one Core".into()));
    }
    if config.unreliable + config.patched > config.count {
        return Err(DemoError::Fleet(format!(
            "{} unreliable and {} patched Cores do not fit in a fleet of {}",
            config.unreliable, config.patched, config.count
        )));
    }
    let mut kinds: Vec<Kind> = (0..config.count)
        .map(|i| {
            if i < config.unreliable {
                Kind::Flaky
            } else if i < config.unreliable + config.patched {
                Kind::Patched
            } else {
                Kind::Old
            }
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(config.seed);
    for i in (1..kinds.len()).rev() {
        let j = rng.random_range(0..=i);
        kinds.swap(i, j);
    }
    Ok(kinds)
}

/// What the event stream told about one device.
#[derive(Debug, Clone, Default)]
struct Heard {
    online: u32,
    offline: u32,
    patch_version: Option<String>,
    flash_sent: Option<(u64, u64)>,
    flash_outcome: Option<String>,
}

/// The user's event stream, folded per device; waiters are woken on every event.
struct Watcher {
    heard: Mutex<HashMap<String, Heard>>,
    changed: watch::Sender<u64>,
}

impl Watcher {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Heard>> {
        self.heard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn heard(&self, device: &str) -> Heard {
        self.lock().get(device).cloned().unwrap_or_default()
    }

    fn update(&self, device: &str, f: impl FnOnce(&mut Heard)) {
        f(self.lock().entry(device.to_owned()).or_default());
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn record(&self, event: &spark_api::Event) {
        let Some(device) = event.coreid.as_deref() else {
            return;
        };
        let data = event.data.as_deref().unwrap_or("");
        match event.name.as_str() {
            "spark/status" if data == "online" => self.update(device, |h| h.online += 1),
            "spark/status" if data == "offline" => self.update(device, |h| h.offline += 1),
            PATCH_VERSION_EVENT => {
                self.update(device, |h| h.patch_version = Some(data.to_owned()));
            }
            "spark/flash/progress" => {
                let parsed = data
                    .split_once('/')
                    .and_then(|(s, t)| Some((s.parse().ok()?, t.parse().ok()?)));
                if let Some(p) = parsed {
                    self.update(device, |h| h.flash_sent = Some(p));
                }
            }
            "spark/flash/status" if !data.starts_with("started") => {
                self.update(device, |h| h.flash_outcome = Some(data.to_owned()));
            }
            _ => {}
        }
    }

    /// Waits until `f` finds what it looks for in `device`'s record, or `deadline`.
    async fn wait<T>(
        &self,
        device: &str,
        deadline: tokio::time::Instant,
        mut f: impl FnMut(&Heard) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(found) = f(&self.heard(device)) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return f(&self.heard(device)),
            }
        }
    }
}

/// Everything one Core's update needs.
struct Fleet {
    /// The REST API of each node (one without a cluster).
    apis: Vec<Client>,
    /// Which of `apis` serves each device (absent: the first).
    routes: HashMap<String, usize>,
    watcher: Arc<Watcher>,
    observer: Arc<dyn Observer>,
    image: Arc<Vec<u8>>,
    image_name: String,
    target: ServicePack,
    usb_fault: Option<u32>,
}

/// A running Core's task.
type CoreTask = tokio::task::JoinHandle<Result<(), spark_vcore::CoreError>>;

/// What the demo holds of one Core: the model, how it connects, the task that runs it on the cloud.
struct Powered {
    core: SharedCore,
    cloud: CloudConfig,
    task: Option<CoreTask>,
}

impl Powered {
    /// Powers the Core on (boot, then connect and stay connected).
    fn power_on(&mut self) {
        let report = Box::new(|_: Status| {});
        self.task = Some(tokio::spawn(core_run::run(
            Arc::clone(&self.core),
            self.cloud.clone(),
            report,
        )));
    }

    /// Stops the Core's firmware (its connection drops), waiting until it is stopped.
    async fn power_off(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Powered {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Fleet {
    /// The REST API the demo talks to `device` through.
    fn api(&self, device: &str) -> &Client {
        let node = self.routes.get(device).copied().unwrap_or(0);
        &self.apis[node.min(self.apis.len() - 1)]
    }
}

fn lock_core(core: &SharedCore) -> MutexGuard<'_, VirtualCore> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the demo (inside a multi-threaded tokio runtime). See the [module docs](self).
pub(crate) async fn run(
    config: DemoConfig,
    services: Option<&nodes::Services>,
    observer: Arc<dyn Observer>,
) -> Result<Report, DemoError> {
    let started = Instant::now();
    let kinds = fleet_kinds(&config)?;
    let target = ServicePackImages::find(&config.image)
        .and_then(|images| images.version())
        .ok_or_else(|| DemoError::NotDeepUpdate(config.image_name.clone()))?;
    let work = tempfile::Builder::new()
        .prefix("spark-demo-")
        .tempdir()
        .map_err(|source| DemoError::Io {
            path: std::env::temp_dir(),
            source,
        })?;

    // One cloud in this process, or several nodes on a PostgreSQL registry and a NATS bus the demo starts.
    let (local, mut cluster) = if let Some(services) = services {
        observer.progress(Progress::Phase("starting the cloud nodes"));
        let cluster =
            nodes::Cluster::start(work.path(), config.nodes, services, &*observer).await?;
        (None, Some(cluster))
    } else {
        observer.progress(Progress::Phase("starting the local cloud"));
        (Some(LocalCloud::start(work.path()).await?), None)
    };
    let front = match (&local, &cluster) {
        (Some(local), _) => Front::one(local),
        (None, Some(cluster)) => cluster.front(),
        (None, None) => return Err(DemoError::Cloud("no cloud started".into())),
    };
    let api = front.apis[0].clone();
    observer.progress(Progress::Console {
        url: &format!("{}/console", front.api_url),
        user: USER,
        password: &front.password,
    });

    observer.progress(Progress::Phase("making the virtual Cores"));
    let cores = make_cores(&config, &kinds, work.path()).await?;
    let ids: Vec<String> = cores.iter().map(|c| c.id_hex().to_owned()).collect();

    observer.progress(Progress::Phase("provisioning the Cores' keys"));
    provision(&front, &cores).await?;
    if let Some(cluster) = &mut cluster {
        cluster.note_provisioned(&ids, &*observer);
    }

    // Listen to the fleet before it connects.
    let (watcher, listener) = listen_to_fleet(&api).await?;

    observer.progress(Progress::Phase("connecting the fleet"));
    let mut powered = power_on(cores, &kinds, &front, config.seed);
    let online = wait_online(&api, &watcher, &ids, &*observer).await?;
    // Each Core's calls go through another node than the one holding it.
    let (holders, routes) = match &mut cluster {
        Some(cluster) => cluster.route(&ids, &*observer),
        None => (Vec::new(), HashMap::new()),
    };

    observer.progress(Progress::Phase("reading patch versions and checking links"));
    let found = survey_fleet(&front.apis, &routes, &watcher, &ids, &online).await?;
    let mut rows = plan(&ids, found, &kinds, target, &*observer);
    if let Some(cluster) = &cluster {
        cluster.label_rows(&mut rows, &holders, &routes);
    }
    let usb_path = write_usb_file(&config, &mut rows, &*observer)?;

    // Over the air, a few at a time; over USB, every owner at their desk.
    observer.progress(Progress::Phase(if usb_path.is_some() {
        "updating over the air and over USB"
    } else {
        "updating over the air"
    }));
    let fleet = Arc::new(Fleet {
        apis: front.apis.clone(),
        routes: routes.clone(),
        watcher: Arc::clone(&watcher),
        observer: Arc::clone(&observer),
        image: Arc::new(config.image.clone()),
        image_name: config.image_name.clone(),
        target,
        usb_fault: config.usb_fault,
    });
    let mut unplugged = update_fleet(
        &fleet,
        &mut rows,
        &mut powered,
        usb_path.as_deref(),
        config.jobs,
    )
    .await?;
    if let Some(cluster) = &cluster {
        cluster.note_updated(&rows, &*observer);
    }
    let rotation = if config.rotate
        && let Some(local) = &local
    {
        let ran = rotate::run(
            local,
            &observer,
            &mut powered,
            &mut unplugged,
            &ids,
            config.jobs,
        );
        Some(ran.await?)
    } else {
        None
    };

    let udp = if config.udp > 0
        && let Some(local) = &local
    {
        observer.progress(Progress::Phase("UDP devices joining"));
        // Cores whose link check passed come first: the UDP devices are timed beside a TCP Core on a good link,
        // not beside one the simulation slowed down.
        let mut updated: Vec<&Row> = rows
            .iter()
            .filter(|r| r.error.is_none() && r.after.is_some())
            .collect();
        updated.sort_by_key(|r| !r.link_check.reliable);
        let online: Vec<String> = updated.iter().map(|r| r.device.clone()).collect();
        let udp = super::udp::run(
            &local.running.cloud,
            &local.hub,
            &api,
            work.path(),
            config.udp,
            config.seed,
            &online,
        );
        Some(udp.await?)
    } else {
        None
    };
    drop(unplugged);
    drop(powered);
    drop(listener);
    let api_url = front.api_url.clone();
    if let Some(local) = local {
        local.running.shutdown();
    }
    let cluster = match cluster {
        Some(cluster) => Some(cluster.stop(&*observer).await),
        None => None,
    };
    let summary = summarize(&rows, &config, target, usb_path, api_url, started.elapsed());
    Ok(Report {
        rows,
        summary,
        rotation,
        udp,
        cluster,
    })
}

/// What the fleet sees of the cloud, one node or several: where the Cores connect, whom they trust, and the REST
/// API of each node, logged in to the demo account.
pub(crate) struct Front {
    /// Each node's device listener.
    pub(crate) device_addrs: Vec<SocketAddr>,
    /// The server key every node answers with.
    pub(crate) server_key: RsaPublicKey,
    /// Each node's REST API, logged in.
    pub(crate) apis: Vec<Client>,
    /// The first node's REST API address.
    pub(crate) api_url: String,
    /// The demo account's password.
    pub(crate) password: String,
}

impl Front {
    fn one(local: &LocalCloud) -> Front {
        Front {
            device_addrs: vec![local.device_addr],
            server_key: local.server_key.clone(),
            apis: vec![local.api.clone()],
            api_url: local.api_url.clone(),
            password: local.password.clone(),
        }
    }
}

/// The cloud of the demo, in this process on free loopback ports, with an account logged in.
struct LocalCloud {
    running: local_cloud::Running,
    device_addr: SocketAddr,
    server_key: RsaPublicKey,
    hub: Arc<LiveHub>,
    api: Client,
    api_url: String,
    /// The demo account's password, shown with the console's address.
    password: String,
    _device_task: AbortOnDrop,
}

impl LocalCloud {
    /// Starts the cloud with its state under `work`, and signs an account in.
    async fn start(work: &Path) -> Result<LocalCloud, DemoError> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let cloud_config = local_cloud::Config {
            dir: work.join("cloud"),
            http: loopback,
            key_bits: 2048,
        };
        let hub = LiveHub::new();
        let cloud = tokio::task::spawn_blocking({
            let hub = Arc::clone(&hub);
            move || local_cloud::open(&cloud_config, hub as Arc<dyn DeviceHub>)
        })
        .await
        .map_err(|e| DemoError::Cloud(e.to_string()))?
        .map_err(|e| DemoError::Cloud(e.to_string()))?;
        let server_key = cloud
            .server_keys()
            .ok_or_else(|| DemoError::Cloud("the server key cannot be read".into()))?
            .current
            .public_key();
        let (device_addr, device_task) =
            devices::listen(Arc::clone(&cloud), Arc::clone(&hub), loopback)
                .await
                .map_err(|e| DemoError::Cloud(e.to_string()))?;
        let device_task = AbortOnDrop(device_task);
        let running = local_cloud::serve(Arc::clone(&cloud), loopback)
            .await
            .map_err(|e| DemoError::Cloud(e.to_string()))?;
        let api_url = format!("http://{}", running.http);

        // An account: created on the cloud's side (the REST API has no sign-up in spark-api), then a token
        // through the API like any user's.
        let password = {
            let mut bytes = [0u8; 12];
            rand::Rng::fill_bytes(&mut system_rng(), &mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        local_cloud::store::block_on(local_cloud::store::create_user(
            &**cloud.store(),
            USER,
            &password,
        ))
        .map_err(|e| DemoError::Cloud(e.to_string()))?;
        let anonymous = Client::builder()
            .base_url(api_url.clone())
            .no_proxy()
            .build()?;
        let grant = anonymous
            .login(
                &Credentials::new(USER, password.clone()),
                TokenLifetime::Default,
            )
            .await?;
        let api = anonymous.with_token(grant.access_token);
        Ok(LocalCloud {
            running,
            device_addr,
            server_key,
            hub,
            api,
            api_url,
            password,
            _device_task: device_task,
        })
    }
}

/// The fleet's Cores: identities from the seed, keys made off the runtime's threads; in `kinds` order.
async fn make_cores(
    config: &DemoConfig,
    kinds: &[Kind],
    work: &Path,
) -> Result<Vec<VirtualCore>, DemoError> {
    let mut made = JoinSet::new();
    for (index, kind) in kinds.iter().copied().enumerate() {
        let dir = work.join("cores").join(format!("core-{index:03}"));
        let seed = config.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        made.spawn_blocking(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut id = [0u8; 12];
            rng.fill_bytes(&mut id);
            let key = RsaPrivateKey::generate(&mut rng, 1024).map_err(|e| e.to_string())?;
            let sp = if kind == Kind::Patched {
                ServicePack::SP_1_28
            } else {
                ServicePack::SP_1_24
            };
            let core =
                VirtualCore::create_with_identity(&dir, sp, id, key).map_err(|e| e.to_string())?;
            Ok::<_, String>((index, core))
        });
    }
    let mut cores: Vec<Option<VirtualCore>> = (0..kinds.len()).map(|_| None).collect();
    while let Some(done) = made.join_next().await {
        let (index, core) = done
            .map_err(|e| DemoError::Core(e.to_string()))?
            .map_err(DemoError::Core)?;
        cores[index] = Some(core);
    }
    Ok(cores.into_iter().flatten().collect())
}

/// Sends each Core's public key through the API (the account becomes its owner); Core `i` through node `i % n`.
async fn provision(front: &Front, cores: &[VirtualCore]) -> Result<(), DemoError> {
    for (index, core) in cores.iter().enumerate() {
        let api = &front.apis[index % front.apis.len()];
        let pem = core
            .key()
            .public_key()
            .to_spki_pem()
            .map_err(|e| DemoError::Core(e.to_string()))?;
        api.send_public_key(core.id_hex(), &pem, Some("rsa"))
            .await?;
    }
    Ok(())
}

/// Opens the account's device event stream and records what it hears until the returned task is dropped.
async fn listen_to_fleet(api: &Client) -> Result<(Arc<Watcher>, AbortOnDrop), DemoError> {
    let watcher = Arc::new(Watcher {
        heard: Mutex::new(HashMap::new()),
        changed: watch::channel(0).0,
    });
    let mut stream = api.subscribe_mine(None);
    match tokio::time::timeout(Duration::from_secs(10), stream.next_item()).await {
        Ok(Some(Ok(StreamItem::Connected))) => {}
        Ok(Some(Err(e))) => return Err(DemoError::Api(e)),
        _ => {
            return Err(DemoError::Cloud(
                "the event stream did not open within 10 s".into(),
            ));
        }
    }
    let listener = AbortOnDrop(tokio::spawn({
        let watcher = Arc::clone(&watcher);
        async move {
            while let Some(item) = stream.next_item().await {
                if let Ok(StreamItem::Event(event)) = item {
                    watcher.record(&event);
                }
            }
        }
    }));
    Ok((watcher, listener))
}

/// Powers every Core on against the cloud (the flaky ones over an unreliable link).
/// Core `i` knows every node, node `i % n` first: the fleet spreads over the nodes and moves on when one fails.
fn power_on(cores: Vec<VirtualCore>, kinds: &[Kind], front: &Front, seed: u64) -> Vec<Powered> {
    let mut powered: Vec<Powered> = Vec::with_capacity(kinds.len());
    for (index, (core, kind)) in cores.into_iter().zip(kinds).enumerate() {
        let faults = if *kind == Kind::Flaky {
            UNRELIABLE_LINK
        } else {
            LinkFaults::RELIABLE
        };
        let mut addresses = front.device_addrs.clone();
        let first = index % addresses.len();
        addresses.rotate_left(first);
        let address = addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let core_config = CloudConfig {
            address,
            server_key: front.server_key.clone(),
            faults,
            seed: seed.wrapping_add((index as u64) << 32),
            reconnect_delay: Duration::from_millis(200),
        };
        let mut core = Powered {
            core: Arc::new(Mutex::new(core)),
            cloud: core_config,
            task: None,
        };
        core.power_on();
        powered.push(core);
    }
    powered
}

/// Patch versions and link checks of every Core, all at once, in `ids` order.
async fn survey_fleet(
    apis: &[Client],
    routes: &HashMap<String, usize>,
    watcher: &Arc<Watcher>,
    ids: &[String],
    online: &[bool],
) -> Result<Vec<(Option<String>, LinkCheck)>, DemoError> {
    let mut surveys = JoinSet::new();
    for (index, id) in ids.iter().enumerate() {
        let api = apis[routes.get(id).copied().unwrap_or(0)].clone();
        let watcher = Arc::clone(watcher);
        let id = id.clone();
        let reachable = online[index];
        surveys.spawn(async move { (index, survey(&api, &watcher, &id, reachable).await) });
    }
    let mut found: Vec<(Option<String>, LinkCheck)> = vec![Default::default(); ids.len()];
    while let Some(done) = surveys.join_next().await {
        let (index, result) = done.map_err(|e| DemoError::Core(e.to_string()))?;
        found[index] = result;
    }
    judge_links(&mut found);
    Ok(found)
}

/// The plan: one row per Core, up to date (skip), over the air, or over USB when its link is unreliable.
fn plan(
    ids: &[String],
    found: Vec<(Option<String>, LinkCheck)>,
    kinds: &[Kind],
    target: ServicePack,
    observer: &dyn Observer,
) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::with_capacity(ids.len());
    for (index, (id, (before, check))) in ids.iter().zip(found).enumerate() {
        let current = before
            .as_deref()
            .and_then(|v| v.parse::<ServicePack>().ok());
        let path = match current {
            Some(sp) if sp >= target => UpdatePath::Skip,
            _ if !check.reliable => UpdatePath::Usb,
            _ => UpdatePath::Ota,
        };
        observer.progress(Progress::Planned {
            device: id,
            path,
            before: before.as_deref(),
        });
        rows.push(Row {
            device: id.clone(),
            simulated_link: if kinds[index] == Kind::Flaky {
                "unreliable"
            } else {
                "reliable"
            },
            link_check: check,
            after: before.clone(),
            before,
            path,
            ok: path == UpdatePath::Skip,
            attempts: 0,
            seconds: 0.0,
            tinker: None,
            file: None,
            usb: None,
            error: None,
            node: None,
            api_node: None,
        });
    }
    rows
}

/// Writes one DfuSe file for every Core planned over USB (none planned: nothing written).
fn write_usb_file(
    config: &DemoConfig,
    rows: &mut [Row],
    observer: &dyn Observer,
) -> Result<Option<PathBuf>, DemoError> {
    if !rows.iter().any(|r| r.path == UpdatePath::Usb) {
        return Ok(None);
    }
    observer.progress(Progress::Phase("writing the DfuSe file for USB"));
    let file = usb_file(&config.image)?;
    std::fs::create_dir_all(&config.out).map_err(|source| DemoError::Io {
        path: config.out.clone(),
        source,
    })?;
    let path = config.out.join(usb_file_name(&config.image_name));
    std::fs::write(&path, &file).map_err(|source| DemoError::Io {
        path: path.clone(),
        source,
    })?;
    for row in rows.iter_mut().filter(|r| r.path == UpdatePath::Usb) {
        row.file = Some(path.display().to_string());
    }
    Ok(Some(path))
}

/// Runs every planned update (over the air at most `jobs` at once) and records the outcomes in `rows`. Returns
/// the Cores that went to their owner's desk, back on the cloud.
async fn update_fleet(
    fleet: &Arc<Fleet>,
    rows: &mut [Row],
    powered: &mut [Powered],
    usb_path: Option<&Path>,
    jobs: usize,
) -> Result<Vec<(usize, Powered)>, DemoError> {
    let permits = Arc::new(Semaphore::new(jobs.max(1)));
    let mut updates = JoinSet::new();
    let mut unplugged: Vec<(usize, Powered)> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let fleet = Arc::clone(fleet);
        let device = row.device.clone();
        match (row.path, usb_path) {
            (UpdatePath::Ota, _) => {
                let permits = Arc::clone(&permits);
                updates.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    (index, update_over_the_air(&fleet, &device).await, None)
                });
            }
            (UpdatePath::Usb, Some(file)) => {
                // The Core goes to its owner's desk: the update task holds it until it is back on the cloud.
                let mut core = Powered {
                    core: Arc::clone(&powered[index].core),
                    cloud: powered[index].cloud.clone(),
                    task: powered[index].task.take(),
                };
                let file = file.to_owned();
                updates.spawn(async move {
                    let outcome = update_over_usb(&fleet, &device, &mut core, &file).await;
                    (index, outcome, Some(core))
                });
            }
            _ => {}
        }
    }
    while let Some(done) = updates.join_next().await {
        let (index, outcome, core) = done.map_err(|e| DemoError::Core(e.to_string()))?;
        if let Some(core) = core {
            unplugged.push((index, core));
        }
        let row = &mut rows[index];
        row.attempts = outcome.attempts;
        row.seconds = outcome.elapsed.as_secs_f64();
        row.tinker = outcome.tinker;
        if outcome.after.is_some() {
            row.after = outcome.after;
        }
        row.usb = outcome.usb;
        row.ok = outcome.error.is_none();
        row.error = outcome.error;
    }
    Ok(unplugged)
}

/// The run's totals.
fn summarize(
    rows: &[Row],
    config: &DemoConfig,
    target: ServicePack,
    usb_path: Option<PathBuf>,
    api_url: String,
    elapsed: Duration,
) -> Summary {
    let count = |path: UpdatePath, ok: bool| {
        rows.iter()
            .filter(|r| r.path == path && (!ok || r.ok))
            .count()
    };
    let (ota_planned, ota_patched) = (count(UpdatePath::Ota, false), count(UpdatePath::Ota, true));
    let (usb_planned, usb_patched) = (count(UpdatePath::Usb, false), count(UpdatePath::Usb, true));
    Summary {
        cores: rows.len(),
        image: config.image_name.clone(),
        target: target.to_string(),
        ota_planned,
        ota_patched,
        ota_failed: ota_planned - ota_patched,
        usb: usb_planned,
        usb_patched,
        usb_failed: usb_planned - usb_patched,
        skipped: count(UpdatePath::Skip, false),
        usb_command: usb_path.as_deref().map(usb_command),
        out_dir: config.out.display().to_string(),
        usb_file: usb_path.map(|p| p.display().to_string()),
        api_url,
        seconds: elapsed.as_secs_f64(),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lists the fleet until every Core has been online, or [`ONLINE_WAIT`]. Returns which Cores were seen online.
async fn wait_online(
    api: &Client,
    watcher: &Watcher,
    ids: &[String],
    observer: &dyn Observer,
) -> Result<Vec<bool>, DemoError> {
    let deadline = Instant::now() + ONLINE_WAIT;
    let mut seen = vec![false; ids.len()];
    loop {
        let listed = api.list_devices().await?;
        for (i, id) in ids.iter().enumerate() {
            let connected = listed.iter().any(|d| d.id == *id && d.connected);
            seen[i] |= connected || watcher.heard(id).online > 0;
        }
        let online = seen.iter().filter(|s| **s).count();
        observer.progress(Progress::Online {
            online,
            total: ids.len(),
        });
        if online == ids.len() || Instant::now() >= deadline {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads a Core's patch version and checks its link with a few Tinker calls.
async fn survey(
    api: &Client,
    watcher: &Watcher,
    device: &str,
    reachable: bool,
) -> (Option<String>, LinkCheck) {
    let mut check = LinkCheck::default();
    let mut before = None;
    if reachable {
        if let Ok(Ok(v)) = tokio::time::timeout(CALL_TIMEOUT, api.variable(device, "cc3000")).await
        {
            before = v.result.as_str().map(str::to_owned);
        }
        let mut total = Duration::ZERO;
        for _ in 0..LINK_CHECK_CALLS {
            check.calls += 1;
            let t = Instant::now();
            let answer =
                tokio::time::timeout(CALL_TIMEOUT, api.call_function(device, "digitalread", "D7"))
                    .await;
            match answer {
                Ok(Ok(r)) if r.return_value >= 0 => {
                    check.answered += 1;
                    total += t.elapsed();
                    // Two calls are enough to tell a link this slow: stopping short fails the check.
                    if check.answered >= 2 && total / check.answered as u32 > 2 * SLOW_LINK {
                        break;
                    }
                }
                // A link that fails a call is not fit for an update: no need to insist.
                _ => break,
            }
        }
        if check.answered > 0 {
            check.mean_ms = Some(total.as_secs_f64() * 1000.0 / check.answered as f64);
        }
    }
    if before.is_none() {
        before = watcher.heard(device).patch_version;
    }
    if before.is_none()
        && let Ok(Ok(info)) = tokio::time::timeout(CALL_TIMEOUT, api.device(device)).await
    {
        before = info.cc3000_patch_version;
    }
    check.went_offline = watcher.heard(device).offline;
    (before, check)
}

/// A link is fit for an over-the-air update when every check call was answered, the Core never dropped off, and
/// its calls are not much slower than the fleet's.
fn judge_links(found: &mut [(Option<String>, LinkCheck)]) {
    let mut means: Vec<f64> = found.iter().filter_map(|(_, c)| c.mean_ms).collect();
    means.sort_by(f64::total_cmp);
    let median = means.get(means.len() / 2).copied().unwrap_or(0.0);
    let limit = (SLOW_LINK.as_secs_f64() * 1000.0).max(median * f64::from(SLOW_FACTOR));
    for (_, check) in found.iter_mut() {
        check.reliable = check.calls == LINK_CHECK_CALLS
            && check.answered == check.calls
            && check.went_offline == 0
            && check.mean_ms.is_some_and(|m| m <= limit);
    }
}

/// How one update went.
#[derive(Default)]
struct Outcome {
    attempts: u32,
    elapsed: Duration,
    after: Option<String>,
    tinker: Option<bool>,
    usb: Option<UsbFlash>,
    error: Option<String>,
}

/// Flashes the image to `device` through the API, waits for it to come back and verifies it.
async fn update_over_the_air(fleet: &Fleet, device: &str) -> Outcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + OTA_WAIT;
    let total = fleet.image.len() as u64;
    let mut outcome = Outcome::default();
    let result = loop {
        outcome.attempts += 1;
        fleet.observer.progress(Progress::OtaStarted {
            device,
            total,
            attempt: outcome.attempts,
        });
        match flash_once(fleet, device, deadline).await {
            Ok(()) => break Ok(()),
            Err(e) if outcome.attempts >= OTA_ATTEMPTS => break Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let result = match result {
        Ok(()) => {
            fleet.observer.progress(Progress::OtaStep {
                device,
                step: "verifying",
            });
            verify(fleet, device, deadline, &mut outcome).await
        }
        Err(e) => Err(e),
    };
    outcome.elapsed = started.elapsed();
    let detail = match &result {
        Ok(()) => outcome.after.clone().unwrap_or_default(),
        Err(e) => e.clone(),
    };
    fleet.observer.progress(Progress::OtaDone {
        device,
        ok: result.is_ok(),
        detail: &detail,
    });
    outcome.error = result.err();
    outcome
}

/// One flash request, followed until the cloud reports its outcome and the Core has reset.
async fn flash_once(
    fleet: &Fleet,
    device: &str,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    fleet.watcher.update(device, |h| {
        h.flash_sent = None;
        h.flash_outcome = None;
        h.patch_version = None;
    });
    let file = FirmwareFile::new(fleet.image_name.clone(), fleet.image.as_ref().clone());
    fleet
        .api(device)
        .flash_binary(device, &file)
        .await
        .map_err(|e| format!("flash request: {e}"))?;
    let mut shown = None;
    let outcome = fleet
        .watcher
        .wait(device, deadline, |h| {
            if h.flash_sent != shown {
                shown = h.flash_sent;
                if let Some((sent, total)) = h.flash_sent {
                    fleet.observer.progress(Progress::OtaSent {
                        device,
                        sent,
                        total,
                    });
                }
            }
            h.flash_outcome.clone()
        })
        .await
        .ok_or_else(|| "no outcome from the cloud in time".to_owned())?;
    if !outcome.starts_with("success") {
        return Err(outcome);
    }
    fleet.observer.progress(Progress::OtaSent {
        device,
        sent: fleet.image.len() as u64,
        total: fleet.image.len() as u64,
    });
    fleet.observer.progress(Progress::OtaStep {
        device,
        step: "resetting",
    });
    // After the reset the Core reports its patch version again.
    fleet
        .watcher
        .wait(device, deadline, |h| h.patch_version.clone())
        .await
        .map(|_| ())
        .ok_or_else(|| "did not come back after the update".to_owned())
}

/// Checks through the API that the Core runs Tinker and reports the target service pack.
async fn verify(
    fleet: &Fleet,
    device: &str,
    deadline: tokio::time::Instant,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let tinker = until_answered(deadline, || {
        fleet.api(device).call_function(device, "digitalread", "D7")
    })
    .await
    .map_err(|e| format!("Tinker: {e}"))?;
    outcome.tinker = Some(tinker.return_value >= 0);
    if tinker.return_value < 0 {
        return Err(format!(
            "Tinker digitalread returned {}",
            tinker.return_value
        ));
    }
    let read = until_answered(deadline, || fleet.api(device).variable(device, "cc3000"))
        .await
        .map_err(|e| format!("cc3000 variable: {e}"))?;
    let after = read.result.as_str().map(str::to_owned);
    outcome.after.clone_from(&after);
    let version = after.as_deref().and_then(|v| v.parse::<ServicePack>().ok());
    match version {
        Some(v) if v == fleet.target => Ok(()),
        _ => Err(format!(
            "reports service pack {}, not {}",
            after.as_deref().unwrap_or("?"),
            fleet.target
        )),
    }
}

/// Asks until the Core answers, or `deadline`: an unreliable link loses calls, and the Core connects again.
async fn until_answered<T, F, Fut>(deadline: tokio::time::Instant, mut ask: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, spark_api::Error>>,
{
    let mut last = "no answer in time".to_owned();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        match tokio::time::timeout(left.min(CALL_TIMEOUT), ask()).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer in time".to_owned(),
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(left.min(RETRY_PAUSE)).await;
    }
}

/// The USB cable to a Core in DFU mode: its simulated bootloader, the host's waits (the bootloader's
/// `bwPollTimeout`) slept in real time when `realtime`, as dfu-util sleeps them.
struct Cable<'a> {
    bootloader: &'a mut SparkCore,
    realtime: bool,
}

impl blocking::Transport for Cable<'_> {
    fn select_alt(&mut self, alt: u8) -> Result<(), TransferError> {
        blocking::Transport::select_alt(self.bootloader, alt)
    }

    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), TransferError> {
        blocking::Transport::control_out(self.bootloader, setup, data)
    }

    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, TransferError> {
        blocking::Transport::control_in(self.bootloader, setup, buf)
    }

    fn wait(&mut self, ms: u32) {
        blocking::Transport::wait(self.bootloader, ms);
        if self.realtime {
            std::thread::sleep(Duration::from_millis(u64::from(ms)));
        }
    }
}

/// Flashes the DfuSe file `file` to a Core in DFU mode as `spark flash --usb` does, with spark-dfu's operation:
/// the file's suffix must name the Core's bootloader, every element goes to its target's alt setting, everything
/// is read back, and the leave request resets the Core. `flash` counts what happened (also on failure);
/// `on_event` hears each step with the counts so far.
fn flash_usb(
    bootloader: &mut SparkCore,
    file: &[u8],
    realtime: bool,
    flash: &mut UsbFlash,
    mut on_event: impl FnMut(DfuEvent, &UsbFlash),
) -> Result<(), String> {
    let dfuse = DfuseFile::parse(file).map_err(|e| format!("the DfuSe file does not read: {e}"))?;
    flash.total = dfuse
        .targets()
        .flat_map(|t| t.elements())
        .map(|e| e.data.len() as u64)
        .sum();
    let options = Options {
        verify: true,
        leave: true,
        ..Options::default()
    };
    let waited = bootloader.elapsed_ms;
    let mut cable = Cable {
        bootloader: &mut *bootloader,
        realtime,
    };
    let result = ops::flash_dfuse_file(&mut cable, Platform::Core, &dfuse, options, |event| {
        match event {
            DfuEvent::Erased { .. } => flash.erased += 1,
            DfuEvent::Written { len, .. } => flash.written += u64::from(len),
            DfuEvent::Read { len, .. } => flash.verified += u64::from(len),
            _ => {}
        }
        on_event(event, flash);
    });
    flash.bootloader_ms = bootloader.elapsed_ms - waited;
    flash.reset = bootloader.resets > 0;
    result.map(|_| ()).map_err(|e| e.to_string())
}

/// Updates `device` over USB: DFU mode, the DfuSe file at `file` through the DFU host, the reset, and the same
/// verification as over the air once the Core is back on the cloud.
async fn update_over_usb(fleet: &Fleet, device: &str, core: &mut Powered, file: &Path) -> Outcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + USB_WAIT;
    let mut outcome = Outcome {
        attempts: 1,
        ..Outcome::default()
    };
    let result = usb_steps(fleet, device, core, file, deadline, &mut outcome).await;
    outcome.elapsed = started.elapsed();
    if result.is_err() {
        // What the Core's CC3000 holds: nothing new booted, so what it held before.
        outcome.after = Some(lock_core(&core.core).cc3000().version_string());
    }
    let detail = match &result {
        Ok(()) => outcome.after.clone().unwrap_or_default(),
        Err(e) => e.clone(),
    };
    fleet.observer.progress(Progress::UsbDone {
        device,
        ok: result.is_ok(),
        detail: &detail,
    });
    outcome.error = result.err();
    outcome
}

async fn usb_steps(
    fleet: &Fleet,
    device: &str,
    core: &mut Powered,
    file: &Path,
    deadline: tokio::time::Instant,
    outcome: &mut Outcome,
) -> Result<(), String> {
    // The owner holds MODE and taps RESET: the firmware stops, the bootloader answers on USB.
    fleet.observer.progress(Progress::UsbStarted {
        device,
        total: fleet.image.len() as u64,
    });
    fleet.observer.progress(Progress::UsbStep {
        device,
        step: "entering DFU mode",
    });
    core.power_off().await;
    fleet.watcher.update(device, |h| h.patch_version = None);
    let mut bootloader = lock_core(&core.core)
        .enter_dfu()
        .map_err(|e| format!("DFU mode: {e}"))?;
    if let Some(at) = fleet.usb_fault {
        bootloader.inject(at, Fault::UsbError);
    }

    // The DFU host, off the runtime's threads: it reads the file from disk as dfu-util would, and sleeps the
    // bootloader's poll timeouts.
    let observer = Arc::clone(&fleet.observer);
    let name = device.to_owned();
    let file = file.to_path_buf();
    let (bootloader, flash, result) = tokio::task::spawn_blocking(move || {
        let mut flash = UsbFlash::default();
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) => return (bootloader, flash, Err(format!("{}: {e}", file.display()))),
        };
        let mut step = "";
        let result = flash_usb(
            &mut bootloader,
            &bytes,
            true,
            &mut flash,
            |event, so_far| {
                let now = match event {
                    DfuEvent::Erased { .. } => "erasing",
                    DfuEvent::Written { .. } => {
                        observer.progress(Progress::UsbWritten {
                            device: &name,
                            written: so_far.written,
                            total: so_far.total,
                        });
                        "writing"
                    }
                    DfuEvent::Read { .. } => "verifying",
                    DfuEvent::Leaving => "leaving DFU mode",
                    _ => step,
                };
                if now != step {
                    step = now;
                    observer.progress(Progress::UsbStep {
                        device: &name,
                        step,
                    });
                }
            },
        );
        (bootloader, flash, result)
    })
    .await
    .map_err(|e| format!("DFU host: {e}"))?;
    let written = (flash.written, flash.total);
    outcome.usb = Some(flash);
    if let Err(e) = result {
        return Err(format!(
            "USB flash failed after {} of {} bytes: {e}; the Core waits in DFU mode, nothing new booted",
            written.0, written.1
        ));
    }

    // The leave request reset the Core: it boots what is now at 0x08005000 (the deep update patches the CC3000)
    // and connects again.
    lock_core(&core.core)
        .leave_dfu(&bootloader)
        .map_err(|e| format!("after the leave request: {e}"))?;
    fleet.observer.progress(Progress::UsbStep {
        device,
        step: "resetting",
    });
    core.cloud.seed = core.cloud.seed.wrapping_add(1 << 20);
    core.power_on();
    fleet
        .watcher
        .wait(device, deadline, |h| h.patch_version.clone())
        .await
        .ok_or_else(|| "did not come back on the cloud after the USB flash".to_owned())?;
    fleet.observer.progress(Progress::UsbStep {
        device,
        step: "verifying on the cloud",
    });
    verify(fleet, device, deadline, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(count: usize, unreliable: usize, patched: usize, seed: u64) -> DemoConfig {
        DemoConfig {
            count,
            unreliable,
            patched,
            seed,
            image: Vec::new(),
            image_name: SPARK_IMAGE_NAME.into(),
            out: PathBuf::new(),
            jobs: 1,
            usb_fault: None,
            rotate: false,
            udp: 0,
            nodes: 1,
        }
    }

    #[test]
    fn the_fleet_has_what_was_asked_and_the_seed_decides_the_order() {
        let kinds = fleet_kinds(&config(20, 3, 5, 7)).unwrap();
        assert_eq!(kinds.len(), 20);
        assert_eq!(kinds.iter().filter(|k| **k == Kind::Flaky).count(), 3);
        assert_eq!(kinds.iter().filter(|k| **k == Kind::Patched).count(), 5);
        assert_eq!(kinds, fleet_kinds(&config(20, 3, 5, 7)).unwrap());
        let others: Vec<_> = (0..16)
            .map(|s| fleet_kinds(&config(20, 3, 5, s)).unwrap())
            .collect();
        assert!(others.iter().any(|k| *k != kinds));
    }

    #[test]
    fn a_fleet_that_does_not_add_up_is_refused() {
        assert!(matches!(
            fleet_kinds(&config(4, 3, 2, 1)),
            Err(DemoError::Fleet(_))
        ));
        assert!(matches!(
            fleet_kinds(&config(0, 0, 0, 1)),
            Err(DemoError::Fleet(_))
        ));
        assert_eq!(fleet_kinds(&config(5, 3, 2, 1)).unwrap().len(), 5);
    }

    #[test]
    fn the_usb_file_puts_the_image_at_the_application_address_for_the_core() {
        let image: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let file = usb_file(&image).unwrap();
        let parsed = DfuseFile::parse(&file).unwrap();
        let suffix = parsed.suffix();
        assert_eq!((suffix.id_vendor, suffix.id_product), (0x1d50, 0x607f));
        let targets: Vec<_> = parsed.targets().collect();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].alt(), 0);
        let elements: Vec<_> = targets[0].elements().collect();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0].address, 0x0800_5000);
        assert_eq!(elements[0].data, &image[..]);
        assert!(usb_command(Path::new("x.dfu")).starts_with("dfu-util -d 1d50:607f -a 0"));
    }

    fn check(answered: usize, mean_ms: Option<f64>, went_offline: u32) -> LinkCheck {
        LinkCheck {
            calls: LINK_CHECK_CALLS.min(answered + 1),
            answered,
            mean_ms,
            went_offline,
            reliable: false,
        }
    }

    #[test]
    fn links_are_judged_on_failures_drops_and_slowness() {
        let mut found = vec![
            (None, check(5, Some(2.0), 0)),
            (None, check(5, Some(3.0), 0)),
            (None, check(5, Some(2.5), 0)),
            (None, check(5, Some(400.0), 0)),
            (None, check(5, Some(2.0), 1)),
            (None, check(2, Some(2.0), 0)),
            (None, check(0, None, 0)),
        ];
        judge_links(&mut found);
        let verdicts: Vec<bool> = found.iter().map(|(_, c)| c.reliable).collect();
        assert_eq!(
            verdicts,
            [true, true, true, false, false, false, false],
            "{found:?}"
        );
        // A fleet that is slow everywhere (a loaded machine) is judged against its own median.
        let mut slow = vec![
            (None, check(5, Some(200.0), 0)),
            (None, check(5, Some(260.0), 0)),
            (None, check(5, Some(240.0), 0)),
        ];
        judge_links(&mut slow);
        assert!(slow.iter().all(|(_, c)| c.reliable));
    }

    #[test]
    fn the_usb_file_goes_through_the_dfu_host_to_the_bootloader_and_resets_it() {
        let image: Vec<u8> = (0..5000u32).map(|i| (i * 13 + 1) as u8).collect();
        let file = usb_file(&image).unwrap();
        let mut bootloader = SparkCore::new();
        let mut flash = UsbFlash::default();
        let mut written = Vec::new();
        flash_usb(
            &mut bootloader,
            &file,
            false,
            &mut flash,
            |event, so_far| {
                if let DfuEvent::Written { .. } = event {
                    written.push(so_far.written);
                }
            },
        )
        .unwrap();
        assert_eq!(
            bootloader.memory(core_map::FIRMWARE, image.len()).unwrap(),
            &image[..]
        );
        assert_eq!(bootloader.resets, 1);
        assert_eq!(flash.total, 5000);
        assert_eq!(flash.written, 5000);
        assert_eq!(flash.verified, 5000);
        assert_eq!(flash.erased, 5);
        assert!(flash.reset);
        assert_eq!(flash.bootloader_ms, bootloader.elapsed_ms);
        assert_eq!(written, [1024, 2048, 3072, 4096, 5000]);
    }

    #[test]
    fn a_corrupted_or_foreign_dfuse_file_is_refused_before_anything_is_sent() {
        let image = vec![0x5Au8; 3000];
        let mut corrupted = usb_file(&image).unwrap();
        let middle = corrupted.len() / 2;
        corrupted[middle] ^= 0x01;
        let mut bootloader = SparkCore::new();
        let mut flash = UsbFlash::default();
        let e = flash_usb(&mut bootloader, &corrupted, false, &mut flash, |_, _| {}).unwrap_err();
        assert!(e.contains("does not read"), "{e}");
        assert_eq!(bootloader.transfers, 0);
        assert_eq!(flash, UsbFlash::default());

        // A file for ST's own DFU bootloader (0483:df11), not the Core's.
        let foreign = SingleElement {
            name: None,
            suffix: spark_dfu::file::suffix::SuffixRepr::for_device(0x0483, 0xdf11),
            ..SingleElement::for_item(Platform::Core, Item::UserFirmware, &image).unwrap()
        }
        .to_vec()
        .unwrap();
        let e = flash_usb(&mut bootloader, &foreign, false, &mut flash, |_, _| {}).unwrap_err();
        assert!(e.contains("0483:df11"), "{e}");
        assert_eq!(bootloader.transfers, 0);
        assert!(!flash.reset);
        assert_eq!(flash.written, 0);
    }

    #[test]
    fn a_usb_error_mid_transfer_leaves_the_core_in_dfu_mode() {
        let image: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let file = usb_file(&image).unwrap();
        let mut bootloader = SparkCore::new();
        // 20 pages erased (3 transfers each after 4 to prepare), the address set, then blocks: fail at the 10th.
        bootloader.inject(4 + 20 * 3 + 3 + 9 * 3, Fault::UsbError);
        let mut flash = UsbFlash::default();
        let e = flash_usb(&mut bootloader, &file, false, &mut flash, |_, _| {}).unwrap_err();
        assert!(e.contains("USB error"), "{e}");
        assert_eq!(flash.erased, 20);
        assert_eq!(flash.written, 9 * 1024);
        assert_eq!(flash.verified, 0);
        assert!(!flash.reset);
        assert_eq!(bootloader.resets, 0);
        assert!(bootloader.present());
    }
}
