//! The workspace's other tool binaries, for tests that run them beside `spark`, and the process plumbing those
//! tests share: free loopback ports, one-shot runs with stdin typed in, background processes whose stdout lines
//! arrive on a channel, and bounded waits for a line.

#![allow(unreachable_pub, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any one wait for a process may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The directory holding `spark`, where cargo also puts `spark-cloud` and `spark-vcore`, built (or found up to
/// date) here: `cargo test -p spark-cli` alone builds only `spark`.
pub fn binaries() -> PathBuf {
    let spark = Path::new(env!("CARGO_BIN_EXE_spark"));
    let dir = spark.parent().unwrap().to_path_buf();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", "spark-cloud", "-p", "spark-vcore", "--bins"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .env("CARGO_TARGET_DIR", dir.parent().unwrap())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "building spark-cloud and spark-vcore");
    dir
}

/// Background processes, stopped when the test ends.
pub struct Background(pub Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `program args` from `bin`, run in `dir` with `HOME=dir` and none of the caller's cloud settings.
pub fn command(bin: &Path, dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(bin.join(program));
    command
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("SPARK_API_URL")
        .env_remove("PARTICLE_ACCESS_TOKEN")
        .env_remove("SPARK_PASSWORD");
    command
}

/// Runs `program args` to its end with `stdin` typed in (see [`command`]).
pub fn run(bin: &Path, dir: &Path, program: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = command(bin, dir, program, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{stdin}").unwrap();
    child.wait_with_output().unwrap()
}

/// The run's stdout, after asserting it succeeded (its output in the message when not).
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Where a background process's stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stderr {
    /// The test's own stderr (seen when a test fails).
    Shown,
    /// A pipe the test reads once the process has ended (keep such a process's output short).
    Kept,
}

/// Starts `program args` in the background (see [`command`]); its stdout lines arrive on the returned channel.
pub fn start(
    bin: &Path,
    dir: &Path,
    program: &str,
    args: &[&str],
    stderr: Stderr,
) -> (Child, mpsc::Receiver<String>) {
    let mut child = command(bin, dir, program, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(match stderr {
            Stderr::Shown => Stdio::inherit(),
            Stderr::Kept => Stdio::piped(),
        })
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits up to [`PATIENCE`] for a line containing `needle`; the lines before it are passed over.
pub fn line_with(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {needle:?} in time"));
        if line.contains(needle) {
            return line;
        }
    }
}
