//! spark-protocol CoAP codec: any bytes parse to a `Repr` or an error, never a panic; whatever
//! parses re-emits to the same bytes and classifies the same parsed or not; the view's getters and
//! both classifiers never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_protocol::wire::{Packet, Repr, Role, classify, classify_repr};

fuzz_target!(|data: &[u8]| {
    let _ = classify(&Packet::new_unchecked(data), Role::Device);
    let _ = classify(&Packet::new_unchecked(data), Role::Cloud);
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = (
            packet.msg_type(),
            packet.code(),
            packet.message_id(),
            packet.token(),
        );
        let _ = (packet.options().iter().count(), packet.payload());
    }
    if let Ok(repr) = Repr::parse_bytes(data) {
        let mut out = vec![0; repr.buffer_len()];
        let n = repr.emit(&mut out).expect("emit into buffer_len bytes");
        assert_eq!(&out[..n], data, "re-emit differs");
        for role in [Role::Device, Role::Cloud] {
            let from_bytes = classify(&Packet::new_unchecked(data), role);
            assert_eq!(
                classify_repr(&repr, role),
                from_bytes,
                "classifications differ"
            );
        }
    }
});
