//! The RSA operations the handshake needs, as two small traits over caller buffers, so that a
//! device with an RSA accelerator or without a heap, or a cloud that wants OpenSSL's speed, can
//! bring its own implementation.
//!
//! Implementations here: `crypto::rustcrypto` (feature `rsa`, the default, no_std with `alloc`),
//! `crypto::fixed` (feature `rsa-fixed`, no_std without `alloc`: the device's RSA-1024 private
//! and RSA-2048 public operations) and `crypto::openssl` (feature `openssl`, std).

use rand_core::CryptoRng;

/// Why an RSA operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RsaError {
    /// The output buffer is too small.
    #[error("output buffer too small: {required} bytes required")]
    InsufficientSize {
        /// The size the output needs.
        required: usize,
    },
    /// The message does not fit the key (over `k - 11` bytes for PKCS#1 v1.5).
    #[error("message too long for the RSA key")]
    MessageTooLong,
    /// The input is not one RSA block for this key (wrong length or out of range).
    #[error("input is not an RSA block for this key")]
    BadInput,
    /// Decryption failed (bad padding). Backends with implicit rejection never return this for
    /// bad padding: they return a pseudo-random plaintext instead.
    #[error("RSA decryption failed")]
    Decryption,
    /// The signature does not verify.
    #[error("RSA signature verification failed")]
    Verification,
    /// The key material cannot be used by this backend.
    #[error("invalid RSA key for this backend")]
    InvalidKey,
    /// The backend failed for another reason (its RNG or library).
    #[error("RSA backend failure")]
    Backend,
}

/// Working memory an RSA operation may use instead of its stack, lent by the caller for the
/// duration of one call.
///
/// A device keeps one in memory that is idle while the handshake runs (the session's event queue,
/// in [`DeviceConnection`](crate::session::device::DeviceConnection)), so that the handshake's
/// numbers add nothing to its peak RAM. The heap-free backend (`rsa-fixed`) keeps its largest
/// numbers here (about 780 bytes: an RSA-2048 modulus with its R² and one value, or a CRT prime
/// with its exponent and the window table) and wipes what was secret before it returns; the other
/// backends ignore it, and without `rsa-fixed` it is empty.
pub struct RsaScratch {
    #[cfg(feature = "rsa-fixed")]
    pub(crate) fixed: crate::crypto::fixed::Scratch,
}

impl RsaScratch {
    /// Scratch memory holding nothing yet.
    pub const fn new() -> Self {
        RsaScratch {
            #[cfg(feature = "rsa-fixed")]
            fixed: crate::crypto::fixed::Scratch::Idle,
        }
    }
}

impl Default for RsaScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RsaScratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RsaScratch")
    }
}

/// Operations with an RSA public key.
pub trait RsaPublic {
    /// The modulus size in bytes: the length of every ciphertext and signature.
    fn modulus_len(&self) -> usize;

    /// PKCS#1 v1.5 encryption (type 2 padding, random bytes from `rng`) of `message` into `out`;
    /// returns [`modulus_len`](Self::modulus_len).
    fn encrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError>;

    /// Verifies a PKCS#1 v1.5 type 1 signature whose payload is `message` itself, with no
    /// DigestInfo prefix (what the Spark handshake signs: a bare 20-byte HMAC).
    fn verify_pkcs1v15_unprefixed(&self, message: &[u8], signature: &[u8]) -> Result<(), RsaError>;

    /// [`encrypt_pkcs1v15`](Self::encrypt_pkcs1v15), free to keep its numbers in `scratch`
    /// rather than on the stack. The default ignores the scratch.
    fn encrypt_pkcs1v15_in<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
        scratch: &mut RsaScratch,
    ) -> Result<usize, RsaError> {
        let _ = scratch;
        self.encrypt_pkcs1v15(rng, message, out)
    }

    /// [`verify_pkcs1v15_unprefixed`](Self::verify_pkcs1v15_unprefixed), free to keep its numbers
    /// in `scratch` rather than on the stack. The default ignores the scratch.
    fn verify_pkcs1v15_unprefixed_in(
        &self,
        message: &[u8],
        signature: &[u8],
        scratch: &mut RsaScratch,
    ) -> Result<(), RsaError> {
        let _ = scratch;
        self.verify_pkcs1v15_unprefixed(message, signature)
    }
}

/// Operations with an RSA private key.
pub trait RsaPrivate {
    /// The modulus size in bytes.
    fn modulus_len(&self) -> usize;

    /// PKCS#1 v1.5 decryption of one block into `out`; returns the plaintext length. `rng` feeds
    /// blinding where the backend supports it.
    ///
    /// The result is not authenticated: a backend may answer bad padding with a pseudo-random
    /// plaintext (implicit rejection), so the caller must check what it expects to find.
    fn decrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError>;

    /// A PKCS#1 v1.5 type 1 signature over `message` itself (no DigestInfo) into `out`; returns
    /// [`modulus_len`](Self::modulus_len).
    fn sign_pkcs1v15_unprefixed<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError>;

    /// [`decrypt_pkcs1v15`](Self::decrypt_pkcs1v15), free to keep its numbers in `scratch`
    /// rather than on the stack. The default ignores the scratch.
    fn decrypt_pkcs1v15_in<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &[u8],
        out: &mut [u8],
        scratch: &mut RsaScratch,
    ) -> Result<usize, RsaError> {
        let _ = scratch;
        self.decrypt_pkcs1v15(rng, ciphertext, out)
    }
}

/// Implements an RSA trait for `&T` by handing every method to `T`, so that a borrowed key serves
/// where a key is taken. One line a method: its name, `<R>` when it takes an RNG, its arguments
/// after `&self`, and what it returns.
macro_rules! lend_to_referent {
    ($trait:ident { $(fn $name:ident $(<$rng:ident>)? ($($arg:ident: $ty:ty),*) -> $ret:ty;)+ }) => {
        impl<T: $trait + ?Sized> $trait for &T {
            $(
                fn $name $(<$rng: CryptoRng + ?Sized>)? (&self, $($arg: $ty),*) -> $ret {
                    (**self).$name($($arg),*)
                }
            )+
        }
    };
}

lend_to_referent! { RsaPublic {
    fn modulus_len() -> usize;
    fn encrypt_pkcs1v15<R>(rng: &mut R, message: &[u8], out: &mut [u8]) -> Result<usize, RsaError>;
    fn verify_pkcs1v15_unprefixed(message: &[u8], signature: &[u8]) -> Result<(), RsaError>;
    fn encrypt_pkcs1v15_in<R>(rng: &mut R, message: &[u8], out: &mut [u8], scratch: &mut RsaScratch) -> Result<usize, RsaError>;
    fn verify_pkcs1v15_unprefixed_in(message: &[u8], signature: &[u8], scratch: &mut RsaScratch) -> Result<(), RsaError>;
} }

lend_to_referent! { RsaPrivate {
    fn modulus_len() -> usize;
    fn decrypt_pkcs1v15<R>(rng: &mut R, ciphertext: &[u8], out: &mut [u8]) -> Result<usize, RsaError>;
    fn sign_pkcs1v15_unprefixed<R>(rng: &mut R, message: &[u8], out: &mut [u8]) -> Result<usize, RsaError>;
    fn decrypt_pkcs1v15_in<R>(rng: &mut R, ciphertext: &[u8], out: &mut [u8], scratch: &mut RsaScratch) -> Result<usize, RsaError>;
} }

/// The first `k` bytes of `out`, where a backend writes a `k`-byte block (a ciphertext or a
/// signature); [`RsaError::InsufficientSize`] when `out` is shorter.
#[cfg(any(feature = "rsa", feature = "openssl", feature = "rsa-fixed"))]
pub(crate) fn block_out(out: &mut [u8], k: usize) -> Result<&mut [u8], RsaError> {
    out.get_mut(..k)
        .ok_or(RsaError::InsufficientSize { required: k })
}

/// Checks that `message` fits a PKCS#1 v1.5 block of `k` bytes with its 11 bytes of padding at
/// least.
#[cfg(any(feature = "rsa", feature = "openssl", feature = "rsa-fixed"))]
pub(crate) fn check_fits(message: &[u8], k: usize) -> Result<(), RsaError> {
    if message.len() + 11 > k {
        Err(RsaError::MessageTooLong)
    } else {
        Ok(())
    }
}

/// Builds a PKCS#1 v1.5 type 2 encryption block `00 02 PS 00 message` with non-zero random `PS`
/// from `rng`, for backends that only offer the raw RSA operation.
pub fn pkcs1v15_encryption_block<R: CryptoRng + ?Sized>(
    rng: &mut R,
    message: &[u8],
    block: &mut [u8],
) -> Result<(), RsaError> {
    let k = block.len();
    if k < 11 || message.len() > k - 11 {
        return Err(RsaError::MessageTooLong);
    }
    let ps_end = k - message.len() - 1;
    block[0] = 0;
    block[1] = 2;
    rng.fill_bytes(&mut block[2..ps_end]);
    for b in &mut block[2..ps_end] {
        while *b == 0 {
            let mut one = [0u8];
            rng.fill_bytes(&mut one);
            *b = one[0];
        }
    }
    block[ps_end] = 0;
    block[ps_end + 1..].copy_from_slice(message);
    Ok(())
}
