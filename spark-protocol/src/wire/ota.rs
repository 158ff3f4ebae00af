//! The binary payloads of an over-the-air update: UpdateBegin's parameters, ChunkMissed's index list,
//! and the CRC-32 each chunk carries.

use core::fmt;

use super::Error;
use super::limits::UPDATE_BEGIN_PAYLOAD_LEN;

/// The 12-byte UpdateBegin payload (SP `Flasher.js` `begin_update`; DOS `chunked_transfer.cpp`).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | flags (bit 0: the server offers fast OTA) |
/// | 1 | 2 | chunk size |
/// | 3 | 4 | file size |
/// | 7 | 1 | destination |
/// | 8 | 4 | destination address |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpdateParams {
    /// Flags; see [`UpdateParams::FAST_OTA`].
    pub flags: u8,
    /// Bytes per chunk.
    pub chunk_size: u16,
    /// Size of the whole file.
    pub file_size: u32,
    /// Where the file goes; see the `DESTINATION_*` constants.
    pub destination: u8,
    /// Destination address (0 for firmware).
    pub address: u32,
}

impl UpdateParams {
    /// Flag bit 0: the server offers fast OTA (chunks back to back with an index, no per-chunk reply).
    pub const FAST_OTA: u8 = 0x01;
    /// Destination 0: the application firmware.
    pub const DESTINATION_FIRMWARE: u8 = 0;
    /// Destination 1: external flash ("SYSTEM" in Device OS).
    pub const DESTINATION_EXTERNAL_FLASH: u8 = 1;
    /// Destination 128: the application module (Device OS `APPLICATION`).
    pub const DESTINATION_APPLICATION: u8 = 128;

    /// Reads the 12-byte payload.
    pub fn parse(payload: &[u8]) -> Result<UpdateParams, Error> {
        let p: &[u8; UPDATE_BEGIN_PAYLOAD_LEN] = payload.try_into().map_err(|_| Error::Length {
            field: "UpdateBegin payload",
            found: payload.len(),
            expected: UPDATE_BEGIN_PAYLOAD_LEN,
        })?;
        Ok(UpdateParams {
            flags: p[0],
            chunk_size: u16::from_be_bytes([p[1], p[2]]),
            file_size: u32::from_be_bytes([p[3], p[4], p[5], p[6]]),
            destination: p[7],
            address: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        })
    }

    /// The 12-byte payload.
    pub fn to_bytes(&self) -> [u8; UPDATE_BEGIN_PAYLOAD_LEN] {
        let mut p = [0u8; UPDATE_BEGIN_PAYLOAD_LEN];
        p[0] = self.flags;
        p[1..3].copy_from_slice(&self.chunk_size.to_be_bytes());
        p[3..7].copy_from_slice(&self.file_size.to_be_bytes());
        p[7] = self.destination;
        p[8..12].copy_from_slice(&self.address.to_be_bytes());
        p
    }

    /// Whether the server offers fast OTA.
    pub fn fast_ota(&self) -> bool {
        self.flags & Self::FAST_OTA != 0
    }
}

/// The chunk indices of a ChunkMissed payload: big-endian u16s (the Core sends one, Device OS up to
/// 40). Either borrowed from a received payload or from the caller's list; both compare equal when
/// they hold the same indices.
#[derive(Clone, Copy)]
pub struct ChunkIndices<'a> {
    inner: IndicesInner<'a>,
}

#[derive(Clone, Copy)]
enum IndicesInner<'a> {
    Encoded(&'a [u8]),
    List(&'a [u16]),
}

impl<'a> ChunkIndices<'a> {
    /// Indices from the caller's list.
    pub const fn new(list: &'a [u16]) -> Self {
        ChunkIndices {
            inner: IndicesInner::List(list),
        }
    }

    /// Indices read from a payload, which must have an even length
    /// ([`Error::Invalid`] otherwise).
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error> {
        if !payload.len().is_multiple_of(2) {
            return Err(Error::Invalid("ChunkMissed payload of odd length"));
        }
        Ok(ChunkIndices {
            inner: IndicesInner::Encoded(payload),
        })
    }

    /// How many indices.
    pub fn len(&self) -> usize {
        match self.inner {
            IndicesInner::Encoded(b) => b.len() / 2,
            IndicesInner::List(l) => l.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The indices in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + use<'a> {
        let (encoded, list): (&'a [u8], &'a [u16]) = match self.inner {
            IndicesInner::Encoded(b) => (b, &[]),
            IndicesInner::List(l) => (&[], l),
        };
        encoded
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .chain(list.iter().copied())
    }

    /// Calls `f` with each index's two payload bytes.
    pub(crate) fn for_each_bytes(&self, mut f: impl FnMut(&[u8])) {
        match self.inner {
            IndicesInner::Encoded(b) => f(b),
            IndicesInner::List(l) => l.iter().for_each(|i| f(&i.to_be_bytes())),
        }
    }
}

impl PartialEq for ChunkIndices<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for ChunkIndices<'_> {}

impl fmt::Debug for ChunkIndices<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// CRC-32/ISO-HDLC (reflected polynomial `0xEDB88320`, initial value and final xor `0xFFFFFFFF`),
/// the checksum a Chunk carries over its data: zlib's and Node's `buffer-crc32`, and what the Core
/// computes with its STM32 CRC unit plus bit reversal.
///
/// Computed with the `crc` crate, as every CRC-32 in the workspace. Bare-metal targets
/// (`target_os = "none"`, the Core) take its table-free variant: no table in flash, and a chunk is
/// at most 594 bytes, so the bit loop does not show next to AES and the network. Hosts (the cloud,
/// the virtual Core checking whole images) take the slice-by-16 tables.
///
/// ```
/// use spark_protocol::wire::ota::{Crc32, crc32};
///
/// assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
/// let mut crc = Crc32::new();
/// crc.update(b"1234");
/// crc.update(b"56789");
/// assert_eq!(crc.finish(), 0xCBF4_3926);
/// ```
#[must_use]
pub fn crc32(data: &[u8]) -> u32 {
    ISO_HDLC.checksum(data)
}

#[cfg(target_os = "none")]
type CrcImpl = crc::NoTable;
#[cfg(not(target_os = "none"))]
type CrcImpl = crc::Table<16>;

static ISO_HDLC: crc::Crc<u32, CrcImpl> = crc::Crc::<u32, CrcImpl>::new(&crc::CRC_32_ISO_HDLC);

/// An incremental [`crc32`].
#[derive(Debug, Clone, Copy)]
pub struct Crc32 {
    /// The CRC register between updates (before the final xor).
    state: u32,
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub const fn new() -> Self {
        Crc32 { state: 0xFFFF_FFFF }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        // The algorithm reflects a custom initial value before use, so the register goes in
        // bit-reversed; `finalize` applies the final xor, which undoing gives the register back.
        let mut digest = ISO_HDLC.digest_with_initial(self.state.reverse_bits());
        digest.update(data);
        self.state = !digest.finalize();
    }

    /// The CRC of everything added.
    #[must_use]
    pub const fn finish(&self) -> u32 {
        !self.state
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_params_bytes() {
        let bytes = [
            1, 0x01, 0x00, 0x00, 0x01, 0x23, 0x45, 0, 0x08, 0x00, 0x50, 0x00,
        ];
        let p = UpdateParams::parse(&bytes).unwrap();
        assert!(p.fast_ota());
        assert_eq!(p.chunk_size, 256);
        assert_eq!(p.file_size, 0x12345);
        assert_eq!(p.destination, UpdateParams::DESTINATION_FIRMWARE);
        assert_eq!(p.address, 0x0800_5000);
        assert_eq!(p.to_bytes(), bytes);
        for n in [0, 11, 13] {
            assert!(UpdateParams::parse(&[0; 13][..n]).is_err());
        }
    }

    #[test]
    fn chunk_indices() {
        let i = ChunkIndices::parse(&[0, 0, 0x01, 0x02]).unwrap();
        assert_eq!(i.len(), 2);
        assert!(i.iter().eq([0, 0x102]));
        assert_eq!(i, ChunkIndices::new(&[0, 0x102]));
        assert!(ChunkIndices::parse(&[0, 0, 1]).is_err());
        assert!(ChunkIndices::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn crc32_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let mut c = Crc32::new();
        c.update(b"12345");
        c.update(b"6789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    /// The CRC gives the bit-by-bit definition's value on every byte value and on longer data,
    /// split at every point (on the host this runs the slice-by-16 variant; the no-table variant
    /// the Core links is checked against the same definition below).
    #[test]
    fn crc32_matches_the_bitwise_definition() {
        fn bitwise(data: &[u8]) -> u32 {
            let mut c = 0xFFFF_FFFFu32;
            for &b in data {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        }
        static NO_TABLE: crc::Crc<u32, crc::NoTable> =
            crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);
        for b in 0..=255u8 {
            assert_eq!(crc32(&[b]), bitwise(&[b]));
            assert_eq!(NO_TABLE.checksum(&[b]), bitwise(&[b]));
        }
        let data: [u8; 600] = core::array::from_fn(|i| (i * 151 + 7) as u8);
        assert_eq!(crc32(&data), bitwise(&data));
        assert_eq!(NO_TABLE.checksum(&data), bitwise(&data));
        for split in 0..data.len() {
            let mut c = Crc32::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.finish(), bitwise(&data), "split at {split}");
            assert_eq!(crc32(&data[..split]), bitwise(&data[..split]));
        }
    }
}
