//! The sans-IO CC3000 patch programmer.
//!
//! [`Programmer`] does what TI's and Spark's patch programmers did, and what they did not:
//!
//! 1. Before anything reaches the chip, both images are parsed and validated, must be a driver and a firmware patch,
//!    and (when both are known) must belong to the same service pack; a bad image is refused by
//!    [`Programmer::new`], before the first NVMEM operation.
//! 2. Reads the version, the file table, the MAC address (file 6), the radio parameters (file 11) and the first
//!    100 bytes of the WLAN configuration (file 2), each with retries.
//! 3. Chooses what to restore: a backup saved by an interrupted earlier run first, then what the chip holds, then
//!    the caller's defaults ([`Config::default_radio_params`], [`Config::fallback_mac`]). Without radio parameters
//!    from any of them it stops, still before any write.
//! 4. Hands what it read from the module to the caller as [`Action::SaveBackup`], to persist if it wants power-loss
//!    safety.
//! 5. For each target, in order — the table (only when its layout differs from the 8 KiB-slot table, the one
//!    destructive step), radio parameters, WLAN configuration, MAC, driver patch (file 4), firmware patch (file 5),
//!    Spark's user file 14 — it reads the file and compares; only when it differs does it write it in chunks (32 bytes
//!    by default, 16-bit offsets), then reads every byte back and compares, rewriting up to [`Config::retries`]
//!    times.
//! 6. Reads the version and checks it against what the driver image is known to report.
//!
//! # Idempotence and power loss
//!
//! Every write step is *check, write if different, verify*: a step whose file already holds its bytes writes
//! nothing, so running a step twice leaves the NVMEM as running it once, and a completed run repeated writes nothing
//! at all. Step by step:
//!
//! | step | bytes | idempotent because |
//! |---|---|---|
//! | reads (version, table, MAC, radio, WLAN) | — | they change nothing |
//! | save backup (caller) | the backup | saving the same bytes again changes nothing |
//! | table magic, table entries (file 16) | fixed (`"LS"`, the 8 KiB-slot table) | same bytes every run; skipped once the layout matches |
//! | radio parameters, WLAN configuration, MAC | from the backup, else the caller's defaults | same bytes for the same backup |
//! | driver patch (file 4), firmware patch (file 5) | the images | same bytes every run |
//! | Spark's file 14 | create(0), create(16), 16 zero bytes | done only when the file is unreadable; the sequence ends in the same state from any start |
//! | final version read | — | changes nothing |
//!
//! The only destructive step is the table rewrite, which invalidates files 0 to 15. It runs after
//! [`Action::SaveBackup`], which carries only what was really read from the module, so a caller that persisted that
//! backup and passes it back ([`Config::saved_backup`]) after a power loss at any point gets the module's own MAC,
//! radio parameters and WLAN configuration restored. A caller that does not persist it still ends patched and
//! verified after a re-run, but a power loss between the table rewrite and the restores then leaves only the
//! defaults to restore (which is all the original programmers ever had). The crate's tests cut the power before
//! every operation and in the middle of every write, re-run, and check the end state; another performs every write
//! twice and compares the EEPROM with a clean run's.
//!
//! # Driving it
//!
//! Call [`Programmer::poll_action`], perform the action, report its outcome with [`Programmer::handle_outcome`], until
//! [`Action::Finished`] or [`Action::Failed`]. [`run`] is that loop over an [`Nvmem`] implementation.
//!
//! The loop by hand, against the simulated NVMEM of the `sim` module (feature `sim`) and the synthetic service pack
//! 1.28 images of [`crate::patch::synthetic`]; a port hands the same actions to the chip over SPI:
//!
//! ```
//! use spark_cc3000::ServicePack;
//! use spark_cc3000::nvmem::{FatTable, FileId, MacAddress, RADIO_PARAMS_LEN};
//! use spark_cc3000::patch::synthetic::{self, SYNTHETIC_DRIVER_LEN, SYNTHETIC_FIRMWARE_LEN};
//! use spark_cc3000::programmer::{Action, Config, Nvmem, Outcome, Programmer, Source};
//! use spark_cc3000::sim::SimNvmem;
//!
//! let (mut driver, mut firmware) = ([0u8; SYNTHETIC_DRIVER_LEN], [0u8; SYNTHETIC_FIRMWARE_LEN]);
//! synthetic::emit_synthetic_driver(ServicePack::SP_1_28, &mut driver).unwrap();
//! synthetic::emit_synthetic_firmware(ServicePack::SP_1_28, &mut firmware).unwrap();
//!
//! // A module as shipped: the programmers' file table, its MAC and radio calibration, service pack 1.24 in ROM.
//! let mut chip = SimNvmem::with_table(&FatTable::programmer_default(), ServicePack::SP_1_24);
//! chip.install(FileId::Mac, &[0x08, 0x00, 0x28, 0x01, 0x02, 0x03]).unwrap();
//! chip.install(FileId::Rm, &[0x5a; RADIO_PARAMS_LEN]).unwrap();
//!
//! let mut programmer = Programmer::new(&driver, &firmware, Config::default()).unwrap();
//! let mut buf = [0u8; 128];
//! let report = loop {
//!     let done = match programmer.poll_action() {
//!         Action::Read { file, offset, len } => {
//!             chip.read(file, offset, &mut buf[..len]).map(|()| Outcome::Read(&buf[..len]))
//!         }
//!         Action::Write { file, offset, data } => chip.write(file, offset, data).map(|()| Outcome::Done),
//!         Action::CreateEntry { file, len } => chip.create_entry(file, len).map(|()| Outcome::Done),
//!         Action::ReadVersion => chip.read_sp_version().map(Outcome::Version),
//!         // Persist the backup here when the run must survive power loss (see above).
//!         Action::SaveBackup(_backup) => Ok(Outcome::Done),
//!         Action::Finished(report) => break *report,
//!         Action::Failed(error) => panic!("{error}"),
//!     };
//!     // A failed NVMEM call is an outcome too: the programmer retries, then stops with an error.
//!     programmer.handle_outcome(done.unwrap_or(Outcome::Failed));
//! };
//! assert_eq!(report.initial_version, Some(ServicePack::SP_1_24));
//! assert_eq!(chip.read_sp_version().unwrap(), ServicePack::SP_1_28);
//! assert_eq!(report.mac, Some(MacAddress([0x08, 0x00, 0x28, 0x01, 0x02, 0x03])));
//! assert_eq!((report.mac_source, report.radio_source), (Source::Chip, Source::Chip));
//! assert_eq!(chip.file(FileId::Rm, RADIO_PARAMS_LEN), Some(&[0x5a; RADIO_PARAMS_LEN][..]));
//!
//! // Run again on the patched chip: everything is verified, nothing is written.
//! let mut again = Programmer::new(&driver, &firmware, Config::default()).unwrap();
//! let report = spark_cc3000::programmer::run(&mut again, &mut chip, |_| {}).unwrap();
//! assert!(report.already_patched());
//! ```

mod backup;
mod nvmem;

pub use backup::{BACKUP_LEN, Backup, BackupError};
pub use nvmem::Nvmem;

use crate::nvmem::{
    FAT_LEN, FAT_MAGIC, FatTable, FileId, MacAddress, RADIO_PARAMS_LEN, RadioParams,
    SPARK_FILE_LEN, WLAN_CONFIG_BACKUP_LEN, WRITE_PORTION,
};
use crate::patch::{Identification, ImageKind, PatchError, PatchImage, ServicePack};

/// The largest read or write chunk the programmer accepts in its configuration.
pub const MAX_CHUNK: usize = 128;

const SPARK_FILE_ZEROS: [u8; SPARK_FILE_LEN as usize] = [0; SPARK_FILE_LEN as usize];

/// Which NVMEM operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `nvmem_read`.
    Read,
    /// `nvmem_write`.
    Write,
    /// `nvmem_create_entry`.
    CreateEntry,
    /// `nvmem_read_sp_version`.
    ReadVersion,
}

/// Why the programmer refused to start or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The driver patch image is not valid.
    #[error("driver patch image: {0}")]
    InvalidDriverImage(PatchError),
    /// The firmware patch image is not valid.
    #[error("firmware patch image: {0}")]
    InvalidFirmwareImage(PatchError),
    /// An image of the wrong kind was given for a slot.
    #[error("expected a {expected}, the image is a {found}")]
    WrongImageKind {
        /// What the slot needs.
        expected: ImageKind,
        /// What the image is.
        found: ImageKind,
    },
    /// Both images are known (or both synthetic) but belong to different service packs.
    #[error("driver and firmware patches belong to different service packs")]
    MismatchedImages,
    /// [`Config::require_known_images`] is set and an image is not in the table.
    #[error("patch image is not a known service pack")]
    UnknownImage,
    /// A configuration value out of range (chunks 1 to 128, at least one attempt).
    #[error("invalid programmer configuration: {0}")]
    BadConfig(&'static str),
    /// The radio parameters could not be read and no backup or default was given.
    #[error("radio parameters unreadable and no backup or default given; nothing was written")]
    NoRadioParams,
    /// An NVMEM operation kept failing.
    #[error("{op:?} of file {file:?} at offset {offset} failed {attempts} times")]
    Nvmem {
        /// The operation.
        op: Operation,
        /// The file (`None` for the version).
        file: Option<FileId>,
        /// The offset.
        offset: u32,
        /// Attempts made.
        attempts: u8,
    },
    /// Read-back differed from what was written, on every attempt.
    #[error("file {file:?} reads back differently at offset {offset} after {attempts} writes")]
    VerifyFailed {
        /// The file.
        file: FileId,
        /// First differing chunk's offset.
        offset: u32,
        /// Writes attempted.
        attempts: u8,
    },
    /// The chip reports another version than the driver patch gives.
    #[error("chip reports service pack {found}, expected {expected}")]
    VersionMismatch {
        /// What the image gives.
        expected: ServicePack,
        /// What the chip reports.
        found: ServicePack,
    },
}

/// Where a restored value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the chip during this run.
    Chip,
    /// From [`Config::saved_backup`].
    SavedBackup,
    /// From the caller's default or fallback.
    Default,
    /// Not available; the file was left alone.
    Missing,
}

/// How the programmer behaves.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// Attempts per NVMEM operation and writes per file before giving up (at least 1; default 3, as Spark's
    /// programmer read with 3 tries).
    pub retries: u8,
    /// Bytes per `nvmem_write` (1 to 128; default 32, `SP_PORTION_SIZE`, which any host driver can carry).
    pub write_chunk: usize,
    /// Bytes per `nvmem_read` (1 to 128; default 32; TI's TINY driver needs 8).
    pub read_chunk: usize,
    /// Radio parameters to use when the chip's cannot be read (e.g. TI's published defaults).
    pub default_radio_params: Option<&'a RadioParams>,
    /// MAC address to use when the chip's cannot be read (e.g. [`MacAddress::from_stm32_uid`]).
    pub fallback_mac: Option<MacAddress>,
    /// The backup an interrupted earlier run handed out, to restore instead of what the chip now holds.
    pub saved_backup: Option<&'a Backup>,
    /// Save and restore the first 100 bytes of the WLAN configuration (Spark's addition; default true).
    pub restore_wlan_config: bool,
    /// Recreate Spark's 16-byte user file 14 when it is missing (default true).
    pub spark_user_file: bool,
    /// Rewrite the table even when its layout already matches (the original programmers always did; default
    /// false).
    pub always_rewrite_fat: bool,
    /// The version to expect afterwards; by default the one the known driver image reports (none checked for an
    /// unknown image).
    pub expected_version: Option<ServicePack>,
    /// Refuse images that are not in the known table (default false).
    pub require_known_images: bool,
}

impl Default for Config<'_> {
    fn default() -> Self {
        Config {
            retries: 3,
            write_chunk: WRITE_PORTION,
            read_chunk: 32,
            default_radio_params: None,
            fallback_mac: None,
            saved_backup: None,
            restore_wlan_config: true,
            spark_user_file: true,
            always_rewrite_fat: false,
            expected_version: None,
            require_known_images: false,
        }
    }
}

/// The next thing the caller must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Action<'p> {
    /// Read `len` bytes of `file` from `offset`; answer [`Outcome::Read`] or [`Outcome::Failed`].
    Read {
        /// The file.
        file: FileId,
        /// The offset.
        offset: u32,
        /// Bytes to read.
        len: usize,
    },
    /// Write `data` to `file` at `offset`; answer [`Outcome::Done`] or [`Outcome::Failed`].
    Write {
        /// The file.
        file: FileId,
        /// The offset.
        offset: u32,
        /// The bytes.
        data: &'p [u8],
    },
    /// Create user file `file` with `len` bytes; answer [`Outcome::Done`] or [`Outcome::Failed`].
    CreateEntry {
        /// The file.
        file: FileId,
        /// The new length.
        len: u32,
    },
    /// Read the service-pack version; answer [`Outcome::Version`] or [`Outcome::Failed`].
    ReadVersion,
    /// Persist this backup if the run must survive power loss (see the module docs), then answer
    /// [`Outcome::Done`]. No write has happened yet.
    SaveBackup(&'p Backup),
    /// The chip is patched and verified; any persisted backup may be discarded.
    Finished(&'p Report),
    /// The run stopped; it keeps returning this error.
    Failed(Error),
}

/// The result of the step the caller performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'b> {
    /// The bytes read.
    Read(&'b [u8]),
    /// A write, create or save succeeded.
    Done,
    /// The version read.
    Version(ServicePack),
    /// The operation failed.
    Failed,
}

/// What a finished run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The version before (if it could be read).
    pub initial_version: Option<ServicePack>,
    /// The version after.
    pub final_version: ServicePack,
    /// The driver patch burnt.
    pub driver: crate::patch::Identification,
    /// The firmware patch burnt.
    pub firmware: crate::patch::Identification,
    /// Whether the table was rewritten (the destructive step).
    pub fat_rewritten: bool,
    /// The MAC address in file 6 afterwards, if one was written or kept.
    pub mac: Option<MacAddress>,
    /// Where the MAC came from.
    pub mac_source: Source,
    /// Whether the multicast bit of the MAC had to be cleared.
    pub mac_multicast_cleared: bool,
    /// Where the radio parameters came from.
    pub radio_source: Source,
    /// Where the WLAN configuration came from.
    pub wlan_config_source: Source,
    /// Files written (bit n = file n; bit 16 = the table).
    pub files_written: u32,
    /// `nvmem_write` calls made.
    pub writes: u32,
    /// Bytes written.
    pub bytes_written: u32,
    /// NVMEM operations that failed and were retried.
    pub retried_operations: u32,
    /// Files rewritten because their read-back differed.
    pub verify_rewrites: u32,
}

impl Report {
    /// True when the chip already held everything and nothing was written.
    pub fn already_patched(&self) -> bool {
        self.writes == 0
    }
}

/// The initial reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Fat,
    Mac,
    Radio,
    Wlan,
}

/// The files the programmer writes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    FatMagic,
    FatEntries,
    Radio,
    Wlan,
    Mac,
    Driver,
    Firmware,
    SparkFile,
}

const TARGETS: [Target; 8] = [
    Target::FatMagic,
    Target::FatEntries,
    Target::Radio,
    Target::Wlan,
    Target::Mac,
    Target::Driver,
    Target::Firmware,
    Target::SparkFile,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    InitialVersion,
    Reading { slot: Slot, pos: usize },
    SaveBackup,
    Check { target: usize, pos: usize },
    Create { target: usize, zero_first: bool },
    Write { target: usize, pos: usize },
    Verify { target: usize, pos: usize },
    FinalVersion,
    Finished,
    Failed(Error),
}

/// The sans-IO patch programmer. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Programmer<'a> {
    driver: PatchImage<'a>,
    firmware: PatchImage<'a>,
    config: Config<'a>,
    stage: Stage,
    attempts: u8,
    rewrites: u8,
    // what the initial reads found
    fat_read: [u8; FAT_LEN],
    fat_ok: bool,
    mac_read: [u8; MacAddress::LEN],
    mac_ok: bool,
    radio_read: [u8; RADIO_PARAMS_LEN],
    radio_ok: bool,
    wlan_read: [u8; WLAN_CONFIG_BACKUP_LEN],
    wlan_ok: bool,
    // what will be written
    fat_target: [u8; FAT_LEN],
    fat_needed: bool,
    /// What was really read (or came from the saved backup): handed to the caller.
    backup: Backup,
    /// What will be written: the backup completed with defaults.
    restore_mac: Option<MacAddress>,
    restore_radio: RadioParams,
    restore_wlan: Option<[u8; WLAN_CONFIG_BACKUP_LEN]>,
    report: Report,
}

impl<'a> Programmer<'a> {
    /// Validates the images and the configuration; nothing reaches the chip when this fails.
    pub fn new(driver: &'a [u8], firmware: &'a [u8], config: Config<'a>) -> Result<Self, Error> {
        if config.retries == 0 {
            return Err(Error::BadConfig("retries must be at least 1"));
        }
        if !(1..=MAX_CHUNK).contains(&config.write_chunk)
            || !(1..=MAX_CHUNK).contains(&config.read_chunk)
        {
            return Err(Error::BadConfig(
                "read and write chunks must be 1 to 128 bytes",
            ));
        }
        let driver = PatchImage::parse(driver).map_err(Error::InvalidDriverImage)?;
        let firmware = PatchImage::parse(firmware).map_err(Error::InvalidFirmwareImage)?;
        if driver.kind() != ImageKind::Driver {
            return Err(Error::WrongImageKind {
                expected: ImageKind::Driver,
                found: driver.kind(),
            });
        }
        if firmware.kind() != ImageKind::Firmware {
            return Err(Error::WrongImageKind {
                expected: ImageKind::Firmware,
                found: firmware.kind(),
            });
        }
        let (drv_id, fw_id) = (driver.identify(), firmware.identify());
        if config.require_known_images && (drv_id.known().is_none() || fw_id.known().is_none()) {
            return Err(Error::UnknownImage);
        }
        let known_version = driver.reports();
        let firmware_fits = match (known_version, fw_id) {
            (Some(sp), Identification::Known(fw)) => fw.belongs_to(sp),
            (Some(sp), Identification::Synthetic(fw_sp)) => fw_sp == sp,
            _ => true,
        };
        if !firmware_fits {
            return Err(Error::MismatchedImages);
        }
        let mut config = config;
        config.expected_version = config.expected_version.or(known_version);
        Ok(Programmer {
            driver,
            firmware,
            config,
            stage: Stage::InitialVersion,
            attempts: 0,
            rewrites: 0,
            fat_read: [0; FAT_LEN],
            fat_ok: false,
            mac_read: [0; MacAddress::LEN],
            mac_ok: false,
            radio_read: [0; RADIO_PARAMS_LEN],
            radio_ok: false,
            wlan_read: [0; WLAN_CONFIG_BACKUP_LEN],
            wlan_ok: false,
            fat_target: FatTable::programmer_default().to_bytes(),
            fat_needed: true,
            backup: Backup {
                mac: None,
                radio: None,
                wlan_config: None,
            },
            restore_mac: None,
            restore_radio: RadioParams([0; RADIO_PARAMS_LEN]),
            restore_wlan: None,
            report: Report {
                initial_version: None,
                final_version: ServicePack::new(0, 0),
                driver: drv_id,
                firmware: fw_id,
                fat_rewritten: false,
                mac: None,
                mac_source: Source::Missing,
                mac_multicast_cleared: false,
                radio_source: Source::Missing,
                wlan_config_source: Source::Missing,
                files_written: 0,
                writes: 0,
                bytes_written: 0,
                retried_operations: 0,
                verify_rewrites: 0,
            },
        })
    }

    /// The validated driver image.
    pub fn driver(&self) -> &PatchImage<'a> {
        &self.driver
    }

    /// The validated firmware image.
    pub fn firmware(&self) -> &PatchImage<'a> {
        &self.firmware
    }

    /// The version the run will insist on at the end, if any.
    pub fn expected_version(&self) -> Option<ServicePack> {
        self.config.expected_version
    }

    /// The report so far (complete once [`Action::Finished`] is returned).
    pub fn report(&self) -> &Report {
        &self.report
    }

    fn slot_buf(&self, slot: Slot) -> &[u8] {
        match slot {
            Slot::Fat => &self.fat_read,
            Slot::Mac => &self.mac_read,
            Slot::Radio => &self.radio_read,
            Slot::Wlan => &self.wlan_read,
        }
    }

    fn slot_file(slot: Slot) -> FileId {
        match slot {
            Slot::Fat => FileId::Fat,
            Slot::Mac => FileId::Mac,
            Slot::Radio => FileId::Rm,
            Slot::Wlan => FileId::WlanConfig,
        }
    }

    /// The file, base offset and bytes of a target.
    fn target(&self, index: usize) -> (FileId, u32, &[u8]) {
        match TARGETS[index] {
            Target::FatMagic => (FileId::Fat, 0, &FAT_MAGIC),
            Target::FatEntries => (FileId::Fat, 4, &self.fat_target[4..]),
            Target::Radio => (FileId::Rm, 0, self.restore_radio.as_bytes()),
            Target::Wlan => (
                FileId::WlanConfig,
                0,
                self.restore_wlan.as_ref().map_or(&[][..], |w| &w[..]),
            ),
            Target::Mac => (
                FileId::Mac,
                0,
                self.restore_mac.as_ref().map_or(&[][..], |m| &m.0[..]),
            ),
            Target::Driver => (FileId::WlanDriverSp, 0, self.driver.as_bytes()),
            Target::Firmware => (FileId::WlanFwSp, 0, self.firmware.as_bytes()),
            Target::SparkFile => (FileId::User14, 0, &SPARK_FILE_ZEROS),
        }
    }

    fn target_enabled(&self, index: usize) -> bool {
        match TARGETS[index] {
            Target::FatMagic | Target::FatEntries => self.fat_needed,
            Target::Wlan => self.restore_wlan.is_some(),
            Target::Mac => self.restore_mac.is_some(),
            Target::SparkFile => self.config.spark_user_file,
            Target::Radio | Target::Driver | Target::Firmware => true,
        }
    }

    /// The next action to perform. Called again without a [`Programmer::handle_outcome`] in between, the same action.
    pub fn poll_action(&self) -> Action<'_> {
        match self.stage {
            Stage::InitialVersion | Stage::FinalVersion => Action::ReadVersion,
            Stage::Reading { slot, pos } => {
                let len = (self.slot_buf(slot).len() - pos).min(self.config.read_chunk);
                Action::Read {
                    file: Self::slot_file(slot),
                    offset: pos as u32,
                    len,
                }
            }
            Stage::SaveBackup => Action::SaveBackup(&self.backup),
            Stage::Check { target, pos } | Stage::Verify { target, pos } => {
                let (file, base, data) = self.target(target);
                let len = (data.len() - pos).min(self.config.read_chunk);
                Action::Read {
                    file,
                    offset: base + pos as u32,
                    len,
                }
            }
            Stage::Create { target, zero_first } => {
                let (file, _, data) = self.target(target);
                Action::CreateEntry {
                    file,
                    len: if zero_first { 0 } else { data.len() as u32 },
                }
            }
            Stage::Write { target, pos } => {
                let (file, base, data) = self.target(target);
                let end = (pos + self.config.write_chunk).min(data.len());
                Action::Write {
                    file,
                    offset: base + pos as u32,
                    data: &data[pos..end],
                }
            }
            Stage::Finished => Action::Finished(&self.report),
            Stage::Failed(e) => Action::Failed(e),
        }
    }

    /// Reports the outcome of the action last returned by [`Programmer::poll_action`].
    ///
    /// An outcome of the wrong kind (a version for a read, bytes of the wrong length) counts as a failed attempt.
    pub fn handle_outcome(&mut self, outcome: Outcome<'_>) {
        match self.stage {
            Stage::InitialVersion => {
                if let Outcome::Version(v) = outcome {
                    self.report.initial_version = Some(v);
                } else if self.retry() {
                    return;
                }
                self.attempts = 0;
                self.stage = Stage::Reading {
                    slot: Slot::Fat,
                    pos: 0,
                };
            }
            Stage::Reading { slot, pos } => self.handle_initial_read(slot, pos, outcome),
            Stage::SaveBackup => self.enter_target(0),
            Stage::Check { target, pos } => self.handle_check(target, pos, outcome),
            Stage::Create { target, zero_first } => match outcome {
                Outcome::Done => {
                    self.attempts = 0;
                    self.stage = if zero_first {
                        Stage::Create {
                            target,
                            zero_first: false,
                        }
                    } else {
                        Stage::Write { target, pos: 0 }
                    };
                }
                _ => {
                    if !self.retry() {
                        let (file, _, _) = self.target(target);
                        self.fail_op(Operation::CreateEntry, Some(file), 0);
                    }
                }
            },
            Stage::Write { target, pos } => self.handle_write(target, pos, outcome),
            Stage::Verify { target, pos } => self.handle_verify(target, pos, outcome),
            Stage::FinalVersion => match outcome {
                Outcome::Version(found) => {
                    self.report.final_version = found;
                    self.stage = match self.config.expected_version {
                        Some(expected) if expected != found => {
                            Stage::Failed(Error::VersionMismatch { expected, found })
                        }
                        _ => Stage::Finished,
                    };
                }
                _ => {
                    if !self.retry() {
                        self.fail_op(Operation::ReadVersion, None, 0);
                    }
                }
            },
            Stage::Finished | Stage::Failed(_) => {}
        }
    }

    /// Counts a failed attempt; true when another attempt is allowed.
    fn retry(&mut self) -> bool {
        self.attempts += 1;
        self.report.retried_operations += 1;
        self.attempts < self.config.retries
    }

    fn fail_op(&mut self, op: Operation, file: Option<FileId>, offset: u32) {
        self.stage = Stage::Failed(Error::Nvmem {
            op,
            file,
            offset,
            attempts: self.attempts,
        });
    }

    fn slot_buf_mut(&mut self, slot: Slot) -> &mut [u8] {
        match slot {
            Slot::Fat => &mut self.fat_read,
            Slot::Mac => &mut self.mac_read,
            Slot::Radio => &mut self.radio_read,
            Slot::Wlan => &mut self.wlan_read,
        }
    }

    fn set_slot_ok(&mut self, slot: Slot, ok: bool) {
        match slot {
            Slot::Fat => self.fat_ok = ok,
            Slot::Mac => self.mac_ok = ok,
            Slot::Radio => self.radio_ok = ok,
            Slot::Wlan => self.wlan_ok = ok,
        }
    }

    fn handle_initial_read(&mut self, slot: Slot, pos: usize, outcome: Outcome<'_>) {
        let chunk = (self.slot_buf(slot).len() - pos).min(self.config.read_chunk);
        match outcome {
            Outcome::Read(bytes) if bytes.len() == chunk => {
                self.slot_buf_mut(slot)[pos..pos + chunk].copy_from_slice(bytes);
                self.attempts = 0;
                if pos + chunk < self.slot_buf(slot).len() {
                    self.stage = Stage::Reading {
                        slot,
                        pos: pos + chunk,
                    };
                    return;
                }
                self.set_slot_ok(slot, true);
            }
            _ => {
                if self.retry() {
                    return;
                }
                // Unreadable is not fatal: the choice below falls back.
                self.attempts = 0;
                self.set_slot_ok(slot, false);
            }
        }
        let next = match slot {
            Slot::Fat => Some(Slot::Mac),
            Slot::Mac => Some(Slot::Radio),
            Slot::Radio if self.config.restore_wlan_config => Some(Slot::Wlan),
            Slot::Radio | Slot::Wlan => None,
        };
        match next {
            Some(slot) => self.stage = Stage::Reading { slot, pos: 0 },
            None => self.choose(),
        }
    }

    /// Chooses what to restore and whether the table must be rewritten.
    ///
    /// Each value comes from the saved backup first (taken before an earlier run's destructive step), then from
    /// what the chip holds now, then from the caller's default. Only the first two go into the backup handed out,
    /// so a persisted backup never turns a default into "the module's own" value.
    fn choose(&mut self) {
        let saved = self.config.saved_backup;
        let chip_radio = RadioParams(self.radio_read);
        let chip_radio = (self.radio_ok && !chip_radio.is_blank()).then_some(chip_radio);
        let chip_mac = MacAddress(self.mac_read);
        let chip_mac = (self.mac_ok && !chip_mac.is_blank()).then_some(chip_mac);
        let chip_wlan = (self.config.restore_wlan_config && self.wlan_ok).then_some(self.wlan_read);

        let (radio, radio_source) = pick(saved.and_then(|b| b.radio), chip_radio);
        let (mac, mac_source) = pick(saved.and_then(|b| b.mac), chip_mac);
        let (wlan, wlan_source) = if self.config.restore_wlan_config {
            pick(saved.and_then(|b| b.wlan_config), chip_wlan)
        } else {
            (None, Source::Missing)
        };
        self.backup = Backup {
            mac,
            radio,
            wlan_config: wlan,
        };

        let (radio, radio_source) = match (radio, self.config.default_radio_params) {
            (Some(r), _) => (r, radio_source),
            (None, Some(d)) => (*d, Source::Default),
            (None, None) => {
                self.stage = Stage::Failed(Error::NoRadioParams);
                return;
            }
        };
        let (mac, mac_source) = match (mac, self.config.fallback_mac) {
            (Some(m), _) => (Some(m), mac_source),
            (None, Some(m)) => (Some(m), Source::Default),
            (None, None) => (None, Source::Missing),
        };
        // A station address must not have the group bit; Spark's programmer cleared it too.
        let mac = mac.map(|mut m| {
            if m.is_multicast() {
                m.0[0] &= 0xFE;
                self.report.mac_multicast_cleared = true;
            }
            m
        });
        self.restore_radio = radio;
        self.restore_mac = mac;
        self.restore_wlan = wlan;
        self.report.mac = mac;
        self.report.mac_source = mac_source;
        self.report.radio_source = radio_source;
        self.report.wlan_config_source = wlan_source;
        let current = if self.fat_ok {
            FatTable::parse(&self.fat_read).ok()
        } else {
            None
        };
        self.fat_needed = self.config.always_rewrite_fat
            || !current.is_some_and(|t| t.same_layout(&FatTable::programmer_default()));
        self.stage = Stage::SaveBackup;
    }

    fn enter_target(&mut self, from: usize) {
        self.attempts = 0;
        self.rewrites = 0;
        self.stage = match (from..TARGETS.len()).find(|&i| self.target_enabled(i)) {
            Some(target) => Stage::Check { target, pos: 0 },
            None => Stage::FinalVersion,
        };
    }

    fn start_writing(&mut self, target: usize) {
        self.attempts = 0;
        self.stage = if TARGETS[target] == Target::SparkFile {
            Stage::Create {
                target,
                zero_first: true,
            }
        } else {
            Stage::Write { target, pos: 0 }
        };
    }

    /// Whether `bytes` equal the target's bytes at `pos`; also returns the target's length.
    fn compare(
        &self,
        target: usize,
        pos: usize,
        outcome: &Outcome<'_>,
    ) -> (Option<bool>, FileId, u32, usize) {
        let (file, base, data) = self.target(target);
        let chunk = (data.len() - pos).min(self.config.read_chunk);
        let equal = match outcome {
            Outcome::Read(bytes) if bytes.len() == chunk => Some(*bytes == &data[pos..pos + chunk]),
            _ => None,
        };
        (equal, file, base, data.len())
    }

    fn handle_check(&mut self, target: usize, pos: usize, outcome: Outcome<'_>) {
        let (equal, _, _, len) = self.compare(target, pos, &outcome);
        let next = pos + (len - pos).min(self.config.read_chunk);
        match equal {
            Some(equal) => {
                // Spark's file only has to exist: its content is the user's flags.
                let matches = equal || TARGETS[target] == Target::SparkFile;
                self.attempts = 0;
                if !matches {
                    self.start_writing(target);
                } else if next < len {
                    self.stage = Stage::Check { target, pos: next };
                } else {
                    self.enter_target(target + 1);
                }
            }
            None => {
                if !self.retry() {
                    // Unreadable counts as different: write it.
                    self.start_writing(target);
                }
            }
        }
    }

    fn handle_write(&mut self, target: usize, pos: usize, outcome: Outcome<'_>) {
        let (file, base, data) = self.target(target);
        let (len, end) = (data.len(), (pos + self.config.write_chunk).min(data.len()));
        match outcome {
            Outcome::Done => {
                self.report.writes += 1;
                self.report.bytes_written += (end - pos) as u32;
                self.report.files_written |= 1 << file.id();
                if file == FileId::Fat {
                    self.report.fat_rewritten = true;
                }
                self.attempts = 0;
                self.stage = if end < len {
                    Stage::Write { target, pos: end }
                } else {
                    Stage::Verify { target, pos: 0 }
                };
            }
            _ => {
                if !self.retry() {
                    self.fail_op(Operation::Write, Some(file), base + pos as u32);
                }
            }
        }
    }

    fn handle_verify(&mut self, target: usize, pos: usize, outcome: Outcome<'_>) {
        let (equal, file, base, len) = self.compare(target, pos, &outcome);
        let good = match equal {
            Some(good) => good,
            None if self.retry() => return,
            None => false,
        };
        self.attempts = 0;
        if good {
            let next = pos + (len - pos).min(self.config.read_chunk);
            if next < len {
                self.stage = Stage::Verify { target, pos: next };
            } else {
                self.enter_target(target + 1);
            }
            return;
        }
        self.rewrites += 1;
        self.report.verify_rewrites += 1;
        if self.rewrites >= self.config.retries {
            self.stage = Stage::Failed(Error::VerifyFailed {
                file,
                offset: base + pos as u32,
                attempts: self.rewrites,
            });
        } else {
            self.start_writing(target);
        }
    }
}

/// The saved backup's value first, then the chip's.
fn pick<T>(saved: Option<T>, chip: Option<T>) -> (Option<T>, Source) {
    match (saved, chip) {
        (Some(v), _) => (Some(v), Source::SavedBackup),
        (None, Some(v)) => (Some(v), Source::Chip),
        (None, None) => (None, Source::Missing),
    }
}

/// A run that stopped, with the driver's last error when an NVMEM operation caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct RunError<E> {
    /// Why the programmer stopped.
    pub error: Error,
    /// The last error the [`Nvmem`] implementation returned, if any.
    pub last_nvmem_error: Option<E>,
}

/// Drives `programmer` to the end over `nvmem`, handing the backup to `save` before the first write.
///
/// Uses a 128-byte stack buffer for reads.
pub fn run<N: Nvmem>(
    programmer: &mut Programmer<'_>,
    nvmem: &mut N,
    mut save: impl FnMut(&Backup),
) -> Result<Report, RunError<N::Error>> {
    let mut buf = [0u8; MAX_CHUNK];
    let mut last = None;
    loop {
        let result = match programmer.poll_action() {
            Action::Read { file, offset, len } => {
                let buf = &mut buf[..len];
                nvmem.read(file, offset, buf).map(|()| Outcome::Read(buf))
            }
            Action::Write { file, offset, data } => {
                nvmem.write(file, offset, data).map(|()| Outcome::Done)
            }
            Action::CreateEntry { file, len } => {
                nvmem.create_entry(file, len).map(|()| Outcome::Done)
            }
            Action::ReadVersion => nvmem.read_sp_version().map(Outcome::Version),
            Action::SaveBackup(backup) => {
                save(backup);
                Ok(Outcome::Done)
            }
            Action::Finished(report) => return Ok(*report),
            Action::Failed(error) => {
                return Err(RunError {
                    error,
                    last_nvmem_error: last,
                });
            }
        };
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                last = Some(e);
                Outcome::Failed
            }
        };
        programmer.handle_outcome(outcome);
    }
}
