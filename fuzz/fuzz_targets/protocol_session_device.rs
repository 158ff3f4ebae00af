//! Drives an established device session (Hello exchanged, functions, variables and a
//! subscription registered, RAM firmware sink) with arbitrary plaintext messages sealed as valid
//! frames, cut and fed in arbitrary pieces, with timers and application answers in between. The
//! session must never panic, and once it has failed it must keep returning the same error.
#![no_main]

#[path = "../shared/device_app.rs"]
mod device_app;

use libfuzzer_sys::fuzz_target;
use spark_protocol::crypto::framing::sealed_len;
use spark_protocol::crypto::{Aes128Cbc, FrameEncoder, SessionKey};
use spark_protocol::session::device::{BufferSink, DeviceConfig, DeviceConnection, Scope};
use spark_protocol::session::{Connection, Instant};
use spark_protocol::wire::describe::VarType;

const SERVER_HELLO: [u8; 6] = [0x51, 0x02, 0x00, 0x01, 0x01, 0xb1];

fuzz_target!(|data: &[u8]| {
    let session = SessionKey::from_bytes(core::array::from_fn(|i| i as u8 * 3));
    let mut store = [0u8; 16 * 1024];
    let mut dev = DeviceConnection::from_session(
        Instant::ZERO,
        &session,
        DeviceConfig::new([7; 12]),
        BufferSink::new(&mut store),
    );
    let mut enc: FrameEncoder<Aes128Cbc> = session.encoder();
    let _ = dev.register_function(b"f");
    let _ = dev.register_variable(b"v", VarType::String);
    let mut out = [0u8; 1024];
    let mut frame = [0u8; 1024];
    let mut send = |dev: &mut DeviceConnection<BufferSink<'_>>, now, msg: &[u8], step: usize| {
        let n = enc.seal(msg, &mut frame).expect("fits");
        let mut rest = &frame[..n];
        while !rest.is_empty() {
            let k = step.clamp(1, rest.len());
            let _ = dev.handle_input(now, &rest[..k]);
            rest = &rest[k..];
        }
    };
    let mut hello = [0u8; 7];
    hello[..6].copy_from_slice(&SERVER_HELLO);
    hello[6] = b'h';
    send(&mut dev, Instant::ZERO, &hello, 64);
    let _ = dev.subscribe(b"", Scope::MyDevices);

    let mut now = 0u64;
    let mut rest = data;
    // Each record: [len u8][step u8][advance u8][message bytes].
    while rest.len() >= 3 {
        let (len, step, advance) = (usize::from(rest[0]), usize::from(rest[1]), rest[2]);
        rest = &rest[3..];
        let msg = &rest[..len.min(rest.len())];
        rest = &rest[msg.len()..];
        now += u64::from(advance) * 100;
        if sealed_len(msg.len()) <= 1024 {
            send(&mut dev, Instant::from_millis(now), msg, step);
        }
        dev.handle_timeout(Instant::from_millis(now));
        device_app::answer_events(&mut dev);
        while let Ok(Some(_)) = dev.poll_transmit(Instant::from_millis(now), &mut out) {}
        if let Some(e) = dev.error() {
            assert_eq!(dev.handle_input(Instant::from_millis(now), &[0]), Err(e));
            assert!(dev.poll_event().is_none() || dev.error() == Some(e));
            return;
        }
    }
});
