//! The event-stream parser on arbitrary bytes: no panic, the same items whatever the chunking (the first byte picks
//! the chunk size and the size limit), typed-event decoding never panics either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_api::sse::{SseItem, SseParser};

fn parse(data: &[u8], chunk: usize, max: usize) -> Vec<SseItem> {
    let mut parser = SseParser::with_max_event_size(max);
    let mut items = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        parser.handle_input(piece);
        while let Some(item) = parser.poll_event() {
            items.push(item);
        }
    }
    items
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(control & 0x0F) + 1;
    let max = if control & 0x80 != 0 {
        usize::from(control & 0x70) + 1
    } else {
        1 << 20
    };
    let whole = parse(data, data.len().max(1), max);
    let chunked = parse(data, chunk, max);
    assert_eq!(whole, chunked);
    for item in &whole {
        if let SseItem::Event(event) = item {
            let name = event.event.as_deref().unwrap_or("message");
            let _ = spark_api::Event::from_sse(name, &event.data);
        }
    }
});
