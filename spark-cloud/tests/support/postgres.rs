//! A real PostgreSQL server for the tests: `initdb` in a temporary directory, `postgres` on a free loopback port
//! (run as `nobody` when the tests run as root: postgres refuses root), a database per test, stopped on drop
//! (SIGINT: a fast shutdown) with no process left behind.
//!
//! The programs are found as `build.rs` finds them: on `PATH`, then in Debian's `/usr/lib/postgresql/*/bin`,
//! newest version first.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where `program` is: the first match on `PATH`, then Debian's PostgreSQL folders (newest version first).
pub fn find(program: &str) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .collect()
        })
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("bin").join(program))
                .collect()
        })
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    on_path.into_iter().chain(debian).find(|c| c.is_file())
}

/// A running PostgreSQL server.
pub struct Postgres {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    databases: AtomicUsize,
    user: String,
}

fn is_root() -> bool {
    // The effective uid, from /proc (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `nobody`'s uid and gid on Debian.
const NOBODY: u32 = 65_534;

/// The program, run as `nobody` when the tests run as root (the process itself: no wrapper between the test and
/// the server, so that the signal on drop reaches postgres).
fn as_server_user(program: &Path, root: bool) -> Command {
    let mut c = Command::new(program);
    if root {
        use std::os::unix::process::CommandExt;
        c.uid(NOBODY).gid(NOBODY);
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Postgres {
    /// Starts a server without `fsync` (tests); panics (failing the test) when the programs are missing or it does
    /// not come up.
    pub fn start() -> Postgres {
        Postgres::start_with_fsync(false)
    }

    /// Whether `postgres` and `initdb` are installed.
    pub fn installed() -> bool {
        find("postgres").is_some() && find("initdb").is_some()
    }

    /// Starts a server, durable (`fsync` on: what a benchmark compares) or not.
    pub fn start_with_fsync(fsync: bool) -> Postgres {
        let initdb = find("initdb").expect("initdb (Debian postgresql) is not installed");
        let postgres = find("postgres").expect("postgres (Debian postgresql) is not installed");
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("spark-pg-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        if root {
            let status = Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the server's folder to nobody");
        }
        let user = "spark";
        let out = as_server_user(&initdb, root)
            .arg("-D")
            .arg(&data)
            .args(["-U", user, "--auth=trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = as_server_user(&postgres, root)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", if fsync { "fsync=on" } else { "fsync=off" }])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Postgres {
            child,
            port,
            _dir: dir,
            databases: AtomicUsize::new(0),
            user: user.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The URL of the server's `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://{}@127.0.0.1:{}/postgres", self.user, self.port)
    }

    /// Creates a fresh database and returns its URL.
    pub async fn database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("spark_test_{}_{n}", std::process::id());
        let deadline = Instant::now() + Duration::from_secs(60);
        let (client, connection) = loop {
            match tokio_postgres::connect(&self.admin_url(), tokio_postgres::NoTls).await {
                Ok(c) => break c,
                // Accepting TCP before it accepts logins: retry while it finishes starting.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect to the test server: {e}"),
            }
        };
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        format!("postgres://{}@127.0.0.1:{}/{name}", self.user, self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (ends sessions, stops at once). Then wait, so no process outlives
        // the test.
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}
