//! A real device and a real cloud from this crate, with generated keys, for the pair and the
//! end-to-end tests.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::RsaPrivateKey;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::session::Instant;
use spark_protocol::session::cloud::{CloudConfig, CloudConnection};
use spark_protocol::session::device::{BufferSink, DeviceConfig, DeviceConnection, RsaHandshake};

pub const DEVICE_ID: [u8; 12] = *b"\x1a\x11\x8a\xd1\xc8\x86\xd5\x42\x40\xce\x4b\x17";

pub struct Keys {
    pub server: RsaPrivateKey,
    pub device: RsaPrivateKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Keys {
        server: RsaPrivateKey::generate(&mut StdRng::seed_from_u64(11), 2048).unwrap(),
        device: RsaPrivateKey::generate(&mut StdRng::seed_from_u64(12), 1024).unwrap(),
    })
}

pub type Device = DeviceConnection<
    BufferSink<'static>,
    RsaHandshake<RustCryptoPrivateKey, RustCryptoPublicKey, StdRng>,
>;
pub type Cloud = CloudConnection<
    RustCryptoPrivateKey,
    BTreeMap<spark_protocol::DeviceId, RustCryptoPublicKey>,
    StdRng,
>;

/// A device with a 256 KiB flash area, the functions `led` and `echo` and the variables
/// `temp` (double) and `name` (string).
pub fn device(seed: u64, fast_ota: bool) -> Device {
    let k = keys();
    let hs = RsaHandshake::new(
        RustCryptoPrivateKey::new(&k.device.as_ref_key()).unwrap(),
        RustCryptoPublicKey::new(&k.server.public_key().as_ref_key()).unwrap(),
        StdRng::seed_from_u64(seed),
    );
    let flash: &'static mut [u8] = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
    let mut cfg = DeviceConfig::new(DEVICE_ID);
    cfg.fast_ota = fast_ota;
    let mut dev = DeviceConnection::new(Instant::ZERO, cfg, hs, BufferSink::new(flash));
    dev.register_function(b"led").unwrap();
    dev.register_variable(b"temp", spark_protocol::wire::describe::VarType::Double)
        .unwrap();
    dev
}

pub fn cloud(seed: u64) -> Cloud {
    let k = keys();
    let mut known = BTreeMap::new();
    known.insert(
        DEVICE_ID.into(),
        RustCryptoPublicKey::new(&k.device.public_key().as_ref_key()).unwrap(),
    );
    CloudConnection::new(
        Instant::ZERO,
        RustCryptoPrivateKey::new(&k.server.as_ref_key()).unwrap(),
        known,
        StdRng::seed_from_u64(seed),
        CloudConfig::default(),
    )
}

/// 100 KiB that are not a repeating pattern.
pub fn image(len: usize) -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
pub mod script;
