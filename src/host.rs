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

    /// The MAC address of the interface that reaches `to` (by the most
    /// specific IPv4 route; the default route for a broker known by name),
    /// unless that is the loopback.
    pub(crate) fn mac_towards(&self, to: Option<Ipv4Addr>) -> Option<String> {
        if to.is_some_and(|ip| ip.is_loopback()) {
            return None;
        }
        let routes = self.text("proc/net/route")?;
        let iface = route_for(&routes, to.unwrap_or(Ipv4Addr::UNSPECIFIED))?;
        let mac = self.text(&format!("sys/class/net/{iface}/address"))?;
        (mac != "00:00:00:00:00:00").then_some(mac)
    }
}

/// The interface of the most specific route in `/proc/net/route` text that
/// takes `to` (for `0.0.0.0`, the default route).
fn route_for(routes: &str, to: Ipv4Addr) -> Option<String> {
    let addr = |hex: &str| {
        u32::from_str_radix(hex, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
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

    #[test]
    fn a_pc_without_a_device_tree_or_a_route_lacks_them() {
        let dir = tree(&[("proc/net/route", "Iface\tDestination\n")]);
        let host = Host::new(dir.path());
        assert_eq!((host.model(), host.serial_number()), (None, None));
        assert_eq!(host.mac_towards(Some(Ipv4Addr::new(192, 168, 1, 2))), None);
        assert_eq!(Host::new("/nonexistent").mac_towards(None), None);
    }
}
