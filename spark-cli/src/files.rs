//! The user's input files: each is measured (one `stat`) before it is read, so a file far larger than anything a
//! device holds is refused in a line instead of being loaded into memory.

use std::io::Read;
use std::path::Path;

use crate::Failure;

/// What a file is expected to be, and the most bytes such a file can sensibly have.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// For messages: "firmware image".
    pub(crate) what: &'static str,
    /// The largest accepted size in bytes.
    pub(crate) max: u64,
}

/// Firmware binaries, DFU/DfuSe files and CC3000 images (which also come embedded in firmware): 8 MiB, the
/// largest flash of any device in spark-dfu's platform table (the P2's external flash); a Core holds 2 MiB.
pub(crate) const IMAGE: Kind = Kind {
    what: "firmware image",
    max: 8 * 1024 * 1024,
};

/// RSA key files, PEM or DER (a 4096-bit private key in PEM is about 3.3 KiB).
pub(crate) const KEY: Kind = Kind {
    what: "key file",
    max: 64 * 1024,
};

fn mib(bytes: u64) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Reads `path` if it is a regular file no larger than `kind.max`.
pub(crate) fn read(path: &Path, kind: Kind) -> Result<Vec<u8>, Failure> {
    let cannot = |e: std::io::Error| Failure(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if meta.is_dir() {
        return Err(Failure(format!("{} is a directory", path.display())));
    }
    if meta.len() > kind.max {
        return Err(too_large(path, meta.len(), kind));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the stat: never read past the limit.
    file.take(kind.max + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > kind.max {
        return Err(too_large(path, bytes.len() as u64, kind));
    }
    Ok(bytes)
}

fn too_large(path: &Path, len: u64, kind: Kind) -> Failure {
    Failure(format!(
        "{}: {len} bytes is larger than any {} ({} at most); not read",
        path.display(),
        kind.what,
        mib(kind.max)
    ))
}
