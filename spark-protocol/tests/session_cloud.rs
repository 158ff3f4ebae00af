//! The cloud side against a scripted device built from the wire and crypto layers.
#![allow(missing_docs)]

#[path = "crypto_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use common::{openssl_key, rng};
use proptest::prelude::*;
use rand::rngs::StdRng;
use spark_protocol::crypto::handshake::{encrypt_device_credentials, open_session_key};
use spark_protocol::crypto::openssl::{OpensslPrivateKey, OpensslPublicKey};
use spark_protocol::crypto::{
    Aes128Cbc, FrameDecoder, FrameEncoder, HandshakeError, Nonce, RsaPrivateKey,
};
use spark_protocol::session::cloud::{
    CloudConfig, CloudConnection, CloudEvent, OtaError, OtaEvent, OtaOptions, OutgoingEvent,
    RequestFailure, VariableValue,
};
use spark_protocol::session::{Connection, Instant, SessionError};
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::message::{
    Chunk, ChunkMissed, Event, GetTime, Ping, Reply, UpdateReady, Visibility,
};
use spark_protocol::wire::ota::{ChunkIndices, crc32};
use spark_protocol::wire::{Code, Header, Message, MessageType, Repr};

const ID: [u8; 12] = *b"\x53\xff\x6f\x06\x50\x75\x53\x50\x44\x29\x02\x87";

struct Keys {
    server: OpensslPrivateKey,
    server_pub: OpensslPublicKey,
    device: OpensslPrivateKey,
    device_pub: OpensslPublicKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let server: RsaPrivateKey = openssl_key(2048);
        let device: RsaPrivateKey = openssl_key(1024);
        Keys {
            server: OpensslPrivateKey::new(&server.as_ref_key()).unwrap(),
            server_pub: OpensslPublicKey::new(&server.public_key().as_ref_key()).unwrap(),
            device: OpensslPrivateKey::new(&device.as_ref_key()).unwrap(),
            device_pub: OpensslPublicKey::new(&device.public_key().as_ref_key()).unwrap(),
        }
    })
}

type Cloud = CloudConnection<
    &'static OpensslPrivateKey,
    BTreeMap<spark_protocol::DeviceId, &'static OpensslPublicKey>,
    StdRng,
>;

fn cloud(config: CloudConfig) -> Cloud {
    let k = keys();
    let mut store = BTreeMap::new();
    store.insert(ID.into(), &k.device_pub);
    CloudConnection::new(Instant::ZERO, &k.server, store, rng(7), config)
}

/// The scripted device: its own counter and the two framing directions.
struct Device {
    enc: FrameEncoder<Aes128Cbc>,
    dec: FrameDecoder<Aes128Cbc, Vec<u8>>,
    id: u16,
}

impl Device {
    fn seal(&mut self, msg: &Message<'_>) -> Vec<u8> {
        let plain = msg.to_vec().unwrap();
        let mut out = vec![0; plain.len() + 64];
        let n = self.enc.seal(&plain, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn send(
        &mut self,
        cloud: &mut Cloud,
        now: Instant,
        msg: &Message<'_>,
    ) -> Result<(), SessionError> {
        let bytes = self.seal(msg);
        cloud.handle_input(now, &bytes)
    }

    fn next(&mut self) -> u16 {
        self.id = self.id.wrapping_add(1);
        self.id
    }

    /// Everything the cloud has to send, decrypted.
    fn receive(&mut self, cloud: &mut Cloud, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0; cloud.max_transmit_len()];
        while let Some(n) = cloud.poll_transmit(now, &mut buf).unwrap() {
            let mut input = &buf[..n];
            while !input.is_empty() {
                let mut plain = vec![0; 2048];
                let d = self.dec.decode(input, &mut plain).unwrap();
                input = &input[d.consumed..];
                if let Some(m) = d.message {
                    plain.truncate(m);
                    out.push(plain);
                }
            }
            buf = vec![0; cloud.max_transmit_len()];
        }
        out
    }
}

fn events(cloud: &mut Cloud) -> Vec<CloudEvent> {
    std::iter::from_fn(|| cloud.poll_event()).collect()
}

/// Runs the handshake and the Hello exchange; returns the device.
fn connect(cloud: &mut Cloud, hello_payload: &[u8]) -> Device {
    let k = keys();
    let mut buf = vec![0; 1024];
    let n = cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(n, 40);
    let nonce = Nonce(buf[..40].try_into().unwrap());
    let mut creds = [0u8; 256];
    encrypt_device_credentials(&k.server_pub, &mut rng(1), &nonce, &ID, None, &mut creds).unwrap();
    cloud.handle_input(Instant::ZERO, &creds).unwrap();
    let n = cloud
        .poll_transmit(Instant::ZERO, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(n, 384, "the session key reply is 384 bytes");
    let session = open_session_key(&k.device, &k.server_pub, &mut rng(2), &buf[..n]).unwrap();
    let mut dev = Device {
        enc: session.encoder(),
        dec: session.decoder(vec![0; 2048]),
        id: 0x1234,
    };
    let bytes = b"\x50\x02\x12\x34\xb1\x68\xff";
    let mut hello = bytes.to_vec();
    hello.extend_from_slice(hello_payload);
    let mut out = vec![0; 128];
    let n = dev.enc.seal(&hello, &mut out).unwrap();
    cloud.handle_input(Instant::ZERO, &out[..n]).unwrap();
    let msgs = dev.receive(cloud, Instant::ZERO);
    assert_eq!(msgs.len(), 1);
    let repr = Repr::parse_bytes(&msgs[0]).unwrap();
    assert_eq!(repr.msg_type, MessageType::NonConfirmable);
    assert_eq!(repr.code, Code::Post);
    assert_eq!(
        repr.token.len(),
        1,
        "the server's Hello carries a 1-byte token"
    );
    assert!(cloud.is_established());
    dev
}

fn established() -> (Cloud, Device) {
    let mut c = cloud(CloudConfig::default());
    let d = connect(&mut c, &[0x00, 0x06, 0x00, 0x02, 0x00, 0x01]);
    (c, d)
}

#[test]
fn handshake_reports_the_device_and_its_hello() {
    let (mut c, _d) = established();
    let ev = events(&mut c);
    let [CloudEvent::Connected(info)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(info.device_id, ID);
    assert_eq!(info.product_id, Some(6));
    assert_eq!(info.firmware_version, Some(2));
    assert!(info.ota_succeeded());
}

#[test]
fn unknown_device_is_rejected() {
    let k = keys();
    let mut c = CloudConnection::new(
        Instant::ZERO,
        &k.server,
        BTreeMap::<spark_protocol::DeviceId, &OpensslPublicKey>::new(),
        rng(3),
        CloudConfig::default(),
    );
    let mut buf = [0; 64];
    c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    let nonce = Nonce(buf[..40].try_into().unwrap());
    let mut creds = [0u8; 256];
    encrypt_device_credentials(&k.server_pub, &mut rng(1), &nonce, &ID, None, &mut creds).unwrap();
    assert_eq!(
        c.handle_input(Instant::ZERO, &creds),
        Err(SessionError::UnknownDevice)
    );
    assert_eq!(c.error(), Some(SessionError::UnknownDevice));
    assert_eq!(
        c.handle_input(Instant::ZERO, &[0]),
        Err(SessionError::UnknownDevice)
    );
}

#[test]
fn wrong_nonce_or_garbage_fails_authentication() {
    let k = keys();
    let mut c = cloud(CloudConfig::default());
    let mut buf = [0; 64];
    c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    let wrong = Nonce([9; 40]);
    let mut creds = [0u8; 256];
    encrypt_device_credentials(&k.server_pub, &mut rng(1), &wrong, &ID, None, &mut creds).unwrap();
    // Delivered a byte at a time: the block is collected across calls.
    let mut result = Ok(());
    for b in creds {
        result = c.handle_input(Instant::ZERO, &[b]);
    }
    assert_eq!(
        result,
        Err(SessionError::Authentication(HandshakeError::Authentication))
    );

    let mut c = cloud(CloudConfig::default());
    c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    assert!(matches!(
        c.handle_input(Instant::ZERO, &[0x5a; 256]),
        Err(SessionError::Authentication(_))
    ));
}

#[test]
fn a_tampered_frame_fails_decryption() {
    let (mut c, mut d) = established();
    let id = d.next();
    let mut bytes = d.seal(&Message::Ping(Ping {
        header: Header::con(id),
    }));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    assert!(matches!(
        c.handle_input(Instant::ZERO, &bytes),
        Err(SessionError::Decryption(_))
    ));
}

#[test]
fn handshake_times_out() {
    let mut c = cloud(CloudConfig::default());
    assert_eq!(c.poll_timeout(), Some(Instant::from_secs(30)));
    c.handle_timeout(Instant::from_secs(30));
    assert_eq!(c.error(), Some(SessionError::HandshakeTimeout));
}

#[test]
fn bad_counter_closes() {
    let (mut c, mut d) = established();
    let id = d.next();
    d.send(
        &mut c,
        Instant::ZERO,
        &Message::Ping(Ping {
            header: Header::con(id),
        }),
    )
    .unwrap();
    let skipped = id.wrapping_add(2);
    let r = d.send(
        &mut c,
        Instant::ZERO,
        &Message::Ping(Ping {
            header: Header::con(skipped),
        }),
    );
    assert_eq!(
        r,
        Err(SessionError::BadCounter {
            expected: id.wrapping_add(1),
            got: skipped
        })
    );
    assert_eq!(
        c.error(),
        Some(SessionError::BadCounter {
            expected: id.wrapping_add(1),
            got: skipped
        })
    );
}

#[test]
fn pings_are_answered_and_idle_sessions_end() {
    let (mut c, mut d) = established();
    let id = d.next();
    d.send(
        &mut c,
        Instant::from_secs(10),
        &Message::Ping(Ping {
            header: Header::con(id),
        }),
    )
    .unwrap();
    let msgs = d.receive(&mut c, Instant::from_secs(10));
    let r = Repr::parse_bytes(&msgs[0]).unwrap();
    assert_eq!(
        (r.msg_type, r.code, r.message_id),
        (MessageType::Acknowledgement, Code::Empty, id)
    );
    assert_eq!(c.poll_timeout(), Some(Instant::from_secs(41)));
    c.handle_timeout(Instant::from_secs(41));
    assert_eq!(c.error(), Some(SessionError::PingTimeout));
}

#[test]
fn cloud_pings_when_configured() {
    let mut cfg = CloudConfig::default();
    cfg.ping_interval = Some(Duration::from_secs(15));
    let mut c = cloud(cfg);
    let mut d = connect(&mut c, &[]);
    c.handle_timeout(Instant::from_secs(15));
    let msgs = d.receive(&mut c, Instant::from_secs(15));
    let r = Repr::parse_bytes(&msgs[0]).unwrap();
    assert_eq!(
        (r.msg_type, r.code),
        (MessageType::Confirmable, Code::Empty)
    );
    d.send(
        &mut c,
        Instant::from_secs(16),
        &Message::EmptyAck(spark_protocol::wire::message::EmptyAck {
            header: Header::ack(r.message_id),
        }),
    )
    .unwrap();
    assert!(c.error().is_none());
}

#[test]
fn published_events_are_acked_not_slowed_down() {
    let (mut c, mut d) = established();
    events(&mut c);
    let id = d.next();
    let ev = Event::publish(id, Visibility::Private, b"temp/kitchen", Some(b"21.5"), 120);
    d.send(&mut c, Instant::ZERO, &Message::Event(ev)).unwrap();
    let msgs = d.receive(&mut c, Instant::ZERO);
    let r = Repr::parse_bytes(&msgs[0]).unwrap();
    assert_eq!(r.msg_type, MessageType::Acknowledgement);
    assert_eq!(
        r.code,
        Code::Empty,
        "EventAck 0.00, never EventSlowdown 4.00"
    );
    assert_eq!(r.message_id, id);
    let ev = events(&mut c);
    let [CloudEvent::Published(p)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (&p.name[..], p.data.as_deref(), p.ttl, p.private),
        (&b"temp/kitchen"[..], Some(&b"21.5"[..]), 120, true)
    );
}

#[test]
fn events_are_delivered_split_by_segment() {
    let (mut c, mut d) = established();
    c.deliver_event(&OutgoingEvent {
        name: b"a/b",
        data: Some(b"x"),
        ttl: 60,
        private: false,
    })
    .unwrap();
    let msgs = d.receive(&mut c, Instant::ZERO);
    let r = Repr::parse_bytes(&msgs[0]).unwrap();
    let ev = Event::parse(&r).unwrap();
    assert_eq!(r.msg_type, MessageType::NonConfirmable);
    assert!(r.token.is_empty());
    assert_eq!(ev.name.segments().count(), 2);
    assert!(ev.name.starts_with(b"a/b"));
}

#[test]
fn time_requests_use_the_callers_clock() {
    let (mut c, mut d) = established();
    let id = d.next();
    let get = |id| {
        Message::GetTime(GetTime {
            header: Header::con(id).with_token(5),
        })
    };
    d.send(&mut c, Instant::ZERO, &get(id)).unwrap();
    let r = d.receive(&mut c, Instant::ZERO);
    assert_eq!(
        Repr::parse_bytes(&r[0]).unwrap().code,
        Code::ServiceUnavailable
    );
    c.set_wall_clock(Instant::from_secs(1), 1_400_000_000);
    let id = d.next();
    d.send(&mut c, Instant::from_secs(11), &get(id)).unwrap();
    let r = d.receive(&mut c, Instant::from_secs(11));
    let repr = Repr::parse_bytes(&r[0]).unwrap();
    assert_eq!(
        (repr.msg_type, repr.code, repr.message_id),
        (MessageType::Acknowledgement, Code::Content, id)
    );
    assert_eq!(repr.payload, Some(&1_400_000_010u32.to_be_bytes()[..]));
}

#[test]
fn function_calls_match_by_token_out_of_order_and_time_out() {
    let (mut c, mut d) = established();
    events(&mut c);
    let a = c.call_function(Instant::ZERO, b"brew", b"coffee").unwrap();
    let b = c.call_function(Instant::ZERO, b"brew", b"tea").unwrap();
    let t = c.call_function(Instant::ZERO, b"sleep", b"").unwrap();
    let msgs = d.receive(&mut c, Instant::ZERO);
    assert_eq!(msgs.len(), 3);
    let reprs: Vec<_> = msgs.iter().map(|m| Repr::parse_bytes(m).unwrap()).collect();
    // Empty ACKs first, as the Core does.
    for r in &reprs {
        d.send(
            &mut c,
            Instant::ZERO,
            &Message::EmptyAck(spark_protocol::wire::message::EmptyAck {
                header: Header::ack(r.message_id),
            }),
        )
        .unwrap();
    }
    for (r, value) in [(&reprs[1], 7i32), (&reprs[0], -3)] {
        let id = d.next();
        let header = Header::separate(&Header::new(r.msg_type, r.message_id, r.token), id);
        let ret = spark_protocol::wire::message::FunctionReturn {
            header,
            code: Code::Changed,
            value: Some(value),
        };
        d.send(&mut c, Instant::ZERO, &Message::FunctionReturn(ret))
            .unwrap();
    }
    let ev = events(&mut c);
    assert_eq!(
        ev,
        vec![
            CloudEvent::FunctionReturned {
                request: b,
                result: Ok(7)
            },
            CloudEvent::FunctionReturned {
                request: a,
                result: Ok(-3)
            },
        ]
    );
    c.handle_timeout(Instant::from_secs(30));
    assert_eq!(
        events(&mut c),
        vec![CloudEvent::FunctionReturned {
            request: t,
            result: Err(RequestFailure::Timeout)
        }]
    );
    assert!(
        c.error().is_none(),
        "a call timeout does not end the session"
    );
}

#[test]
fn a_short_transmit_buffer_is_not_the_end_of_the_session() {
    let (mut c, mut d) = established();
    events(&mut c);
    let request = c.describe(Instant::ZERO).unwrap();
    let mut small = [0u8; 4];
    let e = c.poll_transmit(Instant::ZERO, &mut small).unwrap_err();
    let SessionError::InsufficientSize { required } = e else {
        panic!("{e:?}")
    };
    assert!(required > small.len() && required <= c.max_transmit_len());
    assert_eq!(c.error(), None);
    assert!(c.is_established());
    // The frame that did not fit is the one a right-sized buffer takes next.
    let mut right = vec![0u8; required];
    let n = c.poll_transmit(Instant::ZERO, &mut right).unwrap();
    assert_eq!(n, Some(required));
    // The session goes on: the device gets the Describe and its answer completes the request.
    let msgs = {
        let mut plain = vec![0; 2048];
        let got = d.dec.decode(&right, &mut plain).unwrap();
        plain.truncate(got.message.unwrap());
        vec![plain]
    };
    let r = Repr::parse_bytes(&msgs[0]).unwrap();
    let header = Header::piggybacked(&Header::new(r.msg_type, r.message_id, r.token));
    d.send(
        &mut c,
        Instant::ZERO,
        &Message::Reply(Reply {
            header,
            code: Code::Content,
            payload: b"{}",
        }),
    )
    .unwrap();
    assert_eq!(
        events(&mut c),
        vec![CloudEvent::Described {
            request,
            result: Ok(b"{}".to_vec())
        }]
    );
}

#[test]
fn variables_and_describe_and_signal() {
    let (mut c, mut d) = established();
    events(&mut c);
    let v = c
        .read_variable(Instant::ZERO, b"temperature", VarType::Double)
        .unwrap();
    let desc = c.describe(Instant::ZERO).unwrap();
    let sig = c.signal(Instant::ZERO, true).unwrap();
    let msgs = d.receive(&mut c, Instant::ZERO);
    let answers: [(Code, &[u8]); 3] = [
        (Code::Content, &21.5f64.to_le_bytes()),
        (Code::Content, br#"{"f":["brew"],"v":{"temperature":9}}"#),
        (Code::Changed, b""),
    ];
    for (m, (code, payload)) in msgs.iter().zip(answers) {
        let r = Repr::parse_bytes(m).unwrap();
        let header = Header::piggybacked(&Header::new(r.msg_type, r.message_id, r.token));
        d.send(
            &mut c,
            Instant::ZERO,
            &Message::Reply(Reply {
                header,
                code,
                payload,
            }),
        )
        .unwrap();
    }
    assert_eq!(
        events(&mut c),
        vec![
            CloudEvent::VariableRead {
                request: v,
                result: Ok(VariableValue::Double(21.5))
            },
            CloudEvent::Described {
                request: desc,
                result: Ok(br#"{"f":["brew"],"v":{"temperature":9}}"#.to_vec())
            },
            CloudEvent::Acknowledged {
                request: sig,
                result: Ok(())
            },
        ]
    );
    let v = c
        .read_variable(Instant::ZERO, b"missing", VarType::Int)
        .unwrap();
    let m = d.receive(&mut c, Instant::ZERO);
    let r = Repr::parse_bytes(&m[0]).unwrap();
    let header = Header::piggybacked(&Header::new(r.msg_type, r.message_id, r.token));
    d.send(
        &mut c,
        Instant::ZERO,
        &Message::Reply(Reply {
            header,
            code: Code::NotFound,
            payload: b"",
        }),
    )
    .unwrap();
    assert_eq!(
        events(&mut c),
        vec![CloudEvent::VariableRead {
            request: v,
            result: Err(RequestFailure::Rejected(Code::NotFound))
        }]
    );
}

#[test]
fn requests_fail_when_the_session_ends() {
    let (mut c, _d) = established();
    events(&mut c);
    let a = c.call_function(Instant::ZERO, b"f", b"").unwrap();
    c.handle_close(Instant::ZERO);
    assert_eq!(
        events(&mut c),
        vec![CloudEvent::FunctionReturned {
            request: a,
            result: Err(RequestFailure::SessionEnded(SessionError::TransportClosed))
        }]
    );
}

// ------------------------------------------------------------------------------------------
// OTA

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

fn reply_to(
    d: &mut Device,
    c: &mut Cloud,
    now: Instant,
    msg: &[u8],
    code: Code,
    payload: &[u8],
    separate: bool,
) {
    let r = Repr::parse_bytes(msg).unwrap();
    let req = Header::new(r.msg_type, r.message_id, r.token);
    let header = if separate {
        Header::separate(&req, d.next())
    } else {
        Header::piggybacked(&req)
    };
    d.send(
        c,
        now,
        &Message::Reply(Reply {
            header,
            code,
            payload,
        }),
    )
    .unwrap();
}

fn ota_events(c: &mut Cloud) -> Vec<OtaEvent> {
    events(c)
        .into_iter()
        .filter_map(|e| match e {
            CloudEvent::Ota { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

#[test]
fn ota_stop_and_wait_with_bad_and_missed_chunks() {
    let (mut c, mut d) = established();
    events(&mut c);
    let img = image(600);
    let now = Instant::ZERO;
    let _ = c
        .start_ota(now, img.clone(), OtaOptions::default())
        .unwrap();
    let begin = d.receive(&mut c, now);
    let r = Repr::parse_bytes(&begin[0]).unwrap();
    let params = spark_protocol::wire::message::UpdateBegin::parse(&r)
        .unwrap()
        .params
        .unwrap();
    assert_eq!(
        (params.chunk_size, params.file_size, params.flags),
        (256, 600, 0)
    );
    let rr = Repr::parse_bytes(&begin[0]).unwrap();
    let header = Header::separate(&Header::new(rr.msg_type, rr.message_id, rr.token), d.next());
    d.send(
        &mut c,
        now,
        &Message::UpdateReady(UpdateReady {
            header,
            flags: None,
        }),
    )
    .unwrap();
    let mut received = vec![Vec::new(); 3];
    let mut bad_once = true;
    let mut missed_once = true;
    loop {
        let msgs = d.receive(&mut c, now);
        let Some(m) = msgs.first() else { break };
        let r = Repr::parse_bytes(m).unwrap();
        if r.code == Code::Put {
            reply_to(&mut d, &mut c, now, m, Code::Changed, b"", false);
            break;
        }
        let chunk = Chunk::parse(&r).unwrap();
        assert!(chunk.crc_matches());
        assert_eq!(chunk.index, None);
        assert_eq!(
            chunk.data.len(),
            256,
            "every chunk, the last too, is padded to 256"
        );
        let n = received.iter().position(Vec::is_empty).unwrap();
        if n == 1 && bad_once {
            bad_once = false;
            reply_to(&mut d, &mut c, now, m, Code::BadRequest, b"", true);
            continue;
        }
        if n == 2 && missed_once {
            // The chunk is lost; the device asks for it again.
            missed_once = false;
            let id = d.next();
            d.send(
                &mut c,
                now,
                &Message::ChunkMissed(ChunkMissed {
                    header: Header::con(id),
                    indices: ChunkIndices::new(&[2]),
                }),
            )
            .unwrap();
            let ack = d.receive(&mut c, now);
            let a = Repr::parse_bytes(&ack[0]).unwrap();
            assert_eq!(
                (a.msg_type, a.code, a.message_id),
                (MessageType::Acknowledgement, Code::Empty, id)
            );
            let again = Chunk::parse(&Repr::parse_bytes(&ack[1]).unwrap())
                .unwrap()
                .data
                .to_vec();
            received[2] = again;
            reply_to(&mut d, &mut c, now, &ack[1], Code::Changed, b"", true);
            continue;
        }
        received[n] = chunk.data.to_vec();
        reply_to(&mut d, &mut c, now, m, Code::Changed, b"", true);
    }
    let got: Vec<u8> = received.concat();
    assert_eq!(&got[..600], &img[..]);
    assert!(got[600..].iter().all(|&b| b == 0), "zero padding");
    assert_eq!(crc32(&received[2]), crc32(&got[512..768]));
    let ev = ota_events(&mut c);
    let Some(OtaEvent::Finished(Ok(report))) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (report.chunks, report.chunks_resent, report.fast),
        (3, 2, false)
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        OtaEvent::Progress {
            bytes_sent: 1280,
            ..
        }
    )));
}

#[test]
fn ota_fast_resends_what_the_device_missed() {
    let (mut c, mut d) = established();
    events(&mut c);
    let img = image(1000);
    let now = Instant::ZERO;
    let _ = c
        .start_ota(now, img.clone(), OtaOptions::fast().with_chunk_size(128))
        .unwrap();
    let begin = d.receive(&mut c, now);
    let r = Repr::parse_bytes(&begin[0]).unwrap();
    let header = Header::separate(&Header::new(r.msg_type, r.message_id, r.token), d.next());
    d.send(
        &mut c,
        now,
        &Message::UpdateReady(UpdateReady {
            header,
            flags: Some(1),
        }),
    )
    .unwrap();
    let msgs = d.receive(&mut c, now);
    assert_eq!(msgs.len(), 9, "8 chunks back to back, then UpdateDone");
    let mut slots = vec![None; 8];
    for m in &msgs[..8] {
        let ch = Chunk::parse(&Repr::parse_bytes(m).unwrap()).unwrap();
        let i = usize::from(ch.index.unwrap());
        if i != 3 && i != 5 {
            slots[i] = Some(ch.data.to_vec());
        }
    }
    assert_eq!(Repr::parse_bytes(&msgs[8]).unwrap().code, Code::Put);
    reply_to(&mut d, &mut c, now, &msgs[8], Code::BadRequest, b"", false);
    let id = d.next();
    d.send(
        &mut c,
        now,
        &Message::ChunkMissed(ChunkMissed {
            header: Header::con(id),
            indices: ChunkIndices::new(&[3, 5]),
        }),
    )
    .unwrap();
    let again = d.receive(&mut c, now);
    assert_eq!(again.len(), 4, "ACK, chunks 3 and 5, UpdateDone");
    for m in &again[1..3] {
        let ch = Chunk::parse(&Repr::parse_bytes(m).unwrap()).unwrap();
        assert!(ch.crc_matches());
        slots[usize::from(ch.index.unwrap())] = Some(ch.data.to_vec());
    }
    reply_to(&mut d, &mut c, now, &again[3], Code::Changed, b"", false);
    let got: Vec<u8> = slots
        .into_iter()
        .map(Option::unwrap)
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(&got[..1000], &img[..]);
    let ev = ota_events(&mut c);
    assert!(matches!(
        ev.first(),
        Some(OtaEvent::Ready {
            fast: true,
            chunk_size: 128
        })
    ));
    let Some(OtaEvent::Finished(Ok(report))) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!((report.chunks_resent, report.fast), (2, true));
}

fn ready_fast(c: &mut Cloud, d: &mut Device, img: Vec<u8>, opts: OtaOptions) -> Vec<Vec<u8>> {
    let _ = c.start_ota(Instant::ZERO, img, opts).unwrap();
    let begin = d.receive(c, Instant::ZERO);
    let r = Repr::parse_bytes(&begin[0]).unwrap();
    let header = Header::separate(&Header::new(r.msg_type, r.message_id, r.token), d.next());
    d.send(
        c,
        Instant::ZERO,
        &Message::UpdateReady(UpdateReady {
            header,
            flags: Some(1),
        }),
    )
    .unwrap();
    d.receive(c, Instant::ZERO)
}

#[test]
fn ota_too_many_missed_chunks_fails() {
    let (mut c, mut d) = established();
    events(&mut c);
    let _ = ready_fast(
        &mut c,
        &mut d,
        image(4096),
        OtaOptions::fast().with_chunk_size(256),
    );
    let list: Vec<u16> = (0..11).collect();
    let id = d.next();
    d.send(
        &mut c,
        Instant::ZERO,
        &Message::ChunkMissed(ChunkMissed {
            header: Header::con(id),
            indices: ChunkIndices::new(&list),
        }),
    )
    .unwrap();
    let ev = ota_events(&mut c);
    assert_eq!(
        ev.last(),
        Some(&OtaEvent::Finished(Err(OtaError::TooManyMissedChunks {
            count: 11
        })))
    );
    assert!(c.error().is_none());
    // A new transfer may start.
    assert!(
        c.start_ota(Instant::ZERO, image(10), OtaOptions::default())
            .is_ok()
    );
}

#[test]
fn ota_bad_chunk_index_fails() {
    let (mut c, mut d) = established();
    events(&mut c);
    let _ = ready_fast(&mut c, &mut d, image(300), OtaOptions::fast());
    let id = d.next();
    d.send(
        &mut c,
        Instant::ZERO,
        &Message::ChunkMissed(ChunkMissed {
            header: Header::con(id),
            indices: ChunkIndices::new(&[2]),
        }),
    )
    .unwrap();
    assert_eq!(
        ota_events(&mut c).last(),
        Some(&OtaEvent::Finished(Err(OtaError::BadChunkIndex {
            index: 2,
            chunks: 2
        })))
    );
}

#[test]
fn ota_update_ready_timeout_after_four_tries() {
    let mut cfg = CloudConfig::default();
    cfg.idle_timeout = Duration::from_secs(10_000);
    let mut c = cloud(cfg);
    let mut d = connect(&mut c, &[]);
    events(&mut c);
    let _ = c
        .start_ota(Instant::ZERO, image(100), OtaOptions::default())
        .unwrap();
    let mut payloads = Vec::new();
    let mut now = Instant::ZERO;
    for _ in 0..4 {
        let m = d.receive(&mut c, now);
        assert_eq!(m.len(), 1);
        payloads.push(Repr::parse_bytes(&m[0]).unwrap().payload.map(<[u8]>::len));
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
    }
    assert_eq!(payloads, vec![Some(12), Some(12), Some(12), None]);
    assert_eq!(now, Instant::from_secs(6 * 3 + 90));
    assert_eq!(
        ota_events(&mut c),
        vec![OtaEvent::Finished(Err(OtaError::ReadyTimeout))]
    );
}

#[test]
fn ota_watchdog_and_done_timeout() {
    let mut cfg = CloudConfig::default();
    cfg.idle_timeout = Duration::from_secs(10_000);
    let mut c = cloud(cfg);
    let mut d = connect(&mut c, &[]);
    events(&mut c);
    // Stop-and-wait with a device that never answers a chunk: the watchdog ends it.
    let _ = c
        .start_ota(Instant::ZERO, image(1000), OtaOptions::default())
        .unwrap();
    let m = d.receive(&mut c, Instant::ZERO);
    reply_to(
        &mut d,
        &mut c,
        Instant::ZERO,
        &m[0],
        Code::Changed,
        b"",
        true,
    );
    assert_eq!(d.receive(&mut c, Instant::ZERO).len(), 1);
    assert_eq!(c.poll_timeout(), Some(Instant::from_secs(600)));
    c.handle_timeout(Instant::from_secs(600));
    assert_eq!(
        ota_events(&mut c).last(),
        Some(&OtaEvent::Finished(Err(OtaError::Watchdog)))
    );

    // Fast: UpdateDone never answered.
    let _ = ready_fast(&mut c, &mut d, image(300), OtaOptions::fast());
    c.handle_timeout(Instant::from_secs(60));
    assert_eq!(
        ota_events(&mut c).last(),
        Some(&OtaEvent::Finished(Err(OtaError::DoneTimeout)))
    );
}

#[test]
fn ota_refused_by_the_device() {
    let (mut c, mut d) = established();
    events(&mut c);
    let _ = c
        .start_ota(Instant::ZERO, image(100), OtaOptions::default())
        .unwrap();
    let m = d.receive(&mut c, Instant::ZERO);
    reply_to(
        &mut d,
        &mut c,
        Instant::ZERO,
        &m[0],
        Code::ServiceUnavailable,
        b"",
        false,
    );
    assert_eq!(
        ota_events(&mut c),
        vec![OtaEvent::Finished(Err(OtaError::Rejected(
            Code::ServiceUnavailable
        )))]
    );
}

/// A script of device messages, delivered whole or in arbitrary pieces.
fn scripted(cut: &[usize]) -> (Vec<CloudEvent>, Vec<Vec<u8>>) {
    let (mut c, mut d) = established();
    let _call = c.call_function(Instant::ZERO, b"f", b"x").unwrap();
    let out = d.receive(&mut c, Instant::ZERO);
    let r = Repr::parse_bytes(&out[0]).unwrap();
    let mut wire = Vec::new();
    let id = d.next();
    wire.extend(d.seal(&Message::Ping(Ping {
        header: Header::con(id),
    })));
    let id = d.next();
    wire.extend(d.seal(&Message::Event(Event::publish(
        id,
        Visibility::Public,
        b"e",
        Some(b"d"),
        60,
    ))));
    let id = d.next();
    let header = Header::separate(&Header::new(r.msg_type, r.message_id, r.token), id);
    wire.extend(d.seal(&Message::FunctionReturn(
        spark_protocol::wire::message::FunctionReturn {
            header,
            code: Code::Changed,
            value: Some(41),
        },
    )));
    let mut rest = &wire[..];
    for &n in cut {
        let n = n.min(rest.len());
        c.handle_input(Instant::ZERO, &rest[..n]).unwrap();
        rest = &rest[n..];
    }
    c.handle_input(Instant::ZERO, rest).unwrap();
    (events(&mut c), d.receive(&mut c, Instant::ZERO))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, rng_seed: proptest::test_runner::RngSeed::Fixed(5), ..ProptestConfig::default() })]
    #[test]
    fn any_chunking_gives_the_same_result(cut in proptest::collection::vec(0usize..40, 0..20)) {
        let whole = scripted(&[]);
        prop_assert_eq!(whole.0.len(), 3);
        prop_assert_eq!(scripted(&cut), whole);
    }
}

#[test]
fn key_change_is_acknowledged_by_key_changed() {
    let (mut c, mut d) = established();
    events(&mut c);
    let k = c.change_key(Instant::ZERO, &[0xab; 64]).unwrap();
    let m = d.receive(&mut c, Instant::ZERO);
    let r = Repr::parse_bytes(&m[0]).unwrap();
    assert_eq!((r.code, r.payload.map(<[u8]>::len)), (Code::Put, Some(64)));
    let header = Header::separate(&Header::new(r.msg_type, r.message_id, r.token), d.next());
    d.send(
        &mut c,
        Instant::ZERO,
        &Message::KeyChanged(spark_protocol::wire::message::KeyChanged { header }),
    )
    .unwrap();
    assert_eq!(
        events(&mut c),
        vec![CloudEvent::Acknowledged {
            request: k,
            result: Ok(())
        }]
    );
}

#[test]
fn tokens_run_out_with_255_requests_in_flight() {
    let (mut c, mut d) = established();
    let mut tokens = std::collections::BTreeSet::new();
    for _ in 0..255 {
        let _ = c.call_function(Instant::ZERO, b"f", b"").unwrap();
    }
    assert_eq!(
        c.call_function(Instant::ZERO, b"f", b""),
        Err(spark_protocol::session::cloud::RequestError::TooManyInFlight)
    );
    for m in d.receive(&mut c, Instant::ZERO) {
        tokens.insert(Repr::parse_bytes(&m).unwrap().token.first().unwrap());
    }
    assert_eq!(tokens.len(), 255, "every call in flight has its own token");
    assert!(!tokens.contains(&0));
}

#[test]
fn a_message_before_hello_is_refused() {
    let k = keys();
    let mut c = cloud(CloudConfig::default());
    let mut buf = vec![0; 1024];
    let n = c.poll_transmit(Instant::ZERO, &mut buf).unwrap().unwrap();
    let nonce = Nonce(buf[..n].try_into().unwrap());
    let mut creds = [0u8; 256];
    encrypt_device_credentials(&k.server_pub, &mut rng(1), &nonce, &ID, None, &mut creds).unwrap();
    c.handle_input(Instant::ZERO, &creds).unwrap();
    let n = c.poll_transmit(Instant::ZERO, &mut buf).unwrap().unwrap();
    let session = open_session_key(&k.device, &k.server_pub, &mut rng(2), &buf[..n]).unwrap();
    let mut d = Device {
        enc: session.encoder(),
        dec: session.decoder(vec![0; 2048]),
        id: 1,
    };
    assert!(matches!(
        d.send(
            &mut c,
            Instant::ZERO,
            &Message::Ping(Ping {
                header: Header::con(2)
            })
        ),
        Err(SessionError::Unexpected(_))
    ));
    assert!(c.describe(Instant::ZERO).is_err());
}

#[test]
fn oversized_and_malformed_input_end_the_session() {
    let (mut c, _d) = established();
    assert_eq!(
        c.handle_input(Instant::ZERO, &[0xff, 0xf0]),
        Err(SessionError::Oversized {
            len: 0xfff0,
            max: 1184
        })
    );
    let (mut c, mut d) = established();
    let frame = {
        let mut out = vec![0; 64];
        let n = d.enc.seal(&[0x90, 0x01], &mut out).unwrap();
        out.truncate(n);
        out
    };
    assert!(matches!(
        c.handle_input(Instant::ZERO, &frame),
        Err(SessionError::Malformed(_))
    ));
    assert!(matches!(
        c.poll_transmit(Instant::ZERO, &mut [0; 64]),
        Err(SessionError::Malformed(_))
    ));
}

#[test]
fn a_refused_call_and_a_subscription() {
    let (mut c, mut d) = established();
    events(&mut c);
    let a = c.call_function(Instant::ZERO, b"nope", b"").unwrap();
    let m = d.receive(&mut c, Instant::ZERO);
    let r = Repr::parse_bytes(&m[0]).unwrap();
    let header = Header::piggybacked(&Header::new(r.msg_type, r.message_id, r.token));
    d.send(
        &mut c,
        Instant::ZERO,
        &Message::Reply(Reply {
            header,
            code: Code::NotFound,
            payload: b"",
        }),
    )
    .unwrap();
    assert_eq!(
        events(&mut c),
        vec![CloudEvent::FunctionReturned {
            request: a,
            result: Err(RequestFailure::Rejected(Code::NotFound))
        }]
    );

    // A named subscription is acknowledged with 0.00 and reported.
    let id = d.next();
    let mut sub = vec![0x40, 0x01, (id >> 8) as u8, id as u8, 0xb1, b'e', 0x04];
    sub.extend_from_slice(b"temp");
    let frame = {
        let mut out = vec![0; 64];
        let n = d.enc.seal(&sub, &mut out).unwrap();
        out.truncate(n);
        out
    };
    c.handle_input(Instant::ZERO, &frame).unwrap();
    let ack = d.receive(&mut c, Instant::ZERO);
    let r = Repr::parse_bytes(&ack[0]).unwrap();
    assert_eq!(
        (r.msg_type, r.code, r.message_id),
        (MessageType::Acknowledgement, Code::Empty, id)
    );
    let ev = events(&mut c);
    let [CloudEvent::Subscribed(s)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(&s.filter[..], b"temp");
}

#[test]
fn credentials_and_hello_in_one_read() {
    let k = keys();
    let mut c = cloud(CloudConfig::default());
    let mut buf = vec![0; 1024];
    let n = c.poll_transmit(Instant::ZERO, &mut buf).unwrap().unwrap();
    let nonce = Nonce(buf[..n].try_into().unwrap());
    let mut input = vec![0u8; 256];
    encrypt_device_credentials(&k.server_pub, &mut rng(1), &nonce, &ID, None, &mut input).unwrap();
    // The reply is not known before the cloud draws its session key, so feed the credentials,
    // then hand the Hello together with a ping in one read.
    c.handle_input(Instant::ZERO, &input).unwrap();
    let n = c.poll_transmit(Instant::ZERO, &mut buf).unwrap().unwrap();
    let session = open_session_key(&k.device, &k.server_pub, &mut rng(2), &buf[..n]).unwrap();
    let mut d = Device {
        enc: session.encoder(),
        dec: session.decoder(vec![0; 2048]),
        id: 0x10,
    };
    let mut wire = d.seal(&Message::Hello(spark_protocol::wire::message::Hello {
        header: Header::non(0x10),
        payload: spark_protocol::wire::hello::HelloPayload::None,
    }));
    let id = d.next();
    wire.extend(d.seal(&Message::Ping(Ping {
        header: Header::con(id),
    })));
    c.handle_input(Instant::ZERO, &wire).unwrap();
    let out = d.receive(&mut c, Instant::ZERO);
    assert_eq!(out.len(), 2, "the server's Hello, then the ping's ACK");
    assert_eq!(Repr::parse_bytes(&out[1]).unwrap().message_id, id);
    assert!(matches!(events(&mut c)[..], [CloudEvent::Connected(_)]));
}

#[test]
fn frames_split_across_inputs_and_idle_gaps_keep_the_channel_in_step() {
    // Between bursts the cloud keeps only its key and IVs and rebuilds its ciphers: frames cut at every byte,
    // several frames in one input, and answers interleaved with input must all stay in step.
    let (mut c, mut d) = established();
    events(&mut c);
    let mut stream = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let id = d.next();
        ids.push(id);
        let data = [b'0' + i];
        let ev = Event::publish(id, Visibility::Public, b"split", Some(&data), 60);
        stream.extend(d.seal(&Message::Event(ev)));
    }
    // The first three frames one byte at a time, draining the cloud's answers after each byte; the rest at once.
    let cut = stream.len() * 3 / 5;
    let mut acks = Vec::new();
    for byte in &stream[..cut] {
        c.handle_input(Instant::ZERO, core::slice::from_ref(byte))
            .unwrap();
        acks.extend(d.receive(&mut c, Instant::ZERO));
    }
    c.handle_input(Instant::ZERO, &stream[cut..]).unwrap();
    acks.extend(d.receive(&mut c, Instant::ZERO));
    let acked: Vec<u16> = acks
        .iter()
        .map(|m| Repr::parse_bytes(m).unwrap().message_id)
        .collect();
    assert_eq!(acked, ids);
    let data: Vec<Vec<u8>> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            CloudEvent::Published(p) => p.data,
            _ => None,
        })
        .collect();
    assert_eq!(data, (0..5u8).map(|i| vec![b'0' + i]).collect::<Vec<_>>());
    // And the device still reads what the cloud sends after the gap.
    let id = d.next();
    let ev = Event::publish(id, Visibility::Public, b"after", None, 60);
    d.send(&mut c, Instant::ZERO, &Message::Event(ev)).unwrap();
    let msgs = d.receive(&mut c, Instant::ZERO);
    assert_eq!(Repr::parse_bytes(&msgs[0]).unwrap().message_id, id);
}

/// The events a session handed out: owned ones from the event queue, and views (made owned) from
/// `poll_published`, in the order the device sent them.
fn published(c: &mut Cloud) -> Vec<spark_protocol::session::cloud::PublishedEvent> {
    let mut out: Vec<_> = events(c)
        .into_iter()
        .filter_map(|e| match e {
            CloudEvent::Published(p) => Some(p),
            _ => None,
        })
        .collect();
    while let Some(view) = c.poll_published() {
        out.push(view.to_event());
    }
    out
}

/// An event's name, data, visibility and TTL.
type Shape<'a> = (&'a [u8], Option<&'a [u8]>, Visibility, u32);

/// Events of every shape: segmented names, data present, empty and absent, public and private,
/// several TTLs, and one sent as an acknowledgement (which is not acknowledged back).
fn varied_events(d: &mut Device) -> (Vec<u8>, Vec<u16>) {
    let mut stream = Vec::new();
    let mut acked = Vec::new();
    let shapes: [Shape<'_>; 6] = [
        (b"temp/kitchen", Some(b"21.5"), Visibility::Private, 120),
        (b"motion", None, Visibility::Public, 60),
        (b"a/b/c/d", Some(b""), Visibility::Public, 0),
        (b"x", Some(&[b'q'; 200]), Visibility::Private, 16_777_215),
        (
            b"quote\"and\\slash",
            Some(b"line\nfeed"),
            Visibility::Public,
            5,
        ),
        (b"last", Some(b"1"), Visibility::Private, 60),
    ];
    for (i, (name, data, visibility, ttl)) in shapes.into_iter().enumerate() {
        // An acknowledgement does not count in the device's message ids.
        let id = if i == 2 { d.id } else { d.next() };
        let mut ev = Event::publish(id, visibility, name, data, ttl);
        if i == 2 {
            ev.header = Header::new(MessageType::Acknowledgement, id, ev.header.token);
        } else {
            acked.push(id);
        }
        stream.extend(d.seal(&Message::Event(ev)));
    }
    (stream, acked)
}

#[test]
fn published_views_give_what_the_owned_events_give() {
    // One session hands out owned events, the others views (one keeping its buffers between inputs); the same
    // frames, cut the same way, give the same events in the same order and the same acknowledgements.
    let run = |views: bool, keep: bool| {
        let (mut c, mut d) = established();
        events(&mut c);
        c.set_published_views(views);
        c.keep_buffers(keep);
        let (stream, ids) = varied_events(&mut d);
        let mut acks = Vec::new();
        let mut got = Vec::new();
        for piece in stream.chunks(37) {
            c.handle_input(Instant::ZERO, piece).unwrap();
            acks.extend(d.receive(&mut c, Instant::ZERO));
            got.extend(published(&mut c));
        }
        c.keep_buffers(false);
        let acked: Vec<u16> = acks
            .iter()
            .map(|m| Repr::parse_bytes(m).unwrap().message_id)
            .collect();
        assert_eq!(acked, ids, "views {views}, keep {keep}");
        if views {
            assert!(events(&mut c).is_empty(), "no owned event with views on");
        }
        got
    };
    let owned = run(false, false);
    assert_eq!(owned.len(), 6);
    assert_eq!(
        (
            &owned[0].name[..],
            owned[0].data.as_deref(),
            owned[0].ttl,
            owned[0].private
        ),
        (&b"temp/kitchen"[..], Some(&b"21.5"[..]), 120, true)
    );
    assert_eq!(owned[1].data, None);
    assert_eq!(owned[2].data.as_deref(), Some(&b""[..]));
    assert_eq!(run(true, false), owned);
    assert_eq!(run(true, true), owned);
    assert_eq!(run(false, true), owned);
}

#[test]
fn views_keep_their_place_among_the_other_events() {
    // In one read the device publishes, subscribes, publishes again and subscribes again. A caller that takes one
    // event from the queue and then every view (as the local cloud's device task does) must meet them in the
    // order they were sent: a subscription handled before an event published ahead of it would hand the device
    // its own earlier event, and one handled after an event published behind it would miss the answer to it.
    let subscribe = |d: &mut Device, filter: &[u8]| {
        let id = d.next();
        let mut sub = vec![0x40, 0x01, (id >> 8) as u8, id as u8, 0xb1, b'e'];
        sub.push(u8::try_from(filter.len()).unwrap());
        sub.extend_from_slice(filter);
        let mut out = vec![0; 64];
        let n = d.enc.seal(&sub, &mut out).unwrap();
        out.truncate(n);
        out
    };
    let publish = |d: &mut Device, name: &[u8]| {
        let id = d.next();
        d.seal(&Message::Event(Event::publish(
            id,
            Visibility::Private,
            name,
            Some(b"1"),
            60,
        )))
    };
    let order = |views: bool, keep: bool| {
        let (mut c, mut d) = established();
        events(&mut c);
        c.set_published_views(views);
        c.keep_buffers(keep);
        let mut read = publish(&mut d, b"one");
        read.extend(subscribe(&mut d, b"sub1"));
        read.extend(publish(&mut d, b"two"));
        read.extend(publish(&mut d, b"three"));
        read.extend(subscribe(&mut d, b"sub2"));
        read.extend(publish(&mut d, b"four"));
        c.handle_input(Instant::ZERO, &read).unwrap();
        let mut seen = Vec::new();
        loop {
            let event = c.poll_event();
            match &event {
                Some(CloudEvent::Published(p)) => {
                    seen.push(String::from_utf8(p.name.clone()).unwrap())
                }
                Some(CloudEvent::Subscribed(s)) => {
                    seen.push(format!("+{}", String::from_utf8(s.filter.clone()).unwrap()));
                }
                Some(other) => panic!("{other:?}"),
                None => {}
            }
            let mut any_view = false;
            while let Some(view) = c.poll_published() {
                any_view = true;
                seen.push(String::from_utf8(view.name.to_vec()).unwrap());
            }
            if event.is_none() && !any_view {
                return seen;
            }
        }
    };
    let sent = ["one", "+sub1", "two", "three", "+sub2", "four"];
    assert_eq!(order(false, false), sent);
    assert_eq!(order(true, false), sent);
    assert_eq!(order(true, true), sent);
}

#[test]
fn malformed_events_are_refused_the_same_with_views() {
    // Event messages the wire layer refuses: each ends the session with the same error whether events are
    // handed out owned or as views, and no view is made of it.
    let candidates: [&[u8]; 4] = [
        // Uri-Path `e` and a Max-Age (TTL) of five bytes.
        b"\x50\x02\x00\x00\xb1e\x01n\x35\x01\x02\x03\x04\x05",
        // A name segment longer than the message.
        b"\x50\x02\x00\x00\xb1e\x0dn",
        // An option delta past the end.
        b"\x50\x02\x00\x00\xb1e\x01n\xd1",
        // A payload marker with nothing after it.
        b"\x50\x02\x00\x00\xb1e\x01n\xff",
    ];
    let mut refused = 0;
    for raw in candidates {
        let outcome = |views: bool| {
            let (mut c, mut d) = established();
            events(&mut c);
            c.set_published_views(views);
            let mut msg = raw.to_vec();
            msg[2..4].copy_from_slice(&d.next().to_be_bytes());
            let mut out = vec![0; 128];
            let n = d.enc.seal(&msg, &mut out).unwrap();
            let result = c.handle_input(Instant::ZERO, &out[..n]);
            (result, published(&mut c).len(), c.error())
        };
        let owned = outcome(false);
        assert_eq!(outcome(true), owned, "{raw:02x?}");
        if matches!(owned.0, Err(SessionError::Malformed(_))) {
            assert_eq!(owned.1, 0);
            refused += 1;
        }
    }
    assert!(refused >= 2, "at least two candidates are malformed events");
}
