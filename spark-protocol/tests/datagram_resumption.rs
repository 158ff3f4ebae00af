//! A device that changes network keeps its cloud session: `DatagramSession::replace_dtls` moves
//! the device's session onto an abbreviated DTLS handshake from a new address, the cloud moves
//! its session onto the connection its listener resumed, and the CoAP state above (message ids,
//! an unacknowledged publish) carries on. In memory on virtual time against the library's
//! listener; `tests/datagram_resumption_openssl.rs` does the device side against `s_server`.
#![cfg(feature = "dtls")]

use core::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::DeviceId;
use spark_protocol::dtls::{self, Accept, ClientConfig, PrivateKey, Server, ServerConfig};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent, NoKeys};
use spark_protocol::session::datagram::{DatagramError, DatagramSession};
use spark_protocol::session::device::{DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware};
use spark_protocol::session::{Instant, Scope};
use spark_protocol::wire::message::Visibility;

const DEVICE_ID: [u8; 12] = [
    0x53, 0xff, 0x6d, 0x06, 0x50, 0x67, 0x55, 0x50, 0x49, 0x28, 0x11, 0x88,
];

type Cloud = DatagramSession<CloudConnection<NoKeys, NoKeys, StdRng>, StdRng>;
type Device = DatagramSession<DeviceConnection<NoFirmware>, StdRng>;

fn device_key() -> PrivateKey {
    PrivateKey::from_scalar(&[0x51; 32]).unwrap()
}

fn cloud_key() -> PrivateKey {
    PrivateKey::from_scalar(&[0x52; 32]).unwrap()
}

fn client_config() -> ClientConfig {
    ClientConfig::new(device_key(), cloud_key().public_key())
}

/// Both sides and the wire between them; `link_up` false drops everything (the old path is
/// gone). `address` is the device's current address, which keys the cloud's associations.
struct World {
    now: Instant,
    device: Device,
    listener: Server<4>,
    /// The association the listener is handshaking, and the address it came from.
    handshaking: Option<(u32, dtls::Connection)>,
    /// The open session and the address its association uses.
    cloud: Option<(u32, Cloud)>,
    address: u32,
    link_up: bool,
    to_cloud: Vec<(u32, Vec<u8>)>,
    to_device: Vec<Vec<u8>>,
    device_events: Vec<DeviceEvent>,
    cloud_events: Vec<CloudEvent>,
    rng: StdRng,
}

impl World {
    fn new() -> World {
        let mut rng = StdRng::seed_from_u64(7);
        let dtls = dtls::Connection::client(Instant::ZERO, client_config(), &mut rng);
        let session = DeviceConnection::datagram(
            Instant::ZERO,
            DeviceConfig::new(DEVICE_ID),
            NoFirmware,
            &mut rng,
        );
        let device = DatagramSession::new(session, dtls, StdRng::seed_from_u64(8));
        World {
            now: Instant::ZERO,
            device,
            listener: Server::new(ServerConfig::new(cloud_key()), &mut rng),
            handshaking: None,
            cloud: None,
            address: 1,
            link_up: true,
            to_cloud: Vec::new(),
            to_device: Vec::new(),
            device_events: Vec::new(),
            cloud_events: Vec::new(),
            rng,
        }
    }

    fn cloud(&mut self) -> &mut Cloud {
        &mut self.cloud.as_mut().unwrap().1
    }

    /// The cloud's listener loop: datagrams from the open association's address go to its
    /// session, others to the listener; a finished handshake either opens a session or, when
    /// it resumed the open session's DTLS session, moves that session onto it.
    fn deliver_to_cloud(&mut self, from: u32, datagram: &[u8]) {
        let now = self.now;
        if let Some((at, cloud)) = &mut self.cloud
            && *at == from
            && !dtls::is_client_hello(datagram)
        {
            cloud.handle_datagram(now, datagram).unwrap();
            return;
        }
        if let Some((at, conn)) = &mut self.handshaking
            && *at == from
            && !dtls::is_client_hello(datagram)
        {
            conn.handle_datagram(now, datagram).unwrap();
        } else {
            let mut out = [0u8; 256];
            let peer = from.to_be_bytes();
            match self
                .listener
                .accept(now, &peer, datagram, &mut self.rng, &mut out)
                .unwrap()
            {
                Accept::HelloVerifyRequest(m) => self.to_device.push(out[..m].to_vec()),
                Accept::Connection(conn) => self.handshaking = Some((from, conn)),
                Accept::Ignore => {}
            }
        }
        let done = self
            .handshaking
            .as_ref()
            .is_some_and(|(_, c)| c.is_connected());
        if !done {
            return;
        }
        let (at, conn) = self.handshaking.take().unwrap();
        assert_eq!(conn.peer_public_key(), Some(device_key().public_key()));
        match &mut self.cloud {
            Some((old_at, cloud)) if conn.is_resumed() => {
                assert_eq!(
                    conn.session().map(|s| s.id().to_vec()),
                    cloud.dtls().session().map(|s| s.id().to_vec()),
                    "a resumed association continues the session it resumed"
                );
                *old_at = at;
                let _old = cloud.replace_dtls(conn).unwrap();
            }
            Some(_) => panic!("a second full handshake: the device should have resumed"),
            None => {
                self.listener.remember(conn.session().unwrap());
                let session = CloudConnection::datagram(
                    now,
                    NoKeys,
                    NoKeys,
                    StdRng::seed_from_u64(9),
                    cloud_config(),
                    DeviceId::from_bytes(DEVICE_ID),
                );
                let cloud = DatagramSession::new(session, conn, StdRng::seed_from_u64(10));
                self.cloud = Some((at, cloud));
            }
        }
    }

    /// One round: both sides send, the wire delivers (or drops), timers run.
    fn step(&mut self) {
        let now = self.now;
        let mut buf = vec![0u8; 2048];
        while let Some(n) = self.device.poll_transmit(now, &mut buf).unwrap() {
            self.to_cloud.push((self.address, buf[..n].to_vec()));
        }
        if let Some((_, conn)) = &mut self.handshaking {
            while let Some(n) = conn.poll_transmit(&mut buf).unwrap() {
                self.to_device.push(buf[..n].to_vec());
            }
        }
        if let Some((_, cloud)) = &mut self.cloud {
            while let Some(n) = cloud.poll_transmit(now, &mut buf).unwrap() {
                self.to_device.push(buf[..n].to_vec());
            }
        }
        let (to_cloud, to_device) = (
            core::mem::take(&mut self.to_cloud),
            core::mem::take(&mut self.to_device),
        );
        if self.link_up {
            for (from, d) in to_cloud {
                self.deliver_to_cloud(from, &d);
            }
            for d in to_device {
                self.device.handle_datagram(now, &d).unwrap();
            }
        }
        self.device.handle_timeout(now).unwrap();
        self.device_events
            .extend(core::iter::from_fn(|| self.device.poll_event()));
        if let Some((_, conn)) = &mut self.handshaking {
            conn.handle_timeout(now).unwrap();
        }
        if let Some((_, cloud)) = &mut self.cloud {
            cloud.handle_timeout(now).unwrap();
            self.cloud_events
                .extend(core::iter::from_fn(|| cloud.poll_event()));
        }
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(
                self.now < end,
                "not done in {limit:?}: device {:?} ({:?}, dtls {:?}), cloud {:?} (handshaking: {:?})",
                self.device_events,
                self.device,
                self.device.dtls().error(),
                self.cloud_events,
                self.handshaking
                    .as_ref()
                    .map(|(a, c)| (a, c.is_connected(), c.error())),
            );
            self.step();
            self.now += Duration::from_millis(10);
        }
    }

    fn published(&self) -> Vec<Vec<u8>> {
        self.cloud_events
            .iter()
            .filter_map(|e| match e {
                CloudEvent::Published(p) => Some(p.name.clone()),
                _ => None,
            })
            .collect()
    }
}

fn cloud_config() -> CloudConfig {
    let mut config = CloudConfig::default();
    config.idle_timeout = Duration::from_secs(120);
    config
}

#[test]
fn a_device_that_changes_network_resumes_and_keeps_its_session() {
    let mut w = World::new();
    w.run_until(Duration::from_secs(30), |w| {
        w.device_events.contains(&DeviceEvent::Connected)
            && w.cloud_events
                .iter()
                .any(|e| matches!(e, CloudEvent::Connected(_)))
    });
    assert!(!w.device.dtls().is_resumed());
    let now = w.now;
    w.device
        .session_mut()
        .publish(now, b"before", None, Visibility::Private, 60)
        .unwrap();
    w.run_until(Duration::from_secs(30), |w| w.published().len() == 1);

    // The network changes: the old path drops everything, and a subscription (confirmable)
    // goes out into it.
    w.link_up = false;
    w.device
        .session_mut()
        .subscribe(b"cmd", Scope::MyDevices)
        .unwrap();
    for _ in 0..20 {
        w.step();
        w.now += Duration::from_millis(10);
    }
    assert!(
        !w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::Subscribed(_)))
    );

    // On the new network: a new address and an abbreviated handshake on the saved session.
    let mut config = client_config();
    config.resume = Some(w.device.dtls().session().unwrap());
    let resumed = dtls::Connection::client(w.now, config, &mut w.rng);
    let old = w.device.replace_dtls(resumed).unwrap();
    assert!(old.is_connected());
    w.address = 2;
    w.link_up = true;
    // The CoAP layer sends the lost subscription again, over the new association.
    w.run_until(Duration::from_secs(60), |w| {
        w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::Subscribed(_)))
    });
    assert!(w.device.dtls().is_resumed());
    assert!(w.cloud().dtls().is_resumed());
    assert_eq!(w.cloud.as_ref().unwrap().0, 2);

    // The device's message counter carried on (the cloud checks each id is the last plus one),
    // and neither side said Hello again (the cloud's session refuses a second one).
    let now = w.now;
    w.device
        .session_mut()
        .publish(now, b"after", None, Visibility::Private, 60)
        .unwrap();
    w.run_until(Duration::from_secs(30), |w| w.published().len() == 2);
    assert_eq!(w.published(), [b"before".to_vec(), b"after".to_vec()]);
    let count =
        |w: &World, f: fn(&CloudEvent) -> bool| w.cloud_events.iter().filter(|e| f(e)).count();
    assert_eq!(count(&w, |e| matches!(e, CloudEvent::Subscribed(_))), 1);
    assert_eq!(count(&w, |e| matches!(e, CloudEvent::Connected(_))), 1);
    assert_eq!(
        w.device_events
            .iter()
            .filter(|e| **e == DeviceEvent::Connected)
            .count(),
        1
    );
    assert_eq!(w.device.error(), None);
    assert_eq!(w.cloud().error(), None);
}

#[test]
fn a_session_the_peer_closed_is_not_moved() {
    let mut w = World::new();
    w.run_until(Duration::from_secs(30), |w| {
        w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::Connected(_)))
    });
    let now = w.now;
    w.cloud().close(now);
    let mut buf = vec![0u8; 2048];
    let n = w.cloud().poll_transmit(now, &mut buf).unwrap().unwrap();
    assert_eq!(
        w.device.handle_datagram(now, &buf[..n]),
        Err(DatagramError::Dtls(dtls::Error::Closed))
    );
    let mut config = client_config();
    config.resume = w.device.dtls().session();
    let next = dtls::Connection::client(now, config, &mut w.rng);
    assert!(w.device.replace_dtls(next).is_err());
    assert!(w.device.error().is_some());
}
