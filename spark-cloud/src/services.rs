//! The outside programs a cluster runs on, PostgreSQL and `nats-server`, started on this machine for a test or a
//! demo: found on disk, started on a free loopback port, waited for until they accept connections, and stopped
//! (with no process left behind) when dropped.
//!
//! This is for throwaway services: PostgreSQL gets a fresh `initdb` in a temporary folder with `trust`
//! authentication, and both listen on `127.0.0.1` only. A production cluster points `--store` and `--bus` at
//! servers run as such.
//!
//! Where the programs are looked for ([`find`]): the folders in [`SEARCH_PATH_VAR`] (`SPARK_SERVICES_PATH`, a
//! `PATH`-style list) and nowhere else when it is set; otherwise `PATH`, then Debian's
//! `/usr/lib/postgresql/<version>/bin` (newest version first: the `postgresql` package does not put its server on
//! `PATH`), then `/usr/sbin` (Debian's `nats-server`).
//!
//! ```no_run
//! use spark_cloud::services::{NatsServer, Postgres};
//!
//! let pg = Postgres::start(false)?; // fsync off: a throwaway database
//! let nats = NatsServer::start(None)?;
//! println!("spark-cloud --store {} --bus {}", pg.url("postgres"), nats.url());
//! # Ok::<(), spark_cloud::services::ServiceError>(())
//! ```

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that, when set, is the only place programs are looked for (a `PATH`-style list).
pub const SEARCH_PATH_VAR: &str = "SPARK_SERVICES_PATH";

/// How long a service has to accept connections after it started.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A program this module starts, and the Debian package that installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Program {
    /// PostgreSQL's server.
    Postgres,
    /// PostgreSQL's `initdb`, which makes a new data folder.
    Initdb,
    /// The NATS server.
    NatsServer,
}

impl Program {
    /// Every program, in the order a cluster needs them.
    pub const ALL: [Program; 3] = [Program::Postgres, Program::Initdb, Program::NatsServer];

    /// The file name.
    pub fn name(self) -> &'static str {
        match self {
            Program::Postgres => "postgres",
            Program::Initdb => "initdb",
            Program::NatsServer => "nats-server",
        }
    }

    /// The Debian package that installs it.
    pub fn debian_package(self) -> &'static str {
        match self {
            Program::Postgres | Program::Initdb => "postgresql",
            Program::NatsServer => "nats-server",
        }
    }

    /// Where it is, or `None` when it is not installed (see the [module docs](self) for where it is looked for).
    pub fn find(self) -> Option<PathBuf> {
        find(self.name())
    }
}

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Programs are not installed.
    #[error("{} not installed (Debian: apt-get install {})", names(.0), packages(.0))]
    Missing(Vec<Program>),
    /// The program ran but the service did not come up.
    #[error("{program}: {reason}")]
    Start {
        /// The program.
        program: &'static str,
        /// What went wrong.
        reason: String,
    },
}

fn names(programs: &[Program]) -> String {
    let names: Vec<&str> = programs.iter().map(|p| p.name()).collect();
    match names.as_slice() {
        [one] => format!("{one} is"),
        _ => format!("{} are", names.join(", ")),
    }
}

fn packages(programs: &[Program]) -> String {
    let mut packages: Vec<&str> = programs.iter().map(|p| p.debian_package()).collect();
    packages.dedup();
    packages.join(" ")
}

/// The programs of `wanted` that are not installed; `Ok` when every one is.
pub fn check_installed(wanted: &[Program]) -> Result<(), ServiceError> {
    let missing: Vec<Program> = wanted
        .iter()
        .copied()
        .filter(|p| p.find().is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Missing(missing))
    }
}

/// Where `program` is: in [`SEARCH_PATH_VAR`]'s folders when it is set, else on `PATH`, in Debian's PostgreSQL
/// folders (newest version first) and in `/usr/sbin`.
pub fn find(program: &str) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os(SEARCH_PATH_VAR) {
        Some(only) => std::env::split_paths(&only).collect(),
        None => {
            let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect())
                .unwrap_or_default();
            let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .map(|versions| versions.flatten().map(|v| v.path().join("bin")).collect())
                .unwrap_or_default();
            // Version folders are numbers ("15", "16"): newest first, compared as numbers.
            debian.sort_by_key(|d| {
                d.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            });
            debian.reverse();
            dirs.extend(debian);
            dirs.push(PathBuf::from("/usr/sbin"));
            dirs
        }
    };
    candidates
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn start_error(program: Program, reason: impl std::fmt::Display) -> ServiceError {
    ServiceError::Start {
        program: program.name(),
        reason: reason.to_string(),
    }
}

/// A loopback port the kernel just handed out and took back: free unless another process takes it in between.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `ready` holds, or `child` exits, or [`START_TIMEOUT`] passes.
fn wait_ready(
    program: Program,
    child: &mut Child,
    mut ready: impl FnMut() -> bool,
) -> Result<(), ServiceError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(start_error(program, format!("exited at start ({status})")));
        }
        if Instant::now() >= deadline {
            return Err(start_error(
                program,
                format!(
                    "did not accept connections within {} s",
                    START_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Whether this process runs as root (PostgreSQL refuses to).
#[cfg(unix)]
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

/// `nobody`'s uid and gid on Debian: who PostgreSQL runs as when this process is root.
const NOBODY: u32 = 65_534;

/// `program`, run as `nobody` when this process is root. The server is the child itself (no `su` in between), so
/// that the signal on drop reaches it.
fn command_as_server_user(program: &Path, root: bool) -> Command {
    let mut command = Command::new(program);
    #[cfg(unix)]
    if root {
        use std::os::unix::process::CommandExt;
        command.uid(NOBODY).gid(NOBODY);
    }
    #[cfg(not(unix))]
    let _ = root;
    command
}

/// A PostgreSQL server in a temporary folder, on `127.0.0.1`, that anyone on this machine may log in to as
/// [`Postgres::USER`] without a password. Stopped (a fast shutdown, then waited for) and its folder deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    port: u16,
    folder: tempfile::TempDir,
}

impl Postgres {
    /// The database superuser `initdb` makes.
    pub const USER: &'static str = "spark";

    /// Runs `initdb` in a new temporary folder, starts `postgres` on a free loopback port (as `nobody` when this
    /// process is root) and waits until it accepts logins. `fsync` off suits tests and demos; on, it is durable.
    pub fn start(fsync: bool) -> Result<Postgres, ServiceError> {
        check_installed(&[Program::Postgres, Program::Initdb])?;
        let initdb = Program::Initdb
            .find()
            .ok_or(ServiceError::Missing(vec![Program::Initdb]))?;
        let postgres = Program::Postgres
            .find()
            .ok_or(ServiceError::Missing(vec![Program::Postgres]))?;
        let root = is_root();
        let folder = tempfile::Builder::new()
            .prefix("spark-pg-")
            .tempdir()
            .map_err(|e| start_error(Program::Initdb, e))?;
        #[cfg(unix)]
        if root {
            std::os::unix::fs::chown(folder.path(), Some(NOBODY), Some(NOBODY))
                .map_err(|e| start_error(Program::Initdb, format!("chown to nobody: {e}")))?;
        }
        let data = folder.path().join("data");
        let out = command_as_server_user(&initdb, root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                Postgres::USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| start_error(Program::Initdb, e))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(start_error(Program::Initdb, why.trim()));
        }
        let port = free_port().map_err(|e| start_error(Program::Postgres, e))?;
        let child = command_as_server_user(&postgres, root)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(folder.path())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", if fsync { "fsync=on" } else { "fsync=off" }])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| start_error(Program::Postgres, e))?;
        let mut server = Postgres {
            child,
            port,
            folder,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Accepting TCP comes before accepting logins; `postmaster.pid` says `ready` once logins are accepted.
        let pid_file = data.join("postmaster.pid");
        wait_ready(Program::Postgres, &mut server.child, || {
            accepts(addr)
                && std::fs::read_to_string(&pid_file)
                    .is_ok_and(|s| s.lines().any(|l| l.trim() == "ready"))
        })?;
        Ok(server)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on it, for `--store` (`postgres` exists from the start).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{database}",
            Postgres::USER,
            self.port
        )
    }

    /// The temporary folder that holds its data.
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: sessions end, the server stops at once. Then wait, so that no
        // process outlives this value; SIGKILL if it has not stopped within 20 s.
        #[cfg(unix)]
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
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

/// A `nats-server` on a free loopback port, without a monitoring port. Killed and waited for on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    addr: SocketAddr,
    _config: Option<tempfile::NamedTempFile>,
}

impl NatsServer {
    /// Starts one and waits until it accepts connections. `max_payload` caps a message's bytes (the server's
    /// default is 1 MiB).
    pub fn start(max_payload: Option<usize>) -> Result<NatsServer, ServiceError> {
        check_installed(&[Program::NatsServer])?;
        let program = Program::NatsServer
            .find()
            .ok_or(ServiceError::Missing(vec![Program::NatsServer]))?;
        let port = free_port().map_err(|e| start_error(Program::NatsServer, e))?;
        let mut command = Command::new(program);
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        // The command line has no flag for the payload limit; a configuration file does.
        let config = match max_payload {
            Some(bytes) => {
                let file = tempfile::NamedTempFile::new()
                    .map_err(|e| start_error(Program::NatsServer, e))?;
                std::fs::write(file.path(), format!("max_payload: {bytes}\n"))
                    .map_err(|e| start_error(Program::NatsServer, e))?;
                command.arg("-c").arg(file.path());
                Some(file)
            }
            None => None,
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| start_error(Program::NatsServer, e))?;
        let mut server = NatsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _config: config,
        };
        let addr = server.addr;
        wait_ready(Program::NatsServer, &mut server.child, || accepts(addr))?;
        Ok(server)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL, `nats://127.0.0.1:PORT`, for `--bus`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_message_names_each_program_and_its_package_once() {
        let all = ServiceError::Missing(Program::ALL.to_vec()).to_string();
        assert_eq!(
            all,
            "postgres, initdb, nats-server are not installed (Debian: apt-get install postgresql nats-server)"
        );
        let one = ServiceError::Missing(vec![Program::NatsServer]).to_string();
        assert_eq!(
            one,
            "nats-server is not installed (Debian: apt-get install nats-server)"
        );
    }
}
