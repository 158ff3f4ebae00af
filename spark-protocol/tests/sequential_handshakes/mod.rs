//! Sequential full DTLS handshakes from the library's client to one long-running server on
//! loopback UDP, with one line each way per association, and the server's CPU time read from
//! `/proc`. The server is either `openssl s_server -dtls1_2` (one process for every client) or
//! the library's own listener on a thread, driven the way spark-cloud drives it. Shared by
//! `benches/dtls.rs` (which times it) and `tests/dtls_sequential.rs` (which checks that every
//! handshake the bench counts really completed). Linux only: CPU time comes from `/proc`.
//!
//! Why `s_server` is started this way. It serves DTLS clients one after another in one process
//! only when
//! - it runs without `-listen`: with it, `DTLSv1_listen` answers the first client's cookie and
//!   then `connect()`s the UDP socket to that client's address, so every later client's
//!   datagrams are dropped by the kernel. Without `-listen` it still sends a HelloVerifyRequest
//!   to every client (s_server turns on `SSL_OP_COOKIE_EXCHANGE` for DTLS), so each handshake
//!   here has the cookie round trip on both servers;
//! - its stdin stays open: under `-quiet`, end of input makes it send close_notify as soon as a
//!   handshake ends. The parent holds the write end of the pipe for the server's whole life and
//!   types the server's reply into it.
//!
//! Each association ends with our close_notify; against `s_server` the client then waits for
//! OpenSSL's close_notify, so the next ClientHello never reaches the association being torn down.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use spark_protocol::dtls::{
    Accept, Certificate, ClientConfig, Connection, Event, PrivateKey, PublicKey, Server,
    ServerConfig, is_client_hello, pem_to_der,
};
use spark_protocol::session::Instant;

/// The profile's suite, forced on OpenSSL.
pub const SUITE: &str = "ECDHE-ECDSA-AES128-CCM8";
/// Longest wait for any one step (a handshake, a reply, a close).
pub const STEP: Duration = Duration::from_secs(20);

fn rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

fn openssl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("the openssl command is required: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// P-256 keys and self-signed certificates for a cloud and a device (and a stranger device
/// the cloud does not trust), made by `openssl` in a scratch directory removed on drop.
pub struct Identities {
    dir: PathBuf,
}

impl Identities {
    pub fn new(tag: &str) -> Result<Identities, String> {
        let dir = std::env::temp_dir().join(format!("spark-dtls-seq-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let ids = Identities { dir };
        for name in ["cloud", "device", "stranger"] {
            let key = ids.key(name);
            let crt = ids.crt(name);
            openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                key.to_str().unwrap(),
            ])?;
            openssl(&[
                "req",
                "-x509",
                "-new",
                "-key",
                key.to_str().unwrap(),
                "-subj",
                &format!("/CN={name}"),
                "-days",
                "2",
                "-out",
                crt.to_str().unwrap(),
            ])?;
        }
        Ok(ids)
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    pub fn crt(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn certificate(&self, name: &str) -> Certificate {
        let mut der = [0u8; 2048];
        let (_, n) = pem_to_der(&Self::read(&self.crt(name)), &["CERTIFICATE"], &mut der).unwrap();
        Certificate::from_slice(&der[..n]).unwrap()
    }

    /// The client as `name` (a device key); X.509 (what OpenSSL 3.0 takes), or raw public keys as
    /// Device OS offers them.
    pub fn client_config(&self, name: &str, raw_public_keys: bool) -> ClientConfig {
        let mut config = ClientConfig::new(
            PrivateKey::from_pem(&Self::read(&self.key(name))).unwrap(),
            PublicKey::from_pem(&Self::read(&self.crt("cloud"))).unwrap(),
        );
        config.raw_public_keys = raw_public_keys;
        if !raw_public_keys {
            config.certificate = Some(self.certificate(name));
        }
        config
    }

    /// The cloud's listener settings as spark-cloud has them (client keys required, connection
    /// ids given), plus the cloud certificate for X.509 clients and the device key pinned, as
    /// `s_server -Verify 1 -CAfile device.crt` pins it.
    pub fn server_config(&self) -> ServerConfig {
        let mut config =
            ServerConfig::new(PrivateKey::from_pem(&Self::read(&self.key("cloud"))).unwrap());
        config.certificate = Some(self.certificate("cloud"));
        config.client_key = Some(PublicKey::from_pem(&Self::read(&self.crt("device"))).unwrap());
        config
    }
}

impl Drop for Identities {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// utime + stime of a process or thread, in clock ticks, from its `/proc/.../stat`.
pub fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name may hold spaces: the fields counted here start after its ')'.
    let mut fields = text.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Nanoseconds on a CPU from `/proc/.../schedstat` (a cross-check at finer grain than ticks).
pub fn cpu_ns(schedstat_path: &str) -> Option<u64> {
    std::fs::read_to_string(schedstat_path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `getconf CLK_TCK`: the unit of [`cpu_ticks`].
pub fn clock_ticks_per_second() -> Option<u64> {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// What the server did between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuUse {
    pub ticks: u64,
    pub nanos: u64,
}

impl CpuUse {
    fn read(dir: &str) -> CpuUse {
        CpuUse {
            ticks: cpu_ticks(&format!("{dir}/stat")).unwrap_or(0),
            nanos: cpu_ns(&format!("{dir}/schedstat")).unwrap_or(0),
        }
    }

    /// The use between `start` and this reading.
    pub fn since(self, start: CpuUse) -> CpuUse {
        CpuUse {
            ticks: self.ticks.saturating_sub(start.ticks),
            nanos: self.nanos.saturating_sub(start.nanos),
        }
    }
}

/// The server side of one association's line exchange.
pub trait Peer {
    /// The server at this address.
    fn addr(&self) -> SocketAddr;
    /// Called once the client sent `ping`: make the server send `pong` back.
    fn answer(&mut self, ping: &str, pong: &str) -> Result<(), String>;
    /// Whether the server answers a close_notify with its own (the client then waits for it).
    fn answers_close(&self) -> bool;
}

/// One association's result, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub resumed: bool,
    /// The line the server sent back, without its end.
    pub reply: String,
}

/// Drives `conn` on `socket` until `until` holds; fails on any connection error or after
/// [`STEP`].
fn drive(
    conn: &mut Connection,
    socket: &UdpSocket,
    clock: &std::time::Instant,
    events: &mut Vec<Event>,
    mut until: impl FnMut(&mut Connection, &[Event]) -> bool,
) -> Result<(), String> {
    let now = || Instant::from_millis(clock.elapsed().as_millis() as u64);
    let give_up = std::time::Instant::now() + STEP;
    let mut buf = [0u8; 2048];
    loop {
        while let Some(n) = conn.poll_transmit(&mut buf).map_err(|e| e.to_string())? {
            socket.send(&buf[..n]).map_err(|e| e.to_string())?;
        }
        events.extend(core::iter::from_fn(|| conn.poll_event()));
        if until(conn, events) {
            return Ok(());
        }
        if std::time::Instant::now() > give_up {
            return Err(format!("timed out; events {events:?}"));
        }
        let wait = conn.poll_timeout().map_or(Duration::from_millis(50), |t| {
            Duration::from_millis(t.as_millis().saturating_sub(now().as_millis()))
        });
        socket
            .set_read_timeout(Some(
                wait.clamp(Duration::from_millis(1), Duration::from_millis(50)),
            ))
            .map_err(|e| e.to_string())?;
        match socket.recv(&mut buf) {
            Ok(n) => conn
                .handle_datagram(now(), &buf[..n])
                .map_err(|e| format!("{e} (events {events:?})"))?,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.to_string()),
        }
        conn.handle_timeout(now()).map_err(|e| e.to_string())?;
    }
}

/// One association from a fresh socket (a new source port): a full handshake, `ping {i}` out,
/// the server's `pong {i}` back, close_notify.
pub fn associate(
    config: &ClientConfig,
    peer: &mut dyn Peer,
    i: u64,
) -> Result<Association, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket.connect(peer.addr()).map_err(|e| e.to_string())?;
    let clock = std::time::Instant::now();
    let mut conn = Connection::client(Instant::ZERO, config.clone(), &mut rng());
    let mut events = Vec::new();
    drive(&mut conn, &socket, &clock, &mut events, |c, _| {
        c.is_connected()
    })?;
    let resumed = events.contains(&Event::Connected { resumed: true });
    let (ping, pong) = (format!("ping {i}"), format!("pong {i}"));
    let mut wire = [0u8; 256];
    let n = conn
        .send(format!("{ping}\n").as_bytes(), &mut wire)
        .map_err(|e| e.to_string())?;
    socket.send(&wire[..n]).map_err(|e| e.to_string())?;
    peer.answer(&ping, &pong)?;
    // A line may come split over records; gather until it ends.
    let mut reply = Vec::new();
    while !reply.ends_with(b"\n") {
        events.clear();
        drive(&mut conn, &socket, &clock, &mut events, |_, ev| {
            ev.contains(&Event::ApplicationData)
        })?;
        let mut got = [0u8; 256];
        while let Some(m) = conn.recv(&mut got).map_err(|e| e.to_string())? {
            reply.extend_from_slice(&got[..m]);
        }
    }
    conn.close();
    while let Some(n) = conn.poll_transmit(&mut wire).map_err(|e| e.to_string())? {
        socket.send(&wire[..n]).map_err(|e| e.to_string())?;
    }
    if peer.answers_close() {
        // Our connection is closed and reads nothing more; the peer's close_notify is the
        // first alert record (content type 21) that arrives.
        socket
            .set_read_timeout(Some(STEP))
            .map_err(|e| e.to_string())?;
        loop {
            let n = socket
                .recv(&mut wire)
                .map_err(|e| format!("no close_notify back: {e}"))?;
            if n > 0 && wire[0] == 21 {
                break;
            }
        }
    }
    let reply = String::from_utf8_lossy(&reply).trim_end().to_string();
    if reply != pong {
        return Err(format!("expected {pong:?}, the server sent {reply:?}"));
    }
    Ok(Association { resumed, reply })
}

/// Runs associations `0, 1, ...` while `more(done)` holds; stops at the first failure.
/// Returns how many completed, each a full handshake with its reply checked.
pub fn run(
    config: &ClientConfig,
    peer: &mut dyn Peer,
    mut more: impl FnMut(u64) -> bool,
) -> Result<u64, String> {
    let mut done = 0;
    while more(done) {
        let a = associate(config, peer, done).map_err(|e| format!("association {done}: {e}"))?;
        if a.resumed {
            return Err(format!("association {done} resumed a session"));
        }
        done += 1;
    }
    Ok(done)
}

/// `openssl s_server -dtls1_2` with the profile's suite and a required, pinned client
/// certificate, serving clients one after another; killed on drop.
pub struct OpensslServer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    addr: SocketAddr,
    /// Every line s_server printed (what it received from clients), in order.
    pub printed: Vec<String>,
}

impl OpensslServer {
    /// Starts s_server trusting `client` ("device" or "stranger") and waits until its UDP
    /// port is bound.
    pub fn start(ids: &Identities, client: &str) -> Result<OpensslServer, String> {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let accept = addr.to_string();
        let (key, crt, ca) = (ids.key("cloud"), ids.crt("cloud"), ids.crt(client));
        let mut child = Command::new("openssl")
            .args([
                "s_server",
                "-dtls1_2",
                "-cipher",
                SUITE,
                "-accept",
                &accept,
                "-key",
                key.to_str().unwrap(),
                "-cert",
                crt.to_str().unwrap(),
                "-Verify",
                "1",
                "-CAfile",
                ca.to_str().unwrap(),
                "-verify_return_error",
                "-quiet",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("openssl s_server: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = OpensslServer {
            child,
            stdin,
            lines,
            addr,
            printed: Vec::new(),
        };
        let give_up = std::time::Instant::now() + STEP;
        while !udp_port_bound(port) {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("s_server exited: {status}"));
            }
            if std::time::Instant::now() > give_up {
                return Err("s_server never bound its port".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's CPU time so far.
    pub fn cpu(&self) -> CpuUse {
        CpuUse::read(&format!("/proc/{}", self.pid()))
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Peer for OpensslServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn answer(&mut self, ping: &str, pong: &str) -> Result<(), String> {
        // s_server prints what it received; only then is the association ours to answer on.
        loop {
            let line = self
                .lines
                .recv_timeout(STEP)
                .map_err(|_| format!("s_server never printed {ping:?}"))?;
            let heard = line == ping;
            self.printed.push(line);
            if heard {
                break;
            }
        }
        writeln!(self.stdin, "{pong}").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())
    }

    fn answers_close(&self) -> bool {
        true
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a UDP socket on 127.0.0.1:`port` exists (`/proc/net/udp`).
pub fn udp_port_bound(port: u16) -> bool {
    let needle = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&needle))
    })
}

/// What the library's listener thread reports when stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerReport {
    /// Handshakes that reached `Connected`.
    pub handshakes: u64,
    /// Lines answered.
    pub answered: u64,
    /// The thread's CPU between its start and its stop.
    pub cpu: CpuUse,
}

/// The library's listener on its own thread and socket, one [`Connection`] per peer address
/// as spark-cloud keeps them; it answers each `ping N` line with `pong N`.
pub struct LibraryServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<ListenerReport, String>>>,
}

impl LibraryServer {
    pub fn start(config: ServerConfig) -> Result<LibraryServer, String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || listen(&socket, config, &flag));
        Ok(LibraryServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and returns what it did.
    pub fn stop(mut self) -> Result<ListenerReport, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .map_err(|_| "listener thread panicked".to_string())?
    }
}

impl Peer for LibraryServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn answer(&mut self, _ping: &str, _pong: &str) -> Result<(), String> {
        // The listener answers by itself.
        Ok(())
    }

    fn answers_close(&self) -> bool {
        // The library reports the peer's close_notify and sends none back.
        false
    }
}

impl Drop for LibraryServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn listen(
    socket: &UdpSocket,
    config: ServerConfig,
    stop: &AtomicBool,
) -> Result<ListenerReport, String> {
    let start_cpu = CpuUse::read("/proc/thread-self");
    let clock = std::time::Instant::now();
    let now = || Instant::from_millis(clock.elapsed().as_millis() as u64);
    let mut server: Server<16> = Server::new(config, &mut rng());
    let mut conns: HashMap<SocketAddr, Connection> = HashMap::new();
    let mut report = ListenerReport::default();
    let (mut rx, mut tx, mut out, mut text) = ([0u8; 2048], [0u8; 2048], [0u8; 512], [0u8; 256]);
    while !stop.load(Ordering::Relaxed) {
        let next = conns.values().filter_map(Connection::poll_timeout).min();
        let wait = next.map_or(Duration::from_millis(50), |t| {
            Duration::from_millis(t.as_millis().saturating_sub(now().as_millis()))
        });
        socket
            .set_read_timeout(Some(
                wait.clamp(Duration::from_millis(1), Duration::from_millis(50)),
            ))
            .map_err(|e| e.to_string())?;
        let from = match socket.recv_from(&mut rx) {
            Ok((n, from)) => {
                let datagram = &rx[..n];
                match conns.get_mut(&from) {
                    Some(conn) if !is_client_hello(datagram) => {
                        // A failed association is dropped below; its error is the client's to see.
                        let _ = conn.handle_datagram(now(), datagram);
                    }
                    _ => {
                        let key = from.to_string();
                        match server.accept(now(), key.as_bytes(), datagram, &mut rng(), &mut out) {
                            Ok(Accept::HelloVerifyRequest(m)) => {
                                socket.send_to(&out[..m], from).map_err(|e| e.to_string())?;
                            }
                            Ok(Accept::Connection(conn)) => {
                                conns.insert(from, conn);
                            }
                            Ok(Accept::Ignore) | Err(_) => {}
                        }
                    }
                }
                Some(from)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut ended = Vec::new();
        for (addr, conn) in conns.iter_mut() {
            if Some(*addr) != from && conn.poll_timeout().is_none_or(|t| t > now()) {
                continue;
            }
            let _ = conn.handle_timeout(now());
            while let Some(event) = conn.poll_event() {
                match event {
                    Event::Connected { .. } => report.handshakes += 1,
                    Event::ApplicationData => {
                        while let Ok(Some(n)) = conn.recv(&mut text) {
                            let line = String::from_utf8_lossy(&text[..n]);
                            if let Some(i) = line.trim_end().strip_prefix("ping ") {
                                let reply = format!("pong {i}\n");
                                if let Ok(m) = conn.send(reply.as_bytes(), &mut tx) {
                                    socket.send_to(&tx[..m], addr).map_err(|e| e.to_string())?;
                                    report.answered += 1;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            while let Ok(Some(n)) = conn.poll_transmit(&mut tx) {
                socket.send_to(&tx[..n], addr).map_err(|e| e.to_string())?;
            }
            if conn.error().is_some() {
                ended.push(*addr);
            }
        }
        for addr in ended {
            conns.remove(&addr);
        }
    }
    report.cpu = CpuUse::read("/proc/thread-self").since(start_cpu);
    Ok(report)
}
