//! DTLS 1.2 for the UDP protocol, in the one profile Particle devices use:
//! TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (0xC0AE) on P-256, sans-IO, both sides.
//!
//! Like the rest of the crate this module does no IO, reads no clock and draws no randomness
//! of its own: datagrams and the current time come in through [`Connection::handle_datagram`]
//! and [`Connection::handle_timeout`], datagrams and deadlines go out through
//! [`Connection::poll_transmit`] and [`Connection::poll_timeout`], and the randomness a
//! handshake needs (its random, its ephemeral ECDHE key, a server's session id and cookie
//! secret) is drawn from a `rand_core` RNG when a connection is created. The client never
//! allocates: every buffer is a fixed array (see the `*_CAPACITY` constants), so it builds for
//! `thumbv7m-none-eabi` without `alloc`; the server side does not allocate either.
//!
//! What the profile is (Device OS facts, restated; `spark-protocol/DTLS.md` has the detail):
//!
//! - DTLS 1.2 only, one cipher suite, one curve (secp256r1), ECDSA with SHA-256.
//! - A Particle device and its cloud authenticate both ways with **raw public keys** (RFC 7250
//!   `client_certificate_type`/`server_certificate_type` = RawPublicKey): the device holds the
//!   server's public key (so the cloud sends no Certificate of its own, see
//!   [`ServerConfig::send_raw_public_key`]) and the server learns the device's key from its
//!   Certificate message and checks it against the device id the CoAP Hello names. [`ClientConfig::raw_public_keys`]
//!   offers that; without it, X.509 certificates are exchanged (what OpenSSL 3.0 can do) and
//!   only their subject key is used: keys are pinned, issuers and validity are not checked.
//! - Records are AES-128-CCM with an 8-byte tag; the nonce is the 4-byte implicit salt from the
//!   key block and the record's epoch ‖ sequence number, which the record carries explicitly.
//! - Resumption is by session id (an abbreviated handshake), or, as Device OS does across sleep,
//!   with no handshake at all from a [`SavedAssociation`].
//! - The device asks for a connection id (draft-ietf-tls-dtls-connection-id-05 at Particle's code
//!   point 254, records of content type 25) and the cloud gives an 8-byte one, so a device whose
//!   address changed keeps its association ([`record_connection_id`] routes by it).
//!
//! The server answers every first ClientHello with a HelloVerifyRequest whose cookie is an
//! HMAC of the client's address and hello under a secret drawn at start ([`Server::accept`]),
//! and spends no public-key work before the client returns it.

mod connection;
mod crypto;
pub mod handshake;
pub mod record;
pub mod reliable;

pub use connection::{Connection, ParkedConnection, Role};
pub use crypto::{
    KeyBlock, MasterSecret, PrivateKey, PublicKey, RECORD_OVERHEAD, RecordCipher, SEC1_LEN,
    SPKI_LEN, pem_to_der, prf,
};
pub use record::AlertDescription;

use core::time::Duration;

use crate::session::Instant;
use handshake::{ClientHello, Fragment, HandshakeType};
use record::{ContentType, HEADER_LEN, RecordHeader};

/// The UDP port of the cloud's DTLS service (`coaps`).
pub const PORT: u16 = 5684;
/// The largest handshake message (header included) a connection reassembles or sends.
pub const MAX_HANDSHAKE_MESSAGE: usize = handshake::MAX_MESSAGE;
/// Bytes of the buffer that keeps the last flight for retransmission.
pub const FLIGHT_CAPACITY: usize = 2048;
/// Bytes of received application records a connection queues for [`Connection::recv`]
/// (each takes two more for its length); records that do not fit are dropped like datagrams.
pub const RECEIVE_QUEUE_CAPACITY: usize = 2048;
/// Bytes of the connection id the server gives out (Device OS requires exactly 8).
pub const CONNECTION_ID_LEN: usize = 8;
/// The longest certificate a connection presents.
pub const MAX_CERTIFICATE_LEN: usize = 1024;
/// The largest application record [`Connection::send`] protects.
pub const MAX_PLAINTEXT: usize = 1400;

/// An own X.509 certificate in DER (only used where a peer cannot take a raw public key).
pub type Certificate = heapless::Vec<u8, MAX_CERTIFICATE_LEN>;

/// Why a DTLS connection failed, or why a call could not be served.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The caller's buffer is too small.
    #[error("buffer too small: {required} bytes needed")]
    InsufficientSize {
        /// Bytes needed.
        required: usize,
    },
    /// A handshake message did not parse.
    #[error("malformed handshake: {0}")]
    Malformed(&'static str),
    /// The peer wants something outside this profile.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A handshake message came out of order.
    #[error("unexpected handshake message")]
    UnexpectedMessage,
    /// A key did not parse or is not on P-256.
    #[error("bad key")]
    BadKey,
    /// An ECDSA signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// A record did not authenticate (only reported by the known-answer helpers; records on a
    /// connection that fail are dropped).
    #[error("record authentication failed")]
    BadRecordMac,
    /// The peer's Finished did not match the handshake.
    #[error("bad finished message")]
    BadFinished,
    /// The peer presented no key.
    #[error("peer sent no certificate")]
    NoCertificate,
    /// The peer's key is not the pinned one.
    #[error("peer key does not match the pinned key")]
    UnknownPeerKey,
    /// The peer sent a fatal alert.
    #[error("peer sent alert {0:?}")]
    AlertReceived(AlertDescription),
    /// No answer to a flight within the longest retransmission timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Application data before the handshake finished.
    #[error("not connected yet")]
    NotConnected,
    /// An application record larger than [`MAX_PLAINTEXT`].
    #[error("record too large")]
    TooLarge,
    /// The 48-bit record sequence ran out; a new handshake is needed.
    #[error("record sequence numbers exhausted")]
    SequenceExhausted,
    /// The connection was closed (close_notify sent or received).
    #[error("connection closed")]
    Closed,
    /// A fixed buffer of this implementation is too small for what the peer sent or asked.
    #[error("internal limit: {0}")]
    Internal(&'static str),
}

impl Error {
    /// The alert this error is reported to the peer with, if any.
    fn alert(self) -> Option<AlertDescription> {
        use AlertDescription as A;
        Some(match self {
            Error::Malformed(_) => A::DecodeError,
            Error::Unsupported(_) => A::HandshakeFailure,
            Error::UnexpectedMessage => A::UnexpectedMessage,
            Error::BadKey => A::IllegalParameter,
            Error::BadSignature | Error::BadFinished => A::DecryptError,
            Error::BadRecordMac => A::BadRecordMac,
            Error::NoCertificate | Error::UnknownPeerKey => A::BadCertificate,
            Error::Internal(_) | Error::SequenceExhausted => A::InternalError,
            _ => return None,
        })
    }
}

/// What a connection reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum Event {
    /// The handshake finished.
    Connected {
        /// Whether it was an abbreviated handshake on a saved session.
        resumed: bool,
    },
    /// Application records are waiting: call [`Connection::recv`] until it returns `None` (one
    /// event may stand for several records).
    ApplicationData,
    /// The peer sent close_notify.
    Closed,
}

/// Timers and sizes of the datagram transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportConfig {
    /// Largest datagram to send (UDP payload bytes); flights are fragmented to fit. A
    /// ClientHello is never fragmented (the server's listener wants it whole), so this must be
    /// at least about 200 bytes.
    pub pmtu: usize,
    /// First flight timeout; it doubles on every retransmission.
    pub retransmit_initial: Duration,
    /// Longest flight timeout; when it expires the handshake fails.
    pub retransmit_max: Duration,
}

impl Default for TransportConfig {
    /// Device OS's handshake timer (3 s doubling up to 24 s) and a 1024-byte PMTU, which fits
    /// every cellular and Wi-Fi path the devices use with room for IPv6 and tunnel headers.
    fn default() -> Self {
        TransportConfig {
            pmtu: 1024,
            retransmit_initial: Duration::from_secs(3),
            retransmit_max: Duration::from_secs(24),
        }
    }
}

/// A resumable session: its id, master secret, and the key the peer proved.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Session {
    id: [u8; 32],
    id_len: u8,
    master: MasterSecret,
    peer_key: Option<PublicKey>,
}

impl Session {
    /// A session from its parts (`None` for an id longer than 32 bytes).
    #[must_use]
    pub fn new(id: &[u8], master: MasterSecret, peer_key: Option<PublicKey>) -> Option<Self> {
        let mut s = Session {
            id: [0; 32],
            id_len: u8::try_from(id.len()).ok().filter(|&n| n <= 32)?,
            master,
            peer_key,
        };
        s.id[..id.len()].copy_from_slice(id);
        Some(s)
    }

    /// The session id.
    #[must_use]
    pub fn id(&self) -> &[u8] {
        &self.id[..usize::from(self.id_len)]
    }

    /// The peer's key as proven in the full handshake.
    #[must_use]
    pub fn peer_key(&self) -> Option<PublicKey> {
        self.peer_key
    }
}

/// An established association as [`Connection::save`] captured it, to continue without a
/// handshake; [`to_bytes`](Self::to_bytes) gives the form to keep in flash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SavedAssociation {
    role: Role,
    master: MasterSecret,
    client_random: [u8; 32],
    server_random: [u8; 32],
    session: Session,
    write_seq: u64,
    replay: record::ReplayWindow,
    /// Our connection id, then the peer's: a length byte and 32 bytes each.
    cids: [u8; 66],
}

impl SavedAssociation {
    /// Bytes of [`to_bytes`](Self::to_bytes).
    pub const LEN: usize = 1 + 48 + 32 + 32 + 1 + 32 + 1 + crypto::POINT_LEN + 8 + 17 + 66;

    fn cid(&self, which: usize) -> &[u8] {
        let at = which * 33;
        &self.cids[at + 1..at + 1 + usize::from(self.cids[at].min(32))]
    }

    /// The session inside (resumable with an abbreviated handshake if the peer forgot the rest).
    #[must_use]
    pub fn session(&self) -> Session {
        self.session
    }

    /// A fixed-size encoding: role, master secret, both randoms, session id, peer key, write
    /// sequence number, replay window and both connection ids. It holds the master secret: store it like a key.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = match self.role {
            Role::Client => 1,
            Role::Server => 2,
        };
        out[1..49].copy_from_slice(&self.master.0);
        out[49..81].copy_from_slice(&self.client_random);
        out[81..113].copy_from_slice(&self.server_random);
        let id = self.session.id();
        out[113] = id.len() as u8;
        out[114..114 + id.len()].copy_from_slice(id);
        if let Some(k) = self.session.peer_key() {
            out[146] = 1;
            out[147..212].copy_from_slice(&k.to_point());
        }
        out[212..220].copy_from_slice(&self.write_seq.to_be_bytes());
        out[220..237].copy_from_slice(&self.replay.to_bytes());
        out[237..303].copy_from_slice(&self.cids);
        out
    }

    /// Reads what [`to_bytes`](Self::to_bytes) wrote; `Error::Malformed` for anything else.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let b: &[u8; Self::LEN] = b
            .try_into()
            .map_err(|_| Error::Malformed("saved association length"))?;
        let role = match b[0] {
            1 => Role::Client,
            2 => Role::Server,
            _ => return Err(Error::Malformed("saved association role")),
        };
        let mut master = [0u8; 48];
        master.copy_from_slice(&b[1..49]);
        let mut client_random = [0u8; 32];
        client_random.copy_from_slice(&b[49..81]);
        let mut server_random = [0u8; 32];
        server_random.copy_from_slice(&b[81..113]);
        let id_len = usize::from(b[113]);
        let id = b
            .get(114..114 + id_len)
            .filter(|_| id_len <= 32)
            .ok_or(Error::Malformed("session id"))?;
        let peer_key = match b[146] {
            0 => None,
            1 => Some(PublicKey::from_point(&b[147..212])?),
            _ => return Err(Error::Malformed("peer key flag")),
        };
        let session =
            Session::new(id, MasterSecret(master), peer_key).ok_or(Error::Malformed("session"))?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[212..220]);
        let mut window = [0u8; 17];
        window.copy_from_slice(&b[220..237]);
        let mut cids = [0u8; 66];
        cids.copy_from_slice(&b[237..303]);
        if cids[0] > 32 || cids[33] > 32 {
            return Err(Error::Malformed("connection id length"));
        }
        Ok(SavedAssociation {
            role,
            master: MasterSecret(master),
            client_random,
            server_random,
            session,
            write_seq: u64::from_be_bytes(seq),
            replay: record::ReplayWindow::from_bytes(&window),
            cids,
        })
    }
}

/// The device side's settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The device's private key.
    pub key: PrivateKey,
    /// The cloud's public key, pinned: the handshake fails with any other.
    pub server_key: PublicKey,
    /// Offer raw public keys (RFC 7250) both ways, as Device OS does.
    pub raw_public_keys: bool,
    /// The device's certificate for a server that asks for X.509.
    pub certificate: Option<Certificate>,
    /// A session to resume with an abbreviated handshake.
    pub resume: Option<Session>,
    /// Offer the connection-id extension (asking for no id of our own, as Device OS does);
    /// a server that agrees gives us the id our protected records then carry.
    pub connection_id: bool,
    /// Timers and PMTU.
    pub transport: TransportConfig,
}

impl ClientConfig {
    /// A raw-public-key client of `server_key` with the default timers.
    #[must_use]
    pub fn new(key: PrivateKey, server_key: PublicKey) -> Self {
        ClientConfig {
            key,
            server_key,
            raw_public_keys: true,
            certificate: None,
            resume: None,
            connection_id: true,
            transport: TransportConfig::default(),
        }
    }
}

/// The cloud side's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The server's private key.
    pub key: PrivateKey,
    /// The server's certificate for clients that do not take a raw public key.
    pub certificate: Option<Certificate>,
    /// Ask every client for its key (Particle's cloud always does).
    pub require_client_auth: bool,
    /// When raw public keys are agreed, still send the server key in a Certificate message as
    /// RFC 7250 has it. Off by default: Device OS's client is built not to receive one (it
    /// holds the key) and fails on it. Our client takes either.
    pub send_raw_public_key: bool,
    /// Give clients that offer the connection-id extension an id of [`CONNECTION_ID_LEN`]
    /// random bytes to put in their protected records (Device OS refuses a session without one).
    pub connection_id: bool,
    /// Accept only this client key; `None` accepts any key that proves itself, to be checked
    /// by the caller with [`Connection::peer_public_key`].
    pub client_key: Option<PublicKey>,
    /// Timers and PMTU.
    pub transport: TransportConfig,
}

impl ServerConfig {
    /// A server that asks for client keys, with the default timers.
    #[must_use]
    pub fn new(key: PrivateKey) -> Self {
        ServerConfig {
            key,
            certificate: None,
            require_client_auth: true,
            send_raw_public_key: false,
            connection_id: true,
            client_key: None,
            transport: TransportConfig::default(),
        }
    }
}

/// What [`Server::accept`] made of a datagram from an address with no connection yet.
#[must_use]
#[derive(Debug)]
// The connection is returned by value so the server needs no heap; the caller moves it
// straight into its own table.
#[allow(clippy::large_enum_variant)]
pub enum Accept {
    /// Not a ClientHello this server answers; drop it.
    Ignore,
    /// A HelloVerifyRequest of this many bytes is in the output buffer; send it back.
    HelloVerifyRequest(usize),
    /// The cookie checked out: a new connection for this address.
    Connection(Connection),
}

/// The connection id of a record from a device that uses one (content type 25, or 253 after its
/// address changed, with the second value `true`), given the length of the ids this server hands
/// out: what the caller routes by when a known id arrives from a new address.
#[must_use]
pub fn record_connection_id(datagram: &[u8], cid_len: usize) -> Option<(&[u8], bool)> {
    let moved = match *datagram.first()? {
        record::CONTENT_TYPE_CID => false,
        record::CONTENT_TYPE_CID_MOVED => true,
        _ => return None,
    };
    RecordHeader::parse_with_cid(datagram, cid_len).map(|(_, cid, _)| (cid, moved))
}

/// Whether `datagram` starts with an unprotected ClientHello: from an address that already has a
/// connection this is a restarted client, and the datagram should also go to [`Server::accept`],
/// whose new connection (once the cookie checks out) replaces the old one (RFC 6347 section 4.2.8).
#[must_use]
pub fn is_client_hello(datagram: &[u8]) -> bool {
    RecordHeader::parse(datagram).is_some_and(|(h, body)| {
        h.content_type == ContentType::Handshake
            && h.epoch == 0
            && body.first() == Some(&u8::from(HandshakeType::ClientHello))
    })
}

/// The cloud's listener: stateless cookies, the session cache, and new server connections.
///
/// The caller keeps one [`Connection`] per peer address and hands datagrams from unknown
/// addresses, and ClientHellos from known ones ([`is_client_hello`]), to [`accept`](Self::accept).
pub struct Server<const SESSIONS: usize = 16> {
    config: ServerConfig,
    cookie_secret: [u8; 32],
    sessions: [Option<Session>; SESSIONS],
    next_slot: usize,
}

impl<const SESSIONS: usize> core::fmt::Debug for Server<SESSIONS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<const SESSIONS: usize> Server<SESSIONS> {
    /// A server with a fresh cookie secret from `rng`.
    pub fn new<R: rand_core::CryptoRng + ?Sized>(config: ServerConfig, rng: &mut R) -> Self {
        let mut cookie_secret = [0u8; 32];
        rng.fill_bytes(&mut cookie_secret);
        Server {
            config,
            cookie_secret,
            sessions: [None; SESSIONS],
            next_slot: 0,
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Keeps `session` for resumption (the oldest entry makes room).
    pub fn remember(&mut self, session: Session) {
        if SESSIONS == 0 {
            return;
        }
        if let Some(slot) = self
            .sessions
            .iter_mut()
            .find(|s| s.is_some_and(|s| s.id() == session.id()))
        {
            *slot = Some(session);
            return;
        }
        self.sessions[self.next_slot % SESSIONS] = Some(session);
        self.next_slot = (self.next_slot + 1) % SESSIONS;
    }

    /// Forgets a session (after its peer misbehaved, or on key rotation).
    pub fn forget(&mut self, id: &[u8]) {
        for slot in &mut self.sessions {
            if slot.is_some_and(|s| s.id() == id) {
                *slot = None;
            }
        }
    }

    fn cookie(&self, peer: &[u8], hello: &ClientHello<'_>) -> [u8; 32] {
        // Everything the client must repeat, except the cookie field itself.
        let before_cookie = 2 + 32 + 1 + hello.session_id.len();
        let after_cookie = before_cookie + 1 + hello.cookie.len();
        crypto::hmac_sha256(
            &self.cookie_secret,
            &[
                &(peer.len() as u32).to_be_bytes(),
                peer,
                &hello.body[..before_cookie],
                hello.body.get(after_cookie..).unwrap_or_default(),
            ],
        )
    }

    /// Handles a datagram from `peer` (its address in any stable byte form) that belongs to no
    /// connection. A ClientHello without a valid cookie gets a HelloVerifyRequest written to
    /// `out` and no state is kept; one with a valid cookie starts a [`Connection`], resuming
    /// a cached session when the client names one.
    pub fn accept<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        peer: &[u8],
        datagram: &[u8],
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<Accept, Error> {
        let Some((header, fragment)) = RecordHeader::parse(datagram) else {
            return Ok(Accept::Ignore);
        };
        if header.content_type != ContentType::Handshake || header.epoch != 0 {
            return Ok(Accept::Ignore);
        }
        let Ok((frag, _)) = Fragment::parse(fragment) else {
            return Ok(Accept::Ignore);
        };
        // A ClientHello must come whole in its first record.
        if frag.msg_type != HandshakeType::ClientHello
            || frag.offset != 0
            || frag.body.len() != frag.length
        {
            return Ok(Accept::Ignore);
        }
        let Ok(hello) = ClientHello::parse(frag.body) else {
            return Ok(Accept::Ignore);
        };
        let expected = self.cookie(peer, &hello);
        let valid = hello.cookie.len() == expected.len()
            && bool::from(subtle::ConstantTimeEq::ct_eq(hello.cookie, &expected[..]));
        if !valid {
            let body_len = 2 + 1 + expected.len();
            let total = HEADER_LEN + handshake::HEADER_LEN + body_len;
            let out = out
                .get_mut(..total)
                .ok_or(Error::InsufficientSize { required: total })?;
            RecordHeader {
                content_type: ContentType::Handshake,
                version: record::DTLS_1_0,
                epoch: 0,
                sequence: header.sequence,
                length: (handshake::HEADER_LEN + body_len) as u16,
            }
            .emit(
                (&mut out[..HEADER_LEN])
                    .try_into()
                    .map_err(|_| Error::Internal("header"))?,
            );
            let hs = &mut out[HEADER_LEN..];
            handshake::write_header(
                hs,
                HandshakeType::HelloVerifyRequest,
                body_len,
                frag.message_seq,
                0,
                body_len,
            );
            hs[12..14].copy_from_slice(&record::DTLS_1_0);
            hs[14] = expected.len() as u8;
            hs[15..15 + expected.len()].copy_from_slice(&expected);
            return Ok(Accept::HelloVerifyRequest(total));
        }
        let resume = self
            .sessions
            .iter()
            .flatten()
            .find(|s| !hello.session_id.is_empty() && s.id() == hello.session_id)
            .copied();
        let message = &fragment[..handshake::HEADER_LEN + frag.length];
        let conn = Connection::server(
            &self.config,
            resume,
            message,
            frag.message_seq,
            header.sequence,
            now,
            rng,
        );
        Ok(Accept::Connection(conn))
    }
}
