//! The cloud under attack, over real sockets on 127.0.0.1: slow and idle HTTP clients, more connections than the
//! cap, oversized and unauthenticated bodies, while a virtual Core and a real API call are still served. Every loop
//! is bounded in count and time; nothing here asserts a duration.

#[path = "support/e2e_env.rs"]
mod env;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use env::{Env, PATIENCE, within};
use spark_cc3000::ServicePack;
use spark_cloud::HttpLimits;
use spark_cloud::hub::DeviceHub;

const CORE: [u8; 12] = [
    0x53, 0xff, 0x6c, 0x06, 0x50, 0x75, 0x53, 0x51, 0x19, 0x51, 0x16, 0x87,
];

/// Short timeouts and a small cap so that each attack resolves quickly.
fn limits(cap: usize) -> HttpLimits {
    HttpLimits::DEFAULT
        .with_max_connections(cap)
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(1))
}

/// Reads until the peer closes (or resets) the connection, at most `PATIENCE`; returns what arrived, or `None`
/// when the connection was still open then.
fn read_until_closed(s: &mut TcpStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(out),
        }
    }
    None
}

fn status_of(response: &[u8]) -> Option<u16> {
    std::str::from_utf8(response.get(9..12)?).ok()?.parse().ok()
}

/// Resident memory of this process in bytes (the cloud runs in it).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// spark-api's client with the user's token on a connection pool of its own. The environment's client may hold a
/// keep-alive connection that these tests' one-second header timeout has closed meanwhile, and a request sent on it
/// would meet the close.
fn fresh_api(env: &Env) -> spark_api::Client {
    let token = env
        .api
        .access_token()
        .expect("the user's client has a token")
        .clone();
    env::client(env.running.http).with_token(token)
}

/// A bearer token of the environment's user.
async fn token(env: &Env) -> String {
    let grant = env
        .anonymous
        .login(
            &spark_api::Credentials::new(env::USER, env::PASSWORD),
            spark_api::TokenLifetime::Default,
        )
        .await
        .unwrap();
    grant.access_token.expose().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_closed_and_connections_past_the_cap_get_503_while_a_core_and_the_api_are_served()
 {
    const CAP: usize = 24;
    let mut env = Env::start_with(limits(CAP)).await;
    let mut core = env.new_core(CORE, ServicePack::SP_1_28);
    env.provision(&core).await;
    let http = env.running.http;

    // Half a header on more connections than the cap, held open.
    let attackers: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..CAP + 8)
            .map(|_| {
                let mut s = TcpStream::connect(http).unwrap();
                s.write_all(b"GET /v1/devices HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .unwrap();
                s
            })
            .collect()
    })
    .await
    .unwrap();

    // The device listener has its own capacity: the Core connects while every HTTP slot is taken.
    env.run_core(&mut core, None);
    let id = core.id.clone();
    let hub = env.hub.clone();
    within(async {
        while !hub.is_connected(id.parse().unwrap()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A real API call is served: refused while the slots are taken, then answered once the slow clients have been
    // timed out. The refusal is a 503, which a client meets as that status when it had sent its request, or as a
    // broken exchange when the 503 and the close arrived before it could send (hyper's "unexpected message").
    let api = fresh_api(&env);
    let listed = within(async {
        loop {
            match api.list_devices().await {
                Ok(list) => break list,
                Err(e) => {
                    assert!(
                        e.status() == Some(503) || matches!(e, spark_api::Error::Transport { .. }),
                        "{e:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await;
    assert!(listed.iter().any(|d| d.id == core.id && d.connected));

    // Every attacker was closed by the cloud: those past the cap with a 503 and a JSON body, the others with
    // nothing (the header did not arrive in time).
    let outcomes = tokio::task::spawn_blocking(move || {
        attackers
            .into_iter()
            .map(|mut s| read_until_closed(&mut s))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut refused = 0;
    for outcome in outcomes {
        let response = outcome.expect("a slow client was left open");
        if !response.is_empty() {
            assert_eq!(status_of(&response), Some(503));
            let text = String::from_utf8_lossy(&response);
            assert!(text.contains(r#""ok":false"#), "{text}");
            refused += 1;
        }
    }
    assert!(
        refused >= 8,
        "only {refused} connections past the cap were refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed() {
    let env = Env::start_with(limits(64)).await;
    let http = env.running.http;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(http).unwrap();
        read_until_closed(&mut s)
    })
    .await
    .unwrap();
    assert_eq!(outcome, Some(Vec::new()));
    // And the API still answers.
    fresh_api(&env).list_devices().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bodies_are_refused_before_they_are_read_and_memory_comes_back() {
    const ATTACKERS: usize = 100;
    const SENT: usize = 1024 * 1024;
    let env = Env::start_with(limits(256)).await;
    let http = env.running.http;
    env.api.list_devices().await.unwrap();
    let baseline = rss();

    // Each attacker announces 4 MiB without a token, sends 1 MiB of it and stalls.
    let (attackers, statuses) = tokio::task::spawn_blocking(move || {
        let chunk = vec![b'a'; 64 * 1024];
        let mut attackers = Vec::new();
        for _ in 0..ATTACKERS {
            let mut s = TcpStream::connect(http).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(
                b"POST /v1/devices/events HTTP/1.1\r\nHost: x\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4194304\r\n\r\n",
            );
            for _ in 0..SENT / chunk.len() {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
            attackers.push(s);
        }
        let statuses: Vec<Option<u16>> = attackers
            .iter_mut()
            .map(|s| read_until_closed(s).and_then(|r| status_of(&r)))
            .collect();
        (attackers, statuses)
    })
    .await
    .unwrap();
    let during = rss();
    for status in &statuses {
        assert!(
            matches!(status, Some(401 | 413) | None),
            "an unauthenticated 4 MiB body got {status:?}"
        );
    }
    drop(attackers);
    // A real call is served, and memory is back near where it started.
    fresh_api(&env).list_devices().await.unwrap();
    let after = rss();
    let bound = baseline + 32 * 1024 * 1024;
    assert!(
        during < bound && after < bound,
        "RSS {baseline} before, {during} during, {after} after the attack"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_per_route_and_must_arrive_in_time() {
    let env = Env::start_with(limits(64).with_body_limits(16 * 1024, 256 * 1024)).await;
    let http = env.running.http;
    let token = token(&env).await;
    let exchange = move |request: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(http).unwrap();
            let _ = s.write_all(&request);
            read_until_closed(&mut s).and_then(|r| status_of(&r))
        })
    };
    // A wrong token is refused before the body is read.
    let bad = exchange(
        b"POST /v1/devices/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer 0123\r\n\
Connection: close\r\nContent-Length: 100000\r\n\r\n"
            .to_vec(),
    );
    assert_eq!(bad.await.unwrap(), Some(401));
    // An authenticated publish with a 64 KiB body: over the small limit.
    let big = exchange(
        format!(
            "POST /v1/devices/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
Connection: close\r\nContent-Length: 65536\r\n\r\n"
        )
        .into_bytes(),
    );
    assert_eq!(big.await.unwrap(), Some(413));
    // An authenticated firmware upload of the same size passes the body limit (and reaches the route: the device
    // is unknown).
    let mut upload = format!(
        "PUT /v1/devices/0123456789abcdef01234567 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
Connection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: 65536\r\n\r\n"
    )
    .into_bytes();
    upload.extend(std::iter::repeat_n(0u8, 65536));
    assert_eq!(exchange(upload).await.unwrap(), Some(404));
    // The same upload with the token in the body is held to the small limit.
    let mut upload = b"PUT /v1/devices/0123456789abcdef01234567 HTTP/1.1\r\nHost: x\r\n\
Connection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 65536\r\n\r\n"
        .to_vec();
    upload.extend(std::iter::repeat_n(b'a', 65536));
    assert_eq!(exchange(upload).await.unwrap(), Some(413));
    // A body that stops arriving is answered 408.
    let stalled = exchange(
        format!(
            "POST /v1/devices/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
Connection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=x"
        )
        .into_bytes(),
    );
    assert_eq!(stalled.await.unwrap(), Some(408));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_attempts_are_rate_limited_per_address() {
    let env = Env::start_with(limits(64).with_login_rate(5, Duration::from_secs(3600))).await;
    let http = env.running.http;
    let login = move |password: &'static str| {
        let form = format!(
            "grant_type=password&username={}&password={password}&client_id=spark&client_secret=spark",
            env::USER
        );
        tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(http).unwrap();
            write!(
                s,
                "POST /oauth/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            )
            .unwrap();
            read_until_closed(&mut s).and_then(|r| status_of(&r))
        })
    };
    // Env::start_with logged in once: four more attempts are allowed, then the address must wait, even with
    // the right password.
    for _ in 0..4 {
        assert_eq!(login("wrong").await.unwrap(), Some(400));
    }
    assert_eq!(login("wrong").await.unwrap(), Some(429));
    assert_eq!(
        login(env::PASSWORD).await.unwrap(),
        Some(429),
        "the right password"
    );
    // Token-authenticated calls are not password attempts.
    fresh_api(&env).list_devices().await.unwrap();
}

/// Password hashing does not run on the async worker: on a one-thread runtime, another task keeps running while
/// a password is checked (with the hash inline, it would not run at all before the check completed).
#[tokio::test(flavor = "current_thread")]
async fn password_hashing_leaves_the_async_worker_free() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = env::TempDir::new("hashing");
    std::fs::write(dir.0.join("default_key.pem"), env::SERVER_KEY).unwrap();
    let config = spark_cloud::Config {
        dir: dir.0.clone(),
        http: "127.0.0.1:0".parse().unwrap(),
        key_bits: 2048,
    };
    let hub = Arc::new(spark_cloud::hub::ScriptedHub::new());
    let cloud = spark_cloud::open(&config, hub).unwrap();
    cloud
        .state()
        .expect("the embedded store")
        .create_user("joe", "pw", &mut spark_cloud::system_rng())
        .unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let counter = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    for (user, password) in [("joe", "wrong"), ("nobody", "pw")] {
        let before = ticks.load(Ordering::Relaxed);
        assert!(cloud.verify_password(user, password).await.is_err());
        assert!(
            ticks.load(Ordering::Relaxed) > before,
            "the worker was blocked while {user}'s password was hashed"
        );
    }
    assert_eq!(cloud.verify_password("joe", "pw").await.unwrap(), "joe");
    counter.abort();
}
