//! What the host says about itself, read from procfs and sysfs below a root
//! (`/` on a device, a made-up tree in tests): the board's model and serial
//! number from the device tree, and the MAC address of the interface a
//! broker is reached through. A value the host lacks is `None`, never
//! invented.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The host's procfs and sysfs, below `root`.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    root: PathBuf,
}

impl Host {
    /// The host whose `/proc` and `/sys` are below `root`.
    pub(crate) fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    /// A file's text, trimmed of white space and the device tree's NULs;
    /// `None` when missing or empty.
    fn text(&self, path: &str) -> Option<String> {
        let bytes = std::fs::read(self.root.join(path)).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!text.is_empty()).then(|| text.to_string())
    }

    /// The board's model (`Raspberry Pi Zero W Rev 1.1`), from the device tree.
    pub(crate) fn model(&self) -> Option<String> {
        self.text("proc/device-tree/model")
    }

    /// The board's serial number, from the device tree.
    pub(crate) fn serial_number(&self) -> Option<String> {
        self.text("proc/device-tree/serial-number")
    }

    /// The interface that reaches `to` (by the most specific IPv4 route;
    /// the default route for a broker known by name), unless that is the
    /// loopback, with this host's IPv4 address and MAC address on it. The
    /// route table is read once.
    pub(crate) fn towards(&self, to: Option<Ipv4Addr>) -> Towards {
        let none = Towards::default();
        if to.is_some_and(|ip| ip.is_loopback()) {
            return none;
        }
        let Some(routes) = self.text("proc/net/route") else {
            return none;
        };
        let Some(iface) = route_for(&routes, to.unwrap_or(Ipv4Addr::UNSPECIFIED)) else {
            return none;
        };
        let mac = self
            .text(&format!("sys/class/net/{iface}/address"))
            .filter(|m| m != "00:00:00:00:00:00");
        let ip = self.ip_on(&routes, &iface);
        Towards {
            iface: Some(iface),
            ip,
            mac,
        }
    }

    /// The MAC address of the interface that reaches `to` ([`Host::towards`]).
    pub(crate) fn mac_towards(&self, to: Option<Ipv4Addr>) -> Option<String> {
        self.towards(to).mac
    }

    /// This host's IPv4 address on `iface`: the local address (from
    /// `/proc/net/fib_trie`) inside one of the networks that interface is
    /// directly on (by the `routes` text).
    fn ip_on(&self, routes: &str, iface: &str) -> Option<Ipv4Addr> {
        let nets = connected(routes, iface);
        let trie = self.text("proc/net/fib_trie")?;
        local_addresses(&trie).into_iter().find(|ip| {
            let ip = u32::from(*ip);
            nets.iter()
                .any(|(net, mask)| ip & u32::from(*mask) == u32::from(*net) & u32::from(*mask))
        })
    }

    /// The network name (SSID) the Wi-Fi interface `iface` is joined to, as
    /// the kernel's wireless extensions tell it (`iwgetid`); only for the
    /// real host (root `/`), since a made-up tree has no interfaces.
    pub(crate) fn ssid(&self, iface: &str) -> Option<String> {
        if self.root != std::path::Path::new("/") {
            return None;
        }
        essid(iface)
    }
}

/// The SSID of `iface` by the `SIOCGIWESSID` ioctl; `None` for an
/// interface that is not Wi-Fi or not joined.
fn essid(iface: &str) -> Option<String> {
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // The longest SSID is 32 bytes; the kernel may add a NUL.
    let mut buf = [0u8; 33];
    // SAFETY: a datagram socket is made and closed here; `req` is a zeroed
    // iwreq (plain integers, arrays and a pointer) whose name holds `iface`
    // NUL-terminated and whose `essid` points at `buf`, which outlives the
    // call and whose length the kernel is told; `essid.length` is read only
    // after the ioctl succeeded.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut req: libc::iwreq = std::mem::zeroed();
        for (i, b) in name.iter().enumerate() {
            req.ifr_ifrn.ifrn_name[i] = *b as libc::c_char;
        }
        req.u.essid.pointer = buf.as_mut_ptr().cast();
        req.u.essid.length = buf.len() as u16;
        let ok = libc::ioctl(fd, libc::SIOCGIWESSID as _, &mut req) == 0;
        libc::close(fd);
        if !ok {
            return None;
        }
        let len = usize::from(req.u.essid.length).min(buf.len());
        let ssid = String::from_utf8_lossy(&buf[..len]);
        let ssid = ssid.trim_end_matches('\0');
        (!ssid.is_empty()).then(|| ssid.to_string())
    }
}

/// The networks `iface` is directly on (routes without a gateway), as
/// (address, mask), from `/proc/net/route` text.
fn connected(routes: &str, iface: &str) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (name, dest, gw, mask) = (
                f.first()?,
                addr(f.get(1)?)?,
                addr(f.get(2)?)?,
                addr(f.get(7)?)?,
            );
            (*name == iface && gw.is_unspecified() && !mask.is_unspecified())
                .then_some((dest, mask))
        })
        .collect()
}

/// The host's own IPv4 addresses but the loopback's, from
/// `/proc/net/fib_trie` text: each `|-- a.b.c.d` followed by `/32 host LOCAL`.
fn local_addresses(trie: &str) -> Vec<Ipv4Addr> {
    let lines: Vec<&str> = trie.lines().map(str::trim).collect();
    let mut found: Vec<Ipv4Addr> = lines
        .windows(2)
        .filter(|w| w[1].starts_with("/32 host LOCAL"))
        .filter_map(|w| w[0].strip_prefix("|-- ")?.parse().ok())
        .filter(|ip: &Ipv4Addr| !ip.is_loopback())
        .collect();
    // The trie lists each address in its Main and Local tables.
    found.sort();
    found.dedup();
    found
}

/// An address in `/proc/net/route`'s hex, in the host's byte order.
fn addr(hex: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(hex, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

/// The interface toward a broker and this host's addresses on it; what
/// the host lacks is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Towards {
    /// The interface (`wlan0`).
    pub iface: Option<String>,
    /// This host's IPv4 address on it.
    pub ip: Option<Ipv4Addr>,
    /// Its MAC address.
    pub mac: Option<String>,
}

/// The firmware's throttling flags, as `vcgencmd get_throttled` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Throttled(pub u32);

impl Throttled {
    /// Under-voltage now.
    pub(crate) fn under_voltage(self) -> bool {
        self.0 & 1 != 0
    }
    /// The ARM frequency capped now.
    pub(crate) fn frequency_capped(self) -> bool {
        self.0 & (1 << 1) != 0
    }
    /// Throttled now.
    pub(crate) fn throttled(self) -> bool {
        self.0 & (1 << 2) != 0
    }
    /// Under-voltage since boot.
    pub(crate) fn under_voltage_since_boot(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    /// The frequency capped since boot.
    pub(crate) fn frequency_capped_since_boot(self) -> bool {
        self.0 & (1 << 17) != 0
    }
    /// Throttled since boot.
    pub(crate) fn throttled_since_boot(self) -> bool {
        self.0 & (1 << 18) != 0
    }
}

/// A Wi-Fi interface's link, from `/proc/net/wireless`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wireless {
    /// The interface (`wlan0`).
    pub iface: String,
    /// The signal level, in dBm.
    pub signal_dbm: f64,
}

impl Host {
    /// The SoC's temperature in °C (the first thermal zone).
    pub(crate) fn temperature_c(&self) -> Option<f64> {
        let milli: f64 = self
            .text("sys/class/thermal/thermal_zone0/temp")?
            .parse()
            .ok()?;
        Some(milli / 1000.0)
    }

    /// The firmware's throttling flags (a Raspberry Pi's).
    pub(crate) fn throttled(&self) -> Option<Throttled> {
        let hex = self.text("sys/devices/platform/soc/soc:firmware/get_throttled")?;
        let hex = hex.trim_start_matches("0x");
        u32::from_str_radix(hex, 16).ok().map(Throttled)
    }

    /// The load averages over 1, 5 and 15 minutes.
    pub(crate) fn load(&self) -> Option<[f64; 3]> {
        let text = self.text("proc/loadavg")?;
        let mut f = text.split_whitespace().map(|v| v.parse::<f64>().ok());
        Some([f.next()??, f.next()??, f.next()??])
    }

    /// Memory available and in all, in kB.
    pub(crate) fn memory_kb(&self) -> Option<(u64, u64)> {
        let text = self.text("proc/meminfo")?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((field("MemAvailable:")?, field("MemTotal:")?))
    }

    /// Seconds since the system booted.
    pub(crate) fn uptime_s(&self) -> Option<f64> {
        self.text("proc/uptime")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The first Wi-Fi interface with a link.
    pub(crate) fn wireless(&self) -> Option<Wireless> {
        let text = self.text("proc/net/wireless")?;
        text.lines().skip(2).find_map(|line| {
            let (iface, rest) = line.split_once(':')?;
            let level = rest.split_whitespace().nth(2)?.trim_end_matches('.');
            Some(Wireless {
                iface: iface.trim().to_string(),
                signal_dbm: level.parse().ok()?,
            })
        })
    }

    /// Free space on the file system that holds `path` (below the root), in kB.
    pub(crate) fn free_kb(&self, path: &std::path::Path) -> Option<u64> {
        let path = self.root.join(path.strip_prefix("/").unwrap_or(path));
        let c = std::ffi::CString::new(path.into_os_string().into_encoded_bytes()).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c` is a NUL-terminated path and `st` a buffer statvfs fills
        // when it returns 0; it is read only then.
        let st = unsafe {
            if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
                return None;
            }
            st.assume_init()
        };
        // 32 bits wide on some 32-bit targets, 64 on others.
        #[allow(clippy::useless_conversion)]
        let bytes = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
        Some(bytes / 1024)
    }
}

/// The interface of the most specific route in `/proc/net/route` text that
/// takes `to` (for `0.0.0.0`, the default route).
fn route_for(routes: &str, to: Ipv4Addr) -> Option<String> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, mask) = (f.first()?, addr(f.get(1)?)?, addr(f.get(7)?)?);
            let (d, m, t) = (u32::from(dest), u32::from(mask), u32::from(to));
            (t & m == d & m && (to != Ipv4Addr::UNSPECIFIED || m == 0))
                .then(|| (m.count_ones(), iface.to_string()))
        })
        .max_by_key(|(bits, _)| *bits)
        .map(|(_, iface)| iface)
}

/// A made-up host tree for tests: `files` are (path below root, contents).
#[cfg(test)]
pub(crate) fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/net/route of a Pi on 192.168.1.0/24 over wlan0, with eth0 on 10.0.0.0/8.
    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
        wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n\
        eth0\t0000000A\t00000000\t0001\t0\t0\t100\t000000FF\t0\t0\t0\n";

    #[test]
    fn a_pi_tells_its_model_serial_and_the_mac_towards_the_broker() {
        let dir = tree(&[
            ("proc/device-tree/model", "Raspberry Pi Zero W Rev 1.1\0"),
            ("proc/device-tree/serial-number", "00000000a1b2c3d4\0"),
            ("proc/net/route", ROUTES),
            ("sys/class/net/wlan0/address", "b8:27:eb:00:00:01\n"),
            ("sys/class/net/eth0/address", "b8:27:eb:00:00:02\n"),
        ]);
        let host = Host::new(dir.path());
        assert_eq!(host.model().as_deref(), Some("Raspberry Pi Zero W Rev 1.1"));
        assert_eq!(host.serial_number().as_deref(), Some("00000000a1b2c3d4"));
        let mac = |ip: Option<[u8; 4]>| host.mac_towards(ip.map(Ipv4Addr::from));
        assert_eq!(
            mac(Some([192, 168, 1, 20])).as_deref(),
            Some("b8:27:eb:00:00:01")
        );
        assert_eq!(
            mac(Some([10, 1, 2, 3])).as_deref(),
            Some("b8:27:eb:00:00:02")
        );
        assert_eq!(
            mac(Some([8, 8, 8, 8])).as_deref(),
            Some("b8:27:eb:00:00:01"),
            "default"
        );
        assert_eq!(
            mac(None).as_deref(),
            Some("b8:27:eb:00:00:01"),
            "a broker known by name"
        );
        assert_eq!(mac(Some([127, 0, 0, 1])), None, "the embedded broker");
    }

    /// /proc/net/fib_trie of the same Pi: 192.168.1.23 on wlan0, 10.0.0.5 on eth0.
    const TRIE: &str = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.0.0.0/8 2 0 2\n        |-- 10.0.0.0\n           /8 link UNICAST\n        |-- 10.0.0.5\n           /32 host LOCAL\n     +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.1\n              /32 host LOCAL\n     +-- 192.168.1.0/24 2 0 2\n           |-- 192.168.1.0\n              /24 link UNICAST\n           |-- 192.168.1.23\n              /32 host LOCAL\n        |-- 192.168.1.255\n           /32 link BROADCAST\nLocal:\n     +-- 192.168.1.0/24 2 0 2\n           |-- 192.168.1.23\n              /32 host LOCAL\n";

    #[test]
    fn the_ip_is_the_one_on_the_interface_towards_the_broker() {
        let dir = tree(&[("proc/net/route", ROUTES), ("proc/net/fib_trie", TRIE)]);
        let host = Host::new(dir.path());
        let ip = |to: Option<[u8; 4]>| host.towards(to.map(Ipv4Addr::from)).ip;
        assert_eq!(
            ip(Some([192, 168, 1, 20])),
            Some(Ipv4Addr::new(192, 168, 1, 23))
        );
        assert_eq!(ip(Some([10, 9, 9, 9])), Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(
            ip(None),
            Some(Ipv4Addr::new(192, 168, 1, 23)),
            "by name: the default route"
        );
        assert_eq!(ip(Some([127, 0, 0, 1])), None, "the embedded broker");
        let no_trie = tree(&[("proc/net/route", ROUTES)]);
        assert_eq!(Host::new(no_trie.path()).towards(None).ip, None);
        // A made-up tree has no Wi-Fi network to name, and the loopback is none.
        assert_eq!(host.ssid("wlan0"), None);
        assert_eq!(Host::new("/").ssid("lo"), None);
        assert_eq!(Host::new("/").ssid("no-such-interface-name"), None);
    }

    #[test]
    fn a_hot_pi_with_too_little_voltage_says_so() {
        let dir = tree(&[
            ("sys/class/thermal/thermal_zone0/temp", "81234\n"),
            ("sys/devices/platform/soc/soc:firmware/get_throttled", "0x50005\n"),
            ("proc/loadavg", "0.52 0.58 0.59 1/123 4567\n"),
            ("proc/meminfo", "MemTotal:         439600 kB\nMemFree:           20000 kB\nMemAvailable:     250000 kB\n"),
            ("proc/uptime", "3600.25 7000.00\n"),
            (
                "proc/net/wireless",
                "Inter-| sta-|   Quality        |   Discarded packets\n face | tus | link level noise |  nwid  crypt\n wlan0: 0000   49.  -61.  -256        0      0\n",
            ),
        ]);
        let host = Host::new(dir.path());
        assert_eq!(host.temperature_c(), Some(81.234));
        let t = host.throttled().unwrap();
        assert!(t.under_voltage() && t.throttled() && !t.frequency_capped());
        assert!(t.under_voltage_since_boot() && t.throttled_since_boot());
        assert!(!t.frequency_capped_since_boot());
        assert_eq!(host.load(), Some([0.52, 0.58, 0.59]));
        assert_eq!(host.memory_kb(), Some((250_000, 439_600)));
        assert_eq!(host.uptime_s(), Some(3600.25));
        let w = host.wireless().unwrap();
        assert_eq!((w.iface.as_str(), w.signal_dbm), ("wlan0", -61.0));
        assert!(
            host.free_kb(std::path::Path::new("/")).is_some(),
            "the tree's own file system"
        );
    }

    #[test]
    fn a_pc_without_a_device_tree_or_a_route_lacks_them() {
        let dir = tree(&[("proc/net/route", "Iface\tDestination\n")]);
        let host = Host::new(dir.path());
        assert_eq!((host.model(), host.serial_number()), (None, None));
        assert_eq!(host.mac_towards(Some(Ipv4Addr::new(192, 168, 1, 2))), None);
        assert_eq!(Host::new("/nonexistent").mac_towards(None), None);
        let none = Host::new("/nonexistent");
        assert_eq!(
            (none.temperature_c(), none.throttled(), none.load()),
            (None, None, None)
        );
        assert_eq!(
            (none.memory_kb(), none.uptime_s(), none.wireless()),
            (None, None, None)
        );
        assert_eq!(
            none.free_kb(std::path::Path::new("/var/lib/edge-agent")),
            None
        );
    }
}
