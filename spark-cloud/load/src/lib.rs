//! The pieces of `spark-load`, the load tool of the local cloud: reading a process's CPU time and memory from
//! `/proc` ([`procfs`]), a minimal HTTP/1.1 client and event-stream counter ([`http`]), the simulated Cores
//! ([`cores`]) and the simulated UDP devices of the shard processes ([`shard`]).

pub mod ceiling;
pub mod cores;
pub mod fanout;
pub mod floor;
pub mod http;
pub mod procfs;
pub mod shard;
pub mod storm;

/// The RSA backend of the simulated Cores (and of the local cloud): OpenSSL with the `openssl` feature.
#[cfg(feature = "openssl")]
pub use spark_protocol::crypto::openssl::{
    OpensslPrivateKey as PrivateKey, OpensslPublicKey as PublicKey,
};
/// The RSA backend of the simulated Cores (and of the local cloud): RustCrypto without the `openssl` feature.
#[cfg(not(feature = "openssl"))]
pub use spark_protocol::crypto::rustcrypto::{
    RustCryptoPrivateKey as PrivateKey, RustCryptoPublicKey as PublicKey,
};

/// The name of the RSA backend in use.
pub const RSA_BACKEND: &str = if cfg!(feature = "openssl") {
    "openssl"
} else {
    "rustcrypto"
};

/// The value at quantile `q` (0.0 to 1.0, nearest rank) of sorted `values`.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The 24-hex id of the `n`th simulated Core: `10ad` then `n` in 20 hex digits.
pub fn core_id(n: u64) -> String {
    format!("10ad{n:020x}")
}

/// The 12 bytes of a 24-hex id.
pub fn id_bytes(hex: &str) -> Option<[u8; 12]> {
    let mut out = [0u8; 12];
    if hex.len() != 24 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile::<u32>(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.99), Some(7));
    }

    #[test]
    fn ids() {
        assert_eq!(core_id(0x1234), "10ad00000000000000001234");
        let b = id_bytes(&core_id(0x1234)).unwrap();
        assert_eq!(b[..2], [0x10, 0xad]);
        assert_eq!(b[10..], [0x12, 0x34]);
        assert_eq!(id_bytes("10ad"), None);
        assert_eq!(id_bytes("zz0000000000000000000000"), None);
    }
}
