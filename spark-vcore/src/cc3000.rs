//! The Core's CC3000 Wi-Fi module: spark-cc3000's simulated NVMEM, persisted as a 32 KiB EEPROM file, patched by
//! spark-cc3000's programmer when the Core boots a firmware that carries a service pack.
//!
//! A new module has the programmers' file table, its own MAC address (TI's OUI and the last three bytes of the
//! device id), per-chip radio parameters, and a stored Wi-Fi profile, and reports the service pack it was built
//! with (`--sp`): that version is in its ROM, so it is reported until a known driver patch is burnt into file 4.

use std::path::Path;

use spark_cc3000::nvmem::{EEPROM_SIZE, FAT_LEN, FatTable, FileId, RADIO_PARAMS_LEN};
use spark_cc3000::programmer::{self, Config, Programmer, Report};
use spark_cc3000::sim::{SimError, SimNvmem};
use spark_cc3000::{ImageKind, ServicePack, find_embedded};

/// Bytes of the Wi-Fi profile stored in file 2 of a new module (the part the programmer saves and restores).
pub const PROFILE_LEN: usize = 100;

/// Why the module could not be loaded or patched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Cc3000Error {
    /// The EEPROM file could not be read or written.
    #[error("CC3000 EEPROM file: {0}")]
    Io(#[from] std::io::Error),
    /// The EEPROM file has the wrong size or no file table.
    #[error("CC3000 EEPROM file is not a 32 KiB EEPROM with a file table")]
    BadEeprom,
    /// The simulator refused to set up a file.
    #[error("CC3000 simulator: {0}")]
    Sim(#[from] SimError),
    /// The patch programmer stopped.
    #[error("patch programmer: {0}")]
    Programmer(#[from] programmer::RunError<SimError>),
    /// The patch programmer refused the images.
    #[error("patch programmer refused the images: {0}")]
    Refused(programmer::Error),
}

/// A driver and firmware patch pair carried inside a firmware binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePackImages<'a> {
    /// The driver patch (NVMEM file 4).
    pub driver: &'a [u8],
    /// The firmware patch (NVMEM file 5).
    pub firmware: &'a [u8],
    /// The version the driver patch makes the chip report, when it is a published or a synthetic one.
    pub reports: Option<ServicePack>,
}

impl<'a> ServicePackImages<'a> {
    /// The first driver patch and the first firmware patch embedded in `binary` (a deep update or a patch
    /// programmer application); `None` unless both are there.
    pub fn find(binary: &'a [u8]) -> Option<Self> {
        let mut driver = None;
        let mut firmware = None;
        for found in find_embedded(binary) {
            match found.image.kind() {
                ImageKind::Driver if driver.is_none() => driver = Some(found),
                ImageKind::Firmware if firmware.is_none() => firmware = Some(found),
                _ => {}
            }
        }
        let (driver, firmware) = (driver?, firmware?);
        Some(ServicePackImages {
            driver: driver.image.as_bytes(),
            firmware: firmware.image.as_bytes(),
            reports: driver.image.reports(),
        })
    }

    /// The version the driver patch makes the chip report, when it is a published or a synthetic one.
    pub fn version(&self) -> Option<ServicePack> {
        self.reports
    }
}

/// The CC3000 model.
#[derive(Debug, Clone)]
pub struct Cc3000 {
    nvmem: SimNvmem,
}

impl Cc3000 {
    /// A new module: the programmers' table, MAC, radio parameters and a Wi-Fi profile derived from `seed` (the
    /// device id), reporting `rom` until patched.
    pub fn new(rom: ServicePack, seed: &[u8; 12]) -> Result<Self, Cc3000Error> {
        let mut nvmem = SimNvmem::with_table(&FatTable::programmer_default(), rom);
        // TI's OUI and the low bytes of the device id (unicast, globally administered).
        let mac = [0x08, 0x00, 0x28, seed[9], seed[10], seed[11]];
        nvmem.install(FileId::Mac, &mac)?;
        // Per-chip calibration: never blank, different for every module.
        let radio: Vec<u8> = (0..RADIO_PARAMS_LEN)
            .map(|i| seed[i % 12] ^ (i as u8).wrapping_mul(37) ^ 0x5A)
            .collect();
        nvmem.install(FileId::Rm, &radio)?;
        let mut profile = vec![0u8; PROFILE_LEN];
        let ssid = b"virtual-core-wifi";
        profile[..ssid.len()].copy_from_slice(ssid);
        profile[PROFILE_LEN - 12..].copy_from_slice(seed);
        nvmem.install(FileId::WlanConfig, &profile)?;
        Ok(Cc3000 { nvmem })
    }

    /// Loads a module saved with [`Cc3000::save`]; `rom` is the version its ROM reports.
    pub fn load(path: &Path, rom: ServicePack) -> Result<Self, Cc3000Error> {
        let eeprom = std::fs::read(path)?;
        Self::from_eeprom(&eeprom, rom)
    }

    /// A module holding `eeprom` (its table and every valid file; files left invalid stay invalid).
    pub fn from_eeprom(eeprom: &[u8], rom: ServicePack) -> Result<Self, Cc3000Error> {
        if eeprom.len() != EEPROM_SIZE as usize {
            return Err(Cc3000Error::BadEeprom);
        }
        let table = FatTable::parse(&eeprom[..FAT_LEN]).map_err(|_| Cc3000Error::BadEeprom)?;
        // The simulator takes the table with every file invalid, then each valid file's bytes.
        let mut bare = table;
        for e in bare.entries_mut().iter_mut() {
            e.flags = e.flags.with(spark_cc3000::nvmem::FatFlags::VALID, false);
        }
        let mut nvmem = SimNvmem::with_table(&bare, rom);
        for (i, e) in table.entries().iter().enumerate() {
            let file = FileId::ALL[i];
            if e.flags.allocated() && e.flags.valid() {
                let at = usize::from(e.address);
                let end = at + usize::from(e.length);
                let bytes = eeprom.get(at..end).ok_or(Cc3000Error::BadEeprom)?;
                nvmem.install(file, bytes)?;
            }
        }
        Ok(Cc3000 { nvmem })
    }

    /// Writes the EEPROM to `path` (through a temporary file, so a crash leaves the old or the new one).
    pub fn save(&self, path: &Path) -> Result<(), Cc3000Error> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.nvmem.eeprom())?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// The version `nvmem_read_sp_version` gives now.
    pub fn version(&self) -> ServicePack {
        self.nvmem.reported_version()
    }

    /// The version as the Core publishes it in `spark/cc3000-patch-version` (`"%d.%d"`).
    pub fn version_string(&self) -> String {
        let v = self.version();
        format!("{}.{}", v.package_id, v.build)
    }

    /// The MAC address in file 6.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.nvmem.file(FileId::Mac, 6).map(|m| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(m);
            mac
        })
    }

    /// The first [`PROFILE_LEN`] bytes of the Wi-Fi configuration (file 2).
    pub fn profile(&self) -> Option<&[u8]> {
        self.nvmem.file(FileId::WlanConfig, PROFILE_LEN)
    }

    /// The simulated NVMEM (for inspection).
    pub fn nvmem(&self) -> &SimNvmem {
        &self.nvmem
    }

    /// The simulated NVMEM, to schedule faults.
    pub fn nvmem_mut(&mut self) -> &mut SimNvmem {
        &mut self.nvmem
    }

    /// Runs the patch programmer with `images` against the NVMEM.
    pub fn program(&mut self, images: &ServicePackImages<'_>) -> Result<Report, Cc3000Error> {
        let mut p = Programmer::new(images.driver, images.firmware, Config::default())
            .map_err(Cc3000Error::Refused)?;
        Ok(programmer::run(&mut p, &mut self.nvmem, |_| {})?)
    }
}
