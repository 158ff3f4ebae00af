//! The loop `benches/dtls.rs` times really serves many clients: K sequential full handshakes from
//! the library's client against one `openssl s_server -dtls1_2` process (and against the
//! library's own listener), each with a line both ways, counted on both sides. Without this a
//! bench loop whose handshakes failed would time the failures.
#![cfg(all(feature = "dtls", feature = "std", target_os = "linux"))]

#[path = "sequential_handshakes/mod.rs"]
mod sequential_handshakes;

use sequential_handshakes::{Identities, LibraryServer, OpensslServer, run};

const K: u64 = 6;

#[test]
fn one_openssl_s_server_serves_sequential_full_handshakes_with_data_both_ways() {
    let ids = Identities::new("openssl").unwrap();
    let mut server = OpensslServer::start(&ids, "device").unwrap();
    let before = server.cpu();
    let done = run(&ids.client_config("device", false), &mut server, |n| n < K).unwrap();
    assert_eq!(done, K);
    // s_server printed each client's line, once and in order: every association reached it.
    let expected: Vec<String> = (0..K).map(|i| format!("ping {i}")).collect();
    assert_eq!(server.printed, expected);
    assert!(server.running(), "s_server exited during the loop");
    // The CPU readings the bench divides are readable for this process.
    assert!(server.cpu().nanos > before.nanos);
}

#[test]
fn the_loop_stops_at_the_first_failed_handshake() {
    // s_server trusts only the stranger's certificate: the device's handshake must fail,
    // and the loop must say so instead of counting it.
    let ids = Identities::new("refused").unwrap();
    let mut server = OpensslServer::start(&ids, "stranger").unwrap();
    let err = run(&ids.client_config("device", false), &mut server, |n| n < K).unwrap_err();
    assert!(err.starts_with("association 0:"), "{err}");
    // OpenSSL's unknown_ca alert, taken at once rather than after the retransmission timers.
    assert!(err.contains("alert"), "{err}");
    assert!(server.printed.is_empty());
}

#[test]
fn the_library_listener_serves_the_same_loop_with_both_key_forms() {
    let ids = Identities::new("library").unwrap();
    for raw_public_keys in [false, true] {
        let mut server = LibraryServer::start(ids.server_config()).unwrap();
        let done = run(
            &ids.client_config("device", raw_public_keys),
            &mut server,
            |n| n < K,
        )
        .unwrap();
        assert_eq!(done, K);
        let report = server.stop().unwrap();
        assert_eq!(report.handshakes, K, "raw public keys: {raw_public_keys}");
        assert_eq!(report.answered, K);
    }
}
