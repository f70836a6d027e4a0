#!/usr/bin/env bash
# Applies the role for real, with `connection: local`, to a temporary root
# folder (every path prefixed, service management off), for both example
# hosts; checks each rendered config with `edge-agent config check`, that the
# two differ, and that a second run changes nothing.
# Usage: ansible/tests/apply-local.sh PATH/TO/edge-agent  (ansible-playbook on PATH)
set -euo pipefail
binary=$(realpath "$1")
cd "$(dirname "$0")/.."
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
arch=$(uname -m)
case "$arch" in
  x86_64) triple=x86_64-unknown-linux-gnu ;;
  aarch64) triple=aarch64-unknown-linux-gnu ;;
  armv7l) triple=armv7-unknown-linux-gnueabihf ;;
  *) echo "no release triple for $arch" >&2; exit 1 ;;
esac
mkdir -p "$root/dist"
cp "$binary" "$root/dist/edge-agent-$triple"

play() {
  ANSIBLE_CONFIG=ansible.cfg ansible-playbook site.yml -c local \
    -e ansible_become=false \
    -e "ansible_python_interpreter={{ ansible_playbook_python }}" \
    -e edge_agent_manage_service=false \
    -e "edge_agent_artifact_dir=$root/dist" \
    -e "edge_agent_root=$root/{{ inventory_hostname }}" \
    -e vault_edge_agent_mqtt_password=test-only-secret
}

echo "== first run"
play | tee "$root/first.log"
echo "== second run (must change nothing)"
play | tee "$root/second.log"
for host in kitchen porch; do
  grep -E "^$host +:.*changed=0 " "$root/second.log" >/dev/null \
    || { echo "FAIL: the second run changed $host" >&2; exit 1; }
  grep -E "^$host +:.*changed=[1-9]" "$root/first.log" >/dev/null \
    || { echo "FAIL: the first run changed nothing on $host" >&2; exit 1; }
  cfg="$root/$host/etc/edge-agent/config.toml"
  echo "== $host: $cfg"
  "$binary" config check --config "$cfg"
  test -x "$root/$host/usr/local/bin/edge-agent"
  grep -q '^Type=notify' "$root/$host/etc/systemd/system/edge-agent.service"
done
if diff -q "$root/kitchen/etc/edge-agent/config.toml" "$root/porch/etc/edge-agent/config.toml" >/dev/null; then
  echo "FAIL: both hosts got the same config" >&2; exit 1
fi
echo "== the two configs differ in:"
diff "$root/kitchen/etc/edge-agent/config.toml" "$root/porch/etc/edge-agent/config.toml" | grep '^[<>]' | grep -v 'ansible managed\|# edge-agent on' || true
"$binary" config show --config "$root/porch/etc/edge-agent/config.toml" | grep -q 'password = "\*\*\*"'
echo "apply-local: 2 hosts applied, configs valid and different, second run changed=0"
