//! RSA keys: zero-copy views over DER (PKCS#1, SPKI, PKCS#8), PEM armour, the device storage
//! forms (the server key record and the zero-padded device private key) and, with `alloc`,
//! owned keys whose secret parts are zeroized on drop.
//!
//! The views ([`RsaPublicKeyRef`], [`RsaPrivateKeyRef`]) borrow the integers from the encoded
//! bytes, need no heap and are what the RSA backends are built from; every parser here returns
//! a [`KeyError`] on any input and never panics.
//!
//! A public key written as PKCS#1 and as SubjectPublicKeyInfo, armoured as PEM, and read back
//! from either form (the modulus here is a stand-in of the right size, not a product of primes):
//!
//! ```
//! use spark_protocol::crypto::keys::{KeyError, PemLabel, RsaPublicKeyRef, pem_decode, pem_encode};
//!
//! let mut modulus = [0xc5; 128];
//! modulus[127] = 0x01; // odd, as a modulus is
//! let key = RsaPublicKeyRef::new(&modulus, &[0x01, 0x00, 0x01])?;
//! assert_eq!(key.bits(), 1024);
//!
//! let mut spki = [0u8; 200];
//! let n = key.write_spki_der(&mut spki)?;
//! let mut pem = [0u8; 400];
//! let len = pem_encode(PemLabel::PublicKey, &spki[..n], &mut pem)?;
//! let text = core::str::from_utf8(&pem[..len]).unwrap();
//! assert!(text.starts_with("-----BEGIN PUBLIC KEY-----"));
//!
//! let mut der = [0u8; 200];
//! let (label, m) = pem_decode(text, &mut der)?;
//! assert_eq!(label, PemLabel::PublicKey);
//! // `from_der` takes PKCS#1 or SPKI alike.
//! assert_eq!(RsaPublicKeyRef::from_der(&der[..m])?, key);
//! assert!(RsaPublicKeyRef::from_der(&der[..m - 1]).is_err());
//! # Ok::<(), KeyError>(())
//! ```

mod der;
mod pem;
mod storage;

#[cfg(feature = "alloc")]
mod owned;

use core::fmt;

pub use pem::{
    PemLabel, pem_decode, pem_encode, pem_encode_labelled, pem_encoded_len,
    pem_encoded_len_labelled,
};
pub use storage::{
    DEVICE_PRIVATE_KEY_STORAGE_LEN, DEVICE_PUBLIC_KEY_DER_LEN, SERVER_ADDRESS_OFFSET,
    SERVER_KEY_DER_LEN, SERVER_PORT_OFFSET, ServerAddress, ServerKeyRecord,
    device_private_key_from_storage, device_private_key_to_storage,
};

#[cfg(feature = "alloc")]
pub use owned::{RsaPrivateKey, RsaPublicKey};

use der::{Reader, TAG_BIT_STRING, TAG_OCTET_STRING, TAG_SEQUENCE, Writer, element_len};

/// Why a key could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input ends inside an element.
    #[error("key data is truncated")]
    Truncated,
    /// An element has another tag than the structure requires.
    #[error("unexpected DER tag {found:#04x} (expected {expected:#04x})")]
    UnexpectedTag {
        /// The tag the structure requires.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// A length or integer is not in its canonical DER form (or uses BER's indefinite length).
    #[error("key data is not canonical DER")]
    NonCanonical,
    /// An RSA integer is negative.
    #[error("negative integer in an RSA key")]
    NegativeInteger,
    /// The private key's version is not 0 (two-prime RSA); multi-prime keys are not supported.
    #[error("unsupported private key version")]
    UnsupportedVersion,
    /// The algorithm identifier is not rsaEncryption.
    #[error("the key is not an RSA key")]
    NotRsa,
    /// Bytes follow the structure where none may.
    #[error("trailing data after the key")]
    TrailingData,
    /// The numbers cannot form an RSA key (empty or even modulus, zero exponent...).
    #[error("invalid RSA key")]
    InvalidKey,
    /// The modulus has a size this use does not accept.
    #[error("RSA modulus of {bits} bits where {expected} are required")]
    WrongSize {
        /// The modulus size found, in bits.
        bits: usize,
        /// The size required, in bits.
        expected: usize,
    },
    /// The output buffer is too small.
    #[error("output buffer too small: {required} bytes required")]
    InsufficientSize {
        /// The size the output needs.
        required: usize,
    },
    /// No PEM block, a label other than the one expected, or an encrypted PEM key.
    #[error("unsupported or missing PEM block")]
    PemLabel,
    /// The PEM body is not valid base64 or the block is not terminated.
    #[error("invalid PEM encoding")]
    PemEncoding,
    /// The server-address record after the server key is malformed.
    #[error("invalid server address record")]
    InvalidAddress,
    /// The RSA backend could not generate a key.
    #[error("key generation failed")]
    Generation,
}

/// Strips leading zero octets and checks that the number is not zero.
fn magnitude(bytes: &[u8]) -> Result<&[u8], KeyError> {
    let m = der::trim(bytes);
    if m.is_empty() {
        Err(KeyError::InvalidKey)
    } else {
        Ok(m)
    }
}

fn bit_len(magnitude: &[u8]) -> usize {
    match magnitude.first() {
        None => 0,
        Some(&b) => magnitude.len() * 8 - b.leading_zeros() as usize,
    }
}

/// An RSA public key borrowed from its encoding: big-endian modulus and exponent without
/// leading zero octets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RsaPublicKeyRef<'a> {
    modulus: &'a [u8],
    exponent: &'a [u8],
}

impl fmt::Debug for RsaPublicKeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaPublicKeyRef")
            .field("bits", &self.bits())
            .field("exponent", &self.exponent)
            .finish_non_exhaustive()
    }
}

impl<'a> RsaPublicKeyRef<'a> {
    /// A key from its big-endian modulus and public exponent (leading zeros are ignored).
    ///
    /// The modulus must be odd and the exponent odd and greater than 1.
    pub fn new(modulus: &'a [u8], exponent: &'a [u8]) -> Result<Self, KeyError> {
        let modulus = magnitude(modulus)?;
        let exponent = magnitude(exponent)?;
        let odd = |m: &[u8]| m.last().is_some_and(|b| b & 1 == 1);
        if !odd(modulus) || !odd(exponent) || exponent == [1] || exponent.len() > modulus.len() {
            return Err(KeyError::InvalidKey);
        }
        Ok(RsaPublicKeyRef { modulus, exponent })
    }

    /// Reads a PKCS#1 `RSAPublicKey` (`SEQUENCE { modulus, publicExponent }`).
    pub fn from_pkcs1_der(der: &'a [u8]) -> Result<Self, KeyError> {
        let mut outer = Reader::new(der);
        let key = Self::read_pkcs1(&mut outer)?;
        outer.finish()?;
        Ok(key)
    }

    fn read_pkcs1(reader: &mut Reader<'a>) -> Result<Self, KeyError> {
        let mut seq = reader.sequence()?;
        let n = seq.unsigned()?;
        let e = seq.unsigned()?;
        seq.finish()?;
        Self::new(n, e)
    }

    /// Reads an X.509 `SubjectPublicKeyInfo` holding an rsaEncryption key.
    pub fn from_spki_der(der: &'a [u8]) -> Result<Self, KeyError> {
        let mut outer = Reader::new(der);
        let key = Self::read_spki(&mut outer)?;
        outer.finish()?;
        Ok(key)
    }

    pub(crate) fn read_spki(reader: &mut Reader<'a>) -> Result<Self, KeyError> {
        let mut spki = reader.sequence()?;
        spki.rsa_algorithm()?;
        let bits = spki.element(TAG_BIT_STRING)?;
        spki.finish()?;
        match bits {
            [0, pkcs1 @ ..] => Self::from_pkcs1_der(pkcs1),
            _ => Err(KeyError::NonCanonical),
        }
    }

    /// Reads either form, SPKI or PKCS#1, telling them apart by their structure.
    pub fn from_der(der: &'a [u8]) -> Result<Self, KeyError> {
        match Self::from_spki_der(der) {
            Ok(key) => Ok(key),
            Err(spki_err) => Self::from_pkcs1_der(der).map_err(|_| spki_err),
        }
    }

    /// The modulus, big-endian, without leading zeros.
    #[must_use]
    pub fn modulus(&self) -> &'a [u8] {
        self.modulus
    }

    /// The public exponent, big-endian, without leading zeros.
    #[must_use]
    pub fn exponent(&self) -> &'a [u8] {
        self.exponent
    }

    /// The modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        bit_len(self.modulus)
    }

    /// The size of an RSA block (ciphertext or signature) under this key, in bytes.
    #[must_use]
    pub fn modulus_len(&self) -> usize {
        self.bits().div_ceil(8)
    }

    /// The size of the PKCS#1 DER encoding.
    #[must_use]
    pub fn pkcs1_der_len(&self) -> usize {
        pkcs1_len(&[self.modulus, self.exponent])
    }

    /// Writes the PKCS#1 DER encoding; returns its length.
    pub fn write_pkcs1_der(&self, out: &mut [u8]) -> Result<usize, KeyError> {
        write_pkcs1(out, &[self.modulus, self.exponent])
    }

    fn spki_content_len(&self) -> usize {
        der::RSA_ALGORITHM_LEN + element_len(1 + self.pkcs1_der_len())
    }

    /// The size of the SubjectPublicKeyInfo DER encoding (294 bytes for RSA-2048 with e = 65537,
    /// 162 bytes for RSA-1024).
    #[must_use]
    pub fn spki_der_len(&self) -> usize {
        element_len(self.spki_content_len())
    }

    /// Writes the SubjectPublicKeyInfo DER encoding; returns its length.
    pub fn write_spki_der(&self, out: &mut [u8]) -> Result<usize, KeyError> {
        write_der(out, self.spki_der_len(), |w| {
            w.header(TAG_SEQUENCE, self.spki_content_len())?;
            w.rsa_algorithm()?;
            w.header(TAG_BIT_STRING, 1 + self.pkcs1_der_len())?;
            w.raw(&[0])?;
            emit_pkcs1(w, &[self.modulus, self.exponent])
        })
    }
}

/// The content length of a PKCS#1 key: a SEQUENCE of these INTEGERs (big-endian magnitudes).
fn pkcs1_content_len(integers: &[&[u8]]) -> usize {
    integers
        .iter()
        .map(|i| element_len(der::unsigned_content_len(i)))
        .sum()
}

/// The size of a PKCS#1 key's DER encoding, the SEQUENCE of `integers`.
fn pkcs1_len(integers: &[&[u8]]) -> usize {
    element_len(pkcs1_content_len(integers))
}

/// Writes a PKCS#1 key, the SEQUENCE of `integers`, at the writer's position.
fn emit_pkcs1(w: &mut Writer<'_>, integers: &[&[u8]]) -> Result<(), KeyError> {
    w.header(TAG_SEQUENCE, pkcs1_content_len(integers))?;
    integers.iter().try_for_each(|i| w.unsigned(i))
}

/// Writes a PKCS#1 key, the SEQUENCE of `integers`, into the front of `out`; returns its length.
fn write_pkcs1(out: &mut [u8], integers: &[&[u8]]) -> Result<usize, KeyError> {
    write_der(out, pkcs1_len(integers), |w| emit_pkcs1(w, integers))
}

/// Writes a DER encoding of `required` bytes into the front of `out` with `emit`; returns its
/// length, or [`KeyError::InsufficientSize`] when `out` is shorter.
fn write_der(
    out: &mut [u8],
    required: usize,
    emit: impl FnOnce(&mut Writer<'_>) -> Result<(), KeyError>,
) -> Result<usize, KeyError> {
    let out = out
        .get_mut(..required)
        .ok_or(KeyError::InsufficientSize { required })?;
    let mut w = Writer::new(out);
    emit(&mut w)?;
    Ok(w.position())
}

/// A two-prime RSA private key borrowed from its encoding (big-endian integers without leading
/// zeros). Its `Debug` output shows the size only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RsaPrivateKeyRef<'a> {
    public: RsaPublicKeyRef<'a>,
    // d, p, q, d mod (p-1), d mod (q-1), q^-1 mod p: the PKCS#1 order.
    secret: [&'a [u8]; 6],
}

impl fmt::Debug for RsaPrivateKeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaPrivateKeyRef")
            .field("bits", &self.public.bits())
            .finish_non_exhaustive()
    }
}

impl<'a> RsaPrivateKeyRef<'a> {
    /// A key from its PKCS#1 components, each big-endian: modulus `n`, public exponent `e`,
    /// private exponent `d`, primes `p` and `q`, CRT exponents `d mod (p-1)` and `d mod (q-1)`,
    /// and the CRT coefficient `q^-1 mod p`.
    ///
    /// Only the shapes are checked here (non-zero, odd modulus and primes); the backends check
    /// the arithmetic when they load the key.
    #[allow(clippy::too_many_arguments)]
    pub fn from_components(
        n: &'a [u8],
        e: &'a [u8],
        d: &'a [u8],
        p: &'a [u8],
        q: &'a [u8],
        dp: &'a [u8],
        dq: &'a [u8],
        qinv: &'a [u8],
    ) -> Result<Self, KeyError> {
        let public = RsaPublicKeyRef::new(n, e)?;
        let secret = [
            magnitude(d)?,
            magnitude(p)?,
            magnitude(q)?,
            magnitude(dp)?,
            magnitude(dq)?,
            magnitude(qinv)?,
        ];
        let odd = |m: &[u8]| m.last().is_some_and(|b| b & 1 == 1);
        if !odd(secret[1])
            || !odd(secret[2])
            || secret.iter().any(|s| s.len() > public.modulus.len())
        {
            return Err(KeyError::InvalidKey);
        }
        Ok(RsaPrivateKeyRef { public, secret })
    }

    /// Reads a PKCS#1 `RSAPrivateKey` (version 0, two primes).
    pub fn from_pkcs1_der(der: &'a [u8]) -> Result<Self, KeyError> {
        let mut outer = Reader::new(der);
        let key = Self::read_pkcs1(&mut outer)?;
        outer.finish()?;
        Ok(key)
    }

    pub(crate) fn read_pkcs1(reader: &mut Reader<'a>) -> Result<Self, KeyError> {
        let mut seq = reader.sequence()?;
        seq.version_zero()?;
        let mut parts = [&[][..]; 8];
        for part in &mut parts {
            *part = seq.unsigned()?;
        }
        seq.finish()?;
        let [n, e, d, p, q, dp, dq, qinv] = parts;
        Self::from_components(n, e, d, p, q, dp, dq, qinv)
    }

    /// Reads a PKCS#8 `PrivateKeyInfo` holding an rsaEncryption key (unencrypted).
    pub fn from_pkcs8_der(der: &'a [u8]) -> Result<Self, KeyError> {
        let mut outer = Reader::new(der);
        let mut info = outer.sequence()?;
        outer.finish()?;
        info.version_zero()?;
        info.rsa_algorithm()?;
        let key = info.element(TAG_OCTET_STRING)?;
        // Optional attributes ([0] IMPLICIT) may follow; they carry nothing RSA needs.
        if let Some(&tag) = info.remaining().first()
            && tag != 0xa0
        {
            return Err(KeyError::TrailingData);
        }
        Self::from_pkcs1_der(key)
    }

    /// Reads either form, PKCS#8 or PKCS#1, telling them apart by their structure.
    pub fn from_der(der: &'a [u8]) -> Result<Self, KeyError> {
        match Self::from_pkcs8_der(der) {
            Ok(key) => Ok(key),
            Err(pkcs8_err) => Self::from_pkcs1_der(der).map_err(|_| pkcs8_err),
        }
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> RsaPublicKeyRef<'a> {
        self.public
    }

    /// The modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.public.bits()
    }

    /// The private exponent `d`.
    #[must_use]
    pub fn private_exponent(&self) -> &'a [u8] {
        self.secret[0]
    }

    /// The first prime `p`.
    #[must_use]
    pub fn prime1(&self) -> &'a [u8] {
        self.secret[1]
    }

    /// The second prime `q`.
    #[must_use]
    pub fn prime2(&self) -> &'a [u8] {
        self.secret[2]
    }

    /// `d mod (p-1)`.
    #[must_use]
    pub fn exponent1(&self) -> &'a [u8] {
        self.secret[3]
    }

    /// `d mod (q-1)`.
    #[must_use]
    pub fn exponent2(&self) -> &'a [u8] {
        self.secret[4]
    }

    /// `q^-1 mod p`.
    #[must_use]
    pub fn coefficient(&self) -> &'a [u8] {
        self.secret[5]
    }

    fn integers(&self) -> [&'a [u8]; 8] {
        let [d, p, q, dp, dq, qinv] = self.secret;
        let (n, e) = (self.public.modulus, self.public.exponent);
        [n, e, d, p, q, dp, dq, qinv]
    }

    /// The INTEGERs of the PKCS#1 `RSAPrivateKey`: the version (0, an empty magnitude), then
    /// [`integers`](Self::integers).
    fn pkcs1_integers(&self) -> [&'a [u8]; 9] {
        let [n, e, d, p, q, dp, dq, qinv] = self.integers();
        [&[], n, e, d, p, q, dp, dq, qinv]
    }

    /// The size of the PKCS#1 DER encoding (607 to 611 bytes for a 1024-bit key).
    #[must_use]
    pub fn pkcs1_der_len(&self) -> usize {
        pkcs1_len(&self.pkcs1_integers())
    }

    /// Writes the PKCS#1 DER encoding; returns its length.
    pub fn write_pkcs1_der(&self, out: &mut [u8]) -> Result<usize, KeyError> {
        write_pkcs1(out, &self.pkcs1_integers())
    }

    fn pkcs8_content_len(&self) -> usize {
        3 + der::RSA_ALGORITHM_LEN + element_len(self.pkcs1_der_len())
    }

    /// The size of the PKCS#8 DER encoding.
    #[must_use]
    pub fn pkcs8_der_len(&self) -> usize {
        element_len(self.pkcs8_content_len())
    }

    /// Writes the PKCS#8 `PrivateKeyInfo` DER encoding; returns its length.
    pub fn write_pkcs8_der(&self, out: &mut [u8]) -> Result<usize, KeyError> {
        write_der(out, self.pkcs8_der_len(), |w| {
            w.header(TAG_SEQUENCE, self.pkcs8_content_len())?;
            w.unsigned(&[])?;
            w.rsa_algorithm()?;
            w.header(TAG_OCTET_STRING, self.pkcs1_der_len())?;
            emit_pkcs1(w, &self.pkcs1_integers())
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    // A toy key (n = 3233 = 61 * 53, e = 17, d = 2753): enough to exercise the encodings.
    const N: &[u8] = &[0x0c, 0xa1];
    const E: &[u8] = &[17];
    const D: &[u8] = &[0x0a, 0xc1];
    const P: &[u8] = &[61];
    const Q: &[u8] = &[53];
    const DP: &[u8] = &[53];
    const DQ: &[u8] = &[49];
    const QINV: &[u8] = &[38];

    fn toy() -> RsaPrivateKeyRef<'static> {
        RsaPrivateKeyRef::from_components(N, E, D, P, Q, DP, DQ, QINV).unwrap()
    }

    #[test]
    fn public_encodings_round_trip() {
        let key = toy().public_key();
        let mut buf = [0u8; 64];
        let n = key.write_pkcs1_der(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &[0x30, 0x07, 0x02, 0x02, 0x0c, 0xa1, 0x02, 0x01, 0x11]
        );
        assert_eq!(RsaPublicKeyRef::from_pkcs1_der(&buf[..n]), Ok(key));
        assert_eq!(RsaPublicKeyRef::from_der(&buf[..n]), Ok(key));
        let n = key.write_spki_der(&mut buf).unwrap();
        assert_eq!(n, key.spki_der_len());
        assert_eq!(RsaPublicKeyRef::from_spki_der(&buf[..n]), Ok(key));
        assert_eq!(RsaPublicKeyRef::from_der(&buf[..n]), Ok(key));
        assert_eq!(
            RsaPublicKeyRef::from_pkcs1_der(&buf[..n]).map(|_| ()),
            Err(KeyError::UnexpectedTag {
                expected: 0x02,
                found: 0x30
            })
        );
    }

    #[test]
    fn private_encodings_round_trip() {
        let key = toy();
        let mut buf = [0u8; 128];
        let n = key.write_pkcs1_der(&mut buf).unwrap();
        assert_eq!(n, key.pkcs1_der_len());
        assert_eq!(RsaPrivateKeyRef::from_pkcs1_der(&buf[..n]), Ok(key));
        let n = key.write_pkcs8_der(&mut buf).unwrap();
        assert_eq!(n, key.pkcs8_der_len());
        assert_eq!(RsaPrivateKeyRef::from_pkcs8_der(&buf[..n]), Ok(key));
        assert_eq!(RsaPrivateKeyRef::from_der(&buf[..n]), Ok(key));
        assert_eq!(
            key.write_pkcs8_der(&mut buf[..n - 1]),
            Err(KeyError::InsufficientSize { required: n })
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let key = toy();
        let mut buf = [0u8; 128];
        let n = key.write_pkcs8_der(&mut buf).unwrap();
        for len in 0..n {
            assert!(
                RsaPrivateKeyRef::from_der(&buf[..len]).is_err(),
                "len {len}"
            );
        }
        let n = key.public_key().write_spki_der(&mut buf).unwrap();
        for len in 0..n {
            assert!(RsaPublicKeyRef::from_der(&buf[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert_eq!(
            RsaPublicKeyRef::new(&[0x0c, 0xa0], E),
            Err(KeyError::InvalidKey)
        );
        assert_eq!(RsaPublicKeyRef::new(N, &[1]), Err(KeyError::InvalidKey));
        assert_eq!(RsaPublicKeyRef::new(&[0, 0], E), Err(KeyError::InvalidKey));
        assert_eq!(
            RsaPrivateKeyRef::from_components(N, E, D, &[60], Q, DP, DQ, QINV),
            Err(KeyError::InvalidKey)
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let text = format!("{:?}", toy());
        assert!(text.contains("bits"));
        assert!(
            !text.contains("2753") && !text.contains("193") && !text.contains("61"),
            "{text}"
        );
    }
}
