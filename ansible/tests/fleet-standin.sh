#!/usr/bin/env bash
# A stand-in for `edge-agent fleet --json`, for tests while the agent has no
# `fleet` yet: its array, from the retained <prefix>/+/status and
# <prefix>/+/info as mosquitto_sub reads them in 1 s (id, base, status,
# version, started_at; ip, temperature_c, under_voltage, last_change null).
# Fails, as fleet would, when the broker cannot be reached.
# Usage: fleet-standin.sh HOST PORT [PREFIX]
set -euo pipefail
host=$1 port=$2 prefix=${3:-edge}
rc=0
out=$(mosquitto_sub -h "$host" -p "$port" -i "fleet-standin-$$" -t "$prefix/+/status" -t "$prefix/+/info" \
  -F '%t %p' --retained-only -W 1 2> >(grep -v '^Timed out$' >&2)) || rc=$?
# -W ends it with 27 (a timeout), the normal end here.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 27 ]; then exit "$rc"; fi
PREFIX=$prefix python3 -c '
import json, os, sys
prefix = os.environ["PREFIX"]
boards = {}
for line in sys.stdin.read().splitlines():
    topic, _, payload = line.partition(" ")
    device, _, leaf = topic[len(prefix) + 1:].partition("/")
    b = boards.setdefault(device, {"id": device, "base": prefix + "/" + device, "status": None,
        "version": None, "started_at": None, "ip": None, "temperature_c": None,
        "under_voltage": None, "last_change": None})
    if leaf == "status":
        b["status"] = payload
    elif leaf == "info":
        try:
            info = json.loads(payload)
        except ValueError:
            continue
        b["version"] = info.get("version")
        b["started_at"] = info.get("started_at")
print(json.dumps([boards[k] for k in sorted(boards)]))
' <<<"$out"
