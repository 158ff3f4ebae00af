//! `spark demo --nodes N`: the fleet rollout on N cloud nodes in this process that share one PostgreSQL registry
//! and one NATS bus, both started by the demo on loopback ports ([`spark_cloud::services`]) and stopped at the end.
//!
//! Core `i` is provisioned through node `i % N` and connects to it first (it knows every node); the demo's calls,
//! reads and flash requests for a Core go through the node after the one holding it, so every one of them crosses
//! the bus. Each phase ends with a line saying which node did what.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use spark_api::{Client, Credentials, TokenLifetime};
use spark_cloud::cluster::{ClusterConfig, ClusterHub};
use spark_cloud::devices::{self, LiveHub};
use spark_cloud::hub::DeviceHub;
use spark_cloud::services::{self, NatsServer, Postgres, Program};
use spark_cloud::store::StoreConfig;
use spark_cloud::{self as local_cloud, system_rng};
use spark_protocol::DeviceId;

use super::{AbortOnDrop, DemoError, Front, Observer, Progress, Row, USER, UpdatePath};

/// The nodes and their services, as the report gives them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ClusterReport {
    /// The registry's URL.
    pub(crate) postgres: String,
    /// The bus's URL.
    pub(crate) nats: String,
    /// One entry per node.
    pub(crate) nodes: Vec<NodeReport>,
}

/// One node's share of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NodeReport {
    /// Its node id on the bus.
    pub(crate) name: String,
    /// Its REST API.
    pub(crate) http: String,
    /// Its device listener.
    pub(crate) device: String,
    /// Cores provisioned through its API.
    pub(crate) provisioned: usize,
    /// Cores it held once the fleet was online.
    pub(crate) held: usize,
    /// Cores whose calls, reads and flash requests went through its API.
    pub(crate) served: usize,
}

/// One node in this process.
struct Node {
    name: String,
    running: local_cloud::Running,
    hub: Arc<LiveHub>,
    cluster: Arc<ClusterHub>,
    device_addr: SocketAddr,
    api: Client,
    _device_task: AbortOnDrop,
}

/// PostgreSQL and NATS, stopped when dropped. They are started and dropped outside the demo's runtime, so that they
/// outlive every task of the nodes that use them.
pub(crate) struct Services {
    postgres: Postgres,
    nats: NatsServer,
}

impl Services {
    /// Starts both (blocking until they accept connections).
    pub(crate) fn start() -> Result<Services, String> {
        check_installed()?;
        let postgres = Postgres::start(false).map_err(|e| e.to_string())?;
        let nats = NatsServer::start(None).map_err(|e| e.to_string())?;
        Ok(Services { postgres, nats })
    }

    /// The registry's URL.
    pub(crate) fn store_url(&self) -> String {
        self.postgres.url("postgres")
    }

    /// The bus's URL.
    pub(crate) fn bus_url(&self) -> String {
        self.nats.url()
    }
}

/// The nodes, in this process.
pub(crate) struct Cluster {
    nodes: Vec<Node>,
    report: ClusterReport,
    password: String,
    server_key: spark_protocol::crypto::keys::RsaPublicKey,
}

/// The programs `--nodes` above 1 needs; a plain sentence naming the missing ones and how to install them.
pub(crate) fn check_installed() -> Result<(), String> {
    services::check_installed(&Program::ALL)
        .map_err(|e| format!("spark demo --nodes needs PostgreSQL and NATS on this machine: {e}"))
}

fn cloud_error(e: impl std::fmt::Display) -> DemoError {
    DemoError::Cloud(e.to_string())
}

impl Cluster {
    /// Starts `count` nodes (`n0`, `n1`, ...) on `services` with their state under `work`, makes the demo account
    /// in the shared registry and logs in on every node.
    pub(crate) async fn start(
        work: &Path,
        count: usize,
        services: &Services,
        observer: &dyn Observer,
    ) -> Result<Cluster, DemoError> {
        let store_url = services.store_url();
        let bus_url = services.bus_url();
        observer.progress(Progress::Note(&format!(
            "services: PostgreSQL registry at {store_url}, NATS bus at {bus_url}"
        )));
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let password = {
            let mut bytes = [0u8; 12];
            rand::Rng::fill_bytes(&mut system_rng(), &mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        // One at a time: the first migrates the database and makes the server keys, the others find them.
        for index in 0..count {
            let name = format!("n{index}");
            let hub = LiveHub::new();
            let cluster =
                ClusterHub::connect(ClusterConfig::new(&bus_url, &name), Arc::clone(&hub))
                    .await
                    .map_err(cloud_error)?;
            let dir = work.join(&name);
            std::fs::create_dir_all(&dir).map_err(|source| DemoError::Io {
                path: dir.clone(),
                source,
            })?;
            let cloud = local_cloud::open_store(
                &StoreConfig::Postgres(store_url.clone()),
                &dir,
                2048,
                Arc::clone(&cluster) as Arc<dyn DeviceHub>,
            )
            .await
            .map_err(cloud_error)?;
            cluster.start(cloud.bus()).await.map_err(cloud_error)?;
            let (device_addr, device_task) =
                devices::listen(Arc::clone(&cloud), Arc::clone(&hub), loopback)
                    .await
                    .map_err(cloud_error)?;
            let device_task = AbortOnDrop(device_task);
            let running = local_cloud::serve(Arc::clone(&cloud), loopback)
                .await
                .map_err(cloud_error)?;
            if index == 0 {
                // The account lives in the shared registry; the REST API has no sign-up in spark-api.
                local_cloud::store::create_user(&**cloud.store(), USER, &password)
                    .await
                    .map_err(cloud_error)?;
            }
            let anonymous = Client::builder()
                .base_url(format!("http://{}", running.http))
                .no_proxy()
                .build()?;
            let grant = anonymous
                .login(
                    &Credentials::new(USER, password.clone()),
                    TokenLifetime::Default,
                )
                .await?;
            observer.progress(Progress::Note(&format!(
                "{name}: REST API on {}, devices on {device_addr}, the demo account logged in here",
                running.http
            )));
            nodes.push(Node {
                name,
                api: anonymous.with_token(grant.access_token),
                running,
                hub,
                cluster,
                device_addr,
                _device_task: device_task,
            });
        }
        let server_key = nodes[0]
            .running
            .cloud
            .server_keys()
            .ok_or_else(|| DemoError::Cloud("the server key cannot be read".into()))?
            .current
            .public_key();
        let report = ClusterReport {
            postgres: store_url,
            nats: bus_url,
            nodes: nodes
                .iter()
                .map(|n| NodeReport {
                    name: n.name.clone(),
                    http: n.running.http.to_string(),
                    device: n.device_addr.to_string(),
                    provisioned: 0,
                    held: 0,
                    served: 0,
                })
                .collect(),
        };
        Ok(Cluster {
            nodes,
            report,
            password,
            server_key,
        })
    }

    /// What the fleet needs of the nodes.
    pub(crate) fn front(&self) -> Front {
        Front {
            device_addrs: self.nodes.iter().map(|n| n.device_addr).collect(),
            server_key: self.server_key.clone(),
            apis: self.nodes.iter().map(|n| n.api.clone()).collect(),
            api_url: format!("http://{}", self.nodes[0].running.http),
            password: self.password.clone(),
        }
    }

    fn names(&self, counts: impl Fn(&NodeReport) -> usize) -> String {
        self.report
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.name, counts(n)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Core `i` was provisioned through node `i % N`: records and says so.
    pub(crate) fn note_provisioned(&mut self, ids: &[String], observer: &dyn Observer) {
        let n = self.nodes.len();
        for index in 0..ids.len() {
            self.report.nodes[index % n].provisioned += 1;
        }
        let line = format!(
            "provisioning: Cores' keys sent through {}",
            self.names(|n| n.provisioned)
        );
        observer.progress(Progress::Note(&line));
    }

    /// Which node holds each Core now, and the node each Core's API calls go through: the next one after its
    /// holder (the first node for a Core no node holds).
    pub(crate) fn route(
        &mut self,
        ids: &[String],
        observer: &dyn Observer,
    ) -> (Vec<Option<usize>>, HashMap<String, usize>) {
        let n = self.nodes.len();
        let mut holders = Vec::with_capacity(ids.len());
        let mut routes = HashMap::new();
        for id in ids {
            let holder = id.parse::<DeviceId>().ok().and_then(|device| {
                self.nodes
                    .iter()
                    .position(|node| node.hub.is_connected(device))
            });
            let through = holder.map_or(0, |h| (h + 1) % n);
            if let Some(h) = holder {
                self.report.nodes[h].held += 1;
            }
            self.report.nodes[through].served += 1;
            holders.push(holder);
            routes.insert(id.clone(), through);
        }
        let line = format!(
            "connecting: Cores held by {}; each one's calls go through the next node",
            self.names(|n| n.held)
        );
        observer.progress(Progress::Note(&line));
        (holders, routes)
    }

    /// Puts the holder and the serving node on each row.
    pub(crate) fn label_rows(
        &self,
        rows: &mut [Row],
        holders: &[Option<usize>],
        routes: &HashMap<String, usize>,
    ) {
        for (row, holder) in rows.iter_mut().zip(holders) {
            row.node = holder.map(|h| self.nodes[h].name.clone());
            row.api_node = routes.get(&row.device).map(|&r| self.nodes[r].name.clone());
        }
    }

    /// Says, per node, how many over-the-air updates went through its API.
    pub(crate) fn note_updated(&self, rows: &[Row], observer: &dyn Observer) {
        let line = self
            .nodes
            .iter()
            .map(|node| {
                let mine = rows.iter().filter(|r| {
                    r.path == UpdatePath::Ota && r.api_node.as_deref() == Some(&node.name)
                });
                let (sent, patched) = mine.fold((0, 0), |(s, p), r| (s + 1, p + usize::from(r.ok)));
                format!("{} flashed {patched}/{sent}", node.name)
            })
            .collect::<Vec<_>>()
            .join(", ");
        observer.progress(Progress::Note(&format!(
            "updating: over-the-air requests through {line} (each to a Core another node holds)"
        )));
    }

    /// Stops the nodes (the services stop when their [`Services`] is dropped); returns the report. Call it once
    /// the Cores are off.
    pub(crate) async fn stop(self, observer: &dyn Observer) -> ClusterReport {
        // The Cores' goodbyes reach the registry before the nodes stop (bounded: a node that hangs on to a device
        // is stopped all the same).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.nodes.iter().any(|n| n.hub.connected() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for node in self.nodes {
            node.cluster.shutdown();
            node.running.shutdown();
        }
        observer.progress(Progress::Note(
            "stopped: every node (PostgreSQL and NATS stop next)",
        ));
        self.report
    }
}
