//! `spark keys doctor --ec` through real processes: `spark-cloud` with its UDP listener, `spark-vcore --udp` as the
//! Electron, and `spark` writing keys to the simulated Electron's DCT over DFU. The device runs with the key its DCT
//! holds (read back with `spark keys save`); after the doctor the old key's DTLS handshake is refused by the cloud,
//! and the new one is let in.

mod tools;

use std::path::Path;
use std::process::Output;
use std::sync::mpsc;
use std::time::Instant;

use spark_protocol::dtls::PrivateKey;
use tools::{Background, PATIENCE, Stderr, binaries, ok, run, start};

const USER: &str = "joe@example.com";
const PASSWORD: &str = "doctor-ec-password";

/// `spark args` in `dir` (its home, holding the login) against the simulated Electron in `dir/electron.sim`.
fn spark(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    tools::command(bin, dir, "spark", args)
        .env("SPARK_DFU_SIM", dir.join("electron.sim"))
        .env("SPARK_DFU_SIM_PLATFORM", "electron")
        .env_remove("SPARK_DFU_SIM_FAULT")
        .env_remove("SPARK_DFU_SIM_MODE")
        .output()
        .unwrap()
}

/// Gives the virtual device the key the simulated Electron's DCT holds (`spark keys save`, then the SEC1 PEM
/// spark-vcore reads).
fn device_runs_dct_key(bin: &Path, dir: &Path, device_dir: &Path) {
    let saved = dir.join("dct_key.der");
    let _ = std::fs::remove_file(&saved);
    ok(
        spark(bin, dir, &["keys", "save", saved.to_str().unwrap()]),
        "keys save",
    );
    let key = PrivateKey::from_der(&std::fs::read(&saved).unwrap()).unwrap();
    std::fs::write(
        device_dir.join("udp_private_key.pem"),
        spark_cloud::udp::keys::private_key_pem(&key),
    )
    .unwrap();
}

/// The device's status lines until one of `wanted` (`connected` or `disconnected`); the statuses seen before it.
fn until_status(rx: &mpsc::Receiver<String>, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {wanted} status in time; saw {seen:?}"));
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let status = v["status"].as_str().unwrap_or_default().to_owned();
        if status == wanted {
            return seen;
        }
        seen.push(status);
    }
}

fn run_device(bin: &Path, dir: &Path, udp: &str) -> (Background, mpsc::Receiver<String>) {
    let (child, rx) = start(
        bin,
        dir,
        "spark-vcore",
        &[
            "--udp",
            "--cloud",
            udp,
            "--server-key",
            "cloud/udp_key.pub.pem",
            "--dir",
            "electrons",
            "--reconnect",
            "1",
            "--json",
        ],
        Stderr::Shown,
    );
    (Background(vec![child]), rx)
}

#[test]
fn after_keys_doctor_ec_the_old_key_is_refused_and_the_new_one_connects() {
    let bin = binaries();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    ok(
        run(
            &bin,
            dir,
            "spark-cloud",
            &["--dir", "cloud", "user", "add", USER],
            PASSWORD,
        ),
        "user add",
    );
    let (cloud, cloud_out) = start(
        &bin,
        dir,
        "spark-cloud",
        &[
            "--dir",
            "cloud",
            "--http",
            "127.0.0.1:0",
            "--device",
            "127.0.0.1:0",
            "--udp-listen",
            "127.0.0.1:0",
        ],
        Stderr::Shown,
    );
    let _cloud = Background(vec![cloud]);
    let ready: serde_json::Value =
        serde_json::from_str(&tools::line_with(&cloud_out, "\"http\"")).unwrap();
    let http = ready["http"].as_str().unwrap().to_owned();
    let udp = ready["udp"].as_str().unwrap().to_owned();
    ok(
        run(
            &bin,
            dir,
            "spark",
            &["login", "--api-url", &format!("http://{http}"), "-u", USER],
            PASSWORD,
        ),
        "login",
    );

    // The Electron: its id and first P-256 key, loaded into its DCT over DFU and provisioned with the cloud.
    let id = ok(
        run(
            &bin,
            dir,
            "spark-vcore",
            &["--udp", "--dir", "electrons", "--print-id"],
            "",
        ),
        "print-id",
    )
    .trim()
    .to_owned();
    let device_dir = dir.join("electrons/core-000");
    let old_pem = device_dir.join("udp_private_key.pem");
    ok(
        spark(
            &bin,
            dir,
            &["keys", "load", old_pem.to_str().unwrap(), "--no-backup"],
        ),
        "keys load",
    );
    ok(
        spark(
            &bin,
            dir,
            &[
                "keys",
                "send",
                &id,
                device_dir.join("udp_public_key.pem").to_str().unwrap(),
            ],
        ),
        "keys send",
    );
    device_runs_dct_key(&bin, dir, &device_dir);
    let old_key = std::fs::read_to_string(&old_pem).unwrap();
    {
        let (_device, rx) = run_device(&bin, dir, &udp);
        until_status(&rx, "connected");
    }

    // The doctor: a new key in the DCT (the old one saved), its public half sent to the cloud as ecc.
    let report: serde_json::Value = serde_json::from_str(&ok(
        spark(&bin, dir, &["keys", "doctor", &id, "--ec", "--json"]),
        "keys doctor --ec",
    ))
    .unwrap();
    assert_eq!(report["algorithm"], "ecc");
    assert_eq!(report["backup"], format!("{id}_old.der"));

    // The device still holding the old key is refused: it never gets past the handshake.
    {
        let (_device, rx) = run_device(&bin, dir, &udp);
        let before = until_status(&rx, "disconnected");
        assert!(!before.iter().any(|s| s == "connected"), "{before:?}");
        let again = until_status(&rx, "disconnected");
        assert!(!again.iter().any(|s| s == "connected"), "{again:?}");
    }

    // Running the key the DCT now holds, it connects.
    device_runs_dct_key(&bin, dir, &device_dir);
    assert_ne!(std::fs::read_to_string(&old_pem).unwrap(), old_key);
    let (_device, rx) = run_device(&bin, dir, &udp);
    until_status(&rx, "connected");
}
