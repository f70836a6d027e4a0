#!/usr/bin/env bash
# Builds release binaries named by target triple into dist/:
#   dist/edge-agent-<triple>  (stripped by the release profile) and SHA256SUMS.
# Usage: scripts/release.sh [TARGET ...]   (default: this machine's target)
# The static targets (*-musl*: the Pis' and x86_64) are built by
# scripts/cross.sh, which installs its toolchain itself: see docs/DEPLOY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("$host")
mkdir -p dist
for t in "${targets[@]}"; do
  if [[ "$t" == *-musl* ]]; then
    scripts/cross.sh "$t" --build-only
    continue
  elif [ "$t" = "$host" ]; then
    cargo build --release --locked
    src=target/release/edge-agent
  else
    cargo build --release --locked --target "$t"
    src=target/$t/release/edge-agent
  fi
  cp "$src" "dist/edge-agent-$t"
  echo "dist/edge-agent-$t: $(stat -c %s "dist/edge-agent-$t") bytes"
done
(cd dist && sha256sum edge-agent-* > SHA256SUMS)
