//! spark-protocol DTLS connections on hostile datagrams: a client and the server's listener take
//! any sequence of datagrams (length-prefixed in the input) and timer ticks without panicking,
//! never write past the caller's buffer, never exceed the PMTU, and a failed connection keeps
//! returning the error it failed with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::dtls::{Accept, ClientConfig, Connection, PrivateKey, Server, ServerConfig};
use spark_protocol::session::Instant;

fn drain(conn: &mut Connection) {
    let mut out = [0u8; 1500];
    for _ in 0..64 {
        match conn.poll_transmit(&mut out) {
            Ok(Some(n)) => assert!(n <= 1024, "datagram above the PMTU"),
            _ => break,
        }
    }
    while conn.poll_event().is_some() {}
    let mut rx = [0u8; 2048];
    while let Ok(Some(_)) = conn.recv(&mut rx) {}
}

fuzz_target!(|data: &[u8]| {
    let mut rng = StdRng::seed_from_u64(1);
    let device = PrivateKey::from_scalar(&[1; 32]).unwrap();
    let cloud = PrivateKey::from_scalar(&[2; 32]).unwrap();
    let mut client = Connection::client(ClientConfig::new(device, cloud.public_key()), Instant::ZERO, &mut rng);
    let mut server: Server<2> = Server::new(ServerConfig::new(cloud), &mut rng);
    let mut accepted: Option<Connection> = None;
    drain(&mut client);
    let mut rest = data;
    let mut now = 0u64;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]) & 0x7ff);
        let (datagram, after) = tail.split_at(len.min(tail.len()));
        rest = after;
        now += u64::from(*lo) * 100;
        let t = Instant::from_millis(now);
        let before = client.error();
        let result = client.handle_datagram(t, datagram);
        if let Some(e) = before {
            assert_eq!(result, Err(e), "a failed connection changed its error");
        }
        let _ = client.handle_timeout(t);
        drain(&mut client);
        let mut out = [0u8; 256];
        match accepted.as_mut() {
            Some(conn) => {
                let _ = conn.handle_datagram(t, datagram);
                let _ = conn.handle_timeout(t);
                drain(conn);
            }
            None => {
                if let Ok(Accept::Connection(conn)) = server.accept(t, b"peer", datagram, &mut rng, &mut out) {
                    accepted = Some(conn);
                }
            }
        }
    }
});
