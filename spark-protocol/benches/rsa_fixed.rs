//! The device's handshake work (encrypt the credentials to the RSA-2048 server key, open the
//! cloud's reply: one RSA-1024 private operation and two RSA-2048 public ones) on the heap-free
//! `rsa-fixed` backend, the RustCrypto backend and the OpenSSL backend, in the same run, with
//! the same keys and the same transcript.
//!
//! Criterion prints its statistics; the closing lines give each backend's time per handshake
//! from a timed loop as a ratio to the OpenSSL backend's, measured in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::fixed::{FixedPrivateKey, FixedPublicKey};
use spark_protocol::crypto::handshake::{
    Nonce, encrypt_device_credentials, open_session_key, seal_session_key,
};
use spark_protocol::crypto::openssl::{OpensslPrivateKey, OpensslPublicKey};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{RsaPrivate, RsaPrivateKey, RsaPublic, SessionKey};

const DEVICE_ID: [u8; 12] = [7; 12];

struct Keys {
    server: RsaPrivateKey,
    device: RsaPrivateKey,
}

fn keys() -> Keys {
    let mut rng = StdRng::seed_from_u64(1);
    Keys {
        server: RsaPrivateKey::generate(&mut rng, 2048).expect("server key"),
        device: RsaPrivateKey::generate(&mut rng, 1024).expect("device key"),
    }
}

/// The nonce and the cloud's reply, made once by the OpenSSL backend.
struct Transcript {
    nonce: Nonce,
    reply: [u8; 384],
}

fn transcript(k: &Keys) -> Transcript {
    let mut rng = StdRng::seed_from_u64(2);
    let server = OpensslPrivateKey::new(&k.server.as_ref_key()).unwrap();
    let device = OpensslPublicKey::new(&k.device.public_key().as_ref_key()).unwrap();
    let mut reply = [0u8; 384];
    let session = SessionKey::generate(&mut rng);
    seal_session_key(&device, &server, &mut rng, &session, &mut reply).unwrap();
    Transcript {
        nonce: Nonce::generate(&mut rng),
        reply,
    }
}

/// The device's half of a handshake: credentials out, session key in.
fn device<D: RsaPrivate, S: RsaPublic>(device: &D, server: &S, rng: &mut StdRng, t: &Transcript) {
    let mut credentials = [0u8; 256];
    encrypt_device_credentials(server, rng, &t.nonce, &DEVICE_ID, None, &mut credentials).unwrap();
    black_box(credentials);
    black_box(open_session_key(device, server, rng, &t.reply).unwrap());
}

fn bench_device_handshake(c: &mut Criterion) {
    let k = keys();
    let t = transcript(&k);
    let server_pub = k.server.public_key();
    let (dk, sk) = (k.device.as_ref_key(), server_pub.as_ref_key());
    let fixed = (
        FixedPrivateKey::new(&dk).unwrap(),
        FixedPublicKey::new(&sk).unwrap(),
    );
    let rc = (
        RustCryptoPrivateKey::new(&dk).unwrap(),
        RustCryptoPublicKey::new(&sk).unwrap(),
    );
    let os = (
        OpensslPrivateKey::new(&dk).unwrap(),
        OpensslPublicKey::new(&sk).unwrap(),
    );
    let mut rng = StdRng::seed_from_u64(3);
    let mut group = c.benchmark_group("device handshake");
    group.sample_size(20);
    group.bench_function("rsa-fixed", |b| {
        b.iter(|| device(&fixed.0, &fixed.1, &mut rng, &t))
    });
    group.bench_function("rustcrypto", |b| {
        b.iter(|| device(&rc.0, &rc.1, &mut rng, &t))
    });
    group.bench_function("openssl", |b| b.iter(|| device(&os.0, &os.1, &mut rng, &t)));
    group.finish();
}

criterion_group!(benches, bench_device_handshake);

/// Runs `f` repeatedly for about `budget` and returns the mean time per call.
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < budget {
        f();
        calls += 1;
    }
    start.elapsed() / calls
}

fn compare() {
    let k = keys();
    let t = transcript(&k);
    let server_pub = k.server.public_key();
    let (dk, sk) = (k.device.as_ref_key(), server_pub.as_ref_key());
    let fixed = (
        FixedPrivateKey::new(&dk).unwrap(),
        FixedPublicKey::new(&sk).unwrap(),
    );
    let rc = (
        RustCryptoPrivateKey::new(&dk).unwrap(),
        RustCryptoPublicKey::new(&sk).unwrap(),
    );
    let os = (
        OpensslPrivateKey::new(&dk).unwrap(),
        OpensslPublicKey::new(&sk).unwrap(),
    );
    let mut rng = StdRng::seed_from_u64(4);
    let budget = Duration::from_secs(2);
    let reference = time_per_call(budget, || device(&os.0, &os.1, &mut rng, &t)).as_secs_f64();
    println!(
        "device handshake, reference the OpenSSL backend in this run: {:.3} ms",
        reference * 1e3
    );
    for (name, per) in [
        (
            "rsa-fixed",
            time_per_call(budget, || device(&fixed.0, &fixed.1, &mut rng, &t)),
        ),
        (
            "rustcrypto",
            time_per_call(budget, || device(&rc.0, &rc.1, &mut rng, &t)),
        ),
    ] {
        println!(
            "  {name:>10}: {:.3} ms, {:.2}x the OpenSSL backend's time",
            per.as_secs_f64() * 1e3,
            per.as_secs_f64() / reference
        );
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let test_mode = std::env::args().any(|a| a == "--test" || a == "--list");
    if !test_mode && std::env::var_os("SPARK_BENCH_NO_REFERENCE").is_none() {
        compare();
    }
}
