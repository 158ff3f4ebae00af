//! Decides once, at build time, whether the cluster demo's test can run (as `spark-cloud/build.rs` does for its
//! tests; a build script cannot call `spark_cloud::services`, so it looks in the same places itself).
//!
//! | program | cfg set when it is missing | tests |
//! |---|---|---|
//! | `postgres` and `initdb` | `spark_no_postgres` | `tests/demo_cluster.rs` |
//! | `nats-server` | `spark_no_nats` | `tests/demo_cluster.rs` |
//!
//! A missing program's test is reported ignored, never passed. With `SPARK_REQUIRE_SERVICES=1` (what CI exports) no
//! cfg is set: a missing program fails the test. Programs are looked for only in `SPARK_SERVICES_PATH` when it is
//! set, else on `PATH`, in Debian's `/usr/lib/postgresql/<version>/bin` and in `/usr/sbin`.

use std::env;
use std::path::PathBuf;

fn find(program: &str) -> Option<PathBuf> {
    if let Some(only) = env::var_os("SPARK_SERVICES_PATH") {
        return env::split_paths(&only)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file());
    }
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| versions.flatten().map(|v| v.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    dirs.extend(debian);
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn main() {
    let required = env::var("SPARK_REQUIRE_SERVICES")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=SPARK_REQUIRE_SERVICES");
    println!("cargo::rerun-if-env-changed=SPARK_SERVICES_PATH");
    println!("cargo::rerun-if-changed=build.rs");
    let services: [(&str, &[&str]); 2] = [
        ("spark_no_postgres", &["postgres", "initdb"]),
        ("spark_no_nats", &["nats-server"]),
    ];
    for (cfg, programs) in services {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let mut missing = false;
        for program in programs {
            match find(program) {
                // Watched when found; a missing path would count as changed on every build.
                Some(path) => println!("cargo::rerun-if-changed={}", path.display()),
                None => missing = true,
            }
        }
        if missing && !required {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
