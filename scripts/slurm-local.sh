#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost (Debian's slurmctld, slurmd and munge), for the
# cluster tests and for trying the `slurm` profile on a workstation.
#
#   scripts/slurm-local.sh start    install if needed, write /etc/slurm/slurm.conf, start
#   scripts/slurm-local.sh stop     stop the daemons this script started
#   scripts/slurm-local.sh status   sinfo
#
# Without slurmdbd there is no sacct: Snakemake's SLURM executor polls with squeue
# (`--slurm-status-command squeue`, set in config/profiles/slurm-local). The configuration has
# to be /etc/slurm/slurm.conf because the executor's job step drops SLURM_CONF before srun;
# this is meant for throwaway machines (CI) and refuses to overwrite a slurm.conf it did not
# write. Needs root.
set -euo pipefail

STATE=${TRIALPREP_SLURM_STATE:-/tmp/trialprep-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by trialprep scripts/slurm-local.sh"
PARTITION=${TRIALPREP_SLURM_PARTITION:-trialprep}

die() { echo "slurm-local: $*" >&2; exit 1; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    [ "$(id -u)" = 0 ] || die "slurm is not installed and installing it needs root"
    echo "slurm-local: installing Debian's slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
}

write_conf() {
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching it"
    fi
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    mkdir -p "$STATE"/{state,spool,log,run} /etc/slurm
    cat > "$CONF" <<EOF
$MARK
ClusterName=trialprep-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=86400
DefMemPerCPU=1000
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [ "$(id -u)" = 0 ] || die "starting slurmctld/slurmd as configured here needs root"
    install
    write_conf
    if ! pgrep -x munged >/dev/null; then
        [ -s /etc/munge/munge.key ] || { mungekey -c 2>/dev/null || \
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 400 /etc/munge/munge.key
        mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
        if id munge >/dev/null 2>&1; then
            su -s /bin/sh munge -c "munged" || munged --force
        else
            munged --force
        fi
    fi
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "slurm-local: partition $PARTITION up ($(nproc) CPUs) - state in $STATE"
            return
        fi
        sleep 1
    done
    tail -20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    die "the node did not come up within 60 s"
}

stop() {
    for d in slurmd slurmctld; do
        pkill -x "$d" 2>/dev/null || true
    done
    for _ in $(seq 20); do
        pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break
        sleep 0.5
    done
    echo "slurm-local: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) die "usage: $0 start|stop|status" ;;
esac
