//! The drivers on the test-only counter protocol: the blocking driver over an in-memory
//! `embedded-io` pipe (virtual clock) and over real sockets, and the tokio driver over a duplex
//! pipe and real TCP on 127.0.0.1.

mod counter_protocol;
mod mem_pipe;

use std::cell::Cell;
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;

use counter_protocol::*;
use embedded_io::ErrorKind;
use mem_pipe::{End, pipe, ticking};
use spark_protocol::session::driver::{Clock, Driver, DriverError, EmbeddedIo, StdClock};
use spark_protocol::session::{Connection, Instant, SessionError};

type EDriver<C> = Driver<C, EmbeddedIo<End>, Box<dyn FnMut() -> Instant>, Vec<u8>>;

fn edriver<C: Connection>(conn: C, end: End, clock: &Rc<Cell<u64>>) -> EDriver<C> {
    Driver::with_vec(conn, EmbeddedIo(end), Box::new(ticking(clock)))
}

#[test]
fn embedded_io_exchange_then_eof() {
    let clock = Rc::new(Cell::new(0));
    let (a, b) = pipe();
    let mut client = edriver(Sender::new(messages(9), 2), a, &clock);
    let mut server = edriver(Receiver::new(), b.clone(), &clock);
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    let mut client_done = false;
    for _ in 0..10_000 {
        if !client_done && let Some(e) = client.drive().unwrap() {
            client_done = e == SenderEvent::Done;
            sent.push(e);
        }
        let committed = matches!(got.last(), Some(ReceiverEvent::Committed(_)));
        if !committed && let Some(e) = server.drive().unwrap() {
            got.push(e);
        }
        if client_done && matches!(got.last(), Some(ReceiverEvent::Committed(_))) {
            break;
        }
    }
    assert_eq!(sent.first(), Some(&SenderEvent::Connected));
    assert_eq!(sent.last(), Some(&SenderEvent::Done));
    assert_eq!(
        sent.iter()
            .filter(|e| matches!(e, SenderEvent::Acked(_)))
            .count(),
        9
    );
    assert_eq!(got.last(), Some(&ReceiverEvent::Committed(messages(9))));
    assert_eq!(server.connection().committed(), Some(&messages(9)[..]));

    // The server goes away: the client sees the end of the stream, and keeps that reason.
    b.close();
    // One round reads the end of the stream; the next reports it.
    assert_eq!(client.drive(), Ok(None));
    assert_eq!(
        client.drive(),
        Err(DriverError::Session(SessionError::TransportClosed))
    );
    assert_eq!(
        client.next_event(),
        Err(DriverError::Session(SessionError::TransportClosed))
    );
    assert_eq!(
        client.connection().error(),
        Some(SessionError::TransportClosed)
    );
}

/// `step` hands out no event: what it queued is taken through the connection, and a loop of `step` and
/// `poll_event` runs the same exchange as `drive`, ending with the same reason.
#[test]
fn step_leaves_events_in_the_session() {
    let clock = Rc::new(Cell::new(0));
    let (a, b) = pipe();
    let mut client = edriver(Sender::new(messages(4), 2), a, &clock);
    let mut server = edriver(Receiver::new(), b.clone(), &clock);
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        if sent.last() != Some(&SenderEvent::Done) {
            client.step().unwrap();
            while let Some(e) = client.connection_mut().poll_event() {
                sent.push(e);
            }
        }
        if matches!(got.last(), Some(ReceiverEvent::Committed(_))) {
            break;
        }
        server.step().unwrap();
        while let Some(e) = server.connection_mut().poll_event() {
            got.push(e);
        }
    }
    assert_eq!(sent.first(), Some(&SenderEvent::Connected));
    assert_eq!(sent.last(), Some(&SenderEvent::Done));
    assert_eq!(
        sent.iter()
            .filter(|e| matches!(e, SenderEvent::Acked(_)))
            .count(),
        4
    );
    assert_eq!(got.first(), Some(&ReceiverEvent::Connected));
    assert_eq!(got.last(), Some(&ReceiverEvent::Committed(messages(4))));

    b.close();
    // One step reads the end of the stream, the next reports it; no event was handed out meanwhile.
    assert_eq!(client.step(), Ok(()));
    assert_eq!(
        client.step(),
        Err(DriverError::Session(SessionError::TransportClosed))
    );
}

#[test]
fn embedded_io_honours_the_session_timer() {
    let clock = Rc::new(Cell::new(0));
    let (a, _b) = pipe();
    let mut client = edriver(Sender::new(messages(1), 1), a, &clock);
    assert_eq!(
        client.next_event(),
        Err(DriverError::Session(SessionError::HandshakeTimeout))
    );
    // The timer ran once it was due, not before and not long after (one clock reading per step).
    let t = clock.get();
    assert!((HANDSHAKE_MS..HANDSHAKE_MS + 10).contains(&t), "{t}");
}

#[test]
fn events_queued_before_a_hostile_frame_come_first() {
    let clock = Rc::new(Cell::new(0));
    let (mut peer, b) = pipe();
    let mut server = edriver(Receiver::new(), b, &clock);
    let mut bytes = frame(HELLO, 0, b"");
    bytes.extend_from_slice(&[DATA, 0, 0, 1, 0x42, 0x00]);
    embedded_io::Write::write_all(&mut peer, &bytes).unwrap();
    assert_eq!(server.next_event(), Ok(ReceiverEvent::Connected));
    assert_eq!(
        server.next_event(),
        Err(DriverError::Session(SessionError::Unexpected(
            "bad check byte"
        )))
    );
}

#[test]
fn io_errors_are_typed_and_leave_the_session_alive() {
    let clock = Rc::new(Cell::new(0));
    let (a, b) = pipe();
    a.fail_writes.set(true);
    let mut client = edriver(Sender::new(messages(1), 1), a.clone(), &clock);
    assert_eq!(client.drive(), Err(DriverError::Io(ErrorKind::BrokenPipe)));
    assert_eq!(client.connection().error(), None);
    // The transport recovers: nothing was lost (the frame the failed write held waits in the
    // driver's buffer), and the caller decides. Here the session ends on the caller's word.
    a.fail_writes.set(false);
    let now = client.now();
    client.connection_mut().handle_close(now);
    assert_eq!(
        client.drive(),
        Err(DriverError::Session(SessionError::TransportClosed))
    );
    drop(b);
}

#[test]
fn writing_to_a_closed_stream_closes_the_session() {
    let clock = Rc::new(Cell::new(0));
    let (a, b) = pipe();
    b.close();
    let mut client = edriver(Sender::new(messages(1), 1), a, &clock);
    assert_eq!(
        client.drive(),
        Err(DriverError::Session(SessionError::TransportClosed))
    );
}

#[test]
fn short_buffer_is_reported_and_nothing_is_lost() {
    let clock = Rc::new(Cell::new(0));
    let (a, b) = pipe();
    let mut small = Driver::new(
        Sender::new(messages(1), 1),
        EmbeddedIo(a),
        ticking(&clock),
        [0u8; 4],
    );
    assert_eq!(
        small.drive(),
        Err(DriverError::InsufficientSize {
            required: MAX_FRAME
        })
    );
    assert_eq!(small.connection().error(), None);
    let (conn, io, clk, _) = small.into_parts();
    let mut client = Driver::new(conn, io, clk, [0u8; MAX_FRAME]);
    let mut server = edriver(Receiver::new(), b, &clock);
    assert_eq!(client.drive(), Ok(None));
    // The HELLO that did not fit is the first thing the server gets.
    assert_eq!(server.next_event(), Ok(ReceiverEvent::Connected));
    assert_eq!(client.next_event(), Ok(SenderEvent::Connected));
}

#[test]
fn driver_error_displays_and_chains() {
    let e: DriverError<ErrorKind> = SessionError::PingTimeout.into();
    assert_eq!(e.to_string(), "session ended: ping timed out");
    let source = std::error::Error::source(&e).map(|s| s.to_string());
    assert_eq!(source.as_deref(), Some("ping timed out"));
    let io = DriverError::<std::io::Error>::Io(std::io::ErrorKind::ConnectionReset.into());
    assert!(io.to_string().starts_with("transport error: "));
    assert!(std::error::Error::source(&io).is_none());
    let short = DriverError::<ErrorKind>::InsufficientSize { required: 69 };
    assert_eq!(
        short.to_string(),
        "driver buffer too small: a frame needs 69 bytes"
    );
}

#[test]
fn any_closure_is_a_clock() {
    let mut t = 0;
    let mut clock = || {
        t += 5;
        Instant::from_millis(t)
    };
    assert_eq!(Clock::now(&mut clock), Instant::from_millis(5));
    assert_eq!(Clock::now(&mut clock), Instant::from_millis(10));
    let mut std_clock = StdClock::new();
    let (x, y) = (std_clock.now(), std_clock.now());
    assert!(y >= x);
}

// ---- the blocking driver over real sockets ----

fn run_receiver<S>(stream: S) -> (Vec<ReceiverEvent>, DriverError<std::io::Error>)
where
    S: spark_protocol::session::driver::Transport<Error = std::io::Error>,
{
    let mut server = Driver::with_vec(Receiver::new(), stream, StdClock::new());
    let mut events = Vec::new();
    loop {
        match server.next_event() {
            Ok(e) => events.push(e),
            Err(e) => return (events, e),
        }
    }
}

fn run_sender<S>(stream: S, n: usize) -> Vec<SenderEvent>
where
    S: spark_protocol::session::driver::Transport<Error = std::io::Error>,
{
    let mut client = Driver::with_vec(Sender::new(messages(n), 4), stream, StdClock::new());
    let mut events = Vec::new();
    loop {
        let e = client.next_event().unwrap();
        events.push(e.clone());
        if e == SenderEvent::Done {
            return events;
        }
    }
}

#[test]
fn tcp_exchange_then_close() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        run_receiver(s)
    });
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let sent = run_sender(stream, 200);
    assert_eq!(sent.len(), 202);
    // The client's driver (and socket) are gone: the server sees the end of the stream after
    // the whole transfer was committed.
    let (events, end) = server.join().unwrap();
    assert_eq!(
        events.last(),
        Some(&ReceiverEvent::Committed(messages(200)))
    );
    assert!(matches!(
        end,
        DriverError::Session(SessionError::TransportClosed)
    ));
}

#[test]
fn tcp_read_timeout_drives_the_handshake_timer() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = TcpStream::connect(addr).unwrap();
    // Accepted but never answered.
    let (_silent, _) = listener.accept().unwrap();
    let mut client = Driver::with_vec(Sender::new(messages(1), 1), stream, StdClock::new());
    assert!(matches!(
        client.next_event(),
        Err(DriverError::Session(SessionError::HandshakeTimeout))
    ));
}

#[cfg(unix)]
#[test]
fn unix_socket_exchange() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || run_receiver(b));
    let sent = run_sender(a, 30);
    assert_eq!(sent.last(), Some(&SenderEvent::Done));
    let (events, _) = server.join().unwrap();
    assert_eq!(events.last(), Some(&ReceiverEvent::Committed(messages(30))));
}

// ---- the async driver over embedded-io-async ----

mod embedded_io_async_driver {
    use super::*;
    use spark_protocol::session::driver::asynch::{Delay, Driver, EmbeddedIoAsync};

    /// The executor's timer: tokio's, standing in for Embassy's on a device.
    struct TokioDelay;

    impl Delay for TokioDelay {
        fn sleep(&mut self, d: std::time::Duration) -> impl Future<Output = ()> {
            tokio::time::sleep(d)
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exchange_on_caller_buffers_then_eof() {
        let clock = Rc::new(Cell::new(0));
        let (a, b) = pipe();
        // Heap-free: both drivers run on arrays, the client's exactly one frame long.
        let mut client = Driver::new(
            Sender::new(messages(9), 2),
            EmbeddedIoAsync(a, TokioDelay),
            ticking(&clock),
            [0u8; MAX_FRAME],
        );
        let mut server = Driver::new(
            Receiver::new(),
            EmbeddedIoAsync(b.clone(), TokioDelay),
            ticking(&clock),
            [0u8; 4 * MAX_FRAME],
        );
        let client_side = async {
            let mut sent = Vec::new();
            loop {
                let e = client.next_event().await.unwrap();
                sent.push(e.clone());
                if e == SenderEvent::Done {
                    return sent;
                }
            }
        };
        let server_side = async {
            loop {
                if let ReceiverEvent::Committed(m) = server.next_event().await.unwrap() {
                    return m;
                }
            }
        };
        let (sent, committed) = tokio::join!(client_side, server_side);
        assert_eq!(sent.first(), Some(&SenderEvent::Connected));
        let acked = sent
            .iter()
            .filter(|e| matches!(e, SenderEvent::Acked(_)))
            .count();
        assert_eq!(acked, 9);
        assert_eq!(committed, messages(9));
        // The server goes away: the client reads the end of the stream and keeps that reason.
        b.close();
        assert_eq!(
            client.next_event().await,
            Err(DriverError::Session(SessionError::TransportClosed))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn short_buffer_is_reported_and_nothing_is_lost() {
        let clock = Rc::new(Cell::new(0));
        let (a, b) = pipe();
        let mut small = Driver::new(
            Sender::new(messages(1), 1),
            EmbeddedIoAsync(a, TokioDelay),
            ticking(&clock),
            [0u8; 4],
        );
        assert_eq!(
            small.drive().await,
            Err(DriverError::InsufficientSize {
                required: MAX_FRAME
            })
        );
        assert_eq!(small.connection().error(), None);
        let (conn, io, clk, _) = small.into_parts();
        let mut client = Driver::new(conn, io, clk, [0u8; MAX_FRAME]);
        let mut server = Driver::new(
            Receiver::new(),
            EmbeddedIoAsync(b, TokioDelay),
            ticking(&clock),
            [0u8; MAX_FRAME],
        );
        assert_eq!(client.drive().await, Ok(None));
        // The HELLO that did not fit is the first thing the server gets.
        assert_eq!(server.next_event().await, Ok(ReceiverEvent::Connected));
        assert_eq!(client.next_event().await, Ok(SenderEvent::Connected));
    }
}

// ---- the tokio driver ----

mod tokio_driver {
    use super::*;
    use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
    use tokio::io::{AsyncRead, AsyncWrite};

    async fn receiver<S: AsyncRead + AsyncWrite + Unpin>(
        s: S,
    ) -> (Vec<ReceiverEvent>, DriverError<std::io::Error>) {
        let mut server = Driver::with_vec(Receiver::new(), Tokio(s), TokioClock::new());
        let mut events = Vec::new();
        loop {
            match server.next_event().await {
                Ok(e) => events.push(e),
                Err(e) => return (events, e),
            }
        }
    }

    async fn sender<S: AsyncRead + AsyncWrite + Unpin>(s: S, n: usize) -> Vec<SenderEvent> {
        let mut client = Driver::with_vec(Sender::new(messages(n), 3), Tokio(s), TokioClock::new());
        let mut events = Vec::new();
        loop {
            let e = client.next_event().await.unwrap();
            events.push(e.clone());
            if e == SenderEvent::Done {
                return events;
            }
        }
    }

    #[tokio::test]
    async fn duplex_with_a_tiny_buffer() {
        // A 32-byte pipe: data frames (up to 69 bytes) are written in pieces across awaits.
        // (It must hold the ACKs of a whole window: a driver does not read while it writes, so
        // two peers both blocked writing into full buffers would wait for each other.)
        let (a, b) = tokio::io::duplex(32);
        let (sent, (got, end)) = tokio::join!(
            async move {
                let events = sender(a, 40).await;
                // Dropping the client's end closes the pipe for the server.
                events
            },
            receiver(b)
        );
        assert_eq!(sent.last(), Some(&SenderEvent::Done));
        assert_eq!(got.last(), Some(&ReceiverEvent::Committed(messages(40))));
        assert!(matches!(
            end,
            DriverError::Session(SessionError::TransportClosed)
        ));
    }

    #[tokio::test]
    async fn tcp_exchange() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (sent, (got, _)) = tokio::join!(
            async {
                let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                sender(s, 150).await
            },
            async {
                let (s, _) = listener.accept().await.unwrap();
                receiver(s).await
            }
        );
        assert_eq!(sent.len(), 152);
        assert_eq!(got.last(), Some(&ReceiverEvent::Committed(messages(150))));
    }

    #[tokio::test(start_paused = true)]
    async fn timers_run_on_tokio_time() {
        let (a, _silent) = tokio::io::duplex(64);
        let mut client = Driver::with_vec(Sender::new(messages(1), 1), Tokio(a), TokioClock::new());
        let started = tokio::time::Instant::now();
        assert!(matches!(
            client.next_event().await,
            Err(DriverError::Session(SessionError::HandshakeTimeout))
        ));
        // Paused time only moves when every task waits: it moved exactly to the timer.
        assert_eq!(
            started.elapsed(),
            std::time::Duration::from_millis(HANDSHAKE_MS)
        );
    }

    #[tokio::test]
    async fn app_calls_between_steps_are_flushed() {
        let (a, b) = tokio::io::duplex(1024);
        let mut client = Driver::with_vec(Sender::new(Vec::new(), 1), Tokio(a), TokioClock::new());
        let mut server = Driver::with_vec(Receiver::new(), Tokio(b), TokioClock::new());
        let (c, s) = tokio::join!(client.next_event(), server.next_event());
        assert_eq!(
            (c.unwrap(), s.unwrap()),
            (SenderEvent::Connected, ReceiverEvent::Connected)
        );
        // No messages: the client says BYE at once. Then an application call queues one more.
        assert_eq!(client.next_event().await.unwrap(), SenderEvent::Done);
        client.connection_mut().send(b"app");
        client.flush().await.unwrap();
        assert_eq!(
            server.next_event().await.unwrap(),
            ReceiverEvent::Committed(Vec::new())
        );
        // The server had both frames in one read: the message is queued, and its ACK is out.
        assert_eq!(
            server.next_event().await.unwrap(),
            ReceiverEvent::Message(0, b"app".to_vec())
        );
        drop(server);
        // The client reads the ACK, is done again, and its BYE meets the closed pipe.
        let err = client.drive().await.unwrap_err();
        assert!(
            matches!(&err, DriverError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe),
            "{err:?}"
        );
        // The caller ends the session; what it had queued still comes out before the reason.
        let now = client.now();
        client.connection_mut().handle_close(now);
        assert_eq!(client.drive().await.unwrap(), Some(SenderEvent::Acked(0)));
        assert_eq!(client.next_event().await.unwrap(), SenderEvent::Done);
        assert!(matches!(
            client.next_event().await,
            Err(DriverError::Session(SessionError::TransportClosed))
        ));
    }

    /// A session that only sends: its frames, in order; whatever arrives is counted.
    struct Frames {
        queue: std::collections::VecDeque<Vec<u8>>,
        received: usize,
        ended: Option<SessionError>,
    }

    impl Connection for Frames {
        type Event = usize;

        fn handle_input(&mut self, _: Instant, input: &[u8]) -> Result<(), SessionError> {
            self.received += input.len();
            Ok(())
        }

        fn handle_close(&mut self, _: Instant) {
            self.ended = Some(SessionError::TransportClosed);
        }

        fn handle_timeout(&mut self, _: Instant) {}

        fn poll_transmit(
            &mut self,
            _: Instant,
            buf: &mut [u8],
        ) -> Result<Option<usize>, SessionError> {
            let Some(frame) = self.queue.front() else {
                return Ok(None);
            };
            let len = frame.len();
            buf.get_mut(..len)
                .ok_or(SessionError::InsufficientSize { required: len })?
                .copy_from_slice(frame);
            self.queue.pop_front();
            Ok(Some(len))
        }

        fn max_transmit_len(&self) -> usize {
            self.queue.iter().map(Vec::len).max().unwrap_or(0)
        }

        fn poll_timeout(&self) -> Option<Instant> {
            None
        }

        fn poll_event(&mut self) -> Option<usize> {
            None
        }

        fn error(&self) -> Option<SessionError> {
            self.ended
        }
    }

    #[tokio::test]
    async fn frames_larger_than_a_write_and_many_small_ones_arrive_whole_and_in_order() {
        use tokio::io::AsyncReadExt;
        // Small frames gathered into shared writes, one frame far larger than a write chunk (sealed on the heap),
        // through a pipe that takes 100 bytes at a time, so that writes stop half-way again and again.
        let mut frames: Vec<Vec<u8>> = (0..300u32)
            .map(|i| (0..(i % 50 + 1)).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        frames.insert(150, (0..20_000u32).map(|i| (i % 251) as u8).collect());
        let expected: Vec<u8> = frames.concat();
        let (a, mut b) = tokio::io::duplex(100);
        let conn = Frames {
            queue: frames.into(),
            received: 0,
            ended: None,
        };
        let mut driver = Driver::with_vec(conn, Tokio(a), TokioClock::new());
        let (flushed, got) = tokio::join!(driver.flush(), async {
            let mut got = vec![0u8; expected.len()];
            b.read_exact(&mut got).await.map(|_| got)
        });
        flushed.unwrap();
        assert_eq!(got.unwrap(), expected);
        assert!(driver.connection().queue.is_empty());
    }

    #[tokio::test]
    async fn a_heap_buffer_grows_for_a_frame_queued_later_and_a_caller_buffer_reports_it() {
        use tokio::io::AsyncReadExt;
        let small = Frames {
            queue: vec![vec![1u8; 10]].into(),
            received: 0,
            ended: None,
        };
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut driver = Driver::with_vec(small, Tokio(a), TokioClock::new());
        driver.flush().await.unwrap();
        // An OTA chunk larger than the buffer sized at the start (1 KiB) comes later.
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        driver.connection_mut().queue.push_back(big.clone());
        driver.flush().await.unwrap();
        let mut got = vec![0u8; 10 + big.len()];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[10..], &big[..]);

        // A caller's buffer does not grow: the frame waits in the session, as the error says.
        let (c, _d) = tokio::io::duplex(64 * 1024);
        let late = Frames {
            queue: Default::default(),
            received: 0,
            ended: None,
        };
        let mut fixed = Driver::new(late, Tokio(c), TokioClock::new(), [0u8; 1024]);
        fixed.connection_mut().queue.push_back(big);
        assert!(matches!(
            fixed.flush().await,
            Err(DriverError::InsufficientSize { required: 5000 })
        ));
        assert_eq!(fixed.connection().queue.len(), 1);
    }

    #[tokio::test]
    async fn a_cancelled_flush_loses_nothing() {
        use tokio::io::AsyncReadExt;
        let frames: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 200]).collect();
        let expected = frames.concat();
        let (a, mut b) = tokio::io::duplex(256);
        let mut driver = Driver::with_vec(
            Frames {
                queue: frames.into(),
                received: 0,
                ended: None,
            },
            Tokio(a),
            TokioClock::new(),
        );
        // Nobody reads yet: the flush stops on a full pipe and is dropped there, its frames taken from the session.
        let first =
            tokio::time::timeout(std::time::Duration::from_millis(50), driver.flush()).await;
        assert!(first.is_err(), "the pipe cannot take 10,000 bytes unread");
        let (flushed, got) = tokio::join!(driver.flush(), async {
            let mut got = vec![0u8; expected.len()];
            b.read_exact(&mut got).await.map(|_| got)
        });
        flushed.unwrap();
        assert_eq!(got.unwrap(), expected);
    }
}

/// A connection that records the length of each input it is given.
#[derive(Default)]
struct Inputs(Vec<usize>);

impl Connection for Inputs {
    type Event = ();
    fn handle_input(&mut self, _now: Instant, input: &[u8]) -> Result<(), SessionError> {
        self.0.push(input.len());
        Ok(())
    }
    fn handle_close(&mut self, _now: Instant) {}
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(
        &mut self,
        _now: Instant,
        _buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        Ok(None)
    }
    fn max_transmit_len(&self) -> usize {
        16
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn error(&self) -> Option<SessionError> {
        None
    }
}

/// A grown buffer takes more of what waits in one read; the first reads took the 1 KiB of `with_vec`.
#[test]
fn a_grown_buffer_takes_more_input_per_read() {
    use embedded_io::Write;
    let clock = Rc::new(Cell::new(0));
    let (mut a, b) = pipe();
    a.write_all(&[7; 10_000]).unwrap();
    let mut driver = edriver(Inputs::default(), b, &clock);
    driver.step().unwrap();
    driver.grow_buffer(4096);
    driver.step().unwrap();
    driver.step().unwrap();
    driver.grow_buffer(100);
    driver.step().unwrap();
    assert_eq!(driver.connection().0, [1024, 4096, 4096, 784]);
}
