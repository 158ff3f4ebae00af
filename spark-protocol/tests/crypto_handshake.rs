//! The whole handshake with freshly generated keys, both roles, every pairing of backends, and
//! every way a hostile or broken peer can get it wrong.
#![cfg(feature = "rsa")]

mod crypto_common;

use crypto_common::{openssl_key, rng};
use spark_protocol::crypto::framing::sealed_len;
use spark_protocol::crypto::handshake::{
    DEVICE_ID_LEN, SESSION_REPLY_LEN, decrypt_device_credentials, encrypt_device_credentials,
    open_session_key, seal_session_key,
};
use spark_protocol::crypto::keys::DEVICE_PUBLIC_KEY_DER_LEN;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{
    Aes128Cbc, HandshakeError, Nonce, RsaPrivate, RsaPrivateKey, RsaPublic, SessionCipher,
    SessionKey,
};
use std::sync::OnceLock;

const DEVICE_ID: [u8; DEVICE_ID_LEN] = [
    0x53, 0xff, 0x6c, 0x06, 0x50, 0x67, 0x55, 0x49, 0x23, 0x40, 0x12, 0x87,
];

struct Keys {
    server: RsaPrivateKey,
    device: RsaPrivateKey,
}

/// The server key comes from `openssl genrsa`; the device key from our generator (caller's RNG).
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        server: openssl_key(2048),
        device: RsaPrivateKey::generate(&mut rng(1), 1024).expect("generate a device key"),
    })
}

/// Runs both roles and then one message each way through the framing.
fn handshake<SPub, SPriv, DPub, DPriv, DC, CC>(
    server_pub: &SPub,
    server_priv: &SPriv,
    device_pub: &DPub,
    device_priv: &DPriv,
    append_key: Option<&[u8]>,
    seed: u64,
) where
    SPub: RsaPublic,
    SPriv: RsaPrivate,
    DPub: RsaPublic,
    DPriv: RsaPrivate,
    DC: SessionCipher,
    CC: SessionCipher,
{
    let mut cloud_rng = rng(seed);
    let mut device_rng = rng(seed + 1000);

    let nonce = Nonce::generate(&mut cloud_rng);
    let mut creds = [0u8; 256];
    let n = encrypt_device_credentials(
        server_pub,
        &mut device_rng,
        &nonce,
        &DEVICE_ID,
        append_key,
        &mut creds,
    )
    .expect("device encrypts its credentials");
    assert_eq!(n, 256);
    let got = decrypt_device_credentials(server_priv, &mut cloud_rng, &nonce, &creds)
        .expect("cloud accepts");
    assert_eq!(got.device_id, DEVICE_ID);
    assert_eq!(got.public_key_der(), append_key);
    if append_key.is_some() {
        let parsed = got.public_key().unwrap().unwrap();
        assert_eq!(parsed, keys().device.public_key().as_ref_key());
    }

    let session = SessionKey::generate(&mut cloud_rng);
    let mut reply = [0u8; SESSION_REPLY_LEN];
    assert_eq!(
        seal_session_key(
            device_pub,
            server_priv,
            &mut cloud_rng,
            &session,
            &mut reply
        ),
        Ok(384)
    );
    let opened =
        open_session_key(device_priv, server_pub, &mut device_rng, &reply).expect("device accepts");
    assert_eq!(opened, session);

    // Device -> cloud and cloud -> device, three messages each so the IV chain is exercised.
    let mut device_tx = opened.encoder::<DC>();
    let mut cloud_rx = session.decoder::<CC, _>(vec![0u8; 1024]);
    let mut cloud_tx = session.encoder::<CC>();
    let mut device_rx = opened.decoder::<DC, _>([0u8; 640]);
    for (i, msg) in [
        &b"\x50\x02\x97\xb2\xb1\x68\xff\xff\xff\xff\xff\x00\x00"[..],
        &[7u8; 16],
        &[9u8; 200],
    ]
    .into_iter()
    .enumerate()
    {
        let mut frame = [0u8; 512];
        let mut out = [0u8; 512];
        let n = device_tx.seal(msg, &mut frame).unwrap();
        assert_eq!(n, sealed_len(msg.len()));
        let d = cloud_rx.decode(&frame[..n], &mut out).unwrap();
        assert_eq!(
            (d.consumed, d.message),
            (n, Some(msg.len())),
            "message {i} device->cloud"
        );
        assert_eq!(&out[..msg.len()], msg);
        let n = cloud_tx.seal(msg, &mut frame).unwrap();
        let d = device_rx.decode(&frame[..n], &mut out).unwrap();
        assert_eq!(d.message, Some(msg.len()), "message {i} cloud->device");
        assert_eq!(&out[..msg.len()], msg);
    }
}

fn rustcrypto_keys() -> (
    RustCryptoPublicKey,
    RustCryptoPrivateKey,
    RustCryptoPublicKey,
    RustCryptoPrivateKey,
) {
    let k = keys();
    (
        RustCryptoPublicKey::new(&k.server.public_key().as_ref_key()).unwrap(),
        RustCryptoPrivateKey::new(&k.server.as_ref_key()).unwrap(),
        RustCryptoPublicKey::new(&k.device.public_key().as_ref_key()).unwrap(),
        RustCryptoPrivateKey::new(&k.device.as_ref_key()).unwrap(),
    )
}

#[test]
fn rustcrypto_both_roles() {
    let (sp, ss, dp, ds) = rustcrypto_keys();
    handshake::<_, _, _, _, Aes128Cbc, Aes128Cbc>(&sp, &ss, &dp, &ds, None, 1);
}

#[test]
fn device_may_append_its_public_key() {
    let (sp, ss, dp, ds) = rustcrypto_keys();
    let der = keys().device.public_key().to_spki_der();
    assert_eq!(der.len(), DEVICE_PUBLIC_KEY_DER_LEN);
    handshake::<_, _, _, _, Aes128Cbc, Aes128Cbc>(&sp, &ss, &dp, &ds, Some(&der), 2);
}

#[test]
fn generation_draws_only_from_the_callers_rng() {
    let a = RsaPrivateKey::generate(&mut rng(77), 1024).unwrap();
    let b = RsaPrivateKey::generate(&mut rng(77), 1024).unwrap();
    let c = RsaPrivateKey::generate(&mut rng(78), 1024).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.bits(), 1024);
    let storage = a.to_storage().unwrap();
    assert_eq!(storage.len(), 612);
    assert_eq!(RsaPrivateKey::from_storage(&storage).unwrap(), a);
    let text = format!("{a:?}");
    assert!(text.contains("1024") && text.len() < 80, "{text}");
}

#[cfg(feature = "openssl")]
mod with_openssl {
    use super::*;
    use spark_protocol::crypto::openssl::{OpensslAes128Cbc, OpensslPrivateKey, OpensslPublicKey};

    fn openssl_keys() -> (
        OpensslPublicKey,
        OpensslPrivateKey,
        OpensslPublicKey,
        OpensslPrivateKey,
    ) {
        let k = keys();
        (
            OpensslPublicKey::new(&k.server.public_key().as_ref_key()).unwrap(),
            OpensslPrivateKey::new(&k.server.as_ref_key()).unwrap(),
            OpensslPublicKey::new(&k.device.public_key().as_ref_key()).unwrap(),
            OpensslPrivateKey::new(&k.device.as_ref_key()).unwrap(),
        )
    }

    #[test]
    fn openssl_both_roles() {
        let (sp, ss, dp, ds) = openssl_keys();
        handshake::<_, _, _, _, OpensslAes128Cbc, OpensslAes128Cbc>(&sp, &ss, &dp, &ds, None, 3);
    }

    #[test]
    fn rustcrypto_device_openssl_cloud() {
        let (rsp, _, _, rds) = rustcrypto_keys();
        let (_, oss, odp, _) = openssl_keys();
        handshake::<_, _, _, _, Aes128Cbc, OpensslAes128Cbc>(&rsp, &oss, &odp, &rds, None, 4);
    }

    #[test]
    fn openssl_device_rustcrypto_cloud() {
        let (_, rss, rdp, _) = rustcrypto_keys();
        let (osp, _, _, ods) = openssl_keys();
        handshake::<_, _, _, _, OpensslAes128Cbc, Aes128Cbc>(&osp, &rss, &rdp, &ods, None, 5);
    }

    #[test]
    fn both_backends_sign_identically() {
        // PKCS#1 v1.5 type 1 is deterministic: the two backends must agree byte for byte.
        let (_, rss, _, _) = rustcrypto_keys();
        let (osp, oss, _, _) = openssl_keys();
        let hmac = [0x34u8; 20];
        let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
        rss.sign_pkcs1v15_unprefixed(&mut rng(1), &hmac, &mut a)
            .unwrap();
        oss.sign_pkcs1v15_unprefixed(&mut rng(1), &hmac, &mut b)
            .unwrap();
        assert_eq!(a, b);
        osp.verify_pkcs1v15_unprefixed(&hmac, &a).unwrap();
    }

    #[test]
    fn openssl_cloud_refuses_bad_credentials() {
        let (_, oss, _, _) = openssl_keys();
        let (rsp, ..) = rustcrypto_keys();
        cloud_refuses_bad_credentials(&rsp, &oss);
    }
}

fn cloud_refuses_bad_credentials<SPub: RsaPublic, SPriv: RsaPrivate>(
    server_pub: &SPub,
    server_priv: &SPriv,
) {
    let mut r = rng(9);
    let nonce = Nonce::generate(&mut r);
    let mut creds = [0u8; 256];
    encrypt_device_credentials(server_pub, &mut r, &nonce, &DEVICE_ID, None, &mut creds).unwrap();

    // Another nonce (a replay from an earlier connection).
    let other = Nonce::generate(&mut r);
    assert_eq!(
        decrypt_device_credentials(server_priv, &mut r, &other, &creds).map(|_| ()),
        Err(HandshakeError::Authentication)
    );
    // Tampering anywhere in the block.
    for at in [0usize, 1, 100, 255] {
        let mut bad = creds;
        bad[at] ^= 0x01;
        assert!(
            matches!(
                decrypt_device_credentials(server_priv, &mut r, &nonce, &bad),
                Err(HandshakeError::Authentication | HandshakeError::Rsa(_))
            ),
            "tampered at {at}"
        );
    }
    // Every truncation and an oversized block.
    for len in 0..creds.len() {
        assert_eq!(
            decrypt_device_credentials(server_priv, &mut r, &nonce, &creds[..len]).map(|_| ()),
            Err(HandshakeError::BadLength { len, expected: 256 })
        );
    }
    let long = [creds.as_slice(), &[0]].concat();
    assert_eq!(
        decrypt_device_credentials(server_priv, &mut r, &nonce, &long).map(|_| ()),
        Err(HandshakeError::BadLength {
            len: 257,
            expected: 256
        })
    );
    // Too short a plaintext (a nonce alone, no device id).
    let mut short = [0u8; 256];
    server_pub
        .encrypt_pkcs1v15(&mut r, &nonce.0, &mut short)
        .unwrap();
    assert_eq!(
        decrypt_device_credentials(server_priv, &mut r, &nonce, &short).map(|_| ()),
        Err(HandshakeError::Authentication)
    );
    // Encrypted for another server.
    let stranger = RustCryptoPublicKey::new(&keys().device.public_key().as_ref_key()).unwrap();
    let mut wrong = [0u8; 128];
    encrypt_device_credentials(&stranger, &mut r, &nonce, &DEVICE_ID, None, &mut wrong).unwrap();
    assert!(decrypt_device_credentials(server_priv, &mut r, &nonce, &wrong).is_err());
}

#[test]
fn rustcrypto_cloud_refuses_bad_credentials() {
    let (sp, ss, _, _) = rustcrypto_keys();
    cloud_refuses_bad_credentials(&sp, &ss);
}

#[test]
fn device_refuses_a_bad_reply() {
    let (sp, ss, dp, ds) = rustcrypto_keys();
    let mut r = rng(11);
    let session = SessionKey::generate(&mut r);
    let mut reply = [0u8; SESSION_REPLY_LEN];
    seal_session_key(&dp, &ss, &mut r, &session, &mut reply).unwrap();
    assert_eq!(
        open_session_key(&ds, &sp, &mut r, &reply).as_ref(),
        Ok(&session)
    );

    // Tampered session ciphertext: implicit rejection yields some plaintext, the signature
    // check then fails (or the plaintext is not 40 bytes).
    for at in [0usize, 64, 127] {
        let mut bad = reply;
        bad[at] ^= 0x80;
        assert!(
            matches!(
                open_session_key(&ds, &sp, &mut r, &bad),
                Err(HandshakeError::Signature | HandshakeError::SessionKey)
            ),
            "tampered ciphertext at {at}"
        );
    }
    // Tampered signature.
    for at in [128usize, 200, 383] {
        let mut bad = reply;
        bad[at] ^= 0x01;
        assert_eq!(
            open_session_key(&ds, &sp, &mut r, &bad),
            Err(HandshakeError::Signature),
            "signature at {at}"
        );
    }
    // A signature over another HMAC (the right key signing the wrong thing).
    let mut forged = reply;
    let mut sig = [0u8; 256];
    ss.sign_pkcs1v15_unprefixed(&mut r, &[0u8; 20], &mut sig)
        .unwrap();
    forged[128..].copy_from_slice(&sig);
    assert_eq!(
        open_session_key(&ds, &sp, &mut r, &forged),
        Err(HandshakeError::Signature)
    );
    // Signed by another server key.
    let impostor = RustCryptoPrivateKey::new(&openssl_key(2048).as_ref_key());
    let mut other = [0u8; SESSION_REPLY_LEN];
    seal_session_key(&dp, &impostor.unwrap(), &mut r, &session, &mut other).unwrap();
    assert_eq!(
        open_session_key(&ds, &sp, &mut r, &other),
        Err(HandshakeError::Signature)
    );
    // Encrypted for another device.
    let stranger = RsaPrivateKey::generate(&mut rng(13), 1024).unwrap();
    let stranger_priv = RustCryptoPrivateKey::new(&stranger.as_ref_key()).unwrap();
    assert!(matches!(
        open_session_key(&stranger_priv, &sp, &mut r, &reply),
        Err(HandshakeError::Signature | HandshakeError::SessionKey)
    ));
    // Every truncation, and one byte too many.
    for len in 0..reply.len() {
        assert_eq!(
            open_session_key(&ds, &sp, &mut r, &reply[..len]),
            Err(HandshakeError::BadLength { len, expected: 384 })
        );
    }
    let long = [reply.as_slice(), &[0]].concat();
    assert_eq!(
        open_session_key(&ds, &sp, &mut r, &long),
        Err(HandshakeError::BadLength {
            len: 385,
            expected: 384
        })
    );
    // The cloud's reply buffer must hold 384 bytes.
    let mut small = [0u8; 383];
    assert!(matches!(
        seal_session_key(&dp, &ss, &mut r, &session, &mut small),
        Err(HandshakeError::Rsa(
            spark_protocol::crypto::RsaError::InsufficientSize { required: 384 }
        ))
    ));
}
