//! Home Assistant MQTT discovery: one retained config per entity under
//! `<discovery_prefix>/<component>/<device_id>/<object_id>/config`, all
//! sharing one device block and `<base>/status` as availability. A part that
//! is disabled gets an empty retained config, which removes its entity.

use serde_json::{json, Value};

use crate::config::Settings;
use crate::parts::button::ButtonEvent;

/// One discovery config: its topic and payload (empty = remove the entity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// `<prefix>/<component>/<device_id>/<object_id>/config`.
    pub topic: String,
    /// The config JSON, or empty to remove the entity.
    pub payload: String,
}

/// The longest text Home Assistant's text entity holds.
pub const HA_TEXT_MAX: usize = 255;

/// Every entity's config (or removal) for these settings; `effects` are the
/// matrix's named patterns.
pub fn announcements(settings: &Settings, effects: &[&str]) -> Vec<Announcement> {
    let c = &settings.config;
    let id = &settings.device_id;
    let base = &settings.base_topic;
    let prefix = &c.homeassistant.discovery_prefix;
    let device = json!({
        "identifiers": [format!("edge_agent_{id}")],
        "name": settings.device_name,
        "model": "edge-agent",
        "manufacturer": "edge-agent",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let entity = |component: &str, object: &str, name: &str, enabled: bool, mut fields: Value| {
        let topic = format!("{prefix}/{component}/{id}/{object}/config");
        if !enabled || !c.homeassistant.enabled {
            return Announcement {
                topic,
                payload: String::new(),
            };
        }
        if let Some(m) = fields.as_object_mut() {
            m.insert("name".into(), json!(name));
            m.insert(
                "unique_id".into(),
                json!(format!("edge_agent_{id}_{object}")),
            );
            m.insert("availability_topic".into(), json!(format!("{base}/status")));
            m.insert("payload_available".into(), json!("online"));
            m.insert("payload_not_available".into(), json!("offline"));
            m.insert("device".into(), device.clone());
        }
        Announcement {
            topic,
            payload: fields.to_string(),
        }
    };
    let led = |name: &str| {
        entity(
            "light",
            &format!("led_{name}"),
            &format!("LED {name}"),
            c.tilt.enabled,
            json!({
                "schema": "json",
                "command_topic": format!("{base}/led/{name}/set"),
                "state_topic": format!("{base}/led/{name}"),
                "brightness": true,
                "brightness_scale": 255,
                // Home Assistant before 2024.4 wants both; later ones ignore color_mode.
                "color_mode": true,
                "supported_color_modes": ["brightness"],
            }),
        )
    };
    vec![
        led("left"),
        led("right"),
        entity(
            "light",
            "matrix",
            "Matrix",
            c.matrix.enabled,
            json!({
                "schema": "json",
                "command_topic": format!("{base}/matrix/set"),
                "state_topic": format!("{base}/matrix"),
                "effect": true,
                "effect_list": effects,
                "color_mode": true,
                "supported_color_modes": ["onoff"],
            }),
        ),
        entity(
            "event",
            "button",
            "Button",
            c.button.enabled,
            json!({
                "state_topic": format!("{base}/button/event"),
                "event_types": ButtonEvent::ALL.iter().map(|e| e.event_type()).collect::<Vec<_>>(),
                "device_class": "button",
            }),
        ),
        entity(
            "text",
            "message",
            "Message",
            c.display.enabled,
            json!({
                "command_topic": format!("{base}/display/message/set"),
                "state_topic": format!("{base}/display"),
                "value_template": "{{ value_json.text if value_json.text is not none else '' }}",
                "min": 0,
                "max": c.display.max_message_chars.min(HA_TEXT_MAX),
                "mode": "text",
            }),
        ),
        entity(
            "sensor",
            "clock",
            "Clock",
            c.display.enabled,
            json!({
                "state_topic": format!("{base}/clock/tick"),
                "value_template": "{{ value_json.time }}",
                "device_class": "timestamp",
            }),
        ),
        entity(
            "sensor",
            "uptime",
            "Started",
            true,
            json!({
                "state_topic": format!("{base}/info"),
                "value_template": "{{ value_json.started_at }}",
                "device_class": "timestamp",
                "entity_category": "diagnostic",
            }),
        ),
        entity(
            "switch",
            "buzzer",
            "Buzzer",
            c.buzzer.enabled,
            json!({
                "command_topic": format!("{base}/buzzer/set"),
                "state_topic": format!("{base}/buzzer"),
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn every_entity_has_a_unique_id_the_device_and_availability() {
        let s =
            Config::from_toml("[device]\nid = \"kitchen\"\n[buzzer]\nenabled = true\npin = 28\n")
                .unwrap();
        let a = announcements(&s, &["smiley", "rows"]);
        let mut ids = std::collections::HashSet::new();
        for x in &a {
            assert!(
                x.topic.starts_with("homeassistant/") && x.topic.ends_with("/config"),
                "{}",
                x.topic
            );
            assert!(x.topic.contains("/kitchen/"), "{}", x.topic);
            let v: Value = serde_json::from_str(&x.payload).unwrap();
            assert!(
                ids.insert(v["unique_id"].as_str().unwrap().to_string()),
                "unique ids"
            );
            assert_eq!(v["availability_topic"], "edge/kitchen/status");
            assert_eq!(v["device"]["identifiers"][0], "edge_agent_kitchen");
        }
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn disabled_parts_are_removed() {
        let s = Config::from_toml("[device]\nid = \"k\"\n[matrix]\nenabled = false\n").unwrap();
        let a = announcements(&s, &[]);
        let m = a
            .iter()
            .find(|x| x.topic == "homeassistant/light/k/matrix/config")
            .unwrap();
        assert_eq!(m.payload, "");
        let b = a
            .iter()
            .find(|x| x.topic == "homeassistant/switch/k/buzzer/config")
            .unwrap();
        assert_eq!(b.payload, "", "the buzzer is off by default");
    }
}
