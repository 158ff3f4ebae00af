//! Webhooks end to end: hooks created through spark-api, fired by a virtual Core's events over the Spark protocol,
//! delivered to HTTP listeners on loopback, and answered on the owner's event stream (`hook-sent`, `hook-response`,
//! `hook-error`) and to the Core itself. Every wait is bounded; nothing asserts a duration.

#[path = "support/e2e_env.rs"]
mod env;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use env::{Env, within};
use spark_api::NewWebhook;
use spark_cc3000::ServicePack;
use spark_cloud::webhooks::{HOOK_QUEUE, WebhookAllow, WebhookPolicy};
use spark_vcore::run::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const CORE: [u8; 12] = [
    0x53, 0xff, 0x6c, 0x06, 0x50, 0x75, 0x53, 0x51, 0x19, 0x51, 0x16, 0x87,
];

/// One request a listener received.
#[derive(Debug)]
struct Received {
    head: String,
    body: Vec<u8>,
    /// When the listener had the whole request.
    at: Instant,
}

impl Received {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Reads one HTTP/1.1 request (head and a `Content-Length` body).
async fn read_request(s: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        head,
        body,
        at: Instant::now(),
    })
}

/// An HTTP listener on loopback that answers every request with `status` and `body` and reports what it got.
async fn listener(
    status: &'static str,
    body: &'static str,
) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(r) = read_request(&mut s).await {
                    let _ = tx.send(r);
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    (addr, rx)
}

/// A listener that accepts connections and never answers (nor reads); reports each connection.
async fn dead_endpoint() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
            let _ = tx.send(());
        }
    });
    (addr, rx)
}

/// A port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cores_event_is_posted_to_the_hook_and_the_answer_reaches_the_stream_and_the_core() {
    let mut env = Env::start().await;
    let (addr, mut got) = listener("200 OK", "thanks, noted").await;
    let created = env
        .api
        .create_webhook(&NewWebhook::new(
            "temp",
            format!("http://{addr}/hook?src=spark"),
        ))
        .await
        .unwrap();
    let listed = env.api.list_webhooks().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, created.id);
    assert_eq!(listed[0].event.as_deref(), Some("temp"));
    assert_eq!(listed[0].request_type.as_deref(), Some("POST"));

    let mut hooks = env.stream(|api| api.subscribe_all(Some("hook-"))).await;
    let mut readings = env.stream(|api| api.subscribe_all(Some("temp"))).await;
    let mut core = env.new_core(CORE, ServicePack::SP_1_28);
    {
        let mut c = core.core.lock().unwrap();
        assert!(c.publish_on_connect("temp/reading", "21.5"));
        assert!(c.subscribe("hook-response/temp"));
    }
    env.provision(&core).await;
    let started = Instant::now();
    env.run_core(&mut core, None);
    readings.next_event().await;
    let streamed = started.elapsed();

    let request = within(got.recv()).await.unwrap();
    // For the report (not asserted): from the Core's start, the hook's request against the stream's event.
    let hooked = request.at.duration_since(started);
    eprintln!(
        "webhook request / stream event, from the Core's start: {:.3} ({hooked:?} / {streamed:?})",
        hooked.as_secs_f64() / streamed.as_secs_f64().max(1e-9)
    );
    assert_eq!(request.request_line(), "POST /hook?src=spark HTTP/1.1");
    let body = request.json();
    assert_eq!(body["event"], "temp/reading");
    assert_eq!(body["data"], "21.5");
    assert_eq!(body["coreid"], core.id.as_str());
    assert!(
        body["published_at"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );

    let sent = hooks.next_event().await;
    assert_eq!(sent.name, "hook-sent/temp/reading");
    let response_name = format!("hook-response/temp/reading/{}/0", core.id);
    let response = hooks.next_event().await;
    assert_eq!(response.name, response_name);
    assert_eq!(response.data.as_deref(), Some("thanks, noted"));

    // The Core subscribed to the responses: the cloud hands it the answer too.
    let (data, _) = core
        .wait_for(|s| match s {
            Status::EventReceived { name, data, .. } if *name == response_name => {
                Some(data.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(data, "thanks, noted");
    let stats = env.running.cloud.webhooks().stats();
    assert_eq!((stats.queued, stats.succeeded, stats.dropped), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_refused_target_is_a_hook_error_on_the_stream() {
    let mut env = Env::start().await;
    let port = closed_port();
    env.api
        .create_webhook(&NewWebhook::new(
            "temp",
            format!("http://127.0.0.1:{port}/"),
        ))
        .await
        .unwrap();
    let mut hooks = env.stream(|api| api.subscribe_all(Some("hook-"))).await;
    let mut core = env.new_core(CORE, ServicePack::SP_1_28);
    assert!(core.core.lock().unwrap().publish_on_connect("temp", "1"));
    env.provision(&core).await;
    env.run_core(&mut core, None);
    let (error, _) = hooks
        .next_named(&format!("hook-error/temp/{}/0", core.id))
        .await;
    assert!(
        error
            .data
            .as_deref()
            .unwrap()
            .starts_with("cannot connect to 127.0.0.1"),
        "{error:?}"
    );

    // An allow-list without loopback: the listener is never reached, and the error says why.
    let (addr, mut got) = listener("200 OK", "ok").await;
    env.running
        .cloud
        .webhooks()
        .set_policy(WebhookPolicy::Only(vec!["10.0.0.0/8".parse().unwrap()]));
    let cloud = Arc::clone(&env.running.cloud);
    let hook = env
        .api
        .create_webhook(&NewWebhook::new("walled", format!("http://{addr}/")))
        .await
        .unwrap();
    cloud.device_event(&core.id, "walled", Some("x"), 60, false);
    let (error, _) = hooks
        .next_named(&format!("hook-error/walled/{}/0", core.id))
        .await;
    assert!(
        error
            .data
            .as_deref()
            .unwrap()
            .contains("not an address webhooks may reach"),
        "{error:?}"
    );
    assert!(got.try_recv().is_err(), "the refused listener was called");

    // Allowed by address: delivered.
    cloud
        .webhooks()
        .set_policy(WebhookPolicy::Only(vec![WebhookAllow::Net {
            addr: addr.ip(),
            prefix: 32,
        }]));
    cloud.device_event(&core.id, "walled", Some("y"), 60, false);
    let request = within(got.recv()).await.unwrap();
    assert_eq!(request.json()["data"], "y");
    env.api.delete_webhook(&hook.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_hooks_are_invisible_and_do_not_fire_on_my_devices() {
    let mut env = Env::start().await;
    let ann = env.other_user("ann", "ann's password").await;
    let (addr, mut got) = listener("200 OK", "ok").await;
    let joes = env
        .api
        .create_webhook(&NewWebhook::new("temp", format!("http://{addr}/joe")))
        .await
        .unwrap();
    let anns = ann
        .create_webhook(&NewWebhook::new("temp", format!("http://{addr}/ann")))
        .await
        .unwrap();
    // Each sees only their own.
    let ids = |list: Vec<spark_api::Webhook>| list.into_iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(
        ids(env.api.list_webhooks().await.unwrap()),
        vec![joes.id.clone()]
    );
    assert_eq!(
        ids(ann.list_webhooks().await.unwrap()),
        vec![anns.id.clone()]
    );
    // Another user's hook is as unknown as a missing one.
    let e = ann.delete_webhook(&joes.id).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e:?}");
    let e = env
        .api
        .delete_webhook("0123456789abcdef01234567")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e:?}");
    let raw = reqwest_get(env.running.http, &format!("/v1/webhooks/{}", joes.id), &ann).await;
    assert_eq!(raw, 404);
    let raw = reqwest_get(
        env.running.http,
        &format!("/v1/webhooks/{}", joes.id),
        &env.api,
    )
    .await;
    assert_eq!(raw, 200);

    // Joe's Core publishes a private event: only Joe's hook fires (Ann's, mydevices by default, does not).
    let mut core = env.new_core(CORE, ServicePack::SP_1_28);
    assert!(
        core.core
            .lock()
            .unwrap()
            .publish_on_connect("temp", "joe's")
    );
    env.provision(&core).await;
    let mut hooks = env
        .stream(|api| api.subscribe_all(Some("hook-response")))
        .await;
    env.run_core(&mut core, None);
    let request = within(got.recv()).await.unwrap();
    assert_eq!(request.request_line(), "POST /joe HTTP/1.1");
    hooks.next_event().await;
    let stats = env.running.cloud.webhooks().stats();
    assert_eq!(stats.queued, 1, "only Joe's hook was queued: {stats:?}");
    assert!(got.try_recv().is_err());
    // Ann's hook still exists, and she deletes it.
    ann.delete_webhook(&anns.id).await.unwrap();
    assert!(ann.list_webhooks().await.unwrap().is_empty());
}

/// `GET path` with `api`'s token; the status.
async fn reqwest_get(http: SocketAddr, path: &str, api: &spark_api::Client) -> u16 {
    let token = api.access_token().unwrap().expose().to_owned();
    let mut s = TcpStream::connect(http).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_survive_a_restart_in_a_private_file() {
    let env = Env::start().await;
    let created = env
        .api
        .create_webhook(&NewWebhook::new("temp", "http://127.0.0.1:9/x"))
        .await
        .unwrap();
    let file = env.dir().join("webhooks.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Another cloud on the same directory (as after a restart) has the hook.
    let config = spark_cloud::Config {
        dir: env.dir().to_owned(),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_bits: 2048,
    };
    let hub = spark_cloud::devices::LiveHub::new();
    let reopened = spark_cloud::open(&config, hub).unwrap();
    let hooks = reopened.webhooks().list(env::USER);
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].id, created.id);
    assert_eq!(hooks[0].url, "http://127.0.0.1:9/x");
    // Deleting it is durable too.
    env.api.delete_webhook(&created.id).await.unwrap();
    let hub = spark_cloud::devices::LiveHub::new();
    let again = spark_cloud::open(&config, hub).unwrap();
    assert!(again.webhooks().list(env::USER).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_neither_stalls_events_nor_grows_a_queue() {
    const EVENTS: usize = 400;
    let env = Env::start().await;
    let (dead, mut connections) = dead_endpoint().await;
    env.api
        .create_webhook(&NewWebhook::new("load", format!("http://{dead}/")))
        .await
        .unwrap();
    let core = env.new_core(CORE, ServicePack::SP_1_28);
    env.provision(&core).await;
    let mut stream = env.stream(|api| api.subscribe_all(Some("load"))).await;
    let cloud = Arc::clone(&env.running.cloud);
    let started = Instant::now();
    for i in 0..EVENTS {
        cloud.device_event(&core.id, "load/n", Some(&i.to_string()), 60, false);
    }
    let publish_time = started.elapsed();
    // Every event reached the stream while the endpoint sat on its first request.
    for i in 0..EVENTS {
        let e = stream.next_event().await;
        assert_eq!(e.data, Some(i.to_string()));
    }
    within(connections.recv()).await.unwrap();
    let stats = cloud.webhooks().stats();
    assert!(stats.queued <= HOOK_QUEUE as u64 + 1, "{stats:?}");
    assert_eq!(stats.queued + stats.dropped, EVENTS as u64, "{stats:?}");
    assert_eq!(stats.in_flight, 1, "{stats:?}");
    assert!(
        connections.try_recv().is_err(),
        "one request at a time per hook"
    );

    // The same events without a hook, for the figure in the report (not asserted).
    let started = Instant::now();
    for i in 0..EVENTS {
        cloud.device_event(&core.id, "other/n", Some(&i.to_string()), 60, false);
    }
    let without = started.elapsed();
    eprintln!(
        "fan-out of {EVENTS} events with a dead hook / without: {:.2} ({publish_time:?} / {without:?})",
        publish_time.as_secs_f64() / without.as_secs_f64().max(1e-9)
    );
}
