//! The device journal: durable device records by group commit.
//!
//! Each change of a device (its key, name or owner) is one line appended to `core_keys/journal` (the whole record:
//! key and owner together). One writer thread takes every change that arrived meanwhile, appends them and syncs the
//! journal once; only then is each change acknowledged, so requests that arrive together share one `fsync`. After
//! the sync the writer also writes each device's own file (`core_keys/<id>.json`, through a temporary file and a
//! rename, without a sync of its own). When no change waits, the writer syncs those files a few at a time, and once
//! all are synced it empties the journal. On open, the journal is replayed over the device files (a torn last
//! line, never acknowledged, is ignored), the files are synced and the journal emptied.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::state::StateError;

/// One journal line: a device's whole record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JournalRecord {
    pub(crate) id: String,
    pub(crate) public_key: String,
    pub(crate) name: Option<String>,
    pub(crate) owner: Option<String>,
}

/// Who waits for a change to be durable.
pub(crate) enum Done {
    /// A blocking caller.
    Blocking(mpsc::Sender<io::Result<()>>),
    /// An async caller.
    Async(tokio::sync::oneshot::Sender<io::Result<()>>),
}

impl Done {
    fn send(self, result: io::Result<()>) {
        match self {
            Done::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Done::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

struct Entry {
    record: JournalRecord,
    done: Done,
}

/// The sending end of the journal; the writer thread ends when it is dropped.
pub(crate) struct Journal {
    tx: mpsc::Sender<Entry>,
}

impl core::fmt::Debug for Journal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The records a journal's bytes hold, in order. A last line without its newline is a write the crash cut short
/// (never acknowledged) and is ignored; any other unreadable line is an error.
pub(crate) fn parse_journal(bytes: &[u8]) -> Result<Vec<JournalRecord>, String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() {
            continue;
        }
        let record: JournalRecord =
            serde_json::from_slice(line).map_err(|e| format!("journal line: {e}"))?;
        out.push(record);
    }
    Ok(out)
}

fn device_file_json(record: &JournalRecord) -> Vec<u8> {
    let value = serde_json::json!({
        "public_key": record.public_key,
        "name": record.name,
        "owner": record.owner,
    });
    serde_json::to_vec_pretty(&value).unwrap_or_default()
}

fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Writes a device file through a new temporary file (`tempfile`, created 0600) and a rename, synced or not.
fn write_device_file(keys_dir: &Path, record: &JournalRecord, sync: bool) -> io::Result<PathBuf> {
    let path = keys_dir.join(format!("{}.json", record.id));
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(keys_dir)?;
    file.write_all(&device_file_json(record))?;
    if sync {
        file.as_file().sync_all()?;
    }
    file.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl Journal {
    /// Replays `core_keys/journal` (returning its records, to apply over the device files), makes them durable
    /// as device files, empties the journal and starts the writer.
    pub(crate) fn open(keys_dir: &Path) -> Result<(Journal, Vec<JournalRecord>), StateError> {
        let path = keys_dir.join("journal");
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io_err(&path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        let records = parse_journal(&bytes).map_err(|reason| StateError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        for record in &records {
            write_device_file(keys_dir, record, true).map_err(io_err(keys_dir))?;
        }
        sync_dir(keys_dir).map_err(io_err(keys_dir))?;
        let file = open_private(&path, false).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        drop(file);
        let file = open_private(&path, true).map_err(io_err(&path))?;
        let (tx, rx) = mpsc::channel();
        let dir = keys_dir.to_owned();
        std::thread::Builder::new()
            .name("spark-cloud-journal".into())
            .spawn(move || write_loop(file, &dir, &rx))
            .map_err(io_err(&path))?;
        Ok((Journal { tx }, records))
    }

    /// Queues `record`; `done` hears once it is durable (or why it could not be made so).
    pub(crate) fn append(&self, record: JournalRecord, done: Done) {
        if let Err(mpsc::SendError(entry)) = self.tx.send(Entry { record, done }) {
            entry
                .done
                .send(Err(io::Error::other("the journal writer has stopped")));
        }
    }
}

fn write_loop(mut file: File, keys_dir: &Path, rx: &mpsc::Receiver<Entry>) {
    let mut written: u64 = 0;
    let mut unsynced: BTreeSet<PathBuf> = BTreeSet::new();
    // A device file that could not be written keeps the journal from being emptied.
    let mut files_ok = true;
    let mut buf = Vec::new();
    loop {
        let idle_work = !unsynced.is_empty() || (written > 0 && files_ok);
        let first = if idle_work {
            match rx.try_recv() {
                Ok(entry) => entry,
                Err(mpsc::TryRecvError::Empty) => {
                    // Nothing waits: sync a few device files; once all are, the journal can be emptied.
                    if sync_some(&mut unsynced, 64).is_err() {
                        files_ok = false;
                    }
                    if unsynced.is_empty()
                        && files_ok
                        && written > 0
                        && empty_journal(&mut file, keys_dir).is_ok()
                    {
                        written = 0;
                    }
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(entry) => entry,
                Err(_) => return,
            }
        };
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        buf.clear();
        for entry in &batch {
            if serde_json::to_writer(&mut buf, &entry.record).is_ok() {
                buf.push(b'\n');
            }
        }
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        let error = result.err().map(|e| (e.kind(), e.to_string()));
        let failed = error.is_some();
        let mut records = Vec::with_capacity(batch.len());
        for entry in batch {
            entry.done.send(match &error {
                None => Ok(()),
                Some((kind, text)) => Err(io::Error::new(*kind, text.clone())),
            });
            records.push(entry.record);
        }
        if failed {
            continue;
        }
        written += buf.len() as u64;
        for record in &records {
            // The journal holds it durably already: the file is the readable copy, synced when the writer is idle.
            match write_device_file(keys_dir, record, false) {
                Ok(path) => {
                    unsynced.insert(path);
                }
                Err(_) => files_ok = false,
            }
        }
    }
}

fn sync_some(unsynced: &mut BTreeSet<PathBuf>, count: usize) -> io::Result<()> {
    for _ in 0..count {
        let Some(path) = unsynced.pop_first() else {
            break;
        };
        match File::open(&path) {
            Ok(f) => f.sync_all()?,
            // Replaced by a newer write, which is in the set again if it is still unsynced.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn empty_journal(file: &mut File, keys_dir: &Path) -> io::Result<()> {
    sync_dir(keys_dir)?;
    file.set_len(0)?;
    file.sync_all()
}
