//! `spark-cloud --store URL` on arbitrary text: no panic, and what a log line shows of a URL that parses is
//! `postgres://USER@...`: the user name is followed by `@`, never by a password.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok((shown, user)) = spark_cloud::fuzzing::store_url(text) {
        let after_scheme = shown.strip_prefix("postgres://").expect("a postgres:// URL");
        assert!(after_scheme.starts_with(&format!("{user}@")), "{shown}");
    }
});
