//! The DTLS profile's cryptography: the TLS 1.2 PRF on SHA-256, the key block, AES-128-CCM-8
//! records, ECDHE and ECDSA on P-256, and the little DER the keys and signatures need.

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U12};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::Error;

/// AES-128 in CCM mode with an 8-byte tag and a 12-byte nonce (RFC 6655).
type Aes128Ccm8 = Ccm<Aes128, U8, U12>;

/// Bytes of the explicit nonce each protected record carries before its ciphertext.
pub(crate) const EXPLICIT_NONCE_LEN: usize = 8;
/// Bytes of the CCM-8 tag after the ciphertext.
pub(crate) const TAG_LEN: usize = 8;
/// What protection adds to a record's plaintext.
pub const RECORD_OVERHEAD: usize = EXPLICIT_NONCE_LEN + TAG_LEN;
/// An uncompressed SEC1 P-256 point: `04 ‖ X ‖ Y`.
pub(crate) const POINT_LEN: usize = 65;
/// The longest DER ECDSA P-256 signature (two 33-byte INTEGERs in a SEQUENCE).
pub(crate) const MAX_DER_SIGNATURE_LEN: usize = 72;

/// `P_SHA256(secret, label ‖ seed)` written into `out` (RFC 5246 section 5).
pub fn prf(secret: &[u8], label: &[u8], seeds: &[&[u8]], out: &mut [u8]) {
    let mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
    // A(1) = HMAC(secret, label ‖ seed); A(i) = HMAC(secret, A(i-1)).
    let mut a = {
        let mut m = mac.clone();
        m.update(label);
        for s in seeds {
            m.update(s);
        }
        m.finalize().into_bytes()
    };
    for chunk in out.chunks_mut(32) {
        let mut m = mac.clone();
        m.update(&a);
        m.update(label);
        for s in seeds {
            m.update(s);
        }
        let block = m.finalize().into_bytes();
        chunk.copy_from_slice(&block[..chunk.len()]);
        let mut m = mac.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
}

/// HMAC takes keys of any length, so building it cannot fail; this keeps the no-panic promise
/// visible without an `unwrap`.
#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new(&Default::default())
}

/// HMAC-SHA256 of `parts` under `key` (the server's cookie).
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The running hash of the handshake messages (RFC 5246 `handshake_messages`).
#[derive(Clone, Default)]
pub(crate) struct Transcript(Sha256);

impl Transcript {
    /// Adds one handshake message, header included.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash so far; the transcript goes on.
    pub(crate) fn current(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// The 48-byte master secret and the resumable session it belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterSecret(pub [u8; 48]);

impl core::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

impl MasterSecret {
    /// `PRF(pre_master, "master secret", client_random ‖ server_random)`.
    #[must_use]
    pub fn derive(pre_master: &[u8], client_random: &[u8; 32], server_random: &[u8; 32]) -> Self {
        let mut m = [0u8; 48];
        prf(
            pre_master,
            b"master secret",
            &[client_random, server_random],
            &mut m,
        );
        MasterSecret(m)
    }

    /// The 12-byte `verify_data` of a Finished message.
    #[must_use]
    pub fn verify_data(&self, label: &[u8], transcript_hash: &[u8; 32]) -> [u8; 12] {
        let mut v = [0u8; 12];
        prf(&self.0, label, &[transcript_hash], &mut v);
        v
    }

    /// The key block for AES-128-CCM-8: two 16-byte keys, then two 4-byte implicit salts.
    #[must_use]
    pub fn key_block(&self, client_random: &[u8; 32], server_random: &[u8; 32]) -> KeyBlock {
        let mut kb = [0u8; 40];
        prf(
            &self.0,
            b"key expansion",
            &[server_random, client_random],
            &mut kb,
        );
        let mut out = KeyBlock::default();
        out.client_key.copy_from_slice(&kb[..16]);
        out.server_key.copy_from_slice(&kb[16..32]);
        out.client_salt.copy_from_slice(&kb[32..36]);
        out.server_salt.copy_from_slice(&kb[36..40]);
        kb.zeroize();
        out
    }
}

/// The write keys of both directions.
#[derive(Default)]
pub struct KeyBlock {
    /// Client-to-server AES key.
    pub client_key: [u8; 16],
    /// Server-to-client AES key.
    pub server_key: [u8; 16],
    /// Client-to-server implicit nonce part.
    pub client_salt: [u8; 4],
    /// Server-to-client implicit nonce part.
    pub server_salt: [u8; 4],
}

impl Drop for KeyBlock {
    fn drop(&mut self) {
        self.client_key.zeroize();
        self.server_key.zeroize();
    }
}

/// One direction's record protection: AES-128-CCM-8 with its implicit salt.
#[derive(Clone)]
pub struct RecordCipher {
    aead: Aes128Ccm8,
    salt: [u8; 4],
}

impl RecordCipher {
    /// The cipher for `key` and `salt`.
    #[must_use]
    pub fn new(key: &[u8; 16], salt: [u8; 4]) -> Self {
        RecordCipher {
            aead: Aes128Ccm8::new(key.into()),
            salt,
        }
    }

    fn nonce(&self, explicit: &[u8; 8]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(explicit);
        n
    }

    /// Encrypts `body` in place and returns the tag. `seq` is the 8-byte epoch ‖ sequence,
    /// which is also the explicit nonce; `header` is type ‖ version.
    pub fn seal(
        &self,
        seq: &[u8; 8],
        content_type: u8,
        version: [u8; 2],
        body: &mut [u8],
    ) -> [u8; 8] {
        let aad = additional_data(seq, content_type, version, &[], body.len());
        self.seal_with_aad(seq, &aad.bytes[..aad.len], body)
    }

    /// Encrypts `body` in place under the explicit nonce `seq` with the given additional data
    /// (a connection-id record's, which also covers the CID).
    pub(crate) fn seal_with_aad(&self, seq: &[u8; 8], aad: &[u8], body: &mut [u8]) -> [u8; 8] {
        let nonce = self.nonce(seq);
        match self
            .aead
            .encrypt_inout_detached((&nonce).into(), aad, body.into())
        {
            Ok(tag) => tag.into(),
            // CCM fails only for messages beyond 2^24 bytes, which no record can be.
            Err(_) => [0; 8],
        }
    }

    /// Decrypts `body` in place when `tag` authenticates it. `explicit` is the nonce the record
    /// carried and `seq` the record's own epoch ‖ sequence (the AAD's).
    pub fn open(
        &self,
        seq: &[u8; 8],
        explicit: &[u8; 8],
        content_type: u8,
        version: [u8; 2],
        body: &mut [u8],
        tag: &[u8; 8],
    ) -> Result<(), Error> {
        let aad = additional_data(seq, content_type, version, &[], body.len());
        self.open_with_aad(explicit, &aad.bytes[..aad.len], body, tag)
    }

    /// Decrypts `body` in place under the explicit nonce the record carried, with the given
    /// additional data.
    pub(crate) fn open_with_aad(
        &self,
        explicit: &[u8; 8],
        aad: &[u8],
        body: &mut [u8],
        tag: &[u8; 8],
    ) -> Result<(), Error> {
        let nonce = self.nonce(explicit);
        self.aead
            .decrypt_inout_detached((&nonce).into(), aad, body.into(), tag.into())
            .map_err(|_| Error::BadRecordMac)
    }
}

/// A record's additional data: up to 13 bytes, plus the CID and its length for connection-id
/// records.
pub(crate) struct AdditionalData {
    pub(crate) bytes: [u8; 13 + 1 + 32],
    pub(crate) len: usize,
}

/// `seq ‖ type ‖ version ‖ length` (RFC 5246), or for a record with a connection id
/// `seq ‖ type ‖ version ‖ cid ‖ cid_length ‖ length` (draft-ietf-tls-dtls-connection-id-05,
/// as Particle's mbedTLS computes it). `cid` is at most 32 bytes.
pub(crate) fn additional_data(
    seq: &[u8; 8],
    content_type: u8,
    version: [u8; 2],
    cid: &[u8],
    len: usize,
) -> AdditionalData {
    let mut aad = AdditionalData {
        bytes: [0u8; 13 + 1 + 32],
        len: 0,
    };
    let cid = &cid[..cid.len().min(32)];
    aad.bytes[..8].copy_from_slice(seq);
    aad.bytes[8] = content_type;
    aad.bytes[9..11].copy_from_slice(&version);
    let mut at = 11;
    if !cid.is_empty() {
        aad.bytes[at..at + cid.len()].copy_from_slice(cid);
        at += cid.len();
        aad.bytes[at] = cid.len() as u8;
        at += 1;
    }
    aad.bytes[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
    aad.len = at + 2;
    aad
}

/// A P-256 private key that signs handshakes (the device's, or the server's).
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
}

impl core::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// The key with scalar `d` (32 bytes, big-endian).
    pub fn from_scalar(d: &[u8]) -> Result<Self, Error> {
        let d: &[u8; 32] = d.try_into().map_err(|_| Error::BadKey)?;
        SigningKey::from_bytes(d.into())
            .map(|key| PrivateKey { key })
            .map_err(|_| Error::BadKey)
    }

    /// Reads a DER private key: SEC1 `ECPrivateKey` (what `openssl ecparam -genkey` writes and
    /// what the device keeps) or PKCS#8 wrapping one (`openssl genpkey`).
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let mut top = DerReader::new(der);
        let mut seq = top.sequence()?;
        let version = seq.element(TAG_INTEGER)?;
        match version {
            [1] => {
                let d = seq.element(TAG_OCTET_STRING)?;
                Self::from_scalar(d)
            }
            [0] => {
                let mut alg = seq.sequence()?;
                if alg.element(TAG_OID)? != OID_EC_PUBLIC_KEY {
                    return Err(Error::BadKey);
                }
                if alg.element(TAG_OID)? != OID_PRIME256V1 {
                    return Err(Error::BadKey);
                }
                Self::from_der(seq.element(TAG_OCTET_STRING)?)
            }
            _ => Err(Error::BadKey),
        }
    }

    /// A fresh key from the caller's RNG (a scalar drawn until it is a valid one).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut d = [0u8; 32];
        loop {
            rng.fill_bytes(&mut d);
            if let Ok(key) = Self::from_scalar(&d) {
                d.zeroize();
                return key;
            }
        }
    }

    /// The key as a DER SEC1 `ECPrivateKey` with its curve and public key ([`SEC1_LEN`] bytes):
    /// what `openssl ec -outform DER` writes, what [`PrivateKey::from_der`] reads back, and the
    /// form a UDP device keeps in its DCT. The caller should wipe the copy when done.
    #[must_use]
    pub fn to_sec1_der(&self) -> [u8; SEC1_LEN] {
        let mut out = [0u8; SEC1_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&[TAG_SEQUENCE, (SEC1_LEN - 2) as u8, TAG_INTEGER, 1, 1]);
        put(&[TAG_OCTET_STRING, 32]);
        let mut d = self.key.to_bytes();
        put(d.as_slice());
        d.as_mut_slice().zeroize();
        put(&[
            0xa0,
            2 + OID_PRIME256V1.len() as u8,
            TAG_OID,
            OID_PRIME256V1.len() as u8,
        ]);
        put(OID_PRIME256V1);
        put(&[
            0xa1,
            2 + 1 + POINT_LEN as u8,
            TAG_BIT_STRING,
            1 + POINT_LEN as u8,
            0,
        ]);
        put(&self.public_key().to_point());
        out
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    /// Signs a SHA-256 digest (deterministic ECDSA, RFC 6979) and writes the DER signature;
    /// returns its length.
    pub fn sign_digest(
        &self,
        digest: &[u8; 32],
        out: &mut [u8; MAX_DER_SIGNATURE_LEN],
    ) -> Result<usize, Error> {
        let sig: Signature = self.key.sign_prehash(digest).map_err(|_| Error::BadKey)?;
        let bytes = sig.to_bytes();
        Ok(der_signature(&bytes[..32], &bytes[32..], out))
    }
}

/// A P-256 public key: a peer's, as pinned or as presented.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let p = self.to_point();
        write!(f, "PublicKey(")?;
        for b in &p[1..9] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

impl PublicKey {
    /// From an uncompressed SEC1 point (`04 ‖ X ‖ Y`).
    pub fn from_point(point: &[u8]) -> Result<Self, Error> {
        VerifyingKey::from_sec1_bytes(point)
            .map(|key| PublicKey { key })
            .map_err(|_| Error::BadKey)
    }

    /// From a DER `SubjectPublicKeyInfo` (`openssl ec -pubout -outform DER`, and the body of a
    /// raw-public-key Certificate message, RFC 7250).
    pub fn from_spki(der: &[u8]) -> Result<Self, Error> {
        let mut top = DerReader::new(der);
        let spki = top.sequence()?;
        top.finish()?;
        Self::from_spki_reader(spki)
    }

    fn from_spki_reader(mut spki: DerReader<'_>) -> Result<Self, Error> {
        let mut alg = spki.sequence()?;
        if alg.element(TAG_OID)? != OID_EC_PUBLIC_KEY || alg.element(TAG_OID)? != OID_PRIME256V1 {
            return Err(Error::BadKey);
        }
        match spki.element(TAG_BIT_STRING)? {
            [0, point @ ..] => Self::from_point(point),
            _ => Err(Error::BadKey),
        }
    }

    /// The subject public key of a DER X.509 certificate. Nothing else of the certificate is
    /// checked: this profile pins keys instead of trusting issuers.
    pub fn from_certificate(der: &[u8]) -> Result<Self, Error> {
        let mut top = DerReader::new(der);
        let mut cert = top.sequence()?;
        let mut tbs = cert.sequence()?;
        if tbs.peek_tag() == Some(0xa0) {
            tbs.element(0xa0)?; // version
        }
        tbs.element(TAG_INTEGER)?; // serialNumber
        tbs.sequence()?; // signature
        tbs.sequence()?; // issuer
        tbs.sequence()?; // validity
        tbs.sequence()?; // subject
        Self::from_spki_reader(tbs.sequence()?)
    }

    /// The uncompressed SEC1 point.
    #[must_use]
    pub fn to_point(&self) -> [u8; POINT_LEN] {
        let mut out = [0u8; POINT_LEN];
        let ep = self.key.to_sec1_point(false);
        let bytes = ep.as_bytes();
        if bytes.len() == POINT_LEN {
            out.copy_from_slice(bytes);
        }
        out
    }

    /// The DER `SubjectPublicKeyInfo` (91 bytes), what a raw-public-key Certificate carries.
    #[must_use]
    pub fn to_spki(&self) -> [u8; SPKI_LEN] {
        let mut out = [0u8; SPKI_LEN];
        out[..SPKI_PREFIX.len()].copy_from_slice(&SPKI_PREFIX);
        out[SPKI_PREFIX.len()..].copy_from_slice(&self.to_point());
        out
    }

    /// Checks a DER ECDSA signature over a SHA-256 digest.
    pub fn verify_digest(&self, digest: &[u8; 32], der: &[u8]) -> Result<(), Error> {
        let mut raw = [0u8; 64];
        parse_der_signature(der, &mut raw)?;
        let sig = Signature::from_slice(&raw).map_err(|_| Error::BadSignature)?;
        self.key
            .verify_prehash(digest, &sig)
            .map_err(|_| Error::BadSignature)
    }
}

/// `der` as PEM text under `label` (RFC 7468: 64-column base64 lines).
#[cfg(feature = "alloc")]
fn pem_text(label: &str, der: &[u8]) -> zeroize::Zeroizing<alloc::string::String> {
    use crate::crypto::keys::{pem_encode_labelled, pem_encoded_len_labelled};
    let mut text =
        zeroize::Zeroizing::new(alloc::vec![0u8; pem_encoded_len_labelled(label, der.len())]);
    // The buffer has the exact size and the writer emits ASCII only, so neither step can fail.
    let n = pem_encode_labelled(label, der, &mut text).unwrap_or(0);
    zeroize::Zeroizing::new(core::str::from_utf8(&text[..n]).unwrap_or_default().into())
}

#[cfg(feature = "alloc")]
impl PrivateKey {
    /// The key as `EC PRIVATE KEY` PEM (SEC1, as `openssl ec` writes it), zeroized when dropped.
    #[must_use]
    pub fn to_sec1_pem(&self) -> zeroize::Zeroizing<alloc::string::String> {
        let mut der = self.to_sec1_der();
        let text = pem_text("EC PRIVATE KEY", &der);
        der.zeroize();
        text
    }
}

#[cfg(feature = "alloc")]
impl PublicKey {
    /// The key as `PUBLIC KEY` PEM (its `SubjectPublicKeyInfo`): what `POST /v1/provisioning` takes for a P-256
    /// device key.
    #[must_use]
    pub fn to_spki_pem(&self) -> alloc::string::String {
        alloc::string::String::clone(&pem_text("PUBLIC KEY", &self.to_spki()))
    }
}

/// Length of a P-256 `SubjectPublicKeyInfo` in DER.
pub const SPKI_LEN: usize = 91;
/// Length of a P-256 SEC1 `ECPrivateKey` in DER, as [`PrivateKey::to_sec1_der`] writes it.
pub const SEC1_LEN: usize = 121;
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An ephemeral ECDHE key pair for one handshake.
pub(crate) struct Ephemeral(p256::ecdh::EphemeralSecret);

impl Ephemeral {
    /// A fresh key from the caller's RNG.
    pub(crate) fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        use p256::elliptic_curve::Generate;
        Ephemeral(p256::ecdh::EphemeralSecret::generate_from_rng(rng))
    }

    /// The public point to send.
    pub(crate) fn public_point(&self) -> [u8; POINT_LEN] {
        let mut out = [0u8; POINT_LEN];
        use p256::elliptic_curve::sec1::ToSec1Point;
        let ep = self.0.public_key().to_sec1_point(false);
        let bytes = ep.as_bytes();
        if bytes.len() == POINT_LEN {
            out.copy_from_slice(bytes);
        }
        out
    }

    /// The 32-byte premaster secret (the shared X coordinate) with the peer's point.
    pub(crate) fn agree(&self, peer_point: &[u8]) -> Result<[u8; 32], Error> {
        let peer = p256::PublicKey::from_sec1_bytes(peer_point).map_err(|_| Error::BadKey)?;
        let shared = self.0.diffie_hellman(&peer);
        let mut out = [0u8; 32];
        out.copy_from_slice(shared.raw_secret_bytes().as_slice());
        Ok(out)
    }
}

// --- PEM ----------------------------------------------------------------------------------

/// Finds the first PEM block of `pem` whose label is one of `labels`, decodes it into `out`,
/// and returns the label and the DER length. Other blocks (`EC PARAMETERS`) are skipped.
pub fn pem_to_der<'a>(
    pem: &'a str,
    labels: &[&'a str],
    out: &mut [u8],
) -> Result<(&'a str, usize), Error> {
    let mut rest = pem;
    while let Some(at) = rest.find("-----BEGIN ") {
        rest = &rest[at + 11..];
        let Some(end_label) = rest.find("-----") else {
            break;
        };
        let label = &rest[..end_label];
        rest = &rest[end_label + 5..];
        let Some(end) = rest.find("-----END ") else {
            break;
        };
        let body = &rest[..end];
        rest = &rest[end + 9..];
        let Some(&found) = labels.iter().find(|&&l| l == label) else {
            continue;
        };
        // Strip the line breaks into a bounded buffer, then decode.
        let mut text = [0u8; 4096];
        let mut n = 0;
        for b in body.bytes().filter(|b| !b.is_ascii_whitespace()) {
            *text.get_mut(n).ok_or(Error::BadKey)? = b;
            n += 1;
        }
        use base64ct::Encoding;
        let der = base64ct::Base64::decode(&text[..n], out).map_err(|e| match e {
            base64ct::Error::InvalidLength => Error::InsufficientSize {
                required: n / 4 * 3,
            },
            _ => Error::BadKey,
        })?;
        return Ok((found, der.len()));
    }
    Err(Error::BadKey)
}

impl PrivateKey {
    /// Reads a PEM private key: `EC PRIVATE KEY` (SEC1) or `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let mut der = [0u8; 512];
        let (_, n) = pem_to_der(pem, &["EC PRIVATE KEY", "PRIVATE KEY"], &mut der)?;
        let key = Self::from_der(&der[..n]);
        der.zeroize();
        key
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or the subject key of a PEM
    /// `CERTIFICATE`.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let mut der = [0u8; 3072];
        match pem_to_der(pem, &["PUBLIC KEY", "CERTIFICATE"], &mut der)? {
            ("PUBLIC KEY", n) => Self::from_spki(&der[..n]),
            (_, n) => Self::from_certificate(&der[..n]),
        }
    }
}

// --- the little DER this profile needs -----------------------------------------------------

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
/// 1.2.840.10045.2.1 (id-ecPublicKey).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 (prime256v1 / secp256r1).
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A bounds-checked DER cursor; malformed input is `Error::BadKey`, never a panic.
struct DerReader<'a> {
    rest: &'a [u8],
}

impl<'a> DerReader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        DerReader { rest }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn finish(&self) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::BadKey)
        }
    }

    fn element(&mut self, tag: u8) -> Result<&'a [u8], Error> {
        let (&t, rest) = self.rest.split_first().ok_or(Error::BadKey)?;
        if t != tag {
            return Err(Error::BadKey);
        }
        let (&first, mut rest) = rest.split_first().ok_or(Error::BadKey)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 3 || rest.len() < n {
                return Err(Error::BadKey);
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(Error::BadKey);
        }
        let (content, after) = rest.split_at(len);
        self.rest = after;
        Ok(content)
    }

    fn sequence(&mut self) -> Result<DerReader<'a>, Error> {
        self.element(TAG_SEQUENCE).map(DerReader::new)
    }
}

/// Writes `SEQUENCE { INTEGER r, INTEGER s }` for 32-byte `r`, `s`; returns its length.
fn der_signature(r: &[u8], s: &[u8], out: &mut [u8; MAX_DER_SIGNATURE_LEN]) -> usize {
    fn integer(v: &[u8], out: &mut [u8]) -> usize {
        let start = v
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(v.len().saturating_sub(1));
        let v = &v[start..];
        let pad = usize::from(v.first().is_some_and(|&b| b & 0x80 != 0));
        out[0] = TAG_INTEGER;
        out[1] = (v.len() + pad) as u8;
        out[2] = 0;
        out[2 + pad..2 + pad + v.len()].copy_from_slice(v);
        2 + pad + v.len()
    }
    let mut body = [0u8; MAX_DER_SIGNATURE_LEN - 2];
    let n = integer(r, &mut body);
    let m = integer(s, &mut body[n..]);
    out[0] = TAG_SEQUENCE;
    out[1] = (n + m) as u8;
    out[2..2 + n + m].copy_from_slice(&body[..n + m]);
    2 + n + m
}

/// Reads a DER ECDSA signature into `r ‖ s` (32 bytes each).
fn parse_der_signature(der: &[u8], out: &mut [u8; 64]) -> Result<(), Error> {
    let bad = |_| Error::BadSignature;
    let mut top = DerReader::new(der);
    let mut seq = top.sequence().map_err(bad)?;
    top.finish().map_err(bad)?;
    for half in out.chunks_mut(32) {
        let mut v = seq.element(TAG_INTEGER).map_err(bad)?;
        while let [0, rest @ ..] = v {
            v = rest;
        }
        if v.len() > 32 {
            return Err(Error::BadSignature);
        }
        half[32 - v.len()..].copy_from_slice(v);
    }
    seq.finish().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signature_round_trips_with_high_bits_and_leading_zeros() {
        let mut r = [0u8; 32];
        r[0] = 0x80;
        r[31] = 1;
        let mut s = [0u8; 32];
        s[2] = 0x7f;
        let mut out = [0u8; MAX_DER_SIGNATURE_LEN];
        let n = der_signature(&r, &s, &mut out);
        assert_eq!(&out[..4], &[0x30, (n - 2) as u8, 0x02, 33]);
        let mut back = [0u8; 64];
        parse_der_signature(&out[..n], &mut back).unwrap();
        assert_eq!(&back[..32], &r);
        assert_eq!(&back[32..], &s);
    }

    #[test]
    fn spki_round_trips_through_the_parser() {
        let key = PrivateKey::from_scalar(&[7u8; 32]).unwrap();
        let spki = key.public_key().to_spki();
        assert_eq!(PublicKey::from_spki(&spki).unwrap(), key.public_key());
        assert!(PublicKey::from_spki(&spki[..90]).is_err());
    }

    #[test]
    fn sec1_der_round_trips_and_keeps_the_public_key() {
        // A scalar with a zero first byte: the fixed-width encoding must keep it.
        let mut d = [0x5au8; 32];
        d[0] = 0;
        let key = PrivateKey::from_scalar(&d).unwrap();
        let der = key.to_sec1_der();
        assert_eq!(&der[7..39], &d);
        let back = PrivateKey::from_der(&der).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        // The trailing public key is the one the scalar makes.
        assert_eq!(&der[SEC1_LEN - POINT_LEN..], &key.public_key().to_point());
        assert!(PrivateKey::from_der(&der[..SEC1_LEN - 1]).is_err());
    }
}
