//! `spark serial list|identify|mac|wifi|monitor`: a Core in listening mode (blinking blue) over its USB serial
//! port, with the one-key commands its firmware answers (`i` its id, `m` its MAC address, `w` Wi-Fi credentials).
//!
//! Ports: the USB serial ports of Cores (USB ids 1d50:607d, found in `/sys/class/tty`), and the paths in the hidden
//! `SPARK_SERIAL_PORTS` (colon-separated; the tests put a virtual Core's pseudo-terminal there). `--port` picks one.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::output::Context;
use crate::{Failure, Outcome};

/// Extra ports to list (tests).
const PORTS_ENV: &str = "SPARK_SERIAL_PORTS";
/// How long a Core gets to answer a command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Which port.
#[derive(Args, Debug, Clone)]
pub(crate) struct PortArg {
    /// The serial port (default: the one Core found).
    #[arg(long, value_name = "PATH")]
    port: Option<PathBuf>,
}

/// Wi-Fi security as the Core's prompt numbers it.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Security {
    /// An open network.
    Unsecured,
    /// WEP.
    Wep,
    /// WPA.
    Wpa,
    /// WPA2.
    Wpa2,
}

/// `spark serial ...`
#[derive(Subcommand, Debug)]
pub(crate) enum SerialCommand {
    /// The serial ports of the Cores plugged in.
    List,
    /// Ask the Core for its id (`i`).
    Identify(PortArg),
    /// Ask the Core for its Wi-Fi MAC address (`m`).
    Mac(PortArg),
    /// Give the Core Wi-Fi credentials (`w`); the password is read from stdin (asked for on a terminal).
    Wifi {
        #[command(flatten)]
        port: PortArg,
        /// The network name.
        #[arg(long)]
        ssid: String,
        /// The network's security.
        #[arg(long, value_enum, default_value_t = Security::Wpa2)]
        security: Security,
    },
    /// Print what the Core writes, line by line, and send it what is typed on stdin, until Ctrl-C (or `--lines`).
    Monitor {
        #[command(flatten)]
        port: PortArg,
        /// Stop after this many lines (for scripts).
        #[arg(long)]
        lines: Option<u64>,
    },
}

#[derive(Serialize)]
struct Listed {
    port: String,
    vendor: String,
    product: String,
}

/// The Cores' serial ports: USB ids 1d50:607d in `/sys/class/tty`, then `SPARK_SERIAL_PORTS`.
fn ports() -> Vec<Listed> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/class/tty") {
        for entry in entries.flatten() {
            // The tty's device is a USB interface; its parent holds the device's ids.
            let usb = entry.path().join("device").join("..");
            let id = |f: &str| std::fs::read_to_string(usb.join(f)).map(|s| s.trim().to_owned());
            if let (Ok(vendor), Ok(product)) = (id("idVendor"), id("idProduct"))
                && vendor == "1d50"
                && product == "607d"
            {
                found.push(Listed {
                    port: format!("/dev/{}", entry.file_name().to_string_lossy()),
                    vendor,
                    product,
                });
            }
        }
    }
    if let Some(extra) = std::env::var_os(PORTS_ENV) {
        for path in std::env::split_paths(&extra).filter(|p| !p.as_os_str().is_empty()) {
            found.push(Listed {
                port: path.display().to_string(),
                vendor: "1d50".into(),
                product: "607d".into(),
            });
        }
    }
    found
}

/// The paths of the Cores' serial ports (for `usb list`).
pub(crate) fn port_paths() -> Vec<String> {
    ports().into_iter().map(|p| p.port).collect()
}

fn pick(arg: &PortArg) -> Result<PathBuf, Failure> {
    if let Some(p) = &arg.port {
        return Ok(p.clone());
    }
    let mut found = ports();
    match found.len() {
        0 => Err(Failure(
            "no Core found on a serial port (is it in listening mode, blinking blue?); give --port"
                .into(),
        )),
        1 => Ok(PathBuf::from(found.remove(0).port)),
        n => Err(Failure(format!("{n} Cores found: choose one with --port"))),
    }
}

/// An open serial port in raw mode; reads give up after 0.1 s without a byte.
struct Port {
    file: std::fs::File,
    path: PathBuf,
}

impl Port {
    fn open(path: &Path) -> Result<Port, Failure> {
        use rustix::fs::{Mode, OFlags};
        use rustix::termios::{OptionalActions, SpecialCodeIndex, tcgetattr, tcsetattr};
        let cannot =
            |e: &dyn std::fmt::Display| Failure(format!("cannot open {}: {e}", path.display()));
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| cannot(&e))?;
        let mut termios = tcgetattr(&fd).map_err(|_| cannot(&"not a serial port (a terminal)"))?;
        termios.make_raw();
        // The Core's console runs at 9600 baud (a USB CDC port ignores it).
        let _ = termios.set_speed(9600);
        termios.special_codes[SpecialCodeIndex::VMIN] = 0;
        termios.special_codes[SpecialCodeIndex::VTIME] = 1;
        tcsetattr(&fd, OptionalActions::Now, &termios).map_err(|e| cannot(&e))?;
        Ok(Port {
            file: std::fs::File::from(fd),
            path: path.to_owned(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.file
            .write_all(bytes)
            .map_err(|e| Failure(format!("cannot write to {}: {e}", self.path.display())))
    }

    /// Reads until `done` says the text so far is complete, or the Core stops answering.
    fn read_until(&mut self, mut done: impl FnMut(&str) -> bool) -> Result<String, Failure> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut text = Vec::new();
        let mut buf = [0u8; 256];
        while !done(&String::from_utf8_lossy(&text)) {
            if Instant::now() > deadline {
                return Err(Failure(format!(
                    "no answer from {} (is the Core in listening mode, blinking blue?)",
                    self.path.display()
                )));
            }
            let n = self
                .file
                .read(&mut buf)
                .map_err(|e| Failure(format!("cannot read {}: {e}", self.path.display())))?;
            text.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Sends `command` and waits for `prompt`.
    fn ask(&mut self, command: &[u8], prompt: &str) -> Result<String, Failure> {
        self.send(command)?;
        self.read_until(|t| t.contains(prompt))
    }
}

/// The text after `marker` up to the end of its line, once the line is complete.
/// The text after `marker` up to the end of its line, blank space (line breaks included) skipped first.
fn answer_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = text[text.find(marker)? + marker.len()..].trim_start();
    let end = rest.find('\n')?;
    Some(rest[..end].trim())
}

/// Sends the one-key command `key` to the Core on the port and reads its answer: what follows the first of
/// `markers` that shows.
fn ask(arg: &PortArg, key: &[u8], markers: &[&str]) -> Result<(PathBuf, String), Failure> {
    let path = pick(arg)?;
    let mut port = Port::open(&path)?;
    port.send(key)?;
    let text = port.read_until(|t| markers.iter().any(|m| answer_after(t, m).is_some()))?;
    let answer = markers
        .iter()
        .find_map(|m| answer_after(&text, m))
        .unwrap_or_default()
        .to_owned();
    Ok((path, answer))
}

/// What `spark serial identify` and `mac` report.
#[derive(Serialize)]
struct PortAnswer {
    port: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

/// `spark serial ...`
pub(crate) fn serial(ctx: &Context, command: SerialCommand) -> Outcome {
    match command {
        SerialCommand::List => list(ctx),
        SerialCommand::Identify(port) => identify(ctx, &port),
        SerialCommand::Mac(port) => mac(ctx, &port),
        SerialCommand::Wifi {
            port,
            ssid,
            security,
        } => wifi(ctx, &port, &ssid, security),
        SerialCommand::Monitor { port, lines } => monitor(ctx, &port, lines),
    }
}

fn list(ctx: &Context) -> Outcome {
    let found = ports();
    if ctx.json {
        return ctx.print_json(&found);
    }
    if found.is_empty() {
        crate::out!("No Core found on a serial port (a Core in listening mode blinks blue)");
    }
    for p in &found {
        crate::out!("{} ({}:{})", p.port, p.vendor, p.product);
    }
    Ok(())
}

fn identify(ctx: &Context, arg: &PortArg) -> Outcome {
    let (path, id) = ask(arg, b"i", &["Your core id is ", "Your device id is "])?;
    if id.len() != 24 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure(format!(
            "{}: not a device id: {id:?}",
            path.display()
        )));
    }
    let answer = PortAnswer {
        port: path.display().to_string(),
        id: Some(id),
        mac: None,
    };
    ctx.report(&answer, |a| {
        format!("Your device id is {}", a.id.as_deref().unwrap_or_default())
    })
}

fn mac(ctx: &Context, arg: &PortArg) -> Outcome {
    let (path, mac) = ask(arg, b"m", &["MAC address is"])?;
    let mac = mac.to_lowercase();
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
    {
        return Err(Failure(format!(
            "{}: not a MAC address: {mac:?}",
            path.display()
        )));
    }
    let answer = PortAnswer {
        port: path.display().to_string(),
        id: None,
        mac: Some(mac),
    };
    ctx.report(&answer, |a| {
        format!(
            "Your device MAC address is {}",
            a.mac.as_deref().unwrap_or_default()
        )
    })
}

/// The Wi-Fi password: one line of stdin, after a prompt on a terminal.
fn read_password() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Wi-Fi password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure(format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn wifi(ctx: &Context, arg: &PortArg, ssid: &str, security: Security) -> Outcome {
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(Failure("--ssid: 1 to 32 bytes".into()));
    }
    let password = match security {
        Security::Unsecured => String::new(),
        _ => read_password()?,
    };
    if security != Security::Unsecured && password.is_empty() {
        return Err(Failure("no Wi-Fi password given on stdin".into()));
    }
    let path = pick(arg)?;
    let mut port = Port::open(&path)?;
    port.ask(b"w", "SSID: ")?;
    port.ask(format!("{ssid}\r").as_bytes(), "WPA2: ")?;
    let digit = match security {
        Security::Unsecured => b'0',
        Security::Wep => b'1',
        Security::Wpa => b'2',
        Security::Wpa2 => b'3',
    };
    if security == Security::Unsecured {
        port.ask(&[digit, b'\r'], "Thanks!")?;
    } else {
        port.ask(&[digit, b'\r'], "Password: ")?;
        port.ask(format!("{password}\r").as_bytes(), "Thanks!")?;
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "port": path.display().to_string(),
            "ssid": ssid,
            "security": security,
        }));
    }
    crate::out!("Done! The Core saves the credentials for {ssid} and connects.");
    Ok(())
}

fn monitor(ctx: &Context, arg: &PortArg, lines: Option<u64>) -> Outcome {
    let path = pick(arg)?;
    let mut port = Port::open(&path)?;
    let mut to_core = port
        .file
        .try_clone()
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    // What is typed goes to the Core as it is (its commands are single keys).
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::stdin().read(&mut buf) {
            if n == 0 || to_core.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    if !ctx.json {
        eprintln!("Monitoring {} (Ctrl-C to stop)", path.display());
    }
    let mut pending = Vec::new();
    let mut seen = 0u64;
    let mut buf = [0u8; 256];
    loop {
        let n = port
            .file
            .read(&mut buf)
            .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            if ctx.json {
                crate::out!("{}", serde_json::json!({ "line": text }));
            } else {
                crate::out!("{text}");
            }
            seen += 1;
            if lines.is_some_and(|l| seen >= l) {
                return Ok(());
            }
        }
    }
}
