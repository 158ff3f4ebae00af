//! The Spark Core's device side as firmware for QEMU's `mps2-an385` (a Cortex-M3), within the Core's 128 KiB of
//! flash and 20 KiB of RAM.
//!
//! What a port writes, and where it is here (PORTING.md walks through each):
//!
//! | piece | here |
//! |---|---|
//! | transport | [`Uart`]: CMSDK UART0 as `embedded_io::{Read, Write, ReadReady}`; QEMU bridges it to TCP |
//! | clock | [`clock`]: SysTick at 1 kHz, read with its sub-millisecond count |
//! | RNG | [`HostEntropy`]: the host's `/dev/urandom` through semihosting, behind `HardwareRng` |
//! | key storage | [`keys`]: the device key and the server key in flash, borrowed by the RSA backend |
//! | firmware sink | [`ExternalFlash`]: the OTA staging area, outside the Core's 128 KiB (its SPI flash) |
//!
//! The application is Tinker (the four functions the Core shipped with) on simulated pins, two variables
//! (`uptime`, `board`), and an event published when the session is up and when an image was received. After an
//! image is received and checked the firmware stops, as a Core resets into its new firmware; before it does it
//! prints its stack high-water mark (the stack is painted at start), its heap use (there is no allocator) and the
//! instruction counts of the handshake's RSA steps and of sealing and opening a 1 KiB frame (virtual time under
//! `qemu -icount shift=0`, where one nanosecond is one instruction).

#![no_std]
#![no_main]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hio};
use spark_protocol::crypto::fixed::{FixedPrivateKey, FixedPublicKey};
use spark_protocol::crypto::framing::sealed_len;
use spark_protocol::crypto::handshake::DEVICE_ID_LEN;
use spark_protocol::crypto::rng::{EntropySource, HardwareRng};
use spark_protocol::crypto::{HandshakeError, Nonce, RsaScratch, SessionKey};
use spark_protocol::session::device::{
    DeviceConfig, DeviceConnection, DeviceEvent, DeviceHandshake, FirmwareSink, ImageInfo,
    MAX_TRANSMIT_LEN, RsaHandshake, SinkError,
};
use spark_protocol::session::driver::{Driver, DriverError, EmbeddedIo};
use spark_protocol::session::{Connection as _, Instant};
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::message::{Value, Visibility};

// ---------------------------------------------------------------------------------------------------------------
// Logs

/// Writes to the host's stdout through semihosting.
struct Log;

impl core::fmt::Write for Log {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        match hio::hstdout() {
            Ok(mut out) => out.write_all(s.as_bytes()).map_err(|()| core::fmt::Error),
            Err(()) => Err(core::fmt::Error),
        }
    }
}

macro_rules! log {
    ($($arg:tt)*) => {{
        let _ = writeln!(Log, $($arg)*);
    }};
}

fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log!("qemu-core: panic: {info}");
    exit(false)
}

// ---------------------------------------------------------------------------------------------------------------
// Transport: CMSDK APB UART0

/// The board's UART0 (ARM CMSDK APB UART), polled.
struct Uart {
    base: usize,
}

const UART0: usize = 0x4000_4000;
const UART_DATA: usize = 0x00;
const UART_STATE: usize = 0x04;
const UART_CTRL: usize = 0x08;
const UART_BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;

impl Uart {
    /// Enables transmit and receive. QEMU moves bytes only when the baud divider is at least 16; its value sets
    /// no speed there.
    fn new(base: usize) -> Self {
        let uart = Uart { base };
        uart.set(UART_BAUDDIV, 16);
        uart.set(UART_CTRL, 0b11);
        uart
    }

    fn get(&self, reg: usize) -> u32 {
        // SAFETY: `base + reg` is a register of the UART this struct owns; MMIO needs volatile access.
        unsafe { core::ptr::read_volatile((self.base + reg) as *const u32) }
    }

    fn set(&self, reg: usize, value: u32) {
        // SAFETY: as in `get`.
        unsafe { core::ptr::write_volatile((self.base + reg) as *mut u32, value) }
    }

    fn rx_ready(&self) -> bool {
        self.get(UART_STATE) & STATE_RX_FULL != 0
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Uart {
    /// Waits for one byte, then takes whatever else has arrived without waiting.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut n = 0;
        while n < buf.len() {
            if !self.rx_ready() {
                if n > 0 {
                    break;
                }
                continue;
            }
            buf[n] = self.get(UART_DATA) as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.rx_ready())
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &b in buf {
            while self.get(UART_STATE) & STATE_TX_FULL != 0 {}
            self.set(UART_DATA, u32::from(b));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Clock: SysTick

/// Time since boot from SysTick, which QEMU runs on its virtual clock (instructions under `-icount`).
mod clock {
    use super::*;

    /// The board's CPU clock, which SysTick counts when it runs from the processor clock.
    const CPU_HZ: u32 = 25_000_000;
    const RELOAD: u32 = CPU_HZ / 1000 - 1;
    static MILLIS: AtomicU32 = AtomicU32::new(0);

    pub(crate) fn start(mut syst: cortex_m::peripheral::SYST) {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
    }

    #[exception]
    fn SysTick() {
        MILLIS.fetch_add(1, Ordering::Relaxed);
    }

    /// Nanoseconds since boot, to the SysTick's 40 ns resolution.
    pub(crate) fn nanos() -> u64 {
        loop {
            let ms = MILLIS.load(Ordering::Relaxed);
            let left = cortex_m::peripheral::SYST::get_current();
            if MILLIS.load(Ordering::Relaxed) == ms {
                let ticks = u64::from(RELOAD - left.min(RELOAD));
                return u64::from(ms) * 1_000_000 + ticks * 1_000_000_000 / u64::from(CPU_HZ);
            }
        }
    }

    pub(crate) fn now() -> Instant {
        Instant::from_millis(u64::from(MILLIS.load(Ordering::Relaxed)))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// RNG: the host's entropy through semihosting

/// Reads the host's `/dev/urandom` through semihosting. QEMU's boards have no entropy source of their own; on a
/// Core this is where ADC noise or a TRNG would be read.
struct HostEntropy {
    handle: usize,
}

impl HostEntropy {
    fn open() -> Option<Self> {
        const PATH: &[u8] = b"/dev/urandom\0";
        // SAFETY: SYS_OPEN reads the NUL-terminated path and its length (without the NUL) from these arguments.
        let handle = unsafe {
            cortex_m_semihosting::syscall!(
                OPEN,
                PATH.as_ptr(),
                cortex_m_semihosting::nr::open::R_BINARY,
                PATH.len() - 1
            )
        };
        (handle != usize::MAX).then_some(HostEntropy { handle })
    }
}

impl EntropySource for HostEntropy {
    fn fill_entropy(&mut self, dest: &mut [u8]) {
        let mut at = 0;
        while at < dest.len() {
            let want = dest.len() - at;
            // SAFETY: SYS_READ writes at most `want` bytes at the pointer, inside `dest`; it returns how many it did
            // not read.
            let left = unsafe {
                cortex_m_semihosting::syscall!(READ, self.handle, dest[at..].as_mut_ptr(), want)
            };
            if left > want {
                log!("qemu-core: the host's entropy cannot be read");
                exit(false);
            }
            at += want - left;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Key storage

/// The device's key pair and the server's public key, in flash, in the forms the Core stores them (DER). The RSA
/// backend borrows them: loading a key costs no RAM.
mod keys {
    pub(crate) static DEVICE_KEY: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/device_key.der"));
    pub(crate) static SERVER_KEY: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/server_key.der"));
    pub(crate) static DEVICE_ID: &[u8; 12] =
        include_bytes!(concat!(env!("OUT_DIR"), "/device_id.bin"));
}

// ---------------------------------------------------------------------------------------------------------------
// Firmware sink: the OTA staging area

/// The OTA staging area: the Core's external SPI flash, modelled by SSRAM outside the Core's 128 KiB. A received
/// image counts only once it is whole and [`check_image`] accepts it.
struct ExternalFlash {
    written: u32,
    result: Option<(u32, u32)>,
}

const OTA_BASE: usize = 0x0010_0000;
const OTA_LEN: usize = 256 * 1024;

impl ExternalFlash {
    fn area(&mut self) -> &mut [u8] {
        // SAFETY: 0x00100000..0x00140000 is SSRAM on mps2-an385 that the linker script gives to nothing else, and
        // only this sink (one instance, owned by the connection) touches it.
        unsafe { core::slice::from_raw_parts_mut(OTA_BASE as *mut u8, OTA_LEN) }
    }
}

impl FirmwareSink for ExternalFlash {
    fn begin(&mut self, info: &ImageInfo) -> Result<(), SinkError> {
        let size = info.size.unwrap_or(0) as usize;
        if size > OTA_LEN {
            return Err(SinkError::InsufficientSize { required: size });
        }
        // Erased NOR flash reads 0xff.
        self.area().fill(0xff);
        self.written = 0;
        self.result = None;
        Ok(())
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), SinkError> {
        let start = offset as usize;
        let end = start + data.len();
        let area = self.area();
        let dst = area
            .get_mut(start..end)
            .ok_or(SinkError::InsufficientSize { required: end })?;
        dst.copy_from_slice(data);
        self.written = self.written.max(end as u32);
        Ok(())
    }

    fn finish(&mut self, size: u32) -> Result<(), SinkError> {
        let image = &self.area()[..size as usize];
        match check_image(image) {
            Some(crc) => {
                self.result = Some((size, crc));
                Ok(())
            }
            None => Err(SinkError::Storage),
        }
    }

    fn abort(&mut self) {
        self.area().fill(0xff);
        self.result = None;
    }
}

/// Accepts an image for this board: a Cortex-M vector table whose initial stack pointer lies in the Core's RAM and
/// whose reset handler is Thumb code inside the Core's flash. Returns the image's CRC-32 (IEEE).
fn check_image(image: &[u8]) -> Option<u32> {
    let word = |i: usize| {
        image
            .get(4 * i..4 * i + 4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    let sp = word(0)?;
    let reset = word(1)?;
    let sp_ok = (0x2000_0000..=0x2000_5000).contains(&sp) && sp % 8 == 0;
    let reset_ok = reset & 1 == 1 && (reset & !1) < 128 * 1024 && (reset & !1) as usize >= 4 * 16;
    (sp_ok && reset_ok).then(|| crc32(image))
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

// ---------------------------------------------------------------------------------------------------------------
// Stack painting

mod stack {
    const PAINT: u32 = 0x5afe_c0de;

    unsafe extern "C" {
        static mut __sheap: u32;
        static _stack_start: u32;
    }

    fn bounds() -> (usize, usize) {
        // Only the addresses of the linker's symbols are taken.
        (
            core::ptr::addr_of!(__sheap) as usize,
            core::ptr::addr_of!(_stack_start) as usize,
        )
    }

    fn sp() -> usize {
        let sp: usize;
        // SAFETY: reads the stack pointer.
        unsafe { core::arch::asm!("mov {}, sp", out(reg) sp) };
        sp
    }

    /// Paints the free stack below the caller's frame (leaving 64 bytes for this function's own).
    pub(crate) fn paint() {
        let (low, _) = bounds();
        let mut at = low;
        let top = sp() - 64;
        while at < top {
            // SAFETY: `low..top` is below the live stack and above the statics: nothing uses it now.
            unsafe { core::ptr::write_volatile(at as *mut u32, PAINT) };
            at += 4;
        }
    }

    /// The most stack used since the last [`paint`]: from the top of RAM down to the lowest word not painted.
    pub(crate) fn high_water() -> usize {
        let (low, top) = bounds();
        let mut at = low;
        // SAFETY: reads words between the statics and the stack top, all RAM.
        while at < top && unsafe { core::ptr::read_volatile(at as *const u32) } == PAINT {
            at += 4;
        }
        top - at
    }

    /// The stack in use at the caller: from the top of RAM down to the stack pointer.
    pub(crate) fn depth() -> usize {
        bounds().1 - sp()
    }

    /// The RAM the statics take (.data and .bss).
    pub(crate) fn statics() -> usize {
        bounds().0 - 0x2000_0000
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The handshake, timed

/// The RSA handshake with the time each step took, in virtual nanoseconds (instructions under `-icount shift=0`).
struct Timed<H>(H);

impl<H: DeviceHandshake> DeviceHandshake for Timed<H> {
    fn credentials(
        &mut self,
        nonce: &Nonce,
        device_id: &[u8; DEVICE_ID_LEN],
        out: &mut [u8],
        scratch: &mut RsaScratch,
    ) -> Result<usize, HandshakeError> {
        let entry = stack::depth();
        stack::paint();
        let t = clock::nanos();
        let r = self.0.credentials(nonce, device_id, out, scratch);
        CREDENTIALS_NS.store((clock::nanos() - t) as u32, Ordering::Relaxed);
        CREDENTIALS_STACK.store((stack::high_water() - entry) as u32, Ordering::Relaxed);
        r
    }

    fn session_reply_len(&self) -> usize {
        self.0.session_reply_len()
    }

    fn open_session(
        &mut self,
        reply: &[u8],
        scratch: &mut RsaScratch,
    ) -> Result<SessionKey, HandshakeError> {
        let entry = stack::depth();
        stack::paint();
        let t = clock::nanos();
        let r = self.0.open_session(reply, scratch);
        OPEN_NS.store((clock::nanos() - t) as u32, Ordering::Relaxed);
        OPEN_STACK.store((stack::high_water() - entry) as u32, Ordering::Relaxed);
        r
    }
}

static CREDENTIALS_NS: AtomicU32 = AtomicU32::new(0);
static OPEN_NS: AtomicU32 = AtomicU32::new(0);
/// The stack each RSA step used below the frame that called it (the step's own RAM: it has no static).
static CREDENTIALS_STACK: AtomicU32 = AtomicU32::new(0);
static OPEN_STACK: AtomicU32 = AtomicU32::new(0);

type Handshake = Timed<
    RsaHandshake<FixedPrivateKey<'static>, FixedPublicKey<'static>, HardwareRng<HostEntropy>>,
>;

// ---------------------------------------------------------------------------------------------------------------
// Tinker on simulated pins

/// Tinker's pins. Each digital pin reads back what was last written to it (as if looped back), and each analog
/// input reads the last PWM duty written to it through a filter: 8 bits scaled to the ADC's 12.
#[derive(Default)]
struct Pins {
    digital: [[bool; 8]; 2],
    duty: [[u8; 8]; 2],
}

impl Pins {
    /// Tinker's pin argument: `D0`..`D7` or `A0`..`A7`; the bank or -1 for a bad number, -2 (or -3) a bad bank.
    fn pin(arg: &[u8], bad_bank: i32) -> Result<(usize, usize), i32> {
        let number = arg.get(1).map_or(-1, |c| i32::from(*c) - i32::from(b'0'));
        if !(0..8).contains(&number) {
            return Err(-1);
        }
        match arg.first() {
            Some(b'D') => Ok((0, number as usize)),
            Some(b'A') => Ok((1, number as usize)),
            _ => Err(bad_bank),
        }
    }

    fn call(&mut self, name: &[u8], arg: &[u8]) -> i32 {
        let result = match name {
            b"digitalwrite" => Self::pin(arg, -3).and_then(|(bank, n)| {
                let value = match arg.get(3..) {
                    Some(v) if v.starts_with(b"HIGH") => true,
                    Some(v) if v.starts_with(b"LOW") => false,
                    _ => return Err(-2),
                };
                self.digital[bank][n] = value;
                Ok(1)
            }),
            b"digitalread" => Self::pin(arg, -2).map(|(bank, n)| i32::from(self.digital[bank][n])),
            b"analogwrite" => Self::pin(arg, -2).map(|(bank, n)| {
                let digits = arg.get(3..).unwrap_or(&[]);
                let value = digits
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .fold(0u32, |v, c| {
                        v.wrapping_mul(10).wrapping_add(u32::from(c - b'0'))
                    });
                self.duty[bank][n] = value as u8;
                1
            }),
            b"analogread" => Self::pin(arg, -2).and_then(|(bank, n)| match bank {
                0 => Err(-3),
                _ => Ok(i32::from(self.duty[bank][n]) * 4095 / 255),
            }),
            _ => Err(-1),
        };
        result.unwrap_or_else(|e| e)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 1 KiB frame, timed

/// Seals and opens one 1 KiB frame with the session cipher and returns the virtual nanoseconds each took.
#[inline(never)]
fn time_frame() -> (u64, u64) {
    let session = SessionKey::from_bytes([0x3c; 40]);
    let mut enc = session.encoder::<spark_protocol::crypto::Aes128Cbc>();
    let mut dec = session.decoder::<spark_protocol::crypto::Aes128Cbc, _>([0u8; 1040]);
    let message = [0xa5u8; 1024];
    let mut wire = [0u8; sealed_len(1024)];
    let mut out = [0u8; 1024];
    let t0 = clock::nanos();
    let sealed = enc.seal(&message, &mut wire).ok();
    let t1 = clock::nanos();
    let opened = sealed.and_then(|n| dec.decode(&wire[..n], &mut out).ok());
    let t2 = clock::nanos();
    if opened.and_then(|d| d.message) != Some(1024) || out != message {
        log!("qemu-core: the 1 KiB frame did not round-trip");
        exit(false);
    }
    (t1 - t0, t2 - t1)
}

/// Signs three different messages with the device key and returns the virtual nanoseconds (instructions under
/// `-icount shift=0`) each private operation took: equal counts, to SysTick's 40-instruction resolution, mean no
/// branch or loop of the operation depends on the data.
#[inline(never)]
fn time_private_ops() -> [u64; 3] {
    let mut counts = [0; 3];
    let Ok(key) = FixedPrivateKey::from_der(keys::DEVICE_KEY) else {
        return counts;
    };
    let mut rng = HardwareRng(|dest: &mut [u8]| dest.fill(0));
    let mut sig = [0u8; 128];
    for (count, message) in counts.iter_mut().zip([[0u8; 20], [0xff; 20], [0x5a; 20]]) {
        let t = clock::nanos();
        let signed = spark_protocol::crypto::RsaPrivate::sign_pkcs1v15_unprefixed(
            &key, &mut rng, &message, &mut sig,
        );
        *count = clock::nanos() - t;
        if signed.is_err() {
            log!("qemu-core: the device key does not sign");
            exit(false);
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------------------------------
// Main

/// The driver's buffer: the largest frame the device sends (its longest queued message, sealed).
const FRAME_BUF: usize = MAX_TRANSMIT_LEN;

#[entry]
fn main() -> ! {
    stack::paint();
    let peripherals = cortex_m::Peripherals::take().unwrap_or_else(|| exit(false));
    clock::start(peripherals.SYST);
    log!(
        "qemu-core: up; statics {} B, stack {} B",
        stack::statics(),
        20 * 1024 - stack::statics()
    );

    let Some(entropy) = HostEntropy::open() else {
        log!(
            "qemu-core: no entropy source (run QEMU with -semihosting-config enable=on,target=native)"
        );
        exit(false)
    };
    let Some(handshake) = load_handshake(entropy) else {
        log!(
            "qemu-core: no usable keys (build with QEMU_CORE_DEVICE_KEY and QEMU_CORE_SERVER_KEY)"
        );
        exit(false)
    };
    let driver = start_session(handshake);
    // What the boot took is not the session's: paint again.
    stack::paint();
    session(driver)
}

/// The RSA steps over the keys in flash; `None` if they do not load.
#[inline(never)]
fn load_handshake(entropy: HostEntropy) -> Option<Handshake> {
    let device_key = FixedPrivateKey::from_der(keys::DEVICE_KEY).ok()?;
    let server_key = FixedPublicKey::from_der(keys::SERVER_KEY).ok()?;
    Some(Timed(RsaHandshake::new(
        device_key,
        server_key,
        HardwareRng(entropy),
    )))
}

type Session = Driver<
    DeviceConnection<ExternalFlash, Handshake>,
    EmbeddedIo<Uart>,
    fn() -> Instant,
    [u8; FRAME_BUF],
>;

/// The session lives in a static: it is the largest object of the firmware, and building it in place keeps copies
/// of it off the stack.
static mut SESSION: core::mem::MaybeUninit<Session> = core::mem::MaybeUninit::uninit();

/// Builds the connection and its driver into [`SESSION`]; called once.
#[inline(never)]
fn start_session(handshake: Handshake) -> &'static mut Session {
    let config = DeviceConfig::new(*keys::DEVICE_ID);
    let sink = ExternalFlash {
        written: 0,
        result: None,
    };
    let driver = Driver::new(
        DeviceConnection::new(clock::now(), config, handshake, sink),
        EmbeddedIo(Uart::new(UART0)),
        clock::now as fn() -> Instant,
        [0u8; FRAME_BUF],
    );
    // SAFETY: called once, from `main`, before anything else refers to SESSION; the raw pointer avoids a reference
    // to the `static mut` itself.
    let driver = unsafe { (*core::ptr::addr_of_mut!(SESSION)).write(driver) };
    let conn = driver.connection_mut();
    for name in [
        &b"digitalread"[..],
        b"digitalwrite",
        b"analogread",
        b"analogwrite",
    ] {
        let _ = conn.register_function(name);
    }
    let _ = conn.register_variable(b"uptime", VarType::Int);
    let _ = conn.register_variable(b"board", VarType::String);
    log!(
        "qemu-core: DeviceConnection {} B, driver buffer {} B, driver {} B (a static)",
        core::mem::size_of::<DeviceConnection<ExternalFlash, Handshake>>(),
        FRAME_BUF,
        core::mem::size_of::<Session>()
    );
    driver
}

/// What the application keeps between events.
#[derive(Default)]
struct App {
    pins: Pins,
    handshake_stack: usize,
    ota_done: Option<(u32, u32)>,
    /// Once an update has ended, the firmware drives the session a little longer (so that the result reaches the
    /// cloud) and then stops, where a Core resets into its new image.
    stop_at: Option<Instant>,
}

/// Runs the session until it ends or an update is done; never returns.
#[inline(never)]
fn session(driver: &'static mut Session) -> ! {
    let mut app = App::default();
    loop {
        if app.stop_at.is_some_and(|at| driver.now() >= at) {
            break;
        }
        // Events are taken in `take_events`, whose frame is gone before `step` reads and handles input: no event
        // (a few hundred bytes) lies on the stack under the handshake's RSA steps or the opening of a frame.
        take_events(driver, &mut app);
        match driver.step() {
            Ok(()) => {}
            Err(DriverError::Session(e)) => {
                log!("qemu-core: session ended: {e}");
                break;
            }
            Err(_) => {
                log!("qemu-core: driver failure");
                break;
            }
        }
    }
    let (handshake_stack, ota_done) = (app.handshake_stack, app.ota_done);
    let session_stack = stack::high_water();
    let (seal_ns, open_ns) = time_frame();
    let private_ops = time_private_ops();
    let statics = stack::statics();
    log!(
        "qemu-core: stack high-water: handshake {} B, session {} B",
        handshake_stack,
        session_stack
    );
    log!("qemu-core: heap: 0 B (no allocator is linked)");
    log!(
        "qemu-core: RAM: statics {} B + stack {} B = {} B of 20480 B",
        statics,
        handshake_stack.max(session_stack),
        statics + handshake_stack.max(session_stack)
    );
    log!(
        "qemu-core: instructions: credentials {}, open session {}, seal 1 KiB {}, open 1 KiB {}",
        CREDENTIALS_NS.load(Ordering::Relaxed),
        OPEN_NS.load(Ordering::Relaxed),
        seal_ns,
        open_ns
    );
    log!(
        "qemu-core: private operation on three messages: {} {} {} instructions",
        private_ops[0],
        private_ops[1],
        private_ops[2]
    );
    exit(ota_done.is_some())
}

/// Hands every queued event to [`on_event`].
#[inline(never)]
fn take_events(driver: &mut Session, app: &mut App) {
    while let Some(event) = driver.connection_mut().poll_event() {
        on_event(driver, app, event);
    }
}

/// The application's answer to one event.
#[inline(never)]
fn on_event(driver: &mut Session, app: &mut App, event: DeviceEvent) {
    let now = driver.now();
    let conn = driver.connection_mut();
    match event {
        DeviceEvent::Connected => {
            app.handshake_stack = stack::high_water();
            log!(
                "qemu-core: connected; handshake stack high-water {} B; the RSA steps' own stack: credentials {} B, open session {} B",
                app.handshake_stack,
                CREDENTIALS_STACK.load(Ordering::Relaxed),
                OPEN_STACK.load(Ordering::Relaxed)
            );
            stack::paint();
            let _ = conn.publish(
                now,
                b"qemu-core/online",
                Some(b"tinker"),
                Visibility::Private,
                60,
            );
        }
        DeviceEvent::FunctionCall(call) => {
            let value = app.pins.call(&call.name, &call.argument);
            log!(
                "qemu-core: call {}({}) = {}",
                core::str::from_utf8(&call.name).unwrap_or("?"),
                core::str::from_utf8(&call.argument).unwrap_or("?"),
                value
            );
            let _ = conn.function_return(call.call, value);
        }
        DeviceEvent::VariableRequest(read) => {
            let uptime = (now.as_millis() / 1000) as i32;
            let value = match &read.name[..] {
                b"uptime" => Value::Int(uptime),
                _ => Value::String(b"qemu mps2-an385"),
            };
            log!(
                "qemu-core: variable {}",
                core::str::from_utf8(&read.name).unwrap_or("?")
            );
            let _ = conn.variable_value(read.request, value);
        }
        DeviceEvent::UpdateStarted { info, fast } => {
            log!(
                "qemu-core: update started, {:?} bytes, fast {}",
                info.size,
                fast
            );
        }
        DeviceEvent::UpdateFinished { size } => {
            let result = conn.sink().result;
            log!(
                "qemu-core: update finished, {} bytes, checked {:?}",
                size,
                result
            );
            let mut text = [0u8; 40];
            let text = format_ota(&mut text, result);
            let _ = conn.publish(now, b"qemu-core/ota", Some(text), Visibility::Private, 60);
            app.ota_done = result;
            app.stop_at = Some(now + core::time::Duration::from_millis(300));
        }
        DeviceEvent::UpdateFailed(why) => {
            log!("qemu-core: update failed: {why:?}");
            let _ = conn.publish(
                now,
                b"qemu-core/ota",
                Some(b"failed"),
                Visibility::Private,
                60,
            );
            app.stop_at = Some(now + core::time::Duration::from_millis(300));
        }
        other => {
            log!("qemu-core: event {other:?}");
        }
    }
}

fn format_ota(buf: &mut [u8; 40], result: Option<(u32, u32)>) -> &[u8] {
    struct Cursor<'b>(&'b mut [u8], usize);
    impl core::fmt::Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut c = Cursor(buf, 0);
    let _ = match result {
        Some((size, crc)) => write!(c, "ok {size} {crc:08x}"),
        None => write!(c, "refused"),
    };
    let n = c.1;
    &buf[..n]
}
