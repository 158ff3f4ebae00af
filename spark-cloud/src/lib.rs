//! `spark-cloud`: a Spark cloud on one machine, as a library (what `spark demo` and the tests start in-process) and
//! the `spark-cloud` binary.
//!
//! The REST API of the 2014 cloud (tokens, users, devices, functions, variables, events as server-sent events,
//! publish, over-the-air flashing, key provisioning, claim / rename / release) over HTTP/1.1, with its registry
//! behind the [`store::Store`] trait: a directory ([`state::StateDir`], the default) or PostgreSQL shared by several
//! nodes ([`store::PostgresStore`]). The REST layer reaches devices only through a [`hub::DeviceHub`]; events fan out
//! through an [`events::EventBus`]. Several processes form one cloud over a NATS bus ([`cluster`]) and a shared
//! PostgreSQL registry.
//!
//! Differences from the original Node.js spark-server, on purpose: a bad, expired or missing token is `401` (as the
//! hosted cloud; the original said `400`); `DELETE /v1/access_tokens/:token` works; `POST /v1/users` answers and
//! refuses an existing name instead of wiping that user; `GET /server/health` answers; devices provisioned after
//! start are listed at once; closed event streams are freed at once; passwords are hashed with
//! PBKDF2-HMAC-SHA256; devices have owners (provisioning sets the owner; a device claims itself for a user by presenting their claim code); a device without an owner is reachable by no one (`404`), another user's device is `403`.

pub mod cache;
mod claims;
pub mod cluster;
pub mod console;
pub mod devices;
pub mod encoding;
pub mod events;
mod http;
pub mod hub;
mod journal;
pub mod multipart;
pub mod password;
pub mod rotation;
pub mod services;
pub mod state;
pub mod store;
pub mod udp;
mod waiting;
pub mod webhooks;

/// Entry points for the fuzz targets in `fuzz/`: the parsers that read untrusted bytes (request bodies before
/// authentication, state files). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// The fields of a form or JSON body, and the parts of a multipart one.
    pub type ParsedBody = (Vec<(String, String)>, Vec<crate::multipart::Part>);

    /// Parses a request body as the REST layer does; the error is the reason given to the client.
    pub fn request_body(content_type: &str, body: &[u8]) -> Result<ParsedBody, &'static str> {
        crate::http::parse_body(content_type, body).map(|b| (b.form, b.parts))
    }

    /// Reads a server key file (`default_key.pem`, `previous_key.pem`) as the state directory does on open.
    pub fn server_key_file(text: &str) -> Result<(), String> {
        crate::state::parse_server_key_file(text).map(drop)
    }

    /// Reads the token cut-off file and a `tokens invalidate-before` date.
    pub fn not_before(text: &str) -> Result<u64, String> {
        let _ = crate::state::parse_cutoff_date(text);
        crate::state::parse_not_before(text)
    }

    /// Reads a user file (`users/<name>.json`) as the state directory does on open.
    pub fn user_file(text: &str) -> Result<(), String> {
        crate::state::parse_user_file(text).map(drop)
    }

    /// Reads a device file (`core_keys/<id>.json`) as the state directory does on open.
    pub fn device_file(text: &str) -> Result<(), String> {
        crate::state::parse_device_file(text).map(drop)
    }

    /// Reads the webhooks file (`webhooks.json`) as the cloud does on start; returns how many hooks it holds.
    pub fn webhooks_file(bytes: &[u8]) -> Result<usize, String> {
        crate::webhooks::parse_webhooks(bytes).map(|h| h.len())
    }

    /// Reads the claim-code file (`claims.json`) as the cloud does on start; returns how many codes it holds.
    pub fn claims_file(bytes: &[u8]) -> Result<usize, String> {
        crate::claims::parse_claims(bytes).map(|c| c.len())
    }

    /// Reads a `--store` URL as `spark-cloud --store` does; returns what a log line shows of it and the user name
    /// the URL held.
    pub fn store_url(text: &str) -> Result<(String, String), String> {
        let config = crate::store::parse_store_url(text).map_err(|e| e.to_string())?;
        let shown = crate::store::describe_store_config(&config);
        Ok((shown, config.get_user().unwrap_or_default().to_owned()))
    }

    /// Reads the device journal (`core_keys/journal`) as the state directory does on open; returns how many
    /// records it holds.
    pub fn journal(bytes: &[u8]) -> Result<usize, String> {
        crate::journal::parse_journal(bytes).map(|r| r.len())
    }
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use cluster::wire::AdminChange;
use events::{Event, EventBus, Publisher};
use hub::DeviceHub;
use state::{StateDir, StateError};
// `block_on` is left only in the synchronous `Cloud` API: the device protocol's callbacks (a device's event, its
// claim code, its handshake keys), the admin steps and reloads the binary runs on the blocking pool (`SIGHUP`,
// the store poll, the bus's reload after a rotation or cut-off) and the tests. The REST layer awaits the store
// (`Cloud::authenticate`, `Cloud::find_device` and the `*_async` twins).
use store::{Store, StoreError, block_on};

/// How long the REST layer waits for a device (the original's `coreRequestTimeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The random generator of the cloud: the operating system's.
pub type SystemRng = rand_core::UnwrapErr<rand::rngs::SysRng>;

/// A handle on the operating system's random generator.
pub fn system_rng() -> SystemRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

/// The random generator of device sessions (handshake nonces, session keys, the RSA encryption padding, DTLS
/// randoms and ephemeral keys): each draw comes from the calling thread's `rand::rng()`, ChaCha12 seeded from the
/// operating system and reseeded from it after every 64 KiB of output.
///
/// A TCP handshake draws four times; from [`SystemRng`] that is four `getrandom` calls per handshake, here it is
/// one per some 600 handshakes. The handle holds nothing, so a session that keeps it stays `Send` and small.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionRng;

impl rand_core::TryRng for SessionRng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        rand::rng().try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        rand::rng().try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::rng().try_fill_bytes(dst)
    }
}

impl rand_core::TryCryptoRng for SessionRng {}

/// What the cloud knows about a device beyond its stored attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStatus {
    /// When the cloud last heard from it.
    pub last_heard: Option<SystemTime>,
    /// The last application flashed through this cloud.
    pub last_app: Option<String>,
    /// The CC3000 service-pack version it reported (`spark/cc3000-patch-version`).
    pub cc3000_patch_version: Option<String>,
    /// The platform of its last Hello (0: the Core).
    pub platform_id: Option<u16>,
    /// The product id of its last Hello.
    pub product_id: Option<u16>,
    /// The product firmware version of its last Hello.
    pub product_firmware_version: Option<u16>,
}

/// The cloud: state, event bus and device hub, shared by the REST layer and the device listener.
pub struct Cloud {
    me: Weak<Cloud>,
    store: Arc<dyn Store>,
    /// This node's name in the store's flash jobs (host name and process id).
    node: String,
    /// The server's P-256 key of the UDP protocol (fixed for the store's life).
    udp_server_key: spark_protocol::dtls::PrivateKey,
    bus: Arc<EventBus>,
    hub: Arc<dyn DeviceHub>,
    /// What the cloud knows of each device heard since it started, packed (see [`DeviceEntry`]).
    status: Mutex<HashMap<spark_protocol::DeviceId, DeviceEntry>>,
    webhooks: webhooks::Webhooks,
    hashing: Arc<tokio::sync::Semaphore>,
    refusals: Mutex<HashMap<String, std::time::Instant>>,
    /// The server keys as the handshake uses them (rebuilt on each rotation, retirement or reload).
    handshake_keys: Mutex<Option<rotation::LoadedKeys>>,
    /// The server keys `handshake_keys` was built from.
    held_keys: Mutex<Option<state::ServerKeys>>,
    /// The store's administrative generation when the keys and cut-off were last read.
    admin_seen: Mutex<Option<store::AdminGeneration>>,
    /// Where the administrative changes made here go on a cluster bus (see [`Cloud::set_admin_relay`]).
    admin_relay: std::sync::OnceLock<AdminRelay>,
    /// The fingerprints of the server keys devices' handshakes used, each once; a [`DeviceEntry`] names one by its
    /// place here (a handful over the cloud's life: one per key it held).
    fingerprints: Mutex<Vec<Arc<str>>>,
    /// What bearer digests authenticate as (see [`Cloud::authenticate`]).
    tokens: cache::TokenCache,
    /// Device records by id, for the REST layer's per-request lookup (see [`Cloud::find_device`]).
    devices: cache::DeviceCache,
}

/// One device's entry in [`Cloud`]'s per-device map: [`DeviceStatus`] and the server key its last handshake used,
/// packed, because the map holds an entry for every device heard since the cloud started (issue 18: 2 KiB per
/// idle device in all). The Hello's fields are inline, `last_heard` is milliseconds (what the REST answers show),
/// the key is an index into [`Cloud`]'s fingerprint table, and the text fields, which most devices never set or
/// set once, live behind one pointer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct DeviceEntry {
    /// When the cloud last heard from the device, in milliseconds since the Unix epoch, plus one (0: never).
    last_heard: u64,
    product_id: u16,
    product_firmware_version: u16,
    platform_id: u16,
    /// Which of the three Hello fields above are known: [`DeviceEntry::PRODUCT_ID`] and the two below.
    known: u8,
    /// The place of the used key's fingerprint in [`Cloud`]'s table, plus one (0: no handshake seen).
    key_used: u16,
    text: Option<Box<DeviceText>>,
}

/// The text a device's status may carry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct DeviceText {
    last_app: Option<String>,
    cc3000_patch_version: Option<String>,
}

impl DeviceEntry {
    const PRODUCT_ID: u8 = 1;
    const PRODUCT_FIRMWARE_VERSION: u8 = 2;
    const PLATFORM_ID: u8 = 4;

    fn field(&self, bit: u8, value: u16) -> Option<u16> {
        (self.known & bit != 0).then_some(value)
    }

    fn set_field(&mut self, bit: u8, value: Option<u16>) -> u16 {
        match value {
            Some(v) => {
                self.known |= bit;
                v
            }
            None => {
                self.known &= !bit;
                0
            }
        }
    }

    /// The status as the REST layer reads it.
    fn status(&self) -> DeviceStatus {
        let text = self.text.as_deref();
        DeviceStatus {
            last_heard: self
                .last_heard
                .checked_sub(1)
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            last_app: text.and_then(|t| t.last_app.clone()),
            cc3000_patch_version: text.and_then(|t| t.cc3000_patch_version.clone()),
            platform_id: self.field(Self::PLATFORM_ID, self.platform_id),
            product_id: self.field(Self::PRODUCT_ID, self.product_id),
            product_firmware_version: self.field(
                Self::PRODUCT_FIRMWARE_VERSION,
                self.product_firmware_version,
            ),
        }
    }

    /// Takes `status` back in (the key used is kept). `last_heard` is held to the millisecond, as it is shown.
    fn store(&mut self, status: DeviceStatus) {
        self.last_heard = status.last_heard.map_or(0, |t| {
            let ms = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1));
            ms.saturating_add(1)
        });
        self.platform_id = self.set_field(Self::PLATFORM_ID, status.platform_id);
        self.product_id = self.set_field(Self::PRODUCT_ID, status.product_id);
        self.product_firmware_version = self.set_field(
            Self::PRODUCT_FIRMWARE_VERSION,
            status.product_firmware_version,
        );
        let text = DeviceText {
            last_app: status.last_app,
            cc3000_patch_version: status.cc3000_patch_version,
        };
        if self.text.as_deref() != Some(&text) {
            self.text = (text != DeviceText::default()).then(|| Box::new(text));
        }
    }
}

/// Where a node on a cluster bus sends the administrative changes made here (see [`Cloud::set_admin_relay`]).
pub type AdminRelay = Box<dyn Fn(&cluster::wire::AdminChange) + Send + Sync>;

/// A refused device is logged at most once per this interval.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How long a claim code stays valid.
pub const CLAIM_CODE_LIFETIME: Duration = Duration::from_secs(3600);
/// Claim codes a user may hold at once (older ones are dropped first).
pub const MAX_CLAIM_CODES_PER_USER: usize = 8;
/// The private event a device publishes to present a claim code (what Particle's devices send).
pub const CLAIM_CODE_EVENT: &str = "spark/device/claim/code";

/// Why a claim or an ownership change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// No device has that id (no key was provisioned).
    #[error("unknown device")]
    UnknownDevice,
    /// No user has that name.
    #[error("unknown user")]
    UnknownUser,
    /// The claim code is unknown, used or expired.
    #[error("unknown or expired claim code")]
    UnknownCode,
    /// The device belongs to another user (who must release it first).
    #[error("the device belongs to another user")]
    Owned,
    /// The state directory could not be written.
    #[error("could not write the state directory")]
    Storage,
}

fn claim_error(e: StoreError) -> ClaimError {
    match e {
        StoreError::UnknownDevice => ClaimError::UnknownDevice,
        StoreError::UnknownUser => ClaimError::UnknownUser,
        StoreError::UnknownCode => ClaimError::UnknownCode,
        StoreError::Owned => ClaimError::Owned,
        _ => ClaimError::Storage,
    }
}

impl core::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cloud")
            .field("store", &self.store)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cloud {
    /// A cloud over the state directory `state` reaching devices through `hub`.
    pub fn new(state: StateDir, hub: Arc<dyn DeviceHub>) -> Arc<Cloud> {
        let dir = state.path().to_owned();
        let udp_server_key = state.udp_server_key().clone();
        Cloud::with_store(
            Arc::new(store::EmbeddedStore::new(state)),
            &dir,
            udp_server_key,
            hub,
        )
    }

    /// A cloud over `store` reaching devices through `hub`; `local_dir` holds what stays per node (the webhooks
    /// file), `udp_server_key` is the store's ([`Store::udp_server_key`]).
    pub fn with_store(
        store: Arc<dyn Store>,
        local_dir: &std::path::Path,
        udp_server_key: spark_protocol::dtls::PrivateKey,
        hub: Arc<dyn DeviceHub>,
    ) -> Arc<Cloud> {
        let webhooks = webhooks::Webhooks::load(local_dir);
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let node = format!("{}:{}", host.trim(), std::process::id());
        Arc::new_cyclic(|me| Cloud {
            me: Weak::clone(me),
            store,
            node,
            udp_server_key,
            bus: EventBus::new(),
            hub,
            status: Mutex::new(HashMap::new()),
            webhooks,
            refusals: Mutex::new(HashMap::new()),
            handshake_keys: Mutex::new(None),
            held_keys: Mutex::new(None),
            admin_seen: Mutex::new(None),
            admin_relay: std::sync::OnceLock::new(),
            fingerprints: Mutex::new(Vec::new()),
            tokens: cache::Cache::new(cache::TOKEN_CACHE_MAX, cache::TOKEN_CACHE_TTL),
            devices: cache::Cache::new(cache::DEVICE_CACHE_MAX, cache::DEVICE_CACHE_TTL),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        })
    }

    /// The registry.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The state directory, when the registry is the embedded one.
    pub fn state(&self) -> Option<&StateDir> {
        self.store.as_state_dir()
    }

    /// The server's P-256 key of the UDP protocol.
    pub fn udp_server_key(&self) -> &spark_protocol::dtls::PrivateKey {
        &self.udp_server_key
    }

    /// The server's RSA key pairs as the handshake holds them now (read from the store on first use and after
    /// each rotation, retirement or reload).
    pub fn server_keys(&self) -> Option<state::ServerKeys> {
        if lock(&self.held_keys).is_none() {
            let _ = self.handshake_keys();
        }
        lock(&self.held_keys).clone()
    }

    /// The event bus.
    pub fn bus(&self) -> &Arc<EventBus> {
        &self.bus
    }

    /// The device hub.
    pub fn hub(&self) -> &Arc<dyn DeviceHub> {
        &self.hub
    }

    /// The users' webhooks and their delivery.
    pub fn webhooks(&self) -> &webhooks::Webhooks {
        &self.webhooks
    }

    /// Hands a hook's `hook-response` / `hook-error` event to the device whose event fired it, when it is
    /// connected and subscribed (as the hosted cloud does); never waits for the device.
    fn deliver_hook_event(&self, device: &str, name: &str, data: &str) {
        let Some(device) = device.parse().ok().filter(|&id| self.hub.is_connected(id)) else {
            return;
        };
        let hub = Arc::clone(&self.hub);
        let event = hub::DeviceEvent {
            name: name.to_owned(),
            data: Some(data.to_owned()),
            ttl: 60,
            public: false,
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, hub.deliver(device, &event)).await;
        });
    }

    /// What the cloud knows about `device` now.
    pub fn device_status(&self, device: &str) -> DeviceStatus {
        device
            .parse()
            .ok()
            .and_then(|id| lock(&self.status).get(&id).map(DeviceEntry::status))
            .unwrap_or_default()
    }

    /// Marks `device` heard now and lets `f` change its status. A string that is no device id has no status.
    fn touch(&self, device: &str, f: impl FnOnce(&mut DeviceStatus)) {
        let Ok(id) = device.parse::<spark_protocol::DeviceId>() else {
            return;
        };
        self.touch_at(id, SystemTime::now(), f);
    }

    /// [`Cloud::touch`] of a parsed id, heard at `at`.
    fn touch_at(
        &self,
        id: spark_protocol::DeviceId,
        at: SystemTime,
        f: impl FnOnce(&mut DeviceStatus),
    ) {
        self.touch_with_key(id, at, f, None);
    }

    /// [`Cloud::touch_at`], also recording the place of the server key the device's handshake used.
    fn touch_with_key(
        &self,
        id: spark_protocol::DeviceId,
        at: SystemTime,
        f: impl FnOnce(&mut DeviceStatus),
        key_used: Option<u16>,
    ) {
        let mut status = lock(&self.status);
        let entry = status.entry(id).or_default();
        // Only the text fields allocate, and only when the device has them.
        let mut now = entry.status();
        now.last_heard = Some(at);
        f(&mut now);
        entry.store(now);
        if let Some(place) = key_used {
            entry.key_used = place;
        }
    }

    /// Publishes an event on behalf of `device` (called by the device listener). Names starting with `spark` are
    /// the cloud's own: only `spark/cc3000-patch-version` is taken from a device (its value is recorded), others
    /// are dropped, as the original device server did.
    pub fn device_event(
        &self,
        device: &str,
        name: &str,
        data: Option<&str>,
        ttl: u32,
        public: bool,
    ) {
        // Device ids come in lower case from the listener: copied only when they are not.
        let device = state::lower_id(device);
        let device = device.as_ref();
        if name == CLAIM_CODE_EVENT {
            self.touch(device, |_| {});
            let code = data.unwrap_or_default();
            match self.claim_with_code(device, code) {
                Ok(user) => {
                    eprintln!("spark-cloud: device {device} claimed by {user} with a claim code")
                }
                Err(e) => {
                    eprintln!("spark-cloud: device {device} presented a claim code: refused ({e})")
                }
            }
            return;
        }
        if name == "spark/cc3000-patch-version" {
            let version = data.map(str::to_owned);
            self.touch(device, |s| s.cc3000_patch_version = version);
        } else if name
            .as_bytes()
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"spark"))
        {
            return;
        } else if let Ok(id) = device.parse::<spark_protocol::DeviceId>() {
            // The common case, once per event: the id parsed and the clock read once for the status and the event.
            let now = SystemTime::now();
            self.touch_at(id, now, |_| {});
            self.publish_device_event_at(device, Some(id), name, data, ttl, public, now);
            return;
        }
        self.publish_device_event(device, name, data, ttl, public);
    }

    /// Hands `user` a new claim code, valid for [`CLAIM_CODE_LIFETIME`]. A device the user holds claims itself by
    /// presenting it (the [`CLAIM_CODE_EVENT`] event, or [`Cloud::claim_with_code`] as an administrator's step).
    ///
    /// Waits for the store on this thread (the synchronous API); the REST layer awaits
    /// [`Cloud::create_claim_code_async`].
    pub fn create_claim_code(&self, user: &str) -> Result<String, ClaimError> {
        block_on(self.create_claim_code_async(user))
    }

    /// [`Cloud::create_claim_code`] awaiting the store.
    pub async fn create_claim_code_async(&self, user: &str) -> Result<String, ClaimError> {
        let user = user.trim().to_lowercase();
        let mut bytes = [0u8; 24];
        rand_core::Rng::fill_bytes(&mut system_rng(), &mut bytes);
        let code = encoding::hex(&bytes);
        let expires_at = store::now_secs().saturating_add(CLAIM_CODE_LIFETIME.as_secs());
        self.store
            .add_claim_code(
                &state::token_digest(&code),
                &user,
                expires_at,
                MAX_CLAIM_CODES_PER_USER,
            )
            .await
            .map_err(claim_error)?;
        Ok(code)
    }

    /// `device` presents a claim code: a device without an owner becomes the code's user's (the code is used up).
    /// Returns the owner. Of two concurrent claims of one device (on any nodes of a shared store) exactly one wins.
    pub fn claim_with_code(&self, device: &str, code: &str) -> Result<String, ClaimError> {
        let device = device.to_ascii_lowercase();
        let owner = block_on(
            self.store
                .claim_with_code(&device, &state::token_digest(code)),
        )
        .map_err(claim_error)?;
        self.owner_changed(&device);
        Ok(owner)
    }

    /// An administrator's step: gives `device` to `user` (or takes it from its owner with `None`), whoever owned
    /// it.
    pub fn assign_owner(&self, device: &str, user: Option<&str>) -> Result<(), ClaimError> {
        let user = user.map(|u| u.trim().to_lowercase());
        if let Some(u) = &user
            && !block_on(self.store.user_exists(u)).map_err(claim_error)?
        {
            return Err(ClaimError::UnknownUser);
        }
        let device = device.to_ascii_lowercase();
        block_on(self.store.set_owner(&device, user.as_deref())).map_err(claim_error)?;
        self.owner_changed(&device);
        Ok(())
    }

    /// Tells the other nodes on the bus that `device`'s owner changed here (claimed, released, transferred or
    /// provisioned), so that their event delivery forgets the owner it cached.
    pub fn owner_changed(&self, device: &str) {
        self.devices.forget(&device.to_ascii_lowercase());
        self.announce(&AdminChange::OwnerChanged {
            device: device.to_ascii_lowercase(),
        });
    }

    /// Hands every administrative change made here to `relay` as well (the cluster bus; one relay, a second is
    /// refused). Returns whether it was set.
    pub fn set_admin_relay(&self, relay: AdminRelay) -> bool {
        self.admin_relay.set(relay).is_ok()
    }

    fn announce(&self, change: &AdminChange) {
        if let Some(relay) = self.admin_relay.get() {
            relay(change);
        }
    }

    /// Acts on a change another node made to the shared registry (it came over the bus): ends the event streams
    /// it revoked, forgets the cached owner, or reads the server keys and the cut-off again. Nothing is announced
    /// back. Blocks on the store for the keys: call it off the async workers.
    pub fn handle_admin_change(&self, change: &AdminChange) -> Result<(), StoreError> {
        if self.forget_for(change) {
            self.reload_admin_files()?;
        }
        Ok(())
    }

    /// The part of [`Cloud::handle_admin_change`] that needs no store: forgets at once what `change` makes stale
    /// (cached tokens, device records and owners) and ends the event streams it revoked. Returns whether the keys
    /// and cut-off must be read again ([`Cloud::reload_admin_files`]). The bus calls it on its own task, as the
    /// message arrives, before the reload.
    pub fn forget_for(&self, change: &AdminChange) -> bool {
        match change {
            AdminChange::TokenRevoked { token } => {
                self.tokens.forget(token);
                self.bus.end_token(token);
                false
            }
            AdminChange::UserTokensRevoked { user } => {
                self.forget_user_tokens(user);
                self.bus.end_user(user);
                false
            }
            AdminChange::TokensCutOff { before } => {
                self.forget_tokens_before(*before);
                self.bus.end_issued_before(*before);
                true
            }
            AdminChange::OwnerChanged { device } => {
                self.devices.forget(&device.to_ascii_lowercase());
                self.store.forget_cached_owner(device);
                false
            }
            AdminChange::KeysChanged => {
                self.devices.clear();
                true
            }
        }
    }

    fn forget_user_tokens(&self, user: &str) {
        let user = user.trim().to_lowercase();
        self.tokens.forget_where(|a| a.username == user);
    }

    /// Forgets the cached tokens a cut-off at `before` refuses (and those without an issue time).
    fn forget_tokens_before(&self, before: u64) {
        self.tokens
            .forget_where(|a| a.issued_at.is_none_or(|t| t < before));
    }

    /// What a bearer token's digest authenticates as: from the cache when it holds the answer, otherwise from
    /// [`Store::authenticate`] (and then cached until the token expires, at most [`cache::TOKEN_CACHE_TTL`]).
    /// Every revocation made through this cloud forgets the token before it returns, and one made through another
    /// node of the bus as its word arrives ([`Cloud::handle_admin_change`]); a change of the store's generation
    /// ([`Cloud::follow_store`], `SIGHUP`) forgets them all.
    pub async fn authenticate(&self, digest: &str) -> Result<state::Authenticated, StoreError> {
        let now = std::time::Instant::now();
        if let Some(hit) = self.tokens.get(digest, now, cache::token_unexpired) {
            return Ok(hit);
        }
        let epoch = self.tokens.epoch();
        let auth = self.store.authenticate(digest).await?;
        let until = cache::token_deadline(&auth, now);
        self.tokens
            .insert(epoch, digest.to_owned(), auth.clone(), now, until);
        Ok(auth)
    }

    /// [`Store::find_device`] with a device id served from memory: the record as the store last gave it, kept
    /// at most [`cache::DEVICE_CACHE_TTL`] and forgotten at once by every owner change made here
    /// ([`Cloud::owner_changed`]) and by the bus's word of one made elsewhere. A name is looked up in the store.
    pub async fn find_device(
        &self,
        id_or_name: &str,
        owner: &str,
    ) -> Result<Option<state::DeviceRecord>, StoreError> {
        let lower = id_or_name.to_ascii_lowercase();
        let by_id = state::is_device_id(&lower);
        let now = std::time::Instant::now();
        if by_id && let Some(hit) = self.devices.get(&lower, now, |_| true) {
            return Ok(Some(hit));
        }
        let epoch = self.devices.epoch();
        let found = self.store.find_device(id_or_name, owner).await?;
        if by_id
            && let Some(d) = &found
            && d.id == lower
        {
            self.devices.insert(epoch, lower, d.clone(), now, None);
        }
        Ok(found)
    }

    /// The devices a lost node held went offline: tells this node's own subscribers (`spark/status` `offline`,
    /// private), and no other node, which each do the same for theirs. Blocks on the store for the owners.
    ///
    /// Waits for the store on this thread: the bus calls it on the blocking pool.
    pub fn devices_lost(&self, devices: &[spark_protocol::DeviceId]) {
        for device in devices {
            let device = device.to_string();
            self.store.forget_cached_owner(&device);
            let Some(owner) = block_on(self.store.device_owner(&device)).ok().flatten() else {
                continue;
            };
            let from = Publisher::device(&device, Some(&owner));
            let event = Event::new(
                "spark/status",
                Some("offline"),
                60,
                false,
                SystemTime::now(),
                from,
            );
            self.bus.publish_from_peer(&event);
        }
    }

    /// Logs (one line on stderr) that `device` was refused and why, at most once per [`REFUSAL_LOG_INTERVAL`] per
    /// device id, so that a device retrying every second does not flood the log. Returns whether it logged.
    pub fn log_refusal(&self, device: &str, why: &str) -> bool {
        let now = std::time::Instant::now();
        let mut seen = lock(&self.refusals);
        if seen.len() > 4096 {
            seen.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_INTERVAL);
        }
        if seen
            .get(device)
            .is_some_and(|at| now.duration_since(*at) < REFUSAL_LOG_INTERVAL)
        {
            return false;
        }
        seen.insert(device.to_owned(), now);
        drop(seen);
        eprintln!("spark-cloud: device {device} refused: {why}");
        true
    }

    /// Checks a password off the async worker threads: on tokio's blocking pool, at most one hash per CPU at a
    /// time (others wait their turn without holding a thread). Returns the canonical user name.
    pub async fn verify_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<String, state::AuthError> {
        let check = self
            .store
            .password_check(username)
            .await
            .map_err(StoreError::into_auth)?;
        let _permit = Arc::clone(&self.hashing)
            .acquire_owned()
            .await
            .map_err(|_| state::AuthError::Storage)?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || check.verify(&password))
            .await
            .map_err(|_| state::AuthError::BadCredentials)?
    }

    /// Revokes one of `user`'s tokens and ends the event streams opened with it; `false` if it had no such token.
    ///
    /// Waits for the store on this thread (the synchronous API); the REST layer awaits
    /// [`Cloud::revoke_token_async`].
    pub fn revoke_token(&self, user: &str, token: &str) -> Result<bool, state::AuthError> {
        block_on(self.revoke_token_async(user, token))
    }

    /// [`Cloud::revoke_token`] awaiting the store. The token is refused by this cloud from the moment this returns.
    pub async fn revoke_token_async(
        &self,
        user: &str,
        token: &str,
    ) -> Result<bool, state::AuthError> {
        let deleted = self
            .store
            .delete_token(user, token)
            .await
            .map_err(StoreError::into_auth)?;
        if let Some(digest) = &deleted {
            self.tokens.forget(digest);
            self.bus.end_token(digest);
            self.announce(&AdminChange::TokenRevoked {
                token: digest.clone(),
            });
        }
        Ok(deleted.is_some())
    }

    /// Revokes all of `user`'s tokens and ends every event stream they opened; returns how many there were.
    ///
    /// Waits for the store on this thread (the synchronous API); the REST layer awaits
    /// [`Cloud::revoke_all_tokens_async`].
    pub fn revoke_all_tokens(&self, user: &str) -> Result<usize, state::AuthError> {
        block_on(self.revoke_all_tokens_async(user))
    }

    /// [`Cloud::revoke_all_tokens`] awaiting the store. The tokens are refused by this cloud from the moment this
    /// returns.
    pub async fn revoke_all_tokens_async(&self, user: &str) -> Result<usize, state::AuthError> {
        let user = user.trim().to_lowercase();
        let count = self
            .store
            .delete_all_tokens(&user)
            .await
            .map_err(StoreError::into_auth)?;
        self.forget_user_tokens(&user);
        self.bus.end_user(&user);
        self.announce(&AdminChange::UserTokensRevoked { user });
        Ok(count)
    }

    /// The node's name in the store's flash jobs.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn publish_device_event(
        &self,
        device: &str,
        name: &str,
        data: Option<&str>,
        ttl: u32,
        public: bool,
    ) {
        let id = device.parse().ok();
        self.publish_device_event_at(device, id, name, data, ttl, public, SystemTime::now());
    }

    /// [`Cloud::publish_device_event`] of an id parsed already (`None`: text that is no id), published at `at`.
    #[allow(clippy::too_many_arguments)]
    fn publish_device_event_at(
        &self,
        device: &str,
        id: Option<spark_protocol::DeviceId>,
        name: &str,
        data: Option<&str>,
        ttl: u32,
        public: bool,
        at: SystemTime,
    ) {
        // The device protocol's callback is synchronous; a shared store answers from its owner cache.
        let owner = block_on(self.store.device_owner(device)).ok().flatten();
        // A device without an owner reaches no one, not even with public events.
        if owner.is_none() {
            return;
        }
        let from = Publisher {
            coreid: device,
            owner: owner.as_deref(),
            device: id,
        };
        // The frame is written into this thread's buffer, reused from event to event: publishing to the bus
        // allocates nothing; the owned event is built only for a cluster relay.
        thread_local! {
            static FRAME: std::cell::RefCell<bytes::BytesMut> =
                std::cell::RefCell::new(bytes::BytesMut::new());
        }
        let publish = |frame: &mut bytes::BytesMut| {
            frame.clear();
            events::write_frame(frame, name, data, ttl, at, device);
            let view = events::EventView {
                name,
                owner: owner.as_deref(),
                device: id,
                public,
                frame,
            };
            self.bus
                .publish_view_at(&view, at, || Event::new(name, data, ttl, public, at, from));
        };
        // A publish from within a publish (a relay that published here) gets a buffer of its own.
        FRAME.with(|cell| match cell.try_borrow_mut() {
            Ok(mut frame) => publish(&mut frame),
            Err(_) => publish(&mut bytes::BytesMut::new()),
        });
        if let Some(owner) = owner.as_deref() {
            self.webhooks.dispatch(
                &self.me,
                &webhooks::Published {
                    name,
                    data,
                    device,
                    owner,
                    public,
                },
            );
        }
    }

    /// The server keys as the handshake uses them now; `None` if the store cannot be read or a key cannot be
    /// loaded by the backend.
    pub fn handshake_keys(&self) -> Option<rotation::LoadedKeys> {
        if let Some(held) = lock(&self.handshake_keys).clone() {
            return Some(held);
        }
        let keys = block_on(self.store.server_keys()).ok()?;
        self.refresh_handshake_keys(&keys).ok()?;
        lock(&self.handshake_keys).clone()
    }

    fn refresh_handshake_keys(&self, keys: &state::ServerKeys) -> Result<(), StoreError> {
        let loaded = rotation::LoadedKeys::new(keys).map_err(|e| {
            StoreError::Corrupt(format!("the handshake backend refused the server key: {e}"))
        })?;
        *lock(&self.handshake_keys) = Some(loaded);
        *lock(&self.held_keys) = Some(keys.clone());
        Ok(())
    }

    /// Rotates the server key: a new current key (of the current key's size), the old one kept as the previous
    /// key until [`retire_server_key`](Self::retire_server_key). Connected devices stay connected; new handshakes
    /// are accepted on either key from the next connection on. Refused while a window is already open.
    pub fn rotate_server_key(&self) -> Result<state::ServerKeys, StoreError> {
        let held = block_on(self.store.server_keys())?;
        if held
            .previous
            .as_ref()
            .is_some_and(|p| p.public_key() != held.current.public_key())
        {
            return Err(StoreError::WindowOpen);
        }
        let fresh = spark_protocol::crypto::keys::RsaPrivateKey::generate(
            &mut system_rng(),
            held.current.bits(),
        )
        .map_err(|e| StoreError::KeyGeneration(e.to_string()))?;
        let keys = block_on(self.store.rotate_server_key(fresh))?;
        self.refresh_handshake_keys(&keys)?;
        self.announce(&AdminChange::KeysChanged);
        Ok(keys)
    }

    /// Ends the migration window: handshakes made with the previous key are refused from now on (connected
    /// devices stay connected until they reconnect).
    pub fn retire_server_key(&self) -> Result<state::ServerKeys, StoreError> {
        let keys = block_on(self.store.retire_server_key())?;
        self.refresh_handshake_keys(&keys)?;
        self.announce(&AdminChange::KeysChanged);
        Ok(keys)
    }

    /// Reads the server keys again: how a running cloud picks up `spark-cloud keys rotate` / `keys retire` run on
    /// its directory or on another node of its store (the binary calls it on `SIGHUP`).
    pub fn reload_server_keys(&self) -> Result<state::ServerKeys, StoreError> {
        let keys = self.load_server_keys()?;
        self.announce(&AdminChange::KeysChanged);
        Ok(keys)
    }

    fn load_server_keys(&self) -> Result<state::ServerKeys, StoreError> {
        let keys = block_on(self.store.server_keys())?;
        self.refresh_handshake_keys(&keys)?;
        Ok(keys)
    }

    /// Refuses every token issued before `cutoff` (seconds since the epoch) and ends the event streams opened with
    /// them; returns how many tokens were deleted. The cloud-wide response to a leak (`spark-cloud tokens
    /// invalidate-before DATE`).
    pub fn invalidate_tokens_before(&self, cutoff: u64) -> Result<usize, StoreError> {
        let deleted = block_on(self.store.invalidate_tokens_before(cutoff))?;
        self.forget_tokens_before(cutoff);
        for digest in &deleted {
            self.tokens.forget(digest);
            self.bus.end_token(digest);
        }
        self.bus.end_issued_before(cutoff);
        self.announce(&AdminChange::TokensCutOff { before: cutoff });
        Ok(deleted.len())
    }

    /// What a running cloud does on `SIGHUP`: reads the server keys and the token cut-off again, ending the
    /// streams of tokens the cut-off now refuses.
    pub fn reload_admin_files(&self) -> Result<state::ServerKeys, StoreError> {
        let keys = self.load_server_keys()?;
        let now = block_on(self.store.admin_generation())?;
        // Whatever moved (a cut-off, a rotation), nothing cached before it is trusted.
        self.tokens.clear();
        self.devices.clear();
        if now.tokens_not_before > 0 {
            for digest in block_on(self.store.invalidate_tokens_before(now.tokens_not_before))? {
                self.bus.end_token(&digest);
            }
            // Tokens another node or an admin command deleted are no longer listed; their issue time tells.
            self.bus.end_issued_before(now.tokens_not_before);
        }
        *lock(&self.admin_seen) = Some(now);
        Ok(keys)
    }

    /// The cheap check a node makes to follow its store (on a timer, or when the bus brings word): when the
    /// store's administrative generation moved (a rotation, retirement or cut-off made on another node or by an
    /// admin command), reloads as [`Cloud::reload_admin_files`] does. Returns whether it reloaded.
    pub fn follow_store(&self) -> Result<bool, StoreError> {
        let now = block_on(self.store.admin_generation())?;
        let seen = *lock(&self.admin_seen);
        if seen == Some(now) {
            return Ok(false);
        }
        if seen.is_none() {
            *lock(&self.admin_seen) = Some(now);
            return Ok(false);
        }
        self.reload_admin_files()?;
        Ok(true)
    }

    /// Records the server key `device`'s handshake used (by its fingerprint).
    pub fn record_key_use(&self, device: &str, fingerprint: Arc<str>) {
        let Ok(id) = device
            .to_ascii_lowercase()
            .parse::<spark_protocol::DeviceId>()
        else {
            return;
        };
        let Some(place) = self.key_place(fingerprint) else {
            return;
        };
        lock(&self.status).entry(id).or_default().key_used = place;
    }

    /// A device's handshake is done: its status takes what its Hello said (`hello`) and the server key its
    /// handshake used (by fingerprint), it is heard now, and its private `spark/status` `online` event is
    /// published. What [`record_key_use`](Self::record_key_use) and [`device_online`](Self::device_online) do, with
    /// the status map visited once and the id never turned into text on the heap (called once per handshake).
    pub(crate) fn device_connected(
        &self,
        id: spark_protocol::DeviceId,
        hello: impl FnOnce(&mut DeviceStatus),
        key_used: Option<Arc<str>>,
    ) {
        let place = key_used.and_then(|print| self.key_place(print));
        let now = SystemTime::now();
        self.touch_with_key(id, now, hello, place);
        self.publish_status_at(id.hex().as_str(), Some(id), "online", now);
    }

    /// The place of `fingerprint` in the table of keys seen, plus one (added when new); `None` past 65,535 keys.
    fn key_place(&self, fingerprint: Arc<str>) -> Option<u16> {
        let place = {
            let mut prints = lock(&self.fingerprints);
            match prints.iter().position(|p| **p == *fingerprint) {
                Some(i) => i,
                None => {
                    prints.push(fingerprint);
                    prints.len() - 1
                }
            }
        };
        // More than 65,535 keys in one cloud's life cannot happen (each is a rotation); such a use goes unrecorded.
        u16::try_from(place + 1).ok()
    }

    /// Which server key `device` used at its last handshake since this cloud started, against the keys held now.
    pub fn key_use(&self, device: &str) -> Option<rotation::KeyUse> {
        let id = device.parse::<spark_protocol::DeviceId>().ok()?;
        let place = lock(&self.status).get(&id)?.key_used.checked_sub(1)?;
        let print = lock(&self.fingerprints).get(usize::from(place)).cloned()?;
        Some(self.handshake_keys()?.classify(&print))
    }

    /// Records that `device` came online (publishes the private `spark/status` `online` event).
    pub fn device_online(&self, device: &str) {
        self.device_status_event(device, "online");
    }

    /// Records that `device` went offline (publishes the private `spark/status` `offline` event).
    pub fn device_offline(&self, device: &str) {
        self.device_status_event(device, "offline");
    }

    fn device_status_event(&self, device: &str, status: &str) {
        let device = state::lower_id(device);
        self.touch(&device, |_| {});
        self.publish_status_at(&device, device.parse().ok(), status, SystemTime::now());
    }

    /// Publishes `device`'s private `spark/status` event (`online`, `offline`) with a time to live of 60 s.
    fn publish_status_at(
        &self,
        device: &str,
        id: Option<spark_protocol::DeviceId>,
        status: &str,
        at: SystemTime,
    ) {
        self.publish_device_event_at(device, id, "spark/status", Some(status), 60, false, at);
    }
}

/// The REST API's limits against slow, idle and oversized clients (see `SECURITY.md`).
///
/// The device listener has its own limits; REST clients cannot use up its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Open HTTP connections at most; one more is answered `503` with a JSON body and closed.
    pub max_connections: usize,
    /// Open HTTP connections one client address may hold; one more from it is answered `503` as above, while
    /// other addresses are still served.
    pub max_connections_per_address: usize,
    /// Time a client has to send a request's complete header (also the idle time of a kept-alive connection).
    pub header_timeout: Duration,
    /// Time a client has to send a request's complete body.
    pub body_timeout: Duration,
    /// The largest request body on every route but a firmware upload.
    pub max_body: usize,
    /// The largest request body of a firmware upload (`PUT /v1/devices/:id` with a token in the header or the
    /// query, checked before the body is read).
    pub max_image_body: usize,
    /// Password attempts (logins, Basic-auth token requests) a client address may make at once.
    pub login_burst: u32,
    /// One more password attempt is allowed per address each `login_refill`.
    pub login_refill: Duration,
}

impl HttpLimits {
    /// The defaults: 256 connections, 128 of them from one address, 10 s for a header, 30 s for a body, 16 KiB bodies, 1 MiB firmware uploads,
    /// 20 password attempts per address at once and one more per second.
    pub const DEFAULT: HttpLimits = HttpLimits {
        max_connections: 256,
        max_connections_per_address: 128,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        max_body: 16 * 1024,
        max_image_body: 1024 * 1024,
        login_burst: 20,
        login_refill: Duration::from_secs(1),
    };

    /// Sets [`HttpLimits::login_burst`] and [`HttpLimits::login_refill`].
    #[must_use]
    pub const fn with_login_rate(mut self, burst: u32, refill: Duration) -> Self {
        self.login_burst = burst;
        self.login_refill = refill;
        self
    }

    /// Sets [`HttpLimits::max_connections`].
    #[must_use]
    pub const fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`HttpLimits::max_connections_per_address`].
    #[must_use]
    pub const fn with_max_connections_per_address(mut self, n: usize) -> Self {
        self.max_connections_per_address = n;
        self
    }

    /// Sets [`HttpLimits::header_timeout`] and [`HttpLimits::body_timeout`].
    #[must_use]
    pub const fn with_timeouts(mut self, header: Duration, body: Duration) -> Self {
        self.header_timeout = header;
        self.body_timeout = body;
        self
    }

    /// Sets [`HttpLimits::max_body`] and [`HttpLimits::max_image_body`].
    #[must_use]
    pub const fn with_body_limits(mut self, body: usize, image: usize) -> Self {
        self.max_body = body;
        self.max_image_body = image;
        self
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::DEFAULT
    }
}

/// Where and how to run the local cloud.
#[derive(Debug, Clone)]
pub struct Config {
    /// The state directory.
    pub dir: PathBuf,
    /// The HTTP listen address (port 0 = any free port).
    pub http: SocketAddr,
    /// Bits of a server key generated on first start (2048 for real Cores).
    pub key_bits: usize,
}

/// A running HTTP API.
#[derive(Debug)]
pub struct Running {
    /// The cloud behind it.
    pub cloud: Arc<Cloud>,
    /// The bound HTTP address.
    pub http: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections (open ones end with their tasks).
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Errors starting the cloud.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The state directory could not be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The store could not be opened (a bad `--store` URL, an unreachable server, a failed migration).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Opens the state in `config.dir` (generating the server key on first start) for a cloud reaching devices through
/// `hub`.
pub fn open(config: &Config, hub: Arc<dyn DeviceHub>) -> Result<Arc<Cloud>, StartError> {
    let state = StateDir::open(&config.dir, config.key_bits, &mut system_rng())?;
    Ok(Cloud::new(state, hub))
}

/// Opens the store `store` names (the state directory, or PostgreSQL) for a cloud reaching devices through `hub`;
/// `local_dir` holds what stays per node (webhooks). A bad URL or an unreachable server is an error, not a panic.
pub async fn open_store(
    store: &store::StoreConfig,
    local_dir: &std::path::Path,
    key_bits: usize,
    hub: Arc<dyn DeviceHub>,
) -> Result<Arc<Cloud>, StartError> {
    let opened = store::open(store, key_bits).await?;
    let udp_server_key = opened.udp_server_key().await?;
    Ok(Cloud::with_store(opened, local_dir, udp_server_key, hub))
}

/// Serves the REST API of `cloud` on `addr` (inside a tokio runtime) with the default [`HttpLimits`].
pub async fn serve(cloud: Arc<Cloud>, addr: SocketAddr) -> Result<Running, StartError> {
    serve_with(cloud, addr, HttpLimits::DEFAULT).await
}

/// Serves the REST API of `cloud` on `addr` (inside a tokio runtime) with `limits`.
pub async fn serve_with(
    cloud: Arc<Cloud>,
    addr: SocketAddr,
    limits: HttpLimits,
) -> Result<Running, StartError> {
    // The kernel's queue of finished handshakes holds as many clients as the server would take at once (tokio's
    // own default is 128, below the default cap of 256): a burst of clients that fits the cap is not dropped and
    // made to resend its SYN a second later.
    let backlog = u32::try_from(limits.max_connections)
        .unwrap_or(u32::MAX)
        .clamp(128, 65_535);
    let listener = devices::bind_listener(addr, backlog)
        .map_err(|source| StartError::Bind { addr, source })?;
    let http = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let task = tokio::spawn(http::accept_loop(Arc::clone(&cloud), listener, limits));
    Ok(Running { cloud, http, task })
}

#[cfg(test)]
mod footprint {
    use super::{DeviceEntry, DeviceStatus};
    use spark_protocol::DeviceId;
    use std::time::{Duration, SystemTime};

    /// One device's slot in the cloud's status map (issue 18): the id and the packed entry. It was about 400 bytes
    /// over three string-keyed maps; a field that grows it past this bound belongs behind the text pointer.
    #[test]
    fn a_device_entry_is_small() {
        let slot = size_of::<(DeviceId, DeviceEntry)>();
        assert!(slot <= 48, "a status map slot takes {slot} bytes");
        assert!(size_of::<DeviceEntry>() <= 32);
    }

    #[test]
    fn a_status_reads_back_as_it_was_stored() {
        let heard = SystemTime::UNIX_EPOCH + Duration::from_millis(1_401_304_834_638);
        let cases = [
            DeviceStatus::default(),
            DeviceStatus {
                last_heard: Some(heard),
                platform_id: Some(0),
                product_id: Some(0xffff),
                product_firmware_version: Some(0),
                ..DeviceStatus::default()
            },
            DeviceStatus {
                last_heard: Some(SystemTime::UNIX_EPOCH),
                last_app: Some("tinker.bin".into()),
                cc3000_patch_version: Some("1.24".into()),
                platform_id: Some(6),
                ..DeviceStatus::default()
            },
        ];
        let mut entry = DeviceEntry::default();
        for status in cases {
            entry.store(status.clone());
            assert_eq!(entry.status(), status);
            assert_eq!(
                entry.text.is_some(),
                status.last_app.is_some() || status.cc3000_patch_version.is_some()
            );
        }
        // The text goes once the device has none: an entry does not keep an empty allocation.
        entry.store(DeviceStatus::default());
        assert_eq!(entry, DeviceEntry::default());
    }

    #[test]
    fn last_heard_keeps_the_milliseconds_the_api_shows() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_401_304_834_638_999_999);
        let mut entry = DeviceEntry::default();
        entry.store(DeviceStatus {
            last_heard: Some(t),
            ..DeviceStatus::default()
        });
        let back = entry.status().last_heard.expect("heard");
        assert_eq!(crate::encoding::iso8601(back), crate::encoding::iso8601(t),);
        assert!(back <= t && t.duration_since(back).unwrap() < Duration::from_millis(1));
    }
}

#[cfg(test)]
mod session_rng {
    use super::SessionRng;
    use rand_core::Rng;

    /// The sessions' generator gives fresh bytes on every draw, from any thread, and holds no state of its own.
    #[test]
    fn each_draw_is_fresh() {
        let draw = || {
            let mut bytes = [0u8; 32];
            SessionRng.fill_bytes(&mut bytes);
            bytes
        };
        let (a, b) = (draw(), draw());
        let c = std::thread::spawn(draw).join().unwrap();
        assert!(a != b && a != c && b != c, "{a:?} {b:?} {c:?}");
        assert!(a.iter().any(|&x| x != 0));
        assert_ne!(SessionRng.next_u64(), SessionRng.next_u64());
        assert_eq!(size_of::<SessionRng>(), 0);
    }
}
