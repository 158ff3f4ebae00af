//! `spark binary|dfu|cc3000` on the shared vectors, and `dfu pack` against dfu-util's tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn spark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(args)
        .output()
        .expect("run spark")
}

fn json(args: &[&str]) -> Value {
    let out = spark(args);
    assert!(
        out.status.success(),
        "spark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn vector(area: &str, relative: &str) -> PathBuf {
    let path = spark_vectors::dir(area).join(relative);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[spark_vectors::test]
fn binary_inspect_core_tinker() {
    let file = vector("dfu", "particle-cli/core_tinker.bin");
    let r = json(&["binary", "inspect", s(&file), "--json"]);
    assert_eq!(r["format"], "module");
    assert_eq!(r["size"], 98932);
    assert_eq!(r["module"]["platform_id"], 0);
    assert_eq!(r["module"]["platform"], "Core");
    assert_eq!(r["module"]["function"], "monolithic firmware");
    assert_eq!(r["module"]["start"], "0x08005000");
    assert_eq!(r["crc"]["ok"], true);
    assert_eq!(r["crc"]["stored"], r["crc"]["computed"]);
    assert_eq!(r["checks"]["sha256"], true);
    assert_eq!(r["ok"], true);
    let text = String::from_utf8(spark(&["binary", "inspect", s(&file)]).stdout).unwrap();
    assert!(text.contains(" CRC is ok ("), "{text}");
    assert!(text.contains(" Compiled for core"), "{text}");
}

#[spark_vectors::test]
fn binary_inspect_photon_user_part_and_its_dependency() {
    let file = vector("dfu", "particle-cli/tinker-0.4.5-photon.bin");
    let r = json(&["binary", "inspect", s(&file), "--json"]);
    assert_eq!(r["module"]["platform"], "Photon");
    assert_eq!(r["module"]["platform_id"], 6);
    assert_eq!(r["module"]["function"], "user part");
    assert_eq!(r["module"]["index"], 1);
    assert_eq!(r["module"]["start"], "0x080a0000");
    assert_eq!(r["module"]["dependencies"][0]["function"], "system part");
    assert_eq!(r["module"]["dependencies"][0]["index"], 2);
    assert_eq!(r["crc"]["ok"], true);
}

#[spark_vectors::test]
fn binary_inspect_reports_a_corrupted_crc() {
    let bytes = spark_vectors::load("dfu", "particle-cli/core_tinker.bin");
    let mut bytes = bytes;
    bytes[0x200] ^= 0x01;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.bin");
    std::fs::write(&path, &bytes).unwrap();
    let out = spark(&["binary", "inspect", s(&path), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed check fails the command"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("the CRC does not match"), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("the report still comes");
    assert_eq!(r["crc"]["ok"], false);
    assert_ne!(r["crc"]["stored"], r["crc"]["computed"]);
    assert_eq!(r["checks"]["crc"], false);
    assert_eq!(r["ok"], false);
}

#[spark_vectors::test]
fn binary_inspect_legacy_2014_tinker() {
    let file = vector("dfu", "spark-cli/spark_tinker.bin");
    let r = json(&["binary", "inspect", s(&file), "--json"]);
    assert_eq!(r["format"], "legacy");
    assert_eq!(r["load_address"], "0x08005000");
    assert_eq!(r["checks"]["reset_in_image"], true);
    assert_eq!(r["checks"]["stack_in_sram"], true);
}

#[test]
fn missing_file_is_a_one_line_error() {
    let out = spark(&["binary", "inspect", "/nonexistent/firmware.bin"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1);
    assert!(
        err.starts_with("spark: cannot read /nonexistent/firmware.bin"),
        "{err}"
    );
}

#[spark_vectors::test]
fn dfu_inspect_dfuse_multi() {
    let file = vector("dfu", "generated/dfuse_multi.dfu");
    let r = json(&["dfu", "inspect", s(&file), "--json"]);
    assert_eq!(r["size"], 631);
    assert_eq!(r["suffix"]["vendor"], "1d50");
    assert_eq!(r["suffix"]["product"], "607f");
    assert_eq!(r["suffix"]["bcd_dfu"], "011a");
    assert_eq!(r["suffix"]["dfuse"], true);
    let t = r["targets"].as_array().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0]["alt"], 0);
    assert_eq!(t[0]["name"], "ST...");
    assert_eq!(t[0]["elements"][0]["address"], "0x08005000");
    assert_eq!(t[0]["elements"][0]["size"], 16);
    assert_eq!(t[0]["elements"][1]["address"], "0x08020000");
    assert_eq!(t[0]["elements"][1]["size"], 8);
    assert_eq!(t[1]["alt"], 1);
    assert_eq!(t[1]["elements"][0]["address"], "0x00001000");
}

#[spark_vectors::test]
fn dfu_inspect_plain_suffix() {
    let file = vector("dfu", "generated/tinker_core.dfu");
    let r = json(&["dfu", "inspect", s(&file), "--json"]);
    assert_eq!(r["suffix"]["vendor"], "1d50");
    assert_eq!(r["suffix"]["product"], "607f");
    assert_eq!(r["suffix"]["bcd_dfu"], "0100");
    assert_eq!(r["suffix"]["dfuse"], false);
    assert_eq!(
        r["firmware_size"].as_u64().unwrap() + 16,
        r["size"].as_u64().unwrap()
    );
}

#[spark_vectors::test]
fn dfu_inspect_refuses_a_bad_suffix_crc() {
    let file = vector("dfu", "generated/suffix_badcrc.bin");
    let out = spark(&["dfu", "inspect", s(&file)]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr)
            .unwrap()
            .trim_end()
            .lines()
            .count(),
        1
    );
}

#[spark_vectors::test]
fn dfu_pack_matches_dfuse_pack_byte_for_byte() {
    // SOURCES.md: dfuse_multi.dfu is `dfuse-pack -b 0x08005000:img16.bin -b 0x08020000:img8_aa.bin
    // -b 0x00001000@1:img8_aa.bin -D 0x1d50:0x607f`.
    let (img16, img8, expected) = (
        vector("dfu", "generated/img16.bin"),
        vector("dfu", "generated/img8_aa.bin"),
        spark_vectors::load("dfu", "generated/dfuse_multi.dfu"),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("multi.dfu");
    let packed = json(&[
        "dfu",
        "pack",
        "-b",
        &format!("0x08005000:{}", s(&img16)),
        "-b",
        &format!("0x08020000:{}", s(&img8)),
        "-b",
        &format!("0x00001000@1:{}", s(&img8)),
        "-D",
        "1d50:607f",
        "-o",
        s(&out),
        "--json",
    ]);
    assert_eq!(packed["size"], expected.len());
    assert_eq!(std::fs::read(&out).unwrap(), expected);
    // And back.
    let r = json(&["dfu", "inspect", s(&out), "--json"]);
    assert_eq!(r["targets"].as_array().unwrap().len(), 2);
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-h").output().is_ok()
}

#[spark_vectors::test]
fn dfu_pack_round_trip_cross_checked_with_dfu_util_tools() {
    let tinker = vector("dfu", "particle-cli/core_tinker.bin");
    if !have("dfuse-pack") || !have("dfu-suffix") {
        assert!(
            !spark_vectors::required(),
            "dfuse-pack and dfu-suffix (Debian dfu-util) are required"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.dfu");
    let theirs = dir.path().join("theirs.dfu");
    let r = json(&[
        "dfu",
        "pack",
        "-b",
        &format!("0x08005000:{}", s(&tinker)),
        "-o",
        s(&ours),
        "--json",
    ]);
    assert_eq!(r["vendor"], "1d50");
    let status = Command::new("dfuse-pack")
        .args([
            "-b",
            &format!("0x08005000:{}", s(&tinker)),
            "-D",
            "0x1d50:0x607f",
        ])
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap()
    );
    // dfu-suffix checks our suffix and CRC.
    let check = Command::new("dfu-suffix")
        .arg("-c")
        .arg(&ours)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("Vendor ID:\t0x1D50"), "{text}");
    assert!(text.contains("Product ID:\t0x607F"), "{text}");
    assert!(text.contains("BCD DFU:\t0x011A"), "{text}");
    // Our inspector reads the element back at its address with its size.
    let r = json(&["dfu", "inspect", s(&ours), "--json"]);
    assert_eq!(r["targets"][0]["elements"][0]["address"], "0x08005000");
    assert_eq!(r["targets"][0]["elements"][0]["size"], 98932);
}

#[spark_vectors::test]
fn dfu_pack_refuses_overlaps_and_bad_arguments() {
    let img16 = vector("dfu", "generated/img16.bin");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.dfu");
    let overlap = spark(&[
        "dfu",
        "pack",
        "-b",
        &format!("0x1000:{}", s(&img16)),
        "-b",
        &format!("0x1008:{}", s(&img16)),
        "-o",
        s(&out),
    ]);
    assert!(!overlap.status.success());
    assert!(String::from_utf8_lossy(&overlap.stderr).contains("overlaps"));
    assert!(!out.exists());
    let bad = spark(&["dfu", "pack", "-b", "zzz:file", "-o", s(&out)]);
    assert!(!bad.status.success());
}

#[spark_vectors::test]
fn cc3000_inspect_driver_1_28() {
    let file = vector("cc3000", "cc3000_drv_sp1.28_P1.13.7.15.28.bin");
    let r = json(&["cc3000", "inspect", s(&file), "--json"]);
    assert_eq!(r["embedded"], false);
    let image = &r["images"][0];
    assert_eq!(image["kind"], "driver");
    assert_eq!(image["size"], 8024);
    assert_eq!(
        image["sha256"],
        "5f7b1c848a208a7891d589d301e982a7bdb8bcb50ef00a3fd325a40b40b01ac9"
    );
    assert_eq!(image["known"], true);
    assert_eq!(image["reports_version"], "1.28");
    assert_eq!(image["service_packs"][0], "1.28");
    assert_eq!(image["records"], image["layout"].as_array().unwrap().len());
}

#[spark_vectors::test]
fn cc3000_inspect_finds_the_images_inside_the_2014_deep_update() {
    let file = vector("dfu", "spark-cli/deep_update_2014_06.bin");
    let r = json(&["cc3000", "inspect", s(&file), "--json"]);
    assert_eq!(r["embedded"], true);
    let images = r["images"].as_array().unwrap();
    let driver = images.iter().find(|i| i["kind"] == "driver").unwrap();
    assert_eq!(driver["reports_version"], "1.28");
    assert!(
        images
            .iter()
            .any(|i| i["kind"] == "firmware" && i["known"] == true)
    );
}

#[spark_vectors::test]
fn cc3000_inspect_refuses_a_non_image() {
    let file = vector("dfu", "generated/img16.bin");
    let out = spark(&["cc3000", "inspect", s(&file)]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not a CC3000 service-pack image"), "{err}");
}

#[spark_vectors::test]
fn cc3000_plan_from_the_2014_deep_update() {
    let file = vector("dfu", "spark-cli/deep_update_2014_06.bin");
    let r = json(&["cc3000", "plan", s(&file), "--from", "1.24", "--json"]);
    assert_eq!(r["driver"], "driver-1.28");
    assert_eq!(r["expected_version"], "1.28");
    assert_eq!(r["needs_update"], true);
    let writes = r["patch_writes"].as_array().unwrap();
    assert_eq!(writes[0]["file"], 4);
    assert_eq!(writes[0]["size"], 8024);
    assert_eq!(writes[0]["writes"], 8024usize.div_ceil(32));
    assert_eq!(
        writes[0]["sha256"],
        "5f7b1c848a208a7891d589d301e982a7bdb8bcb50ef00a3fd325a40b40b01ac9"
    );
    assert_eq!(writes[1]["file"], 5);
    assert_eq!(writes[1]["size"], 5700);
    // The file table the programmer enforces: files 0 to 11, patch slots of 8 KiB.
    let table = r["table"].as_array().unwrap();
    assert_eq!(table.len(), 12);
    assert_eq!(table[4]["length"], 8192);
    assert_eq!(table[5]["length"], 8192);
    // A chip already on 1.28 needs nothing.
    let r = json(&["cc3000", "plan", s(&file), "--from", "1.28", "--json"]);
    assert_eq!(r["needs_update"], false);
}

#[spark_vectors::test]
fn cc3000_plan_from_two_images_and_a_refused_pair() {
    let (drv32, fw15, fw14) = (
        vector("cc3000", "cc3000_drv_sp1.32_P1.14.7.16.32.bin"),
        vector("cc3000", "cc3000_fw_P1.12-1.14_x.15.bin"),
        vector("cc3000", "cc3000_fw_P1.11.7.12.14.bin"),
    );
    let r = json(&[
        "cc3000",
        "plan",
        "--driver",
        s(&drv32),
        "--firmware",
        s(&fw15),
        "--json",
    ]);
    assert_eq!(r["expected_version"], "1.32");
    assert_eq!(r["patch_writes"][1]["size"], 5700);
    // The 1.32 driver with the firmware patch of 1.19/1.24 is a pair the programmer refuses.
    let out = spark(&[
        "cc3000",
        "plan",
        "--driver",
        s(&drv32),
        "--firmware",
        s(&fw14),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1);
    assert!(err.contains("refuses"), "{err}");
}

#[test]
fn binary_inspect_fails_on_files_that_are_not_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = vec![0u8; 4096];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for (name, bytes) in [
        ("empty.bin", Vec::new()),
        ("three.bin", vec![1, 2, 3]),
        ("random.bin", random),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = spark(&["binary", "inspect", s(&path)]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains("legacy Core image"), "{name}: {text}");
        assert!(text.contains("Not a firmware image"), "{name}: {text}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains(&format!("{name}: not a firmware image: ")),
            "{err}"
        );
        assert!(!err.contains("Some(") && !err.contains("Stack"), "{err}");
        let out = spark(&["binary", "inspect", s(&path), "--json"]);
        assert_eq!(out.status.code(), Some(1));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["format"], "not_firmware");
        assert_eq!(r["ok"], false);
    }
}

#[test]
fn dfu_pack_refuses_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let packed = dir.path().join("out.dfu");
    let arg = format!("0x08005000:{}", s(&empty));
    let out = spark(&["dfu", "pack", "-b", &arg, "-o", s(&packed)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("empty.bin is empty"), "{err}");
    assert!(!packed.exists());
}

/// Files far larger than any device holds are refused from their size, before they are read.
#[test]
fn huge_files_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.bin");
    // Sparse: 1 GiB on paper, nothing on disk.
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let h = s(&huge);
    for args in [
        &["binary", "inspect", h][..],
        &["dfu", "inspect", h],
        &["cc3000", "inspect", h],
        &["cc3000", "plan", h],
        &["keys", "load", h],
        &["flash", "--usb", h],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_spark"))
            .args(args)
            .env("SPARK_DFU_SIM", dir.path().join("core.sim"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("huge.bin: 1073741824 bytes is larger than any"),
            "{args:?}: {err}"
        );
        assert!(err.contains("not read"), "{err}");
    }
}

#[test]
fn offline_commands_take_no_cloud_options() {
    let out = spark(&[
        "binary",
        "inspect",
        "x.bin",
        "--api-url",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let help = String::from_utf8(spark(&["binary", "inspect", "--help"]).stdout).unwrap();
    assert!(
        !help.contains("--api-url") && !help.contains("--token"),
        "{help}"
    );
    let help = String::from_utf8(spark(&["list", "--help"]).stdout).unwrap();
    assert!(
        help.contains("--api-url") && help.contains("--token"),
        "{help}"
    );
}

#[test]
fn exit_codes_are_documented_and_kept() {
    let help = String::from_utf8(spark(&["--help"]).stdout).unwrap();
    assert!(
        help.contains("Exit status: 0 on success; 1 when a command fails"),
        "{help}"
    );
    assert!(help.contains("2 for a usage error"), "{help}");
    assert_eq!(spark(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(spark(&["binary", "inspect"]).status.code(), Some(2));
    assert_eq!(
        spark(&["binary", "inspect", "/nonexistent/x.bin"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn cc3000_inspect_summarises_first_and_lists_records_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("deep.bin");
    let bytes = spark_vcore::image::synthetic_deep_update(spark_cc3000::ServicePack::SP_1_28);
    std::fs::write(&image, bytes).unwrap();
    let out = spark(&["cc3000", "inspect", s(&image)]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with(" 2 CC3000 image(s) embedded: "),
        "{text}"
    );
    assert!(
        lines[1].contains("driver patch") && lines[1].contains("firmware patch"),
        "{text}"
    );
    assert!(lines.len() < 20, "a summary, not every record: {text}");
    let r = json(&["cc3000", "inspect", s(&image), "--json"]);
    let records: usize = r["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["layout"].as_array().unwrap().len())
        .sum();
    let out = spark(&["cc3000", "inspect", s(&image), "--records"]);
    let listed = String::from_utf8(out.stdout).unwrap().lines().count();
    assert_eq!(
        listed,
        lines.len() - 1 + records,
        "one more line per record"
    );
}
