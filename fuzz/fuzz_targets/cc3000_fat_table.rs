//! NVMEM file-table parser: never panics; parse then emit gives the bytes back; validation never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cc3000::nvmem::{EEPROM_SIZE, FAT_LEN, FatTable};

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = FatTable::parse(data) {
        assert_eq!(&table.to_bytes()[..], &data[..FAT_LEN]);
        let _ = table.validate(EEPROM_SIZE);
        let _ = table.same_layout(&FatTable::programmer_default());
    }
});
