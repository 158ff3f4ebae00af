//! The `spark` commands that go over USB DFU, run as a user runs them, against spark-dfu's simulated Spark Core
//! (the hidden `SPARK_DFU_SIM` hook keeps its flash in a state file between runs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use spark_dfu::file::DfuFile;
use spark_dfu::file::suffix::SuffixRepr;
use spark_dfu::platform::server_key::{KeyFormat, ServerAddress, ServerKeyImage};
use spark_protocol::crypto::keys::RsaPrivateKey;

const INTERNAL: usize = 0x2_0000;

/// A simulated Core kept in a temporary directory.
struct Rig {
    dir: tempfile::TempDir,
    /// The simulated Core starts as an application with a run-time DFU interface.
    runtime: bool,
}

impl Rig {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            runtime: false,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("core.sim")
    }

    fn run_with(&self, args: &[&str], fault: Option<&str>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_spark"));
        c.current_dir(self.dir.path())
            .env("SPARK_DFU_SIM", self.state())
            .env_remove("SPARK_DFU_SIM_FAULT")
            .env_remove("SPARK_DFU_SIM_MODE")
            .args(args);
        if let Some(f) = fault {
            c.env("SPARK_DFU_SIM_FAULT", f);
        }
        if self.runtime {
            c.env("SPARK_DFU_SIM_MODE", "runtime");
        }
        c.output().expect("run spark")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None)
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "spark {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    /// The one-line error of a failed run.
    fn refused(&self, args: &[&str], fault: Option<&str>) -> String {
        let out = self.run_with(args, fault);
        assert!(!out.status.success(), "spark {args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("spark: "), "{err}");
        err
    }

    /// The simulated Core's memory: internal flash from 0x08000000, SPI flash from 0.
    fn memory(&self, address: u32, len: usize) -> Vec<u8> {
        let state = std::fs::read(self.state()).expect("state file");
        assert_eq!(&state[..8], b"SPKSIM01");
        let off = if address >= 0x0800_0000 {
            8 + (address - 0x0800_0000) as usize
        } else {
            8 + INTERNAL + address as usize
        };
        state[off..off + len].to_vec()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn vector(relative: &str) -> PathBuf {
    let path = spark_vectors::dir("dfu").join(relative);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn dfu_list_shows_the_core_like_dfu_util() {
    let rig = Rig::new();
    let out = rig.run(&["dfu", "list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("Found DFU: [1d50:607f] ver=0200, devnum=1, cfg=1, intf=0,"));
    assert!(lines[0].contains("alt=0, name=\"@Internal Flash  /0x08000000/20*001Ka,108*001Kg\""));
    assert!(lines[1].contains("alt=1, name=\"@SPI Flash : SST25x/0x00000000/512*04Kg\""));
    let r = rig.json(&["dfu", "list", "--json"]);
    assert_eq!(r[0]["vendor"], "1d50");
    assert_eq!(r[0]["product"], "607f");
    assert_eq!(r[0]["platform"], "Core");
    assert_eq!(r[0]["mode"], "dfu");
    assert_eq!(r[0]["alts"][1]["alt"], 1);
    // A selection that matches nothing lists nothing.
    let r = rig.json(&["dfu", "list", "--device", "2b04:d006", "--json"]);
    assert_eq!(r.as_array().unwrap().len(), 0);
    let r = rig.json(&["dfu", "list", "--serial", "SPARKSIM0001", "--json"]);
    assert_eq!(r.as_array().unwrap().len(), 1);
}

fn flash_lands(name: &str) {
    let file = vector(name);
    let image = std::fs::read(&file).unwrap();
    let rig = Rig::new();
    let r = rig.json(&["flash", "--usb", s(&file), "--json"]);
    assert_eq!(r["platform"], "Core");
    assert_eq!(r["kind"], "bin");
    assert_eq!(r["regions"][0]["address"], "0x08005000");
    assert_eq!(r["regions"][0]["alt"], 0);
    assert_eq!(r["bytes"].as_u64().unwrap() as usize, image.len());
    assert_eq!(
        r["erased_pages"].as_u64().unwrap() as usize,
        image.len().div_ceil(1024)
    );
    assert_eq!(r["verified"], true);
    assert_eq!(r["left_dfu"], true);
    assert_eq!(rig.memory(0x0800_5000, image.len()), image);
    // The page after the image is untouched.
    let end = 0x0800_5000 + image.len().div_ceil(1024) as u32 * 1024;
    assert!(rig.memory(end, 1024).iter().all(|&b| b == 0xFF));
}

#[spark_vectors::test]
fn flash_usb_tinker_lands_at_user_firmware() {
    flash_lands("spark-cli/spark_tinker.bin");
}

#[spark_vectors::test]
fn flash_usb_deep_update_lands_at_user_firmware() {
    flash_lands("spark-cli/deep_update_2014_06.bin");
}

#[spark_vectors::test]
fn flash_over_existing_firmware_and_text_output() {
    let (tinker, deep) = (
        vector("spark-cli/spark_tinker.bin"),
        vector("spark-cli/deep_update_2014_06.bin"),
    );
    let rig = Rig::new();
    let out = rig.run(&["flash", "--usb", s(&deep)]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Wrote 93636 bytes to the Core at 0x08005000 (alt 0)"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("Flash success!"), "{text}");
    // Then Tinker over it: the pages are erased again first, so nothing of the old image survives in them.
    rig.json(&["flash", "--usb", s(&tinker), "--no-verify", "--json"]);
    let image = std::fs::read(&tinker).unwrap();
    assert_eq!(rig.memory(0x0800_5000, image.len()), image);
    let old = std::fs::read(&deep).unwrap();
    let tail = image.len().div_ceil(1024) * 1024;
    assert_eq!(
        rig.memory(0x0800_5000 + tail as u32, old.len() - tail),
        old[tail..]
    );
}

#[spark_vectors::test]
fn flash_factory_image_lands_in_spi_flash() {
    let file = vector("spark-cli/spark_tinker.bin");
    let image = std::fs::read(&file).unwrap();
    let rig = Rig::new();
    let r = rig.json(&["flash", "--factory", s(&file), "--json"]);
    assert_eq!(r["regions"][0]["address"], "0x00020000");
    assert_eq!(r["regions"][0]["alt"], 1);
    // particle-cli does not leave DFU mode after a factory image; 4 KiB SPI sectors.
    assert_eq!(r["left_dfu"], false);
    assert_eq!(
        r["erased_pages"].as_u64().unwrap() as usize,
        image.len().div_ceil(4096)
    );
    assert_eq!(rig.memory(0x2_0000, image.len()), image);
    assert!(rig.memory(0x0800_5000, 16).iter().all(|&b| b == 0xFF));
    // `--usb --factory` is the same thing.
    let r = rig.json(&["flash", "--usb", "--factory", s(&file), "--leave", "--json"]);
    assert_eq!(r["left_dfu"], true);
}

#[spark_vectors::test]
fn flash_dfu_files_by_their_suffix_and_targets() {
    let (plain, dfuse) = (
        vector("generated/tinker_core.dfu"),
        vector("generated/tinker_core_dfuse.dfu"),
    );
    let image = std::fs::read(vector("spark-cli/spark_tinker.bin")).unwrap();
    let rig = Rig::new();
    let r = rig.json(&["flash", "--usb", s(&plain), "--json"]);
    assert_eq!(r["kind"], "dfu");
    assert_eq!(r["bytes"].as_u64().unwrap() as usize, image.len());
    assert_eq!(rig.memory(0x0800_5000, image.len()), image);
    let rig = Rig::new();
    let r = rig.json(&["flash", "--usb", s(&dfuse), "--json"]);
    assert_eq!(r["kind"], "dfuse");
    assert_eq!(r["regions"][0]["address"], "0x08005000");
    assert_eq!(rig.memory(0x0800_5000, image.len()), image);
}

#[spark_vectors::test]
fn wrong_platform_and_mismatched_files_are_refused() {
    let (photon, tinker) = (
        vector("particle-cli/tinker-0.4.5-photon.bin"),
        vector("spark-cli/spark_tinker.bin"),
    );
    let rig = Rig::new();
    let err = rig.refused(&["flash", "--usb", s(&photon)], None);
    assert!(
        err.contains("platform 6") && err.contains("platform 0"),
        "{err}"
    );
    // A DfuSe file packed for an ST part.
    let st = rig.path("st.dfu");
    let out = rig.run(&[
        "dfu",
        "pack",
        "-b",
        &format!("0x08005000:{}", s(&tinker)),
        "-D",
        "0483:df11",
        "-o",
        s(&st),
    ]);
    assert!(out.status.success());
    let err = rig.refused(&["flash", "--usb", s(&st)], None);
    assert!(
        err.contains("0483:df11") && err.contains("1d50:607f"),
        "{err}"
    );
    // A plain file whose suffix names a Photon.
    let image = std::fs::read(&tinker).unwrap();
    let photon_dfu = rig.path("photon.dfu");
    std::fs::write(
        &photon_dfu,
        DfuFile::add_suffix_to_vec(&image, SuffixRepr::for_device(0x2b04, 0xd006)).unwrap(),
    )
    .unwrap();
    let err = rig.refused(&["flash", "--usb", s(&photon_dfu)], None);
    assert!(err.contains("2b04:d006"), "{err}");
    // Not a firmware image at all.
    let junk = rig.path("junk.bin");
    std::fs::write(&junk, [0x55u8; 2048]).unwrap();
    rig.refused(&["flash", "--usb", s(&junk)], None);
    // A missing file, a DfuSe file with --factory, a device that is not there.
    rig.refused(&["flash", "--usb", "nope.bin"], None);
    rig.refused(&["flash", "--factory", s(&st)], None);
    let err = rig.refused(
        &["flash", "--usb", s(&tinker), "--device", "2b04:d006"],
        None,
    );
    assert!(err.contains("no DFU device 2b04:d006"), "{err}");
    // Nothing was written by any of them.
    assert!(rig.memory(0x0800_5000, 4096).iter().all(|&b| b == 0xFF));
}

#[spark_vectors::test]
fn injected_usb_faults_end_in_one_clear_line() {
    let tinker = vector("spark-cli/spark_tinker.bin");
    let rig = Rig::new();
    let err = rig.refused(&["flash", "--usb", s(&tinker)], Some("40:usb"));
    assert!(err.contains("flash failed: USB error while "), "{err}");
    let err = rig.refused(&["flash", "--usb", s(&tinker)], Some("300:disappear"));
    assert!(err.contains("device disconnected"), "{err}");
    let err = rig.refused(&["flash", "--usb", s(&tinker)], Some("245:status=3"));
    // The GETSTATUS after the first data block reports errWRITE.
    assert!(
        err.contains(
            "device reports status 3 (Device is unable to write memory) in dfuERROR while writing at 0x"
        ),
        "{err}"
    );
    let err = rig.refused(&["keys", "save", "k.der"], Some("2:stall"));
    assert!(err.contains("reading the key failed"), "{err}");
    assert!(!rig.path("k.der").exists());
}

#[spark_vectors::test]
fn server_key_with_address_over_dfu() {
    let der = spark_vectors::load("dfu", "particle-cli/rsa.pub.der");
    let rig = Rig::new();
    std::fs::write(rig.path("server.pub.der"), &der).unwrap();
    let r = rig.json(&[
        "keys",
        "server",
        "server.pub.der",
        "--host",
        "192.168.8.14",
        "--port",
        "5683",
        "--json",
    ]);
    assert_eq!(r["platform"], "Core");
    assert_eq!(r["device"]["address"], "0x00001000");
    assert_eq!(r["device"]["alt"], 1);
    assert_eq!(r["device"]["verified"], true);
    let file = std::fs::read(rig.path("server.pub-192.168.8.14.der")).unwrap();
    let on_device = rig.memory(0x1000, 2048);
    assert_eq!(on_device, file);
    let parsed = ServerKeyImage::parse(&on_device, KeyFormat::CORE).unwrap();
    assert_eq!(parsed.der, &der[..294]);
    assert_eq!(parsed.address, Some(ServerAddress::Ipv4([192, 168, 8, 14])));
    assert_eq!(parsed.port, Some(5683));
    // The address record sits at 0x1180.
    assert_eq!(rig.memory(0x1180, 6), [0, 4, 192, 168, 8, 14]);
    // A platform that is not the device's is refused before anything is written.
    let err = rig.refused(
        &["keys", "server", "server.pub.der", "--platform", "photon"],
        None,
    );
    assert!(err.contains("Core"), "{err}");
}

#[test]
fn keys_load_then_save_round_trips() {
    let pem = include_str!("fixtures/device_a.pem");
    let der = RsaPrivateKey::from_pem(pem).unwrap().to_pkcs1_der();
    let rig = Rig::new();
    std::fs::write(rig.path("core.pem"), pem).unwrap();
    // A blank device holds no key.
    let err = rig.refused(&["keys", "save", "none.der"], None);
    assert!(err.contains("no key"), "{err}");
    let r = rig.json(&["keys", "load", "core.pem", "--json"]);
    assert_eq!(r["key_size"].as_u64().unwrap() as usize, der.len());
    assert_eq!(r["device"]["address"], "0x00002000");
    // An erased key region is no key: nothing is saved, and the report says so.
    assert_eq!(r["device_had_key"], false);
    assert!(r["backup"].is_null(), "{r}");
    assert!(!rig.path("pre_core.pem").exists());
    // On the device: the DER, then 0xFF up to 1024 bytes.
    let region = rig.memory(0x2000, 1024);
    assert_eq!(&region[..der.len()], &der[..]);
    assert!(region[der.len()..].iter().all(|&b| b == 0xFF));
    let r = rig.json(&["keys", "save", "saved.der", "--json"]);
    assert_eq!(r["read"], 1024);
    assert_eq!(std::fs::read(rig.path("saved.der")).unwrap(), &der[..]);
    // An existing file is kept unless --force; --raw keeps the whole region.
    rig.refused(&["keys", "save", "saved.der"], None);
    rig.json(&["keys", "save", "saved.der", "--force", "--raw", "--json"]);
    assert_eq!(std::fs::read(rig.path("saved.der")).unwrap(), region);
    // Over a key, the key held before is saved first, as spark-cli did.
    let out = rig.run(&["keys", "load", "core.pem"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Saved existing key to"), "{text}");
    assert_eq!(std::fs::read(rig.path("pre_core.pem")).unwrap(), region);
    // A DER file loads the same way.
    std::fs::write(rig.path("again.der"), &der[..]).unwrap();
    rig.json(&["keys", "load", "again.der", "--no-backup", "--json"]);
    assert!(!rig.path("pre_again.der").exists());
    assert_eq!(rig.memory(0x2000, 1024), region);
    // Not a key: refused before the device is touched.
    std::fs::write(rig.path("junk.der"), b"hello").unwrap();
    rig.refused(&["keys", "load", "junk.der"], None);
}

#[spark_vectors::test]
fn a_device_in_run_time_mode_is_detached_first() {
    let tinker = vector("spark-cli/spark_tinker.bin");
    let mut rig = Rig::new();
    rig.runtime = true;
    let out = rig.run(&["dfu", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("Found Runtime: [1d50:607d] ver=0200"),
        "{text}"
    );
    let r = rig.json(&["dfu", "list", "--json"]);
    assert_eq!(r[0]["mode"], "runtime");
    // flash: GETSTATUS, DETACH, re-enumeration, GETSTATE, then the usual DFU session.
    let image = std::fs::read(&tinker).unwrap();
    rig.json(&["flash", "--usb", s(&tinker), "--json"]);
    assert_eq!(rig.memory(0x0800_5000, image.len()), image);
    // A failure during the detach is one clear line.
    let err = rig.refused(&["flash", "--usb", s(&tinker)], Some("1:usb"));
    assert!(
        err.contains("cannot switch the device to DFU mode"),
        "{err}"
    );
}

#[test]
fn keys_load_on_an_erased_device_says_there_was_no_key() {
    let rig = Rig::new();
    std::fs::write(rig.path("core.pem"), include_str!("fixtures/device_a.pem")).unwrap();
    let out = rig.run(&["keys", "load", "core.pem"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("No key on the device"), "{text}");
    assert!(!text.contains("Saved existing key"), "{text}");
    assert!(!rig.path("pre_core.pem").exists());
}

#[test]
fn flash_usb_checks_the_file_before_looking_for_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, [0x5Au8; 4096]).unwrap();
    // No simulated Core and (in CI) no USB device: the file is what is wrong, and that is what is said.
    let out = Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(["flash", "--usb", s(&garbage)])
        .env_remove("SPARK_DFU_SIM")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("garbage.bin: not a firmware image: "), "{err}");
    assert!(!err.contains("USB") && !err.contains("DFU device"), "{err}");
}

#[test]
fn update_writes_the_deep_update_and_says_where_to_get_it() {
    let rig = Rig::new();
    let image = spark_vcore::image::synthetic_deep_update(spark_cc3000::ServicePack::SP_1_28);
    std::fs::write(rig.path("deep_update.bin"), &image).unwrap();
    let out = rig.run(&["update", "--image", "deep_update.bin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Flash success!") && text.contains("patches its CC3000"),
        "{text}"
    );
    assert_eq!(rig.memory(0x0800_5000, image.len()), image);
    // No image: where to get Spark's.
    let err = rig.refused(&["update"], None);
    assert!(
        err.contains("deep_update_2014_06.bin") && err.contains("--image"),
        "{err}"
    );
    let err = rig.refused(&["update", "--image", "missing.bin"], None);
    assert!(
        err.contains("cannot read missing.bin") && err.contains("npm"),
        "{err}"
    );
    // A Core application without a service pack is not a deep update.
    let mut plain = vec![0u8; 1024];
    for (i, w) in [0x2000_5000u32, 0x0800_5101, 0, 0].iter().enumerate() {
        plain[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    std::fs::write(rig.path("plain.bin"), &plain).unwrap();
    let err = rig.refused(&["update", "--image", "plain.bin"], None);
    assert!(err.contains("not a deep update"), "{err}");
}

#[test]
fn usb_list_dfu_and_reset_move_the_core_between_modes() {
    let mut rig = Rig::new();
    let listed = rig.json(&["usb", "list", "--json"]);
    assert_eq!(listed[0]["mode"], "dfu");
    // A Core running its firmware shows its USB serial port too.
    let out = Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(["usb", "list", "--json"])
        .env("SPARK_DFU_SIM", rig.state())
        .env("SPARK_SERIAL_PORTS", "/dev/ttyACM7")
        .output()
        .unwrap();
    let both: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(both[1]["mode"], "serial");
    assert_eq!(both[1]["path"], "/dev/ttyACM7");
    assert_eq!(listed[0]["platform"], "Core");
    let text = String::from_utf8(rig.run(&["usb", "list"]).stdout).unwrap();
    assert!(
        text.contains("Core 1d50:607f") && text.contains("in DFU mode"),
        "{text}"
    );
    // In DFU mode: `usb dfu` has nothing to do, `usb reset` sends the leave request.
    assert_eq!(rig.json(&["usb", "dfu", "--json"])["was"], "dfu");
    let r = rig.json(&["usb", "reset", "--json"]);
    assert_eq!(
        (r["was"].as_str(), r["now"].as_str()),
        (Some("dfu"), Some("runtime"))
    );
    // Running its firmware (run-time USB ids): `usb dfu` detaches it, `usb reset` refuses.
    rig.runtime = true;
    let listed = rig.json(&["usb", "list", "--json"]);
    assert_eq!(listed[0]["mode"], "runtime");
    assert_eq!(listed[0]["product"], "607d");
    let r = rig.json(&["usb", "dfu", "--json"]);
    assert_eq!(
        (r["was"].as_str(), r["now"].as_str()),
        (Some("runtime"), Some("dfu"))
    );
    let err = rig.refused(&["usb", "reset"], None);
    assert!(err.contains("not in DFU mode"), "{err}");
    // A detach the device does not answer is one line.
    let err = rig.refused(&["usb", "dfu"], Some("1:usb"));
    assert!(err.contains("DFU mode"), "{err}");
}

#[test]
fn keys_address_reads_and_rewrites_the_server_address() {
    let rig = Rig::new();
    // Nothing written yet: the region is erased.
    let err = rig.refused(&["keys", "address"], None);
    assert!(err.contains("server-key image"), "{err}");
    let out = rig.run(&["keys", "new", "srv", "--json"]);
    assert!(out.status.success());
    rig.json(&[
        "keys",
        "server",
        "srv.pub.pem",
        "--host",
        "10.0.0.1",
        "--port",
        "5683",
        "--json",
    ]);
    let key_before = rig.memory(0x1000, 384);
    let r = rig.json(&["keys", "address", "--json"]);
    assert_eq!(
        (r["host"].as_str(), r["port"].as_u64()),
        (Some("10.0.0.1"), Some(5683))
    );
    assert_eq!(r["written"], false);
    let r = rig.json(&[
        "keys",
        "address",
        "--host",
        "cloud.example.com",
        "--port",
        "5684",
        "--json",
    ]);
    assert_eq!(r["written"], true);
    let text = String::from_utf8(rig.run(&["keys", "address"]).stdout).unwrap();
    assert_eq!(
        text.trim(),
        "The device connects to cloud.example.com port 5684"
    );
    assert_eq!(rig.memory(0x1000, 384), key_before, "the key is kept");
    let record = rig.memory(0x1000 + 384, 20);
    assert_eq!(&record[..2], &[0x01, 17]);
    assert_eq!(&record[2..19], b"cloud.example.com");
}
