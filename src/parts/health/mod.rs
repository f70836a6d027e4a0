//! The board's report on itself, `<base>/diag`: temperature, the firmware's
//! under-voltage and throttling flags, load, memory, free space, Wi-Fi,
//! addresses, uptimes and the agent's counters, read from procfs and sysfs
//! every `diag.interval_s` on absolute deadlines (nothing runs between two
//! reports). A value the host lacks is null.

pub(crate) mod config;

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use self::config::DiagConfig;
use crate::agent::AgentError;
use crate::clock::rfc3339;
use crate::hardware::HardwareError;
use crate::host::Host;
use crate::mqtt::topic::{state, Verb};
use crate::parts::input::CommandError;
use crate::parts::{Device, Entity, Now, Out, Start};

/// The health report as a part.
pub(crate) struct Health {
    host: Host,
    config: DiagConfig,
    /// Where the broker is, for the interface that reaches it.
    broker: Option<Ipv4Addr>,
    /// The folder whose free space is reported.
    state_dir: std::path::PathBuf,
    started: Instant,
    /// The first report (at the start); the others follow every interval from it.
    first: Instant,
    next: Instant,
    /// How often the throttling flags are looked at between two reports;
    /// `None` when never (turned off, or the host has none).
    check: Option<Duration>,
    next_check: Instant,
    /// The flags the last report gave.
    flags: Option<crate::host::Throttled>,
}

impl Health {
    fn interval(&self) -> Duration {
        Duration::from_secs(self.config.interval_s)
    }

    /// The report, read now.
    fn report(&mut self, now: &Now) -> Value {
        let h = &self.host;
        let t = h.throttled();
        self.flags = t;
        let flag = |f: fn(crate::host::Throttled) -> bool| t.map(f);
        let (available, total) = h.memory_kb().unzip();
        let wifi = h.wireless();
        let towards = h.towards(self.broker);
        let s = &now.stats;
        json!({
            "at": rfc3339(&now.wall.with_timezone(&now.time_zone)),
            "temperature_c": h.temperature_c(),
            "under_voltage": flag(|t| t.under_voltage()),
            "frequency_capped": flag(|t| t.frequency_capped()),
            "throttled": flag(|t| t.throttled()),
            "under_voltage_since_boot": flag(|t| t.under_voltage_since_boot()),
            "frequency_capped_since_boot": flag(|t| t.frequency_capped_since_boot()),
            "throttled_since_boot": flag(|t| t.throttled_since_boot()),
            "load": h.load(),
            "memory_available_kb": available,
            "memory_total_kb": total,
            "disk_free_kb": h.free_kb(&self.state_dir),
            "wifi_interface": wifi.as_ref().map(|w| w.iface.clone()),
            "wifi_signal_dbm": wifi.as_ref().map(|w| w.signal_dbm),
            "wifi_ssid": wifi.as_ref().and_then(|w| h.ssid(&w.iface)),
            "interface": towards.iface,
            "ip": towards.ip.map(|ip| ip.to_string()),
            "mac": towards.mac,
            "uptime_s": h.uptime_s().map(|u| u.floor()),
            "agent_uptime_s": now.at.saturating_duration_since(self.started).as_secs(),
            "commands_applied": s.applied,
            "commands_rejected": s.rejected,
            "reconnections": s.reconnections,
            "last_error_at": s.last_error.as_ref().map(rfc3339),
        })
    }
}

/// The verbs of the topic table the part takes: none.
const VERBS: &[Verb] = &[];

impl Device for Health {
    type Command = Infallible;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        let config = start.settings.config.diag.clone();
        let state_dir = config
            .state_dir
            .clone()
            .unwrap_or_else(|| start.settings.config.device.state_dir.clone());
        if !config.enabled {
            return Ok(None);
        }
        let broker = match &start.settings.broker {
            Some(_) => Some(Ipv4Addr::LOCALHOST),
            None => start.settings.endpoint.host.parse().ok(),
        };
        // The first report goes out with every state at the start.
        let now = Instant::now();
        let next = now + Duration::from_secs(config.interval_s);
        let host = Host::new(&config.root);
        let check = (config.throttle_check_s > 0 && host.throttled().is_some())
            .then(|| Duration::from_secs(config.throttle_check_s));
        Ok(Some(Health {
            host,
            config,
            broker,
            state_dir,
            started: now,
            first: now,
            next,
            check,
            next_check: now + check.unwrap_or_default(),
            flags: None,
        }))
    }

    fn parse(&self, _: Verb, _: Option<&str>, _: &[u8]) -> Result<Infallible, CommandError> {
        Err(CommandError::Disabled(
            "commands to the health report".into(),
        ))
    }

    fn execute(&mut self, cmd: Infallible, _: &Now) -> Result<Vec<Out>, CommandError> {
        match cmd {}
    }

    fn states(&mut self, now: &Now) -> Vec<Out> {
        vec![Out::state(state::DIAG, self.report(now).to_string())]
    }

    fn deadline(&self, _: Instant) -> Option<Instant> {
        Some(match self.check {
            Some(_) => self.next.min(self.next_check),
            None => self.next,
        })
    }

    fn timer(&mut self, now: &Now) -> Vec<Out> {
        if let Some(check) = self.check {
            // The next check on its own grid, however late this one.
            self.next_check = next_on_grid(self.first, check, now.at);
            if now.at < self.next {
                // Between two reports: one file read, a report only if a flag changed.
                if self.host.throttled() == self.flags {
                    return Vec::new();
                }
                return self.states(now);
            }
        }
        self.next = next_on_grid(self.first, self.interval(), now.at);
        self.states(now)
    }

    async fn stop(self, _: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        (Vec::new(), Ok(()))
    }
}

/// One report read below `root` as the agent reads it, the counters at
/// zero; for the benchmark of a reading's cost (benches/health.rs).
#[doc(hidden)]
pub fn read_once(root: &std::path::Path, broker: Option<Ipv4Addr>) -> String {
    let now = Instant::now();
    let mut health = Health {
        host: Host::new(root),
        config: DiagConfig {
            root: root.to_path_buf(),
            ..DiagConfig::default()
        },
        broker,
        state_dir: "/".into(),
        started: now,
        first: now,
        next: now,
        check: None,
        next_check: now,
        flags: None,
    };
    let at = Now {
        at: now,
        wall: chrono::Utc::now(),
        time_zone: crate::clock::Zone::utc(),
        stats: Default::default(),
    };
    health.report(&at).to_string()
}

/// The first of `first`, `first + step`, `first + 2 step`, ... after `now`.
fn next_on_grid(first: Instant, step: Duration, now: Instant) -> Instant {
    let since = now.saturating_duration_since(first).as_nanos();
    let k = u32::try_from(since / step.as_nanos().max(1) + 1).unwrap_or(u32::MAX);
    first + step.saturating_mul(k)
}

/// The health report's Home Assistant entities, all diagnostic: sensors for
/// what a flaky board needs looked at, and a problem sensor for under-voltage.
pub(crate) fn entities(enabled: bool) -> Vec<Entity> {
    let sensor = |object: &str, name: &str, template: &str, extra: Value| {
        let mut fields = json!({
            "value_template": template,
            "entity_category": "diagnostic",
        });
        if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
            f.extend(e.clone());
        }
        Entity {
            component: "sensor",
            object: object.into(),
            name: name.into(),
            enabled,
            state: Some(state::DIAG.into()),
            fields,
            ..Entity::default()
        }
    };
    let mut all = vec![
        sensor(
            "temperature",
            "CPU temperature",
            "{{ value_json.temperature_c }}",
            json!({ "device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement" }),
        ),
        sensor(
            "load",
            "Load",
            "{{ value_json.load[0] if value_json.load else none }}",
            json!({ "state_class": "measurement", "icon": "mdi:gauge" }),
        ),
        sensor(
            "memory_available",
            "Memory available",
            "{{ value_json.memory_available_kb }}",
            json!({ "device_class": "data_size", "unit_of_measurement": "kB", "state_class": "measurement" }),
        ),
        sensor(
            "disk_free",
            "Disk free",
            "{{ value_json.disk_free_kb }}",
            json!({ "device_class": "data_size", "unit_of_measurement": "kB", "state_class": "measurement" }),
        ),
        sensor(
            "wifi_signal",
            "Wi-Fi signal",
            "{{ value_json.wifi_signal_dbm }}",
            json!({ "device_class": "signal_strength", "unit_of_measurement": "dBm", "state_class": "measurement" }),
        ),
        sensor(
            "wifi_ssid",
            "Wi-Fi network",
            "{{ value_json.wifi_ssid }}",
            json!({ "icon": "mdi:wifi" }),
        ),
        sensor(
            "ip",
            "IP address",
            "{{ value_json.ip }}",
            json!({ "icon": "mdi:ip-network" }),
        ),
    ];
    all.push(Entity {
        component: "binary_sensor",
        object: "under_voltage".into(),
        name: "Under-voltage".into(),
        enabled,
        state: Some(state::DIAG.into()),
        fields: json!({
            "device_class": "problem",
            "entity_category": "diagnostic",
            "value_template": "{{ 'ON' if value_json.under_voltage else 'OFF' }}",
        }),
        ..Entity::default()
    });
    all
}
