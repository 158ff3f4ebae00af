//! DFU files: suffix, prefixes, DfuSe containers and memory layouts.
//!
//! [`DfuFile`] is a zero-copy view of a whole file (prefix, firmware, suffix) and carries the operations of
//! dfu-util's `dfu-suffix` and `dfu-prefix` tools ([`DfuFile::add_suffix`], [`DfuFile::remove_suffix`],
//! [`DfuFile::add_prefix`], [`DfuFile::remove_prefix`]), which produce the same bytes and refuse the same inputs.
//!
//! Two ways to open a file:
//!
//! - [`DfuFile::parse`] is strict: a suffix with the right signature but a wrong CRC or length is an error
//!   ([`FileError::Suffix`]), never "no suffix".
//! - [`DfuFile::load`] reproduces dfu-util's `dfu_load_file` under a [`SuffixPolicy`] and [`PrefixPolicy`]: with
//!   an optional suffix a bad CRC makes the file count as suffix-less (the reason is kept in
//!   [`DfuFile::suffix_problem`]), exactly as dfu-util does.

pub mod dfuse;
pub mod layout;
pub mod prefix;
pub mod suffix;

use crate::{InsufficientSize, ensure_len};
use prefix::{Prefix, PrefixError, PrefixKind, PrefixRepr};
use suffix::{SUFFIX_LEN, Suffix, SuffixError, SuffixRepr};

/// Whether a suffix must, may or must not be present (dfu-util's `NEEDS_SUFFIX` / `MAYBE_SUFFIX` / `NO_SUFFIX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuffixPolicy {
    /// A valid suffix is needed (`dfu-suffix -c`, `-D`).
    Required,
    /// A suffix may be there (`dfu-util -D`, `dfu-prefix`).
    Optional,
    /// A valid suffix must not be there (`dfu-suffix -a`).
    Forbidden,
}

/// Whether a prefix must, may or must not be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixPolicy {
    /// A prefix is needed (`dfu-prefix -D`).
    Required,
    /// A prefix may be there.
    Optional,
    /// A prefix must not be there (`dfu-prefix -a`).
    Forbidden,
}

/// Why a file was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The suffix is damaged (strict reading), or its length is unusable (always fatal, as in dfu-util).
    #[error("{0}")]
    Suffix(SuffixError),
    /// A suffix is required and there is none (dfu-util: "Valid DFU suffix needed").
    #[error("valid DFU suffix needed: {0}")]
    SuffixRequired(SuffixError),
    /// A valid suffix is already there (dfu-util: "Please remove existing DFU suffix before adding a new one.").
    #[error("the file already has a DFU suffix")]
    SuffixPresent,
    /// A prefix is required and there is none (dfu-util: "Valid DFU prefix needed").
    #[error("valid DFU prefix needed")]
    PrefixRequired,
    /// A prefix is already there (dfu-util: "A prefix already exists, please delete it first").
    #[error("the file already has a prefix")]
    PrefixPresent,
    /// The prefix is not of the kind asked for (dfu-util: "No prefix of requested type").
    #[error("no prefix of the requested type")]
    WrongPrefixKind,
    /// A prefix signature matched but the prefix does not fit.
    #[error("{0}")]
    Prefix(PrefixError),
}

impl From<SuffixError> for FileError {
    fn from(e: SuffixError) -> Self {
        Self::Suffix(e)
    }
}

impl From<PrefixError> for FileError {
    fn from(e: PrefixError) -> Self {
        Self::Prefix(e)
    }
}

/// A DFU file: optional prefix, firmware, optional suffix. Borrowed, nothing copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfuFile<'a> {
    bytes: &'a [u8],
    suffix: Option<Suffix>,
    suffix_problem: Option<SuffixError>,
    prefix: Option<Prefix>,
    prefix_problem: Option<PrefixError>,
}

impl<'a> DfuFile<'a> {
    /// Opens a file strictly: the suffix may be absent (too short, no signature), but a suffix with a bad CRC or
    /// length is an error; a prefix may be present.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FileError> {
        let file = Self::load(bytes, SuffixPolicy::Optional, PrefixPolicy::Optional)?;
        match file.suffix_problem {
            Some(e @ SuffixError::BadCrc { .. }) => Err(FileError::Suffix(e)),
            _ => Ok(file),
        }
    }

    /// Opens a file as dfu-util's `dfu_load_file` does under the given policies.
    pub fn load(
        bytes: &'a [u8],
        suffix: SuffixPolicy,
        prefix: PrefixPolicy,
    ) -> Result<Self, FileError> {
        let (found, problem) = match Suffix::parse(bytes) {
            Ok(s) => (Some(s), None),
            Err(e) if e.is_dfu_util_soft() => (None, Some(e)),
            Err(e) => return Err(FileError::Suffix(e)),
        };
        match (suffix, found, problem) {
            (SuffixPolicy::Required, None, Some(reason)) => {
                return Err(FileError::SuffixRequired(reason));
            }
            (SuffixPolicy::Forbidden, Some(_), _) => return Err(FileError::SuffixPresent),
            _ => {}
        }
        let suffix_len = found.map_or(0, |s| usize::from(s.length));
        let probed = prefix::probe(bytes, suffix_len);
        let (found_prefix, prefix_problem) = match (prefix, probed) {
            (PrefixPolicy::Required, Ok(Some(p))) => (Some(p), None),
            (PrefixPolicy::Required, _) => return Err(FileError::PrefixRequired),
            (PrefixPolicy::Forbidden, Ok(Some(_)) | Err(_)) => {
                return Err(FileError::PrefixPresent);
            }
            (_, Ok(p)) => (p, None),
            (PrefixPolicy::Optional, Err(e)) => (None, Some(e)),
        };
        Ok(Self {
            bytes,
            suffix: found,
            suffix_problem: problem,
            prefix: found_prefix,
            prefix_problem,
        })
    }

    /// The whole file.
    #[must_use]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The suffix, when the file has a valid one.
    #[must_use]
    pub fn suffix(&self) -> Option<Suffix> {
        self.suffix
    }

    /// Why the file counts as having no suffix, when it does (only [`load`](Self::load) keeps a bad CRC here).
    #[must_use]
    pub fn suffix_problem(&self) -> Option<SuffixError> {
        self.suffix_problem
    }

    /// The prefix, when the file has one.
    #[must_use]
    pub fn prefix(&self) -> Option<Prefix> {
        self.prefix
    }

    /// A prefix signature that matched although the prefix cannot fit. dfu-util reports such a file as
    /// prefixed and then fails to rewrite it; here the file is read as unprefixed and the edits refuse it.
    #[must_use]
    pub fn prefix_problem(&self) -> Option<PrefixError> {
        self.prefix_problem
    }

    /// Opens a file for an edit: dfu-util cannot rewrite a file whose prefix does not fit.
    fn load_for_edit(
        bytes: &'a [u8],
        suffix: SuffixPolicy,
        prefix: PrefixPolicy,
    ) -> Result<Self, FileError> {
        let file = Self::load(bytes, suffix, prefix)?;
        match file.prefix_problem {
            Some(e) => Err(FileError::Prefix(e)),
            None => Ok(file),
        }
    }

    fn suffix_len(&self) -> usize {
        self.suffix.map_or(0, |s| usize::from(s.length))
    }

    fn prefix_len(&self) -> usize {
        self.prefix.map_or(0, |p| p.encoded_len())
    }

    /// The firmware: the bytes between the prefix and the suffix.
    #[must_use]
    pub fn firmware(&self) -> &'a [u8] {
        &self.bytes[self.prefix_len()..self.bytes.len() - self.suffix_len()]
    }

    /// What dfu-util sends in a plain DFU download: everything but the suffix (a prefix is sent too).
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - self.suffix_len()]
    }

    /// The length [`store`](Self::store) writes.
    #[must_use]
    pub fn store_len(&self, suffix: Option<SuffixRepr>, prefix: Option<PrefixRepr>) -> usize {
        prefix.map_or(0, |p| p.encoded_len())
            + self.firmware().len()
            + if suffix.is_some() { SUFFIX_LEN } else { 0 }
    }

    /// Writes the firmware with the given prefix and suffix into `out` (dfu-util's `dfu_store_file`); returns
    /// the length written. Prefix length fields are derived from this file as dfu-util derives them.
    pub fn store(
        &self,
        suffix: Option<SuffixRepr>,
        prefix: Option<PrefixRepr>,
        out: &mut [u8],
    ) -> Result<usize, InsufficientSize> {
        let total = self.store_len(suffix, prefix);
        ensure_len(out, total)?;
        let firmware = self.firmware();
        let mut at = 0;
        if let Some(p) = prefix {
            let basis = match p {
                PrefixRepr::Lmdfu { .. } => firmware.len(),
                PrefixRepr::Lpc => self.bytes.len() - self.suffix_len(),
            };
            at += p.emit(basis as u32, &mut out[at..])?;
        }
        out[at..at + firmware.len()].copy_from_slice(firmware);
        at += firmware.len();
        if let Some(s) = suffix {
            at += SUFFIX_LEN;
            s.emit_in_place(&mut out[..at])?;
        }
        Ok(at)
    }

    fn kept_prefix(&self) -> Option<PrefixRepr> {
        self.prefix.as_ref().map(PrefixRepr::from_prefix)
    }

    fn kept_suffix(&self) -> Option<SuffixRepr> {
        self.suffix.as_ref().map(Suffix::repr)
    }

    /// `dfu-suffix -a`: adds `suffix` to `input`, which must not have a valid one; a prefix is kept (rewritten).
    /// Returns the output length.
    pub fn add_suffix(
        input: &[u8],
        suffix: SuffixRepr,
        out: &mut [u8],
    ) -> Result<usize, EditError> {
        let file = DfuFile::load_for_edit(input, SuffixPolicy::Forbidden, PrefixPolicy::Optional)?;
        Ok(file.store(Some(suffix), file.kept_prefix(), out)?)
    }

    /// `dfu-suffix -D`: removes the suffix, which must be valid; a prefix is kept (rewritten).
    pub fn remove_suffix(input: &[u8], out: &mut [u8]) -> Result<usize, EditError> {
        let file = DfuFile::load_for_edit(input, SuffixPolicy::Required, PrefixPolicy::Optional)?;
        Ok(file.store(None, file.kept_prefix(), out)?)
    }

    /// Replaces the suffix of a file that has a valid one (`dfu-suffix -D` then `-a`).
    pub fn rewrite_suffix(
        input: &[u8],
        suffix: SuffixRepr,
        out: &mut [u8],
    ) -> Result<usize, EditError> {
        let file = DfuFile::load_for_edit(input, SuffixPolicy::Required, PrefixPolicy::Optional)?;
        Ok(file.store(Some(suffix), file.kept_prefix(), out)?)
    }

    /// `dfu-prefix -a`: adds `prefix`; the file must not have one. An existing suffix is kept with a new CRC.
    pub fn add_prefix(
        input: &[u8],
        prefix: PrefixRepr,
        out: &mut [u8],
    ) -> Result<usize, EditError> {
        let file = DfuFile::load_for_edit(input, SuffixPolicy::Optional, PrefixPolicy::Forbidden)?;
        Ok(file.store(file.kept_suffix(), Some(prefix), out)?)
    }

    /// `dfu-prefix -D`: removes the prefix (of kind `kind`, when given). An existing suffix is kept with a new
    /// CRC.
    pub fn remove_prefix(
        input: &[u8],
        kind: Option<PrefixKind>,
        out: &mut [u8],
    ) -> Result<usize, EditError> {
        let file = DfuFile::load_for_edit(input, SuffixPolicy::Optional, PrefixPolicy::Required)?;
        if kind.is_some_and(|k| file.prefix.map(|p| p.kind()) != Some(k)) {
            return Err(FileError::WrongPrefixKind.into());
        }
        Ok(file.store(file.kept_suffix(), None, out)?)
    }

    /// [`add_suffix`](Self::add_suffix) into a new vector.
    #[cfg(feature = "alloc")]
    pub fn add_suffix_to_vec(
        input: &[u8],
        suffix: SuffixRepr,
    ) -> Result<alloc::vec::Vec<u8>, FileError> {
        let file = DfuFile::load_for_edit(input, SuffixPolicy::Forbidden, PrefixPolicy::Optional)?;
        Ok(file.store_to_vec(Some(suffix), file.kept_prefix()))
    }

    /// [`store`](Self::store) into a new vector.
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn store_to_vec(
        &self,
        suffix: Option<SuffixRepr>,
        prefix: Option<PrefixRepr>,
    ) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec![0u8; self.store_len(suffix, prefix)];
        // Sized by store_len, so this cannot fail.
        let _ = self.store(suffix, prefix, &mut out);
        out
    }
}

/// Why an edit ([`DfuFile::add_suffix`] and friends) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The input was refused.
    #[error(transparent)]
    File(#[from] FileError),
    /// The output buffer is too small.
    #[error(transparent)]
    InsufficientSize(#[from] InsufficientSize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw32() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn add_then_remove_round_trips() {
        let mut a = [0u8; 48];
        let n = DfuFile::add_suffix(&raw32(), SuffixRepr::default(), &mut a).unwrap();
        assert_eq!(n, 48);
        let mut b = [0u8; 48];
        assert_eq!(
            DfuFile::add_suffix(&a, SuffixRepr::default(), &mut b),
            Err(FileError::SuffixPresent.into())
        );
        let n = DfuFile::remove_suffix(&a, &mut b).unwrap();
        assert_eq!(b[..n], raw32());
        assert_eq!(
            DfuFile::remove_suffix(&raw32(), &mut b),
            Err(FileError::SuffixRequired(SuffixError::BadSignature).into())
        );
    }

    #[test]
    fn strict_and_lenient_bad_crc() {
        let mut a = [0u8; 48];
        DfuFile::add_suffix(&raw32(), SuffixRepr::default(), &mut a).unwrap();
        a[47] ^= 1;
        assert!(matches!(
            DfuFile::parse(&a),
            Err(FileError::Suffix(SuffixError::BadCrc { .. }))
        ));
        let lenient = DfuFile::load(&a, SuffixPolicy::Optional, PrefixPolicy::Optional).unwrap();
        assert!(lenient.suffix().is_none());
        assert_eq!(
            lenient.payload().len(),
            48,
            "dfu-util sends the damaged suffix as payload"
        );
        // And since it is "suffix-less", dfu-suffix -a happily adds a second one.
        let mut b = [0u8; 64];
        assert_eq!(
            DfuFile::add_suffix(&a, SuffixRepr::default(), &mut b),
            Ok(64)
        );
    }

    #[test]
    fn prefix_then_suffix_then_remove_prefix() {
        let mut a = [0u8; 40];
        DfuFile::add_prefix(&raw32(), PrefixRepr::Lmdfu { address: 0x2000 }, &mut a).unwrap();
        let mut b = [0u8; 56];
        DfuFile::add_suffix(&a, SuffixRepr::for_device(0x1cbe, 0x00ff), &mut b).unwrap();
        let f = DfuFile::parse(&b).unwrap();
        assert_eq!(
            f.prefix(),
            Some(Prefix::Lmdfu {
                address: 0x2000,
                payload_len: 32
            })
        );
        assert_eq!(f.suffix().unwrap().crc, 0xA8D6_95E6);
        assert_eq!(f.firmware(), raw32());
        let mut c = [0u8; 48];
        assert_eq!(
            DfuFile::remove_prefix(&b, Some(PrefixKind::Lpc), &mut c),
            Err(FileError::WrongPrefixKind.into())
        );
        let n = DfuFile::remove_prefix(&b, None, &mut c).unwrap();
        assert_eq!(n, 48);
        assert_eq!(
            DfuFile::parse(&c).unwrap().suffix().unwrap().crc,
            0xAF42_58CD
        );
        assert_eq!(
            DfuFile::add_prefix(&b, PrefixRepr::Lpc, &mut c),
            Err(FileError::PrefixPresent.into())
        );
        assert_eq!(
            DfuFile::remove_prefix(&c, None, &mut a),
            Err(FileError::PrefixRequired.into())
        );
    }
}
