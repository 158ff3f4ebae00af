//! What the programmer saves before its first destructive write, in a form the caller can persist.
//!
//! ```
//! use spark_cc3000::nvmem::MacAddress;
//! use spark_cc3000::programmer::{BACKUP_LEN, Backup, BackupError};
//!
//! let backup = Backup { mac: Some(MacAddress([0x08, 0x00, 0x28, 0xaa, 0xbb, 0xcc])), radio: None, wlan_config: None };
//! let mut stored: [u8; BACKUP_LEN] = backup.to_bytes();
//! assert_eq!(Backup::parse(&stored), Ok(backup));
//!
//! // A torn copy (power lost while it was being saved) fails its CRC-32 and is never used.
//! stored[10] ^= 0x40;
//! assert_eq!(Backup::parse(&stored), Err(BackupError::Checksum));
//! ```

use crate::nvmem::{MacAddress, RADIO_PARAMS_LEN, RadioParams, WLAN_CONFIG_BACKUP_LEN};

/// The serialised length of a [`Backup`].
pub const BACKUP_LEN: usize =
    4 + 1 + MacAddress::LEN + RADIO_PARAMS_LEN + WLAN_CONFIG_BACKUP_LEN + 4;
const BACKUP_MAGIC: [u8; 4] = *b"CCB1";
const HAS_MAC: u8 = 0x01;
const HAS_WLAN: u8 = 0x02;
const HAS_RADIO: u8 = 0x04;

/// Why persisted bytes are not a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Not [`BACKUP_LEN`] bytes.
    #[error("backup is {len} bytes, expected {BACKUP_LEN}")]
    Length {
        /// Bytes given.
        len: usize,
    },
    /// Wrong magic or unknown flags.
    #[error("not a CC3000 programmer backup")]
    Format,
    /// The CRC-32 does not match: a torn or corrupted copy.
    #[error("backup checksum mismatch")]
    Checksum,
}

/// The module's own data that rewriting the file table destroys: MAC address, radio parameters and the start of the
/// WLAN configuration, each present only when it was really read from this module (never a default or fallback).
///
/// The programmer hands it out before its first write. A copy torn by a power loss while it was being persisted fails
/// [`Backup::parse`] (CRC-32); since nothing had been written yet, the re-run can then do without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    /// The MAC address to restore, if one is known.
    pub mac: Option<MacAddress>,
    /// The radio-module parameters to restore, if they could be read.
    pub radio: Option<RadioParams>,
    /// The first 100 bytes of the WLAN configuration (profiles), if they could be read.
    pub wlan_config: Option<[u8; WLAN_CONFIG_BACKUP_LEN]>,
}

/// CRC-32/ISO-HDLC (IEEE 802.3, reflected), with the `crc` crate's table-free variant: the
/// programmer runs on the device, where a table costs flash, and a backup is checked once per run.
static CRC32: crc::Crc<u32, crc::NoTable> =
    crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);

fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

impl Backup {
    /// Serialises the backup (magic, flags, MAC, radio parameters, WLAN configuration, CRC-32).
    pub fn to_bytes(&self) -> [u8; BACKUP_LEN] {
        let mut out = [0xFFu8; BACKUP_LEN];
        out[..4].copy_from_slice(&BACKUP_MAGIC);
        let mut flags = 0;
        if let Some(mac) = self.mac {
            flags |= HAS_MAC;
            out[5..11].copy_from_slice(&mac.0);
        }
        if let Some(radio) = &self.radio {
            flags |= HAS_RADIO;
            out[11..11 + RADIO_PARAMS_LEN].copy_from_slice(radio.as_bytes());
        }
        if let Some(w) = &self.wlan_config {
            flags |= HAS_WLAN;
            out[139..239].copy_from_slice(w);
        }
        out[4] = flags;
        let crc = crc32(&out[..BACKUP_LEN - 4]);
        out[BACKUP_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses bytes written by [`Backup::to_bytes`].
    pub fn parse(bytes: &[u8]) -> Result<Self, BackupError> {
        if bytes.len() != BACKUP_LEN {
            return Err(BackupError::Length { len: bytes.len() });
        }
        let (body, crc) = bytes.split_at(BACKUP_LEN - 4);
        if crc32(body).to_le_bytes() != crc {
            return Err(BackupError::Checksum);
        }
        let flags = body[4];
        if body[..4] != BACKUP_MAGIC || flags & !(HAS_MAC | HAS_WLAN | HAS_RADIO) != 0 {
            return Err(BackupError::Format);
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&body[5..11]);
        let mut radio = [0u8; RADIO_PARAMS_LEN];
        radio.copy_from_slice(&body[11..139]);
        let mut wlan = [0u8; WLAN_CONFIG_BACKUP_LEN];
        wlan.copy_from_slice(&body[139..239]);
        Ok(Backup {
            mac: (flags & HAS_MAC != 0).then_some(MacAddress(mac)),
            radio: (flags & HAS_RADIO != 0).then_some(RadioParams(radio)),
            wlan_config: (flags & HAS_WLAN != 0).then_some(wlan),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_and_damage() {
        let mut radio = [0u8; 128];
        radio.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        let full = (
            Some(MacAddress([8, 0, 0x28, 1, 2, 3])),
            Some(RadioParams(radio)),
            Some([7u8; 100]),
        );
        for (mac, radio, wlan) in [(None, None, None), full] {
            let b = Backup {
                mac,
                radio,
                wlan_config: wlan,
            };
            let bytes = b.to_bytes();
            assert_eq!(Backup::parse(&bytes), Ok(b));
            for i in 0..BACKUP_LEN {
                let mut bad = bytes;
                bad[i] ^= 0x10;
                assert!(Backup::parse(&bad).is_err(), "flip at {i}");
            }
            assert_eq!(
                Backup::parse(&bytes[1..]),
                Err(BackupError::Length {
                    len: BACKUP_LEN - 1
                })
            );
        }
    }
}
