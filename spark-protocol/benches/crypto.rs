//! Crypto layer benchmarks, with OpenSSL measured in the same run as the reference:
//!
//! * framing seal + open throughput for 16 B, 256 B and 1 KiB messages, against
//!   `openssl speed -evp aes-128-cbc` at the same sizes;
//! * the cloud's handshake work (decrypt the device credentials, seal the session key: two
//!   RSA-2048 private operations and one RSA-1024 public one) per backend, against two private
//!   operations of `openssl speed rsa2048`;
//! * the device's handshake work (encrypt the credentials, open the session key: one RSA-1024
//!   private operation and two RSA-2048 public ones) per backend, against `openssl speed rsa1024`
//!   (one private operation) plus two public operations of `openssl speed rsa2048`.
//!
//! Criterion prints its own statistics; the closing table repeats each figure from a timed loop
//! next to OpenSSL's and gives the ratio. Needs the `openssl` command.
//!
//! AES-NI: the `aes` crate detects it at run time; no `RUSTFLAGS` are needed.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::framing::{FrameDecoder, FrameEncoder, sealed_len};
use spark_protocol::crypto::handshake::{
    Nonce, decrypt_device_credentials, encrypt_device_credentials, open_session_key,
    seal_session_key,
};
use spark_protocol::crypto::openssl::{OpensslAes128Cbc, OpensslPrivateKey, OpensslPublicKey};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{
    Aes128Cbc, RsaPrivate, RsaPrivateKey, RsaPublic, SessionCipher, SessionKey,
};

const SIZES: [usize; 3] = [16, 256, 1024];
const DEVICE_ID: [u8; 12] = [7; 12];

/// One message sealed and opened: the work a frame costs its two ends.
struct Framing<C: SessionCipher> {
    enc: FrameEncoder<C>,
    dec: FrameDecoder<C, Vec<u8>>,
    wire: Vec<u8>,
    out: Vec<u8>,
}

impl<C: SessionCipher> Framing<C> {
    fn new() -> Self {
        let session = SessionKey::from_bytes([0x5a; 40]);
        Framing {
            enc: session.encoder(),
            dec: session.decoder(vec![0u8; 2048]),
            wire: vec![0u8; 2048],
            out: vec![0u8; 2048],
        }
    }

    fn round(&mut self, message: &[u8]) {
        let n = self.enc.seal(message, &mut self.wire).expect("seal");
        let d = self
            .dec
            .decode(&self.wire[..n], &mut self.out)
            .expect("open");
        assert_eq!(d.message, Some(message.len()));
    }
}

struct Backends<SPub, SPriv, DPub, DPriv> {
    server_pub: SPub,
    server_priv: SPriv,
    device_pub: DPub,
    device_priv: DPriv,
}

fn keys() -> (RsaPrivateKey, RsaPrivateKey) {
    let mut rng = StdRng::seed_from_u64(1);
    let server = RsaPrivateKey::generate(&mut rng, 2048).expect("server key");
    let device = RsaPrivateKey::generate(&mut rng, 1024).expect("device key");
    (server, device)
}

fn rustcrypto(
    server: &RsaPrivateKey,
    device: &RsaPrivateKey,
) -> Backends<RustCryptoPublicKey, RustCryptoPrivateKey, RustCryptoPublicKey, RustCryptoPrivateKey>
{
    Backends {
        server_pub: RustCryptoPublicKey::new(&server.public_key().as_ref_key()).unwrap(),
        server_priv: RustCryptoPrivateKey::new(&server.as_ref_key()).unwrap(),
        device_pub: RustCryptoPublicKey::new(&device.public_key().as_ref_key()).unwrap(),
        device_priv: RustCryptoPrivateKey::new(&device.as_ref_key()).unwrap(),
    }
}

fn openssl(
    server: &RsaPrivateKey,
    device: &RsaPrivateKey,
) -> Backends<OpensslPublicKey, OpensslPrivateKey, OpensslPublicKey, OpensslPrivateKey> {
    Backends {
        server_pub: OpensslPublicKey::new(&server.public_key().as_ref_key()).unwrap(),
        server_priv: OpensslPrivateKey::new(&server.as_ref_key()).unwrap(),
        device_pub: OpensslPublicKey::new(&device.public_key().as_ref_key()).unwrap(),
        device_priv: OpensslPrivateKey::new(&device.as_ref_key()).unwrap(),
    }
}

/// The device's credentials and the cloud's reply, made once so each side can be timed alone.
struct Transcript {
    nonce: Nonce,
    credentials: [u8; 256],
    reply: [u8; 384],
}

impl<SPub: RsaPublic, SPriv: RsaPrivate, DPub: RsaPublic, DPriv: RsaPrivate>
    Backends<SPub, SPriv, DPub, DPriv>
{
    fn transcript(&self, rng: &mut StdRng) -> Transcript {
        let nonce = Nonce::generate(rng);
        let mut credentials = [0u8; 256];
        encrypt_device_credentials(
            &self.server_pub,
            rng,
            &nonce,
            &DEVICE_ID,
            None,
            &mut credentials,
        )
        .unwrap();
        let mut reply = [0u8; 384];
        let session = SessionKey::generate(rng);
        seal_session_key(
            &self.device_pub,
            &self.server_priv,
            rng,
            &session,
            &mut reply,
        )
        .unwrap();
        Transcript {
            nonce,
            credentials,
            reply,
        }
    }

    /// The cloud: check the device's credentials, then seal a session key for it.
    fn cloud(&self, rng: &mut StdRng, t: &Transcript) {
        let creds =
            decrypt_device_credentials(&self.server_priv, rng, &t.nonce, &t.credentials).unwrap();
        black_box(creds);
        let mut reply = [0u8; 384];
        let session = SessionKey::generate(rng);
        seal_session_key(
            &self.device_pub,
            &self.server_priv,
            rng,
            &session,
            &mut reply,
        )
        .unwrap();
        black_box(reply);
    }

    /// The device: encrypt its credentials, then open and verify the cloud's reply.
    fn device(&self, rng: &mut StdRng, t: &Transcript) {
        let mut credentials = [0u8; 256];
        encrypt_device_credentials(
            &self.server_pub,
            rng,
            &t.nonce,
            &DEVICE_ID,
            None,
            &mut credentials,
        )
        .unwrap();
        black_box(credentials);
        black_box(open_session_key(&self.device_priv, &self.server_pub, rng, &t.reply).unwrap());
    }
}

fn bench_framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing seal+open");
    for size in SIZES {
        let message = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        let mut rc = Framing::<Aes128Cbc>::new();
        group.bench_function(format!("aes crate/{size}"), |b| {
            b.iter(|| rc.round(black_box(&message)))
        });
        let mut os = Framing::<OpensslAes128Cbc>::new();
        group.bench_function(format!("openssl/{size}"), |b| {
            b.iter(|| os.round(black_box(&message)))
        });
    }
    group.finish();
}

fn bench_handshake(c: &mut Criterion) {
    let (server, device) = keys();
    let rc = rustcrypto(&server, &device);
    let os = openssl(&server, &device);
    let mut rng = StdRng::seed_from_u64(2);
    let t_rc = rc.transcript(&mut rng);
    let t_os = os.transcript(&mut rng);
    let mut group = c.benchmark_group("handshake");
    group.sample_size(10);
    group.bench_function("cloud/rustcrypto", |b| b.iter(|| rc.cloud(&mut rng, &t_rc)));
    group.bench_function("cloud/openssl", |b| b.iter(|| os.cloud(&mut rng, &t_os)));
    group.bench_function("device/rustcrypto", |b| {
        b.iter(|| rc.device(&mut rng, &t_rc))
    });
    group.bench_function("device/openssl", |b| b.iter(|| os.device(&mut rng, &t_os)));
    group.finish();
}

criterion_group!(benches, bench_framing, bench_handshake);

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

fn openssl_speed(args: &[&str]) -> Option<String> {
    let out = Command::new("openssl")
        .arg("speed")
        .arg("-mr")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Bytes per second of `openssl speed -evp aes-128-cbc` for one message size.
fn openssl_aes_rate(size: usize) -> Option<f64> {
    let text = openssl_speed(&[
        "-seconds",
        "2",
        "-bytes",
        &size.to_string(),
        "-evp",
        "aes-128-cbc",
    ])?;
    text.lines()
        .find_map(|l| l.strip_prefix("+F:")?.rsplit(':').next()?.parse().ok())
}

/// (private operations per second, public operations per second) of `openssl speed rsaN`.
fn openssl_rsa_rates(bits: u32) -> Option<(f64, f64)> {
    let text = openssl_speed(&["-seconds", "2", &format!("rsa{bits}")])?;
    text.lines().find_map(|l| {
        let mut f = l.strip_prefix("+F2:")?.split(':').skip(2);
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

fn compare() {
    println!("\n== against OpenSSL, measured in this run ==");
    let budget = Duration::from_secs(2);
    println!("framing seal+open (aes crate) vs `openssl speed -evp aes-128-cbc` (encrypt only):");
    for size in SIZES {
        let message = vec![0xa5u8; size];
        let mut rc = Framing::<Aes128Cbc>::new();
        let per = time_per_call(budget, || rc.round(black_box(&message)));
        let ours = size as f64 / per.as_secs_f64();
        match openssl_aes_rate(size) {
            Some(theirs) => println!(
                "  {size:>5} B: ours {:>8.1} MB/s ({:.0} ns/message, {} B on the wire), openssl {:>8.1} MB/s, ratio {:.2}",
                ours / 1e6,
                per.as_nanos(),
                sealed_len(size),
                theirs / 1e6,
                ours / theirs
            ),
            None => println!(
                "  {size:>5} B: ours {:.1} MB/s; openssl speed unavailable",
                ours / 1e6
            ),
        }
    }

    let (server, device) = keys();
    let rc = rustcrypto(&server, &device);
    let os = openssl(&server, &device);
    let mut rng = StdRng::seed_from_u64(3);
    let t_rc = rc.transcript(&mut rng);
    let t_os = os.transcript(&mut rng);
    let rsa2048 = openssl_rsa_rates(2048);
    let rsa1024 = openssl_rsa_rates(1024);
    if let Some((sign, _)) = rsa2048 {
        let reference = 2.0 / sign;
        println!(
            "cloud handshake vs two RSA-2048 private operations of `openssl speed rsa2048` ({:.3} ms):",
            reference * 1e3
        );
        for (name, per) in [
            (
                "rustcrypto",
                time_per_call(budget, || rc.cloud(&mut rng, &t_rc)),
            ),
            (
                "openssl",
                time_per_call(budget, || os.cloud(&mut rng, &t_os)),
            ),
        ] {
            println!(
                "  {name:>10}: {:.3} ms, {:.2}x the OpenSSL reference ({:.2} of its rate)",
                per.as_secs_f64() * 1e3,
                per.as_secs_f64() / reference,
                reference / per.as_secs_f64()
            );
        }
    }
    if let (Some((sign1024, _)), Some((_, verify2048))) = (rsa1024, rsa2048) {
        let reference = 1.0 / sign1024 + 2.0 / verify2048;
        println!(
            "device handshake vs one RSA-1024 private operation of `openssl speed rsa1024` ({:.3} ms) + two RSA-2048 public ({:.3} ms):",
            1e3 / sign1024,
            2e3 / verify2048
        );
        for (name, per) in [
            (
                "rustcrypto",
                time_per_call(budget, || rc.device(&mut rng, &t_rc)),
            ),
            (
                "openssl",
                time_per_call(budget, || os.device(&mut rng, &t_os)),
            ),
        ] {
            println!(
                "  {name:>10}: {:.3} ms, {:.2}x the OpenSSL reference ({:.2} of its rate)",
                per.as_secs_f64() * 1e3,
                per.as_secs_f64() / reference,
                reference / per.as_secs_f64()
            );
        }
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs this binary in test mode: skip the long comparison there, and
    // when SPARK_BENCH_NO_REFERENCE is set (to A/B two builds of the criterion part alone).
    let test_mode = std::env::args().any(|a| a == "--test" || a == "--list");
    if !test_mode && std::env::var_os("SPARK_BENCH_NO_REFERENCE").is_none() {
        compare();
    }
}
