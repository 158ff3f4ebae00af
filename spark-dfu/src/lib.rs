//! DFU 1.1 and DfuSe files, memory layouts, the Particle platform table and firmware inspection.
//!
//! This crate does no IO of its own: every format is read from a byte slice the caller owns and written into a
//! buffer the caller sizes (`*_len()` says how big; too small is [`InsufficientSize`]). With the `alloc` feature
//! `Vec`-returning conveniences sit on top of the slice API. Nothing here panics on any input.
//!
//! What lives where:
//!
//! - [`file`](mod@file): the DFU 1.1 suffix ([`file::suffix`]), the TI Stellaris and NXP LPC prefixes ([`file::prefix`]),
//!   the whole-file operations that `dfu-suffix` and `dfu-prefix` perform ([`file::DfuFile`]), DfuSe files
//!   ([`file::dfuse`]) and DfuSe memory-layout strings ([`file::layout`]). Their behaviour follows dfu-util 0.11
//!   byte for byte; where this crate is stricter (a bad CRC is an error, never "no suffix") the docs say so.
//! - [`platform`]: the Spark Core and later Particle devices: USB ids, alt settings, memory maps and the places
//!   where firmware and keys go, plus server-key images ([`platform::server_key`]).
//! - [`module`]: firmware inspection: Particle `module_info_t` binaries and legacy 2014 Core images.
//! - [`crc`]: the two CRC-32 flavours these formats use.
//!
//! ```
//! use spark_dfu::file::DfuFile;
//! use spark_dfu::file::suffix::SuffixRepr;
//! use spark_dfu::platform::{Item, Platform};
//!
//! // Where does user firmware go on a Spark Core, and over which USB ids and alt setting?
//! let core = Platform::Core;
//! let place = core.location(Item::UserFirmware).unwrap();
//! assert_eq!((place.alt, place.address), (0, 0x0800_5000));
//! let usb = core.dfu_usb();
//!
//! // `dfu-suffix -v 1d50 -p 607f -a firmware.bin`, into a caller buffer.
//! let firmware = [0u8; 32];
//! let mut out = [0u8; 48];
//! let n = DfuFile::add_suffix(&firmware, SuffixRepr::for_device(usb.vendor, usb.product), &mut out).unwrap();
//! let file = DfuFile::parse(&out[..n]).unwrap();
//! assert_eq!(file.firmware(), &firmware[..]);
//! assert!(file.suffix().unwrap().matches_device(0x1d50, 0x607f));
//! ```

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod crc;
pub mod file;
pub mod host;
pub mod module;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod ops;
pub mod platform;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;
pub mod transport;
#[cfg(feature = "usb")]
#[cfg_attr(docsrs, doc(cfg(feature = "usb")))]
pub mod usb;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// A caller-provided output buffer is too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("output buffer too small: {required} bytes required")]
pub struct InsufficientSize {
    /// The number of bytes the output needs.
    pub required: usize,
}

/// Checks that `out` can hold `required` bytes.
pub(crate) fn ensure_len(out: &[u8], required: usize) -> Result<(), InsufficientSize> {
    if out.len() < required {
        Err(InsufficientSize { required })
    } else {
        Ok(())
    }
}

/// Reads a little-endian u16 at `at`; callers have checked the bounds.
pub(crate) fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// Reads a little-endian u32 at `at`; callers have checked the bounds.
pub(crate) fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
