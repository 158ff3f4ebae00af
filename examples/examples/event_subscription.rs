//! spark-api: an event stream (server-sent events) with the REST client, and a publish seen on it.
//!
//! ```text
//! cargo run --release -p examples --example event_subscription
//! SPARK_API_URL=http://127.0.0.1:8080 PARTICLE_ACCESS_TOKEN=... cargo run -p examples --example event_subscription
//! ```
//!
//! With a cloud and a token in the environment it subscribes there. Without, it starts a spark-cloud in this
//! process on loopback ports, signs a user up, provisions a spark-vcore virtual Core with the user's token and
//! starts it: the Core's own events (it publishes its CC3000 service pack at each connection) arrive on the user's
//! stream of their devices' events, and a public event published through the API on the public stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_api::{Client, Credentials, Publish, StreamItem, TokenLifetime};
use spark_cc3000::ServicePack;
use spark_cloud::devices::{self, LiveHub};
use spark_cloud::hub::DeviceHub;
use spark_vcore::VirtualCore;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig, run};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    // The in-process cloud serves until `_cloud` is dropped at the end of `main`.
    let (api, _cloud) = match (
        std::env::var("SPARK_API_URL"),
        std::env::var("PARTICLE_ACCESS_TOKEN"),
    ) {
        (Ok(url), Ok(token)) => (
            Client::builder().base_url(url).build()?.with_token(token),
            None,
        ),
        _ => {
            let (api, running) = local_cloud_with_a_core(scratch.path()).await?;
            (api, Some(running))
        }
    };
    let own_cloud = _cloud.is_some();

    // Every event of the user's devices, and the public events under `example/`. Each stream reconnects by itself
    // and says so with `Connected`; the first one means the cloud has registered the subscriber.
    let mut mine = api.subscribe_mine(None);
    let mut public = api.subscribe_all(Some("example/"));
    for stream in [&mut mine, &mut public] {
        match next(stream).await? {
            StreamItem::Connected => {}
            other => return Err(format!("expected the stream to connect, got {other:?}").into()),
        }
    }
    if own_cloud {
        // The Core publishes its CC3000 service pack each time it connects.
        loop {
            if let StreamItem::Event(e) = next(&mut mine).await? {
                println!("mine: {} from {:?}: {:?}", e.name, e.coreid, e.data);
                if e.name == "spark/cc3000-patch-version" {
                    break;
                }
            }
        }
    }
    let mut greeting = Publish::new("example/greeting");
    greeting.data = Some("hello from spark-api".into());
    greeting.private = false;
    api.publish(&greeting).await?;
    loop {
        if let StreamItem::Event(e) = next(&mut public).await? {
            println!("public: {} {:?}", e.name, e.data);
            if e.name == greeting.name {
                break;
            }
        }
    }
    Ok(())
}

/// The stream's next item, within 30 s.
async fn next(
    stream: &mut spark_api::EventStream,
) -> Result<StreamItem, Box<dyn std::error::Error>> {
    let item = tokio::time::timeout(Duration::from_secs(30), stream.next_item()).await?;
    Ok(item.ok_or("the stream ended")??)
}

/// A spark-cloud on loopback ports with its state in `dir`, a user's client, and that user's virtual Core online.
async fn local_cloud_with_a_core(
    dir: &std::path::Path,
) -> Result<(Client, spark_cloud::Running), Box<dyn std::error::Error>> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = spark_cloud::Config {
        dir: dir.join("cloud"),
        http: loopback,
        key_bits: 2048,
    };
    let hub = LiveHub::new();
    let cloud = spark_cloud::open(&config, Arc::clone(&hub) as Arc<dyn DeviceHub>)?;
    let server_key = cloud
        .server_keys()
        .ok_or("the server key cannot be read")?
        .current
        .public_key();
    // The device listener runs on its own task for the life of the runtime.
    let (device_addr, _listener) = devices::listen(Arc::clone(&cloud), hub, loopback).await?;
    // The hosted cloud has no sign-up call, so spark-api has none: the user is made on the cloud's side.
    spark_cloud::store::create_user(&**cloud.store(), "ada", "analytical engine").await?;
    let running = spark_cloud::serve(cloud, loopback).await?;
    let anonymous = Client::builder()
        .base_url(format!("http://{}", running.http))
        .no_proxy()
        .build()?;
    let grant = anonymous
        .login(
            &Credentials::new("ada", "analytical engine"),
            TokenLifetime::Default,
        )
        .await?;
    let api = anonymous.with_token(grant.access_token);

    let core = VirtualCore::create(&dir.join("core"), ServicePack::SP_1_24)?;
    let pem = core.key().public_key().to_spki_pem()?;
    api.send_public_key(core.id_hex(), &pem, Some("rsa"))
        .await?;
    let config = CloudConfig {
        address: device_addr.to_string(),
        server_key,
        faults: LinkFaults::default(),
        seed: 1,
        reconnect_delay: Duration::from_millis(200),
    };
    tokio::spawn(run(Arc::new(Mutex::new(core)), config, Box::new(|_| {})));
    Ok((api, running))
}
