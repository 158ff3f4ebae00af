//! Event-stream parse throughput: a local-cloud style stream (events, keep-alives) fed in network-sized chunks.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spark_api::sse::{SseItem, SseParser};
use std::hint::black_box;

fn spark_stream(target_len: usize) -> Vec<u8> {
    let mut out = b":ok\n\n".to_vec();
    let mut i = 0u64;
    while out.len() < target_len {
        let line = format!(
            "event: temperature/{}\ndata: {{\"data\":\"{}.{}\",\"ttl\":\"60\",\"published_at\":\"2014-05-28T19:20:34.638Z\",\"coreid\":\"53ff6c065075535119511687\"}}\n\n",
            i % 7,
            20 + i % 10,
            i % 100
        );
        out.extend_from_slice(line.as_bytes());
        if i.is_multiple_of(5) {
            out.extend_from_slice(b"\n");
        }
        i += 1;
    }
    out
}

fn large_data_stream(target_len: usize) -> Vec<u8> {
    let payload = "x".repeat(4000);
    let mut out = Vec::new();
    while out.len() < target_len {
        out.extend_from_slice(
            format!(
                "event: hook-response/big/0\ndata: {{\"data\":\"{payload}\",\"ttl\":60}}\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    out
}

fn parse(stream: &[u8], chunk: usize) -> usize {
    let mut parser = SseParser::new();
    let mut events = 0;
    for piece in stream.chunks(chunk) {
        parser.handle_input(piece);
        while let Some(item) = parser.poll_event() {
            if let SseItem::Event(event) = item {
                events += black_box(event).data.len().min(1);
            }
        }
    }
    events
}

fn bench(c: &mut Criterion) {
    let small = spark_stream(4 << 20);
    let large = large_data_stream(4 << 20);
    let mut group = c.benchmark_group("sse_parse");
    group.sample_size(20);
    for (name, stream, chunk) in [
        ("spark_events_16k_chunks", &small, 16 * 1024),
        ("spark_events_1500b_chunks", &small, 1500),
        ("4k_payloads_16k_chunks", &large, 16 * 1024),
    ] {
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse(black_box(stream), chunk)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
