//! Accepting REST connections: the connection caps (in all and per client address) and the answer to a refused
//! connection.

use super::*;

/// Refused connections being answered at once; past it a refused connection is closed without an answer.
pub(super) const MAX_REFUSALS: usize = 64;

/// The most bytes of a refused request's head that are read before answering it.
pub(super) const REFUSED_HEAD_LIMIT: usize = 8 * 1024;

/// How long a refused connection is drained after its answer, so that the client reads the answer instead of a
/// reset.
pub(super) const REFUSAL_DRAIN: Duration = Duration::from_secs(1);

pub(crate) async fn accept_loop(cloud: Arc<Cloud>, listener: TcpListener, limits: HttpLimits) {
    // Connections hold a permit and their address's slot; past either cap a client is told so and closed, and
    // little else is spent on it.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let per_address = Arc::new(AddressSlots::new(limits.max_connections_per_address));
    let logins = Arc::new(LoginLimiter::new(&limits));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(_) => {
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admitted = per_address.take(peer.ip()).and_then(|slot| {
            let permit = Arc::clone(&permits).try_acquire_owned().ok()?;
            Some((slot, permit))
        });
        let Some((slot, permit)) = admitted else {
            // A refusal holds no connection permit; a flood of them is bounded on its own.
            if let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_busy(stream, limits.header_timeout).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let cloud = Arc::clone(&cloud);
        let ctx = Arc::new(Conn {
            limits,
            peer: peer.ip(),
            logins: Arc::clone(&logins),
        });
        tokio::spawn(async move {
            let _held = (permit, slot);
            let service = hyper::service::service_fn(move |req| {
                let cloud = Arc::clone(&cloud);
                let ctx = Arc::clone(&ctx);
                async move { Ok::<_, Infallible>(handle(&cloud, req, &ctx).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Open connections per client address, each held by an [`AddressSlot`].
pub(super) struct AddressSlots {
    cap: usize,
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// One connection's share of its address's count; given back on drop.
pub(super) struct AddressSlot {
    slots: Arc<AddressSlots>,
    addr: IpAddr,
}

impl AddressSlots {
    fn new(cap: usize) -> AddressSlots {
        AddressSlots {
            cap,
            open: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A slot for `addr`, unless it holds [`HttpLimits::max_connections_per_address`] already.
    fn take(self: &Arc<Self>, addr: IpAddr) -> Option<AddressSlot> {
        let mut open = lock(&self.open);
        let n = open.entry(addr).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            slots: Arc::clone(self),
            addr,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.slots.open);
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

/// The answer to a connection past a connection cap: the request head is read first (bounded in size and by the
/// header timeout), so that a client that had not sent yet still gets a whole exchange; then `503` with a JSON
/// body and `Connection: close`, the write side shut, and what the client still sends drained briefly so that the
/// close does not reset the answer away.
pub(super) async fn refuse_busy(mut stream: tokio::net::TcpStream, header_timeout: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = r#"{"ok":false,"error":"Too many connections; try again later"}"#;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(header_timeout, async {
        while head.len() < REFUSED_HEAD_LIMIT {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n\
Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Drain (and drop) what the client still sends until it closes, at most 64 KiB.
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
