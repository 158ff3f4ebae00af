//! The RustCrypto RSA backend (`rsa` crate, feature `rsa`): pure Rust, no_std with `alloc`.
//!
//! `rsa` 0.10 decrypts PKCS#1 v1.5 with implicit rejection (bad padding yields a deterministic
//! pseudo-random plaintext, not an error), and its private-key operations are the subject of
//! RUSTSEC-2023-0071; see the [handshake security notes](crate::crypto::handshake#security-notes)
//! for what both mean for each role.

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BoxedUint, Pkcs1v15Encrypt, Pkcs1v15Sign};

use crate::crypto::backend::{RsaError, RsaPrivate, RsaPublic, block_out, check_fits};
use crate::crypto::keys::{KeyError, RsaPrivateKey, RsaPrivateKeyRef, RsaPublicKeyRef};

fn uint(bytes: &[u8]) -> Result<BoxedUint, RsaError> {
    let bits = (bytes.len() * 8).max(8);
    BoxedUint::from_be_slice(bytes, bits as u32).map_err(|_| RsaError::InvalidKey)
}

fn put(out: &mut [u8], bytes: &[u8]) -> Result<usize, RsaError> {
    let dst = out
        .get_mut(..bytes.len())
        .ok_or(RsaError::InsufficientSize {
            required: bytes.len(),
        })?;
    dst.copy_from_slice(bytes);
    Ok(bytes.len())
}

/// An RSA public key loaded into the `rsa` crate.
#[derive(Clone)]
pub struct RustCryptoPublicKey(rsa::PublicKey);

impl fmt::Debug for RustCryptoPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RustCryptoPublicKey({} bits)", self.0.size() * 8)
    }
}

impl RustCryptoPublicKey {
    /// Loads a key (1024 to 8192 bits).
    pub fn new(key: &RsaPublicKeyRef<'_>) -> Result<Self, RsaError> {
        rsa::PublicKey::new(uint(key.modulus())?, uint(key.exponent())?)
            .map(RustCryptoPublicKey)
            .map_err(|_| RsaError::InvalidKey)
    }
}

/// An RSA private key loaded into the `rsa` crate (checked and with its CRT values computed).
/// The `rsa` crate zeroizes it on drop.
#[derive(Clone)]
pub struct RustCryptoPrivateKey(rsa::PrivateKey);

impl fmt::Debug for RustCryptoPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RustCryptoPrivateKey({} bits)", self.0.size() * 8)
    }
}

impl RustCryptoPrivateKey {
    /// Loads and checks a key.
    pub fn new(key: &RsaPrivateKeyRef<'_>) -> Result<Self, RsaError> {
        let public = key.public_key();
        let primes = alloc::vec![uint(key.prime1())?, uint(key.prime2())?];
        rsa::PrivateKey::from_components(
            uint(public.modulus())?,
            uint(public.exponent())?,
            uint(key.private_exponent())?,
            primes,
        )
        .map(RustCryptoPrivateKey)
        .map_err(|_| RsaError::InvalidKey)
    }
}

impl RsaPublic for RustCryptoPublicKey {
    fn modulus_len(&self) -> usize {
        self.0.size()
    }

    fn encrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        let k = self.0.size();
        block_out(out, k)?;
        check_fits(message, k)?;
        let ct = self
            .0
            .encrypt(rng, Pkcs1v15Encrypt, message)
            .map_err(|_| RsaError::Backend)?;
        put(out, &ct)
    }

    fn verify_pkcs1v15_unprefixed(&self, message: &[u8], signature: &[u8]) -> Result<(), RsaError> {
        if signature.len() != self.0.size() {
            return Err(RsaError::Verification);
        }
        self.0
            .verify(Pkcs1v15Sign::new_unprefixed(), message, signature)
            .map_err(|_| RsaError::Verification)
    }
}

impl RsaPrivate for RustCryptoPrivateKey {
    fn modulus_len(&self) -> usize {
        self.0.size()
    }

    fn decrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        if ciphertext.len() != self.0.size() {
            return Err(RsaError::BadInput);
        }
        let plain = zeroize::Zeroizing::new(
            self.0
                .decrypt_blinded(rng, Pkcs1v15Encrypt, ciphertext)
                .map_err(|_| RsaError::Decryption)?,
        );
        put(out, &plain)
    }

    fn sign_pkcs1v15_unprefixed<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        let k = self.0.size();
        block_out(out, k)?;
        check_fits(message, k)?;
        let sig = self
            .0
            .sign_with_rng(rng, Pkcs1v15Sign::new_unprefixed(), message)
            .map_err(|_| RsaError::Backend)?;
        put(out, &sig)
    }
}

fn trimmed(n: &BoxedUint) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(n.to_be_bytes_trimmed_vartime().into_vec())
}

pub(crate) fn generate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    bits: usize,
) -> Result<RsaPrivateKey, KeyError> {
    let key = rsa::PrivateKey::new(rng, bits).map_err(|_| KeyError::Generation)?;
    let [p, q] = key.primes() else {
        return Err(KeyError::Generation);
    };
    let n = trimmed(key.n().as_ref());
    let e = trimmed(key.e());
    let d = trimmed(key.d());
    let (p, q) = (trimmed(p.as_ref()), trimmed(q.as_ref()));
    let dp = trimmed(key.dp().ok_or(KeyError::Generation)?);
    let dq = trimmed(key.dq().ok_or(KeyError::Generation)?);
    let qinv = trimmed(&key.crt_coefficient().ok_or(KeyError::Generation)?);
    RsaPrivateKeyRef::from_components(&n, &e, &d, &p, &q, &dp, &dq, &qinv).map(RsaPrivateKey::from)
}
