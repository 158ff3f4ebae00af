//! MAC addresses as NVMEM file 6 holds them (OUI first, as they appear over the air).

use core::fmt;
use core::str::FromStr;

/// The vendors whose prefixes a CC3000 module is expected to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// Texas Instruments, OUI 08:00:28.
    TexasInstruments,
    /// Jorjin Technologies (the CC3000 module maker), OUI 00:19:94.
    Jorjin,
}

impl Vendor {
    /// The vendor's OUI.
    pub const fn oui(self) -> [u8; 3] {
        match self {
            Vendor::TexasInstruments => [0x08, 0x00, 0x28],
            Vendor::Jorjin => [0x00, 0x19, 0x94],
        }
    }
}

/// Why text is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MacError {
    /// Not six two-digit hex octets separated by ':' or '-'.
    #[error("not a MAC address (expected six hex octets separated by ':')")]
    Syntax,
}

/// A 6-byte MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// The length of NVMEM's MAC record.
    pub const LEN: usize = 6;

    /// The organisationally unique identifier (first three bytes).
    pub fn oui(&self) -> [u8; 3] {
        [self.0[0], self.0[1], self.0[2]]
    }

    /// The vendor the OUI belongs to, if it is one a CC3000 ships with.
    pub fn vendor(&self) -> Option<Vendor> {
        [Vendor::TexasInstruments, Vendor::Jorjin]
            .into_iter()
            .find(|v| v.oui() == self.oui())
    }

    /// Whether the prefix is TI's or Jorjin's (the check Spark's programmer made after patching).
    pub fn has_known_vendor(&self) -> bool {
        self.vendor().is_some()
    }

    /// Whether the group (multicast) bit is set; a station address must not have it.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// All 0x00 or all 0xFF: what an erased or unwritten file reads as.
    pub fn is_blank(&self) -> bool {
        self.0 == [0; 6] || self.0 == [0xFF; 6]
    }

    /// Usable as a station address: not blank, not multicast.
    pub fn is_usable(&self) -> bool {
        !self.is_blank() && !self.is_multicast()
    }

    /// The replacement Spark's programmer derived from the STM32's 96-bit unique id: `08:00:28:id[2]:id[8]:id[9]`.
    pub fn from_stm32_uid(uid: &[u8; 12]) -> Self {
        MacAddress([0x08, 0x00, 0x28, uid[2], uid[8], uid[9]])
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddress {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, MacError> {
        let mut out = [0u8; 6];
        let mut parts = s.trim().split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or(MacError::Syntax)?;
            if p.len() != 2 {
                return Err(MacError::Syntax);
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| MacError::Syntax)?;
        }
        if parts.next().is_some() {
            return Err(MacError::Syntax);
        }
        Ok(MacAddress(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn vendors_and_checks() {
        let ti: MacAddress = "08:00:28:57:a1:02".parse().unwrap();
        assert_eq!(ti.vendor(), Some(Vendor::TexasInstruments));
        assert!(ti.is_usable());
        let jorjin: MacAddress = "00-19-94-00-00-01".parse().unwrap();
        assert_eq!(jorjin.vendor(), Some(Vendor::Jorjin));
        let other: MacAddress = "02:00:00:00:00:01".parse().unwrap();
        assert!(!other.has_known_vendor());
        assert!(MacAddress([0x09, 0, 0x28, 1, 2, 3]).is_multicast());
        assert!(MacAddress([0xFF; 6]).is_blank() && !MacAddress([0xFF; 6]).is_usable());
        assert_eq!(ti.to_string(), "08:00:28:57:a1:02");
        for bad in [
            "",
            "08:00:28:57:a1",
            "08:00:28:57:a1:02:03",
            "0g:00:28:57:a1:02",
            "8:00:28:57:a1:02",
        ] {
            assert_eq!(bad.parse::<MacAddress>(), Err(MacError::Syntax), "{bad}");
        }
        let uid = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        assert_eq!(
            MacAddress::from_stm32_uid(&uid).0,
            [0x08, 0x00, 0x28, 2, 8, 9]
        );
    }
}
