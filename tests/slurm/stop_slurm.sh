#!/usr/bin/env bash
# Stop the daemons that tests/slurm/start_slurm.sh started - and only those: it reads $STATE/started ("name pidfile"
# a line), stops each by the PID in its pid file (newest first), after checking that the PID still is that daemon.
# Daemons that were already running before start_slurm.sh are left alone, and so are the installed packages.
#
#   DMRISCOPE_SLURM_STATE   state folder (default /run/dmriscope-slurm)
set -uo pipefail

STATE="${DMRISCOPE_SLURM_STATE:-/run/dmriscope-slurm}"
[ -s "$STATE/started" ] || { echo "stop_slurm: nothing was started"; exit 0; }

stop_pidfile() {  # $1: name (= /proc/PID/comm prefix, guards against a reused PID), $2: pid file
  local pid
  [ -s "$2" ] || { echo "stop_slurm: $1: no pid file $2"; return 0; }
  pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null && grep -q "^$1" "/proc/$pid/comm" 2>/dev/null; then
    echo "stop_slurm: stopping $1 (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stop_slurm: $1 still alive after 20 s, SIGKILL"
      kill -9 "$pid"
    fi
  fi
  rm -f "$2"
}

# jobs of a controller we started are ours: cancel them so slurmd leaves no job processes behind
if grep -q '^slurmctld ' "$STATE/started" && command -v scancel >/dev/null; then
  scancel --user=root 2>/dev/null || true
fi
tac "$STATE/started" | while read -r name pidfile; do
  stop_pidfile "$name" "$pidfile"
done
rm -f "$STATE/started"
echo "stop_slurm: done"
