//! The reconnect storm's timeline: every 250 ms, what the cloud got of the CPUs and what it waited for, what the
//! tool itself used, how far the Cores are, and the kernel's accept queue of the device listener.
//!
//! The figures come from `/proc`: the cloud's threads' `schedstat` (nanoseconds on a CPU, nanoseconds runnable
//! but waiting for one), their states in `stat` (how many are runnable at the sample), the tool's own `stat`, the
//! listening socket's line in `/proc/net/tcp` (for a listener, the receive queue is the number of connections
//! waiting to be accepted; its backlog is what the cloud asked for, capped at `net.core.somaxconn`) and the `ListenOverflows` / `ListenDrops` counters
//! of `/proc/net/netstat` (connections the kernel dropped because the accept queue was full: a Core then waits
//! for its SYN or ACK to be retransmitted, a second or more).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cores::Fleet;
use crate::procfs;

/// The interval between two samples.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// CPU time of a process's threads as the scheduler counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedTimes {
    /// Nanoseconds on a CPU.
    pub run_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU (the run queue).
    pub wait_ns: u64,
    /// Threads runnable (state `R`) when read.
    pub runnable: u32,
}

/// Parses one thread's `schedstat`: nanoseconds on a CPU, nanoseconds waiting on a run queue, time slices.
#[must_use]
pub fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_ascii_whitespace();
    let run = fields.next()?.parse().ok()?;
    let wait = fields.next()?.parse().ok()?;
    Some((run, wait))
}

/// The state letter of a `stat` line (the field after the parenthesised name).
#[must_use]
pub fn parse_state(text: &str) -> Option<char> {
    text[text.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .next()?
        .chars()
        .next()
}

/// The scheduler's times of every thread of `pid`, summed (`None` when the process is gone).
#[must_use]
pub fn sched_times(pid: u32) -> Option<SchedTimes> {
    let mut times = SchedTimes::default();
    for dir in crate::procfs::thread_dirs(pid)? {
        // A thread that ended between the listing and the read is skipped.
        if let Some((run, wait)) = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|t| parse_schedstat(&t))
        {
            times.run_ns += run;
            times.wait_ns += wait;
        }
        if std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|t| parse_state(&t))
            == Some('R')
        {
            times.runnable += 1;
        }
    }
    Some(times)
}

/// A listening socket's accept queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptQueue {
    /// Connections established and not yet accepted.
    pub waiting: u32,
}

/// `net.core.somaxconn`: the most any `listen` backlog gets.
#[must_use]
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Finds the listening socket on `port` in the text of `/proc/net/tcp` or `/proc/net/tcp6`.
#[must_use]
pub fn parse_listener(text: &str, port: u16) -> Option<AcceptQueue> {
    let wanted = format!(":{port:04X}");
    text.lines().skip(1).find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let local = fields.nth(1)?;
        let _remote = fields.next()?;
        let state = fields.next()?;
        let queues = fields.next()?;
        if state != "0A" || !local.ends_with(&wanted) {
            return None;
        }
        let (_, rx) = queues.split_once(':')?;
        Some(AcceptQueue {
            waiting: u32::from_str_radix(rx, 16).ok()?,
        })
    })
}

/// The accept queue of the listener on `addr`'s port.
#[must_use]
pub fn accept_queue(addr: SocketAddr) -> Option<AcceptQueue> {
    let file = if addr.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    parse_listener(&std::fs::read_to_string(file).ok()?, addr.port())
}

/// `TcpExt: ListenOverflows` and `ListenDrops` from the text of `/proc/net/netstat` (machine-wide counters).
#[must_use]
pub fn parse_listen_drops(text: &str) -> Option<(u64, u64)> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let (mut overflows, mut drops) = (None, None);
    for (name, value) in names
        .split_ascii_whitespace()
        .zip(values.split_ascii_whitespace())
    {
        match name {
            "ListenOverflows" => overflows = value.parse().ok(),
            "ListenDrops" => drops = value.parse().ok(),
            _ => {}
        }
    }
    Some((overflows?, drops?))
}

fn listen_drops() -> Option<(u64, u64)> {
    parse_listen_drops(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// One sample of the storm.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Since the sampler started.
    pub at: Duration,
    /// The cloud's threads, summed (zero before the restarted cloud is found).
    pub cloud: SchedTimes,
    /// This tool's CPU time (user and system), in clock ticks.
    pub tool_ticks: u64,
    /// Cores online.
    pub online: u64,
    /// Sessions established since the restart.
    pub handshakes: u64,
    /// Attempts started since the restart.
    pub attempts: u64,
    /// Attempts since the restart that ended before a session.
    pub failed: u64,
    /// The device listener's accept queue.
    pub queue: Option<AcceptQueue>,
    /// The machine's listen overflows and drops.
    pub drops: Option<(u64, u64)>,
}

/// Samples every [`INTERVAL`] until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Tick>>,
}

impl Sampler {
    /// Starts sampling the cloud `pid` (its threads), `fleet`'s counters and, with `listen`, that device listener's
    /// accept queue, on a thread of its own. Reading the accept queue walks the kernel's whole table of TCP
    /// sockets (`/proc/net/tcp`): with 40,000 sockets it costs the tool more CPU than it measures, so it is asked
    /// for only when a timeline is printed.
    #[must_use]
    pub fn start(pid: u32, listen: Option<SocketAddr>, fleet: Arc<Fleet>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut ticks = Vec::new();
                let mut next = start;
                while !stop.load(Ordering::Relaxed) {
                    ticks.push(Tick {
                        at: start.elapsed(),
                        cloud: sched_times(pid).unwrap_or_default(),
                        tool_ticks: procfs::sample(std::process::id()).map_or(0, |s| s.cpu_ticks),
                        online: fleet.online.load(Ordering::Relaxed),
                        handshakes: fleet.handshakes.load(Ordering::Relaxed),
                        attempts: fleet.attempts.load(Ordering::Relaxed),
                        failed: fleet.refused.load(Ordering::Relaxed),
                        queue: listen.and_then(accept_queue),
                        drops: listen_drops(),
                    });
                    next += INTERVAL;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                ticks
            })
        };
        Sampler { stop, thread }
    }

    /// Stops and returns the samples.
    #[must_use]
    pub fn finish(self) -> Vec<Tick> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// What the samples of a storm add up to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Wall time covered.
    pub seconds: f64,
    /// The cloud's CPU time over the wall time: CPUs it used on average.
    pub cloud_cpus: f64,
    /// The cloud's run-queue wait over the wall time: threads on average runnable but without a CPU.
    pub cloud_waiting: f64,
    /// The tool's CPU time over the wall time.
    pub tool_cpus: f64,
    /// The longest accept queue seen.
    pub max_accept_queue: Option<AcceptQueue>,
    /// Listen overflows on the machine over the samples.
    pub listen_overflows: u64,
}

/// Adds up `ticks` (at least two) with `tck` clock ticks per second.
#[must_use]
pub fn summarize(ticks: &[Tick], tck: u64) -> Option<Summary> {
    let (first, last) = (ticks.first()?, ticks.last()?);
    let seconds = last.at.checked_sub(first.at)?.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    // The restarted cloud's counters start from zero: the first sample with the cloud found is the baseline.
    let base = ticks
        .iter()
        .find(|t| t.cloud.run_ns > 0)
        .map_or(first.cloud, |t| t.cloud);
    let run = last.cloud.run_ns.saturating_sub(base.run_ns) as f64 / 1e9;
    let wait = last.cloud.wait_ns.saturating_sub(base.wait_ns) as f64 / 1e9;
    let tool = procfs::ticks_to_duration(last.tool_ticks.saturating_sub(first.tool_ticks), tck);
    let max_accept_queue = ticks
        .iter()
        .filter_map(|t| t.queue)
        .max_by_key(|q| q.waiting);
    let listen_overflows = match (first.drops, last.drops) {
        (Some(a), Some(b)) => b.0.saturating_sub(a.0),
        _ => 0,
    };
    Some(Summary {
        seconds,
        cloud_cpus: run / seconds,
        cloud_waiting: wait / seconds,
        tool_cpus: tool.as_secs_f64() / seconds,
        max_accept_queue,
        listen_overflows,
    })
}

/// One line per sample after the first: time, the cloud's CPUs and run-queue wait in that interval, its runnable
/// threads, the tool's CPUs, handshakes and failed attempts in the interval, Cores online, the accept queue and new
/// listen overflows.
#[must_use]
pub fn timeline(ticks: &[Tick], tck: u64) -> Vec<String> {
    ticks
        .windows(2)
        .map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let dt = b.at.saturating_sub(a.at).as_secs_f64().max(1e-9);
            let run = b.cloud.run_ns.saturating_sub(a.cloud.run_ns) as f64 / 1e9 / dt;
            let wait = b.cloud.wait_ns.saturating_sub(a.cloud.wait_ns) as f64 / 1e9 / dt;
            let tool = procfs::ticks_to_duration(b.tool_ticks.saturating_sub(a.tool_ticks), tck)
                .as_secs_f64()
                / dt;
            let overflows = match (a.drops, b.drops) {
                (Some(x), Some(y)) => y.0.saturating_sub(x.0),
                _ => 0,
            };
            format!(
                "  {:>7.2} s  cloud {:>4.2} CPUs, {:>5.2} waiting, {:>2} runnable  tool {:>4.2} CPUs  +{:>5} handshakes \
                 +{:>4} failed  {:>6} online  accept queue {:>5}  +{} overflows",
                b.at.as_secs_f64(),
                run,
                wait,
                b.cloud.runnable,
                tool,
                b.handshakes.saturating_sub(a.handshakes),
                b.failed.saturating_sub(a.failed),
                b.online,
                b.queue.map_or(0, |q| q.waiting),
                overflows,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_and_state() {
        assert_eq!(parse_schedstat("123456 789 12\n"), Some((123_456, 789)));
        assert_eq!(parse_schedstat("12"), None);
        assert_eq!(parse_state("77 (spark (devices)) R 1 2 3"), Some('R'));
        assert_eq!(parse_state("77 (x) S 1"), Some('S'));
        assert_eq!(parse_state("no name"), None);
    }

    #[test]
    fn listener_line() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n\
                    0: 0100007F:1F90 00000000:0000 0A 00000400:00000011 00:00000000 00000000 0\n\
                    1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0\n\
                    2: 0100007F:1F91 00000000:0000 0A 00001000:00000003 00:00000000 00000000 0\n";
        assert_eq!(
            parse_listener(text, 0x1f91),
            Some(AcceptQueue { waiting: 3 })
        );
        assert_eq!(
            parse_listener(text, 8080),
            Some(AcceptQueue { waiting: 17 })
        );
        assert_eq!(parse_listener(text, 9), None);
    }

    #[test]
    fn netstat_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 4 10 12\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_listen_drops(text), Some((10, 12)));
        assert_eq!(parse_listen_drops("IpExt: a\nIpExt: 1\n"), None);
    }

    #[test]
    fn this_process_is_sampled() {
        let t = sched_times(std::process::id()).expect("this process");
        assert!(t.run_ns > 0);
        assert!(t.runnable >= 1, "the reading thread is running");
    }
}
