//! The vendor prefixes dfu-util recognises at the start of a DFU file.
//!
//! - TI Stellaris "LMDFU" (8 bytes): `01 00`, the flash address in KiB (u16 LE), the payload length (u32 LE). It
//!   is only recognised when the length field equals the bytes between the prefix and the suffix.
//! - NXP LPC unencrypted (16 bytes): `1a 3f` (tested on the low six bits of each byte), the payload length in
//!   512-byte blocks (u16 LE), eight zero bytes, four `ff` bytes.
//!
//! An ARM vector table can never look like either prefix, so Spark and Particle images never carry one; the
//! probing is still done, as dfu-util does, so that files behave identically.

use crate::{InsufficientSize, ensure_len, le16, le32};

/// Length of the TI Stellaris prefix.
pub const LMDFU_LEN: usize = 8;
/// Length of the NXP LPC prefix.
pub const LPC_LEN: usize = 16;

/// Which prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixKind {
    /// TI Stellaris "LMDFU".
    Lmdfu,
    /// NXP LPC, unencrypted.
    Lpc,
}

impl PrefixKind {
    /// The prefix length in bytes.
    #[must_use]
    pub fn encoded_len(self) -> usize {
        match self {
            Self::Lmdfu => LMDFU_LEN,
            Self::Lpc => LPC_LEN,
        }
    }
}

/// A prefix found at the start of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// TI Stellaris.
    Lmdfu {
        /// Flash address: 1024 × the stored KiB count.
        address: u32,
        /// The stored payload length (equal to the bytes between prefix and suffix, or it would not be found).
        payload_len: u32,
    },
    /// NXP LPC, unencrypted.
    Lpc {
        /// The stored length field, in 512-byte blocks.
        blocks: u16,
    },
}

impl Prefix {
    /// Which kind this is.
    #[must_use]
    pub fn kind(&self) -> PrefixKind {
        match self {
            Self::Lmdfu { .. } => PrefixKind::Lmdfu,
            Self::Lpc { .. } => PrefixKind::Lpc,
        }
    }

    /// The prefix length in bytes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.kind().encoded_len()
    }

    /// The size dfu-prefix prints for an LPC prefix, in KiB (`p[2] >> 1 | p[3] << 7`, which rounds down: a
    /// one-block file reports 0).
    #[must_use]
    pub fn lpc_size_kib(&self) -> Option<u32> {
        match *self {
            Self::Lpc { blocks } => Some(u32::from(blocks) >> 1),
            Self::Lmdfu { .. } => None,
        }
    }
}

/// A prefix whose signature matched but which does not fit the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// The prefix and the suffix together are longer than the file.
    #[error("{kind:?} prefix does not fit in the file")]
    Truncated {
        /// The prefix that was recognised.
        kind: PrefixKind,
    },
}

/// Looks for a prefix at the start of `file`, whose suffix (if any) is `suffix_len` bytes long, as dfu-util's
/// `probe_prefix` does.
pub fn probe(file: &[u8], suffix_len: usize) -> Result<Option<Prefix>, PrefixError> {
    let total = file.len();
    if total < LMDFU_LEN {
        return Ok(None);
    }
    let p = &file[..LMDFU_LEN];
    let (prefix, len) = if p[0] == 0x01 && p[1] == 0x00 {
        let payload_len = le32(p, 4);
        // dfu-util computes this in 32 bits; a wrap-around can match only a corrupt file, caught below.
        let expected = (total as u32)
            .wrapping_sub(LMDFU_LEN as u32)
            .wrapping_sub(suffix_len as u32);
        if payload_len != expected {
            return Ok(None);
        }
        (
            Prefix::Lmdfu {
                address: u32::from(le16(p, 2)) * 1024,
                payload_len,
            },
            LMDFU_LEN,
        )
    } else if p[0] & 0x3f == 0x1a && p[1] & 0x3f == 0x3f {
        if total < LPC_LEN {
            return Err(PrefixError::Truncated {
                kind: PrefixKind::Lpc,
            });
        }
        (Prefix::Lpc { blocks: le16(p, 2) }, LPC_LEN)
    } else {
        return Ok(None);
    };
    if len + suffix_len > total {
        return Err(PrefixError::Truncated {
            kind: prefix.kind(),
        });
    }
    Ok(Some(prefix))
}

/// A prefix to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixRepr {
    /// TI Stellaris, for this flash address. dfu-prefix stores `address / 1024` in 16 bits, so the address is
    /// rounded down to a KiB (0x2001 becomes 0x2000) and wraps above 64 MiB.
    Lmdfu {
        /// Flash address.
        address: u32,
    },
    /// NXP LPC, unencrypted.
    Lpc,
}

impl PrefixRepr {
    /// Which kind this is.
    #[must_use]
    pub fn kind(&self) -> PrefixKind {
        match self {
            Self::Lmdfu { .. } => PrefixKind::Lmdfu,
            Self::Lpc => PrefixKind::Lpc,
        }
    }

    /// The prefix dfu-util writes when re-emitting an already-found one.
    #[must_use]
    pub fn from_prefix(prefix: &Prefix) -> Self {
        match *prefix {
            Prefix::Lmdfu { address, .. } => Self::Lmdfu { address },
            Prefix::Lpc { .. } => Self::Lpc,
        }
    }

    /// The prefix length in bytes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.kind().encoded_len()
    }

    /// Writes the prefix into `out`.
    ///
    /// `length_basis` is what dfu-util derives the length field from: for LMDFU the payload length (bytes
    /// between prefix and suffix); for LPC the input file's length without its suffix (rounded up to 512-byte
    /// blocks — dfu-util counts an existing prefix in it when it rewrites one).
    pub fn emit(&self, length_basis: u32, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        let len = self.encoded_len();
        ensure_len(out, len)?;
        let out = &mut out[..len];
        match *self {
            Self::Lmdfu { address } => {
                let kib = (address / 1024) as u16;
                out[0] = 0x01;
                out[1] = 0x00;
                out[2..4].copy_from_slice(&kib.to_le_bytes());
                out[4..8].copy_from_slice(&length_basis.to_le_bytes());
            }
            Self::Lpc => {
                let blocks = length_basis.div_ceil(512) as u16;
                out.fill(0);
                out[0] = 0x1a;
                out[1] = 0x3f;
                out[2..4].copy_from_slice(&blocks.to_le_bytes());
                out[12..16].fill(0xff);
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmdfu_bytes_and_probe() {
        let mut file = [0u8; 40];
        PrefixRepr::Lmdfu { address: 0x2001 }
            .emit(32, &mut file)
            .unwrap();
        assert_eq!(file[..8], [0x01, 0x00, 0x08, 0x00, 0x20, 0, 0, 0]);
        assert_eq!(
            probe(&file, 0),
            Ok(Some(Prefix::Lmdfu {
                address: 0x2000,
                payload_len: 32
            }))
        );
        // With a 16-byte suffix the length no longer matches: no prefix.
        assert_eq!(probe(&file, 16), Ok(None));
    }

    #[test]
    fn lpc_bytes_and_probe() {
        let mut file = [0u8; 48];
        PrefixRepr::Lpc.emit(32, &mut file).unwrap();
        assert_eq!(
            file[..16],
            [
                0x1a, 0x3f, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff
            ]
        );
        let p = probe(&file, 0).unwrap().unwrap();
        assert_eq!(p, Prefix::Lpc { blocks: 1 });
        assert_eq!(p.lpc_size_kib(), Some(0));
        assert_eq!(
            probe(&file, 40),
            Err(PrefixError::Truncated {
                kind: PrefixKind::Lpc
            })
        );
        assert_eq!(
            probe(&file[..12], 0),
            Err(PrefixError::Truncated {
                kind: PrefixKind::Lpc
            })
        );
        // Only the low six bits are compared.
        file[0] = 0xda;
        file[1] = 0x7f;
        assert!(matches!(probe(&file, 0), Ok(Some(Prefix::Lpc { .. }))));
    }

    #[test]
    fn vector_tables_are_never_prefixes() {
        let mut file = [0u8; 64];
        file[..8].copy_from_slice(&[0x00, 0x50, 0x00, 0x20, 0xcd, 0x92, 0x00, 0x08]);
        assert_eq!(probe(&file, 0), Ok(None));
        assert_eq!(probe(&file[..7], 0), Ok(None));
    }
}
