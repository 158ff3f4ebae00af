//! Event streams against a real HTTP/1.1 server on 127.0.0.1: split events, keep-alives, silence, reconnects.

mod support;

use std::time::Duration;

use spark_api::{Client, DisconnectReason, Error, Owner, ReconnectPolicy, Scope, StreamItem};
use support::{CORE, TOKEN, TestServer};

fn client(server: &TestServer, idle: Duration) -> Client {
    Client::builder()
        .base_url(server.base_url())
        .access_token(TOKEN)
        .event_idle_timeout(idle)
        .reconnect_policy(ReconnectPolicy {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            max_attempts: Some(5),
        })
        .build()
        .expect("client")
}

async fn collect(stream: &mut spark_api::EventStream) -> Vec<Result<StreamItem, Error>> {
    let mut items = Vec::new();
    // The test server's scripts end every stream; the bound only guards against a bug looping forever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, stream.next_item()).await {
        items.push(item);
    }
    items
}

#[tokio::test]
async fn split_events_silence_reconnect_and_fatal_error() {
    let server = TestServer::start().await;
    let client = client(&server, Duration::from_millis(600));
    let mut stream = client.subscribe_mine(None);
    let items = collect(&mut stream).await;

    let mut it = items.into_iter();
    let mut next = || it.next().expect("another item");
    assert_eq!(next().unwrap(), StreamItem::Connected);

    let StreamItem::Event(first) = next().unwrap() else {
        panic!("expected the split event");
    };
    assert_eq!(first.name, "temperature");
    assert_eq!(first.data.as_deref(), Some("21"));
    assert_eq!(first.ttl, Some(60), "ttl sent as a string");
    assert_eq!(first.coreid.as_deref(), Some(CORE));
    assert_eq!(
        first.published_at.as_deref(),
        Some("2014-05-28T19:20:34.638Z")
    );

    let StreamItem::Event(second) = next().unwrap() else {
        panic!("expected the CRLF event");
    };
    assert_eq!(
        (second.name.as_str(), second.ttl),
        ("spark/status", Some(60))
    );
    assert_eq!(second.data.as_deref(), Some("online"));

    let StreamItem::Malformed { name, data, .. } = next().unwrap() else {
        panic!("expected the malformed event");
    };
    assert_eq!((name.as_str(), data.as_str()), ("broken", "not json"));

    // Then the server goes silent: the idle timeout notices and the stream reconnects.
    assert_eq!(
        next().unwrap(),
        StreamItem::Disconnected(DisconnectReason::IdleTimeout)
    );
    assert_eq!(
        next().unwrap(),
        StreamItem::Reconnecting {
            attempt: 1,
            delay: Duration::from_millis(50)
        }
    );
    assert_eq!(next().unwrap(), StreamItem::Connected);
    let StreamItem::Event(after) = next().unwrap() else {
        panic!("expected the event after the reconnect");
    };
    assert_eq!((after.name.as_str(), after.data), ("after-reconnect", None));

    // The server closes the stream; the reconnect is refused with 401, which ends the stream.
    assert_eq!(
        next().unwrap(),
        StreamItem::Disconnected(DisconnectReason::Closed)
    );
    assert!(matches!(
        next().unwrap(),
        StreamItem::Reconnecting { attempt: 1, .. }
    ));
    let error = next().unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    assert!(it.next().is_none(), "the stream ends after a fatal error");
    assert!(stream.next_item().await.is_none());

    assert_eq!(server.hits("GET /v1/devices/events"), 3);
    for request in server.requests_to("/v1/devices/events") {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.header("accept"), Some("text/event-stream"));
        assert!(!request.uri.contains("access_token"));
    }
}

#[tokio::test]
async fn keep_alives_keep_a_quiet_stream_alive() {
    let server = TestServer::start().await;
    // Keep-alives every 150 ms for 1.2 s; the idle timeout is 600 ms.
    let client = client(&server, Duration::from_millis(600));
    let mut stream = client.subscribe_device(CORE, Some("keep"));
    assert_eq!(
        stream.next_item().await.unwrap().unwrap(),
        StreamItem::Connected
    );
    let StreamItem::Event(event) = stream.next_item().await.unwrap().unwrap() else {
        panic!("expected the event after the keep-alives");
    };
    assert_eq!(
        (event.name.as_str(), event.data.as_deref()),
        ("kept", Some("alive"))
    );
    assert_eq!(
        stream.next_item().await.unwrap().unwrap(),
        StreamItem::Disconnected(DisconnectReason::Closed)
    );
    assert_eq!(
        server.hits(&format!("GET /v1/devices/{CORE}/events/keep")),
        1
    );
}

#[tokio::test]
async fn paths_for_every_scope() {
    let server = TestServer::start().await;
    let client = client(&server, Duration::from_secs(5));
    let product = client.for_owner(Owner::Product("my-product".into()));
    let org = client.for_owner(Owner::Org("acme".into()));
    for mut stream in [
        client.subscribe_all(Some("temp")),
        org.subscribe_all(None),
        product.subscribe_device(CORE, Some("temp")),
        // The shared Scope reaches the same routes.
        client.subscribe(Scope::All, Some("temp")),
        product.subscribe(Scope::Device(CORE.parse().unwrap()), Some("temp")),
    ] {
        assert_eq!(
            stream.next_item().await.unwrap().unwrap(),
            StreamItem::Connected
        );
        let event = stream.next_event().await.unwrap().unwrap();
        assert_eq!((event.name.as_str(), event.ttl), ("temperature", Some(60)));
    }
    assert_eq!(server.hits("GET /v1/events/temp"), 2);
    assert_eq!(server.hits("GET /v1/orgs/acme/events"), 1);
    assert_eq!(
        server.hits(&format!(
            "GET /v1/products/my-product/devices/{CORE}/events/temp"
        )),
        2
    );
}

#[tokio::test]
async fn unknown_device_ends_the_stream_at_once() {
    let server = TestServer::start().await;
    let client = client(&server, Duration::from_secs(5));
    let mut stream = client.subscribe_device("gone", None);
    let error = stream.next_item().await.unwrap().unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert!(stream.next_item().await.is_none());
}

#[tokio::test]
async fn unreachable_server_gives_up_after_max_attempts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .access_token(TOKEN)
        .reconnect_policy(ReconnectPolicy {
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_attempts: Some(3),
        })
        .build()
        .unwrap();
    let mut stream = client.subscribe_mine(Some("x"));
    let items = collect(&mut stream).await;
    let attempts: Vec<u32> = items
        .iter()
        .filter_map(|i| match i {
            Ok(StreamItem::Reconnecting { attempt, .. }) => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(
        matches!(items.last(), Some(Err(Error::Transport { .. }))),
        "{items:?}"
    );
}
