//! Rebuilds the shared test vectors folder from upstream and checks every file against `MANIFEST.tsv`.
//!
//! ```text
//! cargo run -p spark-vectors --bin fetch-vectors -- [--from-mirror DIR] [--only PREFIX]... [DEST]
//! ```
//!
//! `DEST` defaults to the vectors root (`$SPARK_VECTORS`, or `../shared/vectors` beside the workspace). Upstream
//! files come from `https://raw.githubusercontent.com` through `curl`, or with `--from-mirror DIR` from bare git
//! directories `DIR/OWNER+NAME/repo` (or `.../repo/.git`) through `git show COMMIT:PATH`. Generated files need
//! Debian's dfu-util tools (`dfu-suffix`, `dfu-prefix`, `dfuse-pack`). Files that no program rebuilds from upstream
//! (`derived`, `notes`) are listed at the end with the reason. A file is written only when its size and SHA-256
//! match the manifest; the exit status is 1 when any file could not be made.

use spark_vectors::{Entry, manifest, root, verify};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Where upstream files come from.
enum Source {
    /// `raw.githubusercontent.com` through curl.
    Network,
    /// Bare git directories under this folder, named `OWNER+NAME`.
    Mirror(PathBuf),
}

struct Options {
    source: Source,
    only: Vec<String>,
    dest: PathBuf,
}

fn usage() -> ExitCode {
    eprintln!("usage: fetch-vectors [--from-mirror DIR] [--only PREFIX]... [DEST]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut source = Source::Network;
    let mut only = Vec::new();
    let mut dest = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--from-mirror" => match args.next() {
                Some(dir) => source = Source::Mirror(dir.into()),
                None => return usage(),
            },
            "--only" => match args.next() {
                Some(prefix) => only.push(prefix),
                None => return usage(),
            },
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            _ if arg.starts_with('-') || dest.is_some() => return usage(),
            _ => dest = Some(PathBuf::from(arg)),
        }
    }
    let options = Options {
        source,
        only,
        dest: dest.unwrap_or_else(root),
    };
    run(&options)
}

fn run(options: &Options) -> ExitCode {
    let entries: Vec<Entry> = manifest()
        .into_iter()
        .filter(|e| {
            options.only.is_empty() || options.only.iter().any(|p| e.path.starts_with(p.as_str()))
        })
        .collect();
    println!(
        "fetch-vectors: {} files into {}",
        entries.len(),
        options.dest.display()
    );
    let mut upstream = Upstream {
        source: &options.source,
        cache: HashMap::new(),
    };
    let mut failed = Vec::new();
    let mut by_hand = Vec::new();
    let mut pending: Vec<&Entry> = Vec::new();

    for e in &entries {
        let kind = e.how.split(' ').next().unwrap_or("");
        let made = match kind {
            "raw" => upstream.file(e).map(|bytes| bytes.to_vec()),
            "c-array" => upstream.file(e).and_then(|text| extract(e.how, text)),
            "generated" => {
                pending.push(e);
                continue;
            }
            _ => {
                by_hand.push(e);
                continue;
            }
        };
        settle(options, e, made, &mut failed);
    }

    // Generated files read other vectors, which may come later in the manifest: repeat until nothing moves.
    while !pending.is_empty() {
        let (ready, waiting): (Vec<&Entry>, Vec<&Entry>) = pending.into_iter().partition(|e| {
            inputs(e.how).iter().all(|i| {
                verify(i, &std::fs::read(options.dest.join(i)).unwrap_or_default()).is_ok()
            })
        });
        if ready.is_empty() {
            for e in waiting {
                let missing = inputs(e.how).join(", ");
                failed.push(format!(
                    "{}: its inputs are missing or wrong ({missing})",
                    e.path
                ));
            }
            break;
        }
        for e in ready {
            let made = generate(&options.dest, e);
            settle(options, e, made, &mut failed);
        }
        pending = waiting;
    }

    if !by_hand.is_empty() {
        println!("\nnot rebuilt by a program ({}):", by_hand.len());
        for e in by_hand {
            let present = std::fs::read(options.dest.join(e.path))
                .is_ok_and(|bytes| verify(e.path, &bytes).is_ok());
            let why = match e.how.split_once(' ') {
                Some(("derived", recipe)) if e.repository == "-" => format!("derived: {recipe}"),
                Some(("derived", recipe)) => {
                    format!(
                        "derived from {} @ {}: {recipe}",
                        e.repository,
                        short(e.commit)
                    )
                }
                _ => "the folder's own provenance notes, not upstream data".to_owned(),
            };
            println!(
                "  {} [{}] {why}",
                e.path,
                if present {
                    "present, verified"
                } else {
                    "MISSING"
                }
            );
        }
    }
    if failed.is_empty() {
        println!("\nall fetched and generated files match the manifest");
        ExitCode::SUCCESS
    } else {
        println!("\nfailed ({}):", failed.len());
        for f in &failed {
            println!("  {f}");
        }
        ExitCode::FAILURE
    }
}

/// Verifies `made` and writes it to its place under the destination.
fn settle(options: &Options, e: &Entry, made: Result<Vec<u8>, String>, failed: &mut Vec<String>) {
    let result = made.and_then(|bytes| {
        verify(e.path, &bytes)?;
        let path = options.dest.join(e.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| format!("{}: {err}", parent.display()))?;
        }
        std::fs::write(&path, &bytes).map_err(|err| format!("{}: {err}", path.display()))
    });
    match result {
        Ok(()) => println!(
            "  ok  {}  ({})",
            e.path,
            e.how.split(' ').next().unwrap_or("")
        ),
        Err(why) => {
            println!("  ERR {}  {why}", e.path);
            failed.push(format!("{}: {why}", e.path));
        }
    }
}

fn short(commit: &str) -> &str {
    commit.get(..8).unwrap_or(commit)
}

/// Upstream files by (repository, commit, path), each fetched once.
struct Upstream<'a> {
    source: &'a Source,
    cache: HashMap<(String, String, String), Result<Vec<u8>, String>>,
}

impl Upstream<'_> {
    fn file(&mut self, e: &Entry) -> Result<&[u8], String> {
        let key = (
            e.repository.to_owned(),
            e.commit.to_owned(),
            e.upstream.to_owned(),
        );
        let source = self.source;
        let got = self.cache.entry(key).or_insert_with(|| match source {
            Source::Network => {
                let url = format!(
                    "https://raw.githubusercontent.com/{}/{}/{}",
                    e.repository, e.commit, e.upstream
                );
                output(Command::new("curl").args(["-fsSL", "--retry", "2", &url]))
            }
            Source::Mirror(dir) => {
                let name = e.repository.replace('/', "+");
                let base = dir.join(name).join("repo");
                let git_dir = if base.join(".git").is_dir() {
                    base.join(".git")
                } else {
                    base
                };
                if !git_dir.is_dir() {
                    return Err(format!(
                        "no mirror of {} at {}",
                        e.repository,
                        git_dir.display()
                    ));
                }
                output(
                    Command::new("git")
                        .arg("--git-dir")
                        .arg(&git_dir)
                        .args(["show", &format!("{}:{}", e.commit, e.upstream)]),
                )
            }
        });
        got.as_deref().map_err(Clone::clone)
    }
}

/// Runs a command and returns its standard output, or why it failed.
fn output(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(out.stdout),
        Ok(out) => Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Err(format!("cannot run {program}: {err}")),
    }
}

/// `c-array NAME [der]`: the bytes of the initialiser of array NAME in the upstream C source.
fn extract(how: &str, source: &[u8]) -> Result<Vec<u8>, String> {
    let mut words = how.split(' ').skip(1);
    let name = words.next().ok_or("c-array without a name")?;
    let der = words.next() == Some("der");
    let text = String::from_utf8_lossy(source);
    let bytes =
        c_array(&text, name).ok_or_else(|| format!("no initialised array {name}[] found"))?;
    if der { der_element(&bytes) } else { Ok(bytes) }
}

/// Finds `NAME [ ... ] = { ... };` or `NAME [ ... ] = "..." "...";` and decodes its initialiser.
fn c_array(text: &str, name: &str) -> Option<Vec<u8>> {
    let mut from = 0;
    while let Some(found) = text[from..].find(name) {
        let start = from + found;
        from = start + name.len();
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = text[from..].trim_start();
        let Some(rest) = rest.strip_prefix('[') else {
            continue;
        };
        let Some(close) = rest.find(']') else {
            continue;
        };
        let rest = rest[close + 1..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = strip_comments(rest);
        let rest = rest.trim_start();
        return if let Some(body) = rest.strip_prefix('{') {
            integer_list(&body[..body.find('}')?])
        } else {
            string_literals(rest)
        };
    }
    None
}

/// The text with `/* */` and `//` comments removed (string literals never hold them in these sources).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
        } else if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `0x00, 0x1F, 12, ...` (a trailing comma allowed).
fn integer_list(body: &str) -> Option<Vec<u8>> {
    body.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let t = t.trim_end_matches(['u', 'U']);
            match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u8::from_str_radix(hex, 16).ok(),
                None => t.parse().ok(),
            }
        })
        .collect()
}

/// Adjacent string literals up to the `;`, with `\xHH`, octal and the simple escapes; C's implicit NUL appended.
fn string_literals(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        match chars.next()? {
            c if c.is_whitespace() => {}
            ';' => break,
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'x' => {
                            let mut v = 0u32;
                            while let Some(d) = chars.peek().and_then(|c| c.to_digit(16)) {
                                v = v * 16 + d;
                                chars.next();
                            }
                            out.push(u8::try_from(v).ok()?);
                        }
                        d @ '0'..='7' => {
                            let mut v = d.to_digit(8)?;
                            for _ in 0..2 {
                                match chars.peek().and_then(|c| c.to_digit(8)) {
                                    Some(d) => {
                                        v = v * 8 + d;
                                        chars.next();
                                    }
                                    None => break,
                                }
                            }
                            out.push(u8::try_from(v).ok()?);
                        }
                        'n' => out.push(b'\n'),
                        'r' => out.push(b'\r'),
                        't' => out.push(b'\t'),
                        c @ ('\\' | '"' | '\'' | '?') => out.push(c as u8),
                        _ => return None,
                    },
                    c => out.extend(c.to_string().bytes()),
                }
            },
            _ => return None,
        }
    }
    out.push(0);
    Some(out)
}

/// The first DER element of `bytes` (its tag, length and content), dropping what follows.
fn der_element(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let too_short = || "DER element longer than the array".to_owned();
    let first = *bytes.get(1).ok_or_else(too_short)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        let len_bytes = bytes.get(2..2 + n).ok_or_else(too_short)?;
        (
            2 + n,
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b)),
        )
    };
    Ok(bytes.get(..header + len).ok_or_else(too_short)?.to_vec())
}

/// The other vectors a `generated` entry reads (`from:PATH` and `{PATH}`).
fn inputs(how: &str) -> Vec<String> {
    let mut found = Vec::new();
    for word in how.split(' ') {
        if let Some(path) = word.strip_prefix("from:") {
            found.push(path.to_owned());
        }
        let mut rest = word;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            found.push(rest[open + 1..open + close].to_owned());
            rest = &rest[open + close + 1..];
        }
    }
    found
}

/// Makes one `generated` file from its recipe.
fn generate(dest: &Path, e: &Entry) -> Result<Vec<u8>, String> {
    let mut words: Vec<&str> = e.how.split(' ').skip(1).collect();
    let mut bytes = Vec::new();
    if let Some(from) = words.first().and_then(|w| w.strip_prefix("from:")) {
        bytes = std::fs::read(dest.join(from)).map_err(|err| format!("{from}: {err}"))?;
        words.remove(0);
    }
    let number = |w: Option<&&str>| -> Result<usize, String> {
        let w = w.ok_or("missing number")?;
        match w.strip_prefix("0x") {
            Some(hex) => usize::from_str_radix(hex, 16),
            None => w.parse(),
        }
        .map_err(|_| format!("bad number {w}"))
    };
    match words.first().copied() {
        Some("counting") => Ok((0..number(words.get(1))?).map(|i| i as u8).collect()),
        Some("fill") => Ok(vec![number(words.get(1))? as u8; number(words.get(2))?]),
        Some("xor-last") => {
            let x = number(words.get(1))? as u8;
            let last = bytes.last_mut().ok_or("empty input")?;
            *last ^= x;
            Ok(bytes)
        }
        Some("suffix-blength") => {
            let n = bytes.len();
            if n < 16 {
                return Err("input shorter than a DFU suffix".into());
            }
            bytes[n - 5] = number(words.get(1))? as u8;
            let crc = dfu_crc(&bytes[..n - 4]);
            bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
            Ok(bytes)
        }
        Some(tool @ ("dfu-suffix" | "dfu-prefix" | "dfuse-pack")) => {
            run_tool(dest, e, tool, &words[1..], &bytes)
        }
        _ => Err(format!("unknown recipe: {}", e.how)),
    }
}

/// Runs a dfu-util tool in a scratch folder; `@` is the output file, `{PATH}` another vector.
fn run_tool(
    dest: &Path,
    e: &Entry,
    tool: &str,
    args: &[&str],
    start: &[u8],
) -> Result<Vec<u8>, String> {
    let scratch = std::env::temp_dir().join(format!("fetch-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|err| format!("{}: {err}", scratch.display()))?;
    let out = scratch.join(e.path.rsplit('/').next().unwrap_or("out"));
    let _ = std::fs::remove_file(&out);
    if e.how.contains(" from:") {
        std::fs::write(&out, start).map_err(|err| format!("{}: {err}", out.display()))?;
    }
    let mut cmd = Command::new(tool);
    for arg in args {
        if *arg == "@" {
            cmd.arg(&out);
            continue;
        }
        let mut arg = (*arg).to_owned();
        for input in inputs(arg.as_str()) {
            arg = arg.replace(
                &format!("{{{input}}}"),
                &dest.join(&input).to_string_lossy(),
            );
        }
        cmd.arg(arg);
    }
    output(&mut cmd).map_err(|err| format!("{err} (apt-get install dfu-util)"))?;
    let made = std::fs::read(&out).map_err(|err| format!("{tool} wrote nothing: {err}"));
    let _ = std::fs::remove_dir_all(&scratch);
    made
}

/// The DFU suffix CRC: reflected CRC-32 (polynomial 0xEDB88320) from 0xFFFFFFFF, without the final inversion.
fn dfu_crc(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0xFFFF_FFFF_u32, |mut crc, &b| {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
        crc
    })
}

#[cfg(test)]
mod tests {
    use super::{c_array, der_element, dfu_crc, extract, inputs};

    #[test]
    fn integer_lists_with_comments_and_other_arrays_around() {
        let text = "unsigned char other_patch[2] = { 9, 9 };\n\
                    const unsigned char PROGMEM patch[4] = { 0x00, /* a */ 0x1F, // b\n 255u, 7, };\n";
        assert_eq!(c_array(text, "patch"), Some(vec![0x00, 0x1F, 255, 7]));
        assert_eq!(c_array(text, "other_patch"), Some(vec![9, 9]));
        assert_eq!(c_array(text, "missing"), None);
        assert_eq!(c_array("char bad[1] = { 256 };", "bad"), None);
    }

    #[test]
    fn string_literals_keep_the_implicit_nul_and_der_drops_the_rest() {
        let text = "const uint8_t Fixture::key[7] =\n  \"\\x30\\x03\\x02\"\n  \"\\001\\x2a\";";
        let bytes = c_array(text, "Fixture::key").unwrap();
        assert_eq!(bytes, [0x30, 0x03, 0x02, 0x01, 0x2a, 0x00]);
        assert_eq!(der_element(&bytes).unwrap(), [0x30, 0x03, 0x02, 0x01, 0x2a]);
        assert_eq!(
            extract("c-array Fixture::key der", text.as_bytes()).unwrap(),
            [0x30, 0x03, 0x02, 0x01, 0x2a]
        );
        // A long-form length: 0x82 then two bytes.
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.extend([0xAB; 0x100]);
        long.extend([0; 8]);
        assert_eq!(der_element(&long).unwrap().len(), 4 + 0x100);
        assert!(der_element(&[0x30, 0x05, 0x00]).is_err());
    }

    #[test]
    fn recipe_inputs() {
        assert_eq!(
            inputs(
                "generated from:dfu/a.bin dfuse-pack -b 0x1000:{dfu/b.bin} -b 0x2000@1:{dfu/c.bin} @"
            ),
            ["dfu/a.bin", "dfu/b.bin", "dfu/c.bin"]
        );
        assert!(inputs("generated counting 32").is_empty());
    }

    #[test]
    fn the_dfu_crc_is_the_uninverted_crc32() {
        // CRC-32 of "123456789" is 0xCBF43926; the DFU suffix stores its complement.
        assert_eq!(dfu_crc(b"123456789"), !0xCBF4_3926);
    }
}
