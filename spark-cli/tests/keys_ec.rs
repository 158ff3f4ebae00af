//! `spark keys new --ec` and `spark keys send` with a P-256 key (a UDP device's), against a recording HTTP server
//! on 127.0.0.1; the files are checked with the `openssl` command (a test requirement).

mod support;

use spark_protocol::dtls::{PrivateKey, PublicKey, pem_to_der};
use support::{CORE, Cloud, PASSWORD, USER};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "spark failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pem_der(text: &str, label: &str) -> Vec<u8> {
    let mut der = [0u8; 512];
    let (_, n) = pem_to_der(text, &[label], &mut der).unwrap();
    der[..n].to_vec()
}

#[test]
fn keys_new_ec_writes_one_p256_pair_in_three_forms_and_keys_send_provisions_its_public_half() {
    let cloud = Cloud::start();
    let home = tempfile::tempdir().unwrap();
    let out = cloud.spark(
        home.path(),
        &["login", "--username", USER, "--password", PASSWORD],
    );
    assert!(out.status.success(), "login failed: {}", stderr(&out));
    let base = home.path().join("electron");
    let report = json(&cloud.spark(
        home.path(),
        &["keys", "new", "--ec", base.to_str().unwrap(), "--json"],
    ));
    assert_eq!(report["bits"], 256);

    // The three files hold one key: the private PEM, the device's DER form, and the public PEM.
    let private_pem = std::fs::read_to_string(home.path().join("electron.pem")).unwrap();
    let der = std::fs::read(home.path().join("electron.der")).unwrap();
    let public_pem = std::fs::read_to_string(home.path().join("electron.pub.pem")).unwrap();
    let from_pem = PrivateKey::from_der(&pem_der(&private_pem, "EC PRIVATE KEY")).unwrap();
    let from_der = PrivateKey::from_der(&der).unwrap();
    let public = PublicKey::from_spki(&pem_der(&public_pem, "PUBLIC KEY")).unwrap();
    assert_eq!(from_pem.public_key(), public);
    assert_eq!(from_der.public_key(), public);
    #[cfg(unix)]
    for secret in ["electron.pem", "electron.der"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret} is readable by others");
    }
    // OpenSSL reads the device form as a P-256 key and derives the same public key.
    let out = std::process::Command::new("openssl")
        .args(["ec", "-inform", "DER", "-pubout", "-outform", "PEM", "-in"])
        .arg(home.path().join("electron.der"))
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), public_pem);

    // Any of the three files sends the same public key, as "ecc"; the private key never leaves.
    for (i, name) in ["electron.pem", "electron.der", "electron.pub.pem"]
        .into_iter()
        .enumerate()
    {
        let path = home.path().join(name);
        let report = json(&cloud.spark(
            home.path(),
            &["keys", "send", CORE, path.to_str().unwrap(), "--json"],
        ));
        assert_eq!(report["key_bits"], 256, "{name}");
        assert_eq!(report["algorithm"], "ecc", "{name}");
        let sent = &cloud.requests_to("POST", &format!("/v1/provisioning/{CORE}"))[i];
        assert_eq!(
            sent.field("publicKey").as_deref(),
            Some(public_pem.as_str()),
            "{name}"
        );
        assert_eq!(sent.field("algorithm").as_deref(), Some("ecc"), "{name}");
        assert!(!String::from_utf8_lossy(&sent.body).contains("PRIVATE"));
    }
}
