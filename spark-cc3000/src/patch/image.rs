//! The service-pack image format: a 12-byte header and `{address, length, data}` records.
//!
//! No source documents this format; it is inferred from every published image (see the crate's reference notes) and
//! holds for each of them to the last byte:
//!
//! ```text
//! off  size  field
//! 0    4     format: 00 01 00 00
//! 4    4     u32 LE payload length = image length - 8
//! 8    4     u32 LE RAM end: 0x180000 + the bytes placed in the 0x180000 region
//! 12   ...   records until the end: u32 LE address, u32 LE length, data, 0xFF padding to a multiple of 4
//! ```
//!
//! [`PatchImage::parse`] checks every invariant and names the first one that fails; after a successful parse nothing
//! in this module panics or fails, whatever the bytes.

use super::{PatchError, ServicePack};

/// The four format bytes every image starts with.
pub const MAGIC: [u8; 4] = [0x00, 0x01, 0x00, 0x00];
/// The header length: format, payload length and RAM end.
pub const HEADER_LEN: usize = 12;
/// A record's header length: address and length.
pub const RECORD_HEADER_LEN: usize = 8;
/// The largest image that fits an NVMEM patch slot (files 4 and 5 are 0x2000 bytes in the programmer's table).
pub const MAX_IMAGE_LEN: usize = 0x2000;
/// The start of the chip's patch RAM region.
pub const RAM_REGION_START: u32 = 0x0018_0000;
/// The end (exclusive) of the patch RAM region whose use the header's RAM-end word accounts for.
pub const RAM_REGION_END: u32 = 0x0019_0000;
/// Record addresses at or above this belong to the driver (host-side network stack) patch.
pub const DRIVER_ADDRESS_FLOOR: u32 = 0x0008_0000;
/// Firmware (WiLink) patch records all lie below this address.
pub const FIRMWARE_ADDRESS_LIMIT: u32 = 0x0003_0000;
/// The byte that pads each record's data to a multiple of 4.
pub const PADDING: u8 = 0xFF;

mod field {
    use core::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const PAYLOAD_LEN: Range<usize> = 4..8;
    pub(super) const RAM_END: Range<usize> = 8..12;
}

/// Which of the two patch files an image is, judged from its record addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// The driver patch (NVMEM file 4): records at or above 0x80000 (ROM-patch and RAM regions).
    Driver,
    /// The firmware (WiLink) patch (NVMEM file 5): every record below 0x30000 and no RAM use.
    Firmware,
    /// Well formed, but the addresses match neither kind.
    Unclassified,
}

impl core::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ImageKind::Driver => "driver patch",
            ImageKind::Firmware => "firmware patch",
            ImageKind::Unclassified => "unclassified patch",
        })
    }
}

/// One record of an image: where its data goes and the data itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Byte offset of the record header inside the image.
    pub offset: usize,
    /// The chip address the data is placed at.
    pub address: u32,
    /// The data (without padding).
    pub data: &'a [u8],
}

impl Record<'_> {
    /// The first address after the record's data.
    pub fn end(&self) -> u32 {
        // parse() proved address + len fits a u32.
        self.address.wrapping_add(self.data.len() as u32)
    }

    /// Whether the record starts in the patch RAM region.
    pub fn in_ram_region(&self) -> bool {
        (RAM_REGION_START..RAM_REGION_END).contains(&self.address)
    }
}

/// A validated service-pack image, borrowed from the caller's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchImage<'a> {
    bytes: &'a [u8],
    records: usize,
    ram_end: u32,
    kind: ImageKind,
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Number of padding bytes after `len` data bytes.
pub const fn padding_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

impl<'a> PatchImage<'a> {
    /// Parses and validates an image, naming the first invariant that fails.
    ///
    /// The checks, in order: long enough for the header; not larger than a patch slot ([`MAX_IMAGE_LEN`]); the format
    /// bytes; the payload-length word equals `len - 8`; the records chain exactly to the end (each header complete,
    /// each length non-zero and within the image, `address + length` without overflow, padding all 0xFF); no two
    /// records overlap; the RAM-end word equals the computed RAM high-water mark.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(PatchError::Truncated { len: bytes.len() });
        }
        if bytes.len() > MAX_IMAGE_LEN {
            return Err(PatchError::TooLarge { len: bytes.len() });
        }
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(PatchError::BadMagic { found: magic });
        }
        let declared = le32(bytes, field::PAYLOAD_LEN.start).unwrap_or(0);
        let expected = (bytes.len() - 8) as u32;
        if declared != expected {
            return Err(PatchError::LengthMismatch { declared, expected });
        }
        let mut offset = HEADER_LEN;
        let mut records = 0usize;
        let mut ram_end = RAM_REGION_START;
        let mut max_addr = 0u32;
        while offset < bytes.len() {
            let (Some(address), Some(len)) = (le32(bytes, offset), le32(bytes, offset + 4)) else {
                return Err(PatchError::TruncatedRecordHeader { offset });
            };
            if len == 0 {
                return Err(PatchError::EmptyRecord { offset });
            }
            let data_start = offset + RECORD_HEADER_LEN;
            let available = bytes.len() - data_start;
            if len as usize > available {
                return Err(PatchError::TruncatedRecord {
                    offset,
                    len,
                    available,
                });
            }
            let Some(end) = address.checked_add(len) else {
                return Err(PatchError::AddressOverflow {
                    offset,
                    address,
                    len,
                });
            };
            let data_end = data_start + len as usize;
            let pad = padding_len(len as usize);
            let Some(padding) = bytes.get(data_end..data_end + pad) else {
                return Err(PatchError::TruncatedPadding { offset: data_end });
            };
            if let Some(i) = padding.iter().position(|&b| b != PADDING) {
                return Err(PatchError::BadPadding {
                    offset: data_end + i,
                    found: padding[i],
                });
            }
            if (RAM_REGION_START..RAM_REGION_END).contains(&address) {
                ram_end = ram_end.max(end);
            }
            max_addr = max_addr.max(address);
            records += 1;
            offset = data_end + pad;
        }
        if records == 0 {
            return Err(PatchError::NoRecords);
        }
        let kind = if max_addr >= DRIVER_ADDRESS_FLOOR {
            ImageKind::Driver
        } else if max_addr < FIRMWARE_ADDRESS_LIMIT && ram_end == RAM_REGION_START {
            ImageKind::Firmware
        } else {
            ImageKind::Unclassified
        };
        let image = PatchImage {
            bytes,
            records,
            ram_end,
            kind,
        };
        image.check_overlaps()?;
        let declared = le32(bytes, field::RAM_END.start).unwrap_or(0);
        if declared != ram_end {
            return Err(PatchError::RamEndMismatch {
                declared,
                computed: ram_end,
            });
        }
        Ok(image)
    }

    fn check_overlaps(&self) -> Result<(), PatchError> {
        // Quadratic, but bounded: a slot holds at most 0x2000 / 12 records, and no allocation is needed.
        for (i, a) in self.records().enumerate() {
            for b in self.records().skip(i + 1) {
                if a.address < b.end() && b.address < a.end() {
                    return Err(PatchError::OverlappingRecords {
                        first: a.offset,
                        second: b.offset,
                    });
                }
            }
        }
        Ok(())
    }

    /// The whole image, as given.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The image length in bytes (what is written to the NVMEM file).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid image has a header and at least one record.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The payload-length word (image length - 8).
    pub fn payload_len(&self) -> u32 {
        (self.bytes.len() - 8) as u32
    }

    /// The RAM-end word: 0x180000 plus the bytes the records place in the 0x180000 region (checked by `parse`).
    pub fn ram_end(&self) -> u32 {
        self.ram_end
    }

    /// Bytes of patch RAM the image uses (`ram_end - 0x180000`).
    pub fn ram_used(&self) -> u32 {
        self.ram_end - RAM_REGION_START
    }

    /// Driver or firmware patch, judged from the record addresses.
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// How many records the image holds.
    pub fn record_count(&self) -> usize {
        self.records
    }

    /// The sum of the records' data lengths (without headers and padding).
    pub fn data_len(&self) -> usize {
        self.records().map(|r| r.data.len()).sum()
    }

    /// The records, in image order.
    pub fn records(&self) -> Records<'a> {
        Records {
            bytes: self.bytes,
            offset: HEADER_LEN,
        }
    }

    /// The SHA-256 digest of the image.
    pub fn sha256(&self) -> [u8; 32] {
        super::known::sha256(self.bytes)
    }

    /// Identifies the image: by its SHA-256 digest against [`KNOWN_IMAGES`](super::KNOWN_IMAGES), else by the tag
    /// of a [synthetic](super::synthetic) image.
    pub fn identify(&self) -> super::Identification {
        if let Some(known) = super::known::lookup(&self.sha256()) {
            return super::Identification::Known(known);
        }
        match super::synthetic::tagged_service_pack(self) {
            Some(sp) => super::Identification::Synthetic(sp),
            None => super::Identification::Unknown,
        }
    }

    /// For a driver patch: the version the chip reports once it is burnt, when the image is a published one or a
    /// synthetic one; `None` for a firmware patch or an unknown image.
    pub fn reports(&self) -> Option<ServicePack> {
        if self.kind != ImageKind::Driver {
            return None;
        }
        match self.identify() {
            super::Identification::Known(known) => known.reports,
            super::Identification::Synthetic(sp) => Some(sp),
            super::Identification::Unknown => None,
        }
    }
}

/// Iterator over the records of a validated image.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let offset = self.offset;
        let address = le32(self.bytes, offset)?;
        let len = le32(self.bytes, offset + 4)? as usize;
        let start = offset + RECORD_HEADER_LEN;
        let data = self.bytes.get(start..start.checked_add(len)?)?;
        self.offset = start + len + padding_len(len);
        Some(Record {
            offset,
            address,
            data,
        })
    }
}

/// Writes an image from records: the inverse of [`PatchImage::parse`], for tools and tests that build images.
///
/// Returns the image length. `buf` too small gives [`PatchError::InsufficientSize`].
pub fn emit<'r>(
    records: impl IntoIterator<Item = (u32, &'r [u8])> + Clone,
    buf: &mut [u8],
) -> Result<usize, PatchError> {
    let mut required = HEADER_LEN;
    let mut ram_end = RAM_REGION_START;
    for (address, data) in records.clone() {
        required += RECORD_HEADER_LEN + data.len() + padding_len(data.len());
        if (RAM_REGION_START..RAM_REGION_END).contains(&address) {
            ram_end = ram_end.max(address.saturating_add(data.len() as u32));
        }
    }
    if buf.len() < required {
        return Err(PatchError::InsufficientSize { required });
    }
    buf[field::MAGIC].copy_from_slice(&MAGIC);
    buf[field::PAYLOAD_LEN].copy_from_slice(&((required - 8) as u32).to_le_bytes());
    buf[field::RAM_END].copy_from_slice(&ram_end.to_le_bytes());
    let mut at = HEADER_LEN;
    for (address, data) in records {
        buf[at..at + 4].copy_from_slice(&address.to_le_bytes());
        buf[at + 4..at + 8].copy_from_slice(&(data.len() as u32).to_le_bytes());
        at += RECORD_HEADER_LEN;
        buf[at..at + data.len()].copy_from_slice(data);
        at += data.len();
        let pad = padding_len(data.len());
        buf[at..at + pad].fill(PADDING);
        at += pad;
    }
    Ok(required)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(buf: &mut [u8; 64]) -> usize {
        let records: [(u32, &[u8]); 3] = [
            (0x0008_62E4, &[1, 2, 3, 4, 5]),
            (0x0018_0000, &[9; 6]),
            (0x0018_0010, &[7; 4]),
        ];
        emit(records, buf).unwrap()
    }

    #[test]
    fn emit_then_parse() {
        let mut buf = [0u8; 64];
        let len = sample(&mut buf);
        assert_eq!(len, 12 + (8 + 8) + (8 + 8) + (8 + 4));
        let image = PatchImage::parse(&buf[..len]).unwrap();
        assert_eq!(image.record_count(), 3);
        assert_eq!(image.ram_end(), 0x0018_0014);
        assert_eq!(image.ram_used(), 0x14);
        assert_eq!(image.kind(), ImageKind::Driver);
        assert_eq!(image.data_len(), 15);
        let first = image.records().next().unwrap();
        assert_eq!(
            (first.offset, first.address, first.data),
            (12, 0x0008_62E4, &[1u8, 2, 3, 4, 5][..])
        );
        assert_eq!(&buf[25..28], &[0xFF; 3]);
    }

    #[test]
    fn each_invariant_has_its_error() {
        let mut buf = [0u8; 64];
        let len = sample(&mut buf);
        let image = &buf[..len];
        let mut bad = [0u8; 64];

        assert_eq!(
            PatchImage::parse(&image[..11]),
            Err(PatchError::Truncated { len: 11 })
        );
        bad[..len].copy_from_slice(image);
        bad[1] = 2;
        assert_eq!(
            PatchImage::parse(&bad[..len]),
            Err(PatchError::BadMagic {
                found: [0, 2, 0, 0]
            })
        );
        bad[..len].copy_from_slice(image);
        bad[4] ^= 1;
        assert!(matches!(
            PatchImage::parse(&bad[..len]),
            Err(PatchError::LengthMismatch { .. })
        ));
        bad[..len].copy_from_slice(image);
        bad[8] ^= 1;
        assert!(matches!(
            PatchImage::parse(&bad[..len]),
            Err(PatchError::RamEndMismatch { .. })
        ));
        bad[..len].copy_from_slice(image);
        bad[26] = 0;
        assert_eq!(
            PatchImage::parse(&bad[..len]),
            Err(PatchError::BadPadding {
                offset: 26,
                found: 0
            })
        );
        bad[..len].copy_from_slice(image);
        bad[16] = 0; // first record length 5 -> 0
        assert_eq!(
            PatchImage::parse(&bad[..len]),
            Err(PatchError::EmptyRecord { offset: 12 })
        );
        // second record moved onto the first: overlap
        bad[..len].copy_from_slice(image);
        bad[28..32].copy_from_slice(&0x0008_62E6u32.to_le_bytes());
        bad[8..12].copy_from_slice(&0x0018_0014u32.to_le_bytes());
        assert_eq!(
            PatchImage::parse(&bad[..len]),
            Err(PatchError::OverlappingRecords {
                first: 12,
                second: 28
            })
        );
    }

    #[test]
    fn emit_reports_required_size() {
        let mut small = [0u8; 10];
        assert_eq!(
            emit([(0u32, &[1u8][..])], &mut small),
            Err(PatchError::InsufficientSize { required: 24 })
        );
    }

    #[test]
    fn firmware_and_unclassified_kinds() {
        let mut buf = [0u8; 64];
        let n = emit([(0x0314u32, &[0u8; 8][..])], &mut buf).unwrap();
        assert_eq!(
            PatchImage::parse(&buf[..n]).unwrap().kind(),
            ImageKind::Firmware
        );
        let n = emit([(0x0004_0000u32, &[0u8; 8][..])], &mut buf).unwrap();
        assert_eq!(
            PatchImage::parse(&buf[..n]).unwrap().kind(),
            ImageKind::Unclassified
        );
    }
}
