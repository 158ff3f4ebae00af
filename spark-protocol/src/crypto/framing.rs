//! The framing after the handshake: each CoAP message travels as a 2-byte big-endian length
//! followed by its AES-128-CBC ciphertext (PKCS#7 padded, always 1 to 16 bytes of padding).
//!
//! The IV rule is the protocol's own: the first message in each direction uses the session IV;
//! every later message in that direction uses the **first** 16 bytes of the previous ciphertext
//! in that direction (not the last block, as a continued CBC chain would). Each direction is one
//! [`FrameEncoder`] on the sending side and one [`FrameDecoder`] on the receiving side.
//!
//! ```
//! use spark_protocol::crypto::{Aes128Cbc, SessionKey};
//!
//! # fn main() -> Result<(), spark_protocol::crypto::FrameError> {
//! let session = SessionKey::from_bytes([7; 40]); // from the handshake
//! let mut device_tx = session.encoder::<Aes128Cbc>();
//! let mut cloud_rx = session.decoder::<Aes128Cbc, _>([0u8; 640]);
//!
//! let hello = [0x50, 0x02, 0x97, 0xb2, 0xb1, 0x68, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00];
//! let mut wire = [0u8; 64];
//! let n = device_tx.seal(&hello, &mut wire)?;
//! assert_eq!(&wire[..2], &[0x00, 0x10]); // one AES block
//!
//! // The bytes may arrive in any pieces.
//! let mut out = [0u8; 640];
//! let mut received = None;
//! for piece in wire[..n].chunks(5) {
//!     received = received.or(cloud_rx.decode(piece, &mut out)?.message);
//! }
//! assert_eq!(&out[..received.unwrap()], &hello);
//! # Ok(())
//! # }
//! ```

use core::fmt;

use crate::crypto::cipher::{BLOCK_LEN, CipherError, SessionCipher};

/// Size of the length prefix.
pub const HEADER_LEN: usize = 2;
/// The largest ciphertext a 16-bit length can announce (the largest multiple of 16 below 65536).
pub const MAX_CIPHERTEXT_LEN: usize = 0xfff0;
/// The Core's receive queue (`QUEUE_SIZE` in core-communication-lib): a frame announcing more is
/// a protocol error on the device.
pub const CORE_MAX_CIPHERTEXT_LEN: usize = 640;

/// Why a frame could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The output buffer is too small; nothing was consumed, call again with a larger one.
    #[error("output buffer too small: {required} bytes required")]
    InsufficientSize {
        /// The size the output needs.
        required: usize,
    },
    /// The message is too long for a frame (or for the configured maximum).
    #[error("message of {len} bytes exceeds the frame limit of {max}")]
    MessageTooLong {
        /// The plaintext length.
        len: usize,
        /// The largest ciphertext allowed.
        max: usize,
    },
    /// The peer announced a frame longer than the configured maximum.
    #[error("frame length {len} exceeds the maximum of {max}")]
    FrameTooLong {
        /// The announced ciphertext length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The announced length is zero or not a multiple of 16.
    #[error("frame length {len} is not a positive multiple of 16")]
    BadLength {
        /// The announced ciphertext length.
        len: usize,
    },
    /// The decrypted frame does not end in valid PKCS#7 padding (wrong key, wrong IV or
    /// tampering).
    #[error("bad padding in a decrypted frame")]
    BadPadding,
    /// The cipher failed.
    #[error(transparent)]
    Cipher(#[from] CipherError),
}

/// The ciphertext length for a plaintext of `len` bytes: PKCS#7 always adds 1 to 16 bytes.
#[must_use]
pub const fn ciphertext_len(len: usize) -> usize {
    (len & !(BLOCK_LEN - 1)) + BLOCK_LEN
}

/// The whole frame (length prefix and ciphertext) for a plaintext of `len` bytes.
#[must_use]
pub const fn sealed_len(len: usize) -> usize {
    HEADER_LEN + ciphertext_len(len)
}

fn first_block(ciphertext: &[u8]) -> [u8; BLOCK_LEN] {
    let mut iv = [0u8; BLOCK_LEN];
    iv.copy_from_slice(&ciphertext[..BLOCK_LEN]);
    iv
}

/// Seals messages for one direction into caller buffers.
pub struct FrameEncoder<C> {
    cipher: C,
    iv: [u8; BLOCK_LEN],
}

impl<C> fmt::Debug for FrameEncoder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FrameEncoder { .. }")
    }
}

/// The cipher of an encoder or decoder whose caller keeps the cipher and lends it to each call
/// ([`FrameEncoder::seal_with`], [`FrameDecoder::poll_message_with`]): a device's two directions then share one key
/// schedule (the protocol uses one AES key both ways) instead of holding a copy each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LentCipher;

impl<C> FrameEncoder<C> {
    /// An encoder whose first message uses `iv` (the session IV).
    pub fn new(cipher: C, iv: [u8; BLOCK_LEN]) -> Self {
        FrameEncoder { cipher, iv }
    }

    /// The IV the next message will use.
    pub fn next_iv(&self) -> &[u8; BLOCK_LEN] {
        &self.iv
    }

    /// Seals `message` into `out` as length prefix + ciphertext and returns the frame length
    /// ([`sealed_len`]). On any error the encoder's state (its next IV) does not change.
    pub fn seal(&mut self, message: &[u8], out: &mut [u8]) -> Result<usize, FrameError>
    where
        C: SessionCipher,
    {
        let frame = Self::place(message, out)?;
        seal_frame(&mut self.cipher, &mut self.iv, frame, message.len())
    }

    /// [`seal`](Self::seal) with `cipher` in place of the encoder's own (for a [`LentCipher`] encoder).
    pub fn seal_with<K: SessionCipher>(
        &mut self,
        cipher: &mut K,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, FrameError> {
        let frame = Self::place(message, out)?;
        seal_frame(cipher, &mut self.iv, frame, message.len())
    }

    /// Copies `message` into the frame it will be sealed in and returns that frame.
    fn place<'o>(message: &[u8], out: &'o mut [u8]) -> Result<&'o mut [u8], FrameError> {
        let required = Self::check(message.len())?;
        let frame = out
            .get_mut(..required)
            .ok_or(FrameError::InsufficientSize { required })?;
        frame[HEADER_LEN..HEADER_LEN + message.len()].copy_from_slice(message);
        Ok(frame)
    }

    /// Seals in place, for a device that builds its message where the frame will go: the
    /// message is `buf[2..2 + len]`, and `buf` must hold [`sealed_len`]`(len)` bytes. Returns the
    /// frame length. A size error leaves `buf` untouched; a [`FrameError::Cipher`] failure leaves
    /// it unspecified. The encoder's state changes only on success.
    pub fn seal_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, FrameError>
    where
        C: SessionCipher,
    {
        let required = Self::check(len)?;
        let frame = buf
            .get_mut(..required)
            .ok_or(FrameError::InsufficientSize { required })?;
        seal_frame(&mut self.cipher, &mut self.iv, frame, len)
    }

    fn check(len: usize) -> Result<usize, FrameError> {
        let ct_len = ciphertext_len(len);
        if ct_len > MAX_CIPHERTEXT_LEN {
            return Err(FrameError::MessageTooLong {
                len,
                max: MAX_CIPHERTEXT_LEN,
            });
        }
        Ok(HEADER_LEN + ct_len)
    }
}

/// Seals `frame` (exactly the frame; the message is at `frame[2..2 + len]`) with `iv`, which becomes the next IV.
fn seal_frame<K: SessionCipher>(
    cipher: &mut K,
    iv: &mut [u8; BLOCK_LEN],
    frame: &mut [u8],
    len: usize,
) -> Result<usize, FrameError> {
    let (header, body) = frame.split_at_mut(HEADER_LEN);
    let ct_len = body.len();
    // ct_len - len is 1..=16, so the cast keeps every bit.
    body[len..].fill((ct_len - len) as u8);
    cipher.encrypt_cbc(iv, body)?;
    *iv = first_block(body);
    // ct_len <= MAX_CIPHERTEXT_LEN < 2^16.
    header.copy_from_slice(&(ct_len as u16).to_be_bytes());
    Ok(frame.len())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the length prefix; `have` bytes of it so far.
    Header { have: usize },
    /// Reading `len` ciphertext bytes; `have` so far.
    Body { len: usize, have: usize },
    /// A whole frame is in storage, not yet decrypted.
    Complete { len: usize },
    /// The frame was decrypted in place; `len` plaintext bytes wait to be taken.
    Opened { len: usize },
    /// A fatal error: the stream can no longer be framed or trusted.
    Failed(FrameError),
}

/// What one [`FrameDecoder::decode`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Decoded {
    /// How many input bytes were consumed; the rest belong to later frames.
    pub consumed: usize,
    /// The length of the message written to the output buffer, if a frame was completed.
    pub message: Option<usize>,
}

/// Reassembles and opens frames for one direction from bytes that arrive in pieces of any size,
/// one byte at a time included.
///
/// The decoder holds one frame's ciphertext in `storage` (a `[u8; N]` on a device, a `Vec` in
/// the cloud), whose size bounds the frame length it accepts. A frame longer than the maximum,
/// a length that is not a positive multiple of 16, or bad padding put the decoder in a failed
/// state: every later call returns the same error, and the connection must be closed.
pub struct FrameDecoder<C, S> {
    cipher: C,
    iv: [u8; BLOCK_LEN],
    storage: S,
    max_len: usize,
    header: [u8; HEADER_LEN],
    state: State,
}

impl<C, S> fmt::Debug for FrameDecoder<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("max_len", &self.max_len)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<C, S: AsMut<[u8]>> FrameDecoder<C, S> {
    /// A decoder whose first frame uses `iv` (the session IV) and which accepts frames up to the
    /// storage size (rounded down to whole blocks, at most [`MAX_CIPHERTEXT_LEN`]).
    pub fn new(cipher: C, iv: [u8; BLOCK_LEN], mut storage: S) -> Self {
        let max_len = storage.as_mut().len().min(MAX_CIPHERTEXT_LEN) & !(BLOCK_LEN - 1);
        FrameDecoder {
            cipher,
            iv,
            storage,
            max_len,
            header: [0; HEADER_LEN],
            state: State::Header { have: 0 },
        }
    }

    /// Lowers the largest accepted ciphertext length (e.g. to [`CORE_MAX_CIPHERTEXT_LEN`]); it can
    /// never exceed the storage.
    #[must_use]
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = self.max_len.min(max_len);
        self
    }

    /// The largest ciphertext length accepted.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The IV the next frame will be decrypted with.
    pub fn next_iv(&self) -> &[u8; BLOCK_LEN] {
        &self.iv
    }

    /// Whether no partial frame is buffered (a clean point to close the stream).
    pub fn is_idle(&self) -> bool {
        self.state == State::Header { have: 0 }
    }

    /// Consumes input up to the end of the current frame and returns how many bytes it took. It
    /// takes nothing while a completed message waits in [`poll_message`](Self::poll_message).
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, FrameError> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            match self.state {
                State::Failed(err) => return Err(err),
                State::Complete { .. } | State::Opened { .. } => return Ok(consumed),
                State::Header { have } => {
                    let take = (HEADER_LEN - have).min(rest.len());
                    if take == 0 {
                        return Ok(consumed);
                    }
                    self.header[have..have + take].copy_from_slice(&rest[..take]);
                    consumed += take;
                    let have = have + take;
                    if have < HEADER_LEN {
                        self.state = State::Header { have };
                        continue;
                    }
                    let len = usize::from(u16::from_be_bytes(self.header));
                    if len == 0 || !len.is_multiple_of(BLOCK_LEN) {
                        return Err(self.fail(FrameError::BadLength { len }));
                    }
                    if len > self.max_len {
                        return Err(self.fail(FrameError::FrameTooLong {
                            len,
                            max: self.max_len,
                        }));
                    }
                    self.state = State::Body { len, have: 0 };
                }
                State::Body { len, have } => {
                    let take = (len - have).min(rest.len());
                    if take == 0 {
                        return Ok(consumed);
                    }
                    self.storage.as_mut()[have..have + take].copy_from_slice(&rest[..take]);
                    consumed += take;
                    let have = have + take;
                    self.state = if have == len {
                        State::Complete { len }
                    } else {
                        State::Body { len, have }
                    };
                }
            }
        }
    }

    /// Opens the completed frame, if any, into `out` and returns the message length. A buffer
    /// too small returns [`FrameError::InsufficientSize`] and keeps the message for the next
    /// call.
    pub fn poll_message(&mut self, out: &mut [u8]) -> Result<Option<usize>, FrameError>
    where
        C: SessionCipher,
    {
        let FrameDecoder {
            cipher,
            iv,
            storage,
            state,
            ..
        } = self;
        open_frame(cipher, iv, storage.as_mut(), state, out)
    }

    /// [`poll_message`](Self::poll_message) with `cipher` in place of the decoder's own (for a [`LentCipher`]
    /// decoder).
    pub fn poll_message_with<K: SessionCipher>(
        &mut self,
        cipher: &mut K,
        out: &mut [u8],
    ) -> Result<Option<usize>, FrameError> {
        open_frame(
            cipher,
            &mut self.iv,
            self.storage.as_mut(),
            &mut self.state,
            out,
        )
    }

    /// Feeds `input` and, when a frame completes, opens it into `out`: the two steps above in
    /// one call. Call again with the unconsumed rest of the input.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<Decoded, FrameError>
    where
        C: SessionCipher,
    {
        let consumed = self.handle_input(input)?;
        let message = self.poll_message(out)?;
        Ok(Decoded { consumed, message })
    }

    fn fail(&mut self, err: FrameError) -> FrameError {
        self.state = State::Failed(err);
        err
    }
}

/// Opens the completed frame in `storage`, if any, into `out` (see [`FrameDecoder::poll_message`]).
fn open_frame<K: SessionCipher>(
    cipher: &mut K,
    iv: &mut [u8; BLOCK_LEN],
    storage: &mut [u8],
    state: &mut State,
    out: &mut [u8],
) -> Result<Option<usize>, FrameError> {
    let len = match *state {
        State::Failed(err) => return Err(err),
        State::Header { .. } | State::Body { .. } => return Ok(None),
        State::Opened { len } => len,
        State::Complete { len } => {
            let body = &mut storage[..len];
            let next_iv = first_block(body);
            if let Err(err) = cipher.decrypt_cbc(iv, body) {
                *state = State::Failed(err.into());
                return Err(err.into());
            }
            *iv = next_iv;
            match unpad(body) {
                Some(plain) => {
                    *state = State::Opened { len: plain };
                    plain
                }
                None => {
                    *state = State::Failed(FrameError::BadPadding);
                    return Err(FrameError::BadPadding);
                }
            }
        }
    };
    let dst = out
        .get_mut(..len)
        .ok_or(FrameError::InsufficientSize { required: len })?;
    dst.copy_from_slice(&storage[..len]);
    *state = State::Header { have: 0 };
    Ok(Some(len))
}

/// The plaintext length if `block` ends in valid PKCS#7 padding. The padding bytes are compared
/// without an early exit.
fn unpad(blocks: &[u8]) -> Option<usize> {
    let last = *blocks.last()?;
    let pad = usize::from(last);
    if pad == 0 || pad > BLOCK_LEN || pad > blocks.len() {
        return None;
    }
    let tail = &blocks[blocks.len() - BLOCK_LEN.min(blocks.len())..];
    let mut diff = 0u8;
    for (i, &b) in tail.iter().rev().enumerate() {
        let in_pad = u8::from(i < pad).wrapping_neg();
        diff |= (b ^ last) & in_pad;
    }
    if diff == 0 {
        Some(blocks.len() - pad)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cipher::Aes128Cbc;

    const KEY: [u8; 16] = [7; 16];
    const IV: [u8; 16] = [9; 16];

    fn pair() -> (FrameEncoder<Aes128Cbc>, FrameDecoder<Aes128Cbc, [u8; 640]>) {
        (
            FrameEncoder::new(Aes128Cbc::new(&KEY), IV),
            FrameDecoder::new(Aes128Cbc::new(&KEY), IV, [0; 640]),
        )
    }

    #[test]
    fn a_lent_cipher_seals_and_opens_as_an_owned_one() {
        let (mut enc, mut dec) = pair();
        let mut lent_enc = FrameEncoder::new(LentCipher, IV);
        let mut lent_dec = FrameDecoder::new(LentCipher, IV, [0u8; 640]);
        let mut cipher = Aes128Cbc::new(&KEY);
        for message in [&[0x11u8; 5][..], &[0x22; 16], &[0x33; 100]] {
            let (mut owned, mut lent) = ([0u8; 160], [0u8; 160]);
            let n = enc.seal(message, &mut owned).unwrap();
            assert_eq!(
                lent_enc.seal_with(&mut cipher, message, &mut lent).unwrap(),
                n
            );
            assert_eq!(owned[..n], lent[..n]);
            assert_eq!(lent_enc.next_iv(), enc.next_iv());
            // Each decoder opens what the other side's encoder sealed.
            let mut out = [0u8; 160];
            assert_eq!(lent_dec.handle_input(&owned[..n]).unwrap(), n);
            let got = lent_dec.poll_message_with(&mut cipher, &mut out).unwrap();
            assert_eq!(&out[..got.unwrap()], message);
            let d = dec.decode(&lent[..n], &mut out).unwrap();
            assert_eq!(&out[..d.message.unwrap()], message);
        }
        // A tampered frame fails the lent decoder for good, as it does an owned one.
        let mut frame = [0u8; 64];
        let n = lent_enc.seal_with(&mut cipher, b"x", &mut frame).unwrap();
        frame[n - 1] ^= 0x01;
        let mut out = [0u8; 64];
        lent_dec.handle_input(&frame[..n]).unwrap();
        assert_eq!(
            lent_dec.poll_message_with(&mut cipher, &mut out),
            Err(FrameError::BadPadding)
        );
        assert_eq!(lent_dec.handle_input(&[0]), Err(FrameError::BadPadding));
    }

    #[test]
    fn padding_is_always_added() {
        assert_eq!(ciphertext_len(0), 16);
        assert_eq!(ciphertext_len(15), 16);
        assert_eq!(ciphertext_len(16), 32);
        assert_eq!(sealed_len(13), 18);
    }

    #[test]
    fn unpad_checks_every_padding_byte() {
        let mut block = [0u8; 16];
        block[15] = 1;
        assert_eq!(unpad(&block), Some(15));
        block[12..].fill(4);
        assert_eq!(unpad(&block), Some(12));
        block[12] = 5;
        assert_eq!(unpad(&block), None);
        assert_eq!(unpad(&[16; 16]), Some(0));
        assert_eq!(unpad(&[17; 16]), None);
        assert_eq!(unpad(&[0; 16]), None);
    }

    #[test]
    fn iv_is_the_first_block_of_the_previous_ciphertext() {
        let (mut enc, mut dec) = pair();
        let mut frame = [0u8; 64];
        let n = enc.seal(&[0xaa; 40], &mut frame).unwrap();
        assert_eq!(n, 50);
        assert_eq!(enc.next_iv(), &frame[2..18]);
        let mut out = [0u8; 64];
        assert_eq!(
            dec.decode(&frame[..n], &mut out),
            Ok(Decoded {
                consumed: n,
                message: Some(40)
            })
        );
        assert_eq!(dec.next_iv(), &frame[2..18]);
        assert_eq!(&out[..40], &[0xaa; 40]);
    }

    #[test]
    fn one_byte_at_a_time() {
        let (mut enc, mut dec) = pair();
        let mut wire = [0u8; 256];
        let mut at = 0;
        for len in [0usize, 1, 15, 16, 17, 100] {
            at += enc.seal(&[len as u8; 100][..len], &mut wire[at..]).unwrap();
        }
        let mut out = [0u8; 128];
        let mut got = 0;
        for byte in &wire[..at] {
            let d = dec.decode(core::slice::from_ref(byte), &mut out).unwrap();
            assert_eq!(d.consumed, 1);
            if let Some(len) = d.message {
                assert!(out[..len].iter().all(|&b| usize::from(b) == len));
                got += 1;
            }
        }
        assert_eq!(got, 6);
        assert!(dec.is_idle());
    }

    #[test]
    fn a_truncated_frame_yields_nothing_and_loses_nothing() {
        let (mut enc, _) = pair();
        let mut frame = [0u8; 64];
        let n = enc.seal(&[0x42; 33], &mut frame).unwrap();
        let mut out = [0u8; 64];
        for cut in 0..n {
            let (_, mut dec) = pair();
            let d = dec.decode(&frame[..cut], &mut out).unwrap();
            assert_eq!(
                d,
                Decoded {
                    consumed: cut,
                    message: None
                },
                "cut {cut}"
            );
            assert_eq!(dec.is_idle(), cut == 0);
            // The rest completes it.
            let d = dec.decode(&frame[cut..n], &mut out).unwrap();
            assert_eq!(
                d,
                Decoded {
                    consumed: n - cut,
                    message: Some(33)
                }
            );
            assert_eq!(&out[..33], &[0x42; 33]);
        }
    }

    #[test]
    fn sealing_in_place_matches_sealing() {
        let (mut a, _) = pair();
        let (mut b, _) = pair();
        for len in [0usize, 5, 16, 40] {
            let msg: [u8; 40] = core::array::from_fn(|i| i as u8 ^ len as u8);
            let mut x = [0u8; 64];
            let mut y = [0u8; 64];
            let n = a.seal(&msg[..len], &mut x).unwrap();
            y[2..2 + len].copy_from_slice(&msg[..len]);
            assert_eq!(b.seal_in_place(&mut y, len), Ok(n));
            assert_eq!(x[..n], y[..n]);
        }
        assert_eq!(
            b.seal_in_place(&mut [0u8; 17], 16),
            Err(FrameError::InsufficientSize { required: 34 })
        );
    }

    #[test]
    fn a_small_output_keeps_the_message() {
        let (mut enc, mut dec) = pair();
        let mut frame = [0u8; 64];
        let n = enc.seal(b"hello, world", &mut frame).unwrap();
        let mut small = [0u8; 4];
        assert_eq!(
            dec.decode(&frame[..n], &mut small),
            Err(FrameError::InsufficientSize { required: 12 })
        );
        let mut out = [0u8; 12];
        assert_eq!(dec.poll_message(&mut out), Ok(Some(12)));
        assert_eq!(&out, b"hello, world");
    }

    #[test]
    fn bad_lengths_fail_and_stay_failed() {
        let (_, mut dec) = pair();
        assert_eq!(
            dec.handle_input(&[0x00, 0x11]),
            Err(FrameError::BadLength { len: 17 })
        );
        assert_eq!(
            dec.handle_input(&[0x00]),
            Err(FrameError::BadLength { len: 17 })
        );
        let (_, mut dec) = pair();
        assert_eq!(
            dec.handle_input(&[0x00, 0x00]),
            Err(FrameError::BadLength { len: 0 })
        );
        let (_, dec) = pair();
        let mut dec = dec.with_max_len(CORE_MAX_CIPHERTEXT_LEN);
        assert_eq!(
            dec.handle_input(&[0x02, 0x90]),
            Err(FrameError::FrameTooLong { len: 656, max: 640 })
        );
        let mut out = [0u8; 8];
        assert_eq!(
            dec.poll_message(&mut out),
            Err(FrameError::FrameTooLong { len: 656, max: 640 })
        );
    }

    #[test]
    fn wrong_key_is_bad_padding_or_garbage() {
        let (mut enc, _) = pair();
        let mut frame = [0u8; 64];
        let mut out = [0u8; 64];
        let mut failures = 0;
        for i in 0..32u8 {
            let n = enc.seal(&[i; 20], &mut frame).unwrap();
            let mut fresh = FrameDecoder::new(Aes128Cbc::new(&[8; 16]), IV, [0u8; 64]);
            match fresh.decode(&frame[..n], &mut out) {
                Err(FrameError::BadPadding) => failures += 1,
                Ok(d) => assert_ne!(&out[..d.message.unwrap()], &[i; 20][..]),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(failures > 16, "{failures}");
    }

    #[test]
    fn too_long_messages_are_refused() {
        let (mut enc, _) = pair();
        let mut out = [0u8; 8];
        assert_eq!(
            enc.seal(&[0; 0xfff0], &mut out),
            Err(FrameError::MessageTooLong {
                len: 0xfff0,
                max: 0xfff0
            })
        );
        assert_eq!(
            enc.seal(&[0; 7], &mut out),
            Err(FrameError::InsufficientSize { required: 18 })
        );
        assert_eq!(enc.next_iv(), &IV);
    }
}
