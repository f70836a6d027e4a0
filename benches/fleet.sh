#!/usr/bin/env bash
# How long `edge-agent fleet --json` takes, and its peak memory, with 200
# made-up devices (status, info and diag retained each) and a Mosquitto on
# 127.0.0.1. Runs it 10 times and prints every wall time and the median.
# Usage: benches/fleet.sh [PATH/TO/edge-agent]   (default target/release/edge-agent)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/edge-agent}")
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$dir/mosquitto.conf"
mosquitto -c "$dir/mosquitto.conf" 2>/dev/null &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
# The 600 records in one go: mosquitto_pub -l sends a line per message to
# one topic, so each device's three records are three short runs.
for n in $(seq -w 0 199); do
  b="edge/fake-$n"
  echo online | mosquitto_pub -p "$port" -r -q 1 -t "$b/status" -l
  echo '{"version":"0.1.0","started_at":"2026-12-01T08:00:00+00:00"}' | mosquitto_pub -p "$port" -r -q 1 -t "$b/info" -l
  echo '{"at":"2026-12-01T09:00:00+00:00","ip":"10.0.0.1","temperature_c":48.5,"under_voltage":false}' | mosquitto_pub -p "$port" -r -q 1 -t "$b/diag" -l
done
printf '[device]\nid = "bench"\n[broker]\nenabled = false\n[mqtt]\nurl = "mqtt://127.0.0.1:%s"\n' "$port" > "$dir/config.toml"
times=()
for _ in $(seq 10); do
  /usr/bin/time -f '%e %M' -o "$dir/time" "$bin" --config "$dir/config.toml" fleet --json > "$dir/out.json"
  read -r wall rss < "$dir/time"
  count=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$dir/out.json")
  echo "fleet --json: $count devices in $wall s, peak RSS $rss kB"
  times+=("$wall")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print "median of " NR ": " a[int((NR + 1) / 2)] " s" }'
