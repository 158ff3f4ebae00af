//! A simulated CC3000 NVMEM, for testing programmers and tools without a chip.
//!
//! The model: a 32 KiB EEPROM whose first bytes hold the file table (pseudo-file 16 reads and writes the raw
//! EEPROM from address 0). A file can be written when allocated, at most [`WRITE_PORTION`] bytes per call, and is
//! marked invalid while a write is in progress and valid when it completes; it can be read only when allocated and
//! valid. Rewriting a table entry (which programmers write with the allocated bit only) thereby invalidates the
//! file. `create_entry` reallocates a user file in the first free gap. The reported service-pack version is the one
//! the known driver patch in file 4 gives, or the ROM version when file 4 holds no valid known image.
//!
//! Faults can be scheduled: power loss before any operation or in the middle of a write (the chip then refuses
//! everything until [`SimNvmem::power_cycle`]), a read that fails a number of times, a byte corrupted on its way into
//! the EEPROM.
//!
//! ```
//! use spark_cc3000::ServicePack;
//! use spark_cc3000::nvmem::{FatTable, FileId};
//! use spark_cc3000::programmer::Nvmem;
//! use spark_cc3000::sim::{Fault, SimNvmem};
//!
//! let mut chip = SimNvmem::with_table(&FatTable::programmer_default(), ServicePack::SP_1_24);
//! assert_eq!(chip.read_sp_version().unwrap(), ServicePack::SP_1_24);
//!
//! // The next operation meets a power cut; the chip answers nothing until it is powered again.
//! chip.inject(Fault::PowerLossBeforeOp { op: chip.op_count() });
//! assert!(chip.write(FileId::Mac, 0, &[8, 0, 0x28, 1, 2, 3]).is_err());
//! assert!(chip.read_sp_version().is_err());
//! chip.power_cycle();
//! chip.write(FileId::Mac, 0, &[8, 0, 0x28, 1, 2, 3]).unwrap();
//! assert_eq!(chip.file(FileId::Mac, 6), Some(&[8, 0, 0x28, 1, 2, 3][..]));
//! ```

use alloc::vec;
use alloc::vec::Vec;

use crate::hci::{self, Command, DataPacket, Event, SpiTransport};
use crate::nvmem::{
    EEPROM_SIZE, ENTRY_LEN, FAT_LEN, FILES_START, FatEntry, FatFlags, FatTable, FileId,
    WRITE_PORTION,
};
use crate::patch::{PatchImage, ServicePack};
use crate::programmer::Nvmem;

/// Why the simulated chip refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Power is off (a power-loss fault fired); call [`SimNvmem::power_cycle`].
    #[error("the simulated CC3000 has no power")]
    PoweredOff,
    /// The file has no allocated entry.
    #[error("file {0:?} is not allocated")]
    NotAllocated(FileId),
    /// The file's content is not valid (never completely written since allocation).
    #[error("file {0:?} is not valid")]
    Invalid(FileId),
    /// Offset and length run past the file.
    #[error("access beyond the end of file {0:?}")]
    OutOfBounds(FileId),
    /// A write larger than the chip accepts.
    #[error("write of {0} bytes exceeds the 32-byte limit")]
    TooLong(usize),
    /// `create_entry` on a file that is not a user file.
    #[error("file {0:?} is not a user file")]
    NotUserFile(FileId),
    /// No free space for `create_entry`.
    #[error("no free EEPROM space")]
    NoSpace,
    /// An injected read failure.
    #[error("injected read failure")]
    InjectedFailure,
}

/// A scheduled fault. Operation and write counts start at 0 and run over the whole life of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Power is lost just before operation `op` (any kind) is carried out.
    PowerLossBeforeOp {
        /// The operation index.
        op: usize,
    },
    /// Write number `write` stores only its first `keep` bytes, then power is lost (the file stays invalid).
    PowerLossDuringWrite {
        /// The write index.
        write: usize,
        /// Bytes that reach the EEPROM.
        keep: usize,
    },
    /// Read number `read` fails, and so do the next `times - 1` attempts.
    ReadFails {
        /// The read index.
        read: usize,
        /// Consecutive failures.
        times: usize,
    },
    /// Write number `write` stores byte `index` of its data XORed with `xor`.
    CorruptWrite {
        /// The write index.
        write: usize,
        /// The byte within the write.
        index: usize,
        /// The XOR mask.
        xor: u8,
    },
}

/// One operation the simulator received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Read {
        /// The file.
        file: FileId,
        /// The offset.
        offset: u32,
        /// The length.
        len: usize,
    },
    /// A write.
    Write {
        /// The file.
        file: FileId,
        /// The offset.
        offset: u32,
        /// The length.
        len: usize,
    },
    /// A create-entry.
    CreateEntry {
        /// The file.
        file: FileId,
        /// The length.
        len: u32,
    },
    /// A version read.
    ReadVersion,
}

/// The simulated NVMEM.
#[derive(Debug, Clone)]
pub struct SimNvmem {
    eeprom: Vec<u8>,
    rom_version: ServicePack,
    powered: bool,
    faults: Vec<Fault>,
    pending_read_failures: usize,
    log: Vec<Op>,
    /// The last driver patch identified and the version it gives (identification hashes the file).
    version_cache: Option<(Vec<u8>, Option<ServicePack>)>,
    ops: usize,
    reads: usize,
    writes: usize,
}

impl SimNvmem {
    /// A chip whose EEPROM is erased (0xFF) and has no table; `rom_version` is reported until a known driver patch
    /// is in place.
    pub fn blank(rom_version: ServicePack) -> Self {
        SimNvmem {
            eeprom: vec![0xFF; EEPROM_SIZE as usize],
            rom_version,
            powered: true,
            faults: Vec::new(),
            pending_read_failures: 0,
            log: Vec::new(),
            version_cache: None,
            ops: 0,
            reads: 0,
            writes: 0,
        }
    }

    /// A chip with `table` in place (entries as given: allocated files are not yet valid).
    pub fn with_table(table: &FatTable, rom_version: ServicePack) -> Self {
        let mut sim = Self::blank(rom_version);
        sim.eeprom[..FAT_LEN].copy_from_slice(&table.to_bytes());
        sim
    }

    /// Stores `bytes` at the start of `file` and marks it valid, bypassing faults and the log (test setup).
    pub fn install(&mut self, file: FileId, bytes: &[u8]) -> Result<(), SimError> {
        let entry = self.entry(file).ok_or(SimError::NotAllocated(file))?;
        if bytes.len() > usize::from(entry.length) {
            return Err(SimError::OutOfBounds(file));
        }
        let at = usize::from(entry.address);
        self.eeprom[at..at + bytes.len()].copy_from_slice(bytes);
        self.set_valid(file, true);
        Ok(())
    }

    /// Schedules a fault.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Restores power (scheduled faults that have not fired stay scheduled).
    pub fn power_cycle(&mut self) {
        self.powered = true;
        self.pending_read_failures = 0;
    }

    /// Whether power is on.
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// The raw EEPROM.
    pub fn eeprom(&self) -> &[u8] {
        &self.eeprom
    }

    /// The table as the EEPROM holds it (`None` without the magic).
    pub fn table(&self) -> Option<FatTable> {
        FatTable::parse(&self.eeprom[..FAT_LEN]).ok()
    }

    /// `len` bytes of `file` if it is allocated, valid and long enough (no faults, not logged).
    pub fn file(&self, file: FileId, len: usize) -> Option<&[u8]> {
        let e = self
            .entry(file)
            .filter(|e| e.flags.valid() && usize::from(e.length) >= len)?;
        let at = usize::from(e.address);
        Some(&self.eeprom[at..at + len])
    }

    /// Every operation received, in order.
    pub fn log(&self) -> &[Op] {
        &self.log
    }

    /// Operations received (including refused ones).
    pub fn op_count(&self) -> usize {
        self.ops
    }

    /// Writes received (including refused ones).
    pub fn write_count(&self) -> usize {
        self.writes
    }

    /// The version the chip would report now.
    pub fn reported_version(&self) -> ServicePack {
        self.driver_patch()
            .and_then(Self::version_of)
            .unwrap_or(self.rom_version)
    }

    /// The valid patch image in file 4, as far as its length word says.
    fn driver_patch(&self) -> Option<&[u8]> {
        let head = self.file(FileId::WlanDriverSp, crate::patch::HEADER_LEN)?;
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize + 8;
        self.file(FileId::WlanDriverSp, len)
    }

    fn version_of(image: &[u8]) -> Option<ServicePack> {
        PatchImage::parse(image).ok()?.reports()
    }

    fn reported_version_cached(&mut self) -> ServicePack {
        let Some(image) = self.driver_patch() else {
            return self.rom_version;
        };
        let version = match &self.version_cache {
            Some((bytes, v)) if bytes[..] == *image => *v,
            _ => {
                let v = Self::version_of(image);
                self.version_cache = Some((image.to_vec(), v));
                v
            }
        };
        version.unwrap_or(self.rom_version)
    }

    fn entry(&self, file: FileId) -> Option<FatEntry> {
        if file == FileId::Fat || self.eeprom[..2] != crate::nvmem::FAT_MAGIC {
            return None;
        }
        let at = 4 + usize::from(file.id()) * ENTRY_LEN;
        let e = FatEntry::parse([
            self.eeprom[at],
            self.eeprom[at + 1],
            self.eeprom[at + 2],
            self.eeprom[at + 3],
        ]);
        e.flags.allocated().then_some(e)
    }

    fn set_entry(&mut self, file: FileId, entry: FatEntry) {
        let at = 4 + usize::from(file.id()) * ENTRY_LEN;
        self.eeprom[at..at + ENTRY_LEN].copy_from_slice(&entry.emit());
    }

    fn set_valid(&mut self, file: FileId, valid: bool) {
        if let Some(mut e) = self.entry(file) {
            e.flags = e.flags.with(FatFlags::VALID, valid);
            self.set_entry(file, e);
        }
    }

    /// Counts an operation and fires power-loss faults; Err when power is (now) off.
    fn begin(&mut self, op: Op) -> Result<(), SimError> {
        let index = self.ops;
        self.ops += 1;
        self.log.push(op);
        if self
            .faults
            .contains(&Fault::PowerLossBeforeOp { op: index })
        {
            self.powered = false;
        }
        if self.powered {
            Ok(())
        } else {
            Err(SimError::PoweredOff)
        }
    }

    fn bounds(&self, file: FileId, offset: u32, len: usize) -> Result<(FatEntry, usize), SimError> {
        if file == FileId::Fat {
            let end = (offset as usize)
                .checked_add(len)
                .filter(|&e| e <= self.eeprom.len());
            return end
                .map(|_| (FatEntry::allocated(0, FILES_START), offset as usize))
                .ok_or(SimError::OutOfBounds(file));
        }
        let e = self.entry(file).ok_or(SimError::NotAllocated(file))?;
        let end = (offset as usize)
            .checked_add(len)
            .ok_or(SimError::OutOfBounds(file))?;
        if end > usize::from(e.length) {
            return Err(SimError::OutOfBounds(file));
        }
        Ok((e, usize::from(e.address) + offset as usize))
    }

    fn free_gap(&self, len: u32) -> Option<u16> {
        let mut start = u32::from(FILES_START);
        loop {
            let end = start + len;
            if end > EEPROM_SIZE {
                return None;
            }
            let clash = FileId::ALL[..16]
                .iter()
                .filter_map(|&f| self.entry(f))
                .find(|e| u32::from(e.address) < end && start < e.end());
            match clash {
                Some(e) => start = e.end(),
                None => return u16::try_from(start).ok(),
            }
        }
    }
}

impl Nvmem for SimNvmem {
    type Error = SimError;

    fn read(&mut self, file: FileId, offset: u32, buf: &mut [u8]) -> Result<(), SimError> {
        self.begin(Op::Read {
            file,
            offset,
            len: buf.len(),
        })?;
        let index = self.reads;
        self.reads += 1;
        for f in &self.faults {
            if let Fault::ReadFails { read, times } = *f
                && read == index
            {
                self.pending_read_failures = times;
            }
        }
        if self.pending_read_failures > 0 {
            self.pending_read_failures -= 1;
            return Err(SimError::InjectedFailure);
        }
        let (entry, at) = self.bounds(file, offset, buf.len())?;
        if file != FileId::Fat && !entry.flags.valid() {
            return Err(SimError::Invalid(file));
        }
        buf.copy_from_slice(&self.eeprom[at..at + buf.len()]);
        Ok(())
    }

    fn write(&mut self, file: FileId, offset: u32, data: &[u8]) -> Result<(), SimError> {
        self.begin(Op::Write {
            file,
            offset,
            len: data.len(),
        })?;
        let index = self.writes;
        self.writes += 1;
        if data.len() > WRITE_PORTION {
            return Err(SimError::TooLong(data.len()));
        }
        let (_, at) = self.bounds(file, offset, data.len())?;
        if file != FileId::Fat {
            self.set_valid(file, false);
        }
        let mut keep = data.len();
        for f in &self.faults {
            if let Fault::PowerLossDuringWrite { write, keep: k } = *f
                && write == index
            {
                keep = keep.min(k);
                self.powered = false;
            }
        }
        self.eeprom[at..at + keep].copy_from_slice(&data[..keep]);
        for f in &self.faults {
            if let Fault::CorruptWrite {
                write,
                index: i,
                xor,
            } = *f
                && write == index
                && i < keep
            {
                self.eeprom[at + i] ^= xor;
            }
        }
        if !self.powered {
            return Err(SimError::PoweredOff);
        }
        if file != FileId::Fat {
            self.set_valid(file, true);
        }
        Ok(())
    }

    fn create_entry(&mut self, file: FileId, len: u32) -> Result<(), SimError> {
        self.begin(Op::CreateEntry { file, len })?;
        if !file.is_user_file() {
            return Err(SimError::NotUserFile(file));
        }
        if len == 0 {
            self.set_valid(file, false);
            return Ok(());
        }
        self.set_entry(file, FatEntry::default());
        let len = len.div_ceil(16) * 16;
        let address = self.free_gap(len).ok_or(SimError::NoSpace)?;
        let length = u16::try_from(len).map_err(|_| SimError::NoSpace)?;
        self.set_entry(file, FatEntry::allocated(address, length));
        Ok(())
    }

    fn read_sp_version(&mut self) -> Result<ServicePack, SimError> {
        self.begin(Op::ReadVersion)?;
        Ok(self.reported_version_cached())
    }
}

/// The simulator behind an SPI link: decodes host frames, runs them on a [`SimNvmem`], and queues the chip's answer
/// frames, so that [`HciNvmem`](crate::hci::HciNvmem) can be tested end to end.
#[derive(Debug, Clone)]
pub struct SimSpi {
    /// The simulated NVMEM.
    pub nvmem: SimNvmem,
    pending: alloc::collections::VecDeque<Vec<u8>>,
}

impl SimSpi {
    /// Wraps a simulator.
    pub fn new(nvmem: SimNvmem) -> Self {
        SimSpi {
            nvmem,
            pending: alloc::collections::VecDeque::new(),
        }
    }

    /// Queues a chip frame: SPI header, the packet, and the padding TI's host driver expects to clock in.
    fn queue(&mut self, hci_packet: &[u8]) {
        let mut frame = vec![hci::SPI_READ, 0, 0, 0, 0];
        frame.extend_from_slice(hci_packet);
        frame.resize(hci::READ_HEADER_LEN.max(frame.len()), 0);
        let total = match hci::remaining_read_len(&frame) {
            Ok(rest) => hci::READ_HEADER_LEN + rest,
            Err(_) => frame.len(),
        };
        frame.resize(total.max(frame.len()), 0);
        let len = (frame.len() - hci::SPI_HEADER_LEN) as u16;
        frame[3..5].copy_from_slice(&len.to_be_bytes());
        self.pending.push_back(frame);
    }

    fn queue_event(&mut self, opcode: u16, status: u8, params: &[u8]) {
        let mut buf = vec![0u8; hci::EVENT_HEADER_LEN + params.len()];
        let event = Event {
            opcode,
            status,
            params,
        };
        if event.emit(&mut buf).is_ok() {
            self.queue(&buf);
        }
    }
}

impl SpiTransport for SimSpi {
    type Error = SimError;

    fn write_frame(&mut self, frame: &[u8]) -> Result<(), SimError> {
        let header = hci::SpiHeader::parse_write(frame).map_err(|_| SimError::InjectedFailure)?;
        let end = hci::SPI_HEADER_LEN + usize::from(header.len);
        let hci_bytes = frame
            .get(hci::SPI_HEADER_LEN..end)
            .ok_or(SimError::InjectedFailure)?;
        if !frame.len().is_multiple_of(2) {
            return Err(SimError::InjectedFailure);
        }
        let command = Command::parse(hci_bytes).map_err(|_| SimError::InjectedFailure)?;
        // Unsolicited noise the host must skip.
        self.queue_event(0x8000 | 0x0010, 0, &[]);
        let status = |r: Result<(), SimError>| u8::from(r.is_err());
        match command {
            Command::NvmemRead { file, len, offset } => {
                let mut data = vec![0u8; len as usize];
                match self.nvmem.read(file, offset, &mut data) {
                    Ok(()) => {
                        self.queue_event(hci::opcode::NVMEM_READ, 0, &[]);
                        let args = [0u8; 12];
                        let packet = DataPacket {
                            opcode: hci::opcode::NVMEM_DATA,
                            args: &args,
                            data: &data,
                        };
                        let mut buf = vec![0u8; packet.buffer_len()];
                        if packet.emit(&mut buf).is_ok() {
                            self.queue(&buf);
                        }
                    }
                    Err(_) => self.queue_event(hci::opcode::NVMEM_READ, 1, &[]),
                }
            }
            Command::NvmemWrite { file, offset, data } => {
                let s = status(self.nvmem.write(file, offset, data));
                self.queue_event(hci::opcode::NVMEM_WRITE_EVENT, s, &[0; 4]);
            }
            Command::NvmemCreateEntry { file, len } => {
                let s = status(self.nvmem.create_entry(file, len));
                self.queue_event(hci::opcode::NVMEM_CREATE_ENTRY, s, &[]);
            }
            Command::ReadSpVersion => match self.nvmem.read_sp_version() {
                Ok(v) => self.queue_event(
                    hci::opcode::READ_SP_VERSION,
                    0,
                    &[0, 0, v.package_id, v.build],
                ),
                Err(_) => self.queue_event(hci::opcode::READ_SP_VERSION, 1, &[0; 4]),
            },
            Command::SimpleLinkStart(_) => self.queue_event(hci::opcode::SIMPLE_LINK_START, 0, &[]),
        }
        Ok(())
    }

    fn read_frame(&mut self, buf: &mut [u8]) -> Result<usize, SimError> {
        let frame = self.pending.pop_front().ok_or(SimError::InjectedFailure)?;
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hci::HciNvmem;

    fn chip() -> SimNvmem {
        SimNvmem::with_table(&FatTable::programmer_default(), ServicePack::new(1, 10))
    }

    #[test]
    fn files_are_valid_only_after_a_complete_write() {
        let mut sim = chip();
        let mut buf = [0u8; 6];
        assert_eq!(
            sim.read(FileId::Mac, 0, &mut buf),
            Err(SimError::Invalid(FileId::Mac))
        );
        sim.write(FileId::Mac, 0, &[8, 0, 0x28, 1, 2, 3]).unwrap();
        sim.read(FileId::Mac, 0, &mut buf).unwrap();
        assert_eq!(buf, [8, 0, 0x28, 1, 2, 3]);
        // limits: 32 bytes per write, file bounds, unallocated files
        assert_eq!(
            sim.write(FileId::Nvs, 0, &[0; 33]),
            Err(SimError::TooLong(33))
        );
        assert_eq!(
            sim.write(FileId::Mac, 10, &[0; 7]),
            Err(SimError::OutOfBounds(FileId::Mac))
        );
        assert_eq!(
            sim.read(FileId::User14, 0, &mut buf),
            Err(SimError::NotAllocated(FileId::User14))
        );
        // rewriting the table entry (allocated bit only) invalidates the file
        let entry = FatTable::programmer_default().entries()[6].emit();
        sim.write(FileId::Fat, 4 + 6 * 4, &entry).unwrap();
        assert_eq!(
            sim.read(FileId::Mac, 0, &mut buf),
            Err(SimError::Invalid(FileId::Mac))
        );
    }

    #[test]
    fn create_entry_allocates_user_files_in_free_space() {
        let mut sim = chip();
        assert_eq!(
            sim.create_entry(FileId::Rm, 16),
            Err(SimError::NotUserFile(FileId::Rm))
        );
        sim.create_entry(FileId::User14, 16).unwrap();
        let e = *sim.table().unwrap().entry(FileId::User14).unwrap();
        assert_eq!((e.address, e.length), (0x6A30, 16), "right after file 11");
        sim.create_entry(FileId::User15, 20).unwrap();
        let e = *sim.table().unwrap().entry(FileId::User15).unwrap();
        assert_eq!((e.address, e.length), (0x6A40, 32));
        assert_eq!(
            sim.create_entry(FileId::SharedMem, 0x4000),
            Err(SimError::NoSpace)
        );
        sim.write(FileId::User14, 0, &[7; 16]).unwrap();
        sim.create_entry(FileId::User14, 0).unwrap();
        assert_eq!(
            sim.file(FileId::User14, 16),
            None,
            "length 0 marks it invalid"
        );
    }

    #[test]
    fn faults_fire_as_scheduled() {
        let mut sim = chip();
        sim.inject(Fault::ReadFails { read: 0, times: 2 });
        sim.inject(Fault::CorruptWrite {
            write: 0,
            index: 1,
            xor: 0xFF,
        });
        sim.inject(Fault::PowerLossDuringWrite { write: 1, keep: 2 });
        let mut buf = [0u8; 2];
        assert_eq!(
            sim.read(FileId::Fat, 0, &mut buf),
            Err(SimError::InjectedFailure)
        );
        assert_eq!(
            sim.read(FileId::Fat, 0, &mut buf),
            Err(SimError::InjectedFailure)
        );
        sim.read(FileId::Fat, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"LS");
        sim.write(FileId::Mac, 0, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(sim.file(FileId::Mac, 6), Some(&[1, 0xFD, 3, 4, 5, 6][..]));
        assert_eq!(
            sim.write(FileId::Mac, 0, &[9; 6]),
            Err(SimError::PoweredOff)
        );
        assert!(!sim.is_powered());
        assert_eq!(sim.read_sp_version(), Err(SimError::PoweredOff));
        sim.power_cycle();
        assert_eq!(
            sim.file(FileId::Mac, 6),
            None,
            "torn write leaves the file invalid"
        );
        assert_eq!(&sim.eeprom()[0x6390..0x6396], &[9, 9, 3, 4, 5, 6]);
        sim.inject(Fault::PowerLossBeforeOp { op: sim.op_count() });
        assert_eq!(sim.read_sp_version(), Err(SimError::PoweredOff));
        assert_eq!(sim.log().last(), Some(&Op::ReadVersion));
    }

    #[test]
    fn hci_driver_over_the_simulated_link() {
        let mut hci = HciNvmem::<_, 192>::new(SimSpi::new(chip()));
        hci.write(FileId::Mac, 0, &[8, 0, 0x28, 1, 2, 3]).unwrap();
        let mut mac = [0u8; 6];
        hci.read(FileId::Mac, 0, &mut mac).unwrap();
        assert_eq!(mac, [8, 0, 0x28, 1, 2, 3]);
        assert_eq!(hci.read_sp_version().unwrap(), ServicePack::new(1, 10));
        hci.create_entry(FileId::User14, 16).unwrap();
        // failures come back as the chip's status
        let mut buf = [0u8; 4];
        assert!(matches!(
            hci.read(FileId::User15, 0, &mut buf),
            Err(crate::hci::HciNvmemError::Hci(
                crate::hci::HciError::Status(1)
            ))
        ));
        assert!(matches!(
            hci.create_entry(FileId::Rm, 1),
            Err(crate::hci::HciNvmemError::Hci(
                crate::hci::HciError::Status(1)
            ))
        ));
        // a frame buffer too small for a write is refused before anything is sent
        let mut small = HciNvmem::<_, 40>::new(SimSpi::new(chip()));
        assert!(matches!(
            small.write(FileId::Mac, 0, &[0; 16]),
            Err(crate::hci::HciNvmemError::Hci(
                crate::hci::HciError::InsufficientSize { required: 43 }
            ))
        ));
        assert_eq!(small.into_inner().nvmem.write_count(), 0);
    }
}
