//! The event bus: fan-out of published events to server-sent-event subscribers.
//!
//! Each event is serialised once into its SSE frame (`event: <name>\n data: {json}\n\n`), and the frame's bytes are
//! appended to the output buffer of each subscriber it matches (one growing buffer per stream, so a
//! delivery allocates nothing and the stream takes every queued frame as one chunk). A subscriber is removed from
//! the bus the moment its stream is dropped (the HTTP connection closed), and a subscriber whose queue is full
//! loses that event (counted) rather than slowing the publishers down.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use serde::Serialize;

use spark_protocol::DeviceId;

use super::encoding::{ISO8601_LEN, iso8601_into};

/// Events a subscriber may have queued before further ones are dropped for it.
pub const SUBSCRIBER_QUEUE: usize = 8192;
/// Silence after which a stream gets a keep-alive newline (as the original local cloud did).
pub const KEEP_ALIVE: Duration = Duration::from_secs(9);
/// The most bytes one body chunk gathers from queued frames.
const MAX_CHUNK: usize = 64 * 1024;

/// One published event, already framed for SSE.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event name.
    pub name: Arc<str>,
    /// The user that owns it (the owner of the publishing device, or the publishing user); `None` for an unowned
    /// device.
    pub owner: Option<Arc<str>>,
    /// The publishing device, when a device published it.
    pub device: Option<DeviceId>,
    /// Whether it is public.
    pub public: bool,
    /// The SSE frame.
    pub frame: Bytes,
}

/// An event as the bus matches and delivers it, borrowed: what [`Event::view`] gives, and what the device listener
/// builds without allocating (its frame written into a buffer it reuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    /// The event name.
    pub name: &'a str,
    /// The user that owns it; `None` for an unowned device.
    pub owner: Option<&'a str>,
    /// The publishing device, when a device published it.
    pub device: Option<DeviceId>,
    /// Whether it is public.
    pub public: bool,
    /// The SSE frame.
    pub frame: &'a [u8],
}

/// The fixed bytes of a frame: `event: `, `\ndata: {"data":`, the other keys and quotes, `}\n\n`.
const FRAME_OVERHEAD: usize = 80;

/// Writes `text` as a JSON string: quoted, with `"`, `\\` and control characters escaped the way `serde_json` does
/// (`\b \f \n \r \t` by name, the rest as `\u00XX`; everything else, `/` and non-ASCII included, as is).
fn json_string(out: &mut BytesMut, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\"");
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let named: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        plain = i + 1;
        if named.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(named);
        }
    }
    out.extend_from_slice(&bytes[plain..]);
    out.extend_from_slice(b"\"");
}

/// `value` in decimal, written at the end of `buf`.
fn decimal(mut value: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[at..];
        }
    }
}

/// Who published an event: what its `coreid` says, whose it is, and the device, if a device published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publisher<'a> {
    /// The `coreid` the event carries: the device id, the user id for an API publish, or a source name.
    pub coreid: &'a str,
    /// The user it belongs to; `None` for an unowned device.
    pub owner: Option<&'a str>,
    /// The publishing device.
    pub device: Option<DeviceId>,
}

impl<'a> Publisher<'a> {
    /// Published through the API (or by the cloud itself) as `coreid`, for `owner`.
    #[must_use]
    pub fn user(coreid: &'a str, owner: &'a str) -> Publisher<'a> {
        Publisher {
            coreid,
            owner: Some(owner),
            device: None,
        }
    }

    /// Published by `device` (its id as text), owned by `owner`. Devices publish under their own (valid) id;
    /// text that is not one names no device.
    #[must_use]
    pub fn device(device: &'a str, owner: Option<&'a str>) -> Publisher<'a> {
        Publisher {
            coreid: device,
            owner,
            device: device.parse().ok(),
        }
    }
}

impl Event {
    /// Builds an event and its frame.
    #[must_use]
    pub fn new(
        name: &str,
        data: Option<&str>,
        ttl: u32,
        public: bool,
        published_at: SystemTime,
        from: Publisher<'_>,
    ) -> Event {
        // The JSON is written straight into the frame (one allocation), escaped as `serde_json` escapes strings.
        let mut frame = BytesMut::new();
        write_frame(&mut frame, name, data, ttl, published_at, from.coreid);
        Event {
            name: name.into(),
            owner: from.owner.map(Into::into),
            device: from.device,
            public,
            frame: frame.freeze(),
        }
    }

    /// The event, borrowed.
    #[must_use]
    pub fn view(&self) -> EventView<'_> {
        EventView {
            name: &self.name,
            owner: self.owner.as_deref(),
            device: self.device,
            public: self.public,
            frame: &self.frame,
        }
    }
}

/// Appends the SSE frame of an event to `frame`: `event: <name>`, then the JSON of its data, TTL, time and `coreid`.
pub fn write_frame(
    frame: &mut BytesMut,
    name: &str,
    data: Option<&str>,
    ttl: u32,
    published_at: SystemTime,
    coreid: &str,
) {
    let mut stamp = [0u8; ISO8601_LEN];
    let stamp = iso8601_into(published_at, &mut stamp);
    let mut ttl_digits = [0u8; 10];
    let ttl_text = decimal(ttl, &mut ttl_digits);
    frame.reserve(
        name.len()
            + data.map_or(4, |d| d.len() + 2)
            + coreid.len()
            + ttl_text.len()
            + stamp.len()
            + FRAME_OVERHEAD,
    );
    {
        frame.extend_from_slice(b"event: ");
        // A line break in a name would split the SSE frame; names are validated before, this keeps the frame sound.
        for &b in name.as_bytes() {
            frame.extend_from_slice(if b == b'\n' || b == b'\r' {
                b" "
            } else {
                core::slice::from_ref(&b)
            });
        }
        frame.extend_from_slice(b"\ndata: {\"data\":");
        match data {
            Some(d) => json_string(frame, d),
            None => frame.extend_from_slice(b"null"),
        }
        frame.extend_from_slice(b",\"ttl\":\"");
        frame.extend_from_slice(ttl_text);
        frame.extend_from_slice(b"\",\"published_at\":\"");
        frame.extend_from_slice(stamp);
        frame.extend_from_slice(b"\",\"coreid\":");
        json_string(frame, coreid);
        frame.extend_from_slice(b"}\n\n");
    }
}

/// Which events a subscriber receives: the workspace's one subscription scope. Here
/// [`Scope::All`] is `/v1/events` (public events and the user's own private ones),
/// [`Scope::MyDevices`] is `/v1/devices/events` and [`Scope::Device`] is `/v1/devices/:id/events`
/// (private events only for the device's owner).
pub use spark_protocol::session::Scope;

/// A subscriber's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The subscribing user's id.
    pub user: String,
    /// Which events.
    pub scope: Scope,
    /// Only names starting with this (empty = all).
    pub prefix: String,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_view(&event.view())
    }

    /// Whether the borrowed `event` passes.
    pub fn matches_view(&self, event: &EventView<'_>) -> bool {
        if !event.name.starts_with(self.prefix.as_str()) {
            return false;
        }
        let own = event.owner == Some(self.user.as_str());
        match &self.scope {
            Scope::All => event.public || own,
            Scope::MyDevices => own && event.device.is_some(),
            Scope::Device(id) => event.device == Some(*id) && (event.public || own),
            // A scope added to the shared enum later passes nothing until it is given a meaning here.
            _ => false,
        }
    }
}

/// The credential a stream was opened with: the stream ends when it is revoked or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Which token (its digest, as the state directory keys it).
    pub token: String,
    /// The user it belongs to.
    pub user: String,
    /// When it expires (`None` = never).
    pub expires_at: Option<SystemTime>,
    /// When it was issued, in seconds since the epoch (`None`: before the cloud recorded it, older than any
    /// cut-off).
    pub issued_at: Option<u64>,
}

impl Credential {
    fn expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

struct Subscriber {
    filter: Filter,
    credential: Option<Credential>,
    outlet: Arc<Outlet>,
}

impl Drop for Subscriber {
    /// Detached from the bus (its stream dropped, its credential revoked or expired): the stream ends once it has
    /// read what was queued.
    fn drop(&mut self) {
        let waker = {
            let mut queued = super::lock(&self.outlet.queued);
            queued.ended = true;
            queued.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A subscriber's output: the frames queued for it, back to back in one buffer, and the waker of its stream.
#[derive(Debug, Default)]
struct Outlet {
    queued: Mutex<Queued>,
}

#[derive(Debug, Default)]
struct Queued {
    /// The queued frames' bytes, in order.
    bytes: BytesMut,
    /// The length of each queued frame (at most [`SUBSCRIBER_QUEUE`] of them).
    lens: VecDeque<u32>,
    /// The stream's task, while it waits for a frame.
    waker: Option<Waker>,
    /// The bus let the subscriber go: no frame will follow the queued ones.
    ended: bool,
}

thread_local! {
    /// The wakes held back on this thread by a [`WakeBatch`]; `None` while none is open.
    static HELD_WAKES: std::cell::RefCell<Option<Vec<Waker>>> = const { std::cell::RefCell::new(None) };
}

/// Holds back the wake-ups of the streams that the events published on this thread meanwhile reach, and wakes each
/// once when dropped: a publisher with a batch of events (a busy device's read) wakes a stream once for the batch
/// rather than for each event. Never hold it across an `.await`.
#[derive(Debug)]
#[must_use = "the held wakes happen when the batch is dropped"]
pub struct WakeBatch {
    /// Whether this batch opened the thread's hold (an inner batch leaves it to the outer one).
    outer: bool,
}

impl WakeBatch {
    /// Opens a batch on this thread.
    pub fn new() -> WakeBatch {
        let outer = HELD_WAKES.with_borrow_mut(|held| {
            if held.is_some() {
                return false;
            }
            *held = Some(Vec::new());
            true
        });
        WakeBatch { outer }
    }
}

impl Default for WakeBatch {
    fn default() -> Self {
        WakeBatch::new()
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let held = HELD_WAKES.with_borrow_mut(Option::take).unwrap_or_default();
        for waker in held {
            waker.wake();
        }
    }
}

/// Wakes `waker` now, or when the thread's [`WakeBatch`] ends.
fn wake(waker: Waker) {
    let waker = HELD_WAKES.with_borrow_mut(|held| match held {
        Some(held) => {
            // A stream's waker is taken by the first frame that reaches it, so each stream is held about once.
            held.push(waker);
            None
        }
        None => Some(waker),
    });
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl Outlet {
    /// Appends `frame`, or returns `false` (the queue is full). The waiting stream is woken (at the end of the
    /// thread's [`WakeBatch`], if one is open).
    fn offer(&self, frame: &[u8]) -> bool {
        let waker = {
            let mut queued = super::lock(&self.queued);
            if queued.lens.len() >= SUBSCRIBER_QUEUE {
                return false;
            }
            queued.bytes.extend_from_slice(frame);
            queued
                .lens
                .push_back(u32::try_from(frame.len()).unwrap_or(u32::MAX));
            queued.waker.take()
        };
        if let Some(w) = waker {
            wake(w);
        }
        true
    }

    /// Takes queued whole frames, at least one and up to `max` bytes (or the one frame that crosses it): `None`
    /// once the subscriber is detached and everything queued was taken; `Pending` (the waker kept) while nothing
    /// is queued.
    fn poll_take(&self, cx: &mut Context<'_>, max: usize) -> Poll<Option<Bytes>> {
        let mut queued = super::lock(&self.queued);
        let mut len = 0usize;
        while len < max {
            match queued.lens.pop_front() {
                Some(n) => len += n as usize,
                None => break,
            }
        }
        if len > 0 {
            let len = len.min(queued.bytes.len());
            return Poll::Ready(Some(queued.bytes.split_to(len).freeze()));
        }
        if queued.ended {
            return Poll::Ready(None);
        }
        if !queued
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            queued.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Counters of the bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BusStats {
    /// Subscribers attached now.
    pub subscribers: usize,
    /// Events published since start.
    pub published: u64,
    /// Frames queued to subscribers since start.
    pub delivered: u64,
    /// Frames dropped because a subscriber's queue was full.
    pub dropped: u64,
}

/// The subscribers, grouped by their user: a private event can only match its owner's subscribers (every scope
/// asks for `public || own`), so publishing it visits that user's group alone instead of every subscriber.
#[derive(Default)]
struct Subscribers {
    by_user: HashMap<String, HashMap<u64, Subscriber>>,
}

impl Subscribers {
    fn len(&self) -> usize {
        self.by_user.values().map(HashMap::len).sum()
    }

    fn insert(&mut self, id: u64, sub: Subscriber) {
        self.by_user
            .entry(sub.filter.user.clone())
            .or_default()
            .insert(id, sub);
    }

    fn remove(&mut self, user: &str, id: u64) {
        if let Some(group) = self.by_user.get_mut(user) {
            group.remove(&id);
            if group.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Subscriber) -> bool) {
        self.by_user.retain(|_, group| {
            group.retain(|_, sub| keep(sub));
            !group.is_empty()
        });
    }
}

/// What one publish did to one group of subscribers.
#[derive(Default)]
struct Offered {
    delivered: u64,
    dropped: u64,
}

impl Offered {
    /// Offers `event` to each subscriber of `group` it matches, dropping subscribers that expired or whose
    /// stream is gone.
    fn offer_to(
        &mut self,
        group: &mut HashMap<u64, Subscriber>,
        event: &EventView<'_>,
        now: SystemTime,
    ) {
        group.retain(|_, sub| {
            if sub.credential.as_ref().is_some_and(|c| c.expired(now)) {
                return false;
            }
            // The stream's end holds the other reference; without it nobody reads.
            if Arc::strong_count(&sub.outlet) < 2 {
                return false;
            }
            if !sub.filter.matches_view(event) {
                return true;
            }
            if sub.outlet.offer(event.frame) {
                self.delivered += 1;
            } else {
                self.dropped += 1;
            }
            true
        });
    }
}

/// Where a node on a cluster bus sends the events published here (see [`EventBus::set_relay`]).
pub type Relay = Box<dyn Fn(&Event) + Send + Sync>;

/// The fan-out hub of events.
#[derive(Default)]
pub struct EventBus {
    subscribers: Mutex<Subscribers>,
    relay: std::sync::OnceLock<Relay>,
    next_id: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl core::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventBus")
            .field("stats", &self.stats())
            .finish()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Arc<EventBus> {
        Arc::new(EventBus::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        super::lock(&self.subscribers)
    }

    /// Attaches a subscriber; it stays attached until the returned [`Subscription`] is dropped.
    pub fn subscribe(self: &Arc<Self>, filter: Filter) -> Subscription {
        self.attach(filter, None)
    }

    /// Attaches a subscriber that holds `credential`: it is detached, and its stream ends, when the credential
    /// expires or is revoked ([`EventBus::end_token`], [`EventBus::end_user`]).
    pub fn subscribe_with(
        self: &Arc<Self>,
        filter: Filter,
        credential: Credential,
    ) -> Subscription {
        self.attach(filter, Some(credential))
    }

    fn attach(self: &Arc<Self>, filter: Filter, credential: Option<Credential>) -> Subscription {
        let outlet = Arc::new(Outlet::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let expires_at = credential.as_ref().and_then(|c| c.expires_at);
        let user = filter.user.clone();
        self.lock().insert(
            id,
            Subscriber {
                filter,
                credential,
                outlet: Arc::clone(&outlet),
            },
        );
        Subscription {
            bus: Arc::clone(self),
            id,
            user,
            outlet,
            expires_at,
        }
    }

    /// Ends every stream opened with the token of digest `token` (it was revoked).
    pub fn end_token(&self, token: &str) {
        self.lock()
            .retain(|s| s.credential.as_ref().is_none_or(|c| c.token != token));
    }

    /// Ends every stream opened with any of `user`'s tokens.
    pub fn end_user(&self, user: &str) {
        self.lock()
            .retain(|s| s.credential.as_ref().is_none_or(|c| c.user != user));
    }

    /// Ends every stream opened with a token issued before `cutoff` (seconds since the epoch): the cloud-wide
    /// cut-off moved, on this node or another.
    pub fn end_issued_before(&self, cutoff: u64) {
        self.lock().retain(|s| {
            s.credential
                .as_ref()
                .is_none_or(|c| c.issued_at.unwrap_or(0) >= cutoff)
        });
    }

    /// Publishes `event` to every matching subscriber: a public event to all of them, a private one to its owner's;
    /// on a cluster bus, to the other nodes as well (see [`EventBus::set_relay`]).
    pub fn publish(&self, event: &Event) {
        self.publish_at(event, SystemTime::now());
    }

    /// [`EventBus::publish`] with the time already read (for the credentials' expiry).
    pub(crate) fn publish_at(&self, event: &Event, now: SystemTime) {
        self.offer(&event.view(), now);
        if let Some(relay) = self.relay.get() {
            relay(event);
        }
    }

    /// [`EventBus::publish_at`] for a borrowed event: `owned` builds the owned event only when a relay takes it.
    pub(crate) fn publish_view_at(
        &self,
        event: &EventView<'_>,
        now: SystemTime,
        owned: impl FnOnce() -> Event,
    ) {
        self.offer(event, now);
        if let Some(relay) = self.relay.get() {
            relay(&owned());
        }
    }

    /// Hands every event published here to `relay` as well (the cluster bus; one relay, a second is refused).
    /// Returns whether it was set.
    pub fn set_relay(&self, relay: Relay) -> bool {
        self.relay.set(relay).is_ok()
    }

    /// Fans out an event another node published: to this bus's subscribers only, never back to the relay.
    pub fn publish_from_peer(&self, event: &Event) {
        self.offer(&event.view(), SystemTime::now());
    }

    fn offer(&self, event: &EventView<'_>, now: SystemTime) {
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut offered = Offered::default();
        let mut subscribers = self.lock();
        if event.public {
            subscribers.by_user.retain(|_, group| {
                offered.offer_to(group, event, now);
                !group.is_empty()
            });
        } else if let Some(owner) = event.owner
            && let Some(group) = subscribers.by_user.get_mut(owner)
        {
            offered.offer_to(group, event, now);
            if group.is_empty() {
                subscribers.by_user.remove(owner);
            }
        }
        drop(subscribers);
        self.delivered
            .fetch_add(offered.delivered, Ordering::Relaxed);
        self.dropped.fetch_add(offered.dropped, Ordering::Relaxed);
    }

    /// The bus's counters.
    pub fn stats(&self) -> BusStats {
        BusStats {
            subscribers: self.lock().len(),
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A subscriber's end: a queue of frames; dropping it detaches the subscriber at once.
#[derive(Debug)]
pub struct Subscription {
    bus: Arc<EventBus>,
    id: u64,
    user: String,
    outlet: Arc<Outlet>,
    expires_at: Option<SystemTime>,
}

impl Subscription {
    /// The next frame; `None` once the bus detached the subscriber (its credential was revoked or expired) and
    /// every frame queued before was taken.
    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.outlet.poll_take(cx, 1)).await
    }

    /// Queued whole frames, at least one and up to `max` bytes (or the one frame that crosses it), as one chunk.
    fn poll_chunk(&self, cx: &mut Context<'_>, max: usize) -> Poll<Option<Bytes>> {
        self.outlet.poll_take(cx, max)
    }

    /// Turns this subscription into an SSE response body (`:ok` first, keep-alives after [`KEEP_ALIVE`] of
    /// silence, queued frames gathered into chunks).
    pub fn into_body(self) -> SseBody {
        let expiry = self.expires_at.map(|at| {
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(std::time::Duration::ZERO);
            Box::pin(tokio::time::sleep(left))
        });
        SseBody {
            sub: self,
            greeted: false,
            keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
            expiry,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.bus.lock().remove(&self.user, self.id);
    }
}

/// The body of an event stream response.
#[derive(Debug)]
pub struct SseBody {
    sub: Subscription,
    greeted: bool,
    keep_alive: Pin<Box<tokio::time::Sleep>>,
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SseBody {
    fn rearm(&mut self) {
        let at = tokio::time::Instant::now() + KEEP_ALIVE;
        self.keep_alive.as_mut().reset(at);
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(expiry) = &mut this.expiry
            && expiry.as_mut().poll(cx).is_ready()
        {
            // The token expired: the stream ends.
            return Poll::Ready(None);
        }
        if !this.greeted {
            this.greeted = true;
            this.rearm();
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b":ok\n\n")))));
        }
        // Every frame queued (up to a chunk's worth) leaves at once, straight from the subscriber's buffer.
        match this.sub.poll_chunk(cx, MAX_CHUNK) {
            Poll::Ready(Some(chunk)) => {
                this.rearm();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.keep_alive.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.rearm();
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"\n")))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const D1: &str = "0123456789abcdef01234561";
    const D2: &str = "0123456789abcdef01234562";
    const D3: &str = "0123456789abcdef01234563";

    fn event(name: &str, public: bool, owner: Option<&str>, device: Option<&str>) -> Event {
        let from = match device {
            Some(device) => Publisher::device(device, owner),
            None => Publisher {
                coreid: "u",
                owner,
                device: None,
            },
        };
        Event::new(name, Some("d"), 60, public, UNIX_EPOCH, from)
    }

    #[test]
    fn frame_is_the_documented_wire_form() {
        let e = Event::new(
            "motion-detected",
            Some("23:23:44"),
            60,
            true,
            UNIX_EPOCH + Duration::from_millis(1_401_304_834_638),
            Publisher {
                coreid: "0123456789abcdef",
                owner: None,
                device: None,
            },
        );
        assert_eq!(
            &e.frame[..],
            b"event: motion-detected\ndata: {\"data\":\"23:23:44\",\"ttl\":\"60\",\
\"published_at\":\"2014-05-28T19:20:34.638Z\",\"coreid\":\"0123456789abcdef\"}\n\n"
        );
        let e = Event::new("a\nb", None, 5, true, UNIX_EPOCH, Publisher::user("x", "u"));
        assert!(
            e.frame
                .starts_with(b"event: a b\ndata: {\"data\":null,\"ttl\":\"5\"")
        );
    }

    /// The frame as the `serde_json` serialisation of the wire object builds it (the form before the frame was
    /// written by hand).
    fn reference_frame(
        name: &str,
        data: Option<&str>,
        ttl: u32,
        at: SystemTime,
        coreid: &str,
    ) -> Vec<u8> {
        let json = serde_json::json!({
            "data": data,
            "ttl": ttl.to_string(),
            "published_at": crate::encoding::iso8601(at),
            "coreid": coreid,
        });
        // `json!` keeps the keys sorted; the wire order is data, ttl, published_at, coreid.
        let text = format!(
            "{{\"data\":{},\"ttl\":{},\"published_at\":{},\"coreid\":{}}}",
            json["data"], json["ttl"], json["published_at"], json["coreid"]
        );
        format!("event: {name}\ndata: {text}\n\n").into_bytes()
    }

    #[test]
    fn the_written_frame_escapes_as_serde_json_does() {
        let texts = [
            "",
            "21.5",
            "quote \" and back\\slash",
            "line\nfeed\rreturn\ttab",
            "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f} end",
            "slash / and ünïcödé ✓ 🚀",
            "</script>",
        ];
        let at = UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
        for data in texts {
            for ttl in [0, 60, 16_777_215, u32::MAX] {
                let e = Event::new("n", Some(data), ttl, true, at, Publisher::user(data, "u"));
                assert_eq!(
                    String::from_utf8_lossy(&e.frame),
                    String::from_utf8_lossy(&reference_frame("n", Some(data), ttl, at, data)),
                    "data {data:?}, ttl {ttl}"
                );
            }
        }
        let e = Event::new("n", None, 60, true, at, Publisher::user("c", "u"));
        assert_eq!(&e.frame[..], &reference_frame("n", None, 60, at, "c")[..]);
    }

    /// Polls `body` for its next data chunk, waiting at most a second.
    async fn next_chunk(body: &mut SseBody) -> Option<Bytes> {
        use http_body_util::BodyExt;
        let frame = tokio::time::timeout(Duration::from_secs(1), body.frame())
            .await
            .ok()??
            .ok()?;
        frame.into_data().ok()
    }

    #[tokio::test]
    async fn queued_events_are_coalesced_in_order_with_their_framing() {
        let bus = EventBus::new();
        let all = |user: &str| Filter {
            user: user.into(),
            scope: Scope::All,
            prefix: String::new(),
        };
        let mut mine = bus.subscribe(all("a")).into_body();
        let mut theirs = bus.subscribe(all("b")).into_body();
        assert_eq!(
            next_chunk(&mut mine).await.as_deref(),
            Some(&b":ok\n\n"[..])
        );
        assert_eq!(
            next_chunk(&mut theirs).await.as_deref(),
            Some(&b":ok\n\n"[..])
        );
        // Public and private events interleaved, all queued before the streams are read.
        let mut expected_a = Vec::new();
        let mut expected_b = Vec::new();
        for i in 0..50 {
            let (public, owner) = match i % 3 {
                0 => (true, "b"),
                1 => (false, "a"),
                _ => (false, "b"),
            };
            let e = Event::new(
                &format!("e{i}"),
                Some(&i.to_string()),
                60,
                public,
                UNIX_EPOCH,
                Publisher::device(D1, Some(owner)),
            );
            bus.publish(&e);
            if public || owner == "a" {
                expected_a.extend_from_slice(&e.frame);
            }
            if public || owner == "b" {
                expected_b.extend_from_slice(&e.frame);
            }
        }
        // Everything queued comes in one chunk, in publishing order, frame after whole frame; a's chunk holds no
        // private event of b, and b's none of a.
        assert_eq!(
            next_chunk(&mut mine).await.as_deref(),
            Some(&expected_a[..])
        );
        assert_eq!(
            next_chunk(&mut theirs).await.as_deref(),
            Some(&expected_b[..])
        );
    }

    #[tokio::test]
    async fn a_chunk_ends_at_a_frame_boundary() {
        let bus = EventBus::new();
        let mut body = bus
            .subscribe(Filter {
                user: "a".into(),
                scope: Scope::All,
                prefix: String::new(),
            })
            .into_body();
        assert!(next_chunk(&mut body).await.is_some());
        let mut sent = Vec::new();
        // Frames of uneven lengths, together several chunks' worth.
        for i in 0..3000 {
            let data = "x".repeat(i % 60);
            let e = Event::new(
                "tick",
                Some(&data),
                60,
                true,
                UNIX_EPOCH,
                Publisher::user("c", "a"),
            );
            bus.publish(&e);
            sent.extend_from_slice(&e.frame);
        }
        assert!(sent.len() > 2 * MAX_CHUNK);
        let mut got = Vec::new();
        let mut chunks = 0;
        while got.len() < sent.len() {
            let chunk = next_chunk(&mut body).await.expect("a chunk");
            assert!(
                chunk.starts_with(b"event: tick\n"),
                "a chunk starts a frame"
            );
            assert!(chunk.ends_with(b"\"}\n\n"), "a chunk ends a frame");
            // Only the frame that crosses the limit goes past it.
            assert!(chunk.len() < MAX_CHUNK + 200);
            got.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert_eq!(got, sent);
        assert!(chunks >= 3);
        assert_eq!(bus.stats().dropped, 0);
    }

    #[test]
    fn a_cut_off_ends_the_streams_of_older_tokens_only() {
        let bus = EventBus::new();
        let filter = Filter {
            user: "u1".into(),
            scope: Scope::All,
            prefix: String::new(),
        };
        let with = |token: &str, issued_at| Credential {
            token: token.into(),
            user: "u1".into(),
            expires_at: None,
            issued_at,
        };
        let _old = bus.subscribe_with(filter.clone(), with("a", Some(99)));
        let _unknown = bus.subscribe_with(filter.clone(), with("b", None));
        let _new = bus.subscribe_with(filter.clone(), with("c", Some(100)));
        let _plain = bus.subscribe(filter);
        assert_eq!(bus.stats().subscribers, 4);
        bus.end_issued_before(100);
        // The token issued at the cut-off and the stream without a credential stay.
        assert_eq!(bus.stats().subscribers, 2);
        bus.end_token("c");
        assert_eq!(bus.stats().subscribers, 1);
    }

    #[test]
    fn filters() {
        let all = |prefix: &str| Filter {
            user: "u1".into(),
            scope: Scope::All,
            prefix: prefix.into(),
        };
        assert!(all("temp").matches(&event("temperature", true, None, None)));
        assert!(!all("temp").matches(&event("tem", true, None, None)));
        assert!(!all("").matches(&event("x", false, Some("u2"), Some(D2))));
        assert!(all("").matches(&event("x", false, Some("u1"), Some(D1))));
        let mine = Filter {
            user: "u1".into(),
            scope: Scope::MyDevices,
            prefix: String::new(),
        };
        assert!(mine.matches(&event("x", false, Some("u1"), Some(D1))));
        assert!(!mine.matches(&event("x", true, Some("u1"), None)));
        assert!(!mine.matches(&event("x", true, Some("u2"), Some(D2))));
        let dev = Filter {
            user: "u1".into(),
            scope: Scope::Device(D2.parse().unwrap()),
            prefix: String::new(),
        };
        assert!(dev.matches(&event("x", true, Some("u2"), Some(D2))));
        assert!(!dev.matches(&event("x", false, Some("u2"), Some(D2))));
        assert!(!dev.matches(&event("x", true, Some("u2"), Some(D3))));
    }

    #[test]
    fn a_device_scope_matches_by_id_not_by_spelling() {
        let dev = Filter {
            user: "u1".into(),
            scope: Scope::Device(D2.parse().unwrap()),
            prefix: String::new(),
        };
        let upper = D2.to_ascii_uppercase();
        assert!(dev.matches(&event("x", true, Some("u2"), Some(&upper))));
        // Text that is not a device id names no device: neither a device scope nor "my devices" takes it.
        let odd = event("x", true, Some("u1"), Some("not-an-id"));
        assert_eq!(odd.device, None);
        assert!(!dev.matches(&odd));
        let mine = Filter {
            scope: Scope::MyDevices,
            ..dev
        };
        assert!(!mine.matches(&odd));
    }

    #[tokio::test]
    async fn dropped_subscription_is_freed_at_once_and_full_queues_drop() {
        let bus = EventBus::new();
        let f = Filter {
            user: "u".into(),
            scope: Scope::All,
            prefix: String::new(),
        };
        let mut a = bus.subscribe(f.clone());
        let b = bus.subscribe(f);
        assert_eq!(bus.stats().subscribers, 2);
        drop(b);
        assert_eq!(bus.stats().subscribers, 1);
        let e = event("x", true, None, None);
        for _ in 0..SUBSCRIBER_QUEUE + 3 {
            bus.publish(&e);
        }
        let s = bus.stats();
        assert_eq!((s.delivered, s.dropped), (SUBSCRIBER_QUEUE as u64, 3));
        assert_eq!(a.recv().await.as_deref(), Some(&e.frame[..]));
    }

    #[test]
    fn a_wake_batch_wakes_a_stream_once_when_it_ends() {
        struct Count(AtomicU64);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let bus = EventBus::new();
        let sub = bus.subscribe(Filter {
            user: "u".into(),
            scope: Scope::All,
            prefix: String::new(),
        });
        let count = Arc::new(Count(AtomicU64::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert!(sub.poll_chunk(&mut cx, MAX_CHUNK).is_pending());
        let e = event("x", true, None, None);
        {
            let _outer = WakeBatch::new();
            let inner = WakeBatch::new();
            for _ in 0..10 {
                bus.publish(&e);
            }
            drop(inner);
            assert_eq!(
                count.0.load(Ordering::Relaxed),
                0,
                "held until the outer batch ends"
            );
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        let Poll::Ready(Some(chunk)) = sub.poll_chunk(&mut cx, MAX_CHUNK) else {
            panic!("the ten frames are queued")
        };
        assert_eq!(chunk.len(), 10 * e.frame.len());
        // Without a batch, a waiting stream is woken at once.
        assert!(sub.poll_chunk(&mut cx, MAX_CHUNK).is_pending());
        bus.publish(&e);
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_revoked_stream_ends_after_its_queued_frames() {
        let bus = EventBus::new();
        let filter = Filter {
            user: "u".into(),
            scope: Scope::All,
            prefix: String::new(),
        };
        let credential = Credential {
            token: "t".into(),
            user: "u".into(),
            expires_at: None,
            issued_at: None,
        };
        let mut body = bus.subscribe_with(filter, credential).into_body();
        assert!(next_chunk(&mut body).await.is_some());
        let e = event("x", true, None, None);
        bus.publish(&e);
        bus.end_token("t");
        assert_eq!(bus.stats().subscribers, 0);
        // What was queued before the revocation is still sent, then the stream ends.
        assert_eq!(next_chunk(&mut body).await.as_deref(), Some(&e.frame[..]));
        use http_body_util::BodyExt;
        let end = tokio::time::timeout(Duration::from_secs(1), body.frame()).await;
        assert!(matches!(end, Ok(None)), "the stream ended");
        bus.publish(&e);
        assert_eq!(bus.stats().delivered, 1);
    }

    #[tokio::test]
    async fn private_events_reach_their_owner_alone_and_public_ones_everyone() {
        let bus = EventBus::new();
        let all = |user: &str| Filter {
            user: user.into(),
            scope: Scope::All,
            prefix: String::new(),
        };
        let mut a1 = bus.subscribe(all("a"));
        let mut a2 = bus.subscribe(all("a"));
        let mut b = bus.subscribe(all("b"));
        bus.publish(&event("secret", false, Some("a"), Some("d1")));
        bus.publish(&event("unowned", false, None, Some("d9")));
        bus.publish(&event("news", true, Some("b"), Some("d2")));
        assert_eq!(bus.stats().delivered, 5);
        for sub in [&mut a1, &mut a2] {
            assert!(sub.recv().await.unwrap().starts_with(b"event: secret\n"));
            assert!(sub.recv().await.unwrap().starts_with(b"event: news\n"));
        }
        assert!(b.recv().await.unwrap().starts_with(b"event: news\n"));
        assert!(
            b.poll_chunk(&mut Context::from_waker(Waker::noop()), MAX_CHUNK)
                .is_pending()
        );
        // A group empties as its last subscriber leaves.
        drop((a1, a2));
        assert_eq!(bus.stats().subscribers, 1);
        assert!(!bus.lock().by_user.contains_key("a"));
    }
}
