//! A device and a cloud from this crate over real TCP on 127.0.0.1, with the blocking and the
//! tokio drivers: handshake, function call, variable read, events both ways, and a 100 KiB OTA
//! in stop-and-wait and in fast mode, checked byte for byte on the device.

mod mem_pipe;
mod real_sessions;

use std::net::{TcpListener, TcpStream};

use real_sessions::script::{CloudScript, DeviceScript, check};
use real_sessions::{cloud, device};
use spark_protocol::session::driver::{Driver, DriverError, StdClock};
use spark_protocol::session::{Connection, SessionError};

#[test]
fn blocking_drivers_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dev_thread = std::thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut d = Driver::with_vec(device(21, true), s, StdClock::new());
        let mut script = DeviceScript::default();
        loop {
            match d.next_event() {
                Ok(e) => {
                    let now = d.now();
                    script.on_event(d.connection_mut(), now, e);
                }
                Err(e) => return (script, e),
            }
        }
    });
    let (s, _) = listener.accept().unwrap();
    s.set_nodelay(true).unwrap();
    let mut c = Driver::with_vec(cloud(22), s, StdClock::new());
    let mut script = CloudScript::default();
    while !script.done {
        let e = c.next_event().unwrap();
        let now = c.now();
        script.on_event(c.connection_mut(), now, e);
    }
    assert_eq!(c.connection().error(), None);
    drop(c);
    let (dev_script, end) = dev_thread.join().unwrap();
    assert!(matches!(
        end,
        DriverError::Session(SessionError::TransportClosed)
    ));
    check(&script, &dev_script);
    for (fast, took) in &script.ota_times {
        eprintln!("blocking driver, 100 KiB OTA, fast={fast}: {took:?}");
    }
}

#[tokio::test]
async fn tokio_drivers_over_tcp() {
    use spark_protocol::session::driver::tokio::{Driver, Tokio, TokioClock};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let device_side = async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut d = Driver::with_vec(device(23, true), Tokio(s), TokioClock::new());
        let mut script = DeviceScript::default();
        loop {
            match d.next_event().await {
                Ok(e) => {
                    let now = d.now();
                    script.on_event(d.connection_mut(), now, e);
                }
                Err(e) => return (script, e),
            }
        }
    };
    let cloud_side = async {
        let (s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut c = Driver::with_vec(cloud(24), Tokio(s), TokioClock::new());
        let mut script = CloudScript::default();
        while !script.done {
            let e = c.next_event().await.unwrap();
            let now = c.now();
            script.on_event(c.connection_mut(), now, e);
        }
        assert_eq!(c.connection().error(), None);
        script
        // The cloud's driver and socket drop here: the device sees the stream end.
    };
    let ((dev_script, end), script) = tokio::join!(device_side, cloud_side);
    assert!(matches!(
        end,
        DriverError::Session(SessionError::TransportClosed)
    ));
    check(&script, &dev_script);
    for (fast, took) in &script.ota_times {
        eprintln!("tokio driver, 100 KiB OTA, fast={fast}: {took:?}");
    }
}

#[test]
fn blocking_drivers_over_embedded_io_in_one_thread() {
    // The MCU way: the device on `EmbeddedIo` with a tick-counter clock, never blocking while a
    // timer runs, driven from a main loop (here interleaved with the cloud's in one thread).
    use spark_protocol::session::driver::EmbeddedIo;
    let clock = std::rc::Rc::new(std::cell::Cell::new(0));
    let (a, b) = mem_pipe::pipe();
    let mut d = Driver::new(
        device(31, true),
        EmbeddedIo(a),
        mem_pipe::ticking(&clock),
        [0u8; 1024],
    );
    let mut c = Driver::with_vec(cloud(32), EmbeddedIo(b.clone()), mem_pipe::ticking(&clock));
    let (mut dev_script, mut script) = (DeviceScript::default(), CloudScript::default());
    while !script.done {
        if let Some(e) = d.drive().unwrap() {
            let now = d.now();
            dev_script.on_event(d.connection_mut(), now, e);
        }
        if let Some(e) = c.drive().unwrap() {
            let now = c.now();
            script.on_event(c.connection_mut(), now, e);
        }
    }
    // The device's last events (the fast image's commit) are still queued: drain them.
    while dev_script.committed < 2 {
        if let Some(e) = d.drive().unwrap() {
            let now = d.now();
            dev_script.on_event(d.connection_mut(), now, e);
        }
    }
    check(&script, &dev_script);
    b.close();
    assert!(matches!(
        d.next_event(),
        Err(DriverError::Session(SessionError::TransportClosed))
    ));
}
