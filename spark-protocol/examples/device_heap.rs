//! The heap the device's RSA handshake takes with the RustCrypto backend (feature `rsa`): the
//! figure a port sizes its allocator by (the `protocol-footprint` binary links a 16 KiB bump
//! arena; a bump allocator never frees, so it needs the *total*, a freeing one the *peak*).
//!
//! It counts every allocation through the exact calls a port makes: load the device's RSA-1024
//! private key and the server's RSA-2048 public key from DER, receive the nonce, send the
//! credentials, open the 384-byte reply. Run on the host, where big-integer limbs are 64-bit
//! instead of the Cortex-M3's 32-bit: the byte counts of the numbers are the same, and the
//! allocator's own rounding differs by a few bytes per block.
//!
//!     cargo run --release -p spark-protocol --example device_heap --features std,rsa

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::handshake::{Nonce, seal_session_key};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{RsaPrivateKey, SessionKey};
use spark_protocol::session::device::{DeviceConfig, DeviceConnection, NoFirmware, RsaHandshake};
use spark_protocol::session::{Connection, Instant};

/// The system allocator, counting.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        TOTAL.fetch_add(layout.size(), Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout as given to us.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Zeroes the counters (the peak restarts from what is live now).
fn reset() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    TOTAL.store(0, Ordering::Relaxed);
    BLOCKS.store(0, Ordering::Relaxed);
}

fn report(step: &str, base: usize) {
    println!(
        "{step:<34} total {:>6} B in {:>4} blocks, peak {:>6} B, live after {:>6} B",
        TOTAL.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
        PEAK.load(Ordering::Relaxed) - base,
        LIVE.load(Ordering::Relaxed) - base,
    );
}

fn main() {
    let mut rng = StdRng::seed_from_u64(1);
    let server = RsaPrivateKey::generate(&mut rng, 2048).expect("server key");
    let device = RsaPrivateKey::generate(&mut rng, 1024).expect("device key");
    let server_priv = RustCryptoPrivateKey::new(&server.as_ref_key()).expect("server");
    let device_pub = RustCryptoPublicKey::new(&device.public_key().as_ref_key()).expect("device");
    let nonce = Nonce::generate(&mut rng);
    let session = SessionKey::generate(&mut rng);
    let mut reply = [0u8; 384];
    seal_session_key(&device_pub, &server_priv, &mut rng, &session, &mut reply).expect("seal");
    let server_pub_key = server.public_key();

    let base = LIVE.load(Ordering::Relaxed);
    let (mut all_total, mut all_blocks) = (0, 0);
    let mut step = |name: &str| {
        report(name, base);
        all_total += TOTAL.load(Ordering::Relaxed);
        all_blocks += BLOCKS.load(Ordering::Relaxed);
    };

    reset();
    let hs = RsaHandshake::new(
        RustCryptoPrivateKey::new(&device.as_ref_key()).expect("device key"),
        RustCryptoPublicKey::new(&server_pub_key.as_ref_key()).expect("server key"),
        StdRng::seed_from_u64(2),
    );
    let mut dev = DeviceConnection::new(Instant::ZERO, DeviceConfig::new([7; 12]), hs, NoFirmware);
    step("load the two keys");
    let mut out = [0u8; 700];
    reset();
    dev.handle_input(Instant::ZERO, &nonce.0).expect("nonce");
    let n = dev.poll_transmit(Instant::ZERO, &mut out).expect("send");
    assert_eq!(n, Some(256));
    step("nonce -> credentials (RSA-2048 pub)");
    reset();
    dev.handle_input(Instant::ZERO, &reply).expect("reply");
    step("open the reply (1024 priv, 2048 pub)");
    assert!(
        dev.poll_transmit(Instant::ZERO, &mut out)
            .expect("hello")
            .is_some()
    );
    let peak_all = PEAK.load(Ordering::Relaxed) - base;
    println!(
        "whole handshake: {all_total} B in {all_blocks} blocks allocated (a bump arena needs \
         this much), peak of the last step {peak_all} B; keys held: {} B",
        LIVE.load(Ordering::Relaxed) - base
    );
    drop(dev);
}
