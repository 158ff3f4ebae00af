//! The registry behind a cloud: users, tokens, devices and their keys, ownership, claim codes, flash jobs and the
//! server's key pairs, as one [`Store`] trait with two implementations.
//!
//! - [`EmbeddedStore`]: the state directory of one node ([`StateDir`](crate::state::StateDir) and its file
//!   layout, unchanged), the default.
//! - [`PostgresStore`]: a PostgreSQL database shared by every node of a cluster (`spark-cloud --store
//!   postgres://user@host:port/db`), with versioned migrations and the races between nodes settled in the database
//!   (see the module's docs).
//!
//! Methods return boxed `Send` futures, so the trait is object-safe and a cloud holds an `Arc<dyn Store>`. Every
//! implementation's futures make progress without the caller's runtime: the embedded store does its work (and its
//! `fsync`s, through the journal's own thread) before or outside the future, and the PostgreSQL store's
//! connections are driven by its own IO thread. The few synchronous callers (the device handshake, which
//! spark-protocol asks for a key from inside its state machine) therefore wait with [`block_on`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::CryptoRng;
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::dtls;

use crate::encoding::hex;
use crate::password::pbkdf2_sha256;
use crate::state::{
    AuthError, Authenticated, DeviceRecord, MAX_TOKEN_LIFETIME, PASSWORD_ITERATIONS, PasswordCheck,
    ServerKeys, StateError, TokenRecord, UserRecord, token_digest,
};

mod embedded;
mod postgres;

pub use embedded::EmbeddedStore;
pub use postgres::{PostgresStore, StoreUrlError, describe_store_config, parse_store_url};

/// How long a shared store may answer [`Store::device_owner`] from its cache: the longest an event of a device
/// whose owner changed through another node may still go to the previous owner.
pub const OWNER_CACHE_TTL: Duration = Duration::from_secs(1);

/// The future a [`Store`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or refused the operation (a file, the database connection).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data cannot be read.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A user or token operation was refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No device has that id.
    #[error("unknown device")]
    UnknownDevice,
    /// No user has that name.
    #[error("unknown user")]
    UnknownUser,
    /// The claim code is unknown, used or expired.
    #[error("unknown or expired claim code")]
    UnknownCode,
    /// The device belongs to another user (or, for a key change, to no one the caller may act for).
    #[error("the device belongs to another user")]
    Owned,
    /// The UDP public key is registered to another device.
    #[error("the key is registered to another device")]
    KeyTaken,
    /// An over-the-air update of the device is already running (on this node or another).
    #[error("an update of this device is already in progress")]
    FlashInProgress,
    /// A rotation was asked for while the previous key is still accepted.
    #[error(
        "a migration window is open (the previous server key is still accepted): retire it first"
    )]
    WindowOpen,
    /// A retirement was asked for with no previous key.
    #[error("no previous server key to retire")]
    NoPreviousKey,
    /// A server key could not be generated or encoded.
    #[error("server key: {0}")]
    KeyGeneration(String),
}

impl From<StateError> for StoreError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Io { .. } => StoreError::Unavailable(e.to_string()),
            StateError::Corrupt { .. } => StoreError::Corrupt(e.to_string()),
            StateError::KeyGeneration(why) => StoreError::KeyGeneration(why),
            StateError::WindowOpen => StoreError::WindowOpen,
            StateError::NoPreviousKey => StoreError::NoPreviousKey,
            StateError::Owned => StoreError::Owned,
            StateError::KeyTaken => StoreError::KeyTaken,
        }
    }
}

impl StoreError {
    /// The user-or-token error this stands for (a backend failure is [`AuthError::Storage`]).
    pub fn into_auth(self) -> AuthError {
        match self {
            StoreError::Auth(e) => e,
            StoreError::UnknownUser => AuthError::BadCredentials,
            _ => AuthError::Storage,
        }
    }
}

/// A stored over-the-air update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlashJob {
    /// The job's id (unique within the store).
    pub id: u64,
    /// The device.
    pub device: String,
    /// The node that runs it.
    pub node: String,
    /// When it started, in seconds since the Unix epoch.
    pub started_at: u64,
    /// When it ended (`None` while it runs).
    pub ended_at: Option<u64>,
    /// How it ended (`success <file>`, `failed <file>: <why>`).
    pub result: Option<String>,
}

/// Where the shared administrative state stands: a cheap read that a node compares with what it holds to know
/// whether a rotation, retirement or token cut-off happened elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdminGeneration {
    /// Bumped by every rotation, retirement and cut-off change (the embedded store: a digest of its key and cut-off
    /// files).
    pub generation: u64,
    /// The token cut-off (seconds since the epoch; 0: none).
    pub tokens_not_before: u64,
}

/// The registry of a cloud: see the [module docs](self).
///
/// Names are lower-cased by the callers that take them from a person (`Cloud`, the REST layer); device ids are
/// 24 lower-case hex digits.
pub trait Store: Send + Sync + core::fmt::Debug {
    /// What the store is, for a log line (`state directory /var/lib/spark`, `postgres://spark@db:5432/spark`),
    /// with no password in it.
    fn describe(&self) -> String;

    /// The state directory, when this is the embedded store (what the tests and single-node tools reach into).
    fn as_state_dir(&self) -> Option<&crate::state::StateDir> {
        None
    }

    // Users.

    /// Adds a user made by [`new_user`]; an existing name is [`AuthError::UserExists`].
    fn add_user(&self, user: UserRecord) -> StoreFuture<'_, ()>;
    /// Whether a user of that name exists.
    fn user_exists<'a>(&'a self, username: &'a str) -> StoreFuture<'a, bool>;
    /// What checking `username`'s password needs (a dummy for an unknown user: checking costs the same).
    fn password_check<'a>(&'a self, username: &'a str) -> StoreFuture<'a, PasswordCheck>;

    // Tokens.

    /// Stores a token made by [`new_token`] for `username`, dropping that user's expired ones.
    fn add_token<'a>(&'a self, username: &'a str, token: TokenRecord) -> StoreFuture<'a, ()>;
    /// Resolves a token's digest to its user: one indexed lookup. Expired tokens and tokens older than the cut-off
    /// are refused.
    fn authenticate<'a>(&'a self, digest: &'a str) -> StoreFuture<'a, Authenticated>;
    /// A user's tokens.
    fn tokens<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Vec<TokenRecord>>;
    /// Deletes one of `username`'s tokens, named by the token or its digest; returns the digest deleted.
    fn delete_token<'a>(
        &'a self,
        username: &'a str,
        token: &'a str,
    ) -> StoreFuture<'a, Option<String>>;
    /// Deletes all of `username`'s tokens; returns how many there were.
    fn delete_all_tokens<'a>(&'a self, username: &'a str) -> StoreFuture<'a, usize>;
    /// Moves the token cut-off forward to `cutoff` and deletes every token issued before it; returns their
    /// digests.
    fn invalidate_tokens_before(&self, cutoff: u64) -> StoreFuture<'_, Vec<String>>;
    /// The shared administrative state's generation and cut-off (one small read; for the embedded store it
    /// rereads the cut-off file, which is how `SIGHUP` picks up `spark-cloud tokens invalidate-before`).
    fn admin_generation(&self) -> StoreFuture<'_, AdminGeneration>;

    // Devices.

    /// All devices, ordered by id.
    fn devices(&self) -> StoreFuture<'_, Vec<DeviceRecord>>;
    /// A device by id.
    fn device<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<DeviceRecord>>;
    /// A device's owner (`None`: unknown or unowned), what every event a device publishes asks. A shared store
    /// may answer from a short-lived cache that its own ownership changes clear at once; a change made through
    /// another node shows within [`OWNER_CACHE_TTL`].
    fn device_owner<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move { Ok(self.device(id).await?.and_then(|d| d.owner)) })
    }
    /// Drops what a cache holds of `id`'s owner: another node changed it (the bus said so).
    fn forget_cached_owner(&self, id: &str) {
        let _ = id;
    }
    /// A device by id, or by name among `owner`'s devices.
    fn find_device<'a>(
        &'a self,
        id_or_name: &'a str,
        owner: &'a str,
    ) -> StoreFuture<'a, Option<DeviceRecord>>;
    /// A device's RSA public key (the TCP handshake's lookup: one indexed query).
    fn device_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<RsaPublicKey>>;
    /// A device's UDP (P-256) public key.
    fn udp_device_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<dtls::PublicKey>>;
    /// The device a UDP public key is registered to.
    fn device_for_udp_key<'a>(
        &'a self,
        key: &'a dtls::PublicKey,
    ) -> StoreFuture<'a, Option<String>>;
    /// Stores a device's RSA key. With `caller`: a new device becomes the caller's, and a known one's key is
    /// replaced only if the caller owns it ([`StoreError::Owned`] otherwise), decided atomically. Without: an
    /// administrator's step (a new device has no owner; a known one keeps its owner and name).
    fn provision<'a>(
        &'a self,
        id: &'a str,
        key: &'a RsaPublicKey,
        caller: Option<&'a str>,
    ) -> StoreFuture<'a, DeviceRecord>;
    /// As [`Store::provision`] for a UDP device's P-256 key; a key registered to another device is
    /// [`StoreError::KeyTaken`].
    fn provision_udp<'a>(
        &'a self,
        id: &'a str,
        key: &'a dtls::PublicKey,
        caller: Option<&'a str>,
    ) -> StoreFuture<'a, DeviceRecord>;
    /// Renames `owner`'s device `id`; [`StoreError::Owned`] if it is not theirs (any more). Whether another of
    /// their devices holds the name is the REST layer's check, made first.
    fn rename<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, DeviceRecord>;
    /// Gives `id` to `user` or takes it from its owner (`None`), whoever owned it (an administrator's step and a
    /// release).
    fn set_owner<'a>(&'a self, id: &'a str, user: Option<&'a str>) -> StoreFuture<'a, ()>;
    /// Takes `owner`'s device `id` from them; [`StoreError::Owned`] if it is not theirs (any more).
    fn release<'a>(&'a self, id: &'a str, owner: &'a str) -> StoreFuture<'a, ()>;

    // Claim codes.

    /// Stores a claim code's digest for `username` until `expires_at`; the user's oldest codes go first past
    /// `max_per_user`.
    fn add_claim_code<'a>(
        &'a self,
        digest: &'a str,
        username: &'a str,
        expires_at: u64,
        max_per_user: usize,
    ) -> StoreFuture<'a, ()>;
    /// Device `id` presents the code of digest `digest`: a device without an owner (or already the holder's)
    /// becomes the holder's and the code is used up, atomically. Of two concurrent claims of one unowned device
    /// exactly one wins; the other is [`StoreError::Owned`], as a later claim is. Returns the new owner.
    fn claim_with_code<'a>(&'a self, id: &'a str, digest: &'a str) -> StoreFuture<'a, String>;

    // Flash jobs.

    /// Starts an over-the-air update of `device` run by `node`: refused ([`StoreError::FlashInProgress`]) while
    /// another one runs, on any node.
    fn start_flash<'a>(&'a self, device: &'a str, node: &'a str) -> StoreFuture<'a, FlashJob>;
    /// Ends job `id` with `result`.
    fn finish_flash<'a>(&'a self, id: u64, result: &'a str) -> StoreFuture<'a, ()>;
    /// A device's update jobs, newest first (the embedded store keeps those of this process only).
    fn flash_jobs<'a>(&'a self, device: &'a str) -> StoreFuture<'a, Vec<FlashJob>>;

    // Server keys.

    /// The server's RSA key pairs as stored now.
    fn server_keys(&self) -> StoreFuture<'_, ServerKeys>;
    /// Makes `fresh` the current key and keeps the current one as the previous key; [`StoreError::WindowOpen`]
    /// while a previous key is still accepted.
    fn rotate_server_key(&self, fresh: RsaPrivateKey) -> StoreFuture<'_, ServerKeys>;
    /// Ends the migration window; [`StoreError::NoPreviousKey`] outside one.
    fn retire_server_key(&self) -> StoreFuture<'_, ServerKeys>;
    /// The server's P-256 key of the UDP protocol.
    fn udp_server_key(&self) -> StoreFuture<'_, dtls::PrivateKey>;
}

/// Which store a cloud uses: `--state DIR` (the default) or `--store postgres://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded state directory.
    Directory(std::path::PathBuf),
    /// A PostgreSQL database (the URL as given to `--store`).
    Postgres(String),
}

/// Opens the store `config` names; a missing server key is generated with `key_bits` bits (by the first node to
/// start, for a shared store). PostgreSQL migrations run first.
pub async fn open(config: &StoreConfig, key_bits: usize) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        StoreConfig::Directory(dir) => {
            let dir = dir.clone();
            let store = tokio::task::spawn_blocking(move || {
                EmbeddedStore::open(&dir, key_bits, &mut crate::system_rng())
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
            Ok(Arc::new(store))
        }
        StoreConfig::Postgres(url) => Ok(Arc::new(PostgresStore::connect(url, key_bits).await?)),
    }
}

/// Waits for `future` on this thread. For a [`Store`]'s futures only (they never need the caller's runtime), from
/// a synchronous caller; a tokio worker blocked here is blocked for one query.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Seconds since the Unix epoch now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_hex(rng: &mut (impl CryptoRng + ?Sized), len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// A new user record (name checked and lower-cased, password salted and hashed) for [`Store::add_user`].
pub fn new_user(
    username: &str,
    password: &str,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<UserRecord, AuthError> {
    let username = username.trim().to_lowercase();
    if username.is_empty() || password.is_empty() {
        return Err(AuthError::Invalid("username and password are required"));
    }
    if username.len() > 254
        || !username
            .chars()
            .all(|c| c.is_alphanumeric() || "@.-_+".contains(c))
    {
        return Err(AuthError::Invalid("invalid username"));
    }
    let salt = random_hex(rng, 16);
    let hash = pbkdf2_sha256(password.as_bytes(), salt.as_bytes(), PASSWORD_ITERATIONS);
    Ok(UserRecord {
        id: random_hex(rng, 16),
        username,
        salt,
        password_hash: hex(&hash),
        iterations: PASSWORD_ITERATIONS,
        tokens: Vec::new(),
    })
}

/// A new token for [`Store::add_token`]: the token (given to the client, never stored) and its record.
pub fn new_token(
    client: &str,
    lifetime: Option<Duration>,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<(String, TokenRecord), AuthError> {
    let now = now_secs();
    let expires_at = match lifetime {
        None => None,
        Some(l) if l > MAX_TOKEN_LIFETIME => {
            return Err(AuthError::Invalid("token lifetime too long"));
        }
        Some(l) => Some(
            now.checked_add(l.as_secs())
                .filter(|e| *e <= crate::state::LATEST_EXPIRY)
                .ok_or(AuthError::Invalid("token lifetime too long"))?,
        ),
    };
    let token = random_hex(rng, 20);
    let record = TokenRecord {
        digest: token_digest(&token),
        client: client.to_owned(),
        expires_at,
        issued_at: Some(now),
    };
    Ok((token, record))
}

/// Creates a user in `store` (hashing on the calling thread).
pub async fn create_user(
    store: &dyn Store,
    username: &str,
    password: &str,
) -> Result<(), AuthError> {
    let user = new_user(username, password, &mut crate::system_rng())?;
    store.add_user(user).await.map_err(StoreError::into_auth)
}

/// Issues a token for `username` in `store`: returns the token and its record.
pub async fn issue_token(
    store: &dyn Store,
    username: &str,
    client: &str,
    lifetime: Option<Duration>,
) -> Result<(String, TokenRecord), AuthError> {
    let (token, record) = new_token(client, lifetime, &mut crate::system_rng())?;
    store
        .add_token(username, record.clone())
        .await
        .map_err(StoreError::into_auth)?;
    Ok((token, record))
}

/// Rotates the server key of `store`: a fresh key of the current key's size.
pub async fn rotate_server_key(store: &dyn Store) -> Result<ServerKeys, StoreError> {
    let keys = store.server_keys().await?;
    if keys
        .previous
        .as_ref()
        .is_some_and(|p| p.public_key() != keys.current.public_key())
    {
        return Err(StoreError::WindowOpen);
    }
    let bits = keys.current.bits();
    let fresh = tokio::task::spawn_blocking(move || {
        RsaPrivateKey::generate(&mut crate::system_rng(), bits)
            .map_err(|e| StoreError::KeyGeneration(e.to_string()))
    })
    .await
    .map_err(|e| StoreError::KeyGeneration(e.to_string()))??;
    store.rotate_server_key(fresh).await
}
