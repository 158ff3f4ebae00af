//! Server key rotation: the handshake key that accepts devices on either server key during a migration window,
//! and which key each device used.
//!
//! A rotation (`spark-cloud keys rotate`, [`Cloud::rotate_server_key`](super::Cloud::rotate_server_key)) makes a
//! new current key and keeps the old one as the previous key. Until the window is closed (`keys retire`), a
//! device's credentials block is decrypted with both private keys, every time, and the plaintext whose first 40
//! bytes are the nonce this connection sent is kept, chosen without a branch on secret data. A handshake that
//! fails with both keys costs the same two decryptions and ends in the same refusal as any other bad handshake.
//! The signature in the reply is made with the key that matched (which key a device holds is no secret: its
//! firmware and its DFU image say so).
//!
//! spark-protocol's session sees one [`RsaPrivate`] and does not hand the nonce to it, so each connection's
//! [`NonceTap`] RNG copies the nonce as the session draws it (the first 40 bytes it asks for, in
//! `CloudConnection::new`) into the connection's [`HandshakeKey`].

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use spark_protocol::crypto::handshake::NONCE_LEN;
use spark_protocol::crypto::{RsaError, RsaPrivate};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::devices::ServerKey;
use super::lock;
use super::state::ServerKeys;

/// The largest RSA block handled (a 4096-bit key).
const MAX_BLOCK: usize = 512;

/// Which of the server's keys a device's handshake used, against the keys held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyUse {
    /// The current key: the device has been moved (or never needed to be).
    Current,
    /// The previous key: the device still has to be moved before the window closes.
    Previous,
    /// A key the cloud no longer holds (retired after the device connected).
    Retired,
}

impl KeyUse {
    /// The word used in `GET /v1/devices` and `spark list`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::Current => "current",
            KeyUse::Previous => "previous",
            KeyUse::Retired => "retired",
        }
    }
}

/// A short, stable name of a server key: the SHA-256 of its public key (SPKI DER), in hex.
pub fn fingerprint(key: &spark_protocol::crypto::keys::RsaPrivateKey) -> String {
    use sha2::Digest;
    super::encoding::hex(&sha2::Sha256::digest(key.public_key().to_spki_der()))
}

/// The server keys as the handshake uses them, built once per rotation and shared by every connection.
#[derive(Clone)]
pub struct LoadedKeys {
    current: ServerKey,
    previous: Option<ServerKey>,
    current_fingerprint: Arc<str>,
    previous_fingerprint: Option<Arc<str>>,
}

impl core::fmt::Debug for LoadedKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoadedKeys")
            .field("current", &self.current_fingerprint)
            .field("previous", &self.previous_fingerprint)
            .finish()
    }
}

impl LoadedKeys {
    /// Loads both keys into the handshake backend. A previous key of another size than the current one is left
    /// out (the session reads a block of the current key's size), and so is one equal to the current key.
    pub fn new(keys: &ServerKeys) -> Result<LoadedKeys, RsaError> {
        let current =
            ServerKey::new(&keys.current.as_ref_key()).map_err(|_| RsaError::InvalidKey)?;
        let current_fingerprint: Arc<str> = fingerprint(&keys.current).into();
        let mut previous = None;
        let mut previous_fingerprint = None;
        if let Some(old) = &keys.previous {
            let print: Arc<str> = fingerprint(old).into();
            let loaded = ServerKey::new(&old.as_ref_key()).map_err(|_| RsaError::InvalidKey)?;
            if print != current_fingerprint && loaded.modulus_len() == current.modulus_len() {
                previous = Some(loaded);
                previous_fingerprint = Some(print);
            }
        }
        Ok(LoadedKeys {
            current,
            previous,
            current_fingerprint,
            previous_fingerprint,
        })
    }

    /// Whether a migration window is open (two keys accepted).
    pub fn window_open(&self) -> bool {
        self.previous.is_some()
    }

    /// How a device that used the key named `print` stands.
    pub fn classify(&self, print: &str) -> KeyUse {
        if *self.current_fingerprint == *print {
            KeyUse::Current
        } else if self.previous_fingerprint.as_deref() == Some(print) {
            KeyUse::Previous
        } else {
            KeyUse::Retired
        }
    }

    /// A handshake key for one new connection, with the tap that feeds it the connection's nonce.
    pub fn for_connection<R>(&self, rng: R) -> (HandshakeKey, NonceTap<R>) {
        let seen: Arc<Seen> = Arc::default();
        (
            HandshakeKey {
                keys: self.clone(),
                seen: Arc::clone(&seen),
            },
            NonceTap { inner: rng, seen },
        )
    }
}

/// What one connection's handshake learned: its nonce and the key that matched.
#[derive(Debug)]
struct Seen {
    nonce: Mutex<[u8; NONCE_LEN]>,
    nonce_set: AtomicBool,
    /// 0: current, 1: previous.
    chosen: AtomicU8,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            nonce: Mutex::new([0; NONCE_LEN]),
            nonce_set: AtomicBool::new(false),
            chosen: AtomicU8::new(0),
        }
    }
}

/// The server key of one connection: the current key, or during a migration window either key, chosen by the
/// nonce (see the module docs).
#[derive(Debug, Clone)]
pub struct HandshakeKey {
    keys: LoadedKeys,
    seen: Arc<Seen>,
}

impl HandshakeKey {
    /// The fingerprint of the key this connection's handshake used (the current key before the handshake).
    pub fn used_fingerprint(&self) -> Arc<str> {
        match (
            &self.keys.previous_fingerprint,
            self.seen.chosen.load(Ordering::Acquire),
        ) {
            (Some(print), 1) => Arc::clone(print),
            _ => Arc::clone(&self.keys.current_fingerprint),
        }
    }

    fn chosen(&self) -> &ServerKey {
        match (
            &self.keys.previous,
            self.seen.chosen.load(Ordering::Acquire),
        ) {
            (Some(previous), 1) => previous,
            _ => &self.keys.current,
        }
    }
}

/// A decryption's plaintext kept in a fixed buffer, and whether it starts with the nonce.
fn candidate<R: rand_core::CryptoRng + ?Sized>(
    key: &ServerKey,
    rng: &mut R,
    ciphertext: &[u8],
    nonce: &[u8; NONCE_LEN],
    plain: &mut [u8; MAX_BLOCK],
) -> (usize, Choice) {
    match key.decrypt_pkcs1v15(rng, ciphertext, plain) {
        Ok(len) if (NONCE_LEN..=MAX_BLOCK).contains(&len) => (len, plain[..NONCE_LEN].ct_eq(nonce)),
        _ => (0, Choice::from(0)),
    }
}

impl RsaPrivate for HandshakeKey {
    fn modulus_len(&self) -> usize {
        self.keys.current.modulus_len()
    }

    fn decrypt_pkcs1v15<R: rand_core::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        let Some(previous) = &self.keys.previous else {
            return self.keys.current.decrypt_pkcs1v15(rng, ciphertext, out);
        };
        if !self.seen.nonce_set.load(Ordering::Acquire) {
            // Without the nonce the two plaintexts cannot be told apart: refuse as for any bad block.
            return Err(RsaError::Decryption);
        }
        let nonce = *lock(&self.seen.nonce);
        let mut a = [0u8; MAX_BLOCK];
        let mut b = [0u8; MAX_BLOCK];
        // Both private operations run whatever the first one gives, so the time taken does not say which key
        // (or whether any) matched.
        let (len_a, ok_a) = candidate(&self.keys.current, rng, ciphertext, &nonce, &mut a);
        let (len_b, ok_b) = candidate(previous, rng, ciphertext, &nonce, &mut b);
        let take_b = !ok_a & ok_b;
        let len = u64::conditional_select(&(len_a as u64), &(len_b as u64), take_b);
        for (x, y) in a.iter_mut().zip(b.iter()) {
            x.conditional_assign(y, take_b);
        }
        self.seen
            .chosen
            .store(u8::conditional_select(&0, &1, take_b), Ordering::Release);
        if !bool::from(ok_a | ok_b) {
            return Err(RsaError::Decryption);
        }
        let len = usize::try_from(len).map_err(|_| RsaError::Decryption)?;
        let dst = out
            .get_mut(..len)
            .ok_or(RsaError::InsufficientSize { required: len })?;
        dst.copy_from_slice(&a[..len]);
        Ok(len)
    }

    fn sign_pkcs1v15_unprefixed<R: rand_core::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        self.chosen().sign_pkcs1v15_unprefixed(rng, message, out)
    }
}

/// A connection's RNG that copies the first [`NONCE_LEN`] bytes it gives out (the session's nonce, drawn first in
/// `CloudConnection::new`) into the connection's [`HandshakeKey`].
#[derive(Debug)]
pub struct NonceTap<R> {
    inner: R,
    seen: Arc<Seen>,
}

impl<R: rand_core::Rng> rand_core::TryRng for NonceTap<R> {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.inner.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.inner.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.fill_bytes(dst);
        if dst.len() == NONCE_LEN && !self.seen.nonce_set.load(Ordering::Acquire) {
            lock(&self.seen.nonce).copy_from_slice(dst);
            self.seen.nonce_set.store(true, Ordering::Release);
        }
        Ok(())
    }
}

impl<R: rand_core::CryptoRng> rand_core::TryCryptoRng for NonceTap<R> {}
