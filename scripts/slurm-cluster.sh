#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests of `cellnets slurm`:
#   scripts/slurm-cluster.sh start DIR   install slurm-wlm and munge when missing, write a
#                                        configuration into DIR, start munged, slurmctld
#                                        and slurmd, wait until the node takes jobs
#   scripts/slurm-cluster.sh stop DIR    stop exactly those daemons, by their pid files
# Clients find the cluster through SLURM_CONF=DIR/slurm.conf. Everything lives in DIR;
# ports 16817/16818 keep it apart from a real cluster's daemons.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    echo "installing slurm-wlm and munge (about a minute)" >&2
    if ! as_root true 2>/dev/null; then
        echo "slurm-wlm and munge are missing and this user cannot install them: run" \
             "'apt-get install slurm-wlm munge' as root" >&2
        exit 3
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

configure() {
    local host cpus user
    host=$(hostname -s)
    cpus=$(nproc)
    user=$(id -un)
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chmod 700 "$dir/munge"
    [ -f "$dir/munge/munge.key" ] || head -c 1024 /dev/urandom > "$dir/munge/munge.key"
    chmod 400 "$dir/munge/munge.key"
    cat > "$dir/slurm.conf" <<CONF
ClusterName=cellnets-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it starts again (120 s by default).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
SchedulerParameters=sched_interval=1
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    # slurmd reads cgroup.conf only with cgroup plugins; an empty one keeps it quiet.
    : > "$dir/cgroup.conf"
}

start() {
    install
    configure
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$dir/slurm.conf"
    slurmd -f "$dir/slurm.conf"
    for _ in $(seq 60); do
        if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "SLURM_CONF=$dir/slurm.conf"
            return
        fi
        sleep 1
    done
    echo "the one-node cluster did not come up within 60 s; its logs:" >&2
    tail -n 30 "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/munge/munged.log >&2 || true
    stop
    exit 1
}

stop() {
    local pidfile pid
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

case $action in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
