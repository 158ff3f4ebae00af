//! OTA time for 100 KiB over loopback TCP, stop-and-wait and fast, with the blocking and the
//! tokio drivers: a device and a cloud from this crate, each on its own driver.
//!
//! `cargo run --release -p spark-protocol --example ota_loopback` prints, per driver and mode,
//! the fastest and the median of five transfers (each one a fresh session).

#[path = "../tests/real_sessions/mod.rs"]
mod real_sessions;

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use real_sessions::script::{CloudScript, DeviceScript, check};
use real_sessions::{cloud, device};
use spark_protocol::session::driver::{Driver, StdClock};

const RUNS: usize = 5;

fn blocking_run(seed: u64) -> Vec<(bool, Duration)> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dev_thread = std::thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut d = Driver::with_vec(device(seed, true), s, StdClock::new());
        let mut script = DeviceScript::default();
        while let Ok(e) = d.next_event() {
            let now = d.now();
            script.on_event(d.connection_mut(), now, e);
        }
        script
    });
    let (s, _) = listener.accept().unwrap();
    s.set_nodelay(true).unwrap();
    let mut c = Driver::with_vec(cloud(seed + 1), s, StdClock::new());
    let mut script = CloudScript::default();
    while !script.done {
        let e = c.next_event().unwrap();
        let now = c.now();
        script.on_event(c.connection_mut(), now, e);
    }
    drop(c);
    check(&script, &dev_thread.join().unwrap());
    script.ota_times
}

fn tokio_run(rt: &tokio::runtime::Runtime, seed: u64) -> Vec<(bool, Duration)> {
    use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let device_side = async {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut d = Driver::with_vec(device(seed, true), Tokio(s), TokioClock::new());
            let mut script = DeviceScript::default();
            while let Ok(e) = d.next_event().await {
                let now = d.now();
                script.on_event(d.connection_mut(), now, e);
            }
            script
        };
        let cloud_side = async {
            let (s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut c = Driver::with_vec(cloud(seed + 1), Tokio(s), TokioClock::new());
            let mut script = CloudScript::default();
            while !script.done {
                let e = c.next_event().await.unwrap();
                let now = c.now();
                script.on_event(c.connection_mut(), now, e);
            }
            script
        };
        let (dev, script) = tokio::join!(device_side, cloud_side);
        check(&script, &dev);
        script.ota_times
    })
}

fn report(driver: &str, runs: &[Vec<(bool, Duration)>]) {
    for fast in [false, true] {
        let mut t: Vec<Duration> = runs
            .iter()
            .flatten()
            .filter(|(f, _)| *f == fast)
            .map(|(_, d)| *d)
            .collect();
        t.sort();
        let mode = if fast { "fast" } else { "stop-and-wait" };
        let kib_s = |d: Duration| 100.0 / d.as_secs_f64();
        println!(
            "{driver:>8} driver, 100 KiB OTA, {mode:>13}: min {:>8.1?} ({:.0} KiB/s), median {:>8.1?}",
            t[0],
            kib_s(t[0]),
            t[t.len() / 2]
        );
    }
}

fn main() {
    // Key generation happens once, before any timing.
    let _ = real_sessions::keys();
    let blocking: Vec<_> = (0..RUNS as u64)
        .map(|i| blocking_run(100 + 2 * i))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokio: Vec<_> = (0..RUNS as u64)
        .map(|i| tokio_run(&rt, 200 + 2 * i))
        .collect();
    report("blocking", &blocking);
    report("tokio", &tokio);
}
