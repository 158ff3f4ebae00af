//! DTLS costs, with OpenSSL measured in the same run as the reference:
//!
//! - criterion: a whole handshake (both sides, in memory), and sealing plus opening a 1 KiB record;
//! - the cloud's CPU per full handshake (only the server's calls are timed: `accept` twice, then
//!   the connection's datagram handling and transmits), against the public-key work OpenSSL needs
//!   for the same handshake per `openssl speed ecdsap256 ecdhp256`: one ECDSA sign
//!   (ServerKeyExchange), one verify (the client's CertificateVerify), and two ECDH operations
//!   (the ephemeral key generation is counted as one, the shared secret as the other);
//! - the device's CPU per full handshake, against one sign, one verify and two ECDH as well;
//! - the server's CPU per full handshake over loopback UDP against OpenSSL's own DTLS server:
//!   the library's client runs the same loop (`tests/sequential_handshakes`) against one
//!   `openssl s_server -dtls1_2 -cipher ECDHE-ECDSA-AES128-CCM8 -Verify 1 -CAfile device.crt`
//!   process and then against the library's listener on a thread, as spark-cloud drives it. Each
//!   association is a fresh socket and a full handshake with the cookie exchange (s_server sends
//!   a HelloVerifyRequest on every DTLS accept, without `-listen`), the device's X.509
//!   certificate verified and pinned, one line each way and close_notify. The library's listener
//!   is also timed with raw public keys, the Particle profile, which OpenSSL 3.0 cannot speak.
//!   CPU is utime + stime from `/proc/<pid>/stat` for s_server and `/proc/thread-self/stat` for
//!   the listener thread, in `getconf CLK_TCK` ticks; the OpenSSL loop runs until s_server has
//!   used at least 200 ticks (so one tick is under 0.5 % of the figure), the listener then
//!   serves the same number of clients, and schedstat's nanoseconds are printed beside as a
//!   cross-check. `tests/dtls_sequential.rs` checks that this loop completes K sequential full
//!   handshakes against one s_server with both lines, and stops at a refused one.
//!
//! The ratios are "our time / OpenSSL's time". Against `openssl speed` it is what the pure-Rust
//! P-256 costs next to OpenSSL's assembly; against s_server it is the whole server's work. All
//! figures are CPU time (`openssl speed` divides by user CPU time; ours is the thread's from
//! `/proc/thread-self/schedstat`), so other load on the machine does not skew them much. Needs
//! the `openssl` command for the references, and Linux for `/proc`.
//!
//! Figures (release build, 2-core shared build machine, `cargo bench -p spark-protocol --bench
//! dtls`), two runs:
//!
//! | | run 1 (load 4.4-4.7) | run 2 (load 5.7-7.7) |
//! |---|---:|---:|
//! | `openssl s_server`, CPU per handshake | 0.708 ms (2,840, 201 ticks) | 0.739 ms (2,720, 201 ticks) |
//! | our listener, X.509 as s_server | 0.683 ms, **0.97 x** | 0.680 ms, **0.92 x** |
//! | our listener, raw public keys | 0.669 ms, 0.95 x | 0.688 ms, 0.93 x |
//! | `openssl speed` floor (1 sign, 1 verify, 2 ECDH) | 0.187 ms | 0.187 ms |
//! | our server in memory / the floor | 0.656 ms, 3.51 x | 0.707 ms, 3.78 x |
//! | our client in memory / the floor | 0.653 ms, 3.49 x | 0.620 ms, 3.31 x |
//!
//! So the cloud's whole handshake costs about what OpenSSL 3.0's DTLS server spends on one,
//! although its P-256 arithmetic alone is 3.5 to 3.8 x OpenSSL's: s_server spends some 0.5 ms
//! per handshake beyond its public-key floor (X.509 parsing and verification, OpenSSL 3.0's
//! per-handshake object and provider work, its record and BIO layers; not profiled further).
//! s_server also reads each reply line from its stdin and prints each received line, a few
//! small system calls that our listener does not make. Device flash and RAM are unchanged:
//! 65,884 B of flash, no static RAM, `size_of::<Connection>()` 8,536 B (`dtls-footprint/`).
#[path = "../tests/sequential_handshakes/mod.rs"]
mod sequential_handshakes;

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

/// Server CPU that makes one tick of `/proc/<pid>/stat` under 0.5 % of the figure.
const MIN_SERVER_TICKS: u64 = 200;
/// At least this many handshakes per server, however fast it is.
const MIN_HANDSHAKES: u64 = 300;
/// The OpenSSL loop stops here even if its ticks fall short (the figure then says so).
const MAX_OPENSSL_LOOP: Duration = Duration::from_secs(120);

/// Per-handshake server CPU in ms from ticks, and the schedstat cross-check.
fn per_handshake(cpu: sequential_handshakes::CpuUse, tck: u64, n: u64) -> (f64, f64) {
    let n = n as f64;
    (
        cpu.ticks as f64 * 1e3 / tck as f64 / n,
        cpu.nanos as f64 / 1e6 / n,
    )
}

/// The servers' CPU per full handshake over loopback UDP, the same client driving both:
/// `openssl s_server -dtls1_2` (one process, its utime + stime) and the library's listener
/// (its thread's utime + stime), each with the cookie exchange, X.509 client certificates
/// pinned, one line each way and close_notify per association.
fn compare_servers() -> Result<(), String> {
    use sequential_handshakes::{
        Identities, LibraryServer, OpensslServer, clock_ticks_per_second, run,
    };
    println!("\n== Server CPU per full DTLS handshake over loopback UDP, same client, same run ==");
    let tck = clock_ticks_per_second().ok_or("getconf CLK_TCK failed")?;
    let ids = Identities::new("bench")?;
    let x509 = ids.client_config("device", false);

    let mut openssl = OpensslServer::start(&ids, "device")?;
    let before = openssl.cpu();
    let stat = format!("/proc/{}/stat", openssl.pid());
    let start = StdInstant::now();
    let mut ticks = 0;
    let n = run(&x509, &mut openssl, |done| {
        // Reading /proc costs this (the client's) thread, not the server: every 20th is enough.
        if done % 20 == 0 {
            ticks = sequential_handshakes::cpu_ticks(&stat)
                .map_or(0, |t| t.saturating_sub(before.ticks));
        }
        (done < MIN_HANDSHAKES || ticks < MIN_SERVER_TICKS) && start.elapsed() < MAX_OPENSSL_LOOP
    })?;
    let used = openssl.cpu().since(before);
    let wall = start.elapsed();
    drop(openssl);
    let (theirs, theirs_ns) = per_handshake(used, tck, n);
    println!(
        "  openssl s_server: {n} handshakes in {:.1} s, {} ticks (CLK_TCK {tck}) -> {theirs:.3} ms CPU each (schedstat {theirs_ns:.3} ms)",
        wall.as_secs_f64(),
        used.ticks
    );

    let mut ours = Vec::new();
    for (label, config) in [
        ("X.509, as s_server", x509.clone()),
        (
            "raw public keys, the profile",
            ids.client_config("device", true),
        ),
    ] {
        let mut server = LibraryServer::start(ids.server_config())?;
        let start = StdInstant::now();
        let done = run(&config, &mut server, |done| done < n)?;
        let report = server.stop()?;
        if report.handshakes != done || report.answered != done {
            return Err(format!(
                "{label}: the listener counted {report:?} for {done} handshakes"
            ));
        }
        let (ms, ns) = per_handshake(report.cpu, tck, done);
        println!(
            "  spark-protocol listener ({label}): {done} handshakes in {:.1} s, {} ticks -> {ms:.3} ms CPU each (schedstat {ns:.3} ms)",
            start.elapsed().as_secs_f64(),
            report.cpu.ticks
        );
        ours.push((label, ms));
    }
    for (label, ms) in ours {
        println!(
            "  cloud side ({label}): ratio {:.2} x openssl s_server's CPU per handshake",
            ms / theirs
        );
    }
    Ok(())
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let test_mode = std::env::args().any(|a| a == "--test" || a == "--list");
    if !test_mode && std::env::var_os("SPARK_BENCH_NO_REFERENCE").is_none() {
        compare();
        if let Err(e) = compare_servers() {
            println!("  server comparison failed: {e}");
        }
    }
}
