//! Response bodies are capped: a cloud that sends more than the client reads ends the call with a typed error
//! naming the limit, whether it announces the length or streams the body in chunks.

use spark_api::{Client, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: usize = 1024 * 1024;

/// Serves every request with `status` and an empty JSON array of `len` bytes, announced with `Content-Length` or sent
/// chunked.
async fn server(status: u16, len: usize, chunked: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                // `[`, blanks, `]`: an empty list of `len` bytes.
                let mut body = vec![b' '; len.max(2)];
                body[0] = b'[';
                body[len.max(2) - 1] = b']';
                let head = if chunked {
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    )
                } else {
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                };
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                if chunked {
                    for chunk in body.chunks(64 * 1024) {
                        let frame = format!("{:x}\r\n", chunk.len());
                        if s.write_all(frame.as_bytes()).await.is_err()
                            || s.write_all(chunk).await.is_err()
                            || s.write_all(b"\r\n").await.is_err()
                        {
                            return;
                        }
                    }
                    let _ = s.write_all(b"0\r\n\r\n").await;
                } else {
                    let _ = s.write_all(&body).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn client(base: String) -> Client {
    Client::builder()
        .base_url(base)
        .access_token("0123456789abcdef0123456789abcdef01234567")
        .no_proxy()
        .max_response_bytes(LIMIT)
        .retry_policy(spark_api::RetryPolicy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_reply_over_the_limit_is_a_typed_error_naming_it() {
    for chunked in [false, true] {
        let api = client(server(200, 4 * LIMIT, chunked).await);
        match api.list_devices().await {
            Err(Error::ResponseTooLarge { limit, url }) => {
                assert_eq!(limit, LIMIT);
                assert!(url.ends_with("/v1/devices"), "{url}");
            }
            other => panic!("chunked {chunked}: expected ResponseTooLarge, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_error_body_is_capped_more_tightly() {
    let api = client(server(500, 2 * spark_api::MAX_ERROR_BODY_BYTES, true).await);
    match api.list_devices().await {
        Err(Error::ResponseTooLarge { limit, .. }) => {
            assert_eq!(limit, spark_api::MAX_ERROR_BODY_BYTES)
        }
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reply_within_the_limit_is_read() {
    let api = client(server(200, LIMIT / 2, true).await);
    assert!(api.list_devices().await.unwrap().is_empty());
}
