//! Known operations on the platform table's devices, each one call over a blocking transport: flash user
//! firmware or the factory image (after firmware inspection), write the server key with its address record,
//! read and write the device key, flash a DFU file after checking its suffix.
//!
//! ```
//! use spark_dfu::host::Options;
//! use spark_dfu::ops::{self, OpError};
//! use spark_dfu::platform::Platform;
//! use spark_dfu::sim::SparkCore;
//!
//! let mut core = SparkCore::new();
//! // A DER private key goes to SPI flash 0x2000, padded with 0xFF to its 1024 bytes of room.
//! let der = [0x30, 0x82, 0x02, 0x5d, 0x02, 0x01, 0x00];
//! ops::write_device_key(&mut core, Platform::Core, &der, Options::default(), |_| {}).unwrap();
//! let saved = ops::read_device_key(&mut core, Platform::Core, |_| {}).unwrap();
//! assert_eq!((&saved[..7], saved.len(), saved[7]), (&der[..], 1024, 0xFF));
//!
//! // Bytes that are not firmware for the Core are refused before anything is sent.
//! let junk = [0xAB; 64];
//! let refused = ops::flash_user_firmware(&mut core, Platform::Core, &junk, Options::default(), |_| {});
//! assert!(matches!(refused, Err(OpError::Refused(_))));
//! ```

use alloc::vec;
use alloc::vec::Vec;

use crate::file::DfuFile;
use crate::host::{Device, Event, Host, HostError, Options, Refusal, Region, Summary};
use crate::module;
use crate::platform::server_key::{KeyError, ServerAddress, ServerKeyImage};
use crate::platform::{Item, Location, Platform, Transport as Protocol};
use crate::transport::blocking::{Transport, run};

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// Refused before anything was sent.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The run failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The key could not be made into an image.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The platform has no such place, or its layouts are unknown.
    #[error("{platform:?} does not support {item:?} here")]
    Unsupported {
        /// The platform.
        platform: Platform,
        /// What was asked for.
        item: Item,
    },
    /// The platform keeps no device key for this protocol: the Core speaks only TCP, so it has no place for a
    /// UDP (P-256) key.
    #[error("{platform:?} has no {protocol:?}-protocol key place: it does not speak that protocol")]
    NoKeyPlace {
        /// The platform.
        platform: Platform,
        /// The protocol whose key was asked for.
        protocol: Protocol,
    },
}

/// The item holding the device private key for `protocol`, refused where the platform has no such place.
pub fn device_key_item(platform: Platform, protocol: Protocol) -> Result<Item, OpError> {
    let item = match protocol {
        Protocol::Tcp => Item::DevicePrivateKey,
        Protocol::Udp => Item::UdpDevicePrivateKey,
    };
    match platform.location(item) {
        Some(_) => Ok(item),
        None => Err(OpError::NoKeyPlace { platform, protocol }),
    }
}

/// The item holding the server public key image for `protocol`, refused where the platform has no such place.
pub fn server_key_item(platform: Platform, protocol: Protocol) -> Result<Item, OpError> {
    let item = match protocol {
        Protocol::Tcp => Item::ServerPublicKey,
        Protocol::Udp => Item::UdpServerPublicKey,
    };
    match platform.location(item) {
        Some(_) => Ok(item),
        None => Err(OpError::NoKeyPlace { platform, protocol }),
    }
}

fn device(platform: Platform, item: Item) -> Result<Device<'static>, OpError> {
    Device::for_platform(platform).ok_or(OpError::Unsupported { platform, item })
}

fn location(platform: Platform, item: Item) -> Result<Location, OpError> {
    platform
        .location(item)
        .ok_or(OpError::Unsupported { platform, item })
}

fn write(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    item: Item,
    regions: &[Region<'_>],
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    let dev = device(platform, item)?;
    let mut host = Host::download(dev, regions, options)?;
    Ok(run(&mut host, transport, on_event)?)
}

/// Downloads `data` to `place` (its alt setting and address) as the `item` of `platform`.
fn write_at(
    transport: &mut (impl Transport + ?Sized),
    (platform, item): (Platform, Item),
    place: Location,
    data: &[u8],
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    let region = Region {
        alt: place.alt,
        address: place.address,
        data,
    };
    write(transport, platform, item, &[region], options, on_event)
}

fn flash_image(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    item: Item,
    image: &[u8],
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    let cleared = module::check_for(image, platform, item).map_err(Refusal::Firmware)?;
    let mut data = vec![0u8; cleared.write_len];
    // Sized from write_len just above.
    let n = cleared.emit(&mut data).unwrap_or(0);
    let place = cleared.location;
    write_at(
        transport,
        (platform, item),
        place,
        &data[..n],
        options,
        on_event,
    )
}

/// Flashes user firmware (Core: 0x08005000 on alt 0) after checking that it is for this platform.
pub fn flash_user_firmware(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    image: &[u8],
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    flash_image(
        transport,
        platform,
        Item::UserFirmware,
        image,
        options,
        on_event,
    )
}

/// Flashes the factory-reset image (Core: SPI flash 0x20000 on alt 1).
pub fn flash_factory_image(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    image: &[u8],
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    flash_image(
        transport,
        platform,
        Item::FactoryImage,
        image,
        options,
        on_event,
    )
}

/// Writes the server public key image (Core: 2048 bytes at SPI 0x1000, the address record at 0x1180).
pub fn write_server_key(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    der: &[u8],
    address: Option<ServerAddress<'_>>,
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    let item = Item::ServerPublicKey;
    let format = platform
        .server_key_format()
        .ok_or(OpError::Unsupported { platform, item })?;
    let mut image = vec![0u8; format.len];
    let n = ServerKeyImage::emit(der, format, address, None, &mut image)?;
    write_item(transport, platform, item, &image[..n], options, on_event)
}

/// Writes a device private key (the DER, padded with 0xFF to the key's room as the CLIs do).
pub fn write_device_key(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    der: &[u8],
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    write_protocol_key(transport, platform, Protocol::Tcp, der, options, on_event)
}

/// Writes the device private key of `protocol`: for UDP the SEC1 DER of a P-256 key at the UDP key place (DCT
/// offset 3106, 192 bytes), padded with 0xFF; refused with [`OpError::NoKeyPlace`] on a Core.
pub fn write_protocol_key(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    protocol: Protocol,
    der: &[u8],
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    let item = device_key_item(platform, protocol)?;
    let place = location(platform, item)?;
    let room = place.len as usize;
    if der.len() > room {
        return Err(KeyError::KeyTooLong {
            len: der.len(),
            room,
        }
        .into());
    }
    let mut image = vec![0xFF; room];
    image[..der.len()].copy_from_slice(der);
    write_at(
        transport,
        (platform, item),
        place,
        &image,
        options,
        on_event,
    )
}

/// Reads the device private key region (`keys save`: 1024 bytes at SPI 0x2000 on a Core).
pub fn read_device_key(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    on_event: impl FnMut(Event),
) -> Result<Vec<u8>, OpError> {
    read_item(transport, platform, Item::DevicePrivateKey, on_event)
}

/// Reads the whole device-key region of `protocol` (UDP: the 192 bytes at DCT offset 3106).
pub fn read_protocol_key(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    protocol: Protocol,
    on_event: impl FnMut(Event),
) -> Result<Vec<u8>, OpError> {
    let item = device_key_item(platform, protocol)?;
    read_item(transport, platform, item, on_event)
}

/// Flashes the firmware of a DFU file at `address` on `alt`, refusing a file whose suffix names another device.
#[allow(clippy::too_many_arguments)]
pub fn flash_file(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    file: &DfuFile<'_>,
    alt: u8,
    address: u32,
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    check_suffix(file, platform)?;
    let region = Region {
        alt,
        address,
        data: file.firmware(),
    };
    write(
        transport,
        platform,
        Item::UserData,
        &[region],
        options,
        on_event,
    )
}

/// Refuses a file whose DFU suffix names another device than the platform's DFU-mode USB id.
pub fn check_suffix(file: &DfuFile<'_>, platform: Platform) -> Result<(), Refusal> {
    let usb = platform.dfu_usb();
    match file.suffix() {
        Some(s) if !s.matches_device(usb.vendor, usb.product) => Err(Refusal::WrongDevice {
            file_vendor: s.id_vendor,
            file_product: s.id_product,
            vendor: usb.vendor,
            product: usb.product,
        }),
        _ => Ok(()),
    }
}

/// Refuses a DfuSe file whose suffix names another device than the platform's DFU-mode USB id.
pub fn check_dfuse_suffix(
    file: &crate::file::dfuse::DfuseFile<'_>,
    platform: Platform,
) -> Result<(), Refusal> {
    let s = file.suffix();
    let usb = platform.dfu_usb();
    if s.matches_device(usb.vendor, usb.product) {
        Ok(())
    } else {
        Err(Refusal::WrongDevice {
            file_vendor: s.id_vendor,
            file_product: s.id_product,
            vendor: usb.vendor,
            product: usb.product,
        })
    }
}

/// The regions of a DfuSe file: every element of every target, to the target's alt setting.
#[must_use]
pub fn dfuse_regions<'a>(file: &crate::file::dfuse::DfuseFile<'a>) -> Vec<Region<'a>> {
    file.targets()
        .flat_map(|t| {
            let alt = t.alt();
            t.elements().map(move |e| Region {
                alt,
                address: e.address,
                data: e.data,
            })
        })
        .collect()
}

/// Flashes a DfuSe file (every target and element to its alt setting), refusing one whose suffix names another
/// device.
pub fn flash_dfuse_file(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    file: &crate::file::dfuse::DfuseFile<'_>,
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    check_dfuse_suffix(file, platform)?;
    let regions = dfuse_regions(file);
    write(
        transport,
        platform,
        Item::UserData,
        &regions,
        options,
        on_event,
    )
}

/// Writes `data` at the platform's place for `item` (its alt setting and address), refusing data longer than
/// the room there: for images built elsewhere, such as a server-key image with a port.
pub fn write_item(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    item: Item,
    data: &[u8],
    options: Options,
    on_event: impl FnMut(Event),
) -> Result<Summary, OpError> {
    let place = location(platform, item)?;
    if data.len() > place.len as usize {
        return Err(Refusal::Firmware(module::FirmwareError::DoesNotFit {
            len: data.len(),
            room: place.len,
        })
        .into());
    }
    write_at(transport, (platform, item), place, data, options, on_event)
}

/// Reads the whole room of `item` (`keys save` reads the device key's 1024 bytes on a Core).
pub fn read_item(
    transport: &mut (impl Transport + ?Sized),
    platform: Platform,
    item: Item,
    on_event: impl FnMut(Event),
) -> Result<Vec<u8>, OpError> {
    let place = location(platform, item)?;
    let dev = device(platform, item)?;
    let mut out = vec![0u8; place.len as usize];
    let mut host = Host::upload(dev, place.alt, place.address, &mut out)?;
    run(&mut host, transport, on_event)?;
    Ok(out)
}

/// DFU_GETSTATE on the platform's DFU interface (interface 0): the state, unchanged.
pub fn get_state(
    transport: &mut (impl Transport + ?Sized),
    interface: u16,
) -> Result<crate::host::proto::State, OpError> {
    Ok(crate::transport::blocking::get_state(transport, interface)?)
}

/// Sends a run-time DFU interface to DFU mode: GETSTATUS, DETACH, a USB reset unless the device detaches by
/// itself, then the transport finds it again (or, if it cannot, the detach timeout is waited) and GETSTATE
/// confirms DFU mode.
pub fn detach(
    transport: &mut (impl Transport + ?Sized),
    options: crate::host::runtime::DetachOptions,
) -> Result<crate::host::runtime::DetachOutcome, OpError> {
    let mut machine = crate::host::runtime::Detach::new(options);
    Ok(crate::transport::blocking::detach(&mut machine, transport)?)
}
