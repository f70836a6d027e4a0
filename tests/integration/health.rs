//! The board's report on itself, `<base>/diag`, from made-up procfs and
//! sysfs trees: a hot Pi that gets under-voltage while it runs, and a PC that
//! has none of it.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::*;

const FLAGS: &str = "sys/devices/platform/soc/soc:firmware/get_throttled";

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
}

fn config(device: &str, v4: u16, v5: u16, root: &Path) -> String {
    format!(
        "{}[diag]\ninterval_s = 3600\nthrottle_check_s = 1\nroot = {:?}\nstate_dir = \"/\"\n",
        embedded_config(device, v4, v5),
        root
    )
}

/// A Pi's report is read from its tree; a flag that changes is reported
/// within a look, long before the next interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_pi_reports_itself_and_under_voltage_at_once() {
    let tree = tempfile::tempdir().expect("tree");
    write(
        tree.path(),
        &[
            ("sys/class/thermal/thermal_zone0/temp", "81234\n"),
            (FLAGS, "0x0\n"),
            ("proc/loadavg", "0.52 0.58 0.59 1/123 4567\n"),
            ("proc/meminfo", "MemTotal:  439600 kB\nMemAvailable:  250000 kB\n"),
            ("proc/uptime", "3600.25 7000.00\n"),
            (
                "proc/net/wireless",
                "Inter-| sta-|   Quality        |   Discarded packets\n face | tus | link level noise |  nwid  crypt\n wlan0: 0000   49.  -61.  -256        0      0\n",
            ),
        ],
    );
    let (v4, v5) = (free_port(), free_port());
    let _agent = Agent::start(&config("diag-pi", v4, v5, tree.path()));
    let topic = "edge/diag-pi/diag";
    let mut c = Client::connect(v5, "diag-pi-c").await;
    c.subscribe(topic).await;
    let first = c
        .expect(Duration::from_secs(10), |m| m.topic == topic)
        .await
        .expect("a report at the start");
    let v = first.json();
    assert_eq!(v["temperature_c"], 81.234, "{v}");
    assert_eq!(v["under_voltage"], false, "{v}");
    assert_eq!(v["load"], serde_json::json!([0.52, 0.58, 0.59]), "{v}");
    assert_eq!(
        (
            v["memory_available_kb"].as_u64(),
            v["memory_total_kb"].as_u64()
        ),
        (Some(250_000), Some(439_600))
    );
    assert_eq!(
        (v["wifi_interface"].as_str(), v["wifi_signal_dbm"].as_f64()),
        (Some("wlan0"), Some(-61.0))
    );
    // Not invented: a made-up tree names no network, and the broker is on the loopback.
    for none in ["wifi_ssid", "ip", "mac", "interface"] {
        assert!(v[none].is_null(), "{none}: {v}");
    }
    assert!(v["disk_free_kb"].is_u64(), "{v}");
    write(tree.path(), &[(FLAGS, "0x50005\n")]);
    // The start's report may come twice (retained and live, when the
    // subscription meets its publish): wait for the one after the change.
    let next = c
        .expect(Duration::from_secs(5), |m| {
            m.topic == topic && m.json()["under_voltage"] != false
        })
        .await
        .expect("a report when the flag changed, not an hour later");
    let v = next.json();
    assert_eq!(
        (
            v["under_voltage"].clone(),
            v["under_voltage_since_boot"].clone()
        ),
        (true.into(), true.into()),
        "{v}"
    );
    let kept = retained(v5, "diag-pi-r", topic).await;
    assert_eq!(kept.json()["under_voltage"], true, "retained");
    // Nothing changes: no report.
    assert!(
        c.expect(Duration::from_millis(2500), |m| m.topic == topic)
            .await
            .is_none(),
        "a report without a change"
    );
}

/// A PC without a device tree, firmware flags, Wi-Fi or thermal zone: nulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pc_reports_null_for_what_it_lacks() {
    let tree = tempfile::tempdir().expect("tree");
    write(tree.path(), &[("proc/loadavg", "0.10 0.20 0.30 1/99 42\n")]);
    let (v4, v5) = (free_port(), free_port());
    let _agent = Agent::start(&config("diag-pc", v4, v5, tree.path()));
    let report = retained(v5, "diag-pc-r", "edge/diag-pc/diag").await.json();
    assert_eq!(report["load"], serde_json::json!([0.1, 0.2, 0.3]));
    for none in [
        "temperature_c",
        "under_voltage",
        "throttled_since_boot",
        "memory_total_kb",
        "wifi_interface",
        "wifi_signal_dbm",
        "wifi_ssid",
        "ip",
        "uptime_s",
    ] {
        assert!(report[none].is_null(), "{none}: {report}");
    }
    assert!(report["agent_uptime_s"].is_u64(), "{report}");
}
