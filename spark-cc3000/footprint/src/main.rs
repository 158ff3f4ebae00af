//! A bare-metal binary linking the CC3000 programmer with a do-nothing `Nvmem`, to measure flash and RAM.
//!
//! The images come through `black_box`, so nothing is constant-folded away; a port would keep the TI images in flash
//! on top of these figures (13.7 KB for SP 1.28 or 1.32).

#![no_std]
#![no_main]

#[path = "../../../spark-protocol/footprint/src/bare.rs"]
mod bare;

use core::hint::black_box;
use spark_cc3000::ServicePack;
use spark_cc3000::nvmem::FileId;
use spark_cc3000::programmer::{self, Config, Nvmem, Programmer};

/// An `Nvmem` whose every call succeeds without doing anything observable to the optimiser.
struct NoChip;

impl Nvmem for NoChip {
    type Error = u8;

    fn read(&mut self, file: FileId, offset: u32, buf: &mut [u8]) -> Result<(), u8> {
        black_box((file, offset));
        buf.fill(black_box(0xA5));
        black_box(Ok(()))
    }

    fn write(&mut self, file: FileId, offset: u32, data: &[u8]) -> Result<(), u8> {
        black_box((file, offset, data));
        black_box(Ok(()))
    }

    fn create_entry(&mut self, file: FileId, len: u32) -> Result<(), u8> {
        black_box((file, len));
        black_box(Ok(()))
    }

    fn read_sp_version(&mut self) -> Result<ServicePack, u8> {
        black_box(Ok(ServicePack::new(1, 28)))
    }
}

static DRIVER: [u8; 0] = [];
static FIRMWARE: [u8; 0] = [];

/// `size_of::<Programmer>()` on this target, readable from the ELF symbol table.
#[unsafe(no_mangle)]
#[used]
pub static CC3000_PROGRAMMER_SIZE: usize = core::mem::size_of::<Programmer<'static>>();

/// The bare-metal entry point (no runtime crate: the symbol is the only way to name it without one).
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let driver: &[u8] = black_box(&DRIVER);
    let firmware: &[u8] = black_box(&FIRMWARE);
    if let Ok(mut p) = Programmer::new(driver, firmware, black_box(Config::default())) {
        let result = programmer::run(&mut p, &mut NoChip, |backup| {
            black_box(backup.to_bytes());
        });
        black_box(result.is_ok());
    }
    bare::idle()
}
