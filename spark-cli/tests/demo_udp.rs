//! `spark demo --udp N` run as a user runs it: the built binary, a small fleet and two UDP devices, `--json`. The
//! UDP devices are provisioned with their P-256 keys, come online through the cloud's DTLS listener, answer a Tinker
//! call and a variable read through the REST API, and calls to one of them are timed beside a TCP Core's. Without
//! `--udp` the report has no UDP section.

use std::process::Command;

use serde_json::Value;

fn demo(extra: &[&str]) -> Value {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spark"))
        .args([
            "demo",
            "--json",
            "--count",
            "3",
            "--unreliable",
            "0",
            "--patched",
            "1",
        ])
        .args(["--out"])
        .arg(empty.path().join("usb"))
        .args(extra)
        .env_remove("SPARK_API_URL")
        .env_remove("PARTICLE_ACCESS_TOKEN")
        .env("SPARK_VECTORS", empty.path())
        .current_dir(empty.path())
        .output()
        .expect("the spark binary runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "stderr: {stderr}\nstdout: {stdout}");
    serde_json::from_str(&stdout).expect("one JSON document")
}

#[test]
fn udp_devices_join_the_demo_and_answer_through_the_api() {
    let report = demo(&["--udp", "2"]);
    let udp = &report["udp"];
    let devices = udp["devices"].as_array().expect("UDP devices");
    assert_eq!(devices.len(), 2);
    let fleet: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["device"].as_str())
        .collect();
    for d in devices {
        let id = d["device"].as_str().unwrap();
        assert_eq!(id.len(), 24);
        assert!(!fleet.contains(&id), "a UDP device is not one of the Cores");
        assert_eq!(d["online"], true, "{d}");
        assert_eq!(d["call_result"], 1, "{d}");
        assert_eq!(d["temperature"], 21.5, "{d}");
        assert!(d["error"].is_null(), "{d}");
    }
    assert!(udp["listen"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(
        udp["udp_call_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{udp}"
    );
    assert!(
        udp["tcp_call_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{udp}"
    );
    assert!(fleet.contains(&udp["tcp_device"].as_str().unwrap()));
}

#[test]
fn without_udp_the_report_has_no_udp_section() {
    let report = demo(&[]);
    assert!(report.get("udp").is_none(), "{report}");
    assert_eq!(report["rows"].as_array().unwrap().len(), 3);
}
