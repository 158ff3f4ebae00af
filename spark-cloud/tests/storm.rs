//! A reconnect storm in miniature, over real sockets on loopback: the device listener's kernel backlog holds a
//! burst that its accept loop has not reached yet (with the usual 128, the kernel would drop the rest's last
//! handshake segment and leave them hanging), a burst past the handshake cap queues with none refused and no more
//! handshakes started than the cap, and a connection refused past the queue gets in on its retry. Every wait is
//! bounded; nothing asserts a duration.

#[path = "support/e2e_env.rs"]
mod env;

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use env::{Env, PATIENCE};
use spark_cloud::HttpLimits;
use spark_cloud::devices::{self, DeviceLimits};

/// A blocking TCP connection to `to` (port chosen by the system).
async fn connect(to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
        .unwrap();
    let stream = socket.connect(to).await.unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// What a connection is told within `wait`: the 40-byte nonce (its handshake started), a close, or nothing yet.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    Nonce,
    Closed,
    Nothing,
}

fn heard(s: &mut TcpStream, wait: Duration) -> Heard {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 40];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Heard::Closed,
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Heard::Nothing;
            }
            Err(_) => return Heard::Closed,
        }
    }
    Heard::Nonce
}

const SHORT: Duration = Duration::from_millis(300);

/// `net.core.somaxconn`: the kernel caps every backlog there.
fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(128)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_backlog_holds_a_burst_the_accept_loop_has_not_reached() {
    // More connections than tokio's usual backlog of 128, none accepted while they arrive.
    let burst = 300.min(somaxconn());
    let listener = devices::bind_listener(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        DeviceLimits::DEFAULT.listen_backlog,
    )
    .unwrap();
    let addr = listener.local_addr().unwrap();
    // Past a full backlog the kernel drops a SYN (the client's connect waits for its retransmission, a second
    // and more) or the last ACK of a handshake: a connect that does not finish in a few seconds is one of those.
    let mut clients = Vec::new();
    for n in 0..burst {
        let Ok(s) = tokio::time::timeout(Duration::from_secs(5), connect(addr)).await else {
            panic!("connection {n} was not taken into the backlog");
        };
        clients.push(s);
    }
    // Every one of them is in the kernel's accept queue: taken one after another, the queue never found empty.
    let mut accepted = 0;
    while accepted < burst {
        match tokio::time::timeout(Duration::from_millis(200), listener.accept()).await {
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(e)) => panic!("accept: {e}"),
            Err(_) => break,
        }
    }
    assert_eq!(
        accepted, burst,
        "connections past the backlog were dropped by the kernel"
    );
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_handshake_cap_queues_none_refused_none_started_past_the_cap() {
    let cap = 2;
    let device_limits = DeviceLimits::DEFAULT
        .with(64, cap)
        .with_handshake_queue(64, PATIENCE);
    let env = Env::start_limited(HttpLimits::DEFAULT, device_limits).await;
    let mut burst = Vec::new();
    for _ in 0..12 {
        burst.push(connect(env.device_addr).await);
    }
    // The first `cap` get their nonce (none of them answers it, so they keep their slots); no more handshakes
    // start, and none of the others is closed: they wait in the queue.
    let mut started = Vec::new();
    let mut waiting = Vec::new();
    for mut s in burst {
        let h = if started.len() < cap {
            heard(&mut s, PATIENCE)
        } else {
            heard(&mut s, SHORT)
        };
        match h {
            Heard::Nonce => started.push(s),
            Heard::Nothing => waiting.push(s),
            Heard::Closed => panic!("a connection was refused while the queue had room"),
        }
    }
    assert_eq!(started.len(), cap, "handshakes started past the cap");
    assert_eq!(waiting.len(), 12 - cap);
    // Freeing the slots admits the next waiters, in order, and still no more than the cap.
    drop(started);
    for (at, s) in waiting.iter_mut().enumerate() {
        let want = if at < cap {
            Heard::Nonce
        } else {
            Heard::Nothing
        };
        let wait = if at < cap { PATIENCE } else { SHORT };
        assert_eq!(heard(s, wait), want, "waiter {at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_refused_past_the_queue_gets_in_on_its_retry() {
    let device_limits = DeviceLimits::DEFAULT
        .with(64, 1)
        .with_handshake_queue(1, PATIENCE);
    let env = Env::start_limited(HttpLimits::DEFAULT, device_limits).await;
    let mut holder = connect(env.device_addr).await;
    assert_eq!(heard(&mut holder, PATIENCE), Heard::Nonce);
    let mut waiter = connect(env.device_addr).await;
    assert_eq!(heard(&mut waiter, SHORT), Heard::Nothing);
    // Past the queue: closed at once.
    let mut over = connect(env.device_addr).await;
    assert_eq!(heard(&mut over, PATIENCE), Heard::Closed);
    // The holder's handshake ends: the waiter starts, and the refused device's retry takes the free place in the
    // queue, then its handshake once the waiter's ends.
    drop(holder);
    assert_eq!(heard(&mut waiter, PATIENCE), Heard::Nonce);
    let mut retry = connect(env.device_addr).await;
    assert_eq!(heard(&mut retry, SHORT), Heard::Nothing);
    drop(waiter);
    assert_eq!(heard(&mut retry, PATIENCE), Heard::Nonce);
}
