//! Issue 19's figures: real `spark-cloud` processes sharing a real PostgreSQL registry (`--store`) and a real
//! `nats-server` bus (`--bus`), against a lone node on its state directory measured in the same run.
//!
//! The Cores run in this process as spark-load runs them (`DeviceConnection` on the tokio driver, one shared device
//! key), provisioned through the REST API. Phases:
//!
//! 1. the RSA floor: the cloud's two private-key operations per handshake, on this thread (CPU time);
//! 2. the lone node (`--dir`, `--bus local`): handshakes of [`DEVICES`] Cores, its CPU per handshake, RSS per idle
//!    device, call round trips at [`DEVICES`] connected devices and events per second to one subscriber;
//! 3. clusters of 1, 2 and 3 nodes (`--store postgres://… --bus nats://…`), fresh processes each: the same Cores
//!    spread evenly, handshakes per second, CPU per handshake of each node, of PostgreSQL's processes and of
//!    `nats-server`, RSS per idle device of each node; with 2 nodes, calls through node A's REST API to the Cores
//!    node B holds (beside B's own API calling them) and events published on A to one subscriber on B.
//!
//! Every figure is printed beside its same-run reference and the goal. Criterion then times one same-node and one
//! cross-node call. A missing `postgres`/`initdb` or `nats-server` skips the cluster phases with a line saying so.

#[path = "../tests/support/nats.rs"]
mod nats;
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use spark_cloud::store::{PostgresStore, Store};
use spark_load::cores::{self, CoreKeys, Fleet, Retry};
use spark_load::http::{Client, EventStream};
use spark_load::{PrivateKey, PublicKey, core_id, id_bytes, procfs, quantile};
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_protocol::crypto::{RsaPrivate, RsaPublic};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

/// Idle Cores connected in every phase.
const DEVICES: u64 = 1_000;
/// Timed calls per case (after the untimed warm-up: [`WARMUP_CALLS`], or one call per Core if there are more).
const CALLS: usize = 1_000;
/// Untimed calls at least: every Core is called once through each API before the timing, so that every case is
/// timed as it runs steady (each node holds the called Cores' records and the token in memory; a first call to a
/// Core through a node, or one after its record's time-to-live, asks the store once).
const WARMUP_CALLS: usize = 100;
/// Publishing Cores of the event phases (ids after the idle ones).
const PUBLISHERS: u64 = 4;
/// Events the publishers may run ahead of the subscriber.
const EVENT_WINDOW: u64 = 4096;
const EVENT_SECONDS: f64 = 3.0;
/// Handshakes the Cores start at once.
const HANDSHAKES_AT_ONCE: usize = 64;
const SERVER_KEY: &str = include_str!("../tests/fixtures/server_key_2048.pem");
const DEVICE_KEY: &str = include_str!("../tests/fixtures/device_a.pem");
const FUNCTION_ARG: &str = "arg=D7%2CHIGH";

/// One `spark-cloud` process.
struct Node {
    child: Child,
    pid: u32,
    api: SocketAddr,
    device: SocketAddr,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a cluster node finds its registry and bus.
struct Shared<'a> {
    store: &'a str,
    bus: &'a str,
}

/// Starts `spark-cloud` on `dir` (a lone node, or a cluster node named `name` on `shared`) and reads its addresses.
fn start_node(dir: &Path, name: &str, shared: Option<&Shared<'_>>) -> Result<Node, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    if shared.is_none() {
        std::fs::write(dir.join("default_key.pem"), SERVER_KEY).map_err(|e| e.to_string())?;
    }
    let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark-cloud"));
    command
        .arg("--dir")
        .arg(dir)
        .args(["--http", "127.0.0.1:0", "--device", "127.0.0.1:0"])
        .args(["--key-bits", "2048", "--max-devices", "8192"])
        .args(["--max-http", "1024", "--max-http-per-address", "1024"]);
    if let Some(s) = shared {
        command.args(["--store", s.store, "--bus", s.bus, "--node-id", name]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start spark-cloud: {e}"))?;
    let pid = child.id();
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let mut node = Node {
        child,
        pid,
        api: SocketAddr::from(([127, 0, 0, 1], 0)),
        device: SocketAddr::from(([127, 0, 0, 1], 0)),
        dir: dir.to_owned(),
    };
    let v: serde_json::Value = serde_json::from_str(&line).map_err(|_| {
        format!(
            "node {name} did not start: {}",
            std::fs::read_to_string(node.dir.join("log")).unwrap_or_default()
        )
    })?;
    let addr = |k: &str| v[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
    node.api = addr("http").ok_or("no http address")?;
    node.device = addr("device").ok_or("no device address")?;
    Ok(node)
}

/// A process's CPU ticks and RSS, or zeros once it is gone.
fn sample(pid: u32) -> procfs::Sample {
    procfs::sample(pid).unwrap_or(procfs::Sample {
        cpu_ticks: 0,
        rss_kib: 0,
    })
}

/// The pid of the running `program` whose command line names `port` (the servers the support modules started).
fn find_process(program: &str, port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let mut args = cmdline.split(|&b| b == 0).map(String::from_utf8_lossy);
        let first = args.next()?;
        (first.ends_with(program) && args.any(|a| a == port)).then_some(pid)
    })
}

/// CPU ticks of `root` and its direct children (PostgreSQL's postmaster and its backends and workers).
fn tree_ticks(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Field 4 (the parent) is the second after the command name's closing parenthesis.
            let ppid: u32 = stat[stat.rfind(')')? + 1..]
                .split_ascii_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (pid == root || ppid == root).then(|| procfs::parse_stat(&stat))?
        })
        .sum()
}

/// The cloud's two RSA private-key operations of a handshake (decrypt the credentials, sign the session key) with
/// the server key, on this thread: CPU time per handshake.
fn rsa_floor(tck: u64) -> Result<Duration, String> {
    let key = RsaPrivateKey::from_pem(SERVER_KEY).map_err(|e| e.to_string())?;
    let private = PrivateKey::new(&key.as_ref_key()).map_err(|e| e.to_string())?;
    let public = PublicKey::new(&key.public_key().as_ref_key()).map_err(|e| e.to_string())?;
    let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
    let n = private.modulus_len();
    let (mut sealed, mut opened, mut signature) = (vec![0; n], vec![0; n], vec![0; n]);
    public
        .encrypt_pkcs1v15(&mut rng, &[5u8; 52], &mut sealed)
        .map_err(|e| e.to_string())?;
    let rounds = 400u32;
    let start = procfs::thread_cpu_ticks().ok_or("no thread CPU time")?;
    for _ in 0..rounds {
        private
            .decrypt_pkcs1v15(&mut rng, &sealed, &mut opened)
            .map_err(|e| e.to_string())?;
        private
            .sign_pkcs1v15_unprefixed(&mut rng, &[3u8; 20], &mut signature)
            .map_err(|e| e.to_string())?;
    }
    let used = procfs::thread_cpu_ticks().ok_or("no thread CPU time")? - start;
    Ok(procfs::ticks_to_duration(used, tck) / rounds)
}

/// A REST client with a token.
struct Api {
    addr: SocketAddr,
    client: Client,
    auth: String,
}

impl Api {
    async fn connect(addr: SocketAddr, token: &str) -> Result<Api, String> {
        Ok(Api {
            addr,
            client: Client::connect(addr).await.map_err(|e| e.to_string())?,
            auth: format!("Authorization: Bearer {token}"),
        })
    }

    /// One request; on a connection the cloud closed meanwhile (idle keep-alive), once more on a new one.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&str>,
    ) -> Result<spark_load::http::Response, String> {
        if let Ok(r) = self.client.request(method, path, &[&self.auth], form).await {
            return Ok(r);
        }
        self.client = Client::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .request(method, path, &[&self.auth], form)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    /// Devices the node holds now (`/server/health`'s `connected`).
    async fn connected(&mut self) -> Result<u64, String> {
        let r = self.send("GET", "/server/health", None).await?;
        r.json()
            .and_then(|v| v["connected"].as_u64())
            .ok_or_else(|| format!("/server/health answered {}", r.status))
    }

    /// Calls the Cores' function on `id`; whether it answered as the Cores do.
    async fn call(&mut self, id: &str) -> Result<bool, String> {
        let path = format!("/v1/devices/{id}/{}", cores::FUNCTION);
        let r = self.send("POST", &path, Some(FUNCTION_ARG)).await?;
        Ok(r.status == 200
            && r.json().and_then(|v| v["return_value"].as_i64())
                == Some(i64::from(cores::FUNCTION_RESULT)))
    }
}

/// Signs a user up on `api` and returns its token.
async fn sign_up(api: SocketAddr) -> Result<String, String> {
    let mut client = Client::connect(api).await.map_err(|e| e.to_string())?;
    client
        .sign_up("scale@bench", "scale-bench-password", "bench")
        .await
}

/// Provisions ids `0..count` with the device key through `api`, over 16 connections; returns the time it took.
async fn provision(
    api: SocketAddr,
    token: &str,
    pem: &str,
    count: u64,
) -> Result<Duration, String> {
    const CONNECTIONS: u64 = 16;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for first in 0..CONNECTIONS {
        let (token, pem) = (token.to_owned(), pem.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut api = Api::connect(api, &token).await?;
            for n in (first..count).step_by(CONNECTIONS as usize) {
                let id = core_id(n);
                let form =
                    serde_urlencoded::to_string([("deviceID", id.as_str()), ("publicKey", &pem)])
                        .map_err(|e| e.to_string())?;
                let r = api
                    .send("POST", &format!("/v1/provisioning/{id}"), Some(&form))
                    .await?;
                if r.status != 200 {
                    return Err(format!("provisioning {id}: {}", r.status));
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(start.elapsed())
}

/// Waits (10 s at most) until every one of `pids` used under 10 ms of CPU in 250 ms.
async fn settle(pids: &[u32]) {
    let tck = procfs::ticks_per_second();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last: Vec<u64> = pids.iter().map(|&p| sample(p).cpu_ticks).collect();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now: Vec<u64> = pids.iter().map(|&p| sample(p).cpu_ticks).collect();
        let busy = now.iter().zip(&last).any(|(n, l)| {
            procfs::ticks_to_duration(n.saturating_sub(*l), tck) >= Duration::from_millis(10)
        });
        if !busy {
            return;
        }
        last = now;
    }
}

/// Connects idle Cores `0..DEVICES`, Core `n` to `targets[n % targets.len()]`, [`HANDSHAKES_AT_ONCE`] at a time;
/// returns their tasks and the time until every one had its session.
async fn connect_cores(
    targets: &[SocketAddr],
    keys: &Arc<CoreKeys>,
) -> Result<(Vec<JoinHandle<()>>, Duration), String> {
    let gate = Arc::new(Semaphore::new(HANDSHAKES_AT_ONCE));
    let fleet = Arc::new(Fleet::default());
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut ups = Vec::new();
    for n in 0..DEVICES {
        let permit = Arc::clone(&gate)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel();
        tasks.push(tokio::spawn(cores::idle_core(
            id_bytes(&core_id(n)).ok_or("bad id")?,
            targets[n as usize % targets.len()],
            None,
            Arc::clone(keys),
            tx,
            Arc::clone(&fleet),
            Retry {
                interval: Duration::ZERO,
            },
        )));
        ups.push(tokio::spawn(async move {
            let r = rx.await.unwrap_or_else(|_| Err("task ended".into()));
            drop(permit);
            r
        }));
    }
    for up in ups {
        up.await.map_err(|e| e.to_string())??;
    }
    Ok((tasks, start.elapsed()))
}

/// Median and p99 of [`CALLS`] sequential calls through each of `apis` to the Cores `ids` in turn, the APIs
/// taking turns call by call (so that the machine's other work falls on all of them alike).
async fn call_times(
    apis: &mut [&mut Api],
    ids: &[String],
) -> Result<Vec<(Duration, Duration)>, String> {
    let mut times = vec![Vec::with_capacity(CALLS); apis.len()];
    let warmup = WARMUP_CALLS.max(ids.len());
    for i in 0..CALLS + warmup {
        let id = &ids[i % ids.len()];
        for (api, times) in apis.iter_mut().zip(&mut times) {
            let start = Instant::now();
            let good = api.call(id).await?;
            let took = start.elapsed();
            if !good {
                return Err(format!("a call to {id} through {} failed", api.addr));
            }
            if i >= warmup {
                times.push(took);
            }
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_unstable();
            (
                quantile(&t, 0.5).unwrap_or_default(),
                quantile(&t, 0.99).unwrap_or_default(),
            )
        })
        .collect())
}

/// [`PUBLISHERS`] Cores publish public events to `publish_to` while one event stream on `subscribe_on` reads them:
/// the events per second it received over [`EVENT_SECONDS`], after a second of warm-up.
async fn event_rate(
    publish_to: SocketAddr,
    subscribe_on: SocketAddr,
    token: &str,
    keys: &Arc<CoreKeys>,
) -> Result<f64, String> {
    let stream = EventStream::open(
        subscribe_on,
        &format!("/v1/events/{}", cores::EVENT_NAME),
        token,
    )
    .await
    .map_err(|e| e.to_string())?;
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = stream
        .count_on_thread(Arc::clone(&received), Arc::clone(&stop))
        .map_err(|e| e.to_string())?;
    let pace = cores::Pace {
        sent: Arc::new(AtomicU64::new(0)),
        received: Arc::clone(&received),
        window: EVENT_WINDOW,
    };
    let mut publishers = Vec::new();
    let mut ups = Vec::new();
    for p in 0..PUBLISHERS {
        let (tx, rx) = oneshot::channel();
        publishers.push(tokio::spawn(cores::publisher(
            id_bytes(&core_id(DEVICES + p)).ok_or("bad id")?,
            publish_to,
            Arc::clone(keys),
            Arc::clone(&stop),
            pace.clone(),
            cores::Topic::public_ticks(),
            tx,
        )));
        ups.push(rx);
    }
    for up in ups {
        up.await.map_err(|_| "a publisher failed to connect")?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (r0, t0) = (received.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(EVENT_SECONDS)).await;
    let (r1, secs) = (received.load(Ordering::Relaxed), t0.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.abort();
    }
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    Ok((r1 - r0) as f64 / secs)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What a connect phase measured.
struct Handshakes {
    rate: f64,
    /// CPU per handshake of each node, ms.
    node_cpu_ms: Vec<f64>,
    /// RSS per idle device of each node, bytes.
    rss_per_device: Vec<f64>,
    /// CPU per handshake of PostgreSQL's processes and of nats-server, ms (cluster only).
    postgres_cpu_ms: f64,
    nats_cpu_ms: f64,
}

/// Connects the Cores spread over `nodes` and measures them; the Cores stay connected (their tasks are returned).
async fn handshakes(
    nodes: &[Node],
    keys: &Arc<CoreKeys>,
    token: &str,
    servers: (Option<u32>, Option<u32>),
) -> Result<(Handshakes, Vec<JoinHandle<()>>), String> {
    let tck = procfs::ticks_per_second();
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid).collect();
    let mut watched = pids.clone();
    watched.extend(servers.0.iter().chain(servers.1.iter()));
    settle(&watched).await;
    let before: Vec<procfs::Sample> = pids.iter().map(|&p| sample(p)).collect();
    let pg0 = servers.0.map_or(0, tree_ticks);
    let nats0 = servers.1.map_or(0, |p| sample(p).cpu_ticks);
    let targets: Vec<SocketAddr> = nodes.iter().map(|n| n.device).collect();
    let (tasks, took) = connect_cores(&targets, keys).await?;
    let after: Vec<procfs::Sample> = pids.iter().map(|&p| sample(p)).collect();
    let pg1 = servers.0.map_or(0, tree_ticks);
    let nats1 = servers.1.map_or(0, |p| sample(p).cpu_ticks);
    let per =
        |ticks: u64, count: u64| ms(procfs::ticks_to_duration(ticks, tck)) / count.max(1) as f64;
    let share = |i: usize| (DEVICES + (nodes.len() - 1 - i) as u64) / nodes.len() as u64;
    let node_cpu_ms = before
        .iter()
        .zip(&after)
        .enumerate()
        .map(|(i, (b, a))| per(a.cpu_ticks.saturating_sub(b.cpu_ticks), share(i)))
        .collect();
    // Memory once the last Describe answers and presence messages are done.
    let mut rss_per_device = Vec::new();
    for (node, b) in nodes.iter().zip(&before) {
        let mut api = Api::connect(node.api, token).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut held = api.connected().await?;
        while held < share(rss_per_device.len()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            held = api.connected().await?;
        }
        rss_per_device.push((node.pid, b.rss_kib, held));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_per_device = rss_per_device
        .into_iter()
        .map(|(pid, before, held)| {
            sample(pid).rss_kib.saturating_sub(before) as f64 * 1024.0 / held.max(1) as f64
        })
        .collect();
    Ok((
        Handshakes {
            rate: DEVICES as f64 / took.as_secs_f64(),
            node_cpu_ms,
            rss_per_device,
            postgres_cpu_ms: per(pg1.saturating_sub(pg0), DEVICES),
            nats_cpu_ms: per(nats1.saturating_sub(nats0), DEVICES),
        },
        tasks,
    ))
}

fn list(values: &[f64], digits: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.digits$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn print_handshakes(label: &str, h: &Handshakes, floor: Duration, lone: Option<&Handshakes>) {
    let floor = ms(floor);
    let over: Vec<f64> = h.node_cpu_ms.iter().map(|c| c / floor).collect();
    println!(
        "{label}: {DEVICES} handshakes at {:.0}/s{}; CPU per handshake per node {} ms ({} x the RSA floor)",
        h.rate,
        lone.map_or(String::new(), |l| format!(
            " ({:.2} x the lone node)",
            h.rate / l.rate
        )),
        list(&h.node_cpu_ms, 3),
        list(&over, 2),
    );
    let goal = |b: &f64| if *b <= 4096.0 { "met" } else { "MISSED" };
    println!(
        "{label}: RSS per idle device per node {} bytes (goal <= 4096: {})",
        list(&h.rss_per_device, 0),
        h.rss_per_device
            .iter()
            .map(goal)
            .collect::<Vec<_>>()
            .join(" / ")
    );
    if lone.is_some() {
        println!(
            "{label}: per handshake, PostgreSQL's processes {:.3} ms CPU, nats-server {:.3} ms CPU",
            h.postgres_cpu_ms, h.nats_cpu_ms
        );
    }
}

fn print_calls(label: &str, (median, p99): (Duration, Duration), reference: (Duration, Duration)) {
    println!(
        "{label}: median {:.3} ms ({:.2} x the lone node; goal <= 1 ms: {}), p99 {:.3} ms ({:.2} x; goal <= 3 ms: {})",
        ms(median),
        median.as_secs_f64() / reference.0.as_secs_f64(),
        if median <= Duration::from_millis(1) {
            "met"
        } else {
            "MISSED"
        },
        ms(p99),
        p99.as_secs_f64() / reference.1.as_secs_f64(),
        if p99 <= Duration::from_millis(3) {
            "met"
        } else {
            "MISSED"
        },
    );
}

fn nats_installed() -> bool {
    std::env::var_os("NATS_SERVER").is_some()
        || Command::new("nats-server")
            .arg("--version")
            .output()
            .is_ok()
        || Path::new("/usr/sbin/nats-server").is_file()
}

/// Everything the lone node gave: the references of the cluster figures.
struct Lone {
    handshakes: Handshakes,
    calls: (Duration, Duration),
    events: f64,
}

async fn lone_node(
    root: &Path,
    keys: &Arc<CoreKeys>,
    pem: &str,
    floor: Duration,
) -> Result<Lone, String> {
    let node = start_node(&root.join("lone"), "lone", None)?;
    let token = sign_up(node.api).await?;
    let took = provision(node.api, &token, pem, DEVICES + PUBLISHERS).await?;
    println!(
        "lone node (--dir, --bus local): provisioned {} devices in {:.2} s",
        DEVICES + PUBLISHERS,
        took.as_secs_f64()
    );
    let (handshakes, tasks) =
        handshakes(std::slice::from_ref(&node), keys, &token, (None, None)).await?;
    print_handshakes("lone node", &handshakes, floor, None);
    let ids: Vec<String> = (0..DEVICES).map(core_id).collect();
    let mut api = Api::connect(node.api, &token).await?;
    let calls = call_times(&mut [&mut api], &ids).await?[0];
    println!(
        "lone node: call round trip at {DEVICES} devices, median {:.3} ms, p99 {:.3} ms",
        ms(calls.0),
        ms(calls.1)
    );
    let events = event_rate(node.device, node.api, &token, keys).await?;
    println!("lone node: events to one subscriber {events:.0}/s");
    for t in tasks {
        t.abort();
    }
    Ok(Lone {
        handshakes,
        calls,
        events,
    })
}

fn bench(c: &mut Criterion) {
    let needed = DEVICES + PUBLISHERS + 256;
    if let Some(limit) = procfs::raise_open_files_limit()
        && limit < needed * 2
    {
        eprintln!(
            "cluster_scale: {limit} open files allowed, {} needed; nothing measured",
            needed * 2
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tck = procfs::ticks_per_second();
    let floor = match rsa_floor(tck) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cluster_scale: the RSA floor: {e}");
            return;
        }
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "cluster_scale: {DEVICES} Cores, {cpus} CPUs shared by the nodes, PostgreSQL, nats-server and the Cores; \
         RSA floor {:.3} ms per handshake (2 RSA-2048 private-key operations, {}, this process)",
        ms(floor),
        spark_load::RSA_BACKEND,
    );
    let device_key = RsaPrivateKey::from_pem(DEVICE_KEY).unwrap();
    let pem = device_key.public_key().to_spki_pem().unwrap();
    let server = RsaPrivateKey::from_pem(SERVER_KEY).unwrap();
    let keys = Arc::new(CoreKeys {
        device: PrivateKey::new(&device_key.as_ref_key()).unwrap(),
        device_public: PublicKey::new(&device_key.public_key().as_ref_key()).unwrap(),
        server: PublicKey::new(&server.public_key().as_ref_key()).unwrap(),
    });
    let root = tempfile::tempdir().unwrap();
    let lone = match rt.block_on(lone_node(root.path(), &keys, &pem, floor)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cluster_scale: the lone node: {e}");
            return;
        }
    };
    if !postgres::Postgres::installed() {
        eprintln!(
            "cluster_scale: postgres/initdb (Debian postgresql) not installed: the cluster phases are skipped"
        );
        return;
    }
    if !nats_installed() {
        eprintln!(
            "cluster_scale: nats-server (Debian nats-server) not installed: the cluster phases are skipped"
        );
        return;
    }
    if let Err(e) = cluster(c, &rt, root.path(), &keys, &pem, floor, &lone) {
        eprintln!("cluster_scale: the cluster: {e}");
    }
}

#[allow(clippy::too_many_arguments)]
fn cluster(
    c: &mut Criterion,
    rt: &Runtime,
    root: &Path,
    keys: &Arc<CoreKeys>,
    pem: &str,
    floor: Duration,
    lone: &Lone,
) -> Result<(), String> {
    let pg = postgres::Postgres::start_with_fsync(true);
    let nats = nats::NatsServer::start();
    let servers = (
        find_process("postgres", pg.port),
        find_process("nats-server", nats.addr.port()),
    );
    let url = rt.block_on(async {
        let url = pg.database().await;
        // The Cores trust SERVER_KEY: made the registry's current key before any node starts.
        let store = PostgresStore::connect(&url, 2048)
            .await
            .map_err(|e| e.to_string())?;
        store
            .rotate_server_key(RsaPrivateKey::from_pem(SERVER_KEY).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        store.retire_server_key().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(url)
    })?;
    let bus = nats.url();
    let shared = Shared {
        store: &url,
        bus: &bus,
    };
    let mut token = String::new();
    for count in 1..=3usize {
        let nodes = (0..count)
            .map(|i| {
                let name = format!("n{count}-{}", (b'a' + i as u8) as char);
                start_node(&root.join(&name), &name, Some(&shared))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if token.is_empty() {
            token = rt.block_on(sign_up(nodes[0].api))?;
            let took = rt.block_on(provision(nodes[0].api, &token, pem, DEVICES + PUBLISHERS))?;
            println!(
                "cluster (--store postgres, --bus nats): provisioned {} devices in {:.2} s",
                DEVICES + PUBLISHERS,
                took.as_secs_f64()
            );
        }
        let (h, tasks) = rt.block_on(handshakes(&nodes, keys, &token, servers))?;
        print_handshakes(
            &format!("{count} node(s)"),
            &h,
            floor,
            Some(&lone.handshakes),
        );
        if count == 1 {
            // The same calls as the lone node's, through the one node's API: what the store and bus add to a call
            // without a hop between nodes.
            let ids: Vec<String> = (0..DEVICES).map(core_id).collect();
            let calls = rt.block_on(async {
                let mut api = Api::connect(nodes[0].api, &token).await?;
                Ok::<_, String>(call_times(&mut [&mut api], &ids).await?[0])
            })?;
            print_calls(
                &format!("1 node, {DEVICES} devices: call through its own API"),
                calls,
                lone.calls,
            );
            let added = h.node_cpu_ms[0] - lone.handshakes.node_cpu_ms[0];
            println!(
                "1 node: store and bus add {added:.3} ms of the node's CPU per handshake ({:.3} -> {:.3} ms), \
                 plus {:.3} ms in PostgreSQL and {:.3} ms in nats-server: {:.2} x the lone node's CPU per device in all",
                lone.handshakes.node_cpu_ms[0],
                h.node_cpu_ms[0],
                h.postgres_cpu_ms,
                h.nats_cpu_ms,
                (h.node_cpu_ms[0] + h.postgres_cpu_ms + h.nats_cpu_ms)
                    / lone.handshakes.node_cpu_ms[0],
            );
        }
        if count == 2 {
            two_nodes(c, rt, &nodes, keys, &token, lone)?;
        }
        for t in tasks {
            t.abort();
        }
        drop(nodes);
    }
    Ok(())
}

/// Calls and events across two nodes: Cores held by node B, called through A and through B; events published on A
/// to a subscriber on B.
fn two_nodes(
    c: &mut Criterion,
    rt: &Runtime,
    nodes: &[Node],
    keys: &Arc<CoreKeys>,
    token: &str,
    lone: &Lone,
) -> Result<(), String> {
    let (a, b) = (&nodes[0], &nodes[1]);
    // Core n went to node n % 2: B holds the odd ones.
    let on_b: Vec<String> = (0..DEVICES).filter(|n| n % 2 == 1).map(core_id).collect();
    let (mut via_a, mut via_b) = rt.block_on(async {
        Ok::<_, String>((
            Api::connect(a.api, token).await?,
            Api::connect(b.api, token).await?,
        ))
    })?;
    // A hears B's presence over the bus: wait until it reaches every Core of B.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        for id in &on_b {
            while !via_a.call(id).await? {
                if Instant::now() > deadline {
                    return Err(format!("node A never reached {id} on node B"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok::<_, String>(())
    })?;
    let both = rt.block_on(call_times(&mut [&mut via_b, &mut via_a], &on_b))?;
    let (same, cross) = (both[0], both[1]);
    print_calls(
        &format!("2 nodes, {DEVICES} devices: same-node call (B's API to B's Cores)"),
        same,
        lone.calls,
    );
    print_calls(
        &format!("2 nodes, {DEVICES} devices: cross-node call (A's API to B's Cores)"),
        cross,
        lone.calls,
    );
    println!(
        "2 nodes: cross-node / same-node call: median {:.2} x, p99 {:.2} x",
        cross.0.as_secs_f64() / same.0.as_secs_f64(),
        cross.1.as_secs_f64() / same.1.as_secs_f64(),
    );
    let rate = rt.block_on(event_rate(a.device, b.api, token, keys))?;
    println!(
        "2 nodes: events to one subscriber across nodes (published on A, read on B) {rate:.0}/s, {:.2} x the lone \
         node's {:.0}/s (goal >= 100,000/s: {})",
        rate / lone.events,
        lone.events,
        if rate >= 100_000.0 { "met" } else { "MISSED" },
    );

    let mut group = c.benchmark_group("cluster_scale_call");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let id = &on_b[0];
    group.bench_function("same_node", |bch| {
        bch.iter(|| rt.block_on(via_b.call(id)).unwrap())
    });
    group.bench_function("cross_node", |bch| {
        bch.iter(|| rt.block_on(via_a.call(id)).unwrap())
    });
    group.finish();
    Ok(())
}

criterion_group!(benches, bench);
criterion_main!(benches);
