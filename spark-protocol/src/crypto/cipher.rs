//! The session cipher: AES-128 in CBC mode over whole blocks, behind [`SessionCipher`] so that a
//! device with an AES peripheral, or a cloud using OpenSSL, can bring its own.

use aes::Aes128;
use aes::cipher::{Array, BlockModeEncrypt, InnerIvInit, KeyInit};
use core::fmt;

/// The AES block size; every ciphertext is a whole number of blocks.
pub const BLOCK_LEN: usize = 16;
/// The AES-128 key size.
pub const KEY_LEN: usize = 16;

/// The cipher could not run (a hardware or library failure; never caused by the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session cipher failure")]
pub struct CipherError;

/// AES-128-CBC without padding over data whose length is a multiple of [`BLOCK_LEN`].
///
/// The framing layer does the padding and the IV bookkeeping; an implementation only runs the
/// mode. Both methods work in place and are called with whole blocks only.
pub trait SessionCipher {
    /// A cipher for `key`.
    fn new(key: &[u8; KEY_LEN]) -> Self
    where
        Self: Sized;

    /// Encrypts `blocks` in place, chaining from `iv`.
    fn encrypt_cbc(&mut self, iv: &[u8; BLOCK_LEN], blocks: &mut [u8]) -> Result<(), CipherError>;

    /// Decrypts `blocks` in place, chaining from `iv`.
    fn decrypt_cbc(&mut self, iv: &[u8; BLOCK_LEN], blocks: &mut [u8]) -> Result<(), CipherError>;
}

/// The RustCrypto implementation (`aes` + `cbc`), no_std and heap-free. Its key schedule is
/// zeroized on drop.
///
/// On x86-64 and AArch64 the `aes` crate detects the AES instructions (AES-NI, ARMv8 crypto
/// extensions) at run time and uses them when present, with a constant-time software fallback;
/// no build flag is needed. On the Cortex-M3 the software path runs.
#[derive(Clone)]
pub struct Aes128Cbc {
    // Both key schedules, expanded once per session key.
    aes: Aes128,
}

impl fmt::Debug for Aes128Cbc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Aes128Cbc { .. }")
    }
}

fn as_blocks(data: &mut [u8]) -> Result<&mut [Array<u8, aes::cipher::consts::U16>], CipherError> {
    let (blocks, tail) = Array::slice_as_chunks_mut(data);
    if tail.is_empty() {
        Ok(blocks)
    } else {
        Err(CipherError)
    }
}

impl SessionCipher for Aes128Cbc {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let key = Array::from(*key);
        Aes128Cbc {
            aes: Aes128::new(&key),
        }
    }

    fn encrypt_cbc(&mut self, iv: &[u8; BLOCK_LEN], blocks: &mut [u8]) -> Result<(), CipherError> {
        let blocks = as_blocks(blocks)?;
        let mut mode = cbc::Encryptor::<&Aes128>::inner_iv_init(&self.aes, &Array::from(*iv));
        mode.encrypt_blocks(blocks);
        Ok(())
    }

    fn decrypt_cbc(&mut self, iv: &[u8; BLOCK_LEN], blocks: &mut [u8]) -> Result<(), CipherError> {
        let blocks = as_blocks(blocks)?;
        #[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
        {
            use aes::cipher::BlockModeDecrypt;
            let mut mode = cbc::Decryptor::<&Aes128>::inner_iv_init(&self.aes, &Array::from(*iv));
            mode.decrypt_blocks(blocks);
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
        decrypt_cbc_blockwise(&self.aes, iv, blocks);
        Ok(())
    }
}

/// CBC decryption one block at a time, for targets where the `aes` crate only has its software
/// backend (the Cortex-M3). CBC decryption is parallel, so the `cbc` crate hands the backend
/// batches of blocks; the software backend then links a second, batch-wide copy of the whole
/// inverse cipher (about 2.3 KB of Thumb code on the Core) for a speed that a device reading at
/// most 640 bytes per frame never needs. Encryption is sequential and links the one-block path
/// anyway, so this keeps a single inverse cipher in flash. Where the crate has AES instructions
/// (x86, x86-64, AArch64) the batched path is both fast and small, and is kept.
#[cfg(any(
    test,
    not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))
))]
fn decrypt_cbc_blockwise(
    aes: &Aes128,
    iv: &[u8; BLOCK_LEN],
    blocks: &mut [Array<u8, aes::cipher::consts::U16>],
) {
    use aes::cipher::BlockCipherDecrypt;
    let mut prev = *iv;
    for block in blocks {
        let mut cipher_text = [0u8; BLOCK_LEN];
        cipher_text.copy_from_slice(block);
        aes.decrypt_block(block);
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        prev = cipher_text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS-197 / SP 800-38A F.2.1 CBC-AES128.Encrypt, the first two blocks.
    #[test]
    fn sp800_38a_vector() {
        let key = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let plain = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a, 0xae, 0x2d, 0x8a, 0x57, 0x1e, 0x03, 0xac, 0x9c, 0x9e, 0xb7, 0x6f, 0xac,
            0x45, 0xaf, 0x8e, 0x51,
        ];
        let cipher = [
            0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2, 0x46, 0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9,
            0x19, 0x7d, 0x50, 0x86, 0xcb, 0x9b, 0x50, 0x72, 0x19, 0xee, 0x95, 0xdb, 0x11, 0x3a,
            0x91, 0x76, 0x78, 0xb2,
        ];
        let mut c = Aes128Cbc::new(&key);
        let mut buf = plain;
        c.encrypt_cbc(&iv, &mut buf).unwrap();
        assert_eq!(buf, cipher);
        c.decrypt_cbc(&iv, &mut buf).unwrap();
        assert_eq!(buf, plain);
        assert_eq!(c.encrypt_cbc(&iv, &mut buf[..15]), Err(CipherError));
    }

    /// The one-block-at-a-time decryption (the Cortex-M path) agrees with the `cbc` crate's
    /// batched one on every length up to a Core frame.
    #[test]
    fn blockwise_decryption_matches_the_batched_one() {
        let key: [u8; 16] = core::array::from_fn(|i| (i * 7 + 1) as u8);
        let iv: [u8; 16] = core::array::from_fn(|i| (i * 13 + 5) as u8);
        let mut c = Aes128Cbc::new(&key);
        for blocks in 1..=40 {
            let len = blocks * BLOCK_LEN;
            let plain: [u8; 640] = core::array::from_fn(|i| (i * 31 + blocks) as u8);
            let mut data = plain;
            c.encrypt_cbc(&iv, &mut data[..len]).unwrap();
            let mut batched = data;
            use aes::cipher::BlockModeDecrypt;
            let mut mode = cbc::Decryptor::<&Aes128>::inner_iv_init(&c.aes, &Array::from(iv));
            mode.decrypt_blocks(as_blocks(&mut batched[..len]).unwrap());
            decrypt_cbc_blockwise(&c.aes, &iv, as_blocks(&mut data[..len]).unwrap());
            assert_eq!(data[..len], plain[..len]);
            assert_eq!(batched[..len], plain[..len]);
        }
    }
}
