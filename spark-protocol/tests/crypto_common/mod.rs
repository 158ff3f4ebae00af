//! Helpers shared by the crypto integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::RsaPrivateKey;

pub fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A deterministic RNG so that failures reproduce.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "spark-protocol-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Runs `openssl` with `args`, panicking with its stderr when it fails.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is required (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An RSA key written by `openssl genrsa`, parsed by our PEM reader.
pub fn openssl_key(bits: u32) -> RsaPrivateKey {
    let dir = scratch_dir("genrsa");
    let path = dir.join("key.pem");
    openssl(&["genrsa", "-out", path.to_str().unwrap(), &bits.to_string()]);
    let pem = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    RsaPrivateKey::from_pem(&pem).expect("our parser reads openssl genrsa output")
}
