//! The connection caps over real sockets on loopback: a refused HTTP client still gets a whole `503` exchange, one
//! client address at its cap does not block another (the attacker binds 127.0.0.2: Linux routes all of 127/8 to
//! lo), and the device listener's own caps refuse newcomers while an established Core keeps being served. Every
//! wait is bounded; nothing asserts a duration.

#[path = "support/e2e_env.rs"]
mod env;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use env::{Env, PATIENCE, within};
use spark_cc3000::ServicePack;
use spark_cloud::HttpLimits;
use spark_cloud::devices::DeviceLimits;

const CORE: [u8; 12] = [
    0x53, 0xff, 0x6c, 0x06, 0x50, 0x75, 0x53, 0x51, 0x19, 0x51, 0x16, 0x87,
];

/// A blocking TCP connection to `to` from `from` (port chosen by the system).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    let stream = socket.connect(to).await.unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Everything the peer sends until it closes (or `PATIENCE` passes).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

const HEALTH: &str = "GET /server/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// `GET /server/health` from `from`: the whole answer.
async fn health_from(from: Ipv4Addr, to: SocketAddr) -> String {
    let mut s = connect_from(from, to).await;
    s.write_all(HEALTH.as_bytes()).unwrap();
    String::from_utf8_lossy(&read_to_close(&mut s)).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_that_had_not_sent_yet_still_reads_a_whole_503() {
    let limits = HttpLimits::DEFAULT
        .with_max_connections(1)
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(5));
    let env = Env::start_with(limits).await;
    let http = env.running.http;
    // The one connection the cloud takes (idle).
    let _holder = connect_from(Ipv4Addr::LOCALHOST, http).await;
    // Give the cloud time to take it (bounded retries: the next connection must be refused).
    let mut late = connect_from(Ipv4Addr::LOCALHOST, http).await;
    // Before the request is sent, the cloud says nothing: it waits for the request head.
    late.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut probe = [0u8; 1];
    match late.read(&mut probe) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the cloud answered before the request was sent: {other:?}"),
    }
    late.write_all(HEALTH.as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut late)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_at_its_cap_does_not_block_another() {
    const CAP: usize = 3;
    let limits = HttpLimits::DEFAULT
        .with_max_connections_per_address(CAP)
        .with_timeouts(Duration::from_secs(20), Duration::from_secs(5));
    let env = Env::start_with(limits).await;
    let http = env.running.http;
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(connect_from(attacker, http).await);
    }
    // The attacker's next connection is refused (the cloud may not have counted the last one yet: retry, bounded).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = health_from(attacker, http).await;
        if answer.starts_with("HTTP/1.1 503 ") {
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another address is served meanwhile, and so is the API.
    let answer = health_from(Ipv4Addr::LOCALHOST, http).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    env.api.list_devices().await.unwrap();
    // Once the attacker closes one connection, its address is served again.
    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = health_from(attacker, http).await;
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a new device connection gets first: the server's 40-byte nonce when it was taken, or a close.
async fn first_bytes(to: SocketAddr) -> (TcpStream, usize) {
    let mut s = connect_from(Ipv4Addr::LOCALHOST, to).await;
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 40];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    (s, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_listener_refuses_newcomers_past_its_caps_and_keeps_its_devices() {
    // Two connections, one of them handshaking.
    let device_limits = DeviceLimits::DEFAULT.with(2, 1);
    let mut env = Env::start_limited(HttpLimits::DEFAULT, device_limits).await;
    let core = env.online_core(CORE, ServicePack::SP_1_28, &[]).await;
    // The established Core freed its handshake slot: a newcomer is taken (it gets the nonce)...
    let (idle, got) = first_bytes(env.device_addr).await;
    assert_eq!(got, 40, "the first newcomer was not taken");
    // ...and the next one is closed at once: both caps are reached.
    let (_, got) = first_bytes(env.device_addr).await;
    assert_eq!(got, 0, "a newcomer past the caps was taken");
    // The established Core is still served.
    let result = within(env.api.call_function(&core.id, "digitalread", "D7"))
        .await
        .unwrap();
    assert_eq!(result.return_value, 0);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_handshakes_are_bounded_apart_from_connections() {
    // No queue: a connection past the handshake cap is closed at once.
    let device_limits = DeviceLimits::DEFAULT
        .with(64, 1)
        .with_handshake_queue(0, Duration::ZERO);
    let mut env = Env::start_limited(HttpLimits::DEFAULT, device_limits).await;
    let core = env.online_core(CORE, ServicePack::SP_1_28, &[]).await;
    let (_idle, got) = first_bytes(env.device_addr).await;
    assert_eq!(got, 40);
    // Room for 62 more connections, but none for another handshake.
    let (_, got) = first_bytes(env.device_addr).await;
    assert_eq!(got, 0, "a second handshake was started");
    let result = within(env.api.call_function(&core.id, "digitalread", "D7"))
        .await
        .unwrap();
    assert_eq!(result.return_value, 0);
}

/// Whether `s` has sent nothing and is still open after a short look (a queued connection).
fn silent(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// The 40-byte nonce a connection gets once its handshake starts (0 when it is closed first).
fn nonce_len(s: &mut TcpStream) -> usize {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 40];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_handshake_cap_wait_and_are_admitted_in_arrival_order() {
    let device_limits = DeviceLimits::DEFAULT
        .with(64, 1)
        .with_handshake_queue(8, PATIENCE);
    let mut env = Env::start_limited(HttpLimits::DEFAULT, device_limits).await;
    let core = env.online_core(CORE, ServicePack::SP_1_28, &[]).await;
    // The one handshake slot, held by a connection that never answers its nonce.
    let (first, got) = first_bytes(env.device_addr).await;
    assert_eq!(got, 40);
    // Three more wait their turn: open, and told nothing yet.
    let mut queued = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from(Ipv4Addr::LOCALHOST, env.device_addr).await;
        assert!(
            silent(&mut s),
            "a connection past the handshake cap was not queued"
        );
        queued.push(s);
    }
    // Each freed slot goes to the longest waiter: the others keep waiting.
    drop(first);
    for at in 0..queued.len() {
        assert_eq!(
            nonce_len(&mut queued[at]),
            40,
            "waiter {at} was not admitted next"
        );
        for (later, s) in queued.iter_mut().enumerate().skip(at + 1) {
            assert!(silent(s), "waiter {later} was admitted before waiter {at}");
        }
        // Closing the admitted connection ends its handshake and frees the slot.
        queued[at].shutdown(std::net::Shutdown::Both).unwrap();
    }
    // The established Core was served throughout.
    let result = within(env.api.call_function(&core.id, "digitalread", "D7"))
        .await
        .unwrap();
    assert_eq!(result.return_value, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_handshake_queue_or_its_wait_is_closed_not_held() {
    // One handshake slot, one place in the queue, a short wait.
    let device_limits = DeviceLimits::DEFAULT
        .with(64, 1)
        .with_handshake_queue(1, Duration::from_secs(1));
    let env = Env::start_limited(HttpLimits::DEFAULT, device_limits).await;
    let (_holder, got) = first_bytes(env.device_addr).await;
    assert_eq!(got, 40);
    let mut waiting = connect_from(Ipv4Addr::LOCALHOST, env.device_addr).await;
    assert!(silent(&mut waiting), "the first waiter was not queued");
    // The queue is full: the next connection is closed at once (the Core takes it as a cue to retry).
    let mut over = connect_from(Ipv4Addr::LOCALHOST, env.device_addr).await;
    assert!(read_to_close(&mut over).is_empty());
    // The waiter is closed once its wait is over, without a nonce: the slot never freed.
    assert!(read_to_close(&mut waiting).is_empty());
    // Its place is free again: a newcomer queues.
    let mut next = connect_from(Ipv4Addr::LOCALHOST, env.device_addr).await;
    assert!(
        silent(&mut next),
        "the freed place in the queue was not reused"
    );
}
