#!/usr/bin/env bash
# The mini Table 3: every row of Table 3 at the CPU scale on the embedded Multi30k, one seed,
# then the report beside the paper's numbers. One command, meant for an otherwise idle machine:
#   bash experiments/table3_mini.sh [ROOT]      (default ROOT: runs/table3_mini)
# Rerunning it skips finished rows and resumes an interrupted one. When it ends, copy the report
# (ROOT/report.md, report.html, the two PNGs) and the small per-run files into
# experiments/table3_mini/ with: bash experiments/table3_mini.sh ROOT --collect
set -euo pipefail
root=${1:-runs/table3_mini}
if [ "${2:-}" = "--collect" ]; then
  out=$(dirname "$0")/table3_mini
  mkdir -p "$out"
  cp "$root"/report.md "$root"/report.html "$root"/report_*.png "$out"/
  for r in "$root"/*/seed*/result.json; do
    d=$(dirname "$r"); rel=${d#"$root"/}; mkdir -p "$out/runs/$rel"
    cp "$r" "$d"/dev.hyp "$out/runs/$rel/"
  done
  exit 0
fi
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(date -u +%FT%TZ)"
start=$(date +%s)
transformer-jax sweep --config=configs/table3.py:scale=mini --root="$root"
echo "sweep_wall_seconds=$(( $(date +%s) - start ))"
transformer-jax compare "$root" --output="$root/report"
