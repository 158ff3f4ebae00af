//! A Core's folder and private key under umask 000 (alone in this test binary: the umask is the process's).
// The one unsafe call: setting the umask, which has no safe wrapper in std.
#![allow(unsafe_code)]

use std::os::unix::fs::PermissionsExt;

use spark_cc3000::ServicePack;
use spark_vcore::VirtualCore;

#[test]
fn a_cores_folder_is_0700_and_its_private_key_0600_whatever_the_umask() {
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(0) };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("core");
    let core = VirtualCore::create(&dir, ServicePack::SP_1_28).unwrap();
    drop(core);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let keys: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("key"))
        .collect();
    assert!(!keys.is_empty());
    for key in keys {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
}
