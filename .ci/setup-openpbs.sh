#!/usr/bin/env bash
# A real OpenPBS (PBS Pro's open-source edition) on this host for the PBS launcher tests, through the shared
# openpbs/start.sh that CI finds beside the clone (../shared/openpbs, read-only; PE_ARENA_OPENPBS_DIR overrides).
#   .ci/setup-openpbs.sh          start it unless it already answers (idempotent: a running PBS is not restarted)
#   .ci/setup-openpbs.sh stop     stop every PBS daemon
#   .ci/setup-openpbs.sh status   qstat -B and pbsnodes
# Its commands stay in /opt/pbs/bin, off PATH (Slurm's torque wrapper owns /usr/bin/qsub); the test profile
# configs/clusters/test-openpbs.json names that directory as commandsDir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${PE_ARENA_OPENPBS_DIR:-$root/../shared/openpbs}
log() { echo "setup-openpbs: $*" >&2; }

if [[ ! -f $dir/start.sh ]]; then
  log "$dir/start.sh not found: put the shared openpbs folder beside the clone or set PE_ARENA_OPENPBS_DIR"
  exit 1
fi
case "${1:-start}" in
  stop | status) exec bash "$dir/start.sh" "$1" ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
if timeout 10 /opt/pbs/bin/qstat -B >/dev/null 2>&1 && timeout 10 /opt/pbs/bin/pbsnodes localhost 2>/dev/null | grep -q 'state = free'; then
  log "already running (queue workq, commands in /opt/pbs/bin)"
  exit 0
fi
bash "$dir/start.sh" start
