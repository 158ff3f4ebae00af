//! CoAP reliability above the DTLS channel: confirmable messages survive lost datagrams, a
//! duplicate request is answered with the first reply and not delivered twice, and a silent peer
//! is given up on after MAX_RETRANSMIT retransmissions with doubling timeouts.
#![cfg(feature = "dtls")]

use std::collections::VecDeque;

use spark_protocol::dtls::reliable::{Incoming, Reliability, ReliabilityConfig, ReliabilityEvent};
use spark_protocol::dtls::{Accept, ClientConfig, Connection, PrivateKey, Server, ServerConfig};
use spark_protocol::session::Instant;

fn rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

/// A connected device/cloud pair of DTLS connections.
fn connected() -> (Connection, Connection) {
    let device = PrivateKey::from_scalar(&[0x31; 32]).unwrap();
    let cloud = PrivateKey::from_scalar(&[0x32; 32]).unwrap();
    let mut c = Connection::client(
        Instant::ZERO,
        ClientConfig::new(device, cloud.public_key()),
        &mut rng(),
    );
    let mut server: Server<1> = Server::new(ServerConfig::new(cloud), &mut rng());
    let mut s: Option<Connection> = None;
    let mut buf = [0u8; 1500];
    for _ in 0..10 {
        while let Some(n) = c.poll_transmit(&mut buf).unwrap() {
            match &mut s {
                Some(s) => s.handle_datagram(Instant::ZERO, &buf[..n]).unwrap(),
                None => {
                    let mut out = [0u8; 256];
                    match server
                        .accept(Instant::ZERO, b"dev", &buf[..n], &mut rng(), &mut out)
                        .unwrap()
                    {
                        Accept::HelloVerifyRequest(m) => {
                            c.handle_datagram(Instant::ZERO, &out[..m]).unwrap()
                        }
                        Accept::Connection(conn) => s = Some(conn),
                        Accept::Ignore => {}
                    }
                }
            }
        }
        if let Some(s) = &mut s {
            while let Some(n) = s.poll_transmit(&mut buf).unwrap() {
                c.handle_datagram(Instant::ZERO, &buf[..n]).unwrap();
            }
        }
    }
    let s = s.unwrap();
    assert!(c.is_connected() && s.is_connected());
    (c, s)
}

/// `CON POST /h` with message id `id` and a short payload.
fn hello(id: u16) -> Vec<u8> {
    let mut m = vec![0x40, 0x02];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0xb1, b'h', 0xff, 1, 2, 3]);
    m
}

/// An empty ACK of message `id`.
fn ack(id: u16) -> Vec<u8> {
    let mut m = vec![0x60, 0x00];
    m.extend_from_slice(&id.to_be_bytes());
    m
}

/// Moves what `rel` wants to send through `from` and onto the lossy link.
fn flush(now: Instant, rel: &mut Reliability, from: &mut Connection, link: &mut VecDeque<Vec<u8>>) {
    let mut msg = [0u8; 1024];
    let mut wire = [0u8; 1500];
    while let Some(n) = rel.poll_transmit(&mut msg).unwrap() {
        let m = from.send(&msg[..n], &mut wire).unwrap();
        link.push_back(wire[..m].to_vec());
    }
    let _ = now;
}

/// Delivers the link's datagrams to `to`, dropping those whose index is in `lose`; returns the
/// CoAP messages that came out.
fn deliver(
    now: Instant,
    link: &mut VecDeque<Vec<u8>>,
    to: &mut Connection,
    lose: &mut dyn FnMut() -> bool,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(d) = link.pop_front() {
        if lose() {
            continue;
        }
        to.handle_datagram(now, &d).unwrap();
        let mut buf = [0u8; 1500];
        while let Some(n) = to.recv(&mut buf).unwrap() {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

#[test]
fn confirmable_hello_survives_loss_and_duplicates_are_answered_once() {
    let (mut dev, mut cloud) = connected();
    let mut dev_rel: Reliability = Reliability::new(ReliabilityConfig::default());
    let mut cloud_rel: Reliability = Reliability::new(ReliabilityConfig::default());
    let (mut up, mut down) = (VecDeque::new(), VecDeque::new());
    let mut now = Instant::from_secs(10);
    dev_rel.send(now, &hello(0x1234), &mut rng()).unwrap();
    assert!(!dev_rel.can_send_confirmable(), "NSTART 1");
    // Lose the first two transmissions of the Hello, and the first ACK.
    let mut up_losses = 2;
    let mut down_losses = 1;
    let mut delivered = 0;
    let mut duplicates = 0;
    let mut acked = Vec::new();
    for _ in 0..20 {
        flush(now, &mut dev_rel, &mut dev, &mut up);
        for m in deliver(now, &mut up, &mut cloud, &mut || {
            let lose = up_losses > 0;
            up_losses -= usize::from(lose);
            lose
        }) {
            match cloud_rel.handle_message(now, &m).unwrap() {
                Incoming::New => {
                    delivered += 1;
                    cloud_rel.send(now, &ack(0x1234), &mut rng()).unwrap();
                }
                Incoming::Duplicate { replayed } => {
                    assert!(replayed, "the stored ACK goes out again");
                    duplicates += 1;
                }
                Incoming::Consumed => panic!("a request is not consumed"),
            }
        }
        flush(now, &mut cloud_rel, &mut cloud, &mut down);
        for m in deliver(now, &mut down, &mut dev, &mut || {
            let lose = down_losses > 0;
            down_losses -= usize::from(lose);
            lose
        }) {
            assert_eq!(dev_rel.handle_message(now, &m).unwrap(), Incoming::Consumed);
        }
        acked.extend(core::iter::from_fn(|| dev_rel.poll_event()));
        if !acked.is_empty() {
            break;
        }
        now = dev_rel.poll_timeout().expect("a retransmission is pending");
        dev_rel.handle_timeout(now);
    }
    assert_eq!(acked, [ReliabilityEvent::Acknowledged(0x1234)]);
    assert_eq!(delivered, 1, "the duplicate was not delivered again");
    assert_eq!(
        duplicates, 1,
        "the retransmission after the lost ACK arrived as a duplicate"
    );
    assert!(dev_rel.can_send_confirmable());
    assert_eq!(dev_rel.poll_timeout(), None);
}

#[test]
fn a_silent_peer_is_given_up_after_max_retransmit_with_doubling_timeouts() {
    let mut rel: Reliability = Reliability::new(ReliabilityConfig::default());
    let start = Instant::from_secs(1);
    rel.send(start, &hello(7), &mut rng()).unwrap();
    let mut msg = [0u8; 64];
    let mut sends = Vec::new();
    let mut now = start;
    loop {
        while rel.poll_transmit(&mut msg).unwrap().is_some() {
            sends.push(now.saturating_duration_since(start).as_millis() as u64);
        }
        if let Some(ev) = rel.poll_event() {
            assert_eq!(ev, ReliabilityEvent::GaveUp(7));
            break;
        }
        now = rel.poll_timeout().unwrap();
        rel.handle_timeout(now);
    }
    assert_eq!(
        sends.len(),
        4,
        "one transmission and three retransmissions: {sends:?}"
    );
    // The first wait is 4 to 6 s; each later wait doubles it.
    let first = sends[1];
    assert!((4000..=6000).contains(&first), "{first}");
    assert_eq!(sends[2] - sends[1], 2 * first);
    assert_eq!(sends[3] - sends[2], 4 * first);
}

#[test]
fn non_confirmable_messages_are_sent_once_and_deduplicated() {
    let mut rel: Reliability = Reliability::new(ReliabilityConfig::default());
    let mut non = hello(9);
    non[0] = 0x50; // NON
    rel.send(Instant::ZERO, &non, &mut rng()).unwrap();
    let mut msg = [0u8; 64];
    assert_eq!(rel.poll_transmit(&mut msg).unwrap(), Some(non.len()));
    assert_eq!(rel.poll_transmit(&mut msg).unwrap(), None);
    assert_eq!(rel.poll_timeout(), None);
    assert_eq!(
        rel.handle_message(Instant::ZERO, &non).unwrap(),
        Incoming::New
    );
    assert_eq!(
        rel.handle_message(Instant::from_secs(1), &non).unwrap(),
        Incoming::Duplicate { replayed: false }
    );
    // After the exchange lifetime the id is forgotten.
    assert_eq!(
        rel.handle_message(Instant::from_secs(300), &non).unwrap(),
        Incoming::New
    );
    assert!(rel.handle_message(Instant::ZERO, &[1, 2]).is_err());
}
