//! `spark` cloud commands against a real HTTP server on 127.0.0.1.

mod support;

use serde_json::Value;
use support::{CORE, Cloud, PASSWORD, TOKEN, USER};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "spark failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// Log in and return the home directory holding the stored token.
fn logged_in(cloud: &Cloud) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let out = cloud.spark(
        home.path(),
        &["login", "--username", USER, "--password", PASSWORD],
    );
    assert!(out.status.success(), "login failed: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "Successfully completed login!");
    home
}

#[test]
fn login_stores_the_token_like_particle_cli() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let config: Value = serde_json::from_slice(
        &std::fs::read(home.path().join(".particle/particle.config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["access_token"], TOKEN);
    assert_eq!(config["username"], USER);
    assert_eq!(config["apiUrl"], cloud.url().as_str());
    let login = &cloud.requests_to("POST", "/oauth/token")[0];
    assert_eq!(login.field("grant_type").as_deref(), Some("password"));
    assert_eq!(login.field("client_id").as_deref(), Some("CLI2"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join(".particle/particle.config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the token file must not be readable by others"
        );
    }
}

#[test]
fn wrong_password_is_one_line_and_fails() {
    let cloud = Cloud::start();
    let home = tempfile::tempdir().unwrap();
    let out = cloud.spark(home.path(), &["login", "-u", USER, "-p", "nope"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("spark: "), "{err}");
    assert!(err.contains("User credentials are invalid"), "{err}");
    assert!(!home.path().join(".particle/particle.config.json").exists());
}

#[test]
fn wrong_token_gets_401_as_one_line_and_a_failure_code() {
    let cloud = Cloud::start();
    let home = tempfile::tempdir().unwrap();
    let out = cloud.spark(
        home.path(),
        &[
            "list",
            "--token",
            "0000000000000000000000000000000000000000",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(
        err.contains("The access token provided is invalid."),
        "{err}"
    );
}

#[test]
fn not_logged_in_is_an_error() {
    let cloud = Cloud::start();
    let home = tempfile::tempdir().unwrap();
    let out = cloud.spark(home.path(), &["list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not logged in"));
}

#[test]
fn list_shows_devices_with_variables_and_functions() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let text = stdout(&cloud.spark(home.path(), &["list"]));
    assert!(
        text.contains(&format!("kitchen [{CORE}] (Core) is online")),
        "{text}"
    );
    assert!(
        text.contains("garage [48ff6a065067555008342387] (Core) is offline"),
        "{text}"
    );
    assert!(text.contains("    temperature (double)"), "{text}");
    assert!(text.contains("    int brew(String args)"), "{text}");
    let listed = json(&cloud.spark(home.path(), &["list", "--json"]));
    let devices = listed.as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["id"], CORE);
    assert_eq!(devices[0]["functions"][0], "brew");
    assert_eq!(devices[1]["connected"], false);
    let online = json(&cloud.spark(home.path(), &["list", "online", "--json"]));
    assert_eq!(online.as_array().unwrap().len(), 1);
}

#[test]
fn info_reports_the_cc3000_version() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let info = json(&cloud.spark(home.path(), &["info", "kitchen", "--json"]));
    assert_eq!(info["cc3000_patch_version"], "1.24");
    assert_eq!(info["requires_deep_update"], true);
    let text = stdout(&cloud.spark(home.path(), &["info", "kitchen"]));
    assert!(text.contains("CC3000 service pack: 1.24"), "{text}");
}

#[test]
fn call_sends_the_argument_and_prints_the_return_value() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let out = cloud.spark(home.path(), &["call", CORE, "brew", "202,230"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The test cloud returns the argument's length.
    assert_eq!(stdout(&out).trim(), "7");
    let sent = cloud.requests_to("POST", &format!("/v1/devices/{CORE}/brew"));
    assert_eq!(sent[0].field("arg").as_deref(), Some("202,230"));
    let called = json(&cloud.spark(home.path(), &["call", "kitchen", "brew", "x", "--json"]));
    assert_eq!(called["return_value"], 1);
    let missing = cloud.spark(home.path(), &["call", CORE, "nothing"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("Function not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn get_prints_the_value() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let out = cloud.spark(home.path(), &["get", CORE, "temperature"]);
    assert_eq!(stdout(&out).trim(), "21.5");
    let value = json(&cloud.spark(home.path(), &["get", CORE, "temperature", "--json"]));
    assert_eq!(value["result"], 21.5);
    assert_eq!(value["name"], "temperature");
}

#[test]
fn publish_sends_name_data_privacy_and_ttl() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let out = cloud.spark(
        home.path(),
        &["publish", "door", "open", "--private", "--ttl", "30"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "Published private event: door");
    let out = cloud.spark(home.path(), &["publish", "bell", "--public"]);
    assert_eq!(stdout(&out).trim(), "Published public event: bell");
    let sent = cloud.requests_to("POST", "/v1/devices/events");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].field("name").as_deref(), Some("door"));
    assert_eq!(sent[0].field("data").as_deref(), Some("open"));
    assert_eq!(sent[0].field("private").as_deref(), Some("true"));
    assert_eq!(sent[0].field("ttl").as_deref(), Some("30"));
    assert_eq!(sent[1].field("private").as_deref(), Some("false"));
}

#[test]
fn subscribe_streams_events_as_json_lines() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let out = cloud.spark(home.path(), &["subscribe", "--mine", "--count", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["name"], "temperature");
    assert_eq!(lines[0]["data"], "21.5");
    assert_eq!(lines[0]["ttl"], 60);
    assert_eq!(lines[0]["coreid"], CORE);
    assert_eq!(lines[1]["name"], "motion");
    assert_eq!(cloud.requests_to("GET", "/v1/devices/events").len(), 1);
    let out = cloud.spark(
        home.path(),
        &["subscribe", "temp", "--device", CORE, "--count", "1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        cloud
            .requests_to("GET", &format!("/v1/devices/{CORE}/events/temp"))
            .len(),
        1
    );
}

#[test]
fn token_list_create_delete_use_basic_auth() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let tokens = json(&cloud.spark(home.path(), &["token", "list", "-p", PASSWORD, "--json"]));
    assert_eq!(tokens[0]["token"], TOKEN);
    assert_eq!(tokens[0]["client"], "spark-cli");
    assert_eq!(tokens[1]["expires_at"], Value::Null);
    let created = json(&cloud.spark(
        home.path(),
        &[
            "token",
            "create",
            "-p",
            PASSWORD,
            "--expires-in",
            "0",
            "--json",
        ],
    ));
    assert_eq!(created["token"], TOKEN);
    let out = cloud.spark(home.path(), &["token", "delete", "-p", PASSWORD, "abc123"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        cloud
            .requests_to("DELETE", "/v1/access_tokens/abc123")
            .len(),
        1
    );
    let bad = cloud.spark(home.path(), &["token", "list", "-p", "wrong"]);
    assert!(!bad.status.success());
    assert_eq!(stderr(&bad).trim_end().lines().count(), 1);
}

/// A header-less Core application of `len` bytes that passes the bootloader's checks: stack at the top of the
/// Core's SRAM, reset vector a Thumb address inside the image at 0x08005000.
fn core_image(len: usize, filler: &[u8]) -> Vec<u8> {
    let mut image = Vec::with_capacity(len);
    for word in [0x2000_5000u32, 0x0800_5101, 0, 0] {
        image.extend_from_slice(&word.to_le_bytes());
    }
    while image.len() < len {
        image.extend_from_slice(filler);
    }
    image.truncate(len);
    image
}

#[test]
fn flash_cloud_sends_a_binary_sources_or_an_app_name() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let bin = home.path().join("app.bin");
    std::fs::write(&bin, core_image(1024, b"firmware-bytes")).unwrap();
    let out = cloud.spark(
        home.path(),
        &["flash", "--cloud", CORE, bin.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("Flash device OK: {CORE} updated with app.bin")
    );
    let put = &cloud.requests_to("PUT", &format!("/v1/devices/{CORE}"))[0];
    let body = String::from_utf8_lossy(&put.body);
    assert!(
        body.contains("firmware-bytes") && body.contains("binary"),
        "{body}"
    );
    let app = json(&cloud.spark(
        home.path(),
        &["flash", "--cloud", "kitchen", "tinker", "--json"],
    ));
    assert_eq!(app["status"], "success");
    assert_eq!(app["kind"], "app");
    assert_eq!(app["what"], "tinker");
    let put = &cloud.requests_to("PUT", "/v1/devices/kitchen")[0];
    assert_eq!(put.field("app").as_deref(), Some("tinker"));
    // --cloud or --usb is required.
    let out = cloud.spark(home.path(), &["flash", CORE, "tinker"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn flash_cloud_reports_the_devices_outcome_with_the_exit_code() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let bin = home.path().join("app.bin");
    std::fs::write(&bin, core_image(1024, support::REFUSE_MARKER)).unwrap();
    let out = cloud.spark(
        home.path(),
        &["flash", "--cloud", CORE, bin.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["status"], "failed");
    assert!(
        report["outcome"]
            .as_str()
            .unwrap()
            .starts_with("failed app.bin"),
        "{report}"
    );
    let fields = report.as_object().unwrap();
    assert!(
        fields.values().all(|v| !v.is_null()),
        "no null fields: {report}"
    );
    assert!(
        stderr(&out).contains("the update failed"),
        "{}",
        stderr(&out)
    );
    // --no-wait returns once the cloud accepted the update.
    let out = cloud.spark(
        home.path(),
        &[
            "flash",
            "--cloud",
            CORE,
            bin.to_str().unwrap(),
            "--no-wait",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["status"], "started");
    assert!(report.get("outcome").is_none(), "{report}");
}

#[test]
fn flash_cloud_checks_the_file_before_sending_it() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let garbage = home.path().join("garbage.bin");
    std::fs::write(&garbage, [0x5Au8; 2048]).unwrap();
    let out = cloud.spark(
        home.path(),
        &["flash", "--cloud", CORE, garbage.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("garbage.bin: not a firmware image: "), "{err}");
    assert!(
        !err.contains("Some(") && !err.contains("Stack"),
        "words, not Rust names: {err}"
    );
    let missing = home.path().join("nope.bin");
    let out = cloud.spark(
        home.path(),
        &["flash", "--cloud", CORE, missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot read") && err.contains("nope.bin"),
        "{err}"
    );
    let out = cloud.spark(home.path(), &["flash", "--cloud", CORE, "nope.bin"]);
    assert!(
        stderr(&out).contains("cannot read nope.bin"),
        "{}",
        stderr(&out)
    );
    assert!(
        cloud
            .requests_to("PUT", &format!("/v1/devices/{CORE}"))
            .is_empty(),
        "nothing was sent"
    );
    // --force sends what the checks refused (a port's firmware for another board), and still waits for the outcome.
    let out = cloud.spark(
        home.path(),
        &[
            "flash",
            "--cloud",
            "--force",
            CORE,
            garbage.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let put = &cloud.requests_to("PUT", &format!("/v1/devices/{CORE}"))[0];
    assert!(
        put.body.windows(4).any(|w| w == [0x5A; 4]),
        "the file was sent"
    );
}

#[test]
fn compile_saves_the_downloaded_binary() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let src = home.path().join("app.ino");
    std::fs::write(&src, "void setup() {}\nvoid loop() {}\n").unwrap();
    let target = home.path().join("firmware.bin");
    let r = json(&cloud.spark(
        home.path(),
        &[
            "compile",
            src.to_str().unwrap(),
            "--saveTo",
            target.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(r["binary_id"], "5437a0c2");
    assert_eq!(r["size"], support::COMPILED.len());
    assert_eq!(std::fs::read(&target).unwrap(), support::COMPILED);
    let post = &cloud.requests_to("POST", "/v1/binaries")[0];
    assert!(String::from_utf8_lossy(&post.body).contains("void setup()"));
    // A compile error is reported on one line and nothing is written.
    let bad = home.path().join("bad.ino");
    std::fs::write(&bad, "garbage").unwrap();
    let other = home.path().join("other.bin");
    let out = cloud.spark(
        home.path(),
        &[
            "compile",
            bad.to_str().unwrap(),
            "--saveTo",
            other.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("expected declaration"), "{err}");
    assert!(!other.exists());
}

#[test]
fn logout_forgets_the_token_but_keeps_the_rest() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let out = cloud.spark(home.path(), &["logout"]);
    assert_eq!(stdout(&out).trim(), "You have been logged out.");
    let config: Value = serde_json::from_slice(
        &std::fs::read(home.path().join(".particle/particle.config.json")).unwrap(),
    )
    .unwrap();
    assert!(config.get("access_token").is_none());
    assert_eq!(config["username"], USER);
    let out = cloud.spark(home.path(), &["get", CORE, "temperature"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not logged in"));
}

/// `spark list | head -1`: the reader goes away; the tool stops quietly (exit 0, nothing on stderr).
#[test]
fn a_closed_pipe_ends_the_tool_quietly() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spark"))
        .arg("list")
        .env("HOME", home.path())
        .env("SPARK_API_URL", cloud.url())
        .env_remove("PARTICLE_ACCESS_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the tool has its answer from the cloud (it writes only after the HTTP round trips).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no panic message");
}

#[test]
fn keys_send_provisions_the_public_half_of_a_device_key() {
    use spark_protocol::crypto::keys::RsaPrivateKey;
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let pem = include_str!("fixtures/device_a.pem");
    let private = RsaPrivateKey::from_pem(pem).unwrap();
    let expected = private.public_key().to_spki_pem().unwrap();
    let files = [
        ("device.pem", pem.as_bytes().to_vec()),
        ("device.der", private.to_pkcs1_der().to_vec()),
        ("device.pub.pem", expected.as_bytes().to_vec()),
    ];
    for (i, (name, bytes)) in files.iter().enumerate() {
        let path = home.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = cloud.spark(
            home.path(),
            &["keys", "send", CORE, path.to_str().unwrap(), "--json"],
        );
        let report = json(&out);
        assert_eq!(report["device"], CORE);
        assert_eq!(report["key_bits"], 1024);
        let sent = &cloud.requests_to("POST", &format!("/v1/provisioning/{CORE}"))[i];
        assert_eq!(
            sent.field("publicKey").as_deref(),
            Some(expected.as_str()),
            "{name}"
        );
        assert_eq!(sent.field("deviceID").as_deref(), Some(CORE));
        assert!(
            !String::from_utf8_lossy(&sent.body).contains("PRIVATE"),
            "the private key never leaves"
        );
    }
    let junk = home.path().join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let out = cloud.spark(home.path(), &["keys", "send", CORE, junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("junk.pem: not an RSA key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn whoami_names_the_account() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let out = cloud.spark(home.path(), &["whoami"]);
    assert_eq!(stdout(&out).trim(), USER);
    let r = json(&cloud.spark(home.path(), &["whoami", "--json"]));
    assert_eq!(r["username"], USER);
    let out = cloud.spark(home.path(), &["whoami", "--token", "bad"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn function_and_variable_lists_show_the_online_devices() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let f = json(&cloud.spark(home.path(), &["function", "list", "--json"]));
    assert_eq!(
        f.as_array().unwrap().len(),
        1,
        "only the online device: {f}"
    );
    assert_eq!(f[0]["device"], CORE);
    assert_eq!(
        f[0]["functions"],
        serde_json::json!(["brew", "digitalwrite"])
    );
    let text = stdout(&cloud.spark(home.path(), &["function", "list"]));
    assert!(
        text.contains("kitchen (") && text.contains("  int brew(String args)"),
        "{text}"
    );
    let v = json(&cloud.spark(home.path(), &["variable", "list", "--json"]));
    assert_eq!(v[0]["variables"]["temperature"], "double");
    let text = stdout(&cloud.spark(home.path(), &["variable", "list"]));
    assert!(text.contains("  temperature (double)"), "{text}");
}

#[test]
fn variable_monitor_reads_until_the_count() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let out = cloud.spark(
        home.path(),
        &[
            "variable",
            "monitor",
            CORE,
            "temperature",
            "--delay",
            "10",
            "--count",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "21.5\n21.5\n21.5\n");
    assert_eq!(
        cloud
            .requests_to("GET", &format!("/v1/devices/{CORE}/temperature"))
            .len(),
        3
    );
    let out = cloud.spark(
        home.path(),
        &[
            "variable",
            "monitor",
            CORE,
            "temperature",
            "--delay",
            "10",
            "--count",
            "2",
            "--json",
        ],
    );
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["result"], 21.5);
}

#[test]
fn device_add_remove_rename_use_the_api() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let r = json(&cloud.spark(home.path(), &["device", "add", support::OFFLINE, "--json"]));
    assert_eq!(r["action"], "added");
    let claim = &cloud.requests_to("POST", "/v1/devices")[0];
    assert_eq!(claim.field("id").as_deref(), Some(support::OFFLINE));
    let out = cloud.spark(home.path(), &["device", "add", "0123456789abcdef01234567"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("belongs to someone else"),
        "{}",
        stderr(&out)
    );
    let out = cloud.spark(home.path(), &["device", "rename", CORE, "pantry"]);
    assert_eq!(stdout(&out).trim(), format!("Renamed {CORE} to pantry"));
    let put = &cloud.requests_to("PUT", &format!("/v1/devices/{CORE}"))[0];
    assert_eq!(put.field("name").as_deref(), Some("pantry"));
    let out = cloud.spark(home.path(), &["device", "remove", CORE]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        cloud
            .requests_to("DELETE", &format!("/v1/devices/{CORE}"))
            .len(),
        1
    );
}

#[test]
fn webhook_create_list_delete() {
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let created = json(&cloud.spark(
        home.path(),
        &[
            "webhook",
            "create",
            "motion",
            "https://example.com/m",
            "--device",
            CORE,
            "--json",
        ],
    ));
    assert_eq!(created["id"], "hook2");
    let post = &cloud.requests_to("POST", "/v1/webhooks")[0];
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["event"], "motion");
    assert_eq!(body["url"], "https://example.com/m");
    assert_eq!(body["deviceid"], CORE);
    let text = stdout(&cloud.spark(home.path(), &["webhook", "list"]));
    assert_eq!(
        text.trim(),
        "hook1: POST \"temperature\" -> https://example.com/t"
    );
    let out = cloud.spark(home.path(), &["webhook", "delete", "hook1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cloud.spark(home.path(), &["webhook", "delete", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn keys_doctor_writes_a_new_key_over_dfu_and_sends_it() {
    use spark_protocol::crypto::keys::RsaPrivateKey;
    let cloud = Cloud::start();
    let home = logged_in(&cloud);
    let state = home.path().join("core.sim");
    let doctor = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_spark"))
            .args(["keys", "doctor", CORE, "--json"])
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("SPARK_API_URL", cloud.url())
            .env("SPARK_DFU_SIM", &state)
            .env_remove("PARTICLE_ACCESS_TOKEN")
            .env_remove("SPARK_DFU_SIM_MODE")
            .env_remove("SPARK_DFU_SIM_FAULT")
            .output()
            .unwrap()
    };
    let first = json(&doctor());
    assert!(
        first["backup"].is_null(),
        "a blank device had no key: {first}"
    );
    let pem = std::fs::read_to_string(home.path().join(format!("{CORE}_new.pem"))).unwrap();
    let key = RsaPrivateKey::from_pem(&pem).unwrap();
    // On the simulated Core: its key region (SPI 0x2000) holds the new key's DER.
    let sim = std::fs::read(&state).unwrap();
    let region = &sim[8 + 0x2_0000 + 0x2000..][..1024];
    let der = key.to_pkcs1_der();
    assert_eq!(&region[..der.len()], &der[..]);
    // The cloud got its public half.
    let sent = &cloud.requests_to("POST", &format!("/v1/provisioning/{CORE}"))[0];
    let expected = key.public_key().to_spki_pem().unwrap();
    assert_eq!(sent.field("publicKey").as_deref(), Some(expected.as_str()));
    // Again: the key the device held is saved first.
    let second = json(&doctor());
    let backup = home.path().join(second["backup"].as_str().unwrap());
    assert_eq!(&std::fs::read(backup).unwrap()[..der.len()], &der[..]);
}
