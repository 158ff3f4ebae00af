//! The way into DFU mode from a run-time DFU interface (DFU_DETACH, then a bus reset or the device's own
//! re-attach, then finding it again), and DFU_GETSTATE. Sans-IO like [`Host`](super::Host): [`Detach::poll_action`]
//! says what to do, `handle_*` takes the result.
//!
//! The 2014 Spark Core firmware has no run-time DFU interface (DFU mode is entered with the MODE button); later
//! Device OS builds and other devices do, and dfu-util starts from one when it finds it (`src/main.c`): GETSTATUS,
//! and in appIDLE DETACH with a 1000 ms timeout, a USB reset unless bitWillDetach is set, a wait, a new search.
//!
//! ```
//! use spark_dfu::host::proto::State;
//! use spark_dfu::host::runtime::{Detach, DetachAction, DetachOptions, DetachOutcome};
//! use spark_dfu::sim::SparkCore;
//! use spark_dfu::transport::blocking::Transport;
//!
//! // An application with a run-time DFU interface that does not detach by itself (bitWillDetach clear).
//! let mut app = SparkCore::in_runtime(false);
//! let options = DetachOptions { interface: 0, timeout_ms: 1000, will_detach: false, reenumerate_ms: 5000 };
//! let mut detach = Detach::new(options);
//! let mut buf = [0u8; 6];
//! let mut reset = false;
//! let outcome = loop {
//!     match detach.poll_action().unwrap() {
//!         DetachAction::In(setup) => {
//!             let n = usize::from(setup.length).min(buf.len());
//!             let got = app.control_in(setup, &mut buf[..n]);
//!             detach.handle_in(got.map(|len| &buf[..len])).unwrap();
//!         }
//!         DetachAction::Out(setup) => detach.handle_out(app.control_out(setup, &[])).unwrap(),
//!         DetachAction::Reset => {
//!             reset = true;
//!             detach.handle_out(app.reset()).unwrap();
//!         }
//!         DetachAction::Reenumerate(ms) => detach.handle_out(app.reenumerate(ms)).unwrap(),
//!         DetachAction::Wait(ms) => app.wait(ms),
//!         DetachAction::Done(outcome) => break outcome,
//!     }
//! };
//! assert!(reset, "without bitWillDetach the host resets the bus");
//! // Found again in DFU mode: the Core bootloader starts in dfuERROR, which a download then clears.
//! assert_eq!(outcome, DetachOutcome::Detached { state: Some(State::Error) });
//! ```

use super::proto::{FunctionalDescriptor, ReplyError, Request, Setup, State, StatusReply};
use super::{HostError, Phase, TransferError};

/// Reads a DFU_GETSTATE reply (one byte).
pub fn parse_state(bytes: &[u8]) -> Result<State, ReplyError> {
    let b = *bytes.first().ok_or(ReplyError::Short {
        len: 0,
        required: 1,
    })?;
    State::from_u8(b).ok_or(ReplyError::UnknownState(b))
}

/// What a detach needs to know about the run-time interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachOptions {
    /// The run-time DFU interface (`wIndex`).
    pub interface: u16,
    /// The `wValue` of DFU_DETACH: how long the device waits for the reset (dfu-util sends 1000 ms). Keep it
    /// within the functional descriptor's `wDetachTimeOut`.
    pub timeout_ms: u16,
    /// bitWillDetach: the device leaves the bus by itself, no USB reset is needed.
    pub will_detach: bool,
    /// How long the transport may look for the device in DFU mode (dfu-util waits 5 s by default).
    pub reenumerate_ms: u32,
}

impl DetachOptions {
    /// The options for an interface with this functional descriptor, as dfu-util picks them: a 1000 ms detach
    /// timeout (less when the descriptor allows less), reset unless bitWillDetach, 5 s to find it again.
    #[must_use]
    pub fn for_descriptor(interface: u16, functional: &FunctionalDescriptor) -> Self {
        let limit = if functional.detach_timeout == 0 {
            1000
        } else {
            functional.detach_timeout
        };
        Self {
            interface,
            timeout_ms: limit.min(1000),
            will_detach: functional.attributes & FunctionalDescriptor::WILL_DETACH != 0,
            reenumerate_ms: 5000,
        }
    }
}

/// How a detach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DetachOutcome {
    /// The device was in run-time mode and was sent to DFU mode. `state` is what GETSTATE reported once the
    /// transport found it again, `None` when the transport cannot re-enumerate (then the caller must find and
    /// open the DFU-mode device itself; the detach timeout has been waited).
    Detached {
        /// The DFU state after re-enumeration.
        state: Option<State>,
    },
    /// The interface was already in DFU mode (this state); nothing was sent.
    AlreadyInDfu(State),
}

/// What to do next in a detach: [`Detach::poll_action`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum DetachAction {
    /// Perform this device-to-host transfer, then call [`Detach::handle_in`].
    In(Setup),
    /// Perform this host-to-device transfer (no data stage), then call [`Detach::handle_out`].
    Out(Setup),
    /// Reset the device on the bus, then call [`Detach::handle_out`].
    Reset,
    /// Find the device again in DFU mode within this many milliseconds, then call [`Detach::handle_out`].
    Reenumerate(u32),
    /// Wait this many milliseconds, then poll again.
    Wait(u32),
    /// Finished.
    Done(DetachOutcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Status,
    Detach,
    Reset,
    Reenumerate,
    State,
    Finished(DetachOutcome),
}

/// The detach state machine.
#[derive(Debug, Clone)]
pub struct Detach {
    options: DetachOptions,
    step: Step,
    awaiting: bool,
    wait: Option<u32>,
    failed: Option<HostError>,
    transfers: u32,
}

impl Detach {
    /// A detach of the run-time interface described by `options`.
    #[must_use]
    pub fn new(options: DetachOptions) -> Self {
        Self {
            options,
            step: Step::Status,
            awaiting: false,
            wait: None,
            failed: None,
            transfers: 0,
        }
    }

    /// Control transfers performed so far.
    #[must_use]
    pub fn transfers(&self) -> u32 {
        self.transfers
    }

    /// What to do next. After an error, the error again.
    pub fn poll_action(&mut self) -> Result<DetachAction, HostError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.awaiting {
            return Err(HostError::OutOfTurn);
        }
        if let Some(ms) = self.wait.take() {
            return Ok(DetachAction::Wait(ms));
        }
        let iface = self.options.interface;
        let action = match self.step {
            Step::Status => DetachAction::In(Setup::input(Request::GetStatus, 0, iface, 6)),
            Step::Detach => DetachAction::Out(Setup::detach(iface, self.options.timeout_ms)),
            Step::Reset => DetachAction::Reset,
            Step::Reenumerate => DetachAction::Reenumerate(self.options.reenumerate_ms),
            Step::State => DetachAction::In(Setup::get_state(iface)),
            Step::Finished(outcome) => return Ok(DetachAction::Done(outcome)),
        };
        self.awaiting = true;
        Ok(action)
    }

    fn fail(&mut self, e: HostError) -> HostError {
        self.failed = Some(e);
        e
    }

    fn transfer_error(error: TransferError) -> HostError {
        HostError::Transfer {
            phase: Phase::Detach,
            address: 0,
            error,
        }
    }

    /// The result of the last [`DetachAction::Out`], [`DetachAction::Reset`] or [`DetachAction::Reenumerate`].
    pub fn handle_out(&mut self, result: Result<(), TransferError>) -> Result<(), HostError> {
        if !core::mem::replace(&mut self.awaiting, false) {
            return Err(HostError::OutOfTurn);
        }
        let r = match (self.step, result) {
            // A device that detaches at once may drop the status stage.
            (Step::Detach, Ok(()) | Err(TransferError::Disconnected | TransferError::Io)) => {
                self.transfers += 1;
                self.step = if self.options.will_detach {
                    Step::Reenumerate
                } else {
                    Step::Reset
                };
                Ok(())
            }
            // The reset makes the device vanish from under the transfer on some stacks.
            (Step::Reset, Ok(()) | Err(TransferError::Disconnected)) => {
                self.step = Step::Reenumerate;
                Ok(())
            }
            (Step::Reenumerate, Ok(())) => {
                self.step = Step::State;
                Ok(())
            }
            (Step::Reenumerate, Err(TransferError::Unsupported)) => {
                // The transport cannot look: give the device its detach time and leave the rest to the caller.
                self.wait = Some(u32::from(self.options.timeout_ms));
                self.step = Step::Finished(DetachOutcome::Detached { state: None });
                Ok(())
            }
            (Step::Detach | Step::Reset | Step::Reenumerate, Err(error)) => {
                if self.step == Step::Detach {
                    self.transfers += 1;
                }
                Err(Self::transfer_error(error))
            }
            _ => Err(HostError::OutOfTurn),
        };
        r.map_err(|e| self.fail(e))
    }

    /// The result of the last [`DetachAction::In`]: the bytes received.
    pub fn handle_in(&mut self, result: Result<&[u8], TransferError>) -> Result<(), HostError> {
        if !core::mem::replace(&mut self.awaiting, false) {
            return Err(HostError::OutOfTurn);
        }
        self.transfers += 1;
        let r = self.handle_in_inner(result);
        r.map_err(|e| self.fail(e))
    }

    fn handle_in_inner(&mut self, result: Result<&[u8], TransferError>) -> Result<(), HostError> {
        let reply = |error| HostError::Reply {
            phase: Phase::Detach,
            error,
        };
        match self.step {
            Step::Status => {
                let state = match result {
                    // GETSTATUS is optional in run-time mode: a stall means appIDLE, as dfu-util reads it.
                    Err(TransferError::Stall) => State::AppIdle,
                    Err(error) => return Err(Self::transfer_error(error)),
                    Ok(bytes) => StatusReply::parse(bytes).map_err(reply)?.state,
                };
                self.step = match state {
                    State::AppIdle => Step::Detach,
                    // Already told to detach: only the reset (or the device's own re-attach) is missing.
                    State::AppDetach if self.options.will_detach => Step::Reenumerate,
                    State::AppDetach => Step::Reset,
                    dfu => Step::Finished(DetachOutcome::AlreadyInDfu(dfu)),
                };
                Ok(())
            }
            Step::State => {
                let bytes = result.map_err(Self::transfer_error)?;
                let state = parse_state(bytes).map_err(reply)?;
                if matches!(state, State::AppIdle | State::AppDetach) {
                    return Err(HostError::RuntimeMode);
                }
                self.step = Step::Finished(DetachOutcome::Detached { state: Some(state) });
                Ok(())
            }
            _ => Err(HostError::OutOfTurn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: State) -> [u8; 6] {
        StatusReply {
            status: super::super::proto::Status::OK,
            poll_timeout: 0,
            state,
            string: 0,
        }
        .to_bytes()
    }

    fn options(will_detach: bool) -> DetachOptions {
        DetachOptions {
            interface: 2,
            timeout_ms: 1000,
            will_detach,
            reenumerate_ms: 5000,
        }
    }

    #[test]
    fn state_replies() {
        assert_eq!(parse_state(&[2]), Ok(State::Idle));
        assert_eq!(parse_state(&[10, 0]), Ok(State::Error));
        assert_eq!(
            parse_state(&[]),
            Err(ReplyError::Short {
                len: 0,
                required: 1
            })
        );
        assert_eq!(parse_state(&[11]), Err(ReplyError::UnknownState(11)));
    }

    #[test]
    fn detach_with_reset_then_found_again() {
        let mut d = Detach::new(options(false));
        let DetachAction::In(s) = d.poll_action().unwrap() else {
            panic!()
        };
        assert_eq!((s.request, s.index, s.length), (3, 2, 6));
        d.handle_in(Ok(&status(State::AppIdle))).unwrap();
        let DetachAction::Out(s) = d.poll_action().unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.request_type, s.request, s.value, s.index),
            (0x21, 0, 1000, 2)
        );
        d.handle_out(Ok(())).unwrap();
        assert_eq!(d.poll_action().unwrap(), DetachAction::Reset);
        d.handle_out(Err(TransferError::Disconnected)).unwrap();
        assert_eq!(d.poll_action().unwrap(), DetachAction::Reenumerate(5000));
        d.handle_out(Ok(())).unwrap();
        let DetachAction::In(s) = d.poll_action().unwrap() else {
            panic!()
        };
        assert_eq!((s.request, s.length), (5, 1));
        d.handle_in(Ok(&[10])).unwrap();
        assert_eq!(
            d.poll_action().unwrap(),
            DetachAction::Done(DetachOutcome::Detached {
                state: Some(State::Error)
            })
        );
        assert_eq!(d.transfers(), 3);
    }

    #[test]
    fn will_detach_skips_the_reset_and_a_blind_transport_waits() {
        let mut d = Detach::new(options(true));
        let _ = d.poll_action().unwrap();
        // No GETSTATUS in run-time mode: read as appIDLE.
        d.handle_in(Err(TransferError::Stall)).unwrap();
        let _ = d.poll_action().unwrap();
        d.handle_out(Ok(())).unwrap();
        assert_eq!(d.poll_action().unwrap(), DetachAction::Reenumerate(5000));
        d.handle_out(Err(TransferError::Unsupported)).unwrap();
        assert_eq!(d.poll_action().unwrap(), DetachAction::Wait(1000));
        assert_eq!(
            d.poll_action().unwrap(),
            DetachAction::Done(DetachOutcome::Detached { state: None })
        );
    }

    #[test]
    fn already_in_dfu_and_failures() {
        let mut d = Detach::new(options(false));
        let _ = d.poll_action().unwrap();
        d.handle_in(Ok(&status(State::Idle))).unwrap();
        assert_eq!(
            d.poll_action().unwrap(),
            DetachAction::Done(DetachOutcome::AlreadyInDfu(State::Idle))
        );

        let mut d = Detach::new(options(false));
        assert_eq!(d.handle_out(Ok(())), Err(HostError::OutOfTurn));
        let _ = d.poll_action().unwrap();
        d.handle_in(Ok(&status(State::AppIdle))).unwrap();
        let _ = d.poll_action().unwrap();
        d.handle_out(Ok(())).unwrap();
        let _ = d.poll_action().unwrap();
        let e = d.handle_out(Err(TransferError::Unsupported)).unwrap_err();
        assert_eq!(
            e,
            HostError::Transfer {
                phase: Phase::Detach,
                address: 0,
                error: TransferError::Unsupported
            }
        );
        assert_eq!(d.poll_action(), Err(e));

        // Still in run-time mode after the re-enumeration.
        let mut d = Detach::new(options(true));
        let _ = d.poll_action().unwrap();
        d.handle_in(Ok(&status(State::AppDetach))).unwrap();
        assert_eq!(d.poll_action().unwrap(), DetachAction::Reenumerate(5000));
        d.handle_out(Ok(())).unwrap();
        let _ = d.poll_action().unwrap();
        assert_eq!(d.handle_in(Ok(&[0])), Err(HostError::RuntimeMode));
        // A short status reply is a typed error.
        let mut d = Detach::new(options(true));
        let _ = d.poll_action().unwrap();
        assert!(matches!(
            d.handle_in(Ok(&[0, 0])),
            Err(HostError::Reply { .. })
        ));
    }

    #[test]
    fn options_from_the_core_descriptor() {
        let f = FunctionalDescriptor::parse(&[9, 0x21, 0x0B, 0xFF, 0, 0, 4, 0x1A, 1]).unwrap();
        let o = DetachOptions::for_descriptor(0, &f);
        assert_eq!((o.timeout_ms, o.will_detach), (255, true));
    }
}
