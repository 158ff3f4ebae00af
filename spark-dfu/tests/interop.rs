//! Seeded property tests against Debian's dfu-util 0.11 tools: `dfu-suffix`, `dfu-prefix` and `dfuse-pack` are
//! run on random images, ids and addresses, and this crate must produce the same bytes and the same verdict
//! (success or refusal, and the refusal's exit code).
//!
//! The seed is printed; set `SPARK_DFU_SEED` to replay a run. When the tools are not installed the tests skip,
//! unless `SPARK_REQUIRE_VECTORS=1` (what CI sets), where a missing tool fails the run.

use spark_dfu::file::dfuse::{BinImage, DfuseFile, Element, PackError, pack_to_vec};
use spark_dfu::file::prefix::{PrefixKind, PrefixRepr};
use spark_dfu::file::suffix::{SuffixError, SuffixRepr};
use spark_dfu::file::{DfuFile, EditError, FileError, PrefixPolicy, SuffixPolicy};
use std::path::PathBuf;
use std::process::Command;

/// SplitMix64: small, seedable, good enough to draw test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn u16(&mut self) -> u16 {
        match self.below(4) {
            0 => 0xffff,
            1 => 0,
            _ => self.next() as u16,
        }
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn seeded(test: &str) -> Rng {
    let seed = std::env::var("SPARK_DFU_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_D0F0_u64);
    println!("{test}: seed {seed} (replay with SPARK_DFU_SEED={seed})");
    Rng(seed
        ^ test
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))))
}

fn tool(name: &str) -> bool {
    let ok = Command::new(name).arg("-h").output().is_ok();
    if !ok {
        // CI sets SPARK_REQUIRE_VECTORS=1 and installs dfu-util; there a missing tool is a failure. Read directly
        // (not through spark-vectors) so this file also runs in the published package.
        let required = std::env::var("SPARK_REQUIRE_VECTORS")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        assert!(
            !required,
            "{name} is not installed (apt-get install dfu-util)"
        );
        eprintln!("skipped: {name} not installed");
    }
    ok
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("spark-dfu-interop-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool; returns its exit code.
fn run(cmd: &str, args: &[&str]) -> i32 {
    let out = Command::new(cmd).args(args).output().unwrap();
    out.status.code().unwrap_or(-1)
}

/// A random input: plain bytes, sometimes shaped like a prefix, sometimes carrying a (possibly broken) suffix.
fn random_image(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => rng.below(16) as usize,
        _ => rng.below(600) as usize,
    };
    let mut image = rng.bytes(len);
    if image.len() >= 8 && rng.chance(20) {
        // Looks like an LMDFU prefix; the length may or may not match.
        image[0] = 1;
        image[1] = 0;
        let claimed = if rng.chance(70) {
            image.len() as u32 - 8
        } else {
            rng.next() as u32 % 1000
        };
        image[4..8].copy_from_slice(&claimed.to_le_bytes());
    } else if image.len() >= 2 && rng.chance(15) {
        image[0] = 0x1a | (rng.next() as u8 & 0xc0);
        image[1] = 0x3f | (rng.next() as u8 & 0xc0);
    }
    if rng.chance(40) {
        let repr = SuffixRepr {
            bcd_device: rng.u16(),
            id_product: rng.u16(),
            id_vendor: rng.u16(),
            bcd_dfu: if rng.chance(50) { 0x0100 } else { 0x011a },
        };
        image = repr.append_to_vec(&image);
        let n = image.len();
        match rng.below(6) {
            0 => image[n - 1 - rng.below(4) as usize] ^= 1 << rng.below(8),
            1 => {
                image[n - 5] = rng.below(64) as u8;
                let crc = spark_dfu::crc::jamcrc(&image[..n - 4]);
                image[n - 4..].copy_from_slice(&crc.to_le_bytes());
            }
            2 => image[n - 8] = b'X',
            _ => {}
        }
    }
    image
}

/// The exit code dfu-util's tools use for a refusal of ours.
fn expected_exit(err: &EditError) -> Option<i32> {
    match err {
        // A truncated LPC prefix: dfu-util goes on and fails writing a negative length (an IO error).
        EditError::File(FileError::Prefix(_)) => None,
        _ => Some(65),
    }
}

fn compare_edit(
    what: &str,
    input: &[u8],
    ours: Result<Vec<u8>, EditError>,
    code: i32,
    theirs: &[u8],
) {
    match ours {
        Ok(bytes) => {
            assert_eq!(
                code, 0,
                "{what}: we accept, the tool refused; input {input:02x?}"
            );
            assert_eq!(bytes, theirs, "{what}: bytes differ; input {input:02x?}");
        }
        Err(e) => {
            assert_ne!(
                code, 0,
                "{what}: we refuse ({e}), the tool accepted; input {input:02x?}"
            );
            // A truncated LPC prefix makes the tool fail half-way through writing (an IO error, not a refusal).
            if let Some(expected) = expected_exit(&e) {
                assert_eq!(code, expected, "{what}: {e}; input {input:02x?}");
                assert_eq!(theirs, input, "{what}: a refused file is left alone");
            }
        }
    }
}

fn to_vec(
    f: impl FnOnce(&mut [u8]) -> Result<usize, EditError>,
    room: usize,
) -> Result<Vec<u8>, EditError> {
    let mut out = vec![0u8; room];
    let n = f(&mut out)?;
    out.truncate(n);
    Ok(out)
}

#[test]
fn dfu_suffix_add_matches() {
    if !tool("dfu-suffix") {
        return;
    }
    let mut rng = seeded("dfu_suffix_add_matches");
    let dir = Scratch::new("suffix-add");
    for case in 0..300 {
        let input = random_image(&mut rng);
        let repr = SuffixRepr {
            bcd_device: rng.u16(),
            id_product: rng.u16(),
            id_vendor: rng.u16(),
            bcd_dfu: if rng.chance(50) { 0x0100 } else { 0x011a },
        };
        let path = dir.file(&format!("a{case}"), &input);
        let code = run(
            "dfu-suffix",
            &[
                "-v",
                &format!("{:04x}", repr.id_vendor),
                "-p",
                &format!("{:04x}", repr.id_product),
                "-d",
                &format!("{:04x}", repr.bcd_device),
                "-S",
                &format!("{:04x}", repr.bcd_dfu),
                "-a",
                path.to_str().unwrap(),
            ],
        );
        let theirs = std::fs::read(&path).unwrap();
        let ours = to_vec(
            |out| DfuFile::add_suffix(&input, repr, out),
            input.len() + 16,
        );
        compare_edit(
            &format!("dfu-suffix -a case {case}"),
            &input,
            ours,
            code,
            &theirs,
        );
    }
}

#[test]
fn dfu_suffix_check_and_delete_match() {
    if !tool("dfu-suffix") {
        return;
    }
    let mut rng = seeded("dfu_suffix_check_and_delete_match");
    let dir = Scratch::new("suffix-cd");
    for case in 0..300 {
        let input = random_image(&mut rng);
        let path = dir.file(&format!("c{case}"), &input);
        let out = Command::new("dfu-suffix")
            .args(["-c", path.to_str().unwrap()])
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout);
        match DfuFile::load(&input, SuffixPolicy::Required, PrefixPolicy::Optional) {
            Ok(f) => {
                assert_eq!(code, 0, "case {case}: {input:02x?}");
                let s = f.suffix().unwrap();
                for (label, value) in [
                    ("BCD device", format!("0x{:04X}", s.bcd_device)),
                    ("Product ID", format!("0x{:04X}", s.id_product)),
                    ("Vendor ID", format!("0x{:04X}", s.id_vendor)),
                    ("BCD DFU", format!("0x{:04X}", s.bcd_dfu)),
                    ("Length", format!("{}", s.length)),
                    ("CRC", format!("0x{:08X}", s.crc)),
                ] {
                    let tabs = if label.len() < 7 { "\t\t" } else { "\t" };
                    let line = format!("{label}:{tabs}{value}");
                    assert!(
                        stdout.contains(&line),
                        "case {case}: missing {line:?} in {stdout}"
                    );
                }
                let has_prefix = stdout.contains("prefix");
                assert_eq!(
                    has_prefix,
                    f.prefix().is_some() || f.prefix_problem().is_some(),
                    "case {case}: prefix verdict"
                );
            }
            Err(e) => {
                assert_ne!(
                    code, 0,
                    "case {case}: we refuse ({e}), dfu-suffix -c accepted {input:02x?}"
                );
                if !matches!(e, FileError::Prefix(_)) {
                    assert_eq!(code, 65, "case {case}: {e}");
                }
                if let FileError::SuffixRequired(reason) = e {
                    let text = String::from_utf8_lossy(&out.stderr);
                    let expected = match reason {
                        SuffixError::TooShort { .. } => "File too short for DFU suffix",
                        SuffixError::BadSignature => "Invalid DFU suffix signature",
                        SuffixError::BadCrc { .. } => "DFU suffix CRC does not match",
                        other => panic!("{other:?}"),
                    };
                    assert!(text.contains(expected), "case {case}: {text}");
                }
            }
        }
        let code = run("dfu-suffix", &["-D", path.to_str().unwrap()]);
        let theirs = std::fs::read(&path).unwrap();
        let ours = to_vec(|out| DfuFile::remove_suffix(&input, out), input.len());
        compare_edit(
            &format!("dfu-suffix -D case {case}"),
            &input,
            ours,
            code,
            &theirs,
        );
    }
}

#[test]
fn dfu_prefix_matches() {
    if !tool("dfu-prefix") {
        return;
    }
    let mut rng = seeded("dfu_prefix_matches");
    let dir = Scratch::new("prefix");
    for case in 0..300 {
        let mut input = random_image(&mut rng);
        if rng.chance(40) {
            // Start from a prefixed file so that -D and -c have something to find.
            let kind = if rng.chance(50) {
                PrefixRepr::Lpc
            } else {
                PrefixRepr::Lmdfu {
                    address: rng.next() as u32,
                }
            };
            if let Ok(v) = to_vec(
                |out| DfuFile::add_prefix(&input, kind, out),
                input.len() + 16,
            ) {
                input = v;
            }
        }
        let path = dir.file(&format!("p{case}"), &input);
        let p = path.to_str().unwrap();
        let (what, code, ours) = match rng.below(4) {
            0 => {
                let address = rng.next() as u32
                    & if rng.chance(50) {
                        0x03ff_ffff
                    } else {
                        u32::MAX
                    };
                let code = run("dfu-prefix", &["-s", &format!("0x{address:x}"), "-a", p]);
                let ours = to_vec(
                    |o| DfuFile::add_prefix(&input, PrefixRepr::Lmdfu { address }, o),
                    input.len() + 16,
                );
                (format!("dfu-prefix -s 0x{address:x} -a"), code, ours)
            }
            1 => {
                let code = run("dfu-prefix", &["-L", "-a", p]);
                let ours = to_vec(
                    |o| DfuFile::add_prefix(&input, PrefixRepr::Lpc, o),
                    input.len() + 16,
                );
                ("dfu-prefix -L -a".to_string(), code, ours)
            }
            2 => {
                let (flag, kind) = match rng.below(3) {
                    0 => (None, None),
                    1 => (Some("-T"), Some(PrefixKind::Lmdfu)),
                    _ => (Some("-L"), Some(PrefixKind::Lpc)),
                };
                let mut args: Vec<&str> = flag.into_iter().collect();
                args.extend(["-D", p]);
                let code = run("dfu-prefix", &args);
                let ours = to_vec(|o| DfuFile::remove_prefix(&input, kind, o), input.len());
                (format!("dfu-prefix {args:?}"), code, ours)
            }
            _ => {
                let code = run("dfu-prefix", &["-c", p]);
                let ours = DfuFile::load(&input, SuffixPolicy::Optional, PrefixPolicy::Optional)
                    .map(|_| input.clone())
                    .map_err(EditError::from);
                ("dfu-prefix -c".to_string(), code, ours)
            }
        };
        let theirs = std::fs::read(&path).unwrap();
        compare_edit(&format!("{what} case {case}"), &input, ours, code, &theirs);
    }
}

#[test]
fn dfuse_pack_matches() {
    if !tool("dfuse-pack") {
        return;
    }
    let mut rng = seeded("dfuse_pack_matches");
    let dir = Scratch::new("dfuse");
    for case in 0..100 {
        let count = 1 + rng.below(4) as usize;
        let mut datas = Vec::new();
        let mut alts = Vec::new();
        let mut addresses = Vec::new();
        let mut next = rng.next() as u32 & 0x0fff_fff0;
        for _ in 0..count {
            let len = 1 + rng.below(300) as usize;
            let mut data = rng.bytes(len);
            if rng.chance(5) {
                data = SuffixRepr::default().append_to_vec(&data);
            }
            alts.push(if rng.chance(60) {
                0u8
            } else {
                rng.below(3) as u8
            });
            addresses.push(next);
            next = next.wrapping_add(data.len() as u32 + rng.below(64) as u32);
            datas.push(data);
        }
        let (vendor, product) = (rng.u16(), rng.u16());
        let mut args = Vec::new();
        for (i, data) in datas.iter().enumerate() {
            let p = dir.file(&format!("in{case}-{i}.bin"), data);
            let alt = if alts[i] == 0 && rng.chance(50) {
                String::new()
            } else {
                format!("@{}", alts[i])
            };
            args.push("-b".to_string());
            args.push(format!("0x{:08x}{alt}:{}", addresses[i], p.display()));
        }
        args.push("-D".to_string());
        args.push(format!("0x{vendor:04x}:0x{product:04x}"));
        let out_path = dir.0.join(format!("out{case}.dfu"));
        let _ = std::fs::remove_file(&out_path);
        args.push(out_path.display().to_string());
        let code = run(
            "dfuse-pack",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let images: Vec<BinImage<'_>> = datas
            .iter()
            .zip(&alts)
            .zip(&addresses)
            .map(|((data, &alt), &address)| BinImage {
                alt,
                element: Element { address, data },
            })
            .collect();
        match pack_to_vec(&images, vendor, product) {
            Ok(ours) => {
                assert_eq!(code, 0, "case {case}: {args:?}");
                assert_eq!(
                    std::fs::read(&out_path).unwrap(),
                    ours,
                    "case {case}: {args:?}"
                );
                let f = DfuseFile::parse(&ours).unwrap();
                assert_eq!(f.targets().flat_map(|t| t.elements()).count(), count);
            }
            Err(PackError::InputHasSuffix { .. }) => {
                assert_eq!(code, 1, "case {case}: {args:?}");
                assert!(!out_path.exists());
            }
            Err(e) => panic!("case {case}: {e}"),
        }
    }
}

#[test]
fn dfuse_pack_accepts_overlaps_that_we_refuse() {
    if !tool("dfuse-pack") {
        return;
    }
    let dir = Scratch::new("overlap");
    let p = dir.file("x.bin", &[1u8; 32]);
    let out = dir.0.join("o.dfu");
    let b = format!("0x1000:{}", p.display());
    let c = format!("0x1010:{}", p.display());
    assert_eq!(
        run("dfuse-pack", &["-b", &b, "-b", &c, out.to_str().unwrap()]),
        0
    );
    let theirs = std::fs::read(&out).unwrap();
    assert!(matches!(
        DfuseFile::parse(&theirs),
        Err(spark_dfu::file::dfuse::DfuseError::Overlap { .. })
    ));
    assert!(DfuseFile::parse_lenient(&theirs).is_ok());
    let data = [1u8; 32];
    let images = [
        BinImage {
            alt: 0,
            element: Element {
                address: 0x1000,
                data: &data,
            },
        },
        BinImage {
            alt: 0,
            element: Element {
                address: 0x1010,
                data: &data,
            },
        },
    ];
    assert!(matches!(
        pack_to_vec(&images, 0x0483, 0xdf11),
        Err(PackError::Write(_))
    ));
}

/// dfuse-pack's parser reads what our general writer emits (named and unnamed targets, several elements, any
/// alt settings) and finds the same structure, no CRC error and no parse error.
#[test]
fn dfuse_pack_reads_our_files() {
    use spark_dfu::file::dfuse::{DfuseRepr, TargetRepr};
    if !tool("dfuse-pack") {
        return;
    }
    let mut rng = seeded("dfuse_pack_reads_our_files");
    let dir = Scratch::new("dfuse-read");
    for case in 0..30 {
        let target_count = 1 + rng.below(4) as usize;
        let mut datas: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut names: Vec<Option<Vec<u8>>> = Vec::new();
        let mut alts = Vec::new();
        for _ in 0..target_count {
            let n = 1 + rng.below(3) as usize;
            datas.push(
                (0..n)
                    .map(|_| {
                        let len = rng.below(100) as usize + 1;
                        rng.bytes(len)
                    })
                    .collect(),
            );
            let name_len = rng.below(20) as usize;
            names.push(
                rng.chance(70)
                    .then(|| (0..name_len).map(|_| b'a' + rng.below(26) as u8).collect()),
            );
            alts.push(rng.below(8) as u8);
        }
        let mut next = 0x0800_0000u32;
        let elements: Vec<Vec<Element<'_>>> = datas
            .iter()
            .map(|ds| {
                ds.iter()
                    .map(|d| {
                        let e = Element {
                            address: next,
                            data: d,
                        };
                        next += d.len() as u32 + 4;
                        e
                    })
                    .collect()
            })
            .collect();
        let targets: Vec<TargetRepr<'_>> = (0..target_count)
            .map(|i| TargetRepr {
                alt: alts[i],
                name: names[i].as_deref(),
                elements: &elements[i],
            })
            .collect();
        let suffix = SuffixRepr {
            bcd_device: rng.u16(),
            id_product: rng.u16(),
            id_vendor: rng.u16(),
            bcd_dfu: 0x011a,
        };
        let bytes = DfuseRepr {
            targets: &targets,
            suffix,
        }
        .to_vec()
        .unwrap();
        let path = dir.file(&format!("r{case}.dfu"), &bytes);
        let out = Command::new("dfuse-pack").arg(&path).output().unwrap();
        assert!(out.status.success(), "case {case}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("ERROR"), "case {case}: {text}");
        assert!(
            text.contains(&format!(
                "image size: {}, targets: {target_count}",
                bytes.len()
            )),
            "case {case}: {text}"
        );
        for (i, t) in targets.iter().enumerate() {
            let name = t.name.map_or(String::new(), |n| {
                format!("b'{}'", String::from_utf8_lossy(n))
            });
            let line = format!("alt setting: {}, name: \"{name}\", size: ", t.alt);
            assert!(
                text.contains(&format!("b'Target' {i}, {line}")),
                "case {case}: {line} not in {text}"
            );
            for e in t.elements {
                let line = format!("address: 0x{:08x}, size: {}", e.address, e.data.len());
                assert!(text.contains(&line), "case {case}: {line} not in {text}");
            }
        }
        let usb = format!(
            "usb: {:04x}:{:04x}, device: 0x{:04x}, dfu: 0x011a",
            suffix.id_vendor, suffix.id_product, suffix.bcd_device
        );
        assert!(text.contains(&usb), "case {case}: {usb} not in {text}");
    }
}
