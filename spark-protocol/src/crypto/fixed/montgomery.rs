//! Multi-precision arithmetic modulo an odd number, in Montgomery form, over little-endian limb
//! slices the caller owns. No heap, no recursion, and no branch or index that depends on a
//! number's value: only lengths (public) steer the loops. Values of secrets move through
//! `subtle`'s masked selections.
//!
//! One copy of each routine serves every size (the slices carry the length), which keeps the
//! flash cost of supporting 512-, 1024- and 2048-bit moduli to one set of loops.

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

// Limbs as wide as the target's multiplier gives a double-width product for.
#[cfg(target_pointer_width = "64")]
pub(crate) type Limb = u64;
#[cfg(target_pointer_width = "64")]
type Wide = u128;
#[cfg(not(target_pointer_width = "64"))]
pub(crate) type Limb = u32;
#[cfg(not(target_pointer_width = "64"))]
type Wide = u64;

pub(crate) const LIMB_BYTES: usize = core::mem::size_of::<Limb>();
pub(crate) const LIMB_BITS: usize = Limb::BITS as usize;

/// The widest modulus handled: RSA-2048.
pub(crate) const MAX_LIMBS: usize = 2048 / LIMB_BITS;

/// Exponent bits per step of the secret exponentiation: a table of 2^WINDOW powers. Three bits take half the stack of
/// four (512 B less for a 512-bit prime) for about 7 % more multiplications.
pub(crate) const WINDOW: usize = 3;

/// The powers of the base that [`Modulus::pow_secret`] reads its windows from, held by the caller.
pub(crate) type PowerTable<const N: usize> = [[Limb; N]; 1 << WINDOW];

/// The limbs needed for `bytes` bytes.
pub(crate) const fn limbs_for(bytes: usize) -> usize {
    bytes.div_ceil(LIMB_BYTES)
}

/// Loads a big-endian magnitude into `out` (zero-extended); false if it does not fit.
pub(crate) fn load(bytes: &[u8], out: &mut [Limb]) -> bool {
    if bytes.len() > out.len() * LIMB_BYTES {
        return false;
    }
    out.fill(0);
    for (i, &b) in bytes.iter().rev().enumerate() {
        out[i / LIMB_BYTES] |= Limb::from(b) << (8 * (i % LIMB_BYTES));
    }
    true
}

/// Stores `x` big-endian into all of `out` (the value must fit; higher limbs are dropped).
pub(crate) fn store(x: &[Limb], out: &mut [u8]) {
    let k = out.len();
    for (i, byte) in out.iter_mut().enumerate() {
        let at = k - 1 - i;
        *byte = x
            .get(at / LIMB_BYTES)
            .map_or(0, |l| (l >> (8 * (at % LIMB_BYTES))) as u8);
    }
}

/// `dst = src` where `choice` is set, in constant time.
pub(crate) fn select(dst: &mut [Limb], src: &[Limb], choice: Choice) {
    for (d, s) in dst.iter_mut().zip(src) {
        d.conditional_assign(s, choice);
    }
}

fn bit(x: Limb) -> Choice {
    Choice::from((x & 1) as u8)
}

/// Whether `a < b`, by the borrow of `a - b` (constant time).
pub(crate) fn less_than(a: &[Limb], b: &[Limb]) -> Choice {
    let mut borrow = 0;
    for (&x, &y) in a.iter().zip(b) {
        let (d, b1) = x.overflowing_sub(y);
        let (_, b2) = d.overflowing_sub(borrow);
        borrow = Limb::from(b1 | b2);
    }
    bit(borrow)
}

/// `a -= b & mask` limb by limb, `mask` all ones or zero; returns the borrow.
fn sub_masked(a: &mut [Limb], b: &[Limb], mask: Limb) -> Limb {
    let mut borrow = 0;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d, b1) = x.overflowing_sub(y & mask);
        let (d, b2) = d.overflowing_sub(borrow);
        *x = d;
        borrow = Limb::from(b1 | b2);
    }
    borrow
}

/// `a += b & mask`; returns the carry.
pub(crate) fn add_masked(a: &mut [Limb], b: &[Limb], mask: Limb) -> Limb {
    let mut carry = 0;
    for (x, &y) in a.iter_mut().zip(b) {
        let (s, c1) = x.overflowing_add(y & mask);
        let (s, c2) = s.overflowing_add(carry);
        *x = s;
        carry = Limb::from(c1 | c2);
    }
    carry
}

/// All ones where `choice` is set, zero otherwise.
fn mask(choice: Choice) -> Limb {
    Limb::from(choice.unwrap_u8()).wrapping_neg()
}

/// Whether `a == b` (constant time).
pub(crate) fn equal(a: &[Limb], b: &[Limb]) -> Choice {
    a.ct_eq(b)
}

/// `out = a · b` for `out.len() == a.len() + b.len()`, schoolbook.
pub(crate) fn mul(out: &mut [Limb], a: &[Limb], b: &[Limb]) {
    out.fill(0);
    for (i, &bi) in b.iter().enumerate() {
        let mut carry: Wide = 0;
        for (j, &aj) in a.iter().enumerate() {
            let s = Wide::from(out[i + j]) + Wide::from(aj) * Wide::from(bi) + carry;
            out[i + j] = s as Limb;
            carry = s >> LIMB_BITS;
        }
        out[i + a.len()] = carry as Limb;
    }
}

/// An odd modulus with what Montgomery multiplication needs: `-m⁻¹ mod 2^LIMB_BITS` and
/// `R² mod m` for `R = 2^(LIMB_BITS · len)`. Up to `N` limbs.
pub(crate) struct Modulus<const N: usize> {
    m: [Limb; N],
    len: usize,
    m0_neg_inv: Limb,
    r2: [Limb; N],
}

impl<const N: usize> Modulus<N> {
    /// A modulus of zero limbs, to be [`set`](Self::set).
    pub(crate) const fn zeroed() -> Self {
        Modulus {
            m: [0; N],
            len: 0,
            m0_neg_inv: 0,
            r2: [0; N],
        }
    }

    /// Sets up an odd modulus given big-endian without leading zeros; false if it is even, below 3 or wider than
    /// `N` limbs. Its length, not its value, decides the running time. Works in place, so that a caller's frame
    /// holds the one copy.
    // Out of line: callers' frames then hold no copy of its temporaries.
    #[inline(never)]
    pub(crate) fn set(&mut self, bytes: &[u8]) -> bool {
        let len = limbs_for(bytes.len());
        self.len = 0;
        if len == 0 || len > N || !load(bytes, &mut self.m[..len]) || self.m[0] & 1 == 0 {
            return false;
        }
        let bits = bytes.len() * 8 - bytes[0].leading_zeros() as usize;
        if bits < 2 {
            return false;
        }
        self.len = len;
        // Newton's iteration doubles the correct low bits from 3 (x·x ≡ 1 mod 8 for odd x).
        let m0 = self.m[0];
        let mut inv = m0;
        for _ in 0..6 {
            inv = inv.wrapping_mul((2 as Limb).wrapping_sub(m0.wrapping_mul(inv)));
        }
        self.m0_neg_inv = inv.wrapping_neg();
        // R² by doubling 2^(bits-1) (below m) up to 2^(L + L/32) and then squaring five times
        // in Montgomery form: x ↦ x²/R takes 2^(L + s) to 2^(L + 2s), so five squarings turn
        // s = L/32 into L, and 2^(2L) is R².
        let l = len * LIMB_BITS;
        let mut x = [0; N];
        x[(bits - 1) / LIMB_BITS] = 1 << ((bits - 1) % LIMB_BITS);
        for _ in 0..(l - bits + 1 + l / 32) {
            self.double(&mut x);
        }
        for _ in 0..5 {
            self.square_assign(&mut x);
        }
        self.r2 = x;
        true
    }

    /// [`zeroed`](Self::zeroed) and [`set`](Self::set) in one, for tests and small moduli.
    #[cfg(test)]
    pub(crate) fn new(bytes: &[u8]) -> Option<Self> {
        let mut m = Self::zeroed();
        m.set(bytes).then_some(m)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn limbs(&self) -> &[Limb] {
        &self.m[..self.len]
    }

    /// The modulus, zero-extended to `N` limbs.
    pub(crate) fn value(&self) -> &[Limb; N] {
        &self.m
    }

    /// Clears the modulus and its constants (for a secret prime).
    pub(crate) fn wipe(&mut self) {
        self.m.zeroize();
        self.r2.zeroize();
        self.m0_neg_inv = 0;
    }

    /// `x = 2x mod m` for `x < m`.
    fn double(&self, x: &mut [Limb; N]) {
        let n = self.len;
        let mut carry = 0;
        for l in &mut x[..n] {
            let top = *l >> (LIMB_BITS - 1);
            *l = (*l << 1) | carry;
            carry = top;
        }
        self.reduce_once(x, carry);
    }

    /// Subtracts m once from `carry·R + x` (known below 2m), in place: a first pass learns whether x < m (only then,
    /// with no carry, is x kept), a second subtracts m under a mask.
    fn reduce_once(&self, x: &mut [Limb; N], carry: Limb) {
        let n = self.len;
        let keep = less_than(&x[..n], self.limbs()) & !bit(carry);
        sub_masked(&mut x[..n], self.limbs(), mask(!keep));
    }

    /// `out = a · b / R mod m` for `a · b < m · R` (either factor below m, the other below R).
    // Out of line: callers' frames then hold no copy of its temporaries.
    #[inline(never)]
    pub(crate) fn mul(&self, out: &mut [Limb; N], a: &[Limb; N], b: &[Limb; N]) {
        let carry = self.product(out, a, |i| b[i]);
        self.reduce_once(out, carry);
    }

    /// `x = x · b / R mod m`.
    // Out of line: callers' frames then hold no copy of its temporaries.
    #[inline(never)]
    pub(crate) fn mul_assign(&self, x: &mut [Limb; N], b: &[Limb; N]) {
        let mut t = [0; N];
        self.mul(&mut t, x, b);
        *x = t;
        t.zeroize();
    }

    /// `x = x² / R mod m`.
    // Out of line: callers' frames then hold no copy of its temporaries.
    #[inline(never)]
    pub(crate) fn square_assign(&self, x: &mut [Limb; N]) {
        let mut t = [0; N];
        self.mul(&mut t, x, x);
        *x = t;
        t.zeroize();
    }

    /// Coarsely integrated operand scanning: `t = a · b / R`, below 2m, plus the carry out of t's top limb. `b`
    /// gives its limbs by index, so that multiplying by a small constant needs no array.
    fn product(&self, t: &mut [Limb; N], a: &[Limb; N], b: impl Fn(usize) -> Limb) -> Limb {
        let n = self.len;
        let m = self.limbs();
        t.fill(0);
        let mut t_hi: Limb = 0;
        for i in 0..n {
            let bi = Wide::from(b(i));
            let mut carry: Wide = 0;
            for (tj, &aj) in t[..n].iter_mut().zip(&a[..n]) {
                let s = Wide::from(*tj) + Wide::from(aj) * bi + carry;
                *tj = s as Limb;
                carry = s >> LIMB_BITS;
            }
            let s = Wide::from(t_hi) + carry;
            t_hi = s as Limb;
            let t_top = (s >> LIMB_BITS) as Limb;

            let u = Wide::from(t[0].wrapping_mul(self.m0_neg_inv));
            let mut carry = (Wide::from(t[0]) + u * Wide::from(m[0])) >> LIMB_BITS;
            for j in 1..n {
                let s = Wide::from(t[j]) + u * Wide::from(m[j]) + carry;
                t[j - 1] = s as Limb;
                carry = s >> LIMB_BITS;
            }
            let s = Wide::from(t_hi) + carry;
            t[n - 1] = s as Limb;
            t_hi = t_top + (s >> LIMB_BITS) as Limb;
        }
        t_hi
    }

    /// `x · R mod m` for `x < R`: into Montgomery form (reduces any x of `len` limbs).
    pub(crate) fn enter_montgomery(&self, out: &mut [Limb; N], x: &[Limb; N]) {
        self.mul(out, x, &self.r2);
    }

    /// `x / R mod m`: out of Montgomery form.
    // Out of line: callers' frames then hold no copy of its temporaries.
    #[inline(never)]
    pub(crate) fn leave_montgomery(&self, out: &mut [Limb; N], x: &[Limb; N]) {
        let carry = self.product(out, x, |i| Limb::from(i == 0));
        self.reduce_once(out, carry);
    }

    /// `out = R mod m`: one, in Montgomery form. Written in place: a returned array would be one more `N` limbs
    /// in the caller's frame.
    pub(crate) fn set_one(&self, out: &mut [Limb; N]) {
        self.leave_montgomery(out, &self.r2);
    }

    /// `a = a + b mod m` for `a, b < m`.
    pub(crate) fn add_assign(&self, a: &mut [Limb; N], b: &[Limb; N]) {
        let carry = add_masked(&mut a[..self.len], &b[..self.len], Limb::MAX);
        self.reduce_once(a, carry);
    }

    /// `a = a - b mod m` for `a, b < m`: subtract, then add m back under the borrow's mask.
    pub(crate) fn sub_assign(&self, a: &mut [Limb; N], b: &[Limb; N]) {
        let n = self.len;
        let borrow = sub_masked(&mut a[..n], &b[..n], Limb::MAX);
        add_masked(&mut a[..n], self.limbs(), mask(bit(borrow)));
    }

    /// `base^exponent` in Montgomery form, for a secret exponent of `len` limbs: a fixed window of
    /// [`WINDOW`] bits over every bit of the exponent's width, each table entry read by a masked scan of the whole
    /// table, so neither the exponent's bits nor its length show in time. The table is the caller's (lent memory
    /// rather than stack); it is left zero.
    pub(crate) fn pow_secret(
        &self,
        out: &mut [Limb; N],
        base: &[Limb; N],
        exponent: &[Limb; N],
        table: &mut PowerTable<N>,
    ) {
        let n = self.len;
        let bits = n * LIMB_BITS;
        self.set_one(&mut table[0]);
        table[1] = *base;
        for i in 2..table.len() {
            let prev = table[i - 1];
            self.mul(&mut table[i], &prev, base);
        }
        *out = table[0];
        let mut entry = [0; N];
        for w in (0..bits.div_ceil(WINDOW)).rev() {
            let mut digit = 0u8;
            for j in (0..WINDOW).rev() {
                let at = w * WINDOW + j;
                let b = if at < bits {
                    (exponent[at / LIMB_BITS] >> (at % LIMB_BITS)) & 1
                } else {
                    0
                };
                digit = (digit << 1) | b as u8;
                self.square_assign(out);
            }
            for (i, candidate) in table.iter().enumerate() {
                select(&mut entry[..n], &candidate[..n], digit.ct_eq(&(i as u8)));
            }
            self.mul_assign(out, &entry);
        }
        table.zeroize();
        entry.zeroize();
    }

    /// `base^exponent` in Montgomery form for a public exponent (big-endian, no leading zeros):
    /// square and multiply, in time that depends on the exponent.
    pub(crate) fn pow_public(&self, out: &mut [Limb; N], base: &[Limb; N], exponent: &[u8]) {
        // Starts from the exponent's top bit (public, so skipping its leading zeros is fine): no table, no one.
        let mut started = false;
        for &byte in exponent {
            for i in (0..8).rev() {
                let set = (byte >> i) & 1 == 1;
                if started {
                    self.square_assign(out);
                    if set {
                        self.mul_assign(out, base);
                    }
                } else if set {
                    *out = *base;
                    started = true;
                }
            }
        }
        if !started {
            self.set_one(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num<const N: usize>(v: u128) -> [Limb; N] {
        let mut x = [0; N];
        load(&v.to_be_bytes(), &mut x);
        x
    }

    fn value<const N: usize>(x: &[Limb; N]) -> u128 {
        let mut b = [0u8; 16];
        store(x, &mut b);
        u128::from_be_bytes(b)
    }

    fn pow_mod(mut b: u128, mut e: u128, m: u128) -> u128 {
        // m < 2^63 keeps every product in a u128.
        let mut r = 1 % m;
        b %= m;
        while e > 0 {
            if e & 1 == 1 {
                r = r * b % m;
            }
            b = b * b % m;
            e >>= 1;
        }
        r
    }

    #[test]
    fn montgomery_arithmetic_matches_u128() {
        for m in [
            3u128,
            0xffff_fffb,
            0x7fff_ffff_ffff_ffe7,
            0x1_0000_0001,
            65_537,
        ] {
            let bytes = m.to_be_bytes();
            let first = bytes.iter().position(|&b| b != 0).unwrap();
            let modulus = Modulus::<4>::new(&bytes[first..]).unwrap();
            for (a, b) in [
                (0u128, 5u128),
                (1, 1),
                (m - 1, m - 1),
                (m / 2, m - 2),
                (12345, 678),
            ] {
                let (a, b) = (a % m, b % m);
                let (mut am, mut bm, mut r, mut plain) = ([0; 4], [0; 4], [0; 4], [0; 4]);
                modulus.enter_montgomery(&mut am, &num(a));
                modulus.enter_montgomery(&mut bm, &num(b));
                modulus.mul(&mut r, &am, &bm);
                modulus.leave_montgomery(&mut plain, &r);
                assert_eq!(value(&plain), a * b % m, "{a} * {b} mod {m}");

                let mut s = am;
                modulus.add_assign(&mut s, &bm);
                modulus.leave_montgomery(&mut plain, &s);
                assert_eq!(value(&plain), (a + b) % m);
                let mut d = am;
                modulus.sub_assign(&mut d, &bm);
                modulus.leave_montgomery(&mut plain, &d);
                assert_eq!(value(&plain), (a + m - b) % m);

                for e in [0u128, 1, 2, 65_537, 0xdead_beef] {
                    modulus.pow_secret(&mut r, &am, &num(e), &mut [[0; 4]; 1 << WINDOW]);
                    modulus.leave_montgomery(&mut plain, &r);
                    assert_eq!(value(&plain), pow_mod(a, e, m), "{a}^{e} mod {m}");
                    let eb = e.to_be_bytes();
                    let start = eb.iter().position(|&x| x != 0).unwrap_or(16);
                    modulus.pow_public(&mut r, &am, &eb[start..]);
                    modulus.leave_montgomery(&mut plain, &r);
                    assert_eq!(value(&plain), pow_mod(a, e, m));
                }
            }
        }
    }

    #[test]
    fn even_or_tiny_moduli_are_refused() {
        assert!(Modulus::<4>::new(&[]).is_none());
        assert!(Modulus::<4>::new(&[1]).is_none());
        assert!(Modulus::<4>::new(&[0x10, 0x00]).is_none());
        assert!(Modulus::<1>::new(&[1; 9]).is_none());
    }

    #[test]
    fn schoolbook_product_and_comparisons() {
        let a = 0xffff_ffff_ffff_fff1u128;
        let b = 0x1234_5678_9abc_def0u128;
        let (x, y): ([Limb; 4], [Limb; 4]) = (num(a), num(b));
        let n = limbs_for(8);
        let mut p = [0; 8];
        mul(&mut p[..2 * n], &x[..n], &y[..n]);
        let mut bytes = [0u8; 16];
        store(&p[..2 * n], &mut bytes);
        assert_eq!(u128::from_be_bytes(bytes), a * b);
        assert!(bool::from(less_than(&y, &x)));
        assert!(!bool::from(less_than(&x, &y)));
        assert!(!bool::from(less_than(&x, &x)));
        assert!(bool::from(equal(&x, &x)));
    }
}
