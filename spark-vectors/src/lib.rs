//! Finds and verifies the third-party test vectors that spark-sdk's tests read at run time.
//!
//! The vectors are never copied into this repository. Each file is listed in `MANIFEST.tsv` (beside this crate's
//! `Cargo.toml`) with its size, SHA-256 and upstream source; `fetch-vectors` rebuilds the folder from upstream.
//! The root is:
//!
//! - `$SPARK_VECTORS` when set;
//! - otherwise `../shared/vectors` beside the workspace.
//!
//! A test that reads vectors is written `#[spark_vectors::test]` instead of `#[test]`: when the root was absent at
//! build time it is reported as *ignored*, never as passed, and it reads its data with [`load`] or [`dir`], which
//! panic on a missing folder. With `SPARK_REQUIRE_VECTORS=1` nothing is ignored, so a run without the vectors fails.
//!
//! Every file read is checked against the manifest: a wrong size or hash is a broken checkout and panics.
//!
//! ```
//! #[spark_vectors::test]
//! fn radio_defaults_are_128_bytes() {
//!     assert_eq!(spark_vectors::load("cc3000", "cc3000_rm_default_params.bin").len(), 128);
//! }
//! ```
//!
//! The attribute goes on functions only:
//!
//! ```compile_fail
//! #[spark_vectors::test]
//! struct NotATest;
//! ```

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `#[spark_vectors::test]`: `#[test]`, plus `#[ignore]` when the vectors were absent at build time.
///
/// Put it before `#[tokio::test]` on an async test; it then adds only the `ignore`.
pub use spark_vectors_macros::test;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The environment variable naming the vectors root.
pub const ROOT_VAR: &str = "SPARK_VECTORS";
/// The environment variable that turns a missing vectors folder into a failure.
pub const REQUIRE_VAR: &str = "SPARK_REQUIRE_VECTORS";

/// The manifest: one line per file of the vectors folder (see the file's header for the columns).
pub const MANIFEST: &str = include_str!("../MANIFEST.tsv");

/// Whether this build of `#[spark_vectors::test]` marks tests as ignored (the root was absent at build time).
pub const MARKS_IGNORED: bool = spark_vectors_macros::__marks_ignored!();

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

/// The folder of one area (`"protocol"`, `"dfu"`, `"cc3000"`), or `None` when it is absent and not required.
///
/// For tools and benchmarks that have something else to do without the vectors; tests use [`dir`].
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

/// Reads one vector file, `area/relative`, checked against the manifest; `None` when the area is absent (see
/// [`area`]). Tests use [`load`].
///
/// # Panics
///
/// When the area exists but the file cannot be read, is not in the manifest, or its size or SHA-256 differ from
/// the manifest's: a vector that should be there and is not is a broken checkout, never a skip.
pub fn read(area_name: &str, relative: &str) -> Option<Vec<u8>> {
    read_checked(&area(area_name)?, area_name, relative)
}

/// `dir/relative`, checked against the manifest entry `area_name/relative`.
fn read_checked(dir: &Path, area_name: &str, relative: &str) -> Option<Vec<u8>> {
    let path = dir.join(relative);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) => panic!("cannot read test vector {}: {err}", path.display()),
    };
    let listed = format!("{area_name}/{relative}");
    if let Err(problem) = verify(&listed, &bytes) {
        panic!(
            "test vector {} does not match spark-vectors/MANIFEST.tsv: {problem}; \
             fetch the vectors again (see spark-vectors/README.md)",
            path.display()
        );
    }
    Some(bytes)
}

/// The folder of one area, for a `#[spark_vectors::test]`.
///
/// # Panics
///
/// When the folder is absent: the test was built while the vectors were present, or runs with `--ignored`.
pub fn dir(name: &str) -> PathBuf {
    area(name).unwrap_or_else(|| missing(name))
}

/// One vector file, `area/relative`, checked against the manifest, for a `#[spark_vectors::test]`.
///
/// # Panics
///
/// As [`read`], and when the area is absent.
pub fn load(area_name: &str, relative: &str) -> Vec<u8> {
    read(area_name, relative).unwrap_or_else(|| missing(area_name))
}

fn missing(name: &str) -> ! {
    panic!(
        "the test vectors folder {} is missing: set {ROOT_VAR} to the vectors root, or fetch them \
         (cargo run -p spark-vectors --bin fetch-vectors -- DIR)",
        root().join(name).display()
    )
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path under the vectors root, `/`-separated.
    pub path: &'static str,
    /// The length in bytes.
    pub size: u64,
    /// The SHA-256, lower-case hex.
    pub sha256: &'static str,
    /// The upstream repository (`owner/name`), `-` when none.
    pub repository: &'static str,
    /// The path inside the upstream repository, `-` when none.
    pub upstream: &'static str,
    /// The upstream commit, `-` when none.
    pub commit: &'static str,
    /// How the file is obtained (`raw`, `c-array NAME`, `generated ...`, `derived ...`, `notes`).
    pub how: &'static str,
}

/// Every entry of [`MANIFEST`], in file order.
///
/// # Panics
///
/// When a line of the committed manifest is malformed (a test parses it).
pub fn manifest() -> Vec<Entry> {
    MANIFEST
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .skip(1)
        .map(|line| {
            let f: Vec<&'static str> = line.split('\t').collect();
            assert_eq!(f.len(), 7, "MANIFEST.tsv: not 7 columns: {line}");
            Entry {
                path: f[0],
                size: f[1]
                    .parse()
                    .unwrap_or_else(|_| panic!("MANIFEST.tsv: bad size: {line}")),
                sha256: f[2],
                repository: f[3],
                upstream: f[4],
                commit: f[5],
                how: f[6],
            }
        })
        .collect()
}

/// The manifest entry of `path` (under the vectors root).
pub fn entry(path: &str) -> Option<Entry> {
    manifest().into_iter().find(|e| e.path == path)
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks `bytes` against the manifest entry of `path`; the error says what differs.
pub fn verify(path: &str, bytes: &[u8]) -> Result<(), String> {
    let Some(e) = entry(path) else {
        return Err(format!("{path} is not listed"));
    };
    if bytes.len() as u64 != e.size {
        return Err(format!(
            "{} bytes, the manifest says {}",
            bytes.len(),
            e.size
        ));
    }
    let sha = sha256_hex(bytes);
    if sha != e.sha256 {
        return Err(format!("SHA-256 {sha}, the manifest says {}", e.sha256));
    }
    Ok(())
}

/// Checks a whole vectors folder against the manifest: every listed file present with its size and hash, and no
/// file that is not listed. Returns one line per problem (empty when the folder matches).
pub fn check_folder(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let listed = manifest();
    for e in &listed {
        match std::fs::read(root.join(e.path)) {
            Ok(bytes) => {
                if let Err(p) = verify(e.path, &bytes) {
                    problems.push(format!("{}: {p}", e.path));
                }
            }
            Err(err) => problems.push(format!("{}: {err}", e.path)),
        }
    }
    let mut found = Vec::new();
    walk(root, root, &mut found);
    for path in found {
        if !listed.iter().any(|e| e.path == path) {
            problems.push(format!("{path}: not listed in the manifest"));
        }
    }
    problems
}

/// Every file under `dir`, as `/`-separated paths relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<_> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
}

#[cfg(test)]
mod tests {
    // Not a glob: `super::test` is the attribute, and `#[test]` here must stay the built-in one.
    use super::{
        MARKS_IGNORED, ROOT_VAR, area, check_folder, dir, entry, load, manifest, read_checked,
        required, root, sha256_hex, verify,
    };

    #[test]
    fn default_root_is_beside_the_workspace() {
        if std::env::var_os(ROOT_VAR).is_none() {
            let root = root();
            assert!(root.ends_with("shared/vectors"), "{}", root.display());
        }
    }

    #[test]
    fn a_missing_area_is_none_or_required() {
        let name = "no-such-area-for-this-test";
        if required() {
            assert!(std::panic::catch_unwind(|| area(name)).is_err());
        } else {
            assert!(area(name).is_none());
        }
        assert!(std::panic::catch_unwind(|| dir(name)).is_err());
    }

    /// The `#[spark_vectors::test]` attribute decided at build time whether to ignore vector tests; if the folder
    /// appeared (or vanished) since, that decision is stale and the counts would lie. Never ignored itself.
    #[test]
    fn the_build_time_decision_matches_the_vectors_folder() {
        let ignore_now = !root().is_dir() && !required();
        assert_eq!(
            MARKS_IGNORED,
            ignore_now,
            "the vectors folder {} {} since spark-vectors-macros was built, so vector tests are wrongly {}; \
             run `cargo clean -p spark-vectors-macros` and test again",
            root().display(),
            if ignore_now { "vanished" } else { "appeared" },
            if ignore_now { "run" } else { "ignored" },
        );
    }

    #[test]
    fn the_manifest_is_well_formed() {
        let entries = manifest();
        assert!(entries.len() >= 60, "{}", entries.len());
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.sha256.len(), 64, "{}", e.path);
            assert!(
                e.sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(
                !entries[..i].iter().any(|o| o.path == e.path),
                "{} twice",
                e.path
            );
            let kind = e.how.split(' ').next().unwrap();
            assert!(
                ["raw", "c-array", "generated", "derived", "notes"].contains(&kind),
                "{}: {}",
                e.path,
                e.how
            );
            if kind == "raw" || kind == "c-array" {
                assert!(e.repository.contains('/'), "{}", e.path);
                assert_eq!(e.commit.len(), 40, "{}", e.path);
            }
        }
    }

    #[test]
    fn verify_reports_size_and_hash_mismatches() {
        let e = entry("cc3000/cc3000_rm_default_params.bin").unwrap();
        assert!(verify(e.path, &[0; 3]).unwrap_err().contains("3 bytes"));
        assert!(verify(e.path, &[0; 128]).unwrap_err().contains("SHA-256"));
        assert!(
            verify("cc3000/unlisted.bin", &[])
                .unwrap_err()
                .contains("not listed")
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// The whole folder against the manifest: nothing missing, nothing altered, nothing unlisted.
    #[crate::test]
    fn the_vectors_folder_matches_the_manifest() {
        let root = root();
        assert!(root.is_dir(), "{} is missing", root.display());
        let problems = check_folder(&root);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// A vector whose bytes differ from the manifest's is a broken checkout: the read panics and says so.
    #[test]
    fn a_corrupted_vector_panics_with_a_clear_message() {
        let dir =
            std::env::temp_dir().join(format!("spark-vectors-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cc3000_rm_default_params.bin"), [0u8; 128]).unwrap();
        std::fs::write(dir.join("unlisted.bin"), [1u8]).unwrap();
        let corrupt = std::panic::catch_unwind(|| {
            read_checked(&dir, "cc3000", "cc3000_rm_default_params.bin")
        });
        let unlisted = std::panic::catch_unwind(|| read_checked(&dir, "cc3000", "unlisted.bin"));
        let missing = std::panic::catch_unwind(|| read_checked(&dir, "cc3000", "absent.bin"));
        std::fs::remove_dir_all(&dir).ok();
        let message = |r: std::thread::Result<Option<Vec<u8>>>| {
            let payload = r.expect_err("must panic");
            payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default()
        };
        let corrupt = message(corrupt);
        assert!(
            corrupt.contains("does not match spark-vectors/MANIFEST.tsv"),
            "{corrupt}"
        );
        assert!(corrupt.contains("SHA-256"), "{corrupt}");
        assert!(message(unlisted).contains("is not listed"));
        assert!(message(missing).contains("cannot read test vector"));
    }

    #[crate::test]
    fn read_checks_the_manifest() {
        assert_eq!(load("cc3000", "cc3000_rm_default_params.bin").len(), 128);
    }
}
