//! `spark`: the command-line tool for Spark Cores and the Spark / Particle cloud, built on the spark-sdk crates.
//!
//! Cloud commands use `spark-api`; `binary`, `dfu` and `cc3000` work offline on files with `spark-dfu` and
//! `spark-cc3000`; `dfu list`, `flash --usb`, `keys load|save|server` talk to a device over USB DFU. Every command that reports something takes `--json`. Errors are one line on stderr and the exit
//! code is non-zero.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cloud;
mod demo;
mod keys;
mod offline;
mod output;
mod usb;

/// The Spark command-line tool.
#[derive(Parser, Debug)]
#[command(name = "spark", version, about = "Spark Core and cloud command-line tool", long_about = None)]
struct Cli {
    /// The cloud API URL (default: the configured `apiUrl`, else `https://api.particle.io`).
    #[arg(long, global = true, env = "SPARK_API_URL")]
    api_url: Option<String>,
    /// The access token to use instead of the stored one.
    #[arg(
        long,
        global = true,
        env = "PARTICLE_ACCESS_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Log in with a user name and password and store the token.
    Login(cloud::LoginArgs),
    /// Forget the stored token (the token itself stays valid).
    Logout,
    /// Manage access tokens.
    #[command(subcommand)]
    Token(cloud::TokenCommand),
    /// List your devices, their variables and functions.
    List(cloud::ListArgs),
    /// Show one device.
    Info(cloud::DeviceArg),
    /// Call a function on a device.
    Call(cloud::CallArgs),
    /// Read a variable from a device.
    Get(cloud::GetArgs),
    /// Publish an event.
    Publish(cloud::PublishArgs),
    /// Stream events until Ctrl-C (or `--count` events).
    Subscribe(cloud::SubscribeArgs),
    /// Flash firmware to a device over the air (`--cloud`) or over USB DFU (`--usb`, `--factory`).
    Flash(usb::FlashArgs),
    /// Compile sources in the cloud and download the binary.
    Compile(cloud::CompileArgs),
    /// Inspect firmware binaries.
    #[command(subcommand)]
    Binary(offline::BinaryCommand),
    /// DFU devices and files.
    #[command(subcommand)]
    Dfu(usb::DfuCommand),
    /// CC3000 service-pack images.
    #[command(subcommand)]
    Cc3000(offline::Cc3000Command),
    /// Device and server keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Roll the CC3000 deep update out to a fleet of virtual Cores through a local cloud (no setup needed).
    Demo(demo::DemoArgs),
}

/// The error every command reports: one line on stderr.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// A command's result.
pub(crate) type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = output::Context { json: cli.json };
    let result = match cli.command {
        Command::Binary(c) => offline::binary(&ctx, c),
        Command::Dfu(c) => usb::dfu(&ctx, c),
        Command::Flash(a) if !a.is_cloud() => usb::flash(&ctx, a),
        Command::Cc3000(c) => offline::cc3000(&ctx, c),
        Command::Keys(c) => keys::keys(&ctx, c),
        Command::Demo(a) => demo::demo(&ctx, a),
        command => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("spark: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let settings = cloud::Settings {
                api_url: cli.api_url,
                token: cli.token,
            };
            runtime.block_on(async move {
                match command {
                    Command::Login(a) => cloud::login(&ctx, &settings, a).await,
                    Command::Logout => cloud::logout(&ctx),
                    Command::Token(c) => cloud::token(&ctx, &settings, c).await,
                    Command::List(a) => cloud::list(&ctx, &settings, a).await,
                    Command::Info(a) => cloud::info(&ctx, &settings, a).await,
                    Command::Call(a) => cloud::call(&ctx, &settings, a).await,
                    Command::Get(a) => cloud::get(&ctx, &settings, a).await,
                    Command::Publish(a) => cloud::publish(&ctx, &settings, a).await,
                    Command::Subscribe(a) => cloud::subscribe(&ctx, &settings, a).await,
                    Command::Flash(a) => match a.into_cloud() {
                        Ok(a) => cloud::flash(&ctx, &settings, a).await,
                        Err(e) => Err(e),
                    },
                    Command::Compile(a) => cloud::compile(&ctx, &settings, a).await,
                    Command::Binary(_)
                    | Command::Dfu(_)
                    | Command::Cc3000(_)
                    | Command::Keys(_)
                    | Command::Demo(_) => Ok(()),
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            let line = message.replace('\n', " ");
            eprintln!("spark: {line}");
            ExitCode::FAILURE
        }
    }
}
