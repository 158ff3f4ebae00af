//! The forms keys take in a device's flash: the server public key record (DER, 0xFF padding,
//! server-address record at offset 384, optional port at offset 450) and the device private key
//! zero-padded to 612 bytes.

use core::fmt;

use super::der::Reader;
use super::{KeyError, RsaPrivateKeyRef, RsaPublicKeyRef};

/// Size of the server's RSA-2048 SubjectPublicKeyInfo DER as the Core stores it.
pub const SERVER_KEY_DER_LEN: usize = 294;
/// Offset of the server-address record inside the server key record (flash 0x1180 on the Core).
pub const SERVER_ADDRESS_OFFSET: usize = 384;
/// Offset of the optional big-endian port that particle-cli writes with `--port`.
pub const SERVER_PORT_OFFSET: usize = 450;
/// Size of the device private key slot: the PKCS#1 DER (607 to 611 bytes for RSA-1024) padded
/// with zeros.
pub const DEVICE_PRIVATE_KEY_STORAGE_LEN: usize = 612;
/// Size of an RSA-1024 device public key as SubjectPublicKeyInfo DER, as later devices append it
/// to their handshake credentials.
pub const DEVICE_PUBLIC_KEY_DER_LEN: usize = 162;

const ADDRESS_IPV4: u8 = 0x00;
const ADDRESS_DOMAIN: u8 = 0x01;
const ERASED: u8 = 0xff;
/// The address area runs from offset 384 to the end of the 128-byte flash slot.
const ADDRESS_AREA_END: usize = 512;

/// Where the device should connect, as stored after the server key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ServerAddress<'a> {
    /// An IPv4 address (record type 0).
    Ipv4([u8; 4]),
    /// A host name (record type 1), ASCII.
    Domain(&'a str),
}

impl fmt::Debug for ServerAddress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Ipv4([a, b, c, d]) => write!(f, "Ipv4({a}.{b}.{c}.{d})"),
            ServerAddress::Domain(name) => write!(f, "Domain({name:?})"),
        }
    }
}

impl ServerAddress<'_> {
    /// The bytes of the record: type, length, value and, for a domain, a terminating NUL (the
    /// form particle-cli writes).
    fn record_len(&self) -> usize {
        match self {
            ServerAddress::Ipv4(_) => 6,
            ServerAddress::Domain(name) => 3 + name.len(),
        }
    }
}

/// A server public key record as it sits in device flash (or in the files `particle keys server`
/// writes): the key's SPKI DER, 0xFF padding, and optionally a server address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKeyRecord<'a> {
    /// The server's public key.
    pub key: RsaPublicKeyRef<'a>,
    /// The address record at offset 384, `None` when the area is erased (0xFF) or of an unknown
    /// type, in which case the device falls back to its built-in host name.
    pub address: Option<ServerAddress<'a>>,
    /// The big-endian port at offset 450, `None` when erased.
    pub port: Option<u16>,
}

impl<'a> ServerKeyRecord<'a> {
    /// Reads a record: at least the DER key; the address and port when the record is long enough
    /// to hold them.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, KeyError> {
        let mut reader = Reader::new(bytes);
        let key = RsaPublicKeyRef::read_spki(&mut reader)?;
        let der_len = bytes.len() - reader.remaining().len();
        if der_len > SERVER_ADDRESS_OFFSET {
            return Ok(ServerKeyRecord {
                key,
                address: None,
                port: None,
            });
        }
        let address = match bytes.get(SERVER_ADDRESS_OFFSET..) {
            None | Some([]) | Some([ERASED, ..]) => None,
            Some([ADDRESS_IPV4, rest @ ..]) => match rest {
                [4, a, b, c, d, ..] => Some(ServerAddress::Ipv4([*a, *b, *c, *d])),
                _ => return Err(KeyError::InvalidAddress),
            },
            Some([ADDRESS_DOMAIN, rest @ ..]) => {
                let (&len, rest) = rest.split_first().ok_or(KeyError::InvalidAddress)?;
                let name = rest
                    .get(..usize::from(len))
                    .ok_or(KeyError::InvalidAddress)?;
                let name = core::str::from_utf8(name).map_err(|_| KeyError::InvalidAddress)?;
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(KeyError::InvalidAddress);
                }
                Some(ServerAddress::Domain(name))
            }
            Some(_) => None,
        };
        let port = match bytes.get(SERVER_PORT_OFFSET..SERVER_PORT_OFFSET + 2) {
            Some(&[hi, lo]) if [hi, lo] != [ERASED, ERASED] => Some(u16::from_be_bytes([hi, lo])),
            _ => None,
        };
        Ok(ServerKeyRecord { key, address, port })
    }

    /// The smallest record that holds everything: the DER alone, or up to the end of the address
    /// record or port.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        let mut len = self.key.spki_der_len();
        if let Some(address) = &self.address {
            len = SERVER_ADDRESS_OFFSET + address.record_len();
        }
        if self.port.is_some() {
            len = len.max(SERVER_PORT_OFFSET + 2);
        }
        len
    }

    /// Writes the record into `out`, which sets the record size (512 bytes in a Photon's DCT,
    /// 1024 or 2048 in the files the CLIs write): DER, then 0xFF up to the end, with the address
    /// and port at their offsets. Returns `out.len()`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, KeyError> {
        let required = self.buffer_len();
        if out.len() < required {
            return Err(KeyError::InsufficientSize { required });
        }
        let der_len = self.key.spki_der_len();
        if (self.address.is_some() || self.port.is_some()) && der_len > SERVER_ADDRESS_OFFSET {
            return Err(KeyError::InvalidAddress);
        }
        out.fill(ERASED);
        self.key.write_spki_der(out)?;
        if let Some(address) = &self.address {
            let end = SERVER_ADDRESS_OFFSET + address.record_len();
            let limit = if self.port.is_some() {
                SERVER_PORT_OFFSET
            } else {
                ADDRESS_AREA_END.max(SERVER_PORT_OFFSET)
            };
            if end > limit {
                return Err(KeyError::InvalidAddress);
            }
            let record = &mut out[SERVER_ADDRESS_OFFSET..end];
            match address {
                ServerAddress::Ipv4(ip) => {
                    record[..2].copy_from_slice(&[ADDRESS_IPV4, 4]);
                    record[2..].copy_from_slice(ip);
                }
                ServerAddress::Domain(name) => {
                    let len = u8::try_from(name.len()).map_err(|_| KeyError::InvalidAddress)?;
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(KeyError::InvalidAddress);
                    }
                    record[0] = ADDRESS_DOMAIN;
                    record[1] = len;
                    record[2..2 + name.len()].copy_from_slice(name.as_bytes());
                    record[2 + name.len()] = 0;
                }
            }
        }
        if let Some(port) = self.port {
            out[SERVER_PORT_OFFSET..SERVER_PORT_OFFSET + 2].copy_from_slice(&port.to_be_bytes());
        }
        Ok(out.len())
    }
}

/// Reads the device private key from its storage slot: the PKCS#1 DER at the start, whatever
/// padding follows (zeros as written, or 0xFF when read back from erased flash) is ignored.
pub fn device_private_key_from_storage(bytes: &[u8]) -> Result<RsaPrivateKeyRef<'_>, KeyError> {
    let mut reader = Reader::new(bytes);
    RsaPrivateKeyRef::read_pkcs1(&mut reader)
}

/// Writes the device private key as PKCS#1 DER followed by zeros to the end of `out` (normally
/// [`DEVICE_PRIVATE_KEY_STORAGE_LEN`] bytes). Returns `out.len()`.
pub fn device_private_key_to_storage(
    key: &RsaPrivateKeyRef<'_>,
    out: &mut [u8],
) -> Result<usize, KeyError> {
    let len = key.write_pkcs1_der(out)?;
    out[len..].fill(0);
    Ok(out.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A toy key: the record layout does not depend on the key size.
    fn key() -> RsaPublicKeyRef<'static> {
        RsaPublicKeyRef::new(&[0x0c, 0xa1], &[17]).unwrap()
    }

    #[test]
    fn records_round_trip() {
        for address in [
            None,
            Some(ServerAddress::Ipv4([10, 0, 0, 1])),
            Some(ServerAddress::Domain("cloud.example")),
        ] {
            for port in [None, Some(5683)] {
                let record = ServerKeyRecord {
                    key: key(),
                    address,
                    port,
                };
                let mut out = [0u8; 512];
                assert_eq!(record.emit(&mut out), Ok(512));
                assert_eq!(ServerKeyRecord::parse(&out), Ok(record));
                let mut small = [0u8; 600];
                let small = &mut small[..record.buffer_len()];
                assert_eq!(record.emit(small), Ok(small.len()));
                assert_eq!(ServerKeyRecord::parse(small), Ok(record));
            }
        }
    }

    #[test]
    fn bad_records() {
        let record = ServerKeyRecord {
            key: key(),
            address: Some(ServerAddress::Domain("a.example")),
            port: None,
        };
        let mut out = [0u8; 512];
        record.emit(&mut out).unwrap();
        // Truncated inside the DER: an error; inside the address record: an error, never a panic.
        let der_len = key().spki_der_len();
        for len in 0..der_len {
            assert!(ServerKeyRecord::parse(&out[..len]).is_err(), "len {len}");
        }
        for len in SERVER_ADDRESS_OFFSET + 1..SERVER_ADDRESS_OFFSET + 11 {
            assert_eq!(
                ServerKeyRecord::parse(&out[..len]),
                Err(KeyError::InvalidAddress),
                "len {len}"
            );
        }
        // An IPv4 record with another length, a domain that is not printable ASCII.
        let mut bad = out;
        bad[SERVER_ADDRESS_OFFSET..SERVER_ADDRESS_OFFSET + 2].copy_from_slice(&[0, 5]);
        assert_eq!(ServerKeyRecord::parse(&bad), Err(KeyError::InvalidAddress));
        let mut bad = out;
        bad[SERVER_ADDRESS_OFFSET + 3] = b' ';
        assert_eq!(ServerKeyRecord::parse(&bad), Err(KeyError::InvalidAddress));
        // An unknown record type: the device falls back to its default host.
        let mut other = out;
        other[SERVER_ADDRESS_OFFSET] = 7;
        assert_eq!(ServerKeyRecord::parse(&other).map(|r| r.address), Ok(None));
        // Names that do not fit.
        let long = "x".repeat(200);
        let too_long = ServerKeyRecord {
            key: key(),
            address: Some(ServerAddress::Domain(&long)),
            port: None,
        };
        assert_eq!(
            too_long.emit(&mut [0u8; 1024]),
            Err(KeyError::InvalidAddress)
        );
        let name = "y".repeat(64);
        let clash = ServerKeyRecord {
            key: key(),
            address: Some(ServerAddress::Domain(&name)),
            port: Some(1),
        };
        assert_eq!(clash.emit(&mut [0u8; 1024]), Err(KeyError::InvalidAddress));
        assert_eq!(
            record.emit(&mut [0u8; 390]),
            Err(KeyError::InsufficientSize { required: 396 })
        );
    }

    #[test]
    fn device_key_storage_ignores_padding() {
        let key = RsaPrivateKeyRef::from_components(
            &[0x0c, 0xa1],
            &[17],
            &[0x0a, 0xc1],
            &[61],
            &[53],
            &[53],
            &[49],
            &[38],
        )
        .unwrap();
        let mut slot = [0u8; DEVICE_PRIVATE_KEY_STORAGE_LEN];
        assert_eq!(device_private_key_to_storage(&key, &mut slot), Ok(612));
        assert_eq!(device_private_key_from_storage(&slot), Ok(key));
        let len = key.pkcs1_der_len();
        slot[len..].fill(0xff);
        assert_eq!(device_private_key_from_storage(&slot), Ok(key));
        for cut in 0..len {
            assert!(device_private_key_from_storage(&slot[..cut]).is_err());
        }
    }
}
