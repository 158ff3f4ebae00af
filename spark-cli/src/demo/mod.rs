//! `spark demo`: the 2014 CC3000 deep update rolled out to a fleet of virtual Cores through a local cloud, all in
//! this process (the engine is [`fleet`]). Progress bars on stderr, then a table (or one JSON document) on stdout.

pub(crate) mod fleet;
pub(crate) mod udp;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use fleet::{DemoConfig, Observer, Progress, Report, UpdatePath};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::Context;
use crate::{Failure, Outcome};

/// `spark demo` options.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Virtual Cores in the fleet.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    count: u32,
    /// Cores (on SP 1.24) behind an unreliable link: they are updated over USB with a DfuSe file (default: 3 in 20
    /// of the fleet, rounded, and at least one from two Cores up, so a small fleet still shows both paths).
    #[arg(long)]
    unreliable: Option<u32>,
    /// Cores already on SP 1.28 (default: a quarter of the fleet).
    #[arg(long)]
    patched: Option<u32>,
    /// Seed of the fleet (ids, keys, who is where, link faults).
    #[arg(long, default_value_t = 2014)]
    seed: u64,
    /// The deep-update image, e.g. Spark's `deep_update_2014_06.bin` (default: a synthetic deep update to CC3000
    /// SP 1.28 that this tool builds).
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// Where the DfuSe file for USB updates is written (and kept, for dfu-util); default: a new folder in the
    /// system temp directory for each run, printed at the end.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Over-the-air updates at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: u32,
    /// Make every USB flash fail with a USB error at this control transfer of the DFU session (to watch a failed
    /// flash: the Core stays in DFU mode and the run fails).
    #[arg(long, value_name = "TRANSFER")]
    usb_fault: Option<u32>,
    /// Then replay the response to Heartbleed: rotate the cloud's server key, move every Core to it over USB, and
    /// retire the old key once no Core remains on it.
    #[arg(long)]
    rotate: bool,
    /// UDP (Electron-class) devices that join the cloud over DTLS once the rollout is done; each is provisioned
    /// with its P-256 key, called and read through the API, and calls to it are timed beside a TCP Core's.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    udp: u32,
    /// Cloud nodes. Above 1, the nodes share a PostgreSQL registry and a NATS bus that the demo starts on loopback
    /// ports (Debian: `apt-get install postgresql nats-server`) and stops at the end; the Cores spread over the
    /// nodes and each one's API calls go through another node than the one holding it.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    nodes: u32,
}

/// Progress bars: a line for the phase, then one bar per Core being updated (over the air: bytes sent; over USB:
/// bytes the bootloader confirmed written).
struct Bars {
    multi: MultiProgress,
    phase: ProgressBar,
    cores: Mutex<HashMap<String, ProgressBar>>,
    style: Option<ProgressStyle>,
}

impl Bars {
    fn new(visible: bool) -> Bars {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let phase = multi.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            phase.set_style(style);
        }
        if visible {
            phase.enable_steady_tick(Duration::from_millis(100));
        }
        let style =
            ProgressStyle::with_template("  {prefix} [{bar:30}] {bytes:>9}/{total_bytes:<9} {msg}")
                .ok()
                .map(|s| s.progress_chars("=> "));
        Bars {
            multi,
            phase,
            cores: Mutex::new(HashMap::new()),
            style,
        }
    }

    fn bar(&self, device: &str, total: u64) -> ProgressBar {
        let mut cores = self.cores.lock().unwrap_or_else(|p| p.into_inner());
        cores
            .entry(device.to_owned())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(total));
                if let Some(style) = &self.style {
                    bar.set_style(style.clone());
                }
                bar.set_prefix(device.to_owned());
                bar
            })
            .clone()
    }

    fn finish(&self) {
        self.phase.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Observer for Bars {
    fn progress(&self, event: Progress<'_>) {
        match event {
            Progress::Phase(what) => self.phase.set_message(what.to_owned()),
            Progress::Note(line) => {
                if self.multi.is_hidden() {
                    eprintln!("{line}");
                } else {
                    let _ = self.multi.println(line);
                }
            }
            Progress::Console {
                url,
                user,
                password,
            } => {
                let line = format!("watch it at {url} (sign in as {user}, password {password})");
                if self.multi.is_hidden() {
                    eprintln!("{line}");
                } else {
                    let _ = self.multi.println(line);
                }
            }
            Progress::Online { online, total } => self
                .phase
                .set_message(format!("connecting the fleet: {online}/{total} online")),
            Progress::OtaStarted {
                device,
                total,
                attempt,
            } => {
                let bar = self.bar(device, total);
                bar.set_length(total);
                bar.set_position(0);
                bar.set_message(if attempt > 1 {
                    format!("flashing (attempt {attempt})")
                } else {
                    "flashing".to_owned()
                });
            }
            Progress::OtaSent {
                device,
                sent,
                total,
            } => {
                let bar = self.bar(device, total);
                bar.set_position(sent.min(total));
            }
            Progress::OtaStep { device, step } => self.bar(device, 0).set_message(step.to_owned()),
            Progress::OtaDone { device, ok, detail } | Progress::UsbDone { device, ok, detail } => {
                let bar = self.bar(device, 0);
                let message = if ok {
                    format!("done, SP {detail}")
                } else {
                    format!("FAILED: {detail}")
                };
                bar.finish_with_message(message);
            }
            Progress::UsbStarted { device, total } => {
                let bar = self.bar(device, total);
                bar.set_length(total);
                bar.set_position(0);
                bar.set_message("USB");
            }
            Progress::UsbWritten {
                device,
                written,
                total,
            } => self.bar(device, total).set_position(written.min(total)),
            Progress::UsbStep { device, step } => {
                self.bar(device, 0).set_message(format!("USB: {step}"));
            }
            _ => {}
        }
    }
}

/// Runs `spark demo`.
pub(crate) fn demo(ctx: &Context, args: DemoArgs) -> Outcome {
    if args.nodes > 1 {
        if args.rotate || args.udp > 0 {
            return Err(Failure(
                "--rotate and --udp run on one node: leave out --nodes, or them".into(),
            ));
        }
        // Before anything starts: a missing program is said plainly, with how to install it.
        fleet::nodes::check_installed().map_err(Failure)?;
    }
    let config = demo_config(args)?;
    let report = run_fleet(ctx, config)?;
    if ctx.json {
        ctx.print_json(&report)?;
    } else {
        print_table(&report);
        fleet::rotate::print(report.rotation.as_ref());
    }
    verdict(&report)
}

/// How many Cores sit behind an unreliable link when `--unreliable` is not given: the 3 of the default 20-Core
/// fleet scaled to `count` and rounded, and at least one once there are two Cores (one over the air, one over USB).
fn default_unreliable(count: usize) -> usize {
    let scaled = (count * 3 + 10) / 20;
    if count >= 2 { scaled.max(1) } else { scaled }
}

/// The run's settings from the command line: the fleet's make-up, the image and where files go.
fn demo_config(args: DemoArgs) -> Result<DemoConfig, Failure> {
    let count = args.count as usize;
    let unreliable = args
        .unreliable
        .map_or_else(|| default_unreliable(count), |u| u as usize);
    let patched = args.patched.map_or(count / 4, |p| p as usize);
    if unreliable + patched > count {
        return Err(Failure(format!(
            "--unreliable {unreliable} and --patched {patched} do not fit in --count {count}"
        )));
    }
    let (image_name, image) = fleet::load_image(args.image.as_deref())?;
    let out = match args.out {
        Some(dir) => dir,
        // A fresh folder per run, so one run never overwrites another's files.
        None => tempfile::Builder::new()
            .prefix("spark-demo-")
            .tempdir()
            .map_err(|e| Failure(format!("cannot create a folder in the temp directory: {e}")))?
            .keep(),
    };
    Ok(DemoConfig {
        usb_fault: args.usb_fault,
        rotate: args.rotate,
        count,
        unreliable,
        patched,
        seed: args.seed,
        image,
        image_name,
        out,
        jobs: args.jobs as usize,
        udp: args.udp as usize,
        nodes: args.nodes as usize,
    })
}

/// Runs the fleet on a runtime of its own, with progress bars on a terminal.
fn run_fleet(ctx: &Context, config: DemoConfig) -> Result<Report, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the async runtime: {e}")))?;
    // Several nodes: PostgreSQL and NATS start before the runtime and stop after it, outliving every node's task.
    let services = if config.nodes > 1 {
        Some(fleet::nodes::Services::start().map_err(Failure)?)
    } else {
        None
    };
    let bars = Arc::new(Bars::new(!ctx.json && std::io::stderr().is_terminal()));
    let observer: Arc<dyn Observer> = bars.clone();
    let result = runtime.block_on(fleet::run(config, services.as_ref(), observer));
    bars.finish();
    // The Cores' and the cloud's tasks end with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(services) = services {
        drop(services);
        eprintln!("stopped: NATS and PostgreSQL (its temporary folder deleted)");
    }
    Ok(result?)
}

/// Success when every Core that needed the update got it; otherwise one line saying how many did not.
fn verdict(report: &Report) -> Outcome {
    let s = &report.summary;
    if report.succeeded() {
        return Ok(());
    }
    // The update went through: what failed is the rotation.
    if let Some(rotation) = &report.rotation
        && s.ota_failed + s.usb_failed == 0
    {
        return Err(Failure(rotation.failure()));
    }
    Err(Failure(format!(
        "{} of {} Cores that needed the update were not patched ({} of {} over the air, {} of {} over USB)",
        s.ota_failed + s.usb_failed,
        s.ota_planned + s.usb,
        s.ota_failed,
        s.ota_planned,
        s.usb_failed,
        s.usb
    )))
}

fn print_table(report: &Report) {
    crate::out!(
        "{:<24}  {:<6}  {:<6}  {:<4}  {:>6}  NOTE",
        "DEVICE",
        "BEFORE",
        "AFTER",
        "PATH",
        "TIME"
    );
    for row in &report.rows {
        let note = match (&row.error, row.path) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, UpdatePath::Ota) => "back on Tinker".to_owned(),
            (None, UpdatePath::Usb) => match row.link_check.mean_ms {
                Some(ms) if row.link_check.answered == row.link_check.calls => {
                    format!("slow link ({ms:.0} ms per call): flashed over USB, back on Tinker")
                }
                _ => "unreliable link: flashed over USB, back on Tinker".to_owned(),
            },
            (None, UpdatePath::Skip) => "already up to date".to_owned(),
        };
        let time = if row.path == UpdatePath::Skip {
            "-".to_owned()
        } else {
            format!("{:.1}s", row.seconds)
        };
        crate::out!(
            "{:<24}  {:<6}  {:<6}  {:<4}  {:>6}  {note}",
            row.device,
            row.before.as_deref().unwrap_or("?"),
            row.after.as_deref().unwrap_or("?"),
            row.path.as_str(),
            time,
        );
    }
    let s = &report.summary;
    crate::out!("");
    crate::out!("image: {}", s.image);
    crate::out!("files: {}", s.out_dir);
    crate::out!(
        "{} Cores: patched to SP {}: {}/{} over the air, {}/{} over USB; {} already up to date ({:.1} s)",
        s.cores,
        s.target,
        s.ota_patched,
        s.ota_planned,
        s.usb_patched,
        s.usb,
        s.skipped,
        s.seconds
    );
    if let Some(command) = &s.usb_command {
        crate::out!("USB, on a real Core in DFU mode: {command}");
    }
    if let Some(udp) = &report.udp {
        print_udp(udp);
    }
}

fn print_udp(udp: &udp::UdpReport) {
    crate::out!("");
    crate::out!("UDP devices (DTLS on {}):", udp.listen);
    for d in &udp.devices {
        let note = match (&d.error, d.call_result, d.temperature) {
            (Some(e), ..) => format!("FAILED: {e}"),
            (None, Some(r), Some(t)) => {
                format!("online; digitalwrite D7,HIGH = {r}; temperature {t}")
            }
            (None, ..) => "online".to_owned(),
        };
        crate::out!("{:<24}  {note}", d.device);
    }
    if let (Some(u), Some(t)) = (udp.udp_call_ms, udp.tcp_call_ms) {
        crate::out!(
            "function call through the API, median: {u:.1} ms to a UDP device, {t:.1} ms to a TCP Core ({:.2} x)",
            u / t
        );
    }
}

#[cfg(test)]
mod tests {
    use super::default_unreliable;

    #[test]
    fn the_default_fleet_keeps_three_unreliable_cores_and_small_fleets_keep_one() {
        let picked: Vec<usize> = [1, 2, 4, 6, 10, 20, 40, 1000]
            .into_iter()
            .map(default_unreliable)
            .collect();
        assert_eq!(picked, [0, 1, 1, 1, 2, 3, 6, 150]);
    }
}
