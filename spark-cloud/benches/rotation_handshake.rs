//! The server's CPU for one handshake (the credentials block's decryption and the reply's signature, the two
//! private-key operations) outside a migration window and during one, where both private keys decrypt every
//! block. The reference, measured in the same run, is the backend key on its own (what the cloud ran before
//! rotation existed); the report divides each figure by it.

use criterion::{Criterion, criterion_group, criterion_main};
use spark_cloud::devices::ServerKey;
use spark_cloud::rotation::LoadedKeys;
use spark_cloud::state::ServerKeys;
use spark_cloud::system_rng;
use spark_protocol::crypto::handshake::Nonce;
use spark_protocol::crypto::rustcrypto::RustCryptoPublicKey;
use spark_protocol::crypto::{HandshakeKeys, RsaPrivate, RsaPrivateKey, RsaPublic};

const SERVER_KEY: &str = include_str!("../tests/fixtures/server_key_2048.pem");

/// A device's credentials block for `key`: `nonce` then a device id.
fn credentials(key: &RsaPrivateKey, nonce: &[u8; 40]) -> Vec<u8> {
    let public = RustCryptoPublicKey::new(&key.public_key().as_ref_key()).unwrap();
    let mut plain = nonce.to_vec();
    plain.extend_from_slice(&[0x53; 12]);
    let mut out = vec![0u8; public.modulus_len()];
    public
        .encrypt_pkcs1v15(&mut system_rng(), &plain, &mut out)
        .unwrap();
    out
}

/// One handshake's private-key work on `key`, as the session does it: decrypt the block (knowing the nonce), sign a
/// 20-byte HMAC with the key that matched.
fn handshake<K: HandshakeKeys>(key: &K, nonce: &Nonce, block: &[u8]) {
    let mut rng = system_rng();
    let mut plain = [0u8; 512];
    let len = key
        .decrypt_credentials(&mut rng, nonce, block, &mut plain)
        .unwrap();
    assert_eq!(len, 52);
    let mut signature = [0u8; 512];
    key.signer()
        .sign_pkcs1v15_unprefixed(&mut rng, &plain[..20], &mut signature)
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let old = RsaPrivateKey::from_pem(SERVER_KEY).unwrap();
    let new = RsaPrivateKey::generate(&mut system_rng(), 2048).unwrap();
    let one = LoadedKeys::new(&ServerKeys {
        current: old.clone(),
        previous: None,
    })
    .unwrap();
    let two = LoadedKeys::new(&ServerKeys {
        current: new.clone(),
        previous: Some(old.clone()),
    })
    .unwrap();
    let mut group = c.benchmark_group("rotation_handshake");
    group.sample_size(30);

    let reference = ServerKey::new(&old.as_ref_key()).unwrap();
    let nonce = Nonce([7u8; 40]);
    let block_old = credentials(&old, &nonce.0);
    let block_new = credentials(&new, &nonce.0);
    group.bench_function("reference_backend_key", |b| {
        b.iter(|| handshake(&reference, &nonce, &block_old))
    });

    let key = one.for_connection();
    group.bench_function("outside_window", |b| {
        b.iter(|| handshake(&key, &nonce, &block_old))
    });

    let key = two.for_connection();
    group.bench_function("window_current_key", |b| {
        b.iter(|| handshake(&key, &nonce, &block_new))
    });
    group.bench_function("window_previous_key", |b| {
        b.iter(|| handshake(&key, &nonce, &block_old))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
