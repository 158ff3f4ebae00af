//! The PostgreSQL store: the registry of a cluster of nodes in one database (`spark-cloud --store
//! postgres://user@host:port/db`, no TLS: loopback or a trusted network).
//!
//! - **Schema**: the SQL files of `src/store/migrations/`, applied in order on connect, each inside a transaction
//!   holding `pg_advisory_xact_lock`, and recorded in `spark_schema_version`: nodes starting together apply each
//!   migration once.
//! - **Races between nodes** are settled by the database, never by a read then a write:
//!   a claim with a code is one transaction whose conditional `UPDATE … WHERE owner IS NULL OR owner = holder`
//!   lets exactly one of two concurrent claims win (the other gets [`StoreError::Owned`], as a later claim does);
//!   a key change and a rename are conditional on the caller owning the device; a flash job is a row, and a
//!   partial unique index allows one running job per device; the server keys are inserted with `ON CONFLICT DO
//!   NOTHING` and read back, so the first node to start generates them and the others use them; a rotation or
//!   retirement locks the settings row and bumps its generation.
//! - **Connections**: a small fixed set of `tokio_postgres::Client`s, each driven by the store's own IO thread
//!   (so a synchronous caller may wait with [`block_on`](super::block_on)); a closed one is replaced at its next
//!   use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::dtls;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Row};

use super::{AdminGeneration, FlashJob, OWNER_CACHE_TTL, Store, StoreError, StoreFuture, now_secs};
use crate::state::{
    AuthError, Authenticated, DeviceRecord, PasswordCheck, ServerKeys, TokenRecord, UserRecord,
    token_digest,
};
use crate::udp::keys as udp_keys;

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("migrations/0001_registry.sql"))];

/// The advisory lock taken while migrating (an arbitrary constant: "spark" in ASCII).
const MIGRATION_LOCK: i64 = 0x73_70_61_72_6b;

/// Connections of one store handle for single statements (each pipelines many callers' queries).
const SHARED_CONNECTIONS: usize = 2;
/// Connections of one store handle kept for transactions; when all are busy a transaction opens one more for
/// itself rather than wait, so that a caller waiting with `block_on` never waits for another caller's task.
const TRANSACTION_CONNECTIONS: usize = 2;

/// A running flash job older than this is taken as abandoned by a node that died (a Core's update takes under a
/// minute).
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Devices whose owner the cache holds at most.
const OWNER_CACHE_MAX: usize = 65_536;

/// How long connecting may take before the store reports the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a `--store` URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// The scheme is not `postgres://` or `postgresql://`.
    #[error("a store URL starts with postgres:// (or postgresql://)")]
    Scheme,
    /// The rest does not parse as a PostgreSQL connection URL.
    #[error("not a PostgreSQL URL: {0}")]
    Invalid(String),
    /// No host is named.
    #[error("the URL names no host")]
    NoHost,
}

/// Parses a `--store` URL (`postgres://user[:password]@host[:port]/database`).
pub fn parse_store_url(url: &str) -> Result<tokio_postgres::Config, StoreUrlError> {
    let url = url.trim();
    let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
    if !lower.starts_with("postgres://") && !lower.starts_with("postgresql://") {
        return Err(StoreUrlError::Scheme);
    }
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreUrlError::Invalid(e.to_string()))?;
    if config.get_hosts().is_empty() {
        return Err(StoreUrlError::NoHost);
    }
    Ok(config)
}

/// The URL as a log line may show it: no password.
pub fn describe_store_config(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or_default(),
        config.get_dbname().unwrap_or_default()
    )
}

fn db(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => StoreError::Unavailable(format!("{}: {}", d.code().code(), d.message())),
        None => StoreError::Unavailable(e.to_string()),
    }
}

fn is(e: &tokio_postgres::Error, state: &SqlState) -> bool {
    e.code() == Some(state)
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The thread that drives the connections: a current-thread runtime running until the store is dropped.
struct IoThread {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl IoThread {
    fn start() -> Result<IoThread, StoreError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("spark-store-io".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store's thread: {e}"))
            })?;
        let handle = rx
            .recv()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(StoreError::Unavailable)?;
        Ok(IoThread {
            handle,
            _stop: stop,
        })
    }
}

/// A PostgreSQL database as a [`Store`]: the schema, the races it settles and its connections are described in
/// `spark-cloud/README.md` ("PostgreSQL store").
pub struct PostgresStore {
    config: tokio_postgres::Config,
    described: String,
    io: IoThread,
    /// Connections shared by single statements (a `Client` pipelines the queries of many callers).
    shared: Vec<std::sync::Mutex<Option<Arc<Client>>>>,
    /// Connections for transactions, one caller at a time.
    exclusive: Vec<tokio::sync::Mutex<Option<Client>>>,
    next: AtomicUsize,
    udp_server_key: dtls::PrivateKey,
    /// Recent answers of `device_owner`, cleared by this handle's ownership changes (bounded: emptied when full).
    owners: std::sync::Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl core::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.described)
            .finish_non_exhaustive()
    }
}

/// A connection held for a transaction: one of the kept ones, or one opened for it.
enum Slot<'a> {
    Kept(tokio::sync::MutexGuard<'a, Option<Client>>),
    Own(Client),
}

impl Slot<'_> {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        match self {
            Slot::Kept(held) => held
                .as_mut()
                .ok_or_else(|| StoreError::Unavailable("no connection".into())),
            Slot::Own(c) => Ok(c),
        }
    }
}

impl PostgresStore {
    /// Connects to `url`, applies the migrations the database lacks and reads the server keys, generating them
    /// with `key_bits` bits if no node has yet. A bad URL or an unreachable server is an error here, at start.
    pub async fn connect(url: &str, key_bits: usize) -> Result<PostgresStore, StoreError> {
        let mut config =
            parse_store_url(url).map_err(|e| StoreError::Unavailable(format!("--store: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("spark-cloud");
        let described = describe_store_config(&config);
        let io = IoThread::start()?;
        let mut store = PostgresStore {
            config,
            described,
            io,
            shared: (0..SHARED_CONNECTIONS)
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            exclusive: (0..TRANSACTION_CONNECTIONS)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            owners: std::sync::Mutex::new(HashMap::new()),
            udp_server_key: dtls::PrivateKey::generate(&mut crate::system_rng()),
        };
        {
            let mut slot = store.tx_slot().await?;
            migrate(slot.client()?).await?;
        }
        store.first_start_keys(key_bits).await?;
        Ok(store)
    }

    async fn open_client(&self) -> Result<Client, StoreError> {
        let config = self.config.clone();
        let described = self.described.clone();
        self.io
            .handle
            .spawn(async move {
                let (client, connection) = config.connect(NoTls).await.map_err(|e| {
                    StoreError::Unavailable(format!("cannot connect to {described}: {e}"))
                })?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        eprintln!("spark-cloud: store connection lost: {e}");
                    }
                });
                Ok(client)
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// A connection for single statements, connected (again) if it was not or has closed. No lock is held while
    /// connecting or querying.
    async fn query_client(&self) -> Result<Arc<Client>, StoreError> {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.shared.len();
        let held = crate::lock(&self.shared[at]).clone();
        if let Some(c) = held.filter(|c| !c.is_closed()) {
            return Ok(c);
        }
        let fresh = Arc::new(self.open_client().await?);
        *crate::lock(&self.shared[at]) = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// A connection for a transaction: a free kept one (reconnected if it has closed), or a new one when all are
    /// busy. Never waits for another caller.
    async fn tx_slot(&self) -> Result<Slot<'_>, StoreError> {
        for kept in &self.exclusive {
            if let Ok(mut held) = kept.try_lock() {
                if held.as_ref().is_none_or(Client::is_closed) {
                    *held = Some(self.open_client().await?);
                }
                return Ok(Slot::Kept(held));
            }
        }
        Ok(Slot::Own(self.open_client().await?))
    }

    /// The first node to start generates the server keys; the others read what it stored.
    async fn first_start_keys(&mut self, key_bits: usize) -> Result<(), StoreError> {
        let present: Vec<String> = {
            let c = self.query_client().await?;
            let c = c;
            c.query("SELECT role FROM server_keys", &[])
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        if !present.iter().any(|r| r == "current") {
            let key = tokio::task::spawn_blocking(move || {
                RsaPrivateKey::generate(&mut crate::system_rng(), key_bits)
                    .map_err(|e| StoreError::KeyGeneration(e.to_string()))
            })
            .await
            .map_err(|e| StoreError::KeyGeneration(e.to_string()))??;
            let pem = key
                .to_pkcs1_pem()
                .map_err(|e| StoreError::KeyGeneration(e.to_string()))?;
            self.insert_key_once("current", pem.as_str()).await?;
        }
        if !present.iter().any(|r| r == "udp") {
            let key = dtls::PrivateKey::generate(&mut crate::system_rng());
            self.insert_key_once("udp", &udp_keys::private_key_pem(&key))
                .await?;
        }
        let pem: String = {
            let c = self.query_client().await?;
            c.query_one("SELECT pem FROM server_keys WHERE role = 'udp'", &[])
                .await
                .map_err(db)?
                .get(0)
        };
        self.udp_server_key = udp_keys::private_key_from_pem(&pem)
            .map_err(|e| StoreError::Corrupt(format!("server_keys udp: {e}")))?;
        Ok(())
    }

    async fn insert_key_once(&self, role: &str, pem: &str) -> Result<(), StoreError> {
        let c = self.query_client().await?;
        c.execute(
            "INSERT INTO server_keys (role, pem) VALUES ($1, $2) ON CONFLICT (role) DO NOTHING",
            &[&role, &pem],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn read_server_keys(
        c: &impl tokio_postgres::GenericClient,
    ) -> Result<ServerKeys, StoreError> {
        let rows = c
            .query(
                "SELECT role, pem FROM server_keys WHERE role IN ('current', 'previous')",
                &[],
            )
            .await
            .map_err(db)?;
        let mut current = None;
        let mut previous = None;
        for row in rows {
            let role: &str = row.get(0);
            let key = RsaPrivateKey::from_pem(row.get(1))
                .map_err(|e| StoreError::Corrupt(format!("server_keys {role}: {e}")))?;
            if role == "current" {
                current = Some(key);
            } else {
                previous = Some(key);
            }
        }
        let current =
            current.ok_or_else(|| StoreError::Corrupt("server_keys: no current key".into()))?;
        Ok(ServerKeys { current, previous })
    }

    async fn device_row(&self, id: &str) -> Result<Option<Row>, StoreError> {
        let c = self.query_client().await?;
        c.query_opt(
            "SELECT id, name, owner, rsa_public_key, udp_public_key FROM devices WHERE id = $1",
            &[&id.to_ascii_lowercase()],
        )
        .await
        .map_err(db)
    }

    /// Drops what the owner cache holds of `id` (after this handle changed or may have changed its owner).
    fn forget_owner(&self, id: &str) {
        crate::lock(&self.owners).remove(&id.to_ascii_lowercase());
    }

    /// Whether device `id` exists (to tell an unknown device from a refused change).
    async fn refusal(&self, id: &str) -> StoreError {
        match self.device_row(id).await {
            Ok(Some(_)) => StoreError::Owned,
            Ok(None) => StoreError::UnknownDevice,
            Err(e) => e,
        }
    }
}

/// Applies the migrations `spark_schema_version` does not list, in order, in one transaction holding the
/// migration lock (a second node waits for it, then finds them applied).
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS spark_schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(db)?;
    let applied: Option<i32> = tx
        .query_one("SELECT max(version) FROM spark_schema_version", &[])
        .await
        .map_err(db)?
        .get(0);
    let applied = applied.unwrap_or(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if applied > newest {
        return Err(StoreError::Corrupt(format!(
            "the database's schema is version {applied}, newer than this spark-cloud's {newest}"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Corrupt(format!("migration {version}: {}", db(e))))?;
        tx.execute(
            "INSERT INTO spark_schema_version (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

fn device_of(row: &Row) -> DeviceRecord {
    DeviceRecord {
        id: row.get(0),
        name: row.get(1),
        owner: row.get(2),
    }
}

fn token_of(row: &Row) -> TokenRecord {
    let expires: Option<i64> = row.get(2);
    let issued: Option<i64> = row.get(3);
    TokenRecord {
        digest: row.get(0),
        client: row.get(1),
        expires_at: expires.map(u64_of),
        issued_at: issued.map(u64_of),
    }
}

impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn add_user(&self, user: UserRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let iterations = i32::try_from(user.iterations).unwrap_or(i32::MAX);
            let n = c
                .execute(
                    "INSERT INTO users (username, id, salt, password_hash, iterations)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING",
                    &[
                        &user.username,
                        &user.id,
                        &user.salt,
                        &user.password_hash,
                        &iterations,
                    ],
                )
                .await
                .map_err(db)?;
            if n == 0 {
                return Err(AuthError::UserExists.into());
            }
            Ok(())
        })
    }

    fn user_exists<'a>(&'a self, username: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let c = self.query_client().await?;
            Ok(
                c.query_opt("SELECT 1 FROM users WHERE username = $1", &[&username])
                    .await
                    .map_err(db)?
                    .is_some(),
            )
        })
    }

    fn password_check<'a>(&'a self, username: &'a str) -> StoreFuture<'a, PasswordCheck> {
        Box::pin(async move {
            let username = username.trim().to_lowercase();
            let c = self.query_client().await?;
            let row = c
                .query_opt(
                    "SELECT salt, password_hash, iterations FROM users WHERE username = $1",
                    &[&username],
                )
                .await
                .map_err(db)?;
            Ok(match row {
                Some(row) => {
                    let iterations: i32 = row.get(2);
                    PasswordCheck::new(
                        Some(username),
                        row.get(0),
                        row.get(1),
                        u32::try_from(iterations).unwrap_or(1),
                    )
                }
                None => PasswordCheck::unknown(),
            })
        })
    }

    fn add_token<'a>(&'a self, username: &'a str, token: TokenRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let c = c;
            let expires = token.expires_at.map(i64_of);
            let issued = token.issued_at.map(i64_of);
            let n = c
                .execute(
                    "INSERT INTO tokens (digest, username, client, expires_at, issued_at)
                     SELECT $1, username, $3, $4, $5 FROM users WHERE username = $2",
                    &[&token.digest, &username, &token.client, &expires, &issued],
                )
                .await
                .map_err(db)?;
            if n == 0 {
                return Err(AuthError::BadCredentials.into());
            }
            c.execute(
                "DELETE FROM tokens WHERE username = $1 AND expires_at <= $2",
                &[&username, &i64_of(now_secs())],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn authenticate<'a>(&'a self, digest: &'a str) -> StoreFuture<'a, Authenticated> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let row = c
                .query_opt(
                    "SELECT u.username, u.id, t.expires_at, t.issued_at, s.tokens_not_before
                     FROM tokens t JOIN users u ON u.username = t.username CROSS JOIN server_settings s
                     WHERE t.digest = $1",
                    &[&digest],
                )
                .await
                .map_err(db)?
                .ok_or(AuthError::InvalidToken)?;
            let expires: Option<i64> = row.get(2);
            let issued: Option<i64> = row.get(3);
            let not_before: i64 = row.get(4);
            if expires.is_some_and(|e| u64_of(e) <= now_secs()) {
                return Err(AuthError::ExpiredToken.into());
            }
            if issued.unwrap_or(0) < not_before {
                return Err(AuthError::InvalidToken.into());
            }
            Ok(Authenticated {
                username: row.get(0),
                user_id: row.get(1),
                token_digest: digest.to_owned(),
                expires_at: expires.and_then(|e| {
                    std::time::UNIX_EPOCH.checked_add(Duration::from_secs(u64_of(e)))
                }),
                issued_at: issued.map(u64_of),
            })
        })
    }

    fn tokens<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Vec<TokenRecord>> {
        Box::pin(async move {
            let c = self.query_client().await?;
            Ok(c.query(
                "SELECT digest, client, expires_at, issued_at FROM tokens WHERE username = $1
                     ORDER BY issued_at NULLS FIRST, digest",
                &[&username],
            )
            .await
            .map_err(db)?
            .iter()
            .map(token_of)
            .collect())
        })
    }

    fn delete_token<'a>(
        &'a self,
        username: &'a str,
        token: &'a str,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let hashed = token_digest(token);
            Ok(c.query_opt(
                "DELETE FROM tokens WHERE username = $1 AND digest IN ($2, $3) RETURNING digest",
                &[&username, &hashed, &token],
            )
            .await
            .map_err(db)?
            .map(|r| r.get(0)))
        })
    }

    fn delete_all_tokens<'a>(&'a self, username: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let n = c
                .execute("DELETE FROM tokens WHERE username = $1", &[&username])
                .await
                .map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn invalidate_tokens_before(&self, cutoff: u64) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut slot = self.tx_slot().await?;
            let tx = slot.client()?.transaction().await.map_err(db)?;
            // The generation moves only when the cut-off does: a node reapplying it changes nothing.
            tx.execute(
                "UPDATE server_settings SET tokens_not_before = $1, generation = generation + 1
                 WHERE tokens_not_before < $1",
                &[&i64_of(cutoff)],
            )
            .await
            .map_err(db)?;
            let cutoff: i64 = tx
                .query_one("SELECT tokens_not_before FROM server_settings", &[])
                .await
                .map_err(db)?
                .get(0);
            let deleted = tx
                .query(
                    "DELETE FROM tokens WHERE COALESCE(issued_at, 0) < $1 RETURNING digest",
                    &[&cutoff],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            tx.commit().await.map_err(db)?;
            Ok(deleted)
        })
    }

    fn admin_generation(&self) -> StoreFuture<'_, AdminGeneration> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let row = c
                .query_one(
                    "SELECT generation, tokens_not_before FROM server_settings",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(AdminGeneration {
                generation: u64_of(row.get(0)),
                tokens_not_before: u64_of(row.get(1)),
            })
        })
    }

    fn devices(&self) -> StoreFuture<'_, Vec<DeviceRecord>> {
        Box::pin(async move {
            let c = self.query_client().await?;
            Ok(
                c.query("SELECT id, name, owner FROM devices ORDER BY id", &[])
                    .await
                    .map_err(db)?
                    .iter()
                    .map(device_of)
                    .collect(),
            )
        })
    }

    fn device<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<DeviceRecord>> {
        Box::pin(async move { Ok(self.device_row(id).await?.as_ref().map(device_of)) })
    }

    fn device_owner<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let id = id.to_ascii_lowercase();
            if let Some((owner, at)) = crate::lock(&self.owners).get(&id)
                && at.elapsed() < OWNER_CACHE_TTL
            {
                return Ok(owner.clone());
            }
            let asked = Instant::now();
            let c = self.query_client().await?;
            let owner: Option<String> = c
                .query_opt("SELECT owner FROM devices WHERE id = $1", &[&id])
                .await
                .map_err(db)?
                .and_then(|r| r.get(0));
            let mut cache = crate::lock(&self.owners);
            if cache.len() >= OWNER_CACHE_MAX {
                cache.clear();
            }
            cache.insert(id, (owner.clone(), asked));
            Ok(owner)
        })
    }

    fn forget_cached_owner(&self, id: &str) {
        self.forget_owner(id);
    }

    fn find_device<'a>(
        &'a self,
        id_or_name: &'a str,
        owner: &'a str,
    ) -> StoreFuture<'a, Option<DeviceRecord>> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let lower = id_or_name.to_ascii_lowercase();
            Ok(c.query_opt(
                "SELECT id, name, owner FROM devices
                     WHERE id = $1 OR (owner = $3 AND name = $2)
                     ORDER BY (id = $1) DESC, id LIMIT 1",
                &[&lower, &id_or_name, &owner],
            )
            .await
            .map_err(db)?
            .as_ref()
            .map(device_of))
        })
    }

    fn device_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<RsaPublicKey>> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let row = c
                .query_opt(
                    "SELECT rsa_public_key FROM devices WHERE id = $1",
                    &[&id.to_ascii_lowercase()],
                )
                .await
                .map_err(db)?;
            let Some(pem) = row.and_then(|r| r.get::<_, Option<String>>(0)) else {
                return Ok(None);
            };
            RsaPublicKey::from_pem(&pem)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("device {id}: {e}")))
        })
    }

    fn udp_device_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<dtls::PublicKey>> {
        Box::pin(async move {
            let Some(row) = self.device_row(id).await? else {
                return Ok(None);
            };
            let Some(pem) = row.get::<_, Option<String>>(4) else {
                return Ok(None);
            };
            udp_keys::public_key_from_pem(&pem)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("device {id}: {e}")))
        })
    }

    fn device_for_udp_key<'a>(
        &'a self,
        key: &'a dtls::PublicKey,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let point = key.to_point();
            Ok(c.query_opt(
                "SELECT id FROM devices WHERE udp_point = $1",
                &[&point.as_slice()],
            )
            .await
            .map_err(db)?
            .map(|r| r.get(0)))
        })
    }

    fn provision<'a>(
        &'a self,
        id: &'a str,
        key: &'a RsaPublicKey,
        caller: Option<&'a str>,
    ) -> StoreFuture<'a, DeviceRecord> {
        Box::pin(async move {
            let changed = async {
                let pem = key
                    .to_spki_pem()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let id = id.to_ascii_lowercase();
                let c = self.query_client().await?;
                let row = c
                    .query_opt(
                        "INSERT INTO devices (id, rsa_public_key, owner) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET rsa_public_key = EXCLUDED.rsa_public_key
                     WHERE NOT $4 OR devices.owner = $3
                     RETURNING id, name, owner",
                        &[&id, &pem.as_str(), &caller, &caller.is_some()],
                    )
                    .await
                    .map_err(db)?;
                drop(c);
                match row {
                    Some(row) => Ok(device_of(&row)),
                    None => Err(StoreError::Owned),
                }
            }
            .await;
            // After the change, so that no read made before it outlives it in the cache.
            self.forget_owner(id);
            changed
        })
    }

    fn provision_udp<'a>(
        &'a self,
        id: &'a str,
        key: &'a dtls::PublicKey,
        caller: Option<&'a str>,
    ) -> StoreFuture<'a, DeviceRecord> {
        Box::pin(async move {
            let changed = async {
            let pem = udp_keys::public_key_pem(key);
            let point = key.to_point();
            let id = id.to_ascii_lowercase();
            let c = self.query_client().await?;
            let row = c
                .query_opt(
                    "INSERT INTO devices (id, udp_public_key, udp_point, owner) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET udp_public_key = EXCLUDED.udp_public_key,
                         udp_point = EXCLUDED.udp_point
                     WHERE NOT $5 OR devices.owner = $4
                     RETURNING id, name, owner",
                    &[&id, &pem, &point.as_slice(), &caller, &caller.is_some()],
                )
                .await;
            match row {
                Ok(Some(row)) => Ok(device_of(&row)),
                Ok(None) => Err(StoreError::Owned),
                Err(e) if is(&e, &SqlState::UNIQUE_VIOLATION) => Err(StoreError::KeyTaken),
                Err(e) => Err(db(e)),
            }
        }
            .await;
            // After the change, so that no read made before it outlives it in the cache.
            self.forget_owner(id);
            changed
        })
    }

    fn rename<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, DeviceRecord> {
        Box::pin(async move {
            let row = {
                let c = self.query_client().await?;
                c.query_opt(
                    "UPDATE devices SET name = $3 WHERE id = $1 AND owner = $2
                         RETURNING id, name, owner",
                    &[&id.to_ascii_lowercase(), &owner, &name],
                )
                .await
                .map_err(db)?
            };
            match row {
                Some(row) => Ok(device_of(&row)),
                None => Err(self.refusal(id).await),
            }
        })
    }

    fn set_owner<'a>(&'a self, id: &'a str, user: Option<&'a str>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let changed = async {
                let c = self.query_client().await?;
                let n = c
                    .execute(
                        "UPDATE devices SET owner = $2 WHERE id = $1",
                        &[&id.to_ascii_lowercase(), &user],
                    )
                    .await
                    .map_err(db)?;
                if n == 0 {
                    return Err(StoreError::UnknownDevice);
                }
                Ok(())
            }
            .await;
            // After the change, so that no read made before it outlives it in the cache.
            self.forget_owner(id);
            changed
        })
    }

    fn release<'a>(&'a self, id: &'a str, owner: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let changed = async {
                let n = {
                    let c = self.query_client().await?;
                    c.execute(
                        "UPDATE devices SET owner = NULL WHERE id = $1 AND owner = $2",
                        &[&id.to_ascii_lowercase(), &owner],
                    )
                    .await
                    .map_err(db)?
                };
                if n == 0 {
                    return Err(self.refusal(id).await);
                }
                Ok(())
            }
            .await;
            // After the change, so that no read made before it outlives it in the cache.
            self.forget_owner(id);
            changed
        })
    }

    fn add_claim_code<'a>(
        &'a self,
        digest: &'a str,
        username: &'a str,
        expires_at: u64,
        max_per_user: usize,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut slot = self.tx_slot().await?;
            let tx = slot.client()?.transaction().await.map_err(db)?;
            // The user's row, locked: two nodes handing the same user codes take turns.
            if tx
                .query_opt(
                    "SELECT 1 FROM users WHERE username = $1 FOR UPDATE",
                    &[&username],
                )
                .await
                .map_err(db)?
                .is_none()
            {
                return Err(StoreError::UnknownUser);
            }
            tx.execute(
                "DELETE FROM claim_codes WHERE expires_at <= $1",
                &[&i64_of(now_secs())],
            )
            .await
            .map_err(db)?;
            let keep = i64::try_from(max_per_user.saturating_sub(1)).unwrap_or(i64::MAX);
            tx.execute(
                "DELETE FROM claim_codes WHERE digest IN (SELECT digest FROM claim_codes
                 WHERE username = $1 ORDER BY expires_at DESC OFFSET $2)",
                &[&username, &keep],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "INSERT INTO claim_codes (digest, username, expires_at) VALUES ($1, $2, $3)",
                &[&digest, &username, &i64_of(expires_at)],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }

    fn claim_with_code<'a>(&'a self, id: &'a str, digest: &'a str) -> StoreFuture<'a, String> {
        Box::pin(async move {
            let changed = async {
            let id = id.to_ascii_lowercase();
            let mut slot = self.tx_slot().await?;
            let tx = slot.client()?.transaction().await.map_err(db)?;
            if tx
                .query_opt("SELECT 1 FROM devices WHERE id = $1", &[&id])
                .await
                .map_err(db)?
                .is_none()
            {
                return Err(StoreError::UnknownDevice);
            }
            let holder: String = tx
                .query_opt(
                    "SELECT username FROM claim_codes WHERE digest = $1 AND expires_at > $2 FOR UPDATE",
                    &[&digest, &i64_of(now_secs())],
                )
                .await
                .map_err(db)?
                .ok_or(StoreError::UnknownCode)?
                .get(0);
            // The race is settled here: a concurrent claim's UPDATE waits for this row, then sees its owner.
            let n = tx
                .execute(
                    "UPDATE devices SET owner = $2 WHERE id = $1 AND (owner IS NULL OR owner = $2)",
                    &[&id, &holder],
                )
                .await
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Owned);
            }
            tx.execute("DELETE FROM claim_codes WHERE digest = $1", &[&digest])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(holder)
        }
            .await;
            // After the change, so that no read made before it outlives it in the cache.
            self.forget_owner(id);
            changed
        })
    }

    fn start_flash<'a>(&'a self, device: &'a str, node: &'a str) -> StoreFuture<'a, FlashJob> {
        Box::pin(async move {
            let started_at = now_secs();
            let c = self.query_client().await?;
            // A job whose node died never ends: past ABANDONED_AFTER it no longer blocks the device.
            c.execute(
                "UPDATE flash_jobs SET ended_at = $2, result = 'abandoned (its node never ended it)'
                 WHERE device = $1 AND ended_at IS NULL AND started_at < $3",
                &[
                    &device,
                    &i64_of(started_at),
                    &i64_of(started_at.saturating_sub(ABANDONED_AFTER.as_secs())),
                ],
            )
            .await
            .map_err(db)?;
            let row = c
                .query_one(
                    "INSERT INTO flash_jobs (device, node, started_at) VALUES ($1, $2, $3) RETURNING id",
                    &[&device, &node, &i64_of(started_at)],
                )
                .await;
            match row {
                Ok(row) => Ok(FlashJob {
                    id: u64_of(row.get(0)),
                    device: device.to_owned(),
                    node: node.to_owned(),
                    started_at,
                    ended_at: None,
                    result: None,
                }),
                Err(e) if is(&e, &SqlState::UNIQUE_VIOLATION) => Err(StoreError::FlashInProgress),
                Err(e) => Err(db(e)),
            }
        })
    }

    fn finish_flash<'a>(&'a self, id: u64, result: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = self.query_client().await?;
            let n = c
                .execute(
                    "UPDATE flash_jobs SET ended_at = $2, result = $3 WHERE id = $1 AND ended_at IS NULL",
                    &[&i64_of(id), &i64_of(now_secs()), &result],
                )
                .await
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Corrupt(format!("no running flash job {id}")));
            }
            Ok(())
        })
    }

    fn flash_jobs<'a>(&'a self, device: &'a str) -> StoreFuture<'a, Vec<FlashJob>> {
        Box::pin(async move {
            let c = self.query_client().await?;
            Ok(c.query(
                "SELECT id, device, node, started_at, ended_at, result FROM flash_jobs
                     WHERE device = $1 ORDER BY id DESC LIMIT 100",
                &[&device],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| FlashJob {
                id: u64_of(r.get(0)),
                device: r.get(1),
                node: r.get(2),
                started_at: u64_of(r.get(3)),
                ended_at: r.get::<_, Option<i64>>(4).map(u64_of),
                result: r.get(5),
            })
            .collect())
        })
    }

    fn server_keys(&self) -> StoreFuture<'_, ServerKeys> {
        Box::pin(async move {
            let c = self.query_client().await?;
            PostgresStore::read_server_keys(&*c).await
        })
    }

    fn rotate_server_key(&self, fresh: RsaPrivateKey) -> StoreFuture<'_, ServerKeys> {
        Box::pin(async move {
            let pem = fresh
                .to_pkcs1_pem()
                .map_err(|e| StoreError::KeyGeneration(e.to_string()))?;
            let mut slot = self.tx_slot().await?;
            let tx = slot.client()?.transaction().await.map_err(db)?;
            tx.execute("SELECT 1 FROM server_settings FOR UPDATE", &[])
                .await
                .map_err(db)?;
            let keys = PostgresStore::read_server_keys(&tx).await?;
            if keys
                .previous
                .as_ref()
                .is_some_and(|p| p.public_key() != keys.current.public_key())
            {
                return Err(StoreError::WindowOpen);
            }
            tx.execute(
                "INSERT INTO server_keys (role, pem) SELECT 'previous', pem FROM server_keys
                 WHERE role = 'current' ON CONFLICT (role) DO UPDATE SET pem = EXCLUDED.pem",
                &[],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "UPDATE server_keys SET pem = $1 WHERE role = 'current'",
                &[&pem.as_str()],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "UPDATE server_settings SET generation = generation + 1",
                &[],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(ServerKeys {
                current: fresh,
                previous: Some(keys.current),
            })
        })
    }

    fn retire_server_key(&self) -> StoreFuture<'_, ServerKeys> {
        Box::pin(async move {
            let mut slot = self.tx_slot().await?;
            let tx = slot.client()?.transaction().await.map_err(db)?;
            tx.execute("SELECT 1 FROM server_settings FOR UPDATE", &[])
                .await
                .map_err(db)?;
            let n = tx
                .execute("DELETE FROM server_keys WHERE role = 'previous'", &[])
                .await
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NoPreviousKey);
            }
            tx.execute(
                "UPDATE server_settings SET generation = generation + 1",
                &[],
            )
            .await
            .map_err(db)?;
            let keys = PostgresStore::read_server_keys(&tx).await?;
            tx.commit().await.map_err(db)?;
            Ok(keys)
        })
    }

    fn udp_server_key(&self) -> StoreFuture<'_, dtls::PrivateKey> {
        Box::pin(async move { Ok(self.udp_server_key.clone()) })
    }
}
