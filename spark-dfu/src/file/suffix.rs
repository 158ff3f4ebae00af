//! The DFU 1.1 file suffix: the last 16 bytes of a DFU file.
//!
//! Layout (little-endian): `bcdDevice`, `idProduct`, `idVendor`, `bcdDFU` (u16 each), the signature `"UFD"`,
//! `bLength`, and `dwCRC`, the CRC-32/JAMCRC of every byte of the file but the last four.
//!
//! [`Suffix::parse`] validates in dfu-util's order: too short, signature, CRC, then — the suffix now being
//! believed — `bLength < 16` (fatal in dfu-util) and `bLength` longer than the file (fatal). A `bLength` above 16
//! is accepted: the suffix then covers `bLength` bytes, of which only the last 16 have a meaning.

use crate::crc::jamcrc;
use crate::{InsufficientSize, ensure_len, le16, le32};

/// The length of the suffix this crate (and dfu-util) writes.
pub const SUFFIX_LEN: usize = 16;
/// The suffix signature as stored: `"DFU"` reversed.
pub const SIGNATURE: [u8; 3] = *b"UFD";
/// `bcdDFU` of a plain DFU 1.0 file (dfu-suffix's default).
pub const BCD_DFU_1_0: u16 = 0x0100;
/// `bcdDFU` of a DfuSe file.
pub const BCD_DFUSE: u16 = 0x011A;

/// Byte ranges inside the 16-byte suffix.
pub mod field {
    use core::ops::Range;
    /// `bcdDevice`.
    pub const BCD_DEVICE: Range<usize> = 0..2;
    /// `idProduct`.
    pub const ID_PRODUCT: Range<usize> = 2..4;
    /// `idVendor`.
    pub const ID_VENDOR: Range<usize> = 4..6;
    /// `bcdDFU`.
    pub const BCD_DFU: Range<usize> = 6..8;
    /// `ucDfuSignature`.
    pub const SIGNATURE: Range<usize> = 8..11;
    /// `bLength`.
    pub const LENGTH: usize = 11;
    /// `dwCRC`.
    pub const CRC: Range<usize> = 12..16;
}

/// Why a file has no usable suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuffixError {
    /// The file is shorter than 16 bytes.
    #[error("file too short for a DFU suffix ({len} bytes)")]
    TooShort {
        /// The file length.
        len: usize,
    },
    /// The signature bytes are not `"UFD"`: the file has no suffix.
    #[error("invalid DFU suffix signature")]
    BadSignature,
    /// The signature is there but the CRC is wrong: a damaged file, never a suffix-less one.
    #[error("DFU suffix CRC does not match (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc {
        /// `dwCRC` as stored.
        stored: u32,
        /// The CRC of the file's bytes.
        computed: u32,
    },
    /// `bLength` is below 16 (dfu-util: "Unsupported DFU suffix length", fatal).
    #[error("unsupported DFU suffix length {0}")]
    UnsupportedLength(u8),
    /// `bLength` is longer than the whole file (dfu-util: "Invalid DFU suffix length", fatal).
    #[error("invalid DFU suffix length {length} for a {file_len}-byte file")]
    LengthExceedsFile {
        /// `bLength`.
        length: u8,
        /// The file length.
        file_len: usize,
    },
}

impl SuffixError {
    /// Whether dfu-util would treat the file as simply having no suffix (and carry on when a suffix is optional):
    /// too short, wrong signature, or wrong CRC. The last is why dfu-util sends a damaged suffix to the device as
    /// payload; this crate's strict readers refuse it instead.
    #[must_use]
    pub fn is_dfu_util_soft(&self) -> bool {
        matches!(
            self,
            Self::TooShort { .. } | Self::BadSignature | Self::BadCrc { .. }
        )
    }

    /// Whether the file plainly has no suffix (too short or no signature), as opposed to a damaged one.
    #[must_use]
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::TooShort { .. } | Self::BadSignature)
    }
}

/// A validated suffix, as read from a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Suffix {
    /// `bcdDevice` (firmware release; 0xFFFF = any).
    pub bcd_device: u16,
    /// `idProduct` (0xFFFF = any).
    pub id_product: u16,
    /// `idVendor` (0xFFFF = any).
    pub id_vendor: u16,
    /// `bcdDFU`: 0x0100, or 0x011A for DfuSe.
    pub bcd_dfu: u16,
    /// `bLength`: how many bytes at the end of the file the suffix covers (≥ 16).
    pub length: u8,
    /// `dwCRC`.
    pub crc: u32,
}

impl Suffix {
    /// Reads and validates the suffix at the end of `file`, in dfu-util's order.
    pub fn parse(file: &[u8]) -> Result<Self, SuffixError> {
        let len = file.len();
        if len < SUFFIX_LEN {
            return Err(SuffixError::TooShort { len });
        }
        let s = &file[len - SUFFIX_LEN..];
        // dfu-util computes the CRC before looking at the signature; the verdict is the same either way, so the
        // cheap test goes first and a suffix-less file is never checksummed.
        if s[field::SIGNATURE] != SIGNATURE {
            return Err(SuffixError::BadSignature);
        }
        let stored = le32(s, field::CRC.start);
        let computed = jamcrc(&file[..len - 4]);
        if stored != computed {
            return Err(SuffixError::BadCrc { stored, computed });
        }
        let length = s[field::LENGTH];
        if usize::from(length) < SUFFIX_LEN {
            return Err(SuffixError::UnsupportedLength(length));
        }
        if usize::from(length) > len {
            return Err(SuffixError::LengthExceedsFile {
                length,
                file_len: len,
            });
        }
        Ok(Self {
            bcd_device: le16(s, field::BCD_DEVICE.start),
            id_product: le16(s, field::ID_PRODUCT.start),
            id_vendor: le16(s, field::ID_VENDOR.start),
            bcd_dfu: le16(s, field::BCD_DFU.start),
            length,
            crc: stored,
        })
    }

    /// The identification fields, for writing the suffix again.
    #[must_use]
    pub fn repr(&self) -> SuffixRepr {
        SuffixRepr {
            bcd_device: self.bcd_device,
            id_product: self.id_product,
            id_vendor: self.id_vendor,
            bcd_dfu: self.bcd_dfu,
        }
    }

    /// Whether `bcdDFU` marks a DfuSe file.
    #[must_use]
    pub fn is_dfuse(&self) -> bool {
        self.bcd_dfu == BCD_DFUSE
    }

    /// Whether a device with these USB ids matches the file (0xFFFF in the file matches anything).
    #[must_use]
    pub fn matches_device(&self, vendor: u16, product: u16) -> bool {
        (self.id_vendor == 0xFFFF || self.id_vendor == vendor)
            && (self.id_product == 0xFFFF || self.id_product == product)
    }
}

/// The fields of a suffix to write; the writer adds the signature, `bLength = 16` and the CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SuffixRepr {
    /// `bcdDevice`.
    pub bcd_device: u16,
    /// `idProduct`.
    pub id_product: u16,
    /// `idVendor`.
    pub id_vendor: u16,
    /// `bcdDFU`.
    pub bcd_dfu: u16,
}

impl Default for SuffixRepr {
    /// dfu-suffix's defaults: any device (0xFFFF everywhere), `bcdDFU` 0x0100.
    fn default() -> Self {
        Self {
            bcd_device: 0xFFFF,
            id_product: 0xFFFF,
            id_vendor: 0xFFFF,
            bcd_dfu: BCD_DFU_1_0,
        }
    }
}

impl SuffixRepr {
    /// A suffix for the given USB ids, any `bcdDevice`, `bcdDFU` 0x0100.
    #[must_use]
    pub fn for_device(id_vendor: u16, id_product: u16) -> Self {
        Self {
            id_vendor,
            id_product,
            ..Self::default()
        }
    }

    /// The first 12 bytes of the suffix (everything the CRC covers).
    #[must_use]
    pub fn head(&self) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[field::BCD_DEVICE].copy_from_slice(&self.bcd_device.to_le_bytes());
        h[field::ID_PRODUCT].copy_from_slice(&self.id_product.to_le_bytes());
        h[field::ID_VENDOR].copy_from_slice(&self.id_vendor.to_le_bytes());
        h[field::BCD_DFU].copy_from_slice(&self.bcd_dfu.to_le_bytes());
        h[field::SIGNATURE].copy_from_slice(&SIGNATURE);
        h[field::LENGTH] = SUFFIX_LEN as u8;
        h
    }

    /// Writes the suffix into the last 16 bytes of `file`, computing the CRC over everything before it.
    ///
    /// `file` is the whole output: body followed by 16 bytes of room.
    pub fn emit_in_place(&self, file: &mut [u8]) -> Result<(), InsufficientSize> {
        ensure_len(file, SUFFIX_LEN)?;
        let at = file.len() - SUFFIX_LEN;
        file[at..at + 12].copy_from_slice(&self.head());
        let crc = jamcrc(&file[..file.len() - 4]);
        let end = file.len();
        file[end - 4..].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Copies `body` into `out` and appends this suffix; returns the length written (`body.len() + 16`).
    pub fn append(&self, body: &[u8], out: &mut [u8]) -> Result<usize, InsufficientSize> {
        let total = body.len() + SUFFIX_LEN;
        ensure_len(out, total)?;
        out[..body.len()].copy_from_slice(body);
        self.emit_in_place(&mut out[..total])?;
        Ok(total)
    }

    /// [`append`](Self::append) into a new vector.
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn append_to_vec(&self, body: &[u8]) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec![0u8; body.len() + SUFFIX_LEN];
        // The buffer is sized above, so this cannot fail.
        let _ = self.append(body, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw32() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn default_suffix_bytes() {
        let mut out = [0u8; 48];
        assert_eq!(SuffixRepr::default().append(&raw32(), &mut out), Ok(48));
        assert_eq!(
            out[32..],
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x55, 0x46, 0x44, 0x10, 0x7f, 0x2a,
                0x72, 0x31
            ]
        );
        let s = Suffix::parse(&out).unwrap();
        assert_eq!(s.crc, 0x3172_2A7F);
        assert_eq!(s.repr(), SuffixRepr::default());
        assert_eq!(s.length, 16);
    }

    #[test]
    fn spark_suffix_bytes() {
        let repr = SuffixRepr {
            bcd_device: 0x0200,
            ..SuffixRepr::for_device(0x1d50, 0x607f)
        };
        let mut out = [0u8; 48];
        repr.append(&raw32(), &mut out).unwrap();
        assert_eq!(Suffix::parse(&out).unwrap().crc, 0x5147_B781);
        assert!(Suffix::parse(&out).unwrap().matches_device(0x1d50, 0x607f));
        assert!(!Suffix::parse(&out).unwrap().matches_device(0x1d50, 0x607d));
    }

    #[test]
    fn order_of_checks() {
        assert_eq!(
            Suffix::parse(&[0u8; 15]),
            Err(SuffixError::TooShort { len: 15 })
        );
        assert_eq!(Suffix::parse(&raw32()), Err(SuffixError::BadSignature));
        let mut out = [0u8; 48];
        SuffixRepr::default().append(&raw32(), &mut out).unwrap();
        out[47] ^= 1;
        assert!(matches!(
            Suffix::parse(&out),
            Err(SuffixError::BadCrc {
                stored: 0x3072_2A7F,
                computed: 0x3172_2A7F
            })
        ));
        // A bad signature wins over a bad CRC, as in dfu-util.
        out[42] = b'X';
        assert_eq!(Suffix::parse(&out), Err(SuffixError::BadSignature));
    }

    #[test]
    fn blength_rules() {
        let mut out = [0u8; 48];
        SuffixRepr::default().append(&raw32(), &mut out).unwrap();
        for (len, expect) in [
            (8u8, Err(SuffixError::UnsupportedLength(8))),
            (15, Err(SuffixError::UnsupportedLength(15))),
            (
                49,
                Err(SuffixError::LengthExceedsFile {
                    length: 49,
                    file_len: 48,
                }),
            ),
        ] {
            out[43] = len;
            let crc = jamcrc(&out[..44]);
            out[44..].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(Suffix::parse(&out).map(|s| s.length), expect.map(|()| 0u8));
        }
        for len in [16u8, 32, 48] {
            out[43] = len;
            let crc = jamcrc(&out[..44]);
            out[44..].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(Suffix::parse(&out).unwrap().length, len);
        }
    }

    #[test]
    fn small_buffer_is_reported() {
        let mut out = [0u8; 47];
        assert_eq!(
            SuffixRepr::default().append(&raw32(), &mut out),
            Err(InsufficientSize { required: 48 })
        );
    }
}
