//! `kill -9` in the middle of provisioning: the `spark-cloud` binary runs as a child process, eight clients
//! provision devices through the API, the child is killed, and every device whose provisioning was acknowledged is
//! there (key and owner) when the state is opened again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spark_cloud::state::StateDir;

const SERVER_KEY: &str = include_str!("fixtures/server_key_1024.pem");
const DEVICE_KEY: &str = include_str!("fixtures/device_a.pub.pem");

/// One request on its own connection; the status, or `None` when the cloud is gone.
fn request(addr: SocketAddr, head: &str, form: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{head}\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Content-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn every_acknowledged_provisioning_survives_kill_9() {
    const CLIENTS: usize = 8;
    const ENOUGH: usize = 300;
    let dir = std::env::temp_dir().join(format!("spark-cloud-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("default_key.pem"), SERVER_KEY).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
        .args(["--http", "127.0.0.1:0", "--device", "127.0.0.1:0", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports: serde_json::Value = serde_json::from_str(&line).unwrap();
    let http: SocketAddr = ports["http"].as_str().unwrap().parse().unwrap();

    let (status, _) = request(http, "POST /v1/users HTTP/1.1", "username=joe&password=pw").unwrap();
    assert_eq!(status, 200);
    let (status, body) = request(
        http,
        "POST /oauth/token HTTP/1.1",
        "grant_type=password&username=joe&password=pw&client_id=spark&client_secret=spark",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let key = form_encode(DEVICE_KEY);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let acknowledged = Arc::clone(&acknowledged);
            let stop = Arc::clone(&stop);
            let token = token.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                for n in 0..100_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let id = format!("{client:08x}{n:016x}");
                    let head = format!(
                        "POST /v1/provisioning/{id} HTTP/1.1\r\nAuthorization: Bearer {token}"
                    );
                    match request(http, &head, &format!("publicKey={key}")) {
                        Some((200, _)) => acknowledged.lock().unwrap().push(id),
                        Some((status, body)) => panic!("{status}: {body}"),
                        None => return,
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.lock().unwrap().len() < ENOUGH && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL, with requests in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= ENOUGH,
        "only {} provisioned",
        acknowledged.len()
    );

    let state = StateDir::open(&dir, 1024, &mut spark_cloud::system_rng()).unwrap();
    for id in &acknowledged {
        let device = state
            .device(id)
            .unwrap_or_else(|| panic!("{id} was acknowledged and is lost"));
        assert_eq!(device.owner.as_deref(), Some("joe"), "{id}");
        assert!(state.device_key(id).is_some(), "{id}");
    }
    drop(state);
    let _ = std::fs::remove_dir_all(&dir);
}
