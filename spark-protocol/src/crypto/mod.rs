//! The crypto layer: keys and ciphers only — the AES-128-CBC framing with the protocol's IV rule,
//! the RSA handshake primitives for both roles, the session secret and RSA keys in every form a
//! device, a server or a CLI keeps them.
//!
//! Nothing here draws randomness of its own: every operation that needs random bytes takes a
//! [`rand_core::CryptoRng`] from the caller. RSA and the session cipher sit behind small traits
//! ([`RsaPublic`], [`RsaPrivate`], [`SessionCipher`]) so a device with hardware crypto or no heap,
//! or a cloud that wants a faster backend, can plug its own:
//!
//! | piece | default | alternative |
//! |---|---|---|
//! | session cipher | [`Aes128Cbc`] (`aes` + `cbc`, no_std, no heap) | `openssl::OpensslAes128Cbc` (feature `openssl`) |
//! | RSA | `rustcrypto` (feature `rsa`, no_std + `alloc`) | `openssl::{OpensslPublicKey, OpensslPrivateKey}` (feature `openssl`); `fixed::{FixedPublicKey, FixedPrivateKey}` (feature `rsa-fixed`, no heap, the device's key sizes) |
//!
//! Without `alloc` the framing, the session split, the key views and storage forms, and the
//! handshake functions all work without a heap; with `rsa-fixed` so does the device's whole
//! handshake.
//!
//! A device's RNG is [`rng::HardwareRng`] over its entropy source.
//!
//! A cloud should pick the `openssl` backend: see the [handshake security
//! notes](handshake#security-notes) on RUSTSEC-2023-0071 and on implicit rejection.

pub mod backend;
pub mod cipher;
pub mod framing;
pub mod handshake;
pub mod keys;
pub mod rng;
pub mod server_keys;
pub mod session;

#[cfg(feature = "rsa-fixed")]
pub mod fixed;
#[cfg(feature = "openssl")]
pub mod openssl;
#[cfg(feature = "rsa")]
pub mod rustcrypto;

pub use backend::{RsaError, RsaPrivate, RsaPublic, RsaScratch};
pub use cipher::{Aes128Cbc, CipherError, SessionCipher};
pub use framing::{Decoded, FrameDecoder, FrameEncoder, FrameError};
pub use handshake::{DeviceCredentials, HandshakeError, Nonce};
pub use keys::{KeyError, RsaPrivateKeyRef, RsaPublicKeyRef};
#[cfg(feature = "alloc")]
pub use keys::{RsaPrivateKey, RsaPublicKey};
pub use server_keys::{HandshakeKeys, MigrationKeys};
pub use session::SessionKey;
