//! What a node reads from the cluster bus, where any client of the NATS server may publish: presence messages,
//! events, requests, replies, list requests and list pieces, and administrative changes. No panic; a message that
//! reads back is written again as it was read; a presence message goes through the presence table too (and its
//! lost-peer report), and so does a list piece.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use spark_cloud::cluster::presence::Presence;
use spark_cloud::cluster::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = wire::parse_presence(data) {
        assert_eq!(wire::parse_presence(&wire::emit(&m, b"")).as_ref(), Ok(&m));
        let mut table = Presence::new("fuzz", Duration::from_secs(3));
        let now = Instant::now();
        let _ = table.handle_message(m, now);
        let _ = table.handle_lost_peers(now + Duration::from_secs(3600));
        table.handle_timeout(now + Duration::from_secs(3600));
    }
    if let Ok((header, frame)) = wire::parse_event(data) {
        let again = wire::emit(&header, frame);
        assert_eq!(wire::parse_event(&again), Ok((header, frame)));
    }
    if let Ok((request, body)) = wire::parse_request(data) {
        let again = wire::emit(&request, body);
        assert_eq!(wire::parse_request(&again), Ok((request, body)));
    }
    if let Ok(m) = wire::parse_admin(data) {
        assert_eq!(wire::parse_admin(&wire::emit(&m, b"")).as_ref(), Ok(&m));
    }
    let _ = wire::parse_reply(data);
    if let Ok(request) = wire::parse_list_request(data) {
        assert_eq!(wire::parse_list_request(&wire::emit(&request, b"")), Ok(request));
    }
    if let Ok(piece) = wire::parse_list_piece(data) {
        assert_eq!(wire::parse_list_piece(&wire::emit(&piece, b"")).as_ref(), Ok(&piece));
        // A peer's list goes through the presence table like its heartbeat.
        let mut table = Presence::new("fuzz", Duration::from_secs(3));
        let now = Instant::now();
        let node = piece.node.clone();
        let _ = table.handle_list(&node, piece.count, &piece.digest, piece.devices, now);
    }
});
