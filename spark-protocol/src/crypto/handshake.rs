//! The handshake's cryptographic steps for both roles, over any [`RsaPublic`] / [`RsaPrivate`]
//! backend and into caller buffers:
//!
//! 1. cloud: a 40-byte [`Nonce`], sent in the clear;
//! 2. device: [`encrypt_device_credentials`] — RSA-2048 PKCS#1 v1.5 encryption with the server
//!    key of `nonce ‖ device id (12)` [‖ device public key DER (162)];
//!    cloud: [`decrypt_device_credentials`] — decrypts and checks the nonce;
//! 3. cloud: [`seal_session_key`] — the 384-byte reply: RSA-1024 encryption of the 40-byte
//!    session secret with the device key ‖ a raw RSA-2048 PKCS#1 type 1 signature, without
//!    DigestInfo, over `HMAC-SHA1(session secret, that ciphertext)`;
//!    device: [`open_session_key`] — decrypts, recomputes the HMAC and verifies the signature.
//!
//! ```no_run
//! # #[cfg(feature = "rsa")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use spark_protocol::crypto::handshake::*;
//! use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
//! use spark_protocol::crypto::{RsaPrivateKey, SessionKey};
//! // Any `rand_core` 0.10 `CryptoRng`; here the OS generator from `rand`.
//! fn rng() -> impl rand_core::CryptoRng { rand_core::UnwrapErr(rand::rngs::SysRng) }
//! // Keys: the server's pair and the device's pair, from files or freshly generated.
//! let server = RsaPrivateKey::generate(&mut rng(), 2048)?;
//! let device = RsaPrivateKey::generate(&mut rng(), 1024)?;
//! let server_pub = RustCryptoPublicKey::new(&server.public_key().as_ref_key())?;
//! let server_priv = RustCryptoPrivateKey::new(&server.as_ref_key())?;
//! let device_pub = RustCryptoPublicKey::new(&device.public_key().as_ref_key())?;
//! let device_priv = RustCryptoPrivateKey::new(&device.as_ref_key())?;
//!
//! let nonce = Nonce::generate(&mut rng()); // cloud -> device, in the clear
//! let mut credentials = [0u8; DEVICE_CREDENTIALS_LEN]; // device -> cloud
//! encrypt_device_credentials(&server_pub, &mut rng(), &nonce, &[0x53; 12], None, &mut credentials)?;
//! let device_id = decrypt_device_credentials(&server_priv, &mut rng(), &nonce, &credentials)?.device_id;
//!
//! let session = SessionKey::generate(&mut rng()); // cloud -> device
//! let mut reply = [0u8; SESSION_REPLY_LEN];
//! seal_session_key(&device_pub, &server_priv, &mut rng(), &session, &mut reply)?;
//! let opened = open_session_key(&device_priv, &server_pub, &mut rng(), &reply)?;
//! assert_eq!(opened, session); // both ends now frame with `session`
//! # let _ = device_id;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "rsa"))]
//! # fn main() {}
//! ```
//!
//! # Security notes
//!
//! * **Implicit rejection.** With the `rsa` backend a PKCS#1 v1.5 ciphertext with bad padding
//!   decrypts to a pseudo-random plaintext instead of an error (`rsa` 0.10). The functions here
//!   never trust a decryption: the cloud compares the nonce in constant time and reports any
//!   failure, whatever its cause, as [`HandshakeError::Authentication`]; the device only accepts
//!   the session secret once the server's signature over its HMAC verifies.
//! * **RUSTSEC-2023-0071 (Marvin).** The advisory: `rsa` before 0.10 leaked timing from its
//!   private-key operations, enough for a network attacker who can time many of them to decrypt
//!   a chosen PKCS#1 v1.5 ciphertext or forge a signature with the key. `rsa` 0.10 moved to
//!   constant-time `crypto-bigint` arithmetic and recommends migrating to it, yet its PKCS#1 v1.5
//!   module still warns that it remains exposed to Marvin-class attacks (RustCrypto/RSA#626), and
//!   PKCS#1 v1.5 is what this protocol uses.
//!   - The **cloud** is the exposed role: it decrypts ciphertexts anyone can send (step 2) and
//!     signs (step 3) on every connection, at the attacker's pace. A cloud facing the internet
//!     should use the `openssl` backend, whose PKCS#1 v1.5 code is the hardened one, and it must
//!     answer every failure of step 2 the same way (this module reports one error for all).
//!   - The **device** performs one private operation per connection, on a ciphertext it fetched
//!     from the server it chose, and rejects it unless the server's signature verifies; an
//!     attacker gets few, slow measurements. The RustCrypto backend (no_std) is a reasonable
//!     default there; a device that reconnects to untrusted networks in a loop still gives an
//!     on-path attacker one timing per connection, which is why the backend is pluggable.
//!
//! The functions take the RNG for blinding and padding; none of them draws randomness elsewhere.

use core::fmt;

use hmac::{KeyInit, Mac};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;

use crate::crypto::backend::{RsaError, RsaPrivate, RsaPublic, RsaScratch};
use crate::crypto::keys::{KeyError, RsaPublicKeyRef};
use crate::crypto::server_keys::HandshakeKeys;
use crate::crypto::session::{SESSION_KEY_LEN, SessionKey};

/// Size of the cloud's nonce.
pub const NONCE_LEN: usize = 40;
/// Size of a device id (the STM32 96-bit unique id).
pub const DEVICE_ID_LEN: usize = 12;
/// Size of an HMAC-SHA1.
pub const HMAC_LEN: usize = 20;
/// Size of the device's credentials ciphertext under an RSA-2048 server key.
pub const DEVICE_CREDENTIALS_LEN: usize = 256;
/// Size of the cloud's reply for an RSA-1024 device key and an RSA-2048 server key.
pub const SESSION_REPLY_LEN: usize = 384;
/// The largest RSA block handled here (4096-bit keys).
const MAX_BLOCK: usize = 512;
/// The longest public key DER a device may append (what fits a 4096-bit server block).
const MAX_APPENDED_KEY: usize = MAX_BLOCK - 11 - NONCE_LEN - DEVICE_ID_LEN;

/// Why a handshake step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's message has the wrong length for the keys in use.
    #[error("handshake message of {len} bytes where {expected} are required")]
    BadLength {
        /// The length received.
        len: usize,
        /// The length required.
        expected: usize,
    },
    /// The cloud could not authenticate the device's credentials: they do not decrypt, are too
    /// short, or do not carry the nonce. The causes are deliberately not told apart.
    #[error("device credentials failed authentication")]
    Authentication,
    /// The session secret in the cloud's reply is not 40 bytes.
    #[error("the session key does not decrypt to 40 bytes")]
    SessionKey,
    /// The cloud's signature over the session key does not verify with the server key.
    #[error("the server's signature does not verify")]
    Signature,
    /// An RSA operation failed outside the peer's control (buffer, key or backend).
    #[error(transparent)]
    Rsa(#[from] RsaError),
}

/// The cloud's 40-byte challenge.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Nonce {
    /// A fresh nonce from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut bytes);
        Nonce(bytes)
    }
}

/// What the cloud learns from the device's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCredentials {
    /// The device id.
    pub device_id: [u8; DEVICE_ID_LEN],
    key: [u8; MAX_APPENDED_KEY],
    key_len: usize,
}

impl fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("device_id", &self.device_id)
            .field("public_key_len", &self.key_len)
            .finish()
    }
}

impl DeviceCredentials {
    /// The public key DER the device appended (Photon and later; the Core sends none). Its
    /// content is whatever the device sent: parse it before use.
    #[must_use]
    pub fn public_key_der(&self) -> Option<&[u8]> {
        (self.key_len > 0).then(|| &self.key[..self.key_len])
    }

    /// The appended public key, parsed (SPKI, as Device OS sends it, or PKCS#1).
    pub fn public_key(&self) -> Option<Result<RsaPublicKeyRef<'_>, KeyError>> {
        self.public_key_der().map(RsaPublicKeyRef::from_der)
    }
}

/// Device, step 2: encrypts `nonce ‖ device_id [‖ device_public_key_der]` with the server's
/// public key into `out` and returns the ciphertext length (the server modulus size, 256).
pub fn encrypt_device_credentials<K: RsaPublic + ?Sized, R: CryptoRng + ?Sized>(
    server_key: &K,
    rng: &mut R,
    nonce: &Nonce,
    device_id: &[u8; DEVICE_ID_LEN],
    device_public_key_der: Option<&[u8]>,
    out: &mut [u8],
) -> Result<usize, HandshakeError> {
    match device_public_key_der {
        None | Some([]) => encrypt_core_credentials_in(
            server_key,
            rng,
            nonce,
            device_id,
            out,
            &mut RsaScratch::new(),
        ),
        Some(extra) => encrypt_credentials_with_key(server_key, rng, nonce, device_id, extra, out),
    }
}

/// Device, step 2 in the Core's form (`nonce ‖ device_id`, no public key appended), as
/// [`encrypt_device_credentials`] with `None`, the RSA operation's numbers in `scratch`.
pub fn encrypt_core_credentials_in<K: RsaPublic + ?Sized, R: CryptoRng + ?Sized>(
    server_key: &K,
    rng: &mut R,
    nonce: &Nonce,
    device_id: &[u8; DEVICE_ID_LEN],
    out: &mut [u8],
    scratch: &mut RsaScratch,
) -> Result<usize, HandshakeError> {
    // In a buffer of its size: a device's stack is small.
    let mut plain = [0u8; NONCE_LEN + DEVICE_ID_LEN];
    plain[..NONCE_LEN].copy_from_slice(&nonce.0);
    plain[NONCE_LEN..].copy_from_slice(device_id);
    Ok(server_key.encrypt_pkcs1v15_in(rng, &plain, out, scratch)?)
}

/// [`encrypt_device_credentials`] with a public key appended, in a buffer for the largest block.
#[inline(never)]
fn encrypt_credentials_with_key<K: RsaPublic + ?Sized, R: CryptoRng + ?Sized>(
    server_key: &K,
    rng: &mut R,
    nonce: &Nonce,
    device_id: &[u8; DEVICE_ID_LEN],
    extra: &[u8],
    out: &mut [u8],
) -> Result<usize, HandshakeError> {
    let len = NONCE_LEN + DEVICE_ID_LEN + extra.len();
    let mut plain = [0u8; MAX_BLOCK];
    let plain = plain.get_mut(..len).ok_or(RsaError::MessageTooLong)?;
    plain[..NONCE_LEN].copy_from_slice(&nonce.0);
    plain[NONCE_LEN..NONCE_LEN + DEVICE_ID_LEN].copy_from_slice(device_id);
    plain[NONCE_LEN + DEVICE_ID_LEN..].copy_from_slice(extra);
    Ok(server_key.encrypt_pkcs1v15(rng, plain, out)?)
}

/// Cloud, step 2: decrypts the device's credentials with the server's private key and checks
/// that they start with `nonce`. Any failure past the length check is
/// [`HandshakeError::Authentication`].
///
/// `server_key` is any [`RsaPrivate`], or a holder of several keys that picks the decryption
/// carrying `nonce` ([`HandshakeKeys`], e.g. [`MigrationKeys`](crate::crypto::MigrationKeys)
/// during a key rotation's migration window).
pub fn decrypt_device_credentials<K: HandshakeKeys + ?Sized, R: CryptoRng + ?Sized>(
    server_key: &K,
    rng: &mut R,
    nonce: &Nonce,
    ciphertext: &[u8],
) -> Result<DeviceCredentials, HandshakeError> {
    let expected = server_key.credentials_len();
    if ciphertext.len() != expected || expected > MAX_BLOCK {
        return Err(HandshakeError::BadLength {
            len: ciphertext.len(),
            expected,
        });
    }
    let mut plain = [0u8; MAX_BLOCK];
    let len = server_key
        .decrypt_credentials(rng, nonce, ciphertext, &mut plain)
        .map_err(|e| match e {
            RsaError::Backend => HandshakeError::Rsa(e),
            _ => HandshakeError::Authentication,
        })?;
    let plain = plain.get(..len).ok_or(HandshakeError::Authentication)?;
    // A third-party backend could hand back more than PKCS#1 v1.5 allows (k - 11 bytes).
    let len_ok = (NONCE_LEN + DEVICE_ID_LEN..=NONCE_LEN + DEVICE_ID_LEN + MAX_APPENDED_KEY)
        .contains(&plain.len());
    let nonce_ok = len_ok && bool::from(plain[..NONCE_LEN].ct_eq(&nonce.0));
    if !nonce_ok {
        return Err(HandshakeError::Authentication);
    }
    let mut creds = DeviceCredentials {
        device_id: [0; DEVICE_ID_LEN],
        key: [0; MAX_APPENDED_KEY],
        key_len: 0,
    };
    creds
        .device_id
        .copy_from_slice(&plain[NONCE_LEN..NONCE_LEN + DEVICE_ID_LEN]);
    let extra = &plain[NONCE_LEN + DEVICE_ID_LEN..];
    creds.key[..extra.len()].copy_from_slice(extra);
    creds.key_len = extra.len();
    Ok(creds)
}

// Out of line: the HMAC's state then occupies a device's stack only while it runs, not under the RSA steps of
// `open_session_key`.
#[inline(never)]
fn session_hmac(session: &SessionKey, ciphertext: &[u8]) -> [u8; HMAC_LEN] {
    // HMAC takes keys of any length; 40 bytes fit SHA-1's 64-byte block and are used as they are.
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(session.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(ciphertext);
    mac.finalize().into_bytes().into()
}

/// The HMAC-SHA1 keyed with the session secret over the session-key ciphertext: what the
/// server signs.
#[must_use]
pub fn session_key_hmac(session: &SessionKey, ciphertext: &[u8]) -> [u8; HMAC_LEN] {
    session_hmac(session, ciphertext)
}

/// The reply length for the given keys: device modulus + server modulus (128 + 256 = 384).
pub fn session_reply_len<D: RsaPublic + ?Sized, S: RsaPrivate + ?Sized>(
    device_key: &D,
    server_key: &S,
) -> usize {
    device_key.modulus_len() + server_key.modulus_len()
}

/// Cloud, step 3: encrypts `session` with the device's public key, signs its HMAC with the
/// server's private key, and writes `ciphertext ‖ signature` into `out`; returns the length
/// ([`session_reply_len`], 384).
pub fn seal_session_key<D: RsaPublic + ?Sized, S: RsaPrivate + ?Sized, R: CryptoRng + ?Sized>(
    device_key: &D,
    server_key: &S,
    rng: &mut R,
    session: &SessionKey,
    out: &mut [u8],
) -> Result<usize, HandshakeError> {
    let required = session_reply_len(device_key, server_key);
    let out = out
        .get_mut(..required)
        .ok_or(RsaError::InsufficientSize { required })?;
    let (ciphertext, signature) = out.split_at_mut(device_key.modulus_len());
    device_key.encrypt_pkcs1v15(rng, session.as_bytes(), ciphertext)?;
    let hmac = session_hmac(session, ciphertext);
    server_key.sign_pkcs1v15_unprefixed(rng, &hmac, signature)?;
    Ok(required)
}

/// Device, step 3: decrypts the session secret from the cloud's reply with the device's private
/// key and accepts it only if the server's signature over its HMAC verifies.
pub fn open_session_key<D: RsaPrivate + ?Sized, S: RsaPublic + ?Sized, R: CryptoRng + ?Sized>(
    device_key: &D,
    server_key: &S,
    rng: &mut R,
    reply: &[u8],
) -> Result<SessionKey, HandshakeError> {
    open_session_key_in(device_key, server_key, rng, reply, &mut RsaScratch::new())
}

/// [`open_session_key`] with the RSA operations' numbers in `scratch` (memory the caller lends
/// instead of stack).
pub fn open_session_key_in<D: RsaPrivate + ?Sized, S: RsaPublic + ?Sized, R: CryptoRng + ?Sized>(
    device_key: &D,
    server_key: &S,
    rng: &mut R,
    reply: &[u8],
    scratch: &mut RsaScratch,
) -> Result<SessionKey, HandshakeError> {
    let split = device_key.modulus_len();
    let expected = split + server_key.modulus_len();
    if reply.len() != expected || split > MAX_BLOCK {
        return Err(HandshakeError::BadLength {
            len: reply.len(),
            expected,
        });
    }
    let (ciphertext, signature) = reply.split_at(split);
    // Room for the 40-byte secret only: a longer plaintext is an error of the backend's (too small an
    // output), reported as a bad session key like any other wrong plaintext. A device's stack is small.
    let mut plain = zeroize::Zeroizing::new([0u8; SESSION_KEY_LEN]);
    let len = device_key
        .decrypt_pkcs1v15_in(rng, ciphertext, &mut plain[..], scratch)
        .map_err(|e| match e {
            RsaError::Backend | RsaError::InvalidKey => HandshakeError::Rsa(e),
            _ => HandshakeError::SessionKey,
        })?;
    // Under implicit rejection a forged ciphertext can decrypt to 40 bytes too: only the
    // signature check below decides.
    let bytes: [u8; SESSION_KEY_LEN] = plain
        .get(..len)
        .and_then(|p| p.try_into().ok())
        .ok_or(HandshakeError::SessionKey)?;
    let session = SessionKey::from_bytes(bytes);
    let hmac = session_hmac(&session, ciphertext);
    server_key
        .verify_pkcs1v15_unprefixed_in(&hmac, signature, scratch)
        .map_err(|e| match e {
            RsaError::Backend | RsaError::InvalidKey => HandshakeError::Rsa(e),
            _ => HandshakeError::Signature,
        })?;
    Ok(session)
}
