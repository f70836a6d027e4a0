"""Feeds edge-agent's discovery configs to Home Assistant's own MQTT discovery code.

Input: the JSON lines of `edge-agent config discovery` ({"topic": ..., "payload": ...}).
For each config, the same steps Home Assistant's MQTT integration takes on a
discovery message (homeassistant/components/mqtt/discovery.py, mixins.py):
the topic must match discovery.TOPIC_MATCHER with a supported component; the
payload must be a JSON object; abbreviations are expanded with HA's tables;
then the platform's own DISCOVERY_SCHEMA (for lights, validate_mqtt_light_discovery)
validates it. An empty payload removes an entity and is checked for its topic only.
Exits non-zero on the first config Home Assistant would refuse.
"""

import json
import sys

# Import order matters to Home Assistant (circular imports otherwise).
import homeassistant.core  # noqa: F401
import homeassistant.components.persistent_notification  # noqa: F401
from homeassistant.components.mqtt import discovery
from homeassistant.components.mqtt.abbreviations import ABBREVIATIONS, DEVICE_ABBREVIATIONS
from homeassistant.const import __version__ as ha_version
import voluptuous as vol

PREFIX = "homeassistant"


def schema_for(component):
    module = __import__(f"homeassistant.components.mqtt.{component}", fromlist=["DISCOVERY_SCHEMA"])
    if component == "light":
        return module.validate_mqtt_light_discovery
    return module.DISCOVERY_SCHEMA


def main(path):
    accepted = removed = 0
    unique_ids = set()
    for line in open(path, encoding="utf-8"):
        item = json.loads(line)
        topic, payload = item["topic"], item["payload"]
        trimmed = topic.replace(f"{PREFIX}/", "", 1)
        match = discovery.TOPIC_MATCHER.match(trimmed)
        if not match:
            sys.exit(f"REFUSED {topic}: not a discovery topic Home Assistant accepts")
        component, node_id, object_id = match.groups()
        if component not in discovery.SUPPORTED_COMPONENTS:
            sys.exit(f"REFUSED {topic}: component {component} is not supported")
        if payload is None:
            removed += 1
            print(f"removal  {topic}")
            continue
        if not isinstance(payload, dict):
            sys.exit(f"REFUSED {topic}: payload is not a JSON object")
        config = discovery.MQTTDiscoveryPayload(payload)
        for key in list(config):
            config[ABBREVIATIONS.get(key, key)] = config.pop(key)
        if "device" in config:
            device = config["device"]
            for key in list(device):
                device[DEVICE_ABBREVIATIONS.get(key, key)] = device.pop(key)
        config["platform"] = "mqtt"
        try:
            validated = schema_for(component)(config)
        except vol.Invalid as e:
            sys.exit(f"REFUSED {topic}: {e}")
        uid = validated.get("unique_id")
        if not uid or uid in unique_ids:
            sys.exit(f"REFUSED {topic}: unique_id {uid!r} missing or repeated")
        unique_ids.add(uid)
        accepted += 1
        print(f"accepted {topic} ({component}, unique_id {uid})")
    print(f"Home Assistant {ha_version}: {accepted} configs accepted, {removed} removals, 0 refused")
    if accepted == 0:
        sys.exit("no configs were checked")


if __name__ == "__main__":
    main(sys.argv[1])
