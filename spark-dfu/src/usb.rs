//! A real USB backend on [`nusb`] (feature `usb`): lists DFU devices as `dfu-util -l` does and drives one through
//! [`crate::transport::blocking::Transport`].
//!
//! The poll-timeout waits happen here, in the transport (`std::thread::sleep`); the host itself never sleeps.

use std::fmt;
use std::string::{String, ToString};
use std::time::Duration;
use std::vec::Vec;

use nusb::MaybeFuture;
use nusb::transfer::{ControlIn, ControlOut, ControlType, Recipient};

use crate::host::TransferError;
use crate::host::proto::{DfuConfig, FunctionalDescriptor, Setup};
use crate::transport::blocking;

/// dfu-util's control-transfer timeout.
pub const TIMEOUT: Duration = Duration::from_millis(5000);

/// A USB failure outside a DFU transfer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsbError {
    /// Listing, opening or claiming failed.
    #[error("USB: {0}")]
    Usb(#[from] nusb::Error),
    /// The device has no DFU interface.
    #[error("no DFU interface on {vendor:04x}:{product:04x}")]
    NoDfuInterface {
        /// idVendor.
        vendor: u16,
        /// idProduct.
        product: u16,
    },
}

/// One DFU alt setting of a listed device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltInfo {
    /// `bInterfaceNumber`.
    pub interface: u8,
    /// `bAlternateSetting`.
    pub alt: u8,
    /// 1 run-time, 2 DFU mode.
    pub protocol: u8,
    /// The interface string (a DfuSe memory layout), when it could be read.
    pub name: Option<String>,
}

/// A device with at least one DFU interface.
#[derive(Debug, Clone)]
pub struct DfuDevice {
    /// idVendor.
    pub vendor: u16,
    /// idProduct.
    pub product: u16,
    /// bcdDevice (dfu-util's `ver=`).
    pub bcd_device: u16,
    /// Bus and port path.
    pub path: String,
    /// Device address.
    pub devnum: u8,
    /// Serial number string.
    pub serial: Option<String>,
    /// The DFU alt settings.
    pub alts: Vec<AltInfo>,
    /// The DFU functional descriptor, when the configuration could be read.
    pub functional: Option<FunctionalDescriptor>,
    info: nusb::DeviceInfo,
}

impl DfuDevice {
    /// Opens the device and claims its DFU interface.
    pub fn open(&self) -> Result<UsbTransport, UsbError> {
        let interface = self
            .alts
            .first()
            .map(|a| a.interface)
            .ok_or(UsbError::NoDfuInterface {
                vendor: self.vendor,
                product: self.product,
            })?;
        let device = self.info.open().wait()?;
        let claimed = device.claim_interface(interface).wait()?;
        Ok(UsbTransport {
            interface: claimed,
            device,
            serial: self.serial.clone(),
        })
    }

    /// The lines `dfu-util -l` prints for this device, one per alt setting.
    #[must_use]
    pub fn dfu_util_lines(&self) -> Vec<String> {
        self.alts.iter().map(|a| self.line(a).to_string()).collect()
    }

    fn line<'s>(&'s self, alt: &'s AltInfo) -> Line<'s> {
        Line { device: self, alt }
    }
}

struct Line<'a> {
    device: &'a DfuDevice,
    alt: &'a AltInfo,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.device;
        write_line(
            f,
            (d.vendor, d.product, d.bcd_device, d.devnum),
            &d.path,
            self.alt,
            d.serial.as_deref(),
        )
    }
}

/// dfu-util 0.11's `print_dfu_if` line (`Found DFU:` or `Found Runtime:`), configuration 1.
fn write_line(
    f: &mut impl fmt::Write,
    (vendor, product, ver, devnum): (u16, u16, u16, u8),
    path: &str,
    alt: &AltInfo,
    serial: Option<&str>,
) -> fmt::Result {
    let kind = if alt.protocol == 1 { "Runtime" } else { "DFU" };
    write!(
        f,
        "Found {kind}: [{vendor:04x}:{product:04x}] ver={ver:04x}, devnum={devnum}, cfg=1, intf={}, path=\"{path}\", alt={}, name=\"{}\", serial=\"{}\"",
        alt.interface,
        alt.alt,
        alt.name.as_deref().unwrap_or("UNKNOWN"),
        serial.unwrap_or("UNKNOWN"),
    )
}

/// Lists the devices with a DFU interface. Without USB access (no usbfs, no permission) this is an error or an
/// empty list, never a panic. Alt-setting names need the device opened; when that fails they are `None`.
pub fn list() -> Result<Vec<DfuDevice>, UsbError> {
    let mut out = Vec::new();
    for info in nusb::list_devices().wait()? {
        let dfu = info
            .interfaces()
            .any(|i| i.class() == 0xFE && i.subclass() == 0x01);
        if !dfu {
            continue;
        }
        let mut alts = Vec::new();
        let mut functional = None;
        if let Ok(device) = info.open().wait()
            && let Ok(config) = device.active_configuration()
            && let Ok(parsed) = DfuConfig::parse(config.as_bytes())
        {
            functional = parsed.functional;
            for a in parsed.alts() {
                let name = core::num::NonZeroU8::new(a.name_index)
                    .and_then(|i| device.get_string_descriptor(i, 0x0409, TIMEOUT).wait().ok());
                alts.push(AltInfo {
                    interface: a.interface,
                    alt: a.alt,
                    protocol: a.protocol,
                    name,
                });
            }
        }
        if alts.is_empty() {
            alts.extend(
                info.interfaces()
                    .filter(|i| i.class() == 0xFE && i.subclass() == 0x01)
                    .map(|i| AltInfo {
                        interface: i.interface_number(),
                        alt: 0,
                        protocol: i.protocol(),
                        name: i.interface_string().map(String::from),
                    }),
            );
        }
        out.push(DfuDevice {
            vendor: info.vendor_id(),
            product: info.product_id(),
            bcd_device: info.device_version(),
            path: String::from(info.bus_id()),
            devnum: info.device_address(),
            serial: info.serial_number().map(String::from),
            alts,
            functional,
            info,
        });
    }
    Ok(out)
}

/// A claimed DFU interface.
#[derive(Debug)]
pub struct UsbTransport {
    interface: nusb::Interface,
    device: nusb::Device,
    /// To find the device again after a detach or reset (it comes back with another product id).
    serial: Option<String>,
}

impl UsbTransport {
    /// Looks for the device in DFU mode (interface protocol 2), by serial number when it has one.
    fn find_dfu_mode(&self) -> Option<(nusb::DeviceInfo, u8)> {
        let devices = nusb::list_devices().wait().ok()?;
        for info in devices {
            if self.serial.is_some() && info.serial_number() != self.serial.as_deref() {
                continue;
            }
            let dfu = info
                .interfaces()
                .find(|i| i.class() == 0xFE && i.subclass() == 0x01 && i.protocol() == 2);
            if let Some(i) = dfu {
                return Some((info.clone(), i.interface_number()));
            }
        }
        None
    }
}

fn map(e: nusb::transfer::TransferError) -> TransferError {
    use nusb::transfer::TransferError as N;
    match e {
        N::Stall => TransferError::Stall,
        N::Disconnected => TransferError::Disconnected,
        N::Cancelled => TransferError::Timeout,
        _ => TransferError::Io,
    }
}

impl blocking::Transport for UsbTransport {
    fn select_alt(&mut self, alt: u8) -> Result<(), TransferError> {
        self.interface
            .set_alt_setting(alt)
            .wait()
            .map_err(|_| TransferError::Io)
    }

    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), TransferError> {
        self.interface
            .control_out(
                ControlOut {
                    control_type: ControlType::Class,
                    recipient: Recipient::Interface,
                    request: setup.request,
                    value: setup.value,
                    index: setup.index,
                    data,
                },
                TIMEOUT,
            )
            .wait()
            .map_err(map)
    }

    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, TransferError> {
        let data = self
            .interface
            .control_in(
                ControlIn {
                    control_type: ControlType::Class,
                    recipient: Recipient::Interface,
                    request: setup.request,
                    value: setup.value,
                    index: setup.index,
                    length: setup.length,
                },
                TIMEOUT,
            )
            .wait()
            .map_err(map)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    fn wait(&mut self, ms: u32) {
        std::thread::sleep(Duration::from_millis(u64::from(ms)));
    }

    fn reset(&mut self) -> Result<(), TransferError> {
        self.device.reset().wait().map_err(|_| TransferError::Io)
    }

    fn reenumerate(&mut self, timeout_ms: u32) -> Result<(), TransferError> {
        let deadline = std::time::Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        loop {
            if let Some((info, number)) = self.find_dfu_mode()
                && let Ok(device) = info.open().wait()
                && let Ok(interface) = device.claim_interface(number).wait()
            {
                self.device = device;
                self.interface = interface;
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(TransferError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dfu_util_line_format() {
        let alt = AltInfo {
            interface: 0,
            alt: 1,
            protocol: 2,
            name: Some(String::from(crate::platform::CORE_SPI_FLASH)),
        };
        let mut s = String::new();
        write_line(
            &mut s,
            (0x1d50, 0x607f, 0x0200, 7),
            "1-1.2",
            &alt,
            Some("8D7A3A3C5150"),
        )
        .unwrap();
        assert_eq!(
            s,
            "Found DFU: [1d50:607f] ver=0200, devnum=7, cfg=1, intf=0, path=\"1-1.2\", alt=1, name=\"@SPI Flash : SST25x/0x00000000/512*04Kg\", serial=\"8D7A3A3C5150\""
        );
    }

    #[test]
    fn listing_without_hardware_is_clean() {
        // Here there is normally no DFU device (and maybe no usbfs): an empty list or an error, never a panic.
        if let Ok(devices) = list() {
            for d in &devices {
                assert!(!d.alts.is_empty());
                assert_eq!(d.dfu_util_lines().len(), d.alts.len());
            }
        }
    }
}
