//! The cloud protocol's sessions over DTLS datagrams (the UDP protocol): a device
//! (`DeviceConnection::datagram`) and a cloud (`CloudConnection::datagram`), each inside a
//! `DatagramSession`, talk through a link that loses 5% of datagrams, duplicates 3% and reorders
//! them (deterministic seed, virtual time), and over real UDP sockets on loopback.
#![cfg(feature = "dtls")]

use core::time::Duration;
use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_protocol::DeviceId;
use spark_protocol::dtls::reliable::ReliabilityConfig;
use spark_protocol::dtls::{self, Accept, ClientConfig, PrivateKey, Server, ServerConfig};
use spark_protocol::session::cloud::{
    CloudConfig, CloudConnection, CloudEvent, NoKeys, OtaEvent, OtaOptions, OutgoingEvent,
};
use spark_protocol::session::datagram::{DatagramError, DatagramSession, ParkError};
use spark_protocol::session::device::{
    BufferSink, DeviceConfig, DeviceConnection, DeviceEvent, FirmwareSink, FunctionCallEvent,
    NoFirmware,
};
use spark_protocol::session::{Instant, Scope};
use spark_protocol::wire::message::{Value, Visibility};
use spark_protocol::{VarType, VariableValue};

const DEVICE_ID: [u8; 12] = [
    0x53, 0xff, 0x6d, 0x06, 0x50, 0x67, 0x55, 0x50, 0x49, 0x28, 0x11, 0x87,
];

type Cloud = DatagramSession<CloudConnection<NoKeys, NoKeys, StdRng>, StdRng>;
type Device<S> = DatagramSession<DeviceConnection<S>, StdRng>;

fn device_key() -> PrivateKey {
    PrivateKey::from_scalar(&[0x41; 32]).unwrap()
}

fn cloud_key() -> PrivateKey {
    PrivateKey::from_scalar(&[0x42; 32]).unwrap()
}

fn device<S: FirmwareSink>(seed: u64, sink: S) -> Device<S> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dtls = dtls::Connection::client(
        Instant::ZERO,
        ClientConfig::new(device_key(), cloud_key().public_key()),
        &mut rng,
    );
    let mut session =
        DeviceConnection::datagram(Instant::ZERO, DeviceConfig::new(DEVICE_ID), sink, &mut rng);
    session.register_function(b"brew").unwrap();
    session.register_variable(b"temp", VarType::Double).unwrap();
    DatagramSession::new(session, dtls, rng)
}

/// The cloud's settings for a UDP device: its idle timer outlasts CoAP's longest retransmission
/// (MAX_TRANSMIT_WAIT, 93 s), since a duplicate proves nothing new to the session above.
fn cloud_config() -> CloudConfig {
    let mut config = CloudConfig::default();
    config.idle_timeout = Duration::from_secs(120);
    config
}

/// The cloud's side of one device: the listener until a cookie comes back, then the DTLS
/// handshake, then the session (built once the device's key is proven and mapped to its id).
enum CloudSide {
    Listening(Box<Server<1>>),
    Handshaking(Box<dtls::Connection>),
    Open(Box<Cloud>),
}

/// A deterministic link: every datagram is lost with probability `loss`, duplicated with
/// probability `dup`, and delayed by 1 to 30 ms (so datagrams overtake each other).
struct Link {
    state: u64,
    loss: u32,
    dup: u32,
    /// (delivery time, sequence) -> (to the cloud?, bytes)
    queue: BTreeMap<(Instant, u64), (bool, Vec<u8>)>,
    seq: u64,
    sent: u64,
    lost: u64,
    duplicated: u64,
    up: bool,
}

impl Link {
    fn new(seed: u64, loss_percent: u32, dup_percent: u32) -> Self {
        Link {
            state: seed | 1,
            loss: loss_percent,
            dup: dup_percent,
            queue: BTreeMap::new(),
            seq: 0,
            sent: 0,
            lost: 0,
            duplicated: 0,
            up: true,
        }
    }

    fn next(&mut self) -> u32 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as u32
    }

    fn send(&mut self, now: Instant, to_cloud: bool, bytes: &[u8]) {
        self.sent += 1;
        if !self.up || self.next() % 100 < self.loss {
            self.lost += 1;
            return;
        }
        let copies = if self.next() % 100 < self.dup { 2 } else { 1 };
        self.duplicated += copies - 1;
        for _ in 0..copies {
            let delay = Duration::from_millis(1 + u64::from(self.next() % 30));
            self.seq += 1;
            self.queue
                .insert((now + delay, self.seq), (to_cloud, bytes.to_vec()));
        }
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.queue.keys().next().map(|k| k.0)
    }

    fn take_due(&mut self, now: Instant) -> Option<(bool, Vec<u8>)> {
        let key = *self.queue.keys().next()?;
        if key.0 > now {
            return None;
        }
        self.queue.remove(&key)
    }
}

/// Both sides, the link and virtual time.
struct World<S: FirmwareSink> {
    now: Instant,
    device: Device<S>,
    cloud: CloudSide,
    link: Link,
    rng: StdRng,
    /// CoAP parameters of the cloud's session, used when it opens.
    cloud_reliability: ReliabilityConfig,
    device_events: Vec<DeviceEvent>,
    cloud_events: Vec<CloudEvent>,
    /// Park the cloud's session (and resume it at once) after every step where it is quiet.
    park_when_quiet: bool,
    /// Times the cloud's session was parked and resumed.
    parks: u32,
}

impl<S: FirmwareSink> World<S> {
    fn new(seed: u64, sink: S, loss: u32, dup: u32) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc10d);
        let server = Server::new(ServerConfig::new(cloud_key()), &mut rng);
        World {
            now: Instant::ZERO,
            device: device(seed, sink),
            cloud: CloudSide::Listening(Box::new(server)),
            link: Link::new(seed, loss, dup),
            rng,
            cloud_reliability: ReliabilityConfig::default(),
            device_events: Vec::new(),
            cloud_events: Vec::new(),
            park_when_quiet: false,
            parks: 0,
        }
    }

    /// Parks the cloud's open session and resumes it from the parked form, as a cloud with many
    /// idle devices does when a datagram comes; a refusal leaves the session as it was.
    fn park_cloud(&mut self) -> Result<(), ParkError> {
        let placeholder = CloudSide::Listening(Box::new(Server::new(
            ServerConfig::new(cloud_key()),
            &mut self.rng,
        )));
        let CloudSide::Open(cloud) = core::mem::replace(&mut self.cloud, placeholder) else {
            panic!("the cloud session is not open")
        };
        let deadline = cloud.poll_timeout();
        match cloud.park(self.now) {
            Ok(parked) => {
                assert_eq!(parked.poll_timeout(), deadline, "parking keeps the timer");
                let resumed = DatagramSession::resume(
                    parked,
                    cloud_key(),
                    dtls::TransportConfig::default(),
                    StdRng::seed_from_u64(9 + u64::from(self.parks)),
                );
                self.cloud = CloudSide::Open(Box::new(resumed));
                self.parks += 1;
                Ok(())
            }
            Err((cloud, why)) => {
                self.cloud = CloudSide::Open(Box::new(cloud));
                Err(why)
            }
        }
    }

    fn cloud(&mut self) -> &mut Cloud {
        match &mut self.cloud {
            CloudSide::Open(c) => c,
            _ => panic!("the cloud session is not open"),
        }
    }

    /// Moves everything each side wants to send onto the link.
    fn flush(&mut self) {
        let mut buf = vec![0u8; 2048];
        while let Some(n) = self.device.poll_transmit(self.now, &mut buf).unwrap() {
            self.link.send(self.now, true, &buf[..n]);
        }
        match &mut self.cloud {
            CloudSide::Listening(_) => {}
            CloudSide::Handshaking(conn) => {
                while let Some(n) = conn.poll_transmit(&mut buf).unwrap() {
                    self.link.send(self.now, false, &buf[..n]);
                }
            }
            CloudSide::Open(cloud) => {
                while let Some(n) = cloud.poll_transmit(self.now, &mut buf).unwrap() {
                    self.link.send(self.now, false, &buf[..n]);
                }
            }
        }
    }

    fn deliver_to_cloud(&mut self, datagram: &[u8]) {
        let now = self.now;
        match &mut self.cloud {
            CloudSide::Listening(server) => {
                let mut out = [0u8; 256];
                match server
                    .accept(now, b"device", datagram, &mut self.rng, &mut out)
                    .unwrap()
                {
                    Accept::HelloVerifyRequest(m) => self.link.send(now, false, &out[..m]),
                    Accept::Connection(conn) => self.cloud = CloudSide::Handshaking(Box::new(conn)),
                    Accept::Ignore => {}
                }
            }
            CloudSide::Handshaking(conn) => conn.handle_datagram(now, datagram).unwrap(),
            CloudSide::Open(cloud) => cloud.handle_datagram(now, datagram).unwrap(),
        }
        self.open_cloud_session();
    }

    /// Once DTLS is established, the cloud maps the proven key to the device id and opens the
    /// session.
    fn open_cloud_session(&mut self) {
        let CloudSide::Handshaking(conn) = &self.cloud else {
            return;
        };
        if !conn.is_connected() {
            return;
        }
        assert_eq!(conn.peer_public_key(), Some(device_key().public_key()));
        let CloudSide::Handshaking(conn) = core::mem::replace(
            &mut self.cloud,
            CloudSide::Listening(Box::new(Server::new(
                ServerConfig::new(cloud_key()),
                &mut self.rng,
            ))),
        ) else {
            unreachable!()
        };
        let session = CloudConnection::datagram(
            self.now,
            NoKeys,
            NoKeys,
            StdRng::seed_from_u64(7),
            cloud_config(),
            DeviceId::from_bytes(DEVICE_ID),
        );
        self.cloud = CloudSide::Open(Box::new(DatagramSession::with_config(
            session,
            *conn,
            StdRng::seed_from_u64(8),
            self.cloud_reliability,
        )));
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.device.poll_event() {
            self.device_events.push(e);
        }
        if let CloudSide::Open(cloud) = &mut self.cloud {
            while let Some(e) = cloud.poll_event() {
                self.cloud_events.push(e);
            }
        }
    }

    /// Runs (at most `limit`) until the device has an event that `wanted` picks, and takes it.
    fn next_device_event(
        &mut self,
        limit: Duration,
        wanted: impl Fn(&DeviceEvent) -> bool + Copy,
    ) -> DeviceEvent {
        self.run_until(limit, |w| w.device_events.iter().any(wanted));
        take(&mut self.device_events, wanted).expect("the device has the event asked for")
    }

    /// Runs (at most `limit`) until the device is asked to run a function, and takes that request.
    fn next_function_call(&mut self, limit: Duration) -> FunctionCallEvent {
        let DeviceEvent::FunctionCall(c) =
            self.next_device_event(limit, |e| matches!(e, DeviceEvent::FunctionCall(_)))
        else {
            unreachable!()
        };
        c
    }

    /// Runs until `done` holds (checked after every step) or `limit` of virtual time passes.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) {
        let end = self.now + limit;
        loop {
            self.flush();
            self.drain_events();
            if done(self) {
                return;
            }
            if self.park_when_quiet && matches!(self.cloud, CloudSide::Open(_)) {
                let _ = self.park_cloud();
            }
            let timers = [
                self.device.poll_timeout(),
                match &self.cloud {
                    CloudSide::Listening(_) => None,
                    CloudSide::Handshaking(c) => c.poll_timeout(),
                    CloudSide::Open(c) => c.poll_timeout(),
                },
                self.link.next_delivery(),
            ];
            assert!(
                self.now < end || done(self),
                "not done within {limit:?}: device {:?} {:?} {:?}, cloud {:?} {:?}, cloud last {:?}",
                self.device,
                self.device.session(),
                match &self.cloud {
                    CloudSide::Open(c) => format!("{c:?}"),
                    _ => String::new(),
                },
                match &self.cloud {
                    CloudSide::Open(c) => format!("{:?}", c.session()),
                    _ => String::new(),
                },
                self.device_events,
                self.cloud_events.iter().rev().take(4).collect::<Vec<_>>()
            );
            let next = timers.into_iter().flatten().min().unwrap_or(end).min(end);
            assert!(
                next <= end,
                "not done within {limit:?}: {:?}, {:?}, {:?}",
                self.device,
                self.device_events,
                self.cloud_events
            );
            self.now = self.now.max(next);
            while let Some((to_cloud, bytes)) = self.link.take_due(self.now) {
                if to_cloud {
                    self.deliver_to_cloud(&bytes);
                } else {
                    self.device.handle_datagram(self.now, &bytes).unwrap();
                }
            }
            self.device.handle_timeout(self.now).unwrap();
            match &mut self.cloud {
                CloudSide::Listening(_) => {}
                CloudSide::Handshaking(c) => c.handle_timeout(self.now).unwrap(),
                CloudSide::Open(c) => c.handle_timeout(self.now).unwrap(),
            }
            self.open_cloud_session();
        }
    }

    fn connect(&mut self) {
        self.run_until(Duration::from_secs(120), |w| {
            w.device_events.contains(&DeviceEvent::Connected)
                && w.cloud_events
                    .iter()
                    .any(|e| matches!(e, CloudEvent::Connected(_)))
        });
        assert!(self.device.session().is_datagram());
        assert!(self.cloud().session().is_established());
        assert!(self.cloud().session().is_datagram());
        assert_eq!(
            self.cloud().session().device().map(|d| d.device_id),
            Some(DeviceId::from_bytes(DEVICE_ID))
        );
    }
}

fn take<T>(v: &mut Vec<T>, f: impl Fn(&T) -> bool) -> Option<T> {
    let at = v.iter().position(f)?;
    Some(v.remove(at))
}

/// Hello both ways, Describe, a function call, a variable read, a publish, a subscription and
/// an event delivered to it, all through a link that loses, duplicates and reorders: each
/// answer arrives once and right, and neither side ends.
fn exchange_over_lossy_link(seed: u64, park_when_quiet: bool) {
    let mut w = World::new(seed, NoFirmware, 5, 3);
    w.park_when_quiet = park_when_quiet;
    w.connect();

    let now = w.now;
    let describe = w.cloud().session_mut().describe(now).unwrap();
    w.run_until(Duration::from_secs(120), |w| {
        w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::Described { request, .. } if *request == describe))
    });
    let Some(CloudEvent::Described {
        result: Ok(json), ..
    }) = take(&mut w.cloud_events, |e| {
        matches!(e, CloudEvent::Described { .. })
    })
    else {
        panic!("a description")
    };
    let json = String::from_utf8(json).unwrap();
    assert!(json.contains("brew") && json.contains("temp"), "{json}");

    let now = w.now;
    let call = w
        .cloud()
        .session_mut()
        .call_function(now, b"brew", b"espresso")
        .unwrap();
    let c = w.next_function_call(Duration::from_secs(120));
    assert_eq!(&c.name[..], b"brew");
    assert_eq!(&c.argument[..], b"espresso");
    w.device.session_mut().function_return(c.call, 42).unwrap();
    w.run_until(Duration::from_secs(120), |w| {
        w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::FunctionReturned { .. }))
    });
    assert!(w.cloud_events.contains(&CloudEvent::FunctionReturned {
        request: call,
        result: Ok(42)
    }));

    let now = w.now;
    let read = w
        .cloud()
        .session_mut()
        .read_variable(now, b"temp", VarType::Double)
        .unwrap();
    let DeviceEvent::VariableRequest(r) = w.next_device_event(Duration::from_secs(120), |e| {
        matches!(e, DeviceEvent::VariableRequest(_))
    }) else {
        unreachable!()
    };
    w.device
        .session_mut()
        .variable_value(r.request, Value::Double(21.5))
        .unwrap();
    w.run_until(Duration::from_secs(120), |w| {
        w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::VariableRead { .. }))
    });
    assert!(w.cloud_events.contains(&CloudEvent::VariableRead {
        request: read,
        result: Ok(VariableValue::Double(21.5))
    }));

    let now = w.now;
    w.device
        .session_mut()
        .publish(now, b"coffee/ready", Some(b"yes"), Visibility::Private, 60)
        .unwrap();
    w.device
        .session_mut()
        .subscribe(b"cmd", Scope::MyDevices)
        .unwrap();
    w.run_until(Duration::from_secs(120), |w| {
        w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::Published(_)))
            && w.cloud_events
                .iter()
                .any(|e| matches!(e, CloudEvent::Subscribed(_)))
    });
    let published: Vec<_> = w
        .cloud_events
        .iter()
        .filter_map(|e| match e {
            CloudEvent::Published(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(published.len(), 1, "delivered once: {published:?}");
    assert_eq!(published[0].name, b"coffee/ready");
    assert_eq!(published[0].data.as_deref(), Some(&b"yes"[..]));

    w.cloud()
        .session_mut()
        .deliver_event(&OutgoingEvent {
            name: b"cmd/go",
            data: Some(b"now"),
            ttl: 60,
            private: true,
        })
        .unwrap();
    w.run_until(Duration::from_secs(120), |w| {
        w.device_events
            .iter()
            .any(|e| matches!(e, DeviceEvent::Event(_)))
    });
    let got: Vec<_> = w
        .device_events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Event(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].name[..], b"cmd/go");
    assert_eq!(&got[0].data[..], b"now");

    // Quiet for two minutes: keep-alives cross the lossy link and nothing ends.
    let end = w.now + Duration::from_secs(120);
    w.run_until(Duration::from_secs(121), |w| w.now >= end);
    assert_eq!(w.device.error(), None);
    assert_eq!(w.cloud().error(), None);
    assert!(
        w.link.lost > 0 && w.link.duplicated > 0,
        "the link did lose and duplicate"
    );
    // Two minutes of quiet hold keep-alives, so a parking cloud parked many times.
    assert_eq!(w.parks > 10, park_when_quiet, "{} parks", w.parks);
}

#[test]
fn hello_describe_function_variable_publish_subscribe_over_lossy_link() {
    for seed in [1, 2, 3, 4, 5, 6] {
        exchange_over_lossy_link(seed, false);
    }
}

/// The same exchange, with the cloud's session parked and rebuilt from its parked form after
/// every step where it is quiet: calls, reads, events both ways, keep-alives and duplicates from
/// the link all come through as before.
#[test]
fn the_same_exchange_with_the_cloud_parked_whenever_quiet() {
    for seed in [1, 2, 3, 4, 5, 6] {
        exchange_over_lossy_link(seed, true);
    }
}

/// A device's confirmable event, acknowledged by the cloud but the ACK lost, then the cloud
/// parked and resumed: the very record again is refused by the replay window (nothing comes
/// back), and the device's retransmission (a new record, the same CoAP message id) is answered
/// with the ACK again and not delivered a second time.
#[test]
fn a_retransmitted_event_is_answered_not_redelivered_across_a_park() {
    let mut w = World::new(41, NoFirmware, 0, 0);
    w.connect();
    let settled = w.now + Duration::from_secs(2);
    w.run_until(Duration::from_secs(3), |w| w.now >= settled);
    w.park_cloud().unwrap();

    let now = w.now;
    w.device
        .session_mut()
        .publish(now, b"door", Some(b"open"), Visibility::Private, 60)
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let n = w.device.poll_transmit(now, &mut buf).unwrap().unwrap();
    let record = buf[..n].to_vec();
    assert_eq!(w.device.poll_transmit(now, &mut buf).unwrap(), None);
    w.cloud().handle_datagram(now, &record).unwrap();
    // The ACK goes out, and is lost.
    assert!(w.cloud().poll_transmit(now, &mut buf).unwrap().is_some());
    assert_eq!(w.cloud().poll_transmit(now, &mut buf).unwrap(), None);
    w.drain_events();
    let published = |w: &World<NoFirmware>| {
        w.cloud_events
            .iter()
            .filter(|e| matches!(e, CloudEvent::Published(p) if p.name == b"door"))
            .count()
    };
    assert_eq!(published(&w), 1);
    w.park_cloud().unwrap();

    // The same record again: a replay, dropped without an answer.
    w.cloud().handle_datagram(now, &record).unwrap();
    assert_eq!(w.cloud().poll_transmit(now, &mut buf).unwrap(), None);

    // The device's retransmission.
    let again = w.device.poll_timeout().unwrap();
    w.now = again;
    w.device.handle_timeout(again).unwrap();
    let n = w.device.poll_transmit(again, &mut buf).unwrap().unwrap();
    assert_ne!(buf[..n], record[..], "a new record");
    let retransmission = buf[..n].to_vec();
    w.cloud().handle_datagram(again, &retransmission).unwrap();
    let n = w.cloud().poll_transmit(again, &mut buf).unwrap().unwrap();
    let ack = buf[..n].to_vec();
    w.device.handle_datagram(again, &ack).unwrap();
    w.drain_events();
    assert_eq!(published(&w), 1, "delivered once");
    assert_eq!(w.cloud().error(), None);
    assert_eq!(w.device.error(), None);
    // The device has its ACK: nothing more to retransmit, and both sides go on.
    let end = w.now + Duration::from_secs(30);
    w.run_until(Duration::from_secs(31), |w| w.now >= end);
    assert_eq!(published(&w), 1);
}

/// A call queued in the session survives a park; once its confirmable request is out, parking
/// is refused (the session left as it was) until the device acknowledged it; then it parks.
#[test]
fn park_is_refused_while_a_confirmable_message_is_in_flight() {
    let mut w = World::new(51, NoFirmware, 0, 0);
    w.connect();
    let settled = w.now + Duration::from_secs(2);
    w.run_until(Duration::from_secs(3), |w| w.now >= settled);
    let now = w.now;
    let call = w
        .cloud()
        .session_mut()
        .call_function(now, b"brew", b"tea")
        .unwrap();
    // Queued in the session above, which a park keeps whole: it goes out after the resume.
    assert_eq!(w.park_cloud(), Ok(()));
    let mut buf = vec![0u8; 2048];
    let n = w.cloud().poll_transmit(now, &mut buf).unwrap().unwrap();
    let request = buf[..n].to_vec();
    assert_eq!(w.park_cloud(), Err(ParkError::Unacknowledged));
    w.device.handle_datagram(now, &request).unwrap();
    let c = w.next_function_call(Duration::from_secs(10));
    w.device.session_mut().function_return(c.call, 7).unwrap();
    w.run_until(Duration::from_secs(30), |w| {
        w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::FunctionReturned { .. }))
    });
    assert!(w.cloud_events.contains(&CloudEvent::FunctionReturned {
        request: call,
        result: Ok(7)
    }));
    let settled = w.now + Duration::from_secs(1);
    w.run_until(Duration::from_secs(2), |w| w.now >= settled);
    assert_eq!(w.park_cloud(), Ok(()));
}

/// A 100 KiB image over the lossy link: the sink holds exactly the image (CRC-32 checked), the
/// cloud reports it finished, nothing was half-written or aborted.
fn ota_over_lossy_link(seed: u64, fast: bool) {
    let image: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut flash = vec![0u8; 128 * 1024];
    let mut w = World::new(seed, BufferSink::new(&mut flash), 5, 3);
    w.connect();
    let now = w.now;
    let request = w
        .cloud()
        .session_mut()
        .start_ota(now, image.clone(), {
            let mut o = OtaOptions::default();
            o.fast = fast;
            o.chunk_size = Some(512);
            // About 5% of 200 chunks are lost on the way; the device reports every chunk
            // still missing in each ChunkMissed (every 3 s), so one loss counts several
            // times: the budget is generous and the test checks the image itself.
            o.max_missed_chunks = 2000;
            o
        })
        .unwrap();
    w.run_until(Duration::from_secs(290), |w| {
        w.cloud_events.iter().any(|e| {
            matches!(e, CloudEvent::Ota { request: r, event: OtaEvent::Finished(_) } if *r == request)
        })
    });
    let finished = w.cloud_events.iter().find_map(|e| match e {
        CloudEvent::Ota {
            event: OtaEvent::Finished(r),
            ..
        } => Some(*r),
        _ => None,
    });
    let report = finished.unwrap().expect("the transfer succeeded");
    assert_eq!(report.image_len, image.len());
    assert_eq!(report.chunk_size, 512);
    assert_eq!(report.fast, fast);
    w.run_until(Duration::from_secs(60), |w| {
        w.device_events
            .iter()
            .any(|e| matches!(e, DeviceEvent::UpdateFinished { .. }))
    });
    assert!(w.device_events.contains(&DeviceEvent::UpdateFinished {
        size: image.len() as u32
    }));
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let sink = w.device.session().sink();
    assert_eq!(sink.counts(), (1, 0), "one commit, no abort");
    let committed = sink.committed().expect("committed");
    assert_eq!(committed.len(), image.len());
    assert_eq!(crc.checksum(committed), crc.checksum(&image));
    assert_eq!(committed, &image[..]);
    assert_eq!(w.device.error(), None);
}

#[test]
fn fast_ota_of_100_kib_over_lossy_link() {
    for seed in [11, 13, 15, 17] {
        ota_over_lossy_link(seed, true);
    }
}

/// Stop-and-wait OTA (no fast OTA) over the same link: each chunk's ChunkReceived is a
/// confirmable separate response over UDP, so a lost one is sent again instead of stalling the
/// transfer.
#[test]
fn confirmed_ota_of_100_kib_over_lossy_link() {
    for seed in [12, 14, 16, 18] {
        ota_over_lossy_link(seed, false);
    }
}

/// A device that goes silent: the cloud's confirmable request is retransmitted MAX_RETRANSMIT
/// times and the session then ends with `Unacknowledged` (a 1 s ACK_TIMEOUT, so the CoAP layer
/// gives up before the cloud's 31 s idle timer would).
#[test]
fn a_silent_peer_ends_the_cloud_session() {
    let mut w = World::new(21, NoFirmware, 0, 0);
    w.cloud_reliability = ReliabilityConfig {
        ack_timeout: Duration::from_secs(1),
        ..ReliabilityConfig::default()
    };
    w.connect();
    // Let the Hello's acknowledgement arrive, so only the call below is in flight.
    let settled = w.now + Duration::from_secs(2);
    w.run_until(Duration::from_secs(3), |w| w.now >= settled);
    w.link.up = false;
    let now = w.now;
    let _ = w
        .cloud()
        .session_mut()
        .call_function(now, b"brew", b"x")
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let mut sends = 0;
    let mut t = w.now;
    let err = loop {
        let cloud = w.cloud();
        match cloud.poll_transmit(t, &mut buf) {
            Ok(Some(_)) => {
                sends += 1;
                continue;
            }
            Ok(None) => {}
            Err(e) => break e,
        }
        let Some(next) = cloud.poll_timeout() else {
            panic!("no timer left")
        };
        t = next;
        if let Err(e) = cloud.handle_timeout(t) {
            break e;
        }
    };
    assert!(
        matches!(err, DatagramError::Unacknowledged { .. }),
        "{err:?}"
    );
    // The first transmission and MAX_RETRANSMIT (3) more.
    assert_eq!(sends, 4);
    assert_eq!(w.cloud().error(), Some(err));
}

/// A buffer shorter than `max_transmit_len` is refused before anything is taken.
#[test]
fn a_short_buffer_loses_nothing() {
    let mut w = World::new(31, NoFirmware, 0, 0);
    w.connect();
    let now = w.now;
    w.device
        .session_mut()
        .publish(now, b"e", Some(b"1"), Visibility::Private, 60)
        .unwrap();
    let required = w.device.max_transmit_len();
    assert_eq!(
        w.device.poll_transmit(now, &mut [0u8; 16]),
        Err(DatagramError::InsufficientSize { required })
    );
    assert_eq!(w.device.error(), None);
    w.run_until(Duration::from_secs(30), |w| {
        w.cloud_events
            .iter()
            .any(|e| matches!(e, CloudEvent::Published(_)))
    });
}

/// The same sessions over real UDP sockets on loopback, on the wall clock: the DTLS handshake
/// with the cookie, both Hellos, a function call and a variable read. Bounded to 20 s.
#[test]
fn over_real_udp_sockets_on_loopback() {
    use std::net::UdpSocket;
    let start = std::time::Instant::now();
    let clock = || Instant::from_millis(start.elapsed().as_millis() as u64);
    let device_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cloud_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    device_socket.set_nonblocking(true).unwrap();
    cloud_socket.set_nonblocking(true).unwrap();
    let cloud_addr = cloud_socket.local_addr().unwrap();
    let device_addr = device_socket.local_addr().unwrap();

    let mut dev = device(41, NoFirmware);
    let mut rng = StdRng::seed_from_u64(42);
    let mut cloud = CloudSide::Listening(Box::new(Server::new(
        ServerConfig::new(cloud_key()),
        &mut rng,
    )));
    let mut device_events = Vec::new();
    let mut cloud_events = Vec::new();
    let mut call = None;
    let mut read = None;
    let mut buf = vec![0u8; 2048];
    let mut rx = vec![0u8; 2048];
    let peer = device_addr.to_string();
    while start.elapsed() < Duration::from_secs(20) {
        let now = clock();
        let mut idle = true;
        // Device: send, receive, timers.
        while let Some(n) = dev.poll_transmit(now, &mut buf).unwrap() {
            device_socket.send_to(&buf[..n], cloud_addr).unwrap();
        }
        while let Ok((n, _)) = device_socket.recv_from(&mut rx) {
            idle = false;
            dev.handle_datagram(now, &rx[..n]).unwrap();
        }
        dev.handle_timeout(now).unwrap();
        while let Some(e) = dev.poll_event() {
            device_events.push(e);
        }
        // Cloud: receive into whichever stage it is at, then send.
        while let Ok((n, from)) = cloud_socket.recv_from(&mut rx) {
            idle = false;
            assert_eq!(from, device_addr);
            match &mut cloud {
                CloudSide::Listening(server) => {
                    let mut out = [0u8; 256];
                    match server
                        .accept(now, peer.as_bytes(), &rx[..n], &mut rng, &mut out)
                        .unwrap()
                    {
                        Accept::HelloVerifyRequest(m) => {
                            cloud_socket.send_to(&out[..m], device_addr).unwrap();
                        }
                        Accept::Connection(conn) => cloud = CloudSide::Handshaking(Box::new(conn)),
                        Accept::Ignore => {}
                    }
                }
                CloudSide::Handshaking(conn) => conn.handle_datagram(now, &rx[..n]).unwrap(),
                CloudSide::Open(c) => c.handle_datagram(now, &rx[..n]).unwrap(),
            }
            if let CloudSide::Handshaking(conn) = &cloud
                && conn.is_connected()
            {
                assert_eq!(conn.peer_public_key(), Some(device_key().public_key()));
                let CloudSide::Handshaking(conn) = core::mem::replace(
                    &mut cloud,
                    CloudSide::Listening(Box::new(Server::new(
                        ServerConfig::new(cloud_key()),
                        &mut rng,
                    ))),
                ) else {
                    unreachable!()
                };
                let session = CloudConnection::datagram(
                    now,
                    NoKeys,
                    NoKeys,
                    StdRng::seed_from_u64(43),
                    cloud_config(),
                    DeviceId::from_bytes(DEVICE_ID),
                );
                cloud = CloudSide::Open(Box::new(DatagramSession::new(
                    session,
                    *conn,
                    StdRng::seed_from_u64(44),
                )));
            }
        }
        match &mut cloud {
            CloudSide::Listening(_) => {}
            CloudSide::Handshaking(conn) => {
                conn.handle_timeout(now).unwrap();
                while let Some(n) = conn.poll_transmit(&mut buf).unwrap() {
                    cloud_socket.send_to(&buf[..n], device_addr).unwrap();
                }
            }
            CloudSide::Open(c) => {
                c.handle_timeout(now).unwrap();
                while let Some(e) = c.poll_event() {
                    cloud_events.push(e);
                }
                // The application: once connected, call and read; the device answers below.
                if c.session().is_established() && call.is_none() {
                    call = Some(c.session_mut().call_function(now, b"brew", b"udp").unwrap());
                    read = Some(
                        c.session_mut()
                            .read_variable(now, b"temp", VarType::Double)
                            .unwrap(),
                    );
                }
                while let Some(n) = c.poll_transmit(now, &mut buf).unwrap() {
                    cloud_socket.send_to(&buf[..n], device_addr).unwrap();
                }
            }
        }
        for e in device_events.drain(..) {
            match e {
                DeviceEvent::FunctionCall(c) => {
                    assert_eq!(&c.argument[..], b"udp");
                    dev.session_mut().function_return(c.call, 7).unwrap();
                }
                DeviceEvent::VariableRequest(r) => dev
                    .session_mut()
                    .variable_value(r.request, Value::Double(-3.25))
                    .unwrap(),
                _ => {}
            }
        }
        let returned = cloud_events.iter().any(|e| {
            matches!(e, CloudEvent::FunctionReturned { request, result: Ok(7) } if Some(*request) == call)
        });
        let read_back = cloud_events.iter().any(|e| {
            matches!(e, CloudEvent::VariableRead { request, result: Ok(VariableValue::Double(v)) }
                if Some(*request) == read && *v == -3.25)
        });
        if returned && read_back {
            assert_eq!(dev.error(), None);
            return;
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    panic!("not done in 20 s: {cloud_events:?}");
}
