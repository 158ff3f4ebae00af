//! DFU mode: the Core's bootloader on USB, holding the Core's memories, for a DFU host to flash.
//!
//! Holding MODE through a reset puts a Core in DFU mode: its firmware stops (the cloud sees it go offline) and the
//! bootloader answers on USB as 1d50:607f. [`VirtualCore::enter_dfu`] makes that bootloader: spark-dfu's simulated
//! one ([`SparkCore`]) holding this Core's internal flash and its whole external flash. In the internal flash the
//! application region (0x08005000, 108 KiB) holds the application an update installed; the factory Tinker is not
//! modelled byte for byte, so on a factory Core that region reads as erased, and the bootloader pages are erased
//! too (the simulated bootloader protects them either way). Any DFU host drives it: `dfu-util`, `spark flash --usb`,
//! spark-dfu's [`ops`](spark_dfu::ops).
//!
//! The leave request resets the Core. [`VirtualCore::leave_dfu`] then takes back what the bootloader holds, as the
//! reset does: the external flash, and the application region when it changed. Whether a changed application runs is
//! the bootloader's own test, its initial stack pointer in SRAM (`(sp & 0x2FFE0000) == 0x20000000`); a legacy image
//! carries no length, so the application is the region up to its last programmed byte, as reading it back with
//! `dfu-util -U` and dropping the erased tail gives. The next [`boot`](VirtualCore::boot) runs it: for the deep
//! update, the CC3000 patch.
//!
//! A host that failed before the leave request leaves the Core in DFU mode: [`VirtualCore::leave_dfu`] refuses
//! ([`DfuError::NotReset`]) and nothing of the Core changes, so a half-written application is never booted. The
//! user flashes again, as the 2014 instructions said.

use spark_dfu::platform::core_map;
use spark_dfu::sim::SparkCore;
use spark_protocol::wire::ota::crc32;

use super::flash::{FLASH_LEN, FlashError, SECTOR_LEN};
use super::{CoreError, Firmware, VirtualCore};

/// Where the application region starts in the simulated bootloader's internal flash.
const APP_OFFSET: usize = (core_map::FIRMWARE - core_map::BOOTLOADER) as usize;
/// The application region's size.
const APP_LEN: usize = core_map::FIRMWARE_LEN as usize;

/// Why a Core cannot leave DFU mode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DfuError {
    /// No leave request reset the bootloader: the Core is still in DFU mode.
    #[error("the Core is still in DFU mode (no leave request reset it)")]
    NotReset,
    /// The application region changed and fails the bootloader's test: the Core stays in DFU mode.
    #[error(
        "no valid application at 0x08005000 (initial stack pointer {initial_sp:#010x}): the bootloader stays in DFU mode"
    )]
    NoApplication {
        /// The first word of the region.
        initial_sp: u32,
    },
    /// The Core's files.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<FlashError> for DfuError {
    fn from(e: FlashError) -> Self {
        DfuError::Core(CoreError::Flash(e))
    }
}

/// What [`VirtualCore::leave_dfu`] took back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DfuReset {
    /// The application region changed: this is what runs from now on.
    pub installed: Option<Firmware>,
    /// 4 KiB sectors of the external flash that changed.
    pub external_sectors: u32,
}

impl VirtualCore {
    /// The application region as [`enter_dfu`](Self::enter_dfu) lays it out: the installed application, erased
    /// bytes after it (and everywhere for the factory Tinker).
    fn application_region(&self) -> Result<Vec<u8>, CoreError> {
        let mut region = vec![0xFF; APP_LEN];
        if let Some(image) = self.firmware_image()? {
            let n = image.len().min(APP_LEN);
            region[..n].copy_from_slice(&image[..n]);
        }
        Ok(region)
    }

    /// Puts the Core in DFU mode: an OTA download in progress dies with the reset, and the returned bootloader
    /// holds the Core's memories. See the [module docs](self).
    pub fn enter_dfu(&mut self) -> Result<SparkCore, CoreError> {
        self.download = None;
        let mut bootloader = SparkCore::new();
        let region = self.application_region()?;
        bootloader.internal[APP_OFFSET..APP_OFFSET + APP_LEN].copy_from_slice(&region);
        let mut spi = vec![0u8; FLASH_LEN as usize];
        self.flash.read(0, &mut spi)?;
        bootloader.spi = spi;
        Ok(bootloader)
    }

    /// Takes back what `bootloader` holds once its leave request reset it. On error nothing of the Core changed.
    /// See the [module docs](self).
    pub fn leave_dfu(&mut self, bootloader: &SparkCore) -> Result<DfuReset, DfuError> {
        if bootloader.resets == 0 {
            return Err(DfuError::NotReset);
        }
        let region = bootloader
            .internal
            .get(APP_OFFSET..APP_OFFSET + APP_LEN)
            .ok_or(DfuError::NotReset)?;
        let spi = bootloader
            .spi
            .get(..FLASH_LEN as usize)
            .ok_or(DfuError::NotReset)?;
        let changed = region != self.application_region()?.as_slice();
        let mut reset = DfuReset {
            installed: None,
            external_sectors: 0,
        };
        // The bootloader's test, before anything is taken back.
        if changed {
            let initial_sp = u32::from_le_bytes([region[0], region[1], region[2], region[3]]);
            if initial_sp & 0x2FFE_0000 != 0x2000_0000 {
                return Err(DfuError::NoApplication { initial_sp });
            }
        }

        let sector = SECTOR_LEN as usize;
        let mut ours = vec![0u8; sector];
        for (i, theirs) in spi.chunks(sector).enumerate() {
            let address = (i * sector) as u32;
            self.flash.read(address, &mut ours)?;
            if ours != theirs {
                self.flash.erase(address, SECTOR_LEN)?;
                self.flash.program(address, theirs)?;
                reset.external_sectors += 1;
            }
        }
        self.flash.sync()?;

        if changed {
            let len = region.iter().rposition(|&b| b != 0xFF).map_or(0, |i| i + 1);
            let image = &region[..len];
            self.install_application(image, len as u32, crc32(image))?;
            self.save_state()?;
            reset.installed = Some(self.state.firmware.clone());
        }
        Ok(reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spark_cc3000::ServicePack;
    use spark_dfu::file::dfuse::{DfuseFile, DfuseRepr, Element, TargetRepr};
    use spark_dfu::file::suffix::SuffixRepr;
    use spark_dfu::host::Options;
    use spark_dfu::ops;
    use spark_dfu::platform::Platform;
    use spark_dfu::sim::Fault;

    /// A Core on SP 1.24 with a device key made once for the whole test binary (RSA keys are slow to make in a
    /// debug build).
    fn core(dir: &std::path::Path) -> VirtualCore {
        use rand::SeedableRng;
        static KEY: std::sync::OnceLock<spark_protocol::crypto::keys::RsaPrivateKey> =
            std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0xdf0);
            spark_protocol::crypto::keys::RsaPrivateKey::generate(&mut rng, 1024).unwrap()
        });
        VirtualCore::create_with_identity(dir, ServicePack::SP_1_24, [7; 12], key.clone()).unwrap()
    }

    fn dfuse(regions: &[(u8, u32, &[u8])]) -> Vec<u8> {
        let elements: Vec<Vec<Element<'_>>> = regions
            .iter()
            .map(|&(_, address, data)| vec![Element { address, data }])
            .collect();
        let targets: Vec<TargetRepr<'_>> = regions
            .iter()
            .zip(&elements)
            .map(|(&(alt, ..), elements)| TargetRepr {
                alt,
                name: None,
                elements,
            })
            .collect();
        DfuseRepr {
            targets: &targets,
            suffix: SuffixRepr {
                id_vendor: 0x1d50,
                id_product: 0x607f,
                ..SuffixRepr::default()
            },
        }
        .to_vec()
        .unwrap()
    }

    fn flash(bootloader: &mut SparkCore, file: &[u8]) -> Result<(), ops::OpError> {
        let file = DfuseFile::parse(file).unwrap();
        let options = Options {
            leave: true,
            ..Options::default()
        };
        ops::flash_dfuse_file(bootloader, Platform::Core, &file, options, |_| {}).map(|_| ())
    }

    /// A legacy image: stack at the top of SRAM, reset handler inside, a recognisable body.
    fn application(len: usize) -> Vec<u8> {
        let mut image: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8 | 1).collect();
        image[..4].copy_from_slice(&0x2000_5000u32.to_le_bytes());
        image[4..8].copy_from_slice(&0x0800_5101u32.to_le_bytes());
        image
    }

    #[test]
    fn an_application_flashed_over_dfu_runs_after_the_leave_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core(dir.path());
        let mut bootloader = core.enter_dfu().unwrap();
        // A factory Core: the region reads as erased, the external flash is the Core's.
        assert!(
            bootloader
                .memory(core_map::FIRMWARE, APP_LEN)
                .unwrap()
                .iter()
                .all(|&b| b == 0xFF)
        );
        let image = application(5000);
        let key = [0x42u8; 300];
        let file = dfuse(&[
            (0, core_map::FIRMWARE, &image),
            (1, core_map::USER_DATA, &key),
        ]);
        flash(&mut bootloader, &file).unwrap();
        assert_eq!(bootloader.resets, 1);

        let reset = core.leave_dfu(&bootloader).unwrap();
        assert_eq!(reset.external_sectors, 1);
        let installed = reset.installed.unwrap();
        assert_eq!(
            installed,
            Firmware::Application {
                len: 5000,
                crc32: crc32(&image),
                service_pack: None,
            }
        );
        assert_eq!(core.firmware(), &installed);
        assert_eq!(core.firmware_image().unwrap().unwrap(), image);
        let mut stored = [0u8; 300];
        core.flash_mut()
            .read(core_map::USER_DATA, &mut stored)
            .unwrap();
        assert_eq!(stored, key);

        // The files say the same after a reopen, and DFU mode again holds the new application.
        drop(core);
        let mut core = VirtualCore::open(dir.path()).unwrap();
        assert_eq!(core.firmware(), &installed);
        let bootloader = core.enter_dfu().unwrap();
        assert_eq!(
            bootloader.memory(core_map::FIRMWARE, image.len()).unwrap(),
            &image[..]
        );
        assert_eq!(bootloader.memory(core_map::USER_DATA, 300).unwrap(), &key);
    }

    #[test]
    fn the_deep_update_over_dfu_patches_the_cc3000_at_the_next_boot() {
        deep_update_over_dfu(&crate::image::synthetic_deep_update(ServicePack::SP_1_28));
    }

    #[spark_vectors::test]
    fn sparks_deep_update_over_dfu_patches_the_cc3000_at_the_next_boot() {
        deep_update_over_dfu(&spark_vectors::load(
            "dfu",
            "spark-cli/deep_update_2014_06.bin",
        ));
    }

    fn deep_update_over_dfu(image: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core(dir.path());
        let mut bootloader = core.enter_dfu().unwrap();
        flash(&mut bootloader, &dfuse(&[(0, core_map::FIRMWARE, image)])).unwrap();
        let reset = core.leave_dfu(&bootloader).unwrap();
        assert_eq!(reset.external_sectors, 0);
        assert_eq!(core.firmware().name(), "deep-update");
        assert_eq!(core.cc3000().version(), ServicePack::SP_1_24);
        let booted = core.boot().unwrap();
        assert_eq!(
            booted.patched,
            Some((ServicePack::SP_1_24, ServicePack::SP_1_28))
        );
        assert_eq!(core.cc3000().version_string(), "1.28");
    }

    #[test]
    fn a_flash_that_fails_before_the_leave_request_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core(dir.path());
        let boots = core.boots();
        let mut bootloader = core.enter_dfu().unwrap();
        // Mid-way through the writes: the first pages are erased and written already.
        bootloader.inject(120, Fault::UsbError);
        let image = application(20_000);
        assert!(flash(&mut bootloader, &dfuse(&[(0, core_map::FIRMWARE, &image)])).is_err());
        assert!(!bootloader.programmed.is_empty());
        assert_eq!(
            bootloader.memory(core_map::FIRMWARE, 4).unwrap(),
            &image[..4]
        );
        assert!(matches!(
            core.leave_dfu(&bootloader),
            Err(DfuError::NotReset)
        ));
        assert_eq!(core.firmware(), &Firmware::FactoryTinker);
        assert!(core.firmware_image().unwrap().is_none());
        assert_eq!(core.boots(), boots);
    }

    #[test]
    fn an_application_that_fails_the_bootloaders_test_does_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core(dir.path());
        let mut bootloader = core.enter_dfu().unwrap();
        let mut image = application(3000);
        image[..4].copy_from_slice(&0x0800_0000u32.to_le_bytes());
        flash(&mut bootloader, &dfuse(&[(0, core_map::FIRMWARE, &image)])).unwrap();
        assert!(matches!(
            core.leave_dfu(&bootloader),
            Err(DfuError::NoApplication {
                initial_sp: 0x0800_0000
            })
        ));
        assert_eq!(core.firmware(), &Firmware::FactoryTinker);
        assert!(core.firmware_image().unwrap().is_none());

        // Leaving without touching the application keeps the one that ran.
        let mut bootloader = core.enter_dfu().unwrap();
        flash(
            &mut bootloader,
            &dfuse(&[(1, core_map::USER_DATA, &[1, 2, 3])]),
        )
        .unwrap();
        let reset = core.leave_dfu(&bootloader).unwrap();
        assert_eq!(reset.installed, None);
        assert_eq!(reset.external_sectors, 1);
        assert_eq!(core.firmware(), &Firmware::FactoryTinker);
    }
}
