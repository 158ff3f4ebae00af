//! The UDP device listener (Electron-class devices, port 5684): one socket, DTLS 1.2 associations
//! by peer address, and each established association's cloud session in datagram mode, joined to
//! the same [`LiveHub`] as the TCP devices.
//!
//! The socket's task answers every ClientHello without a valid cookie with a HelloVerifyRequest
//! (`dtls::Server::accept`: no state kept, no public-key work), so a flood of spoofed hellos costs
//! an HMAC each and no memory. A returning cookie starts an association task, within
//! [`UdpLimits`]: at most `max_associations` at once and `max_handshakes` of them still
//! handshaking (the ECDHE and ECDSA work); past either the hello is dropped. Once the handshake is
//! done the association reads the device's proven P-256 key, looks up the device it is registered
//! to (`udp_devices.json`; an unknown key is refused and the association closed), and builds a
//! `CloudConnection::datagram` inside a `DatagramSession`. From then on it is a device like any
//! other: the REST layer's calls, reads, events and OTA reach it through its mailbox, and the
//! connection's state lives in the same device task as a TCP device's.
//!
//! An association with nothing pending (no confirmable message unacknowledged, nothing queued, no update) parks, as
//! a TCP device's connection does: its `DatagramSession` (about 24 KB) becomes a `ParkedDatagramSession` (the
//! session above whole, the DTLS record keys, sequence number and replay window, the newest CoAP message ids and
//! their replies; 744 bytes), and its task waits on the inbox, the mailbox and the session's timer with nothing else
//! allocated. A datagram, a request or the timer rebuilds the session for one spell of work. A session that ends
//! sends the device a close_notify, and a device's close_notify ends it at once.

pub mod keys;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use spark_protocol::DeviceId;
use spark_protocol::dtls::{self, Accept, Server, ServerConfig};
use spark_protocol::session::Instant;
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, OtaOptions};
use spark_protocol::session::datagram::{DatagramSession, ParkedDatagramSession};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::devices::{DeviceSession, DeviceTask, LiveHub, Mailbox, SessionHost, Slots, StateKeys};
use super::{Cloud, lock};

/// The UDP listener's limits (see `SECURITY.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpLimits {
    /// Associations at most, handshaking or established; a returning cookie past it is dropped.
    pub max_associations: usize,
    /// Associations still in their DTLS handshake at most (each costs an ECDSA signature, its
    /// verification and an ECDH); a returning cookie past it is dropped.
    pub max_handshakes: usize,
    /// Time a new association has to finish its handshake and prove a registered key.
    pub handshake_timeout: Duration,
    /// The session's idle timeout: above CoAP's MAX_TRANSMIT_WAIT (93 s), since a repeated
    /// datagram proves nothing new to the session, and above the devices' keep-alive interval
    /// (Device OS pings after 23 minutes of quiet on cellular).
    pub idle_timeout: Duration,
}

impl UdpLimits {
    /// The defaults: 65,536 associations, 256 handshakes, 60 s to handshake, 30 minutes idle.
    pub const DEFAULT: UdpLimits = UdpLimits {
        max_associations: 65_536,
        max_handshakes: 256,
        handshake_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(30 * 60),
    };

    /// Sets both counts.
    #[must_use]
    pub const fn with(mut self, max_associations: usize, max_handshakes: usize) -> Self {
        self.max_associations = max_associations;
        self.max_handshakes = max_handshakes;
        self
    }
}

impl Default for UdpLimits {
    fn default() -> Self {
        UdpLimits::DEFAULT
    }
}

/// Datagrams queued for one association before more are dropped (UDP may drop; CoAP resends).
const QUEUE: usize = 64;
/// The largest datagram read.
const MAX_DATAGRAM: usize = 2048;

/// The associations by peer address: each one's serial and inbox.
type Table = Arc<Mutex<HashMap<SocketAddr, (u64, Arc<Inbox>)>>>;

/// An association's queue of datagrams from the socket's task. Lighter than a tokio channel, whose first block of
/// 32 slots (about 1 KiB) stays allocated for an idle device, or a `Notify`, whose waiting future an idle task would
/// carry: an empty queue here holds no allocation, and its waiter is the task's waker.
#[derive(Default)]
struct Inbox {
    inner: Mutex<InboxInner>,
    /// The association ended: nothing reads the queue any more.
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct InboxInner {
    queue: std::collections::VecDeque<Vec<u8>>,
    /// The association's task, while it waits for a datagram.
    waker: Option<Waker>,
}

/// Why [`Inbox::push`] did not queue a datagram.
enum PushError {
    /// [`QUEUE`] datagrams wait already: dropped (UDP may drop; CoAP resends).
    Full,
    /// The association ended.
    Closed,
}

impl Inbox {
    fn push(&self, datagram: &[u8]) -> Result<(), PushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        let mut inner = lock(&self.inner);
        if inner.queue.len() >= QUEUE {
            return Err(PushError::Full);
        }
        inner.queue.push_back(datagram.to_vec());
        let waker = inner.waker.take();
        drop(inner);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Ends the association: its task wakes and finds the inbox closed.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let waker = lock(&self.inner).waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The next datagram if one is queued.
    fn try_recv(&self) -> Option<Vec<u8>> {
        Self::pop(&mut lock(&self.inner))
    }

    fn pop(inner: &mut InboxInner) -> Option<Vec<u8>> {
        let d = inner.queue.pop_front();
        if d.is_some() && inner.queue.is_empty() {
            // A burst's queue is not kept while the device idles.
            inner.queue.shrink_to_fit();
        }
        d
    }

    fn is_empty(&self) -> bool {
        lock(&self.inner).queue.is_empty()
    }

    /// Ready when a datagram waits or the association was closed; otherwise the task of `cx` is woken by the next.
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = lock(&self.inner);
        if !inner.queue.is_empty() || self.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !inner
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            inner.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next datagram, once one is queued; `None` once the association was closed.
    async fn recv(&self) -> Option<Vec<u8>> {
        std::future::poll_fn(|cx| {
            if let Some(d) = self.try_recv() {
                return Poll::Ready(Some(d));
            }
            match self.poll_ready(cx) {
                // Closed, or a datagram came in between: the next poll takes it.
                Poll::Ready(()) if self.closed.load(Ordering::Acquire) => Poll::Ready(None),
                Poll::Ready(()) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// Binds `addr` (UDP) and serves devices in a task within `limits`; returns the bound address and the task.
pub async fn listen_udp(
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    addr: SocketAddr,
    limits: UdpLimits,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let socket = UdpSocket::bind(addr).await?;
    widen_receive_buffer(&socket);
    let socket = Arc::new(socket);
    let bound = socket.local_addr()?;
    Ok((bound, tokio::spawn(serve_udp(cloud, hub, socket, limits))))
}

/// The receive buffer asked for the listener's socket. Every device's datagrams arrive on this one socket, so the
/// default (about 208 KiB, a couple of hundred small datagrams with the kernel's per-packet overhead) overflows
/// whenever the reader falls behind for a moment: at 100,000 devices pinging every 15 s (about 6,700 datagrams a
/// second) the kernel dropped keep-alives (`RcvbufErrors` in `/proc/net/snmp`) until some devices gave up their
/// sessions. The kernel caps the size at `net.core.rmem_max` (4 MiB here, which holds several thousand datagrams).
const RECEIVE_BUFFER: usize = 16 << 20;

/// Asks for [`RECEIVE_BUFFER`] bytes of receive buffer on `socket`; says so on standard error when it got less than a
/// quarter of it.
fn widen_receive_buffer(socket: &UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    // Linux reports twice what it granted (the doubled room counts its bookkeeping).
    match socket.recv_buffer_size() {
        Ok(got) if got >= RECEIVE_BUFFER / 4 => {}
        got => eprintln!(
            "spark-cloud: the UDP socket's receive buffer is {got:?} bytes, not {RECEIVE_BUFFER} (raise \
             net.core.rmem_max): keep-alives may be dropped under load"
        ),
    }
}

/// The listener's clock: milliseconds since it started, for every association.
#[derive(Debug, Clone, Copy)]
struct Clock(std::time::Instant);

impl Clock {
    fn now(self) -> Instant {
        Instant::from_millis(u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn at(self, t: Instant) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.0) + Duration::from_millis(t.as_millis())
    }
}

/// Serves devices on `socket` until the task is aborted.
pub async fn serve_udp(
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    socket: Arc<UdpSocket>,
    limits: UdpLimits,
) {
    let clock = Clock(std::time::Instant::now());
    let mut rng = super::system_rng();
    let mut server: Server<16> =
        Server::new(ServerConfig::new(cloud.udp_server_key().clone()), &mut rng);
    let table: Table = Arc::default();
    let associations = Arc::new(Semaphore::new(limits.max_associations));
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    let serial = AtomicU64::new(0);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = [0u8; 512];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            // An ICMP error reported on the socket (some systems do): not worth a busy loop.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let datagram = &buf[..n];
        let hello = dtls::is_client_hello(datagram);
        let known = lock(&table).get(&peer).cloned();
        if let Some((_, inbox)) = &known {
            match inbox.push(datagram) {
                // A restarted device at the same address: its hello also goes to the listener below.
                Ok(()) | Err(PushError::Full) if !hello => continue,
                Ok(()) | Err(PushError::Full) => {}
                Err(PushError::Closed) => {
                    lock(&table).remove(&peer);
                }
            }
        }
        let key = peer.to_string();
        let Ok(accepted) = server.accept(clock.now(), key.as_bytes(), datagram, &mut rng, &mut out)
        else {
            continue;
        };
        match accepted {
            Accept::Ignore => {}
            Accept::HelloVerifyRequest(m) => {
                let _ = socket.send_to(&out[..m], peer).await;
            }
            Accept::Connection(conn) => {
                let Ok(place) = Arc::clone(&associations).try_acquire_owned() else {
                    continue;
                };
                let Ok(handshake) = Arc::clone(&handshakes).try_acquire_owned() else {
                    continue;
                };
                let Some(keys) = cloud.handshake_keys() else {
                    continue;
                };
                let id = serial.fetch_add(1, Ordering::Relaxed);
                let inbox = Arc::new(Inbox::default());
                // Replaces (and so ends) an earlier association of the same address.
                if let Some((_, old)) = lock(&table).insert(peer, (id, Arc::clone(&inbox))) {
                    old.close();
                }
                let association = Association {
                    cloud: Arc::clone(&cloud),
                    hub: Arc::clone(&hub),
                    socket: Arc::clone(&socket),
                    table: Arc::clone(&table),
                    peer,
                    serial: id,
                    clock,
                    limits,
                    inbox,
                };
                tokio::spawn(association.run(Box::new(Start {
                    conn,
                    keys,
                    slots: Slots::new(place, Some(handshake)),
                })));
            }
        }
    }
}

/// What a new association starts from (boxed, so that its task's future keeps none of it once the session is up):
/// the connection `Server::accept` gave, the server keys, and its places.
struct Start {
    conn: dtls::Connection,
    keys: super::rotation::LoadedKeys,
    slots: Slots,
}

/// One peer address's association.
struct Association {
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    socket: Arc<UdpSocket>,
    table: Table,
    peer: SocketAddr,
    serial: u64,
    clock: Clock,
    limits: UdpLimits,
    inbox: Arc<Inbox>,
}

/// An established association's session, as the device task sees it.
struct Open {
    session: DatagramSession<DeviceSession, super::SystemRng>,
    clock: Clock,
}

/// An idle association's session, parked.
type Parked = ParkedDatagramSession<DeviceSession>;

impl SessionHost for Open {
    fn now(&mut self) -> Instant {
        self.clock.now()
    }

    fn connection_mut(&mut self) -> &mut DeviceSession {
        self.session.session_mut()
    }

    /// Fast OTA in 512-byte chunks, as UDP devices take it: the chunks go as non-confirmable messages and the
    /// device names the ones it missed every few seconds, each counted again until it arrives, so the budget of
    /// missed chunks is far above the TCP dialect's 10.
    fn ota_options(&self) -> OtaOptions {
        let mut options = OtaOptions::default();
        options.fast = true;
        options.chunk_size = Some(UDP_OTA_CHUNK);
        options.max_missed_chunks = 2000;
        options
    }

    /// The DTLS handshake used the P-256 key, which `keys rotate` does not rotate.
    fn uses_rsa_server_key(&self) -> bool {
        false
    }
}

/// The value in `b`, its allocation given back now: moving out of a box with `*b` keeps the allocation until the
/// box's variable goes out of scope, which in a long-lived future is never (it kept a 9 KB handshake box per idle
/// association).
#[allow(clippy::boxed_local)] // The box is the point: it is freed when this returns.
fn unbox<T>(b: Box<T>) -> T {
    *b
}

/// The chunk size of an update over UDP (an Electron's).
pub const UDP_OTA_CHUNK: u16 = 512;

impl Drop for Association {
    fn drop(&mut self) {
        self.inbox.closed.store(true, Ordering::Release);
        let mut table = lock(&self.table);
        if table
            .get(&self.peer)
            .is_some_and(|(s, _)| *s == self.serial)
        {
            table.remove(&self.peer);
        }
    }
}

impl Association {
    async fn send(&self, bytes: &[u8]) {
        let _ = self.socket.send_to(bytes, self.peer).await;
    }

    /// The handshake, the key check, then the session until it ends. The task's own future keeps only what an idle
    /// association needs (this association's handles, its parked session, its device task and its wait): the
    /// handshake and every spell of work run in futures of their own, boxed and dropped when they end.
    async fn run(self, start: Box<Start>) {
        let Some((mut parked, mut task, mailbox)) = Box::pin(self.start(start)).await else {
            return;
        };
        loop {
            self.wait(&parked, &mailbox).await;
            parked = match Box::pin(self.resume(parked, &mut task, &mailbox)).await {
                Some(p) => p,
                None => return,
            };
        }
    }

    /// A parked session, rebuilt and run until it is quiet again (parked anew) or ends (`None`).
    async fn resume(
        &self,
        parked: Box<Parked>,
        task: &mut DeviceTask,
        mailbox: &Mailbox,
    ) -> Option<Box<Parked>> {
        let open = Open {
            session: DatagramSession::resume(
                unbox(parked),
                self.cloud.udp_server_key().clone(),
                dtls::TransportConfig::default(),
                super::system_rng(),
            ),
            clock: self.clock,
        };
        self.work(open, task, mailbox).await
    }

    /// The DTLS handshake, the key check, the session's first spell of work: the parked session, the device task
    /// and the mailbox, or `None` when the association ended.
    async fn start(
        &self,
        start: Box<Start>,
    ) -> Option<(Box<Parked>, Box<DeviceTask>, Arc<Mailbox>)> {
        let Start {
            mut conn,
            keys,
            mut slots,
        } = unbox(start);
        let inbox = Arc::clone(&self.inbox);
        // The handshake's buffer: dropped once it is done (an idle device keeps no buffer of MAX_DATAGRAM).
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let give_up = self.clock.now() + self.limits.handshake_timeout;
        // The DTLS handshake.
        loop {
            let now = self.clock.now();
            let failed = conn.handle_timeout(now).is_err();
            while let Ok(Some(n)) = conn.poll_transmit(&mut buf) {
                self.send(&buf[..n]).await;
            }
            if failed || now >= give_up {
                return None;
            }
            if conn.is_connected() {
                break;
            }
            let deadline = conn.poll_timeout().map_or(give_up, |t| t.min(give_up));
            tokio::select! {
                datagram = inbox.recv() => match datagram {
                    Some(d) => {
                        if conn.handle_datagram(self.clock.now(), &d).is_err() {
                            while let Ok(Some(n)) = conn.poll_transmit(&mut buf) {
                                self.send(&buf[..n]).await;
                            }
                            return None;
                        }
                    }
                    None => return None,
                },
                () = tokio::time::sleep_until(self.clock.at(deadline)) => {}
            }
        }
        // The key it proved, and the device that key is registered to.
        let device = match conn.peer_public_key() {
            Some(k) => self
                .cloud
                .store()
                .device_for_udp_key(&k)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let Some(device) = device.and_then(|d| d.parse::<DeviceId>().ok()) else {
            self.cloud.log_refusal(
                &format!("udp {}", self.peer),
                "its key is registered to no device",
            );
            conn.close();
            while let Ok(Some(n)) = conn.poll_transmit(&mut buf) {
                self.send(&buf[..n]).await;
            }
            return None;
        };
        drop(buf);
        // The handshake's place goes to the next device; the Hello exchange is the session's.
        slots.release_handshake();
        let now = self.clock.now();
        let server_key = keys.for_connection();
        let mailbox = Arc::new(Mailbox::default());
        mailbox.set_asked(Some(device));
        let mut config = CloudConfig::default();
        config.idle_timeout = self.limits.idle_timeout;
        let session = CloudConnection::datagram(
            now,
            server_key,
            StateKeys(Arc::clone(&self.cloud), Arc::clone(&mailbox)),
            super::system_rng(),
            config,
            device,
        );
        let open = Open {
            session: DatagramSession::new(session, conn, super::system_rng()),
            clock: self.clock,
        };
        let mut task = Box::new(DeviceTask::new(
            Arc::clone(&self.cloud),
            Arc::clone(&self.hub),
            keys,
            slots,
            Arc::clone(&mailbox),
        ));
        // The working state (the whole `DatagramSession`, about 24 KB, and the transmit buffer) lives in its own
        // allocation while the association has work; an idle one keeps only its parked form (the session above,
        // the DTLS record state and the recently seen CoAP ids, about 1 KB).
        let parked = self.work(open, &mut task, &mailbox).await?;
        Some((parked, task, mailbox))
    }

    /// Waits, parked, until the association has work: a datagram in its inbox, a request in `mailbox`, or the
    /// session's timer.
    async fn wait(&self, parked: &Parked, mailbox: &Mailbox) {
        let due = parked.poll_timeout().map(|t| self.clock.at(t));
        let mut timer = std::pin::pin!(due.map(tokio::time::sleep_until));
        std::future::poll_fn(|cx| {
            if mailbox.poll_ready(cx).is_ready() {
                return Poll::Ready(());
            }
            if self.inbox.poll_ready(cx).is_ready() {
                return Poll::Ready(());
            }
            match timer.as_mut().as_pin_mut() {
                Some(sleep) => sleep.poll(cx),
                None => Poll::Pending,
            }
        })
        .await;
    }

    /// Ends the association as a DTLS server does when its session ends (an idle timeout, a request never
    /// acknowledged, a session error): a close_notify, so a device still there starts over at once. Nothing goes
    /// out when DTLS itself failed or the device closed first.
    async fn close(&self, open: &mut Open, out: &mut [u8]) {
        let dtls = open.session.dtls_mut();
        dtls.close();
        while let Ok(Some(n)) = dtls.poll_transmit(out) {
            self.send(&out[..n]).await;
        }
    }

    /// Runs an open session until it is quiet and parks it (returning the parked form), or until it ends (`None`).
    async fn work(
        &self,
        mut open: Open,
        task: &mut DeviceTask,
        mailbox: &Mailbox,
    ) -> Option<Box<Parked>> {
        let inbox = &self.inbox;
        let out_len = open.session.max_transmit_len();
        let mut out = vec![0u8; out_len];
        if mailbox.kicked() || inbox.closed.load(Ordering::Acquire) {
            return None;
        }
        while let Some(command) = mailbox.take() {
            task.on_command(&mut open, command);
        }
        loop {
            let now = self.clock.now();
            let mut result = open.session.handle_timeout(now);
            // Whatever waited in the inbox (a parked association is woken once for all of it).
            while result.is_ok()
                && let Some(d) = inbox.try_recv()
            {
                result = open.session.handle_datagram(self.clock.now(), &d);
            }
            while let Some(event) = open.session.poll_event() {
                task.on_event(&mut open, event);
            }
            if result.is_ok() {
                loop {
                    match open.session.poll_transmit(now, &mut out) {
                        Ok(Some(n)) => self.send(&out[..n]).await,
                        Ok(None) => break,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
            }
            if let Err(e) = result {
                task.on_failure(&e);
                self.close(&mut open, &mut out).await;
                return None;
            }
            if mailbox.kicked() {
                return None;
            }
            // A request that comes after this wakes the parked wait at once (it polls the mailbox first).
            if inbox.is_empty() {
                match open.session.park(now) {
                    Ok(parked) => return Some(Box::new(parked)),
                    Err((session, _)) => open.session = session,
                }
            }
            let deadline = open
                .session
                .poll_timeout()
                .unwrap_or(now + Duration::from_secs(60));
            tokio::select! {
                datagram = inbox.recv() => match datagram {
                    Some(d) => {
                        if let Err(e) = open.session.handle_datagram(self.clock.now(), &d) {
                            task.on_failure(&e);
                            self.close(&mut open, &mut out).await;
                            return None;
                        }
                    }
                    None => return None,
                },
                () = std::future::poll_fn(|cx| mailbox.poll_ready(cx)) => {
                    if mailbox.kicked() {
                        return None;
                    }
                    while let Some(command) = mailbox.take() {
                        task.on_command(&mut open, command);
                    }
                }
                () = tokio::time::sleep_until(self.clock.at(deadline)) => {}
            }
        }
    }
}

#[cfg(test)]
mod footprint {
    /// What an idle UDP association keeps inline beside its task: the parked session (boxed), bounded at what the
    /// parked form left on x86_64 (744 bytes: the session 472, the DTLS record state about 100, the CoAP ids about
    /// 170). The live `DatagramSession` it replaces is about 24 KB; a field that grows the parked form should be
    /// dropped while idle.
    #[test]
    fn an_idle_association_keeps_a_small_parked_state() {
        let parked = size_of::<super::Parked>();
        let live = size_of::<super::Open>();
        eprintln!("parked {parked} bytes, live {live} bytes");
        assert!(parked <= 800, "the parked session takes {parked} bytes");
        assert!(live > 10 * parked, "the live session takes {live} bytes");
    }
}
