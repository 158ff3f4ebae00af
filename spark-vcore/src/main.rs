//! `spark-vcore`: simulated Spark Cores (Tinker, OTA into external flash, a CC3000 with its service pack) that
//! connect to a cloud over the Spark Core protocol.
//!
//! ```text
//! spark-vcore --cloud 127.0.0.1:5683 --server-key server_public.der --dir cores --count 20 --sp 1.24
//! ```
//!
//! A cloud of several nodes: `--cloud 127.0.0.1:5683,127.0.0.1:5693` (or the flag repeated). A Core keeps to one
//! address while its sessions hold and moves to the next when a connection is refused or a session is lost.
//!
//! Each Core lives in its own directory (`<dir>/core-000`, `<dir>/core-001`, ...; with `--count 1`, `<dir>`
//! itself when it already holds a Core): id, key pair, external flash, CC3000 EEPROM. New Cores are created on first
//! start with `--sp`; existing ones keep their state. `--json` prints one JSON object per line for every status
//! change; otherwise one line of text.
//!
//! With `--udp` each device speaks the UDP protocol instead, as an Electron (DTLS 1.2 with a P-256 key, the cloud's
//! port 5684), with the same application:
//!
//! ```text
//! spark-vcore --udp --cloud 127.0.0.1:5684 --server-key cloud/udp_key.pub.pem --dir electrons --print-id
//! spark keys send <id> electrons/core-000/udp_public_key.pem
//! spark-vcore --udp --cloud 127.0.0.1:5684 --server-key cloud/udp_key.pub.pem --dir electrons
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use spark_cc3000::ServicePack;
use spark_protocol::crypto::keys::RsaPublicKey;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig, SharedCore, Status, run};
use spark_vcore::udp::{DatagramFaults, UdpCloudConfig, run_udp};
use spark_vcore::{BootReport, VirtualCore};

/// `println!` that ends the process quietly (exit 0) when the reader of stdout went away (`spark-vcore | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// Simulated Spark Cores for a local cloud.
#[derive(Debug, Parser)]
#[command(name = "spark-vcore", version)]
struct Args {
    /// The cloud's device listener. Give every node of a cluster (repeat the flag, or a comma-separated list): a
    /// Core moves to the next address when connecting fails or its session is lost, and comes round to the first.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:5683",
        value_delimiter = ','
    )]
    cloud: Vec<String>,
    /// The cloud's public key (DER or PEM; a local spark-cloud writes `default_key.pub.pem` in its directory).
    #[arg(long, value_name = "FILE", required_unless_present = "print_id")]
    server_key: Option<PathBuf>,
    /// Create the Cores if needed, print their ids (one a line) and exit, without connecting: what
    /// `spark keys send <id> <dir>/core_private_key.der` needs to provision a Core before it first connects.
    #[arg(long)]
    print_id: bool,
    /// Where the Cores keep their state.
    #[arg(long, value_name = "DIR", default_value = "virtual-cores")]
    dir: PathBuf,
    /// How many Cores to run in this process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// The CC3000 service pack of newly created Cores.
    #[arg(long, value_name = "VERSION", default_value = "1.24")]
    sp: ServicePack,
    /// Probability that the link dies before each write (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    drop_rate: f64,
    /// Hold each write back for a random time up to this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    stall_ms: u64,
    /// Seed of the link faults (each Core adds its index).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds to wait before reconnecting after a lost link.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    reconnect: f64,
    /// Subscribe each Core to events starting with this prefix (repeatable, at most 4); received events are
    /// printed.
    #[arg(long, value_name = "PREFIX")]
    subscribe: Vec<String>,
    /// Have each Core publish the private event NAME (with DATA) after every handshake (repeatable, at most 3).
    #[arg(long, value_name = "NAME[=DATA]")]
    publish: Vec<String>,
    /// Offer each Core's USB serial port in listening mode as a pseudo-terminal (its path is printed): the
    /// one-key commands `i`, `m`, `v` and `w` of the Core's firmware, for `spark serial`.
    #[cfg(unix)]
    #[arg(long)]
    serial: bool,
    /// Speak the UDP protocol (DTLS, as an Electron) instead of the Core's TCP protocol: `--cloud` is then the
    /// cloud's UDP listener (port 5684) and `--server-key` its P-256 key (`udp_key.pub.pem`). Each device's P-256
    /// key is made on first use beside its RSA key (`udp_private_key.pem`, `udp_public_key.pem`).
    #[arg(long)]
    udp: bool,
    /// With `--udp`: percent of datagrams lost, and likewise repeated and reordered, both ways (a test knob; the
    /// pattern follows `--seed`).
    #[arg(long, value_name = "PCT", default_value_t = 0, requires = "udp",
          value_parser = clap::value_parser!(u8).range(0..=50))]
    udp_loss: u8,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// Opens the Core's serial port and answers it on its own thread; prints the port's path.
#[cfg(unix)]
fn offer_serial(json_out: bool, core: &VirtualCore) -> Result<(), String> {
    use spark_vcore::serial::ListeningConsole;
    use spark_vcore::serial::pty::SerialPort;
    let port = SerialPort::open().map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?;
    let id = core.id_hex().to_owned();
    if json_out {
        say!(
            "{}",
            json!({"id": id, "event": "serial", "path": port.path.display().to_string()})
        );
    } else {
        say!("{id} serial port {}", port.path.display());
    }
    let console = ListeningConsole::new(
        &id,
        ListeningConsole::mac_for(core.id().as_bytes()),
        env!("CARGO_PKG_VERSION"),
    );
    std::thread::spawn(move || {
        let _ = port.serve(console, |c| {
            if json_out {
                say!("{}", json!({"id": id, "event": "wifi", "ssid": c.ssid, "security": c.security.to_string()}));
            } else {
                say!("{id} Wi-Fi credentials saved: {} ({})", c.ssid, c.security);
            }
        });
    });
    Ok(())
}

fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0.0 and 1.0".into())
    }
}

fn load_server_key(path: &Path) -> Result<RsaPublicKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => RsaPublicKey::from_pem(text),
        _ => RsaPublicKey::from_der(&bytes),
    };
    key.map_err(|e| format!("{}: {e}", path.display()))
}

fn load_udp_server_key(path: &Path) -> Result<spark_protocol::dtls::PublicKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => {
            let mut der = [0u8; 256];
            spark_protocol::dtls::pem_to_der(text, &["PUBLIC KEY"], &mut der)
                .and_then(|(_, n)| spark_protocol::dtls::PublicKey::from_spki(&der[..n]))
        }
        _ => spark_protocol::dtls::PublicKey::from_spki(&bytes),
    };
    key.map_err(|e| format!("{}: not a P-256 public key ({e})", path.display()))
}

fn core_dir(args: &Args, index: u32) -> PathBuf {
    if args.count == 1 && args.dir.join("core.json").exists() {
        args.dir.clone()
    } else {
        args.dir.join(format!("core-{index:03}"))
    }
}

fn boot_json(b: &BootReport) -> serde_json::Value {
    json!({
        "installed": b.installed.as_ref().map(|f| f.name()),
        "staged_corrupt": b.staged_corrupt,
        "patched": b.patched.map(|(from, to)| json!({"from": from.to_string(), "to": to.to_string()})),
        "patch_error": b.patch_error,
    })
}

fn line(json_out: bool, id: &str, status: &Status, sp: &str, firmware: &str) -> String {
    if json_out {
        let (kind, detail) = match status {
            Status::Booted(b) => ("booted", boot_json(b)),
            Status::Connected {
                ota_succeeded,
                patch_version,
            } => (
                "connected",
                json!({"ota_succeeded": ota_succeeded, "patch_version": patch_version}),
            ),
            Status::Called {
                name,
                argument,
                result,
            } => (
                "called",
                json!({"function": name, "argument": argument, "result": result}),
            ),
            Status::Read { name } => ("read", json!({"variable": name})),
            Status::UpdateStarted { size } => ("update-started", json!({"size": size})),
            Status::UpdateFinished { size } => ("update-finished", json!({"size": size})),
            Status::UpdateFailed { reason } => ("update-failed", json!({"reason": reason})),
            Status::Signal(on) => ("signal", json!({"on": on})),
            Status::EventReceived {
                name,
                data,
                private,
            } => (
                "event",
                json!({"name": name, "data": data, "private": private}),
            ),
            Status::Disconnected { reason } => ("disconnected", json!({"reason": reason})),
            _ => ("other", json!({})),
        };
        json!({"core": id, "status": kind, "cc3000": sp, "firmware": firmware, "detail": detail})
            .to_string()
    } else {
        let what = match status {
            Status::Booted(b) => {
                let mut s = String::from("booted");
                if let Some(f) = &b.installed {
                    s += &format!(", installed {}", f.name());
                }
                if let Some((from, to)) = b.patched {
                    s += &format!(", CC3000 patched {from} -> {to}");
                }
                if let Some(e) = &b.patch_error {
                    s += &format!(", CC3000 patch failed: {e}");
                }
                if b.staged_corrupt {
                    s += ", staged image corrupt (dropped)";
                }
                s
            }
            Status::Connected {
                ota_succeeded,
                patch_version,
            } => format!(
                "connected (cc3000-patch-version {patch_version}{})",
                if *ota_succeeded {
                    ", OTA succeeded"
                } else {
                    ""
                }
            ),
            Status::Called {
                name,
                argument,
                result,
            } => format!("{name}({argument:?}) = {result}"),
            Status::Read { name } => format!("read {name}"),
            Status::UpdateStarted { size } => match size {
                Some(n) => format!("update started ({n} bytes)"),
                None => "update started".into(),
            },
            Status::UpdateFinished { size } => format!("update received ({size} bytes), resetting"),
            Status::UpdateFailed { reason } => format!("update failed: {reason}"),
            Status::Signal(on) => format!("signal {}", if *on { "on" } else { "off" }),
            Status::EventReceived { name, data, .. } => format!("event {name} {data:?}"),
            Status::Disconnected { reason } => format!("disconnected: {reason}"),
            _ => "reported a status this build does not describe".into(),
        };
        format!("{id} [{firmware}, SP {sp}] {what}")
    }
}

fn fail(json_out: bool, message: &str) -> ExitCode {
    if json_out {
        say!("{}", json!({"error": message}));
    } else {
        eprintln!("spark-vcore: {message}");
    }
    ExitCode::FAILURE
}

/// `--print-id`: opens (creating when needed) each Core and prints its id.
async fn print_ids(args: &Args) -> ExitCode {
    for index in 0..args.count {
        let dir = core_dir(args, index);
        let sp = args.sp;
        let opened =
            tokio::task::spawn_blocking(move || VirtualCore::open_or_create(&dir, sp)).await;
        match opened {
            Ok(Ok(core)) if args.udp => {
                if let Err(e) = spark_vcore::udp::load_or_create_udp_key(core.dir()) {
                    return fail(args.json, &e.to_string());
                }
                say!("{}", core.id_hex());
            }
            Ok(Ok(core)) => say!("{}", core.id_hex()),
            Ok(Err(e)) => return fail(args.json, &e.to_string()),
            Err(e) => return fail(args.json, &e.to_string()),
        }
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_id {
        return print_ids(&args).await;
    }
    let Some(key_path) = &args.server_key else {
        return fail(args.json, "--server-key is required");
    };
    let (server_key, udp_server_key) = if args.udp {
        match load_udp_server_key(key_path) {
            Ok(k) => (None, Some(k)),
            Err(e) => return fail(args.json, &e),
        }
    } else {
        match load_server_key(key_path) {
            Ok(k) => (Some(k), None),
            Err(e) => return fail(args.json, &e),
        }
    };
    let faults = LinkFaults {
        drop_rate: args.drop_rate,
        stall_ms: args.stall_ms,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.count {
        let dir = core_dir(&args, index);
        let sp = args.sp;
        // Key generation is CPU work: keep it off the runtime's threads.
        let opened =
            tokio::task::spawn_blocking(move || VirtualCore::open_or_create(&dir, sp)).await;
        let mut core = match opened {
            Ok(Ok(core)) => core,
            Ok(Err(e)) => return fail(args.json, &e.to_string()),
            Err(e) => return fail(args.json, &e.to_string()),
        };
        for prefix in &args.subscribe {
            if !core.subscribe(prefix) {
                return fail(
                    args.json,
                    &format!("--subscribe {prefix:?}: 1 to 63 bytes, at most 4 prefixes"),
                );
            }
        }
        for event in &args.publish {
            let (name, data) = event.split_once('=').unwrap_or((event, ""));
            if !core.publish_on_connect(name, data) {
                return fail(
                    args.json,
                    &format!(
                        "--publish {event:?}: a name of 1 to 63 bytes not starting with spark, data of at most 63 bytes, at most 3 events"
                    ),
                );
            }
        }
        #[cfg(unix)]
        if args.serial
            && let Err(e) = offer_serial(args.json, &core)
        {
            return fail(args.json, &e);
        }
        let id = core.id_hex().to_owned();
        let shared: SharedCore = Arc::new(Mutex::new(core));
        let watched = shared.clone();
        let json_out = args.json;
        let report = Box::new(move |status: Status| {
            let (sp, firmware) = {
                let c = watched.lock().unwrap_or_else(|p| p.into_inner());
                (c.cc3000().version_string(), c.firmware().name())
            };
            say!("{}", line(json_out, &id, &status, &sp, firmware));
        });
        let seed = args.seed.wrapping_add(u64::from(index) << 32);
        let reconnect_delay = Duration::from_secs_f64(args.reconnect.max(0.0));
        if let Some(server_key) = udp_server_key {
            let cloud = UdpCloudConfig {
                address: args.cloud.join(","),
                server_key,
                faults: DatagramFaults::each(args.udp_loss),
                seed,
                reconnect_delay,
            };
            tasks.spawn(run_udp(shared, cloud, report));
        } else if let Some(server_key) = &server_key {
            let cloud = CloudConfig {
                address: args.cloud.join(","),
                server_key: server_key.clone(),
                faults,
                seed,
                reconnect_delay,
            };
            tasks.spawn(run(shared, cloud, report));
        }
    }
    tokio::select! {
        done = tasks.join_next() => match done {
            Some(Ok(Err(e))) => fail(args.json, &e.to_string()),
            Some(Err(e)) => fail(args.json, &e.to_string()),
            _ => ExitCode::SUCCESS,
        },
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}
