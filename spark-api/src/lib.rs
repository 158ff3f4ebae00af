//! An async client for the Spark/Particle Cloud REST API (v1), for the 2014 Spark cloud (`https://api.spark.io`),
//! today's Particle cloud (`https://api.particle.io`) and the open-source local cloud alike.
//!
//! - [`Client`] (cheap to clone) and its [`ClientBuilder`]: base URL, token, user agent, timeouts, retries of
//!   idempotent requests (429 with `Retry-After`, 5xx, connection errors; never a function call, a publish or a
//!   flash), proxies from the environment, HTTPS with rustls (ring) and plain HTTP only to loopback or on opt-in.
//! - Tokens ([`auth`]): password-grant login, expiry, listing and revoking; the token travels only in the
//!   `Authorization: Bearer` header; secrets are zeroized and redacted in `Debug`; [`StoredToken::discover`] reads
//!   `PARTICLE_ACCESS_TOKEN` or the particle-cli / spark-cli configuration files.
//! - Devices, functions, variables, events (publish, and subscriptions as a [`futures_core::Stream`] that notices a
//!   silent connection and reconnects), firmware (flash, compile, download, public keys), webhooks, product and
//!   organization scoping ([`Scope`]).
//! - One error type, [`Error`], carrying the HTTP status and the parsed body ([`ErrorBody`]) for every error shape
//!   the clouds send, the JSON path of a decoding failure, transport errors and timeouts.
//!
//! The event-stream parser in [`sse`] does no IO: bytes in, events out, any chunking.
//!
//! ```no_run
//! # async fn run() -> Result<(), spark_api::Error> {
//! let client = spark_api::Client::builder()
//!     .base_url(spark_api::SPARK_API_URL)
//!     .access_token("38bb7b318cc6898c80317decb34525844bc9db55")
//!     .build()?;
//! let value = client.variable("53ff6c065075535119511687", "temperature").await?;
//! println!("{}", value.result);
//! let mut events = client.subscribe_mine(Some("temp"));
//! while let Some(item) = events.next_item().await {
//!     println!("{:?}", item?);
//! }
//! # Ok(()) }
//! ```

mod api;
pub mod auth;
mod client;
pub mod error;
pub mod models;
mod multipart;
pub mod sse;

pub use api::{DisconnectReason, EventStream, StreamItem};
pub use auth::{
    AccessToken, Credentials, OAuthClient, Secret, StoredToken, TokenGrant, TokenLifetime,
};
pub use client::{
    Client, ClientBuilder, DEFAULT_MAX_RESPONSE_BYTES, MAX_ERROR_BODY_BYTES, PARTICLE_API_URL,
    ReconnectPolicy, RetryPolicy, SPARK_API_URL, Scope,
};
pub use error::{ApiError, Error, ErrorBody, TimeoutPhase};
pub use models::{
    ClaimResult, CompileResult, CreatedWebhook, Device, Event, FirmwareFile, FunctionCallResult,
    NewWebhook, OkResult, PingResult, Publish, UpdateResult, UserInfo, VariableResult,
    VariableValue, Webhook,
};
