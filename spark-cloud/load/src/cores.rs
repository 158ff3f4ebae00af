//! The simulated Cores of the load tool.
//!
//! - [`idle_core`]: a Core as the protocol crate runs one (`DeviceConnection` on the tokio driver): handshake,
//!   Hello, one function (`digitalwrite`, returning 1), the Core's keep-alive pings, nothing else. Thousands run in
//!   one process.
//! - [`publisher`]: a Core that publishes events as fast as TCP takes them, built from the crate's handshake,
//!   framing and message layers directly. `DeviceConnection` keeps the Core firmware's rule of at most four
//!   publishes per second, which the cloud does not enforce (neither did the original server), so an event storm
//!   needs the frames written by hand.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use spark_protocol::crypto::handshake::{
    DEVICE_CREDENTIALS_LEN, NONCE_LEN, encrypt_device_credentials, open_session_key,
};
use spark_protocol::crypto::{Aes128Cbc, Nonce, RsaPrivate, RsaPublic};
use spark_protocol::session::device::{
    DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware, RsaHandshake,
};
use spark_protocol::session::driver::Clock;
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
use spark_protocol::wire::Header;
use spark_protocol::wire::hello::{CoreHello, HelloFlags, HelloPayload};
use spark_protocol::wire::message::{Event, Hello, Message, Visibility};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

use super::{PrivateKey, PublicKey};

/// The function every idle Core exposes.
pub const FUNCTION: &str = "digitalwrite";
/// What it returns.
pub const FUNCTION_RESULT: i32 = 1;
/// The name of the events publishers send (the event stream subscribes to this prefix).
pub const EVENT_NAME: &str = "load/tick";
/// Events a publisher seals into one write.
const EVENTS_PER_WRITE: usize = 32;

/// The keys every simulated Core uses: one device key pair provisioned under every id (generating thousands of
/// RSA keys would only slow the tool down; the cloud looks keys up by id either way), and the cloud's public key.
#[derive(Debug)]
pub struct CoreKeys {
    /// The devices' private key.
    pub device: PrivateKey,
    /// Its public half.
    pub device_public: PublicKey,
    /// The cloud's public key.
    pub server: PublicKey,
}

fn rng() -> Result<StdRng, String> {
    StdRng::try_from_rng(&mut SysRng).map_err(|e| format!("random source: {e}"))
}

/// Connects to `target`, from `source` when given (several loopback sources give more ports).
pub async fn connect(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        // A port picked at `bind` cannot see the destination, so without address reuse every port still in
        // TIME_WAIT from the previous run counts as taken: two runs of 19,000 Cores back to back ran out of ports
        // ("Cannot assign requested address"). With it, the kernel's second pass over the range may take such a
        // port, and `connect` still refuses a 4-tuple that is in use.
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What the idle Cores report together, for the reconnect storm.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Cores whose session is established now.
    pub online: AtomicU64,
    /// Connection attempts counted ([`Fleet::counting`] set when they started) that ended before a session.
    pub refused: AtomicU64,
    /// The most refused attempts in a row of any one Core (counted attempts only).
    pub most_refused_in_a_row: AtomicU64,
    /// Whether attempts are counted now (the storm sets it once the restarted cloud listens).
    pub counting: AtomicBool,
    /// Attempts started while counting.
    pub attempts: AtomicU64,
    /// Sessions established by counted attempts.
    pub handshakes: AtomicU64,
    /// Why counted attempts ended before a session, and how often (the reason without the port of the Core).
    pub reasons: std::sync::Mutex<Vec<(String, u64)>>,
}

impl Fleet {
    fn failed(&self, reason: &str) {
        let Ok(mut reasons) = self.reasons.lock() else {
            return;
        };
        match reasons.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((reason.to_owned(), 1)),
        }
    }
}

/// How an idle Core behaves when its session ends.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The longest pause before the next attempt; each pause is drawn uniformly below it, as the jitter of real
    /// Cores spreads their retries. Zero: the Core stops at the end of its first session.
    pub interval: std::time::Duration,
}

/// Runs an idle Core with id `id` (or, with a [`Retry`] interval, reconnects it after each session or failed
/// attempt until the task is aborted). `up` hears when its first session is established, or why the first attempt
/// failed; `fleet` counts it online while a session is up.
pub async fn idle_core(
    id: [u8; 12],
    target: SocketAddr,
    source: Option<IpAddr>,
    keys: Arc<CoreKeys>,
    up: oneshot::Sender<Result<(), String>>,
    fleet: Arc<Fleet>,
    retry: Retry,
) {
    let mut up = Some(up);
    let mut refused_in_a_row = 0u64;
    let mut jitter = match rng() {
        Ok(r) => r,
        Err(e) => {
            if let Some(up) = up.take() {
                let _ = up.send(Err(e));
            }
            return;
        }
    };
    loop {
        let counted = fleet.counting.load(Ordering::Relaxed);
        if counted {
            fleet.attempts.fetch_add(1, Ordering::Relaxed);
        }
        let mut online = false;
        let ended = one_session(id, target, source, &keys, &mut || {
            online = true;
            fleet.online.fetch_add(1, Ordering::Relaxed);
            if counted {
                fleet.handshakes.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(up) = up.take() {
                let _ = up.send(Ok(()));
            }
        })
        .await;
        if online {
            fleet.online.fetch_sub(1, Ordering::Relaxed);
            refused_in_a_row = 0;
        } else if counted {
            fleet.refused.fetch_add(1, Ordering::Relaxed);
            fleet.failed(&ended);
            refused_in_a_row += 1;
            fleet
                .most_refused_in_a_row
                .fetch_max(refused_in_a_row, Ordering::Relaxed);
        }
        if let Some(up) = up.take() {
            let _ = up.send(Err(ended));
        }
        if retry.interval.is_zero() {
            return;
        }
        let pause =
            rand::RngExt::random_range(&mut jitter, 0..retry.interval.as_millis().max(1) as u64);
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
}

/// One connection of an idle Core, until its session ends: why it ended. `connected` runs once the session is up.
async fn one_session(
    id: [u8; 12],
    target: SocketAddr,
    source: Option<IpAddr>,
    keys: &Arc<CoreKeys>,
    connected: &mut impl FnMut(),
) -> String {
    let stream = match connect(target, source).await {
        Ok(s) => s,
        Err(e) => return format!("connect {target}: {e}"),
    };
    let rng = match rng() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let handshake = RsaHandshake::new(&keys.device, &keys.server, rng);
    let mut clock = TokioClock::new();
    let now = clock.now();
    let mut conn = DeviceConnection::new(now, DeviceConfig::new(id), handshake, NoFirmware);
    if let Err(e) = conn.register_function(FUNCTION.as_bytes()) {
        return format!("register: {e}");
    }
    let mut driver = Driver::with_vec(conn, Tokio(stream), clock);
    loop {
        match driver.next_event().await {
            Ok(DeviceEvent::Connected) => connected(),
            Ok(DeviceEvent::FunctionCall(call)) => {
                let _ = driver
                    .connection_mut()
                    .function_return(call.call, FUNCTION_RESULT);
            }
            Ok(_) => {}
            Err(e) => return format!("session: {e}"),
        }
    }
}

/// How the publishers pace themselves: all of them together keep at most `window` events ahead of what the
/// subscriber has `received`, so that the measured rate is what the cloud delivers, not how much it drops when the
/// publishers (on the same CPUs) outrun it. A publisher waits at most [`Pace::MAX_WAIT`] for the subscriber, so an
/// event the cloud dropped does not stop it for good.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Events sent by all publishers.
    pub sent: Arc<AtomicU64>,
    /// Events the subscriber received.
    pub received: Arc<AtomicU64>,
    /// How far ahead the publishers may run.
    pub window: u64,
}

impl Pace {
    /// The longest wait for the subscriber to catch up.
    pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

    async fn wait(&self) {
        let start = tokio::time::Instant::now();
        while self.sent.load(Ordering::Relaxed)
            >= self.received.load(Ordering::Relaxed) + self.window
            && start.elapsed() < Self::MAX_WAIT
        {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// What a publisher publishes and how its events are counted.
#[derive(Debug, Clone)]
pub struct Topic {
    /// The name of its events.
    pub name: String,
    /// Their visibility.
    pub visibility: Visibility,
    /// Every `public_every`th event is a public one named `public_name` instead (0: none).
    pub public_every: u64,
    /// The name of those public events.
    pub public_name: String,
    /// Events named `name` written so far.
    pub sent: Arc<AtomicU64>,
    /// Public events named `public_name` written so far.
    pub public_sent: Arc<AtomicU64>,
    /// What one event named `name` adds to `pace.sent` (the subscribers it reaches).
    pub weight: u64,
    /// What one public event adds to `pace.sent`.
    pub public_weight: u64,
}

impl Topic {
    /// Public [`EVENT_NAME`] events, each counted once in the pace (the event phase).
    pub fn public_ticks() -> Topic {
        Topic {
            name: EVENT_NAME.to_owned(),
            visibility: Visibility::Public,
            public_every: 0,
            public_name: String::new(),
            sent: Arc::new(AtomicU64::new(0)),
            public_sent: Arc::new(AtomicU64::new(0)),
            weight: 1,
            public_weight: 1,
        }
    }
}

/// Runs a publisher with id `id`: handshake and Hello, then `topic`'s events as fast as the connection and `pace`
/// allow until `stop` is set, counting them in `topic` and (weighted) in `pace.sent`. `up` hears when the Hello has
/// been sent.
pub async fn publisher(
    id: [u8; 12],
    target: SocketAddr,
    keys: Arc<CoreKeys>,
    stop: Arc<AtomicBool>,
    pace: Pace,
    topic: Topic,
    up: oneshot::Sender<()>,
) -> Result<(), String> {
    let mut stream = connect(target, None)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let mut rng = rng()?;
    let io = |e: std::io::Error| format!("publisher I/O: {e}");
    let mut nonce = [0u8; NONCE_LEN];
    stream.read_exact(&mut nonce).await.map_err(io)?;
    let mut creds = [0u8; DEVICE_CREDENTIALS_LEN];
    let n =
        encrypt_device_credentials(&keys.server, &mut rng, &Nonce(nonce), &id, None, &mut creds)
            .map_err(|e| format!("credentials: {e}"))?;
    stream.write_all(&creds[..n]).await.map_err(io)?;
    let mut reply = vec![0u8; keys.device.modulus_len() + keys.server.modulus_len()];
    stream.read_exact(&mut reply).await.map_err(io)?;
    let session = open_session_key(&keys.device, &keys.server, &mut rng, &reply)
        .map_err(|e| format!("session key: {e}"))?;
    let mut encoder = session.encoder::<Aes128Cbc>();
    let mut message_id = session.message_id_seed();

    let (mut rx, mut tx) = stream.into_split();
    // The cloud's Hello and its acknowledgements are read and dropped, so that its writes never block.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while matches!(rx.read(&mut buf).await, Ok(n) if n > 0) {}
    });

    let mut plain = [0u8; 128];
    let mut out = vec![0u8; EVENTS_PER_WRITE * 96];
    let hello = Message::Hello(Hello {
        header: Header::non(message_id),
        payload: HelloPayload::Core(CoreHello {
            product_id: 0xffff,
            firmware_version: 0xffff,
            flags: HelloFlags(0),
        }),
    });
    let len = hello.emit(&mut plain).map_err(|e| format!("Hello: {e}"))?;
    let n = encoder
        .seal(&plain[..len], &mut out)
        .map_err(|e| format!("seal: {e}"))?;
    tx.write_all(&out[..n]).await.map_err(io)?;
    let _ = up.send(());
    let mut number = 0u64;
    let result = async {
        while !stop.load(Ordering::Relaxed) {
            pace.wait().await;
            let mut at = 0;
            let (mut named, mut public) = (0u64, 0u64);
            for _ in 0..EVENTS_PER_WRITE {
                message_id = message_id.wrapping_add(1);
                number += 1;
                let (visibility, name) =
                    if topic.public_every != 0 && number.is_multiple_of(topic.public_every) {
                        public += 1;
                        (Visibility::Public, topic.public_name.as_bytes())
                    } else {
                        named += 1;
                        (topic.visibility, topic.name.as_bytes())
                    };
                let event = Message::Event(Event::publish(
                    message_id,
                    visibility,
                    name,
                    Some(b"21.5"),
                    60,
                ));
                let len = event.emit(&mut plain).map_err(|e| format!("event: {e}"))?;
                at += encoder
                    .seal(&plain[..len], &mut out[at..])
                    .map_err(|e| format!("seal: {e}"))?;
            }
            tx.write_all(&out[..at]).await.map_err(io)?;
            topic.sent.fetch_add(named, Ordering::Relaxed);
            topic.public_sent.fetch_add(public, Ordering::Relaxed);
            pace.sent.fetch_add(
                named * topic.weight + public * topic.public_weight,
                Ordering::Relaxed,
            );
        }
        Ok(())
    }
    .await;
    // A clean end: the write side closed, then the cloud's close awaited (a little while at most), so that the last
    // events written are read before the connection goes.
    let _ = tx.shutdown().await;
    let mut reader = reader;
    if tokio::time::timeout(std::time::Duration::from_secs(10), &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
    result
}
