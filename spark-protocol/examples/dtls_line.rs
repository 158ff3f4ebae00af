//! A DTLS 1.2 line pipe over UDP (ECDHE-ECDSA P-256, AES-128-CCM-8): each stdin line goes out as
//! one application record, and each record received is printed as one line.
//!
//! ```text
//! dtls_line --connect 127.0.0.1:5684 --key device.pem --cert device.crt --peer cloud.crt
//! dtls_line --listen 127.0.0.1:5684 --key cloud.pem --cert cloud.crt --peer device.crt
//! ```
//!
//! `--key` is a PEM P-256 private key, `--cert` the own X.509 certificate in PEM (sent when the
//! peer wants X.509), `--peer` the peer's certificate or `PUBLIC KEY` PEM, whose key is pinned.
//! `--rpk` offers raw public keys (RFC 7250) as Particle devices do; `--pmtu N` caps datagrams.
//! Status goes to stderr (`connected`, `closed`); end of stdin sends close_notify and exits.
//! The server side serves one client at a time, remembers each session so a returning client
//! can resume it, and exits at the end of stdin.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use spark_protocol::dtls::{
    Accept, Certificate, ClientConfig, Connection, Event, PrivateKey, PublicKey, Server,
    ServerConfig, Session, TransportConfig, pem_to_der,
};
use spark_protocol::session::Instant;

struct Args {
    listen: bool,
    addr: SocketAddr,
    key: PrivateKey,
    cert: Option<Certificate>,
    peer: Option<PublicKey>,
    rpk: bool,
    pmtu: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut listen, mut addr, mut key, mut cert, mut peer, mut rpk, mut pmtu) =
        (false, None, None, None, None, false, None);
    let read = |p: Option<String>| -> Result<String, String> {
        let p = p.ok_or("missing file argument")?;
        std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--connect" | "--listen" => {
                listen = a == "--listen";
                let v = it.next().ok_or("missing address")?;
                addr = Some(v.parse::<SocketAddr>().map_err(|e| format!("{v}: {e}"))?);
            }
            "--key" => {
                let pem = read(it.next())?;
                key = Some(PrivateKey::from_pem(&pem).map_err(|e| format!("--key: {e}"))?);
            }
            "--cert" => {
                let pem = read(it.next())?;
                let mut der = [0u8; 4096];
                let (_, n) = pem_to_der(&pem, &["CERTIFICATE"], &mut der)
                    .map_err(|e| format!("--cert: {e}"))?;
                cert = Some(
                    Certificate::from_slice(&der[..n])
                        .map_err(|_| "--cert: certificate too large")?,
                );
            }
            "--peer" => {
                let pem = read(it.next())?;
                peer = Some(PublicKey::from_pem(&pem).map_err(|e| format!("--peer: {e}"))?);
            }
            "--rpk" => rpk = true,
            "--pmtu" => {
                let v = it.next().ok_or("missing --pmtu value")?;
                pmtu = Some(v.parse().map_err(|e| format!("--pmtu {v}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        listen,
        addr: addr.ok_or("--connect ADDR or --listen ADDR is required")?,
        key: key.ok_or("--key FILE is required")?,
        cert,
        peer,
        rpk,
        pmtu,
    })
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(a).map_err(|e| e.to_string())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dtls_line: {e}");
            ExitCode::FAILURE
        }
    }
}

fn rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let start = std::time::Instant::now();
    let now = move || Instant::from_millis(start.elapsed().as_millis() as u64);
    let mut transport = TransportConfig::default();
    if let Some(p) = args.pmtu {
        transport.pmtu = p;
    }
    let lines = stdin_lines();
    if !args.listen {
        let socket = UdpSocket::bind(if args.addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })?;
        let mut config = ClientConfig::new(
            args.key,
            args.peer.ok_or("--peer FILE is required with --connect")?,
        );
        config.raw_public_keys = args.rpk;
        config.certificate = args.cert;
        config.transport = transport;
        let conn = Connection::client(now(), config, &mut rng());
        serve(conn, &socket, args.addr, &lines, &now)?;
        return Ok(());
    }
    let socket = UdpSocket::bind(args.addr)?;
    let mut config = ServerConfig::new(args.key);
    config.certificate = args.cert;
    config.client_key = args.peer;
    config.transport = transport;
    let mut server: Server<16> = Server::new(config, &mut rng());
    let mut buf = [0u8; 2048];
    // One client at a time; each session is remembered so a returning client can resume it.
    loop {
        socket.set_read_timeout(None)?;
        let (n, from) = socket.recv_from(&mut buf)?;
        let mut out = [0u8; 256];
        let addr = from.to_string();
        let conn = match server.accept(now(), addr.as_bytes(), &buf[..n], &mut rng(), &mut out)? {
            Accept::Ignore => continue,
            Accept::HelloVerifyRequest(m) => {
                socket.send_to(&out[..m], from)?;
                continue;
            }
            Accept::Connection(c) => c,
        };
        match serve(conn, &socket, from, &lines, &now) {
            Ok((session, End::PeerClosed)) => {
                if let Some(s) = session {
                    server.remember(s);
                }
            }
            Ok((_, End::InputClosed)) => return Ok(()),
            Err(e) => eprintln!("dtls_line: {from}: {e}"),
        }
    }
}

/// Why [`serve`] returned.
enum End {
    PeerClosed,
    InputClosed,
}

/// Runs one association until the peer closes it or stdin ends; returns its session.
fn serve(
    mut conn: Connection,
    socket: &UdpSocket,
    peer: SocketAddr,
    lines: &mpsc::Receiver<Option<String>>,
    now: &dyn Fn() -> Instant,
) -> Result<(Option<Session>, End), Box<dyn std::error::Error>> {
    let mut buf = vec![0u8; 2048];
    let mut rx = vec![0u8; 2048];
    let mut session = None;
    let stdout = std::io::stdout();
    loop {
        // Events first: a close_notify shows up here before any call reports the close.
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Connected { resumed } => {
                    session = conn.session();
                    eprintln!(
                        "dtls_line: connected{}",
                        if resumed { " (resumed)" } else { "" }
                    );
                }
                Event::ApplicationData => {
                    while let Some(n) = conn.recv(&mut rx)? {
                        let text = String::from_utf8_lossy(&rx[..n]);
                        let mut out = stdout.lock();
                        writeln!(out, "{}", text.trim_end_matches(['\r', '\n']))?;
                        out.flush()?;
                    }
                }
                Event::Closed => {
                    eprintln!("dtls_line: closed by peer");
                    return Ok((session, End::PeerClosed));
                }
                _ => {}
            }
        }
        while let Some(n) = conn.poll_transmit(&mut buf)? {
            socket.send_to(&buf[..n], peer)?;
        }
        if conn.is_connected() {
            while let Ok(line) = lines.try_recv() {
                match line {
                    Some(mut line) => {
                        // The record carries the line with its end, as s_client and s_server do.
                        line.push('\n');
                        let n = conn.send(line.as_bytes(), &mut buf)?;
                        socket.send_to(&buf[..n], peer)?;
                    }
                    None => {
                        conn.close();
                        while let Some(n) = conn.poll_transmit(&mut buf)? {
                            socket.send_to(&buf[..n], peer)?;
                        }
                        eprintln!("dtls_line: closed");
                        return Ok((session, End::InputClosed));
                    }
                }
            }
        }
        let mut wait = Duration::from_millis(20);
        if let Some(t) = conn.poll_timeout() {
            wait = wait.min(t.saturating_duration_since(now()));
        }
        socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == peer => {
                conn.handle_datagram(now(), &buf[..n])?;
                continue;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        conn.handle_timeout(now())?;
    }
}

/// Stdin read on its own thread; `None` marks its end.
fn stdin_lines() -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if tx.send(Some(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    rx
}
