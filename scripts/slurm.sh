#!/usr/bin/env bash
# A one-node SLURM on localhost for the tests:  bash scripts/slurm.sh start|stop|status
#
# start: installs the Debian packages if they are missing (root + apt only), writes a
# config for this host, starts munged, slurmctld and slurmd directly (no systemd), and
# waits until the node takes jobs. Running it again on a live cluster changes nothing.
# Exit status 0: SLURM answers. 3: this machine cannot run it (not root, no apt): the
# SLURM tests skip (or fail, under CI=true).
#
# Knobs: HPCF_SLURM_CPUS (CPUs the node advertises, default 4 — more than a 2-core machine
# has, so MPI and multi-worker tests fit), HPCF_SLURM_TIMEOUT (seconds to wait, default 90).
set -euo pipefail

CPUS="${HPCF_SLURM_CPUS:-4}"
TIMEOUT="${HPCF_SLURM_TIMEOUT:-90}"
ETC=/etc/slurm
RUN=/run/slurm
LOG=/var/log/slurm
STATE=/var/spool/hpcfutures-slurmctld  # our own: slurmctld refuses state of another cluster name
say() { echo "[slurm] $*" >&2; }

# a pid file whose process is alive (a zombie does not count: kill -0 would succeed on it)
running() {
  local pid state
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

answers() {
  command -v sinfo >/dev/null 2>&1 || return 1
  scontrol ping 2>/dev/null | grep -q "is UP" || return 1
  case "$(sinfo -h -N -o '%T' 2>/dev/null | head -n1)" in idle*|mixed*|alloc*|complet*) return 0 ;; *) return 1 ;; esac
}

install_packages() {
  local missing=0
  for tool in slurmctld slurmd sbatch munged; do command -v "$tool" >/dev/null 2>&1 || missing=1; done
  # Slurm's mpi/pmix plugin dlopen()s the unversioned libpmix.so, which only libpmix-dev ships
  ls /usr/lib/*/pmix2/lib/libpmix.so >/dev/null 2>&1 || missing=1
  [ "$missing" = 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "SLURM is not installed and cannot be installed here (needs root and apt-get)"
    exit 3
  fi
  say "installing slurmctld slurmd slurm-client munge libpmix2 libpmix-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    slurmctld slurmd slurm-client munge libpmix2 libpmix-dev >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      slurmctld slurmd slurm-client munge libpmix2 libpmix-dev >/dev/null
  }
}

write_config() {
  local host mem
  host="$(hostname -s)"
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  mkdir -p "$ETC" "$RUN" "$LOG" "$STATE" /var/spool/slurmd
  cat > "$ETC/slurm.conf" <<CONF
# written by hpcfutures scripts/slurm.sh: one node on localhost, for tests
ClusterName=hpcfutures
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=${STATE}
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${LOG}/slurmctld.log
SlurmdLogFile=${LOG}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# start batch jobs at once, not after the default 3 s batching delay
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
MailProg=/bin/true
# the node may advertise more CPUs than it has without being drained for it
SlurmdParameters=config_overrides
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
  # the PMIx in the PyPI Open MPI wheel has no munge security plugin
  echo "PMIxEnv=PMIX_MCA_psec=native" > "$ETC/mpi.conf"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  [ -s /etc/munge/munge.key ] || mungekey --create --force >/dev/null 2>&1 \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 100); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "munged did not start"; exit 1
}

start() {
  if answers; then say "already up: $(sinfo -h -N -o '%N %T cpus=%c')"; return 0; fi
  install_packages
  write_config
  start_munge
  running "$RUN/slurmctld.pid" || /usr/sbin/slurmctld -c -i || { say "slurmctld failed"; tail -n 5 "$LOG/slurmctld.log" >&2; exit 1; }
  running "$RUN/slurmd.pid" || /usr/sbin/slurmd || { say "slurmd failed"; tail -n 5 "$LOG/slurmd.log" >&2; exit 1; }
  local host deadline
  host="$(hostname -s)"
  deadline=$(( $(date +%s) + TIMEOUT ))
  until answers; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "SLURM did not come up within ${TIMEOUT}s"; tail -n 15 "$LOG"/slurm*.log >&2 || true; exit 1
    fi
    case "$(sinfo -h -N -o '%T' 2>/dev/null | head -n1)" in
      down*|drain*|fail*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  say "up: $(sinfo -h -N -o '%N %T cpus=%c')"
}

stop() {
  command -v scancel >/dev/null 2>&1 && scancel --user="$(id -un)" >/dev/null 2>&1 || true
  for daemon in slurmd slurmctld; do
    local pidfile="$RUN/$daemon.pid"
    if running "$pidfile"; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      for _ in $(seq 100); do running "$pidfile" || break; sleep 0.1; done
      running "$pidfile" && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
      say "stopped $daemon"
    fi
    rm -f "$pidfile"
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) answers && { sinfo -N -l; exit 0; } || { say "not running"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
