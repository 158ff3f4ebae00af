//! Sans-IO sessions: the device and the cloud side of an established connection.
//!
//! A session owns no socket, clock or RNG. The caller feeds it the bytes it read
//! ([`Connection::handle_input`]), tells it the time at every call, drains the bytes to write
//! ([`Connection::poll_transmit`]), sleeps until [`Connection::poll_timeout`] and then calls
//! [`Connection::handle_timeout`], and takes what happened from `poll_event`. The drivers in
//! this module's children do exactly that over a socket; a port to a microcontroller can do it
//! by hand from its main loop.
//!
//! Both sides share the [`Connection`] trait, the [`Instant`] type and the [`SessionError`] a
//! session ends with. Once a session has ended it stays ended: every later call returns the same
//! error.
//!
//! # The convention every sans-IO machine here follows
//!
//! The device and cloud sessions, the DTLS connection (`dtls`, feature `dtls`) and the drivers
//! speak one vocabulary, so that code written against one reads the same against another:
//!
//! - **Inputs are `handle_*`, outputs are `poll_*`.** Bytes and events go in through
//!   [`Connection::handle_input`], [`Connection::handle_close`], [`Connection::handle_timeout`]
//!   (`dtls::Connection::handle_datagram`, `handle_timeout`); what the machine wants done comes
//!   out of [`Connection::poll_transmit`], [`Connection::poll_timeout`] and
//!   [`Connection::poll_event`] (the same three names on `dtls::Connection`). Application
//!   requests are verbs on the machine (`publish`, `call_function`, `send`) that queue output.
//! - **Time is passed in, first.** A constructor or method that needs the time takes
//!   `now: Instant` as its first argument after `self`:
//!   `DeviceConnection::new(now, config, handshake, sink)`,
//!   `DeviceConnection::from_session(now, secret, config, sink)`,
//!   `CloudConnection::new(now, server_key, keys, rng, config)`,
//!   `CloudConnection::from_session(now, server_key, keys, rng, config, secret, device_id)`,
//!   `dtls::Connection::client(now, config, rng)`, `dtls::Server::accept(now, peer, datagram, rng, out)`,
//!   `publish(now, ...)`, `call_function(now, ...)`. A method that would ignore the time does not
//!   take it: `close()` on all three machines ends at once and arms nothing, and
//!   `CloudConnection::deliver_event(event)` starts no timer.
//! - **The caller sizes buffers.** Output goes into a slice the caller gives; one that is too short
//!   is an `InsufficientSize { required }` error of the layer
//!   ([`SessionError::InsufficientSize`], [`driver::DriverError::InsufficientSize`],
//!   [`wire::Error::InsufficientSize`],
//!   `dtls::Error::InsufficientSize`), never the error a hostile peer causes: a session does not
//!   end on it, and the same call with `required` bytes goes on where it stopped.
//!   [`Connection::max_transmit_len`] is a size that always suffices. Heap conveniences
//!   (`Driver::with_vec`, `to_vec`) sit on top of the slice API.
//! - **Outputs are `#[must_use]`.** Events ([`device::DeviceEvent`], `cloud::CloudEvent`), the
//!   handles that answer them ([`device::CallId`], [`device::ReadId`], `cloud::RequestId`), the
//!   `poll_*` results and the parsed messages of [`wire`] warn when dropped.
//! - **One type per idea.** A device id is a [`DeviceId`] everywhere, a
//!   variable's type a [`VarType`](crate::VarType) and its value a `VariableValue` (the borrowed
//!   form on the wire: [`wire::message::Value`]); whose events a
//!   subscription asks for is a [`Scope`]. The cloud's `RequestId` and the device's
//!   [`device::CallId`] / [`device::ReadId`] differ on purpose: the first counts the cloud
//!   application's own requests, the others stand for the cloud's CoAP message a device answer
//!   must echo.
//!
//! A too-short buffer, then the right one: the frame waits, and the session goes on.
//!
//! ```
//! use spark_protocol::crypto::SessionKey;
//! use spark_protocol::session::device::{DeviceConfig, DeviceConnection, NoFirmware};
//! use spark_protocol::session::{Connection, Instant, SessionError};
//!
//! let secret = SessionKey::from_bytes([5; 40]);
//! let mut device =
//!     DeviceConnection::from_session(Instant::ZERO, &secret, DeviceConfig::new([1; 12]), NoFirmware);
//! // The device's Hello is queued; four bytes cannot hold it.
//! let Err(SessionError::InsufficientSize { required }) = device.poll_transmit(Instant::ZERO, &mut [0; 4])
//! else {
//!     panic!("the frame is longer than four bytes")
//! };
//! assert_eq!(device.error(), None);
//! let mut buf = vec![0; required];
//! assert_eq!(device.poll_transmit(Instant::ZERO, &mut buf), Ok(Some(required)));
//! assert_eq!(device.poll_transmit(Instant::ZERO, &mut buf), Ok(None));
//! ```

#[cfg(feature = "alloc")]
pub mod cloud;
#[cfg(feature = "dtls")]
pub mod datagram;
pub mod device;
pub mod driver;
#[cfg(feature = "alloc")]
pub mod pair;
mod time;

pub use time::Instant;

use crate::DeviceId;
use crate::crypto::{FrameError, HandshakeError, KeyError};
use crate::wire;

/// Whose events a subscription asks for: what the device's
/// [`subscribe`](device::DeviceConnection::subscribe) takes and what the cloud's
/// [`Subscription`](cloud::Subscription) reports. On the wire it is the Subscribe message's
/// [`SubscribeScope`](crate::wire::message::SubscribeScope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Every public event whose name starts with the filter (the firehose; the filter must not
    /// be empty).
    All,
    /// Events of the owner's devices only.
    MyDevices,
    /// Events of one device.
    Device(DeviceId),
}

/// Why a session ended. A session that has ended keeps returning the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A frame from the peer did not decrypt (bad padding, a length that is not a multiple of
    /// 16): the wrong session key, a lost byte, or tampering.
    #[error("a frame from the peer did not decrypt: {0}")]
    Decryption(FrameError),
    /// The handshake failed: the credentials or the server's signature did not verify, or a
    /// handshake message had the wrong length.
    #[error("handshake failed: {0}")]
    Authentication(HandshakeError),
    /// The cloud does not know the device id the device presented.
    #[error("unknown device")]
    UnknownDevice,
    /// A key given to the session, or the public key a device sent, is not a usable RSA key.
    #[error("unusable key: {0}")]
    Key(KeyError),
    /// A decrypted message is not a valid message of the protocol.
    #[error("malformed message: {0}")]
    Malformed(wire::Error),
    /// A message the peer must not send in this state (a second Hello, a reply to nothing, a
    /// request before the handshake ended).
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// The peer's message id broke the rule that each message it originates carries the previous
    /// id plus one.
    #[error("bad message counter: expected {expected}, got {got}")]
    BadCounter {
        /// The id the rule required.
        expected: u16,
        /// The id received.
        got: u16,
    },
    /// A frame or message is larger than this side (or the peer it stands for) accepts.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// The size announced or received.
        len: usize,
        /// The largest size accepted.
        max: usize,
    },
    /// The peer did not finish the handshake in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing came from the peer within the keep-alive window after a ping.
    #[error("ping timed out")]
    PingTimeout,
    /// The peer did not answer a request that must be answered within its window.
    #[error("the peer did not answer in time")]
    Timeout,
    /// The transport reported end of stream.
    #[error("the peer closed the connection")]
    TransportClosed,
    /// The application closed the session.
    #[error("closed by the application")]
    Closed,
    /// The caller's buffer is shorter than the next frame ([`Connection::poll_transmit`]). This
    /// one is not an end: the session keeps the frame and goes on, and the same call with a
    /// buffer of `required` bytes (or [`Connection::max_transmit_len`]) takes it. It is never the
    /// peer's doing, unlike [`SessionError::Oversized`].
    #[error("the buffer is too small: the next frame needs {required} bytes")]
    InsufficientSize {
        /// The buffer length the next frame needs.
        required: usize,
    },
}

/// The common shape of both sides, so that one driver, one in-memory pair and one fuzz harness
/// serve the device and the cloud.
///
/// Every method takes the current time where time matters; a session never reads a clock.
pub trait Connection {
    /// What the session reports to the application (`DeviceEvent` or `CloudEvent`).
    type Event;

    /// Feeds bytes read from the transport, in any chunking (a byte at a time works). All of
    /// `input` is consumed. An error ends the session; the same error is returned from then on.
    fn handle_input(&mut self, now: Instant, input: &[u8]) -> Result<(), SessionError>;

    /// Tells the session the transport reached end of stream. The session ends with
    /// [`SessionError::TransportClosed`] unless it had already ended.
    fn handle_close(&mut self, now: Instant);

    /// Runs the timers that are due at `now` (retransmissions, keep-alive, OTA watchdogs).
    fn handle_timeout(&mut self, now: Instant);

    /// Writes the next bytes to send into `buf` and returns how many, or `Ok(None)` when there is
    /// nothing to send. Bytes are whole frames; a driver writes them all before polling again.
    ///
    /// When `buf` is shorter than the next frame, returns
    /// `Err(SessionError::InsufficientSize { required })` and keeps the frame: the session does
    /// not end, and the call can be repeated with a buffer of `required` bytes (at most
    /// [`Connection::max_transmit_len`]).
    #[must_use = "the bytes written to `buf` must be sent"]
    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError>;

    /// The largest number of bytes [`Connection::poll_transmit`] may ask for in one call.
    #[must_use]
    fn max_transmit_len(&self) -> usize;

    /// When [`Connection::handle_timeout`] must next be called, if any timer runs.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next event for the application, if any.
    #[must_use]
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// Why the session ended, once it has.
    #[must_use]
    fn error(&self) -> Option<SessionError>;

    /// Whether the session is in the middle of something a host should not park it in (a
    /// firmware update); a host that keeps idle sessions in a smaller form (the UDP
    /// `DatagramSession::park`) asks this first. `false` unless a session says otherwise.
    fn is_busy(&self) -> bool {
        false
    }
}
