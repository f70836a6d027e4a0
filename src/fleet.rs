//! `edge-agent fleet`: every device seen on the broker, from the retained
//! records each agent keeps below its base (`status`, `info`, `diag`).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::mqtt::topic::state;
use crate::mqtt::transport::{one_off, RequestError, TransportOptions};

/// After the marker that follows the retained records, how long to wait for
/// a broker that delivers them late.
const SETTLE: Duration = Duration::from_millis(150);

/// What the fleet view knows of one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Device {
    /// The device id: the level below the prefix.
    pub id: String,
    /// `online` / `offline`, as its status says.
    pub status: Option<String>,
    /// `<base>/info`.
    pub info: Option<Value>,
    /// `<base>/diag`.
    pub diag: Option<Value>,
    /// When the fleet view saw it change (`--watch`).
    pub seen_change: Option<String>,
}

impl Device {
    fn field(record: &Option<Value>, key: &str) -> Value {
        record
            .as_ref()
            .and_then(|r| r.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The newest time the device's records carry (its start, its last
    /// report), or when the watch saw it change.
    fn last_change(&self) -> Value {
        let times = [
            self.seen_change.clone(),
            Self::field(&self.info, "started_at")
                .as_str()
                .map(String::from),
            Self::field(&self.diag, "at").as_str().map(String::from),
        ];
        times
            .into_iter()
            .flatten()
            .filter_map(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .max()
            .map_or(Value::Null, |t| Value::String(rfc3339(&t)))
    }

    /// The device as `fleet --json` prints it.
    pub(crate) fn to_json(&self, prefix: &str) -> Value {
        json!({
            "id": self.id,
            "base": base(prefix, &self.id),
            "status": self.status,
            "version": Self::field(&self.info, "version"),
            "started_at": Self::field(&self.info, "started_at"),
            "ip": Self::field(&self.diag, "ip"),
            "temperature_c": Self::field(&self.diag, "temperature_c"),
            "under_voltage": Self::field(&self.diag, "under_voltage"),
            "last_change": self.last_change(),
        })
    }
}

fn base(prefix: &str, id: &str) -> String {
    if prefix.is_empty() {
        id.to_string()
    } else {
        format!("{prefix}/{id}")
    }
}

/// The devices below one prefix, as their retained records tell.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    prefix: String,
    devices: BTreeMap<String, Device>,
}

impl Fleet {
    /// An empty view of the devices below `prefix` (`edge`).
    pub(crate) fn new(prefix: &str) -> Fleet {
        Fleet {
            prefix: prefix.to_string(),
            devices: BTreeMap::new(),
        }
    }

    /// The filters the records arrive on.
    pub(crate) fn filters(&self) -> Vec<String> {
        [state::STATUS, state::INFO, state::DIAG]
            .iter()
            .map(|t| base(&self.prefix, &format!("+/{t}")))
            .collect()
    }

    /// Takes one record; the id of the device it changed, if it did. An
    /// empty payload (a record cleared) forgets it; a device with no record
    /// left is gone.
    pub(crate) fn take(&mut self, topic: &str, payload: &[u8]) -> Option<String> {
        let rest = if self.prefix.is_empty() {
            topic
        } else {
            topic.strip_prefix(&self.prefix)?.strip_prefix('/')?
        };
        let (id, record) = rest.split_once('/')?;
        if id.is_empty() || !matches!(record, state::STATUS | state::INFO | state::DIAG) {
            return None;
        }
        let device = self
            .devices
            .entry(id.to_string())
            .or_insert_with(|| Device {
                id: id.to_string(),
                ..Device::default()
            });
        let before = device.clone();
        let text = (!payload.is_empty()).then(|| String::from_utf8_lossy(payload).into_owned());
        match record {
            state::STATUS => device.status = text,
            state::INFO => device.info = text.and_then(|t| serde_json::from_str(&t).ok()),
            _ => device.diag = text.and_then(|t| serde_json::from_str(&t).ok()),
        }
        let changed = *device != before;
        if device.status.is_none() && device.info.is_none() && device.diag.is_none() {
            self.devices.remove(id);
        }
        changed.then(|| id.to_string())
    }

    /// Marks a device as changed now (for `--watch`).
    pub(crate) fn saw_change(&mut self, id: &str, at: String) {
        if let Some(d) = self.devices.get_mut(id) {
            d.seen_change = Some(at);
        }
    }

    /// One device.
    pub(crate) fn device(&self, id: &str) -> Option<&Device> {
        self.devices.get(id)
    }

    /// Every device, by id.
    pub(crate) fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// The view as `fleet --json` prints it: an array, by id.
    pub(crate) fn to_json(&self) -> Value {
        Value::Array(self.devices().map(|d| d.to_json(&self.prefix)).collect())
    }

    /// One device's line for `--watch`.
    pub(crate) fn line(&self, id: &str) -> String {
        let Some(d) = self.devices.get(id) else {
            return format!("{id}: gone (its records were cleared)");
        };
        let v = d.to_json(&self.prefix);
        let mut parts = vec![v["status"].as_str().unwrap_or("no status").to_string()];
        if let Some(version) = v["version"].as_str() {
            parts.push(format!("version {version}"));
        }
        if let Some(ip) = v["ip"].as_str() {
            parts.push(ip.to_string());
        }
        if let Some(t) = v["temperature_c"].as_f64() {
            parts.push(format!("{t:.1} °C"));
        }
        if v["under_voltage"] == true {
            parts.push("UNDER-VOLTAGE".into());
        }
        format!("{id}: {}", parts.join(", "))
    }

    /// The view as a table for a person.
    pub(crate) fn table(&self) -> String {
        let mut rows = vec![[
            "ID".to_string(),
            "STATUS".into(),
            "VERSION".into(),
            "IP".into(),
            "TEMP".into(),
            "UNDER-VOLTAGE".into(),
            "LAST CHANGE".into(),
        ]];
        for d in self.devices() {
            let v = d.to_json(&self.prefix);
            let text = |key: &str| match &v[key] {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                Value::Bool(true) => "YES".into(),
                Value::Bool(false) => "no".into(),
                other => other.to_string(),
            };
            let temp = v["temperature_c"]
                .as_f64()
                .map_or("-".to_string(), |t| format!("{t:.1} °C"));
            rows.push([
                d.id.clone(),
                text("status"),
                text("version"),
                text("ip"),
                temp,
                text("under_voltage"),
                text("last_change"),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        let online = self
            .devices()
            .filter(|d| d.status.as_deref() == Some("online"))
            .count();
        out.push_str(&format!(
            "{} devices below {}, {online} online\n",
            self.devices.len(),
            if self.prefix.is_empty() {
                "the top"
            } else {
                &self.prefix
            }
        ));
        out
    }
}

/// A connection that has every retained record below the prefix in `fleet`.
pub(crate) struct Collected {
    /// What was seen.
    pub fleet: Fleet,
    /// The connection, still subscribed (for `--watch`).
    pub client: AsyncClient,
    /// Its event loop.
    pub eventloop: EventLoop,
}

/// Connects, subscribes to the records below `prefix` and takes every
/// retained one: until a marker published after the subscription comes back
/// (a broker sends the retained records before it) and a short settle
/// after it, or `within`.
pub(crate) async fn collect(
    options: &TransportOptions,
    prefix: &str,
    within: Duration,
) -> Result<Collected, RequestError> {
    let deadline = tokio::time::Instant::now() + within;
    let (client, mut eventloop) = one_off(options, "fleet", false, within).await?;
    let mut fleet = Fleet::new(prefix);
    let marker = format!("edge-agent/fleet/{}", std::process::id());
    let mut filters: Vec<Filter> = fleet
        .filters()
        .into_iter()
        .map(|f| Filter::new(f, QoS::AtMostOnce))
        .collect();
    filters.push(Filter::new(marker.clone(), QoS::AtMostOnce));
    let _ = client.try_subscribe_many(filters);
    let broker = format!("{}:{}", options.host, options.port);
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        let until = settle_until.map_or(deadline, |s| s.min(deadline));
        let event = match tokio::time::timeout_at(until, eventloop.poll()).await {
            Ok(e) => e,
            Err(_) => break,
        };
        match event {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = client.try_publish(&marker, QoS::AtMostOnce, false, Bytes::new());
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = String::from_utf8_lossy(&p.topic);
                if topic == marker {
                    settle_until = Some(tokio::time::Instant::now() + SETTLE);
                } else {
                    fleet.take(&topic, &p.payload);
                }
            }
            Ok(_) => {}
            Err(e) => {
                return Err(RequestError::Unreachable {
                    broker,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(Collected {
        fleet,
        client,
        eventloop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_make_devices_and_cleared_ones_go() {
        let mut f = Fleet::new("edge");
        assert_eq!(f.take("edge/a/status", b"online"), Some("a".into()));
        assert_eq!(f.take("edge/a/status", b"online"), None, "no change");
        f.take(
            "edge/a/info",
            br#"{"version":"0.1.0","started_at":"2026-12-02T10:00:00+00:00"}"#,
        );
        f.take(
            "edge/a/diag",
            br#"{"at":"2026-12-02T11:30:00+01:00","ip":"192.168.1.23","temperature_c":81.2,"under_voltage":true}"#,
        );
        f.take("edge/b/status", b"offline");
        assert_eq!(f.take("edge/b/matrix", b"{}"), None, "not a record");
        assert_eq!(f.take("other/c/status", b"online"), None, "another prefix");
        assert_eq!(f.take("edge/status", b"online"), None, "no id");
        let v = f.to_json();
        assert_eq!(v.as_array().map(Vec::len), Some(2));
        assert_eq!(
            v[0],
            json!({
                "id": "a", "base": "edge/a", "status": "online", "version": "0.1.0",
                "started_at": "2026-12-02T10:00:00+00:00", "ip": "192.168.1.23",
                "temperature_c": 81.2, "under_voltage": true,
                // The newer of its start and its last report.
                "last_change": "2026-12-02T11:30:00+01:00",
            })
        );
        assert_eq!(v[1]["status"], "offline");
        assert!(v[1]["version"].is_null() && v[1]["last_change"].is_null());
        let table = f.table();
        assert!(table.contains("2 devices below edge, 1 online"), "{table}");
        assert!(
            table.contains("81.2 °C") && table.contains("YES"),
            "{table}"
        );
        // Cleared records: the device is gone once none is left.
        f.take("edge/b/status", b"");
        assert!(f.device("b").is_none());
        assert_eq!(f.filters(), ["edge/+/status", "edge/+/info", "edge/+/diag"]);
    }
}
