//! Service-pack versions as the chip reports them, TI release names, and the mapping between the two.
//!
//! The chip answers `nvmem_read_sp_version` with two bytes `[package_id, build]`, printed `"1.28"`. Versions are
//! ordered by their numbers: as strings `"1.8" > "1.24"`, which is how the original cloud misjudged Cores.
//!
//! ```
//! use spark_cc3000::ServicePack;
//!
//! let reported: ServicePack = "1.8".parse().unwrap();
//! assert!(reported < "1.24".parse().unwrap()); // as numbers, not as strings
//! assert!(reported.needs_update_to(ServicePack::SP_1_28));
//! assert_eq!(ServicePack::from_bytes([1, 28]).to_string(), "1.28");
//! assert!("1.x".parse::<ServicePack>().is_err());
//! ```

use core::cmp::Ordering;
use core::fmt;
use core::str::FromStr;

/// Why a version string does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// Empty input, an empty component, or a component that is not a decimal number.
    #[error("version component {index} is not a decimal number")]
    NotANumber {
        /// Zero-based component index.
        index: usize,
    },
    /// A component above 255.
    #[error("version component {index} is larger than 255")]
    OutOfRange {
        /// Zero-based component index.
        index: usize,
    },
    /// Too few or too many components.
    #[error("version has {found} components, expected {min} to {max}")]
    WrongComponentCount {
        /// Components found.
        found: usize,
        /// Fewest allowed.
        min: usize,
        /// Most allowed.
        max: usize,
    },
}

/// Splits `s` at '.' into at most `N` u8 components.
fn components<const N: usize>(s: &str, min: usize) -> Result<([u8; N], usize), VersionError> {
    let mut out = [0u8; N];
    let mut count = 0;
    for (index, part) in s.split('.').enumerate() {
        if index >= N {
            return Err(VersionError::WrongComponentCount {
                found: s.split('.').count(),
                min,
                max: N,
            });
        }
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VersionError::NotANumber { index });
        }
        // At most 3 significant digits fit; anything longer (after leading zeros) is out of range.
        let digits = part.trim_start_matches('0');
        if digits.len() > 3 {
            return Err(VersionError::OutOfRange { index });
        }
        let value = digits
            .bytes()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
        out[index] = u8::try_from(value).map_err(|_| VersionError::OutOfRange { index })?;
        count += 1;
    }
    if count < min {
        return Err(VersionError::WrongComponentCount {
            found: count,
            min,
            max: N,
        });
    }
    Ok((out, count))
}

/// A service-pack version as the chip reports it: `[package_id, build]`, shown `"1.28"`.
///
/// Ordering compares the package id, then the build, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePack {
    /// The package id (1 for every published service pack).
    pub package_id: u8,
    /// The package build number (24, 26, 28, 32, ...).
    pub build: u8,
}

impl ServicePack {
    /// SP 1.24 (TI release 1.11.1), the version Spark's first programmer burnt.
    pub const SP_1_24: ServicePack = ServicePack::new(1, 24);
    /// SP 1.28 (TI release 1.13.7), the `deep_update_2014_06` target.
    pub const SP_1_28: ServicePack = ServicePack::new(1, 28);
    /// SP 1.32 (TI release 1.14), the last published service pack.
    pub const SP_1_32: ServicePack = ServicePack::new(1, 32);

    /// A version from its two numbers.
    pub const fn new(package_id: u8, build: u8) -> Self {
        ServicePack { package_id, build }
    }

    /// From the two bytes `nvmem_read_sp_version` fills in.
    pub const fn from_bytes(bytes: [u8; 2]) -> Self {
        ServicePack::new(bytes[0], bytes[1])
    }

    /// The two bytes as the chip reports them.
    pub const fn to_bytes(self) -> [u8; 2] {
        [self.package_id, self.build]
    }

    /// The TI release package that ships this service pack, where known.
    pub fn ti_release(self) -> Option<TiRelease> {
        RELEASES.iter().find(|(_, sp)| *sp == self).map(|(r, _)| *r)
    }

    /// Whether a chip reporting `self` needs the deep update to reach `target` (numeric comparison).
    pub fn needs_update_to(self, target: ServicePack) -> bool {
        self < target
    }
}

impl fmt::Display for ServicePack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.package_id, self.build)
    }
}

impl FromStr for ServicePack {
    type Err = VersionError;

    /// Parses `"1.28"` (two decimal components, each 0..=255; surrounding whitespace is ignored).
    fn from_str(s: &str) -> Result<Self, VersionError> {
        let (parts, _) = components::<2>(s.trim(), 2)?;
        Ok(ServicePack::new(parts[0], parts[1]))
    }
}

/// Whether a Core whose `spark/cc3000-patch-version` event (or `cc3000_patch_version` field) says `reported` needs
/// the deep update to `target`.
///
/// An unparsable report (an empty string, garbage after a failed patch) is not evidence of a patched chip, so it
/// answers `true`, as does any version numerically below `target`.
pub fn needs_deep_update(reported: &str, target: ServicePack) -> bool {
    match reported.parse::<ServicePack>() {
        Ok(sp) => sp.needs_update_to(target),
        Err(_) => true,
    }
}

/// A TI release package name: two to four numbers (`"1.11.1"`, `"1.13.7"`, `"1.7.2.2"`), ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TiRelease {
    parts: [u8; 4],
    len: u8,
}

impl TiRelease {
    /// A release from its components; panics in const context if `parts` is not 2 to 4 long.
    pub const fn new(parts: &[u8]) -> Self {
        assert!(parts.len() >= 2 && parts.len() <= 4);
        let mut out = [0u8; 4];
        let mut i = 0;
        while i < parts.len() {
            out[i] = parts[i];
            i += 1;
        }
        TiRelease {
            parts: out,
            len: parts.len() as u8,
        }
    }

    /// The components.
    pub fn parts(&self) -> &[u8] {
        &self.parts[..usize::from(self.len)]
    }

    /// The service pack the chip reports after this release is burnt, where known.
    ///
    /// A release named with fewer components than the table's entry matches it when it is a prefix of exactly one
    /// entry (`"1.13"` finds `"1.13.7"`; `"1.10"` is itself an entry).
    pub fn service_pack(&self) -> Option<ServicePack> {
        if let Some((_, sp)) = RELEASES.iter().find(|(r, _)| r == self) {
            return Some(*sp);
        }
        let mut found = RELEASES
            .iter()
            .filter(|(r, _)| r.parts().starts_with(self.parts()));
        match (found.next(), found.next()) {
            (Some((_, sp)), None) => Some(*sp),
            _ => None,
        }
    }
}

impl Ord for TiRelease {
    fn cmp(&self, other: &Self) -> Ordering {
        // Missing components count as 0, then the shorter name first: 1.13 < 1.13.0 < 1.13.7.
        self.parts.cmp(&other.parts).then(self.len.cmp(&other.len))
    }
}

impl PartialOrd for TiRelease {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for TiRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts().iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl FromStr for TiRelease {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, VersionError> {
        let (parts, len) = components::<4>(s.trim(), 2)?;
        Ok(TiRelease::new(&parts[..len]))
    }
}

/// TI release packages and the service pack each makes the chip report, oldest first.
///
/// From TI's and the community's release tables; the reported "1.29" seen on some Cores matches no public release
/// and is deliberately absent.
pub static RELEASES: [(TiRelease, ServicePack); 10] = [
    (TiRelease::new(&[1, 7, 2, 2]), ServicePack::new(1, 5)),
    (TiRelease::new(&[1, 9]), ServicePack::new(1, 7)),
    (TiRelease::new(&[1, 10]), ServicePack::new(1, 8)),
    (TiRelease::new(&[1, 10, 1]), ServicePack::new(1, 10)),
    (TiRelease::new(&[1, 10, 2]), ServicePack::new(1, 14)),
    (TiRelease::new(&[1, 11]), ServicePack::new(1, 19)),
    (TiRelease::new(&[1, 11, 1]), ServicePack::new(1, 24)),
    (TiRelease::new(&[1, 12]), ServicePack::new(1, 26)),
    (TiRelease::new(&[1, 13, 7]), ServicePack::new(1, 28)),
    (TiRelease::new(&[1, 14]), ServicePack::new(1, 32)),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn numeric_not_string_order() {
        let a: ServicePack = "1.8".parse().unwrap();
        let b: ServicePack = "1.24".parse().unwrap();
        assert!("1.8" > "1.24", "the string order the old cloud used");
        assert!(a < b);
        assert!(needs_deep_update("1.8", ServicePack::SP_1_28));
        assert!(needs_deep_update("1.24", ServicePack::SP_1_28));
        assert!(!needs_deep_update("1.28", ServicePack::SP_1_28));
        assert!(!needs_deep_update("1.29", ServicePack::SP_1_28));
        assert!(!needs_deep_update("1.32", ServicePack::SP_1_28));
        assert!(needs_deep_update("0.0", ServicePack::SP_1_28));
        assert!(needs_deep_update("", ServicePack::SP_1_28));
        assert!(needs_deep_update("garbage", ServicePack::SP_1_28));
        assert!(ServicePack::new(2, 0) > ServicePack::new(1, 255));
    }

    #[test]
    fn parse_and_display() {
        assert_eq!("1.28".parse(), Ok(ServicePack::new(1, 28)));
        assert_eq!(" 1.032 ".parse(), Ok(ServicePack::new(1, 32)));
        assert_eq!(ServicePack::new(1, 28).to_string(), "1.28");
        assert_eq!(
            "1".parse::<ServicePack>(),
            Err(VersionError::WrongComponentCount {
                found: 1,
                min: 2,
                max: 2
            })
        );
        assert_eq!(
            "1.2.3".parse::<ServicePack>(),
            Err(VersionError::WrongComponentCount {
                found: 3,
                min: 2,
                max: 2
            })
        );
        assert_eq!(
            "1.256".parse::<ServicePack>(),
            Err(VersionError::OutOfRange { index: 1 })
        );
        assert_eq!(
            "1.99999999999".parse::<ServicePack>(),
            Err(VersionError::OutOfRange { index: 1 })
        );
        assert_eq!(
            "1.x".parse::<ServicePack>(),
            Err(VersionError::NotANumber { index: 1 })
        );
        assert_eq!(
            "1.".parse::<ServicePack>(),
            Err(VersionError::NotANumber { index: 1 })
        );
        assert_eq!(
            "-1.2".parse::<ServicePack>(),
            Err(VersionError::NotANumber { index: 0 })
        );
        assert_eq!(ServicePack::from_bytes([1, 28]).to_bytes(), [1, 28]);
    }

    #[test]
    fn release_mapping() {
        let r: TiRelease = "1.13.7".parse().unwrap();
        assert_eq!(r.to_string(), "1.13.7");
        assert_eq!(r.service_pack(), Some(ServicePack::SP_1_28));
        assert_eq!(
            "1.13".parse::<TiRelease>().unwrap().service_pack(),
            Some(ServicePack::SP_1_28)
        );
        assert_eq!(
            "1.11.1".parse::<TiRelease>().unwrap().service_pack(),
            Some(ServicePack::SP_1_24)
        );
        assert_eq!(
            "1.11".parse::<TiRelease>().unwrap().service_pack(),
            Some(ServicePack::new(1, 19))
        );
        assert_eq!(
            "1.14".parse::<TiRelease>().unwrap().service_pack(),
            Some(ServicePack::SP_1_32)
        );
        assert_eq!("1.15".parse::<TiRelease>().unwrap().service_pack(), None);
        assert_eq!(
            ServicePack::SP_1_32.ti_release().unwrap().to_string(),
            "1.14"
        );
        assert_eq!(ServicePack::new(1, 29).ti_release(), None);
        let t = |s: &str| s.parse::<TiRelease>().unwrap();
        assert!(t("1.9") < t("1.10"));
        assert!(t("1.10") < t("1.10.1"));
        assert!(t("1.13") < t("1.13.7"));
        assert!(t("1.7.2.2") < t("1.9"));
        // the table is in release order and maps to increasing service packs
        for w in RELEASES.windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1);
        }
    }
}
