//! The session's notion of time: milliseconds from an origin the caller picks.
//!
//! ```
//! use core::time::Duration;
//! use spark_protocol::session::Instant;
//!
//! let boot = Instant::ZERO;
//! let now = boot + Duration::from_millis(15_250);
//! assert_eq!(now, Instant::from_millis(15_250));
//! assert!(now > Instant::from_secs(15));
//! assert_eq!(now.saturating_duration_since(Instant::from_secs(15)), Duration::from_millis(250));
//! // Time never runs backwards here: an earlier instant is zero time away.
//! assert_eq!(boot.saturating_duration_since(now), Duration::ZERO);
//! ```

use core::ops::{Add, AddAssign};
use core::time::Duration;

/// A point in time, in milliseconds since an origin of the caller's choosing (boot, the start of
/// a test, `std::time::Instant` at driver start). Only differences between instants matter.
///
/// Millisecond resolution is what every timer of the protocol needs (the shortest is the Core's
/// 3 s missed-chunk interval), and a `u64` of milliseconds does not wrap in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    millis: u64,
}

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant { millis: 0 };

    /// The instant `millis` milliseconds after the origin.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Self {
        Instant { millis }
    }

    /// The instant `secs` seconds after the origin.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            millis: secs.saturating_mul(1000),
        }
    }

    /// Milliseconds since the origin.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The time from `earlier` to `self`, or zero when `earlier` is later.
    #[must_use]
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.millis.saturating_sub(earlier.millis))
    }

    /// `self + duration`, saturating at the end of time.
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Instant {
        let add = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Instant {
            millis: self.millis.saturating_add(add),
        }
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating: an instant never wraps.
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = self.saturating_add(rhs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Instant::from_secs(15);
        assert_eq!(t.as_millis(), 15_000);
        assert_eq!((t + Duration::from_millis(250)).as_millis(), 15_250);
        assert_eq!(
            Instant::from_millis(u64::MAX - 1) + Duration::from_secs(1),
            Instant::from_millis(u64::MAX)
        );
        assert_eq!(Instant::ZERO.saturating_duration_since(t), Duration::ZERO);
        assert_eq!(
            t.saturating_duration_since(Instant::from_secs(5)),
            Duration::from_secs(10)
        );
        let mut u = Instant::ZERO;
        u += Duration::from_millis(3);
        assert!(u > Instant::ZERO);
    }
}
