//! Home Assistant MQTT discovery: one retained config per entity under
//! `<discovery_prefix>/<component>/<device_id>/<object_id>/config`, all
//! sharing one device block and `<base>/status` as availability. A part that
//! is disabled gets an empty retained config, which removes its entity.

use serde_json::json;

use std::net::Ipv4Addr;

use crate::config::{Backend, Settings};
use crate::host::Host;
use crate::mqtt::topic::{self, Topics};
use crate::parts::Entity;

/// One discovery config: its topic and payload (empty = remove the entity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// `<prefix>/<component>/<device_id>/<object_id>/config`.
    pub topic: String,
    /// The config JSON, or empty to remove the entity.
    pub payload: String,
}

/// Home Assistant's device block for these settings on `host`: what the
/// host lacks is left out.
pub(crate) fn device(settings: &Settings, host: &Host) -> serde_json::Value {
    let hw_version = if settings.config.hardware.backend == Backend::Sim {
        Some("simulated".to_string())
    } else {
        host.model()
    };
    // The interface that reaches the broker; none for the embedded one.
    let broker = match &settings.broker {
        Some(_) => Some(Ipv4Addr::LOCALHOST),
        None => settings.endpoint.host.parse().ok(),
    };
    let mut device = json!({
        "identifiers": [format!("edge_agent_{}", settings.device_id)],
        "name": settings.device_name,
        "model": "edge-agent",
        "manufacturer": "edge-agent",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let extra = [
        ("hw_version", hw_version.map(|v| json!(v))),
        ("serial_number", host.serial_number().map(|v| json!(v))),
        (
            "connections",
            host.mac_towards(broker).map(|mac| json!([["mac", mac]])),
        ),
        (
            "suggested_area",
            settings.config.device.area.clone().map(|v| json!(v)),
        ),
    ];
    if let Some(m) = device.as_object_mut() {
        for (key, value) in extra {
            if let Some(v) = value {
                m.insert(key.into(), v);
            }
        }
    }
    device
}

/// Every entity's config (or removal) for these settings, with `device` as
/// the device block; `effects` are the matrix's named patterns.
pub(crate) fn announcements(
    settings: &Settings,
    device: &serde_json::Value,
    effects: &[&str],
) -> Vec<Announcement> {
    let c = &settings.config;
    let id = &settings.device_id;
    let topics = Topics::new(settings.base_topic.clone(), c.verbs());
    let prefix = &c.homeassistant.discovery_prefix;
    let origin = json!({ "name": "edge-agent", "sw_version": env!("CARGO_PKG_VERSION") });
    let mut entities: Vec<Entity> = c
        .sections()
        .into_iter()
        .flat_map(|s| s.entities(effects))
        .collect();
    entities.push(started());
    entities.push(identify());
    entities
        .into_iter()
        .map(|e| {
            let topic = format!("{prefix}/{}/{id}/{}/config", e.component, e.object);
            if !e.enabled || !c.homeassistant.enabled {
                return Announcement {
                    topic,
                    payload: String::new(),
                };
            }
            let fields = framed(e, &topics, id, device, &origin);
            Announcement {
                topic,
                payload: fields.to_string(),
            }
        })
        .collect()
}

/// An entity's fields with the topics, QoS, ids, availability, device and
/// origin Home Assistant needs; a device trigger gets its topic, device and
/// origin only.
fn framed(
    e: Entity,
    topics: &Topics,
    id: &str,
    device: &serde_json::Value,
    origin: &serde_json::Value,
) -> serde_json::Value {
    let mut fields = e.fields;
    let Some(m) = fields.as_object_mut() else {
        return fields;
    };
    m.insert("device".into(), device.clone());
    m.insert("origin".into(), origin.clone());
    if e.component == "device_automation" {
        if let Some(state) = &e.state {
            m.insert("topic".into(), json!(topics.at(state)));
        }
        return fields;
    }
    if let Some((verb, led)) = e.command {
        m.insert("command_topic".into(), json!(topics.command(verb, led)));
        // Acknowledged once applied, kept by the broker while the agent is
        // away (the persistent session).
        m.insert("qos".into(), json!(1));
    }
    if let Some(state) = &e.state {
        let key = match e.component {
            "image" => "image_topic",
            _ => "state_topic",
        };
        m.insert(key.into(), json!(topics.at(state)));
        if let Some(template) = e.attributes {
            m.insert("json_attributes_topic".into(), json!(topics.at(state)));
            m.insert("json_attributes_template".into(), json!(template));
        }
    }
    m.insert("name".into(), json!(e.name));
    m.insert(
        "unique_id".into(),
        json!(format!("edge_agent_{id}_{}", e.object)),
    );
    m.insert(
        "availability_topic".into(),
        json!(topics.at(topic::state::STATUS)),
    );
    m.insert("payload_available".into(), json!("online"));
    m.insert("payload_not_available".into(), json!("offline"));
    fields
}

/// The device's identify button: the matrix and the LEDs flash, the
/// buzzer beeps.
fn identify() -> Entity {
    Entity {
        component: "button",
        object: "identify".into(),
        name: "Identify".into(),
        enabled: true,
        command: Some((crate::mqtt::topic::Verb::Identify, "")),
        fields: json!({
            "device_class": "identify",
            "entity_category": "config",
            "payload_press": "PRESS",
        }),
        ..Entity::default()
    }
}

/// The agent's own entity: when it started.
fn started() -> Entity {
    Entity {
        component: "sensor",
        object: "uptime".into(),
        name: "Started".into(),
        enabled: true,
        command: None,
        state: Some(topic::state::INFO.into()),
        fields: json!({
            "value_template": "{{ value_json.started_at }}",
            "device_class": "timestamp",
            "entity_category": "diagnostic",
        }),
        ..Entity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::Value;

    #[test]
    fn every_entity_has_a_unique_id_the_device_and_availability() {
        let s =
            Config::from_toml("[device]\nid = \"kitchen\"\n[buzzer]\nenabled = true\npin = 28\n")
                .unwrap();
        let a = announcements(
            &s,
            &device(&s, &Host::new("/nonexistent")),
            &["smiley", "rows"],
        );
        let mut ids = std::collections::HashSet::new();
        for x in &a {
            assert!(
                x.topic.starts_with("homeassistant/") && x.topic.ends_with("/config"),
                "{}",
                x.topic
            );
            assert!(x.topic.contains("/kitchen/"), "{}", x.topic);
            if x.payload.is_empty() {
                // A removal: the buzzer's switch of earlier versions.
                assert_eq!(x.topic, "homeassistant/switch/kitchen/buzzer/config");
                continue;
            }
            let v: Value = serde_json::from_str(&x.payload).unwrap();
            assert_eq!(v["device"]["identifiers"][0], "edge_agent_kitchen");
            if x.topic.contains("/device_automation/") {
                // A device trigger: its topic and the device, no entity ids.
                assert_eq!(v["topic"], "edge/kitchen/button/event");
                assert_eq!(v["automation_type"], "trigger");
                assert!(v.get("unique_id").is_none(), "{}", x.topic);
                continue;
            }
            assert!(
                ids.insert(v["unique_id"].as_str().unwrap().to_string()),
                "unique ids"
            );
            assert_eq!(v["availability_topic"], "edge/kitchen/status");
            assert_eq!(v["device"]["identifiers"][0], "edge_agent_kitchen");
            if v.get("command_topic").is_some() {
                assert_eq!(v["qos"], 1, "commands at QoS 1: {}", x.topic);
            }
            // Removed from Home Assistant's JSON light in 2025.3.
            assert!(v.get("color_mode").is_none(), "{}", x.topic);
        }
        // Two LEDs, the matrix, the button and its eight triggers, the
        // message, the board's image, the notify entity, the clock switch
        // and sensor, the buzzer (a siren; its old switch removed), the
        // health report's seven sensors and its under-voltage problem, the
        // start time, identify.
        assert_eq!(a.len(), 29);
        let text = a
            .iter()
            .find(|x| x.topic == "homeassistant/text/kitchen/message/config")
            .unwrap();
        let v: Value = serde_json::from_str(&text.payload).unwrap();
        // Empty (the clock) to display.max_message_chars.
        assert_eq!((v["min"].as_u64(), v["max"].as_u64()), (Some(0), Some(255)));
    }

    #[test]
    fn disabled_parts_are_removed() {
        let s = Config::from_toml("[device]\nid = \"k\"\n[matrix]\nenabled = false\n").unwrap();
        let a = announcements(&s, &device(&s, &Host::new("/nonexistent")), &[]);
        let m = a
            .iter()
            .find(|x| x.topic == "homeassistant/light/k/matrix/config")
            .unwrap();
        assert_eq!(m.payload, "");
        let b = a
            .iter()
            .find(|x| x.topic == "homeassistant/siren/k/buzzer/config")
            .unwrap();
        assert_eq!(b.payload, "", "the buzzer is off by default");
    }

    #[test]
    fn the_device_block_has_what_the_host_tells_and_nothing_invented() {
        let pi = crate::host::tree(&[
            ("proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0"),
            ("proc/device-tree/serial-number", "10000000abcdef01\0"),
            (
                "proc/net/route",
                "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                 eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n",
            ),
            ("sys/class/net/eth0/address", "dc:a6:32:00:00:01\n"),
        ]);
        let on_a_pi =
            "[device]\nid = \"k\"\narea = \"Kitchen\"\n[hardware]\nbackend = \"gpiocdev\"\n\
                       [broker]\nenabled = false\n[mqtt]\nurl = \"mqtt://192.168.1.5\"\n";
        let s = Config::from_toml(on_a_pi).unwrap();
        let d = device(&s, &Host::new(pi.path()));
        assert_eq!(d["hw_version"], "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(d["serial_number"], "10000000abcdef01");
        assert_eq!(d["connections"], json!([["mac", "dc:a6:32:00:00:01"]]));
        assert_eq!(d["suggested_area"], "Kitchen");
        // Simulated, on a PC, with the embedded broker: only what is known.
        let s = Config::from_toml("[device]\nid = \"k\"\n").unwrap();
        let d = device(&s, &Host::new(pi.path()));
        assert_eq!(d["hw_version"], "simulated");
        assert!(
            d.get("connections").is_none(),
            "the embedded broker is on loopback"
        );
        assert!(d.get("suggested_area").is_none());
        let d = device(&s, &Host::new("/nonexistent"));
        assert!(d.get("serial_number").is_none());
        for a in announcements(&s, &d, &[]) {
            if let Ok(v) = serde_json::from_str::<Value>(&a.payload) {
                assert_eq!(v["origin"]["name"], "edge-agent", "{}", a.topic);
            }
        }
    }
}
