//! The public vocabulary of the cloud side: configuration, handles, events and errors.

use alloc::vec::Vec;
use core::time::Duration;

use crate::crypto::{RsaError, RsaPrivate, RsaPublic};
use crate::session::SessionError;
use crate::wire::Code;
use crate::wire::hello::{ExtendedHello, HelloFlags};

pub use crate::DeviceId;
pub use crate::session::Scope;
pub use crate::variable::VariableValue;

/// Where the cloud finds a device's public key, by the id the device presented.
///
/// `presented` is the public key DER the device appended to its credentials (Photon and later;
/// the Core sends none). A cloud that trusts keys on first use may parse and return it; one that
/// keeps a key store ignores it. Returning `None` rejects the device with
/// [`SessionError::UnknownDevice`].
pub trait DeviceKeys {
    /// The key type handed to the handshake.
    type Key: RsaPublic;

    /// The public key of `device_id`, if the device is known.
    fn device_key(&mut self, device_id: &DeviceId, presented: Option<&[u8]>) -> Option<Self::Key>;
}

impl<K: RsaPublic + Clone> DeviceKeys for alloc::collections::BTreeMap<DeviceId, K> {
    type Key = K;

    fn device_key(&mut self, device_id: &DeviceId, _presented: Option<&[u8]>) -> Option<K> {
        self.get(device_id).cloned()
    }
}

/// The keys of a cloud session that runs no handshake
/// ([`CloudConnection::from_session`](super::CloudConnection::from_session)): it stands for the
/// server key, whose every RSA operation fails with [`RsaError::InvalidKey`], and for the device
/// key store, which knows no device. The cloud side's counterpart of the device's
/// [`NoHandshake`](crate::session::device::NoHandshake).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoKeys;

impl RsaPrivate for NoKeys {
    fn modulus_len(&self) -> usize {
        0
    }

    fn decrypt_pkcs1v15<R: rand_core::CryptoRng + ?Sized>(
        &self,
        _: &mut R,
        _: &[u8],
        _: &mut [u8],
    ) -> Result<usize, RsaError> {
        Err(RsaError::InvalidKey)
    }

    fn sign_pkcs1v15_unprefixed<R: rand_core::CryptoRng + ?Sized>(
        &self,
        _: &mut R,
        _: &[u8],
        _: &mut [u8],
    ) -> Result<usize, RsaError> {
        Err(RsaError::InvalidKey)
    }
}

impl RsaPublic for NoKeys {
    fn modulus_len(&self) -> usize {
        0
    }

    fn encrypt_pkcs1v15<R: rand_core::CryptoRng + ?Sized>(
        &self,
        _: &mut R,
        _: &[u8],
        _: &mut [u8],
    ) -> Result<usize, RsaError> {
        Err(RsaError::InvalidKey)
    }

    fn verify_pkcs1v15_unprefixed(&self, _: &[u8], _: &[u8]) -> Result<(), RsaError> {
        Err(RsaError::InvalidKey)
    }
}

impl DeviceKeys for NoKeys {
    type Key = NoKeys;

    fn device_key(&mut self, _: &DeviceId, _: Option<&[u8]>) -> Option<NoKeys> {
        None
    }
}

/// Timers and limits of a cloud session. [`CloudConfig::default`] is the original server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudConfig {
    /// Wait for the device's 256-byte credentials, then again for its Hello (SP `Handshake.js`:
    /// 30 s each).
    pub handshake_step_timeout: Duration,
    /// The session ends with [`SessionError::PingTimeout`] when nothing arrives for this long
    /// (BSP `SOCKET_TIMEOUT`, 31 s: the device pings every 15 s).
    pub idle_timeout: Duration,
    /// Send a CoAP ping after this much silence from the device. The original server sends none
    /// (it relies on TCP keep-alive and the device's pings), so the default is `None`.
    pub ping_interval: Option<Duration>,
    /// How long a function call, variable read, Describe, signal or key change may wait for its
    /// answer before it fails with [`RequestFailure::Timeout`] (SP: 30 s).
    pub request_timeout: Duration,
    /// The largest frame ciphertext accepted from the device (the Core sends at most 640 bytes,
    /// Device OS over TCP about 1152).
    pub max_frame_len: usize,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            handshake_step_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(31),
            ping_interval: None,
            request_timeout: Duration::from_secs(30),
            max_frame_len: 1184,
        }
    }
}

/// The handle of one request the application started (call, read, Describe, signal, key change,
/// OTA). Unique within one connection; a cloud with many devices pairs it with its own connection
/// id. Opaque: compare it with the id an event carries.
///
/// The device side answers with different handles on purpose
/// ([`CallId`](crate::session::device::CallId), [`ReadId`](crate::session::device::ReadId)): they
/// stand for the cloud's CoAP message the answer must echo, not for a request of the device's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[must_use]
pub struct RequestId(pub(super) u32);

/// Why a request could not be started. The session is unaffected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The handshake has not finished (no Hello yet).
    #[error("the session is not established")]
    NotEstablished,
    /// The session has ended.
    #[error("the session has ended: {0}")]
    Ended(SessionError),
    /// Every one-byte token is taken by a request in flight.
    #[error("too many requests in flight")]
    TooManyInFlight,
    /// An OTA transfer is already running on this connection.
    #[error("an OTA transfer is already running")]
    OtaInProgress,
    /// The image is empty, or has more chunks than a 16-bit chunk index can count.
    #[error("invalid firmware image: {0}")]
    InvalidImage(&'static str),
    /// The message cannot be encoded (a name or argument too long for an option).
    #[error("cannot encode the request: {0}")]
    Encode(crate::wire::Error),
}

/// Why one request failed. The session goes on unless it was the session ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// No answer within [`CloudConfig::request_timeout`].
    #[error("no answer in time")]
    Timeout,
    /// The device answered with an error code (4.xx, 5.xx) or a reset.
    #[error("the device refused the request with code {0:?}")]
    Rejected(Code),
    /// The device answered with a reset (RST).
    #[error("the device reset the request")]
    Reset,
    /// The answer did not decode as the expected type.
    #[error("malformed answer: {0}")]
    Malformed(crate::wire::Error),
    /// The session ended before the answer came.
    #[error("the session ended: {0}")]
    SessionEnded(SessionError),
}

/// What the device said about itself in its Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The id from the handshake.
    pub device_id: DeviceId,
    /// Product id (`0xffff` on a Core without one).
    pub product_id: Option<u16>,
    /// Product firmware version.
    pub firmware_version: Option<u16>,
    /// Hello flags (bit 0: the last OTA update succeeded).
    pub flags: HelloFlags,
    /// The Device OS fields (platform, system version, limits), when sent.
    pub extended: Option<ExtendedHello>,
}

impl DeviceInfo {
    /// Whether the device reports that the last OTA update succeeded.
    #[must_use]
    pub fn ota_succeeded(&self) -> bool {
        self.flags.contains(HelloFlags::OTA_UPGRADE_SUCCESSFUL)
    }
}

/// An event the device published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The name (segments joined with `/`).
    pub name: Vec<u8>,
    /// The data; `None` when the device sent no payload.
    pub data: Option<Vec<u8>>,
    /// Time to live in seconds.
    pub ttl: u32,
    /// `E` (private) rather than `e` (public).
    pub private: bool,
}

/// An event the device published, borrowed from the session: what
/// [`CloudConnection::poll_published`](super::CloudConnection::poll_published) hands out once
/// [`CloudConnection::set_published_views`](super::CloudConnection::set_published_views) is on,
/// the same fields as [`PublishedEvent`] without a copy of the name and data on the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedView<'a> {
    /// The name (segments joined with `/`).
    pub name: &'a [u8],
    /// The data; `None` when the device sent no payload.
    pub data: Option<&'a [u8]>,
    /// Time to live in seconds.
    pub ttl: u32,
    /// `E` (private) rather than `e` (public).
    pub private: bool,
}

impl PublishedView<'_> {
    /// The owned event.
    #[must_use]
    pub fn to_event(&self) -> PublishedEvent {
        PublishedEvent {
            name: self.name.to_vec(),
            data: self.data.map(<[u8]>::to_vec),
            ttl: self.ttl,
            private: self.private,
        }
    }
}

/// A subscription the device made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The name prefix.
    pub filter: Vec<u8>,
    /// The scope.
    pub scope: Scope,
}

/// An event for [`CloudConnection::deliver_event`](super::CloudConnection::deliver_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingEvent<'a> {
    /// The name (split into one Uri-Path per `/` segment, as the original server sends it).
    pub name: &'a [u8],
    /// The data.
    pub data: Option<&'a [u8]>,
    /// Time to live in seconds.
    pub ttl: u32,
    /// Private (`E`) rather than public (`e`).
    pub private: bool,
}

/// How to send a firmware image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtaOptions {
    /// Offer fast OTA (all chunks back to back); used when the device accepts it.
    pub fast: bool,
    /// The chunk size (1 to 4096); `None` takes the size the device announced in its Hello, else
    /// 256.
    pub chunk_size: Option<u16>,
    /// Zero-pad the last chunk to the chunk size, its CRC over the padded bytes (the original
    /// server's behaviour, which the Core expects).
    pub pad_last_chunk: bool,
    /// The destination byte of the UpdateBegin parameters (0 firmware).
    pub destination: u8,
    /// The destination address of the UpdateBegin parameters.
    pub address: u32,
    /// More missed chunks than this fail the transfer (SP `MAX_MISSED_CHUNKS` = 10).
    pub max_missed_chunks: u32,
    /// Wait for UpdateReady after each of the first three UpdateBegin tries (6 s).
    pub ready_timeout: Duration,
    /// Wait for UpdateReady after the fourth, parameter-less try (90 s).
    pub last_ready_timeout: Duration,
    /// How long to wait after UpdateDone for its answer or a ChunkMissed (60 s, re-armed by each
    /// ChunkMissed).
    pub done_timeout: Duration,
    /// The whole transfer must end within this (SP `CompleteTransfer`, 600 s).
    pub watchdog: Duration,
}

impl Default for OtaOptions {
    fn default() -> Self {
        OtaOptions {
            fast: false,
            chunk_size: None,
            pad_last_chunk: true,
            destination: 0,
            address: 0,
            max_missed_chunks: 10,
            ready_timeout: Duration::from_secs(6),
            last_ready_timeout: Duration::from_secs(90),
            done_timeout: Duration::from_secs(60),
            watchdog: Duration::from_secs(600),
        }
    }
}

impl OtaOptions {
    /// The defaults with fast OTA offered.
    #[must_use]
    pub fn fast() -> Self {
        OtaOptions {
            fast: true,
            ..OtaOptions::default()
        }
    }

    /// These options with a fixed chunk size.
    #[must_use]
    pub fn with_chunk_size(self, chunk_size: u16) -> Self {
        OtaOptions {
            chunk_size: Some(chunk_size),
            ..self
        }
    }
}

/// Why an OTA transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtaError {
    /// The device never answered UpdateBegin with UpdateReady (four tries).
    #[error("the device did not become ready for the update")]
    ReadyTimeout,
    /// The device refused UpdateBegin or UpdateDone, or aborted.
    #[error("the device refused the update with code {0:?}")]
    Rejected(Code),
    /// The device reported more missed (or bad) chunks than allowed.
    #[error("too many missed chunks ({count})")]
    TooManyMissedChunks {
        /// How many were reported.
        count: u32,
    },
    /// The device asked for a chunk the image does not have.
    #[error("the device asked for chunk {index} of {chunks}")]
    BadChunkIndex {
        /// The index asked for.
        index: u16,
        /// The number of chunks.
        chunks: u16,
    },
    /// No answer to UpdateDone (nor a ChunkMissed) in time.
    #[error("no answer to UpdateDone")]
    DoneTimeout,
    /// The whole-transfer watchdog expired.
    #[error("the transfer took too long")]
    Watchdog,
    /// The session ended during the transfer.
    #[error("the session ended: {0}")]
    SessionEnded(SessionError),
}

/// How a successful transfer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtaReport {
    /// Image bytes.
    pub image_len: usize,
    /// The chunk size used.
    pub chunk_size: u16,
    /// Number of chunks.
    pub chunks: u16,
    /// Chunks sent again (missed or bad).
    pub chunks_resent: u32,
    /// Whether fast OTA was used.
    pub fast: bool,
}

/// What happened to an OTA transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum OtaEvent {
    /// The device accepted UpdateBegin.
    Ready {
        /// Whether the transfer runs as fast OTA.
        fast: bool,
        /// The chunk size.
        chunk_size: u16,
    },
    /// Progress: after each chunk handed to the transport.
    Progress {
        /// Chunk bytes sent so far (resent chunks included).
        bytes_sent: u64,
        /// The image length.
        total: usize,
        /// Chunks sent again so far.
        chunks_resent: u32,
    },
    /// The transfer ended.
    Finished(Result<OtaReport, OtaError>),
}

/// What a [`CloudConnection`](super::CloudConnection) reports to the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[must_use]
pub enum CloudEvent {
    /// The handshake and the Hello exchange finished.
    Connected(DeviceInfo),
    /// Answer to [`describe`](super::CloudConnection::describe): the description JSON.
    Described {
        /// The request.
        request: RequestId,
        /// The JSON bytes.
        result: Result<Vec<u8>, RequestFailure>,
    },
    /// Answer to [`call_function`](super::CloudConnection::call_function).
    FunctionReturned {
        /// The request.
        request: RequestId,
        /// The function's return value.
        result: Result<i32, RequestFailure>,
    },
    /// Answer to [`read_variable`](super::CloudConnection::read_variable).
    VariableRead {
        /// The request.
        request: RequestId,
        /// The value.
        result: Result<VariableValue, RequestFailure>,
    },
    /// Answer to [`signal`](super::CloudConnection::signal) or
    /// [`change_key`](super::CloudConnection::change_key).
    Acknowledged {
        /// The request.
        request: RequestId,
        /// Success or why not.
        result: Result<(), RequestFailure>,
    },
    /// The device published an event (already acknowledged with ACK 0.00).
    Published(PublishedEvent),
    /// The device subscribed to events (already acknowledged).
    Subscribed(Subscription),
    /// The device asked for the time and was answered; carries the Unix time sent.
    TimeSent(u32),
    /// OTA progress and result.
    Ota {
        /// The request returned by [`start_ota`](super::CloudConnection::start_ota).
        request: RequestId,
        /// What happened.
        event: OtaEvent,
    },
}
