//! What several of the virtual Core's test files share: a scratch directory and a server key.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use spark_protocol::crypto::keys::RsaPrivateKey;

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("spark-examples-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 2048-bit server key from `openssl genrsa`, made once per test binary (our generator is slow in debug builds).
pub fn server_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "2048"])
            .output()
            .expect("the openssl command");
        assert!(out.status.success(), "openssl genrsa failed");
        RsaPrivateKey::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
    })
}

/// A 1024-bit device key from `openssl genrsa`, made once per test binary.
pub fn device_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "1024"])
            .output()
            .expect("the openssl command");
        assert!(out.status.success(), "openssl genrsa failed");
        RsaPrivateKey::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
    })
}
