//! The async driver over tokio: [`Driver`] with the blocking driver's names and shape.
//!
//! It awaits reads on any `AsyncRead + AsyncWrite` stream (a `TcpStream`, one half of a
//! `tokio::io::duplex`), raced against a tokio timer for the session's next timeout. It spawns
//! nothing: all the work happens while the caller awaits [`Driver::drive`] or
//! [`Driver::next_event`]. Both futures are cancel-safe: dropping one loses no byte (a read that
//! completed was fed to the session; a frame partly written is finished by the next call).

use std::io;
use std::vec::Vec;

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// The async driver: a [`Connection`], a tokio stream `S`, a [`Clock`] and a frame buffer.
/// Errors are [`DriverError`] over `std::io::Error`.
#[derive(Debug)]
pub struct Driver<C, S, K = TokioClock> {
    conn: C,
    io: S,
    clock: K,
    buf: Vec<u8>,
    /// Bytes of the frame being written that the stream has not taken yet, so that a cancelled
    /// write resumes where it stopped.
    pending: core::ops::Range<usize>,
}

impl<C, S, K> Driver<C, S, K>
where
    C: Connection,
    S: AsyncRead + AsyncWrite + Unpin,
    K: Clock,
{
    /// A driver for `conn` over `io`, reading the time from `clock`, with a buffer of
    /// [`Connection::max_transmit_len`] bytes (at least 1 KiB).
    pub fn new(conn: C, io: S, clock: K) -> Self {
        let len = conn.max_transmit_len().max(1024);
        Driver {
            conn,
            io,
            clock,
            buf: std::vec![0; len],
            pending: 0..0,
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

    /// Writes every frame the session has queued, then flushes the stream.
    pub async fn flush(&mut self) -> Result<(), DriverError<io::Error>> {
        let mut wrote = false;
        if self.conn.error().is_some() {
            // An ended session sends nothing more, not even the rest of a frame.
            self.pending = 0..0;
        }
        loop {
            while !self.pending.is_empty() {
                let w = self
                    .io
                    .write(&self.buf[self.pending.clone()])
                    .await
                    .map_err(DriverError::Io)?;
                if w == 0 {
                    self.pending = 0..0;
                    self.conn.handle_close(self.clock.now());
                    return Ok(());
                }
                self.pending.start += w.min(self.pending.len());
                wrote = true;
            }
            let now = self.clock.now();
            match next_frame(&mut self.conn, now, &mut self.buf)? {
                Some(n) => self.pending = 0..n.min(self.buf.len()),
                None => break,
            }
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
    pub async fn drive(&mut self) -> Result<Option<C::Event>, DriverError<io::Error>> {
        self.flush().await?;
        let now = self.clock.now();
        match before_wait(&mut self.conn, now) {
            Before::Event(event) => return Ok(Some(event)),
            Before::Ended(e) => return Err(DriverError::Session(e)),
            Before::TimerRan => {}
            Before::Wait(timeout) => {
                let read = self.io.read(&mut self.buf);
                let got = match timeout {
                    None => Some(read.await),
                    Some(t) => ::tokio::time::timeout(t, read).await.ok(),
                };
                let got = match got {
                    None => Received::TimedOut,
                    Some(Ok(0)) => Received::Eof,
                    Some(Ok(n)) => Received::Data(n),
                    Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Received::TimedOut,
                    Some(Err(e)) => return Err(DriverError::Io(e)),
                };
                let now = self.clock.now();
                after_read(&mut self.conn, now, &self.buf, got);
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
