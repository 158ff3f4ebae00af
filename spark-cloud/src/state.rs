//! The local cloud's state directory: the server key pair, device public keys and attributes, users and tokens.
//!
//! Layout (everything is rewritten atomically through a temporary file and a rename):
//!
//! ```text
//! <dir>/default_key.pem         server private key (PKCS#1 PEM, mode 0600), generated on first start
//! <dir>/default_key.pub.pem     server public key (SPKI PEM), for `spark keys server`
//! <dir>/core_keys/<id>.json     one record per device: {"public_key" (SPKI PEM), "name", "owner"}, mode 0600
//! <dir>/core_keys/journal       device changes not yet compacted, one JSON record a line (group commit)
//! <dir>/users/<username>.json   {"id", "username", "salt", "password_hash", "iterations", "tokens": [...]}, 0600
//! <dir>/claims.json            pending claim codes (their SHA-256, user, expiry), 0600 (`Cloud`'s)
//! <dir>/webhooks.json          the users' webhooks, 0600 (`Cloud::webhooks`)
//! <dir>/udp_key.pem            server P-256 private key of the UDP protocol (SEC1 PEM, 0600), made on first start
//! <dir>/udp_key.pub.pem        its public key (SPKI PEM), what a UDP device is given
//! <dir>/udp_devices.json       UDP devices' P-256 public keys (SPKI PEM) with name and owner, 0600
//! <dir>/udp_devices.journal    UDP device changes since that file was last written whole, one JSON line each, 0600
//! ```
//!
//! The folders are created 0700 and every file holding a secret 0600, whatever the umask. Tokens are stored as
//! their SHA-256 (`token_sha256`); files of the older layout (plain `token`) are rewritten on load.
//!
//! ```text
//! ```

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};

use super::encoding::{hex, unhex};
use super::journal::{Done, Journal, JournalRecord};
use super::password::{constant_time_eq, pbkdf2_sha256};
use super::udp::keys::{self as udp_keys, UdpDeviceEntry};

/// Lifetime of a token (90 days, as the 2014 cloud).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(7_776_000);
/// The longest lifetime a token may be given (10 years); `expires_in` above it is refused.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The latest expiry a stored token may carry (year 9999): a loaded file with a later one is refused.
pub(crate) const LATEST_EXPIRY: u64 = 253_402_300_799;
/// PBKDF2-HMAC-SHA256 iterations for new passwords.
pub const PASSWORD_ITERATIONS: u32 = 10_000;

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds something unreadable.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The server key could not be generated.
    #[error("server key generation failed: {0}")]
    KeyGeneration(String),
    /// A rotation was asked for while the previous key is still accepted: retire it first.
    #[error(
        "a migration window is open (the previous server key is still accepted): retire it first"
    )]
    WindowOpen,
    /// A retirement was asked for with no previous key to retire.
    #[error("no previous server key to retire")]
    NoPreviousKey,
    /// A key change of a device the caller does not own.
    #[error("the device belongs to another user")]
    Owned,
    /// A UDP public key registered to another device.
    #[error("the key is registered to another device")]
    KeyTaken,
}

/// The file of the server's current private key (PKCS#1 PEM, mode 0600), beside its public key
/// `default_key.pub.pem`.
pub const SERVER_KEY_FILE: &str = "default_key.pem";
/// The file of the server's current public key (SPKI PEM), what `spark keys server` writes to a Core.
pub const SERVER_PUBLIC_KEY_FILE: &str = "default_key.pub.pem";
/// The file of the previous private key, present only during a migration window (mode 0600).
pub const PREVIOUS_KEY_FILE: &str = "previous_key.pem";
/// The file of the previous public key, present only during a migration window.
pub const PREVIOUS_PUBLIC_KEY_FILE: &str = "previous_key.pub.pem";

/// The server's key pairs: the current one, and the previous one while a migration window is open.
#[derive(Clone)]
pub struct ServerKeys {
    /// The key new devices are given and tried first.
    pub current: RsaPrivateKey,
    /// The key devices not yet moved still use; `None` outside a migration window.
    pub previous: Option<RsaPrivateKey>,
}

impl core::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerKeys")
            .field("current_bits", &self.current.bits())
            .field("window_open", &self.previous.is_some())
            .finish()
    }
}

/// Parses a private key file of the state directory (what the fuzz target `cloud_state_files` feeds).
pub fn parse_server_key_file(text: &str) -> Result<RsaPrivateKey, String> {
    RsaPrivateKey::from_pem(text).map_err(|e| e.to_string())
}

/// Reads the key pairs from `dir`: the current key must exist, the previous one may.
fn read_server_keys(dir: &Path) -> Result<Option<ServerKeys>, StateError> {
    let read = |name: &str| -> Result<Option<RsaPrivateKey>, StateError> {
        let path = dir.join(name);
        match fs::read_to_string(&path) {
            Ok(pem) => parse_server_key_file(&pem)
                .map(Some)
                .map_err(|reason| StateError::Corrupt { path, reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    };
    let Some(current) = read(SERVER_KEY_FILE)? else {
        return Ok(None);
    };
    let previous = read(PREVIOUS_KEY_FILE)?;
    Ok(Some(ServerKeys { current, previous }))
}

/// Writes `key` as the pair `private_name` (0600) and `public_name` (0644), each atomically.
fn write_key_pair(
    dir: &Path,
    key: &RsaPrivateKey,
    private_name: &str,
    public_name: &str,
) -> Result<(), StateError> {
    let pem = key
        .to_pkcs1_pem()
        .map_err(|e| StateError::KeyGeneration(e.to_string()))?;
    write_atomic(&dir.join(private_name), pem.as_bytes(), true)?;
    write_public_key(dir, key, public_name)
}

/// Writes the public half of `key` to `public_name` (0644) unless the file already holds it.
fn write_public_key(dir: &Path, key: &RsaPrivateKey, public_name: &str) -> Result<(), StateError> {
    let pub_pem = key
        .public_key()
        .to_spki_pem()
        .map_err(|e| StateError::KeyGeneration(e.to_string()))?;
    let pub_path = dir.join(public_name);
    if fs::read_to_string(&pub_path).ok().as_deref() != Some(pub_pem.as_str()) {
        write_atomic(&pub_path, pub_pem.as_bytes(), false)?;
    }
    Ok(())
}

/// Reads the token cut-off file of `dir`, if there is one.
pub(crate) fn read_not_before(dir: &Path) -> Result<Option<u64>, StateError> {
    let path = dir.join(TOKENS_NOT_BEFORE_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => parse_not_before(&text)
            .map(Some)
            .map_err(|reason| StateError::Corrupt { path, reason }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Removes `path`; a missing file is fine.
fn remove_if_present(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Makes a new current key of the current key's size and keeps the current one as the previous key, in `dir`.
///
/// The order makes a crash harmless: the current key is first copied to the previous key's file (a crash here
/// leaves the same key in both, which accepts exactly what it did before), then the new key replaces the current
/// one. Refused while a window is open, so that no key a device may still use is ever dropped by a rotation.
pub fn rotate_server_key_in(
    dir: &Path,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<ServerKeys, StateError> {
    let keys = read_server_keys(dir)?.ok_or_else(|| StateError::Corrupt {
        path: dir.join(SERVER_KEY_FILE),
        reason: "no server key to rotate".into(),
    })?;
    if keys
        .previous
        .as_ref()
        .is_some_and(|p| p.public_key() != keys.current.public_key())
    {
        return Err(StateError::WindowOpen);
    }
    let fresh = RsaPrivateKey::generate(rng, keys.current.bits())
        .map_err(|e| StateError::KeyGeneration(e.to_string()))?;
    rotate_server_key_to(dir, keys, fresh)
}

/// As [`rotate_server_key_in`] with the new key made by the caller (a shared store's rotation generates it before
/// taking any lock).
pub fn rotate_server_key_to_fresh(
    dir: &Path,
    fresh: RsaPrivateKey,
) -> Result<ServerKeys, StateError> {
    let keys = read_server_keys(dir)?.ok_or_else(|| StateError::Corrupt {
        path: dir.join(SERVER_KEY_FILE),
        reason: "no server key to rotate".into(),
    })?;
    if keys
        .previous
        .as_ref()
        .is_some_and(|p| p.public_key() != keys.current.public_key())
    {
        return Err(StateError::WindowOpen);
    }
    rotate_server_key_to(dir, keys, fresh)
}

fn rotate_server_key_to(
    dir: &Path,
    keys: ServerKeys,
    fresh: RsaPrivateKey,
) -> Result<ServerKeys, StateError> {
    write_key_pair(
        dir,
        &keys.current,
        PREVIOUS_KEY_FILE,
        PREVIOUS_PUBLIC_KEY_FILE,
    )?;
    write_key_pair(dir, &fresh, SERVER_KEY_FILE, SERVER_PUBLIC_KEY_FILE)?;
    Ok(ServerKeys {
        current: fresh,
        previous: Some(keys.current),
    })
}

/// Ends the migration window in `dir`: the previous key's files are removed (the private one first).
pub fn retire_server_key_in(dir: &Path) -> Result<ServerKeys, StateError> {
    let keys = read_server_keys(dir)?.ok_or_else(|| StateError::Corrupt {
        path: dir.join(SERVER_KEY_FILE),
        reason: "no server key".into(),
    })?;
    if keys.previous.is_none() {
        return Err(StateError::NoPreviousKey);
    }
    remove_if_present(&dir.join(PREVIOUS_KEY_FILE))?;
    remove_if_present(&dir.join(PREVIOUS_PUBLIC_KEY_FILE))?;
    Ok(ServerKeys {
        current: keys.current,
        previous: None,
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A stored access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// The SHA-256 of the 40-hex token ([`token_digest`]); the token itself is not stored.
    #[serde(rename = "token_sha256")]
    pub digest: String,
    /// The OAuth client that created it.
    pub client: String,
    /// Expiry in seconds since the Unix epoch (`None` = never).
    pub expires_at: Option<u64>,
    /// When it was issued, in seconds since the Unix epoch (`None`: issued before the cloud recorded it, which
    /// `tokens invalidate-before` treats as older than any date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
}

/// The file holding the cloud-wide token cut-off (`spark-cloud tokens invalidate-before`): seconds since the Unix
/// epoch, in decimal; tokens issued before it are refused.
pub const TOKENS_NOT_BEFORE_FILE: &str = "tokens_not_before";

/// Parses the token cut-off file (what the fuzz target `cloud_state_files` feeds).
pub fn parse_not_before(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number of seconds".into());
    }
    t.parse::<u64>().map_err(|e| e.to_string())
}

/// Parses a date for `tokens invalidate-before`: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` (UTC) or seconds since the
/// Unix epoch; returns seconds since the epoch.
pub fn parse_cutoff_date(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(secs) = parse_not_before(t) {
        return Ok(secs);
    }
    let bad = || format!("{t:?}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or seconds since 1970");
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, rest)) => (d, Some(rest.strip_suffix('Z').ok_or_else(bad)?)),
        None => (t, None),
    };
    let num = |s: &str, len: usize| -> Result<u64, String> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_len = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y < 1970 || !(1..=12).contains(&m) || d == 0 || d > month_len[(m - 1) as usize] {
        return Err(bad());
    }
    let mut days = (1970..y)
        .map(|yy| {
            if (yy % 4 == 0 && yy % 100 != 0) || yy % 400 == 0 {
                366
            } else {
                365
            }
        })
        .sum::<u64>();
    days += month_len[..(m - 1) as usize].iter().sum::<u64>() + d - 1;
    let mut secs = days * 86_400;
    if let Some(time) = time {
        let mut parts = time.split(':');
        let (Some(h), Some(mi), Some(se), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (h, mi, se) = (num(h, 2)?, num(mi, 2)?, num(se, 2)?);
        if h > 23 || mi > 59 || se > 59 {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + se;
    }
    Ok(secs)
}

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Random id (32 hex), used as `coreid` of the user's API publishes.
    pub id: String,
    /// Lower-cased user name.
    pub username: String,
    /// Hex salt.
    pub salt: String,
    /// Hex PBKDF2-HMAC-SHA256 of the password.
    pub password_hash: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The user's tokens.
    pub tokens: Vec<TokenRecord>,
}

/// A known device.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct DeviceRecord {
    /// 24-hex id (lower case).
    #[serde(skip)]
    pub id: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// The user name of its owner, if claimed.
    pub owner: Option<String>,
}

/// What one device file holds: the key and the owner together, so that no crash leaves a key without its owner.
#[derive(Serialize, Deserialize)]
struct DeviceFile {
    public_key: Option<String>,
    name: Option<String>,
    owner: Option<String>,
}

/// A password check prepared by [`StateDir::password_check`]: owned data, to be verified on any thread.
#[derive(Clone)]
pub struct PasswordCheck {
    username: Option<String>,
    salt: String,
    expected: Vec<u8>,
    iterations: u32,
}

impl core::fmt::Debug for PasswordCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PasswordCheck")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl PasswordCheck {
    /// A check against a stored salt and hash (hex); `None` as the user name: a dummy for an unknown user.
    pub(crate) fn new(
        username: Option<String>,
        salt: String,
        password_hash_hex: &str,
        iterations: u32,
    ) -> PasswordCheck {
        PasswordCheck {
            username,
            salt,
            expected: unhex(password_hash_hex).unwrap_or_else(|| vec![0; 32]),
            iterations,
        }
    }

    /// The check of a user who does not exist: costs the same as a real one and never succeeds.
    pub(crate) fn unknown() -> PasswordCheck {
        PasswordCheck {
            username: None,
            salt: "00000000000000000000000000000000".into(),
            expected: vec![0; 32],
            iterations: PASSWORD_ITERATIONS,
        }
    }

    /// Hashes `password` and compares in constant time; returns the canonical user name.
    pub fn verify(&self, password: &str) -> Result<String, AuthError> {
        // Iteration counts come from a file: bounded so a corrupt one cannot stall a thread for hours.
        let iterations = self.iterations.clamp(1, 10_000_000);
        let hash = pbkdf2_sha256(password.as_bytes(), self.salt.as_bytes(), iterations);
        let matches = constant_time_eq(&hash, &self.expected);
        match &self.username {
            Some(name) if matches => Ok(name.clone()),
            _ => Err(AuthError::BadCredentials),
        }
    }
}

/// A token that authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// The user's name.
    pub username: String,
    /// The user's id.
    pub user_id: String,
    /// The token's digest ([`token_digest`]).
    pub token_digest: String,
    /// When the token expires (`None` = never).
    pub expires_at: Option<SystemTime>,
    /// When it was issued, in seconds since the epoch (`None`: before the cloud recorded it).
    pub issued_at: Option<u64>,
}

/// The SHA-256 of a token, in hex: how a token is named without being revealed.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(token.as_bytes()))
}

/// Why a user or token operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Unknown user or wrong password.
    #[error("bad credentials")]
    BadCredentials,
    /// The token is unknown.
    #[error("invalid token")]
    InvalidToken,
    /// The token has expired.
    #[error("expired token")]
    ExpiredToken,
    /// The user already exists.
    #[error("user already exists")]
    UserExists,
    /// Name or password missing / invalid.
    #[error("{0}")]
    Invalid(&'static str),
    /// Persisting failed.
    #[error("storage failed")]
    Storage,
}

struct Inner {
    users: HashMap<String, UserRecord>,
    token_owner: HashMap<String, String>,
    devices: HashMap<String, DeviceRecord>,
    keys: HashMap<String, RsaPublicKey>,
    /// UDP devices' entries by id, and their ids by public key (uncompressed point).
    udp: std::collections::BTreeMap<String, UdpDeviceEntry>,
    udp_ids: HashMap<[u8; 65], String>,
    /// Lines in `udp_devices.journal` since `udp_devices.json` was last written whole.
    udp_journal_lines: std::sync::atomic::AtomicUsize,
}

impl Inner {
    /// The record of device `id`, or a new one owned by `owner` (provisioning a device the cloud does not know).
    fn device_or_new(&self, id: &str, owner: Option<&str>) -> DeviceRecord {
        self.devices
            .get(id)
            .cloned()
            .unwrap_or_else(|| DeviceRecord {
                id: id.to_owned(),
                name: None,
                owner: owner.map(str::to_owned),
            })
    }
}

/// A device id in lower case, as the maps hold it: copied only when it has an upper-case letter (the device
/// listener's ids never do).
pub(crate) fn lower_id(id: &str) -> std::borrow::Cow<'_, str> {
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        id.to_ascii_lowercase().into()
    } else {
        id.into()
    }
}

/// The state directory, loaded in memory and written through on each change.
pub struct StateDir {
    dir: PathBuf,
    server_keys: Mutex<ServerKeys>,
    /// The server's P-256 key of the UDP protocol.
    udp_server_key: spark_protocol::dtls::PrivateKey,
    /// Tokens issued before this (seconds since the epoch) are refused; 0: none.
    not_before: Mutex<u64>,
    inner: Mutex<Inner>,
    journal: Journal,
}

impl core::fmt::Debug for StateDir {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StateDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Whether `id` is a 24-hex device id.
pub fn is_device_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Creates a folder (and missing parents) with mode 0700 from the start.
fn create_private_dir(path: &Path) -> Result<(), StateError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(io(path))
}

/// Writes `bytes` to `path` through a new temporary file in the same folder (`tempfile`, created 0600, or 0644 for
/// a file that holds no secret), synced, then renamed over `path`: a crash leaves the old file or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), StateError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    #[cfg(unix)]
    if !private {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = builder.tempfile_in(folder).map_err(io(folder))?;
    let tmp = file.path().to_owned();
    file.write_all(bytes).map_err(io(&tmp))?;
    file.as_file().sync_all().map_err(io(&tmp))?;
    file.persist(path).map_err(|e| io(path)(e.error))?;
    Ok(())
}

fn corrupt(path: &Path, reason: impl ToString) -> StateError {
    StateError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Loads `core_keys/`: `<id>.json` records holding key and owner, and the old layout (`<id>.pub.pem` beside an
/// optional `<id>.json` of attributes), which is rewritten as one record before the `.pub.pem` is removed.
fn load_devices(keys_dir: &Path, inner: &mut Inner) -> Result<(), StateError> {
    let mut ids = std::collections::BTreeSet::new();
    for entry in fs::read_dir(keys_dir).map_err(io(keys_dir))? {
        let path = entry.map_err(io(keys_dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let id = name
            .strip_suffix(".pub.pem")
            .or_else(|| name.strip_suffix(".json"));
        if let Some(id) = id.filter(|id| is_device_id(id)) {
            ids.insert(id.to_owned());
        }
    }
    for id in ids {
        let json_path = keys_dir.join(format!("{id}.json"));
        let pem_path = keys_dir.join(format!("{id}.pub.pem"));
        let stored = match fs::read_to_string(&json_path) {
            Ok(text) => Some(parse_device_file(&text).map_err(|e| corrupt(&json_path, e))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&json_path)(e)),
        };
        let (name, owner, stored_key) = stored.unwrap_or((None, None, None));
        let (key, pem, migrate) = match stored_key {
            Some(key) => (key, String::new(), false),
            None => match fs::read_to_string(&pem_path) {
                Ok(pem) => (
                    RsaPublicKey::from_pem(&pem).map_err(|e| corrupt(&pem_path, e))?,
                    pem,
                    true,
                ),
                // Attributes without a key (a half-written old layout): not a device.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&pem_path)(e)),
            },
        };
        let lower = id.to_ascii_lowercase();
        let record = DeviceRecord {
            id: lower.clone(),
            name,
            owner,
        };
        if migrate {
            write_device_file(keys_dir, &record, &pem)?;
        }
        if migrate || pem_path.exists() {
            let _ = fs::remove_file(&pem_path);
        }
        inner.keys.insert(lower.clone(), key);
        inner.devices.insert(lower, record);
    }
    Ok(())
}

/// Loads the UDP devices' file, if present: their keys, and a record for each device `core_keys/` does not hold.
fn load_udp_devices(dir: &Path, inner: &mut Inner) -> Result<(), StateError> {
    let path = dir.join(udp_keys::UDP_DEVICES_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    for (id, key, entry) in udp_keys::parse_udp_devices(&text).map_err(|e| corrupt(&path, e))? {
        inner
            .devices
            .entry(id.clone())
            .or_insert_with(|| DeviceRecord {
                id: id.clone(),
                name: entry.name.clone(),
                owner: entry.owner.clone(),
            });
        inner.udp_ids.insert(key.to_point(), id.clone());
        inner.udp.insert(id, entry);
    }
    replay_udp_journal(dir, inner)
}

/// One line of `udp_devices.journal`: a device's whole entry as it now stands.
#[derive(serde::Serialize, serde::Deserialize)]
struct UdpJournalLine {
    id: String,
    entry: UdpDeviceEntry,
}

/// Applies `udp_devices.journal` over what `udp_devices.json` held. A last line cut short (a crash in the middle of
/// an append, before its fsync returned, so never acknowledged) is ignored; a bad line before it is corruption.
fn replay_udp_journal(dir: &Path, inner: &mut Inner) -> Result<(), StateError> {
    let path = dir.join(UDP_JOURNAL_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for (n, line) in lines.iter().enumerate() {
        let parsed = serde_json::from_str::<UdpJournalLine>(line)
            .map_err(|e| e.to_string())
            .and_then(|l| {
                if !is_device_id(&l.id) {
                    return Err(format!("{:?} is not a device id", l.id));
                }
                let key = udp_keys::public_key_from_pem(&l.entry.public_key)
                    .map_err(|e| e.to_string())?;
                Ok((l, key))
            });
        let (line, key) = match parsed {
            Ok(p) => p,
            Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(corrupt(&path, format!("line {}: {e}", n + 1))),
        };
        let id = line.id.to_ascii_lowercase();
        if let Some(old) = inner.udp.get(&id)
            && let Ok(old) = udp_keys::public_key_from_pem(&old.public_key)
        {
            inner.udp_ids.remove(&old.to_point());
        }
        // As in the file, a device with an RSA record (`core_keys/`) keeps that record's name and owner.
        let rsa = inner.keys.contains_key(&id);
        let record = inner
            .devices
            .entry(id.clone())
            .or_insert_with(|| DeviceRecord {
                id: id.clone(),
                name: None,
                owner: None,
            });
        if !rsa {
            record.name.clone_from(&line.entry.name);
            record.owner.clone_from(&line.entry.owner);
        }
        inner.udp_ids.insert(key.to_point(), id.clone());
        inner.udp.insert(id, line.entry);
        *inner.udp_journal_lines.get_mut() += 1;
    }
    Ok(())
}

/// The journal of UDP device changes beside [`udp_keys::UDP_DEVICES_FILE`].
const UDP_JOURNAL_FILE: &str = "udp_devices.journal";

/// Journal lines past which `udp_devices.json` is written whole again (and at least as many as it holds devices),
/// so that provisioning N devices writes O(N) bytes in all rather than rewriting the whole file for each.
const UDP_JOURNAL_COMPACT: usize = 1024;

/// Reads the server's UDP key, or makes one (with its public half beside it) on first start.
fn open_udp_server_key(
    dir: &Path,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<spark_protocol::dtls::PrivateKey, StateError> {
    let path = dir.join(udp_keys::SERVER_UDP_KEY_FILE);
    let key = match fs::read_to_string(&path) {
        Ok(text) => udp_keys::private_key_from_pem(&text).map_err(|e| corrupt(&path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = spark_protocol::dtls::PrivateKey::generate(rng);
            write_atomic(&path, udp_keys::private_key_pem(&key).as_bytes(), true)?;
            key
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let public = udp_keys::public_key_pem(&key.public_key());
    let pub_path = dir.join(udp_keys::SERVER_UDP_PUBLIC_KEY_FILE);
    if fs::read_to_string(&pub_path).ok().as_deref() != Some(public.as_str()) {
        write_atomic(&pub_path, public.as_bytes(), false)?;
    }
    Ok(key)
}

fn write_device_file(keys_dir: &Path, record: &DeviceRecord, pem: &str) -> Result<(), StateError> {
    let path = keys_dir.join(format!("{}.json", record.id));
    let file = DeviceFile {
        public_key: Some(pem.to_owned()),
        name: record.name.clone(),
        owner: record.owner.clone(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| corrupt(&path, e))?;
    write_atomic(&path, &json, true)
}

/// Reads a user file: the user, and whether it held plain tokens (now replaced by their digests). Refuses token
/// expiries past the year 9999.
pub(crate) fn parse_user_file(text: &str) -> Result<(UserRecord, bool), String> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let migrated = hash_plain_tokens(&mut value);
    let user: UserRecord = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if let Some(t) = user
        .tokens
        .iter()
        .find(|t| t.expires_at.is_some_and(|e| e > LATEST_EXPIRY))
    {
        return Err(format!(
            "a token expires at {} s, past the year 9999",
            t.expires_at.unwrap_or_default()
        ));
    }
    Ok((user, migrated))
}

/// A device file's name, owner and key (when the file holds one; the old layout kept it beside).
type DeviceFileParts = (Option<String>, Option<String>, Option<RsaPublicKey>);

/// Reads a device file.
pub(crate) fn parse_device_file(text: &str) -> Result<DeviceFileParts, String> {
    let file: DeviceFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let key = match &file.public_key {
        Some(pem) => Some(RsaPublicKey::from_pem(pem).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok((file.name, file.owner, key))
}

/// Replaces each plain `token` of a user file by its `token_sha256`; whether there was one.
fn hash_plain_tokens(user: &mut serde_json::Value) -> bool {
    let mut migrated = false;
    if let Some(tokens) = user.get_mut("tokens").and_then(|t| t.as_array_mut()) {
        for t in tokens {
            let Some(map) = t.as_object_mut() else {
                continue;
            };
            if let Some(serde_json::Value::String(plain)) = map.remove("token") {
                map.insert("token_sha256".into(), token_digest(&plain).into());
                migrated = true;
            }
        }
    }
    migrated
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl StateDir {
    /// Opens (creating when needed) the state in `dir`; a missing server key is generated with `key_bits` bits.
    pub fn open(
        dir: &Path,
        key_bits: usize,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<StateDir, StateError> {
        for sub in ["", "core_keys", "users"] {
            let p = dir.join(sub);
            create_private_dir(&p)?;
        }
        let server_keys = match read_server_keys(dir)? {
            Some(keys) => {
                write_public_key(dir, &keys.current, SERVER_PUBLIC_KEY_FILE)?;
                keys
            }
            None => {
                let current = RsaPrivateKey::generate(rng, key_bits)
                    .map_err(|e| StateError::KeyGeneration(e.to_string()))?;
                write_key_pair(dir, &current, SERVER_KEY_FILE, SERVER_PUBLIC_KEY_FILE)?;
                ServerKeys {
                    current,
                    previous: None,
                }
            }
        };

        let mut inner = Inner {
            users: HashMap::new(),
            token_owner: HashMap::new(),
            devices: HashMap::new(),
            keys: HashMap::new(),
            udp: std::collections::BTreeMap::new(),
            udp_ids: HashMap::new(),
            udp_journal_lines: std::sync::atomic::AtomicUsize::new(0),
        };
        let users_dir = dir.join("users");
        for entry in fs::read_dir(&users_dir).map_err(io(&users_dir))? {
            let path = entry.map_err(io(&users_dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(io(&path))?;
            let (user, migrated) = parse_user_file(&text).map_err(|e| corrupt(&path, e))?;
            for t in &user.tokens {
                inner
                    .token_owner
                    .insert(t.digest.clone(), user.username.clone());
            }
            if migrated {
                let json = serde_json::to_vec_pretty(&user).map_err(|e| corrupt(&path, e))?;
                write_atomic(&path, &json, true)?;
            }
            inner.users.insert(user.username.clone(), user);
        }
        let keys_dir = dir.join("core_keys");
        load_devices(&keys_dir, &mut inner)?;
        let (journal, replayed) = Journal::open(&keys_dir)?;
        for r in replayed {
            let key = RsaPublicKey::from_pem(&r.public_key)
                .map_err(|e| corrupt(&keys_dir.join("journal"), e))?;
            let id = r.id.to_ascii_lowercase();
            inner.keys.insert(id.clone(), key);
            inner.devices.insert(
                id.clone(),
                DeviceRecord {
                    id,
                    name: r.name,
                    owner: r.owner,
                },
            );
        }
        load_udp_devices(dir, &mut inner)?;
        let udp_server_key = open_udp_server_key(dir, rng)?;
        Ok(StateDir {
            dir: dir.to_owned(),
            server_keys: Mutex::new(server_keys),
            udp_server_key,
            not_before: Mutex::new(read_not_before(dir)?.unwrap_or(0)),
            inner: Mutex::new(inner),
            journal,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        super::lock(&self.inner)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The server's current private key (the one new devices are given).
    pub fn server_key(&self) -> RsaPrivateKey {
        super::lock(&self.server_keys).current.clone()
    }

    /// The server's key pairs: the current one, and the previous one during a migration window.
    pub fn server_keys(&self) -> ServerKeys {
        super::lock(&self.server_keys).clone()
    }

    /// Rotates the server key on disk and in memory (see [`rotate_server_key_in`]).
    pub fn rotate_server_key(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<ServerKeys, StateError> {
        let mut held = super::lock(&self.server_keys);
        let keys = rotate_server_key_in(&self.dir, rng)?;
        *held = keys.clone();
        Ok(keys)
    }

    /// As [`StateDir::rotate_server_key`] with the new key made by the caller.
    pub fn rotate_server_key_to(&self, fresh: RsaPrivateKey) -> Result<ServerKeys, StateError> {
        let mut held = super::lock(&self.server_keys);
        let keys = rotate_server_key_to_fresh(&self.dir, fresh)?;
        *held = keys.clone();
        Ok(keys)
    }

    /// Ends the migration window on disk and in memory (see [`retire_server_key_in`]).
    pub fn retire_server_key(&self) -> Result<ServerKeys, StateError> {
        let mut held = super::lock(&self.server_keys);
        let keys = retire_server_key_in(&self.dir)?;
        *held = keys.clone();
        Ok(keys)
    }

    /// Reads the key files again (after `spark-cloud keys rotate` / `retire` ran on this directory); on an error
    /// the keys held stay as they were.
    pub fn reload_server_keys(&self) -> Result<ServerKeys, StateError> {
        let keys = read_server_keys(&self.dir)?.ok_or_else(|| StateError::Corrupt {
            path: self.dir.join(SERVER_KEY_FILE),
            reason: "the server key is missing".into(),
        })?;
        *super::lock(&self.server_keys) = keys.clone();
        Ok(keys)
    }

    fn save_user(&self, user: &UserRecord) -> Result<(), AuthError> {
        let path = self
            .dir
            .join("users")
            .join(format!("{}.json", user.username));
        let json = serde_json::to_vec_pretty(user).map_err(|_| AuthError::Storage)?;
        write_atomic(&path, &json, true).map_err(|_| AuthError::Storage)
    }

    /// Creates a user. An existing name is refused (the original replaced the user and wiped its tokens).
    pub fn create_user(
        &self,
        username: &str,
        password: &str,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(), AuthError> {
        self.add_user(crate::store::new_user(username, password, rng)?)
    }

    /// Adds a user made by [`crate::store::new_user`]; an existing name is refused.
    pub fn add_user(&self, user: UserRecord) -> Result<(), AuthError> {
        let mut inner = self.lock();
        if inner.users.contains_key(&user.username) {
            return Err(AuthError::UserExists);
        }
        self.save_user(&user)?;
        inner.users.insert(user.username.clone(), user);
        Ok(())
    }

    /// Checks a user's password; returns the canonical user name. This hashes (tens of milliseconds): an async
    /// caller runs [`StateDir::password_check`] and [`PasswordCheck::verify`] on a blocking thread instead.
    pub fn check_password(&self, username: &str, password: &str) -> Result<String, AuthError> {
        self.password_check(username).verify(password)
    }

    /// What checking `username`'s password needs, taken under the lock without hashing. An unknown user gets a
    /// dummy salt and hash, so that checking costs the same whether the user exists or not.
    pub fn password_check(&self, username: &str) -> PasswordCheck {
        let username = username.trim().to_lowercase();
        let inner = self.lock();
        match inner.users.get(&username) {
            Some(user) => PasswordCheck::new(
                Some(username.clone()),
                user.salt.clone(),
                &user.password_hash,
                user.iterations,
            ),
            None => PasswordCheck::unknown(),
        }
    }

    /// Issues a token for `username` (already authenticated): returns the token, which is not stored, and its
    /// record.
    pub fn issue_token(
        &self,
        username: &str,
        client: &str,
        lifetime: Option<Duration>,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(String, TokenRecord), AuthError> {
        let (token, record) = crate::store::new_token(client, lifetime, rng)?;
        self.add_token(username, record.clone())?;
        Ok((token, record))
    }

    /// Stores a token made by [`crate::store::new_token`] for `username`, dropping that user's expired ones.
    pub fn add_token(&self, username: &str, record: TokenRecord) -> Result<(), AuthError> {
        let mut inner = self.lock();
        let user = inner
            .users
            .get_mut(username)
            .ok_or(AuthError::BadCredentials)?;
        let now = now_secs();
        user.tokens.retain(|t| t.expires_at.is_none_or(|e| e > now));
        user.tokens.push(record);
        let user = user.clone();
        self.save_user(&user)?;
        inner.token_owner.retain(|_, owner| owner != username);
        for t in &user.tokens {
            inner
                .token_owner
                .insert(t.digest.clone(), user.username.clone());
        }
        Ok(())
    }

    /// Resolves a token's digest (as [`StateDir::authenticate_token`] does the token).
    pub fn authenticate_digest(&self, digest: &str) -> Result<Authenticated, AuthError> {
        let inner = self.lock();
        let username = inner
            .token_owner
            .get(digest)
            .ok_or(AuthError::InvalidToken)?;
        let user = inner.users.get(username).ok_or(AuthError::InvalidToken)?;
        let record = user
            .tokens
            .iter()
            .find(|t| t.digest == digest)
            .ok_or(AuthError::InvalidToken)?;
        if record.expires_at.is_some_and(|e| e <= now_secs()) {
            return Err(AuthError::ExpiredToken);
        }
        if record.issued_at.unwrap_or(0) < *super::lock(&self.not_before) {
            return Err(AuthError::InvalidToken);
        }
        Ok(Authenticated {
            username: user.username.clone(),
            user_id: user.id.clone(),
            token_digest: digest.to_owned(),
            expires_at: record
                .expires_at
                .and_then(|e| UNIX_EPOCH.checked_add(Duration::from_secs(e))),
            issued_at: record.issued_at,
        })
    }

    /// Resolves a bearer token to (user name, user id).
    pub fn authenticate(&self, token: &str) -> Result<(String, String), AuthError> {
        self.authenticate_token(token)
            .map(|a| (a.username, a.user_id))
    }

    /// Resolves a bearer token to its user and expiry.
    pub fn authenticate_token(&self, token: &str) -> Result<Authenticated, AuthError> {
        self.authenticate_digest(&token_digest(token))
    }

    /// The cloud-wide token cut-off (seconds since the epoch; 0: none).
    pub fn tokens_not_before(&self) -> u64 {
        *super::lock(&self.not_before)
    }

    /// Refuses every token issued before `cutoff` (seconds since the epoch; a token with no issue time counts as
    /// older than any date): the cut-off is written to [`TOKENS_NOT_BEFORE_FILE`] (it only ever moves forward),
    /// and those tokens are deleted from their users. Returns the digests deleted.
    pub fn invalidate_tokens_before(&self, cutoff: u64) -> Result<Vec<String>, StateError> {
        let cutoff = {
            let mut held = super::lock(&self.not_before);
            let cutoff = cutoff.max(*held);
            write_atomic(
                &self.dir.join(TOKENS_NOT_BEFORE_FILE),
                format!("{cutoff}\n").as_bytes(),
                false,
            )?;
            *held = cutoff;
            cutoff
        };
        let mut inner = self.lock();
        let mut deleted = Vec::new();
        let mut changed = Vec::new();
        for user in inner.users.values_mut() {
            let before = deleted.len();
            user.tokens.retain(|t| {
                let old = t.issued_at.unwrap_or(0) < cutoff;
                if old {
                    deleted.push(t.digest.clone());
                }
                !old
            });
            if deleted.len() != before {
                changed.push(user.clone());
            }
        }
        for digest in &deleted {
            inner.token_owner.remove(digest);
        }
        drop(inner);
        for user in &changed {
            self.save_user(user).map_err(|_| StateError::Io {
                path: self.dir.join("users"),
                source: std::io::Error::other("cannot save a user file"),
            })?;
        }
        Ok(deleted)
    }

    /// Reads the token cut-off file again and applies it (what a running cloud does on `SIGHUP`).
    pub fn reload_tokens_not_before(&self) -> Result<Vec<String>, StateError> {
        match read_not_before(&self.dir)? {
            Some(cutoff) => self.invalidate_tokens_before(cutoff),
            None => Ok(Vec::new()),
        }
    }

    /// Deletes all of `username`'s tokens; returns how many there were.
    pub fn delete_all_tokens(&self, username: &str) -> Result<usize, AuthError> {
        let mut inner = self.lock();
        let Some(user) = inner.users.get_mut(username) else {
            return Ok(0);
        };
        let count = user.tokens.len();
        user.tokens.clear();
        let user = user.clone();
        self.save_user(&user)?;
        inner.token_owner.retain(|_, owner| owner != username);
        Ok(count)
    }

    /// Whether a user of that (lower-case) name exists.
    pub fn user_exists(&self, username: &str) -> bool {
        self.lock().users.contains_key(username)
    }

    /// A user's tokens.
    pub fn tokens(&self, username: &str) -> Vec<TokenRecord> {
        self.lock()
            .users
            .get(username)
            .map(|u| u.tokens.clone())
            .unwrap_or_default()
    }

    /// Deletes one of `username`'s tokens, named by the token or by its digest (as listed); `false` if it has no
    /// such token. Returns the digest of what was deleted through [`StateDir::delete_token_digest`].
    pub fn delete_token(&self, username: &str, token: &str) -> Result<bool, AuthError> {
        self.delete_token_digest(username, token)
            .map(|d| d.is_some())
    }

    /// As [`StateDir::delete_token`]; returns the digest of the deleted token.
    pub fn delete_token_digest(
        &self,
        username: &str,
        token: &str,
    ) -> Result<Option<String>, AuthError> {
        let mut inner = self.lock();
        let Some(user) = inner.users.get_mut(username) else {
            return Ok(None);
        };
        let hashed = token_digest(token);
        let Some(digest) = user
            .tokens
            .iter()
            .map(|t| &t.digest)
            .find(|d| **d == hashed || *d == token)
            .cloned()
        else {
            return Ok(None);
        };
        let before = user.tokens.len();
        user.tokens.retain(|t| t.digest != digest);
        if user.tokens.len() == before {
            return Ok(None);
        }
        let user = user.clone();
        self.save_user(&user)?;
        inner.token_owner.remove(&digest);
        Ok(Some(digest))
    }

    /// All known devices.
    pub fn devices(&self) -> Vec<DeviceRecord> {
        let mut all: Vec<_> = self.lock().devices.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// A device by id, or by name among the devices `owner` owns (another user's names are not looked at, so a
    /// name answers the same whether it is someone else's or no one's).
    pub fn find_device(&self, id_or_name: &str, owner: &str) -> Option<DeviceRecord> {
        let inner = self.lock();
        let lower = id_or_name.to_ascii_lowercase();
        if let Some(d) = inner.devices.get(&lower) {
            return Some(d.clone());
        }
        inner
            .devices
            .values()
            .find(|d| d.name.as_deref() == Some(id_or_name) && d.owner.as_deref() == Some(owner))
            .cloned()
    }

    /// A device by id.
    pub fn device(&self, id: &str) -> Option<DeviceRecord> {
        self.lock().devices.get(&id.to_ascii_lowercase()).cloned()
    }

    /// The owner of the device `id`, if it is known and claimed: its record's owner alone (asked for every event a
    /// device publishes), without copying the rest of the record or, for an id in lower case, the id.
    pub fn device_owner(&self, id: &str) -> Option<String> {
        self.lock()
            .devices
            .get(lower_id(id).as_ref())
            .and_then(|d| d.owner.clone())
    }

    /// Queues `record` (with its key) in the journal; `done` hears once it is durable.
    fn journal(&self, inner: &Inner, record: &DeviceRecord, done: Done) {
        // A UDP-only device has no RSA key for the journal: its record lives in the UDP file.
        if !inner.keys.contains_key(&record.id) && inner.udp.contains_key(&record.id) {
            let result = self
                .save_udp_devices(inner, Some(&record.id))
                .map_err(|e| io::Error::other(e.to_string()));
            match done {
                Done::Blocking(tx) => {
                    let _ = tx.send(result);
                }
                Done::Async(tx) => {
                    let _ = tx.send(result);
                }
            }
            return;
        }
        let keys_dir = self.dir.join("core_keys");
        let pem = inner
            .keys
            .get(&record.id)
            .ok_or_else(|| io::Error::other("a device without a key"))
            .and_then(|k| k.to_spki_pem().map_err(|e| io::Error::other(e.to_string())));
        match pem {
            Ok(public_key) => self.journal.append(
                JournalRecord {
                    id: record.id.clone(),
                    public_key,
                    name: record.name.clone(),
                    owner: record.owner.clone(),
                },
                done,
            ),
            Err(e) => {
                let _ = keys_dir;
                match done {
                    Done::Blocking(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    Done::Async(tx) => {
                        let _ = tx.send(Err(e));
                    }
                }
            }
        }
    }

    fn wait_blocking(
        &self,
        rx: &std::sync::mpsc::Receiver<io::Result<()>>,
    ) -> Result<(), StateError> {
        let journal = self.dir.join("core_keys").join("journal");
        match rx.recv() {
            Ok(result) => result.map_err(io(&journal)),
            Err(_) => Err(io(&journal)(io::Error::other(
                "the journal writer has stopped",
            ))),
        }
    }

    /// Updates a device's attributes with `f` and persists them (returns once they are durable).
    pub fn update_device<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut DeviceRecord) -> T,
    ) -> Result<Option<T>, StateError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let out = {
            let mut inner = self.lock();
            let Some(record) = inner.devices.get_mut(id) else {
                return Ok(None);
            };
            let out = f(record);
            let record = record.clone();
            self.journal(&inner, &record, Done::Blocking(tx));
            out
        };
        self.wait_blocking(&rx)?;
        Ok(Some(out))
    }

    fn provision_queued(
        &self,
        id: &str,
        key: &RsaPublicKey,
        owner: Option<&str>,
        owner_only: bool,
        done: Done,
    ) -> Result<DeviceRecord, StateError> {
        let id = id.to_ascii_lowercase();
        let mut inner = self.lock();
        if owner_only
            && inner
                .devices
                .get(&id)
                .is_some_and(|d| d.owner.as_deref() != owner)
        {
            return Err(StateError::Owned);
        }
        let record = inner.device_or_new(&id, owner);
        inner.keys.insert(id.clone(), key.clone());
        inner.devices.insert(id, record.clone());
        self.journal(&inner, &record, done);
        Ok(record)
    }

    /// Stores a device's public key (provisioning); the device becomes known at once. A new device is given
    /// `owner`; a known device keeps its owner and name. Key and owner are written as one record, atomically, and
    /// this returns once it is durable (see the [`journal`](crate::state) note in the module docs).
    ///
    /// Whether the caller may replace a known device's key is the caller's decision (the REST layer allows its
    /// owner only).
    pub fn provision(
        &self,
        id: &str,
        key: &RsaPublicKey,
        owner: Option<&str>,
    ) -> Result<DeviceRecord, StateError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let record = self.provision_queued(id, key, owner, false, Done::Blocking(tx))?;
        self.wait_blocking(&rx)?;
        Ok(record)
    }

    /// As [`StateDir::provision`], waiting without blocking the thread: provisions that arrive together share
    /// one `fsync`.
    pub async fn provision_durable(
        &self,
        id: &str,
        key: &RsaPublicKey,
        owner: Option<&str>,
    ) -> Result<DeviceRecord, StateError> {
        self.provision_durable_checked(id, key, owner, false).await
    }

    /// As [`StateDir::provision_durable`]; with `owner_only`, a known device whose owner is not `owner` is
    /// refused ([`StateError::Owned`]), decided under the same lock as the change.
    pub async fn provision_durable_checked(
        &self,
        id: &str,
        key: &RsaPublicKey,
        owner: Option<&str>,
        owner_only: bool,
    ) -> Result<DeviceRecord, StateError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let record = self.provision_queued(id, key, owner, owner_only, Done::Async(tx))?;
        let journal = self.dir.join("core_keys").join("journal");
        match rx.await {
            Ok(result) => result.map_err(io(&journal))?,
            Err(_) => {
                return Err(io(&journal)(io::Error::other(
                    "the journal writer has stopped",
                )));
            }
        }
        Ok(record)
    }

    /// A device's public key.
    pub fn device_key(&self, id: &str) -> Option<RsaPublicKey> {
        self.lock().keys.get(lower_id(id).as_ref()).cloned()
    }

    /// The server's P-256 key of the UDP protocol (`udp_key.pem`).
    pub fn udp_server_key(&self) -> &spark_protocol::dtls::PrivateKey {
        &self.udp_server_key
    }

    /// A device's UDP (P-256) public key.
    pub fn udp_device_key(&self, id: &str) -> Option<spark_protocol::dtls::PublicKey> {
        let inner = self.lock();
        let entry = inner.udp.get(&id.to_ascii_lowercase())?;
        udp_keys::public_key_from_pem(&entry.public_key).ok()
    }

    /// The device a UDP public key is registered to (what the DTLS handshake proved).
    pub fn device_for_udp_key(&self, key: &spark_protocol::dtls::PublicKey) -> Option<String> {
        self.lock().udp_ids.get(&key.to_point()).cloned()
    }

    /// Stores a device's UDP (P-256) public key; the device becomes known at once. A new device is given `owner`;
    /// a known device keeps its owner and name. Refused (`Conflict`) when the key is another device's. Returns once
    /// the file is written.
    pub fn provision_udp(
        &self,
        id: &str,
        key: &spark_protocol::dtls::PublicKey,
        owner: Option<&str>,
    ) -> Result<DeviceRecord, StateError> {
        self.provision_udp_checked(id, key, owner, false)
    }

    /// As [`StateDir::provision_udp`]; with `owner_only`, a known device whose owner is not `owner` is refused
    /// ([`StateError::Owned`]).
    pub fn provision_udp_checked(
        &self,
        id: &str,
        key: &spark_protocol::dtls::PublicKey,
        owner: Option<&str>,
        owner_only: bool,
    ) -> Result<DeviceRecord, StateError> {
        let id = id.to_ascii_lowercase();
        let mut inner = self.lock();
        if owner_only
            && inner
                .devices
                .get(&id)
                .is_some_and(|d| d.owner.as_deref() != owner)
        {
            return Err(StateError::Owned);
        }
        let point = key.to_point();
        if inner.udp_ids.get(&point).is_some_and(|other| *other != id) {
            return Err(StateError::KeyTaken);
        }
        let record = inner.device_or_new(&id, owner);
        if let Some(old) = inner.udp.get(&id)
            && let Ok(old) = udp_keys::public_key_from_pem(&old.public_key)
        {
            inner.udp_ids.remove(&old.to_point());
        }
        inner.udp.insert(
            id.clone(),
            UdpDeviceEntry {
                public_key: udp_keys::public_key_pem(key),
                name: record.name.clone(),
                owner: record.owner.clone(),
            },
        );
        inner.udp_ids.insert(point, id.clone());
        inner.devices.insert(id.clone(), record.clone());
        self.save_udp_devices(&inner, Some(&id))?;
        Ok(record)
    }

    /// Rewrites the UDP devices' file from `inner` (names and owners as the device records hold them now).
    /// Makes device `id`'s UDP entry durable: one line appended to the journal and synced, or, once the journal
    /// holds as many lines as the file holds devices (at least [`UDP_JOURNAL_COMPACT`]), when there is no file yet,
    /// or with no `id`, the whole file written again and the journal removed (replaying it over the new file would
    /// change nothing, so a crash between the two loses nothing).
    fn save_udp_devices(&self, inner: &Inner, id: Option<&str>) -> Result<(), StateError> {
        use std::sync::atomic::Ordering::Relaxed;
        let file = self.dir.join(udp_keys::UDP_DEVICES_FILE);
        let journal = self.dir.join(UDP_JOURNAL_FILE);
        let lines = inner.udp_journal_lines.load(Relaxed);
        let id = match id {
            Some(id) if lines < UDP_JOURNAL_COMPACT.max(inner.udp.len()) && file.exists() => id,
            _ => {
                let mut entries = inner.udp.clone();
                for (id, entry) in &mut entries {
                    if let Some(record) = inner.devices.get(id) {
                        entry.name.clone_from(&record.name);
                        entry.owner.clone_from(&record.owner);
                    }
                }
                write_atomic(&file, &udp_keys::render_udp_devices(&entries), true)?;
                match fs::remove_file(&journal) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&journal)(e)),
                }
                inner.udp_journal_lines.store(0, Relaxed);
                return Ok(());
            }
        };
        let Some(entry) = inner.udp.get(id) else {
            return Ok(());
        };
        let mut entry = entry.clone();
        if let Some(record) = inner.devices.get(id) {
            entry.name.clone_from(&record.name);
            entry.owner.clone_from(&record.owner);
        }
        let mut line = serde_json::to_vec(&UdpJournalLine {
            id: id.to_owned(),
            entry,
        })
        .map_err(|e| io(&journal)(io::Error::other(e)))?;
        line.push(b'\n');
        let mut options = fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&journal).map_err(io(&journal))?;
        f.write_all(&line).map_err(io(&journal))?;
        f.sync_data().map_err(io(&journal))?;
        inner.udp_journal_lines.fetch_add(1, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Provisioning a UDP device costs a line, not the whole file: the first writes the file, the next ones append
    /// to the journal; a reopened directory has them all, a last line cut short is ignored, a bad line before the
    /// last is refused, and a rewrite of the whole file empties the journal.
    #[test]
    fn udp_provisioning_appends_a_journal_line_per_device() {
        use spark_protocol::dtls::PrivateKey;
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rng();
        let state = StateDir::open(dir.path(), 1024, &mut rng).unwrap();
        let ids: Vec<String> = (0..4)
            .map(|n| format!("ee1d00000000000000000{n:03}"))
            .collect();
        let keys: Vec<_> = (0..4u8)
            .map(|n| {
                PrivateKey::from_scalar(&[0x40 + n; 32])
                    .unwrap()
                    .public_key()
            })
            .collect();
        for (id, key) in ids.iter().zip(&keys) {
            state.provision_udp(id, key, Some("ann")).unwrap();
        }
        let file = dir.path().join(udp_keys::UDP_DEVICES_FILE);
        let journal = dir.path().join(UDP_JOURNAL_FILE);
        let whole = udp_keys::parse_udp_devices(&fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(whole.len(), 1, "only the first device rewrote the file");
        let lines = fs::read_to_string(&journal).unwrap();
        assert_eq!(lines.lines().count(), 3);
        drop(state);
        let state = StateDir::open(dir.path(), 1024, &mut rng).unwrap();
        for (id, key) in ids.iter().zip(&keys) {
            assert_eq!(state.device_for_udp_key(key).as_deref(), Some(id.as_str()));
            assert_eq!(state.device(id).unwrap().owner.as_deref(), Some("ann"));
        }
        drop(state);
        // A crash in the middle of an append: the torn line was never acknowledged.
        fs::write(&journal, format!("{lines}{{\"id\":\"ee1d")).unwrap();
        let state = StateDir::open(dir.path(), 1024, &mut rng).unwrap();
        assert_eq!(
            state.device_for_udp_key(&keys[3]).as_deref(),
            Some(ids[3].as_str())
        );
        drop(state);
        fs::write(&journal, format!("garbage\n{lines}")).unwrap();
        assert!(matches!(
            StateDir::open(dir.path(), 1024, &mut rng),
            Err(StateError::Corrupt { .. })
        ));
        fs::write(&journal, &lines).unwrap();
        // A change with no journal line of its own (none today) rewrites the file and empties the journal.
        let state = StateDir::open(dir.path(), 1024, &mut rng).unwrap();
        state.save_udp_devices(&state.lock(), None).unwrap();
        assert!(!journal.exists());
        let whole = udp_keys::parse_udp_devices(&fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(whole.len(), 4);
    }

    #[test]
    fn cutoff_dates_parse_to_unix_seconds() {
        // 2014-04-08, the day after the Heartbleed disclosure: 16,168 days after 1970-01-01.
        assert_eq!(parse_cutoff_date("2014-04-08"), Ok(16_168 * 86_400));
        assert_eq!(
            parse_cutoff_date("2014-04-08T12:30:05Z"),
            Ok(16_168 * 86_400 + 12 * 3600 + 30 * 60 + 5)
        );
        assert_eq!(parse_cutoff_date("2000-02-29"), Ok(11_016 * 86_400));
        assert_eq!(parse_cutoff_date("1396915200"), Ok(1_396_915_200));
        assert_eq!(parse_cutoff_date("1970-01-01"), Ok(0));
        for bad in [
            "",
            "2014-4-8",
            "2014-02-30",
            "1900-02-29",
            "1969-12-31",
            "2014-04-08T12:30:05",
            "2014-04-08T24:00:00Z",
            "2014-13-01",
            "yesterday",
            "99999999999999999999999",
        ] {
            assert!(parse_cutoff_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cutoff_file_holds_only_decimal_seconds() {
        assert_eq!(parse_not_before("1396915200\n"), Ok(1_396_915_200));
        for bad in ["", "-1", "0x10", "1 2", "18446744073709551616"] {
            assert!(parse_not_before(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_and_retirement_on_disk_keep_a_usable_pair() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rng();
        let state = StateDir::open(dir.path(), 1024, &mut rng).unwrap();
        let first = state.server_key().public_key();
        assert!(matches!(
            state.retire_server_key(),
            Err(StateError::NoPreviousKey)
        ));
        let keys = state.rotate_server_key(&mut rng).unwrap();
        assert_eq!(
            keys.previous.as_ref().map(RsaPrivateKey::public_key),
            Some(first.clone())
        );
        assert_eq!(keys.current.bits(), 1024);
        assert!(matches!(
            state.rotate_server_key(&mut rng),
            Err(StateError::WindowOpen)
        ));
        let served = fs::read_to_string(dir.path().join(SERVER_PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(served, keys.current.public_key().to_spki_pem().unwrap());
        let kept = fs::read_to_string(dir.path().join(PREVIOUS_PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(kept, first.to_spki_pem().unwrap());
        // A crash between the two writes of a rotation leaves the same key in both files: still one usable key,
        // and the next rotation proceeds.
        fs::copy(
            dir.path().join(SERVER_KEY_FILE),
            dir.path().join(PREVIOUS_KEY_FILE),
        )
        .unwrap();
        assert!(state.rotate_server_key(&mut rng).is_ok());
        state.retire_server_key().unwrap();
        assert!(!dir.path().join(PREVIOUS_KEY_FILE).exists());
        assert!(!dir.path().join(PREVIOUS_PUBLIC_KEY_FILE).exists());
        assert!(state.reload_server_keys().unwrap().previous.is_none());
    }
}
