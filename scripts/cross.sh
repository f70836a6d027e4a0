#!/usr/bin/env bash
# Cross-builds edge-agent for a Raspberry Pi target with Debian's Rust
# (rustc-web and its target std, multiarch) and the GNU cross compiler, puts
# the stripped release binary in dist/, then runs the test suite for that
# target under qemu-user. Installs what it needs (as root) when missing.
#
# Usage: scripts/cross.sh TARGET [--build-only | -- TEST-FILTER...]
#   aarch64-unknown-linux-gnu      Pi 3/4/5, 64-bit OS   (Debian arch arm64)
#   armv7-unknown-linux-gnueabihf  Pi 2/3, 32-bit OS     (armhf)
#   arm-unknown-linux-gnueabi      Pi Zero/1 (ARMv6)     (armel: ARMv5TE std)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/cross.sh TARGET [--build-only]}
mode=${2:-test}
# What follows `--` narrows the test run, as after `cargo test --`.
filter=()
[ "$mode" = "--" ] && filter=("${@:3}")
case "$target" in
  # qemu emulates the oldest CPU of the boards the target is for.
  aarch64-unknown-linux-gnu) deb=arm64 gnu=aarch64-linux-gnu qemu="qemu-aarch64 -cpu cortex-a53" ;;
  armv7-unknown-linux-gnueabihf) deb=armhf gnu=arm-linux-gnueabihf qemu="qemu-arm -cpu cortex-a7" ;;
  arm-unknown-linux-gnueabi) deb=armel gnu=arm-linux-gnueabi qemu="qemu-arm -cpu arm1176" ;;
  *) echo "cross.sh: unknown target $target" >&2; exit 2 ;;
esac

# What Debian has to give: its Rust with the target's std, a linker, qemu.
# The target's multiarch libc6 is what qemu-user runs the binaries with: the
# older libc6-*-cross build hangs in pthread_create under qemu-user.
# Debian ships the target std of rustc-web 1.96 for arm64 only; for armhf the
# newest is 1.85 (bookworm main), which cannot be installed next to 1.96, so
# that toolchain is unpacked into target/cross/ instead (see DEPLOY.md).
pkgs=("libc6:$deb" "gcc-$gnu" "libc6-dev-$deb-cross" qemu-user)
# A mirror being synced fails an index now and then ("File has unexpected
# size"): try again, and go on with what was fetched; a package that is then
# missing fails the install below with apt's own message.
apt_update() {
  for try in 1 2 3; do
    apt-get update -q && return 0
    echo "cross.sh: apt-get update failed (try $try of 3)" >&2
    sleep $((try * 10))
  done
  echo "cross.sh: going on with the package lists apt has" >&2
}
if ! dpkg --print-foreign-architectures | grep -qx "$deb"; then
  dpkg --add-architecture "$deb"
  apt_update
fi
want=$(apt-cache policy "libstd-rust-web-dev:$deb" 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$want" ] || [ "$want" = "(none)" ]; then
  echo "cross.sh: Debian has no Rust std for $deb (libstd-rust-web-dev:$deb); see docs/DEPLOY.md" >&2
  exit 3
fi
system=$(apt-cache policy rustc-web 2>/dev/null | awk '/Installed:/ {print $2}')
if [ "$deb" = arm64 ] || [ "$system" = "$want" ]; then
  pkgs+=(rustc-web cargo-web "libstd-rust-web-dev:$deb")
  private=
else
  private="$PWD/target/cross/rust-$want"
fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if [ -n "$private" ]; then
  if [ ! -x "$private/usr/bin/cargo" ]; then
    echo "== unpacking Debian's Rust $want (with the $deb std) into $private"
    short=$(echo "$want" | sed -E 's/^([0-9]+\.[0-9]+).*/\1/')
    debs=(rustc-web cargo-web "libstd-rust-web-$short" libstd-rust-web-dev
          "libstd-rust-web-$short:$deb" "libstd-rust-web-dev:$deb")
    dl=$(mktemp -d)
    (cd "$dl" && apt-get download "${debs[@]/%/=$want}")
    rm -rf "$private.tmp" && mkdir -p "$private.tmp"
    for f in "$dl"/*.deb; do dpkg -x "$f" "$private.tmp"; done
    # The shared libraries they need from the system (LLVM, libcurl, ...).
    needs=$(for f in "$dl"/*_"$(dpkg --print-architecture)".deb; do dpkg-deb -f "$f" Depends; done \
      | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/ //g' | sort -u \
      | grep -vE '^(rustc-web|cargo-web|libstd-rust-web.*|gcc|clang|c-compiler)$')
    rm -rf "$dl"
    echo "== installing what they link against: " $needs
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $needs
    mv "$private.tmp" "$private"
  fi
  cargo="$private/usr/bin/cargo"
  export RUSTC="$private/usr/bin/rustc" RUSTDOC="$private/usr/bin/rustdoc"
  export LD_LIBRARY_PATH="$private/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  # Debian's cargo and rustc, not rustup's: only they have the target's std.
  cargo=/usr/bin/cargo
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
fi
upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
lower=$(echo "$target" | tr '-' '_')
export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
export "CARGO_TARGET_${upper}_RUNNER=$qemu"
export "CC_${lower}=$gnu-gcc" "AR_${lower}=$gnu-ar"
export CARGO_TARGET_DIR=target/cross
echo "== $($RUSTC --version), $($cargo --version) -> $target (qemu: $qemu)"

start=$(date +%s)
$cargo build --release --locked --target "$target"
mkdir -p dist
cp "target/cross/$target/release/edge-agent" "dist/edge-agent-$target"
echo "dist/edge-agent-$target: $(stat -c %s "dist/edge-agent-$target") bytes, $(file -b "dist/edge-agent-$target" | cut -d, -f1-2)"
$qemu "dist/edge-agent-$target" --version
echo "== release build: $(( $(date +%s) - start )) s"
[ "$mode" = "--build-only" ] && exit 0

# The integration tests start the agent binary: through qemu too. The tests
# are built with the release profile, which reuses the build above (and runs
# faster under emulation); the native `cargo test` covers debug assertions.
export EDGE_AGENT_TEST_WRAPPER="$qemu"
start=$(date +%s)
$cargo test --release --locked --no-fail-fast --target "$target" -- "${filter[@]}"
echo "== tests under $qemu: $(( $(date +%s) - start )) s"
