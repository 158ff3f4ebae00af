//! The Spark Core device <-> cloud protocol, without IO.
//!
//! This crate does no network IO, reads no clock and draws no randomness of its own: bytes,
//! the current time and an RNG all come from the caller.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod crypto;
