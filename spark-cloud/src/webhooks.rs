//! Webhooks: each user's hooks (stored in `<dir>/webhooks.json`), which device events they fire on, and their
//! delivery as HTTP requests with bounded queues, a bounded number in flight and a timeout.
//!
//! A hook fires on the events whose name starts with its `event` prefix, from devices its owner may see: with
//! `mydevices` (the default) only the owner's devices, otherwise also other users' devices' public events. The
//! cloud's own `spark/...` events never fire a hook. Each delivery publishes `hook-sent/<event>` to the owner's
//! stream, then `hook-response/<event>/<device>/0` with the start of the response body, or
//! `hook-error/<event>/<device>/0` with the reason, as the hosted cloud does.
//!
//! Delivery never slows the event fan-out: an event is queued for a hook with `try_send` (a full queue drops it and
//! counts it), each hook sends one request at a time from its own task, and at most [`MAX_IN_FLIGHT`] requests are
//! out at once for the whole cloud. Only `http://` targets are supported (the cloud carries no TLS client), and which
//! addresses a hook may reach is the [`WebhookPolicy`]'s call, checked on the resolved address that is connected to.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

use super::encoding::iso8601;
use super::state::{StateError, write_atomic};
use super::{Cloud, lock};

/// How long one delivery may take, connecting included.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Events a hook may have waiting; past it further events are dropped for that hook (and counted).
pub const HOOK_QUEUE: usize = 16;
/// Requests in flight at once for all hooks together.
pub const MAX_IN_FLIGHT: usize = 32;
/// Hooks a user may hold.
pub const MAX_HOOKS_PER_USER: usize = 20;
/// The most bytes of a response body published in `hook-response` (the event data limit).
pub const MAX_RESPONSE_DATA: usize = 63;
/// The `coreid` of the cloud's hook events, as the hosted cloud names it.
pub const HOOK_EVENT_SOURCE: &str = "particle-internal";

/// HTTP Basic credentials a hook sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A stored webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// Its id (24 hex digits).
    pub id: String,
    /// The user it belongs to.
    pub owner: String,
    /// The event-name prefix it fires on.
    pub event: String,
    /// The target (`http://` only).
    pub url: String,
    /// `GET`, `POST`, `PUT` or `DELETE`.
    #[serde(rename = "requestType")]
    pub request_type: String,
    /// Only events of this device.
    #[serde(rename = "deviceID", default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Only events of the owner's devices.
    pub mydevices: bool,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body template (string values may hold `{{SPARK_EVENT_NAME}}` and the like).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Form fields (templates allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<BTreeMap<String, String>>,
    /// Query parameters (templates allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<BTreeMap<String, String>>,
    /// HTTP Basic credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BasicAuth>,
    /// Leave out the default fields (`event`, `data`, `published_at`, `coreid`).
    #[serde(rename = "noDefaults", default)]
    pub no_defaults: bool,
    /// When it was created (ISO-8601).
    pub created_at: String,
}

/// Why a hook could not be created or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A field is missing or unusable; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// The user holds [`MAX_HOOKS_PER_USER`] hooks already.
    #[error("a user may hold at most {MAX_HOOKS_PER_USER} webhooks")]
    TooMany,
    /// No hook of the user has that id.
    #[error("webhook not found")]
    NotFound,
    /// The state directory could not be written.
    #[error("could not write the state directory")]
    Storage,
}

/// One entry of `--webhook-allow`: a network (`10.0.0.0/8`, `127.0.0.1`, `::1`) or a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAllow {
    /// Addresses within `prefix` bits of `addr`.
    Net {
        /// The network's address.
        addr: IpAddr,
        /// Its prefix length.
        prefix: u8,
    },
    /// A URL host name, whatever it resolves to.
    Host(String),
}

impl FromStr for WebhookAllow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        if let Ok(addr) = addr.parse::<IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("{s}: the prefix length must be 0 to {max}"))?,
            };
            return Ok(WebhookAllow::Net { addr, prefix });
        }
        let valid = !s.is_empty()
            && s.len() <= 253
            && prefix.is_none()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(format!(
                "{s}: neither an address, a network nor a host name"
            ));
        }
        Ok(WebhookAllow::Host(s.to_ascii_lowercase()))
    }
}

impl WebhookAllow {
    fn admits(&self, host: &str, ip: IpAddr) -> bool {
        match self {
            WebhookAllow::Host(name) => host.eq_ignore_ascii_case(name),
            WebhookAllow::Net { addr, prefix } => in_network(ip, *addr, *prefix),
        }
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let ip = canonical(ip);
    match (ip, canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an address of the public internet (not loopback, private, link-local, shared, multicast...).
fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Which addresses hooks may reach.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WebhookPolicy {
    /// Any address the cloud can reach: the default of the library, and of the binary when its REST API listens on
    /// loopback only (then whoever creates a hook can reach those addresses from the machine anyway).
    #[default]
    AllowAll,
    /// Public addresses only (no loopback, private, link-local or shared ones): the binary's default when its REST
    /// API listens on another address.
    PublicOnly,
    /// Only these networks and host names (`--webhook-allow`).
    Only(Vec<WebhookAllow>),
}

impl WebhookPolicy {
    /// Whether a hook whose URL names `host` may connect to `ip`.
    pub fn admits(&self, host: &str, ip: IpAddr) -> bool {
        match self {
            WebhookPolicy::AllowAll => true,
            WebhookPolicy::PublicOnly => is_public(ip),
            WebhookPolicy::Only(list) => list.iter().any(|a| a.admits(host, ip)),
        }
    }
}

/// Counters of webhook delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// Events queued for a hook.
    pub queued: u64,
    /// Events dropped because the hook's queue was full.
    pub dropped: u64,
    /// Requests answered with a 2xx status.
    pub succeeded: u64,
    /// Requests that failed (refused address, connection error, timeout, other status).
    pub failed: u64,
    /// Requests in flight now.
    pub in_flight: u64,
}

/// What one queued delivery needs.
struct Job {
    hook: Arc<WebhookRecord>,
    event: String,
    data: Option<String>,
    device: String,
    published_at: SystemTime,
}

/// A hook's queue and the task that empties it.
struct Queue {
    tx: mpsc::Sender<Job>,
    task: tokio::task::AbortHandle,
}

/// The user's hooks and their delivery.
pub struct Webhooks {
    path: PathBuf,
    hooks: Mutex<Vec<Arc<WebhookRecord>>>,
    /// `false` after the file could not be read: it is then left as it is.
    writable: bool,
    policy: RwLock<WebhookPolicy>,
    queues: Mutex<HashMap<String, Queue>>,
    in_flight: Arc<Semaphore>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    dropped: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The event a device published, as the hooks see it.
pub(crate) struct Published<'a> {
    pub(crate) name: &'a str,
    pub(crate) data: Option<&'a str>,
    pub(crate) device: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) public: bool,
}

impl Webhooks {
    /// The hooks stored in `dir` (none when the file is missing). An unreadable file is reported on stderr and
    /// left untouched: the cloud runs without its hooks and refuses to change them.
    pub(crate) fn load(dir: &Path) -> Webhooks {
        let path = dir.join("webhooks.json");
        let (hooks, writable) = match std::fs::read(&path) {
            Ok(bytes) => match parse_webhooks(&bytes) {
                Ok(hooks) => (hooks.into_iter().map(Arc::new).collect(), true),
                Err(e) => {
                    eprintln!(
                        "spark-cloud: {}: unreadable ({e}); webhooks are off until it is repaired",
                        path.display()
                    );
                    (Vec::new(), false)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), true),
            Err(e) => {
                eprintln!(
                    "spark-cloud: {}: {e}; webhooks are off until it can be read",
                    path.display()
                );
                (Vec::new(), false)
            }
        };
        Webhooks {
            path,
            hooks: Mutex::new(hooks),
            writable,
            policy: RwLock::new(WebhookPolicy::default()),
            queues: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            counters: Arc::default(),
        }
    }

    /// Sets which addresses hooks may reach (checked at each delivery).
    pub fn set_policy(&self, policy: WebhookPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Which addresses hooks may reach.
    pub fn policy(&self) -> WebhookPolicy {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The delivery counters.
    pub fn stats(&self) -> WebhookStats {
        let c = &self.counters;
        WebhookStats {
            queued: c.queued.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
        }
    }

    /// `user`'s hooks, oldest first.
    pub fn list(&self, user: &str) -> Vec<WebhookRecord> {
        lock(&self.hooks)
            .iter()
            .filter(|h| h.owner == user)
            .map(|h| (**h).clone())
            .collect()
    }

    /// `user`'s hook `id`; another user's is as unknown as a missing one.
    pub fn get(&self, user: &str, id: &str) -> Option<WebhookRecord> {
        lock(&self.hooks)
            .iter()
            .find(|h| h.owner == user && h.id == id)
            .map(|h| (**h).clone())
    }

    fn save(&self, hooks: &[Arc<WebhookRecord>]) -> Result<(), WebhookError> {
        if !self.writable {
            return Err(WebhookError::Storage);
        }
        let list: Vec<&WebhookRecord> = hooks.iter().map(|h| &**h).collect();
        let json = serde_json::to_vec_pretty(&list).map_err(|_| WebhookError::Storage)?;
        write_atomic(&self.path, &json, true).map_err(|_: StateError| WebhookError::Storage)
    }

    /// Stores a new hook (its id and owner already set).
    pub fn add(&self, hook: WebhookRecord) -> Result<(), WebhookError> {
        let mut hooks = lock(&self.hooks);
        if hooks.iter().filter(|h| h.owner == hook.owner).count() >= MAX_HOOKS_PER_USER {
            return Err(WebhookError::TooMany);
        }
        hooks.push(Arc::new(hook));
        if let Err(e) = self.save(&hooks) {
            hooks.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Removes `user`'s hook `id` and drops what was queued for it.
    pub fn remove(&self, user: &str, id: &str) -> Result<(), WebhookError> {
        let mut hooks = lock(&self.hooks);
        let at = hooks
            .iter()
            .position(|h| h.owner == user && h.id == id)
            .ok_or(WebhookError::NotFound)?;
        let removed = hooks.remove(at);
        if let Err(e) = self.save(&hooks) {
            hooks.insert(at, removed);
            return Err(e);
        }
        drop(hooks);
        if let Some(q) = lock(&self.queues).remove(id) {
            q.task.abort();
        }
        Ok(())
    }

    /// Queues `event` for every hook it fires; never waits. Outside a tokio runtime nothing is sent.
    pub(crate) fn dispatch(&self, cloud: &Weak<Cloud>, event: &Published<'_>) {
        if event
            .name
            .as_bytes()
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"spark"))
        {
            return;
        }
        let firing: Vec<Arc<WebhookRecord>> = lock(&self.hooks)
            .iter()
            .filter(|h| fires(h, event))
            .cloned()
            .collect();
        if firing.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let now = SystemTime::now();
        let mut queues = lock(&self.queues);
        for hook in firing {
            let job = Job {
                hook: Arc::clone(&hook),
                event: event.name.to_owned(),
                data: event.data.map(str::to_owned),
                device: event.device.to_owned(),
                published_at: now,
            };
            let queue = queues.entry(hook.id.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(HOOK_QUEUE);
                let worker = Worker {
                    cloud: Weak::clone(cloud),
                    in_flight: Arc::clone(&self.in_flight),
                    counters: Arc::clone(&self.counters),
                };
                let task = runtime.spawn(worker.run(rx)).abort_handle();
                Queue { tx, task }
            });
            match queue.tx.try_send(job) {
                Ok(()) => {
                    self.counters.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        for (_, q) in lock(&self.queues).drain() {
            q.task.abort();
        }
    }
}

/// Reads `webhooks.json`.
pub(crate) fn parse_webhooks(bytes: &[u8]) -> Result<Vec<WebhookRecord>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Whether `hook` fires on `event`.
fn fires(hook: &WebhookRecord, event: &Published<'_>) -> bool {
    if !event.name.starts_with(hook.event.as_str()) {
        return false;
    }
    if hook.device_id.as_deref().is_some_and(|d| d != event.device) {
        return false;
    }
    hook.owner == event.owner || (!hook.mydevices && event.public)
}

/// Counts one request in flight until dropped (also when its task is aborted mid-request).
struct InFlight(Arc<Counters>);

impl InFlight {
    fn count(counters: &Arc<Counters>) -> InFlight {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(counters))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One hook's delivery task: one request at a time, each holding one of the cloud's in-flight permits.
struct Worker {
    cloud: Weak<Cloud>,
    in_flight: Arc<Semaphore>,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            let Ok(_permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
                return;
            };
            let counted = InFlight::count(&self.counters);
            self.publish(&job.hook.owner, &format!("hook-sent/{}", job.event), None);
            let policy = match self.cloud.upgrade() {
                Some(cloud) => cloud.webhooks().policy(),
                None => return,
            };
            let outcome = match tokio::time::timeout(HOOK_TIMEOUT, deliver(&job, &policy)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", HOOK_TIMEOUT.as_secs())),
            };
            drop(counted);
            let (kind, data) = match outcome {
                Ok(body) => {
                    self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                    ("hook-response", body)
                }
                Err(why) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    ("hook-error", why)
                }
            };
            let name = format!("{kind}/{}/{}/0", job.event, job.device);
            let data = truncate(&data, MAX_RESPONSE_DATA);
            self.publish(&job.hook.owner, &name, Some(data));
            if let Some(cloud) = self.cloud.upgrade() {
                cloud.deliver_hook_event(&job.device, &name, data);
            }
        }
    }

    fn publish(&self, owner: &str, name: &str, data: Option<&str>) {
        if let Some(cloud) = self.cloud.upgrade() {
            let event = super::events::Event::new(
                name,
                data,
                60,
                false,
                SystemTime::now(),
                super::events::Publisher::user(HOOK_EVENT_SOURCE, owner),
            );
            cloud.bus().publish(&event);
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Replaces the hosted cloud's template variables in `text`.
fn fill(text: &str, job: &Job) -> String {
    let published = iso8601(job.published_at);
    let data = job.data.as_deref().unwrap_or("");
    let mut out = text.to_owned();
    for (names, value) in [
        (
            ["SPARK_EVENT_NAME", "PARTICLE_EVENT_NAME"],
            job.event.as_str(),
        ),
        (["SPARK_EVENT_VALUE", "PARTICLE_EVENT_VALUE"], data),
        (["SPARK_CORE_ID", "PARTICLE_DEVICE_ID"], job.device.as_str()),
        (
            ["SPARK_PUBLISHED_AT", "PARTICLE_PUBLISHED_AT"],
            published.as_str(),
        ),
    ] {
        for name in names {
            out = out.replace(&format!("{{{{{name}}}}}"), value);
        }
    }
    out
}

fn fill_json(value: &Value, job: &Job) -> Value {
    match value {
        Value::String(s) => Value::String(fill(s, job)),
        Value::Array(a) => Value::Array(a.iter().map(|v| fill_json(v, job)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (fill(k, job), fill_json(v, job)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The default fields of a delivery.
fn defaults(job: &Job) -> Vec<(String, Value)> {
    vec![
        ("event".into(), job.event.clone().into()),
        (
            "data".into(),
            job.data.clone().map_or(Value::Null, Value::String),
        ),
        ("published_at".into(), iso8601(job.published_at).into()),
        ("coreid".into(), job.device.clone().into()),
    ]
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The request of one delivery.
struct HookRequest {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// Builds the request of one delivery from the hook's templates.
fn build(job: &Job) -> Result<HookRequest, String> {
    let hook = &job.hook;
    let method = Method::from_bytes(hook.request_type.as_bytes())
        .map_err(|_| format!("unusable request type {}", hook.request_type))?;
    let url = fill(&hook.url, job);
    let uri: Uri = url.parse().map_err(|_| format!("unusable URL {url}"))?;
    let with_body = method != Method::GET && method != Method::DELETE;
    let mut query: Vec<(String, String)> = hook
        .query
        .iter()
        .flatten()
        .map(|(k, v)| (fill(k, job), fill(v, job)))
        .collect();
    let mut headers = Vec::new();
    let body = if let Some(template) = &hook.json {
        let mut value = fill_json(template, job);
        if !hook.no_defaults
            && let Value::Object(map) = &mut value
        {
            for (k, v) in defaults(job) {
                map.entry(k).or_insert(v);
            }
        }
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        Bytes::from(serde_json::to_vec(&value).map_err(|e| e.to_string())?)
    } else if let Some(form) = &hook.form {
        let mut fields: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (fill(k, job), fill(v, job)))
            .collect();
        if !hook.no_defaults {
            fields.extend(defaults(job).into_iter().map(|(k, v)| (k, as_text(&v))));
        }
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        ));
        Bytes::from(serde_urlencoded::to_string(&fields).map_err(|e| e.to_string())?)
    } else if hook.no_defaults {
        Bytes::new()
    } else if with_body {
        let map: serde_json::Map<String, Value> = defaults(job).into_iter().collect();
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        Bytes::from(serde_json::to_vec(&map).map_err(|e| e.to_string())?)
    } else {
        query.extend(defaults(job).into_iter().map(|(k, v)| (k, as_text(&v))));
        Bytes::new()
    };
    let mut path = uri.path().to_owned();
    if path.is_empty() {
        path.push('/');
    }
    let mut query_text = uri.query().unwrap_or("").to_owned();
    if !query.is_empty() {
        let extra = serde_urlencoded::to_string(&query).map_err(|e| e.to_string())?;
        if !query_text.is_empty() {
            query_text.push('&');
        }
        query_text.push_str(&extra);
    }
    let target = if query_text.is_empty() {
        path
    } else {
        format!("{path}?{query_text}")
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("no host in {url}"))?
        .clone();
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(target)
        .build()
        .map_err(|_| format!("unusable URL {url}"))?;
    for (k, v) in &hook.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header {k}"))?;
        let value = HeaderValue::from_str(&fill(v, job)).map_err(|_| format!("bad header {k}"))?;
        headers.push((name, value));
    }
    if let Some(auth) = &hook.auth {
        use base64ct::{Base64, Encoding};
        let encoded =
            Base64::encode_string(format!("{}:{}", auth.username, auth.password).as_bytes());
        let value = HeaderValue::from_str(&format!("Basic {encoded}"))
            .map_err(|_| "unusable credentials".to_owned())?;
        headers.push((header::AUTHORIZATION, value));
    }
    Ok(HookRequest {
        method,
        uri,
        headers,
        body,
    })
}

/// Checks a URL as a hook's target: `http://` with a host.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err("url is longer than 2048 characters".into());
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("url {url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https:// targets are not supported by the local cloud (it carries no TLS client); use http://"
                    .into(),
            );
        }
        _ => return Err("url must start with http://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("url has no host".into());
    }
    Ok(())
}

/// Sends one delivery; the start of the response body on a 2xx status, the reason otherwise.
async fn deliver(job: &Job, policy: &WebhookPolicy) -> Result<String, String> {
    let HookRequest {
        method,
        uri,
        headers,
        body,
    } = build(job)?;
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let candidates: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve {bare}: {e}"))?
            .collect(),
    };
    let Some(addr) = candidates
        .iter()
        .copied()
        .find(|a| policy.admits(bare, a.ip()))
    else {
        return Err(format!(
            "{bare} is not an address webhooks may reach (see --webhook-allow)"
        ));
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP failed: {e}"))?;
    let connection = tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()));
    let authority = uri.authority().map_or(bare, |a| a.as_str());
    request = request
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "spark-cloud webhook")
        .header(header::CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP failed: {e}"))?;
        let status = response.status();
        // Only the start of the body is published: read no more than that.
        let mut body = response.into_body();
        let mut text = Vec::new();
        while text.len() <= MAX_RESPONSE_DATA {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        text.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(format!("HTTP failed: {e}")),
                None => break,
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("{status}: {text}"))
        }
    }
    .await;
    connection.abort();
    result
}
