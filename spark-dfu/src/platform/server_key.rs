//! Server public-key images: the bytes `keys server` writes to a device.
//!
//! An image is the server's public key in DER, padded with `0xFF` to a fixed size, with an optional
//! server-address record at a fixed offset and an optional big-endian port after it:
//!
//! | form | size | address at | port at | where |
//! |---|---|---|---|---|
//! | [`KeyFormat::CORE`] | 2048 | 384 | 450 | Spark Core external flash 0x1000 (alt 1) |
//! | [`KeyFormat::DCT_RSA`] | 512 | 384 | 450 | Gen 2/3 DCT offset 2082 (TCP) |
//! | [`KeyFormat::DCT_EC`] | 320 | 192 | 258 | Gen 2/3 DCT offset 3298 (UDP) |
//!
//! The address record is `00 04 a b c d` for an IPv4 address or `01 <len> <name>` for a domain name; a first
//! byte of `0xFF` means "no address, use the default". Key lengths are read from the DER header on the bytes
//! (no ASN.1 library): the Particle cloud's RSA-2048 key is 294 bytes, the EC P-256 key 91.

use crate::{InsufficientSize, ensure_len};

/// The layout of one form of server-key image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFormat {
    /// The image size.
    pub len: usize,
    /// Where the address record starts.
    pub address_offset: usize,
    /// Where the big-endian port is.
    pub port_offset: usize,
}

impl KeyFormat {
    /// The Spark Core's 2048-byte image.
    pub const CORE: Self = Self {
        len: 2048,
        address_offset: 384,
        port_offset: 450,
    };
    /// The Gen 2/3 TCP (RSA) image in the DCT.
    pub const DCT_RSA: Self = Self {
        len: 512,
        address_offset: 384,
        port_offset: 450,
    };
    /// The Gen 2/3 UDP (EC) image in the DCT.
    pub const DCT_EC: Self = Self {
        len: 320,
        address_offset: 192,
        port_offset: 258,
    };
}

/// The server's address, as recorded in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerAddress<'a> {
    /// An IPv4 address.
    Ipv4([u8; 4]),
    /// A domain name (ASCII). `nul` adds a terminating zero after the record, as some published images have.
    Domain {
        /// The name.
        name: &'a [u8],
        /// Whether a NUL follows the name.
        nul: bool,
    },
}

/// The key algorithm, recognised from the DER's algorithm identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// rsaEncryption (1.2.840.113549.1.1.1).
    Rsa,
    /// id-ecPublicKey (1.2.840.10045.2.1).
    Ec,
    /// Something else.
    Unknown,
}

/// Why a server-key image could not be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes do not start with a DER SEQUENCE with a definite length that fits them.
    #[error("not a DER key")]
    NotDer,
    /// The key (or the image) does not fit the format (with an address, the key must end before it).
    #[error("the key ({len} bytes) does not fit before offset {room}")]
    KeyTooLong {
        /// The DER length.
        len: usize,
        /// The room.
        room: usize,
    },
    /// The address record does not fit before the port (a domain of at most 63 bytes fits every form).
    #[error("the server address does not fit")]
    AddressTooLong,
    /// The image is not the format's size.
    #[error("a {expected}-byte image was expected, got {actual}")]
    WrongSize {
        /// The format's size.
        expected: usize,
        /// The input length.
        actual: usize,
    },
    /// The address record has an unknown type or runs into the port.
    #[error("invalid server address record")]
    BadAddress,
    /// The output buffer is too small.
    #[error(transparent)]
    InsufficientSize(#[from] InsufficientSize),
}

/// The length of the DER value at the start of `bytes` (header included), read from its header.
pub fn der_len(bytes: &[u8]) -> Result<usize, KeyError> {
    if bytes.first() != Some(&0x30) {
        return Err(KeyError::NotDer);
    }
    let first = *bytes.get(1).ok_or(KeyError::NotDer)?;
    let (header, body) = match first {
        0..=0x7f => (2, usize::from(first)),
        0x81 => (3, usize::from(*bytes.get(2).ok_or(KeyError::NotDer)?)),
        0x82 => {
            let hi = *bytes.get(2).ok_or(KeyError::NotDer)?;
            let lo = *bytes.get(3).ok_or(KeyError::NotDer)?;
            (4, usize::from(u16::from_be_bytes([hi, lo])))
        }
        _ => return Err(KeyError::NotDer),
    };
    let len = header + body;
    if len > bytes.len() {
        return Err(KeyError::NotDer);
    }
    Ok(len)
}

/// The algorithm of a DER SubjectPublicKeyInfo or private key, by the OID it contains.
#[must_use]
pub fn key_kind(der: &[u8]) -> KeyKind {
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let head = &der[..der.len().min(32)];
    if head.windows(RSA.len()).any(|w| w == RSA) {
        KeyKind::Rsa
    } else if head.windows(EC.len()).any(|w| w == EC) {
        KeyKind::Ec
    } else {
        KeyKind::Unknown
    }
}

/// A server-key image, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKeyImage<'a> {
    /// The DER key.
    pub der: &'a [u8],
    /// Its algorithm.
    pub kind: KeyKind,
    /// The server address, when one is recorded.
    pub address: Option<ServerAddress<'a>>,
    /// The port, when one is recorded (`0xFFFF` = none).
    pub port: Option<u16>,
}

impl<'a> ServerKeyImage<'a> {
    /// Reads an image of the given form.
    pub fn parse(image: &'a [u8], format: KeyFormat) -> Result<Self, KeyError> {
        if image.len() != format.len {
            return Err(KeyError::WrongSize {
                expected: format.len,
                actual: image.len(),
            });
        }
        let len = der_len(image)?;
        let record = &image[format.address_offset..];
        // A key long enough to cover the address record (only possible without one) leaves no room for it.
        let address = match record[0] {
            _ if len > format.address_offset => None,
            0xff => None,
            0x00 if record[1] == 4 => Some(ServerAddress::Ipv4([
                record[2], record[3], record[4], record[5],
            ])),
            0x01 => {
                let n = usize::from(record[1]);
                if format.address_offset + 2 + n > format.port_offset {
                    return Err(KeyError::BadAddress);
                }
                Some(ServerAddress::Domain {
                    name: &record[2..2 + n],
                    nul: record.get(2 + n) == Some(&0),
                })
            }
            _ => return Err(KeyError::BadAddress),
        };
        let port = if len > format.port_offset {
            0xffff
        } else {
            u16::from_be_bytes([image[format.port_offset], image[format.port_offset + 1]])
        };
        let der = &image[..len];
        Ok(Self {
            der,
            kind: key_kind(der),
            address,
            port: (port != 0xffff).then_some(port),
        })
    }

    /// Writes an image of the given form for `der`, with an optional address and port; returns its length.
    pub fn emit(
        der: &[u8],
        format: KeyFormat,
        address: Option<ServerAddress<'_>>,
        port: Option<u16>,
        out: &mut [u8],
    ) -> Result<usize, KeyError> {
        let len = der_len(der)?;
        let der = &der[..len];
        let room = if address.is_some() || port.is_some() {
            format.address_offset
        } else {
            format.len
        };
        if len > room {
            return Err(KeyError::KeyTooLong { len, room });
        }
        ensure_len(out, format.len)?;
        let out = &mut out[..format.len];
        out.fill(0xff);
        out[..len].copy_from_slice(der);
        let record = &mut out[format.address_offset..format.port_offset];
        match address {
            None => {}
            Some(ServerAddress::Ipv4(ip)) => {
                record[..6].copy_from_slice(&[0x00, 4, ip[0], ip[1], ip[2], ip[3]]);
            }
            Some(ServerAddress::Domain { name, nul }) => {
                let need = 2 + name.len() + usize::from(nul);
                if need > record.len() || name.len() > 255 {
                    return Err(KeyError::AddressTooLong);
                }
                record[0] = 0x01;
                record[1] = name.len() as u8;
                record[2..2 + name.len()].copy_from_slice(name);
                if nul {
                    record[2 + name.len()] = 0;
                }
            }
        }
        if let Some(port) = port {
            out[format.port_offset..format.port_offset + 2].copy_from_slice(&port.to_be_bytes());
        }
        Ok(format.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_key_without_address_fills_the_image() {
        let mut der = [0x5au8; 1000];
        der[..4].copy_from_slice(&[0x30, 0x82, 0x03, 0xe4]);
        let mut out = [0u8; 2048];
        ServerKeyImage::emit(&der, KeyFormat::CORE, None, None, &mut out).unwrap();
        let k = ServerKeyImage::parse(&out, KeyFormat::CORE).unwrap();
        assert_eq!((k.der.len(), k.address, k.port), (1000, None, None));
        assert_eq!(
            ServerKeyImage::emit(
                &der,
                KeyFormat::CORE,
                Some(ServerAddress::Ipv4([1, 2, 3, 4])),
                None,
                &mut out
            ),
            Err(KeyError::KeyTooLong {
                len: 1000,
                room: 384
            })
        );
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_len(&[0x30, 0x03, 1, 2, 3]), Ok(5));
        assert_eq!(der_len(&[0x30, 0x81, 0x01, 9]), Ok(4));
        assert_eq!(der_len(&[0x30, 0x82, 0x00, 0x01, 9]), Ok(5));
        assert_eq!(der_len(&[0x30, 0x82, 0x01, 0x22]), Err(KeyError::NotDer));
        assert_eq!(der_len(&[0x31, 0x00]), Err(KeyError::NotDer));
        assert_eq!(der_len(&[0x30, 0x84, 0, 0, 0, 0]), Err(KeyError::NotDer));
        assert_eq!(der_len(&[]), Err(KeyError::NotDer));
    }

    #[test]
    fn build_and_read_with_ip_and_port() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x05];
        let mut out = [0u8; 512];
        let n = ServerKeyImage::emit(
            &der,
            KeyFormat::DCT_RSA,
            Some(ServerAddress::Ipv4([192, 168, 8, 14])),
            Some(5683),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 512);
        assert_eq!(out[384..390], [0, 4, 192, 168, 8, 14]);
        assert_eq!(out[450..452], [0x16, 0x33]);
        let img = ServerKeyImage::parse(&out, KeyFormat::DCT_RSA).unwrap();
        assert_eq!(img.der, der);
        assert_eq!(img.address, Some(ServerAddress::Ipv4([192, 168, 8, 14])));
        assert_eq!(img.port, Some(5683));
        assert_eq!(img.kind, KeyKind::Unknown);
        assert_eq!(
            ServerKeyImage::parse(&out[..511], KeyFormat::DCT_RSA),
            Err(KeyError::WrongSize {
                expected: 512,
                actual: 511
            })
        );
        let long = [b'a'; 70];
        assert_eq!(
            ServerKeyImage::emit(
                &der,
                KeyFormat::DCT_EC,
                Some(ServerAddress::Domain {
                    name: &long,
                    nul: false
                }),
                None,
                &mut out
            ),
            Err(KeyError::AddressTooLong)
        );
    }
}
