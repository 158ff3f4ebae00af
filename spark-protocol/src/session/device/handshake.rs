//! The RSA steps of the device handshake, behind a small trait.

use crate::crypto::handshake::{DEVICE_ID_LEN, SESSION_REPLY_LEN};
use crate::crypto::{HandshakeError, Nonce, RsaError, SessionKey};

/// The two RSA steps a device performs in the handshake.
///
/// [`RsaHandshake`] implements it with the crypto layer's [`RsaPublic`](crate::crypto::RsaPublic)
/// / [`RsaPrivate`](crate::crypto::RsaPrivate) backends; a port with an RSA accelerator can
/// implement it directly.
pub trait DeviceHandshake {
    /// Encrypts `nonce ‖ device_id` for the server into `out`; returns the length (256).
    fn credentials(
        &mut self,
        nonce: &Nonce,
        device_id: &[u8; DEVICE_ID_LEN],
        out: &mut [u8],
    ) -> Result<usize, HandshakeError>;

    /// The length of the server's reply (device modulus + server modulus: 384).
    fn session_reply_len(&self) -> usize {
        SESSION_REPLY_LEN
    }

    /// Opens the session secret from the server's reply and checks its signature.
    fn open_session(&mut self, reply: &[u8]) -> Result<SessionKey, HandshakeError>;
}

/// No handshake: for a session whose secret is known
/// ([`DeviceConnection::from_session`](super::DeviceConnection::from_session)). Used for a
/// handshake, it fails with [`HandshakeError::Rsa`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHandshake;

impl DeviceHandshake for NoHandshake {
    fn credentials(
        &mut self,
        _: &Nonce,
        _: &[u8; DEVICE_ID_LEN],
        _: &mut [u8],
    ) -> Result<usize, HandshakeError> {
        Err(HandshakeError::Rsa(RsaError::InvalidKey))
    }

    fn open_session(&mut self, _: &[u8]) -> Result<SessionKey, HandshakeError> {
        Err(HandshakeError::Rsa(RsaError::InvalidKey))
    }
}

mod rsa_steps {
    use rand_core::CryptoRng;

    use super::*;
    use crate::crypto::handshake::{encrypt_device_credentials, open_session_key};
    use crate::crypto::{RsaPrivate, RsaPublic};

    /// The handshake with RSA keys: the device's private key, the server's public key and an
    /// RNG for the PKCS#1 v1.5 padding and blinding.
    #[derive(Debug)]
    pub struct RsaHandshake<D, S, R> {
        device_key: D,
        server_key: S,
        rng: R,
    }

    impl<D: RsaPrivate, S: RsaPublic, R: CryptoRng> RsaHandshake<D, S, R> {
        /// Wraps the keys and the RNG.
        pub fn new(device_key: D, server_key: S, rng: R) -> Self {
            RsaHandshake {
                device_key,
                server_key,
                rng,
            }
        }
    }

    // Out of line: the RSA steps' numbers then occupy a device's stack only while they run, not in
    // the frame of whatever drives the session.
    impl<D: RsaPrivate, S: RsaPublic, R: CryptoRng> DeviceHandshake for RsaHandshake<D, S, R> {
        #[inline(never)]
        fn credentials(
            &mut self,
            nonce: &Nonce,
            device_id: &[u8; DEVICE_ID_LEN],
            out: &mut [u8],
        ) -> Result<usize, HandshakeError> {
            encrypt_device_credentials(&self.server_key, &mut self.rng, nonce, device_id, None, out)
        }

        fn session_reply_len(&self) -> usize {
            self.device_key.modulus_len() + self.server_key.modulus_len()
        }

        #[inline(never)]
        fn open_session(&mut self, reply: &[u8]) -> Result<SessionKey, HandshakeError> {
            open_session_key(&self.device_key, &self.server_key, &mut self.rng, reply)
        }
    }
}

pub use rsa_steps::RsaHandshake;
