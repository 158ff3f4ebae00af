//! A sans-IO DfuSe host: it says which control transfer to perform next, takes its result, and returns waits
//! (`bwPollTimeout`) instead of sleeping.
//!
//! Drive it with [`Host::poll_action`] and the matching `handle_*` call, or let [`crate::transport`] do it. Blocks of a
//! contiguous run share one set-address command and advance `wBlockNum` from 2, where dfu-util 0.11 sends a
//! set-address before every block.
//!
//! The whole loop, against the simulated Spark Core bootloader of the `sim` module (feature `sim`); a real
//! program hands the same transfers to USB, or calls [`crate::transport::blocking::run`], which is this loop:
//!
//! ```
//! use spark_dfu::host::{Action, Device, Event, Host, Options, Region};
//! use spark_dfu::platform::{Platform, core_map};
//! use spark_dfu::sim::SparkCore;
//! use spark_dfu::transport::blocking::Transport;
//!
//! let mut core = SparkCore::new(); // in dfuERROR, as a real Core starts
//! let firmware: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
//! let regions = [Region { alt: 0, address: core_map::FIRMWARE, data: &firmware }];
//! let device = Device::for_platform(Platform::Core).unwrap();
//! let mut host = Host::download(device, &regions, Options::default()).unwrap();
//!
//! let mut buf = [0u8; 4096];
//! let (mut erased, mut waited_ms) = (0, 0);
//! loop {
//!     match host.poll_action().unwrap() {
//!         Action::SelectAlt(alt) => host.handle_out(core.select_alt(alt)).unwrap(),
//!         Action::Out { setup, data } => {
//!             let sent = core.control_out(setup, data);
//!             host.handle_out(sent).unwrap();
//!         }
//!         Action::In { setup } => {
//!             let n = usize::from(setup.length).min(buf.len());
//!             let got = core.control_in(setup, &mut buf[..n]);
//!             host.handle_in(got.map(|len| &buf[..len])).unwrap();
//!         }
//!         // The host never sleeps: the device's bwPollTimeout comes back as a wait for the caller.
//!         Action::Wait(ms) => waited_ms += u64::from(ms),
//!         Action::Event(Event::Erased { .. }) => erased += 1,
//!         Action::Event(_) => {}
//!         Action::Done => break,
//!     }
//! }
//! // Three 1 KiB pages erased, the bytes written, then read back and compared (`Options::verify`).
//! assert_eq!(erased, 3);
//! assert_eq!(host.summary().waited_ms, waited_ms);
//! assert_eq!(core.memory(core_map::FIRMWARE, firmware.len()), Some(&firmware[..]));
//! ```

pub mod proto;
pub mod runtime;

use crate::file::layout::{ErasePages, MemoryLayout};
use proto::{Request, Setup, State, Status, StatusReply};

/// The largest transfer size used (dfu-util caps `wTransferSize` at 4096 too).
pub const MAX_TRANSFER: usize = 4096;

/// A failed control transfer, as a transport reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The device stalled the request.
    #[error("request stalled")]
    Stall,
    /// The device is gone (unplugged or reset).
    #[error("device disconnected")]
    Disconnected,
    /// No answer in time.
    #[error("transfer timed out")]
    Timeout,
    /// Another USB error.
    #[error("USB error")]
    Io,
    /// The transport cannot do this (a bus reset or a re-enumeration it has no means for).
    #[error("not supported by this transport")]
    Unsupported,
}

/// What the host was doing when something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Bringing the device to dfuIDLE.
    Prepare,
    /// Selecting an alt setting.
    SelectAlt,
    /// The DfuSe set-address command.
    SetAddress,
    /// The DfuSe erase-page command.
    Erase,
    /// Writing a data block.
    Write,
    /// Reading a block.
    Read,
    /// Aborting to dfuIDLE.
    Abort,
    /// Sending a run-time interface to DFU mode (DETACH, reset, re-enumeration).
    Detach,
    /// A single status or state query.
    Query,
}

/// Why a run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A control transfer failed.
    #[error("{error} during {phase:?} at {address:#010x}")]
    Transfer {
        /// What was going on.
        phase: Phase,
        /// The address concerned.
        address: u32,
        /// The transport's error.
        error: TransferError,
    },
    /// The device reported an error status.
    #[error("device reports {status:?} in {state:?} during {phase:?} at {address:#010x}")]
    Device {
        /// What was going on.
        phase: Phase,
        /// The address concerned.
        address: u32,
        /// `bStatus`.
        status: Status,
        /// `bState`.
        state: State,
    },
    /// The device went to a state the protocol does not allow here.
    #[error("device in {found:?} during {phase:?} at {address:#010x}")]
    WrongState {
        /// What was going on.
        phase: Phase,
        /// The address concerned.
        address: u32,
        /// The state reported.
        found: State,
    },
    /// A reply could not be read.
    #[error("bad reply during {phase:?}: {error}")]
    Reply {
        /// What was going on.
        phase: Phase,
        /// Why.
        error: proto::ReplyError,
    },
    /// The device is in run-time mode (appIDLE/appDETACH).
    #[error("device still in run-time mode")]
    RuntimeMode,
    /// The device kept answering dfuDNBUSY.
    #[error("device stuck busy at {address:#010x}")]
    Stuck {
        /// The address concerned.
        address: u32,
    },
    /// Read-back differs from what was written.
    #[error("verify failed at {address:#010x}: wrote {expected:#04x}, read {found:#04x}")]
    Mismatch {
        /// The first bad address.
        address: u32,
        /// The byte written.
        expected: u8,
        /// The byte read.
        found: u8,
    },
    /// An upload ended early.
    #[error("upload ended at {address:#010x}, before the requested range")]
    ShortRead {
        /// Where the data stopped.
        address: u32,
    },
    /// `handle_*` was called out of turn.
    #[error("result given for no pending transfer")]
    OutOfTurn,
}

/// Why a plan is refused before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The range touches the bootloader.
    #[error("{address:#010x}..{end:#010x} overlaps the bootloader")]
    Bootloader {
        /// First address of the range.
        address: u32,
        /// End (exclusive).
        end: u32,
    },
    /// A byte of the range is not writeable (or readable, for a read).
    #[error("{address:#010x} is not {access}")]
    Access {
        /// The first offending address.
        address: u32,
        /// `"writeable"` or `"readable"`.
        access: &'static str,
    },
    /// A byte of the range lies in no segment (past the end of memory).
    #[error("{address:#010x} is outside the memory layout")]
    Unmapped {
        /// The first offending address.
        address: u32,
    },
    /// The alt setting has no memory layout.
    #[error("alt setting {alt} has no usable memory layout")]
    NoLayout {
        /// The alt setting.
        alt: u8,
    },
    /// The range wraps the address space or is longer than 4 GiB.
    #[error("range at {address:#010x} overflows")]
    Overflow {
        /// Its start.
        address: u32,
    },
    /// The file's suffix names another device.
    #[error(
        "file is for {file_vendor:04x}:{file_product:04x}, device is {vendor:04x}:{product:04x}"
    )]
    WrongDevice {
        /// Suffix idVendor.
        file_vendor: u16,
        /// Suffix idProduct.
        file_product: u16,
        /// Device idVendor.
        vendor: u16,
        /// Device idProduct.
        product: u16,
    },
    /// The firmware image is not for this platform or place.
    #[error("firmware refused: {0}")]
    Firmware(crate::module::FirmwareError),
    /// The transfer size is zero.
    #[error("transfer size is zero")]
    NoTransferSize,
}

/// A progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// The device was in dfuERROR (the Core always is at first) and was cleared.
    Cleared {
        /// The status it had.
        status: Status,
    },
    /// An interrupted transfer was aborted.
    Aborted {
        /// The state it was in.
        state: State,
    },
    /// A page was erased.
    Erased {
        /// Page start.
        address: u32,
        /// Page size.
        size: u32,
    },
    /// A block was written and the device confirmed it.
    Written {
        /// Block address.
        address: u32,
        /// Bytes.
        len: u32,
    },
    /// A block was read (and, when verifying, matched).
    Read {
        /// Block address.
        address: u32,
        /// Bytes.
        len: u32,
    },
    /// The leave request was sent.
    Leaving,
}

/// What to do next: [`Host::poll_action`]'s answer.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Action<'a> {
    /// Select this alt setting of the DFU interface (SET_INTERFACE).
    SelectAlt(u8),
    /// Perform this host-to-device transfer, then call [`Host::handle_out`].
    Out {
        /// The setup packet.
        setup: Setup,
        /// The data stage.
        data: &'a [u8],
    },
    /// Perform this device-to-host transfer (`setup.length` bytes at most), then call [`Host::handle_in`].
    In {
        /// The setup packet.
        setup: Setup,
    },
    /// Wait this many milliseconds (the device's poll timeout), then poll again.
    Wait(u32),
    /// Something happened; poll again.
    Event(Event),
    /// Finished.
    Done,
}

/// One stretch of memory to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region<'a> {
    /// The alt setting whose layout covers it.
    pub alt: u8,
    /// First address.
    pub address: u32,
    /// The bytes.
    pub data: &'a [u8],
}

/// What the host knows about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device<'a> {
    /// The DFU interface number (`wIndex`).
    pub interface: u16,
    /// `wTransferSize`.
    pub transfer_size: u16,
    /// The memory layout string of each alt setting, indexed by alt.
    pub layouts: &'a [&'a str],
    /// The protected bootloader range (start, end exclusive), if any.
    pub bootloader: Option<(u32, u32)>,
    /// Errors after the leave request mean success (the Core resets at once).
    pub resets_on_leave: bool,
}

impl Device<'static> {
    /// The device description of a platform from the table ([`crate::platform`]), when its layouts are known.
    #[must_use]
    pub fn for_platform(platform: crate::platform::Platform) -> Option<Self> {
        let layouts = platform.host_layouts()?;
        let boot = platform.location(crate::platform::Item::Bootloader)?;
        Some(Self {
            interface: 0,
            transfer_size: platform.transfer_size().unwrap_or(4096),
            layouts,
            bootloader: Some((boot.address, boot.address + boot.len)),
            resets_on_leave: platform.quirks().resets_on_leave,
        })
    }
}

/// Options of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Read back and compare after writing.
    pub verify: bool,
    /// Send the leave request at the end.
    pub leave: bool,
    /// Write the bootloader or non-writeable pages anyway (dfu-util's `:force`).
    pub force: bool,
    /// Set the address before every block, as dfu-util 0.11 does (for comparison and odd devices).
    pub address_every_block: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            verify: true,
            leave: false,
            force: false,
            address_every_block: false,
        }
    }
}

/// A summary of a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Control transfers performed.
    pub transfers: u32,
    /// Sum of the waits returned (milliseconds).
    pub waited_ms: u64,
    /// Bytes the device confirmed written.
    pub written: u64,
    /// Bytes read back.
    pub read: u64,
    /// Pages erased.
    pub erased: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    SetAddress(u32),
    Erase(u32),
    Data { address: u32, block: u16, len: u16 },
    Leave,
}

impl Cmd {
    fn phase(self) -> Phase {
        match self {
            Cmd::SetAddress(_) => Phase::SetAddress,
            Cmd::Erase(_) => Phase::Erase,
            Cmd::Data { .. } | Cmd::Leave => Phase::Write,
        }
    }
    fn address(self) -> u32 {
        match self {
            Cmd::SetAddress(a) | Cmd::Erase(a) | Cmd::Data { address: a, .. } => a,
            Cmd::Leave => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// GETSTATUS while preparing; `tries` counts clear/abort rounds.
    PrepStatus {
        tries: u8,
    },
    PrepClear {
        tries: u8,
    },
    PrepAbort {
        tries: u8,
    },
    /// Decide the next command.
    Next,
    Send(Cmd),
    Poll {
        cmd: Cmd,
        first: bool,
        polls: u8,
    },
    ReadAbort,
    ReadAbortStatus,
    Upload {
        address: u32,
        block: u16,
        len: u16,
    },
    FinalAbort,
    FinalStatus,
    LeaveStatus,
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Alt,
    Erase,
    Write,
    VerifyAddress,
    Verify,
}

enum Target<'a> {
    Write(&'a [Region<'a>]),
    Read {
        alt: u8,
        address: u32,
        out: &'a mut [u8],
    },
}

/// The host state machine for one run (a download plan or a read).
pub struct Host<'a> {
    device: Device<'a>,
    options: Options,
    target: Target<'a>,
    region: usize,
    stage: Stage,
    pages: Option<ErasePages<'a>>,
    offset: u32,
    /// Block number of the next block in the current run (`None`: the address must be set first).
    next_block: Option<u16>,
    step: Step,
    awaiting: bool,
    wait: Option<u32>,
    event: Option<Event>,
    cmd_bytes: [u8; 5],
    failed: Option<HostError>,
    /// The device may be in dfuUPLOAD-IDLE: abort before the next download.
    need_abort: bool,
    summary: Summary,
}

impl<'a> Host<'a> {
    fn new(mut device: Device<'a>, options: Options, target: Target<'a>) -> Result<Self, Refusal> {
        if device.transfer_size == 0 {
            return Err(Refusal::NoTransferSize);
        }
        // As dfu-util on Linux: never more than 4096 bytes per transfer.
        device.transfer_size = device.transfer_size.min(MAX_TRANSFER as u16);
        Ok(Self {
            device,
            options,
            target,
            region: 0,
            stage: Stage::Alt,
            pages: None,
            offset: 0,
            next_block: None,
            step: Step::PrepStatus { tries: 0 },
            awaiting: false,
            wait: None,
            event: None,
            cmd_bytes: [0; 5],
            failed: None,
            need_abort: false,
            summary: Summary::default(),
        })
    }

    /// A run that writes `regions` (erasing the pages they touch first), after the safety checks.
    pub fn download(
        device: Device<'a>,
        regions: &'a [Region<'a>],
        options: Options,
    ) -> Result<Self, Refusal> {
        for r in regions {
            check_write(&device, r, options.force)?;
        }
        Self::new(device, options, Target::Write(regions))
    }

    /// A run that reads `out.len()` bytes from `address` on `alt`.
    pub fn upload(
        device: Device<'a>,
        alt: u8,
        address: u32,
        out: &'a mut [u8],
    ) -> Result<Self, Refusal> {
        let layout = layout_of(&device, alt)?;
        let len = u32::try_from(out.len()).map_err(|_| Refusal::Overflow { address })?;
        layout
            .check_readable(address, len)
            .map_err(|e| refusal(e, address))?;
        let options = Options {
            verify: false,
            ..Options::default()
        };
        Self::new(device, options, Target::Read { alt, address, out })
    }

    /// The counts so far.
    #[must_use]
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// What to do next. After an error, the error again.
    pub fn poll_action(&mut self) -> Result<Action<'_>, HostError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.awaiting {
            return Err(HostError::OutOfTurn);
        }
        if let Some(e) = self.event.take() {
            return Ok(Action::Event(e));
        }
        if let Some(ms) = self.wait.take() {
            self.summary.waited_ms += u64::from(ms);
            return Ok(Action::Wait(ms));
        }
        if self.step == Step::Next {
            match self.advance() {
                Ok(Some(alt)) => {
                    self.awaiting = true;
                    return Ok(Action::SelectAlt(alt));
                }
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
        let iface = self.device.interface;
        let xfer = self.device.transfer_size;
        let action = match self.step {
            Step::PrepStatus { .. }
            | Step::Poll { .. }
            | Step::ReadAbortStatus
            | Step::FinalStatus
            | Step::LeaveStatus => Action::In {
                setup: Setup::input(Request::GetStatus, 0, iface, 6),
            },
            Step::PrepClear { .. } => Action::Out {
                setup: Setup::out(Request::ClrStatus, 0, iface, 0),
                data: &[],
            },
            Step::PrepAbort { .. } | Step::ReadAbort | Step::FinalAbort => Action::Out {
                setup: Setup::out(Request::Abort, 0, iface, 0),
                data: &[],
            },
            Step::Upload { block, len, .. } => Action::In {
                setup: Setup::input(Request::Upload, block, iface, len),
            },
            Step::Send(cmd) => {
                let (value, data): (u16, &[u8]) = match cmd {
                    Cmd::SetAddress(a) => {
                        self.cmd_bytes = proto::dfuse::set_address(a);
                        (0, &self.cmd_bytes)
                    }
                    Cmd::Erase(a) => {
                        self.cmd_bytes = proto::dfuse::erase_page(a);
                        (0, &self.cmd_bytes)
                    }
                    Cmd::Data { block, len, .. } => {
                        let Target::Write(regions) = &self.target else {
                            return Err(HostError::OutOfTurn);
                        };
                        let r = &regions[self.region];
                        let start = self.offset as usize;
                        (block, &r.data[start..start + usize::from(len)])
                    }
                    Cmd::Leave => (2, &[]),
                };
                debug_assert!(data.len() <= usize::from(xfer));
                Action::Out {
                    setup: Setup::out(Request::Dnload, value, iface, data.len() as u16),
                    data,
                }
            }
            Step::Finished => return Ok(Action::Done),
            Step::Next => unreachable!("advance always leaves Next"),
        };
        self.awaiting = true;
        Ok(action)
    }

    fn fail(&mut self, e: HostError) -> HostError {
        self.failed = Some(e);
        e
    }

    /// The result of the last host-to-device transfer.
    pub fn handle_out(&mut self, result: Result<(), TransferError>) -> Result<(), HostError> {
        if !core::mem::replace(&mut self.awaiting, false) {
            return Err(HostError::OutOfTurn);
        }
        self.summary.transfers += 1;
        let step = self.step;
        let r = match (step, result) {
            (Step::Next, Err(error)) => Err(HostError::Transfer {
                phase: Phase::SelectAlt,
                address: 0,
                error,
            }),
            (Step::Next, Ok(())) => Ok(()),
            // The Core resets on the leave request: a lost transfer is success, a stall is a refusal.
            (Step::Send(Cmd::Leave), Err(e))
                if self.device.resets_on_leave && e != TransferError::Stall =>
            {
                self.step = Step::Finished;
                Ok(())
            }
            (Step::Send(cmd), Err(error)) => Err(HostError::Transfer {
                phase: cmd.phase(),
                address: cmd.address(),
                error,
            }),
            (Step::Send(Cmd::Leave), Ok(())) => {
                self.step = Step::LeaveStatus;
                Ok(())
            }
            (Step::Send(cmd), Ok(())) => {
                self.step = Step::Poll {
                    cmd,
                    first: true,
                    polls: 0,
                };
                Ok(())
            }
            (Step::PrepClear { .. } | Step::PrepAbort { .. }, Err(error)) => {
                Err(HostError::Transfer {
                    phase: Phase::Prepare,
                    address: 0,
                    error,
                })
            }
            (Step::PrepClear { tries } | Step::PrepAbort { tries }, Ok(())) => {
                self.step = Step::PrepStatus { tries: tries + 1 };
                Ok(())
            }
            (Step::ReadAbort | Step::FinalAbort, Err(error)) => Err(HostError::Transfer {
                phase: Phase::Abort,
                address: 0,
                error,
            }),
            (Step::ReadAbort, Ok(())) => {
                self.step = Step::ReadAbortStatus;
                Ok(())
            }
            (Step::FinalAbort, Ok(())) => {
                self.step = Step::FinalStatus;
                Ok(())
            }
            _ => Err(HostError::OutOfTurn),
        };
        r.map_err(|e| self.fail(e))
    }

    /// The result of the last device-to-host transfer: the bytes received.
    pub fn handle_in(&mut self, result: Result<&[u8], TransferError>) -> Result<(), HostError> {
        if !core::mem::replace(&mut self.awaiting, false) {
            return Err(HostError::OutOfTurn);
        }
        self.summary.transfers += 1;
        let r = self.handle_in_inner(result);
        r.map_err(|e| self.fail(e))
    }

    fn status(
        result: Result<&[u8], TransferError>,
        phase: Phase,
        address: u32,
    ) -> Result<StatusReply, HostError> {
        let bytes = result.map_err(|error| HostError::Transfer {
            phase,
            address,
            error,
        })?;
        StatusReply::parse(bytes).map_err(|error| HostError::Reply { phase, error })
    }

    fn handle_in_inner(&mut self, result: Result<&[u8], TransferError>) -> Result<(), HostError> {
        match self.step {
            Step::PrepStatus { tries } => {
                let s = Self::status(result, Phase::Prepare, 0)?;
                self.wait = (s.poll_timeout > 0).then_some(s.poll_timeout);
                let bad = |s: StatusReply| HostError::Device {
                    phase: Phase::Prepare,
                    address: 0,
                    status: s.status,
                    state: s.state,
                };
                match s.state {
                    State::AppIdle | State::AppDetach => return Err(HostError::RuntimeMode),
                    _ if tries >= 3 => return Err(bad(s)),
                    State::Error => {
                        self.event = Some(Event::Cleared { status: s.status });
                        self.step = Step::PrepClear { tries };
                    }
                    State::DnloadIdle | State::UploadIdle => {
                        self.event = Some(Event::Aborted { state: s.state });
                        self.step = Step::PrepAbort { tries };
                    }
                    State::Idle if s.status != Status::OK => {
                        self.step = Step::PrepClear { tries };
                    }
                    State::Idle => self.step = Step::Next,
                    found => {
                        return Err(HostError::WrongState {
                            phase: Phase::Prepare,
                            address: 0,
                            found,
                        });
                    }
                }
                Ok(())
            }
            Step::Poll { cmd, first, polls } => {
                let s = Self::status(result, cmd.phase(), cmd.address())?;
                if s.status != Status::OK || s.state == State::Error {
                    return Err(HostError::Device {
                        phase: cmd.phase(),
                        address: cmd.address(),
                        status: s.status,
                        state: s.state,
                    });
                }
                if s.poll_timeout > 0 {
                    self.wait = Some(s.poll_timeout);
                }
                match s.state {
                    State::DnBusy if polls < 100 => {
                        self.step = Step::Poll {
                            cmd,
                            first: false,
                            polls: polls + 1,
                        };
                    }
                    State::DnBusy => {
                        return Err(HostError::Stuck {
                            address: cmd.address(),
                        });
                    }
                    State::DnloadIdle if !first => self.complete(cmd),
                    found => {
                        return Err(HostError::WrongState {
                            phase: cmd.phase(),
                            address: cmd.address(),
                            found,
                        });
                    }
                }
                Ok(())
            }
            Step::ReadAbortStatus | Step::FinalStatus => {
                self.need_abort = false;
                let phase = Phase::Abort;
                let s = Self::status(result, phase, 0)?;
                if s.state != State::Idle || s.status != Status::OK {
                    return Err(HostError::Device {
                        phase,
                        address: 0,
                        status: s.status,
                        state: s.state,
                    });
                }
                self.step = if self.step == Step::FinalStatus {
                    Step::Finished
                } else {
                    Step::Next
                };
                Ok(())
            }
            Step::LeaveStatus => {
                // The Core resets here: a failure is the expected outcome.
                match result {
                    Err(_) if self.device.resets_on_leave => {}
                    Err(error) => {
                        return Err(HostError::Transfer {
                            phase: Phase::Write,
                            address: 0,
                            error,
                        });
                    }
                    Ok(bytes) => {
                        let s = StatusReply::parse(bytes).map_err(|error| HostError::Reply {
                            phase: Phase::Write,
                            error,
                        })?;
                        if s.status != Status::OK {
                            return Err(HostError::Device {
                                phase: Phase::Write,
                                address: 0,
                                status: s.status,
                                state: s.state,
                            });
                        }
                    }
                }
                self.step = Step::Finished;
                Ok(())
            }
            Step::Upload {
                address,
                block,
                len,
            } => {
                let data = result.map_err(|error| HostError::Transfer {
                    phase: Phase::Read,
                    address,
                    error,
                })?;
                if data.len() < usize::from(len) {
                    return Err(HostError::ShortRead {
                        address: address + data.len() as u32,
                    });
                }
                let data = &data[..usize::from(len)];
                let start = self.offset as usize;
                match &mut self.target {
                    Target::Write(regions) => {
                        let want = &regions[self.region].data[start..start + data.len()];
                        if let Some(i) = want.iter().zip(data).position(|(a, b)| a != b) {
                            return Err(HostError::Mismatch {
                                address: address + i as u32,
                                expected: want[i],
                                found: data[i],
                            });
                        }
                    }
                    Target::Read { out, .. } => {
                        out[start..start + data.len()].copy_from_slice(data);
                    }
                }
                self.need_abort = true;
                self.summary.read += u64::from(len);
                self.offset += u32::from(len);
                self.next_block = block.checked_add(1);
                self.event = Some(Event::Read {
                    address,
                    len: u32::from(len),
                });
                self.step = Step::Next;
                Ok(())
            }
            _ => Err(HostError::OutOfTurn),
        }
    }

    fn complete(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::SetAddress(_) => {
                self.next_block = Some(2);
                if matches!(self.stage, Stage::Verify | Stage::VerifyAddress) {
                    self.step = Step::ReadAbort;
                    return;
                }
            }
            Cmd::Erase(address) => {
                let size = self.pages_size(address);
                self.summary.erased += 1;
                self.event = Some(Event::Erased { address, size });
            }
            Cmd::Data {
                address,
                block,
                len,
            } => {
                self.summary.written += u64::from(len);
                self.offset += u32::from(len);
                self.next_block = if self.options.address_every_block {
                    None
                } else {
                    block.checked_add(1)
                };
                self.event = Some(Event::Written {
                    address,
                    len: u32::from(len),
                });
            }
            Cmd::Leave => {}
        }
        self.step = Step::Next;
    }

    fn pages_size(&self, address: u32) -> u32 {
        let alt = match &self.target {
            Target::Write(r) => r[self.region].alt,
            Target::Read { alt, .. } => *alt,
        };
        layout_of(&self.device, alt)
            .ok()
            .and_then(|l| l.segment_at(address))
            .map_or(0, |s| s.page_size as u32)
    }

    /// Picks the next step. `Some(alt)` asks the caller to select an alt setting.
    fn advance(&mut self) -> Result<Option<u8>, HostError> {
        let xfer = u32::from(self.device.transfer_size);
        match &self.target {
            Target::Read { alt, address, out } => {
                let (alt, base, len) = (*alt, *address, out.len() as u32);
                match self.stage {
                    Stage::Alt => {
                        self.stage = Stage::VerifyAddress;
                        return Ok(Some(alt));
                    }
                    Stage::VerifyAddress => {
                        self.stage = Stage::Verify;
                        self.step = Step::Send(Cmd::SetAddress(base));
                    }
                    _ if self.offset >= len => self.step = Step::FinalAbort,
                    _ => self.next_upload(base, len, xfer)?,
                }
                Ok(None)
            }
            Target::Write(regions) => {
                let regions: &'a [Region<'a>] = regions;
                if self.need_abort && self.stage == Stage::Alt {
                    self.step = Step::ReadAbort;
                    return Ok(None);
                }
                let Some(r) = regions.get(self.region) else {
                    self.step = if self.options.leave {
                        self.event = Some(Event::Leaving);
                        Step::Send(Cmd::Leave)
                    } else {
                        Step::FinalAbort
                    };
                    return Ok(None);
                };
                let len = r.data.len() as u32;
                match self.stage {
                    Stage::Alt => {
                        self.stage = Stage::Erase;
                        let layout =
                            layout_of(&self.device, r.alt).map_err(|_| HostError::OutOfTurn)?;
                        // Checked when the plan was made, unless forced.
                        self.pages = layout.pages_to_erase(r.address, len).ok();
                        return Ok(Some(r.alt));
                    }
                    Stage::Erase => {
                        if let Some(page) = self.pages.as_mut().and_then(Iterator::next) {
                            self.step = Step::Send(Cmd::Erase(page.address));
                        } else {
                            self.stage = Stage::Write;
                            self.offset = 0;
                            self.next_block = None;
                            self.step = Step::Next;
                            return self.advance();
                        }
                    }
                    Stage::Write if self.offset < len => {
                        let address = r.address + self.offset;
                        match self.next_block {
                            None => self.step = Step::Send(Cmd::SetAddress(address)),
                            Some(block) => {
                                let n = (len - self.offset).min(xfer) as u16;
                                self.step = Step::Send(Cmd::Data {
                                    address,
                                    block,
                                    len: n,
                                });
                            }
                        }
                    }
                    Stage::Write if self.options.verify => {
                        self.stage = Stage::VerifyAddress;
                        self.offset = 0;
                        self.step = Step::Send(Cmd::SetAddress(r.address));
                    }
                    Stage::VerifyAddress => {
                        self.stage = Stage::Verify;
                        self.step = Step::Next;
                        return self.advance();
                    }
                    Stage::Verify if self.offset < len => {
                        self.next_upload(r.address, len, xfer)?;
                    }
                    Stage::Write | Stage::Verify => {
                        self.region += 1;
                        self.stage = Stage::Alt;
                        self.offset = 0;
                        self.next_block = None;
                        self.step = Step::Next;
                        return self.advance();
                    }
                }
                Ok(None)
            }
        }
    }

    /// The next UPLOAD block, or a new set-address when the block numbers ran out.
    fn next_upload(&mut self, base: u32, len: u32, xfer: u32) -> Result<(), HostError> {
        match self.next_block {
            Some(block) => {
                let n = (len - self.offset).min(xfer) as u16;
                self.step = Step::Upload {
                    address: base + self.offset,
                    block,
                    len: n,
                };
            }
            None => self.step = Step::Send(Cmd::SetAddress(base + self.offset)),
        }
        Ok(())
    }
}

fn layout_of<'a>(device: &Device<'a>, alt: u8) -> Result<MemoryLayout<'a>, Refusal> {
    device
        .layouts
        .get(usize::from(alt))
        .and_then(|s| MemoryLayout::parse(s).ok())
        .ok_or(Refusal::NoLayout { alt })
}

fn refusal(e: crate::file::layout::LayoutError, address: u32) -> Refusal {
    use crate::file::layout::LayoutError as L;
    match e {
        L::Unmapped { address } => Refusal::Unmapped { address },
        L::Access { address, access } => Refusal::Access { address, access },
        _ => Refusal::Overflow { address },
    }
}

/// The safety checks of a write: inside the layout, writeable, clear of the bootloader (unless forced).
pub fn check_write(device: &Device<'_>, r: &Region<'_>, force: bool) -> Result<(), Refusal> {
    let layout = layout_of(device, r.alt)?;
    let len = u32::try_from(r.data.len()).map_err(|_| Refusal::Overflow { address: r.address })?;
    let end = r
        .address
        .checked_add(len)
        .ok_or(Refusal::Overflow { address: r.address })?;
    if force {
        return Ok(());
    }
    if let Some((b0, b1)) = device.bootloader
        && r.alt == 0
        && r.address < b1
        && end > b0
        && len > 0
    {
        return Err(Refusal::Bootloader {
            address: r.address,
            end,
        });
    }
    layout
        .check_writeable(r.address, len)
        .map_err(|e| refusal(e, r.address))?;
    layout
        .pages_to_erase(r.address, len)
        .map(|_| ())
        .map_err(|e| refusal(e, r.address))
}
