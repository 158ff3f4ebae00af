//! Firmware inspection: Particle module binaries and legacy (2014) Spark Core images.
//!
//! A Device OS module carries a 24-byte `module_info_t` — at offset 0 for user and system parts, after the vector
//! table otherwise (0x10C on the Core, 0x184 on STM32F2 devices, 0x200 on nRF52840) — and ends with a suffix
//! (product id and version, the SHA-256 of what precedes it, the suffix size) and a big-endian CRC-32/ISO-HDLC of
//! everything but the last four bytes. A legacy Core image has none of this: it is a bare vector table at
//! 0x08005000, and all that can be checked is that the initial stack pointer lies in SRAM and the vectors point
//! into the image.
//!
//! [`inspect`] reports every check with its outcome and never fails; [`check_for`] decides whether an image may
//! be written to a place on a device and refuses it with a typed [`FirmwareError`] otherwise: wrong platform,
//! does not fit, bad CRC, bad SHA-256, wrong load address, not firmware at all.
//!
//! ```
//! use spark_dfu::module::{Check, Format, FirmwareError, Outcome, check_for, inspect};
//! use spark_dfu::platform::{Item, Platform};
//!
//! // A legacy Core image: a vector table (stack at the top of the 20 KiB SRAM, reset handler inside the image).
//! let mut image = vec![0u8; 512];
//! image[..4].copy_from_slice(&0x2000_5000u32.to_le_bytes());
//! image[4..8].copy_from_slice(&(0x0800_5000u32 + 0x101).to_le_bytes());
//!
//! let found = inspect(&image, 0x0800_5000);
//! assert_eq!(found.format, Format::Legacy { load_address: 0x0800_5000 });
//! assert_eq!(found.outcome(Check::ResetInImage), Outcome::Passed);
//! assert_eq!(found.outcome(Check::Crc), Outcome::NotApplicable);
//! assert_eq!(found.first_failure(), None);
//! let cleared = check_for(&image, Platform::Core, Item::UserFirmware).unwrap();
//! assert_eq!(cleared.location.address, 0x0800_5000);
//!
//! // A reset vector outside the image: reported by `inspect`, refused by `check_for`.
//! image[4..8].copy_from_slice(&0x0801_0001u32.to_le_bytes());
//! assert_eq!(inspect(&image, 0x0800_5000).first_failure(), Some(Check::ResetInImage));
//! assert!(matches!(
//!     check_for(&image, Platform::Core, Item::UserFirmware),
//!     Err(FirmwareError::NotFirmware(Some(Check::ResetInImage)))
//! ));
//! ```

use crate::platform::{Item, Location, Platform, core_map};
use crate::{InsufficientSize, ensure_len, le16, le32};
use sha2::{Digest, Sha256};

/// Length of `module_info_t`.
pub const MODULE_INFO_LEN: usize = 24;
/// Offsets where `module_info_t` is looked for, in order (none, nRF52840, STM32F2, Bluz, Core).
pub const MODULE_INFO_OFFSETS: [usize; 5] = [0, 0x200, 0x184, 0xC0, 0x10C];
/// The base suffix size (without product id and version).
pub const SUFFIX_BASE_LEN: u16 = 36;

/// What a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModuleFunction {
    /// 0: none.
    None,
    /// 1: a resource.
    Resource,
    /// 2: the bootloader.
    Bootloader,
    /// 3: monolithic firmware (system and user in one).
    MonoFirmware,
    /// 4: a system part.
    SystemPart,
    /// 5: user firmware.
    UserPart,
    /// 6: settings.
    Settings,
    /// 7: NCP (network co-processor) firmware.
    NcpFirmware,
    /// 8: the radio stack (SoftDevice).
    RadioStack,
    /// 9: an asset.
    Asset,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for ModuleFunction {
    fn from(v: u8) -> Self {
        match v {
            0 => Self::None,
            1 => Self::Resource,
            2 => Self::Bootloader,
            3 => Self::MonoFirmware,
            4 => Self::SystemPart,
            5 => Self::UserPart,
            6 => Self::Settings,
            7 => Self::NcpFirmware,
            8 => Self::RadioStack,
            9 => Self::Asset,
            n => Self::Unknown(n),
        }
    }
}

impl ModuleFunction {
    /// Whether this is one of the defined functions other than `None`.
    #[must_use]
    pub fn is_known(self) -> bool {
        !matches!(self, Self::None | Self::Unknown(_))
    }
}

/// A module this one needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// Its function.
    pub function: ModuleFunction,
    /// Its index.
    pub index: u8,
    /// The minimum version.
    pub version: u16,
}

/// `module_info_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuleInfo {
    /// First address of the module in flash.
    pub start: u32,
    /// One past the last address (where the CRC starts): the file is `end - start + 4` bytes.
    pub end: u32,
    /// Reserved (the MCU target on Gen 3).
    pub reserved: u8,
    /// Flags: 0x01 drop module info, 0x02 compressed, 0x04 combined, 0x08 encrypted, 0x10 prefix extensions.
    pub flags: u8,
    /// Module version.
    pub version: u16,
    /// Platform id.
    pub platform_id: u16,
    /// Function.
    pub function: ModuleFunction,
    /// Index (system part number, or 1 for user parts).
    pub index: u8,
    /// Up to two dependencies; a dependency with function `None` is absent.
    pub dependencies: [Dependency; 2],
}

impl ModuleInfo {
    /// Reads the 24 bytes at the start of `bytes`.
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..MODULE_INFO_LEN)?;
        let dep = |at: usize| Dependency {
            function: b[at].into(),
            index: b[at + 1],
            version: le16(b, at + 2),
        };
        Some(Self {
            start: le32(b, 0),
            end: le32(b, 4),
            reserved: b[8],
            flags: b[9],
            version: le16(b, 10),
            platform_id: le16(b, 12),
            function: b[14].into(),
            index: b[15],
            dependencies: [dep(16), dep(20)],
        })
    }

    /// The dependencies that are present.
    pub fn required(&self) -> impl Iterator<Item = Dependency> + '_ {
        self.dependencies
            .iter()
            .copied()
            .filter(|d| d.function != ModuleFunction::None)
    }

    /// The file length the addresses imply (`end - start + 4`).
    #[must_use]
    pub fn implied_len(&self) -> Option<u64> {
        (self.end > self.start).then(|| u64::from(self.end - self.start) + 4)
    }
}

/// The module suffix at the end of the file (before the CRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuleSuffix<'a> {
    /// The suffix size field (36, or 40 with product data).
    pub size: u16,
    /// SHA-256 of everything before it.
    pub sha256: &'a [u8],
    /// Product id (0xFFFF = none), when the suffix has product data.
    pub product_id: Option<u16>,
    /// Product version, when the suffix has product data.
    pub product_version: Option<u16>,
}

impl<'a> ModuleSuffix<'a> {
    /// Reads the suffix of a whole module file.
    #[must_use]
    pub fn parse(file: &'a [u8]) -> Option<Self> {
        let n = file.len();
        if n < 4 + SUFFIX_BASE_LEN as usize {
            return None;
        }
        let size = le16(file, n - 6);
        if size < SUFFIX_BASE_LEN || usize::from(size) + 4 > n {
            return None;
        }
        let sha256 = &file[n - 38..n - 6];
        let (product_id, product_version) = if size >= 40 {
            (Some(le16(file, n - 44)), Some(le16(file, n - 42)))
        } else {
            (None, None)
        };
        Some(Self {
            size,
            sha256,
            product_id,
            product_version,
        })
    }
}

/// The CRC trailer: stored and computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CrcTrailer {
    /// The last four bytes, big-endian.
    pub stored: u32,
    /// CRC-32 of everything before them.
    pub computed: u32,
}

impl CrcTrailer {
    /// Reads and computes the trailer of `file` (at least 4 bytes).
    #[must_use]
    pub fn of(file: &[u8]) -> Option<Self> {
        let n = file.len().checked_sub(4)?;
        let stored = u32::from_be_bytes([file[n], file[n + 1], file[n + 2], file[n + 3]]);
        Some(Self {
            stored,
            computed: crate::crc::crc32(&file[..n]),
        })
    }

    /// Whether they agree.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.stored == self.computed
    }
}

/// The first words of an ARM vector table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VectorTable {
    /// Initial stack pointer.
    pub initial_sp: u32,
    /// Reset handler.
    pub reset: u32,
    /// NMI handler.
    pub nmi: u32,
    /// HardFault handler.
    pub hard_fault: u32,
}

impl VectorTable {
    /// Reads the first 16 bytes.
    #[must_use]
    pub fn parse(image: &[u8]) -> Option<Self> {
        let b = image.get(..16)?;
        Some(Self {
            initial_sp: le32(b, 0),
            reset: le32(b, 4),
            nmi: le32(b, 8),
            hard_fault: le32(b, 12),
        })
    }
}

/// What the image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// A Device OS module.
    Module {
        /// Where `module_info_t` was found.
        offset: usize,
        /// Its contents.
        info: ModuleInfo,
    },
    /// No module header: a bare image (checked as a legacy Core image at `load_address`).
    Legacy {
        /// The address the image was checked against.
        load_address: u32,
    },
}

/// A check that [`inspect`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// Module: the length equals `end - start + 4`.
    ModuleLength,
    /// Module: the big-endian CRC-32 trailer matches.
    Crc,
    /// Module: the suffix size field is sane.
    SuffixSize,
    /// Module: the SHA-256 in the suffix matches.
    Sha256,
    /// Legacy: the image is 8 bytes or more and no longer than the Core's 108 KiB application region.
    LegacySize,
    /// Legacy: the initial stack pointer passes the bootloader's test `(sp & 0x2FFE0000) == 0x20000000`.
    StackInSram,
    /// Legacy: the initial stack pointer is inside the STM32F103CB's 20 KiB of SRAM.
    StackInCoreSram,
    /// Legacy: the reset vector is a Thumb address inside the image.
    ResetInImage,
    /// Legacy: the NMI and HardFault vectors are Thumb addresses inside the image (or 0).
    ExceptionVectorsInImage,
}

impl core::fmt::Display for Check {
    /// The check in words, as a person reads it in a report ("the CRC matches").
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::ModuleLength => "the module length matches its header",
            Self::Crc => "the CRC matches",
            Self::SuffixSize => "the module suffix is well formed",
            Self::Sha256 => "the SHA-256 matches",
            Self::LegacySize => "the size fits the Core's application region",
            Self::StackInSram => "the initial stack pointer is in SRAM",
            Self::StackInCoreSram => "the initial stack pointer is in the Core's 20 KiB of SRAM",
            Self::ResetInImage => "the reset vector points into the image",
            Self::ExceptionVectorsInImage => "the NMI and HardFault vectors point into the image",
        })
    }
}

impl Check {
    /// What a failure of this check means, in words ("the CRC does not match").
    #[must_use]
    pub fn failure(self) -> &'static str {
        match self {
            Self::ModuleLength => "the module length does not match its header",
            Self::Crc => "the CRC does not match",
            Self::SuffixSize => "the module suffix is malformed",
            Self::Sha256 => "the SHA-256 does not match",
            Self::LegacySize => "the size does not fit the Core's application region",
            Self::StackInSram => "the initial stack pointer is not in SRAM",
            Self::StackInCoreSram => {
                "the initial stack pointer is outside the Core's 20 KiB of SRAM"
            }
            Self::ResetInImage => "the reset vector does not point into the image",
            Self::ExceptionVectorsInImage => "the NMI or HardFault vector points outside the image",
        }
    }
}

/// Every check, in report order.
pub const CHECKS: [Check; 9] = [
    Check::ModuleLength,
    Check::Crc,
    Check::SuffixSize,
    Check::Sha256,
    Check::LegacySize,
    Check::StackInSram,
    Check::StackInCoreSram,
    Check::ResetInImage,
    Check::ExceptionVectorsInImage,
];

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// It failed.
    Failed,
    /// It does not apply to this kind of image.
    NotApplicable,
}

/// Everything [`inspect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspection<'a> {
    /// The image.
    pub image: &'a [u8],
    /// What it is.
    pub format: Format,
    /// The CRC trailer (modules only).
    pub crc: Option<CrcTrailer>,
    /// The module suffix (modules only, when readable).
    pub suffix: Option<ModuleSuffix<'a>>,
    /// The vector table, when the image starts with one (legacy images and monolithic modules).
    pub vectors: Option<VectorTable>,
    outcomes: [Outcome; CHECKS.len()],
}

impl Inspection<'_> {
    /// The outcome of one check.
    #[must_use]
    pub fn outcome(&self, check: Check) -> Outcome {
        CHECKS
            .iter()
            .position(|&c| c == check)
            .map_or(Outcome::NotApplicable, |i| self.outcomes[i])
    }

    /// Every check with its outcome, in order.
    pub fn checks(&self) -> impl Iterator<Item = (Check, Outcome)> + '_ {
        CHECKS.iter().copied().zip(self.outcomes.iter().copied())
    }

    /// The first check that failed.
    #[must_use]
    pub fn first_failure(&self) -> Option<Check> {
        self.checks()
            .find(|&(_, o)| o == Outcome::Failed)
            .map(|(c, _)| c)
    }

    /// The module info, for modules.
    #[must_use]
    pub fn module_info(&self) -> Option<ModuleInfo> {
        match self.format {
            Format::Module { info, .. } => Some(info),
            Format::Legacy { .. } => None,
        }
    }
}

fn find_module_info(image: &[u8]) -> Option<(usize, ModuleInfo)> {
    let mut best: Option<(u8, usize, ModuleInfo)> = None;
    for offset in MODULE_INFO_OFFSETS {
        let Some(info) = image.get(offset..).and_then(ModuleInfo::parse) else {
            continue;
        };
        let Some(implied) = info.implied_len() else {
            continue;
        };
        if !info.function.is_known() || implied > image.len() as u64 {
            continue;
        }
        // Header-less user parts start with their own module info, so its start is the first word.
        let exact = implied == image.len() as u64;
        let known_platform = Platform::from_id(info.platform_id).is_some();
        let score = u8::from(exact) * 2 + u8::from(known_platform);
        if score > 0 && best.is_none_or(|(s, ..)| score > s) {
            best = Some((score, offset, info));
        }
    }
    best.map(|(_, offset, info)| (offset, info))
}

fn pass(ok: bool) -> Outcome {
    if ok { Outcome::Passed } else { Outcome::Failed }
}

fn thumb_in(address: u32, start: u32, len: usize) -> bool {
    address & 1 == 1
        && u64::from(address & !1) >= u64::from(start)
        && u64::from(address & !1) < u64::from(start) + len as u64
}

/// Inspects an image. Images without module info are checked as legacy images loaded at `legacy_load_address`
/// (0x08005000 for Core application firmware).
#[must_use]
pub fn inspect(image: &[u8], legacy_load_address: u32) -> Inspection<'_> {
    let mut outcomes = [Outcome::NotApplicable; CHECKS.len()];
    let mut set = |check: Check, outcome: Outcome| {
        if let Some(i) = CHECKS.iter().position(|&c| c == check) {
            outcomes[i] = outcome;
        }
    };
    let vectors = VectorTable::parse(image);
    if let Some((offset, info)) = find_module_info(image) {
        let crc = CrcTrailer::of(image);
        let suffix = ModuleSuffix::parse(image);
        set(
            Check::ModuleLength,
            pass(info.implied_len() == Some(image.len() as u64)),
        );
        set(Check::Crc, pass(crc.is_some_and(|c| c.ok())));
        set(
            Check::SuffixSize,
            pass(suffix.is_some_and(|s| s.size == 36 || s.size == 40)),
        );
        let sha_ok = suffix.is_some_and(|s| {
            let digest = Sha256::digest(&image[..image.len() - 38]);
            digest.as_slice() == s.sha256
        });
        set(Check::Sha256, pass(sha_ok));
        return Inspection {
            image,
            format: Format::Module { offset, info },
            crc,
            suffix,
            vectors: if offset == 0 { None } else { vectors },
            outcomes,
        };
    }
    set(
        Check::LegacySize,
        pass(image.len() >= 8 && image.len() <= core_map::FIRMWARE_LEN as usize),
    );
    let sp = image.get(..4).map(|b| le32(b, 0));
    let reset = image.get(4..8).map(|b| le32(b, 0));
    set(
        Check::StackInSram,
        pass(sp.is_some_and(|sp| sp & 0x2FFE_0000 == 0x2000_0000)),
    );
    set(
        Check::StackInCoreSram,
        pass(sp.is_some_and(|sp| sp > 0x2000_0000 && sp <= core_map::SRAM_END)),
    );
    set(
        Check::ResetInImage,
        pass(reset.is_some_and(|r| thumb_in(r, legacy_load_address, image.len()))),
    );
    set(
        Check::ExceptionVectorsInImage,
        pass(vectors.is_some_and(|v| {
            [v.nmi, v.hard_fault]
                .iter()
                .all(|&a| a == 0 || thumb_in(a, legacy_load_address, image.len()))
        })),
    );
    Inspection {
        image,
        format: Format::Legacy {
            load_address: legacy_load_address,
        },
        crc: None,
        suffix: None,
        vectors,
        outcomes,
    }
}

/// Why an image may not be written where it was meant to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FirmwareError {
    /// The platform has no such place.
    #[error("{platform:?} has no {item:?}")]
    NoSuchLocation {
        /// The platform.
        platform: Platform,
        /// What was asked for.
        item: Item,
    },
    /// The module was built for another platform.
    #[error("firmware is for platform {found}, the device is platform {expected}")]
    WrongPlatform {
        /// The device's platform id.
        expected: u16,
        /// The module's platform id.
        found: u16,
    },
    /// The image is larger than its region.
    #[error("image of {len} bytes does not fit the {room}-byte region")]
    DoesNotFit {
        /// The image length (after padding).
        len: usize,
        /// The region length.
        room: u32,
    },
    /// The module's CRC trailer does not match.
    #[error("firmware CRC does not match (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc {
        /// As stored.
        stored: u32,
        /// As computed.
        computed: u32,
    },
    /// The module's SHA-256 does not match.
    #[error("firmware SHA-256 does not match")]
    BadSha256,
    /// The module is linked for another address than the region's.
    #[error("module starts at {module_start:#010x}, the region at {region_start:#010x}")]
    WrongAddress {
        /// The module's start address.
        module_start: u32,
        /// The region's address.
        region_start: u32,
    },
    /// A header-less image failed a legacy check (or the platform requires module info).
    #[error("not a firmware image{}", NotFirmwareDetail(.0))]
    NotFirmware(Option<Check>),
}

/// The reason after "not a firmware image": the check that failed, in words.
struct NotFirmwareDetail<'a>(&'a Option<Check>);

impl core::fmt::Display for NotFirmwareDetail<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self.0 {
            Some(check) => write!(f, ": {}", check.failure()),
            None => f.write_str(" for this platform (it has no module header)"),
        }
    }
}

/// An image cleared for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleared<'a> {
    /// Everything found.
    pub inspection: Inspection<'a>,
    /// Where it goes.
    pub location: Location,
    /// The length to write: padded to the platform's write padding (the Core pads odd lengths with one 0x00).
    pub write_len: usize,
}

impl Cleared<'_> {
    /// Writes the image with its padding into `out`; returns [`Cleared::write_len`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        ensure_len(out, self.write_len)?;
        let image = self.inspection.image;
        out[..image.len()].copy_from_slice(image);
        out[image.len()..self.write_len].fill(0);
        Ok(self.write_len)
    }
}

/// Decides whether `image` may be written as `item` on `platform`.
///
/// Modules must be for this platform, carry a good CRC (and SHA-256 when they have a suffix), start at the
/// region's address when they are user firmware, and fit. Header-less images are accepted only on the Core and
/// only when every legacy check passes.
pub fn check_for(
    image: &[u8],
    platform: Platform,
    item: Item,
) -> Result<Cleared<'_>, FirmwareError> {
    let location = platform
        .location(item)
        .ok_or(FirmwareError::NoSuchLocation { platform, item })?;
    // Images in the Core's external-flash slots are applications linked for internal flash.
    let link_address = match item {
        Item::Bootloader => core_map::BOOTLOADER,
        _ if platform == Platform::Core => core_map::FIRMWARE,
        _ => location.address,
    };
    let inspection = inspect(image, link_address);
    match inspection.format {
        Format::Module { info, .. } => {
            if info.platform_id != platform.id() {
                return Err(FirmwareError::WrongPlatform {
                    expected: platform.id(),
                    found: info.platform_id,
                });
            }
            if let Some(crc) = inspection.crc.filter(|c| !c.ok()) {
                return Err(FirmwareError::BadCrc {
                    stored: crc.stored,
                    computed: crc.computed,
                });
            }
            if inspection.suffix.is_some() && inspection.outcome(Check::Sha256) == Outcome::Failed {
                return Err(FirmwareError::BadSha256);
            }
            let code = matches!(
                item,
                Item::UserFirmware | Item::Bootloader | Item::SystemPart(_)
            );
            if code && info.start != location.address {
                return Err(FirmwareError::WrongAddress {
                    module_start: info.start,
                    region_start: location.address,
                });
            }
        }
        Format::Legacy { .. } => {
            if platform != Platform::Core {
                return Err(FirmwareError::NotFirmware(None));
            }
            // An image that is merely too large is reported as not fitting, below.
            let too_large = image.len() > core_map::FIRMWARE_LEN as usize;
            let failed = inspection
                .checks()
                .find(|&(c, o)| o == Outcome::Failed && !(c == Check::LegacySize && too_large));
            if let Some((check, _)) = failed {
                return Err(FirmwareError::NotFirmware(Some(check)));
            }
        }
    }
    let pad = usize::from(platform.quirks().write_padding.max(1));
    let write_len = image.len().div_ceil(pad) * pad;
    // The Core copies its factory, backup and OTA images into the application region, so they must fit it too.
    let copied = platform == Platform::Core
        && matches!(
            item,
            Item::FactoryImage | Item::BackupImage | Item::OtaStaging
        );
    let room = if copied {
        location.len.min(core_map::FIRMWARE_LEN)
    } else {
        location.len
    };
    if write_len > room as usize {
        return Err(FirmwareError::DoesNotFit {
            len: write_len,
            room,
        });
    }
    Ok(Cleared {
        inspection,
        location,
        write_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_in_words() {
        extern crate std;
        use std::string::ToString;
        let garbage = [0x5Au8; 512];
        let refused = check_for(&garbage, Platform::Core, Item::UserFirmware).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "not a firmware image: the initial stack pointer is not in SRAM"
        );
        assert_eq!(
            FirmwareError::NotFirmware(None).to_string(),
            "not a firmware image for this platform (it has no module header)"
        );
    }

    /// A minimal user part: module info at 0, body, suffix, CRC.
    fn user_part(platform: u16, body: usize) -> [u8; 128] {
        let mut m = [0u8; 128];
        let len = 24 + body + 36 + 4;
        assert!(len <= 128);
        let start = 0x080A_0000u32;
        m[0..4].copy_from_slice(&start.to_le_bytes());
        m[4..8].copy_from_slice(&(start + len as u32 - 4).to_le_bytes());
        m[12..14].copy_from_slice(&platform.to_le_bytes());
        m[14] = 5;
        m[15] = 1;
        m[16..20].copy_from_slice(&[4, 2, 6, 0]);
        let sha = Sha256::digest(&m[..len - 38]);
        m[len - 38..len - 6].copy_from_slice(&sha);
        m[len - 6..len - 4].copy_from_slice(&36u16.to_le_bytes());
        let crc = crate::crc::crc32(&m[..len - 4]);
        m[len - 4..len].copy_from_slice(&crc.to_be_bytes());
        m
    }

    #[test]
    fn synthetic_user_part() {
        let m = user_part(6, 20);
        let image = &m[..84];
        let i = inspect(image, 0);
        assert_eq!(i.first_failure(), None);
        let info = i.module_info().unwrap();
        assert_eq!(
            (info.function, info.index, info.platform_id),
            (ModuleFunction::UserPart, 1, 6)
        );
        assert_eq!(
            info.required().next(),
            Some(Dependency {
                function: ModuleFunction::SystemPart,
                index: 2,
                version: 6
            })
        );
        let ok = check_for(image, Platform::Photon, Item::UserFirmware).unwrap();
        assert_eq!(ok.write_len, 84);
        assert_eq!(
            check_for(image, Platform::Electron, Item::UserFirmware),
            Err(FirmwareError::WrongPlatform {
                expected: 10,
                found: 6
            })
        );
        let mut bad = m;
        bad[30] ^= 1;
        assert!(matches!(
            check_for(&bad[..84], Platform::Photon, Item::UserFirmware),
            Err(FirmwareError::BadCrc { .. })
        ));
        assert_eq!(
            check_for(image, Platform::Photon, Item::FactoryImage).map(|c| c.location.address),
            Ok(0x080E_0000)
        );
    }
}
