#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on localhost (controller and compute daemon), so that
# tests/test_slurm.py can run the workflow through profiles/slurm.  For CI (.ci/run) and for
# a developer who wants the same locally: root only, Debian packages, no systemd, no
# cgroups, no accounting database.  Idempotent; when the cluster is already up with this
# configuration it only checks that the node answers (about a second).
#
#   FAKE_GPU=0        do not advertise the fake GPU (default 1: one gres gpu backed by
#                     /dev/null, so profiles/slurm-gpu submissions schedule; nothing runs
#                     on it)
#   SLURM_CPUS=N      CPUs the node advertises (default: nproc, at least 2)
#   SLURM_MEM_MB=N    memory it advertises (default: 80 % of RAM, at least 16384)
#   SLURM_SMOKE=0     skip the `srun hostname` check
#
# The node may advertise more than the machine has (SlurmdParameters=config_overrides):
# without cgroups SLURM enforces neither CPUs nor memory, and the workflow's rules declare
# up to 2 threads and 8000 MB, which must schedule on a small CI runner.
# Stop it again with ci/slurm-down.sh.
set -euo pipefail

FAKE_GPU=${FAKE_GPU:-1}
SLURM_SMOKE=${SLURM_SMOKE:-1}
CPUS=${SLURM_CPUS:-$(nproc)}
[ "$CPUS" -ge 2 ] || CPUS=2
MEM_MB=${SLURM_MEM_MB:-$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 8 / 10))}
[ -n "${SLURM_MEM_MB:-}" ] || [ "$MEM_MB" -ge 16384 ] || MEM_MB=16384

CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { printf '[slurm-up %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() {
  log "ERROR: $*"
  local f
  for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
    if [ -s "$f" ]; then
      echo "--- last lines of $f"
      tail -n 25 "$f"
    fi
  done
  exit 1
}
# wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds
wait_for() {
  local tries=$(($1 * 5))
  shift
  while [ "$tries" -gt 0 ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
    tries=$((tries - 1))
  done
  return 1
}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# stop_daemon NAME PIDFILE
stop_daemon() {
  local pid
  alive "$2" || return 0
  pid=$(cat "$2")
  kill "$pid"
  wait_for 15 sh -c "! kill -0 $pid" || die "$1 ($pid) did not stop"
  rm -f "$2"
}
node_ready() { sinfo -h -n localhost -o %T | grep -qE '^(idle|mixed|allocated|completing)$'; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"

# ------------------------------------------------------------------ packages
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "SLURM is not installed (${missing[*]}) and there is no apt-get"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
fi

# ------------------------------------------------------------------ munge
install -d -o munge -g munge -m 0700 /etc/munge
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating the munge key"
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged || die "munged did not start"
  wait_for 10 sh -c 'munge -n | unmunge' || die "munged does not answer"
fi

# ------------------------------------------------------------------ configuration
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
node_gres=""
gpu_partition=""
if [ "$FAKE_GPU" = 1 ]; then
  node_gres=" Gres=gpu:1"
  gpu_partition="PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP"
fi
new_conf=$(mktemp)
new_gres=$(mktemp)
trap 'rm -f "$new_conf" "$new_gres"' EXIT
cat >"$new_conf" <<CONF
# One-node cluster on localhost, written by ci/slurm-up.sh (overwritten on every run).
ClusterName=ci
SlurmctldHost=localhost
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# no cgroups (containers, CI): plain process tracking, no binding, no limits enforced
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmdParameters=config_overrides
# no accounting database: sacct does not work, status comes from squeue
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
# refuse a request the node can never satisfy at sbatch time, instead of pending forever
EnforcePartLimits=ALL
# finished jobs stay visible to squeue for an hour (the executor's status command)
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB$node_gres State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
$gpu_partition
CONF
if [ "$FAKE_GPU" = 1 ]; then
  echo "NodeName=localhost Name=gpu Count=1 File=/dev/null" >"$new_gres"
fi

changed=0
if ! cmp -s "$new_conf" "$CONF_DIR/slurm.conf"; then
  install -m 0644 "$new_conf" "$CONF_DIR/slurm.conf"
  changed=1
fi
if [ -s "$new_gres" ]; then
  if ! cmp -s "$new_gres" "$CONF_DIR/gres.conf"; then
    install -m 0644 "$new_gres" "$CONF_DIR/gres.conf"
    changed=1
  fi
elif [ -e "$CONF_DIR/gres.conf" ]; then
  rm -f "$CONF_DIR/gres.conf"
  changed=1
fi

# ------------------------------------------------------------------ daemons
if alive "$CTLD_PID" && alive "$SLURMD_PID" && [ "$changed" = 0 ] && node_ready; then
  log "already up: $(sinfo -h -o '%P %a %D %T %N' | paste -sd ';')"
  exit 0
fi

if [ "$changed" = 1 ] && { alive "$SLURMD_PID" || alive "$CTLD_PID"; }; then
  # a changed node definition (CPUs, memory, gres) needs both daemons restarted
  log "configuration changed: restarting slurmd and slurmctld"
  stop_daemon slurmd "$SLURMD_PID"
  stop_daemon slurmctld "$CTLD_PID"
fi
if ! alive "$CTLD_PID"; then
  # -c: start from a clean state. A controller that is not running was stopped (slurm-down,
  # a killed CI run, a machine snapshot) and the jobs it saved belong to runs that are gone;
  # recovered as RUNNING they would hold the node's CPUs and leave every new job pending.
  log "starting slurmctld (clean state)"
  /usr/sbin/slurmctld -c || die "slurmctld did not start"
fi
wait_for 30 scontrol ping || die "slurmctld does not answer"
if ! alive "$SLURMD_PID"; then
  log "starting slurmd"
  /usr/sbin/slurmd -N localhost || die "slurmd did not start"
fi
if ! wait_for 30 node_ready; then
  # a node that went down (killed slurmd, changed size) comes back only when resumed
  scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
  wait_for 15 node_ready || {
    sinfo -R
    die "node localhost did not become idle"
  }
fi

# ------------------------------------------------------------------ smoke test
if [ "$SLURM_SMOKE" = 1 ]; then
  out=$(timeout -k 5 60 srun -N1 -n1 --mem=10 -t 1 hostname 2>&1) || die "srun hostname failed: $out"
  log "srun hostname -> $out"
fi
log "up: $(sinfo -h -o '%P %a %D %T %N %c CPUs %m MB %G' | paste -sd ';')"
