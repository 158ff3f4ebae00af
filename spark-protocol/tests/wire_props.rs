//! Property tests of the wire layer, on a fixed seed so a run is reproducible:
//!
//! - any byte string: parsing, classifying and decoding never panic, and whatever parses re-emits
//!   to the very same bytes (the encoding is canonical);
//! - any codec `Repr`: parse(emit(x)) == x, with `buffer_len` exact;
//! - any typed message of the set: parse(emit(x)) == x, and re-emitting the parsed message gives the
//!   same bytes;
//! - descriptions: any bytes read without panic, and what the writer writes the reader reads.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use spark_protocol::wire::describe::{Description, DescriptionWriter, VarType};
use spark_protocol::wire::hello::{
    CoreHello, ExtendedHello, HelloFlags, HelloLimits, HelloPayload,
};
use spark_protocol::wire::message::*;
use spark_protocol::wire::ota::{ChunkIndices, UpdateParams};
use spark_protocol::wire::{
    CoapOption, Code, Error, Message, MessageKind, MessageType, OptionNumber, Options, Packet,
    Repr, Role, Token, classify, classify_repr,
};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5a4b_2014),
        failure_persistence: None,
        ..Config::default()
    }
}

const ALL_KINDS: &[MessageKind] = &[
    MessageKind::Hello,
    MessageKind::Describe,
    MessageKind::DescribeReturn,
    MessageKind::FunctionCall,
    MessageKind::FunctionReturn,
    MessageKind::VariableRequest,
    MessageKind::VariableValue(VarType::Bool),
    MessageKind::VariableValue(VarType::Int),
    MessageKind::VariableValue(VarType::String),
    MessageKind::VariableValue(VarType::Null),
    MessageKind::VariableValue(VarType::Double),
    MessageKind::Event,
    MessageKind::Subscribe,
    MessageKind::GetTime,
    MessageKind::Time,
    MessageKind::UpdateBegin,
    MessageKind::UpdateReady,
    MessageKind::Chunk,
    MessageKind::ChunkReceived,
    MessageKind::ChunkMissed,
    MessageKind::UpdateDone,
    MessageKind::SignalStart,
    MessageKind::SignalStop,
    MessageKind::KeyChange,
    MessageKind::KeyChanged,
    MessageKind::Reply,
    MessageKind::Ping,
    MessageKind::EmptyAck,
    MessageKind::Goodbye,
    MessageKind::Response,
    MessageKind::Unknown,
];

/// Byte strings that look like Spark messages often enough to reach deep into the decoders.
fn spark_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        prop::sample::select(vec![0x40u8, 0x41, 0x50, 0x51, 0x60, 0x61, 0x70, 0x48, 0x5f]),
        prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x03, 0x04, 0x44, 0x45, 0x80, 0xa3]),
        any::<u16>(),
        vec(any::<u8>(), 0..2),
        prop::sample::select(b"hdfvueEtcskx?".to_vec()),
    );
    let tail = vec(
        prop_oneof![
            Just(vec![0xffu8]),
            vec(any::<u8>(), 0..4),
            (0u8..16, vec(any::<u8>(), 0..20)).prop_map(|(n, mut v)| {
                v.insert(0, n);
                v
            }),
            (any::<u8>(), any::<u8>()).prop_map(|(a, b)| vec![0x0d, a, b]),
            Just(vec![0x41, 0x01]),
            Just(vec![0x33, 0x00, 0x00, 0x3c]),
        ],
        0..6,
    );
    (header, tail).prop_map(|((b0, code, id, token, letter), tail)| {
        let b0 = (b0 & 0xf0) | token.len() as u8;
        let mut v = vec![b0, code];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&token);
        v.extend_from_slice(&[0xb1, letter]);
        for t in tail {
            v.extend(t);
        }
        v
    })
}

fn exercise(bytes: &[u8]) {
    for role in [Role::Device, Role::Cloud] {
        let _ = classify(&Packet::new_unchecked(bytes), role);
    }
    let packet = Packet::new_checked(bytes);
    if let Ok(p) = &packet {
        let _ = (
            p.version(),
            p.msg_type(),
            p.code(),
            p.message_id(),
            p.token(),
        );
        let _ = (p.options().iter().count(), p.payload());
    }
    match Repr::parse_bytes(bytes) {
        Ok(repr) => {
            assert!(packet.is_ok());
            for role in [Role::Device, Role::Cloud] {
                assert_eq!(
                    classify_repr(&repr, role),
                    classify(&Packet::new_unchecked(bytes), role)
                );
            }
            let mut out = vec![0; repr.buffer_len()];
            assert_eq!(repr.emit(&mut out), Ok(bytes.len()));
            assert_eq!(out, bytes);
            for &kind in ALL_KINDS {
                if let Ok(msg) = Message::parse(&repr, kind) {
                    let mut out = vec![0; msg.buffer_len()];
                    let n = msg.emit(&mut out).unwrap();
                    // The typed message re-reads as itself.
                    let again = Repr::parse_bytes(&out[..n]).unwrap();
                    assert_eq!(Message::parse(&again, msg.kind()).unwrap(), msg);
                }
            }
        }
        Err(
            Error::Truncated
            | Error::Version(_)
            | Error::TokenLength(_)
            | Error::ReservedOptionNibble
            | Error::OptionNumber,
        ) => {}
        Err(e) => panic!("unexpected parse error {e:?}"),
    }
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn any_bytes_never_panic(bytes in vec(any::<u8>(), 0..64)) {
        exercise(&bytes);
    }

    #[test]
    fn spark_like_bytes_never_panic(bytes in spark_like_bytes()) {
        exercise(&bytes);
    }
}

#[derive(Debug, Clone)]
struct OwnedRepr {
    msg_type: u8,
    code: u8,
    id: u16,
    token: Vec<u8>,
    options: Vec<(u16, Vec<u8>)>,
    payload: Option<Vec<u8>>,
}

fn option_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..20),
        1 => vec(any::<u8>(), 260..280),
        1 => vec(any::<u8>(), 0..700),
    ]
}

fn owned_repr() -> impl Strategy<Value = OwnedRepr> {
    (
        0u8..4,
        any::<u8>(),
        any::<u16>(),
        vec(any::<u8>(), 0..=8),
        vec(
            (
                prop_oneof![0u16..20, 0u16..300, any::<u16>()],
                option_value(),
            ),
            0..6,
        ),
        prop::option::of(vec(any::<u8>(), 0..40)),
    )
        .prop_map(|(msg_type, code, id, token, mut options, payload)| {
            options.sort_by_key(|o| o.0);
            OwnedRepr {
                msg_type,
                code,
                id,
                token,
                options,
                payload,
            }
        })
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn repr_round_trip(o in owned_repr()) {
        let list: Vec<CoapOption<'_>> = o
            .options
            .iter()
            .map(|(n, v)| CoapOption::new(OptionNumber::from(*n), v))
            .collect();
        let repr = Repr {
            msg_type: MessageType::from_bits(o.msg_type),
            code: Code::from(o.code),
            message_id: o.id,
            token: Token::new(&o.token).unwrap(),
            options: Options::new(&list).unwrap(),
            payload: o.payload.as_deref(),
        };
        let mut out = vec![0; repr.buffer_len()];
        let n = repr.emit(&mut out).unwrap();
        prop_assert_eq!(n, out.len());
        let back = Repr::parse_bytes(&out).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert!(back.options.iter().eq(list.iter().copied()));
        if n > 0 {
            prop_assert_eq!(
                repr.emit(&mut out[..n - 1]),
                Err(Error::InsufficientSize { required: n })
            );
        }
    }
}

/// Owned material from which any typed message is built.
#[derive(Debug, Clone)]
struct Input {
    select: u8,
    msg_type: u8,
    id: u16,
    token: Vec<u8>,
    a: Vec<u8>,
    b: Vec<u8>,
    n: u32,
    m: u32,
    flag: bool,
    opt: Option<u8>,
    list: Vec<u16>,
    code: u8,
}

/// Names with slashes and empty segments, to exercise the split form.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(prop::sample::select(b"ab/-_9".to_vec()), 0..30),
        vec(any::<u8>(), 0..300),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    (
        (any::<u8>(), 0u8..4, any::<u16>(), vec(any::<u8>(), 0..=8)),
        (name(), vec(any::<u8>(), 0..80)),
        (
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            any::<Option<u8>>(),
        ),
        (vec(any::<u16>(), 0..8), any::<u8>()),
    )
        .prop_map(
            |((select, msg_type, id, token), (a, b), (n, m, flag, opt), (list, code))| Input {
                select,
                msg_type,
                id,
                token,
                a,
                b,
                n,
                m,
                flag,
                opt,
                list,
                code,
            },
        )
}

/// A response code (class 2 to 7).
fn response_code(code: u8) -> Code {
    Code::from(code | 0x40)
}

fn build(i: &Input) -> Message<'_> {
    let header = Header::new(
        MessageType::from_bits(i.msg_type),
        i.id,
        Token::new(&i.token).unwrap(),
    );
    let bytes12: [u8; 12] = core::array::from_fn(|k| i.b.get(k).copied().unwrap_or(k as u8));
    match i.select % 26 {
        0 => {
            let payload = match i.n % 6 {
                0 => HelloPayload::None,
                1 => HelloPayload::Product {
                    product_id: i.n as u16,
                    firmware_version: i.m as u16,
                },
                2 => HelloPayload::Core(CoreHello {
                    product_id: i.n as u16,
                    firmware_version: i.m as u16,
                    flags: HelloFlags(i.code.into()),
                }),
                3 => HelloPayload::DeviceId(bytes12),
                4 => HelloPayload::Extended(ExtendedHello {
                    product_id: i.n as u16,
                    firmware_version: (i.n >> 16) as u16,
                    flags: HelloFlags(i.m as u16),
                    platform_id: (i.m >> 16) as u16,
                    device_id: (i.flag || i.opt.is_some()).then_some(bytes12),
                    limits: i.opt.map(|o| HelloLimits {
                        system_version: o.into(),
                        max_message_size: i.n as u16,
                        max_binary_size: i.m,
                        ota_chunk_size: i.code.into(),
                    }),
                }),
                _ if HelloPayload::Other(&i.b).validate().is_ok() => HelloPayload::Other(&i.b),
                _ => HelloPayload::None,
            };
            Hello { header, payload }.into()
        }
        1 => Describe {
            header,
            flags: i.opt,
        }
        .into(),
        2 => DescribeReturn {
            header,
            code: Code::from(0x40 | (i.code & 0x1f)),
            description: &i.b,
        }
        .into(),
        3 => FunctionCall {
            header,
            name: &i.a,
            argument: i.flag.then_some(&i.b[..]),
        }
        .into(),
        4 => FunctionReturn {
            header,
            code: response_code(i.code),
            value: i.flag.then_some(i.n as i32),
        }
        .into(),
        5 => VariableRequest { header, name: &i.a }.into(),
        6 => {
            let value = match i.m % 5 {
                0 => Value::Bool(i.flag),
                1 => Value::Int(i.n as i32),
                2 => Value::Double(f64::from_bits(u64::from(i.n) << 32 | u64::from(i.m))),
                3 => Value::String(&i.b),
                _ => Value::Null,
            };
            VariableValue {
                header,
                code: response_code(i.code),
                value,
            }
            .into()
        }
        7 | 8 => {
            let visibility = if i.flag {
                Visibility::Public
            } else {
                Visibility::Private
            };
            let data = i.opt.map(|o| &i.b[..usize::from(o).min(i.b.len())]);
            let mut event = if i.select % 26 == 7 {
                Event::publish(i.id, visibility, &i.a, data, i.n & 0xff_ffff)
            } else {
                Event::deliver(i.id, visibility, &i.a, data, i.n)
            };
            event.header = header;
            if i.m.is_multiple_of(3) {
                event.max_age = Some(MaxAge {
                    seconds: i.n,
                    width: 4,
                });
            }
            event.into()
        }
        9 => Subscribe {
            header,
            filter: EventName::whole(&i.a),
            scope: match i.m % 3 {
                0 => SubscribeScope::Firehose,
                1 => SubscribeScope::MyDevices,
                _ => SubscribeScope::Device(&i.b),
            },
        }
        .into(),
        10 => GetTime { header }.into(),
        11 => Time {
            header,
            code: response_code(i.code),
            unix_time: i.n,
        }
        .into(),
        12 => UpdateBegin {
            header,
            params: i.flag.then_some(UpdateParams {
                flags: i.code,
                chunk_size: i.m as u16,
                file_size: i.n,
                destination: i.opt.unwrap_or(0),
                address: i.m,
            }),
        }
        .into(),
        13 => UpdateReady {
            header,
            flags: i.opt,
        }
        .into(),
        14 => Chunk {
            header,
            crc: i.n,
            index: i.flag.then_some(i.m as u16),
            data: &i.b,
        }
        .into(),
        15 => ChunkReceived { header, ok: i.flag }.into(),
        16 => ChunkMissed {
            header,
            indices: ChunkIndices::new(&i.list),
        }
        .into(),
        17 => UpdateDone {
            header,
            result: &i.b,
        }
        .into(),
        18 => Signal {
            header,
            start: i.flag,
        }
        .into(),
        19 => KeyChange {
            header,
            payload: &i.b,
        }
        .into(),
        20 => KeyChanged { header }.into(),
        21 => Reply {
            header,
            code: response_code(i.code),
            payload: &i.b,
        }
        .into(),
        22 => Ping {
            header: Header {
                msg_type: MessageType::Confirmable,
                ..header
            },
        }
        .into(),
        23 => EmptyAck {
            header: Header {
                msg_type: MessageType::from_bits(i.msg_type.max(1)),
                ..header
            },
        }
        .into(),
        24 => Goodbye {
            header,
            no_response: i.flag,
            payload: &i.b,
        }
        .into(),
        _ => Subscribe {
            header,
            filter: EventName::split(&i.a),
            scope: SubscribeScope::MyDevices,
        }
        .into(),
    }
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn typed_round_trip(i in input()) {
        let msg = build(&i);
        let mut out = vec![0; msg.buffer_len()];
        let n = msg.emit(&mut out).unwrap();
        prop_assert_eq!(n, out.len());
        let repr = Repr::parse_bytes(&out).unwrap();
        let back = Message::parse(&repr, msg.kind()).unwrap();
        prop_assert_eq!(back, msg);
        // The parsed message re-emits to the same bytes.
        let mut again = vec![0; back.buffer_len()];
        back.emit(&mut again).unwrap();
        prop_assert_eq!(&again, &out);
    }

    #[test]
    fn published_and_delivered_names_agree(name in name(), data in prop::option::of(vec(any::<u8>(), 0..20))) {
        let publish = Event::publish(1, Visibility::Public, &name, data.as_deref(), 60);
        let deliver = Event::deliver(1, Visibility::Public, &name, data.as_deref(), 60);
        let (mut a, mut b) = (vec![0; publish.buffer_len()], vec![0; deliver.buffer_len()]);
        publish.emit(&mut a).unwrap();
        deliver.emit(&mut b).unwrap();
        let ra = Repr::parse_bytes(&a).unwrap();
        let rb = Repr::parse_bytes(&b).unwrap();
        let (ea, eb) = (Event::parse(&ra).unwrap(), Event::parse(&rb).unwrap());
        prop_assert!(ea.name == *name.as_slice());
        prop_assert!(eb.name == *name.as_slice());
        prop_assert_eq!(ea.name.len(), name.len());
        prop_assert!(eb.name.starts_with(&name[..name.len() / 2]));
        let mut joined = vec![0; name.len()];
        prop_assert_eq!(eb.name.copy_to(&mut joined), Ok(name.len()));
        prop_assert_eq!(joined, name);
    }
}

fn description_name() -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_filter("not escaped by the Core", |b| {
            *b >= 0x20 && *b != b'"' && *b != b'\\'
        }),
        0..12,
    )
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn description_reader_never_panics(bytes in vec(any::<u8>(), 0..80)) {
        if let Ok(d) = Description::parse(&bytes) {
            prop_assert!(d.functions().count() <= bytes.len());
            prop_assert!(d.variables().count() <= bytes.len());
        }
    }

    #[test]
    fn description_writer_then_reader(
        functions in vec(description_name(), 0..5),
        variables in vec((description_name(), prop::sample::select(vec![
            VarType::Bool, VarType::Int, VarType::String, VarType::Double,
        ])), 0..5),
    ) {
        let mut buf = [0u8; 256];
        let mut w = DescriptionWriter::new(&mut buf);
        for f in &functions {
            w.function(f).unwrap();
        }
        for (v, t) in &variables {
            w.variable(v, *t).unwrap();
        }
        let n = w.finish().unwrap();
        let d = Description::parse(&buf[..n]).unwrap();
        prop_assert!(d.functions().eq(functions.iter().map(|f| &f[..])));
        prop_assert!(d.variables().eq(variables.iter().map(|(v, t)| (&v[..], Some(*t)))));
    }
}
