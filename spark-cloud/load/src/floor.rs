//! The socket floor: the server's CPU time for a bare TCP exchange with the shape of a Core's handshake, so that
//! the cloud's CPU per handshake can be set against the RSA floor plus the kernel's TCP work it cannot avoid.
//!
//! The exchange is the handshake's messages with their sizes and directions (as `strace` shows the cloud's device
//! socket: the nonce, the sealed credentials, the session key with its signature, the Core's Hello, the cloud's
//! Hello and Describe request in one write, the Core's description), then the close. The server is a multi-threaded tokio
//! runtime like the cloud's device runtime (one worker per CPU, a task per connection, `TCP_NODELAY`, one write
//! per message); its CPU time is the scheduler's count (`schedstat`) of its named threads, so that neither the
//! clients (on a runtime of their own) nor other processes count.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::storm::parse_schedstat;

/// One message of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// The server writes this many bytes.
    Server(usize),
    /// The client writes this many bytes.
    Client(usize),
}

/// A Core's handshake on the wire, as the cloud writes and reads it: the 40-byte nonce; the credentials sealed to
/// the RSA-2048 server key (256); the session key sealed to the Core's RSA-1024 key (128) and the server's
/// signature (256), one write; the Core's Hello (18); the cloud's Hello (18) and its Describe request (18), one
/// write together (the cloud holds a working connection's small writes until its next read); the Core's
/// description of one function (50).
pub const HANDSHAKE: &[Message] = &[
    Message::Server(40),
    Message::Client(256),
    Message::Server(384),
    Message::Client(18),
    Message::Server(18 + 18),
    Message::Client(50),
];

/// The name of the server's threads (how their CPU time is found; Linux keeps 15 bytes of a thread's name).
const THREAD_NAME: &str = "load-floor";

/// Nanoseconds on a CPU of this process's threads named `name`.
fn threads_cpu_ns(name: &str) -> Option<u64> {
    let mut total = 0;
    for dir in crate::procfs::thread_dirs(std::process::id())? {
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        if let Some((run, _)) = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|t| parse_schedstat(&t))
        {
            total += run;
        }
    }
    Some(total)
}

async fn serve_one(mut stream: TcpStream, shape: &'static [Message]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 512];
    for m in shape {
        match *m {
            Message::Server(n) => stream.write_all(&buf[..n.min(512)]).await?,
            Message::Client(n) => {
                stream.read_exact(&mut buf[..n.min(512)]).await?;
            }
        }
    }
    // The client closes first, as a Core's end would; the server reads the end and closes.
    let _ = stream.read(&mut buf).await?;
    Ok(())
}

async fn client_one(addr: SocketAddr, shape: &'static [Message]) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 512];
    for m in shape {
        match *m {
            Message::Server(n) => {
                stream.read_exact(&mut buf[..n.min(512)]).await?;
            }
            Message::Client(n) => stream.write_all(&buf[..n.min(512)]).await?,
        }
    }
    Ok(())
}

/// Runs `exchanges` exchanges of `shape`, `concurrency` at a time, against a server runtime with `workers` threads,
/// and returns the server's CPU time per exchange. The clients run on the calling thread's own runtime.
pub fn socket_floor(
    shape: &'static [Message],
    exchanges: u32,
    concurrency: u32,
    workers: usize,
) -> Result<Duration, String> {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()
        .map_err(|e| format!("socket floor runtime: {e}"))?;
    let listener = server
        .block_on(async { TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await })
        .map_err(|e| format!("socket floor listener: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    server.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = serve_one(stream, shape).await;
            });
        }
    });
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("socket floor clients: {e}"))?;
    let run = |count: u32| {
        clients.block_on(async {
            let per = count.div_ceil(concurrency.max(1));
            let mut tasks = Vec::new();
            for c in 0..concurrency.max(1) {
                let n = per.min(count.saturating_sub(c * per));
                tasks.push(tokio::spawn(async move {
                    for _ in 0..n {
                        client_one(addr, shape).await?;
                    }
                    Ok::<_, std::io::Error>(())
                }));
            }
            for t in tasks {
                t.await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("socket floor exchange: {e}"))?;
            }
            Ok::<_, String>(())
        })
    };
    // A first round warms the runtime and the allocator; the measured one follows.
    run(exchanges / 10 + 1)?;
    std::thread::sleep(Duration::from_millis(50));
    let before = threads_cpu_ns(THREAD_NAME).ok_or("cannot read /proc/self/task")?;
    run(exchanges)?;
    // The server's last reads of the clients' ends may still be running: give them a moment.
    std::thread::sleep(Duration::from_millis(50));
    let after = threads_cpu_ns(THREAD_NAME).ok_or("cannot read /proc/self/task")?;
    server.shutdown_background();
    Ok(Duration::from_nanos(
        after.saturating_sub(before) / u64::from(exchanges.max(1)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_is_the_handshakes() {
        let down: usize = HANDSHAKE
            .iter()
            .map(|m| match m {
                Message::Server(n) => *n,
                Message::Client(_) => 0,
            })
            .sum();
        let up: usize = HANDSHAKE
            .iter()
            .map(|m| match m {
                Message::Client(n) => *n,
                Message::Server(_) => 0,
            })
            .sum();
        assert_eq!((down, up), (40 + 384 + 18 + 18, 256 + 18 + 50));
    }

    #[test]
    fn the_server_threads_cpu_is_counted() {
        // Zero would mean the server's threads were not found by name (or the exchanges never ran).
        let full = socket_floor(HANDSHAKE, 300, 8, 1).expect("handshake-shaped exchanges");
        assert!(full > Duration::ZERO);
    }
}
