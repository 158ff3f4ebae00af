//! The DfuSe memory-layout parser and its queries: never a panic, erase pages inside writeable segments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_dfu::file::layout::MemoryLayout;

fuzz_target!(|data: &[u8]| {
    let (query, text) = data.split_at(data.len().min(8));
    let Ok(s) = core::str::from_utf8(text) else {
        return;
    };
    let Ok(layout) = MemoryLayout::parse(s) else {
        return;
    };
    let _ = layout.warnings().count();
    let mut q = [0u8; 8];
    q[..query.len()].copy_from_slice(query);
    let start = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
    let len = u32::from_le_bytes([q[4], q[5], q[6], q[7]]) & 0xf_ffff;
    if let Ok(pages) = layout.pages_to_erase(start, len) {
        for page in pages.take(10_000) {
            let seg = layout
                .segment_at(page.address)
                .expect("an erase page lies in a segment");
            assert!(seg.erasable());
        }
    }
    let _ = layout.dfu_util_accepts_download(start, len);
    let _ = layout.check_readable(start, len);
});
