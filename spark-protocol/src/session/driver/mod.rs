//! Drivers: the loop that runs a [`Connection`] over a byte stream and a clock.
//!
//! A driver owns a connection, a transport and a clock, and does the sans-IO dance for the
//! caller: it writes every frame [`Connection::poll_transmit`] produces, reads what the peer
//! sent and feeds it to [`Connection::handle_input`], waits no longer than
//! [`Connection::poll_timeout`] and then calls [`Connection::handle_timeout`], reports the end of
//! the stream through [`Connection::handle_close`], and hands each event to the caller.
//!
//! Between two calls the application has the connection to itself through
//! [`Driver::connection_mut`] (call a function, publish an event, start an update); the next
//! [`Driver::drive`] or [`Driver::flush`] sends what that produced.
//!
//! Two drivers share these names and this shape, and both work on a buffer the caller gives:
//!
//! - [`Driver`] (this module) blocks on a [`Transport`]. It is no_std: an MCU runs the device
//!   side with it over its UART or Wi-Fi socket (`EmbeddedIo`, feature `embedded-io`), and the
//!   standard library's `TcpStream` is a transport too (feature `std`), with read timeouts for the
//!   session's timers.
//! - [`asynch::Driver`] awaits an [`asynch::Transport`] instead (no_std, no alloc):
//!   `asynch::EmbeddedIoAsync` (feature `embedded-io-async`) over `embedded_io_async` streams
//!   and an executor's timer, and `tokio::Tokio` (feature `tokio`) over tokio streams, for which
//!   `tokio::Driver` is the async driver with the tokio clock filled in.
//!
//! Neither spawns a task or thread, and neither sleeps except inside a call the caller made (a
//! blocking read with a timeout, or an awaited read raced against a tokio timer).
//!
//! A driver writes all it has before it reads again, so the transport must buffer what the
//! peer sends meanwhile (a TCP socket does; a tiny in-memory pipe between two drivers that both
//! write at once can wait forever).
//!
//! Errors are [`DriverError`]: the transport's own error, the buffer being too small for the
//! session's frames, or the [`SessionError`] the session ended with. Events the session queued
//! before it ended are delivered before its error.

use core::fmt;
use core::time::Duration;

use super::{Connection, Instant, SessionError};

pub mod asynch;
#[cfg(feature = "embedded-io")]
mod embedded;
mod state;
#[cfg(feature = "std")]
mod std_io;
#[cfg(feature = "tokio")]
pub mod tokio;

#[cfg(feature = "embedded-io")]
pub use embedded::EmbeddedIo;
#[cfg(feature = "std")]
pub use std_io::StdClock;

/// Where a driver reads the time: milliseconds from an origin of the clock's choosing.
///
/// Any `FnMut() -> Instant` is a clock, so a port passes its tick counter as a closure:
/// `|| Instant::from_millis(systick_ms())`.
pub trait Clock {
    /// The current time. It must never go backwards.
    fn now(&mut self) -> Instant;
}

impl<F: FnMut() -> Instant> Clock for F {
    fn now(&mut self) -> Instant {
        self()
    }
}

/// What one bounded wait for input gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// `n` bytes (at least one) are at the start of the buffer.
    Data(usize),
    /// The peer closed the stream.
    Eof,
    /// Nothing arrived within the timeout.
    TimedOut,
}

/// A byte stream the blocking [`Driver`] can run a session over.
///
/// Implemented for `EmbeddedIo` (feature `embedded-io`) and for the standard library's
/// `TcpStream` (and `UnixStream` on Unix) with the feature `std`.
pub trait Transport {
    /// The transport's error.
    type Error;

    /// Reads what is available into `buf` (which is never empty), waiting at most `timeout`
    /// (`None`: until something happens). Returning [`Received::TimedOut`] early is allowed: the
    /// driver checks its clock and waits again.
    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<Received, Self::Error>;

    /// Writes some of `buf` (which is never empty), returning how many bytes were taken; `0`
    /// means the stream is closed.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error>;

    /// Pushes buffered bytes to the peer.
    fn flush(&mut self) -> Result<(), Self::Error>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    type Error = T::Error;

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<Received, Self::Error> {
        T::read(self, buf, timeout)
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        T::write(self, buf)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        T::flush(self)
    }
}

/// Why a driver stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverError<E> {
    /// The transport failed. The session is left as it was: the caller may retry, or end it with
    /// [`Connection::handle_close`].
    Io(E),
    /// The driver's buffer is shorter than a frame the session wants to send. Nothing was lost:
    /// the frame stays queued in the session.
    InsufficientSize {
        /// The buffer length needed ([`Connection::max_transmit_len`] always suffices).
        required: usize,
    },
    /// The session ended; it keeps this reason.
    Session(SessionError),
}

impl<E: fmt::Display> fmt::Display for DriverError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Io(e) => write!(f, "transport error: {e}"),
            DriverError::InsufficientSize { required } => {
                write!(f, "driver buffer too small: a frame needs {required} bytes")
            }
            DriverError::Session(e) => write!(f, "session ended: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for DriverError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            DriverError::Session(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<SessionError> for DriverError<E> {
    fn from(e: SessionError) -> Self {
        DriverError::Session(e)
    }
}

state::driver_type! {
    /// The blocking driver: a [`Connection`], a [`Transport`], a [`Clock`] and one buffer `B` for
    /// frames in both directions (at least [`Connection::max_transmit_len`] bytes).
    ///
    /// A device on one thread and a cloud on another, over TCP on 127.0.0.1 (with feature `std` the
    /// standard library's `TcpStream` is a [`Transport`]); on a Core the transport is
    /// `EmbeddedIo(uart)` and the clock a closure over the tick counter, and the loop is the same:
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// use std::net::{TcpListener, TcpStream};
    /// use spark_protocol::crypto::{SessionKey, rng::HardwareRng};
    /// use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent, NoKeys};
    /// use spark_protocol::session::device::{DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware};
    /// use spark_protocol::session::driver::{Clock, Driver, DriverError, StdClock};
    /// use spark_protocol::session::SessionError;
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let device = std::thread::spawn(move || {
    ///     let mut clock = StdClock::new();
    ///     let secret = SessionKey::from_bytes([2; 40]);
    ///     let config = DeviceConfig::new([7; 12]);
    ///     let mut conn = DeviceConnection::from_session(clock.now(), &secret, config, NoFirmware);
    ///     conn.register_function(b"brew").unwrap();
    ///     let stream = TcpStream::connect(addr).unwrap();
    ///     // The device's one buffer, on its stack: its longest frame fits.
    ///     let mut driver = Driver::new(conn, stream, clock, [0u8; 1024]);
    ///     loop {
    ///         match driver.next_event() {
    ///             Ok(DeviceEvent::FunctionCall(call)) => {
    ///                 driver.connection_mut().function_return(call.call, 7).unwrap()
    ///             }
    ///             Ok(_) => {}
    ///             Err(end) => return end,
    ///         }
    ///     }
    /// });
    ///
    /// let (stream, _) = listener.accept()?;
    /// let mut clock = StdClock::new();
    /// let rng = HardwareRng(|dest: &mut [u8]| dest.fill(0x5a));
    /// let secret = SessionKey::from_bytes([2; 40]);
    /// let cloud = CloudConnection::from_session(
    ///     clock.now(), NoKeys, NoKeys, rng, CloudConfig::default(), &secret, [7; 12].into(),
    /// );
    /// let mut driver = Driver::with_vec(cloud, stream, clock);
    /// assert!(matches!(driver.next_event()?, CloudEvent::Connected(_)));
    /// let now = driver.now();
    /// let request = driver.connection_mut().call_function(now, b"brew", b"")?;
    /// loop {
    ///     if let CloudEvent::FunctionReturned { request: r, result } = driver.next_event()? {
    ///         assert_eq!((r, result), (request, Ok(7)));
    ///         break;
    ///     }
    /// }
    /// drop(driver); // the cloud hangs up: the device's driver sees the end of the stream
    /// let end = device.join().unwrap();
    /// assert!(matches!(end, DriverError::Session(SessionError::TransportClosed)));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    over Transport
}

impl<C: Connection, T: Transport, K: Clock, B: AsMut<[u8]>> Driver<C, T, K, B> {
    /// Writes every frame the session has queued (several to one write when they fit the
    /// buffer), then flushes the transport.
    ///
    /// A transport error leaves the unwritten bytes in the buffer for the next call; an ended
    /// session drops them.
    pub fn flush(&mut self) -> Result<(), DriverError<T::Error>> {
        let mut wrote = false;
        while let Some(unsent) = self.state.unsent()? {
            let n = self.io.write(unsent).map_err(DriverError::Io)?;
            if !self.state.sent(n) {
                return Ok(());
            }
            wrote = true;
        }
        if wrote {
            self.io.flush().map_err(DriverError::Io)?;
        }
        Ok(())
    }

    /// One round: sends what is queued, hands out a queued event, or runs a due timer, or waits
    /// for input no longer than the next timer and feeds it. Returns the event this round
    /// produced, if any.
    ///
    /// Once the session has ended and its events are all out, returns
    /// [`DriverError::Session`] with its reason, every time.
    pub fn drive(&mut self) -> Result<Option<C::Event>, DriverError<T::Error>> {
        self.flush()?;
        // The event goes straight to the caller; the round's work runs in `step`, whose frame holds no event.
        if let Some(event) = self.state.conn.poll_event() {
            return Ok(Some(event));
        }
        self.step()?;
        Ok(self.state.conn.poll_event())
    }

    /// One round that hands out no event: sends what is queued, then ends with the session's reason if it has
    /// ended, or runs a due timer, or waits for input no longer than the next timer and feeds it, and sends what
    /// that produced. The events it queued wait in the session for [`Connection::poll_event`] (through
    /// [`Driver::connection_mut`]); call it only once they are all taken, or it may wait for input while they
    /// wait.
    ///
    /// [`Driver::drive`] is this plus the event; a device short of RAM calls `step` from a loop that takes the
    /// events in a function of their own, so that no event (hundreds of bytes on a device) lies on the stack
    /// under the input handling and the handshake's RSA steps.
    #[inline(never)]
    pub fn step(&mut self) -> Result<(), DriverError<T::Error>> {
        self.flush()?;
        if let Some(wait) = self.state.before_read()? {
            let got = self
                .io
                .read(self.state.read_buf(), wait)
                .map_err(DriverError::Io)?;
            self.state.handle_read(got);
        }
        self.flush()
    }

    /// Drives the session until it produces an event, and returns it; or until it ends, and
    /// returns its reason as [`DriverError::Session`].
    pub fn next_event(&mut self) -> Result<C::Event, DriverError<T::Error>> {
        loop {
            if let Some(event) = self.drive()? {
                return Ok(event);
            }
        }
    }
}
