//! The response to a compromise through the real processes: `spark list` against a `spark-cloud` whose server key
//! was rotated (`spark-cloud keys rotate`, then `keys retire`, each applied to the running cloud on `SIGHUP`) names
//! the `spark-vcore` Core still connected on the old key; `spark token revoke --all` ends an open `spark subscribe`
//! stream and every later call made with the old token. Real processes and sockets only; every wait is bounded.
#![cfg(unix)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod tools;

use tools::{Background, PATIENCE, Stderr, free_port, line_with, ok, run, start};

const USER: &str = "joe@example.com";
const PASSWORD: &str = "correct horse battery staple";
/// How `spark` reports the cloud's `401` for a revoked token.
const REFUSED: &str = "access denied: invalid_token: The access token provided is invalid.";

/// A running `spark-cloud` on loopback with the user `joe@example.com`, and `spark` logged in to it.
struct Cloud {
    bin: std::path::PathBuf,
    home: tempfile::TempDir,
    pid: u32,
    device_addr: String,
    background: Background,
}

impl Cloud {
    fn start() -> Cloud {
        let bin = tools::binaries();
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
            "spark-cloud user add",
        );
        let http_addr = format!("127.0.0.1:{}", free_port());
        let device_addr = format!("127.0.0.1:{}", free_port());
        let (cloud, cloud_out) = start(
            &bin,
            dir,
            "spark-cloud",
            &[
                "--dir",
                "cloud",
                "--http",
                &http_addr,
                "--device",
                &device_addr,
            ],
            Stderr::Shown,
        );
        let pid = cloud.id();
        let background = Background(vec![cloud]);
        line_with(&cloud_out, "\"http\"");
        let api_url = format!("http://{http_addr}");
        ok(
            run(
                &bin,
                dir,
                "spark",
                &["login", "--api-url", &api_url, "-u", USER],
                PASSWORD,
            ),
            "spark login",
        );
        Cloud {
            bin,
            home,
            pid,
            device_addr,
            background,
        }
    }

    fn dir(&self) -> &Path {
        self.home.path()
    }

    fn run(&self, program: &str, args: &[&str], stdin: &str) -> Output {
        run(&self.bin, self.dir(), program, args, stdin)
    }

    fn spark(&self, args: &[&str]) -> String {
        ok(self.run("spark", args, ""), &format!("spark {args:?}"))
    }

    /// Runs `spark-cloud keys ACTION` on the cloud's directory, then tells the running cloud (`SIGHUP`).
    fn keys(&self, action: &str) {
        ok(
            self.run("spark-cloud", &["--dir", "cloud", "keys", action], ""),
            &format!("spark-cloud keys {action}"),
        );
        let hup = Command::new("kill")
            .args(["-HUP", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(hup.success(), "kill -HUP");
    }

    /// `spark list` until a line names `id` and ends with `ending`; returns that line.
    fn listed(&self, id: &str, ending: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let listed = self.spark(&["list"]);
            if let Some(line) = listed.lines().find(|l| l.contains(id))
                && line.ends_with(ending)
            {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no line for {id} ending {ending:?}: {listed}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn list_names_the_core_still_on_the_previous_key_then_on_the_retired_one() {
    let mut cloud = Cloud::start();
    let id = ok(
        cloud.run("spark-vcore", &["--dir", "core", "--print-id"], ""),
        "print-id",
    )
    .trim()
    .to_owned();
    cloud.spark(&["keys", "send", &id, "core/core-000/core_private_key.der"]);
    let (core, core_out) = start(
        &cloud.bin,
        cloud.dir(),
        "spark-vcore",
        &[
            "--dir",
            "core",
            "--server-key",
            "cloud/default_key.pub.pem",
            "--cloud",
            &cloud.device_addr.clone(),
            "--json",
        ],
        Stderr::Shown,
    );
    cloud.background.0.push(core);
    line_with(&core_out, "\"connected\"");

    // Before any rotation: online, no word on keys.
    let line = cloud.listed(&id, "is online");
    assert!(line.contains(&format!("[{id}] (Core) is online")), "{line}");
    let listed: Value = serde_json::from_str(&cloud.spark(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["server_key"], "current", "{listed}");

    // Rotated: the Core stays connected, on what is now the previous key.
    cloud.keys("rotate");
    let line = cloud.listed(
        &id,
        "is online, still on the previous server key (move it before the key is retired)",
    );
    assert!(line.contains(&format!("[{id}]")), "{line}");
    let listed: Value = serde_json::from_str(&cloud.spark(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["server_key"], "previous", "{listed}");
    assert_eq!(listed[0]["connected"], true, "{listed}");

    // Retired: still connected, on a key the cloud no longer holds.
    cloud.keys("retire");
    cloud.listed(
        &id,
        "is online, on a retired server key (it cannot reconnect until moved)",
    );
    let listed: Value = serde_json::from_str(&cloud.spark(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["server_key"], "retired", "{listed}");
}

#[test]
fn revoke_all_ends_an_open_subscribe_stream_and_the_old_token() {
    let cloud = Cloud::start();
    let (mut subscriber, events) = start(
        &cloud.bin,
        cloud.dir(),
        "spark",
        &["subscribe", "probe"],
        Stderr::Kept,
    );

    // The stream is open once an event published through the API reaches it.
    let deadline = Instant::now() + PATIENCE;
    let heard = loop {
        cloud.spark(&["publish", "probe/open", "yes"]);
        if let Ok(line) = events.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(Instant::now() < deadline, "the stream never delivered");
    };
    let heard: Value = serde_json::from_str(&heard).unwrap();
    assert_eq!(heard["name"], "probe/open");

    let revoked = cloud.spark(&["token", "revoke", "--all", "-p", PASSWORD]);
    assert_eq!(revoked.trim(), "revoked all 1 token(s) of the account");

    // The subscriber's stream ends at once: the process stops without being told to.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = subscriber.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "spark subscribe still runs after its token was revoked"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut subscriber.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "stderr: {stderr}");
    assert!(stderr.contains(REFUSED), "{stderr}");
    // Nothing reached it after the revocation (only repeats of the probe before it).
    for line in events.try_iter() {
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["name"], "probe/open", "{line}");
    }

    // Every later call with the old token is refused, as one line and a failure.
    for args in [
        &["list"][..],
        &["publish", "probe/after", "no"][..],
        &["subscribe", "probe", "--count", "1"][..],
    ] {
        let out = cloud.run("spark", args, "");
        assert!(!out.status.success(), "spark {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("Subscribing to"))
            .collect();
        assert_eq!(lines.len(), 1, "spark {args:?}: {err}");
        assert_eq!(lines[0], format!("spark: {REFUSED}"), "spark {args:?}");
    }
}
