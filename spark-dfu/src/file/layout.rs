//! DfuSe memory-layout strings (ST UM0424), as dfu-util 0.11 reads them.
//!
//! A DfuSe device names each alt setting with its memory map, e.g. the Spark Core's
//! `@Internal Flash  /0x08000000/20*001Ka,108*001Kg`: a name (everything between `@` and the first `/`,
//! trailing spaces kept), then one or more regions `/0x<address>/` each followed by comma-separated segments
//! `<count>*<size><multiplier><type>`. The multiplier is `B`, `K` (×1024) or `M` (×1048576); the type letter's low
//! three bits are the access flags (bit 0 readable, bit 1 erasable, bit 2 writeable: `a` = r, `b` = e, `c` = re,
//! `d` = w, `e` = rw, `f` = ew, `g` = rew).
//!
//! The parser reproduces dfu-util's `parse_memory_layout` (a chain of `sscanf` calls) decision for decision,
//! including its leniencies: a space or unknown multiplier means bytes (with a warning), a type letter in the
//! multiplier position is taken as the type, a segment whose type cannot be read is skipped, the interface named
//! `Device Feature` is always type `e`, and numbers are read as `%d` / `%x` read them (signs, overflow wrapping
//! to 32 bits). One corner is not reproducible: when a segment has no type string, dfu-util advances by a stale
//! `%n` count, which can run past the end of the string (undefined behaviour in C); here the parse then ends,
//! which is what dfu-util does whenever the memory past the string is not a valid layout.
//!
//! Nothing is allocated: the layout keeps the string and the segment iterator re-reads it.
//!
//! ```
//! use spark_dfu::file::layout::MemoryLayout;
//! use spark_dfu::platform::CORE_INTERNAL_FLASH;
//!
//! // "@Internal Flash  /0x08000000/20*001Ka,108*001Kg": a 20 KiB read-only bootloader, then 108 KiB of
//! // readable, erasable, writeable 1 KiB pages.
//! let layout = MemoryLayout::parse(CORE_INTERNAL_FLASH).unwrap();
//! assert_eq!(layout.name(), "Internal Flash  ");
//! let segments: Vec<_> = layout.segments().map(|s| (s.start, s.page_count, s.flags())).collect();
//! assert_eq!(segments, [(0x0800_0000, 20, "r"), (0x0800_5000, 108, "rew")]);
//!
//! // The bootloader is refused; the application region is fine, and a 2500-byte write erases three pages.
//! assert!(!layout.is_writeable(0x0800_0000, 16));
//! assert!(layout.is_writeable(0x0800_5000, 2500));
//! let pages: Vec<u32> = layout.pages_to_erase(0x0800_5000, 2500).unwrap().map(|p| p.address).collect();
//! assert_eq!(pages, [0x0800_5000, 0x0800_5400, 0x0800_5800]);
//! ```

/// Why a layout string could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The string does not start with `@` and a name (dfu-util: "Could not read name").
    #[error("memory layout has no name")]
    NoName,
    /// The string has a name but no segment (dfu-util: "Failed to parse memory layout").
    #[error("memory layout has no segments")]
    NoSegments,
    /// An address lies in no segment.
    #[error("address {address:#010x} is not in the memory layout")]
    Unmapped {
        /// The address.
        address: u32,
    },
    /// An address lies in a segment without the needed access (dfu-util: "Page at 0x%08x is not writeable").
    #[error("address {address:#010x} is not {access}")]
    Access {
        /// The address.
        address: u32,
        /// `"readable"`, `"erasable"` or `"writeable"`.
        access: &'static str,
    },
    /// The range runs past the end of the 32-bit address space.
    #[error("the range passes the end of the address space")]
    RangeOverflow,
    /// Two segments share addresses. A layout comes from the USB device; with overlapping segments an address's
    /// access and page size would depend on which segment is asked, so such a layout is refused.
    #[error("memory layout segments overlap at {address:#010x}")]
    Overlap {
        /// The first address both segments hold.
        address: u32,
    },
    /// The segment holding an address has a page size of zero or less, so pages cannot be computed.
    #[error("the segment holding {address:#010x} has no usable page size")]
    BadPageSize {
        /// The address.
        address: u32,
    },
}

/// Access flag: readable.
pub const READABLE: u8 = 1;
/// Access flag: erasable.
pub const ERASABLE: u8 = 2;
/// Access flag: writeable.
pub const WRITEABLE: u8 = 4;

/// One memory segment: `page_count` pages of `page_size` bytes from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    /// First address.
    pub start: u32,
    /// Last address (inclusive, as dfu-util stores it; computed in 32 bits).
    pub end: u32,
    /// Page size in bytes, as dfu-util's `int` (a negative count or size in the string shows up here).
    pub page_size: i32,
    /// Number of pages, as written.
    pub page_count: i32,
    /// The access flags ([`READABLE`], [`ERASABLE`], [`WRITEABLE`]).
    pub memtype: u8,
    /// A warning dfu-util prints for this segment, if any.
    pub warning: Option<LayoutWarning>,
}

impl Segment {
    /// Whether the segment can be read (uploaded).
    #[must_use]
    pub fn readable(&self) -> bool {
        self.memtype & READABLE != 0
    }

    /// Whether the segment's pages must (and can) be erased before writing.
    #[must_use]
    pub fn erasable(&self) -> bool {
        self.memtype & ERASABLE != 0
    }

    /// Whether the segment can be written (downloaded).
    #[must_use]
    pub fn writeable(&self) -> bool {
        self.memtype & WRITEABLE != 0
    }

    /// Whether `address` lies in the segment (dfu-util's `find_segment` test).
    #[must_use]
    pub fn contains(&self, address: u32) -> bool {
        self.start <= address && address <= self.end
    }

    /// The flags as dfu-util prints them (`"rew"`, `"r"`, ...).
    #[must_use]
    pub fn flags(&self) -> &'static str {
        ["", "r", "e", "re", "w", "rw", "ew", "rew"][usize::from(self.memtype & 7)]
    }
}

/// Something dfu-util warns about while reading a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayoutWarning {
    /// "Non-valid multiplier '%c', assuming bytes".
    MultiplierAssumedBytes(u8),
    /// "Non-valid multiplier '%c', interpreted as type identifier instead".
    MultiplierIsType(u8),
    /// "Parsing type identifier '%s' failed for segment %i": the segment is skipped.
    TypeUnreadable {
        /// 1-based segment number.
        segment: i32,
    },
    /// "No valid type for segment %d": the segment is skipped.
    NoType {
        /// 1-based segment number.
        segment: i32,
    },
}

/// A parsed memory layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLayout<'a> {
    name: &'a str,
    text: &'a [u8],
    after_name: usize,
}

impl<'a> MemoryLayout<'a> {
    /// Parses a layout string (an alt setting's name). The string ends at its first NUL, as in C. Segments that
    /// share addresses are refused ([`LayoutError::Overlap`]; dfu-util does not check).
    pub fn parse(s: &'a str) -> Result<Self, LayoutError> {
        let bytes = s.as_bytes();
        let text = &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())];
        if text.first() != Some(&b'@') {
            return Err(LayoutError::NoName);
        }
        let name_len = text[1..]
            .iter()
            .position(|&b| b == b'/')
            .unwrap_or(text.len() - 1);
        if name_len == 0 {
            return Err(LayoutError::NoName);
        }
        // '@' and '/' are ASCII, so both cuts fall on character boundaries.
        let name = &s[1..1 + name_len];
        let layout = Self {
            name,
            text,
            after_name: 1 + name_len,
        };
        if layout.segments().next().is_none() {
            return Err(LayoutError::NoSegments);
        }
        for (i, a) in layout.segments().enumerate() {
            if let Some(b) = layout
                .segments()
                .take(i)
                .find(|b| a.start <= b.end && b.start <= a.end)
            {
                return Err(LayoutError::Overlap {
                    address: a.start.max(b.start),
                });
            }
        }
        Ok(layout)
    }

    /// The interface name, trailing spaces kept (`"Internal Flash  "`).
    #[must_use]
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Everything dfu-util's parser reports, in order: segments and skipped-segment warnings.
    #[must_use]
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            text: self.text,
            pos: self.after_name,
            scanned: self.after_name,
            address: 0,
            in_region: false,
            count: 0,
            device_feature: self.name == "Device Feature",
            done: false,
        }
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + Clone + use<'a> {
        self.entries().filter_map(|e| match e {
            Entry::Segment(s) => Some(s),
            Entry::Skipped(_) => None,
        })
    }

    /// Every warning dfu-util would print, in order.
    pub fn warnings(&self) -> impl Iterator<Item = LayoutWarning> + use<'a> {
        self.entries().filter_map(|e| match e {
            Entry::Segment(s) => s.warning,
            Entry::Skipped(w) => Some(w),
        })
    }

    /// The first segment holding `address` (dfu-util's `find_segment`).
    #[must_use]
    pub fn segment_at(&self, address: u32) -> Option<Segment> {
        self.segments().find(|s| s.contains(address))
    }

    /// Checks that every byte of `[start, start + len)` lies in segments with the access `flag`.
    fn check_range(
        &self,
        start: u32,
        len: u32,
        flag: u8,
        access: &'static str,
    ) -> Result<(), LayoutError> {
        let end = u64::from(start) + u64::from(len);
        if end > 1 << 32 {
            return Err(LayoutError::RangeOverflow);
        }
        let mut at = u64::from(start);
        while at < end {
            let address = at as u32;
            let seg = self
                .segment_at(address)
                .ok_or(LayoutError::Unmapped { address })?;
            if seg.memtype & flag == 0 {
                return Err(LayoutError::Access { address, access });
            }
            at = u64::from(seg.end) + 1;
        }
        Ok(())
    }

    /// Whether every byte of `[start, start + len)` can be written.
    pub fn check_writeable(&self, start: u32, len: u32) -> Result<(), LayoutError> {
        self.check_range(start, len, WRITEABLE, "writeable")
    }

    /// Whether every byte of `[start, start + len)` is writeable.
    #[must_use]
    pub fn is_writeable(&self, start: u32, len: u32) -> bool {
        self.check_writeable(start, len).is_ok()
    }

    /// Whether every byte of `[start, start + len)` can be read.
    pub fn check_readable(&self, start: u32, len: u32) -> Result<(), LayoutError> {
        self.check_range(start, len, READABLE, "readable")
    }

    /// dfu-util's own (weaker) test before a raw download: is the last byte, `start + len - 1`, writeable?
    #[must_use]
    pub fn dfu_util_accepts_download(&self, start: u32, len: u32) -> bool {
        let last = start.wrapping_add(len).wrapping_sub(1);
        self.segment_at(last).is_some_and(|s| s.writeable())
    }

    /// The pages that must be erased before writing `[start, start + len)`: every page of an erasable segment
    /// that the range touches, each once, in ascending order, with the page size of the segment holding it.
    /// Writeable segments that are not erasable (RAM, option bytes) need no erase. Fails when part of the range
    /// is not writeable.
    ///
    /// Pages are counted from the segment's start. dfu-util instead masks the address with `!(page_size - 1)`,
    /// which gives the same pages whenever the page size is a power of two and the segment starts on a page
    /// boundary (every Spark and Particle layout), and wrong ones otherwise.
    pub fn pages_to_erase(&self, start: u32, len: u32) -> Result<ErasePages<'a>, LayoutError> {
        self.check_writeable(start, len)?;
        let end = u64::from(start) + u64::from(len);
        let mut at = u64::from(start);
        while at < end {
            let seg = self
                .segment_at(at as u32)
                .ok_or(LayoutError::Unmapped { address: at as u32 })?;
            if seg.erasable() && seg.page_size <= 0 {
                return Err(LayoutError::BadPageSize { address: at as u32 });
            }
            at = u64::from(seg.end) + 1;
        }
        Ok(ErasePages {
            layout: *self,
            at: u64::from(start),
            end,
        })
    }
}

/// A page to erase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Page {
    /// First address of the page.
    pub address: u32,
    /// Page size in bytes.
    pub size: u32,
}

/// Iterator over the pages to erase for a write, from [`MemoryLayout::pages_to_erase`].
#[derive(Debug, Clone)]
pub struct ErasePages<'a> {
    layout: MemoryLayout<'a>,
    at: u64,
    end: u64,
}

impl Iterator for ErasePages<'_> {
    type Item = Page;

    fn next(&mut self) -> Option<Page> {
        while self.at < self.end {
            let address = self.at as u32;
            // Validated in pages_to_erase: every address is mapped and erasable segments have pages.
            let seg = self.layout.segment_at(address)?;
            if !seg.erasable() || seg.page_size <= 0 {
                self.at = u64::from(seg.end) + 1;
                continue;
            }
            let size = seg.page_size as u32;
            let page =
                u64::from(seg.start) + u64::from((address - seg.start) / size) * u64::from(size);
            self.at = page + u64::from(size);
            return Some(Page {
                address: page as u32,
                size,
            });
        }
        None
    }
}

/// One step of dfu-util's parse: a segment, or a segment it skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    /// A segment.
    Segment(Segment),
    /// A segment that was skipped, and why.
    Skipped(LayoutWarning),
}

/// Iterator over the [`Entry`]s of a layout.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    text: &'a [u8],
    pos: usize,
    /// The last value a `%n` stored: dfu-util advances by it even when the `%n` was not reached.
    scanned: usize,
    address: u32,
    in_region: bool,
    count: i32,
    device_feature: bool,
    done: bool,
}

impl Iterator for Entries<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        while !self.done {
            if !self.in_region {
                // sscanf(p, "/0x%x/%n", &address, &scanned) > 0
                let rest = &self.text[self.pos..];
                let Some((address, n)) = scan_region(rest) else {
                    self.done = true;
                    return None;
                };
                self.address = address;
                if let Some(n) = n {
                    self.scanned = n;
                }
                self.advance();
                self.in_region = true;
            }
            // sscanf(p, "%d*%d%c%[^,/]%n", ...) > 2
            let Some(seg) = scan_segment(&self.text[self.pos..]) else {
                self.in_region = false;
                continue;
            };
            if let Some(n) = seg.scanned {
                self.scanned = n;
            }
            self.advance();
            self.count = self.count.wrapping_add(1);
            let mut memtype = 0u8;
            if let Some(typestring) = seg.typestring {
                if typestring.len() == 1 {
                    memtype = typestring[0];
                } else {
                    return Some(Entry::Skipped(LayoutWarning::TypeUnreadable {
                        segment: self.count,
                    }));
                }
            }
            if self.device_feature {
                memtype = b'e';
            }
            let mut size = seg.size;
            let mut warning = None;
            match seg.multiplier {
                b'B' => {}
                b'K' => size = size.wrapping_mul(1024),
                b'M' => size = size.wrapping_mul(1024 * 1024),
                m @ b'a'..=b'g' if memtype == 0 => {
                    warning = Some(LayoutWarning::MultiplierIsType(m));
                    memtype = m;
                }
                m => warning = Some(LayoutWarning::MultiplierAssumedBytes(m)),
            }
            if memtype == 0 {
                return Some(Entry::Skipped(LayoutWarning::NoType {
                    segment: self.count,
                }));
            }
            let bytes = seg.sectors.wrapping_mul(size) as u32;
            let segment = Segment {
                start: self.address,
                end: self.address.wrapping_add(bytes).wrapping_sub(1),
                page_size: size,
                page_count: seg.sectors,
                memtype: memtype & 7,
                warning,
            };
            self.address = self.address.wrapping_add(bytes);
            if self.text.get(self.pos) == Some(&b',') {
                self.pos += 1;
            } else {
                self.in_region = false;
            }
            return Some(Entry::Segment(segment));
        }
        None
    }
}

impl Entries<'_> {
    fn advance(&mut self) {
        // Past the end only through a stale count; C would read beyond the string, here the parse ends.
        self.pos = (self.pos + self.scanned).min(self.text.len());
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtol`/`strtoul` skip before the digits: C white space, then one optional sign. Returns the index of
/// the first byte after them and whether the sign was `-`.
fn scan_sign(s: &[u8]) -> (usize, bool) {
    let i = s.iter().take_while(|&&b| is_c_space(b)).count();
    match s.get(i) {
        Some(b'-') => (i + 1, true),
        Some(b'+') => (i + 1, false),
        _ => (i, false),
    }
}

/// What `%d` reads (`strtol` clamped to 64 bits, then truncated to `int`), and the bytes it took.
fn scan_decimal(s: &[u8]) -> Option<(i32, usize)> {
    let (i, negative) = scan_sign(s);
    let digits = s[i.min(s.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in &s[i..i + digits] {
        let d = i64::from(d - b'0');
        value = if negative {
            value
                .checked_mul(10)
                .and_then(|v| v.checked_sub(d))
                .unwrap_or(i64::MIN)
        } else {
            value
                .checked_mul(10)
                .and_then(|v| v.checked_add(d))
                .unwrap_or(i64::MAX)
        };
    }
    Some((value as i32, i + digits))
}

/// What `%x` reads into an `unsigned int` (`strtoul` in 64 bits, then truncated), and the bytes it took.
fn scan_hex(s: &[u8]) -> Option<(u32, usize)> {
    let (mut i, negative) = scan_sign(s);
    let mut zero_prefix = false;
    if s.get(i) == Some(&b'0') && matches!(s.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        zero_prefix = true;
    }
    let digits = s[i.min(s.len())..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        // "0x" with no digits after it still reads the 0.
        return zero_prefix.then_some((0, i));
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for &d in &s[i..i + digits] {
        let d = u64::from((d as char).to_digit(16).unwrap_or(0));
        match value.checked_mul(16).and_then(|v| v.checked_add(d)) {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    let value = if overflow {
        u64::MAX
    } else if negative {
        value.wrapping_neg()
    } else {
        value
    };
    Some((value as u32, i + digits))
}

/// `sscanf(s, "/0x%x/%n", &address, &n)`: the address (when the return value is positive) and `n` when the
/// whole pattern matched.
fn scan_region(s: &[u8]) -> Option<(u32, Option<usize>)> {
    if !s.starts_with(b"/0x") {
        return None;
    }
    let (address, used) = scan_hex(&s[3..])?;
    let end = 3 + used;
    Some((address, (s.get(end) == Some(&b'/')).then_some(end + 1)))
}

struct ScannedSegment<'a> {
    sectors: i32,
    size: i32,
    multiplier: u8,
    typestring: Option<&'a [u8]>,
    scanned: Option<usize>,
}

/// `sscanf(s, "%d*%d%c%[^,/]%n", ...)` when it returns more than 2.
fn scan_segment(s: &[u8]) -> Option<ScannedSegment<'_>> {
    let (sectors, mut i) = scan_decimal(s)?;
    if s.get(i) != Some(&b'*') {
        return None;
    }
    i += 1;
    let (size, used) = scan_decimal(&s[i..])?;
    i += used;
    let &multiplier = s.get(i)?;
    i += 1;
    let type_len = s[i..]
        .iter()
        .take_while(|&&b| b != b',' && b != b'/')
        .count();
    let (typestring, scanned) = if type_len == 0 {
        (None, None)
    } else {
        (Some(&s[i..i + type_len]), Some(i + type_len))
    };
    Some(ScannedSegment {
        sectors,
        size,
        multiplier,
        typestring,
        scanned,
    })
}

#[cfg(test)]
mod tests {
    /// A fuzz finding: the second region's segment starts where the first's does. Before, the pages to erase for
    /// `[0, 100)` included page 0 of the second (erasable) segment, an address whose segment (the first) cannot
    /// be erased.
    #[test]
    fn overlapping_segments_are_refused() {
        let text = "@Flash/0x00000000/8*007 d/0x00000000/6*001Mg";
        assert_eq!(
            MemoryLayout::parse(text),
            Err(LayoutError::Overlap { address: 0 })
        );
        // Overlap in the middle of a segment, and touching (inclusive ends) segments that do not overlap.
        assert_eq!(
            MemoryLayout::parse("@F/0x08000000/4*1Kg/0x08000800/2*1Kg"),
            Err(LayoutError::Overlap {
                address: 0x0800_0800
            })
        );
        let ok = MemoryLayout::parse("@F/0x08000000/2*1Kg/0x08000800/2*1Kg").unwrap();
        for page in ok.pages_to_erase(0x0800_0000, 0x1000).unwrap() {
            assert!(ok.segment_at(page.address).unwrap().erasable());
        }
    }

    use super::*;

    const CORE_ALT0: &str = "@Internal Flash  /0x08000000/20*001Ka,108*001Kg";

    fn segs(s: &str) -> impl Iterator<Item = (u32, u32, i32, u8)> + '_ {
        MemoryLayout::parse(s)
            .unwrap()
            .segments()
            .map(|g| (g.start, g.end, g.page_size, g.memtype))
    }

    #[test]
    fn spark_core_internal_flash() {
        let l = MemoryLayout::parse(CORE_ALT0).unwrap();
        assert_eq!(l.name(), "Internal Flash  ");
        let mut s = segs(CORE_ALT0);
        assert_eq!(s.next(), Some((0x0800_0000, 0x0800_4fff, 1024, 1)));
        assert_eq!(s.next(), Some((0x0800_5000, 0x0801_ffff, 1024, 7)));
        assert_eq!(s.next(), None);
        assert!(l.is_writeable(0x0800_5000, 108 * 1024));
        assert!(!l.is_writeable(0x0800_5000, 108 * 1024 + 1));
        assert_eq!(
            l.check_writeable(0x0800_4fff, 2),
            Err(LayoutError::Access {
                address: 0x0800_4fff,
                access: "writeable"
            })
        );
        assert_eq!(
            l.check_writeable(0x0802_0000, 1),
            Err(LayoutError::Unmapped {
                address: 0x0802_0000
            })
        );
        let mut pages = l.pages_to_erase(0x0800_5001, 2048).unwrap();
        assert_eq!(
            pages.next(),
            Some(Page {
                address: 0x0800_5000,
                size: 1024
            })
        );
        assert_eq!(
            pages.next(),
            Some(Page {
                address: 0x0800_5400,
                size: 1024
            })
        );
        assert_eq!(
            pages.next(),
            Some(Page {
                address: 0x0800_5800,
                size: 1024
            })
        );
        assert_eq!(pages.next(), None);
        assert_eq!(l.pages_to_erase(0x0800_5000, 0).unwrap().count(), 0);
        assert_eq!(
            l.check_writeable(0xffff_ffff, 2),
            Err(LayoutError::RangeOverflow)
        );
        // Found by fuzzing: a count that clamps to 0 makes a segment that wraps to cover all of memory; a range
        // past 4 GiB used to walk it forever.
        let all = MemoryLayout::parse("@x/0x0/-63333190766633190566636*7o./").unwrap();
        let seg = all.segments().next().unwrap();
        assert_eq!(
            (seg.start, seg.end, seg.page_size, seg.memtype),
            (0, 0xffff_ffff, 7, 6)
        );
        assert_eq!(
            all.pages_to_erase(0xffff_ffff, 0xf_ffff).map(|p| p.count()),
            Err(LayoutError::RangeOverflow)
        );
        assert_eq!(
            all.pages_to_erase(0xffff_fff0, 0x10).map(|p| p.count()),
            Ok(3)
        );
    }

    #[test]
    fn mixed_sector_sizes_use_the_segment_page_size() {
        let l = MemoryLayout::parse(
            "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg",
        )
        .unwrap();
        let pages: [Option<Page>; 4] = {
            let mut it = l.pages_to_erase(0x0800_c000, 0x0001_4001).unwrap();
            [it.next(), it.next(), it.next(), it.next()]
        };
        assert_eq!(
            pages,
            [
                Some(Page {
                    address: 0x0800_c000,
                    size: 16384
                }),
                Some(Page {
                    address: 0x0801_0000,
                    size: 65536
                }),
                Some(Page {
                    address: 0x0802_0000,
                    size: 131072
                }),
                None
            ]
        );
    }

    #[test]
    fn rw_segments_need_no_erase() {
        let l = MemoryLayout::parse("@Option Bytes  /0x1FFFC000/01*016 e").unwrap();
        assert_eq!(
            l.warnings().next(),
            Some(LayoutWarning::MultiplierAssumedBytes(b' '))
        );
        assert!(l.is_writeable(0x1fff_c000, 16));
        assert_eq!(l.pages_to_erase(0x1fff_c000, 16).unwrap().count(), 0);
    }

    #[test]
    fn oddities() {
        assert_eq!(
            MemoryLayout::parse("Internal Flash"),
            Err(LayoutError::NoName)
        );
        assert_eq!(MemoryLayout::parse("@/0x0/1*1Kg"), Err(LayoutError::NoName));
        assert_eq!(MemoryLayout::parse(""), Err(LayoutError::NoName));
        assert_eq!(
            MemoryLayout::parse("@Name only"),
            Err(LayoutError::NoSegments)
        );
        // A type letter in the multiplier position.
        let mut s = segs("@X/0x100/2*16g");
        assert_eq!(s.next(), Some((0x100, 0x11f, 16, 7)));
        // Multi-character type: skipped, and the parse cannot resume past it.
        let l = MemoryLayout::parse("@X/0x0/1*1Kg,1*1Kgg,1*1Ka").unwrap();
        assert_eq!(l.segments().count(), 1);
        assert_eq!(
            l.warnings().next(),
            Some(LayoutWarning::TypeUnreadable { segment: 2 })
        );
        // Several regions.
        let mut s = segs("@X/0x0/1*1Ka/0x400/1*2Bg");
        assert_eq!(s.next(), Some((0, 1023, 1024, 1)));
        assert_eq!(s.next(), Some((0x400, 0x401, 2, 7)));
        // Device Feature is always rw.
        let mut s = segs("@Device Feature/0xFFFF0000/01*004 g");
        assert_eq!(s.next(), Some((0xffff_0000, 0xffff_0003, 4, 5)));
        // Signs and overflow as scanf reads them.
        let mut s = segs("@X/0x-1/ +1*4294967297Bg");
        assert_eq!(s.next(), Some((0xffff_ffff, 0xffff_ffff, 1, 7)));
        // No type string: dfu-util advances by the stale %n count of the region ("/0x0/" = 5 bytes), which lands
        // on "3*1Ka" with no comma before it, so the parse ends after the first segment.
        let l = MemoryLayout::parse("@X/0x0/2*1g,3*1Ka").unwrap();
        let mut it = l.segments().map(|g| (g.start, g.end, g.memtype));
        assert_eq!((it.next(), it.next()), (Some((0, 1, 7)), None));
        assert_eq!(
            l.warnings().next(),
            Some(LayoutWarning::MultiplierIsType(b'g'))
        );
        // A NUL ends the string.
        assert_eq!(
            MemoryLayout::parse("@X/0x0/1*1Kg\0,1*1Kg")
                .unwrap()
                .segments()
                .count(),
            1
        );
    }
}
