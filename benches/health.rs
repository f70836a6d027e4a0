//! What one health report costs the agent: the time to read and encode it,
//! and the heap allocations it makes, on this host (`/`) and on a made-up
//! Raspberry Pi tree that has every value (hot, under-voltage, Wi-Fi).
//! Between two reports the agent reads nothing (one sysfs file per
//! `diag.throttle_check_s` on a Pi, none elsewhere).
//! Run with `cargo bench --bench health` (`HEALTH_BENCH_READS`, 2000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use edge_agent::parts::health::read_once;

/// The system allocator, counting.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
}

fn measure(name: &str, root: &Path, reads: usize) {
    // Warm: the first reading opens what the page cache then holds.
    let sample = read_once(root, Some([192, 168, 1, 20].into()));
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    for _ in 0..reads {
        std::hint::black_box(read_once(root, Some([192, 168, 1, 20].into())));
    }
    let took = t0.elapsed();
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    println!(
        "{name}: {:.1} µs, {} allocations, {} bytes per reading ({reads} readings; {} bytes of JSON)",
        took.as_secs_f64() * 1e6 / reads as f64,
        (a1 - a0) / reads,
        (b1 - b0) / reads,
        sample.len()
    );
}

fn main() {
    let reads: usize = std::env::var("HEALTH_BENCH_READS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    measure("this host (/)", Path::new("/"), reads);
    let pi = tempfile::tempdir().expect("tree");
    write(
        pi.path(),
        &[
            ("sys/class/thermal/thermal_zone0/temp", "81234\n"),
            ("sys/devices/platform/soc/soc:firmware/get_throttled", "0x50005\n"),
            ("proc/loadavg", "0.52 0.58 0.59 1/123 4567\n"),
            ("proc/meminfo", "MemTotal:  439600 kB\nMemFree:  20000 kB\nMemAvailable:  250000 kB\nBuffers:  1000 kB\n"),
            ("proc/uptime", "3600.25 7000.00\n"),
            ("proc/net/wireless", "Inter-| sta-|   Quality        |   Discarded packets\n face | tus | link level noise |  nwid  crypt\n wlan0: 0000   49.  -61.  -256        0      0\n"),
            ("proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\nwlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\nwlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n"),
            ("proc/net/fib_trie", "Main:\n  +-- 0.0.0.0/0 3 0 5\n     +-- 192.168.1.0/24 2 0 2\n           |-- 192.168.1.0\n              /24 link UNICAST\n           |-- 192.168.1.23\n              /32 host LOCAL\n"),
            ("sys/class/net/wlan0/address", "b8:27:eb:00:00:01\n"),
        ],
    );
    measure("a made-up Pi tree", pi.path(), reads);
}
