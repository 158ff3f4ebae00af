//! spark-protocol DTLS connections on hostile datagrams: a client (fresh, or restored from a saved
//! association) and the server's listener (or a restored server association) take
//! any sequence of datagrams (length-prefixed in the input) and timer ticks without panicking,
//! never write past the caller's buffer, never exceed the PMTU, and a failed connection keeps
//! returning the error it failed with.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::dtls::{
    Accept, ClientConfig, Connection, PrivateKey, SavedAssociation, Server, ServerConfig,
    TransportConfig,
};
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

/// A saved association both sides can be restored from without any public-key work.
fn saved(role: u8) -> SavedAssociation {
    let mut b = [0u8; SavedAssociation::LEN];
    b[0] = role;
    b[1..49].fill(7);
    b[113] = 4;
    SavedAssociation::from_bytes(&b).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(1);
    // Keys are made once: deriving a public key is a scalar multiplication.
    static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
    let (device, cloud) = KEYS
        .get_or_init(|| {
            (
                PrivateKey::from_scalar(&[1; 32]).unwrap(),
                PrivateKey::from_scalar(&[2; 32]).unwrap(),
            )
        })
        .clone();
    // Odd first byte: a fresh client mid-handshake (an ECDHE key generation per input, slow);
    // even: an established association restored from saved state (records, alerts, late
    // handshake messages).
    let mut client = if mode & 1 == 1 {
        Connection::client(
            Instant::ZERO,
            ClientConfig::new(device, cloud.public_key()),
            &mut rng,
        )
    } else {
        Connection::restore(
            &saved(1),
            device,
            TransportConfig::default(),
            u64::from(mode),
        )
    };
    let mut server: Server<2> = Server::new(ServerConfig::new(cloud.clone()), &mut rng);
    let mut accepted: Option<Connection> = (mode & 2 == 2)
        .then(|| Connection::restore(&saved(2), cloud, TransportConfig::default(), 0));
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
                if let Ok(Accept::Connection(conn)) =
                    server.accept(t, b"peer", datagram, &mut rng, &mut out)
                {
                    accepted = Some(conn);
                }
            }
        }
    }
});
