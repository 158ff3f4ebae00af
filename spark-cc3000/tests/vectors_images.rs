//! The published images and binaries in the shared vectors: parse, validate, identify, find.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.

use spark_cc3000::nvmem::{FatTable, RadioParams};
use spark_cc3000::patch::{
    Identification, ImageKind, KNOWN_IMAGES, PatchError, PatchImage, RAM_REGION_START, ServicePack,
    find_embedded,
};

/// file, kind, records, RAM end, data bytes, known name — the figures of the reference's image table.
const IMAGES: [(&str, ImageKind, usize, u32, usize, &str); 11] = [
    (
        "cc3000_drv_sp1.19_P4.11.6.13.19.bin",
        ImageKind::Driver,
        50,
        0x18045C,
        7358,
        "driver-1.19",
    ),
    (
        "cc3000_drv_sp1.24_P1.11.7.14.24.bin",
        ImageKind::Driver,
        52,
        0x18045C,
        7642,
        "driver-1.24",
    ),
    (
        "cc3000_drv_sp1.24_arp-assert-hotfix.bin",
        ImageKind::Driver,
        51,
        0x1803F0,
        7534,
        "driver-1.24-arp-assert",
    ),
    (
        "cc3000_drv_sp1.24_arp-event-hotfix.bin",
        ImageKind::Driver,
        45,
        0x180228,
        6660,
        "driver-1.24-arp-event",
    ),
    (
        "cc3000_drv_sp1.24_arp-issue-hotfix.bin",
        ImageKind::Driver,
        51,
        0x1803F0,
        7526,
        "driver-1.24-arp-issue",
    ),
    (
        "cc3000_drv_sp1.24_arp-request-pool-hotfix.bin",
        ImageKind::Driver,
        44,
        0x18021C,
        6466,
        "driver-1.24-arp-request-pool",
    ),
    (
        "cc3000_drv_sp1.26_P1.12.7.15.26.bin",
        ImageKind::Driver,
        51,
        0x1803F0,
        7562,
        "driver-1.26",
    ),
    (
        "cc3000_drv_sp1.28_P1.13.7.15.28.bin",
        ImageKind::Driver,
        51,
        0x1803F0,
        7510,
        "driver-1.28",
    ),
    (
        "cc3000_drv_sp1.32_P1.14.7.16.32.bin",
        ImageKind::Driver,
        45,
        0x180228,
        6580,
        "driver-1.32",
    ),
    (
        "cc3000_fw_P1.11.7.12.14.bin",
        ImageKind::Firmware,
        38,
        0x180000,
        4300,
        "firmware-1.11",
    ),
    (
        "cc3000_fw_P1.12-1.14_x.15.bin",
        ImageKind::Firmware,
        69,
        0x180000,
        5136,
        "firmware-1.12",
    ),
];

fn vector(name: &str) -> Vec<u8> {
    spark_vectors::load("cc3000", name)
}

#[spark_vectors::test]
fn every_vector_image_parses_validates_and_is_identified() {
    for (file, kind, records, ram_end, data_len, name) in IMAGES {
        let bytes = vector(file);
        let image = PatchImage::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(image.kind(), kind, "{file}");
        assert_eq!(image.record_count(), records, "{file}");
        assert_eq!(image.ram_end(), ram_end, "{file}");
        assert_eq!(image.ram_used(), ram_end - RAM_REGION_START, "{file}");
        assert_eq!(image.data_len(), data_len, "{file}");
        assert_eq!(image.payload_len() as usize, bytes.len() - 8, "{file}");
        // the records tile the image exactly
        let covered: usize = image
            .records()
            .map(|r| 8 + r.data.len() + spark_cc3000::patch::padding_len(r.data.len()))
            .sum();
        assert_eq!(12 + covered, bytes.len(), "{file}");
        // RAM check: recomputed from the listed records
        let high = image
            .records()
            .filter(|r| r.in_ram_region())
            .map(|r| r.end())
            .max()
            .unwrap_or(RAM_REGION_START);
        assert_eq!(high, image.ram_end(), "{file}");
        let known = image
            .identify()
            .known()
            .unwrap_or_else(|| panic!("{file} not identified"));
        assert_eq!(known.name, name);
        assert_eq!(known.len, bytes.len());
        assert_eq!(known.kind, kind);
    }
}

#[spark_vectors::test]
fn identified_versions_match_the_file_names() {
    for (file, kind, ..) in IMAGES {
        let bytes = vector(file);
        let known = PatchImage::parse(&bytes)
            .unwrap()
            .identify()
            .known()
            .unwrap();
        if kind == ImageKind::Driver {
            // "cc3000_drv_sp1.28_..." -> 1.28
            let sp: ServicePack = file["cc3000_drv_sp".len()..]
                .split('_')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(known.reports, Some(sp), "{file}");
            assert!(known.belongs_to(sp));
        }
    }
}

/// Every known image is among the vectors (this table against the crate's; needs no vector file).
#[test]
fn every_known_image_is_in_the_table() {
    assert_eq!(KNOWN_IMAGES.len(), IMAGES.len());
    for known in KNOWN_IMAGES {
        assert!(
            IMAGES.iter().any(|image| image.5 == known.name),
            "{}",
            known.name
        );
    }
}

#[spark_vectors::test]
fn valid_but_unknown_image() {
    let mut bytes = vector("cc3000_drv_sp1.28_P1.13.7.15.28.bin");
    // change one data byte of the first record: still well formed, no longer TI's image
    bytes[20] ^= 0x01;
    let image = PatchImage::parse(&bytes).unwrap();
    assert_eq!(image.identify(), Identification::Unknown);
    assert_eq!(image.kind(), ImageKind::Driver);
}

/// Offset of the first padding byte of the first record that has padding.
fn first_padding(image: &PatchImage<'_>) -> usize {
    let r = image
        .records()
        .find(|r| r.data.len() % 4 != 0)
        .expect("an image with padding");
    r.offset + 8 + r.data.len()
}

#[spark_vectors::test]
fn each_corruption_has_its_own_error() {
    for (file, ..) in IMAGES {
        let good = vector(file);
        let image = PatchImage::parse(&good).unwrap();
        let parse = |b: &[u8]| PatchImage::parse(b).map(|_| ());

        // a flipped byte in each header field
        for i in 0..4 {
            let mut b = good.clone();
            b[i] ^= 0x80;
            assert!(
                matches!(parse(&b), Err(PatchError::BadMagic { .. })),
                "{file} magic byte {i}"
            );
        }
        for i in 4..8 {
            let mut b = good.clone();
            b[i] ^= 0x01;
            assert!(
                matches!(parse(&b), Err(PatchError::LengthMismatch { .. })),
                "{file} length byte {i}"
            );
        }
        for i in 8..12 {
            let mut b = good.clone();
            b[i] ^= 0x04;
            assert_eq!(
                parse(&b),
                Err(PatchError::RamEndMismatch {
                    declared: image.ram_end() ^ (0x04 << (8 * (i - 8))),
                    computed: image.ram_end()
                }),
                "{file} RAM-end byte {i}"
            );
        }

        // a wrong length: one byte more, one byte less, without fixing the header
        let mut longer = good.clone();
        longer.push(0xFF);
        assert!(
            matches!(parse(&longer), Err(PatchError::LengthMismatch { .. })),
            "{file}"
        );
        assert!(
            matches!(
                parse(&good[..good.len() - 1]),
                Err(PatchError::LengthMismatch { .. })
            ),
            "{file}"
        );

        // a truncated record: cut inside the last record and fix the length word so only the record is wrong
        let last = image.records().last().unwrap();
        let cut = last.offset + 8 + last.data.len() / 2;
        let mut truncated = good[..cut].to_vec();
        truncated[4..8].copy_from_slice(&((cut - 8) as u32).to_le_bytes());
        assert!(
            matches!(parse(&truncated), Err(PatchError::TruncatedRecord { offset, .. }) if offset == last.offset),
            "{file}: {:?}",
            parse(&truncated)
        );
        // cut inside a record header
        let cut = last.offset + 5;
        let mut truncated = good[..cut].to_vec();
        truncated[4..8].copy_from_slice(&((cut - 8) as u32).to_le_bytes());
        assert_eq!(
            parse(&truncated),
            Err(PatchError::TruncatedRecordHeader {
                offset: last.offset
            }),
            "{file}"
        );

        // every truncation is an error, never a panic
        for len in 0..good.len() {
            assert!(parse(&good[..len]).is_err(), "{file} truncated to {len}");
        }
    }
}

#[spark_vectors::test]
fn bad_padding_is_reported_where_it_is() {
    for (file, kind, ..) in IMAGES {
        if kind != ImageKind::Driver {
            continue; // the firmware images have no padding at all
        }
        let good = vector(file);
        let at = first_padding(&PatchImage::parse(&good).unwrap());
        let mut b = good.clone();
        b[at] = 0x00;
        assert_eq!(
            PatchImage::parse(&b),
            Err(PatchError::BadPadding {
                offset: at,
                found: 0x00
            }),
            "{file}"
        );
    }
}

#[spark_vectors::test]
fn default_table_is_byte_for_byte_the_vector() {
    let expected = vector("derived_fat_entries_default_48.bin");
    let mut entries = [0u8; 64];
    FatTable::programmer_default()
        .emit_entries(&mut entries)
        .unwrap();
    assert_eq!(&entries[..48], &expected[..]);
    // and the full region parses back to the same table
    let mut region = [0u8; 68];
    region[..2].copy_from_slice(b"LS");
    region[4..52].copy_from_slice(&expected);
    assert_eq!(
        FatTable::parse_valid(&region, 0x8000).unwrap(),
        FatTable::programmer_default()
    );
}

#[spark_vectors::test]
fn radio_defaults_are_128_non_blank_bytes() {
    let bytes = vector("cc3000_rm_default_params.bin");
    let rm = RadioParams::from_slice(&bytes).unwrap();
    assert!(!rm.is_blank());
}

fn binary(name: &str) -> Vec<u8> {
    spark_vectors::load("dfu", &format!("spark-cli/{name}"))
}

#[spark_vectors::test]
fn embedded_patch_finder() {
    /// offset, image name, version the driver reports
    type Hit = (usize, &'static str, Option<(u8, u8)>);
    let cases: [(&str, &[Hit]); 3] = [
        (
            "deep_update_2014_06.bin",
            &[
                (0x1044A, "driver-1.28", Some((1, 28))),
                (0x123A2, "firmware-1.12", None),
            ],
        ),
        (
            "cc3000-patch-programmer.bin",
            &[
                (0x2EF0, "driver-1.24-arp-assert", Some((1, 24))),
                (0x4E60, "firmware-1.11", None),
            ],
        ),
        (
            "cc3000-patch-programmer_1_14.bin",
            &[
                (0x2F58, "driver-1.32", Some((1, 32))),
                (0x4AD4, "firmware-1.12", None),
            ],
        ),
    ];
    for (name, expected) in cases {
        let bin = binary(name);
        let found: Vec<_> = find_embedded(&bin).collect();
        assert_eq!(found.len(), expected.len(), "{name}: {found:?}");
        for (hit, (offset, image_name, reports)) in found.iter().zip(expected) {
            assert_eq!(hit.offset, *offset, "{name}");
            let known = hit.identification.known().unwrap();
            assert_eq!(known.name, *image_name, "{name}");
            assert_eq!(
                known.reports.map(|v| (v.package_id, v.build)),
                *reports,
                "{name}"
            );
            assert_eq!(hit.image.as_bytes(), &bin[*offset..*offset + known.len]);
        }
    }
    // Tinker carries no patch
    let tinker = binary("spark_tinker.bin");
    assert_eq!(find_embedded(&tinker).count(), 0);
}
