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
  x86_64) triple=x86_64-unknown-linux-musl ;;
  aarch64) triple=aarch64-unknown-linux-musl ;;
  armv7l) triple=armv7-unknown-linux-musleabihf ;;
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
    -e vault_edge_agent_mqtt_password=test-only-secret "$@"
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

# Group topics: the explicit list and, with edge_agent_group_topics_from_inventory,
# edge/<group> for each of the host's inventory groups (an extra inventory
# puts kitchen in Ground_Floor too), sanitized, each once; the role's
# `config check` checks the whole file, group_topics included: a group topic
# the agent refuses (kitchen's own base topic) fails the play and leaves the
# config as it was.
echo "== group topics"
for host in kitchen porch; do
  if grep -q group_topics "$root/$host/etc/edge-agent/config.toml"; then
    echo "FAIL: $host got group_topics without asking" >&2; exit 1
  fi
done
printf 'Ground_Floor:\n  hosts:\n    kitchen:\n' >"$root/groups.yml"
gt_play() {
  play -i inventory/example.yml -i "$root/groups.yml" --limit kitchen \
    -e edge_agent_group_topics_from_inventory=true -e "edge_agent_root=$root/gt/{{ inventory_hostname }}" "$@"
}
gt_play -e '{"edge_agent_group_topics": ["edge/all", "edge/boards"]}' >"$root/gt.log" || { cat "$root/gt.log"; exit 1; }
gt_cfg=$root/gt/kitchen/etc/edge-agent/config.toml
want='group_topics = ["edge/all", "edge/boards", "edge/ground_floor"]'
awk '/^\[/ { section = $0 } /^group_topics = / { print section; print }' "$gt_cfg" >"$root/gt-lines"
printf '[mqtt]\n%s\n' "$want" | cmp -s - "$root/gt-lines" \
  || { cat "$gt_cfg"; echo "FAIL: kitchen's group topics are not [mqtt] $want" >&2; exit 1; }
"$binary" config check --config "$gt_cfg" >/dev/null
echo "kitchen in boards and Ground_Floor, [edge/all, edge/boards] + from the inventory: [mqtt] $want (config check: valid)"
sum=$(sha256sum <"$gt_cfg")
if gt_play -e '{"edge_agent_group_topics": ["edge/kitchen"]}' >"$root/gt-bad.log" 2>&1; then
  cat "$root/gt-bad.log"; echo "FAIL: the role took edge/kitchen, kitchen's base topic, as a group topic" >&2; exit 1
fi
grep -q 'mqtt.group_topics\[0\]' "$root/gt-bad.log" \
  || { cat "$root/gt-bad.log"; echo "FAIL: the failed play does not name mqtt.group_topics[0]" >&2; exit 1; }
[ "$(sha256sum <"$gt_cfg")" = "$sum" ] || { echo "FAIL: kitchen's config changed though config check refused it" >&2; exit 1; }
echo "[edge/kitchen] (kitchen's base topic): refused by config check, the play failed, the config left as it was"

# The release is chosen by the host's architecture: one artifact per triple,
# each made different by a trailing marker (an ELF runs with bytes appended,
# so `config check` still works), the facts overridden per run.
echo "== the release is chosen by the host's architecture"
mkdir -p "$root/arch-dist"
for t in aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf x86_64-unknown-linux-musl; do
  cp "$binary" "$root/arch-dist/edge-agent-$t"
  printf '%s' "$t" >> "$root/arch-dist/edge-agent-$t"
done
for case in "kitchen aarch64 64 aarch64-unknown-linux-musl" \
            "porch armv7l 32 armv7-unknown-linux-musleabihf" \
            "kitchen aarch64 32 armv7-unknown-linux-musleabihf" \
            "porch armv6l 32 arm-unknown-linux-musleabihf"; do
  read -r host machine bits want <<<"$case"
  play --limit "$host" -e "ansible_architecture=$machine" -e "ansible_userspace_bits=$bits" \
    -e "edge_agent_artifact_dir=$root/arch-dist" -e "edge_agent_root=$root/arch-$machine-$bits/{{ inventory_hostname }}" \
    >"$root/arch.log" || { cat "$root/arch.log"; exit 1; }
  cmp -s "$root/arch-$machine-$bits/$host/usr/local/bin/edge-agent" "$root/arch-dist/edge-agent-$want" \
    || { echo "FAIL: $host as $machine ($bits-bit userland) did not get edge-agent-$want" >&2; exit 1; }
  echo "$host as $machine, $bits-bit userland: edge-agent-$want"
done
if play --limit porch -e ansible_architecture=riscv64 -e "edge_agent_root=$root/arch-riscv64/{{ inventory_hostname }}" >"$root/arch.log"; then
  echo "FAIL: a host without a release was provisioned" >&2; exit 1
fi
grep -q "no edge-agent release for riscv64" "$root/arch.log" \
  || { cat "$root/arch.log"; echo "FAIL: no clear message for an unknown architecture" >&2; exit 1; }
echo "porch as riscv64: refused (no edge-agent release for riscv64)"

# The same with edge_agent_install=package: one marked package per Debian
# architecture (a minimal one: the binary, as dpkg-deb packs it), unpacked
# into the test root; twice, the second changing nothing.
echo "== edge_agent_install=package: the package is chosen by the host's architecture"
mkdir -p "$root/deb-dist"
version=0.1.0-1
for a in arm64 armhf amd64; do
  p="$root/deb-$a"
  mkdir -p "$p/DEBIAN" "$p/usr/bin"
  cp "$binary" "$p/usr/bin/edge-agent"
  printf '%s' "$a" >> "$p/usr/bin/edge-agent"
  printf 'Package: edge-agent\nVersion: %s\nArchitecture: %s\nMaintainer: test <test@example.org>\nDescription: test\n' \
    "$version" "$a" > "$p/DEBIAN/control"
  dpkg-deb --root-owner-group -Znone --build "$p" "$root/deb-dist/edge-agent_${version}_$a.deb" >/dev/null
done
for case in "kitchen aarch64 64 arm64" "porch armv7l 32 armhf" "kitchen aarch64 32 armhf" \
            "porch armv6l 32 armhf" "kitchen x86_64 64 amd64"; do
  read -r host machine bits want <<<"$case"
  dest="$root/pkg-$machine-$bits"
  for run in first second; do
    play --limit "$host" -e edge_agent_install=package -e "ansible_architecture=$machine" \
      -e "ansible_userspace_bits=$bits" -e "edge_agent_artifact_dir=$root/deb-dist" \
      -e "edge_agent_root=$dest/{{ inventory_hostname }}" >"$root/pkg-$run.log" || { cat "$root/pkg-$run.log"; exit 1; }
  done
  grep -E "^$host +:.*changed=0 " "$root/pkg-second.log" >/dev/null \
    || { cat "$root/pkg-second.log"; echo "FAIL: the second package run changed $host" >&2; exit 1; }
  cmp -s "$dest/$host/usr/bin/edge-agent" "$root/deb-$want/usr/bin/edge-agent" \
    || { echo "FAIL: $host as $machine ($bits-bit userland) did not get the $want package" >&2; exit 1; }
  test ! -e "$dest/$host/usr/local/bin/edge-agent" && test ! -e "$dest/$host/etc/systemd/system/edge-agent.service" \
    || { echo "FAIL: package mode left a bare binary or the role's unit" >&2; exit 1; }
  "$binary" config check --config "$dest/$host/etc/edge-agent/config.toml"
  echo "$host as $machine, $bits-bit userland: edge-agent_${version}_$want.deb, second run changed=0"
done

echo "apply-local: 2 hosts applied, configs valid and different, second run changed=0, group topics, release chosen by architecture, as a binary and as a package"
