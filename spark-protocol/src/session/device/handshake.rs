//! The RSA steps of the device handshake, behind a small trait.

use crate::crypto::handshake::{DEVICE_ID_LEN, SESSION_REPLY_LEN};
use crate::crypto::{HandshakeError, Nonce, RsaError, RsaScratch, SessionKey};

/// The two RSA steps a device performs in the handshake.
///
/// [`RsaHandshake`] implements it with the crypto layer's [`RsaPublic`](crate::crypto::RsaPublic)
/// / [`RsaPrivate`](crate::crypto::RsaPrivate) backends; a port with an RSA accelerator can
/// implement it directly.
///
/// Each step is lent an [`RsaScratch`]: memory of the connection's that the open session uses
/// later (its event queue), where an RSA backend may keep its numbers instead of on the stack.
/// An implementation that needs none ignores it; one that wraps another passes it on.
pub trait DeviceHandshake {
    /// Encrypts `nonce ‖ device_id` for the server into `out`; returns the length (256).
    fn credentials(
        &mut self,
        nonce: &Nonce,
        device_id: &[u8; DEVICE_ID_LEN],
        out: &mut [u8],
        scratch: &mut RsaScratch,
    ) -> Result<usize, HandshakeError>;

    /// The length of the server's reply (device modulus + server modulus: 384).
    fn session_reply_len(&self) -> usize {
        SESSION_REPLY_LEN
    }

    /// Opens the session secret from the server's reply and checks its signature.
    fn open_session(
        &mut self,
        reply: &[u8],
        scratch: &mut RsaScratch,
    ) -> Result<SessionKey, HandshakeError>;
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
        _: &mut RsaScratch,
    ) -> Result<usize, HandshakeError> {
        Err(HandshakeError::Rsa(RsaError::InvalidKey))
    }

    fn open_session(&mut self, _: &[u8], _: &mut RsaScratch) -> Result<SessionKey, HandshakeError> {
        Err(HandshakeError::Rsa(RsaError::InvalidKey))
    }
}

mod rsa_steps {
    use rand_core::CryptoRng;

    use super::*;
    use crate::crypto::handshake::{encrypt_core_credentials_in, open_session_key_in};
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
            scratch: &mut RsaScratch,
        ) -> Result<usize, HandshakeError> {
            encrypt_core_credentials_in(
                &self.server_key,
                &mut self.rng,
                nonce,
                device_id,
                out,
                scratch,
            )
        }

        fn session_reply_len(&self) -> usize {
            self.device_key.modulus_len() + self.server_key.modulus_len()
        }

        #[inline(never)]
        fn open_session(
            &mut self,
            reply: &[u8],
            scratch: &mut RsaScratch,
        ) -> Result<SessionKey, HandshakeError> {
            open_session_key_in(
                &self.device_key,
                &self.server_key,
                &mut self.rng,
                reply,
                scratch,
            )
        }
    }
}

pub use rsa_steps::RsaHandshake;
