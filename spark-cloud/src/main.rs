//! `spark-cloud`: the Spark cloud on one machine.
//!
//! ```text
//! spark-cloud [--dir DIR] [--http ADDR] [--device ADDR] [--key-bits N]
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
    let (device_addr, device_task) = devices::listen(Arc::clone(&cloud), hub, args.device)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.device))?;
    let running = cloud::serve(cloud, config.http).await?;
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

/// The password: one line of stdin; on a terminal, after a prompt on stderr and with echo off.
mod password {
    use std::io::{BufRead, IsTerminal, Write};

    pub(super) fn read() -> std::io::Result<String> {
        let stdin = std::io::stdin();
        let terminal = stdin.is_terminal();
        if terminal {
            eprint!("Password: ");
            std::io::stderr().flush()?;
        }
        let echo = if terminal { echo_off(&stdin) } else { None };
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        if let Some(restore) = echo {
            restore();
            eprintln!();
        }
        read?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Turns the terminal's echo off; the returned function turns it back on.
    #[cfg(unix)]
    fn echo_off(stdin: &std::io::Stdin) -> Option<impl FnOnce() + use<'_>> {
        use rustix::termios::{self, LocalModes, OptionalActions};
        let saved = termios::tcgetattr(stdin).ok()?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        termios::tcsetattr(stdin, OptionalActions::Now, &quiet).ok()?;
        Some(move || {
            let _ = termios::tcsetattr(stdin, OptionalActions::Now, &saved);
        })
    }

    #[cfg(not(unix))]
    fn echo_off(_: &std::io::Stdin) -> Option<fn()> {
        None
    }
}
