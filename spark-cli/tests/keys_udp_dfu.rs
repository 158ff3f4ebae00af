//! The P-256 key forms over DFU, on spark-dfu's simulated Electron (`SPARK_DFU_SIM_PLATFORM=electron`, alt 1 the
//! DCT): `spark keys load` puts a P-256 key at the UDP device key place (DCT 3106) and `keys save` reads it back,
//! `keys server` writes the UDP server key image at DCT 3298, `keys doctor --ec` replaces the key and sends its
//! public half as `ecc`; a Core, which has no UDP key place, refuses a P-256 key with nothing written.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use spark_dfu::platform::dct;
use spark_dfu::platform::server_key::{KeyFormat, ServerAddress, ServerKeyImage};
use spark_protocol::dtls::{PrivateKey, PublicKey, pem_to_der};
use support::{CORE, Cloud, PASSWORD, USER};

const ELECTRON_FLASH: usize = 0x10_0000;

/// `spark args` in `home` against the simulated device in `sim` (an Electron unless `core`), with `api` as the
/// cloud when given.
fn spark(home: &Path, sim: &Path, core: bool, api: Option<&Cloud>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spark"));
    cmd.args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("SPARK_DFU_SIM", sim)
        .env_remove("SPARK_DFU_SIM_FAULT")
        .env_remove("SPARK_DFU_SIM_MODE")
        .env_remove("PARTICLE_ACCESS_TOKEN")
        .env_remove("SPARK_PASSWORD");
    for proxy in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(proxy);
    }
    if core {
        cmd.env_remove("SPARK_DFU_SIM_PLATFORM");
    } else {
        cmd.env("SPARK_DFU_SIM_PLATFORM", "electron");
    }
    match api {
        Some(cloud) => cmd.env("SPARK_API_URL", cloud.url()),
        None => cmd.env_remove("SPARK_API_URL"),
    };
    cmd.output().expect("run spark")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "spark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The simulated Electron's DCT, from its state file.
fn dct_of(sim: &Path) -> Vec<u8> {
    let state = std::fs::read(sim).unwrap();
    assert_eq!(&state[..8], b"SPKSIME1");
    assert_eq!(state.len(), 8 + ELECTRON_FLASH + 0x4000);
    state[8 + ELECTRON_FLASH..].to_vec()
}

fn udp_key_place(dct: &[u8]) -> &[u8] {
    let at = dct::UDP_DEVICE_PRIVATE_KEY as usize;
    &dct[at..at + dct::UDP_DEVICE_PRIVATE_KEY_LEN as usize]
}

fn pem_der(text: &str, labels: &[&str]) -> Vec<u8> {
    let mut der = [0u8; 512];
    let (_, n) = pem_to_der(text, labels, &mut der).unwrap();
    der[..n].to_vec()
}

fn public_of_pem(path: &Path) -> PublicKey {
    let text = std::fs::read_to_string(path).unwrap();
    PrivateKey::from_der(&pem_der(&text, &["EC PRIVATE KEY", "PRIVATE KEY"]))
        .unwrap()
        .public_key()
}

fn new_ec(home: &Path, sim: &Path, name: &str) {
    json(&spark(
        home,
        sim,
        false,
        None,
        &["keys", "new", "--ec", name, "--json"],
    ));
}

#[test]
fn keys_load_puts_a_p256_key_at_dct_3106_and_keys_save_reads_it_back() {
    let home = tempfile::tempdir().unwrap();
    let (h, sim) = (home.path(), home.path().join("electron.sim"));
    new_ec(h, &sim, "first");
    new_ec(h, &sim, "second");
    let first_der = std::fs::read(h.join("first.der")).unwrap();
    let second_der = std::fs::read(h.join("second.der")).unwrap();

    // The SEC1 PEM goes in as its SEC1 DER, padded with 0xFF to the 192 bytes of room; the DCT was erased, so
    // nothing is saved first.
    let report = json(&spark(
        h,
        &sim,
        false,
        None,
        &["keys", "load", "first.pem", "--json"],
    ));
    assert_eq!(report["protocol"], "udp");
    assert_eq!(report["device"]["platform"], "Electron");
    assert_eq!(report["device"]["alt"], 1);
    assert_eq!(report["device"]["address"], format!("0x{:08x}", 3106));
    assert_eq!(report["device_had_key"], false);
    let dct = dct_of(&sim);
    let place = udp_key_place(&dct);
    assert_eq!(&place[..first_der.len()], &first_der[..]);
    assert!(place[first_der.len()..].iter().all(|&b| b == 0xFF));
    // The TCP (RSA) key place stays erased.
    let rsa = dct::DEVICE_PRIVATE_KEY as usize;
    assert!(dct[rsa..rsa + 612].iter().all(|&b| b == 0xFF));

    // A second key, as DER: the first is saved to pre_second.der as the device held it.
    let report = json(&spark(
        h,
        &sim,
        false,
        None,
        &["keys", "load", "second.der", "--json"],
    ));
    assert_eq!(report["backup"], "pre_second.der");
    let backup = std::fs::read(h.join("pre_second.der")).unwrap();
    assert_eq!(backup.len(), 192);
    assert_eq!(&backup[..first_der.len()], &first_der[..]);
    assert_eq!(
        &udp_key_place(&dct_of(&sim))[..second_der.len()],
        &second_der[..]
    );

    // `keys save` on an Electron reads the UDP key by default, trimmed to its DER; `--protocol tcp` reads the
    // erased RSA place and says so.
    let report = json(&spark(
        h,
        &sim,
        false,
        None,
        &["keys", "save", "saved.der", "--json"],
    ));
    assert_eq!(report["protocol"], "udp");
    assert_eq!(report["read"], 192);
    assert_eq!(std::fs::read(h.join("saved.der")).unwrap(), second_der);
    let tcp = spark(
        h,
        &sim,
        false,
        None,
        &["keys", "save", "rsa.der", "--protocol", "tcp"],
    );
    assert!(!tcp.status.success());
    assert!(stderr(&tcp).contains("holds no key"), "{}", stderr(&tcp));
}

#[test]
fn a_pkcs8_key_from_openssl_is_stored_as_sec1() {
    let home = tempfile::tempdir().unwrap();
    let (h, sim) = (home.path(), home.path().join("electron.sim"));
    // The openssl command is a test requirement of the workspace (spark-protocol's DTLS interop tests need it too).
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-out", "p8.pem"])
        .current_dir(h)
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let text = std::fs::read_to_string(h.join("p8.pem")).unwrap();
    assert!(text.contains("BEGIN PRIVATE KEY"), "PKCS#8: {text}");
    let report = json(&spark(
        h,
        &sim,
        false,
        None,
        &["keys", "load", "p8.pem", "--json"],
    ));
    assert_eq!(report["protocol"], "udp");
    let dct = dct_of(&sim);
    let place = udp_key_place(&dct);
    // SEC1 `ECPrivateKey`: version 1, then the scalar, as the device keeps it.
    assert_eq!(&place[..2], &[0x30, 0x77]);
    assert_eq!(&place[2..5], &[0x02, 0x01, 0x01]);
    let stored = PrivateKey::from_der(&place[..0x79]).unwrap();
    assert_eq!(stored.public_key(), public_of_pem(&h.join("p8.pem")));
}

#[test]
fn a_core_refuses_a_p256_key_and_nothing_is_written() {
    let home = tempfile::tempdir().unwrap();
    let (h, sim) = (home.path(), home.path().join("core.sim"));
    new_ec(h, &sim, "electron");
    let out = spark(h, &sim, true, None, &["keys", "load", "electron.der"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Core (platform 0) has no UDP (P-256) key place"),
        "{err}"
    );
    // The Core's key region (SPI 0x2000) and everything else stayed erased; no backup was taken.
    let state = std::fs::read(&sim).unwrap();
    assert_eq!(&state[..8], b"SPKSIM01");
    assert!(state[8..].iter().all(|&b| b == 0xFF));
    assert!(!h.join("pre_electron.der").exists());

    let out = spark(
        h,
        &sim,
        true,
        None,
        &["keys", "save", "k.der", "--protocol", "udp"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no UDP (P-256) key place"),
        "{}",
        stderr(&out)
    );
    let out = spark(h, &sim, true, None, &["keys", "server", "electron.pub.pem"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no UDP (P-256) key place"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn keys_server_writes_the_udp_server_key_image_at_dct_3298() {
    let home = tempfile::tempdir().unwrap();
    let (h, sim) = (home.path(), home.path().join("electron.sim"));
    // A spark-cloud's UDP server key pair is P-256 SEC1 + SPKI PEM, as `keys new --ec` writes.
    new_ec(h, &sim, "udp_key");
    let public = PublicKey::from_spki(&pem_der(
        &std::fs::read_to_string(h.join("udp_key.pub.pem")).unwrap(),
        &["PUBLIC KEY"],
    ))
    .unwrap();
    let report = json(&spark(
        h,
        &sim,
        false,
        None,
        &[
            "keys",
            "server",
            "udp_key.pub.pem",
            "--host",
            "127.0.0.1",
            "--port",
            "5684",
            "--json",
        ],
    ));
    assert_eq!(report["protocol"], "udp");
    assert_eq!(report["size"], 320);
    assert_eq!(report["key_size"], 91);
    assert_eq!(report["device"]["address"], format!("0x{:08x}", 3298));
    let dct = dct_of(&sim);
    let at = dct::UDP_SERVER_PUBLIC_KEY as usize;
    let image = ServerKeyImage::parse(&dct[at..at + 320], KeyFormat::DCT_EC).unwrap();
    assert_eq!(PublicKey::from_spki(image.der).unwrap(), public);
    assert_eq!(image.address, Some(ServerAddress::Ipv4([127, 0, 0, 1])));
    assert_eq!(image.port, Some(5684));
    // The file written beside it is the same image; the TCP server key place is untouched.
    assert_eq!(
        std::fs::read(h.join("udp_key.pub-127.0.0.1.der")).unwrap(),
        &dct[at..at + 320]
    );
    let tcp = dct::SERVER_PUBLIC_KEY as usize;
    assert!(dct[tcp..tcp + 512].iter().all(|&b| b == 0xFF));

    // `--ec` insists on a P-256 key: the private key's public half is fine, an RSA key is not.
    let report = json(&spark(
        h,
        &sim,
        false,
        None,
        &[
            "keys",
            "server",
            "udp_key.pem",
            "--ec",
            "--file-only",
            "-o",
            "f.der",
            "--json",
        ],
    ));
    assert_eq!(report["platform"], "Electron");
    let file = std::fs::read(h.join("f.der")).unwrap();
    let image = ServerKeyImage::parse(&file, KeyFormat::DCT_EC).unwrap();
    assert_eq!(PublicKey::from_spki(image.der).unwrap(), public);
    json(&spark(
        h,
        &sim,
        false,
        None,
        &["keys", "new", "rsa", "--bits", "1024", "--json"],
    ));
    let out = spark(
        h,
        &sim,
        false,
        None,
        &["keys", "server", "rsa.pub.pem", "--ec", "--file-only"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no P-256 key"), "{}", stderr(&out));
}

#[test]
fn keys_doctor_ec_replaces_the_udp_key_and_sends_its_public_half_as_ecc() {
    let cloud = Cloud::start();
    let home = tempfile::tempdir().unwrap();
    let (h, sim) = (home.path(), home.path().join("electron.sim"));
    let out = spark(
        h,
        &sim,
        false,
        Some(&cloud),
        &["login", "--username", USER, "--password", PASSWORD],
    );
    assert!(out.status.success(), "login failed: {}", stderr(&out));
    new_ec(h, &sim, "old");
    json(&spark(
        h,
        &sim,
        false,
        None,
        &["keys", "load", "old.der", "--no-backup", "--json"],
    ));
    let old_der = std::fs::read(h.join("old.der")).unwrap();

    let report = json(&spark(
        h,
        &sim,
        false,
        Some(&cloud),
        &["keys", "doctor", CORE, "--ec", "--json"],
    ));
    assert_eq!(report["algorithm"], "ecc");
    assert_eq!(report["bits"], 256);
    assert_eq!(report["sent"], true);
    // The old key was saved first, as the device held it.
    let backup = std::fs::read(h.join(format!("{CORE}_old.der"))).unwrap();
    assert_eq!(&backup[..old_der.len()], &old_der[..]);
    // The device now holds the new key, whose public half is the one the cloud was given, as ecc.
    let new_public = public_of_pem(&h.join(format!("{CORE}_new.pem")));
    let dct = dct_of(&sim);
    let place = udp_key_place(&dct);
    let stored = PrivateKey::from_der(&place[..0x79]).unwrap();
    assert_eq!(stored.public_key(), new_public);
    assert_ne!(&place[..old_der.len()], &old_der[..]);
    let sent = cloud.requests_to("POST", &format!("/v1/provisioning/{CORE}"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].field("algorithm").as_deref(), Some("ecc"));
    let pem = sent[0].field("publicKey").unwrap();
    assert_eq!(
        PublicKey::from_spki(&pem_der(&pem, &["PUBLIC KEY"])).unwrap(),
        new_public
    );
    assert!(!String::from_utf8_lossy(&sent[0].body).contains("PRIVATE"));
}
