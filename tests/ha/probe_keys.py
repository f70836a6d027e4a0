"""Which discovery keys a Home Assistant version accepts, for planned agent
changes: each candidate config below goes through that version's own MQTT
discovery steps (abbreviations expanded, then the platform's DISCOVERY_SCHEMA,
for device triggers device_trigger.TRIGGER_DISCOVERY_SCHEMA), as in
tests/ha/discovery_check.py. Per config it prints: accepted or REJECTED (the
voluptuous message), the keys the schema dropped without a word
(vol.REMOVE_EXTRA: HA ignores them), and every warning or error logged while
validating (deprecations, removed options). No hass is started.

Run with a venv's Python: target/ha-venv-2025.4/bin/python tests/ha/probe_keys.py
"""

import copy
import json
import logging

import homeassistant.core  # noqa: F401  (import order matters to HA)
import homeassistant.components.persistent_notification  # noqa: F401
from homeassistant.components.mqtt.abbreviations import ABBREVIATIONS, DEVICE_ABBREVIATIONS
from homeassistant.const import __version__ as ha_version
import voluptuous as vol

try:
    from homeassistant.components.mqtt.abbreviations import ORIGIN_ABBREVIATIONS
except ImportError:  # older versions
    ORIGIN_ABBREVIATIONS = {}

BASE = "edge/ha_check"
AVAIL = {"availability_topic": f"{BASE}/status", "payload_available": "online",
         "payload_not_available": "offline"}
DEVICE = {"identifiers": ["edge_agent_ha_check"], "name": "edge-agent HA check", "model": "edge-agent",
          "manufacturer": "edge-agent", "sw_version": "0.1.0"}


def ent(uid, **kw):
    return {"unique_id": f"edge_agent_ha_check_{uid}", "device": copy.deepcopy(DEVICE), **AVAIL, **kw}


LIGHT = dict(schema="json", command_topic=f"{BASE}/led/left/set", state_topic=f"{BASE}/led/left",
             brightness=True, brightness_scale=255, supported_color_modes=["brightness"])

CANDIDATES = [
    ("light json: today's config (color_mode: true)", "light",
     ent("led_left", name="LED left", color_mode=True, **LIGHT)),
    ("light json: without color_mode", "light", ent("led_left", name="LED left", **LIGHT)),
    ("light json: flash/transition as booleans", "light",
     ent("led_left", name="LED left", flash=True, transition=True, **LIGHT)),
    ("light json: flash_time_short/long", "light",
     ent("led_left", name="LED left", flash_time_short=1, flash_time_long=5, **LIGHT)),
    ("light json: qos 1", "light", ent("led_left", name="LED left", qos=1, **LIGHT)),
    ("light json (color_mode: true, as <= 2024.3 need): flash/transition as booleans", "light",
     ent("led_left", name="LED left", color_mode=True, flash=True, transition=True, **LIGHT)),
    ("light json (color_mode: true): flash_time_short/long, qos 1", "light",
     ent("led_left", name="LED left", color_mode=True, flash_time_short=1, flash_time_long=5, qos=1, **LIGHT)),
    ("light json: brightness only, no color_mode, no supported_color_modes", "light",
     ent("led_left", name="LED left", **{k: v for k, v in LIGHT.items() if k != "supported_color_modes"})),
    ("light json: effect, onoff", "light",
     ent("matrix", name="Matrix", schema="json", command_topic=f"{BASE}/matrix/set",
         state_topic=f"{BASE}/matrix", effect=True, effect_list=["smiley", "heart"],
         supported_color_modes=["onoff"])),
    ("origin block: name, sw_version, support_url", "switch",
     ent("buzzer", name="Buzzer", command_topic=f"{BASE}/buzzer/set", state_topic=f"{BASE}/buzzer",
         origin={"name": "edge-agent", "sw_version": "0.1.0", "support_url": "http://127.0.0.1/"})),
    ("origin block abbreviated: o {name, sw, url}", "switch",
     ent("buzzer", name="Buzzer", command_topic=f"{BASE}/buzzer/set", state_topic=f"{BASE}/buzzer",
         o={"name": "edge-agent", "sw": "0.1.0", "url": "http://127.0.0.1/"})),
    ("device block: hw_version, serial_number, connections, suggested_area", "switch",
     {**ent("buzzer", name="Buzzer", command_topic=f"{BASE}/buzzer/set", state_topic=f"{BASE}/buzzer"),
      "device": {**DEVICE, "hw_version": "Pi 4B rev 1.4", "serial_number": "10000000abcdef",
                 "connections": [["mac", "dc:a6:32:00:00:01"]], "suggested_area": "Kitchen"}}),
    ("device block: model_id", "switch",
     {**ent("buzzer", name="Buzzer", command_topic=f"{BASE}/buzzer/set", state_topic=f"{BASE}/buzzer"),
      "device": {**DEVICE, "model_id": "edge-agent-1"}}),
    ("entity_category diagnostic + icon", "sensor",
     ent("uptime", name="Started", state_topic=f"{BASE}/info", value_template="{{ value_json.started_at }}",
         device_class="timestamp", entity_category="diagnostic", icon="mdi:timer-outline")),
    ("entity_category config on a switch", "switch",
     ent("buzzer", name="Buzzer", command_topic=f"{BASE}/buzzer/set", state_topic=f"{BASE}/buzzer",
         entity_category="config")),
    ("entity_category system (not allowed)", "sensor",
     ent("uptime", name="Started", state_topic=f"{BASE}/info", entity_category="system")),
    ("switch: payload_on/off, state_on/off, qos, retain", "switch",
     ent("buzzer", name="Buzzer", command_topic=f"{BASE}/buzzer/set", state_topic=f"{BASE}/buzzer",
         payload_on="ON", payload_off="OFF", state_on="ON", state_off="OFF", qos=1, retain=False,
         device_class="switch")),
    ("button", "button",
     ent("restart", name="Restart clock", command_topic=f"{BASE}/display/clock/set", payload_press="ON",
         qos=1, entity_category="config", device_class="restart")),
    ("notify", "notify",
     ent("notify", name="Message", command_topic=f"{BASE}/display/message/set", qos=1,
         command_template="{{ value }}")),
    ("image: image_topic + content_type", "image",
     ent("display", name="Display", image_topic=f"{BASE}/display/png", content_type="image/png")),
    ("image: image_topic + image_encoding b64", "image",
     ent("display", name="Display", image_topic=f"{BASE}/display/png", content_type="image/png",
         image_encoding="b64")),
    ("image: url_topic + content_type (not allowed)", "image",
     ent("display", name="Display", url_topic=f"{BASE}/display/url", content_type="image/png")),
    ("siren: available_tones, support_duration, support_volume_set", "siren",
     ent("buzzer_siren", name="Buzzer", command_topic=f"{BASE}/buzzer/set", state_topic=f"{BASE}/buzzer",
         available_tones=["beep", "alarm"], support_duration=True, support_volume_set=False,
         payload_on="ON", payload_off="OFF", state_on="ON", state_off="OFF", qos=1,
         command_template='{"beep_ms": {{ duration | default(200) }}}')),
    ("event: event_types, device_class button, qos", "event",
     ent("button", name="Button", state_topic=f"{BASE}/button/event",
         event_types=["press", "double_press", "long_press"], device_class="button", qos=1)),
    ("device_automation trigger: button_short_press button_1", "device_automation",
     {"automation_type": "trigger", "topic": f"{BASE}/button/event", "type": "button_short_press",
      "subtype": "button_1", "payload": "press", "value_template": "{{ value_json.event_type }}",
      "qos": 1, "device": copy.deepcopy(DEVICE)}),
    ("device_automation trigger with availability/unique_id (extra keys)", "device_automation",
     {"automation_type": "trigger", "topic": f"{BASE}/button/event", "type": "button_double_press",
      "subtype": "button_1", "payload": "double_press", "value_template": "{{ value_json.event_type }}",
      "unique_id": "x", **AVAIL, "device": copy.deepcopy(DEVICE)}),
    ("text: today's config", "text",
     ent("message", name="Message", command_topic=f"{BASE}/display/message/set",
         state_topic=f"{BASE}/display", max=255, min=0, mode="text",
         value_template="{{ value_json.text if value_json.text is not none else '' }}")),
]


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(f"{record.levelname} [{record.name}] {record.getMessage()}")


def expand(config):
    config = copy.deepcopy(config)
    for key in list(config):
        config[ABBREVIATIONS.get(key, key)] = config.pop(key)
    if isinstance(config.get("device"), dict):
        d = config["device"]
        for key in list(d):
            d[DEVICE_ABBREVIATIONS.get(key, key)] = d.pop(key)
    if isinstance(config.get("origin"), dict):
        o = config["origin"]
        for key in list(o):
            o[ORIGIN_ABBREVIATIONS.get(key, key)] = o.pop(key)
    return config


def schema_for(component):
    if component == "device_automation":
        from homeassistant.components.mqtt import device_trigger

        return device_trigger.TRIGGER_DISCOVERY_SCHEMA
    module = __import__(f"homeassistant.components.mqtt.{component}", fromlist=["DISCOVERY_SCHEMA"])
    if component == "light":
        return module.validate_mqtt_light_discovery
    return module.DISCOVERY_SCHEMA


def flat(d, prefix=""):
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k in ("device", "origin"):
            out |= flat(v, prefix + k + ".")
    return out


def quiet_frame_helper():
    """cv.template reports a template made without a running hass through
    the frame helper (not set up here): that report is not a finding about
    the config."""
    try:
        from homeassistant.helpers import frame
    except ImportError:
        return
    if hasattr(frame, "report_usage"):
        frame.report_usage = lambda *a, **k: None


def main():
    quiet_frame_helper()
    cap = Capture()
    logging.getLogger().addHandler(cap)
    logging.getLogger().setLevel(logging.WARNING)
    print(f"Home Assistant {ha_version}")
    for title, component, payload in CANDIDATES:
        cap.lines.clear()
        config = expand(payload)
        if component != "device_automation":
            config["platform"] = "mqtt"
        try:
            schema = schema_for(component)
        except (ImportError, AttributeError) as e:
            print(f"- {title}: {component} NOT SUPPORTED ({type(e).__name__}: {e})")
            continue
        try:
            out = schema(copy.deepcopy(config))
        except vol.Invalid as e:
            print(f"- {title}: REJECTED: {e}")
        else:
            given = flat(config) - {"platform"}
            kept = flat(dict(out))
            dropped = sorted(given - kept)
            print(f"- {title}: accepted" + (f"; dropped silently: {', '.join(dropped)}" if dropped else ""))
        for line in cap.lines:
            print(f"    log: {line}")
    from homeassistant.components.mqtt import discovery

    try:
        from homeassistant.components.mqtt import schemas
    except ImportError:
        schemas = None
    comps = sorted(discovery.SUPPORTED_COMPONENTS)
    print(f"supported components: {', '.join(comps)}")
    has = hasattr(schemas, "DEVICE_DISCOVERY_SCHEMA")
    print("device-based discovery (<prefix>/device/<id>/config with 'cmps'):", "yes" if has else "no")

if __name__ == "__main__":
    main()
