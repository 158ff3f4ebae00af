//! A simulated Spark Core bootloader in DFU mode, for tests of hosts and tools.
//!
//! It follows the bootloader's behaviour (spark/bootloader `usb_prop.c`, `dfu_mal.c`): it starts in dfuERROR
//! with errFIRMWARE, uses 1024-byte transfers, picks the medium from the address (0x08xxxxxx internal flash,
//! 0x00xxxxxx SPI flash), executes a command in the status stage of the GETSTATUS that reports dfuDNBUSY, reports
//! the real poll timeouts (internal erase/write 50 ms, SPI erase 20 ms / write 30 ms), accepts a zero-length
//! DNLOAD in dfuIDLE or dfuDNLOAD-IDLE as the leave request and resets after the dfuMANIFEST status. On top of
//! that it enforces erase-before-write (programming a byte that is not 0xFF fails with errPROG) and keeps the
//! bootloader pages write-protected. Faults can be injected at any transfer.
//!
//! [`SparkCore::electron`] gives the same machine the Electron's DFU face (platform 10): dfuIDLE at start,
//! 4096-byte transfers, the medium chosen by the alt setting (alt 0 internal flash, alt 1 the 16 KiB DCT), and a
//! DCT that is written in place: Device OS's DFU driver for the DCT alt keeps the rest of the table around a
//! write, so an erase command there clears nothing and the DCT needs no erase before a write.

use alloc::vec;
use alloc::vec::Vec;

use crate::file::layout::MemoryLayout;
use crate::host::TransferError;
use crate::host::proto::{Request, Setup, State, Status, StatusReply};
use crate::platform::{ELECTRON_INTERNAL_FLASH, Platform, core_map};
use crate::transport::{asynch, blocking};

/// Internal flash erase poll timeout (ms).
pub const INTERNAL_ERASE_MS: u32 = 50;
/// Internal flash write poll timeout (ms).
pub const INTERNAL_WRITE_MS: u32 = 50;
/// SPI flash erase poll timeout (ms).
pub const SPI_ERASE_MS: u32 = 20;
/// SPI flash write poll timeout (ms).
pub const SPI_WRITE_MS: u32 = 30;
/// The Core's transfer size.
pub const TRANSFER_SIZE: usize = 1024;
/// The simulated Electron's transfer size (what the host assumes where the table knows none).
pub const ELECTRON_TRANSFER_SIZE: usize = 4096;
/// The Electron's internal flash: 1 MiB from 0x08000000.
const ELECTRON_FLASH_LEN: usize = 0x10_0000;
/// The Electron's DCT as its alt 1 shows it: 16 KiB from 0.
pub const ELECTRON_DCT_LEN: usize = 0x4000;
/// Where the Electron's writable internal flash starts (its first three 16 KiB sectors are read-only over DFU).
const ELECTRON_WRITABLE: u32 = 0x0800_C000;

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The device stalls the transfer.
    Stall,
    /// The transfer fails with a USB error (nothing reaches the device).
    UsbError,
    /// A GETSTATUS at this point reports this status and dfuERROR (the operation is not done). On another
    /// request, the device stalls.
    WrongStatus(Status),
    /// The device disappears: this and every later transfer fails.
    Disappear,
}

/// One logged control transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The setup packet.
    pub setup: Setup,
    /// The OUT data (empty for IN transfers).
    pub data: Vec<u8>,
}

/// The simulated Spark Core (or, from [`SparkCore::electron`], Electron).
#[derive(Debug, Clone)]
pub struct SparkCore {
    /// Internal flash, 0x08000000..0x08020000 (the Electron: ..0x08100000).
    pub internal: Vec<u8>,
    /// External SPI flash, 0x00000000..0x00200000 (empty on the Electron).
    pub spi: Vec<u8>,
    /// The DCT behind alt 1 (the Electron only; empty on the Core).
    pub dct: Vec<u8>,
    platform: Platform,
    state: State,
    status: Status,
    pointer: u32,
    pending: Option<(u16, Vec<u8>)>,
    alt: u8,
    gone: bool,
    /// How many times the device reset (after the leave request).
    pub resets: u32,
    /// Control transfers seen (SET_INTERFACE included).
    pub transfers: u32,
    /// Simulated time: the sum of the waits the host asked for (ms).
    pub elapsed_ms: u64,
    /// Every transfer, when logging is on.
    pub log: Option<Vec<Logged>>,
    /// Every range actually programmed `(address, len)`.
    pub programmed: Vec<(u32, u32)>,
    faults: Vec<(u32, Fault)>,
    /// Run-time mode only: bitWillDetach, and when an unanswered DETACH expires (simulated ms).
    will_detach: bool,
    detach_deadline: Option<u64>,
    /// Gone from the bus after a DETACH: found again in DFU mode by a re-enumeration.
    detached: bool,
}

impl Default for SparkCore {
    fn default() -> Self {
        Self::new()
    }
}

impl SparkCore {
    /// A Core fresh into DFU mode: erased flash, state dfuERROR / errFIRMWARE.
    #[must_use]
    pub fn new() -> Self {
        Self {
            internal: vec![0xFF; (core_map::INTERNAL_FLASH_END - core_map::BOOTLOADER) as usize],
            spi: vec![0xFF; core_map::EXTERNAL_FLASH_END as usize],
            dct: Vec::new(),
            platform: Platform::Core,
            state: State::Error,
            status: Status::FIRMWARE,
            pointer: core_map::FIRMWARE,
            pending: None,
            alt: 0,
            gone: false,
            resets: 0,
            transfers: 0,
            elapsed_ms: 0,
            log: None,
            programmed: Vec::new(),
            faults: Vec::new(),
            will_detach: true,
            detach_deadline: None,
            detached: false,
        }
    }

    /// A Core running an application that offers a run-time DFU interface (appIDLE), as later firmware does;
    /// the 2014 Core firmware had none. DFU_DETACH sends it to the bootloader: with `will_detach` it leaves the
    /// bus at once and is found again in DFU mode by a re-enumeration; without, it waits for a USB reset and
    /// goes back to appIDLE when the detach timeout passes first (simulated time advances with the waits).
    #[must_use]
    pub fn in_runtime(will_detach: bool) -> Self {
        Self {
            state: State::AppIdle,
            status: Status::OK,
            will_detach,
            ..Self::new()
        }
    }

    /// An Electron fresh into DFU mode: erased internal flash and DCT, state dfuIDLE.
    #[must_use]
    pub fn electron() -> Self {
        Self {
            internal: vec![0xFF; ELECTRON_FLASH_LEN],
            spi: Vec::new(),
            dct: vec![0xFF; ELECTRON_DCT_LEN],
            platform: Platform::Electron,
            state: State::Idle,
            status: Status::OK,
            pointer: core_map::BOOTLOADER,
            ..Self::new()
        }
    }

    /// The platform this simulation answers as.
    #[must_use]
    pub fn platform(&self) -> Platform {
        self.platform
    }

    fn transfer_size(&self) -> usize {
        match self.platform {
            Platform::Core => TRANSFER_SIZE,
            _ => ELECTRON_TRANSFER_SIZE,
        }
    }

    fn in_runtime_mode(&self) -> bool {
        matches!(self.state, State::AppIdle | State::AppDetach)
    }

    /// A USB bus reset: a run-time interface told to detach enters DFU mode; otherwise nothing changes.
    fn bus_reset(&mut self) -> Result<(), TransferError> {
        if self.gone {
            return Err(TransferError::Disconnected);
        }
        if self.state == State::AppDetach {
            self.detach_deadline = None;
            self.reenter_dfu();
        }
        Ok(())
    }

    /// Finding the device again: after a DETACH it is back in DFU mode; after the leave request it runs the
    /// application, which has no DFU interface.
    fn find_again(&mut self) -> Result<(), TransferError> {
        if self.detached {
            self.detached = false;
            self.reenter_dfu();
        }
        if self.gone {
            return Err(TransferError::Timeout);
        }
        Ok(())
    }

    fn advance_clock(&mut self, ms: u32) {
        self.elapsed_ms += u64::from(ms);
        if let Some(deadline) = self.detach_deadline
            && self.elapsed_ms >= deadline
            && self.state == State::AppDetach
        {
            self.detach_deadline = None;
            self.state = State::AppIdle;
        }
    }

    fn runtime_out(&mut self, setup: Setup) -> Result<(), TransferError> {
        match setup.dfu_request() {
            Some(Request::Detach) if self.state == State::AppIdle => {
                self.state = State::AppDetach;
                if self.will_detach {
                    self.gone = true;
                    self.detached = true;
                } else {
                    self.detach_deadline = Some(self.elapsed_ms + u64::from(setup.value));
                }
                Ok(())
            }
            // The application stalls anything else; it stays in run-time mode.
            _ => Err(TransferError::Stall),
        }
    }

    /// Turns the transfer log on.
    #[must_use]
    pub fn with_log(mut self) -> Self {
        self.log = Some(Vec::new());
        self
    }

    /// Injects `fault` at the `n`-th control transfer (0-based, SET_INTERFACE included).
    pub fn inject(&mut self, n: u32, fault: Fault) {
        self.faults.push((n, fault));
    }

    /// The current state and status.
    #[must_use]
    pub fn state(&self) -> (State, Status) {
        (self.state, self.status)
    }

    /// The selected alt setting.
    #[must_use]
    pub fn alt(&self) -> u8 {
        self.alt
    }

    /// Whether the device is still on the bus.
    #[must_use]
    pub fn present(&self) -> bool {
        !self.gone
    }

    /// Brings a reset device back in DFU mode (as holding MODE through a reset would).
    pub fn reenter_dfu(&mut self) {
        self.gone = false;
        if self.platform == Platform::Core {
            self.state = State::Error;
            self.status = Status::FIRMWARE;
            self.pointer = core_map::FIRMWARE;
        } else {
            self.state = State::Idle;
            self.status = Status::OK;
            self.pointer = core_map::BOOTLOADER;
        }
        self.pending = None;
    }

    /// The bytes at `address` on the selected alt's medium (the Core: internal or SPI flash by the address), if
    /// in range.
    #[must_use]
    pub fn memory(&self, address: u32, len: usize) -> Option<&[u8]> {
        let (mem, off) = self.medium(address)?;
        self.bank(mem).get(off..off.checked_add(len)?)
    }

    /// Writes memory directly (to set up a test), bypassing the protocol.
    pub fn preload(&mut self, address: u32, data: &[u8]) -> bool {
        let Some((internal, off)) = self.medium(address) else {
            return false;
        };
        let mem = self.bank_mut(internal);
        match mem.get_mut(off..off + data.len()) {
            Some(m) => {
                m.copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// The internal flash, or the other medium (SPI flash on the Core, the DCT on the Electron).
    fn bank(&self, internal: bool) -> &[u8] {
        match (internal, self.platform) {
            (true, _) => &self.internal,
            (false, Platform::Core) => &self.spi,
            (false, _) => &self.dct,
        }
    }

    fn bank_mut(&mut self, internal: bool) -> &mut Vec<u8> {
        match (internal, self.platform) {
            (true, _) => &mut self.internal,
            (false, Platform::Core) => &mut self.spi,
            (false, _) => &mut self.dct,
        }
    }

    /// `(is_internal, offset)` of an address: on the Core chosen by the MAL mask as the bootloader does, on the
    /// Electron by the selected alt setting.
    fn medium(&self, address: u32) -> Option<(bool, usize)> {
        if self.platform != Platform::Core {
            return match self.alt {
                0 => address
                    .checked_sub(core_map::BOOTLOADER)
                    .map(|off| (true, off as usize)),
                _ => Some((false, address as usize)),
            };
        }
        match address & 0xFC00_0000 {
            0x0800_0000 => Some((true, (address - core_map::BOOTLOADER) as usize)),
            0 => Some((false, address as usize)),
            _ => None,
        }
    }

    fn fault_now(&mut self) -> Option<Fault> {
        let n = self.transfers;
        self.transfers += 1;
        if self.gone {
            return Some(Fault::Disappear);
        }
        let i = self.faults.iter().position(|(at, _)| *at == n)?;
        let f = self.faults.remove(i).1;
        if f == Fault::Disappear {
            self.gone = true;
        }
        Some(f)
    }

    fn log(&mut self, setup: Setup, data: &[u8]) {
        if let Some(log) = &mut self.log {
            log.push(Logged {
                setup,
                data: data.to_vec(),
            });
        }
    }

    fn stall(&mut self) -> TransferError {
        self.state = State::Error;
        self.status = Status::STALLEDPKT;
        TransferError::Stall
    }

    fn fault_error(&mut self, f: Fault) -> TransferError {
        match f {
            Fault::Stall | Fault::WrongStatus(_) => self.stall(),
            Fault::UsbError => TransferError::Io,
            Fault::Disappear => TransferError::Disconnected,
        }
    }

    fn timing(&self, erase: bool) -> u32 {
        let internal = self.medium(self.pointer).is_some_and(|(i, _)| i);
        match (internal, erase) {
            (true, true) => INTERNAL_ERASE_MS,
            (true, false) => INTERNAL_WRITE_MS,
            (false, true) => SPI_ERASE_MS,
            (false, false) => SPI_WRITE_MS,
        }
    }

    fn select(&mut self, alt: u8) -> Result<(), TransferError> {
        if let Some(f) = self.fault_now() {
            return Err(self.fault_error(f));
        }
        if alt > 1 {
            return Err(TransferError::Stall);
        }
        self.alt = alt;
        Ok(())
    }

    fn out(&mut self, setup: Setup, data: &[u8]) -> Result<(), TransferError> {
        self.log(setup, data);
        if let Some(f) = self.fault_now() {
            return Err(self.fault_error(f));
        }
        if self.in_runtime_mode() {
            return self.runtime_out(setup);
        }
        match setup.dfu_request() {
            Some(Request::ClrStatus) if self.state == State::Error => {
                self.state = State::Idle;
                self.status = Status::OK;
                Ok(())
            }
            Some(Request::Abort)
                if matches!(
                    self.state,
                    State::Idle
                        | State::DnloadSync
                        | State::DnloadIdle
                        | State::ManifestSync
                        | State::UploadIdle
                ) =>
            {
                self.state = State::Idle;
                self.pending = None;
                Ok(())
            }
            Some(Request::Dnload) if matches!(self.state, State::Idle | State::DnloadIdle) => {
                if data.is_empty() {
                    self.state = State::ManifestSync;
                    return Ok(());
                }
                let supported = match setup.value {
                    0 => matches!((data[0], data.len()), (0x00, 1) | (0x21, 5) | (0x41, 5)),
                    1 => false,
                    _ => data.len() <= self.transfer_size(),
                };
                if !supported {
                    return Err(self.stall());
                }
                self.pending = Some((setup.value, data.to_vec()));
                self.state = State::DnloadSync;
                Ok(())
            }
            _ => Err(self.stall()),
        }
    }

    fn input(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, TransferError> {
        self.log(setup, &[]);
        let fault = self.fault_now();
        if let Some(Fault::WrongStatus(status)) = fault
            && setup.dfu_request() == Some(Request::GetStatus)
        {
            self.pending = None;
            self.state = State::Error;
            self.status = status;
            return Ok(self.reply(buf, 0));
        }
        if let Some(f) = fault {
            return Err(self.fault_error(f));
        }
        if self.in_runtime_mode() && setup.dfu_request() == Some(Request::Upload) {
            return Err(TransferError::Stall);
        }
        match setup.dfu_request() {
            Some(Request::GetStatus) => self.get_status(buf),
            Some(Request::GetState) if !buf.is_empty() => {
                buf[0] = self.state as u8;
                Ok(1)
            }
            Some(Request::Upload) if matches!(self.state, State::Idle | State::UploadIdle) => {
                self.upload(setup, buf)
            }
            _ => Err(self.stall()),
        }
    }

    fn reply(&self, buf: &mut [u8], poll: u32) -> usize {
        let r = StatusReply {
            status: self.status,
            poll_timeout: poll,
            state: self.state,
            string: 0,
        }
        .to_bytes();
        let n = buf.len().min(6);
        buf[..n].copy_from_slice(&r[..n]);
        n
    }

    fn get_status(&mut self, buf: &mut [u8]) -> Result<usize, TransferError> {
        match self.state {
            State::DnloadSync if self.pending.is_some() => {
                self.state = State::DnBusy;
                let erase = matches!(&self.pending, Some((0, d)) if d[0] == 0x41);
                let n = self.reply(buf, self.timing(erase));
                // The status stage: the bootloader executes the command now.
                self.execute();
                Ok(n)
            }
            State::DnloadSync => {
                self.state = State::DnloadIdle;
                Ok(self.reply(buf, 0))
            }
            State::ManifestSync => {
                self.state = State::Manifest;
                let n = self.reply(buf, 1);
                // bitManifestationTolerant = 0: MANIFEST-WAIT-RESET, then the MCU resets.
                self.state = State::ManifestWaitReset;
                self.gone = true;
                self.resets += 1;
                Ok(n)
            }
            _ => Ok(self.reply(buf, 0)),
        }
    }

    fn fail(&mut self, status: Status) {
        self.state = State::Error;
        self.status = status;
    }

    fn execute(&mut self) {
        let Some((block, data)) = self.pending.take() else {
            return;
        };
        self.state = State::DnloadSync;
        if block == 0 {
            let address = data
                .get(1..5)
                .map_or(0, |a| u32::from_le_bytes([a[0], a[1], a[2], a[3]]));
            match data[0] {
                0x21 => self.pointer = address,
                // The bootloader loads the pointer from the erase command too (`DFU_Status_Out`).
                0x41 => {
                    self.pointer = address;
                    self.erase(address);
                }
                _ => {}
            }
            return;
        }
        let address = (u32::from(block) - 2)
            .wrapping_mul(self.transfer_size() as u32)
            .wrapping_add(self.pointer);
        self.program(address, &data);
    }

    fn erase(&mut self, address: u32) {
        let Some((internal, off)) = self.medium(address) else {
            return self.fail(Status::ADDRESS);
        };
        if self.platform != Platform::Core {
            return self.erase_electron(internal, address, off);
        }
        let (mem, page) = if internal {
            if address < core_map::FIRMWARE {
                return self.fail(Status::ERASE);
            }
            (&mut self.internal, 1024)
        } else {
            (&mut self.spi, 4096)
        };
        let start = off / page * page;
        match mem.get_mut(start..start + page) {
            Some(p) => p.fill(0xFF),
            None => self.fail(Status::ADDRESS),
        }
    }

    /// The Electron: internal flash erases the sector holding `address`; the DCT is written in place, so an
    /// erase there only checks the address.
    fn erase_electron(&mut self, internal: bool, address: u32, off: usize) {
        if !internal {
            if off >= self.dct.len() {
                self.fail(Status::ADDRESS);
            }
            return;
        }
        if address < ELECTRON_WRITABLE {
            return self.fail(Status::ERASE);
        }
        let segment = MemoryLayout::parse(ELECTRON_INTERNAL_FLASH)
            .ok()
            .and_then(|l| l.segment_at(address));
        let Some(segment) = segment else {
            return self.fail(Status::ADDRESS);
        };
        let page = segment.page_size.unsigned_abs() as usize;
        let start = (address - segment.start) as usize / page * page
            + (segment.start - core_map::BOOTLOADER) as usize;
        match self.internal.get_mut(start..start + page) {
            Some(p) => p.fill(0xFF),
            None => self.fail(Status::ADDRESS),
        }
    }

    fn program(&mut self, address: u32, data: &[u8]) {
        let Some((internal, off)) = self.medium(address) else {
            return self.fail(Status::ADDRESS);
        };
        let protected = match self.platform {
            Platform::Core => core_map::FIRMWARE,
            _ => ELECTRON_WRITABLE,
        };
        if internal && address < protected {
            return self.fail(Status::WRITE);
        }
        let in_place = !internal && self.platform != Platform::Core;
        let mem = self.bank_mut(internal);
        let Some(target) = mem.get_mut(off..off + data.len()) else {
            return self.fail(Status::ADDRESS);
        };
        if !in_place && target.iter().any(|&b| b != 0xFF) {
            return self.fail(Status::PROG);
        }
        target.copy_from_slice(data);
        self.programmed.push((address, data.len() as u32));
    }

    fn upload(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, TransferError> {
        if setup.value == 0 {
            let cmds = [0x00, 0x21, 0x41];
            let n = buf.len().min(3);
            buf[..n].copy_from_slice(&cmds[..n]);
            self.state = State::Idle;
            return Ok(n);
        }
        if setup.value == 1 || buf.len() > self.transfer_size() {
            return Err(self.stall());
        }
        let address = (u32::from(setup.value) - 2)
            .wrapping_mul(self.transfer_size() as u32)
            .wrapping_add(self.pointer);
        let Some(src) = self.memory(address, buf.len()) else {
            return Err(self.stall());
        };
        buf.copy_from_slice(src);
        self.state = State::UploadIdle;
        Ok(buf.len())
    }
}

impl blocking::Transport for SparkCore {
    fn select_alt(&mut self, alt: u8) -> Result<(), TransferError> {
        self.select(alt)
    }
    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), TransferError> {
        self.out(setup, data)
    }
    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, TransferError> {
        self.input(setup, buf)
    }
    fn wait(&mut self, ms: u32) {
        self.advance_clock(ms);
    }
    fn reset(&mut self) -> Result<(), TransferError> {
        self.bus_reset()
    }
    fn reenumerate(&mut self, _timeout_ms: u32) -> Result<(), TransferError> {
        self.find_again()
    }
}

impl asynch::Transport for SparkCore {
    async fn select_alt(&mut self, alt: u8) -> Result<(), TransferError> {
        self.select(alt)
    }
    async fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), TransferError> {
        self.out(setup, data)
    }
    async fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, TransferError> {
        self.input(setup, buf)
    }
    async fn wait(&mut self, ms: u32) {
        self.advance_clock(ms);
    }
    async fn reset(&mut self) -> Result<(), TransferError> {
        self.bus_reset()
    }
    async fn reenumerate(&mut self, _timeout_ms: u32) -> Result<(), TransferError> {
        self.find_again()
    }
}
