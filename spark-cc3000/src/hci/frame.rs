//! Byte-level HCI packets and the SPI header.

use super::{PatchSource, opcode};
use crate::nvmem::FileId;
use crate::patch::ServicePack;

/// The SPI header that precedes every packet in both directions.
pub const SPI_HEADER_LEN: usize = 5;
/// The SPI header's first byte on a host write.
pub const SPI_WRITE: u8 = 0x01;
/// The SPI header's first byte on a host read.
pub const SPI_READ: u8 = 0x03;
/// An event header: type, opcode, length, status.
pub const EVENT_HEADER_LEN: usize = 5;
/// A data packet header: type, opcode, args length, payload length.
pub const DATA_HEADER_LEN: usize = 5;
/// Command header: type, opcode, args length.
const COMMAND_HEADER_LEN: usize = 4;
/// `nvmem_read` arguments: file, length, offset.
pub const NVMEM_READ_ARGS_LEN: usize = 12;
/// `nvmem_write` arguments: file, the constant 12, length, offset.
pub const NVMEM_WRITE_ARGS_LEN: usize = 16;
/// `nvmem_create_entry` arguments: file, new length.
pub const CREATE_ENTRY_ARGS_LEN: usize = 8;

/// Why bytes are not the expected HCI packet, or a packet does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HciError {
    /// Fewer bytes than the header or the declared lengths need.
    #[error("HCI packet truncated: {len} bytes, {required} needed")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        required: usize,
    },
    /// A packet type byte other than command, data, patch or event.
    #[error("unknown HCI packet type {0:#04x}")]
    UnknownType(u8),
    /// The SPI header does not start with the expected direction byte.
    #[error("SPI header starts with {0:#04x}")]
    BadSpiHeader(u8),
    /// An event or data packet with another opcode than the one awaited.
    #[error("unexpected HCI opcode {found:#06x}, expected {expected:#06x}")]
    UnexpectedOpcode {
        /// The opcode awaited.
        expected: u16,
        /// The opcode found.
        found: u16,
    },
    /// A data packet whose argument length exceeds its payload length.
    #[error("HCI data packet arguments ({args}) exceed its payload ({payload})")]
    BadDataLengths {
        /// Argument bytes declared.
        args: usize,
        /// Payload bytes declared.
        payload: usize,
    },
    /// The chip answered with a non-zero status.
    #[error("CC3000 returned status {0:#04x}")]
    Status(u8),
    /// A command naming a file id above 16.
    #[error("no NVMEM file {0}")]
    UnknownFile(u32),
    /// A command whose data does not fit the 16-bit length fields.
    #[error("HCI command data too long ({0} bytes)")]
    TooLong(usize),
    /// The output buffer is too small.
    #[error("buffer too small: {required} bytes needed")]
    InsufficientSize {
        /// Bytes needed.
        required: usize,
    },
}

/// HCI packet types (the first byte after the SPI header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// `HCI_TYPE_CMND` (1).
    Command = 0x01,
    /// `HCI_TYPE_DATA` (2).
    Data = 0x02,
    /// `HCI_TYPE_PATCH` (3).
    Patch = 0x03,
    /// `HCI_TYPE_EVNT` (4).
    Event = 0x04,
}

impl PacketType {
    /// The type of a packet's first byte.
    pub fn from_byte(b: u8) -> Result<Self, HciError> {
        Ok(match b {
            0x01 => PacketType::Command,
            0x02 => PacketType::Data,
            0x03 => PacketType::Patch,
            0x04 => PacketType::Event,
            other => return Err(HciError::UnknownType(other)),
        })
    }
}

/// Bytes a host clocks in first when the chip signals a packet: the SPI header and five HCI header bytes.
pub const READ_HEADER_LEN: usize = SPI_HEADER_LEN + 5;

/// Given the first [`READ_HEADER_LEN`] bytes of a chip frame, how many more bytes to clock in (padding included).
///
/// The lengths come from the HCI header, as in TI's host driver, which does not rely on the SPI header's length:
/// an event carries `len - 1` more bytes (its length byte counts the status already read), padded so the frame is
/// even; a data packet carries its payload length, plus one byte when that total would be even (TI's rule, kept as
/// is).
pub fn remaining_read_len(first: &[u8]) -> Result<usize, HciError> {
    let b = first.get(..READ_HEADER_LEN).ok_or(HciError::Truncated {
        len: first.len(),
        required: READ_HEADER_LEN,
    })?;
    let hci = &b[SPI_HEADER_LEN..];
    match PacketType::from_byte(hci[0])? {
        PacketType::Event => {
            let rest = usize::from(hci[3]).saturating_sub(1);
            Ok(rest + (READ_HEADER_LEN + rest) % 2)
        }
        PacketType::Data => {
            let rest = usize::from(u16::from_le_bytes([hci[3], hci[4]]));
            Ok(rest + usize::from((READ_HEADER_LEN + rest).is_multiple_of(2)))
        }
        other => Err(HciError::UnknownType(other as u8)),
    }
}

/// The length of the SPI frame (header, HCI bytes, padding) that carries `hci_len` bytes: always even.
pub const fn spi_frame_len(hci_len: usize) -> usize {
    SPI_HEADER_LEN + hci_len + (hci_len + 1) % 2
}

/// The 5-byte SPI header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiHeader {
    /// [`SPI_WRITE`] (host to chip) or [`SPI_READ`] (chip to host).
    pub direction: u8,
    /// The bytes after the header (HCI packet plus padding).
    pub len: u16,
}

impl SpiHeader {
    /// The header of a host write carrying `hci_len` HCI bytes (padding included in the length).
    pub fn write(hci_len: usize) -> Result<Self, HciError> {
        let len = spi_frame_len(hci_len) - SPI_HEADER_LEN;
        let len = u16::try_from(len).map_err(|_| HciError::TooLong(hci_len))?;
        Ok(SpiHeader {
            direction: SPI_WRITE,
            len,
        })
    }

    /// Encodes the header: a write puts the length in bytes 1 and 2, the chip's read answer in bytes 3 and 4
    /// (both big-endian).
    pub fn to_bytes(&self) -> [u8; SPI_HEADER_LEN] {
        let [hi, lo] = self.len.to_be_bytes();
        if self.direction == SPI_WRITE {
            [SPI_WRITE, hi, lo, 0, 0]
        } else {
            [self.direction, 0, 0, hi, lo]
        }
    }

    /// Decodes a header the chip sent on a read: the length is in bytes 3 and 4; the first three bytes are not
    /// checked (TI's driver ignores them too).
    pub fn parse_read(bytes: &[u8]) -> Result<Self, HciError> {
        let b = bytes.get(..SPI_HEADER_LEN).ok_or(HciError::Truncated {
            len: bytes.len(),
            required: SPI_HEADER_LEN,
        })?;
        Ok(SpiHeader {
            direction: SPI_READ,
            len: u16::from_be_bytes([b[3], b[4]]),
        })
    }

    /// Decodes a host write header (length in bytes 1 and 2).
    pub fn parse_write(bytes: &[u8]) -> Result<Self, HciError> {
        let b = bytes.get(..SPI_HEADER_LEN).ok_or(HciError::Truncated {
            len: bytes.len(),
            required: SPI_HEADER_LEN,
        })?;
        if b[0] != SPI_WRITE {
            return Err(HciError::BadSpiHeader(b[0]));
        }
        Ok(SpiHeader {
            direction: SPI_WRITE,
            len: u16::from_be_bytes([b[1], b[2]]),
        })
    }
}

/// An NVMEM-related host command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `nvmem_read(file, len, offset)`.
    NvmemRead {
        /// The file.
        file: FileId,
        /// Bytes to read.
        len: u32,
        /// Offset in the file.
        offset: u32,
    },
    /// `nvmem_write(file, len, offset, data)` (a data command).
    NvmemWrite {
        /// The file.
        file: FileId,
        /// Offset in the file.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// `nvmem_create_entry(file, len)`.
    NvmemCreateEntry {
        /// The user file.
        file: FileId,
        /// New length (0 marks it invalid without resizing).
        len: u32,
    },
    /// `nvmem_read_sp_version()`.
    ReadSpVersion,
    /// `wlan_start`'s `SIMPLE_LINK_START` with the patch source.
    SimpleLinkStart(PatchSource),
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

impl Command<'_> {
    /// The HCI packet's length (without SPI header and padding).
    pub fn hci_len(&self) -> usize {
        match self {
            Command::NvmemRead { .. } => COMMAND_HEADER_LEN + NVMEM_READ_ARGS_LEN,
            Command::NvmemWrite { data, .. } => DATA_HEADER_LEN + NVMEM_WRITE_ARGS_LEN + data.len(),
            Command::NvmemCreateEntry { .. } => COMMAND_HEADER_LEN + CREATE_ENTRY_ARGS_LEN,
            Command::ReadSpVersion => COMMAND_HEADER_LEN,
            Command::SimpleLinkStart(_) => COMMAND_HEADER_LEN + 1,
        }
    }

    /// The full SPI frame's length.
    pub fn frame_len(&self) -> usize {
        spi_frame_len(self.hci_len())
    }

    /// Writes the SPI frame (header, HCI packet, a zero padding byte where needed) into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, HciError> {
        let hci_len = self.hci_len();
        let frame_len = spi_frame_len(hci_len);
        if buf.len() < frame_len {
            return Err(HciError::InsufficientSize {
                required: frame_len,
            });
        }
        let header = SpiHeader::write(hci_len)?;
        buf[..SPI_HEADER_LEN].copy_from_slice(&header.to_bytes());
        self.emit_hci(&mut buf[SPI_HEADER_LEN..])?;
        buf[SPI_HEADER_LEN + hci_len..frame_len].fill(0);
        Ok(frame_len)
    }

    /// Writes the HCI packet alone into `buf`; returns its length.
    pub fn emit_hci(&self, buf: &mut [u8]) -> Result<usize, HciError> {
        let len = self.hci_len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(HciError::InsufficientSize { required: len });
        };
        let command = |out: &mut [u8], op: u16, args: usize| {
            out[0] = PacketType::Command as u8;
            out[1..3].copy_from_slice(&op.to_le_bytes());
            out[3] = args as u8;
        };
        match *self {
            Command::NvmemRead { file, len, offset } => {
                command(out, opcode::NVMEM_READ, NVMEM_READ_ARGS_LEN);
                put32(out, 4, file.into());
                put32(out, 8, len);
                put32(out, 12, offset);
            }
            Command::NvmemWrite { file, offset, data } => {
                let payload = u16::try_from(NVMEM_WRITE_ARGS_LEN + data.len())
                    .map_err(|_| HciError::TooLong(data.len()))?;
                out[0] = PacketType::Data as u8;
                out[1] = opcode::NVMEM_WRITE;
                out[2] = NVMEM_WRITE_ARGS_LEN as u8;
                out[3..5].copy_from_slice(&payload.to_le_bytes());
                put32(out, 5, file.into());
                // The host driver writes the argument block's own length here, literally.
                put32(out, 9, NVMEM_WRITE_ARGS_LEN as u32 - 4);
                put32(out, 13, data.len() as u32);
                put32(out, 17, offset);
                out[21..].copy_from_slice(data);
            }
            Command::NvmemCreateEntry { file, len } => {
                command(out, opcode::NVMEM_CREATE_ENTRY, CREATE_ENTRY_ARGS_LEN);
                put32(out, 4, file.into());
                put32(out, 8, len);
            }
            Command::ReadSpVersion => command(out, opcode::READ_SP_VERSION, 0),
            Command::SimpleLinkStart(source) => {
                command(out, opcode::SIMPLE_LINK_START, 1);
                out[4] = source as u8;
            }
        }
        Ok(len)
    }

    /// Decodes a host HCI packet (without SPI header) into a command, for simulators and analysers.
    pub fn parse(hci: &[u8]) -> Result<Command<'_>, HciError> {
        let need = |required: usize| {
            if hci.len() < required {
                Err(HciError::Truncated {
                    len: hci.len(),
                    required,
                })
            } else {
                Ok(())
            }
        };
        need(1)?;
        let file = |v: u32| FileId::from_id(v).ok_or(HciError::UnknownFile(v));
        match PacketType::from_byte(hci[0])? {
            PacketType::Command => {
                need(COMMAND_HEADER_LEN)?;
                let op = u16::from_le_bytes([hci[1], hci[2]]);
                let args = usize::from(hci[3]);
                need(COMMAND_HEADER_LEN + args)?;
                let a = &hci[COMMAND_HEADER_LEN..COMMAND_HEADER_LEN + args];
                let want = |n: usize| {
                    if a.len() < n {
                        Err(HciError::Truncated {
                            len: hci.len(),
                            required: COMMAND_HEADER_LEN + n,
                        })
                    } else {
                        Ok(())
                    }
                };
                match op {
                    opcode::NVMEM_READ => {
                        want(NVMEM_READ_ARGS_LEN)?;
                        Ok(Command::NvmemRead {
                            file: file(get32(a, 0))?,
                            len: get32(a, 4),
                            offset: get32(a, 8),
                        })
                    }
                    opcode::NVMEM_CREATE_ENTRY => {
                        want(CREATE_ENTRY_ARGS_LEN)?;
                        Ok(Command::NvmemCreateEntry {
                            file: file(get32(a, 0))?,
                            len: get32(a, 4),
                        })
                    }
                    opcode::READ_SP_VERSION => Ok(Command::ReadSpVersion),
                    opcode::SIMPLE_LINK_START => {
                        want(1)?;
                        Ok(Command::SimpleLinkStart(match a[0] {
                            0 => PatchSource::Default,
                            1 => PatchSource::ForceHost,
                            _ => PatchSource::ForceNone,
                        }))
                    }
                    other => Err(HciError::UnexpectedOpcode {
                        expected: opcode::NVMEM_READ,
                        found: other,
                    }),
                }
            }
            PacketType::Data => {
                let d = DataPacket::parse(hci)?;
                if d.opcode != opcode::NVMEM_WRITE {
                    return Err(HciError::UnexpectedOpcode {
                        expected: opcode::NVMEM_WRITE.into(),
                        found: d.opcode.into(),
                    });
                }
                if d.args.len() < NVMEM_WRITE_ARGS_LEN {
                    return Err(HciError::Truncated {
                        len: hci.len(),
                        required: DATA_HEADER_LEN + NVMEM_WRITE_ARGS_LEN,
                    });
                }
                let len = get32(d.args, 8) as usize;
                let data = d.data.get(..len).ok_or(HciError::Truncated {
                    len: hci.len(),
                    required: DATA_HEADER_LEN + d.args.len() + len,
                })?;
                Ok(Command::NvmemWrite {
                    file: file(get32(d.args, 0))?,
                    offset: get32(d.args, 12),
                    data,
                })
            }
            other => Err(HciError::UnknownType(other as u8)),
        }
    }
}

/// An HCI event from the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The opcode of the command answered.
    pub opcode: u16,
    /// The status byte (0 = success).
    pub status: u8,
    /// Parameters after the status.
    pub params: &'a [u8],
}

impl<'a> Event<'a> {
    /// Decodes an event packet (without SPI header).
    pub fn parse(hci: &'a [u8]) -> Result<Self, HciError> {
        if hci.len() < EVENT_HEADER_LEN {
            return Err(HciError::Truncated {
                len: hci.len(),
                required: EVENT_HEADER_LEN,
            });
        }
        if hci[0] != PacketType::Event as u8 {
            return Err(HciError::UnknownType(hci[0]));
        }
        let len = usize::from(hci[3]).max(1);
        let required = 4 + len;
        let params = hci
            .get(EVENT_HEADER_LEN..required)
            .ok_or(HciError::Truncated {
                len: hci.len(),
                required,
            })?;
        Ok(Event {
            opcode: u16::from_le_bytes([hci[1], hci[2]]),
            status: hci[4],
            params,
        })
    }

    /// The packet's length.
    pub fn buffer_len(&self) -> usize {
        EVENT_HEADER_LEN + self.params.len()
    }

    /// Encodes the event into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, HciError> {
        let len = self.buffer_len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(HciError::InsufficientSize { required: len });
        };
        out[0] = PacketType::Event as u8;
        out[1..3].copy_from_slice(&self.opcode.to_le_bytes());
        out[3] = u8::try_from(1 + self.params.len())
            .map_err(|_| HciError::TooLong(self.params.len()))?;
        out[4] = self.status;
        out[5..].copy_from_slice(self.params);
        Ok(len)
    }

    /// This event's status as a result, after checking it answers `expected`.
    pub fn check(&self, expected: u16) -> Result<(), HciError> {
        if self.opcode != expected {
            return Err(HciError::UnexpectedOpcode {
                expected,
                found: self.opcode,
            });
        }
        if self.status != 0 {
            return Err(HciError::Status(self.status));
        }
        Ok(())
    }
}

/// Decodes the answer to `READ_SP_VERSION`: the version is in the third and fourth parameter bytes.
pub fn decode_sp_version(event: &Event<'_>) -> Result<ServicePack, HciError> {
    event.check(opcode::READ_SP_VERSION)?;
    match event.params {
        [_, _, package_id, build, ..] => Ok(ServicePack::new(*package_id, *build)),
        _ => Err(HciError::Truncated {
            len: EVENT_HEADER_LEN + event.params.len(),
            required: EVENT_HEADER_LEN + 4,
        }),
    }
}

/// An HCI data packet (either direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPacket<'a> {
    /// The 8-bit data opcode.
    pub opcode: u8,
    /// The argument block.
    pub args: &'a [u8],
    /// The data after the arguments.
    pub data: &'a [u8],
}

impl<'a> DataPacket<'a> {
    /// Decodes a data packet (without SPI header).
    pub fn parse(hci: &'a [u8]) -> Result<Self, HciError> {
        if hci.len() < DATA_HEADER_LEN {
            return Err(HciError::Truncated {
                len: hci.len(),
                required: DATA_HEADER_LEN,
            });
        }
        if hci[0] != PacketType::Data as u8 {
            return Err(HciError::UnknownType(hci[0]));
        }
        let args = usize::from(hci[2]);
        let payload = usize::from(u16::from_le_bytes([hci[3], hci[4]]));
        if args > payload {
            return Err(HciError::BadDataLengths { args, payload });
        }
        let required = DATA_HEADER_LEN + payload;
        let body = hci
            .get(DATA_HEADER_LEN..required)
            .ok_or(HciError::Truncated {
                len: hci.len(),
                required,
            })?;
        Ok(DataPacket {
            opcode: hci[1],
            args: &body[..args],
            data: &body[args..],
        })
    }

    /// The packet's length.
    pub fn buffer_len(&self) -> usize {
        DATA_HEADER_LEN + self.args.len() + self.data.len()
    }

    /// Encodes the packet into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, HciError> {
        let len = self.buffer_len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(HciError::InsufficientSize { required: len });
        };
        let args = u8::try_from(self.args.len()).map_err(|_| HciError::TooLong(self.args.len()))?;
        let payload = u16::try_from(self.args.len() + self.data.len())
            .map_err(|_| HciError::TooLong(self.data.len()))?;
        out[0] = PacketType::Data as u8;
        out[1] = self.opcode;
        out[2] = args;
        out[3..5].copy_from_slice(&payload.to_le_bytes());
        out[5..5 + self.args.len()].copy_from_slice(self.args);
        out[5 + self.args.len()..].copy_from_slice(self.data);
        Ok(len)
    }
}

/// A packet from the chip: an event or a data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// An event.
    Event(Event<'a>),
    /// A data packet.
    Data(DataPacket<'a>),
}

impl<'a> Packet<'a> {
    /// Decodes the HCI bytes of a chip-to-host frame (after the SPI header).
    pub fn parse(hci: &'a [u8]) -> Result<Self, HciError> {
        match PacketType::from_byte(*hci.first().ok_or(HciError::Truncated {
            len: 0,
            required: 1,
        })?)? {
            PacketType::Event => Event::parse(hci).map(Packet::Event),
            PacketType::Data => DataPacket::parse(hci).map(Packet::Data),
            other => Err(HciError::UnknownType(other as u8)),
        }
    }
}

/// What an `nvmem_read` produced, in the order the chip sends it: a status event, then (on success) the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadResponse<'a> {
    /// The status event arrived; a data packet follows.
    Accepted,
    /// The data.
    Data(&'a [u8]),
}

impl<'a> ReadResponse<'a> {
    /// Decodes one chip packet of an `nvmem_read` exchange.
    pub fn parse(hci: &'a [u8]) -> Result<Self, HciError> {
        match Packet::parse(hci)? {
            Packet::Event(e) => e.check(opcode::NVMEM_READ).map(|()| ReadResponse::Accepted),
            Packet::Data(d) if d.opcode == opcode::NVMEM_DATA => Ok(ReadResponse::Data(d.data)),
            Packet::Data(d) => Err(HciError::UnexpectedOpcode {
                expected: opcode::NVMEM_DATA.into(),
                found: d.opcode.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvmem_write_frame_layout() {
        let data = [0xAA; 32];
        let cmd = Command::NvmemWrite {
            file: FileId::WlanDriverSp,
            offset: 0x40,
            data: &data,
        };
        let mut buf = [0u8; 80];
        let n = cmd.emit(&mut buf).unwrap();
        // 5 SPI + 5 data header + 16 args + 32 data = 58, HCI 53 is odd: no padding
        assert_eq!(n, 58);
        assert_eq!(&buf[..5], &[0x01, 0x00, 53, 0x00, 0x00]);
        assert_eq!(&buf[5..10], &[0x02, 0x90, 16, 48, 0]);
        assert_eq!(
            &buf[10..26],
            &[4, 0, 0, 0, 12, 0, 0, 0, 32, 0, 0, 0, 0x40, 0, 0, 0]
        );
        assert_eq!(Command::parse(&buf[5..n]).unwrap(), cmd);
    }

    #[test]
    fn commands_pad_to_even_frames() {
        let mut buf = [0u8; 32];
        let n = Command::ReadSpVersion.emit(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &[0x01, 0x00, 0x05, 0, 0, 0x01, 0x07, 0x02, 0x00, 0x00]
        );
        let read = Command::NvmemRead {
            file: FileId::Rm,
            len: 128,
            offset: 0,
        };
        let n = read.emit(&mut buf).unwrap();
        assert_eq!(n, 22);
        assert_eq!(&buf[..9], &[0x01, 0x00, 17, 0, 0, 0x01, 0x01, 0x02, 12]);
        assert_eq!(buf[21], 0);
        assert_eq!(Command::parse(&buf[5..21]).unwrap(), read);
        let ce = Command::NvmemCreateEntry {
            file: FileId::User14,
            len: 16,
        };
        let n = ce.emit(&mut buf).unwrap();
        assert_eq!(n % 2, 0);
        assert_eq!(Command::parse(&buf[5..5 + ce.hci_len()]).unwrap(), ce);
        let start = Command::SimpleLinkStart(PatchSource::ForceNone);
        let n = start.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x01, 0, 5, 0, 0, 0x01, 0x00, 0x40, 1, 2]);
        assert_eq!(
            read.emit(&mut [0u8; 21]),
            Err(HciError::InsufficientSize { required: 22 })
        );
    }

    #[test]
    fn events_and_data() {
        let ev = Event {
            opcode: opcode::READ_SP_VERSION,
            status: 0,
            params: &[0, 0, 1, 28],
        };
        let mut buf = [0u8; 16];
        let n = ev.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x04, 0x07, 0x02, 5, 0, 0, 0, 1, 28]);
        let parsed = Event::parse(&buf[..n]).unwrap();
        assert_eq!(decode_sp_version(&parsed), Ok(ServicePack::SP_1_28));
        let failed = Event {
            opcode: opcode::READ_SP_VERSION,
            status: 3,
            params: &[0; 4],
        };
        assert_eq!(decode_sp_version(&failed), Err(HciError::Status(3)));
        assert!(matches!(
            Event::parse(&buf[..n - 1]),
            Err(HciError::Truncated { .. })
        ));

        let d = DataPacket {
            opcode: opcode::NVMEM_DATA,
            args: &[0; 4],
            data: &[9, 8, 7],
        };
        let n = d.emit(&mut buf).unwrap();
        assert_eq!(
            ReadResponse::parse(&buf[..n]),
            Ok(ReadResponse::Data(&[9, 8, 7]))
        );
        let mut bad = buf;
        bad[2] = 9; // args longer than payload
        assert_eq!(
            DataPacket::parse(&bad[..n]),
            Err(HciError::BadDataLengths {
                args: 9,
                payload: 7
            })
        );
        assert_eq!(Packet::parse(&[0x07]), Err(HciError::UnknownType(7)));
        assert_eq!(
            Packet::parse(&[]),
            Err(HciError::Truncated {
                len: 0,
                required: 1
            })
        );
    }

    #[test]
    fn chip_frame_lengths_follow_the_hci_header() {
        // event with status + 4 params: len byte 5, 4 more bytes, 14 in all: even, no padding
        assert_eq!(
            remaining_read_len(&[3, 0, 0, 0, 0, 0x04, 0x07, 0x02, 5, 0]),
            Ok(4)
        );
        // event with status only: nothing more
        assert_eq!(
            remaining_read_len(&[3, 0, 0, 0, 0, 0x04, 0x02, 0x02, 1, 0]),
            Ok(0)
        );
        // event with 2 params: 2 more, 12: even
        assert_eq!(
            remaining_read_len(&[3, 0, 0, 0, 0, 0x04, 0x01, 0x02, 3, 0]),
            Ok(2)
        );
        assert_eq!(
            remaining_read_len(&[3, 0, 0, 0, 0, 0x04, 0x01, 0x02, 2, 0]),
            Ok(2)
        );
        // data with 12 + 32 payload bytes: 10 + 44 is even, so one more (TI's rule)
        assert_eq!(
            remaining_read_len(&[3, 0, 0, 0, 0, 0x02, 0x91, 12, 44, 0]),
            Ok(45)
        );
        assert_eq!(
            remaining_read_len(&[3, 0, 0, 0, 0, 0x07, 0, 0, 0, 0]),
            Err(HciError::UnknownType(7))
        );
        assert!(matches!(
            remaining_read_len(&[3, 0, 0]),
            Err(HciError::Truncated { .. })
        ));
    }

    #[test]
    fn spi_read_header() {
        let h = SpiHeader::parse_read(&[0x03, 0, 0, 0x01, 0x02]).unwrap();
        assert_eq!(h.len, 0x0102);
        assert_eq!(h.to_bytes(), [0x03, 0, 0, 0x01, 0x02]);
        assert!(matches!(
            SpiHeader::parse_read(&[0x03, 0, 0, 0]),
            Err(HciError::Truncated { .. })
        ));
        assert_eq!(
            SpiHeader::parse_write(&[0x03, 0, 9, 0, 0]),
            Err(HciError::BadSpiHeader(3))
        );
        assert_eq!(SpiHeader::parse_write(&[0x01, 0, 9, 0, 0]).unwrap().len, 9);
    }
}
