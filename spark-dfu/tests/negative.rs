//! Bad input the crate builds itself: DfuSe writer limits, memory layouts truncated at every length. Every case
//! must give its own typed error, never a panic. The cases made from the vectors are in `vectors_negative.rs`.

use spark_dfu::file::dfuse::{self};
use spark_dfu::file::layout::MemoryLayout;
use spark_dfu::file::suffix::SuffixRepr;

const DFUSE: SuffixRepr = SuffixRepr {
    bcd_device: 0,
    id_product: 0x607f,
    id_vendor: 0x1d50,
    bcd_dfu: 0x011a,
};

#[test]
fn dfuse_writer_limits() {
    let data = [0u8; 4];
    let elements = [dfuse::Element {
        address: 0xFFFF_FFFE,
        data: &data,
    }];
    let targets = [dfuse::TargetRepr {
        alt: 0,
        name: None,
        elements: &elements,
    }];
    let repr = dfuse::DfuseRepr {
        targets: &targets,
        suffix: DFUSE,
    };
    assert_eq!(
        repr.buffer_len(),
        Err(dfuse::DfuseWriteError::TooLarge { target: 0 })
    );
    let targets: Vec<_> = (0..256)
        .map(|i| dfuse::TargetRepr {
            alt: i as u8,
            name: None,
            elements: &[],
        })
        .collect();
    let repr = dfuse::DfuseRepr {
        targets: &targets,
        suffix: DFUSE,
    };
    assert_eq!(
        repr.buffer_len(),
        Err(dfuse::DfuseWriteError::TooManyTargets(256))
    );
    let repr = dfuse::DfuseRepr {
        targets: &targets[..1],
        suffix: DFUSE,
    };
    assert_eq!(repr.buffer_len(), Err(dfuse::DfuseWriteError::TooSmall));
}

#[test]
fn layouts_truncated_at_every_length() {
    for s in [
        "@Internal Flash  /0x08000000/20*001Ka,108*001Kg",
        "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg/0x1FFF0000/01*030Ka",
        "@Option Bytes  /0x1FFFC000/01*016 e",
    ] {
        for len in 0..=s.len() {
            let cut = &s[..len];
            if let Ok(layout) = MemoryLayout::parse(cut) {
                for seg in layout.segments() {
                    let _ = layout.pages_to_erase(seg.start, 4096).map(Iterator::count);
                }
                let _ = layout.warnings().count();
            }
        }
    }
}
