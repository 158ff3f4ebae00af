//! Server key rotation: the handshake key that accepts devices on either server key during a migration window,
//! and which key each device used.
//!
//! A rotation (`spark-cloud keys rotate`, [`Cloud::rotate_server_key`](super::Cloud::rotate_server_key)) makes a
//! new current key and keeps the old one as the previous key. Until the window is closed (`keys retire`), a
//! device's credentials block is decrypted with both private keys, every time, and the plaintext whose first 40
//! bytes are the nonce this connection sent is kept, chosen without a branch on secret data. A handshake that
//! fails with both keys costs the same two decryptions and ends in the same refusal as any other bad handshake.
//! The signature in the reply is made with the key that matched (which key a device holds is no secret: its
//! firmware and its DFU image say so).
//!
//! The choice itself is spark-protocol's [`MigrationKeys`]: the session hands it the connection's nonce through
//! the `HandshakeKeys` hook when it decrypts the device's credentials. This module names the keys (by
//! fingerprint) and tells which one each connection's handshake used.

use std::sync::Arc;

use spark_protocol::crypto::{MigrationKeys, RsaError, RsaPrivate};

use super::devices::ServerKey;
use super::state::ServerKeys;

/// Which of the server's keys a device's handshake used, against the keys held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyUse {
    /// The current key: the device has been moved (or never needed to be).
    Current,
    /// The previous key: the device still has to be moved before the window closes.
    Previous,
    /// A key the cloud no longer holds (retired after the device connected).
    Retired,
}

impl KeyUse {
    /// The word used in `GET /v1/devices` and `spark list`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::Current => "current",
            KeyUse::Previous => "previous",
            KeyUse::Retired => "retired",
        }
    }
}

/// A short, stable name of a server key: the SHA-256 of its public key (SPKI DER), in hex.
pub fn fingerprint(key: &spark_protocol::crypto::keys::RsaPrivateKey) -> String {
    use sha2::Digest;
    super::encoding::hex(&sha2::Sha256::digest(key.public_key().to_spki_der()))
}

/// The server keys as the handshake uses them, built once per rotation and shared by every connection.
#[derive(Clone)]
pub struct LoadedKeys {
    keys: MigrationKeys<ServerKey>,
    current_fingerprint: Arc<str>,
    previous_fingerprint: Option<Arc<str>>,
}

impl core::fmt::Debug for LoadedKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoadedKeys")
            .field("current", &self.current_fingerprint)
            .field("previous", &self.previous_fingerprint)
            .finish()
    }
}

impl LoadedKeys {
    /// Loads both keys into the handshake backend. A previous key of another size than the current one is left
    /// out (the session reads a block of the current key's size), and so is one equal to the current key.
    pub fn new(keys: &ServerKeys) -> Result<LoadedKeys, RsaError> {
        let current =
            ServerKey::new(&keys.current.as_ref_key()).map_err(|_| RsaError::InvalidKey)?;
        let current_fingerprint: Arc<str> = fingerprint(&keys.current).into();
        let mut previous = None;
        let mut previous_fingerprint = None;
        if let Some(old) = &keys.previous {
            let print: Arc<str> = fingerprint(old).into();
            let loaded = ServerKey::new(&old.as_ref_key()).map_err(|_| RsaError::InvalidKey)?;
            if print != current_fingerprint && loaded.modulus_len() == current.modulus_len() {
                previous = Some(loaded);
                previous_fingerprint = Some(print);
            }
        }
        Ok(LoadedKeys {
            keys: MigrationKeys::new(current, previous)?,
            current_fingerprint,
            previous_fingerprint,
        })
    }

    /// Whether a migration window is open (two keys accepted).
    pub fn window_open(&self) -> bool {
        self.keys.window_open()
    }

    /// How a device that used the key named `print` stands.
    pub fn classify(&self, print: &str) -> KeyUse {
        if *self.current_fingerprint == *print {
            KeyUse::Current
        } else if self.previous_fingerprint.as_deref() == Some(print) {
            KeyUse::Previous
        } else {
            KeyUse::Retired
        }
    }

    /// The handshake key of one new connection: both keys during a window, each connection with its own record of
    /// which one its handshake used.
    pub fn for_connection(&self) -> HandshakeKey {
        self.keys.clone()
    }

    /// The fingerprint of the key a connection's handshake used (the current key before the handshake).
    pub fn used_fingerprint(&self, key: &HandshakeKey) -> Arc<str> {
        match &self.previous_fingerprint {
            Some(print) if key.used_previous() => Arc::clone(print),
            _ => Arc::clone(&self.current_fingerprint),
        }
    }
}

/// The server key of one connection: the current key, or during a migration window either key, chosen by the
/// nonce (see the module docs); the session holds it ([`CloudConnection::server_key`]).
///
/// [`CloudConnection::server_key`]: spark_protocol::session::cloud::CloudConnection::server_key
pub type HandshakeKey = MigrationKeys<ServerKey>;
