//! Service-pack patch images: parsing, validation, identification and finding them inside firmware binaries.
//!
//! A CC3000 service pack is two images burnt into the module's NVMEM: the driver patch (file 4) and the firmware
//! patch (file 5). [`PatchImage`] parses either, [`KNOWN_IMAGES`] names every published one by SHA-256, and
//! [`find_embedded`] locates images carried inside a Spark Core application binary. [`synthetic`] writes images
//! with the same structure and made-up content, for demos and tests that run without TI's firmware.
//!
//! ```
//! use spark_cc3000::patch::synthetic::{SYNTHETIC_DRIVER_LEN, emit_synthetic_driver};
//! use spark_cc3000::patch::{Identification, ImageKind, PatchError, PatchImage, find_embedded};
//! use spark_cc3000::ServicePack;
//!
//! let mut driver = [0u8; SYNTHETIC_DRIVER_LEN];
//! emit_synthetic_driver(ServicePack::SP_1_28, &mut driver).unwrap();
//! let image = PatchImage::parse(&driver).unwrap();
//! assert_eq!(image.kind(), ImageKind::Driver);
//! assert!(image.record_count() > 0);
//! // Not one of TI's published images (those are known by SHA-256), but recognised as a synthetic one.
//! assert_eq!(image.identify(), Identification::Synthetic(ServicePack::SP_1_28));
//!
//! // A truncated image names what is wrong with it.
//! let err: PatchError = PatchImage::parse(&driver[..driver.len() - 3]).unwrap_err();
//! println!("refused: {err}");
//!
//! // Inside an application binary, the image is found at its offset.
//! let mut app = vec![0u8; 1000];
//! app.extend_from_slice(&driver);
//! app.extend_from_slice(&[0u8; 100]);
//! let found: Vec<_> = find_embedded(&app).collect();
//! assert!(found.iter().any(|e| e.offset == 1000));
//! ```

mod embedded;
mod image;
mod known;
pub mod synthetic;
mod version;

pub use embedded::{Embedded, EmbeddedImages, find_embedded};
pub use image::{
    DRIVER_ADDRESS_FLOOR, FIRMWARE_ADDRESS_LIMIT, HEADER_LEN, ImageKind, MAGIC, MAX_IMAGE_LEN,
    PADDING, PatchImage, RAM_REGION_END, RAM_REGION_START, RECORD_HEADER_LEN, Record, Records,
    emit, padding_len,
};
pub use known::{Identification, KNOWN_IMAGES, KnownImage, sha256};
pub use version::{RELEASES, ServicePack, TiRelease, VersionError, needs_deep_update};

/// Why bytes are not a valid patch image: one variant per invariant, with where it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// Shorter than the 12-byte header.
    #[error("patch image truncated: {len} bytes, the header alone is 12")]
    Truncated {
        /// The image length.
        len: usize,
    },
    /// Larger than an NVMEM patch slot.
    #[error("patch image is {len} bytes, larger than the 8192-byte NVMEM slot")]
    TooLarge {
        /// The image length.
        len: usize,
    },
    /// The first four bytes are not `00 01 00 00`.
    #[error("patch image format bytes are {found:02x?}, expected 00 01 00 00")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The payload-length word does not equal the image length - 8.
    #[error("patch image payload length word is {declared}, the image holds {expected}")]
    LengthMismatch {
        /// The header's value.
        declared: u32,
        /// Image length - 8.
        expected: u32,
    },
    /// Fewer than 8 bytes left for a record header.
    #[error("patch record header at offset {offset} is truncated")]
    TruncatedRecordHeader {
        /// Offset of the record header.
        offset: usize,
    },
    /// A record with length 0.
    #[error("patch record at offset {offset} is empty")]
    EmptyRecord {
        /// Offset of the record header.
        offset: usize,
    },
    /// A record's data runs past the end of the image.
    #[error("patch record at offset {offset} declares {len} bytes, only {available} remain")]
    TruncatedRecord {
        /// Offset of the record header.
        offset: usize,
        /// The declared data length.
        len: u32,
        /// Bytes after the record header.
        available: usize,
    },
    /// A record's padding runs past the end of the image.
    #[error("patch record padding at offset {offset} runs past the end of the image")]
    TruncatedPadding {
        /// Offset of the first padding byte.
        offset: usize,
    },
    /// A padding byte other than 0xFF.
    #[error("patch record padding byte at offset {offset} is {found:#04x}, expected 0xff")]
    BadPadding {
        /// Offset of the bad byte.
        offset: usize,
        /// The byte found.
        found: u8,
    },
    /// `address + length` does not fit in 32 bits.
    #[error("patch record at offset {offset} wraps the address space ({address:#x} + {len})")]
    AddressOverflow {
        /// Offset of the record header.
        offset: usize,
        /// The record's address.
        address: u32,
        /// The record's length.
        len: u32,
    },
    /// The header is followed by no record at all.
    #[error("patch image holds no records")]
    NoRecords,
    /// Two records cover the same chip addresses.
    #[error("patch records at offsets {first} and {second} overlap")]
    OverlappingRecords {
        /// Offset of the earlier record header.
        first: usize,
        /// Offset of the later record header.
        second: usize,
    },
    /// The RAM-end word differs from the high-water mark computed from the records.
    #[error("patch image RAM-end word is {declared:#x}, the records reach {computed:#x}")]
    RamEndMismatch {
        /// The header's value.
        declared: u32,
        /// Computed from the records.
        computed: u32,
    },
    /// The output buffer is too small.
    #[error("buffer too small: {required} bytes needed")]
    InsufficientSize {
        /// Bytes needed.
        required: usize,
    },
}
