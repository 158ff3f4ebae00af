//! The datagram (UDP) session's cost per message against the TCP dialect's, in the same run.
//!
//! One message is the cloud delivering a 32-byte event to a subscribed device and everything
//! that follows until both sides are quiet: over TCP one AES-128-CBC frame; over UDP one
//! AES-128-CCM-8 DTLS record with the CoAP layer's bookkeeping, and the device's ACK record
//! back (the event is confirmable over UDP). Both pairs run in memory on one thread, so the
//! ratio is CPU work; the absolute figures move with the machine's load, the ratio much less.

use std::hint::black_box;
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, criterion_group};
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::DeviceId;
use spark_protocol::crypto::SessionKey;
use spark_protocol::dtls::{self, Accept, ClientConfig, PrivateKey, Server, ServerConfig};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, NoKeys, OutgoingEvent};
use spark_protocol::session::datagram::DatagramSession;
use spark_protocol::session::device::{DeviceConfig, DeviceConnection, NoFirmware};
use spark_protocol::session::{Connection, Instant, Scope};

const ID: [u8; 12] = [9; 12];
const EVENT: OutgoingEvent<'static> = OutgoingEvent {
    name: b"bench/event",
    data: Some(&[0x55; 32]),
    ttl: 60,
    private: true,
};

type Cloud = CloudConnection<NoKeys, NoKeys, StdRng>;

struct TcpPair {
    device: DeviceConnection<NoFirmware>,
    cloud: Cloud,
    buf: Vec<u8>,
}

impl TcpPair {
    fn new() -> Self {
        let secret = SessionKey::from_bytes([7; 40]);
        let device = DeviceConnection::from_session(
            Instant::ZERO,
            &secret,
            DeviceConfig::new(ID),
            NoFirmware,
        );
        let cloud = CloudConnection::from_session(
            Instant::ZERO,
            NoKeys,
            NoKeys,
            StdRng::seed_from_u64(1),
            CloudConfig::default(),
            &secret,
            DeviceId::from_bytes(ID),
        );
        let mut pair = TcpPair {
            device,
            cloud,
            buf: vec![0; 4096],
        };
        pair.settle();
        pair.device.subscribe(b"bench", Scope::MyDevices).unwrap();
        pair.settle();
        assert!(pair.cloud.is_established());
        pair
    }

    fn settle(&mut self) {
        loop {
            let mut moved = false;
            while let Some(n) = self
                .device
                .poll_transmit(Instant::ZERO, &mut self.buf)
                .unwrap()
            {
                self.cloud
                    .handle_input(Instant::ZERO, &self.buf[..n])
                    .unwrap();
                moved = true;
            }
            while let Some(n) = self
                .cloud
                .poll_transmit(Instant::ZERO, &mut self.buf)
                .unwrap()
            {
                self.device
                    .handle_input(Instant::ZERO, &self.buf[..n])
                    .unwrap();
                moved = true;
            }
            while self.device.poll_event().is_some() {}
            while self.cloud.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    fn message(&mut self) {
        self.cloud.deliver_event(black_box(&EVENT)).unwrap();
        self.settle();
    }
}

struct UdpPair {
    device: DatagramSession<DeviceConnection<NoFirmware>, StdRng>,
    cloud: DatagramSession<Cloud, StdRng>,
    buf: Vec<u8>,
}

impl UdpPair {
    fn new() -> Self {
        let device_key = PrivateKey::from_scalar(&[0x41; 32]).unwrap();
        let cloud_key = PrivateKey::from_scalar(&[0x42; 32]).unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        let mut client = dtls::Connection::client(
            Instant::ZERO,
            ClientConfig::new(device_key, cloud_key.public_key()),
            &mut rng,
        );
        let mut server: Server<1> = Server::new(ServerConfig::new(cloud_key), &mut rng);
        let mut conn: Option<dtls::Connection> = None;
        let mut buf = vec![0u8; 2048];
        for _ in 0..10 {
            while let Some(n) = client.poll_transmit(&mut buf).unwrap() {
                match &mut conn {
                    Some(c) => c.handle_datagram(Instant::ZERO, &buf[..n]).unwrap(),
                    None => {
                        let mut out = [0u8; 256];
                        match server
                            .accept(Instant::ZERO, b"d", &buf[..n], &mut rng, &mut out)
                            .unwrap()
                        {
                            Accept::HelloVerifyRequest(m) => {
                                client.handle_datagram(Instant::ZERO, &out[..m]).unwrap()
                            }
                            Accept::Connection(c) => conn = Some(c),
                            Accept::Ignore => {}
                        }
                    }
                }
            }
            if let Some(c) = &mut conn {
                while let Some(n) = c.poll_transmit(&mut buf).unwrap() {
                    client.handle_datagram(Instant::ZERO, &buf[..n]).unwrap();
                }
            }
        }
        let device = DeviceConnection::datagram(
            Instant::ZERO,
            DeviceConfig::new(ID),
            NoFirmware,
            &mut StdRng::seed_from_u64(3),
        );
        let cloud = CloudConnection::datagram(
            Instant::ZERO,
            NoKeys,
            NoKeys,
            StdRng::seed_from_u64(4),
            CloudConfig::default(),
            DeviceId::from_bytes(ID),
        );
        let mut pair = UdpPair {
            device: DatagramSession::new(device, client, StdRng::seed_from_u64(5)),
            cloud: DatagramSession::new(cloud, conn.expect("handshake"), StdRng::seed_from_u64(6)),
            buf,
        };
        pair.settle();
        pair.device
            .session_mut()
            .subscribe(b"bench", Scope::MyDevices)
            .unwrap();
        pair.settle();
        assert!(pair.cloud.session().is_established());
        pair
    }

    fn settle(&mut self) {
        loop {
            let mut moved = false;
            while let Some(n) = self
                .device
                .poll_transmit(Instant::ZERO, &mut self.buf)
                .unwrap()
            {
                self.cloud
                    .handle_datagram(Instant::ZERO, &self.buf[..n])
                    .unwrap();
                moved = true;
            }
            while let Some(n) = self
                .cloud
                .poll_transmit(Instant::ZERO, &mut self.buf)
                .unwrap()
            {
                self.device
                    .handle_datagram(Instant::ZERO, &self.buf[..n])
                    .unwrap();
                moved = true;
            }
            while self.device.poll_event().is_some() {}
            while self.cloud.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    fn message(&mut self) {
        self.cloud
            .session_mut()
            .deliver_event(black_box(&EVENT))
            .unwrap();
        self.settle();
    }
}

/// Median time per message over `rounds` rounds of `n` messages.
fn per_message(mut one: impl FnMut(), n: u32, rounds: usize) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = StdInstant::now();
            for _ in 0..n {
                one();
            }
            start.elapsed() / n
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn bench(c: &mut Criterion) {
    let mut tcp = TcpPair::new();
    let mut udp = UdpPair::new();
    let mut group = c.benchmark_group("session_message");
    group.bench_function("tcp_event_to_device", |b| b.iter(|| tcp.message()));
    group.bench_function("udp_event_to_device", |b| b.iter(|| udp.message()));
    group.finish();

    // The same-run ratio, interleaved so that load changes hit both alike.
    let mut tcp_t = Vec::new();
    let mut udp_t = Vec::new();
    for _ in 0..5 {
        tcp_t.push(per_message(|| tcp.message(), 2000, 3));
        udp_t.push(per_message(|| udp.message(), 2000, 3));
    }
    tcp_t.sort();
    udp_t.sort();
    let (t, u) = (tcp_t[2], udp_t[2]);
    println!(
        "per message, same run: TCP {t:?}, UDP {u:?}, UDP/TCP = {:.2}",
        u.as_secs_f64() / t.as_secs_f64()
    );
    println!(
        "size_of: DatagramSession<DeviceConnection> {} B, DeviceConnection {} B",
        std::mem::size_of::<DatagramSession<DeviceConnection<NoFirmware>, StdRng>>(),
        std::mem::size_of::<DeviceConnection<NoFirmware>>()
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
