#!/usr/bin/env bash
# The mini Table 3 with seeds (issue 14): every row of Table 3 at the CPU scale on the embedded
# Multi30k, 1000 steps (big 3000), 2 seeds per row and 3 for base, then the seed-aware report
# beside the paper's numbers. One command, meant for an otherwise idle machine:
#   bash experiments/table3_mini.sh [ROOT]      (default ROOT: experiments/table3_mini/runs)
# Two runs at a time, each pinned to half the CPUs (on a 2-core VM that trains base-sized rows
# 1.6x faster than one run on both cores): an estimated 4.5 hours there, plus big's two
# 3000-step runs (about an hour each on one core). Rerunning it skips every run whose
# result.json exists and resumes an interrupted one from its checkpoint, so commit each finished
# run's small files (ROOT/.gitignore keeps the checkpoints out) and a fresh clone finishes what is
# missing with the same command. The report goes to experiments/table3_mini/report.{md,html}.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-experiments/table3_mini/runs}
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(date -u +%FT%TZ)"
start=$(date +%s)
transformer-jax sweep --config=configs/table3.py:scale=mini --root="$root" --seeds=2 --parallel=2
transformer-jax sweep --config=configs/table3.py:scale=mini --root="$root" --only=base --seeds=3
echo "sweep_wall_seconds=$(( $(date +%s) - start ))"
transformer-jax compare "$root" --output=experiments/table3_mini/report
