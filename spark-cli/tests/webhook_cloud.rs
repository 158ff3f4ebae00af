//! `spark webhook create|list|delete` against the real `spark-cloud` binary, and the hook firing when a
//! `spark-vcore` Core publishes: the request reaches a listener on loopback, and the listener's answer comes back to
//! the Core as `hook-response/...` (it subscribed to it). Real processes and sockets only; every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

mod tools;

use tools::{Background, PATIENCE, Stderr, free_port, line_with, ok, run, start};

const PASSWORD: &str = "correct horse battery staple";

/// A listener that answers each request `200 thanks` and sends the request (head and body) on the channel.
fn listener() -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { break };
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Head, then as many body bytes as announced.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nthanks",
            );
            let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
        }
    });
    (port, rx)
}

#[test]
fn webhooks_are_managed_with_spark_and_fire_when_a_virtual_core_publishes() {
    let bin = tools::binaries();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let (http, device) = (free_port(), free_port());
    let mut background = Background(Vec::new());

    ok(
        run(
            &bin,
            dir,
            "spark-cloud",
            &["--dir", "cloud", "user", "add", "joe@example.com"],
            PASSWORD,
        ),
        "spark-cloud user add",
    );
    let http_addr = format!("127.0.0.1:{http}");
    let device_addr = format!("127.0.0.1:{device}");
    let (cloud, cloud_out) = start(
        &bin,
        dir,
        "spark-cloud",
        &[
            "--dir",
            "cloud",
            "--http",
            &http_addr,
            "--device",
            &device_addr,
        ],
        Stderr::Shown,
    );
    background.0.push(cloud);
    line_with(&cloud_out, "\"http\"");
    let api_url = format!("http://{http_addr}");
    ok(
        run(
            &bin,
            dir,
            "spark",
            &["login", "--api-url", &api_url, "-u", "joe@example.com"],
            PASSWORD,
        ),
        "spark login",
    );
    let id = ok(
        run(
            &bin,
            dir,
            "spark-vcore",
            &["--dir", "core", "--print-id"],
            "",
        ),
        "print-id",
    )
    .trim()
    .to_owned();
    ok(
        run(
            &bin,
            dir,
            "spark",
            &["keys", "send", &id, "core/core-000/core_private_key.der"],
            "",
        ),
        "spark keys send",
    );

    // No hooks yet; create one, see it listed.
    assert_eq!(
        ok(run(&bin, dir, "spark", &["webhook", "list"], ""), "list").trim(),
        "No webhooks."
    );
    let (port, requests) = listener();
    let url = format!("http://127.0.0.1:{port}/reading");
    let created = ok(
        run(
            &bin,
            dir,
            "spark",
            &["webhook", "create", "temp", &url, "--device", &id],
            "",
        ),
        "spark webhook create",
    );
    let hook = created
        .strip_prefix("Created webhook ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected: {created}"))
        .to_owned();
    let listed = ok(run(&bin, dir, "spark", &["webhook", "list"], ""), "list");
    assert_eq!(listed.trim(), format!("{hook}: POST \"temp\" -> {url}"));

    // A Core that publishes `temp/reading` after its handshake and listens for the hook's answer.
    let server_key = "cloud/default_key.pub.pem";
    let (core, core_out) = start(
        &bin,
        dir,
        "spark-vcore",
        &[
            "--dir",
            "core",
            "--server-key",
            server_key,
            "--cloud",
            &device_addr,
            "--publish",
            "temp/reading=21.5",
            "--subscribe",
            "hook-response/temp",
            "--json",
        ],
        Stderr::Shown,
    );
    background.0.push(core);
    let request = requests.recv_timeout(PATIENCE).expect("the hook's request");
    assert!(
        request.starts_with("POST /reading HTTP/1.1\r\n"),
        "{request}"
    );
    let body: serde_json::Value =
        serde_json::from_str(&request[request.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["event"], "temp/reading");
    assert_eq!(body["data"], "21.5");
    assert_eq!(body["coreid"], id.as_str());
    let answer = line_with(&core_out, "hook-response/temp/reading");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["detail"]["name"],
        format!("hook-response/temp/reading/{id}/0")
    );
    assert_eq!(answer["detail"]["data"], "thanks");

    // Deleted: gone from the list; deleting it again is one line and a failure.
    ok(
        run(&bin, dir, "spark", &["webhook", "delete", &hook], ""),
        "delete",
    );
    assert_eq!(
        ok(run(&bin, dir, "spark", &["webhook", "list"], ""), "list").trim(),
        "No webhooks."
    );
    let again = run(&bin, dir, "spark", &["webhook", "delete", &hook], "");
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("404") || err.to_lowercase().contains("not found"),
        "{err}"
    );
}
