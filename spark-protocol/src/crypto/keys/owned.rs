//! Owned keys (with `alloc`): parsed once from DER or PEM, written back in any form.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::{
    KeyError, PemLabel, RsaPrivateKeyRef, RsaPublicKeyRef, pem_decode, pem_encode, pem_encoded_len,
};

fn to_pem(label: PemLabel, der: &[u8]) -> Result<String, KeyError> {
    let mut text = vec![0u8; pem_encoded_len(label, der.len())];
    let len = pem_encode(label, der, &mut text)?;
    text.truncate(len);
    // The PEM writer emits ASCII only.
    String::from_utf8(text).map_err(|_| KeyError::PemEncoding)
}

fn pem_body(pem: &str) -> Result<(PemLabel, Zeroizing<Vec<u8>>), KeyError> {
    let mut der = Zeroizing::new(vec![0u8; pem.len() / 4 * 3 + 3]);
    let (label, len) = pem_decode(pem, &mut der)?;
    der.truncate(len);
    Ok((label, der))
}

/// An RSA public key (modulus and exponent).
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref_key().fmt(f)
    }
}

impl From<RsaPublicKeyRef<'_>> for RsaPublicKey {
    fn from(key: RsaPublicKeyRef<'_>) -> Self {
        RsaPublicKey {
            modulus: key.modulus().to_vec(),
            exponent: key.exponent().to_vec(),
        }
    }
}

impl RsaPublicKey {
    /// Reads SPKI or PKCS#1 DER.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        RsaPublicKeyRef::from_der(der).map(Self::from)
    }

    /// Reads a `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) PEM block.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_body(pem)?;
        match label {
            PemLabel::PublicKey => RsaPublicKeyRef::from_spki_der(&der).map(Self::from),
            PemLabel::RsaPublicKey => RsaPublicKeyRef::from_pkcs1_der(&der).map(Self::from),
            _ => Err(KeyError::PemLabel),
        }
    }

    /// The borrowed view, from which the backends build their keys.
    #[must_use]
    pub fn as_ref_key(&self) -> RsaPublicKeyRef<'_> {
        // The parts were validated when this key was made.
        RsaPublicKeyRef {
            modulus: &self.modulus,
            exponent: &self.exponent,
        }
    }

    /// The modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.as_ref_key().bits()
    }

    /// PKCS#1 `RSAPublicKey` DER.
    #[must_use]
    pub fn to_pkcs1_der(&self) -> Vec<u8> {
        let key = self.as_ref_key();
        let mut der = vec![0u8; key.pkcs1_der_len()];
        // Sized just above: the write cannot run short.
        let _ = key.write_pkcs1_der(&mut der);
        der
    }

    /// SubjectPublicKeyInfo DER (the 294-byte server key form for RSA-2048).
    #[must_use]
    pub fn to_spki_der(&self) -> Vec<u8> {
        let key = self.as_ref_key();
        let mut der = vec![0u8; key.spki_der_len()];
        let _ = key.write_spki_der(&mut der);
        der
    }

    /// `RSA PUBLIC KEY` PEM.
    pub fn to_pkcs1_pem(&self) -> Result<String, KeyError> {
        to_pem(PemLabel::RsaPublicKey, &self.to_pkcs1_der())
    }

    /// `PUBLIC KEY` PEM (the form the original server keeps in `core_keys/<id>.pub.pem`).
    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        to_pem(PemLabel::PublicKey, &self.to_spki_der())
    }
}

/// An RSA private key. Every secret byte is zeroized on drop; `Debug` shows the size only.
#[derive(Clone)]
pub struct RsaPrivateKey {
    /// n, e, d, p, q, dp, dq, qinv.
    parts: [Vec<u8>; 8],
}

impl Drop for RsaPrivateKey {
    fn drop(&mut self) {
        for part in &mut self.parts {
            part.zeroize();
        }
    }
}

impl zeroize::ZeroizeOnDrop for RsaPrivateKey {}

impl PartialEq for RsaPrivateKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.parts
            .iter()
            .zip(&other.parts)
            .all(|(a, b)| bool::from(a.as_slice().ct_eq(b.as_slice())))
    }
}

impl Eq for RsaPrivateKey {}

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref_key().fmt(f)
    }
}

impl From<RsaPrivateKeyRef<'_>> for RsaPrivateKey {
    fn from(key: RsaPrivateKeyRef<'_>) -> Self {
        RsaPrivateKey {
            parts: key.integers().map(<[u8]>::to_vec),
        }
    }
}

impl RsaPrivateKey {
    /// Reads PKCS#8 or PKCS#1 DER.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        RsaPrivateKeyRef::from_der(der).map(Self::from)
    }

    /// Reads a `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1) PEM block.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_body(pem)?;
        match label {
            PemLabel::PrivateKey => RsaPrivateKeyRef::from_pkcs8_der(&der).map(Self::from),
            PemLabel::RsaPrivateKey => RsaPrivateKeyRef::from_pkcs1_der(&der).map(Self::from),
            _ => Err(KeyError::PemLabel),
        }
    }

    /// Reads the device storage form (DER followed by padding), see
    /// [`device_private_key_from_storage`](super::device_private_key_from_storage).
    pub fn from_storage(bytes: &[u8]) -> Result<Self, KeyError> {
        super::device_private_key_from_storage(bytes).map(Self::from)
    }

    /// The borrowed view, from which the backends build their keys.
    #[must_use]
    pub fn as_ref_key(&self) -> RsaPrivateKeyRef<'_> {
        let [n, e, d, p, q, dp, dq, qinv] = &self.parts;
        RsaPrivateKeyRef {
            public: RsaPublicKeyRef {
                modulus: n,
                exponent: e,
            },
            secret: [d, p, q, dp, dq, qinv],
        }
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> RsaPublicKey {
        self.as_ref_key().public_key().into()
    }

    /// The modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.as_ref_key().bits()
    }

    /// PKCS#1 `RSAPrivateKey` DER.
    #[must_use]
    pub fn to_pkcs1_der(&self) -> Zeroizing<Vec<u8>> {
        let key = self.as_ref_key();
        let mut der = Zeroizing::new(vec![0u8; key.pkcs1_der_len()]);
        let _ = key.write_pkcs1_der(&mut der);
        der
    }

    /// PKCS#8 `PrivateKeyInfo` DER.
    #[must_use]
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let key = self.as_ref_key();
        let mut der = Zeroizing::new(vec![0u8; key.pkcs8_der_len()]);
        let _ = key.write_pkcs8_der(&mut der);
        der
    }

    /// The 612-byte device storage form (DER, zero-padded). Fails for keys whose DER is longer
    /// (anything above 1024 bits).
    pub fn to_storage(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let mut out = Zeroizing::new(vec![0u8; super::DEVICE_PRIVATE_KEY_STORAGE_LEN]);
        super::device_private_key_to_storage(&self.as_ref_key(), &mut out)?;
        Ok(out)
    }

    /// `RSA PRIVATE KEY` PEM.
    pub fn to_pkcs1_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        to_pem(PemLabel::RsaPrivateKey, &self.to_pkcs1_der()).map(Zeroizing::new)
    }

    /// `PRIVATE KEY` PEM.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        to_pem(PemLabel::PrivateKey, &self.to_pkcs8_der()).map(Zeroizing::new)
    }

    /// Generates a key of `bits` bits (1024 for a Core, 2048 for a server) with e = 65537,
    /// drawing every random bit from `rng`. Sizes under 1024 bits are refused with
    /// [`KeyError::Generation`].
    #[cfg(feature = "rsa")]
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(
        rng: &mut R,
        bits: usize,
    ) -> Result<Self, KeyError> {
        crate::crypto::rustcrypto::generate(rng, bits)
    }
}
