//! Server key rotation over real sockets: devices on the old and the new key connected at once, the REST listing
//! of who still uses the old key, retirement refusing the old key, and a restart during the window keeping both.

#[path = "support/nats.rs"]
mod nats;
#[path = "support/cluster_nodes.rs"]
mod nodes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spark_api::{Client, Credentials, TokenLifetime};
use spark_cloud::devices::{self, LiveHub};
use spark_cloud::encoding::unhex;
use spark_cloud::hub::DeviceHub;
use spark_cloud::{self as cloud, Cloud, Config, Running, system_rng};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::session::Instant;
use spark_protocol::session::device::{
    BufferSink, DeviceConfig, DeviceConnection, DeviceEvent, RsaHandshake,
};
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};

const SERVER_KEY: &str = include_str!("fixtures/server_key_2048.pem");
const DEVICE_KEY: &str = include_str!("fixtures/device_a.pem");
const DEVICE_PUB: &str = include_str!("fixtures/device_a.pub.pem");
const DEV_A: &str = "53ff6c065075535119511687";
const DEV_B: &str = "53ff6c065075535119511688";
const DEV_C: &str = "53ff6c065075535119511689";

struct Env {
    running: Running,
    device_addr: SocketAddr,
    hub: Arc<LiveHub>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &std::path::Path) -> Env {
    let config = Config {
        dir: dir.to_owned(),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_bits: 2048,
    };
    let hub = LiveHub::new();
    let cloud = cloud::open(&config, Arc::clone(&hub) as Arc<dyn DeviceHub>).unwrap();
    let (device_addr, task) = devices::listen(
        Arc::clone(&cloud),
        Arc::clone(&hub),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let running = cloud::serve(cloud, config.http).await.unwrap();
    Env {
        running,
        device_addr,
        hub,
        task,
    }
}

fn temp_dir(tag: &str) -> tempfile::TempDir {
    let temp = tempfile::Builder::new()
        .prefix(&format!("spark-cloud-rotate-{tag}-"))
        .tempdir()
        .unwrap();
    std::fs::write(temp.path().join("default_key.pem"), SERVER_KEY).unwrap();
    temp
}

async fn user(env: &Env, first: bool) -> Client {
    let base = Client::builder()
        .base_url(format!("http://{}", env.running.http))
        .no_proxy()
        .build()
        .unwrap();
    if first {
        assert_eq!(
            post_form(env.running.http, "/v1/users", "username=joe&password=pw"),
            200
        );
    }
    let grant = base
        .login(&Credentials::new("joe", "pw"), TokenLifetime::Default)
        .await
        .unwrap();
    base.with_token(grant.access_token)
}

/// A form posted with no `Authorization` header (the token, if any, in the form): the status.
fn post_form(addr: SocketAddr, path: &str, form: &str) -> u16 {
    nodes::http_anonymous(addr, "POST", path, form).0
}

fn old_public() -> RsaPublicKey {
    RsaPrivateKey::from_pem(SERVER_KEY).unwrap().public_key()
}

fn current_public(cloud: &Cloud) -> RsaPublicKey {
    cloud
        .state()
        .expect("the embedded store")
        .server_keys()
        .current
        .public_key()
}

/// Runs a Core holding `server` as the server's public key until its session ends; returns how it ended.
async fn run_core(addr: SocketAddr, id: &str, server: RsaPublicKey) -> String {
    let device_key = RsaPrivateKey::from_pem(DEVICE_KEY).unwrap();
    let hs = RsaHandshake::new(
        RustCryptoPrivateKey::new(&device_key.as_ref_key()).unwrap(),
        RustCryptoPublicKey::new(&server.as_ref_key()).unwrap(),
        system_rng(),
    );
    let flash: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let id: [u8; 12] = unhex(id).unwrap().try_into().unwrap();
    let dev = DeviceConnection::new(
        Instant::ZERO,
        DeviceConfig::new(id),
        hs,
        BufferSink::new(flash),
    );
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut d = Driver::with_vec(dev, Tokio(stream), TokioClock::new());
    loop {
        match d.next_event().await {
            Ok(DeviceEvent::Connected) | Ok(_) => {}
            Err(e) => return format!("{e:?}"),
        }
    }
}

/// Waits until `id` is connected (or its task ended: then panics with how).
async fn connected(env: &Env, id: &str, task: &tokio::task::JoinHandle<String>) {
    for _ in 0..6000 {
        if env.hub.is_connected(id.parse().unwrap()) {
            return;
        }
        assert!(
            !task.is_finished(),
            "{id} did not get through its handshake"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} did not connect");
}

/// The `server_key` field of `id` in `GET /v1/devices`.
async fn listed_key(joe: &Client, id: &str) -> Option<String> {
    let list = joe.list_devices().await.unwrap();
    list.into_iter()
        .find(|d| d.id == id)
        .and_then(|d| d.server_key)
}

/// A Core whose handshake should be refused: its session ends without it ever being connected.
async fn refused(env: &Env, id: &str, server: RsaPublicKey) {
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        run_core(env.device_addr, id, server),
    )
    .await
    .expect("the cloud ends a refused handshake");
    assert!(!ended.is_empty());
    assert!(!env.hub.is_connected(id.parse().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_both_keys_until_retired() {
    let temp = temp_dir("window");
    let env = start(temp.path()).await;
    let cloud = Arc::clone(&env.running.cloud);
    let joe = user(&env, true).await;
    for id in [DEV_A, DEV_B, DEV_C] {
        joe.send_public_key(id, DEVICE_PUB, Some("rsa"))
            .await
            .unwrap();
    }

    // Before the rotation: A on the only key.
    let a = tokio::spawn(run_core(env.device_addr, DEV_A, old_public()));
    connected(&env, DEV_A, &a).await;
    assert_eq!(listed_key(&joe, DEV_A).await.as_deref(), Some("current"));

    let keys = cloud.rotate_server_key().unwrap();
    assert!(keys.previous.is_some());
    assert_ne!(keys.current.public_key(), old_public());
    // A second rotation during the window would drop a key devices still use.
    assert!(cloud.rotate_server_key().is_err());
    // A stays connected through the rotation, now listed as still on the old key.
    assert!(env.hub.is_connected(DEV_A.parse().unwrap()));
    assert_eq!(listed_key(&joe, DEV_A).await.as_deref(), Some("previous"));

    // During the window: B on the new key and C on the old key both get in, beside A.
    let b = tokio::spawn(run_core(env.device_addr, DEV_B, current_public(&cloud)));
    connected(&env, DEV_B, &b).await;
    let c = tokio::spawn(run_core(env.device_addr, DEV_C, old_public()));
    connected(&env, DEV_C, &c).await;
    assert_eq!(listed_key(&joe, DEV_B).await.as_deref(), Some("current"));
    assert_eq!(listed_key(&joe, DEV_C).await.as_deref(), Some("previous"));
    assert!(env.hub.is_connected(DEV_A.parse().unwrap()));
    assert_eq!(env.hub.connected(), 3);

    // Retirement: connected devices stay, but a new handshake on the old key is refused.
    cloud.retire_server_key().unwrap();
    assert!(cloud.retire_server_key().is_err());
    assert!(env.hub.is_connected(DEV_A.parse().unwrap()));
    assert_eq!(listed_key(&joe, DEV_A).await.as_deref(), Some("retired"));
    c.abort();
    for _ in 0..3000 {
        if !env.hub.is_connected(DEV_C.parse().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    refused(&env, DEV_C, old_public()).await;
    // Moved to the new key, C gets in again.
    let c = tokio::spawn(run_core(env.device_addr, DEV_C, current_public(&cloud)));
    connected(&env, DEV_C, &c).await;
    assert_eq!(listed_key(&joe, DEV_C).await.as_deref(), Some("current"));
    for t in [a, b, c] {
        t.abort();
    }
    env.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_the_window_keeps_both_keys() {
    let temp = temp_dir("restart");
    let new_public = {
        let env = start(temp.path()).await;
        let joe = user(&env, true).await;
        joe.send_public_key(DEV_A, DEVICE_PUB, Some("rsa"))
            .await
            .unwrap();
        joe.send_public_key(DEV_B, DEVICE_PUB, Some("rsa"))
            .await
            .unwrap();
        let keys = env.running.cloud.rotate_server_key().unwrap();
        env.task.abort();
        env.running.shutdown();
        keys.current.public_key()
    };
    #[cfg(unix)]
    for name in ["default_key.pem", "previous_key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(temp.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }

    let env = start(temp.path()).await;
    let keys = env
        .running
        .cloud
        .state()
        .expect("the embedded store")
        .server_keys();
    assert_eq!(keys.current.public_key(), new_public);
    assert_eq!(keys.previous.map(|k| k.public_key()), Some(old_public()));
    let a = tokio::spawn(run_core(env.device_addr, DEV_A, old_public()));
    connected(&env, DEV_A, &a).await;
    let b = tokio::spawn(run_core(env.device_addr, DEV_B, new_public.clone()));
    connected(&env, DEV_B, &b).await;
    let joe = user(&env, false).await;
    assert_eq!(listed_key(&joe, DEV_A).await.as_deref(), Some("previous"));
    assert_eq!(listed_key(&joe, DEV_B).await.as_deref(), Some("current"));
    a.abort();
    b.abort();
    env.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_neither_is_refused_during_the_window() {
    let temp = temp_dir("neither");
    let env = start(temp.path()).await;
    let joe = user(&env, true).await;
    joe.send_public_key(DEV_A, DEVICE_PUB, Some("rsa"))
        .await
        .unwrap();
    let cloud = Arc::clone(&env.running.cloud);
    // Rotate, retire, rotate: the first key is now neither the current nor the previous one.
    let second = cloud.rotate_server_key().unwrap().current.public_key();
    cloud.retire_server_key().unwrap();
    cloud.rotate_server_key().unwrap();
    refused(&env, DEV_A, old_public()).await;
    // The reload from disk (what SIGHUP does) keeps accepting the previous key.
    cloud.reload_server_keys().unwrap();
    let a = tokio::spawn(run_core(env.device_addr, DEV_A, second));
    connected(&env, DEV_A, &a).await;
    a.abort();
    env.task.abort();
}

/// Reads `events` until it ends (or fails); panics if it shows an event named `forbidden` first.
async fn stream_ends_without(events: &mut spark_api::EventStream, forbidden: &str) {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), events.next_item()).await {
            Ok(Some(Ok(spark_api::StreamItem::Event(e)))) => {
                assert_ne!(e.name, forbidden, "the stream outlived its token")
            }
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) => return,
            Err(_) => panic!("the stream stayed open after its token was invalidated"),
        }
    }
}

/// Subscribes to `joe`'s events and waits until the cloud holds the subscriber.
async fn subscribed(env: &Env, joe: &Client) -> spark_api::EventStream {
    let mut events = joe.subscribe_mine(None);
    assert!(matches!(
        events.next_item().await,
        Some(Ok(spark_api::StreamItem::Connected))
    ));
    while env.running.cloud.bus().stats().subscribers == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    events
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_before_cuts_open_streams_and_refuses_older_tokens() {
    let temp = temp_dir("tokens");
    let env = start(temp.path()).await;
    let joe = user(&env, true).await;
    joe.send_public_key(DEV_A, DEVICE_PUB, Some("rsa"))
        .await
        .unwrap();
    let mut events = subscribed(&env, &joe).await;
    // Token times are whole seconds: the cut-off falls strictly after the token's second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cutoff = now_secs();
    assert_eq!(
        env.running.cloud.invalidate_tokens_before(cutoff).unwrap(),
        1
    );
    env.running
        .cloud
        .device_event(DEV_A, "secret-after-cutoff", Some("x"), 60, false);
    stream_ends_without(&mut events, "secret-after-cutoff").await;
    let e = joe.list_devices().await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    // A token issued after the cut-off works; the cut-off survives a restart.
    let fresh = user(&env, false).await;
    assert_eq!(fresh.list_devices().await.unwrap().len(), 1);
    env.task.abort();
    env.running.shutdown();
    let state = spark_cloud::state::StateDir::open(temp.path(), 2048, &mut system_rng()).unwrap();
    assert_eq!(state.tokens_not_before(), cutoff);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cutoff_reaches_a_running_cloud_on_reload() {
    let temp = temp_dir("tokens-admin");
    let env = start(temp.path()).await;
    let joe = user(&env, true).await;
    joe.send_public_key(DEV_A, DEVICE_PUB, Some("rsa"))
        .await
        .unwrap();
    let mut events = subscribed(&env, &joe).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // What `spark-cloud tokens invalidate-before` does: its own StateDir on the running cloud's directory.
    let admin = spark_cloud::state::StateDir::open(temp.path(), 2048, &mut system_rng()).unwrap();
    assert_eq!(admin.invalidate_tokens_before(now_secs()).unwrap().len(), 1);
    drop(admin);
    // What SIGHUP does.
    env.running.cloud.reload_admin_files().unwrap();
    env.running
        .cloud
        .device_event(DEV_A, "secret-after-reload", Some("x"), 60, false);
    stream_ends_without(&mut events, "secret-after-reload").await;
    assert_eq!(joe.list_devices().await.unwrap_err().status(), Some(401));
    env.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_through_the_api_cuts_open_streams() {
    let temp = temp_dir("revoke-all");
    let env = start(temp.path()).await;
    let joe = user(&env, true).await;
    let other = user(&env, false).await;
    joe.send_public_key(DEV_A, DEVICE_PUB, Some("rsa"))
        .await
        .unwrap();
    let mut events = subscribed(&env, &other).await;
    let revoked = joe
        .delete_all_access_tokens(&Credentials::new("joe", "pw"))
        .await
        .unwrap();
    assert_eq!(revoked, Some(2));
    env.running
        .cloud
        .device_event(DEV_A, "secret-after-revoke-all", Some("x"), 60, false);
    stream_ends_without(&mut events, "secret-after-revoke-all").await;
    assert_eq!(joe.list_devices().await.unwrap_err().status(), Some(401));
    assert!(
        joe.list_access_tokens(&Credentials::new("joe", "pw"))
            .await
            .unwrap()
            .is_empty()
    );
    env.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_device_key_change_the_old_device_key_is_refused() {
    // What `spark keys doctor` ends with on a Core whose key was exposed: the new public key sent to the cloud.
    let temp = temp_dir("device-key");
    let env = start(temp.path()).await;
    let joe = user(&env, true).await;
    joe.send_public_key(DEV_A, DEVICE_PUB, Some("rsa"))
        .await
        .unwrap();
    let a = tokio::spawn(run_core(env.device_addr, DEV_A, old_public()));
    connected(&env, DEV_A, &a).await;
    a.abort();
    for _ in 0..3000 {
        if !env.hub.is_connected(DEV_A.parse().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    joe.send_public_key(
        DEV_A,
        include_str!("fixtures/device_b.pub.pem"),
        Some("rsa"),
    )
    .await
    .unwrap();
    // The attacker's copy of the old device key no longer gets in.
    refused(&env, DEV_A, old_public()).await;
    env.task.abort();
}
