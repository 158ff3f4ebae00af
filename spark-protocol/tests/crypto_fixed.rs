//! The heap-free RSA backend (`crypto::fixed`) against the upstream vectors, against the
//! RustCrypto and OpenSSL backends on fresh keys, against raw blocks encrypted by the `openssl`
//! command, and driving a whole device session with a cloud on another backend.
#![cfg(all(feature = "rsa-fixed", feature = "rsa", feature = "openssl"))]

mod crypto_common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crypto_common::{hex, openssl, openssl_key, rng, scratch_dir};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use spark_protocol::crypto::fixed::{FixedPrivateKey, FixedPublicKey};
use spark_protocol::crypto::handshake::{
    DEVICE_ID_LEN, SESSION_REPLY_LEN, decrypt_device_credentials, encrypt_core_credentials_in,
    encrypt_device_credentials, open_session_key, open_session_key_in, seal_session_key,
    session_key_hmac,
};
use spark_protocol::crypto::keys::{
    DEVICE_PRIVATE_KEY_STORAGE_LEN, ServerAddress, ServerKeyRecord,
    device_private_key_from_storage, device_private_key_to_storage,
};
use spark_protocol::crypto::openssl::{OpensslPrivateKey, OpensslPublicKey};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{
    HandshakeError, Nonce, RsaError, RsaPrivate, RsaPrivateKey, RsaPrivateKeyRef, RsaPublic,
    RsaPublicKeyRef, RsaScratch, SessionKey,
};
use spark_protocol::session::Instant;
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent};
use spark_protocol::session::device::RsaHandshake;
use spark_protocol::session::device::{DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware};
use spark_protocol::session::pair::{Outcome, Pair};

const DEVICE_ID: [u8; DEVICE_ID_LEN] = *b"\x53\xff\x6c\x06\x50\x67\x55\x49\x23\x40\x12\x87";

fn field(v: &Value, name: &str) -> Vec<u8> {
    hex(v[name]
        .as_str()
        .unwrap_or_else(|| panic!("missing field {name}")))
}

// -------------------------------------------------------------------------------------------
// Upstream vectors

/// Every fixture's 384-byte reply: the fixed backend decrypts the session secret, the HMAC
/// over the ciphertext is the recorded one, the server's signature verifies, and the whole
/// reply opens; a flipped bit in either half is refused.
#[test]
fn fixed_backend_opens_every_fixture_reply() {
    let Some(bytes) = spark_vectors::read("protocol", "core-communication-lib-vectors.json") else {
        return;
    };
    let v: Value = serde_json::from_slice(&bytes).expect("vectors JSON");
    let cases = [
        (
            "handshake_fixture",
            [
                "encrypted_aes_credentials",
                "signature",
                "expected_credentials",
                "expected_hmac_sha1",
            ],
        ),
        (
            "constructor_fixture",
            [
                "signed_encrypted_credentials_384",
                "",
                "derived_session_credentials_40",
                "derived_hmac_sha1",
            ],
        ),
        (
            "coap_fixture",
            [
                "signed_encrypted_credentials_384",
                "",
                "derived_session_credentials_40",
                "derived_hmac_sha1",
            ],
        ),
    ];
    for (name, [reply_a, reply_b, secret, hmac]) in cases {
        let f = &v["fixtures"][name];
        let device_der =
            spark_vectors::read("protocol", &format!("{name}.device_private_1024.der"))
                .expect("fixture key");
        let server_der = spark_vectors::read("protocol", &format!("{name}.server_public_2048.der"))
            .expect("fixture key");
        let device = FixedPrivateKey::from_der(&device_der).unwrap();
        let server = FixedPublicKey::from_der(&server_der).unwrap();
        let mut reply = field(f, reply_a);
        if !reply_b.is_empty() {
            reply.extend(field(f, reply_b));
        }
        assert_eq!(reply.len(), SESSION_REPLY_LEN, "{name}");
        let (secret, hmac) = (field(f, secret), field(f, hmac));

        let (ciphertext, signature) = reply.split_at(128);
        let mut plain = [0u8; 128];
        let n = device
            .decrypt_pkcs1v15(&mut rng(0), ciphertext, &mut plain)
            .unwrap();
        assert_eq!(&plain[..n], &secret[..], "{name}: session secret");
        let session = SessionKey::from_bytes(secret.clone().try_into().unwrap());
        assert_eq!(session_key_hmac(&session, ciphertext), &hmac[..]);
        server.verify_pkcs1v15_unprefixed(&hmac, signature).unwrap();
        let opened = open_session_key(&device, &server, &mut rng(0), &reply).unwrap();
        assert_eq!(opened.as_bytes(), &secret[..]);

        let mut bad = reply.clone();
        bad[300] ^= 0x04;
        assert_eq!(
            open_session_key(&device, &server, &mut rng(0), &bad),
            Err(HandshakeError::Signature),
            "{name}: signature bit"
        );
        let mut bad = reply.clone();
        bad[5] ^= 0x80;
        assert!(
            matches!(
                open_session_key(&device, &server, &mut rng(0), &bad),
                Err(HandshakeError::SessionKey | HandshakeError::Signature)
            ),
            "{name}: ciphertext bit"
        );
    }
}

/// The keys as a Core keeps them in its external flash: the device key zero-padded into its
/// 612-byte slot and the server key as a record with an address and a port. The backend borrows
/// both straight from those bytes and opens the fixture's reply.
#[test]
fn keys_from_the_cores_storage_forms() {
    let Some(bytes) = spark_vectors::read("protocol", "core-communication-lib-vectors.json") else {
        return;
    };
    let v: Value = serde_json::from_slice(&bytes).expect("vectors JSON");
    let f = &v["fixtures"]["handshake_fixture"];
    let device_der = spark_vectors::read("protocol", "handshake_fixture.device_private_1024.der")
        .expect("fixture key");
    let server_der = spark_vectors::read("protocol", "handshake_fixture.server_public_2048.der")
        .expect("fixture key");

    let mut slot = [0u8; DEVICE_PRIVATE_KEY_STORAGE_LEN];
    let device = RsaPrivateKeyRef::from_der(&device_der).unwrap();
    device_private_key_to_storage(&device, &mut slot).unwrap();
    let stored = device_private_key_from_storage(&slot).unwrap();
    let device = FixedPrivateKey::new(&stored).unwrap();

    let record = ServerKeyRecord {
        key: RsaPublicKeyRef::from_der(&server_der).unwrap(),
        address: Some(ServerAddress::Domain("device.spark.io")),
        port: Some(5683),
    };
    let mut area = [0xffu8; 512];
    record.emit(&mut area).unwrap();
    let server = FixedPublicKey::new(&ServerKeyRecord::parse(&area).unwrap().key).unwrap();

    let reply = [field(f, "encrypted_aes_credentials"), field(f, "signature")].concat();
    let opened = open_session_key(&device, &server, &mut rng(0), &reply).unwrap();
    assert_eq!(opened.as_bytes(), &field(f, "expected_credentials")[..]);
}

// -------------------------------------------------------------------------------------------
// Fresh keys, every backend

struct Keys {
    server: RsaPrivateKey,
    device: RsaPrivateKey,
    openssl_device: RsaPrivateKey,
}

/// A 2048-bit server key and a 1024-bit device key from `openssl genrsa`, and a 1024-bit
/// device key from RustCrypto's generator.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        server: openssl_key(2048),
        device: RsaPrivateKey::generate(&mut rng(7), 1024).expect("generate a device key"),
        openssl_device: openssl_key(1024),
    })
}

fn device_keys() -> [&'static RsaPrivateKey; 2] {
    [&keys().device, &keys().openssl_device]
}

/// The credentials the fixed backend encrypts to a fresh server key decrypt with RustCrypto
/// and OpenSSL, and carry the nonce and the device id.
#[test]
fn fixed_credentials_decrypt_with_the_other_backends() {
    let k = keys();
    let server_key = k.server.public_key();
    let server_pub = FixedPublicKey::new(&server_key.as_ref_key()).unwrap();
    let rc = RustCryptoPrivateKey::new(&k.server.as_ref_key()).unwrap();
    let os = OpensslPrivateKey::new(&k.server.as_ref_key()).unwrap();
    for seed in 0..4 {
        let nonce = Nonce::generate(&mut rng(seed));
        let mut creds = [0u8; 256];
        let n = encrypt_device_credentials(
            &server_pub,
            &mut rng(seed + 100),
            &nonce,
            &DEVICE_ID,
            None,
            &mut creds,
        )
        .unwrap();
        assert_eq!(n, 256);
        for got in [
            decrypt_device_credentials(&rc, &mut rng(1), &nonce, &creds),
            decrypt_device_credentials(&os, &mut rng(1), &nonce, &creds),
        ] {
            assert_eq!(got.unwrap().device_id, DEVICE_ID);
        }
    }
}

/// The whole handshake with a fixed-backend device and a RustCrypto or OpenSSL cloud.
#[test]
fn fixed_device_handshakes_with_either_cloud() {
    let k = keys();
    let server_key = k.server.public_key();
    let server_pub = FixedPublicKey::new(&server_key.as_ref_key()).unwrap();
    for device in device_keys() {
        let device_priv = FixedPrivateKey::new(&device.as_ref_key()).unwrap();
        let spki = device.public_key().to_spki_der();
        let spki = RsaPublicKeyRef::from_der(&spki).unwrap();
        let server_rc = RustCryptoPrivateKey::new(&k.server.as_ref_key()).unwrap();
        let server_os = OpensslPrivateKey::new(&k.server.as_ref_key()).unwrap();
        for seed in 0..3 {
            let session = SessionKey::generate(&mut rng(seed));
            let replies = [
                seal(
                    &RustCryptoPublicKey::new(&spki).unwrap(),
                    &server_rc,
                    &session,
                    seed,
                ),
                seal(
                    &OpensslPublicKey::new(&spki).unwrap(),
                    &server_os,
                    &session,
                    seed,
                ),
            ];
            for (reply, cloud) in replies.iter().zip(["rustcrypto", "openssl"]) {
                let opened =
                    open_session_key(&device_priv, &server_pub, &mut rng(0), reply).unwrap();
                assert_eq!(opened, session, "{cloud} cloud, seed {seed}");
            }
        }
    }
}

/// One scratch lent in turn to every RSA operation of the handshake (as a device lends its event
/// queue), each operation finding the previous one's numbers there: the credentials equal the
/// stack-only call's byte for byte and decrypt at the cloud, every reply opens to its secret, and
/// a reply with a forged signature is still refused.
#[test]
fn one_scratch_serves_the_handshake_operations_in_turn() {
    let k = keys();
    let server_key = k.server.public_key();
    let server_pub = FixedPublicKey::new(&server_key.as_ref_key()).unwrap();
    let server_os = OpensslPrivateKey::new(&k.server.as_ref_key()).unwrap();
    let mut scratch = RsaScratch::new();
    for (seed, device) in (0..4).zip(device_keys().into_iter().cycle()) {
        let device_priv = FixedPrivateKey::new(&device.as_ref_key()).unwrap();
        let spki = device.public_key().to_spki_der();
        let spki = RsaPublicKeyRef::from_der(&spki).unwrap();
        let nonce = Nonce::generate(&mut rng(seed));
        let mut creds = [0u8; 256];
        let n = encrypt_core_credentials_in(
            &server_pub,
            &mut rng(seed + 10),
            &nonce,
            &DEVICE_ID,
            &mut creds,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(n, 256);
        let mut on_stack = [0u8; 256];
        encrypt_device_credentials(
            &server_pub,
            &mut rng(seed + 10),
            &nonce,
            &DEVICE_ID,
            None,
            &mut on_stack,
        )
        .unwrap();
        assert_eq!(creds, on_stack, "seed {seed}");
        let got = decrypt_device_credentials(&server_os, &mut rng(1), &nonce, &creds).unwrap();
        assert_eq!(got.device_id, DEVICE_ID);

        let session = SessionKey::generate(&mut rng(seed + 20));
        let reply = seal(
            &OpensslPublicKey::new(&spki).unwrap(),
            &server_os,
            &session,
            seed,
        );
        let opened =
            open_session_key_in(&device_priv, &server_pub, &mut rng(0), &reply, &mut scratch);
        assert_eq!(opened.unwrap(), session, "seed {seed}");
        let mut forged = reply.clone();
        forged[SESSION_REPLY_LEN - 1] ^= 1;
        let refused = open_session_key_in(
            &device_priv,
            &server_pub,
            &mut rng(0),
            &forged,
            &mut scratch,
        );
        assert_eq!(refused, Err(HandshakeError::Signature));
    }
}

fn seal<D: RsaPublic, S: RsaPrivate>(
    device: &D,
    server: &S,
    session: &SessionKey,
    seed: u64,
) -> Vec<u8> {
    let mut reply = vec![0u8; SESSION_REPLY_LEN];
    seal_session_key(device, server, &mut rng(seed), session, &mut reply).unwrap();
    reply
}

/// PKCS#1 v1.5 signatures are deterministic: the fixed backend's equal RustCrypto's and
/// OpenSSL's byte for byte, and each verifies with every backend's public key.
#[test]
fn signatures_are_identical_across_backends() {
    for device in device_keys() {
        let key = device.as_ref_key();
        let fixed = FixedPrivateKey::new(&key).unwrap();
        let rc = RustCryptoPrivateKey::new(&key).unwrap();
        let os = OpensslPrivateKey::new(&key).unwrap();
        let public = key.public_key();
        for message in [&b""[..], &[0xa5; 20], &[0xff; 117]] {
            let mut sigs = [[0u8; 128]; 3];
            fixed
                .sign_pkcs1v15_unprefixed(&mut rng(0), message, &mut sigs[0])
                .unwrap();
            rc.sign_pkcs1v15_unprefixed(&mut rng(0), message, &mut sigs[1])
                .unwrap();
            os.sign_pkcs1v15_unprefixed(&mut rng(0), message, &mut sigs[2])
                .unwrap();
            assert_eq!(sigs[0], sigs[1]);
            assert_eq!(sigs[0], sigs[2]);
            FixedPublicKey::new(&public)
                .unwrap()
                .verify_pkcs1v15_unprefixed(message, &sigs[0])
                .unwrap();
            RustCryptoPublicKey::new(&public)
                .unwrap()
                .verify_pkcs1v15_unprefixed(message, &sigs[0])
                .unwrap();
            OpensslPublicKey::new(&public)
                .unwrap()
                .verify_pkcs1v15_unprefixed(message, &sigs[0])
                .unwrap();
        }
        let mut sig = [0u8; 128];
        assert_eq!(
            fixed.sign_pkcs1v15_unprefixed(&mut rng(0), &[0; 118], &mut sig),
            Err(RsaError::MessageTooLong)
        );
        assert_eq!(
            fixed.sign_pkcs1v15_unprefixed(&mut rng(0), &[0; 20], &mut sig[..127]),
            Err(RsaError::InsufficientSize { required: 128 })
        );
    }
}

/// A key whose parts disagree is refused when loaded (primes, coefficient) or on first use
/// (a CRT exponent, caught by the check of every result against the public key).
#[test]
fn inconsistent_private_keys_are_refused() {
    let k = keys();
    let good = k.device.as_ref_key();
    let other = k.openssl_device.as_ref_key();
    let pub_ = good.public_key();
    let mixed = |p: &'static [u8], dp: &'static [u8], qinv: &'static [u8]| {
        RsaPrivateKeyRef::from_components(
            pub_.modulus(),
            pub_.exponent(),
            good.private_exponent(),
            p,
            good.prime2(),
            dp,
            good.exponent2(),
            qinv,
        )
        .unwrap()
    };
    let leak = |b: &[u8]| -> &'static [u8] { Box::leak(b.to_vec().into_boxed_slice()) };
    let (p, dp, qinv) = (
        leak(good.prime1()),
        leak(good.exponent1()),
        leak(good.coefficient()),
    );
    assert!(FixedPrivateKey::new(&mixed(p, dp, qinv)).is_ok());
    assert_eq!(
        FixedPrivateKey::new(&mixed(leak(other.prime1()), dp, qinv)),
        Err(RsaError::InvalidKey)
    );
    assert_eq!(
        FixedPrivateKey::new(&mixed(p, dp, leak(other.coefficient()))),
        Err(RsaError::InvalidKey)
    );
    let wrong_dp = FixedPrivateKey::new(&mixed(p, leak(other.exponent1()), qinv)).unwrap();
    let mut sig = [0u8; 128];
    assert_eq!(
        wrong_dp.sign_pkcs1v15_unprefixed(&mut rng(0), b"x", &mut sig),
        Err(RsaError::InvalidKey)
    );
    assert_eq!(sig, [0; 128], "nothing of a faulty result is written");
}

// -------------------------------------------------------------------------------------------
// Raw blocks from the openssl command

/// Encrypts `block` (the modulus length) with no padding, as `openssl pkeyutl` does.
fn openssl_raw_encrypt(key: &RsaPrivateKey, block: &[u8]) -> Vec<u8> {
    let dir = scratch_dir("fixed-raw");
    let (pem, input, output) = (dir.join("pub.pem"), dir.join("in"), dir.join("out"));
    std::fs::write(&pem, key.public_key().to_spki_pem().unwrap()).unwrap();
    std::fs::write(&input, block).unwrap();
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        pem.to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:none",
        "-in",
        input.to_str().unwrap(),
        "-out",
        output.to_str().unwrap(),
    ]);
    let out = std::fs::read(&output).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    out
}

/// Blocks that are and are not PKCS#1 v1.5 type 2, encrypted raw by OpenSSL: the fixed backend
/// returns exactly the message of the good ones and `Decryption` for the others.
#[test]
fn unpadding_of_real_rsa_blocks() {
    let device = &keys().openssl_device;
    let fixed = FixedPrivateKey::new(&device.as_ref_key()).unwrap();
    let shaped = |lead: [u8; 2], ps: usize, message: &[u8]| {
        let mut block = vec![0x5au8; 128];
        block[..2].copy_from_slice(&lead);
        let sep = 2 + ps;
        if sep < 128 {
            block[sep] = 0;
            block[sep + 1..sep + 1 + message.len()].copy_from_slice(message);
            block.truncate(sep + 1 + message.len());
        }
        block.resize(128, 0x5a);
        block
    };
    let cases: [(Vec<u8>, Option<&[u8]>); 7] = [
        (shaped([0, 2], 85, &[7; 40]), Some(&[7; 40])),
        (shaped([0, 2], 8, &[1; 117]), Some(&[1; 117])),
        (shaped([0, 2], 125, &[]), Some(&[])),
        (shaped([0, 2], 7, &[1; 118]), None),
        (shaped([0, 1], 85, &[7; 40]), None),
        (shaped([1, 2], 85, &[7; 40])[..].to_vec(), None),
        (shaped([0, 2], 126, &[]), None),
    ];
    for (i, (block, expected)) in cases.iter().enumerate() {
        if block[0] != 0 {
            // A block above the modulus cannot be encrypted; OpenSSL refuses it too.
            continue;
        }
        let ciphertext = openssl_raw_encrypt(device, block);
        let mut out = [0u8; 128];
        let got = fixed.decrypt_pkcs1v15(&mut rng(0), &ciphertext, &mut out);
        match expected {
            Some(message) => assert_eq!(&out[..got.unwrap()], *message, "case {i}"),
            None => assert_eq!(got, Err(RsaError::Decryption), "case {i}"),
        }
    }
    // A good block into too small an output says how much it needs.
    let ciphertext = openssl_raw_encrypt(device, &cases[0].0);
    assert_eq!(
        fixed.decrypt_pkcs1v15(&mut rng(0), &ciphertext, &mut [0u8; 39]),
        Err(RsaError::InsufficientSize { required: 40 })
    );
    // Not a block: the wrong length, or not below the modulus.
    assert_eq!(
        fixed.decrypt_pkcs1v15(&mut rng(0), &ciphertext[1..], &mut [0u8; 128]),
        Err(RsaError::BadInput)
    );
    assert_eq!(
        fixed.decrypt_pkcs1v15(&mut rng(0), &[0xff; 128], &mut [0u8; 128]),
        Err(RsaError::BadInput)
    );
}

// -------------------------------------------------------------------------------------------
// All three agree

fn decrypt_with<K: RsaPrivate>(key: &K, ciphertext: &[u8], seed: u64) -> Vec<u8> {
    let mut out = [0u8; 128];
    let n = key
        .decrypt_pkcs1v15(&mut rng(seed), ciphertext, &mut out)
        .unwrap();
    out[..n].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any message any backend encrypts to a device key, every backend decrypts to the same
    /// message; the fixed backend's ciphertexts too.
    #[test]
    fn all_three_backends_agree(
        message in proptest::collection::vec(any::<u8>(), 0..=117),
        seed in any::<u64>(),
        which in 0usize..2,
    ) {
        let device = device_keys()[which];
        let (key, public) = (device.as_ref_key(), device.public_key());
        let public = public.as_ref_key();
        let decrypt = |ciphertext: &[u8]| -> [Vec<u8>; 3] {
            [
                decrypt_with(&FixedPrivateKey::new(&key).unwrap(), ciphertext, seed),
                decrypt_with(&RustCryptoPrivateKey::new(&key).unwrap(), ciphertext, seed),
                decrypt_with(&OpensslPrivateKey::new(&key).unwrap(), ciphertext, seed),
            ]
        };
        let mut ciphertexts = [[0u8; 128]; 3];
        FixedPublicKey::new(&public).unwrap()
            .encrypt_pkcs1v15(&mut rng(seed), &message, &mut ciphertexts[0]).unwrap();
        RustCryptoPublicKey::new(&public).unwrap()
            .encrypt_pkcs1v15(&mut rng(seed), &message, &mut ciphertexts[1]).unwrap();
        OpensslPublicKey::new(&public).unwrap()
            .encrypt_pkcs1v15(&mut rng(seed), &message, &mut ciphertexts[2]).unwrap();
        // The padding comes from the same RNG through the same rule: the same ciphertext.
        prop_assert_eq!(ciphertexts[0], ciphertexts[1]);
        prop_assert_eq!(ciphertexts[0], ciphertexts[2]);
        for c in &ciphertexts {
            for plain in decrypt(c) {
                prop_assert_eq!(&plain, &message);
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// A whole session

type FixedDevice = DeviceConnection<
    NoFirmware,
    RsaHandshake<FixedPrivateKey<'static>, FixedPublicKey<'static>, StdRng>,
>;
type OpensslCloud = CloudConnection<
    OpensslPrivateKey,
    BTreeMap<spark_protocol::DeviceId, OpensslPublicKey>,
    StdRng,
>;

/// A `DeviceConnection` whose handshake runs on the fixed backend connects to a cloud on the
/// OpenSSL backend, and a function call goes through.
#[test]
fn device_session_on_the_fixed_backend() {
    let k = keys();
    // The device's keys borrowed for the program's life, as a port borrows them from flash.
    let server_key: &'static _ = Box::leak(Box::new(k.server.public_key()));
    let hs = RsaHandshake::new(
        FixedPrivateKey::new(&k.device.as_ref_key()).unwrap(),
        FixedPublicKey::new(&server_key.as_ref_key()).unwrap(),
        StdRng::seed_from_u64(3),
    );
    let mut dev: FixedDevice =
        DeviceConnection::new(Instant::ZERO, DeviceConfig::new(DEVICE_ID), hs, NoFirmware);
    dev.register_function(b"brew").unwrap();
    let mut known = BTreeMap::new();
    known.insert(
        DEVICE_ID.into(),
        OpensslPublicKey::new(&k.device.public_key().as_ref_key()).unwrap(),
    );
    let cloud: OpensslCloud = CloudConnection::new(
        Instant::ZERO,
        OpensslPrivateKey::new(&k.server.as_ref_key()).unwrap(),
        known,
        StdRng::seed_from_u64(4),
        CloudConfig::default(),
    );
    let mut pair = Pair::new(cloud, dev);
    let end = Instant::from_millis(5_000);
    let out = pair.run_until(end, |p| {
        p.events_a()
            .iter()
            .any(|e| matches!(e, CloudEvent::Connected(_)))
            && p.events_b().contains(&DeviceEvent::Connected)
    });
    assert_eq!(out, Outcome::Stopped);
    let now = pair.now();
    let request = pair.a_mut().call_function(now, b"brew", b"coffee").unwrap();
    let out = pair.run_until(end, |p| {
        let call = p.take_events_b().into_iter().find_map(|e| match e {
            DeviceEvent::FunctionCall(c) => Some(c),
            _ => None,
        });
        if let Some(c) = call {
            assert_eq!(&c.argument[..], b"coffee");
            p.b_mut().function_return(c.call, 42).unwrap();
        }
        p.events_a().iter().any(|e| {
            matches!(e, CloudEvent::FunctionReturned { request: r, result: Ok(42) } if *r == request)
        })
    });
    assert_eq!(out, Outcome::Stopped);
}
