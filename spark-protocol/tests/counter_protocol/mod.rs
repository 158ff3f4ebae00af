//! A small test-only protocol implementing `Connection`, so the drivers and the pair can be
//! tested on every path without the device and cloud sessions.
//!
//! Frames: `kind (1) | seq (2, BE) | len (1) | payload (len <= 64) | check (1)` where `check` is
//! the wrapping sum of the bytes before it, xor 0x5a.
//!
//! The `Sender` says HELLO and must hear WELCOME within 1 s (else `HandshakeTimeout`); it then
//! sends DATA frames numbered from 0 with a window of in-flight frames, resends every unacked
//! frame 200 ms after the oldest was sent (go-back-N), gives up with `Timeout` after 5 resends of
//! the same frame, and says BYE when every message is acked.
//!
//! The `Receiver` answers HELLO with WELCOME, takes DATA strictly in order (a repeat is acked
//! again and not reported; a gap is `BadCounter`, like the Spark rule), and commits what it got
//! only on BYE: a transfer cut short commits nothing. It ends with `PingTimeout` after 3 s of
//! silence once connected.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;

use spark_protocol::session::{Connection, Instant, SessionError};

pub const HELLO: u8 = 1;
pub const WELCOME: u8 = 2;
pub const DATA: u8 = 3;
pub const ACK: u8 = 4;
pub const BYE: u8 = 5;
pub const MAX_PAYLOAD: usize = 64;
pub const MAX_FRAME: usize = 5 + MAX_PAYLOAD;
pub const HANDSHAKE_MS: u64 = 1000;
pub const RESEND_MS: u64 = 200;
pub const MAX_RESENDS: u32 = 5;
pub const IDLE_MS: u64 = 3000;

pub fn frame(kind: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= MAX_PAYLOAD);
    let mut f = vec![kind];
    f.extend_from_slice(&seq.to_be_bytes());
    f.push(payload.len() as u8);
    f.extend_from_slice(payload);
    let check = f.iter().fold(0u8, |a, b| a.wrapping_add(*b)) ^ 0x5a;
    f.push(check);
    f
}

/// Reassembles frames from a byte stream in any chunking.
#[derive(Debug, Default)]
struct Deframer {
    buf: Vec<u8>,
}

impl Deframer {
    fn push(&mut self, input: &[u8]) {
        self.buf.extend_from_slice(input);
    }

    fn next(&mut self) -> Result<Option<(u8, u16, Vec<u8>)>, SessionError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(self.buf[3]);
        if len > MAX_PAYLOAD {
            return Err(SessionError::Oversized {
                len,
                max: MAX_PAYLOAD,
            });
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let f: Vec<u8> = self.buf.drain(..5 + len).collect();
        let check = f[..4 + len].iter().fold(0u8, |a, b| a.wrapping_add(*b)) ^ 0x5a;
        if check != f[4 + len] {
            return Err(SessionError::Unexpected("bad check byte"));
        }
        Ok(Some((
            f[0],
            u16::from_be_bytes([f[1], f[2]]),
            f[4..4 + len].to_vec(),
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    Connected,
    Acked(u16),
    Done,
}

#[derive(Debug)]
pub struct Sender {
    messages: Vec<Vec<u8>>,
    window: usize,
    deframer: Deframer,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<SenderEvent>,
    error: Option<SessionError>,
    started: Option<Instant>,
    connected: bool,
    /// Next message to send for the first time.
    next: usize,
    /// Oldest unacked message.
    base: usize,
    resend_at: Option<Instant>,
    resends: u32,
    done: bool,
}

impl Sender {
    pub fn new(messages: Vec<Vec<u8>>, window: usize) -> Self {
        Sender {
            messages,
            window: window.max(1),
            deframer: Deframer::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            error: None,
            started: None,
            connected: false,
            next: 0,
            base: 0,
            resend_at: None,
            resends: 0,
            done: false,
        }
    }

    /// Queues one more message (an application call between driver steps).
    pub fn send(&mut self, payload: &[u8]) {
        self.messages.push(payload.to_vec());
        self.done = false;
    }

    pub fn acked(&self) -> usize {
        self.base
    }

    fn fail(&mut self, e: SessionError) {
        if self.error.is_none() {
            self.error = Some(e);
            self.out.clear();
        }
    }

    fn pump(&mut self, now: Instant) {
        if self.started.is_none() {
            self.started = Some(now);
            self.out.push_back(frame(HELLO, 0, b""));
        }
        if !self.connected || self.error.is_some() {
            return;
        }
        while self.next < self.messages.len() && self.next < self.base + self.window {
            self.out
                .push_back(frame(DATA, self.next as u16, &self.messages[self.next]));
            if self.resend_at.is_none() {
                self.resend_at = Some(Instant::from_millis(now.as_millis() + RESEND_MS));
            }
            self.next += 1;
        }
        if !self.done && self.base == self.messages.len() && self.base == self.next {
            self.done = true;
            self.out.push_back(frame(BYE, self.base as u16, b""));
            self.events.push_back(SenderEvent::Done);
        }
    }
}

impl Connection for Sender {
    type Event = SenderEvent;

    fn handle_input(&mut self, now: Instant, input: &[u8]) -> Result<(), SessionError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.deframer.push(input);
        loop {
            let next = match self.deframer.next() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.fail(e);
                    return Err(e);
                }
            };
            match next {
                (WELCOME, _, _) if !self.connected => {
                    self.connected = true;
                    self.events.push_back(SenderEvent::Connected);
                }
                (WELCOME, _, _) => {}
                (ACK, seq, _) if usize::from(seq) < self.next => {
                    let upto = usize::from(seq) + 1;
                    if upto > self.base {
                        for s in self.base..upto {
                            self.events.push_back(SenderEvent::Acked(s as u16));
                        }
                        self.base = upto;
                        self.resends = 0;
                        self.resend_at = (self.base < self.next)
                            .then(|| Instant::from_millis(now.as_millis() + RESEND_MS));
                    }
                }
                _ => {
                    let e = SessionError::Unexpected("frame the sender does not expect");
                    self.fail(e);
                    return Err(e);
                }
            }
        }
        self.pump(now);
        Ok(())
    }

    fn handle_close(&mut self, _now: Instant) {
        self.fail(SessionError::TransportClosed);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.error.is_some() {
            return;
        }
        self.pump(now);
        if !self.connected {
            if let Some(s) = self.started
                && now.as_millis() >= s.as_millis() + HANDSHAKE_MS
            {
                self.fail(SessionError::HandshakeTimeout);
            }
            return;
        }
        if let Some(at) = self.resend_at
            && now >= at
        {
            if self.resends == MAX_RESENDS {
                self.fail(SessionError::Timeout);
                return;
            }
            self.resends += 1;
            for s in self.base..self.next {
                self.out.push_back(frame(DATA, s as u16, &self.messages[s]));
            }
            self.resend_at = Some(Instant::from_millis(now.as_millis() + RESEND_MS));
        }
    }

    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.pump(now);
        let Some(f) = self.out.front() else {
            return Ok(None);
        };
        if buf.len() < f.len() {
            return Err(SessionError::InsufficientSize { required: f.len() });
        }
        let f = self.out.pop_front().unwrap();
        buf[..f.len()].copy_from_slice(&f);
        Ok(Some(f.len()))
    }

    fn max_transmit_len(&self) -> usize {
        MAX_FRAME
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        if !self.connected {
            // Before the first call the session has not started; it starts at the first poll.
            return self
                .started
                .map(|s| Instant::from_millis(s.as_millis() + HANDSHAKE_MS));
        }
        self.resend_at
    }

    fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    fn error(&self) -> Option<SessionError> {
        self.error
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverEvent {
    Connected,
    Message(u16, Vec<u8>),
    /// BYE came: everything received is committed.
    Committed(Vec<Vec<u8>>),
}

#[derive(Debug, Default)]
pub struct Receiver {
    deframer: Deframer,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<ReceiverEvent>,
    error: Option<SessionError>,
    connected: bool,
    expected: u16,
    received: Vec<Vec<u8>>,
    committed: Option<Vec<Vec<u8>>>,
    last_input: Option<Instant>,
}

impl Receiver {
    pub fn new() -> Self {
        Receiver::default()
    }

    /// What was committed (only after BYE).
    pub fn committed(&self) -> Option<&[Vec<u8>]> {
        self.committed.as_deref()
    }

    /// What was received so far, committed or not.
    pub fn received(&self) -> &[Vec<u8>] {
        &self.received
    }

    fn fail(&mut self, e: SessionError) -> SessionError {
        if self.error.is_none() {
            self.error = Some(e);
            self.out.clear();
        }
        e
    }
}

impl Connection for Receiver {
    type Event = ReceiverEvent;

    fn handle_input(&mut self, now: Instant, input: &[u8]) -> Result<(), SessionError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.last_input = Some(now);
        self.deframer.push(input);
        loop {
            let next = match self.deframer.next() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e)),
            };
            match next {
                (HELLO, _, _) => {
                    if !self.connected {
                        self.connected = true;
                        self.events.push_back(ReceiverEvent::Connected);
                    }
                    self.out.push_back(frame(WELCOME, 0, b""));
                }
                (DATA, seq, payload) if self.connected => {
                    if seq == self.expected {
                        self.received.push(payload.clone());
                        self.events.push_back(ReceiverEvent::Message(seq, payload));
                        self.out.push_back(frame(ACK, seq, b""));
                        self.expected = self.expected.wrapping_add(1);
                    } else if seq < self.expected {
                        // A repeat: ack again, report nothing.
                        self.out.push_back(frame(ACK, self.expected - 1, b""));
                    } else {
                        return Err(self.fail(SessionError::BadCounter {
                            expected: self.expected,
                            got: seq,
                        }));
                    }
                }
                (BYE, seq, _) if self.connected && seq == self.expected => {
                    if self.committed.is_none() {
                        self.committed = Some(self.received.clone());
                        self.events
                            .push_back(ReceiverEvent::Committed(self.received.clone()));
                    }
                }
                _ => {
                    return Err(self.fail(SessionError::Unexpected(
                        "frame the receiver does not expect",
                    )));
                }
            }
        }
    }

    fn handle_close(&mut self, _now: Instant) {
        self.fail(SessionError::TransportClosed);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| t <= now) {
            self.fail(SessionError::PingTimeout);
        }
    }

    fn poll_transmit(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let Some(f) = self.out.front() else {
            return Ok(None);
        };
        if buf.len() < f.len() {
            return Err(SessionError::InsufficientSize { required: f.len() });
        }
        let f = self.out.pop_front().unwrap();
        buf[..f.len()].copy_from_slice(&f);
        Ok(Some(f.len()))
    }

    fn max_transmit_len(&self) -> usize {
        MAX_FRAME
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.error.is_some() || self.committed.is_some() || !self.connected {
            return None;
        }
        self.last_input
            .map(|t| Instant::from_millis(t.as_millis() + IDLE_MS))
    }

    fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }

    fn error(&self) -> Option<SessionError> {
        self.error
    }
}

/// `n` distinct messages of varied lengths.
pub fn messages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            (0..(i % MAX_PAYLOAD) + 1)
                .map(|j| (i * 31 + j) as u8)
                .collect()
        })
        .collect()
}
