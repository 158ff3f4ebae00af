//! The bare-metal ends every footprint binary shares (no runtime crate): the idle loop `_start`
//! falls into once the measured code has run, and the panic handler. The other footprint
//! crates (`dtls-footprint`, `spark-cc3000/footprint`) take this file with `#[path]`, so the three
//! measure the same frame around their own code.

/// Spins forever, where `_start` ends.
pub fn idle() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    idle()
}
