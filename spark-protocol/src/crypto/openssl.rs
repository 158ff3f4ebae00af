//! The OpenSSL backend (feature `openssl`, std): RSA and AES-128-CBC from the system's libssl
//! through the `openssl` crate.
//!
//! RSA private operations run several times faster than `rsa` 0.10's, which matters to a cloud
//! that handshakes with many devices, and OpenSSL's are the implementation hardened against
//! timing attacks such as Marvin (RUSTSEC-2023-0071 concerns the `rsa` crate, not this backend).
//! It covers every operation the protocol needs, including 1024-bit device keys and the raw
//! type 1 signature without DigestInfo.
//!
//! Randomness: the PKCS#1 v1.5 encryption padding is built here from the caller's RNG, as with
//! every backend; OpenSSL's own generator is used only inside OpenSSL, for the blinding of
//! private-key operations.

use std::fmt;
use std::vec::Vec;

use openssl::bn::BigNum;
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::pkey::{Private, Public};
use openssl::rsa::{Padding, Rsa};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::backend::{
    RsaError, RsaPrivate, RsaPublic, block_out, check_fits, pkcs1v15_encryption_block,
};
use crate::crypto::cipher::{BLOCK_LEN, CipherError, KEY_LEN, SessionCipher};
use crate::crypto::keys::{RsaPrivateKeyRef, RsaPublicKeyRef};

const MAX_BLOCK: usize = 1024;

fn bn(bytes: &[u8]) -> Result<BigNum, RsaError> {
    BigNum::from_slice(bytes).map_err(|_| RsaError::InvalidKey)
}

fn block_len(size: u32) -> usize {
    size as usize
}

/// An RSA public key loaded into OpenSSL.
#[derive(Clone)]
pub struct OpensslPublicKey(Rsa<Public>);

impl fmt::Debug for OpensslPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpensslPublicKey({} bits)", self.0.size() * 8)
    }
}

impl OpensslPublicKey {
    /// Loads a key (up to 8192 bits).
    pub fn new(key: &RsaPublicKeyRef<'_>) -> Result<Self, RsaError> {
        if key.modulus_len() > MAX_BLOCK {
            return Err(RsaError::InvalidKey);
        }
        Rsa::from_public_components(bn(key.modulus())?, bn(key.exponent())?)
            .map(OpensslPublicKey)
            .map_err(|_| RsaError::InvalidKey)
    }
}

/// An RSA private key loaded into OpenSSL (checked with `RSA_check_key`). OpenSSL clears it
/// when it is freed.
#[derive(Clone)]
pub struct OpensslPrivateKey(Rsa<Private>);

impl fmt::Debug for OpensslPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpensslPrivateKey({} bits)", self.0.size() * 8)
    }
}

impl OpensslPrivateKey {
    /// Loads and checks a key.
    pub fn new(key: &RsaPrivateKeyRef<'_>) -> Result<Self, RsaError> {
        let public = key.public_key();
        if public.modulus_len() > MAX_BLOCK {
            return Err(RsaError::InvalidKey);
        }
        let rsa = Rsa::from_private_components(
            bn(public.modulus())?,
            bn(public.exponent())?,
            bn(key.private_exponent())?,
            bn(key.prime1())?,
            bn(key.prime2())?,
            bn(key.exponent1())?,
            bn(key.exponent2())?,
            bn(key.coefficient())?,
        )
        .map_err(|_| RsaError::InvalidKey)?;
        match rsa.check_key() {
            Ok(true) => Ok(OpensslPrivateKey(rsa)),
            _ => Err(RsaError::InvalidKey),
        }
    }
}

impl RsaPublic for OpensslPublicKey {
    fn modulus_len(&self) -> usize {
        block_len(self.0.size())
    }

    fn encrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        let k = self.modulus_len();
        let out = block_out(out, k)?;
        let mut block = Zeroizing::new([0u8; MAX_BLOCK]);
        pkcs1v15_encryption_block(rng, message, &mut block[..k])?;
        match self.0.public_encrypt(&block[..k], out, Padding::NONE) {
            Ok(n) if n == k => Ok(k),
            _ => Err(RsaError::Backend),
        }
    }

    fn verify_pkcs1v15_unprefixed(&self, message: &[u8], signature: &[u8]) -> Result<(), RsaError> {
        let k = self.modulus_len();
        if signature.len() != k {
            return Err(RsaError::Verification);
        }
        let mut recovered = [0u8; MAX_BLOCK];
        let n = self
            .0
            .public_decrypt(signature, &mut recovered[..k], Padding::PKCS1)
            .map_err(|_| RsaError::Verification)?;
        if n == message.len() && bool::from(recovered[..n].ct_eq(message)) {
            Ok(())
        } else {
            Err(RsaError::Verification)
        }
    }
}

impl RsaPrivate for OpensslPrivateKey {
    fn modulus_len(&self) -> usize {
        block_len(self.0.size())
    }

    fn decrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        _rng: &mut R,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        let k = self.modulus_len();
        if ciphertext.len() != k {
            return Err(RsaError::BadInput);
        }
        let mut plain = Zeroizing::new([0u8; MAX_BLOCK]);
        let n = self
            .0
            .private_decrypt(ciphertext, &mut plain[..k], Padding::PKCS1)
            .map_err(|_| RsaError::Decryption)?;
        let dst = out
            .get_mut(..n)
            .ok_or(RsaError::InsufficientSize { required: n })?;
        dst.copy_from_slice(&plain[..n]);
        Ok(n)
    }

    fn sign_pkcs1v15_unprefixed<R: CryptoRng + ?Sized>(
        &self,
        _rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        let k = self.modulus_len();
        let out = block_out(out, k)?;
        check_fits(message, k)?;
        match self.0.private_encrypt(message, out, Padding::PKCS1) {
            Ok(n) if n == k => Ok(k),
            _ => Err(RsaError::Backend),
        }
    }
}

/// AES-128-CBC through OpenSSL's EVP interface (AES-NI where the CPU has it). The key schedule
/// is set up once; each message only resets the IV.
pub struct OpensslAes128Cbc {
    encrypt: Option<CipherCtx>,
    decrypt: Option<CipherCtx>,
    scratch: Vec<u8>,
}

impl fmt::Debug for OpensslAes128Cbc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpensslAes128Cbc { .. }")
    }
}

fn context(key: &[u8; KEY_LEN], encrypt: bool) -> Option<CipherCtx> {
    let mut ctx = CipherCtx::new().ok()?;
    let cipher = Cipher::aes_128_cbc();
    let init = if encrypt {
        ctx.encrypt_init(Some(cipher), Some(key), Some(&[0; BLOCK_LEN]))
    } else {
        ctx.decrypt_init(Some(cipher), Some(key), Some(&[0; BLOCK_LEN]))
    };
    init.ok()?;
    ctx.set_padding(false);
    Some(ctx)
}

impl OpensslAes128Cbc {
    fn run(
        &mut self,
        encrypt: bool,
        iv: &[u8; BLOCK_LEN],
        blocks: &mut [u8],
    ) -> Result<(), CipherError> {
        if !blocks.len().is_multiple_of(BLOCK_LEN) {
            return Err(CipherError);
        }
        let ctx = if encrypt {
            self.encrypt.as_mut()
        } else {
            self.decrypt.as_mut()
        }
        .ok_or(CipherError)?;
        let init = if encrypt {
            ctx.encrypt_init(None, None, Some(iv))
        } else {
            ctx.decrypt_init(None, None, Some(iv))
        };
        init.map_err(|_| CipherError)?;
        self.scratch.clear();
        self.scratch.resize(blocks.len() + BLOCK_LEN, 0);
        let n = ctx
            .cipher_update(blocks, Some(&mut self.scratch))
            .map_err(|_| CipherError)?;
        if n != blocks.len() {
            return Err(CipherError);
        }
        blocks.copy_from_slice(&self.scratch[..n]);
        self.scratch.fill(0);
        Ok(())
    }
}

impl Drop for OpensslAes128Cbc {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.scratch);
    }
}

impl SessionCipher for OpensslAes128Cbc {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        // A context that cannot be made shows up as `CipherError` on first use.
        OpensslAes128Cbc {
            encrypt: context(key, true),
            decrypt: context(key, false),
            scratch: Vec::new(),
        }
    }

    fn encrypt_cbc(&mut self, iv: &[u8; BLOCK_LEN], blocks: &mut [u8]) -> Result<(), CipherError> {
        self.run(true, iv, blocks)
    }

    fn decrypt_cbc(&mut self, iv: &[u8; BLOCK_LEN], blocks: &mut [u8]) -> Result<(), CipherError> {
        self.run(false, iv, blocks)
    }
}
