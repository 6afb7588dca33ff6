#!/usr/bin/env bash
# The Critical Data Size sweeps on a SLURM cluster, then their analysis.
# Run it on a login node (inside tmux/screen: `grok sweep` waits for the job array, then writes
# summary.csv). Re-running the same command resumes: finished jobs are skipped, interrupted
# ones continue from their checkpoints.
#   PARTITION=gpu ACCOUNT=myproj scripts/slurm_sweep.sh [cds_modadd|cds_imdb|modelwise_imdb] [override ...]
# Further arguments go to `grok sweep` as they are, e.g. on a CPU partition of small nodes:
#   PARTITION=cpu scripts/slurm_sweep.sh cds_modadd_cpu device=cpu hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2
set -euo pipefail

PRESET=${1:-cds_modadd}
shift || true
PARTITION=${PARTITION:-gpu}
SWEEP_DIR=${SWEEP_DIR:-outputs/sweeps/${PRESET}}
EPSILON=${EPSILON:-0.9}          # 0.8 suits IMDB / Yelp
ACCOUNT_ARGS=()
if [[ -n "${ACCOUNT:-}" ]]; then
  ACCOUNT_ARGS=("+hydra.launcher.additional_parameters.account=${ACCOUNT}")
fi

# Non-zero exit when any job failed; the table is written either way.
status=0
grok sweep "sweep=${PRESET}" launcher=slurm \
  "hydra.sweep.dir=${SWEEP_DIR}" \
  "hydra.launcher.partition=${PARTITION}" \
  hydra.launcher.timeout_min="${TIMEOUT_MIN:-720}" \
  hydra.launcher.array_parallelism="${PARALLEL:-32}" \
  "${ACCOUNT_ARGS[@]}" "$@" || status=$?

# The summary can also be rebuilt alone, e.g. after copying job folders back:
#   grok sweep sweep.summarize_only=true hydra.sweep.dir=${SWEEP_DIR}
grok cds "sweep_dir=${SWEEP_DIR}" "epsilon=${EPSILON}" "out_dir=${SWEEP_DIR}/cds"
exit "${status}"
