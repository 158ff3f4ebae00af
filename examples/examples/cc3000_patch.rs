//! spark-cc3000: a service pack burnt into a simulated CC3000's NVMEM by the sans-IO patch programmer, driven step
//! by step as firmware on a Core (or any other MCU) would drive it over the CC3000's SPI link.
//!
//! ```text
//! cargo run -p examples --example cc3000_patch [DRIVER.bin FIRMWARE.bin]
//! ```
//!
//! Without files it uses synthetic images standing for service pack 1.28 (TI's structure, made-up content). With
//! TI's images, for example `$SPARK_VECTORS/cc3000/cc3000_drv_sp1.28_P1.13.7.15.28.bin` and
//! `$SPARK_VECTORS/cc3000/cc3000_fw_P1.12-1.14_x.15.bin`, it burns those.

use spark_cc3000::ServicePack;
use spark_cc3000::nvmem::{FatTable, FileId, RADIO_PARAMS_LEN};
use spark_cc3000::patch::PatchImage;
use spark_cc3000::patch::synthetic::{
    SYNTHETIC_DRIVER_LEN, SYNTHETIC_FIRMWARE_LEN, emit_synthetic_driver, emit_synthetic_firmware,
};
use spark_cc3000::programmer::{Action, Config, Nvmem, Outcome, Programmer};
use spark_cc3000::sim::SimNvmem;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let (driver, firmware) = match &args[..] {
        [driver, firmware] => (std::fs::read(driver)?, std::fs::read(firmware)?),
        _ => {
            let mut driver = vec![0; SYNTHETIC_DRIVER_LEN];
            let mut firmware = vec![0; SYNTHETIC_FIRMWARE_LEN];
            emit_synthetic_driver(ServicePack::SP_1_28, &mut driver)?;
            emit_synthetic_firmware(ServicePack::SP_1_28, &mut firmware)?;
            (driver, firmware)
        }
    };
    for (name, bytes) in [("driver", &driver), ("firmware", &firmware)] {
        let image = PatchImage::parse(bytes)?;
        println!(
            "{name} patch: {} bytes, {} records, a {} ({:?})",
            image.len(),
            image.record_count(),
            image.kind(),
            image.identify()
        );
    }

    // A module as it left the factory: the programmers' file table, a MAC, its own radio calibration, and ROM
    // reporting service pack 1.24. The programmer keeps the MAC and the calibration across the table rewrite.
    let mut nvmem = SimNvmem::with_table(&FatTable::programmer_default(), ServicePack::SP_1_24);
    nvmem.install(FileId::Mac, &[0x08, 0x00, 0x28, 0x5a, 0x11, 0x07])?;
    let radio: Vec<u8> = (0..RADIO_PARAMS_LEN)
        .map(|i| (i as u8).wrapping_mul(37) ^ 0x5a)
        .collect();
    nvmem.install(FileId::Rm, &radio)?;
    println!("before: the chip reports {}", nvmem.read_sp_version()?);

    // The programmer never touches the NVMEM itself: it says what to do next and takes the outcome.
    let mut programmer = Programmer::new(&driver, &firmware, Config::default())?;
    let mut buf = [0u8; 256];
    let (mut reads, mut writes) = (0, 0);
    let report = loop {
        let result = match programmer.poll_action() {
            Action::Read { file, offset, len } => {
                reads += 1;
                let buf = &mut buf[..len];
                nvmem.read(file, offset, buf).map(|()| Outcome::Read(buf))
            }
            Action::Write { file, offset, data } => {
                writes += 1;
                nvmem.write(file, offset, data).map(|()| Outcome::Done)
            }
            Action::CreateEntry { file, len } => {
                nvmem.create_entry(file, len).map(|()| Outcome::Done)
            }
            Action::ReadVersion => nvmem.read_sp_version().map(Outcome::Version),
            // On a device that may lose power, persist the backup (MAC, radio parameters, Wi-Fi profile) here.
            Action::SaveBackup(_) => Ok(Outcome::Done),
            Action::Finished(report) => break *report,
            Action::Failed(error) => return Err(error.into()),
        };
        programmer.handle_outcome(result.unwrap_or(Outcome::Failed));
    };

    println!(
        "programmed in {reads} reads and {writes} writes ({} bytes); table rewritten: {}",
        report.bytes_written, report.fat_rewritten
    );
    println!(
        "after: the chip reports {} (was {:?}); MAC kept: {:?}",
        report.final_version,
        report.initial_version,
        report.mac.map(|m| m.to_string())
    );
    assert_eq!(nvmem.read_sp_version()?, report.final_version);
    assert_eq!(nvmem.file(FileId::Rm, RADIO_PARAMS_LEN), Some(&radio[..]));
    Ok(())
}
