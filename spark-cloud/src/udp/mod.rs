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
//! their replies; 736 bytes). A parked association keeps no task: its parked session and its device task's state
//! wait in the association's entry (the map the socket's reader consults), whose waker is left in its inbox and its
//! mailbox, and its deadline is filed in the one timer of all parked associations (a map of deadlines the
//! listener's task sleeps on). The first datagram, request or deadline to come takes the parked state out and
//! spawns a task that rebuilds the session for one spell of work; a second finds the state taken, its datagram or
//! request queued to that task. The task ends when the session parks again, handing the state back, or when the
//! session ends. A session that ends sends the device a close_notify, and a device's close_notify ends it at once.
//! When the listener's task ends, so does every association.

pub mod keys;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use spark_protocol::DeviceId;
use spark_protocol::dtls::{self, Accept, Server, ServerConfig};
use spark_protocol::session::Instant;
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, OtaOptions};
use spark_protocol::session::datagram::{DatagramSession, ParkedDatagramSession};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, Semaphore};

use super::devices::{DeviceSession, DeviceTask, LiveHub, Mailbox, SessionHost, Slots, StateKeys};
use super::waiting::Waiting;
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

/// What every association of one listener shares: the cloud, the socket, the associations by peer address, and
/// the one timer of all parked associations.
struct Listener {
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    socket: Arc<UdpSocket>,
    /// The associations by peer address.
    table: Mutex<HashMap<SocketAddr, Arc<Entry>>>,
    /// The parked associations' deadlines, earliest first, each with its association's serial (one per parked
    /// association with a deadline; [`Entry::unpark`] takes its key out).
    timers: Mutex<BTreeMap<(Instant, u64), Arc<Entry>>>,
    /// Told when a deadline earlier than every other one is set.
    timer_moved: Notify,
    clock: Clock,
    limits: UdpLimits,
    /// Where a woken parked association's task is spawned (a waker may run on any thread).
    runtime: tokio::runtime::Handle,
}

impl Listener {
    /// The one timer of every parked association: wakes each whose deadline has passed, then sleeps until the next
    /// deadline or until an earlier one is set. Runs until the listener's task ends.
    async fn sweep(&self) {
        let mut due = Vec::new();
        loop {
            let now = self.clock.now();
            let next = {
                let mut timers = lock(&self.timers);
                while let Some(first) = timers.first_entry() {
                    if first.key().0 > now {
                        break;
                    }
                    let ((t, _), entry) = first.remove_entry();
                    due.push((t, entry));
                }
                timers.first_key_value().map(|(k, _)| k.0)
            };
            for (t, entry) in due.drain(..) {
                if let Some(idle) = entry.unpark(Some(t)) {
                    entry.spawn(idle);
                }
            }
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(self.clock.at(t)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = self.timer_moved.notified() => {}
                () = sleep => {}
            }
        }
    }
}

/// Ends every association when the listener's task ends (the cloud shutting down): the parked ones are dropped
/// here (their devices listed offline), the working ones find their inbox closed. Also breaks the cycles an
/// association and its listener make (the table and the timers hold the associations, which hold the listener).
struct Shutdown(Arc<Listener>);

impl Drop for Shutdown {
    fn drop(&mut self) {
        let entries: Vec<Arc<Entry>> = lock(&self.0.table).drain().map(|(_, e)| e).collect();
        // Dropped outside the lock.
        let timers = std::mem::take(&mut *lock(&self.0.timers));
        drop(timers);
        for entry in entries {
            let idle = entry.unpark(None);
            entry.inbox.close();
            drop(idle);
        }
    }
}

/// An association's queue of datagrams from the socket's task. Lighter than a tokio channel, whose first block of
/// 32 slots (about 1 KiB) stays allocated for an idle device, or a `Notify`, whose waiting future an idle task would
/// carry: an empty queue here holds no allocation, and its waiter is the task's waker.
#[derive(Default)]
struct Inbox {
    /// The datagrams, and what the next one wakes: the association's task while it waits for one, the association
    /// itself (see [`Entry::park`]) while it is parked.
    inner: Mutex<Waiting<Vec<u8>>>,
    /// The association ended: nothing reads the queue any more.
    closed: std::sync::atomic::AtomicBool,
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
        let woken = lock(&self.inner).push(datagram.to_vec(), QUEUE);
        let Ok(waker) = woken else {
            return Err(PushError::Full);
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Ends the association: its task wakes and finds the inbox closed.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let waker = lock(&self.inner).take_waker();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The next datagram if one is queued.
    fn try_recv(&self) -> Option<Vec<u8>> {
        lock(&self.inner).pop()
    }

    fn is_empty(&self) -> bool {
        lock(&self.inner).is_empty()
    }

    /// Ready when a datagram waits or the association was closed; otherwise the task of `cx` is woken by the next.
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let closed = self.closed.load(Ordering::Acquire);
        lock(&self.inner).poll_ready(cx, closed)
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

/// Serves devices on `socket` until the task is aborted; its end ends every association.
pub async fn serve_udp(
    cloud: Arc<Cloud>,
    hub: Arc<LiveHub>,
    socket: Arc<UdpSocket>,
    limits: UdpLimits,
) {
    let listener = Arc::new(Listener {
        cloud,
        hub,
        socket,
        table: Mutex::default(),
        timers: Mutex::default(),
        timer_moved: Notify::new(),
        clock: Clock(std::time::Instant::now()),
        limits,
        runtime: tokio::runtime::Handle::current(),
    });
    let _shutdown = Shutdown(Arc::clone(&listener));
    tokio::select! {
        () = listener.sweep() => {}
        () = receive(&listener) => {}
    }
}

/// The socket's reader: a datagram of a known peer goes to its association's inbox (waking it, parked or not),
/// a hello to the stateless cookie exchange, a returning cookie to a new association.
async fn receive(listener: &Arc<Listener>) {
    let cloud = &listener.cloud;
    let socket = &listener.socket;
    let clock = listener.clock;
    let mut rng = super::system_rng();
    let mut server: Server<16> =
        Server::new(ServerConfig::new(cloud.udp_server_key().clone()), &mut rng);
    let associations = Arc::new(Semaphore::new(listener.limits.max_associations));
    let handshakes = Arc::new(Semaphore::new(listener.limits.max_handshakes));
    let mut serial = 0u64;
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
        let known = lock(&listener.table).get(&peer).cloned();
        if let Some(entry) = &known {
            match entry.inbox.push(datagram) {
                // A restarted device at the same address: its hello also goes to the listener below.
                Ok(()) | Err(PushError::Full) if !hello => continue,
                Ok(()) | Err(PushError::Full) => {}
                Err(PushError::Closed) => {
                    let mut table = lock(&listener.table);
                    if table.get(&peer).is_some_and(|e| e.serial == entry.serial) {
                        table.remove(&peer);
                    }
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
                serial += 1;
                let entry = Arc::new(Entry {
                    listener: Arc::clone(listener),
                    peer,
                    serial,
                    inbox: Inbox::default(),
                    parked: Mutex::new(None),
                });
                // Replaces (and so ends) an earlier association of the same address.
                if let Some(old) = lock(&listener.table).insert(peer, Arc::clone(&entry)) {
                    old.inbox.close();
                }
                tokio::spawn(entry.run(Box::new(Start {
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

/// One peer address's association. While it works (its handshake, then each spell of work) a task of its own
/// drives it; while it is parked no task exists: its state waits in `parked`, and the association itself is the
/// waker left in its inbox and its mailbox (the first datagram or request spawns the task that resumes it; a later
/// one finds the state taken and is queued to that task) and in the listener's timers.
struct Entry {
    listener: Arc<Listener>,
    peer: SocketAddr,
    serial: u64,
    inbox: Inbox,
    /// The parked state, while no task runs the association.
    parked: Mutex<Option<Box<Idle>>>,
}

/// A parked association's state: the session, the device task's state (its mailbox within), and the deadline it
/// is filed under in the listener's timers.
struct Idle {
    session: Parked,
    task: DeviceTask,
    due: Option<Instant>,
}

impl std::task::Wake for Entry {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// A datagram or a request for a parked association: the first to come takes the parked state and spawns the
    /// task that resumes it; one that finds the state taken (the task runs, or parks and checks again) does nothing
    /// more, its datagram or request being queued already.
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(idle) = self.unpark(None) {
            self.spawn(idle);
        }
    }
}

/// Ends the association when its task ends, unless the task handed the state back to [`Entry::parked`].
struct Ending<'a>(Option<&'a Entry>);

impl Ending<'_> {
    fn parked(mut self) {
        self.0 = None;
    }
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.0 {
            entry.end();
        }
    }
}

/// An established association's session, as the device task sees it.
struct Open {
    session: DatagramSession<DeviceSession, super::SessionRng>,
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

impl Entry {
    async fn send(&self, bytes: &[u8]) {
        let _ = self.listener.socket.send_to(bytes, self.peer).await;
    }

    /// The association's first task: the handshake, the key check and the session's first spell of work, then
    /// the session until it parks (the task ends, the state waits in the association) or ends.
    async fn run(self: Arc<Self>, start: Box<Start>) {
        let ending = Ending(Some(&*self));
        let Some(idle) = Box::pin(self.start(start)).await else {
            return;
        };
        self.settle(idle, ending).await;
    }

    /// The task of a parked association woken by a datagram, a request or its deadline: the session, rebuilt and
    /// run until it parks again or ends.
    async fn resumed(self: Arc<Self>, idle: Box<Idle>) {
        let ending = Ending(Some(&*self));
        let Some(idle) = Box::pin(self.resume(idle)).await else {
            return;
        };
        self.settle(idle, ending).await;
    }

    /// Parks `idle`, or, when work came in while it parked, runs it again, until it parks or the session ends.
    async fn settle(self: &Arc<Self>, mut idle: Box<Idle>, ending: Ending<'_>) {
        loop {
            match self.park(idle) {
                None => return ending.parked(),
                Some(back) => idle = back,
            }
            match Box::pin(self.resume(idle)).await {
                Some(next) => idle = next,
                None => return,
            }
        }
    }

    /// Spawns the task that resumes the parked state `idle`, taken out of this association.
    fn spawn(self: &Arc<Self>, idle: Box<Idle>) {
        let task = Arc::clone(self).resumed(idle);
        self.listener.runtime.spawn(task);
    }

    /// Hands `idle` to the association, files its deadline and leaves the association as the waker of its inbox
    /// and mailbox: `None` when parked, or `idle` back when a datagram or a request is waiting already.
    ///
    /// The wakers are left under the lock of [`Entry::parked`], before the state is put there: a wake that comes
    /// after them waits for the lock and finds the state; one that came before left its datagram or request in a
    /// queue these polls see. And no task runs the association meanwhile whose own waker they could replace.
    fn park(self: &Arc<Self>, mut idle: Box<Idle>) -> Option<Box<Idle>> {
        let mailbox = Arc::clone(idle.task.mailbox());
        let waker = Waker::from(Arc::clone(self));
        let mut cx = Context::from_waker(&waker);
        let mut slot = lock(&self.parked);
        // Both polled, so that both keep the waker.
        let quiet =
            mailbox.poll_ready(&mut cx).is_pending() & self.inbox.poll_ready(&mut cx).is_pending();
        if !quiet {
            return Some(idle);
        }
        idle.due = idle.session.poll_timeout();
        if let Some(t) = idle.due {
            let mut timers = lock(&self.listener.timers);
            let earliest = timers.first_key_value().is_none_or(|(k, _)| t < k.0);
            timers.insert((t, self.serial), Arc::clone(self));
            if earliest {
                self.listener.timer_moved.notify_one();
            }
        }
        *slot = Some(idle);
        None
    }

    /// The parked state, taken out (its deadline with it), if the association is parked; with `due`, only if it
    /// is parked under that deadline (a timer that fired for an earlier parking finds nothing).
    fn unpark(&self, due: Option<Instant>) -> Option<Box<Idle>> {
        let mut slot = lock(&self.parked);
        if due.is_some() && slot.as_ref().is_none_or(|idle| idle.due != due) {
            return None;
        }
        let idle = slot.take()?;
        // Under the slot's lock, so that it cannot take out the key of a parking that follows.
        if let Some(t) = idle.due {
            lock(&self.listener.timers).remove(&(t, self.serial));
        }
        drop(slot);
        Some(idle)
    }

    /// The association ended: nothing reads its inbox any more, and its address is free.
    fn end(&self) {
        // Also drops the waker the inbox may hold (the association itself).
        self.inbox.close();
        let mut table = lock(&self.listener.table);
        if table
            .get(&self.peer)
            .is_some_and(|e| e.serial == self.serial)
        {
            table.remove(&self.peer);
        }
    }

    /// A parked session, rebuilt and run until it is quiet again (parked anew) or ends (`None`).
    async fn resume(&self, idle: Box<Idle>) -> Option<Box<Idle>> {
        let Idle {
            session, mut task, ..
        } = unbox(idle);
        let open = Open {
            session: DatagramSession::resume(
                session,
                self.listener.cloud.udp_server_key().clone(),
                dtls::TransportConfig::default(),
                super::SessionRng,
            ),
            clock: self.listener.clock,
        };
        let mailbox = Arc::clone(task.mailbox());
        let session = self.work(open, &mut task, &mailbox).await?;
        Some(Box::new(Idle {
            session,
            task,
            due: None,
        }))
    }

    /// The DTLS handshake, the key check, the session's first spell of work: the parked state, or `None` when the
    /// association ended.
    async fn start(&self, start: Box<Start>) -> Option<Box<Idle>> {
        let Start {
            mut conn,
            keys,
            mut slots,
        } = unbox(start);
        let inbox = &self.inbox;
        // The handshake's buffer: dropped once it is done (an idle device keeps no buffer of MAX_DATAGRAM).
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let give_up = self.listener.clock.now() + self.listener.limits.handshake_timeout;
        // The DTLS handshake.
        loop {
            let now = self.listener.clock.now();
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
                        if conn.handle_datagram(self.listener.clock.now(), &d).is_err() {
                            while let Ok(Some(n)) = conn.poll_transmit(&mut buf) {
                                self.send(&buf[..n]).await;
                            }
                            return None;
                        }
                    }
                    None => return None,
                },
                () = tokio::time::sleep_until(self.listener.clock.at(deadline)) => {}
            }
        }
        // The key it proved, and the device that key is registered to.
        let device = match conn.peer_public_key() {
            Some(k) => self
                .listener
                .cloud
                .store()
                .device_for_udp_key(&k)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let Some(device) = device.and_then(|d| d.parse::<DeviceId>().ok()) else {
            self.listener.cloud.log_refusal(
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
        let now = self.listener.clock.now();
        let server_key = keys.for_connection();
        let mailbox = Arc::new(Mailbox::default());
        mailbox.set_asked(Some(device));
        let mut config = CloudConfig::default();
        config.idle_timeout = self.listener.limits.idle_timeout;
        let session = CloudConnection::datagram(
            now,
            server_key,
            StateKeys(Arc::clone(&self.listener.cloud), Arc::clone(&mailbox)),
            super::SessionRng,
            config,
            device,
        );
        let open = Open {
            session: DatagramSession::new(session, conn, super::SessionRng),
            clock: self.listener.clock,
        };
        let mut task = DeviceTask::new(
            Arc::clone(&self.listener.cloud),
            Arc::clone(&self.listener.hub),
            keys,
            slots,
            Arc::clone(&mailbox),
        );
        // The working state (the whole `DatagramSession`, about 24 KB, and the transmit buffer) lives in its own
        // allocation while the association has work; an idle one keeps only its parked form (the session above,
        // the DTLS record state and the recently seen CoAP ids, about 1 KB).
        let session = self.work(open, &mut task, &mailbox).await?;
        Some(Box::new(Idle {
            session,
            task,
            due: None,
        }))
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
    ) -> Option<Parked> {
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
            let now = self.listener.clock.now();
            let mut result = open.session.handle_timeout(now);
            // Whatever waited in the inbox (a parked association is woken once for all of it).
            while result.is_ok()
                && let Some(d) = inbox.try_recv()
            {
                result = open.session.handle_datagram(self.listener.clock.now(), &d);
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
                    Ok(parked) => return Some(parked),
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
                        if let Err(e) = open.session.handle_datagram(self.listener.clock.now(), &d) {
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
                () = tokio::time::sleep_until(self.listener.clock.at(deadline)) => {}
            }
        }
    }
}

#[cfg(test)]
mod footprint {
    /// What an idle UDP association keeps: no task, only its entry (the handles, the inbox, the slot) and its
    /// parked state (the parked session, the device task's state, its deadline), each one allocation. Bounded at
    /// what they took on x86_64 when parked associations gave up their tasks (920 and 128 bytes; the task was about
    /// 940 beside them); the live `DatagramSession` the parked session replaces is about 24 KB.
    #[test]
    fn an_idle_association_keeps_a_small_parked_state() {
        let parked = size_of::<super::Parked>();
        let live = size_of::<super::Open>();
        let idle = size_of::<super::Idle>();
        let entry = size_of::<super::Entry>();
        eprintln!("parked {parked} bytes, live {live}, parked state {idle}, entry {entry}");
        assert!(parked <= 800, "the parked session takes {parked} bytes");
        assert!(live > 10 * parked, "the live session takes {live} bytes");
        assert!(idle <= 928, "the parked state takes {idle} bytes");
        assert!(entry <= 128, "the entry takes {entry} bytes");
    }
}
