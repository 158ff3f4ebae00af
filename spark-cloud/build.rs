//! Decides once, at build time, whether the browser tests can run (`tests/console_browser.rs`).
//!
//! Without `chromedriver` on `PATH` the cfg `spark_no_chromedriver` is set and those tests are reported ignored,
//! never passed. With `SPARK_REQUIRE_SERVICES=1` (what CI exports) the cfg is never set: a missing driver fails the
//! tests. A driver found is watched; a missing one is not (cargo would treat the absent path as always changed and
//! rebuild on every run), so installing it later takes a `PATH` change or `cargo clean -p spark-cloud`.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(spark_no_chromedriver)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=SPARK_REQUIRE_SERVICES");
    println!("cargo::rerun-if-changed=build.rs");

    let driver = env::var_os("PATH").and_then(|path| {
        env::split_paths(&path)
            .map(|dir| dir.join("chromedriver"))
            .find(|candidate| candidate.is_file())
    });
    let required = env::var("SPARK_REQUIRE_SERVICES")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    match driver {
        Some(path) => println!("cargo::rerun-if-changed={}", path.display()),
        None if !required => println!("cargo::rustc-cfg=spark_no_chromedriver"),
        None => {}
    }
}
