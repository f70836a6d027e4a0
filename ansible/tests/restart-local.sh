#!/usr/bin/env bash
# The rolling test's "service restart" of one host root (its
# edge_agent_restart_command): stops the agent whose PID is in
# ROOT/run/edge-agent.pid (TERM; KILL after 5 s), then starts
# ROOT/usr/local/bin/edge-agent run with ROOT/etc/edge-agent/config.toml in
# the background, in its own session, its output in ROOT/agent.log; writes
# its PID to the PID file and appends it to PIDS, from which the test's EXIT
# trap ends every agent it started.
# Usage: restart-local.sh ROOT PIDS
set -euo pipefail
root=$1 pids=$2
pidfile=$root/run/edge-agent.pid
mkdir -p "$root/run"
alive() { # not gone, nor a zombie nobody reaped
  [ -e "/proc/$1" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
if [ -s "$pidfile" ]; then
  old=$(cat "$pidfile")
  if alive "$old"; then
    kill "$old" 2>/dev/null || true
    for _ in $(seq 50); do alive "$old" || break; sleep 0.1; done
    if alive "$old"; then kill -9 "$old" 2>/dev/null || true; fi
  fi
fi
cd "$root"
setsid "$root/usr/local/bin/edge-agent" run --config "$root/etc/edge-agent/config.toml" \
  </dev/null >>"$root/agent.log" 2>&1 &
echo $! >"$pidfile"
echo $! >>"$pids"
