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
use spark_protocol::crypto::{Aes128Cbc, FrameEncoder, Nonce, RsaPrivateKey};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, OtaOptions};
use spark_protocol::session::{Connection, Instant};
use spark_protocol::wire::describe::VarType;

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

fn seal(enc: &mut FrameEncoder<Aes128Cbc>, plain: &[u8]) -> Vec<u8> {
    let mut out = vec![0; plain.len() + 18];
    let n = enc.seal(plain, &mut out).unwrap();
    out.truncate(n);
    out
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
    let hello = seal(
        &mut enc,
        b"\x50\x02\x00\x01\xb1\x68\xff\x00\x06\x00\x01\x00\x00",
    );
    cloud.handle_input(Instant::ZERO, &hello).unwrap();

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
