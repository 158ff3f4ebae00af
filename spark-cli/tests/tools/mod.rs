//! The workspace's other tool binaries, for tests that run them beside `spark`.

#![allow(unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `spark`, where cargo also puts `spark-cloud` and `spark-vcore`, built (or found up to
/// date) here: `cargo test -p spark-cli` alone builds only `spark`.
pub fn binaries() -> PathBuf {
    let spark = Path::new(env!("CARGO_BIN_EXE_spark"));
    let dir = spark.parent().unwrap().to_path_buf();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", "spark-cloud", "-p", "spark-vcore", "--bins"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .env("CARGO_TARGET_DIR", dir.parent().unwrap())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "building spark-cloud and spark-vcore");
    dir
}
