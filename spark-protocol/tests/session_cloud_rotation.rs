//! The server-key hook of the cloud's handshake ([`HandshakeKeys`]) and the two-key holder of a rotation's
//! migration window ([`MigrationKeys`]): the nonce reaches the holder, the holder keeps the decryption that carries
//! it and signs with that key, every block costs both decryptions, and a block that matches neither key fails as
//! any bad block does.
#![allow(missing_docs)]

#[path = "crypto_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use common::{openssl_key, rng};
use rand::rngs::StdRng;
use rand_core::CryptoRng;
use spark_protocol::DeviceId;
use spark_protocol::crypto::handshake::{
    decrypt_device_credentials, encrypt_device_credentials, open_session_key,
};
use spark_protocol::crypto::openssl::{OpensslPrivateKey, OpensslPublicKey};
use spark_protocol::crypto::{
    HandshakeError, HandshakeKeys, MigrationKeys, Nonce, RsaError, RsaPrivate, RsaPrivateKey,
};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection};
use spark_protocol::session::{Connection, Instant, SessionError};

const ID: [u8; 12] = *b"\x53\xff\x6f\x06\x50\x75\x53\x50\x44\x29\x02\x87";

struct Keys {
    old: RsaPrivateKey,
    new: RsaPrivateKey,
    /// A key the cloud never held.
    stranger: RsaPrivateKey,
    small: RsaPrivateKey,
    device: OpensslPrivateKey,
    device_pub: OpensslPublicKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let device = openssl_key(1024);
        Keys {
            old: openssl_key(2048),
            new: openssl_key(2048),
            stranger: openssl_key(2048),
            device: OpensslPrivateKey::new(&device.as_ref_key()).unwrap(),
            device_pub: OpensslPublicKey::new(&device.public_key().as_ref_key()).unwrap(),
            small: device,
        }
    })
}

fn public(key: &RsaPrivateKey) -> OpensslPublicKey {
    OpensslPublicKey::new(&key.public_key().as_ref_key()).unwrap()
}

/// A server key that counts its private operations.
#[derive(Clone)]
struct Counted {
    key: OpensslPrivateKey,
    decryptions: Arc<AtomicUsize>,
}

impl Counted {
    fn new(key: &RsaPrivateKey, decryptions: &Arc<AtomicUsize>) -> Counted {
        Counted {
            key: OpensslPrivateKey::new(&key.as_ref_key()).unwrap(),
            decryptions: Arc::clone(decryptions),
        }
    }
}

impl RsaPrivate for Counted {
    fn modulus_len(&self) -> usize {
        self.key.modulus_len()
    }

    fn decrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        self.decryptions.fetch_add(1, Ordering::SeqCst);
        self.key.decrypt_pkcs1v15(rng, ciphertext, out)
    }

    fn sign_pkcs1v15_unprefixed<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        self.key.sign_pkcs1v15_unprefixed(rng, message, out)
    }
}

/// The window's keys (new current, old previous) and their shared decryption counter.
fn window() -> (MigrationKeys<Counted>, Arc<AtomicUsize>) {
    let k = keys();
    let count = Arc::new(AtomicUsize::new(0));
    let keys = MigrationKeys::new(
        Counted::new(&k.new, &count),
        Some(Counted::new(&k.old, &count)),
    )
    .unwrap();
    (keys, count)
}

/// The device's credentials block for `nonce`, encrypted with `server`'s public key.
fn credentials(server: &RsaPrivateKey, nonce: &Nonce, seed: u64) -> [u8; 256] {
    let mut creds = [0u8; 256];
    encrypt_device_credentials(
        &public(server),
        &mut rng(seed),
        nonce,
        &ID,
        None,
        &mut creds,
    )
    .unwrap();
    creds
}

#[test]
fn the_holder_keeps_the_decryption_that_carries_the_nonce() {
    let k = keys();
    let (keys, count) = window();
    let nonce = Nonce([0x11; 40]);
    assert!(keys.window_open());
    assert!(!keys.used_previous());

    let got =
        decrypt_device_credentials(&keys, &mut rng(1), &nonce, &credentials(&k.old, &nonce, 2))
            .unwrap();
    assert_eq!(got.device_id, ID);
    assert!(keys.used_previous(), "the block was made for the old key");
    assert!(std::ptr::eq(keys.signer(), keys.previous().unwrap()));
    assert_eq!(
        count.swap(0, Ordering::SeqCst),
        2,
        "both keys decrypt every block"
    );

    let got =
        decrypt_device_credentials(&keys, &mut rng(3), &nonce, &credentials(&k.new, &nonce, 4))
            .unwrap();
    assert_eq!(got.device_id, ID);
    assert!(!keys.used_previous(), "the block was made for the new key");
    assert!(std::ptr::eq(keys.signer(), keys.current()));
    assert_eq!(
        count.swap(0, Ordering::SeqCst),
        2,
        "both keys decrypt every block"
    );
}

#[test]
fn a_block_that_matches_neither_key_fails_as_any_bad_block_does() {
    let k = keys();
    let nonce = Nonce([0x22; 40]);
    let other = Nonce([0x23; 40]);
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "a key the cloud never held",
            credentials(&k.stranger, &nonce, 5).to_vec(),
        ),
        (
            "the old key, another nonce",
            credentials(&k.old, &other, 6).to_vec(),
        ),
        (
            "the new key, another nonce",
            credentials(&k.new, &other, 7).to_vec(),
        ),
        ("bytes that are no block", vec![0x5a; 256]),
    ];
    // What one key alone answers to a bad block: the refusal every bad handshake gets.
    let single = OpensslPrivateKey::new(&k.new.as_ref_key()).unwrap();
    let expected =
        decrypt_device_credentials(&single, &mut rng(8), &nonce, &cases[0].1).map(|c| c.device_id);
    assert_eq!(expected, Err(HandshakeError::Authentication));
    for (what, block) in &cases {
        let (keys, count) = window();
        // A handshake on the old key first, so that a stale choice would show.
        decrypt_device_credentials(&keys, &mut rng(9), &nonce, &credentials(&k.old, &nonce, 10))
            .unwrap();
        count.store(0, Ordering::SeqCst);
        let got = decrypt_device_credentials(&keys, &mut rng(11), &nonce, block);
        assert_eq!(got.map(|c| c.device_id), expected, "{what}");
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "{what}: both keys decrypted it"
        );
        assert!(!keys.used_previous(), "{what}: no key is recorded as used");
    }
}

#[test]
fn keys_of_different_sizes_do_not_make_a_window() {
    let k = keys();
    let count = Arc::new(AtomicUsize::new(0));
    let made = MigrationKeys::new(
        Counted::new(&k.new, &count),
        Some(Counted::new(&k.small, &count)),
    );
    assert_eq!(made.map(|_| ()), Err(RsaError::InvalidKey));
    let alone = MigrationKeys::new(Counted::new(&k.new, &count), None).unwrap();
    assert!(!alone.window_open());
}

type Cloud<S> = CloudConnection<S, BTreeMap<DeviceId, &'static OpensslPublicKey>, StdRng>;

/// Runs the cloud's handshake against a device holding `server`'s public key, which must accept the reply (the
/// server's signature verifies with that key); returns the cloud's session.
fn handshake<S: HandshakeKeys>(
    server_key: S,
    server: &RsaPrivateKey,
) -> Result<Cloud<S>, SessionError> {
    let k = keys();
    let mut store = BTreeMap::new();
    store.insert(ID.into(), &k.device_pub);
    let mut cloud = CloudConnection::new(
        Instant::ZERO,
        server_key,
        store,
        rng(12),
        CloudConfig::default(),
    );
    let mut buf = vec![0; 1024];
    let n = cloud.poll_transmit(Instant::ZERO, &mut buf)?.unwrap();
    assert_eq!(n, 40);
    let nonce = Nonce(buf[..40].try_into().unwrap());
    cloud.handle_input(Instant::ZERO, &credentials(server, &nonce, 13))?;
    let n = cloud.poll_transmit(Instant::ZERO, &mut buf)?.unwrap();
    assert_eq!(n, 384);
    open_session_key(&k.device, &public(server), &mut rng(14), &buf[..n])
        .expect("the reply is signed with the key the device holds");
    Ok(cloud)
}

#[test]
fn the_session_accepts_either_key_in_the_window_and_signs_with_the_one_used() {
    let k = keys();
    for (server, on_previous) in [(&k.old, true), (&k.new, false)] {
        let (keys, count) = window();
        let cloud = handshake(keys, server).unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // What the holder recorded is read back through the session.
        assert_eq!(cloud.server_key().used_previous(), on_previous);
    }
    let (keys, _) = window();
    assert_eq!(
        handshake(keys, &k.stranger).map(drop),
        Err(SessionError::Authentication(HandshakeError::Authentication))
    );
}

#[test]
fn a_single_key_works_as_before_with_one_decryption() {
    let k = keys();
    let count = Arc::new(AtomicUsize::new(0));
    handshake(Counted::new(&k.new, &count), &k.new).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // After retirement (one key again) a device on the old key is refused, as by any single key.
    assert_eq!(
        handshake(Counted::new(&k.new, &count), &k.old).map(drop),
        Err(SessionError::Authentication(HandshakeError::Authentication))
    );
}
