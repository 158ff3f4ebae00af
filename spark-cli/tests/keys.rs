//! `spark keys new|server`: files the device and openssl accept, images identical to particle-cli's.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn spark(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spark"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run spark")
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn keys_new_writes_a_matching_pair() {
    let dir = tempfile::tempdir().unwrap();
    let r = ok_json(&spark(dir.path(), &["keys", "new", "core1", "--json"]));
    assert_eq!(r["bits"], 1024);
    let pem = std::fs::read_to_string(dir.path().join("core1.pem")).unwrap();
    let public = std::fs::read_to_string(dir.path().join("core1.pub.pem")).unwrap();
    let der = std::fs::read(dir.path().join("core1.der")).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    // The three files hold one key: parse them back with the protocol crate.
    let from_pem = spark_protocol::crypto::keys::RsaPrivateKey::from_pem(&pem).unwrap();
    let from_der = spark_protocol::crypto::keys::RsaPrivateKey::from_der(&der).unwrap();
    assert!(from_pem == from_der);
    assert_eq!(from_pem.bits(), 1024);
    let pub_key = spark_protocol::crypto::keys::RsaPublicKey::from_pem(&public).unwrap();
    assert_eq!(pub_key, from_pem.public_key());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["core1.pem", "core1.der"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{f} must be private");
        }
    }
    // Two runs give two different keys.
    ok_json(&spark(dir.path(), &["keys", "new", "core2", "--json"]));
    assert_ne!(std::fs::read(dir.path().join("core2.der")).unwrap(), der);
}

#[test]
fn keys_new_refuses_silly_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for bits in ["64", "512", "8192"] {
        let out = spark(dir.path(), &["keys", "new", "k", "--bits", bits]);
        assert!(!out.status.success(), "{bits} bits accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("choose 1024 to 4096"), "{bits}: {stderr}");
        assert!(!dir.path().join("k.pem").exists());
    }
}

#[spark_vectors::test]
fn keys_server_reproduces_particle_cli_images() {
    let (dct, core) = (
        spark_vectors::load("dfu", "particle-cli/rsa.pub.der"),
        spark_vectors::load("dfu", "particle-cli/rsa.pub-padded.der"),
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.pub.der");
    std::fs::write(&key, &dct).unwrap();
    let key = key.to_str().unwrap();
    let r = ok_json(&spark(
        dir.path(),
        &[
            "keys",
            "server",
            key,
            "--host",
            "device.spark.io",
            "-o",
            "core.der",
            "--file-only",
            "--json",
        ],
    ));
    assert_eq!(r["platform"], "Core");
    assert_eq!(r["size"], 2048);
    assert_eq!(r["key_size"], 294);
    assert_eq!(std::fs::read(dir.path().join("core.der")).unwrap(), core);
    ok_json(&spark(
        dir.path(),
        &[
            "keys",
            "server",
            key,
            "--host",
            "device.spark.io",
            "--platform",
            "photon",
            "-o",
            "p.der",
            "--file-only",
            "--json",
        ],
    ));
    assert_eq!(std::fs::read(dir.path().join("p.der")).unwrap(), dct);
}

#[spark_vectors::test]
fn keys_server_records_an_ipv4_address_and_port() {
    let dct = spark_vectors::load("dfu", "particle-cli/rsa.pub.der");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.der"), &dct).unwrap();
    ok_json(&spark(
        dir.path(),
        &[
            "keys",
            "server",
            "k.der",
            "--host",
            "192.168.1.10",
            "--port",
            "5683",
            "--file-only",
            "--json",
        ],
    ));
    let image = std::fs::read(dir.path().join("k-192.168.1.10.der")).unwrap();
    let parsed = spark_dfu::platform::server_key::ServerKeyImage::parse(
        &image,
        spark_dfu::platform::server_key::KeyFormat::CORE,
    )
    .unwrap();
    assert_eq!(
        parsed.address,
        Some(spark_dfu::platform::server_key::ServerAddress::Ipv4([
            192, 168, 1, 10
        ]))
    );
    assert_eq!(parsed.port, Some(5683));
    assert_eq!(parsed.der, &dct[..294]);
}

#[test]
fn keys_server_refuses_a_non_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk"), b"hello").unwrap();
    let out = spark(dir.path(), &["keys", "server", "junk", "--file-only"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
}
