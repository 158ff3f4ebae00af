//! A real `nats-server` (Debian's `nats-server`) for the tests: on a free loopback port, without a monitoring port,
//! ready once it accepts connections, killed (and reaped) when dropped.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server`.
pub struct NatsServer {
    child: Child,
    _config: Option<tempfile::NamedTempFile>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The program: `$NATS_SERVER`, or `nats-server` on `PATH`, or Debian's `/usr/sbin/nats-server`.
fn program() -> String {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return p;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.map_or_else(
        || "/usr/sbin/nats-server".to_owned(),
        |p| p.display().to_string(),
    )
}

impl NatsServer {
    /// Starts one and waits (at most 10 s) until it accepts a connection.
    pub fn start() -> NatsServer {
        NatsServer::start_with(None)
    }

    /// Starts one whose messages may carry `max_payload` bytes at most (the default is 1 MiB).
    pub fn start_with_max_payload(max_payload: usize) -> NatsServer {
        NatsServer::start_with(Some(max_payload))
    }

    fn start_with(max_payload: Option<usize>) -> NatsServer {
        // A port the kernel just handed out and took back: free unless another process grabs it in between.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new(program());
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        // The command line has no flag for it; a configuration file does.
        let config = max_payload.map(|bytes| {
            let file = tempfile::NamedTempFile::new().expect("a temporary file");
            std::fs::write(file.path(), format!("max_payload: {bytes}\n")).expect("written");
            command.arg("-c").arg(file.path());
            file
        });
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server) runs");
        let server = NatsServer {
            child,
            _config: config,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not accept connections on {}",
                server.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Its URL, `nats://127.0.0.1:PORT`.
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
