//! The CC3000's NVMEM: file ids, the file allocation table, radio-module parameters and the MAC address.
//!
//! The module keeps its files in a serial EEPROM. A file allocation table at the start of the EEPROM (written
//! through pseudo-file 16) places files 0 to 11 from address 0x0050; user files 12 to 15 are created later.

mod fat;
mod file;
mod mac;
mod radio;

pub use fat::{
    ENTRY_LEN, FAT_LEN, FAT_MAGIC, FILES_START, FatEntry, FatError, FatFlags, FatTable,
    TABLE_ENTRIES,
};
pub use file::{FILE_COUNT, FileId};
pub use mac::{MacAddress, MacError, Vendor};
pub use radio::{RADIO_PARAMS_LEN, RadioParams};

/// The EEPROM size assumed when validating a table: 32 KiB (the default table ends at 0x6A30); inferred, not documented by TI.
pub const EEPROM_SIZE: u32 = 0x8000;
/// The largest NVMEM write a TINY-driver host can send in one HCI packet (`SP_PORTION_SIZE`).
pub const WRITE_PORTION: usize = 32;
/// Bytes of the WLAN configuration file (2) that Spark's programmer saves and restores.
pub const WLAN_CONFIG_BACKUP_LEN: usize = 100;
/// Spark's own user file: id 14, 16 bytes (profile, policy, timeout and error-count flags).
pub const SPARK_FILE_LEN: u32 = 16;
