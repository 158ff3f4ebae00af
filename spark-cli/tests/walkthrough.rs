//! The root README's walkthrough, run as written: each line of its `sh` block in a shell, in an empty directory,
//! with the real `spark-cloud`, `spark-vcore` and `spark` binaries. Only the two loopback ports are swapped for free
//! ones (the machine may be running a cloud on the defaults), and the password is typed on stdin.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod tools;

use tools::{Background, binaries, free_port};

const PASSWORD: &str = "correct horse battery staple";

/// The lines of the README's walkthrough block, comments removed; `None` outside the workspace (a packaged crate
/// has no root README).
fn walkthrough() -> Option<Vec<String>> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).ok()?;
    let start = readme.find("<!-- walkthrough")?;
    let block = &readme[start..];
    let body = &block[block.find("```sh\n").expect("an sh block") + 6..];
    let body = &body[..body.find("```").expect("the block's end")];
    Some(
        body.lines()
            .map(|l| match l.find("  #") {
                Some(i) => l[..i].trim().to_owned(),
                None => l.trim().to_owned(),
            })
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

/// Starts `line` (without its `&`) and waits until its stdout shows `ready`.
fn start(shell: &mut Command, ready: &str) -> Child {
    let mut child = shell
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&ready) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the background command became ready");
    child
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let Some(lines) = walkthrough() else {
        eprintln!("no root README with a walkthrough here (a packaged crate): nothing to run");
        return;
    };
    assert!(lines.len() <= 6, "six commands or fewer: {lines:?}");
    let bin = binaries();
    let dir = tempfile::tempdir().unwrap();
    let (http, device) = (free_port(), free_port());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut background = Background(Vec::new());
    let mut last = String::new();
    for line in &lines {
        let line = line
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
            .replace("127.0.0.1:5683", &format!("127.0.0.1:{device}"));
        let mut shell = Command::new("sh");
        shell
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("PATH", &path)
            .env_remove("SPARK_API_URL")
            .env_remove("PARTICLE_ACCESS_TOKEN")
            .env_remove("SPARK_PASSWORD");
        if let Some(command) = line.strip_suffix('&') {
            shell.args(["-c", &format!("exec {}", command.trim())]);
            let ready = if command.contains("spark-cloud") {
                "\"http\""
            } else {
                "connected"
            };
            background.0.push(start(&mut shell, ready));
            continue;
        }
        let mut child = shell
            .args(["-c", &line])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        last = String::from_utf8(out.stdout).unwrap();
    }
    // The last command called Tinker's digitalread on the provisioned Core: D7 reads low.
    assert_eq!(last.trim(), "0");
    // The logged-in user owns the Core.
    let id = std::fs::read_to_string(dir.path().join("core/core-000/core.json")).unwrap();
    let listed = Command::new(bin.join("spark"))
        .args(["list", "--json"])
        .env("HOME", dir.path())
        .env_remove("SPARK_API_URL")
        .env_remove("PARTICLE_ACCESS_TOKEN")
        .output()
        .unwrap();
    let devices: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let device = &devices[0];
    assert!(id.contains(device["id"].as_str().unwrap()), "{devices}");
    assert_eq!(device["connected"], true);
}
