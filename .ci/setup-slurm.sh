#!/usr/bin/env bash
# A real Slurm on 127.0.0.1 for the launcher tests: Debian's slurm-wlm (+ slurm-wlm-torque for qsub/qstat/qdel),
# its own munged (own key and socket), one slurmctld and NODES slurmd daemons ("node1".."nodeN") on this host.
#   .ci/setup-slurm.sh          install if needed, (re)start, wait until every node is idle   (idempotent)
#   .ci/setup-slurm.sh stop     stop every daemon this script started (by pid file), leaving none behind
#   .ci/setup-slurm.sh status   print sinfo
# Runs as root on a fresh Debian machine. State lives in $PE_ARENA_SLURM_DIR (default /tmp/pe-arena-slurm);
# the config goes to /etc/slurm/slurm.conf, where sbatch/squeue/qsub look by default.
set -euo pipefail

STATE=${PE_ARENA_SLURM_DIR:-/tmp/pe-arena-slurm}
NODES=${PE_ARENA_SLURM_NODES:-4}
CPUS=${PE_ARENA_SLURM_CPUS:-4}
CTLD_PORT=${PE_ARENA_SLURM_CTLD_PORT:-16817}
SLURMD_PORT0=${PE_ARENA_SLURM_SLURMD_PORT0:-16900}
CONF=/etc/slurm/slurm.conf
SOCKET="$STATE/munge/munge.socket"

log() { echo "setup-slurm: $*" >&2; }

# A job's login shell (bash -l sources ~/.bashrc) may run pyenv's shim, which waits up to 60 s on its lock file; a
# job killed while holding it leaves the lock behind and every later job then starts a minute late. Nothing holds a
# lock older than two minutes: remove it.
find "${PYENV_ROOT:-$HOME/.pyenv}/shims" -maxdepth 1 -name .pyenv-shim -mmin +2 -delete 2>/dev/null || true

kill_pidfile() {
  # Ends only the daemon named in its own pid file (never by process name), then waits for it (bounded).
  local file=$1
  [[ -f $file ]] || return 0
  local pid
  pid=$(cat "$file" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop_all() {
  for i in $(seq 1 "$NODES"); do kill_pidfile "$STATE/run/slurmd.node$i.pid"; done
  kill_pidfile "$STATE/run/slurmctld.pid"
  kill_pidfile "$STATE/munge/munged.pid"
}

healthy() {
  [[ -f $CONF ]] && grep -q "pe-arena test cluster" "$CONF" || return 1
  local states
  states=$(timeout 5 sinfo -h -N -o '%N %T' 2>/dev/null) || return 1
  [[ $(grep -c ' idle$\| mixed$\| allocated$' <<<"$states") -eq $NODES ]]
}

case "${1:-start}" in
  stop) stop_all; log "stopped"; exit 0 ;;
  status) sinfo; exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

if [[ $(id -u) -ne 0 ]]; then log "must run as root (installs packages, runs slurmd)"; exit 1; fi

if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v qsub >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm slurm-wlm-torque munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends slurm-wlm slurm-wlm-torque munge >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends slurm-wlm slurm-wlm-torque munge >/dev/null; }
fi

if healthy; then log "already running ($NODES nodes idle)"; exit 0; fi
if [[ -f $CONF ]] && ! grep -q "pe-arena test cluster" "$CONF" && [[ ${PE_ARENA_SLURM_FORCE:-0} != 1 ]]; then
  log "$CONF exists and is not ours (a real Slurm?); refusing to replace it. PE_ARENA_SLURM_FORCE=1 overrides."
  exit 1
fi
stop_all

LIBDIR=$(dirname "$(dpkg -L slurm-wlm-basic-plugins 2>/dev/null | grep '/auth_munge.so$' | head -1)")
[[ -d $LIBDIR ]] || LIBDIR=/usr/lib/x86_64-linux-gnu/slurm-wlm
mkdir -p "$STATE"/{munge,run,log,state,spool} /etc/slurm
chmod 0700 "$STATE/munge"

# munge: its own key and socket, so a site munged (if any) is left alone.
if [[ ! -s $STATE/munge/munge.key ]]; then
  dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1 count=1024 status=none
  chmod 0400 "$STATE/munge/munge.key"
fi
munged --force --socket="$SOCKET" --key-file="$STATE/munge/munge.key" \
  --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"

cat >"$STATE/plugstack.conf" <<EOF
required $LIBDIR/spank_pbs.so
EOF

{
  echo "# pe-arena test cluster: written by .ci/setup-slurm.sh; everything on 127.0.0.1"
  echo "ClusterName=pearena"
  echo "SlurmctldHost=localhost(127.0.0.1)"
  echo "SlurmctldPort=$CTLD_PORT"
  echo "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
  echo "AuthType=auth/munge"
  echo "CredType=cred/munge"
  echo "AuthInfo=socket=$SOCKET"
  echo "SlurmUser=root"
  echo "SlurmdUser=root"
  echo "StateSaveLocation=$STATE/state"
  echo "SlurmdSpoolDir=$STATE/spool/%n"
  echo "SlurmctldPidFile=$STATE/run/slurmctld.pid"
  echo "SlurmdPidFile=$STATE/run/slurmd.%n.pid"
  echo "SlurmctldLogFile=$STATE/log/slurmctld.log"
  echo "SlurmdLogFile=$STATE/log/slurmd.%n.log"
  echo "PlugStackConfig=$STATE/plugstack.conf"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_CPU"
  echo "TaskPlugin=task/none"
  echo "ProctrackType=proctrack/pgid"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "AccountingStorageType=accounting_storage/none"
  echo "JobCompType=jobcomp/none"
  echo "MpiDefault=none"
  echo "SwitchType=switch/none"
  echo "ReturnToService=2"
  echo "SlurmdParameters=config_overrides"
  echo "SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_min_interval=0"
  echo "SchedulerType=sched/backfill"
  echo "KillWait=2"
  echo "MinJobAge=300"
  echo "InactiveLimit=0"
  echo "SlurmctldTimeout=30"
  echo "SlurmdTimeout=60"
  echo "MaxArraySize=10001"
  for i in $(seq 1 "$NODES"); do
    echo "NodeName=node$i NodeAddr=127.0.0.1 NodeHostname=localhost Port=$((SLURMD_PORT0 + i)) CPUs=$CPUS RealMemory=2000 State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
} >"$CONF"

slurmctld -c -f "$CONF"
for i in $(seq 1 "$NODES"); do slurmd -N "node$i" -f "$CONF"; done

for _ in $(seq 1 100); do
  if healthy; then log "up: $NODES nodes idle (config $CONF, state $STATE)"; exit 0; fi
  # A node that came up before the controller knew it stays down; ask for it back.
  timeout 5 scontrol update nodename="node[1-$NODES]" state=resume >/dev/null 2>&1 || true
  sleep 0.3
done
log "nodes did not become idle within 30 s:"
sinfo -N 2>&1 >&2 || true
tail -20 "$STATE/log/slurmctld.log" >&2 || true
exit 1
