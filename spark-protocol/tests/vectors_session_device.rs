//! The device session's RSA handshake against core-communication-lib's recorded handshake fixture.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{
    Aes128Cbc, FrameDecoder, HandshakeError, RsaPrivateKey, RsaPublicKeyRef, SessionKey,
};
use spark_protocol::session::device::{DeviceConfig, DeviceConnection, NoFirmware, RsaHandshake};
use spark_protocol::session::{Connection, Instant, SessionError};
use spark_protocol::wire::Repr;

const DEVICE_ID: [u8; 12] = *b"\x1a\x11\x8a\xd1\xc8\x86\xd5\x42\x40\xce\x4b\x17";

type RsaDev =
    DeviceConnection<NoFirmware, RsaHandshake<RustCryptoPrivateKey, RustCryptoPublicKey, StdRng>>;

fn rsa_device(device: &RsaPrivateKey, server_pub: RsaPublicKeyRef<'_>) -> RsaDev {
    let hs = RsaHandshake::new(
        RustCryptoPrivateKey::new(&device.as_ref_key()).unwrap(),
        RustCryptoPublicKey::new(&server_pub).unwrap(),
        StdRng::seed_from_u64(5),
    );
    DeviceConnection::new(Instant::ZERO, DeviceConfig::new(DEVICE_ID), hs, NoFirmware)
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Every plaintext message the device has to send, opened as the cloud opens them.
fn recv(session: &SessionKey, dev: &mut RsaDev, now: Instant) -> Vec<Vec<u8>> {
    let mut dec: FrameDecoder<Aes128Cbc, Vec<u8>> = session.decoder(vec![0; 4096]);
    let mut out = Vec::new();
    let mut buf = vec![0; dev.max_transmit_len()];
    while let Some(n) = dev.poll_transmit(now, &mut buf).unwrap() {
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let mut plain = vec![0; 4096];
            let d = dec.decode(rest, &mut plain).unwrap();
            rest = &rest[d.consumed..];
            if let Some(len) = d.message {
                out.push(plain[..len].to_vec());
            }
        }
    }
    out
}

/// The device side of the handshake fed core-communication-lib's fixture: its nonce, then the server's
/// recorded reply; a forged signature is refused for good; the session that follows is the expected one.
#[spark_vectors::test]
fn handshake_with_the_core_vectors() {
    let bytes = spark_vectors::load("protocol", "core-communication-lib-vectors.json");
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let fx = &v["fixtures"]["handshake_fixture"];
    let hex = |name: &str| -> Vec<u8> {
        let t = fx[name].as_str().unwrap();
        (0..t.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap())
            .collect()
    };
    let device = RsaPrivateKey::from_der(&spark_vectors::load(
        "protocol",
        "handshake_fixture.device_private_1024.der",
    ))
    .unwrap();
    let server_der = spark_vectors::load("protocol", "handshake_fixture.server_public_2048.der");
    let server = RsaPublicKeyRef::from_der(&server_der).unwrap();
    let mut dev = rsa_device(&device, server);
    dev.handle_input(at(0), &hex("nonce")).unwrap();
    let mut buf = [0u8; 700];
    assert_eq!(dev.poll_transmit(at(0), &mut buf).unwrap(), Some(256));
    let mut reply = hex("encrypted_aes_credentials");
    reply.extend(hex("signature"));
    // A flipped signature bit is refused and sticks.
    let mut bad = rsa_device(&device, server);
    bad.handle_input(at(0), &hex("nonce")).unwrap();
    bad.poll_transmit(at(0), &mut buf).unwrap();
    let mut forged = reply.clone();
    forged[383] ^= 1;
    assert_eq!(
        bad.handle_input(at(0), &forged),
        Err(SessionError::Authentication(HandshakeError::Signature))
    );
    assert_eq!(
        bad.handle_input(at(0), &[0]),
        Err(SessionError::Authentication(HandshakeError::Signature))
    );
    dev.handle_input(at(0), &reply).unwrap();
    let expected: [u8; 40] = hex("expected_credentials").try_into().unwrap();
    let session = SessionKey::from_bytes(expected);
    let msgs = recv(&session, &mut dev, at(0));
    let repr = Repr::parse_bytes(&msgs[0]).unwrap();
    assert_eq!(repr.message_id, session.message_id_seed().wrapping_add(1));
}
