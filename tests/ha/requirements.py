"""Prints, one a line, the pip requirements of every integration the real
Home Assistant check loads, at the versions their manifests pin.

hass always sets up bootstrap's CORE_INTEGRATIONS and DEFAULT_INTEGRATIONS
(frontend among them), plus what configuration.yaml names (real_ha_check.CONFIG_DOMAINS)
and the MQTT integration with the entity platforms it forwards to. Each brings
its manifest's `dependencies`, transitively (`after_dependencies` are only
ordering, not loading). Installing these up front lets hass run with
--skip-pip: it never installs anything at run time.
Run with the venv's Python, from the repository.
"""

import json
import pathlib
import sys

import homeassistant
from homeassistant import bootstrap

sys.dont_write_bytecode = True  # no __pycache__ in tests/ha
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from real_ha_check import CONFIG_DOMAINS  # noqa: E402

components = pathlib.Path(homeassistant.__file__).parent / "components"


def manifest(domain):
    return json.loads((components / domain / "manifest.json").read_text())


def closure(roots):
    seen, todo = set(), list(roots)
    while todo:
        d = todo.pop()
        if d in seen or not (components / d / "manifest.json").exists():
            continue
        seen.add(d)
        todo.extend(manifest(d).get("dependencies", []))
    return seen


def main():
    try:
        from homeassistant.components.mqtt.const import ENTITY_PLATFORMS
    except ImportError:
        try:  # 2024.1
            from homeassistant.components.mqtt.const import PLATFORMS as ENTITY_PLATFORMS
        except ImportError:  # 2024.6: the components' names
            from homeassistant.components.mqtt.const import SUPPORTED_COMPONENTS as ENTITY_PLATFORMS

    # DEFAULT_INTEGRATIONS: since 2024.x; 2024.1 sets up only what is configured.
    roots = set(bootstrap.CORE_INTEGRATIONS) | set(getattr(bootstrap, "DEFAULT_INTEGRATIONS", ()))
    roots |= set(CONFIG_DOMAINS) | {"mqtt", "device_automation", "tag"}
    roots |= {str(p) for p in ENTITY_PLATFORMS}
    reqs = set()
    for d in sorted(closure(roots)):
        reqs.update(manifest(d).get("requirements", []))
    for r in sorted(reqs):
        print(r)


if __name__ == "__main__":
    main()
