//! The DTLS client and server of this crate against each other on virtual time: full and
//! abbreviated handshakes, fragmentation under a small PMTU, lost flights and their timers,
//! pinned keys, replays, tampering and alerts.

use core::time::Duration;

use spark_protocol::dtls::{
    Accept, ClientConfig, Connection, Error, Event, PrivateKey, Server, ServerConfig,
    TransportConfig,
};
use spark_protocol::session::Instant;

fn rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

fn key(seed: u8) -> PrivateKey {
    let mut d = [seed; 32];
    d[0] = 0x11;
    PrivateKey::from_scalar(&d).unwrap()
}

const PEER: &[u8] = b"127.0.0.1:40000";

struct Pair {
    now: Instant,
    client: Connection,
    server: Server<4>,
    conn: Option<Connection>,
    /// Datagrams dropped in each direction so far, and how many to drop next.
    drop_to_server: usize,
    drop_to_client: usize,
    datagrams: usize,
    largest: usize,
}

impl Pair {
    fn new(client: ClientConfig, server: ServerConfig) -> Self {
        let now = Instant::from_secs(1);
        Pair {
            now,
            client: Connection::client(now, client, &mut rng()),
            server: Server::new(server, &mut rng()),
            conn: None,
            drop_to_server: 0,
            drop_to_client: 0,
            datagrams: 0,
            largest: 0,
        }
    }

    /// Moves datagrams until both sides are quiet; returns whether anything moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let mut buf = [0u8; 1500];
        loop {
            let mut any = false;
            while let Some(n) = self.client.poll_transmit(&mut buf).unwrap_or(None) {
                any = true;
                self.datagrams += 1;
                self.largest = self.largest.max(n);
                if std::env::var_os("DTLS_TRACE").is_some() {
                    eprintln!("c->s {n} {:02x?}", &buf[..n.min(30)]);
                }
                if self.drop_to_server > 0 {
                    self.drop_to_server -= 1;
                    continue;
                }
                match &mut self.conn {
                    Some(c) => {
                        let _ = c.handle_datagram(self.now, &buf[..n]);
                    }
                    None => {
                        let mut out = [0u8; 256];
                        match self
                            .server
                            .accept(self.now, PEER, &buf[..n], &mut rng(), &mut out)
                            .unwrap()
                        {
                            Accept::Ignore => {}
                            Accept::HelloVerifyRequest(m) => {
                                let _ = self.client.handle_datagram(self.now, &out[..m]);
                            }
                            Accept::Connection(c) => self.conn = Some(c),
                        }
                    }
                }
            }
            if let Some(c) = &mut self.conn {
                while let Some(n) = c.poll_transmit(&mut buf).unwrap_or(None) {
                    any = true;
                    self.datagrams += 1;
                    self.largest = self.largest.max(n);
                    if std::env::var_os("DTLS_TRACE").is_some() {
                        eprintln!("s->c {n} {:02x?}", &buf[..n.min(30)]);
                    }
                    if self.drop_to_client > 0 {
                        self.drop_to_client -= 1;
                        continue;
                    }
                    let _ = self.client.handle_datagram(self.now, &buf[..n]);
                }
            }
            if !any {
                return moved;
            }
            moved = true;
        }
    }

    /// Pumps, advancing virtual time to the next timer whenever both sides are idle.
    fn run(&mut self, limit: usize) {
        for _ in 0..limit {
            self.pump();
            if self.client.is_connected()
                && self.conn.as_ref().is_some_and(Connection::is_connected)
            {
                return;
            }
            if self.client.error().is_some() {
                return;
            }
            let next = [
                self.client.poll_timeout(),
                self.conn.as_ref().and_then(Connection::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(t) = next else { return };
            self.now = t;
            let _ = self.client.handle_timeout(t);
            if let Some(c) = &mut self.conn {
                let _ = c.handle_timeout(t);
            }
        }
    }

    fn server_conn(&mut self) -> &mut Connection {
        self.conn.as_mut().unwrap()
    }
}

fn events(c: &mut Connection) -> Vec<Event> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

fn exchange(client: &mut Connection, server: &mut Connection) {
    let now = Instant::from_secs(100);
    let mut wire = [0u8; 1500];
    let n = client.send(b"hello from the device", &mut wire).unwrap();
    server.handle_datagram(now, &wire[..n]).unwrap();
    let mut got = [0u8; 64];
    let m = server.recv(&mut got).unwrap().unwrap();
    assert_eq!(&got[..m], b"hello from the device");
    let n = server.send(b"and from the cloud", &mut wire).unwrap();
    client.handle_datagram(now, &wire[..n]).unwrap();
    let m = client.recv(&mut got).unwrap().unwrap();
    assert_eq!(&got[..m], b"and from the cloud");
    assert_eq!(client.recv(&mut got).unwrap(), None);
}

fn rpk_configs() -> (ClientConfig, ServerConfig) {
    let device = key(1);
    let cloud = key(2);
    let client = ClientConfig::new(device.clone(), cloud.public_key());
    let mut server = ServerConfig::new(cloud);
    server.client_key = Some(device.public_key());
    (client, server)
}

#[test]
fn raw_public_key_handshake_authenticates_both_sides_and_carries_data() {
    let (client, server) = rpk_configs();
    let device_key = client.key.public_key();
    let cloud_key = client.server_key;
    let mut p = Pair::new(client, server);
    p.run(10);
    assert!(p.client.is_connected(), "{:?}", p.client.error());
    assert_eq!(events(&mut p.client), [Event::Connected { resumed: false }]);
    assert_eq!(p.client.peer_public_key(), Some(cloud_key));
    assert_eq!(p.server_conn().peer_public_key(), Some(device_key));
    let mut s = p.conn.take().unwrap();
    exchange(&mut p.client, &mut s);
}

#[test]
fn session_resumes_with_an_abbreviated_handshake() {
    let (mut client, server) = rpk_configs();
    let mut p = Pair::new(client.clone(), server);
    p.run(10);
    let session = p.client.session().expect("a resumable session");
    let saved = p.server_conn().session().unwrap();
    p.server.remember(saved);
    // The device sleeps, wakes, and comes back with its saved session.
    client.resume = Some(session);
    p.client = Connection::client(p.now, client.clone(), &mut rng());
    p.conn = None;
    p.datagrams = 0;
    p.run(10);
    assert!(
        p.client.is_resumed() && p.client.is_connected(),
        "{:?}",
        p.client.error()
    );
    assert!(p.server_conn().is_resumed());
    // The resumed association still knows which device key proved itself the first time.
    assert_eq!(
        p.server_conn().peer_public_key(),
        Some(client.key.public_key())
    );
    assert_eq!(p.client.peer_public_key(), Some(client.server_key));
    // ClientHello, ClientHello with cookie, ServerHello+CCS+Finished, CCS+Finished (the
    // HelloVerifyRequest comes from `accept` and is not counted).
    assert_eq!(p.datagrams, 4);
    let mut s = p.conn.take().unwrap();
    exchange(&mut p.client, &mut s);
}

#[test]
fn unknown_session_falls_back_to_a_full_handshake() {
    let (mut client, server) = rpk_configs();
    let mut p = Pair::new(client.clone(), server);
    p.run(10);
    client.resume = p.client.session();
    // The server never remembered it.
    p.client = Connection::client(p.now, client, &mut rng());
    p.conn = None;
    p.run(10);
    assert!(p.client.is_connected() && !p.client.is_resumed());
}

#[test]
fn small_pmtu_fragments_every_flight_and_still_connects() {
    let (mut client, mut server) = rpk_configs();
    let small = TransportConfig {
        pmtu: 200,
        ..TransportConfig::default()
    };
    client.transport = small;
    server.transport = small;
    server.send_raw_public_key = true;
    let mut p = Pair::new(client, server);
    p.run(10);
    assert!(p.client.is_connected(), "{:?}", p.client.error());
    assert!(p.largest <= 200, "{}", p.largest);
    assert!(p.datagrams > 8);
}

#[test]
fn lost_flights_are_sent_again_with_doubling_timeouts() {
    let (client, server) = rpk_configs();
    let mut p = Pair::new(client, server);
    // Lose the first ClientHello and the server's first hello flight.
    p.drop_to_server = 1;
    p.pump();
    let first = p.client.poll_timeout().unwrap();
    assert_eq!(first, Instant::from_secs(1) + Duration::from_secs(3));
    p.drop_to_client = 1;
    p.run(20);
    assert!(p.client.is_connected(), "{:?}", p.client.error());
}

#[test]
fn silence_ends_the_handshake_after_the_longest_timeout() {
    let (client, _) = rpk_configs();
    let start = Instant::from_secs(1);
    let mut c = Connection::client(start, client, &mut rng());
    let mut buf = [0u8; 1500];
    let mut sends = 0;
    let mut now;
    let err = loop {
        while c.poll_transmit(&mut buf).unwrap().is_some() {
            sends += 1;
        }
        now = c.poll_timeout().unwrap();
        if let Err(e) = c.handle_timeout(now) {
            break e;
        }
    };
    assert_eq!(err, Error::HandshakeTimeout);
    // 3, 6, 12, 24 s: four sends, then the 24 s wait runs out.
    assert_eq!(sends, 4);
    assert_eq!(now, start + Duration::from_secs(3 + 6 + 12 + 24));
    assert_eq!(c.send(b"x", &mut buf), Err(Error::HandshakeTimeout));
}

#[test]
fn a_server_with_another_key_is_refused_with_an_alert() {
    let (mut client, mut server) = rpk_configs();
    server.send_raw_public_key = true;
    client.server_key = key(9).public_key();
    let mut p = Pair::new(client, server);
    p.run(10);
    assert_eq!(p.client.error(), Some(Error::UnknownPeerKey));
    assert_eq!(
        p.server_conn().error(),
        Some(Error::AlertReceived(
            spark_protocol::dtls::AlertDescription::BadCertificate
        ))
    );
    // The error sticks.
    assert_eq!(p.client.handle_timeout(p.now), Err(Error::UnknownPeerKey));
}

#[test]
fn a_device_with_another_key_is_refused() {
    let (client, mut server) = rpk_configs();
    server.client_key = Some(key(8).public_key());
    let mut p = Pair::new(client, server);
    p.run(10);
    assert_eq!(p.server_conn().error(), Some(Error::UnknownPeerKey));
    assert!(!p.client.is_connected());
    // The server's alert comes at epoch 0 after the client installed its keys; the client
    // takes it instead of waiting out its retransmission timer.
    assert!(
        matches!(p.client.error(), Some(Error::AlertReceived(_))),
        "{:?}",
        p.client.error()
    );
}

#[test]
fn replayed_and_tampered_records_are_dropped() {
    let (client, server) = rpk_configs();
    let mut p = Pair::new(client, server);
    p.run(10);
    let mut s = p.conn.take().unwrap();
    let _ = events(&mut s);
    let mut wire = [0u8; 256];
    let n = p.client.send(b"once", &mut wire).unwrap();
    s.handle_datagram(p.now, &wire[..n]).unwrap();
    s.handle_datagram(p.now, &wire[..n]).unwrap();
    assert_eq!(events(&mut s), [Event::ApplicationData]);
    let mut got = [0u8; 16];
    assert_eq!(s.recv(&mut got).unwrap(), Some(4));
    assert_eq!(s.recv(&mut got).unwrap(), None);
    let n = p.client.send(b"twice", &mut wire).unwrap();
    wire[n - 1] ^= 1;
    s.handle_datagram(p.now, &wire[..n]).unwrap();
    assert_eq!(s.recv(&mut got).unwrap(), None);
    assert!(s.is_connected());
    // An old record still inside the window but never seen is accepted out of order.
    let n1 = p.client.send(b"first", &mut wire).unwrap();
    let first = wire[..n1].to_vec();
    let n2 = p.client.send(b"second", &mut wire).unwrap();
    s.handle_datagram(p.now, &wire[..n2]).unwrap();
    s.handle_datagram(p.now, &first).unwrap();
    assert_eq!(s.recv(&mut got).unwrap(), Some(6));
    assert_eq!(s.recv(&mut got).unwrap(), Some(5));
}

#[test]
fn close_notify_ends_both_sides() {
    let (client, server) = rpk_configs();
    let mut p = Pair::new(client, server);
    p.run(10);
    let mut s = p.conn.take().unwrap();
    p.client.close();
    let mut wire = [0u8; 64];
    let n = p.client.poll_transmit(&mut wire).unwrap().unwrap();
    s.handle_datagram(p.now, &wire[..n]).unwrap();
    assert_eq!(s.error(), Some(Error::Closed));
    assert!(events(&mut s).contains(&Event::Closed));
    assert_eq!(p.client.send(b"x", &mut wire), Err(Error::Closed));
    assert_eq!(s.send(b"x", &mut wire), Err(Error::Closed));
}

#[test]
fn hello_verify_request_costs_the_server_no_state() {
    let (client, server) = rpk_configs();
    let mut c = Connection::client(Instant::ZERO, client, &mut rng());
    let mut server: Server<4> = Server::new(server, &mut rng());
    let mut hello = [0u8; 1500];
    let n = c.poll_transmit(&mut hello).unwrap().unwrap();
    let mut out = [0u8; 256];
    let Accept::HelloVerifyRequest(m) = server
        .accept(Instant::ZERO, PEER, &hello[..n], &mut rng(), &mut out)
        .unwrap()
    else {
        panic!("expected a HelloVerifyRequest");
    };
    c.handle_datagram(Instant::ZERO, &out[..m]).unwrap();
    let n = c.poll_transmit(&mut hello).unwrap().unwrap();
    // The same hello with its cookie, from another address, earns only another request.
    let other = server
        .accept(
            Instant::ZERO,
            b"10.0.0.9:1",
            &hello[..n],
            &mut rng(),
            &mut out,
        )
        .unwrap();
    assert!(matches!(other, Accept::HelloVerifyRequest(_)));
    let ok = server
        .accept(Instant::ZERO, PEER, &hello[..n], &mut rng(), &mut out)
        .unwrap();
    assert!(matches!(ok, Accept::Connection(_)));
    // A small output buffer is reported, not overrun.
    let mut tiny = [0u8; 8];
    assert!(matches!(
        server.accept(Instant::ZERO, b"x", &hello[..n], &mut rng(), &mut tiny),
        Err(Error::InsufficientSize { .. })
    ));
}

/// Every datagram of a real handshake, recorded once.
fn recorded_handshake() -> Vec<(bool, Vec<u8>)> {
    let (client, server) = rpk_configs();
    let now = Instant::ZERO;
    let mut c = Connection::client(now, client, &mut rng());
    let mut server: Server<4> = Server::new(server, &mut rng());
    let mut s: Option<Connection> = None;
    let mut log = Vec::new();
    let mut buf = [0u8; 1500];
    for _ in 0..10 {
        while let Some(n) = c.poll_transmit(&mut buf).unwrap() {
            log.push((true, buf[..n].to_vec()));
            match &mut s {
                Some(s) => s.handle_datagram(now, &buf[..n]).unwrap(),
                None => {
                    let mut out = [0u8; 256];
                    match server
                        .accept(now, PEER, &buf[..n], &mut rng(), &mut out)
                        .unwrap()
                    {
                        Accept::HelloVerifyRequest(m) => {
                            log.push((false, out[..m].to_vec()));
                            c.handle_datagram(now, &out[..m]).unwrap();
                        }
                        Accept::Connection(conn) => s = Some(conn),
                        Accept::Ignore => {}
                    }
                }
            }
        }
        if let Some(s) = &mut s {
            while let Some(n) = s.poll_transmit(&mut buf).unwrap() {
                log.push((false, buf[..n].to_vec()));
                c.handle_datagram(now, &buf[..n]).unwrap();
            }
        }
    }
    assert!(c.is_connected());
    log
}

#[test]
fn mutated_handshake_datagrams_never_panic_and_errors_stick() {
    use rand::{RngExt, SeedableRng};
    let log = recorded_handshake();
    let mut r = rand::rngs::StdRng::seed_from_u64(17);
    for round in 0..300 {
        let (client, server) = rpk_configs();
        let mut c = Connection::client(Instant::ZERO, client, &mut rng());
        let mut server: Server<2> = Server::new(server, &mut rng());
        let mut s: Option<Connection> = None;
        let mut buf = [0u8; 1500];
        for (to_server, d) in &log {
            let mut d = d.clone();
            // Flip, cut or extend a few bytes of some datagrams.
            if r.random_ratio(1, 2) && !d.is_empty() {
                for _ in 0..r.random_range(1..4) {
                    let i = r.random_range(0..d.len());
                    d[i] ^= r.random_range(1..=255u8);
                }
            }
            if r.random_ratio(1, 8) {
                d.truncate(r.random_range(0..=d.len()));
            }
            let now = Instant::from_millis(round);
            if *to_server {
                match &mut s {
                    Some(s) => {
                        let before = s.error();
                        let res = s.handle_datagram(now, &d);
                        if let Some(e) = before {
                            assert_eq!(res, Err(e));
                        }
                    }
                    None => {
                        let mut out = [0u8; 256];
                        if let Ok(Accept::Connection(conn)) =
                            server.accept(now, PEER, &d, &mut rng(), &mut out)
                        {
                            s = Some(conn);
                        }
                    }
                }
            } else {
                let before = c.error();
                let res = c.handle_datagram(now, &d);
                if let Some(e) = before {
                    assert_eq!(res, Err(e));
                }
            }
            while let Ok(Some(n)) = c.poll_transmit(&mut buf) {
                assert!(n <= 1024);
            }
            if let Some(s) = &mut s {
                while let Ok(Some(n)) = s.poll_transmit(&mut buf) {
                    assert!(n <= 1024);
                }
            }
        }
    }
}

#[test]
fn a_restarted_client_gets_a_new_association_from_the_same_address() {
    let (client, server) = rpk_configs();
    let mut p = Pair::new(client.clone(), server);
    p.run(10);
    let mut old = p.conn.take().unwrap();
    let _ = events(&mut old);
    // The device resets and starts over from the same address.
    let mut fresh = Connection::client(p.now, client, &mut rng());
    let mut buf = [0u8; 1500];
    let n = fresh.poll_transmit(&mut buf).unwrap().unwrap();
    assert!(spark_protocol::dtls::is_client_hello(&buf[..n]));
    // The old association neither answers it nor breaks.
    old.handle_datagram(p.now, &buf[..n]).unwrap();
    assert_eq!(old.poll_transmit(&mut [0u8; 1500]).unwrap(), None);
    assert!(old.is_connected());
    // The listener takes it from there.
    p.client = fresh;
    p.conn = None;
    let mut out = [0u8; 256];
    let Accept::HelloVerifyRequest(m) = p
        .server
        .accept(p.now, PEER, &buf[..n], &mut rng(), &mut out)
        .unwrap()
    else {
        panic!("expected a cookie request");
    };
    p.client.handle_datagram(p.now, &out[..m]).unwrap();
    p.run(10);
    assert!(p.client.is_connected() && p.server_conn().is_connected());
    let mut wire = [0u8; 64];
    let n = p.client.send(b"x", &mut wire).unwrap();
    assert!(!spark_protocol::dtls::is_client_hello(&wire[..n]));
}

#[test]
fn a_saved_association_continues_without_a_handshake() {
    use spark_protocol::dtls::SavedAssociation;
    let (client, server) = rpk_configs();
    let server_key = server.key.clone();
    let mut p = Pair::new(client.clone(), server);
    p.run(10);
    let mut s = p.conn.take().unwrap();
    let mut wire = [0u8; 256];
    let n = p.client.send(b"before sleep", &mut wire).unwrap();
    let old_record = wire[..n].to_vec();
    s.handle_datagram(p.now, &old_record).unwrap();
    // Both sides keep their state in "flash" as bytes; the device sleeps.
    let dev_bytes = p.client.save().unwrap().to_bytes();
    let cloud_bytes = s.save().unwrap().to_bytes();
    assert!(
        Connection::client(p.now, client.clone(), &mut rng())
            .save()
            .is_none()
    );
    let dev_saved = SavedAssociation::from_bytes(&dev_bytes).unwrap();
    assert_eq!(dev_saved, p.client.save().unwrap());
    let mut dev = Connection::restore(
        &dev_saved,
        client.key.clone(),
        TransportConfig::default(),
        0,
    );
    let mut cloud = Connection::restore(
        &SavedAssociation::from_bytes(&cloud_bytes).unwrap(),
        server_key,
        TransportConfig::default(),
        0,
    );
    assert!(dev.is_connected() && dev.poll_transmit(&mut wire).unwrap().is_none());
    assert_eq!(cloud.peer_public_key(), Some(client.key.public_key()));
    // Records flow at once, both ways; the record from before the sleep is still a replay.
    let n = dev.send(b"after wake", &mut wire).unwrap();
    cloud.handle_datagram(p.now, &wire[..n]).unwrap();
    cloud.handle_datagram(p.now, &old_record).unwrap();
    let mut got = [0u8; 32];
    assert_eq!(cloud.recv(&mut got).unwrap(), Some(10));
    assert_eq!(&got[..10], b"after wake");
    assert_eq!(cloud.recv(&mut got).unwrap(), None);
    let n = cloud.send(b"welcome back", &mut wire).unwrap();
    dev.handle_datagram(p.now, &wire[..n]).unwrap();
    assert_eq!(dev.recv(&mut got).unwrap(), Some(12));
    // Damaged bytes are refused.
    let mut bad = dev_bytes;
    bad[0] = 9;
    assert!(SavedAssociation::from_bytes(&bad).is_err());
    assert!(SavedAssociation::from_bytes(&dev_bytes[..100]).is_err());
}

#[test]
fn the_server_key_travels_in_a_certificate_only_when_asked() {
    // Device OS's way (the default): no Certificate from the server, the pinned key verifies
    // the ServerKeyExchange. RFC 7250's way: the key in a Certificate. The client takes both.
    for send in [false, true] {
        let (client, mut server) = rpk_configs();
        server.send_raw_public_key = send;
        let mut p = Pair::new(client, server);
        p.run(10);
        assert!(
            p.client.is_connected(),
            "send {send}: {:?}",
            p.client.error()
        );
    }
    // Without a Certificate, a wrong pin fails on the signature instead.
    let (mut client, server) = rpk_configs();
    client.server_key = key(9).public_key();
    let mut p = Pair::new(client, server);
    p.run(10);
    assert_eq!(p.client.error(), Some(Error::BadSignature));
}

#[test]
fn connection_id_records_carry_the_servers_id_and_survive_a_move() {
    use spark_protocol::dtls::{CONNECTION_ID_LEN, record_connection_id};
    let (client, server) = rpk_configs();
    let mut p = Pair::new(client, server);
    p.run(10);
    let mut s = p.conn.take().unwrap();
    let cid = s
        .connection_id()
        .expect("the server gave out an id")
        .to_vec();
    assert_eq!(cid.len(), CONNECTION_ID_LEN);
    assert_eq!(
        p.client.connection_id(),
        None,
        "the device asks for none of its own"
    );
    let _ = events(&mut s);
    let mut wire = [0u8; 256];
    let n = p.client.send(b"via cid", &mut wire).unwrap();
    // Type 25, then version, epoch, sequence, the 8-byte id, the length.
    assert_eq!(wire[0], 25);
    assert_eq!(&wire[11..19], &cid[..]);
    assert_eq!(
        record_connection_id(&wire[..n], CONNECTION_ID_LEN),
        Some((&cid[..], false))
    );
    // 7 bytes + type, padded to 16, plus nonce and tag.
    assert_eq!(
        usize::from(u16::from_be_bytes([wire[19], wire[20]])),
        16 + 16
    );
    s.handle_datagram(p.now, &wire[..n]).unwrap();
    let mut got = [0u8; 32];
    assert_eq!(s.recv(&mut got).unwrap(), Some(7));
    // The device's address changed: its records say so, and still authenticate.
    p.client.set_address_changed(true);
    let n = p.client.send(b"moved", &mut wire).unwrap();
    assert_eq!(
        record_connection_id(&wire[..n], CONNECTION_ID_LEN),
        Some((&cid[..], true))
    );
    s.handle_datagram(p.now, &wire[..n]).unwrap();
    assert_eq!(s.recv(&mut got).unwrap(), Some(5));
    // Another id is not ours: dropped.
    let n = p.client.send(b"forged id", &mut wire).unwrap();
    wire[11] ^= 0xff;
    s.handle_datagram(p.now, &wire[..n]).unwrap();
    assert_eq!(s.recv(&mut got).unwrap(), None);
    // The server's records to the device carry no id.
    let n = s.send(b"back", &mut wire).unwrap();
    assert_eq!(wire[0], 23);
    p.client.handle_datagram(p.now, &wire[..n]).unwrap();
    assert_eq!(p.client.recv(&mut got).unwrap(), Some(4));
}

#[test]
fn without_the_extension_records_are_plain() {
    for (client_offers, server_gives) in [(false, true), (true, false)] {
        let (mut client, mut server) = rpk_configs();
        client.connection_id = client_offers;
        server.connection_id = server_gives;
        let mut p = Pair::new(client, server);
        p.run(10);
        assert!(p.client.is_connected());
        assert_eq!(p.server_conn().connection_id(), None);
        let mut wire = [0u8; 64];
        let n = p.client.send(b"plain", &mut wire).unwrap();
        assert_eq!((wire[0], n), (23, 13 + 8 + 5 + 8));
    }
}

#[test]
fn a_forged_second_hello_verify_request_changes_nothing() {
    let (client, server) = rpk_configs();
    let mut c = Connection::client(Instant::ZERO, client, &mut rng());
    let mut server: Server<2> = Server::new(server, &mut rng());
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 256];
    let n = c.poll_transmit(&mut buf).unwrap().unwrap();
    let Accept::HelloVerifyRequest(m) = server
        .accept(Instant::ZERO, PEER, &buf[..n], &mut rng(), &mut out)
        .unwrap()
    else {
        panic!("expected a cookie request");
    };
    let hvr = out[..m].to_vec();
    c.handle_datagram(Instant::ZERO, &hvr).unwrap();
    let n = c.poll_transmit(&mut buf).unwrap().unwrap();
    let hello = buf[..n].to_vec();
    // Someone sends another request, numbered as the ServerHello will be (message_seq 1),
    // in a fresh record.
    let mut forged = hvr.clone();
    forged[10] = 9; // record sequence number
    forged[18] = 1; // handshake message_seq
    c.handle_datagram(Instant::ZERO, &forged).unwrap();
    assert_eq!(c.poll_transmit(&mut buf).unwrap(), None);
    // The real server's flight still completes the handshake.
    let Accept::Connection(mut s) = server
        .accept(Instant::ZERO, PEER, &hello, &mut rng(), &mut out)
        .unwrap()
    else {
        panic!("expected a connection");
    };
    for _ in 0..4 {
        while let Some(n) = s.poll_transmit(&mut buf).unwrap() {
            c.handle_datagram(Instant::ZERO, &buf[..n]).unwrap();
        }
        while let Some(n) = c.poll_transmit(&mut buf).unwrap() {
            s.handle_datagram(Instant::ZERO, &buf[..n]).unwrap();
        }
    }
    assert!(c.is_connected() && s.is_connected());
}

#[test]
fn a_server_that_asks_for_no_client_key_still_connects() {
    let (client, mut server) = rpk_configs();
    server.require_client_auth = false;
    server.client_key = None;
    let mut p = Pair::new(client, server);
    p.run(10);
    assert!(p.client.is_connected(), "{:?}", p.client.error());
    // Nothing was proven about the device.
    assert_eq!(p.server_conn().peer_public_key(), None);
}
