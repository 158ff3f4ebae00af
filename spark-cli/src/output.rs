//! Output helpers: text or JSON, and progress indicators that stay off the JSON output.
//!
//! Everything written to stdout goes through [`out!`](crate::out): when the reader closes the pipe
//! (`spark list | head -1`), the tool stops quietly with exit code 0, as `ls` or `cat` stop, instead of
//! panicking on the failed write.

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::Failure;

/// How the user asked to see results.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    /// `--json`.
    pub(crate) json: bool,
}

impl Context {
    /// Print `value` as pretty JSON on stdout.
    pub(crate) fn print_json<T: Serialize>(&self, value: &T) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(value)?;
        crate::out!("{text}");
        Ok(())
    }

    /// Prints `report` as JSON with `--json`, otherwise the one line `text` makes of it.
    pub(crate) fn report<T: Serialize>(
        &self,
        report: &T,
        text: impl FnOnce(&T) -> String,
    ) -> Result<(), Failure> {
        if self.json {
            return self.print_json(report);
        }
        crate::out!("{}", text(report));
        Ok(())
    }

    /// A spinner on stderr while a request runs (hidden with `--json` or when stderr is not a terminal).
    pub(crate) fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        if self.json {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }
}

pub(crate) use spark_cloud::encoding::hex;

/// `println!` for the tool's results: a reader that went away ends the process quietly (see the module docs).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_line(::std::format_args!($($arg)*))
    };
}

/// Writes one line to stdout; a closed pipe exits with 0, any other failure with 1 and one line on stderr.
pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("spark: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// Parse a number written in decimal or with a `0x` prefix.
pub(crate) fn parse_u32(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| format!("`{text}` is not a number"))
}

#[cfg(unix)]
/// Write a file only its owner can read (tokens, private keys).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
/// Write a file only its owner can read (tokens, private keys).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_decimal_or_hex() {
        assert_eq!(parse_u32("0x08005000"), Ok(0x0800_5000));
        assert_eq!(parse_u32("0X10"), Ok(16));
        assert_eq!(parse_u32(" 42 "), Ok(42));
        assert!(parse_u32("0x").is_err());
        assert!(parse_u32("-1").is_err());
        assert!(parse_u32("4294967296").is_err());
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x5f]), "00ab5f");
        assert_eq!(hex(&[]), "");
    }
}
