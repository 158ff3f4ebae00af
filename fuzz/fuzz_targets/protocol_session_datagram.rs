//! Drives both sessions in datagram mode (the UDP protocol's, one plaintext CoAP message per DTLS
//! record) with arbitrary messages, timers and application answers in between: the device after
//! the cloud's Hello, the cloud after the device's. Neither may panic, and once one has failed it
//! must keep returning the same error.
#![no_main]

#[path = "../shared/device_app.rs"]
mod device_app;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::DeviceId;
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, NoKeys};
use spark_protocol::session::device::{BufferSink, DeviceConfig, DeviceConnection};
use spark_protocol::session::{Connection, Instant, Scope};
use spark_protocol::wire::describe::VarType;

/// `CON POST /h` from the cloud, no payload.
const CLOUD_HELLO: [u8; 6] = [0x41, 0x02, 0x12, 0x34, 0x01, 0xb1];
/// `CON POST /h` from a Core-style device: product id, firmware version, flags.
const DEVICE_HELLO: [u8; 13] = [
    0x40, 0x02, 0x00, 0x07, 0xb1, b'h', 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00,
];

fuzz_target!(|data: &[u8]| {
    let mut store = [0u8; 16 * 1024];
    let mut dev = DeviceConnection::datagram(
        Instant::ZERO,
        DeviceConfig::new([7; 12]),
        BufferSink::new(&mut store),
        &mut StdRng::seed_from_u64(1),
    );
    let _ = dev.register_function(b"f");
    let _ = dev.register_variable(b"v", VarType::String);
    let mut hello = [0u8; 7];
    hello[..6].copy_from_slice(&CLOUD_HELLO);
    hello[6] = b'h';
    let _ = dev.handle_input(Instant::ZERO, &hello);
    let _ = dev.subscribe(b"", Scope::MyDevices);

    let mut cloud = CloudConnection::datagram(
        Instant::ZERO,
        NoKeys,
        NoKeys,
        StdRng::seed_from_u64(2),
        CloudConfig::default(),
        DeviceId::from_bytes([7; 12]),
    );
    let _ = cloud.handle_input(Instant::ZERO, &DEVICE_HELLO);

    let mut out = [0u8; 2048];
    let mut now = 0u64;
    let mut rest = data;
    // Each record: [len u8][to the cloud? u8][advance u8][message bytes].
    while rest.len() >= 3 {
        let (len, to_cloud, advance) = (usize::from(rest[0]), rest[1] & 1 == 1, rest[2]);
        rest = &rest[3..];
        let msg = &rest[..len.min(rest.len())];
        rest = &rest[msg.len()..];
        now += u64::from(advance) * 100;
        let t = Instant::from_millis(now);
        if to_cloud {
            let _ = cloud.handle_input(t, msg);
            cloud.handle_timeout(t);
            while cloud.poll_event().is_some() {}
            while let Ok(Some(_)) = cloud.poll_transmit(t, &mut out) {}
        } else {
            let _ = dev.handle_input(t, msg);
            dev.handle_timeout(t);
            device_app::answer_events(&mut dev);
            while let Ok(Some(_)) = dev.poll_transmit(t, &mut out) {}
        }
        if let Some(e) = dev.error() {
            assert_eq!(dev.handle_input(t, &[0x40, 0, 0, 0]), Err(e));
        }
        if let Some(e) = cloud.error() {
            assert_eq!(cloud.handle_input(t, &[0x40, 0, 0, 0]), Err(e));
            return;
        }
    }
});
