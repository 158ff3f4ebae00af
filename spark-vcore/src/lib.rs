//! A simulated Spark Core: Tinker, a few variables, the external flash that receives OTA images, and the CC3000
//! with its service pack, all persisted in one directory per Core.
//!
//! The model does no networking and keeps no clock: a connection driver feeds it function calls, variable reads and
//! OTA chunks, and asks it for the Hello flags and the events to publish after a handshake.
//!
//! # The directory
//!
//! | file | what |
//! |---|---|
//! | `core.json` | device id, the CC3000's ROM version, the running firmware, a committed OTA image waiting for the next boot, boot count |
//! | `core_private_key.der` | the device's 1024-bit RSA key pair (PKCS#1 DER), as `spark keys save` writes it |
//! | `udp_private_key.pem`, `udp_public_key.pem` | its P-256 key pair for the UDP protocol (SEC1 and SPKI PEM), made on its first UDP start (see [`udp`]) |
//! | `external-flash.bin` | the 2 MiB external flash (see [`flash`]) |
//! | `cc3000-eeprom.bin` | the CC3000's 32 KiB NVMEM EEPROM (see [`cc3000`]) |
//! | `firmware.bin` | the application in internal flash once an OTA update replaced the factory Tinker |
//!
//! # Booting
//!
//! [`VirtualCore::boot`] does what the Core's bootloader and firmware did at reset: a committed OTA image is copied
//! from the external flash into internal flash (and the next Hello says the update succeeded); then, when the
//! running firmware carries a CC3000 service pack (the `deep_update_2014_06` application, or a patch programmer)
//! and the chip reports an older version, spark-cc3000's patch programmer burns it into the simulated NVMEM. A
//! simulation cannot run ARM code, so every firmware answers as Tinker; the deep update did too (it was a Tinker
//! build with the patch in it), which is where the 2014 rollout left the Cores until the cloud sent Tinker again.

pub mod cc3000;
pub mod dfu;
pub mod flash;
pub mod image;
pub mod link;
pub mod run;
pub mod serial;
pub mod tinker;
pub mod udp;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use serde::{Deserialize, Serialize};
use spark_cc3000::ServicePack;
use spark_dfu::platform::core_map;
use spark_protocol::DeviceId;
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_protocol::wire::describe::VarType;

use cc3000::{Cc3000, Cc3000Error, ServicePackImages};
use flash::{ExternalFlash, FlashError, OtaDownload, OtaError, StagedImage};
use tinker::Tinker;

/// The event a Core publishes after every handshake with its CC3000 patch version.
pub const PATCH_VERSION_EVENT: &str = "spark/cc3000-patch-version";
/// Its time to live, in seconds.
pub const PATCH_VERSION_TTL: u32 = 60;

/// How many events a Core publishes after each handshake besides the patch version: the Core publishes at most
/// four events in any second.
pub const MAX_ANNOUNCEMENTS: usize = 3;
/// How many event subscriptions a Core holds (its firmware's table).
pub const MAX_SUBSCRIPTIONS: usize = 4;

/// The variables every virtual Core exposes, with their types.
pub const VARIABLES: [(&str, VarType); 4] = [
    ("cc3000", VarType::String),
    ("firmware", VarType::String),
    ("boots", VarType::Int),
    ("temperature", VarType::Double),
];

const STATE_FILE: &str = "core.json";
const KEY_FILE: &str = "core_private_key.der";
const FLASH_FILE: &str = "external-flash.bin";
const EEPROM_FILE: &str = "cc3000-eeprom.bin";
const FIRMWARE_FILE: &str = "firmware.bin";

/// Why a Core could not be created, loaded or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A file in the Core's directory.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `core.json` is not a Core's state.
    #[error("{path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// The key file is not an RSA private key.
    #[error("device key: {0}")]
    Key(spark_protocol::crypto::keys::KeyError),
    /// A key the RSA backend cannot use.
    #[error("RSA key: {0}")]
    Rsa(spark_protocol::crypto::RsaError),
    /// The system random number generator failed.
    #[error("system random number generator: {0}")]
    Random(String),
    /// The UDP key file (`udp_private_key.pem`) is not a P-256 private key.
    #[error("UDP device key: {0}")]
    UdpKey(spark_protocol::dtls::Error),
    /// The external flash.
    #[error(transparent)]
    Flash(#[from] FlashError),
    /// The CC3000.
    #[error(transparent)]
    Cc3000(#[from] Cc3000Error),
    /// An OTA operation while no download is in progress.
    #[error("no OTA download in progress")]
    NoDownload,
    /// The OTA download was refused.
    #[error(transparent)]
    Ota(#[from] OtaError),
}

/// What the running firmware is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Firmware {
    /// The factory Tinker the Core shipped with.
    FactoryTinker,
    /// An application received over the air.
    Application {
        /// Its length.
        len: u32,
        /// Its CRC-32.
        crc32: u32,
        /// The service pack it carries (`"1.28"` for the deep update), if any.
        service_pack: Option<String>,
    },
}

impl Firmware {
    /// A short name: `tinker`, `deep-update` (carries a service pack) or `application`.
    pub fn name(&self) -> &'static str {
        match self {
            Firmware::FactoryTinker => "tinker",
            Firmware::Application {
                service_pack: Some(_),
                ..
            } => "deep-update",
            Firmware::Application { .. } => "application",
        }
    }
}

/// Reads a Core's state file (`core.json`): the state, its device id and its CC3000 ROM version.
fn parse_state(text: &str) -> Result<(State, [u8; 12], ServicePack), serde_json::Error> {
    let bad = |what: &str| <serde_json::Error as serde::de::Error>::custom(what);
    let state: State = serde_json::from_str(text)?;
    let id = state
        .device_id
        .trim()
        .parse::<DeviceId>()
        .map_err(|_| bad("device_id is not 24 hex digits"))?;
    let id = *id.as_bytes();
    let rom: ServicePack = state
        .cc3000_rom
        .parse()
        .map_err(|_| bad("cc3000_rom is not a version"))?;
    Ok((state, id, rom))
}

/// Entry points for the fuzz targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    /// Reads a Core's state file as [`VirtualCore::open`](crate::VirtualCore::open) does, and writes it back as
    /// the Core saves it; the rewrite must read back the same.
    pub fn state_file(text: &str) -> Result<(), serde_json::Error> {
        let (state, id, rom) = super::parse_state(text)?;
        let again = serde_json::to_string_pretty(&state)?;
        let (_, id2, rom2) = super::parse_state(&again).expect("a saved state reads back");
        assert_eq!((id, rom), (id2, rom2));
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    device_id: String,
    cc3000_rom: String,
    firmware: Firmware,
    staged: Option<StagedImage>,
    ota_succeeded: bool,
    boots: u32,
    temperature: f64,
}

/// A variable's value: the workspace's one value type, from `spark-protocol`.
pub use spark_protocol::VariableValue;

/// What [`VirtualCore::boot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootReport {
    /// A committed OTA image was installed (and the next Hello carries the OTA-success flag).
    pub installed: Option<Firmware>,
    /// A committed OTA image no longer matched its CRC in the external flash and was dropped.
    pub staged_corrupt: bool,
    /// The CC3000 version before and after, when the firmware patched it.
    pub patched: Option<(ServicePack, ServicePack)>,
    /// The patch programmer failed (the Core runs on; the chip keeps what the programmer left).
    pub patch_error: Option<String>,
}

/// One simulated Core. See the [module docs](self).
#[derive(Debug)]
pub struct VirtualCore {
    dir: PathBuf,
    id: [u8; 12],
    key: RsaPrivateKey,
    state: State,
    rom: ServicePack,
    flash: ExternalFlash,
    cc3000: Cc3000,
    tinker: Tinker,
    download: Option<OtaDownload>,
    subscriptions: Vec<String>,
    announcements: Vec<(String, String)>,
}

/// Creates a Core's folder (and missing parents) with mode 0700 from the start, whatever the umask.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Writes a secret (the private key) with mode 0600 from the start: an existing file is replaced, not reused.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CoreError + '_ {
    move |source| CoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl VirtualCore {
    /// Opens the Core in `dir`, creating it (new id, new key, erased flash, a CC3000 reporting `sp`) when the
    /// directory holds none. `sp` applies only to a new Core: an existing one keeps its chip.
    pub fn open_or_create(dir: &Path, sp: ServicePack) -> Result<Self, CoreError> {
        if dir.join(STATE_FILE).exists() {
            Self::open(dir)
        } else {
            Self::create(dir, sp)
        }
    }

    /// Creates a new Core in `dir`.
    pub fn create(dir: &Path, sp: ServicePack) -> Result<Self, CoreError> {
        let mut rng =
            StdRng::try_from_rng(&mut SysRng).map_err(|e| CoreError::Random(e.to_string()))?;
        let mut id = [0u8; 12];
        rand::Rng::fill_bytes(&mut rng, &mut id);
        let key = RsaPrivateKey::generate(&mut rng, 1024).map_err(CoreError::Key)?;
        Self::create_with_identity(dir, sp, id, key)
    }

    /// Creates a new Core in `dir` with a given id and key pair (e.g. a real Core's, read over DFU).
    pub fn create_with_identity(
        dir: &Path,
        sp: ServicePack,
        id: [u8; 12],
        key: RsaPrivateKey,
    ) -> Result<Self, CoreError> {
        create_private_dir(dir).map_err(io(dir))?;
        let key_path = dir.join(KEY_FILE);
        write_private(&key_path, key.to_pkcs1_der().as_slice()).map_err(io(&key_path))?;
        let state = State {
            device_id: DeviceId::from_bytes(id).to_string(),
            cc3000_rom: sp.to_string(),
            firmware: Firmware::FactoryTinker,
            staged: None,
            ota_succeeded: false,
            boots: 0,
            temperature: 21.5,
        };
        let cc3000 = Cc3000::new(sp, &id)?;
        cc3000.save(&dir.join(EEPROM_FILE))?;
        let core = Self::assemble(dir, id, key, state, sp, cc3000)?;
        core.save_state()?;
        Ok(core)
    }

    /// Opens an existing Core.
    pub fn open(dir: &Path) -> Result<Self, CoreError> {
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
        let (state, id, rom) = parse_state(&text).map_err(|source| CoreError::State {
            path: state_path.clone(),
            source,
        })?;
        let key_path = dir.join(KEY_FILE);
        let der = std::fs::read(&key_path).map_err(io(&key_path))?;
        let key = RsaPrivateKey::from_der(&der).map_err(CoreError::Key)?;
        let cc3000 = Cc3000::load(&dir.join(EEPROM_FILE), rom)?;
        Self::assemble(dir, id, key, state, rom, cc3000)
    }

    /// The Core in `dir` from its parts on disk (created or read back), with its flash file opened and nothing
    /// running yet.
    fn assemble(
        dir: &Path,
        id: [u8; 12],
        key: RsaPrivateKey,
        state: State,
        rom: ServicePack,
        cc3000: Cc3000,
    ) -> Result<Self, CoreError> {
        Ok(VirtualCore {
            dir: dir.to_owned(),
            id,
            key,
            state,
            rom,
            flash: ExternalFlash::open(&dir.join(FLASH_FILE))?,
            cc3000,
            tinker: Tinker::new(),
            download: None,
            subscriptions: Vec::new(),
            announcements: Vec::new(),
        })
    }

    fn save_state(&self) -> Result<(), CoreError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = path.with_extension("tmp");
        let text =
            serde_json::to_string_pretty(&self.state).map_err(|source| CoreError::State {
                path: path.clone(),
                source,
            })?;
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The device id.
    pub fn id(&self) -> DeviceId {
        DeviceId::from_bytes(self.id)
    }

    /// The device id as 24 hex digits.
    pub fn id_hex(&self) -> &str {
        &self.state.device_id
    }

    /// The device's key pair.
    pub fn key(&self) -> &RsaPrivateKey {
        &self.key
    }

    /// The running firmware.
    pub fn firmware(&self) -> &Firmware {
        &self.state.firmware
    }

    /// Resets since the Core was created.
    pub fn boots(&self) -> u32 {
        self.state.boots
    }

    /// The CC3000 model.
    pub fn cc3000(&self) -> &Cc3000 {
        &self.cc3000
    }

    /// The CC3000 model, to schedule NVMEM faults.
    pub fn cc3000_mut(&mut self) -> &mut Cc3000 {
        &mut self.cc3000
    }

    /// The CC3000's ROM version (what it reports without a known patch).
    pub fn cc3000_rom(&self) -> ServicePack {
        self.rom
    }

    /// Tinker's pins.
    pub fn tinker(&self) -> &Tinker {
        &self.tinker
    }

    /// Tinker's pins, to drive inputs.
    pub fn tinker_mut(&mut self) -> &mut Tinker {
        &mut self.tinker
    }

    /// The external flash.
    pub fn flash_mut(&mut self) -> &mut ExternalFlash {
        &mut self.flash
    }

    /// The application in internal flash (`None` while the factory Tinker runs).
    pub fn firmware_image(&self) -> Result<Option<Vec<u8>>, CoreError> {
        let path = self.dir.join(FIRMWARE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Makes `image` the application in internal flash (written through a temporary file) and records it in the
    /// state, which the caller saves.
    fn install_application(&mut self, image: &[u8], len: u32, crc32: u32) -> Result<(), CoreError> {
        let path = self.dir.join(FIRMWARE_FILE);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, image).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let service_pack = ServicePackImages::find(image)
            .and_then(|i| i.version())
            .map(|v| v.to_string());
        self.state.firmware = Firmware::Application {
            len,
            crc32,
            service_pack,
        };
        Ok(())
    }

    /// Resets the Core. See the [module docs](self#booting).
    pub fn boot(&mut self) -> Result<BootReport, CoreError> {
        self.download = None;
        self.tinker.reset();
        let mut report = BootReport {
            installed: None,
            staged_corrupt: false,
            patched: None,
            patch_error: None,
        };
        if let Some(staged) = self.state.staged.take() {
            match flash::read_staged(&mut self.flash, staged)? {
                Some(image) => {
                    self.install_application(&image, staged.len, staged.crc32)?;
                    self.state.ota_succeeded = true;
                    report.installed = Some(self.state.firmware.clone());
                }
                None => report.staged_corrupt = true,
            }
        }
        self.state.boots = self.state.boots.wrapping_add(1);
        self.save_state()?;
        let image = self.firmware_image()?;
        if let Some(images) = image.as_deref().and_then(ServicePackImages::find) {
            let before = self.cc3000.version();
            // The deep update patches only a chip older than what it carries.
            let wanted = images.version().is_some_and(|v| before.needs_update_to(v));
            if wanted {
                match self.cc3000.program(&images) {
                    Ok(r) => report.patched = Some((before, r.final_version)),
                    Err(e) => report.patch_error = Some(e.to_string()),
                }
                self.cc3000.save(&self.dir.join(EEPROM_FILE))?;
            }
        }
        Ok(report)
    }

    /// Whether the next Hello carries the OTA-success flag.
    pub fn ota_succeeded(&self) -> bool {
        self.state.ota_succeeded
    }

    /// Clears the OTA-success flag once a Hello carried it.
    pub fn clear_ota_succeeded(&mut self) -> Result<(), CoreError> {
        if self.state.ota_succeeded {
            self.state.ota_succeeded = false;
            self.save_state()?;
        }
        Ok(())
    }

    /// Calls a cloud function; `None` when there is no such function.
    pub fn call(&mut self, function: &str, argument: &str) -> Option<i32> {
        self.tinker.call(function, argument)
    }

    /// The function names, for the describe message.
    pub fn functions(&self) -> &'static [&'static str] {
        &tinker::FUNCTIONS
    }

    /// The variables and their types, for the describe message.
    pub fn variables(&self) -> &'static [(&'static str, VarType)] {
        &VARIABLES
    }

    /// Reads a variable; `None` when there is no such variable.
    pub fn variable(&self, name: &str) -> Option<VariableValue> {
        Some(match name {
            "cc3000" => VariableValue::String(self.cc3000.version_string()),
            "firmware" => VariableValue::String(self.state.firmware.name().to_owned()),
            "boots" => VariableValue::Int(i32::try_from(self.state.boots).unwrap_or(i32::MAX)),
            "temperature" => VariableValue::Double(self.state.temperature),
            _ => return None,
        })
    }

    /// Sets the simulated temperature.
    pub fn set_temperature(&mut self, celsius: f64) {
        self.state.temperature = celsius;
    }

    /// Subscribes the firmware to events whose name starts with `prefix` (1 to 63 bytes), as an application's
    /// `Spark.subscribe(prefix, handler, MY_DEVICES)` in `setup()` did: every session subscribes again once the
    /// cloud's Hello arrives (before the patch-version event, so a cloud that has seen that event knows the
    /// subscriptions), and the events that arrive are reported as [`run::Status::EventReceived`]. Returns `false`
    /// when the prefix is empty or too long or [`MAX_SUBSCRIPTIONS`] are already held (a prefix already held
    /// succeeds without a second entry).
    pub fn subscribe(&mut self, prefix: &str) -> bool {
        if self.subscriptions.iter().any(|s| s == prefix) {
            return true;
        }
        if prefix.is_empty() || prefix.len() > 63 || self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return false;
        }
        self.subscriptions.push(prefix.to_owned());
        true
    }

    /// Has the firmware publish the private event `name` with `data` after every handshake, after the
    /// patch-version event (as an application's `Spark.publish` in `setup()`). Returns `false` when the name is
    /// empty, starts with `spark`, or either is longer than 63 bytes, or [`MAX_ANNOUNCEMENTS`] events are already
    /// announced.
    pub fn publish_on_connect(&mut self, name: &str, data: &str) -> bool {
        let reserved = name
            .as_bytes()
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"spark"));
        if name.is_empty()
            || reserved
            || name.len() > 63
            || data.len() > 63
            || self.announcements.len() >= MAX_ANNOUNCEMENTS
        {
            return false;
        }
        self.announcements.push((name.to_owned(), data.to_owned()));
        true
    }

    /// The events published after every handshake ([`VirtualCore::publish_on_connect`]).
    pub fn announcements(&self) -> &[(String, String)] {
        &self.announcements
    }

    /// The prefixes the firmware subscribes to.
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// The event published after each handshake: name, data (`"%d.%d"`), as a real Core did (TTL
    /// [`PATCH_VERSION_TTL`], private).
    pub fn patch_version_event(&self) -> (&'static str, String) {
        (PATCH_VERSION_EVENT, self.cc3000.version_string())
    }

    /// Starts an OTA download, of `size` bytes when UpdateBegin announced it (a download in progress is
    /// abandoned).
    pub fn ota_begin(&mut self, size: Option<u32>) -> Result<(), CoreError> {
        self.download = None;
        self.download = Some(OtaDownload::begin(&mut self.flash, size)?);
        Ok(())
    }

    /// Stores a chunk of the download.
    pub fn ota_write(&mut self, offset: u32, data: &[u8]) -> Result<(), CoreError> {
        let download = self.download.as_mut().ok_or(CoreError::NoDownload)?;
        download.write(&mut self.flash, offset, data)?;
        Ok(())
    }

    /// Bytes of the download received so far, and the announced size.
    pub fn ota_progress(&self) -> Option<(u32, Option<u32>)> {
        self.download
            .as_ref()
            .map(|d| (d.received_len(), d.announced()))
    }

    /// Completes the download of `size` bytes: checks it and commits it for the next boot. On error nothing is
    /// committed and the download is over.
    pub fn ota_finish(&mut self, size: u32) -> Result<StagedImage, CoreError> {
        let download = self.download.take().ok_or(CoreError::NoDownload)?;
        let staged = download.finish(&mut self.flash, size)?;
        self.state.staged = Some(staged);
        self.save_state()?;
        Ok(staged)
    }

    /// Abandons the download (the running firmware is untouched).
    pub fn ota_abort(&mut self) {
        self.download = None;
    }

    /// Whether an image is committed and waits for the next boot.
    pub fn has_staged_image(&self) -> bool {
        self.state.staged.is_some()
    }

    /// The largest image the Core accepts over the air (the application region, which the OTA image is copied
    /// into).
    pub fn max_image_len(&self) -> u32 {
        core_map::FIRMWARE_LEN.min(flash::OTA_LEN)
    }
}
