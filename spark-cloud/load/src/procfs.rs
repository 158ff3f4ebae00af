//! What the kernel says about a process: CPU time from `/proc/<pid>/stat`, resident memory from `/proc/<pid>/status`.

use std::collections::BTreeMap;
use std::time::Duration;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// User plus system CPU time of all its threads, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kib: u64,
}

/// Why a reading failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcError {
    /// The file could not be read (the process is gone, or this is not Linux).
    #[error("cannot read /proc/{pid}/{file}: {source}")]
    Read {
        /// The process.
        pid: u32,
        /// `stat` or `status`.
        file: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The file did not have the expected shape.
    #[error("unexpected contents of /proc/{pid}/{file}")]
    Format {
        /// The process.
        pid: u32,
        /// `stat` or `status`.
        file: &'static str,
    },
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses
/// and may hold spaces and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: field 3 (state) is the first; utime is field 14, the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_ascii_whitespace();
    let kib = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib)
}

/// Reads the counters of `pid`.
pub fn sample(pid: u32) -> Result<Sample, ProcError> {
    let read =
        |file: &'static str| {
            std::fs::read_to_string(format!("/proc/{pid}/{file}"))
                .map_err(|source| ProcError::Read { pid, file, source })
        };
    let cpu_ticks = parse_stat(&read("stat")?).ok_or(ProcError::Format { pid, file: "stat" })?;
    let rss_kib = parse_status(&read("status")?).ok_or(ProcError::Format {
        pid,
        file: "status",
    })?;
    Ok(Sample { cpu_ticks, rss_kib })
}

/// CPU time of the calling thread, in clock ticks (`/proc/thread-self/stat`).
pub fn thread_cpu_ticks() -> Option<u64> {
    parse_stat(&std::fs::read_to_string("/proc/thread-self/stat").ok()?)
}

/// CPU time of the calling thread in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`, which brings the running thread's
/// count up to date; `/proc/thread-self/schedstat` lags by up to a scheduler tick): a floor measured over a few
/// hundred operations needs better than the clock tick's 10 ms.
pub fn thread_cpu_ns() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).ok()?;
    let nanos = u64::try_from(t.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// The directories of the threads of `pid` as listed now (`/proc/<pid>/task/<tid>`; `None` when the process is
/// gone). A thread may end before its files are read: each reader skips what it cannot read.
pub fn thread_dirs(pid: u32) -> Option<impl Iterator<Item = std::path::PathBuf>> {
    Some(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
            .map(|entry| entry.path()),
    )
}

/// Nanoseconds on a CPU of each thread of `pid` still alive, summed by thread name (`/proc/<pid>/task/*/comm` and
/// `schedstat`), so that a phase's CPU can be told apart by what did it (the device runtime, the journal writer).
pub fn threads_cpu_ns_by_name(pid: u32) -> Option<BTreeMap<String, u64>> {
    let mut by_name = BTreeMap::new();
    for dir in thread_dirs(pid)? {
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            // The thread ended between the listing and the read.
            continue;
        };
        let Some(ns) = stat
            .split_ascii_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        *by_name.entry(comm.trim_end().to_owned()).or_insert(0) += ns;
    }
    Some(by_name)
}

/// What each thread name of a process used between two readings of [`threads_cpu_ns_by_name`], largest first;
/// a thread that ended meanwhile is not in `after` and is not counted.
pub fn cpu_ns_used_by_name(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut used: Vec<(String, u64)> = after
        .iter()
        .map(|(name, ns)| {
            (
                name.clone(),
                ns.saturating_sub(before.get(name).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, ns)| *ns > 0)
        .collect();
    used.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    used
}

/// Context switches of a process's threads, summed: how often they gave up a CPU to wait (`voluntary`) and how
/// often the scheduler took it from them while they could still run (`preempted`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    /// `voluntary_ctxt_switches`: the thread waited (for input, a lock, a timer).
    pub voluntary: u64,
    /// `nonvoluntary_ctxt_switches`: the thread was preempted, another runnable thread took its CPU.
    pub preempted: u64,
}

impl Switches {
    /// What happened between `before` and `self` (threads that ended meanwhile are not counted).
    #[must_use]
    pub fn since(self, before: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            preempted: self.preempted.saturating_sub(before.preempted),
        }
    }
}

/// The two context-switch counts of one `/proc/<pid>/task/<tid>/status` text.
pub fn parse_switches(status: &str) -> Option<Switches> {
    let count = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().parse::<u64>().ok())
    };
    Some(Switches {
        voluntary: count("voluntary_ctxt_switches:")?,
        preempted: count("nonvoluntary_ctxt_switches:")?,
    })
}

/// The context switches of every thread of `pid` still alive, summed (`/proc/<pid>/task/*/status`).
pub fn context_switches(pid: u32) -> Option<Switches> {
    let mut sum = Switches::default();
    for dir in thread_dirs(pid)? {
        // A thread that ended between the listing and the read is skipped.
        if let Some(s) = std::fs::read_to_string(dir.join("status"))
            .ok()
            .as_deref()
            .and_then(parse_switches)
        {
            sum.voluntary += s.voluntary;
            sum.preempted += s.preempted;
        }
    }
    Some(sum)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, the Linux value on every common architecture, when `getconf` is
/// missing).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`), as the kernel prints them.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let three: Vec<&str> = text.split_ascii_whitespace().take(3).collect();
    (three.len() == 3).then(|| three.join(" "))
}

/// CPU time of `ticks` clock ticks.
pub fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_second.max(1))
}

/// The soft limit on open files of this process (`Max open files` in `/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft limit on open files to its hard limit (a process it starts inherits it); returns the
/// soft limit afterwards.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        // Refused (an unlimited hard limit is above what the kernel allows): the check that follows says so.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    open_files_limit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let line = "4242 (local (cloud) x) S 1 4242 4242 0 -1 4194304 900 0 0 0 1234 567 0 0 20 0 3 0 100 \
                    20000000 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some(1234 + 567));
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn status_rss() {
        let text = "Name:\tlocal-cloud\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(parse_status(text), Some(5120));
        assert_eq!(parse_status("Name:\tx\n"), None);
        assert_eq!(parse_status("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn cpu_by_thread_name_is_the_difference_per_name() {
        let before = BTreeMap::from([
            ("spark-devices".to_owned(), 1_000),
            ("journal".to_owned(), 50),
        ]);
        let after = BTreeMap::from([
            ("spark-devices".to_owned(), 4_000),
            ("journal".to_owned(), 50),
            ("new".to_owned(), 700),
        ]);
        assert_eq!(
            cpu_ns_used_by_name(&before, &after),
            vec![("spark-devices".to_owned(), 3_000), ("new".to_owned(), 700)]
        );
    }

    #[test]
    fn this_thread_and_process_threads_are_read_in_nanoseconds() {
        let a = thread_cpu_ns().expect("/proc/thread-self/schedstat");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let b = thread_cpu_ns().expect("/proc/thread-self/schedstat");
        assert!(b > a, "a busy loop used no CPU time ({a} -> {b})");
        // The scheduler's per-thread counts lag the running thread by up to a tick: only that they were found.
        let by_name = threads_cpu_ns_by_name(std::process::id()).expect("/proc/self/task");
        assert!(
            by_name.values().sum::<u64>() > 0,
            "no thread of this process used CPU: {by_name:?}"
        );
    }

    #[test]
    fn context_switches_are_read_from_a_thread_status() {
        let status = "Name:\tspark-devices\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1500\n\
                      nonvoluntary_ctxt_switches:\t32\n";
        let s = parse_switches(status).expect("both counts");
        assert_eq!((s.voluntary, s.preempted), (1500, 32));
        assert_eq!(parse_switches("voluntary_ctxt_switches:\t3\n"), None);
        assert_eq!(
            parse_switches("voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t1\n"),
            None
        );
        let later = Switches {
            voluntary: 1600,
            preempted: 30,
        };
        assert_eq!(
            later.since(s),
            Switches {
                voluntary: 100,
                preempted: 0
            }
        );
        // This process's own threads are found and have switched at least once (the test harness waits on them).
        let own = context_switches(std::process::id()).expect("/proc/self/task");
        assert!(own.voluntary + own.preempted > 0, "{own:?}");
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample(std::process::id()).expect("/proc of this process");
        assert!(s.rss_kib > 0);
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
    }
}
