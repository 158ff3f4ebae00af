//! Drives an established `CloudConnection` built from a known session key (no RSA handshake per input, so inputs
//! run thousands of times faster than `protocol_session_cloud`): the device's Hello, then arbitrary device messages
//! sealed as valid frames, raw bytes, timer runs and application requests. The first byte chooses whether published
//! events come out as borrowed views (bit 0) and whether the session keeps its buffers between inputs (bit 1). The
//! session must never panic, and once ended it must keep its error.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{Aes128Cbc, RsaPrivateKey, SessionKey};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection};
use spark_protocol::session::{Connection, Instant};

#[path = "../shared/cloud_session.rs"]
mod cloud_session;

const ID: [u8; 12] = [0x53; 12];

fn server_key() -> &'static RustCryptoPrivateKey {
    static KEY: OnceLock<RustCryptoPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = RsaPrivateKey::generate(&mut StdRng::seed_from_u64(42), 1024).unwrap();
        RustCryptoPrivateKey::new(&key.as_ref_key()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let session = SessionKey::from_bytes(core::array::from_fn(|i| (i as u8).wrapping_mul(7)));
    let keys: BTreeMap<spark_protocol::DeviceId, &RustCryptoPublicKey> = BTreeMap::new();
    let mut cloud = CloudConnection::from_session(
        Instant::ZERO,
        server_key(),
        keys,
        StdRng::seed_from_u64(2),
        CloudConfig::default(),
        &session,
        ID.into(),
    );
    let mut enc = session.encoder::<Aes128Cbc>();
    let hello = cloud_session::seal(&mut enc, cloud_session::HELLO);
    cloud.handle_input(Instant::ZERO, &hello).unwrap();
    assert!(cloud.is_established());
    let (mode, data) = data.split_first().map_or((0, data), |(m, rest)| (*m, rest));
    cloud.set_published_views(mode & 1 != 0);
    cloud.keep_buffers(mode & 2 != 0);
    cloud_session::drive(&mut cloud, &mut enc, data);
    while let Some(view) = cloud.poll_published() {
        let owned = view.to_event();
        assert_eq!(owned.name, view.name);
    }
    cloud.keep_buffers(false);
});
