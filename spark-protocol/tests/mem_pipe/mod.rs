//! An in-memory duplex pipe implementing `embedded-io`, and a virtual clock, for running the
//! blocking driver in one thread.

#![allow(dead_code, unreachable_pub)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use embedded_io::ErrorKind;
use spark_protocol::session::Instant;

#[derive(Debug, Default)]
pub struct Lane {
    data: VecDeque<u8>,
    closed: bool,
}

/// One end of a duplex byte pipe. Reads on an empty, open lane would block: with no timer the
/// driver reads anyway, which this pipe reports as `ErrorKind::TimedOut`.
#[derive(Debug, Clone)]
pub struct End {
    rx: Rc<RefCell<Lane>>,
    tx: Rc<RefCell<Lane>>,
    pub fail_writes: Rc<Cell<bool>>,
}

pub fn pipe() -> (End, End) {
    let ab = Rc::new(RefCell::new(Lane::default()));
    let ba = Rc::new(RefCell::new(Lane::default()));
    (
        End {
            rx: ba.clone(),
            tx: ab.clone(),
            fail_writes: Rc::default(),
        },
        End {
            rx: ab,
            tx: ba,
            fail_writes: Rc::default(),
        },
    )
}

impl End {
    pub fn close(&self) {
        self.tx.borrow_mut().closed = true;
        self.rx.borrow_mut().closed = true;
    }
}

impl embedded_io::ErrorType for End {
    type Error = ErrorKind;
}

impl embedded_io::Read for End {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut rx = self.rx.borrow_mut();
        if rx.data.is_empty() {
            return if rx.closed {
                Ok(0)
            } else {
                Err(ErrorKind::TimedOut)
            };
        }
        let n = buf.len().min(rx.data.len());
        for b in &mut buf[..n] {
            *b = rx.data.pop_front().unwrap();
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for End {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        let rx = self.rx.borrow();
        Ok(!rx.data.is_empty() || rx.closed)
    }
}

impl embedded_io::Write for End {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.fail_writes.get() {
            return Err(ErrorKind::BrokenPipe);
        }
        let mut tx = self.tx.borrow_mut();
        if tx.closed {
            return Ok(0);
        }
        // Take at most 7 bytes a call, so frames are written in pieces.
        let n = buf.len().min(7);
        tx.data.extend(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// A virtual clock: each reading is 1 ms after the previous one.
pub fn ticking(clock: &Rc<Cell<u64>>) -> impl FnMut() -> Instant + use<> {
    let clock = clock.clone();
    move || {
        let t = clock.get();
        clock.set(t + 1);
        Instant::from_millis(t)
    }
}

/// The async side of the same pipe: a read of an empty, open lane is pending (and asks to be
/// polled again at once, so one task can drive both ends).
impl embedded_io_async::Read for End {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        std::future::poll_fn(|cx| match embedded_io::Read::read(self, buf) {
            Err(ErrorKind::TimedOut) => {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
            other => std::task::Poll::Ready(other),
        })
        .await
    }
}

impl embedded_io_async::Write for End {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        embedded_io::Write::write(self, buf)
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}
