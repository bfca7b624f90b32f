#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by ci/slurm-up.sh: slurmd, slurmctld, munged,
# each by its PID file (never by process name).  Idempotent; root only.  Packages,
# configuration and the munge key stay, so the next ci/slurm-up.sh takes seconds.
set -uo pipefail

[ "$(id -u)" -eq 0 ] || {
  echo "slurm-down: must run as root" >&2
  exit 1
}

# stop NAME PIDFILE: SIGTERM, up to 10 s, then SIGKILL
stop() {
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid"
      echo "slurm-down: killed $name ($pid)"
    else
      echo "slurm-down: stopped $name ($pid)"
    fi
  fi
  rm -f "$pidfile"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop munged /run/munge/munged.pid
exit 0
