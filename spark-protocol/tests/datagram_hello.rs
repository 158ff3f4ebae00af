//! Device OS's extended Hello over UDP: a device configured with a platform id and limits sends them with its
//! device id, and the cloud reports them on `Connected`; a Hello naming another device than the one the DTLS key
//! belongs to ends the cloud's session (`UnknownDevice`). Both sides in memory, lossless, on virtual time.
#![cfg(feature = "dtls")]

use core::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::DeviceId;
use spark_protocol::dtls::{self, Accept, ClientConfig, PrivateKey, Server, ServerConfig};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent, NoKeys};
use spark_protocol::session::datagram::{DatagramError, DatagramSession};
use spark_protocol::session::device::{DeviceConfig, DeviceConnection, NoFirmware};
use spark_protocol::session::{Instant, SessionError};
use spark_protocol::wire::hello::HelloLimits;

const ELECTRON: [u8; 12] = [
    0x2a, 0x00, 0x1c, 0x00, 0x0d, 0x47, 0x34, 0x35, 0x36, 0x37, 0x36, 0x33,
];
const OTHER: [u8; 12] = [0x11; 12];

const LIMITS: HelloLimits = HelloLimits {
    system_version: 0x0100,
    max_message_size: 1024,
    max_binary_size: 128 * 1024,
    ota_chunk_size: 512,
};

type Cloud = DatagramSession<CloudConnection<NoKeys, NoKeys, StdRng>, StdRng>;

/// Runs a device with `config` against a cloud that maps the device's key to `registered`, until the cloud
/// reports `Connected` or fails; returns what it reported.
fn hello(config: DeviceConfig, registered: [u8; 12]) -> Result<CloudEvent, DatagramError> {
    let device_key = PrivateKey::from_scalar(&[0x41; 32]).unwrap();
    let cloud_key = PrivateKey::from_scalar(&[0x42; 32]).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let client = dtls::Connection::client(
        Instant::ZERO,
        ClientConfig::new(device_key, cloud_key.public_key()),
        &mut rng,
    );
    let session = DeviceConnection::datagram(Instant::ZERO, config, NoFirmware, &mut rng);
    let mut device: DatagramSession<DeviceConnection, StdRng> =
        DatagramSession::new(session, client, StdRng::seed_from_u64(4));
    let mut server: Server<1> = Server::new(ServerConfig::new(cloud_key), &mut rng);
    let mut handshaking: Option<dtls::Connection> = None;
    let mut cloud: Option<Cloud> = None;
    let mut buf = vec![0u8; 2048];
    let mut now = Instant::ZERO;
    for _ in 0..2000 {
        let mut to_cloud = Vec::new();
        while let Some(n) = device.poll_transmit(now, &mut buf).unwrap() {
            to_cloud.push(buf[..n].to_vec());
        }
        let mut to_device = Vec::new();
        for d in to_cloud {
            if let Some(c) = &mut cloud {
                c.handle_datagram(now, &d)?;
            } else if let Some(h) = &mut handshaking {
                h.handle_datagram(now, &d).unwrap();
            } else {
                let mut out = [0u8; 256];
                match server
                    .accept(now, b"device", &d, &mut rng, &mut out)
                    .unwrap()
                {
                    Accept::HelloVerifyRequest(m) => to_device.push(out[..m].to_vec()),
                    Accept::Connection(c) => handshaking = Some(c),
                    Accept::Ignore => {}
                }
            }
        }
        if handshaking
            .as_ref()
            .is_some_and(dtls::Connection::is_connected)
        {
            let conn = handshaking.take().unwrap();
            let mut config = CloudConfig::default();
            config.idle_timeout = Duration::from_secs(120);
            let session = CloudConnection::datagram(
                now,
                NoKeys,
                NoKeys,
                StdRng::seed_from_u64(5),
                config,
                DeviceId::from_bytes(registered),
            );
            cloud = Some(DatagramSession::new(
                session,
                conn,
                StdRng::seed_from_u64(6),
            ));
        }
        if let Some(h) = &mut handshaking {
            while let Some(n) = h.poll_transmit(&mut buf).unwrap() {
                to_device.push(buf[..n].to_vec());
            }
        }
        if let Some(c) = &mut cloud {
            c.handle_timeout(now)?;
            while let Some(e) = c.poll_event() {
                if matches!(e, CloudEvent::Connected(_)) {
                    return Ok(e);
                }
            }
            while let Some(n) = c.poll_transmit(now, &mut buf)? {
                to_device.push(buf[..n].to_vec());
            }
        }
        for d in to_device {
            device.handle_datagram(now, &d).unwrap();
        }
        device.handle_timeout(now).unwrap();
        while device.poll_event().is_some() {}
        now += Duration::from_millis(10);
    }
    panic!("no outcome in 20 virtual seconds");
}

#[test]
fn an_extended_hello_carries_the_platform_the_id_and_the_limits() {
    let mut config = DeviceConfig::new(ELECTRON);
    config.platform_id = Some(10);
    config.limits = Some(LIMITS);
    let Ok(CloudEvent::Connected(info)) = hello(config, ELECTRON) else {
        panic!("not connected")
    };
    let ext = info.extended.expect("an extended Hello");
    assert_eq!(ext.platform_id, 10);
    assert_eq!(ext.device_id, Some(ELECTRON));
    assert_eq!(ext.limits, Some(LIMITS));
    assert_eq!(info.device_id, DeviceId::from_bytes(ELECTRON));
}

#[test]
fn a_core_hello_over_udp_has_no_extension() {
    let Ok(CloudEvent::Connected(info)) = hello(DeviceConfig::new(ELECTRON), ELECTRON) else {
        panic!("not connected")
    };
    assert_eq!(info.extended, None);
}

#[test]
fn a_hello_naming_another_device_than_the_keys_is_refused() {
    let mut config = DeviceConfig::new(OTHER);
    config.platform_id = Some(10);
    match hello(config, ELECTRON) {
        Err(DatagramError::Session(SessionError::UnknownDevice)) => {}
        other => panic!("expected UnknownDevice, got {other:?}"),
    }
}
