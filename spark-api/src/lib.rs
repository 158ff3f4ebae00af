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
//!   organization scoping ([`Owner`]); device ids are the workspace's one
//!   [`DeviceId`] type.
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
//!
//! The same calls, run for real against a tiny stand-in for the cloud on 127.0.0.1 (the hidden lines: a thread that
//! answers each request line with canned JSON, and 401 to a request without this bearer token):
//!
//! ```
//! # use std::io::{BufRead, BufReader, Read, Write};
//! # fn cloud(routes: &'static [(&'static str, u16, &'static str)], token: &'static str) -> String {
//! #     let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! #     let url = format!("http://{}", listener.local_addr().unwrap());
//! #     std::thread::spawn(move || {
//! #         for stream in listener.incoming() {
//! #             let mut stream = stream.unwrap();
//! #             let mut reader = BufReader::new(stream.try_clone().unwrap());
//! #             let (mut request, mut len, mut authorized) = (String::new(), 0, false);
//! #             reader.read_line(&mut request).unwrap();
//! #             loop {
//! #                 let mut header = String::new();
//! #                 reader.read_line(&mut header).unwrap();
//! #                 let header = header.trim_end().to_ascii_lowercase();
//! #                 if header.is_empty() { break; }
//! #                 if let Some(v) = header.strip_prefix("content-length:") { len = v.trim().parse().unwrap(); }
//! #                 authorized |= header == format!("authorization: bearer {token}");
//! #             }
//! #             reader.read_exact(&mut vec![0; len]).unwrap();
//! #             let (status, json) = match routes.iter().find(|(r, ..)| request.starts_with(r)) {
//! #                 _ if !authorized => (401, r#"{"error":"invalid_token"}"#),
//! #                 Some(&(_, status, json)) => (status, json),
//! #                 None => (404, r#"{"ok":false,"error":"Variable not found"}"#),
//! #             };
//! #             let head = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", json.len());
//! #             stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(json.as_bytes())).unwrap();
//! #         }
//! #     });
//! #     url
//! # }
//! const CORE: &str = "53ff6c065075535119511687";
//! const TOKEN: &str = "38bb7b318cc6898c80317decb34525844bc9db55";
//! let url = cloud(&[
//!     ("GET /v1/devices/53ff6c065075535119511687/temperature ", 200,
//!      r#"{"cmd":"VarReturn","name":"temperature","result":21.5}"#),
//!     ("POST /v1/devices/53ff6c065075535119511687/brew ", 200,
//!      r#"{"id":"53ff6c065075535119511687","connected":true,"return_value":1}"#),
//! ], TOKEN);
//!
//! // Plain HTTP is allowed to a loopback address only.
//! let client = spark_api::Client::builder().base_url(&url).access_token(TOKEN).build()?;
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let value = client.variable(CORE, "temperature").await?;
//!     assert_eq!(value.name.as_deref(), Some("temperature"));
//!     let called = client.call_function(CORE, "brew", "202,230").await?;
//!     assert_eq!(called.return_value, 1);
//!
//!     // Failures carry the status and the body the cloud sent.
//!     let missing = client.variable(CORE, "humidity").await.unwrap_err();
//!     assert_eq!(missing.status(), Some(404));
//!     assert_eq!(missing.body().and_then(|b| b.message()).as_deref(), Some("Variable not found"));
//!     let stranger = client.with_token("0000000000000000000000000000000000000000");
//!     assert!(stranger.variable(CORE, "temperature").await.unwrap_err().is_auth());
//!     Ok::<(), spark_api::Error>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod api;
pub mod auth;
mod client;
pub mod error;
pub mod models;
mod multipart;
pub mod sse;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use api::{DisconnectReason, EventStream, StreamItem};
pub use auth::{
    AccessToken, Credentials, OAuthClient, Secret, StoredToken, TokenGrant, TokenLifetime,
};
pub use client::{
    Client, ClientBuilder, DEFAULT_MAX_RESPONSE_BYTES, MAX_ERROR_BODY_BYTES, Owner,
    PARTICLE_API_URL, ReconnectPolicy, RetryPolicy, SPARK_API_URL,
};
pub use error::{ApiError, Error, ErrorBody, TimeoutPhase};
pub use models::{
    ClaimResult, CompileResult, CreatedWebhook, Device, DeviceId, DeviceRef, Event, FirmwareFile,
    FunctionCallResult, NewWebhook, OkResult, PingResult, Publish, UpdateResult, UserInfo,
    VariableResult, VariableValue, Webhook,
};
/// Whose events a subscription asks for ([`Client::subscribe`]): the workspace's one type for it,
/// the same the device protocol's Subscribe carries.
pub use spark_protocol::session::Scope;
