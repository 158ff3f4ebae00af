//! spark-protocol DTLS wire parsers: the record header, handshake fragments and every handshake
//! body parser, the key and certificate readers and PEM never panic on any bytes; a parsed record
//! header re-emits to the same 13 bytes, a saved association re-reads to itself; the replay window never accepts a number twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_protocol::dtls::handshake::{
    ClientHello, Fragment, ServerHello, ServerKeyExchange, parse_certificate,
    parse_certificate_request, parse_certificate_verify,
};
use spark_protocol::dtls::record::{HEADER_LEN, RecordHeader, ReplayWindow};
use spark_protocol::dtls::{PrivateKey, PublicKey, SavedAssociation};

fuzz_target!(|data: &[u8]| {
    if let Some((header, body)) = RecordHeader::parse(data) {
        let mut out = [0u8; HEADER_LEN];
        header.emit(&mut out);
        assert_eq!(&out[..], &data[..HEADER_LEN], "header re-emit differs");
        assert_eq!(body.len(), usize::from(header.length));
    }
    let mut rest = data;
    while let Ok((frag, after)) = Fragment::parse(rest) {
        assert!(frag.offset + frag.body.len() <= frag.length);
        rest = after;
    }
    let _ = ClientHello::parse(data);
    let _ = ServerHello::parse(data);
    let _ = ServerKeyExchange::parse(data);
    let _ = parse_certificate(data, true);
    let _ = parse_certificate(data, false);
    let _ = parse_certificate_request(data);
    let _ = parse_certificate_verify(data);
    if let Ok(saved) = SavedAssociation::from_bytes(data) {
        assert_eq!(SavedAssociation::from_bytes(&saved.to_bytes()), Ok(saved));
    }
    let _ = PrivateKey::from_der(data);
    let _ = PublicKey::from_spki(data);
    let _ = PublicKey::from_certificate(data);
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = PublicKey::from_pem(text);
        let _ = PrivateKey::from_pem(text);
    }
    // Replay window: feed sequence numbers two bytes at a time.
    let mut window = ReplayWindow::default();
    let mut seen = std::collections::HashSet::new();
    for pair in data.chunks_exact(2) {
        let seq = u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        if window.is_fresh(seq) {
            assert!(seen.insert(seq), "{seq} accepted twice");
            window.accept(seq);
        }
    }
});
