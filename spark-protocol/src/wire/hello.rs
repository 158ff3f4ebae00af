//! The Hello payloads: what a device says about itself in its first message after the handshake.
//!
//! The payload's length tells its form:
//!
//! | bytes | form | sender |
//! |---|---|---|
//! | 0 | none | the server's Hello |
//! | 4 | product id, product firmware version | accepted by the original server |
//! | 6 | + 16-bit flags | the Spark Core (CCL `SparkProtocol::hello`) |
//! | 8 | + platform id | Device OS without a device id |
//! | 12 | the device id alone | the Core's presence announcement (UDP multicast) |
//! | 22 | + 16-bit id length (12) and the device id | Device OS |
//! | 32 | + system version, max message size, max binary size, OTA chunk size | later Device OS |
//!
//! Every number is big-endian. Other lengths are kept as [`HelloPayload::Other`].
//!
//! ```
//! use spark_protocol::wire::hello::{CoreHello, HelloFlags, HelloPayload};
//!
//! // The Core's 6 bytes: no product (0xffff twice), and the flag of a good OTA update.
//! let hello = HelloPayload::parse(Some(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x01]));
//! assert_eq!(
//!     hello,
//!     HelloPayload::Core(CoreHello {
//!         product_id: 0xffff,
//!         firmware_version: 0xffff,
//!         flags: HelloFlags::OTA_UPGRADE_SUCCESSFUL,
//!     })
//! );
//! assert!(hello.flags().is_some_and(|f| f.contains(HelloFlags::OTA_UPGRADE_SUCCESSFUL)));
//! // The server's Hello carries nothing; a length no sender uses is kept as it came.
//! assert_eq!(HelloPayload::parse(None), HelloPayload::None);
//! assert_eq!(HelloPayload::parse(Some(&[1, 2, 3])), HelloPayload::Other(&[1, 2, 3]));
//! ```

use super::Error;
use super::limits::DEVICE_ID_LEN;

/// The flags of a device Hello (16 bits; the Core writes only bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HelloFlags(pub u16);

impl HelloFlags {
    /// The device has just restarted into firmware received over the air.
    pub const OTA_UPGRADE_SUCCESSFUL: HelloFlags = HelloFlags(0x01);
    /// The device can report diagnostics (Device OS).
    pub const DIAGNOSTICS_SUPPORT: HelloFlags = HelloFlags(0x02);
    /// The device accepts immediate firmware updates (Device OS).
    pub const IMMEDIATE_UPDATES_SUPPORT: HelloFlags = HelloFlags(0x04);
    /// Reserved by Device OS (HandshakeComplete).
    pub const HANDSHAKE_COMPLETE: HelloFlags = HelloFlags(0x08);
    /// The device sends Goodbye before disconnecting (Device OS).
    pub const GOODBYE_SUPPORT: HelloFlags = HelloFlags(0x10);
    /// The device sends its description without being asked (Device OS).
    pub const DEVICE_INITIATED_DESCRIBE: HelloFlags = HelloFlags(0x20);
    /// The device accepts compressed firmware (Device OS).
    pub const COMPRESSED_OTA: HelloFlags = HelloFlags(0x40);
    /// The device speaks OTA protocol v3 (Device OS).
    pub const OTA_PROTOCOL_V3: HelloFlags = HelloFlags(0x80);

    /// Whether every bit of `other` is set.
    #[must_use]
    pub const fn contains(self, other: HelloFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with `other`'s bits added.
    #[must_use]
    pub const fn union(self, other: HelloFlags) -> HelloFlags {
        HelloFlags(self.0 | other.0)
    }
}

/// The Spark Core's 6-byte Hello payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoreHello {
    /// Product id (`0xffff` on a Core built without one).
    pub product_id: u16,
    /// Product firmware version (`0xffff` on a Core built without one).
    pub firmware_version: u16,
    /// Flags; the Core writes the high byte as 0 and bit 0 after a successful OTA update.
    pub flags: HelloFlags,
}

/// The limits a later Device OS appends to its Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HelloLimits {
    /// System firmware module version.
    pub system_version: u16,
    /// Largest CoAP message the device accepts.
    pub max_message_size: u16,
    /// Largest firmware binary the device accepts.
    pub max_binary_size: u32,
    /// OTA chunk size the device wants.
    pub ota_chunk_size: u16,
}

/// The Device OS Hello payload (8, 22 or 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedHello {
    /// Product id.
    pub product_id: u16,
    /// Product firmware version.
    pub firmware_version: u16,
    /// Flags.
    pub flags: HelloFlags,
    /// Platform id (0 Core, 6 Photon, 10 Electron, ...).
    pub platform_id: u16,
    /// The device id, when sent (a 16-bit length of 12, then the id).
    pub device_id: Option<[u8; DEVICE_ID_LEN]>,
    /// The appended limits, when sent (only after a device id).
    pub limits: Option<HelloLimits>,
}

/// A Hello payload in any of its forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelloPayload<'a> {
    /// No payload (the server's Hello).
    None,
    /// Product id and product firmware version only.
    Product {
        /// Product id.
        product_id: u16,
        /// Product firmware version.
        firmware_version: u16,
    },
    /// The Core's 6-byte form.
    Core(CoreHello),
    /// The device id alone: the Core's presence announcement.
    DeviceId([u8; DEVICE_ID_LEN]),
    /// The Device OS forms.
    Extended(ExtendedHello),
    /// A payload of none of the lengths above, kept as it is.
    Other(&'a [u8]),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl<'a> HelloPayload<'a> {
    /// Reads a Hello payload (`None` for no payload marker).
    #[must_use]
    pub fn parse(payload: Option<&'a [u8]>) -> HelloPayload<'a> {
        let Some(p) = payload else {
            return HelloPayload::None;
        };
        match p.len() {
            4 => HelloPayload::Product {
                product_id: be16(p, 0),
                firmware_version: be16(p, 2),
            },
            6 => HelloPayload::Core(CoreHello {
                product_id: be16(p, 0),
                firmware_version: be16(p, 2),
                flags: HelloFlags(be16(p, 4)),
            }),
            12 => {
                let mut id = [0; DEVICE_ID_LEN];
                id.copy_from_slice(p);
                HelloPayload::DeviceId(id)
            }
            8 | 22 | 32 if p.len() == 8 || be16(p, 8) == DEVICE_ID_LEN as u16 => {
                let device_id = (p.len() >= 22).then(|| {
                    let mut id = [0; DEVICE_ID_LEN];
                    id.copy_from_slice(&p[10..22]);
                    id
                });
                let limits = (p.len() == 32).then(|| HelloLimits {
                    system_version: be16(p, 22),
                    max_message_size: be16(p, 24),
                    max_binary_size: u32::from_be_bytes([p[26], p[27], p[28], p[29]]),
                    ota_chunk_size: be16(p, 30),
                });
                HelloPayload::Extended(ExtendedHello {
                    product_id: be16(p, 0),
                    firmware_version: be16(p, 2),
                    flags: HelloFlags(be16(p, 4)),
                    platform_id: be16(p, 6),
                    device_id,
                    limits,
                })
            }
            _ => HelloPayload::Other(p),
        }
    }

    /// The product id, in the forms that carry one.
    #[must_use]
    pub fn product_id(&self) -> Option<u16> {
        match self {
            HelloPayload::Product { product_id, .. } => Some(*product_id),
            HelloPayload::Core(h) => Some(h.product_id),
            HelloPayload::Extended(h) => Some(h.product_id),
            _ => None,
        }
    }

    /// The product firmware version, in the forms that carry one.
    #[must_use]
    pub fn firmware_version(&self) -> Option<u16> {
        match self {
            HelloPayload::Product {
                firmware_version, ..
            } => Some(*firmware_version),
            HelloPayload::Core(h) => Some(h.firmware_version),
            HelloPayload::Extended(h) => Some(h.firmware_version),
            _ => None,
        }
    }

    /// The flags, in the forms that carry them.
    #[must_use]
    pub fn flags(&self) -> Option<HelloFlags> {
        match self {
            HelloPayload::Core(h) => Some(h.flags),
            HelloPayload::Extended(h) => Some(h.flags),
            _ => None,
        }
    }

    /// Checks that an [`HelloPayload::Extended`] carries limits only after a device id, and that an
    /// [`HelloPayload::Other`] is not a payload of another form (it would read back as that form).
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            HelloPayload::Extended(h) if h.limits.is_some() && h.device_id.is_none() => Err(
                Error::Missing("Hello device id (required before the limits)"),
            ),
            HelloPayload::Other(p)
                if !matches!(HelloPayload::parse(Some(p)), HelloPayload::Other(_)) =>
            {
                Err(Error::Invalid("Hello payload length"))
            }
            _ => Ok(()),
        }
    }

    /// Calls `f` with the encoded payload in pieces, or with `None` for [`HelloPayload::None`].
    pub(crate) fn with_bytes<R>(&self, f: impl FnOnce(Option<&[&[u8]]>) -> R) -> R {
        let mut fixed = [0u8; 10];
        let mut tail = [0u8; 10];
        match self {
            HelloPayload::None => f(None),
            HelloPayload::Product {
                product_id,
                firmware_version,
            } => {
                fixed[..2].copy_from_slice(&product_id.to_be_bytes());
                fixed[2..4].copy_from_slice(&firmware_version.to_be_bytes());
                f(Some(&[&fixed[..4]]))
            }
            HelloPayload::Core(h) => {
                fixed[..2].copy_from_slice(&h.product_id.to_be_bytes());
                fixed[2..4].copy_from_slice(&h.firmware_version.to_be_bytes());
                fixed[4..6].copy_from_slice(&h.flags.0.to_be_bytes());
                f(Some(&[&fixed[..6]]))
            }
            HelloPayload::DeviceId(id) => f(Some(&[id])),
            HelloPayload::Extended(h) => {
                fixed[..2].copy_from_slice(&h.product_id.to_be_bytes());
                fixed[2..4].copy_from_slice(&h.firmware_version.to_be_bytes());
                fixed[4..6].copy_from_slice(&h.flags.0.to_be_bytes());
                fixed[6..8].copy_from_slice(&h.platform_id.to_be_bytes());
                fixed[8..10].copy_from_slice(&(DEVICE_ID_LEN as u16).to_be_bytes());
                match (&h.device_id, &h.limits) {
                    (None, _) => f(Some(&[&fixed[..8]])),
                    (Some(id), None) => f(Some(&[&fixed, id])),
                    (Some(id), Some(l)) => {
                        tail[..2].copy_from_slice(&l.system_version.to_be_bytes());
                        tail[2..4].copy_from_slice(&l.max_message_size.to_be_bytes());
                        tail[4..8].copy_from_slice(&l.max_binary_size.to_be_bytes());
                        tail[8..10].copy_from_slice(&l.ota_chunk_size.to_be_bytes());
                        f(Some(&[&fixed, id, &tail]))
                    }
                }
            }
            HelloPayload::Other(p) => f(Some(&[p])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_hello_payload() {
        let p = HelloPayload::parse(Some(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x01]));
        assert_eq!(
            p,
            HelloPayload::Core(CoreHello {
                product_id: 0xffff,
                firmware_version: 0xffff,
                flags: HelloFlags::OTA_UPGRADE_SUCCESSFUL,
            })
        );
        assert_eq!(p.product_id(), Some(0xffff));
        assert!(
            p.flags()
                .unwrap()
                .contains(HelloFlags::OTA_UPGRADE_SUCCESSFUL)
        );
    }

    #[test]
    fn short_and_presence_forms() {
        assert_eq!(
            HelloPayload::parse(Some(&[0, 0, 0, 1])),
            HelloPayload::Product {
                product_id: 0,
                firmware_version: 1
            }
        );
        let id: [u8; 12] = core::array::from_fn(|i| i as u8);
        assert_eq!(HelloPayload::parse(Some(&id)), HelloPayload::DeviceId(id));
        assert_eq!(HelloPayload::parse(None), HelloPayload::None);
        assert_eq!(
            HelloPayload::parse(Some(&[1, 2, 3])),
            HelloPayload::Other(&[1, 2, 3])
        );
    }

    #[test]
    fn extended_forms() {
        let mut p = [0u8; 32];
        p[..10].copy_from_slice(&[0, 6, 0, 3, 0x00, 0x91, 0, 6, 0, 12]);
        p[10..22].copy_from_slice(b"0123456789ab");
        p[22..32].copy_from_slice(&[0x01, 0x2c, 0x04, 0x00, 0x00, 0x02, 0x00, 0x00, 0x02, 0x00]);
        let HelloPayload::Extended(h) = HelloPayload::parse(Some(&p)) else {
            panic!("not extended")
        };
        assert_eq!(h.platform_id, 6);
        assert_eq!(h.flags, HelloFlags(0x91));
        assert_eq!(&h.device_id.unwrap(), b"0123456789ab");
        let l = h.limits.unwrap();
        assert_eq!(l.system_version, 300);
        assert_eq!(l.max_message_size, 1024);
        assert_eq!(l.max_binary_size, 0x20000);
        assert_eq!(l.ota_chunk_size, 512);
        let HelloPayload::Extended(h8) = HelloPayload::parse(Some(&p[..8])) else {
            panic!("not extended")
        };
        assert_eq!(h8.device_id, None);
        let HelloPayload::Extended(h22) = HelloPayload::parse(Some(&p[..22])) else {
            panic!("not extended")
        };
        assert!(h22.device_id.is_some() && h22.limits.is_none());
        // An id length other than 12 is not the Device OS form.
        p[9] = 11;
        assert!(matches!(
            HelloPayload::parse(Some(&p[..22])),
            HelloPayload::Other(_)
        ));
    }

    #[test]
    fn validate_rejects_ambiguous_forms() {
        assert!(HelloPayload::Other(&[0; 6]).validate().is_err());
        assert!(HelloPayload::Other(&[0; 7]).validate().is_ok());
        assert!(HelloPayload::Other(&[]).validate().is_ok());
        // 22 bytes whose id length is not 12 are not the Device OS form.
        assert!(HelloPayload::Other(&[0; 22]).validate().is_ok());
        let h = ExtendedHello {
            product_id: 0,
            firmware_version: 0,
            flags: HelloFlags::default(),
            platform_id: 0,
            device_id: None,
            limits: Some(HelloLimits {
                system_version: 0,
                max_message_size: 0,
                max_binary_size: 0,
                ota_chunk_size: 0,
            }),
        };
        assert!(HelloPayload::Extended(h).validate().is_err());
    }
}
