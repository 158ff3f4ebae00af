//! Transports: what a host needs from a USB stack, in a blocking and an async flavour with the same names, and
//! the loops that drive a [`Host`] over them.
//!
//! A transport performs control transfers on the DFU interface and selects alt settings; waits are handed to
//! it too, so the library itself never sleeps (a simulated device just advances its clock).

use crate::host::proto::Setup;
use crate::host::{Action, Event, Host, HostError, MAX_TRANSFER, Summary, TransferError};

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
    }

    /// Runs `host` to the end over `transport`, reporting progress to `on_event`.
    pub fn run<T: Transport + ?Sized>(
        host: &mut Host<'_>,
        transport: &mut T,
        mut on_event: impl FnMut(Event),
    ) -> Result<Summary, HostError> {
        let mut buf = [0u8; MAX_TRANSFER];
        loop {
            match host.poll()? {
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
    }

    /// Runs `host` to the end over `transport`, reporting progress to `on_event`.
    pub async fn run<T: Transport + ?Sized>(
        host: &mut Host<'_>,
        transport: &mut T,
        mut on_event: impl FnMut(Event),
    ) -> Result<Summary, HostError> {
        let mut buf = [0u8; MAX_TRANSFER];
        loop {
            match host.poll()? {
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
}
