//! The DFU suffix and prefix readers and the dfu-suffix / dfu-prefix edits: never a panic, and whatever is
//! accepted round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_dfu::file::prefix::PrefixRepr;
use spark_dfu::file::suffix::{Suffix, SuffixRepr};
use spark_dfu::file::{DfuFile, PrefixPolicy, SuffixPolicy};

fuzz_target!(|data: &[u8]| {
    let _ = Suffix::parse(data);
    for s in [
        SuffixPolicy::Required,
        SuffixPolicy::Optional,
        SuffixPolicy::Forbidden,
    ] {
        for p in [
            PrefixPolicy::Required,
            PrefixPolicy::Optional,
            PrefixPolicy::Forbidden,
        ] {
            if let Ok(f) = DfuFile::load(data, s, p) {
                let _ = (f.firmware(), f.payload());
            }
        }
    }
    let mut out = vec![0u8; data.len() + 32];
    if let Ok(n) = DfuFile::add_suffix(data, SuffixRepr::default(), &mut out) {
        let f = DfuFile::parse(&out[..n]).expect("an added suffix reads back");
        assert_eq!(f.suffix().map(|s| s.repr()), Some(SuffixRepr::default()));
    }
    let _ = DfuFile::remove_suffix(data, &mut out);
    let _ = DfuFile::add_prefix(data, PrefixRepr::Lpc, &mut out);
    let _ = DfuFile::remove_prefix(data, None, &mut out);
});
