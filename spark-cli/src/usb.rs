//! The `spark` commands that go over USB DFU: `dfu list`, `flash --usb|--factory`, `keys load|save` and the
//! device half of `keys server`, on spark-dfu's host, operations and nusb backend.
//!
//! Test hook (hidden): with `SPARK_DFU_SIM=<state file>` the tool talks to spark-dfu's simulated Spark Core
//! instead of USB, loading its internal and SPI flash from that file before the command and saving them after
//! (see [`SimState`]); `SPARK_DFU_SIM_FAULT=<n>:<kind>[,...]` injects faults at the n-th control transfer
//! (`stall`, `usb`, `disappear`, `status=<code>`); `SPARK_DFU_SIM_MODE=runtime` makes it start as an application
//! with a run-time DFU interface (run-time USB ids), which the tool detaches into DFU mode first;
//! `SPARK_DFU_SIM_PLATFORM=electron` makes it an Electron in DFU mode instead (alt 1 the DCT, where the UDP keys
//! live).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use spark_dfu::file::DfuFile;
use spark_dfu::file::dfuse::{self, DfuseFile};
use spark_dfu::host::proto::{FunctionalDescriptor, Setup, Status};
use spark_dfu::host::runtime::{DetachOptions, DetachOutcome};
use spark_dfu::host::{Event, Options, Summary, TransferError};
use spark_dfu::ops::{self, OpError};
use spark_dfu::platform::server_key::{ServerAddress, ServerKeyImage};
use spark_dfu::platform::{Item, Platform, Transport, UsbId};
use spark_dfu::sim::{Fault, SparkCore};
use spark_dfu::transport::blocking::Transport as DfuTransport;

use crate::output::Context;
use crate::{Failure, Outcome, cloud, offline};

/// The environment variable that swaps USB for the simulated Core (tests only).
pub(crate) const SIM_ENV: &str = "SPARK_DFU_SIM";
/// Faults to inject into the simulated Core.
pub(crate) const SIM_FAULT_ENV: &str = "SPARK_DFU_SIM_FAULT";
/// `runtime`: the simulated Core starts in run-time mode.
pub(crate) const SIM_MODE_ENV: &str = "SPARK_DFU_SIM_MODE";
/// `electron`: the simulated device is an Electron (platform 10) rather than a Core.
pub(crate) const SIM_PLATFORM_ENV: &str = "SPARK_DFU_SIM_PLATFORM";

/// The cloud protocol whose key a command reads or writes, as particle-cli's `--protocol`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// TCP: the RSA device key (the Core, Photon and P1 by default).
    Tcp,
    /// UDP: the P-256 device key at DCT offset 3106 (the Electron and Gen 3 by default).
    Udp,
}

impl From<Protocol> for Transport {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => Transport::Tcp,
            Protocol::Udp => Transport::Udp,
        }
    }
}

/// `tcp` or `udp`, for reports.
pub(crate) fn protocol_name(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    }
}

/// Which DFU device to use when several are plugged in.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct Select {
    /// The device's USB ids, `vendor:product` in hex (default: any device of the platform table).
    #[arg(long = "device", value_name = "VID:PID", value_parser = parse_usb_id)]
    usb_id: Option<UsbId>,
    /// The device's USB serial number.
    #[arg(long)]
    serial: Option<String>,
}

impl Select {
    /// Whether no device was named.
    pub(crate) fn is_empty(&self) -> bool {
        self.usb_id.is_none() && self.serial.is_none()
    }
}

fn parse_usb_id(text: &str) -> Result<UsbId, String> {
    let (v, p) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: expected vendor:product in hex"))?;
    let hex = |s: &str| {
        u16::from_str_radix(s.trim_start_matches("0x"), 16)
            .map_err(|_| format!("`{s}` is not a 16-bit hex number"))
    };
    Ok(UsbId {
        vendor: hex(v)?,
        product: hex(p)?,
    })
}

/// `spark dfu ...`: the device listing, plus the file commands.
#[derive(Subcommand, Debug)]
pub(crate) enum DfuCommand {
    /// List the DFU devices, one line per alt setting, like `dfu-util -l`.
    List {
        #[command(flatten)]
        select: Select,
    },
    #[command(flatten)]
    Files(offline::DfuCommand),
}

/// `spark flash`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("how").required(true).multiple(true).args(["cloud", "usb", "factory"])))]
pub(crate) struct FlashArgs {
    /// Flash over the air through the cloud: `spark flash --cloud <device> <files...>`.
    #[arg(long, conflicts_with_all = ["usb", "factory"])]
    cloud: bool,
    /// Flash over USB DFU: `spark flash --usb <file.bin|file.dfu>`.
    #[arg(long)]
    usb: bool,
    /// Write the factory-reset image instead of user firmware (over USB; the Core: SPI flash 0x20000).
    #[arg(long)]
    factory: bool,
    /// With `--cloud`: the device and the files; over USB: the file.
    #[arg(required = true, value_name = "ARGS")]
    args: Vec<String>,
    /// Read back and compare after writing (the default).
    #[arg(long, overrides_with = "no_verify")]
    verify: bool,
    /// Do not read back.
    #[arg(long)]
    no_verify: bool,
    /// Leave DFU mode and start the firmware afterwards (the default for user firmware, as particle-cli).
    #[arg(long, overrides_with = "no_leave")]
    leave: bool,
    /// Stay in DFU mode afterwards (the default for the factory image).
    #[arg(long)]
    no_leave: bool,
    /// With `--cloud`: return once the cloud accepted the update instead of waiting for the device's outcome.
    #[arg(long)]
    no_wait: bool,
    /// With `--cloud`: seconds to wait for the device's outcome.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,
    /// Over USB: write even where the memory layout says no (dfu-util's `:force`). With `--cloud`: send a binary
    /// that does not look like firmware for the device's platform (a port on another board, say).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    select: Select,
}

impl FlashArgs {
    /// `flash --usb <path>` on the selected device, leaving DFU mode afterwards.
    pub(crate) fn user_firmware(path: &Path, select: Select) -> Self {
        FlashArgs {
            cloud: false,
            usb: true,
            factory: false,
            args: vec![path.display().to_string()],
            verify: true,
            no_verify: false,
            leave: true,
            no_leave: false,
            no_wait: false,
            timeout: 0,
            force: false,
            select,
        }
    }

    /// Whether this is an over-the-air flash.
    pub(crate) fn is_cloud(&self) -> bool {
        self.cloud
    }

    /// The cloud command's arguments.
    pub(crate) fn into_cloud(self) -> Result<cloud::FlashArgs, Failure> {
        let mut args = self.args.into_iter();
        let device = args.next().unwrap_or_default();
        let files: Vec<String> = args.collect();
        if files.is_empty() {
            return Err(Failure(
                "flash --cloud needs a device and at least one file".into(),
            ));
        }
        Ok(cloud::FlashArgs {
            device,
            files,
            no_wait: self.no_wait,
            timeout: std::time::Duration::from_secs(self.timeout),
            force: self.force,
        })
    }
}

/// `spark keys load` and `keys save`.
#[derive(Subcommand, Debug)]
pub(crate) enum DeviceKeyCommand {
    /// Write a device private key (PEM or DER) to the device over DFU, after saving the one it holds to
    /// `pre_<file>` as spark-cli did. An RSA key goes to the TCP key place; a P-256 key (SEC1 or PKCS#8) goes to
    /// the UDP key place (DCT offset 3106), which a Core does not have.
    Load {
        /// The key file.
        key: PathBuf,
        /// Leave DFU mode afterwards.
        #[arg(long)]
        leave: bool,
        /// Do not save the key the device holds first.
        #[arg(long)]
        no_backup: bool,
        #[command(flatten)]
        select: Select,
    },
    /// Read the device private key over DFU into a DER file.
    Save {
        /// The file to write.
        file: PathBuf,
        /// Which key: `tcp` (RSA) or `udp` (P-256, DCT offset 3106); default: the device's own protocol.
        #[arg(long, value_enum)]
        protocol: Option<Protocol>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
        /// Keep the whole region read (1024 bytes on a Core), padding included.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        select: Select,
    },
}

/// What the simulated Core keeps between runs: `SPKSIM01`, then its internal flash (128 KiB, from
/// 0x08000000), then its SPI flash (2 MiB, from 0).
pub(crate) struct SimState;

impl SimState {
    const MAGIC: &'static [u8; 8] = b"SPKSIM01";

    /// The simulated Electron's file: `SPKSIME1`, its internal flash (1 MiB), then its DCT (16 KiB).
    const ELECTRON_MAGIC: &'static [u8; 8] = b"SPKSIME1";

    fn load(path: &Path, runtime: bool, platform: Platform) -> Result<SparkCore, Failure> {
        if platform == Platform::Electron {
            return Self::load_electron(path);
        }
        let mut core = if runtime {
            SparkCore::in_runtime(true)
        } else {
            SparkCore::new()
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(core),
            Err(e) => return Err(Failure(format!("cannot read {}: {e}", path.display()))),
        };
        let (i, s) = (core.internal.len(), core.spi.len());
        if bytes.len() != 8 + i + s || !bytes.starts_with(Self::MAGIC) {
            return Err(Failure(format!(
                "{} is not a simulated-Core state file",
                path.display()
            )));
        }
        core.internal.copy_from_slice(&bytes[8..8 + i]);
        core.spi.copy_from_slice(&bytes[8 + i..]);
        Ok(core)
    }

    fn load_electron(path: &Path) -> Result<SparkCore, Failure> {
        let mut electron = SparkCore::electron();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(electron),
            Err(e) => return Err(Failure(format!("cannot read {}: {e}", path.display()))),
        };
        let (i, d) = (electron.internal.len(), electron.dct.len());
        if bytes.len() != 8 + i + d || !bytes.starts_with(Self::ELECTRON_MAGIC) {
            return Err(Failure(format!(
                "{} is not a simulated-Electron state file",
                path.display()
            )));
        }
        electron.internal.copy_from_slice(&bytes[8..8 + i]);
        electron.dct.copy_from_slice(&bytes[8 + i..]);
        Ok(electron)
    }

    fn save(path: &Path, core: &SparkCore) -> Result<(), Failure> {
        let (magic, other) = match core.platform() {
            Platform::Core => (Self::MAGIC, &core.spi),
            _ => (Self::ELECTRON_MAGIC, &core.dct),
        };
        let mut bytes = Vec::with_capacity(8 + core.internal.len() + other.len());
        bytes.extend_from_slice(magic);
        bytes.extend_from_slice(&core.internal);
        bytes.extend_from_slice(other);
        std::fs::write(path, bytes)
            .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
    }
}

fn parse_faults(text: &str) -> Result<Vec<(u32, Fault)>, Failure> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let bad = || Failure(format!("{SIM_FAULT_ENV}: `{item}` is not <n>:<kind>"));
            let (n, kind) = item.trim().split_once(':').ok_or_else(bad)?;
            let n: u32 = n.parse().map_err(|_| bad())?;
            let fault = match kind {
                "stall" => Fault::Stall,
                "usb" => Fault::UsbError,
                "disappear" => Fault::Disappear,
                k => {
                    let code = k.strip_prefix("status=").ok_or_else(bad)?;
                    Fault::WrongStatus(Status(
                        crate::output::parse_u32(code).map_err(Failure)? as u8
                    ))
                }
            };
            Ok((n, fault))
        })
        .collect()
}

/// One listed device.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listed {
    vendor: String,
    product: String,
    ver: String,
    devnum: u8,
    path: String,
    serial: Option<String>,
    platform: Option<&'static str>,
    mode: &'static str,
    alts: Vec<ListedAlt>,
    #[serde(skip)]
    id: UsbId,
    #[serde(skip)]
    source: Source,
}

#[derive(Debug, Clone, Serialize)]
struct ListedAlt {
    interface: u8,
    alt: u8,
    name: Option<String>,
}

#[derive(Debug, Clone)]
enum Source {
    Sim(PathBuf),
    Usb(Box<spark_dfu::usb::DfuDevice>),
}

impl Listed {
    /// Whether the device runs its firmware (a run-time DFU interface) rather than its DFU bootloader.
    pub(crate) fn in_runtime(&self) -> bool {
        self.mode == "runtime"
    }

    /// `Core 1d50:607f (serial SPARKSIM0001)`, for messages.
    pub(crate) fn name(&self) -> String {
        format!(
            "{} {}:{}{}",
            self.platform.unwrap_or("device"),
            self.vendor,
            self.product,
            self.serial
                .as_deref()
                .map(|s| format!(" (serial {s})"))
                .unwrap_or_default()
        )
    }

    /// One line for `usb list`.
    pub(crate) fn summary(&self) -> String {
        let mode = if self.in_runtime() {
            "running its firmware"
        } else {
            "in DFU mode"
        };
        format!("{} at {}: {mode}", self.name(), self.path)
    }

    fn platform(&self) -> Option<Platform> {
        Platform::from_dfu_usb(self.id).or_else(|| Platform::from_runtime_usb(self.id))
    }

    fn lines(&self) -> Vec<String> {
        let kind = if self.mode == "runtime" {
            "Runtime"
        } else {
            "DFU"
        };
        self.alts
            .iter()
            .map(|a| {
                format!(
                    "Found {kind}: [{}:{}] ver={}, devnum={}, cfg=1, intf={}, path=\"{}\", alt={}, name=\"{}\", serial=\"{}\"",
                    self.vendor,
                    self.product,
                    self.ver,
                    self.devnum,
                    a.interface,
                    self.path,
                    a.alt,
                    a.name.as_deref().unwrap_or("UNKNOWN"),
                    self.serial.as_deref().unwrap_or("UNKNOWN"),
                )
            })
            .collect()
    }
}

fn sim_path() -> Option<PathBuf> {
    std::env::var_os(SIM_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

fn sim_runtime() -> bool {
    std::env::var_os(SIM_MODE_ENV).is_some_and(|m| m == "runtime")
}

fn sim_platform() -> Platform {
    match std::env::var_os(SIM_PLATFORM_ENV) {
        Some(p) if p.eq_ignore_ascii_case("electron") => Platform::Electron,
        _ => Platform::Core,
    }
}

fn sim_listing(path: PathBuf) -> Listed {
    let core = sim_platform();
    // Only the simulated Core has a run-time face.
    let (id, mode, alts) = if sim_runtime() && core == Platform::Core {
        let alts = vec![ListedAlt {
            interface: 0,
            alt: 0,
            name: None,
        }];
        (core.runtime_usb(), "runtime", alts)
    } else {
        let alts = core
            .alt_settings()
            .iter()
            .map(|a| ListedAlt {
                interface: 0,
                alt: a.alt,
                name: a.layout.map(String::from),
            })
            .collect();
        (core.dfu_usb(), "dfu", alts)
    };
    Listed {
        vendor: format!("{:04x}", id.vendor),
        product: format!("{:04x}", id.product),
        ver: format!("{:04x}", core.dfu_bcd_device().unwrap_or(0)),
        devnum: 1,
        path: "sim".into(),
        serial: Some("SPARKSIM0001".into()),
        platform: Some(core.name()),
        mode,
        alts,
        id,
        source: Source::Sim(path),
    }
}

pub(crate) fn list_devices() -> Result<Vec<Listed>, Failure> {
    if let Some(path) = sim_path() {
        return Ok(vec![sim_listing(path)]);
    }
    let devices =
        spark_dfu::usb::list().map_err(|e| Failure(format!("cannot list USB devices: {e}")))?;
    Ok(devices
        .into_iter()
        .map(|d| {
            let id = UsbId {
                vendor: d.vendor,
                product: d.product,
            };
            let runtime = d.alts.iter().all(|a| a.protocol == 1);
            Listed {
                vendor: format!("{:04x}", d.vendor),
                product: format!("{:04x}", d.product),
                ver: format!("{:04x}", d.bcd_device),
                devnum: d.devnum,
                path: d.path.clone(),
                serial: d.serial.clone(),
                platform: Platform::from_dfu_usb(id)
                    .or_else(|| Platform::from_runtime_usb(id))
                    .map(Platform::name),
                mode: if runtime { "runtime" } else { "dfu" },
                alts: d
                    .alts
                    .iter()
                    .map(|a| ListedAlt {
                        interface: a.interface,
                        alt: a.alt,
                        name: a.name.clone(),
                    })
                    .collect(),
                id,
                source: Source::Usb(Box::new(d)),
            }
        })
        .collect())
}

pub(crate) fn matches(d: &Listed, select: &Select) -> bool {
    let id_ok = match select.usb_id {
        Some(id) => d.id == id,
        None => d.platform().is_some(),
    };
    let serial_ok = match &select.serial {
        Some(s) => d.serial.as_deref() == Some(s.as_str()),
        None => true,
    };
    id_ok && serial_ok
}

fn describe(select: &Select) -> String {
    let mut s = String::new();
    if let Some(id) = select.usb_id {
        s.push_str(&format!(" {:04x}:{:04x}", id.vendor, id.product));
    }
    if let Some(serial) = &select.serial {
        s.push_str(&format!(" with serial {serial}"));
    }
    s
}

/// `spark dfu list`.
fn dfu_list(ctx: &Context, select: &Select) -> Outcome {
    let devices: Vec<Listed> = list_devices()?
        .into_iter()
        .filter(|d| select.usb_id.is_none() && select.serial.is_none() || matches(d, select))
        .collect();
    if ctx.json {
        return ctx.print_json(&devices);
    }
    if devices.is_empty() {
        crate::out!("No DFU capable USB device available");
        return Ok(());
    }
    for d in &devices {
        for line in d.lines() {
            crate::out!("{line}");
        }
    }
    Ok(())
}

/// `spark dfu ...`.
pub(crate) fn dfu(ctx: &Context, command: DfuCommand) -> Outcome {
    match command {
        DfuCommand::List { select } => dfu_list(ctx, &select),
        DfuCommand::Files(c) => offline::dfu(ctx, c),
    }
}

/// An open DFU interface: the simulated Core or a USB device.
pub(crate) enum Link {
    Sim { core: Box<SparkCore>, path: PathBuf },
    Usb(spark_dfu::usb::UsbTransport),
}

impl DfuTransport for Link {
    fn select_alt(&mut self, alt: u8) -> Result<(), TransferError> {
        match self {
            Link::Sim { core, .. } => core.select_alt(alt),
            Link::Usb(t) => t.select_alt(alt),
        }
    }
    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), TransferError> {
        match self {
            Link::Sim { core, .. } => core.control_out(setup, data),
            Link::Usb(t) => t.control_out(setup, data),
        }
    }
    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, TransferError> {
        match self {
            Link::Sim { core, .. } => core.control_in(setup, buf),
            Link::Usb(t) => t.control_in(setup, buf),
        }
    }
    fn wait(&mut self, ms: u32) {
        match self {
            Link::Sim { core, .. } => core.wait(ms),
            Link::Usb(t) => t.wait(ms),
        }
    }
    fn reset(&mut self) -> Result<(), TransferError> {
        match self {
            Link::Sim { core, .. } => core.reset(),
            Link::Usb(t) => t.reset(),
        }
    }
    fn reenumerate(&mut self, timeout_ms: u32) -> Result<(), TransferError> {
        match self {
            Link::Sim { core, .. } => core.reenumerate(timeout_ms),
            Link::Usb(t) => t.reenumerate(timeout_ms),
        }
    }
}

/// The one device the selection names, its platform, and a short description for messages.
pub(crate) fn choose(select: &Select) -> Result<(Listed, Platform), Failure> {
    let mut found: Vec<Listed> = list_devices()?
        .into_iter()
        .filter(|d| matches(d, select))
        .collect();
    let device = match found.len() {
        0 => {
            return Err(Failure(format!(
                "no DFU device{} found (is the device in DFU mode, blinking yellow?)",
                describe(select)
            )));
        }
        1 => found.remove(0),
        n => {
            return Err(Failure(format!(
                "{n} DFU devices found: choose one with --serial or --device"
            )));
        }
    };
    let platform = device.platform().ok_or_else(|| {
        Failure(format!(
            "{}:{} is not a device of the platform table",
            device.vendor, device.product
        ))
    })?;
    Ok((device, platform))
}

/// Opens the chosen device, in DFU mode (a run-time interface is detached first), runs `f`, and for the
/// simulated Core saves its memory whatever `f` returned.
pub(crate) fn with_device<T>(
    select: &Select,
    f: impl FnOnce(&mut Link, Platform) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let (device, platform) = choose(select)?;
    let runtime = device.mode == "runtime";
    let mut link = match &device.source {
        Source::Sim(path) => {
            let mut core = SimState::load(path, runtime, platform)?;
            if let Some(faults) = std::env::var_os(SIM_FAULT_ENV) {
                for (n, fault) in parse_faults(&faults.to_string_lossy())? {
                    core.inject(n, fault);
                }
            }
            Link::Sim {
                core: Box::new(core),
                path: path.clone(),
            }
        }
        Source::Usb(d) => {
            let transport = d.open().map_err(|e| {
                Failure(format!(
                    "cannot open {}:{}: {e}",
                    device.vendor, device.product
                ))
            })?;
            Link::Usb(transport)
        }
    };
    let result = if runtime {
        detach(&mut link, &device).and_then(|()| f(&mut link, platform))
    } else {
        f(&mut link, platform)
    };
    if let Link::Sim { core, path } = &link {
        SimState::save(path, core)?;
    }
    result
}

/// Sends a device found in run-time mode to DFU mode, as dfu-util does before anything else.
fn detach(link: &mut Link, device: &Listed) -> Result<(), Failure> {
    let interface = device.alts.first().map_or(0, |a| u16::from(a.interface));
    let functional = match &device.source {
        Source::Usb(d) => d.functional,
        // The simulated application describes its interface as the bootloader does (bitWillDetach, 255 ms).
        Source::Sim(_) => {
            FunctionalDescriptor::parse(&[9, 0x21, 0x0B, 0xFF, 0, 0, 4, 0x1A, 1]).ok()
        }
    };
    let options = match &functional {
        Some(f) => DetachOptions::for_descriptor(interface, f),
        None => DetachOptions {
            interface,
            timeout_ms: 1000,
            will_detach: false,
            reenumerate_ms: 5000,
        },
    };
    match ops::detach(link, options) {
        Ok(DetachOutcome::Detached { state: Some(_) } | DetachOutcome::AlreadyInDfu(_)) => Ok(()),
        Ok(_) => Err(Failure(
            "the device left for DFU mode but was not found again; run the command once more"
                .into(),
        )),
        Err(e) => Err(Failure(format!(
            "cannot switch the device to DFU mode: {e}"
        ))),
    }
}

/// Bytes moved, drawn on stderr unless `--json` or stderr is not a terminal. Each phase (writing, reading back)
/// counts from zero to the image size, so the bar never shows more than the image.
pub(crate) struct Progress {
    bar: ProgressBar,
    phases: std::cell::RefCell<Phases>,
}

/// Where the bar stands: the phase's name and the bytes done in it, out of `total`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Phases {
    total: u64,
    name: &'static str,
    done: u64,
}

impl Phases {
    /// Counts one event; a new phase (writing after erasing, reading after writing) starts again from zero.
    fn event(&mut self, e: &Event) {
        let (name, len) = match *e {
            Event::Erased { .. } => ("Erasing", 0),
            Event::Written { len, .. } => ("Writing", u64::from(len)),
            Event::Read { len, .. } => ("Reading", u64::from(len)),
            Event::Leaving => ("Leaving", 0),
            _ => return,
        };
        if name != self.name {
            self.name = name;
            self.done = 0;
        }
        self.done = (self.done + len).min(self.total);
    }
}

impl Progress {
    /// A bar for `total` bytes per phase, starting in phase `message`.
    pub(crate) fn new(ctx: &Context, total: u64, message: &'static str) -> Self {
        let bar = if ctx.json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        };
        bar.set_message(message);
        let phases = Phases {
            total,
            name: message,
            done: 0,
        };
        Self {
            bar,
            phases: std::cell::RefCell::new(phases),
        }
    }

    pub(crate) fn event(&self, e: Event) {
        let mut phases = self.phases.borrow_mut();
        let before = phases.name;
        phases.event(&e);
        if phases.name != before {
            self.bar.set_message(phases.name);
            self.bar.reset();
        }
        self.bar.set_position(phases.done);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A failed operation as one line, with what was being done; device statuses with dfu-util's words.
pub(crate) fn op_failure(what: &str, e: OpError) -> Failure {
    use spark_dfu::host::HostError;
    match e {
        OpError::Host(HostError::Device {
            phase,
            address,
            status,
            state,
        }) => Failure(format!(
            "{what} failed: device reports status {} ({}) in {} while {} at {address:#010x}",
            status.0,
            status.description(),
            state.name(),
            phase_words(phase),
        )),
        OpError::Host(HostError::WrongState {
            phase,
            address,
            found,
        }) => Failure(format!(
            "{what} failed: the device went to {} while {} at {address:#010x}",
            found.name(),
            phase_words(phase),
        )),
        OpError::Host(HostError::Transfer {
            phase,
            address,
            error,
        }) => Failure(format!(
            "{what} failed: {error} while {} at {address:#010x}",
            phase_words(phase),
        )),
        OpError::Host(HostError::Reply { phase, error }) => Failure(format!(
            "{what} failed: a bad reply while {}: {error}",
            phase_words(phase),
        )),
        OpError::NoKeyPlace { platform, protocol } => Failure(format!(
            "{what} refused: the {} (platform {}) has no {} key place; it speaks only the {} protocol",
            platform.name(),
            platform.id(),
            match protocol {
                Transport::Tcp => "TCP (RSA)",
                Transport::Udp => "UDP (P-256)",
            },
            match platform.transport() {
                Transport::Tcp => "TCP",
                Transport::Udp => "UDP",
            },
        )),
        e => Failure(format!("{what} failed: {e}")),
    }
}

/// What the DFU host was doing, in words.
fn phase_words(phase: spark_dfu::host::Phase) -> &'static str {
    use spark_dfu::host::Phase;
    match phase {
        Phase::Prepare => "bringing the device to DFU idle",
        Phase::SelectAlt => "selecting the memory",
        Phase::SetAddress => "setting the address",
        Phase::Erase => "erasing",
        Phase::Write => "writing",
        Phase::Read => "reading",
        Phase::Abort => "aborting to DFU idle",
        Phase::Detach => "switching the device to DFU mode",
        Phase::Query => "asking the device for its status",
        _ => "talking to the device",
    }
}

/// A place in a device's memory, in words.
fn item_words(item: Item) -> String {
    match item {
        Item::Bootloader => "bootloader".into(),
        Item::UserFirmware => "user firmware".into(),
        Item::FactoryImage => "factory image".into(),
        Item::BackupImage => "backup image".into(),
        Item::OtaStaging => "OTA staging area".into(),
        Item::SystemPart(n) => format!("system part {n}"),
        Item::RadioStack => "radio stack".into(),
        Item::ServerPublicKey => "server public key".into(),
        Item::DevicePrivateKey => "device private key".into(),
        Item::UdpServerPublicKey => "UDP server public key".into(),
        Item::UdpDevicePrivateKey => "UDP device private key".into(),
        Item::ServerAddress => "server address".into(),
        Item::UserData => "user data area".into(),
        _ => "such".into(),
    }
}

#[derive(Serialize)]
struct FlashReport {
    file: String,
    platform: &'static str,
    kind: &'static str,
    regions: Vec<RegionReport>,
    bytes: u64,
    erased_pages: u32,
    verified: bool,
    left_dfu: bool,
    transfers: u32,
}

#[derive(Serialize)]
struct RegionReport {
    alt: u8,
    address: String,
    size: usize,
}

fn region(alt: u8, address: u32, size: usize) -> RegionReport {
    RegionReport {
        alt,
        address: format!("0x{address:08x}"),
        size,
    }
}

/// `spark flash --usb|--factory`.
pub(crate) fn flash(ctx: &Context, args: FlashArgs) -> Outcome {
    let [file] = args.args.as_slice() else {
        return Err(Failure("flash over USB takes exactly one file".into()));
    };
    let path = Path::new(file);
    let bytes = crate::files::read(path, crate::files::IMAGE)?;
    let verify = !args.no_verify;
    let is_dfuse = bytes.starts_with(&dfuse::SIGNATURE);
    if is_dfuse && args.factory {
        return Err(Failure(
            "--factory takes a plain binary; a DfuSe file says its own addresses".into(),
        ));
    }
    check_file_before_device(path, &bytes, is_dfuse)?;
    // particle-cli leaves DFU mode after user firmware only.
    let leave = if args.no_leave {
        false
    } else {
        args.leave || !args.factory
    };
    let options = Options {
        verify,
        leave,
        force: args.force,
        ..Options::default()
    };
    let item = if args.factory {
        Item::FactoryImage
    } else {
        Item::UserFirmware
    };
    let name = path.display().to_string();
    let (summary, kind, regions, platform) = with_device(&args.select, |link, platform| {
        if is_dfuse {
            return flash_dfuse(ctx, link, platform, &name, &bytes, options);
        }
        flash_plain(ctx, link, platform, &name, &bytes, item, options)
    })?;
    let report = FlashReport {
        file: name,
        platform: platform.name(),
        kind,
        regions,
        bytes: summary.written,
        erased_pages: summary.erased,
        verified: verify,
        left_dfu: leave,
        transfers: summary.transfers,
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    for r in &report.regions {
        crate::out!(
            "Wrote {} bytes to the {} at {} (alt {})",
            r.size,
            report.platform,
            r.address,
            r.alt
        );
    }
    crate::out!(
        "{} pages erased{}{}",
        report.erased_pages,
        if verify { ", verified" } else { "" },
        if leave { ", left DFU mode" } else { "" }
    );
    crate::out!("Flash success!");
    Ok(())
}

/// What a USB flash did: its counts, the file kind, the regions written, the platform.
type Flashed = (Summary, &'static str, Vec<RegionReport>, Platform);

/// Flashes a DfuSe file: its suffix checked against the device, each element to its alt setting.
fn flash_dfuse(
    ctx: &Context,
    link: &mut Link,
    platform: Platform,
    name: &str,
    bytes: &[u8],
    options: Options,
) -> Result<Flashed, Failure> {
    let file = DfuseFile::parse(bytes).map_err(|e| Failure(format!("{name}: {e}")))?;
    ops::check_dfuse_suffix(&file, platform).map_err(|e| Failure(format!("{name}: {e}")))?;
    let regions: Vec<RegionReport> = ops::dfuse_regions(&file)
        .iter()
        .map(|r| region(r.alt, r.address, r.data.len()))
        .collect();
    let total: usize = regions.iter().map(|r| r.size).sum();
    let progress = Progress::new(ctx, total as u64, "Writing");
    let summary = ops::flash_dfuse_file(link, platform, &file, options, |e| progress.event(e))
        .map_err(|e| op_failure("flash", e))?;
    Ok((summary, "dfuse", regions, platform))
}

/// Flashes a plain image (or a DFU 1.0 file's firmware) as user firmware or the factory image.
fn flash_plain(
    ctx: &Context,
    link: &mut Link,
    platform: Platform,
    name: &str,
    bytes: &[u8],
    item: Item,
    options: Options,
) -> Result<Flashed, Failure> {
    let file = DfuFile::parse(bytes).map_err(|e| Failure(format!("{name}: {e}")))?;
    ops::check_suffix(&file, platform).map_err(|e| Failure(format!("{name}: {e}")))?;
    let image = file.firmware();
    let place = platform.location(item).ok_or_else(|| {
        Failure(format!(
            "the {} has no {} place",
            platform.name(),
            item_words(item)
        ))
    })?;
    let progress = Progress::new(ctx, image.len() as u64, "Writing");
    let on_event = |e| progress.event(e);
    let summary = if item == Item::FactoryImage {
        ops::flash_factory_image(link, platform, image, options, on_event)
    } else {
        ops::flash_user_firmware(link, platform, image, options, on_event)
    }
    .map_err(|e| op_failure("flash", e))?;
    let kind = if file.suffix().is_some() {
        "dfu"
    } else {
        "bin"
    };
    let regions = vec![region(place.alt, place.address, image.len())];
    Ok((summary, kind, regions, platform))
}

/// What can be said of a file without a device: it parses, and a plain image is a firmware image of some
/// platform (the platform's own checks follow once the device is known). A bad file is reported before USB is.
fn check_file_before_device(path: &Path, bytes: &[u8], is_dfuse: bool) -> Outcome {
    let name = path.display();
    if is_dfuse {
        DfuseFile::parse(bytes).map_err(|e| Failure(format!("{name}: {e}")))?;
        return Ok(());
    }
    let file = DfuFile::parse(bytes).map_err(|e| Failure(format!("{name}: {e}")))?;
    firmware_check(path, file.firmware())
}

/// Whether `image` is firmware at all: a module whose checks pass, or a header-less image with a Core vector
/// table; the reason in words when not.
pub(crate) fn firmware_check(path: &Path, image: &[u8]) -> Outcome {
    use spark_dfu::module::{self, Format};
    let found = module::inspect(image, spark_dfu::platform::core_map::FIRMWARE);
    match (found.first_failure(), found.format) {
        (None, _) => Ok(()),
        (Some(check), Format::Legacy { .. }) => Err(Failure(format!(
            "{}: not a firmware image: {}",
            path.display(),
            check.failure()
        ))),
        (Some(check), Format::Module { .. }) => {
            Err(Failure(format!("{}: {}", path.display(), check.failure())))
        }
    }
}

#[derive(Serialize)]
pub(crate) struct DeviceWrite {
    pub(crate) platform: &'static str,
    pub(crate) alt: u8,
    pub(crate) address: String,
    pub(crate) bytes: u64,
    pub(crate) verified: bool,
}

fn device_write(platform: Platform, item: Item, summary: &Summary) -> DeviceWrite {
    let place = platform.location(item);
    DeviceWrite {
        platform: platform.name(),
        alt: place.map_or(0, |p| p.alt),
        address: format!("0x{:08x}", place.map_or(0, |p| p.address)),
        bytes: summary.written,
        verified: summary.read >= summary.written,
    }
}

/// The platform of the device the selection names (without opening it).
pub(crate) fn device_platform(select: &Select) -> Result<Platform, Failure> {
    choose(select).map(|(_, p)| p)
}

/// Writes a server-key image (`keys server`) to the device's server-key place for `protocol` (UDP: DCT 3298).
pub(crate) fn write_server_key(
    ctx: &Context,
    select: &Select,
    protocol: Transport,
    image: &[u8],
) -> Result<DeviceWrite, Failure> {
    with_device(select, |link, platform| {
        let item = ops::server_key_item(platform, protocol)
            .map_err(|e| op_failure("writing the server key", e))?;
        let progress = Progress::new(ctx, image.len() as u64, "Writing");
        let summary = ops::write_item(link, platform, item, image, Options::default(), |e| {
            progress.event(e)
        })
        .map_err(|e| op_failure("writing the server key", e))?;
        Ok(device_write(platform, item, &summary))
    })
}

/// Writes `der` as the device key of `protocol`, after saving the key the device held to `backup` (an erased
/// region is no key: nothing saved). Returns whether the device held a key.
pub(crate) fn replace_device_key(
    ctx: &Context,
    select: &Select,
    protocol: Transport,
    der: &[u8],
    backup: &Path,
) -> Result<bool, Failure> {
    with_device(select, |link, platform| {
        let item = ops::device_key_item(platform, protocol)
            .map_err(|e| op_failure("writing the key", e))?;
        let room = platform.location(item).map_or(0, |p| u64::from(p.len));
        let progress = Progress::new(ctx, room, "Reading");
        let old = ops::read_item(link, platform, item, |e| progress.event(e))
            .map_err(|e| op_failure("reading the device's key", e))?;
        let had_key = !old.iter().all(|&b| b == 0xFF);
        if had_key {
            crate::output::write_private(backup, &old)
                .map_err(|e| Failure(format!("cannot write {}: {e}", backup.display())))?;
        }
        let progress = Progress::new(ctx, room, "Writing");
        let options = Options {
            leave: true,
            ..Options::default()
        };
        ops::write_protocol_key(link, platform, protocol, der, options, |e| {
            progress.event(e)
        })
        .map_err(|e| op_failure("writing the key", e))?;
        Ok(had_key)
    })
}

#[derive(Serialize)]
struct AddressReport {
    host: Option<String>,
    port: Option<u16>,
    written: bool,
}

fn address_text(address: Option<ServerAddress<'_>>) -> Option<String> {
    address.map(|a| match a {
        ServerAddress::Ipv4(ip) => std::net::Ipv4Addr::from(ip).to_string(),
        ServerAddress::Domain { name, .. } => String::from_utf8_lossy(name).into_owned(),
    })
}

/// `spark keys address`: the address record of the device's server-key image, read, or rewritten with `host`.
pub(crate) fn server_address(
    ctx: &Context,
    select: &Select,
    host: Option<&str>,
    port: Option<u16>,
) -> Outcome {
    let item = Item::ServerPublicKey;
    let report = with_device(select, |link, platform| {
        let format = platform
            .server_key_format()
            .ok_or_else(|| Failure(format!("{} has no server-key image", platform.name())))?;
        let image = ops::read_item(link, platform, item, |_| {})
            .map_err(|e| op_failure("reading the server key", e))?;
        let image = &image[..format.len.min(image.len())];
        let parsed = ServerKeyImage::parse(image, format)
            .map_err(|e| Failure(format!("the device's server-key image: {e}")))?;
        let Some(host) = host else {
            return Ok(AddressReport {
                host: address_text(parsed.address),
                port: parsed.port,
                written: false,
            });
        };
        let address = match host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => ServerAddress::Ipv4(ip.octets()),
            Err(_) => ServerAddress::Domain {
                name: host.as_bytes(),
                nul: true,
            },
        };
        let mut out = vec![0u8; format.len];
        let n = ServerKeyImage::emit(parsed.der, format, Some(address), port, &mut out)
            .map_err(|e| Failure(format!("{host}: {e}")))?;
        out.truncate(n);
        ops::write_item(link, platform, item, &out, Options::default(), |_| {})
            .map_err(|e| op_failure("writing the server address", e))?;
        Ok(AddressReport {
            host: Some(host.to_owned()),
            port,
            written: true,
        })
    })?;
    if ctx.json {
        return ctx.print_json(&report);
    }
    let port = report
        .port
        .map(|p| format!(" port {p}"))
        .unwrap_or_default();
    match (&report.host, report.written) {
        (Some(h), true) => crate::out!("The device now connects to {h}{port}"),
        (Some(h), false) => crate::out!("The device connects to {h}{port}"),
        (None, _) => {
            crate::out!("No server address recorded: the device uses its firmware's default")
        }
    }
    Ok(())
}

/// A private key file as the device stores it, with the protocol it is for: an RSA key as PKCS#1 DER (TCP), a
/// P-256 key (SEC1 or PKCS#8, PEM or DER) as SEC1 DER (UDP).
fn device_key_der(path: &Path) -> Result<(Transport, Vec<u8>), Failure> {
    use spark_protocol::crypto::keys::RsaPrivateKey;
    use spark_protocol::dtls;
    let bytes = crate::files::read(path, crate::files::KEY)?;
    let neither = || {
        Failure(format!(
            "{}: neither an RSA nor a P-256 private key (PEM or DER)",
            path.display()
        ))
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => {
            if let Ok(key) = RsaPrivateKey::from_pem(text) {
                return Ok((Transport::Tcp, key.to_pkcs1_der().to_vec()));
            }
            let key = spark_cloud::udp::keys::private_key_from_pem(text).map_err(|_| neither())?;
            Ok((Transport::Udp, key.to_sec1_der().to_vec()))
        }
        _ => {
            // DER, possibly padded as the device stores it: read the DER value only.
            let len = spark_dfu::platform::server_key::der_len(&bytes).map_err(|_| neither())?;
            let der = &bytes[..len];
            if RsaPrivateKey::from_der(der).is_ok() {
                return Ok((Transport::Tcp, der.to_vec()));
            }
            let key = dtls::PrivateKey::from_der(der).map_err(|_| neither())?;
            Ok((Transport::Udp, key.to_sec1_der().to_vec()))
        }
    }
}

fn with_prefix(path: &Path, prefix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "key.der".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!("{prefix}{name}"))
}

#[derive(Serialize)]
struct LoadReport {
    key: String,
    protocol: &'static str,
    key_size: usize,
    backup: Option<String>,
    /// Whether the device held a key before (known when it was read for the backup).
    device_had_key: Option<bool>,
    device: DeviceWrite,
    left_dfu: bool,
}

#[derive(Serialize)]
struct SaveReport {
    file: String,
    protocol: &'static str,
    platform: &'static str,
    alt: u8,
    address: String,
    read: usize,
    size: usize,
}

/// `spark keys load|save`.
pub(crate) fn device_key(ctx: &Context, command: DeviceKeyCommand) -> Outcome {
    match command {
        DeviceKeyCommand::Load {
            key,
            leave,
            no_backup,
            select,
        } => load_key(ctx, &key, leave, no_backup, &select),
        DeviceKeyCommand::Save {
            file,
            protocol,
            force,
            raw,
            select,
        } => save_key(
            ctx,
            &file,
            protocol.map(Transport::from),
            force,
            raw,
            &select,
        ),
    }
}

/// `spark keys load`.
fn load_key(ctx: &Context, key: &Path, leave: bool, no_backup: bool, select: &Select) -> Outcome {
    let (protocol, der) = device_key_der(key)?;
    let backup = (!no_backup).then(|| with_prefix(key, "pre_"));
    let mut saved = false;
    let device = with_device(select, |link, platform| {
        // Refused here, before the backup read, when the platform has no place for this key.
        let item = ops::device_key_item(platform, protocol)
            .map_err(|e| op_failure("loading the key", e))?;
        let room = platform.location(item).map_or(0, |p| p.len);
        if let Some(backup) = &backup {
            let progress = Progress::new(ctx, u64::from(room), "Reading");
            let old = ops::read_item(link, platform, item, |e| progress.event(e))
                .map_err(|e| op_failure("saving the device's key", e))?;
            // An erased region (all 0xFF) is no key: there is nothing to keep.
            if old.iter().all(|&b| b == 0xFF) {
                saved = false;
            } else {
                crate::output::write_private(backup, &old)
                    .map_err(|e| Failure(format!("cannot write {}: {e}", backup.display())))?;
                saved = true;
            }
        }
        let progress = Progress::new(ctx, u64::from(room), "Writing");
        let options = Options {
            leave,
            ..Options::default()
        };
        let summary = ops::write_protocol_key(link, platform, protocol, &der, options, |e| {
            progress.event(e)
        })
        .map_err(|e| op_failure("writing the key", e))?;
        Ok(device_write(platform, item, &summary))
    })?;
    let report = LoadReport {
        key: key.display().to_string(),
        protocol: protocol_name(protocol),
        key_size: der.len(),
        device_had_key: backup.is_some().then_some(saved),
        backup: backup.filter(|_| saved).map(|b| b.display().to_string()),
        device,
        left_dfu: leave,
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    match (&report.backup, report.device_had_key) {
        (Some(b), _) => crate::out!("Saved existing key to {b}"),
        (None, Some(false)) => {
            crate::out!("No key on the device (its key region was erased); nothing saved")
        }
        _ => {}
    }
    crate::out!(
        "Loaded {} ({} bytes, the {} key) to the {} at {} (alt {})",
        report.key,
        report.key_size,
        report.protocol.to_uppercase(),
        report.device.platform,
        report.device.address,
        report.device.alt
    );
    crate::out!("Saved!");
    Ok(())
}

/// `spark keys save`.
fn save_key(
    ctx: &Context,
    file: &Path,
    protocol: Option<Transport>,
    force: bool,
    raw: bool,
    select: &Select,
) -> Outcome {
    if file.exists() && !force {
        return Err(Failure(format!(
            "{} exists; use --force to overwrite it",
            file.display()
        )));
    }
    let (bytes, platform, protocol, item) = with_device(select, |link, platform| {
        let protocol = protocol.unwrap_or(platform.transport());
        let item = ops::device_key_item(platform, protocol)
            .map_err(|e| op_failure("reading the key", e))?;
        let progress = Progress::new(
            ctx,
            platform.location(item).map_or(0, |p| u64::from(p.len)),
            "Reading",
        );
        let bytes = ops::read_item(link, platform, item, |e| progress.event(e))
            .map_err(|e| op_failure("reading the key", e))?;
        Ok((bytes, platform, protocol, item))
    })?;
    let read = bytes.len();
    let keep = if raw {
        read
    } else if bytes.iter().all(|&b| b == 0xFF) {
        return Err(Failure(
            "the device holds no key (its key region is erased)".into(),
        ));
    } else {
        spark_dfu::platform::server_key::der_len(&bytes).map_err(|e| {
            Failure(format!(
                "the device's key region holds no DER key ({e}); --raw saves it anyway"
            ))
        })?
    };
    crate::output::write_private(file, &bytes[..keep])
        .map_err(|e| Failure(format!("cannot write {}: {e}", file.display())))?;
    let place = platform.location(item);
    let report = SaveReport {
        file: file.display().to_string(),
        protocol: protocol_name(protocol),
        platform: platform.name(),
        alt: place.map_or(0, |p| p.alt),
        address: format!("0x{:08x}", place.map_or(0, |p| p.address)),
        read,
        size: keep,
    };
    ctx.report(&report, |r| {
        format!(
            "Read {} bytes at {} (alt {}) from the {}; saved {} bytes to {}\nSaved!",
            r.read, r.address, r.alt, r.platform, r.size, r.file
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_each_phase_up_to_the_image_size() {
        let mut p = Phases {
            total: 2048,
            name: "Writing",
            done: 0,
        };
        p.event(&Event::Erased {
            address: 0,
            size: 1024,
        });
        assert_eq!((p.name, p.done), ("Erasing", 0));
        for address in [0, 1024] {
            p.event(&Event::Written { address, len: 1024 });
        }
        assert_eq!((p.name, p.done), ("Writing", 2048));
        // Reading back starts again from zero: the bar never shows twice the image.
        p.event(&Event::Read {
            address: 0,
            len: 1024,
        });
        assert_eq!((p.name, p.done), ("Reading", 1024));
        p.event(&Event::Read {
            address: 1024,
            len: 1024,
        });
        assert_eq!((p.name, p.done), ("Reading", 2048));
    }

    #[test]
    fn usb_ids_and_faults_parse() {
        assert_eq!(
            parse_usb_id("1d50:607f"),
            Ok(UsbId {
                vendor: 0x1d50,
                product: 0x607f
            })
        );
        assert!(parse_usb_id("1d50").is_err());
        assert!(parse_usb_id("1d50:zzzz").is_err());
        let f = parse_faults("3:usb,7:status=0x03, 9:disappear").unwrap();
        assert_eq!(
            f,
            [
                (3, Fault::UsbError),
                (7, Fault::WrongStatus(Status::WRITE)),
                (9, Fault::Disappear)
            ]
        );
        assert!(parse_faults("x:usb").is_err());
        assert!(parse_faults("3:fire").is_err());
    }

    #[test]
    fn a_device_status_failure_names_the_phase_in_words() {
        use spark_dfu::host::proto::State;
        use spark_dfu::host::{HostError, Phase};
        let e = OpError::Host(HostError::Device {
            phase: Phase::Erase,
            address: 0x0800_5000,
            status: Status::WRITE,
            state: State::Error,
        });
        let Failure(line) = op_failure("flash", e);
        assert_eq!(
            line,
            format!(
                "flash failed: device reports status 3 ({}) in dfuERROR while erasing at 0x08005000",
                Status::WRITE.description()
            )
        );
        let e = OpError::Host(HostError::WrongState {
            phase: Phase::Write,
            address: 0x0800_5000,
            found: State::Idle,
        });
        let Failure(line) = op_failure("flash", e);
        assert!(line.contains("while writing"), "{line}");
        assert!(!line.contains("Write"), "{line}");
    }

    #[test]
    fn places_are_named_in_words() {
        assert_eq!(item_words(Item::FactoryImage), "factory image");
        assert_eq!(item_words(Item::SystemPart(2)), "system part 2");
        assert_eq!(
            item_words(Item::UdpServerPublicKey),
            "UDP server public key"
        );
    }
}
