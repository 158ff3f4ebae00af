//! The DfuSe reader, strict and lenient: never a panic; a strictly valid file re-emits byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_dfu::file::dfuse::{DfuseFile, DfuseRepr, Element, TargetRepr};
use spark_dfu::file::suffix::SuffixRepr;

fuzz_target!(|data: &[u8]| {
    // Give most inputs a valid DfuSe suffix so that the body's structure is what gets exercised.
    let file = SuffixRepr {
        bcd_dfu: 0x011a,
        ..SuffixRepr::default()
    }
    .append_to_vec(data);
    for input in [data, &file[..]] {
        if let Ok(f) = DfuseFile::parse_lenient(input) {
            let _ = (f.leftover(), f.first_address());
            for t in f.targets() {
                let _ = (t.alt(), t.name(), t.size());
                let _ = t.elements().count();
            }
        }
        if let Ok(f) = DfuseFile::parse(input) {
            let elements: Vec<Vec<Element<'_>>> =
                f.targets().map(|t| t.elements().collect()).collect();
            let targets: Vec<TargetRepr<'_>> = f
                .targets()
                .zip(&elements)
                .map(|(t, e)| TargetRepr {
                    alt: t.alt(),
                    name: t.name(),
                    elements: e,
                })
                .collect();
            let s = f.suffix();
            let again = DfuseRepr {
                targets: &targets,
                suffix: s.repr(),
            }
            .to_vec()
            .expect("a valid file re-emits");
            let g = DfuseFile::parse(&again).expect("re-emitted file reads");
            assert_eq!(g.targets().count(), f.targets().count());
        }
    }
});
