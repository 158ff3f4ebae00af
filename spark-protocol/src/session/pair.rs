//! A deterministic in-memory link between two [`Connection`]s on virtual time, with fault
//! injection: the simulator the session tests (and third-party tests of code built on the
//! sessions) run on.
//!
//! A [`Pair`] holds side [`Side::A`] (by convention the device) and side [`Side::B`] (the cloud).
//! Every call of [`Connection::poll_transmit`] yields one *frame*; frames are numbered from 0 in
//! the order they are sent, over both directions. Each frame is delivered to the other side after
//! the link's latency, unless a fault befalls it:
//!
//! - **drop**: never delivered;
//! - **duplicate**: delivered twice;
//! - **reorder**: held back and delivered after the next frame in the same direction;
//! - **corrupt**: one byte flipped (`xor 0xff`) at a chosen offset;
//! - **stall**: from a frame on, one side's frames are no longer delivered, while the link stays
//!   up (a peer hung in the middle of the handshake);
//! - **cut**: at a frame (that frame is lost) or at an instant, the link goes down: frames in
//!   flight are lost and both sides are told the stream closed.
//!
//! Faults come from a [`Faults`] plan: rates drawn from a seeded generator (the same seed gives the
//! same run, byte for byte), and faults aimed at given frame numbers. Time is virtual: when
//! nothing is left to do at the current instant, [`Pair::run`] jumps to the next delivery or the
//! next [`Connection::poll_timeout`] of either side, so a test of a 30 s watchdog takes no time.
//!
//! When a side's session ends, the link carries its last frames and then closes, as a driver
//! closing its socket would: the other side is told the stream closed.
//!
//! Every frame's fate is written to the [`Pair::trace`], and each side's events are collected in
//! order ([`Pair::events_a`], [`Pair::take_events_a`], and the same for B).
//!
//! A device whose first frame (its Hello) is lost never hears the cloud's Hello, and ends with
//! the Core's 20 s handshake timeout, reached on virtual time at once:
//!
//! ```
//! use spark_protocol::crypto::{SessionKey, rng::HardwareRng};
//! use spark_protocol::session::cloud::{CloudConfig, CloudConnection, NoKeys};
//! use spark_protocol::session::device::{DeviceConfig, DeviceConnection, NoFirmware};
//! use spark_protocol::session::pair::{Fate, Fault, Faults, Pair, Side, TraceEntry};
//! use spark_protocol::session::{Instant, SessionError};
//!
//! let secret = SessionKey::from_bytes([4; 40]);
//! let device = DeviceConnection::from_session(Instant::ZERO, &secret, DeviceConfig::new([1; 12]), NoFirmware);
//! let rng = HardwareRng(|dest: &mut [u8]| dest.fill(9));
//! let cloud = CloudConnection::from_session(
//!     Instant::ZERO, NoKeys, NoKeys, rng, CloudConfig::default(), &secret, [1; 12].into(),
//! );
//! let mut link = Pair::with_faults(device, cloud, Faults::none().at_frame(0, Fault::Drop));
//! let _ = link.run(Instant::from_secs(60));
//! assert!(matches!(
//!     link.trace().first(),
//!     Some(TraceEntry::Frame { index: 0, from: Side::A, fate: Fate::Dropped, .. })
//! ));
//! assert_eq!(link.errors().0, Some(SessionError::HandshakeTimeout));
//! assert!(link.now() >= Instant::from_secs(20));
//! ```

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use super::{Connection, Instant, SessionError};

/// One end of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first connection (by convention the device).
    A,
    /// The second connection (by convention the cloud).
    B,
}

impl Side {
    /// The other end.
    #[must_use]
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// A fault aimed at one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The frame is lost.
    Drop,
    /// The frame arrives twice.
    Duplicate,
    /// The frame arrives after the next frame in the same direction.
    Reorder,
    /// The byte at `offset` (modulo the frame's length) is flipped.
    Corrupt {
        /// Which byte.
        offset: usize,
    },
    /// From this frame on, the sending side's frames are never delivered.
    Stall,
    /// The link goes down: this frame and every frame in flight are lost, both sides see the
    /// stream close.
    Cut,
}

/// What happened to a frame, as written in the [`Pair::trace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// Delivered as sent.
    Delivered,
    /// Lost.
    Dropped,
    /// Delivered twice.
    Duplicated,
    /// Delivered after the next frame of its direction.
    Reordered,
    /// Delivered with the byte at `offset` flipped.
    Corrupted {
        /// The flipped byte.
        offset: usize,
    },
    /// Not delivered: its side is stalled.
    Stalled,
    /// Lost with the link.
    Cut,
}

/// One line of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceEntry {
    /// A side sent a frame.
    Frame {
        /// When it was sent.
        at: Instant,
        /// Its number (over both directions).
        index: u64,
        /// Who sent it.
        from: Side,
        /// Its bytes as sent (before any corruption).
        bytes: Vec<u8>,
        /// What the link did with it.
        fate: Fate,
    },
    /// The link went down (a cut, or a side's session ended).
    Closed {
        /// When.
        at: Instant,
        /// The side whose session ending closed the link; `None` for a cut.
        by: Option<Side>,
    },
}

/// The fault plan of a [`Pair`]: random rates (parts per million of frames, drawn from `seed`)
/// and faults aimed at given frames, plus a cut at an instant.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The generator's seed.
    pub seed: u64,
    /// Per million frames, how many are dropped.
    pub drop_ppm: u32,
    /// Per million frames, how many are duplicated.
    pub duplicate_ppm: u32,
    /// Per million frames, how many are reordered.
    pub reorder_ppm: u32,
    /// Per million frames, how many have a byte flipped.
    pub corrupt_ppm: u32,
    /// Only frames sent by this side suffer the random faults (`None`: both).
    pub random_only_from: Option<Side>,
    /// Faults aimed at frame numbers. A frame number may appear once.
    pub at_frames: Vec<(u64, Fault)>,
    /// The link goes down at this instant, if it is still up.
    pub cut_at: Option<Instant>,
}

impl Faults {
    /// No faults: a perfect link.
    #[must_use]
    pub fn none() -> Self {
        Faults::default()
    }

    /// Random faults from `seed`, none yet enabled.
    #[must_use]
    pub fn seeded(seed: u64) -> Self {
        Faults {
            seed,
            ..Faults::default()
        }
    }

    /// Adds a fault aimed at frame `index`.
    #[must_use]
    pub fn at_frame(mut self, index: u64, fault: Fault) -> Self {
        self.at_frames.push((index, fault));
        self
    }

    /// Cuts the link at `at`.
    #[must_use]
    pub fn cut_at(mut self, at: Instant) -> Self {
        self.cut_at = Some(at);
        self
    }
}

/// How a [`Pair::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Nothing is in flight and neither side has a timer: nothing more can happen.
    Idle,
    /// The deadline came first; virtual time is now the deadline.
    Deadline,
    /// The caller's condition held.
    Stopped,
}

/// A small, seeded generator (SplitMix64): the pair's only source of chance.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn hit(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.next_u64() % 1_000_000 < u64::from(ppm)
    }
}

#[derive(Debug)]
struct InFlight {
    deliver_at: Instant,
    bytes: Vec<u8>,
}

/// One direction of the link.
#[derive(Debug, Default)]
struct Lane {
    queue: VecDeque<InFlight>,
    /// A reordered frame, waiting for the next frame of this direction to pass it.
    held: Option<Vec<u8>>,
    stalled: bool,
    /// Whether this side's session ending has closed the link.
    ended: bool,
}

/// Two connections joined by a simulated link. See the [module docs](self).
#[derive(Debug)]
pub struct Pair<A: Connection, B: Connection> {
    a: A,
    b: B,
    now: Instant,
    latency: Duration,
    faults: Faults,
    rng: SplitMix64,
    /// Frames from A (to B) and from B (to A).
    lanes: [Lane; 2],
    link_up: bool,
    next_frame: u64,
    buf: Vec<u8>,
    events_a: VecDeque<A::Event>,
    events_b: VecDeque<B::Event>,
    trace: Vec<TraceEntry>,
    record_bytes: bool,
}

fn lane(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

impl<A: Connection, B: Connection> Pair<A, B> {
    /// Joins `a` and `b` by a perfect link with no latency, at virtual time [`Instant::ZERO`].
    pub fn new(a: A, b: B) -> Self {
        Pair::with_faults(a, b, Faults::none())
    }

    /// Joins `a` and `b` by a link with the given faults.
    pub fn with_faults(a: A, b: B, faults: Faults) -> Self {
        let len = a.max_transmit_len().max(b.max_transmit_len());
        Pair {
            a,
            b,
            now: Instant::ZERO,
            latency: Duration::ZERO,
            rng: SplitMix64(faults.seed),
            faults,
            lanes: [Lane::default(), Lane::default()],
            link_up: true,
            next_frame: 0,
            buf: vec![0; len],
            events_a: VecDeque::new(),
            events_b: VecDeque::new(),
            trace: Vec::new(),
            record_bytes: true,
        }
    }

    /// Sets the one-way latency of every frame (zero by default).
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Starts virtual time at `now` instead of zero (only before the first run).
    pub fn set_now(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Whether the trace keeps each frame's bytes (it does by default; long transfers may turn
    /// it off to save memory: the entries then hold no bytes).
    pub fn record_bytes(&mut self, on: bool) {
        self.record_bytes = on;
    }

    /// The current virtual time.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Side A.
    #[must_use]
    pub fn a(&self) -> &A {
        &self.a
    }

    /// Side A, for the application's calls; what they queue goes out at the next run.
    pub fn a_mut(&mut self) -> &mut A {
        &mut self.a
    }

    /// Side B.
    #[must_use]
    pub fn b(&self) -> &B {
        &self.b
    }

    /// Side B, for the application's calls; what they queue goes out at the next run.
    pub fn b_mut(&mut self) -> &mut B {
        &mut self.b
    }

    /// Both sides.
    pub fn into_inner(self) -> (A, B) {
        (self.a, self.b)
    }

    /// The events A reported so far and not taken.
    #[must_use]
    pub fn events_a(&self) -> &VecDeque<A::Event> {
        &self.events_a
    }

    /// The events B reported so far and not taken.
    #[must_use]
    pub fn events_b(&self) -> &VecDeque<B::Event> {
        &self.events_b
    }

    /// Takes A's events.
    pub fn take_events_a(&mut self) -> Vec<A::Event> {
        self.events_a.drain(..).collect()
    }

    /// Takes B's events.
    pub fn take_events_b(&mut self) -> Vec<B::Event> {
        self.events_b.drain(..).collect()
    }

    /// Every frame's fate and the link's closing, in order.
    #[must_use]
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// How many frames have been sent, over both directions.
    #[must_use]
    pub fn frames_sent(&self) -> u64 {
        self.next_frame
    }

    /// Whether the link is still up.
    #[must_use]
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Stalls `side` from now on: its frames are no longer delivered, the link stays up.
    pub fn stall(&mut self, side: Side) {
        self.lanes[lane(side)].stalled = true;
    }

    /// Cuts the link now: frames in flight are lost, both sides see the stream close.
    pub fn cut(&mut self) {
        self.close_link(None);
    }

    /// Runs until nothing more can happen ([`Outcome::Idle`]) or virtual time reaches
    /// `deadline` ([`Outcome::Deadline`]).
    pub fn run(&mut self, deadline: Instant) -> Outcome {
        self.run_until(deadline, |_| false)
    }

    /// Like [`Pair::run`], but stops as soon as `done` holds ([`Outcome::Stopped`]); `done` is
    /// asked after every step that did something, and may take events or call into the sides.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Outcome {
        loop {
            if done(self) {
                return Outcome::Stopped;
            }
            if self.step_now() {
                continue;
            }
            // Nothing left at this instant: jump to the next thing that will happen.
            let Some(next) = self.next_wakeup() else {
                return Outcome::Idle;
            };
            if next > deadline {
                self.now = self.now.max(deadline);
                return Outcome::Deadline;
            }
            self.now = self.now.max(next);
            self.fire_timers();
        }
    }

    /// Does everything due at the current instant once; whether anything happened.
    fn step_now(&mut self) -> bool {
        let mut busy = false;
        if let Some(at) = self.faults.cut_at
            && self.link_up
            && at <= self.now
        {
            self.close_link(None);
            busy = true;
        }
        busy |= self.fire_timers();
        busy |= self.collect(Side::A);
        busy |= self.collect(Side::B);
        busy |= self.deliver(Side::A);
        busy |= self.deliver(Side::B);
        busy |= self.close_ended();
        busy |= self.collect_events();
        busy
    }

    fn fire_timers(&mut self) -> bool {
        let mut fired = false;
        if self.a.poll_timeout().is_some_and(|t| t <= self.now) {
            self.a.handle_timeout(self.now);
            fired = true;
        }
        if self.b.poll_timeout().is_some_and(|t| t <= self.now) {
            self.b.handle_timeout(self.now);
            fired = true;
        }
        fired
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.a.poll_timeout());
        consider(self.b.poll_timeout());
        for l in &self.lanes {
            consider(l.queue.front().map(|f| f.deliver_at));
        }
        if self.link_up {
            consider(self.faults.cut_at);
        }
        // A reordered frame with nothing after it is released once everything else is quiet.
        if next.is_none() && self.lanes.iter().any(|l| l.held.is_some()) {
            next = Some(self.now);
        }
        next
    }

    /// Takes every frame `from` has queued and puts it on the link.
    fn collect(&mut self, from: Side) -> bool {
        let mut any = false;
        loop {
            let now = self.now;
            let sent = match from {
                Side::A => self.a.poll_transmit(now, &mut self.buf),
                Side::B => self.b.poll_transmit(now, &mut self.buf),
            };
            let n = match sent {
                Ok(Some(n)) => n.min(self.buf.len()),
                Ok(None) | Err(_) => break,
            };
            any = true;
            let bytes = self.buf[..n].to_vec();
            self.send_frame(from, bytes);
        }
        // A held (reordered) frame is released when its direction has gone quiet and the rest of
        // the link too, so that it is late but not lost.
        if !any {
            let idle = self.lanes.iter().all(|l| l.queue.is_empty());
            let l = &mut self.lanes[lane(from)];
            if idle && let Some(bytes) = l.held.take() {
                if self.link_up {
                    l.queue.push_back(InFlight {
                        deliver_at: self.now + self.latency,
                        bytes,
                    });
                }
                return true;
            }
        }
        any
    }

    fn send_frame(&mut self, from: Side, bytes: Vec<u8>) {
        let index = self.next_frame;
        self.next_frame += 1;
        let aimed = self
            .faults
            .at_frames
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, f)| *f);
        let random_ok = self.faults.random_only_from.is_none_or(|s| s == from);
        let fault = aimed.or_else(|| {
            if !random_ok {
                return None;
            }
            let f = &self.faults;
            let (d, u, r, c) = (f.drop_ppm, f.duplicate_ppm, f.reorder_ppm, f.corrupt_ppm);
            if self.rng.hit(d) {
                Some(Fault::Drop)
            } else if self.rng.hit(u) {
                Some(Fault::Duplicate)
            } else if self.rng.hit(r) {
                Some(Fault::Reorder)
            } else if self.rng.hit(c) {
                let offset = usize::try_from(self.rng.next_u64() % 4096).unwrap_or(0);
                Some(Fault::Corrupt { offset })
            } else {
                None
            }
        });
        if fault == Some(Fault::Stall) {
            self.lanes[lane(from)].stalled = true;
        }
        if fault == Some(Fault::Cut) {
            self.record(index, from, &bytes, Fate::Cut);
            self.close_link(None);
            return;
        }
        if !self.link_up {
            self.record(index, from, &bytes, Fate::Cut);
            return;
        }
        if self.lanes[lane(from)].stalled {
            self.record(index, from, &bytes, Fate::Stalled);
            return;
        }
        let at = self.now + self.latency;
        let fate = match fault {
            None | Some(Fault::Stall) | Some(Fault::Cut) => Fate::Delivered,
            Some(Fault::Drop) => Fate::Dropped,
            Some(Fault::Duplicate) => Fate::Duplicated,
            Some(Fault::Reorder) => Fate::Reordered,
            Some(Fault::Corrupt { offset }) => Fate::Corrupted {
                offset: if bytes.is_empty() {
                    0
                } else {
                    offset % bytes.len()
                },
            },
        };
        self.record(index, from, &bytes, fate);
        let l = &mut self.lanes[lane(from)];
        let mut push = |bytes: Vec<u8>| {
            l.queue.push_back(InFlight {
                deliver_at: at,
                bytes,
            })
        };
        match fate {
            Fate::Dropped => {}
            Fate::Duplicated => {
                push(bytes.clone());
                push(bytes);
            }
            Fate::Reordered => {
                // A second reorder in a row releases the first one behind it.
                if let Some(prev) = l.held.replace(bytes) {
                    l.queue.push_back(InFlight {
                        deliver_at: at,
                        bytes: prev,
                    });
                }
                return;
            }
            Fate::Corrupted { offset } => {
                let mut bytes = bytes;
                if let Some(b) = bytes.get_mut(offset) {
                    *b ^= 0xff;
                }
                push(bytes);
            }
            _ => push(bytes),
        }
        if fate != Fate::Reordered
            && let Some(prev) = l.held.take()
        {
            l.queue.push_back(InFlight {
                deliver_at: at,
                bytes: prev,
            });
        }
    }

    fn record(&mut self, index: u64, from: Side, bytes: &[u8], fate: Fate) {
        let bytes = if self.record_bytes {
            bytes.to_vec()
        } else {
            Vec::new()
        };
        self.trace.push(TraceEntry::Frame {
            at: self.now,
            index,
            from,
            bytes,
            fate,
        });
    }

    /// Delivers the frames from `from` that are due.
    fn deliver(&mut self, from: Side) -> bool {
        let mut any = false;
        while let Some(f) = self.lanes[lane(from)].queue.front() {
            if f.deliver_at > self.now {
                break;
            }
            let Some(f) = self.lanes[lane(from)].queue.pop_front() else {
                break;
            };
            any = true;
            // The receiver's error is kept by its session and seen by `close_ended`.
            let _ended = match from {
                Side::A => self.b.handle_input(self.now, &f.bytes),
                Side::B => self.a.handle_input(self.now, &f.bytes),
            };
        }
        any
    }

    /// Closes the link once a side whose session ended has had its last frames delivered.
    fn close_ended(&mut self) -> bool {
        if !self.link_up {
            return false;
        }
        for side in [Side::A, Side::B] {
            let ended = match side {
                Side::A => self.a.error().is_some(),
                Side::B => self.b.error().is_some(),
            };
            let l = &self.lanes[lane(side)];
            if ended && !l.ended && l.queue.is_empty() {
                self.lanes[lane(side)].ended = true;
                self.close_link(Some(side));
                return true;
            }
        }
        false
    }

    fn close_link(&mut self, by: Option<Side>) {
        if !self.link_up {
            return;
        }
        self.link_up = false;
        for l in &mut self.lanes {
            l.queue.clear();
            l.held = None;
        }
        self.trace.push(TraceEntry::Closed { at: self.now, by });
        self.a.handle_close(self.now);
        self.b.handle_close(self.now);
    }

    fn collect_events(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.a.poll_event() {
            self.events_a.push_back(e);
            any = true;
        }
        while let Some(e) = self.b.poll_event() {
            self.events_b.push_back(e);
            any = true;
        }
        any
    }

    /// Each side's error, once its session has ended.
    #[must_use]
    pub fn errors(&self) -> (Option<SessionError>, Option<SessionError>) {
        (self.a.error(), self.b.error())
    }
}
