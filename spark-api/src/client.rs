//! The [`Client`], its builder, and the request machinery: auth header, timeouts, retries, error mapping, decoding.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::{AccessToken, Credentials, OAuthClient};
use crate::error::{ApiError, Error, ErrorBody, strip_query};

/// The current cloud.
pub const PARTICLE_API_URL: &str = "https://api.particle.io";
/// The 2014 Spark cloud.
pub const SPARK_API_URL: &str = "https://api.spark.io";

/// Retries of idempotent requests (GET, DELETE, and PUTs that only set a value).
///
/// A request is retried after a connection error, a 5xx status or a 429; after a 429 the server's `Retry-After`
/// (in seconds, capped at `max_retry_after`) is honoured, otherwise the delay doubles from `initial_backoff` up to
/// `max_backoff`. Function calls, publishes, logins and flashes are never retried: they are not idempotent.
///
/// ```
/// use spark_api::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::default();
/// let delays: Vec<Duration> = (0..6).map(|attempt| policy.backoff(attempt)).collect();
/// assert_eq!(delays[..3], [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)]);
/// assert_eq!(delays[5], Duration::from_secs(10)); // capped at max_backoff
/// assert_eq!(RetryPolicy::none().max_retries, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// The first delay.
    pub initial_backoff: Duration,
    /// The longest computed delay.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one fails the request with the 429.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The delay before retry number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// How an event stream reconnects after a disconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The first delay (particle-api-js waits 2 s).
    pub initial_delay: Duration,
    /// The longest delay; the delay doubles up to it while attempts keep failing.
    pub max_delay: Duration,
    /// Give up after this many consecutive failed attempts (`None`: never give up).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before reconnect attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX);
        self.initial_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Whose devices and events the routes address: the token's own account, a product or an organization.
///
/// Not to be confused with an event subscription's scope (all, mine, one device), which is
/// `spark_protocol::session::Scope` on the device protocol and the choice of `subscribe_*` call here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Owner {
    /// The token's own account: `/v1/devices`, `/v1/events`.
    #[default]
    User,
    /// A product: `/v1/products/:product/devices`, `/v1/products/:product/events`.
    Product(String),
    /// An organization: `/v1/orgs/:org/events` (organizations have no device routes).
    Org(String),
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) event_idle_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) oauth_client: OAuthClient,
    pub(crate) max_response_bytes: usize,
}

/// An async client for the Spark/Particle Cloud REST API.
///
/// Cheap to clone (an `Arc` and the token); clones share the connection pool. Build one with [`Client::builder`].
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    pub(crate) token: Option<AccessToken>,
    pub(crate) owner: Owner,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base)
            .field("token", &self.token)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<AccessToken>,
    user_agent: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    event_idle_timeout: Duration,
    retry: RetryPolicy,
    reconnect: ReconnectPolicy,
    oauth_client: OAuthClient,
    allow_insecure_http: bool,
    proxy: ProxySetting,
    owner: Owner,
    pool_idle_timeout: Option<Duration>,
    max_response_bytes: usize,
}

/// The largest response body a client reads by default (32 MiB): a device list of tens of thousands of devices
/// fits, and a cloud sending more ends the call with [`Error::ResponseTooLarge`] instead of the memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// The largest error body read (64 KiB); a longer one ends the call with [`Error::ResponseTooLarge`].
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Reads a response body of at most `limit` bytes: a `Content-Length` over it is refused before anything is read,
/// and the reading stops as soon as the body passes it.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Bytes, Error> {
    let too_large = || Error::ResponseTooLarge {
        url: strip_query(url),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::from_reqwest(url, e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[derive(Debug)]
enum ProxySetting {
    Environment,
    None,
    Url(String),
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            base_url: PARTICLE_API_URL.to_owned(),
            token: None,
            user_agent: concat!("spark-api/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(60),
            event_idle_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            reconnect: ReconnectPolicy::default(),
            oauth_client: OAuthClient::default(),
            allow_insecure_http: false,
            proxy: ProxySetting::Environment,
            owner: Owner::User,
            pool_idle_timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl ClientBuilder {
    /// The largest response body the client reads (default [`DEFAULT_MAX_RESPONSE_BYTES`]); past it a call ends
    /// with [`Error::ResponseTooLarge`].
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The API root (default [`PARTICLE_API_URL`]; [`SPARK_API_URL`] or a local cloud such as
    /// `http://127.0.0.1:8080` are other choices). A trailing `/` is ignored.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }
    /// The access token sent as `Authorization: Bearer`.
    pub fn access_token(mut self, token: impl Into<AccessToken>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// The `User-Agent` header (default `spark-api/<version>`).
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }
    /// How long connecting (TCP and TLS) may take (default 15 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// How long one request may take from sending to the last body byte (default 60 s; a function call waits up
    /// to 30 s for the device on the cloud side). Event streams are not bound by it.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
    /// How long an event stream may stay silent before it is considered dead and reconnected (default 30 s; the
    /// local cloud sends a keep-alive after 9 s of silence).
    pub fn event_idle_timeout(mut self, timeout: Duration) -> Self {
        self.event_idle_timeout = timeout;
        self
    }
    /// The retry policy for idempotent requests.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// The reconnect policy of event streams.
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }
    /// The OAuth client used by [`Client::login`] (default [`OAuthClient::spark_cli`]).
    pub fn oauth_client(mut self, client: OAuthClient) -> Self {
        self.oauth_client = client;
        self
    }
    /// Allow plain `http://` to a host that is not a loopback address. Off by default: the token would travel in
    /// clear text. `http://` to `localhost`, `127.0.0.0/8` and `::1` is always allowed.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }
    /// Use no proxy, even if `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` are set (they are honoured by default, with
    /// `NO_PROXY`; loopback base URLs never use a proxy).
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::None;
        self
    }
    /// Send every request through this proxy URL (`http://`, `https://`).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxySetting::Url(url.into());
        self
    }
    /// Whose devices and events the client addresses at first (see [`Client::for_owner`]).
    pub fn owner(mut self, owner: Owner) -> Self {
        self.owner = owner;
        self
    }
    /// How long an idle pooled connection is kept (default: the HTTP stack's, 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = Some(timeout);
        self
    }

    /// Check the settings and build the client.
    pub fn build(self) -> Result<Client, Error> {
        let base = self.base_url.trim_end_matches('/').to_owned();
        let url =
            reqwest::Url::parse(&base).map_err(|e| Error::invalid("base URL", e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::invalid(
                "base URL",
                "must not have a query or fragment",
            ));
        }
        let loopback = is_loopback(&url);
        match url.scheme() {
            "https" => {}
            "http" if loopback || self.allow_insecure_http => {}
            "http" => {
                return Err(Error::invalid(
                    "base URL",
                    format!(
                        "plain http to {} would send the token in clear text; use https, a loopback address, \
                         or allow_insecure_http(true)",
                        url.host_str().unwrap_or("?")
                    ),
                ));
            }
            other => {
                return Err(Error::invalid(
                    "base URL",
                    format!("unsupported scheme {other}"),
                ));
            }
        }
        let agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|_| Error::invalid("user agent", "not a valid header value"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let mut http = reqwest::Client::builder()
            .user_agent(agent)
            .default_headers(headers)
            .connect_timeout(self.connect_timeout)
            .tls_backend_preconfigured(tls_config()?)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(idle) = self.pool_idle_timeout {
            http = http.pool_idle_timeout(idle);
        }
        if !self.allow_insecure_http {
            // Only a loopback base may be plain http; never follow anything else over it.
            http = http.https_only(!loopback);
        }
        http = match self.proxy {
            ProxySetting::None => http.no_proxy(),
            ProxySetting::Environment if loopback => http.no_proxy(),
            ProxySetting::Environment => http,
            ProxySetting::Url(proxy) => http.proxy(
                reqwest::Proxy::all(&proxy)
                    .map_err(|e| Error::invalid("proxy URL", e.to_string()))?,
            ),
        };
        let http = http
            .build()
            .map_err(|e| Error::invalid("HTTP client settings", e.to_string()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                request_timeout: self.request_timeout,
                connect_timeout: self.connect_timeout,
                event_idle_timeout: self.event_idle_timeout,
                retry: self.retry,
                reconnect: self.reconnect,
                oauth_client: self.oauth_client,
                max_response_bytes: self.max_response_bytes,
            }),
            token: self.token,
            owner: self.owner,
        })
    }
}

fn tls_config() -> Result<rustls::ClientConfig, Error> {
    // rustls 0.23.48 deprecates ring's provider for its lack of post-quantum key exchange. It stays: the
    // alternative (aws-lc-rs) needs a C toolchain and CMake to build, and the process-wide default provider that
    // `ClientConfig::builder()` would take panics when a program's dependencies enable both. The key exchange is
    // X25519 or the NIST curves, as with every TLS 1.2/1.3 client without ML-KEM.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| Error::invalid("TLS settings", e.to_string()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS settings", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some(host) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Percent-encode one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request body.
pub(crate) enum Body {
    None,
    Form(String),
    Json(Vec<u8>),
    Multipart { boundary: String, bytes: Vec<u8> },
}

/// How the request authenticates.
pub(crate) enum Auth<'a> {
    /// The client's bearer token (required).
    Bearer,
    /// HTTP Basic with account credentials (the 2014 token endpoints).
    Basic(&'a Credentials),
    /// None (login, which carries the client credentials in the form).
    None,
}

/// One request.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Body,
    pub(crate) auth: Auth<'a>,
    pub(crate) idempotent: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, path: String) -> Call<'a> {
        let idempotent = matches!(method, Method::GET | Method::DELETE | Method::HEAD);
        Call {
            method,
            path,
            query: Vec::new(),
            body: Body::None,
            auth: Auth::Bearer,
            idempotent,
        }
    }
    pub(crate) fn form<T: serde::Serialize>(mut self, form: &T) -> Result<Self, Error> {
        let encoded = serde_urlencoded::to_string(form)
            .map_err(|e| Error::invalid("form parameters", e.to_string()))?;
        self.body = Body::Form(encoded);
        Ok(self)
    }
    pub(crate) fn json<T: serde::Serialize>(mut self, value: &T) -> Result<Self, Error> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| Error::invalid("JSON body", e.to_string()))?;
        self.body = Body::Json(bytes);
        Ok(self)
    }
    pub(crate) fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
    pub(crate) fn auth(mut self, auth: Auth<'a>) -> Self {
        self.auth = auth;
        self
    }
}

/// A successful response, body read.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) url: String,
    pub(crate) method: Method,
    pub(crate) bytes: Bytes,
}

impl Client {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client for the current cloud with a token found by [`crate::StoredToken::discover`] (using the file's
    /// `apiUrl`, if it names one).
    pub fn from_stored_token() -> Result<Client, Error> {
        let stored = crate::auth::StoredToken::discover()?;
        let mut builder = Client::builder().access_token(stored.token);
        if let Some(url) = stored.api_url {
            builder = builder.base_url(url);
        }
        builder.build()
    }

    /// The API root in use.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The same client with another token (sharing the connection pool).
    pub fn with_token(&self, token: impl Into<AccessToken>) -> Client {
        Client {
            inner: self.inner.clone(),
            token: Some(token.into()),
            owner: self.owner.clone(),
        }
    }

    /// The same client addressing a product's or organization's devices and events.
    pub fn for_owner(&self, owner: Owner) -> Client {
        Client {
            inner: self.inner.clone(),
            token: self.token.clone(),
            owner,
        }
    }

    /// Whose devices and events the client addresses.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The token in use, if any.
    pub fn access_token(&self) -> Option<&AccessToken> {
        self.token.as_ref()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        let mut url = String::with_capacity(self.inner.base.len() + path.len());
        url.push_str(&self.inner.base);
        url.push_str(path);
        url
    }

    pub(crate) fn request(
        &self,
        call: &Call<'_>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let mut url = self.url(&call.path);
        if !call.query.is_empty() {
            let query = serde_urlencoded::to_string(&call.query)
                .map_err(|e| Error::invalid("query", e.to_string()))?;
            url.push('?');
            url.push_str(&query);
        }
        let mut request = self.inner.http.request(call.method.clone(), &url);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        match &call.auth {
            Auth::Bearer => {
                let token = self.token.as_ref().ok_or(Error::NoToken)?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| Error::invalid("access token", "not a valid header value"))?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            Auth::Basic(credentials) => {
                request =
                    request.basic_auth(&credentials.username, Some(credentials.password.expose()));
            }
            Auth::None => {}
        }
        request = match &call.body {
            Body::None => request,
            Body::Form(form) => request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone()),
            Body::Json(json) => request
                .header(CONTENT_TYPE, "application/json")
                .body(json.clone()),
            Body::Multipart { boundary, bytes } => request
                .header(
                    CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(bytes.clone()),
        };
        Ok(request)
    }

    /// Send a request, retrying as the policy allows, and return a 2xx reply with its body; map anything else to
    /// an [`Error`].
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Reply, Error> {
        let url = self.url(&call.path);
        let policy = &self.inner.retry;
        let mut attempt: u32 = 0;
        loop {
            let request = self.request(&call, Some(self.inner.request_timeout))?;
            let can_retry = call.idempotent && attempt < policy.max_retries;
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) if can_retry && e.is_connect() && !e.is_timeout() => {
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(Error::from_reqwest(&url, e)),
            };
            let status = response.status();
            let retry_after = parse_retry_after(response.headers());
            let limit = if status.is_success() {
                self.inner.max_response_bytes
            } else {
                MAX_ERROR_BODY_BYTES.min(self.inner.max_response_bytes)
            };
            let bytes = read_capped(response, limit, &url).await?;
            if status.is_success() {
                return Ok(Reply {
                    status,
                    url,
                    method: call.method,
                    bytes,
                });
            }
            if can_retry && (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                let delay = match retry_after {
                    Some(after) if after <= policy.max_retry_after => Some(after),
                    Some(_) => None,
                    None => Some(policy.backoff(attempt)),
                };
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    continue;
                }
            }
            return Err(Error::Api(Box::new(ApiError {
                status: status.as_u16(),
                method: call.method.to_string(),
                url: strip_query(&url),
                body: ErrorBody::parse(&bytes),
                retry_after,
            })));
        }
    }

    /// [`Client::execute`] then decode the JSON body into `T`, turning a 2xx `"ok": false` body into an error.
    pub(crate) async fn call_json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        let reply = self.execute(call).await?;
        decode(&reply)
    }
}

/// Decode a 2xx reply. A body that reports a failure (`"ok": false`, or a lone `error`) becomes [`Error::Api`]; an
/// empty body decodes as `{}`.
pub(crate) fn decode<T: DeserializeOwned>(reply: &Reply) -> Result<T, Error> {
    let value: Value = if reply.bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&reply.bytes).map_err(|e| Error::Decode {
            url: strip_query(&reply.url),
            status: reply.status.as_u16(),
            path: ".".to_owned(),
            message: e.to_string(),
        })?
    };
    decode_value(reply, value)
}

/// Decode an already parsed 2xx body (see [`decode`]).
pub(crate) fn decode_value<T: DeserializeOwned>(reply: &Reply, value: Value) -> Result<T, Error> {
    if reports_failure(&value) {
        return Err(Error::Api(Box::new(ApiError {
            status: reply.status.as_u16(),
            method: reply.method.to_string(),
            url: strip_query(&reply.url),
            body: ErrorBody::from_value(value),
            retry_after: None,
        })));
    }
    serde_path_to_error::deserialize(value).map_err(|e| Error::Decode {
        url: strip_query(&reply.url),
        status: reply.status.as_u16(),
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

fn reports_failure(value: &Value) -> bool {
    let Value::Object(map) = value else {
        return false;
    };
    match map.get("ok") {
        Some(Value::Bool(false)) => true,
        Some(Value::Bool(true)) => false,
        _ => map.get("error").is_some_and(Value::is_string) && !map.contains_key("id"),
    }
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_for_loopback_or_opt_in() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:1",
            "http://127.3.2.1",
            "https://api.spark.io",
        ] {
            assert!(Client::builder().base_url(ok).build().is_ok(), "{ok}");
        }
        let err = Client::builder()
            .base_url("http://api.spark.io")
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidInput {
                what: "base URL",
                ..
            }
        ));
        assert!(
            Client::builder()
                .base_url("http://192.168.1.10:8080")
                .allow_insecure_http(true)
                .build()
                .is_ok()
        );
        assert!(Client::builder().base_url("ftp://x").build().is_err());
        assert!(Client::builder().base_url("not a url").build().is_err());
        assert!(
            Client::builder()
                .base_url("https://h/?q=1")
                .build()
                .is_err()
        );
    }

    #[test]
    fn trailing_slash_and_debug_redaction() {
        let client = Client::builder()
            .base_url("http://127.0.0.1:9/")
            .access_token("38bb7b318cc6898c80317decb34525844bc9db55")
            .build()
            .unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:9");
        assert!(!format!("{client:?}").contains("38bb"));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("core 1/é?"), "core%201%2F%C3%A9%3F");
        assert_eq!(segment("abc-_.~9"), "abc-_.~9");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(0), Duration::from_millis(500));
        assert_eq!(policy.backoff(1), Duration::from_secs(1));
        assert_eq!(policy.backoff(40), Duration::from_secs(10));
        let reconnect = ReconnectPolicy::default();
        assert_eq!(reconnect.delay(1), Duration::from_secs(2));
        assert_eq!(reconnect.delay(2), Duration::from_secs(4));
        assert_eq!(reconnect.delay(100), Duration::from_secs(60));
    }

    #[test]
    fn failure_bodies_on_2xx() {
        assert!(reports_failure(
            &serde_json::json!({"ok": false, "errors": ["x"]})
        ));
        assert!(reports_failure(
            &serde_json::json!({"error": "Nothing to do?"})
        ));
        assert!(!reports_failure(
            &serde_json::json!({"ok": true, "error": "ignored"})
        ));
        assert!(!reports_failure(
            &serde_json::json!({"id": "x", "status": "Update started"})
        ));
        assert!(!reports_failure(&serde_json::json!([])));
    }
}
