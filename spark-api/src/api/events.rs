//! Publishing events, and event streams (server-sent events) that notice a dead connection and reconnect.
//!
//! An event stream is the [`sse`](crate::sse) parser plus [`Event::from_sse`] on each event's `data:` JSON:
//!
//! ```
//! use spark_api::Event;
//! use spark_api::sse::{SseItem, SseParser};
//!
//! let mut parser = SseParser::new();
//! parser.handle_input(b"event: spark/status\ndata: {\"data\":\"online\",\"ttl\":\"60\",");
//! parser.handle_input(b"\"published_at\":\"2014-06-01T12:00:00.000Z\",\"coreid\":\"53ff6c065075535119511687\"}\n\n");
//! let Some(SseItem::Event(sse)) = parser.poll_event() else { unreachable!() };
//! let event = Event::from_sse(sse.event.as_deref().unwrap_or("message"), &sse.data).unwrap();
//! assert_eq!(event.name, "spark/status");
//! assert_eq!(event.data.as_deref(), Some("online"));
//! assert_eq!(event.ttl, Some(60)); // the 2014 cloud sends the TTL as a string
//!
//! // Data that is not an event object is an error naming why, not a panic.
//! assert!(Event::from_sse("x", "not json").is_err());
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use reqwest::Method;
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderValue};

use crate::client::{Call, Client, Owner, segment};
use crate::error::{ApiError, Error, ErrorBody, strip_query};
use crate::models::{DeviceRef, Event, OkResult, Publish};
use crate::sse::{SseError, SseItem, SseParser};

/// Why an event stream's connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// No byte (not even a keep-alive) arrived within the idle timeout.
    IdleTimeout,
    /// The server closed the stream.
    Closed,
    /// The connection failed; the text says how.
    Transport(String),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::IdleTimeout => f.write_str("no data within the idle timeout"),
            DisconnectReason::Closed => f.write_str("closed by the server"),
            DisconnectReason::Transport(e) => write!(f, "connection error: {e}"),
        }
    }
}

/// One item of an [`EventStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamItem {
    /// The stream is connected (first connection, or after a reconnect). Events published while it was
    /// disconnected are lost: the cloud offers no resume.
    Connected,
    /// An event.
    Event(Event),
    /// An event whose `data:` line was not the expected JSON; kept so nothing is silently lost.
    Malformed {
        /// The event name.
        name: String,
        /// The raw `data:` text.
        data: String,
        /// What was wrong.
        error: String,
    },
    /// An event larger than the parser's limit was dropped.
    Dropped(SseError),
    /// The connection ended; a reconnect follows.
    Disconnected(DisconnectReason),
    /// The stream waits `delay` before reconnect attempt `attempt` (1-based).
    Reconnecting {
        /// The attempt number since the last successful connection.
        attempt: u32,
        /// How long the stream waits first.
        delay: Duration,
    },
}

enum State {
    Connect,
    Streaming(reqwest::Response),
    Wait,
    Done,
}

struct Driver {
    client: Client,
    path: String,
    parser: SseParser,
    pending: VecDeque<Result<StreamItem, Error>>,
    state: State,
    /// Failed attempts since the last successful connection.
    attempt: u32,
    last_error: Option<Error>,
    /// The reconnect delay still to wait before the next connect.
    sleep_before_connect: Option<Duration>,
}

type NextFuture =
    Pin<Box<dyn Future<Output = (Box<Driver>, Option<Result<StreamItem, Error>>)> + Send>>;

/// A subscription to an event stream: a [`Stream`] of [`StreamItem`]s that never ends on its own except with an
/// error the cloud will not take back (a refused token, an unknown device, or too many failed reconnects when
/// [`crate::ReconnectPolicy::max_attempts`] is set).
///
/// Between events it watches the connection: any byte (a keep-alive included) proves it alive; silence longer than
/// the client's event idle timeout, a close or an error yields [`StreamItem::Disconnected`], then
/// [`StreamItem::Reconnecting`] and, once back, [`StreamItem::Connected`].
pub struct EventStream {
    driver: Option<Box<Driver>>,
    next: Option<NextFuture>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("path", &self.driver.as_ref().map(|d| d.path.as_str()))
            .finish_non_exhaustive()
    }
}

impl EventStream {
    fn new(client: Client, path: String) -> EventStream {
        EventStream {
            driver: Some(Box::new(Driver {
                client,
                path,
                parser: SseParser::new(),
                pending: VecDeque::new(),
                state: State::Connect,
                attempt: 0,
                last_error: None,
                sleep_before_connect: None,
            })),
            next: None,
        }
    }

    /// The next item; `None` once the stream has ended.
    pub async fn next_item(&mut self) -> Option<Result<StreamItem, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next event, skipping connection notices and malformed events; `None` once the stream has ended.
    pub async fn next_event(&mut self) -> Option<Result<Event, Error>> {
        loop {
            match self.next_item().await? {
                Ok(StreamItem::Event(event)) => return Some(Ok(event)),
                Ok(_) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Stream for EventStream {
    type Item = Result<StreamItem, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.next.is_none() {
            let Some(mut driver) = self.driver.take() else {
                return Poll::Ready(None);
            };
            self.next = Some(Box::pin(async move {
                let item = driver.next().await;
                (driver, item)
            }));
        }
        let Some(next) = self.next.as_mut() else {
            return Poll::Ready(None);
        };
        match next.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((driver, item)) => {
                self.next = None;
                self.driver = Some(driver);
                Poll::Ready(item)
            }
        }
    }
}

impl Driver {
    async fn next(&mut self) -> Option<Result<StreamItem, Error>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return None,
                State::Connect => match self.connect().await {
                    Ok(response) => {
                        self.parser.reset();
                        self.attempt = 0;
                        self.last_error = None;
                        self.state = State::Streaming(response);
                        return Some(Ok(StreamItem::Connected));
                    }
                    Err(error) => {
                        if !retryable(&error) {
                            return Some(Err(error));
                        }
                        self.last_error = Some(error);
                        self.state = State::Wait;
                    }
                },
                State::Wait => {
                    self.attempt = self.attempt.saturating_add(1);
                    let policy = &self.client.inner.reconnect;
                    if policy.max_attempts.is_some_and(|max| self.attempt > max) {
                        let error = self.last_error.take().unwrap_or(Error::Timeout {
                            url: strip_query(&self.client.url(&self.path)),
                            phase: crate::TimeoutPhase::EventStreamIdle,
                        });
                        return Some(Err(error));
                    }
                    let delay = policy.delay(self.attempt);
                    // The notice goes out first; the wait happens on the next poll, so a consumer sees it at once.
                    self.state = State::Connect;
                    self.sleep_before_connect = Some(delay);
                    return Some(Ok(StreamItem::Reconnecting {
                        attempt: self.attempt,
                        delay,
                    }));
                }
                State::Streaming(mut response) => {
                    let idle = self.client.inner.event_idle_timeout;
                    match tokio::time::timeout(idle, response.chunk()).await {
                        Ok(Ok(Some(bytes))) => {
                            self.parser.handle_input(&bytes);
                            self.drain_parser();
                            self.state = State::Streaming(response);
                        }
                        Ok(Ok(None)) => self.disconnect(DisconnectReason::Closed),
                        Ok(Err(e)) => self.disconnect(DisconnectReason::Transport(e.to_string())),
                        Err(_) => self.disconnect(DisconnectReason::IdleTimeout),
                    }
                }
            }
        }
    }

    fn disconnect(&mut self, reason: DisconnectReason) {
        self.parser.reset();
        self.state = State::Wait;
        self.pending.push_back(Ok(StreamItem::Disconnected(reason)));
    }

    fn drain_parser(&mut self) {
        while let Some(item) = self.parser.poll_event() {
            let item = match item {
                SseItem::Error(e) => StreamItem::Dropped(e),
                SseItem::Event(event) => {
                    let name = event.event.unwrap_or_else(|| "message".to_owned());
                    match Event::from_sse(&name, &event.data) {
                        Ok(event) => StreamItem::Event(event),
                        Err(error) => StreamItem::Malformed {
                            name,
                            data: event.data,
                            error,
                        },
                    }
                }
            };
            self.pending.push_back(Ok(item));
        }
    }

    async fn connect(&mut self) -> Result<reqwest::Response, Error> {
        if let Some(delay) = self.sleep_before_connect.take() {
            tokio::time::sleep(delay).await;
        }
        let url = self.client.url(&self.path);
        let call = Call::new(Method::GET, self.path.clone());
        let request = self
            .client
            .request(&call, None)?
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .header(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let inner = &self.client.inner;
        // The response head must come within the connect and idle allowances.
        let wait = inner.connect_timeout + inner.event_idle_timeout;
        let response = match tokio::time::timeout(wait, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(Error::from_reqwest(&url, e)),
            Err(_) => {
                return Err(Error::Timeout {
                    url: strip_query(&url),
                    phase: crate::TimeoutPhase::EventStreamIdle,
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let read = crate::client::read_capped(response, crate::client::MAX_ERROR_BODY_BYTES, &url);
        let body = match tokio::time::timeout(inner.event_idle_timeout, read).await {
            Ok(Ok(bytes)) => ErrorBody::parse(&bytes),
            _ => ErrorBody::Empty,
        };
        Err(Error::Api(Box::new(ApiError {
            status: status.as_u16(),
            method: "GET".to_owned(),
            url: strip_query(&url),
            body,
            retry_after,
        })))
    }
}

/// Whether a failed (re)connect is worth another try: transport problems, timeouts, 429 and 5xx.
fn retryable(error: &Error) -> bool {
    match error {
        Error::Transport { .. } | Error::Timeout { .. } => true,
        Error::Api(api) => api.status == 429 || api.status >= 500,
        _ => false,
    }
}

fn with_prefix(mut path: String, prefix: Option<&str>) -> String {
    if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
        path.push('/');
        path.push_str(&segment(prefix));
    }
    path
}

impl Client {
    /// Publish an event (`POST /v1/devices/events`, or `/v1/products/:product/events` in a product scope). Never
    /// retried: a retry could publish twice.
    pub async fn publish(&self, event: &Publish) -> Result<(), Error> {
        if event.name.is_empty()
            || event.name.len() > 64
            || event.name.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "event name",
                "must be 1 to 64 characters without control characters",
            ));
        }
        let path = match &self.owner {
            Owner::User => "/v1/devices/events".to_owned(),
            Owner::Product(product) => format!("/v1/products/{}/events", segment(product)),
            Owner::Org(_) => {
                return Err(Error::invalid(
                    "scope",
                    "organizations cannot publish events",
                ));
            }
        };
        let call = Call::new(Method::POST, path).form(event)?.idempotent(false);
        self.call_json::<OkResult>(call).await.map(drop)
    }

    /// Subscribe to every event visible to the token whose name starts with `prefix`: the public firehose plus the
    /// account's private events (`GET /v1/events[/:prefix]`; `/v1/orgs/:org/events` or
    /// `/v1/products/:product/events` in a scope). Prefer [`Client::subscribe_mine`]: the firehose is large.
    pub fn subscribe_all(&self, prefix: Option<&str>) -> EventStream {
        let path = match &self.owner {
            Owner::User => "/v1/events".to_owned(),
            Owner::Product(product) => format!("/v1/products/{}/events", segment(product)),
            Owner::Org(org) => format!("/v1/orgs/{}/events", segment(org)),
        };
        EventStream::new(self.clone(), with_prefix(path, prefix))
    }

    /// Subscribe to the events of the account's own devices (`GET /v1/devices/events[/:prefix]`; a product's events
    /// in a product scope).
    pub fn subscribe_mine(&self, prefix: Option<&str>) -> EventStream {
        let path = match &self.owner {
            Owner::User | Owner::Org(_) => "/v1/devices/events".to_owned(),
            Owner::Product(product) => format!("/v1/products/{}/events", segment(product)),
        };
        EventStream::new(self.clone(), with_prefix(path, prefix))
    }

    /// Subscribe with a [`Scope`](crate::Scope), the workspace's one name for whose events a
    /// subscription asks for (the device protocol's Subscribe carries the same three): all
    /// ([`Client::subscribe_all`]), the account's devices ([`Client::subscribe_mine`]) or one
    /// device ([`Client::subscribe_device`]).
    pub fn subscribe(&self, scope: crate::Scope, prefix: Option<&str>) -> EventStream {
        match scope {
            crate::Scope::Device(id) => self.subscribe_device(id, prefix),
            crate::Scope::MyDevices => self.subscribe_mine(prefix),
            // `All`, and any scope a later protocol adds: the widest stream the token may see.
            _ => self.subscribe_all(prefix),
        }
    }

    /// Subscribe to one device's events (`GET /v1/devices/:id/events[/:prefix]`, or the product route in a product
    /// scope).
    pub fn subscribe_device<'a>(
        &self,
        device: impl Into<DeviceRef<'a>>,
        prefix: Option<&str>,
    ) -> EventStream {
        let base = match &self.owner {
            Owner::Product(product) => format!("/v1/products/{}/devices", segment(product)),
            Owner::User | Owner::Org(_) => "/v1/devices".to_owned(),
        };
        let path = format!("{base}/{}/events", segment(&device.into().to_text()));
        EventStream::new(self.clone(), with_prefix(path, prefix))
    }
}
