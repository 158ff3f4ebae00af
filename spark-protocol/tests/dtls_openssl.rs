//! Interoperability with an independent DTLS 1.2 implementation: OpenSSL's `s_server` and
//! `s_client` (Debian's `openssl` command), with the suite forced to ECDHE-ECDSA-AES128-CCM8.
//! Keys and certificates are made at test time; everything runs on loopback, every wait is
//! bounded and every child process is killed when its test ends.
#![cfg(all(feature = "dtls", feature = "std"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use spark_protocol::dtls::{
    Certificate, ClientConfig, Connection, Event, PrivateKey, PublicKey, pem_to_der,
};
use spark_protocol::session::Instant;

const SUITE: &str = "ECDHE-ECDSA-AES128-CCM8";
const WAIT: Duration = Duration::from_secs(30);

fn rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

/// A scratch directory removed when the test ends.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("spark-dtls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is required (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key and a self-signed certificate for it, written by `openssl`.
fn identity(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        key.to_str().unwrap(),
    ]);
    let subj = format!("/CN={name}");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &subj,
        "-days",
        "2",
        "-out",
        crt.to_str().unwrap(),
    ]);
    (key, crt)
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process whose stdout and stderr lines arrive on one channel; killed on drop.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(name: &'static str, program: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {program:?}: {e}"));
        let (tx, lines) = channel();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Proc {
            name,
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a line containing `needle`.
    fn expect(&mut self, needle: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if self.seen.iter().any(|l| l.contains(needle)) {
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{}: no line with {needle:?}; output so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Ends the child's stdin and waits (bounded) for it to exit.
    fn finish_input(&mut self) {
        self.stdin = None;
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not exit after its input ended", self.name);
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `dtls_line` example: beside the test binary when `cargo test` built the examples,
/// otherwise built here into a separate target directory.
fn dtls_line() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let beside = profile_dir.join("examples").join("dtls_line");
    if beside.exists() {
        return beside;
    }
    let target = profile_dir.join("dtls-line-build");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "spark-protocol",
            "--features",
            "std,dtls",
            "--example",
            "dtls_line",
        ])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    target.join("debug").join("examples").join("dtls_line")
}

fn s_server(port: u16, key: &Path, crt: &Path, client_crt: &Path, extra: &[&str]) -> Proc {
    let accept = format!("127.0.0.1:{port}");
    let mut args = vec![
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
        client_crt.to_str().unwrap(),
        "-verify_return_error",
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn("s_server", Path::new("openssl"), &args);
    p.expect("ACCEPT");
    p
}

#[test]
fn dtls_line_client_talks_to_openssl_s_server() {
    let dir = scratch("client");
    let (skey, scrt) = identity(&dir, "cloud");
    let (ckey, ccrt) = identity(&dir, "device");
    let port = free_port();
    // `-listen` makes OpenSSL demand a cookie first, so the HelloVerifyRequest path runs.
    let mut server = s_server(port, &skey, &scrt, &ccrt, &["-listen"]);
    let addr = format!("127.0.0.1:{port}");
    let mut client = Proc::spawn(
        "dtls_line",
        &dtls_line(),
        &[
            "--connect",
            &addr,
            "--key",
            ckey.to_str().unwrap(),
            "--cert",
            ccrt.to_str().unwrap(),
            "--peer",
            scrt.to_str().unwrap(),
            "--pmtu",
            "400",
        ],
    );
    client.expect("dtls_line: connected");
    server.expect("CIPHER is ECDHE-ECDSA-AES128-CCM8");
    client.type_line("ping from the device");
    server.expect("ping from the device");
    server.type_line("pong from openssl");
    client.expect("pong from openssl");
}

#[test]
fn openssl_s_client_talks_to_dtls_line_server() {
    let dir = scratch("server");
    let (skey, scrt) = identity(&dir, "cloud");
    let (ckey, ccrt) = identity(&dir, "device");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Proc::spawn(
        "dtls_line",
        &dtls_line(),
        &[
            "--listen",
            &addr,
            "--key",
            skey.to_str().unwrap(),
            "--cert",
            scrt.to_str().unwrap(),
            "--peer",
            ccrt.to_str().unwrap(),
            "--pmtu",
            "300",
        ],
    );
    // Give the socket a moment to be bound: s_client retries its hello anyway.
    std::thread::sleep(Duration::from_millis(200));
    let mut client = Proc::spawn(
        "s_client",
        Path::new("openssl"),
        &[
            "s_client",
            "-dtls1_2",
            "-cipher",
            SUITE,
            "-connect",
            &addr,
            "-key",
            ckey.to_str().unwrap(),
            "-cert",
            ccrt.to_str().unwrap(),
            "-CAfile",
            scrt.to_str().unwrap(),
            "-verify_return_error",
        ],
    );
    server.expect("dtls_line: connected");
    client.expect("Verify return code: 0 (ok)");
    client.expect("Cipher is ECDHE-ECDSA-AES128-CCM8");
    client.type_line("hello from openssl");
    server.expect("hello from openssl");
    server.type_line("hello from the cloud");
    client.expect("hello from the cloud");
}

/// The library's client on a UDP socket until `until` holds or the wait runs out.
fn drive(
    conn: &mut Connection,
    socket: &UdpSocket,
    until: impl Fn(&mut Connection, &[Event]) -> bool,
) -> Vec<Event> {
    let start = std::time::Instant::now();
    let now = || Instant::from_millis(start.elapsed().as_millis() as u64);
    let mut buf = [0u8; 2048];
    let mut events = Vec::new();
    while start.elapsed() < WAIT {
        // Send first: an abbreviated handshake completes with our flight still to go out.
        while let Some(n) = conn.poll_transmit(&mut buf).unwrap() {
            socket.send(&buf[..n]).unwrap();
        }
        events.extend(core::iter::from_fn(|| conn.poll_event()));
        if until(conn, &events) {
            return events;
        }
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            conn.handle_datagram(now(), &buf[..n]).unwrap();
        }
        conn.handle_timeout(now()).unwrap();
    }
    panic!("timed out; events {events:?}, error {:?}", conn.error());
}

fn read_pem(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn library_client_resumes_its_session_with_openssl() {
    let dir = scratch("resume");
    let (skey, scrt) = identity(&dir, "cloud");
    let (ckey, ccrt) = identity(&dir, "device");
    let port = free_port();
    let mut server = s_server(port, &skey, &scrt, &ccrt, &[]);
    let mut der = [0u8; 2048];
    let (_, n) = pem_to_der(&read_pem(&ccrt), &["CERTIFICATE"], &mut der).unwrap();
    let mut config = ClientConfig::new(
        PrivateKey::from_pem(&read_pem(&ckey)).unwrap(),
        PublicKey::from_pem(&read_pem(&scrt)).unwrap(),
    );
    config.raw_public_keys = false;
    config.certificate = Some(Certificate::from_slice(&der[..n]).unwrap());

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    let mut conn = Connection::client(Instant::ZERO, config.clone(), &mut rng());
    drive(&mut conn, &socket, |c, _| c.is_connected());
    assert!(!conn.is_resumed());
    let session = conn.session().unwrap();
    let mut wire = [0u8; 256];
    let n = conn.send(b"first session\n", &mut wire).unwrap();
    socket.send(&wire[..n]).unwrap();
    server.expect("first session");
    server.type_line("reply one");
    // s_server may split a typed line over records; gather until the line is whole.
    let mut text = Vec::new();
    while !text.ends_with(b"\n") {
        drive(&mut conn, &socket, |_, ev| {
            ev.contains(&Event::ApplicationData)
        });
        let mut got = [0u8; 64];
        while let Some(m) = conn.recv(&mut got).unwrap() {
            text.extend_from_slice(&got[..m]);
        }
    }
    assert_eq!(text, b"reply one\n");
    conn.close();
    let n = conn.poll_transmit(&mut wire).unwrap().unwrap();
    socket.send(&wire[..n]).unwrap();
    server.expect("DONE");

    // Same device, new socket (a network change), saved session: an abbreviated handshake.
    config.resume = Some(session);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    let mut conn = Connection::client(Instant::ZERO, config, &mut rng());
    drive(&mut conn, &socket, |c, _| c.is_connected());
    assert!(conn.is_resumed());
    let n = conn.send(b"resumed session\n", &mut wire).unwrap();
    socket.send(&wire[..n]).unwrap();
    server.expect("resumed session");
}

/// The Particle profile itself over real sockets: two `dtls_line`s with raw public keys (RFC
/// 7250), each pinning the other's `PUBLIC KEY` file that `openssl ec -pubout` wrote.
#[test]
fn dtls_line_to_dtls_line_with_raw_public_keys() {
    let dir = scratch("rpk");
    let (skey, _) = identity(&dir, "cloud");
    let (ckey, _) = identity(&dir, "device");
    let public = |key: &Path, name: &str| {
        let out = dir.join(name);
        openssl(&[
            "ec",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-out",
            out.to_str().unwrap(),
        ]);
        out
    };
    let (spub, cpub) = (public(&skey, "cloud.pub"), public(&ckey, "device.pub"));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Proc::spawn(
        "dtls_line server",
        &dtls_line(),
        &[
            "--listen",
            &addr,
            "--key",
            skey.to_str().unwrap(),
            "--peer",
            cpub.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut client = Proc::spawn(
        "dtls_line client",
        &dtls_line(),
        &[
            "--connect",
            &addr,
            "--key",
            ckey.to_str().unwrap(),
            "--peer",
            spub.to_str().unwrap(),
            "--rpk",
        ],
    );
    client.expect("dtls_line: connected");
    server.expect("dtls_line: connected");
    client.type_line("hello over raw public keys");
    server.expect("hello over raw public keys");
    server.type_line("and back");
    client.expect("and back");
}

#[test]
fn openssl_s_client_resumes_a_session_with_dtls_line_server() {
    let dir = scratch("server-resume");
    let (skey, scrt) = identity(&dir, "cloud");
    let (ckey, ccrt) = identity(&dir, "device");
    let sess = dir.join("session.pem");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Proc::spawn(
        "dtls_line",
        &dtls_line(),
        &[
            "--listen",
            &addr,
            "--key",
            skey.to_str().unwrap(),
            "--cert",
            scrt.to_str().unwrap(),
            "--peer",
            ccrt.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(200));
    let s_client = |name: &'static str, sess_flag: &str| {
        Proc::spawn(
            name,
            Path::new("openssl"),
            &[
                "s_client",
                "-dtls1_2",
                "-cipher",
                SUITE,
                "-connect",
                &addr,
                "-key",
                ckey.to_str().unwrap(),
                "-cert",
                ccrt.to_str().unwrap(),
                "-CAfile",
                scrt.to_str().unwrap(),
                "-verify_return_error",
                sess_flag,
                sess.to_str().unwrap(),
            ],
        )
    };
    let mut first = s_client("s_client 1", "-sess_out");
    first.expect("Cipher is ECDHE-ECDSA-AES128-CCM8");
    server.expect("dtls_line: connected");
    // End of input: s_client sends close_notify and writes its session out.
    first.finish_input();
    server.expect("dtls_line: closed by peer");
    let mut second = s_client("s_client 2", "-sess_in");
    second.expect("Reused, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-CCM8");
    server.expect("dtls_line: connected (resumed)");
    second.type_line("after resumption");
    server.expect("after resumption");
}
