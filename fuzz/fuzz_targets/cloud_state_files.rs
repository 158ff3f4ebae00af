//! The cloud's state-file loaders on arbitrary bytes: a user file, a device file and the device journal, as the
//! state directory reads them on start. No panic, whatever the file holds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cloud::fuzzing::{device_file, journal, user_file};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = journal(data) {
        assert!(n <= data.len() / 2);
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = user_file(text);
        let _ = device_file(text);
    }
});
