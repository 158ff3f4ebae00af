//! The Core's 2 MiB external SPI flash (SST25VF016B) as a file, and the OTA download into it.
//!
//! The file behaves as NOR flash: an erase sets 4 KiB sectors to 0xFF, a program can only clear bits (the stored
//! byte becomes `old & new`), so a write over unerased bytes corrupts them just as on the chip. The layout is the
//! Core's ([`spark_dfu::platform::core_map`]): factory image at 0x20000, backup at 0x40000, the OTA download area
//! at 0x60000 (128 KiB), user data from 0x80000.
//!
//! [`OtaDownload`] is the receiving end of an over-the-air update: it erases the download area, takes chunks at
//! any offset in any order (duplicates allowed), and [`OtaDownload::finish`] accepts the image only when every
//! byte of the announced size arrived, the bytes read back from flash have the CRC-32 of what was received, and
//! spark-dfu clears the image for the Core's OTA slot. Until then nothing but the download area has changed: the
//! running firmware is untouched, and an aborted or incomplete download is simply never committed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use spark_dfu::module::{FirmwareError, check_for};
use spark_dfu::platform::{Item, Platform, core_map};
use spark_protocol::wire::ota::crc32;

/// The external flash's size.
pub const FLASH_LEN: u32 = core_map::EXTERNAL_FLASH_END;
/// The erase granularity.
pub const SECTOR_LEN: u32 = 4096;
/// Where OTA images are downloaded.
pub const OTA_ADDRESS: u32 = core_map::OTA_STAGING;
/// The download area's size.
pub const OTA_LEN: u32 = core_map::IMAGE_SLOT_LEN;

/// Why a flash operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlashError {
    /// The backing file could not be read or written.
    #[error("external flash file: {0}")]
    Io(#[from] std::io::Error),
    /// The backing file exists with another size.
    #[error("external flash file is {found} bytes, expected {FLASH_LEN}")]
    WrongSize {
        /// The file's size.
        found: u64,
    },
    /// The access runs past the end of the flash.
    #[error("access at {address:#x}+{len} is outside the {FLASH_LEN}-byte flash")]
    OutOfRange {
        /// The address.
        address: u32,
        /// The length.
        len: usize,
    },
    /// An erase not on sector boundaries.
    #[error("erase at {address:#x}+{len} is not sector aligned")]
    Unaligned {
        /// The address.
        address: u32,
        /// The length.
        len: u32,
    },
}

/// The external flash backed by a file.
#[derive(Debug)]
pub struct ExternalFlash {
    file: File,
}

impl ExternalFlash {
    /// Opens the flash file, creating it erased (all 0xFF) when it does not exist.
    pub fn open(path: &Path) -> Result<Self, FlashError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            let erased = vec![0xFF; FLASH_LEN as usize];
            file.write_all(&erased)?;
            file.sync_data()?;
        } else if len != u64::from(FLASH_LEN) {
            return Err(FlashError::WrongSize { found: len });
        }
        Ok(ExternalFlash { file })
    }

    fn range(address: u32, len: usize) -> Result<(), FlashError> {
        let end = u64::from(address) + len as u64;
        if end > u64::from(FLASH_LEN) {
            return Err(FlashError::OutOfRange { address, len });
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `address`.
    pub fn read(&mut self, address: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        Self::range(address, buf.len())?;
        self.file.seek(SeekFrom::Start(u64::from(address)))?;
        self.file.read_exact(buf)?;
        Ok(())
    }

    /// Programs `data` at `address`: each stored byte becomes `old & new` (NOR flash clears bits only).
    pub fn program(&mut self, address: u32, data: &[u8]) -> Result<(), FlashError> {
        let mut merged = vec![0u8; data.len()];
        self.read(address, &mut merged)?;
        for (m, d) in merged.iter_mut().zip(data) {
            *m &= d;
        }
        self.file.seek(SeekFrom::Start(u64::from(address)))?;
        self.file.write_all(&merged)?;
        Ok(())
    }

    /// Erases whole sectors to 0xFF.
    pub fn erase(&mut self, address: u32, len: u32) -> Result<(), FlashError> {
        if !address.is_multiple_of(SECTOR_LEN) || !len.is_multiple_of(SECTOR_LEN) {
            return Err(FlashError::Unaligned { address, len });
        }
        Self::range(address, len as usize)?;
        self.file.seek(SeekFrom::Start(u64::from(address)))?;
        self.file.write_all(&vec![0xFF; len as usize])?;
        Ok(())
    }

    /// Flushes to the disk.
    pub fn sync(&mut self) -> Result<(), FlashError> {
        self.file.sync_data()?;
        Ok(())
    }
}

/// Why an OTA download was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtaError {
    /// The size is 0, larger than the download area, or not the one announced.
    #[error(
        "image size {size} is 0, larger than the {OTA_LEN}-byte download area, or not the one announced"
    )]
    BadSize {
        /// The announced size.
        size: u32,
    },
    /// A chunk runs past the announced size.
    #[error("chunk at {offset}+{len} runs past the announced {size} bytes")]
    OutOfBounds {
        /// The chunk's offset.
        offset: u32,
        /// Its length.
        len: usize,
        /// The announced size.
        size: u32,
    },
    /// `finish` before every byte arrived.
    #[error("image incomplete: {missing} of {size} bytes never arrived")]
    Incomplete {
        /// Bytes missing.
        missing: u32,
        /// The announced size.
        size: u32,
    },
    /// What reads back from the flash is not what was received.
    #[error("image reads back with CRC {found:#010x}, received {expected:#010x}")]
    BadCrc {
        /// CRC of the bytes received.
        expected: u32,
        /// CRC of the bytes in flash.
        found: u32,
    },
    /// The image is not firmware the Core can run from its OTA slot.
    #[error("not Core firmware: {0}")]
    NotFirmware(#[from] FirmwareError),
    /// The flash failed.
    #[error(transparent)]
    Flash(#[from] FlashError),
}

/// An image complete in the download area, waiting for the bootloader to copy it at the next reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedImage {
    /// Its length.
    pub len: u32,
    /// Its CRC-32 (ISO-HDLC).
    pub crc32: u32,
}

/// An OTA download in progress. See the [module docs](self).
#[derive(Debug)]
pub struct OtaDownload {
    /// The size UpdateBegin announced (the Core's cloud announced none).
    announced: Option<u32>,
    /// How far chunks may reach: the announced size or the whole download area.
    capacity: u32,
    /// One bit per byte received.
    have: Vec<u64>,
    /// The received bytes, to check what the flash holds at the end (chunks may arrive in any order, so a running
    /// CRC cannot stand in for them).
    received: Vec<u8>,
}

impl OtaDownload {
    /// Starts a download: erases the download area (the running firmware is elsewhere), all of it when the size
    /// is not announced.
    pub fn begin(flash: &mut ExternalFlash, size: Option<u32>) -> Result<Self, OtaError> {
        if let Some(size) = size.filter(|&s| s == 0 || s > OTA_LEN) {
            return Err(OtaError::BadSize { size });
        }
        let capacity = size.unwrap_or(OTA_LEN);
        flash.erase(OTA_ADDRESS, capacity.div_ceil(SECTOR_LEN) * SECTOR_LEN)?;
        Ok(OtaDownload {
            announced: size,
            capacity,
            have: vec![0; (capacity as usize).div_ceil(64)],
            received: vec![0xFF; capacity as usize],
        })
    }

    /// The announced size.
    pub fn announced(&self) -> Option<u32> {
        self.announced
    }

    /// Bytes received so far (each counted once).
    pub fn received_len(&self) -> u32 {
        self.have.iter().map(|w| w.count_ones()).sum()
    }

    fn has(&self, i: usize) -> bool {
        self.have[i / 64] & (1u64 << (i % 64)) != 0
    }

    /// Stores a chunk at `offset` of the image. A chunk received again is written again (the same bytes, so NOR
    /// programming leaves them unchanged).
    pub fn write(
        &mut self,
        flash: &mut ExternalFlash,
        offset: u32,
        data: &[u8],
    ) -> Result<(), OtaError> {
        let end = u64::from(offset) + data.len() as u64;
        if end > u64::from(self.capacity) {
            return Err(OtaError::OutOfBounds {
                offset,
                len: data.len(),
                size: self.capacity,
            });
        }
        flash.program(OTA_ADDRESS + offset, data)?;
        let start = offset as usize;
        self.received[start..start + data.len()].copy_from_slice(data);
        for i in start..start + data.len() {
            self.have[i / 64] |= 1u64 << (i % 64);
        }
        Ok(())
    }

    /// Checks the complete image of `size` bytes and returns the record that commits it.
    pub fn finish(self, flash: &mut ExternalFlash, size: u32) -> Result<StagedImage, OtaError> {
        if size == 0 || size > self.capacity || self.announced.is_some_and(|a| a != size) {
            return Err(OtaError::BadSize { size });
        }
        let missing = (0..size as usize).filter(|&i| !self.has(i)).count() as u32;
        if missing != 0 {
            return Err(OtaError::Incomplete { missing, size });
        }
        let mut stored = vec![0u8; size as usize];
        flash.read(OTA_ADDRESS, &mut stored)?;
        let expected = crc32(&self.received[..size as usize]);
        let found = crc32(&stored);
        if expected != found {
            return Err(OtaError::BadCrc { expected, found });
        }
        check_for(&stored, Platform::Core, Item::OtaStaging)?;
        flash.sync()?;
        Ok(StagedImage {
            len: size,
            crc32: found,
        })
    }
}

/// Reads a staged image back, checking its CRC (`None` when the flash no longer holds it).
pub fn read_staged(
    flash: &mut ExternalFlash,
    staged: StagedImage,
) -> Result<Option<Vec<u8>>, FlashError> {
    if staged.len == 0 || staged.len > OTA_LEN {
        return Ok(None);
    }
    let mut image = vec![0u8; staged.len as usize];
    flash.read(OTA_ADDRESS, &mut image)?;
    Ok((crc32(&image) == staged.crc32).then_some(image))
}
