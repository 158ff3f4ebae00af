//! Drives a `CloudConnection` after a valid handshake and Hello with arbitrary device messages
//! (validly framed and encrypted, so they reach the session's parser), raw bytes, timer runs and
//! application requests. The session must never panic, and once ended it must keep its error.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::handshake::{encrypt_device_credentials, open_session_key};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{Aes128Cbc, Nonce, RsaPrivateKey};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection};
use spark_protocol::session::{Connection, Instant};

#[path = "../shared/cloud_session.rs"]
mod cloud_session;

const ID: [u8; 12] = [0x53; 12];

struct Fixture {
    server: RustCryptoPrivateKey,
    server_pub: RustCryptoPublicKey,
    device: RustCryptoPrivateKey,
    device_pub: RustCryptoPublicKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // 1024-bit keys on both sides keep each run's handshake cheap; the session code is the
        // same for any modulus size.
        let mut rng = StdRng::seed_from_u64(42);
        let server = RsaPrivateKey::generate(&mut rng, 1024).unwrap();
        let device = RsaPrivateKey::generate(&mut rng, 1024).unwrap();
        Fixture {
            server: RustCryptoPrivateKey::new(&server.as_ref_key()).unwrap(),
            server_pub: RustCryptoPublicKey::new(&server.public_key().as_ref_key()).unwrap(),
            device: RustCryptoPrivateKey::new(&device.as_ref_key()).unwrap(),
            device_pub: RustCryptoPublicKey::new(&device.public_key().as_ref_key()).unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut keys = BTreeMap::new();
    keys.insert(ID.into(), &f.device_pub);
    let mut rng = StdRng::seed_from_u64(1);
    let mut cloud = CloudConnection::new(
        Instant::ZERO,
        &f.server,
        keys,
        StdRng::seed_from_u64(2),
        CloudConfig::default(),
    );
    let mut buf = vec![0u8; 4096];
    let n = cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .unwrap();
    let nonce = Nonce(buf[..n].try_into().unwrap());
    let mut creds = [0u8; 128];
    encrypt_device_credentials(&f.server_pub, &mut rng, &nonce, &ID, None, &mut creds).unwrap();
    cloud.handle_input(Instant::ZERO, &creds).unwrap();
    let n = cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .unwrap();
    let session = open_session_key(&f.device, &f.server_pub, &mut rng, &buf[..n]).unwrap();
    let mut enc = session.encoder::<Aes128Cbc>();
    let hello = cloud_session::seal(&mut enc, cloud_session::HELLO);
    cloud.handle_input(Instant::ZERO, &hello).unwrap();
    cloud_session::drive(&mut cloud, &mut enc, data);
});
