//! The async driver over tokio: [`asynch::Driver`](super::asynch::Driver) on a tokio stream.
//!
//! All this module adds is [`Tokio`], the adapter that makes any `AsyncRead + AsyncWrite` stream
//! (a `TcpStream`, one half of a `tokio::io::duplex`) an async
//! [`Transport`](super::asynch::Transport), its reads raced against a tokio timer for the
//! session's next timeout; [`TokioClock`]; and [`Driver`], the async driver with those two filled
//! in. It spawns nothing, and tokio's reads and writes are cancel-safe, so the driver's futures
//! are too: dropping one (a `select!` branch that lost) loses no byte.
//!
//! Like the blocking driver it works on a caller's buffer; `Driver::with_vec` takes one of
//! [`Connection::max_transmit_len`](crate::session::Connection::max_transmit_len) bytes (at least
//! 1 KiB) from the heap.
//!
//! A device and a cloud on the two ends of an in-memory tokio pipe, one task driving both:
//!
//! ```
//! use spark_protocol::crypto::{SessionKey, rng::HardwareRng};
//! use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent, NoKeys};
//! use spark_protocol::session::device::{DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware};
//! use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
//! use spark_protocol::session::Instant;
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! runtime.block_on(async {
//!     let (a, b) = tokio::io::duplex(4096);
//!     let secret = SessionKey::from_bytes([3; 40]);
//!     let device = DeviceConnection::from_session(
//!         Instant::ZERO, &secret, DeviceConfig::new([8; 12]), NoFirmware,
//!     );
//!     let rng = HardwareRng(|dest: &mut [u8]| dest.fill(0x21));
//!     let cloud = CloudConnection::from_session(
//!         Instant::ZERO, NoKeys, NoKeys, rng, CloudConfig::default(), &secret, [8; 12].into(),
//!     );
//!     // A buffer of the caller's (here an array), or `Driver::with_vec` for one on the heap.
//!     let mut device = Driver::new(device, Tokio(a), TokioClock::new(), [0u8; 1024]);
//!     let mut cloud = Driver::with_vec(cloud, Tokio(b), TokioClock::new());
//!     let (d, c) = tokio::join!(device.next_event(), cloud.next_event());
//!     assert_eq!(d?, DeviceEvent::Connected);
//!     assert!(matches!(c?, CloudEvent::Connected(info) if info.device_id == [8; 12]));
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::future::poll_fn;
use core::pin::Pin;
use core::time::Duration;
use std::io;
use std::vec::Vec;

use ::tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{Clock, Received};
use crate::session::Instant;

/// A [`Clock`] on `tokio::time::Instant`, with its origin at its creation. It follows tokio's
/// paused and advanced time in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: ::tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose [`Instant::ZERO`] is now.
    #[must_use]
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

/// The async driver on a tokio stream `S`: `Driver::with_vec(conn, Tokio(stream), clock)`, or
/// `Driver::new(conn, Tokio(stream), clock, buf)` with a buffer of the caller's. Errors are
/// [`DriverError`](super::DriverError) over `std::io::Error`.
pub type Driver<C, S, K = TokioClock, B = Vec<u8>> = super::asynch::Driver<C, Tokio<S>, K, B>;

/// A tokio stream as an async [`Transport`](super::asynch::Transport).
#[derive(Debug, Default)]
pub struct Tokio<S>(pub S);

impl<S> Tokio<S> {
    /// The stream.
    pub fn into_inner(self) -> S {
        self.0
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> super::asynch::Transport for Tokio<S> {
    type Error = io::Error;

    async fn read(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Received, io::Error> {
        let stream = &mut self.0;
        let read = poll_fn(|cx| {
            let mut filled = ReadBuf::new(buf);
            Pin::new(&mut *stream)
                .poll_read(cx, &mut filled)
                .map_ok(|()| filled.filled().len())
        });
        let got = match timeout {
            None => read.await,
            Some(t) => match ::tokio::time::timeout(t, read).await {
                Ok(got) => got,
                Err(_elapsed) => return Ok(Received::TimedOut),
            },
        };
        match got {
            Ok(0) => Ok(Received::Eof),
            Ok(n) => Ok(Received::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Received::TimedOut),
            Err(e) => Err(e),
        }
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        self.0.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), io::Error> {
        self.0.flush().await
    }
}
