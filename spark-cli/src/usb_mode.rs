//! `spark usb list|dfu|reset`: the Cores on USB, in DFU mode or running their firmware, and moving them between the
//! two (DFU_DETACH into the bootloader, the DfuSe leave request out of it).

use clap::Subcommand;
use serde::Serialize;
use spark_dfu::host::{Device, Event, Host, Options};

use crate::output::Context;
use crate::usb::{Select, choose, list_devices, matches, with_device};
use crate::{Failure, Outcome};

/// `spark usb ...`
#[derive(Subcommand, Debug)]
pub(crate) enum UsbCommand {
    /// The Cores (and other devices of the platform table) on USB: in DFU mode, or running their firmware with a
    /// run-time DFU interface.
    List {
        #[command(flatten)]
        select: Select,
    },
    /// Put a running device into DFU mode (DFU_DETACH, then a USB reset unless it detaches by itself).
    Dfu {
        #[command(flatten)]
        select: Select,
    },
    /// Make a device in DFU mode leave it and start its firmware (the DfuSe leave request, as `dfu-util -s :leave`).
    Reset {
        #[command(flatten)]
        select: Select,
    },
}

#[derive(Serialize)]
struct ModeReport {
    device: String,
    platform: &'static str,
    /// What the device was doing before: `dfu` or `runtime`.
    was: &'static str,
    /// What it is doing now.
    now: &'static str,
}

/// `spark usb ...`
pub(crate) fn usb(ctx: &Context, command: UsbCommand) -> Outcome {
    match command {
        UsbCommand::List { select } => list(ctx, &select),
        UsbCommand::Dfu { select } => to_dfu(ctx, &select),
        UsbCommand::Reset { select } => reset(ctx, &select),
    }
}

fn list(ctx: &Context, select: &Select) -> Outcome {
    let devices: Vec<_> = list_devices()?
        .into_iter()
        .filter(|d| matches(d, select))
        .collect();
    // Cores running their firmware show up as USB serial ports (listening mode, or an application's Serial).
    #[cfg(unix)]
    let serial = if select.is_empty() {
        crate::serial::port_paths()
    } else {
        Vec::new()
    };
    #[cfg(not(unix))]
    let serial: Vec<String> = Vec::new();
    if ctx.json {
        let mut rows: Vec<serde_json::Value> = devices
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        rows.extend(serial.iter().map(|path| {
            serde_json::json!({
                "vendor": "1d50", "product": "607d", "platform": "Core", "mode": "serial", "path": path,
            })
        }));
        return ctx.print_json(&rows);
    }
    if devices.is_empty() && serial.is_empty() {
        crate::out!("No Core found on USB (in DFU mode, or running with a USB serial port)");
    }
    for d in &devices {
        crate::out!("{}", d.summary());
    }
    for path in &serial {
        crate::out!("Core 1d50:607d at {path}: running its firmware (USB serial)");
    }
    Ok(())
}

fn report(ctx: &Context, r: &ModeReport, text: &str) -> Outcome {
    if ctx.json {
        return ctx.print_json(r);
    }
    crate::out!("{text}");
    Ok(())
}

fn to_dfu(ctx: &Context, select: &Select) -> Outcome {
    let (device, platform) = choose(select)?;
    let was = if device.in_runtime() {
        "runtime"
    } else {
        "dfu"
    };
    // Opening the device detaches a running one first, as every DFU command does.
    with_device(select, |_, _| Ok(()))?;
    let r = ModeReport {
        device: device.name(),
        platform: platform.name(),
        was,
        now: "dfu",
    };
    let text = if was == "dfu" {
        format!("{} is already in DFU mode", r.device)
    } else {
        format!("{} is now in DFU mode (blinking yellow)", r.device)
    };
    report(ctx, &r, &text)
}

fn reset(ctx: &Context, select: &Select) -> Outcome {
    let (device, platform) = choose(select)?;
    if device.in_runtime() {
        return Err(Failure(format!(
            "{} is running its firmware, not in DFU mode: nothing to leave",
            device.name()
        )));
    }
    let mut left = false;
    with_device(select, |link, platform| {
        let dev = Device::for_platform(platform)
            .ok_or_else(|| Failure(format!("the {} has no DFU layout", platform.name())))?;
        let options = Options {
            verify: false,
            leave: true,
            ..Options::default()
        };
        let mut host = Host::download(dev, &[], options)
            .map_err(|e| Failure(format!("cannot leave DFU mode: {e}")))?;
        spark_dfu::transport::blocking::run(&mut host, link, |e| {
            left |= matches!(e, Event::Leaving);
        })
        .map_err(|e| Failure(format!("the leave request failed: {e}")))?;
        Ok(())
    })?;
    if !left {
        return Err(Failure("the leave request was not sent".into()));
    }
    let r = ModeReport {
        device: device.name(),
        platform: platform.name(),
        was: "dfu",
        now: "runtime",
    };
    let text = format!("{} left DFU mode and starts its firmware", r.device);
    report(ctx, &r, &text)
}
