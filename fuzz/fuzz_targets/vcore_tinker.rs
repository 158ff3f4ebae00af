//! Tinker's argument parsing: any function name and argument gives a code in Tinker's range and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_vcore::tinker::Tinker;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, arg)) = data.split_first() else {
        return;
    };
    let arg = String::from_utf8_lossy(arg);
    let mut tinker = Tinker::new();
    let name = [
        "digitalread",
        "digitalwrite",
        "analogread",
        "analogwrite",
        "nosuch",
    ][usize::from(selector % 5)];
    match tinker.call(name, &arg) {
        Some(code) => assert!((-3..=4095).contains(&code)),
        None => assert_eq!(name, "nosuch"),
    }
});
