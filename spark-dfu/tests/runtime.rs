//! DFU_DETACH from a run-time interface and DFU_GETSTATE, against the simulated Core, as operations.

use spark_dfu::host::proto::State;
use spark_dfu::host::runtime::{DetachOptions, DetachOutcome};
use spark_dfu::host::{HostError, Options, Phase, TransferError};
use spark_dfu::ops;
use spark_dfu::platform::{Platform, core_map};
use spark_dfu::sim::{Fault, SparkCore};
use spark_dfu::transport::blocking::Transport;

fn options(will_detach: bool) -> DetachOptions {
    DetachOptions {
        interface: 0,
        timeout_ms: 1000,
        will_detach,
        reenumerate_ms: 5000,
    }
}

#[test]
fn get_state_reads_without_changing() {
    let mut sim = SparkCore::new();
    assert_eq!(ops::get_state(&mut sim, 0).unwrap(), State::Error);
    assert_eq!(ops::get_state(&mut sim, 0).unwrap(), State::Error);
    assert_eq!(sim.state().0, State::Error);
    let mut app = SparkCore::in_runtime(true);
    assert_eq!(ops::get_state(&mut app, 0).unwrap(), State::AppIdle);
    // A USB error is a typed error naming the query.
    let mut sim = SparkCore::new();
    sim.inject(0, Fault::UsbError);
    assert_eq!(
        ops::get_state(&mut sim, 0),
        Err(ops::OpError::Host(HostError::Transfer {
            phase: Phase::Query,
            address: 0,
            error: TransferError::Io
        }))
    );
}

#[test]
fn detach_of_a_device_that_leaves_by_itself_then_flash() {
    let mut sim = SparkCore::in_runtime(true).with_log();
    let outcome = ops::detach(&mut sim, options(true)).unwrap();
    assert_eq!(
        outcome,
        DetachOutcome::Detached {
            state: Some(State::Error)
        }
    );
    // GETSTATUS, DETACH(wValue = 1000), then GETSTATE in DFU mode.
    let log: Vec<(u8, u16)> = sim
        .log
        .as_ref()
        .unwrap()
        .iter()
        .map(|l| (l.setup.request, l.setup.value))
        .collect();
    assert_eq!(log, [(3, 0), (0, 1000), (5, 0)]);
    // Now the bootloader: flashing works as from a MODE-button entry (with Tinker in tests/vectors_host.rs).
    let mut image = vec![0u8; 4096];
    image[..4].copy_from_slice(&0x2000_5000u32.to_le_bytes());
    image[4..8].copy_from_slice(&0x0800_5101u32.to_le_bytes());
    ops::flash_user_firmware(&mut sim, Platform::Core, &image, Options::default(), |_| {}).unwrap();
    assert_eq!(
        sim.memory(core_map::FIRMWARE, image.len()).unwrap(),
        &image[..]
    );
}

#[test]
fn detach_with_a_bus_reset() {
    let mut sim = SparkCore::in_runtime(false);
    let outcome = ops::detach(&mut sim, options(false)).unwrap();
    assert_eq!(
        outcome,
        DetachOutcome::Detached {
            state: Some(State::Error)
        }
    );
    assert!(sim.present());
}

#[test]
fn detach_already_in_dfu_sends_nothing_more() {
    let mut sim = SparkCore::new().with_log();
    assert_eq!(
        ops::detach(&mut sim, options(true)).unwrap(),
        DetachOutcome::AlreadyInDfu(State::Error)
    );
    assert_eq!(sim.log.as_ref().unwrap().len(), 1);
}

/// A transport that cannot reset or re-enumerate: the detach waits wDetachTimeOut and leaves the rest to the
/// caller.
struct Blind(SparkCore);

impl Transport for Blind {
    fn select_alt(&mut self, alt: u8) -> Result<(), TransferError> {
        self.0.select_alt(alt)
    }
    fn control_out(
        &mut self,
        setup: spark_dfu::host::proto::Setup,
        data: &[u8],
    ) -> Result<(), TransferError> {
        self.0.control_out(setup, data)
    }
    fn control_in(
        &mut self,
        setup: spark_dfu::host::proto::Setup,
        buf: &mut [u8],
    ) -> Result<usize, TransferError> {
        self.0.control_in(setup, buf)
    }
    fn wait(&mut self, ms: u32) {
        self.0.wait(ms)
    }
}

#[test]
fn detach_over_a_transport_that_cannot_look_again() {
    let mut t = Blind(SparkCore::in_runtime(true));
    assert_eq!(
        ops::detach(&mut t, options(true)).unwrap(),
        DetachOutcome::Detached { state: None }
    );
    assert_eq!(t.0.elapsed_ms, 1000);
    // Without bitWillDetach the reset is needed, and this transport has none: a typed error.
    let mut t = Blind(SparkCore::in_runtime(false));
    assert_eq!(
        ops::detach(&mut t, options(false)),
        Err(ops::OpError::Host(HostError::Transfer {
            phase: Phase::Detach,
            address: 0,
            error: TransferError::Unsupported
        }))
    );
    // The device gives up waiting after its detach timeout and is back in appIDLE.
    t.0.wait(1000);
    assert_eq!(ops::get_state(&mut t, 0).unwrap(), State::AppIdle);
}

#[test]
fn faults_during_detach_are_typed() {
    for n in 0..3 {
        let mut sim = SparkCore::in_runtime(false);
        sim.inject(n, Fault::Disappear);
        let r = ops::detach(&mut sim, options(false));
        assert!(
            matches!(
                r,
                Err(ops::OpError::Host(HostError::Transfer {
                    phase: Phase::Detach,
                    ..
                }))
            ),
            "fault at {n}: {r:?}"
        );
    }
}

use proptest::prelude::*;
use spark_dfu::host::runtime::{Detach, DetachAction};

fn reply() -> impl Strategy<Value = Result<Vec<u8>, TransferError>> {
    prop_oneof![
        Just(Err(TransferError::Stall)),
        Just(Err(TransferError::Disconnected)),
        Just(Err(TransferError::Io)),
        Just(Err(TransferError::Unsupported)),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Ok),
        (0u8..12).prop_map(|s| Ok(vec![0, 0, 0, 0, s, 0])),
        (0u8..12).prop_map(|s| Ok(vec![s])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the device answers, the detach ends (done or a sticky error) within a few steps, and never
    /// sends more than GETSTATUS, DETACH and GETSTATE.
    #[test]
    fn detach_against_any_replies(
        will_detach in any::<bool>(),
        replies in proptest::collection::vec(reply(), 0..8),
    ) {
        let mut d = Detach::new(options(will_detach));
        let mut replies = replies.into_iter();
        for _ in 0..16 {
            let action = match d.poll_action() {
                Ok(a) => a,
                Err(_) => break,
            };
            let r = match action {
                DetachAction::Done(_) => break,
                DetachAction::Wait(_) => continue,
                DetachAction::In(_) => {
                    let Some(r) = replies.next() else { break };
                    d.handle_in(r.as_deref().map_err(|e| *e))
                }
                _ => {
                    let Some(r) = replies.next() else { break };
                    d.handle_out(r.map(|_| ()))
                }
            };
            if let Err(e) = r {
                prop_assert_eq!(d.poll_action(), Err(e));
                break;
            }
        }
        prop_assert!(d.transfers() <= 3);
    }
}
