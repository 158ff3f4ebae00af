//! The async driver over tokio: [`Driver`] with the blocking driver's names and shape.
//!
//! It awaits reads on any `AsyncRead + AsyncWrite` stream (a `TcpStream`, one half of a
//! `tokio::io::duplex`), raced against a tokio timer for the session's next timeout. It spawns
//! nothing: all the work happens while the caller awaits [`Driver::drive`] or
//! [`Driver::next_event`]. Both futures are cancel-safe: dropping one loses no byte (a read that
//! completed was fed to the session; a frame partly written is finished by the next call).

use core::future::poll_fn;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::io;
use std::vec::Vec;

use ::tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{Before, Clock, DriverError, Received, after_read, before_wait, next_frame};
use crate::session::{Connection, Instant};

/// A [`Clock`] on `tokio::time::Instant`, with its origin at its creation. It follows tokio's
/// paused and advanced time in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: ::tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose [`Instant::ZERO`] is now.
    pub fn new() -> Self {
        TokioClock {
            origin: ::tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&mut self) -> Instant {
        let ms = self.origin.elapsed().as_millis();
        Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// Bytes read from the stream per call, into a buffer on the stack that lives only while the read is polled.
const READ_CHUNK: usize = 8 * 1024;
/// Bytes of frames gathered into one write, likewise on the stack.
const WRITE_CHUNK: usize = 8 * 1024;

/// The async driver: a [`Connection`], a tokio stream `S` and a [`Clock`]. Errors are
/// [`DriverError`] over `std::io::Error`.
///
/// It keeps no frame buffer between calls: reads land in a stack buffer and are fed to the session
/// in the same poll, and queued frames are sealed into a stack buffer, several to one write. Only
/// bytes the stream does not take at once are copied to the heap, until they are written; an idle
/// connection holds no buffer at all, which is what lets one process hold many thousands.
#[derive(Debug)]
pub struct Driver<C, S, K = TokioClock> {
    conn: C,
    io: S,
    clock: K,
    /// Sealed bytes the stream has not taken yet (frames taken from the session are never lost to
    /// a cancelled or failed write); empty and unallocated while the stream keeps up.
    unsent: Vec<u8>,
    /// How much of `unsent` has been written.
    sent: usize,
}

impl<C, S, K> Driver<C, S, K>
where
    C: Connection,
    S: AsyncRead + AsyncWrite + Unpin,
    K: Clock,
{
    /// A driver for `conn` over `io`, reading the time from `clock`.
    pub fn new(conn: C, io: S, clock: K) -> Self {
        Driver {
            conn,
            io,
            clock,
            unsent: Vec::new(),
            sent: 0,
        }
    }

    /// The session.
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// The session, for the application's calls between two driver steps. What they queue is
    /// sent by the next [`Driver::flush`] or [`Driver::drive`].
    pub fn connection_mut(&mut self) -> &mut C {
        &mut self.conn
    }

    /// The stream.
    pub fn transport(&self) -> &S {
        &self.io
    }

    /// The clock's current time, as the driver tells it to the session.
    pub fn now(&mut self) -> Instant {
        self.clock.now()
    }

    /// The session, the stream and the clock.
    pub fn into_parts(self) -> (C, S, K) {
        (self.conn, self.io, self.clock)
    }

    fn drop_unsent(&mut self) {
        self.unsent = Vec::new();
        self.sent = 0;
    }

    /// Keeps `bytes` (taken from the session, not yet written) for the next write.
    fn keep_unsent(&mut self, bytes: &[u8]) {
        self.unsent = bytes.to_vec();
        self.sent = 0;
    }

    /// Writes what is left over, then every frame the session has queued; `Ready(Ok(wrote))` once
    /// all is written.
    fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<bool, DriverError<io::Error>>> {
        let mut wrote = false;
        loop {
            while self.sent < self.unsent.len() {
                match Pin::new(&mut self.io).poll_write(cx, &self.unsent[self.sent..]) {
                    Poll::Ready(Ok(0)) => {
                        self.drop_unsent();
                        self.conn.handle_close(self.clock.now());
                        return Poll::Ready(Ok(wrote));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.sent += n;
                        wrote = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(DriverError::Io(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if !self.unsent.is_empty() {
                self.drop_unsent();
            }
            let mut chunk = [0u8; WRITE_CHUNK];
            let mut len = 0;
            let now = self.clock.now();
            loop {
                match next_frame(&mut self.conn, now, &mut chunk[len..]) {
                    Ok(Some(n)) => len += n,
                    Ok(None) => break,
                    // No room left for the next frame: it stays queued for the next chunk.
                    Err(DriverError::InsufficientSize { .. }) if len > 0 => break,
                    Err(DriverError::InsufficientSize { required }) => {
                        // A frame larger than the chunk (an OTA chunk with a large size): on the heap.
                        let mut big = std::vec![0u8; required];
                        if let Some(n) = next_frame(&mut self.conn, now, &mut big)? {
                            big.truncate(n);
                            self.unsent = big;
                            self.sent = 0;
                        }
                        break;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if !self.unsent.is_empty() {
                continue;
            }
            if len == 0 {
                return Poll::Ready(Ok(wrote));
            }
            match Pin::new(&mut self.io).poll_write(cx, &chunk[..len]) {
                Poll::Ready(Ok(0)) => {
                    self.conn.handle_close(self.clock.now());
                    return Poll::Ready(Ok(wrote));
                }
                Poll::Ready(Ok(n)) => {
                    wrote = true;
                    if n < len {
                        self.keep_unsent(&chunk[n..len]);
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.keep_unsent(&chunk[..len]);
                    return Poll::Ready(Err(DriverError::Io(e)));
                }
                Poll::Pending => {
                    self.keep_unsent(&chunk[..len]);
                    return Poll::Pending;
                }
            }
        }
    }

    /// Writes every frame the session has queued, then flushes the stream.
    pub async fn flush(&mut self) -> Result<(), DriverError<io::Error>> {
        if self.conn.error().is_some() {
            // An ended session sends nothing more, not even the rest of a frame.
            self.drop_unsent();
        }
        let wrote = poll_fn(|cx| self.poll_write_frames(cx)).await?;
        if wrote {
            self.io.flush().await.map_err(DriverError::Io)?;
        }
        Ok(())
    }

    /// Reads what the stream has (waiting for it) and feeds it to the session in the same poll.
    fn poll_read_into_session(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        let got = match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Received::TimedOut,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => match buf.filled().len() {
                0 => Received::Eof,
                n => Received::Data(n),
            },
        };
        let now = self.clock.now();
        after_read(&mut self.conn, now, &chunk, got);
        Poll::Ready(Ok(()))
    }

    /// One round: sends what is queued, hands out a queued event, or runs a due timer, or waits
    /// for input no longer than the next timer and feeds it. Returns the event this round
    /// produced, if any.
    ///
    /// Once the session has ended and its events are all out, returns
    /// [`DriverError::Session`] with its reason, every time.
    pub async fn drive(&mut self) -> Result<Option<C::Event>, DriverError<io::Error>> {
        self.flush().await?;
        let now = self.clock.now();
        match before_wait(&mut self.conn, now) {
            Before::Event(event) => return Ok(Some(event)),
            Before::Ended(e) => return Err(DriverError::Session(e)),
            Before::TimerRan => {}
            Before::Wait(timeout) => {
                let read = poll_fn(|cx| self.poll_read_into_session(cx));
                let got = match timeout {
                    None => Some(read.await),
                    Some(t) => ::tokio::time::timeout(t, read).await.ok(),
                };
                if let Some(Err(e)) = got {
                    return Err(DriverError::Io(e));
                }
            }
        }
        self.flush().await?;
        Ok(self.conn.poll_event())
    }

    /// Drives the session until it produces an event, and returns it; or until it ends, and
    /// returns its reason as [`DriverError::Session`].
    pub async fn next_event(&mut self) -> Result<C::Event, DriverError<io::Error>> {
        loop {
            if let Some(event) = self.drive().await? {
                return Ok(event);
            }
        }
    }
}
