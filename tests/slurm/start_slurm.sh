#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost, for tests (tests/test_slurm.py) or to try the
# workflow's SLURM profile (workflow/profiles/slurm) by hand.
#
#   tests/slurm/setup_cluster.sh        once: installs slurm-wlm and munge (root, apt-get) if missing
#   tests/slurm/start_slurm.sh DIR      then   export SLURM_CONF=DIR/slurm.conf
#   tests/slurm/stop_slurm.sh DIR
#
# Installs nothing itself (that is setup_cluster.sh's job). Needs root: it starts munged as the munge
# user and writes /etc/munge and /etc/slurm/slurm.conf. No systemd or cgroups: processes are tracked
# with proctrack/linuxproc, there is no accounting database (so `sacct` does not work: the profile
# asks the plugin to use `squeue`, and MinJobAge=3600 keeps finished jobs visible to squeue for an
# hour: on a busy machine the tiny DAG takes more than the 5 minutes that MinJobAge=300 allowed).
#
# Everything lives under DIR: slurm.conf, state, spool, logs and pid files; /etc/slurm/slurm.conf
# becomes a link to DIR/slurm.conf (srun inside jobs does not see SLURM_CONF; see below). slurmctld and
# slurmd listen on two free ports picked here, so they do not clash with another SLURM on the machine.
# A munged that already answers is reused (and left running by stop_slurm.sh); one started here is
# recorded in DIR/munged.started and stopped by stop_slurm.sh.
#
# Exit status: 0 when the node is idle (stdout is then the path of slurm.conf); 2 when SLURM is not
# installed or this is not root; 3 when the daemons do not come up. The last lines on stderr say why.
# Running it again on the same DIR stops what an earlier run started there and starts afresh.
set -euo pipefail

DIR=${1:?usage: start_slurm.sh DIR}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
HERE=$(cd "$(dirname "$0")" && pwd)

die() {  # exit 3 also stops what this run started
    local code=$1; shift
    echo "start_slurm: $*" >&2
    if [[ $code == 3 ]]; then "$HERE/stop_slurm.sh" "$DIR" >/dev/null 2>&1 || true; fi
    exit "$code"
}
log() { echo "start_slurm: $*" >&2; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# ---- installed? ------------------------------------------------------------------------------------
need=()
for cmd in slurmctld slurmd sbatch squeue sinfo scontrol srun munged munge; do
    command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
((${#need[@]} == 0)) || die 2 "SLURM is not installed (${need[*]} missing): run tests/slurm/setup_cluster.sh (root) first"
[[ $(id -u) == 0 ]] || die 2 "starting the SLURM daemons needs root (munged starts as the munge user)"

# ---- a clean slate: stop what an earlier run left in DIR --------------------------------------------
"$HERE/stop_slurm.sh" "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR/state" "$DIR/spool" "$DIR/log"
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"

# ---- munge ------------------------------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
    log "reusing the munged that is already running"
else
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    # a stale socket or pid file of a dead munged makes a new one refuse to start
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    if command -v runuser >/dev/null 2>&1; then
        runuser -u munge -- munged --force >"$DIR/log/munged.out" 2>&1 || true
    else
        su -s /bin/sh munge -c "munged --force" >"$DIR/log/munged.out" 2>&1 || true
    fi
    for _ in $(seq 50); do munge_ok && break; sleep 0.2; done
    munge_ok || { cat "$DIR/log/munged.out" >&2; die 3 "munged did not start"; }
    cp /run/munge/munged.pid "$DIR/munged.pid"
    touch "$DIR/munged.started"
fi

# ---- slurm.conf -------------------------------------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
MEM_MB=$((MEM_MB * 9 / 10))            # leave some for the daemons; slurmd drains a node that has less
DEF_MEM=$((MEM_MB / CPUS))
free_port() {
    python3 - <<'EOF' 2>/dev/null || echo "$1"
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}
CTLD_PORT=${SLURMCTLD_PORT:-$(free_port 6817)}
SLURMD_PORT=${SLURMD_PORT:-$(free_port 6818)}
[[ $CTLD_PORT != "$SLURMD_PORT" ]] || SLURMD_PORT=$((CTLD_PORT + 1))

cat >"$DIR/slurm.conf" <<EOF
# Written by tests/slurm/start_slurm.sh: a single-node cluster on localhost, no systemd, no cgroups.
ClusterName=aahr-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=$DEF_MEM
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$DIR/slurm.conf"

# Inside a job, the plugin's job step runs `srun` with every SLURM_* variable removed, SLURM_CONF too
# (snakemake-executor-plugin-slurm-jobstep 0.6.1), so srun reads the compiled-in default path: link it
# to this config. Only a link or file that this script wrote is replaced; stop_slurm.sh removes it.
ETC_CONF=/etc/slurm/slurm.conf
if [[ -L $ETC_CONF || -e $ETC_CONF ]]; then
    if [[ -L $ETC_CONF && ! -e $ETC_CONF ]] || grep -q "^# Written by tests/slurm/start_slurm" "$ETC_CONF"; then
        rm -f "$ETC_CONF"
    else
        die 3 "$ETC_CONF exists and was not written by this script; srun inside jobs would use it"
    fi
fi
mkdir -p "$(dirname "$ETC_CONF")"
ln -s "$SLURM_CONF" "$ETC_CONF"
echo "$ETC_CONF" >"$DIR/etc-link"

# ---- daemons ----------------------------------------------------------------------------------------
failed() {  # $1: the daemon
    cat "$DIR/log/$1.out" >&2
    tail -n 20 "$DIR/log/$1.log" >&2 2>/dev/null
    die 3 "$1 did not start"
}
# both fork into the background once they are up, writing their pid files
slurmctld -c -f "$SLURM_CONF" >"$DIR/log/slurmctld.out" 2>&1 || failed slurmctld
slurmd -c -f "$SLURM_CONF" -N "$NODE" >"$DIR/log/slurmd.out" 2>&1 || failed slurmd

state=""
for _ in $(seq $((TIMEOUT * 2))); do
    state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1 || true)
    case $state in
        idle) break ;;
        down*|drain*|unknown*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
if [[ $state != idle ]]; then
    for f in slurmctld slurmd; do
        echo "--- $f.log" >&2
        tail -n 15 "$DIR/log/$f.log" >&2 2>/dev/null || true
    done
    die 3 "node $NODE is not idle after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}')"
fi
log "node $NODE is idle ($CPUS CPUs, ${MEM_MB} MB); export SLURM_CONF=$SLURM_CONF"
echo "$SLURM_CONF"
