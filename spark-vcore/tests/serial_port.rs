//! `spark-vcore --serial`: the binary prints its Core's pseudo-terminal, which answers the listening-mode keys.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::termios::{OptionalActions, SpecialCodeIndex, tcgetattr, tcsetattr};

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_serial_port_answers_identify_and_mac() {
    let dir = tempfile::tempdir().unwrap();
    // A server key the Core never uses here (nothing listens on port 1).
    let key =
        spark_protocol::crypto::keys::RsaPrivateKey::generate(&mut rand::rng(), 1024).unwrap();
    let key_path = dir.path().join("server.pub.pem");
    std::fs::write(&key_path, key.public_key().to_spki_pem().unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spark-vcore"))
        .args([
            "--dir",
            "core",
            "--cloud",
            "127.0.0.1:1",
            "--reconnect",
            "30",
            "--serial",
            "--json",
        ])
        .arg("--server-key")
        .arg(&key_path)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let mut reader = BufReader::new(stdout);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    // Keep reading the Core's status lines, as a terminal would.
    std::thread::spawn(move || for _ in reader.lines() {});
    let line: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(line["event"], "serial", "{line}");
    let id = line["id"].as_str().unwrap().to_owned();
    let mut port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(line["path"].as_str().unwrap())
        .unwrap();
    let mut termios = tcgetattr(&port).unwrap();
    termios.make_raw();
    termios.special_codes[SpecialCodeIndex::VMIN] = 0;
    termios.special_codes[SpecialCodeIndex::VTIME] = 1;
    tcsetattr(&port, OptionalActions::Now, &termios).unwrap();
    let mut ask = |key: &[u8], lines: usize| {
        port.write_all(key).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut text = String::new();
        let mut buf = [0u8; 128];
        while text.matches("\r\n").count() < lines {
            assert!(Instant::now() < deadline, "no answer within 10 s: {text:?}");
            let n = port.read(&mut buf).unwrap();
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        text
    };
    assert_eq!(ask(b"i", 1), format!("Your core id is {id}\r\n"));
    let mac = ask(b"m", 2);
    assert!(
        mac.starts_with("Your core MAC address is\r\n08:00:28:"),
        "{mac:?}"
    );
    assert_eq!(
        &mac[mac.len() - 10..],
        format!("{}:{}:{}\r\n", &id[18..20], &id[20..22], &id[22..24])
    );
}
