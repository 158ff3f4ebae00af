//! Transports: what a host needs from a USB stack, in a blocking and an async flavour with the same names, and
//! the loops that drive a [`Host`] over them.
//!
//! A transport performs control transfers on the DFU interface and selects alt settings; waits are handed to
//! it too, so the library itself never sleeps (a simulated device just advances its clock).

use crate::host::proto::{Setup, State, StatusReply};
use crate::host::runtime::{Detach, DetachAction, DetachOutcome, parse_state};
use crate::host::{Action, Event, Host, HostError, MAX_TRANSFER, Phase, Summary, TransferError};

fn query_error(error: TransferError) -> HostError {
    HostError::Transfer {
        phase: Phase::Query,
        address: 0,
        error,
    }
}

fn reply_error(error: crate::host::proto::ReplyError) -> HostError {
    HostError::Reply {
        phase: Phase::Query,
        error,
    }
}

/// Blocking transports.
pub mod blocking {
    use super::*;

    /// A USB connection to one DFU interface, blocking.
    pub trait Transport {
        /// SET_INTERFACE to `alt` on the DFU interface.
        fn select_alt(&mut self, alt: u8) -> Result<(), TransferError>;
        /// A host-to-device control transfer with `data` as the data stage.
        fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), TransferError>;
        /// A device-to-host control transfer of at most `setup.length` bytes into `buf`; returns the length.
        fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, TransferError>;
        /// Waits `ms` milliseconds (the device's poll timeout).
        fn wait(&mut self, ms: u32);
        /// A USB bus reset of the device (after DFU_DETACH to a device without bitWillDetach). The default
        /// reports [`TransferError::Unsupported`].
        fn reset(&mut self) -> Result<(), TransferError> {
            Err(TransferError::Unsupported)
        }
        /// Finds the device again after it left the bus (DETACH, reset) and reconnects to its DFU interface,
        /// giving up after `timeout_ms`. The default reports [`TransferError::Unsupported`].
        fn reenumerate(&mut self, timeout_ms: u32) -> Result<(), TransferError> {
            let _ = timeout_ms;
            Err(TransferError::Unsupported)
        }
    }

    /// Runs `host` to the end over `transport`, reporting progress to `on_event`.
    pub fn run<T: Transport + ?Sized>(
        host: &mut Host<'_>,
        transport: &mut T,
        mut on_event: impl FnMut(Event),
    ) -> Result<Summary, HostError> {
        let mut buf = [0u8; MAX_TRANSFER];
        loop {
            match host.poll_action()? {
                Action::SelectAlt(alt) => {
                    let r = transport.select_alt(alt);
                    host.handle_out(r)?;
                }
                Action::Out { setup, data } => {
                    let r = transport.control_out(setup, data);
                    host.handle_out(r)?;
                }
                Action::In { setup } => {
                    let n = usize::from(setup.length).min(buf.len());
                    let r = transport.control_in(setup, &mut buf[..n]);
                    host.handle_in(r.map(|len| &buf[..len.min(n)]))?;
                }
                Action::Wait(ms) => transport.wait(ms),
                Action::Event(e) => on_event(e),
                Action::Done => return Ok(host.summary()),
            }
        }
    }

    /// DFU_GETSTATE on `interface`: the device's state, without changing it.
    pub fn get_state<T: Transport + ?Sized>(
        transport: &mut T,
        interface: u16,
    ) -> Result<State, HostError> {
        let mut buf = [0u8; 1];
        let n = transport
            .control_in(Setup::get_state(interface), &mut buf)
            .map_err(query_error)?;
        parse_state(&buf[..n.min(1)]).map_err(reply_error)
    }

    /// DFU_GETSTATUS on `interface` (the device may change state: dfuDNLOAD-SYNC moves on, for instance).
    pub fn get_status<T: Transport + ?Sized>(
        transport: &mut T,
        interface: u16,
    ) -> Result<StatusReply, HostError> {
        let mut buf = [0u8; StatusReply::LEN];
        let setup = Setup::input(crate::host::proto::Request::GetStatus, 0, interface, 6);
        let n = transport.control_in(setup, &mut buf).map_err(query_error)?;
        StatusReply::parse(&buf[..n.min(StatusReply::LEN)]).map_err(reply_error)
    }

    /// Runs a [`Detach`] to the end over `transport`.
    pub fn detach<T: Transport + ?Sized>(
        machine: &mut Detach,
        transport: &mut T,
    ) -> Result<DetachOutcome, HostError> {
        let mut buf = [0u8; StatusReply::LEN];
        loop {
            match machine.poll_action()? {
                DetachAction::In(setup) => {
                    let n = usize::from(setup.length).min(buf.len());
                    let r = transport.control_in(setup, &mut buf[..n]);
                    machine.handle_in(r.map(|len| &buf[..len.min(n)]))?;
                }
                DetachAction::Out(setup) => {
                    let r = transport.control_out(setup, &[]);
                    machine.handle_out(r)?;
                }
                DetachAction::Reset => {
                    let r = transport.reset();
                    machine.handle_out(r)?;
                }
                DetachAction::Reenumerate(ms) => {
                    let r = transport.reenumerate(ms);
                    machine.handle_out(r)?;
                }
                DetachAction::Wait(ms) => transport.wait(ms),
                DetachAction::Done(outcome) => return Ok(outcome),
            }
        }
    }
}

/// Async transports.
pub mod asynch {
    use super::*;
    use core::future::Future;

    /// A USB connection to one DFU interface, async.
    pub trait Transport {
        /// SET_INTERFACE to `alt` on the DFU interface.
        fn select_alt(&mut self, alt: u8) -> impl Future<Output = Result<(), TransferError>>;
        /// A host-to-device control transfer with `data` as the data stage.
        fn control_out(
            &mut self,
            setup: Setup,
            data: &[u8],
        ) -> impl Future<Output = Result<(), TransferError>>;
        /// A device-to-host control transfer of at most `setup.length` bytes into `buf`; returns the length.
        fn control_in(
            &mut self,
            setup: Setup,
            buf: &mut [u8],
        ) -> impl Future<Output = Result<usize, TransferError>>;
        /// Waits `ms` milliseconds (the device's poll timeout).
        fn wait(&mut self, ms: u32) -> impl Future<Output = ()>;
        /// A USB bus reset of the device (after DFU_DETACH to a device without bitWillDetach). The default
        /// reports [`TransferError::Unsupported`].
        fn reset(&mut self) -> impl Future<Output = Result<(), TransferError>> {
            core::future::ready(Err(TransferError::Unsupported))
        }
        /// Finds the device again after it left the bus (DETACH, reset) and reconnects to its DFU interface,
        /// giving up after `timeout_ms`. The default reports [`TransferError::Unsupported`].
        fn reenumerate(
            &mut self,
            timeout_ms: u32,
        ) -> impl Future<Output = Result<(), TransferError>> {
            let _ = timeout_ms;
            core::future::ready(Err(TransferError::Unsupported))
        }
    }

    /// Runs `host` to the end over `transport`, reporting progress to `on_event`.
    pub async fn run<T: Transport + ?Sized>(
        host: &mut Host<'_>,
        transport: &mut T,
        mut on_event: impl FnMut(Event),
    ) -> Result<Summary, HostError> {
        let mut buf = [0u8; MAX_TRANSFER];
        loop {
            match host.poll_action()? {
                Action::SelectAlt(alt) => {
                    let r = transport.select_alt(alt).await;
                    host.handle_out(r)?;
                }
                Action::Out { setup, data } => {
                    let r = transport.control_out(setup, data).await;
                    host.handle_out(r)?;
                }
                Action::In { setup } => {
                    let n = usize::from(setup.length).min(buf.len());
                    let r = transport.control_in(setup, &mut buf[..n]).await;
                    host.handle_in(r.map(|len| &buf[..len.min(n)]))?;
                }
                Action::Wait(ms) => transport.wait(ms).await,
                Action::Event(e) => on_event(e),
                Action::Done => return Ok(host.summary()),
            }
        }
    }

    /// DFU_GETSTATE on `interface`: the device's state, without changing it.
    pub async fn get_state<T: Transport + ?Sized>(
        transport: &mut T,
        interface: u16,
    ) -> Result<State, HostError> {
        let mut buf = [0u8; 1];
        let n = transport
            .control_in(Setup::get_state(interface), &mut buf)
            .await
            .map_err(query_error)?;
        parse_state(&buf[..n.min(1)]).map_err(reply_error)
    }

    /// DFU_GETSTATUS on `interface` (the device may change state: dfuDNLOAD-SYNC moves on, for instance).
    pub async fn get_status<T: Transport + ?Sized>(
        transport: &mut T,
        interface: u16,
    ) -> Result<StatusReply, HostError> {
        let mut buf = [0u8; StatusReply::LEN];
        let setup = Setup::input(crate::host::proto::Request::GetStatus, 0, interface, 6);
        let n = transport
            .control_in(setup, &mut buf)
            .await
            .map_err(query_error)?;
        StatusReply::parse(&buf[..n.min(StatusReply::LEN)]).map_err(reply_error)
    }

    /// Runs a [`Detach`] to the end over `transport`.
    pub async fn detach<T: Transport + ?Sized>(
        machine: &mut Detach,
        transport: &mut T,
    ) -> Result<DetachOutcome, HostError> {
        let mut buf = [0u8; StatusReply::LEN];
        loop {
            match machine.poll_action()? {
                DetachAction::In(setup) => {
                    let n = usize::from(setup.length).min(buf.len());
                    let r = transport.control_in(setup, &mut buf[..n]).await;
                    machine.handle_in(r.map(|len| &buf[..len.min(n)]))?;
                }
                DetachAction::Out(setup) => {
                    let r = transport.control_out(setup, &[]).await;
                    machine.handle_out(r)?;
                }
                DetachAction::Reset => {
                    let r = transport.reset().await;
                    machine.handle_out(r)?;
                }
                DetachAction::Reenumerate(ms) => {
                    let r = transport.reenumerate(ms).await;
                    machine.handle_out(r)?;
                }
                DetachAction::Wait(ms) => transport.wait(ms).await,
                DetachAction::Done(outcome) => return Ok(outcome),
            }
        }
    }
}
