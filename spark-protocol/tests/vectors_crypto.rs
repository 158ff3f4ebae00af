//! The core-communication-lib vectors: the handshake fixtures (decrypt, HMAC, signature), the
//! session split, and every encrypted message opened with the right IV and sealed back to the
//! identical bytes, with both session ciphers and both RSA backends.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.
#![cfg(all(feature = "rsa", feature = "openssl"))]

mod crypto_common;

use crypto_common::{hex, rng};
use serde_json::Value;
use spark_protocol::crypto::framing::{FrameDecoder, FrameEncoder};
use spark_protocol::crypto::handshake::{open_session_key, session_key_hmac};
use spark_protocol::crypto::openssl::{OpensslAes128Cbc, OpensslPrivateKey, OpensslPublicKey};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{
    Aes128Cbc, HandshakeError, RsaPrivate, RsaPrivateKeyRef, RsaPublic, RsaPublicKeyRef,
    SessionCipher, SessionKey,
};

fn vectors() -> Value {
    let bytes = spark_vectors::load("protocol", "core-communication-lib-vectors.json");
    serde_json::from_slice(&bytes).expect("vectors JSON")
}

fn field(v: &Value, name: &str) -> Vec<u8> {
    hex(v[name]
        .as_str()
        .unwrap_or_else(|| panic!("missing field {name}")))
}

fn der_file(name: &str) -> Vec<u8> {
    spark_vectors::load("protocol", name)
}

struct FixtureKeys {
    device_der: Vec<u8>,
    server_der: Vec<u8>,
}

/// Loads a fixture's keys from the `.der` files and checks them against the JSON's copies (the
/// upstream device key is zero-padded to 612 bytes; the file is the trimmed DER).
fn fixture_keys(v: &Value, name: &str) -> FixtureKeys {
    let f = &v["fixtures"][name];
    let device_der = der_file(&format!("{name}.device_private_1024.der"));
    let server_der = der_file(&format!("{name}.server_public_2048.der"));
    assert_eq!(device_der, field(f, "device_private_key_der_1024"));
    assert_eq!(server_der, field(f, "server_public_key_der_2048"));
    assert_eq!(server_der.len(), 294);
    FixtureKeys {
        device_der,
        server_der,
    }
}

fn check_reply<DP: RsaPrivate, SP: RsaPublic>(
    device: &DP,
    server: &SP,
    reply: &[u8],
    expected: &[u8],
    hmac: &[u8],
) {
    let (ciphertext, signature) = reply.split_at(128);
    let mut plain = [0u8; 128];
    let n = device
        .decrypt_pkcs1v15(&mut rng(0), ciphertext, &mut plain)
        .unwrap();
    assert_eq!(&plain[..n], expected);
    let session = SessionKey::from_bytes(expected.try_into().unwrap());
    assert_eq!(session_key_hmac(&session, ciphertext), hmac);
    server.verify_pkcs1v15_unprefixed(hmac, signature).unwrap();
    let opened = open_session_key(device, server, &mut rng(0), reply).unwrap();
    assert_eq!(opened.as_bytes(), expected);
    // The same reply with one signature bit flipped is refused.
    let mut bad = reply.to_vec();
    bad[300] ^= 0x04;
    assert_eq!(
        open_session_key(device, server, &mut rng(0), &bad),
        Err(HandshakeError::Signature)
    );
}

fn check_fixture(v: &Value, name: &str, reply: &[u8], expected: &[u8], hmac: &[u8]) {
    let keys = fixture_keys(v, name);
    let device = RsaPrivateKeyRef::from_pkcs1_der(&keys.device_der).unwrap();
    let server = RsaPublicKeyRef::from_spki_der(&keys.server_der).unwrap();
    assert_eq!((device.bits(), server.bits()), (1024, 2048));
    // Our DER writers reproduce the upstream encodings byte for byte.
    let mut der = [0u8; 700];
    let n = device.write_pkcs1_der(&mut der).unwrap();
    assert_eq!(&der[..n], &keys.device_der[..]);
    let n = server.write_spki_der(&mut der).unwrap();
    assert_eq!(&der[..n], &keys.server_der[..]);

    let rc = (
        RustCryptoPrivateKey::new(&device).unwrap(),
        RustCryptoPublicKey::new(&server).unwrap(),
    );
    check_reply(&rc.0, &rc.1, reply, expected, hmac);
    let os = (
        OpensslPrivateKey::new(&device).unwrap(),
        OpensslPublicKey::new(&server).unwrap(),
    );
    check_reply(&os.0, &os.1, reply, expected, hmac);
}

#[spark_vectors::test]
fn handshake_fixture() {
    let v = vectors();
    let f = &v["fixtures"]["handshake_fixture"];
    let reply = [field(f, "encrypted_aes_credentials"), field(f, "signature")].concat();
    assert_eq!(reply.len(), 384);
    check_fixture(
        &v,
        "handshake_fixture",
        &reply,
        &field(f, "expected_credentials"),
        &field(f, "expected_hmac_sha1"),
    );
}

#[spark_vectors::test]
fn constructor_and_coap_fixtures_and_session_split() {
    let v = vectors();
    for name in ["constructor_fixture", "coap_fixture"] {
        let f = &v["fixtures"][name];
        let expected = field(f, "derived_session_credentials_40");
        check_fixture(
            &v,
            name,
            &field(f, "signed_encrypted_credentials_384"),
            &expected,
            &field(f, "derived_hmac_sha1"),
        );

        let session = SessionKey::from_bytes(expected.try_into().unwrap());
        assert_eq!(session.aes_key(), &field(f, "derived_aes_key")[..]);
        assert_eq!(session.iv(), &field(f, "derived_iv")[..]);
        assert_eq!(session.salt(), &field(f, "derived_salt")[..]);
        let first_id = session.message_id_seed().wrapping_add(1);
        assert_eq!(
            first_id.to_be_bytes(),
            &field(f, "derived_first_message_id_be")[..]
        );
        assert_eq!(
            [session.token_seed().wrapping_add(1)],
            &field(f, "derived_first_token")[..]
        );
    }
}

#[spark_vectors::test]
fn aes_fixture() {
    let v = vectors();
    let f = &v["fixtures"]["aes_fixture"];
    let session = SessionKey::from_bytes(field(f, "credentials_40").try_into().unwrap());
    let ciphertext = field(f, "ciphertext");
    let padded = field(f, "plaintext");
    let mut block = ciphertext.clone();
    Aes128Cbc::new(session.aes_key())
        .decrypt_cbc(&session.iv(), &mut block)
        .unwrap();
    assert_eq!(block, padded);
    let frame = [&(ciphertext.len() as u16).to_be_bytes()[..], &ciphertext].concat();
    let mut dec = session.decoder::<Aes128Cbc, _>([0u8; 64]);
    let mut out = [0u8; 64];
    let d = dec.decode(&frame, &mut out).unwrap();
    assert_eq!(&out[..d.message.unwrap()], b"Super secret message\n");
}

fn fixture_session(v: &Value, fixture: &str) -> SessionKey {
    SessionKey::from_bytes(
        field(&v["fixtures"][fixture], "derived_session_credentials_40")
            .try_into()
            .unwrap(),
    )
}

fn message_session(v: &Value, m: &Value) -> SessionKey {
    fixture_session(v, m["fixture"].as_str().unwrap())
}

fn unpadded(padded: &[u8]) -> &[u8] {
    &padded[..padded.len() - usize::from(*padded.last().unwrap())]
}

/// The ciphertext bytes of a message (after the length prefix when framed).
fn ciphertext(m: &Value) -> Vec<u8> {
    let bytes = field(m, "hex");
    if m["framed"].as_bool().unwrap() {
        bytes[2..].to_vec()
    } else {
        bytes
    }
}

/// The IV a message was encrypted with, following its `iv_rule`: the session IV, or the first
/// 16 bytes of the earlier ciphertext the rule names.
fn message_iv(messages: &[Value], m: &Value, session: &SessionKey) -> [u8; 16] {
    let rule = m["iv_rule"].as_str().unwrap();
    let file = m["file"].as_str().unwrap();
    if rule == "session_iv" {
        return session.iv();
    }
    let earlier = if let Some(at) = rule.find("line ") {
        let line: u64 = rule[at + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap();
        messages
            .iter()
            .find(|e| e["file"] == file && e["line"] == line)
    } else if rule == "first16(hello_ciphertext)" {
        messages
            .iter()
            .find(|e| e["file"] == file && e["test"] == "HandshakeSendsExpectedHello")
    } else if let Some(test) = rule
        .strip_prefix("first16(ciphertext of test ")
        .and_then(|r| r.strip_suffix(" expected)"))
    {
        messages
            .iter()
            .find(|e| e["file"] == file && e["test"] == test && e["name"] == "expected")
    } else {
        panic!("unknown iv_rule {rule:?}")
    };
    let earlier = earlier.unwrap_or_else(|| panic!("iv_rule {rule:?} names no message"));
    ciphertext(earlier)[..16].try_into().unwrap()
}

fn open_and_reseal<C: SessionCipher>(
    messages: &[Value],
    m: &Value,
    session: &SessionKey,
    plain: &[u8],
) {
    let iv = message_iv(messages, m, session);
    let wire = field(m, "hex");
    let ct = ciphertext(m);
    let what = format!("{}:{}", m["file"], m["line"]);

    // Open through the streaming decoder, one byte at a time.
    let frame = [&(ct.len() as u16).to_be_bytes()[..], &ct].concat();
    let mut dec = FrameDecoder::new(C::new(session.aes_key()), iv, vec![0u8; 1024]);
    let mut out = [0u8; 1024];
    let mut opened = None;
    for byte in &frame {
        let d = dec.decode(std::slice::from_ref(byte), &mut out).unwrap();
        assert_eq!(d.consumed, 1);
        opened = opened.or(d.message);
    }
    assert_eq!(
        &out[..opened.unwrap_or_else(|| panic!("{what}: no message"))],
        plain,
        "{what}"
    );
    assert_eq!(
        dec.next_iv(),
        &ct[..16],
        "{what}: next IV is the first ciphertext block"
    );

    // Seal back: identical bytes, framed or not.
    let mut enc = FrameEncoder::new(C::new(session.aes_key()), iv);
    let mut sealed = [0u8; 1024];
    let n = enc.seal(plain, &mut sealed).unwrap();
    if m["framed"].as_bool().unwrap() {
        assert_eq!(&sealed[..n], &wire[..], "{what}");
    } else {
        assert_eq!(&sealed[2..n], &wire[..], "{what}");
    }
    assert_eq!(enc.next_iv(), &ct[..16]);
}

#[spark_vectors::test]
fn every_encrypted_message() {
    let v = vectors();
    let messages = v["encrypted_messages"].as_array().unwrap();
    let mut count = 0;
    for m in messages {
        if m["iv_rule"].as_str().unwrap().starts_with("none") {
            continue;
        }
        let mut session = message_session(&v, m);
        let padded = field(m, "derived_plaintext_padded");
        let plain;
        if m["note"]
            .as_str()
            .is_some_and(|n| n.contains("coap_fixture key"))
        {
            // TestSparkProtocol.cpp:60 reuses TestCoAP.cpp:323's bytes: under its own fixture's
            // key it is noise with bad padding (the JSON records that noise) ...
            let mut noise = ciphertext(m);
            Aes128Cbc::new(session.aes_key())
                .decrypt_cbc(&session.iv(), &mut noise)
                .unwrap();
            assert_eq!(noise, padded);
            let mut dec = session.decoder::<Aes128Cbc, _>([0u8; 64]);
            let mut out = [0u8; 64];
            assert_eq!(
                dec.decode(&field(m, "hex"), &mut out),
                Err(spark_protocol::crypto::FrameError::BadPadding)
            );
            // ... and under the TestCoAP key it is that test's Describe request.
            session = fixture_session(&v, "coap_fixture");
            let twin = messages
                .iter()
                .find(|e| e["file"] == "tests/TestCoAP.cpp" && e["line"] == 323)
                .unwrap();
            plain = unpadded(&field(twin, "derived_plaintext_padded")).to_vec();
        } else {
            plain = unpadded(&padded).to_vec();
        }
        open_and_reseal::<Aes128Cbc>(messages, m, &session, &plain);
        open_and_reseal::<OpensslAes128Cbc>(messages, m, &session, &plain);
        count += 1;
    }
    assert_eq!(count, 53, "all 53 encrypted upstream messages");
}

#[spark_vectors::test]
fn a_chained_message_does_not_open_with_the_session_iv() {
    // Guards the IV rule itself: a message encrypted under a chained IV must not decrypt to its
    // plaintext under the session IV (its first block differs).
    let v = vectors();
    let messages = v["encrypted_messages"].as_array().unwrap();
    let m = messages.iter().find(|m| m["line"] == 134).unwrap();
    let session = message_session(&v, m);
    let mut ct = ciphertext(m);
    Aes128Cbc::new(session.aes_key())
        .decrypt_cbc(&session.iv(), &mut ct)
        .unwrap();
    assert_ne!(ct, field(m, "derived_plaintext_padded"));
}
