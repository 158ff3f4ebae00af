//! The upstream core-communication-lib vectors, read at run time from `$SPARK_VECTORS/protocol`:
//!
//! - every plaintext CoAP vector (`plaintext_coap_vectors`, the Core's event and subscription
//!   encoder) parsed and re-emitted byte for byte;
//! - the decrypted plaintext of every `encrypted_messages` entry (PKCS#7 padding stripped) parsed,
//!   classified by the receiving side's rules as the upstream test says it is, decoded as its
//!   message, and re-emitted byte for byte, both through the codec and through the typed message.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.

use serde_json::Value as Json;
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::message::{SubscribeScope, Visibility};
use spark_protocol::wire::{Message, MessageKind, Packet, Repr, Role, classify, classify_repr};

fn vectors() -> Json {
    let bytes = spark_vectors::load("protocol", "core-communication-lib-vectors.json");
    serde_json::from_slice(&bytes).expect("vectors JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Strips PKCS#7 padding; `None` when the padding is not valid.
fn unpad(padded: &[u8]) -> Option<&[u8]> {
    let pad = usize::from(*padded.last()?);
    if pad == 0 || pad > 16 || pad > padded.len() {
        return None;
    }
    let (body, padding) = padded.split_at(padded.len() - pad);
    padding
        .iter()
        .all(|&b| usize::from(b) == pad)
        .then_some(body)
}

fn reemit(repr: &Repr<'_>) -> Vec<u8> {
    let mut out = vec![0; repr.buffer_len()];
    let n = repr.emit(&mut out).unwrap();
    out.truncate(n);
    out
}

fn reemit_message(msg: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0; msg.buffer_len()];
    let n = msg.emit(&mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

/// What each upstream array is: the kind the receiving side classifies it as, and the message it is
/// decoded as (for a response the cloud matches by token, the pending request's response kind).
fn expectation(file: &str, line: u64) -> Option<(MessageKind, MessageKind)> {
    use MessageKind as K;
    let r = K::Response;
    Some(match (file, line) {
        ("tests/TestSparkProtocol.cpp", l) => match l {
            39 => (K::Hello, K::Hello),
            60 => return None, // noise: the TestCoAP describe under another key
            73 => (K::Describe, K::Describe),
            91 => (r, K::DescribeReturn),
            107 => (K::FunctionCall, K::FunctionCall),
            114 | 210 | 267 => (K::EmptyAck, K::EmptyAck),
            134 => (r, K::FunctionReturn),
            147 => (K::VariableRequest, K::VariableRequest),
            154 => (r, K::VariableValue(VarType::Int)),
            205 => (K::UpdateBegin, K::UpdateBegin),
            240 => (r, K::UpdateReady),
            252 => (K::Chunk, K::Chunk),
            310 | 351 => (r, K::ChunkReceived),
            399 => (K::UpdateDone, K::UpdateDone),
            404 => (r, K::Reply),
            446 => (K::ChunkMissed, K::ChunkMissed),
            459 | 576 | 596 | 612 | 632 | 668 | 767 | 781 => (K::Event, K::Event),
            714 => (K::SignalStart, K::SignalStart),
            727 => (K::SignalStop, K::SignalStop),
            740 => (K::Time, K::Time),
            795 | 809 | 823 => (K::Subscribe, K::Subscribe),
            889 => (K::GetTime, K::GetTime),
            _ => panic!("no expectation for TestSparkProtocol.cpp:{l}"),
        },
        ("tests/TestCoAP.cpp", l) => match l {
            185 => (K::FunctionCall, K::FunctionCall),
            197 => (K::VariableRequest, K::VariableRequest),
            209 => (K::KeyChange, K::KeyChange),
            283 => (K::UpdateBegin, K::UpdateBegin),
            293 => (K::Chunk, K::Chunk),
            313 => (K::UpdateDone, K::UpdateDone),
            323 => (K::Describe, K::Describe),
            333 | 343 | 517 => (K::Hello, K::Hello),
            355 => (r, K::KeyChanged),
            367 => (r, K::FunctionReturn),
            379 => (r, K::VariableValue(VarType::Bool)),
            391 => (r, K::VariableValue(VarType::Int)),
            403 => (r, K::VariableValue(VarType::Double)),
            415 | 427 => (r, K::VariableValue(VarType::String)),
            468 => (r, K::ChunkReceived),
            480 => (r, K::UpdateReady),
            492 => (r, K::DescribeReturn),
            _ => panic!("no expectation for TestCoAP.cpp:{l}"),
        },
        (f, l) => panic!("unexpected vector {f}:{l}"),
    })
}

#[spark_vectors::test]
fn encrypted_message_plaintexts() {
    let v = vectors();
    let messages = v["encrypted_messages"]
        .as_array()
        .expect("encrypted_messages");
    assert_eq!(messages.len(), 54);
    let mut checked = 0;
    for m in messages {
        let file = m["file"].as_str().unwrap();
        let line = m["line"].as_u64().unwrap();
        let direction = m["direction"].as_str().unwrap();
        let padded = unhex(m["derived_plaintext_padded"].as_str().unwrap());
        let at = format!("{file}:{line} ({direction})");

        let encrypted = !m["iv_rule"].as_str().unwrap().starts_with("none");
        let plain = if !encrypted {
            &padded[..] // the presence announcement is sent in the clear, unpadded
        } else {
            match expectation(file, line) {
                Some(_) => unpad(&padded).unwrap_or_else(|| panic!("{at}: bad padding")),
                None => {
                    // The noise array: its "plaintext" has no valid padding, and a parse of the
                    // whole block fails cleanly (token length 9).
                    assert!(unpad(&padded).is_none(), "{at}");
                    assert!(Repr::parse_bytes(&padded).is_err(), "{at}");
                    continue;
                }
            }
        };
        let (classified, decode_as) = expectation(file, line).unwrap();

        let receiver = if direction.starts_with("server->device") {
            Role::Device
        } else {
            Role::Cloud
        };
        let packet = Packet::new_checked(plain).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(classify(&packet, receiver), classified, "{at}");

        let repr = Repr::parse(&packet).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(classify_repr(&repr, receiver), classified, "{at}");
        assert_eq!(reemit(&repr), plain, "{at}: codec re-emit");

        let msg = Message::parse(&repr, decode_as).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(msg.kind(), decode_as, "{at}");
        assert_eq!(reemit_message(&msg), plain, "{at}: typed re-emit");
        checked += 1;
    }
    assert_eq!(checked, 53);
}

#[spark_vectors::test]
fn encrypted_message_contents() {
    let v = vectors();
    let find = |file: &str, line: u64| -> Vec<u8> {
        let m = v["encrypted_messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["file"] == format!("tests/{file}") && m["line"] == line)
            .unwrap_or_else(|| panic!("{file}:{line} not found"));
        let padded = unhex(m["derived_plaintext_padded"].as_str().unwrap());
        unpad(&padded).unwrap().to_vec()
    };
    let decode = |bytes: &[u8], kind: MessageKind, f: &dyn Fn(&Message<'_>)| {
        let repr = Repr::parse_bytes(bytes).unwrap();
        f(&Message::parse(&repr, kind).unwrap());
    };

    decode(
        &find("TestSparkProtocol.cpp", 107),
        MessageKind::FunctionCall,
        &|m| {
            let Message::FunctionCall(c) = m else {
                panic!()
            };
            assert_eq!((c.name, c.argument), (&b"brew"[..], Some(&b"32,240"[..])));
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 134),
        MessageKind::FunctionReturn,
        &|m| {
            let Message::FunctionReturn(r) = m else {
                panic!()
            };
            assert_eq!(r.value, Some(456));
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 154),
        MessageKind::VariableValue(VarType::Int),
        &|m| {
            let Message::VariableValue(r) = m else {
                panic!()
            };
            assert_eq!(r.value, spark_protocol::wire::message::Value::Int(-98765));
        },
    );
    decode(
        &find("TestCoAP.cpp", 403),
        MessageKind::VariableValue(VarType::Double),
        &|m| {
            let Message::VariableValue(r) = m else {
                panic!()
            };
            assert_eq!(
                r.value,
                spark_protocol::wire::message::Value::Double(-104.858)
            );
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 668),
        MessageKind::Event,
        &|m| {
            let Message::Event(e) = m else { panic!() };
            assert!(e.name == "a/long-coap-option/another-long-path/b");
            assert_eq!(e.ttl(), 60);
            assert_eq!(e.data, Some(&b"xyz"[..]));
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 612),
        MessageKind::Event,
        &|m| {
            let Message::Event(e) = m else { panic!() };
            assert!(e.name == "teacup-overflow");
            assert_eq!(e.max_age.map(|a| (a.seconds, a.width)), Some((60, 3)));
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 781),
        MessageKind::Event,
        &|m| {
            let Message::Event(e) = m else { panic!() };
            assert_eq!(e.visibility, Visibility::Private);
            assert!(e.name == "lake-depth/1");
            assert_eq!(e.ttl(), 21600);
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 823),
        MessageKind::Subscribe,
        &|m| {
            let Message::Subscribe(s) = m else { panic!() };
            assert!(s.filter == "a/really_long/event-name-filter/actually/as/long-as-one-can-be!");
            assert_eq!(s.scope, SubscribeScope::Firehose);
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 740),
        MessageKind::Time,
        &|m| {
            let Message::Time(t) = m else { panic!() };
            assert_eq!(t.unix_time, 1_398_367_917);
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 252),
        MessageKind::Chunk,
        &|m| {
            let Message::Chunk(c) = m else { panic!() };
            assert_eq!(c.crc, 0x0123_4567);
            assert_eq!(c.data.len(), 72);
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 446),
        MessageKind::ChunkMissed,
        &|m| {
            let Message::ChunkMissed(c) = m else { panic!() };
            assert!(c.indices.iter().eq([0]));
        },
    );
    decode(
        &find("TestSparkProtocol.cpp", 351),
        MessageKind::ChunkReceived,
        &|m| {
            let Message::ChunkReceived(c) = m else {
                panic!()
            };
            assert!(!c.ok);
        },
    );
    decode(&find("TestCoAP.cpp", 209), MessageKind::KeyChange, &|m| {
        let Message::KeyChange(k) = m else { panic!() };
        assert_eq!(k.payload.len(), 512);
    });
    decode(
        &find("TestCoAP.cpp", 427),
        MessageKind::VariableValue(VarType::String),
        &|m| {
            let Message::VariableValue(r) = m else {
                panic!()
            };
            let spark_protocol::wire::message::Value::String(s) = r.value else {
                panic!()
            };
            assert_eq!(s.len(), 219);
            assert!(s.starts_with(b"Hey, wow, this is like a super long string"));
        },
    );
}

#[spark_vectors::test]
fn plaintext_coap_vectors() {
    let v = vectors();
    let vectors = v["plaintext_coap_vectors"]
        .as_array()
        .expect("plaintext_coap_vectors");
    assert_eq!(vectors.len(), 11);
    for m in vectors {
        let test = m["test"].as_str().unwrap();
        let bytes = unhex(m["hex"].as_str().unwrap());
        assert_eq!(bytes.len() as u64, m["len"].as_u64().unwrap(), "{test}");

        if test.ends_with("EventNameUriPath") {
            // Two vectors hold only the event-name option the encoder appends after the `e`
            // letter (delta 0 from Uri-Path). Parse it in place after a header and the letter, and
            // check it re-emits to the same bytes.
            let mut message = b"\x50\x02\x00\x00\xb1\x65".to_vec();
            message.extend_from_slice(&bytes);
            let repr = Repr::parse_bytes(&message).unwrap_or_else(|e| panic!("{test}: {e}"));
            assert_eq!(reemit(&repr)[6..], bytes[..], "{test}");
            let Message::Event(e) = Message::parse(&repr, MessageKind::Event).unwrap() else {
                panic!()
            };
            let expected: &str = if test.contains("SingleChar") {
                "x"
            } else {
                "front-door-unlocked"
            };
            assert!(e.name == expected, "{test}: {:?}", e.name);
            let mut out = vec![0; e.buffer_len()];
            e.emit(&mut out).unwrap();
            assert_eq!(out[6..], bytes[..], "{test}");
            continue;
        }

        let packet = Packet::new_checked(&bytes[..]).unwrap_or_else(|e| panic!("{test}: {e}"));
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(reemit(&repr), bytes, "{test}: codec re-emit");
        let kind = classify(&packet, Role::Cloud);
        let expected = if test.contains("Subscription") {
            MessageKind::Subscribe
        } else {
            MessageKind::Event
        };
        assert_eq!(kind, expected, "{test}");
        let msg = Message::parse(&repr, kind).unwrap_or_else(|e| panic!("{test}: {e}"));
        assert_eq!(reemit_message(&msg), bytes, "{test}: typed re-emit");

        match (&msg, test) {
            (Message::Event(e), t) if t.contains("DataAndTtl") => {
                assert!(e.name == "weather/us/mn/minneapolis");
                assert_eq!(e.ttl(), 3600);
                assert_eq!(e.data, Some(&b"t:5F,d:-2F,p:15%"[..]));
            }
            (Message::Subscribe(s), t) if t.contains("ToOneDevice") => {
                assert_eq!(s.scope, SubscribeScope::Device(b"53ff73065067544816300187"));
            }
            (Message::Subscribe(s), t) if t.contains("MyDevices") => {
                assert_eq!(s.scope, SubscribeScope::MyDevices);
            }
            (Message::Subscribe(s), t) if t.contains("Firehose") => {
                assert_eq!(s.scope, SubscribeScope::Firehose);
                assert!(s.filter == "China/ShenZhen/FuTianKouAn");
            }
            _ => {}
        }
    }
}

/// Every vector cut at every length, and with every single byte flipped: parsing and decoding give
/// a value or a typed error, never a panic, and whatever parses re-emits to the bytes it came from.
#[spark_vectors::test]
fn truncated_and_corrupted_vectors() {
    let v = vectors();
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for m in v["encrypted_messages"].as_array().unwrap() {
        let padded = unhex(m["derived_plaintext_padded"].as_str().unwrap());
        inputs.push(unpad(&padded).map_or(padded.clone(), <[u8]>::to_vec));
    }
    for m in v["plaintext_coap_vectors"].as_array().unwrap() {
        inputs.push(unhex(m["hex"].as_str().unwrap()));
    }
    let kinds = [
        MessageKind::Hello,
        MessageKind::Describe,
        MessageKind::DescribeReturn,
        MessageKind::FunctionCall,
        MessageKind::FunctionReturn,
        MessageKind::VariableRequest,
        MessageKind::VariableValue(VarType::Double),
        MessageKind::Event,
        MessageKind::Subscribe,
        MessageKind::Time,
        MessageKind::UpdateBegin,
        MessageKind::Chunk,
        MessageKind::ChunkMissed,
        MessageKind::SignalStart,
    ];
    let check = |bytes: &[u8]| {
        for role in [Role::Device, Role::Cloud] {
            let _ = classify(&Packet::new_unchecked(bytes), role);
        }
        if let Ok(repr) = Repr::parse_bytes(bytes) {
            assert_eq!(reemit(&repr), bytes);
            for kind in kinds {
                if let Ok(msg) = Message::parse(&repr, kind) {
                    let out = reemit_message(&msg);
                    let again = Repr::parse_bytes(&out).unwrap();
                    assert_eq!(Message::parse(&again, kind).unwrap(), msg);
                }
            }
        }
    };
    let mut rejected = 0;
    for input in &inputs {
        for len in 0..input.len() {
            check(&input[..len]);
            rejected += usize::from(Repr::parse_bytes(&input[..len]).is_err());
        }
        let mut corrupted = input.clone();
        for i in 0..corrupted.len() {
            for flip in [0x01, 0x10, 0x80, 0xff] {
                corrupted[i] ^= flip;
                check(&corrupted);
                corrupted[i] ^= flip;
            }
        }
    }
    // Cutting into a header, token or option is an error, not a shorter message.
    assert!(rejected > inputs.len() * 4, "{rejected}");
}
