//! Every file under `$SPARK_VECTORS/dfu/` is read and its fields asserted; every generated file is re-created
//! by this crate's writers byte for byte.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.

use sha2::{Digest, Sha256};
use spark_dfu::file::dfuse::{BinImage, DfuseError, DfuseFile, Element, pack_to_vec};
use spark_dfu::file::layout::{LayoutError, LayoutWarning, MemoryLayout};
use spark_dfu::file::prefix::{Prefix, PrefixRepr};
use spark_dfu::file::suffix::{Suffix, SuffixError, SuffixRepr};
use spark_dfu::file::{DfuFile, EditError, FileError};
use spark_dfu::module::{
    Check, FirmwareError, Format, ModuleFunction, Outcome, check_for, inspect,
};
use spark_dfu::platform::server_key::{KeyFormat, KeyKind, ServerAddress, ServerKeyImage};
use spark_dfu::platform::{Item, Platform, UsbId};

fn read(path: &str) -> Vec<u8> {
    spark_vectors::load("dfu", path)
}

fn raw32() -> Vec<u8> {
    (0..32).collect()
}

fn add_suffix(input: &[u8], repr: SuffixRepr) -> Vec<u8> {
    DfuFile::add_suffix_to_vec(input, repr).unwrap()
}

#[spark_vectors::test]
fn sources_md_lists_every_file_with_its_size_and_sha256() {
    let dir = spark_vectors::dir("dfu");
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).unwrap();
    let mut listed = 0;
    for line in sources
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('/'))
    {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (path, size, sha) = (cols[1], cols[6], cols[7]);
        if path == "local path" {
            continue;
        }
        let bytes = read(path);
        assert_eq!(bytes.len().to_string(), size, "{path}");
        assert_eq!(hex(&Sha256::digest(&bytes)), sha, "{path}");
        listed += 1;
    }
    let mut on_disk = 0;
    for sub in std::fs::read_dir(&dir).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            on_disk += std::fs::read_dir(sub).unwrap().count();
        }
    }
    assert_eq!(listed, on_disk, "every file on disk is listed and checked");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[spark_vectors::test]
fn generated_plain_inputs() {
    let raw = read("generated/raw32.bin");
    assert_eq!(raw, raw32());
    assert_eq!(read("generated/img16.bin"), (0..16).collect::<Vec<u8>>());
    assert_eq!(read("generated/img8_aa.bin"), vec![0xaa; 8]);
    assert_eq!(Suffix::parse(&raw), Err(SuffixError::BadSignature));
    assert_eq!(DfuFile::parse(&raw).unwrap().firmware(), &raw[..]);
}

#[spark_vectors::test]
fn generated_suffix_files_are_recreated_and_read() {
    let default = read("generated/suffix_default.bin");
    let raw = raw32();
    assert_eq!(add_suffix(&raw, SuffixRepr::default()), default);
    let s = Suffix::parse(&default).unwrap();
    assert_eq!(
        (
            s.bcd_device,
            s.id_product,
            s.id_vendor,
            s.bcd_dfu,
            s.length,
            s.crc
        ),
        (0xffff, 0xffff, 0xffff, 0x0100, 16, 0x3172_2A7F)
    );

    let spark = read("generated/suffix_spark.bin");
    let repr = SuffixRepr {
        bcd_device: 0x0200,
        id_product: 0x607f,
        id_vendor: 0x1d50,
        bcd_dfu: 0x0100,
    };
    assert_eq!(add_suffix(&raw, repr), spark);
    let s = Suffix::parse(&spark).unwrap();
    assert_eq!((s.repr(), s.crc), (repr, 0x5147_B781));
    let mut out = vec![0; 64];
    assert_eq!(
        DfuFile::add_suffix(&spark, repr, &mut out),
        Err(EditError::File(FileError::SuffixPresent))
    );
    let n = DfuFile::remove_suffix(&spark, &mut out).unwrap();
    assert_eq!(out[..n], raw[..]);

    let dfuse = read("generated/suffix_dfuse_0483_df11.bin");
    let repr = SuffixRepr {
        bcd_device: 0xffff,
        id_product: 0xdf11,
        id_vendor: 0x0483,
        bcd_dfu: 0x011a,
    };
    assert_eq!(add_suffix(&raw, repr), dfuse);
    assert_eq!(Suffix::parse(&dfuse).unwrap().crc, 0xA563_5E1F);
    assert!(Suffix::parse(&dfuse).unwrap().is_dfuse());
    // bcdDFU says DfuSe, but the body is not a DfuSe image.
    assert_eq!(
        DfuseFile::parse(&dfuse),
        Err(DfuseError::TooSmall { len: 32 })
    );
}

#[spark_vectors::test]
fn generated_negative_suffix_files() {
    let bad = read("generated/suffix_badcrc.bin");
    let mut ours = add_suffix(&raw32(), SuffixRepr::default());
    *ours.last_mut().unwrap() ^= 1;
    assert_eq!(ours, bad);
    assert_eq!(
        Suffix::parse(&bad),
        Err(SuffixError::BadCrc {
            stored: 0x3072_2A7F,
            computed: 0x3172_2A7F
        })
    );
    assert_eq!(
        DfuFile::parse(&bad),
        Err(FileError::Suffix(SuffixError::BadCrc {
            stored: 0x3072_2A7F,
            computed: 0x3172_2A7F
        }))
    );
    let mut out = vec![0; 64];
    assert_eq!(
        DfuFile::remove_suffix(&bad, &mut out),
        Err(EditError::File(FileError::SuffixRequired(
            SuffixError::BadCrc {
                stored: 0x3072_2A7F,
                computed: 0x3172_2A7F
            }
        )))
    );

    for (path, blength) in [
        ("generated/suffix_blength32.bin", 32u8),
        ("generated/suffix_blength8.bin", 8),
    ] {
        let file = read(path);
        let mut ours = add_suffix(&raw32(), SuffixRepr::default());
        ours[32 + 11] = blength;
        let crc = spark_dfu::crc::jamcrc(&ours[..44]);
        ours[44..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(ours, file, "{path}");
    }
    let b32 = read("generated/suffix_blength32.bin");
    assert_eq!(Suffix::parse(&b32).unwrap().length, 32);
    let f = DfuFile::parse(&b32).unwrap();
    assert_eq!(
        f.firmware(),
        &raw32()[..16],
        "dfu-suffix -D strips bLength bytes"
    );
    let b8 = read("generated/suffix_blength8.bin");
    assert_eq!(Suffix::parse(&b8), Err(SuffixError::UnsupportedLength(8)));
    assert_eq!(
        DfuFile::add_suffix(&b8, SuffixRepr::default(), &mut out),
        Err(EditError::File(FileError::Suffix(
            SuffixError::UnsupportedLength(8)
        )))
    );
}

#[spark_vectors::test]
fn generated_prefix_files_are_recreated_and_read() {
    let lm = read("generated/prefix_lmdfu_0x2000.bin");
    let mut out = vec![0; 128];
    let n = DfuFile::add_prefix(&raw32(), PrefixRepr::Lmdfu { address: 0x2000 }, &mut out).unwrap();
    assert_eq!(out[..n], lm[..]);
    let f = DfuFile::parse(&lm).unwrap();
    assert_eq!(
        f.prefix(),
        Some(Prefix::Lmdfu {
            address: 0x2000,
            payload_len: 32
        })
    );
    assert_eq!(f.firmware(), &raw32()[..]);

    let lm_sfx = read("generated/prefix_lmdfu_suffix_1cbe_00ff.bin");
    assert_eq!(
        add_suffix(&lm, SuffixRepr::for_device(0x1cbe, 0x00ff)),
        lm_sfx
    );
    let f = DfuFile::parse(&lm_sfx).unwrap();
    assert_eq!(
        f.prefix(),
        Some(Prefix::Lmdfu {
            address: 0x2000,
            payload_len: 32
        })
    );
    assert_eq!(f.suffix().unwrap().crc, 0xA8D6_95E6);
    assert_eq!(f.firmware(), &raw32()[..]);
    assert_eq!(f.payload().len(), 40);
    // dfu-prefix -D keeps the suffix with a new CRC.
    let n = DfuFile::remove_prefix(&lm_sfx, None, &mut out).unwrap();
    assert_eq!(Suffix::parse(&out[..n]).unwrap().crc, 0xAF42_58CD);
    assert_eq!(out[..32], raw32()[..]);

    let lpc = read("generated/prefix_lpc.bin");
    let n = DfuFile::add_prefix(&raw32(), PrefixRepr::Lpc, &mut out).unwrap();
    assert_eq!(out[..n], lpc[..]);
    let p = DfuFile::parse(&lpc).unwrap().prefix().unwrap();
    assert_eq!((p, p.lpc_size_kib()), (Prefix::Lpc { blocks: 1 }, Some(0)));
    assert_eq!(
        DfuFile::add_prefix(&lpc, PrefixRepr::Lpc, &mut out),
        Err(EditError::File(FileError::PrefixPresent))
    );
}

#[spark_vectors::test]
fn generated_dfuse_files_are_recreated_and_read() {
    let one = read("generated/dfuse_one.dfu");
    let img16: Vec<u8> = (0..16).collect();
    let aa = [0xaau8; 8];
    let ours = pack_to_vec(
        &[BinImage {
            alt: 0,
            element: Element {
                address: 0x0800_5000,
                data: &img16,
            },
        }],
        0x1d50,
        0x607f,
    )
    .unwrap();
    assert_eq!(ours, one);
    let f = DfuseFile::parse(&one).unwrap();
    assert_eq!(
        (f.image_size(), f.target_count(), f.suffix().crc),
        (325, 1, 0xA509_8F0F)
    );
    let s = f.suffix();
    assert_eq!(
        (s.bcd_device, s.id_product, s.id_vendor, s.bcd_dfu),
        (0, 0x607f, 0x1d50, 0x011a)
    );

    let multi = read("generated/dfuse_multi.dfu");
    let images = [
        BinImage {
            alt: 0,
            element: Element {
                address: 0x0800_5000,
                data: &img16,
            },
        },
        BinImage {
            alt: 0,
            element: Element {
                address: 0x0802_0000,
                data: &aa,
            },
        },
        BinImage {
            alt: 1,
            element: Element {
                address: 0x0000_1000,
                data: &aa,
            },
        },
    ];
    assert_eq!(pack_to_vec(&images, 0x1d50, 0x607f).unwrap(), multi);
    let f = DfuseFile::parse(&multi).unwrap();
    assert_eq!(
        (
            f.image_size(),
            f.target_count(),
            f.suffix().crc,
            f.leftover()
        ),
        (631, 2, 0x5A68_FA7E, 0)
    );
    let targets: Vec<_> = f.targets().collect();
    assert_eq!(
        (
            targets[0].alt(),
            targets[0].size(),
            targets[0].element_count()
        ),
        (0, 40, 2)
    );
    assert_eq!(
        (
            targets[1].alt(),
            targets[1].size(),
            targets[1].element_count()
        ),
        (1, 16, 1)
    );
    assert_eq!(targets[0].name(), Some(&b"ST..."[..]));
    let els: Vec<_> = targets
        .iter()
        .flat_map(|t| t.elements())
        .map(|e| (e.address, e.data.to_vec()))
        .collect();
    assert_eq!(
        els,
        vec![
            (0x0800_5000, img16.clone()),
            (0x0802_0000, aa.to_vec()),
            (0x1000, aa.to_vec())
        ]
    );
    assert_eq!(f.first_address(), Some(0x0800_5000));

    let tinker = read("spark-cli/spark_tinker.bin");
    let tdfuse = read("generated/tinker_core_dfuse.dfu");
    let ours = pack_to_vec(
        &[BinImage {
            alt: 0,
            element: Element {
                address: 0x0800_5000,
                data: &tinker,
            },
        }],
        0x1d50,
        0x607f,
    )
    .unwrap();
    assert_eq!(ours, tdfuse);
    let f = DfuseFile::parse(&tdfuse).unwrap();
    assert_eq!(f.suffix().crc, 0xF825_50E5);
    assert_eq!(
        f.targets().next().unwrap().elements().next().unwrap().data,
        &tinker[..]
    );

    let tdfu = read("generated/tinker_core.dfu");
    assert_eq!(
        add_suffix(&tinker, SuffixRepr::for_device(0x1d50, 0x607f)),
        tdfu
    );
    let f = DfuFile::parse(&tdfu).unwrap();
    assert_eq!(f.suffix().unwrap().crc, 0x8DE7_16CB);
    assert_eq!(f.firmware(), &tinker[..]);
    assert_eq!(
        DfuseFile::parse(&tdfu),
        Err(DfuseError::NotDfuse { bcd_dfu: 0x0100 })
    );
}

/// Renders a layout the way the vector file's harness printed dfu-util's result.
fn render(s: &str) -> Vec<String> {
    let layout = match MemoryLayout::parse(s) {
        Ok(l) => l,
        Err(LayoutError::NoName | LayoutError::NoSegments) => return vec!["NULL layout".into()],
        Err(e) => panic!("{e}"),
    };
    let mut out = vec![format!("DfuSe interface name: \"{}\"", layout.name())];
    for g in layout.segments() {
        let total = g.page_count.wrapping_mul(g.page_size);
        out.push(format!(
            "Memory segment at 0x{:08x} {:3} x {:4} = {:5} ({})",
            g.start,
            g.page_count,
            g.page_size,
            total,
            g.flags()
        ));
    }
    for g in layout.segments() {
        out.push(format!(
            "SEG start=0x{:08x} end=0x{:08x} pagesize={} memtype={}",
            g.start, g.end, g.page_size, g.memtype
        ));
    }
    out
}

#[spark_vectors::test]
fn every_memlayout_vector_line() {
    let text = read("generated/memlayout_vectors.txt");
    let text = String::from_utf8(text).unwrap();
    let mut warnings_expected: Vec<String> = Vec::new();
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(input) = line.strip_prefix("== ") {
            cases.push((input.to_string(), Vec::new()));
        } else if let Some((_, lines)) = cases.last_mut() {
            lines.push(line.to_string());
        } else {
            warnings_expected.push(line.to_string());
        }
    }
    assert_eq!(cases.len(), 8);
    let mut warnings_ours = Vec::new();
    for (input, expected) in &cases {
        assert_eq!(&render(input), expected, "{input}");
        match MemoryLayout::parse(input) {
            Ok(l) => {
                for w in l.warnings() {
                    match w {
                        LayoutWarning::MultiplierAssumedBytes(m) => {
                            warnings_ours.push(format!(
                                "Non-valid multiplier '{}', assuming bytes",
                                m as char
                            ));
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            Err(LayoutError::NoName) => {
                warnings_ours.push("Could not read name, sscanf returned 0".into())
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(warnings_ours, warnings_expected);
}

#[spark_vectors::test]
fn particle_modules() {
    let u043 = read("binary-version-reader/043_user-part.bin");
    // (path, offset, start, end, version, platform, function, index, deps, product id)
    type Row = (
        &'static str,
        usize,
        u32,
        u32,
        u16,
        u16,
        ModuleFunction,
        u8,
        [(u8, u8, u16); 2],
        Option<u16>,
    );
    let rows: [Row; 8] = [
        (
            "binary-version-reader/040_user-part.bin",
            0,
            0x080A_0000,
            0x080A_128C,
            2,
            6,
            ModuleFunction::UserPart,
            1,
            [(4, 2, 1), (0, 0, 0)],
            None,
        ),
        (
            "binary-version-reader/043_user-part.bin",
            0,
            0x080A_0000,
            0x080A_0998,
            2,
            6,
            ModuleFunction::UserPart,
            1,
            [(4, 2, 3), (0, 0, 0)],
            Some(0xffff),
        ),
        (
            "binary-version-reader/044_Core_Tinker_P5_V10.bin",
            0x10C,
            0x0800_5000,
            0x0801_A8E0,
            0,
            0,
            ModuleFunction::MonoFirmware,
            0,
            [(0, 0, 0); 2],
            Some(5),
        ),
        (
            "binary-version-reader/080_user-part-xenon.bin",
            0,
            0x000D_4000,
            0x000D_4CEC,
            5,
            14,
            ModuleFunction::UserPart,
            1,
            [(4, 1, 312), (0, 0, 0)],
            None,
        ),
        (
            "binary-version-reader/RC2_bootloader.bin",
            0x184,
            0x0800_0000,
            0x0800_3CB4,
            2,
            6,
            ModuleFunction::Bootloader,
            0,
            [(0, 0, 0); 2],
            None,
        ),
        (
            "particle-cli/core_tinker.bin",
            0x10C,
            0x0800_5000,
            0x0801_D270,
            207,
            0,
            ModuleFunction::MonoFirmware,
            0,
            [(0, 0, 0); 2],
            None,
        ),
        (
            "particle-cli/electron_tinker.bin",
            0,
            0x0808_0000,
            0x0808_168C,
            3,
            10,
            ModuleFunction::UserPart,
            1,
            [(4, 2, 10), (0, 0, 0)],
            None,
        ),
        (
            "particle-cli/tinker-0.4.5-photon.bin",
            0,
            0x080A_0000,
            0x080A_14C8,
            3,
            6,
            ModuleFunction::UserPart,
            1,
            [(4, 2, 6), (0, 0, 0)],
            None,
        ),
    ];
    assert_eq!(u043.len(), 2460);
    for (path, offset, start, end, version, platform, function, index, deps, product) in rows {
        let image = read(path);
        let i = inspect(&image, 0x0800_5000);
        let Format::Module {
            offset: found,
            info,
        } = i.format
        else {
            panic!("{path}: no module info")
        };
        assert_eq!(
            (
                found,
                info.start,
                info.end,
                info.version,
                info.platform_id,
                info.function,
                info.index
            ),
            (offset, start, end, version, platform, function, index),
            "{path}"
        );
        let d: Vec<(u8, u8, u16)> = info
            .dependencies
            .iter()
            .map(|d| {
                (
                    match d.function {
                        ModuleFunction::SystemPart => 4,
                        ModuleFunction::None => 0,
                        _ => 99,
                    },
                    d.index,
                    d.version,
                )
            })
            .collect();
        assert_eq!(d, deps, "{path}");
        assert_eq!(i.outcome(Check::Crc), Outcome::Passed, "{path}");
        let rc2 = path.ends_with("RC2_bootloader.bin");
        let expect = if rc2 {
            Outcome::Failed
        } else {
            Outcome::Passed
        };
        assert_eq!(i.outcome(Check::ModuleLength), expect, "{path}");
        assert_eq!(i.outcome(Check::Sha256), expect, "{path}");
        assert_eq!(i.outcome(Check::SuffixSize), expect, "{path}");
        assert_eq!(i.outcome(Check::StackInSram), Outcome::NotApplicable);
        if !rc2 {
            assert_eq!(
                i.suffix.unwrap().product_id.filter(|_| product.is_some()),
                product,
                "{path}"
            );
        }
    }
    // The 043 user part: CRC 21ab214a as binary-version-reader reports it.
    assert_eq!(inspect(&u043, 0).crc.unwrap().stored, 0x21ab_214a);
    assert_eq!(inspect(&u043, 0).suffix.unwrap().size, 40);
    assert_eq!(
        inspect(&read("binary-version-reader/040_user-part.bin"), 0)
            .suffix
            .unwrap()
            .size,
        36
    );

    // Where each may go.
    let photon = read("particle-cli/tinker-0.4.5-photon.bin");
    assert_eq!(
        check_for(&photon, Platform::Photon, Item::UserFirmware)
            .unwrap()
            .location
            .address,
        0x080A_0000
    );
    assert_eq!(
        check_for(&photon, Platform::Core, Item::UserFirmware),
        Err(FirmwareError::WrongPlatform {
            expected: 0,
            found: 6
        })
    );
    let electron = read("particle-cli/electron_tinker.bin");
    assert!(check_for(&electron, Platform::Electron, Item::UserFirmware).is_ok());
    let core = read("particle-cli/core_tinker.bin");
    let ok = check_for(&core, Platform::Core, Item::UserFirmware).unwrap();
    assert_eq!(
        (ok.location.alt, ok.location.address, ok.write_len),
        (0, 0x0800_5000, core.len())
    );
    let mut damaged = core.clone();
    damaged[0x1000] ^= 0x40;
    assert!(matches!(
        check_for(&damaged, Platform::Core, Item::UserFirmware),
        Err(FirmwareError::BadCrc { .. })
    ));
    let xenon = read("binary-version-reader/080_user-part-xenon.bin");
    assert!(check_for(&xenon, Platform::Xenon, Item::UserFirmware).is_ok());
}

#[spark_vectors::test]
fn legacy_core_binaries() {
    let tinker = read("spark-cli/spark_tinker.bin");
    for (path, reset) in [
        ("spark-cli/spark_tinker.bin", 0x0800_92CD),
        ("spark-cli/deep_update_2014_06.bin", 0x0800_9151),
        ("spark-cli/cc3000-patch-programmer.bin", 0x0800_55E1),
        ("spark-cli/cc3000-patch-programmer_1_14.bin", 0x0800_5789),
        ("spark-cli/voodoospark.bin", 0x0800_A11D),
    ] {
        let image = read(path);
        let i = inspect(&image, 0x0800_5000);
        assert_eq!(
            i.format,
            Format::Legacy {
                load_address: 0x0800_5000
            },
            "{path}"
        );
        assert_eq!(i.first_failure(), None, "{path}");
        let v = i.vectors.unwrap();
        assert_eq!((v.initial_sp, v.reset), (0x2000_5000, reset), "{path}");
        let ok = check_for(&image, Platform::Core, Item::UserFirmware).unwrap();
        assert_eq!(ok.write_len, image.len());
        assert!(
            check_for(&image, Platform::Core, Item::FactoryImage).is_ok(),
            "{path}"
        );
        assert_eq!(
            check_for(&image, Platform::Photon, Item::UserFirmware),
            Err(FirmwareError::NotFirmware(None))
        );
    }
    // The bootloader is checked against its own address; as application firmware its vectors point outside.
    let boot = read("spark-bootloader/bootloader.bin");
    assert_eq!(inspect(&boot, 0x0800_0000).first_failure(), None);
    assert_eq!(
        inspect(&boot, 0x0800_0000).vectors.unwrap().reset,
        0x0800_010D
    );
    assert_eq!(
        check_for(&boot, Platform::Core, Item::UserFirmware),
        Err(FirmwareError::NotFirmware(Some(Check::ResetInImage)))
    );
    // Odd lengths are padded with one zero byte, as both CLIs did.
    let odd = &tinker[..tinker.len() - 1];
    let ok = check_for(odd, Platform::Core, Item::UserFirmware).unwrap();
    assert_eq!(ok.write_len, tinker.len());
    let mut out = vec![0xee; ok.write_len];
    ok.emit(&mut out).unwrap();
    assert_eq!((&out[..odd.len()], out[odd.len()]), (odd, 0));
    // Too big for the 108 KiB region.
    let mut big = tinker.clone();
    big.resize(0x1B002, 0);
    assert_eq!(
        inspect(&big, 0x0800_5000).outcome(Check::LegacySize),
        Outcome::Failed
    );
    assert_eq!(
        check_for(&big, Platform::Core, Item::UserFirmware),
        Err(FirmwareError::DoesNotFit {
            len: 0x1B002,
            room: 0x1B000
        })
    );
    // The 128 KiB factory slot would hold it, but the bootloader copies it into the 108 KiB region.
    assert_eq!(
        check_for(&big, Platform::Core, Item::FactoryImage),
        Err(FirmwareError::DoesNotFit {
            len: 0x1B002,
            room: 0x1B000
        })
    );
    // A module in a place too small for it.
    let core = read("particle-cli/core_tinker.bin");
    assert_eq!(
        check_for(&core, Platform::Core, Item::DevicePrivateKey),
        Err(FirmwareError::DoesNotFit {
            len: core.len(),
            room: 1024
        })
    );
}

#[spark_vectors::test]
fn server_key_images() {
    let dct = read("particle-cli/rsa.pub.der");
    let padded = read("particle-cli/rsa.pub-padded.der");
    let ec = read("particle-cli/ec.pub.der");
    let domain = ServerAddress::Domain {
        name: b"device.spark.io",
        nul: true,
    };
    for (image, format) in [(&dct, KeyFormat::DCT_RSA), (&padded, KeyFormat::CORE)] {
        let k = ServerKeyImage::parse(image, format).unwrap();
        assert_eq!(
            (k.der.len(), k.kind, k.address, k.port),
            (294, KeyKind::Rsa, Some(domain), None)
        );
        let mut out = vec![0; format.len];
        ServerKeyImage::emit(k.der, format, k.address, k.port, &mut out).unwrap();
        assert_eq!(&out, image);
    }
    assert_eq!(dct[..294], padded[..294]);
    let k = ServerKeyImage::parse(&ec, KeyFormat::DCT_EC).unwrap();
    let udp = ServerAddress::Domain {
        name: b"$id.udp.particle.io",
        nul: false,
    };
    assert_eq!(
        (k.der.len(), k.kind, k.address, k.port),
        (91, KeyKind::Ec, Some(udp), None)
    );
    let mut out = vec![0; 320];
    ServerKeyImage::emit(k.der, KeyFormat::DCT_EC, k.address, None, &mut out).unwrap();
    assert_eq!(out, ec);
    // The platform table agrees on where each goes.
    assert_eq!(Platform::Core.server_key_format(), Some(KeyFormat::CORE));
    assert_eq!(
        Platform::Photon.server_key_format(),
        Some(KeyFormat::DCT_RSA)
    );
    assert_eq!(
        Platform::Electron.server_key_format(),
        Some(KeyFormat::DCT_EC)
    );
    assert_eq!(
        Platform::Photon
            .location(Item::ServerPublicKey)
            .map(|l| (l.alt, l.address, l.len)),
        Some((1, 2082, 512))
    );
}

#[spark_vectors::test]
fn dfu_util_listings() {
    let mixed = read("particle-cli/dfu-util-l_mixed.txt");
    let none = read("particle-cli/dfu-util-l_none.txt");
    let only = read("particle-cli/dfu-util-l_only_particle.txt");
    let found = |text: &[u8]| -> Vec<(Platform, u8, String)> {
        String::from_utf8_lossy(text)
            .lines()
            .filter(|l| l.starts_with("Found DFU: ["))
            .map(|l| {
                let ids = &l[12..21];
                let usb = UsbId {
                    vendor: u16::from_str_radix(&ids[..4], 16).unwrap(),
                    product: u16::from_str_radix(&ids[5..], 16).unwrap(),
                };
                let alt: u8 = l
                    .split("alt=")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                let name = l
                    .split("name=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string();
                (Platform::from_dfu_usb(usb).unwrap(), alt, name)
            })
            .collect()
    };
    assert!(found(&none).is_empty());
    let m = found(&mixed);
    assert_eq!(
        m.iter().map(|(p, a, _)| (*p, *a)).collect::<Vec<_>>(),
        vec![(Platform::Electron, 1), (Platform::Electron, 0)]
    );
    let o = found(&only);
    assert_eq!(
        o.iter().map(|(p, a, _)| (*p, *a)).collect::<Vec<_>>(),
        vec![(Platform::Photon, 1), (Platform::Photon, 0)]
    );
    for (platform, alt, name) in m.iter().chain(&o) {
        assert_eq!(
            platform.layout(*alt),
            Some(name.as_str()),
            "{platform:?} alt {alt}"
        );
        let l = MemoryLayout::parse(name).unwrap();
        assert!(l.segments().count() >= 1);
    }
}
