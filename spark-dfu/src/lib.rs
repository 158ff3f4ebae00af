//! DFU 1.1 and DfuSe files, memory layouts, the Particle platform table and firmware inspection.
//!
//! This crate does no USB IO of its own: formats are read from and written to caller buffers.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;
