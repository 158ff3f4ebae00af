//! Property tests of the event-stream parser: the events never depend on how the bytes are chunked, they match a
//! model of the stream, and no input makes the parser panic or grow past its limit.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use spark_api::sse::{SseEvent, SseItem, SseParser};

fn config() -> Config {
    Config {
        cases: 512,
        rng_seed: RngSeed::Fixed(0x5AA4_C0DE),
        failure_persistence: None,
        ..Config::default()
    }
}

fn parse_chunked(bytes: &[u8], cuts: &[usize], max: usize) -> (Vec<SseItem>, bool) {
    let mut parser = SseParser::with_max_event_size(max);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    let mut items = Vec::new();
    for pair in points.windows(2) {
        parser.handle_input(&bytes[pair[0]..pair[1]]);
        while let Some(item) = parser.poll_event() {
            items.push(item);
        }
    }
    (items, parser.has_partial())
}

#[derive(Debug, Clone)]
struct ModelEvent {
    name: Option<String>,
    data_lines: Vec<String>,
    ending: &'static str,
    comment_before: bool,
    keep_alives_after: usize,
}

fn model_event() -> impl Strategy<Value = ModelEvent> {
    (
        proptest::option::of("[a-zA-Z0-9/_:.-]{1,20}"),
        proptest::collection::vec("\\PC{0,24}", 1..4),
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        any::<bool>(),
        0usize..3,
    )
        .prop_map(
            |(name, data_lines, ending, comment_before, keep_alives_after)| ModelEvent {
                name,
                data_lines,
                ending,
                comment_before,
                keep_alives_after,
            },
        )
}

fn serialize(events: &[ModelEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        if e.comment_before {
            out.extend_from_slice(b":ok");
            out.extend_from_slice(e.ending.as_bytes());
        }
        if let Some(name) = &e.name {
            out.extend_from_slice(format!("event: {name}{}", e.ending).as_bytes());
        }
        for line in &e.data_lines {
            out.extend_from_slice(format!("data: {line}{}", e.ending).as_bytes());
        }
        out.extend_from_slice(e.ending.as_bytes());
        for _ in 0..e.keep_alives_after {
            out.extend_from_slice(e.ending.as_bytes());
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_streams_parse_to_the_model_under_any_chunking(
        events in proptest::collection::vec(model_event(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let bytes = serialize(&events);
        let expected: Vec<SseItem> = events
            .iter()
            .map(|e| SseItem::Event(SseEvent {
                event: e.name.clone(),
                data: e.data_lines.join("\n"),
                id: None,
                retry: None,
            }))
            .collect();
        let (whole, _) = parse_chunked(&bytes, &[], 1 << 20);
        prop_assert_eq!(&whole, &expected);
        let (chunked, partial) = parse_chunked(&bytes, &cuts, 1 << 20);
        prop_assert_eq!(&chunked, &expected);
        prop_assert!(!partial);
        // One byte at a time.
        let every: Vec<usize> = (0..bytes.len()).collect();
        let (bytewise, _) = parse_chunked(&bytes, &every, 1 << 20);
        prop_assert_eq!(&bytewise, &expected);
    }

    #[test]
    fn arbitrary_bytes_are_chunking_invariant(
        bytes in proptest::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                2 => Just(b'\n'),
                2 => Just(b'\r'),
                1 => Just(b':'),
                1 => Just(0xEF), 1 => Just(0xBB), 1 => Just(0xBF),
            ],
            0..400,
        ),
        prefix in prop_oneof![Just(&b""[..]), Just(&b"data:"[..]), Just(&b"\xEF\xBB"[..]), Just(&b"\xEF\xBB\xBFevent:"[..])],
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        max in prop_oneof![Just(1usize << 20), 1usize..64],
    ) {
        let mut input = prefix.to_vec();
        input.extend_from_slice(&bytes);
        let (whole, _) = parse_chunked(&input, &[], max);
        let (chunked, _) = parse_chunked(&input, &cuts, max);
        prop_assert_eq!(&whole, &chunked);
        for item in &whole {
            if let SseItem::Event(event) = item {
                prop_assert!(event.data.len() <= max * 3, "event larger than the limit allows");
            }
        }
    }
}
