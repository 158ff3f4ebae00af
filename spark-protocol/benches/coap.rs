//! CoAP parse and emit per message, for a typical published event (goal: under 100 ns each).
//!
//! The event is the Core's `EventWithDataMatchesOpenSSL` message: NON POST `E/lake-depth/1`,
//! 3-byte Max-Age, 3 bytes of data (27 bytes in all).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spark_protocol::wire::message::{Event, Visibility};
use spark_protocol::wire::{Message, MessageKind, Packet, Repr, Role, classify, classify_repr};

const EVENT: &[u8] = b"\x50\x02\x97\xb3\xb1\x45\x0clake-depth/1\x33\x00\x54\x60\xff28m";

fn coap(c: &mut Criterion) {
    let mut group = c.benchmark_group("coap");
    group.throughput(Throughput::Elements(1));

    group.bench_function("parse event (Repr)", |b| {
        b.iter(|| Repr::parse_bytes(black_box(EVENT)).unwrap())
    });

    let repr = Repr::parse_bytes(EVENT).unwrap();
    let mut out = [0u8; 64];
    group.bench_function("emit event (Repr)", |b| {
        b.iter(|| black_box(&repr).emit(black_box(&mut out)).unwrap())
    });

    group.bench_function("parse + classify + decode event (typed)", |b| {
        b.iter(|| {
            let repr = Repr::parse_bytes(black_box(EVENT)).unwrap();
            let kind = classify_repr(&repr, Role::Cloud);
            match Message::parse(&repr, kind).unwrap() {
                Message::Event(e) => e.data.map_or(0, <[u8]>::len),
                _ => unreachable!(),
            }
        })
    });

    let event = Event::publish(
        0x97b3,
        Visibility::Private,
        b"lake-depth/1",
        Some(b"28m"),
        21600,
    );
    group.bench_function("emit event (typed)", |b| {
        b.iter(|| black_box(&event).emit(black_box(&mut out)).unwrap())
    });

    let packet = Packet::new_checked(EVENT).unwrap();
    group.bench_function("classify event", |b| {
        b.iter(|| classify(black_box(&packet), Role::Cloud) == MessageKind::Event)
    });
    group.finish();
}

criterion_group!(benches, coap);
criterion_main!(benches);
