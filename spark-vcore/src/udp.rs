//! Running a virtual device over UDP, as an Electron-class device does: DTLS 1.2 with its P-256 key
//! to the cloud's port 5684, the session in datagram mode inside spark-protocol's
//! [`DatagramSession`], and the same application as the TCP Core ([`run`](crate::run): Tinker,
//! variables, announcements, subscriptions, OTA into the external flash).
//!
//! The device's key is `udp_private_key.pem` in its directory (SEC1 PEM, mode 0600, with
//! `udp_public_key.pem` beside it), made the first time the device runs over UDP; an RSA Core
//! directory thus becomes a dual device, as the tools treat it. [`DatagramFaults`] loses,
//! repeats and reorders datagrams both ways, with a seed, to test the layers above.

use std::path::Path;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use spark_protocol::dtls::{self, ClientConfig, PrivateKey, PublicKey};
use spark_protocol::session::Instant;
use spark_protocol::session::datagram::DatagramSession;
use spark_protocol::session::device::{CELLULAR_PING_INTERVAL, DeviceConfig, DeviceConnection};
use spark_protocol::wire::hello::HelloLimits;
use tokio::net::UdpSocket;

use super::run::{
    AfterEvent, CoreApp, CoreSink, SessionEnd, SharedCore, Status, after_session, lock, register,
};
use super::{BootReport, CoreError};

/// The device's UDP private key file in its directory.
pub const UDP_KEY_FILE: &str = "udp_private_key.pem";
/// Its public key, for provisioning (`spark keys send`).
pub const UDP_PUBLIC_KEY_FILE: &str = "udp_public_key.pem";
/// The platform an Electron reports (Device OS's `PLATFORM_ID` 10).
pub const ELECTRON_PLATFORM_ID: u16 = 10;
/// The OTA chunk size the device announces (an Electron's).
pub const UDP_OTA_CHUNK: u16 = 512;

/// Reads the device's UDP key from `dir`, or makes one (and its public half) the first time.
pub fn load_or_create_udp_key(dir: &Path) -> Result<PrivateKey, CoreError> {
    let path = dir.join(UDP_KEY_FILE);
    let io = |source| CoreError::Io {
        path: path.clone(),
        source,
    };
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut der = [0u8; 256];
            let (_, n) = dtls::pem_to_der(&text, &["EC PRIVATE KEY", "PRIVATE KEY"], &mut der)
                .map_err(CoreError::UdpKey)?;
            PrivateKey::from_der(&der[..n]).map_err(CoreError::UdpKey)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut rng =
                StdRng::try_from_rng(&mut SysRng).map_err(|e| CoreError::Random(e.to_string()))?;
            let key = PrivateKey::generate(&mut rng);
            super::write_private(&path, key.to_sec1_pem().as_bytes()).map_err(io)?;
            key
        }
        Err(e) => return Err(io(e)),
    };
    let public = dir.join(UDP_PUBLIC_KEY_FILE);
    let text = udp_public_key_pem(&key.public_key());
    if std::fs::read_to_string(&public).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&public, text).map_err(|source| CoreError::Io {
            path: public.clone(),
            source,
        })?;
    }
    Ok(key)
}

/// The SPKI PEM of a P-256 public key (what `POST /v1/provisioning` takes).
pub fn udp_public_key_pem(key: &PublicKey) -> String {
    key.to_spki_pem()
}

/// Faults on the datagrams in both directions, drawn from a seed: a test knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DatagramFaults {
    /// Percent of datagrams lost.
    pub loss_percent: u8,
    /// Percent of datagrams sent twice.
    pub duplicate_percent: u8,
    /// Percent of datagrams held back and delivered after the next one.
    pub reorder_percent: u8,
}

impl DatagramFaults {
    /// No faults.
    pub const RELIABLE: DatagramFaults = DatagramFaults {
        loss_percent: 0,
        duplicate_percent: 0,
        reorder_percent: 0,
    };

    /// `pct` percent of each fault.
    pub const fn each(pct: u8) -> DatagramFaults {
        DatagramFaults {
            loss_percent: pct,
            duplicate_percent: pct,
            reorder_percent: pct,
        }
    }
}

/// One direction of the faulty link: what to deliver of each datagram.
struct FaultLine {
    faults: DatagramFaults,
    state: u64,
    held: Option<Vec<u8>>,
}

impl FaultLine {
    fn new(faults: DatagramFaults, seed: u64) -> Self {
        FaultLine {
            faults,
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            held: None,
        }
    }

    fn roll(&mut self, pct: u8) -> bool {
        // xorshift64*: reproducible from the seed.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33;
        (r % 100) < u64::from(pct)
    }

    /// The datagrams to deliver now in place of `datagram`, in order.
    fn pass(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        if self.faults == DatagramFaults::RELIABLE {
            return vec![datagram.to_vec()];
        }
        let mut out = Vec::new();
        if !self.roll(self.faults.loss_percent) {
            let copies = if self.roll(self.faults.duplicate_percent) {
                2
            } else {
                1
            };
            if self.held.is_none() && self.roll(self.faults.reorder_percent) {
                self.held = Some(datagram.to_vec());
            } else {
                for _ in 0..copies {
                    out.push(datagram.to_vec());
                }
            }
        }
        // A held datagram goes after whatever comes next: it overtook nothing, it was overtaken.
        if !out.is_empty()
            && let Some(held) = self.held.take()
        {
            out.push(held);
        }
        out
    }

    /// A held datagram that waited long enough.
    fn release(&mut self) -> Option<Vec<u8>> {
        self.held.take()
    }
}

/// Where and how a UDP device connects.
#[derive(Debug, Clone)]
pub struct UdpCloudConfig {
    /// The cloud's UDP listener, `host:port` (5684 by default); several nodes' as a comma-separated list, tried in
    /// turn (see [`crate::run::CloudAddresses`]).
    pub address: String,
    /// The cloud's P-256 public key (`udp_key.pub.pem` of a local spark-cloud).
    pub server_key: PublicKey,
    /// Faults on the datagrams.
    pub faults: DatagramFaults,
    /// Seed of the faults (each session uses the next value).
    pub seed: u64,
    /// Wait before connecting again after a lost session.
    pub reconnect_delay: Duration,
}

/// After committing an update the device stays on until the cloud has been quiet this long. Its answer to
/// UpdateDone is an ACK, which may be lost; the cloud then sends UpdateDone again within CoAP's first timeout
/// (4 to 6 s) and the duplicate is answered again. Resetting at once, as over TCP, would leave the cloud without an
/// answer whenever that ACK was lost or overtaken by the close.
pub const RESET_QUIET: Duration = Duration::from_secs(13);
/// The longest the device lingers after an update before resetting.
pub const RESET_LINGER_MAX: Duration = Duration::from_secs(40);

/// Runs one session over UDP until it ends. `report` hears what happens.
pub async fn session_udp(
    core: &SharedCore,
    key: &PrivateKey,
    cloud: &UdpCloudConfig,
    seed: u64,
    report: &mut (dyn FnMut(Status) + Send),
) -> Result<SessionEnd, CoreError> {
    let lost = |report: &mut (dyn FnMut(Status) + Send), reason: String| {
        report(Status::Disconnected { reason });
        Ok(SessionEnd::Lost)
    };
    let target = match tokio::net::lookup_host(&cloud.address).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => return lost(report, format!("resolve {}: {e}", cloud.address)),
    };
    let Some(target) = target else {
        return lost(report, format!("resolve {}: no address", cloud.address));
    };
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return lost(report, format!("udp socket: {e}")),
    };
    if let Err(e) = socket.connect(target).await {
        return lost(report, format!("connect {target}: {e}"));
    }
    let start = std::time::Instant::now();
    let clock = move || Instant::from_millis(start.elapsed().as_millis() as u64);
    let mut rng =
        StdRng::try_from_rng(&mut SysRng).map_err(|e| CoreError::Random(e.to_string()))?;
    let config = {
        let c = lock(core);
        let mut config = DeviceConfig::new(c.id());
        config.ota_succeeded = c.ota_succeeded();
        // Device OS's Hello: an Electron, its id, and what it takes.
        config.platform_id = Some(ELECTRON_PLATFORM_ID);
        config.limits = Some(HelloLimits {
            // No system firmware module: the simulation reports none.
            system_version: 0,
            max_message_size: 1024,
            max_binary_size: c.max_image_len(),
            ota_chunk_size: UDP_OTA_CHUNK,
        });
        config.ping_interval = CELLULAR_PING_INTERVAL;
        config
    };
    let sink = CoreSink::new(core.clone());
    let refusals = sink.clone();
    let now = clock();
    let dtls = dtls::Connection::client(
        now,
        ClientConfig::new(key.clone(), cloud.server_key),
        &mut rng,
    );
    let mut conn = DeviceConnection::datagram(now, config, sink, &mut rng);
    register(core, &mut conn);
    let mut session: DatagramSession<_, StdRng> = DatagramSession::new(conn, dtls, rng);
    let app = CoreApp {
        core,
        ota_succeeded: config.ota_succeeded,
        refusals: &refusals,
    };
    let mut outgoing = FaultLine::new(cloud.faults, seed);
    let mut incoming = FaultLine::new(cloud.faults, seed ^ 0x5555);
    let mut out = vec![0u8; session.max_transmit_len()];
    let mut buf = vec![0u8; 2048];
    // After an update: (reset once quiet until, reset at the latest).
    let mut linger: Option<(Instant, Instant)> = None;
    loop {
        let now = clock();
        let mut result = session.handle_timeout(now);
        while result.is_ok()
            && let Some(event) = session.poll_event()
        {
            if app.on_event(session.session_mut(), now, event, report)? == AfterEvent::Reset
                && linger.is_none()
            {
                linger = Some((now + RESET_QUIET, now + RESET_LINGER_MAX));
            }
        }
        loop {
            match session.poll_transmit(now, &mut out) {
                Ok(Some(n)) => {
                    for d in outgoing.pass(&out[..n]) {
                        let _ = socket.send(&d).await;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if linger.is_some_and(|(quiet, latest)| now >= quiet.min(latest)) {
            // UpdateDone's acknowledgement went out, and no repeat of UpdateDone came: close and reset.
            session.close(now);
            while let Ok(Some(n)) = session.poll_transmit(now, &mut out) {
                let _ = socket.send(&out[..n]).await;
            }
            return Ok(SessionEnd::Reboot);
        }
        if let Err(e) = result {
            return lost(report, e.to_string());
        }
        let deadline = session
            .poll_timeout()
            .map_or(Duration::from_secs(60), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(
                if outgoing.held.is_some() || incoming.held.is_some() {
                    20
                } else {
                    60_000
                },
            ))
            .min(linger.map_or(Duration::MAX, |(quiet, latest)| {
                quiet.min(latest).saturating_duration_since(now)
            }));
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(n) => {
                    if let Some((quiet, _)) = &mut linger {
                        *quiet = clock() + RESET_QUIET;
                    }
                    for d in incoming.pass(&buf[..n]) {
                        // Bad records are dropped inside; an error here ends the session.
                        if let Err(e) = session.handle_datagram(clock(), &d) {
                            return lost(report, e.to_string());
                        }
                    }
                }
                // An ICMP port unreachable (no cloud there yet): keep trying until the handshake gives up.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            () = tokio::time::sleep(deadline) => {
                if let Some(d) = outgoing.release() {
                    let _ = socket.send(&d).await;
                }
                if let Some(d) = incoming.release()
                    && let Err(e) = session.handle_datagram(clock(), &d)
                {
                    return lost(report, e.to_string());
                }
            }
        }
    }
}

/// Runs a device over UDP forever: boot, connect, run sessions, reset after an update, reconnect after a
/// lost session.
pub async fn run_udp(
    core: SharedCore,
    cloud: UdpCloudConfig,
    mut report: Box<dyn FnMut(Status) + Send>,
) -> Result<(), CoreError> {
    let booted: BootReport = lock(&core).boot()?;
    report(Status::Booted(booted));
    let dir = lock(&core).dir().to_owned();
    let key = load_or_create_udp_key(&dir)?;
    let mut seed = cloud.seed;
    let mut addresses = crate::run::CloudAddresses::parse(&cloud.address);
    let mut node = cloud.clone();
    loop {
        seed = seed.wrapping_add(1);
        addresses.current().clone_into(&mut node.address);
        let end = session_udp(&core, &key, &node, seed, &mut *report).await?;
        if end == SessionEnd::Lost {
            addresses.failed();
        }
        after_session(&core, end, cloud.reconnect_delay, &mut *report).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reliable_line_passes_everything_in_order() {
        let mut line = FaultLine::new(DatagramFaults::RELIABLE, 1);
        for i in 0..100u8 {
            assert_eq!(line.pass(&[i]), vec![vec![i]]);
        }
        assert_eq!(line.release(), None);
    }

    #[test]
    fn a_faulty_line_loses_repeats_and_reorders_but_invents_nothing() {
        let mut line = FaultLine::new(DatagramFaults::each(10), 7);
        let mut delivered = Vec::new();
        for i in 0..1000u16 {
            delivered.extend(line.pass(&i.to_be_bytes()));
        }
        delivered.extend(line.release());
        let ids: Vec<u16> = delivered
            .iter()
            .map(|d| u16::from_be_bytes([d[0], d[1]]))
            .collect();
        let distinct: std::collections::BTreeSet<_> = ids.iter().copied().collect();
        assert!(distinct.len() < 1000, "nothing was lost");
        assert!(
            distinct.len() > 800,
            "too much was lost: {}",
            distinct.len()
        );
        assert!(ids.len() > distinct.len(), "nothing was repeated");
        assert!(ids.windows(2).any(|w| w[0] > w[1]), "nothing was reordered");
        assert!(ids.iter().all(|&i| i < 1000));
    }

    #[test]
    fn the_udp_key_is_made_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_udp_key(dir.path()).unwrap();
        let again = load_or_create_udp_key(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        let public = std::fs::read_to_string(dir.path().join(UDP_PUBLIC_KEY_FILE)).unwrap();
        let mut der = [0u8; 128];
        let (_, n) = dtls::pem_to_der(&public, &["PUBLIC KEY"], &mut der).unwrap();
        assert_eq!(PublicKey::from_spki(&der[..n]).unwrap(), first.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(UDP_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
