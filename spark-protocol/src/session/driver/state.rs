//! [`DriverState`]: the sans-IO half both drivers share (the session, the clock, the frame buffer
//! and what of it is still to be written). The blocking and the async driver add only the
//! transport calls, so the two cannot drift apart.

use core::time::Duration;

use super::{Clock, DriverError, Received};
use crate::session::{Connection, Instant, SessionError};

/// Everything a driver holds but its transport, and every decision it makes.
#[derive(Debug)]
pub(super) struct DriverState<C, K, B> {
    pub(super) conn: C,
    pub(super) clock: K,
    pub(super) buf: B,
    /// Sealed bytes in `buf` the transport has not taken yet (`start..end`), so that a write
    /// cancelled or failed halfway loses nothing.
    unsent: (usize, usize),
    /// How a heap buffer (`with_vec`) grows for a frame longer than itself; a caller's buffer
    /// does not.
    pub(super) grow: Option<fn(&mut B, usize)>,
}

impl<C: Connection, K: Clock, B: AsMut<[u8]>> DriverState<C, K, B> {
    pub(super) fn new(conn: C, clock: K, buf: B) -> Self {
        DriverState {
            conn,
            clock,
            buf,
            unsent: (0, 0),
            grow: None,
        }
    }

    /// The bytes to write next: the rest of the last batch, or a new batch of the frames the
    /// session has queued (as many as fit the buffer); `None` when nothing is queued.
    pub(super) fn unsent<E>(&mut self) -> Result<Option<&[u8]>, DriverError<E>> {
        if self.conn.error().is_some() {
            // An ended session sends nothing more, not even the rest of a frame.
            self.unsent = (0, 0);
        }
        if self.unsent.0 == self.unsent.1 {
            let len = self.seal_frames()?;
            if len == 0 {
                return Ok(None);
            }
            self.unsent = (0, len);
        }
        let (start, end) = self.unsent;
        match self.buf.as_mut().get(start..end) {
            Some(pending) => Ok(Some(pending)),
            // The buffer shrank under a pending batch: nothing of it can be sent.
            None => {
                self.unsent = (0, 0);
                Ok(None)
            }
        }
    }

    /// Seals queued frames one after another into the buffer and returns their length.
    fn seal_frames<E>(&mut self) -> Result<usize, DriverError<E>> {
        let now = self.clock.now();
        let mut len = 0;
        loop {
            match next_frame(&mut self.conn, now, &mut self.buf.as_mut()[len..]) {
                Ok(Some(n)) => len += n,
                Ok(None) => return Ok(len),
                // No room left for the next frame: it waits for the next round.
                Err(DriverError::InsufficientSize { .. }) if len > 0 => return Ok(len),
                // A heap buffer grows to the frame (an OTA chunk larger than it).
                Err(DriverError::InsufficientSize { required }) if self.grow.is_some() => {
                    if let Some(grow) = self.grow {
                        grow(&mut self.buf, required);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The transport took `n` bytes of [`DriverState::unsent`]. `false` when it took none: the
    /// stream is gone, and with it the rest of the batch and the session.
    pub(super) fn sent(&mut self, n: usize) -> bool {
        if n == 0 {
            self.unsent = (0, 0);
            self.conn.handle_close(self.clock.now());
            return false;
        }
        self.unsent.0 = (self.unsent.0 + n).min(self.unsent.1);
        true
    }

    /// What a round does after its first flush: ends with the session's reason, or runs a due
    /// timer (`Ok(None)`), or asks for a read waiting at most the returned time (`None` inside:
    /// no timer) into [`DriverState::read_buf`].
    pub(super) fn before_read<E>(&mut self) -> Result<Option<Option<Duration>>, DriverError<E>> {
        if let Some(e) = self.conn.error() {
            return Err(DriverError::Session(e));
        }
        let now = self.clock.now();
        match self.conn.poll_timeout() {
            Some(at) if at <= now => {
                self.conn.handle_timeout(now);
                Ok(None)
            }
            _ if self.buf.as_mut().is_empty() => Err(DriverError::InsufficientSize {
                required: self.conn.max_transmit_len(),
            }),
            timeout => Ok(Some(timeout.map(|at| at.saturating_duration_since(now)))),
        }
    }

    /// Where a read puts what it receives.
    pub(super) fn read_buf(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// Feeds what a read gave to the session. A session error is not returned here: the session
    /// keeps it, and the driver reports it after the events queued before it.
    pub(super) fn handle_read(&mut self, got: Received) {
        let now = self.clock.now();
        let buf = self.buf.as_mut();
        match got {
            Received::Data(n) => {
                let _ended = self.conn.handle_input(now, &buf[..n.min(buf.len())]);
            }
            Received::Eof => self.conn.handle_close(now),
            Received::TimedOut => {}
        }
    }
}

/// Takes the next frame out of `conn` into `buf`: `Ok(Some(n))`, `Ok(None)` when there is none
/// (or the session has ended: its error is reported by the caller's next check).
fn next_frame<C: Connection + ?Sized, E>(
    conn: &mut C,
    now: Instant,
    buf: &mut [u8],
) -> Result<Option<usize>, DriverError<E>> {
    match conn.poll_transmit(now, buf) {
        Ok(n) => Ok(n),
        // An ended session reports its reason from `poll_transmit`; it is not a buffer problem.
        Err(_) if conn.error().is_some() => Ok(None),
        // The driver's buffer serves every frame, so it asks for the largest one.
        Err(SessionError::InsufficientSize { required }) => Err(DriverError::InsufficientSize {
            required: required.max(conn.max_transmit_len()),
        }),
        Err(e) => Err(DriverError::Session(e)),
    }
}

/// Declares a driver type over a transport trait: the struct (with the docs given), the
/// accessors both drivers have name for name (`new`, `connection`, `connection_mut`,
/// `transport`, `now`, `into_parts`) and, with `alloc`, `with_vec`. Each driver adds its own
/// `flush` and `step` (blocking or awaited), the only code in which the two differ.
macro_rules! driver_type {
    ($(#[$attr:meta])* over $transport:ident) => {
        $(#[$attr])*
        #[derive(Debug)]
        pub struct Driver<C, T, K, B> {
            state: $crate::session::driver::state::DriverState<C, K, B>,
            io: T,
        }

        impl<C: Connection, T: $transport, K: Clock, B: AsMut<[u8]>> Driver<C, T, K, B> {
            /// A driver for `conn` over `io`, reading the time from `clock`, with `buf` as its
            /// frame buffer. A buffer shorter than a frame is reported by the call that meets
            /// the frame.
            pub fn new(conn: C, io: T, clock: K, buf: B) -> Self {
                Driver {
                    state: $crate::session::driver::state::DriverState::new(conn, clock, buf),
                    io,
                }
            }

            /// The session.
            #[must_use]
            pub fn connection(&self) -> &C {
                &self.state.conn
            }

            /// The session, for the application's calls between two driver steps. What they
            /// queue is sent by the next [`Driver::flush`] or [`Driver::drive`].
            pub fn connection_mut(&mut self) -> &mut C {
                &mut self.state.conn
            }

            /// The transport.
            #[must_use]
            pub fn transport(&self) -> &T {
                &self.io
            }

            /// The clock's current time, as the driver tells it to the session.
            pub fn now(&mut self) -> Instant {
                self.state.clock.now()
            }

            /// The session, the transport, the clock and the buffer.
            pub fn into_parts(self) -> (C, T, K, B) {
                let state = self.state;
                (state.conn, self.io, state.clock, state.buf)
            }
        }

        #[cfg(feature = "alloc")]
        impl<C: Connection, T: $transport, K: Clock> Driver<C, T, K, alloc::vec::Vec<u8>> {
            /// A driver with a heap buffer of [`Connection::max_transmit_len`] bytes (at least
            /// 1 KiB, so reads take what a TCP segment brings), which grows when the session
            /// later has a longer frame to send (a cloud's OTA chunks).
            pub fn with_vec(conn: C, io: T, clock: K) -> Self {
                let len = conn.max_transmit_len().max(1024);
                let mut driver = Driver::new(conn, io, clock, alloc::vec![0; len]);
                driver.state.grow = Some($crate::session::driver::state::grow_vec);
                driver
            }

            /// Grows the heap buffer to `len` bytes (it never shrinks): each read then takes up
            /// to `len` bytes and each write carries up to `len` bytes of sealed frames. For a
            /// busy connection, whose rounds would otherwise be one small buffer each.
            pub fn grow_buffer(&mut self, len: usize) {
                $crate::session::driver::state::grow_vec(&mut self.state.buf, len);
            }
        }
    };
}
pub(super) use driver_type;

/// Grows a driver's heap buffer to `len` bytes.
#[cfg(feature = "alloc")]
pub(super) fn grow_vec(buf: &mut alloc::vec::Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}
