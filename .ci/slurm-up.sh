#!/usr/bin/env bash
# Stand up a single-node SLURM cluster on this machine (CI and developers):
#   sudo .ci/slurm-up.sh          (as root; Debian/Ubuntu; idempotent, non-interactive)
# - installs slurm-wlm, munge, slurmdbd and mariadb-server with apt when missing;
# - one node = this machine with its real CPUs and memory, two partitions on it:
#   `main` (default; GPU rules go here on a real cluster) and `cpu` (CPU-only rules);
# - munge, slurmctld, slurmd, and accounting (slurmdbd + MariaDB) so that `sacct` lists the
#   jobs with what they asked for. The executor plugin polls job states with `squeue`
#   (slurm/config.yaml `slurm-status-command`), which needs slurmctld only: an accounting
#   outage does not stop the run from seeing its jobs.
# Run it again at any time: a running, correctly configured cluster is left as it is; a
# changed machine (CPUs, memory) or a stopped daemon is brought up to date.
# Daemons keep running after it ends; a later run reuses them.
set -euo pipefail

log() { echo "== slurm-up: $*"; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts system daemons)"

CLUSTER=${SLURM_UP_CLUSTER:-mplugci}
HOST=$(hostname -s)
CONF_DIR=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
DB_PASS=${SLURM_UP_DB_PASS:-slurmdbpass}

# ---------------------------------------------------------------------------- packages
need=()
for bin in slurmctld:slurm-wlm slurmd:slurm-wlm sacct:slurm-wlm munged:munge \
           slurmdbd:slurmdbd mariadbd:mariadb-server; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need+=("${bin##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge slurmdbd mariadb-server \
    >/dev/null
fi

# Daemons are started directly (containers have no systemd); `pidof` decides what runs.
running() { pidof "$1" >/dev/null 2>&1; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local n=$1 what=$2; shift 2
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  die "$what did not come up within ${n}s (logs: $LOGS/)"
}

mkdir -p "$STATE" "$SPOOL" "$LOGS" /run/munge /run/mysqld
# ------------------------------------------------------------------------------- munge
[ -s /etc/munge/munge.key ] || { log "creating the munge key"; mungekey --create >/dev/null 2>&1 \
  || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
chown munge:munge /etc/munge/munge.key /run/munge && chmod 400 /etc/munge/munge.key
if ! running munged; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi
wait_for 20 munge sh -c 'munge -n | unmunge'

# ----------------------------------------------------------------------------- MariaDB
chown mysql:mysql /run/mysqld
if ! running mariadbd && ! running mysqld; then
  log "starting MariaDB"
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  # its own session, every descriptor closed: a caller's pipe is not held open
  (cd / && exec setsid mysqld_safe --user=mysql) </dev/null >/dev/null 2>&1 &
fi
wait_for 60 MariaDB mariadb -e 'select 1'
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

# ------------------------------------------------------------------------ configuration
CPUS=$(nproc --all)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$(( MEM_MB * 95 / 100 ))   # slurmd refuses a node that claims more than it has

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/slurm.conf" <<EOF
# Written by .ci/slurm-up.sh: single-node cluster on $HOST ($CPUS CPUs, $MEM_MB MB).
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=defer_batch=0
# a finished job stays visible to squeue for 10 min: the executor plugin polls with squeue
MinJobAge=600
# SIGTERM -> SIGKILL grace after a time limit or scancel (a checkpoint's time on a real cluster)
KillWait=30
# a job may requeue itself (the rules do after a checkpoint on the early signal, exit 75)
JobRequeue=1
PriorityType=priority/multifactor
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=cpu Nodes=$HOST Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
cat > "$tmp/slurmdbd.conf" <<EOF
# Written by .ci/slurm-up.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
cat > "$tmp/cgroup.conf" <<EOF
# proctrack/linuxproc + task/none: cgroups are only probed, not used
CgroupPlugin=autodetect
EOF
changed=0
for f in slurm.conf slurmdbd.conf cgroup.conf; do
  if ! cmp -s "$tmp/$f" "$CONF_DIR/$f"; then
    install -m 644 "$tmp/$f" "$CONF_DIR/$f"; changed=1
  fi
done
chmod 600 "$CONF_DIR/slurmdbd.conf"

stop() {  # stop NAME: end a daemon this script started (by the pid it wrote)
  local pidfile=/run/$1.pid
  if [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
    for _ in $(seq 20); do running "$1" || break; sleep 1; done
  fi
}
if [ $changed = 1 ]; then
  log "configuration changed: restarting the SLURM daemons"
  stop slurmd; stop slurmctld; stop slurmdbd
fi

# ------------------------------------------------------------------------------ daemons
running slurmdbd || { log "starting slurmdbd"; slurmdbd; }
wait_for 60 slurmdbd sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
running slurmctld || { log "starting slurmctld"; slurmctld; }
wait_for 60 slurmctld scontrol ping
# associations: root (CI) and the invoking user under account `mplug`
sacctmgr -n -P list account format=account | grep -qx mplug \
  || sacctmgr -i add account mplug Cluster="$CLUSTER" Description=mplug-ci >/dev/null
for user in root ${SUDO_USER:-}; do
  sacctmgr -n -P list assoc user="$user" account=mplug format=user | grep -qx "$user" \
    || sacctmgr -i add user "$user" Account=mplug DefaultAccount=mplug >/dev/null
done
running slurmd || { log "starting slurmd"; slurmd -N "$HOST"; }
# a node left DOWN/DRAIN by a previous run (e.g. a killed slurmd) is put back into service
for _ in $(seq 30); do
  state=$(sinfo -h -n "$HOST" -o %t | head -1)
  case $state in
    idle*|mix*|alloc*) break ;;
    down*|drain*|drng*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
case $(sinfo -h -n "$HOST" -o %t | head -1) in
  idle*|mix*|alloc*) ;;
  *) die "node $HOST is '$(sinfo -h -n "$HOST" -o %t | head -1)' (see $LOGS/slurmd.log)" ;;
esac
# prove it end to end: a job runs and accounting records it
jid=$(sbatch --parsable -p cpu -n1 -c1 --mem=100 -t 1 -o /dev/null --wrap true)
for _ in $(seq 60); do
  st=$(sacct -n -X -P -j "$jid" -o State 2>/dev/null | head -1)
  [ "$st" = COMPLETED ] && break
  sleep 1
done
[ "$st" = COMPLETED ] || die "test job $jid ended '$st' (see $LOGS/)"
log "cluster $CLUSTER up: node $HOST ($CPUS CPUs, $REAL_MB MB), partitions main (default), cpu"
