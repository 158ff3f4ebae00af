//! The heap-free RSA backend (feature `rsa-fixed`): RSA on fixed-size integers on the stack, for
//! a device without `alloc`.
//!
//! It covers what a Core does in the handshake: the private operation of its RSA-1024 key (with
//! the Chinese remainder theorem) and the public operations of an RSA-2048 server key
//! (encrypting the credentials, verifying the server's signature). Keys are borrowed from their
//! DER encoding ([`RsaPrivateKeyRef`], [`RsaPublicKeyRef`]), so a key kept in flash costs no RAM
//! until an operation runs. An operation's numbers live on the stack and are wiped after use;
//! the `*_in` methods keep the largest of them (about 780 bytes) in an [`RsaScratch`] the caller
//! lends instead, which is how a device runs the handshake in memory its open session uses later.
//!
//! | key | sizes | operations |
//! |---|---|---|
//! | [`FixedPublicKey`] | up to [`MAX_PUBLIC_BITS`] (2048) | PKCS#1 v1.5 encryption, unprefixed signature verification |
//! | [`FixedPrivateKey`] | up to [`MAX_PRIVATE_BITS`] (1024), two primes | PKCS#1 v1.5 decryption, unprefixed signing |
//!
//! # Side channels
//!
//! The private operation runs in time independent of the key's and the ciphertext's values:
//! Montgomery arithmetic whose loops depend only on lengths, a fixed-window exponentiation over
//! the whole width of each CRT exponent with masked table reads, CRT recombination with masked
//! reductions, and PKCS#1 v1.5 unpadding that scans the whole block and decides once at the end.
//! Each result is checked against the public key before use (`mᵉ = c`), so a fault during the
//! computation cannot leak a prime through a wrong signature or decryption.
//!
//! Two limits: no blinding (a device makes one private operation per connection, on a
//! ciphertext it fetched, and the arithmetic is already constant-time), and the
//! Cortex-M3's `UMULL` finishes early for small operands, so on that core the limb products
//! themselves leak a little timing; the handshake's [security
//! notes](crate::crypto::handshake#security-notes) apply.

mod montgomery;

use core::fmt;

use rand_core::CryptoRng;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater};
use zeroize::Zeroize;

use self::montgomery::{LIMB_BITS, LIMB_BYTES, Limb, MAX_LIMBS, Modulus, PowerTable, limbs_for};
use crate::crypto::backend::{
    RsaError, RsaPrivate, RsaPublic, RsaScratch, block_out, check_fits, pkcs1v15_encryption_block,
};
use crate::crypto::keys::{RsaPrivateKeyRef, RsaPublicKeyRef};

/// The largest public key this backend takes, in bits.
pub const MAX_PUBLIC_BITS: usize = 2048;
/// The largest private key this backend takes, in bits.
pub const MAX_PRIVATE_BITS: usize = 1024;

/// Limbs of one prime of the largest private key.
const HALF_LIMBS: usize = MAX_PRIVATE_BITS / 2 / LIMB_BITS;
/// Limbs of the largest private modulus.
const PRIVATE_LIMBS: usize = 2 * HALF_LIMBS;
const _: () = assert!(MAX_LIMBS * LIMB_BITS == MAX_PUBLIC_BITS);

/// The backend's share of an [`RsaScratch`]: the numbers of one operation at a time, the variants
/// overlapping in memory.
pub(crate) enum Scratch {
    /// Holding nothing.
    Idle,
    /// A public operation's modulus and Montgomery-form value.
    Public(PublicNumbers),
    /// One CRT half of the private operation and its exponentiation's window table.
    Private(PrivateNumbers),
}

pub(crate) struct PublicNumbers {
    n: Modulus<MAX_LIMBS>,
    base: [Limb; MAX_LIMBS],
}

pub(crate) struct PrivateNumbers {
    half: Half,
    table: PowerTable<HALF_LIMBS>,
}

impl Scratch {
    /// The public operation's numbers, zeroed if the scratch held others. (`None` cannot happen: the variant was
    /// just set.)
    fn public(&mut self) -> Option<&mut PublicNumbers> {
        if !matches!(self, Scratch::Public(_)) {
            *self = Scratch::Public(PublicNumbers {
                n: Modulus::zeroed(),
                base: [0; MAX_LIMBS],
            });
        }
        match self {
            Scratch::Public(numbers) => Some(numbers),
            _ => None,
        }
    }

    /// The private operation's numbers, as [`Self::public`].
    fn private(&mut self) -> Option<&mut PrivateNumbers> {
        if !matches!(self, Scratch::Private(_)) {
            *self = Scratch::Private(PrivateNumbers {
                half: Half::zeroed(),
                table: [[0; HALF_LIMBS]; 1 << montgomery::WINDOW],
            });
        }
        match self {
            Scratch::Private(numbers) => Some(numbers),
            _ => None,
        }
    }
}

/// `x = x^e mod n` on limbs, for a modulus of up to `N` limbs, with the modulus and the Montgomery-form value in the
/// caller's `n` and `base` (`base` is left zero); [`RsaError::BadInput`] unless `x < n`.
fn public_op_with<const N: usize>(
    key: &RsaPublicKeyRef<'_>,
    x: &mut [Limb; N],
    n: &mut Modulus<N>,
    base: &mut [Limb; N],
) -> Result<(), RsaError> {
    if !n.set(key.modulus()) {
        return Err(RsaError::InvalidKey);
    }
    let len = n.len();
    if !bool::from(montgomery::less_than(&x[..len], n.limbs())) || x[len..].iter().any(|&l| l != 0)
    {
        return Err(RsaError::BadInput);
    }
    n.enter_montgomery(base, x);
    n.pow_public(x, base, key.exponent());
    *base = *x;
    n.leave_montgomery(x, base);
    base.zeroize();
    Ok(())
}

/// [`public_op_with`] on the stack. Kept out of line so that its numbers occupy the stack only while it runs.
#[inline(never)]
fn public_op_limbs<const N: usize>(
    key: &RsaPublicKeyRef<'_>,
    x: &mut [Limb; N],
) -> Result<(), RsaError> {
    public_op_with(key, x, &mut Modulus::<N>::zeroed(), &mut [0; N])
}

/// [`public_op_with`] for the widest modulus, in the scratch.
#[inline(never)]
fn public_op_in(
    key: &RsaPublicKeyRef<'_>,
    x: &mut [Limb; MAX_LIMBS],
    scratch: &mut Scratch,
) -> Result<(), RsaError> {
    let PublicNumbers { n, base } = scratch.public().ok_or(RsaError::Backend)?;
    public_op_with(key, x, n, base)
}

/// An RSA public key for the heap-free backend, borrowed from its encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FixedPublicKey<'a> {
    key: RsaPublicKeyRef<'a>,
}

impl fmt::Debug for FixedPublicKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FixedPublicKey({} bits)", self.key.bits())
    }
}

impl<'a> FixedPublicKey<'a> {
    /// Takes a key of up to [`MAX_PUBLIC_BITS`] bits.
    pub fn new(key: &RsaPublicKeyRef<'a>) -> Result<Self, RsaError> {
        // The key view guarantees an odd modulus and an odd exponent above 1.
        if key.bits() > MAX_PUBLIC_BITS || key.bits() < 512 {
            return Err(RsaError::InvalidKey);
        }
        Ok(FixedPublicKey { key: *key })
    }

    /// Reads a key from DER (SPKI or PKCS#1), as the Core stores the server key.
    pub fn from_der(der: &'a [u8]) -> Result<Self, RsaError> {
        let key = RsaPublicKeyRef::from_der(der).map_err(|_| RsaError::InvalidKey)?;
        Self::new(&key)
    }

    /// The key it was made from.
    #[must_use]
    pub fn key(&self) -> &RsaPublicKeyRef<'a> {
        &self.key
    }
}

impl RsaPublic for FixedPublicKey<'_> {
    fn modulus_len(&self) -> usize {
        self.key.modulus_len()
    }

    fn encrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        self.encrypt_pkcs1v15_in(rng, message, out, &mut RsaScratch::new())
    }

    fn verify_pkcs1v15_unprefixed(&self, message: &[u8], signature: &[u8]) -> Result<(), RsaError> {
        self.verify_pkcs1v15_unprefixed_in(message, signature, &mut RsaScratch::new())
    }

    fn encrypt_pkcs1v15_in<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
        out: &mut [u8],
        scratch: &mut RsaScratch,
    ) -> Result<usize, RsaError> {
        let k = self.modulus_len();
        let out = block_out(out, k)?;
        // The block is built in `out` and read from there into limbs before the result is written back: no second
        // block-sized buffer on the stack.
        pkcs1v15_encryption_block(rng, message, out)?;
        let mut x = [0; MAX_LIMBS];
        let loaded = montgomery::load(out, &mut x);
        out.zeroize();
        if !loaded {
            return Err(RsaError::BadInput);
        }
        let done = public_op_in(&self.key, &mut x, &mut scratch.fixed);
        if done.is_ok() {
            montgomery::store(&x, out);
        }
        x.zeroize();
        done.map(|()| k)
    }

    #[inline(never)]
    fn verify_pkcs1v15_unprefixed_in(
        &self,
        message: &[u8],
        signature: &[u8],
        scratch: &mut RsaScratch,
    ) -> Result<(), RsaError> {
        let k = self.modulus_len();
        if signature.len() != k || message.len() + 11 > k {
            return Err(RsaError::Verification);
        }
        let mut x = [0; MAX_LIMBS];
        if !montgomery::load(signature, &mut x)
            || public_op_in(&self.key, &mut x, &mut scratch.fixed).is_err()
        {
            return Err(RsaError::Verification);
        }
        // Compared byte by byte with `00 01 FF…FF 00 message`, read straight from the limbs (all public).
        let sep = k - message.len() - 1;
        let matches = (0..k).all(|i| {
            let at = k - 1 - i;
            let byte = (x[at / LIMB_BYTES] >> (8 * (at % LIMB_BYTES))) as u8;
            byte == match i {
                0 => 0,
                1 => 1,
                i if i < sep => 0xff,
                i if i == sep => 0,
                i => message[i - sep - 1],
            }
        });
        if matches {
            Ok(())
        } else {
            Err(RsaError::Verification)
        }
    }
}

/// `00 01 FF…FF 00 message` filling `block` (the caller checked `message.len() + 11 <= k`).
fn signature_block(message: &[u8], block: &mut [u8]) {
    let k = block.len();
    let sep = k - message.len() - 1;
    block.fill(0xff);
    block[0] = 0;
    block[1] = 1;
    block[sep] = 0;
    block[sep + 1..].copy_from_slice(message);
}

/// Where the message starts in a type 2 block `00 02 PS 00 message` (PS at least eight
/// non-zero bytes), and whether the block has that shape. Every byte is examined whatever the
/// block holds, and no branch depends on it.
fn unpad_encryption_block(block: &[u8]) -> (Choice, usize) {
    let mut good = block[0].ct_eq(&0) & block[1].ct_eq(&2);
    let mut looking = Choice::from(1);
    let mut sep = 0u32;
    for (i, &b) in block.iter().enumerate().skip(2) {
        let zero = b.ct_eq(&0);
        sep.conditional_assign(&(i as u32), looking & zero);
        looking &= !zero;
    }
    good &= !looking;
    good &= sep.ct_gt(&9);
    (good, sep as usize + 1)
}

/// An RSA private key for the heap-free backend (two primes, up to [`MAX_PRIVATE_BITS`]),
/// borrowed from its encoding. Its `Debug` output shows the size only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FixedPrivateKey<'a> {
    key: RsaPrivateKeyRef<'a>,
}

impl fmt::Debug for FixedPrivateKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FixedPrivateKey({} bits)", self.key.bits())
    }
}

/// The numbers of one CRT half: a prime and its exponent.
struct Half {
    prime: Modulus<HALF_LIMBS>,
    exponent: [Limb; HALF_LIMBS],
}

impl Drop for Half {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl Half {
    fn new(prime: &[u8], exponent: &[u8], limbs: usize) -> Result<Self, RsaError> {
        let mut half = Half::zeroed();
        half.set(prime, exponent, limbs)?;
        Ok(half)
    }

    fn zeroed() -> Self {
        Half {
            prime: Modulus::zeroed(),
            exponent: [0; HALF_LIMBS],
        }
    }

    /// Loads a prime and its exponent in place (a returned `Half` would be one more copy on the stack).
    fn set(&mut self, prime: &[u8], exponent: &[u8], limbs: usize) -> Result<(), RsaError> {
        if !self.prime.set(prime)
            || self.prime.len() != limbs
            || !montgomery::load(exponent, &mut self.exponent[..limbs])
        {
            return Err(RsaError::InvalidKey);
        }
        Ok(())
    }

    /// Clears the prime and the exponent.
    fn wipe(&mut self) {
        self.exponent.zeroize();
        self.prime.wipe();
    }

    /// `c^exponent mod prime` in Montgomery form, for `c` (big-endian) below `R²`, `R = 2^(LIMB_BITS · limbs)`.
    #[inline(never)]
    fn exponentiate(
        &self,
        c: &[u8],
        limbs: usize,
        out: &mut [Limb; HALF_LIMBS],
        table: &mut PowerTable<HALF_LIMBS>,
    ) {
        let p = &self.prime;
        let split = c.len().saturating_sub(limbs * LIMB_BYTES);
        let (mut lo, mut hi) = ([0; HALF_LIMBS], [0; HALF_LIMBS]);
        // The caller checked that c has the modulus's length, which fits 2 · limbs limbs.
        montgomery::load(&c[split..], &mut lo[..limbs]);
        montgomery::load(&c[..split], &mut hi[..limbs]);
        // c mod p in Montgomery form: c·R = hi·R² + lo·R, each term from factors below R and p.
        p.enter_montgomery(out, &hi);
        p.enter_montgomery(&mut hi, out);
        p.enter_montgomery(out, &lo);
        p.add_assign(&mut hi, out);
        p.pow_secret(out, &hi, &self.exponent, table);
        lo.zeroize();
        hi.zeroize();
    }
}

impl<'a> FixedPrivateKey<'a> {
    /// Takes a key of up to [`MAX_PRIVATE_BITS`] bits and checks that its primes, CRT
    /// coefficient and modulus agree (`p·q = n`, `q·qInv ≡ 1 mod p`); wrong CRT exponents are
    /// caught by the check every operation makes.
    pub fn new(key: &RsaPrivateKeyRef<'a>) -> Result<Self, RsaError> {
        if key.bits() > MAX_PRIVATE_BITS || key.bits() < 512 {
            return Err(RsaError::InvalidKey);
        }
        let this = FixedPrivateKey { key: *key };
        let limbs = this.half_limbs();
        let p = Half::new(key.prime1(), key.exponent1(), limbs)?;
        let q = Half::new(key.prime2(), key.exponent2(), limbs)?;
        let mut n = [0; PRIVATE_LIMBS];
        let mut pq = [0; PRIVATE_LIMBS];
        montgomery::mul(&mut pq[..2 * limbs], p.prime.limbs(), q.prime.limbs());
        let n_ok = montgomery::load(key.public_key().modulus(), &mut n[..2 * limbs])
            && bool::from(montgomery::equal(&n, &pq));
        // q·qInv / R, back to q·qInv with a second multiplication by R² / R.
        let mut qinv = [0; HALF_LIMBS];
        let qinv_ok = montgomery::load(key.coefficient(), &mut qinv[..limbs])
            && bool::from(montgomery::less_than(&qinv[..limbs], p.prime.limbs()));
        let mut product = [0; HALF_LIMBS];
        let mut one = [0; HALF_LIMBS];
        if qinv_ok {
            let mut t = [0; HALF_LIMBS];
            p.prime.mul(&mut t, &qinv, q.prime.value());
            p.prime.enter_montgomery(&mut product, &t);
            one[0] = 1;
        }
        let crt_ok = qinv_ok && bool::from(montgomery::equal(&product, &one));
        pq.zeroize();
        qinv.zeroize();
        product.zeroize();
        if n_ok && crt_ok {
            Ok(this)
        } else {
            Err(RsaError::InvalidKey)
        }
    }

    /// Reads a key from DER (PKCS#1 or PKCS#8), as the Core stores its own key.
    pub fn from_der(der: &'a [u8]) -> Result<Self, RsaError> {
        let key = RsaPrivateKeyRef::from_der(der).map_err(|_| RsaError::InvalidKey)?;
        Self::new(&key)
    }

    /// The key it was made from.
    #[must_use]
    pub fn key(&self) -> &RsaPrivateKeyRef<'a> {
        &self.key
    }

    fn half_limbs(&self) -> usize {
        limbs_for(self.key.prime1().len().max(self.key.prime2().len()))
    }

    /// `m = c^d mod n` by the CRT, unchecked. Out of line: the two halves and their temporaries then occupy the
    /// stack only while they run, and the check that follows in [`Self::private_op`] runs on a small frame.
    #[inline(never)]
    fn crt(
        &self,
        c: &[u8],
        m: &mut [Limb; PRIVATE_LIMBS],
        numbers: &mut PrivateNumbers,
    ) -> Result<(), RsaError> {
        let done = self.crt_with(c, m, numbers);
        numbers.half.wipe();
        done
    }

    /// [`Self::crt`], with the prime being worked on and the window table in `numbers` (left holding the last
    /// prime; the table is left zero).
    fn crt_with(
        &self,
        c: &[u8],
        m: &mut [Limb; PRIVATE_LIMBS],
        numbers: &mut PrivateNumbers,
    ) -> Result<(), RsaError> {
        let limbs = self.half_limbs();
        let PrivateNumbers { half, table } = numbers;
        // One half at a time: each prime's numbers replace the other's in the same place.
        let mut m2 = [0; HALF_LIMBS];
        {
            let q = &mut *half;
            q.set(self.key.prime2(), self.key.exponent2(), limbs)?;
            let mut t = [0; HALF_LIMBS];
            q.exponentiate(c, limbs, &mut t, table);
            q.prime.leave_montgomery(&mut m2, &t);
            t.zeroize();
        }
        let mut m1 = [0; HALF_LIMBS];
        {
            let p = &mut *half;
            p.set(self.key.prime1(), self.key.exponent1(), limbs)?;
            p.exponentiate(c, limbs, &mut m1, table);
            // h = (m1 - m2)·qInv mod p: with m1 in Montgomery form and qInv in plain form, one Montgomery
            // multiplication leaves the product in plain form.
            let mut t = [0; HALF_LIMBS];
            p.prime.enter_montgomery(&mut t, &m2);
            p.prime.sub_assign(&mut m1, &t);
            montgomery::load(self.key.coefficient(), &mut t[..limbs]);
            p.prime.mul_assign(&mut m1, &t);
            t.zeroize();
        }
        // m = m2 + h·q, below n.
        let mut q = [0; HALF_LIMBS];
        // `Half::set` loaded the same bytes into `limbs` limbs above.
        montgomery::load(self.key.prime2(), &mut q[..limbs]);
        montgomery::mul(&mut m[..2 * limbs], &m1[..limbs], &q[..limbs]);
        let mut carry = montgomery::add_masked(&mut m[..limbs], &m2[..limbs], Limb::MAX);
        for l in &mut m[limbs..2 * limbs] {
            let (s, c) = l.overflowing_add(carry);
            *l = s;
            carry = Limb::from(c);
        }
        m1.zeroize();
        m2.zeroize();
        q.zeroize();
        Ok(())
    }

    /// `c^d mod n` by the CRT into `out` (the modulus length), checked against `mᵉ = c`; on any failure `out` is
    /// left zero.
    #[inline(never)]
    fn private_op(&self, c: &[u8], out: &mut [u8], scratch: &mut Scratch) -> Result<(), RsaError> {
        let public = self.key.public_key();
        let k = public.modulus_len();
        // Both big-endian and k bytes long: byte order is numeric order (both public).
        if c.len() != k || out.len() != k || c >= public.modulus() {
            return Err(RsaError::BadInput);
        }
        let mut m = [0; PRIVATE_LIMBS];
        self.crt(c, &mut m, scratch.private().ok_or(RsaError::Backend)?)?;
        // The check: mᵉ mod n = c, on the public key. m goes out first; its limbs then hold mᵉ.
        montgomery::store(&m, out);
        let checked = public_op_limbs(&public, &mut m).is_ok() && {
            let mut equal = Choice::from(1);
            for (i, &byte) in c.iter().enumerate() {
                let at = k - 1 - i;
                equal &= byte.ct_eq(&((m[at / LIMB_BYTES] >> (8 * (at % LIMB_BYTES))) as u8));
            }
            bool::from(equal)
        };
        if !checked {
            out.fill(0);
        }
        m.zeroize();
        if checked {
            Ok(())
        } else {
            Err(RsaError::InvalidKey)
        }
    }
}

impl RsaPrivate for FixedPrivateKey<'_> {
    fn modulus_len(&self) -> usize {
        self.key.public_key().modulus_len()
    }

    fn decrypt_pkcs1v15<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RsaError> {
        self.decrypt_pkcs1v15_in(rng, ciphertext, out, &mut RsaScratch::new())
    }

    #[inline(never)]
    fn decrypt_pkcs1v15_in<R: CryptoRng + ?Sized>(
        &self,
        _rng: &mut R,
        ciphertext: &[u8],
        out: &mut [u8],
        scratch: &mut RsaScratch,
    ) -> Result<usize, RsaError> {
        let k = self.modulus_len();
        if ciphertext.len() != k {
            return Err(RsaError::BadInput);
        }
        let mut block = [0u8; MAX_PRIVATE_BITS / 8];
        let block = &mut block[..k];
        let done = self.private_op(ciphertext, block, &mut scratch.fixed);
        let (good, start) = unpad_encryption_block(block);
        let result = match done {
            Err(e) => Err(e),
            // Only now, with the whole block examined, does the outcome branch.
            Ok(()) if !bool::from(good) => Err(RsaError::Decryption),
            Ok(()) => {
                let message = &block[start..];
                match out.get_mut(..message.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(message);
                        Ok(message.len())
                    }
                    None => Err(RsaError::InsufficientSize {
                        required: message.len(),
                    }),
                }
            }
        };
        block.zeroize();
        result
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
        let mut block = [0u8; MAX_PRIVATE_BITS / 8];
        signature_block(message, &mut block[..k]);
        self.private_op(&block[..k], out, &mut RsaScratch::new().fixed)
            .map(|()| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpad(block: &[u8]) -> Option<&[u8]> {
        let (good, start) = unpad_encryption_block(block);
        bool::from(good).then(|| &block[start..])
    }

    #[test]
    fn type_2_blocks_are_unpadded_only_when_well_formed() {
        let mut block = [0x5au8; 32];
        block[0] = 0;
        block[1] = 2;
        block[20] = 0;
        assert_eq!(unpad(&block), Some(&[0x5a; 11][..]));
        // The message may be empty.
        let mut empty = [0x11u8; 16];
        empty[..2].copy_from_slice(&[0, 2]);
        empty[15] = 0;
        assert_eq!(unpad(&empty), Some(&[][..]));
        // Wrong leading bytes, no separator, or fewer than eight padding bytes.
        let mut bad = block;
        bad[0] = 1;
        assert_eq!(unpad(&bad), None);
        let mut bad = block;
        bad[1] = 1;
        assert_eq!(unpad(&bad), None);
        let mut bad = block;
        bad[20] = 7;
        assert_eq!(unpad(&bad), None);
        let mut bad = block;
        bad[9] = 0;
        assert_eq!(unpad(&bad), None);
        // Eight padding bytes are enough: the separator at index 10.
        let mut edge = block;
        edge[10] = 0;
        assert_eq!(unpad(&edge), Some(&block[11..]));
    }

    #[test]
    fn signature_blocks_have_the_pkcs1_type_1_shape() {
        let mut block = [0u8; 16];
        signature_block(&[9, 8, 7], &mut block);
        assert_eq!(
            block,
            [
                0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 9, 8, 7
            ]
        );
    }

    /// After a private operation in a lent scratch, the scratch still holds its numbers' place but no prime, no
    /// exponent and no power of the ciphertext: what is lent back to the event queue carries no secret.
    #[cfg(feature = "rsa")]
    #[test]
    fn a_lent_scratch_is_wiped_after_each_operation() {
        use rand::SeedableRng;

        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let owned = crate::crypto::RsaPrivateKey::generate(&mut rng, 1024).unwrap();
        let private = FixedPrivateKey::new(&owned.as_ref_key()).unwrap();
        let public_key = owned.public_key();
        let public = FixedPublicKey::new(&public_key.as_ref_key()).unwrap();
        let mut scratch = RsaScratch::new();
        let mut ciphertext = [0u8; 128];
        public
            .encrypt_pkcs1v15_in(&mut rng, b"lent", &mut ciphertext, &mut scratch)
            .unwrap();
        let Scratch::Public(numbers) = &scratch.fixed else {
            panic!("the public operation did not use the scratch");
        };
        assert!(numbers.base.iter().all(|&l| l == 0));
        let mut plain = [0u8; 8];
        let n = private
            .decrypt_pkcs1v15_in(&mut rng, &ciphertext, &mut plain, &mut scratch)
            .unwrap();
        assert_eq!(&plain[..n], b"lent");
        let Scratch::Private(numbers) = &scratch.fixed else {
            panic!("the private operation did not use the scratch");
        };
        assert!(numbers.half.prime.value().iter().all(|&l| l == 0));
        assert!(numbers.half.exponent.iter().all(|&l| l == 0));
        assert!(numbers.table.iter().flatten().all(|&l| l == 0));
        // A failed operation (ciphertext out of range) wipes it too, and the scratch serves the next one.
        let mut scratch = RsaScratch::new();
        assert_eq!(
            private.decrypt_pkcs1v15_in(&mut rng, &[0xff; 128], &mut plain, &mut scratch),
            Err(RsaError::BadInput)
        );
        public
            .encrypt_pkcs1v15_in(&mut rng, b"again", &mut ciphertext, &mut scratch)
            .unwrap();
        let n = private
            .decrypt_pkcs1v15_in(&mut rng, &ciphertext, &mut plain, &mut scratch)
            .unwrap();
        assert_eq!(&plain[..n], b"again");
    }

    #[test]
    fn small_or_large_keys_are_refused() {
        let n = [0xc5u8; 2048 / 8 + 1];
        let key = RsaPublicKeyRef::new(&n, &[1, 0, 1]).unwrap();
        assert_eq!(FixedPublicKey::new(&key), Err(RsaError::InvalidKey));
        let key = RsaPublicKeyRef::new(&n[..32], &[3]).unwrap();
        assert_eq!(FixedPublicKey::new(&key), Err(RsaError::InvalidKey));
    }
}
