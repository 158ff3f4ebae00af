//! The cloud's state-file loaders on arbitrary bytes: a user file, a device file, the device journal, the webhooks
//! the claim codes, the server key files and the token cut-off (with the `tokens invalidate-before` date), as the
//! cloud reads them on start or on SIGHUP. No panic, whatever the file holds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cloud::fuzzing::{
    claims_file, device_file, journal, not_before, server_key_file, user_file, webhooks_file,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = journal(data) {
        assert!(n <= data.len() / 2);
    }
    let _ = webhooks_file(data);
    let _ = claims_file(data);
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = user_file(text);
        let _ = device_file(text);
        let _ = server_key_file(text);
        if let Ok(secs) = not_before(text) {
            assert_eq!(not_before(&secs.to_string()), Ok(secs));
        }
    }
});
