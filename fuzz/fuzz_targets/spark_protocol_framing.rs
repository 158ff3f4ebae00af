//! The streaming frame decoder: arbitrary bytes, fed in pieces whose sizes the input chooses,
//! never panic; a decoder that failed keeps failing; and a message the encoder sealed always
//! comes back out whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_protocol::crypto::framing::{FrameDecoder, FrameEncoder, sealed_len};
use spark_protocol::crypto::{Aes128Cbc, SessionCipher};

const KEY: [u8; 16] = [0x42; 16];
const IV: [u8; 16] = [0x24; 16];

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);

    // Hostile input.
    let mut dec = FrameDecoder::new(Aes128Cbc::new(&KEY), IV, [0u8; 640]);
    let mut out = [0u8; 640];
    for chunk in rest.chunks(step) {
        let mut chunk = chunk;
        loop {
            match dec.decode(chunk, &mut out) {
                Ok(d) => {
                    chunk = &chunk[d.consumed..];
                    if chunk.is_empty() && d.message.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    assert_eq!(dec.decode(chunk, &mut out).err(), Some(e));
                    return;
                }
            }
        }
    }

    // The same bytes as a message: sealed, then opened in `step`-sized pieces.
    let message = &rest[..rest.len().min(600)];
    let mut enc = FrameEncoder::new(Aes128Cbc::new(&KEY), IV);
    let mut wire = vec![0u8; sealed_len(message.len())];
    enc.seal(message, &mut wire).expect("sized by sealed_len");
    let mut dec = FrameDecoder::new(Aes128Cbc::new(&KEY), IV, vec![0u8; 640]);
    let mut got = None;
    for chunk in wire.chunks(step) {
        let d = dec.decode(chunk, &mut out).expect("our own frame");
        assert_eq!(d.consumed, chunk.len());
        got = got.or(d.message);
    }
    assert_eq!(&out[..got.expect("one message")], message);
});
