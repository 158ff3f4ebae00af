//! Several `spark-cloud` nodes on one NATS bus: events fanned out to every node, device requests routed to the
//! node that holds the device, and presence under a lease.
//!
//! One node alone needs none of this: the [`LiveHub`] answers the REST layer and the [`EventBus`] fans events out
//! in-process (the default). With `--bus nats://…` the node wraps its [`LiveHub`] in a [`ClusterHub`]:
//!
//! - **Events** a node publishes (a device's, the API's, `spark/status`) go to its own subscribers and, once, to
//!   [`wire::EVENTS`]; every other node hands them to its own [`EventBus`], which filters them per user as it does
//!   its own. A node skips its own echo.
//! - **Requests** for a device held elsewhere go to the holder's subject `spark.cluster.node.<id>` as NATS
//!   request/reply. An image is sent in pieces smaller than the server's `max_payload`, staged by the holder, then
//!   flashed; progress comes back on the reply subject.
//! - **Presence** ([`presence::Presence`]) lives in each node's memory and on [`wire::PRESENCE`], not in the
//!   registry: a node announces a device when its handshake completes and when its session ends, and sends a
//!   heartbeat each lease / 3 with how many devices it holds and their digest ([`wire::digest`]), a few dozen bytes
//!   however many. A peer whose view of it differs (it joined, or missed an announcement) asks for the list on
//!   `spark.cluster.list.<id>`, which comes in pieces under the server's `max_payload`. A peer silent for its lease
//!   holds nothing: its devices read offline and requests for them fail at once with [`HubError::NotConnected`]. A
//!   device announced by another node with a newer session makes the local connection stale, and it is dropped. A
//!   node that hears an unknown peer answers with its heartbeat, so a joining node learns the holders within two
//!   round trips (the heartbeat, then the list).

pub mod presence;
pub mod wire;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_core::Stream;
use spark_protocol::DeviceId;
use tokio::sync::mpsc;

use crate::devices::{LiveHub, PresenceChange};
use crate::events::{Event, EventBus};
use crate::hub::{
    Description, DeviceEvent, DeviceHub, FlashProgress, HubError, HubFuture, VariableValue,
};
use crate::lock;
use presence::Presence;
use wire::{EventHeader, Op, Reply, Request};

/// The default lease: a node silent this long is taken for dead.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// Events waiting to go out on the bus at most; past it an event reaches only this node's subscribers (counted and
/// logged), rather than holding memory without bound while NATS is slow.
const OUTGOING_EVENTS: usize = 65_536;
/// The largest image a holder stages for one upload.
const MAX_STAGED_IMAGE: u64 = 4 * 1024 * 1024;
/// Uploads a holder stages at once at most.
const MAX_STAGED_UPLOADS: usize = 16;
/// A staged upload not flashed within this is dropped.
const STAGED_LIFETIME: Duration = Duration::from_secs(120);

/// How a node joins the bus.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The NATS server, `nats://host:port`.
    pub url: String,
    /// This node's id (see [`wire::valid_node_id`]).
    pub node: String,
    /// The lease of this node's presence; heartbeats go out every lease / 3.
    pub lease: Duration,
    /// How long a request to another node may take (an update: how long it may go without progress).
    pub request_timeout: Duration,
}

impl ClusterConfig {
    /// A node `node` on `url` with the default lease and [`crate::REQUEST_TIMEOUT`].
    #[must_use]
    pub fn new(url: &str, node: &str) -> ClusterConfig {
        ClusterConfig {
            url: url.to_owned(),
            node: node.to_owned(),
            lease: DEFAULT_LEASE,
            request_timeout: crate::REQUEST_TIMEOUT,
        }
    }
}

/// A node id no other node is likely to have: the process id and random bits.
#[must_use]
pub fn unique_node_id() -> String {
    let mut bytes = [0u8; 4];
    rand_core::Rng::fill_bytes(&mut crate::system_rng(), &mut bytes);
    format!(
        "node-{}-{}",
        std::process::id(),
        crate::encoding::hex(&bytes)
    )
}

/// Why a node could not join the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node id is not a subject token.
    #[error("invalid node id {0:?}: 1 to 64 letters, digits, '-' or '_'")]
    NodeId(String),
    /// The lease is too short to heartbeat.
    #[error("the lease must be at least 300 ms")]
    Lease,
    /// The NATS server could not be reached.
    #[error("cannot connect to the bus at {url}: {reason}")]
    Connect {
        /// The server.
        url: String,
        /// Why.
        reason: String,
    },
    /// A subscription was refused.
    #[error("cannot subscribe on the bus: {0}")]
    Subscribe(String),
}

/// The [`DeviceHub`] of a node on the bus: the local [`LiveHub`] for the devices held here, NATS requests to the
/// holder for the others.
pub struct ClusterHub {
    local: Arc<LiveHub>,
    client: async_nats::Client,
    config: ClusterConfig,
    presence: Arc<Mutex<Presence>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Peers whose list is being fetched (one fetch per peer at a time).
    fetching: Mutex<std::collections::HashSet<String>>,
}

impl core::fmt::Debug for ClusterHub {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClusterHub")
            .field("node", &self.config.node)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for ClusterHub {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// The next message of a subscription.
async fn next(sub: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    std::future::poll_fn(|cx| Pin::new(&mut *sub).poll_next(cx)).await
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ClusterHub {
    /// Connects node `config.node` to the bus in front of `local`. Nothing is subscribed until
    /// [`ClusterHub::start`].
    pub async fn connect(
        config: ClusterConfig,
        local: Arc<LiveHub>,
    ) -> Result<Arc<ClusterHub>, ClusterError> {
        if !wire::valid_node_id(&config.node) {
            return Err(ClusterError::NodeId(config.node));
        }
        if config.lease < Duration::from_millis(300) {
            return Err(ClusterError::Lease);
        }
        let options = async_nats::ConnectOptions::new()
            .name(format!("spark-cloud {}", config.node))
            .request_timeout(Some(config.request_timeout))
            .connection_timeout(Duration::from_secs(5));
        let client = async_nats::connect_with_options(config.url.as_str(), options)
            .await
            .map_err(|e| ClusterError::Connect {
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
        let presence = Arc::new(Mutex::new(Presence::new(&config.node, config.lease)));
        Ok(Arc::new(ClusterHub {
            local,
            client,
            config,
            presence,
            tasks: Mutex::new(Vec::new()),
            fetching: Mutex::new(std::collections::HashSet::new()),
        }))
    }

    /// This node's id.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// The local devices' hub.
    #[must_use]
    pub fn local(&self) -> &Arc<LiveHub> {
        &self.local
    }

    /// Other nodes alive now.
    #[must_use]
    pub fn live_peers(&self) -> usize {
        lock(&self.presence).live_peers(Instant::now())
    }

    /// Subscribes to the cluster's subjects, relays `bus`'s events to the other nodes and starts the heartbeat.
    pub async fn start(self: &Arc<Self>, bus: &Arc<EventBus>) -> Result<(), ClusterError> {
        let sub = |e: async_nats::SubscribeError| ClusterError::Subscribe(e.to_string());
        let presence_sub = self.client.subscribe(wire::PRESENCE).await.map_err(sub)?;
        let events_sub = self.client.subscribe(wire::EVENTS).await.map_err(sub)?;
        let requests_sub = self
            .client
            .subscribe(wire::node_subject(&self.config.node))
            .await
            .map_err(sub)?;
        let list_sub = self
            .client
            .subscribe(wire::list_subject(&self.config.node))
            .await
            .map_err(sub)?;
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        self.local.watch(changes_tx);
        let (events_tx, events_rx) = mpsc::channel::<Event>(OUTGOING_EVENTS);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&dropped);
        bus.set_relay(Box::new(move |event: &Event| {
            if events_tx.try_send(event.clone()).is_err()
                && counted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(1000)
            {
                eprintln!("spark-cloud: cluster: the bus is behind; events reach this node's subscribers only");
            }
        }));
        let tasks = vec![
            tokio::spawn(Arc::clone(self).run_presence(presence_sub, changes_rx)),
            tokio::spawn(Arc::clone(self).run_events_in(events_sub, Arc::clone(bus))),
            tokio::spawn(Arc::clone(self).run_events_out(events_rx)),
            tokio::spawn(Arc::clone(self).run_requests(requests_sub)),
            tokio::spawn(Arc::clone(self).run_list_answers(list_sub)),
        ];
        lock(&self.tasks).extend(tasks);
        // Heard at once by the others, who answer with theirs.
        let beat = lock(&self.presence).heartbeat();
        self.publish_presence(&beat).await;
        let _ = self.client.flush().await;
        Ok(())
    }

    /// Joins `cloud` to the bus's administrative traffic: the changes made here to the shared registry (token
    /// revocations and cut-offs, owner changes, key rotations) go out on [`wire::ADMIN`], and those of the other
    /// nodes are acted on here at once ([`crate::Cloud::handle_admin_change`]). Also reports, to this node's own
    /// subscribers, the devices of a peer whose lease ran out ([`crate::Cloud::devices_lost`]), checked every lease
    /// / 4.
    ///
    /// Like the rest of the bus, these messages are trusted because they came over it: any client of the NATS
    /// server can end streams or make a node reload. A message missed (NATS core is at-most-once) is made up by the
    /// registry: a revoked token is refused everywhere once the REST layer's cached answer expires (at most
    /// [`crate::cache::TOKEN_CACHE_TTL`]; a device record likewise within [`crate::cache::DEVICE_CACHE_TTL`]),
    /// the poll of the store's generation
    /// (every 2 s in the binary) reloads keys and ends the streams a cut-off refuses, and an owner cached elsewhere
    /// expires within [`crate::store::OWNER_CACHE_TTL`]; a stream whose single token or user was revoked stays open
    /// on a node that missed the message.
    pub async fn start_admin(
        self: &Arc<Self>,
        cloud: &Arc<crate::Cloud>,
    ) -> Result<(), ClusterError> {
        let admin_sub = self
            .client
            .subscribe(wire::ADMIN)
            .await
            .map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel::<wire::AdminChange>();
        cloud.set_admin_relay(Box::new(move |change: &wire::AdminChange| {
            let _ = tx.send(change.clone());
        }));
        let weak = Arc::downgrade(cloud);
        let tasks = vec![
            tokio::spawn(Arc::clone(self).run_admin_in(admin_sub, weak.clone())),
            tokio::spawn(Arc::clone(self).run_admin_out(rx)),
            tokio::spawn(Arc::clone(self).run_lost_peers(weak)),
        ];
        lock(&self.tasks).extend(tasks);
        // The subscription is registered with the server before a change made here can be answered elsewhere.
        let _ = self.client.flush().await;
        Ok(())
    }

    async fn run_admin_out(
        self: Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<wire::AdminChange>,
    ) {
        while let Some(change) = changes.recv().await {
            let message = wire::AdminMessage {
                node: self.config.node.clone(),
                change,
            };
            if let Err(e) = self
                .client
                .publish(wire::ADMIN, wire::emit(&message, b""))
                .await
            {
                eprintln!("spark-cloud: cluster: cannot publish an administrative change: {e}");
            }
            let _ = self.client.flush().await;
        }
    }

    async fn run_admin_in(
        self: Arc<Self>,
        mut sub: async_nats::Subscriber,
        cloud: std::sync::Weak<crate::Cloud>,
    ) {
        while let Some(message) = next(&mut sub).await {
            let parsed = match wire::parse_admin(&message.payload) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!(
                        "spark-cloud: cluster: dropped a malformed administrative message: {e}"
                    );
                    continue;
                }
            };
            if parsed.node == self.config.node {
                continue;
            }
            let Some(cloud) = cloud.upgrade() else { return };
            // Forgetting cached tokens and devices and ending streams is immediate, here; reloading keys reads
            // the store, off the async workers.
            if !cloud.forget_for(&parsed.change) {
                continue;
            }
            let done = tokio::task::spawn_blocking(move || cloud.reload_admin_files()).await;
            if let Ok(Err(e)) = done {
                eprintln!("spark-cloud: cluster: cannot act on another node's change: {e}");
            }
        }
    }

    async fn run_lost_peers(self: Arc<Self>, cloud: std::sync::Weak<crate::Cloud>) {
        let mut every = tokio::time::interval(self.config.lease / 4);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let lost = lock(&self.presence).handle_lost_peers(Instant::now());
            if lost.is_empty() {
                continue;
            }
            let Some(cloud) = cloud.upgrade() else { return };
            eprintln!(
                "spark-cloud: cluster: a node's lease ran out; {} of its devices are offline",
                lost.len()
            );
            let _ = tokio::task::spawn_blocking(move || cloud.devices_lost(&lost)).await;
        }
    }

    /// Leaves the bus: the tasks stop, so the other nodes see this node's devices go offline when its lease ends.
    /// The tasks hold the hub, so dropping the last handle outside them does not stop them: call this.
    pub fn shutdown(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    async fn publish_presence(&self, message: &wire::PresenceMessage) {
        if let Err(e) = self
            .client
            .publish(wire::PRESENCE, wire::emit(message, b""))
            .await
        {
            eprintln!("spark-cloud: cluster: cannot publish presence: {e}");
        }
    }

    async fn run_presence(
        self: Arc<Self>,
        mut sub: async_nats::Subscriber,
        mut changes: mpsc::UnboundedReceiver<PresenceChange>,
    ) {
        let mut beat = tokio::time::interval(self.config.lease / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    let message = {
                        let mut p = lock(&self.presence);
                        p.handle_timeout(Instant::now());
                        p.heartbeat()
                    };
                    self.publish_presence(&message).await;
                }
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    let message = {
                        let mut p = lock(&self.presence);
                        match change {
                            PresenceChange::Held { device, serial } => {
                                Some(p.handle_local_held(device, serial, epoch_ms()))
                            }
                            PresenceChange::Released { device, serial } => {
                                p.handle_local_released(device, serial)
                            }
                        }
                    };
                    if let Some(message) = message {
                        self.publish_presence(&message).await;
                    }
                }
                message = next(&mut sub) => {
                    let Some(message) = message else { return };
                    let parsed = match wire::parse_presence(&message.payload) {
                        Ok(m) => m,
                        Err(e) => {
                            eprintln!("spark-cloud: cluster: dropped a malformed presence message: {e}");
                            continue;
                        }
                    };
                    let sender = parsed.node().to_owned();
                    let outcome = lock(&self.presence).handle_message(parsed, Instant::now());
                    self.drop_stale(&outcome.stale);
                    if outcome.fetch_list && lock(&self.fetching).insert(sender.clone()) {
                        let me = Arc::clone(&self);
                        let task = tokio::spawn(async move {
                            me.fetch_list(&sender).await;
                            lock(&me.fetching).remove(&sender);
                        });
                        let mut tasks = lock(&self.tasks);
                        tasks.retain(|t| !t.is_finished());
                        tasks.push(task);
                    }
                    if outcome.newcomer {
                        let beat = lock(&self.presence).heartbeat();
                        self.publish_presence(&beat).await;
                    }
                }
            }
        }
    }

    fn drop_stale(&self, stale: &[(DeviceId, u64)]) {
        for &(device, serial) in stale {
            eprintln!(
                "spark-cloud: cluster: device {device} reconnected to another node; its stale session here is dropped"
            );
            self.local.disconnect(device, serial);
        }
    }

    /// Asks `node` for the list of the devices it holds, piece by piece, and takes it. A list that changed between
    /// pieces is asked again (a few times); a node that does not answer is left to its next heartbeat.
    async fn fetch_list(&self, node: &str) {
        let subject = wire::list_subject(node);
        'attempt: for _ in 0..3 {
            let mut devices = Vec::new();
            let mut first: Option<(u32, u64, String)> = None;
            let mut piece = 0u32;
            loop {
                let asked = self
                    .client
                    .request(
                        subject.clone(),
                        wire::emit(&wire::ListRequest { piece }, b""),
                    )
                    .await;
                let answer = match asked {
                    Ok(message) => wire::parse_list_piece(&message.payload),
                    Err(e) => {
                        eprintln!("spark-cloud: cluster: no list from node {node}: {e}");
                        return;
                    }
                };
                let answer = match answer {
                    Ok(a) if a.node == node && a.piece == piece => a,
                    Ok(_) | Err(_) => {
                        eprintln!(
                            "spark-cloud: cluster: dropped a malformed list piece from node {node}"
                        );
                        return;
                    }
                };
                match &first {
                    None => first = Some((answer.pieces, answer.count, answer.digest.clone())),
                    Some((pieces, count, digest))
                        if (*pieces, *count, digest.as_str())
                            != (answer.pieces, answer.count, answer.digest.as_str()) =>
                    {
                        continue 'attempt;
                    }
                    Some(_) => {}
                }
                devices.extend(answer.devices);
                piece += 1;
                if piece >= answer.pieces {
                    break;
                }
            }
            if let Some((_, count, digest)) = first {
                let outcome =
                    lock(&self.presence).handle_list(node, count, &digest, devices, Instant::now());
                self.drop_stale(&outcome.stale);
            }
            return;
        }
    }

    /// Answers other nodes' requests for pieces of this node's list of devices.
    async fn run_list_answers(self: Arc<Self>, mut sub: async_nats::Subscriber) {
        let per_piece = wire::holdings_per_piece(self.client.server_info().max_payload);
        while let Some(message) = next(&mut sub).await {
            let Some(reply_to) = message.reply.clone() else {
                continue;
            };
            let request = match wire::parse_list_request(&message.payload) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("spark-cloud: cluster: dropped a malformed list request: {e}");
                    continue;
                }
            };
            let piece = lock(&self.presence).list_piece(request.piece, per_piece);
            if let Some(piece) = piece
                && let Err(e) = self.client.publish(reply_to, wire::emit(&piece, b"")).await
            {
                eprintln!("spark-cloud: cluster: cannot answer a list request: {e}");
            }
        }
    }

    async fn run_events_out(self: Arc<Self>, mut events: mpsc::Receiver<Event>) {
        while let Some(event) = events.recv().await {
            let header = EventHeader {
                node: self.config.node.clone(),
                name: event.name.to_string(),
                owner: event.owner.as_deref().map(str::to_owned),
                device: event.device.map(|d| d.to_string()),
                public: event.public,
            };
            if let Err(e) = self
                .client
                .publish(wire::EVENTS, wire::emit(&header, &event.frame))
                .await
            {
                eprintln!("spark-cloud: cluster: cannot publish an event: {e}");
            }
        }
    }

    async fn run_events_in(self: Arc<Self>, mut sub: async_nats::Subscriber, bus: Arc<EventBus>) {
        while let Some(message) = next(&mut sub).await {
            let (header, frame) = match wire::parse_event(&message.payload) {
                Ok(parsed) => parsed,
                Err(e) => {
                    eprintln!("spark-cloud: cluster: dropped a malformed event message: {e}");
                    continue;
                }
            };
            if header.node == self.config.node {
                continue;
            }
            let event = Event {
                name: header.name.into(),
                owner: header.owner.map(Into::into),
                device: header.device.and_then(|d| d.parse().ok()),
                public: header.public,
                frame: message.payload.slice_ref(frame),
            };
            bus.publish_from_peer(&event);
        }
    }

    async fn run_requests(self: Arc<Self>, mut sub: async_nats::Subscriber) {
        let staged = Arc::new(Mutex::new(HashMap::<u64, Staged>::new()));
        while let Some(message) = next(&mut sub).await {
            let Some(reply_to) = message.reply.clone() else {
                eprintln!("spark-cloud: cluster: dropped a request without a reply subject");
                continue;
            };
            let (request, body) = match wire::parse_request(&message.payload) {
                Ok((r, body)) => (r, message.payload.slice_ref(body)),
                Err(e) => {
                    eprintln!("spark-cloud: cluster: dropped a malformed request: {e}");
                    continue;
                }
            };
            let me = Arc::clone(&self);
            let staged = Arc::clone(&staged);
            tokio::spawn(async move {
                me.answer(request, body, reply_to, &staged).await;
            });
        }
    }

    /// Answers one request for a device held here.
    async fn answer(
        &self,
        request: Request,
        body: Bytes,
        reply_to: async_nats::Subject,
        staged: &Mutex<HashMap<u64, Staged>>,
    ) {
        let send = |reply: Reply| {
            let client = self.client.clone();
            let reply_to = reply_to.clone();
            async move {
                let _ = client.publish(reply_to, wire::emit(&reply, b"")).await;
            }
        };
        let Ok(device) = request.device.parse::<DeviceId>() else {
            send(Reply::failed(&HubError::NotConnected)).await;
            return;
        };
        let limit = self.config.request_timeout;
        let local = &self.local;
        let reply = match request.op {
            Op::Describe => {
                within(
                    limit,
                    Box::pin(
                        async move { local.describe(device).await.map(|d| Reply::described(&d)) },
                    ),
                )
                .await
            }
            Op::Call { function, argument } => {
                within(
                    limit,
                    Box::pin(async move {
                        local
                            .call(device, &function, &argument)
                            .await
                            .map(|value| Reply::Returned { value })
                    }),
                )
                .await
            }
            Op::Get { variable } => {
                within(
                    limit,
                    Box::pin(async move {
                        local
                            .get(device, &variable)
                            .await
                            .map(|v| Reply::Read { value: (&v).into() })
                    }),
                )
                .await
            }
            Op::Signal { on } => {
                within(
                    limit,
                    Box::pin(async move { local.signal(device, on).await.map(|()| Reply::Done) }),
                )
                .await
            }
            Op::Deliver {
                name,
                data,
                ttl,
                public,
            } => {
                let event = DeviceEvent {
                    name,
                    data,
                    ttl,
                    public,
                };
                within(
                    limit,
                    Box::pin(
                        async move { local.deliver(device, &event).await.map(|()| Reply::Done) },
                    ),
                )
                .await
            }
            Op::Chunk {
                upload,
                offset,
                total,
            } => stage(staged, device, upload, offset, total, &body),
            Op::Flash { upload, total } => {
                let image = {
                    let mut staged = lock(staged);
                    staged.remove(&upload)
                };
                match image {
                    Some(s) if s.device == device && s.image.len() as u64 == total => {
                        self.flash_here(device, Bytes::from(s.image), &reply_to)
                            .await
                    }
                    _ => Reply::failed(&HubError::Device(
                        "the image did not reach the holding node whole".into(),
                    )),
                }
            }
        };
        send(reply).await;
    }

    /// Flashes a device held here for another node, sending progress to `reply_to`; returns the outcome.
    async fn flash_here(
        &self,
        device: DeviceId,
        image: Bytes,
        reply_to: &async_nats::Subject,
    ) -> Reply {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let progress: Arc<dyn FlashProgress> = Arc::new(ForwardProgress(tx));
        let mut flash = self.local.flash(device, image, progress);
        let result = loop {
            tokio::select! {
                result = &mut flash => break result,
                Some((sent, total)) = rx.recv() => {
                    let _ = self
                        .client
                        .publish(reply_to.clone(), wire::emit(&Reply::Progress { sent, total }, b""))
                        .await;
                }
            }
        };
        match result {
            Ok(()) => Reply::Done,
            Err(e) => Reply::failed(&e),
        }
    }

    /// The node that holds `device`, if it is another live node; `NotConnected` when none does.
    fn remote_holder(&self, device: DeviceId) -> Result<String, HubError> {
        lock(&self.presence)
            .holder(device, Instant::now())
            .map(str::to_owned)
            .ok_or(HubError::NotConnected)
    }

    /// Sends `op` for `device` to its holder and waits for the reply.
    async fn ask(&self, device: DeviceId, op: Op, body: &[u8]) -> Result<Reply, HubError> {
        let holder = self.remote_holder(device)?;
        let payload = wire::emit(
            &Request {
                device: device.to_string(),
                op,
            },
            body,
        );
        let sent = tokio::time::timeout(
            self.config.request_timeout,
            self.client.request(wire::node_subject(&holder), payload),
        )
        .await;
        let message = match sent {
            Err(_) => return Err(HubError::TimedOut),
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => HubError::NotConnected,
                    async_nats::RequestErrorKind::TimedOut => HubError::TimedOut,
                    _ => HubError::Device(format!("the bus failed: {e}")),
                });
            }
            Ok(Ok(message)) => message,
        };
        match wire::parse_reply(&message.payload) {
            Ok(Reply::Failed { error }) => Err(error.into()),
            Ok(reply) => Ok(reply),
            Err(e) => Err(HubError::Device(format!(
                "the holding node's answer was malformed: {e}"
            ))),
        }
    }

    /// Sends `image` to the holder in pieces, then has it flashed, relaying its progress.
    async fn remote_flash(
        &self,
        device: DeviceId,
        image: Bytes,
        progress: Arc<dyn FlashProgress>,
    ) -> Result<(), HubError> {
        let holder = self.remote_holder(device)?;
        let total = image.len() as u64;
        // Room for the header under the server's limit (1 MiB unless `max_payload` says otherwise).
        let max = self.client.server_info().max_payload;
        let piece = max.saturating_sub(1024).clamp(1024, 256 * 1024);
        let mut upload_bytes = [0u8; 8];
        rand_core::Rng::fill_bytes(&mut crate::system_rng(), &mut upload_bytes);
        let upload = u64::from_le_bytes(upload_bytes);
        let mut offset = 0u64;
        for part in image.chunks(piece) {
            match self
                .ask(
                    device,
                    Op::Chunk {
                        upload,
                        offset,
                        total,
                    },
                    part,
                )
                .await?
            {
                Reply::Done => offset += part.len() as u64,
                other => return Err(other.unexpected()),
            }
        }
        let inbox = self.client.new_inbox();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| HubError::Device(format!("the bus failed: {e}")))?;
        let request = wire::emit(
            &Request {
                device: device.to_string(),
                op: Op::Flash { upload, total },
            },
            b"",
        );
        self.client
            .publish_with_reply(wire::node_subject(&holder), inbox, request)
            .await
            .map_err(|e| HubError::Device(format!("the bus failed: {e}")))?;
        loop {
            // The holder reports progress as the device acknowledges; silent for a whole timeout, it is gone.
            let message = tokio::time::timeout(self.config.request_timeout, next(&mut answers))
                .await
                .map_err(|_| HubError::TimedOut)?
                .ok_or(HubError::NotConnected)?;
            if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err(HubError::NotConnected);
            }
            match wire::parse_reply(&message.payload) {
                Ok(Reply::Progress { sent, total }) => progress.progress(
                    usize::try_from(sent).unwrap_or(usize::MAX),
                    usize::try_from(total).unwrap_or(usize::MAX),
                ),
                Ok(Reply::Done) => return Ok(()),
                Ok(other) => return Err(other.unexpected()),
                Err(e) => {
                    return Err(HubError::Device(format!(
                        "the holding node's answer was malformed: {e}"
                    )));
                }
            }
        }
    }
}

/// Publishes one administrative change on the bus at `url` as node `node`, and waits until the server has it: how
/// an admin command run beside the nodes (`spark-cloud --store … --bus … keys rotate`) tells them at once.
pub async fn announce_once(
    url: &str,
    node: &str,
    change: wire::AdminChange,
) -> Result<(), ClusterError> {
    let connect = |e: String| ClusterError::Connect {
        url: url.to_owned(),
        reason: e,
    };
    let options = async_nats::ConnectOptions::new()
        .name(format!("spark-cloud {node}"))
        .connection_timeout(Duration::from_secs(5));
    let client = async_nats::connect_with_options(url, options)
        .await
        .map_err(|e| connect(e.to_string()))?;
    let message = wire::AdminMessage {
        node: node.to_owned(),
        change,
    };
    client
        .publish(wire::ADMIN, wire::emit(&message, b""))
        .await
        .map_err(|e| connect(e.to_string()))?;
    client.flush().await.map_err(|e| connect(e.to_string()))
}

/// The reply of a local request, or `TimedOut` past `limit`.
async fn within(limit: Duration, f: HubFuture<'_, Reply>) -> Reply {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or(Err(HubError::TimedOut))
        .unwrap_or_else(|e| Reply::failed(&e))
}

/// An image being received for a device held here.
struct Staged {
    device: DeviceId,
    image: Vec<u8>,
    started: Instant,
}

fn stage(
    staged: &Mutex<HashMap<u64, Staged>>,
    device: DeviceId,
    upload: u64,
    offset: u64,
    total: u64,
    body: &[u8],
) -> Reply {
    if total > MAX_STAGED_IMAGE {
        return Reply::failed(&HubError::Device("the image is too large".into()));
    }
    let mut staged = lock(staged);
    let now = Instant::now();
    staged.retain(|_, s| now.duration_since(s.started) < STAGED_LIFETIME);
    if offset == 0 {
        if staged.len() >= MAX_STAGED_UPLOADS {
            return Reply::failed(&HubError::Busy("too many updates under way".into()));
        }
        staged.insert(
            upload,
            Staged {
                device,
                image: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
                started: now,
            },
        );
    }
    match staged.get_mut(&upload) {
        Some(s) if s.device == device && s.image.len() as u64 == offset => {
            s.image.extend_from_slice(body);
            Reply::Done
        }
        _ => {
            staged.remove(&upload);
            Reply::failed(&HubError::Device(
                "an image piece arrived out of order".into(),
            ))
        }
    }
}

/// Hands a local update's progress to the task that forwards it to the asking node.
struct ForwardProgress(mpsc::UnboundedSender<(u64, u64)>);

impl FlashProgress for ForwardProgress {
    fn progress(&self, sent: usize, total: usize) {
        let _ = self.0.send((sent as u64, total as u64));
    }
}

impl DeviceHub for ClusterHub {
    fn is_connected(&self, device: DeviceId) -> bool {
        self.local.is_connected(device)
            || lock(&self.presence)
                .holder(device, Instant::now())
                .is_some()
    }

    fn describe<'a>(&'a self, device: DeviceId) -> HubFuture<'a, Description> {
        if self.local.is_connected(device) {
            return self.local.describe(device);
        }
        Box::pin(async move {
            self.ask(device, Op::Describe, b"")
                .await?
                .into_description()
        })
    }

    fn call<'a>(
        &'a self,
        device: DeviceId,
        function: &'a str,
        argument: &'a str,
    ) -> HubFuture<'a, i32> {
        if self.local.is_connected(device) {
            return self.local.call(device, function, argument);
        }
        Box::pin(async move {
            let op = Op::Call {
                function: function.to_owned(),
                argument: argument.to_owned(),
            };
            match self.ask(device, op, b"").await? {
                Reply::Returned { value } => Ok(value),
                other => Err(other.unexpected()),
            }
        })
    }

    fn get<'a>(&'a self, device: DeviceId, variable: &'a str) -> HubFuture<'a, VariableValue> {
        if self.local.is_connected(device) {
            return self.local.get(device, variable);
        }
        Box::pin(async move {
            let op = Op::Get {
                variable: variable.to_owned(),
            };
            match self.ask(device, op, b"").await? {
                Reply::Read { value } => Ok(value.into()),
                other => Err(other.unexpected()),
            }
        })
    }

    fn signal<'a>(&'a self, device: DeviceId, on: bool) -> HubFuture<'a, ()> {
        if self.local.is_connected(device) {
            return self.local.signal(device, on);
        }
        Box::pin(async move {
            match self.ask(device, Op::Signal { on }, b"").await? {
                Reply::Done => Ok(()),
                other => Err(other.unexpected()),
            }
        })
    }

    fn deliver<'a>(&'a self, device: DeviceId, event: &'a DeviceEvent) -> HubFuture<'a, ()> {
        if self.local.is_connected(device) {
            return self.local.deliver(device, event);
        }
        Box::pin(async move {
            let op = Op::Deliver {
                name: event.name.clone(),
                data: event.data.clone(),
                ttl: event.ttl,
                public: event.public,
            };
            match self.ask(device, op, b"").await? {
                Reply::Done => Ok(()),
                other => Err(other.unexpected()),
            }
        })
    }

    fn flash<'a>(
        &'a self,
        device: DeviceId,
        image: Bytes,
        progress: Arc<dyn FlashProgress>,
    ) -> HubFuture<'a, ()> {
        if self.local.is_connected(device) {
            return self.local.flash(device, image, progress);
        }
        Box::pin(self.remote_flash(device, image, progress))
    }
}
