//! The 40-byte session secret the cloud sends in the handshake, and how it splits: AES key
//! (bytes 0..16), IV (16..32) and salt (32..40), whose first bytes seed the device's CoAP
//! message id and token.

use core::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::cipher::{BLOCK_LEN, KEY_LEN, SessionCipher};
use crate::crypto::framing::{FrameDecoder, FrameEncoder};

/// Size of the session secret.
pub const SESSION_KEY_LEN: usize = 40;
/// Size of the salt.
pub const SALT_LEN: usize = 8;

/// The session secret. Zeroized on drop; `Debug` never shows it; compared in constant time.
#[derive(Clone)]
pub struct SessionKey([u8; SESSION_KEY_LEN]);

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]))
    }
}

impl Eq for SessionKey {}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SessionKey {}

impl SessionKey {
    /// Wraps 40 bytes received or chosen elsewhere.
    #[must_use]
    pub fn from_bytes(bytes: [u8; SESSION_KEY_LEN]) -> Self {
        SessionKey(bytes)
    }

    /// Draws a fresh secret from `rng` (the cloud does this once per connection).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; SESSION_KEY_LEN];
        rng.fill_bytes(&mut bytes);
        SessionKey(bytes)
    }

    /// All 40 bytes, as they travel (encrypted) in the handshake.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; SESSION_KEY_LEN] {
        &self.0
    }

    /// The AES-128 key: bytes 0..16.
    #[must_use]
    pub fn aes_key(&self) -> &[u8; KEY_LEN] {
        self.0[..KEY_LEN].try_into().unwrap_or(&[0; KEY_LEN])
    }

    /// The IV of the first message in each direction: bytes 16..32.
    #[must_use]
    pub fn iv(&self) -> [u8; BLOCK_LEN] {
        let mut iv = [0u8; BLOCK_LEN];
        iv.copy_from_slice(&self.0[KEY_LEN..KEY_LEN + BLOCK_LEN]);
        iv
    }

    /// The salt: bytes 32..40.
    #[must_use]
    pub fn salt(&self) -> [u8; SALT_LEN] {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&self.0[KEY_LEN + BLOCK_LEN..]);
        salt
    }

    /// The Core's message-id seed: salt bytes 0..2 big-endian (core-communication-lib). The first
    /// message the device sends carries this seed + 1.
    #[must_use]
    pub fn message_id_seed(&self) -> u16 {
        u16::from_be_bytes([self.0[32], self.0[33]])
    }

    /// Device OS's message-id seed over TCP: the same two bytes read as a little-endian `u16`
    /// (a native read on ARM).
    #[must_use]
    pub fn message_id_seed_le(&self) -> u16 {
        u16::from_le_bytes([self.0[32], self.0[33]])
    }

    /// The Core's token seed: salt byte 2. The first token the device uses is this seed + 1.
    #[must_use]
    pub fn token_seed(&self) -> u8 {
        self.0[34]
    }

    /// The encoder for this side's outgoing messages.
    #[must_use]
    pub fn encoder<C: SessionCipher>(&self) -> FrameEncoder<C> {
        FrameEncoder::new(C::new(self.aes_key()), self.iv())
    }

    /// The decoder for the peer's messages, holding frames in `storage`.
    pub fn decoder<C: SessionCipher, S: AsMut<[u8]>>(&self, storage: S) -> FrameDecoder<C, S> {
        FrameDecoder::new(C::new(self.aes_key()), self.iv(), storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        let bytes: [u8; 40] = core::array::from_fn(|i| i as u8);
        let key = SessionKey::from_bytes(bytes);
        assert_eq!(key.aes_key(), &bytes[..16]);
        assert_eq!(key.iv(), bytes[16..32]);
        assert_eq!(key.salt(), bytes[32..]);
        assert_eq!(key.message_id_seed(), 0x2021);
        assert_eq!(key.message_id_seed_le(), 0x2120);
        assert_eq!(key.token_seed(), 0x22);
    }

    #[test]
    fn debug_hides_the_secret() {
        extern crate std;
        let text = std::format!("{:?}", SessionKey::from_bytes([0xab; 40]));
        assert_eq!(text, "SessionKey(..)");
    }
}
