//! `spark-cloud`: the Spark cloud on one machine.
//!
//! ```text
//! spark-cloud [--dir DIR] [--http ADDR] [--device ADDR] [--key-bits N]
//! ```
//!
//! Prints one JSON line on stdout once listening, `{"http":"127.0.0.1:8080","device":...,"dir":"..."}`, so that a
//! parent process started with port 0 learns the chosen ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use spark_cloud::{self as cloud, Config, devices};

/// A Spark cloud on one machine: the REST API and the device listener, with its state in a directory.
#[derive(Parser, Debug)]
#[command(name = "spark-cloud", version, about, long_about = None)]
struct Args {
    /// State directory (server key, device keys, users, tokens).
    #[arg(long, value_name = "DIR", default_value = "spark-cloud")]
    dir: PathBuf,
    /// REST API listen address (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Device listen address (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5683")]
    device: SocketAddr,
    /// Size of the server key generated on first start.
    #[arg(long, value_name = "N", default_value_t = 2048,
          value_parser = clap::value_parser!(u16).range(1024..=4096))]
    key_bits: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
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
