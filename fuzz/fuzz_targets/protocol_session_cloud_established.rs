//! Drives an established `CloudConnection` built from a known session key (no RSA handshake per input, so inputs
//! run thousands of times faster than `protocol_session_cloud`): the device's Hello, then arbitrary device messages
//! sealed as valid frames, raw bytes, timer runs and application requests. The session must never panic, and once
//! ended it must keep its error.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{Aes128Cbc, FrameEncoder, RsaPrivateKey, SessionKey};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, OtaOptions};
use spark_protocol::session::{Connection, Instant};
use spark_protocol::wire::describe::VarType;

const ID: [u8; 12] = [0x53; 12];

fn server_key() -> &'static RustCryptoPrivateKey {
    static KEY: OnceLock<RustCryptoPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = RsaPrivateKey::generate(&mut StdRng::seed_from_u64(42), 1024).unwrap();
        RustCryptoPrivateKey::new(&key.as_ref_key()).unwrap()
    })
}

fn seal(enc: &mut FrameEncoder<Aes128Cbc>, plain: &[u8]) -> Vec<u8> {
    let mut out = vec![0; plain.len() + 18];
    let n = enc.seal(plain, &mut out).unwrap();
    out.truncate(n);
    out
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
    let hello = seal(
        &mut enc,
        b"\x50\x02\x00\x01\xb1\x68\xff\x00\x06\x00\x01\x00\x00",
    );
    cloud.handle_input(Instant::ZERO, &hello).unwrap();
    assert!(cloud.is_established());

    let mut now = Instant::ZERO;
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let result = match op % 8 {
            0..=2 => {
                let frame = seal(&mut enc, body);
                cloud.handle_input(now, &frame)
            }
            3 => cloud.handle_input(now, body),
            4 => {
                now = Instant::from_millis(now.as_millis() + u64::from(*op) * 997);
                cloud.handle_timeout(now);
                Ok(())
            }
            5 => {
                let _ = cloud.call_function(now, b"f", body);
                let _ = cloud.read_variable(now, b"v", VarType::Int);
                let _ = cloud.describe(now);
                Ok(())
            }
            6 => {
                let options = if op & 0x80 != 0 {
                    OtaOptions::fast().with_chunk_size(16)
                } else {
                    OtaOptions::default().with_chunk_size(16)
                };
                let _ = cloud.start_ota(now, body.to_vec(), options);
                Ok(())
            }
            _ => {
                let _ = cloud.signal(now, op & 0x80 != 0);
                Ok(())
            }
        };
        loop {
            let mut out = vec![0u8; cloud.max_transmit_len()];
            match cloud.poll_transmit(now, &mut out) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        while cloud.poll_event().is_some() {}
        if let Err(e) = result {
            assert_eq!(cloud.error(), Some(e));
            assert_eq!(cloud.handle_input(now, &[0]), Err(e));
            return;
        }
    }
});
