//! Every endpoint of the client against a real HTTP/1.1 server on 127.0.0.1.

mod support;

use std::time::{Duration, SystemTime};

use spark_api::{
    Client, Credentials, Error, ErrorBody, FirmwareFile, NewWebhook, Owner, Publish, RetryPolicy,
    TimeoutPhase, TokenLifetime, VariableValue,
};
use support::{BINARY, CORE, NEW_TOKEN, PASSWORD, TOKEN, TestServer, USER};

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

fn api_error(error: Error) -> spark_api::ApiError {
    match error {
        Error::Api(api) => *api,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The token only ever travels in the Authorization header.
fn assert_token_only_in_header(server: &TestServer) {
    for request in server.requests() {
        let query = request.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        assert!(!query.contains("access_token"), "{request:?}");
        assert!(!request.uri.contains(TOKEN), "{request:?}");
        assert!(
            !support_contains(&request.body, TOKEN.as_bytes()),
            "{request:?}"
        );
        if let Some(auth) = request.header("authorization") {
            assert!(
                auth == format!("Bearer {TOKEN}") || auth.starts_with("Basic "),
                "{auth}"
            );
        }
    }
}

fn support_contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn login_and_tokens() {
    let server = TestServer::start().await;
    let anonymous = Client::builder()
        .base_url(server.base_url())
        .build()
        .unwrap();
    let credentials = Credentials::new(USER, PASSWORD);

    let before = SystemTime::now();
    let grant = anonymous
        .login(&credentials, TokenLifetime::Default)
        .await
        .unwrap();
    assert_eq!(grant.access_token.expose(), NEW_TOKEN);
    assert_eq!(grant.token_type, "bearer");
    assert_eq!(grant.expires_in, Some(7_776_000));
    assert!(grant.expires_at().unwrap() >= before + Duration::from_secs(7_776_000));
    let login = &server.requests_to("/oauth/token")[0];
    assert_eq!(
        login.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(login.header("authorization"), None);
    let form = login.form();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("password"));
    assert_eq!(get("username"), Some(USER));
    assert_eq!(get("client_id"), Some("CLI2"));
    assert_eq!(get("expires_in"), None);

    let never = anonymous
        .login(&credentials, TokenLifetime::Never)
        .await
        .unwrap();
    assert_eq!(never.expires_at(), None);
    let short = anonymous
        .login(&credentials, TokenLifetime::Seconds(3600))
        .await
        .unwrap();
    assert_eq!(short.expires_in, Some(3600));

    // The local cloud's answer to a wrong password.
    let wrong = api_error(
        anonymous
            .login(&Credentials::new(USER, "nope"), TokenLifetime::Default)
            .await
            .unwrap_err(),
    );
    assert_eq!(wrong.status, 503);
    assert_eq!(wrong.body.oauth_error(), Some("server_error"));
    assert_eq!(
        server.hits("POST /oauth/token"),
        4,
        "a login is never retried"
    );

    // MFA.
    let mfa = api_error(
        anonymous
            .login(
                &Credentials::new("mfa@example.com", "x"),
                TokenLifetime::Default,
            )
            .await
            .unwrap_err(),
    );
    let ErrorBody::OAuth {
        error, mfa_token, ..
    } = &mfa.body
    else {
        panic!("{mfa:?}");
    };
    assert_eq!(
        (error.as_str(), mfa_token.as_deref()),
        ("mfa_required", Some("mfa-7f3a"))
    );
    let grant = anonymous.login_mfa("mfa-7f3a", "123456").await.unwrap();
    assert_eq!(grant.access_token.expose(), NEW_TOKEN);
    assert!(anonymous.login_mfa("mfa-7f3a", "000000").await.is_err());

    // HTTP-Basic token endpoints.
    let tokens = anonymous.list_access_tokens(&credentials).await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0].client.as_deref(), Some("spark"));
    let bad = api_error(
        anonymous
            .list_access_tokens(&Credentials::new(USER, "wrong"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.status, 401);
    assert_eq!(bad.body.message().as_deref(), Some("Bad password"));
    anonymous
        .delete_access_token(&credentials, &tokens[0].token)
        .await
        .unwrap();

    // A client with a token revokes it.
    client(&server).delete_current_access_token().await.unwrap();
    assert!(matches!(
        anonymous.delete_current_access_token().await,
        Err(Error::NoToken)
    ));
    assert_token_only_in_header(&server);
}

#[tokio::test]
async fn devices() {
    let server = TestServer::start().await;
    let client = client(&server);

    let list = client.list_devices().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name.as_deref(), Some("plumber_laser"));
    assert!(!list[0].connected);
    assert_eq!(list[1].requires_deep_update, Some(true));

    let info = client.device(CORE).await.unwrap();
    assert_eq!(info.cc3000_patch_version.as_deref(), Some("1.29"));
    assert_eq!(info.requires_deep_update, Some(true));
    assert_eq!(info.functions.as_deref(), Some(&["brew".to_owned()][..]));
    assert_eq!(info.variables.as_ref().unwrap()["humidity"], "double");
    // By name, as the local cloud allows.
    assert_eq!(client.device("core1").await.unwrap().id.to_string(), CORE);
    // A typed id addresses the same device.
    let typed: spark_api::DeviceId = CORE.parse().unwrap();
    assert_eq!(client.device(typed).await.unwrap().id, typed);

    let renamed = client.rename_device(CORE, "new name").await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("new name"));
    let put = server
        .requests_to(&format!("/v1/devices/{CORE}"))
        .pop()
        .unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(put.body.as_ref(), b"name=new+name");

    let signal = client.signal_device(CORE, true).await.unwrap();
    assert_eq!(signal.signaling, Some(true));
    assert_eq!(
        client.signal_device(CORE, false).await.unwrap().signaling,
        Some(false)
    );

    assert_eq!(
        client
            .claim_device("0123456789abcdef01234567")
            .await
            .unwrap()
            .ok,
        Some(true)
    );
    let taken = api_error(
        client
            .claim_device("fedcba9876543210fedcba98")
            .await
            .unwrap_err(),
    );
    assert_eq!(taken.status, 200);
    assert_eq!(
        taken.body.message().as_deref(),
        Some("That belongs to someone else.")
    );

    client.release_device(CORE).await.unwrap();
    let unknown = api_error(client.release_device("nope").await.unwrap_err());
    assert_eq!((unknown.status, &unknown.body), (404, &ErrorBody::Empty));

    assert!(client.ping_device(CORE).await.unwrap().online);

    let missing = api_error(client.device("missing").await.unwrap_err());
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        ErrorBody::Text("Oops, I couldn't find that core".into())
    );

    let decode = client.device("bad-shape").await.unwrap_err();
    let Error::Decode { path, status, .. } = &decode else {
        panic!("{decode:?}");
    };
    assert_eq!((path.as_str(), *status), ("connected", 200));

    // Product scope.
    let product = client.for_owner(Owner::Product("my-product".into()));
    let devices = product.list_devices().await.unwrap();
    assert_eq!(devices[0].product_id, Some(6));
    assert!(matches!(
        client
            .for_owner(Owner::Org("acme".into()))
            .list_devices()
            .await,
        Err(Error::InvalidInput { what: "scope", .. })
    ));
    assert_token_only_in_header(&server);
}

#[tokio::test]
async fn functions_and_variables() {
    let server = TestServer::start().await;
    let client = client(&server);

    let called = client.call_function(CORE, "brew", "202,230").await.unwrap();
    assert_eq!(
        called.return_value, 7,
        "the server returns the argument's length"
    );
    let request = server
        .requests_to(&format!("/v1/devices/{CORE}/brew"))
        .pop()
        .unwrap();
    assert_eq!(request.body.as_ref(), b"arg=202%2C230");

    let not_found = api_error(client.call_function(CORE, "nosuch", "").await.unwrap_err());
    assert_eq!(not_found.status, 404);
    assert_eq!(
        not_found.body,
        ErrorBody::Message {
            ok: Some(false),
            error: "Function not found".into()
        }
    );
    let timed_out = api_error(client.call_function(CORE, "slowfn", "").await.unwrap_err());
    assert_eq!(
        (timed_out.status, timed_out.body.message().as_deref()),
        (408, Some("Timed out."))
    );

    // A function call is never retried, not even after a 503 or a 429.
    let failed = api_error(client.call_function(CORE, "fail", "x").await.unwrap_err());
    assert_eq!(failed.status, 503);
    assert_eq!(server.hits(&format!("POST /v1/devices/{CORE}/fail")), 1);
    let busy = api_error(client.call_function(CORE, "busy", "x").await.unwrap_err());
    assert_eq!(
        (busy.status, busy.retry_after),
        (429, Some(Duration::from_secs(1)))
    );
    assert_eq!(server.hits(&format!("POST /v1/devices/{CORE}/busy")), 1);

    let int = client.variable(CORE, "temperature").await.unwrap();
    assert_eq!(int.result, VariableValue::Int(42));
    assert_eq!(int.cmd.as_deref(), Some("VarReturn"));
    assert_eq!(
        int.core_info
            .unwrap()
            .device_id
            .map(|id| id.to_string())
            .as_deref(),
        Some(CORE)
    );
    assert_eq!(
        client.variable(CORE, "humidity").await.unwrap().result,
        VariableValue::Double(21.5)
    );
    assert_eq!(
        client.variable(CORE, "status").await.unwrap().result,
        VariableValue::String("idle".into())
    );
    let flag = client.variable(CORE, "flag").await.unwrap();
    assert_eq!(flag.result.as_bool(), Some(true));
    assert_eq!(flag.core_info.unwrap().name.as_deref(), Some("core1"));

    let missing = api_error(client.variable(CORE, "nosuch").await.unwrap_err());
    assert_eq!(
        missing.body.message().as_deref(),
        Some("Variable not found")
    );
    for (variable, expected_path) in [
        ("weird", "result"),
        ("corrupt", "coreInfo.connected"),
        ("truncated", "."),
    ] {
        match client.variable(CORE, variable).await.unwrap_err() {
            Error::Decode { path, .. } => assert_eq!(path, expected_path, "{variable}"),
            other => panic!("{variable}: {other:?}"),
        }
    }
    assert!(matches!(
        client.variable(CORE, "").await,
        Err(Error::InvalidInput { .. })
    ));
    assert_token_only_in_header(&server);
}

#[tokio::test]
async fn auth_errors() {
    let server = TestServer::start().await;
    let anonymous = Client::builder()
        .base_url(server.base_url())
        .build()
        .unwrap();
    assert!(matches!(
        anonymous.list_devices().await,
        Err(Error::NoToken)
    ));

    let wrong = client(&server).with_token("0000000000000000000000000000000000000000");
    let error = wrong.list_devices().await.unwrap_err();
    assert!(error.is_auth());
    let api = api_error(error);
    assert_eq!(
        (api.status, api.body.oauth_error()),
        (401, Some("invalid_token"))
    );
    // Nothing reached the server without a token; the wrong token reached it once (no retry of a 401).
    assert_eq!(server.hits("GET /v1/devices"), 1);
}

#[tokio::test]
async fn error_shapes_retries_and_timeouts() {
    let server = TestServer::start().await;
    let client = client(&server);

    // 429 with Retry-After: waits, then succeeds on the second attempt.
    let limited = client.device("limited").await.unwrap();
    assert_eq!(limited.id.to_string(), "53ff00000000000000000429");
    assert_eq!(server.hits("GET /v1/devices/limited"), 2);

    // A 503 is retried for a GET.
    assert_eq!(
        client.device("flaky").await.unwrap().id.to_string(),
        "53ff00000000000000000503"
    );
    assert_eq!(server.hits("GET /v1/devices/flaky"), 2);

    // A 500 with the capital-E shape, after all retries.
    let down = api_error(client.device("down").await.unwrap_err());
    assert_eq!(down.status, 500);
    assert_eq!(
        down.body.message().as_deref(),
        Some("TypeError: undefined is not a function")
    );
    assert_eq!(server.hits("GET /v1/devices/down"), 3);

    // A proxy's HTML page.
    let proxy = api_error(client.device("proxy-error").await.unwrap_err());
    assert_eq!(proxy.status, 502);
    assert!(matches!(proxy.body, ErrorBody::NotJson(ref t) if t.contains("Bad gateway")));

    // A 200 with a lone error.
    let nothing = api_error(
        client
            .flash_known_app(CORE, "unknown-app")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (nothing.status, nothing.body.message().as_deref()),
        (200, Some("Nothing to do?"))
    );

    // A slow response hits the request timeout.
    let impatient = Client::builder()
        .base_url(server.base_url())
        .access_token(TOKEN)
        .request_timeout(Duration::from_millis(200))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let error = impatient.device("slow").await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Timeout {
                phase: TimeoutPhase::Request,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_timeout());

    // Nothing listens: a transport error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let nowhere = Client::builder()
        .base_url(format!("http://{closed}"))
        .access_token(TOKEN)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(matches!(
        nowhere.device(CORE).await,
        Err(Error::Transport { .. })
    ));
}

#[tokio::test]
async fn publish() {
    let server = TestServer::start().await;
    let client = client(&server);
    client
        .publish(&Publish::new("temperature").data("Hello World").ttl(60))
        .await
        .unwrap();
    let request = server.requests_to("/v1/devices/events").pop().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.body.as_ref(),
        b"name=temperature&data=Hello+World&private=true&ttl=60"
    );
    client.publish(&Publish::new("x").public()).await.unwrap();
    assert_eq!(
        server
            .requests_to("/v1/devices/events")
            .pop()
            .unwrap()
            .body
            .as_ref(),
        b"name=x&private=false"
    );
    client
        .for_owner(Owner::Product("my-product".into()))
        .publish(&Publish::new("p"))
        .await
        .unwrap();
    assert_eq!(server.hits("POST /v1/products/my-product/events"), 1);
    assert!(matches!(
        client.publish(&Publish::new("")).await,
        Err(Error::InvalidInput { .. })
    ));
    assert!(client.publish(&Publish::new("a".repeat(65))).await.is_err());
    assert_token_only_in_header(&server);
}

#[tokio::test]
async fn firmware() {
    let server = TestServer::start().await;
    let client = client(&server);

    let started = client
        .flash_binary(CORE, &FirmwareFile::new("tinker.bin", BINARY))
        .await
        .unwrap();
    assert_eq!(started.status.as_deref(), Some("Update started"));
    let request = server
        .requests_to(&format!("/v1/devices/{CORE}"))
        .pop()
        .unwrap();
    assert_eq!(request.method, "PUT");
    assert!(
        request
            .header("content-type")
            .unwrap()
            .starts_with("multipart/form-data; boundary=")
    );

    // The local cloud's flash failure is an HTTP 200 with ok:false; a flash is never retried.
    let offline = api_error(
        client
            .flash_binary("offline", &FirmwareFile::new("a.bin", BINARY))
            .await
            .unwrap_err(),
    );
    assert_eq!(offline.status, 200);
    assert!(
        matches!(&offline.body, ErrorBody::Errors { errors, .. } if errors[0]["error"] == "Timed out.")
    );
    assert_eq!(server.hits("PUT /v1/devices/offline"), 1);

    let compile_error = api_error(
        client
            .flash_sources(
                CORE,
                &[FirmwareFile::new("app.ino", "void setup() { foo(); }")],
            )
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(&compile_error.body, ErrorBody::Errors { output: Some(o), .. } if o.contains("foo"))
    );
    assert!(
        client
            .flash_binary(CORE, &FirmwareFile::new("e.bin", Vec::new()))
            .await
            .is_err()
    );

    let tinker = client.flash_known_app(CORE, "tinker").await.unwrap();
    assert_eq!(tinker.status.as_deref(), Some("Update started"));

    let compiled = client
        .compile(
            &[FirmwareFile::new(
                "app.ino",
                "void setup() {}\nvoid loop() {}\n",
            )],
            Some(0),
            None,
        )
        .await
        .unwrap();
    assert_eq!(compiled.binary_id, "5a1b");
    assert!(compiled.size_info.is_some());
    let compile_request = server.requests_to("/v1/binaries").pop().unwrap();
    assert!(support_contains(
        &compile_request.body,
        b"name=\"platform_id\"\r\n\r\n0\r\n"
    ));
    let failed = api_error(
        client
            .compile(&[FirmwareFile::new("other.cpp", "x")], None, None)
            .await
            .unwrap_err(),
    );
    assert!(matches!(failed.body, ErrorBody::Errors { .. }));

    let binary = client.download_binary(&compiled.binary_id).await.unwrap();
    assert_eq!(binary.as_ref(), BINARY);
    let gone = api_error(client.download_binary("expired").await.unwrap_err());
    assert_eq!(gone.status, 404);

    let pem = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC\n-----END PUBLIC KEY-----\n";
    client
        .send_public_key(CORE, pem, Some("rsa"))
        .await
        .unwrap();
    let provisioning = server.requests_to("/v1/provisioning/").pop().unwrap();
    let form = provisioning.form();
    assert!(form.iter().any(|(k, v)| k == "deviceID" && v == CORE));
    assert!(
        form.iter()
            .any(|(k, v)| k == "order" && v.starts_with("manual_"))
    );
    let pkcs1 = "-----BEGIN RSA PUBLIC KEY-----\nMIGJAoGBAL\n-----END RSA PUBLIC KEY-----\n";
    let rejected = api_error(client.send_public_key(CORE, pkcs1, None).await.unwrap_err());
    assert_eq!(rejected.status, 400);
    assert!(
        rejected
            .body
            .message()
            .unwrap()
            .contains("Not a public key")
    );
    assert!(client.send_public_key(CORE, "garbage", None).await.is_err());
    assert_token_only_in_header(&server);
}

#[tokio::test]
async fn webhooks() {
    let server = TestServer::start().await;
    let client = client(&server);
    let hooks = client.list_webhooks().await.unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0].request_type.as_deref(), Some("POST"));
    assert_eq!(hooks[0].mydevices, Some(true));

    let mut hook = NewWebhook::new("temperature", "https://example.com/{{SPARK_EVENT_VALUE}}");
    hook.mydevices = Some(true);
    let created = client.create_webhook(&hook).await.unwrap();
    assert_eq!(created.id, "5512d6ac7e9e6e6e6e6e6e70");
    assert_eq!(created.event.as_deref(), Some("temperature"));
    let request = server.requests_to("/v1/webhooks").pop().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["mydevices"], true);
    assert!(body.get("headers").is_none());

    client.delete_webhook(&hooks[0].id).await.unwrap();
    let missing = api_error(client.delete_webhook("nope").await.unwrap_err());
    assert_eq!(missing.status, 404);
    assert!(
        client
            .create_webhook(&NewWebhook::new("", "u"))
            .await
            .is_err()
    );
    assert_token_only_in_header(&server);
}

#[tokio::test]
async fn explicit_proxy_and_insecure_opt_in() {
    let server = TestServer::start().await;
    // A remote plain-http cloud needs the opt-in; the proxy (the test server) receives the absolute-form request.
    assert!(
        Client::builder()
            .base_url("http://cloud.invalid")
            .build()
            .is_err()
    );
    let client = Client::builder()
        .base_url("http://cloud.invalid")
        .allow_insecure_http(true)
        .proxy(server.base_url())
        .access_token(TOKEN)
        .build()
        .unwrap();
    assert_eq!(client.list_devices().await.unwrap().len(), 2);
    let request = server.requests().pop().unwrap();
    assert_eq!(request.uri, "http://cloud.invalid/v1/devices");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}
