//! Byte vectors for every message: decode, check the fields, re-emit the same bytes; and the
//! constructors produce what the Core and the original server send.

use super::*;
use crate::wire::hello::{CoreHello, ExtendedHello, HelloFlags, HelloLimits};

/// Decodes a hex string (spaces allowed) into a fixed buffer; returns it and the length.
fn hex(s: &str) -> ([u8; 128], usize) {
    let mut out = [0u8; 128];
    let mut n = 0;
    let mut high: Option<u8> = None;
    for c in s.bytes().filter(|c| *c != b' ') {
        let nibble = (c as char).to_digit(16).unwrap() as u8;
        match high.take() {
            None => high = Some(nibble),
            Some(h) => {
                out[n] = (h << 4) | nibble;
                n += 1;
            }
        }
    }
    assert!(high.is_none());
    (out, n)
}

/// Parses `hex` as `kind`, checks the re-emitted bytes, and hands the message to `check`.
fn roundtrip(hex_str: &str, kind: MessageKind, check: impl FnOnce(&Message<'_>)) {
    let (buf, n) = hex(hex_str);
    let bytes = &buf[..n];
    let repr = Repr::parse_bytes(bytes).unwrap();
    let msg = Message::parse(&repr, kind).unwrap();
    check(&msg);
    assert_eq!(msg.kind().name(), kind.name());
    let mut out = [0u8; 128];
    assert_eq!(msg.buffer_len(), n);
    let m = msg.emit(&mut out).unwrap();
    assert_eq!(&out[..m], bytes, "{hex_str}");
    // Too small a buffer: the size needed, nothing written past it.
    if n > 0 {
        assert_eq!(
            msg.emit(&mut out[..n - 1]),
            Err(Error::InsufficientSize { required: n })
        );
    }
}

fn emits<'a>(msg: impl Into<Message<'a>>, hex_str: &str) {
    let msg = msg.into();
    let (buf, n) = hex(hex_str);
    let mut out = [0u8; 128];
    let m = msg.emit(&mut out).unwrap();
    assert_eq!(&out[..m], &buf[..n], "{msg:?}");
}

#[test]
fn hello_core_and_server() {
    roundtrip("500297b2b168ffffffffff0000", MessageKind::Hello, |m| {
        let Message::Hello(h) = m else { panic!() };
        assert_eq!(h.header, Header::non(0x97b2));
        assert_eq!(
            h.payload,
            HelloPayload::Core(CoreHello {
                product_id: 0xffff,
                firmware_version: 0xffff,
                flags: HelloFlags(0)
            })
        );
    });
    // The server's Hello: NON, one-byte token, no payload.
    roundtrip("51023a2c01b168", MessageKind::Hello, |m| {
        let Message::Hello(h) = m else { panic!() };
        assert_eq!(h.header.token, Token::from_byte(1));
        assert_eq!(h.payload, HelloPayload::None);
    });
    // Presence announcement.
    roundtrip(
        "50020000b168ff000102030405060708090a0b",
        MessageKind::Hello,
        |m| {
            let Message::Hello(h) = m else { panic!() };
            assert_eq!(
                h.payload,
                HelloPayload::DeviceId(core::array::from_fn(|i| i as u8))
            );
        },
    );
    let ext = Hello {
        header: Header::new(MessageType::Confirmable, 1, Token::EMPTY),
        payload: HelloPayload::Extended(ExtendedHello {
            product_id: 6,
            firmware_version: 3,
            flags: HelloFlags::OTA_UPGRADE_SUCCESSFUL.union(HelloFlags::GOODBYE_SUPPORT),
            platform_id: 6,
            device_id: Some(*b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"),
            limits: Some(HelloLimits {
                system_version: 300,
                max_message_size: 1024,
                max_binary_size: 0x20000,
                ota_chunk_size: 512,
            }),
        }),
    };
    emits(
        ext,
        "40020001b168ff 0006 0003 0011 0006 000c 0102030405060708090a0b0c 012c 0400 00020000 0200",
    );
    assert_eq!(ext.buffer_len(), 7 + 32);
    let bad = Hello {
        header: Header::non(1),
        payload: HelloPayload::Other(&[0; 6]),
    };
    assert_eq!(
        bad.emit(&mut [0; 64]),
        Err(Error::Invalid("Hello payload length"))
    );
}

#[test]
fn describe_and_return() {
    roundtrip("410197b228b164", MessageKind::Describe, |m| {
        let Message::Describe(d) = m else { panic!() };
        assert_eq!(d.header, Header::con(0x97b2).with_token(0x28));
        assert_eq!(d.flags, None);
    });
    roundtrip("41010001aab16441 02", MessageKind::Describe, |m| {
        let Message::Describe(d) = m else { panic!() };
        assert_eq!(d.flags, Some(Describe::FLAG_APPLICATION));
    });
    roundtrip(
        "614597b228ff7b2266223a5b2262726577225d2c2276223a7b2274656d7065726174757265223a327d7d",
        MessageKind::DescribeReturn,
        |m| {
            let Message::DescribeReturn(d) = m else {
                panic!()
            };
            assert_eq!(d.code, Code::Content);
            assert_eq!(d.description, br#"{"f":["brew"],"v":{"temperature":2}}"#);
        },
    );
    let (buf, n) = hex("41010001aab1644201 02");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert!(matches!(Describe::parse(&repr), Err(Error::Length { .. })));
}

#[test]
fn functions() {
    roundtrip(
        "410297b2efb16604627265774633322c323430",
        MessageKind::FunctionCall,
        |m| {
            let Message::FunctionCall(f) = m else {
                panic!()
            };
            assert_eq!(f.name, b"brew");
            assert_eq!(f.argument, Some(&b"32,240"[..]));
        },
    );
    // An argument of 13 bytes and of 269 bytes takes the extended length forms.
    let long = [b'x'; 300];
    for len in [12, 13, 268, 269, 300] {
        let call = FunctionCall {
            header: Header::con(1).with_token(2),
            name: b"f",
            argument: Some(&long[..len]),
        };
        let mut out = [0u8; 400];
        let n = call.emit(&mut out).unwrap();
        let repr = Repr::parse_bytes(&out[..n]).unwrap();
        assert_eq!(FunctionCall::parse(&repr).unwrap(), call);
    }
    roundtrip("514497b3efff000001c8", MessageKind::FunctionReturn, |m| {
        let Message::FunctionReturn(r) = m else {
            panic!()
        };
        assert_eq!(r.value, Some(456));
        assert_eq!(
            r.header,
            Header::separate(&Header::con(1).with_token(0xef), 0x97b3)
        );
    });
    roundtrip("5144f649c3ff0000002a", MessageKind::FunctionReturn, |_| {});
    roundtrip("5144f649c3fffffffffe", MessageKind::FunctionReturn, |m| {
        let Message::FunctionReturn(r) = m else {
            panic!()
        };
        assert_eq!(r.value, Some(-2));
    });
    let (buf, n) = hex("410297b2efb166");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert_eq!(
        FunctionCall::parse(&repr),
        Err(Error::Missing("function name"))
    );
    let (buf, n) = hex("514497b3efff0001");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert!(matches!(
        FunctionReturn::parse(&repr),
        Err(Error::Length { found: 2, .. })
    ));
}

#[test]
fn variables() {
    roundtrip(
        "410197b288b1760b74656d7065726174757265",
        MessageKind::VariableRequest,
        |m| {
            let Message::VariableRequest(v) = m else {
                panic!()
            };
            assert_eq!(v.name, b"temperature");
        },
    );
    roundtrip(
        "6145f6495fff00",
        MessageKind::VariableValue(VarType::Bool),
        |m| {
            let Message::VariableValue(v) = m else {
                panic!()
            };
            assert_eq!(v.value, Value::Bool(false));
        },
    );
    roundtrip(
        "614597b288fffffe7e33",
        MessageKind::VariableValue(VarType::Int),
        |m| {
            let Message::VariableValue(v) = m else {
                panic!()
            };
            assert_eq!(v.value, Value::Int(-98765));
            assert_eq!(
                v.header,
                Header::piggybacked(&Header::con(0x97b2).with_token(0x88))
            );
        },
    );
    roundtrip(
        "6145abce5dfff4fdd478e9365ac0",
        MessageKind::VariableValue(VarType::Double),
        |m| {
            let Message::VariableValue(v) = m else {
                panic!()
            };
            assert_eq!(v.value, Value::Double(-104.858));
        },
    );
    roundtrip(
        "6145f6495cff776f6f74",
        MessageKind::VariableValue(VarType::String),
        |m| {
            let Message::VariableValue(v) = m else {
                panic!()
            };
            assert_eq!(v.value, Value::String(b"woot"));
        },
    );
    let (buf, n) = hex("6145f6495cff776f6f74");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert!(VariableValue::parse(&repr, VarType::Double).is_err());
    assert!(VariableValue::parse(&repr, VarType::Bool).is_err());
    assert!(VariableValue::parse(&repr, VarType::Null).is_err());
    // A request is not a value.
    let (buf, n) = hex("410197b288b176");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert_eq!(
        VariableValue::parse(&repr, VarType::Int),
        Err(Error::Mismatch {
            expected: "VariableValue"
        })
    );
}

#[test]
fn events() {
    // Published by the Core: one Uri-Path even with '/', 3-byte Max-Age.
    roundtrip(
        "500297b3b1450c6c616b652d64657074682f3133005460ff32386d",
        MessageKind::Event,
        |m| {
            let Message::Event(e) = m else { panic!() };
            assert_eq!(e.visibility, Visibility::Private);
            assert!(e.name == "lake-depth/1");
            assert_eq!(e.name.as_contiguous(), Some(&b"lake-depth/1"[..]));
            assert_eq!(e.max_age, Some(MaxAge::core(21600)));
            assert_eq!(e.ttl(), 21600);
            assert_eq!(e.data, Some(&b"28m"[..]));
        },
    );
    emits(
        Event::publish(
            0x97b3,
            Visibility::Private,
            b"lake-depth/1",
            Some(b"28m"),
            21600,
        ),
        "500297b3b1450c6c616b652d64657074682f3133005460ff32386d",
    );
    emits(
        Event::publish(0xf649, Visibility::Public, b"x", None, 60),
        "5002f649b1650178",
    );
    // Delivered by the cloud: split per segment, 1-byte Max-Age.
    roundtrip(
        "50029753b1650161016201630164313cff78797a",
        MessageKind::Event,
        |m| {
            let Message::Event(e) = m else { panic!() };
            assert!(e.name == "a/b/c/d");
            assert_eq!(e.name.as_contiguous(), None);
            assert_eq!(e.name.segments().count(), 4);
            assert!(e.name.starts_with(b"a/b"));
            assert!(!e.name.starts_with(b"a/c"));
            let mut name = [0u8; 7];
            assert_eq!(e.name.copy_to(&mut name), Ok(7));
            assert_eq!(&name, b"a/b/c/d");
            assert_eq!(
                e.name.copy_to(&mut name[..6]),
                Err(Error::InsufficientSize { required: 7 })
            );
            assert_eq!(e.max_age, Some(MaxAge::compact(60)));
        },
    );
    emits(
        Event::deliver(0x9753, Visibility::Public, b"a/b/c/d", Some(b"xyz"), 60),
        "50029753b1650161016201630164313cff78797a",
    );
    // Empty (not null) data: a bare payload marker, as the Core writes it.
    roundtrip("5002f649b1650178ff", MessageKind::Event, |m| {
        let Message::Event(e) = m else { panic!() };
        assert_eq!(e.data, Some(&b""[..]));
        assert_eq!(e.name.len(), 1);
    });
    // No name at all.
    roundtrip("5002f649b165", MessageKind::Event, |m| {
        let Message::Event(e) = m else { panic!() };
        assert!(e.name.is_empty());
        assert_eq!(e.name, EventName::whole(b""));
    });
    // An option before the letter (Uri-Host): the original server still routes it by the first
    // Uri-Path, the Core does not (its letter byte is the host's); the event decodes, and the
    // re-emitted form leaves the unused option out.
    let (buf, n) = hex("50020001 3161 8165 0178");
    let packet = crate::wire::Packet::new_checked(&buf[..n]).unwrap();
    use crate::wire::{Role, classify};
    assert_eq!(classify(&packet, Role::Cloud), MessageKind::Event);
    assert_eq!(classify(&packet, Role::Device), MessageKind::Unknown);
    let repr = Repr::parse(&packet).unwrap();
    let e = Event::parse(&repr).unwrap();
    assert!(e.name == "x");
    emits(e, "50020001 b165 0178");
    // Max-Age of 5 bytes is not a uint the Core could send.
    let (buf, n) = hex("5002f649b1650178350000000001");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert!(matches!(
        Event::parse(&repr),
        Err(Error::Length {
            field: "Max-Age",
            ..
        })
    ));
    let bad = Event {
        max_age: Some(MaxAge {
            seconds: 300,
            width: 1,
        }),
        ..Event::publish(1, Visibility::Public, b"x", None, 60)
    };
    assert_eq!(bad.emit(&mut [0; 32]), Err(Error::Invalid("Max-Age width")));
    // A GET e is a subscription, not an event.
    let (buf, n) = hex("400197b3b165");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert_eq!(
        Event::parse(&repr),
        Err(Error::Mismatch { expected: "Event" })
    );
}

#[test]
fn subscriptions() {
    roundtrip(
        "40018888b1650777656174686572ff353366663733303635303637353434383136333030313837",
        MessageKind::Subscribe,
        |m| {
            let Message::Subscribe(s) = m else { panic!() };
            assert!(s.filter == "weather");
            assert_eq!(s.scope, SubscribeScope::Device(b"53ff73065067544816300187"));
        },
    );
    roundtrip(
        "40011113b1650b6d6f74696f6e2f6f70656e4175",
        MessageKind::Subscribe,
        |m| {
            let Message::Subscribe(s) = m else { panic!() };
            assert!(s.filter == "motion/open");
            assert_eq!(s.scope, SubscribeScope::MyDevices);
        },
    );
    roundtrip("40011114b1654175", MessageKind::Subscribe, |m| {
        let Message::Subscribe(s) = m else { panic!() };
        assert!(s.filter.is_empty());
        assert_eq!(s.scope, SubscribeScope::MyDevices);
    });
    roundtrip("40011115b16501 61", MessageKind::Subscribe, |m| {
        let Message::Subscribe(s) = m else { panic!() };
        assert_eq!(s.scope, SubscribeScope::Firehose);
    });
    emits(
        Subscribe {
            header: Header::con(0x1113),
            filter: EventName::whole(b"motion/open"),
            scope: SubscribeScope::MyDevices,
        },
        "40011113b1650b6d6f74696f6e2f6f70656e4175",
    );
    let (buf, n) = hex("40011114b1654175ff00");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert_eq!(
        Subscribe::parse(&repr),
        Err(Error::Invalid("subscription scope"))
    );
}

#[test]
fn time() {
    roundtrip("410197b398b174", MessageKind::GetTime, |m| {
        let Message::GetTime(t) = m else { panic!() };
        assert_eq!(t.header, Header::con(0x97b3).with_token(0x98));
    });
    roundtrip("6145999999ff535966ad", MessageKind::Time, |m| {
        let Message::Time(t) = m else { panic!() };
        assert_eq!(t.unix_time, 1_398_367_917);
    });
    for bad in ["6145999999", "6145999999ff5359", "6145999999ff535966adff"] {
        let (buf, n) = hex(bad);
        let repr = Repr::parse_bytes(&buf[..n]).unwrap();
        assert!(Time::parse(&repr).is_err(), "{bad}");
    }
}

#[test]
fn ota() {
    roundtrip("4102abd033b175", MessageKind::UpdateBegin, |m| {
        let Message::UpdateBegin(u) = m else { panic!() };
        assert_eq!(u.params, None);
    });
    roundtrip(
        "4102abd033b175ff 00 0100 00012345 00 00000000",
        MessageKind::UpdateBegin,
        |m| {
            let Message::UpdateBegin(u) = m else { panic!() };
            let p = u.params.unwrap();
            assert_eq!(
                (p.chunk_size, p.file_size, p.fast_ota()),
                (256, 0x12345, false)
            );
        },
    );
    let (buf, n) = hex("4102abd033b175ff0001");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert!(matches!(
        UpdateBegin::parse(&repr),
        Err(Error::Length { .. })
    ));

    roundtrip("514497b333", MessageKind::UpdateReady, |m| {
        let Message::UpdateReady(u) = m else { panic!() };
        assert_eq!(u.flags, None);
    });
    roundtrip("514497b333ff01", MessageKind::UpdateReady, |m| {
        let Message::UpdateReady(u) = m else { panic!() };
        assert_eq!(u.flags, Some(1));
    });

    let data = b"not actually a valid firmware data chunk payload, but the header is fine";
    roundtrip(
        "4102abd122b1634401234567ff6e6f742061637475616c6c7920612076616c6964206669726d776172652064617461206368756e6b207061796c6f61642c2062757420746865206865616465722069732066696e65",
        MessageKind::Chunk,
        |m| {
            let Message::Chunk(c) = m else { panic!() };
            assert_eq!(c.crc, 0x0123_4567);
            assert_eq!(c.index, None);
            assert_eq!(c.data, &data[..]);
            assert!(!c.crc_matches());
        },
    );
    let fast = Chunk::new(Header::con(5).with_token(9), Some(0x0102), b"abc");
    assert!(fast.crc_matches());
    emits(fast, "41020005 09 b163 44352441c2 020102 ff616263");
    let (buf, n) = hex("4102abd122b163420123");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert!(matches!(
        Chunk::parse(&repr),
        Err(Error::Length {
            field: "chunk CRC",
            ..
        })
    ));
    let (buf, n) = hex("4102abd122b163");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert_eq!(Chunk::parse(&repr), Err(Error::Missing("chunk CRC")));

    roundtrip("514497b322", MessageKind::ChunkReceived, |m| {
        let Message::ChunkReceived(c) = m else {
            panic!()
        };
        assert!(c.ok);
    });
    roundtrip("518097b322", MessageKind::ChunkReceived, |m| {
        let Message::ChunkReceived(c) = m else {
            panic!()
        };
        assert!(!c.ok);
    });
    roundtrip("400197b4b163ff0000", MessageKind::ChunkMissed, |m| {
        let Message::ChunkMissed(c) = m else { panic!() };
        assert!(c.indices.iter().eq([0]));
    });
    emits(
        ChunkMissed {
            header: Header::con(7),
            indices: ChunkIndices::new(&[1, 0x203, 0xffff]),
        },
        "40010007b163ff00010203ffff",
    );
    let (buf, n) = hex("400197b4b163ff000000");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert!(ChunkMissed::parse(&repr).is_err());

    roundtrip("4103abd211b175", MessageKind::UpdateDone, |m| {
        let Message::UpdateDone(u) = m else { panic!() };
        assert!(u.result.is_empty());
    });
    roundtrip("50030001b175ff6f6b", MessageKind::UpdateDone, |m| {
        let Message::UpdateDone(u) = m else { panic!() };
        assert_eq!(u.result, b"ok");
    });
}

#[test]
fn signal_keys_keepalive_goodbye() {
    roundtrip("4103abcdefb1734101", MessageKind::SignalStart, |m| {
        assert_eq!(m.kind(), MessageKind::SignalStart);
    });
    roundtrip("4103abcdefb1734100", MessageKind::SignalStop, |m| {
        assert_eq!(m.kind(), MessageKind::SignalStop);
    });
    let (buf, n) = hex("4103abcdefb173");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    assert_eq!(Signal::parse(&repr), Err(Error::Missing("signal byte")));

    roundtrip("4103abcf75b16bff343fb169", MessageKind::KeyChange, |m| {
        let Message::KeyChange(k) = m else { panic!() };
        assert_eq!(k.payload, [0x34, 0x3f, 0xb1, 0x69]);
    });
    roundtrip("5144f64999", MessageKind::KeyChanged, |_| {});
    roundtrip("400097b5", MessageKind::Ping, |m| {
        assert_eq!(m.header(), &Header::con(0x97b5));
    });
    roundtrip("600097b2", MessageKind::EmptyAck, |_| {});
    // The original server's ACKs carry a one-byte token 00.
    roundtrip("610097b200", MessageKind::EmptyAck, |m| {
        assert_eq!(m.header().token, Token::from_byte(0));
    });
    for (bad, kind) in [
        ("600097b2", MessageKind::Ping),
        ("400097b2", MessageKind::EmptyAck),
        ("6000 97b2 b168", MessageKind::EmptyAck),
        ("400097b2ff", MessageKind::Ping),
    ] {
        let (buf, n) = hex(bad);
        let repr = Repr::parse_bytes(&buf[..n]).unwrap();
        assert!(Message::parse(&repr, kind).is_err(), "{bad}");
    }

    roundtrip("50020009b178d0eaff0102", MessageKind::Goodbye, |m| {
        let Message::Goodbye(g) = m else { panic!() };
        assert!(g.no_response);
        assert_eq!(g.payload, [1, 2]);
    });
    roundtrip("40020009b178", MessageKind::Goodbye, |m| {
        let Message::Goodbye(g) = m else { panic!() };
        assert!(!g.no_response);
    });
}

#[test]
fn kinds_without_a_message_do_not_decode() {
    let (buf, n) = hex("514497b3efff000001c8");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    for kind in [MessageKind::Response, MessageKind::Unknown] {
        assert!(matches!(
            Message::parse(&repr, kind),
            Err(Error::Mismatch { .. })
        ));
    }
    // Requests decoded as the wrong request.
    let (buf, n) = hex("410197b228b164");
    let repr = Repr::parse_bytes(&buf[..n]).unwrap();
    for kind in [
        MessageKind::Hello,
        MessageKind::FunctionCall,
        MessageKind::VariableRequest,
        MessageKind::GetTime,
        MessageKind::Chunk,
        MessageKind::ChunkMissed,
        MessageKind::UpdateBegin,
        MessageKind::UpdateDone,
        MessageKind::KeyChange,
        MessageKind::SignalStart,
        MessageKind::Goodbye,
        MessageKind::Subscribe,
        MessageKind::Event,
        MessageKind::UpdateReady,
        MessageKind::ChunkReceived,
        MessageKind::KeyChanged,
        MessageKind::FunctionReturn,
        MessageKind::Time,
        MessageKind::DescribeReturn,
    ] {
        assert!(
            matches!(Message::parse(&repr, kind), Err(Error::Mismatch { .. })),
            "{kind}"
        );
    }
}

#[cfg(feature = "alloc")]
#[test]
fn to_vec_matches_emit() {
    let e = Event::publish(1, Visibility::Public, b"name", Some(b"data"), 3600);
    let v = e.to_vec().unwrap();
    let mut out = [0u8; 64];
    let n = e.emit(&mut out).unwrap();
    assert_eq!(v, &out[..n]);
    assert_eq!(Message::Event(e).to_vec().unwrap(), v);
}
