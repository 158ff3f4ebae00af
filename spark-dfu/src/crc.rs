//! The CRC-32 flavours of DFU files and Particle modules.
//!
//! Both use the reflected polynomial 0xEDB88320 with initial value 0xFFFFFFFF; they differ only in the final XOR:
//!
//! - [`jamcrc`] (CRC-32/JAMCRC, no final XOR) is the DFU suffix's `dwCRC`, as dfu-util and dfuse-pack compute it;
//! - [`crc32`] (CRC-32/ISO-HDLC, zlib's `crc32`) is the big-endian trailer of Particle firmware modules.
//!
//! So `jamcrc(x) == !crc32(x)`. Both run on `crc32fast`, which folds with carry-less multiplication (PCLMULQDQ on
//! x86-64, the CRC instructions on AArch64) when the CPU has it (detected at run time with the `std` feature,
//! at compile time otherwise) and falls back to a slice-by-16 table loop.

/// CRC-32/JAMCRC of `data` (check value for `"123456789"`: `0x340BC6D9`).
#[must_use]
pub fn jamcrc(data: &[u8]) -> u32 {
    !crc32fast::hash(data)
}

/// CRC-32/ISO-HDLC of `data`, as zlib computes it (check value for `"123456789"`: `0xCBF43926`).
#[must_use]
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// An incremental CRC-32 for data that arrives in pieces (for instance a file written part by part).
#[derive(Debug, Clone, Default)]
pub struct Crc32 {
    inner: crc32fast::Hasher,
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
    }

    #[test]
    fn incremental_matches_one_shot() {
        let data: [u8; 100] = core::array::from_fn(|i| (i * 7) as u8);
        let mut crc = Crc32::new();
        crc.update(&data[..33]);
        crc.update(&data[33..]);
        assert_eq!(crc.jamcrc(), jamcrc(&data));
        assert_eq!(crc.crc32(), crc32(&data));
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
