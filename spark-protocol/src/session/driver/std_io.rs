//! The blocking driver's transports and clock from the standard library.

use core::time::Duration;
use std::io::{self, Read, Write};

use super::{Clock, Received, Transport};
use crate::session::Instant;

/// A [`Clock`] on `std::time::Instant`, with its origin at its creation.
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    origin: std::time::Instant,
}

impl StdClock {
    /// A clock whose [`Instant::ZERO`] is now.
    #[must_use]
    pub fn new() -> Self {
        StdClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for StdClock {
    fn default() -> Self {
        StdClock::new()
    }
}

impl Clock for StdClock {
    fn now(&mut self) -> Instant {
        let ms = self.origin.elapsed().as_millis();
        Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// A socket read with a timeout: `set_read_timeout` refuses zero, so the shortest wait is 1 ms
/// (a timer due in under a millisecond is run by the next round anyway).
fn read_with_timeout<S: Read>(
    sock: &mut S,
    set_timeout: impl FnOnce(&S, Option<Duration>) -> io::Result<()>,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> io::Result<Received> {
    set_timeout(sock, timeout.map(|t| t.max(Duration::from_millis(1))))?;
    match sock.read(buf) {
        Ok(0) => Ok(Received::Eof),
        Ok(n) => Ok(Received::Data(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(Received::TimedOut)
        }
        Err(e) => Err(e),
    }
}

macro_rules! socket_transport {
    ($($(#[$attr:meta])* $ty:ty;)*) => {$(
        $(#[$attr])*
        /// Reads wait at most the session's next timer (through `set_read_timeout`).
        impl Transport for $ty {
            type Error = io::Error;

            fn read(
                &mut self,
                buf: &mut [u8],
                timeout: Option<Duration>,
            ) -> Result<Received, io::Error> {
                read_with_timeout(self, |s, t| s.set_read_timeout(t), buf, timeout)
            }

            fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
                loop {
                    match Write::write(self, buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => return other,
                    }
                }
            }

            fn flush(&mut self) -> Result<(), io::Error> {
                Write::flush(self)
            }
        }
    )*};
}

socket_transport! {
    std::net::TcpStream;
    #[cfg(unix)]
    std::os::unix::net::UnixStream;
}
