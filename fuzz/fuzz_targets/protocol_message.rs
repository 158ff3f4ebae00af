//! spark-protocol typed messages: any parsed CoAP message decoded as every kind never panics, and a
//! decoded message re-emits to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::{Message, MessageKind, Packet, Repr, Role, classify};

const KINDS: &[MessageKind] = &[
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
    MessageKind::KeyChange,
    MessageKind::KeyChanged,
    MessageKind::Reply,
    MessageKind::Ping,
    MessageKind::EmptyAck,
    MessageKind::Goodbye,
];

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let Ok(repr) = Repr::parse(&packet) else {
        return;
    };
    let classified = [
        classify(&packet, Role::Device),
        classify(&packet, Role::Cloud),
    ];
    for kind in KINDS.iter().copied().chain(classified) {
        let Ok(msg) = Message::parse(&repr, kind) else {
            continue;
        };
        let mut out = vec![0; msg.buffer_len()];
        let n = msg.emit(&mut out).expect("emit into buffer_len bytes");
        let again = Repr::parse_bytes(&out[..n]).expect("emitted message parses");
        assert_eq!(Message::parse(&again, msg.kind()).expect("re-decodes"), msg);
    }
});
