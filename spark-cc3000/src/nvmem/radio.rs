//! The radio-module (RM) parameters: the first 128 bytes of NVMEM file 11, per-module RF calibration.

/// Bytes of RM parameters the programmers save and restore.
pub const RADIO_PARAMS_LEN: usize = 128;

/// A module's 128 bytes of radio parameters, kept opaque (their layout is not published).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RadioParams(pub [u8; RADIO_PARAMS_LEN]);

impl RadioParams {
    /// From exactly 128 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(RadioParams)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; RADIO_PARAMS_LEN] {
        &self.0
    }

    /// All 0x00 or all 0xFF: an erased or unwritten file, never real calibration.
    pub fn is_blank(&self) -> bool {
        self.0.iter().all(|&b| b == 0) || self.0.iter().all(|&b| b == 0xFF)
    }
}

impl core::fmt::Debug for RadioParams {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RadioParams(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_lengths() {
        assert!(RadioParams([0; 128]).is_blank());
        assert!(RadioParams([0xFF; 128]).is_blank());
        let mut p = [0u8; 128];
        p[5] = 3;
        assert!(!RadioParams(p).is_blank());
        assert!(RadioParams::from_slice(&[0; 127]).is_none());
        assert_eq!(RadioParams::from_slice(&p).unwrap().as_bytes(), &p);
    }
}
