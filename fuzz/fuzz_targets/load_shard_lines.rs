//! spark-load's shard protocol on arbitrary text: a line from a shard process ([`ShardMsg::parse`]) and a shard's
//! spec ([`ShardSpec`]'s `FromStr`): no panic, and whatever parses writes back to text that parses to the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_load::shard::{ShardMsg, ShardSpec};

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    // A line as the parent reads it: no line end inside.
    if !text.contains(['\n', '\r'])
        && let Ok(m) = ShardMsg::parse(text)
    {
        assert_eq!(ShardMsg::parse(&m.to_string()), Ok(m));
    }
    if let Ok(spec) = text.parse::<ShardSpec>() {
        assert_eq!(spec.to_string().parse::<ShardSpec>().ok(), Some(spec));
    }
});
