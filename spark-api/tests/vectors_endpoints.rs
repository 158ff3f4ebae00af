//! Uploading a real public key from the shared protocol vectors, against a real HTTP/1.1 server on 127.0.0.1.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.

mod support;

use std::time::Duration;

use spark_api::{Client, RetryPolicy};
use support::{CORE, TOKEN, TestServer};

fn client(server: &TestServer) -> Client {
    Client::builder()
        .base_url(server.base_url())
        .access_token(TOKEN)
        .retry_policy(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        })
        .build()
        .expect("client")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A real RSA-2048 SubjectPublicKeyInfo from the shared protocol vectors, uploaded as PEM: the `+`, `/`, `=` and
/// newlines of the PEM must survive the form encoding byte for byte.
#[spark_vectors::test]
#[tokio::test]
async fn upload_a_real_public_key() {
    let der = spark_vectors::load("protocol", "handshake_fixture.server_public_2048.der");
    let encoded = base64(&der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");

    let server = TestServer::start().await;
    client(&server)
        .send_public_key(CORE, &pem, Some("rsa"))
        .await
        .unwrap();
    let request = server.requests_to("/v1/provisioning/").pop().unwrap();
    assert_eq!(request.uri, format!("/v1/provisioning/{CORE}"));
    let form = request.form();
    let key = form
        .iter()
        .find(|(k, _)| k == "publicKey")
        .map(|(_, v)| v.as_str());
    assert_eq!(key, Some(pem.as_str()));
    assert!(form.iter().any(|(k, v)| k == "algorithm" && v == "rsa"));
}
