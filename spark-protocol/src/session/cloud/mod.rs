//! The cloud side of a session: what a local cloud runs for each connected device.
//!
//! [`CloudConnection`] sends the nonce, checks the device's credentials, looks its key up through
//! [`DeviceKeys`], sends the 384-byte session key reply, exchanges Hello, and then serves the
//! device: it answers pings, time requests, published events (ACK 0.00, not the original server's
//! "slow down") and subscriptions, and runs the application's requests — Describe, function calls,
//! variable reads, signal, key change and firmware updates ([`start_ota`](CloudConnection::start_ota),
//! the Flasher) — each identified by a [`RequestId`] whose outcome arrives as a [`CloudEvent`].
//!
//! Like the device side it is sans-IO: it owns no socket, clock or RNG thread; the caller feeds it
//! bytes and the time, and hands it an RNG (for the nonce, the session key and RSA blinding) at
//! construction.

mod flasher;
mod types;

pub use types::{
    CloudConfig, CloudEvent, DeviceId, DeviceInfo, DeviceKeys, NoKeys, OtaError, OtaEvent,
    OtaOptions, OtaReport, OutgoingEvent, PublishedEvent, PublishedView, RequestError,
    RequestFailure, RequestId, Scope, Subscription, VariableValue,
};

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::crypto::handshake::{
    NONCE_LEN, decrypt_device_credentials, seal_session_key, session_reply_len,
};
use crate::crypto::{
    Aes128Cbc, FrameDecoder, FrameEncoder, FrameError, HandshakeKeys, Nonce, SessionCipher,
    SessionKey, framing::sealed_len,
};
use crate::session::{Connection, Instant, SessionError};
use crate::wire::describe::VarType;
use crate::wire::hello::{HelloFlags, HelloPayload};
use crate::wire::message::{
    ChunkMissed, Describe, EmptyAck, Event, FunctionCall, FunctionReturn, Hello, KeyChange, Ping,
    Reply, Signal, Subscribe, SubscribeScope, Time, Visibility,
};
use crate::wire::{self, Code, Header, Message, MessageKind, MessageType, Repr, Role};

use flasher::Flasher;

/// What a token in flight waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Describe(RequestId),
    Call(RequestId),
    Variable(RequestId, VarType),
    Ack(RequestId),
    Ping,
    /// Owned by the flasher (UpdateBegin, a chunk, UpdateDone, or the fast-OTA token).
    Ota,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    token: u8,
    message_id: u16,
    waiting: Waiting,
    deadline: Option<Instant>,
}

/// Outbound state shared by the session and the flasher: the message-id counter, tokens in
/// flight and the plaintext messages waiting to be sealed.
struct Outbox {
    /// Datagram mode: fast-OTA chunks go non-confirmable (the device never acknowledges them).
    datagram: bool,
    next_id: u16,
    next_token: u8,
    queue: VecDeque<Vec<u8>>,
    pending: Vec<Pending>,
}

impl Outbox {
    fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// A one-byte token no request in flight uses (never 0, which the original server's ACKs
    /// carry).
    fn token(&self) -> Option<u8> {
        let mut t = self.next_token;
        for _ in 0..255 {
            t = if t == 255 { 1 } else { t + 1 };
            if !self.pending.iter().any(|p| p.token == t) {
                return Some(t);
            }
        }
        None
    }

    fn push(&mut self, message: &Message<'_>) -> Result<(), wire::Error> {
        let bytes = message.to_vec()?;
        self.queue.push_back(bytes);
        Ok(())
    }

    /// Queues a request with a fresh id and token and records what it waits for.
    fn request<'m>(
        &mut self,
        build: impl FnOnce(Header) -> Message<'m>,
        waiting: Waiting,
        deadline: Option<Instant>,
    ) -> Result<u8, RequestError> {
        let token = self.token().ok_or(RequestError::TooManyInFlight)?;
        let message_id = self.next_id.wrapping_add(1);
        let header = Header::con(message_id).with_token(token);
        self.push(&build(header)).map_err(RequestError::Encode)?;
        self.next_id = message_id;
        self.next_token = token;
        self.pending.push(Pending {
            token,
            message_id,
            waiting,
            deadline,
        });
        Ok(token)
    }

    fn take_by_token(&mut self, token: u8) -> Option<Pending> {
        let at = self.pending.iter().position(|p| p.token == token)?;
        Some(self.pending.swap_remove(at))
    }
}

/// What a busy connection keeps between inputs (see [`CloudConnection::keep_buffers`]), and the
/// published events waiting as views (see [`CloudConnection::set_published_views`]).
#[derive(Default)]
struct Busy {
    /// Keep the frame decoder and encoder, the message buffer and the queues between inputs.
    keep: bool,
    /// Published events, back to back: a header of [`VIEW_HEADER`] bytes (flags, TTL, name and
    /// data lengths), then the name, then the data.
    published: Vec<u8>,
    /// `published[taken..]` is not yet handed out.
    taken: usize,
    /// Sent messages' buffers, for the next acknowledgements.
    spare: Vec<Vec<u8>>,
    /// The buffer messages are decrypted into.
    plain: Vec<u8>,
}

/// A published event's header in [`Busy::published`]: flags (bit 0 private, bit 1 with data),
/// the TTL (4 bytes), the name's length and the data's (2 bytes each, little-endian).
const VIEW_HEADER: usize = 9;
/// Sent messages' buffers a busy connection keeps for reuse.
const SPARE_BUFFERS: usize = 64;

enum State {
    /// The nonce is queued; collecting the device's credentials block. Boxed: the nonce and the block are needed
    /// only during the handshake, and an established session should not carry their room inline.
    Credentials(Box<Credentials>),
    /// The reply is queued; waiting for the device's Hello.
    Hello { deadline: Instant },
    /// Hello exchanged.
    Established,
    /// Ended; the reason is kept.
    Ended(SessionError),
}

/// The [`CloudConfig`] a connection keeps: durations as milliseconds, the resolution of [`Instant`] (adding a
/// duration to an instant drops the rest), so that each connection carries 40 bytes of settings rather than 72.
#[derive(Clone, Copy)]
struct Settings {
    handshake_step_ms: u64,
    idle_ms: u64,
    request_ms: u64,
    /// `u64::MAX` when the cloud sends no pings (an instant that far away is never reached).
    ping_ms: u64,
    max_frame_len: usize,
}

impl Settings {
    fn new(config: &CloudConfig) -> Settings {
        let ms = |d: core::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Settings {
            handshake_step_ms: ms(config.handshake_step_timeout),
            idle_ms: ms(config.idle_timeout),
            request_ms: ms(config.request_timeout),
            ping_ms: config.ping_interval.map_or(u64::MAX, ms),
            max_frame_len: config.max_frame_len,
        }
    }

    fn handshake_step_timeout(&self) -> core::time::Duration {
        core::time::Duration::from_millis(self.handshake_step_ms)
    }

    fn idle_timeout(&self) -> core::time::Duration {
        core::time::Duration::from_millis(self.idle_ms)
    }

    fn request_timeout(&self) -> core::time::Duration {
        core::time::Duration::from_millis(self.request_ms)
    }

    fn ping_interval(&self) -> Option<core::time::Duration> {
        (self.ping_ms != u64::MAX).then(|| core::time::Duration::from_millis(self.ping_ms))
    }
}

/// What the cloud holds while it waits for the device's credentials block.
struct Credentials {
    nonce: Nonce,
    received: Vec<u8>,
    deadline: Instant,
}

/// The session channel. The ciphers and the frame store exist only while bytes move: between
/// bursts the channel keeps the AES key and the two IVs (48 bytes) and rebuilds them on the next
/// frame, so an idle connection holds no key schedule and no buffer.
struct Channel {
    key: zeroize::Zeroizing<[u8; 16]>,
    /// The IV of the next frame to the device, while `encoder` is not built.
    tx_iv: [u8; 16],
    /// The IV of the next frame from the device, while `decoder` is not built.
    rx_iv: [u8; 16],
    max_frame_len: usize,
    /// Boxed, so that an idle connection does not carry the key schedules' room inline.
    encoder: Option<Box<FrameEncoder<Aes128Cbc>>>,
    decoder: Option<Box<FrameDecoder<Aes128Cbc, Vec<u8>>>>,
}

impl Channel {
    fn new(session: &SessionKey, max_frame_len: usize) -> Channel {
        Channel {
            key: zeroize::Zeroizing::new(*session.aes_key()),
            tx_iv: session.iv(),
            rx_iv: session.iv(),
            max_frame_len,
            encoder: None,
            decoder: None,
        }
    }

    fn encoder(&mut self) -> &mut FrameEncoder<Aes128Cbc> {
        let (key, iv) = (&self.key, self.tx_iv);
        self.encoder
            .get_or_insert_with(|| Box::new(FrameEncoder::new(Aes128Cbc::new(key), iv)))
    }

    fn decoder(&mut self) -> &mut FrameDecoder<Aes128Cbc, Vec<u8>> {
        let (key, iv, max) = (&self.key, self.rx_iv, self.max_frame_len);
        self.decoder.get_or_insert_with(|| {
            Box::new(FrameDecoder::new(Aes128Cbc::new(key), iv, vec![0u8; max]).with_max_len(max))
        })
    }

    /// Drops the encoder, keeping its next IV.
    fn park_encoder(&mut self) {
        if let Some(e) = self.encoder.take() {
            self.tx_iv = *e.next_iv();
        }
    }

    /// Drops the decoder and its frame store when no frame is half-read, keeping its next IV.
    fn park_decoder(&mut self) {
        if self.decoder.as_deref().is_some_and(FrameDecoder::is_idle)
            && let Some(d) = self.decoder.take()
        {
            self.rx_iv = *d.next_iv();
        }
    }
}

/// The cloud side of one device connection. See the [module docs](self).
///
/// `S` is the server's private key (a reference works: `&OpensslPrivateKey`), `K` the device key
/// store, `R` the RNG.
///
/// A cloud and a device session talking in memory from a session secret both know, on the
/// virtual time of a [`Pair`](crate::session::pair::Pair) (by convention the device is side A):
/// the cloud reads a variable, the device answers with its value, and the cloud's event carries
/// it as a [`VariableValue`].
///
/// ```
/// use spark_protocol::{DeviceId, VarType, VariableValue};
/// use spark_protocol::crypto::SessionKey;
/// use spark_protocol::crypto::rng::HardwareRng;
/// use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent, NoKeys};
/// use spark_protocol::session::device::{DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware};
/// use spark_protocol::session::pair::Pair;
/// use spark_protocol::session::{Connection, Instant};
/// use spark_protocol::wire::message::Value;
///
/// let secret = SessionKey::from_bytes([9; 40]);
/// let id = DeviceId::from_bytes([0x53; 12]);
/// let mut n = 0u8;
/// let rng = HardwareRng(move |dest: &mut [u8]| dest.iter_mut().for_each(|b| { n = n.wrapping_add(3); *b = n }));
/// // `from_session` runs no handshake, so the cloud needs no RSA keys: `NoKeys` stands for them.
/// let cloud = CloudConnection::from_session(
///     Instant::ZERO, NoKeys, NoKeys, rng, CloudConfig::default(), &secret, id,
/// );
/// let mut device =
///     DeviceConnection::from_session(Instant::ZERO, &secret, DeviceConfig::new(id), NoFirmware);
/// device.register_variable(b"temperature", VarType::Double)?;
///
/// let mut link = Pair::new(device, cloud);
/// let _ = link.run(Instant::from_millis(100));
/// let [CloudEvent::Connected(info)] = &link.take_events_b()[..] else { panic!("connected") };
/// assert_eq!(info.device_id.to_string(), "535353535353535353535353");
///
/// let now = link.now();
/// let request = link.b_mut().read_variable(now, b"temperature", VarType::Double)?;
/// let _ = link.run(Instant::from_millis(200));
/// let events = link.take_events_a();
/// let Some(DeviceEvent::VariableRequest(read)) = events.last() else { panic!("a read") };
/// link.a_mut().variable_value(read.request, Value::Double(21.5))?;
/// let _ = link.run(Instant::from_millis(300));
/// assert_eq!(
///     link.take_events_b(),
///     [CloudEvent::VariableRead { request, result: Ok(VariableValue::Double(21.5)) }]
/// );
/// assert_eq!(link.b().error(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CloudConnection<S, K, R> {
    server_key: S,
    keys: K,
    rng: R,
    config: Settings,
    state: State,
    /// Raw handshake bytes to send (nonce, then the session key reply).
    raw: VecDeque<Vec<u8>>,
    channel: Option<Channel>,
    /// Datagram mode (UDP): whole plaintext CoAP messages in and out, no counter rule.
    datagram: bool,
    out: Outbox,
    device: Option<DeviceInfo>,
    /// The id of the device's last non-ACK message.
    last_device_id: u16,
    last_rx: Instant,
    ping_sent: bool,
    wall_clock: Option<(Instant, u64)>,
    next_request: u32,
    events: VecDeque<CloudEvent>,
    /// Boxed: most connections never flash, and an idle one should not carry its room inline.
    flasher: Option<Box<Flasher>>,
    /// Published events go to [`CloudConnection::poll_published`] as views, not to the event queue.
    views: bool,
    /// Boxed, and only while a connection is busy or has views waiting.
    busy: Option<Box<Busy>>,
}

impl<S, K, R> fmt::Debug for CloudConnection<S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Credentials(_) => "credentials",
            State::Hello { .. } => "hello",
            State::Established => "established",
            State::Ended(_) => "ended",
        };
        f.debug_struct("CloudConnection")
            .field("state", &state)
            .field("device", &self.device)
            .field("in_flight", &self.out.pending.len())
            .finish_non_exhaustive()
    }
}

fn frame_error(e: FrameError) -> SessionError {
    match e {
        FrameError::FrameTooLong { len, max } | FrameError::MessageTooLong { len, max } => {
            SessionError::Oversized { len, max }
        }
        other => SessionError::Decryption(other),
    }
}

fn is_success(code: Code) -> bool {
    code.class() == 2
}

impl<S: HandshakeKeys, K: DeviceKeys, R: CryptoRng> CloudConnection<S, K, R> {
    /// Starts a session on a freshly accepted connection: draws the nonce and queues it.
    pub fn new(now: Instant, server_key: S, keys: K, mut rng: R, config: CloudConfig) -> Self {
        let nonce = Nonce::generate(&mut rng);
        let mut raw = VecDeque::new();
        raw.push_back(nonce.0.to_vec());
        let mut seed = [0u8; 2];
        rng.fill_bytes(&mut seed);
        CloudConnection {
            server_key,
            keys,
            rng,
            config: Settings::new(&config),
            state: State::Credentials(Box::new(Credentials {
                nonce,
                received: Vec::new(),
                deadline: now + config.handshake_step_timeout,
            })),
            raw,
            channel: None,
            datagram: false,
            out: Outbox {
                datagram: false,
                next_id: u16::from_be_bytes(seed),
                next_token: 0,
                queue: VecDeque::new(),
                pending: Vec::new(),
            },
            device: None,
            last_device_id: 0,
            last_rx: now,
            ping_sent: false,
            wall_clock: None,
            next_request: 0,
            events: VecDeque::new(),
            flasher: None,
            views: false,
            busy: None,
        }
    }

    /// A session whose handshake is already done: `session` is the secret the cloud gave device
    /// `device_id`. It waits for the device's Hello, as [`CloudConnection::new`] does once the
    /// handshake is over. For tests and fuzzing that start from a known key (no RSA per session).
    pub fn from_session(
        now: Instant,
        server_key: S,
        keys: K,
        rng: R,
        config: CloudConfig,
        session: &SessionKey,
        device_id: DeviceId,
    ) -> Self {
        let mut conn = Self::new(now, server_key, keys, rng, config);
        conn.await_hello(now, device_id);
        conn.channel = Some(Channel::new(session, conn.config.max_frame_len));
        conn
    }

    /// Skips the handshake: nothing is left to send, `device_id` is known and the device's Hello
    /// is awaited (what [`CloudConnection::from_session`] and [`CloudConnection::datagram`] share).
    fn await_hello(&mut self, now: Instant, device_id: DeviceId) {
        self.raw.clear();
        self.expect_hello(now, device_id);
    }

    /// `device_id` is known (by a handshake or from outside): its Hello is awaited next.
    fn expect_hello(&mut self, now: Instant, device_id: DeviceId) {
        self.device = Some(DeviceInfo {
            device_id,
            product_id: None,
            firmware_version: None,
            flags: HelloFlags(0),
            extended: None,
        });
        self.state = State::Hello {
            deadline: now + self.config.handshake_step_timeout(),
        };
    }

    /// A session in datagram mode, the UDP protocol's: the DTLS handshake has proven the
    /// device's P-256 key and the caller has mapped that key to `device_id`, so no RSA handshake
    /// runs. It waits for the device's Hello. [`Connection::handle_input`] then takes one whole
    /// plaintext CoAP message per call (one DTLS application record) and
    /// [`Connection::poll_transmit`] gives one per call; the TCP dialect's "+1" message-id rule
    /// does not apply (CoAP reliability and duplicate detection sit below, in
    /// `session::datagram` when the `dtls` feature is on).
    /// `server_key` is not used in this mode.
    pub fn datagram(
        now: Instant,
        server_key: S,
        keys: K,
        rng: R,
        config: CloudConfig,
        device_id: DeviceId,
    ) -> Self {
        let mut conn = Self::new(now, server_key, keys, rng, config);
        conn.await_hello(now, device_id);
        conn.datagram = true;
        conn.out.datagram = true;
        conn
    }

    /// Whether the session is in datagram mode ([`CloudConnection::datagram`]).
    #[must_use]
    pub fn is_datagram(&self) -> bool {
        self.datagram
    }

    /// The server key(s) the session was given: what a key holder recorded during the handshake (which key a
    /// [`MigrationKeys`](crate::crypto::MigrationKeys) used) is read here.
    #[must_use]
    pub fn server_key(&self) -> &S {
        &self.server_key
    }

    /// The device, once its Hello came.
    #[must_use]
    pub fn device(&self) -> Option<&DeviceInfo> {
        self.device.as_ref()
    }

    /// Whether the handshake and Hello exchange have finished and the session has not ended.
    #[must_use]
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    /// Tells the session the wall-clock time: `unix_secs` seconds since 1970 at `now`. Time
    /// requests are answered from it; until it is set they are refused with 5.03.
    pub fn set_wall_clock(&mut self, now: Instant, unix_secs: u64) {
        self.wall_clock = Some((now, unix_secs));
    }

    /// Ends the session with [`SessionError::Closed`].
    pub fn close(&mut self) {
        let _ = self.fail(SessionError::Closed);
    }

    /// With `true`, the events the device publishes are no longer queued as
    /// [`CloudEvent::Published`] (each a copy of its name and data on the heap) but kept in one
    /// buffer and handed out as borrowed [`PublishedView`]s by
    /// [`CloudConnection::poll_published`]; take them after each input. Events already queued
    /// stay queued, and an event published behind another queued event (a subscription, a
    /// reply) is queued as [`CloudEvent::Published`] in its place, so the two kinds never
    /// overtake each other. Off by default.
    pub fn set_published_views(&mut self, on: bool) {
        self.views = on;
    }

    /// The next published event, borrowed from the session, in the order the device sent them
    /// (with [`CloudConnection::set_published_views`] on; `None` when all were taken). Malformed
    /// events are refused as without views: the session ends with
    /// [`SessionError::Malformed`] and no view is made of them.
    pub fn poll_published(&mut self) -> Option<PublishedView<'_>> {
        if !self.views_waiting() {
            if let Some(busy) = self.busy.as_deref_mut() {
                busy.published.clear();
                busy.taken = 0;
                if !busy.keep {
                    self.busy = None;
                }
            }
            return None;
        }
        let busy = self.busy.as_deref_mut()?;
        let at = busy.taken;
        let header = busy.published.get(at..at + VIEW_HEADER)?;
        let flags = header[0];
        let ttl = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        let name_len = usize::from(u16::from_le_bytes([header[5], header[6]]));
        let data_len = usize::from(u16::from_le_bytes([header[7], header[8]]));
        let name_at = at + VIEW_HEADER;
        let data_at = name_at + name_len;
        busy.taken = data_at + data_len;
        let bytes = &busy.published[..];
        Some(PublishedView {
            name: bytes.get(name_at..data_at)?,
            data: if flags & 2 != 0 {
                Some(bytes.get(data_at..data_at + data_len)?)
            } else {
                None
            },
            ttl,
            private: flags & 1 != 0,
        })
    }

    /// With `true`, the session keeps what it builds for each input and output (the frame
    /// decoder and encoder with their key schedules, the message buffer, the queues, the sent
    /// messages' buffers for the next acknowledgements) until it is set to `false`: for a busy
    /// connection, which would otherwise build them again for every read. With `false` (the
    /// default) they are freed now and whenever the connection falls idle.
    pub fn keep_buffers(&mut self, on: bool) {
        if on {
            self.busy.get_or_insert_with(Box::default).keep = true;
            return;
        }
        if let Some(busy) = self.busy.as_deref_mut() {
            busy.keep = false;
            busy.spare = Vec::new();
            busy.plain = Vec::new();
            if busy.taken >= busy.published.len() {
                self.busy = None;
            }
        }
        if let Some(channel) = self.channel.as_mut() {
            channel.park_decoder();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.out.queue.is_empty() {
            self.release_idle_memory();
        }
    }

    fn keeping(&self) -> bool {
        self.busy.as_deref().is_some_and(|b| b.keep)
    }

    /// Keeps a published event for [`CloudConnection::poll_published`].
    fn keep_view(&mut self, name: &[u8], data: Option<&[u8]>, ttl: u32, private: bool) {
        let busy = self.busy.get_or_insert_with(Box::default);
        let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        let data = data.map(|d| &d[..d.len().min(usize::from(u16::MAX))]);
        let data_len = data.map_or(0, |d| d.len() as u16);
        let flags = u8::from(private) | (u8::from(data.is_some()) << 1);
        let out = &mut busy.published;
        out.push(flags);
        out.extend_from_slice(&ttl.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&data_len.to_le_bytes());
        out.extend_from_slice(&name[..usize::from(name_len)]);
        if let Some(d) = data {
            out.extend_from_slice(d);
        }
    }

    fn check_ready(&self) -> Result<(), RequestError> {
        match self.state {
            State::Established => Ok(()),
            State::Ended(e) => Err(RequestError::Ended(e)),
            _ => Err(RequestError::NotEstablished),
        }
    }

    fn start<'m>(
        &mut self,
        now: Instant,
        build: impl FnOnce(Header) -> Message<'m>,
        waiting: impl FnOnce(RequestId) -> Waiting,
    ) -> Result<RequestId, RequestError> {
        self.check_ready()?;
        let id = RequestId(self.next_request.wrapping_add(1));
        let deadline = now + self.config.request_timeout();
        self.out.request(build, waiting(id), Some(deadline))?;
        self.next_request = id.0;
        Ok(id)
    }

    /// Asks the device for its functions and variables ([`CloudEvent::Described`]).
    pub fn describe(&mut self, now: Instant) -> Result<RequestId, RequestError> {
        self.start(
            now,
            |header| {
                Message::Describe(Describe {
                    header,
                    flags: None,
                })
            },
            Waiting::Describe,
        )
    }

    /// Calls a function ([`CloudEvent::FunctionReturned`]). Many calls may be in flight; each
    /// result is matched by its token.
    pub fn call_function(
        &mut self,
        now: Instant,
        name: &[u8],
        argument: &[u8],
    ) -> Result<RequestId, RequestError> {
        self.start(
            now,
            |header| {
                Message::FunctionCall(FunctionCall {
                    header,
                    name,
                    argument: Some(argument),
                })
            },
            Waiting::Call,
        )
    }

    /// Reads a variable of type `ty` (from the description) ([`CloudEvent::VariableRead`]).
    pub fn read_variable(
        &mut self,
        now: Instant,
        name: &[u8],
        ty: VarType,
    ) -> Result<RequestId, RequestError> {
        self.start(
            now,
            |header| Message::VariableRequest(wire::message::VariableRequest { header, name }),
            |request| Waiting::Variable(request, ty),
        )
    }

    /// Starts (`true`) or stops the device's rainbow signal ([`CloudEvent::Acknowledged`]).
    pub fn signal(&mut self, now: Instant, start: bool) -> Result<RequestId, RequestError> {
        self.start(
            now,
            |header| Message::Signal(Signal { header, start }),
            Waiting::Ack,
        )
    }

    /// Sends a KeyChange with `payload` ([`CloudEvent::Acknowledged`] when the device answers
    /// KeyChanged; the Core ignores it, so expect a timeout from one).
    pub fn change_key(&mut self, now: Instant, payload: &[u8]) -> Result<RequestId, RequestError> {
        self.start(
            now,
            |header| Message::KeyChange(KeyChange { header, payload }),
            Waiting::Ack,
        )
    }

    /// Delivers an event the device subscribed to: NON, no token, one Uri-Path per segment, as
    /// the original server sends it. Nothing answers it.
    pub fn deliver_event(&mut self, event: &OutgoingEvent<'_>) -> Result<(), RequestError> {
        self.check_ready()?;
        let visibility = if event.private {
            Visibility::Private
        } else {
            Visibility::Public
        };
        let id = self.out.next_id.wrapping_add(1);
        let mut msg = Event::deliver(id, visibility, event.name, event.data, event.ttl);
        if self.datagram {
            // Over UDP the event is confirmable, so a lost one is sent again.
            msg.header = Header::con(id);
        }
        self.out
            .push(&Message::Event(msg))
            .map_err(RequestError::Encode)?;
        self.out.next_id = id;
        Ok(())
    }

    /// Starts sending `image` to the device (the Flasher). Progress and the final result arrive
    /// as [`CloudEvent::Ota`] with the returned id. One transfer at a time per connection.
    pub fn start_ota(
        &mut self,
        now: Instant,
        image: Vec<u8>,
        options: OtaOptions,
    ) -> Result<RequestId, RequestError> {
        self.check_ready()?;
        if self.flasher.is_some() {
            return Err(RequestError::OtaInProgress);
        }
        let announced = self
            .device
            .and_then(|d| d.extended)
            .and_then(|e| e.limits)
            .map(|l| l.ota_chunk_size)
            .filter(|&s| s > 0);
        let chunk_size = options
            .chunk_size
            .or(announced)
            .unwrap_or(wire::limits::SP_CHUNK_SIZE as u16);
        let request = RequestId(self.next_request.wrapping_add(1));
        let flasher = Flasher::start(now, request, image, chunk_size, options, &mut self.out)?;
        self.next_request = request.0;
        self.flasher = Some(Box::new(flasher));
        Ok(request)
    }

    /// Ends the session with `error`: every request in flight fails with it.
    fn fail(&mut self, error: SessionError) -> SessionError {
        if let State::Ended(e) = self.state {
            return e;
        }
        self.state = State::Ended(error);
        for p in core::mem::take(&mut self.out.pending) {
            self.finish_request(p.waiting, Err(RequestFailure::SessionEnded(error)), &[]);
        }
        if let Some(mut f) = self.flasher.take() {
            f.fail(OtaError::SessionEnded(error), &mut self.events);
        }
        self.out.queue.clear();
        self.raw.clear();
        error
    }

    /// Reports the outcome of a request. `payload` is the answer's payload on success.
    fn finish_request(
        &mut self,
        waiting: Waiting,
        result: Result<Code, RequestFailure>,
        payload: &[u8],
    ) {
        let event = match waiting {
            Waiting::Describe(request) => CloudEvent::Described {
                request,
                result: result.map(|_| payload.to_vec()),
            },
            Waiting::Call(request) => CloudEvent::FunctionReturned {
                request,
                result: result.and_then(|_| {
                    <[u8; 4]>::try_from(payload)
                        .map(i32::from_be_bytes)
                        .map_err(|_| {
                            RequestFailure::Malformed(wire::Error::Length {
                                field: "function return",
                                found: payload.len(),
                                expected: 4,
                            })
                        })
                }),
            },
            Waiting::Variable(request, ty) => CloudEvent::VariableRead {
                request,
                result: result.and_then(|_| {
                    wire::message::Value::parse(payload, ty)
                        .map(|v| VariableValue::from_wire(&v))
                        .map_err(RequestFailure::Malformed)
                }),
            },
            Waiting::Ack(request) => CloudEvent::Acknowledged {
                request,
                result: result.map(|_| ()),
            },
            Waiting::Ping | Waiting::Ota => return,
        };
        self.events.push_back(event);
    }

    fn handle_credentials(
        &mut self,
        now: Instant,
        nonce: Nonce,
        block: &[u8],
    ) -> Result<(), SessionError> {
        let creds = decrypt_device_credentials(&self.server_key, &mut self.rng, &nonce, block)
            .map_err(SessionError::Authentication)?;
        let device_key = self
            .keys
            .device_key(
                &DeviceId::from_bytes(creds.device_id),
                creds.public_key_der(),
            )
            .ok_or(SessionError::UnknownDevice)?;
        let session = SessionKey::generate(&mut self.rng);
        let signer = self.server_key.signer();
        let mut reply = vec![0u8; session_reply_len(&device_key, signer)];
        seal_session_key(&device_key, signer, &mut self.rng, &session, &mut reply)
            .map_err(SessionError::Authentication)?;
        self.raw.push_back(reply);
        self.channel = Some(Channel::new(&session, self.config.max_frame_len));
        self.expect_hello(now, DeviceId::from_bytes(creds.device_id));
        Ok(())
    }

    fn handle_input_inner(&mut self, now: Instant, input: &[u8]) -> Result<(), SessionError> {
        // The buffer messages are decrypted into: a busy connection's kept one, or one for this input.
        let mut plain = self
            .busy
            .as_deref_mut()
            .map(|b| core::mem::take(&mut b.plain))
            .unwrap_or_default();
        let result = self.handle_frames(now, input, &mut plain);
        if let Some(busy) = self.busy.as_deref_mut()
            && busy.keep
        {
            busy.plain = plain;
        }
        result
    }

    fn handle_frames(
        &mut self,
        now: Instant,
        mut input: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        loop {
            match &mut self.state {
                State::Ended(e) => return Err(*e),
                State::Credentials(credentials) => {
                    let Credentials {
                        nonce, received, ..
                    } = &mut **credentials;
                    let need = self.server_key.credentials_len();
                    let take = (need - received.len()).min(input.len());
                    received.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if received.len() < need {
                        return Ok(());
                    }
                    let nonce = *nonce;
                    let block = core::mem::take(received);
                    self.handle_credentials(now, nonce, &block)?;
                }
                State::Hello { .. } | State::Established if self.datagram => {
                    return self.handle_message(now, input);
                }
                State::Hello { .. } | State::Established => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let Some(channel) = self.channel.as_mut() else {
                        return Err(SessionError::Unexpected("no session channel"));
                    };
                    let decoder = channel.decoder();
                    let consumed = decoder.handle_input(input).map_err(frame_error)?;
                    input = &input[consumed..];
                    if plain.len() < self.config.max_frame_len {
                        *plain = vec![0u8; self.config.max_frame_len];
                    }
                    let result = match decoder.poll_message(plain) {
                        Ok(Some(n)) => self.handle_message(now, &plain[..n]),
                        Ok(None) => Ok(()),
                        Err(e) => Err(frame_error(e)),
                    };
                    result?;
                    if consumed == 0 && input.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles one message in the order the device sent it. Published events wait as views only
    /// while nothing else is queued: when this message queues another event (a subscription, an
    /// answer) behind views not yet taken, those views move into the queue ahead of it, as owned
    /// events, so that a caller taking the queue first still sees them in order.
    fn handle_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), SessionError> {
        let queued = self.events.len();
        let result = self.dispatch_message(now, bytes);
        if self.events.len() > queued && self.views_waiting() {
            let later: Vec<CloudEvent> = self.events.drain(queued..).collect();
            self.queue_views();
            self.events.extend(later);
        }
        result
    }

    /// Whether published views wait to be taken.
    fn views_waiting(&self) -> bool {
        self.busy
            .as_deref()
            .is_some_and(|b| b.taken + VIEW_HEADER <= b.published.len())
    }

    /// Moves the views not yet taken into the event queue, in order, as owned events.
    fn queue_views(&mut self) {
        while let Some(view) = self.poll_published() {
            let event = CloudEvent::Published(view.to_event());
            self.events.push_back(event);
        }
    }

    fn dispatch_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), SessionError> {
        let repr = Repr::parse_bytes(bytes).map_err(SessionError::Malformed)?;
        self.last_rx = now;
        self.ping_sent = false;
        let kind = wire::classify_repr(&repr, Role::Cloud);
        if let State::Hello { .. } = self.state {
            if kind != MessageKind::Hello {
                return Err(SessionError::Unexpected(
                    "a message before the device's Hello",
                ));
            }
            let hello = Hello::parse(&repr).map_err(SessionError::Malformed)?;
            return self.handle_hello(&hello);
        }
        if !self.datagram
            && matches!(
                repr.msg_type,
                MessageType::Confirmable | MessageType::NonConfirmable
            )
        {
            let expected = self.last_device_id.wrapping_add(1);
            if repr.message_id != expected {
                return Err(SessionError::BadCounter {
                    expected,
                    got: repr.message_id,
                });
            }
            self.last_device_id = expected;
        }
        let malformed = SessionError::Malformed;
        match kind {
            MessageKind::Hello => Err(SessionError::Unexpected("a second Hello")),
            MessageKind::Ping => {
                let ping = Ping::parse(&repr).map_err(malformed)?;
                self.ack(ping.header.message_id)
            }
            MessageKind::Event => {
                let event = Event::parse(&repr).map_err(malformed)?;
                // The name's segments joined on the stack (at most a message long).
                let mut joined = [0u8; wire::limits::CORE_QUEUE_SIZE];
                let name_len = event.name.len();
                let mut heap = Vec::new();
                let name: &mut [u8] = match joined.get_mut(..name_len) {
                    Some(room) => room,
                    None => {
                        heap.resize(name_len, 0);
                        &mut heap
                    }
                };
                event.name.copy_to(name).map_err(malformed)?;
                if repr.msg_type != MessageType::Acknowledgement {
                    // EventAck (ACK 0.00), where the original server always sent 4.00.
                    self.ack(repr.message_id)?;
                }
                let private = event.visibility == Visibility::Private;
                if self.views && self.events.is_empty() {
                    self.keep_view(name, event.data, event.ttl(), private);
                } else {
                    // Behind a queued event: queued too, after the views that came before it.
                    self.queue_views();
                    self.events.push_back(CloudEvent::Published(PublishedEvent {
                        name: name.to_vec(),
                        data: event.data.map(<[u8]>::to_vec),
                        ttl: event.ttl(),
                        private,
                    }));
                }
                Ok(())
            }
            MessageKind::Subscribe => {
                let sub = Subscribe::parse(&repr).map_err(malformed)?;
                let mut filter = vec![0u8; sub.filter.len()];
                sub.filter.copy_to(&mut filter).map_err(malformed)?;
                let scope = match sub.scope {
                    SubscribeScope::Firehose => Some(Scope::All),
                    SubscribeScope::MyDevices => Some(Scope::MyDevices),
                    SubscribeScope::Device(id) => DeviceId::parse_hex(id).ok().map(Scope::Device),
                };
                // SubscribeFail: a firehose without a name, or a device that is not 24 hex
                // digits, is refused.
                let Some(scope) = scope.filter(|s| !(filter.is_empty() && *s == Scope::All)) else {
                    return self.reply(repr.message_id, repr.token, Code::BadRequest, &[]);
                };
                self.ack(repr.message_id)?;
                self.events
                    .push_back(CloudEvent::Subscribed(Subscription { filter, scope }));
                Ok(())
            }
            MessageKind::GetTime => {
                let header =
                    Header::piggybacked(&Header::new(repr.msg_type, repr.message_id, repr.token));
                match self.wall_clock {
                    Some((at, secs)) => {
                        let unix = secs.saturating_add(now.saturating_duration_since(at).as_secs());
                        let unix_time = u32::try_from(unix).unwrap_or(u32::MAX);
                        self.push(&Message::Time(Time {
                            header,
                            code: Code::Content,
                            unix_time,
                        }))?;
                        self.events.push_back(CloudEvent::TimeSent(unix_time));
                        Ok(())
                    }
                    None => self.reply(repr.message_id, repr.token, Code::ServiceUnavailable, &[]),
                }
            }
            MessageKind::ChunkMissed => {
                let missed = ChunkMissed::parse(&repr).map_err(malformed)?;
                self.ack(repr.message_id)?;
                if let Some(f) = self.flasher.as_mut() {
                    let indices: Vec<u16> = missed.indices.iter().collect();
                    f.handle_missed(now, &indices, &mut self.events);
                }
                self.reap_flasher();
                Ok(())
            }
            _ if repr.code.is_request() => {
                // A request this side does not serve (Device OS Goodbye, device-side describe):
                // acknowledge a CON so the device does not wait, ignore the rest.
                if repr.msg_type == MessageType::Confirmable {
                    self.ack(repr.message_id)?;
                }
                Ok(())
            }
            _ => {
                if self.datagram && repr.msg_type == MessageType::Confirmable {
                    // A separate response (ChunkReceived, a function's return): over UDP it is
                    // confirmable and must be acknowledged.
                    self.ack(repr.message_id)?;
                }
                self.handle_response(now, &repr);
                Ok(())
            }
        }
    }

    fn handle_hello(&mut self, hello: &Hello<'_>) -> Result<(), SessionError> {
        let header = hello.header;
        self.last_device_id = header.message_id;
        let Some(device) = self.device.as_mut() else {
            return Err(SessionError::Unexpected("Hello before credentials"));
        };
        device.product_id = hello.payload.product_id();
        device.firmware_version = hello.payload.firmware_version();
        device.flags = hello.payload.flags().unwrap_or(HelloFlags(0));
        if let HelloPayload::Extended(ext) = hello.payload {
            // Over UDP the id comes from the key the DTLS handshake proved: a Hello naming another
            // device is an impostor's (or a misconfigured device's), refused.
            if self.datagram
                && ext
                    .device_id
                    .is_some_and(|id| id != *device.device_id.as_bytes())
            {
                return Err(SessionError::UnknownDevice);
            }
            device.extended = Some(ext);
        }
        let info = *device;
        let token = self.out.token().unwrap_or(1);
        self.out.next_token = token;
        if self.datagram && header.msg_type == MessageType::Confirmable {
            self.ack(header.message_id)?;
        }
        let id = self.out.id();
        // Over UDP the Hello is confirmable both ways, so a lost one is sent again below.
        let ours = if self.datagram {
            Header::con(id)
        } else {
            Header::non(id)
        };
        self.push(&Message::Hello(Hello {
            header: ours.with_token(token),
            payload: HelloPayload::None,
        }))?;
        self.state = State::Established;
        self.events.push_back(CloudEvent::Connected(info));
        Ok(())
    }

    fn handle_response(&mut self, now: Instant, repr: &Repr<'_>) {
        if repr.msg_type == MessageType::Reset {
            if let Some(at) = self
                .out
                .pending
                .iter()
                .position(|p| p.message_id == repr.message_id)
            {
                let p = self.out.pending.swap_remove(at);
                if p.waiting == Waiting::Ota {
                    if let Some(f) = self.flasher.as_mut() {
                        f.handle_reply(
                            now,
                            p.token,
                            Code::ServiceUnavailable,
                            &[],
                            &mut self.out,
                            &mut self.events,
                        );
                    }
                    self.reap_flasher();
                } else {
                    self.finish_request(p.waiting, Err(RequestFailure::Reset), &[]);
                }
            }
            return;
        }
        if repr.code.is_empty() {
            // An empty ACK: the answer comes separately (function return, UpdateReady, ...),
            // except for a ping.
            if let Some(at) = self
                .out
                .pending
                .iter()
                .position(|p| p.message_id == repr.message_id && p.waiting == Waiting::Ping)
            {
                self.out.pending.swap_remove(at);
            }
            return;
        }
        let Some(token) = repr.token.first() else {
            return;
        };
        let Some(p) = self.out.pending.iter().find(|p| p.token == token).copied() else {
            // The original server ignores answers to nothing; so does this side.
            return;
        };
        let payload = repr.payload.unwrap_or_default();
        if p.waiting == Waiting::Ota {
            if let Some(f) = self.flasher.as_mut() {
                f.handle_reply(
                    now,
                    token,
                    repr.code,
                    payload,
                    &mut self.out,
                    &mut self.events,
                );
            }
            self.reap_flasher();
            return;
        }
        self.out.take_by_token(token);
        let result = if is_success(repr.code) {
            Ok(repr.code)
        } else {
            Err(RequestFailure::Rejected(repr.code))
        };
        if let (Waiting::Call(_), Ok(_)) = (p.waiting, result) {
            // FunctionReturn (NON 2.04 separate, or a piggy-backed ACK 2.04).
            if let Err(e) = FunctionReturn::parse(repr) {
                self.finish_request(p.waiting, Err(RequestFailure::Malformed(e)), &[]);
                return;
            }
        }
        self.finish_request(p.waiting, result, payload);
    }

    fn reap_flasher(&mut self) {
        if self.flasher.as_deref().is_some_and(Flasher::is_finished)
            && let Some(f) = self.flasher.take()
        {
            f.release(&mut self.out);
        }
    }

    fn ack(&mut self, message_id: u16) -> Result<(), SessionError> {
        let ack = Message::EmptyAck(EmptyAck {
            header: Header::ack(message_id),
        });
        // A busy connection writes its acknowledgement into the buffer of one sent before.
        if let Some(busy) = self.busy.as_deref_mut()
            && let Some(mut bytes) = busy.spare.pop()
        {
            bytes.clear();
            bytes.resize(ack.buffer_len(), 0);
            let n = ack.emit(&mut bytes).map_err(SessionError::Malformed)?;
            bytes.truncate(n);
            self.out.queue.push_back(bytes);
            return Ok(());
        }
        self.push(&ack)
    }

    fn reply(
        &mut self,
        message_id: u16,
        token: wire::Token,
        code: Code,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        self.push(&Message::Reply(Reply {
            header: Header::new(MessageType::Acknowledgement, message_id, token),
            code,
            payload,
        }))
    }

    fn push(&mut self, message: &Message<'_>) -> Result<(), SessionError> {
        self.out.push(message).map_err(SessionError::Malformed)
    }

    /// Gives back what only a burst of traffic needs once it is over (nothing is queued to send):
    /// the encoder and the queues' spare capacity. A connection that waits holds its keys,
    /// counters and device information only.
    fn release_idle_memory(&mut self) {
        if self.keeping() {
            return;
        }
        if let Some(channel) = self.channel.as_mut() {
            channel.park_encoder();
        }
        if self.out.queue.capacity() > 0 {
            self.out.queue = VecDeque::new();
        }
        if self.raw.capacity() > 0 && self.raw.is_empty() {
            self.raw = VecDeque::new();
        }
        if self.out.pending.is_empty() && self.out.pending.capacity() > 0 {
            self.out.pending = Vec::new();
        }
    }

    fn idle_deadline(&self) -> Instant {
        self.last_rx + self.config.idle_timeout()
    }
}

impl<S: HandshakeKeys, K: DeviceKeys, R: CryptoRng> Connection for CloudConnection<S, K, R> {
    type Event = CloudEvent;

    fn handle_input(&mut self, now: Instant, input: &[u8]) -> Result<(), SessionError> {
        let result = self.handle_input_inner(now, input);
        // The message buffer and the decoder are rebuilt for the next input, unless the connection is busy.
        if !self.keeping()
            && let Some(channel) = self.channel.as_mut()
        {
            channel.park_decoder();
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn handle_close(&mut self, _now: Instant) {
        let _ = self.fail(SessionError::TransportClosed);
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Ended(_) => return,
            State::Credentials(ref c) if now >= c.deadline => {
                let _ = self.fail(SessionError::HandshakeTimeout);
                return;
            }
            State::Credentials(_) => return,
            State::Hello { deadline } => {
                if now >= deadline {
                    let _ = self.fail(SessionError::HandshakeTimeout);
                }
                return;
            }
            State::Established => {}
        }
        if now >= self.idle_deadline() {
            let _ = self.fail(SessionError::PingTimeout);
            return;
        }
        if let Some(interval) = self.config.ping_interval()
            && !self.ping_sent
            && now >= self.last_rx + interval
        {
            self.ping_sent = true;
            let _ = self.out.request(
                |header| {
                    Message::Ping(Ping {
                        header: Header::con(header.message_id),
                    })
                },
                Waiting::Ping,
                Some(now + self.config.idle_timeout()),
            );
        }
        let mut i = 0;
        while i < self.out.pending.len() {
            let p = self.out.pending[i];
            if p.deadline.is_some_and(|d| now >= d) {
                self.out.pending.swap_remove(i);
                self.finish_request(p.waiting, Err(RequestFailure::Timeout), &[]);
            } else {
                i += 1;
            }
        }
        if let Some(f) = self.flasher.as_mut() {
            f.handle_timeout(now, &mut self.out, &mut self.events);
        }
        self.reap_flasher();
    }

    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        if let State::Ended(e) = self.state {
            return Err(e);
        }
        if let Some(front) = self.raw.front() {
            let len = front.len();
            let dst = buf
                .get_mut(..len)
                .ok_or(SessionError::InsufficientSize { required: len })?;
            dst.copy_from_slice(front);
            self.raw.pop_front();
            return Ok(Some(len));
        }
        if self.channel.is_none() && !self.datagram {
            return Ok(None);
        }
        if self.out.queue.is_empty() {
            if let Some(f) = self.flasher.as_mut() {
                f.poll_chunk(now, &mut self.out, &mut self.events);
            }
            self.reap_flasher();
        }
        let Some(front) = self.out.queue.front() else {
            self.release_idle_memory();
            return Ok(None);
        };
        if self.datagram {
            let len = front.len();
            let dst = buf
                .get_mut(..len)
                .ok_or(SessionError::InsufficientSize { required: len })?;
            dst.copy_from_slice(front);
            self.out.queue.pop_front();
            return Ok(Some(len));
        }
        let required = sealed_len(front.len());
        if buf.len() < required {
            return Err(SessionError::InsufficientSize { required });
        }
        let Some(channel) = self.channel.as_mut() else {
            return Ok(None);
        };
        let n = match channel.encoder().seal(front, buf) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(frame_error(e))),
        };
        let sent = self.out.queue.pop_front();
        if let (Some(busy), Some(sent)) = (self.busy.as_deref_mut(), sent)
            && busy.keep
            && busy.spare.len() < SPARE_BUFFERS
            && sent.capacity() <= 64
        {
            busy.spare.push(sent);
        }
        Ok(Some(n))
    }

    fn max_transmit_len(&self) -> usize {
        let largest = self.out.queue.iter().map(Vec::len).max().unwrap_or(0);
        let chunk = self.flasher.as_deref().map_or(0, Flasher::max_message_len);
        let raw = self.raw.iter().map(Vec::len).max().unwrap_or(NONCE_LEN);
        sealed_len(largest.max(chunk).max(wire::limits::CORE_QUEUE_SIZE)).max(raw)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Ended(_) => None,
            State::Credentials(ref c) => Some(c.deadline),
            State::Hello { deadline } => Some(deadline),
            State::Established => {
                let mut t = self.idle_deadline();
                if let Some(interval) = self.config.ping_interval()
                    && !self.ping_sent
                {
                    t = t.min(self.last_rx + interval);
                }
                for d in self.out.pending.iter().filter_map(|p| p.deadline) {
                    t = t.min(d);
                }
                if let Some(d) = self.flasher.as_deref().and_then(Flasher::deadline) {
                    t = t.min(d);
                }
                Some(t)
            }
        }
    }

    fn poll_event(&mut self) -> Option<CloudEvent> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 && !self.keeping() {
            self.events = VecDeque::new();
        }
        event
    }

    fn error(&self) -> Option<SessionError> {
        match self.state {
            State::Ended(e) => Some(e),
            _ => None,
        }
    }

    /// An update is under way.
    fn is_busy(&self) -> bool {
        self.flasher.is_some()
    }
}
