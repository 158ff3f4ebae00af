//! The drivers' own cost: 100 KiB moved by the test-only counter protocol (64-byte messages,
//! window 8, one ACK each) through the in-memory pair, the blocking driver over loopback TCP
//! (two threads) and the tokio driver over loopback TCP (one current-thread runtime).
//!
//! The figures bound what the drivers add to a real session's transfer (the device and cloud
//! sessions add their crypto and CoAP work on top).

#[path = "../tests/counter_protocol/mod.rs"]
mod counter_protocol;

use std::net::{TcpListener, TcpStream};

use counter_protocol::{MAX_PAYLOAD, Receiver, ReceiverEvent, Sender, SenderEvent};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spark_protocol::session::Instant;
use spark_protocol::session::driver::{Driver, StdClock};
use spark_protocol::session::pair::{Outcome, Pair};

const TOTAL: usize = 100 * 1024;
const WINDOW: usize = 8;

fn payloads() -> Vec<Vec<u8>> {
    (0..TOTAL / MAX_PAYLOAD)
        .map(|i| vec![i as u8; MAX_PAYLOAD])
        .collect()
}

fn committed_len(events: &[ReceiverEvent]) -> usize {
    match events.last() {
        Some(ReceiverEvent::Committed(m)) => m.iter().map(Vec::len).sum(),
        other => panic!("transfer not committed: {other:?}"),
    }
}

fn pair_run() -> usize {
    let mut p = Pair::new(Sender::new(payloads(), WINDOW), Receiver::new());
    p.record_bytes(false);
    assert_eq!(p.run(Instant::from_secs(60)), Outcome::Idle);
    committed_len(&p.take_events_b())
}

fn blocking_tcp() -> usize {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut d = Driver::with_vec(Receiver::new(), s, StdClock::new());
        let mut events = Vec::new();
        loop {
            let e = d.next_event().unwrap();
            let done = matches!(e, ReceiverEvent::Committed(_));
            events.push(e);
            if done {
                return events;
            }
        }
    });
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut d = Driver::with_vec(Sender::new(payloads(), WINDOW), s, StdClock::new());
    while d.next_event().unwrap() != SenderEvent::Done {}
    committed_len(&server.join().unwrap())
}

fn tokio_tcp(rt: &tokio::runtime::Runtime) -> usize {
    use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = async {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut d =
                Driver::with_vec(Sender::new(payloads(), WINDOW), Tokio(s), TokioClock::new());
            while d.next_event().await.unwrap() != SenderEvent::Done {}
        };
        let server = async {
            let (s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut d = Driver::with_vec(Receiver::new(), Tokio(s), TokioClock::new());
            let mut events = Vec::new();
            loop {
                let e = d.next_event().await.unwrap();
                let done = matches!(e, ReceiverEvent::Committed(_));
                events.push(e);
                if done {
                    return events;
                }
            }
        };
        let ((), events) = tokio::join!(client, server);
        committed_len(&events)
    })
}

fn drivers(c: &mut Criterion) {
    let mut group = c.benchmark_group("100 KiB through a driver");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.bench_function("in-memory pair (virtual time)", |b| {
        b.iter(|| assert_eq!(pair_run(), TOTAL))
    });
    group.bench_function("blocking driver, loopback TCP", |b| {
        b.iter(|| assert_eq!(blocking_tcp(), TOTAL))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    group.bench_function("tokio driver, loopback TCP", |b| {
        b.iter(|| assert_eq!(tokio_tcp(&rt), TOTAL))
    });
    group.finish();
}

criterion_group!(benches, drivers);
criterion_main!(benches);
