#!/usr/bin/env bash
# The local-grokking testbed of docs/pathways_findings.md: train experiment=pathways_testbed
# for three seeds (two at a time), then `grok pathways` on each run's snapshots, with epsilon
# chosen per data group as the paper does. Each seed's correlations.csv has one block per op.
# Usage: scripts/pathways_testbed.sh [OUT_DIR] [extra grok run overrides]
# Re-running skips finished seeds and resumes interrupted ones.
set -euo pipefail

out="${1:-outputs/pathways_testbed}"
shift || true

grok sweep experiment=pathways_testbed seed=0,1,2 launcher=local progress=log \
  "hydra.sweep.dir=${out}" "$@"

for run in "${out}"/*seed=*/; do
  grok pathways moe=from_run "moe.from_run='${run}'" memorization.epsilon=auto \
    "hydra.run.dir='${run}pathways'"
done
echo "done: <seed folder>/pathways/correlations.csv and pathways_groups.png under ${out}/"
