//! spark-protocol, the device side: a Core's session over TCP on the blocking driver.
//!
//! ```text
//! cargo run --release -p examples --example device_session
//! ```
//!
//! The device registers a function and a variable, answers the cloud's call and read, and publishes an event.
//! Its peer is the cloud side of the same crate, run on a thread (see `cloud_listener` for that side on tokio):
//! the RSA handshake, the AES-128-CBC framing and the CoAP messages are the real protocol on a real socket.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use spark_protocol::crypto::RsaPrivateKey;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::session::cloud::{CloudConfig, CloudConnection, CloudEvent};
use spark_protocol::session::device::{
    DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware, RsaHandshake,
};
use spark_protocol::session::driver::{Clock, Driver, StdClock};
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::message::{Value, Visibility};

const DEVICE_ID: [u8; 12] = *b"\x53\xff\x6c\x06\x50\x75\x53\x51\x19\x51\x16\x87";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = StdRng::try_from_rng(&mut SysRng)?;
    // A Core holds a 1024-bit key of its own and the server's 2048-bit public key.
    let device_key = RsaPrivateKey::generate(&mut rng, 1024)?;
    let server_key = RsaPrivateKey::generate(&mut rng, 2048)?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let device_public = device_key.public_key();
    let server_private = server_key.clone();
    let cloud = std::thread::spawn(move || serve_one(listener, &server_private, &device_public));

    let handshake = RsaHandshake::new(
        RustCryptoPrivateKey::new(&device_key.as_ref_key())?,
        RustCryptoPublicKey::new(&server_key.public_key().as_ref_key())?,
        StdRng::try_from_rng(&mut SysRng)?,
    );
    let mut clock = StdClock::new();
    let config = DeviceConfig::new(DEVICE_ID);
    let mut device = DeviceConnection::new(clock.now(), config, handshake, NoFirmware);
    device.register_function(b"led")?;
    device.register_variable(b"temp", VarType::Double)?;

    let stream = TcpStream::connect(address)?;
    let mut driver = Driver::with_vec(device, stream, clock);
    // Events until the cloud hangs up.
    while let Ok(event) = driver.next_event() {
        let now = driver.now();
        let device = driver.connection_mut();
        match event {
            DeviceEvent::Connected => println!("device: connected to {address}"),
            DeviceEvent::FunctionCall(call) => {
                let arg = String::from_utf8_lossy(&call.argument);
                println!("device: {}({arg})", String::from_utf8_lossy(&call.name));
                device.function_return(call.call, i32::from(arg == "on"))?;
            }
            DeviceEvent::VariableRequest(read) => {
                device.variable_value(read.request, Value::Double(21.5))?;
                device.publish(now, b"lake/depth", Some(b"28m"), Visibility::Private, 60)?;
            }
            other => println!("device: {other:?}"),
        }
    }
    cloud.join().expect("the cloud thread")?;
    Ok(())
}

/// The cloud's half: accept one device, call `led`, read `temp`, wait for its event, hang up.
fn serve_one(
    listener: TcpListener,
    server: &RsaPrivateKey,
    device: &spark_protocol::crypto::RsaPublicKey,
) -> Result<(), String> {
    let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
    let keys = BTreeMap::from([(
        DEVICE_ID.into(),
        RustCryptoPublicKey::new(&device.as_ref_key()).map_err(|e| e.to_string())?,
    )]);
    let mut clock = StdClock::new();
    let rng = StdRng::try_from_rng(&mut SysRng).map_err(|e| e.to_string())?;
    let server_key = RustCryptoPrivateKey::new(&server.as_ref_key()).map_err(|e| e.to_string())?;
    let cloud = CloudConnection::new(clock.now(), server_key, keys, rng, CloudConfig::default());
    let mut driver = Driver::with_vec(cloud, stream, clock);
    loop {
        let event = driver.next_event().map_err(|e| e.to_string())?;
        let now = driver.now();
        let cloud = driver.connection_mut();
        let result = match event {
            CloudEvent::Connected(_) => cloud.call_function(now, b"led", b"on").map(drop),
            CloudEvent::FunctionReturned { result, .. } => {
                println!("cloud: led returned {result:?}");
                cloud.read_variable(now, b"temp", VarType::Double).map(drop)
            }
            CloudEvent::VariableRead { result, .. } => {
                println!("cloud: temp = {result:?}");
                Ok(())
            }
            CloudEvent::Published(e) => {
                let data = e.data.as_deref().map(String::from_utf8_lossy);
                println!("cloud: event {} {data:?}", String::from_utf8_lossy(&e.name));
                return Ok(());
            }
            _ => Ok(()),
        };
        result.map_err(|e| e.to_string())?;
    }
}
