//! `local-cloud`: the Spark cloud on one machine.
//!
//! ```text
//! local-cloud [--dir DIR] [--http ADDR] [--device ADDR] [--key-bits N]
//! ```
//!
//! Prints one JSON line on stdout once listening, `{"http":"127.0.0.1:8080","device":...,"dir":"..."}`, so that a
//! parent process started with port 0 learns the chosen ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use examples::cloud::{self, Config, devices};

const USAGE: &str = "usage: local-cloud [--dir DIR] [--http ADDR] [--device ADDR] [--key-bits N]

  --dir DIR       state directory (server key, device keys, users); default ./local-cloud
  --http ADDR     REST API listen address; default 0.0.0.0:8080 (port 0 = any free port)
  --device ADDR   device listen address; default 0.0.0.0:5683 (port 0 = any free port)
  --key-bits N    size of a server key generated on first start; default 2048";

struct Args {
    dir: PathBuf,
    http: SocketAddr,
    device: SocketAddr,
    key_bits: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dir: PathBuf::from("local-cloud"),
        http: SocketAddr::from(([0, 0, 0, 0], 8080)),
        device: SocketAddr::from(([0, 0, 0, 0], 5683)),
        key_bits: 2048,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let addr = |v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("{flag} {v}: {e}"))
        };
        match flag.as_str() {
            "--dir" => args.dir = PathBuf::from(value),
            "--http" => args.http = addr(&value)?,
            "--device" => args.device = addr(&value)?,
            "--key-bits" => {
                args.key_bits = value
                    .parse()
                    .ok()
                    .filter(|b| (1024..=4096).contains(b))
                    .ok_or_else(|| format!("--key-bits {value}: expected 1024 to 4096"))?;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("local-cloud: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("local-cloud: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-cloud: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        dir: args.dir.clone(),
        http: args.http,
        key_bits: args.key_bits,
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
