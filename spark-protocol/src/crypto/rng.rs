//! The RNG a port hands to the handshake: [`HardwareRng`] turns any [`EntropySource`] (a TRNG
//! peripheral, ADC noise, a host's `/dev/urandom` in an emulator) into the `rand_core`
//! [`CryptoRng`](rand_core::CryptoRng) every function here takes, so a port writes only the
//! source.
//!
//! ```
//! use spark_protocol::crypto::rng::HardwareRng;
//! use rand_core::Rng;
//!
//! // A closure is a source: here a stand-in counter, on a device the TRNG's data register.
//! let mut n = 0u8;
//! let mut rng = HardwareRng(|dest: &mut [u8]| {
//!     for b in dest {
//!         n = n.wrapping_add(1);
//!         *b = n;
//!     }
//! });
//! assert_eq!(rng.next_u32(), u32::from_le_bytes([1, 2, 3, 4]));
//! ```

use core::convert::Infallible;

/// Where a device's random bytes come from.
///
/// The handshake has no use for predictable bytes, so a source does not report failure: one
/// whose hardware can fail (a TRNG's seed error) retries until it has good bytes, or stops the
/// device.
pub trait EntropySource {
    /// Fills all of `dest` with random bytes.
    fn fill_entropy(&mut self, dest: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> EntropySource for F {
    fn fill_entropy(&mut self, dest: &mut [u8]) {
        self(dest)
    }
}

/// A `rand_core` cryptographic RNG over an [`EntropySource`]: every byte it gives comes from
/// the source (words are little-endian).
#[derive(Debug, Clone, Default)]
pub struct HardwareRng<S>(pub S);

impl<S: EntropySource> rand_core::TryRng for HardwareRng<S> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut word = [0u8; 4];
        self.0.fill_entropy(&mut word);
        Ok(u32::from_le_bytes(word))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut word = [0u8; 8];
        self.0.fill_entropy(&mut word);
        Ok(u64::from_le_bytes(word))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_entropy(dest);
        Ok(())
    }
}

impl<S: EntropySource> rand_core::TryCryptoRng for HardwareRng<S> {}

#[cfg(test)]
mod tests {
    use rand_core::Rng;

    use super::*;

    #[test]
    fn every_byte_comes_from_the_source() {
        let mut calls = 0;
        let mut buf = [0u8; 3];
        {
            let mut rng = HardwareRng(|dest: &mut [u8]| {
                calls += 1;
                for (i, b) in dest.iter_mut().enumerate() {
                    *b = 0x10 + i as u8;
                }
            });
            assert_eq!(
                rng.next_u64(),
                u64::from_le_bytes([0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17])
            );
            rng.fill_bytes(&mut buf);
        }
        assert_eq!(buf, [0x10, 0x11, 0x12]);
        assert_eq!(calls, 2);
    }

    #[test]
    fn the_handshake_takes_it() {
        use crate::crypto::handshake::Nonce;
        let mut rng = HardwareRng(|dest: &mut [u8]| dest.fill(0x42));
        assert_eq!(Nonce::generate(&mut rng), Nonce([0x42; 40]));
    }
}
