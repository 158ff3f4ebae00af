//! The USB-side readers of the DFU host: GETSTATUS replies, DFU functional descriptors, configuration
//! descriptors (DFU alt settings) and string descriptors. Never a panic; what parses re-emits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_dfu::host::proto::{DfuConfig, FunctionalDescriptor, StatusReply, string_descriptor};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = StatusReply::parse(data) {
        assert_eq!(&r.to_bytes()[..], &data[..6]);
    }
    if let Ok(f) = FunctionalDescriptor::parse(data) {
        let again =
            FunctionalDescriptor::parse(&f.to_bytes()).expect("re-emitted descriptor reads");
        assert_eq!(
            (again.attributes, again.detach_timeout, again.transfer_size),
            (f.attributes, f.detach_timeout, f.transfer_size)
        );
    }
    if let Ok(c) = DfuConfig::parse(data) {
        assert!(c.alts().count() <= data.len() / 9);
    }
    let mut out = [0u8; 128];
    if let Ok(s) = string_descriptor(data, &mut out) {
        assert!(s.is_ascii());
    }
});
