//! The real device and cloud sessions on the in-memory pair: a full session, a 100 KiB OTA in
//! both modes, and each fault of the link ending in the right typed error or recovery, with no
//! partial image ever committed.

mod real_sessions;

use real_sessions::*;
use spark_protocol::session::cloud::{CloudEvent, OtaError, OtaEvent, OtaOptions, OutgoingEvent};
use spark_protocol::session::device::{DeviceEvent, Scope};
use spark_protocol::session::pair::{Fate, Fault, Faults, Outcome, Pair, Side, TraceEntry};
use spark_protocol::session::{Connection, Instant, SessionError};
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::message::{Value, Visibility};

const END: Instant = Instant::from_secs(3600);

type P = Pair<Device, Cloud>;

fn pair(faults: Faults, fast: bool) -> P {
    Pair::with_faults(device(5, fast), cloud(6), faults)
}

fn connected(p: &mut P) {
    let out = p.run_until(END, |p| {
        p.events_a().contains(&DeviceEvent::Connected)
            && p.events_b()
                .iter()
                .any(|e| matches!(e, CloudEvent::Connected(_)))
    });
    assert_eq!(out, Outcome::Stopped, "{:?}", p.errors());
    p.take_events_a();
    p.take_events_b();
}

fn ota_result(p: &P) -> Option<Result<spark_protocol::session::cloud::OtaReport, OtaError>> {
    p.events_b().iter().find_map(|e| match e {
        CloudEvent::Ota {
            event: OtaEvent::Finished(r),
            ..
        } => Some(*r),
        _ => None,
    })
}

/// Handshake, then the OTA of `len` bytes; returns the pair when the cloud reports the end.
fn ota(faults: Faults, fast: bool, len: usize) -> (P, Vec<u8>) {
    let mut p = pair(faults, fast);
    p.record_bytes(false);
    connected(&mut p);
    let img = image(len);
    let now = p.now();
    let opts = if fast {
        OtaOptions::fast()
    } else {
        OtaOptions::default()
    };
    let _ = p.b_mut().start_ota(now, img.clone(), opts).unwrap();
    let _ = p.run_until(END, |p| {
        ota_result(p).is_some() || p.errors() != (None, None)
    });
    (p, img)
}

#[test]
fn full_session_over_a_perfect_link() {
    let mut p = pair(Faults::none(), false);
    connected(&mut p);
    assert!(p.a().is_connected());

    // A function call, answered separately.
    let now = p.now();
    let call = p.b_mut().call_function(now, b"led", b"on").unwrap();
    let _ = p.run_until(END, |p| !p.events_a().is_empty());
    let Some(DeviceEvent::FunctionCall(c)) = p.take_events_a().pop() else {
        panic!("no call")
    };
    assert_eq!((&c.name[..], &c.argument[..]), (&b"led"[..], &b"on"[..]));
    p.a_mut().function_return(c.call, 42).unwrap();
    let _ = p.run_until(END, |p| !p.events_b().is_empty());
    assert_eq!(
        p.take_events_b(),
        vec![CloudEvent::FunctionReturned {
            request: call,
            result: Ok(42)
        }]
    );

    // A variable read.
    let now = p.now();
    let read = p
        .b_mut()
        .read_variable(now, b"temp", VarType::Double)
        .unwrap();
    let _ = p.run_until(END, |p| !p.events_a().is_empty());
    let Some(DeviceEvent::VariableRequest(v)) = p.take_events_a().pop() else {
        panic!("no variable request")
    };
    p.a_mut()
        .variable_value(v.request, Value::Double(21.5))
        .unwrap();
    let _ = p.run_until(END, |p| !p.events_b().is_empty());
    assert_eq!(
        p.take_events_b(),
        vec![CloudEvent::VariableRead {
            request: read,
            result: Ok(spark_protocol::session::cloud::VariableValue::Double(21.5))
        }]
    );

    // Events both ways.
    let now = p.now();
    p.a_mut()
        .publish(now, b"lake/depth", Some(b"28m"), Visibility::Private, 60)
        .unwrap();
    p.a_mut().subscribe(b"alarm", Scope::MyDevices).unwrap();
    let _ = p.run_until(END, |p| {
        p.events_b()
            .iter()
            .any(|e| matches!(e, CloudEvent::Published(_)))
    });
    let published = p
        .take_events_b()
        .into_iter()
        .find_map(|e| match e {
            CloudEvent::Published(e) => Some(e),
            _ => None,
        })
        .unwrap();
    assert_eq!(published.name, b"lake/depth");
    assert_eq!(published.data.as_deref(), Some(&b"28m"[..]));
    assert!(published.private);
    p.b_mut()
        .deliver_event(&OutgoingEvent {
            name: b"alarm/fire",
            data: Some(b"kitchen"),
            ttl: 60,
            private: true,
        })
        .unwrap();
    let _ = p.run_until(END, |p| !p.events_a().is_empty());
    let Some(DeviceEvent::Event(e)) = p.take_events_a().pop() else {
        panic!("no event")
    };
    assert_eq!(
        (&e.name[..], &e.data[..]),
        (&b"alarm/fire"[..], &b"kitchen"[..])
    );
    assert_eq!(p.errors(), (None, None));
    assert!(p.trace().iter().all(|t| matches!(
        t,
        TraceEntry::Frame {
            fate: Fate::Delivered,
            ..
        }
    )));
}

fn assert_ota_ok(p: &P, img: &[u8], fast: bool) {
    let report = ota_result(p)
        .expect("the transfer ended")
        .expect("it succeeded");
    assert_eq!(report.image_len, img.len());
    assert_eq!(report.fast, fast);
    assert_eq!(p.a().sink().committed(), Some(img), "byte for byte");
    assert!(p.events_a().iter().any(|e| *e
        == DeviceEvent::UpdateFinished {
            size: img.len() as u32
        }));
}

#[test]
fn ota_100_kib_stop_and_wait() {
    let (p, img) = ota(Faults::none(), false, 100 * 1024);
    assert_ota_ok(&p, &img, false);
}

#[test]
fn ota_100_kib_fast() {
    let (p, img) = ota(Faults::none(), true, 100 * 1024);
    assert_ota_ok(&p, &img, true);
}

/// The first frame sent after `n` frames of OTA have passed, so faults land mid-transfer.
fn mid_ota(fast: bool) -> u64 {
    let (p, _) = ota(Faults::none(), fast, 8 * 1024);
    // The handshake and Hellos take a handful of frames; aim at the middle of the transfer.
    p.frames_sent() / 2
}

#[test]
fn link_cut_mid_ota_commits_nothing() {
    for fast in [false, true] {
        let at = mid_ota(fast);
        let (p, _) = ota(Faults::none().at_frame(at, Fault::Cut), fast, 8 * 1024);
        assert_eq!(
            p.errors(),
            (
                Some(SessionError::TransportClosed),
                Some(SessionError::TransportClosed)
            )
        );
        assert_eq!(p.a().sink().committed(), None, "fast: {fast}");
        assert!(!p.a().sink().is_active(), "the partial image was dropped");
        assert_eq!(
            ota_result(&p),
            Some(Err(OtaError::SessionEnded(SessionError::TransportClosed)))
        );
        assert!(
            !p.events_a()
                .iter()
                .any(|e| matches!(e, DeviceEvent::UpdateFinished { .. }))
        );
    }
}

/// How a run with one fault aimed at a frame of the cloud's mid-OTA stream must end.
#[derive(Debug)]
enum Expect {
    /// The device's session ends with an error this predicate accepts; the cloud sees the
    /// stream close and its transfer fails with it; nothing is committed.
    DeviceEnds(fn(SessionError) -> bool),
    /// The transfer succeeds, the image exact, with this many chunks sent again.
    Recovers { resent: u32 },
}

fn check_fault(fast: bool, fault: Fault, expect: Expect) {
    let at = mid_ota(fast);
    let (p, img) = ota(Faults::none().at_frame(at, fault), fast, 8 * 1024);
    let from = p.trace().iter().find_map(|t| match t {
        TraceEntry::Frame { index, from, .. } if *index == at => Some(*from),
        _ => None,
    });
    assert_eq!(from, Some(Side::B), "the fault hits a frame of the cloud's");
    let ctx = format!(
        "fast {fast}, {fault:?}: {:?} {:?}",
        p.errors(),
        ota_result(&p)
    );
    match expect {
        Expect::DeviceEnds(ok) => {
            assert!(p.a().error().is_some_and(ok), "{ctx}");
            assert_eq!(p.b().error(), Some(SessionError::TransportClosed), "{ctx}");
            assert_eq!(
                ota_result(&p),
                Some(Err(OtaError::SessionEnded(SessionError::TransportClosed))),
                "{ctx}"
            );
            assert_eq!(p.a().sink().committed(), None, "{ctx}");
            assert!(
                !p.a().sink().is_active(),
                "the partial image was dropped: {ctx}"
            );
            assert!(
                !p.events_a()
                    .iter()
                    .any(|e| matches!(e, DeviceEvent::UpdateFinished { .. })),
                "{ctx}"
            );
        }
        Expect::Recovers { resent } => {
            let report = ota_result(&p).unwrap().unwrap();
            assert_eq!(report.chunks_resent, resent, "{ctx}");
            assert_eq!(p.a().sink().committed(), Some(&img[..]), "{ctx}");
            assert_eq!(p.errors(), (None, None), "{ctx}");
        }
    }
}

fn broken_frame(e: SessionError) -> bool {
    matches!(e, SessionError::Decryption(_) | SessionError::Malformed(_))
}

#[test]
fn dropped_frame_mid_ota_breaks_the_cipher_chain() {
    // Each frame's IV comes from the previous one: after a loss the next frame cannot decrypt
    // into a valid message.
    check_fault(false, Fault::Drop, Expect::DeviceEnds(broken_frame));
    check_fault(true, Fault::Drop, Expect::DeviceEnds(broken_frame));
}

#[test]
fn duplicated_frame_mid_ota_is_rejected() {
    check_fault(false, Fault::Duplicate, Expect::DeviceEnds(broken_frame));
    check_fault(true, Fault::Duplicate, Expect::DeviceEnds(broken_frame));
}

#[test]
fn reordered_frames_mid_ota() {
    // Fast OTA: the next chunk overtakes, and the chain breaks.
    check_fault(true, Fault::Reorder, Expect::DeviceEnds(broken_frame));
    // Stop-and-wait: nothing follows a chunk before its answer, so the held chunk is only late.
    check_fault(false, Fault::Reorder, Expect::Recovers { resent: 0 });
}

#[test]
fn corrupted_frames_mid_ota() {
    for fast in [false, true] {
        // The length prefix: an announced frame far beyond what the device accepts.
        check_fault(
            fast,
            Fault::Corrupt { offset: 0 },
            Expect::DeviceEnds(|e| matches!(e, SessionError::Oversized { max: 640, .. })),
        );
        // The first cipher block: the CoAP header decrypts to garbage.
        check_fault(
            fast,
            Fault::Corrupt { offset: 2 },
            Expect::DeviceEnds(|e| matches!(e, SessionError::Malformed(_))),
        );
        // Inside the chunk data: the chunk's CRC-32 catches it and the chunk is sent again.
        for offset in [20, 40] {
            check_fault(
                fast,
                Fault::Corrupt { offset },
                Expect::Recovers { resent: 1 },
            );
        }
    }
}

#[test]
fn cloud_stalling_mid_handshake_times_the_device_out() {
    // Frame 0 is the nonce, 1 the device's credentials, 2 the cloud's 384-byte reply.
    let mut p = pair(Faults::none().at_frame(2, Fault::Stall), false);
    let _ = p.run(END);
    assert_eq!(p.a().error(), Some(SessionError::HandshakeTimeout));
    assert_eq!(p.b().error(), Some(SessionError::TransportClosed));
    assert!(p.trace().iter().any(|t| matches!(
        t,
        TraceEntry::Frame {
            index: 2,
            from: Side::B,
            fate: Fate::Stalled,
            ..
        }
    )));
}

#[test]
fn device_stalling_mid_handshake_ends_both_sides() {
    // The device's credentials never arrive: the device's own 20 s handshake limit ends it
    // before the cloud's 30 s step limit, and the cloud sees the stream close.
    let mut p = pair(Faults::none().at_frame(1, Fault::Stall), false);
    let _ = p.run(END);
    assert_eq!(p.a().error(), Some(SessionError::HandshakeTimeout));
    assert_eq!(p.b().error(), Some(SessionError::TransportClosed));
    assert_eq!(p.now(), Instant::from_secs(20));
}

#[test]
fn random_faults_never_commit_a_partial_image() {
    // Seeded link faults on the cloud's frames during a transfer: each run either ends with the
    // exact image committed or with a typed error and nothing committed.
    let mut outcomes = (0, 0);
    for seed in 0..12u64 {
        let mut faults = Faults::seeded(seed);
        faults.random_only_from = Some(Side::B);
        faults.drop_ppm = 5_000;
        faults.duplicate_ppm = 5_000;
        faults.reorder_ppm = 5_000;
        faults.corrupt_ppm = 20_000;
        let fast = seed % 2 == 0;
        let mut p = Pair::with_faults(device(5, fast), cloud(6), faults);
        p.record_bytes(false);
        let _ = p.run_until(END, |p| {
            p.events_b()
                .iter()
                .any(|e| matches!(e, CloudEvent::Connected(_)))
                || p.errors() != (None, None)
        });
        if p.errors() != (None, None) {
            outcomes.1 += 1;
            continue;
        }
        let img = image(16 * 1024);
        let now = p.now();
        let opts = if fast {
            OtaOptions::fast()
        } else {
            OtaOptions::default()
        };
        let _ = p.b_mut().start_ota(now, img.clone(), opts).unwrap();
        let _ = p.run_until(END, |p| {
            ota_result(p).is_some() || p.errors() != (None, None)
        });
        match p.a().sink().committed() {
            Some(c) => {
                assert_eq!(c, &img[..], "seed {seed}");
                assert!(matches!(ota_result(&p), Some(Ok(_))), "seed {seed}");
                outcomes.0 += 1;
            }
            None => {
                assert!(p.a().error().is_some() || ota_result(&p).is_some_and(|r| r.is_err()));
                assert!(
                    !p.a().sink().is_active(),
                    "seed {seed}: partial image dropped"
                );
                outcomes.1 += 1;
            }
        }
    }
    eprintln!(
        "random faults: {} transfers completed, {} ended typed",
        outcomes.0, outcomes.1
    );
    assert!(
        outcomes.0 > 0 && outcomes.1 > 0,
        "the seeds cover both endings"
    );
}
