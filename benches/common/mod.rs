//! What the benches that run the agent as its own process share: sizes
//! from the environment, free ports on 127.0.0.1, and what /proc says of
//! the processes they start. Each bench uses part of it.
#![allow(dead_code)]

use std::str::FromStr;

/// The value of environment variable `name`, or `default`.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A port on 127.0.0.1 that nothing listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `kB` field of a `/proc/<pid>/status` or `smaps_rollup` text
/// (`VmRSS:`, `RssAnon:`, `Pss:`).
pub fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    kib_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        field,
    )
}

/// The children of `pid`: from `/proc/<pid>/task/*/children`, or, where
/// the kernel has no such file, by the `PPid` of every process.
pub fn children(pid: u32) -> Vec<u32> {
    let mut found: Option<Vec<u32>> = None;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                found.get_or_insert_with(Vec::new).extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    if let Some(c) = found {
        return c;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("PPid:"))
                        .and_then(|v| v.trim().parse::<u32>().ok())
                })
                == Some(pid)
        })
        .collect()
}

/// `pid` and all its descendants, `pid` first (the embedded broker's
/// supervisor and broker processes are the agent's).
pub fn family(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let more = children(all[i]);
        all.extend(more);
        i += 1;
    }
    all
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (Linux).
pub const USER_HZ: f64 = 100.0;

/// User + system CPU time of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Reads an agent's log (its stderr) on a thread of its own, and says, once,
/// how long after `since` it logged `online`.
pub fn online_after(
    stderr: std::process::ChildStderr,
    since: std::time::Instant,
) -> std::sync::mpsc::Receiver<std::time::Duration> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" online") {
                if let Some(t) = tx.take() {
                    let _ = t.send(since.elapsed());
                }
            }
        }
    });
    rx
}
