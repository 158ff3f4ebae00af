//! DTLS costs, with OpenSSL measured in the same run as the reference:
//!
//! - criterion: a whole handshake (both sides, in memory), and sealing plus opening a 1 KiB record;
//! - the cloud's CPU per full handshake (only the server's calls are timed: `accept` twice, then
//!   the connection's datagram handling and transmits), against the public-key work OpenSSL needs
//!   for the same handshake per `openssl speed ecdsap256 ecdhp256`: one ECDSA sign
//!   (ServerKeyExchange), one verify (the client's CertificateVerify), and two ECDH operations
//!   (the ephemeral key generation is counted as one, the shared secret as the other);
//! - the device's CPU per full handshake, against one sign, one verify and two ECDH as well.
//!
//! The ratio is "our time / OpenSSL's time": what the pure-Rust P-256 costs next to OpenSSL's
//! assembly. Both sides are CPU time (`openssl speed` divides by user CPU time; ours is the
//! thread's from `/proc/thread-self/schedstat`), so other load on the machine does not skew
//! it much. Needs the `openssl` command for the reference.

use std::process::Command;
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, Throughput, criterion_group};
use spark_protocol::dtls::{
    Accept, ClientConfig, Connection, PrivateKey, RecordCipher, Server, ServerConfig,
};
use spark_protocol::session::Instant;

fn rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

fn keys() -> (PrivateKey, PrivateKey) {
    (
        PrivateKey::from_scalar(&[0x11; 32]).unwrap(),
        PrivateKey::from_scalar(&[0x22; 32]).unwrap(),
    )
}

/// One full handshake in memory; returns (time in server calls, time in client calls).
fn handshake(server: &mut Server<4>, device: &PrivateKey) -> (Duration, Duration) {
    let now = Instant::ZERO;
    let (mut in_server, mut in_client) = (Duration::ZERO, Duration::ZERO);
    let t = StdInstant::now();
    let config = ClientConfig::new(device.clone(), server.config().key.public_key());
    let mut client = Connection::client(now, config, &mut rng());
    in_client += t.elapsed();
    let mut conn: Option<Connection> = None;
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 256];
    for _ in 0..20 {
        let t = StdInstant::now();
        let mut to_server = Vec::new();
        while let Some(n) = client.poll_transmit(&mut buf).unwrap() {
            to_server.push(buf[..n].to_vec());
        }
        in_client += t.elapsed();
        let mut to_client = Vec::new();
        let t = StdInstant::now();
        for d in &to_server {
            match &mut conn {
                Some(c) => c.handle_datagram(now, d).unwrap(),
                None => match server
                    .accept(now, b"peer", d, &mut rng(), &mut out)
                    .unwrap()
                {
                    Accept::HelloVerifyRequest(m) => to_client.push(out[..m].to_vec()),
                    Accept::Connection(c) => conn = Some(c),
                    Accept::Ignore => {}
                },
            }
        }
        if let Some(c) = &mut conn {
            while let Some(n) = c.poll_transmit(&mut buf).unwrap() {
                to_client.push(buf[..n].to_vec());
            }
        }
        in_server += t.elapsed();
        let t = StdInstant::now();
        for d in &to_client {
            client.handle_datagram(now, d).unwrap();
        }
        in_client += t.elapsed();
        if client.is_connected() && conn.as_ref().is_some_and(Connection::is_connected) {
            return (in_server, in_client);
        }
    }
    panic!("handshake did not finish");
}

fn bench_dtls(c: &mut Criterion) {
    let (device, cloud) = keys();
    let mut server: Server<4> = Server::new(ServerConfig::new(cloud), &mut rng());
    c.bench_function("dtls/full handshake, both sides", |b| {
        b.iter(|| handshake(&mut server, &device))
    });
    let cipher = RecordCipher::new(&[7; 16], [1, 2, 3, 4]);
    let mut group = c.benchmark_group("dtls/record");
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("seal+open 1 KiB", |b| {
        let mut body = vec![0u8; 1024];
        let seq = [0, 1, 0, 0, 0, 0, 0, 9];
        b.iter(|| {
            let tag = cipher.seal(&seq, 23, [0xfe, 0xfd], &mut body);
            cipher
                .open(&seq, &seq, 23, [0xfe, 0xfd], &mut body, &tag)
                .unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_dtls);

/// (sign/s, verify/s, ecdh/s) of `openssl speed ecdsap256 ecdhp256`.
fn openssl_p256_rates() -> Option<(f64, f64, f64)> {
    let out = Command::new("openssl")
        .args(["speed", "-mr", "-seconds", "2", "ecdsap256", "ecdhp256"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ecdsa = text.lines().find_map(|l| {
        let mut f = l.strip_prefix("+F4:")?.split(':').skip(2);
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })?;
    let ecdh = text
        .lines()
        .find_map(|l| l.strip_prefix("+F5:")?.split(':').nth(2)?.parse().ok())?;
    Some((ecdsa.0, ecdsa.1, ecdh))
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (Linux); `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        text.split_whitespace().next()?.parse().ok()?,
    ))
}

fn compare() {
    println!("\n== DTLS handshake CPU against OpenSSL, measured in this run ==");
    let (device, cloud) = keys();
    let mut server: Server<4> = Server::new(ServerConfig::new(cloud), &mut rng());
    let start = StdInstant::now();
    let cpu_start = thread_cpu();
    let (mut s, mut c, mut n) = (Duration::ZERO, Duration::ZERO, 0u32);
    while start.elapsed() < Duration::from_secs(3) {
        let (ds, dc) = handshake(&mut server, &device);
        s += ds;
        c += dc;
        n += 1;
    }
    // `openssl speed` divides by CPU time, so on a shared machine ours must be CPU time too:
    // the thread's CPU time over the loop, split between the sides as their wall-clock shares.
    let wall = (s + c).as_secs_f64();
    let cpu = match (cpu_start, thread_cpu()) {
        (Some(a), Some(b)) => b
            .saturating_sub(a)
            .as_secs_f64()
            .min(start.elapsed().as_secs_f64()),
        _ => wall,
    };
    let per = cpu * 1e3 / f64::from(n);
    let (server_ms, client_ms) = (per * s.as_secs_f64() / wall, per * c.as_secs_f64() / wall);
    println!(
        "  {n} handshakes; CPU {:.3} ms each (wall clock in the calls {:.3} ms)",
        per,
        wall * 1e3 / f64::from(n)
    );
    match openssl_p256_rates() {
        Some((sign, verify, ecdh)) => {
            let reference_ms = (1.0 / sign + 1.0 / verify + 2.0 / ecdh) * 1e3;
            println!(
                "  openssl speed: sign {sign:.0}/s, verify {verify:.0}/s, ecdh {ecdh:.0}/s -> one handshake's public-key work {reference_ms:.3} ms"
            );
            println!(
                "  cloud side: {server_ms:.3} ms per full handshake, ratio {:.2} x OpenSSL's public-key work",
                server_ms / reference_ms
            );
            println!(
                "  device side: {client_ms:.3} ms per full handshake, ratio {:.2} x OpenSSL's public-key work",
                client_ms / reference_ms
            );
        }
        None => println!(
            "  cloud {server_ms:.3} ms, device {client_ms:.3} ms; openssl speed unavailable"
        ),
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
