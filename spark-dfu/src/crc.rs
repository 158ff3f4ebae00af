//! The CRC-32 flavours of DFU files and Particle modules.
//!
//! Both use the reflected polynomial 0xEDB88320 with initial value 0xFFFFFFFF; they differ only in the final XOR:
//!
//! - [`jamcrc`] (CRC-32/JAMCRC, no final XOR) is the DFU suffix's `dwCRC`, as dfu-util and dfuse-pack compute it;
//! - [`crc32`] (CRC-32/ISO-HDLC, zlib's `crc32`) is the big-endian trailer of Particle firmware modules.
//!
//! So `jamcrc(x) == !crc32(x)`. The workspace computes every CRC-32 with the `crc` crate; this crate is the host
//! side (whole firmware images, megabytes per file), so it takes the slice-by-16 variant: 16 KiB of tables, built
//! at compile time, for the fastest portable loop. The device side (spark-protocol's OTA chunks, the CC3000
//! backup) takes the table-free variant instead, where flash counts and the data is a few hundred bytes.
//!
//! ```
//! use spark_dfu::crc::{Crc32, crc32, jamcrc};
//!
//! assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
//! assert_eq!(jamcrc(b"123456789"), 0x340B_C6D9);
//!
//! // Fed in pieces, the same answer.
//! let mut crc = Crc32::new();
//! crc.update(b"12345");
//! crc.update(b"6789");
//! assert_eq!(crc.crc32(), 0xCBF4_3926);
//! assert_eq!(crc.jamcrc(), !0xCBF4_3926);
//! ```

use core::fmt;
use crc::{CRC_32_ISO_HDLC, Crc, Digest, Table};

/// Slice-by-16: the tables cost 16 KiB of read-only data, paid once, on a host.
type Lanes = Table<16>;

/// CRC-32/ISO-HDLC; JAMCRC is its complement.
static ISO_HDLC: Crc<u32, Lanes> = Crc::<u32, Lanes>::new(&CRC_32_ISO_HDLC);

/// CRC-32/JAMCRC of `data` (check value for `"123456789"`: `0x340BC6D9`).
#[must_use]
pub fn jamcrc(data: &[u8]) -> u32 {
    !ISO_HDLC.checksum(data)
}

/// CRC-32/ISO-HDLC of `data`, as zlib computes it (check value for `"123456789"`: `0xCBF43926`).
#[must_use]
pub fn crc32(data: &[u8]) -> u32 {
    ISO_HDLC.checksum(data)
}

/// An incremental CRC-32 for data that arrives in pieces (for instance a file written part by part).
#[derive(Clone)]
pub struct Crc32 {
    inner: Digest<'static, u32, Lanes>,
}

impl fmt::Debug for Crc32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crc32")
            .field("crc32", &self.crc32())
            .finish()
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self {
            inner: ISO_HDLC.digest(),
        }
    }
}

impl Crc32 {
    /// A fresh CRC state.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The CRC-32/ISO-HDLC of everything fed so far.
    #[must_use]
    pub fn crc32(&self) -> u32 {
        self.inner.clone().finalize()
    }

    /// The CRC-32/JAMCRC of everything fed so far (the DFU suffix's `dwCRC`).
    #[must_use]
    pub fn jamcrc(&self) -> u32 {
        !self.crc32()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        assert_eq!(jamcrc(b"123456789"), 0x340B_C6D9);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(jamcrc(b""), 0xFFFF_FFFF);
        assert_eq!(crc32(b""), 0);
    }

    /// The slice-by-16 loop against the bit-by-bit definition, on lengths around its 16-byte stride.
    #[test]
    fn matches_the_bitwise_definition() {
        fn bitwise(data: &[u8]) -> u32 {
            let mut c = !0u32;
            for &b in data {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        (c >> 1) ^ 0xEDB8_8320
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        }
        let data: [u8; 300] = core::array::from_fn(|i| (i * 151 + 7) as u8);
        for n in 0..data.len() {
            assert_eq!(crc32(&data[..n]), bitwise(&data[..n]), "length {n}");
        }
    }

    #[test]
    fn incremental_matches_one_shot() {
        let data: [u8; 100] = core::array::from_fn(|i| (i * 7) as u8);
        for split in 0..data.len() {
            let mut crc = Crc32::new();
            crc.update(&data[..split]);
            crc.update(&data[split..]);
            assert_eq!(crc.jamcrc(), jamcrc(&data));
            assert_eq!(crc.crc32(), crc32(&data));
        }
    }

    #[test]
    fn reference_numeric_example() {
        // The 32-byte file 00..1f with dfu-suffix's default suffix: dwCRC 0x31722A7F.
        let mut file = [0u8; 44];
        for (i, b) in file.iter_mut().take(32).enumerate() {
            *b = i as u8;
        }
        file[32..44].copy_from_slice(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, b'U', b'F', b'D', 16,
        ]);
        assert_eq!(jamcrc(&file), 0x3172_2A7F);
        assert_eq!(crc32(&file), 0xCE8D_D580);
    }
}
