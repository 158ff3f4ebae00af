//! [`DeviceId`]: the 12 bytes that name a device, and their 24-hex-digit text form.
//!
//! The device sends its id in the handshake as 12 raw bytes; people, the REST API and the
//! subscription scope write it as 24 hex digits. One type holds the bytes and converts both ways:
//!
//! ```
//! use spark_protocol::DeviceId;
//!
//! let id: DeviceId = "53FF6F065067544840351187".parse()?;
//! assert_eq!(id.as_bytes()[0], 0x53);
//! // Text comes out in lowercase, whatever case went in.
//! assert_eq!(id.to_string(), "53ff6f065067544840351187");
//! assert_eq!(DeviceId::from_bytes(*id.as_bytes()), id);
//! assert!("53ff6f06".parse::<DeviceId>().is_err());
//! # Ok::<(), spark_protocol::ParseDeviceIdError>(())
//! ```

use core::fmt;
use core::str::FromStr;

/// Bytes in a device id.
pub const DEVICE_ID_LEN: usize = 12;

/// A device id: 12 bytes inside, 24 lowercase hex digits as text ([`fmt::Display`],
/// [`FromStr`] takes either case). With the `serde` feature it (de)serializes as that text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[must_use]
pub struct DeviceId([u8; DEVICE_ID_LEN]);

impl DeviceId {
    /// The id with these bytes.
    pub const fn from_bytes(bytes: [u8; DEVICE_ID_LEN]) -> Self {
        DeviceId(bytes)
    }

    /// The id from a slice of exactly 12 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(DeviceId)
    }

    /// The 12 bytes, as the handshake carries them.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; DEVICE_ID_LEN] {
        &self.0
    }

    /// The 24 lowercase hex digits as text, without a heap (what [`fmt::Display`] writes).
    #[must_use]
    pub fn hex(&self) -> DeviceIdHex {
        DeviceIdHex(self.to_hex())
    }

    /// The 24 lowercase hex digits, without a heap (what [`fmt::Display`] writes).
    #[must_use]
    pub fn to_hex(&self) -> [u8; 2 * DEVICE_ID_LEN] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 2 * DEVICE_ID_LEN];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
        out
    }

    /// Reads 24 hex digits (either case) given as bytes, as a subscription scope carries them.
    pub fn parse_hex(text: &[u8]) -> Result<Self, ParseDeviceIdError> {
        if text.len() != 2 * DEVICE_ID_LEN {
            return Err(ParseDeviceIdError::Length(text.len()));
        }
        let mut id = [0u8; DEVICE_ID_LEN];
        for (b, pair) in id.iter_mut().zip(text.chunks_exact(2)) {
            *b = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(DeviceId(id))
    }
}

fn nibble(c: u8) -> Result<u8, ParseDeviceIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseDeviceIdError::NotHex),
    }
}

/// Why text is not a device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseDeviceIdError {
    /// Not 24 characters long (the length found).
    #[error("a device id is 24 hex digits, not {0} characters")]
    Length(usize),
    /// A character is not a hex digit.
    #[error("a device id is hex digits only")]
    NotHex,
}

impl FromStr for DeviceId {
    type Err = ParseDeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceId::parse_hex(s.as_bytes())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

/// A device id's 24 lowercase hex digits as text on the stack ([`DeviceId::hex`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DeviceIdHex([u8; 2 * DEVICE_ID_LEN]);

impl DeviceIdHex {
    /// The digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII: the conversion cannot fail.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for DeviceIdHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl From<[u8; DEVICE_ID_LEN]> for DeviceId {
    fn from(bytes: [u8; DEVICE_ID_LEN]) -> Self {
        DeviceId(bytes)
    }
}

impl From<DeviceId> for [u8; DEVICE_ID_LEN] {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

impl AsRef<[u8]> for DeviceId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq<[u8; DEVICE_ID_LEN]> for DeviceId {
    fn eq(&self, other: &[u8; DEVICE_ID_LEN]) -> bool {
        &self.0 == other
    }
}

/// An id equals the text that spells it, in either case (so an id read from JSON compares with the
/// id a person typed).
impl PartialEq<str> for DeviceId {
    fn eq(&self, other: &str) -> bool {
        DeviceId::parse_hex(other.as_bytes()) == Ok(*self)
    }
}

impl PartialEq<&str> for DeviceId {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

#[cfg(feature = "alloc")]
impl PartialEq<alloc::string::String> for DeviceId {
    fn eq(&self, other: &alloc::string::String) -> bool {
        *self == *other.as_str()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = DeviceId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a device id of 24 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeviceId, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects() {
        let id = DeviceId::from_bytes([0, 1, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 9, 10, 11, 12]);
        let hex = id.to_hex();
        assert_eq!(&hex, b"00017f80abcdefff090a0b0c");
        assert_eq!(DeviceId::parse_hex(&hex), Ok(id));
        assert_eq!(DeviceId::parse_hex(b"00017F80ABCDEFFF090A0B0C"), Ok(id));
        assert_eq!(
            DeviceId::parse_hex(b"00017f80abcdefff090a0b0"),
            Err(ParseDeviceIdError::Length(23))
        );
        assert_eq!(
            DeviceId::parse_hex(b"00017f80abcdefff090a0b0g"),
            Err(ParseDeviceIdError::NotHex)
        );
        assert_eq!(DeviceId::from_slice(&[1; 11]), None);
        // Text compares by the id it spells, in either case.
        assert!(id == "00017F80abcdefff090a0b0c");
        assert!(id != "00017f80abcdefff090a0b0d");
        assert!(id != "not an id");
    }
}
