//! The device's datagram session resumes its DTLS session with an independent server,
//! `openssl s_server -dtls1_2`, after a network change, and keeps its CoAP state. s_server only
//! carries the records: the CoAP it receives comes out on its stdout, and the cloud's messages
//! (made here by a `CloudConnection`) go in on its stdin.
#![cfg(all(feature = "dtls", feature = "std", target_os = "linux"))]

#[path = "sequential_handshakes/mod.rs"]
mod sequential_handshakes;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use sequential_handshakes::{Identities, SUITE, udp_port_bound};
use spark_protocol::DeviceId;
use spark_protocol::dtls;
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, NoKeys};
use spark_protocol::session::datagram::DatagramSession;
use spark_protocol::session::device::{DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware};
use spark_protocol::session::{Connection as _, Instant, Scope};

const DEVICE_ID: [u8; 12] = [
    0x53, 0xff, 0x6d, 0x06, 0x50, 0x67, 0x55, 0x50, 0x49, 0x28, 0x11, 0x89,
];
const WAIT: Duration = Duration::from_secs(30);

type Device = DatagramSession<DeviceConnection<NoFirmware>, StdRng>;

/// s_server with its stdout read as raw chunks (one per record it printed); killed on drop.
struct SServer {
    child: Child,
    stdin: ChildStdin,
    chunks: Receiver<Vec<u8>>,
    addr: SocketAddr,
}

impl SServer {
    fn start(ids: &Identities) -> SServer {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut child = Command::new("openssl")
            .args([
                "s_server",
                "-dtls1_2",
                "-cipher",
                SUITE,
                "-accept",
                &addr.to_string(),
                "-key",
                ids.key("cloud").to_str().unwrap(),
                "-cert",
                ids.crt("cloud").to_str().unwrap(),
                "-Verify",
                "1",
                "-CAfile",
                ids.crt("device").to_str().unwrap(),
                "-verify_return_error",
                "-quiet",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the openssl command is required");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, chunks) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let give_up = std::time::Instant::now() + WAIT;
        while !udp_port_bound(port) {
            assert!(std::time::Instant::now() < give_up, "s_server never bound");
            std::thread::sleep(Duration::from_millis(10));
        }
        SServer {
            child,
            stdin,
            chunks,
            addr,
        }
    }

    /// Sends `message` to the client as one record (one write, then a pause so the next
    /// message is read separately).
    fn type_message(&mut self, message: &[u8]) {
        self.stdin.write_all(message).unwrap();
        self.stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the device on `socket` until `done` holds (bounded); with `link_up` false its
/// datagrams are dropped, as on a network that went away.
fn pump(
    dev: &mut Device,
    socket: &UdpSocket,
    clock: &std::time::Instant,
    link_up: bool,
    events: &mut Vec<DeviceEvent>,
    mut done: impl FnMut(&Device, &[DeviceEvent]) -> bool,
) {
    let now = || Instant::from_millis(clock.elapsed().as_millis() as u64);
    let give_up = std::time::Instant::now() + WAIT;
    let mut buf = vec![0u8; dev.max_transmit_len()];
    let mut rx = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    loop {
        while let Some(n) = dev.poll_transmit(now(), &mut buf).unwrap() {
            if link_up {
                socket.send(&buf[..n]).unwrap();
            }
        }
        events.extend(core::iter::from_fn(|| dev.poll_event()));
        if done(dev, events) {
            return;
        }
        assert!(std::time::Instant::now() < give_up, "timed out: {dev:?}");
        if let Ok(n) = socket.recv(&mut rx)
            && link_up
        {
            dev.handle_datagram(now(), &rx[..n]).unwrap();
        }
        dev.handle_timeout(now()).unwrap();
    }
}

/// Everything s_server printed so far, appended to `seen` chunk by chunk.
fn gather(server: &SServer, seen: &mut Vec<Vec<u8>>) {
    seen.extend(server.chunks.try_iter());
}

fn message_id(message: &[u8]) -> u16 {
    u16::from_be_bytes([message[2], message[3]])
}

#[test]
fn device_session_resumes_with_openssl_s_server_and_keeps_its_coap_state() {
    let ids = Identities::new("datagram-resume").unwrap();
    let mut server = SServer::start(&ids);
    let clock = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(11);
    let config = ids.client_config("device", false);
    let dtls = dtls::Connection::client(Instant::ZERO, config.clone(), &mut rng);
    let session = DeviceConnection::datagram(
        Instant::ZERO,
        DeviceConfig::new(DEVICE_ID),
        NoFirmware,
        &mut rng,
    );
    let mut dev: Device = DatagramSession::new(session, dtls, StdRng::seed_from_u64(12));
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    first.connect(server.addr).unwrap();
    let mut events = Vec::new();
    let mut printed = Vec::new();

    // The device's Hello comes out of s_server; the cloud session answers it through stdin.
    pump(&mut dev, &first, &clock, true, &mut events, |_, _| {
        gather(&server, &mut printed);
        !printed.is_empty()
    });
    assert!(!dev.dtls().is_resumed());
    let hello = printed.remove(0);
    let now = Instant::from_millis(clock.elapsed().as_millis() as u64);
    let mut cloud = CloudConnection::datagram(
        now,
        NoKeys,
        NoKeys,
        StdRng::seed_from_u64(13),
        CloudConfig::default(),
        DeviceId::from_bytes(DEVICE_ID),
    );
    cloud.handle_input(now, &hello).unwrap();
    let mut out = [0u8; 1024];
    while let Some(n) = cloud.poll_transmit(now, &mut out).unwrap() {
        server.type_message(&out[..n]);
    }
    pump(&mut dev, &first, &clock, true, &mut events, |_, ev| {
        ev.contains(&DeviceEvent::Connected)
    });
    std::thread::sleep(Duration::from_millis(200));
    gather(&server, &mut printed);
    let before = printed.len();

    // The network goes away while a subscription (confirmable) is sent into it.
    dev.session_mut()
        .subscribe(b"cmd", Scope::MyDevices)
        .unwrap();
    let t = std::time::Instant::now();
    pump(&mut dev, &first, &clock, false, &mut events, |_, _| {
        t.elapsed() > Duration::from_millis(200)
    });
    // The device moves to a new socket on the saved session. s_server serves one association at
    // a time, so the old one is ended first (close_notify, answered with s_server's own).
    let mut config = config;
    config.resume = dev.dtls().session();
    assert!(config.resume.is_some());
    let now = Instant::from_millis(clock.elapsed().as_millis() as u64);
    let next = dtls::Connection::client(now, config, &mut rng);
    let mut old = dev.replace_dtls(next).unwrap();
    old.close();
    let mut wire = [0u8; 256];
    while let Some(n) = old.poll_transmit(&mut wire).unwrap() {
        first.send(&wire[..n]).unwrap();
    }
    first.set_read_timeout(Some(WAIT)).unwrap();
    while first.recv(&mut wire).unwrap() == 0 || wire[0] != 21 {}

    let second = UdpSocket::bind("127.0.0.1:0").unwrap();
    second.connect(server.addr).unwrap();
    // CoAP's retransmission sends the lost subscription again, over the resumed association.
    pump(&mut dev, &second, &clock, true, &mut events, |d, _| {
        gather(&server, &mut printed);
        d.dtls().is_connected() && printed[before..].iter().any(|m| contains(m, b"cmd"))
    });
    assert!(dev.dtls().is_resumed());
    let subscribe = printed[before..]
        .iter()
        .find(|m| contains(m, b"cmd"))
        .unwrap();
    assert_eq!(subscribe[0] & 0xf0, 0x40, "CoAP version 1, confirmable");
    // Its message id follows the last message the device originated (its ACKs carry the
    // cloud's ids): the counter went on across the new association.
    let last_originated = core::iter::once(&hello)
        .chain(&printed[..before])
        .rfind(|m| m[0] & 0x30 < 0x20)
        .unwrap();
    assert_eq!(
        message_id(subscribe),
        message_id(last_originated).wrapping_add(1),
        "hello {hello:02x?}, printed {printed:02x?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == DeviceEvent::Connected)
            .count(),
        1
    );
    assert_eq!(dev.error(), None);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
