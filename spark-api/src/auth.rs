//! Access tokens, account credentials and OAuth clients: secrets that are zeroized on drop and never printed.
//!
//! Also reads a token a user already has: `PARTICLE_ACCESS_TOKEN`, the particle-cli profile
//! (`~/.particle/<profile>.config.json`, profile named in `~/.particle/profile.json`, default `particle`) and the
//! 2014 spark-cli file (`~/.spark/spark.config.json`).
//!
//! ```
//! use spark_api::auth::TokenSource;
//! use spark_api::{AccessToken, StoredToken};
//!
//! // A 2014 spark-cli configuration in a home directory.
//! let home = std::env::temp_dir().join(format!("spark-api-doc-{}", std::process::id()));
//! std::fs::create_dir_all(home.join(".spark"))?;
//! std::fs::write(
//!     home.join(".spark/spark.config.json"),
//!     r#"{"username":"me@example.com","access_token":"38bb7b318cc6898c80317decb34525844bc9db55"}"#,
//! )?;
//! let stored = StoredToken::discover_in(None, Some(&home))?;
//! assert_eq!(stored.source, TokenSource::File(home.join(".spark/spark.config.json")));
//! assert_eq!(stored.username.as_deref(), Some("me@example.com"));
//! // The environment wins over any file.
//! let env = StoredToken::discover_in(Some("0123abcd"), Some(&home))?;
//! assert_eq!((env.token.expose(), env.source), ("0123abcd", TokenSource::Environment));
//!
//! // Tokens never print.
//! let token = AccessToken::new("38bb7b318cc6898c80317decb34525844bc9db55");
//! assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
//! # std::fs::remove_dir_all(&home)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;

/// A secret string: zeroized when dropped, `[redacted]` in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }
    /// The secret itself. Call only to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

/// An OAuth2 bearer access token (40 hex characters on the Spark and Particle clouds).
///
/// It is only ever sent in the `Authorization: Bearer` header, never in a query string or a form body.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct AccessToken(Secret);

impl AccessToken {
    /// Wrap a token.
    pub fn new(token: impl Into<String>) -> AccessToken {
        AccessToken(Secret::new(token))
    }
    /// The token itself. Call only to send it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl From<&str> for AccessToken {
    fn from(value: &str) -> AccessToken {
        AccessToken::new(value)
    }
}

impl From<String> for AccessToken {
    fn from(value: String) -> AccessToken {
        AccessToken::new(value)
    }
}

/// An account's user name (e-mail) and password, for the password grant and the HTTP-Basic token endpoints.
#[derive(Clone)]
pub struct Credentials {
    /// The user name (the account e-mail).
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl Credentials {
    /// Credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// The OAuth client a login is made for, sent as `client_id`/`client_secret` in the form body (as both CLIs do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    /// The client id.
    pub id: String,
    /// The client secret.
    pub secret: Secret,
}

impl OAuthClient {
    /// The Spark CLI's client (`CLI2` / `client_secret_here`), the default.
    pub fn spark_cli() -> OAuthClient {
        OAuthClient::new("CLI2", "client_secret_here")
    }
    /// The client of the 2014 API documentation (`spark` / `spark`; "any client ID will work").
    pub fn spark_docs() -> OAuthClient {
        OAuthClient::new("spark", "spark")
    }
    /// The client of today's documentation for single developers (`particle` / `particle`).
    pub fn particle() -> OAuthClient {
        OAuthClient::new("particle", "particle")
    }
    /// Any client.
    pub fn new(id: impl Into<String>, secret: impl Into<Secret>) -> OAuthClient {
        OAuthClient {
            id: id.into(),
            secret: secret.into(),
        }
    }
}

impl Default for OAuthClient {
    fn default() -> OAuthClient {
        OAuthClient::spark_cli()
    }
}

/// How long a new token should live (`expires_in` / `expires_at` of `POST /oauth/token`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenLifetime {
    /// The cloud's default (90 days).
    #[default]
    Default,
    /// This many seconds.
    Seconds(u64),
    /// Never expires (`expires_in=0`).
    Never,
    /// Until this ISO-8601 date (`expires_at`).
    Until(String),
}

/// A token granted by `POST /oauth/token`.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    /// The access token.
    pub access_token: AccessToken,
    /// `bearer`.
    pub token_type: String,
    /// Seconds of validity from `obtained_at`; `None` or `Some(0)` means no expiry was announced.
    pub expires_in: Option<u64>,
    /// A refresh token (today's cloud).
    pub refresh_token: Option<Secret>,
    /// When the answer was received (the clock of the caller's machine).
    pub obtained_at: SystemTime,
}

#[derive(Deserialize)]
pub(crate) struct TokenGrantWire {
    access_token: AccessToken,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<Secret>,
}

impl TokenGrantWire {
    pub(crate) fn into_grant(self, obtained_at: SystemTime) -> TokenGrant {
        TokenGrant {
            access_token: self.access_token,
            token_type: self.token_type.unwrap_or_else(|| "bearer".to_owned()),
            expires_in: self.expires_in,
            refresh_token: self.refresh_token,
            obtained_at,
        }
    }
}

impl TokenGrant {
    /// When the token expires, if it does.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match self.expires_in {
            None | Some(0) => None,
            Some(seconds) => self.obtained_at.checked_add(Duration::from_secs(seconds)),
        }
    }
    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }
}

/// A token as listed by `GET /v1/access_tokens` (the 2014 shape, or the local cloud's stored object).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AccessTokenInfo {
    /// The token.
    pub token: AccessToken,
    /// When it expires (ISO-8601), `None` if never or not sent.
    #[serde(default, alias = "expires")]
    pub expires_at: Option<String>,
    /// The OAuth client it was issued to.
    #[serde(default, alias = "client_id")]
    pub client: Option<String>,
}

/// Where a stored token was found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// The `PARTICLE_ACCESS_TOKEN` environment variable.
    Environment,
    /// A CLI configuration file.
    File(PathBuf),
}

/// A token a user already has, with the API URL the same configuration names (if any).
#[derive(Clone, Debug)]
pub struct StoredToken {
    /// The token.
    pub token: AccessToken,
    /// Where it came from.
    pub source: TokenSource,
    /// The `apiUrl` of the configuration file, if set (a local cloud, for instance).
    pub api_url: Option<String>,
    /// The account name, if the file has one.
    pub username: Option<String>,
}

#[derive(Deserialize)]
struct CliConfig {
    #[serde(default)]
    access_token: Option<AccessToken>,
    #[serde(default, rename = "apiUrl")]
    api_url: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct CliProfile {
    #[serde(default)]
    name: Option<String>,
}

impl StoredToken {
    /// Look in `PARTICLE_ACCESS_TOKEN`, then the particle-cli profile, then the spark-cli file, under the home
    /// directory (`HOME`, or `USERPROFILE` on Windows).
    pub fn discover() -> Result<StoredToken, Error> {
        let env = std::env::var("PARTICLE_ACCESS_TOKEN").ok();
        let home = std::env::var_os("HOME")
            .or_else(|| std::env::var_os("USERPROFILE"))
            .map(PathBuf::from);
        Self::discover_in(env.as_deref(), home.as_deref())
    }

    /// [`StoredToken::discover`] with the environment value and the home directory given, for tools and tests.
    pub fn discover_in(env_token: Option<&str>, home: Option<&Path>) -> Result<StoredToken, Error> {
        if let Some(token) = env_token.map(str::trim).filter(|t| !t.is_empty()) {
            return Ok(StoredToken {
                token: AccessToken::new(token),
                source: TokenSource::Environment,
                api_url: None,
                username: None,
            });
        }
        let Some(home) = home else {
            return Err(Error::NoStoredToken);
        };
        let particle = home.join(".particle");
        let profile = match read_optional(&particle.join("profile.json"))? {
            Some(bytes) => serde_json::from_slice::<CliProfile>(&bytes)
                .map_err(|e| Error::ConfigFile {
                    path: particle.join("profile.json"),
                    detail: e.to_string(),
                })?
                .name
                .filter(|n| is_safe_profile_name(n))
                .unwrap_or_else(|| "particle".to_owned()),
            None => "particle".to_owned(),
        };
        let candidates = [
            particle.join(format!("{profile}.config.json")),
            home.join(".spark").join("spark.config.json"),
        ];
        for path in candidates {
            let Some(bytes) = read_optional(&path)? else {
                continue;
            };
            let config: CliConfig =
                serde_json::from_slice(&bytes).map_err(|e| Error::ConfigFile {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            if let Some(token) = config.access_token.filter(|t| !t.expose().is_empty()) {
                return Ok(StoredToken {
                    token,
                    source: TokenSource::File(path),
                    api_url: config.api_url,
                    username: config.username,
                });
            }
        }
        Err(Error::NoStoredToken)
    }
}

fn is_safe_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn read_optional(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::ConfigFile {
            path: path.to_owned(),
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let token = AccessToken::new("38bb7b318cc6898c80317decb34525844bc9db55");
        assert!(!format!("{token:?}").contains("38bb"));
        let creds = Credentials::new("joe@example.com", "SuperSecret");
        let shown = format!("{creds:?}");
        assert!(shown.contains("joe@example.com") && !shown.contains("SuperSecret"));
        assert!(!format!("{:?}", OAuthClient::default()).contains("client_secret_here"));
    }

    #[test]
    fn grant_expiry() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let wire: TokenGrantWire = serde_json::from_str(
            r#"{"access_token":"254406f79c1999af65a7df4388971354f85cfee9","token_type":"bearer","expires_in":7776000}"#,
        )
        .unwrap();
        let grant = wire.into_grant(at);
        assert_eq!(
            grant.expires_at(),
            Some(at + Duration::from_secs(7_776_000))
        );
        assert!(!grant.is_expired(at));
        assert!(grant.is_expired(at + Duration::from_secs(7_776_000)));
        let never: TokenGrantWire =
            serde_json::from_str(r#"{"access_token":"a","expires_in":0}"#).unwrap();
        assert!(
            !never
                .into_grant(at)
                .is_expired(SystemTime::now() + Duration::from_secs(1 << 40))
        );
    }

    #[test]
    fn token_list_shapes() {
        let list: Vec<AccessTokenInfo> = serde_json::from_str(
            r#"[{"token":"b5b9","expires_at":"2014-04-27T02:20:36.177Z","client":"spark"},
                {"user_id":"u","client_id":"CLI2","token":"ba54","expires":"2014-04-27","_id":"x"}]"#,
        )
        .unwrap();
        assert_eq!(list[0].client.as_deref(), Some("spark"));
        assert_eq!(list[1].client.as_deref(), Some("CLI2"));
        assert_eq!(list[1].expires_at.as_deref(), Some("2014-04-27"));
        assert_eq!(list[1].token.expose(), "ba54");
    }

    fn temp_home(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("spark-api-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn discovery_order() {
        let home = temp_home("order");
        assert!(matches!(
            StoredToken::discover_in(None, Some(&home)),
            Err(Error::NoStoredToken)
        ));
        std::fs::create_dir_all(home.join(".spark")).unwrap();
        std::fs::write(
            home.join(".spark/spark.config.json"),
            r#"{"access_token":"spark-token","apiUrl":"http://127.0.0.1:8080"}"#,
        )
        .unwrap();
        let found = StoredToken::discover_in(None, Some(&home)).unwrap();
        assert_eq!(found.token.expose(), "spark-token");
        assert_eq!(found.api_url.as_deref(), Some("http://127.0.0.1:8080"));
        std::fs::create_dir_all(home.join(".particle")).unwrap();
        std::fs::write(home.join(".particle/profile.json"), r#"{"name":"staging"}"#).unwrap();
        std::fs::write(
            home.join(".particle/staging.config.json"),
            r#"{"access_token":"particle-token","username":"joe"}"#,
        )
        .unwrap();
        let found = StoredToken::discover_in(None, Some(&home)).unwrap();
        assert_eq!(found.token.expose(), "particle-token");
        assert_eq!(found.username.as_deref(), Some("joe"));
        assert_eq!(
            found.source,
            TokenSource::File(home.join(".particle/staging.config.json"))
        );
        let found = StoredToken::discover_in(Some(" env-token "), Some(&home)).unwrap();
        assert_eq!(
            (found.token.expose(), found.source),
            ("env-token", TokenSource::Environment)
        );
        std::fs::write(home.join(".particle/staging.config.json"), "{not json").unwrap();
        assert!(matches!(
            StoredToken::discover_in(None, Some(&home)),
            Err(Error::ConfigFile { .. })
        ));
        let _ = std::fs::remove_dir_all(&home);
    }
}
