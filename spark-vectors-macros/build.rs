//! Decides once, at build time, whether the test vectors are present.
//!
//! The answer becomes the cfg `spark_vectors_missing`, which the attribute reads. Cargo reruns this script when
//! `$SPARK_VECTORS` or `$SPARK_REQUIRE_VECTORS` change, and when anything under the vectors root changes while it
//! exists. A root that is missing is deliberately not watched: cargo treats a missing `rerun-if-changed` path as
//! always changed and would rebuild every dependent test on every run. The folder appearing later is caught instead
//! by a test in spark-vectors that compares this decision with the run-time state.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(spark_vectors_missing)");
    println!("cargo::rerun-if-env-changed=SPARK_VECTORS");
    println!("cargo::rerun-if-env-changed=SPARK_REQUIRE_VECTORS");
    println!("cargo::rerun-if-changed=build.rs");

    let root = match env::var_os("SPARK_VECTORS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
                .join("../../shared/vectors")
        }
    };
    let required =
        env::var("SPARK_REQUIRE_VECTORS").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));

    if root.is_dir() {
        println!("cargo::rerun-if-changed={}", root.display());
    } else if !required {
        println!("cargo::rustc-cfg=spark_vectors_missing");
    }
}
