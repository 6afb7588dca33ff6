#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for the `slurm` tests and for trying launcher=slurm.
# Root only, no systemd: munged, slurmctld and slurmd are started by hand and stopped by PID.
#   scripts/slurm_local_cluster.sh start    # installs slurm-wlm + munge if missing, ~20 s
#   scripts/slurm_local_cluster.sh stop
# Node `localhost` (127.0.0.1) with this machine's CPUs (nproc) and memory, partition `debug`
# (the default, no time limit), no GPUs and no accounting (sacct answers "disabled"; grok reads
# job states from squeue). Writes /etc/slurm/slurm.conf, so plain `sinfo`, `sbatch` work.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
STATE=/var/lib/grok-slurm       # slurmctld / slurmd state, wiped at each start
RUN=/run/grok-slurm             # PID files
LOGS=/var/log/grok-slurm
PARTITION=debug

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    slurm-wlm slurm-client munge
}

write_conf() {
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  mkdir -p /etc/slurm
  # A state folder left by another ClusterName makes slurmctld exit: each start begins afresh.
  cat > "$CONF" <<EOF
ClusterName=grok-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
  chmod 0755 /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged  # its PID file: /run/munge/munged.pid
}

pidfile() { if [[ $1 == munged ]]; then echo /run/munge/munged.pid; else echo "$RUN/$1.pid"; fi; }
alive() { [[ -s $(pidfile "$1") ]] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

start() {
  [[ $(id -u) -eq 0 ]] || { echo "error: run as root" >&2; exit 2; }
  if alive slurmctld; then echo "already running (slurmctld PID $(cat $RUN/slurmctld.pid))"; return; fi
  install_packages
  write_conf
  rm -rf "$STATE"
  mkdir -p "$STATE/ctld" "$STATE/d" "$RUN" "$LOGS"
  alive munged || { start_munge && touch "$RUN/munged.ours"; }  # stop ends only ours
  slurmctld -f "$CONF"
  slurmd -f "$CONF" -N localhost
  for _ in $(seq 60); do  # the node is up once it reports idle
    if sinfo -h -p "$PARTITION" -o %t 2>/dev/null | grep -qx idle; then
      sinfo
      return
    fi
    sleep 1
  done
  echo "error: the node did not come up; see $LOGS" >&2
  sinfo -R >&2 || true
  exit 1
}

stop() {
  for daemon in slurmd slurmctld munged; do
    if [[ $daemon == munged && ! -e $RUN/munged.ours ]]; then continue; fi  # not started here
    if alive "$daemon"; then
      pid=$(cat "$(pidfile "$daemon")")
      kill "$pid"
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -f "$(pidfile "$daemon")"
  done
  rm -f "$RUN/munged.ours"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
