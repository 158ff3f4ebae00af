//! The Spark Core device <-> cloud protocol, without IO.
//!
//! This crate does no network IO, reads no clock and draws no randomness of its own: bytes,
//! the current time and an RNG all come from the caller.
//!
//! [`wire`] holds the plaintext messages, bytes only: the CoAP codec of the Spark dialect, the
//! typed messages of both directions and how each peer classifies them (no_std, no alloc).
//!
//! [`crypto`] holds the keys and ciphers: the AES-128-CBC framing with the protocol's IV rule,
//! the RSA handshake primitives for the device and the cloud, the session secret, and RSA keys
//! in PEM, DER and the device's storage forms. RSA and the session cipher are pluggable
//! (RustCrypto by default, OpenSSL with the `openssl` feature, the heap-free `rsa-fixed` backend for a device).
//!
//! [`session`] holds the sans-IO sessions built on both: the [`session::Connection`] trait the
//! device and the cloud side share, the time they are driven by and the errors they end with;
//! [`session::driver`] runs a session over a byte stream (blocking or tokio), and
//! `session::pair` (with `alloc`) joins two sessions on virtual time with fault injection.
//!
//! `dtls` (feature `dtls`) is DTLS 1.2 in the UDP protocol's one profile (ECDHE-ECDSA on P-256,
//! AES-128-CCM-8), client and server, on the same sans-IO terms and without a heap.
//!
//! Cargo features: `std` (default; implies `alloc`), `alloc` (owned keys, PEM strings, the
//! RustCrypto RSA backend's needs), `rsa` (default; the RustCrypto RSA backend, no_std with
//! `alloc`), `rsa-fixed` (the heap-free RSA backend for a device: RSA-1024 private and RSA-2048 public operations on
//! the stack, no `alloc`), `openssl` (the OpenSSL backend for RSA and AES-128-CBC; std, links the system's
//! libssl), `embedded-io` (the blocking session driver over `embedded_io` streams; no_std),
//! `tokio` (the async session driver over tokio streams; std), `dtls` (DTLS 1.2 for the UDP
//! protocol; no_std without `alloc`; adds `p256`, `ccm` and `sha2`). Without `alloc` the framing and
//! the key views still work, on no heap, and with `rsa-fixed` the device's whole handshake.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod crypto;
#[cfg(feature = "dtls")]
pub mod dtls;
pub mod id;
pub mod session;
pub mod variable;
pub mod wire;

pub use id::{DeviceId, DeviceIdHex, ParseDeviceIdError};

// The README's example is a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
pub use variable::VarType;
#[cfg(feature = "alloc")]
pub use variable::VariableValue;
