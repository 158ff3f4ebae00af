//! TI CC3000 service-pack images, the NVMEM file table, and a sans-IO patch programmer.
//!
//! This crate does no IO of its own: the programmer returns NVMEM operations and takes their results.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;
