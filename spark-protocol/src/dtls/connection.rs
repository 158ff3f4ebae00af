//! One DTLS association, client or server side: the handshake state machine, its flights and
//! their timers, and the protected records after it.
//!
//! Inputs are [`Connection::handle_datagram`] and [`Connection::handle_timeout`]; outputs are
//! [`Connection::poll_transmit`], [`Connection::poll_timeout`] and [`Connection::poll_event`];
//! application data goes out through [`Connection::send`] and comes in through
//! [`Connection::recv`]. Nothing here allocates: every buffer is a fixed array sized by the
//! constants of [`super`].

use core::time::Duration;

use heapless::Deque;

use super::crypto::{
    Ephemeral, MAX_DER_SIGNATURE_LEN, MasterSecret, POINT_LEN, RECORD_OVERHEAD, RecordCipher,
    Transcript, additional_data, sha256,
};
use super::handshake::{
    self, CERTIFICATE_TYPE_RAW_PUBLIC_KEY, CERTIFICATE_TYPE_X509, ClientHello,
    ECDSA_SECP256R1_SHA256, Fragment, HandshakeType, Reassembly, SECP256R1, ServerHello,
    ServerKeyExchange, TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, Writer, ext,
};
use super::record::{
    AlertDescription, CONTENT_TYPE_CID, CONTENT_TYPE_CID_MOVED, ContentType, DTLS_1_0, DTLS_1_2,
    HEADER_LEN, MAX_SEQUENCE, RecordHeader, ReplayWindow,
};
use super::{
    Certificate, Error, Event, FLIGHT_CAPACITY, MAX_HANDSHAKE_MESSAGE, PrivateKey, PublicKey,
    RECEIVE_QUEUE_CAPACITY, SavedAssociation, Session, TransportConfig,
};
use crate::session::Instant;

/// Which end of the association this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The device: sends the ClientHello.
    Client,
    /// The cloud.
    Server,
}

/// Connection-id records pad their inner plaintext to a multiple of this (mbedTLS's default).
const CID_PADDING: usize = 16;

/// Where the handshake stands; named for what is expected next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ExpectServerHello,
    ExpectCertificate,
    ExpectServerKeyExchange,
    ExpectCertificateRequestOrDone,
    ExpectServerHelloDone,
    ExpectClientCertificate,
    ExpectClientKeyExchange,
    ExpectCertificateVerify,
    ExpectFinished,
    Connected,
    Closed,
    Failed,
}

/// One message (or ChangeCipherSpec) of the flight we would retransmit.
#[derive(Debug, Clone, Copy, Default)]
struct FlightEntry {
    change_cipher_spec: bool,
    epoch: u16,
    start: usize,
    len: usize,
}

/// The last flight we sent, kept whole so it can be sent again, fragmented to the PMTU.
struct Flight {
    buf: [u8; FLIGHT_CAPACITY],
    used: usize,
    entries: heapless::Vec<FlightEntry, 6>,
    /// Next entry and offset into its body to transmit; `None` when all went out.
    cursor: Option<(usize, usize)>,
}

impl Flight {
    fn new() -> Self {
        Flight {
            buf: [0; FLIGHT_CAPACITY],
            used: 0,
            entries: heapless::Vec::new(),
            cursor: None,
        }
    }

    fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
        self.cursor = None;
    }

    fn push(&mut self, entry: FlightEntry) -> Result<(), Error> {
        self.entries
            .push(entry)
            .map_err(|_| Error::Internal("flight has too many messages"))
    }

    fn rearm(&mut self) {
        self.cursor = if self.entries.is_empty() {
            None
        } else {
            Some((0, 0))
        };
    }
}

/// A connection id of at most [`CONNECTION_ID_LEN`](super::CONNECTION_ID_LEN) bytes, inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParkedCid {
    len: u8,
    bytes: [u8; super::CONNECTION_ID_LEN],
}

impl ParkedCid {
    fn new(cid: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; super::CONNECTION_ID_LEN];
        bytes.get_mut(..cid.len())?.copy_from_slice(cid);
        Some(ParkedCid {
            len: cid.len() as u8,
            bytes,
        })
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(super::CONNECTION_ID_LEN)]
    }
}

/// The record state of an established, quiet [`Connection`] ([`Connection::park`]): the role,
/// both directions' AES-128-CCM-8 keys and implicit nonces, our next sequence number, the peer's
/// replay window and both connection ids, in about 110 bytes where a live connection takes about
/// 9 KB. The keys are zeroized when it is dropped.
pub struct ParkedConnection {
    role: Role,
    /// Our write key and salt, then the peer's.
    keys: [u8; 40],
    write_seq: u64,
    replay: ReplayWindow,
    in_cid: ParkedCid,
    out_cid: ParkedCid,
}

impl core::fmt::Debug for ParkedConnection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParkedConnection")
            .field("role", &self.role)
            .field("write_seq", &self.write_seq)
            .finish_non_exhaustive()
    }
}

impl Drop for ParkedConnection {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.keys);
    }
}

/// A DTLS 1.2 association with one peer (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 on P-256).
pub struct Connection {
    role: Role,
    state: State,
    config: TransportConfig,
    key: PrivateKey,
    certificate: Option<Certificate>,
    peer_pin: Option<PublicKey>,
    peer_key: Option<PublicKey>,
    /// We present a raw public key (else an X.509 certificate).
    own_rpk: bool,
    /// The peer presents a raw public key.
    peer_rpk: bool,
    offer_rpk: bool,
    /// Server: send a Certificate with our raw public key (RFC 7250) rather than none.
    send_raw_public_key: bool,
    /// Client: offer the connection-id extension (asking for no CID of our own).
    offer_cid: bool,
    /// The connection id records to us carry (ours; empty: none).
    in_cid: heapless::Vec<u8, 32>,
    /// The connection id our protected records carry (the peer's; empty: none).
    out_cid: heapless::Vec<u8, 32>,
    /// Mark our connection-id records as sent from a new address (content type 253).
    cid_moved: bool,
    /// Client: the server asked for our certificate. Server: we ask for the client's.
    client_auth: bool,
    renegotiation_info: bool,
    resumed: bool,
    client_random: [u8; 32],
    server_random: [u8; 32],
    session_id: heapless::Vec<u8, 32>,
    resume: Option<Session>,
    master: Option<MasterSecret>,
    ephemeral: Option<Ephemeral>,
    transcript: Transcript,
    cookie: heapless::Vec<u8, 255>,
    write_cipher: Option<RecordCipher>,
    read_cipher: Option<RecordCipher>,
    /// Highest epoch we have written a record in (alerts go out under it).
    write_epoch: u16,
    write_seq: [u64; 2],
    replay: [ReplayWindow; 2],
    send_seq: u16,
    recv_seq: u16,
    reassembly: Reassembly,
    flight: Flight,
    timer: Option<Instant>,
    timeout: Duration,
    events: Deque<Event, 4>,
    received: Deque<u8, RECEIVE_QUEUE_CAPACITY>,
    alert: Option<AlertDescription>,
    error: Option<Error>,
    /// A protected application record came from the peer: it has our last flight, which need
    /// not be kept for a repeat of its own.
    peer_confirmed: bool,
    /// The record keys an [`unpark`](Self::unpark)ed connection was rebuilt from (it has no
    /// master secret to derive them again), for the next park.
    parked_keys: Option<[u8; 40]>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(k) = self.parked_keys.as_mut() {
            zeroize::Zeroize::zeroize(k);
        }
    }
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn blank(role: Role, config: TransportConfig, key: PrivateKey) -> Self {
        Connection {
            role,
            state: State::ExpectServerHello,
            config,
            key,
            certificate: None,
            peer_pin: None,
            peer_key: None,
            own_rpk: false,
            peer_rpk: false,
            offer_rpk: false,
            send_raw_public_key: false,
            offer_cid: false,
            in_cid: heapless::Vec::new(),
            out_cid: heapless::Vec::new(),
            cid_moved: false,
            client_auth: false,
            renegotiation_info: false,
            resumed: false,
            client_random: [0; 32],
            server_random: [0; 32],
            session_id: heapless::Vec::new(),
            resume: None,
            master: None,
            ephemeral: None,
            transcript: Transcript::default(),
            cookie: heapless::Vec::new(),
            write_cipher: None,
            read_cipher: None,
            write_epoch: 0,
            write_seq: [0; 2],
            replay: [ReplayWindow::default(); 2],
            send_seq: 0,
            recv_seq: 0,
            reassembly: Reassembly::default(),
            flight: Flight::new(),
            timer: None,
            timeout: config.retransmit_initial,
            events: Deque::new(),
            received: Deque::new(),
            alert: None,
            error: None,
            peer_confirmed: false,
            parked_keys: None,
        }
    }

    /// A client connection that will send its ClientHello on the first
    /// [`poll_transmit`](Self::poll_transmit). `now` starts the retransmission timer; `rng`
    /// supplies the client random and the ephemeral ECDHE key.
    pub fn client<R: rand_core::CryptoRng + ?Sized>(
        now: Instant,
        config: super::ClientConfig,
        rng: &mut R,
    ) -> Self {
        let mut c = Connection::blank(Role::Client, config.transport, config.key);
        c.certificate = config.certificate;
        c.peer_pin = Some(config.server_key);
        c.offer_rpk = config.raw_public_keys;
        c.offer_cid = config.connection_id;
        rng.fill_bytes(&mut c.client_random);
        c.ephemeral = Some(Ephemeral::generate(rng));
        c.resume = config.resume;
        if let Err(e) = c.send_client_hello(now) {
            c.fail(e);
        }
        c
    }

    /// The server side, started from a ClientHello whose cookie [`super::Server`] verified.
    pub(super) fn server<R: rand_core::CryptoRng + ?Sized>(
        config: &super::ServerConfig,
        resume: Option<Session>,
        hello_message: &[u8],
        hello_seq: u16,
        hello_record: u64,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        let mut c = Connection::blank(Role::Server, config.transport, config.key.clone());
        c.state = State::ExpectClientKeyExchange;
        c.certificate = config.certificate.clone();
        c.peer_pin = config.client_key;
        c.client_auth = config.require_client_auth;
        c.send_raw_public_key = config.send_raw_public_key;
        rng.fill_bytes(&mut c.server_random);
        // The HelloVerifyRequest took our handshake sequence number 0.
        c.send_seq = 1;
        c.recv_seq = hello_seq.wrapping_add(1);
        // The HelloVerifyRequest echoed the first hello's record number; count on from the
        // second's so no record of ours repeats one the client has seen.
        c.write_seq[0] = hello_record;
        c.replay[0].accept(hello_record);
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        if config.connection_id {
            let mut cid = [0u8; super::CONNECTION_ID_LEN];
            rng.fill_bytes(&mut cid);
            c.in_cid = heapless::Vec::from_slice(&cid).unwrap_or_default();
        }
        match resume {
            Some(s) => {
                c.session_id = heapless::Vec::from_slice(s.id()).unwrap_or_default();
                c.master = Some(s.master);
                c.peer_key = s.peer_key;
                c.resumed = true;
            }
            None => {
                c.session_id = heapless::Vec::from_slice(&id).unwrap_or_default();
                c.ephemeral = Some(Ephemeral::generate(rng));
            }
        }
        if let Err(e) = c.start_server(hello_message, now) {
            c.fail(e);
        }
        c
    }

    /// Which side this is.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake finished and application data may flow.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether this connection's handshake was an abbreviated one (a resumed session).
    #[must_use]
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// The connection id records to us carry, if one was agreed (the server's, on the server:
    /// what the caller routes by when a device's address changes).
    #[must_use]
    pub fn connection_id(&self) -> Option<&[u8]> {
        (!self.in_cid.is_empty()).then_some(&self.in_cid[..])
    }

    /// Device OS's "move session": after the device's address changed, its connection-id
    /// records go out with content type 253 so the cloud re-binds the association.
    pub fn set_address_changed(&mut self, changed: bool) {
        self.cid_moved = changed;
    }

    /// The error the connection ended with, if it did.
    #[must_use]
    pub fn error(&self) -> Option<Error> {
        self.error
    }

    /// The key the peer proved it holds (after its CertificateVerify or ServerKeyExchange).
    /// On the server this is how the device is identified against the device id in its Hello.
    #[must_use]
    pub fn peer_public_key(&self) -> Option<PublicKey> {
        self.peer_key
    }

    /// The session to resume later (a device keeps it across sleep or a network change).
    #[must_use]
    pub fn session(&self) -> Option<Session> {
        let master = self.master?;
        if self.state != State::Connected || self.session_id.is_empty() {
            return None;
        }
        Session::new(&self.session_id, master, self.peer_key)
    }

    /// Everything needed to go on with this association after a sleep or a reset without any
    /// handshake (what Device OS does when its saved session still matches its keys); `None`
    /// before the handshake finished.
    ///
    /// Record sequence numbers must never repeat under the same keys: save again after sending,
    /// or pass a `skip` larger than what may have been sent since to [`restore`](Self::restore).
    #[must_use]
    pub fn save(&self) -> Option<SavedAssociation> {
        if self.state != State::Connected {
            return None;
        }
        Some(SavedAssociation {
            role: self.role,
            master: self.master?,
            client_random: self.client_random,
            server_random: self.server_random,
            session: self.session()?,
            write_seq: self.write_seq[1],
            replay: self.replay[1],
            cids: {
                let mut cids = [0u8; 66];
                for (at, cid) in [(0, &self.in_cid), (33, &self.out_cid)] {
                    cids[at] = cid.len() as u8;
                    cids[at + 1..at + 1 + cid.len()].copy_from_slice(cid);
                }
                cids
            },
        })
    }

    /// An established association from a [`save`](Self::save)d one, with our sequence numbers
    /// advanced by `skip`. `key` is only kept for a later handshake's sake.
    #[must_use]
    pub fn restore(
        saved: &SavedAssociation,
        key: PrivateKey,
        transport: TransportConfig,
        skip: u64,
    ) -> Self {
        let mut c = Connection::blank(saved.role, transport, key);
        c.client_random = saved.client_random;
        c.server_random = saved.server_random;
        c.master = Some(saved.master);
        c.session_id = heapless::Vec::from_slice(saved.session.id()).unwrap_or_default();
        c.peer_key = saved.session.peer_key();
        c.install_keys(saved.master);
        c.write_epoch = 1;
        c.write_seq[1] = saved.write_seq.saturating_add(skip);
        c.replay[1] = saved.replay;
        c.in_cid = heapless::Vec::from_slice(saved.cid(0)).unwrap_or_default();
        c.out_cid = heapless::Vec::from_slice(saved.cid(1)).unwrap_or_default();
        c.resumed = true;
        c.peer_confirmed = true;
        c.state = State::Connected;
        c
    }

    /// Whether an established association has nothing in hand: no received record unread, no
    /// event, no alert or flight to send, and the peer proved with an application record that
    /// it has our last handshake flight (so no repeat of its own needs that flight again).
    /// Only then can it be [`park`](Self::park)ed.
    #[must_use]
    pub fn is_quiet(&self) -> bool {
        self.state == State::Connected
            && self.peer_confirmed
            && self.received.is_empty()
            && self.events.is_empty()
            && self.alert.is_none()
            && self.flight.cursor.is_none()
    }

    /// The record state of a quiet association, for a host that keeps many idle associations and
    /// rebuilds one when a datagram arrives ([`unpark`](Self::unpark)); `None` unless
    /// [`is_quiet`](Self::is_quiet), or when a connection id is longer than
    /// [`CONNECTION_ID_LEN`](super::CONNECTION_ID_LEN).
    ///
    /// The association goes on in this process: the caller drops this connection and keeps the
    /// parked value, so no sequence number is sent twice.
    #[must_use]
    pub fn park(&self) -> Option<ParkedConnection> {
        if !self.is_quiet() {
            return None;
        }
        let keys = match (self.parked_keys, self.master) {
            (Some(keys), _) => keys,
            (None, Some(master)) => {
                let kb = master.key_block(&self.client_random, &self.server_random);
                let (write, read) = match self.role {
                    Role::Client => (
                        (&kb.client_key, kb.client_salt),
                        (&kb.server_key, kb.server_salt),
                    ),
                    Role::Server => (
                        (&kb.server_key, kb.server_salt),
                        (&kb.client_key, kb.client_salt),
                    ),
                };
                let mut keys = [0u8; 40];
                keys[..16].copy_from_slice(write.0);
                keys[16..20].copy_from_slice(&write.1);
                keys[20..36].copy_from_slice(read.0);
                keys[36..].copy_from_slice(&read.1);
                keys
            }
            (None, None) => return None,
        };
        Some(ParkedConnection {
            role: self.role,
            keys,
            write_seq: self.write_seq[1],
            replay: self.replay[1],
            in_cid: ParkedCid::new(&self.in_cid)?,
            out_cid: ParkedCid::new(&self.out_cid)?,
        })
    }

    /// The association [`park`](Self::park) kept, connected again: records go on from the parked
    /// sequence number under the same keys, and a record the replay window saw before the park is
    /// still refused. What it does not bring back: the last handshake flight (the peer proved it
    /// had it before the park), the master secret (so [`session`](Self::session) and
    /// [`save`](Self::save) give `None`), and the peer's public key (read it before parking). `key`
    /// is only kept for a later handshake's sake.
    #[must_use]
    pub fn unpark(parked: &ParkedConnection, key: PrivateKey, transport: TransportConfig) -> Self {
        let mut c = Connection::blank(parked.role, transport, key);
        let k = &parked.keys;
        let mut write = [0u8; 16];
        let mut read = [0u8; 16];
        write.copy_from_slice(&k[..16]);
        read.copy_from_slice(&k[20..36]);
        c.write_cipher = Some(RecordCipher::new(&write, [k[16], k[17], k[18], k[19]]));
        c.read_cipher = Some(RecordCipher::new(&read, [k[36], k[37], k[38], k[39]]));
        zeroize::Zeroize::zeroize(&mut write);
        zeroize::Zeroize::zeroize(&mut read);
        c.write_epoch = 1;
        c.write_seq[1] = parked.write_seq;
        c.replay[1] = parked.replay;
        c.in_cid = heapless::Vec::from_slice(parked.in_cid.get()).unwrap_or_default();
        c.out_cid = heapless::Vec::from_slice(parked.out_cid.get()).unwrap_or_default();
        c.peer_confirmed = true;
        c.parked_keys = Some(parked.keys);
        c.state = State::Connected;
        c
    }

    fn check(&self) -> Result<(), Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: Error) {
        if self.error.is_some() {
            return;
        }
        self.error = Some(e);
        self.state = State::Failed;
        self.timer = None;
        self.flight.cursor = None;
        self.alert = e.alert();
    }

    /// Ends the association politely: a close_notify alert goes out on the next
    /// [`poll_transmit`](Self::poll_transmit), and the connection reports [`Error::Closed`].
    pub fn close(&mut self) {
        if self.error.is_none() {
            self.error = Some(Error::Closed);
            self.state = State::Closed;
            self.timer = None;
            self.flight.cursor = None;
            self.alert = Some(AlertDescription::CloseNotify);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Advances the flight timer: an unanswered flight is sent again with the timeout doubled
    /// (RFC 6347 section 4.2.4), and after the longest timeout the handshake fails with
    /// [`Error::HandshakeTimeout`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check()?;
        let Some(deadline) = self.timer else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        if self.timeout >= self.config.retransmit_max {
            self.fail(Error::HandshakeTimeout);
            return Err(Error::HandshakeTimeout);
        }
        self.timeout = (self.timeout * 2).min(self.config.retransmit_max);
        self.flight.rearm();
        self.timer = Some(now + self.timeout);
        Ok(())
    }

    /// Writes the next datagram to send into `out` and returns its length, or `None` when
    /// nothing is waiting. A datagram never exceeds the configured PMTU; `out` must hold that.
    /// After the connection ended only its alert (fatal or close_notify) still goes out.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        if let Some(alert) = self.alert.take() {
            let level = if alert == AlertDescription::CloseNotify {
                1
            } else {
                2
            };
            let epoch = self.write_epoch;
            let n = self.write_record(out, ContentType::Alert, epoch, &[level, alert.into()]);
            return match n {
                Ok(n) => Ok(Some(n)),
                Err(e) => {
                    self.alert = Some(alert);
                    Err(e)
                }
            };
        }
        if self.error.is_some() {
            return Ok(None);
        }
        let Some(_) = self.flight.cursor else {
            return Ok(None);
        };
        let limit = self.config.pmtu.min(out.len());
        if limit
            < self
                .config
                .pmtu
                .min(HEADER_LEN + handshake::HEADER_LEN + RECORD_OVERHEAD + 64)
        {
            return Err(Error::InsufficientSize {
                required: self.config.pmtu,
            });
        }
        let mut used = 0;
        while let Some((index, offset)) = self.flight.cursor {
            let Some(entry) = self.flight.entries.get(index).copied() else {
                self.flight.cursor = None;
                break;
            };
            let overhead = HEADER_LEN
                + if entry.epoch > 0 {
                    RECORD_OVERHEAD
                        + if self.out_cid.is_empty() {
                            0
                        } else {
                            self.out_cid.len() + CID_PADDING
                        }
                } else {
                    0
                };
            let room = limit.saturating_sub(used + overhead);
            if entry.change_cipher_spec {
                if room < 1 {
                    break;
                }
                used += self.write_record(
                    &mut out[used..limit],
                    ContentType::ChangeCipherSpec,
                    entry.epoch,
                    &[1],
                )?;
                self.write_epoch = self.write_epoch.max(entry.epoch + 1);
                self.advance_cursor(index, None);
                continue;
            }
            let message = &self.flight.buf[entry.start..entry.start + entry.len];
            let body_len = entry.len - handshake::HEADER_LEN;
            // A fragment carries at least a little body unless the message has none.
            if room < handshake::HEADER_LEN + 1 || (room == handshake::HEADER_LEN && body_len > 0) {
                if used == 0 {
                    return Err(Error::InsufficientSize {
                        required: overhead + handshake::HEADER_LEN + 1,
                    });
                }
                break;
            }
            let take = (body_len - offset).min(room - handshake::HEADER_LEN);
            let mut frag = [0u8; MAX_HANDSHAKE_MESSAGE];
            frag[..handshake::HEADER_LEN].copy_from_slice(&message[..handshake::HEADER_LEN]);
            let msg_type = HandshakeType::from(message[0]);
            let seq = u16::from_be_bytes([message[4], message[5]]);
            handshake::write_header(&mut frag, msg_type, body_len, seq, offset, take);
            frag[handshake::HEADER_LEN..handshake::HEADER_LEN + take].copy_from_slice(
                &message[handshake::HEADER_LEN + offset..handshake::HEADER_LEN + offset + take],
            );
            used += self.write_record(
                &mut out[used..limit],
                ContentType::Handshake,
                entry.epoch,
                &frag[..handshake::HEADER_LEN + take],
            )?;
            let next = offset + take;
            self.advance_cursor(index, (next < body_len).then_some(next));
        }
        Ok((used > 0).then_some(used))
    }

    fn advance_cursor(&mut self, index: usize, next_offset: Option<usize>) {
        self.flight.cursor = match next_offset {
            Some(off) => Some((index, off)),
            None if index + 1 < self.flight.entries.len() => Some((index + 1, 0)),
            None => None,
        };
    }

    /// Protects and sends `data` as one application-data record in one datagram written to
    /// `out`; returns the datagram's length.
    pub fn send(&mut self, data: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        self.check()?;
        if self.state != State::Connected {
            return Err(Error::NotConnected);
        }
        if data.len() > super::MAX_PLAINTEXT {
            return Err(Error::TooLarge);
        }
        self.write_record(out, ContentType::ApplicationData, 1, data)
    }

    /// Copies the oldest received application record into `out`; `None` when there is none.
    pub fn recv(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        let mut it = self.received.iter();
        let (Some(&hi), Some(&lo)) = (it.next(), it.next()) else {
            self.check()?;
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if out.len() < len {
            return Err(Error::InsufficientSize { required: len });
        }
        self.received.pop_front();
        self.received.pop_front();
        for slot in &mut out[..len] {
            *slot = self.received.pop_front().unwrap_or(0);
        }
        Ok(Some(len))
    }

    /// Writes one record (protected from epoch 1 on) into `out`; returns its length.
    fn write_record(
        &mut self,
        out: &mut [u8],
        ct: ContentType,
        epoch: u16,
        payload: &[u8],
    ) -> Result<usize, Error> {
        let protected = epoch > 0;
        let cid_len = if protected { self.out_cid.len() } else { 0 };
        // A connection-id record hides its type inside, padded to 16 bytes as mbedTLS does.
        let inner_len = if cid_len > 0 {
            let len = payload.len() + 1;
            len + (CID_PADDING - len % CID_PADDING) % CID_PADDING
        } else {
            payload.len()
        };
        let body_len = inner_len + if protected { RECORD_OVERHEAD } else { 0 };
        let head_len = HEADER_LEN + cid_len;
        let total = head_len + body_len;
        if out.len() < total {
            return Err(Error::InsufficientSize { required: total });
        }
        let slot = usize::from(epoch.min(1));
        let seq = self.write_seq[slot];
        if seq > MAX_SEQUENCE {
            return Err(Error::SequenceExhausted);
        }
        self.write_seq[slot] += 1;
        let outer = if cid_len > 0 {
            ContentType::from(CONTENT_TYPE_CID)
        } else {
            ct
        };
        let header = RecordHeader {
            content_type: outer,
            version: DTLS_1_2,
            epoch,
            sequence: seq,
            length: body_len as u16,
        };
        let mut fixed = [0u8; HEADER_LEN];
        header.emit(&mut fixed);
        out[..11].copy_from_slice(&fixed[..11]);
        out[11..11 + cid_len].copy_from_slice(&self.out_cid[..cid_len]);
        out[11 + cid_len..head_len].copy_from_slice(&fixed[11..]);
        let body = &mut out[head_len..total];
        if protected {
            let cipher = self
                .write_cipher
                .as_ref()
                .ok_or(Error::Internal("no write keys"))?;
            let explicit = header.epoch_and_sequence();
            body[..8].copy_from_slice(&explicit);
            let text = &mut body[8..8 + inner_len];
            text[..payload.len()].copy_from_slice(payload);
            if cid_len > 0 {
                text[payload.len()] = ct.into();
                text[payload.len() + 1..].fill(0);
            }
            let aad = additional_data(
                &explicit,
                outer.into(),
                DTLS_1_2,
                &self.out_cid[..cid_len],
                inner_len,
            );
            let tag = cipher.seal_with_aad(&explicit, &aad.bytes[..aad.len], text);
            body[8 + inner_len..].copy_from_slice(&tag);
            if cid_len > 0 && self.cid_moved {
                out[0] = CONTENT_TYPE_CID_MOVED;
            }
        } else {
            body.copy_from_slice(payload);
        }
        Ok(total)
    }

    /// Takes one received datagram. Records that fail authentication, replays and stale
    /// retransmissions are dropped silently (RFC 6347 section 4.1.2.7); a protocol violation
    /// or a fatal alert ends the connection with an error that every later call returns.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), Error> {
        self.check()?;
        let mut rest = datagram;
        let result = self.handle_records(now, &mut rest);
        match (result, self.error) {
            // The peer's close_notify is news for this call, an error for the next ones.
            (Ok(()), Some(Error::Closed)) => Ok(()),
            (Ok(()), _) => self.check(),
            (Err(e), _) => Err(e),
        }
    }

    fn handle_records(&mut self, now: Instant, rest: &mut &[u8]) -> Result<(), Error> {
        while !rest.is_empty() {
            let with_cid = matches!(rest[0], CONTENT_TYPE_CID | CONTENT_TYPE_CID_MOVED);
            let parsed = if with_cid {
                // Only we know how long our connection id is; without one the rest is unreadable.
                if self.in_cid.is_empty() {
                    break;
                }
                RecordHeader::parse_with_cid(rest, self.in_cid.len())
                    .map(|(h, cid, f)| (h, Some(cid), f))
            } else {
                RecordHeader::parse(rest).map(|(h, f)| (h, None, f))
            };
            let Some((header, cid, fragment)) = parsed else {
                break;
            };
            *rest = &rest[HEADER_LEN + cid.map_or(0, <[u8]>::len) + fragment.len()..];
            if let Err(e) = self.handle_record(now, header, cid, fragment) {
                self.fail(e);
                return Err(e);
            }
            if self.error.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn handle_record(
        &mut self,
        now: Instant,
        header: RecordHeader,
        cid: Option<&[u8]>,
        fragment: &[u8],
    ) -> Result<(), Error> {
        if header.version != DTLS_1_2 && header.version != DTLS_1_0 {
            return Ok(());
        }
        let slot = match header.epoch {
            0 => 0,
            1 => 1,
            _ => return Ok(()),
        };
        // Once we gave out a connection id, protected records must carry it (and only it);
        // unprotected ones never do.
        let cid_ok = match cid {
            Some(c) => slot == 1 && c == &self.in_cid[..],
            None => slot == 0 || self.in_cid.is_empty(),
        };
        if !cid_ok {
            return Ok(());
        }
        if !self.replay[slot].is_fresh(header.sequence) {
            return Ok(());
        }
        let mut plain = [0u8; MAX_HANDSHAKE_MESSAGE + 64];
        let text: &[u8] = if slot == 1 {
            let Some(cipher) = self.read_cipher.as_ref() else {
                return Ok(());
            };
            if fragment.len() < RECORD_OVERHEAD || fragment.len() - RECORD_OVERHEAD > plain.len() {
                return Ok(());
            }
            let n = fragment.len() - RECORD_OVERHEAD;
            let explicit: [u8; 8] = fragment[..8].try_into().unwrap_or_default();
            let tag: [u8; 8] = fragment[8 + n..].try_into().unwrap_or_default();
            plain[..n].copy_from_slice(&fragment[8..8 + n]);
            let seq = header.epoch_and_sequence();
            // A moved record (253) was authenticated as an ordinary connection-id record.
            let outer = if cid.is_some() {
                CONTENT_TYPE_CID
            } else {
                header.content_type.into()
            };
            let aad = additional_data(&seq, outer, header.version, cid.unwrap_or_default(), n);
            if cipher
                .open_with_aad(&explicit, &aad.bytes[..aad.len], &mut plain[..n], &tag)
                .is_err()
            {
                return Ok(());
            }
            &plain[..n]
        } else {
            fragment
        };
        // Inside a connection-id record: content, the real type, zero padding.
        let (content_type, text) = match cid {
            Some(_) => match text.iter().rposition(|&b| b != 0) {
                Some(at) => (ContentType::from(text[at]), &text[..at]),
                None => return Ok(()),
            },
            None => (header.content_type, text),
        };
        self.replay[slot].accept(header.sequence);
        match content_type {
            ContentType::Handshake => self.handle_handshake_record(now, slot, text),
            ContentType::ChangeCipherSpec => {
                if text != [1] {
                    return Err(Error::Malformed("change_cipher_spec body"));
                }
                Ok(())
            }
            ContentType::Alert => {
                // After the handshake an unprotected alert could come from anyone. During it
                // the peer's refusal comes unprotected even once our keys are installed (OpenSSL
                // sends its bad_certificate at epoch 0 after our Finished), and ignoring it would
                // only turn a refusal into a handshake timeout.
                if slot == 0 && self.state == State::Connected {
                    return Ok(());
                }
                let [level, desc] = text else {
                    return Err(Error::Malformed("alert length"));
                };
                let desc = AlertDescription::from(*desc);
                if desc == AlertDescription::CloseNotify {
                    self.error = Some(Error::Closed);
                    self.state = State::Closed;
                    self.timer = None;
                    let _ = self.events.push_back(Event::Closed);
                    return Ok(());
                }
                if *level == 2 {
                    self.error = Some(Error::AlertReceived(desc));
                    self.state = State::Failed;
                    self.timer = None;
                }
                Ok(())
            }
            ContentType::ApplicationData => {
                if slot == 1 && self.state == State::Connected {
                    self.peer_confirmed = true;
                    let needed = text.len() + 2;
                    if self.received.capacity() - self.received.len() >= needed {
                        for &b in (text.len() as u16).to_be_bytes().iter().chain(text) {
                            let _ = self.received.push_back(b);
                        }
                        if self.events.back() != Some(&Event::ApplicationData) {
                            let _ = self.events.push_back(Event::ApplicationData);
                        }
                    }
                }
                Ok(())
            }
            ContentType::Unknown(_) => Ok(()),
        }
    }

    fn handle_handshake_record(
        &mut self,
        now: Instant,
        epoch: usize,
        mut text: &[u8],
    ) -> Result<(), Error> {
        while !text.is_empty() {
            // A fragment that does not parse is dropped like any invalid record (RFC 6347
            // section 4.1.2.7): unprotected ones can come from anyone.
            let Ok((frag, rest)) = Fragment::parse(text) else {
                return Ok(());
            };
            text = rest;
            if self.role == Role::Server
                && self.state == State::Connected
                && frag.msg_type == HandshakeType::ClientHello
            {
                // A fresh hello on an established association is a restarted client, which
                // `Server::accept` handles (RFC 6347 section 4.2.8), not a retransmission.
                continue;
            }
            if frag.message_seq < self.recv_seq {
                // The peer sent its last flight again: ours was lost (or it timed out first).
                if frag.offset == 0
                    && !self.flight.entries.is_empty()
                    && self.flight.cursor.is_none()
                {
                    self.flight.rearm();
                }
                continue;
            }
            if frag.message_seq > self.recv_seq || self.state == State::Connected {
                continue;
            }
            // Finished must come under the new keys, everything else before them.
            let want_epoch = usize::from(frag.msg_type == HandshakeType::Finished);
            if epoch != want_epoch {
                continue;
            }
            if !self.reassembly.add(&frag)? {
                continue;
            }
            let mut message = [0u8; MAX_HANDSHAKE_MESSAGE];
            let whole = self.reassembly.message();
            let len = whole.len();
            message[..len].copy_from_slice(whole);
            self.reassembly.clear();
            self.recv_seq = self.recv_seq.wrapping_add(1);
            self.handle_message(now, &message[..len])?;
            if self.error.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// The peer's Certificate (X.509 or a raw public key): its key must be the pinned one, if
    /// any; then the handshake moves on to `next`.
    fn accept_certificate(
        &mut self,
        message: &[u8],
        body: &[u8],
        next: State,
    ) -> Result<(), Error> {
        self.transcript.update(message);
        let key = handshake::parse_certificate(body, self.peer_rpk)?.ok_or(Error::NoCertificate)?;
        if self.peer_pin.is_some_and(|pin| pin != key) {
            return Err(Error::UnknownPeerKey);
        }
        self.peer_key = Some(key);
        self.state = next;
        Ok(())
    }

    fn handle_message(&mut self, now: Instant, message: &[u8]) -> Result<(), Error> {
        let msg_type = HandshakeType::from(message[0]);
        let body = &message[handshake::HEADER_LEN..];
        match (self.state, msg_type) {
            (State::ExpectServerHello, HandshakeType::HelloVerifyRequest) => {
                let mut r = handshake::Reader::new(body);
                let _version = r.take(2)?;
                let cookie = r.vec8()?;
                r.finish()?;
                if !self.cookie.is_empty() {
                    // One cookie exchange per handshake; a second request (forged or stale)
                    // is ignored rather than allowed to end the handshake, and does not use
                    // up the sequence number the ServerHello will carry.
                    self.recv_seq = self.recv_seq.wrapping_sub(1);
                    return Ok(());
                }
                self.cookie =
                    heapless::Vec::from_slice(cookie).map_err(|_| Error::Malformed("cookie"))?;
                // The exchange starts over: the first hello and the request are not hashed,
                // and the request's record number (a copy of ours) says nothing of the server's.
                self.transcript = Transcript::default();
                self.replay[0] = ReplayWindow::default();
                self.send_client_hello(now)
            }
            (State::ExpectServerHello, HandshakeType::ServerHello) => {
                self.transcript.update(message);
                self.on_server_hello(body)
            }
            (State::ExpectCertificate, HandshakeType::Certificate) => {
                self.accept_certificate(message, body, State::ExpectServerKeyExchange)
            }
            (State::ExpectCertificate, HandshakeType::ServerKeyExchange)
                if self.peer_rpk && self.peer_pin.is_some() =>
            {
                // Device OS's cloud sends no Certificate once raw public keys are agreed: the
                // device holds the key already. The pinned key checks the signature instead.
                self.peer_key = self.peer_pin;
                self.state = State::ExpectServerKeyExchange;
                self.handle_message(now, message)
            }
            (State::ExpectServerKeyExchange, HandshakeType::ServerKeyExchange) => {
                self.transcript.update(message);
                let ske = ServerKeyExchange::parse(body)?;
                let digest = sha256(&[&self.client_random, &self.server_random, ske.params]);
                self.peer_key
                    .ok_or(Error::NoCertificate)?
                    .verify_digest(&digest, ske.signature)?;
                let eph = self
                    .ephemeral
                    .as_ref()
                    .ok_or(Error::Internal("no ephemeral key"))?;
                let pms = eph.agree(ske.point)?;
                self.master = Some(MasterSecret::derive(
                    &pms,
                    &self.client_random,
                    &self.server_random,
                ));
                self.state = State::ExpectCertificateRequestOrDone;
                Ok(())
            }
            (State::ExpectCertificateRequestOrDone, HandshakeType::CertificateRequest) => {
                self.transcript.update(message);
                handshake::parse_certificate_request(body)?;
                self.client_auth = true;
                self.state = State::ExpectServerHelloDone;
                Ok(())
            }
            (
                State::ExpectCertificateRequestOrDone | State::ExpectServerHelloDone,
                HandshakeType::ServerHelloDone,
            ) => {
                if !body.is_empty() {
                    return Err(Error::Malformed("server_hello_done body"));
                }
                self.transcript.update(message);
                self.send_client_finished_flight(now)
            }
            (State::ExpectClientCertificate, HandshakeType::Certificate) => {
                self.accept_certificate(message, body, State::ExpectClientKeyExchange)
            }
            (State::ExpectClientKeyExchange, HandshakeType::ClientKeyExchange) => {
                self.transcript.update(message);
                let mut r = handshake::Reader::new(body);
                let point = r.vec8()?;
                r.finish()?;
                let eph = self
                    .ephemeral
                    .as_ref()
                    .ok_or(Error::Internal("no ephemeral key"))?;
                let pms = eph.agree(point)?;
                let master = MasterSecret::derive(&pms, &self.client_random, &self.server_random);
                self.master = Some(master);
                self.install_keys(master);
                self.state = if self.client_auth {
                    State::ExpectCertificateVerify
                } else {
                    State::ExpectFinished
                };
                Ok(())
            }
            (State::ExpectCertificateVerify, HandshakeType::CertificateVerify) => {
                let digest = self.transcript.current();
                let sig = handshake::parse_certificate_verify(body)?;
                self.peer_key
                    .ok_or(Error::NoCertificate)?
                    .verify_digest(&digest, sig)?;
                self.transcript.update(message);
                self.state = State::ExpectFinished;
                Ok(())
            }
            (State::ExpectFinished, HandshakeType::Finished) => self.on_finished(message),
            _ => Err(Error::UnexpectedMessage),
        }
    }

    fn install_keys(&mut self, master: MasterSecret) {
        let kb = master.key_block(&self.client_random, &self.server_random);
        let client = RecordCipher::new(&kb.client_key, kb.client_salt);
        let server = RecordCipher::new(&kb.server_key, kb.server_salt);
        let (write, read) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        self.write_cipher = Some(write);
        self.read_cipher = Some(read);
    }

    fn finished_label(&self, ours: bool) -> &'static [u8] {
        match (self.role, ours) {
            (Role::Client, true) | (Role::Server, false) => b"client finished",
            _ => b"server finished",
        }
    }

    fn on_finished(&mut self, message: &[u8]) -> Result<(), Error> {
        let master = self.master.ok_or(Error::Internal("no master secret"))?;
        let expected = master.verify_data(self.finished_label(false), &self.transcript.current());
        let body = &message[handshake::HEADER_LEN..];
        if !bool::from(subtle::ConstantTimeEq::ct_eq(body, &expected[..])) {
            return Err(Error::BadFinished);
        }
        self.transcript.update(message);
        // Whoever did not send the first Finished answers with its own and is done; whoever
        // did is done now and stops its timer.
        let we_answer = match self.role {
            Role::Client => self.resumed,
            Role::Server => !self.resumed,
        };
        if we_answer {
            self.flight.clear();
            self.push_change_cipher_spec()?;
            self.push_finished(master)?;
            self.flight.rearm();
        }
        // Neither side times anything now: the last flight goes again only when the peer
        // repeats its own.
        self.timer = None;
        self.state = State::Connected;
        let _ = self.events.push_back(Event::Connected {
            resumed: self.resumed,
        });
        Ok(())
    }

    fn on_server_hello(&mut self, body: &[u8]) -> Result<(), Error> {
        let hello = ServerHello::parse(body)?;
        if hello.version != DTLS_1_2 {
            return Err(Error::Unsupported("server version other than DTLS 1.2"));
        }
        if hello.cipher_suite != TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 || hello.compression != 0 {
            return Err(Error::Unsupported("cipher suite or compression"));
        }
        self.server_random = hello.random;
        match hello.connection_id {
            Some(_) if !self.offer_cid => {
                return Err(Error::Unsupported("connection id the client did not offer"));
            }
            Some(theirs) => {
                self.out_cid = heapless::Vec::from_slice(theirs).unwrap_or_default();
            }
            None => self.out_cid.clear(),
        }
        self.peer_rpk = hello.server_certificate_type == Some(CERTIFICATE_TYPE_RAW_PUBLIC_KEY);
        self.own_rpk = hello.client_certificate_type == Some(CERTIFICATE_TYPE_RAW_PUBLIC_KEY);
        let resuming = self
            .resume
            .filter(|s| !hello.session_id.is_empty() && s.id() == hello.session_id);
        self.session_id = heapless::Vec::from_slice(hello.session_id).unwrap_or_default();
        if let Some(session) = resuming {
            self.resumed = true;
            self.master = Some(session.master);
            self.peer_key = session.peer_key;
            self.install_keys(session.master);
            self.state = State::ExpectFinished;
        } else {
            self.state = State::ExpectCertificate;
        }
        // The timer keeps running for our ClientHello until the server's flight is complete.
        Ok(())
    }

    fn begin_message(&mut self, msg_type: HandshakeType) -> Result<usize, Error> {
        let start = self.flight.used;
        if start + handshake::HEADER_LEN > FLIGHT_CAPACITY {
            return Err(Error::Internal("flight buffer full"));
        }
        self.flight.buf[start] = msg_type.into();
        self.flight.used += handshake::HEADER_LEN;
        Ok(start)
    }

    fn flight_writer(&mut self) -> Writer<'_> {
        Writer::new(&mut self.flight.buf[self.flight.used..])
    }

    fn end_message(&mut self, start: usize, body_len: usize, epoch: u16) -> Result<(), Error> {
        let msg_type = HandshakeType::from(self.flight.buf[start]);
        let seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        handshake::write_header(
            &mut self.flight.buf[start..],
            msg_type,
            body_len,
            seq,
            0,
            body_len,
        );
        self.flight.used += body_len;
        let len = handshake::HEADER_LEN + body_len;
        self.transcript.update(&self.flight.buf[start..start + len]);
        self.flight.push(FlightEntry {
            change_cipher_spec: false,
            epoch,
            start,
            len,
        })
    }

    /// Queues this side's Certificate message (epoch 0).
    fn push_certificate(&mut self) -> Result<(), Error> {
        self.push_message(HandshakeType::Certificate, 0, |c, out| {
            c.write_certificate(out)
        })
    }

    /// This side's ephemeral public point, for its key exchange message.
    fn own_point(&self) -> Result<[u8; POINT_LEN], Error> {
        self.ephemeral
            .as_ref()
            .map(Ephemeral::public_point)
            .ok_or(Error::Internal("no ephemeral key"))
    }

    /// Appends a handshake message whose body `write` produces.
    fn push_message(
        &mut self,
        msg_type: HandshakeType,
        epoch: u16,
        write: impl FnOnce(&mut Self, &mut [u8]) -> Result<usize, Error>,
    ) -> Result<(), Error> {
        let start = self.begin_message(msg_type)?;
        let mut scratch = [0u8; MAX_HANDSHAKE_MESSAGE];
        let n = write(self, &mut scratch).map_err(|e| match e {
            Error::InsufficientSize { .. } => Error::Internal("handshake message too large"),
            e => e,
        })?;
        let room = &mut self.flight_writer();
        room.put(&scratch[..n])
            .map_err(|_| Error::Internal("flight buffer full"))?;
        self.end_message(start, n, epoch)
    }

    fn push_change_cipher_spec(&mut self) -> Result<(), Error> {
        self.flight.push(FlightEntry {
            change_cipher_spec: true,
            epoch: 0,
            start: 0,
            len: 0,
        })
    }

    fn push_finished(&mut self, master: MasterSecret) -> Result<(), Error> {
        let verify = master.verify_data(self.finished_label(true), &self.transcript.current());
        self.push_message(HandshakeType::Finished, 1, |_, out| {
            out[..12].copy_from_slice(&verify);
            Ok(12)
        })
    }

    fn arm_timer(&mut self, now: Instant) {
        self.timeout = self.config.retransmit_initial;
        self.timer = Some(now + self.timeout);
        self.flight.rearm();
    }

    fn send_client_hello(&mut self, now: Instant) -> Result<(), Error> {
        self.flight.clear();
        self.push_message(HandshakeType::ClientHello, 0, |c, out| {
            let mut w = Writer::new(out);
            w.put(&DTLS_1_2)?;
            w.put(&c.client_random)?;
            match &c.resume {
                Some(s) => {
                    w.put(&[s.id().len() as u8])?;
                    w.put(s.id())?;
                }
                None => w.put(&[0])?,
            }
            w.put(&[c.cookie.len() as u8])?;
            w.put(&c.cookie)?;
            w.u16(2)?;
            w.u16(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)?;
            w.put(&[1, 0])?; // compression: null only
            let exts = w.reserve(2)?;
            w.u16(ext::SUPPORTED_GROUPS)?;
            w.put(&[0, 4, 0, 2])?;
            w.u16(SECP256R1)?;
            w.u16(ext::EC_POINT_FORMATS)?;
            w.put(&[0, 2, 1, 0])?;
            w.u16(ext::SIGNATURE_ALGORITHMS)?;
            w.put(&[0, 4, 0, 2])?;
            w.put(&ECDSA_SECP256R1_SHA256)?;
            w.u16(ext::RENEGOTIATION_INFO)?;
            w.put(&[0, 1, 0])?;
            if c.offer_cid {
                w.u16(ext::CONNECTION_ID)?;
                w.put(&[0, 1, 0])?;
            }
            if c.offer_rpk {
                for kind in [ext::CLIENT_CERTIFICATE_TYPE, ext::SERVER_CERTIFICATE_TYPE] {
                    w.u16(kind)?;
                    w.put(&[0, 2, 1, CERTIFICATE_TYPE_RAW_PUBLIC_KEY])?;
                }
            }
            w.patch_len(exts, 2);
            Ok(w.len())
        })?;
        self.arm_timer(now);
        Ok(())
    }

    fn write_certificate(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(out);
        if self.own_rpk {
            let spki = self.key.public_key().to_spki();
            w.u24(spki.len())?;
            w.put(&spki)?;
        } else if let Some(cert) = &self.certificate {
            w.u24(cert.len() + 3)?;
            w.u24(cert.len())?;
            w.put(cert)?;
        } else {
            w.u24(0)?;
        }
        Ok(w.len())
    }

    fn write_signature(&self, out: &mut [u8], digest: &[u8; 32]) -> Result<usize, Error> {
        let mut sig = [0u8; MAX_DER_SIGNATURE_LEN];
        let n = self.key.sign_digest(digest, &mut sig)?;
        let mut w = Writer::new(out);
        w.put(&ECDSA_SECP256R1_SHA256)?;
        w.u16(n as u16)?;
        w.put(&sig[..n])?;
        Ok(w.len())
    }

    fn send_client_finished_flight(&mut self, now: Instant) -> Result<(), Error> {
        let master = self.master.ok_or(Error::Internal("no master secret"))?;
        self.flight.clear();
        if self.client_auth {
            self.push_certificate()?;
        }
        let point = self.own_point()?;
        self.push_message(HandshakeType::ClientKeyExchange, 0, |_, out| {
            out[0] = POINT_LEN as u8;
            out[1..1 + POINT_LEN].copy_from_slice(&point);
            Ok(1 + POINT_LEN)
        })?;
        let presented = self.own_rpk || self.certificate.is_some();
        if self.client_auth && presented {
            let digest = self.transcript.current();
            self.push_message(HandshakeType::CertificateVerify, 0, |c, out| {
                c.write_signature(out, &digest)
            })?;
        }
        self.install_keys(master);
        self.push_change_cipher_spec()?;
        self.push_finished(master)?;
        self.ephemeral = None;
        self.state = State::ExpectFinished;
        self.arm_timer(now);
        Ok(())
    }

    fn start_server(&mut self, hello_message: &[u8], now: Instant) -> Result<(), Error> {
        let hello = ClientHello::parse(&hello_message[handshake::HEADER_LEN..])?;
        if hello.version != DTLS_1_2 {
            return Err(Error::Unsupported("client version other than DTLS 1.2"));
        }
        if !hello.offers_suite || !hello.offers_null_compression || !hello.offers_p256 {
            return Err(Error::Unsupported(
                "client does not offer ECDHE-ECDSA-AES128-CCM8 on P-256",
            ));
        }
        self.client_random = *hello.random;
        self.renegotiation_info = hello.renegotiation_info;
        match hello.connection_id {
            Some(theirs) => {
                self.out_cid = heapless::Vec::from_slice(theirs).unwrap_or_default();
            }
            // Only a client that offered the extension gets a connection id.
            None => self.in_cid.clear(),
        }
        self.peer_rpk = hello.client_rpk;
        self.own_rpk = hello.server_rpk;
        let server_type_offered = has_extension(hello.body, ext::SERVER_CERTIFICATE_TYPE);
        let client_type_offered = has_extension(hello.body, ext::CLIENT_CERTIFICATE_TYPE);
        if !self.own_rpk && self.certificate.is_none() {
            return Err(Error::Unsupported(
                "client wants an X.509 certificate and none is configured",
            ));
        }
        self.transcript.update(hello_message);
        self.flight.clear();
        self.push_message(HandshakeType::ServerHello, 0, |c, out| {
            let mut w = Writer::new(out);
            w.put(&DTLS_1_2)?;
            w.put(&c.server_random)?;
            w.put(&[c.session_id.len() as u8])?;
            w.put(&c.session_id)?;
            w.u16(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)?;
            w.put(&[0])?;
            let exts = w.reserve(2)?;
            if c.renegotiation_info {
                w.u16(ext::RENEGOTIATION_INFO)?;
                w.put(&[0, 1, 0])?;
            }
            if !c.in_cid.is_empty() {
                w.u16(ext::CONNECTION_ID)?;
                w.u16(c.in_cid.len() as u16 + 1)?;
                w.put(&[c.in_cid.len() as u8])?;
                w.put(&c.in_cid)?;
            }
            if server_type_offered {
                w.u16(ext::SERVER_CERTIFICATE_TYPE)?;
                let t = if c.own_rpk {
                    CERTIFICATE_TYPE_RAW_PUBLIC_KEY
                } else {
                    CERTIFICATE_TYPE_X509
                };
                w.put(&[0, 1, t])?;
            }
            if client_type_offered && c.client_auth && !c.resumed {
                w.u16(ext::CLIENT_CERTIFICATE_TYPE)?;
                let t = if c.peer_rpk {
                    CERTIFICATE_TYPE_RAW_PUBLIC_KEY
                } else {
                    CERTIFICATE_TYPE_X509
                };
                w.put(&[0, 1, t])?;
            }
            w.patch_len(exts, 2);
            Ok(w.len())
        })?;
        if self.resumed {
            let master = self.master.ok_or(Error::Internal("no master secret"))?;
            self.install_keys(master);
            self.push_change_cipher_spec()?;
            self.push_finished(master)?;
            self.state = State::ExpectFinished;
            self.arm_timer(now);
            return Ok(());
        }
        // With raw public keys Device OS's client expects no Certificate from the server (its
        // mbedTLS is told not to receive one); an RFC 7250 peer expects one.
        if !self.own_rpk || self.send_raw_public_key {
            self.push_certificate()?;
        }
        let point = self.own_point()?;
        let mut params = [0u8; 4 + POINT_LEN];
        params[0] = 3; // named_curve
        params[1..3].copy_from_slice(&SECP256R1.to_be_bytes());
        params[3] = POINT_LEN as u8;
        params[4..].copy_from_slice(&point);
        let digest = sha256(&[&self.client_random, &self.server_random, &params]);
        self.push_message(HandshakeType::ServerKeyExchange, 0, |c, out| {
            out[..params.len()].copy_from_slice(&params);
            let n = c.write_signature(&mut out[params.len()..], &digest)?;
            Ok(params.len() + n)
        })?;
        if self.client_auth {
            self.push_message(HandshakeType::CertificateRequest, 0, |_, out| {
                let body = [1, handshake::CERT_TYPE_ECDSA_SIGN, 0, 2, 4, 3, 0, 0];
                out[..body.len()].copy_from_slice(&body);
                Ok(body.len())
            })?;
            self.state = State::ExpectClientCertificate;
        } else {
            self.state = State::ExpectClientKeyExchange;
        }
        self.push_message(HandshakeType::ServerHelloDone, 0, |_, _| Ok(0))?;
        // The server's hello flight is answered by the client's; RFC 6347 lets it wait for a
        // retransmitted ClientHello instead of a timer, but a timer recovers sooner.
        self.arm_timer(now);
        Ok(())
    }
}

/// Whether a ClientHello body carries extension `kind`.
fn has_extension(body: &[u8], kind: u16) -> bool {
    let mut r = handshake::Reader::new(body);
    let skip = (|| -> Result<handshake::Reader<'_>, Error> {
        r.take(34)?;
        r.vec8()?;
        r.vec8()?;
        r.vec16()?;
        r.vec8()?;
        Ok(handshake::Reader::new(r.vec16()?))
    })();
    let Ok(mut exts) = skip else {
        return false;
    };
    while let (Ok(k), Ok(_)) = (exts.u16(), exts.vec16()) {
        if k == kind {
            return true;
        }
    }
    false
}
