//! `spark demo --udp N`: Electron-class devices join the demo's cloud over UDP (DTLS, P-256 keys) once the Cores'
//! rollout is done, and are reached through the same REST API: each is provisioned with its P-256 key, comes online,
//! answers a Tinker call and a variable read. Calls to a UDP device and to a TCP Core of the fleet are timed
//! interleaved, so the report holds both round trips from the same run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use spark_api::{Client, VariableValue};
use spark_cc3000::ServicePack;
use spark_cloud::Cloud;
use spark_cloud::devices::LiveHub;
use spark_cloud::udp::{UdpLimits, listen_udp};
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_vcore::VirtualCore;
use spark_vcore::run::{SharedCore, Status};
use spark_vcore::udp::{
    DatagramFaults, UdpCloudConfig, load_or_create_udp_key, run_udp, udp_public_key_pem,
};
use tokio::sync::mpsc;

use super::fleet::DemoError;

/// Calls timed on each transport for the comparison.
const TIMED_CALLS: usize = 20;
/// How long a UDP device has to come online.
const ONLINE_WAIT: Duration = Duration::from_secs(30);

/// One UDP device of the demo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct UdpRow {
    /// Its id.
    pub(crate) device: String,
    /// It came online through the UDP listener.
    pub(crate) online: bool,
    /// What `digitalwrite D7,HIGH` returned through the API.
    pub(crate) call_result: Option<i32>,
    /// Its `temperature` variable, read through the API.
    pub(crate) temperature: Option<f64>,
    /// What went wrong, if anything.
    pub(crate) error: Option<String>,
}

/// The UDP part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct UdpReport {
    /// The UDP listener's address.
    pub(crate) listen: String,
    /// One row per device.
    pub(crate) devices: Vec<UdpRow>,
    /// Median round trip of a function call through the REST API to a UDP device, in milliseconds.
    pub(crate) udp_call_ms: Option<f64>,
    /// The same, to a TCP Core of the fleet, timed interleaved with the UDP calls.
    pub(crate) tcp_call_ms: Option<f64>,
    /// The TCP Core it was compared with.
    pub(crate) tcp_device: Option<String>,
}

impl UdpReport {
    /// Whether every UDP device came online and answered.
    pub(crate) fn succeeded(&self) -> bool {
        self.devices.iter().all(|d| d.error.is_none())
    }
}

/// Aborts the UDP devices' and the listener's tasks when the phase ends.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs the phase: `count` UDP devices against `cloud`, through `api`; `tcp_devices` are fleet Cores that are
/// online, the first that answers is timed beside them.
pub(crate) async fn run(
    cloud: &Arc<Cloud>,
    hub: &Arc<LiveHub>,
    api: &Client,
    work: &Path,
    count: usize,
    seed: u64,
    tcp_devices: &[String],
) -> Result<UdpReport, DemoError> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let (listen, listener) = listen_udp(
        Arc::clone(cloud),
        Arc::clone(hub),
        loopback,
        UdpLimits::DEFAULT,
    )
    .await
    .map_err(|e| DemoError::Cloud(format!("cannot listen on UDP: {e}")))?;
    let mut tasks = Tasks(vec![listener]);
    let server_key = cloud.udp_server_key().public_key();

    // The devices: ids from the seed; one RSA key for all (they never use it), a P-256 key each.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0e1e_c750);
    let rsa = tokio::task::spawn_blocking(move || RsaPrivateKey::generate(&mut rand::rng(), 1024))
        .await
        .map_err(|e| DemoError::Cloud(e.to_string()))?
        .map_err(|e| DemoError::Cloud(e.to_string()))?;
    let mut devices = Vec::with_capacity(count);
    for i in 0..count {
        let mut id = [0u8; 12];
        rng.fill_bytes(&mut id);
        let dir = work.join(format!("udp-{i:03}"));
        let core = VirtualCore::create_with_identity(&dir, ServicePack::SP_1_28, id, rsa.clone())
            .map_err(|e| DemoError::Cloud(e.to_string()))?;
        let key = load_or_create_udp_key(&dir).map_err(|e| DemoError::Cloud(e.to_string()))?;
        let device = core.id_hex().to_owned();
        api.send_public_key(&device, &udp_public_key_pem(&key.public_key()), Some("ecc"))
            .await?;
        let shared: SharedCore = Arc::new(std::sync::Mutex::new(core));
        let (tx, rx) = mpsc::unbounded_channel();
        let config = UdpCloudConfig {
            address: listen.to_string(),
            server_key,
            faults: DatagramFaults::RELIABLE,
            seed: seed.wrapping_add(i as u64),
            reconnect_delay: Duration::from_millis(500),
        };
        tasks.0.push(tokio::spawn(async move {
            let report = Box::new(move |s: Status| {
                let _ = tx.send(s);
            });
            let _ = run_udp(shared, config, report).await;
        }));
        devices.push((device, rx));
    }

    let mut rows = Vec::with_capacity(count);
    for (device, mut status) in devices {
        let online = tokio::time::timeout(ONLINE_WAIT, async {
            while let Some(s) = status.recv().await {
                if matches!(s, Status::Connected { .. }) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        let mut row = UdpRow {
            device: device.clone(),
            online,
            call_result: None,
            temperature: None,
            error: None,
        };
        if !online {
            row.error = Some("did not come online over UDP".into());
            rows.push(row);
            continue;
        }
        match api.call_function(&device, "digitalwrite", "D7,HIGH").await {
            Ok(r) => row.call_result = Some(r.return_value),
            Err(e) => row.error = Some(format!("call: {e}")),
        }
        match api.variable(&device, "temperature").await {
            Ok(v) => {
                if let VariableValue::Double(t) = v.result {
                    row.temperature = Some(t);
                }
            }
            Err(e) => row.error = Some(format!("variable: {e}")),
        }
        rows.push(row);
    }

    // The same call to a UDP device and to a TCP Core, interleaved.
    let udp_device = rows
        .iter()
        .find(|r| r.error.is_none())
        .map(|r| r.device.clone());
    let mut tcp_device = None;
    for id in tcp_devices {
        if api.call_function(id, "digitalread", "D7").await.is_ok() {
            tcp_device = Some(id.clone());
            break;
        }
    }
    let (mut udp_ms, mut tcp_ms) = (Vec::new(), Vec::new());
    if let Some(udp) = &udp_device {
        for _ in 0..TIMED_CALLS {
            if let Some(ms) = timed_call(api, udp).await {
                udp_ms.push(ms);
            }
            if let Some(tcp) = &tcp_device
                && let Some(ms) = timed_call(api, tcp).await
            {
                tcp_ms.push(ms);
            }
        }
    }
    drop(tasks);
    Ok(UdpReport {
        listen: listen.to_string(),
        devices: rows,
        udp_call_ms: median(&mut udp_ms),
        tcp_call_ms: median(&mut tcp_ms),
        tcp_device,
    })
}

async fn timed_call(api: &Client, device: &str) -> Option<f64> {
    let start = Instant::now();
    api.call_function(device, "digitalread", "D7").await.ok()?;
    Some(start.elapsed().as_secs_f64() * 1000.0)
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(3.0));
    }
}
