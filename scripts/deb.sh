#!/usr/bin/env bash
# Packs a static edge-agent binary (from scripts/cross.sh) into a Debian
# package with dpkg-deb (no build of its own: seconds, not minutes):
#   /usr/bin/edge-agent
#   /etc/edge-agent/config.toml       a conffile: config/edge-agent.toml
#   /lib/systemd/system/edge-agent.service
#                                     the role's hardened unit, rendered
#   /usr/share/doc/edge-agent/        copyright, changelog
# The maintainer scripts (packaging/debian/) make the system user
# edge-agent in the gpio and spi groups, enable the service, and on purge
# take away what they made.
#
# Usage: scripts/deb.sh DEB-ARCH [BINARY]   -> dist/edge-agent_<version>_<arch>.deb
#   armhf  from dist/edge-agent-arm-unknown-linux-musleabihf (ARMv6: every Pi)
#   arm64  from dist/edge-agent-aarch64-unknown-linux-musl
#   amd64  from dist/edge-agent-x86_64-unknown-linux-musl
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: scripts/deb.sh armhf|arm64|amd64 [BINARY]}
case "$arch" in
  armhf) triple=arm-unknown-linux-musleabihf ;;
  arm64) triple=aarch64-unknown-linux-musl ;;
  amd64) triple=x86_64-unknown-linux-musl ;;
  *) echo "deb.sh: no package for $arch" >&2; exit 2 ;;
esac
binary=${2:-dist/edge-agent-$triple}
[ -f "$binary" ] || { echo "deb.sh: $binary is missing: scripts/cross.sh $triple --build-only" >&2; exit 1; }
file -b "$binary" | grep -q 'statically linked' || { echo "deb.sh: $binary is not static" >&2; exit 1; }

upstream=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
version="$upstream-1"
# Dates and times from the last commit: the same tree packs the same way.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
maintainer=${DEB_MAINTAINER:-"edge-agent maintainers <edge-agent@example.org>"}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
pkg=$root/pkg
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/etc/edge-agent" "$pkg/lib/systemd/system" \
  "$pkg/usr/share/doc/edge-agent" "$pkg/usr/share/lintian/overrides"
install -m 0755 "$binary" "$pkg/usr/bin/edge-agent"
install -m 0644 config/edge-agent.toml "$pkg/etc/edge-agent/config.toml"

# The unit is the Ansible role's template with the package's values.
sed -e '1s/.*/# edge-agent, from its Debian package (ansible\/roles\/edge_agent\/templates\/edge-agent.service.j2)/' \
    -e 's|{{ edge_agent_binary }}|/usr/bin/edge-agent|' \
    -e 's|{{ edge_agent_user }}|edge-agent|g' \
    -e "s#{{ edge_agent_groups | join(' ') }}#gpio spi#" \
    -e 's|{{ edge_agent_watchdog_sec }}|30|' \
    ansible/roles/edge_agent/templates/edge-agent.service.j2 > "$pkg/lib/systemd/system/edge-agent.service"
if grep -n '{[{%]' "$pkg/lib/systemd/system/edge-agent.service" >&2; then
  echo "deb.sh: the unit template has a variable this script does not fill" >&2; exit 1
fi
chmod 0644 "$pkg/lib/systemd/system/edge-agent.service"

for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$pkg/DEBIAN/$s"; done
echo /etc/edge-agent/config.toml > "$pkg/DEBIAN/conffiles"
chmod 0644 "$pkg/DEBIAN/conffiles"

install -d -m 0755 "$pkg/usr/share/man/man1"
gzip -9n < packaging/debian/edge-agent.1 > "$pkg/usr/share/man/man1/edge-agent.1.gz"
chmod 0644 "$pkg/usr/share/man/man1/edge-agent.1.gz"
install -m 0644 packaging/debian/copyright "$pkg/usr/share/doc/edge-agent/copyright"
{
  echo "edge-agent ($version) unstable; urgency=medium"
  echo
  echo "  * edge-agent $upstream, static musl build ($triple)."
  echo
  echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$pkg/usr/share/doc/edge-agent/changelog.Debian.gz"
chmod 0644 "$pkg/usr/share/doc/edge-agent/changelog.Debian.gz"
# One binary for every C library: linked statically on purpose.
# Not for Debian's archive: no ITP bug to close.
printf '%s\n' "edge-agent: statically-linked-binary [usr/bin/edge-agent]" \
  "edge-agent: initial-upload-closes-no-bugs [usr/share/doc/edge-agent/changelog.Debian.gz:1]" \
  > "$pkg/usr/share/lintian/overrides/edge-agent"
chmod 0644 "$pkg/usr/share/lintian/overrides/edge-agent"

size=$(du -k -s --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<EOF
Package: edge-agent
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: adduser
Recommends: tzdata
Section: net
Priority: optional
Description: turns a Raspberry Pi-class Linux board into an MQTT device
 One static binary that drives an e-paper message board, LEDs, an LED
 matrix, a button and a buzzer from MQTT commands, with Home Assistant
 discovery, a retained online/offline status and an optional embedded
 MQTT broker. It runs as the system user edge-agent under a hardened
 systemd unit; /etc/edge-agent/config.toml configures it.
 .
 Built for $triple.
EOF
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p dist
out="dist/edge-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
echo "$out: $(stat -c %s "$out") bytes ($triple)"
