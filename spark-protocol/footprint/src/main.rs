//! A bare-metal binary linking the device session, to measure flash and RAM.
//!
//! Every input comes through `black_box`, so nothing is constant-folded away. The connection lives on the
//! stack: its size is exported as `DEVICE_CONNECTION_SIZE` (readable from the ELF symbol table) and adds to the
//! static RAM figure when a port places it in a static.

#![no_std]
#![no_main]

mod bare;

use core::hint::black_box;

use spark_protocol::session::device::{
    DeviceConfig, DeviceConnection, DeviceEvent, FirmwareSink, ImageInfo, Scope, SinkError,
};
use spark_protocol::session::{Connection, Instant};
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::message::{Value, Visibility};

/// A sink whose every call succeeds without doing anything observable to the optimiser.
struct NoFlash;

impl FirmwareSink for NoFlash {
    fn begin(&mut self, info: &ImageInfo) -> Result<(), SinkError> {
        black_box(info);
        black_box(Ok(()))
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), SinkError> {
        black_box((offset, data));
        black_box(Ok(()))
    }
    fn finish(&mut self, size: u32) -> Result<(), SinkError> {
        black_box(size);
        black_box(Ok(()))
    }
    fn abort(&mut self) {
        black_box(());
    }
}

#[cfg(not(any(feature = "rsa", feature = "rsa-fixed")))]
type Handshake = spark_protocol::session::device::NoHandshake;

#[cfg(all(feature = "rsa", feature = "rsa-fixed"))]
compile_error!("measure one RSA backend at a time: `rsa` or `rsa-fixed`");

/// A stand-in for the MCU's entropy source (a TRNG's data register), behind the crate's `rand_core`
/// adapter as a port uses it.
#[cfg(any(feature = "rsa", feature = "rsa-fixed"))]
pub struct Trng;
#[cfg(any(feature = "rsa", feature = "rsa-fixed"))]
impl spark_protocol::crypto::rng::EntropySource for Trng {
    fn fill_entropy(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = black_box(4);
        }
    }
}
#[cfg(any(feature = "rsa", feature = "rsa-fixed"))]
pub type HwRng = spark_protocol::crypto::rng::HardwareRng<Trng>;

#[cfg(feature = "rsa-fixed")]
mod fixed_parts {
    use spark_protocol::crypto::fixed::{FixedPrivateKey, FixedPublicKey};
    use spark_protocol::session::device::RsaHandshake;

    pub type Handshake =
        RsaHandshake<FixedPrivateKey<'static>, FixedPublicKey<'static>, super::HwRng>;

    /// The keys stay where they are (flash on a Core): the backend borrows them.
    pub fn handshake(device_der: &'static [u8], server_der: &'static [u8]) -> Option<Handshake> {
        Some(RsaHandshake::new(
            FixedPrivateKey::from_der(device_der).ok()?,
            FixedPublicKey::from_der(server_der).ok()?,
            spark_protocol::crypto::rng::HardwareRng(super::Trng),
        ))
    }
}

#[cfg(feature = "rsa-fixed")]
type Handshake = fixed_parts::Handshake;

#[cfg(feature = "rsa")]
mod rsa_parts {
    use core::mem::MaybeUninit;

    // Its single-core critical section (interrupts masked) guards the heap.
    use cortex_m as _;
    use embedded_alloc::LlffHeap;
    use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
    use spark_protocol::crypto::{RsaPrivateKeyRef, RsaPublicKeyRef};
    use spark_protocol::session::device::RsaHandshake;

    /// The heap: the handshake needs about 10 KiB at its peak (RSA-1024 private and RSA-2048
    /// public operations), the rest is room for fragmentation.
    const HEAP: usize = 16 * 1024;
    #[global_allocator]
    static ALLOC: LlffHeap = LlffHeap::empty();

    /// Hands the arena to the allocator; call once, before anything allocates.
    pub fn init_heap() {
        static mut ARENA: [MaybeUninit<u8>; HEAP] = [MaybeUninit::uninit(); HEAP];
        // SAFETY: called once at start-up, before any allocation; the arena is used by nothing
        // else.
        unsafe { ALLOC.init(core::ptr::addr_of_mut!(ARENA) as usize, HEAP) }
    }

    pub type Handshake = RsaHandshake<RustCryptoPrivateKey, RustCryptoPublicKey, super::HwRng>;

    pub fn handshake(device_der: &[u8], server_der: &[u8]) -> Option<Handshake> {
        let device = RsaPrivateKeyRef::from_der(device_der).ok()?;
        let server = RsaPublicKeyRef::from_der(server_der).ok()?;
        Some(RsaHandshake::new(
            RustCryptoPrivateKey::new(&device).ok()?,
            RustCryptoPublicKey::new(&server).ok()?,
            spark_protocol::crypto::rng::HardwareRng(super::Trng),
        ))
    }
}

#[cfg(feature = "rsa")]
type Handshake = rsa_parts::Handshake;

/// `size_of::<DeviceConnection>()` on this target, readable from the ELF symbol table.
#[unsafe(no_mangle)]
#[used]
pub static DEVICE_CONNECTION_SIZE: usize =
    core::mem::size_of::<DeviceConnection<NoFlash, Handshake>>();

static INPUT: [u8; 64] = [0; 64];
static KEYS: [u8; 8] = [0; 8];

fn run(mut dev: DeviceConnection<NoFlash, Handshake>) {
    let _ = dev.register_function(black_box(b"brew"));
    let _ = dev.register_variable(black_box(b"temp"), VarType::Int);
    let mut out = [0u8; 700];
    let mut now = 0u64;
    loop {
        now += black_box(10);
        let t = Instant::from_millis(now);
        let input: &[u8] = black_box(&INPUT);
        if dev.handle_input(t, input).is_err() {
            break;
        }
        dev.handle_timeout(t);
        while let Some(ev) = dev.poll_event() {
            match ev {
                DeviceEvent::Connected => {
                    let _ = dev.subscribe(black_box(b"temp"), Scope::MyDevices);
                    let _ = dev.request_time();
                }
                DeviceEvent::FunctionCall(c) => {
                    let _ = dev.publish(
                        t,
                        black_box(b"called"),
                        Some(&c.argument),
                        Visibility::Private,
                        60,
                    );
                    let _ = dev.function_return(c.call, black_box(1));
                }
                DeviceEvent::VariableRequest(r) => {
                    let _ = dev.variable_value(r.request, Value::Int(black_box(21)));
                }
                other => {
                    let _ = black_box(other);
                }
            }
        }
        while let Ok(Some(n)) = dev.poll_transmit(t, &mut out) {
            black_box(&out[..n]);
        }
        black_box(dev.poll_timeout());
    }
    black_box(dev.error());
}

/// The bare-metal entry point (no runtime crate: the symbol is the only way to name it without one).
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let config = DeviceConfig::new(black_box([7; 12]));
    #[cfg(not(any(feature = "rsa", feature = "rsa-fixed")))]
    {
        let secret = spark_protocol::crypto::SessionKey::from_bytes(black_box([3; 40]));
        run(DeviceConnection::from_session(
            Instant::ZERO,
            &secret,
            config,
            NoFlash,
        ));
    }
    #[cfg(feature = "rsa-fixed")]
    {
        let keys: &'static [u8] = black_box(&KEYS);
        if let Some(hs) = fixed_parts::handshake(keys, keys) {
            run(DeviceConnection::new(Instant::ZERO, config, hs, NoFlash));
        }
    }
    #[cfg(feature = "rsa")]
    {
        rsa_parts::init_heap();
        let keys: &[u8] = black_box(&KEYS);
        if let Some(hs) = rsa_parts::handshake(keys, keys) {
            run(DeviceConnection::new(Instant::ZERO, config, hs, NoFlash));
        }
    }
    black_box(&KEYS);
    bare::idle()
}
