//! File modes and stored secrets, under umask 000 (alone in this test binary: the umask is the process's).
// The one unsafe call: setting the umask, which has no safe wrapper in std.
#![allow(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use spark_cloud::hub::ScriptedHub;
use spark_cloud::{self as cloud, Config, system_rng};
use spark_protocol::crypto::keys::RsaPublicKey;

const SERVER_KEY: &str = include_str!("fixtures/server_key_1024.pem");
const DEVICE_KEY: &str = include_str!("fixtures/device_a.pub.pem");
const DEV: &str = "53ff6c065075535119511687";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn state_folders_are_0700_secrets_0600_and_tokens_stored_hashed_whatever_the_umask() {
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(0) };
    let root = std::env::temp_dir().join(format!("spark-cloud-modes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join("state");
    let config = Config {
        dir: dir.clone(),
        http: "127.0.0.1:0".parse().unwrap(),
        key_bits: 1024,
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("default_key.pem"), SERVER_KEY).unwrap();
    let hub = Arc::new(ScriptedHub::new());
    let c = cloud::open(&config, Arc::clone(&hub) as _).unwrap();
    let state = c.state().expect("the embedded store");
    state.create_user("joe", "pw", &mut system_rng()).unwrap();
    let (token, _) = state
        .issue_token("joe", "spark", None, &mut system_rng())
        .unwrap();
    let key = RsaPublicKey::from_pem(DEVICE_KEY).unwrap();
    state.provision(DEV, &key, Some("joe")).unwrap();

    for folder in ["core_keys", "users"] {
        assert_eq!(mode(&dir.join(folder)), 0o700, "{folder}");
    }
    for secret in ["users/joe.json", "core_keys/journal"] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
    }
    // A state directory the cloud creates itself (with its parents) is 0700 too.
    let fresh = root.join("fresh").join("nested");
    let fresh_config = Config {
        dir: fresh.clone(),
        ..config.clone()
    };
    drop(cloud::open(&fresh_config, Arc::clone(&hub) as _).unwrap());
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("default_key.pem")), 0o600);

    // The token is not in the user's file; its SHA-256 is, and it still authenticates after a restart.
    let text = std::fs::read_to_string(dir.join("users/joe.json")).unwrap();
    assert!(!text.contains(&token));
    assert!(text.contains(&cloud::state::token_digest(&token)));
    drop(c);
    let c = cloud::open(&config, Arc::clone(&hub) as _).unwrap();
    assert_eq!(
        c.state()
            .expect("the embedded store")
            .authenticate(&token)
            .unwrap()
            .0,
        "joe"
    );
    // The device's record file (written from the journal) holds its key: 0600 too.
    assert_eq!(mode(&dir.join(format!("core_keys/{DEV}.json"))), 0o600);

    // A user file of the older layout (plain tokens) is rewritten on load with digests only.
    let mut user: serde_json::Value = serde_json::from_str(&text).unwrap();
    let plain = "0123456789abcdef0123456789abcdef01234567";
    user["tokens"] = serde_json::json!([{"token": plain, "client": "spark", "expires_at": null}]);
    std::fs::write(
        dir.join("users/joe.json"),
        serde_json::to_vec(&user).unwrap(),
    )
    .unwrap();
    drop(c);
    let c = cloud::open(&config, hub as _).unwrap();
    assert_eq!(
        c.state()
            .expect("the embedded store")
            .authenticate(plain)
            .unwrap()
            .0,
        "joe"
    );
    let text = std::fs::read_to_string(dir.join("users/joe.json")).unwrap();
    assert!(!text.contains(plain), "{text}");
    assert_eq!(mode(&dir.join("users/joe.json")), 0o600);
    let _ = std::fs::remove_dir_all(&root);
}
