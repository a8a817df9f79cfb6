#!/usr/bin/env bash
# Set up the single-node SLURM test cluster: the one step of the SLURM tests that changes the system.
#
#   tests/slurm/setup_cluster.sh          install Debian's slurm-wlm and munge when they are missing
#   tests/slurm/setup_cluster.sh DIR      the same, then start the cluster with its state in DIR
#                                         (tests/slurm/start_slurm.sh DIR; stop it with stop_slurm.sh DIR)
#
# `make test-slurm` (and so .ci/run) runs it before tests/test_slurm.py, whose fixture then starts the
# daemons and stops them again; `make test` never runs it, and skips the SLURM tests when no cluster
# answers. Without DIR it does nothing where a cluster already answers `sinfo`. Installing needs root
# and apt-get (a few seconds; `apt-get update` first when the package lists are missing); when
# slurm-wlm and munge are already there it changes nothing and needs neither.
#
# Exit status: 0 when SLURM is installed (and, with DIR, the node is idle: stdout is then the path of
# its slurm.conf); 2 when it cannot be installed (not root, no apt-get, apt-get failed); 3 when the
# daemons do not come up. The last lines on stderr say why.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LOG=${SLURM_SETUP_LOG:-${TMPDIR:-/tmp}/aahr-slurm-apt.log}

die() { echo "setup_cluster: $*" >&2; exit 2; }
log() { echo "setup_cluster: $*" >&2; }

# Without DIR, a cluster that already answers (a login node: often no slurmctld or munged there) is
# all the tests need.
if (($# == 0)) && command -v sinfo >/dev/null 2>&1 && timeout 20 sinfo -h -o %T >/dev/null 2>&1; then
    log "a SLURM cluster answers sinfo; nothing to set up"
    exit 0
fi

need=()
for cmd in slurmctld slurmd sbatch squeue sinfo scontrol srun munged munge; do
    command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
if ((${#need[@]})); then
    missing="SLURM is not installed (${need[*]} missing)"
    [[ $(id -u) == 0 ]] || die "$missing and this is not root, so it cannot be installed"
    command -v apt-get >/dev/null 2>&1 || die "$missing and there is no apt-get to install it"
    log "installing slurm-wlm and munge with apt-get (log: $LOG)"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -qq --no-install-recommends slurm-wlm munge >>"$LOG" 2>&1; }
    if ! apt_install; then  # a fresh machine may have no package lists yet
        apt-get update -qq >>"$LOG" 2>&1 || true
        if ! apt_install; then
            tail -n 5 "$LOG" >&2
            die "apt-get install slurm-wlm munge failed (see $LOG)"
        fi
    fi
    log "installed slurm-wlm $(dpkg-query -W -f '${Version}' slurm-wlm 2>/dev/null || true)"
else
    log "SLURM is installed; nothing to install"
fi

if (($#)); then
    exec bash "$HERE/start_slurm.sh" "$1"
fi
