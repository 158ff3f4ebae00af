//! The Spark Core and later Particle devices: USB ids, alt settings, memory maps and where things go.
//!
//! A tool asks [`Platform::location`] "where does a user firmware / factory image / server key / device key go
//! on this device" and gets the alt setting, address and room for it. Facts come from the Spark bootloader
//! (`usb_desc.c`), core-common-lib (`hw_config.h`), the Spark and Particle CLIs' device specifications and key
//! specifications, and Device OS; where a fact is not known the table says `None` rather than guessing.
//!
//! ```
//! use spark_dfu::platform::{Item, Platform, UsbId};
//!
//! // A device in DFU mode answers as 2b04:d006: which one is it, and where do things go?
//! let photon = Platform::from_dfu_usb(UsbId { vendor: 0x2b04, product: 0xd006 }).unwrap();
//! assert_eq!((photon, photon.id(), photon.name()), (Platform::Photon, 6, "Photon"));
//! assert_eq!(Platform::from_id(0), Some(Platform::Core));
//!
//! // The Core keeps its keys in the external SPI flash (alt 1).
//! let key = Platform::Core.location(Item::DevicePrivateKey).unwrap();
//! assert_eq!((key.alt, key.address, key.len), (1, 0x2000, 1024));
//! let alts: Vec<u8> = Platform::Core.alt_settings().iter().map(|a| a.alt).collect();
//! assert_eq!(alts, [0, 1]);
//!
//! // What the table does not know, it says so.
//! assert_eq!(Platform::Photon.transfer_size(), None);
//! ```

pub mod server_key;

/// A USB vendor/product pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsbId {
    /// `idVendor`.
    pub vendor: u16,
    /// `idProduct`.
    pub product: u16,
}

const fn usb(vendor: u16, product: u16) -> UsbId {
    UsbId { vendor, product }
}

/// One DFU alt setting of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AltSetting {
    /// The alt setting number.
    pub alt: u8,
    /// What it reaches.
    pub storage: Storage,
    /// The exact interface string (a DfuSe memory layout) when it has been captured from a device.
    pub layout: Option<&'static str>,
}

/// The kind of memory behind an alt setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Storage {
    /// The MCU's internal flash.
    InternalFlash,
    /// External SPI flash (the Core's keys and factory image; Gen 3's factory image).
    ExternalFlash,
    /// The device configuration table (keys and settings on Gen 2 and Gen 3).
    Dct,
}

/// Something a tool writes to or reads from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Item {
    /// The DFU bootloader itself (not writable over DFU on the Core: its pages are read-only).
    Bootloader,
    /// The user application (`spark flash --usb`).
    UserFirmware,
    /// The factory-reset image (`spark flash --factory`).
    FactoryImage,
    /// The Core's backup image in external flash.
    BackupImage,
    /// The OTA staging area.
    OtaStaging,
    /// A system part (Gen 2: 1, 2, 3).
    SystemPart(u8),
    /// The Nordic SoftDevice (Gen 3).
    RadioStack,
    /// The server public key image for the TCP (RSA) protocol.
    ServerPublicKey,
    /// The device private key for the TCP (RSA) protocol.
    DevicePrivateKey,
    /// The server public key image for the UDP (EC) protocol.
    UdpServerPublicKey,
    /// The device private key for the UDP (EC) protocol.
    UdpDevicePrivateKey,
    /// The server-address record inside the server key image.
    ServerAddress,
    /// Free external flash for user data.
    UserData,
}

/// Where an [`Item`] lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// The DFU alt setting to use.
    pub alt: u8,
    /// The address (for DCT items: the offset in the DCT).
    pub address: u32,
    /// The room there, in bytes (for keys: what the CLIs read and write).
    pub len: u32,
}

const fn at(alt: u8, address: u32, len: u32) -> Location {
    Location { alt, address, len }
}

/// The cloud protocol a platform speaks by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP with RSA keys (Core, Photon, P1).
    Tcp,
    /// UDP (DTLS) with EC keys (Electron, Gen 3).
    Udp,
}

/// Device behaviour a DFU host must know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quirks {
    /// The bootloader enters DFU in dfuERROR with errFIRMWARE; the host must CLRSTATUS first (normal).
    pub starts_in_dfu_error: bool,
    /// The device resets as soon as it gets the leave request, so errors after it mean success.
    pub resets_on_leave: bool,
    /// The DfuSe mass-erase command is supported.
    pub mass_erase: bool,
    /// The DfuSe read-unprotect command is supported.
    pub read_unprotect: bool,
    /// The memory is chosen by the address, not by the alt setting.
    pub medium_from_address: bool,
    /// Images are padded to this multiple before writing (the STM32F1 programs half-words).
    pub write_padding: u8,
}

const CORE_QUIRKS: Quirks = Quirks {
    starts_in_dfu_error: true,
    resets_on_leave: true,
    mass_erase: false,
    read_unprotect: false,
    medium_from_address: true,
    write_padding: 2,
};

const LATER_QUIRKS: Quirks = Quirks {
    starts_in_dfu_error: false,
    resets_on_leave: false,
    mass_erase: false,
    read_unprotect: false,
    medium_from_address: false,
    write_padding: 1,
};

/// A Spark or Particle device family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Platform {
    /// Spark Core (STM32F103CB, CC3000), platform 0.
    Core,
    /// Photon (STM32F205, BCM43362), platform 6.
    Photon,
    /// P1 module, platform 8.
    P1,
    /// Electron (STM32F205, u-blox), platform 10.
    Electron,
    /// Argon (nRF52840, ESP32 Wi-Fi), platform 12.
    Argon,
    /// Boron (nRF52840, LTE/2G-3G), platform 13.
    Boron,
    /// Xenon (nRF52840, mesh), platform 14.
    Xenon,
    /// A SoM, platform 22.
    ASom,
    /// B SoM, platform 23.
    BSom,
    /// X SoM, platform 24.
    XSom,
    /// B5 SoM, platform 25.
    B5Som,
    /// Tracker, platform 26.
    Tracker,
    /// Tracker M, platform 28.
    TrackerM,
    /// P2 / Photon 2, platform 32.
    P2,
    /// M SoM, platform 35.
    MSom,
}

/// Every platform in the table.
pub const ALL: [Platform; 15] = [
    Platform::Core,
    Platform::Photon,
    Platform::P1,
    Platform::Electron,
    Platform::Argon,
    Platform::Boron,
    Platform::Xenon,
    Platform::ASom,
    Platform::BSom,
    Platform::XSom,
    Platform::B5Som,
    Platform::Tracker,
    Platform::TrackerM,
    Platform::P2,
    Platform::MSom,
];

/// The Spark Core's alt 0 string, byte for byte (two spaces after "Flash").
pub const CORE_INTERNAL_FLASH: &str = "@Internal Flash  /0x08000000/20*001Ka,108*001Kg";
/// The Spark Core's alt 1 string, byte for byte.
pub const CORE_SPI_FLASH: &str = "@SPI Flash : SST25x/0x00000000/512*04Kg";
/// The Photon's alt 0 string as captured by `dfu-util -l` (three spaces).
pub const PHOTON_INTERNAL_FLASH: &str =
    "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg";
/// The Photon's alt 1 string as captured.
pub const PHOTON_DCT_FLASH: &str = "@DCT Flash   /0x00000000/01*016Kg";
/// The Electron's alt 0 string as captured (one space).
pub const ELECTRON_INTERNAL_FLASH: &str =
    "@Internal Flash /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg";
/// The Electron's alt 1 string as captured.
pub const ELECTRON_DCT_FLASH: &str = "@DCT Flash /0x00000000/01*016Kg";

/// An alt setting of the table (the layout string where one has been captured).
const fn alt(alt: u8, storage: Storage, layout: Option<&'static str>) -> AltSetting {
    AltSetting {
        alt,
        storage,
        layout,
    }
}

const CORE_ALTS: &[AltSetting] = &[
    alt(0, Storage::InternalFlash, Some(CORE_INTERNAL_FLASH)),
    alt(1, Storage::ExternalFlash, Some(CORE_SPI_FLASH)),
];
// The P1 shares the Photon's bootloader; its strings have not been captured separately.
const PHOTON_ALTS: &[AltSetting] = &[
    alt(0, Storage::InternalFlash, Some(PHOTON_INTERNAL_FLASH)),
    alt(1, Storage::Dct, Some(PHOTON_DCT_FLASH)),
];
const P1_ALTS: &[AltSetting] = &[
    alt(0, Storage::InternalFlash, None),
    alt(1, Storage::Dct, None),
];
const ELECTRON_ALTS: &[AltSetting] = &[
    alt(0, Storage::InternalFlash, Some(ELECTRON_INTERNAL_FLASH)),
    alt(1, Storage::Dct, Some(ELECTRON_DCT_FLASH)),
];
const GEN3_ALTS: &[AltSetting] = &[
    alt(0, Storage::InternalFlash, None),
    alt(1, Storage::Dct, None),
    alt(2, Storage::ExternalFlash, None),
];
const SOM_ALTS: &[AltSetting] = &[
    alt(0, Storage::InternalFlash, None),
    alt(2, Storage::ExternalFlash, None),
];
const INTERNAL_ONLY: &[AltSetting] = &[alt(0, Storage::InternalFlash, None)];

/// DCT offsets of the keys on Gen 2 and Gen 3 (particle-cli `keys-specs.js`, Device OS `application_dct_t`).
pub mod dct {
    /// TCP (RSA) device private key.
    pub const DEVICE_PRIVATE_KEY: u32 = 34;
    /// Room the CLI reads for it.
    pub const DEVICE_PRIVATE_KEY_LEN: u32 = 612;
    /// Device public key.
    pub const DEVICE_PUBLIC_KEY: u32 = 1250;
    /// OTA update flag (one byte, 0xA5 triggers an update).
    pub const OTA_UPDATE_FLAG: u32 = 1753;
    /// TCP (RSA) server public key image.
    pub const SERVER_PUBLIC_KEY: u32 = 2082;
    /// Its size.
    pub const SERVER_PUBLIC_KEY_LEN: u32 = 512;
    /// Cloud transport selector (one byte, 0xFF = default).
    pub const CLOUD_TRANSPORT: u32 = 2977;
    /// UDP (EC) device private key.
    pub const UDP_DEVICE_PRIVATE_KEY: u32 = 3106;
    /// Its size.
    pub const UDP_DEVICE_PRIVATE_KEY_LEN: u32 = 192;
    /// UDP (EC) server public key image.
    pub const UDP_SERVER_PUBLIC_KEY: u32 = 3298;
    /// Its size.
    pub const UDP_SERVER_PUBLIC_KEY_LEN: u32 = 320;
}

/// The Spark Core's memory map (core-common-lib `hw_config.h`).
pub mod core_map {
    /// Bootloader, internal flash (20 KiB, write-protected).
    pub const BOOTLOADER: u32 = 0x0800_0000;
    /// System flags page, inside the bootloader region.
    pub const SYSTEM_FLAGS: u32 = 0x0800_4C00;
    /// Application firmware.
    pub const FIRMWARE: u32 = 0x0800_5000;
    /// End of internal flash.
    pub const INTERNAL_FLASH_END: u32 = 0x0802_0000;
    /// Application room: 108 KiB.
    pub const FIRMWARE_LEN: u32 = INTERNAL_FLASH_END - FIRMWARE;
    /// Server public key, external flash.
    pub const SERVER_PUBLIC_KEY: u32 = 0x0000_1000;
    /// Server-address record: key offset 384.
    pub const SERVER_ADDRESS: u32 = 0x0000_1180;
    /// Device private key.
    pub const DEVICE_PRIVATE_KEY: u32 = 0x0000_2000;
    /// Factory-reset image.
    pub const FACTORY_IMAGE: u32 = 0x0002_0000;
    /// Backup image.
    pub const BACKUP_IMAGE: u32 = 0x0004_0000;
    /// OTA staging.
    pub const OTA_STAGING: u32 = 0x0006_0000;
    /// Each external-flash image slot.
    pub const IMAGE_SLOT_LEN: u32 = 0x0002_0000;
    /// First byte free for users.
    pub const USER_DATA: u32 = 0x0008_0000;
    /// End of the 2 MiB SST25VF016B.
    pub const EXTERNAL_FLASH_END: u32 = 0x0020_0000;
    /// SRAM: 20 KiB from 0x20000000.
    pub const SRAM_END: u32 = 0x2000_5000;
}

impl Platform {
    /// The Particle platform id.
    #[must_use]
    pub fn id(self) -> u16 {
        match self {
            Self::Core => 0,
            Self::Photon => 6,
            Self::P1 => 8,
            Self::Electron => 10,
            Self::Argon => 12,
            Self::Boron => 13,
            Self::Xenon => 14,
            Self::ASom => 22,
            Self::BSom => 23,
            Self::XSom => 24,
            Self::B5Som => 25,
            Self::Tracker => 26,
            Self::TrackerM => 28,
            Self::P2 => 32,
            Self::MSom => 35,
        }
    }

    /// The platform with this id.
    #[must_use]
    pub fn from_id(id: u16) -> Option<Self> {
        ALL.into_iter().find(|p| p.id() == id)
    }

    /// The platform whose DFU-mode USB ids these are.
    #[must_use]
    pub fn from_dfu_usb(id: UsbId) -> Option<Self> {
        ALL.into_iter().find(|p| p.dfu_usb() == id)
    }

    /// The platform whose run-time (serial) USB ids these are.
    #[must_use]
    pub fn from_runtime_usb(id: UsbId) -> Option<Self> {
        ALL.into_iter().find(|p| p.runtime_usb() == id)
    }

    /// A short name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Core => "Core",
            Self::Photon => "Photon",
            Self::P1 => "P1",
            Self::Electron => "Electron",
            Self::Argon => "Argon",
            Self::Boron => "Boron",
            Self::Xenon => "Xenon",
            Self::ASom => "A SoM",
            Self::BSom => "B SoM",
            Self::XSom => "X SoM",
            Self::B5Som => "B5 SoM",
            Self::Tracker => "Tracker",
            Self::TrackerM => "Tracker M",
            Self::P2 => "P2",
            Self::MSom => "M SoM",
        }
    }

    /// The USB ids in DFU mode.
    #[must_use]
    pub fn dfu_usb(self) -> UsbId {
        match self {
            Self::Core => usb(0x1d50, 0x607f),
            other => usb(0x2b04, 0xd000 | other.id()),
        }
    }

    /// The USB ids at run time (CDC serial).
    #[must_use]
    pub fn runtime_usb(self) -> UsbId {
        match self {
            Self::Core => usb(0x1d50, 0x607d),
            other => usb(0x2b04, 0xc000 | other.id()),
        }
    }

    /// The DFU-mode `bcdDevice` when known (the Core's bootloader reports 0x0200, as do the captured Photon and
    /// Electron listings).
    #[must_use]
    pub fn dfu_bcd_device(self) -> Option<u16> {
        match self {
            Self::Core | Self::Photon | Self::Electron => Some(0x0200),
            _ => None,
        }
    }

    /// `wTransferSize` of the DFU functional descriptor, when known.
    #[must_use]
    pub fn transfer_size(self) -> Option<u16> {
        match self {
            Self::Core => Some(1024),
            _ => None,
        }
    }

    /// The DFU alt settings.
    #[must_use]
    pub fn alt_settings(self) -> &'static [AltSetting] {
        match self {
            Self::Core => CORE_ALTS,
            Self::Photon => PHOTON_ALTS,
            Self::P1 => P1_ALTS,
            Self::Electron => ELECTRON_ALTS,
            Self::Argon | Self::Boron | Self::Xenon => GEN3_ALTS,
            Self::ASom | Self::BSom | Self::XSom | Self::B5Som | Self::Tracker => SOM_ALTS,
            Self::TrackerM | Self::P2 | Self::MSom => INTERNAL_ONLY,
        }
    }

    /// The captured memory-layout string of an alt setting.
    #[must_use]
    pub fn layout(self, alt: u8) -> Option<&'static str> {
        self.alt_settings()
            .iter()
            .find(|a| a.alt == alt)
            .and_then(|a| a.layout)
    }

    /// The memory-layout strings a DFU host assumes, indexed by alt setting, when they are known for every
    /// writable alt. The P1 shares the Photon's STM32F205 and DCT, so a host takes the Photon's strings for it
    /// even though no P1 capture is in [`Platform::alt_settings`].
    #[must_use]
    pub fn host_layouts(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Core => Some(&[CORE_INTERNAL_FLASH, CORE_SPI_FLASH]),
            Self::Photon | Self::P1 => Some(&[PHOTON_INTERNAL_FLASH, PHOTON_DCT_FLASH]),
            Self::Electron => Some(&[ELECTRON_INTERNAL_FLASH, ELECTRON_DCT_FLASH]),
            _ => None,
        }
    }

    /// Device behaviour a DFU host must handle.
    #[must_use]
    pub fn quirks(self) -> Quirks {
        match self {
            Self::Core => CORE_QUIRKS,
            _ => LATER_QUIRKS,
        }
    }

    /// The cloud protocol the platform speaks by default.
    #[must_use]
    pub fn transport(self) -> Transport {
        match self {
            Self::Core | Self::Photon | Self::P1 => Transport::Tcp,
            _ => Transport::Udp,
        }
    }

    /// Where `module_info_t` sits in a monolithic or bootloader image (after the vector table).
    #[must_use]
    pub fn module_info_offset(self) -> usize {
        match self {
            Self::Core => 0x10C,
            Self::Photon | Self::P1 | Self::Electron => 0x184,
            _ => 0x200,
        }
    }

    /// Where `item` goes on this device, or `None` when the platform has no such place (or it is not known).
    #[must_use]
    pub fn location(self, item: Item) -> Option<Location> {
        use Item as I;
        use core_map as c;
        let gen2 = matches!(self, Self::Photon | Self::P1 | Self::Electron);
        let gen3_dct = matches!(self, Self::Argon | Self::Boron | Self::Xenon);
        match (self, item) {
            (Self::Core, I::Bootloader) => Some(at(0, c::BOOTLOADER, c::FIRMWARE - c::BOOTLOADER)),
            (Self::Core, I::UserFirmware) => Some(at(0, c::FIRMWARE, c::FIRMWARE_LEN)),
            (Self::Core, I::FactoryImage) => Some(at(1, c::FACTORY_IMAGE, c::IMAGE_SLOT_LEN)),
            (Self::Core, I::BackupImage) => Some(at(1, c::BACKUP_IMAGE, c::IMAGE_SLOT_LEN)),
            (Self::Core, I::OtaStaging) => Some(at(1, c::OTA_STAGING, c::IMAGE_SLOT_LEN)),
            (Self::Core, I::ServerPublicKey) => Some(at(1, c::SERVER_PUBLIC_KEY, 2048)),
            (Self::Core, I::ServerAddress) => Some(at(1, c::SERVER_ADDRESS, 128)),
            (Self::Core, I::DevicePrivateKey) => Some(at(1, c::DEVICE_PRIVATE_KEY, 1024)),
            (Self::Core, I::UserData) => {
                Some(at(1, c::USER_DATA, c::EXTERNAL_FLASH_END - c::USER_DATA))
            }
            (Self::Photon | Self::P1 | Self::Electron, I::Bootloader) => {
                Some(at(0, 0x0800_0000, 0x4000))
            }
            (Self::Photon | Self::P1, I::UserFirmware) => Some(at(0, 0x080A_0000, 0x2_0000)),
            (Self::Photon | Self::P1, I::FactoryImage) => Some(at(0, 0x080E_0000, 0x2_0000)),
            (Self::Photon | Self::P1, I::SystemPart(1)) => Some(at(0, 0x0802_0000, 0x4_0000)),
            (Self::Photon | Self::P1, I::SystemPart(2)) => Some(at(0, 0x0806_0000, 0x4_0000)),
            (Self::Electron, I::UserFirmware) => Some(at(0, 0x0808_0000, 0x2_0000)),
            (Self::Electron, I::FactoryImage) => Some(at(0, 0x080A_0000, 0x2_0000)),
            (Self::Electron, I::SystemPart(1)) => Some(at(0, 0x0802_0000, 0x2_0000)),
            (Self::Electron, I::SystemPart(2)) => Some(at(0, 0x0804_0000, 0x2_0000)),
            (Self::Electron, I::SystemPart(3)) => Some(at(0, 0x0806_0000, 0x2_0000)),
            (_, I::OtaStaging) if gen2 => Some(at(0, 0x080C_0000, 0x2_0000)),
            (Self::Argon | Self::Boron | Self::Xenon, I::UserFirmware) => {
                Some(at(0, 0x000D_4000, 0x2_0000))
            }
            (Self::Argon | Self::Boron | Self::Xenon, I::RadioStack) => {
                Some(at(0, 0x0000_1000, 0x2_5000))
            }
            (
                Self::Argon | Self::Boron | Self::Xenon | Self::ASom | Self::BSom | Self::XSom,
                I::FactoryImage,
            ) => Some(at(2, 0x0020_0000, 0x2_0000)),
            (Self::B5Som | Self::Tracker, I::FactoryImage) => Some(at(2, 0x0060_0000, 0x2_0000)),
            (_, I::DevicePrivateKey) if gen2 || gen3_dct => {
                Some(at(1, dct::DEVICE_PRIVATE_KEY, dct::DEVICE_PRIVATE_KEY_LEN))
            }
            (_, I::ServerPublicKey) if gen2 || gen3_dct => {
                Some(at(1, dct::SERVER_PUBLIC_KEY, dct::SERVER_PUBLIC_KEY_LEN))
            }
            (_, I::ServerAddress) if gen2 || gen3_dct => {
                Some(at(1, dct::SERVER_PUBLIC_KEY + 384, 128))
            }
            (_, I::UdpDevicePrivateKey) if gen2 || gen3_dct => Some(at(
                1,
                dct::UDP_DEVICE_PRIVATE_KEY,
                dct::UDP_DEVICE_PRIVATE_KEY_LEN,
            )),
            (_, I::UdpServerPublicKey) if gen2 || gen3_dct => Some(at(
                1,
                dct::UDP_SERVER_PUBLIC_KEY,
                dct::UDP_SERVER_PUBLIC_KEY_LEN,
            )),
            _ => None,
        }
    }

    /// The server key image format the CLIs wrote for this platform's default transport.
    #[must_use]
    pub fn server_key_format(self) -> Option<server_key::KeyFormat> {
        match (self, self.transport()) {
            (Self::Core, _) => Some(server_key::KeyFormat::CORE),
            (_, Transport::Tcp) => Some(server_key::KeyFormat::DCT_RSA),
            _ if self.location(Item::UdpServerPublicKey).is_some() => {
                Some(server_key::KeyFormat::DCT_EC)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::layout::MemoryLayout;

    #[test]
    fn spark_core_facts() {
        let core = Platform::Core;
        assert_eq!(core.dfu_usb(), usb(0x1d50, 0x607f));
        assert_eq!(core.runtime_usb(), usb(0x1d50, 0x607d));
        assert_eq!(core.transfer_size(), Some(1024));
        assert_eq!(
            core.layout(0),
            Some("@Internal Flash  /0x08000000/20*001Ka,108*001Kg")
        );
        assert_eq!(
            core.layout(1),
            Some("@SPI Flash : SST25x/0x00000000/512*04Kg")
        );
        assert_eq!(
            core.location(Item::UserFirmware),
            Some(at(0, 0x0800_5000, 108 * 1024))
        );
        assert_eq!(
            core.location(Item::FactoryImage),
            Some(at(1, 0x0002_0000, 0x2_0000))
        );
        assert_eq!(
            core.location(Item::ServerPublicKey),
            Some(at(1, 0x1000, 2048))
        );
        assert_eq!(
            core.location(Item::ServerAddress).map(|l| l.address),
            Some(0x1000 + 384)
        );
        assert_eq!(
            core.location(Item::DevicePrivateKey),
            Some(at(1, 0x2000, 1024))
        );
        assert_eq!(
            core.location(Item::BackupImage).map(|l| l.address),
            Some(0x40000)
        );
        assert_eq!(
            core.location(Item::OtaStaging).map(|l| l.address),
            Some(0x60000)
        );
        assert!(core.quirks().starts_in_dfu_error && core.quirks().resets_on_leave);
        assert_eq!(core.quirks().write_padding, 2);
        assert_eq!(
            Platform::from_dfu_usb(usb(0x1d50, 0x607f)),
            Some(Platform::Core)
        );
    }

    #[test]
    fn every_location_is_inside_its_alt_setting_layout() {
        for p in ALL {
            for item in [
                Item::Bootloader,
                Item::UserFirmware,
                Item::FactoryImage,
                Item::BackupImage,
                Item::OtaStaging,
                Item::SystemPart(1),
                Item::SystemPart(2),
                Item::SystemPart(3),
                Item::RadioStack,
                Item::ServerPublicKey,
                Item::DevicePrivateKey,
                Item::UdpServerPublicKey,
                Item::UdpDevicePrivateKey,
                Item::ServerAddress,
                Item::UserData,
            ] {
                let Some(loc) = p.location(item) else {
                    continue;
                };
                assert!(
                    p.alt_settings().iter().any(|a| a.alt == loc.alt),
                    "{p:?} {item:?}"
                );
                if let Some(layout) = p.layout(loc.alt) {
                    let l = MemoryLayout::parse(layout).unwrap();
                    let writable = l.is_writeable(loc.address, loc.len);
                    assert_eq!(writable, item != Item::Bootloader, "{p:?} {item:?} {loc:?}");
                }
            }
        }
    }

    /// The host's layouts agree with the alt table wherever the table has a capture, and parse.
    #[test]
    fn host_layouts_agree_with_the_alt_table() {
        let mut known = 0;
        for p in ALL {
            let Some(layouts) = p.host_layouts() else {
                continue;
            };
            known += 1;
            for (alt, layout) in layouts.iter().enumerate() {
                MemoryLayout::parse(layout).unwrap();
                if let Some(captured) = p.layout(alt as u8) {
                    assert_eq!(captured, *layout, "{p:?} alt {alt}");
                }
            }
        }
        assert_eq!(known, 4);
        assert_eq!(Platform::P1.host_layouts(), Platform::Photon.host_layouts());
    }

    #[test]
    fn ids_round_trip() {
        for p in ALL {
            assert_eq!(Platform::from_id(p.id()), Some(p));
            assert_eq!(Platform::from_dfu_usb(p.dfu_usb()), Some(p));
            assert_eq!(Platform::from_runtime_usb(p.runtime_usb()), Some(p));
        }
        assert_eq!(Platform::Photon.dfu_usb(), usb(0x2b04, 0xd006));
        assert_eq!(Platform::Electron.runtime_usb(), usb(0x2b04, 0xc00a));
        assert_eq!(Platform::MSom.dfu_usb(), usb(0x2b04, 0xd023));
        assert_eq!(Platform::from_id(1), None);
    }
}
