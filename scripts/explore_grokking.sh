#!/usr/bin/env bash
# Reproduce "Exploring Grokking" (Hu et al.) on a GPU server: (a + b) mod 97.
#   1. models × data fractions: transformer vs MLP vs LSTM, training fraction 0.3 … 0.8
#   2. optimizers within a 1,800-step budget: AdamW (weight decay 1) vs Adam, SGD, RMSprop
#      (no weight decay), at the same fractions
# Usage: scripts/explore_grokking.sh [OUT_DIR] [extra grok overrides, e.g. seed=0,1,2]
# Each job is a run folder under OUT_DIR/<study>/<its overrides>, with a summary.csv per
# study. Re-running skips finished jobs and resumes interrupted ones.
set -euo pipefail

out="${1:-outputs/explore_grokking}"
shift || true
fractions="0.3,0.4,0.5,0.6,0.7,0.8"
failed=0  # a study with a failed job (grok sweep exits 1) must not stop the next study

grok sweep experiment=explore_models model=gpt,mlp,lstm "task.train_split=${fractions}" \
  progress=log "hydra.sweep.dir=${out}/models" "$@" || failed=1

grok sweep experiment=explore_optimizers optimizer=adamw "task.train_split=${fractions}" \
  progress=log "hydra.sweep.dir=${out}/optimizers_adamw" "$@" || failed=1

grok sweep experiment=explore_optimizers optimizer=adam,sgd,rmsprop weight_decay=0 \
  "task.train_split=${fractions}" progress=log "hydra.sweep.dir=${out}/optimizers_no_wd" "$@" \
  || failed=1

echo "done: one summary.csv per study under ${out}/"
exit "$failed"
