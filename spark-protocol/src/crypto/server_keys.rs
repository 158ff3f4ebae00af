//! The cloud's private key material as the handshake sees it: [`HandshakeKeys`], the hook that hands the
//! connection's nonce to the key holder when it decrypts a device's credentials, and [`MigrationKeys`], a holder
//! of a current and a previous server key for the migration window of a key rotation.
//!
//! A cloud with one server key needs nothing from this module: every [`RsaPrivate`] is a [`HandshakeKeys`] that
//! ignores the nonce and signs with itself, so `CloudConnection::new(now, key, ...)` works as before.
//!
//! A cloud that rotated its key still accepts devices that hold the old public key until it retires it. Such a
//! device's credentials block only decrypts under the old private key, and nothing in the block says which key it
//! was made for, so the holder decrypts with both and keeps the plaintext that starts with the nonce this
//! connection sent. [`MigrationKeys`] does both private operations on every block and selects without branching
//! on which one matched, so the time a handshake takes does not tell a sender which key (if any) its block
//! decrypted under. The reply is then signed with the key that matched: which server key a device holds is no
//! secret (its firmware and its DFU image say so).
//!
//! No heap is used: the two plaintexts live in fixed 512-byte buffers on the stack (a 4096-bit key's block).

use core::sync::atomic::{AtomicBool, Ordering};

use rand_core::CryptoRng;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::crypto::backend::{RsaError, RsaPrivate};
use crate::crypto::handshake::{NONCE_LEN, Nonce};

/// The largest RSA block handled (a 4096-bit key), as in the handshake.
const MAX_BLOCK: usize = 512;

/// What the cloud's side of the handshake needs from its server key(s): the size of the device's credentials
/// block, its decryption knowing the nonce the cloud sent, and the key that signs the reply.
///
/// Implemented for every [`RsaPrivate`] (one key: the nonce is ignored, the key signs), and by [`MigrationKeys`]
/// (two keys during a rotation's migration window). A holder of several keys implements it to choose among
/// them; the handshake still checks the nonce itself, so a holder cannot make a wrong block pass.
pub trait HandshakeKeys {
    /// The private key that signs the session key reply.
    type Signer: RsaPrivate + ?Sized;

    /// The length of the device's credentials block: the modulus size of the server key(s), all of one size.
    fn credentials_len(&self) -> usize;

    /// PKCS#1 v1.5 decryption of the device's credentials block, for a connection that sent `nonce`, into `out`;
    /// returns the plaintext length.
    ///
    /// A holder of several keys keeps the decryption whose plaintext starts with `nonce`, and remembers which
    /// key that was for [`signer`](Self::signer). It should treat every block alike whatever it decrypts to (the
    /// same private operations, no branch on which key matched), and answer a block that matches no key as a
    /// single key answers bad padding.
    fn decrypt_credentials<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        nonce: &Nonce,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError>;

    /// The key that signs the reply: the one whose decryption the last
    /// [`decrypt_credentials`](Self::decrypt_credentials) kept.
    fn signer(&self) -> &Self::Signer;
}

impl<T: RsaPrivate + ?Sized> HandshakeKeys for T {
    type Signer = T;

    fn credentials_len(&self) -> usize {
        self.modulus_len()
    }

    fn decrypt_credentials<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        nonce: &Nonce,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        // One key has nothing to choose: the handshake checks the nonce.
        let _ = nonce;
        self.decrypt_pkcs1v15(rng, ciphertext, out)
    }

    fn signer(&self) -> &T {
        self
    }
}

/// A server's current key and, during a migration window, its previous one: the [`HandshakeKeys`] of a cloud
/// that rotated its key and still accepts devices on the old one (see the module docs).
///
/// Hold one per connection (a clone of a pair built once): it records which key the connection's handshake used
/// ([`used_previous`](Self::used_previous)).
pub struct MigrationKeys<K> {
    current: K,
    previous: Option<K>,
    used_previous: AtomicBool,
}

/// A copy holding the same keys and the same record of the last handshake: how a cloud gives each new connection
/// keys of its own from one validated pair.
impl<K: Clone> Clone for MigrationKeys<K> {
    fn clone(&self) -> Self {
        MigrationKeys {
            current: self.current.clone(),
            previous: self.previous.clone(),
            used_previous: AtomicBool::new(self.used_previous()),
        }
    }
}

impl<K> core::fmt::Debug for MigrationKeys<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MigrationKeys")
            .field("window_open", &self.previous.is_some())
            .field("used_previous", &self.used_previous())
            .finish_non_exhaustive()
    }
}

impl<K: RsaPrivate> MigrationKeys<K> {
    /// Both keys, or the current one alone (`previous` `None`: no window, one decryption per handshake).
    ///
    /// [`RsaError::InvalidKey`] when the keys' moduli differ in size (the device's block has the current key's
    /// size, so a previous key of another size could never match) or exceed 4096 bits.
    pub fn new(current: K, previous: Option<K>) -> Result<Self, RsaError> {
        let len = current.modulus_len();
        if len > MAX_BLOCK || previous.as_ref().is_some_and(|p| p.modulus_len() != len) {
            return Err(RsaError::InvalidKey);
        }
        Ok(MigrationKeys {
            current,
            previous,
            used_previous: AtomicBool::new(false),
        })
    }
}

impl<K> MigrationKeys<K> {
    /// The current key.
    pub fn current(&self) -> &K {
        &self.current
    }

    /// The previous key, during a migration window.
    pub fn previous(&self) -> Option<&K> {
        self.previous.as_ref()
    }

    /// Whether a migration window is open (two keys accepted).
    #[must_use]
    pub fn window_open(&self) -> bool {
        self.previous.is_some()
    }

    /// Whether the last credentials block decrypted under the previous key (false before any, and after a block
    /// that matched no key).
    #[must_use]
    pub fn used_previous(&self) -> bool {
        self.used_previous.load(Ordering::Acquire)
    }
}

/// One key's decryption of `ciphertext` into `plain`, its length, and whether it starts with `nonce`.
fn candidate<K: RsaPrivate, R: CryptoRng + ?Sized>(
    key: &K,
    rng: &mut R,
    ciphertext: &[u8],
    nonce: &Nonce,
    plain: &mut [u8; MAX_BLOCK],
) -> (usize, Choice) {
    // Whether the padding checked out is one branch here, as it is for a single key outside a window.
    match key.decrypt_pkcs1v15(rng, ciphertext, plain) {
        Ok(len) if (NONCE_LEN..=MAX_BLOCK).contains(&len) => {
            (len, plain[..NONCE_LEN].ct_eq(&nonce.0))
        }
        _ => (0, Choice::from(0)),
    }
}

impl<K: RsaPrivate> HandshakeKeys for MigrationKeys<K> {
    type Signer = K;

    fn credentials_len(&self) -> usize {
        self.current.modulus_len()
    }

    fn decrypt_credentials<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        nonce: &Nonce,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        let Some(previous) = &self.previous else {
            self.used_previous.store(false, Ordering::Release);
            return self.current.decrypt_pkcs1v15(rng, ciphertext, out);
        };
        let mut a = [0u8; MAX_BLOCK];
        let mut b = [0u8; MAX_BLOCK];
        // Both private operations run whatever the first one gives.
        let (len_a, ok_a) = candidate(&self.current, rng, ciphertext, nonce, &mut a);
        let (len_b, ok_b) = candidate(previous, rng, ciphertext, nonce, &mut b);
        let take_b = !ok_a & ok_b;
        let len = u64::conditional_select(&(len_a as u64), &(len_b as u64), take_b);
        for (x, y) in a.iter_mut().zip(b.iter()) {
            x.conditional_assign(y, take_b);
        }
        self.used_previous
            .store(bool::from(take_b), Ordering::Release);
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

    fn signer(&self) -> &K {
        match &self.previous {
            Some(previous) if self.used_previous() => previous,
            _ => &self.current,
        }
    }
}
