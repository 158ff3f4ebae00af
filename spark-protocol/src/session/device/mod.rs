//! The device side: [`DeviceConnection`], the state machine a Spark Core port runs.
//!
//! It behaves as the Core's communication library does, on caller-sized, heap-free storage:
//!
//! - the handshake (nonce -> credentials -> session key) through a [`DeviceHandshake`] (the RSA
//!   steps come from the crypto layer's traits; [`RsaHandshake`] wires them), or a session
//!   established elsewhere ([`DeviceConnection::from_session`]); then the device Hello (with the
//!   OTA-success flag when asked) and the wait for the server's Hello;
//! - message ids and tokens seeded from the session salt, incremented for every message the
//!   device originates;
//! - Describe, function calls (empty ACK at once, the separate FunctionReturn when the
//!   application calls [`DeviceConnection::function_return`]), variable reads (piggy-backed
//!   value from [`DeviceConnection::variable_value`]), publish with the Core's rate limit,
//!   subscribe in every form with prefix-match delivery, time, signal, key change;
//! - keep-alive: a ping after 15 s without a message from the cloud, [`SessionError::PingTimeout`]
//!   10 s later if nothing came;
//! - OTA into a [`FirmwareSink`]: stop-and-wait and fast OTA, CRC-32 per chunk, ChunkMissed every
//!   3 s, a received-chunk bitmap; the image is committed only when complete.
//!
//! Any protocol error ends the session with a typed [`SessionError`] that every later call
//! returns; a transfer in progress is then aborted, never committed.

mod sink;

pub use sink::{BufferSink, FirmwareSink, ImageInfo, NoFirmware, SinkError};

use core::time::Duration;

use heapless::Vec;

pub use super::Scope;
use super::{Connection, Instant, SessionError};
use crate::DeviceId;
use crate::crypto::framing::{CORE_MAX_CIPHERTEXT_LEN, LentCipher, sealed_len};
use crate::crypto::handshake::{DEVICE_CREDENTIALS_LEN, NONCE_LEN, SESSION_REPLY_LEN};
use crate::crypto::{
    Aes128Cbc, FrameDecoder, FrameEncoder, FrameError, Nonce, RsaScratch, SessionCipher, SessionKey,
};
use crate::wire::describe::{DescriptionWriter, VarType};
use crate::wire::hello::{CoreHello, ExtendedHello, HelloFlags, HelloLimits, HelloPayload};
use crate::wire::limits::{
    CORE_EVENT_FILTER_BUFFER_LEN, CORE_MAX_FUNCTION_ARG_LEN, CORE_MAX_FUNCTION_NAME_LEN,
    CORE_MAX_PUBLISH_LEN, CORE_MAX_SUBSCRIPTION_FILTER_LEN, CORE_QUEUE_SIZE,
    DOS_MISSED_CHUNKS_TO_SEND, MAX_EVENT_TTL, SP_CHUNK_SIZE, SP_MAX_CHUNK_SIZE,
};
use crate::wire::message::{
    Chunk, ChunkMissed, ChunkReceived, DescribeReturn, EmptyAck, Event, EventName, FunctionReturn,
    GetTime, Hello, KeyChanged, Ping, Reply, Subscribe, SubscribeScope, UpdateReady, Value,
    VariableValue, Visibility,
};
use crate::wire::ota::{ChunkIndices, UpdateParams};
use crate::wire::{Code, Header, MessageKind, Repr, Role, classify_repr};

mod handshake;
pub use handshake::{DeviceHandshake, NoHandshake, RsaHandshake};

/// Functions a Core registers at most (`Spark.function`).
pub const MAX_FUNCTIONS: usize = 4;
/// Variables a Core registers at most (`Spark.variable`).
pub const MAX_VARIABLES: usize = 10;
/// Event handlers a Core registers at most (`Spark.subscribe`).
pub const MAX_SUBSCRIPTIONS: usize = 4;
/// Events waiting for [`Connection::poll_event`] at most.
pub const EVENT_QUEUE_LEN: usize = 3;
/// Calls and variable reads waiting for the application's answer at most.
pub const PENDING_REQUESTS: usize = 4;
/// Bytes of plaintext messages waiting to be sealed and sent.
pub const TRANSMIT_QUEUE_LEN: usize = CORE_QUEUE_SIZE;
/// The longest frame the device sends: its longest queued message (the queue less one length prefix), sealed.
/// A driver buffer of this size suffices ([`Connection::max_transmit_len`]).
pub const MAX_TRANSMIT_LEN: usize = sealed_len(TRANSMIT_QUEUE_LEN - LEN_PREFIX);
/// Chunks an OTA transfer may have (1024 chunks of 256 bytes = 256 KiB, twice the Core's flash).
pub const MAX_OTA_CHUNKS: usize = 1024;
/// Publishes allowed in any rolling second (the Core's limit).
pub const PUBLISH_RATE: usize = 4;
/// Longest event data delivered to the application; longer data is cut and flagged.
pub const MAX_EVENT_DATA_LEN: usize = CORE_MAX_PUBLISH_LEN;

/// Ping after this long without a message from the cloud.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Device OS's keep-alive for cellular UDP devices (Electron, Boron): a CoAP ping after 23 minutes
/// of quiet, as `DeviceConfig::ping_interval` takes it.
pub const CELLULAR_PING_INTERVAL: Duration = Duration::from_secs(23 * 60);
/// Close with [`SessionError::PingTimeout`] when nothing arrives this long after a ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a device in datagram mode waits for the answer to its ping: the CoAP layer below
/// retransmits a lost ping or answer (4 to 6 s, then doubling), so the wait is longer than
/// [`PING_TIMEOUT`] over TCP (Device OS waits 30 s too).
pub const DATAGRAM_PING_TIMEOUT: Duration = Duration::from_secs(30);
/// Send ChunkMissed after this long without a chunk during an update.
pub const CHUNK_MISSED_INTERVAL: Duration = Duration::from_secs(3);
/// The handshake, and the wait for the server's Hello, must each finish within this (the
/// Core's blocking I/O limit).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// An update not finished this long after UpdateBegin is abandoned (Device OS's limit).
pub const OTA_TIMEOUT: Duration = Duration::from_secs(300);

const ROLLING_SECOND: Duration = Duration::from_secs(1);
const LEN_PREFIX: usize = 2;
/// The longest header of a piggy-backed reply: four bytes and a token of up to eight.
const DESCRIBE_HEADER_MAX: usize = 4 + 8;

/// A function or variable name, cut to the Core's 12 bytes.
pub type Name = Vec<u8, CORE_MAX_FUNCTION_NAME_LEN>;

/// What identifies the device to the cloud and what its Hello says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The device id.
    pub device_id: DeviceId,
    /// Product id (`0xffff` on a Core without one).
    pub product_id: u16,
    /// Product firmware version (`0xffff` on a Core without one).
    pub firmware_version: u16,
    /// Sets the Hello's OTA-success flag: the device has just booted an image received by OTA.
    pub ota_succeeded: bool,
    /// Accepts fast OTA when the cloud offers it.
    pub fast_ota: bool,
    /// Sends Device OS's extended Hello with this platform id (10 for an Electron), the device id and
    /// [`DeviceConfig::limits`] instead of the Core's 6-byte Hello; `None` (the default) for a Core.
    pub platform_id: Option<u16>,
    /// The limits appended to the extended Hello (system version, largest message and binary, OTA
    /// chunk size), when [`DeviceConfig::platform_id`] is set.
    pub limits: Option<HelloLimits>,
    /// Idle time after which the device pings the cloud: [`PING_INTERVAL`] (the Core's 15 s) by
    /// default; Device OS's cellular UDP devices use [`CELLULAR_PING_INTERVAL`].
    pub ping_interval: Duration,
}

impl DeviceConfig {
    /// A Core's configuration: no product, no OTA flag, fast OTA accepted. `device_id` is a
    /// [`DeviceId`] or its 12 bytes.
    pub fn new(device_id: impl Into<DeviceId>) -> Self {
        DeviceConfig {
            device_id: device_id.into(),
            product_id: 0xffff,
            firmware_version: 0xffff,
            ota_succeeded: false,
            fast_ota: true,
            platform_id: None,
            limits: None,
            ping_interval: PING_INTERVAL,
        }
    }
}

/// A function call waiting for its return value; pass it to
/// [`DeviceConnection::function_return`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct CallId(Header);

/// A variable read waiting for its value; pass it to [`DeviceConnection::variable_value`].
///
/// Like [`CallId`] it stands for the cloud's message the answer must echo, which is why it is not
/// the cloud side's [`RequestId`](crate::session::cloud::RequestId) (a counter of the cloud
/// application's own requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ReadId(Header);

/// A subscription's index (0 to [`MAX_SUBSCRIPTIONS`] - 1), as a bit in
/// [`ReceivedEvent::handlers`].
pub type SubscriptionId = u8;

/// A function call from the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCallEvent {
    /// Answer with [`DeviceConnection::function_return`].
    pub call: CallId,
    /// The registered function's name.
    pub name: Name,
    /// The argument (at most 63 bytes on the Core).
    pub argument: Vec<u8, CORE_MAX_FUNCTION_ARG_LEN>,
}

/// A variable read from the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableRequestEvent {
    /// Answer with [`DeviceConnection::variable_value`].
    pub request: ReadId,
    /// The registered variable's name.
    pub name: Name,
    /// Its registered type; the answer must be of this type.
    pub var_type: VarType,
}

/// An event from the cloud that matched one or more subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// Bit `i` is set when subscription `i`'s filter is a prefix of the name.
    pub handlers: u8,
    /// Whether the event was private (`E`).
    pub private: bool,
    /// The name, segments joined with `/` (cut to 64 bytes, the Core's filter buffer).
    pub name: Vec<u8, CORE_EVENT_FILTER_BUFFER_LEN>,
    /// The data (cut to [`MAX_EVENT_DATA_LEN`]).
    pub data: Vec<u8, MAX_EVENT_DATA_LEN>,
    /// Whether the name or the data was cut.
    pub truncated: bool,
}

/// Why an update did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtaFailure {
    /// The sink refused to begin, write or finish.
    Sink(SinkError),
    /// The update parameters are unusable (chunk size 0 or over 594, too many chunks).
    Parameters,
    /// The transfer did not finish within [`OTA_TIMEOUT`].
    Timeout,
    /// The cloud began a new update before this one finished.
    Restarted,
}

/// What the device session reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
// Heap-free: an event carries its data inline, so no variant can be boxed.
#[allow(clippy::large_enum_variant)]
pub enum DeviceEvent {
    /// The server's Hello arrived: the session is up.
    Connected,
    /// The cloud calls a registered function.
    FunctionCall(FunctionCallEvent),
    /// The cloud reads a registered variable.
    VariableRequest(VariableRequestEvent),
    /// A subscribed event arrived.
    Event(ReceivedEvent),
    /// The answer to [`DeviceConnection::request_time`]: Unix seconds.
    Time(u32),
    /// The cloud asks the device to start (`true`) or stop signalling (the rainbow LED).
    Signal(bool),
    /// The cloud sent a key change; it was acknowledged (the Core does nothing else with it).
    KeyChange,
    /// An update began; chunks go to the sink.
    UpdateStarted {
        /// What UpdateBegin announced.
        info: ImageInfo,
        /// Whether fast OTA was accepted.
        fast: bool,
    },
    /// The image was received whole and committed by the sink.
    UpdateFinished {
        /// Its size in bytes.
        size: u32,
    },
    /// The update was abandoned; the sink was told to abort.
    UpdateFailed(OtaFailure),
}

/// Why an application request was refused. None of these ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The session has ended.
    #[error("session ended: {0}")]
    Session(SessionError),
    /// The server's Hello has not arrived yet.
    #[error("not connected yet")]
    NotConnected,
    /// More than 4 publishes within a second (the Core's `send_event` returns false).
    #[error("publish rate limit of 4 per second exceeded")]
    RateLimited,
    /// A name, data or argument is longer than the Core allows.
    #[error("{len} bytes exceed the limit of {max}")]
    TooLong {
        /// The length given.
        len: usize,
        /// The largest accepted.
        max: usize,
    },
    /// The transmit queue is full: send what is queued first.
    #[error("transmit queue full")]
    QueueFull,
    /// No room for another function, variable or subscription.
    #[error("registration table full")]
    TableFull,
    /// The call or request is not pending (already answered, or from an ended session).
    #[error("no such pending request")]
    UnknownRequest,
    /// The value's type is not the variable's registered type.
    #[error("value type does not match the variable's {expected:?}")]
    WrongType {
        /// The registered type.
        expected: VarType,
    },
    /// A subscription to all events needs a non-empty filter (the Core refuses the firehose).
    #[error("subscription filter is empty")]
    EmptyFilter,
}

impl From<SessionError> for DeviceError {
    fn from(e: SessionError) -> Self {
        DeviceError::Session(e)
    }
}

#[derive(Debug, Clone)]
struct Subscription {
    filter: Vec<u8, CORE_MAX_SUBSCRIPTION_FILTER_LEN>,
}

struct Ota {
    info: ImageInfo,
    fast: bool,
    chunk_size: u32,
    /// Chunks in the image, when its size is known.
    chunks: Option<u32>,
    /// The next chunk a stop-and-wait transfer expects.
    next_chunk: u32,
    /// The end of the furthest byte written.
    high_water: u32,
    bitmap: [u8; MAX_OTA_CHUNKS / 8],
    last_chunk_at: Instant,
    started_at: Instant,
}

impl Ota {
    fn has(&self, index: u32) -> bool {
        self.bitmap
            .get(index as usize / 8)
            .is_some_and(|b| b & (1 << (index % 8)) != 0)
    }

    fn set(&mut self, index: u32) {
        if let Some(b) = self.bitmap.get_mut(index as usize / 8) {
            *b |= 1 << (index % 8);
        }
    }

    fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        let end = self.chunks.unwrap_or(self.next_chunk + 1);
        (0..end).filter(|&i| !self.has(i))
    }

    fn complete(&self) -> bool {
        match self.chunks {
            Some(_) => self.missing().next().is_none(),
            None => true,
        }
    }

    fn size(&self) -> u32 {
        self.info.size.unwrap_or(self.high_water)
    }
}

// Heap-free: the phases share the space in place of a box.
#[allow(clippy::large_enum_variant)]
enum Phase<H> {
    Handshake {
        hs: H,
        stage: Stage,
        creds: [u8; DEVICE_CREDENTIALS_LEN],
        buf: [u8; SESSION_REPLY_LEN],
        have: usize,
    },
    Open {
        // One key schedule for both directions (the protocol uses one AES key both ways), lent to each call.
        cipher: Aes128Cbc,
        encoder: FrameEncoder<LentCipher>,
        decoder: FrameDecoder<LentCipher, [u8; CORE_MAX_CIPHERTEXT_LEN]>,
    },
    /// Datagram mode (UDP): plaintext CoAP messages, one per call, below them DTLS.
    Datagram,
    Ended,
}

/// The event queue, whose memory the handshake borrows: until the session opens no event can
/// arrive, so the queue's space holds the RSA steps' numbers ([`RsaScratch`]) instead, and the
/// handshake's peak RAM is the open session's.
#[allow(clippy::large_enum_variant)]
enum EventStore {
    Lent(RsaScratch),
    Queue(EventQueue),
}

/// A ring of events, each written in its slot by the message handler that makes it: an event (its
/// largest variant's size, whatever the variant) built on the stack and then moved in would sit
/// above the frame being handled.
struct EventQueue {
    slots: [DeviceEvent; EVENT_QUEUE_LEN],
    head: usize,
    len: usize,
}

impl EventStore {
    fn queue() -> Self {
        EventStore::Queue(EventQueue {
            // Placeholders, never read: `len` says which slots hold events.
            slots: [const { DeviceEvent::Connected }; EVENT_QUEUE_LEN],
            head: 0,
            len: 0,
        })
    }

    /// Queues the event `write` puts in the slot it is given (the slot's old value is a spent
    /// event); false if the queue is full or lent.
    #[inline(always)]
    fn push_with(&mut self, write: impl FnOnce(&mut DeviceEvent)) -> bool {
        let EventStore::Queue(queue) = self else {
            return false;
        };
        if queue.len == EVENT_QUEUE_LEN {
            return false;
        }
        // Both below the length: one subtraction wraps their sum.
        let mut at = queue.head + queue.len;
        if at >= EVENT_QUEUE_LEN {
            at -= EVENT_QUEUE_LEN;
        }
        let Some(slot) = queue.slots.get_mut(at) else {
            return false;
        };
        write(slot);
        queue.len += 1;
        true
    }

    fn is_full(&self) -> bool {
        match self {
            EventStore::Queue(queue) => queue.len == EVENT_QUEUE_LEN,
            EventStore::Lent(_) => true,
        }
    }

    fn pop_front(&mut self) -> Option<DeviceEvent> {
        let EventStore::Queue(queue) = self else {
            return None;
        };
        if queue.len == 0 {
            return None;
        }
        let slot = queue.slots.get_mut(queue.head)?;
        let event = core::mem::replace(slot, DeviceEvent::Connected);
        queue.head += 1;
        if queue.head == EVENT_QUEUE_LEN {
            queue.head = 0;
        }
        queue.len -= 1;
        Some(event)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    ExpectNonce,
    ExpectSessionKey { creds_len: usize, sent: bool },
}

/// The device side of a session: sans-IO, heap-free (the RSA backend aside), driven through
/// [`Connection`].
///
/// `S` receives OTA images ([`NoFirmware`] refuses them); `H` performs the RSA steps of the
/// handshake ([`NoHandshake`] for a session established elsewhere).
///
/// A device and a cloud session talking in memory, from a session secret both know (as if the
/// handshake had just run), on the virtual time of a [`Pair`](crate::session::pair::Pair): the
/// cloud calls a function and the device answers it.
///
/// ```
/// use spark_protocol::DeviceId;
/// use spark_protocol::crypto::SessionKey;
/// use spark_protocol::crypto::rng::HardwareRng;
/// use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent, NoKeys};
/// use spark_protocol::session::device::{DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware};
/// use spark_protocol::session::pair::Pair;
/// use spark_protocol::session::Instant;
///
/// let secret = SessionKey::from_bytes([7; 40]);
/// let id: DeviceId = "53ff6f065067544840351187".parse()?;
/// let mut device =
///     DeviceConnection::from_session(Instant::ZERO, &secret, DeviceConfig::new(id), NoFirmware);
/// device.register_function(b"brew")?;
/// // The cloud draws its message ids from an RNG (here a counter standing in for one).
/// let mut n = 0u8;
/// let rng = HardwareRng(move |dest: &mut [u8]| dest.iter_mut().for_each(|b| { n = n.wrapping_add(1); *b = n }));
/// let cloud = CloudConnection::from_session(
///     Instant::ZERO, NoKeys, NoKeys, rng, CloudConfig::default(), &secret, id,
/// );
///
/// // Device first, cloud second; the link delivers every frame until both are quiet.
/// let mut link = Pair::new(device, cloud);
/// let _ = link.run(Instant::from_millis(100));
/// assert!(link.a().is_connected() && link.b().is_established());
/// assert_eq!(link.take_events_a(), [DeviceEvent::Connected]);
///
/// let now = link.now();
/// let request = link.b_mut().call_function(now, b"brew", b"espresso")?;
/// let _ = link.run(Instant::from_millis(200));
/// let [DeviceEvent::FunctionCall(call)] = &link.take_events_a()[..] else { panic!("a call") };
/// assert_eq!(call.argument, b"espresso");
/// link.a_mut().function_return(call.call, 42)?;
/// let _ = link.run(Instant::from_millis(300));
/// assert!(link.take_events_b().contains(&CloudEvent::FunctionReturned { request, result: Ok(42) }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DeviceConnection<S: FirmwareSink = NoFirmware, H: DeviceHandshake = NoHandshake> {
    phase: Phase<H>,
    error: Option<SessionError>,
    config: DeviceConfig,
    next_id: u16,
    next_token: u8,
    tx: [u8; TRANSMIT_QUEUE_LEN],
    tx_len: usize,
    events: EventStore,
    functions: Vec<Name, MAX_FUNCTIONS>,
    variables: Vec<(Name, VarType), MAX_VARIABLES>,
    subscriptions: Vec<Subscription, MAX_SUBSCRIPTIONS>,
    pending_calls: Slots<Header>,
    pending_reads: Slots<(Header, VarType)>,
    publish_times: [Instant; PUBLISH_RATE],
    publish_count: usize,
    publish_next: usize,
    hello_received: bool,
    deadline: Option<Instant>,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    dropped_events: u32,
    ota: Option<Ota>,
    sink: S,
}

impl<S: FirmwareSink, H: DeviceHandshake> core::fmt::Debug for DeviceConnection<S, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceConnection")
            .field("error", &self.error)
            .field("connected", &self.hello_received)
            .field("next_id", &self.next_id)
            .field("ota", &self.ota.is_some())
            .finish_non_exhaustive()
    }
}

fn frame_error(e: FrameError) -> SessionError {
    match e {
        FrameError::FrameTooLong { len, max } => SessionError::Oversized { len, max },
        other => SessionError::Decryption(other),
    }
}

impl<S: FirmwareSink> DeviceConnection<S, NoHandshake> {
    /// A device whose handshake is done (`session` is the 40-byte secret): it queues its Hello
    /// at once and waits for the server's. With no handshake left to run its handshake type is
    /// [`NoHandshake`], so `DeviceConnection::from_session(…)` needs no annotation:
    ///
    /// ```
    /// use spark_protocol::crypto::SessionKey;
    /// use spark_protocol::session::Instant;
    /// use spark_protocol::session::device::{DeviceConfig, DeviceConnection, NoFirmware};
    ///
    /// let secret = SessionKey::from_bytes([3; 40]);
    /// let dev = DeviceConnection::from_session(Instant::ZERO, &secret, DeviceConfig::new([7; 12]), NoFirmware);
    /// assert!(!dev.is_connected()); // until the server's Hello arrives
    /// ```
    pub fn from_session(now: Instant, session: &SessionKey, config: DeviceConfig, sink: S) -> Self {
        let mut conn = Self::base(Phase::Ended, config, sink, now);
        conn.open(session, now);
        conn
    }
}

impl<S: FirmwareSink> DeviceConnection<S, NoHandshake> {
    /// A device in datagram mode, the UDP protocol's: the DTLS handshake authenticates both
    /// sides, so no RSA handshake runs and no AES-CBC framing is applied.
    /// [`Connection::handle_input`] takes one whole plaintext CoAP message per call (one DTLS
    /// application record) and [`Connection::poll_transmit`] gives one per call. The message-id
    /// counter and the token start from `rng`. The Hello is queued at once, as a confirmable
    /// message (Device OS sends it so); CoAP retransmission and duplicate detection sit below,
    /// in `session::datagram` with the `dtls` feature.
    pub fn datagram<R: rand_core::Rng + ?Sized>(
        now: Instant,
        config: DeviceConfig,
        sink: S,
        rng: &mut R,
    ) -> Self {
        let mut conn = Self::base(Phase::Ended, config, sink, now);
        let mut seed = [0u8; 3];
        rng.fill_bytes(&mut seed);
        conn.events = EventStore::queue();
        conn.phase = Phase::Datagram;
        conn.next_id = u16::from_be_bytes([seed[0], seed[1]]);
        conn.next_token = seed[2];
        conn.queue_hello(Header::con(conn.peek_id()));
        conn
    }
}

impl<S: FirmwareSink, H: DeviceHandshake> DeviceConnection<S, H> {
    /// Whether the session runs in datagram mode ([`DeviceConnection::datagram`]).
    #[must_use]
    pub fn is_datagram(&self) -> bool {
        matches!(self.phase, Phase::Datagram)
    }

    fn ping_timeout(&self) -> Duration {
        if self.is_datagram() {
            DATAGRAM_PING_TIMEOUT
        } else {
            PING_TIMEOUT
        }
    }

    /// The header of a separate response to `request`: non-confirmable over TCP (the stream
    /// does not lose it), confirmable over UDP (the CoAP layer below sends it until acknowledged).
    fn separate(&self, request: &Header) -> Header {
        let header = Header::separate(request, self.peek_id());
        if self.is_datagram() {
            Header::new(
                crate::wire::MessageType::Confirmable,
                header.message_id,
                header.token,
            )
        } else {
            header
        }
    }

    /// In datagram mode, acknowledges a confirmable message that has no other answer.
    fn ack_datagram(&mut self, repr: &Repr<'_>) -> Result<(), SessionError> {
        if self.is_datagram() && repr.msg_type == crate::wire::MessageType::Confirmable {
            let header = Header::new(repr.msg_type, repr.message_id, repr.token);
            self.reply(&EmptyAck::from_request(&header))?;
        }
        Ok(())
    }

    fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. } | Phase::Datagram)
    }

    fn base(phase: Phase<H>, config: DeviceConfig, sink: S, now: Instant) -> Self {
        DeviceConnection {
            phase,
            error: None,
            config,
            next_id: 0,
            next_token: 0,
            tx: [0; TRANSMIT_QUEUE_LEN],
            tx_len: 0,
            events: EventStore::Lent(RsaScratch::new()),
            functions: Vec::new(),
            variables: Vec::new(),
            subscriptions: Vec::new(),
            pending_calls: Slots([None; PENDING_REQUESTS]),
            pending_reads: Slots([None; PENDING_REQUESTS]),
            publish_times: [Instant::ZERO; PUBLISH_RATE],
            publish_count: 0,
            publish_next: 0,
            hello_received: false,
            deadline: Some(now + HANDSHAKE_TIMEOUT),
            last_rx: now,
            ping_sent: None,
            dropped_events: 0,
            ota: None,
            sink,
        }
    }

    /// A device that runs the handshake: it waits for the cloud's nonce.
    pub fn new(now: Instant, config: DeviceConfig, handshake: H, sink: S) -> Self {
        let phase = Phase::Handshake {
            hs: handshake,
            stage: Stage::ExpectNonce,
            creds: [0; DEVICE_CREDENTIALS_LEN],
            buf: [0; SESSION_REPLY_LEN],
            have: 0,
        };
        Self::base(phase, config, sink, now)
    }

    // Out of line: the new phase (about 1 KB, built on the stack and then moved in) would otherwise
    // sit in the frame of whoever drives the handshake, on top of the RSA steps' own stack.
    #[inline(never)]
    fn open(&mut self, session: &SessionKey, now: Instant) {
        // The handshake's scratch (wiped by its backend) becomes the event queue.
        self.events = EventStore::queue();
        self.phase = Phase::Open {
            cipher: Aes128Cbc::new(session.aes_key()),
            encoder: FrameEncoder::new(LentCipher, session.iv()),
            decoder: FrameDecoder::new(LentCipher, session.iv(), [0; CORE_MAX_CIPHERTEXT_LEN]),
        };
        self.next_id = session.message_id_seed();
        self.next_token = session.token_seed();
        self.last_rx = now;
        self.deadline = Some(now + HANDSHAKE_TIMEOUT);
        self.queue_hello(Header::non(self.peek_id()));
    }

    fn queue_hello(&mut self, header: Header) {
        let flags = if self.config.ota_succeeded {
            HelloFlags::OTA_UPGRADE_SUCCESSFUL
        } else {
            HelloFlags(0)
        };
        self.take_id();
        let payload = match self.config.platform_id {
            Some(platform_id) => HelloPayload::Extended(ExtendedHello {
                product_id: self.config.product_id,
                firmware_version: self.config.firmware_version,
                flags,
                platform_id,
                device_id: Some(*self.config.device_id.as_bytes()),
                limits: self.config.limits,
            }),
            None => HelloPayload::Core(CoreHello {
                product_id: self.config.product_id,
                firmware_version: self.config.firmware_version,
                flags,
            }),
        };
        let hello = Hello { header, payload };
        // The queue is empty: a Hello (at most 4 + 32 bytes) always fits.
        let _ = self.queue(&hello);
    }

    // ---------------------------------------------------------------------------------------
    // Registration and application requests

    /// Registers a function for Describe and calls; the name is cut to 12 bytes, as the Core
    /// cuts it.
    pub fn register_function(&mut self, name: &[u8]) -> Result<(), DeviceError> {
        let name = core_name(name);
        if self.functions.contains(&name) {
            return Ok(());
        }
        self.functions
            .push(name)
            .map_err(|_| DeviceError::TableFull)
    }

    /// Registers a variable of type `ty`; the name is cut to 12 bytes.
    pub fn register_variable(&mut self, name: &[u8], ty: VarType) -> Result<(), DeviceError> {
        let name = core_name(name);
        if let Some(v) = self.variables.iter_mut().find(|v| v.0 == name) {
            v.1 = ty;
            return Ok(());
        }
        self.variables
            .push((name, ty))
            .map_err(|_| DeviceError::TableFull)
    }

    fn ready(&self) -> Result<(), DeviceError> {
        if let Some(e) = self.error {
            return Err(DeviceError::Session(e));
        }
        if !self.hello_received {
            return Err(DeviceError::NotConnected);
        }
        Ok(())
    }

    /// Publishes an event (name at most 63 bytes, data at most 255, TTL at most 2^24 - 1 s).
    /// At most 4 publishes pass in any rolling second; the fifth is
    /// [`DeviceError::RateLimited`] and is not sent.
    pub fn publish(
        &mut self,
        now: Instant,
        name: &[u8],
        data: Option<&[u8]>,
        visibility: Visibility,
        ttl: u32,
    ) -> Result<(), DeviceError> {
        self.ready()?;
        check_len(name.len(), CORE_EVENT_FILTER_BUFFER_LEN - 1)?;
        check_len(data.map_or(0, <[u8]>::len), CORE_MAX_PUBLISH_LEN)?;
        check_len(ttl as usize, MAX_EVENT_TTL as usize)?;
        if self.publish_count == PUBLISH_RATE {
            let oldest = self.publish_times[self.publish_next];
            if now.saturating_duration_since(oldest) < ROLLING_SECOND {
                return Err(DeviceError::RateLimited);
            }
        }
        let id = self.peek_id();
        let event = Event::publish(id, visibility, name, data, ttl);
        self.queue_originated(&event)?;
        self.publish_times[self.publish_next] = now;
        self.publish_next = (self.publish_next + 1) % PUBLISH_RATE;
        self.publish_count = (self.publish_count + 1).min(PUBLISH_RATE);
        Ok(())
    }

    /// Subscribes to events whose name starts with `filter` (at most 63 bytes) and returns the
    /// subscription's index for [`ReceivedEvent::handlers`].
    pub fn subscribe(
        &mut self,
        filter: &[u8],
        scope: Scope,
    ) -> Result<SubscriptionId, DeviceError> {
        self.ready()?;
        if filter.is_empty() && scope == Scope::All {
            return Err(DeviceError::EmptyFilter);
        }
        check_len(filter.len(), CORE_MAX_SUBSCRIPTION_FILTER_LEN)?;
        if self.subscriptions.is_full() {
            return Err(DeviceError::TableFull);
        }
        let hex;
        let scope = match scope {
            Scope::All => SubscribeScope::Firehose,
            Scope::MyDevices => SubscribeScope::MyDevices,
            Scope::Device(id) => {
                hex = id.to_hex();
                SubscribeScope::Device(&hex)
            }
        };
        let sub = Subscribe {
            header: Header::con(self.peek_id()),
            filter: EventName::whole(filter),
            scope,
        };
        self.queue_originated(&sub)?;
        let filter = Vec::from_slice(filter).map_err(|_| DeviceError::TableFull)?;
        let index = self.subscriptions.len();
        self.subscriptions
            .push(Subscription { filter })
            .map_err(|_| DeviceError::TableFull)?;
        Ok(index as SubscriptionId)
    }

    /// Asks the cloud for the time; the answer arrives as [`DeviceEvent::Time`].
    pub fn request_time(&mut self) -> Result<(), DeviceError> {
        self.ready()?;
        let token = self.next_token.wrapping_add(1);
        let msg = GetTime {
            header: Header::con(self.peek_id()).with_token(token),
        };
        self.queue_originated(&msg)?;
        self.next_token = token;
        Ok(())
    }

    /// Answers a function call with its return value (the separate FunctionReturn).
    pub fn function_return(&mut self, call: CallId, value: i32) -> Result<(), DeviceError> {
        if let Some(e) = self.error {
            return Err(DeviceError::Session(e));
        }
        let pos = self
            .pending_calls
            .position(|h| *h == call.0)
            .ok_or(DeviceError::UnknownRequest)?;
        let msg = FunctionReturn {
            header: self.separate(&call.0),
            code: Code::Changed,
            value: Some(value),
        };
        self.queue_originated(&msg)?;
        self.pending_calls.0[pos] = None;
        Ok(())
    }

    /// Answers a variable read with its value (piggy-backed on the ACK).
    pub fn variable_value(&mut self, request: ReadId, value: Value<'_>) -> Result<(), DeviceError> {
        if let Some(e) = self.error {
            return Err(DeviceError::Session(e));
        }
        let (pos, (_, expected)) = self
            .pending_reads
            .find(|(h, _)| *h == request.0)
            .ok_or(DeviceError::UnknownRequest)?;
        if value.var_type() != expected {
            return Err(DeviceError::WrongType { expected });
        }
        let msg = VariableValue {
            header: Header::piggybacked(&request.0),
            code: Code::Content,
            value,
        };
        self.queue(&msg).map_err(|_| DeviceError::QueueFull)?;
        self.pending_reads.0[pos] = None;
        Ok(())
    }

    /// Ends the session with [`SessionError::Closed`] (an update in progress is aborted).
    pub fn close(&mut self) {
        self.fail(SessionError::Closed);
    }

    /// Whether the server's Hello has arrived and the session has not ended.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.hello_received && self.error.is_none()
    }

    /// Whether an update is in progress.
    #[must_use]
    pub fn is_updating(&self) -> bool {
        self.ota.is_some()
    }

    /// Subscribed events dropped because the event queue was full.
    #[must_use]
    pub fn dropped_events(&self) -> u32 {
        self.dropped_events
    }

    /// The firmware sink.
    #[must_use]
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The firmware sink, mutably.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Ends the session's use and returns the sink (an update in progress is aborted).
    pub fn into_sink(mut self) -> S {
        if let Some(_ota) = self.ota.take() {
            self.sink.abort();
        }
        self.sink
    }

    // ---------------------------------------------------------------------------------------
    // Ids and the transmit queue

    fn peek_id(&self) -> u16 {
        self.next_id.wrapping_add(1)
    }

    fn take_id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Queues a message the device originates with [`Self::peek_id`]; consumes the id.
    fn queue_originated<M: Outgoing>(&mut self, msg: &M) -> Result<(), DeviceError> {
        self.queue(msg).map_err(|_| DeviceError::QueueFull)?;
        self.take_id();
        Ok(())
    }

    // The message is written straight into the free space in one pass; one that does not fit
    // is reported from the length the encoder counted, so no separate sizing pass (a second
    // copy of every encoder) is linked. Generic, not `&dyn`: inlined, each encoder folds into
    // its call site with its constant parts, which is smaller on the Core than shared bodies.
    fn queue<M: Outgoing>(&mut self, msg: &M) -> Result<(), SessionError> {
        let at = self.tx_len;
        let max = TRANSMIT_QUEUE_LEN - at;
        let room = self.tx.get_mut(at + LEN_PREFIX..).unwrap_or_default();
        let n = match msg.emit_into(room) {
            Ok(n) => n,
            Err(crate::wire::Error::InsufficientSize { required }) => {
                return Err(SessionError::Oversized {
                    len: LEN_PREFIX + required,
                    max,
                });
            }
            Err(e) => return Err(SessionError::Malformed(e)),
        };
        // `n` fits the queue, which is shorter than 64 KiB.
        self.tx[at..at + LEN_PREFIX].copy_from_slice(&(n as u16).to_be_bytes());
        self.tx_len += LEN_PREFIX + n;
        Ok(())
    }

    /// Queues a reply to the cloud; a full queue ends the session (the cloud floods a device
    /// that is not being drained).
    fn reply<M: Outgoing>(&mut self, msg: &M) -> Result<(), SessionError> {
        self.queue(msg)
    }

    fn reply_originated<M: Outgoing>(&mut self, msg: &M) -> Result<(), SessionError> {
        self.queue(msg)?;
        self.take_id();
        Ok(())
    }

    /// Queues the event `write` puts in its slot (`|e| *e = DeviceEvent::…`: written in place, not
    /// built on the stack and moved); false if the queue is full.
    #[inline(always)]
    fn push_event(&mut self, write: impl FnOnce(&mut DeviceEvent)) -> bool {
        self.events.push_with(write)
    }

    fn fail(&mut self, error: SessionError) -> SessionError {
        if let Some(e) = self.error {
            return e;
        }
        self.error = Some(error);
        self.phase = Phase::Ended;
        self.tx_len = 0;
        if self.ota.take().is_some() {
            self.sink.abort();
        }
        error
    }

    // ---------------------------------------------------------------------------------------
    // Input

    fn handshake_input(&mut self, now: Instant, mut input: &[u8]) -> Result<(), SessionError> {
        let Phase::Handshake {
            hs,
            stage,
            creds,
            buf,
            have,
        } = &mut self.phase
        else {
            return Ok(());
        };
        let need = match *stage {
            Stage::ExpectNonce => NONCE_LEN,
            Stage::ExpectSessionKey { sent: false, .. } => {
                return Err(SessionError::Unexpected(
                    "session key before the credentials were sent",
                ));
            }
            Stage::ExpectSessionKey { .. } => hs.session_reply_len().min(SESSION_REPLY_LEN),
        };
        let take = (need - *have).min(input.len());
        buf[*have..*have + take].copy_from_slice(&input[..take]);
        *have += take;
        input = &input[take..];
        if *have < need {
            return Ok(());
        }
        match *stage {
            Stage::ExpectNonce => {
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&buf[..NONCE_LEN]);
                let EventStore::Lent(scratch) = &mut self.events else {
                    return Err(SessionError::Unexpected("a handshake on an open session"));
                };
                let creds_len = hs
                    .credentials(
                        &Nonce(nonce),
                        self.config.device_id.as_bytes(),
                        creds,
                        scratch,
                    )
                    .map_err(SessionError::Authentication)?;
                *stage = Stage::ExpectSessionKey {
                    creds_len,
                    sent: false,
                };
                *have = 0;
                if !input.is_empty() {
                    return Err(SessionError::Unexpected(
                        "session key before the credentials were sent",
                    ));
                }
                Ok(())
            }
            Stage::ExpectSessionKey { .. } => {
                let EventStore::Lent(scratch) = &mut self.events else {
                    return Err(SessionError::Unexpected("a handshake on an open session"));
                };
                let session = hs
                    .open_session(&buf[..need], scratch)
                    .map_err(SessionError::Authentication)?;
                self.open(&session, now);
                self.framed_input(now, input)
            }
        }
    }

    fn framed_input(&mut self, now: Instant, mut input: &[u8]) -> Result<(), SessionError> {
        let mut plain = [0u8; CORE_MAX_CIPHERTEXT_LEN];
        loop {
            let Phase::Open {
                cipher, decoder, ..
            } = &mut self.phase
            else {
                return Ok(());
            };
            let n = decoder.handle_input(input).map_err(frame_error)?;
            input = &input[n..];
            match decoder
                .poll_message_with(cipher, &mut plain)
                .map_err(frame_error)?
            {
                Some(len) => self.handle_message(now, &plain[..len])?,
                None if input.is_empty() => return Ok(()),
                None if n == 0 => return Ok(()),
                None => {}
            }
        }
    }

    #[inline(never)]
    fn handle_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), SessionError> {
        self.last_rx = now;
        self.ping_sent = None;
        let repr = Repr::parse_bytes(bytes).map_err(SessionError::Malformed)?;
        let kind = classify_repr(&repr, Role::Device);
        if !self.hello_received && kind != MessageKind::Hello {
            if self.is_datagram() && repr.msg_type != crate::wire::MessageType::Confirmable {
                // Datagrams overtake each other: the ACK of our Hello, or a non-confirmable
                // message, can come before the cloud's Hello. Nothing waits on them.
                return Ok(());
            }
            return Err(SessionError::Unexpected(
                "message before the server's Hello",
            ));
        }
        if matches!(kind, MessageKind::Unknown) {
            // The Core ignores what it does not know.
            return Ok(());
        }
        // Each kind is decoded in its own arm, straight from the `Repr`: only the decoders a
        // device acts on are linked, and no `Message` is built and matched a second time.
        use crate::wire::message as m;
        match kind {
            MessageKind::Hello => {
                let _valid = ok(m::Hello::parse(&repr))?;
                if self.hello_received {
                    return Err(SessionError::Unexpected("a second Hello"));
                }
                self.hello_received = true;
                self.deadline = None;
                if repr.msg_type == crate::wire::MessageType::Confirmable {
                    // Over UDP the cloud's Hello is confirmable.
                    self.reply(&EmptyAck::from_request(&Header::new(
                        repr.msg_type,
                        repr.message_id,
                        repr.token,
                    )))?;
                }
                self.push_event(|e| *e = DeviceEvent::Connected);
            }
            MessageKind::Describe => self.describe(&ok(m::Describe::parse(&repr))?.header)?,
            MessageKind::FunctionCall => self.function_call(&repr)?,
            MessageKind::VariableRequest => self.variable_request(&repr)?,
            MessageKind::Event => {
                let event = ok(Event::parse(&repr))?;
                self.ack_datagram(&repr)?;
                self.deliver(&event);
            }
            MessageKind::Time => {
                let t = ok(m::Time::parse(&repr))?;
                self.push_event(|e| *e = DeviceEvent::Time(t.unix_time));
            }
            MessageKind::SignalStart | MessageKind::SignalStop => {
                let s = ok(m::Signal::parse(&repr))?;
                self.reply(&Reply {
                    header: Header::piggybacked(&s.header),
                    code: Code::Changed,
                    payload: &[],
                })?;
                self.push_event(|e| *e = DeviceEvent::Signal(s.start));
            }
            MessageKind::KeyChange => {
                let k = ok(m::KeyChange::parse(&repr))?;
                self.reply(&KeyChanged {
                    header: Header::piggybacked(&k.header),
                })?;
                self.push_event(|e| *e = DeviceEvent::KeyChange);
            }
            MessageKind::Ping => {
                let p = ok(Ping::parse(&repr))?;
                self.reply(&EmptyAck::from_request(&p.header))?;
            }
            MessageKind::UpdateBegin => {
                let b = ok(m::UpdateBegin::parse(&repr))?;
                self.update_begin(now, &b.header, b.params)?;
            }
            MessageKind::Chunk => self.chunk(now, &ok(Chunk::parse(&repr))?)?,
            MessageKind::UpdateDone => {
                self.update_done(&ok(m::UpdateDone::parse(&repr))?.header)?
            }
            // ACKs and replies to what the device sent (including the original server's
            // "slow down" ACK 4.00 to every event): nothing to do, but over UDP a confirmable
            // one is acknowledged so the cloud stops sending it.
            _ => self.ack_datagram(&repr)?,
        }
        Ok(())
    }

    // Out of line, as each arm that builds an event: the event occupies the stack only while it is queued, not in
    // the frame that opens every frame.
    #[inline(never)]
    fn function_call(&mut self, repr: &Repr<'_>) -> Result<(), SessionError> {
        let call = ok(crate::wire::message::FunctionCall::parse(repr))?;
        let arg = call.argument.unwrap_or_default();
        if arg.len() > CORE_MAX_FUNCTION_ARG_LEN {
            return Err(SessionError::Oversized {
                len: arg.len(),
                max: CORE_MAX_FUNCTION_ARG_LEN,
            });
        }
        self.reply(&EmptyAck::from_request(&call.header))?;
        let name = core_name(call.name);
        let known = self.functions.contains(&name);
        let code = if !known {
            Some(Code::NotFound)
        } else if self.pending_calls.is_full() || self.events.is_full() {
            Some(Code::ServiceUnavailable)
        } else {
            None
        };
        if let Some(code) = code {
            let ret = FunctionReturn {
                header: self.separate(&call.header),
                code,
                value: None,
            };
            return self.reply_originated(&ret);
        }
        self.pending_calls.insert(call.header);
        // The argument is copied into the queued event in its place (moved in whole, the event would be built on
        // the stack first).
        self.push_event(|e| {
            *e = DeviceEvent::FunctionCall(FunctionCallEvent {
                call: CallId(call.header),
                name,
                argument: Vec::new(),
            });
            if let DeviceEvent::FunctionCall(queued) = e {
                // Checked against the capacity above.
                let _ = queued.argument.extend_from_slice(arg);
            }
        });
        Ok(())
    }

    #[inline(never)]
    fn variable_request(&mut self, repr: &Repr<'_>) -> Result<(), SessionError> {
        let req = ok(crate::wire::message::VariableRequest::parse(repr))?;
        let name = core_name(req.name);
        let found = self.variables.iter().find(|v| v.0 == name).map(|v| v.1);
        let code = match found {
            None => Some(Code::NotFound),
            Some(_) if self.pending_reads.is_full() || self.events.is_full() => {
                Some(Code::ServiceUnavailable)
            }
            Some(_) => None,
        };
        match (code, found) {
            (None, Some(ty)) => {
                self.pending_reads.insert((req.header, ty));
                self.push_event(|e| {
                    *e = DeviceEvent::VariableRequest(VariableRequestEvent {
                        request: ReadId(req.header),
                        name,
                        var_type: ty,
                    })
                });
            }
            (code, _) => {
                let reply = Reply {
                    header: Header::piggybacked(&req.header),
                    code: code.unwrap_or(Code::NotFound),
                    payload: &[],
                };
                self.reply(&reply)?;
            }
        }
        Ok(())
    }

    // Out of line (as `deliver`): its buffer then occupies the stack only while it runs, not in the frame that
    // opens every frame.
    #[inline(never)]
    // The description is written straight into the transmit queue, behind room for the reply's header and payload
    // marker, and the header then goes in front: no description-sized buffer on the stack, above the frame being
    // handled. The bytes are those of a `DescribeReturn` carrying the description.
    fn describe(&mut self, request: &Header) -> Result<(), SessionError> {
        let head = DescribeReturn {
            header: Header::piggybacked(request),
            code: Code::Content,
            description: &[],
        };
        let mut header = [0u8; DESCRIBE_HEADER_MAX];
        let h = head
            .emit_into(&mut header)
            .map_err(SessionError::Malformed)?;
        let at = self.tx_len;
        let json_at = at + LEN_PREFIX + h + 1;
        let max = TRANSMIT_QUEUE_LEN - at;
        let mut w = DescriptionWriter::new(self.tx.get_mut(json_at..).unwrap_or_default());
        for f in &self.functions {
            w.function(f).map_err(SessionError::Malformed)?;
        }
        for (v, ty) in &self.variables {
            w.variable(v, *ty).map_err(SessionError::Malformed)?;
        }
        let n = match w.finish() {
            Ok(n) => n,
            Err(crate::wire::Error::InsufficientSize { required }) => {
                return Err(SessionError::Oversized {
                    len: LEN_PREFIX + h + 1 + required,
                    max,
                });
            }
            Err(e) => return Err(SessionError::Malformed(e)),
        };
        // An empty payload goes without its marker (the JSON is never empty: at least `{"f":[],"v":{}}`).
        let len = if n == 0 { h } else { h + 1 + n };
        self.tx[at + LEN_PREFIX..at + LEN_PREFIX + h].copy_from_slice(&header[..h]);
        self.tx[at + LEN_PREFIX + h] = crate::wire::coap::PAYLOAD_MARKER;
        // `len` fits the queue, which is shorter than 64 KiB.
        self.tx[at..at + LEN_PREFIX].copy_from_slice(&(len as u16).to_be_bytes());
        self.tx_len += LEN_PREFIX + len;
        Ok(())
    }

    #[inline(never)]
    fn deliver(&mut self, ev: &Event<'_>) {
        let mut handlers = 0u8;
        for (i, sub) in self.subscriptions.iter().enumerate() {
            if ev.name.starts_with(&sub.filter) {
                handlers |= 1 << i;
            }
        }
        if handlers == 0 {
            return;
        }
        // Queued with empty name and data, which are then filled in their place in the queue.
        let queued = self.push_event(|e| {
            *e = DeviceEvent::Event(ReceivedEvent {
                handlers,
                private: ev.visibility == Visibility::Private,
                name: Vec::new(),
                data: Vec::new(),
                truncated: false,
            });
            if let DeviceEvent::Event(queued) = e {
                for b in ev.name.bytes() {
                    queued.truncated |= queued.name.push(b).is_err();
                }
                let data = ev.data.unwrap_or_default();
                let cut = data.len().min(MAX_EVENT_DATA_LEN);
                queued.truncated |= cut < data.len();
                // `cut` is within the capacity.
                let _ = queued.data.extend_from_slice(&data[..cut]);
            }
        });
        if !queued {
            self.dropped_events = self.dropped_events.saturating_add(1);
        }
    }

    // ---------------------------------------------------------------------------------------
    // OTA

    fn abandon(&mut self, failure: OtaFailure) {
        if self.ota.take().is_some() {
            self.sink.abort();
            self.push_event(|e| *e = DeviceEvent::UpdateFailed(failure));
        }
    }

    #[inline(never)]
    fn update_begin(
        &mut self,
        now: Instant,
        request: &Header,
        params: Option<UpdateParams>,
    ) -> Result<(), SessionError> {
        self.abandon(OtaFailure::Restarted);
        let (chunk_size, size, destination, address, offered) = match params {
            Some(p) => (
                u32::from(p.chunk_size),
                Some(p.file_size),
                p.destination,
                p.address,
                p.fast_ota(),
            ),
            None => (SP_CHUNK_SIZE as u32, None, 0, 0, false),
        };
        let info = ImageInfo {
            size,
            chunk_size: chunk_size as u16,
            destination,
            address,
        };
        let chunks = size.map(|s| s.div_ceil(chunk_size.max(1)));
        let usable = chunk_size > 0
            && chunk_size as usize <= SP_MAX_CHUNK_SIZE
            && chunks.is_none_or(|c| c as usize <= MAX_OTA_CHUNKS);
        let refused = if usable {
            self.sink.begin(&info).err().map(OtaFailure::Sink)
        } else {
            Some(OtaFailure::Parameters)
        };
        if let Some(failure) = refused {
            self.push_event(|e| *e = DeviceEvent::UpdateFailed(failure));
            let reply = Reply {
                header: Header::piggybacked(request),
                code: Code::ServiceUnavailable,
                payload: &[],
            };
            return self.reply(&reply);
        }
        let fast = offered && self.config.fast_ota;
        self.ota = Some(Ota {
            info,
            fast,
            chunk_size,
            chunks,
            next_chunk: 0,
            high_water: 0,
            bitmap: [0; MAX_OTA_CHUNKS / 8],
            last_chunk_at: now,
            started_at: now,
        });
        self.reply(&EmptyAck::from_request(request))?;
        let ready = UpdateReady {
            header: self.separate(request),
            flags: params.map(|_| u8::from(fast)),
        };
        self.reply_originated(&ready)?;
        self.push_event(|e| *e = DeviceEvent::UpdateStarted { info, fast });
        Ok(())
    }

    #[inline(never)]
    fn chunk(&mut self, now: Instant, chunk: &Chunk<'_>) -> Result<(), SessionError> {
        let Some(ota) = &mut self.ota else {
            // No transfer: acknowledge and drop, as a Core that is not updating does.
            return self.reply(&EmptyAck::from_request(&chunk.header));
        };
        ota.last_chunk_at = now;
        let indexed = chunk.index.is_some();
        let index = chunk.index.map_or(ota.next_chunk, u32::from);
        let ok = chunk.crc_matches();
        let in_range = ota.chunks.is_none_or(|c| index < c) && (index as usize) < MAX_OTA_CHUNKS;
        let mut write_result = Ok(());
        if ok && in_range && !ota.has(index) {
            let offset = index * ota.chunk_size;
            let len = match ota.info.size {
                Some(size) => (chunk.data.len() as u32).min(size.saturating_sub(offset)),
                None => chunk.data.len() as u32,
            };
            write_result = self.sink.write(offset, &chunk.data[..len as usize]);
            if write_result.is_ok() {
                ota.set(index);
                ota.high_water = ota.high_water.max(offset + len);
            }
        }
        if ok && in_range && !indexed {
            ota.next_chunk = index + 1;
        } else if ok && in_range && !ota.fast {
            // Stop-and-wait with indices (the UDP flasher): a chunk sent again late must not
            // move the expected chunk back.
            ota.next_chunk = ota.next_chunk.max(index + 1);
        }
        let silent = indexed && ota.fast;
        if let Err(e) = write_result {
            if !silent {
                self.reply(&EmptyAck::from_request(&chunk.header))?;
            }
            self.abandon(OtaFailure::Sink(e));
            return Ok(());
        }
        if silent {
            // Fast OTA: no ACK, no ChunkReceived; bad chunks are asked for again later.
            return Ok(());
        }
        self.reply(&EmptyAck::from_request(&chunk.header))?;
        let received = ChunkReceived {
            header: self.separate(&chunk.header),
            ok,
        };
        self.reply_originated(&received)
    }

    fn chunk_missed(&mut self) -> Result<(), SessionError> {
        let Some(ota) = &self.ota else {
            return Ok(());
        };
        let mut list = [0u16; DOS_MISSED_CHUNKS_TO_SEND];
        let n = if ota.fast {
            let mut n = 0;
            for (slot, i) in list.iter_mut().zip(ota.missing()) {
                *slot = i as u16;
                n += 1;
            }
            n
        } else if ota.chunks.is_some_and(|c| ota.next_chunk >= c) {
            // Every chunk is here; UpdateDone is on its way (over UDP it can be late).
            0
        } else {
            list[0] = ota.next_chunk as u16;
            1
        };
        if n == 0 {
            return Ok(());
        }
        let msg = ChunkMissed {
            header: Header::con(self.peek_id()),
            indices: ChunkIndices::new(&list[..n]),
        };
        self.reply_originated(&msg)
    }

    #[inline(never)]
    fn update_done(&mut self, request: &Header) -> Result<(), SessionError> {
        let Some(ota) = &self.ota else {
            let reply = Reply {
                header: Header::piggybacked(request),
                code: Code::BadRequest,
                payload: &[],
            };
            return self.reply(&reply);
        };
        if !ota.complete() {
            let reply = Reply {
                header: Header::piggybacked(request),
                code: Code::BadRequest,
                payload: &[],
            };
            self.reply(&reply)?;
            return self.chunk_missed();
        }
        let size = ota.size();
        self.ota = None;
        match self.sink.finish(size) {
            Ok(()) => {
                let reply = Reply {
                    header: Header::piggybacked(request),
                    code: Code::Changed,
                    payload: &[],
                };
                self.reply(&reply)?;
                self.push_event(|e| *e = DeviceEvent::UpdateFinished { size });
            }
            Err(e) => {
                self.sink.abort();
                // Not 4.00: to UpdateDone that means "chunks are missing, a ChunkMissed follows", and a cloud
                // would wait for it. The image is whole and refused: a final 5.03, as for a refused UpdateBegin.
                let reply = Reply {
                    header: Header::piggybacked(request),
                    code: Code::ServiceUnavailable,
                    payload: &[],
                };
                self.reply(&reply)?;
                self.push_event(|slot| *slot = DeviceEvent::UpdateFailed(OtaFailure::Sink(e)));
            }
        }
        Ok(())
    }

    fn timers(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.deadline.is_some_and(|d| now >= d) {
            return Err(SessionError::HandshakeTimeout);
        }
        if !self.is_open() {
            return Ok(());
        }
        if let Some(sent) = self.ping_sent {
            if now >= sent + self.ping_timeout() {
                return Err(SessionError::PingTimeout);
            }
        } else if self.hello_received && now >= self.last_rx + self.config.ping_interval {
            let ping = Ping {
                header: Header::con(self.peek_id()),
            };
            self.reply_originated(&ping)?;
            self.ping_sent = Some(now);
        }
        if let Some(ota) = &mut self.ota {
            if now >= ota.started_at + OTA_TIMEOUT {
                self.abandon(OtaFailure::Timeout);
            } else if now >= ota.last_chunk_at + CHUNK_MISSED_INTERVAL {
                ota.last_chunk_at = now;
                self.chunk_missed()?;
            }
        }
        Ok(())
    }
}

impl<S: FirmwareSink, H: DeviceHandshake> Connection for DeviceConnection<S, H> {
    type Event = DeviceEvent;

    fn handle_input(&mut self, now: Instant, input: &[u8]) -> Result<(), SessionError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let result = match self.phase {
            Phase::Handshake { .. } => self.handshake_input(now, input),
            Phase::Open { .. } => self.framed_input(now, input),
            Phase::Datagram => self.handle_message(now, input),
            Phase::Ended => Err(SessionError::Closed),
        };
        result.map_err(|e| self.fail(e))
    }

    fn handle_close(&mut self, _now: Instant) {
        self.fail(SessionError::TransportClosed);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.timers(now) {
            self.fail(e);
        }
    }

    fn poll_transmit(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match &mut self.phase {
            Phase::Handshake {
                stage: Stage::ExpectSessionKey { creds_len, sent },
                creds,
                ..
            } if !*sent => {
                let len = *creds_len;
                let dst = buf
                    .get_mut(..len)
                    .ok_or(SessionError::InsufficientSize { required: len })?;
                dst.copy_from_slice(&creds[..len]);
                *sent = true;
                Ok(Some(len))
            }
            Phase::Open {
                cipher, encoder, ..
            } if self.tx_len > 0 => {
                let len = usize::from(u16::from_be_bytes([self.tx[0], self.tx[1]]));
                let msg = &self.tx[LEN_PREFIX..LEN_PREFIX + len];
                let n = match encoder.seal_with(cipher, msg, buf) {
                    Ok(n) => n,
                    Err(FrameError::InsufficientSize { required }) => {
                        return Err(SessionError::InsufficientSize { required });
                    }
                    Err(e) => return Err(self.fail(frame_error(e))),
                };
                shift_to_front(&mut self.tx[..self.tx_len], LEN_PREFIX + len);
                self.tx_len -= LEN_PREFIX + len;
                Ok(Some(n))
            }
            Phase::Datagram if self.tx_len > 0 => {
                let len = usize::from(u16::from_be_bytes([self.tx[0], self.tx[1]]));
                let dst = buf
                    .get_mut(..len)
                    .ok_or(SessionError::InsufficientSize { required: len })?;
                dst.copy_from_slice(&self.tx[LEN_PREFIX..LEN_PREFIX + len]);
                shift_to_front(&mut self.tx[..self.tx_len], LEN_PREFIX + len);
                self.tx_len -= LEN_PREFIX + len;
                Ok(Some(len))
            }
            _ => Ok(None),
        }
    }

    fn max_transmit_len(&self) -> usize {
        MAX_TRANSMIT_LEN.max(DEVICE_CREDENTIALS_LEN)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        let mut next = self.deadline;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        if self.is_open() && self.hello_received {
            match self.ping_sent {
                Some(sent) => consider(sent + self.ping_timeout()),
                None => consider(self.last_rx + self.config.ping_interval),
            }
        }
        if let Some(ota) = &self.ota {
            consider(ota.last_chunk_at + CHUNK_MISSED_INTERVAL);
            consider(ota.started_at + OTA_TIMEOUT);
        }
        next
    }

    fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    fn error(&self) -> Option<SessionError> {
        self.error
    }

    /// An update is under way.
    fn is_busy(&self) -> bool {
        self.ota.is_some()
    }
}

fn core_name(name: &[u8]) -> Name {
    let cut = name.len().min(CORE_MAX_FUNCTION_NAME_LEN);
    Vec::from_slice(&name[..cut]).unwrap_or_default()
}

/// Calls or reads waiting for the application's answer, in fixed slots: an answer empties its
/// slot in place (removing from a packed list moves entries, and a move inside one array links
/// `memmove`, which nothing else on a device needs).
#[derive(Debug, Clone, Copy)]
struct Slots<T>([Option<T>; PENDING_REQUESTS]);

impl<T: Copy> Slots<T> {
    fn is_full(&self) -> bool {
        self.0.iter().all(Option::is_some)
    }

    /// Stores `value` in a free slot (none free: dropped; callers check [`Slots::is_full`]).
    fn insert(&mut self, value: T) {
        if let Some(slot) = self.0.iter_mut().find(|s| s.is_none()) {
            *slot = Some(value);
        }
    }

    fn find(&self, mut f: impl FnMut(&T) -> bool) -> Option<(usize, T)> {
        self.0
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.filter(|v| f(v)).map(|v| (i, v)))
    }

    fn position(&self, f: impl FnMut(&T) -> bool) -> Option<usize> {
        self.find(f).map(|(i, _)| i)
    }
}

/// Moves `buf[by..]` to the front of `buf` (`by` > 0) in pieces that never overlap: the same as
/// `copy_within(by.., 0)`, but with `memcpy` only, so the backward half of `memmove` (about
/// 0.9 KB of Thumb code) stays out of a device's flash.
fn shift_to_front(buf: &mut [u8], by: usize) {
    let mut from = by;
    while from < buf.len() {
        let n = (buf.len() - from).min(by);
        let (front, back) = buf.split_at_mut(from);
        front[from - by..from - by + n].copy_from_slice(&back[..n]);
        from += n;
    }
}

/// A decoding error closes the session as malformed.
fn ok<T>(decoded: Result<T, crate::wire::Error>) -> Result<T, SessionError> {
    decoded.map_err(SessionError::Malformed)
}

fn check_len(len: usize, max: usize) -> Result<(), DeviceError> {
    if len > max {
        Err(DeviceError::TooLong { len, max })
    } else {
        Ok(())
    }
}

trait FromRequest {
    fn from_request(request: &Header) -> Self;
}

impl FromRequest for EmptyAck {
    /// The Core's empty ACK: same id, no token (`60 00 id`).
    fn from_request(request: &Header) -> Self {
        EmptyAck {
            header: Header::ack(request.message_id),
        }
    }
}

/// The messages a device sends, written without going through [`crate::wire::Message`] (so a device links
/// only the encoders it uses).
trait Outgoing {
    fn emit_into(&self, buf: &mut [u8]) -> Result<usize, crate::wire::Error>;
}

macro_rules! outgoing {
    ($($ty:ty),+ $(,)?) => {$(
        impl Outgoing for $ty {
            fn emit_into(&self, buf: &mut [u8]) -> Result<usize, crate::wire::Error> {
                self.emit(buf)
            }
        }
    )+};
}

outgoing!(
    Hello<'_>,
    DescribeReturn<'_>,
    FunctionReturn,
    VariableValue<'_>,
    Event<'_>,
    Subscribe<'_>,
    GetTime,
    UpdateReady,
    ChunkReceived,
    ChunkMissed<'_>,
    KeyChanged,
    Reply<'_>,
    Ping,
    EmptyAck,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_to_front_is_copy_within() {
        for len in 0..40usize {
            for by in 1..=len.max(1) {
                let orig: [u8; 40] = core::array::from_fn(|i| i as u8 + 1);
                let mut expected = orig;
                expected[..len].copy_within(by.min(len).., 0);
                let mut got = orig;
                shift_to_front(&mut got[..len], by);
                let kept = len.saturating_sub(by);
                assert_eq!(got[..kept], expected[..kept], "len {len} by {by}");
            }
        }
    }

    /// The ring gives events back in the order they came, across its end, refuses one more when
    /// full, and while lent to the handshake takes and gives nothing.
    #[test]
    fn the_event_ring_keeps_order_across_its_end_and_holds_nothing_while_lent() {
        let mut lent = EventStore::Lent(RsaScratch::new());
        assert!(lent.is_full());
        assert!(!lent.push_with(|e| *e = DeviceEvent::KeyChange));
        assert_eq!(lent.pop_front(), None);

        let mut queue = EventStore::queue();
        let n = EVENT_QUEUE_LEN as u32;
        for round in 0..4 * n {
            let base = round * 100;
            for i in 0..n {
                assert!(queue.push_with(|e| *e = DeviceEvent::Time(base + i)));
            }
            assert!(queue.is_full());
            assert!(!queue.push_with(|e| *e = DeviceEvent::KeyChange));
            assert_eq!(queue.pop_front(), Some(DeviceEvent::Time(base)));
            assert!(!queue.is_full());
            assert!(queue.push_with(|e| *e = DeviceEvent::Time(base + 99)));
            for i in 1..n {
                assert_eq!(queue.pop_front(), Some(DeviceEvent::Time(base + i)));
            }
            assert_eq!(queue.pop_front(), Some(DeviceEvent::Time(base + 99)));
            assert_eq!(queue.pop_front(), None);
            // Each round starts one slot further on.
            assert!(queue.push_with(|e| *e = DeviceEvent::Signal(true)));
            assert_eq!(queue.pop_front(), Some(DeviceEvent::Signal(true)));
        }
    }

    /// Describe's reply, written in place in the transmit queue behind what is already queued, is
    /// byte for byte the encoded `DescribeReturn`; when it does not fit, the queue is left as it
    /// was and the error gives the length needed.
    #[test]
    fn describe_queues_the_encoded_reply_behind_what_is_queued() {
        use crate::wire::{MessageType, Token};

        let secret = SessionKey::from_bytes([3; 40]);
        let mut dev = DeviceConnection::from_session(
            Instant::ZERO,
            &secret,
            DeviceConfig::new([7; 12]),
            NoFirmware,
        );
        dev.register_function(b"brew").unwrap();
        dev.register_variable(b"temperature", VarType::Int).unwrap();
        let before = dev.tx_len;
        assert!(before > 0, "the Hello is queued first");
        let request = Header::new(MessageType::Confirmable, 0x1234, Token::from_byte(0x77));
        dev.describe(&request).unwrap();

        let mut json = [0u8; 64];
        let mut w = DescriptionWriter::new(&mut json);
        w.function(b"brew").unwrap();
        w.variable(b"temperature", VarType::Int).unwrap();
        let n = w.finish().unwrap();
        let mut expected = [0u8; 96];
        let m = DescribeReturn {
            header: Header::piggybacked(&request),
            code: Code::Content,
            description: &json[..n],
        }
        .emit_into(&mut expected)
        .unwrap();
        assert_eq!(dev.tx_len, before + LEN_PREFIX + m);
        assert_eq!(
            dev.tx[before..before + LEN_PREFIX],
            (m as u16).to_be_bytes()
        );
        assert_eq!(dev.tx[before + LEN_PREFIX..dev.tx_len], expected[..m]);

        let full = TRANSMIT_QUEUE_LEN - 10;
        dev.tx_len = full;
        assert_eq!(
            dev.describe(&request),
            Err(SessionError::Oversized {
                len: LEN_PREFIX + m,
                max: 10
            })
        );
        assert_eq!(dev.tx_len, full);
    }

    #[test]
    fn slots_fill_free_places_and_empty_in_place() {
        let mut s: Slots<u8> = Slots([None; PENDING_REQUESTS]);
        assert_eq!(s.position(|_| true), None);
        for v in 1..=PENDING_REQUESTS as u8 {
            assert!(!s.is_full());
            s.insert(v * 10);
        }
        assert!(s.is_full());
        s.insert(99);
        assert_eq!(s.position(|v| *v == 99), None);
        assert_eq!(s.find(|v| *v == 20), Some((1, 20)));
        s.0[1] = None;
        assert!(!s.is_full());
        assert_eq!(s.position(|v| *v == 20), None);
        s.insert(55);
        assert_eq!(s.find(|v| *v == 55), Some((1, 55)));
        assert_eq!(s.position(|v| *v == 40), Some(3));
    }
}
