//! What the two cloud-session targets share: sealing device frames, and the loop that feeds an established
//! `CloudConnection` the fuzzer's operations (sealed messages, raw bytes, timer runs, application requests) and
//! checks that it never panics and keeps its error once ended.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{Aes128Cbc, FrameEncoder};
use spark_protocol::session::cloud::{CloudConnection, OtaOptions};
use spark_protocol::session::{Connection, Instant};
use spark_protocol::wire::describe::VarType;

/// The cloud side as both targets build it.
pub type Cloud<'a> = CloudConnection<
    &'a RustCryptoPrivateKey,
    BTreeMap<spark_protocol::DeviceId, &'a RustCryptoPublicKey>,
    StdRng,
>;

/// The device's Hello (product 6, firmware 1), as a Core sends it after the handshake.
pub const HELLO: &[u8] = b"\x50\x02\x00\x01\xb1\x68\xff\x00\x06\x00\x01\x00\x00";

/// `plain` sealed as one frame of the device's channel.
pub fn seal(enc: &mut FrameEncoder<Aes128Cbc>, plain: &[u8]) -> Vec<u8> {
    let mut out = vec![0; plain.len() + 18];
    let n = enc.seal(plain, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Runs the fuzzer's operations (`[op, len, body...]*`) against an established session.
pub fn drive(cloud: &mut Cloud<'_>, enc: &mut FrameEncoder<Aes128Cbc>, data: &[u8]) {
    let mut now = Instant::ZERO;
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let result = match op % 8 {
            0..=2 => {
                let frame = seal(enc, body);
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
}
