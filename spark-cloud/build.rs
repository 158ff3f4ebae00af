//! Decides once, at build time, which tests that need an outside program can run.
//!
//! | program | cfg set when it is missing | tests |
//! |---|---|---|
//! | `chromedriver` | `spark_no_chromedriver` | `tests/console_browser.rs` |
//! | `postgres` and `initdb` | `spark_no_postgres` | the PostgreSQL store and the cluster |
//! | `nats-server` | `spark_no_nats` | the NATS bus and the cluster |
//!
//! A missing program's tests are reported ignored, never passed. With `SPARK_REQUIRE_SERVICES=1` (what CI exports) no
//! cfg is ever set: a missing program fails its tests. PostgreSQL is looked for on `PATH` and then in Debian's
//! `/usr/lib/postgresql/<version>/bin`, which the `postgresql` package does not put on `PATH`; the tests find it the
//! same way (`spark_cloud::services`). A program found is watched; a missing one is not
//! (cargo would treat the absent path as always changed and rebuild on every run), so installing it later takes a
//! `PATH` change or `cargo clean -p spark-cloud`.

use std::env;
use std::path::PathBuf;

/// Where `program` is, as `spark_cloud::services::find` looks (a build script cannot call its own crate): only in
/// `SPARK_SERVICES_PATH` when it is set, else the first match on `PATH`, then Debian's PostgreSQL folders (newest
/// version first), then `/usr/sbin`.
fn find(program: &str) -> Option<PathBuf> {
    if let Some(only) = env::var_os("SPARK_SERVICES_PATH") {
        return env::split_paths(&only)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file());
    }
    let on_path = env::var_os("PATH")
        .map(|path| {
            env::split_paths(&path)
                .map(|dir| dir.join(program))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("bin").join(program))
                .collect()
        })
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    on_path
        .into_iter()
        .chain(debian)
        .chain([PathBuf::from("/usr/sbin").join(program)])
        .find(|candidate| candidate.is_file())
}

fn main() {
    let required = env::var("SPARK_REQUIRE_SERVICES")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=SPARK_REQUIRE_SERVICES");
    println!("cargo::rerun-if-env-changed=SPARK_SERVICES_PATH");
    println!("cargo::rerun-if-changed=build.rs");

    let services: [(&str, &[&str]); 3] = [
        ("spark_no_chromedriver", &["chromedriver"]),
        ("spark_no_postgres", &["postgres", "initdb"]),
        ("spark_no_nats", &["nats-server"]),
    ];
    for (cfg, programs) in services {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let mut missing = false;
        for program in programs {
            match find(program) {
                Some(path) => println!("cargo::rerun-if-changed={}", path.display()),
                None => missing = true,
            }
        }
        if missing && !required {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
