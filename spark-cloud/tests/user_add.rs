//! `spark-cloud user add`, run as a user runs it: the password on stdin, never as an argument.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn user_add(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "--key-bits",
            "1024",
            "user",
            "add",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_add_creates_the_user_once_with_the_password_from_stdin() {
    let scratch = tempfile::Builder::new()
        .prefix("spark-cloud-user-add-")
        .tempdir()
        .unwrap();
    let state = scratch.path().join("cloud");
    let out = user_add(&state, &["Joe@Example.com"], "s3cret\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = std::fs::read_to_string(state.join("users/joe@example.com.json")).unwrap();
    assert!(!record.contains("s3cret"), "only a hash is stored");
    assert!(
        state.join("default_key.pub.pem").exists(),
        "the state directory is ready"
    );
    let again = user_add(&state, &["joe@example.com"], "other\n");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let empty = user_add(&state, &["ann@example.com"], "");
    assert_eq!(empty.status.code(), Some(1));
    assert!(!state.join("users/ann@example.com.json").exists());
    // A password as an argument is a usage error.
    let argument = user_add(&state, &["ann@example.com", "s3cret"], "");
    assert_eq!(argument.status.code(), Some(2));
}
