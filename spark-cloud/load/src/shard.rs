//! The UDP devices of the load tool, run in shard processes.
//!
//! The cloud holds every UDP device on one socket, but each simulated device needs a socket of its own (a distinct
//! source address and port), and one process may hold only as many descriptors as the open-file limit allows
//! (20,000 in the container the figures come from). So `spark-load --udp N` starts several copies of itself, each
//! given a [`ShardSpec`] (`--udp-shard SPEC`), each running its devices on a loopback source address of its own and
//! reporting what happens as [`ShardMsg`] lines on its standard output. A shard runs until its standard input
//! closes.
//!
//! Every device's P-256 key is derived from the run's seed and the device's number ([`device_key`]), so the parent
//! registers the public keys with the cloud and the shard uses the private ones without either sending keys to the
//! other.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use spark_protocol::dtls::{self, ClientConfig, PrivateKey, PublicKey};
use spark_protocol::session::Instant;
use spark_protocol::session::datagram::DatagramSession;
use spark_protocol::session::device::{DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};

use crate::cores::{FUNCTION, FUNCTION_RESULT};

/// The 24-hex id of the `n`th simulated UDP device: `ee1d` then `n` in 20 hex digits (apart from the Cores' ids).
pub fn udp_id(n: u64) -> String {
    format!("ee1d{n:020x}")
}

/// The P-256 key of device `n` of a run seeded with `seed`: the scalar is the seed's first 16 bytes (the top bit
/// cleared, so it stays below the group order) then `n` in 16 bytes.
pub fn device_key(seed: &[u8; 16], n: u64) -> Option<PrivateKey> {
    let mut scalar = [0u8; 32];
    scalar[..16].copy_from_slice(seed);
    scalar[0] &= 0x7f;
    scalar[16..].copy_from_slice(&u128::from(n).to_be_bytes());
    PrivateKey::from_scalar(&scalar).ok()
}

/// What one shard runs: `count` devices from number `first`, from `source`, against the cloud's UDP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec {
    /// The cloud's UDP listener.
    pub cloud: SocketAddr,
    /// The loopback source address of the shard's sockets.
    pub source: IpAddr,
    /// The first device number.
    pub first: u64,
    /// Devices in the shard.
    pub count: u64,
    /// DTLS handshakes in flight at once in the shard.
    pub concurrency: u64,
    /// The run's key seed (see [`device_key`]).
    pub seed: [u8; 16],
    /// The cloud's P-256 public key (the SPKI DER).
    pub server_key: PublicKey,
}

/// Why a shard spec or line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardParseError {
    /// A field is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field's value does not parse.
    #[error("bad {0}")]
    Bad(&'static str),
    /// The line names no known message.
    #[error("unknown shard message")]
    Unknown,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str, out: &mut [u8]) -> Option<usize> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) || bytes.len() / 2 > out.len() {
        return None;
    }
    for (i, pair) in bytes.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(bytes.len() / 2)
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cloud={};source={};first={};count={};concurrency={};seed={};server_key={}",
            self.cloud,
            self.source,
            self.first,
            self.count,
            self.concurrency,
            hex(&self.seed),
            hex(&self.server_key.to_spki())
        )
    }
}

impl std::str::FromStr for ShardSpec {
    type Err = ShardParseError;

    /// Reads what [`ShardSpec`]'s `Display` writes: `key=value` fields separated by `;`, in any order.
    fn from_str(text: &str) -> Result<Self, ShardParseError> {
        let field = |name: &'static str| -> Result<&str, ShardParseError> {
            text.split(';')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .ok_or(ShardParseError::Missing(name))
        };
        let number = |name: &'static str| -> Result<u64, ShardParseError> {
            field(name)?.parse().map_err(|_| ShardParseError::Bad(name))
        };
        let mut seed = [0u8; 16];
        if unhex(field("seed")?, &mut seed) != Some(16) {
            return Err(ShardParseError::Bad("seed"));
        }
        let mut der = [0u8; dtls::SPKI_LEN];
        let n = unhex(field("server_key")?, &mut der).ok_or(ShardParseError::Bad("server_key"))?;
        Ok(ShardSpec {
            cloud: field("cloud")?
                .parse()
                .map_err(|_| ShardParseError::Bad("cloud"))?,
            source: field("source")?
                .parse()
                .map_err(|_| ShardParseError::Bad("source"))?,
            first: number("first")?,
            count: number("count")?,
            concurrency: number("concurrency")?,
            seed,
            server_key: PublicKey::from_spki(&der[..n])
                .map_err(|_| ShardParseError::Bad("server_key"))?,
        })
    }
}

/// One line a shard writes on its standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardMsg {
    /// This many of its devices have their session up (sent now and then while connecting).
    Up(u64),
    /// Every device has had its try: this many connected, this many failed.
    Ready {
        /// Devices whose session came up.
        connected: u64,
        /// Devices whose first session did not.
        failed: u64,
    },
    /// Why a device failed: before [`ShardMsg::Ready`], its first session (the shard's first failure only); after
    /// it, the first session that ended while idle.
    Failed(String),
    /// Sessions that ended after they were up, so far.
    Lost(u64),
    /// Function calls its devices answered, so far.
    Answered(u64),
}

impl fmt::Display for ShardMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardMsg::Up(n) => write!(f, "up {n}"),
            ShardMsg::Ready { connected, failed } => write!(f, "ready {connected} {failed}"),
            // One line: a line end in the reason would start a new message.
            ShardMsg::Failed(why) => write!(f, "failed {}", why.replace(['\n', '\r'], " ")),
            ShardMsg::Lost(n) => write!(f, "lost {n}"),
            ShardMsg::Answered(n) => write!(f, "answered {n}"),
        }
    }
}

impl ShardMsg {
    /// Reads one line (without its line end) as [`ShardMsg`]'s `Display` writes it.
    pub fn parse(line: &str) -> Result<ShardMsg, ShardParseError> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let number = |s: &str| s.parse::<u64>().map_err(|_| ShardParseError::Bad("count"));
        match word {
            "up" => Ok(ShardMsg::Up(number(rest)?)),
            "ready" => {
                let (c, f) = rest
                    .split_once(' ')
                    .ok_or(ShardParseError::Missing("failed"))?;
                Ok(ShardMsg::Ready {
                    connected: number(c)?,
                    failed: number(f)?,
                })
            }
            "failed" => Ok(ShardMsg::Failed(rest.to_owned())),
            "lost" => Ok(ShardMsg::Lost(number(rest)?)),
            "answered" => Ok(ShardMsg::Answered(number(rest)?)),
            _ => Err(ShardParseError::Unknown),
        }
    }
}

/// Connection attempts of a device before its failure counts (the first and two more).
const ATTEMPTS: u32 = 3;

/// What a shard's devices report together.
#[derive(Debug, Default)]
struct Tally {
    up: AtomicU64,
    lost: AtomicU64,
    answered: AtomicU64,
    /// Why the first session that ended after it was up ended.
    first_lost: std::sync::Mutex<Option<String>>,
}

/// Runs a shard (on the current tokio runtime) until its standard input closes, writing [`ShardMsg`] lines to
/// `out`.
pub async fn run_shard(spec: ShardSpec, mut out: impl Write) -> Result<(), String> {
    let tally = Arc::new(Tally::default());
    let gate = Arc::new(Semaphore::new(
        usize::try_from(spec.concurrency.max(1)).unwrap_or(1),
    ));
    let (first_tx, mut first_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for n in spec.first..spec.first + spec.count {
        let key = device_key(&spec.seed, n).ok_or("a device key is out of range")?;
        let permit = Arc::clone(&gate)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let first = first_tx.clone();
        let tally = Arc::clone(&tally);
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut permit = Some(permit);
            let mut first = Some(first);
            // As a device does, a first connection that fails is tried again (twice at most) before it counts.
            let mut attempts = 0;
            let why = loop {
                attempts += 1;
                let why = udp_device(n, key.clone(), &spec, start, &tally, &mut || {
                    permit.take();
                    if let Some(first) = first.take() {
                        let _ = first.send(Ok(()));
                    }
                })
                .await;
                if first.is_none() || attempts == ATTEMPTS {
                    break why;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            match first.take() {
                Some(first) => {
                    let _ = first.send(Err(format!("{why} ({attempts} attempts)")));
                }
                None => {
                    tally.lost.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = tally.first_lost.lock() {
                        first.get_or_insert(why);
                    }
                }
            }
        }));
    }
    drop(first_tx);
    let (mut connected, mut failed) = (0u64, 0u64);
    let mut last = std::time::Instant::now();
    while let Some(r) = first_rx.recv().await {
        match r {
            Ok(()) => connected += 1,
            Err(why) => {
                if failed == 0 {
                    writeln!(out, "{}", ShardMsg::Failed(why)).map_err(|e| e.to_string())?;
                }
                failed += 1;
            }
        }
        if last.elapsed() > Duration::from_millis(250) {
            writeln!(out, "{}", ShardMsg::Up(connected)).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            last = std::time::Instant::now();
        }
        if connected + failed == spec.count {
            break;
        }
    }
    writeln!(out, "{}", ShardMsg::Ready { connected, failed }).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    // Idle until the parent closes standard input, reporting calls answered and sessions lost as they change.
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = closed_tx.send(());
    });
    let (mut lost, mut answered, mut told) = (0, 0, false);
    loop {
        if !told && let Some(why) = tally.first_lost.lock().ok().and_then(|f| f.clone()) {
            told = true;
            writeln!(out, "{}", ShardMsg::Failed(why)).map_err(|e| e.to_string())?;
        }
        let l = tally.lost.load(Ordering::Relaxed);
        let a = tally.answered.load(Ordering::Relaxed);
        if l != lost {
            lost = l;
            writeln!(out, "{}", ShardMsg::Lost(lost)).map_err(|e| e.to_string())?;
        }
        if a != answered {
            answered = a;
            writeln!(out, "{}", ShardMsg::Answered(answered)).map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
        tokio::select! {
            _ = &mut closed_rx => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// One UDP device until its session ends: why it ended. `connected` runs once the session is up.
async fn udp_device(
    n: u64,
    key: PrivateKey,
    spec: &ShardSpec,
    start: std::time::Instant,
    tally: &Tally,
    connected: &mut impl FnMut(),
) -> String {
    let clock = || Instant::from_millis(u64::try_from(start.elapsed().as_millis()).unwrap_or(0));
    let socket = match UdpSocket::bind(SocketAddr::new(spec.source, 0)).await {
        Ok(s) => s,
        Err(e) => return format!("udp socket on {}: {e}", spec.source),
    };
    if let Err(e) = socket.connect(spec.cloud).await {
        return format!("connect {}: {e}", spec.cloud);
    }
    let Ok(mut rng) = StdRng::try_from_rng(&mut SysRng) else {
        return "no random source".to_owned();
    };
    let Some(id) = crate::id_bytes(&udp_id(n)) else {
        return "bad id".to_owned();
    };
    let start_at = clock();
    let give_up = start_at + Duration::from_secs(60);
    let mut dtls =
        dtls::Connection::client(start_at, ClientConfig::new(key, spec.server_key), &mut rng);
    let mut buf = vec![0u8; 2048];
    // The DTLS handshake first, as the cloud runs it: the session's own handshake timer (its Hello) starts once
    // DTLS is up, so a handshake slowed by a busy machine does not eat the Hello's time.
    while !dtls.is_connected() {
        let now = clock();
        if now >= give_up {
            return "no DTLS handshake within 60 s".to_owned();
        }
        if let Err(e) = dtls.handle_timeout(now) {
            return format!("dtls: {e}");
        }
        loop {
            match dtls.poll_transmit(&mut buf) {
                Ok(Some(len)) => {
                    let _ = socket.send(&buf[..len]).await;
                }
                Ok(None) => break,
                Err(e) => return format!("dtls: {e}"),
            }
        }
        if dtls.is_connected() {
            break;
        }
        let wait = dtls
            .poll_timeout()
            .map_or(give_up, |t| t.min(give_up))
            .saturating_duration_since(now);
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(len) => {
                    if let Err(e) = dtls.handle_datagram(clock(), &buf[..len]) {
                        return format!("dtls: {e}");
                    }
                }
                // An ICMP port unreachable: no cloud there (yet); the handshake's own timer resends.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
    let now = clock();
    let mut conn = DeviceConnection::datagram(now, DeviceConfig::new(id), NoFirmware, &mut rng);
    if let Err(e) = conn.register_function(FUNCTION.as_bytes()) {
        return format!("register: {e}");
    }
    let mut session: DatagramSession<_, StdRng> = DatagramSession::new(conn, dtls, rng);
    let mut out = vec![0u8; session.max_transmit_len()];
    let why = run_session(
        &mut session,
        &socket,
        &mut out,
        tally,
        connected,
        clock,
        give_up,
    )
    .await;
    // A device that ends its session says so (DTLS close_notify), so the cloud stops listing it at once rather
    // than holding calls to it until its own CoAP retransmissions give up.
    session.dtls_mut().close();
    while let Ok(Some(len)) = session.dtls_mut().poll_transmit(&mut out) {
        let _ = socket.send(&out[..len]).await;
    }
    why
}

/// Runs an established device session until it ends: why it ended.
async fn run_session(
    session: &mut DatagramSession<DeviceConnection<NoFirmware>, StdRng>,
    socket: &UdpSocket,
    out: &mut [u8],
    tally: &Tally,
    connected: &mut impl FnMut(),
    clock: impl Fn() -> Instant,
    give_up: Instant,
) -> String {
    let mut buf = vec![0u8; 2048];
    let mut up = false;
    loop {
        let now = clock();
        if !up && now >= give_up {
            return "no session within 60 s".to_owned();
        }
        let mut result = session.handle_timeout(now);
        while let Some(event) = session.poll_event() {
            match event {
                DeviceEvent::Connected => {
                    up = true;
                    tally.up.fetch_add(1, Ordering::Relaxed);
                    connected();
                }
                DeviceEvent::FunctionCall(call)
                    if session
                        .session_mut()
                        .function_return(call.call, FUNCTION_RESULT)
                        .is_ok() =>
                {
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        loop {
            match session.poll_transmit(now, out) {
                Ok(Some(len)) => {
                    let _ = socket.send(&out[..len]).await;
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = result {
            return format!("session: {e}");
        }
        let wait = session
            .poll_timeout()
            .map_or(Duration::from_secs(60), |t| {
                t.saturating_duration_since(now)
            })
            .min(if up {
                Duration::from_secs(60)
            } else {
                give_up.saturating_duration_since(now)
            });
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(len) => {
                    if let Err(e) = session.handle_datagram(clock(), &buf[..len]) {
                        return format!("session: {e}");
                    }
                }
                // An ICMP port unreachable: no cloud there (yet); the handshake's own timer resends.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_their_lines() {
        for m in [
            ShardMsg::Up(17),
            ShardMsg::Ready {
                connected: 100,
                failed: 2,
            },
            ShardMsg::Failed("no session within 60 s".into()),
            ShardMsg::Lost(0),
            ShardMsg::Answered(u64::MAX),
        ] {
            assert_eq!(ShardMsg::parse(&m.to_string()), Ok(m));
        }
        // A reason with a line end stays one line.
        let m = ShardMsg::Failed("a\nb".into()).to_string();
        assert!(!m.contains('\n'));
        assert_eq!(ShardMsg::parse(&m), Ok(ShardMsg::Failed("a b".into())));
        for bad in [
            "",
            "up",
            "up x",
            "ready 1",
            "ready 1 x",
            "down 3",
            "lost -1",
        ] {
            assert!(ShardMsg::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_spec_round_trips_and_bad_fields_are_named() {
        let seed = [0xa5; 16];
        let spec = ShardSpec {
            cloud: "127.0.0.1:5684".parse().unwrap(),
            source: "127.0.0.12".parse().unwrap(),
            first: 16_000,
            count: 16_000,
            concurrency: 32,
            seed,
            server_key: device_key(&seed, 7).unwrap().public_key(),
        };
        let text = spec.to_string();
        assert_eq!(text.parse::<ShardSpec>(), Ok(spec));
        assert_eq!(
            text.replace("count=", "kount=").parse::<ShardSpec>(),
            Err(ShardParseError::Missing("count"))
        );
        assert_eq!(
            text.replace("seed=a5", "seed=a").parse::<ShardSpec>(),
            Err(ShardParseError::Bad("seed"))
        );
        assert_eq!(
            text.replace("source=127.0.0.12", "source=nowhere")
                .parse::<ShardSpec>(),
            Err(ShardParseError::Bad("source"))
        );
    }

    #[test]
    fn device_keys_are_distinct_and_reproducible() {
        let seed = [0xff; 16];
        let a = device_key(&seed, 0).unwrap().public_key();
        let b = device_key(&seed, 1).unwrap().public_key();
        assert_ne!(a, b);
        assert_eq!(device_key(&seed, 1).unwrap().public_key(), b);
        assert_ne!(device_key(&[0x01; 16], 1).unwrap().public_key(), b);
        assert_eq!(udp_id(0x1234), "ee1d00000000000000001234");
        assert_eq!(udp_id(0).len(), 24);
    }
}
