//! The async driver: [`Driver`] with the blocking driver's names and shape, over an async
//! [`Transport`], on a caller's buffer (no_std, no alloc, no runtime).
//!
//! [`Transport`] mirrors the blocking [`super::Transport`] method for method. Two transports come
//! with the crate: `EmbeddedIoAsync` (feature `embedded-io-async`) over any
//! `embedded_io_async::{Read, Write}` stream and a `Delay` for the session's timers, for an
//! async executor on a microcontroller (Embassy, RTIC); and `tokio::Tokio` (feature `tokio`) over
//! a tokio stream, which is all the tokio driver adds.
//!
//! The driver spawns nothing: all the work happens while the caller awaits [`Driver::drive`],
//! [`Driver::step`] or [`Driver::next_event`]. When the transport's futures are cancel-safe (a
//! read or write that has not completed took nothing; tokio's are), so are the driver's: a frame
//! partly written stays in the buffer and the next call finishes it, and bytes read are fed to
//! the session in the same poll that read them.
//!
//! ```
//! use core::future::{Future, ready};
//! use core::time::Duration;
//! use spark_protocol::session::driver::asynch::{Driver, Transport};
//! use spark_protocol::session::driver::{DriverError, Received};
//! use spark_protocol::session::{Connection, Instant, SessionError};
//!
//! // A transport that is already at its end, and a session with nothing to say: enough to show
//! // the loop's shape.
//! struct Closed;
//! impl Transport for Closed {
//!     type Error = ();
//!     fn read(&mut self, _: &mut [u8], _: Option<Duration>) -> impl Future<Output = Result<Received, ()>> {
//!         ready(Ok(Received::Eof))
//!     }
//!     fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, ()>> {
//!         ready(Ok(buf.len()))
//!     }
//!     fn flush(&mut self) -> impl Future<Output = Result<(), ()>> {
//!         ready(Ok(()))
//!     }
//! }
//! # struct Quiet(Option<SessionError>);
//! # impl Connection for Quiet {
//! #     type Event = ();
//! #     fn handle_input(&mut self, _: Instant, _: &[u8]) -> Result<(), SessionError> { Ok(()) }
//! #     fn handle_close(&mut self, _: Instant) { self.0 = Some(SessionError::TransportClosed) }
//! #     fn handle_timeout(&mut self, _: Instant) {}
//! #     fn poll_transmit(&mut self, _: Instant, _: &mut [u8]) -> Result<Option<usize>, SessionError> { Ok(None) }
//! #     fn max_transmit_len(&self) -> usize { 16 }
//! #     fn poll_timeout(&self) -> Option<Instant> { None }
//! #     fn poll_event(&mut self) -> Option<()> { None }
//! #     fn error(&self) -> Option<SessionError> { self.0 }
//! # }
//!
//! let mut driver = Driver::new(Quiet(None), Closed, || Instant::ZERO, [0u8; 64]);
//! let ended = async move { driver.next_event().await };
//! # let ended = block_on(ended);
//! assert_eq!(ended, Err(DriverError::Session(SessionError::TransportClosed)));
//! # fn block_on<F: Future>(f: F) -> F::Output {
//! #     use core::task::{Context, Poll, Waker};
//! #     let mut f = core::pin::pin!(f);
//! #     loop {
//! #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) { return v; }
//! #     }
//! # }
//! ```

use core::future::Future;
use core::time::Duration;

use super::state;
use super::{Clock, DriverError, Received};
use crate::session::{Connection, Instant};

#[cfg(feature = "embedded-io-async")]
pub use embedded::{Delay, EmbeddedIoAsync};

/// A byte stream the async [`Driver`] can run a session over: the blocking
/// [`Transport`](super::Transport), awaited.
pub trait Transport {
    /// The transport's error.
    type Error;

    /// Reads what is available into `buf` (which is never empty), waiting at most `timeout`
    /// (`None`: until something happens). Returning [`Received::TimedOut`] early is allowed.
    fn read(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Received, Self::Error>>;

    /// Writes some of `buf` (which is never empty), returning how many bytes were taken; `0`
    /// means the stream is closed.
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, Self::Error>>;

    /// Pushes buffered bytes to the peer.
    fn flush(&mut self) -> impl Future<Output = Result<(), Self::Error>>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    type Error = T::Error;

    fn read(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Received, Self::Error>> {
        T::read(self, buf, timeout)
    }

    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, Self::Error>> {
        T::write(self, buf)
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), Self::Error>> {
        T::flush(self)
    }
}

state::driver_type! {
    /// The async driver: a [`Connection`], an async [`Transport`], a [`Clock`] and one buffer `B`
    /// for frames in both directions (at least [`Connection::max_transmit_len`] bytes). The blocking
    /// [`Driver`](super::Driver), awaited: the same methods, the same errors.
    over Transport
}

impl<C: Connection, T: Transport, K: Clock, B: AsMut<[u8]>> Driver<C, T, K, B> {
    /// Writes every frame the session has queued (several to one write when they fit the
    /// buffer), then flushes the transport.
    ///
    /// A transport error leaves the unwritten bytes in the buffer for the next call; an ended
    /// session drops them.
    pub async fn flush(&mut self) -> Result<(), DriverError<T::Error>> {
        let mut wrote = false;
        while let Some(unsent) = self.state.unsent()? {
            let n = self.io.write(unsent).await.map_err(DriverError::Io)?;
            if !self.state.sent(n) {
                return Ok(());
            }
            wrote = true;
        }
        if wrote {
            self.io.flush().await.map_err(DriverError::Io)?;
        }
        Ok(())
    }

    /// One round: sends what is queued, hands out a queued event, or runs a due timer, or waits
    /// for input no longer than the next timer and feeds it. Returns the event this round
    /// produced, if any.
    ///
    /// Once the session has ended and its events are all out, returns
    /// [`DriverError::Session`] with its reason, every time.
    pub async fn drive(&mut self) -> Result<Option<C::Event>, DriverError<T::Error>> {
        self.flush().await?;
        if let Some(event) = self.state.conn.poll_event() {
            return Ok(Some(event));
        }
        self.step().await?;
        Ok(self.state.conn.poll_event())
    }

    /// One round that hands out no event: [`Driver::drive`] without the event, as the blocking
    /// [`Driver::step`](super::Driver::step). Call it only once the session's events are all
    /// taken, or it may wait for input while they wait.
    pub async fn step(&mut self) -> Result<(), DriverError<T::Error>> {
        self.flush().await?;
        if let Some(wait) = self.state.before_read()? {
            let got = self
                .io
                .read(self.state.read_buf(), wait)
                .await
                .map_err(DriverError::Io)?;
            self.state.handle_read(got);
        }
        self.flush().await
    }

    /// Drives the session until it produces an event, and returns it; or until it ends, and
    /// returns its reason as [`DriverError::Session`].
    pub async fn next_event(&mut self) -> Result<C::Event, DriverError<T::Error>> {
        loop {
            if let Some(event) = self.drive().await? {
                return Ok(event);
            }
        }
    }
}

/// Polls `a` and `b` together and returns the first to finish (`a` when both are ready).
#[cfg(feature = "embedded-io-async")]
pub(super) async fn first<A: Future, B: Future>(a: A, b: B) -> Result<A::Output, B::Output> {
    use core::pin::pin;
    use core::task::Poll;
    let (mut a, mut b) = (pin!(a), pin!(b));
    core::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        b.as_mut().poll(cx).map(Err)
    })
    .await
}

#[cfg(feature = "embedded-io-async")]
mod embedded {
    use core::future::Future;
    use core::time::Duration;

    use embedded_io_async::{Read, Write};

    use super::{Received, Transport, first};

    /// Waits: the async timer of the executor (Embassy's `Timer::after`, a hardware alarm).
    pub trait Delay {
        /// Completes after `duration`.
        fn sleep(&mut self, duration: Duration) -> impl Future<Output = ()>;
    }

    /// Any `embedded_io_async::{Read, Write}` stream as an async [`Transport`]; `D` bounds the
    /// reads the session's timers need. A read that loses the race against the timer is dropped,
    /// so the stream's read must take no byte before it completes (cancel-safe).
    #[derive(Debug, Clone, Default)]
    pub struct EmbeddedIoAsync<T, D>(pub T, pub D);

    impl<T, D> EmbeddedIoAsync<T, D> {
        /// The stream and the delay.
        pub fn into_inner(self) -> (T, D) {
            (self.0, self.1)
        }
    }

    impl<T: Read + Write, D: Delay> Transport for EmbeddedIoAsync<T, D> {
        type Error = T::Error;

        async fn read(
            &mut self,
            buf: &mut [u8],
            timeout: Option<Duration>,
        ) -> Result<Received, Self::Error> {
            let got = match timeout {
                None => self.0.read(buf).await?,
                Some(t) => match first(self.0.read(buf), self.1.sleep(t)).await {
                    Ok(got) => got?,
                    Err(()) => return Ok(Received::TimedOut),
                },
            };
            Ok(match got {
                0 => Received::Eof,
                n => Received::Data(n),
            })
        }

        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.0.write(buf).await
        }

        async fn flush(&mut self) -> Result<(), Self::Error> {
            self.0.flush().await
        }
    }
}
