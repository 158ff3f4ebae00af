//! Firmware images a virtual Core can run that this project makes itself, so that nothing needs Spark's or TI's
//! binaries: the synthetic deep update.
//!
//! The June 2014 deep update (`deep_update_2014_06.bin`) is a Core application, linked at 0x08005000, that carries
//! TI's service-pack 1.28 driver and firmware patches as constant arrays and burns them into the CC3000 at boot.
//! [`synthetic_deep_update`] builds an image with the same structure: a Cortex-M3 vector table that passes the
//! bootloader's and `spark binary inspect`'s checks, a block of code-like bytes, the two patches written by
//! spark-cc3000's [`synthetic`](spark_cc3000::patch::synthetic) module (the firmware patch at an odd offset, as in the
//! July 2014 image), and a name string. A virtual Core treats it exactly as it treats the real image: it finds the
//! patches, names the firmware `deep-update`, and patches its CC3000 to the service pack they stand for.
//!
//! It is not ARM code: a real Core must never be flashed with it.

use spark_cc3000::ServicePack;
use spark_cc3000::patch::synthetic::{
    SYNTHETIC_DRIVER_LEN, SYNTHETIC_FIRMWARE_LEN, emit_synthetic_driver, emit_synthetic_firmware,
};
use spark_dfu::platform::core_map;

/// The file name the demo and the tools give the synthetic image.
pub const SYNTHETIC_DEEP_UPDATE_NAME: &str = "synthetic_deep_update.bin";

/// Entries of the STM32F103's vector table (16 system exceptions and 51 interrupts): 0x10C bytes, as in the Core's
/// firmware.
const VECTORS: usize = 67;
/// Bytes of code-like filler between the vector table and the patches.
const CODE_LEN: usize = 6_000;
/// Where the reset handler sits: just after the vector table.
const RESET_OFFSET: u32 = (VECTORS * 4) as u32;
/// Initial stack pointer: the top of the STM32F103CB's 20 KiB of SRAM.
const INITIAL_SP: u32 = 0x2000_5000;

/// A Core application at 0x08005000 that carries synthetic service-pack images standing for `service_pack`. See
/// the [module docs](self).
pub fn synthetic_deep_update(service_pack: ServicePack) -> Vec<u8> {
    let name = format!(
        "spark-sdk synthetic deep update: CC3000 service pack {}.{} (not ARM code)\0",
        service_pack.package_id, service_pack.build
    );
    let driver_at = VECTORS * 4 + CODE_LEN;
    // One byte of gap puts the firmware patch at an odd offset.
    let firmware_at = driver_at + SYNTHETIC_DRIVER_LEN + 1;
    let name_at = firmware_at + SYNTHETIC_FIRMWARE_LEN;
    let len = (name_at + name.len()).next_multiple_of(4);
    let mut image = vec![0u8; len];

    let thumb = |offset: u32| (core_map::FIRMWARE + offset) | 1;
    // Every exception but reset goes to one default handler after the reset handler.
    let mut vectors = [thumb(RESET_OFFSET + 8); VECTORS];
    vectors[0] = INITIAL_SP;
    vectors[1] = thumb(RESET_OFFSET);
    for (slot, word) in image.chunks_exact_mut(4).zip(vectors) {
        slot.copy_from_slice(&word.to_le_bytes());
    }

    let mut state = 0x2014_0606u32 ^ u32::from(service_pack.build);
    for byte in &mut image[VECTORS * 4..driver_at] {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *byte = state as u8;
    }
    // The buffers are sized from the images' own lengths, so neither emit can fail.
    let driver = emit_synthetic_driver(service_pack, &mut image[driver_at..firmware_at]);
    let firmware = emit_synthetic_firmware(service_pack, &mut image[firmware_at..name_at]);
    debug_assert_eq!(
        (driver, firmware),
        (Ok(SYNTHETIC_DRIVER_LEN), Ok(SYNTHETIC_FIRMWARE_LEN))
    );
    image[name_at..name_at + name.len()].copy_from_slice(name.as_bytes());
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc3000::ServicePackImages;
    use spark_dfu::module::{Outcome, inspect};

    #[test]
    fn the_synthetic_deep_update_is_a_core_application_carrying_the_service_pack() {
        let image = synthetic_deep_update(ServicePack::SP_1_28);
        let inspection = inspect(&image, core_map::FIRMWARE);
        assert_eq!(inspection.first_failure(), None);
        assert!(inspection.checks().any(|(_, o)| o == Outcome::Passed));
        let found = ServicePackImages::find(&image).expect("both patches");
        assert_eq!(found.version(), Some(ServicePack::SP_1_28));
        let firmware_offset = image
            .windows(found.firmware.len())
            .position(|w| w == found.firmware)
            .unwrap();
        assert_eq!(
            firmware_offset % 2,
            1,
            "the firmware patch sits at an odd offset"
        );
        assert!(image.len().is_multiple_of(4) && image.len() < core_map::FIRMWARE_LEN as usize);
    }

    #[test]
    fn the_image_is_the_same_every_time_and_names_its_service_pack() {
        assert_eq!(
            synthetic_deep_update(ServicePack::SP_1_28),
            synthetic_deep_update(ServicePack::SP_1_28)
        );
        let other = synthetic_deep_update(ServicePack::SP_1_32);
        assert_eq!(
            ServicePackImages::find(&other).and_then(|i| i.version()),
            Some(ServicePack::SP_1_32)
        );
        let text = String::from_utf8_lossy(&other);
        assert!(text.contains("service pack 1.32"));
    }
}
