//! `spark-cloud`: the Spark cloud on one machine.
//!
//! ```text
//! spark-cloud [--dir DIR] [--http ADDR] [--device ADDR] [--key-bits N] [--webhook-allow CIDR|HOST]...
//!             [--max-http-per-address N] [--max-devices N] [--max-handshakes N]
//! spark-cloud [--dir DIR] user add NAME        # the password from stdin, or a prompt on a terminal
//! ```
//!
//! Prints one JSON line on stdout once listening, `{"http":"127.0.0.1:8080","device":...,"dir":"..."}`, so that a
//! parent process started with port 0 learns the chosen ports. Users are read when the cloud starts: add them
//! before starting it (or restart it).

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
    /// State directory (server key, device keys, users, tokens).
    #[arg(long, value_name = "DIR", default_value = "spark-cloud", global = true)]
    dir: PathBuf,
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
    /// Open REST connections one client address may hold (the cloud holds 256 in all).
    #[arg(long, value_name = "N", default_value_t = cloud::HttpLimits::DEFAULT.max_connections_per_address)]
    max_http_per_address: usize,
    /// Device connections the device listener holds at most (established devices are never dropped for new ones).
    #[arg(long, value_name = "N", default_value_t = devices::DeviceLimits::DEFAULT.max_connections)]
    max_devices: usize,
    /// Device handshakes under way at once at most.
    #[arg(long, value_name = "N", default_value_t = devices::DeviceLimits::DEFAULT.max_handshakes)]
    max_handshakes: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the cloud's users.
    #[command(subcommand)]
    User(UserCommand),
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
    if let Some(Command::User(UserCommand::Add { name })) = &args.command {
        return match user_add(&args, name) {
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
    let cloud = cloud::open(&config, Arc::clone(&hub) as Arc<dyn cloud::hub::DeviceHub>)?;
    cloud.webhooks().set_policy(webhook_policy(&args));
    let device_limits = devices::DeviceLimits::DEFAULT.with(args.max_devices, args.max_handshakes);
    let (device_addr, device_task) =
        devices::listen_with(Arc::clone(&cloud), hub, args.device, device_limits)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.device))?;
    let http_limits =
        cloud::HttpLimits::DEFAULT.with_max_connections_per_address(args.max_http_per_address);
    let running = cloud::serve_with(cloud, config.http, http_limits).await?;
    let line = serde_json::json!({
        "http": running.http.to_string(),
        "device": device_addr.to_string(),
        "dir": args.dir.display().to_string(),
    });
    println!("{line}");
    tokio::signal::ctrl_c().await?;
    device_task.abort();
    running.shutdown();
    Ok(())
}

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

/// `spark-cloud user add NAME`: creates the state directory when needed (with its server key) and the user.
fn user_add(args: &Args, name: &str) -> Result<(), String> {
    let password = password::read().map_err(|e| format!("cannot read the password: {e}"))?;
    if password.is_empty() {
        return Err("no password given (type it, or pipe it on stdin)".into());
    }
    let mut rng = rand::rng();
    let state = cloud::state::StateDir::open(&args.dir, usize::from(args.key_bits), &mut rng)
        .map_err(|e| e.to_string())?;
    state
        .create_user(name, &password, &mut rng)
        .map_err(|e| format!("{name}: {e}"))?;
    eprintln!(
        "Added {} to {} (a spark-cloud already running on this directory sees the user after a restart)",
        name.trim().to_lowercase(),
        args.dir.display()
    );
    Ok(())
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
