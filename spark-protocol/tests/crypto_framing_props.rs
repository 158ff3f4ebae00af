//! Property tests: the streaming decoder under arbitrary splits of arbitrary message sequences,
//! arbitrary bytes into every parser, and key encodings round-tripping.

use proptest::prelude::*;
use spark_protocol::crypto::framing::{FrameDecoder, FrameEncoder, FrameError, sealed_len};
use spark_protocol::crypto::keys::{ServerKeyRecord, device_private_key_from_storage, pem_decode};
use spark_protocol::crypto::{Aes128Cbc, RsaPrivateKeyRef, RsaPublicKeyRef, SessionCipher};

const KEY: [u8; 16] = *b"0123456789abcdef";
const IV: [u8; 16] = *b"fedcba9876543210";

fn seal_all(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = FrameEncoder::new(Aes128Cbc::new(&KEY), IV);
    let mut wire = Vec::new();
    for m in messages {
        let mut frame = vec![0u8; sealed_len(m.len())];
        assert_eq!(enc.seal(m, &mut frame), Ok(frame.len()));
        wire.extend_from_slice(&frame);
    }
    wire
}

/// Feeds `wire` in pieces cut at `cuts` and returns every message the decoder yields.
fn open_all(wire: &[u8], cuts: &[usize]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut dec = FrameDecoder::new(Aes128Cbc::new(&KEY), IV, vec![0u8; 640]);
    let mut out = [0u8; 640];
    let mut got = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c % (wire.len() + 1)).collect();
    bounds.push(0);
    bounds.push(wire.len());
    bounds.sort_unstable();
    for piece in bounds.windows(2).map(|w| &wire[w[0]..w[1]]) {
        let mut rest = piece;
        loop {
            let d = dec.decode(rest, &mut out)?;
            if let Some(len) = d.message {
                got.push(out[..len].to_vec());
            }
            rest = &rest[d.consumed..];
            if rest.is_empty() && d.message.is_none() {
                break;
            }
        }
    }
    assert!(dec.is_idle());
    Ok(got)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_split_yields_every_message(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let wire = seal_all(&messages);
        prop_assert_eq!(open_all(&wire, &cuts), Ok(messages));
    }

    #[test]
    fn any_bytes_never_panic_the_decoder(input in prop::collection::vec(any::<u8>(), 0..2000), step in 1usize..64) {
        let mut dec = FrameDecoder::new(Aes128Cbc::new(&KEY), IV, [0u8; 640]);
        let mut out = [0u8; 640];
        for chunk in input.chunks(step) {
            let mut rest = chunk;
            while !rest.is_empty() {
                match dec.decode(rest, &mut out) {
                    Ok(d) => {
                        if let Some(len) = d.message { prop_assert!(len < 640); }
                        if d.consumed == 0 && d.message.is_none() { break; }
                        rest = &rest[d.consumed..];
                    }
                    // A failed decoder stays failed.
                    Err(e) => {
                        prop_assert_eq!(dec.decode(rest, &mut out), Err(e));
                        return Ok(());
                    }
                }
            }
        }
    }

    #[test]
    fn a_flipped_ciphertext_bit_never_yields_the_original(
        message in prop::collection::vec(any::<u8>(), 1..100),
        bit in any::<usize>(),
    ) {
        let mut wire = seal_all(std::slice::from_ref(&message));
        let body = wire.len() - 2;
        let at = 2 + (bit / 8) % body;
        wire[at] ^= 1 << (bit % 8);
        match open_all(&wire, &[]) {
            Ok(got) => prop_assert_ne!(got, vec![message]),
            Err(e) => prop_assert_eq!(e, FrameError::BadPadding),
        }
    }

    #[test]
    fn any_bytes_never_panic_the_key_parsers(input in prop::collection::vec(any::<u8>(), 0..700)) {
        let _ = RsaPublicKeyRef::from_der(&input);
        let _ = RsaPrivateKeyRef::from_der(&input);
        let _ = ServerKeyRecord::parse(&input);
        let _ = device_private_key_from_storage(&input);
        let text = String::from_utf8_lossy(&input);
        let _ = pem_decode(&text, &mut [0u8; 700]);
    }

    #[test]
    fn key_encodings_round_trip(
        parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..70), 8),
    ) {
        // Odd modulus, exponent and primes, every part non-zero: the shapes a key view accepts.
        let mut parts = parts;
        for p in &mut parts {
            *p.last_mut().unwrap() |= 1;
        }
        // Make the modulus the longest part with a non-zero top byte.
        let longest = parts.iter().map(Vec::len).max().unwrap();
        parts[0].resize(longest, 0xff);
        parts[0][0] |= 0x80;
        let [n, e, d, p, q, dp, dq, qinv] = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| parts[i].as_slice());
        if e == [1] { return Ok(()); }
        let key = RsaPrivateKeyRef::from_components(n, e, d, p, q, dp, dq, qinv).unwrap();
        let mut buf = vec![0u8; key.pkcs8_der_len()];
        let len = key.write_pkcs1_der(&mut buf).unwrap();
        prop_assert_eq!(RsaPrivateKeyRef::from_pkcs1_der(&buf[..len]), Ok(key));
        let len = key.write_pkcs8_der(&mut buf).unwrap();
        prop_assert_eq!(RsaPrivateKeyRef::from_der(&buf[..len]), Ok(key));
        let public = key.public_key();
        let mut buf = vec![0u8; public.spki_der_len()];
        let len = public.write_spki_der(&mut buf).unwrap();
        prop_assert_eq!(RsaPublicKeyRef::from_der(&buf[..len]), Ok(public));
    }
}
