//! `spark`: the command-line tool for Spark Cores and the Spark / Particle cloud, built on the spark-sdk crates.
//!
//! One module per command family: [`cloud`] (login, tokens, devices, calls, events, flash over the air, compile),
//! [`members`] (functions and variables), [`devices`] (claiming, renaming, webhooks), [`offline`] (`binary`, `dfu`
//! and `cc3000` on files), [`usb`] (DFU: `dfu list`, `flash --usb`, the device key), [`usb_mode`] (`usb
//! list|dfu|reset`), [`keys`], [`update`] (the Core's deep update), `serial` (listening mode over the USB serial
//! port, Unix) and [`demo`]. Every command that reports something takes `--json`. Errors are one line on stderr;
//! the exit status is 1 for a failed command and 2 for a usage error ([`EXIT_STATUS`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cloud;
mod demo;
mod devices;
mod files;
mod keys;
mod members;
mod offline;
mod output;
#[cfg(unix)]
mod serial;
mod update;
mod usb;
mod usb_mode;

/// How the tool ends, for scripts (also in spark-cli/README.md).
const EXIT_STATUS: &str = "Exit status: 0 on success; 1 when a command fails (one line on stderr says why); \
2 for a usage error (an unknown command or option, a missing or malformed argument). When the reader of stdout \
goes away (`spark list | head -1`), the tool stops quietly with 0.";

/// The Spark command-line tool.
#[derive(Parser, Debug)]
#[command(name = "spark", version, about = "Spark Core and cloud command-line tool", long_about = None,
    after_help = EXIT_STATUS)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Log in with a user name and password and store the token.
    Login {
        #[command(flatten)]
        args: cloud::LoginArgs,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Forget the stored token (the token itself stays valid).
    Logout,
    /// Show the account the token belongs to.
    Whoami {
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Manage access tokens.
    Token {
        #[command(subcommand)]
        command: cloud::TokenCommand,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// List your devices, their variables and functions.
    List {
        #[command(flatten)]
        args: cloud::ListArgs,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Show one device.
    Info {
        #[command(flatten)]
        args: cloud::DeviceArg,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Call a function on a device.
    Call {
        #[command(flatten)]
        args: cloud::CallArgs,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Read a variable from a device.
    Get {
        #[command(flatten)]
        args: cloud::GetArgs,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Publish an event.
    Publish {
        #[command(flatten)]
        args: cloud::PublishArgs,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Stream events until Ctrl-C (or `--count` events).
    Subscribe {
        #[command(flatten)]
        args: cloud::SubscribeArgs,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Functions of your online devices.
    Function {
        #[command(subcommand)]
        command: members::FunctionCommand,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Variables of your online devices, and watching one.
    Variable {
        #[command(subcommand)]
        command: members::VariableCommand,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Add, remove and rename your devices.
    Device {
        #[command(subcommand)]
        command: devices::DeviceCommand,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Webhooks: HTTP requests the cloud makes when events are published.
    Webhook {
        #[command(subcommand)]
        command: devices::WebhookCommand,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Flash firmware to a device over the air (`--cloud`) or over USB DFU (`--usb`, `--factory`).
    Flash {
        #[command(flatten)]
        args: usb::FlashArgs,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Compile sources in the cloud and download the binary.
    Compile {
        #[command(flatten)]
        args: cloud::CompileArgs,
        #[command(flatten)]
        cloud: cloud::Settings,
    },
    /// Inspect firmware binaries.
    #[command(subcommand)]
    Binary(offline::BinaryCommand),
    /// A Core in listening mode over its USB serial port: its id, MAC address, Wi-Fi credentials, its output.
    #[cfg(unix)]
    #[command(subcommand)]
    Serial(serial::SerialCommand),
    /// Cores on USB: list them, put one into DFU mode, make one leave it.
    #[command(subcommand)]
    Usb(usb_mode::UsbCommand),
    /// DFU devices and files.
    #[command(subcommand)]
    Dfu(usb::DfuCommand),
    /// CC3000 service-pack images.
    #[command(subcommand)]
    Cc3000(offline::Cc3000Command),
    /// Device and server keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The Core's deep update over USB (`--image deep_update_2014_06.bin`): patches its CC3000.
    Update(update::UpdateArgs),
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
        Command::Flash { args, .. } if !args.is_cloud() => usb::flash(&ctx, args),
        Command::Cc3000(c) => offline::cc3000(&ctx, c),
        Command::Keys(c) => keys::keys(&ctx, c),
        Command::Demo(a) => demo::demo(&ctx, a),
        Command::Update(a) => update::update(&ctx, a),
        Command::Usb(c) => usb_mode::usb(&ctx, c),
        #[cfg(unix)]
        Command::Serial(c) => serial::serial(&ctx, c),
        Command::Logout => cloud::logout(&ctx),
        command => run_async(cloud_command(&ctx, command)),
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

/// Runs a cloud command on a single-threaded runtime.
pub(crate) fn run_async(future: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the async runtime: {e}")))?
        .block_on(future)
}

async fn cloud_command(ctx: &output::Context, command: Command) -> Outcome {
    match command {
        Command::Login { args, cloud: s } => cloud::login(ctx, &s, args).await,
        Command::Token { command, cloud: s } => cloud::token(ctx, &s, command).await,
        Command::List { args, cloud: s } => cloud::list(ctx, &s, args).await,
        Command::Info { args, cloud: s } => cloud::info(ctx, &s, args).await,
        Command::Call { args, cloud: s } => cloud::call(ctx, &s, args).await,
        Command::Get { args, cloud: s } => cloud::get(ctx, &s, args).await,
        Command::Publish { args, cloud: s } => cloud::publish(ctx, &s, args).await,
        Command::Subscribe { args, cloud: s } => cloud::subscribe(ctx, &s, args).await,
        Command::Flash { args, cloud: s } => cloud::flash(ctx, &s, args.into_cloud()?).await,
        Command::Compile { args, cloud: s } => cloud::compile(ctx, &s, args).await,
        Command::Whoami { cloud: s } => cloud::whoami(ctx, &s).await,
        Command::Function { command, cloud: s } => members::function(ctx, &s, command).await,
        Command::Variable { command, cloud: s } => members::variable(ctx, &s, command).await,
        Command::Device { command, cloud: s } => devices::device(ctx, &s, command).await,
        Command::Webhook { command, cloud: s } => devices::webhook(ctx, &s, command).await,
        Command::Logout
        | Command::Binary(_)
        | Command::Dfu(_)
        | Command::Cc3000(_)
        | Command::Keys(_)
        | Command::Update(_)
        | Command::Usb(_)
        | Command::Demo(_) => Ok(()),
        #[cfg(unix)]
        Command::Serial(_) => Ok(()),
    }
}
