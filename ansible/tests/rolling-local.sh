#!/usr/bin/env bash
# A rolling deploy over three local hosts whose agents really run: site.yml
# with `connection: local`, each host its own root folder and device id, on
# simulated hardware, all on one Mosquitto on 127.0.0.1 (a free port), the
# service restarted by restart-local.sh (edge_agent_restart_command).
#
#  1. release A on all three, a host at a time: each online with the version;
#  2. release B, but roll-2's B dies at start: roll-1 gets B and is online in
#     a new run (a new started_at, a new process), the play fails at roll-2
#     with the role's message, and roll-3 is not touched (its binary, its
#     config, the same agent process and started_at);
#  3. release B with a good roll-2: roll-1 is left as it is (nothing
#     changed: no restart), roll-2 and roll-3 are online in new runs.
#
# A and B are the same build, marked by a trailing byte (the version the
# agent reports is compiled in, so both say the same): a new run is told from
# the old one by its started_at, which the role compares with the one seen
# before the restart.
#
# The role waits with its default command, the installed binary's
# `edge-agent fleet --json` on the host's own config. Every wait is bounded;
# the EXIT trap ends every process started, by PID.
# Usage: ansible/tests/rolling-local.sh PATH/TO/edge-agent  (ansible-playbook, mosquitto on PATH)
set -euo pipefail
binary=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
root=$(mktemp -d)
mosquitto_pid=
cleanup() {
  set +e
  local pids pid
  pids=$(cat "$root/pids" 2>/dev/null)
  for pid in $pids $mosquitto_pid; do kill "$pid" 2>/dev/null; done
  for pid in $pids $mosquitto_pid; do
    for _ in $(seq 50); do
      [ -e "/proc/$pid" ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ] || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
  done
  rm -rf "$root"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in mosquitto mosquitto_sub; do
  command -v "$tool" >/dev/null || fail "$tool is missing (Debian: mosquitto, mosquitto-clients)"
done
hosts=(roll-1 roll-2 roll-3)
version=$("$binary" --version | awk '{ print $2 }')
triple=$(case "$(uname -m)" in
  x86_64) echo x86_64-unknown-linux-musl ;;
  aarch64) echo aarch64-unknown-linux-musl ;;
  armv7l) echo armv7-unknown-linux-musleabihf ;;
  *) echo "no release triple for $(uname -m)" >&2; exit 1 ;;
esac)

# The releases: A, B (the binary, marked), and a B that dies at start.
for r in A B; do
  mkdir -p "$root/dist-$r"
  cp "$binary" "$root/dist-$r/edge-agent-$triple"
  printf '%s' "$r" >>"$root/dist-$r/edge-agent-$triple"
done
mkdir -p "$root/dist-broken"
cat >"$root/dist-broken/edge-agent-$triple" <<BROKEN
#!/bin/sh
# A release that dies at start; everything else is the real binary.
if [ "\$1" = run ]; then echo "edge-agent (test): this release dies at start" >&2; exit 1; fi
exec "$root/dist-B/edge-agent-$triple" "\$@"
BROKEN
chmod +x "$root/dist-broken/edge-agent-$triple"

# The broker.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$root/mosquitto.conf"
mosquitto -c "$root/mosquitto.conf" >"$root/mosquitto.log" 2>&1 &
mosquitto_pid=$!
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$mosquitto_pid" 2>/dev/null || { cat "$root/mosquitto.log"; fail "mosquitto did not start"; }
  sleep 0.1
done
echo "== mosquitto on 127.0.0.1:$port"

# inventory RELEASE-OF-roll-1 RELEASE-OF-roll-2 RELEASE-OF-roll-3
inventory() {
  {
    printf 'boards:\n  vars:\n'
    printf '    %s\n' \
      'ansible_connection: local' \
      'ansible_python_interpreter: "{{ ansible_playbook_python }}"' \
      'ansible_become: false' \
      'edge_agent_manage_service: false' \
      "edge_agent_mqtt_url: mqtt://127.0.0.1:$port" \
      'edge_agent_hardware_backend: sim' \
      'edge_agent_display_backend: sim' \
      'edge_agent_homeassistant: false' \
      'edge_agent_wait_online_timeout: 10' \
      'edge_agent_wait_online_delay: 1'
    printf '  hosts:\n'
    local i=0 release
    for release in "$@"; do
      local h=${hosts[$i]}
      i=$((i + 1))
      printf '    %s:\n' "$h"
      printf '      %s\n' \
        "edge_agent_root: $root/$h" \
        "edge_agent_artifact_dir: $root/dist-$release" \
        "edge_agent_restart_command: $here/restart-local.sh $root/$h $root/pids"
    done
  } >"$root/inventory.yml"
}
play() {
  ANSIBLE_CONFIG=ansible.cfg ansible-playbook site.yml -i "$root/inventory.yml" "$@"
}
retained() { # HOST LEAF: the retained payload, "" if none within 2 s
  mosquitto_sub -h 127.0.0.1 -p "$port" -t "edge/$1/$2" -C 1 -W 2 2>/dev/null || true
}
started_at() { retained "$1" info | python3 -c 'import json, sys; print(json.load(sys.stdin)["started_at"])' 2>/dev/null || true; }
pid_of() { cat "$root/$1/run/edge-agent.pid"; }
alive() { [ -e "/proc/$1" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
config_sum() { sha256sum <"$root/$1/etc/edge-agent/config.toml"; }
# online HOST: online, with the version, its recorded agent process alive
online() {
  local h=$1
  [ "$(retained "$h" status)" = online ] || fail "$h is not online: $(retained "$h" status)"
  retained "$h" info | grep -q "\"version\":\"$version\"" || fail "$h's info is not version $version: $(retained "$h" info)"
  alive "$(pid_of "$h")" || fail "$h's agent process $(pid_of "$h") is not running"
}
runs() { # HOST RELEASE: the installed binary is that release
  cmp -s "$root/$1/usr/local/bin/edge-agent" "$root/dist-$2/edge-agent-$triple" || fail "$1 does not have release $2"
}
declare -A pid_before started_before config_before
remember() {
  local h
  for h in "${hosts[@]}"; do
    pid_before[$h]=$(pid_of "$h")
    started_before[$h]=$(started_at "$h")
    config_before[$h]=$(config_sum "$h")
  done
}
restarted() { # HOST: a new agent process and a new started_at since remember
  local h=$1
  [ "$(pid_of "$h")" != "${pid_before[$h]}" ] || fail "$h's agent was not restarted (same process ${pid_before[$h]})"
  ! alive "${pid_before[$h]}" || fail "$h's old agent ${pid_before[$h]} still runs"
  [ "$(started_at "$h")" != "${started_before[$h]}" ] || fail "$h's started_at is still ${started_before[$h]}"
}
untouched() { # HOST RELEASE: same release, config, process and started_at as at remember
  local h=$1
  runs "$h" "$2"
  [ "$(config_sum "$h")" = "${config_before[$h]}" ] || fail "$h's config changed"
  [ "$(pid_of "$h")" = "${pid_before[$h]}" ] || fail "$h's agent was restarted"
  alive "${pid_before[$h]}" || fail "$h's agent ${pid_before[$h]} no longer runs"
  [ "$(started_at "$h")" = "${started_before[$h]}" ] || fail "$h's started_at changed: ${started_before[$h]} -> $(started_at "$h")"
}
# order LOG: the hosts in the order the play's tasks ran on them
order() { sed -n 's/^\(ok\|changed\|fatal\): \[\(roll-[0-9]\)\].*/\2/p' "$1" | uniq | tr '\n' ' '; }

t0=$SECONDS
echo "== 1. release A, a host at a time"
inventory A A A
play >"$root/1.log" 2>&1 || { cat "$root/1.log"; fail "the first deploy failed"; }
for h in "${hosts[@]}"; do runs "$h" A; online "$h"; done
[ "$(order "$root/1.log")" = "roll-1 roll-2 roll-3 " ] || { cat "$root/1.log"; fail "not a host at a time, in order: $(order "$root/1.log")"; }
echo "all three online with $version, one batch each, in order ($((SECONDS - t0)) s)"
for h in "${hosts[@]}"; do echo "  $h: started_at $(started_at "$h"), pid $(pid_of "$h")"; done

t0=$SECONDS
echo "== 2. release B; roll-2's dies at start"
remember
inventory B broken B
if play >"$root/2.log" 2>&1; then cat "$root/2.log"; fail "the play went on past a board that never came online"; fi
runs roll-1 B; online roll-1; restarted roll-1
echo "roll-1: B, online in a new run (started_at ${started_before[roll-1]} -> $(started_at roll-1))"
runs roll-2 broken
grep -q "edge-agent on roll-2 (edge/roll-2) is not online with version $version in a new run after 10 s" "$root/2.log" \
  || { cat "$root/2.log"; fail "no clear message for roll-2"; }
grep -q "The rolling deploy stops here" "$root/2.log" || { cat "$root/2.log"; fail "the message does not say the deploy stops"; }
[ "$(retained roll-2 status)" = offline ] || fail "roll-2 says $(retained roll-2 status)"
echo "roll-2: the play failed:"
grep -o "edge-agent on roll-2 .*no later batch is started\." "$root/2.log" | head -1 | sed 's/^/  /'
untouched roll-3 A
if grep -q 'roll-3' "$root/2.log"; then cat "$root/2.log"; fail "the play ran something on roll-3"; fi
echo "roll-3: not touched (release A, the same config, agent process ${pid_before[roll-3]}, started_at ${started_before[roll-3]}) ($((SECONDS - t0)) s)"

t0=$SECONDS
echo "== 3. release B, all good"
remember
inventory B B B
play >"$root/3.log" 2>&1 || { cat "$root/3.log"; fail "the deploy with a good roll-2 failed"; }
runs roll-1 B; online roll-1; untouched roll-1 B
grep -Eq '^roll-1 +:.*changed=0 ' "$root/3.log" || { cat "$root/3.log"; fail "the run changed roll-1"; }
for h in roll-2 roll-3; do runs "$h" B; online "$h"; restarted "$h"; done
[ "$(order "$root/3.log")" = "roll-1 roll-2 roll-3 " ] || { cat "$root/3.log"; fail "not a host at a time, in order: $(order "$root/3.log")"; }
echo "roll-1 left as it was (changed=0, no restart); roll-2 and roll-3: B, online in new runs ($((SECONDS - t0)) s)"

echo "rolling-local: 3 hosts a batch each; a board that never came online stopped the deploy with a clear message and the next board untouched; a good release reached all three"
