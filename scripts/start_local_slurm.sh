#!/usr/bin/env bash
# Start a one-node Slurm on this machine (localhost), for trying `nucleai batch --scheduler slurm`
# and for its test. Needs root and Debian's slurm-wlm + munge (`apt-get install -y slurm-wlm
# munge`). Containers without cgroup control need proctrack/linuxproc and task/none, used here.
# Idempotent: daemons already running are left alone. Exits 0 once `sinfo` shows the node idle.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "start_local_slurm: needs root (it starts munged, slurmctld and slurmd)" >&2
    exit 1
fi
for program in munged slurmctld slurmd sbatch sinfo; do
    if ! command -v "$program" > /dev/null; then
        echo "start_local_slurm: $program not found; apt-get install -y slurm-wlm munge" >&2
        exit 1
    fi
done

CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
# slurmd -C prints this machine's NodeName line (CPUs, sockets, memory); use it with our name.
NODE_LINE=$(slurmd -C | head -n 1 | sed -E "s/^NodeName=[^ ]+/NodeName=$NODE/")

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
if [[ ! -f $CONF ]]; then
    cat > "$CONF" <<EOF
# Written by nucleai's scripts/start_local_slurm.sh: one node, localhost.
ClusterName=nucleai-local
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
MpiDefault=none
$NODE_LINE State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
fi

if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 400 /etc/munge/munge.key
pgrep -x munged > /dev/null || su -s /bin/sh munge -c munged
pgrep -x slurmctld > /dev/null || slurmctld
pgrep -x slurmd > /dev/null || slurmd

for _ in $(seq 60); do
    if sinfo -h -N -o %t 2> /dev/null | grep -q -E '^(idle|mix|alloc)'; then
        echo "start_local_slurm: node $NODE is up ($CONF)"
        exit 0
    fi
    sleep 1
done
echo "start_local_slurm: the node did not come up; see /var/log/slurm/" >&2
exit 1
