//! `spark serial` against a virtual Core's USB serial port: spark-vcore's listening-mode console on a
//! pseudo-terminal (what `spark-vcore --serial` offers; its own tests run the binary), and `spark` talks to it as to
//! a real tty.
#![cfg(unix)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde_json::Value;
use spark_vcore::serial::pty::SerialPort;
use spark_vcore::serial::{Credentials, ListeningConsole, Security};

/// A virtual Core's USB serial port in listening mode: spark-vcore's console on a pseudo-terminal, served on a
/// thread of this test; `spark` opens the terminal as it opens a real Core's port.
struct Core {
    saved: Receiver<Credentials>,
    id: String,
    port: String,
}

impl Core {
    fn start() -> Core {
        let id = "53ff6c065075535119511687".to_owned();
        let mut bytes = [0u8; 12];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap();
        }
        let console = ListeningConsole::new(&id, ListeningConsole::mac_for(&bytes), "0.1.0");
        let port = SerialPort::open().expect("a pseudo-terminal");
        let path = port.path.display().to_string();
        let (tx, saved) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = port.serve(console, |c| {
                let _ = tx.send(c);
            });
        });
        Core {
            saved,
            id,
            port: path,
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
    let saved = core
        .saved
        .recv_timeout(Duration::from_secs(10))
        .expect("the Core saved credentials");
    assert_eq!(
        (saved.ssid.as_str(), saved.security, saved.password.as_str()),
        ("HomeNet", Security::Wpa2, "hunter2")
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
