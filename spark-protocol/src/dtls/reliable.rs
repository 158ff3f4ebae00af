//! CoAP's own reliability over an unreliable datagram channel (RFC 7252 section 4), what the UDP
//! protocol puts above DTLS: confirmable messages are sent again until acknowledged, and
//! messages that arrive twice are recognised by message id and answered with the same reply.
//!
//! Sans-IO and without a heap like the rest: messages in ([`Reliability::send`],
//! [`Reliability::handle_message`]), time in ([`Reliability::handle_timeout`]), messages out
//! ([`Reliability::poll_transmit`]), deadlines and outcomes out ([`Reliability::poll_timeout`],
//! [`Reliability::poll_event`]). The messages are plaintext CoAP; the caller protects each one
//! with [`super::Connection::send`] and feeds each record from [`super::Connection::recv`] here.
//!
//! Device OS's parameters are the defaults: ACK_TIMEOUT 4 s, ACK_RANDOM_FACTOR 1.5,
//! MAX_RETRANSMIT 3, and at most one confirmable message in flight (NSTART 1) in Device OS,
//! which `PENDING = 1` reproduces.

use core::time::Duration;

use heapless::{Deque, Vec};

use crate::session::Instant;
use crate::wire::{MessageType, Packet};

/// Why a message was refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReliabilityError {
    /// Not a CoAP message.
    #[error("not a CoAP message")]
    Malformed,
    /// The message is larger than a slot.
    #[error("message of {len} bytes is larger than a slot")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Every slot holds an unacknowledged confirmable message.
    #[error("too many confirmable messages in flight")]
    Busy,
    /// The caller's buffer is too small.
    #[error("buffer too small: {required} bytes needed")]
    InsufficientSize {
        /// Bytes needed.
        required: usize,
    },
}

/// The transmission parameters of RFC 7252 section 4.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReliabilityConfig {
    /// First wait for an acknowledgement (before the random factor).
    pub ack_timeout: Duration,
    /// The random factor, in thousandths (1500 = 1.5).
    pub ack_random_factor_permille: u32,
    /// Retransmissions after the first transmission.
    pub max_retransmit: u8,
    /// How long a received message id is remembered for duplicate detection.
    pub exchange_lifetime: Duration,
}

impl Default for ReliabilityConfig {
    fn default() -> Self {
        ReliabilityConfig {
            ack_timeout: Duration::from_secs(4),
            ack_random_factor_permille: 1500,
            max_retransmit: 3,
            exchange_lifetime: Duration::from_secs(247),
        }
    }
}

/// What happened to a confirmable message we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum ReliabilityEvent {
    /// The peer acknowledged it (the ACK itself is also handed back as [`Incoming::New`]
    /// when it carries a response).
    Acknowledged(u16),
    /// The peer rejected it with a Reset.
    Reset(u16),
    /// No acknowledgement after the last retransmission.
    GaveUp(u16),
}

/// What [`Reliability::handle_message`] made of a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Incoming {
    /// Deliver it to the session.
    New,
    /// A message id seen within the exchange lifetime: do not deliver it again. `replayed` says
    /// whether the reply we sent the first time was queued again.
    Duplicate {
        /// Whether our earlier reply goes out again.
        replayed: bool,
    },
    /// An ACK or RST with nothing for the session (empty), already accounted for in events.
    Consumed,
}

struct Pending<const SLOT: usize> {
    message_id: u16,
    bytes: Vec<u8, SLOT>,
    deadline: Instant,
    timeout: Duration,
    retransmits: u8,
    due: bool,
}

struct Seen {
    message_id: u16,
    at: Instant,
    reply: Vec<u8, REPLY_CAPACITY>,
}

/// The longest reply remembered for a duplicate (an empty ACK is 4 bytes plus the token; a
/// piggybacked response up to this size is replayed too).
pub const REPLY_CAPACITY: usize = 64;

/// CoAP reliability for one peer: `PENDING` confirmable messages of up to `SLOT` bytes in flight,
/// `SEEN` received message ids remembered.
pub struct Reliability<const PENDING: usize = 1, const SLOT: usize = 1024, const SEEN: usize = 8> {
    config: ReliabilityConfig,
    pending: Vec<Pending<SLOT>, PENDING>,
    seen: Deque<Seen, SEEN>,
    /// Messages to send once (non-confirmable, ACKs, replays), oldest first.
    once: Deque<Vec<u8, SLOT>, 4>,
    events: Deque<ReliabilityEvent, 4>,
}

impl<const PENDING: usize, const SLOT: usize, const SEEN: usize> core::fmt::Debug
    for Reliability<PENDING, SLOT, SEEN>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reliability")
            .field("pending", &self.pending.len())
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl<const PENDING: usize, const SLOT: usize, const SEEN: usize> Reliability<PENDING, SLOT, SEEN> {
    /// An empty layer.
    #[must_use]
    pub fn new(config: ReliabilityConfig) -> Self {
        Reliability {
            config,
            pending: Vec::new(),
            seen: Deque::new(),
            once: Deque::new(),
            events: Deque::new(),
        }
    }

    /// Whether another confirmable message can be sent now.
    #[must_use]
    pub fn can_send_confirmable(&self) -> bool {
        !self.pending.is_full()
    }

    /// Queues `message` for sending. A confirmable one is kept and sent again until it is
    /// acknowledged; an ACK or RST is remembered as the reply to the message id it answers, so
    /// a duplicate of that message gets it again. `rng` draws the random part of the timeout.
    pub fn send<R: rand_core::Rng + ?Sized>(
        &mut self,
        now: Instant,
        message: &[u8],
        rng: &mut R,
    ) -> Result<(), ReliabilityError> {
        let packet = Packet::new_checked(message).map_err(|_| ReliabilityError::Malformed)?;
        let bytes = Vec::<u8, SLOT>::from_slice(message)
            .map_err(|_| ReliabilityError::TooLarge { len: message.len() })?;
        let id = packet.message_id();
        match packet.msg_type() {
            MessageType::Confirmable => {
                let spread = u64::from(self.config.ack_random_factor_permille.saturating_sub(1000));
                let base = self.config.ack_timeout.as_millis() as u64;
                let jitter = if spread == 0 {
                    0
                } else {
                    rng.next_u64() % (base * spread / 1000 + 1)
                };
                let timeout = Duration::from_millis(base + jitter);
                self.pending
                    .push(Pending {
                        message_id: id,
                        bytes,
                        deadline: now + timeout,
                        timeout,
                        retransmits: 0,
                        due: true,
                    })
                    .map_err(|_| ReliabilityError::Busy)?;
            }
            kind => {
                if matches!(kind, MessageType::Acknowledgement | MessageType::Reset)
                    && let Some(seen) = self.seen.iter_mut().find(|s| s.message_id == id)
                {
                    seen.reply = Vec::from_slice(message).unwrap_or_default();
                }
                self.once
                    .push_back(bytes)
                    .map_err(|_| ReliabilityError::Busy)?;
            }
        }
        Ok(())
    }

    /// Takes one received message. ACKs and RSTs settle our pending confirmable message;
    /// confirmable and non-confirmable messages are checked against recent message ids.
    pub fn handle_message(
        &mut self,
        now: Instant,
        message: &[u8],
    ) -> Result<Incoming, ReliabilityError> {
        let packet = Packet::new_checked(message).map_err(|_| ReliabilityError::Malformed)?;
        let id = packet.message_id();
        self.expire(now);
        match packet.msg_type() {
            MessageType::Acknowledgement | MessageType::Reset => {
                let reset = packet.msg_type() == MessageType::Reset;
                let Some(i) = self.pending.iter().position(|p| p.message_id == id) else {
                    // Late or unknown: a duplicate ACK carries nothing new.
                    return Ok(Incoming::Duplicate { replayed: false });
                };
                self.pending.swap_remove(i);
                let _ = self.events.push_back(if reset {
                    ReliabilityEvent::Reset(id)
                } else {
                    ReliabilityEvent::Acknowledged(id)
                });
                Ok(if packet.code().is_empty() {
                    Incoming::Consumed
                } else {
                    Incoming::New
                })
            }
            MessageType::Confirmable | MessageType::NonConfirmable => {
                if let Some(seen) = self.seen.iter().find(|s| s.message_id == id) {
                    let replayed = !seen.reply.is_empty();
                    if replayed {
                        let reply = Vec::from_slice(&seen.reply).unwrap_or_default();
                        let _ = self.once.push_back(reply);
                    }
                    return Ok(Incoming::Duplicate { replayed });
                }
                if self.seen.is_full() {
                    self.seen.pop_front();
                }
                let _ = self.seen.push_back(Seen {
                    message_id: id,
                    at: now,
                    reply: Vec::new(),
                });
                Ok(Incoming::New)
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .seen
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.at) >= self.config.exchange_lifetime)
        {
            self.seen.pop_front();
        }
    }

    /// Retransmits what is due, doubling its timeout, and gives up after the last retransmission.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if now >= p.deadline {
                if p.retransmits >= self.config.max_retransmit {
                    let id = p.message_id;
                    self.pending.swap_remove(i);
                    let _ = self.events.push_back(ReliabilityEvent::GaveUp(id));
                    continue;
                }
                p.retransmits += 1;
                p.timeout *= 2;
                p.deadline = now + p.timeout;
                p.due = true;
            }
            i += 1;
        }
    }

    /// The next deadline of a pending confirmable message.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// The next outcome, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ReliabilityEvent> {
        self.events.pop_front()
    }

    /// Copies the next message to send into `out`; `None` when nothing is due.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, ReliabilityError> {
        if let Some(m) = self.once.front() {
            let n = m.len();
            let dst = out
                .get_mut(..n)
                .ok_or(ReliabilityError::InsufficientSize { required: n })?;
            dst.copy_from_slice(m);
            self.once.pop_front();
            return Ok(Some(n));
        }
        if let Some(p) = self.pending.iter_mut().find(|p| p.due) {
            let n = p.bytes.len();
            let dst = out
                .get_mut(..n)
                .ok_or(ReliabilityError::InsufficientSize { required: n })?;
            dst.copy_from_slice(&p.bytes);
            p.due = false;
            return Ok(Some(n));
        }
        Ok(None)
    }
}

/// Received message ids a [`ParkedReliability`] keeps: the newest ones. The peer sends a
/// message again only while it waits for its acknowledgement, and it waits for at most NSTART
/// confirmable messages at once (1 in Device OS, 4 here), so a retransmission always repeats one
/// of the peer's newest messages; four covers both.
pub const PARKED_SEEN: usize = 4;

/// The longest remembered reply a [`ParkedReliability`] keeps: an empty ACK with an 8-byte
/// token (12 bytes) or a short piggybacked answer such as the time.
pub const PARKED_REPLY: usize = 20;

/// One remembered message id in a parked layer, with the reply a duplicate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParkedSeen {
    at: Instant,
    message_id: u16,
    reply_len: u8,
    reply: [u8; PARKED_REPLY],
}

/// Why a [`Reliability`] cannot be parked now; try again once it is quiet.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParkError {
    /// A confirmable message of ours waits for its acknowledgement.
    #[error("a confirmable message is not yet acknowledged")]
    Unacknowledged,
    /// Messages wait to be sent, or outcomes to be read.
    #[error("messages or outcomes wait to be taken")]
    Queued,
    /// A reply to a message the peer may still repeat is longer than [`PARKED_REPLY`].
    #[error("a recent reply is too long to keep parked")]
    LongReply,
}

/// The state of an idle [`Reliability`] (nothing in flight, nothing queued): its transmission
/// parameters and the newest message ids it received within EXCHANGE_LIFETIME, with their
/// replies. What is dropped at [`Reliability::park`]: ids older than the newest
/// [`PARKED_SEEN`] (the peer cannot be repeating them, see [`PARKED_SEEN`]; a copy the network
/// itself delayed and duplicated would be delivered again, as it is once the ring of a live
/// layer turns over) and ids past EXCHANGE_LIFETIME (expired anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedReliability {
    config: ReliabilityConfig,
    seen: Vec<ParkedSeen, PARKED_SEEN>,
}

impl<const PENDING: usize, const SLOT: usize, const SEEN: usize> Reliability<PENDING, SLOT, SEEN> {
    /// Whether nothing is in flight, queued or unread: the layer can be parked.
    #[must_use]
    pub fn is_quiet(&self) -> bool {
        self.pending.is_empty() && self.once.is_empty() && self.events.is_empty()
    }

    /// The parked form of a quiet layer (see [`ParkedReliability`] for what it keeps); refused
    /// while something is in flight or queued. The layer itself is left as it was.
    pub fn park(&self, now: Instant) -> Result<ParkedReliability, ParkError> {
        if !self.pending.is_empty() {
            return Err(ParkError::Unacknowledged);
        }
        if !self.once.is_empty() || !self.events.is_empty() {
            return Err(ParkError::Queued);
        }
        let lifetime = self.config.exchange_lifetime;
        let live = |s: &&Seen| now.saturating_duration_since(s.at) < lifetime;
        let skip = self
            .seen
            .iter()
            .filter(live)
            .count()
            .saturating_sub(PARKED_SEEN);
        let mut seen = Vec::new();
        for s in self.seen.iter().filter(live).skip(skip) {
            let mut reply = [0u8; PARKED_REPLY];
            reply
                .get_mut(..s.reply.len())
                .ok_or(ParkError::LongReply)?
                .copy_from_slice(&s.reply);
            // At most PARKED_SEEN are taken.
            let _ = seen.push(ParkedSeen {
                at: s.at,
                message_id: s.message_id,
                reply_len: s.reply.len() as u8,
                reply,
            });
        }
        Ok(ParkedReliability {
            config: self.config,
            seen,
        })
    }

    /// The layer again, from its parked form: nothing in flight, the remembered ids as parked.
    #[must_use]
    pub fn unpark(parked: &ParkedReliability) -> Self {
        let mut layer = Self::new(parked.config);
        for s in &parked.seen {
            if layer.seen.is_full() {
                layer.seen.pop_front();
            }
            let reply = &s.reply[..usize::from(s.reply_len).min(PARKED_REPLY)];
            let _ = layer.seen.push_back(Seen {
                message_id: s.message_id,
                at: s.at,
                reply: Vec::from_slice(reply).unwrap_or_default(),
            });
        }
        layer
    }
}

#[cfg(test)]
mod park_tests {
    use super::*;

    struct Counter(u64);

    impl rand_core::TryRng for Counter {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            self.0 += 1;
            Ok(self.0 as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.0 += 1;
            Ok(self.0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(7);
            Ok(())
        }
    }

    /// A CoAP message of `kind` (0 CON, 1 NON, 2 ACK) with `id`, a one-byte token and no code
    /// for an ACK (empty), POST otherwise.
    fn message(kind: u8, id: u16) -> [u8; 5] {
        let [hi, lo] = id.to_be_bytes();
        let code = if kind == 2 { 0 } else { 0x02 };
        [0x41 | (kind << 4), code, hi, lo, 0xaa]
    }

    #[test]
    fn a_duplicate_after_unpark_gets_the_same_reply_and_is_not_delivered() {
        let t = Instant::ZERO;
        let mut layer: Reliability<4, 64, 16> = Reliability::new(ReliabilityConfig::default());
        for id in 1..=6u16 {
            assert_eq!(layer.handle_message(t, &message(0, id)), Ok(Incoming::New));
            layer.send(t, &message(2, id), &mut Counter(0)).unwrap();
            let mut out = [0u8; 64];
            assert_eq!(layer.poll_transmit(&mut out), Ok(Some(5)));
        }
        let parked = layer.park(t).unwrap();
        let mut back: Reliability<4, 64, 16> = Reliability::unpark(&parked);
        // The newest four are remembered with their ACK; the oldest two are dropped.
        assert_eq!(
            back.handle_message(t, &message(0, 6)),
            Ok(Incoming::Duplicate { replayed: true })
        );
        let mut out = [0u8; 64];
        assert_eq!(back.poll_transmit(&mut out), Ok(Some(5)));
        assert_eq!(out[..5], message(2, 6));
        assert_eq!(
            back.handle_message(t, &message(0, 3)),
            Ok(Incoming::Duplicate { replayed: true })
        );
        assert_eq!(back.handle_message(t, &message(0, 2)), Ok(Incoming::New));
    }

    #[test]
    fn park_is_refused_while_a_confirmable_message_waits() {
        let t = Instant::ZERO;
        let mut layer: Reliability<4, 64, 16> = Reliability::new(ReliabilityConfig::default());
        layer.send(t, &message(0, 9), &mut Counter(0)).unwrap();
        assert_eq!(layer.park(t), Err(ParkError::Unacknowledged));
        let mut out = [0u8; 64];
        assert_eq!(layer.poll_transmit(&mut out), Ok(Some(5)));
        assert_eq!(layer.park(t), Err(ParkError::Unacknowledged));
        assert_eq!(
            layer.handle_message(t, &message(2, 9)),
            Ok(Incoming::Consumed)
        );
        assert_eq!(layer.park(t), Err(ParkError::Queued));
        assert_eq!(layer.poll_event(), Some(ReliabilityEvent::Acknowledged(9)));
        assert!(layer.park(t).is_ok());
    }

    #[test]
    fn ids_past_the_exchange_lifetime_are_not_kept() {
        let t = Instant::ZERO;
        let mut layer: Reliability<4, 64, 16> = Reliability::new(ReliabilityConfig::default());
        assert_eq!(layer.handle_message(t, &message(1, 5)), Ok(Incoming::New));
        let later = t + ReliabilityConfig::default().exchange_lifetime;
        let mut back: Reliability<4, 64, 16> = Reliability::unpark(&layer.park(later).unwrap());
        assert_eq!(
            back.handle_message(later, &message(1, 5)),
            Ok(Incoming::New)
        );
    }
}
