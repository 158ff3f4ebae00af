//! Finds the third-party test vectors that spark-sdk's tests read at run time.
//!
//! The vectors are never copied into this repository. Tests ask for an area
//! (`"protocol"`, `"dfu"`, `"cc3000"`) and get its folder:
//!
//! - `$SPARK_VECTORS` names the vectors root when set;
//! - otherwise the root is `../shared/vectors` beside the workspace.
//!
//! When the folder is absent the test is told to skip (and a line saying so is
//! printed), unless `SPARK_REQUIRE_VECTORS=1`, in which case the lookup panics so
//! that CI cannot pass without having read the vectors.

use std::path::{Path, PathBuf};

/// The environment variable naming the vectors root.
pub const ROOT_VAR: &str = "SPARK_VECTORS";
/// The environment variable that turns a missing vectors folder into a failure.
pub const REQUIRE_VAR: &str = "SPARK_REQUIRE_VECTORS";

/// The vectors root: `$SPARK_VECTORS`, or `shared/vectors` beside the workspace.
pub fn root() -> PathBuf {
    match std::env::var_os(ROOT_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    }
}

/// Whether `SPARK_REQUIRE_VECTORS` asks for missing vectors to fail the run.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The folder of one area (`"protocol"`, `"dfu"`, `"cc3000"`), or `None` when
/// it is absent and not required; the caller then returns early.
///
/// # Panics
///
/// When the folder is absent and `SPARK_REQUIRE_VECTORS=1`.
pub fn area(name: &str) -> Option<PathBuf> {
    let dir = root().join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        !required(),
        "{REQUIRE_VAR}=1 but the test vectors folder {} is missing (set {ROOT_VAR})",
        dir.display()
    );
    eprintln!(
        "skipped: test vectors folder {} not found (set {ROOT_VAR})",
        dir.display()
    );
    None
}

/// Reads one vector file, `area/relative`; `None` when the area is absent (see [`area`]).
///
/// # Panics
///
/// When the area exists but the file cannot be read: a vector that should be
/// there and is not is a broken checkout, never a skip.
pub fn read(area_name: &str, relative: &str) -> Option<Vec<u8>> {
    let path = area(area_name)?.join(relative);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(err) => panic!("cannot read test vector {}: {err}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_root_is_beside_the_workspace() {
        if std::env::var_os(ROOT_VAR).is_none() {
            let root = root();
            assert!(root.ends_with("shared/vectors"), "{}", root.display());
        }
    }

    #[test]
    fn a_missing_area_is_skipped_or_required() {
        let name = "no-such-area-for-this-test";
        if required() {
            assert!(std::panic::catch_unwind(|| area(name)).is_err());
        } else {
            assert!(area(name).is_none());
        }
    }
}
