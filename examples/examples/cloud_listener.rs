//! spark-protocol, the cloud side: a device listener on tokio that greets every Core that connects.
//!
//! ```text
//! cargo run --release -p examples --example cloud_listener
//! ```
//!
//! For each connection it runs a `CloudConnection` on the tokio driver: the RSA handshake against the device keys it
//! knows, then the description (functions and variables), a Tinker call and a variable read, and the events the
//! Core publishes. The Core that connects is a real peer: a spark-vcore virtual Core (Tinker, a CC3000 that
//! reports its service pack), run in the same process on a scratch directory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use spark_cc3000::ServicePack;
use spark_protocol::crypto::RsaPrivateKey;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent, VariableValue};
use spark_protocol::session::driver::Clock;
use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
use spark_protocol::wire::describe::VarType;
use spark_vcore::VirtualCore;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{CloudConfig as CoreCloud, run};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server_key = RsaPrivateKey::generate(&mut StdRng::try_from_rng(&mut SysRng)?, 2048)?;
    let scratch = tempfile::tempdir()?;
    let core = VirtualCore::create(scratch.path(), ServicePack::SP_1_24)?;
    // The device keys the cloud knows, by device id (a map, or any `DeviceKeys` store).
    let keys = BTreeMap::from([(
        core.id(),
        RustCryptoPublicKey::new(&core.key().public_key().as_ref_key())?,
    )]);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    println!("listening for Cores on {address}");
    let config = CoreCloud {
        address: address.to_string(),
        server_key: server_key.public_key(),
        faults: LinkFaults::default(),
        seed: 1,
        reconnect_delay: Duration::from_secs(1),
    };
    let core = Arc::new(Mutex::new(core));
    tokio::spawn(run(core, config, Box::new(|_| {})));

    let (stream, peer) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let mut clock = TokioClock::new();
    let cloud = CloudConnection::new(
        clock.now(),
        RustCryptoPrivateKey::new(&server_key.as_ref_key())?,
        keys,
        StdRng::try_from_rng(&mut SysRng)?,
        CloudConfig::default(),
    );
    let mut driver = Driver::with_vec(cloud, Tokio(stream), clock);
    let (mut read, mut published) = (false, false);
    while !(read && published) {
        let event = driver.next_event().await?;
        let now = driver.now();
        let cloud = driver.connection_mut();
        match event {
            CloudEvent::Connected(info) => {
                println!("{peer}: Core {} is online", info.device_id);
                let _ = cloud.describe(now)?;
            }
            CloudEvent::Described { result, .. } => {
                println!("described: {}", String::from_utf8_lossy(&result?));
                let _ = cloud.call_function(now, b"digitalwrite", b"D7,HIGH")?;
            }
            CloudEvent::FunctionReturned { result, .. } => {
                println!("digitalwrite(D7,HIGH) returned {}", result?);
                let _ = cloud.read_variable(now, b"cc3000", VarType::String)?;
            }
            CloudEvent::VariableRead { result, .. } => {
                match result? {
                    VariableValue::String(text) => println!("cc3000 = {text}"),
                    other => println!("cc3000 = {other:?}"),
                }
                read = true;
            }
            CloudEvent::Published(e) => {
                let data = e.data.as_deref().map(String::from_utf8_lossy);
                println!("event {} {data:?}", String::from_utf8_lossy(&e.name));
                published = true;
            }
            other => println!("{other:?}"),
        }
    }
    Ok(())
}
