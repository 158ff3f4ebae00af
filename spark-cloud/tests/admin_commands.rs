//! `spark-cloud keys` and `spark-cloud tokens` run as an operator runs them, on the state directory of a running
//! `spark-cloud`, which applies them on `SIGHUP`.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn admin(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
        .args(["--dir", dir.to_str().unwrap(), "--key-bits", "1024"])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The next stderr line of the running cloud that contains `needle`.
fn line_with(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn keys_and_tokens_commands_reach_a_running_cloud_on_sighup() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("cloud");
    // Nothing to retire before a rotation.
    let out = admin(&dir, &["keys", "show"]);
    assert!(!out.status.success(), "no key yet");
    let mut cloud = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
        .args(["--dir", dir.to_str().unwrap(), "--key-bits", "1024"])
        .args(["--http", "127.0.0.1:0", "--device", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(cloud.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains("\"device\""), "{ready}");
    let (tx, rx) = mpsc::channel();
    let err = cloud.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let hup = || {
        let sent = Command::new("kill")
            .args(["-HUP", &cloud.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };

    let before = admin(&dir, &["keys", "show"]);
    assert!(before.status.success(), "{}", stderr(&before));
    let out = admin(&dir, &["keys", "retire"]);
    assert!(
        stderr(&out).contains("no previous server key"),
        "{}",
        stderr(&out)
    );
    let out = admin(&dir, &["keys", "rotate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = admin(&dir, &["keys", "rotate"]);
    assert!(stderr(&out).contains("retire it first"), "{}", stderr(&out));
    let previous = admin(&dir, &["keys", "show", "--previous"]);
    assert_eq!(
        previous.stdout, before.stdout,
        "the old key is kept as the previous one"
    );
    let current = admin(&dir, &["keys", "show"]);
    assert_ne!(current.stdout, before.stdout);
    hup();
    line_with(&rx, "migration window open");

    let out = admin(&dir, &["tokens", "invalidate-before", "2014-04-08"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = admin(&dir, &["tokens", "invalidate-before", "2014-04-31"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(dir.join("tokens_not_before")).unwrap(),
        "1396915200\n"
    );

    let out = admin(&dir, &["keys", "retire"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.join("previous_key.pem").exists());
    hup();
    line_with(&rx, "one key");
    cloud.kill().unwrap();
    cloud.wait().unwrap();
}
