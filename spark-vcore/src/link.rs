//! An unreliable link: a byte stream wrapper that loses the connection at random and stalls writes.
//!
//! Wi-Fi on the Core failed in two ways the cloud had to live with: the connection went away (the CC3000 lost the
//! access point, the socket died) and the link stalled for seconds. [`FlakyStream`] does both to any tokio stream:
//! before each write, with probability [`LinkFaults::drop_rate`], the link dies (that write and every later
//! operation fail with `ConnectionReset`, as a dead socket does); and each write is held back for a random time
//! up to [`LinkFaults::stall_ms`]. The randomness comes from a seeded generator, so a run can be repeated.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What goes wrong on the link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFaults {
    /// Probability (0.0 to 1.0) that the link dies before a write.
    pub drop_rate: f64,
    /// Upper bound of the random delay before each write, in milliseconds (0: none).
    pub stall_ms: u64,
}

impl LinkFaults {
    /// A link without faults.
    pub const RELIABLE: LinkFaults = LinkFaults {
        drop_rate: 0.0,
        stall_ms: 0,
    };

    /// Whether the link never fails nor stalls.
    pub fn is_reliable(&self) -> bool {
        self.drop_rate <= 0.0 && self.stall_ms == 0
    }
}

/// A stream with [`LinkFaults`]. See the [module docs](self).
#[derive(Debug)]
pub struct FlakyStream<S> {
    inner: S,
    faults: LinkFaults,
    rng: StdRng,
    dead: bool,
    /// The stall of the write in progress, and whether the drop decision was already taken for it.
    stall: Option<Pin<Box<Sleep>>>,
    decided: bool,
    drops: u64,
}

impl<S> FlakyStream<S> {
    /// Wraps `inner`; `seed` makes the fault pattern repeatable.
    pub fn new(inner: S, faults: LinkFaults, seed: u64) -> Self {
        FlakyStream {
            inner,
            faults,
            rng: StdRng::seed_from_u64(seed),
            dead: false,
            stall: None,
            decided: false,
            drops: 0,
        }
    }

    /// Whether the link has died.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn reset() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, "simulated link loss")
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FlakyStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(Self::reset()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FlakyStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(Self::reset()));
        }
        if !this.decided {
            this.decided = true;
            if this.faults.drop_rate > 0.0 && this.rng.random_bool(this.faults.drop_rate.min(1.0)) {
                this.dead = true;
                this.drops += 1;
                return Poll::Ready(Err(Self::reset()));
            }
            if this.faults.stall_ms > 0 {
                let ms = this.rng.random_range(0..=this.faults.stall_ms);
                this.stall = Some(Box::pin(tokio::time::sleep(Duration::from_millis(ms))));
            }
        }
        if let Some(stall) = this.stall.as_mut() {
            ready!(stall.as_mut().poll(cx));
            this.stall = None;
        }
        let result = ready!(Pin::new(&mut this.inner).poll_write(cx, buf));
        this.decided = false;
        Poll::Ready(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(Self::reset()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reliable_link_passes_bytes_and_a_certain_drop_kills_it() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut link = FlakyStream::new(a, LinkFaults::RELIABLE, 1);
        link.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        let (a, _b) = tokio::io::duplex(64);
        let faults = LinkFaults {
            drop_rate: 1.0,
            stall_ms: 0,
        };
        let mut link = FlakyStream::new(a, faults, 1);
        let err = link.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(link.is_dead());
        let mut buf = [0u8; 1];
        assert!(link.read(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn the_same_seed_drops_at_the_same_write() {
        async fn first_drop(seed: u64) -> usize {
            let (a, mut b) = tokio::io::duplex(1 << 16);
            let faults = LinkFaults {
                drop_rate: 0.1,
                stall_ms: 0,
            };
            let mut link = FlakyStream::new(a, faults, seed);
            let drain = tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = b.read_to_end(&mut sink).await;
            });
            let mut n = 0;
            while link.write_all(b"ab").await.is_ok() {
                n += 1;
                assert!(n < 10_000, "a 10% drop rate never dropped");
            }
            drop(link);
            drain.await.unwrap();
            n
        }
        assert_eq!(first_drop(7).await, first_drop(7).await);
    }

    #[tokio::test]
    async fn stalls_delay_writes_but_deliver_them() {
        let (a, mut b) = tokio::io::duplex(64);
        let faults = LinkFaults {
            drop_rate: 0.0,
            stall_ms: 50,
        };
        let mut link = FlakyStream::new(a, faults, 3);
        for _ in 0..10 {
            link.write_all(b"z").await.unwrap();
        }
        let mut got = [0u8; 10];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"zzzzzzzzzz");
    }
}
