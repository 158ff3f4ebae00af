//! NVMEM file ids, as TI's `nvmem.h` numbers them.

use super::fat::FatEntry;

/// How many real files the table describes (0 to 15).
pub const FILE_COUNT: usize = 16;

/// An NVMEM file id (`NVMEM_*_FILEID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FileId {
    /// `NVMEM_NVS_FILEID` (0).
    Nvs = 0,
    /// `NVMEM_NVS_SHADOW_FILEID` (1).
    NvsShadow = 1,
    /// `NVMEM_WLAN_CONFIG_FILEID` (2): profiles and settings.
    WlanConfig = 2,
    /// `NVMEM_WLAN_CONFIG_SHADOW_FILEID` (3).
    WlanConfigShadow = 3,
    /// `NVMEM_WLAN_DRIVER_SP_FILEID` (4): the driver patch.
    WlanDriverSp = 4,
    /// `NVMEM_WLAN_FW_SP_FILEID` (5): the firmware patch.
    WlanFwSp = 5,
    /// `NVMEM_MAC_FILEID` (6): the MAC address.
    Mac = 6,
    /// `NVMEM_FRONTEND_VARS_FILEID` (7).
    FrontendVars = 7,
    /// `NVMEM_IP_CONFIG_FILEID` (8).
    IpConfig = 8,
    /// `NVMEM_IP_CONFIG_SHADOW_FILEID` (9).
    IpConfigShadow = 9,
    /// `NVMEM_BOOTLOADER_SP_FILEID` (10): the bootloader patch.
    BootloaderSp = 10,
    /// `NVMEM_RM_FILEID` (11): the radio-module parameters.
    Rm = 11,
    /// `NVMEM_AES128_KEY_FILEID` (12): the SmartConfig AES key (a user file).
    Aes128Key = 12,
    /// `NVMEM_SHARED_MEM_FILEID` (13): a user file.
    SharedMem = 13,
    /// User file 14 (Spark's flags file).
    User14 = 14,
    /// User file 15.
    User15 = 15,
    /// Pseudo-file 16: the raw EEPROM from address 0, through which the table itself is written.
    Fat = 16,
}

impl FileId {
    /// Every id, 0 to 16.
    pub const ALL: [FileId; 17] = [
        FileId::Nvs,
        FileId::NvsShadow,
        FileId::WlanConfig,
        FileId::WlanConfigShadow,
        FileId::WlanDriverSp,
        FileId::WlanFwSp,
        FileId::Mac,
        FileId::FrontendVars,
        FileId::IpConfig,
        FileId::IpConfigShadow,
        FileId::BootloaderSp,
        FileId::Rm,
        FileId::Aes128Key,
        FileId::SharedMem,
        FileId::User14,
        FileId::User15,
        FileId::Fat,
    ];

    /// The id number.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The file with this number, if any.
    pub fn from_id(id: u32) -> Option<FileId> {
        usize::try_from(id)
            .ok()
            .and_then(|i| FileId::ALL.get(i))
            .copied()
    }

    /// User files (12 to 15) are the only ones `nvmem_create_entry` may (re)allocate.
    pub const fn is_user_file(self) -> bool {
        matches!(
            self,
            FileId::Aes128Key | FileId::SharedMem | FileId::User14 | FileId::User15
        )
    }

    /// Where the programmer's default table places this file (files 0 to 11; `None` for user files and the table).
    pub fn default_entry(self) -> Option<FatEntry> {
        super::FatTable::programmer_default()
            .entries()
            .get(usize::from(self.id()))
            .copied()
            .filter(|e| e.flags.allocated())
    }
}

impl From<FileId> for u32 {
    fn from(f: FileId) -> u32 {
        u32::from(f.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for (i, f) in FileId::ALL.iter().enumerate() {
            assert_eq!(usize::from(f.id()), i);
            assert_eq!(FileId::from_id(i as u32), Some(*f));
        }
        assert_eq!(FileId::from_id(17), None);
        assert_eq!(FileId::from_id(u32::MAX), None);
        assert!(FileId::User14.is_user_file() && !FileId::Rm.is_user_file());
    }

    #[test]
    fn default_sizes_and_addresses() {
        let drv = FileId::WlanDriverSp.default_entry().unwrap();
        assert_eq!((drv.address, drv.length), (0x2390, 0x2000));
        let fw = FileId::WlanFwSp.default_entry().unwrap();
        assert_eq!((fw.address, fw.length), (0x4390, 0x2000));
        let rm = FileId::Rm.default_entry().unwrap();
        assert_eq!((rm.address, rm.length), (0x6830, 0x0200));
        assert_eq!(FileId::Nvs.default_entry().unwrap().address, 0x0050);
        assert_eq!(FileId::User14.default_entry(), None);
        assert_eq!(FileId::Fat.default_entry(), None);
    }
}
