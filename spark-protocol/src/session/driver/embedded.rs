//! The blocking driver's transport over `embedded-io`.

use core::time::Duration;

use embedded_io::{Read, ReadReady, Write};

use super::{Received, Transport};

/// Any `embedded_io::{Read, Write, ReadReady}` stream (a UART, a Wi-Fi module's socket) as a
/// [`Transport`].
///
/// `embedded-io` reads have no timeout, so while a session timer runs this transport only reads
/// when [`ReadReady::read_ready`] says a read will not block, and otherwise returns
/// [`Received::TimedOut`] at once: [`Driver::drive`](super::Driver::drive) then returns
/// `Ok(None)` and the MCU's main loop can do other work (or wait for an interrupt) before driving
/// again. With no timer running, a read blocks until data comes.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedIo<T>(pub T);

impl<T> EmbeddedIo<T> {
    /// The stream.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: Read + Write + ReadReady> Transport for EmbeddedIo<T> {
    type Error = T::Error;

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<Received, Self::Error> {
        if timeout.is_some() && !self.0.read_ready()? {
            return Ok(Received::TimedOut);
        }
        Ok(match self.0.read(buf)? {
            0 => Received::Eof,
            n => Received::Data(n),
        })
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush()
    }
}
