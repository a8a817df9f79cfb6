#!/usr/bin/env bash
# Stop the single-node SLURM cluster that tests/slurm/start_slurm.sh DIR started: slurmd, slurmctld and
# (only if start_slurm.sh started it) munged, each by its pid file in DIR; and remove the link
# /etc/slurm/slurm.conf -> DIR/slurm.conf. Jobs still queued or running are cancelled first.
# Safe to run twice, or on a DIR where nothing runs.
set -uo pipefail

DIR=${1:?usage: stop_slurm.sh DIR}
[[ -d $DIR ]] || exit 0
DIR=$(cd "$DIR" && pwd)
export SLURM_CONF=$DIR/slurm.conf

# Stop the process whose pid is in file $1 if its command line names $2 (a reused pid is left alone).
stop_pidfile() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 0
    pid=$(tr -dc 0-9 <"$file")
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -qa "$name" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$file"
}

# Cancel what is left in the queue while slurmd still runs: it ends the job steps (with
# proctrack/linuxproc nothing ends them once slurmd is gone).
if [[ -s $DIR/slurmctld.pid && -f $SLURM_CONF ]] && command -v scancel >/dev/null 2>&1; then
    active() { timeout 10 squeue -h -t PENDING,RUNNING,COMPLETING,SUSPENDED -o %i 2>/dev/null; }
    if [[ -n $(active) ]]; then
        timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null
        for _ in $(seq 30); do [[ -z $(active) ]] && break; sleep 0.5; done
    fi
fi

stop_pidfile "$DIR/slurmd.pid" slurmd
stop_pidfile "$DIR/slurmctld.pid" slurmctld
if [[ -e $DIR/munged.started ]]; then
    stop_pidfile "$DIR/munged.pid" munged
    rm -f "$DIR/munged.started"
fi

# the /etc/slurm/slurm.conf link that start_slurm.sh made, if it still points here
if [[ -s $DIR/etc-link ]]; then
    link=$(cat "$DIR/etc-link")
    if [[ -L $link && $(readlink "$link") == "$SLURM_CONF" ]]; then rm -f "$link"; fi
    rm -f "$DIR/etc-link"
fi
exit 0
