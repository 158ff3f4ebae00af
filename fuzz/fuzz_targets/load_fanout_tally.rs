//! spark-load's fan-out tally on arbitrary bytes: no panic, and the same counts whatever the cut into pieces (the
//! first byte picks the piece size and the subscriber's user).

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_load::fanout::{Received, StreamTally};

fn tally(data: &[u8], piece: usize, user: usize) -> Received {
    let mut t = StreamTally::new(user);
    for part in data.chunks(piece.max(1)) {
        t.feed(part);
    }
    t.received
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    let user = usize::from(control >> 4);
    let piece = usize::from(control & 0x0F) + 1;
    assert_eq!(tally(data, piece, user), tally(data, data.len(), user));
});
