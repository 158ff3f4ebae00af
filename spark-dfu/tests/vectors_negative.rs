//! Bad input made from the published and generated vectors: truncated at every length, every bit flipped, bLength 8
//! and 32, DfuSe files that lie. Every case must give its own typed error, never a panic.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.

use spark_dfu::file::dfuse::{DfuseError, DfuseFile};
use spark_dfu::file::suffix::{Suffix, SuffixError, SuffixRepr};
use spark_dfu::file::{DfuFile, FileError};
use spark_dfu::module::{Check, Outcome, inspect};
use spark_dfu::platform::server_key::{KeyError, KeyFormat, ServerKeyImage};

fn read(path: &str) -> Vec<u8> {
    spark_vectors::load("dfu", path)
}

const DFUSE: SuffixRepr = SuffixRepr {
    bcd_device: 0,
    id_product: 0x607f,
    id_vendor: 0x1d50,
    bcd_dfu: 0x011a,
};

/// Replaces the suffix of a DfuSe file after editing its body, so that the error comes from the body.
fn resuffix(body: &[u8]) -> Vec<u8> {
    DFUSE.append_to_vec(body)
}

fn body_of(file: &[u8]) -> Vec<u8> {
    file[..file.len() - 16].to_vec()
}

#[spark_vectors::test]
fn suffix_files_truncated_at_every_length() {
    let spark = read("generated/suffix_spark.bin");
    for path in [
        "generated/suffix_spark.bin",
        "generated/suffix_default.bin",
        "generated/prefix_lmdfu_suffix_1cbe_00ff.bin",
    ] {
        let file = read(path);
        for len in 0..file.len() {
            let cut = &file[..len];
            let err = Suffix::parse(cut).unwrap_err();
            if len < 16 {
                assert_eq!(err, SuffixError::TooShort { len });
            } else {
                assert!(
                    matches!(err, SuffixError::BadSignature | SuffixError::BadCrc { .. }),
                    "{path} at {len}: {err:?}"
                );
            }
            // A cut file is at worst suffix-less; never a panic.
            let _ = DfuFile::parse(cut);
        }
    }
    // Cutting from the front leaves the suffix in place but breaks its CRC.
    for start in 1..spark.len() - 16 {
        assert!(matches!(
            Suffix::parse(&spark[start..]),
            Err(SuffixError::BadCrc { .. })
        ));
    }
}

#[spark_vectors::test]
fn every_single_bit_flip_in_a_suffixed_file_is_caught() {
    let file = read("generated/suffix_spark.bin");
    for byte in 0..file.len() {
        for bit in 0..8 {
            let mut bad = file.clone();
            bad[byte] ^= 1 << bit;
            let err = Suffix::parse(&bad).unwrap_err();
            let in_signature = (file.len() - 8..file.len() - 5).contains(&byte);
            if in_signature {
                assert_eq!(err, SuffixError::BadSignature);
            } else {
                assert!(
                    matches!(err, SuffixError::BadCrc { .. }),
                    "byte {byte} bit {bit}: {err:?}"
                );
                assert!(matches!(
                    DfuFile::parse(&bad),
                    Err(FileError::Suffix(SuffixError::BadCrc { .. }))
                ));
            }
        }
    }
}

#[spark_vectors::test]
fn blength_8_and_32() {
    let b8 = read("generated/suffix_blength8.bin");
    let b32 = read("generated/suffix_blength32.bin");
    assert_eq!(
        DfuFile::parse(&b8),
        Err(FileError::Suffix(SuffixError::UnsupportedLength(8)))
    );
    let f = DfuFile::parse(&b32).unwrap();
    assert_eq!(
        (
            f.suffix().unwrap().length,
            f.firmware().len(),
            f.payload().len()
        ),
        (32, 16, 16)
    );
    // bLength beyond the file.
    let mut big = b32.clone();
    big[43] = 49;
    let crc = spark_dfu::crc::jamcrc(&big[..44]);
    big[44..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        Suffix::parse(&big),
        Err(SuffixError::LengthExceedsFile {
            length: 49,
            file_len: 48
        })
    );
}

#[spark_vectors::test]
fn dfuse_truncated_at_every_length() {
    let multi = read("generated/dfuse_multi.dfu");
    for len in 0..multi.len() {
        assert!(DfuseFile::parse(&multi[..len]).is_err(), "cut at {len}");
        assert!(
            DfuseFile::parse_lenient(&multi[..len]).is_err(),
            "cut at {len}"
        );
    }
    // Cut the body and give it a fresh suffix: the structure itself must be refused.
    let body = &multi[..multi.len() - 16];
    for len in 0..body.len() {
        let file = resuffix(&body[..len]);
        let strict = DfuseFile::parse(&file).unwrap_err();
        let lenient = DfuseFile::parse_lenient(&file).unwrap_err();
        assert!(
            matches!(
                lenient,
                DfuseError::TooSmall { .. }
                    | DfuseError::TruncatedTarget { .. }
                    | DfuseError::TruncatedElement { .. }
            ),
            "cut at {len}: {lenient:?}"
        );
        if len >= 293 {
            assert_eq!(
                strict,
                DfuseError::ImageSizeMismatch {
                    stored: 631,
                    actual: len + 16
                }
            );
        }
    }
}

#[spark_vectors::test]
fn dfuse_signatures_versions_counts_and_sizes() {
    let multi = read("generated/dfuse_multi.dfu");
    let body = body_of(&multi);
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = body.clone();
        f(&mut b);
        resuffix(&b)
    };
    assert_eq!(
        DfuseFile::parse(&edit(&|b| b[0] = b'd')),
        Err(DfuseError::BadSignature)
    );
    assert_eq!(
        DfuseFile::parse(&edit(&|b| b[5] = 2)),
        Err(DfuseError::UnsupportedVersion(2))
    );
    assert_eq!(
        DfuseFile::parse(&edit(&|b| b[11] = b't')),
        Err(DfuseError::BadTargetSignature { target: 0 })
    );
    // Target 1 starts after target 0's prefix (274) and its two elements (8 + 16 + 8 + 8).
    let t1 = 11 + 274 + 40;
    assert_eq!(
        DfuseFile::parse(&edit(&|b| b[t1] = b'X')),
        Err(DfuseError::BadTargetSignature { target: 1 })
    );
    // The target count lies upwards: the third target is missing.
    assert_eq!(
        DfuseFile::parse(&edit(&|b| b[10] = 3)),
        Err(DfuseError::TruncatedTarget {
            target: 2,
            claimed: 3
        })
    );
    assert_eq!(
        DfuseFile::parse_lenient(&edit(&|b| b[10] = 3)),
        Err(DfuseError::TruncatedTarget {
            target: 2,
            claimed: 3
        })
    );
    // ... and downwards: the second target is left over (dfu-util only warns).
    let fewer = edit(&|b| b[10] = 1);
    assert_eq!(
        DfuseFile::parse(&fewer),
        Err(DfuseError::TrailingBytes { count: 274 + 16 })
    );
    let lenient = DfuseFile::parse_lenient(&fewer).unwrap();
    assert_eq!((lenient.targets().count(), lenient.leftover()), (1, 290));
    assert_eq!(
        DfuseFile::parse(&edit(&|b| b[10] = 0)),
        Err(DfuseError::TrailingBytes {
            count: body.len() - 11
        })
    );
    // An element that runs past the end.
    let e0 = 11 + 274;
    let past = edit(&|b| b[e0 + 4..e0 + 8].copy_from_slice(&10_000u32.to_le_bytes()));
    assert_eq!(
        DfuseFile::parse(&past),
        Err(DfuseError::TruncatedElement {
            target: 0,
            element: 0
        })
    );
    assert_eq!(
        DfuseFile::parse_lenient(&past),
        Err(DfuseError::TruncatedElement {
            target: 0,
            element: 0
        })
    );
    // More elements than there are.
    let many = edit(&|b| b[11 + 270..11 + 274].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert!(matches!(
        DfuseFile::parse(&many),
        Err(DfuseError::TruncatedElement { target: 0, .. } | DfuseError::BadTargetSignature { .. })
    ));
    // dwTargetSize and DFUImageSize that disagree (dfu-util ignores both).
    let tsize = edit(&|b| b[11 + 266] = 41);
    assert_eq!(
        DfuseFile::parse(&tsize),
        Err(DfuseError::TargetSizeMismatch {
            target: 0,
            stored: 41,
            actual: 40
        })
    );
    assert!(DfuseFile::parse_lenient(&tsize).is_ok());
    let isize = edit(&|b| b[6] = 0);
    assert!(matches!(
        DfuseFile::parse(&isize),
        Err(DfuseError::ImageSizeMismatch { .. })
    ));
    assert!(DfuseFile::parse_lenient(&isize).is_ok());
    // An element that wraps past 4 GiB.
    let wrap = edit(&|b| b[e0..e0 + 4].copy_from_slice(&0xFFFF_FFF8u32.to_le_bytes()));
    assert_eq!(
        DfuseFile::parse(&wrap),
        Err(DfuseError::AddressOverflow {
            target: 0,
            element: 0
        })
    );
    // Overlapping elements out of order (the slow path): element 1 moved under element 0.
    let e1 = e0 + 8 + 16;
    let overlap = edit(&|b| b[e1..e1 + 4].copy_from_slice(&0x0800_4FFCu32.to_le_bytes()));
    assert_eq!(
        DfuseFile::parse(&overlap),
        Err(DfuseError::Overlap {
            alt: 0,
            target: 0,
            element: 1
        })
    );
    // Out of order but disjoint is fine.
    let disjoint = edit(&|b| b[e1..e1 + 4].copy_from_slice(&0x0700_0000u32.to_le_bytes()));
    assert!(DfuseFile::parse(&disjoint).is_ok());
    // Not DfuSe at all, or no suffix.
    let plain = SuffixRepr {
        bcd_dfu: 0x0100,
        ..DFUSE
    }
    .append_to_vec(&body);
    assert_eq!(
        DfuseFile::parse(&plain),
        Err(DfuseError::NotDfuse { bcd_dfu: 0x0100 })
    );
    assert_eq!(
        DfuseFile::parse(&body),
        Err(DfuseError::Suffix(SuffixError::BadSignature))
    );
    let mut badcrc = multi.clone();
    badcrc[300] ^= 0x10;
    assert!(matches!(
        DfuseFile::parse(&badcrc),
        Err(DfuseError::Suffix(SuffixError::BadCrc { .. }))
    ));
}

#[spark_vectors::test]
fn modules_truncated_at_every_length() {
    let part = read("binary-version-reader/043_user-part.bin");
    for len in 0..part.len() {
        let i = inspect(&part[..len], 0);
        assert_ne!(
            i.outcome(Check::ModuleLength),
            Outcome::Passed,
            "cut at {len}"
        );
        assert_ne!(i.outcome(Check::Crc), Outcome::Passed, "cut at {len}");
    }
    let mut bad = part.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(inspect(&bad, 0).outcome(Check::Crc), Outcome::Failed);
    assert_eq!(inspect(&bad, 0).outcome(Check::Sha256), Outcome::Passed);
    bad[n - 1] ^= 1;
    bad[n - 10] ^= 1;
    assert_eq!(inspect(&bad, 0).outcome(Check::Sha256), Outcome::Failed);
}

#[spark_vectors::test]
fn server_keys_truncated_at_every_length() {
    let key = read("particle-cli/rsa.pub.der");
    for len in 0..key.len() {
        assert_eq!(
            ServerKeyImage::parse(&key[..len], KeyFormat::DCT_RSA),
            Err(KeyError::WrongSize {
                expected: 512,
                actual: len
            })
        );
        // Emitting from a cut DER never panics and refuses a DER shorter than its header says.
        let mut out = [0u8; 512];
        assert_eq!(
            ServerKeyImage::emit(
                &key[..len.min(294)],
                KeyFormat::DCT_RSA,
                None,
                None,
                &mut out
            )
            .is_ok(),
            len >= 294
        );
    }
    let mut bad = key.clone();
    bad[384] = 7;
    assert_eq!(
        ServerKeyImage::parse(&bad, KeyFormat::DCT_RSA),
        Err(KeyError::BadAddress)
    );
    bad[0] = 0x31;
    assert_eq!(
        ServerKeyImage::parse(&bad, KeyFormat::DCT_RSA),
        Err(KeyError::NotDer)
    );
}
