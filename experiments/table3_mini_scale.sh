#!/usr/bin/env bash
# Issue 14's scale measurement for the mini Table 3: what doubling the steps buys against what one
# more seed buys, measured before the seeded table is spent on one of them.
#   bash experiments/table3_mini_scale.sh [ROOT]    (default ROOT: experiments/table3_mini/runs)
# Trains base (3 seeds) and the two rows that 500 steps got most clearly wrong, C-N8 (depth) and
# D-drop0.0 (no dropout) (2 seeds each), at the mini scale's 1000 steps with the sweep, keeping
# checkpoint 500, and scores each row's runs on the dev set with checkpoint 500 as soon as the row
# is done (`transformer-jax evaluate --step=500`, beam 4 as the runs). Eq. 3 does not depend on
# train.steps, so checkpoint 500 of a 1000-step run is the 500-step run: each run gives both
# scales. One run at a time (a 2-core machine); rerunning skips finished runs and evaluations.
# Then scale.py writes scale.md beside ROOT. Only the small files are committed
# (ROOT/.gitignore): each run's result.json, run.json, dev.hyp and dev500.json, so a fresh
# clone resumes what is missing with the same command (commit a run's dev500.json with its result.json: checkpoints stay here).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-experiments/table3_mini/runs}
val=transformer_jax/assets/multi30k/val
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(date -u +%FT%TZ)"
for row_seeds in base:3 C-N8:2 D-drop0.0:2; do
  row=${row_seeds%:*}
  transformer-jax sweep --config=configs/table3.py:scale=mini --root="$root" \
    --config.train.keep_checkpoints=6 --only="$row" --seeds="${row_seeds#*:}"
  for run in "$root/$row"/seed*; do
    [ -f "$run/dev500.json" ] && continue
    if [ ! -d "$run/checkpoints/500" ]; then
      echo "error: $run has result.json but neither dev500.json nor checkpoints/500; delete" \
           "its result.json to train it again" >&2
      exit 1
    fi
    transformer-jax evaluate --workdir="$run" --step=500 --src="$val.en" --ref="$val.de" \
      --beam_size=4 > "$run/dev500.log"
    mv "$run/eval_val.en.json" "$run/dev500.json"
  done
done
python experiments/table3_mini/scale.py "$root"
