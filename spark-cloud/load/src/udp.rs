//! The UDP phase (`--udp N`): N UDP devices (DTLS 1.2, P-256, CoAP) held by one cloud process on its one UDP
//! socket, run by shard processes of this tool (`spark_load::shard`), each with at most `--udp-per-shard` sockets
//! on a loopback source address of its own. It measures what issue 18's first goal asks at N devices: the cloud's
//! RSS per connected idle device, handshakes per second and the cloud's CPU per DTLS handshake (against the P-256
//! work of one server handshake timed in this process), and function-call round trips through the REST API.
//!
//! The devices' keys are registered by writing the cloud's `udp_devices.json` before it starts (the provisioning
//! route now appends a journal line per device, one fsync each, still a hundred seconds or more for 100,000).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand_core::Rng as _;
use serde_json::json;
use spark_load::cores::{FUNCTION, FUNCTION_RESULT};
use spark_load::http::Client;
use spark_load::procfs;
use spark_load::quantile;
use spark_load::shard::{ShardMsg, ShardSpec, device_key, udp_id};
use spark_protocol::dtls::{PrivateKey, PublicKey};
use tokio::sync::mpsc;

use super::{Args, Report, Target, address, address_line, login_as, ms, progress, sample, settle};

/// The shards and the lines they send, tagged with the shard's number.
struct Shards {
    children: Vec<Child>,
    lines: mpsc::UnboundedReceiver<(usize, Result<ShardMsg, String>)>,
}

impl Drop for Shards {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Closing standard input ends a shard; kill it if it lingers.
            drop(child.stdin.take());
        }
        std::thread::sleep(Duration::from_millis(200));
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `udp_devices.json` for devices `0..count` owned by `owner` into `dir`, the public keys computed on the
/// machine's CPUs.
fn register_devices(
    dir: &std::path::Path,
    seed: &[u8; 16],
    count: u64,
    owner: &str,
) -> Result<(), String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let per = count.div_ceil(threads.max(1));
    let parts: Vec<Result<Vec<(String, String)>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(count))
                        .map(|n| {
                            let key = device_key(seed, n).ok_or("a device key is out of range")?;
                            Ok((udp_id(n), key.public_key().to_spki_pem()))
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a key thread panicked".into()))
            })
            .collect()
    });
    let mut devices = serde_json::Map::new();
    for part in parts {
        for (id, pem) in part? {
            devices.insert(id, json!({"public_key": pem, "owner": owner}));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let text = serde_json::to_vec(&json!({ "devices": devices })).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("udp_devices.json"), text).map_err(|e| e.to_string())
}

/// Starts the `spark-cloud` binary on `dir` with its UDP listener; returns the target and the UDP address.
fn spawn_udp_cloud(args: &Args, dir: &std::path::Path) -> Result<(Target, SocketAddr), String> {
    let bin = match &args.cloud_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this executable: {e}"))?
            .with_file_name("spark-cloud"),
    };
    let mut child = std::process::Command::new(&bin)
        .args(["--dir".as_ref(), dir.as_os_str()])
        .args([
            "--http",
            "127.0.0.1:0",
            "--device",
            "127.0.0.1:0",
            "--udp-listen",
            "127.0.0.1:0",
        ])
        .args(["--key-bits", "1024"])
        .args(["--max-devices".to_owned(), (args.udp + 1024).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let mut target = Target {
        device: SocketAddr::from(([127, 0, 0, 1], 0)),
        api: SocketAddr::from(([127, 0, 0, 1], 0)),
        dir: dir.to_owned(),
        pid: Some(pid),
        child: Some(child),
        temp: Some(dir.to_owned()),
    };
    let addresses = address_line(stdout)?;
    target.device = address(&addresses, "device")?;
    target.api = address(&addresses, "http")?;
    let udp = address(&addresses, "udp")?;
    Ok((target, udp))
}

/// Starts `shards` shard processes of this executable for devices `0..count`.
fn spawn_shards(
    count: u64,
    shards: u64,
    concurrency: u64,
    cloud: SocketAddr,
    seed: [u8; 16],
    server_key: PublicKey,
) -> Result<Shards, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let (tx, lines) = mpsc::unbounded_channel();
    let mut children = Vec::new();
    let per = count.div_ceil(shards);
    for s in 0..shards {
        let first = s * per;
        let spec = ShardSpec {
            cloud,
            // 127.0.0.10, 127.0.0.11, ...: each shard's ports on an address of its own.
            source: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + u8::try_from(s).unwrap_or(0))),
            first,
            count: per.min(count - first),
            concurrency: concurrency.div_ceil(shards).max(1),
            seed,
            server_key,
        };
        let mut child = std::process::Command::new(&exe)
            .args(["--udp-shard".to_owned(), spec.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a shard: {e}"))?;
        let stdout = child.stdout.take().ok_or("a shard without stdout")?;
        let tx = tx.clone();
        let index = usize::try_from(s).unwrap_or(0);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let msg = match line {
                    Ok(l) => ShardMsg::parse(&l).map_err(|e| format!("{e}: {l:?}")),
                    Err(e) => Err(e.to_string()),
                };
                if tx.send((index, msg)).is_err() {
                    return;
                }
            }
            let _ = tx.send((index, Err("the shard ended".into())));
        });
        children.push(child);
    }
    Ok(Shards { children, lines })
}

/// CPU time of the P-256 work of one server handshake, timed on this thread: an ECDSA signature (the
/// ServerKeyExchange), a verification (the device's CertificateVerify) and two scalar multiplications (the ephemeral
/// key, and a second key generation standing in for the ECDH multiplication, which the crate does not expose).
fn p256_floor(tck: u64) -> Option<Duration> {
    let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
    let key = PrivateKey::generate(&mut rng);
    let public = key.public_key();
    let digest = [0x5a; 32];
    let mut sig = [0u8; 72];
    let rounds = 200u32;
    let start = procfs::thread_cpu_ticks()?;
    for _ in 0..rounds {
        let n = key.sign_digest(&digest, &mut sig).ok()?;
        public.verify_digest(&digest, &sig[..n]).ok()?;
        let e = PrivateKey::generate(&mut rng);
        std::hint::black_box(e.public_key());
        std::hint::black_box(PrivateKey::generate(&mut rng).public_key());
    }
    let used = procfs::thread_cpu_ticks()?.checked_sub(start)?;
    Some(procfs::ticks_to_duration(used, tck) / rounds)
}

/// The machine's count of UDP datagrams the kernel dropped for a full receive buffer (`RcvbufErrors` in
/// `/proc/net/snmp`): a dropped keep-alive is how idle sessions were lost before the cloud asked for a larger buffer.
fn udp_rcvbuf_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let at = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(at)?.parse().ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The UDP phase: see the module's documentation.
pub(crate) async fn udp_phase(args: &Args, report: &mut Report) -> Result<(), String> {
    let count = args.udp;
    let per_shard = args.udp_per_shard.max(1);
    let shards = if args.udp_shards == 0 {
        count.div_ceil(per_shard)
    } else {
        args.udp_shards
    };
    if shards > 200 {
        return Err("at most 200 shards (loopback source addresses 127.0.0.10 to .209)".into());
    }
    let user = format!("load-udp-{}@local", std::process::id());
    let dir = std::env::temp_dir().join(format!("spark-load-udp-{}", std::process::id()));
    let mut seed = [0u8; 16];
    rand_core::UnwrapErr(rand::rngs::SysRng).fill_bytes(&mut seed);
    let t = Instant::now();
    register_devices(&dir, &seed, count, &user)?;
    let registered = t.elapsed();
    let (target, udp) = spawn_udp_cloud(args, &dir)?;
    let tck = procfs::ticks_per_second();
    let server_pem = std::fs::read_to_string(dir.join("udp_key.pub.pem"))
        .map_err(|e| format!("reading the cloud's UDP key: {e}"))?;
    let server_key =
        PublicKey::from_pem(&server_pem).map_err(|e| format!("UDP server key: {e:?}"))?;
    let mut api = login_as(target.api, &user).await?;
    report.figure(
        "udp_setup",
        json!({"devices": count, "shards": shards, "cloud_pid": target.pid, "loadavg": loadavg(),
               "register_seconds": registered.as_secs_f64()}),
        format!(
            "spark-load --udp: cloud pid {:?}, {count} UDP devices over {shards} shard processes (keys registered in \
             {:.1} s), load average {}",
            target.pid,
            registered.as_secs_f64(),
            loadavg()
        ),
    );

    // Connect.
    let rcvbuf_errors_before = udp_rcvbuf_errors();
    let quiet = settle(target.pid, tck).await;
    let before = sample(target.pid);
    let bar = progress(args.json, count, "udp connect");
    let start = Instant::now();
    let mut fleet = spawn_shards(
        count,
        shards,
        args.concurrency as u64,
        udp,
        seed,
        server_key,
    )?;
    let shard_count = usize::try_from(shards).unwrap_or(0);
    let mut up = vec![0u64; shard_count];
    let mut ready = vec![None::<(u64, u64)>; shard_count];
    let mut first_failure = None;
    let mut first_lost = None;
    let mut lost = vec![0u64; shard_count];
    let mut answered = vec![0u64; shard_count];
    while ready.iter().any(Option::is_none) {
        let (s, msg) = fleet.lines.recv().await.ok_or("the shards' lines ended")?;
        match msg.map_err(|e| format!("shard {s}: {e}"))? {
            ShardMsg::Up(n) => up[s] = n,
            ShardMsg::Ready { connected, failed } => {
                up[s] = connected;
                ready[s] = Some((connected, failed));
            }
            // After its Ready, a shard's failure is a session lost while idle.
            ShardMsg::Failed(why) if ready[s].is_some() => {
                first_lost.get_or_insert(why);
            }
            ShardMsg::Failed(why) => {
                first_failure.get_or_insert(why);
            }
            ShardMsg::Lost(n) => lost[s] = n,
            ShardMsg::Answered(n) => answered[s] = n,
            _ => {}
        }
        bar.set_position(up.iter().sum());
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let after = sample(target.pid);
    let connected: u64 = ready.iter().flatten().map(|r| r.0).sum();
    let failed: u64 = ready.iter().flatten().map(|r| r.1).sum();
    if failed > 0 {
        report.fault(format!("{failed} UDP devices failed to connect"));
        report.figure(
            "udp_connect_failures",
            json!({"count": failed, "first": first_failure}),
            format!("  {failed} UDP devices failed to connect; first: {first_failure:?}"),
        );
    }
    let rate = connected as f64 / elapsed.as_secs_f64();
    report.figure(
        "udp_handshakes",
        json!({"count": connected, "seconds": elapsed.as_secs_f64(), "per_second": rate,
               "cloud_quiet_after_ms": quiet.map(ms), "loadavg": loadavg()}),
        format!(
            "udp connect: {connected} devices in {:.2} s: {rate:.1} DTLS handshakes + Hellos per second (the cloud \
             and {shards} shards on the same CPUs; load average {})",
            elapsed.as_secs_f64(),
            loadavg()
        ),
    );
    let floor = p256_floor(tck);
    if let (Some(b), Some(a)) = (before, after)
        && connected > 0
    {
        let cpu = procfs::ticks_to_duration(a.cpu_ticks.saturating_sub(b.cpu_ticks), tck);
        let per = cpu / u32::try_from(connected).unwrap_or(u32::MAX);
        report.figure(
            "udp_cpu_ms_per_handshake",
            json!({"cloud_ms": ms(per), "p256_floor_ms": floor.map(ms),
                   "ratio": floor.map(|f| per.as_secs_f64() / f.as_secs_f64())}),
            format!(
                "  {:<42} {:>12.3} ms         (reference: the P-256 work of one server handshake, timed in this \
                 process: {} ms; ratio {})",
                "cloud CPU per DTLS handshake",
                ms(per),
                floor.map_or("-".into(), |f| format!("{:.3}", ms(f))),
                floor.map_or("-".into(), |f| format!("{:.2}x", per.as_secs_f64() / f.as_secs_f64()))
            ),
        );
    }
    // Memory once the cloud counts every device.
    let (settled, idle, counted) = api
        .idle_sample(target.pid, connected, Duration::from_secs(60))
        .await?;
    if !settled {
        report.fault(format!(
            "the cloud counts {counted} connected devices, {connected} UDP devices are up"
        ));
    }
    if let (Some(b), Some(i)) = (before, idle)
        && counted > 0
    {
        let per = i.rss_kib.saturating_sub(b.rss_kib) as f64 * 1024.0 / counted as f64;
        report.figure(
            "udp_rss",
            json!({"before_kib": b.rss_kib, "idle_kib": i.rss_kib, "connected": counted, "loadavg": loadavg()}),
            format!(
                "  cloud RSS {} KiB before, {} KiB with {counted} idle UDP devices (load average {})",
                b.rss_kib,
                i.rss_kib,
                loadavg()
            ),
        );
        report.goal(
            "udp_rss_bytes_per_idle_device",
            "RSS per connected idle UDP device",
            "bytes",
            per,
            2048.0,
            true,
        );
        report.goal(
            "udp_idle_devices_held",
            "idle UDP devices held in one process",
            "devices",
            counted as f64,
            100_000.0,
            false,
        );
    }

    // Calls, one after another, each to the next device.
    if connected > 0 && args.calls > 0 {
        let mut client = Client::connect(target.api)
            .await
            .map_err(|e| e.to_string())?;
        let auth = format!("Authorization: Bearer {}", api.token);
        // The devices the cloud lists as connected: a device whose session was lost (a fault, counted above and
        // below) would hold each call to it for the cloud's 30 s call timeout.
        let list = client
            .request("GET", "/v1/devices", &[&auth], None)
            .await
            .map_err(|e| e.to_string())?;
        let ids: Vec<String> = list
            .json()
            .and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .filter(|d| d["connected"].as_bool() == Some(true))
                        .filter_map(|d| d["id"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Err(format!(
                "the cloud lists no connected device ({})",
                list.status
            ));
        }
        let bar = progress(args.json, args.calls as u64, "udp calls");
        let mut times = Vec::with_capacity(args.calls);
        let warmup = 200.min(args.calls);
        let mut bad = 0usize;
        let mut first_bad = None;
        for i in 0..args.calls + warmup {
            let path = format!("/v1/devices/{}/{FUNCTION}", ids[i % ids.len()]);
            let t = Instant::now();
            let r = client
                .request("POST", &path, &[&auth], Some("arg=D7%2CHIGH"))
                .await
                .map_err(|e| e.to_string())?;
            let rtt = t.elapsed();
            let good = r.status == 200
                && r.json().and_then(|v| v["return_value"].as_i64())
                    == Some(i64::from(FUNCTION_RESULT));
            if !good {
                bad += 1;
                first_bad.get_or_insert_with(|| {
                    format!("{path}: {} {}", r.status, String::from_utf8_lossy(&r.body))
                });
            }
            if i >= warmup {
                times.push(rtt);
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        times.sort_unstable();
        if bad > 0 {
            report.fault(format!("{bad} function calls to UDP devices failed"));
        }
        // Let the shards report what their devices answered.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok((s, msg)) = fleet.lines.try_recv() {
            match msg {
                Ok(ShardMsg::Lost(n)) => lost[s] = n,
                Ok(ShardMsg::Answered(n)) => answered[s] = n,
                Ok(ShardMsg::Failed(why)) => {
                    first_lost.get_or_insert(why);
                }
                _ => {}
            }
        }
        let answered: u64 = answered.iter().sum();
        report.figure(
            "udp_calls",
            json!({"count": times.len(), "failed": bad, "first_failure": first_bad, "devices": ids.len(),
                   "answered_by_devices": answered, "max_ms": ms(*times.last().unwrap_or(&Duration::ZERO)),
                   "loadavg": loadavg()}),
            format!(
                "udp calls: {} sequential function calls over the {} UDP devices the cloud lists as connected, {bad} \
                 failed, {answered} \
                 answered by the devices (with {warmup} warm-up calls); load average {}",
                times.len(),
                ids.len(),
                loadavg()
            ),
        );
        report.goal(
            "udp_call_rtt_median_ms",
            "UDP call round trip, median",
            "ms",
            ms(quantile(&times, 0.5).unwrap_or_default()),
            0.3,
            true,
        );
        report.goal(
            "udp_call_rtt_p99_ms",
            "UDP call round trip, p99",
            "ms",
            ms(quantile(&times, 0.99).unwrap_or_default()),
            1.0,
            true,
        );
    }
    let lost: u64 = lost.iter().sum();
    if let (Some(before), Some(after)) = (rcvbuf_errors_before, udp_rcvbuf_errors()) {
        let dropped = after.saturating_sub(before);
        report.figure(
            "udp_rcvbuf_errors",
            json!({"during_run": dropped, "before": before, "after": after, "sessions_lost": lost}),
            format!(
                "  UDP datagrams the kernel dropped for a full receive buffer during the run (RcvbufErrors, the whole \
                 machine's): {dropped}; idle sessions lost: {lost}"
            ),
        );
    }
    if lost > 0 {
        report.fault(format!(
            "{lost} UDP sessions ended while idle (first: {})",
            first_lost.as_deref().unwrap_or("-")
        ));
    }
    drop(fleet);
    drop(target);
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Runs this process as a shard of the UDP phase (`--udp-shard SPEC`): its devices on a single-threaded runtime,
/// its lines on standard output, until standard input closes.
pub(crate) fn shard_main(spec: &str) -> std::process::ExitCode {
    let spec: ShardSpec = match spec.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spark-load shard: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    procfs::raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spark-load shard: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(spark_load::shard::run_shard(spec, std::io::stdout().lock())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spark-load shard: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
