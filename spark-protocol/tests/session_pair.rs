//! The in-memory pair on the test-only counter protocol: every fault, virtual time, the trace,
//! determinism.

mod counter_protocol;

use core::time::Duration;

use counter_protocol::*;
use proptest::prelude::*;
use spark_protocol::session::pair::{Fate, Fault, Faults, Outcome, Pair, Side, TraceEntry};
use spark_protocol::session::{Connection, Instant, SessionError};

const END: Instant = Instant::from_secs(600);

fn pair(n: usize, window: usize, faults: Faults) -> Pair<Sender, Receiver> {
    Pair::with_faults(Sender::new(messages(n), window), Receiver::new(), faults)
}

fn fates(p: &Pair<Sender, Receiver>) -> Vec<(u64, Side, Fate)> {
    p.trace()
        .iter()
        .filter_map(|t| match t {
            TraceEntry::Frame {
                index, from, fate, ..
            } => Some((*index, *from, *fate)),
            _ => None,
        })
        .collect()
}

fn assert_complete(p: &Pair<Sender, Receiver>, n: usize) {
    let want = messages(n);
    assert_eq!(p.errors(), (None, None));
    assert_eq!(p.b().committed(), Some(&want[..]));
    let got: Vec<_> = p
        .events_b()
        .iter()
        .filter_map(|e| match e {
            ReceiverEvent::Message(_, m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, want, "each message reported once, in order");
    assert_eq!(p.events_a().back(), Some(&SenderEvent::Done));
}

#[test]
fn perfect_link_delivers_everything_and_goes_idle() {
    let mut p = pair(10, 3, Faults::none());
    assert_eq!(p.run(END), Outcome::Idle);
    assert_complete(&p, 10);
    // HELLO, WELCOME, 10 DATA, 10 ACK, BYE.
    assert_eq!(p.frames_sent(), 23);
    assert!(fates(&p).iter().all(|(_, _, f)| *f == Fate::Delivered));
    assert_eq!(p.now(), Instant::ZERO, "no timer had to fire");
    assert!(p.link_up());
    let a = p.take_events_a();
    assert_eq!(a.first(), Some(&SenderEvent::Connected));
    assert_eq!(a.len(), 12);
    assert!(p.events_a().is_empty());
}

#[test]
fn trace_numbers_frames_in_order_and_keeps_their_bytes() {
    let mut p = pair(1, 1, Faults::none());
    let _ = p.run(END);
    let TraceEntry::Frame {
        index,
        from,
        bytes,
        at,
        ..
    } = &p.trace()[0]
    else {
        panic!("first entry is a frame")
    };
    assert_eq!((*index, *from, *at), (0, Side::A, Instant::ZERO));
    assert_eq!(bytes, &frame(HELLO, 0, b""));
    let TraceEntry::Frame { from, bytes, .. } = &p.trace()[1] else {
        panic!()
    };
    assert_eq!(
        (*from, bytes.as_slice()),
        (Side::B, &frame(WELCOME, 0, b"")[..])
    );
}

#[test]
fn dropped_data_frame_is_resent_after_the_timer() {
    // Frame 2 is DATA 0 (after HELLO and WELCOME).
    let mut p = pair(4, 1, Faults::none().at_frame(2, Fault::Drop));
    assert_eq!(p.run(END), Outcome::Idle);
    assert_complete(&p, 4);
    assert_eq!(fates(&p)[2], (2, Side::A, Fate::Dropped));
    // The resend is the next frame, sent when the 200 ms timer fired.
    let TraceEntry::Frame { at, bytes, .. } = &p.trace()[3] else {
        panic!()
    };
    assert_eq!(*at, Instant::from_millis(RESEND_MS));
    assert_eq!(bytes, &frame(DATA, 0, &messages(1)[0]));
}

#[test]
fn dropped_frame_in_a_window_breaks_the_counter_rule() {
    let mut p = pair(6, 4, Faults::none().at_frame(3, Fault::Drop));
    let _ = p.run(END);
    assert_eq!(
        p.b().error(),
        Some(SessionError::BadCounter {
            expected: 1,
            got: 2
        })
    );
    // The receiver's end closes the link: the sender sees the stream close.
    assert_eq!(p.a().error(), Some(SessionError::TransportClosed));
    assert!(!p.link_up());
    assert!(matches!(
        p.trace().last(),
        Some(TraceEntry::Closed {
            by: Some(Side::B),
            ..
        })
    ));
    assert_eq!(p.b().committed(), None, "nothing committed");
    assert_eq!(p.b().received().len(), 1);
}

#[test]
fn every_frame_lost_ends_in_handshake_timeout_at_the_right_virtual_time() {
    let mut faults = Faults::seeded(1);
    faults.drop_ppm = 1_000_000;
    let mut p = pair(3, 1, faults);
    let _ = p.run(END);
    assert_eq!(p.a().error(), Some(SessionError::HandshakeTimeout));
    assert_eq!(p.b().error(), Some(SessionError::TransportClosed));
    assert_eq!(p.now(), Instant::from_millis(HANDSHAKE_MS));
    assert_eq!(fates(&p), vec![(0, Side::A, Fate::Dropped)]);
}

#[test]
fn lost_acks_exhaust_the_resends_into_a_timeout() {
    let mut faults = Faults::seeded(9);
    faults.drop_ppm = 1_000_000;
    faults.random_only_from = Some(Side::B);
    // Let the WELCOME through; every ACK after it is lost.
    faults.at_frames.push((1, Fault::Reorder));
    let mut p = pair(2, 1, faults);
    let _ = p.run(END);
    assert_eq!(p.a().error(), Some(SessionError::Timeout));
    assert_eq!(
        p.now(),
        Instant::from_millis(RESEND_MS * (u64::from(MAX_RESENDS) + 1))
    );
    // The receiver got DATA 0 once and its five repeats, and reported it once.
    let data = fates(&p)
        .iter()
        .filter(|(_, s, f)| *s == Side::A && *f == Fate::Delivered)
        .count();
    assert_eq!(data, 1 + 1 + MAX_RESENDS as usize);
    assert_eq!(p.b().received().len(), 1);
    assert_eq!(p.b().committed(), None);
}

#[test]
fn duplicated_frames_are_absorbed() {
    let faults = Faults::none()
        .at_frame(0, Fault::Duplicate)
        .at_frame(2, Fault::Duplicate)
        .at_frame(3, Fault::Duplicate);
    let mut p = pair(5, 2, faults);
    assert_eq!(p.run(END), Outcome::Idle);
    assert_complete(&p, 5);
    assert_eq!(fates(&p)[0].2, Fate::Duplicated);
    let connected = p
        .events_b()
        .iter()
        .filter(|e| **e == ReceiverEvent::Connected)
        .count();
    assert_eq!(connected, 1);
}

#[test]
fn reordered_frames_in_a_window_break_the_counter_rule() {
    let mut p = pair(5, 4, Faults::none().at_frame(2, Fault::Reorder));
    let _ = p.run(END);
    assert_eq!(
        p.b().error(),
        Some(SessionError::BadCounter {
            expected: 0,
            got: 1
        })
    );
    assert_eq!(p.b().committed(), None);
}

#[test]
fn a_reordered_last_frame_is_late_but_not_lost() {
    // Stop-and-wait: the held frame has nothing to pass it, so it goes once the link is quiet.
    let mut p = pair(3, 1, Faults::none().at_frame(2, Fault::Reorder));
    assert_eq!(p.run(END), Outcome::Idle);
    assert_complete(&p, 3);
    assert_eq!(fates(&p)[2].2, Fate::Reordered);
}

#[test]
fn corrupted_frame_ends_the_receiving_session() {
    let mut p = pair(
        5,
        1,
        Faults::none().at_frame(4, Fault::Corrupt { offset: 6 }),
    );
    let _ = p.run(END);
    assert_eq!(
        p.b().error(),
        Some(SessionError::Unexpected("bad check byte"))
    );
    assert_eq!(p.b().committed(), None);
    assert_eq!(fates(&p)[4].2, Fate::Corrupted { offset: 6 });
}

#[test]
fn corruption_offset_wraps_around_the_frame() {
    let mut p = pair(
        1,
        1,
        Faults::none().at_frame(1, Fault::Corrupt { offset: 5 + 1000 }),
    );
    let _ = p.run(END);
    // WELCOME is 5 bytes: 1005 % 5 = 0, the kind byte, which makes the check fail.
    assert_eq!(fates(&p)[1].2, Fate::Corrupted { offset: 0 });
    assert_eq!(
        p.a().error(),
        Some(SessionError::Unexpected("bad check byte"))
    );
}

#[test]
fn oversized_length_is_a_typed_error() {
    // Flip the length byte of DATA 0 (offset 3): 1 ^ 0xff = 254 > 64.
    let mut p = pair(
        1,
        1,
        Faults::none().at_frame(2, Fault::Corrupt { offset: 3 }),
    );
    let _ = p.run(END);
    assert_eq!(
        p.b().error(),
        Some(SessionError::Oversized { len: 254, max: 64 })
    );
}

#[test]
fn peer_stalling_mid_handshake_times_the_handshake_out() {
    let mut p = pair(3, 1, Faults::none().at_frame(1, Fault::Stall));
    let _ = p.run(END);
    assert_eq!(p.a().error(), Some(SessionError::HandshakeTimeout));
    assert_eq!(p.now(), Instant::from_millis(HANDSHAKE_MS));
    assert_eq!(fates(&p)[1], (1, Side::B, Fate::Stalled));
    // The receiver believed it was connected; the sender's end closed the link.
    assert_eq!(p.events_b().front(), Some(&ReceiverEvent::Connected));
    assert_eq!(p.b().error(), Some(SessionError::TransportClosed));
}

#[test]
fn silent_sender_hits_the_receivers_idle_timeout() {
    let mut p = pair(3, 1, Faults::none());
    p.stall(Side::A);
    // HELLO never arrives: nothing runs a timer on the receiver, the sender times out.
    let _ = p.run(END);
    assert_eq!(p.a().error(), Some(SessionError::HandshakeTimeout));

    // Stall the sender after the handshake, when it has nothing to resend (its BYE is lost):
    // the receiver's idle timer ends it.
    let mut p = pair(0, 1, Faults::none().at_frame(2, Fault::Stall));
    let _ = p.run(END);
    assert_eq!(p.b().error(), Some(SessionError::PingTimeout));
    assert_eq!(p.now(), Instant::from_millis(IDLE_MS));
    assert_eq!(p.a().error(), Some(SessionError::TransportClosed));
}

#[test]
fn cut_at_a_frame_mid_transfer_commits_nothing() {
    let mut p = pair(20, 1, Faults::none().at_frame(11, Fault::Cut));
    let _ = p.run(END);
    assert_eq!(
        p.errors(),
        (
            Some(SessionError::TransportClosed),
            Some(SessionError::TransportClosed)
        )
    );
    assert_eq!(p.b().committed(), None);
    assert!(p.b().received().len() < 20);
    assert_eq!(fates(&p).last().unwrap().2, Fate::Cut);
    assert!(matches!(
        p.trace().last(),
        Some(TraceEntry::Closed { by: None, .. })
    ));
}

#[test]
fn cut_at_an_instant() {
    let mut p = pair(20, 1, Faults::none().cut_at(Instant::from_millis(35)));
    p.set_latency(Duration::from_millis(2));
    let _ = p.run(END);
    assert_eq!(p.a().error(), Some(SessionError::TransportClosed));
    assert_eq!(p.b().committed(), None);
    // Each message takes a 4 ms round trip: by 35 ms, eight are through.
    assert_eq!(p.b().received().len(), 8);
    assert!(matches!(
        p.trace().last(),
        Some(TraceEntry::Closed { at, by: None }) if *at == Instant::from_millis(35)
    ));
}

#[test]
fn latency_moves_virtual_time() {
    let mut p = pair(2, 1, Faults::none());
    p.set_latency(Duration::from_millis(10));
    assert_eq!(p.run(END), Outcome::Idle);
    assert_complete(&p, 2);
    // HELLO/WELCOME, then two DATA/ACK round trips (60 ms); BYE lands 10 ms later.
    assert_eq!(p.now(), Instant::from_millis(70));
}

#[test]
fn deadline_stops_the_run_and_a_later_run_resumes() {
    let mut p = pair(3, 1, Faults::none().at_frame(1, Fault::Stall));
    assert_eq!(p.run(Instant::from_millis(400)), Outcome::Deadline);
    assert_eq!(p.now(), Instant::from_millis(400));
    assert_eq!(p.errors(), (None, None));
    let _ = p.run(END);
    assert_eq!(p.a().error(), Some(SessionError::HandshakeTimeout));
}

#[test]
fn run_until_lets_the_test_act_between_steps() {
    let mut p = pair(1, 1, Faults::none());
    let out = p.run_until(END, |p| p.events_a().contains(&SenderEvent::Connected));
    assert_eq!(out, Outcome::Stopped);
    // An application call between steps: one more message before the run goes on.
    p.a_mut().send(b"late");
    assert_eq!(p.run(END), Outcome::Idle);
    let mut want = messages(1);
    want.push(b"late".to_vec());
    assert_eq!(p.b().committed(), Some(&want[..]));
}

#[test]
fn manual_cut() {
    let mut p = pair(1, 1, Faults::none());
    let _ = p.run_until(END, |p| p.events_b().contains(&ReceiverEvent::Connected));
    p.cut();
    assert!(!p.link_up());
    assert_eq!(p.a().error(), Some(SessionError::TransportClosed));
    assert_eq!(p.run(END), Outcome::Idle);
}

fn random_faults(seed: u64) -> Faults {
    let mut f = Faults::seeded(seed);
    f.drop_ppm = 50_000;
    f.duplicate_ppm = 50_000;
    f.reorder_ppm = 30_000;
    f.corrupt_ppm = 10_000;
    f
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut p = pair(40, 1, random_faults(seed));
        let _ = p.run(END);
        (p.trace().to_vec(), p.errors(), p.now())
    };
    assert_eq!(run(7), run(7));
    let differ = (0..8).any(|s| run(s).0 != run(7).0);
    assert!(differ, "seeds change the run");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the link does, the receiver never reports a message twice or out of order,
    /// commits only the whole transfer, and a run ends in success or a typed error.
    #[test]
    fn faults_never_break_order_or_commit_a_partial_transfer(seed in any::<u64>(), window in 1usize..4) {
        let n = 12;
        let mut p = pair(n, window, random_faults(seed));
        let out = p.run(END);
        prop_assert_eq!(out, Outcome::Idle);
        let want = messages(n);
        let got: Vec<_> = p.events_b().iter().filter_map(|e| match e {
            ReceiverEvent::Message(s, m) => Some((*s, m.clone())),
            _ => None,
        }).collect();
        for (i, (s, m)) in got.iter().enumerate() {
            prop_assert_eq!(usize::from(*s), i);
            prop_assert_eq!(m, &want[i]);
        }
        match p.b().committed() {
            Some(c) => prop_assert_eq!(c, &want[..]),
            None => prop_assert!(p.errors().0.is_some() || p.errors().1.is_some()),
        }
    }
}
