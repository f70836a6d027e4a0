#!/usr/bin/env bash
# Builds a static (musl) release binary of edge-agent for a Raspberry Pi
# target, or for a PC, puts it (stripped by the release profile) in dist/,
# then runs the whole test suite for that target under qemu-user with the
# oldest CPU of its family. Installs what it needs when it is missing: as
# root with apt-get (Debian's Rust, the standard library's source, qemu),
# and zig with cargo-zigbuild from PyPI into a virtualenv under target/.
#
# Usage: scripts/cross.sh TARGET [--setup | --build-only | --build-tests | --run-tests] [-- TEST-FILTER...]
#   arm-unknown-linux-musleabihf    Pi Zero/1 (ARMv6), and every Pi on a 32-bit OS
#   armv7-unknown-linux-musleabihf  Pi 2/3/4/5 on a 32-bit OS (ARMv7)
#   aarch64-unknown-linux-musl      Pi 3/4/5 on a 64-bit OS
#   x86_64-unknown-linux-musl       a PC (its tests run natively, no qemu)
# With no option: the binary and the tests built, the tests run.
#   --setup        what the script installs, and nothing else
#   --build-only   the binary only (`cargo build`)
#   --build-tests  the binary and the test binaries, in one build (the doc
#                  tests run), not the suite; --run-tests then runs it
#                  without cargo, so that it can run while cargo builds
#                  another target (.ci/run). The binary in dist/ is then the
#                  one the suite tests.
# What follows `--` narrows the test run, as after `cargo test --`.
#
# How: Debian's rustc-web has no std for these targets, so it is built from
# rust-web-src (-Zbuild-std; RUSTC_BOOTSTRAP=1 lets the stable compiler take
# the flag). zig is the C compiler (ring's C and assembly) and the linker,
# and brings musl and its start files for any ARM CPU; hence
# `-C link-self-contained=no` (the sysroot built here has no crt1.o).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/cross.sh TARGET [--setup | --build-only | --build-tests | --run-tests] [-- TEST-FILTER...]"
target=${1:?$usage}
shift
mode=all
filter=()
while [ $# -gt 0 ]; do
  case "$1" in
    --setup | --build-only | --build-tests | --run-tests) mode=${1#--} ;;
    --) shift; filter=("$@"); break ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
case "$target" in
  # qemu emulates the oldest CPU of the boards the target is for.
  arm-unknown-linux-musleabihf) qemu="qemu-arm -cpu arm1176" ;;
  armv7-unknown-linux-musleabihf) qemu="qemu-arm -cpu cortex-a7" ;;
  aarch64-unknown-linux-musl) qemu="qemu-aarch64 -cpu cortex-a53" ;;
  x86_64-unknown-linux-musl) qemu= ;;
  *) echo "cross.sh: unknown target $target" >&2; exit 2 ;;
esac
# Versions known to work together (docs/DEPLOY.md, "ARM builds").
zig_pkgs=(ziglang==0.17.1 cargo-zigbuild==0.24.1)

pkgs=(rustc-web cargo-web rust-web-src python3-venv file)
[ -n "$qemu" ] && pkgs+=(qemu-user)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  # A mirror being synced fails an index now and then ("File has unexpected
  # size"): try again, then go on with the lists apt has.
  for try in 1 2 3; do apt-get update -q && break; echo "cross.sh: apt-get update failed (try $try of 3)" >&2; sleep $((try * 10)); done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
venv=$PWD/target/zig-venv
if ! "$venv/bin/cargo-zigbuild" --version >/dev/null 2>&1 || ! "$venv/bin/python" -m ziglang version >/dev/null 2>&1; then
  echo "== installing ${zig_pkgs[*]} into $venv"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${zig_pkgs[@]}"
fi

# Debian's cargo and rustc (rustup's, if any, are not the ones with the
# std source), cargo-zigbuild in front.
export PATH="$venv/bin:/usr/bin:$PATH"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=target/static
export RUSTFLAGS="-C link-self-contained=no"
export RUSTDOCFLAGS="-C link-self-contained=no"
# std with unwinding: the release profile keeps panic = "unwind" (the agent
# catches panics). `test` is listed for the build too, so that the build and
# `cargo test` use one std and share every compiled dependency. std's
# features: unwinding, and its smaller algorithms where it has both; not
# "backtrace", whose symbolisation (gimli, addr2line, miniz) a stripped
# binary cannot use anyway: a backtrace (RUST_BACKTRACE=1) shows addresses.
build_std=(-Zbuild-std=std,panic_unwind,test -Zbuild-std-features=panic-unwind,optimize_for_size)
upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
[ -n "$qemu" ] && export "CARGO_TARGET_${upper}_RUNNER=$qemu"
# The integration tests start the agent binary: through qemu too, so the
# agent under test is the ARM one. The tests are built with the release
# profile, which reuses the build (and runs faster under emulation); the
# native `cargo test` covers debug assertions.
export EDGE_AGENT_TEST_WRAPPER="$qemu"
# The test binaries of the last --build-tests: source, then executable.
suite=target/static/$target/release/suite-tests
echo "== $(rustc --version), $(cargo --version), zig $("$venv/bin/python" -m ziglang version), $(cargo-zigbuild --version) -> $target (qemu: ${qemu:-none})"
[ "$mode" = setup ] && exit 0

# The binary into dist/, with its size, and a first run (through qemu).
dist() {
  mkdir -p dist
  cp "target/static/$target/release/edge-agent" "dist/edge-agent-$target"
  echo "dist/edge-agent-$target: $(stat -c %s "dist/edge-agent-$target") bytes, $(file -b "dist/edge-agent-$target")"
  $qemu "dist/edge-agent-$target" --version
}

if [ "$mode" = build-only ]; then
  start=$(date +%s)
  cargo-zigbuild zigbuild --release --locked "${build_std[@]}" --target "$target"
  dist
  echo "== release build: $(( $(date +%s) - start )) s"
  exit 0
fi

# The test binaries and the binary they start, in one build: the binary
# that goes into dist/ is the one the suite tests. (`cargo test` turns on
# the dev-dependencies' features, tokio's test-util among them, in every
# crate it builds, the binary too; a binary from `cargo build` would be
# another build of everything, with other features.)
if [ "$mode" != run-tests ]; then
  start=$(date +%s)
  mkdir -p "$(dirname "$suite")"
  cargo-zigbuild test --release --locked --no-run "${build_std[@]}" --target "$target" \
    --message-format=json-render-diagnostics > "$suite.json"
  /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(m["target"]["src_path"] + "\t" + m["executable"])
' "$suite.json" > "$suite"
  rm "$suite.json"
  dist
  echo "== the binary and the test binaries built: $(( $(date +%s) - start )) s"
  # There are none yet; when there are, they run here, through qemu too.
  cargo-zigbuild test --release --locked --doc "${build_std[@]}" --target "$target" -- "${filter[@]}"
fi
[ "$mode" = build-tests ] && exit 0

# Each test binary as `cargo test --no-fail-fast` runs it (from the
# package's folder, through the runner), without cargo: no lock on
# target/static, so that a build of another target may go on meanwhile.
[ -s "$suite" ] || { echo "cross.sh: no test binaries in $suite: run scripts/cross.sh $target --build-tests" >&2; exit 1; }
start=$(date +%s)
failed=()
mapfile -t tests < "$suite"
for t in "${tests[@]}"; do
  src=${t%%$'\t'*} exe=${t#*$'\t'}
  echo "     Running ${src#"$PWD/"} (${exe#"$PWD/"})"
  $qemu "$exe" "${filter[@]}" || failed+=("${src#"$PWD/"}")
done
echo "== tests under ${qemu:-no qemu}: $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "cross.sh: $target: tests failed in ${failed[*]}" >&2
  exit 101
fi
