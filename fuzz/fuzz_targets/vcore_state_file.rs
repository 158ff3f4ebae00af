//! The virtual Core's state file (`core.json`) as `VirtualCore::open` reads it: no panic, and what the Core would
//! write back reads back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = spark_vcore::fuzzing::state_file(text);
    }
});
