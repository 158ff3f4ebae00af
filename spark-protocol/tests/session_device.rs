//! The device session against a scripted cloud built from the wire and crypto layers.

use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::crypto::framing::sealed_len;
use spark_protocol::crypto::handshake::{NONCE_LEN, seal_session_key};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{
    Aes128Cbc, FrameDecoder, FrameEncoder, FrameError, Nonce, RsaPrivateKey, RsaPrivateKeyRef,
    RsaPublicKeyRef, SessionKey, handshake,
};
use spark_protocol::session::device::{
    BufferSink, DeviceConfig, DeviceConnection, DeviceError, DeviceEvent, DeviceHandshake,
    EVENT_QUEUE_LEN, FirmwareSink, ImageInfo, NoFirmware, NoHandshake, OtaFailure, RsaHandshake,
    Scope, SinkError,
};
use spark_protocol::session::{Connection, Instant, SessionError};
use spark_protocol::wire::describe::{Description, VarType};
use spark_protocol::wire::hello::HelloPayload;
use spark_protocol::wire::message::{
    Chunk, Describe, Event, FunctionCall, KeyChange, Ping, Signal, Time, UpdateBegin, UpdateDone,
    Value, VariableRequest, Visibility,
};
use spark_protocol::wire::ota::UpdateParams;
use spark_protocol::wire::{
    Code, Header, Message, MessageKind, MessageType, Repr, Role, classify_repr,
};

const DEVICE_ID: [u8; 12] = *b"\x1a\x11\x8a\xd1\xc8\x86\xd5\x42\x40\xce\x4b\x17";

fn session_bytes(seed: u8) -> [u8; 40] {
    core::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
}

/// The cloud's half: its own encoder and decoder over the same session secret.
struct Cloud {
    enc: FrameEncoder<Aes128Cbc>,
    dec: FrameDecoder<Aes128Cbc, Vec<u8>>,
    id: u16,
    seed: u16,
    token_seed: u8,
}

impl Cloud {
    fn new(session: &SessionKey) -> Self {
        Cloud {
            enc: session.encoder(),
            dec: session.decoder(vec![0; 4096]),
            id: 0x1000,
            seed: session.message_id_seed(),
            token_seed: session.token_seed(),
        }
    }

    fn frame(&mut self, msg: Message<'_>) -> Vec<u8> {
        let plain = msg.to_vec().unwrap();
        let mut out = vec![0; sealed_len(plain.len())];
        let n = self.enc.seal(&plain, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn send<S: FirmwareSink>(
        &mut self,
        dev: &mut DeviceConnection<S>,
        now: Instant,
        msg: Message<'_>,
    ) -> Result<(), SessionError> {
        let f = self.frame(msg);
        dev.handle_input(now, &f)
    }

    fn next_header(&mut self, ty: MessageType, token: u8) -> Header {
        self.id = self.id.wrapping_add(1);
        Header::new(ty, self.id, spark_protocol::wire::Token::from_byte(token))
    }

    /// Every plaintext message the device has to send.
    fn recv<S: FirmwareSink, H: DeviceHandshake>(
        &mut self,
        dev: &mut DeviceConnection<S, H>,
        now: Instant,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0; dev.max_transmit_len()];
        while let Some(n) = dev.poll_transmit(now, &mut buf).unwrap() {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let mut plain = vec![0; 4096];
                let d = self.dec.decode(rest, &mut plain).unwrap();
                rest = &rest[d.consumed..];
                if let Some(len) = d.message {
                    out.push(plain[..len].to_vec());
                }
            }
        }
        out
    }
}

fn kind(bytes: &[u8]) -> (MessageKind, Repr<'_>) {
    let repr = Repr::parse_bytes(bytes).unwrap();
    (classify_repr(&repr, Role::Cloud), repr)
}

fn events<S: FirmwareSink, H: DeviceHandshake>(
    dev: &mut DeviceConnection<S, H>,
) -> Vec<DeviceEvent> {
    std::iter::from_fn(|| dev.poll_event()).collect()
}

fn config() -> DeviceConfig {
    DeviceConfig::new(DEVICE_ID)
}

/// A device whose session is established and whose Hello exchange is done.
fn connected<S: FirmwareSink>(sink: S, cfg: DeviceConfig) -> (DeviceConnection<S>, Cloud) {
    let session = SessionKey::from_bytes(session_bytes(3));
    let mut dev = DeviceConnection::from_session(Instant::ZERO, &session, cfg, sink);
    let mut cloud = Cloud::new(&session);
    let hello = cloud.recv(&mut dev, Instant::ZERO);
    assert_eq!(hello.len(), 1);
    assert_eq!(kind(&hello[0]).0, MessageKind::Hello);
    let h = cloud.next_header(MessageType::NonConfirmable, 1);
    let server_hello = spark_protocol::wire::message::Hello {
        header: h,
        payload: HelloPayload::None,
    };
    cloud
        .send(&mut dev, Instant::ZERO, server_hello.into())
        .unwrap();
    assert_eq!(events(&mut dev), vec![DeviceEvent::Connected]);
    assert!(dev.is_connected());
    (dev, cloud)
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

// -------------------------------------------------------------------------------------------
// Hello, ids and tokens

#[test]
fn hello_carries_seed_plus_one_and_the_ota_flag() {
    for ota in [false, true] {
        let session = SessionKey::from_bytes(session_bytes(9));
        let mut cfg = config();
        cfg.ota_succeeded = ota;
        cfg.product_id = 6;
        cfg.firmware_version = 3;
        let mut dev: DeviceConnection =
            DeviceConnection::from_session(Instant::ZERO, &session, cfg, NoFirmware);
        let mut cloud = Cloud::new(&session);
        let msgs = cloud.recv(&mut dev, Instant::ZERO);
        let (k, repr) = kind(&msgs[0]);
        assert_eq!(k, MessageKind::Hello);
        assert_eq!(repr.msg_type, MessageType::NonConfirmable);
        assert_eq!(repr.message_id, session.message_id_seed().wrapping_add(1));
        assert_eq!(repr.payload, Some(&[0, 6, 0, 3, 0, u8::from(ota)][..]));
    }
}

#[test]
fn ids_and_tokens_increment_from_the_session_seed() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    let seed = cloud.seed;
    dev.publish(at(0), b"a", None, Visibility::Public, 60)
        .unwrap();
    dev.request_time().unwrap();
    dev.subscribe(b"b", Scope::All).unwrap();
    dev.request_time().unwrap();
    let msgs = cloud.recv(&mut dev, at(0));
    let ids: Vec<u16> = msgs.iter().map(|m| kind(m).1.message_id).collect();
    let expected: Vec<u16> = (2..6).map(|i| seed.wrapping_add(i)).collect();
    assert_eq!(ids, expected);
    let tokens: Vec<&[u8]> = msgs
        .iter()
        .map(|m| {
            Repr::parse_bytes(m)
                .unwrap()
                .token
                .as_bytes()
                .to_vec()
                .leak() as &[u8]
        })
        .collect();
    assert_eq!(tokens[1], &[cloud.token_seed.wrapping_add(1)]);
    assert_eq!(tokens[3], &[cloud.token_seed.wrapping_add(2)]);
    assert!(tokens[0].is_empty() && tokens[2].is_empty());
}

#[test]
fn nothing_but_hello_is_accepted_before_the_servers_hello() {
    let session = SessionKey::from_bytes(session_bytes(1));
    let mut dev: DeviceConnection =
        DeviceConnection::from_session(Instant::ZERO, &session, config(), NoFirmware);
    let mut cloud = Cloud::new(&session);
    cloud.recv(&mut dev, Instant::ZERO);
    let h = cloud.next_header(MessageType::Confirmable, 0);
    let err = cloud.send(
        &mut dev,
        at(1),
        Ping {
            header: Header::con(h.message_id),
        }
        .into(),
    );
    assert!(matches!(err, Err(SessionError::Unexpected(_))));
    assert_eq!(
        dev.publish(at(1), b"x", None, Visibility::Public, 60),
        Err(DeviceError::Session(err.unwrap_err()))
    );
}

#[test]
fn the_servers_hello_must_come_within_the_handshake_timeout() {
    let session = SessionKey::from_bytes(session_bytes(1));
    let mut dev: DeviceConnection =
        DeviceConnection::from_session(Instant::ZERO, &session, config(), NoFirmware);
    assert_eq!(dev.poll_timeout(), Some(at(20_000)));
    dev.handle_timeout(at(19_999));
    assert_eq!(dev.error(), None);
    dev.handle_timeout(at(20_000));
    assert_eq!(dev.error(), Some(SessionError::HandshakeTimeout));
}

// -------------------------------------------------------------------------------------------
// Handshake

struct TestKeys {
    server: RsaPrivateKey,
    device: RsaPrivateKey,
}

fn test_keys() -> &'static TestKeys {
    static KEYS: std::sync::OnceLock<TestKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        server: RsaPrivateKey::generate(&mut StdRng::seed_from_u64(1), 2048).unwrap(),
        device: RsaPrivateKey::generate(&mut StdRng::seed_from_u64(2), 1024).unwrap(),
    })
}

type RsaDev =
    DeviceConnection<NoFirmware, RsaHandshake<RustCryptoPrivateKey, RustCryptoPublicKey, StdRng>>;

fn rsa_device(device: &RsaPrivateKey, server_pub: RsaPublicKeyRef<'_>) -> RsaDev {
    let hs = RsaHandshake::new(
        RustCryptoPrivateKey::new(&device.as_ref_key()).unwrap(),
        RustCryptoPublicKey::new(&server_pub).unwrap(),
        StdRng::seed_from_u64(5),
    );
    DeviceConnection::new(Instant::ZERO, config(), hs, NoFirmware)
}

#[test]
fn handshake_with_generated_keys_in_any_chunking() {
    let k = test_keys();
    let server_priv = RustCryptoPrivateKey::new(&k.server.as_ref_key()).unwrap();
    let device_pub = RustCryptoPublicKey::new(&k.device.public_key().as_ref_key()).unwrap();
    for step in [1usize, 7, 1000] {
        let mut dev = rsa_device(&k.device, k.server.public_key().as_ref_key());
        let mut rng = StdRng::seed_from_u64(step as u64);
        let nonce = Nonce::generate(&mut rng);
        let mut buf = [0u8; 700];
        assert_eq!(dev.poll_transmit(at(0), &mut buf), Ok(None));
        for c in nonce.0.chunks(step) {
            dev.handle_input(at(1), c).unwrap();
        }
        let n = dev.poll_transmit(at(1), &mut buf).unwrap().unwrap();
        assert_eq!(n, 256);
        let creds =
            handshake::decrypt_device_credentials(&server_priv, &mut rng, &nonce, &buf[..n])
                .unwrap();
        assert_eq!(creds.device_id, DEVICE_ID);
        let session = SessionKey::generate(&mut rng);
        let mut reply = [0u8; 384];
        seal_session_key(&device_pub, &server_priv, &mut rng, &session, &mut reply).unwrap();
        for c in reply.chunks(step) {
            dev.handle_input(at(2), c).unwrap();
        }
        let mut cloud = Cloud::new(&session);
        let msgs = cloud.recv(&mut dev, at(2));
        let (k2, repr) = kind(&msgs[0]);
        assert_eq!(k2, MessageKind::Hello);
        assert_eq!(repr.message_id, session.message_id_seed().wrapping_add(1));
    }
}

#[test]
fn handshake_stall_and_early_reply_are_errors() {
    let k = test_keys();
    let mut dev = rsa_device(&k.device, k.server.public_key().as_ref_key());
    dev.handle_input(at(0), &[0; 10]).unwrap();
    dev.handle_timeout(at(19_000));
    assert_eq!(dev.error(), None);
    dev.handle_timeout(at(20_000));
    assert_eq!(dev.error(), Some(SessionError::HandshakeTimeout));
    assert_eq!(
        dev.handle_input(at(20_001), &[0]),
        Err(SessionError::HandshakeTimeout)
    );

    let mut dev = rsa_device(&k.device, k.server.public_key().as_ref_key());
    let early = [0u8; NONCE_LEN + 5];
    assert!(matches!(
        dev.handle_input(at(0), &early),
        Err(SessionError::Unexpected(_))
    ));

    let mut dev: DeviceConnection =
        DeviceConnection::new(Instant::ZERO, config(), NoHandshake, NoFirmware);
    assert!(matches!(
        dev.handle_input(at(0), &[0; NONCE_LEN]),
        Err(SessionError::Authentication(_))
    ));
}

// -------------------------------------------------------------------------------------------
// Describe, functions, variables

#[test]
fn describe_lists_functions_and_variables_with_core_names() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    dev.register_function(b"brew").unwrap();
    dev.register_function(b"a_very_long_function_name").unwrap();
    dev.register_variable(b"temperature", VarType::Int).unwrap();
    dev.register_variable(b"d", VarType::Double).unwrap();
    let h = cloud.next_header(MessageType::Confirmable, 7);
    cloud
        .send(
            &mut dev,
            at(1),
            Describe {
                header: h,
                flags: None,
            }
            .into(),
        )
        .unwrap();
    let msgs = cloud.recv(&mut dev, at(1));
    let (_, repr) = kind(&msgs[0]);
    assert_eq!(repr.msg_type, MessageType::Acknowledgement);
    assert_eq!(repr.code, Code::Content);
    assert_eq!(repr.message_id, h.message_id);
    assert_eq!(repr.token, h.token);
    let json = repr.payload.unwrap();
    assert_eq!(
        json,
        br#"{"f":["brew","a_very_long_"],"v":{"temperature":2,"d":9}}"#
    );
    let d = Description::parse(json).unwrap();
    assert!(d.has_function(b"a_very_long_"));
}

#[test]
fn function_call_acks_at_once_and_returns_separately_with_a_publish_inside() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    dev.register_function(b"brew").unwrap();
    let h = cloud.next_header(MessageType::Confirmable, 0x42);
    let call = FunctionCall {
        header: h,
        name: b"brew",
        argument: Some(b"coffee"),
    };
    cloud.send(&mut dev, at(5), call.into()).unwrap();
    let msgs = cloud.recv(&mut dev, at(5));
    assert_eq!(
        msgs,
        vec![vec![
            0x60,
            0x00,
            (h.message_id >> 8) as u8,
            h.message_id as u8
        ]]
    );
    let ev = events(&mut dev);
    let DeviceEvent::FunctionCall(fc) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(&fc.name[..], b"brew");
    assert_eq!(&fc.argument[..], b"coffee");
    // While the call runs the application publishes (firmware 0.2.1 allowed it).
    dev.publish(at(6), b"brewing", Some(b"1"), Visibility::Private, 60)
        .unwrap();
    dev.function_return(fc.call, -7).unwrap();
    assert_eq!(
        dev.function_return(fc.call, 1),
        Err(DeviceError::UnknownRequest)
    );
    let msgs = cloud.recv(&mut dev, at(6));
    assert_eq!(msgs.len(), 2);
    let (k, repr) = kind(&msgs[0]);
    assert_eq!(k, MessageKind::Event);
    assert_eq!(repr.message_id, cloud.seed.wrapping_add(2));
    let Message::FunctionReturn(ret) = Message::parse(
        &Repr::parse_bytes(&msgs[1]).unwrap(),
        MessageKind::FunctionReturn,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(ret.header.msg_type, MessageType::NonConfirmable);
    assert_eq!(ret.header.token, h.token);
    assert_eq!(ret.header.message_id, cloud.seed.wrapping_add(3));
    assert_eq!(ret.code, Code::Changed);
    assert_eq!(ret.value, Some(-7));
}

#[test]
fn unknown_function_gets_not_found_and_long_argument_closes() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    let h = cloud.next_header(MessageType::Confirmable, 1);
    cloud
        .send(
            &mut dev,
            at(1),
            FunctionCall {
                header: h,
                name: b"nope",
                argument: None,
            }
            .into(),
        )
        .unwrap();
    let msgs = cloud.recv(&mut dev, at(1));
    assert_eq!(msgs.len(), 2);
    assert_eq!(Repr::parse_bytes(&msgs[1]).unwrap().code, Code::NotFound);
    assert!(events(&mut dev).is_empty());
    let h = cloud.next_header(MessageType::Confirmable, 2);
    let arg = [b'x'; 64];
    let r = cloud.send(
        &mut dev,
        at(2),
        FunctionCall {
            header: h,
            name: b"nope",
            argument: Some(&arg),
        }
        .into(),
    );
    assert_eq!(r, Err(SessionError::Oversized { len: 64, max: 63 }));
    assert_eq!(
        dev.error(),
        Some(SessionError::Oversized { len: 64, max: 63 })
    );
}

#[test]
fn variables_of_every_type_are_piggy_backed() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    let cases: [(&[u8], VarType, Value<'_>, &[u8]); 4] = [
        (b"b", VarType::Bool, Value::Bool(true), &[1]),
        (
            b"i",
            VarType::Int,
            Value::Int(-2),
            &[0xff, 0xff, 0xff, 0xfe],
        ),
        (
            b"d",
            VarType::Double,
            Value::Double(1.5),
            &1.5f64.to_le_bytes(),
        ),
        (b"s", VarType::String, Value::String(b"hi"), b"hi"),
    ];
    for (name, ty, _, _) in &cases {
        dev.register_variable(name, *ty).unwrap();
    }
    for (i, (name, ty, value, bytes)) in cases.iter().enumerate() {
        let h = cloud.next_header(MessageType::Confirmable, i as u8);
        cloud
            .send(&mut dev, at(1), VariableRequest { header: h, name }.into())
            .unwrap();
        let ev = events(&mut dev);
        let DeviceEvent::VariableRequest(req) = &ev[0] else {
            panic!()
        };
        assert_eq!(req.var_type, *ty);
        let wrong = if *ty == VarType::Int {
            Value::Bool(false)
        } else {
            Value::Int(0)
        };
        assert_eq!(
            dev.variable_value(req.request, wrong),
            Err(DeviceError::WrongType { expected: *ty })
        );
        dev.variable_value(req.request, *value).unwrap();
        let msgs = cloud.recv(&mut dev, at(1));
        let repr = Repr::parse_bytes(&msgs[0]).unwrap();
        assert_eq!(repr.msg_type, MessageType::Acknowledgement);
        assert_eq!((repr.message_id, repr.token), (h.message_id, h.token));
        assert_eq!(repr.code, Code::Content);
        assert_eq!(repr.payload.unwrap(), *bytes);
    }
    let h = cloud.next_header(MessageType::Confirmable, 9);
    cloud
        .send(
            &mut dev,
            at(1),
            VariableRequest {
                header: h,
                name: b"zz",
            }
            .into(),
        )
        .unwrap();
    let msgs = cloud.recv(&mut dev, at(1));
    assert_eq!(Repr::parse_bytes(&msgs[0]).unwrap().code, Code::NotFound);
}

// -------------------------------------------------------------------------------------------
// Events

#[test]
fn publish_is_limited_to_four_per_rolling_second() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    for t in [0, 100, 200, 300] {
        dev.publish(at(1000 + t), b"e", None, Visibility::Public, 60)
            .unwrap();
    }
    assert_eq!(
        dev.publish(at(1999), b"e", None, Visibility::Public, 60),
        Err(DeviceError::RateLimited)
    );
    dev.publish(at(2000), b"e", None, Visibility::Public, 60)
        .unwrap();
    assert_eq!(
        dev.publish(at(2050), b"e", None, Visibility::Public, 60),
        Err(DeviceError::RateLimited)
    );
    dev.publish(at(2100), b"e", Some(b"d"), Visibility::Private, 120)
        .unwrap();
    let msgs = cloud.recv(&mut dev, at(2100));
    assert_eq!(msgs.len(), 6);
    let ids: Vec<u16> = msgs.iter().map(|m| kind(m).1.message_id).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "a refused publish consumes no id"
    );
    // The private one with a TTL: `E`, Max-Age of 3 bytes.
    let Message::Event(e) =
        Message::parse(&Repr::parse_bytes(&msgs[5]).unwrap(), MessageKind::Event).unwrap()
    else {
        panic!()
    };
    assert_eq!(e.visibility, Visibility::Private);
    assert_eq!(e.ttl(), 120);
    assert_eq!(e.max_age.unwrap().width, 3);
    assert_eq!(
        dev.publish(at(9000), &[b'n'; 64], None, Visibility::Public, 60),
        Err(DeviceError::TooLong { len: 64, max: 63 })
    );
    assert_eq!(
        dev.publish(at(9000), b"n", Some(&[0; 256]), Visibility::Public, 60),
        Err(DeviceError::TooLong { len: 256, max: 255 })
    );
}

#[test]
fn subscribe_forms_and_prefix_delivery() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    assert_eq!(
        dev.subscribe(b"", Scope::All),
        Err(DeviceError::EmptyFilter)
    );
    assert_eq!(dev.subscribe(b"temp", Scope::All), Ok(0));
    assert_eq!(dev.subscribe(b"temp/kitchen", Scope::MyDevices), Ok(1));
    assert_eq!(dev.subscribe(b"", Scope::MyDevices), Ok(2));
    assert_eq!(
        dev.subscribe(
            b"door",
            Scope::Device("0123456789abcdef01234567".parse().unwrap())
        ),
        Ok(3)
    );
    assert_eq!(dev.subscribe(b"x", Scope::All), Err(DeviceError::TableFull));
    let msgs = cloud.recv(&mut dev, at(0));
    let wire: Vec<Vec<u8>> = vec![
        b"\x40\x01\x00\x00\xb1e\x04temp".to_vec(),
        b"\x40\x01\x00\x00\xb1e\x0ctemp/kitchen\x41u".to_vec(),
        b"\x40\x01\x00\x00\xb1e\x41u".to_vec(),
        b"\x40\x01\x00\x00\xb1e\x04door\xff0123456789abcdef01234567".to_vec(),
    ];
    for (m, w) in msgs.iter().zip(&wire) {
        assert_eq!(&m[4..], &w[4..]);
        assert_eq!(&m[..2], &w[..2]);
    }
    // Delivered with the name split into segments.
    let ev = Event::deliver(1, Visibility::Public, b"temp/kitchen/now", Some(b"21"), 60);
    cloud.send(&mut dev, at(1), ev.into()).unwrap();
    let ev = Event::deliver(2, Visibility::Public, b"unrelated", None, 60);
    cloud.send(&mut dev, at(1), ev.into()).unwrap();
    let got = events(&mut dev);
    assert_eq!(got.len(), 2);
    let DeviceEvent::Event(e) = &got[0] else {
        panic!()
    };
    assert_eq!(e.handlers, 0b0111);
    assert_eq!(&e.name[..], b"temp/kitchen/now");
    assert_eq!(&e.data[..], b"21");
    let DeviceEvent::Event(e) = &got[1] else {
        panic!()
    };
    assert_eq!(
        e.handlers, 0b0100,
        "the empty my-devices filter matches everything"
    );
}

#[test]
fn full_event_queue_drops_deliveries_and_counts_them() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    dev.subscribe(b"a", Scope::All).unwrap();
    cloud.recv(&mut dev, at(0));
    for i in 0..6 {
        let ev = Event::deliver(i, Visibility::Public, b"a", None, 60);
        cloud.send(&mut dev, at(1), ev.into()).unwrap();
    }
    assert_eq!(events(&mut dev).len(), EVENT_QUEUE_LEN);
    assert_eq!(dev.dropped_events(), 6 - EVENT_QUEUE_LEN as u32);
}

// -------------------------------------------------------------------------------------------
// Time, signal, key change, ping

#[test]
fn time_signal_key_change_and_server_ping() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    dev.request_time().unwrap();
    let msgs = cloud.recv(&mut dev, at(0));
    let (k, req) = kind(&msgs[0]);
    assert_eq!(k, MessageKind::GetTime);
    let t = Time {
        header: Header::piggybacked(&Header::new(req.msg_type, req.message_id, req.token)),
        code: Code::Content,
        unix_time: 1_400_000_000,
    };
    cloud.send(&mut dev, at(1), t.into()).unwrap();
    assert_eq!(events(&mut dev), vec![DeviceEvent::Time(1_400_000_000)]);

    for start in [true, false] {
        let h = cloud.next_header(MessageType::Confirmable, 3);
        cloud
            .send(&mut dev, at(2), Signal { header: h, start }.into())
            .unwrap();
        let msgs = cloud.recv(&mut dev, at(2));
        let repr = Repr::parse_bytes(&msgs[0]).unwrap();
        assert_eq!(
            (repr.msg_type, repr.code, repr.message_id, repr.token),
            (
                MessageType::Acknowledgement,
                Code::Changed,
                h.message_id,
                h.token
            )
        );
        assert_eq!(events(&mut dev), vec![DeviceEvent::Signal(start)]);
    }

    let h = cloud.next_header(MessageType::Confirmable, 4);
    cloud
        .send(
            &mut dev,
            at(3),
            KeyChange {
                header: h,
                payload: &[0; 32],
            }
            .into(),
        )
        .unwrap();
    let msgs = cloud.recv(&mut dev, at(3));
    let repr = Repr::parse_bytes(&msgs[0]).unwrap();
    assert_eq!((repr.code, repr.message_id), (Code::Changed, h.message_id));
    assert_eq!(events(&mut dev), vec![DeviceEvent::KeyChange]);

    let h = cloud.next_header(MessageType::Confirmable, 0);
    cloud
        .send(
            &mut dev,
            at(4),
            Ping {
                header: Header::con(h.message_id),
            }
            .into(),
        )
        .unwrap();
    let msgs = cloud.recv(&mut dev, at(4));
    assert_eq!(
        msgs,
        vec![vec![0x60, 0, (h.message_id >> 8) as u8, h.message_id as u8]]
    );
}

#[test]
fn keepalive_pings_after_15_s_and_times_out_10_s_later() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    assert_eq!(dev.poll_timeout(), Some(at(15_000)));
    dev.handle_timeout(at(14_999));
    assert!(cloud.recv(&mut dev, at(14_999)).is_empty());
    dev.handle_timeout(at(15_000));
    let msgs = cloud.recv(&mut dev, at(15_000));
    let (k, repr) = kind(&msgs[0]);
    assert_eq!(k, MessageKind::Ping);
    assert_eq!(repr.message_id, cloud.seed.wrapping_add(2));
    assert_eq!(dev.poll_timeout(), Some(at(25_000)));
    // An answer resets the timers.
    let ack = spark_protocol::wire::message::EmptyAck {
        header: Header::ack(repr.message_id),
    };
    cloud.send(&mut dev, at(16_000), ack.into()).unwrap();
    assert_eq!(dev.poll_timeout(), Some(at(31_000)));
    dev.handle_timeout(at(31_000));
    assert_eq!(cloud.recv(&mut dev, at(31_000)).len(), 1);
    dev.handle_timeout(at(40_999));
    assert_eq!(dev.error(), None);
    dev.handle_timeout(at(41_000));
    assert_eq!(dev.error(), Some(SessionError::PingTimeout));
    assert_eq!(dev.poll_timeout(), None);
    let mut buf = [0; 64];
    assert_eq!(
        dev.poll_transmit(at(41_001), &mut buf),
        Err(SessionError::PingTimeout)
    );
    assert_eq!(
        dev.handle_input(at(41_001), &[1]),
        Err(SessionError::PingTimeout)
    );
}

// -------------------------------------------------------------------------------------------
// OTA

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn begin<S: FirmwareSink>(
    cloud: &mut Cloud,
    dev: &mut DeviceConnection<S>,
    now: Instant,
    params: Option<UpdateParams>,
) -> Vec<Vec<u8>> {
    let h = cloud.next_header(MessageType::Confirmable, 0x10);
    cloud
        .send(dev, now, UpdateBegin { header: h, params }.into())
        .unwrap();
    cloud.recv(dev, now)
}

fn params(size: usize, chunk: u16, fast: bool) -> UpdateParams {
    UpdateParams {
        flags: u8::from(fast),
        chunk_size: chunk,
        file_size: size as u32,
        destination: 0,
        address: 0,
    }
}

fn send_chunk<S: FirmwareSink>(
    cloud: &mut Cloud,
    dev: &mut DeviceConnection<S>,
    now: Instant,
    index: Option<u16>,
    data: &[u8],
    corrupt: bool,
) -> Vec<Vec<u8>> {
    let h = cloud.next_header(MessageType::Confirmable, 0x20);
    let mut c = Chunk::new(h, index, data);
    if corrupt {
        c.crc ^= 1;
    }
    cloud.send(dev, now, c.into()).unwrap();
    cloud.recv(dev, now)
}

fn done<S: FirmwareSink>(
    cloud: &mut Cloud,
    dev: &mut DeviceConnection<S>,
    now: Instant,
) -> Vec<Vec<u8>> {
    let h = cloud.next_header(MessageType::Confirmable, 0x30);
    cloud
        .send(
            dev,
            now,
            UpdateDone {
                header: h,
                result: &[],
            }
            .into(),
        )
        .unwrap();
    cloud.recv(dev, now)
}

fn padded(img: &[u8], chunk: usize, i: usize) -> Vec<u8> {
    let mut c = img[i * chunk..((i + 1) * chunk).min(img.len())].to_vec();
    c.resize(chunk, 0);
    c
}

#[test]
fn stop_and_wait_ota_with_a_bad_crc_chunk() {
    let mut store = vec![0; 4096];
    let (mut dev, mut cloud) = connected(BufferSink::new(&mut store), config());
    let img = image(1000);
    let msgs = begin(
        &mut cloud,
        &mut dev,
        at(0),
        Some(params(img.len(), 256, false)),
    );
    assert_eq!(msgs.len(), 2);
    assert_eq!(Repr::parse_bytes(&msgs[0]).unwrap().code, Code::Empty);
    let ready = Repr::parse_bytes(&msgs[1]).unwrap();
    assert_eq!(
        (ready.msg_type, ready.code, ready.payload),
        (MessageType::NonConfirmable, Code::Changed, Some(&[0u8][..]))
    );
    assert!(matches!(
        events(&mut dev)[..],
        [DeviceEvent::UpdateStarted { fast: false, .. }]
    ));
    for i in 0..4 {
        if i == 2 {
            let msgs = send_chunk(
                &mut cloud,
                &mut dev,
                at(10),
                None,
                &padded(&img, 256, i),
                true,
            );
            assert_eq!(Repr::parse_bytes(&msgs[1]).unwrap().code, Code::BadRequest);
        }
        let msgs = send_chunk(
            &mut cloud,
            &mut dev,
            at(10),
            None,
            &padded(&img, 256, i),
            false,
        );
        assert_eq!(msgs.len(), 2);
        let rec = Repr::parse_bytes(&msgs[1]).unwrap();
        assert_eq!(
            (rec.msg_type, rec.code),
            (MessageType::NonConfirmable, Code::Changed)
        );
    }
    let msgs = done(&mut cloud, &mut dev, at(20));
    assert_eq!(Repr::parse_bytes(&msgs[0]).unwrap().code, Code::Changed);
    assert_eq!(
        events(&mut dev),
        vec![DeviceEvent::UpdateFinished { size: 1000 }]
    );
    let sink = dev.into_sink();
    assert_eq!(sink.committed(), Some(&img[..]));
}

#[test]
fn core_form_update_begin_without_payload() {
    let mut store = vec![0; 4096];
    let (mut dev, mut cloud) = connected(BufferSink::new(&mut store), config());
    let img = image(300);
    let msgs = begin(&mut cloud, &mut dev, at(0), None);
    assert_eq!(Repr::parse_bytes(&msgs[1]).unwrap().payload, None);
    send_chunk(&mut cloud, &mut dev, at(1), None, &img[..256], false);
    send_chunk(&mut cloud, &mut dev, at(1), None, &img[256..], false);
    done(&mut cloud, &mut dev, at(2));
    assert_eq!(dev.sink().committed(), Some(&img[..]));
}

#[test]
fn chunk_missed_every_3_s_for_the_next_chunk() {
    let mut store = vec![0; 4096];
    let (mut dev, mut cloud) = connected(BufferSink::new(&mut store), config());
    let img = image(600);
    begin(
        &mut cloud,
        &mut dev,
        at(0),
        Some(params(img.len(), 256, false)),
    );
    send_chunk(
        &mut cloud,
        &mut dev,
        at(100),
        None,
        &padded(&img, 256, 0),
        false,
    );
    assert_eq!(dev.poll_timeout(), Some(at(3100)));
    for t in [3100, 6100] {
        dev.handle_timeout(at(t));
        let msgs = cloud.recv(&mut dev, at(t));
        assert_eq!(msgs.len(), 1);
        let (k, repr) = kind(&msgs[0]);
        assert_eq!(k, MessageKind::ChunkMissed);
        assert_eq!(repr.msg_type, MessageType::Confirmable);
        assert_eq!(repr.payload, Some(&[0u8, 1][..]));
    }
    // UpdateDone before the end: refused with 4.00 and a ChunkMissed; nothing committed.
    let msgs = done(&mut cloud, &mut dev, at(6200));
    assert_eq!(Repr::parse_bytes(&msgs[0]).unwrap().code, Code::BadRequest);
    assert_eq!(kind(&msgs[1]).0, MessageKind::ChunkMissed);
    assert_eq!(dev.sink().committed(), None);
    send_chunk(
        &mut cloud,
        &mut dev,
        at(6300),
        None,
        &padded(&img, 256, 1),
        false,
    );
    send_chunk(
        &mut cloud,
        &mut dev,
        at(6300),
        None,
        &padded(&img, 256, 2),
        false,
    );
    done(&mut cloud, &mut dev, at(6400));
    assert_eq!(dev.sink().committed(), Some(&img[..]));
}

#[test]
fn fast_ota_with_bitmap_duplicates_bad_crc_and_missed_resend() {
    let mut store = vec![0; 8192];
    let (mut dev, mut cloud) = connected(BufferSink::new(&mut store), config());
    let img = image(5000);
    let msgs = begin(
        &mut cloud,
        &mut dev,
        at(0),
        Some(params(img.len(), 512, true)),
    );
    assert_eq!(
        Repr::parse_bytes(&msgs[1]).unwrap().payload,
        Some(&[1u8][..])
    );
    let n = img.len().div_ceil(512);
    for i in 0..n {
        if i == 3 || i == 7 {
            continue; // lost
        }
        let corrupt = i == 5;
        let msgs = send_chunk(
            &mut cloud,
            &mut dev,
            at(1),
            Some(i as u16),
            &padded(&img, 512, i),
            corrupt,
        );
        assert!(msgs.is_empty(), "fast OTA chunks get no reply");
    }
    // A duplicate is ignored.
    send_chunk(
        &mut cloud,
        &mut dev,
        at(1),
        Some(0),
        &padded(&img, 512, 0),
        false,
    );
    let msgs = done(&mut cloud, &mut dev, at(2));
    assert_eq!(Repr::parse_bytes(&msgs[0]).unwrap().code, Code::BadRequest);
    let (k, missed) = kind(&msgs[1]);
    assert_eq!(k, MessageKind::ChunkMissed);
    assert_eq!(missed.payload, Some(&[0u8, 3, 0, 5, 0, 7][..]));
    assert_eq!(dev.sink().committed(), None);
    for i in [3, 5, 7] {
        send_chunk(
            &mut cloud,
            &mut dev,
            at(3),
            Some(i),
            &padded(&img, 512, i as usize),
            false,
        );
    }
    let msgs = done(&mut cloud, &mut dev, at(4));
    assert_eq!(Repr::parse_bytes(&msgs[0]).unwrap().code, Code::Changed);
    assert!(events(&mut dev).contains(&DeviceEvent::UpdateFinished { size: 5000 }));
    assert_eq!(dev.sink().committed(), Some(&img[..]));
}

#[test]
fn fast_ota_declined_when_not_configured() {
    let mut store = vec![0; 4096];
    let mut cfg = config();
    cfg.fast_ota = false;
    let (mut dev, mut cloud) = connected(BufferSink::new(&mut store), cfg);
    let msgs = begin(&mut cloud, &mut dev, at(0), Some(params(100, 256, true)));
    assert_eq!(
        Repr::parse_bytes(&msgs[1]).unwrap().payload,
        Some(&[0u8][..])
    );
}

#[test]
fn interrupted_transfers_never_commit() {
    let img = image(2000);
    // Cut by the transport, by a protocol error, by the application, by the OTA watchdog and by
    // a restart: the sink is aborted each time and nothing is committed.
    for cut in 0..5 {
        let mut store = vec![0; 4096];
        let (mut dev, mut cloud) = connected(BufferSink::new(&mut store), config());
        begin(
            &mut cloud,
            &mut dev,
            at(0),
            Some(params(img.len(), 256, false)),
        );
        for i in 0..3 {
            send_chunk(
                &mut cloud,
                &mut dev,
                at(1),
                None,
                &padded(&img, 256, i),
                false,
            );
        }
        match cut {
            0 => dev.handle_close(at(2)),
            1 => {
                assert!(
                    dev.handle_input(
                        at(2),
                        &[0, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
                    )
                    .is_err()
                );
            }
            2 => dev.close(),
            3 => {
                for t in (3..=300).step_by(3) {
                    dev.handle_timeout(at(t * 1000));
                    let _ = cloud.recv(&mut dev, at(t * 1000));
                    // Keep the link alive.
                    let p = cloud.next_header(MessageType::Confirmable, 0);
                    cloud
                        .send(
                            &mut dev,
                            at(t * 1000),
                            Ping {
                                header: Header::con(p.message_id),
                            }
                            .into(),
                        )
                        .unwrap();
                }
                dev.handle_timeout(at(300_001));
                assert!(events(&mut dev).contains(&DeviceEvent::UpdateFailed(OtaFailure::Timeout)));
                assert_eq!(dev.error(), None);
            }
            _ => {
                begin(
                    &mut cloud,
                    &mut dev,
                    at(2),
                    Some(params(img.len(), 256, false)),
                );
                assert!(
                    events(&mut dev).contains(&DeviceEvent::UpdateFailed(OtaFailure::Restarted))
                );
                assert!(dev.sink().is_active());
                dev.handle_close(at(3));
            }
        }
        assert!(!dev.is_updating());
        let sink = dev.into_sink();
        assert_eq!(sink.committed(), None, "cut {cut}");
        assert!(!sink.is_active());
        assert_eq!(sink.counts().0, 0);
        assert!(sink.counts().1 >= 1);
    }
}

#[test]
fn refused_updates() {
    // The sink is too small, the chunk size unusable, or there is no sink.
    let mut store = vec![0; 100];
    let (mut dev, mut cloud) = connected(BufferSink::new(&mut store), config());
    let msgs = begin(&mut cloud, &mut dev, at(0), Some(params(1000, 256, false)));
    assert_eq!(
        Repr::parse_bytes(&msgs[0]).unwrap().code,
        Code::ServiceUnavailable
    );
    assert_eq!(
        events(&mut dev),
        vec![DeviceEvent::UpdateFailed(OtaFailure::Sink(
            SinkError::InsufficientSize { required: 1000 }
        ))]
    );
    let msgs = begin(&mut cloud, &mut dev, at(0), Some(params(10, 0, false)));
    assert_eq!(
        Repr::parse_bytes(&msgs[0]).unwrap().code,
        Code::ServiceUnavailable
    );
    let msgs = begin(&mut cloud, &mut dev, at(0), Some(params(10, 595, false)));
    assert_eq!(
        Repr::parse_bytes(&msgs[0]).unwrap().code,
        Code::ServiceUnavailable
    );
    assert!(!dev.is_updating());
}

/// A sink that takes every chunk and then refuses the finished image (it fails its checks).
struct RefusingSink<'b>(BufferSink<'b>);

impl FirmwareSink for RefusingSink<'_> {
    fn begin(&mut self, info: &ImageInfo) -> Result<(), SinkError> {
        self.0.begin(info)
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), SinkError> {
        self.0.write(offset, data)
    }
    fn finish(&mut self, _: u32) -> Result<(), SinkError> {
        Err(SinkError::Storage)
    }
    fn abort(&mut self) {
        self.0.abort();
    }
}

#[test]
fn a_whole_image_the_sink_refuses_is_answered_with_a_failure_not_a_missing_chunk() {
    // 4.00 to UpdateDone means "chunks are missing, a ChunkMissed follows": a cloud keeps waiting for it. A
    // complete image that the sink refuses is a final 5.03 (as a refused UpdateBegin), with no ChunkMissed.
    let mut store = vec![0; 1024];
    let (mut dev, mut cloud) = connected(RefusingSink(BufferSink::new(&mut store)), config());
    let img = image(600);
    begin(
        &mut cloud,
        &mut dev,
        at(0),
        Some(params(img.len(), 256, false)),
    );
    for i in 0..3 {
        let msgs = send_chunk(
            &mut cloud,
            &mut dev,
            at(1),
            None,
            &padded(&img, 256, i),
            false,
        );
        assert_eq!(Repr::parse_bytes(&msgs[1]).unwrap().code, Code::Changed);
    }
    let msgs = done(&mut cloud, &mut dev, at(2));
    assert_eq!(msgs.len(), 1, "no ChunkMissed follows");
    assert_eq!(
        Repr::parse_bytes(&msgs[0]).unwrap().code,
        Code::ServiceUnavailable
    );
    let evs = events(&mut dev);
    assert_eq!(
        evs.last(),
        Some(&DeviceEvent::UpdateFailed(OtaFailure::Sink(
            SinkError::Storage
        )))
    );
    assert!(!dev.is_updating());
    assert_eq!(dev.sink().0.committed(), None);
}

// -------------------------------------------------------------------------------------------
// Errors

fn error_after(bytes: &[u8]) -> SessionError {
    let (mut dev, _cloud) = connected(NoFirmware, config());
    let e = dev.handle_input(at(1), bytes).unwrap_err();
    assert_eq!(dev.error(), Some(e));
    assert_eq!(dev.handle_input(at(2), &[]), Err(e), "the error sticks");
    assert_eq!(dev.poll_transmit(at(2), &mut [0; 64]), Err(e));
    assert_eq!(
        dev.publish(at(2), b"x", None, Visibility::Public, 60),
        Err(DeviceError::Session(e))
    );
    dev.handle_close(at(3));
    assert_eq!(
        dev.error(),
        Some(e),
        "a later close does not replace the reason"
    );
    e
}

#[test]
fn every_error_path_closes_with_its_reason() {
    // Length not a multiple of 16.
    assert!(matches!(
        error_after(&[0, 15]),
        SessionError::Decryption(FrameError::BadLength { len: 15 })
    ));
    // Longer than the Core's 640-byte queue.
    assert_eq!(
        error_after(&[0x02, 0x90]),
        SessionError::Oversized { len: 656, max: 640 }
    );
    // Wrong key: bad padding.
    assert!(matches!(
        error_after(&[0, 16, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]),
        SessionError::Decryption(FrameError::BadPadding)
    ));
    // Well encrypted, but not CoAP.
    let session = SessionKey::from_bytes(session_bytes(3));
    let mut enc: FrameEncoder<Aes128Cbc> = session.encoder();
    let mut f = [0u8; 64];
    // The device's decoder is past the server Hello: seal that one first to keep the IV chain.
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    let _ = (&mut enc, &mut f);
    let mut out = vec![0; 64];
    let n = cloud.enc.seal(&[0x80], &mut out).unwrap();
    let e = dev.handle_input(at(1), &out[..n]).unwrap_err();
    assert!(matches!(e, SessionError::Malformed(_)));
    // A second Hello.
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    let h = cloud.next_header(MessageType::NonConfirmable, 1);
    let e = cloud.send(
        &mut dev,
        at(1),
        spark_protocol::wire::message::Hello {
            header: h,
            payload: HelloPayload::None,
        }
        .into(),
    );
    assert_eq!(e, Err(SessionError::Unexpected("a second Hello")));
    // The transport closing.
    let (mut dev, _) = connected(NoFirmware, config());
    dev.handle_close(at(1));
    assert_eq!(dev.error(), Some(SessionError::TransportClosed));
    assert_eq!(dev.poll_event(), None);
}

#[test]
fn a_short_transmit_buffer_keeps_the_frame() {
    let (mut dev, mut cloud) = connected(NoFirmware, config());
    dev.publish(
        at(0),
        b"some-event",
        Some(b"payload"),
        Visibility::Public,
        60,
    )
    .unwrap();
    let mut small = [0u8; 8];
    let e = dev.poll_transmit(at(0), &mut small).unwrap_err();
    assert!(
        matches!(e, SessionError::InsufficientSize { required: 34 }),
        "{e:?}"
    );
    assert_eq!(dev.error(), None);
    let msgs = cloud.recv(&mut dev, at(0));
    assert_eq!(kind(&msgs[0]).0, MessageKind::Event);
}

// -------------------------------------------------------------------------------------------
// Chunking

/// Runs a fixed script (calls, events, pings, an OTA) and returns what the device produced.
fn scripted_run(split: &[usize]) -> (Vec<DeviceEvent>, Vec<Vec<u8>>, Option<Vec<u8>>) {
    let mut store = vec![0; 4096];
    let (mut dev, mut cloud) = connected(BufferSink::new(&mut store), config());
    dev.register_function(b"f").unwrap();
    dev.register_variable(b"v", VarType::Int).unwrap();
    dev.subscribe(b"ev", Scope::All).unwrap();
    let mut wire = Vec::new();
    let img = image(700);
    let mut msgs: Vec<Message<'static>> = Vec::new();
    let mut h = |t| cloud.next_header(MessageType::Confirmable, t);
    msgs.push(
        FunctionCall {
            header: h(1),
            name: b"f",
            argument: Some(b"x"),
        }
        .into(),
    );
    msgs.push(
        VariableRequest {
            header: h(2),
            name: b"v",
        }
        .into(),
    );
    msgs.push(Event::deliver(1, Visibility::Public, b"ev/1", Some(b"d"), 60).into());
    msgs.push(
        Describe {
            header: h(3),
            flags: None,
        }
        .into(),
    );
    msgs.push(
        UpdateBegin {
            header: h(4),
            params: Some(params(img.len(), 256, true)),
        }
        .into(),
    );
    let chunks: Vec<Vec<u8>> = (0..3).map(|i| padded(&img, 256, i)).collect();
    let chunks: &'static [Vec<u8>] = Box::leak(chunks.into_boxed_slice());
    for (i, c) in chunks.iter().enumerate() {
        msgs.push(Chunk::new(h(5), Some(i as u16), c).into());
    }
    msgs.push(
        UpdateDone {
            header: h(6),
            result: &[],
        }
        .into(),
    );
    for m in msgs {
        wire.extend(cloud.frame(m));
    }
    let mut rest = &wire[..];
    let mut k = 0;
    while !rest.is_empty() {
        let n = split[k % split.len()].clamp(1, rest.len());
        k += 1;
        dev.handle_input(at(1), &rest[..n]).unwrap();
        rest = &rest[n..];
    }
    let evs = events(&mut dev);
    let out = cloud.recv(&mut dev, at(1));
    let committed = dev.sink().committed().map(<[u8]>::to_vec);
    (evs, out, committed)
}

#[test]
fn the_script_gives_the_expected_result() {
    let (evs, out, committed) = scripted_run(&[100_000]);
    assert_eq!(committed, Some(image(700)));
    assert!(matches!(evs[0], DeviceEvent::FunctionCall(_)));
    assert!(matches!(evs[1], DeviceEvent::VariableRequest(_)));
    assert!(matches!(evs[2], DeviceEvent::Event(_)));
    assert!(out.len() >= 5);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_gives_the_same_result(split in proptest::collection::vec(1usize..300, 1..20)) {
        let whole = scripted_run(&[100_000]);
        let chunked = scripted_run(&split);
        prop_assert_eq!(whole, chunked);
    }
}

#[test]
fn size_of_a_device_connection() {
    let size = core::mem::size_of::<DeviceConnection<NoFirmware>>();
    println!("size_of::<DeviceConnection<NoFirmware>>() = {size}");
    assert!(size < 5000, "{size}");
    let _ = Duration::ZERO;
    let _: Option<RsaPrivateKeyRef<'_>> = None;
}
