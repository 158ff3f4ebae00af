//! Patch-image parser: never panics; a parsed image re-emits to the same bytes; the scan finds a parsed image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cc3000::patch::{PatchImage, emit, find_embedded};

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = PatchImage::parse(data) {
        let records: Vec<(u32, &[u8])> = image.records().map(|r| (r.address, r.data)).collect();
        assert_eq!(records.len(), image.record_count());
        let mut out = vec![0u8; data.len()];
        let n = emit(records.iter().copied(), &mut out).expect("re-emit fits");
        assert_eq!(&out[..n], data);
        let _ = image.identify();
        assert!(find_embedded(data).next().is_some_and(|e| e.offset == 0));
    }
    for hit in find_embedded(data) {
        assert_eq!(
            PatchImage::parse(&data[hit.offset..hit.offset + hit.image.len()]),
            Ok(hit.image)
        );
    }
});
