//! Puts memory.x on the linker's path, links with cortex-m-rt's link.x, and embeds the device's keys and id.
//!
//! `QEMU_CORE_DEVICE_KEY` (the device's private key, PKCS#1 or PKCS#8 DER), `QEMU_CORE_SERVER_KEY` (the cloud's public
//! key, SPKI or PKCS#1 DER) and `QEMU_CORE_DEVICE_ID` (24 hex digits) are read at build time; without them the
//! firmware builds with empty keys and says so when it starts.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rustc-link-arg=-Tlink.x");

    for (var, file) in [
        ("QEMU_CORE_DEVICE_KEY", "device_key.der"),
        ("QEMU_CORE_SERVER_KEY", "server_key.der"),
    ] {
        println!("cargo:rerun-if-env-changed={var}");
        let bytes = match env::var_os(var) {
            Some(path) => {
                println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
                fs::read(&path)
                    .unwrap_or_else(|e| panic!("{var}={}: {e}", PathBuf::from(&path).display()))
            }
            None => Vec::new(),
        };
        fs::write(out.join(file), bytes).expect("write key");
    }
    println!("cargo:rerun-if-env-changed=QEMU_CORE_DEVICE_ID");
    let id = env::var("QEMU_CORE_DEVICE_ID").unwrap_or_else(|_| "0".repeat(24));
    let id = id.trim();
    assert!(
        id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "QEMU_CORE_DEVICE_ID must be 24 hex digits"
    );
    let bytes: Vec<u8> = (0..12)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    fs::write(out.join("device_id.bin"), bytes).expect("write id");
}
