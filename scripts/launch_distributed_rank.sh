#!/bin/bash
# Runs one rank of a distributed tessera job under a batch system, without
# torchrun: maps the batch system's task variables to the ones tessera reads
# (RANK, WORLD_SIZE, LOCAL_RANK; MASTER_ADDR and MASTER_PORT must be set by
# the caller, the same on every task) and execs the command.
#
#   srun scripts/launch_distributed_rank.sh tessera reconstruct data.cxi -o result.h5
#
# Understands SLURM (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID), Open MPI's
# mpirun (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK) and PMI launchers such as
# MPICH/Hydra (PMI_RANK, PMI_SIZE, MPI_LOCALRANKID). Variables already set
# (RANK, WORLD_SIZE, LOCAL_RANK) win. OMP_NUM_THREADS defaults to
# SLURM_CPUS_PER_TASK, else 1 thread per rank: tessera otherwise takes every
# core for each rank, which oversubscribes a node running several ranks.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]   (run under srun, mpirun or another launcher)" >&2
  exit 2
fi

: "${RANK:=${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-}}}}"
: "${WORLD_SIZE:=${SLURM_NTASKS:-${OMPI_COMM_WORLD_SIZE:-${PMI_SIZE:-}}}}"
: "${LOCAL_RANK:=${SLURM_LOCALID:-${OMPI_COMM_WORLD_LOCAL_RANK:-${MPI_LOCALRANKID:-0}}}}"
if [ -z "$RANK" ] || [ -z "$WORLD_SIZE" ]; then
  echo "$0: no rank found: set RANK and WORLD_SIZE, or run under srun or mpirun" >&2
  exit 2
fi
if [ "$WORLD_SIZE" -gt 1 ] && { [ -z "${MASTER_ADDR:-}" ] || [ -z "${MASTER_PORT:-}" ]; }; then
  echo "$0: set MASTER_ADDR (the host of rank 0) and MASTER_PORT (a free port there) for every task" >&2
  exit 2
fi
: "${OMP_NUM_THREADS:=${SLURM_CPUS_PER_TASK:-1}}"
export RANK WORLD_SIZE LOCAL_RANK OMP_NUM_THREADS
exec "$@"
