//! [`HciNvmem`]: the [`Nvmem`] calls carried as HCI frames over a CC3000 SPI link.

use super::frame::{
    Command, DATA_HEADER_LEN, Event, HciError, NVMEM_WRITE_ARGS_LEN, Packet, ReadResponse,
    SPI_HEADER_LEN, decode_sp_version,
};
use super::opcode;
use crate::nvmem::FileId;
use crate::patch::ServicePack;
use crate::programmer::Nvmem;

/// The CC3000's SPI link: whole frames out, whole frames in.
///
/// The implementation handles chip select, the IRQ line and the first-write timing quirk; frames carry the 5-byte
/// SPI header in both directions. To read, it clocks in [`READ_HEADER_LEN`](super::READ_HEADER_LEN) bytes, then
/// [`remaining_read_len`](super::remaining_read_len) more.
pub trait SpiTransport {
    /// The transport's error.
    type Error;

    /// Sends one host frame (SPI header, HCI packet, padding).
    fn write_frame(&mut self, frame: &[u8]) -> Result<(), Self::Error>;

    /// Waits for the chip to signal a packet and reads its frame (SPI header first) into `buf`; returns its length.
    fn read_frame(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
}

/// Why an [`HciNvmem`] call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HciNvmemError<E> {
    /// The transport failed.
    #[error("SPI transport failed")]
    Transport(E),
    /// The chip's answer was malformed, unexpected or a failure status.
    #[error(transparent)]
    Hci(#[from] HciError),
    /// The chip sent fewer or more bytes than asked for.
    #[error("NVMEM read returned {got} bytes, {wanted} asked")]
    ShortRead {
        /// Bytes asked for.
        wanted: usize,
        /// Bytes received.
        got: usize,
    },
}

/// Unsolicited events (opcode bit 15 set) skipped while awaiting an answer, before giving up.
const MAX_SKIPPED: usize = 8;

/// An [`Nvmem`] over HCI, with an `N`-byte frame buffer (writes need `26 + chunk + 1`, reads `10 + args + chunk`).
#[derive(Debug)]
pub struct HciNvmem<T, const N: usize = 192> {
    transport: T,
    buf: [u8; N],
}

impl<T: SpiTransport, const N: usize> HciNvmem<T, N> {
    /// Wraps a transport.
    pub fn new(transport: T) -> Self {
        HciNvmem {
            transport,
            buf: [0; N],
        }
    }

    /// The transport back.
    pub fn into_inner(self) -> T {
        self.transport
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    fn send(&mut self, command: &Command<'_>) -> Result<(), HciNvmemError<T::Error>> {
        let n = command.emit(&mut self.buf)?;
        self.transport
            .write_frame(&self.buf[..n])
            .map_err(HciNvmemError::Transport)
    }

    /// Reads frames until one that is not an unsolicited event; returns the HCI bytes' range in the buffer.
    ///
    /// The packet's extent comes from its HCI header (the parsers ignore trailing padding), not from the SPI
    /// header's length bytes.
    fn receive(&mut self) -> Result<core::ops::Range<usize>, HciNvmemError<T::Error>> {
        for _ in 0..=MAX_SKIPPED {
            let n = self
                .transport
                .read_frame(&mut self.buf)
                .map_err(HciNvmemError::Transport)?;
            let range = SPI_HEADER_LEN..n.clamp(SPI_HEADER_LEN, N);
            if let Ok(Packet::Event(e)) = Packet::parse(&self.buf[range.clone()])
                && e.opcode & 0x8000 != 0
            {
                continue;
            }
            return Ok(range);
        }
        Err(HciError::UnexpectedOpcode {
            expected: 0,
            found: 0x8000,
        }
        .into())
    }

    fn await_status(&mut self, op: u16) -> Result<(), HciNvmemError<T::Error>> {
        let range = self.receive()?;
        Event::parse(&self.buf[range])?.check(op)?;
        Ok(())
    }
}

impl<T: SpiTransport, const N: usize> Nvmem for HciNvmem<T, N> {
    type Error = HciNvmemError<T::Error>;

    fn read(&mut self, file: FileId, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.send(&Command::NvmemRead {
            file,
            len: buf.len() as u32,
            offset,
        })?;
        let range = self.receive()?;
        if ReadResponse::parse(&self.buf[range])? != ReadResponse::Accepted {
            return Err(HciError::UnexpectedOpcode {
                expected: opcode::NVMEM_READ,
                found: opcode::NVMEM_DATA.into(),
            }
            .into());
        }
        let range = self.receive()?;
        match ReadResponse::parse(&self.buf[range])? {
            ReadResponse::Data(data) if data.len() == buf.len() => {
                buf.copy_from_slice(data);
                Ok(())
            }
            ReadResponse::Data(data) => Err(HciNvmemError::ShortRead {
                wanted: buf.len(),
                got: data.len(),
            }),
            ReadResponse::Accepted => Err(HciError::UnexpectedOpcode {
                expected: opcode::NVMEM_DATA.into(),
                found: opcode::NVMEM_READ,
            }
            .into()),
        }
    }

    fn write(&mut self, file: FileId, offset: u32, data: &[u8]) -> Result<(), Self::Error> {
        let needed = SPI_HEADER_LEN + DATA_HEADER_LEN + NVMEM_WRITE_ARGS_LEN + data.len() + 1;
        if needed > N {
            return Err(HciError::InsufficientSize { required: needed }.into());
        }
        self.send(&Command::NvmemWrite { file, offset, data })?;
        self.await_status(opcode::NVMEM_WRITE_EVENT)
    }

    fn create_entry(&mut self, file: FileId, len: u32) -> Result<(), Self::Error> {
        self.send(&Command::NvmemCreateEntry { file, len })?;
        self.await_status(opcode::NVMEM_CREATE_ENTRY)
    }

    fn read_sp_version(&mut self) -> Result<ServicePack, Self::Error> {
        self.send(&Command::ReadSpVersion)?;
        let range = self.receive()?;
        Ok(decode_sp_version(&Event::parse(&self.buf[range])?)?)
    }
}
