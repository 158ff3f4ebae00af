//! The console's files over a real socket (types, policy, no token needed to load the page), and the device fields
//! it shows, as a virtual Core's Hello sets them in `GET /v1/devices` and `GET /v1/devices/:id`.

#[path = "support/e2e_env.rs"]
mod env;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use env::{Env, PASSWORD, USER};
use spark_cc3000::ServicePack;

const CORE_A: [u8; 12] = [
    0x53, 0xff, 0x6c, 0x06, 0x50, 0x75, 0x53, 0x51, 0x19, 0x51, 0x16, 0x87,
];

/// One raw HTTP/1.1 exchange: (status, lower-cased header lines, body).
fn exchange(addr: SocketAddr, request: &str) -> (u16, Vec<String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines.map(str::to_ascii_lowercase).collect();
    (status, headers, body.to_owned())
}

fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, Vec<String>, String) {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"),
    )
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find_map(|h| h.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_its_types_and_a_strict_policy() {
    let env = Env::start().await;
    let http = env.running.http;
    let files = tokio::task::spawn_blocking(move || {
        [
            ("/console", "text/html; charset=utf-8"),
            ("/console/", "text/html; charset=utf-8"),
            ("/console/console.js", "text/javascript; charset=utf-8"),
            ("/console/console.css", "text/css; charset=utf-8"),
        ]
        .map(|(path, kind)| (path, kind, get(http, path, "")))
    })
    .await
    .unwrap();
    for (path, kind, (status, headers, body)) in &files {
        assert_eq!(*status, 200, "{path}");
        assert_eq!(header(headers, "content-type"), Some(*kind), "{path}");
        assert_eq!(
            header(headers, "content-security-policy"),
            Some(spark_cloud::console::CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert!(
            spark_cloud::console::CONTENT_SECURITY_POLICY.starts_with("default-src 'self'"),
            "the policy allows only this origin"
        );
        assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(headers, "referrer-policy"), Some("no-referrer"));
        // The page is public and same-origin: no CORS header invites other sites to read it.
        assert_eq!(header(headers, "access-control-allow-origin"), None);
        assert!(!body.is_empty());
    }
    // The page names its script and style by absolute path, so /console and /console/ both work.
    let page = &files[0].2.2;
    assert!(page.contains(r#"src="/console/console.js""#));
    assert!(page.contains(r#"href="/console/console.css""#));
    let size: usize = files[1..].iter().map(|(_, _, r)| r.2.len()).sum();
    assert_eq!(size, spark_cloud::console::page_size());
    eprintln!("console page: {size} bytes of HTML, CSS and JavaScript");

    let (status, _, _) = tokio::task::spawn_blocking(move || get(http, "/console/app.js", ""))
        .await
        .unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cores_hello_shows_as_platform_and_product_fields_of_the_device() {
    let mut env = Env::start().await;
    let a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let http = env.running.http;
    let id = a.id.clone();
    let (list, one) = tokio::task::spawn_blocking(move || {
        let form = format!(
            "grant_type=password&username={USER}&password={}",
            PASSWORD.replace(' ', "+")
        );
        let (status, _, body) = exchange(
            http,
            &format!(
                "POST /oauth/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
Authorization: Basic c3Bhcms6c3Bhcms=\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Content-Length: {}\r\n\r\n{form}",
                form.len()
            ),
        );
        assert_eq!(status, 200, "{body}");
        let grant: serde_json::Value = serde_json::from_str(&body).unwrap();
        let auth = format!(
            "Authorization: Bearer {}\r\n",
            grant["access_token"].as_str().unwrap()
        );
        let (status, _, list) = get(http, "/v1/devices", &auth);
        assert_eq!(status, 200, "{list}");
        let (status, _, one) = get(http, &format!("/v1/devices/{id}"), &auth);
        assert_eq!(status, 200, "{one}");
        (list, one)
    })
    .await
    .unwrap();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    for device in [&list[0], &one] {
        assert_eq!(device["id"], a.id.as_str());
        // The Core's Hello has no Device OS fields: platform 0. A Core without a product sends 0xffff ("none") as
        // its product id and version.
        assert_eq!(device["platform_id"], 0);
        assert_eq!(device["product_id"], 0xffff);
        assert_eq!(device["product_firmware_version"], 0xffff);
        // The original fields are still there.
        assert_eq!(device["connected"], true);
        assert_eq!(device["cc3000_patch_version"], "1.24");
    }
}
