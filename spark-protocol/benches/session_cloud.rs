//! Cloud-side session benchmarks:
//!
//! * whole cloud-side handshakes per second (draw the nonce, take the credentials, look the key
//!   up, build the 384-byte session key reply) with the OpenSSL and the RustCrypto backends,
//!   each next to the raw RSA work of a handshake (decrypt the credentials, seal the session key)
//!   measured in the same run, and the ratio: what the session adds around the RSA operations;
//! * `size_of::<CloudConnection>()` and the heap bytes one idle established connection holds,
//!   counted by a counting global allocator.
//!
//! The device's side of each handshake is prepared outside the timed part.

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, criterion_group};
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::handshake::{
    Nonce, decrypt_device_credentials, encrypt_device_credentials, seal_session_key,
};
use spark_protocol::crypto::openssl::{OpensslPrivateKey, OpensslPublicKey};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{RsaPrivate, RsaPrivateKey, RsaPublic, SessionKey};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection};
use spark_protocol::session::{Connection, Instant};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the counter is
// only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ID: [u8; 12] = [7; 12];

/// One cloud-side handshake up to the queued 384-byte reply. The device's credential encryption
/// runs inside the loop too (the nonce is only known once the connection draws it); [`raw_rsa`]
/// does the same, so the ratio compares like with like.
fn handshake<S: RsaPrivate, P: RsaPublic + Clone>(
    server: &S,
    server_pub: &impl RsaPublic,
    device_pub: &P,
    seed: u64,
) {
    let mut keys = BTreeMap::new();
    keys.insert(ID.into(), device_pub.clone());
    let mut cloud = CloudConnection::new(
        Instant::ZERO,
        server,
        keys,
        StdRng::seed_from_u64(seed),
        CloudConfig::default(),
    );
    let mut buf = [0u8; 512];
    let n = cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .unwrap();
    let nonce = Nonce(buf[..n].try_into().unwrap());
    let mut creds = [0u8; 256];
    encrypt_device_credentials(
        server_pub,
        &mut StdRng::seed_from_u64(seed),
        &nonce,
        &ID,
        None,
        &mut creds,
    )
    .unwrap();
    cloud.handle_input(Instant::ZERO, &creds).unwrap();
    let n = cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(n, 384);
    black_box(&cloud);
}

/// The cloud's raw RSA work of one handshake, without the session.
fn raw_rsa<S: RsaPrivate, P: RsaPublic>(
    server: &S,
    server_pub: &impl RsaPublic,
    device_pub: &P,
    rng: &mut StdRng,
) {
    let nonce = Nonce::generate(rng);
    let mut creds = [0u8; 256];
    encrypt_device_credentials(server_pub, rng, &nonce, &ID, None, &mut creds).unwrap();
    black_box(decrypt_device_credentials(server, rng, &nonce, &creds).unwrap());
    let session = SessionKey::generate(rng);
    let mut reply = [0u8; 384];
    black_box(seal_session_key(device_pub, server, rng, &session, &mut reply).unwrap());
}

fn per_second(mut f: impl FnMut(), budget: Duration) -> f64 {
    let start = StdInstant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct Keys {
    server: RsaPrivateKey,
    device: RsaPrivateKey,
}

fn keys() -> Keys {
    let mut rng = StdRng::seed_from_u64(1);
    Keys {
        server: RsaPrivateKey::generate(&mut rng, 2048).unwrap(),
        device: RsaPrivateKey::generate(&mut rng, 1024).unwrap(),
    }
}

fn benches(c: &mut Criterion) {
    let k = keys();
    let os = OpensslPrivateKey::new(&k.server.as_ref_key()).unwrap();
    let os_pub = OpensslPublicKey::new(&k.server.public_key().as_ref_key()).unwrap();
    let od_pub = OpensslPublicKey::new(&k.device.public_key().as_ref_key()).unwrap();
    let rs = RustCryptoPrivateKey::new(&k.server.as_ref_key()).unwrap();
    let rs_pub = RustCryptoPublicKey::new(&k.server.public_key().as_ref_key()).unwrap();
    let rd_pub = RustCryptoPublicKey::new(&k.device.public_key().as_ref_key()).unwrap();
    let mut group = c.benchmark_group("cloud_handshake");
    group.sample_size(20);
    group.bench_function("openssl", |b| {
        b.iter(|| handshake(&os, &os_pub, &od_pub, 3))
    });
    group.bench_function("rustcrypto", |b| {
        b.iter(|| handshake(&rs, &rs_pub, &rd_pub, 3))
    });
    group.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();

    let k = keys();
    let os = OpensslPrivateKey::new(&k.server.as_ref_key()).unwrap();
    let os_pub = OpensslPublicKey::new(&k.server.public_key().as_ref_key()).unwrap();
    let od_pub = OpensslPublicKey::new(&k.device.public_key().as_ref_key()).unwrap();
    let rs = RustCryptoPrivateKey::new(&k.server.as_ref_key()).unwrap();
    let rs_pub = RustCryptoPublicKey::new(&k.server.public_key().as_ref_key()).unwrap();
    let rd_pub = RustCryptoPublicKey::new(&k.device.public_key().as_ref_key()).unwrap();
    let budget = Duration::from_secs(2);
    let mut rng = StdRng::seed_from_u64(9);
    // Both loops include the device's credential encryption (RSA-2048 public), so the ratio
    // isolates what the session adds.
    let rows = [
        (
            "openssl",
            per_second(|| handshake(&os, &os_pub, &od_pub, 5), budget),
            per_second(|| raw_rsa(&os, &os_pub, &od_pub, &mut rng), budget),
        ),
        (
            "rustcrypto",
            per_second(|| handshake(&rs, &rs_pub, &rd_pub, 5), budget),
            per_second(|| raw_rsa(&rs, &rs_pub, &rd_pub, &mut rng), budget),
        ),
    ];
    println!("\ncloud handshakes per second (incl. the device's credential encryption)");
    println!(
        "{:<12} {:>12} {:>12} {:>8}",
        "backend", "session", "raw RSA", "ratio"
    );
    for (name, session, raw) in rows {
        println!(
            "{name:<12} {session:>12.1} {raw:>12.1} {:>8.3}",
            session / raw
        );
    }

    // Memory of one idle established connection (OpenSSL backend, by reference).
    type Conn<'a> = CloudConnection<
        &'a OpensslPrivateKey,
        BTreeMap<spark_protocol::DeviceId, OpensslPublicKey>,
        StdRng,
    >;
    println!(
        "\nsize_of::<CloudConnection<&OpensslPrivateKey, BTreeMap<..>, StdRng>>() = {} bytes",
        std::mem::size_of::<Conn<'_>>()
    );
    let before = LIVE.load(Ordering::Relaxed);
    let mut keys_map = BTreeMap::new();
    keys_map.insert(ID.into(), od_pub.clone());
    let after_keys = LIVE.load(Ordering::Relaxed);
    let mut cloud: Conn<'_> = CloudConnection::new(
        Instant::ZERO,
        &os,
        keys_map,
        StdRng::seed_from_u64(4),
        CloudConfig::default(),
    );
    let mut buf = [0u8; 2048];
    let n = cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .unwrap();
    let nonce = Nonce(buf[..n].try_into().unwrap());
    let mut creds = [0u8; 256];
    encrypt_device_credentials(
        &os_pub,
        &mut StdRng::seed_from_u64(4),
        &nonce,
        &ID,
        None,
        &mut creds,
    )
    .unwrap();
    cloud.handle_input(Instant::ZERO, &creds).unwrap();
    let n = cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .unwrap();
    let session = spark_protocol::crypto::handshake::open_session_key(
        &OpensslPrivateKey::new(&k.device.as_ref_key()).unwrap(),
        &os_pub,
        &mut StdRng::seed_from_u64(4),
        &buf[..n],
    )
    .unwrap();
    let mut enc = session.encoder::<spark_protocol::crypto::Aes128Cbc>();
    let mut frame = [0u8; 64];
    let m = enc
        .seal(
            b"\x50\x02\x00\x01\xb1\x68\xff\x00\x06\x00\x01\x00\x00",
            &mut frame,
        )
        .unwrap();
    cloud.handle_input(Instant::ZERO, &frame[..m]).unwrap();
    while cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .is_some()
    {}
    while cloud.poll_event().is_some() {}
    assert!(cloud.is_established());
    let held = LIVE.load(Ordering::Relaxed) - after_keys;
    println!(
        "heap held by one idle established connection: {held} bytes (plus {} bytes for its one-entry key map)",
        after_keys - before
    );
    black_box(&cloud);
}
