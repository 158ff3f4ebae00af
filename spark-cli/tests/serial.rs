//! `spark serial` against a virtual Core's USB serial port: `spark-vcore --serial` offers the Core's listening-mode
//! console on a pseudo-terminal, and `spark` talks to it as to a real tty.
#![cfg(unix)]

mod tools;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde_json::Value;

/// A running virtual Core with its serial port.
struct Core {
    child: Child,
    lines: Receiver<String>,
    id: String,
    port: String,
    _dir: tempfile::TempDir,
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Core {
    fn start() -> Core {
        let bin = tools::binaries();
        let dir = tempfile::tempdir().unwrap();
        // Any RSA public key will do: the Core never reaches a cloud here.
        let keys = Command::new(bin.join("spark"))
            .args(["keys", "new", "server", "--json"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(keys.status.success());
        let mut child = Command::new(bin.join("spark-vcore"))
            .args([
                "--dir",
                "core",
                "--server-key",
                "server.pub.pem",
                "--cloud",
                "127.0.0.1:1",
            ])
            .args(["--reconnect", "30", "--serial", "--json"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the serial line");
        let v: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["event"], "serial", "{v}");
        Core {
            child,
            lines,
            id: v["id"].as_str().unwrap().to_owned(),
            port: v["path"].as_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    fn spark(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spark"))
            .args(args)
            .env("SPARK_SERIAL_PORTS", &self.port)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "spark {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.spark(args, "").stdout).unwrap()
    }
}

#[test]
fn serial_commands_talk_to_a_core_in_listening_mode() {
    let core = Core::start();
    let listed = core.json(&["serial", "list", "--json"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == core.port.as_str())
    );
    // The one port is picked without --port.
    let r = core.json(&["serial", "identify", "--json"]);
    assert_eq!(r["id"], core.id.as_str());
    let text = String::from_utf8(
        core.spark(&["serial", "identify", "--port", &core.port], "")
            .stdout,
    )
    .unwrap();
    assert_eq!(text.trim(), format!("Your device id is {}", core.id));
    let r = core.json(&["serial", "mac", "--json"]);
    assert_eq!(
        r["mac"],
        format!(
            "08:00:28:{}:{}:{}",
            &core.id[18..20],
            &core.id[20..22],
            &core.id[22..24]
        )
    );
    // Wi-Fi credentials, the password on stdin: the Core reports what it saved.
    let out = core.spark(
        &[
            "serial",
            "wifi",
            "--ssid",
            "HomeNet",
            "--security",
            "wpa2",
            "--json",
        ],
        "hunter2\n",
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ssid"], "HomeNet");
    let saved = loop {
        let line = core
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the Core's wifi line");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "wifi" {
            break v;
        }
    };
    assert_eq!(
        (saved["ssid"].as_str(), saved["security"].as_str()),
        (Some("HomeNet"), Some("WPA2"))
    );
    // The monitor passes keys through and prints what comes back.
    let out = core.spark(&["serial", "monitor", "--lines", "1"], "v");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("system firmware version: "), "{text}");
}

#[test]
fn a_port_that_does_not_answer_is_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(["serial", "identify", "--port", "/nonexistent/tty"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("spark: cannot open /nonexistent/tty"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(["serial", "identify"])
        .env_remove("SPARK_SERIAL_PORTS")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    // Unless a real Core is plugged in, there is nothing to pick.
    if !err.is_empty() {
        assert!(err.contains("listening mode"), "{err}");
    }
}
