//! The UDP (P-256) key places over DFU, on the simulated Electron (alt 1 "DCT Flash"): the device key at DCT
//! offset 3106 and the server key image at 3298, written in place beside the rest of the table, read back, and
//! refused on a Core, which has no UDP key place.

use spark_dfu::host::Options;
use spark_dfu::ops::{self, OpError};
use spark_dfu::platform::server_key::{KeyFormat, ServerAddress, ServerKeyImage};
use spark_dfu::platform::{Item, Platform, Transport, dct};
use spark_dfu::sim::SparkCore;

/// A SEC1 `ECPrivateKey` header and body shape (version 1, a 32-byte scalar); the bytes need not be a real key
/// for the DFU layer, which stores DER as given.
fn sec1_like() -> Vec<u8> {
    let mut der = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend((0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(1)));
    der.extend([
        0xA0, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07,
    ]);
    der.extend([0xA1, 0x44, 0x03, 0x42, 0x00, 0x04]);
    der.extend((0..64u8).map(|i| i ^ 0x5A));
    assert_eq!(der.len(), 0x79);
    der
}

fn options() -> Options {
    Options {
        verify: true,
        leave: false,
        ..Options::default()
    }
}

#[test]
fn udp_device_key_goes_to_dct_3106_and_keeps_the_rsa_key() {
    let mut electron = SparkCore::electron();
    // The TCP key already in the DCT must survive a write of the UDP key (the DCT alt writes in place).
    let rsa = [0x30, 0x82, 0x02, 0x5C, 0x02, 0x01, 0x00, 0x02];
    let at = dct::DEVICE_PRIVATE_KEY as usize;
    electron.dct[at..at + rsa.len()].copy_from_slice(&rsa);
    let der = sec1_like();
    ops::write_protocol_key(
        &mut electron,
        Platform::Electron,
        Transport::Udp,
        &der,
        options(),
        |_| {},
    )
    .unwrap();
    let place = dct::UDP_DEVICE_PRIVATE_KEY as usize;
    let room = dct::UDP_DEVICE_PRIVATE_KEY_LEN as usize;
    assert_eq!(&electron.dct[place..place + der.len()], &der[..]);
    assert!(
        electron.dct[place + der.len()..place + room]
            .iter()
            .all(|&b| b == 0xFF)
    );
    assert_eq!(&electron.dct[at..at + rsa.len()], &rsa);
    // Nothing outside the key's room changed.
    assert!(electron.dct[place + room..].iter().all(|&b| b == 0xFF));

    let back =
        ops::read_protocol_key(&mut electron, Platform::Electron, Transport::Udp, |_| {}).unwrap();
    assert_eq!(back.len(), room);
    assert_eq!(&back[..der.len()], &der[..]);
    // The TCP read still finds the RSA bytes.
    let tcp = ops::read_device_key(&mut electron, Platform::Electron, |_| {}).unwrap();
    assert_eq!(&tcp[..rsa.len()], &rsa);
}

#[test]
fn a_second_udp_key_replaces_the_first_without_an_erase() {
    let mut electron = SparkCore::electron();
    let first = sec1_like();
    let mut second = first.clone();
    second[7..39].fill(0x42);
    for der in [&first, &second] {
        ops::write_protocol_key(
            &mut electron,
            Platform::Electron,
            Transport::Udp,
            der,
            options(),
            |_| {},
        )
        .unwrap();
    }
    let back =
        ops::read_protocol_key(&mut electron, Platform::Electron, Transport::Udp, |_| {}).unwrap();
    assert_eq!(&back[..second.len()], &second[..]);
}

#[test]
fn a_core_has_no_udp_key_place() {
    let mut core = SparkCore::new();
    let err = ops::write_protocol_key(
        &mut core,
        Platform::Core,
        Transport::Udp,
        &sec1_like(),
        options(),
        |_| {},
    )
    .unwrap_err();
    assert_eq!(
        err,
        OpError::NoKeyPlace {
            platform: Platform::Core,
            protocol: Transport::Udp
        }
    );
    assert!(err.to_string().contains("Udp-protocol key place"), "{err}");
    assert_eq!(core.transfers, 0, "refused before anything was sent");
    assert!(matches!(
        ops::read_protocol_key(&mut core, Platform::Core, Transport::Udp, |_| {}),
        Err(OpError::NoKeyPlace { .. })
    ));
    assert!(matches!(
        ops::server_key_item(Platform::Core, Transport::Udp),
        Err(OpError::NoKeyPlace { .. })
    ));
    assert_eq!(
        ops::device_key_item(Platform::Electron, Transport::Udp),
        Ok(Item::UdpDevicePrivateKey)
    );
}

#[test]
fn udp_server_key_image_goes_to_dct_3298() {
    let mut electron = SparkCore::electron();
    // An SPKI DER header of the P-256 shape (91 bytes), as the EC server key is.
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01,
    ];
    spki.extend([
        0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ]);
    spki.extend((0..64u8).map(|i| i.wrapping_mul(3)));
    assert_eq!(spki.len(), 91);
    let mut image = vec![0u8; KeyFormat::DCT_EC.len];
    let address = ServerAddress::Ipv4([127, 0, 0, 1]);
    let n = ServerKeyImage::emit(
        &spki,
        KeyFormat::DCT_EC,
        Some(address),
        Some(5684),
        &mut image,
    )
    .unwrap();
    let item = ops::server_key_item(Platform::Electron, Transport::Udp).unwrap();
    ops::write_item(
        &mut electron,
        Platform::Electron,
        item,
        &image[..n],
        options(),
        |_| {},
    )
    .unwrap();
    let at = dct::UDP_SERVER_PUBLIC_KEY as usize;
    let stored = &electron.dct[at..at + KeyFormat::DCT_EC.len];
    let parsed = ServerKeyImage::parse(stored, KeyFormat::DCT_EC).unwrap();
    assert_eq!(parsed.der, &spki[..]);
    assert_eq!(parsed.address, Some(address));
    assert_eq!(parsed.port, Some(5684));
    // The TCP server key place is untouched.
    let tcp = dct::SERVER_PUBLIC_KEY as usize;
    assert!(electron.dct[tcp..tcp + 512].iter().all(|&b| b == 0xFF));
}

#[test]
fn the_simulated_electron_erases_its_internal_flash_by_sector_and_guards_its_bootloader() {
    let mut electron = SparkCore::electron();
    assert_eq!(electron.platform(), Platform::Electron);
    // Two different images at the user firmware place: the second write succeeds only if the sector was erased
    // first, since programming a byte that is not 0xFF fails.
    let first = vec![0x11u8; 5000];
    let second: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    for image in [&first, &second] {
        ops::write_item(
            &mut electron,
            Platform::Electron,
            Item::UserFirmware,
            image,
            options(),
            |_| {},
        )
        .unwrap();
    }
    let back = ops::read_item(
        &mut electron,
        Platform::Electron,
        Item::UserFirmware,
        |_| {},
    )
    .unwrap();
    assert_eq!(&back[..second.len()], &second[..]);
    assert!(back[second.len()..].iter().all(|&b| b == 0xFF));
    // Forced past the host's layout check, a bootloader write is refused by the device itself.
    let forced = Options {
        force: true,
        ..options()
    };
    let refused = ops::write_item(
        &mut electron,
        Platform::Electron,
        Item::Bootloader,
        &[0u8; 64],
        forced,
        |_| {},
    );
    assert!(matches!(refused, Err(OpError::Host(_))), "{refused:?}");
    assert!(electron.internal[..0x4000].iter().all(|&b| b == 0xFF));
}
