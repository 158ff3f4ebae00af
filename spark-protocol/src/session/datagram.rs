//! A session over DTLS datagrams, the UDP protocol (Electron and later, port 5684): one CoAP
//! message per DTLS application record, CoAP's own retransmission and duplicate detection
//! ([`Reliability`]) between the two, and the session rules above, unchanged.
//!
//! [`DatagramSession`] owns three sans-IO machines and moves messages between them:
//!
//! ```text
//! session (DeviceConnection::datagram / CloudConnection::datagram)   plaintext CoAP messages
//!    ^ handle_input (new messages only)      | poll_transmit
//! Reliability (CON kept until ACKed, duplicates answered, not redelivered)
//!    ^ recv                                   | send
//! dtls::Connection (records, handshake, its own flight retransmission)   datagrams
//! ```
//!
//! The caller does what it does for every machine here: datagrams in
//! ([`DatagramSession::handle_datagram`]), time in ([`DatagramSession::handle_timeout`]),
//! datagrams out ([`DatagramSession::poll_transmit`]), a deadline out
//! ([`DatagramSession::poll_timeout`]) and the session's events out
//! ([`DatagramSession::poll_event`]). Application requests go to the session itself through
//! [`DatagramSession::session_mut`] (`publish`, `call_function`, `start_ota`, ...).
//!
//! The device builds its `DatagramSession` at once, around a `dtls::Connection::client` whose
//! handshake has not begun; the session's Hello waits until DTLS is established. The cloud
//! drives the `dtls::Connection` that `dtls::Server::accept` gave it until it is connected,
//! maps [`dtls::Connection::peer_public_key`] to a device id (the key the cloud pinned to that
//! device), and only then builds the session ([`CloudConnection::datagram`]) and this wrapper:
//! records that arrived in between wait in the DTLS connection and are read on the next call.
//!
//! No heap: `SLOT` bounds a CoAP message (1024 bytes by default, room for a 512-byte OTA chunk
//! and a Describe). [`NSTART`] confirmable messages are in flight at once and `HELD` more wait
//! for a free place, while ACKs and non-confirmable messages pass them. Device OS sends one at a
//! time (NSTART 1); here four go at once, because both sessions queue their ACKs in one line with
//! their requests: with one place, a side whose waiting requests fill `HELD` stops reading its
//! session's queue, the ACK the peer waits for stays in it, and two such sides wait on each other
//! (seen in a stop-and-wait OTA over a lossy link, where ChunkMissed every 3 s fills the line).
//! When `HELD` is full nothing more is taken from the session until a place frees up.
//!
//! [`CloudConnection::datagram`]: crate::session::cloud::CloudConnection::datagram

use heapless::{Deque, Vec};

use super::{Connection, Instant, SessionError};
use crate::dtls::reliable::{
    self, Incoming, ParkedReliability, Reliability, ReliabilityConfig, ReliabilityError,
    ReliabilityEvent,
};
use crate::dtls::{self, Event as DtlsEvent};
use crate::wire::{MessageType, Packet};

/// Bytes a protected application record adds to its message at most: the 13-byte header, an
/// 8-byte connection id, the 8-byte explicit nonce, the 8-byte tag and the connection-id
/// record's inner type and padding to 16.
pub const RECORD_OVERHEAD: usize = 13 + 8 + 8 + 8 + 17;

/// Confirmable messages in flight at once (RFC 7252's NSTART; see the module docs for why it is
/// not Device OS's 1).
pub const NSTART: usize = 4;

/// Why a datagram session ended, or why a call could not go on.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// The session above ended.
    #[error("session: {0}")]
    Session(SessionError),
    /// The DTLS connection below failed.
    #[error("dtls: {0}")]
    Dtls(dtls::Error),
    /// A confirmable message was sent `MAX_RETRANSMIT` more times and never acknowledged: the
    /// peer is gone.
    #[error("message {message_id} was never acknowledged")]
    Unacknowledged {
        /// Its message id.
        message_id: u16,
    },
    /// The session gave a message longer than a slot.
    #[error("a message of {len} bytes is longer than a slot of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The slot's size.
        max: usize,
    },
    /// The caller's buffer is too small; nothing was lost, call again with `required` bytes.
    #[error("buffer too small: {required} bytes needed")]
    InsufficientSize {
        /// Bytes needed.
        required: usize,
    },
}

impl From<SessionError> for DatagramError {
    fn from(e: SessionError) -> Self {
        DatagramError::Session(e)
    }
}

impl From<dtls::Error> for DatagramError {
    fn from(e: dtls::Error) -> Self {
        DatagramError::Dtls(e)
    }
}

/// Why [`DatagramSession::park`] refused; the session comes back unchanged.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParkError {
    /// The session ended; there is nothing to park.
    #[error("the session ended: {0}")]
    Ended(DatagramError),
    /// The DTLS connection is not established and quiet (a handshake, an unread record, an alert
    /// to send, or no application record from the peer yet).
    #[error("the DTLS connection is not quiet")]
    Dtls,
    /// A confirmable message waits for its acknowledgement.
    #[error("a confirmable message is not yet acknowledged")]
    Unacknowledged,
    /// Messages wait to be sent (held, or queued in the CoAP layer) or outcomes to be read.
    #[error("messages wait to be sent")]
    Queued,
    /// The session above is in the middle of something (a firmware update).
    #[error("the session is busy")]
    Busy,
    /// A reply the peer may still ask for again is too long for the parked form.
    #[error("a recent reply is too long to keep parked")]
    LongReply,
}

/// An idle [`DatagramSession`] in a small form: the session above whole, the DTLS record state
/// ([`dtls::ParkedConnection`]) and the CoAP layer's remembered message ids
/// ([`ParkedReliability`]), without the slots, queues and handshake buffers of the live
/// machines. A host with many idle devices keeps this and rebuilds the session with
/// [`DatagramSession::resume`] when a datagram, a request or the session's timer comes.
pub struct ParkedDatagramSession<C> {
    session: C,
    dtls: dtls::ParkedConnection,
    reliability: ParkedReliability,
}

impl<C> core::fmt::Debug for ParkedDatagramSession<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParkedDatagramSession")
            .field("reliability", &self.reliability)
            .finish_non_exhaustive()
    }
}

impl<C: Connection> ParkedDatagramSession<C> {
    /// The session above.
    pub fn session(&self) -> &C {
        &self.session
    }

    /// When the parked session wants to run next (its keep-alive or idle timer): resume it then.
    /// The DTLS connection and the CoAP layer have no timer while parked.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }
}

/// A session (device or cloud side) over a DTLS connection, with CoAP reliability between.
pub struct DatagramSession<C, R, const SLOT: usize = 1024, const HELD: usize = 4> {
    session: C,
    dtls: dtls::Connection,
    reliability: Reliability<NSTART, SLOT, 16>,
    held: Deque<Vec<u8, SLOT>, HELD>,
    rng: R,
    error: Option<DatagramError>,
}

impl<C, R, const SLOT: usize, const HELD: usize> core::fmt::Debug
    for DatagramSession<C, R, SLOT, HELD>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramSession")
            .field("connected", &self.dtls.is_connected())
            .field("reliability", &self.reliability)
            .field("held", &self.held.len())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<C: Connection, R: rand_core::Rng, const SLOT: usize, const HELD: usize>
    DatagramSession<C, R, SLOT, HELD>
{
    /// Joins `session` (built with its `datagram` constructor) and `dtls` with Device OS's CoAP
    /// parameters. `rng` draws the retransmission timers' random part.
    pub fn new(session: C, dtls: dtls::Connection, rng: R) -> Self {
        Self::with_config(session, dtls, rng, ReliabilityConfig::default())
    }

    /// As [`DatagramSession::new`] with other CoAP transmission parameters.
    pub fn with_config(
        session: C,
        dtls: dtls::Connection,
        rng: R,
        config: ReliabilityConfig,
    ) -> Self {
        DatagramSession {
            session,
            dtls,
            reliability: Reliability::new(config),
            held: Deque::new(),
            rng,
            error: None,
        }
    }

    /// The session above.
    pub fn session(&self) -> &C {
        &self.session
    }

    /// The session above, for application requests (`publish`, `call_function`, ...).
    pub fn session_mut(&mut self) -> &mut C {
        &mut self.session
    }

    /// The DTLS connection below (its peer key, connection id, saved association).
    pub fn dtls(&self) -> &dtls::Connection {
        &self.dtls
    }

    /// The DTLS connection below, e.g. for `set_address_changed`.
    pub fn dtls_mut(&mut self) -> &mut dtls::Connection {
        &mut self.dtls
    }

    /// Takes the two machines apart again.
    pub fn into_parts(self) -> (C, dtls::Connection) {
        (self.session, self.dtls)
    }

    /// Why the session ended, if it did; it then keeps returning this.
    pub fn error(&self) -> Option<DatagramError> {
        self.error
    }

    /// Moves the session onto another DTLS connection and returns the old one; the session and
    /// the CoAP layer keep their state (message ids, confirmable messages not yet acknowledged,
    /// duplicates already answered), so nothing above DTLS starts over.
    ///
    /// This is how a device continues after a network change: it builds a
    /// `dtls::Connection::client` whose [`ClientConfig::resume`](dtls::ClientConfig::resume) is
    /// the old connection's [`session`](dtls::Connection::session), hands it over here, and sends
    /// from its new address; the abbreviated handshake runs, and the confirmable messages that
    /// were lost with the old path go out again over the new association. The cloud does the
    /// same with the connection `dtls::Server::accept` resumed for that device. Messages wait
    /// until the new connection is established; CoAP's retransmission timers keep running
    /// meanwhile, so a handshake longer than MAX_TRANSMIT_WAIT still ends the session.
    ///
    /// A session whose DTLS connection failed below it (a fatal alert, a record error, a
    /// handshake timeout) can be moved too, and its error is cleared. One that ended above DTLS
    /// (the peer's close_notify, which closes the session too; a session error; a message never
    /// acknowledged) cannot: that error is returned and `dtls` is dropped.
    pub fn replace_dtls(
        &mut self,
        dtls: dtls::Connection,
    ) -> Result<dtls::Connection, DatagramError> {
        if let Some(e) = self.session.error() {
            return Err(self.fail(DatagramError::Session(e)));
        }
        match self.error {
            Some(DatagramError::Dtls(dtls::Error::Closed)) => {
                return Err(DatagramError::Dtls(dtls::Error::Closed));
            }
            None | Some(DatagramError::Dtls(_)) => {}
            Some(e) => return Err(e),
        }
        self.error = None;
        Ok(core::mem::replace(&mut self.dtls, dtls))
    }

    /// Parks an idle session (see [`ParkedDatagramSession`]): refused while a confirmable
    /// message waits for its acknowledgement, messages wait to be sent, the DTLS connection is
    /// not quiet, the session is busy (an update), or it ended. Call it after
    /// [`DatagramSession::poll_transmit`] returned `Ok(None)` and every event was taken.
    ///
    /// A refusal gives the session back unchanged beside the reason (no heap to box it in).
    #[allow(clippy::result_large_err)]
    pub fn park(self, now: Instant) -> Result<ParkedDatagramSession<C>, (Self, ParkError)> {
        let refused = if let Some(e) = self.error.or(self.session.error().map(Into::into)) {
            Some(ParkError::Ended(e))
        } else if self.session.is_busy() {
            Some(ParkError::Busy)
        } else if !self.held.is_empty() {
            Some(ParkError::Queued)
        } else {
            None
        };
        if let Some(why) = refused {
            return Err((self, why));
        }
        let reliability = match self.reliability.park(now) {
            Ok(r) => r,
            Err(reliable::ParkError::Unacknowledged) => {
                return Err((self, ParkError::Unacknowledged));
            }
            Err(reliable::ParkError::LongReply) => return Err((self, ParkError::LongReply)),
            Err(_) => return Err((self, ParkError::Queued)),
        };
        let Some(dtls) = self.dtls.park() else {
            return Err((self, ParkError::Dtls));
        };
        Ok(ParkedDatagramSession {
            session: self.session,
            dtls,
            reliability,
        })
    }

    /// The session [`park`](DatagramSession::park) kept, live again over a DTLS connection
    /// rebuilt from its record state. `key` is the private key the connection was made with (kept
    /// for a later handshake's sake), `transport` its settings, `rng` draws the retransmission
    /// timers' random part as in [`DatagramSession::new`].
    pub fn resume(
        parked: ParkedDatagramSession<C>,
        key: dtls::PrivateKey,
        transport: dtls::TransportConfig,
        rng: R,
    ) -> Self {
        let ParkedDatagramSession {
            session,
            dtls: saved,
            reliability,
        } = parked;
        DatagramSession {
            session,
            dtls: dtls::Connection::unpark(&saved, key, transport),
            reliability: Reliability::unpark(&reliability),
            held: Deque::new(),
            rng,
            error: None,
        }
    }

    /// A buffer length that [`DatagramSession::poll_transmit`] always accepts.
    pub fn max_transmit_len(&self) -> usize {
        (SLOT + RECORD_OVERHEAD).max(dtls::TransportConfig::default().pmtu + 64)
    }

    /// Ends both machines: the DTLS connection queues its close_notify (send it with
    /// [`DatagramSession::poll_transmit`]).
    pub fn close(&mut self, now: Instant) {
        self.dtls.close();
        self.session.handle_close(now);
    }

    fn fail(&mut self, e: DatagramError) -> DatagramError {
        if let Some(first) = self.error {
            return first;
        }
        self.error = Some(e);
        e
    }

    /// Takes one datagram from the peer. Records that fail authentication, replays and
    /// duplicates are dropped without error, as DTLS and CoAP want.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DatagramError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Err(e) = self.dtls.handle_datagram(now, datagram) {
            return Err(self.fail(e.into()));
        }
        self.drain(now)
    }

    /// Moves every received record up to the session.
    fn drain(&mut self, now: Instant) -> Result<(), DatagramError> {
        while let Some(event) = self.dtls.poll_event() {
            if event == DtlsEvent::Closed {
                self.session.handle_close(now);
                return Err(self.fail(DatagramError::Dtls(dtls::Error::Closed)));
            }
        }
        let mut message = [0u8; SLOT];
        loop {
            let n = match self.dtls.recv(&mut message) {
                Ok(Some(n)) => n,
                Ok(None) => return Ok(()),
                // A record longer than a slot cannot be a message this session takes.
                Err(dtls::Error::InsufficientSize { required }) => {
                    return Err(self.fail(DatagramError::TooLarge {
                        len: required,
                        max: SLOT,
                    }));
                }
                Err(e) => return Err(self.fail(e.into())),
            };
            let message = &message[..n];
            match self.reliability.handle_message(now, message) {
                // An empty ACK or RST settles the session's own request too (a ping, a signal).
                Ok(Incoming::New | Incoming::Consumed) => {
                    if let Err(e) = self.session.handle_input(now, message) {
                        return Err(self.fail(e.into()));
                    }
                }
                // Not CoAP: dropped, as a datagram endpoint drops noise.
                Ok(Incoming::Duplicate { .. }) | Err(_) => {}
            }
            self.settle()?;
        }
    }

    /// Reads the reliability layer's outcomes; a message never acknowledged ends the session.
    fn settle(&mut self) -> Result<(), DatagramError> {
        while let Some(event) = self.reliability.poll_event() {
            if let ReliabilityEvent::GaveUp(message_id) = event {
                return Err(self.fail(DatagramError::Unacknowledged { message_id }));
            }
        }
        Ok(())
    }

    /// Runs the timers of all three machines.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DatagramError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Err(e) = self.dtls.handle_timeout(now) {
            return Err(self.fail(e.into()));
        }
        self.reliability.handle_timeout(now);
        self.settle()?;
        self.session.handle_timeout(now);
        if let Some(e) = self.session.error() {
            return Err(self.fail(e.into()));
        }
        // Records may have waited in the DTLS connection since before the session was built.
        self.drain(now)
    }

    /// The next datagram to send, written to `out`; `Ok(None)` when nothing is due. `out` must
    /// hold [`DatagramSession::max_transmit_len`] bytes (a shorter one is refused before
    /// anything is taken, so nothing is lost).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<usize>, DatagramError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let required = self.max_transmit_len();
        if out.len() < required {
            return Err(DatagramError::InsufficientSize { required });
        }
        match self.dtls.poll_transmit(out) {
            Ok(Some(n)) => return Ok(Some(n)),
            Ok(None) => {}
            // A PMTU configured above the default: the flight waits for a larger buffer.
            Err(dtls::Error::InsufficientSize { required }) => {
                return Err(DatagramError::InsufficientSize { required });
            }
            Err(e) => return Err(self.fail(e.into())),
        }
        if !self.dtls.is_connected() {
            return Ok(None);
        }
        self.drain(now)?;
        let mut message = [0u8; SLOT];
        loop {
            // What the reliability layer has due (ACKs, replays, new and repeated CONs) first.
            match self.reliability.poll_transmit(&mut message) {
                Ok(Some(n)) => {
                    return match self.dtls.send(&message[..n], out) {
                        Ok(m) => Ok(Some(m)),
                        Err(e) => Err(self.fail(e.into())),
                    };
                }
                Ok(None) => {}
                Err(ReliabilityError::InsufficientSize { required }) => {
                    return Err(self.fail(DatagramError::TooLarge {
                        len: required,
                        max: SLOT,
                    }));
                }
                Err(_) => return Ok(None),
            }
            // A held confirmable message takes the free slot before anything newer.
            if self.reliability.can_send_confirmable()
                && let Some(held) = self.held.pop_front()
            {
                self.give(now, &held)?;
                continue;
            }
            if self.held.is_full() {
                return Ok(None);
            }
            let n = match self.session.poll_transmit(now, &mut message) {
                Ok(Some(n)) => n,
                Ok(None) => return Ok(None),
                Err(SessionError::InsufficientSize { required }) => {
                    return Err(self.fail(DatagramError::TooLarge {
                        len: required,
                        max: SLOT,
                    }));
                }
                Err(e) => return Err(self.fail(e.into())),
            };
            let confirmable = Packet::new_checked(&message[..n])
                .is_ok_and(|p| p.msg_type() == MessageType::Confirmable);
            if confirmable && !self.reliability.can_send_confirmable() {
                // `held` has room (checked above) and the message fits a slot (it came out
                // of a slot-sized buffer).
                let _ = self
                    .held
                    .push_back(Vec::from_slice(&message[..n]).unwrap_or_default());
            } else {
                self.give(now, &message[..n])?;
            }
        }
    }

    fn give(&mut self, now: Instant, message: &[u8]) -> Result<(), DatagramError> {
        match self.reliability.send(now, message, &mut self.rng) {
            Ok(()) => Ok(()),
            Err(ReliabilityError::TooLarge { len }) => {
                Err(self.fail(DatagramError::TooLarge { len, max: SLOT }))
            }
            // The session's own messages are CoAP, and the layer's queues were drained before.
            Err(_) => Err(self.fail(DatagramError::Session(SessionError::Unexpected(
                "a message the CoAP layer refused",
            )))),
        }
    }

    /// The earliest deadline of the three machines.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        [
            self.dtls.poll_timeout(),
            self.reliability.poll_timeout(),
            self.session.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The session's next event.
    pub fn poll_event(&mut self) -> Option<C::Event> {
        self.session.poll_event()
    }
}
