//! The cloud's state-file loaders on arbitrary bytes: a user file, a device file, the device journal, the webhooks
//! and the claim codes, as the cloud reads them on start. No panic, whatever the file holds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cloud::fuzzing::{claims_file, device_file, journal, user_file, webhooks_file};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = journal(data) {
        assert!(n <= data.len() / 2);
    }
    let _ = webhooks_file(data);
    let _ = claims_file(data);
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = user_file(text);
        let _ = device_file(text);
    }
});
