//! The local cloud's device listener with real sessions: a `DeviceConnection` over TCP completes the handshake with
//! the key provisioned through the API, answers a function call and a variable read routed through the REST API,
//! publishes an event seen by an SSE subscriber; a device whose key is unknown is rejected.

#[path = "support/nats.rs"]
mod nats;
#[path = "support/cluster_nodes.rs"]
mod nodes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spark_api::{Client, Credentials, StreamItem, TokenLifetime};
use spark_cloud::devices::{self, LiveHub};
use spark_cloud::encoding::unhex;
use spark_cloud::hub::DeviceHub;
use spark_cloud::{self as cloud, Config, Running, system_rng};
use spark_protocol::crypto::RsaPrivateKey;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::session::Instant;
use spark_protocol::session::device::{
    BufferSink, DeviceConfig, DeviceConnection, DeviceEvent, RsaHandshake,
};
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::message::{Value, Visibility};

const SERVER_KEY: &str = include_str!("fixtures/server_key_2048.pem");
const DEVICE_KEY: &str = include_str!("fixtures/device_a.pem");
const DEVICE_PUB: &str = include_str!("fixtures/device_a.pub.pem");
const DEV_A: &str = "53ff6c065075535119511687";
const DEV_UNKNOWN: &str = "0123456789abcdef01234567";

struct Env {
    _dir: tempfile::TempDir,
    running: Running,
    device_addr: SocketAddr,
    hub: Arc<LiveHub>,
    _task: tokio::task::JoinHandle<()>,
}

async fn start(tag: &str) -> Env {
    let temp = tempfile::Builder::new()
        .prefix(&format!("spark-cloud-dev-{tag}-"))
        .tempdir()
        .unwrap();
    let dir = temp.path().to_owned();
    std::fs::write(dir.join("default_key.pem"), SERVER_KEY).unwrap();
    let config = Config {
        dir: dir.clone(),
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
        _dir: temp,
        running,
        device_addr,
        hub,
        _task: task,
    }
}

async fn user(env: &Env) -> Client {
    let base = Client::builder()
        .base_url(format!("http://{}", env.running.http))
        .no_proxy()
        .build()
        .unwrap();
    let form = "username=joe&password=pw";
    let status = reqwest_free_post(env.running.http, "/v1/users", form);
    assert_eq!(status, 200);
    let grant = base
        .login(&Credentials::new("joe", "pw"), TokenLifetime::Default)
        .await
        .unwrap();
    base.with_token(grant.access_token)
}

/// A form posted with no `Authorization` header (the token, if any, in the form): the status.
fn reqwest_free_post(addr: SocketAddr, path: &str, form: &str) -> u16 {
    nodes::http_anonymous(addr, "POST", path, form).0
}

type Device = DeviceConnection<
    BufferSink<'static>,
    RsaHandshake<RustCryptoPrivateKey, RustCryptoPublicKey, cloud::SystemRng>,
>;

fn device(id: &str) -> Device {
    let device_key = RsaPrivateKey::from_pem(DEVICE_KEY).unwrap();
    let server_key = RsaPrivateKey::from_pem(SERVER_KEY).unwrap().public_key();
    let hs = RsaHandshake::new(
        RustCryptoPrivateKey::new(&device_key.as_ref_key()).unwrap(),
        RustCryptoPublicKey::new(&server_key.as_ref_key()).unwrap(),
        system_rng(),
    );
    let flash: &'static mut [u8] = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
    let id: [u8; 12] = unhex(id).unwrap().try_into().unwrap();
    let mut dev = DeviceConnection::new(
        Instant::ZERO,
        DeviceConfig::new(id),
        hs,
        BufferSink::new(flash),
    );
    dev.register_function(b"led").unwrap();
    dev.register_variable(b"temp", VarType::Int).unwrap();
    dev
}

/// Runs a device: `led` returns the argument's length, `temp` reads 23, and it publishes `booted` once connected.
/// Returns how the session ended.
async fn run_device(addr: SocketAddr, id: &str) -> String {
    run_device_reporting(addr, id, None).await
}

/// As [`run_device`], sending each image the device commits on `flashed`.
async fn run_device_reporting(
    addr: SocketAddr,
    id: &str,
    flashed: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
) -> String {
    run_device_publishing(addr, id, flashed, b"booted").await
}

/// As [`run_device_reporting`], publishing `first` (then `booted`) once connected.
async fn run_device_publishing(
    addr: SocketAddr,
    id: &str,
    flashed: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
    first: &'static [u8],
) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut d = Driver::with_vec(device(id), Tokio(stream), TokioClock::new());
    loop {
        let event = match d.next_event().await {
            Ok(e) => e,
            Err(e) => return format!("{e:?}"),
        };
        let now = d.now();
        let conn = d.connection_mut();
        match event {
            DeviceEvent::Connected => {
                if first != b"booted" {
                    conn.publish(now, first, Some(b"x"), Visibility::Private, 60)
                        .unwrap();
                }
                conn.publish(now, b"booted", Some(b"yes"), Visibility::Private, 60)
                    .unwrap();
            }
            DeviceEvent::FunctionCall(call) => {
                let len = call.argument.len() as i32;
                conn.function_return(call.call, len).unwrap();
            }
            DeviceEvent::VariableRequest(req) => {
                conn.variable_value(req.request, Value::Int(23)).unwrap();
            }
            DeviceEvent::UpdateFinished { .. } => {
                if let (Some(tx), Some(image)) = (&flashed, conn.sink().committed()) {
                    let _ = tx.send(image.to_vec());
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connects_and_answers_through_the_api() {
    let env = start("ok").await;
    let joe = user(&env).await;
    joe.send_public_key(DEV_A, DEVICE_PUB, Some("rsa"))
        .await
        .unwrap();
    let mut events = joe.subscribe_mine(None);
    assert!(matches!(
        events.next_item().await,
        Some(Ok(StreamItem::Connected))
    ));
    while env.running.cloud.bus().stats().subscribers == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let device = tokio::spawn(run_device(env.device_addr, DEV_A));
    // spark/status online, then the device's own event.
    let mut names = Vec::new();
    while names.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(60), events.next_item()).await {
            Ok(Some(Ok(StreamItem::Event(e)))) => names.push((e.name, e.data, e.coreid)),
            Ok(Some(Ok(_))) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
    assert_eq!(names[0].0, "spark/status");
    assert_eq!(names[0].1.as_deref(), Some("online"));
    assert_eq!(
        names[1],
        ("booted".into(), Some("yes".into()), Some(DEV_A.into()))
    );
    assert!(env.hub.is_connected(DEV_A.parse().unwrap()));

    let info = joe.device(DEV_A).await.unwrap();
    assert!(info.connected);
    assert_eq!(info.functions.as_deref(), Some(&["led".to_owned()][..]));
    assert_eq!(info.variables.unwrap()["temp"], "int32");
    assert_eq!(
        joe.call_function(DEV_A, "led", "on")
            .await
            .unwrap()
            .return_value,
        2
    );
    assert_eq!(
        joe.call_function(DEV_A, "led", "12345")
            .await
            .unwrap()
            .return_value,
        5
    );
    assert_eq!(
        joe.variable(DEV_A, "temp").await.unwrap().result,
        spark_api::VariableValue::Int(23)
    );
    let e = joe.call_function(DEV_A, "nope", "").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    let e = joe.variable(DEV_A, "nope").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    device.abort();
    // The hub lets go of the device once its connection closes.
    for _ in 0..3000 {
        if !env.hub.is_connected(DEV_A.parse().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!env.hub.is_connected(DEV_A.parse().unwrap()));
    assert_eq!(env.hub.connected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_device_key_is_rejected() {
    let env = start("unknown").await;
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        run_device(env.device_addr, DEV_UNKNOWN),
    )
    .await
    .expect("the cloud closes the connection");
    // The cloud closed it as soon as the handshake failed: the device did not have to give up on its own
    // handshake timeout (20 s), as it did when a connection whose session had ended could park.
    assert_eq!(ended, "Session(TransportClosed)");
    assert!(!env.hub.is_connected(DEV_UNKNOWN.parse().unwrap()));
    assert_eq!(env.hub.connected(), 0);
    // The refusal was logged (stderr) with the id: a second one within the interval is not.
    assert!(!env.running.cloud.log_refusal(DEV_UNKNOWN, "again"));
    assert!(env.running.cloud.log_refusal(DEV_A, "another device"));
    assert!(!env.running.cloud.log_refusal(DEV_A, "another device"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_event_name_neither_breaks_the_connection_nor_strands_the_device() {
    let env = start("nonascii").await;
    let joe = user(&env).await;
    joe.send_public_key(DEV_A, DEVICE_PUB, Some("rsa"))
        .await
        .unwrap();
    let mut events = joe.subscribe_mine(Some("booted"));
    assert!(matches!(
        events.next_item().await,
        Some(Ok(StreamItem::Connected))
    ));
    // "spar" then a two-byte character: byte 5 is inside it.
    let device = tokio::spawn(run_device_publishing(
        env.device_addr,
        DEV_A,
        None,
        "spar\u{e9}".as_bytes(),
    ));
    loop {
        match tokio::time::timeout(Duration::from_secs(60), events.next_item()).await {
            Ok(Some(Ok(StreamItem::Event(e)))) if e.name == "booted" => break,
            Ok(Some(Ok(_))) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
    // The connection lives on and answers.
    assert_eq!(
        joe.call_function(DEV_A, "led", "on")
            .await
            .unwrap()
            .return_value,
        2
    );
    device.abort();
    // Once it is gone, a call answers "not connected" at once rather than waiting for a dead connection.
    for _ in 0..3000 {
        if !env.hub.is_connected(DEV_A.parse().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = joe.call_function(DEV_A, "led", "on").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_air_update_of_100_kib_arrives_byte_for_byte() {
    let env = start("ota").await;
    let joe = user(&env).await;
    joe.send_public_key(DEV_A, DEVICE_PUB, None).await.unwrap();
    let (tx, mut flashed) = tokio::sync::mpsc::unbounded_channel();
    let device = tokio::spawn(run_device_reporting(env.device_addr, DEV_A, Some(tx)));
    for _ in 0..6000 {
        if env.hub.is_connected(DEV_A.parse().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut status = joe.subscribe_device(DEV_A, Some("spark/flash"));
    assert!(matches!(
        status.next_item().await,
        Some(Ok(StreamItem::Connected))
    ));
    while env.running.cloud.bus().stats().subscribers == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut x = 0x1234_5678u32;
    let image: Vec<u8> = (0..100 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let started = joe
        .flash_binary(
            DEV_A,
            &spark_api::FirmwareFile::new("app.bin", image.clone()),
        )
        .await
        .unwrap();
    assert_eq!(started.status.as_deref(), Some("Update started"));
    let mut progress = 0;
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(120), status.next_item()).await {
            Ok(Some(Ok(StreamItem::Event(e)))) if e.name == "spark/flash/status" => {
                let data = e.data.unwrap_or_default();
                if !data.starts_with("started") {
                    break data;
                }
            }
            Ok(Some(Ok(StreamItem::Event(e)))) if e.name == "spark/flash/progress" => progress += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("stream ended: {other:?}"),
        }
    };
    assert_eq!(outcome, "success app.bin");
    assert!(progress >= 2, "progress events: {progress}");
    let committed = tokio::time::timeout(Duration::from_secs(60), flashed.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(committed == image, "the committed image differs");
    device.abort();
}
