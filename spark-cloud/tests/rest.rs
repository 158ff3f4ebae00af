//! The local cloud's REST API over real sockets, driven by spark-api's client (and raw HTTP where a request must be
//! malformed on purpose), with scripted devices behind the hub.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spark_api::{Client, Credentials, Error, FirmwareFile, Publish, StreamItem, TokenLifetime};
use spark_cloud::hub::{HubError, ScriptedDevice, ScriptedHub, VariableValue};
use spark_cloud::{self as cloud, Config, Running};

const SERVER_KEY: &str = include_str!("fixtures/server_key_1024.pem");
const DEVICE_A_KEY: &str = include_str!("fixtures/device_a.pub.pem");
const DEVICE_B_KEY: &str = include_str!("fixtures/device_b.pub.pem");
const DEV_A: &str = "53ff6c065075535119511687";
const DEV_B: &str = "0123456789abcdef01234567";

/// A fresh state directory (`tempfile`), removed on drop.
struct TempDir(
    PathBuf,
    #[allow(dead_code)] // held for its drop, which removes the directory
    tempfile::TempDir,
);

impl TempDir {
    fn new(seeded: bool) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix("spark-cloud-test-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_owned();
        if seeded {
            // A pre-made 1024-bit server key keeps tests fast (generation is tested on its own).
            std::fs::write(path.join("default_key.pem"), SERVER_KEY).unwrap();
        }
        TempDir(path, dir)
    }
}

async fn start(dir: &Path, hub: Arc<ScriptedHub>) -> Running {
    let config = Config {
        dir: dir.to_owned(),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_bits: 1024,
    };
    let cloud = cloud::open(&config, hub).unwrap();
    cloud::serve(cloud, config.http).await.unwrap()
}

fn client(addr: SocketAddr) -> Client {
    Client::builder()
        .base_url(format!("http://{addr}"))
        .no_proxy()
        .build()
        .unwrap()
}

/// One raw HTTP/1.1 exchange; returns (status, body).
fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn post_form(addr: SocketAddr, path: &str, extra_headers: &str, form: &str) -> (u16, String) {
    raw(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra_headers}\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
}

fn create_user(addr: SocketAddr, user: &str, password: &str) {
    let (status, body) = post_form(
        addr,
        "/v1/users",
        "",
        &format!("username={user}&password={password}"),
    );
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
}

async fn login(c: &Client, user: &str, password: &str) -> Client {
    let grant = c
        .login(&Credentials::new(user, password), TokenLifetime::Default)
        .await
        .unwrap();
    assert_eq!(grant.token_type, "bearer");
    assert_eq!(grant.expires_in, Some(7_776_000));
    assert_eq!(grant.access_token.expose().len(), 40);
    c.with_token(grant.access_token)
}

/// `POST /v1/device_claims` (which spark-api does not wrap): a claim code for `user`.
fn claim_code(addr: SocketAddr, user: &Client) -> String {
    let token = user.access_token().unwrap().expose().to_owned();
    let (status, body) = post_form(
        addr,
        "/v1/device_claims",
        &format!("Authorization: Bearer {token}\r\n"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["claim_code"].as_str().unwrap().to_owned()
}

fn status_of(e: &Error) -> Option<u16> {
    e.status()
}

fn tinker() -> ScriptedDevice {
    ScriptedDevice::new()
        .function("digitalwrite", |arg| match arg {
            "D7,HIGH" | "D7,LOW" => Ok(1),
            _ => Ok(-1),
        })
        .function("fail", |_| Err(HubError::Device("no".into())))
        .function("slowpoke", |_| Err(HubError::TimedOut))
        .variable("temperature", VariableValue::Int(21))
        .variable("label", VariableValue::String("kitchen".into()))
        .variable("ratio", VariableValue::Double(0.5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_create_list_delete_and_401() {
    let dir = TempDir::new(true);
    let running = start(&dir.0, Arc::new(ScriptedHub::new())).await;
    let addr = running.http;
    let anon = client(addr);
    create_user(addr, "Joe@Example.com", "secret");
    // The name is case-insensitive; a duplicate is refused (the original wiped the user).
    let (status, body) = post_form(
        addr,
        "/v1/users",
        "",
        "username=joe@example.com&password=other",
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, body),
        (
            400,
            serde_json::json!({"ok": false, "errors": ["User already exists"]})
        )
    );

    let joe = login(&anon, "joe@example.com", "secret").await;
    let _second = login(&anon, "joe@example.com", "secret").await;
    let creds = Credentials::new("joe@example.com", "secret");
    let tokens = anon.list_access_tokens(&creds).await.unwrap();
    assert_eq!(tokens.len(), 2);
    // Tokens are stored, and listed, as their SHA-256 only.
    let digest = cloud::state::token_digest(joe.access_token().unwrap().expose());
    assert!(tokens.iter().any(|t| t.token.expose() == digest));
    assert!(tokens.iter().all(|t| t.client.as_deref() == Some("CLI2")));

    // Wrong password: the login is refused and the token list too.
    let e = anon
        .login(
            &Credentials::new("joe@example.com", "nope"),
            TokenLifetime::Default,
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(400));
    assert_eq!(
        e.body().and_then(|b| b.oauth_error()),
        Some("invalid_grant")
    );
    let e = anon
        .list_access_tokens(&Credentials::new("joe@example.com", "nope"))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(401));

    // The token works, then is deleted and gets 401.
    assert!(joe.list_devices().await.unwrap().is_empty());
    anon.delete_access_token(&creds, joe.access_token().unwrap())
        .await
        .unwrap();
    let e = joe.list_devices().await.unwrap_err();
    assert_eq!(status_of(&e), Some(401));
    assert!(e.is_auth());
    assert_eq!(anon.list_access_tokens(&creds).await.unwrap().len(), 1);
    // Deleting it again: not found.
    let e = anon
        .delete_access_token(&creds, joe.access_token().unwrap())
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_behind_a_token_is_its_account() {
    let dir = TempDir::new(true);
    let running = start(&dir.0, Arc::new(ScriptedHub::new())).await;
    let anon = client(running.http);
    create_user(running.http, "ada@example.com", "engine");
    create_user(running.http, "bob@example.com", "builder");
    let ada = login(&anon, "ada@example.com", "engine").await;
    let bob = login(&anon, "bob@example.com", "builder").await;
    assert_eq!(ada.user().await.unwrap().username, "ada@example.com");
    assert_eq!(bob.user().await.unwrap().username, "bob@example.com");
    let err = anon.with_token("0".repeat(40)).user().await.unwrap_err();
    assert!(err.is_auth(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_auth_methods() {
    let dir = TempDir::new(true);
    let running = start(&dir.0, Arc::new(ScriptedHub::new())).await;
    let addr = running.http;
    let wrong = client(addr).with_token("0123456789012345678901234567890123456789");
    let e = wrong.list_devices().await.unwrap_err();
    assert_eq!(status_of(&e), Some(401));
    assert_eq!(
        e.body().and_then(|b| b.oauth_error()),
        Some("invalid_token")
    );

    let (status, body) = raw(
        addr,
        "GET /v1/devices HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 401);
    assert!(body.contains("The access token was not found"), "{body}");
    let (status, body) = raw(
        addr,
        "GET /v1/devices?access_token=abc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);
    assert!(body.contains("Only one method may be used"), "{body}");
    let (status, body) = raw(
        addr,
        "GET /v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Token\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);
    assert!(body.contains("Malformed auth header"), "{body}");
    // The OAuth endpoint insists on a form and a client.
    let (status, body) = post_form(
        addr,
        "/oauth/token",
        "",
        "grant_type=password&username=a&password=b",
    );
    assert_eq!(status, 400);
    assert!(body.contains("invalid_client"), "{body}");
    let (status, body) = post_form(
        addr,
        "/oauth/token",
        "Authorization: Basic c3Bhcms6c3Bhcms=\r\n",
        "grant_type=client_credentials",
    );
    assert_eq!(status, 400);
    assert!(body.contains("unsupported_grant_type"), "{body}");
    // Unknown routes: an empty 404.
    let (status, body) = raw(
        addr,
        "GET /v2/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body.as_str()), (404, ""));
}

/// A user with two provisioned devices (A connected with Tinker, B offline).
async fn with_devices(hub: &Arc<ScriptedHub>, addr: SocketAddr) -> Client {
    create_user(addr, "joe", "pw");
    let joe = login(&client(addr), "joe", "pw").await;
    joe.send_public_key(DEV_A, DEVICE_A_KEY, Some("rsa"))
        .await
        .unwrap();
    joe.send_public_key(DEV_B, DEVICE_B_KEY, None)
        .await
        .unwrap();
    hub.connect(DEV_A.parse().unwrap(), tinker());
    joe
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_list_info_call_get() {
    let dir = TempDir::new(true);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    let joe = with_devices(&hub, running.http).await;

    let list = joe.list_devices().await.unwrap();
    let ids: Vec<_> = list
        .iter()
        .map(|d| (d.id.to_string(), d.connected))
        .collect();
    assert_eq!(ids, [(DEV_B.to_owned(), false), (DEV_A.to_owned(), true)]);

    let info = joe.device(DEV_A).await.unwrap();
    assert!(info.connected);
    let functions = info.functions.unwrap();
    assert_eq!(functions, ["digitalwrite", "fail", "slowpoke"]);
    let variables = info.variables.unwrap();
    assert_eq!(variables["temperature"], "int32");
    assert_eq!(variables["label"], "string");
    assert_eq!(variables["ratio"], "double");
    let offline = joe.device(DEV_B).await.unwrap();
    assert!(!offline.connected && offline.functions.is_none() && offline.variables.is_none());

    // Rename, then address the device by its name.
    joe.rename_device(DEV_A, "kitchen").await.unwrap();
    let called = joe
        .call_function("kitchen", "digitalwrite", "D7,HIGH")
        .await
        .unwrap();
    assert_eq!(called.return_value, 1);
    let called = joe
        .call_function(DEV_A, "digitalwrite", "D0,HIGH")
        .await
        .unwrap();
    assert_eq!(called.return_value, -1);
    let e = joe.call_function(DEV_A, "nothing", "").await.unwrap_err();
    assert_eq!(status_of(&e), Some(404));
    let e = joe.call_function(DEV_A, "fail", "").await.unwrap_err();
    assert_eq!(status_of(&e), Some(400));
    let e = joe.call_function(DEV_A, "slowpoke", "").await.unwrap_err();
    assert_eq!(status_of(&e), Some(408));
    let e = joe
        .call_function(DEV_A, "digitalwrite", &"x".repeat(64))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(400));
    let e = joe
        .call_function(DEV_B, "digitalwrite", "")
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(404));

    let v = joe.variable(DEV_A, "temperature").await.unwrap();
    assert_eq!(v.result, spark_api::VariableValue::Int(21));
    assert_eq!(v.name.as_deref(), Some("temperature"));
    let v = joe.variable(DEV_A, "label").await.unwrap();
    assert_eq!(v.result, spark_api::VariableValue::String("kitchen".into()));
    let e = joe.variable(DEV_A, "humidity").await.unwrap_err();
    assert_eq!(status_of(&e), Some(404));

    // Another user cannot reach joe's devices; unknown ids are 404.
    create_user(running.http, "ann", "pw");
    let ann = login(&client(running.http), "ann", "pw").await;
    assert!(ann.list_devices().await.unwrap().is_empty());
    assert_eq!(status_of(&ann.device(DEV_A).await.unwrap_err()), Some(403));
    // By name, another user's device answers as no device at all.
    assert_eq!(
        status_of(&ann.device("kitchen").await.unwrap_err()),
        Some(404)
    );
    assert_eq!(
        status_of(&ann.device("nothing-by-that-name").await.unwrap_err()),
        Some(404)
    );
    assert_eq!(
        status_of(
            &ann.call_function(DEV_A, "digitalwrite", "")
                .await
                .unwrap_err()
        ),
        Some(403)
    );
    assert_eq!(
        status_of(
            &ann.send_public_key(DEV_A, DEVICE_B_KEY, None)
                .await
                .unwrap_err()
        ),
        Some(403)
    );
    assert_eq!(
        status_of(&joe.device("ffffffffffffffffffffffff").await.unwrap_err()),
        Some(404)
    );

    // Release, then the device presents another user's claim code: it is theirs.
    joe.release_device(DEV_A).await.unwrap();
    let code = claim_code(running.http, &ann);
    running
        .cloud
        .device_event(DEV_A, cloud::CLAIM_CODE_EVENT, Some(&code), 60, false);
    let claimed = ann.claim_device(DEV_A).await.unwrap();
    assert_eq!(claimed.ok, Some(true));
    assert_eq!(
        status_of(&joe.claim_device(DEV_A).await.unwrap_err()),
        Some(403)
    );
    assert_eq!(
        ann.call_function(DEV_A, "digitalwrite", "D7,LOW")
            .await
            .unwrap()
            .return_value,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_sse_subscribers_and_devices() {
    let dir = TempDir::new(true);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    let joe = with_devices(&hub, running.http).await;

    let mut all = joe.subscribe_all(Some("temp"));
    assert!(matches!(
        all.next_item().await,
        Some(Ok(StreamItem::Connected))
    ));
    let mut mine = joe.subscribe_mine(None);
    assert!(matches!(
        mine.next_item().await,
        Some(Ok(StreamItem::Connected))
    ));
    wait_for_subscribers(&running, 2).await;

    joe.publish(&Publish::new("humidity").data("50"))
        .await
        .unwrap();
    joe.publish(&Publish::new("temperature").data("21.5").ttl(30))
        .await
        .unwrap();
    let event = next_event(&mut all).await;
    assert_eq!(event.name, "temperature");
    assert_eq!(event.data.as_deref(), Some("21.5"));
    assert_eq!(event.ttl, Some(30));
    assert!(event.published_at.is_some());
    // The device received both publishes.
    let received = hub
        .with_device(DEV_A.parse().unwrap(), |d| d.received.clone())
        .unwrap();
    assert_eq!(
        received.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["humidity", "temperature"]
    );

    // A device event reaches "mine" with the device as coreid; a reserved name is refused.
    running
        .cloud
        .device_event(DEV_A, "motion", Some("yes"), 60, false);
    let event = next_event(&mut mine).await;
    assert_eq!(
        (event.name.as_str(), event.coreid.as_deref()),
        ("motion", Some(DEV_A))
    );
    let e = joe
        .publish(&Publish::new("spark/status").data("x"))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(400));
    let e = joe
        .publish(&Publish::new("x").data("d".repeat(64)))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(400));

    // The CC3000 version a Core reports shows in the device info.
    running
        .cloud
        .device_event(DEV_A, "spark/cc3000-patch-version", Some("1.24"), 60, false);
    let info = joe.device(DEV_A).await.unwrap();
    assert_eq!(info.cc3000_patch_version.as_deref(), Some("1.24"));
    assert_eq!(info.requires_deep_update, Some(true));
}

async fn next_event(stream: &mut spark_api::EventStream) -> spark_api::Event {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next_item()).await {
            Ok(Some(Ok(StreamItem::Event(e)))) => return e,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no event: {other:?}"),
        }
    }
}

async fn health(running: &Running) -> serde_json::Value {
    let (_, body) = raw(
        running.http,
        "GET /server/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    serde_json::from_str(&body).unwrap()
}

async fn wait_for_subscribers(running: &Running, n: usize) {
    for _ in 0..3000 {
        if running.cloud.bus().stats().subscribers == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "subscribers never reached {n}: {:?}",
        running.cloud.bus().stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_subscribers_are_freed() {
    let dir = TempDir::new(true);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    let joe = with_devices(&hub, running.http).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut s = joe.subscribe_device(DEV_A, None);
        assert!(matches!(
            s.next_item().await,
            Some(Ok(StreamItem::Connected))
        ));
        streams.push(s);
    }
    wait_for_subscribers(&running, 5).await;
    assert_eq!(health(&running).await["events"]["subscribers"], 5);
    // Closing the connections frees the subscribers without any event being published.
    drop(streams);
    wait_for_subscribers(&running, 0).await;
    assert_eq!(health(&running).await["events"]["subscribers"], 0);
    assert_eq!(running.cloud.bus().stats().published, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_over_the_air_reports_status_events() {
    let dir = TempDir::new(true);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    let joe = with_devices(&hub, running.http).await;
    let mut events = joe.subscribe_device(DEV_A, Some("spark/flash/status"));
    assert!(matches!(
        events.next_item().await,
        Some(Ok(StreamItem::Connected))
    ));
    wait_for_subscribers(&running, 1).await;

    let image: Vec<u8> = (0..100 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let result = joe
        .flash_binary(DEV_A, &FirmwareFile::new("tinker.bin", image.clone()))
        .await
        .unwrap();
    assert_eq!(result.status.as_deref(), Some("Update started"));
    assert_eq!(
        next_event(&mut events).await.data.as_deref(),
        Some("started tinker.bin")
    );
    assert_eq!(
        next_event(&mut events).await.data.as_deref(),
        Some("success tinker.bin")
    );
    let flashed = hub
        .with_device(DEV_A.parse().unwrap(), |d| d.flashed.clone())
        .unwrap();
    assert_eq!(flashed.len(), 1);
    assert_eq!(&flashed[0][..], &image[..]);
    assert_eq!(
        joe.device(DEV_A).await.unwrap().last_app.as_deref(),
        Some("tinker.bin")
    );

    // Offline device: refused.
    let e = joe
        .flash_binary(DEV_B, &FirmwareFile::new("tinker.bin", image))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_persists_across_restarts_and_key_is_generated() {
    let dir = TempDir::new(false);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    let key = std::fs::read_to_string(dir.0.join("default_key.pem")).unwrap();
    let public = std::fs::read_to_string(dir.0.join("default_key.pub.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    let joe = with_devices(&hub, running.http).await;
    joe.rename_device(DEV_B, "garage").await.unwrap();
    let token = joe.access_token().unwrap().clone();
    drop(running);

    let running = start(&dir.0, Arc::clone(&hub)).await;
    assert_eq!(
        std::fs::read_to_string(dir.0.join("default_key.pem")).unwrap(),
        key
    );
    let joe = client(running.http).with_token(token);
    let list = joe.list_devices().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(joe.device("garage").await.unwrap().id, DEV_B);
    assert!(
        running
            .cloud
            .state()
            .expect("the embedded store")
            .device_key(DEV_A)
            .is_some()
    );
    assert!(
        running
            .cloud
            .state()
            .expect("the embedded store")
            .device_key("ffffffffffffffffffffffff")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_without_an_owner_is_reachable_by_no_one_until_it_presents_a_claim_code() {
    let dir = TempDir::new(true);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    let joe = with_devices(&hub, running.http).await;
    joe.release_device(DEV_A).await.unwrap();
    create_user(running.http, "ann", "pw");
    let ann = login(&client(running.http), "ann", "pw").await;
    let key_before = running
        .cloud
        .state()
        .expect("the embedded store")
        .device_key(DEV_A)
        .unwrap();

    for user in [&joe, &ann] {
        // Not listed, and every action answers as for an unknown device.
        assert!(
            user.list_devices()
                .await
                .unwrap()
                .iter()
                .all(|d| d.id != DEV_A)
        );
        assert_eq!(status_of(&user.device(DEV_A).await.unwrap_err()), Some(404));
        let e = user
            .call_function(DEV_A, "digitalwrite", "D7,HIGH")
            .await
            .unwrap_err();
        assert_eq!(status_of(&e), Some(404));
        let e = user.variable(DEV_A, "temperature").await.unwrap_err();
        assert_eq!(status_of(&e), Some(404));
        let e = user.rename_device(DEV_A, "mine").await.unwrap_err();
        assert_eq!(status_of(&e), Some(404));
        let e = user
            .flash_binary(DEV_A, &FirmwareFile::new("app.bin", vec![1, 2, 3]))
            .await
            .unwrap_err();
        assert_eq!(status_of(&e), Some(404));
        let mut stream = user.subscribe_device(DEV_A, None);
        match stream.next_item().await {
            Some(Err(e)) => assert_eq!(status_of(&e), Some(404)),
            other => panic!("subscribing to a device without owner: {other:?}"),
        }
        // Claiming by id alone is no proof.
        let e = user.claim_device(DEV_A).await.unwrap_err();
        assert_eq!(status_of(&e), Some(404));
        // Nor may anyone replace its key.
        let e = user
            .send_public_key(DEV_A, DEVICE_B_KEY, None)
            .await
            .unwrap_err();
        assert_eq!(status_of(&e), Some(403));
    }
    assert!(
        running
            .cloud
            .state()
            .expect("the embedded store")
            .device_key(DEV_A)
            .unwrap()
            == key_before
    );
    assert_eq!(
        running
            .cloud
            .state()
            .expect("the embedded store")
            .device(DEV_A)
            .unwrap()
            .owner,
        None
    );

    // A made-up code claims nothing; ann's code, presented by the device, makes it hers, once.
    running
        .cloud
        .device_event(DEV_A, cloud::CLAIM_CODE_EVENT, Some("0123"), 60, false);
    assert_eq!(
        running
            .cloud
            .state()
            .expect("the embedded store")
            .device(DEV_A)
            .unwrap()
            .owner,
        None
    );
    let code = claim_code(running.http, &ann);
    running
        .cloud
        .device_event(DEV_A, cloud::CLAIM_CODE_EVENT, Some(&code), 60, false);
    assert_eq!(ann.device(DEV_A).await.unwrap().id, DEV_A);
    assert_eq!(status_of(&joe.device(DEV_A).await.unwrap_err()), Some(403));
    joe.release_device(DEV_B).await.unwrap();
    assert_eq!(
        running.cloud.claim_with_code(DEV_B, &code),
        Err(cloud::ClaimError::UnknownCode)
    );
    // The administrator's step.
    running.cloud.assign_owner(DEV_B, Some("joe")).unwrap();
    assert_eq!(joe.device(DEV_B).await.unwrap().id, DEV_B);
    assert_eq!(
        running.cloud.assign_owner(DEV_B, Some("nobody")),
        Err(cloud::ClaimError::UnknownUser)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_codes_survive_a_restart_stored_as_digests_and_stay_single_use() {
    let dir = TempDir::new(true);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    let joe = with_devices(&hub, running.http).await;
    joe.release_device(DEV_A).await.unwrap();
    create_user(running.http, "ann", "pw");
    let ann = login(&client(running.http), "ann", "pw").await;
    let code = claim_code(running.http, &ann);
    running.shutdown();

    // On disk: the code's digest only, in a private file.
    let file = dir.0.join("claims.json");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains(&code), "{stored}");
    assert!(
        stored.contains(&cloud::state::token_digest(&code)),
        "{stored}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // After a restart the device presents the code: it is ann's, and the code is used up, for good.
    let running = start(&dir.0, Arc::clone(&hub)).await;
    assert_eq!(
        running.cloud.claim_with_code(DEV_A, &code),
        Ok("ann".to_owned())
    );
    running.cloud.assign_owner(DEV_A, None).unwrap();
    assert_eq!(
        running.cloud.claim_with_code(DEV_A, &code),
        Err(cloud::ClaimError::UnknownCode)
    );
    running.shutdown();
    let running = start(&dir.0, hub).await;
    assert_eq!(
        running.cloud.claim_with_code(DEV_A, &code),
        Err(cloud::ClaimError::UnknownCode)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_key_and_owner_files_are_migrated_into_one_record() {
    let dir = TempDir::new(true);
    let keys = dir.0.join("core_keys");
    std::fs::create_dir_all(&keys).unwrap();
    // The old layout: a key with its attributes, and a key whose attributes a crash never wrote.
    std::fs::write(keys.join(format!("{DEV_A}.pub.pem")), DEVICE_A_KEY).unwrap();
    std::fs::write(
        keys.join(format!("{DEV_A}.json")),
        r#"{"name":"kitchen","owner":"joe"}"#,
    )
    .unwrap();
    std::fs::write(keys.join(format!("{DEV_B}.pub.pem")), DEVICE_B_KEY).unwrap();
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    create_user(running.http, "joe", "pw");
    let joe = login(&client(running.http), "joe", "pw").await;
    let list = joe.list_devices().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(joe.device("kitchen").await.unwrap().id, DEV_A);
    // The key without an owner is a device no one reaches.
    assert_eq!(status_of(&joe.device(DEV_B).await.unwrap_err()), Some(404));
    for id in [DEV_A, DEV_B] {
        assert!(!keys.join(format!("{id}.pub.pem")).exists());
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(keys.join(format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        assert!(
            record["public_key"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
    }
    drop(running);
    let running = start(&dir.0, Arc::clone(&hub)).await;
    assert_eq!(
        running
            .cloud
            .state()
            .expect("the embedded store")
            .device(DEV_A)
            .unwrap()
            .owner
            .as_deref(),
        Some("joe")
    );
    assert!(
        running
            .cloud
            .state()
            .expect("the embedded store")
            .device_key(DEV_B)
            .is_some()
    );
}

/// Opens `GET path` with a bearer token as a raw event stream and waits for its `:ok`.
fn open_stream(addr: SocketAddr, path: &str, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(":ok") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed before :ok");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

fn read_until(s: &mut TcpStream, needle: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed before {needle}");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Everything the stream sends until the cloud closes it (panics if it stays open 30 s).
fn rest_of_stream(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the stream was not ended by the cloud");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_end_when_their_token_is_revoked_or_expires() {
    let dir = TempDir::new(true);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    let http = running.http;
    let joe = with_devices(&hub, http).await;
    let revoked = joe.access_token().unwrap().expose().to_owned();
    let anonymous = client(http);
    let short = anonymous
        .login(&Credentials::new("joe", "pw"), TokenLifetime::Seconds(2))
        .await
        .unwrap()
        .access_token
        .expose()
        .to_owned();
    let forever = anonymous
        .login(&Credentials::new("joe", "pw"), TokenLifetime::Never)
        .await
        .unwrap()
        .access_token
        .expose()
        .to_owned();
    let streams = tokio::task::spawn_blocking(move || {
        [&revoked, &short, &forever].map(|t| open_stream(http, "/v1/devices/events", t))
    })
    .await
    .unwrap();
    let [mut s_revoked, mut s_short, mut s_forever] = streams;
    // Until then, each stream carries the user's private events.
    running
        .cloud
        .device_event(DEV_A, "private-before", Some("x"), 60, false);
    for s in [&mut s_revoked, &mut s_short, &mut s_forever] {
        read_until(s, "private-before");
    }

    // Revoked through the API: the stream ends and the private event published after never reaches it.
    let (status, _) = raw(
        http,
        &format!(
            "DELETE /v1/access_tokens/current HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
Authorization: Bearer {}\r\n\r\n",
            joe.access_token().unwrap().expose()
        ),
    );
    assert_eq!(status, 200);
    running
        .cloud
        .device_event(DEV_A, "secret-after-revoke", Some("x"), 60, false);
    let rest = tokio::task::spawn_blocking(move || rest_of_stream(&mut s_revoked))
        .await
        .unwrap();
    assert!(!rest.contains("secret-after-revoke"), "{rest}");

    // Expired: the stream ends by itself.
    let rest = tokio::task::spawn_blocking(move || rest_of_stream(&mut s_short))
        .await
        .unwrap();
    running
        .cloud
        .device_event(DEV_A, "secret-after-expiry", Some("x"), 60, false);
    assert!(!rest.contains("secret-after-expiry"), "{rest}");

    // All of the user's tokens revoked: the never-expiring token's stream ends too.
    assert_eq!(running.cloud.revoke_all_tokens("joe").unwrap(), 2);
    running
        .cloud
        .device_event(DEV_A, "secret-after-all", Some("x"), 60, false);
    let rest = tokio::task::spawn_blocking(move || rest_of_stream(&mut s_forever))
        .await
        .unwrap();
    assert!(!rest.contains("secret-after-all"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifetimes_are_bounded_and_the_loader_refuses_what_it_cannot_represent() {
    let dir = TempDir::new(true);
    let hub = Arc::new(ScriptedHub::new());
    let running = start(&dir.0, Arc::clone(&hub)).await;
    create_user(running.http, "joe", "pw");
    let grant = |expires_in: &str| {
        post_form(
            running.http,
            "/oauth/token",
            "",
            &format!(
                "grant_type=password&username=joe&password=pw&client_id=spark&client_secret=spark\
&expires_in={expires_in}"
            ),
        )
    };
    let max = cloud::state::MAX_TOKEN_LIFETIME.as_secs();
    for too_long in [
        "18446744073709551615".to_owned(),
        "1000000000000".to_owned(),
        (max + 1).to_string(),
    ] {
        let (status, body) = grant(&too_long);
        assert_eq!(status, 400, "{too_long}: {body}");
        assert!(body.contains("invalid_request"), "{body}");
    }
    let (status, body) = grant(&max.to_string());
    assert_eq!(status, 200, "{body}");
    // Listing the tokens works, and shows the longest expiry.
    let (status, body) = raw(
        running.http,
        "GET /v1/access_tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic am9lOnB3\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("expires_at").count(), 1);
    drop(running);

    // A user file with an expiry past what a date can show is refused by the loader, naming the file.
    let path = dir.0.join("users").join("joe.json");
    let mut user: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    user["tokens"][0]["expires_at"] = serde_json::json!(u64::MAX);
    std::fs::write(&path, serde_json::to_vec(&user).unwrap()).unwrap();
    let config = Config {
        dir: dir.0.clone(),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_bits: 1024,
    };
    let e = cloud::open(&config, hub).unwrap_err();
    assert!(e.to_string().contains("joe.json"), "{e}");
}
