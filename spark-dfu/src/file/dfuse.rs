//! DfuSe files (ST UM0391): several images for several alt settings in one file.
//!
//! A file is an 11-byte prefix (`"DfuSe"`, version 1, `DFUImageSize`, `bTargets`), `bTargets` targets, and a DFU
//! suffix with `bcdDFU = 0x011A`. A target is a 274-byte prefix (`"Target"`, alt setting, `bTargetNamed` (u32),
//! a 255-byte NUL-padded name, `dwTargetSize`, `dwNbElements`) followed by its elements, each an address (u32), a
//! size (u32) and that many bytes. All integers are little-endian.
//!
//! [`DfuseFile::parse`] validates everything once — suffix and CRC, signatures, version, every target and
//! element inside the file, `DFUImageSize` equal to the file length, `dwTargetSize` equal to the sum of its
//! elements, no bytes left over, no two elements of the same alt setting overlapping, no element wrapping past
//! 4 GiB — after which iterating targets and elements cannot fail and copies nothing.
//! [`DfuseFile::parse_lenient`] accepts what dfu-util 0.11 accepts (it ignores the two size fields, leftover
//! bytes and overlaps).
//!
//! [`DfuseRepr`] writes multi-target, multi-element files; [`pack`] builds one from plain binaries at addresses
//! byte for byte as `dfuse-pack -b address[@alt]:file.bin` does.
//!
//! ```
//! use spark_dfu::file::dfuse::{DfuseFile, DfuseRepr, Element, TargetRepr};
//! use spark_dfu::file::suffix::SuffixRepr;
//!
//! // Firmware in internal flash (alt 0) and a key in the Core's SPI flash (alt 1), one file.
//! let firmware = [0x11u8; 64];
//! let key = [0x30u8; 16];
//! let internal = [Element { address: 0x0800_5000, data: &firmware }];
//! let spi = [Element { address: 0x0000_2000, data: &key }];
//! let repr = DfuseRepr {
//!     targets: &[
//!         TargetRepr { alt: 0, name: Some(b"Internal Flash"), elements: &internal },
//!         TargetRepr { alt: 1, name: Some(b"SPI Flash"), elements: &spi },
//!     ],
//!     suffix: SuffixRepr::for_device(0x1d50, 0x607f),
//! };
//! let mut out = vec![0u8; repr.buffer_len().unwrap()];
//! repr.emit(&mut out).unwrap();
//!
//! // Parsing validates the whole file once; walking it afterwards cannot fail and copies nothing.
//! let file = DfuseFile::parse(&out).unwrap();
//! assert!(file.suffix().matches_device(0x1d50, 0x607f));
//! let placed: Vec<(u8, u32, usize)> = file
//!     .targets()
//!     .flat_map(|t| t.elements().map(move |e| (t.alt(), e.address, e.data.len())))
//!     .collect();
//! assert_eq!(placed, [(0, 0x0800_5000, 64), (1, 0x2000, 16)]);
//!
//! // One flipped byte breaks the suffix's CRC: an error, never "no suffix".
//! out[20] ^= 1;
//! assert!(DfuseFile::parse(&out).is_err());
//! ```

use super::suffix::{BCD_DFUSE, SUFFIX_LEN, Suffix, SuffixError, SuffixRepr};
use crate::{InsufficientSize, ensure_len, le32};

/// Length of the file prefix.
pub const PREFIX_LEN: usize = 11;
/// Length of a target prefix.
pub const TARGET_PREFIX_LEN: usize = 274;
/// Length of an element header (address and size).
pub const ELEMENT_HEADER_LEN: usize = 8;
/// Length of the target-name field.
pub const TARGET_NAME_LEN: usize = 255;
/// The file signature.
pub const SIGNATURE: [u8; 5] = *b"DfuSe";
/// The target signature.
pub const TARGET_SIGNATURE: [u8; 6] = *b"Target";
/// The name dfuse-pack gives every target.
pub const DFUSE_PACK_NAME: &[u8] = b"ST...";
/// dfuse-pack's default device, `0483:df11` (STM32 ROM bootloader).
pub const DFUSE_PACK_DEFAULT_DEVICE: (u16, u16) = (0x0483, 0xdf11);

/// Byte offsets inside the file prefix and a target prefix.
pub mod field {
    /// File prefix: `bVersion`.
    pub const VERSION: usize = 5;
    /// File prefix: `DFUImageSize`.
    pub const IMAGE_SIZE: usize = 6;
    /// File prefix: `bTargets`.
    pub const TARGETS: usize = 10;
    /// Target prefix: `bAlternateSetting`.
    pub const ALT: usize = 6;
    /// Target prefix: `bTargetNamed` (u32).
    pub const NAMED: usize = 7;
    /// Target prefix: `szTargetName`.
    pub const NAME: usize = 11;
    /// Target prefix: `dwTargetSize`.
    pub const TARGET_SIZE: usize = 266;
    /// Target prefix: `dwNbElements`.
    pub const ELEMENTS: usize = 270;
}

/// Why a DfuSe file was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DfuseError {
    /// The DFU suffix is missing or damaged.
    #[error("DfuSe suffix: {0}")]
    Suffix(SuffixError),
    /// The suffix is valid but `bcdDFU` is not 0x011A (dfu-util: "Only DfuSe file version 1.1a is supported").
    #[error("not a DfuSe file (bcdDFU {bcd_dfu:#06x})")]
    NotDfuse {
        /// The suffix's `bcdDFU`.
        bcd_dfu: u16,
    },
    /// Less than a prefix, one target prefix and one element header (dfu-util: "File too small for a DfuSe file").
    #[error("file too small for a DfuSe file ({len} bytes without suffix)")]
    TooSmall {
        /// Bytes before the suffix.
        len: usize,
    },
    /// The file does not start with `"DfuSe"`.
    #[error("no valid DfuSe signature")]
    BadSignature,
    /// `bVersion` is not 1.
    #[error("DfuSe format revision {0} not supported")]
    UnsupportedVersion(u8),
    /// `DFUImageSize` is not the file length.
    #[error("DFUImageSize is {stored}, the file has {actual} bytes")]
    ImageSizeMismatch {
        /// As stored.
        stored: u32,
        /// The file length.
        actual: usize,
    },
    /// A target prefix runs past the end of the file (the target count lies).
    #[error("target {target} is truncated (the file claims {claimed} targets)")]
    TruncatedTarget {
        /// Index of the target.
        target: u8,
        /// `bTargets`.
        claimed: u8,
    },
    /// A target does not start with `"Target"`.
    #[error("no valid target signature for target {target}")]
    BadTargetSignature {
        /// Index of the target.
        target: u8,
    },
    /// An element header or its data runs past the end of the file.
    #[error("element {element} of target {target} runs past the end of the file")]
    TruncatedElement {
        /// Index of the target.
        target: u8,
        /// Index of the element.
        element: u32,
    },
    /// `address + size` of an element passes 4 GiB.
    #[error("element {element} of target {target} wraps past the end of the address space")]
    AddressOverflow {
        /// Index of the target.
        target: u8,
        /// Index of the element.
        element: u32,
    },
    /// `dwTargetSize` disagrees with the target's elements.
    #[error("target {target} claims {stored} bytes, its elements take {actual}")]
    TargetSizeMismatch {
        /// Index of the target.
        target: u8,
        /// As stored.
        stored: u32,
        /// Σ (8 + element size).
        actual: u64,
    },
    /// Two elements for the same alt setting overlap.
    #[error(
        "element {element} of target {target} overlaps an earlier element for alt setting {alt}"
    )]
    Overlap {
        /// The alt setting.
        alt: u8,
        /// Index of the target holding the later element.
        target: u8,
        /// Index of the later element within its target.
        element: u32,
    },
    /// Bytes are left between the last target and the suffix.
    #[error("{count} bytes left over after the last target")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

impl From<SuffixError> for DfuseError {
    fn from(e: SuffixError) -> Self {
        Self::Suffix(e)
    }
}

/// A validated DfuSe file, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfuseFile<'a> {
    bytes: &'a [u8],
    body_end: usize,
    suffix: Suffix,
}

impl<'a> DfuseFile<'a> {
    /// Reads and fully validates a DfuSe file (see the module docs for every check).
    pub fn parse(file: &'a [u8]) -> Result<Self, DfuseError> {
        Self::parse_with(file, true)
    }

    /// Reads a DfuSe file with dfu-util's checks only: `DFUImageSize`, `dwTargetSize`, leftover bytes and overlaps
    /// are not checked. Every element must still lie inside the file.
    pub fn parse_lenient(file: &'a [u8]) -> Result<Self, DfuseError> {
        Self::parse_with(file, false)
    }

    fn parse_with(file: &'a [u8], strict: bool) -> Result<Self, DfuseError> {
        let suffix = Suffix::parse(file)?;
        if suffix.bcd_dfu != BCD_DFUSE {
            return Err(DfuseError::NotDfuse {
                bcd_dfu: suffix.bcd_dfu,
            });
        }
        let body_end = file.len() - usize::from(suffix.length);
        let body = &file[..body_end];
        if body.len() < PREFIX_LEN + TARGET_PREFIX_LEN + ELEMENT_HEADER_LEN {
            return Err(DfuseError::TooSmall { len: body.len() });
        }
        if body[..5] != SIGNATURE {
            return Err(DfuseError::BadSignature);
        }
        if body[field::VERSION] != 1 {
            return Err(DfuseError::UnsupportedVersion(body[field::VERSION]));
        }
        let image_size = le32(body, field::IMAGE_SIZE);
        if strict && image_size as usize != file.len() {
            return Err(DfuseError::ImageSizeMismatch {
                stored: image_size,
                actual: file.len(),
            });
        }
        let claimed = body[field::TARGETS];
        let mut at = PREFIX_LEN;
        for t in 0..claimed {
            let Some(head) = body.get(at..at + TARGET_PREFIX_LEN) else {
                return Err(DfuseError::TruncatedTarget { target: t, claimed });
            };
            if head[..6] != TARGET_SIGNATURE {
                return Err(DfuseError::BadTargetSignature { target: t });
            }
            at += TARGET_PREFIX_LEN;
            let count = le32(head, field::ELEMENTS);
            let mut sum: u64 = 0;
            for e in 0..count {
                let (address, size) = match body.get(at..at + ELEMENT_HEADER_LEN) {
                    Some(h) => (le32(h, 0), le32(h, 4)),
                    None => {
                        return Err(DfuseError::TruncatedElement {
                            target: t,
                            element: e,
                        });
                    }
                };
                at += ELEMENT_HEADER_LEN;
                if size as usize > body.len() - at {
                    return Err(DfuseError::TruncatedElement {
                        target: t,
                        element: e,
                    });
                }
                at += size as usize;
                if u64::from(address) + u64::from(size) > 1 << 32 {
                    return Err(DfuseError::AddressOverflow {
                        target: t,
                        element: e,
                    });
                }
                sum += ELEMENT_HEADER_LEN as u64 + u64::from(size);
            }
            let stored = le32(head, field::TARGET_SIZE);
            if strict && u64::from(stored) != sum {
                return Err(DfuseError::TargetSizeMismatch {
                    target: t,
                    stored,
                    actual: sum,
                });
            }
        }
        if strict && at != body.len() {
            return Err(DfuseError::TrailingBytes {
                count: body.len() - at,
            });
        }
        let parsed = Self {
            bytes: file,
            body_end,
            suffix,
        };
        if strict {
            parsed.check_overlaps()?;
        }
        Ok(parsed)
    }

    /// Refuses two non-empty elements of the same alt setting that share an address. Linear when each alt
    /// setting's elements come in ascending order (what every tool writes); quadratic otherwise.
    fn check_overlaps(&self) -> Result<(), DfuseError> {
        let mut next_free = [0u64; 256];
        let mut ascending = true;
        'scan: for t in self.targets() {
            for e in t.elements() {
                if e.data.is_empty() {
                    continue;
                }
                let slot = &mut next_free[usize::from(t.alt())];
                if u64::from(e.address) < *slot {
                    ascending = false;
                    break 'scan;
                }
                *slot = e.end();
            }
        }
        if ascending {
            return Ok(());
        }
        for (ti, t) in self.targets().enumerate() {
            for (ei, e) in t.elements().enumerate() {
                if e.data.is_empty() {
                    continue;
                }
                let earlier = self
                    .targets()
                    .enumerate()
                    .take(ti + 1)
                    .filter(|(_, u)| u.alt() == t.alt())
                    .flat_map(|(ui, u)| u.elements().take(if ui == ti { ei } else { usize::MAX }));
                for other in earlier {
                    if !other.data.is_empty()
                        && u64::from(other.address) < e.end()
                        && u64::from(e.address) < other.end()
                    {
                        return Err(DfuseError::Overlap {
                            alt: t.alt(),
                            target: ti as u8,
                            element: ei as u32,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The whole file.
    #[must_use]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The DFU suffix.
    #[must_use]
    pub fn suffix(&self) -> Suffix {
        self.suffix
    }

    /// `DFUImageSize` as stored.
    #[must_use]
    pub fn image_size(&self) -> u32 {
        le32(self.bytes, field::IMAGE_SIZE)
    }

    /// `bTargets`.
    #[must_use]
    pub fn target_count(&self) -> u8 {
        self.bytes[field::TARGETS]
    }

    /// The targets, in file order.
    #[must_use]
    pub fn targets(&self) -> Targets<'a> {
        Targets {
            body: &self.bytes[..self.body_end],
            at: PREFIX_LEN,
            left: self.target_count(),
        }
    }

    /// Bytes between the last target and the suffix (always 0 after a strict parse).
    #[must_use]
    pub fn leftover(&self) -> usize {
        let mut end = PREFIX_LEN;
        for t in self.targets() {
            end = t.end;
        }
        self.body_end - end
    }

    /// The address of the first element of the first target (where dfu-util's `:leave` jumps).
    #[must_use]
    pub fn first_address(&self) -> Option<u32> {
        self.targets()
            .flat_map(|t| t.elements())
            .next()
            .map(|e| e.address)
    }
}

/// Iterator over the targets of a [`DfuseFile`].
#[derive(Debug, Clone)]
pub struct Targets<'a> {
    body: &'a [u8],
    at: usize,
    left: u8,
}

impl<'a> Iterator for Targets<'a> {
    type Item = Target<'a>;

    fn next(&mut self) -> Option<Target<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The file was validated, so every target and element lies inside the body; `get` keeps this panic-free
        // regardless.
        let head = self.body.get(self.at..self.at + TARGET_PREFIX_LEN)?;
        let start = self.at + TARGET_PREFIX_LEN;
        let count = le32(head, field::ELEMENTS);
        let mut end = start;
        for _ in 0..count {
            let size = le32(self.body.get(end..end + ELEMENT_HEADER_LEN)?, 4) as usize;
            end = end.checked_add(ELEMENT_HEADER_LEN + size)?;
        }
        let target = Target {
            head,
            elements: self.body.get(start..end)?,
            count,
            end,
        };
        self.at = end;
        Some(target)
    }
}

/// One target: the images for one alt setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    head: &'a [u8],
    elements: &'a [u8],
    count: u32,
    end: usize,
}

impl<'a> Target<'a> {
    /// `bAlternateSetting`.
    #[must_use]
    pub fn alt(&self) -> u8 {
        self.head[field::ALT]
    }

    /// `bTargetNamed` as stored (a boolean stored in 32 bits).
    #[must_use]
    pub fn named(&self) -> u32 {
        le32(self.head, field::NAMED)
    }

    /// The name up to its first NUL, when the target is named.
    #[must_use]
    pub fn name(&self) -> Option<&'a [u8]> {
        if self.named() == 0 {
            return None;
        }
        let raw = &self.head[field::NAME..field::NAME + TARGET_NAME_LEN];
        Some(raw.iter().position(|&b| b == 0).map_or(raw, |n| &raw[..n]))
    }

    /// `dwTargetSize` as stored.
    #[must_use]
    pub fn size(&self) -> u32 {
        le32(self.head, field::TARGET_SIZE)
    }

    /// `dwNbElements`.
    #[must_use]
    pub fn element_count(&self) -> u32 {
        self.count
    }

    /// The elements.
    #[must_use]
    pub fn elements(&self) -> Elements<'a> {
        Elements {
            bytes: self.elements,
        }
    }
}

/// Iterator over the elements of a [`Target`].
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        let head = self.bytes.get(..ELEMENT_HEADER_LEN)?;
        let address = le32(head, 0);
        let size = le32(head, 4) as usize;
        let data = self
            .bytes
            .get(ELEMENT_HEADER_LEN..ELEMENT_HEADER_LEN + size)?;
        self.bytes = &self.bytes[ELEMENT_HEADER_LEN + size..];
        Some(Element { address, data })
    }
}

/// One image element: bytes to write at an address. Used for reading and writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Element<'a> {
    /// `dwElementAddress`.
    pub address: u32,
    /// The element's bytes.
    pub data: &'a [u8],
}

impl Element<'_> {
    /// One past the last address (computed in 64 bits: it may be 2^32).
    #[must_use]
    pub fn end(&self) -> u64 {
        u64::from(self.address) + self.data.len() as u64
    }
}

/// Why a DfuSe file could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DfuseWriteError {
    /// More than 255 targets.
    #[error("{0} targets; a DfuSe file holds at most 255")]
    TooManyTargets(usize),
    /// A target name longer than 255 bytes.
    #[error("target {target} has a name longer than 255 bytes")]
    NameTooLong {
        /// Index of the target.
        target: usize,
    },
    /// An element, a target or the file does not fit the format's 32-bit sizes, or an element wraps past 4 GiB.
    #[error("target {target} does not fit the format's 32-bit sizes and addresses")]
    TooLarge {
        /// Index of the target.
        target: usize,
    },
    /// Two elements for the same alt setting overlap (the strict reader would refuse the file).
    #[error(
        "element {element} of target {target} overlaps an earlier element for the same alt setting"
    )]
    Overlap {
        /// Index of the target.
        target: usize,
        /// Index of the element.
        element: usize,
    },
    /// The file would be shorter than dfu-util's minimum (a file prefix, a target prefix and one element
    /// header), which it and [`DfuseFile::parse`] refuse: a single target without elements.
    #[error("a DfuSe file with a single target needs at least one element")]
    TooSmall,
    /// The output buffer is too small.
    #[error(transparent)]
    InsufficientSize(#[from] InsufficientSize),
}

/// A target to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetRepr<'a> {
    /// `bAlternateSetting`.
    pub alt: u8,
    /// The name (`bTargetNamed` = 1), or none (`bTargetNamed` = 0, name all zeros).
    pub name: Option<&'a [u8]>,
    /// The elements, in order.
    pub elements: &'a [Element<'a>],
}

/// A DfuSe file to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfuseRepr<'a> {
    /// The targets, in order.
    pub targets: &'a [TargetRepr<'a>],
    /// The suffix ids; `bcd_dfu` is forced to 0x011A.
    pub suffix: SuffixRepr,
}

/// A plain binary for [`pack`]: `dfuse-pack -b address@alt:file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinImage<'a> {
    /// The alt setting (dfuse-pack's default is 0).
    pub alt: u8,
    /// Where the bytes go.
    pub element: Element<'a>,
}

/// The elements of one target, whichever way the caller laid them out.
#[derive(Clone, Copy)]
enum Run<'a> {
    Elements(&'a [Element<'a>]),
    Bins(&'a [BinImage<'a>]),
}

impl<'a> Run<'a> {
    fn len(&self) -> usize {
        match self {
            Self::Elements(e) => e.len(),
            Self::Bins(b) => b.len(),
        }
    }

    fn get(&self, i: usize) -> Element<'a> {
        match self {
            Self::Elements(e) => e[i],
            Self::Bins(b) => b[i].element,
        }
    }
}

#[derive(Clone, Copy)]
struct TargetPlan<'a> {
    alt: u8,
    name: Option<&'a [u8]>,
    run: Run<'a>,
}

/// Sizes every target and checks the limits; returns the total file length.
fn plan_len<'a>(
    targets: impl Iterator<Item = TargetPlan<'a>> + Clone,
) -> Result<usize, DfuseWriteError> {
    let mut total = (PREFIX_LEN + SUFFIX_LEN) as u64;
    let mut n = 0usize;
    let all = targets.clone();
    for (ti, t) in targets.enumerate() {
        n += 1;
        if t.name.is_some_and(|name| name.len() > TARGET_NAME_LEN) {
            return Err(DfuseWriteError::NameTooLong { target: ti });
        }
        let mut size = 0u64;
        for ei in 0..t.run.len() {
            let e = t.run.get(ei);
            if e.end() > 1 << 32 {
                return Err(DfuseWriteError::TooLarge { target: ti });
            }
            if !e.data.is_empty() {
                let overlaps = all
                    .clone()
                    .take(ti + 1)
                    .enumerate()
                    .filter(|(_, u)| u.alt == t.alt)
                    .any(|(ui, u)| {
                        (0..if ui == ti { ei } else { u.run.len() })
                            .map(|k| u.run.get(k))
                            .any(|o| {
                                !o.data.is_empty()
                                    && u64::from(o.address) < e.end()
                                    && u64::from(e.address) < o.end()
                            })
                    });
                if overlaps {
                    return Err(DfuseWriteError::Overlap {
                        target: ti,
                        element: ei,
                    });
                }
            }
            size += (ELEMENT_HEADER_LEN + e.data.len()) as u64;
        }
        if size > u64::from(u32::MAX) {
            return Err(DfuseWriteError::TooLarge { target: ti });
        }
        total += TARGET_PREFIX_LEN as u64 + size;
        if total > u64::from(u32::MAX) {
            return Err(DfuseWriteError::TooLarge { target: ti });
        }
    }
    if n > 255 {
        return Err(DfuseWriteError::TooManyTargets(n));
    }
    if total < (PREFIX_LEN + TARGET_PREFIX_LEN + ELEMENT_HEADER_LEN + SUFFIX_LEN) as u64 {
        return Err(DfuseWriteError::TooSmall);
    }
    Ok(total as usize)
}

fn emit_plan<'a>(
    targets: impl Iterator<Item = TargetPlan<'a>> + Clone,
    suffix: SuffixRepr,
    out: &mut [u8],
) -> Result<usize, DfuseWriteError> {
    let total = plan_len(targets.clone())?;
    ensure_len(out, total)?;
    let out = &mut out[..total];
    out[..5].copy_from_slice(&SIGNATURE);
    out[field::VERSION] = 1;
    out[field::IMAGE_SIZE..field::IMAGE_SIZE + 4].copy_from_slice(&(total as u32).to_le_bytes());
    out[field::TARGETS] = targets.clone().count() as u8;
    let mut at = PREFIX_LEN;
    for t in targets {
        let head = &mut out[at..at + TARGET_PREFIX_LEN];
        head.fill(0);
        head[..6].copy_from_slice(&TARGET_SIGNATURE);
        head[field::ALT] = t.alt;
        if let Some(name) = t.name {
            head[field::NAMED..field::NAMED + 4].copy_from_slice(&1u32.to_le_bytes());
            head[field::NAME..field::NAME + name.len()].copy_from_slice(name);
        }
        let size: usize = (0..t.run.len())
            .map(|i| ELEMENT_HEADER_LEN + t.run.get(i).data.len())
            .sum();
        head[field::TARGET_SIZE..field::TARGET_SIZE + 4]
            .copy_from_slice(&(size as u32).to_le_bytes());
        head[field::ELEMENTS..field::ELEMENTS + 4]
            .copy_from_slice(&(t.run.len() as u32).to_le_bytes());
        at += TARGET_PREFIX_LEN;
        for i in 0..t.run.len() {
            let e = t.run.get(i);
            out[at..at + 4].copy_from_slice(&e.address.to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&(e.data.len() as u32).to_le_bytes());
            at += ELEMENT_HEADER_LEN;
            out[at..at + e.data.len()].copy_from_slice(e.data);
            at += e.data.len();
        }
    }
    SuffixRepr {
        bcd_dfu: BCD_DFUSE,
        ..suffix
    }
    .emit_in_place(out)?;
    Ok(total)
}

impl<'a> DfuseRepr<'a> {
    fn plans(&self) -> impl Iterator<Item = TargetPlan<'a>> + Clone + 'a {
        self.targets.iter().map(|t| TargetPlan {
            alt: t.alt,
            name: t.name,
            run: Run::Elements(t.elements),
        })
    }

    /// The file length, after checking every limit.
    pub fn buffer_len(&self) -> Result<usize, DfuseWriteError> {
        plan_len(self.plans())
    }

    /// Writes the file into `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, DfuseWriteError> {
        emit_plan(self.plans(), self.suffix, out)
    }

    /// [`emit`](Self::emit) into a new vector.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, DfuseWriteError> {
        let mut out = alloc::vec![0u8; self.buffer_len()?];
        self.emit(&mut out)?;
        Ok(out)
    }
}

/// The most common DfuSe file: one target holding one element, "these bytes at this address of this alt
/// setting". A [`DfuseRepr`] without the two one-entry arrays to spell out.
///
/// ```
/// use spark_dfu::file::dfuse::{DfuseFile, Element, SingleElement};
/// use spark_dfu::file::suffix::SuffixRepr;
///
/// let image = [0xAB; 300];
/// let file = SingleElement {
///     alt: 0,
///     name: Some(b"Internal Flash"),
///     element: Element { address: 0x0800_5000, data: &image },
///     suffix: SuffixRepr::for_device(0x1d50, 0x607f),
/// };
/// let mut out = [0u8; 1024];
/// let n = file.emit(&mut out).unwrap();
/// assert_eq!(n, file.buffer_len().unwrap());
///
/// let parsed = DfuseFile::parse(&out[..n]).unwrap();
/// assert_eq!(parsed.first_address(), Some(0x0800_5000));
/// let target = parsed.targets().next().unwrap();
/// assert_eq!(target.name(), Some(&b"Internal Flash"[..]));
/// assert_eq!(target.elements().next().unwrap().data, &image[..]);
///
/// // A buffer that is too small says how much is needed.
/// assert!(file.emit(&mut out[..100]).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleElement<'a> {
    /// `bAlternateSetting` of the one target.
    pub alt: u8,
    /// The target's name, or none.
    pub name: Option<&'a [u8]>,
    /// Where the bytes go, and the bytes.
    pub element: Element<'a>,
    /// The suffix ids; `bcd_dfu` is forced to 0x011A.
    pub suffix: SuffixRepr,
}

impl<'a> SingleElement<'a> {
    /// The file that puts `data` at `item`'s place on `platform` for that platform's DFU bootloader, from the
    /// platform table: the alt setting and address of the place, the target named as the alt setting's captured
    /// layout names it (trailing spaces dropped; unnamed where no layout was captured), and a suffix with the
    /// platform's DFU-mode USB ids. `None` when the platform has no such place. The length is not checked here:
    /// a host refuses bytes that do not fit ([`crate::host::Host::download`]).
    ///
    /// ```
    /// use spark_dfu::file::dfuse::{DfuseFile, SingleElement};
    /// use spark_dfu::platform::{Item, Platform, core_map};
    ///
    /// let firmware = [0x5Au8; 100];
    /// let file = SingleElement::for_item(Platform::Core, Item::UserFirmware, &firmware).unwrap();
    /// assert_eq!((file.alt, file.element.address), (0, core_map::FIRMWARE));
    /// assert_eq!(file.name, Some(&b"Internal Flash"[..]));
    /// let bytes = file.to_vec().unwrap();
    /// assert!(DfuseFile::parse(&bytes).unwrap().suffix().matches_device(0x1d50, 0x607f));
    /// ```
    #[must_use]
    pub fn for_item(
        platform: crate::platform::Platform,
        item: crate::platform::Item,
        data: &'a [u8],
    ) -> Option<Self> {
        let place = platform.location(item)?;
        let name = platform
            .layout(place.alt)
            .and_then(|l| crate::file::layout::MemoryLayout::parse(l).ok())
            .map(|l| l.name().trim_end().as_bytes());
        let usb = platform.dfu_usb();
        Some(SingleElement {
            alt: place.alt,
            name,
            element: Element {
                address: place.address,
                data,
            },
            suffix: SuffixRepr::for_device(usb.vendor, usb.product),
        })
    }

    /// The file with its one target, handed to `f` as a [`DfuseRepr`].
    fn with_repr<R>(&self, f: impl FnOnce(&DfuseRepr<'_>) -> R) -> R {
        let targets = [TargetRepr {
            alt: self.alt,
            name: self.name,
            elements: core::slice::from_ref(&self.element),
        }];
        f(&DfuseRepr {
            targets: &targets,
            suffix: self.suffix,
        })
    }

    /// The file length, after checking every limit.
    pub fn buffer_len(&self) -> Result<usize, DfuseWriteError> {
        self.with_repr(|repr| repr.buffer_len())
    }

    /// Writes the file into `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, DfuseWriteError> {
        self.with_repr(|repr| repr.emit(out))
    }

    /// [`emit`](Self::emit) into a new vector.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, DfuseWriteError> {
        self.with_repr(|repr| repr.to_vec())
    }
}

/// Why [`pack`] refused its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// An input binary already ends with a DFU suffix (signature and CRC match), which dfuse-pack refuses.
    #[error("input {index} already has a DFU suffix; remove it first")]
    InputHasSuffix {
        /// Index of the input.
        index: usize,
    },
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] DfuseWriteError),
}

fn pack_plans<'a>(images: &'a [BinImage<'a>]) -> impl Iterator<Item = TargetPlan<'a>> + Clone + 'a {
    images
        .chunk_by(|a, b| a.alt == b.alt)
        .map(|run| TargetPlan {
            alt: run[0].alt,
            name: Some(DFUSE_PACK_NAME),
            run: Run::Bins(run),
        })
}

fn check_pack_inputs(images: &[BinImage<'_>]) -> Result<(), PackError> {
    for (index, image) in images.iter().enumerate() {
        match Suffix::parse(image.element.data) {
            Ok(_)
            | Err(SuffixError::UnsupportedLength(_) | SuffixError::LengthExceedsFile { .. }) => {
                return Err(PackError::InputHasSuffix { index });
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// The length [`pack`] writes.
pub fn pack_len(images: &[BinImage<'_>]) -> Result<usize, PackError> {
    check_pack_inputs(images)?;
    Ok(plan_len(pack_plans(images))?)
}

/// Builds a DfuSe file from plain binaries as `dfuse-pack -b addr@alt:file ... -D vendor:product` does: each
/// change of alt setting starts a new target, every target is named `"ST..."`, the suffix has `bcdDevice` 0.
/// Unlike dfuse-pack, overlapping elements for one alt setting are refused.
pub fn pack(
    images: &[BinImage<'_>],
    vendor: u16,
    product: u16,
    out: &mut [u8],
) -> Result<usize, PackError> {
    check_pack_inputs(images)?;
    let suffix = SuffixRepr {
        bcd_device: 0,
        id_product: product,
        id_vendor: vendor,
        bcd_dfu: BCD_DFUSE,
    };
    Ok(emit_plan(pack_plans(images), suffix, out)?)
}

/// [`pack`] into a new vector.
#[cfg(feature = "alloc")]
pub fn pack_to_vec(
    images: &[BinImage<'_>],
    vendor: u16,
    product: u16,
) -> Result<alloc::vec::Vec<u8>, PackError> {
    let mut out = alloc::vec![0u8; pack_len(images)?];
    pack(images, vendor, product, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table-driven file is byte for byte the one spelled out by hand (what the demo and the example wrote).
    #[test]
    fn single_element_for_item_matches_the_spelled_out_file() {
        use crate::platform::{Item, Platform, core_map};
        let image: [u8; 40] = core::array::from_fn(|i| i as u8);
        let by_hand = SingleElement {
            alt: 0,
            name: Some(b"Internal Flash"),
            element: Element {
                address: core_map::FIRMWARE,
                data: &image,
            },
            suffix: SuffixRepr::for_device(0x1d50, 0x607f),
        };
        let from_table =
            SingleElement::for_item(Platform::Core, Item::UserFirmware, &image).unwrap();
        assert_eq!(from_table, by_hand);
        let (mut a, mut b) = ([0u8; 400], [0u8; 400]);
        let n = by_hand.emit(&mut a).unwrap();
        assert_eq!(from_table.emit(&mut b), Ok(n));
        assert_eq!(a[..n], b[..n]);
        // A platform without layouts gives an unnamed target; a place the platform lacks, nothing.
        let argon = SingleElement::for_item(Platform::Argon, Item::UserFirmware, &image).unwrap();
        assert_eq!(argon.name, None);
        assert_eq!(
            SingleElement::for_item(Platform::Core, Item::SystemPart(1), &image),
            None
        );
    }

    fn img16() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn one_element_file_layout() {
        let data = img16();
        let images = [BinImage {
            alt: 0,
            element: Element {
                address: 0x0800_5000,
                data: &data,
            },
        }];
        let mut out = [0u8; 400];
        let n = pack(&images, 0x1d50, 0x607f, &mut out).unwrap();
        assert_eq!(n, 325);
        let f = DfuseFile::parse(&out[..n]).unwrap();
        assert_eq!(f.image_size(), 325);
        assert_eq!(f.suffix().crc, 0xA509_8F0F);
        let t = f.targets().next().unwrap();
        assert_eq!(
            (t.alt(), t.name(), t.size(), t.element_count()),
            (0, Some(&b"ST..."[..]), 24, 1)
        );
        let e = t.elements().next().unwrap();
        assert_eq!((e.address, e.data), (0x0800_5000, &data[..]));
        assert_eq!(f.first_address(), Some(0x0800_5000));
    }

    #[test]
    fn writer_refuses_overlaps_and_bad_names() {
        let data = img16();
        let a = Element {
            address: 0x100,
            data: &data,
        };
        let b = Element {
            address: 0x108,
            data: &data,
        };
        let els = [a, b];
        let t = [TargetRepr {
            alt: 0,
            name: None,
            elements: &els,
        }];
        let r = DfuseRepr {
            targets: &t,
            suffix: SuffixRepr::default(),
        };
        assert_eq!(
            r.buffer_len(),
            Err(DfuseWriteError::Overlap {
                target: 0,
                element: 1
            })
        );
        let long = [b'x'; 256];
        let t = [TargetRepr {
            alt: 0,
            name: Some(&long),
            elements: &[],
        }];
        let r = DfuseRepr {
            targets: &t,
            suffix: SuffixRepr::default(),
        };
        assert_eq!(
            r.buffer_len(),
            Err(DfuseWriteError::NameTooLong { target: 0 })
        );
        // The same addresses on different alt settings do not overlap.
        let ts = [
            TargetRepr {
                alt: 0,
                name: None,
                elements: &els[..1],
            },
            TargetRepr {
                alt: 1,
                name: None,
                elements: &els[1..],
            },
        ];
        let r = DfuseRepr {
            targets: &ts,
            suffix: SuffixRepr::default(),
        };
        let mut out = [0u8; 1024];
        let n = r.emit(&mut out).unwrap();
        let f = DfuseFile::parse(&out[..n]).unwrap();
        let mut alts = f.targets().map(|t| (t.alt(), t.name()));
        assert_eq!(
            (alts.next(), alts.next(), alts.next()),
            (Some((0, None)), Some((1, None)), None)
        );
        assert_eq!(
            r.emit(&mut out[..n - 1]),
            Err(DfuseWriteError::InsufficientSize(InsufficientSize {
                required: n
            }))
        );
    }
}
