//! A bare-metal binary linking the DTLS client, to measure its flash and RAM with no heap.
//!
//! Every input comes through `black_box`, so nothing is constant-folded away. The connection
//! lives on the stack; its size is exported as `DTLS_CONNECTION_SIZE` (readable from the ELF
//! symbol table) and adds to static RAM when a port keeps it in a static.

#![no_std]
#![no_main]

#[path = "../../footprint/src/bare.rs"]
mod bare;

use core::convert::Infallible;
use core::hint::black_box;

#[cfg(not(feature = "datagram"))]
use spark_protocol::dtls::Event;
use spark_protocol::dtls::{ClientConfig, Connection, PrivateKey, PublicKey};
use spark_protocol::session::Instant;

/// A stand-in for the MCU's entropy source.
struct HwRng;

impl rand_core::TryRng for HwRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(black_box(4))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(black_box(4))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        dst.fill(black_box(4));
        Ok(())
    }
}

impl rand_core::TryCryptoRng for HwRng {}

/// `size_of::<Connection>()` on this target.
#[unsafe(no_mangle)]
#[used]
pub static DTLS_CONNECTION_SIZE: usize = core::mem::size_of::<Connection>();

static DATAGRAM: [u8; 256] = [0; 256];
static DEVICE_KEY: [u8; 32] = [1; 32];
static SERVER_KEY: [u8; 65] = [4; 65];

#[cfg(not(feature = "datagram"))]
fn run(mut conn: Connection) {
    let mut out = [0u8; 1024];
    let mut rx = [0u8; 512];
    let mut now = 0u64;
    loop {
        now += black_box(10);
        let t = Instant::from_millis(now);
        let input: &[u8] = black_box(&DATAGRAM);
        if conn.handle_datagram(t, input).is_err() {
            break;
        }
        let _ = conn.handle_timeout(t);
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::Connected { .. } => {
                    if let Ok(n) = conn.send(black_box(b"hello"), &mut out) {
                        black_box(&out[..n]);
                    }
                    black_box(conn.session());
                }
                Event::ApplicationData => {
                    while let Ok(Some(n)) = conn.recv(&mut rx) {
                        black_box(&rx[..n]);
                    }
                }
                other => {
                    let _ = black_box(other);
                }
            }
        }
        while let Ok(Some(n)) = conn.poll_transmit(&mut out) {
            black_box(&out[..n]);
        }
        black_box(conn.poll_timeout());
    }
    black_box(conn.error());
}

#[cfg(feature = "datagram")]
mod datagram {
    use super::*;
    use spark_protocol::session::datagram::DatagramSession;
    use spark_protocol::session::device::{
        DeviceConfig, DeviceConnection, DeviceEvent, NoFirmware,
    };
    use spark_protocol::wire::message::Visibility;

    pub type Session = DatagramSession<DeviceConnection<NoFirmware>, HwRng>;

    /// `size_of` the device's whole UDP session (DTLS, CoAP reliability, the session) here.
    #[unsafe(no_mangle)]
    #[used]
    pub static DATAGRAM_SESSION_SIZE: usize = core::mem::size_of::<Session>();

    pub fn run(conn: Connection) {
        let mut rng = HwRng;
        let mut device = DeviceConnection::datagram(
            Instant::ZERO,
            DeviceConfig::new(black_box([7u8; 12])),
            NoFirmware,
            &mut rng,
        );
        let _ = device.register_function(b"brew");
        let mut session: Session = DatagramSession::new(device, conn, rng);
        let mut out = [0u8; 1200];
        let mut now = 0u64;
        loop {
            now += black_box(10);
            let t = Instant::from_millis(now);
            let input: &[u8] = black_box(&DATAGRAM);
            if session.handle_datagram(t, input).is_err() {
                break;
            }
            let _ = session.handle_timeout(t);
            while let Some(ev) = session.poll_event() {
                match ev {
                    DeviceEvent::FunctionCall(call) => {
                        let _ = session.session_mut().function_return(call.call, 1);
                    }
                    DeviceEvent::Connected => {
                        let _ =
                            session
                                .session_mut()
                                .publish(t, b"up", None, Visibility::Private, 60);
                    }
                    other => {
                        let _ = black_box(other);
                    }
                }
            }
            while let Ok(Some(n)) = session.poll_transmit(t, &mut out) {
                black_box(&out[..n]);
            }
            black_box(session.poll_timeout());
            black_box(session.session().is_connected());
        }
        black_box(session.error());
    }
}

#[cfg(feature = "datagram")]
use datagram::run;

/// The bare-metal entry point (no runtime crate).
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let key = PrivateKey::from_scalar(black_box(&DEVICE_KEY));
    let server = PublicKey::from_point(black_box(&SERVER_KEY));
    if let (Ok(key), Ok(server)) = (key, server) {
        let config = ClientConfig::new(key, server);
        run(Connection::client(Instant::ZERO, config, &mut HwRng));
    }
    bare::idle()
}
