//! HCI and SPI framing of the NVMEM commands, and of the events that answer them.
//!
//! Everything is little-endian except the SPI header's length, which is big-endian. A host frame is
//!
//! ```text
//! SPI header  01 len_hi len_lo 00 00       len = HCI bytes + padding; the whole frame has an even length
//! command     01 opcode(u16) args_len args
//! data cmd    02 opcode(u8) args_len payload_len(u16) args data      payload_len = args_len + data length
//! ```
//!
//! and the chip answers, after its own 5-byte SPI header (length big-endian in bytes 3 and 4; a host reads 10 bytes,
//! then [`remaining_read_len`] more), with
//!
//! ```text
//! event       04 opcode(u16) len status params      len counts status + params
//! data        02 opcode(u8) args_len payload_len(u16) args data
//! ```
//!
//! [`HciNvmem`] drives a real chip through any [`SpiTransport`] and implements
//! [`Nvmem`](crate::programmer::Nvmem) on top of these frames.
//!
//! ```
//! use spark_cc3000::hci::{Command, SPI_HEADER_LEN};
//! use spark_cc3000::nvmem::FileId;
//!
//! // nvmem_write of 3 bytes at offset 16 of the driver-patch file, framed for SPI into a caller buffer.
//! let write = Command::NvmemWrite { file: FileId::WlanDriverSp, offset: 16, data: &[1, 2, 3] };
//! let mut frame = [0u8; 64];
//! let n = write.emit(&mut frame).unwrap();
//! assert_eq!(n, write.frame_len());
//! assert_eq!(n % 2, 0, "a frame always has an even length");
//! assert_eq!(frame[0], 0x01); // SPI write
//!
//! // The chip side reads the HCI packet back as the same command.
//! assert_eq!(Command::parse(&frame[SPI_HEADER_LEN..n]).unwrap(), write);
//! // Too small a buffer is an error, never a panic.
//! assert!(write.emit(&mut frame[..8]).is_err());
//! ```

mod driver;
mod frame;

pub use driver::{HciNvmem, HciNvmemError, SpiTransport};
pub use frame::{
    CREATE_ENTRY_ARGS_LEN, Command, DATA_HEADER_LEN, DataPacket, EVENT_HEADER_LEN, Event, HciError,
    NVMEM_READ_ARGS_LEN, NVMEM_WRITE_ARGS_LEN, Packet, PacketType, READ_HEADER_LEN, ReadResponse,
    SPI_HEADER_LEN, SPI_READ, SPI_WRITE, SpiHeader, decode_sp_version, remaining_read_len,
    spi_frame_len,
};

/// HCI opcodes of the NVMEM commands and their answers (TI's `hci.h`).
pub mod opcode {
    /// `HCI_CMND_NVMEM_READ`: read from a file (a command; answered by an event and a data packet).
    pub const NVMEM_READ: u16 = 0x0201;
    /// `HCI_EVNT_NVMEM_WRITE`: the event that answers an NVMEM write.
    pub const NVMEM_WRITE_EVENT: u16 = 0x0202;
    /// `HCI_CMND_NVMEM_CREATE_ENTRY`: (re)allocate a user file.
    pub const NVMEM_CREATE_ENTRY: u16 = 0x0203;
    /// `HCI_CMND_NVMEM_WRITE_PATCH` (defined, unused by the host library).
    pub const NVMEM_WRITE_PATCH: u16 = 0x0204;
    /// `HCI_CMND_NVMEM_SWAP_ENTRY` (defined, unused by the host library).
    pub const NVMEM_SWAP_ENTRY: u16 = 0x0205;
    /// `HCI_CMND_READ_SP_VERSION`: the service-pack version.
    pub const READ_SP_VERSION: u16 = 0x0207;
    /// `HCI_CMND_SIMPLE_LINK_START`: start the chip, choosing where patches come from.
    pub const SIMPLE_LINK_START: u16 = 0x4000;
    /// `HCI_CMND_NVMEM_WRITE`: the data command that writes to a file (an 8-bit data opcode).
    pub const NVMEM_WRITE: u8 = 0x90;
    /// `HCI_DATA_NVMEM`: the data packet carrying NVMEM read bytes.
    pub const NVMEM_DATA: u8 = 0x91;
}

/// Where the chip takes its patches from at `SIMPLE_LINK_START`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PatchSource {
    /// `SL_PATCHES_REQUEST_DEFAULT` (0): the patches burnt in NVMEM.
    Default = 0,
    /// `SL_PATCHES_REQUEST_FORCE_HOST` (1): the host supplies them over HCI.
    ForceHost = 1,
    /// `SL_PATCHES_REQUEST_FORCE_NONE` (2): run from ROM without patches; how programmers start the chip, so
    /// that every file may be rewritten.
    ForceNone = 2,
}
