//! spark-dfu: a DfuSe file flashed by the DFU host to a simulated Spark Core bootloader, then read back.
//!
//! ```text
//! cargo run -p examples --example dfuse_flash [FILE.dfu]
//! ```
//!
//! Without a file it packs one itself: the synthetic deep update (a Core application carrying CC3000 service pack
//! 1.28) at 0x08005000 for the Core's bootloader, 1d50:607f, as `dfuse-pack` would. With a file (for example
//! `$SPARK_VECTORS/dfu/generated/tinker_core_dfuse.dfu`) it flashes that one.

use spark_cc3000::ServicePack;
use spark_dfu::file::dfuse::{DfuseFile, SingleElement};
use spark_dfu::host::{Event, Options};
use spark_dfu::ops;
use spark_dfu::platform::{Item, Platform};
use spark_dfu::sim::SparkCore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = match std::env::args_os().nth(1) {
        Some(path) => std::fs::read(path)?,
        None => pack(&spark_vcore::image::synthetic_deep_update(
            ServicePack::SP_1_28,
        ))?,
    };
    // Parsing checks the prefix, every target and element, and the suffix's CRC.
    let dfuse = DfuseFile::parse(&file)?;
    let suffix = dfuse.suffix();
    println!(
        "DfuSe file: {} bytes, {} target(s), for {:04x}:{:04x}",
        file.len(),
        dfuse.targets().count(),
        suffix.id_vendor,
        suffix.id_product
    );
    for target in dfuse.targets() {
        for element in target.elements() {
            println!(
                "  alt {}: {} bytes at {:#010x}",
                target.alt(),
                element.data.len(),
                element.address
            );
        }
    }

    // The simulated Core starts in dfuERROR, as a real one does after a reset into DFU mode; the host clears it.
    // Any `spark_dfu::transport::blocking::Transport` works here: the `usb` feature brings a real one on nusb.
    let mut core = SparkCore::new();
    let options = Options {
        verify: true,
        leave: true,
        ..Options::default()
    };
    let (mut erased, mut written) = (0u32, 0u64);
    let summary =
        ops::flash_dfuse_file(
            &mut core,
            Platform::Core,
            &dfuse,
            options,
            |event| match event {
                Event::Erased { .. } => erased += 1,
                Event::Written { len, .. } => written += u64::from(len),
                _ => {}
            },
        )?;
    println!(
        "flashed: {} pages erased, {} bytes written, {} read back and compared, {} control transfers, \
         {} ms of bootloader poll time",
        summary.erased, summary.written, summary.read, summary.transfers, summary.waited_ms
    );
    assert_eq!((erased, written), (summary.erased, summary.written));

    // What the bootloader's flash now holds, byte for byte.
    for target in dfuse.targets() {
        for element in target.elements() {
            let held = core.memory(element.address, element.data.len());
            assert_eq!(held, Some(element.data), "{:#010x}", element.address);
        }
    }
    println!(
        "the Core's flash holds every element; it left DFU mode: {} reset(s)",
        core.resets
    );
    Ok(())
}

/// A DfuSe file with `image` at the Core's application address, alt setting 0, for the Core's DFU VID:PID.
fn pack(image: &[u8]) -> Result<Vec<u8>, spark_dfu::file::dfuse::DfuseWriteError> {
    SingleElement::for_item(Platform::Core, Item::UserFirmware, image)
        .expect("the Core has a user-firmware place")
        .to_vec()
}
