//! `spark-load`: measures a local cloud under load and prints each figure against its goal (issue 18's goals).
//!
//! ```text
//! spark-load [--devices 10000] [--calls 5000] [--publishers 8] [--event-seconds 5] [--storm 2000] [--json]
//! spark-load --cloud 127.0.0.1:5683 --api 127.0.0.1:8080 --dir STATE_DIR [--pid PID] ...
//! ```
//!
//! Without `--cloud` it starts the `spark-cloud` binary built beside it on free loopback ports with a fresh state
//! directory, and stops it at the end. It reads the cloud's CPU time (`/proc/<pid>/stat`) and resident memory
//! (`/proc/<pid>/status`) around each phase:
//!
//! 1. provisioning: a user, a token, and the device ids over `--provision-connections` API connections, each
//!    answered once durable: devices per second;
//! 2. connect: `--devices` idle Cores (`DeviceConnection` on the tokio driver), `--concurrency` handshakes at a
//!    time: handshakes per second, cloud CPU per handshake over the RSA floor measured in this process and over
//!    the RSA floor plus the socket floor (a bare TCP exchange of the handshake's shape, [`floor`]), and resident
//!    memory per connected idle device;
//! 3. calls: `--calls` function calls one after another through the REST API, each to the next Core, with every
//!    Core connected (or `--rtt-devices`): median and p99 round trip;
//! 4. events: one event-stream subscriber and `--publishers` Cores publishing for `--event-seconds`: events per
//!    second received by the subscriber;
//! 5. subscribers: `--subscribers` event streams opened and closed; the cloud's subscriber count must drop back;
//! 6. fan-out (the idle Cores closed first): `--fanout` event streams spread over `--fanout-users` users, one
//!    publishing Core per user sending private events and every `--fanout-public-every`th a public one: deliveries
//!    per second against the goal and against the one-subscriber rate of phase 4, and an account per stream (each
//!    must get all of its user's private events and all public ones, and none of another user's);
//! 7. storm: `--storm` Cores that reconnect with jittered pauses (below `--retry-ms`), the cloud killed and started
//!    again on its directory and ports: time until all are back against the RSA floor's pace on this machine's
//!    CPUs and against the ceiling this run's figures give, REST p99 meanwhile, refused attempts, peak memory, and
//!    what the cloud got of the CPUs and waited for, sampled every 250 ms ([`storm`]; `--storm-trace` prints the
//!    timeline).
//!
//! A goal not reached is a figure: the run still exits 0 and names it on the last line. A fault is not: a Core that
//! failed to connect or did not come back after the storm, a failed call, an event lost, duplicated, misdelivered
//! or dropped, a closed stream the cloud still counts. Any fault is printed on stderr and the run exits 1 (what
//! `.ci/run`'s small-scale run of every phase relies on).
//!
//! What one machine can reach: one process holds as many Cores as its open-file hard limit allows (20,000 in the
//! container these figures come from; raising it needs `CAP_SYS_RESOURCE`), so 100,000 devices are measured per
//! device at the largest count the limit allows. The RSA floor is CPU time, so on a machine shared with other work
//! the storm's wall-clock pace is below it by the share of the CPUs the cloud got; the cloud's CPU per handshake
//! during the storm is printed beside it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use spark_load::cores::{self, CoreKeys, EVENT_NAME, FUNCTION, FUNCTION_RESULT, Fleet, Retry};
use spark_load::fanout::{self, Received, StreamTally};
use spark_load::http::{Client, EventStream};
use spark_load::procfs::{self, Sample};
use spark_load::{PrivateKey, PublicKey, RSA_BACKEND, core_id, id_bytes, quantile};
use spark_load::{floor, storm};
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::crypto::{RsaPrivate, RsaPublic};
use spark_protocol::wire::message::Visibility;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

mod udp;

/// Measures a local cloud: handshakes, memory per idle device, call round trips, event throughput, freed
/// subscribers.
#[derive(Debug, Parser)]
#[command(name = "spark-load", version)]
struct Args {
    /// Idle Cores to connect (and hold at once).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    devices: u64,
    /// Cores kept connected for the call round-trip phase (0: all of them, the goal's case).
    #[arg(long, default_value_t = 0)]
    rtt_devices: u64,
    /// Function calls timed in the round-trip phase.
    #[arg(long, default_value_t = 5_000)]
    calls: usize,
    /// Cores publishing in the event phase (0 skips it).
    #[arg(long, default_value_t = 8)]
    publishers: u64,
    /// Events the publishers may run ahead of the subscriber (0: no limit, they run as fast as TCP takes them).
    #[arg(long, default_value_t = 4096)]
    event_window: u64,
    /// Seconds the event phase measures.
    #[arg(long, default_value_t = 5.0)]
    event_seconds: f64,
    /// Event streams opened and closed in the subscriber phase (0 skips it).
    #[arg(long, default_value_t = 200)]
    subscribers: usize,
    /// Event streams of the fan-out phase, spread over `--fanout-users` users (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    fanout: u64,
    /// Users of the fan-out phase, each owning one publishing Core (the cloud allows 20 password logins from one
    /// address at once, then one a second: keep it under 20).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    fanout_users: u64,
    /// Seconds the fan-out phase measures.
    #[arg(long, default_value_t = 5.0)]
    fanout_seconds: f64,
    /// Every Nth event of a fan-out publisher is public (seen by every stream) instead of private (0: none).
    #[arg(long, default_value_t = 1_000)]
    fanout_public_every: u64,
    /// Deliveries the fan-out publishers may run ahead of the streams (0: 32 per stream).
    #[arg(long, default_value_t = 0)]
    fanout_window: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// API connections provisioning devices at once (each request is answered once its write is durable).
    #[arg(long, default_value_t = 64)]
    provision_connections: u64,
    /// Cores in the reconnect storm: connected, the cloud killed and restarted on its state directory, all
    /// reconnecting with jittered retries (0 skips it; the goal is set for 20,000).
    #[arg(long, default_value_t = 2_000)]
    storm: u64,
    /// The longest pause of a storm Core before its next attempt (each pause is drawn uniformly below it).
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    retry_ms: u64,
    /// Print the storm's timeline, one line per 250 ms (the cloud's CPUs and run-queue wait, the tool's CPUs,
    /// handshakes, failed attempts, the accept queue); `--json` always has it.
    #[arg(long)]
    storm_trace: bool,
    /// Loopback source addresses for the Cores' connections (127.0.0.1, 127.0.0.2, ...); 0 = one per 20,000 (in the storm,
    /// one per 2,000).
    #[arg(long, default_value_t = 0)]
    sources: u32,
    /// An existing cloud's device listener (then `--api` and `--dir` are needed too).
    #[arg(long, value_name = "ADDR", requires_all = ["api", "dir"])]
    cloud: Option<SocketAddr>,
    /// An existing cloud's REST API address.
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// The state directory of an existing cloud (for its server key).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The process id of an existing cloud (for its CPU time and memory).
    #[arg(long)]
    pid: Option<u32>,
    /// The spark-cloud binary to start (default: the one beside this binary).
    #[arg(long, value_name = "FILE")]
    cloud_bin: Option<PathBuf>,
    /// Print one JSON report instead of text.
    #[arg(long)]
    json: bool,
    /// Run the UDP phase alone with this many UDP devices (DTLS, P-256) held by one cloud process, spread over
    /// shard processes of this tool (see `udp.rs`); 0: the TCP phases.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_000_000))]
    udp: u64,
    /// Shard processes of the UDP phase (0: one per `--udp-per-shard` devices).
    #[arg(long, default_value_t = 0)]
    udp_shards: u64,
    /// UDP devices (each a socket) per shard process when `--udp-shards` is 0: below the open-file limit.
    #[arg(long, default_value_t = 16_000)]
    udp_per_shard: u64,
    /// Internal: run as a shard of the UDP phase (`spark_load::shard::ShardSpec`).
    #[arg(long, hide = true, value_name = "SPEC")]
    udp_shard: Option<String>,
}

/// The cloud under test.
struct Target {
    device: SocketAddr,
    api: SocketAddr,
    dir: PathBuf,
    pid: Option<u32>,
    child: Option<Child>,
    temp: Option<PathBuf>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(temp) = &self.temp {
            let _ = std::fs::remove_dir_all(temp);
        }
    }
}

fn start_cloud(args: &Args) -> Result<Target, String> {
    if let (Some(device), Some(api), Some(dir)) = (args.cloud, args.api, &args.dir) {
        return Ok(Target {
            device,
            api,
            dir: dir.clone(),
            pid: args.pid,
            child: None,
            temp: None,
        });
    }
    let temp = std::env::temp_dir().join(format!("spark-load-{}", std::process::id()));
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut target = Target {
        device: any,
        api: any,
        dir: temp.clone(),
        pid: None,
        child: None,
        temp: Some(temp),
    };
    spawn_cloud(args, &mut target, any, any)?;
    Ok(target)
}

/// Starts the `spark-cloud` binary on `target.dir`, listening on `api` and `device` (port 0: any), and records its
/// process and addresses in `target`.
fn spawn_cloud(
    args: &Args,
    target: &mut Target,
    api: SocketAddr,
    device: SocketAddr,
) -> Result<(), String> {
    let bin = match &args.cloud_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this executable: {e}"))?
            .with_file_name("spark-cloud"),
    };
    let held = args.devices.max(args.storm) + args.publishers + 1024;
    let mut child = std::process::Command::new(&bin)
        .args(["--dir".as_ref(), target.dir.as_os_str()])
        .args(["--http".to_owned(), api.to_string()])
        .args(["--device".to_owned(), device.to_string()])
        .args(["--key-bits", "2048"])
        // Every Core and every stream of this run comes from this machine: the per-address and device caps are
        // raised to what the run holds, so the run measures the cloud rather than its limits. The handshake cap
        // and queue keep their defaults: the storm measures them.
        .args([
            "--max-http".to_owned(),
            (args.subscribers as u64 + args.provision_connections + args.fanout + 256).to_string(),
            "--max-http-per-address".to_owned(),
            (args.subscribers as u64 + args.provision_connections + args.fanout + 64).to_string(),
            "--max-devices".to_owned(),
            held.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} (build it with `cargo build --release -p spark-cloud -p spark-load`): {e}",
                bin.display()
            )
        })?;
    target.pid = Some(child.id());
    let stdout = child.stdout.take();
    target.child = Some(child);
    let addresses = address_line(stdout)?;
    target.device = address(&addresses, "device")?;
    target.api = address(&addresses, "http")?;
    Ok(())
}

/// The first line a started `spark-cloud` prints on `stdout`: its listeners' addresses, as JSON.
fn address_line(stdout: Option<std::process::ChildStdout>) -> Result<Value, String> {
    let mut line = String::new();
    if let Some(stdout) = stdout {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| format!("reading spark-cloud's address line: {e}"))?;
    }
    serde_json::from_str(&line)
        .map_err(|_| format!("spark-cloud did not print its addresses (got {line:?})"))
}

/// The address named `key` (`device`, `http`, `udp`) in an [`address_line`].
fn address(addresses: &Value, key: &str) -> Result<SocketAddr, String> {
    addresses[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("spark-cloud printed no {key} address"))
}

/// Progress output: a bar on a terminal in text mode, nothing with `--json`.
/// Starts one publishing Core per `(device number, topic)`, all paced by `pace` and stopped by `stop`, and waits
/// until every one is connected.
async fn start_publishers(
    device: SocketAddr,
    keys: &Arc<CoreKeys>,
    stop: &Arc<AtomicBool>,
    pace: &cores::Pace,
    publishers: impl IntoIterator<Item = (u64, cores::Topic)>,
) -> Result<Vec<JoinHandle<Result<(), String>>>, String> {
    let mut tasks = Vec::new();
    let mut ups = Vec::new();
    for (n, topic) in publishers {
        let id = id_bytes(&core_id(n)).ok_or("bad id")?;
        let (tx, rx) = oneshot::channel();
        tasks.push(tokio::spawn(cores::publisher(
            id,
            device,
            Arc::clone(keys),
            Arc::clone(stop),
            pace.clone(),
            topic,
            tx,
        )));
        ups.push(rx);
    }
    for up in ups {
        up.await
            .map_err(|_| "a publisher failed to connect".to_owned())?;
    }
    Ok(tasks)
}

/// Provisions the device `id` with the public key `pem` (`POST /v1/provisioning/:id`) as the user of `token`.
async fn provision_one(
    client: &mut Client,
    token: &str,
    id: &str,
    pem: &str,
) -> Result<(), String> {
    let auth = format!("Authorization: Bearer {token}");
    let form = serde_urlencoded::to_string([("deviceID", id), ("publicKey", pem)])
        .map_err(|e| e.to_string())?;
    let r = client
        .request(
            "POST",
            &format!("/v1/provisioning/{id}"),
            &[&auth],
            Some(&form),
        )
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("provisioning {id}: {}", r.status));
    }
    Ok(())
}

/// Starts `count` idle Cores (ids 0 to `count - 1`), `concurrency` handshakes at a time, spread over `sources`
/// loopback addresses (127.0.0.1, 127.0.0.2, ...: one source address has about 28,000 ephemeral ports). Returns
/// the Cores' tasks and, for each, a task that ends with the outcome of its first connection.
#[allow(clippy::too_many_arguments)]
async fn start_idle_cores(
    count: u64,
    sources: u32,
    concurrency: usize,
    device: SocketAddr,
    keys: &Arc<CoreKeys>,
    fleet: &Arc<Fleet>,
    retry: Retry,
    bar: &ProgressBar,
) -> Result<(Vec<JoinHandle<()>>, Vec<JoinHandle<Result<(), String>>>), String> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let capacity = usize::try_from(count).unwrap_or(0);
    let mut cores = Vec::with_capacity(capacity);
    let mut ups = Vec::with_capacity(capacity);
    for n in 0..count {
        let id = id_bytes(&core_id(n)).ok_or("bad id")?;
        let source = (sources > 1).then(|| {
            let d = 1 + u8::try_from(n % u64::from(sources)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, d))
        });
        let permit = Arc::clone(&gate)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel();
        cores.push(tokio::spawn(cores::idle_core(
            id,
            device,
            source,
            Arc::clone(keys),
            tx,
            Arc::clone(fleet),
            retry,
        )));
        let bar = bar.clone();
        ups.push(tokio::spawn(async move {
            let r = rx.await.unwrap_or(Err("task ended".into()));
            drop(permit);
            bar.inc(1);
            r
        }));
    }
    Ok((cores, ups))
}

fn progress(json: bool, len: u64, what: &str) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}

struct Api {
    addr: SocketAddr,
    client: Client,
    token: String,
}

impl Api {
    async fn health(&mut self) -> Result<Value, String> {
        let r = match self
            .client
            .request("GET", "/server/health", &[], None)
            .await
        {
            Ok(r) => r,
            // The cloud closes a keep-alive connection idle for 10 s (a long connect phase): one more try on a new
            // one.
            Err(_) => {
                self.client = Client::connect(self.addr)
                    .await
                    .map_err(|e| e.to_string())?;
                self.client
                    .request("GET", "/server/health", &[], None)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        r.json()
            .filter(|_| r.status == 200)
            .ok_or_else(|| format!("/server/health answered {}", r.status))
    }

    async fn connected(&mut self) -> Result<u64, String> {
        Ok(self.health().await?["connected"].as_u64().unwrap_or(0))
    }

    async fn subscribers(&mut self) -> Result<u64, String> {
        Ok(self.health().await?["events"]["subscribers"]
            .as_u64()
            .unwrap_or(0))
    }

    /// Waits (up to `limit`) until the cloud counts `expected` connected devices, gives its memory 2 s to settle and
    /// samples process `pid`: whether the count was reached, the sample, and the count then.
    async fn idle_sample(
        &mut self,
        pid: Option<u32>,
        expected: u64,
        limit: Duration,
    ) -> Result<(bool, Option<Sample>, u64), String> {
        let settled = self
            .wait_for(limit, |h| h["connected"].as_u64() == Some(expected))
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = sample(pid);
        Ok((settled.is_some(), idle, self.connected().await?))
    }

    /// Waits (up to `limit`) until `check` holds for the health answer; returns how long it took.
    async fn wait_for(
        &mut self,
        limit: Duration,
        mut check: impl FnMut(&Value) -> bool,
    ) -> Result<Option<Duration>, String> {
        let start = Instant::now();
        loop {
            if check(&self.health().await?) {
                return Ok(Some(start.elapsed()));
            }
            if start.elapsed() > limit {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn login(api: SocketAddr) -> Result<Api, String> {
    login_as(api, &format!("load-{}@local", std::process::id())).await
}

/// Creates the user `user` and logs in.
async fn login_as(api: SocketAddr, user: &str) -> Result<Api, String> {
    let mut client = Client::connect(api).await.map_err(|e| e.to_string())?;
    let token = client
        .sign_up(user, "load-password-1", "spark-load")
        .await?;
    Ok(Api {
        addr: api,
        client,
        token,
    })
}

/// Provisions ids `0..count` with `pem` over `connections` API connections.
async fn provision(
    api: SocketAddr,
    token: &str,
    pem: &str,
    count: u64,
    connections: u64,
    json: bool,
) -> Result<(), String> {
    let bar = progress(json, count, "provision");
    let mut tasks = Vec::new();
    for c in 0..connections {
        let token = token.to_owned();
        let pem = pem.to_owned();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(api).await.map_err(|e| e.to_string())?;
            let mut n = c;
            while n < count {
                provision_one(&mut client, &token, &core_id(n), &pem).await?;
                bar.inc(1);
                n += connections;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    bar.finish_and_clear();
    Ok(())
}

fn sample(pid: Option<u32>) -> Option<Sample> {
    pid.and_then(|p| procfs::sample(p).ok())
}

/// CPU time of the cloud's two RSA private-key operations per handshake (decrypting the credentials, signing the
/// session key), measured on this thread with the same backend and key: the floor of server CPU per handshake.
/// Thread CPU time in nanoseconds, not wall time, so that other processes on a shared machine do not inflate it
/// (and not clock ticks: 500 rounds of 0.56 ms are 28 ticks, too coarse for a 5% goal). Three batches of 200
/// rounds: the median is the floor, the other two show how much it moved while it was measured.
fn rsa_floor(server: &PrivateKey, public: &PublicKey) -> Option<RsaFloor> {
    let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
    let block = server.modulus_len();
    let (mut ct, mut sig, mut out) = (vec![0u8; block], vec![0u8; block], vec![0u8; block]);
    public
        .encrypt_pkcs1v15(&mut rng, &[7u8; 52], &mut ct)
        .ok()?;
    let rounds = 200u32;
    let mut batches = [Duration::ZERO; 3];
    for batch in &mut batches {
        let start = procfs::thread_cpu_ns()?;
        for _ in 0..rounds {
            server.decrypt_pkcs1v15(&mut rng, &ct, &mut out).ok()?;
            server
                .sign_pkcs1v15_unprefixed(&mut rng, &[9u8; 20], &mut sig)
                .ok()?;
        }
        let used = procfs::thread_cpu_ns()?.checked_sub(start)?;
        *batch = Duration::from_nanos(used) / rounds;
    }
    batches.sort();
    Some(RsaFloor {
        median: batches[1],
        low: batches[0],
        high: batches[2],
    })
}

/// What [`rsa_floor`] measured: per handshake, the median batch and the two others.
#[derive(Debug, Clone, Copy)]
struct RsaFloor {
    median: Duration,
    low: Duration,
    high: Duration,
}

/// CPU time of the handshake's one public-key operation, the 40-byte session key encrypted to the device's key,
/// measured on this thread with the same backend: `loaded` with the key loaded from its stored form first, as the
/// cloud does on every handshake (the backend then also sets up its Montgomery numbers for that modulus), and
/// `prepared` with a key loaded once. The first is the cloud's unavoidable work per handshake today.
fn public_op_cost(device: &RsaPublicKey) -> Option<PublicOpCost> {
    let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
    let rounds = 4_000u32;
    let mut out = vec![0u8; device.as_ref_key().modulus_len()];
    let start = procfs::thread_cpu_ns()?;
    for _ in 0..rounds {
        let key = PublicKey::new(&device.as_ref_key()).ok()?;
        key.encrypt_pkcs1v15(&mut rng, &[5u8; 40], &mut out).ok()?;
    }
    let loaded = procfs::thread_cpu_ns()?.checked_sub(start)?;
    let key = PublicKey::new(&device.as_ref_key()).ok()?;
    let start = procfs::thread_cpu_ns()?;
    for _ in 0..rounds {
        key.encrypt_pkcs1v15(&mut rng, &[5u8; 40], &mut out).ok()?;
    }
    let prepared = procfs::thread_cpu_ns()?.checked_sub(start)?;
    Some(PublicOpCost {
        loaded: Duration::from_nanos(loaded) / rounds,
        prepared: Duration::from_nanos(prepared) / rounds,
    })
}

/// The RSA floor's pair of private-key operations run on a thread of its own once every [`PacedFloor::INTERVAL`],
/// each pair's CPU time counted: unlike the tight loop of [`rsa_floor`], each pair starts after a wait, on caches
/// other threads used meanwhile, as a handshake's do in the cloud.
struct PacedFloor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<(u64, u32)>>,
}

/// What a [`PacedFloor`] measured: CPU time per pair, and the pairs.
#[derive(Debug, Clone, Copy)]
struct Paced {
    per_pair: Duration,
    pairs: u32,
}

impl PacedFloor {
    const INTERVAL: Duration = Duration::from_millis(10);

    fn start(server: &PrivateKey, public: &PublicKey) -> Option<PacedFloor> {
        let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
        let block = server.modulus_len();
        let mut ct = vec![0u8; block];
        public
            .encrypt_pkcs1v15(&mut rng, &[7u8; 52], &mut ct)
            .ok()?;
        let server = server.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("load-paced-rsa".into())
            .spawn(move || {
                let (mut sig, mut out) = (vec![0u8; block], vec![0u8; block]);
                let (mut used, mut pairs) = (0u64, 0u32);
                while !stopped.load(Ordering::Relaxed) {
                    let start = procfs::thread_cpu_ns()?;
                    server.decrypt_pkcs1v15(&mut rng, &ct, &mut out).ok()?;
                    server
                        .sign_pkcs1v15_unprefixed(&mut rng, &[9u8; 20], &mut sig)
                        .ok()?;
                    used += procfs::thread_cpu_ns()?.checked_sub(start)?;
                    pairs += 1;
                    std::thread::sleep(Self::INTERVAL);
                }
                Some((used, pairs))
            })
            .ok()?;
        Some(PacedFloor { stop, thread })
    }

    fn stop(self) -> Option<Paced> {
        self.stop.store(true, Ordering::Relaxed);
        let (used, pairs) = self.thread.join().ok()??;
        (pairs > 0).then(|| Paced {
            per_pair: Duration::from_nanos(used) / pairs,
            pairs,
        })
    }
}

/// The paced floor on the settled machine and beside the connect phase, and the cloud against the unavoidable work
/// with the busy one in place of the tight loop's floor.
fn report_paced_floor(
    report: &mut Report,
    cloud_cpu: Option<Duration>,
    quiet: Paced,
    busy: Paced,
    sockets: Duration,
    public: PublicOpCost,
) {
    let sharing = busy.per_pair.as_secs_f64() / quiet.per_pair.as_secs_f64();
    report.figure(
        "paced_rsa_floor_ms",
        json!({"quiet": ms(quiet.per_pair), "quiet_pairs": quiet.pairs,
               "during_connect": ms(busy.per_pair), "during_connect_pairs": busy.pairs,
               "during_connect_over_quiet": sharing}),
        format!(
            "  {:<42} {:>12.3} ms         (one pair every {} ms; {:.3} ms on the settled machine, {} and {} \
             pairs: {sharing:.3}x from sharing the CPUs with the connect phase)",
            "reference: RSA floor paced, during connect",
            ms(busy.per_pair),
            PacedFloor::INTERVAL.as_millis(),
            ms(quiet.per_pair),
            quiet.pairs,
            busy.pairs
        ),
    );
    if let Some(cpu) = cloud_cpu {
        let unavoidable = busy.per_pair + sockets + public.loaded;
        report.figure(
            "cpu_per_handshake_over_unavoidable_paced",
            json!(cpu.as_secs_f64() / unavoidable.as_secs_f64()),
            format!(
                "  {:<42} {:>12.3} x          (paced floor during connect {:.3} + socket floor {:.3} + public-key \
                 op {:.4} = {:.3} ms)",
                "cloud CPU per handshake / that, shared",
                cpu.as_secs_f64() / unavoidable.as_secs_f64(),
                ms(busy.per_pair),
                ms(sockets),
                ms(public.loaded),
                ms(unavoidable)
            ),
        );
    }
}

/// What [`public_op_cost`] measured.
#[derive(Debug, Clone, Copy)]
struct PublicOpCost {
    /// Loading the device key and encrypting the session key with it.
    loaded: Duration,
    /// Encrypting with a key loaded before.
    prepared: Duration,
}

/// The keys the connect phase's floors are measured with: the cloud's private key and the devices' public key in
/// the form the cloud stores it.
struct FloorKeys<'a> {
    server_private: &'a PrivateKey,
    device: &'a RsaPublicKey,
}

/// Waits (120 s at most) until the cloud's device journal is empty (`<dir>/core_keys/journal`: the writer empties
/// it once every device file written since is synced; no file, as with another store, counts as empty); returns
/// how long it took.
async fn journal_synced(dir: &std::path::Path) -> Option<Duration> {
    let start = Instant::now();
    let path = dir.join("core_keys").join("journal");
    while start.elapsed() < Duration::from_secs(120) {
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > 0 => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => return Some(start.elapsed()),
        }
    }
    None
}

/// Waits (30 s at most) until the cloud used under 10 ms of CPU in 250 ms; returns how long it took.
async fn settle(pid: Option<u32>, tck: u64) -> Option<Duration> {
    let start = Instant::now();
    let mut last = sample(pid)?;
    while start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = sample(pid)?;
        let used = procfs::ticks_to_duration(now.cpu_ticks.saturating_sub(last.cpu_ticks), tck);
        if used < Duration::from_millis(10) {
            return Some(start.elapsed());
        }
        last = now;
    }
    None
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Report {
    json: bool,
    figures: serde_json::Map<String, Value>,
    /// Goals not reached (figures: the run still succeeds).
    misses: Vec<String>,
    /// What went wrong, not just slow: a Core that failed to connect or never came back, a failed call, an event
    /// lost, duplicated, misdelivered or dropped, a stream not freed. Any of them fails the run (exit status 1).
    faults: Vec<String>,
}

impl Report {
    /// Records a fault (see [`Report::faults`]).
    fn fault(&mut self, what: String) {
        self.faults.push(what);
    }

    fn figure(&mut self, key: &str, value: Value, text: String) {
        if !self.json {
            println!("{text}");
        }
        self.figures.insert(key.to_owned(), value);
    }

    /// A measured figure against its goal (`at_most`: the goal is an upper bound).
    fn goal(
        &mut self,
        key: &str,
        label: &str,
        unit: &str,
        measured: f64,
        goal: f64,
        at_most: bool,
    ) {
        let met = if at_most {
            measured <= goal
        } else {
            measured >= goal
        };
        let op = if at_most { "<=" } else { ">=" };
        if !met {
            self.misses.push(key.to_owned());
        }
        self.figure(
            key,
            json!({"measured": measured, "goal": goal, "unit": unit, "at_most": at_most, "met": met}),
            format!(
                "  {label:<42} {measured:>12.3} {unit:<10} goal {op} {goal} {}",
                if met { "met" } else { "NOT MET" }
            ),
        );
    }
}

async fn run(args: Args) -> Result<Report, String> {
    let mut report = Report {
        json: args.json,
        figures: serde_json::Map::new(),
        misses: Vec::new(),
        faults: Vec::new(),
    };
    if args.udp > 0 {
        procfs::raise_open_files_limit();
        udp::udp_phase(&args, &mut report).await?;
        return Ok(report);
    }
    // The fan-out phase runs after the idle Cores are closed: its streams need not fit beside them.
    let needed = (args.devices.max(args.storm) + args.publishers + args.subscribers as u64)
        .max(args.fanout + args.fanout_users)
        + 64;
    if let Some(limit) = procfs::raise_open_files_limit()
        && limit < needed
    {
        return Err(format!(
            "{needed} sockets need more open files than this process may hold ({limit}); raise it with \
             `ulimit -n {needed}` (the cloud started from here inherits it) or lower --devices"
        ));
    }
    let mut target = start_cloud(&args)?;
    let tck = procfs::ticks_per_second();
    let server_pem = std::fs::read_to_string(target.dir.join("default_key.pem"))
        .map_err(|e| format!("reading the server key in {}: {e}", target.dir.display()))?;
    let server_key =
        RsaPrivateKey::from_pem(&server_pem).map_err(|e| format!("server key: {e}"))?;
    let server_public = PublicKey::new(&server_key.public_key().as_ref_key())
        .map_err(|e| format!("server key: {e}"))?;
    let server_private =
        PrivateKey::new(&server_key.as_ref_key()).map_err(|e| format!("server key: {e}"))?;
    let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
    let device_key =
        RsaPrivateKey::generate(&mut rng, 1024).map_err(|e| format!("device key: {e}"))?;
    let device_pem = device_key
        .public_key()
        .to_spki_pem()
        .map_err(|e| format!("device key: {e}"))?;
    let keys = Arc::new(CoreKeys {
        device: PrivateKey::new(&device_key.as_ref_key())
            .map_err(|e| format!("device key: {e}"))?,
        device_public: PublicKey::new(&device_key.public_key().as_ref_key())
            .map_err(|e| format!("device key: {e}"))?,
        server: server_public,
    });

    report.figure(
        "setup",
        json!({
            "rsa_backend": RSA_BACKEND,
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "cloud_pid": target.pid,
            "devices": args.devices,
            "rtt_devices": args.rtt_devices,
        }),
        format!(
            "spark-load: cloud pid {:?}, devices {} (RSA backend {RSA_BACKEND}, {} CPUs shared with everything else \
             on this machine: compare ratios, not absolute figures)",
            target.pid,
            args.devices,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
    );

    let mut api = login(target.api).await?;
    let total = args.devices.max(args.storm) + args.publishers;
    let start = Instant::now();
    provision(
        target.api,
        &api.token,
        &device_pem,
        total,
        args.provision_connections.max(1),
        args.json,
    )
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    report.figure(
        "provisioning",
        json!({"count": total, "seconds": seconds, "connections": args.provision_connections}),
        format!(
            "provisioning: {total} devices in {seconds:.2} s over {} API connections, each answered once durable",
            args.provision_connections
        ),
    );
    report.goal(
        "provisioned_per_second",
        "devices provisioned per second (durable)",
        "1/s",
        total as f64 / seconds,
        5_000.0,
        false,
    );

    let device_stored = device_key.public_key();
    let (mut cores, ok) = connect_phase(
        &args,
        &target,
        &keys,
        &FloorKeys {
            server_private: &server_private,
            device: &device_stored,
        },
        tck,
        &mut api,
        &mut report,
    )
    .await?;
    calls_phase(&args, &target, &mut api, &mut report, &mut cores, ok).await?;
    let mut one_subscriber = None;
    if args.publishers > 0 {
        one_subscriber = events_phase(&args, &target, &keys, tck, &mut api, &mut report).await?;
    }
    if args.subscribers > 0 {
        subscribers_phase(&args, &target, &mut api, &mut report).await?;
    }
    for core in cores {
        core.abort();
    }
    if args.fanout > 0 {
        fanout_phase(
            &args,
            &target,
            &keys,
            &device_pem,
            tck,
            one_subscriber,
            &mut api,
            &mut report,
        )
        .await?;
    }
    if args.storm > 0 {
        storm_phase(
            &args,
            &mut target,
            &keys,
            &server_private,
            tck,
            &api.token,
            &mut report,
        )
        .await?;
    }
    drop(target);
    Ok(report)
}

/// Connects `--devices` idle Cores: handshake rate and CPU, then the cloud's memory per idle device. Returns the
/// Cores' tasks and how many of them connected.
async fn connect_phase(
    args: &Args,
    target: &Target,
    keys: &Arc<CoreKeys>,
    floor_keys: &FloorKeys<'_>,
    tck: u64,
    api: &mut Api,
    report: &mut Report,
) -> Result<(Vec<JoinHandle<()>>, u64), String> {
    let server_private = floor_keys.server_private;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // After provisioning, the cloud's journal writer syncs the new device files a few at a time while no change
    // waits: that is provisioning's work, so the handshakes are measured once it is done and the cloud is quiet.
    // (The CPU test alone does not see it: fsync waits for the disk, and the writer used 6 ms of CPU in 250 ms,
    // under the quiet threshold, while it took 4% of the connect phase's CPU in a `perf` profile.)
    let synced = journal_synced(&target.dir).await;
    // The RSA floor paced as the cloud's handshakes are (one pair of private-key operations, then a wait), first
    // on the settled machine, then beside the connect phase: what the CPUs' sharing alone adds to the same work.
    let paced_quiet = PacedFloor::start(server_private, &keys.server).and_then(|p| {
        std::thread::sleep(Duration::from_secs(3));
        p.stop()
    });
    let quiet = settle(target.pid, tck).await;
    let paced_busy = PacedFloor::start(server_private, &keys.server);
    let threads_before = target.pid.and_then(procfs::threads_cpu_ns_by_name);
    let switches_before = target.pid.and_then(procfs::context_switches);
    let before = sample(target.pid);
    let sources = if args.sources == 0 {
        u32::try_from(args.devices / 20_000 + 1).unwrap_or(1)
    } else {
        args.sources
    };
    let fleet = Arc::new(Fleet::default());
    let bar = progress(args.json, args.devices, "connect");
    let start = Instant::now();
    let (cores, ups) = start_idle_cores(
        args.devices,
        sources,
        args.concurrency,
        target.device,
        keys,
        &fleet,
        Retry {
            interval: Duration::ZERO,
        },
        &bar,
    )
    .await?;
    let mut failed = Vec::new();
    for up in ups {
        if let Err(e) = up.await.map_err(|e| e.to_string())? {
            failed.push(e);
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let after = sample(target.pid);
    let threads_after = target.pid.and_then(procfs::threads_cpu_ns_by_name);
    let switches_after = target.pid.and_then(procfs::context_switches);
    let paced_busy = paced_busy.and_then(PacedFloor::stop);
    let ok = args.devices - failed.len() as u64;
    if let Some(first) = failed.first() {
        report.fault(format!("{} Cores failed to connect", failed.len()));
        report.figure(
            "connect_failures",
            json!({"count": failed.len(), "first": first}),
            format!("  {} Cores failed to connect; first: {first}", failed.len()),
        );
    }
    report.figure(
        "handshakes",
        json!({"count": ok, "seconds": elapsed.as_secs_f64(), "concurrency": args.concurrency,
               "journal_synced_after_ms": synced.map(ms), "cloud_quiet_after_ms": quiet.map(ms)}),
        format!(
            "connect: {ok} Cores in {:.2} s ({} handshakes in flight; the cloud's journal was synced {} and the \
             cloud quiet {} before)",
            elapsed.as_secs_f64(),
            args.concurrency,
            synced.map_or("not within 120 s".to_owned(), |d| format!("after {:.1} s", d.as_secs_f64())),
            quiet.map_or("only 30 s".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
        ),
    );
    // Not a goal of its own: with the cloud and the Cores on the same two CPUs, the rate says how fast both sides
    // together run the RSA; the cloud's share is the CPU time per handshake below.
    let rate = ok as f64 / elapsed.as_secs_f64();
    report.figure(
        "handshakes_per_second",
        json!(rate),
        format!(
            "  {:<42} {rate:>12.1} 1/s        (cloud and Cores on the same CPUs)",
            "handshakes per second (Node: 1,190)"
        ),
    );
    let mut cloud_cpu = None;
    if let (Some(b), Some(a)) = (before, after)
        && ok > 0
    {
        let cpu = procfs::ticks_to_duration(a.cpu_ticks - b.cpu_ticks, tck);
        report.figure(
            "cpu_ms_per_handshake",
            json!(ms(cpu) / ok as f64),
            format!(
                "  {:<42} {:>12.3} ms         (Node: 0.8 ms)",
                "cloud CPU per handshake",
                ms(cpu) / ok as f64
            ),
        );
        cloud_cpu = Some(cpu / u32::try_from(ok).unwrap_or(u32::MAX));
    }
    let floor_runs = rsa_floor(server_private, &keys.server);
    if let Some(f) = floor_runs {
        report.figure(
            "rsa_floor_ms",
            json!(ms(f.median)),
            format!(
                "  {:<42} {:>12.3} ms         (2 RSA-{} private-key operations, same backend, this process; \
                 median of 3 batches, {:.3}-{:.3})",
                "reference: RSA floor per handshake",
                ms(f.median),
                server_private.modulus_len() * 8,
                ms(f.low),
                ms(f.high)
            ),
        );
    }
    let floor = floor_runs.map(|f| f.median);
    if let (Some(cpu), Some(floor)) = (cloud_cpu, floor) {
        report.goal(
            "cpu_per_handshake_over_floor",
            "cloud CPU per handshake / RSA floor",
            "x",
            cpu.as_secs_f64() / floor.as_secs_f64(),
            1.05,
            true,
        );
    }
    if let (Some(b), Some(a)) = (&threads_before, &threads_after)
        && ok > 0
    {
        report_cpu_by_thread(report, &procfs::cpu_ns_used_by_name(b, a), ok);
    }
    if let (Some(b), Some(a)) = (switches_before, switches_after)
        && ok > 0
    {
        let s = a.since(b);
        let per = |n: u64| n as f64 / ok as f64;
        report.figure(
            "context_switches_per_handshake",
            json!({"voluntary": per(s.voluntary), "preempted": per(s.preempted)}),
            format!(
                "  {:<42} {:>12.2}            ({:.2} waits for input or a lock, {:.2} preemptions by another \
                 runnable thread: the Cores share these CPUs)",
                "cloud context switches per handshake",
                per(s.voluntary + s.preempted),
                per(s.voluntary),
                per(s.preempted)
            ),
        );
    }
    let sockets = measure_socket_floor().await;
    report_socket_floor(report, cloud_cpu, floor, sockets.as_ref().ok().copied());
    if let Err(e) = &sockets {
        report.fault(e.clone());
    }
    let public = public_op_cost(floor_keys.device);
    if let (Some(rsa), Ok(sockets), Some(public)) = (floor, sockets, public) {
        report_unavoidable_work(report, cloud_cpu, rsa, sockets, public);
        if let (Some(quiet), Some(busy)) = (paced_quiet, paced_busy) {
            report_paced_floor(report, cloud_cpu, quiet, busy, sockets, public);
        }
    }
    // Let the last Describe answers and online events settle before reading memory.
    let (settled, idle, connected) = api
        .idle_sample(target.pid, ok, Duration::from_secs(30))
        .await?;
    if !settled {
        report.figure(
            "connected_mismatch",
            json!({"cloud": connected, "cores": ok}),
            format!("  the cloud counts {connected} connected devices, {ok} Cores are up"),
        );
    }
    if let (Some(b), Some(i)) = (before, idle)
        && connected > 0
    {
        let per = (i.rss_kib.saturating_sub(b.rss_kib)) as f64 * 1024.0 / connected as f64;
        report.figure(
            "rss",
            json!({"before_kib": b.rss_kib, "idle_kib": i.rss_kib, "connected": connected}),
            format!(
                "  cloud RSS {} KiB before, {} KiB with {connected} idle devices",
                b.rss_kib, i.rss_kib
            ),
        );
        report.goal(
            "rss_bytes_per_idle_device",
            "RSS per connected idle device (Node: 21-23 KB)",
            "bytes",
            per,
            2048.0,
            true,
        );
        report.goal(
            "idle_devices_held",
            "idle devices held in one process",
            "devices",
            connected as f64,
            100_000.0,
            false,
        );
    }

    Ok((cores, ok))
}

/// Times `--calls` sequential function calls over `--rtt-devices` connected Cores (the others are stopped).
async fn calls_phase(
    args: &Args,
    target: &Target,
    api: &mut Api,
    report: &mut Report,
    cores: &mut Vec<JoinHandle<()>>,
    ok: u64,
) -> Result<(), String> {
    let keep = if args.rtt_devices == 0 {
        ok
    } else {
        args.rtt_devices.min(ok)
    } as usize;
    for core in cores.drain(keep..) {
        core.abort();
    }
    api.wait_for(Duration::from_secs(30), |h| {
        h["connected"].as_u64() == Some(keep as u64)
    })
    .await?;
    if keep > 0 && args.calls > 0 {
        let mut client = Client::connect(target.api)
            .await
            .map_err(|e| e.to_string())?;
        let auth = format!("Authorization: Bearer {}", api.token);
        let paths: Vec<String> = (0..keep as u64)
            .map(|n| format!("/v1/devices/{}/{FUNCTION}", core_id(n)))
            .collect();
        let bar = progress(args.json, args.calls as u64, "calls");
        let mut times = Vec::with_capacity(args.calls);
        let warmup = 200.min(args.calls);
        let mut bad = 0usize;
        for i in 0..args.calls + warmup {
            let path = &paths[i % keep];
            let t = Instant::now();
            let r = client
                .request("POST", path, &[&auth], Some("arg=D7%2CHIGH"))
                .await
                .map_err(|e| e.to_string())?;
            let rtt = t.elapsed();
            let good = r.status == 200
                && r.json().and_then(|v| v["return_value"].as_i64())
                    == Some(i64::from(FUNCTION_RESULT));
            if !good {
                bad += 1;
            }
            if i >= warmup {
                times.push(rtt);
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        times.sort_unstable();
        let median = quantile(&times, 0.5).unwrap_or_default();
        let p99 = quantile(&times, 0.99).unwrap_or_default();
        if bad > 0 {
            report.fault(format!("{bad} function calls failed"));
        }
        report.figure(
            "calls",
            json!({"count": times.len(), "failed": bad, "devices": keep, "max_ms": ms(*times.last().unwrap_or(&Duration::ZERO))}),
            format!(
                "calls: {} sequential function calls over {keep} connected Cores, {bad} failed",
                times.len()
            ),
        );
        report.goal(
            "call_rtt_median_ms",
            "call round trip, median (Node: 0.97 ms @100)",
            "ms",
            ms(median),
            0.3,
            true,
        );
        report.goal(
            "call_rtt_p99_ms",
            "call round trip, p99 (Node: 3.4 ms @100)",
            "ms",
            ms(p99),
            1.0,
            true,
        );
    }

    Ok(())
}

/// `--publishers` Cores publish as fast as one subscriber takes their events, for `--event-seconds`. Returns the
/// subscriber's events per second.
async fn events_phase(
    args: &Args,
    target: &Target,
    keys: &Arc<CoreKeys>,
    tck: u64,
    api: &mut Api,
    report: &mut Report,
) -> Result<Option<f64>, String> {
    use spark_load::ceiling::{EventCost, us_per_event};
    let stream = EventStream::open(target.api, &format!("/v1/events/{EVENT_NAME}"), &api.token)
        .await
        .map_err(|e| e.to_string())?;
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let subscriber_ticks = Arc::new(AtomicU64::new(0));
    let reader = stream
        .count_on_thread_timed(
            Arc::clone(&received),
            Arc::clone(&stop),
            Arc::clone(&subscriber_ticks),
        )
        .map_err(|e| e.to_string())?;
    let sent = Arc::new(AtomicU64::new(0));
    let pace = cores::Pace {
        sent: Arc::clone(&sent),
        received: Arc::clone(&received),
        window: if args.event_window == 0 {
            u64::MAX / 2
        } else {
            args.event_window
        },
    };
    let publishers = start_publishers(
        target.device,
        keys,
        &stop,
        &pace,
        (0..args.publishers).map(|p| (args.devices + p, cores::Topic::public_ticks())),
    )
    .await?;
    // A second of warm-up, then the measured window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h0 = api.health().await?;
    // The tool's own CPU time is read beside the cloud's: all of this process (the publishers sealing, the
    // subscriber reading, the idle Cores' keep-alives, this task) and the subscriber's thread alone.
    let me = Some(std::process::id());
    let (r0, s0, c0, m0, u0, t0) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        sample(target.pid),
        sample(me),
        subscriber_ticks.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(args.event_seconds.max(0.5))).await;
    let (r1, s1, c1, m1, t1) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        sample(target.pid),
        sample(me),
        t0.elapsed(),
    );
    // The subscriber's thread tells its CPU time every 20 ms: wait for the first telling after the window.
    tokio::time::sleep(Duration::from_millis(40)).await;
    let u1 = subscriber_ticks.load(Ordering::Relaxed);
    let load = procfs::load_average().unwrap_or_else(|| "unknown".to_owned());
    let h1 = api.health().await?;
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.abort();
    }
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    let secs = t1.as_secs_f64();
    let stat = |h: &Value, k: &str| h["events"][k].as_u64().unwrap_or(0);
    let dropped = stat(&h1, "dropped") - stat(&h0, "dropped");
    if dropped > 0 {
        report.fault(format!("{dropped} events dropped for the one subscriber"));
    }
    let published = stat(&h1, "published") - stat(&h0, "published");
    let delivered = r1 - r0;
    let ticks = |a: Option<Sample>, b: Option<Sample>| match (a, b) {
        (Some(a), Some(b)) => Some(b.cpu_ticks.saturating_sub(a.cpu_ticks)),
        _ => None,
    };
    let cloud_us = ticks(c0, c1).and_then(|t| us_per_event(t, tck, published));
    let tool_us = ticks(m0, m1).and_then(|t| us_per_event(t, tck, published));
    let subscriber_us = us_per_event(u1.saturating_sub(u0), tck, delivered);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let cost = EventCost {
        cpus,
        cloud_us: cloud_us.unwrap_or(f64::NAN),
        tool_us: tool_us.unwrap_or(f64::NAN),
    };
    let rate = delivered as f64 / secs;
    let ceiling = cost.ceiling_per_second();
    let fraction = cost.fraction_of_ceiling(rate);
    let goal = 1_000_000.0;
    report.figure(
            "events",
            json!({
                "publishers": args.publishers,
                "seconds": secs,
                "load_average": load,
                "sent_per_second": (s1 - s0) as f64 / secs,
                "published_per_second": published as f64 / secs,
                "dropped_for_subscriber": dropped,
                "cloud_cpu_us_per_event": cloud_us,
                "tool_cpu_us_per_event": tool_us,
                "subscriber_cpu_us_per_event": subscriber_us,
                "cpus": cpus,
                "ceiling_per_second": ceiling,
                "fraction_of_ceiling": fraction,
                "budget_us_per_event_for_goal": EventCost::budget_us(cpus, goal),
            }),
            format!(
                "events: {} publishers sent {:.0}/s, the cloud published {:.0}/s, {dropped} dropped for the slow \
                 subscriber (load average {load})\n  \
                 CPU per event: cloud {:.3} µs, tool {:.3} µs (of which the subscriber's thread {:.3} µs, the \
                 publishers and the rest {:.3} µs)\n  \
                 ceiling of this machine: {cpus} CPUs / ({:.3} + {:.3} µs) = {:.0}/s; achieved {rate:.0}/s = {:.2} \
                 of it\n  \
                 the goal of {goal:.0}/s on {cpus} CPUs leaves {:.3} µs per event for cloud and tool together",
                args.publishers,
                (s1 - s0) as f64 / secs,
                published as f64 / secs,
                cost.cloud_us,
                cost.tool_us,
                subscriber_us.unwrap_or(f64::NAN),
                cost.tool_us - subscriber_us.unwrap_or(f64::NAN),
                cost.cloud_us,
                cost.tool_us,
                ceiling.unwrap_or(f64::NAN),
                fraction.unwrap_or(f64::NAN),
                EventCost::budget_us(cpus, goal),
            ),
        );
    report.goal(
        "events_per_second",
        "events/s received by one subscriber (Node: 31,000)",
        "1/s",
        rate,
        goal,
        false,
    );
    Ok(Some(rate))
}

/// Reads one fan-out stream until `stop`, adding each event to `received` as it arrives; returns its tally.
async fn read_fanout(
    stream: EventStream,
    user: usize,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Received {
    use tokio::io::AsyncReadExt as _;
    let (mut stream, early) = stream.into_parts();
    let mut tally = StreamTally::new(user);
    tally.feed(&early);
    let mut counted = tally.received.total();
    received.fetch_add(counted, Ordering::Relaxed);
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                tally.feed(&buf[..n]);
                let total = tally.received.total();
                received.fetch_add(total - counted, Ordering::Relaxed);
                counted = total;
            }
            Err(_) => {}
        }
    }
    tally.received
}

/// `--fanout` streams over `--fanout-users` users, one publishing Core per user: deliveries per second, and an
/// account of every stream's events.
#[allow(clippy::too_many_arguments)] // the phase's inputs, as the other phases take them
async fn fanout_phase(
    args: &Args,
    target: &Target,
    keys: &Arc<CoreKeys>,
    device_pem: &str,
    tck: u64,
    one_subscriber: Option<f64>,
    api: &mut Api,
    report: &mut Report,
) -> Result<(), String> {
    // The idle Cores were closed: wait until the cloud let them go, so that the streams fit in its open files.
    api.wait_for(Duration::from_secs(60), |h| {
        h["connected"].as_u64() == Some(0)
    })
    .await?;
    let users = usize::try_from(args.fanout_users).map_err(|e| e.to_string())?;
    let first_id = args.devices.max(args.storm) + args.publishers;
    let mut tokens = Vec::with_capacity(users);
    for k in 0..users {
        let mut user = login_as(
            target.api,
            &format!("load-{}-fan{k}@local", std::process::id()),
        )
        .await?;
        let id = core_id(first_id + k as u64);
        provision_one(&mut user.client, &user.token, &id, device_pem).await?;
        tokens.push(user.token);
    }

    // The streams, opened 64 at a time; stream `i` belongs to user `i % users`.
    let path = format!("/v1/events/{}", fanout::PREFIX);
    let bar = progress(args.json, args.fanout, "fan-out streams");
    let mut streams: Vec<Option<EventStream>> = (0..args.fanout).map(|_| None).collect();
    let gate = Arc::new(Semaphore::new(64));
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..args.fanout as usize {
        let (gate, token, path, addr) = (
            Arc::clone(&gate),
            tokens[i % users].clone(),
            path.clone(),
            target.api,
        );
        opening.spawn(async move {
            let _slot = gate.acquire_owned().await;
            (i, EventStream::open(addr, &path, &token).await)
        });
    }
    while let Some(opened) = opening.join_next().await {
        let (i, stream) = opened.map_err(|e| e.to_string())?;
        streams[i] = Some(stream.map_err(|e| format!("fan-out stream {i}: {e}"))?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut per_user = vec![0u64; users];
    for i in 0..args.fanout as usize {
        per_user[i % users] += 1;
    }

    let received = Arc::new(AtomicU64::new(0));
    let stop_readers = Arc::new(AtomicBool::new(false));
    let readers: Vec<(usize, JoinHandle<Received>)> = streams
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i % users, s?)))
        .map(|(user, s)| {
            (
                user,
                tokio::spawn(read_fanout(
                    s,
                    user,
                    Arc::clone(&received),
                    Arc::clone(&stop_readers),
                )),
            )
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let window = if args.fanout_window == 0 {
        args.fanout * 32
    } else {
        args.fanout_window
    };
    let topics: Vec<cores::Topic> = per_user
        .iter()
        .enumerate()
        .map(|(k, &subscribers)| cores::Topic {
            name: fanout::private_name(k),
            visibility: Visibility::Private,
            public_every: args.fanout_public_every,
            public_name: fanout::PUBLIC_NAME.to_owned(),
            sent: Arc::new(AtomicU64::new(0)),
            public_sent: Arc::new(AtomicU64::new(0)),
            weight: subscribers,
            public_weight: args.fanout,
        })
        .collect();
    let pace = cores::Pace {
        sent: Arc::clone(&sent),
        received: Arc::clone(&received),
        window,
    };
    let publishers = start_publishers(
        target.device,
        keys,
        &stop,
        &pace,
        (first_id..).zip(topics.iter().cloned()),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h0 = api.health().await?;
    let (r0, c0, t0) = (
        received.load(Ordering::Relaxed),
        sample(target.pid),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(args.fanout_seconds.max(0.5))).await;
    let (r1, c1, secs) = (
        received.load(Ordering::Relaxed),
        sample(target.pid),
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        match tokio::time::timeout(Duration::from_secs(20), p).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(format!("fan-out publisher: {e}")),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("a fan-out publisher did not stop".into()),
        }
    }
    let private_sent: Vec<u64> = topics
        .iter()
        .map(|t| t.sent.load(Ordering::Relaxed))
        .collect();
    let public_sent: u64 = topics
        .iter()
        .map(|t| t.public_sent.load(Ordering::Relaxed))
        .sum();
    let expected: u64 = per_user
        .iter()
        .zip(&private_sent)
        .map(|(subs, sent)| subs * (sent + public_sent))
        .sum();
    // The last events drain: until every expected one arrived, or nothing arrives for 3 s.
    let (mut last, mut still) = (received.load(Ordering::Relaxed), Instant::now());
    while received.load(Ordering::Relaxed) < expected && still.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Relaxed);
        if now != last {
            (last, still) = (now, Instant::now());
        }
    }
    stop_readers.store(true, Ordering::Relaxed);
    let mut tallies = Vec::with_capacity(readers.len());
    for (user, r) in readers {
        tallies.push((user, r.await.map_err(|e| e.to_string())?));
    }
    let h1 = api.health().await?;
    let verdict = fanout::account(&private_sent, public_sent, &tallies);
    let stat = |h: &Value, k: &str| h["events"][k].as_u64().unwrap_or(0);
    let cloud_dropped = stat(&h1, "dropped") - stat(&h0, "dropped");
    let published = stat(&h1, "published") - stat(&h0, "published");
    let rate = (r1 - r0) as f64 / secs;
    let cpu_us_per_delivery = match (c0, c1) {
        (Some(a), Some(b)) if r1 > r0 => Some(
            ms(procfs::ticks_to_duration(b.cpu_ticks - a.cpu_ticks, tck)) * 1000.0
                / (r1 - r0) as f64,
        ),
        _ => None,
    };
    let floor_ratio = one_subscriber.map(|one| rate / one);
    report.figure(
        "fanout",
        json!({
            "streams": tallies.len(),
            "users": users,
            "public_every": args.fanout_public_every,
            "seconds": secs,
            "delivered_per_second": rate,
            "published_per_second": published as f64 / secs,
            "one_subscriber_per_second": one_subscriber,
            "ratio_to_one_subscriber": floor_ratio,
            "cloud_cpu_us_per_delivery": cpu_us_per_delivery,
            "private_sent": private_sent.iter().sum::<u64>(),
            "public_sent": public_sent,
            "expected": verdict.expected,
            "received": verdict.received,
            "missing": verdict.missing,
            "short_streams": verdict.short_subscribers,
            "extra": verdict.extra,
            "misdelivered": verdict.misdelivered,
            "cloud_dropped": cloud_dropped,
        }),
        format!(
            "fan-out: {} streams of {users} users, {:.0} events/s published, {:.0} deliveries/s ({:.2}x the \
             one-subscriber rate of this run, {:.2} µs cloud CPU each); {} of {} expected deliveries arrived, \
             {} missing over {} streams, {} misdelivered, {} duplicated, {cloud_dropped} dropped by the cloud",
            tallies.len(),
            published as f64 / secs,
            rate,
            floor_ratio.unwrap_or(f64::NAN),
            cpu_us_per_delivery.unwrap_or(f64::NAN),
            verdict.received,
            verdict.expected,
            verdict.missing,
            verdict.short_subscribers,
            verdict.misdelivered,
            verdict.extra,
        ),
    );
    report.goal(
        "fanout_per_second",
        "deliveries/s over the fan-out streams",
        "1/s",
        rate,
        100_000.0,
        false,
    );
    if !verdict.clean() || cloud_dropped > 0 {
        report.misses.push("fanout_none_dropped".into());
        report.fault(format!(
            "fan-out: {} missing, {} misdelivered, {} duplicated, {cloud_dropped} dropped",
            verdict.missing, verdict.misdelivered, verdict.extra
        ));
    }
    Ok(())
}

/// Opens and closes `--subscribers` event streams; the cloud's subscriber count must drop back.
async fn subscribers_phase(
    args: &Args,
    target: &Target,
    api: &mut Api,
    report: &mut Report,
) -> Result<(), String> {
    let base = match api
        .wait_for(Duration::from_secs(10), |h| {
            h["events"]["subscribers"].as_u64() == Some(0)
        })
        .await?
    {
        Some(_) => 0,
        None => api.subscribers().await?,
    };
    let mut streams = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        streams.push(
            EventStream::open(target.api, "/v1/events", &api.token)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let open = api.subscribers().await?;
    drop(streams);
    let freed = api
        .wait_for(Duration::from_secs(30), |h| {
            h["events"]["subscribers"].as_u64() == Some(base)
        })
        .await?;
    let after = api.subscribers().await?;
    let met = open == base + args.subscribers as u64 && freed.is_some();
    if !met {
        report.misses.push("closed_subscribers_freed".into());
        report.fault(format!(
            "{} streams open of {} opened, {after} still counted 30 s after closing them",
            open.saturating_sub(base),
            args.subscribers
        ));
    }
    report.figure(
        "closed_subscribers_freed",
        json!({"opened": args.subscribers, "counted_open": open, "counted_after_close": after,
                   "base": base, "freed_ms": freed.map(ms), "met": met}),
        format!(
            "  {:<42} {open} open -> {after} after closing {} streams{} {}",
            "closed subscribers freed",
            args.subscribers,
            freed.map_or(String::new(), |d| format!(" (in {:.1} ms)", ms(d))),
            if met { "met" } else { "NOT MET" }
        ),
    );
    Ok(())
}

/// The socket floor of this run: the server CPU of 2,000 bare TCP exchanges with the handshake's shape on a
/// runtime with one worker per CPU (see [`floor`]).
async fn measure_socket_floor() -> Result<Duration, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thread = std::thread::spawn(move || floor::socket_floor(floor::HANDSHAKE, 2_000, 64, cpus));
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the socket floor panicked".to_owned())?
}

/// The socket floor against the RSA floor, and the cloud's CPU per handshake against both together. When the
/// socket floor is more than 5% of the RSA floor, 1.05x the RSA floor alone is below what the kernel's TCP work
/// needs, and the line says so.
fn report_socket_floor(
    report: &mut Report,
    cloud_cpu: Option<Duration>,
    rsa: Option<Duration>,
    sockets: Option<Duration>,
) {
    let Some(sockets) = sockets else {
        return;
    };
    report.figure(
        "socket_floor_ms",
        json!(ms(sockets)),
        format!(
            "  {:<42} {:>12.3} ms         (server CPU of a bare TCP exchange with the handshake's messages, \
             tokio runtime, this process)",
            "reference: socket floor per handshake",
            ms(sockets)
        ),
    );
    let Some(rsa) = rsa else {
        return;
    };
    let share = sockets.as_secs_f64() / rsa.as_secs_f64();
    report.figure(
        "socket_floor_over_rsa_floor",
        json!(share),
        format!(
            "  {:<42} {share:>12.3} x          {}",
            "socket floor / RSA floor",
            if share > 0.05 {
                format!(
                    "(> 0.05: 1.05x the RSA floor leaves {:.3} ms for the TCP work that needs {:.3} ms)",
                    ms(rsa) * 0.05,
                    ms(sockets)
                )
            } else {
                "(<= 0.05: 1.05x the RSA floor covers the TCP work)".to_owned()
            }
        ),
    );
    if let Some(cpu) = cloud_cpu {
        report.figure(
            "cpu_per_handshake_over_rsa_and_socket_floor",
            json!(cpu.as_secs_f64() / (rsa + sockets).as_secs_f64()),
            format!(
                "  {:<42} {:>12.3} x          (RSA floor + socket floor = {:.3} ms)",
                "cloud CPU per handshake / both floors",
                cpu.as_secs_f64() / (rsa + sockets).as_secs_f64(),
                ms(rsa + sockets)
            ),
        );
    }
}

/// The cloud's CPU per handshake of the connect phase by thread name (the threads alive at its end; the device
/// runtime's are `spark-devices`), so that work other than the handshakes' shows apart.
fn report_cpu_by_thread(report: &mut Report, used: &[(String, u64)], handshakes: u64) {
    let per = |ns: u64| ns as f64 / 1e6 / handshakes as f64;
    let total: u64 = used.iter().map(|(_, ns)| ns).sum();
    report.figure(
        "cpu_ms_per_handshake_by_thread",
        Value::Object(
            used.iter()
                .map(|(name, ns)| (name.clone(), json!(per(*ns))))
                .collect(),
        ),
        format!(
            "  {:<42} {:>12.3} ms         ({})",
            "cloud CPU per handshake, by thread",
            per(total),
            used.iter()
                .take(4)
                .map(|(name, ns)| format!("{name} {:.4}", per(*ns)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
}

/// The handshake's unavoidable work (the two private-key operations, the bare socket exchange and the one
/// public-key operation, each measured in this run) against the RSA floor, beside the cloud's measured CPU: how
/// far the cloud is above what no implementation on this backend and kernel can avoid, and what 1.05x leaves.
fn report_unavoidable_work(
    report: &mut Report,
    cloud_cpu: Option<Duration>,
    rsa: Duration,
    sockets: Duration,
    public: PublicOpCost,
) {
    let unavoidable = rsa + sockets + public.loaded;
    let over = unavoidable.as_secs_f64() / rsa.as_secs_f64();
    report.figure(
        "public_op_ms",
        json!({"key_loaded_each_time": ms(public.loaded), "key_prepared": ms(public.prepared)}),
        format!(
            "  {:<42} {:>12.4} ms         (RSA-1024 encryption of the session key, the key loaded as the cloud \
             does each handshake; {:.4} ms with a key loaded before)",
            "reference: public-key operation",
            ms(public.loaded),
            ms(public.prepared)
        ),
    );
    report.figure(
        "unavoidable_over_rsa_floor",
        json!({"unavoidable_ms": ms(unavoidable), "over_rsa_floor": over,
               "goal_ms": ms(rsa) * 1.05}),
        format!(
            "  {:<42} {over:>12.3} x          (RSA floor {:.3} + socket floor {:.3} + public-key op {:.4} = {:.3} \
             ms; the goal 1.05 x {:.3} = {:.3} ms {} it)",
            "unavoidable work / RSA floor",
            ms(rsa),
            ms(sockets),
            ms(public.loaded),
            ms(unavoidable),
            ms(rsa),
            ms(rsa) * 1.05,
            if over <= 1.05 { "covers" } else { "is below" }
        ),
    );
    if let Some(cpu) = cloud_cpu {
        let above = cpu.as_secs_f64() - unavoidable.as_secs_f64();
        report.figure(
            "cpu_per_handshake_over_unavoidable",
            json!({"ratio": cpu.as_secs_f64() / unavoidable.as_secs_f64(), "above_ms": above * 1000.0}),
            format!(
                "  {:<42} {:>12.3} x          (the cloud's {:.3} ms is {:.3} ms above the unavoidable {:.3} ms)",
                "cloud CPU per handshake / unavoidable",
                cpu.as_secs_f64() / unavoidable.as_secs_f64(),
                ms(cpu),
                above * 1000.0,
                ms(unavoidable)
            ),
        );
    }
}

/// CPU time of a simulated Core's RSA work per handshake (its credentials sealed to the server key, the session key
/// opened with its own key and the signature checked), measured on this thread: what the Cores take from the same
/// CPUs as the cloud during a storm on one machine.
fn device_rsa_cost(keys: &CoreKeys) -> Option<Duration> {
    let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
    let block = keys.device.modulus_len();
    let server_block = keys.server.modulus_len();
    let device_public = &keys.device_public;
    let (mut ct, mut out, mut sealed) =
        (vec![0u8; block], vec![0u8; block], vec![0u8; server_block]);
    device_public
        .encrypt_pkcs1v15(&mut rng, &[7u8; 40], &mut ct)
        .ok()?;
    let rounds = 500u32;
    let start = procfs::thread_cpu_ns()?;
    for _ in 0..rounds {
        keys.server
            .encrypt_pkcs1v15(&mut rng, &[5u8; 52], &mut sealed)
            .ok()?;
        keys.device.decrypt_pkcs1v15(&mut rng, &ct, &mut out).ok()?;
        // The signature check is one more public-key operation of the server key.
        keys.server
            .encrypt_pkcs1v15(&mut rng, &[6u8; 20], &mut sealed)
            .ok()?;
    }
    let used = Duration::from_nanos(procfs::thread_cpu_ns()?.checked_sub(start)?);
    Some(used / rounds)
}

/// The reconnect storm: `--storm` Cores connected, the cloud killed and started again on its state directory and
/// ports, every Core reconnecting after a jittered pause. How long until all are back (against the pace the RSA
/// floor allows on this machine's CPUs), the REST API's round trips meanwhile, refused attempts, and the cloud's
/// memory at its peak.
async fn storm_phase(
    args: &Args,
    target: &mut Target,
    keys: &Arc<CoreKeys>,
    server_private: &PrivateKey,
    tck: u64,
    token: &str,
    report: &mut Report,
) -> Result<(), String> {
    if target.child.is_none() {
        report.figure(
            "storm",
            json!(null),
            "storm: skipped (it restarts the cloud: only one this tool started)".into(),
        );
        return Ok(());
    }
    let fleet = Arc::new(Fleet::default());
    let retry = Retry {
        interval: Duration::from_millis(args.retry_ms.max(1)),
    };
    // One loopback source per 2,000 Cores: from one source, each reconnect's ephemeral port search walks the
    // connections already made to the same port (`__inet_check_established` took a third of the tool's CPU in a
    // profile of a 19,000-Core storm), a cost of the simulation that real Cores, each from its own address, do
    // not have.
    let sources = match args.sources {
        0 => u32::try_from(args.storm / 2_000 + 1).unwrap_or(1),
        n => n,
    };
    let bar = progress(args.json, args.storm, "storm setup");
    let (cores, ups) = start_idle_cores(
        args.storm,
        sources,
        args.concurrency,
        target.device,
        keys,
        &fleet,
        retry,
        &bar,
    )
    .await?;
    for up in ups {
        let _ = up.await;
    }
    bar.finish_and_clear();
    // Cores whose first attempt failed retry on their own; wait until all are up before the restart.
    let limit = Duration::from_secs(60 + args.storm / 100);
    let start = Instant::now();
    while fleet.online.load(Ordering::Relaxed) < args.storm && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = fleet.online.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = sample(target.pid).map(|s| s.rss_kib);

    // The restart: kill, then start again on the same directory and ports.
    if let Some(child) = &mut target.child {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (api, device) = (target.api, target.device);
    let mut started = Err(String::new());
    for _ in 0..50 {
        started = spawn_cloud(args, target, api, device);
        if started.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started?;
    let t0 = Instant::now();
    let cpu0 = sample(target.pid);
    let sampler = target.pid.map(|pid| {
        storm::Sampler::start(
            pid,
            args.storm_trace.then_some(target.device),
            Arc::clone(&fleet),
        )
    });
    fleet.counting.store(true, Ordering::Relaxed);

    // The REST API meanwhile: one device's record, every 10 ms, on one keep-alive connection, from a thread and a
    // runtime of its own (the Cores' runtime is busy with their RSA and would delay the probe, not the cloud).
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = Arc::clone(&stop);
        let path = format!("/v1/devices/{}", core_id(0));
        let auth = format!("Authorization: Bearer {token}");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(runtime.block_on(async move {
                let mut times = Vec::new();
                let mut errors = 0u64;
                let mut client = None;
                while !stop.load(Ordering::Relaxed) {
                    if client.is_none() {
                        client = Client::connect(api).await.ok();
                    }
                    if let Some(c) = &mut client {
                        let t = Instant::now();
                        match c.request("GET", &path, &[&auth], None).await {
                            Ok(r) if r.status == 200 => times.push(t.elapsed()),
                            _ => {
                                errors += 1;
                                client = None;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (times, errors)
            }))
        })
    };
    let mut peak_kib = 0u64;
    let limit = Duration::from_secs(60 + args.storm / 50);
    while fleet.online.load(Ordering::Relaxed) < before && t0.elapsed() < limit {
        if let Some(s) = sample(target.pid) {
            peak_kib = peak_kib.max(s.rss_kib);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = t0.elapsed();
    let ticks = sampler.map(storm::Sampler::finish).unwrap_or_default();
    let online = fleet.online.load(Ordering::Relaxed);
    if online < before {
        report.fault(format!(
            "storm: {} of {before} Cores not back",
            before - online
        ));
    }
    let cpu1 = sample(target.pid);
    let rss_after = cpu1.map(|s| s.rss_kib);
    stop.store(true, Ordering::Relaxed);
    let (mut times, errors) = tokio::task::spawn_blocking(move || prober.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the REST probe panicked".to_owned())??;
    for core in cores {
        core.abort();
    }
    times.sort_unstable();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let rate = online as f64 / back.as_secs_f64();
    let floor = rsa_floor(server_private, &keys.server).map(|f| f.median);
    let device = device_rsa_cost(keys);
    let floor_pace = floor.map(|f| cpus / f.as_secs_f64());
    let shared_pace = match (floor, device) {
        (Some(f), Some(d)) => Some(cpus / (f + d).as_secs_f64()),
        _ => None,
    };
    report.figure(
        "storm",
        json!({
            "cores": args.storm, "online_before": before, "online_after": online,
            "seconds": back.as_secs_f64(), "handshakes_per_second": rate,
            "floor_pace": floor_pace, "shared_cpu_pace": shared_pace,
            "device_rsa_ms": device.map(ms), "refused_attempts": fleet.refused.load(Ordering::Relaxed),
            "rest_samples": times.len(), "rest_errors": errors,
            "rss_before_kib": rss_before, "rss_peak_kib": peak_kib, "rss_after_kib": rss_after,
            "retry_ms": args.retry_ms,
        }),
        format!(
            "storm: {online} of {before} Cores back {:.2} s after the restart ({rate:.0} handshakes/s; the RSA \
             floor allows {:.0}/s on {cpus} CPUs, {:.0}/s with the Cores' own RSA on the same CPUs); {} attempts \
             refused; cloud RSS {} KiB before, {peak_kib} KiB at the peak, {} KiB after",
            back.as_secs_f64(),
            floor_pace.unwrap_or(f64::NAN),
            shared_pace.unwrap_or(f64::NAN),
            fleet.refused.load(Ordering::Relaxed),
            rss_before.unwrap_or(0),
            rss_after.unwrap_or(0),
        ),
    );
    let sockets = measure_socket_floor().await.ok();
    storm_ceiling(report, rate, cpus, floor, device, sockets);
    storm_timeline(args, &fleet, &ticks, tck, report);
    // On a machine shared with other work the wall-clock pace says how much CPU the cloud got; its CPU per
    // handshake during the storm says how it used it.
    if let (Some(a), Some(b), Some(f)) = (cpu0, cpu1, floor)
        && online > 0
    {
        let cpu = procfs::ticks_to_duration(b.cpu_ticks.saturating_sub(a.cpu_ticks), tck);
        report.figure(
            "storm_cpu_per_handshake_over_floor",
            json!(cpu.as_secs_f64() / online as f64 / f.as_secs_f64()),
            format!(
                "  {:<42} {:>12.3} x          (cloud CPU during the storm per Core back / RSA floor)",
                "storm CPU per handshake / RSA floor",
                cpu.as_secs_f64() / online as f64 / f.as_secs_f64()
            ),
        );
    }
    if let Some(pace) = floor_pace {
        report.goal(
            "storm_pace_over_floor",
            "storm handshakes/s / RSA floor pace",
            "x",
            rate / pace,
            0.9,
            false,
        );
    }
    report.goal(
        "storm_rest_p99_ms",
        "REST round trip during the storm, p99",
        "ms",
        ms(quantile(&times, 0.99).unwrap_or(Duration::MAX)),
        50.0,
        true,
    );
    report.goal(
        "storm_refused_in_a_row",
        "most attempts in a row one Core was refused",
        "attempts",
        fleet.most_refused_in_a_row.load(Ordering::Relaxed) as f64,
        1.0,
        true,
    );
    if let Some(b) = rss_before {
        report.goal(
            "storm_peak_rss_over_before",
            "cloud RSS at the storm's peak / before the kill",
            "x",
            peak_kib as f64 / b.max(1) as f64,
            1.5,
            true,
        );
    }
    Ok(())
}

/// The pace the machine allows a storm, from this run's figures: the CPUs over the CPU every handshake needs on
/// them (the cloud's RSA floor and socket floor, the Cores' own RSA and, for their side of the sockets, the socket
/// floor again), and the achieved pace against the goal's pace and that ceiling.
fn storm_ceiling(
    report: &mut Report,
    rate: f64,
    cpus: f64,
    rsa: Option<Duration>,
    device: Option<Duration>,
    sockets: Option<Duration>,
) {
    let (Some(rsa), Some(device), Some(sockets)) = (rsa, device, sockets) else {
        return;
    };
    let per = rsa + sockets + device + sockets;
    let ceiling = cpus / per.as_secs_f64();
    let goal = 0.9 * cpus / rsa.as_secs_f64();
    report.figure(
        "storm_ceiling",
        json!({
            "cpus": cpus, "rsa_floor_ms": ms(rsa), "socket_floor_ms": ms(sockets), "cores_rsa_ms": ms(device),
            "cpu_ms_per_handshake_on_the_machine": ms(per), "ceiling_per_second": ceiling,
            "goal_pace_per_second": goal, "pace_over_goal_pace": rate / goal, "pace_over_ceiling": rate / ceiling,
        }),
        format!(
            "  storm ceiling: {cpus} CPUs / (RSA floor {:.3} + socket floor {:.3} (cloud) + Cores' RSA {:.3} + \
             socket floor {:.3} (Cores)) ms = {ceiling:.0}/s = {:.2}x the floor's pace; goal's pace 0.9 x {cpus} / \
             {:.3} ms = {goal:.0}/s\n  storm pace {rate:.0}/s = {:.3}x the goal's pace, {:.3}x the ceiling",
            ms(rsa),
            ms(sockets),
            ms(device),
            ms(sockets),
            ceiling * rsa.as_secs_f64() / cpus,
            ms(rsa),
            rate / goal,
            rate / ceiling,
        ),
    );
}

/// What the storm's samples say: the CPUs the cloud used and waited for, the tool's, the accept queue, why attempts
/// failed; with `--storm-trace`, the timeline.
fn storm_timeline(
    args: &Args,
    fleet: &Fleet,
    ticks: &[storm::Tick],
    tck: u64,
    report: &mut Report,
) {
    let reasons = fleet.reasons.lock().map(|r| r.clone()).unwrap_or_default();
    let Some(sum) = storm::summarize(ticks, tck) else {
        return;
    };
    let lines = storm::timeline(ticks, tck);
    report.figure(
        "storm_timeline",
        json!({
            "seconds": sum.seconds, "cloud_cpus": sum.cloud_cpus, "cloud_waiting": sum.cloud_waiting,
            "tool_cpus": sum.tool_cpus,
            "max_accept_queue": sum.max_accept_queue.map(|q| q.waiting),
            "somaxconn": storm::somaxconn(),
            "listen_overflows": sum.listen_overflows,
            "attempts": fleet.attempts.load(Ordering::Relaxed),
            "handshakes": fleet.handshakes.load(Ordering::Relaxed),
            "failures": reasons.iter().map(|(r, n)| json!({"reason": r, "count": n})).collect::<Vec<_>>(),
            "ticks": lines,
        }),
        format!(
            "  storm samples: over {:.2} s the cloud used {:.2} CPUs and had {:.2} threads waiting for one; the tool \
             used {:.2} CPUs; accept queue at most {} (somaxconn {}); {} listen overflows on the machine; {} attempts, {} \
             handshakes{}",
            sum.seconds,
            sum.cloud_cpus,
            sum.cloud_waiting,
            sum.tool_cpus,
            sum.max_accept_queue
                .map_or("not read (--storm-trace reads it)".to_owned(), |q| q.waiting.to_string()),
            storm::somaxconn().unwrap_or(0),
            sum.listen_overflows,
            fleet.attempts.load(Ordering::Relaxed),
            fleet.handshakes.load(Ordering::Relaxed),
            reasons
                .iter()
                .map(|(r, n)| format!("\n    failed {n}x: {r}"))
                .collect::<String>(),
        ),
    );
    if args.storm_trace && !args.json {
        for line in lines {
            println!("{line}");
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(spec) = &args.udp_shard {
        return udp::shard_main(spec);
    }
    let json = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spark-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            if json {
                let mut v = Value::Object(report.figures);
                v["goals_missed"] = json!(report.misses);
                v["faults"] = json!(report.faults);
                println!("{v}");
            } else if report.misses.is_empty() {
                println!("every goal met");
            } else {
                println!("goals not met: {}", report.misses.join(", "));
            }
            if report.faults.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("spark-load: {}", report.faults.join("; "));
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("spark-load: {e}");
            ExitCode::FAILURE
        }
    }
}
