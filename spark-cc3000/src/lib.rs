//! TI CC3000 service-pack images, the NVMEM file table, and a portable sans-IO patch programmer.
//!
//! This crate does no IO, keeps no clock and allocates nothing: formats are parsed from and written to the caller's
//! buffers, and the [`programmer`] returns the next NVMEM operation to perform and takes its result. A port to any
//! MCU implements the four calls of [`programmer::Nvmem`]; [`hci`] encodes those calls for a real CC3000 over SPI.
//!
//! - [`patch`]: service-pack images (parse, validate, list records, identify by SHA-256, find inside binaries) and
//!   service-pack versions.
//! - [`nvmem`]: file ids, the file allocation table, radio-module parameters, MAC addresses.
//! - [`programmer`]: the sans-IO patch programmer, its blocking driver loop and the [`programmer::Nvmem`] trait.
//! - [`hci`]: HCI and SPI framing of the NVMEM commands and their events.
//! - `sim` (feature `sim`): a simulated CC3000 NVMEM with fault injection, for tests.
//!
//! The TI images themselves are not part of this crate; it knows them only by digest.
//!
//! ```
//! use spark_cc3000::patch::{self, needs_deep_update, Identification, ImageKind, PatchImage, ServicePack};
//!
//! // Any image of the format parses, not only TI's: build a one-record firmware patch.
//! let mut buf = [0u8; 64];
//! let len = patch::emit([(0x0314u32, &[0xAAu8; 10][..])], &mut buf).unwrap();
//! let image = PatchImage::parse(&buf[..len]).unwrap();
//! assert_eq!(image.kind(), ImageKind::Firmware);
//! assert_eq!(image.identify(), Identification::Unknown); // valid, but not a published service pack
//! assert_eq!(image.records().next().unwrap().address, 0x0314);
//!
//! // Versions compare as numbers: "1.8" is older than "1.24".
//! assert!(needs_deep_update("1.8", ServicePack::SP_1_28));
//! assert!(!needs_deep_update("1.32", ServicePack::SP_1_28));
//! ```

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "sim")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod hci;
pub mod nvmem;
pub mod patch;
pub mod programmer;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use patch::{
    Identification, ImageKind, KnownImage, PatchError, PatchImage, ServicePack, find_embedded,
};
