//! `spark demo` run as a user runs it: the built binary, a small fleet, `--json`. The document it prints is checked
//! Core by Core: the reliable Cores on 1.24 were patched over the air and answer Tinker on 1.28, the Core already on
//! 1.28 was skipped, the unreliable one was flashed over USB with a DfuSe file (kept on disk, which spark-dfu and
//! dfu-suffix read back with the image at the Core's application address) and came back on Tinker with 1.28. A
//! run needs no data: without `--image` the fleet gets the synthetic deep update, and Spark's own image, where the
//! vectors hold it, is rolled out the same way. A missing or wrong image, or a fleet that does not add up, is one line on stderr and a non-zero exit; so is a run
//! in which Cores planned over the air refuse the update, or in which a USB flash fails mid-transfer (that Core
//! stays in DFU mode on its old service pack). With `--rotate` the run goes on to rotate the cloud's server key: the
//! report shows the fleet split between the keys before and after every Core was moved over DFU, the old key
//! retired once none remained, and a Core left on it accepted before the retirement and refused after.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use spark_cc3000::ServicePack;
use spark_dfu::file::dfuse::DfuseFile;
use spark_vcore::image::{SYNTHETIC_DEEP_UPDATE_NAME, synthetic_deep_update};

/// Spark's deep update under the vectors' `dfu` folder.
const SPARK_IMAGE: &str = "spark-cli/deep_update_2014_06.bin";

fn spark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(args)
        .env_remove("SPARK_API_URL")
        .env_remove("PARTICLE_ACCESS_TOKEN")
        .output()
        .expect("the spark binary runs")
}

fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr:?}");
    assert!(lines[0].starts_with("spark: "), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    lines[0].to_owned()
}

/// Stderr without the line that gives the console's address (printed once the cloud is up).
fn without_console_line(stderr: &[u8]) -> String {
    let text = String::from_utf8(stderr.to_vec()).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("watch it at http://"))
        .collect();
    assert!(kept.len() < text.lines().count(), "no console line: {text}");
    kept.join("\n")
}

fn str_of<'a>(row: &'a Value, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Value::as_str)
}

/// Debian's `dfu-suffix` (dfu-util) reads the suffix and checks its CRC.
fn dfu_suffix_agrees(file: &Path) {
    let Ok(check) = Command::new("dfu-suffix").arg("-c").arg(file).output() else {
        assert!(
            !spark_vectors::required(),
            "dfu-suffix (Debian dfu-util) is required"
        );
        return;
    };
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}");
    assert!(text.contains("Vendor ID:\t0x1D50"), "{text}");
    assert!(text.contains("Product ID:\t0x607F"), "{text}");
}

/// Runs a fleet of six (one on 1.28, one unreliable) with `image_arg` (`--image FILE`, or nothing for the synthetic
/// image) and checks the report row by row against `image`, the bytes that must have been rolled out.
fn a_small_fleet_is_patched(image_arg: &[&str], image: &[u8], image_name: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("usb");
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(["demo", "--json", "--count", "6", "--unreliable", "1"])
        .args(["--patched", "1", "--seed", "7", "--jobs", "3", "--out"])
        .arg(&out_path)
        .args(image_arg)
        // Nothing is read from a vectors folder: an empty one changes nothing.
        .env("SPARK_VECTORS", empty.path())
        .current_dir(empty.path())
        .output()
        .expect("the spark binary runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "stderr: {stderr}\nstdout: {stdout}");
    let report: Value = serde_json::from_str(&stdout).expect("one JSON document");
    // While it ran, the demo said where to watch it: the cloud's console, with the account to sign in with.
    let console = stderr
        .lines()
        .find_map(|l| l.strip_prefix("watch it at http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no console line: {stderr}"));
    assert!(
        console.contains("/console (sign in as ") && console.contains(", password "),
        "{stderr}"
    );
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6);
    assert!(
        report.get("rotation").is_none(),
        "no rotation without --rotate"
    );
    let mut ids: Vec<&str> = rows.iter().filter_map(|r| str_of(r, "device")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "six distinct 24-hex ids: {ids:?}");
    assert!(ids.iter().all(|id| id.len() == 24));

    let (mut ota, mut usb, mut skip) = (0, 0, 0);
    for row in rows {
        let path = str_of(row, "path").unwrap();
        let link = str_of(row, "simulated_link").unwrap();
        let before = str_of(row, "before");
        let after = str_of(row, "after");
        assert_eq!(row["ok"], Value::Bool(true), "{row}");
        assert!(row["error"].is_null(), "{row}");
        match (link, before) {
            ("reliable", Some("1.24")) => {
                ota += 1;
                assert_eq!(path, "ota", "{row}");
                assert_eq!(after, Some("1.28"), "{row}");
                assert_eq!(row["tinker"], Value::Bool(true), "{row}");
                assert!(row["link_check"]["reliable"].as_bool().unwrap(), "{row}");
                assert!(row["attempts"].as_u64().unwrap() >= 1);
            }
            ("reliable", Some("1.28")) => {
                skip += 1;
                assert_eq!(path, "skip", "{row}");
                assert_eq!(after, Some("1.28"), "{row}");
                assert!(row["tinker"].is_null());
            }
            ("unreliable", Some("1.24")) => {
                usb += 1;
                assert_eq!(path, "usb", "{row}");
                assert!(!row["link_check"]["reliable"].as_bool().unwrap(), "{row}");
                // Flashed over USB, reset into the deep update, back on the cloud on Tinker with the new patch.
                assert_eq!(after, Some("1.28"), "{row}");
                assert_eq!(row["tinker"], Value::Bool(true), "{row}");
                assert_eq!(row["attempts"], 1, "{row}");
                assert!(row["seconds"].as_f64().unwrap() > 0.0, "{row}");
                let flash = &row["usb"];
                let len = image.len() as u64;
                assert_eq!(flash["total"].as_u64(), Some(len), "{row}");
                assert_eq!(flash["written"].as_u64(), Some(len), "{row}");
                assert_eq!(flash["verified"].as_u64(), Some(len), "{row}");
                assert_eq!(flash["erased"].as_u64(), Some(len.div_ceil(1024)), "{row}");
                assert!(flash["bootloader_ms"].as_u64().unwrap() > 0, "{row}");
                assert_eq!(flash["reset"], Value::Bool(true), "{row}");
                let file = str_of(row, "file").expect("a DfuSe file");
                let stem = image_name.trim_end_matches(".bin");
                assert_eq!(Path::new(file), out_path.join(format!("{stem}.dfu")));
                let bytes = std::fs::read(file).unwrap();
                let dfuse = DfuseFile::parse(&bytes).expect("a valid DfuSe file");
                let suffix = dfuse.suffix();
                assert_eq!((suffix.id_vendor, suffix.id_product), (0x1d50, 0x607f));
                let targets: Vec<_> = dfuse.targets().collect();
                assert_eq!(targets.len(), 1);
                assert_eq!(targets[0].alt(), 0);
                let elements: Vec<_> = targets[0].elements().collect();
                assert_eq!(elements.len(), 1);
                assert_eq!(elements[0].address, 0x0800_5000);
                assert!(elements[0].data == image, "the image, byte for byte");
                dfu_suffix_agrees(Path::new(file));
            }
            other => panic!("unexpected row {other:?}: {row}"),
        }
    }
    assert_eq!((ota, skip, usb), (4, 1, 1));

    let summary = &report["summary"];
    assert_eq!(summary["cores"], 6);
    assert_eq!(summary["image"], image_name);
    assert_eq!(summary["target"], "1.28");
    assert_eq!(summary["ota_planned"], 4);
    assert_eq!(summary["ota_patched"], 4);
    assert_eq!(summary["ota_failed"], 0);
    assert_eq!(summary["usb"], 1);
    assert_eq!(summary["usb_patched"], 1);
    assert_eq!(summary["usb_failed"], 0);
    assert_eq!(summary["skipped"], 1);
    assert!(
        str_of(summary, "usb_command")
            .unwrap()
            .starts_with("dfu-util -d 1d50:607f -a 0")
    );
    assert!(
        str_of(summary, "api_url")
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
}

#[test]
fn with_no_data_a_small_fleet_gets_the_synthetic_deep_update() {
    let image = synthetic_deep_update(ServicePack::SP_1_28);
    a_small_fleet_is_patched(&[], &image, SYNTHETIC_DEEP_UPDATE_NAME);
}

#[spark_vectors::test]
fn sparks_own_deep_update_is_rolled_out_the_same_way() {
    let path = spark_vectors::dir("dfu").join(SPARK_IMAGE);
    let image = std::fs::read(&path).unwrap();
    a_small_fleet_is_patched(
        &["--image", path.to_str().unwrap()],
        &image,
        "deep_update_2014_06.bin",
    );
}

#[test]
fn a_missing_image_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere").join("deep_update_2014_06.bin");
    let out = spark(&["demo", "--json", "--image", missing.to_str().unwrap()]);
    let line = one_error_line(&out);
    assert!(line.contains("not found"), "{line}");
    assert!(line.contains(missing.to_str().unwrap()), "{line}");
}

#[test]
fn an_image_without_a_service_pack_or_a_fleet_that_does_not_add_up_is_refused() {
    // A Core application (the synthetic image's vector table and code) that carries no service pack.
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain_app.bin");
    std::fs::write(&plain, &synthetic_deep_update(ServicePack::SP_1_28)[..4096]).unwrap();
    let out = spark(&["demo", "--image", plain.to_str().unwrap()]);
    let line = one_error_line(&out);
    assert!(line.contains("no CC3000 service pack"), "{line}");

    let out = spark(&[
        "demo",
        "--count",
        "3",
        "--unreliable",
        "2",
        "--patched",
        "2",
    ]);
    let line = one_error_line(&out);
    assert!(line.contains("do not fit"), "{line}");
}

#[test]
fn cores_that_refuse_the_update_fail_the_run() {
    let image = synthetic_deep_update(ServicePack::SP_1_28);
    // The deep update padded past the Core's 128 KiB OTA slot: the Cores refuse it, the rest of the run goes on.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("too_big.bin");
    let mut padded = image.clone();
    padded.resize(140 * 1024, 0);
    std::fs::write(&big, &padded).unwrap();
    let out = spark(&[
        "demo",
        "--json",
        "--count",
        "3",
        "--unreliable",
        "0",
        "--patched",
        "1",
        "--image",
        big.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = without_console_line(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "2 of 2 Cores that needed the update were not patched (2 of 2 over the air, 0 of 0 over USB)"
        ),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report is still printed");
    assert_eq!(report["summary"]["ota_planned"], 2);
    assert_eq!(report["summary"]["ota_failed"], 2);
    assert_eq!(report["summary"]["skipped"], 1);
    for row in report["rows"].as_array().unwrap() {
        if str_of(row, "path") == Some("ota") {
            assert_eq!(row["ok"], Value::Bool(false), "{row}");
            assert_eq!(str_of(row, "after"), Some("1.24"), "{row}");
            assert_eq!(row["attempts"], 2, "{row}");
            assert!(str_of(row, "error").unwrap().contains("failed"), "{row}");
        }
    }
}

#[test]
fn a_usb_flash_that_fails_mid_transfer_fails_the_run_and_boots_nothing() {
    let image = synthetic_deep_update(ServicePack::SP_1_28);
    let pages = image.len().div_ceil(1024);
    // The pages erased (3 transfers each, after 4 to prepare), the address set: a transfer half-way through the
    // block writes after them.
    let fault = (4 + 3 * pages + 3 + 3 * pages / 2).to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = spark(&[
        "demo",
        "--json",
        "--count",
        "3",
        "--unreliable",
        "1",
        "--patched",
        "1",
        "--seed",
        "7",
        "--usb-fault",
        &fault,
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = without_console_line(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "1 of 2 Cores that needed the update were not patched (0 of 1 over the air, 1 of 1 over USB)"
        ),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report is still printed");
    assert_eq!(report["summary"]["usb"], 1);
    assert_eq!(report["summary"]["usb_failed"], 1);
    assert_eq!(report["summary"]["ota_patched"], 1);
    let mut usb_rows = 0;
    for row in report["rows"].as_array().unwrap() {
        if str_of(row, "path") != Some("usb") {
            assert_eq!(row["ok"], Value::Bool(true), "{row}");
            continue;
        }
        usb_rows += 1;
        assert_eq!(row["ok"], Value::Bool(false), "{row}");
        let error = str_of(row, "error").unwrap();
        assert!(error.contains("USB flash failed after"), "{row}");
        assert!(error.contains("USB error during Write"), "{row}");
        assert!(error.contains("waits in DFU mode"), "{row}");
        // Nothing new booted: the CC3000 still holds 1.24, the bootloader never reset.
        assert_eq!(str_of(row, "before"), Some("1.24"), "{row}");
        assert_eq!(str_of(row, "after"), Some("1.24"), "{row}");
        assert!(row["tinker"].is_null(), "{row}");
        let flash = &row["usb"];
        assert_eq!(flash["reset"], Value::Bool(false), "{row}");
        let written = flash["written"].as_u64().unwrap();
        assert!(written > 0 && written < image.len() as u64, "{row}");
        assert_eq!(flash["verified"], 0, "{row}");
    }
    assert_eq!(usb_rows, 1);
    // The DfuSe file is still there for dfu-util.
    let kept = std::fs::read(dir.path().join("synthetic_deep_update.dfu")).unwrap();
    assert!(DfuseFile::parse(&kept).is_ok());
}

/// `spark demo --rotate` on a fleet of four (one on 1.28, one unreliable): its stdout and its exit status.
fn rotate_demo(json: bool) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark"));
    command
        .args([
            "demo",
            "--count",
            "4",
            "--unreliable",
            "1",
            "--patched",
            "1",
        ])
        .args(["--seed", "21", "--jobs", "2", "--rotate", "--out"])
        .arg(out_dir.path());
    if json {
        command.arg("--json");
    }
    let out = command.output().expect("the spark binary runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "stderr: {}\nstdout: {stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn rotate_moves_the_fleet_to_a_new_key_and_retires_the_old_one() {
    let report: Value = serde_json::from_str(&rotate_demo(true)).expect("one JSON document");
    // The update ran first, as without --rotate.
    assert_eq!(report["summary"]["ota_failed"], 0, "{report}");
    assert_eq!(report["summary"]["usb_failed"], 0, "{report}");
    let r = &report["rotation"];
    let (old, new) = (str_of(r, "old_key").unwrap(), str_of(r, "new_key").unwrap());
    assert_ne!(old, new, "{r}");
    for key in [old, new] {
        assert!(
            key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()),
            "{r}"
        );
    }
    // Right after the rotation every Core is listed on the previous key: it connected before it.
    let split =
        |s: &Value| ["previous", "current", "retired", "unknown"].map(|k| s[k].as_u64().unwrap());
    assert_eq!(split(&r["before"]), [4, 0, 0, 0], "{r}");
    // Every Core got the key and the cloud's address over DFU and came back on the new key.
    assert_eq!(r["cores"], 4, "{r}");
    assert_eq!(r["moved"], 4, "{r}");
    assert_eq!(r["failed"], Value::Array(Vec::new()), "{r}");
    assert!(
        str_of(r, "address").unwrap().starts_with("127.0.0.1:"),
        "{r}"
    );
    assert_eq!(split(&r["after"]), [0, 4, 0, 0], "{r}");
    let (total, slowest) = (
        r["move_seconds"].as_f64().unwrap(),
        r["slowest_move_seconds"].as_f64().unwrap(),
    );
    assert!(slowest > 0.0 && slowest <= total, "{r}");
    // None remained, so the old key was retired: a Core left on it was accepted before and refused after.
    assert_eq!(r["retired"], true, "{r}");
    assert_eq!(r["accepted_before_retirement"], true, "{r}");
    assert_eq!(r["probes_after_retirement"], 1, "{r}");
    assert_eq!(r["refused_after_retirement"], 1, "{r}");
}

#[test]
fn rotate_reports_one_line_per_phase() {
    let stdout = rotate_demo(false);
    let lines: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("rotate: "))
        .collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines[0].starts_with("rotate: new server key "), "{stdout}");
    assert!(
        lines[0].ends_with(" kept for the migration window"),
        "{stdout}"
    );
    assert_eq!(
        lines[1],
        "split: 4 Cores on the previous key, 0 on the current (GET /v1/devices)"
    );
    assert!(
        lines[2].starts_with("move: 4/4 Cores got the new server key and 127.0.0.1:")
            && lines[2].contains(" over DFU and reconnected on it ("),
        "{stdout}"
    );
    assert_eq!(
        lines[3],
        "split: 0 Cores on the previous key, 4 on the current"
    );
    assert_eq!(
        lines[4],
        "retire: previous key retired; a Core left in a drawer on it: accepted before, refused after (1 of 1 \
         handshakes refused)"
    );
}

#[test]
fn each_run_gets_its_own_folder_unless_out_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |json: bool| {
        let mut args = vec![
            "demo",
            "--count",
            "1",
            "--unreliable",
            "0",
            "--patched",
            "1",
        ];
        if json {
            args.push("--json");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_spark"))
            .args(&args)
            .env("TMPDIR", tmp.path())
            .output()
            .expect("run spark");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let folder = |stdout: &str| {
        let report: Value = serde_json::from_str(stdout).unwrap();
        PathBuf::from(report["summary"]["out_dir"].as_str().unwrap())
    };
    let first = folder(&run(true));
    let second = folder(&run(true));
    assert_ne!(first, second, "a fresh folder per run");
    for dir in [&first, &second] {
        assert!(
            dir.is_dir() && dir.starts_with(tmp.path()),
            "{}",
            dir.display()
        );
    }
    let text = run(false);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("files: {}", tmp.path().display()))),
        "the folder is printed: {text}"
    );
}
