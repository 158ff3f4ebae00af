//! `spark-cloud`: the Spark cloud on one machine.
//!
//! ```text
//! spark-cloud [--dir DIR] [--http ADDR] [--device ADDR] [--key-bits N] [--webhook-allow CIDR|HOST]...
//!             [--max-http-per-address N] [--max-devices N] [--max-handshakes N] [--handshake-queue N]
//!             [--handshake-queue-wait SECONDS] [--udp-listen ADDR]
//!             [--bus nats://HOST:PORT [--node-id NAME] [--lease SECONDS]]
//! spark-cloud [--dir DIR] user add NAME        # the password from stdin, or a prompt on a terminal
//! spark-cloud [--dir DIR] keys rotate          # new server key; the old one accepted until `keys retire`
//! spark-cloud [--dir DIR] keys retire          # ends the migration window: the old key is refused
//! spark-cloud [--dir DIR] keys show [--previous]
//! spark-cloud [--dir DIR] tokens invalidate-before DATE   # YYYY-MM-DD[THH:MM:SSZ] or seconds since 1970
//! ```
//!
//! A cloud running on the directory picks up `keys rotate` / `keys retire` / `tokens` on `SIGHUP` (`kill -HUP PID`): it
//! reads the key files again; connected devices stay connected.
//!
//! Prints one JSON line on stdout once listening, `{"http":"127.0.0.1:8080","device":...,"dir":"..."}`, so that a
//! parent process started with port 0 learns the chosen ports. Users are read when the cloud starts: add them
//! before starting it (or restart it).
//!
//! Each device holds a descriptor: on start the cloud raises its open-file limit (`RLIMIT_NOFILE`) to the hard limit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use spark_cloud::{self as cloud, Config, devices};

/// A Spark cloud on one machine: the REST API and the device listener, with its state in a directory.
#[derive(Parser, Debug)]
#[command(name = "spark-cloud", version, about, long_about = None)]
struct Args {
    /// State directory (server key, device keys, users, tokens; with `--store`, only the webhooks).
    #[arg(long, value_name = "DIR", default_value = "spark-cloud", global = true)]
    dir: PathBuf,
    /// The registry in PostgreSQL instead of the state directory (`postgres://user[:password]@host:port/db`,
    /// no TLS), shared by every node of a cluster.
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
    /// REST API listen address (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Device listen address (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5683")]
    device: SocketAddr,
    /// Size of the server key generated on first start.
    #[arg(long, value_name = "N", default_value_t = 2048,
          value_parser = clap::value_parser!(u16).range(1024..=4096), global = true)]
    key_bits: u16,
    /// A network (`10.0.0.0/8`, `127.0.0.1`) or host name webhooks may reach; repeat for more. Without it, webhooks
    /// reach any address when the REST API listens on loopback, and only public addresses otherwise.
    #[arg(long, value_name = "CIDR|HOST")]
    webhook_allow: Vec<cloud::webhooks::WebhookAllow>,
    /// Open REST connections (event streams included) the cloud holds in all.
    #[arg(long, value_name = "N", default_value_t = cloud::HttpLimits::DEFAULT.max_connections)]
    max_http: usize,
    /// Open REST connections one client address may hold (at most `--max-http`).
    #[arg(long, value_name = "N", default_value_t = cloud::HttpLimits::DEFAULT.max_connections_per_address)]
    max_http_per_address: usize,
    /// Device connections the device listener holds at most (established devices are never dropped for new ones).
    #[arg(long, value_name = "N", default_value_t = devices::DeviceLimits::DEFAULT.max_connections)]
    max_devices: usize,
    /// Device handshakes under way at once at most.
    #[arg(long, value_name = "N", default_value_t = devices::DeviceLimits::DEFAULT.max_handshakes)]
    max_handshakes: usize,
    /// Also serve UDP devices (DTLS, Electron and later) on this address; the Particle port is 5684 (port 0: any
    /// free port). Off by default. Their server key is `udp_key.pub.pem` in the directory.
    #[arg(long, value_name = "ADDR")]
    udp_listen: Option<SocketAddr>,
    /// Device connections waiting for a handshake slot at most (in arrival order); past it a new one is closed.
    #[arg(long, value_name = "N", default_value_t = devices::DeviceLimits::DEFAULT.handshake_queue)]
    handshake_queue: usize,
    /// Seconds a device connection may wait in the handshake queue before it is closed (the device retries).
    #[arg(long, value_name = "SECONDS", default_value_t = devices::DeviceLimits::DEFAULT.handshake_queue_wait.as_secs())]
    handshake_queue_wait: u64,
    /// The bus between nodes: `local` (one node, the default) or a NATS server, `nats://127.0.0.1:4222`, shared by
    /// every node of a cluster (events reach every node's streams; requests reach the node holding the device).
    #[arg(long, value_name = "local|nats://HOST:PORT", default_value = "local")]
    bus: String,
    /// This node's id on the bus (letters, digits, `-`, `_`); by default one made of the process id and random bits.
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
    /// Seconds a node may stay silent on the bus before its devices read offline on the others (heartbeats go out
    /// every lease / 3).
    #[arg(long, value_name = "SECONDS", default_value_t = cloud::cluster::DEFAULT_LEASE.as_secs_f64())]
    lease: f64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the cloud's users.
    #[command(subcommand)]
    User(UserCommand),
    /// Rotate the server key (send `SIGHUP` to a cloud running on the directory afterwards).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The cloud-wide token response (send `SIGHUP` to a cloud running on the directory afterwards).
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Subcommand, Debug)]
enum TokensCommand {
    /// Refuse every token issued before DATE (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` in UTC, or seconds since 1970).
    InvalidateBefore {
        /// The cut-off date.
        date: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Make a new server key; the current one stays accepted as the previous key until `keys retire`.
    Rotate,
    /// End the migration window: handshakes with the previous key are refused from then on.
    Retire,
    /// Print a public key (PEM) and its fingerprint on stderr: the current key, what `spark keys server` writes to a
    /// Core.
    Show {
        /// The previous key instead (present during a migration window).
        #[arg(long)]
        previous: bool,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a user (the password is read from stdin, or asked for without echo on a terminal; never an argument).
    Add {
        /// The user name (an e-mail address, as the Spark cloud's).
        name: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let admin = match &args.command {
        Some(Command::User(UserCommand::Add { name })) => Some(user_add(&args, name)),
        Some(Command::Keys(command)) => Some(keys(&args, command)),
        Some(Command::Tokens(TokensCommand::InvalidateBefore { date })) => {
            Some(invalidate_before(&args, date))
        }
        None => None,
    };
    if let Some(done) = admin {
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spark-cloud: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spark-cloud: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spark-cloud: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        dir: args.dir.clone(),
        http: args.http,
        key_bits: usize::from(args.key_bits),
    };
    let hub = devices::LiveHub::new();
    let cluster = join_bus(&args, &hub).await?;
    let rest_hub: Arc<dyn cloud::hub::DeviceHub> = match &cluster {
        Some(cluster) => Arc::clone(cluster) as _,
        None => Arc::clone(&hub) as _,
    };
    let cloud = match &args.store {
        Some(url) => {
            let store = cloud::store::StoreConfig::Postgres(url.clone());
            std::fs::create_dir_all(&args.dir)?;
            let cloud = cloud::open_store(&store, &args.dir, config.key_bits, rest_hub).await?;
            eprintln!("spark-cloud: registry in {}", cloud.store().describe());
            follow_store(Arc::clone(&cloud));
            cloud
        }
        None => cloud::open(&config, rest_hub)?,
    };
    if let Some(cluster) = &cluster {
        cluster.start(cloud.bus()).await?;
        cluster.start_admin(&cloud).await?;
    }
    cloud.webhooks().set_policy(webhook_policy(&args));
    raise_open_files_limit();
    let device_limits = devices::DeviceLimits::DEFAULT
        .with(args.max_devices, args.max_handshakes)
        .with_handshake_queue(
            args.handshake_queue,
            std::time::Duration::from_secs(args.handshake_queue_wait),
        );
    // The devices run on a runtime of their own: a handshake's RSA runs on the thread that reads it, and during a
    // reconnect storm every device thread is busy with them. The REST API keeps its own threads, which the kernel
    // schedules beside them, so that it keeps answering.
    let device_runtime = DeviceRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("spark-devices")
            .enable_all()
            .build()?,
    ));
    let listening = device_runtime.spawn(devices::listen_with(
        Arc::clone(&cloud),
        Arc::clone(&hub),
        args.device,
        device_limits,
    ));
    let (device_addr, device_task) = listening
        .await?
        .map_err(|e| format!("cannot listen on {}: {e}", args.device))?;
    let udp = match args.udp_listen {
        Some(addr) => {
            let limits = cloud::udp::UdpLimits::DEFAULT.with(args.max_devices, args.max_handshakes);
            Some(
                device_runtime
                    .spawn(cloud::udp::listen_udp(
                        Arc::clone(&cloud),
                        hub,
                        addr,
                        limits,
                    ))
                    .await?
                    .map_err(|e| format!("cannot listen on udp {addr}: {e}"))?,
            )
        }
        None => None,
    };
    let http_limits = cloud::HttpLimits::DEFAULT
        .with_max_connections(args.max_http)
        .with_max_connections_per_address(args.max_http_per_address);
    let reloading = Arc::clone(&cloud);
    let running = cloud::serve_with(cloud, config.http, http_limits).await?;
    let line = serde_json::json!({
        "http": running.http.to_string(),
        "device": device_addr.to_string(),
        "udp": udp.as_ref().map(|(a, _)| a.to_string()),
        "dir": args.dir.display().to_string(),
        "node": cluster.as_ref().map(|c| c.node().to_owned()),
    });
    println!("{line}");
    #[cfg(unix)]
    let reload = reload_on_hangup(std::sync::Arc::clone(&reloading))?;
    tokio::signal::ctrl_c().await?;
    #[cfg(unix)]
    reload.abort();
    device_task.abort();
    if let Some((_, task)) = udp {
        task.abort();
    }
    running.shutdown();
    Ok(())
}

/// Joins the bus `--bus` names, or none for `local`.
async fn join_bus(
    args: &Args,
    hub: &Arc<devices::LiveHub>,
) -> Result<Option<Arc<cloud::cluster::ClusterHub>>, Box<dyn std::error::Error>> {
    if args.bus == "local" {
        return Ok(None);
    }
    if !args.bus.starts_with("nats://") {
        return Err(format!("--bus {}: expected `local` or nats://HOST:PORT", args.bus).into());
    }
    let lease = std::time::Duration::try_from_secs_f64(args.lease)
        .map_err(|_| format!("--lease {}: not a duration", args.lease))?;
    let node = args
        .node_id
        .clone()
        .unwrap_or_else(cloud::cluster::unique_node_id);
    let mut config = cloud::cluster::ClusterConfig::new(&args.bus, &node);
    config.lease = lease;
    Ok(Some(
        cloud::cluster::ClusterHub::connect(config, Arc::clone(hub)).await?,
    ))
}

/// The device listener's runtime, shut down without waiting when the cloud stops (a runtime may not be dropped from
/// inside another one's task).
struct DeviceRuntime(Option<tokio::runtime::Runtime>);

impl DeviceRuntime {
    fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(runtime) => runtime.spawn(future),
            None => tokio::spawn(future),
        }
    }
}

impl Drop for DeviceRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Raises the soft limit of open files to the hard one: each device connection holds a descriptor, and the usual soft
/// limit (1,024) is far below the devices one cloud holds.
#[cfg(unix)]
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            eprintln!("spark-cloud: cannot raise the open-file limit; devices past it are refused");
        }
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit() {}

/// Which addresses webhooks may reach: the `--webhook-allow` list; without one, any address for a cloud whose REST
/// API only loopback clients reach (they can reach those addresses themselves), public ones otherwise.
fn webhook_policy(args: &Args) -> cloud::webhooks::WebhookPolicy {
    use cloud::webhooks::WebhookPolicy;
    if !args.webhook_allow.is_empty() {
        WebhookPolicy::Only(args.webhook_allow.clone())
    } else if args.http.ip().is_loopback() {
        WebhookPolicy::AllowAll
    } else {
        WebhookPolicy::PublicOnly
    }
}

/// With a shared store, checks every few seconds whether another node or an admin command rotated or retired the
/// server key or moved the token cut-off, and reloads when it did.
fn follow_store(cloud: Arc<cloud::Cloud>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            every.tick().await;
            let following = Arc::clone(&cloud);
            match tokio::task::spawn_blocking(move || following.follow_store()).await {
                Ok(Ok(true)) => {
                    eprintln!("spark-cloud: server keys and token cut-off reloaded from the store")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => eprintln!("spark-cloud: cannot read the store: {e}"),
                Err(_) => return,
            }
        }
    });
}

/// On each `SIGHUP`, reads the server key files again (after `spark-cloud keys rotate` / `retire`).
#[cfg(unix)]
fn reload_on_hangup(cloud: Arc<cloud::Cloud>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // The reload reads files and waits for the store: off the runtime's workers, as `follow_store` does.
            let reloading = Arc::clone(&cloud);
            let Ok(reloaded) =
                tokio::task::spawn_blocking(move || reloading.reload_admin_files()).await
            else {
                return;
            };
            match reloaded {
                Ok(keys) => eprintln!(
                    "spark-cloud: server keys reloaded ({})",
                    if keys.previous.is_some() {
                        "migration window open: the previous key is still accepted"
                    } else {
                        "one key"
                    }
                ),
                Err(e) => {
                    eprintln!("spark-cloud: server keys not reloaded, the old ones stay: {e}")
                }
            }
        }
    }))
}

/// Runs an admin subcommand's work on a small runtime of its own, against `--store` when given, else the state
/// directory (created when needed, with its server key).
fn with_store<T>(
    args: &Args,
    work: impl AsyncFnOnce(&dyn cloud::store::Store) -> Result<T, String>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let config = match &args.store {
            Some(url) => cloud::store::StoreConfig::Postgres(url.clone()),
            None => cloud::store::StoreConfig::Directory(args.dir.clone()),
        };
        let store = cloud::store::open(&config, usize::from(args.key_bits))
            .await
            .map_err(|e| e.to_string())?;
        work(&*store).await
    })
}

/// How running clouds learn of an admin subcommand's change: `shared` for nodes on `--store`, `local` for a
/// `spark-cloud` on the state directory.
fn when_applied(args: &Args, shared: &'static str, local: &'static str) -> &'static str {
    if args.store.is_some() { shared } else { local }
}

/// `spark-cloud keys rotate|retire|show` on `--store` or the state directory.
fn keys(args: &Args, command: &KeysCommand) -> Result<(), String> {
    let key_file = args.dir.join(cloud::state::SERVER_KEY_FILE);
    if args.store.is_none() && !key_file.exists() {
        // Opening the directory would generate a key; a key command works on one that exists.
        return Err(format!(
            "{}: no server key (start spark-cloud on this directory once to create it)",
            key_file.display()
        ));
    }
    let hint = when_applied(
        args,
        "(running nodes pick it up within seconds, or at once on SIGHUP)",
        "(send SIGHUP to a spark-cloud running on this directory to apply it)",
    );
    with_store(args, async |store| {
        match command {
            KeysCommand::Rotate => {
                let keys = cloud::store::rotate_server_key(store)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!(
                    "Rotated the server key in {}: current {}, previous {} {hint}",
                    store.describe(),
                    cloud::rotation::fingerprint(&keys.current),
                    keys.previous
                        .as_ref()
                        .map(cloud::rotation::fingerprint)
                        .unwrap_or_default(),
                );
                tell_the_bus(args, cloud::cluster::wire::AdminChange::KeysChanged).await?;
            }
            KeysCommand::Retire => {
                let keys = store.retire_server_key().await.map_err(|e| e.to_string())?;
                eprintln!(
                    "Retired the previous server key in {}: only {} is accepted {hint}",
                    store.describe(),
                    cloud::rotation::fingerprint(&keys.current),
                );
                tell_the_bus(args, cloud::cluster::wire::AdminChange::KeysChanged).await?;
            }
            KeysCommand::Show { previous } => {
                let keys = store.server_keys().await.map_err(|e| e.to_string())?;
                let key = if *previous {
                    keys.previous
                        .ok_or("no previous server key (no migration window is open)")?
                } else {
                    keys.current
                };
                let public = key.public_key().to_spki_pem().map_err(|e| e.to_string())?;
                print!("{public}");
                eprintln!(
                    "fingerprint (SHA-256 of the public key): {}",
                    cloud::rotation::fingerprint(&key)
                );
            }
        }
        Ok(())
    })
}

/// With a shared `--store` and `--bus nats://…`, tells the running nodes of an admin command's change at once
/// (without the bus, they pick it up from the store within its poll).
async fn tell_the_bus(
    args: &Args,
    change: cloud::cluster::wire::AdminChange,
) -> Result<(), String> {
    if args.bus == "local" || args.store.is_none() {
        return Ok(());
    }
    let node = format!("admin-{}", std::process::id());
    cloud::cluster::announce_once(&args.bus, &node, change)
        .await
        .map_err(|e| {
            format!("{e} (the change is made; the nodes pick it up from the store within seconds)")
        })
}

/// `spark-cloud tokens invalidate-before DATE` on `--store` or the state directory.
fn invalidate_before(args: &Args, date: &str) -> Result<(), String> {
    let cutoff = cloud::state::parse_cutoff_date(date)?;
    let hint = when_applied(
        args,
        "(running nodes refuse them at once; SIGHUP ends their event streams)",
        "(send SIGHUP to a spark-cloud running on this directory: it then refuses them too and ends their event \
         streams)",
    );
    with_store(args, async |store| {
        let deleted = store
            .invalidate_tokens_before(cutoff)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "Invalidated {} token(s) issued before {date} in {} {hint}",
            deleted.len(),
            store.describe()
        );
        tell_the_bus(
            args,
            cloud::cluster::wire::AdminChange::TokensCutOff { before: cutoff },
        )
        .await
    })
}

/// `spark-cloud user add NAME`: on `--store`, or on the state directory (created when needed, with its server key).
fn user_add(args: &Args, name: &str) -> Result<(), String> {
    let password = password::read().map_err(|e| format!("cannot read the password: {e}"))?;
    if password.is_empty() {
        return Err("no password given (type it, or pipe it on stdin)".into());
    }
    let hint = when_applied(
        args,
        "(running nodes see the user at once)",
        "(a spark-cloud already running on this directory sees the user after a restart)",
    );
    with_store(args, async |store| {
        cloud::store::create_user(store, name, &password)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        eprintln!(
            "Added {} to {} {hint}",
            name.trim().to_lowercase(),
            store.describe()
        );
        Ok(())
    })
}

/// The password: one line of stdin; on a terminal, asked for on stderr without echo (`rpassword`, as `spark login`).
mod password {
    use std::io::{BufRead, IsTerminal};

    pub(super) fn read() -> std::io::Result<String> {
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password("Password: ");
        }
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
