//! Firmware inspection and server-key images: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_dfu::module::{check_for, inspect};
use spark_dfu::platform::server_key::{KeyFormat, ServerKeyImage};
use spark_dfu::platform::{Item, Platform};

fuzz_target!(|data: &[u8]| {
    let i = inspect(data, 0x0800_5000);
    let _ = i.checks().count();
    for p in [Platform::Core, Platform::Photon, Platform::Xenon] {
        let _ = check_for(data, p, Item::UserFirmware);
    }
    for f in [KeyFormat::CORE, KeyFormat::DCT_RSA, KeyFormat::DCT_EC] {
        let _ = ServerKeyImage::parse(data, f);
    }
});
