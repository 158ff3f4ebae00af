//! The NVMEM file allocation table: `"LS"`, two unknown bytes, then sixteen 4-byte entries.
//!
//! ```text
//! 0x00  'L' 'S'                         magic
//! 0x02  2 bytes                         never written by a programmer (kept as read)
//! 0x04  16 entries of 4 bytes, file 0 first:
//!       byte0 = address bits 4..8 | flags (bit0 allocated, bit1 valid, bit2 write-protected)
//!       byte1 = address bits 8..16
//!       byte2 = length bits 4..8 (| a low nibble the readers mask off)
//!       byte3 = length bits 8..16
//! ```
//!
//! Addresses and lengths are 16-byte granular. [`FatTable::programmer_default`] is the table TI's and Spark's
//! programmers write (8 KiB patch slots); its entry block is byte for byte `derived_fat_entries_default_48.bin`.
//!
//! ```
//! use spark_cc3000::nvmem::{FAT_LEN, FatTable, FileId};
//!
//! let table = FatTable::programmer_default();
//! let bytes: [u8; FAT_LEN] = table.to_bytes();
//! assert_eq!(&bytes[..2], b"LS");
//!
//! // The driver patch (file 4) has an 8 KiB slot at 0x2390; the table fits the 32 KiB EEPROM.
//! let driver = table.entry(FileId::WlanDriverSp).unwrap();
//! assert_eq!((driver.address, driver.length), (0x2390, 0x2000));
//! let parsed = FatTable::parse(&bytes).unwrap();
//! assert_eq!(parsed, table);
//! parsed.validate(spark_cc3000::nvmem::EEPROM_SIZE).unwrap();
//!
//! // A table whose magic is gone is not a table.
//! assert!(FatTable::parse(&[0u8; FAT_LEN]).is_err());
//! ```

use super::FileId;

/// The table's magic, `"LS"`.
pub const FAT_MAGIC: [u8; 2] = *b"LS";
/// One entry's length.
pub const ENTRY_LEN: usize = 4;
/// Entries in the table (files 0 to 15).
pub const TABLE_ENTRIES: usize = 16;
/// The table's length: magic, two bytes, sixteen entries.
pub const FAT_LEN: usize = 4 + TABLE_ENTRIES * ENTRY_LEN;
/// The first EEPROM address a file may occupy (the table lives below it).
pub const FILES_START: u16 = 0x0050;

/// Why a table is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FatError {
    /// Fewer bytes than the table needs.
    #[error("file table truncated: {len} bytes, {required} needed")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        required: usize,
    },
    /// The first two bytes are not `"LS"`.
    #[error("file table magic is {found:02x?}, expected \"LS\"")]
    MissingMagic {
        /// The bytes found.
        found: [u8; 2],
    },
    /// An allocated file with length 0.
    #[error("file {file} is allocated with length 0")]
    EmptyFile {
        /// The file id.
        file: u8,
    },
    /// An allocated file below the table's end or beyond the EEPROM.
    #[error(
        "file {file} at {address:#06x}+{length:#x} lies outside {FILES_START:#06x}..{capacity:#x}"
    )]
    OutOfRange {
        /// The file id.
        file: u8,
        /// Its address.
        address: u16,
        /// Its length.
        length: u16,
        /// The EEPROM size checked against.
        capacity: u32,
    },
    /// Two allocated files share addresses.
    #[error("files {first} and {second} overlap")]
    Overlap {
        /// The lower file id.
        first: u8,
        /// The higher file id.
        second: u8,
    },
    /// An address or length that is not a multiple of 16 (only a table built in code can have one).
    #[error("file {file} address or length is not a multiple of 16")]
    Unaligned {
        /// The file id.
        file: u8,
    },
    /// The output buffer is too small.
    #[error("buffer too small: {required} bytes needed")]
    InsufficientSize {
        /// Bytes needed.
        required: usize,
    },
}

/// An entry's flag nibble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FatFlags(u8);

impl FatFlags {
    /// Bit 0: space is allocated to the file.
    pub const ALLOCATED: u8 = 0x1;
    /// Bit 1: the file's content is complete (set by the chip when a write finishes).
    pub const VALID: u8 = 0x2;
    /// Bit 2: the file is write-protected.
    pub const WRITE_PROTECTED: u8 = 0x4;

    /// Flags from the low nibble of an entry's first byte (the high nibble is ignored).
    pub const fn from_bits(bits: u8) -> Self {
        FatFlags(bits & 0x0F)
    }

    /// The nibble, including the unnamed bit 3.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Allocated only: what the programmers write.
    pub const fn allocated_only() -> Self {
        FatFlags(Self::ALLOCATED)
    }

    /// Whether bit 0 is set.
    pub const fn allocated(self) -> bool {
        self.0 & Self::ALLOCATED != 0
    }

    /// Whether bit 1 is set.
    pub const fn valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    /// Whether bit 2 is set.
    pub const fn write_protected(self) -> bool {
        self.0 & Self::WRITE_PROTECTED != 0
    }

    /// These flags with `bit` set or cleared.
    #[must_use]
    pub const fn with(self, bit: u8, on: bool) -> Self {
        if on {
            FatFlags((self.0 | bit) & 0x0F)
        } else {
            FatFlags(self.0 & !bit)
        }
    }
}

/// One file's place in the EEPROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FatEntry {
    /// EEPROM address (16-byte granular).
    pub address: u16,
    /// Length in bytes (16-byte granular).
    pub length: u16,
    /// The flag nibble.
    pub flags: FatFlags,
    /// The low nibble of byte 2, which readers mask off; kept so that a parsed table is emitted unchanged.
    pub length_nibble: u8,
}

impl FatEntry {
    /// An allocated (not yet valid) entry, as the programmers write them.
    pub const fn allocated(address: u16, length: u16) -> Self {
        FatEntry {
            address,
            length,
            flags: FatFlags::allocated_only(),
            length_nibble: 0,
        }
    }

    /// Decodes 4 entry bytes.
    pub const fn parse(b: [u8; 4]) -> Self {
        FatEntry {
            address: ((b[1] as u16) << 8) | (b[0] & 0xF0) as u16,
            length: ((b[3] as u16) << 8) | (b[2] & 0xF0) as u16,
            flags: FatFlags::from_bits(b[0]),
            length_nibble: b[2] & 0x0F,
        }
    }

    /// Encodes the entry; the low nibbles of address and length are dropped (see [`FatEntry::is_aligned`]).
    pub const fn emit(&self) -> [u8; 4] {
        [
            (self.address as u8 & 0xF0) | self.flags.bits(),
            (self.address >> 8) as u8,
            (self.length as u8 & 0xF0) | (self.length_nibble & 0x0F),
            (self.length >> 8) as u8,
        ]
    }

    /// Whether address and length are multiples of 16 (what the encoding can hold).
    pub const fn is_aligned(&self) -> bool {
        self.address.is_multiple_of(16) && self.length.is_multiple_of(16)
    }

    /// The first address after the file.
    pub const fn end(&self) -> u32 {
        self.address as u32 + self.length as u32
    }
}

/// The whole table: magic, the two unknown bytes, sixteen entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FatTable {
    reserved: [u8; 2],
    entries: [FatEntry; TABLE_ENTRIES],
}

/// The programmers' `aFATEntries`: (address, length) of files 0 to 11.
const DEFAULT_LAYOUT: [(u16, u16); 12] = [
    (0x0050, 0x01A0),
    (0x01F0, 0x01A0),
    (0x0390, 0x1000),
    (0x1390, 0x1000),
    (0x2390, 0x2000),
    (0x4390, 0x2000),
    (0x6390, 0x0010),
    (0x63A0, 0x0010),
    (0x63B0, 0x0040),
    (0x63F0, 0x0040),
    (0x6430, 0x0400),
    (0x6830, 0x0200),
];

impl FatTable {
    /// The table TI's and Spark's programmers write: files 0 to 11 allocated from 0x0050 with 8 KiB patch slots,
    /// user files 12 to 15 cleared, the two unknown bytes zero.
    pub const fn programmer_default() -> Self {
        let mut entries = [FatEntry {
            address: 0,
            length: 0,
            flags: FatFlags(0),
            length_nibble: 0,
        }; TABLE_ENTRIES];
        let mut i = 0;
        while i < DEFAULT_LAYOUT.len() {
            entries[i] = FatEntry::allocated(DEFAULT_LAYOUT[i].0, DEFAULT_LAYOUT[i].1);
            i += 1;
        }
        FatTable {
            reserved: [0; 2],
            entries,
        }
    }

    /// A table from entries (the two unknown bytes zero).
    pub const fn new(entries: [FatEntry; TABLE_ENTRIES]) -> Self {
        FatTable {
            reserved: [0; 2],
            entries,
        }
    }

    /// Parses the first [`FAT_LEN`] bytes of the EEPROM (checks the magic only; see [`FatTable::validate`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, FatError> {
        if bytes.len() < FAT_LEN {
            return Err(FatError::Truncated {
                len: bytes.len(),
                required: FAT_LEN,
            });
        }
        if bytes[..2] != FAT_MAGIC {
            return Err(FatError::MissingMagic {
                found: [bytes[0], bytes[1]],
            });
        }
        let mut entries = [FatEntry::default(); TABLE_ENTRIES];
        for (i, e) in entries.iter_mut().enumerate() {
            let at = 4 + i * ENTRY_LEN;
            *e = FatEntry::parse([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        }
        Ok(FatTable {
            reserved: [bytes[2], bytes[3]],
            entries,
        })
    }

    /// Parses and validates against an EEPROM of `capacity` bytes.
    pub fn parse_valid(bytes: &[u8], capacity: u32) -> Result<Self, FatError> {
        let table = Self::parse(bytes)?;
        table.validate(capacity)?;
        Ok(table)
    }

    /// The sixteen entries, file 0 first.
    pub fn entries(&self) -> &[FatEntry; TABLE_ENTRIES] {
        &self.entries
    }

    /// The entries, mutably (to build or edit a table).
    pub fn entries_mut(&mut self) -> &mut [FatEntry; TABLE_ENTRIES] {
        &mut self.entries
    }

    /// One file's entry (`None` for the table's own pseudo-file).
    pub fn entry(&self, file: FileId) -> Option<&FatEntry> {
        self.entries.get(usize::from(file.id()))
    }

    /// The two bytes after the magic.
    pub fn reserved(&self) -> [u8; 2] {
        self.reserved
    }

    /// Checks every allocated file: 16-byte aligned, non-empty, inside `FILES_START..capacity`, and no overlaps.
    pub fn validate(&self, capacity: u32) -> Result<(), FatError> {
        let allocated = || {
            self.entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.flags.allocated())
        };
        for (i, e) in allocated() {
            let file = i as u8;
            if !e.is_aligned() {
                return Err(FatError::Unaligned { file });
            }
            if e.length == 0 {
                return Err(FatError::EmptyFile { file });
            }
            if e.address < FILES_START || e.end() > capacity {
                return Err(FatError::OutOfRange {
                    file,
                    address: e.address,
                    length: e.length,
                    capacity,
                });
            }
        }
        for (i, a) in allocated() {
            for (j, b) in allocated().skip_while(|(j, _)| *j <= i) {
                if u32::from(a.address) < b.end() && u32::from(b.address) < a.end() {
                    return Err(FatError::Overlap {
                        first: i as u8,
                        second: j as u8,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the whole table ([`FAT_LEN`] bytes) into `buf`; returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, FatError> {
        let Some(out) = buf.get_mut(..FAT_LEN) else {
            return Err(FatError::InsufficientSize { required: FAT_LEN });
        };
        out[..2].copy_from_slice(&FAT_MAGIC);
        out[2..4].copy_from_slice(&self.reserved);
        self.emit_entries(&mut out[4..])?;
        Ok(FAT_LEN)
    }

    /// Writes the sixteen entries (64 bytes) into `buf`; the first 48 are files 0 to 11.
    pub fn emit_entries(&self, buf: &mut [u8]) -> Result<usize, FatError> {
        let required = TABLE_ENTRIES * ENTRY_LEN;
        let Some(out) = buf.get_mut(..required) else {
            return Err(FatError::InsufficientSize { required });
        };
        for (chunk, e) in out.chunks_exact_mut(ENTRY_LEN).zip(&self.entries) {
            chunk.copy_from_slice(&e.emit());
        }
        Ok(required)
    }

    /// The table as bytes.
    pub fn to_bytes(&self) -> [u8; FAT_LEN] {
        let mut out = [0u8; FAT_LEN];
        // FAT_LEN bytes always fit.
        let _ = self.emit(&mut out);
        out
    }

    /// Whether two tables place files 0 to 11 at the same addresses with the same lengths.
    ///
    /// Flags (which the chip changes as files are written) and the unknown bytes are ignored, and so are user files
    /// 12 to 15, which are created at run time.
    pub fn same_layout(&self, other: &FatTable) -> bool {
        self.entries[..12]
            .iter()
            .zip(&other.entries[..12])
            .all(|(a, b)| {
                a.flags.allocated() == b.flags.allocated()
                    && (!a.flags.allocated() || (a.address == b.address && a.length == b.length))
            })
    }
}

impl Default for FatTable {
    fn default() -> Self {
        Self::programmer_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_entries_match_the_published_block() {
        let t = FatTable::programmer_default();
        let mut buf = [0u8; 64];
        t.emit_entries(&mut buf).unwrap();
        // first 48 bytes as in the reference's listing
        let expected: [u8; 48] = [
            0x51, 0x00, 0xa0, 0x01, 0xf1, 0x01, 0xa0, 0x01, 0x91, 0x03, 0x00, 0x10, 0x91, 0x13,
            0x00, 0x10, 0x91, 0x23, 0x00, 0x20, 0x91, 0x43, 0x00, 0x20, 0x91, 0x63, 0x10, 0x00,
            0xa1, 0x63, 0x10, 0x00, 0xb1, 0x63, 0x40, 0x00, 0xf1, 0x63, 0x40, 0x00, 0x31, 0x64,
            0x00, 0x04, 0x31, 0x68, 0x00, 0x02,
        ];
        assert_eq!(buf[..48], expected);
        assert_eq!(buf[48..], [0u8; 16]);
        t.validate(super::super::EEPROM_SIZE).unwrap();
    }

    #[test]
    fn parse_emit_round_trip_and_errors() {
        let bytes = FatTable::programmer_default().to_bytes();
        assert_eq!(&bytes[..4], b"LS\0\0");
        let t = FatTable::parse(&bytes).unwrap();
        assert_eq!(t, FatTable::programmer_default());
        assert_eq!(
            FatTable::parse(&bytes[..FAT_LEN - 1]),
            Err(FatError::Truncated {
                len: 67,
                required: 68
            })
        );
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(
            FatTable::parse(&bad),
            Err(FatError::MissingMagic {
                found: [b'X', b'S']
            })
        );

        let mut t = FatTable::programmer_default();
        t.entries_mut()[5].address = 0x4380; // overlaps file 4
        assert_eq!(
            t.validate(0x8000),
            Err(FatError::Overlap {
                first: 4,
                second: 5
            })
        );
        let mut t = FatTable::programmer_default();
        t.entries_mut()[0].address = 0x0040;
        assert!(matches!(
            t.validate(0x8000),
            Err(FatError::OutOfRange { file: 0, .. })
        ));
        assert!(matches!(
            FatTable::programmer_default().validate(0x6000),
            Err(FatError::OutOfRange { file: 5, .. })
        ));
        let mut t = FatTable::programmer_default();
        t.entries_mut()[7].length = 0;
        assert_eq!(t.validate(0x8000), Err(FatError::EmptyFile { file: 7 }));
        let mut t = FatTable::programmer_default();
        t.entries_mut()[7].length = 0x11;
        assert_eq!(t.validate(0x8000), Err(FatError::Unaligned { file: 7 }));
        assert_eq!(
            FatTable::programmer_default().emit(&mut [0u8; 10]),
            Err(FatError::InsufficientSize { required: 68 })
        );
    }

    #[test]
    fn flags_and_nibbles_survive() {
        let e = FatEntry::parse([0x57, 0x12, 0x3A, 0x01]);
        assert_eq!((e.address, e.length), (0x1250, 0x0130));
        assert!(e.flags.allocated() && e.flags.valid() && e.flags.write_protected());
        assert_eq!(e.length_nibble, 0xA);
        assert_eq!(e.emit(), [0x57, 0x12, 0x3A, 0x01]);
        let mut t = FatTable::programmer_default();
        t.entries_mut()[2].flags = t.entries()[2].flags.with(FatFlags::VALID, true);
        assert!(t.same_layout(&FatTable::programmer_default()));
        t.entries_mut()[2].length = 0x800;
        assert!(!t.same_layout(&FatTable::programmer_default()));
    }
}
