//! The UDP phase at a small scale: 200 UDP devices over 2 shard processes against a `spark-cloud` it starts. Every
//! device must connect, the cloud must count them all, and every call must be answered by a device (the figures
//! mean nothing at this size).

use std::path::PathBuf;
use std::process::Command;

/// The `spark-cloud` binary beside this package's binary, built first when it is not there (a `cargo test -p
/// spark-load` alone does not build other packages' binaries).
fn cloud_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_spark-load")).with_file_name("spark-cloud");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "spark-cloud",
                "--bin",
                "spark-cloud",
            ])
            .status()
            .expect("cargo");
        assert!(status.success(), "building spark-cloud");
    }
    bin
}

#[test]
fn two_hundred_udp_devices_over_two_shards_connect_and_answer_every_call() {
    let out = Command::new(env!("CARGO_BIN_EXE_spark-load"))
        .args([
            "--udp",
            "200",
            "--udp-shards",
            "2",
            "--calls",
            "100",
            "--json",
        ])
        .arg("--cloud-bin")
        .arg(cloud_bin())
        .output()
        .expect("spark-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "spark-load failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert_eq!(report["faults"], serde_json::json!([]));
    assert_eq!(report["udp_setup"]["shards"], 2);
    assert_eq!(report["udp_handshakes"]["count"], 200, "{report}");
    assert_eq!(
        report["udp_rss"]["connected"], 200,
        "the cloud counts every device"
    );
    assert_eq!(report["udp_calls"]["failed"], 0);
    // 100 timed calls after 100 warm-up calls, each answered by a device in a shard, over all 200 devices.
    assert_eq!(report["udp_calls"]["count"], 100);
    assert_eq!(report["udp_calls"]["answered_by_devices"], 200);
    assert!(report["udp_call_rtt_p99_ms"]["measured"].as_f64().unwrap() > 0.0);
}
