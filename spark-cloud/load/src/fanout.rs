//! The accounting of the fan-out phase: which events each subscriber should have received, which it did, and
//! whether any was dropped or reached a user it does not belong to.
//!
//! Publisher `k` is owned by user `k` and publishes private events named [`private_name`]`(k)` and, now and then,
//! public ones named [`PUBLIC_NAME`]. A subscriber of user `u` on [`PREFIX`] must see every private event of user
//! `u` and every public event, and nothing else.

/// The prefix every fan-out subscriber subscribes to.
pub const PREFIX: &str = "load/fan/";
/// The name of the public events.
pub const PUBLIC_NAME: &str = "load/fan/public";

/// The name of user `user`'s private events.
pub fn private_name(user: usize) -> String {
    format!("{PREFIX}u{user}")
}

/// What one subscriber received, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Private events of the subscriber's own user.
    pub own: u64,
    /// Public events.
    pub public: u64,
    /// Events it must not see: another user's private events, or names outside the phase.
    pub foreign: u64,
}

impl Received {
    /// Every event received.
    pub fn total(&self) -> u64 {
        self.own + self.public + self.foreign
    }
}

/// Classifies the events of one SSE stream (any cut into pieces) for the subscriber of user `user`.
#[derive(Debug, Clone)]
pub struct StreamTally {
    own: Vec<u8>,
    line: Vec<u8>,
    /// What it has seen so far.
    pub received: Received,
}

impl StreamTally {
    /// A tally for a subscriber of user `user`.
    pub fn new(user: usize) -> StreamTally {
        StreamTally {
            own: private_name(user).into_bytes(),
            line: Vec::with_capacity(64),
            received: Received::default(),
        }
    }

    /// Feeds the next piece of the stream (chunked-encoding lines and `data:` lines are passed over).
    pub fn feed(&mut self, piece: &[u8]) {
        for part in piece.split_inclusive(|&b| b == b'\n') {
            let ends = part.last() == Some(&b'\n');
            // Only the start of a line is needed to tell an `event:` line; long data lines are not kept whole.
            let room = 128usize.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            if ends {
                self.line_done();
            }
        }
    }

    fn line_done(&mut self) {
        let line = std::mem::take(&mut self.line);
        if let Some(name) = line.strip_prefix(b"event: ") {
            let name = name.strip_suffix(b"\n").unwrap_or(name);
            if name == self.own.as_slice() {
                self.received.own += 1;
            } else if name == PUBLIC_NAME.as_bytes() {
                self.received.public += 1;
            } else {
                self.received.foreign += 1;
            }
        }
        self.line = line;
        self.line.clear();
    }
}

/// The phase's verdict over all subscribers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Events every subscriber should have received, summed.
    pub expected: u64,
    /// Events received, summed (foreign ones included).
    pub received: u64,
    /// Events a subscriber should have received and did not, summed.
    pub missing: u64,
    /// Events a subscriber received more often than they were sent (duplicates), summed.
    pub extra: u64,
    /// Events a subscriber received that it must not see.
    pub misdelivered: u64,
    /// Subscribers short of at least one event.
    pub short_subscribers: u64,
}

impl Verdict {
    /// Every subscriber got exactly its events.
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.misdelivered == 0
    }
}

/// Checks each subscriber `(user, received)` against the private events sent per user (`private_sent[user]`) and
/// the public events sent. A user index past `private_sent` had no private events.
pub fn account(
    private_sent: &[u64],
    public_sent: u64,
    subscribers: &[(usize, Received)],
) -> Verdict {
    let mut v = Verdict::default();
    for &(user, got) in subscribers {
        let own = private_sent.get(user).copied().unwrap_or(0);
        v.expected += own + public_sent;
        v.received += got.total();
        let missing = own.saturating_sub(got.own) + public_sent.saturating_sub(got.public);
        v.missing += missing;
        v.extra += got.own.saturating_sub(own) + got.public.saturating_sub(public_sent);
        v.misdelivered += got.foreign;
        v.short_subscribers += u64::from(missing > 0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Vec<u8> {
        format!("event: {name}\ndata: {{\"data\":\"event: {PUBLIC_NAME}\",\"ttl\":\"60\"}}\n\n")
            .into_bytes()
    }

    /// A chunked SSE body of `names`, one chunk per frame, as the cloud sends it.
    fn body(names: &[&str]) -> Vec<u8> {
        let mut out = b":ok\n\n".to_vec();
        for name in names {
            let f = frame(name);
            out.extend_from_slice(format!("{:x}\r\n", f.len()).as_bytes());
            out.extend_from_slice(&f);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn events_are_told_apart_across_any_cut() {
        let own = private_name(3);
        let other = private_name(4);
        let stream = body(&[&own, PUBLIC_NAME, &other, &own, "load/fan/u33"]);
        for cut in 1..stream.len() {
            let mut t = StreamTally::new(3);
            for piece in stream.chunks(cut) {
                t.feed(piece);
            }
            assert_eq!(
                t.received,
                Received {
                    own: 2,
                    public: 1,
                    foreign: 2
                },
                "pieces of {cut}"
            );
        }
    }

    #[test]
    fn accounting_catches_a_dropped_and_a_misdelivered_event() {
        let sent = [3, 2];
        let public = 1;
        let exact = |own| Received {
            own,
            public,
            foreign: 0,
        };
        let all_there = [(0, exact(3)), (0, exact(3)), (1, exact(2))];
        let v = account(&sent, public, &all_there);
        assert!(v.clean());
        assert_eq!((v.expected, v.received), (11, 11));

        // One subscriber of user 1 lost one private event.
        let dropped = [(0, exact(3)), (0, exact(3)), (1, exact(1))];
        let v = account(&sent, public, &dropped);
        assert!(!v.clean());
        assert_eq!((v.missing, v.short_subscribers, v.misdelivered), (1, 1, 0));

        // A subscriber of user 0 lost the public event.
        let v = account(
            &sent,
            public,
            &[(
                0,
                Received {
                    own: 3,
                    public: 0,
                    foreign: 0,
                },
            )],
        );
        assert_eq!((v.missing, v.short_subscribers), (1, 1));

        // A subscriber of user 1 saw one of user 0's private events: caught even though its count is not short.
        let leak = Received {
            own: 2,
            public,
            foreign: 1,
        };
        let v = account(&sent, public, &[(0, exact(3)), (1, leak)]);
        assert!(!v.clean());
        assert_eq!((v.missing, v.misdelivered), (0, 1));

        // A duplicate is caught too.
        let v = account(&sent, public, &[(1, exact(3))]);
        assert_eq!((v.extra, v.missing), (1, 0));
    }
}
