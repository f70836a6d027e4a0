"""edge-agent against a real Home Assistant core (hass, headless).

Per case: a throwaway config dir (a minimal configuration.yaml, an MQTT config
entry, an owner with a long-lived access token, onboarding done), the agent on
simulated hardware with every part enabled (tests/ha/all-parts.toml), then
hass. Through HA's websocket API it checks that every entity the agent
announces (`edge-agent config discovery`) is in the entity registry, under
one device, and available; drives each light, the text, the switch; presses
the simulated button; asks for a re-announce (`homeassistant/status` =
`online`); stops the agent (SIGTERM: unavailable) and starts it again
(available). Last, HA's log must hold no warning or error from the MQTT
integration or naming the agent's device or entities.

Cases: v311 (embedded broker, MQTT 3.1.1 listener), v5 (its MQTT 5 listener,
HA's protocol option 5), mosquitto (/usr/sbin/mosquitto; missing: skipped,
or failed when CI=true), negative (discovery off in the agent's config: the
check must report missing entities). Every process is started in a session
of its own and stopped by its PID (process group) at the end of its case.
Only 127.0.0.1 is used. Run by .ci/ha-check with the venv's Python.
"""

import argparse
import asyncio
import importlib.util
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from datetime import datetime, timedelta, timezone

# Integrations named in configuration.yaml (tests/ha/requirements.py installs
# their requirements too).
CONFIG_DOMAINS = ["http", "api", "websocket_api", "config", "logger", "automation", "device_automation"]

REPO = pathlib.Path(__file__).resolve().parents[2]
ALL_PARTS = REPO / "tests/ha/all-parts.toml"
MOSQUITTO = "/usr/sbin/mosquitto"
PREFIX = "homeassistant"
CASES = ["v311", "v5", "mosquitto", "negative"]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
INTERRUPTED = []


# The driver reads Home Assistant's source rather than importing it: importing
# homeassistant.core (2024.1) makes every blocking call in an event loop raise.
HA_DIR = pathlib.Path(importlib.util.find_spec("homeassistant").submodule_search_locations[0])


def ha_constant(relpath, name, default=None):
    """A module-level constant `NAME = value` of HA's source, as written."""
    m = re.search(rf"^{name}(?:: [^=]+)? = (.+?)(?:\s+#.*)?$", (HA_DIR / relpath).read_text(), re.M)
    if not m:
        if default is None:
            raise KeyError(f"{name} not in {relpath}")
        return default
    return m.group(1).strip()


_modules = {}


def ha_file_module(relpath):
    """A module of HA's without imports of its own (abbreviations.py), loaded
    from its file."""
    if relpath not in _modules:
        spec = importlib.util.spec_from_file_location(f"ha_check_{len(_modules)}", HA_DIR / relpath)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _modules[relpath] = mod
    return _modules[relpath]


def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def write_toml(path, tables):
    out = []
    for name, table in tables.items():
        out.append(f"[{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        out.append("")
    path.write_text("\n".join(out))


# ---------------------------------------------------------------- processes


class Procs:
    """Every process a case starts, each in a session of its own (its PID is
    its process group), stopped by that PID at the end."""

    def __init__(self):
        self.procs = {}

    def start(self, name, argv, logfile, **kw):
        f = open(logfile, "ab")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        self.procs[name] = p
        return p

    def stop(self, name, timeout=15.0):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"   {name} (pid {p.pid}) did not stop in {timeout:.0f}s: SIGKILL")
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        # Children left in its group (the embedded broker): by the same PID.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return p.returncode

    def stop_all(self):
        for name in list(self.procs)[::-1]:
            self.stop(name, timeout=10)


# ---------------------------------------------------------------- MQTT watcher


class Watcher:
    """A paho client on the broker HA uses: the last message of every topic of
    the agent (`edge/<id>/#`) and of the discovery prefix, with counts."""

    def __init__(self, port, v5, device_id):
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.lock = threading.Lock()
        self.last = {}
        self.count = {}
        self.base = f"edge/{device_id}"
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        cid = f"ha-check-{os.getpid()}"
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto)
        else:  # paho-mqtt 1.6 (HA 2024.1)
            self.c = mqtt.Client(client_id=cid, protocol=proto)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect_async("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, reason, props=None):
        client.subscribe([(f"{self.base}/#", 0), (f"{PREFIX}/#", 0)])

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.last[msg.topic] = (msg.payload.decode("utf-8", "replace"), msg.retain, time.monotonic())
            self.count[msg.topic] = self.count.get(msg.topic, 0) + 1

    def get(self, topic):
        with self.lock:
            return self.last.get(topic)

    def counts(self):
        with self.lock:
            return dict(self.count)

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


# ---------------------------------------------------------------- HA config dir


def make_ha_config(confdir, http_port, mqtt_port, protocol):
    storage = confdir / ".storage"
    storage.mkdir(parents=True)
    (confdir / "configuration.yaml").write_text(
        "# Minimal: no default_config (bootstrap still sets up its DEFAULT_INTEGRATIONS).\n"
        "homeassistant:\n"
        "  name: ha-check\n"
        "  latitude: 52.5\n  longitude: 13.4\n  elevation: 30\n"
        "  unit_system: metric\n  time_zone: UTC\n  country: DE\n  currency: EUR\n  language: en\n"
        "http:\n"
        "  server_host: 127.0.0.1\n"
        f"  server_port: {http_port}\n"
        "api:\n"
        "websocket_api:\n"
        "config:\n"
        "device_automation:\n"
        "automation: []\n"
        "logger:\n"
        "  default: info\n"
    )
    now = datetime.now(timezone.utc)
    user_id, token_id = uuid.uuid4().hex, uuid.uuid4().hex
    jwt_key = secrets.token_hex(64)
    expiration = 10 * 365 * 86400

    def store(key, data, version=1, minor=1):
        (storage / key).write_text(json.dumps(
            {"version": version, "minor_version": minor, "key": key, "data": data}, indent=1))

    # homeassistant/auth/auth_store.py (_async_load, _data_to_save)
    store("auth", {
        "users": [{"id": user_id, "group_ids": ["system-admin"], "is_owner": True,
                   "is_active": True, "name": "ha-check", "system_generated": False,
                   "local_only": False}],
        "groups": [{"id": "system-admin", "name": "Administrators"},
                   {"id": "system-users", "name": "Users"},
                   {"id": "system-read-only", "name": "Read Only"}],
        "credentials": [],
        "refresh_tokens": [{
            "id": token_id, "user_id": user_id, "client_id": None, "client_name": "ha-check",
            "client_icon": None, "token_type": "long_lived_access_token",
            "created_at": now.isoformat(), "access_token_expiration": float(expiration),
            "token": secrets.token_hex(64), "jwt_key": jwt_key, "last_used_at": None,
            "last_used_ip": None, "expire_at": None, "credential_id": None, "version": None,
        }],
    })
    # homeassistant/components/onboarding (STORAGE_VERSION 4, STEPS)
    store("onboarding", {"done": ["user", "core_config", "analytics", "integration"]}, version=4)
    # homeassistant/config_entries.py (STORAGE_VERSION 1.5, ConfigEntry.as_dict);
    # components/mqtt: entry 1.2, broker settings in data, discovery in options.
    # Older versions (2024.1) keep discovery in the entry's data, and their
    # store has no minor version: what this venv's HA reads is asked of it.
    store_minor = int(ha_constant("config_entries.py", "STORAGE_VERSION_MINOR", "1"))
    mqtt_minor = int(ha_constant("components/mqtt/const.py", "CONFIG_ENTRY_MINOR_VERSION", "1"))
    data = {"broker": "127.0.0.1", "port": mqtt_port, "protocol": protocol}
    options = {"discovery": True, "discovery_prefix": PREFIX}
    if mqtt_minor < 2:
        data, options = {**data, **options}, {}
    entry = {
        "data": data, "disabled_by": None, "domain": "mqtt",
        "entry_id": uuid.uuid4().hex.upper()[:26], "minor_version": mqtt_minor, "version": 1,
        "options": options, "pref_disable_new_entities": False, "pref_disable_polling": False,
        "source": "user", "title": "127.0.0.1", "unique_id": None,
    }
    if store_minor >= 5:
        entry.update({"created_at": now.isoformat(), "modified_at": now.isoformat(),
                      "discovery_keys": {}, "subentries": []})
    store("core.config_entries", {"entries": [entry]}, minor=store_minor)
    import jwt

    # homeassistant/auth/__init__.py (async_create_access_token)
    return jwt.encode({"iss": token_id, "iat": int(now.timestamp()),
                       "exp": int((now + timedelta(seconds=expiration)).timestamp())},
                      jwt_key, algorithm="HS256")


# ---------------------------------------------------------------- HA websocket


class HA:
    def __init__(self, port, token):
        self.url = f"http://127.0.0.1:{port}"
        self.token = token
        self.ws = None
        self.session = None
        self.next_id = 1
        self.pending = {}
        self.events = []
        self.reader = None

    async def wait_api(self, proc, deadline):
        import aiohttp

        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"})
        while True:
            if proc.poll() is not None:
                raise CheckError(f"hass exited with {proc.returncode} before its API answered")
            try:
                async with self.session.get(f"{self.url}/api/", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        break
                    if r.status == 401:
                        raise CheckError("HA refused the pre-seeded access token (401)")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise CheckError("HA's API did not answer in time")
            await asyncio.sleep(0.5)
        self.ws = await self.session.ws_connect(f"{self.url}/api/websocket")
        msg = await self.ws.receive_json()
        assert msg["type"] == "auth_required", msg
        await self.ws.send_json({"type": "auth", "access_token": self.token})
        msg = await self.ws.receive_json()
        if msg["type"] != "auth_ok":
            raise CheckError(f"websocket auth: {msg}")
        self.reader = asyncio.create_task(self._read())
        await self.call({"type": "subscribe_events", "event_type": "state_changed"})

    async def _read(self):
        async for m in self.ws:
            data = m.json()
            for d in data if isinstance(data, list) else [data]:
                if d.get("type") == "event":
                    self.events.append(d["event"])
                elif d.get("id") in self.pending:
                    self.pending.pop(d["id"]).set_result(d)

    async def call(self, msg, timeout=10):
        i = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send_json({"id": i, **msg})
        res = await asyncio.wait_for(fut, timeout)
        if not res.get("success", True):
            raise CheckError(f"{msg['type']}: {res.get('error')}")
        return res.get("result")

    async def service(self, domain, service, **data):
        return await self.call({"type": "call_service", "domain": domain, "service": service,
                                "service_data": data})

    async def states(self):
        return {s["entity_id"]: s for s in await self.call({"type": "get_states"})}

    async def close(self):
        if self.reader:
            self.reader.cancel()
        if self.ws:
            await self.ws.close()
        if self.session:
            await self.session.close()


class CheckError(Exception):
    pass


# ---------------------------------------------------------------- log scan

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (\w+) \(([^)]*)\) \[([^\]]+)\] ?(.*)$")


def log_entries(path):
    """(level, logger, first line, following lines) of each entry in HA's log."""
    entries = []
    if not path.exists():
        return entries
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m:
            entries.append([m.group(2), m.group(4), line, []])
        elif entries:
            entries[-1][3].append(line)
    return entries


# What HA's MQTT client logs when its broker goes away: expected once the
# check has stopped the agent, and with it the embedded broker.
BROKER_LOSS = ("Error returned from MQTT server: The connection was lost",
               "Disconnected from MQTT server")


def scan_log(path, device_id, names, broker_lost_after=None):
    """Warnings and errors from the MQTT integration or naming the agent:
    (relevant, expected broker-loss lines, other lines). A relevant entry that
    names no entity is followed by the entity HA registered next (discovery
    logs a config's schema warnings just before it registers the entity)."""
    relevant, expected, other = [], [], []
    entries = log_entries(path)
    for i, (level, logger, line, rest) in enumerate(entries):
        if level not in ("WARNING", "ERROR", "CRITICAL"):
            continue
        text = "\n".join([line, *rest])
        if not ("components.mqtt" in logger or "components/mqtt/" in text or "components.mqtt." in text
                or device_id in text
                or any(n in text for n in names)):
            other.append(line)
            continue
        if broker_lost_after and any(b in line for b in BROKER_LOSS) and line[:23] >= broker_lost_after:
            expected.append(line)
            continue
        if "entity" not in text and not any(n in text for n in names):
            for _, lg, nxt, _ in entries[i + 1:i + 6]:
                if lg == "homeassistant.helpers.entity_registry" and "Registered new" in nxt:
                    text += f"\n  -> the next entity HA registered: {nxt.rsplit(' ', 1)[-1]}"
                    break
        relevant.append(text)
    return relevant, expected, other


# ---------------------------------------------------------------- discovery configs


def expand(config):
    """HA's abbreviations (components/mqtt/abbreviations.py) written out."""
    ab = ha_file_module("components/mqtt/abbreviations.py")

    out = {ab.ABBREVIATIONS.get(k, k): v for k, v in config.items()}
    for key, table in (("device", "DEVICE_ABBREVIATIONS"), ("origin", "ORIGIN_ABBREVIATIONS")):
        if isinstance(out.get(key), dict):
            out[key] = {getattr(ab, table, {}).get(k, k): v for k, v in out[key].items()}
    if isinstance(out.get("components"), dict):
        out["components"] = {o: expand(c) for o, c in out["components"].items()}
    return out


def state_value(p):
    """What HA reads from a state payload: the raw payload, or the key of a
    `{{ value_json.KEY }}` value_template."""
    m = re.fullmatch(r"\{\{\s*value_json\.(\w+)\s*\}\}", (p.get("value_template") or "").strip())
    if not m:
        return lambda s: s

    def key(s):
        try:
            return json.loads(s).get(m.group(1))
        except (ValueError, AttributeError):
            return None

    return key


def siren_state(p):
    """What HA's MQTT siren reads as the state of a payload: its
    `state_value_template`'s key, the payload itself when it is state_on or
    state_off, or the `state` of a JSON object (mqtt/siren.py)."""
    m = re.fullmatch(r"\{\{\s*value_json\.(\w+)\s*\}\}", (p.get("state_value_template") or "").strip())
    on, off = p.get("state_on", p.get("payload_on", "ON")), p.get("state_off", p.get("payload_off", "OFF"))

    def state(s):
        if m is None and s in (on, off):
            return s
        try:
            v = json.loads(s)
        except ValueError:
            return None
        return v.get(m.group(1) if m else "state") if isinstance(v, dict) else None

    return state


def split_discovery(topic, payload):
    """(component, config) of each entity in one discovery message: a
    single-component config, or a device config (`<prefix>/device/<id>/config`
    with `components`; shared keys as HA's discovery.py applies them)."""
    parts = topic.split("/")
    if parts[1] != "device":
        return [(parts[1], payload)]
    shared = {k: v for k, v in payload.items() if k != "components"}
    out = []
    for _, comp in (payload.get("components") or {}).items():
        merged = {**{k: v for k, v in shared.items() if k not in ("origin",)}, **comp}
        out.append((comp.get("platform"), merged))
    return out


# ---------------------------------------------------------------- the check


class Case:
    def __init__(self, name, args, discovery_on=True):
        self.name = name
        self.args = args
        self.discovery_on = discovery_on
        self.results = []  # (ok, what, detail, seconds)
        self.procs = Procs()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"ha-check-{name}-"))
        self.t0 = time.monotonic()
        self.agent_stopped_at = None
        self.embedded = True

    def ok(self, what, detail=""):
        self.results.append((True, what, detail))
        log(f"   ok   {what}{': ' + detail if detail else ''}")

    def fail(self, what, detail=""):
        self.results.append((False, what, detail))
        log(f"   FAIL {what}{': ' + detail if detail else ''}")

    async def wait(self, what, pred, timeout, interval=0.2):
        """Polls pred (async or plain) until truthy; returns the value or None."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if asyncio.iscoroutine(v):
                v = await v
            if v:
                return v
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(interval)

    # -- setup

    def agent_config(self, broker):
        tables = tomllib.loads(ALL_PARTS.read_text())
        if broker["embedded"]:
            tables["broker"] = {"enabled": True, "listen": f"127.0.0.1:{broker['v311']}",
                                "listen_v5": f"127.0.0.1:{broker['v5']}"}
        else:
            tables["broker"] = {"enabled": False}
            tables["mqtt"] = {"url": f"mqtt://127.0.0.1:{broker['port']}"}
        tables.setdefault("mqtt", {}).update({"reconnect_min_ms": 100, "reconnect_max_ms": 500})
        tables.setdefault("display", {})["png_path"] = str(self.dir / "display.png")
        tables.setdefault("homeassistant", {})["enabled"] = self.discovery_on
        path = self.dir / "agent.toml"
        write_toml(path, tables)
        return path, tables["device"]["id"]

    def expected_entities(self, agent_config):
        """What the agent announces with discovery on: {unique_id: (component, topic, payload)}."""
        cfg = agent_config
        if not self.discovery_on:  # the configs it would announce with discovery on
            tables = tomllib.loads(agent_config.read_text())
            tables["homeassistant"]["enabled"] = True
            cfg = self.dir / "agent-discovery-on.toml"
            write_toml(cfg, tables)
        out = subprocess.run([self.args.agent, "config", "discovery", "--config", str(cfg)],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        ents, self.triggers, self.problems = {}, [], []
        for line in out.splitlines():
            item = json.loads(line)
            p = item["payload"]
            if not p:
                continue
            if isinstance(p, str):
                p = json.loads(p)
            for component, payload in split_discovery(item["topic"], expand(p)):
                if component == "device_automation":
                    self.triggers.append((item["topic"], payload))
                elif not payload.get("unique_id"):
                    self.problems.append(f"{item['topic']}: {component} without unique_id")
                else:
                    ents[payload["unique_id"]] = (component, item["topic"], payload)
        return ents

    def start_agent(self, cfg):
        return self.procs.start("agent", [self.args.agent, "run", "--config", str(cfg)],
                                self.dir / "agent.log", env={**os.environ, "RUST_LOG": "info"})

    async def run(self, broker_kind):
        ha_proto = "5" if broker_kind == "v5" else "3.1.1"
        if broker_kind == "mosquitto":
            port = free_port()
            conf = self.dir / "mosquitto.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                            f"log_dest file {self.dir / 'mosquitto.log'}\n")
            self.procs.start("mosquitto", [MOSQUITTO, "-c", str(conf)], self.dir / "mosquitto.out")
            broker = {"embedded": False, "port": port}
            self.embedded = False
            ha_port = port
        else:
            broker = {"embedded": True, "v311": free_port(), "v5": free_port()}
            ha_port = broker["v311"] if broker_kind == "v311" else broker["v5"]
        cfg, device_id = self.agent_config(broker)
        base = self.base = f"edge/{device_id}"
        expected = self.expected_entities(cfg)
        log(f"   agent config {cfg}; HA on 127.0.0.1:{ha_port} (MQTT {ha_proto}); "
            f"{len(expected)} entities and {len(self.triggers)} device triggers expected")
        for problem in self.problems:
            self.fail("discovery config", problem)

        t = time.monotonic()
        if broker_kind == "mosquitto":
            await self.wait("mosquitto", lambda: port_open(ha_port), 10)
        self.start_agent(cfg)
        watcher = Watcher(ha_port, ha_proto == "5", device_id)
        try:
            return await self._run(cfg, device_id, base, expected, watcher, ha_port, ha_proto, t)
        finally:
            watcher.close()

    async def _run(self, cfg, device_id, base, expected, watcher, ha_port, ha_proto, t):
        status = await self.wait("agent online", lambda: (watcher.get(f"{base}/status") or ("",))[0] == "online", 20)
        if not status:
            self.fail("agent online", f"no retained {base}/status = online in 20 s (see {self.dir}/agent.log)")
            return
        self.ok("agent online", f"{time.monotonic() - t:.1f}s")

        confdir = self.dir / "ha"
        http_port = free_port()
        token = make_ha_config(confdir, http_port, ha_port, ha_proto)
        t = time.monotonic()
        hass_bin = str(pathlib.Path(sys.executable).parent / "hass")
        proc = self.procs.start("hass", [hass_bin, "-c", str(confdir), "--skip-pip", "--log-no-color"],
                                self.dir / "hass.out")
        ha = HA(http_port, token)
        try:
            await ha.wait_api(proc, time.monotonic() + 90)
            self.ok("hass API up", f"{time.monotonic() - t:.1f}s after start")
            await self.checks(ha, device_id, base, expected, watcher, cfg)
        except CheckError as e:
            self.fail("hass", str(e))
        finally:
            await ha.close()
            t = time.monotonic()
            rc = self.procs.stop("hass", timeout=30)
            log(f"   hass stopped (rc {rc}) in {time.monotonic() - t:.1f}s")
            self.check_log(confdir, device_id, expected)

    async def registry(self, ha):
        ents = await ha.call({"type": "config/entity_registry/list"})
        devs = await ha.call({"type": "config/device_registry/list"})
        return ents, devs

    async def checks(self, ha, device_id, base, expected, watcher, cfg):
        ident = ["mqtt", f"edge_agent_{device_id}"]
        t = time.monotonic()
        found = {}

        async def all_there():
            ents, devs = await self.registry(ha)
            found.clear()
            found.update({e["unique_id"]: e for e in ents if e["platform"] == "mqtt"})
            found["__devices__"] = [d for d in devs if ident in d["identifiers"]]
            return all(u in found for u in expected) and found["__devices__"]

        # Bounded: 30 s, or 5 s after HA's birth message (sent once discovery
        # has been quiet for 5 s: every retained config has been handled).
        timeout = 30

        async def there_or_settled():
            if await all_there():
                return True
            m = watcher.get(f"{PREFIX}/status")
            return m and m[0] == "online" and time.monotonic() - m[2] > 5

        await self.wait("entities", there_or_settled, timeout, interval=0.5)
        if not await all_there():
            missing = sorted(u for u in expected if u not in found)
            self.fail("entities in HA's entity registry",
                      f"missing entities after {time.monotonic() - t:.0f} s: {', '.join(missing) or 'none'}; "
                      f"device {ident}: {'found' if found.get('__devices__') else 'missing'}")
            return
        dev = found["__devices__"][0]
        self.ok("device and entities in the registries",
                f"{time.monotonic() - t:.1f}s; device {dev['name']!r} ({dev['model']}, sw {dev['sw_version']})")
        by_uid = {u: found[u] for u in expected}
        devices = {e["device_id"] for e in by_uid.values()}
        if devices == {dev["id"]} and len(found["__devices__"]) == 1:
            self.ok("one device", f"all {len(by_uid)} entities under device {dev['id']}")
        else:
            self.fail("one device", f"entities on devices {devices}, matching devices {len(found['__devices__'])}")
        wrong = [f"{u} is {e['entity_id']}" for u, e in by_uid.items()
                 if e["entity_id"].split(".")[0] != expected[u][0]]
        if wrong:
            self.fail("entity domains", "; ".join(wrong))
        eid = {u: e["entity_id"] for u, e in by_uid.items()}

        # HA sends its birth message (homeassistant/status = online) once it
        # has started and discovery has been quiet for 5 s (mqtt/client.py,
        # DISCOVERY_COOLDOWN); the agent must announce everything again then.
        t = time.monotonic()
        birth = await self.wait("birth", lambda: (m := watcher.get(f"{PREFIX}/status")) and m[0] == "online" and m, 30)
        if not birth:
            self.fail("HA's birth message", f"no {PREFIX}/status = online from HA in 30 s")
        else:
            topics = self.config_topics(expected)
            again = lambda: all((m := watcher.get(tp)) and m[2] >= birth[2] for tp in topics)
            if await self.wait("re-announce after birth", again, 10):
                self.ok("re-announce on HA's birth message", f"birth after {time.monotonic() - t:.1f}s; "
                        f"{len(topics)} configs again")
            else:
                self.fail("re-announce on HA's birth message", "not all configs published again in 10 s")

        async def available():
            st = await ha.states()
            return [eid[u] for u in expected if st.get(eid[u], {}).get("state") in (None, "unavailable")] or True

        async def all_available():
            return (await available()) is True

        if await self.wait("available", all_available, 15, 0.5):
            self.ok("every entity available", ", ".join(sorted(eid.values())))
        else:
            self.fail("every entity available", f"unavailable: {await available()}")

        # The image last: by then a message has been drawn.
        for uid, (component, topic, p) in sorted(expected.items(), key=lambda x: (x[1][0] == "image", x[0])):
            e = eid[uid]
            try:
                if component == "light":
                    await self.drive_light(ha, watcher, e, p)
                elif component == "text":
                    await self.drive_text(ha, watcher, e, p)
                elif component == "switch":
                    await self.drive_switch(ha, watcher, e, p)
                elif component == "event":
                    await self.drive_event(ha, watcher, e, p, base)
                elif component == "siren":
                    await self.drive_siren(ha, watcher, e, p)
                elif component == "notify":
                    await self.drive_notify(ha, watcher, e, p)
                elif component == "button":
                    await self.drive_button(ha, watcher, e, p)
                elif component == "image":
                    await self.drive_image(ha, watcher, e, p)
                elif component == "sensor":
                    st = (await ha.states()).get(e, {})
                    self.ok(f"{e} state", repr(st.get("state")))
            except CheckError as x:
                self.fail(f"{e}", str(x))

        if self.triggers:
            await self.device_triggers(ha, watcher, dev["id"], base)
        await self.reannounce(watcher, expected)
        await self.restart(ha, watcher, base, eid, expected, cfg)

    async def both(self, ha, watcher, what, topic, agent_pred, e, ha_pred, timeout=10):
        got = await self.wait(what, lambda: (m := watcher.get(topic)) and agent_pred(m[0]) and m, timeout)
        if not got:
            raise CheckError(f"{what}: {topic} is {watcher.get(topic)!r}")
        st = {}

        async def ha_ok():
            st.update((await ha.states()).get(e, {}))
            return ha_pred(st)

        if not await self.wait(what, ha_ok, timeout, 0.3):
            raise CheckError(f"{what}: agent state {got[0]} but HA shows {st.get('state')!r} {st.get('attributes')}")
        self.ok(what, f"{topic} = {got[0]}; HA {st['state']}")

    async def drive_light(self, ha, watcher, e, p):
        topic = p.get("state_topic") or p.get("stat_t")
        js = lambda s: json.loads(s) if s.startswith("{") else {}
        if p.get("brightness"):
            await ha.service("light", "turn_on", entity_id=e, brightness=77)
            await self.both(ha, watcher, f"{e} on with brightness 77", topic,
                            lambda s: js(s).get("state") == "ON" and js(s).get("brightness") == 77, e,
                            lambda st: st.get("state") == "on" and st["attributes"].get("brightness") == 77)
        effects = p.get("effect_list") or []
        if p.get("effect") and effects:
            fx = "smiley" if "smiley" in effects else next(x for x in effects if x != "off")
            await ha.service("light", "turn_on", entity_id=e, effect=fx)
            await self.both(ha, watcher, f"{e} effect {fx}", topic,
                            lambda s: js(s).get("state") == "ON" and js(s).get("effect") == fx, e,
                            lambda st: st.get("state") == "on" and st["attributes"].get("effect") == fx)
        if not p.get("brightness") and not (p.get("effect") and effects):
            await ha.service("light", "turn_on", entity_id=e)
            await self.both(ha, watcher, f"{e} on", topic, lambda s: js(s).get("state") == "ON", e,
                            lambda st: st.get("state") == "on")
        await self.flash_transition(ha, watcher, e, p, topic, js)
        await ha.service("light", "turn_off", entity_id=e)
        await self.both(ha, watcher, f"{e} off", topic, lambda s: js(s).get("state") == "OFF", e,
                        lambda st: st.get("state") == "off")

    async def flash_transition(self, ha, watcher, e, p, topic, js):
        """What HA offers, it sends: a JSON light always advertises flash and
        transition (LightEntityFeature 8, 32), and sends `"flash": seconds`
        (flash_time_short/long) and `"transition": seconds`. The agent must
        take both without an error on <base>/error."""
        feats = (await ha.states()).get(e, {}).get("attributes", {}).get("supported_features", 0)
        err = f"{self.base}/error"
        for feature, bit, data in (("transition", 32, {"transition": 0.5}), ("flash", 8, {"flash": "short"})):
            if not feats & bit:
                continue
            n = watcher.counts().get(err, 0)
            await ha.service("light", "turn_on", entity_id=e, **data)
            refused = await self.wait(feature, lambda: watcher.counts().get(err, 0) > n
                                      and p["command_topic"] in watcher.get(err)[0], 2)
            if refused:
                self.fail(f"{e} turn_on with {feature} (HA offers it)", f"the agent refused: {watcher.get(err)[0]}")
            else:
                self.ok(f"{e} turn_on with {feature} (HA offers it)",
                        f"no error on {err}; {topic} = {(watcher.get(topic) or ('?',))[0]}")

    async def drive_text(self, ha, watcher, e, p):
        text = f"hello from HA {int(time.time()) % 10000}"
        await ha.service("text", "set_value", entity_id=e, value=text)
        await self.both(ha, watcher, f"{e} set to {text!r}", p.get("state_topic"),
                        lambda s: text in s, e, lambda st: st.get("state") == text)

    async def drive_switch(self, ha, watcher, e, p, domain="switch"):
        on, off = p.get("state_on", p.get("payload_on", "ON")), p.get("state_off", p.get("payload_off", "OFF"))
        value = state_value(p)
        for svc, payload, hs in (("turn_on", on, "on"), ("turn_off", off, "off")):
            await ha.service(domain, svc, entity_id=e)
            await self.both(ha, watcher, f"{e} {svc}", p.get("state_topic"), lambda s: value(s) == payload, e,
                            lambda st: st.get("state") == hs)

    async def drive_siren(self, ha, watcher, e, p):
        """The agent's state is the siren's JSON, `{"state": "ON", "tone":
        ..., "duration": s}`, which HA reads as it is: the state, and the
        tone and duration as attributes (a key HA does not know would be a
        warning in its log)."""
        topic = p.get("state_topic")
        on, off = p.get("state_on", p.get("payload_on", "ON")), p.get("state_off", p.get("payload_off", "OFF"))
        value = siren_state(p)
        for svc, payload, hs in (("turn_on", on, "on"), ("turn_off", off, "off")):
            await ha.service("siren", svc, entity_id=e)
            await self.both(ha, watcher, f"{e} {svc}", topic, lambda s: value(s) == payload, e,
                            lambda st: st.get("state") == hs)
        if p.get("support_duration", True):
            await ha.service("siren", "turn_on", entity_id=e, duration=1)
            await self.both(ha, watcher, f"{e} turn_on for 1 s", topic, lambda s: value(s) == on, e,
                            lambda st: st.get("state") == "on")
            await self.both(ha, watcher, f"{e} off by itself after 1 s", topic,
                            lambda s: value(s) == off, e, lambda st: st.get("state") == "off", timeout=5)
        tones = p.get("available_tones") or []
        if tones:
            tone = "doorbell" if "doorbell" in tones else tones[0]
            js = lambda s: json.loads(s) if s.startswith("{") else {}
            await ha.service("siren", "turn_on", entity_id=e, tone=tone)
            await self.both(ha, watcher, f"{e} turn_on with tone {tone}", topic,
                            lambda s: value(s) == on and js(s).get("tone") == tone, e,
                            lambda st: st.get("state") == "on" and st["attributes"].get("tone") == tone)
            await self.both(ha, watcher, f"{e} off by itself after the {tone} tune", topic,
                            lambda s: value(s) == off, e, lambda st: st.get("state") == "off", timeout=10)
            await ha.service("siren", "turn_on", entity_id=e, tone=tone, duration=3)
            await self.both(ha, watcher, f"{e} turn_on with tone {tone} for 3 s", topic,
                            lambda s: value(s) == on and js(s).get("duration") == 3, e,
                            lambda st: st.get("state") == "on" and st["attributes"].get("duration") == 3)
            await ha.service("siren", "turn_off", entity_id=e)
            await self.both(ha, watcher, f"{e} turn_off ends the tune", topic, lambda s: value(s) == off, e,
                            lambda st: st.get("state") == "off")

    async def drive_notify(self, ha, watcher, e, p):
        text = f"notified by HA {int(time.time()) % 10000}"
        n = watcher.counts().get(f"{self.base}/error", 0)
        await ha.service("notify", "send_message", entity_id=e, message=text)
        # What a notify's command topic shows is the agent's: the board's
        # state topic, when the command is the board's.
        shown = await self.wait("notify", lambda: text in (watcher.get(f"{self.base}/display") or ("",))[0], 10)
        if shown:
            self.ok(f"{e} send_message", f"{self.base}/display shows {text!r}")
        else:
            err = watcher.get(f"{self.base}/error") if watcher.counts().get(f"{self.base}/error", 0) > n else None
            raise CheckError(f"send_message: {self.base}/display is {watcher.get(f'{self.base}/display')!r}; error {err!r}")

    async def drive_button(self, ha, watcher, e, p):
        err = f"{self.base}/error"
        n = watcher.counts().get(err, 0)
        before = (await ha.states()).get(e, {}).get("state")
        await ha.service("button", "press", entity_id=e)
        refused = await self.wait("button", lambda: watcher.counts().get(err, 0) > n
                                  and p["command_topic"] in watcher.get(err)[0], 2)
        st = (await ha.states()).get(e, {}).get("state")
        if refused:
            raise CheckError(f"press: the agent refused: {watcher.get(err)[0]}")
        self.ok(f"{e} press", f"no error on {err}; HA state {before} -> {st}")

    async def drive_image(self, ha, watcher, e, p):
        st = (await ha.states()).get(e, {})
        token = st.get("attributes", {}).get("access_token")
        url = f"{ha.url}/api/image_proxy/{e}" + (f"?token={token}" if token else "")
        async with ha.session.get(url) as r:
            body = await r.read()
            ctype = r.headers.get("Content-Type", "")
        want = p.get("content_type", "image/jpeg")
        magic = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8"}.get(want, b"")
        if r.status == 200 and body.startswith(magic) and ctype.startswith(want):
            self.ok(f"{e} image", f"{len(body)} bytes of {ctype} through HA's image proxy (state {st.get('state')})")
        else:
            raise CheckError(f"image proxy: HTTP {r.status}, {ctype!r}, {len(body)} bytes starting {body[:8]!r}")

    async def drive_event(self, ha, watcher, e, p, base):
        before = (await ha.states()).get(e, {}).get("state")
        n = len(ha.events)
        watcher.publish(f"{base}/sim/button/press", b"")

        def changed():
            for ev in ha.events[n:]:
                d = ev.get("data", {})
                if d.get("entity_id") == e and (d.get("new_state") or {}).get("state") != before:
                    return d["new_state"]
            return None

        ns = await self.wait("event", changed, 10)
        if ns and ns["attributes"].get("event_type") == "press":
            self.ok(f"{e} on a simulated press", f"state {ns['state']}, event_type press")
        else:
            raise CheckError(f"simulated press: HA state change {ns!r}; agent's last event "
                             f"{watcher.get(p.get('state_topic'))!r}")

    async def device_triggers(self, ha, watcher, device_id, base):
        """Each announced device trigger is listed for the device; the ones
        on the button's event topic with payload `press` fire (through
        websocket subscribe_trigger, as an automation would) on a simulated
        press."""
        listed = await ha.call({"type": "device_automation/trigger/list", "device_id": device_id})
        have = {(t.get("type"), t.get("subtype")) for t in listed if t.get("domain") == "mqtt"}
        for topic, p in self.triggers:
            key = (p.get("type"), p.get("subtype"))
            if key in have:
                self.ok(f"device trigger {key[0]}/{key[1]} listed", topic)
            else:
                self.fail(f"device trigger {key[0]}/{key[1]} listed", f"{topic}; HA lists {sorted(have)}")
        press = [p for _, p in self.triggers if p.get("payload") == "press"
                 and p.get("topic", "").endswith("/button/event")]
        for p in press:
            sub = await ha.call({"type": "subscribe_trigger", "trigger": {
                "platform": "device", "domain": "mqtt", "device_id": device_id,
                "type": p["type"], "subtype": p["subtype"]}})
            del sub
            n = len(ha.events)
            watcher.publish(f"{base}/sim/button/press", b"")
            fired = await self.wait("trigger", lambda: any("variables" in e for e in ha.events[n:]), 10)
            (self.ok if fired else self.fail)(f"device trigger {p['type']}/{p['subtype']} fires on a press",
                                              "" if fired else "no trigger event in 10 s")

    def config_topics(self, expected):
        return sorted({t for (_, t, _) in expected.values()} | {t for t, _ in self.triggers})

    async def reannounce(self, watcher, expected):
        topics = self.config_topics(expected)
        before = watcher.counts()
        watcher.publish(f"{PREFIX}/status", "online")
        again = lambda: all(watcher.counts().get(t, 0) > before.get(t, 0) for t in topics)
        if await self.wait("reannounce", again, 10):
            self.ok("re-announce on homeassistant/status = online", f"{len(topics)} configs again")
        else:
            c = watcher.counts()
            self.fail("re-announce on homeassistant/status = online",
                      "not again: " + ", ".join(t for t in topics if c.get(t, 0) <= before.get(t, 0)))

    async def restart(self, ha, watcher, base, eid, expected, cfg):
        ids = [eid[u] for u in expected]

        async def states_are(pred):
            st = await ha.states()
            return all(pred(st.get(i, {}).get("state")) for i in ids)

        t = time.monotonic()
        self.agent_stopped_at = datetime.now()
        rc = self.procs.stop("agent", timeout=10)
        if rc == 0:
            self.ok("agent stopped by SIGTERM", f"exit 0 in {time.monotonic() - t:.1f}s")
            if not self.embedded:  # the watcher's broker outlives the agent
                st = await self.wait("offline", lambda: (m := watcher.get(f"{base}/status")) and m[0] == "offline", 5)
                (self.ok if st else self.fail)(f"{base}/status = offline after SIGTERM",
                                               "" if st else f"it is {watcher.get(f'{base}/status')!r}")
        else:
            self.fail("agent stopped by SIGTERM", f"exit code {rc}")
        t = time.monotonic()
        if await self.wait("unavailable", lambda: states_are(lambda s: s == "unavailable"), 20, 0.3):
            self.ok("every entity unavailable after SIGTERM", f"{time.monotonic() - t:.1f}s")
        else:
            st = await ha.states()
            self.fail("every entity unavailable after SIGTERM",
                      ", ".join(f"{i}={st.get(i, {}).get('state')}" for i in ids if st.get(i, {}).get("state") != "unavailable"))
        t = time.monotonic()
        self.start_agent(cfg)
        if await self.wait("available", lambda: states_are(lambda s: s not in (None, "unavailable")), 25, 0.5):
            self.ok("every entity available after a restart", f"{time.monotonic() - t:.1f}s")
        else:
            st = await ha.states()
            self.fail("every entity available after a restart",
                      ", ".join(f"{i}={st.get(i, {}).get('state')}" for i in ids if st.get(i, {}).get("state") in (None, "unavailable")))

    def check_log(self, confdir, device_id, expected):
        names = [p.get("name", "") for (_, _, p) in expected.values() if p.get("name")]
        names += [u for u in expected] + [f"edge/{device_id}/"]
        lost = None
        if self.embedded and self.agent_stopped_at:
            lost = self.agent_stopped_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
        relevant, lost_lines, other = scan_log(confdir / "home-assistant.log", device_id,
                                               [n for n in names if len(n) > 3], lost)
        for line in lost_lines:
            log(f"   (expected: the embedded broker stopped with the agent) {line}")
        for text in relevant:
            log("   HA LOG " + text.replace("\n", "\n          "))
        if relevant:
            where = confdir / "home-assistant.log" if self.args.keep else "HA_CHECK_KEEP=1 keeps the log"
            self.fail("HA log", f"{len(relevant)} warnings/errors from mqtt or naming the agent ({where})")
        else:
            self.ok("HA log", "no warning or error from mqtt or naming the agent")
        if other:
            log(f"   ({len(other)} other warnings/errors in HA's log, not the agent's:)")
            for line in other[:15]:
                log(f"     {line[:240]}")

    def summary(self):
        passed = sum(1 for r in self.results if r[0])
        failed = len(self.results) - passed
        return passed, failed, self.t1 - self.t0


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def run_case(name, args):
    log(f"== case {name}")
    if name == "negative":
        case = Case(name, args, discovery_on=False)
        kind = "v311"
    else:
        case = Case(name, args, discovery_on=not args.discovery_off)
        kind = name
    if kind == "mosquitto" and not os.access(MOSQUITTO, os.X_OK):
        if os.environ.get("CI") == "true":
            case.fail("mosquitto", f"{MOSQUITTO} is missing (CI=true: a failure, not a skip)")
            case.t1 = time.monotonic()
            return case
        else:
            log(f"   SKIP: {MOSQUITTO} is missing")
        case.t1 = time.monotonic()
        return case
    # SIGTERM, SIGINT, SIGHUP: the case is cancelled, and its processes are
    # stopped below like at any end.
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    for s in STOP_SIGNALS:
        loop.add_signal_handler(s, lambda s=s: (INTERRUPTED.append(s), me.cancel()))
    try:
        await asyncio.wait_for(case.run(kind), args.timeout)
    except asyncio.TimeoutError:
        case.fail("case time", f"not done in {args.timeout} s")
    except asyncio.CancelledError:
        case.fail("case", f"interrupted by signal {INTERRUPTED[-1] if INTERRUPTED else '?'}")
    except Exception as e:  # noqa: BLE001 - reported as a failure of the case
        case.fail("case", f"{type(e).__name__}: {e}")
    finally:
        case.procs.stop_all()
        case.t1 = time.monotonic()
        if not args.keep:
            shutil.rmtree(case.dir, ignore_errors=True)
        else:
            log(f"   kept {case.dir}")
    return case


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=CASES, help=f"of {CASES}")
    ap.add_argument("--agent", default=str(REPO / "target/debug/edge-agent"))
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("HA_CHECK_TIMEOUT", 120)))
    ap.add_argument("--keep", action="store_true", default=os.environ.get("HA_CHECK_KEEP") == "1")
    ap.add_argument("--discovery-off", action="store_true",
                    help="run the agent with [homeassistant] enabled = false in every case (must fail)")
    args = ap.parse_args()
    for c in args.cases:
        if c not in CASES:
            ap.error(f"unknown case {c}")

    ha_version = ha_constant("const.py", "MAJOR_VERSION") + "." + ha_constant("const.py", "MINOR_VERSION") + \
        "." + ha_constant("const.py", "PATCH_VERSION").strip('"')

    log(f"== Home Assistant {ha_version}, agent {args.agent}")
    done = []
    exit_code = 0
    for name in args.cases:
        case = asyncio.run(run_case(name, args))
        done.append(case)
        if INTERRUPTED:
            log(f"== interrupted by signal {INTERRUPTED[-1]}: the cases after {name} did not run")
            exit_code = 128 + INTERRUPTED[-1]
            break
    log("== summary")
    tp = tf = 0
    for case in done:
        p, f, secs = case.summary()
        if case.name == "negative":
            missing = any(not ok and "missing entities" in d for ok, _, d in case.results)
            verdict = "ok (the check failed as it must: missing entities)" if missing else \
                "FAIL (discovery off, yet the check did not report missing entities)"
            log(f"   {case.name:10} {verdict} ({secs:.0f} s)")
            if missing:
                tp += 1
            else:
                tf += 1
                exit_code = exit_code or 1
            continue
        log(f"   {case.name:10} {p} passed, {f} failed ({secs:.0f} s)")
        for ok, what, detail in case.results:
            if not ok:
                log(f"     FAIL {what}: {detail[:300]}")
        tp, tf = tp + p, tf + f
        if f or not case.results:
            exit_code = exit_code or 1
    log(f"{tp} passed, {tf} failed")
    sys.exit(exit_code or (1 if tf else 0))


if __name__ == "__main__":
    main()
