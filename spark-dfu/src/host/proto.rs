//! The DFU 1.1 / DfuSe wire vocabulary: class requests, states, status codes, the GETSTATUS reply and the DFU
//! functional descriptor. Pure parsing and building; no IO.

/// `bmRequestType` of a host-to-device class request to an interface.
pub const REQUEST_OUT: u8 = 0x21;
/// `bmRequestType` of a device-to-host class request to an interface.
pub const REQUEST_IN: u8 = 0xA1;

/// The DFU class requests (`bRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    /// DFU_DETACH (0): a run-time interface leaves for DFU mode.
    Detach = 0,
    /// DFU_DNLOAD (1).
    Dnload = 1,
    /// DFU_UPLOAD (2).
    Upload = 2,
    /// DFU_GETSTATUS (3).
    GetStatus = 3,
    /// DFU_CLRSTATUS (4).
    ClrStatus = 4,
    /// DFU_GETSTATE (5).
    GetState = 5,
    /// DFU_ABORT (6).
    Abort = 6,
}

impl Request {
    /// The request for a `bRequest` value.
    #[must_use]
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Detach,
            1 => Self::Dnload,
            2 => Self::Upload,
            3 => Self::GetStatus,
            4 => Self::ClrStatus,
            5 => Self::GetState,
            6 => Self::Abort,
            _ => return None,
        })
    }
}

/// The setup packet of a control transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Setup {
    /// `bmRequestType` ([`REQUEST_OUT`] or [`REQUEST_IN`]).
    pub request_type: u8,
    /// `bRequest`.
    pub request: u8,
    /// `wValue` (block number, detach timeout).
    pub value: u16,
    /// `wIndex` (the interface number).
    pub index: u16,
    /// `wLength`.
    pub length: u16,
}

impl Setup {
    /// A host-to-device DFU request.
    #[must_use]
    pub fn out(request: Request, value: u16, interface: u16, length: u16) -> Self {
        Self {
            request_type: REQUEST_OUT,
            request: request as u8,
            value,
            index: interface,
            length,
        }
    }

    /// A device-to-host DFU request.
    #[must_use]
    pub fn input(request: Request, value: u16, interface: u16, length: u16) -> Self {
        Self {
            request_type: REQUEST_IN,
            request: request as u8,
            value,
            index: interface,
            length,
        }
    }

    /// Whether data flows from the device to the host.
    #[must_use]
    pub fn is_in(&self) -> bool {
        self.request_type & 0x80 != 0
    }

    /// The DFU request, when `bRequest` is one.
    #[must_use]
    pub fn dfu_request(&self) -> Option<Request> {
        Request::from_u8(self.request)
    }
}

/// A DFU state (`bState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// appIDLE (0).
    AppIdle = 0,
    /// appDETACH (1).
    AppDetach = 1,
    /// dfuIDLE (2).
    Idle = 2,
    /// dfuDNLOAD-SYNC (3).
    DnloadSync = 3,
    /// dfuDNBUSY (4).
    DnBusy = 4,
    /// dfuDNLOAD-IDLE (5).
    DnloadIdle = 5,
    /// dfuMANIFEST-SYNC (6).
    ManifestSync = 6,
    /// dfuMANIFEST (7).
    Manifest = 7,
    /// dfuMANIFEST-WAIT-RESET (8).
    ManifestWaitReset = 8,
    /// dfuUPLOAD-IDLE (9).
    UploadIdle = 9,
    /// dfuERROR (10).
    Error = 10,
}

impl State {
    /// The state for a `bState` value.
    #[must_use]
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::AppIdle,
            1 => Self::AppDetach,
            2 => Self::Idle,
            3 => Self::DnloadSync,
            4 => Self::DnBusy,
            5 => Self::DnloadIdle,
            6 => Self::ManifestSync,
            7 => Self::Manifest,
            8 => Self::ManifestWaitReset,
            9 => Self::UploadIdle,
            10 => Self::Error,
            _ => return None,
        })
    }

    /// The name as the DFU specification and dfu-util spell it.
    #[must_use]
    pub fn name(self) -> &'static str {
        [
            "appIDLE",
            "appDETACH",
            "dfuIDLE",
            "dfuDNLOAD-SYNC",
            "dfuDNBUSY",
            "dfuDNLOAD-IDLE",
            "dfuMANIFEST-SYNC",
            "dfuMANIFEST",
            "dfuMANIFEST-WAIT-RESET",
            "dfuUPLOAD-IDLE",
            "dfuERROR",
        ][self as usize]
    }
}

/// A DFU status code (`bStatus`); values above 0x0F are kept as they came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    /// No error.
    pub const OK: Self = Self(0x00);
    /// errTARGET.
    pub const TARGET: Self = Self(0x01);
    /// errFILE.
    pub const FILE: Self = Self(0x02);
    /// errWRITE.
    pub const WRITE: Self = Self(0x03);
    /// errERASE.
    pub const ERASE: Self = Self(0x04);
    /// errCHECK_ERASED.
    pub const CHECK_ERASED: Self = Self(0x05);
    /// errPROG.
    pub const PROG: Self = Self(0x06);
    /// errVERIFY.
    pub const VERIFY: Self = Self(0x07);
    /// errADDRESS.
    pub const ADDRESS: Self = Self(0x08);
    /// errNOTDONE.
    pub const NOTDONE: Self = Self(0x09);
    /// errFIRMWARE (the Spark Core bootloader starts with it).
    pub const FIRMWARE: Self = Self(0x0A);
    /// errVENDOR.
    pub const VENDOR: Self = Self(0x0B);
    /// errUSBR.
    pub const USBR: Self = Self(0x0C);
    /// errPOR.
    pub const POR: Self = Self(0x0D);
    /// errUNKNOWN.
    pub const UNKNOWN: Self = Self(0x0E);
    /// errSTALLEDPKT.
    pub const STALLEDPKT: Self = Self(0x0F);

    /// dfu-util's text for the code (`INVALID` above 0x0F).
    #[must_use]
    pub fn description(self) -> &'static str {
        const TEXT: [&str; 16] = [
            "No error condition is present",
            "File is not targeted for use by this device",
            "File is for this device but fails some vendor-specific test",
            "Device is unable to write memory",
            "Memory erase function failed",
            "Memory erase check failed",
            "Program memory function failed",
            "Programmed memory failed verification",
            "Cannot program memory due to received address that is out of range",
            "Received DFU_DNLOAD with wLength = 0, but device does not think that it has all data yet",
            "Device's firmware is corrupt. It cannot return to run-time (non-DFU) operations",
            "iString indicates a vendor specific error",
            "Device detected unexpected USB reset signalling",
            "Device detected unexpected power on reset",
            "Something went wrong, but the device does not know what it was",
            "Device stalled an unexpected request",
        ];
        TEXT.get(usize::from(self.0)).copied().unwrap_or("INVALID")
    }
}

/// Why a reply from the device could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The reply is shorter than the request needs.
    #[error("reply of {len} bytes, {required} required")]
    Short {
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        required: usize,
    },
    /// `bState` is not a DFU state.
    #[error("unknown DFU state {0}")]
    UnknownState(u8),
    /// The descriptor's type is not 0x21.
    #[error("descriptor type {0:#04x} is not the DFU functional descriptor")]
    NotFunctional(u8),
}

/// The 6-byte GETSTATUS reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusReply {
    /// `bStatus`.
    pub status: Status,
    /// `bwPollTimeout` in milliseconds (24-bit little-endian).
    pub poll_timeout: u32,
    /// `bState`.
    pub state: State,
    /// `iString`.
    pub string: u8,
}

impl StatusReply {
    /// The reply's length on the wire.
    pub const LEN: usize = 6;

    /// Reads a GETSTATUS reply. Extra bytes are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReplyError> {
        if bytes.len() < Self::LEN {
            return Err(ReplyError::Short {
                len: bytes.len(),
                required: Self::LEN,
            });
        }
        Ok(Self {
            status: Status(bytes[0]),
            poll_timeout: u32::from_le_bytes([bytes[1], bytes[2], bytes[3], 0]),
            state: State::from_u8(bytes[4]).ok_or(ReplyError::UnknownState(bytes[4]))?,
            string: bytes[5],
        })
    }

    /// The reply's bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 6] {
        let t = self.poll_timeout.to_le_bytes();
        [
            self.status.0,
            t[0],
            t[1],
            t[2],
            self.state as u8,
            self.string,
        ]
    }
}

/// The DFU functional descriptor (type 0x21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FunctionalDescriptor {
    /// `bmAttributes`.
    pub attributes: u8,
    /// `wDetachTimeOut` in milliseconds.
    pub detach_timeout: u16,
    /// `wTransferSize`.
    pub transfer_size: u16,
    /// `bcdDFUVersion`; a 7-byte DFU 1.0 descriptor is read as 0x0100, as dfu-util does.
    pub dfu_version: u16,
}

impl FunctionalDescriptor {
    /// Descriptor type.
    pub const TYPE: u8 = 0x21;
    /// bitCanDnload.
    pub const CAN_DNLOAD: u8 = 1;
    /// bitCanUpload.
    pub const CAN_UPLOAD: u8 = 2;
    /// bitManifestationTolerant.
    pub const MANIFESTATION_TOLERANT: u8 = 4;
    /// bitWillDetach.
    pub const WILL_DETACH: u8 = 8;

    /// Reads a functional descriptor (9 bytes, or 7 for DFU 1.0).
    pub fn parse(bytes: &[u8]) -> Result<Self, ReplyError> {
        if bytes.len() < 7 {
            return Err(ReplyError::Short {
                len: bytes.len(),
                required: 7,
            });
        }
        if bytes[1] != Self::TYPE {
            return Err(ReplyError::NotFunctional(bytes[1]));
        }
        let len = usize::from(bytes[0]);
        let dfu_version = if len >= 9 && bytes.len() >= 9 {
            crate::le16(bytes, 7)
        } else if (7..9).contains(&len) {
            0x0100
        } else {
            return Err(ReplyError::Short {
                len: bytes.len().min(len),
                required: 9,
            });
        };
        Ok(Self {
            attributes: bytes[2],
            detach_timeout: crate::le16(bytes, 3),
            transfer_size: crate::le16(bytes, 5),
            dfu_version,
        })
    }

    /// Whether the device speaks ST's DfuSe extensions (`bcdDFUVersion` 0x011A).
    #[must_use]
    pub fn is_dfuse(&self) -> bool {
        self.dfu_version == 0x011A
    }

    /// The descriptor's 9 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 9] {
        let d = self.detach_timeout.to_le_bytes();
        let t = self.transfer_size.to_le_bytes();
        let v = self.dfu_version.to_le_bytes();
        [
            9,
            Self::TYPE,
            self.attributes,
            d[0],
            d[1],
            t[0],
            t[1],
            v[0],
            v[1],
        ]
    }
}

/// One DFU interface alt setting found in a configuration descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DfuAlt {
    /// `bInterfaceNumber`.
    pub interface: u8,
    /// `bAlternateSetting`.
    pub alt: u8,
    /// `bInterfaceProtocol`: 1 run-time, 2 DFU mode.
    pub protocol: u8,
    /// `iInterface`: the string descriptor holding the name (a DfuSe memory layout).
    pub name_index: u8,
}

/// What a configuration descriptor says about DFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfuConfig<'a> {
    bytes: &'a [u8],
    /// The functional descriptor, when one was found (configuration or interface extra bytes).
    pub functional: Option<FunctionalDescriptor>,
}

impl<'a> DfuConfig<'a> {
    /// Walks a whole configuration descriptor (as returned by GET_DESCRIPTOR(CONFIGURATION)). A descriptor
    /// with a zero or overlong `bLength` ends the walk, as hosts do.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ReplyError> {
        let mut functional = None;
        for d in Descriptors(bytes) {
            if d.len() >= 2 && d[1] == FunctionalDescriptor::TYPE && functional.is_none() {
                functional = Some(FunctionalDescriptor::parse(d)?);
            }
        }
        Ok(Self { bytes, functional })
    }

    /// The DFU alt settings (interface class 0xFE, subclass 1), in descriptor order.
    pub fn alts(&self) -> impl Iterator<Item = DfuAlt> + 'a {
        // Filter first: the fields may be read only once the length is known.
        Descriptors(self.bytes)
            .filter(|d| d.len() >= 9 && d[1] == 0x04 && d[5] == 0xFE && d[6] == 0x01)
            .map(|d| DfuAlt {
                interface: d[2],
                alt: d[3],
                protocol: d[7],
                name_index: d[8],
            })
    }
}

struct Descriptors<'a>(&'a [u8]);

impl<'a> Iterator for Descriptors<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(*self.0.first()?);
        if len < 2 || len > self.0.len() {
            self.0 = &[];
            return None;
        }
        let (d, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(d)
    }
}

/// Decodes a USB string descriptor (UTF-16LE) into `out`, replacing non-ASCII code units with `?`, as
/// dfu-util does for names; returns the text.
pub fn string_descriptor<'o>(bytes: &[u8], out: &'o mut [u8]) -> Result<&'o str, ReplyError> {
    if bytes.len() < 2 {
        return Err(ReplyError::Short {
            len: bytes.len(),
            required: 2,
        });
    }
    if bytes[1] != 0x03 {
        return Err(ReplyError::NotFunctional(bytes[1]));
    }
    let len = usize::from(bytes[0]).min(bytes.len());
    let units = bytes[2..len.max(2)].chunks_exact(2);
    let mut n = 0;
    for u in units {
        if n == out.len() {
            break;
        }
        let c = u16::from_le_bytes([u[0], u[1]]);
        out[n] = if (0x20..0x7F).contains(&c) {
            c as u8
        } else {
            b'?'
        };
        n += 1;
    }
    // Only ASCII was written.
    Ok(core::str::from_utf8(&out[..n]).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reply() {
        let r = StatusReply::parse(&[0x0A, 0x32, 0x01, 0x00, 10, 0]).unwrap();
        assert_eq!(r.status, Status::FIRMWARE);
        assert_eq!(r.poll_timeout, 0x132);
        assert_eq!(r.state, State::Error);
        assert_eq!(r.to_bytes(), [0x0A, 0x32, 0x01, 0x00, 10, 0]);
        for n in 0..6 {
            assert_eq!(
                StatusReply::parse(&[0; 6][..n]),
                Err(ReplyError::Short {
                    len: n,
                    required: 6
                })
            );
        }
        assert_eq!(
            StatusReply::parse(&[0, 0, 0, 0, 11, 0]),
            Err(ReplyError::UnknownState(11))
        );
        assert_eq!(Status(0x10).description(), "INVALID");
        assert_eq!(State::DnBusy.name(), "dfuDNBUSY");
    }

    #[test]
    fn spark_functional_descriptor() {
        let bytes = [0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x04, 0x1A, 0x01];
        let f = FunctionalDescriptor::parse(&bytes).unwrap();
        assert_eq!(f.attributes, 0x0B);
        assert_eq!(f.detach_timeout, 255);
        assert_eq!(f.transfer_size, 1024);
        assert!(f.is_dfuse());
        assert_eq!(f.to_bytes(), bytes);
        // DFU 1.0: seven bytes.
        let f = FunctionalDescriptor::parse(&[7, 0x21, 1, 0, 0, 0, 1]).unwrap();
        assert_eq!(f.dfu_version, 0x0100);
        assert_eq!(
            FunctionalDescriptor::parse(&[9, 0x21, 1, 0, 0, 0, 1]),
            Err(ReplyError::Short {
                len: 7,
                required: 9
            })
        );
        assert_eq!(
            FunctionalDescriptor::parse(&[9, 0x22, 0, 0, 0, 0, 0, 0, 0]),
            Err(ReplyError::NotFunctional(0x22))
        );
    }

    /// The Spark Core's configuration descriptor in DFU mode (interface 0, alt 0 and 1).
    pub(crate) const CORE_CONFIG: [u8; 36] = [
        9, 2, 36, 0, 1, 1, 0, 0xC0, 0x32, // configuration
        9, 4, 0, 0, 0, 0xFE, 1, 2, 4, // alt 0
        9, 4, 0, 1, 0, 0xFE, 1, 2, 5, // alt 1
        9, 0x21, 0x0B, 0xFF, 0, 0, 4, 0x1A, 1, // functional
    ];

    #[test]
    fn core_configuration() {
        let c = DfuConfig::parse(&CORE_CONFIG).unwrap();
        assert_eq!(c.functional.unwrap().transfer_size, 1024);
        let alts: [DfuAlt; 2] = {
            let mut it = c.alts();
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(
            (alts[0].alt, alts[0].name_index, alts[0].protocol),
            (0, 4, 2)
        );
        assert_eq!((alts[1].alt, alts[1].name_index), (1, 5));
        // Truncated at every length: never a panic, fewer alts.
        for n in 0..CORE_CONFIG.len() {
            let _ = DfuConfig::parse(&CORE_CONFIG[..n]).map(|c| c.alts().count());
        }
        // Short descriptors of any type are skipped, not read past their end (found by the fuzzer).
        let short = [2, 42, 3, 4, 0];
        assert_eq!(DfuConfig::parse(&short).unwrap().alts().count(), 0);
    }

    #[test]
    fn string_descriptors() {
        let name = "@SPI Flash : SST25x/0x00000000/512*04Kg";
        let mut d = [0u8; 80];
        d[0] = (2 + 2 * name.len()) as u8;
        d[1] = 3;
        for (i, b) in name.bytes().enumerate() {
            d[2 + 2 * i] = b;
        }
        let mut out = [0u8; 64];
        assert_eq!(string_descriptor(&d, &mut out).unwrap(), name);
        assert!(string_descriptor(&[4], &mut out).is_err());
        assert_eq!(string_descriptor(&[4, 3, 0xE9, 0], &mut out).unwrap(), "?");
    }
}

/// The DfuSe special commands (a DNLOAD with `wBlockNum` 0), as byte strings.
pub mod dfuse {
    /// Get Commands (also read back with UPLOAD block 0).
    pub const GET_COMMANDS: u8 = 0x00;
    /// Set Address Pointer.
    pub const SET_ADDRESS: u8 = 0x21;
    /// Erase (with an address: one page; alone: mass erase).
    pub const ERASE: u8 = 0x41;
    /// Read Unprotect (erases the flash and resets the device).
    pub const READ_UNPROTECT: u8 = 0x92;
    /// Mass erase (not supported by the Spark Core).
    pub const MASS_ERASE: [u8; 1] = [ERASE];

    /// The set-address command for `address`.
    #[must_use]
    pub fn set_address(address: u32) -> [u8; 5] {
        let a = address.to_le_bytes();
        [SET_ADDRESS, a[0], a[1], a[2], a[3]]
    }

    /// The erase-page command for the page holding `address`.
    #[must_use]
    pub fn erase_page(address: u32) -> [u8; 5] {
        let a = address.to_le_bytes();
        [ERASE, a[0], a[1], a[2], a[3]]
    }
}

impl Setup {
    /// DFU_DETACH for a run-time interface: the device leaves for DFU mode within `timeout_ms`.
    #[must_use]
    pub fn detach(interface: u16, timeout_ms: u16) -> Self {
        Self::out(Request::Detach, timeout_ms, interface, 0)
    }

    /// DFU_GETSTATE (one byte back).
    #[must_use]
    pub fn get_state(interface: u16) -> Self {
        Self::input(Request::GetState, 0, interface, 1)
    }

    /// A DfuSe special command (`wBlockNum` 0) carrying `command` in the data stage.
    #[must_use]
    pub fn dfuse_command(interface: u16, command: &[u8]) -> Self {
        Self::out(Request::Dnload, 0, interface, command.len() as u16)
    }
}

#[cfg(test)]
mod command_tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            dfuse::set_address(0x0800_5000),
            [0x21, 0x00, 0x50, 0x00, 0x08]
        );
        assert_eq!(dfuse::erase_page(0x1000), [0x41, 0x00, 0x10, 0x00, 0x00]);
        let d = Setup::detach(0, 1000);
        assert_eq!(
            (d.request_type, d.request, d.value, d.length),
            (0x21, 0, 1000, 0)
        );
        let g = Setup::get_state(2);
        assert_eq!(
            (g.request_type, g.request, g.index, g.length),
            (0xA1, 5, 2, 1)
        );
        let m = Setup::dfuse_command(0, &dfuse::MASS_ERASE);
        assert_eq!((m.request, m.value, m.length), (1, 0, 1));
        assert_eq!(Request::from_u8(7), None);
    }
}
